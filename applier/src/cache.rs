//! Watched caches: ReviewApps indexed by repository, and `PR` objects by name. No list call is
//! made per event; a repository with no ReviewApp is answered from memory.
//!
//! ReviewApps in a namespace the [`Tenancy`] refuses are kept apart: [`Caches::apps_for`],
//! [`Caches::app`] and [`Caches::all_apps`] never return them, so no reconcile, re-render,
//! resync or status refresh can act on them; [`Caches::denied_apps_for`] and
//! [`Caches::denied_app`] return them for recording the refusal.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use kubetempura_common::crd::{
    InventoryEntry, PR, ReviewApp, has_cluster_scoped_finalizer, parse_pr,
};
use kubetempura_common::naming::RepoKey;
use tokio::sync::{broadcast, mpsc};

use crate::tenancy::Tenancy;

/// ReviewApps by repository, kept current by a watch.
#[derive(Default)]
struct Index {
    apps: HashMap<ObjectRef<ReviewApp>, Arc<ReviewApp>>,
    by_repo: HashMap<RepoKey, HashSet<ObjectRef<ReviewApp>>>,
}

impl Index {
    fn remove(&mut self, key: &ObjectRef<ReviewApp>) {
        if let Some(old) = self.apps.remove(key)
            && let Some(repo) = RepoKey::parse(&old.spec.github_repository)
            && let Some(set) = self.by_repo.get_mut(&repo)
        {
            set.remove(key);
            if set.is_empty() {
                self.by_repo.remove(&repo);
            }
        }
    }

    fn insert(&mut self, app: ReviewApp) {
        let key = ObjectRef::from_obj(&app);
        self.remove(&key);
        if let Some(repo) = RepoKey::parse(&app.spec.github_repository) {
            self.by_repo.entry(repo).or_default().insert(key.clone());
        }
        self.apps.insert(key, Arc::new(app));
    }
}

/// A change to a ReviewApp that its live environments must follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppChanged {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
}

/// The applier's view of the cluster.
#[derive(Clone)]
pub struct Caches {
    index: Arc<RwLock<Index>>,
    prs: Arc<RwLock<PrIndex>>,
    prs_synced: Arc<AtomicBool>,
    /// Every `PR` object the watch shows changed (namespace, name).
    pr_changes: broadcast::Sender<(String, String)>,
    apps_synced: Arc<AtomicBool>,
    tenancy: Arc<Tenancy>,
}

/// How many `PR` changes a slow subscriber may fall behind before it is told it lagged (it then
/// looks at every environment again).
const PR_CHANGES_CAPACITY: usize = 4096;

