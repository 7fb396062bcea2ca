//! `kubetempura render`: offline rendering of a ReviewApp file, and a preview of what its
//! lifecycle policy does with the pull request described by the flags.
//!
//! The objects go to stdout (multi-document YAML, as before); the preview goes to stderr, so
//! stdout stays exactly what the applier would apply and a name or label from the command line
//! can never end up in it. Objects print even when the policy skips the pull request or the
//! gate holds it: the preview says so, and a platform team sees both what a pull request would
//! get and why it would not.

use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context, bail};
use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::EnvVar;
use kubetempura_common::check::{CheckFact, CheckKind, CheckState, Gate, merge_fact};
use kubetempura_common::crd::{ReviewApp, ReviewAppPolicy, ReviewAppSpec, WaitFor};
use kubetempura_common::event::{EVENT_SCHEMA_VERSION, PrAction, PrEvent, Repository, is_full_sha};
use kubetempura_common::naming::RepoKey;
use kubetempura_common::policy::{Decision, GroupKind, ObjectPolicy, builtin_scope, decide};
use kubetempura_common::render::{RenderContext, Variables, render_resources};
use serde::Deserialize;

/// Arguments of `kubetempura render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// ReviewApp manifest to render (`-` for standard input); may hold several YAML documents.
    #[arg(long, short = 'f')]
    pub file: PathBuf,
    /// Pull request number ({{PR_NUMBER}}).
    #[arg(long)]
    pub pr: String,
    /// Full 40-character head commit SHA ({{COMMIT_REF}}, {{COMMIT_REF_SHORT}}).
    #[arg(long)]
    pub sha: String,
    /// Head branch ({{HEAD_BRANCH}}, {{HEAD_BRANCH_SLUG}}).
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Base branch ({{BASE_BRANCH}}).
    #[arg(long, default_value = "main")]
    pub base: String,
    /// Pull request author ({{PR_AUTHOR}}).
    #[arg(long, default_value = "octocat")]
    pub author: String,
    /// Pull request title ({{PR_TITLE}}).
    #[arg(long, default_value = "")]
    pub title: String,
    /// Namespace for ReviewApps that do not set metadata.namespace.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// Allow a cluster-scoped or privileged kind, as the applier's operator would
    /// (Kind.group, e.g. ClusterRole.rbac.authorization.k8s.io). Repeatable.
    #[arg(long = "allow-kind", value_name = "KIND.GROUP")]
    pub allow_kinds: Vec<GroupKind>,
    /// A label on the pull request, for the policy preview (repeatable).
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// The pull request is a draft (policy preview).
    #[arg(long)]
    pub draft: bool,
    /// The head branch lives in a fork (`<author>/<name>`) (policy preview).
    #[arg(long)]
    pub fork: bool,
    /// A check result on the head commit, for the spec.waitFor preview: KIND:NAME=STATE with
    /// KIND check-run, check-suite, workflow or status and STATE success, failure or pending,
    /// e.g. `check-run:build=success` (repeatable; a later result of the same check wins).
    #[arg(long = "check", value_name = "KIND:NAME=STATE")]
    pub checks: Vec<CheckArg>,
    /// Set an environment variable in every container and init container of the rendered
    /// workloads, as the PR's spec.envVars do (repeatable; a later --env of the same name wins)
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<EnvArg>,
}

/// One `--env`: an environment variable set by value, as an entry of a PR's `spec.envVars`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvArg {
    pub name: String,
    pub value: String,
}

impl FromStr for EnvArg {
    type Err = String;

    /// `NAME=VALUE`, split at the first `=` (the value may hold `=` and be empty). The name is
    /// what Kubernetes accepts: non-empty printable ASCII, `=` excepted.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not NAME=VALUE (e.g. LOG_LEVEL=debug)"))?;
        if name.is_empty() {
            return Err(format!("{s:?} is not NAME=VALUE: the name is empty"));
        }
        if !name.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
            return Err(format!(
                "{name:?} is not an environment variable name: printable ASCII characters only"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            value: value.to_owned(),
        })
    }
}

