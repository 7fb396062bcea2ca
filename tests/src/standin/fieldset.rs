//! Field sets as server-side apply tracks them, and their `FieldsV1` encoding.
//!
//! A field set is a set of member paths. Members are leaves (scalars, atomic lists, empty
//! maps) and the items of associative lists; intermediate maps are not members. This is the
//! shape `metadata.managedFields[].fieldsV1` has on a real server (`f:` fields, `k:` list
//! items with a `.` marker when the item has owned children).
//!
//! List semantics (a simplification of structured-merge-diff, which reads them from the
//! OpenAPI schema): `metadata.ownerReferences` is keyed by `uid`; in built-in kinds a list whose
//! items are all objects with distinct string `name`s (containers, ports, env, volumes ...) is
//! keyed by `name`; every other list (all lists of custom kinds, `finalizers`, `args`) is
//! atomic: owned and replaced as a whole.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A map field (`f:name`).
    Field(String),
    /// An associative-list item, by its canonical key object (`k:{"name":"x"}`).
    Key(String),
    /// A set-list item (`v:"x"`), only read from client-provided field sets.
    Value(String),
}

/// A path from the object root.
pub type Path = Vec<PathElement>;

/// A set of member paths.
pub type FieldSet = BTreeSet<Path>;

impl PathElement {
    fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
        }
    }

    fn decode(s: &str) -> Option<Self> {
        if let Some(f) = s.strip_prefix("f:") {
            Some(PathElement::Field(f.to_string()))
        } else if let Some(k) = s.strip_prefix("k:") {
            let parsed: Value = serde_json::from_str(k).ok()?;
            Some(PathElement::Key(serde_json::to_string(&parsed).ok()?))
        } else {
            s.strip_prefix("v:")
                .map(|v| PathElement::Value(v.to_string()))
        }
    }
}

/// Render a path the way conflict messages do: `.spec.replicas`, `.spec.containers[name="x"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    let mut out = String::new();
    for pe in path {
        match pe {
            PathElement::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            PathElement::Key(k) => {
                let inner: Value = serde_json::from_str(k).unwrap_or(Value::Null);
                let parts: Vec<String> = inner
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                out.push('[');
                out.push_str(&parts.join(","));
                out.push(']');
            }
            PathElement::Value(v) => {
                out.push_str(&format!("[={v}]"));
            }
        }
    }
    out
}

/// The key field of a list at `path`, if the list is associative.
pub fn list_key(path: &[PathElement], items: &[Value], builtin: bool) -> Option<&'static str> {
    if items.is_empty() {
        return None;
    }
    let key = if path
        == [
            PathElement::Field("metadata".into()),
            PathElement::Field("ownerReferences".into()),
        ] {
        "uid"
    } else if builtin {
        "name"
    } else {
        return None;
    };
    let mut seen = BTreeSet::new();
    for item in items {
        let k = item.get(key).and_then(Value::as_str)?;
        if !seen.insert(k) {
            return None;
        }
    }
    Some(key)
}

fn key_of(key: &str, item: &Value) -> Option<String> {
    let v = item.get(key)?;
    let mut m = Map::new();
    m.insert(key.to_string(), v.clone());
    serde_json::to_string(&Value::Object(m)).ok()
}

/// The metadata fields that take part in field management.
const MANAGED_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

/// The member paths of an object's content (not `apiVersion`, `kind` or system metadata).
pub fn fields_of(obj: &Value, builtin: bool) -> FieldSet {
    let mut out = BTreeSet::new();
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    if let Some(m) = v.as_object() {
                        for mk in MANAGED_METADATA {
                            if let Some(mv) = m.get(mk) {
                                walk(
                                    mv,
                                    vec![
                                        PathElement::Field("metadata".into()),
                                        PathElement::Field(mk.into()),
                                    ],
                                    builtin,
                                    &mut out,
                                );
                            }
                        }
                    }
                }
                _ => walk(v, vec![PathElement::Field(k.clone())], builtin, &mut out),
            }
        }
    }
    out
}

fn walk(v: &Value, path: Path, builtin: bool, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                let mut p = path.clone();
                p.push(PathElement::Field(k.clone()));
                walk(c, p, builtin, out);
            }
        }
        Value::Array(items) => match list_key(&path, items, builtin) {
            Some(key) => {
                for item in items {
                    if let Some(k) = key_of(key, item) {
                        let mut p = path.clone();
                        p.push(PathElement::Key(k));
                        out.insert(p.clone());
                        walk(item, p, builtin, out);
                    }
                }
            }
            None => {
                out.insert(path);
            }
        },
        _ => {
            out.insert(path);
        }
    }
}

fn item_matches(item: &Value, key: &str) -> bool {
    let Ok(Value::Object(want)) = serde_json::from_str::<Value>(key) else {
        return false;
    };
    want.iter().all(|(k, v)| item.get(k) == Some(v))
}

fn value_matches(item: &Value, v: &str) -> bool {
    serde_json::from_str::<Value>(v).is_ok_and(|want| *item == want)
}

