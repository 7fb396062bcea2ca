//! Server-side apply and `managedFields` bookkeeping.
//!
//! What it does, like a real server: every apply is recorded as an `Apply` entry of its field
//! manager holding exactly the fields of the applied configuration; a field the manager
//! applied before and omits now is removed from the object unless another manager also owns
//! it; applying a value different from the live one to a field another manager owns is a
//! conflict (409, one cause per field) unless `force`, which moves the ownership. Creates,
//! updates and non-apply patches are recorded as `Update` entries owning the fields they
//! changed (taken away from the other managers).
//!
//! Simplifications: list semantics come from heuristics instead of the OpenAPI schema (see
//! [`super::fieldset`]); a keyed list merges items by key and keeps the live order, appending
//! new items; `null` in an applied configuration is stored as a value rather than meaning
//! "remove"; there is no per-version schema conversion.

use serde_json::{Map, Value, json};

use super::fieldset::{
    FieldSet, Path, PathElement, fields_of, from_fields_v1, get_at, get_at_mut, list_key,
    path_string, remove_at, to_fields_v1,
};
use super::status::{ApiError, Cause};

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedEntry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion the manager used.
    pub api_version: String,
    /// RFC 3339 time of the last change.
    pub time: String,
    /// `status` for writes to the status subresource.
    pub subresource: Option<String>,
    /// Owned fields.
    pub fields: FieldSet,
}

impl ManagedEntry {
    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

/// Read `metadata.managedFields`.
pub fn read_managed(obj: &Value) -> Vec<ManagedEntry> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            Some(ManagedEntry {
                manager: s("manager")?,
                operation: s("operation").unwrap_or_else(|| "Update".into()),
                api_version: s("apiVersion").unwrap_or_default(),
                time: s("time").unwrap_or_default(),
                subresource: s("subresource").filter(|x| !x.is_empty()),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            })
        })
        .collect()
}

/// Write `metadata.managedFields` (dropping entries that own nothing).
pub fn write_managed(obj: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut m = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let (Some(sub), Some(map)) = (&e.subresource, m.as_object_mut()) {
                map.insert("subresource".into(), json!(sub));
            }
            m
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Where a write lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource of a kind without a status subresource: everything.
    All,
    /// The main resource of a kind with a status subresource: everything but `status`.
    Main,
    /// The `/status` subresource: only `status`.
    Status,
}

impl Scope {
    fn admits(self, p: &Path) -> bool {
        let is_status = p.first() == Some(&PathElement::Field("status".into()));
        match self {
            Scope::All => true,
            Scope::Main => !is_status,
            Scope::Status => is_status,
        }
    }

    fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Status => Some("status"),
            _ => None,
        }
    }
}

/// One server-side apply request.
pub struct ApplyRequest<'a> {
    /// The live object, if it exists (with its managedFields).
    pub live: Option<&'a Value>,
    /// The applied configuration (system metadata already stripped).
    pub applied: &'a Value,
    /// Field manager.
    pub manager: &'a str,
    /// `force=true`.
    pub force: bool,
    /// Built-in kind (list heuristics).
    pub builtin: bool,
    /// Which part of the object the request may change.
    pub scope: Scope,
    /// apiVersion recorded in the entry.
    pub api_version: &'a str,
    /// Current time, RFC 3339.
    pub now: &'a str,
    /// For conflict messages: group, plural, name.
    pub target: (&'a str, &'a str, &'a str),
}

fn restrict(v: &Value, scope: Scope) -> Value {
    let Some(map) = v.as_object() else {
        return v.clone();
    };
    let mut out = Map::new();
    for (k, val) in map {
        let keep = match scope {
            Scope::All => true,
            Scope::Main => k != "status",
            Scope::Status => matches!(k.as_str(), "status" | "apiVersion" | "kind" | "metadata"),
        };
        if keep {
            if scope == Scope::Status && k == "metadata" {
                // Metadata of a status apply only identifies the object.
                let mut m = Map::new();
                for id in ["name", "namespace"] {
                    if let Some(x) = val.get(id) {
                        m.insert(id.into(), x.clone());
                    }
                }
                out.insert(k.clone(), Value::Object(m));
            } else {
                out.insert(k.clone(), val.clone());
            }
        }
    }
    Value::Object(out)
}