/// The `--env` flags as `envVars`, one per name: a later flag of the same name wins.
fn env_vars(flags: &[EnvArg]) -> Vec<EnvVar> {
    let mut vars: Vec<EnvVar> = Vec::with_capacity(flags.len());
    for flag in flags {
        let var = EnvVar {
            name: flag.name.clone(),
            value: Some(flag.value.clone()),
            value_from: None,
        };
        match vars.iter_mut().find(|v| v.name == flag.name) {
            Some(earlier) => *earlier = var,
            None => vars.push(var),
        }
    }
    vars
}

/// One `--check`: a result of a named check on the head commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckArg {
    pub kind: CheckKind,
    pub name: String,
    pub state: CheckState,
}

impl FromStr for CheckArg {
    type Err = String;

    /// `KIND:NAME=STATE`; the name may hold `:` and `=` (a status context such as
    /// `ci/circleci: build`): the kind ends at the first `:`, the state starts after the last `=`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || format!("{s:?} is not KIND:NAME=STATE (e.g. check-run:build=success)");
        let (kind, rest) = s.split_once(':').ok_or_else(usage)?;
        let (name, state) = rest.rsplit_once('=').ok_or_else(usage)?;
        let kind = match kind {
            "check-run" => CheckKind::CheckRun,
            "check-suite" => CheckKind::CheckSuite,
            "workflow" => CheckKind::Workflow,
            "status" => CheckKind::Status,
            _ => {
                return Err(format!(
                    "{kind:?} is not a check kind: check-run, check-suite, workflow or status"
                ));
            }
        };
        let state = match state {
            "success" => CheckState::Success,
            "failure" => CheckState::Failure,
            "pending" => CheckState::Pending,
            _ => {
                return Err(format!(
                    "{state:?} is not a check state: success, failure or pending"
                ));
            }
        };
        if name.is_empty() {
            return Err(usage());
        }
        Ok(Self {
            kind,
            name: name.to_owned(),
            state,
        })
    }
}

/// Renders every ReviewApp in `args.file`, writing objects to `out` and warnings to `err`.
pub fn run(args: &RenderArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<()> {
    let pr: u64 = args
        .pr
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("--pr {:?} is not a pull request number", args.pr))?;
    if !is_full_sha(&args.sha) {
        bail!(
            "--sha {:?} is not a full 40-character hex commit SHA",
            args.sha
        );
    }
    let text = crate::cli::read_input(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let apps = parse_review_apps(&text).with_context(|| format!("{}", args.file.display()))?;
    let policy = ObjectPolicy::allowing(args.allow_kinds.iter().cloned());
    let env_vars = env_vars(&args.env);
    let scope_of = |api_version: &str, kind: &str| {
        Some(builtin_scope(&GroupKind::from_api_version(
            api_version,
            kind,
        )))
    };
    for app in apps {
        let name = app.metadata.name.clone().unwrap_or_default();
        let namespace = app
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| args.namespace.clone());
        let repo = RepoKey::parse(&app.spec.github_repository).with_context(|| {
            format!(
                "ReviewApp {name}: githubRepository {:?} is not a repository URL",
                app.spec.github_repository
            )
        })?;
        // Written once the templates render: an invalid one stays a one-line error.
        let preview = preview(
            &app,
            &namespace,
            &pull_request(args, pr, &repo),
            &args.checks,
        );
        let vars = Variables {
            pr_number: pr,
            commit_ref: args.sha.to_ascii_lowercase(),
            head_branch: args.branch.clone(),
            base_branch: args.base.clone(),
            repository_owner: repo.owner().to_owned(),
            repository_name: repo.name().to_owned(),
            author: args.author.clone(),
            title: args.title.clone(),
            review_app: name.clone(),
            namespace,
        };
        let rendered = render_resources(
            &app.spec.resources,
            &vars,
            &RenderContext {
                policy: &policy,
                scope_of: &scope_of,
                owner: None,
                env_vars: &env_vars,
            },
        )
        .with_context(|| format!("ReviewApp {name}"))?;
        write!(err, "{preview}")?;
        for w in &rendered.warnings {
            writeln!(err, "warning: ReviewApp {name}: {w}")?;
        }
        for obj in &rendered.objects {
            writeln!(out, "---")?;
            write!(out, "{}", serde_yaml::to_string(&obj.object)?)?;
        }
    }
    Ok(())
}

