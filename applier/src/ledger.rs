//! The check ledger: the results of checks per commit, so a build gate does not depend on the
//! order in which check results and pushes arrive (a result may come before the push that makes
//! its commit the head, or before the pull request is even opened).
//!
//! One ConfigMap per repository in the applier's own namespace, `kubetempura-checks-<hash>`,
//! one key per commit SHA holding the JSON list of [`CheckFact`]s (the newest result of each
//! check). Only results some ReviewApp waits for are recorded. Entries older than
//! [`RETENTION`] and beyond [`MAX_COMMITS`] (oldest first) are dropped on each write. Writes are
//! conditional on the resourceVersion read, so concurrent writers (two replicas, two pull
//! requests' messages) never lose a result.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use kubetempura_common::check::{CheckFact, merge_fact};
use kubetempura_common::naming::RepoKey;
use sha2::Digest as _;

use crate::kubeapi::Failure;
use crate::reconcile::Ctx;

/// How long a commit's results are kept.
pub const RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(30);
/// At most this many commits per repository are kept (a ConfigMap holds at most 1 MiB).
pub const MAX_COMMITS: usize = 400;
/// How many times a write is retried after losing a race to another writer.
const MAX_CONFLICTS: usize = 8;
/// The label marking ledger ConfigMaps.
pub const LEDGER_LABEL: &str = "kubetempura.mercari.com/ledger";

/// The ConfigMap name of a repository's ledger.
pub fn ledger_name(repo: &RepoKey) -> String {
    let digest = hex::encode(sha2::Sha256::digest(repo.as_str().as_bytes()));
    format!("kubetempura-checks-{}", &digest[..16])
}

/// The results recorded for `sha` in `data`.
pub fn facts_of(data: Option<&BTreeMap<String, String>>, sha: &str) -> Vec<CheckFact> {
    data.and_then(|d| d.get(sha))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// `data` with `fact` merged into `sha`'s results and old commits dropped; `None` when nothing
/// changed.
pub fn merged(
    data: Option<&BTreeMap<String, String>>,
    sha: &str,
    fact: CheckFact,
    now: DateTime<Utc>,
) -> Option<BTreeMap<String, String>> {
    let mut facts = facts_of(data, sha);
    if !merge_fact(&mut facts, fact) {
        return None;
    }
    let mut commits: Vec<(String, Vec<CheckFact>)> = data
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != sha)
        .filter_map(|(k, v)| Some((k.clone(), serde_json::from_str(v).ok()?)))
        .collect();
    commits.push((sha.to_owned(), facts));
    let newest = |facts: &[CheckFact]| facts.iter().map(|f| f.at).max();
    commits.retain(|(k, f)| k == sha || newest(f).is_some_and(|t| now - t < RETENTION));
    commits.sort_by_key(|(_, f)| std::cmp::Reverse(newest(f)));
    commits.truncate(MAX_COMMITS);
    Some(
        commits
            .into_iter()
            .map(|(k, f)| {
                let json = serde_json::to_string(&f).unwrap_or_else(|_| "[]".to_owned());
                (k, json)
            })
            .collect(),
    )
}

fn api(ctx: &Ctx) -> Result<Api<ConfigMap>, Failure> {
    let ns = ctx.caches.tenancy().own_namespace().ok_or_else(|| {
        Failure::permanent(
            "the applier's own namespace is unknown (set POD_NAMESPACE): check results cannot be recorded",
        )
    })?;
    Ok(Api::namespaced(ctx.client.clone(), ns))
}

/// The results recorded for commit `sha` of `repo`.
pub async fn facts(ctx: &Ctx, repo: &RepoKey, sha: &str) -> Result<Vec<CheckFact>, Failure> {
    let name = ledger_name(repo);
    let cm = api(ctx)?
        .get_opt(&name)
        .await
        .map_err(|e| Failure::from_kube(&format!("get ConfigMap {name}"), e))?;
    Ok(facts_of(cm.as_ref().and_then(|c| c.data.as_ref()), sha))
}

