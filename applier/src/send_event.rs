//! `kubetempura send-event`: sign and POST a synthetic `pull_request` delivery, exactly as
//! GitHub would send it, to smoke-test a deployment (or the local demo).

use std::io::Write;

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
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
    /// Pull request number.
    #[arg(long)]
    pub pr: u64,
    /// Full 40-character head commit SHA.
    #[arg(long)]
    pub sha: String,
    /// pull_request action: opened, synchronize, closed, reopened, labeled …
    #[arg(long, default_value = "opened")]
    pub action: String,
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
    /// The pull request's updated_at (RFC 3339; default now).
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
        let key = RepoKey::parse(&self.repository).with_context(|| {
            format!("--repository {:?} is not a repository URL", self.repository)
        })?;
        let url = self
            .repository
            .trim_end_matches('/')
            .trim_end_matches(".git");
        let (owner, name) = {
            let mut parts = url.rsplit('/');
            let name = parts.next().unwrap_or(key.name()).to_owned();
            let owner = parts.next().unwrap_or(key.owner()).to_owned();
            (owner, name)
        };
        let full_name = format!("{owner}/{name}");
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
            "repository": {"name": name, "full_name": full_name, "html_url": url, "owner": {"login": owner}},
            "sender": {"login": self.author},
        });
        if let Some(from) = &self.base_from {
            body["changes"] = json!({"base": {"ref": {"from": from}, "sha": {"from": "0000000000000000000000000000000000000000"}}});
        }
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
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
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

/// Runs `send-event`.
pub async fn run(args: &SendEventArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    if !is_full_sha(&args.sha) {
        bail!(
            "--sha {:?} is not a full 40-character hex commit SHA",
            args.sha
        );
    }
    let delivery = Delivery {
        repository: args.repository.clone(),
        pr: args.pr,
        sha: args.sha.to_ascii_lowercase(),
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
        updated_at: args.updated_at.unwrap_or_else(Utc::now),
    };
    let id = args.delivery_id.clone().unwrap_or_else(new_delivery_id);
    let (status, body) = post(
        &args.url,
        &args.secret,
        "pull_request",
        &id,
        &delivery.payload()?,
    )
    .await?;
    writeln!(out, "delivery {id}: HTTP {status} {}", body.trim())?;
    if !(200..300).contains(&status) {
        bail!("the webhook answered HTTP {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubetempura_common::event::{Normalized, PrAction, normalize};

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
}