/// The pull request the flags describe, as the webhook would have normalised it.
fn pull_request(args: &RenderArgs, number: u64, repo: &RepoKey) -> PrEvent {
    let (owner, name) = (repo.owner(), repo.name());
    let head_owner = if args.fork { &args.author } else { owner };
    PrEvent {
        version: EVENT_SCHEMA_VERSION,
        delivery_id: "kubetempura-render".to_owned(),
        event: "pull_request".to_owned(),
        action: PrAction::Opened,
        repository: Repository {
            full_name: format!("{owner}/{name}"),
            owner: owner.to_owned(),
            name: name.to_owned(),
            html_url: format!("https://github.com/{owner}/{name}"),
        },
        number,
        title: args.title.clone(),
        head_sha: args.sha.to_ascii_lowercase(),
        head_ref: args.branch.clone(),
        head_repository: Some(format!("{head_owner}/{name}")),
        base_ref: args.base.clone(),
        fork: args.fork,
        draft: args.draft,
        state: "open".to_owned(),
        merged: false,
        labels: args.labels.clone(),
        author: args.author.clone(),
        author_association: "MEMBER".to_owned(),
        sender: None,
        updated_at: DateTime::<Utc>::UNIX_EPOCH,
        received_at: DateTime::<Utc>::UNIX_EPOCH,
    }
}

/// What the applier would do with `event` under `app`'s lifecycle policy: each filter of
/// `spec.policy` met or not (and why), the `spec.waitFor` gate against `checks`, expiry and the
/// cap, and the phase the environment would take. One text block, for stderr.
fn preview(app: &ReviewApp, namespace: &str, event: &PrEvent, checks: &[CheckArg]) -> String {
    let spec = &app.spec;
    let name = app.metadata.name.as_deref().unwrap_or_default();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let labels: Vec<String> = event.labels.iter().map(|l| format!("{l:?}")).collect();
    let mut out = format!(
        "ReviewApp {namespace}/{name}, pull request #{} (head {:?}, base {:?}, labels [{}], draft: {}, fork: {}):\n",
        event.number,
        event.head_ref,
        event.base_ref,
        labels.join(", "),
        yes_no(event.draft),
        yes_no(event.fork),
    );
    let decision = decide(spec.policy.as_ref(), event);
    match &decision {
        Decision::Deploy => out.push_str("  policy: deploys this pull request\n"),
        Decision::Skip(reason) => {
            out.push_str(&format!("  policy: SKIPS this pull request: {reason}\n"));
        }
    }
    for (filter, setting, only) in filters(spec.policy.as_ref()) {
        let verdict = match decide(Some(&only), event) {
            Decision::Deploy => "met".to_owned(),
            Decision::Skip(reason) => format!("not met: {reason}"),
        };
        out.push_str(&format!("    {filter} ({setting}): {verdict}\n"));
    }
    let gate = gate_preview(spec.gate(), checks, &mut out);
    lifecycle_preview(spec, &mut out);
    let phase = match (&decision, gate) {
        (Decision::Skip(_), _) => {
            "Skipped: the applier would apply none of the objects printed".to_owned()
        }
        (_, Gate::Failed { check }) => format!(
            "Blocked: {} failed; the objects printed are not applied (an earlier commit keeps serving)",
            check.describe()
        ),
        (_, Gate::Pending(waiting)) => format!(
            "Waiting: the objects printed are applied once the gate passes (waiting for {})",
            waiting.join(", ")
        ),
        (_, Gate::Passed) => match spec.max_active {
            Some(n) => format!(
                "Applied: the objects printed (Queued instead while {n} environments of this ReviewApp are deployed)"
            ),
            None => "Applied: the objects printed".to_owned(),
        },
    };
    out.push_str(&format!("  phase: {phase}\n"));
    out
}