/// Merge an applied configuration into an object.
pub fn merge_applied(target: &mut Value, applied: &Value, path: &mut Path, builtin: bool) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) => {
            for (k, av) in a {
                path.push(PathElement::Field(k.clone()));
                match t.get_mut(k) {
                    Some(tv) => merge_applied(tv, av, path, builtin),
                    None => {
                        t.insert(k.clone(), av.clone());
                    }
                }
                path.pop();
            }
        }
        (Value::Array(t), Value::Array(a)) => match if a.is_empty() {
            list_key(path, t, builtin)
        } else {
            list_key(path, a, builtin)
        } {
            Some(key) if t.iter().all(|i| i.get(key).is_some()) => {
                for item in a {
                    let k = item.get(key);
                    match t.iter_mut().find(|i| i.get(key) == k) {
                        Some(existing) => {
                            let mut m = Map::new();
                            if let Some(kv) = k {
                                m.insert(key.to_string(), kv.clone());
                            }
                            path.push(PathElement::Key(Value::Object(m).to_string()));
                            merge_applied(existing, item, path, builtin);
                            path.pop();
                        }
                        None => t.push(item.clone()),
                    }
                }
            }
            _ => *t = a.clone(),
        },
        (t, a) => *t = a.clone(),
    }
}

/// Whether `p` is the key field of the list item it is in (`...[name="x"].name`).
fn is_item_key_field(p: &Path) -> bool {
    let n = p.len();
    if n < 2 {
        return false;
    }
    match (&p[n - 2], &p[n - 1]) {
        (PathElement::Key(k), PathElement::Field(f)) => serde_json::from_str::<Value>(k)
            .ok()
            .and_then(|v| v.as_object().map(|m| m.contains_key(f)))
            .unwrap_or(false),
        _ => false,
    }
}

fn starts_with(p: &Path, prefix: &Path) -> bool {
    p.len() >= prefix.len() && p[..prefix.len()] == prefix[..]
}

/// Remove empty maps/lists left behind on the way up from `path`, unless someone owns them.
fn prune_empty_parents(obj: &mut Value, path: &Path, keep: &FieldSet) {
    for i in (1..path.len()).rev() {
        let parent: Path = path[..i].to_vec();
        if parent == [PathElement::Field("metadata".into())] {
            return;
        }
        let empty = match get_at(obj, &parent) {
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        };
        if !empty || keep.contains(&parent) {
            return;
        }
        remove_at(obj, &parent);
    }
}

