//! The object store: objects by kind/namespace/name, a global resourceVersion, the watch
//! history window and live watchers, and every write operation with its metadata rules
//! (uid, creationTimestamp, generation, resourceVersion, optimistic concurrency, status
//! subresource, deletion with finalizers and propagation).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::apply::{ApplyRequest, Scope, apply, track_update};
use super::gc;
use super::registry::{Registry, ResourceType, crd_to_type};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, qualified, success_status};

/// Identity of a stored object (namespace empty for cluster-scoped kinds).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    /// API group.
    pub group: String,
    /// Resource plural.
    pub plural: String,
    /// Namespace, or empty.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `ADDED`
    Added,
    /// `MODIFIED`
    Modified,
    /// `DELETED`
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history window and sent to watchers.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Type.
    pub type_: EventType,
    /// Which object.
    pub key: ObjKey,
    /// The object after the change (for DELETED: its last state).
    pub object: Value,
    /// The object before the change (MODIFIED only), for selector transitions.
    pub old: Option<Value>,
}

struct Watcher {
    group: String,
    plural: String,
    namespace: Option<String>,
    tx: mpsc::UnboundedSender<Arc<StoredEvent>>,
}

/// A registered watch: the backlog of events still in the window, then the live feed.
pub type Subscription = (
    Vec<Arc<StoredEvent>>,
    mpsc::UnboundedReceiver<Arc<StoredEvent>>,
);

/// `propagationPolicy` of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Owner goes at once, dependents are collected after.
    Background,
    /// Owner waits (finalizer `foregroundDeletion`) until its dependents are gone.
    Foreground,
    /// Dependents lose their owner reference and stay.
    Orphan,
}

/// Options of a delete.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Propagation (default Background).
    pub propagation: Option<Propagation>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// Who writes: the field manager of non-apply writes.
#[derive(Debug, Clone)]
pub struct Writer {
    /// `fieldManager`, or derived from the user agent.
    pub manager: String,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// A patch body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/apply-patch+yaml`
    Apply,
    /// `application/merge-patch+json` (and strategic merge patch, treated alike)
    Merge,
    /// `application/json-patch+json`
    Json,
}

/// Everything behind the lock.
pub struct State {
    /// Served kinds.
    pub registry: Registry,
    objects: BTreeMap<ObjKey, Value>,
    rv: u64,
    history: VecDeque<Arc<StoredEvent>>,
    history_limit: usize,
    compacted_rv: u64,
    watchers: Vec<Watcher>,
    uid_seed: u64,
}

/// Current time as Kubernetes writes it.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `metadata` of an object, created if absent (the object is made a map if it is not one).
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let slot = &mut obj["metadata"];
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("metadata was just made a map"),
    }
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The uids in `metadata.ownerReferences`.
pub fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn is_dns_label(name: &str) -> bool {
    name.len() <= 63 && !name.contains('.') && is_dns_subdomain(name)
}

fn is_path_segment(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('%')
}