/// Each filter of a policy (defaults when `None`): its name, its setting, and a policy holding
/// that filter alone, so that [`decide`] judges each one and its reason is the applier's.
fn filters(policy: Option<&ReviewAppPolicy>) -> [(&'static str, String, ReviewAppPolicy); 5] {
    let p = policy.cloned().unwrap_or_default();
    // Forks are refused by default: every other filter is judged with forks allowed.
    let alone = ReviewAppPolicy {
        allow_forks: Some(true),
        ..ReviewAppPolicy::default()
    };
    let list = |v: &[String], empty: &str| {
        if v.is_empty() {
            empty.to_owned()
        } else {
            v.join(", ")
        }
    };
    [
        (
            "forks",
            format!("allowForks: {}", p.allow_forks.unwrap_or(false)),
            ReviewAppPolicy {
                allow_forks: p.allow_forks,
                ..ReviewAppPolicy::default()
            },
        ),
        (
            "drafts",
            format!("deployDrafts: {}", p.deploy_drafts.unwrap_or(true)),
            ReviewAppPolicy {
                deploy_drafts: p.deploy_drafts,
                ..alone.clone()
            },
        ),
        (
            "labels",
            format!(
                "required: {}; excluded: {}",
                list(&p.required_labels, "none"),
                list(&p.excluded_labels, "none")
            ),
            ReviewAppPolicy {
                required_labels: p.required_labels.clone(),
                excluded_labels: p.excluded_labels.clone(),
                ..alone.clone()
            },
        ),
        (
            "head branch",
            format!("headBranches: {}", list(&p.head_branches, "any")),
            ReviewAppPolicy {
                head_branches: p.head_branches.clone(),
                ..alone.clone()
            },
        ),
        (
            "base branch",
            format!("baseBranches: {}", list(&p.base_branches, "any")),
            ReviewAppPolicy {
                base_branches: p.base_branches.clone(),
                ..alone
            },
        ),
    ]
}
/// Writes the `spec.waitFor` gate (none when `wait_for` is `None`) against the `--check`
/// results to `out`: its verdict, each awaited check's result, and the results it ignores.
fn gate_preview(wait_for: Option<&WaitFor>, checks: &[CheckArg], out: &mut String) -> Gate {
    let mut facts = Vec::new();
    for (i, c) in checks.iter().enumerate() {
        // Stamped in flag order, so a later result of the same check wins, as a re-run does.
        let at = DateTime::<Utc>::UNIX_EPOCH + TimeDelta::seconds(i as i64);
        let (kind, name, state) = (c.kind, c.name.clone(), c.state);
        let fact = CheckFact {
            kind,
            name,
            state,
            url: None,
            conclusion: None,
            at,
        };
        merge_fact(&mut facts, fact);
    }
    let wait_for = wait_for.cloned().unwrap_or_default();
    let gate = wait_for.evaluate(&facts);
    let verdict = match &gate {
        _ if wait_for.is_empty() => {
            "none (spec.waitFor awaits nothing: every push deploys at once)".to_owned()
        }
        Gate::Passed => "passed".to_owned(),
        Gate::Pending(waiting) => format!("pending: waiting for {}", waiting.join(", ")),
        Gate::Failed { check } => format!("failed: {} failed", check.describe()),
    };
    out.push_str(&format!("  gate: {verdict}\n"));
    for (kind, name) in wait_for.awaited() {
        let result = facts.iter().find(|f| f.kind == kind && f.name == name);
        let state = result.map_or("no result", |f| match f.state {
            CheckState::Success => "success",
            CheckState::Failure => "failure",
            CheckState::Pending => "pending",
        });
        out.push_str(&format!("    {} `{name}`: {state}\n", kind.describe()));
    }
    for f in facts.iter().filter(|f| !wait_for.awaits(f.kind, &f.name)) {
        out.push_str(&format!(
            "    --check {}: not awaited, ignored\n",
            f.describe()
        ));
    }
    gate
}

/// Writes what `expireAfter`, `wakeLabel` and `maxActive` do, for those set, to `out`.
fn lifecycle_preview(spec: &ReviewAppSpec, out: &mut String) {
    let wake = spec.wake_label.as_deref();
    match (spec.expire_after.as_deref(), spec.expire_after()) {
        (None, _) => {}
        (Some(raw), Some(_)) => {
            let how = wake.map_or(String::new(), |l| format!(" or adding the label {l:?}"));
            out.push_str(&format!(
                "  expireAfter {raw}: removed after {raw} without a push (phase Expired); a push{how} brings it back\n"
            ));
        }
        (Some(raw), None) => out.push_str(&format!(
            "  expireAfter {raw:?}: not a duration the applier reads; environments do not expire\n"
        )),
    }
    if let (Some(label), None) = (wake, spec.expire_after()) {
        out.push_str(&format!(
            "  wakeLabel {label:?}: no effect without expireAfter\n"
        ));
    }
    if let Some(n) = spec.max_active {
        out.push_str(&format!(
            "  maxActive {n}: at most {n} environments of this ReviewApp are deployed at once; the others wait in phase Queued\n"
        ));
    }
}

/// Reads every YAML document of `text` as a ReviewApp; empty documents are skipped.
pub fn parse_review_apps(text: &str) -> anyhow::Result<Vec<ReviewApp>> {
    let mut apps = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(doc)
            .with_context(|| format!("document {}: invalid YAML", i + 1))?;
        if value.is_null() {
            continue;
        }
        let api_version = value
            .get("apiVersion")
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or("");
        let kind = value
            .get("kind")
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or("");
        if api_version != "kubetempura.mercari.com/v1" || kind != "ReviewApp" {
            bail!(
                "document {}: expected a kubetempura.mercari.com/v1 ReviewApp, found {kind:?} of {api_version:?}",
                i + 1
            );
        }
        let app: ReviewApp = serde_yaml::from_value(value)
            .with_context(|| format!("document {}: invalid ReviewApp", i + 1))?;
        apps.push(app);
    }
    if apps.is_empty() {
        bail!("no ReviewApp found");
    }
    Ok(apps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_flags_split_at_the_first_equals_sign_and_need_a_name() {
        let parse = |s: &str| s.parse::<EnvArg>();
        assert_eq!(
            parse("DSN=postgres://db?sslmode=off"),
            Ok(EnvArg {
                name: "DSN".into(),
                value: "postgres://db?sslmode=off".into()
            })
        );
        assert_eq!(
            parse("EMPTY="),
            Ok(EnvArg {
                name: "EMPTY".into(),
                value: String::new()
            })
        );
        assert_eq!(
            parse("com.example.x=1").map(|e| e.name),
            Ok("com.example.x".into())
        );
        for (bad, why) in [
            ("FOO", "is not NAME=VALUE (e.g. LOG_LEVEL=debug)"),
            ("=x", "the name is empty"),
            ("A\tB=x", "printable ASCII characters only"),
            ("CAF\u{e9}=x", "printable ASCII characters only"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_later_env_flag_of_the_same_name_wins_in_the_place_of_the_first() {
        let flags: Vec<EnvArg> = ["A=1", "B=2", "A=3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let vars = env_vars(&flags);
        let pairs: Vec<(&str, Option<&str>)> = vars
            .iter()
            .map(|v| (v.name.as_str(), v.value.as_deref()))
            .collect();
        assert_eq!(pairs, [("A", Some("3")), ("B", Some("2"))]);
        assert!(vars.iter().all(|v| v.value_from.is_none()));
    }
}