/// Apply; returns the new object with its managedFields, or the conflict error.
pub fn apply(req: &ApplyRequest<'_>) -> Result<Value, ApiError> {
    let scoped = restrict(req.applied, req.scope);
    let fa: FieldSet = fields_of(&scoped, req.builtin)
        .into_iter()
        .filter(|p| req.scope.admits(p))
        .collect();
    let sub = req.scope.subresource();
    let mut entries = req.live.map(read_managed).unwrap_or_default();
    let live_value = req.live.cloned().unwrap_or_else(|| json!({}));

    // Conflicts with every other manager that owns a field we set to a different value.
    let mut conflicts: Vec<(usize, Path)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if e.is(req.manager, "Apply", sub) {
            continue;
        }
        for p in fa.intersection(&e.fields) {
            if matches!(p.last(), Some(PathElement::Key(_))) {
                continue;
            }
            if get_at(&live_value, p) != get_at(&scoped, p) {
                conflicts.push((i, p.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !req.force {
            return Err(conflict_error(req, &entries, &conflicts));
        }
        for (i, p) in &conflicts {
            if let Some(e) = entries.get_mut(*i) {
                e.fields.remove(p);
            }
        }
    }

    let old_mine: FieldSet = entries
        .iter()
        .find(|e| e.is(req.manager, "Apply", sub))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut keep: FieldSet = fa.clone();
    for e in entries.iter().filter(|e| !e.is(req.manager, "Apply", sub)) {
        keep.extend(e.fields.iter().cloned());
    }
    let mut result = live_value;
    // Whole list items first (shallowest first), then leaves (deepest first); never a list
    // item's key field while the item stays.
    let mut removable: Vec<&Path> = old_mine.difference(&keep).collect();
    removable.sort_by_key(|p| match p.last() {
        Some(PathElement::Key(_)) => (0, p.len() as isize),
        _ => (1, -(p.len() as isize)),
    });
    for p in removable {
        if keep.iter().any(|k| starts_with(k, p)) || is_item_key_field(p) {
            continue;
        }
        if remove_at(&mut result, p) {
            prune_empty_parents(&mut result, p, &keep);
        }
    }
    merge_applied(&mut result, &scoped, &mut Vec::new(), req.builtin);

    match entries.iter_mut().find(|e| e.is(req.manager, "Apply", sub)) {
        Some(e) => {
            e.fields = fa;
            e.time = req.now.to_string();
            e.api_version = req.api_version.to_string();
        }
        None => entries.push(ManagedEntry {
            manager: req.manager.to_string(),
            operation: "Apply".into(),
            api_version: req.api_version.to_string(),
            time: req.now.to_string(),
            subresource: sub.map(str::to_string),
            fields: fa,
        }),
    }
    prune_entries(&mut entries, &result);
    write_managed(&mut result, &entries);
    Ok(result)
}

fn conflict_error(
    req: &ApplyRequest<'_>,
    entries: &[ManagedEntry],
    conflicts: &[(usize, Path)],
) -> ApiError {
    let (group, plural, name) = req.target;
    let causes: Vec<Cause> = conflicts
        .iter()
        .map(|(i, p)| {
            let mgr = entries
                .get(*i)
                .map(|e| e.manager.as_str())
                .unwrap_or_default();
            Cause {
                reason: "FieldManagerConflict".into(),
                message: format!("conflict with \"{mgr}\""),
                field: path_string(p),
            }
        })
        .collect();
    let lines: Vec<String> = causes
        .iter()
        .map(|c| format!("- {}: {}", c.message, c.field))
        .collect();
    let n = causes.len();
    let mut err = ApiError::new(
        409,
        "Conflict",
        format!(
            "Apply failed with {n} conflict{}: {}",
            if n == 1 { "" } else { "s" },
            lines.join("\n")
        ),
    );
    err.group = group.to_string();
    err.kind = plural.to_string();
    err.name = name.to_string();
    err.causes = causes;
    err
}

/// Drop owned paths that no longer exist in the object.
fn prune_entries(entries: &mut [ManagedEntry], obj: &Value) {
    for e in entries.iter_mut() {
        e.fields.retain(|p| get_at(obj, p).is_some());
    }
}

/// Record a non-apply write (create, update, patch) of `manager` in `new`'s managedFields.
#[allow(clippy::too_many_arguments)]
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    scope: Scope,
    builtin: bool,
    api_version: &str,
    now: &str,
) {
    let mut entries = old.map(read_managed).unwrap_or_default();
    let sub = scope.subresource();
    let new_fields = fields_of(new, builtin);
    let changed: FieldSet = new_fields
        .into_iter()
        .filter(|p| scope.admits(p))
        .filter(|p| match old {
            None => true,
            Some(o) => get_at(o, p) != get_at(new, p),
        })
        .collect();
    for e in entries.iter_mut() {
        if !e.is(manager, "Update", sub) {
            for p in &changed {
                e.fields.remove(p);
            }
        }
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| e.is(manager, "Update", sub)) {
            Some(e) => {
                e.fields.extend(changed);
                e.time = now.to_string();
                e.api_version = api_version.to_string();
            }
            None => entries.push(ManagedEntry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: sub.map(str::to_string),
                fields: changed,
            }),
        }
    }
    prune_entries(&mut entries, new);
    write_managed(new, &entries);
}

/// Whether a path exists in an object (for tests and callers).
pub fn has_path(obj: &Value, path: &[&str]) -> bool {
    let p: Path = path
        .iter()
        .map(|s| PathElement::Field((*s).to_string()))
        .collect();
    get_at(obj, &p).is_some()
}