/// The value at a path.
pub fn get_at<'a>(v: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    let mut cur = v;
    for pe in path {
        cur = match pe {
            PathElement::Field(f) => cur.as_object()?.get(f)?,
            PathElement::Key(k) => cur.as_array()?.iter().find(|i| item_matches(i, k))?,
            PathElement::Value(val) => cur.as_array()?.iter().find(|i| value_matches(i, val))?,
        };
    }
    Some(cur)
}

/// The value at a path, mutably.
pub fn get_at_mut<'a>(v: &'a mut Value, path: &[PathElement]) -> Option<&'a mut Value> {
    let mut cur = v;
    for pe in path {
        cur = match pe {
            PathElement::Field(f) => cur.as_object_mut()?.get_mut(f)?,
            PathElement::Key(k) => cur
                .as_array_mut()?
                .iter_mut()
                .find(|i| item_matches(i, k))?,
            PathElement::Value(val) => cur
                .as_array_mut()?
                .iter_mut()
                .find(|i| value_matches(i, val))?,
        };
    }
    Some(cur)
}

/// Remove the field or list item at a path; true if something was removed.
pub fn remove_at(v: &mut Value, path: &[PathElement]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let Some(container) = get_at_mut(v, parent) else {
        return false;
    };
    match last {
        PathElement::Field(f) => container
            .as_object_mut()
            .is_some_and(|m| m.remove(f).is_some()),
        PathElement::Key(k) => match container.as_array_mut() {
            Some(items) => {
                let before = items.len();
                items.retain(|i| !item_matches(i, k));
                items.len() != before
            }
            None => false,
        },
        PathElement::Value(val) => match container.as_array_mut() {
            Some(items) => {
                let before = items.len();
                items.retain(|i| !value_matches(i, val));
                items.len() != before
            }
            None => false,
        },
    }
}

#[derive(Default)]
struct Node {
    member: bool,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn to_value(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, c) in &self.children {
            m.insert(k.clone(), c.to_value());
        }
        Value::Object(m)
    }
}

/// Encode as `FieldsV1`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Node::default();
    for path in set {
        let mut node = &mut root;
        for pe in path {
            node = node.children.entry(pe.encode()).or_default();
        }
        node.member = true;
    }
    root.to_value()
}

/// Decode `FieldsV1`.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut out = BTreeSet::new();
    decode_into(v, &mut Vec::new(), &mut out);
    out
}

fn decode_into(v: &Value, path: &mut Path, out: &mut FieldSet) {
    let Some(m) = v.as_object() else { return };
    for (k, child) in m {
        if k == "." {
            continue;
        }
        let Some(pe) = PathElement::decode(k) else {
            continue;
        };
        path.push(pe);
        let is_member = child
            .as_object()
            .is_some_and(|c| c.is_empty() || c.contains_key("."));
        if is_member {
            out.insert(path.clone());
        }
        decode_into(child, path, out);
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.into())
    }

    #[test]
    fn fields_of_skips_system_metadata_and_keys_named_lists_in_builtins() {
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "n", "labels": {"a": "1"}, "uid": "u"},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}
        });
        let set = fields_of(&obj, true);
        let enc = to_fields_v1(&set);
        assert_eq!(
            enc,
            json!({
                "f:metadata": {"f:labels": {"f:a": {}}},
                "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}
                }}}}
            })
        );
        assert_eq!(from_fields_v1(&enc), set);
    }

    #[test]
    fn custom_kinds_treat_lists_as_atomic() {
        let obj = json!({"spec": {"resources": [{"name": "x"}], "empty": {}}});
        let set = fields_of(&obj, false);
        assert!(set.contains(&vec![f("spec"), f("resources")]));
        assert!(set.contains(&vec![f("spec"), f("empty")]));
        assert_eq!(set.len(), 2);
    }

    #[test]
    fn duplicate_names_make_a_list_atomic() {
        let items = vec![json!({"name": "a"}), json!({"name": "a"})];
        assert_eq!(list_key(&[f("spec"), f("x")], &items, true), None);
        let items = vec![json!({"uid": "1"})];
        assert_eq!(
            list_key(&[f("metadata"), f("ownerReferences")], &items, false),
            Some("uid")
        );
    }

    #[test]
    fn get_and_remove_by_key() {
        let mut v = json!({"l": [{"name": "a", "x": 1}, {"name": "b", "x": 2}]});
        let p = vec![f("l"), PathElement::Key("{\"name\":\"b\"}".into()), f("x")];
        assert_eq!(get_at(&v, &p), Some(&json!(2)));
        assert!(remove_at(&mut v, &p[..2]));
        assert_eq!(v, json!({"l": [{"name": "a", "x": 1}]}));
        assert!(!remove_at(&mut v, &p[..2]));
    }

    #[test]
    fn path_strings_read_like_conflict_messages() {
        let p = vec![
            f("spec"),
            f("containers"),
            PathElement::Key("{\"name\":\"c\"}".into()),
            f("image"),
        ];
        assert_eq!(path_string(&p), ".spec.containers[name=\"c\"].image");
    }
}