/// Records `fact` for commit `sha` of `repo`; returns whether the ledger changed (false for a
/// result already known or older than the one recorded).
pub async fn record(
    ctx: &Ctx,
    repo: &RepoKey,
    sha: &str,
    fact: &CheckFact,
) -> Result<bool, Failure> {
    let api = api(ctx)?;
    let name = ledger_name(repo);
    for _ in 0..MAX_CONFLICTS {
        let current = api
            .get_opt(&name)
            .await
            .map_err(|e| Failure::from_kube(&format!("get ConfigMap {name}"), e))?;
        let data = current.as_ref().and_then(|c| c.data.as_ref());
        let Some(data) = merged(data, sha, fact.clone(), Utc::now()) else {
            return Ok(false);
        };
        let result = match current {
            Some(mut cm) => {
                cm.data = Some(data);
                cm.metadata.managed_fields = None;
                api.replace(&name, &PostParams::default(), &cm).await
            }
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(BTreeMap::from([
                            (LEDGER_LABEL.to_owned(), "checks".to_owned()),
                            (
                                "app.kubernetes.io/managed-by".to_owned(),
                                kubetempura_common::MANAGER_NAME.to_owned(),
                            ),
                        ])),
                        annotations: Some(BTreeMap::from([(
                            "kubetempura.mercari.com/repository".to_owned(),
                            repo.as_str().to_owned(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..ConfigMap::default()
                };
                api.create(&PostParams::default(), &cm).await
            }
        };
        match result {
            Ok(_) => return Ok(true),
            // Another writer got there first: read again and merge into what it wrote.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(Failure::from_kube(&format!("write ConfigMap {name}"), e)),
        }
    }
    Err(Failure::transient(format!(
        "ConfigMap {name} kept changing under this write ({MAX_CONFLICTS} conflicts)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubetempura_common::check::{CheckKind, CheckState};

    fn fact(name: &str, state: CheckState, at: DateTime<Utc>) -> CheckFact {
        CheckFact {
            kind: CheckKind::CheckRun,
            name: name.to_owned(),
            state,
            url: None,
            conclusion: None,
            at,
        }
    }

    #[test]
    fn results_merge_per_commit_and_old_commits_are_dropped() {
        let now = Utc::now();
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let data = merged(None, &a, fact("build", CheckState::Pending, now), now).unwrap();
        let data = merged(
            Some(&data),
            &a,
            fact("build", CheckState::Success, now + RETENTION / 100),
            now,
        )
        .unwrap();
        assert_eq!(facts_of(Some(&data), &a)[0].state, CheckState::Success);
        // An older result changes nothing.
        assert!(
            merged(
                Some(&data),
                &a,
                fact("build", CheckState::Failure, now),
                now
            )
            .is_none()
        );
        // A month later, writing another commit drops the first.
        let later = now + RETENTION + chrono::TimeDelta::days(1);
        let data = merged(
            Some(&data),
            &b,
            fact("build", CheckState::Pending, later),
            later,
        )
        .unwrap();
        assert!(facts_of(Some(&data), &a).is_empty());
        assert_eq!(facts_of(Some(&data), &b).len(), 1);
    }

    #[test]
    fn at_most_max_commits_are_kept_newest_first() {
        let now = Utc::now();
        let mut data = BTreeMap::new();
        for i in 0..=MAX_COMMITS {
            let sha = format!("{i:040x}");
            let at = now + chrono::TimeDelta::seconds(i64::try_from(i).unwrap());
            data = merged(
                Some(&data),
                &sha,
                fact("build", CheckState::Success, at),
                at,
            )
            .unwrap();
        }
        assert_eq!(data.len(), MAX_COMMITS);
        assert!(
            !data.contains_key(&format!("{:040x}", 0)),
            "the oldest went"
        );
    }

    #[test]
    fn ledger_names_are_stable_dns_names_per_repository() {
        let a = RepoKey::parse("https://github.com/Mercari/Web").unwrap();
        let b = RepoKey::parse("https://github.com/mercari/web.git").unwrap();
        let c = RepoKey::parse("https://github.com/mercari/api").unwrap();
        assert_eq!(ledger_name(&a), ledger_name(&b));
        assert_ne!(ledger_name(&a), ledger_name(&c));
        assert!(kubetempura_common::naming::is_dns_label(&ledger_name(&a)));
    }
}
