//! `kubetempura send-event`: sign and POST a synthetic `pull_request` delivery, or a check result
//! (`check_run`, `check_suite`, `workflow_run`, `status`), exactly as GitHub would send it, to
//! smoke-test a deployment (or the local demo) and to play build-gated rollouts (`spec.waitFor`).

use std::io::Write;

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use kubetempura_common::check::CheckKind;
use kubetempura_common::event::is_full_sha;
use kubetempura_common::naming::RepoKey;
use kubetempura_common::signature::sign;
use serde_json::json;

/// Arguments of `kubetempura send-event`.
#[derive(Debug, Clone, clap::Args)]
pub struct SendEventArgs {
    /// Webhook URL (the function URL, or `http://127.0.0.1:<port>/lambda-url/webhook` locally).
    #[arg(long, env = "WEBHOOK_URL")]
    pub url: String,
    /// Webhook secret to sign with (the first one when several are configured).
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Repository URL, e.g. https://github.com/mercari/not-exists.
    #[arg(long)]
    pub repository: String,
    /// The event (X-GitHub-Event): pull_request, or a check result for build-gated ReviewApps
    /// (check_run, check_suite, workflow_run, status).
    #[arg(long, default_value = "pull_request", value_parser = EVENTS)]
    pub event: String,
    /// Pull request number: exactly one for pull_request; for check_run, check_suite and
    /// workflow_run the pull requests the check names (repeatable; none, as for a fork's
    /// checks, groups the result by commit); never for status.
    #[arg(long = "pr", value_name = "NUMBER")]
    pub prs: Vec<u64>,
    /// Full 40-character head commit SHA (for a check: the commit it ran on).
    #[arg(long)]
    pub sha: String,
    /// pull_request action: opened, synchronize, closed, reopened, labeled …
    #[arg(long, default_value = "opened")]
    pub action: String,
    /// Check events: the name `spec.waitFor` awaits (a check run's or workflow's name, a check
    /// suite's GitHub App slug, a status's context).
    #[arg(long, value_name = "NAME")]
    pub check_name: Option<String>,
    /// Check events: how the check finished (success, failure, neutral, skipped, cancelled,
    /// timed_out …; for a status: success, failure or error). Absent: still running (a pending
    /// status).
    #[arg(long)]
    pub conclusion: Option<String>,
    /// Check events: where the check shows (its html_url, or a status's target_url).
    #[arg(long, value_name = "URL")]
    pub check_url: Option<String>,
    /// Head branch.
    #[arg(long, default_value = "feature")]
    pub branch: String,
    /// Base branch.
    #[arg(long, default_value = "main")]
    pub base: String,
    /// With --action edited: the base branch before the edit (GitHub's `changes.base.ref.from`;
    /// kubetempura acts on an `edited` delivery only when the base branch changed).
    #[arg(long, value_name = "BRANCH")]
    pub base_from: Option<String>,
    /// Pull request author.
    #[arg(long, default_value = "octocat")]
    pub author: String,
    /// Pull request title.
    #[arg(long, default_value = "A pull request")]
    pub title: String,
    /// A label on the pull request (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Mark the pull request as a draft.
    #[arg(long)]
    pub draft: bool,
    /// Send the head branch from a fork (`<author>/<name>`).
    #[arg(long)]
    pub fork: bool,
    /// With --action closed: the pull request was merged.
    #[arg(long)]
    pub merged: bool,
    /// The pull request's updated_at, or when the check reached its state (RFC 3339; default
    /// now).
    #[arg(long)]
    pub updated_at: Option<DateTime<Utc>>,
    /// X-GitHub-Delivery (default: a fresh id).
    #[arg(long)]
    pub delivery_id: Option<String>,
}

/// The facts of a synthetic delivery.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub repository: String,
    pub pr: u64,
    pub sha: String,
    pub action: String,
    pub branch: String,
    pub base: String,
    /// With action `edited`: the base branch before the edit.
    pub base_from: Option<String>,
    pub author: String,
    pub title: String,
    pub labels: Vec<String>,
    pub draft: bool,
    pub fork: bool,
    pub merged: bool,
    pub updated_at: DateTime<Utc>,
}