/// Mutable access used by the store to fix up values after a merge.
pub fn value_at_mut<'a>(obj: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    let p: Path = path
        .iter()
        .map(|s| PathElement::Field((*s).to_string()))
        .collect();
    get_at_mut(obj, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(
        live: Option<&'a Value>,
        applied: &'a Value,
        manager: &'a str,
        force: bool,
    ) -> ApplyRequest<'a> {
        ApplyRequest {
            live,
            applied,
            manager,
            force,
            builtin: true,
            scope: Scope::Main,
            api_version: "v1",
            now: "2024-01-01T00:00:00Z",
            target: ("", "configmaps", "c"),
        }
    }

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}, "data": data})
    }

    #[test]
    fn apply_creates_and_records_apply_entry() {
        let applied = cm(json!({"a": "1"}));
        let out = apply(&req(None, &applied, "m", false)).expect("applies");
        assert_eq!(out["data"], json!({"a": "1"}));
        let mf = &out["metadata"]["managedFields"][0];
        assert_eq!(mf["manager"], "m");
        assert_eq!(mf["operation"], "Apply");
        assert_eq!(mf["fieldsV1"], json!({"f:data": {"f:a": {}}}));
    }

    #[test]
    fn omitted_field_is_removed_unless_shared() {
        let v1 = apply(&req(None, &cm(json!({"a": "1", "b": "2"})), "m", false)).expect("first");
        let v2 = apply(&req(Some(&v1), &cm(json!({"a": "1"})), "m", false)).expect("second");
        assert_eq!(v2["data"], json!({"a": "1"}));

        // Shared ownership: another manager applied b with the same value.
        let v1 = apply(&req(None, &cm(json!({"a": "1", "b": "2"})), "m", false)).expect("first");
        let v1 = apply(&req(Some(&v1), &cm(json!({"b": "2"})), "other", false)).expect("shared");
        let v2 = apply(&req(Some(&v1), &cm(json!({"a": "1"})), "m", false)).expect("second");
        assert_eq!(v2["data"], json!({"a": "1", "b": "2"}));
    }

    #[test]
    fn conflicting_value_is_409_unless_forced() {
        let v1 = apply(&req(None, &cm(json!({"a": "1"})), "m", false)).expect("first");
        let err =
            apply(&req(Some(&v1), &cm(json!({"a": "2"})), "other", false)).expect_err("conflict");
        assert_eq!(err.code, 409);
        assert_eq!(err.reason, "Conflict");
        assert_eq!(err.causes[0].field, ".data.a");
        assert!(err.causes[0].message.contains("\"m\""));
        let v2 = apply(&req(Some(&v1), &cm(json!({"a": "2"})), "other", true)).expect("forced");
        assert_eq!(v2["data"]["a"], "2");
        let owners: Vec<String> = read_managed(&v2).into_iter().map(|e| e.manager).collect();
        assert_eq!(owners, vec!["other".to_string()]);
    }

    #[test]
    fn keyed_lists_merge_by_name_in_builtins() {
        let d = |containers: Value| json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": {"containers": containers}}}});
        let v1 = apply(&req(
            None,
            &d(json!([{"name": "a", "image": "x"}])),
            "m1",
            false,
        ))
        .expect("m1");
        let v2 = apply(&req(
            Some(&v1),
            &d(json!([{"name": "b", "image": "y"}])),
            "m2",
            false,
        ))
        .expect("m2");
        let names: Vec<&str> = v2["spec"]["template"]["spec"]["containers"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(names, vec!["a", "b"]);
        // m1 drops its container: only m2's remains.
        let v3 = apply(&req(Some(&v2), &d(json!([])), "m1", false)).expect("m1 again");
        assert_eq!(
            v3["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b", "image": "y"}])
        );
    }

    #[test]
    fn main_scope_ignores_status_and_status_scope_only_status() {
        let mut r = req(None, &Value::Null, "m", false);
        let applied = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "c"}, "spec": {"a": 1}, "status": {"s": 1}});
        r.applied = &applied;
        let v1 = apply(&r).expect("main");
        assert!(v1.get("status").is_none());
        let st = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "c", "labels": {"x": "y"}}, "spec": {"a": 2}, "status": {"s": 2}});
        let mut r2 = req(Some(&v1), &st, "m", false);
        r2.scope = Scope::Status;
        let v2 = apply(&r2).expect("status");
        assert_eq!(v2["spec"]["a"], 1);
        assert_eq!(v2["status"]["s"], 2);
        assert!(v2.pointer("/metadata/labels").is_none());
        let subs: Vec<Option<String>> = read_managed(&v2)
            .into_iter()
            .map(|e| e.subresource)
            .collect();
        assert_eq!(subs, vec![None, Some("status".to_string())]);
    }

    #[test]
    fn updates_take_ownership_of_changed_fields() {
        let v1 = apply(&req(None, &cm(json!({"a": "1"})), "m", false)).expect("apply");
        let mut v2 = v1.clone();
        v2["data"]["a"] = json!("9");
        track_update(Some(&v1), &mut v2, "editor", Scope::Main, true, "v1", "now");
        let entries = read_managed(&v2);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].manager, "editor");
        assert_eq!(entries[0].operation, "Update");
        // The applier now conflicts with the editor.
        let err = apply(&req(Some(&v2), &cm(json!({"a": "1"})), "m", false)).expect_err("conflict");
        assert!(err.message.contains("editor"));
    }
}