const SYSTEM_METADATA: [&str; 8] = [
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

impl State {
    /// A store with the built-in kinds and the `default`, `kube-system`, `kube-public`
    /// namespaces; `history_limit` bounds the watch history window.
    pub fn new(history_limit: usize) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(42);
        let mut s = State {
            registry: Registry::with_builtins(),
            objects: BTreeMap::new(),
            rv: 100,
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted_rv: 0,
            watchers: Vec::new(),
            uid_seed: seed,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            let writer = Writer {
                manager: "kube-apiserver".into(),
                dry_run: false,
            };
            let _ = s.create("", "v1", "namespaces", None, obj, &writer);
        }
        s
    }

    /// Current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    fn new_uid(&mut self) -> String {
        let a = splitmix(&mut self.uid_seed);
        let b = splitmix(&mut self.uid_seed);
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    /// A resource type by group/version/plural.
    pub fn resource(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Result<ResourceType, ApiError> {
        self.registry
            .lookup(group, version, plural)
            .cloned()
            .ok_or_else(ApiError::path_not_found)
    }

    fn key(rt: &ResourceType, namespace: Option<&str>, name: &str) -> ObjKey {
        ObjKey {
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            namespace: if rt.namespaced {
                namespace.unwrap_or_default().to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    /// The object as served at `version` (apiVersion and kind set).
    pub fn present(rt: &ResourceType, version: &str, obj: &Value) -> Value {
        let mut out = Map::new();
        out.insert("apiVersion".into(), json!(rt.api_version(version)));
        out.insert("kind".into(), json!(rt.kind));
        if let Some(m) = obj.as_object() {
            for (k, v) in m {
                if k != "apiVersion" && k != "kind" {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        Value::Object(out)
    }

    // ----- raw primitives -------------------------------------------------------------------

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn emit(&mut self, type_: EventType, key: ObjKey, object: Value, old: Option<Value>) {
        let ev = Arc::new(StoredEvent {
            rv: self.rv,
            type_,
            key,
            object,
            old,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted_rv = dropped.rv;
            }
        }
        self.watchers.retain(|w| {
            if w.group != ev.key.group || w.plural != ev.key.plural {
                return !w.tx.is_closed();
            }
            if let Some(ns) = &w.namespace
                && *ns != ev.key.namespace
            {
                return !w.tx.is_closed();
            }
            w.tx.send(ev.clone()).is_ok()
        });
    }

    /// Store (insert or replace) with a new resourceVersion and emit the event.
    pub(crate) fn put(&mut self, key: ObjKey, mut obj: Value) -> Value {
        let rv = self.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let old = self.objects.insert(key.clone(), obj.clone());
        let type_ = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        if key.group == "apiextensions.k8s.io"
            && key.plural == "customresourcedefinitions"
            && let Ok(rt) = crd_to_type(&obj)
        {
            self.registry.register_crd(rt);
        }
        self.emit(type_, key, obj.clone(), old);
        obj
    }

    /// Remove for good and emit DELETED; a CRD takes its kind and objects with it.
    pub(crate) fn remove(&mut self, key: &ObjKey) -> Option<Value> {
        let mut obj = self.objects.remove(key)?;
        let rv = self.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        self.emit(EventType::Deleted, key.clone(), obj.clone(), None);
        if key.group == "apiextensions.k8s.io"
            && key.plural == "customresourcedefinitions"
            && let Some(rt) = self.registry.unregister_crd(&key.name)
        {
            let doomed: Vec<ObjKey> = self
                .objects
                .keys()
                .filter(|k| k.group == rt.group && k.plural == rt.plural)
                .cloned()
                .collect();
            for k in doomed {
                self.remove(&k);
            }
        }
        Some(obj)
    }

    /// All objects (for garbage collection).
    pub(crate) fn objects(&self) -> &BTreeMap<ObjKey, Value> {
        &self.objects
    }

    /// One stored object.
    pub fn get_raw(&self, key: &ObjKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Drop the whole watch history (a watch from any earlier resourceVersion then gets 410).
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted_rv = self.rv;
    }

    /// Register a watcher and return the events after `since` still in the window, or 410.
    pub fn subscribe(
        &mut self,
        rt: &ResourceType,
        namespace: Option<&str>,
        since: Option<u64>,
    ) -> Result<Subscription, ApiError> {
        let mut backlog = Vec::new();
        if let Some(since) = since {
            if since < self.compacted_rv {
                return Err(ApiError::expired(since, self.compacted_rv + 1));
            }
            backlog = self
                .history
                .iter()
                .filter(|e| e.rv > since && e.key.group == rt.group && e.key.plural == rt.plural)
                .filter(|e| namespace.is_none_or(|ns| e.key.namespace == ns))
                .cloned()
                .collect();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.watchers.push(Watcher {
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            namespace: if rt.namespaced {
                namespace.map(str::to_string)
            } else {
                None
            },
            tx,
        });
        Ok((backlog, rx))
    }

    // ----- reads ----------------------------------------------------------------------------

    /// GET one object.
    pub fn get(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.objects
            .get(&Self::key(rt, namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    /// LIST, sorted by namespace and name, starting after `after` (for `continue`).
    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        after: Option<&(String, String)>,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| k.group == rt.group && k.plural == rt.plural)
            .filter(|(k, _)| !rt.namespaced || namespace.is_none_or(|ns| k.namespace == ns))
            .filter(|(k, _)| {
                after.is_none_or(|(ans, aname)| (&k.namespace, &k.name) > (ans, aname))
            })
            .filter(|(_, v)| labels.matches(v) && fields.matches(v))
            .map(|(_, v)| v.clone())
            .collect()
    }

    // ----- admission ------------------------------------------------------------------------

    fn check_types(rt: &ResourceType, body: &Value) -> Result<(), ApiError> {
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request is not a JSON object",
            ));
        }
        if let Some(av) = body.get("apiVersion").and_then(Value::as_str) {
            let (g, v) = match av.split_once('/') {
                Some((g, v)) => (g, v),
                None => ("", av),
            };
            if g != rt.group || !rt.serves(v) {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({})",
                    rt.api_version(rt.storage_version())
                )));
            }
        }
        if let Some(kind) = body.get("kind").and_then(Value::as_str)
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                rt.kind
            )));
        }
        Ok(())
    }

    fn check_namespace(
        rt: &ResourceType,
        url_ns: Option<&str>,
        body: &mut Value,
    ) -> Result<(), ApiError> {
        let body_ns = meta_str(body, "namespace").map(str::to_string);
        if rt.namespaced {
            let ns = url_ns.unwrap_or_default();
            match body_ns.as_deref() {
                None | Some("") => {
                    meta_mut(body).insert("namespace".into(), json!(ns));
                }
                Some(b) if b != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                Some(_) => {}
            }
        } else {
            meta_mut(body).remove("namespace");
        }
        Ok(())
    }

    fn check_name(rt: &ResourceType, name: &str) -> Result<(), ApiError> {
        let ok = if rt.group == "rbac.authorization.k8s.io" {
            is_path_segment(name)
        } else if rt.plural == "namespaces" && rt.group.is_empty() {
            is_dns_label(name)
        } else {
            is_dns_subdomain(name)
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::invalid_field(
                &rt.kind,
                &rt.group,
                name,
                "metadata.name",
                "FieldValueInvalid",
                &format!(
                    "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            ))
        }
    }

    fn namespace_exists(&self, rt: &ResourceType, ns: &str) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        let key = ObjKey {
            group: String::new(),
            plural: "namespaces".into(),
            namespace: String::new(),
            name: ns.to_string(),
        };
        match self.objects.get(&key) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "{} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    qualified(&rt.group, &rt.plural)
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Server-set fields of particular kinds (namespace phase, CRD conditions).
    fn server_defaults(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        if rt.group.is_empty()
            && rt.plural == "namespaces"
            && let Some(m) = obj.as_object_mut()
        {
            {
                let phase = if old
                    .and_then(|o| o.pointer("/metadata/deletionTimestamp"))
                    .is_some()
                {
                    "Terminating"
                } else {
                    "Active"
                };
                m.insert("status".into(), json!({"phase": phase}));
                m.entry("spec")
                    .or_insert_with(|| json!({"finalizers": ["kubernetes"]}));
            }
        }
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            let t = crd_to_type(obj)?;
            if let Some(existing) = self.registry.by_kind(&t.group, &t.kind)
                && existing.crd.as_deref() != t.crd.as_deref()
            {
                return Err(ApiError::invalid_field(
                    "CustomResourceDefinition",
                    "apiextensions.k8s.io",
                    t.crd.as_deref().unwrap_or_default(),
                    "spec.names.kind",
                    "FieldValueInvalid",
                    "Invalid value: kind is already served by another resource",
                ));
            }
            let time = old
                .and_then(|o| o.pointer("/status/conditions/0/lastTransitionTime"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(now_rfc3339);
            let names = obj
                .pointer("/spec/names")
                .cloned()
                .unwrap_or_else(|| json!({}));
            let mut accepted = names.clone();
            if let Some(a) = accepted.as_object_mut() {
                a.entry("singular").or_insert_with(|| json!(t.singular));
                a.entry("listKind")
                    .or_insert_with(|| json!(format!("{}List", t.kind)));
            }
            let cond = |ty: &str, reason: &str, msg: &str| json!({"type": ty, "status": "True", "lastTransitionTime": time, "reason": reason, "message": msg});
            if let Some(m) = obj.as_object_mut() {
                m.insert(
                    "status".into(),
                    json!({
                        "conditions": [
                            cond("NamesAccepted", "NoConflicts", "no conflicts found"),
                            cond("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                        ],
                        "acceptedNames": accepted,
                        "storedVersions": [t.storage_version()],
                    }),
                );
            }
        }
        Ok(())
    }

    fn strip_system_metadata(obj: &mut Value) {
        let m = meta_mut(obj);
        for f in SYSTEM_METADATA {
            m.remove(f);
        }
    }

    fn generate_name(&mut self, obj: &mut Value) -> Option<String> {
        let prefix = meta_str(obj, "generateName")?.to_string();
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut suffix = String::new();
        for _ in 0..5 {
            let r = splitmix(&mut self.uid_seed) as usize % ALPHABET.len();
            suffix.push(char::from(ALPHABET[r]));
        }
        let name = format!("{prefix}{suffix}");
        meta_mut(obj).insert("name".into(), json!(name));
        Some(name)
    }

    fn scope_for(rt: &ResourceType, status: bool) -> Scope {
        if status {
            Scope::Status
        } else if rt.status_subresource {
            Scope::Main
        } else {
            Scope::All
        }
    }

    // ----- writes ---------------------------------------------------------------------------

    /// POST: create.
    pub fn create(
        &mut self,
        group: &str,
        version: &str,
        plural: &str,
        namespace: Option<&str>,
        body: Value,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        let rt = self.resource(group, version, plural)?;
        self.create_typed(&rt, version, namespace, body, writer)
    }

    fn create_typed(
        &mut self,
        rt: &ResourceType,
        version: &str,
        namespace: Option<&str>,
        mut body: Value,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        Self::check_types(rt, &body)?;
        Self::check_namespace(rt, namespace, &mut body)?;
        let name = match meta_str(&body, "name").filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => match self.generate_name(&mut body) {
                Some(n) => n,
                None => {
                    return Err(ApiError::invalid_field(
                        &rt.kind,
                        &rt.group,
                        "",
                        "metadata.name",
                        "FieldValueRequired",
                        "Required value: name or generateName is required",
                    ));
                }
            },
        };
        Self::check_name(rt, &name)?;
        let ns = meta_str(&body, "namespace").unwrap_or_default().to_string();
        self.namespace_exists(rt, &ns)?;
        let key = Self::key(rt, Some(&ns), &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        Self::strip_system_metadata(&mut body);
        if rt.status_subresource
            && let Some(m) = body.as_object_mut()
        {
            m.remove("status");
        }
        let mut obj = Self::present(rt, version, &body);
        self.server_defaults(rt, &mut obj, None)?;
        let uid = self.new_uid();
        let m = meta_mut(&mut obj);
        m.insert("uid".into(), json!(uid));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        m.insert("generation".into(), json!(1));
        track_update(
            None,
            &mut obj,
            &writer.manager,
            Self::scope_for(rt, false),
            rt.builtin,
            &rt.api_version(version),
            &now_rfc3339(),
        );
        if writer.dry_run {
            return Ok(obj);
        }
        let stored = self.put(key, obj);
        gc::collect(self);
        Ok(Self::present(rt, version, &stored))
    }

    /// Finish an update of an existing object: no-op detection, generation, deletion once the
    /// last finalizer is gone, garbage collection.
    fn finish_update(
        &mut self,
        rt: &ResourceType,
        version: &str,
        key: ObjKey,
        old: &Value,
        mut new: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        // System metadata always comes from the stored object.
        {
            let om = old
                .get("metadata")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let managed = new.pointer("/metadata/managedFields").cloned();
            let nm = meta_mut(&mut new);
            for f in SYSTEM_METADATA {
                match om.get(f) {
                    Some(v) => nm.insert(f.to_string(), v.clone()),
                    None => nm.remove(f),
                };
            }
            match managed {
                Some(mf) => nm.insert("managedFields".into(), mf),
                None => nm.remove("managedFields"),
            };
            nm.insert("name".into(), json!(key.name));
            if rt.namespaced {
                nm.insert("namespace".into(), json!(key.namespace));
            }
        }
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            let before = finalizers(old);
            if finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid_field(
                    &rt.kind,
                    &rt.group,
                    &key.name,
                    "metadata.finalizers",
                    "FieldValueForbidden",
                    "Forbidden: no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        self.server_defaults(rt, &mut new, Some(old))?;
        let mut new = Self::present(rt, rt.storage_version(), &new);
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                // A change of ownership is a change; a newer timestamp alone is not.
                if let Some(entries) = m.get_mut("managedFields").and_then(Value::as_array_mut) {
                    for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                        e.remove("time");
                    }
                }
                m.remove("resourceVersion");
            }
            if let Some(m) = v.as_object_mut() {
                m.remove("apiVersion");
            }
            v
        };
        if strip(old) == strip(&new) {
            return Ok(Self::present(rt, version, old));
        }
        let spec_of = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.remove("metadata");
                m.remove("apiVersion");
                if rt.status_subresource {
                    m.remove("status");
                }
            }
            v
        };
        if spec_of(old) != spec_of(&new) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta_mut(&mut new).insert("generation".into(), json!(generation + 1));
        }
        if dry_run {
            return Ok(Self::present(rt, version, &new));
        }
        let out = if new.pointer("/metadata/deletionTimestamp").is_some()
            && finalizers(&new).is_empty()
        {
            self.objects.insert(key.clone(), new);
            self.remove(&key).unwrap_or(Value::Null)
        } else {
            self.put(key, new)
        };
        gc::collect(self);
        Ok(Self::present(rt, version, &out))
    }

    fn precondition_rv(
        rt: &ResourceType,
        name: &str,
        body: &Value,
        current: &Value,
    ) -> Result<(), ApiError> {
        if let Some(rv) = meta_str(body, "resourceVersion").filter(|s| !s.is_empty())
            && Some(rv) != meta_str(current, "resourceVersion")
        {
            return Err(ApiError::stale(&rt.group, &rt.plural, name));
        }
        if let Some(uid) = meta_str(body, "uid").filter(|s| !s.is_empty())
            && Some(uid) != meta_str(current, "uid")
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(current, "uid").unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }

    fn check_url_name(body: &Value, name: &str) -> Result<(), ApiError> {
        match meta_str(body, "name") {
            Some(n) if !n.is_empty() && n != name => Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            ))),
            _ => Ok(()),
        }
    }

    /// Build the candidate object of a main/status write from the old one and a full body.
    fn compose(rt: &ResourceType, old: &Value, body: Value, status: bool) -> Value {
        if status {
            let mut new = old.clone();
            if let Some(m) = new.as_object_mut() {
                match body.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            new
        } else if rt.status_subresource {
            let mut new = body;
            if let Some(m) = new.as_object_mut() {
                match old.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
            }
            new
        } else {
            body
        }
    }

    /// PUT: update (main resource or `/status`).
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        rt: &ResourceType,
        version: &str,
        namespace: Option<&str>,
        name: &str,
        mut body: Value,
        status: bool,
        writer: &Writer,
    ) -> Result<Value, ApiError> {
        Self::check_types(rt, &body)?;
        Self::check_url_name(&body, name)?;
        Self::check_namespace(rt, namespace, &mut body)?;
        let key = Self::key(rt, namespace, name);
        let old = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        Self::precondition_rv(rt, name, &body, &old)?;
        let mut new = Self::compose(rt, &old, body, status);
        if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
            if let Some(mf) = old.pointer("/metadata/managedFields") {
                m.insert("managedFields".into(), mf.clone());
            }
        }
        track_update(
            Some(&old),
            &mut new,
            &writer.manager,
            Self::scope_for(rt, status),
            rt.builtin,
            &rt.api_version(version),
            &now_rfc3339(),
        );
        self.finish_update(rt, version, key, &old, new, writer.dry_run)
    }

    /// PATCH: apply, merge or JSON patch (main resource or `/status`).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        version: &str,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        patch: Value,
        status: bool,
        writer: &Writer,
        force: bool,
    ) -> Result<Value, ApiError> {
        let key = Self::key(rt, namespace, name);
        let old = self.objects.get(&key).cloned();
        match patch_type {
            PatchType::Apply => self.server_side_apply(
                rt, version, namespace, name, patch, status, writer, force, old,
            ),
            PatchType::Merge | PatchType::Json => {
                let old = old.ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
                let mut patched = Self::present(rt, version, &old);
                if patch_type == PatchType::Merge {
                    if !patch.is_object() {
                        return Err(ApiError::bad_request(
                            "merge patch body must be a JSON object",
                        ));
                    }
                    json_patch::merge(&mut patched, &patch);
                } else {
                    let ops: json_patch::Patch = serde_json::from_value(patch)
                        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                    json_patch::patch(&mut patched, &ops.0)
                        .map_err(|e| ApiError::new(422, "Invalid", format!("the server rejected our request due to an error in our request: {e}")))?;
                }
                Self::check_types(rt, &patched)?;
                Self::check_url_name(&patched, name)?;
                let mut patched_ns = patched.clone();
                Self::check_namespace(rt, namespace, &mut patched_ns)?;
                Self::precondition_rv(rt, name, &patched, &old)?;
                let mut new = Self::compose(rt, &old, patched, status);
                if let Some(mf) = old.pointer("/metadata/managedFields") {
                    meta_mut(&mut new).insert("managedFields".into(), mf.clone());
                }
                track_update(
                    Some(&old),
                    &mut new,
                    &writer.manager,
                    Self::scope_for(rt, status),
                    rt.builtin,
                    &rt.api_version(version),
                    &now_rfc3339(),
                );
                self.finish_update(rt, version, key, &old, new, writer.dry_run)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn server_side_apply(
        &mut self,
        rt: &ResourceType,
        version: &str,
        namespace: Option<&str>,
        name: &str,
        mut applied: Value,
        status: bool,
        writer: &Writer,
        force: bool,
        old: Option<Value>,
    ) -> Result<Value, ApiError> {
        if !applied.is_object() {
            return Err(ApiError::bad_request("apply patch must be an object"));
        }
        for field in ["apiVersion", "kind"] {
            if applied
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(ApiError::bad_request(format!(
                    "invalid object type: {field} must be set in an apply patch"
                )));
            }
        }
        Self::check_types(rt, &applied)?;
        if meta_str(&applied, "name").is_none_or(str::is_empty) {
            meta_mut(&mut applied).insert("name".into(), json!(name));
        }
        Self::check_url_name(&applied, name)?;
        Self::check_namespace(rt, namespace, &mut applied)?;
        if let Some(o) = &old {
            Self::precondition_rv(rt, name, &applied, o)?;
        }
        Self::strip_system_metadata(&mut applied);
        let api_version = rt.api_version(version);
        let now = now_rfc3339();
        let scope = Self::scope_for(rt, status);
        match old {
            None => {
                if status {
                    return Err(ApiError::not_found(&rt.group, &rt.plural, name));
                }
                Self::check_name(rt, name)?;
                let ns = meta_str(&applied, "namespace")
                    .unwrap_or_default()
                    .to_string();
                self.namespace_exists(rt, &ns)?;
                let key = Self::key(rt, Some(&ns), name);
                let req = ApplyRequest {
                    live: None,
                    applied: &applied,
                    manager: &writer.manager,
                    force,
                    builtin: rt.builtin,
                    scope,
                    api_version: &api_version,
                    now: &now,
                    target: (&rt.group, &rt.plural, name),
                };
                let mut obj = Self::present(rt, version, &apply(&req)?);
                self.server_defaults(rt, &mut obj, None)?;
                let uid = self.new_uid();
                let m = meta_mut(&mut obj);
                m.insert("uid".into(), json!(uid));
                m.insert("creationTimestamp".into(), json!(now));
                m.insert("generation".into(), json!(1));
                if writer.dry_run {
                    return Ok(obj);
                }
                let stored = self.put(key, obj);
                gc::collect(self);
                Ok(Self::present(rt, version, &stored))
            }
            Some(old) => {
                let key = Self::key(rt, namespace, name);
                let req = ApplyRequest {
                    live: Some(&old),
                    applied: &applied,
                    manager: &writer.manager,
                    force,
                    builtin: rt.builtin,
                    scope,
                    api_version: &api_version,
                    now: &now,
                    target: (&rt.group, &rt.plural, name),
                };
                let new = apply(&req)?;
                self.finish_update(rt, version, key, &old, new, writer.dry_run)
            }
        }
    }

    /// DELETE one object. Returns the object (still present, with deletionTimestamp) or a
    /// success Status (deleted at once).
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        version: &str,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let key = Self::key(rt, namespace, name);
        let obj = self
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        if let Some(uid) = &opts.uid
            && Some(uid.as_str()) != meta_str(&obj, "uid")
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&obj, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && Some(rv.as_str()) != meta_str(&obj, "resourceVersion")
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&obj, "resourceVersion").unwrap_or_default()
                ),
            ));
        }
        if opts.dry_run {
            return Ok(Self::present(rt, version, &obj));
        }
        let out = self.delete_key(&key, opts.propagation.unwrap_or(Propagation::Background));
        gc::collect(self);
        Ok(match out {
            Some(still) => Self::present(rt, version, &still),
            None => success_status(
                &rt.group,
                &rt.plural,
                name,
                meta_str(&obj, "uid").unwrap_or_default(),
            ),
        })
    }

    /// Start deleting an object: Orphan strips owner references from its dependents,
    /// Foreground adds the `foregroundDeletion` finalizer; an object with finalizers gets a
    /// deletionTimestamp and stays (returned), others are removed (None).
    pub(crate) fn delete_key(&mut self, key: &ObjKey, policy: Propagation) -> Option<Value> {
        let obj = self.objects.get(key)?.clone();
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
        if policy == Propagation::Orphan {
            gc::orphan_dependents(self, &uid);
        }
        let is_namespace = key.group.is_empty() && key.plural == "namespaces";
        let mut fins = finalizers(&obj);
        if policy == Propagation::Foreground && !fins.iter().any(|f| f == gc::FOREGROUND) {
            fins.push(gc::FOREGROUND.to_string());
        }
        if fins.is_empty() && !is_namespace {
            self.remove(key);
            return None;
        }
        let mut new = obj.clone();
        let already = obj.pointer("/metadata/deletionTimestamp").is_some();
        {
            let m = meta_mut(&mut new);
            if !fins.is_empty() {
                m.insert("finalizers".into(), json!(fins));
            }
            if !already {
                m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
        }
        if is_namespace && let Some(m) = new.as_object_mut() {
            m.insert("status".into(), json!({"phase": "Terminating"}));
        }
        if new == obj {
            return Some(obj);
        }
        Some(self.put(key.clone(), new))
    }

    /// DELETE a collection (label/field selected); returns the list of what was deleted.
    pub fn delete_collection(
        &mut self,
        rt: &ResourceType,
        version: &str,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let items = self.list(rt, namespace, labels, fields, None);
        let mut out = Vec::new();
        for item in items {
            let name = meta_str(&item, "name").unwrap_or_default().to_string();
            let ns = meta_str(&item, "namespace").map(str::to_string);
            if !opts.dry_run {
                let key = Self::key(rt, ns.as_deref(), &name);
                self.delete_key(&key, opts.propagation.unwrap_or(Propagation::Background));
            }
            out.push(Self::present(rt, version, &item));
        }
        gc::collect(self);
        Ok(json!({
            "apiVersion": rt.api_version(version),
            "kind": format!("{}List", rt.kind),
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": out,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> Writer {
        Writer {
            manager: "test".into(),
            dry_run: false,
        }
    }

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
    }

    fn rt(s: &State, g: &str, p: &str) -> ResourceType {
        s.resource(g, "v1", p).expect("kind")
    }

    #[test]
    fn default_namespaces_exist() {
        let s = State::new(100);
        let ns = rt(&s, "", "namespaces");
        for n in ["default", "kube-system"] {
            let o = s.get(&ns, None, n).expect("namespace");
            assert_eq!(o["status"]["phase"], "Active");
        }
    }

    #[test]
    fn create_sets_server_fields_and_rejects_duplicates() {
        let mut s = State::new(100);
        let o = s
            .create("", "v1", "configmaps", Some("default"), cm("a"), &w())
            .expect("create");
        assert!(meta_str(&o, "uid").is_some_and(|u| u.len() == 36));
        assert!(meta_str(&o, "creationTimestamp").is_some());
        assert_eq!(o["metadata"]["generation"], 1);
        assert_eq!(o["metadata"]["namespace"], "default");
        let err = s
            .create("", "v1", "configmaps", Some("default"), cm("a"), &w())
            .expect_err("dup");
        assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
        let err = s
            .create("", "v1", "configmaps", Some("nope"), cm("a"), &w())
            .expect_err("no ns");
        assert_eq!(err.code, 404);
        let err = s
            .create(
                "",
                "v1",
                "configmaps",
                Some("default"),
                cm("Bad_Name"),
                &w(),
            )
            .expect_err("bad name");
        assert_eq!(err.code, 422);
    }

    #[test]
    fn stale_update_conflicts_and_generation_tracks_spec() {
        let mut s = State::new(100);
        let t = rt(&s, "apps", "deployments");
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"replicas": 1}});
        let o = s
            .create("apps", "v1", "deployments", Some("default"), d, &w())
            .expect("create");
        let mut upd = o.clone();
        upd["spec"]["replicas"] = json!(2);
        let o2 = s
            .update(&t, "v1", Some("default"), "d", upd.clone(), false, &w())
            .expect("update");
        assert_eq!(o2["metadata"]["generation"], 2);
        let err = s
            .update(&t, "v1", Some("default"), "d", upd, false, &w())
            .expect_err("stale");
        assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
        // Status writes do not bump generation and main writes ignore status.
        let mut st = o2.clone();
        st["status"] = json!({"replicas": 2});
        let o3 = s
            .update(&t, "v1", Some("default"), "d", st, true, &w())
            .expect("status");
        assert_eq!(o3["metadata"]["generation"], 2);
        assert_eq!(o3["status"]["replicas"], 2);
        let mut main = o3.clone();
        main["status"] = json!({"replicas": 9});
        main["metadata"]["labels"] = json!({"x": "y"});
        let o4 = s
            .update(&t, "v1", Some("default"), "d", main, false, &w())
            .expect("main");
        assert_eq!(o4["status"]["replicas"], 2);
        assert_eq!(o4["metadata"]["generation"], 2);
    }

    #[test]
    fn noop_update_keeps_resource_version() {
        let mut s = State::new(100);
        let t = rt(&s, "", "configmaps");
        let o = s
            .create("", "v1", "configmaps", Some("default"), cm("a"), &w())
            .expect("create");
        let o2 = s
            .update(&t, "v1", Some("default"), "a", o.clone(), false, &w())
            .expect("noop");
        assert_eq!(
            o["metadata"]["resourceVersion"],
            o2["metadata"]["resourceVersion"]
        );
    }

    #[test]
    fn finalizers_hold_deletion_until_removed() {
        let mut s = State::new(100);
        let t = rt(&s, "", "configmaps");
        let mut c = cm("f");
        c["metadata"]["finalizers"] = json!(["example.com/hold"]);
        s.create("", "v1", "configmaps", Some("default"), c, &w())
            .expect("create");
        let held = s
            .delete(&t, "v1", Some("default"), "f", &DeleteOptions::default())
            .expect("delete");
        assert!(held.pointer("/metadata/deletionTimestamp").is_some());
        let mut released = s.get(&t, Some("default"), "f").expect("still there");
        released["metadata"]["finalizers"] = json!([]);
        s.update(&t, "v1", Some("default"), "f", released, false, &w())
            .expect("release");
        assert_eq!(
            s.get(&t, Some("default"), "f").map_err(|e| e.code),
            Err(404)
        );
    }

    #[test]
    fn history_window_expires_old_versions() {
        let mut s = State::new(3);
        let t = rt(&s, "", "configmaps");
        let start = s.resource_version();
        for i in 0..5 {
            s.create(
                "",
                "v1",
                "configmaps",
                Some("default"),
                cm(&format!("c{i}")),
                &w(),
            )
            .expect("create");
        }
        assert_eq!(
            s.subscribe(&t, None, Some(start))
                .map(|_| ())
                .map_err(|e| e.code),
            Err(410)
        );
        let (backlog, _rx) = s
            .subscribe(&t, None, Some(s.resource_version() - 2))
            .expect("recent");
        assert_eq!(backlog.len(), 2);
    }
}