impl Delivery {
    /// A delivery with defaults for everything but the repository, number, head SHA and action.
    pub fn new(repository: &str, pr: u64, sha: &str, action: &str) -> Self {
        Self {
            repository: repository.to_owned(),
            pr,
            sha: sha.to_owned(),
            action: action.to_owned(),
            branch: "feature".to_owned(),
            base: "main".to_owned(),
            base_from: None,
            author: "octocat".to_owned(),
            title: "A pull request".to_owned(),
            labels: Vec::new(),
            draft: false,
            fork: false,
            merged: false,
            updated_at: Utc::now(),
        }
    }

    /// The JSON payload GitHub would send (the fields kubetempura reads, in GitHub's shape).
    pub fn payload(&self) -> anyhow::Result<Vec<u8>> {
        let repo = PayloadRepository::parse(&self.repository)?;
        let (url, name, full_name) = (&repo.html_url, &repo.name, &repo.full_name);
        let head_repo = if self.fork {
            format!("{}/{name}", self.author)
        } else {
            full_name.clone()
        };
        let updated = self.updated_at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let closed = self.action == "closed";
        let mut body = json!({
            "action": self.action,
            "number": self.pr,
            "pull_request": {
                "url": format!("https://api.github.com/repos/{full_name}/pulls/{}", self.pr),
                "html_url": format!("{url}/pull/{}", self.pr),
                "number": self.pr,
                "state": if closed { "closed" } else { "open" },
                "title": self.title,
                "user": {"login": self.author},
                "draft": self.draft,
                "merged": closed && self.merged,
                "merged_at": if closed && self.merged { json!(updated) } else { json!(null) },
                "closed_at": if closed { json!(updated) } else { json!(null) },
                "updated_at": updated,
                "author_association": if self.fork { "CONTRIBUTOR" } else { "MEMBER" },
                "labels": self.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
                "head": {"ref": self.branch, "sha": self.sha, "repo": {"full_name": head_repo}},
                "base": {"ref": self.base, "sha": "0000000000000000000000000000000000000000", "repo": {"full_name": full_name}},
            },
            "repository": repo.json(),
            "sender": {"login": self.author},
        });
        if let Some(from) = &self.base_from {
            body["changes"] = json!({"base": {"ref": {"from": from}, "sha": {"from": "0000000000000000000000000000000000000000"}}});
        }
        Ok(serde_json::to_vec(&body)?)
    }
}

/// The events `send-event` can send.
pub const EVENTS: [&str; 5] = [
    "pull_request",
    "check_run",
    "check_suite",
    "workflow_run",
    "status",
];

/// The `repository` object of a payload, from a repository URL.
struct PayloadRepository {
    owner: String,
    name: String,
    full_name: String,
    html_url: String,
}

impl PayloadRepository {
    fn parse(repository: &str) -> anyhow::Result<Self> {
        let key = RepoKey::parse(repository)
            .with_context(|| format!("--repository {repository:?} is not a repository URL"))?;
        let html_url = repository.trim_end_matches('/').trim_end_matches(".git");
        let mut parts = html_url.rsplit('/');
        let name = parts.next().unwrap_or(key.name()).to_owned();
        let owner = parts.next().unwrap_or(key.owner()).to_owned();
        Ok(Self {
            full_name: format!("{owner}/{name}"),
            html_url: html_url.to_owned(),
            owner,
            name,
        })
    }

    /// GitHub's numeric repository id: a stand-in derived from the name, stable across
    /// deliveries (check payloads tell a pull request of this repository by it).
    fn id(&self) -> u64 {
        let digest = sha2::Digest::finalize(sha2::Digest::chain_update(
            sha2::Sha256::default(),
            self.full_name.to_ascii_lowercase(),
        ));
        u64::from(u32::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3],
        ]))
    }

    fn api_url(&self) -> String {
        format!("https://api.github.com/repos/{}", self.full_name)
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "id": self.id(),
            "name": self.name,
            "full_name": self.full_name,
            "url": self.api_url(),
            "html_url": self.html_url,
            "owner": {"login": self.owner},
        })
    }

    /// GitHub's "repo-ref" of this repository inside a check's `pull_requests`.
    fn reference(&self) -> serde_json::Value {
        json!({"id": self.id(), "url": self.api_url(), "name": self.name})
    }
}