impl Caches {
    /// Starts the watches. `changes` receives every ReviewApp whose spec generation changed after
    /// the initial list (and every one in the initial list), for re-rendering.
    pub fn start(
        client: Client,
        namespace: Option<&str>,
        changes: mpsc::UnboundedSender<AppChanged>,
    ) -> Self {
        // PR objects are watched untyped and parsed one by one: one the applier cannot read
        // is set aside, never stopping the watch (a typed list fails whole).
        let pr_resource = ApiResource::erase::<PR>(&());
        let (apps_api, prs_api): (Api<ReviewApp>, Api<DynamicObject>) = match namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced_with(client, ns, &pr_resource),
            ),
            None => (
                Api::all(client.clone()),
                Api::all_with(client, &pr_resource),
            ),
        };
        let index = Arc::new(RwLock::new(Index::default()));
        let apps_synced = Arc::new(AtomicBool::new(false));
        let prs = Arc::new(RwLock::new(PrIndex::default()));
        let prs_synced = Arc::new(AtomicBool::new(false));
        let (pr_changes, _) = broadcast::channel(PR_CHANGES_CAPACITY);
        tokio::spawn(watch_prs(
            prs_api,
            prs.clone(),
            prs_synced.clone(),
            pr_changes.clone(),
        ));
        let idx = index.clone();
        let synced = apps_synced.clone();
        tokio::spawn(async move {
            let mut stream = watcher(apps_api, watcher::Config::default())
                .default_backoff()
                .boxed();
            let mut buffer: Vec<ReviewApp> = Vec::new();
            let mut generations: HashMap<ObjectRef<ReviewApp>, Option<i64>> = HashMap::new();
            while let Some(event) = stream.next().await {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "ReviewApp watch error; retrying");
                        continue;
                    }
                };
                let mut changed: Vec<ReviewApp> = Vec::new();
                match event {
                    watcher::Event::Init => buffer.clear(),
                    watcher::Event::InitApply(app) => buffer.push(app),
                    watcher::Event::InitDone => {
                        let mut fresh = Index::default();
                        for app in buffer.drain(..) {
                            changed.push(app.clone());
                            fresh.insert(app);
                        }
                        if let Ok(mut guard) = idx.write() {
                            *guard = fresh;
                        }
                        synced.store(true, Ordering::SeqCst);
                    }
                    watcher::Event::Apply(app) => {
                        let key = ObjectRef::from_obj(&app);
                        // A deletion in progress is a change too (its environments close).
                        if generations.get(&key) != Some(&app.metadata.generation)
                            || app.metadata.deletion_timestamp.is_some()
                        {
                            changed.push(app.clone());
                        }
                        if let Ok(mut guard) = idx.write() {
                            guard.insert(app);
                        }
                    }
                    watcher::Event::Delete(app) => {
                        let key = ObjectRef::from_obj(&app);
                        generations.remove(&key);
                        if let Ok(mut guard) = idx.write() {
                            guard.remove(&key);
                        }
                    }
                }
                for app in changed {
                    let key = ObjectRef::from_obj(&app);
                    generations.insert(key, app.metadata.generation);
                    let _ = changes.send(AppChanged {
                        namespace: app.namespace().unwrap_or_default(),
                        name: app.name_any(),
                        generation: app.metadata.generation,
                    });
                }
            }
        });
        Self {
            index,
            prs,
            prs_synced,
            pr_changes,
            apps_synced,
            tenancy: Arc::default(),
        }
    }

    /// The same caches, refusing the ReviewApps of `tenancy`'s denied namespaces (call before
    /// cloning: clones made earlier keep the previous tenancy).
    #[must_use]
    pub fn with_tenancy(mut self, tenancy: Tenancy) -> Self {
        self.tenancy = Arc::new(tenancy);
        self
    }

    /// The namespaces whose ReviewApps are refused.
    pub fn tenancy(&self) -> &Tenancy {
        &self.tenancy
    }

    fn admitted(&self, app: &ReviewApp) -> bool {
        !self
            .tenancy
            .is_denied(app.namespace().as_deref().unwrap_or_default())
    }

    /// The ReviewApps of a repository, admitted (`true`) or refused (`false`) by the tenancy.
    fn apps_of(&self, repo: &RepoKey, admitted: bool) -> Vec<Arc<ReviewApp>> {
        let Ok(guard) = self.index.read() else {
            return Vec::new();
        };
        let mut apps: Vec<Arc<ReviewApp>> = guard
            .by_repo
            .get(repo)
            .into_iter()
            .flatten()
            .filter_map(|k| guard.apps.get(k).cloned())
            .filter(|a| self.admitted(a) == admitted)
            .collect();
        apps.sort_by_key(|a| (a.namespace(), a.name_any()));
        apps
    }

    /// True once both caches have listed everything at least once.
    pub fn is_synced(&self) -> bool {
        self.apps_synced.load(Ordering::SeqCst) && self.prs_synced()
    }

    fn prs_synced(&self) -> bool {
        self.prs_synced.load(Ordering::SeqCst)
    }

    /// Waits until both caches are synced.
    pub async fn wait_synced(&self) {
        while !self.is_synced() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The ReviewApps for a repository (those of refused namespaces excepted).
    pub fn apps_for(&self, repo: &RepoKey) -> Vec<Arc<ReviewApp>> {
        self.apps_of(repo, true)
    }

    /// The ReviewApps for a repository in namespaces the tenancy refuses.
    pub fn denied_apps_for(&self, repo: &RepoKey) -> Vec<Arc<ReviewApp>> {
        self.apps_of(repo, false)
    }

    /// One ReviewApp by namespace and name (`None` in a refused namespace).
    pub fn app(&self, namespace: &str, name: &str) -> Option<Arc<ReviewApp>> {
        if self.tenancy.is_denied(namespace) {
            return None;
        }
        self.any_app(namespace, name)
    }

    /// One ReviewApp of a refused namespace.
    pub fn denied_app(&self, namespace: &str, name: &str) -> Option<Arc<ReviewApp>> {
        if !self.tenancy.is_denied(namespace) {
            return None;
        }
        self.any_app(namespace, name)
    }

    fn any_app(&self, namespace: &str, name: &str) -> Option<Arc<ReviewApp>> {
        let guard = self.index.read().ok()?;
        guard
            .apps
            .get(&ObjectRef::new(name).within(namespace))
            .cloned()
    }

    /// The cached `PR` object, if any.
    pub fn pr(&self, namespace: &str, name: &str) -> Option<Arc<PR>> {
        let guard = self.prs.read().ok()?;
        guard.prs.get(&pr_key(namespace, name)).cloned()
    }

    /// Why the `PR` object `namespace/name` cannot be read, when it cannot.
    pub fn unreadable_pr(&self, namespace: &str, name: &str) -> Option<UnreadablePr> {
        let guard = self.prs.read().ok()?;
        guard.unreadable.get(&pr_key(namespace, name)).cloned()
    }

    /// How many `PR` objects the applier cannot read.
    pub fn unreadable_pr_count(&self) -> usize {
        self.prs.read().map(|g| g.unreadable.len()).unwrap_or(0)
    }

    /// The namespace and name of every `PR` object, read or not.
    pub fn pr_keys(&self) -> std::collections::BTreeSet<(String, String)> {
        self.prs
            .read()
            .map(|g| {
                g.keys()
                    .map(|k| (k.namespace.unwrap_or_default(), k.name))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `PR` objects the watch shows changed from now on.
    pub fn subscribe_prs(&self) -> broadcast::Receiver<(String, String)> {
        self.pr_changes.subscribe()
    }

    /// Every cached `PR` object.
    pub fn all_prs(&self) -> Vec<Arc<PR>> {
        self.prs
            .read()
            .map(|g| g.prs.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every cached ReviewApp (those of refused namespaces excepted).
    pub fn all_apps(&self) -> Vec<Arc<ReviewApp>> {
        self.index
            .read()
            .map(|g| {
                g.apps
                    .values()
                    .filter(|a| self.admitted(a))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many ReviewApps are cached.
    pub fn app_count(&self) -> usize {
        self.index.read().map(|g| g.apps.len()).unwrap_or(0)
    }
}

/// A `PR` object the applier cannot read (see [`kubetempura_common::crd::parse_pr`]).
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadablePr {
    /// Why.
    pub reason: String,
    /// The object, for Events.
    pub reference: ObjectReference,
    /// Set when the object is being deleted and holds the applier's finalizer: what its
    /// deletion waits for, read on its own from the object.
    pub stranded: Option<Stranded>,
}

/// A `PR` object being deleted that holds [`FINALIZER_CLUSTER_SCOPED`]: enough of it to delete
/// what its inventory lists and let it go, read on its own when the object is unreadable.
#[derive(Debug, Clone, PartialEq)]
pub struct Stranded {
    pub uid: String,
    pub finalizers: Vec<String>,
    /// `status.inventory`, or empty when even that cannot be read.
    pub inventory: Vec<InventoryEntry>,
}

impl Stranded {
    fn of(obj: &DynamicObject) -> Option<Self> {
        if obj.metadata.deletion_timestamp.is_none() || !has_cluster_scoped_finalizer(obj) {
            return None;
        }
        let inventory = obj
            .data
            .get("status")
            .and_then(|s| s.get("inventory"))
            .and_then(|i| serde_json::from_value(i.clone()).ok())
            .unwrap_or_default();
        Some(Self {
            uid: obj.metadata.uid.clone().unwrap_or_default(),
            finalizers: obj.finalizers().to_vec(),
            inventory,
        })
    }

    /// The same of a record that can be read.
    pub fn of_record(pr: &PR) -> Self {
        Self {
            uid: pr.uid().unwrap_or_default(),
            finalizers: pr.finalizers().to_vec(),
            inventory: pr.inventory().to_vec(),
        }
    }
}

/// `PR` objects by namespace and name: those read, and those set aside.
#[derive(Default)]
struct PrIndex {
    prs: HashMap<ObjectRef<PR>, Arc<PR>>,
    unreadable: HashMap<ObjectRef<PR>, UnreadablePr>,
}

impl PrIndex {
    fn keys(&self) -> impl Iterator<Item = ObjectRef<PR>> + '_ {
        self.prs.keys().chain(self.unreadable.keys()).cloned()
    }

    fn contains(&self, key: &ObjectRef<PR>) -> bool {
        self.prs.contains_key(key) || self.unreadable.contains_key(key)
    }

    fn remove(&mut self, key: &ObjectRef<PR>) {
        self.prs.remove(key);
        self.unreadable.remove(key);
    }

    fn insert(&mut self, obj: DynamicObject) {
        let key = pr_key(
            obj.metadata.namespace.as_deref().unwrap_or_default(),
            &obj.name_any(),
        );
        self.remove(&key);
        let reference = ObjectReference {
            api_version: Some(PR::api_version(&()).into_owned()),
            kind: Some(PR::kind(&()).into_owned()),
            namespace: obj.metadata.namespace.clone(),
            name: obj.metadata.name.clone(),
            uid: obj.metadata.uid.clone(),
            resource_version: obj.metadata.resource_version.clone(),
            ..ObjectReference::default()
        };
        let stranded = Stranded::of(&obj);
        match parse_pr(obj) {
            Ok(pr) => {
                self.prs.insert(key, Arc::new(pr));
            }
            Err(e) => {
                self.unreadable.insert(
                    key,
                    UnreadablePr {
                        reason: e.reason,
                        reference,
                        stranded,
                    },
                );
            }
        }
    }
}

fn pr_key(namespace: &str, name: &str) -> ObjectRef<PR> {
    ObjectRef::new(name).within(namespace)
}

/// Keeps `index` current from a watch of `PR` objects and announces every change on `changes`.
async fn watch_prs(
    api: Api<DynamicObject>,
    index: Arc<RwLock<PrIndex>>,
    synced: Arc<AtomicBool>,
    changes: broadcast::Sender<(String, String)>,
) {
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut buffer = PrIndex::default();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "PR watch error; retrying");
                continue;
            }
        };
        let mut changed: Vec<ObjectRef<PR>> = Vec::new();
        match event {
            watcher::Event::Init => buffer = PrIndex::default(),
            watcher::Event::InitApply(mut obj) => {
                // managedFields are never read here; dropping them keeps memory per
                // environment small.
                obj.metadata.managed_fields = None;
                buffer.insert(obj);
            }
            watcher::Event::InitDone => {
                // A (re)list: every object listed may have changed, and every one cached but
                // not listed is gone.
                let fresh = std::mem::take(&mut buffer);
                changed.extend(fresh.keys());
                if let Ok(mut guard) = index.write() {
                    changed.extend(guard.keys().filter(|k| !fresh.contains(k)));
                    *guard = fresh;
                }
                synced.store(true, Ordering::SeqCst);
            }
            watcher::Event::Apply(mut obj) => {
                obj.metadata.managed_fields = None;
                changed.push(pr_key(
                    obj.metadata.namespace.as_deref().unwrap_or_default(),
                    &obj.name_any(),
                ));
                if let Ok(mut guard) = index.write() {
                    guard.insert(obj);
                }
            }
            watcher::Event::Delete(obj) => {
                let key = pr_key(
                    obj.metadata.namespace.as_deref().unwrap_or_default(),
                    &obj.name_any(),
                );
                if let Ok(mut guard) = index.write() {
                    guard.remove(&key);
                }
                changed.push(key);
            }
        }
        for key in changed {
            // No subscriber is not an error.
            let _ = changes.send((key.namespace.unwrap_or_default(), key.name));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

    use super::*;
    use kubetempura_common::crd::FINALIZER_CLUSTER_SCOPED;

    fn object(deleting: bool, finalizers: &[&str], status: serde_json::Value) -> DynamicObject {
        let mut metadata = serde_json::json!({
            "name": "web-7", "namespace": "ns", "uid": "u-1", "finalizers": finalizers,
        });
        if deleting {
            metadata["deletionTimestamp"] = "2026-12-02T12:00:00Z".into();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubetempura.mercari.com/v1", "kind": "PR",
            "metadata": metadata, "spec": {"parentReviewApp": "other"}, "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn only_an_object_being_deleted_with_the_finalizer_is_stranded() {
        let status = serde_json::json!({"inventory": [
            {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "name": "ns-pr7"},
            {"apiVersion": "v1", "kind": "ConfigMap", "namespace": "ns", "name": "cm-7"},
        ]});
        let mine = [FINALIZER_CLUSTER_SCOPED, "example.com/other"];
        let stranded = Stranded::of(&object(true, &mine, status.clone())).unwrap();
        assert_eq!(stranded.uid, "u-1");
        assert_eq!(stranded.finalizers, mine);
        let names: Vec<_> = stranded.inventory.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["ns-pr7", "cm-7"]);
        assert_eq!(stranded.inventory[0].namespace, None);

        assert_eq!(Stranded::of(&object(false, &mine, status.clone())), None);
        assert_eq!(
            Stranded::of(&object(true, &["example.com/other"], status)),
            None
        );
    }

    #[test]
    fn an_unreadable_inventory_still_lets_the_object_go() {
        let stranded = Stranded::of(&object(
            true,
            &[FINALIZER_CLUSTER_SCOPED],
            serde_json::json!({"inventory": "not a list"}),
        ))
        .unwrap();
        assert!(stranded.inventory.is_empty());
        assert_eq!(stranded.finalizers, [FINALIZER_CLUSTER_SCOPED]);
    }
}
