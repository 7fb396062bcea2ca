//! `kubetempura render`: offline rendering of a ReviewApp file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use kubetempura_common::crd::ReviewApp;
use kubetempura_common::event::is_full_sha;
use kubetempura_common::policy::{GroupKind, ObjectPolicy, builtin_scope};
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
        let repo = kubetempura_common::naming::RepoKey::parse(&app.spec.github_repository)
            .with_context(|| {
                format!(
                    "ReviewApp {name}: githubRepository {:?} is not a repository URL",
                    app.spec.github_repository
                )
            })?;
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
            },
        )
        .with_context(|| format!("ReviewApp {name}"))?;
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
