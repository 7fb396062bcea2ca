//! What reconciliation needs, built once at start-up: clients, caches, policy, the per-environment
//! locks and the records this process wrote last.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::events::{Recorder, Reporter};
use kube::{Client, ResourceExt};
use kubetempura_common::crd::PR;
use kubetempura_common::policy::ObjectPolicy;

use super::record::event_time;
use crate::cache::Caches;
use crate::kubeapi::Discovery;
use crate::metrics::Metrics;

type EnvLock = Arc<tokio::sync::Mutex<()>>;

/// The `PR` objects this process wrote, kept until the watch cache shows them.
struct Written {
    entries: HashMap<(String, String), (Instant, Arc<PR>)>,
    last_sweep: Instant,
}

/// How often [`Written`] drops the copies the watch cache has caught up with.
const WRITTEN_SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Longest a copy is kept even when the watch has not shown it (a broken watch recovers by
/// relisting well within this).
const WRITTEN_MAX_AGE: Duration = Duration::from_secs(300);

/// True when the cached copy `cached` is fresher than this process's write `written`: a later
/// spec (a person's edit after the write, or another process's write: the generation grows
/// with every spec change), or the same spec recording a later event.
fn fresher(cached: &PR, written: &PR) -> bool {
    match cached.metadata.generation.cmp(&written.metadata.generation) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => event_time(cached) > event_time(written),
    }
}

/// Everything reconciliation needs, built once at start-up.
pub struct Ctx {
    pub client: Client,
    pub discovery: Discovery,
    pub caches: Caches,
    pub policy: ObjectPolicy,
    pub field_manager: String,
    /// The field manager whose fields an adopted object hands over (see
    /// [`super::objects::apply_owned`]); `None`: none.
    pub adopt_field_manager: Option<String>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The `PR` objects this process wrote last (fresher than the watch cache).
    written: Mutex<Written>,
    /// One lock per environment, so a re-render and an event never interleave.
    locks: Mutex<HashMap<(String, String), EnvLock>>,
}

impl Ctx {
    pub fn new(
        client: Client,
        caches: Caches,
        policy: ObjectPolicy,
        field_manager: String,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: field_manager.clone(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            discovery: Discovery::new(client.clone()),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            caches,
            policy,
            field_manager,
            adopt_field_manager: Some(super::ORIGINAL_FIELD_MANAGER.to_owned()),
            metrics,
            written: Mutex::new(Written {
                entries: HashMap::new(),
                last_sweep: Instant::now(),
            }),
            locks: Mutex::default(),
        }
    }

    /// The lock of one environment (`PR` object): events, re-renders and tombstone collection
    /// of the same environment never interleave.
    pub fn lock_for(&self, ns: &str, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks
            .entry((ns.to_owned(), name.to_owned()))
            .or_default()
            .clone()
    }

    /// Every known `PR` object, freshest copies: the watch cache's, and those this process wrote
    /// that the cache does not show yet (a record created a moment ago is in the cache only
    /// once the watch delivers it).
    pub fn current_prs(&self) -> Vec<Arc<PR>> {
        let mut all: HashMap<(String, String), Arc<PR>> = self
            .caches
            .all_prs()
            .into_iter()
            .map(|pr| ((pr.namespace().unwrap_or_default(), pr.name_any()), pr))
            .collect();
        let written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (key, (_, w)) in &written.entries {
            match all.get(key) {
                Some(c) if fresher(c, w) => {}
                _ => {
                    all.insert(key.clone(), w.clone());
                }
            }
        }
        all.into_values().collect()
    }

    /// The freshest known `PR` object: this process's last write or the watch cache (see
    /// [`fresher`]).
    pub fn current_pr(&self, ns: &str, name: &str) -> Option<Arc<PR>> {
        let written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entries
            .get(&(ns.to_owned(), name.to_owned()))
            .map(|(_, pr)| pr.clone());
        let cached = self.caches.pr(ns, name);
        match (written, cached) {
            (Some(w), Some(c)) => Some(if fresher(&c, &w) { c } else { w }),
            (w, c) => w.or(c),
        }
    }

    pub(super) fn remember(&self, mut pr: PR) {
        pr.managed_fields_mut().clear();
        let key = (pr.namespace().unwrap_or_default(), pr.name_any());
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        written.entries.insert(key, (Instant::now(), Arc::new(pr)));
        // Our copy only matters until the watch cache has caught up with the write; dropping
        // it then keeps one copy of each environment in memory, not two.
        if written.last_sweep.elapsed() >= WRITTEN_SWEEP_INTERVAL {
            written.last_sweep = Instant::now();
            let caches = &self.caches;
            written.entries.retain(|(ns, name), (at, pr)| {
                let caught_up = caches
                    .pr(ns, name)
                    .is_some_and(|c| c.resource_version() == pr.resource_version());
                !caught_up && at.elapsed() < WRITTEN_MAX_AGE
            });
        }
    }

    /// Drops this process's copy of a record that is being deleted, so that it is not taken
    /// for the current record once the watch shows it gone.
    pub(super) fn forget_written(&self, ns: &str, name: &str) {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entries
            .remove(&(ns.to_owned(), name.to_owned()));
    }

    /// Forgets an environment this process wrote (after its tombstone was collected).
    pub fn forget(&self, ns: &str, name: &str) {
        self.forget_written(ns, name);
        let key = (ns.to_owned(), name.to_owned());
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(generation: i64, last_event_at: &str) -> PR {
        let mut pr: PR = serde_json::from_value(serde_json::json!({
            "apiVersion": "kubetempura.mercari.com/v1", "kind": "PR",
            "metadata": {"name": "web-pr7", "namespace": "ns", "generation": generation},
            "spec": {"reviewApp": "web", "number": 7, "headSha": "a".repeat(40),
                     "lastEventAt": last_event_at},
        }))
        .unwrap();
        pr.metadata.generation = Some(generation);
        pr
    }

    #[test]
    fn a_later_spec_in_the_cache_wins_over_this_process_s_write() {
        let written = record(3, "2026-12-01T12:00:00Z");
        // A person's edit after the write: a later generation, the same event time.
        assert!(fresher(&record(4, "2026-12-01T12:00:00Z"), &written));
        // The watch has not caught up with the write yet.
        assert!(!fresher(&record(2, "2026-12-01T11:00:00Z"), &written));
        // Same spec: the later event (a status-only difference is not fresher).
        assert!(!fresher(&record(3, "2026-12-01T12:00:00Z"), &written));
        assert!(fresher(&record(3, "2026-12-01T12:00:01Z"), &written));
    }
}