/// The facts of a synthetic check result delivery: a `check_run`, `check_suite`,
/// `workflow_run` or `status`.
#[derive(Debug, Clone)]
pub struct CheckDelivery {
    pub repository: String,
    /// The commit the check ran on.
    pub sha: String,
    pub kind: CheckKind,
    /// The name `spec.waitFor` awaits: a check run's or workflow's name, a check suite's App
    /// slug, a status's context.
    pub name: String,
    /// How the check finished (`success`, `failure`, `neutral` …; a status's `success`,
    /// `failure` or `error`); `None` while it runs (a `pending` status).
    pub conclusion: Option<String>,
    /// The check's page (a status's `target_url`); a run's default is its page on GitHub.
    pub url: Option<String>,
    /// The pull requests the payload names (never any for a status).
    pub pull_requests: Vec<u64>,
    /// When the check reached its state.
    pub updated_at: DateTime<Utc>,
}

/// The id of the synthetic check run, suite or workflow run.
const CHECK_ID: u64 = 4_000_000_001;

impl CheckDelivery {
    /// A successful check with defaults for everything but the repository, commit, kind and name.
    pub fn new(repository: &str, sha: &str, kind: CheckKind, name: &str) -> Self {
        Self {
            repository: repository.to_owned(),
            sha: sha.to_owned(),
            kind,
            name: name.to_owned(),
            conclusion: Some("success".to_owned()),
            url: None,
            pull_requests: Vec::new(),
            updated_at: Utc::now(),
        }
    }

    /// The GitHub event (`X-GitHub-Event`) of the delivery.
    pub fn event(&self) -> &'static str {
        self.kind.github_event()
    }

    /// The payload's `action`: the one GitHub sends with a result (`completed`) or a running
    /// check (`created`, `requested`, `in_progress`); none for a status.
    pub fn action(&self) -> Option<&'static str> {
        let done = self.conclusion.is_some();
        match self.kind {
            CheckKind::CheckRun => Some(if done { "completed" } else { "created" }),
            CheckKind::CheckSuite => Some(if done { "completed" } else { "requested" }),
            CheckKind::Workflow => Some(if done { "completed" } else { "in_progress" }),
            CheckKind::Status => None,
        }
    }

    /// The JSON payload GitHub would send (the fields kubetempura reads, in GitHub's shape).
    pub fn payload(&self) -> anyhow::Result<Vec<u8>> {
        let repo = PayloadRepository::parse(&self.repository)?;
        let at = self.updated_at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let (status, completed_at) = match &self.conclusion {
            Some(_) => ("completed", json!(at)),
            None => ("in_progress", json!(null)),
        };
        let pull_requests: Vec<serde_json::Value> = self
            .pull_requests
            .iter()
            .map(|n| {
                json!({
                    "url": format!("{}/pulls/{n}", repo.api_url()),
                    "id": CHECK_ID + n,
                    "number": n,
                    "head": {"ref": "feature", "sha": self.sha, "repo": repo.reference()},
                    "base": {"ref": "main", "sha": "0000000000000000000000000000000000000000", "repo": repo.reference()},
                })
            })
            .collect();
        let sender = json!({"login": "octocat"});
        let mut body = match self.kind {
            CheckKind::CheckRun => json!({
                "check_run": {
                    "id": CHECK_ID,
                    "name": self.name,
                    "head_sha": self.sha,
                    "status": status,
                    "conclusion": self.conclusion,
                    "html_url": self.url.clone().unwrap_or_else(|| format!("{}/runs/{CHECK_ID}", repo.html_url)),
                    "details_url": self.url,
                    "started_at": at,
                    "completed_at": completed_at,
                    "pull_requests": pull_requests,
                    "app": {"slug": "github-actions", "name": "GitHub Actions"},
                },
            }),
            CheckKind::CheckSuite => json!({
                "check_suite": {
                    "id": CHECK_ID,
                    "head_branch": "feature",
                    "head_sha": self.sha,
                    "status": if self.conclusion.is_some() { "completed" } else { "queued" },
                    "conclusion": self.conclusion,
                    "pull_requests": pull_requests,
                    "app": {"slug": self.name, "name": self.name},
                    "created_at": at,
                    "updated_at": at,
                },
            }),
            CheckKind::Workflow => json!({
                "workflow_run": {
                    "id": CHECK_ID,
                    "name": self.name,
                    "head_branch": "feature",
                    "head_sha": self.sha,
                    "status": status,
                    "conclusion": self.conclusion,
                    "html_url": self.url.clone().unwrap_or_else(|| format!("{}/actions/runs/{CHECK_ID}", repo.html_url)),
                    "pull_requests": pull_requests,
                    "created_at": at,
                    "updated_at": at,
                },
                "workflow": {"id": CHECK_ID, "name": self.name},
            }),
            CheckKind::Status => {
                if !self.pull_requests.is_empty() {
                    bail!("a status names no pull request (GitHub groups it by commit)");
                }
                json!({
                    "id": CHECK_ID,
                    "sha": self.sha,
                    "name": repo.full_name,
                    "context": self.name,
                    "state": self.conclusion.as_deref().unwrap_or("pending"),
                    "target_url": self.url,
                    "description": null,
                    "commit": {"sha": self.sha},
                    "branches": [],
                    "created_at": at,
                    "updated_at": at,
                })
            }
        };
        if let Some(action) = self.action() {
            body["action"] = json!(action);
        }
        body["repository"] = repo.json();
        body["sender"] = sender;
        Ok(serde_json::to_vec(&body)?)
    }
}

/// A fresh delivery id shaped like GitHub's (a UUID).
pub fn new_delivery_id() -> String {
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let h = sha2::Digest::finalize(sha2::Digest::chain_update(
        sha2::Sha256::default(),
        format!("{nanos}-{}", std::process::id()),
    ))
    .to_vec();
    let x = hex::encode(&h[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// Signs and POSTs a delivery; returns the HTTP status and the response body.
pub async fn post(
    url: &str,
    secret: &str,
    event: &str,
    delivery_id: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    // reqwest's rustls may be built without a provider (the notifier's TLS, unified in a
    // workspace build): the process default is kube's, aws-lc-rs.
    crate::kube_client::install_crypto_provider();
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/kubetempura-send-event")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery_id)
        .header("x-hub-signature-256", sign(secret.as_bytes(), body))
        .body(body.to_vec())
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await.unwrap_or_default()))
}

/// The event and payload `send-event` sends for its arguments.
pub fn delivery_of(args: &SendEventArgs) -> anyhow::Result<(&'static str, Vec<u8>)> {
    if !is_full_sha(&args.sha) {
        bail!(
            "--sha {:?} is not a full 40-character hex commit SHA",
            args.sha
        );
    }
    let sha = args.sha.to_ascii_lowercase();
    let updated_at = args.updated_at.unwrap_or_else(Utc::now);
    let Some(kind) = CheckKind::from_github_event(&args.event) else {
        let [pr] = args.prs[..] else {
            bail!("--event pull_request takes exactly one --pr");
        };
        let delivery = Delivery {
            repository: args.repository.clone(),
            pr,
            sha,
            action: args.action.clone(),
            branch: args.branch.clone(),
            base: args.base.clone(),
            base_from: args.base_from.clone(),
            author: args.author.clone(),
            title: args.title.clone(),
            labels: args.labels.clone(),
            draft: args.draft,
            fork: args.fork,
            merged: args.merged,
            updated_at,
        };
        return Ok(("pull_request", delivery.payload()?));
    };
    let name = args
        .check_name
        .clone()
        .with_context(|| format!("--event {} needs --check-name", args.event))?;
    let delivery = CheckDelivery {
        repository: args.repository.clone(),
        sha,
        kind,
        name,
        conclusion: args.conclusion.clone(),
        url: args.check_url.clone(),
        pull_requests: args.prs.clone(),
        updated_at,
    };
    Ok((delivery.event(), delivery.payload()?))
}

/// Runs `send-event`.
pub async fn run(args: &SendEventArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let (event, payload) = delivery_of(args)?;
    let id = args.delivery_id.clone().unwrap_or_else(new_delivery_id);
    let (status, body) = post(&args.url, &args.secret, event, &id, &payload).await?;
    writeln!(out, "delivery {id}: HTTP {status} {}", body.trim())?;
    if !(200..300).contains(&status) {
        bail!("the webhook answered HTTP {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use kubetempura_common::check::{CheckEvent, CheckState};
    use kubetempura_common::event::{
        EVENT_SCHEMA_VERSION, Normalized, PrAction, Repository, normalize,
    };

    #[test]
    fn synthetic_deliveries_normalise_like_githubs() {
        let mut d = Delivery::new(
            "https://github.com/Mercari/not-exists.git",
            123,
            "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7",
            "closed",
        );
        d.merged = true;
        d.labels = vec!["preview".into()];
        d.fork = true;
        let Normalized::Event(e) =
            normalize("pull_request", "d", &d.payload().unwrap(), Utc::now()).unwrap()
        else {
            panic!("ignored")
        };
        assert_eq!(e.action, PrAction::Closed);
        assert!(e.merged && e.fork);
        assert_eq!(e.repository.full_name, "Mercari/not-exists");
        assert_eq!(
            e.repository.html_url,
            "https://github.com/Mercari/not-exists"
        );
        assert_eq!(e.message_group_id(), "Mercari/not-exists#123");
        assert_eq!(e.labels, ["preview"]);
        assert_eq!(e.head_repository.as_deref(), Some("octocat/not-exists"));
    }

    #[test]
    fn delivery_ids_look_like_uuids_and_differ() {
        let (a, b) = (new_delivery_id(), new_delivery_id());
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_ne!(a, b);
    }

    #[test]
    fn bad_repositories_are_refused() {
        assert!(
            Delivery::new("not a url", 1, "0", "opened")
                .payload()
                .is_err()
        );
    }

    const SHA: &str = "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7";

    fn checks_of(event: &str, payload: &[u8]) -> Vec<CheckEvent> {
        match normalize(event, "d", payload, Utc::now()).unwrap() {
            Normalized::Checks(c) => c,
            other => panic!("{event}: not checks: {other:?}"),
        }
    }

    #[test]
    fn synthetic_check_deliveries_normalise_to_the_check_events_they_describe() {
        let at: DateTime<Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
        let html = "https://github.com/Mercari/not-exists";
        let repository = Repository {
            full_name: "Mercari/not-exists".into(),
            owner: "Mercari".into(),
            name: "not-exists".into(),
            html_url: html.into(),
        };
        let runs = format!("{html}/runs/{CHECK_ID}");
        let workflow_runs = format!("{html}/actions/runs/{CHECK_ID}");
        let suite = format!("{html}/commit/{SHA}/checks");
        let delivery = |kind,
                        name: &str,
                        conclusion: Option<&str>,
                        url: Option<&str>,
                        prs: &[u64]| {
            let mut d =
                CheckDelivery::new("https://github.com/Mercari/not-exists.git", SHA, kind, name);
            d.conclusion = conclusion.map(str::to_owned);
            d.url = url.map(str::to_owned);
            d.pull_requests = prs.to_vec();
            d.updated_at = at;
            d
        };
        let (ci_1, ci_7) = ("https://ci.example.com/1", "https://ci.example.com/7");
        // (delivery, state, url expected)
        let cases = [
            (
                delivery(CheckKind::CheckRun, "build", Some("success"), None, &[7]),
                CheckState::Success,
                Some(runs.as_str()),
            ),
            (
                delivery(CheckKind::CheckRun, "build", None, Some(ci_1), &[]),
                CheckState::Pending,
                Some(ci_1),
            ),
            (
                delivery(
                    CheckKind::CheckSuite,
                    "github-actions",
                    Some("failure"),
                    None,
                    &[7],
                ),
                CheckState::Failure,
                Some(&suite),
            ),
            (
                delivery(CheckKind::CheckSuite, "github-actions", None, None, &[]),
                CheckState::Pending,
                Some(&suite),
            ),
            (
                delivery(CheckKind::Workflow, "CI", Some("timed_out"), None, &[7]),
                CheckState::Failure,
                Some(&workflow_runs),
            ),
            (
                delivery(CheckKind::Workflow, "CI", None, None, &[]),
                CheckState::Pending,
                Some(&workflow_runs),
            ),
            (
                delivery(
                    CheckKind::Status,
                    "ci/circleci: build",
                    Some("success"),
                    Some(ci_7),
                    &[],
                ),
                CheckState::Success,
                Some(ci_7),
            ),
            (
                delivery(CheckKind::Status, "ci/circleci: build", None, None, &[]),
                CheckState::Pending,
                None,
            ),
        ];
        for (d, state, want_url) in cases {
            let checks = checks_of(d.event(), &d.payload().unwrap());
            let received_at = checks[0].received_at;
            let want = CheckEvent {
                version: EVENT_SCHEMA_VERSION,
                delivery_id: "d".into(),
                event: d.kind.github_event().into(),
                kind: d.kind,
                repository: repository.clone(),
                head_sha: SHA.into(),
                name: d.name.clone(),
                state,
                conclusion: match (d.kind, &d.conclusion) {
                    (CheckKind::Status, None) => Some("pending".into()),
                    (_, c) => c.clone(),
                },
                url: want_url.map(str::to_owned),
                pull_request: d.pull_requests.first().copied(),
                updated_at: at,
                received_at,
            };
            assert_eq!(checks, [want], "{:?} {:?}", d.kind, d.conclusion);
        }
    }

    #[test]
    fn a_check_naming_two_pull_requests_gives_an_event_for_each() {
        let mut d = CheckDelivery::new("https://github.com/o/r", SHA, CheckKind::CheckRun, "build");
        d.pull_requests = vec![7, 8];
        let groups: Vec<String> = checks_of("check_run", &d.payload().unwrap())
            .iter()
            .map(CheckEvent::message_group_id)
            .collect();
        assert_eq!(groups, ["o/r#7", "o/r#8"]);
        d.kind = CheckKind::Status;
        assert!(d.payload().is_err(), "a status names no pull request");
    }

    fn args(extra: &[&str]) -> SendEventArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: SendEventArgs,
        }
        let base = [
            "send-event",
            "--url",
            "http://127.0.0.1:9/",
            "--secret",
            "s",
            "--repository",
            "https://github.com/o/r",
            "--sha",
            SHA,
        ];
        Cli::try_parse_from(base.iter().chain(extra)).unwrap().args
    }

    #[test]
    fn the_command_line_sends_a_pull_request_by_default_and_checks_on_request() {
        let (event, payload) = delivery_of(&args(&["--pr", "7"])).unwrap();
        assert_eq!(event, "pull_request");
        let Normalized::Event(e) = normalize(event, "d", &payload, Utc::now()).unwrap() else {
            panic!("not a pull_request event")
        };
        assert_eq!((e.number, e.action), (7, PrAction::Opened));

        let (event, payload) = delivery_of(&args(&[
            "--event",
            "check_run",
            "--check-name",
            "build",
            "--conclusion",
            "success",
            "--pr",
            "7",
        ]))
        .unwrap();
        assert_eq!(event, "check_run");
        let c = &checks_of(event, &payload)[0];
        assert_eq!(
            (c.name.as_str(), c.state, c.pull_request),
            ("build", CheckState::Success, Some(7))
        );

        let (event, payload) = delivery_of(&args(&[
            "--event",
            "status",
            "--check-name",
            "ci",
            "--conclusion",
            "error",
            "--check-url",
            "https://ci.example.com/1",
        ]))
        .unwrap();
        let c = &checks_of(event, &payload)[0];
        assert_eq!(
            (c.kind, c.state, c.pull_request),
            (CheckKind::Status, CheckState::Failure, None)
        );
        assert_eq!(c.url.as_deref(), Some("https://ci.example.com/1"));
    }

    #[test]
    fn incomplete_command_lines_are_refused_with_the_reason() {
        let err = |extra: &[&str]| delivery_of(&args(extra)).unwrap_err().to_string();
        assert!(err(&[]).contains("exactly one --pr"));
        assert!(err(&["--pr", "1", "--pr", "2"]).contains("exactly one --pr"));
        assert!(err(&["--event", "check_suite"]).contains("--check-name"));
        assert!(
            err(&["--event", "status", "--check-name", "ci", "--pr", "1"])
                .contains("no pull request")
        );
        let mut bad_sha = args(&["--pr", "1"]);
        bad_sha.sha = "abc".into();
        assert!(
            delivery_of(&bad_sha)
                .unwrap_err()
                .to_string()
                .contains("--sha")
        );
    }
}
