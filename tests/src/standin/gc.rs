//! Garbage collection by owner references, finalizer handling and namespace termination.
//!
//! Runs synchronously after every write until nothing changes, so by the time a delete
//! returns, everything it set in motion that can finish has finished (a real cluster does the
//! same asynchronously; clients observe the same sequence of states and events):
//! - an object with a deletionTimestamp and no finalizers is removed;
//! - `foregroundDeletion`: the owner's dependents are deleted (foreground, so chains go
//!   bottom-up); when none is left the finalizer is dropped and the owner goes;
//! - an object all of whose owners (by uid) are gone is deleted in the background; one that
//!   still has a live owner loses only its dangling references;
//! - a terminating namespace deletes its content and goes once it is empty.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::store::{ObjKey, Propagation, State, finalizers, meta_mut, meta_str, owner_uids};

/// The finalizer of foreground cascading deletion.
pub const FOREGROUND: &str = "foregroundDeletion";

const MAX_STEPS: usize = 1_000_000;

/// Remove owner references to `uid` from every dependent (orphan propagation).
pub fn orphan_dependents(state: &mut State, uid: &str) {
    let deps: Vec<(ObjKey, Value)> = state
        .objects()
        .iter()
        .filter(|(_, o)| owner_uids(o).iter().any(|u| u == uid))
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    for (key, mut obj) in deps {
        strip_refs(&mut obj, |u| u == uid);
        state.put(key, obj);
    }
}

fn strip_refs(obj: &mut Value, drop: impl Fn(&str) -> bool) {
    let m = meta_mut(obj);
    let kept: Vec<Value> = m
        .get("ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|r| !r.get("uid").and_then(Value::as_str).is_some_and(&drop))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if kept.is_empty() {
        m.remove("ownerReferences");
    } else {
        m.insert("ownerReferences".into(), Value::Array(kept));
    }
}

/// Run collection to a fixed point.
pub fn collect(state: &mut State) {
    for _ in 0..MAX_STEPS {
        if !step(state) {
            return;
        }
    }
    tracing::warn!("garbage collection did not settle");
}

fn deleting(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_some()
}

/// One change; false when there is nothing to do.
fn step(state: &mut State) -> bool {
    let uids: HashSet<String> = state
        .objects()
        .values()
        .filter_map(|o| meta_str(o, "uid").map(str::to_string))
        .collect();

    let terminating: Vec<(ObjKey, Value)> = state
        .objects()
        .iter()
        .filter(|(_, o)| deleting(o))
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    for (key, obj) in terminating {
        let fins = finalizers(&obj);
        if key.group.is_empty() && key.plural == "namespaces" {
            let content: Vec<(ObjKey, bool)> = state
                .objects()
                .iter()
                .filter(|(k, _)| k.namespace == key.name)
                .map(|(k, o)| (k.clone(), deleting(o)))
                .collect();
            if let Some((k, _)) = content.iter().find(|(_, d)| !d) {
                state.delete_key(k, Propagation::Background);
                return true;
            }
            if content.is_empty() && fins.is_empty() {
                state.remove(&key);
                return true;
            }
            continue;
        }
        if fins.iter().any(|f| f == FOREGROUND) {
            let uid = meta_str(&obj, "uid").unwrap_or_default().to_string();
            let deps: Vec<(ObjKey, bool)> = state
                .objects()
                .iter()
                .filter(|(_, o)| owner_uids(o).contains(&uid))
                .map(|(k, o)| (k.clone(), deleting(o)))
                .collect();
            if deps.is_empty() {
                let rest: Vec<String> = fins.into_iter().filter(|f| f != FOREGROUND).collect();
                if rest.is_empty() {
                    state.remove(&key);
                } else {
                    let mut new = obj.clone();
                    meta_mut(&mut new).insert("finalizers".into(), json!(rest));
                    state.put(key, new);
                }
                return true;
            }
            if let Some((k, _)) = deps.iter().find(|(_, d)| !d) {
                state.delete_key(k, Propagation::Foreground);
                return true;
            }
            continue;
        }
        if fins.is_empty() {
            state.remove(&key);
            return true;
        }
    }

    // Find the first dependent needing work without cloning the others: each write runs this,
    // so its cost is what bounds the stand-in's throughput with many objects.
    let work = state.objects().iter().find_map(|(key, obj)| {
        let refs = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)?;
        let uid_of = |r: &Value| r.get("uid").and_then(Value::as_str).map(str::to_owned);
        let total = refs.iter().filter_map(uid_of).count();
        if total == 0 {
            return None;
        }
        let live = refs
            .iter()
            .filter_map(uid_of)
            .filter(|u| uids.contains(u))
            .count();
        if live == 0 {
            (!deleting(obj)).then(|| (key.clone(), None))
        } else if live < total {
            let mut stripped = obj.clone();
            strip_refs(&mut stripped, |u| !uids.contains(u));
            Some((key.clone(), Some(stripped)))
        } else {
            None
        }
    });
    match work {
        Some((key, None)) => {
            state.delete_key(&key, Propagation::Background);
            true
        }
        Some((key, Some(stripped))) => {
            state.put(key, stripped);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standin::store::{DeleteOptions, Writer};

    fn w() -> Writer {
        Writer {
            manager: "test".into(),
            dry_run: false,
        }
    }

    fn cm(name: &str, owners: &[&Value]) -> Value {
        let refs: Vec<Value> = owners
            .iter()
            .map(|o| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}))
            .collect();
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "ownerReferences": refs}})
    }

    fn setup() -> (State, Value, Value, Value) {
        let mut s = State::new(1000);
        let root = s
            .create(
                "",
                "v1",
                "configmaps",
                Some("default"),
                cm("root", &[]),
                &w(),
            )
            .expect("root");
        let mid = s
            .create(
                "",
                "v1",
                "configmaps",
                Some("default"),
                cm("mid", &[&root]),
                &w(),
            )
            .expect("mid");
        let leaf = s
            .create(
                "",
                "v1",
                "configmaps",
                Some("default"),
                cm("leaf", &[&mid]),
                &w(),
            )
            .expect("leaf");
        (s, root, mid, leaf)
    }

    fn exists(s: &State, name: &str) -> bool {
        let t = s.resource("", "v1", "configmaps").expect("kind");
        s.get(&t, Some("default"), name).is_ok()
    }

    fn delete(s: &mut State, name: &str, p: Propagation) -> Value {
        let t = s.resource("", "v1", "configmaps").expect("kind");
        s.delete(
            &t,
            "v1",
            Some("default"),
            name,
            &DeleteOptions {
                propagation: Some(p),
                ..Default::default()
            },
        )
        .expect("delete")
    }

    #[test]
    fn background_cascades_through_chains() {
        let (mut s, ..) = setup();
        let out = delete(&mut s, "root", Propagation::Background);
        assert_eq!(out["kind"], "Status");
        assert!(!exists(&s, "root") && !exists(&s, "mid") && !exists(&s, "leaf"));
    }

    #[test]
    fn orphan_keeps_dependents_without_the_reference() {
        let (mut s, ..) = setup();
        delete(&mut s, "root", Propagation::Orphan);
        assert!(!exists(&s, "root") && exists(&s, "mid") && exists(&s, "leaf"));
        let t = s.resource("", "v1", "configmaps").expect("kind");
        let mid = s.get(&t, Some("default"), "mid").expect("mid");
        assert!(mid.pointer("/metadata/ownerReferences").is_none());
    }

    #[test]
    fn foreground_waits_for_dependents_with_finalizers() {
        let (mut s, _, mid, _) = setup();
        let t = s.resource("", "v1", "configmaps").expect("kind");
        // A dependent that holds on: a finalizer on leaf.
        let mut leaf = s.get(&t, Some("default"), "leaf").expect("leaf");
        leaf["metadata"]["finalizers"] = json!(["example.com/hold"]);
        s.update(&t, "v1", Some("default"), "leaf", leaf, false, &w())
            .expect("hold");
        let out = delete(&mut s, "root", Propagation::Foreground);
        assert_eq!(out["metadata"]["finalizers"], json!([FOREGROUND]));
        assert!(exists(&s, "root") && exists(&s, "mid") && exists(&s, "leaf"));
        let mid_now = s.get(&t, Some("default"), "mid").expect("mid");
        assert!(deleting(&mid_now));
        assert_eq!(mid_now["metadata"]["uid"], mid["metadata"]["uid"]);
        let mut leaf = s.get(&t, Some("default"), "leaf").expect("leaf");
        leaf["metadata"]["finalizers"] = json!([]);
        s.update(&t, "v1", Some("default"), "leaf", leaf, false, &w())
            .expect("release");
        assert!(!exists(&s, "root") && !exists(&s, "mid") && !exists(&s, "leaf"));
    }

    #[test]
    fn dependent_with_another_live_owner_only_loses_the_reference() {
        let mut s = State::new(1000);
        let a = s
            .create("", "v1", "configmaps", Some("default"), cm("a", &[]), &w())
            .expect("a");
        let b = s
            .create("", "v1", "configmaps", Some("default"), cm("b", &[]), &w())
            .expect("b");
        s.create(
            "",
            "v1",
            "configmaps",
            Some("default"),
            cm("dep", &[&a, &b]),
            &w(),
        )
        .expect("dep");
        delete(&mut s, "a", Propagation::Background);
        let t = s.resource("", "v1", "configmaps").expect("kind");
        let dep = s.get(&t, Some("default"), "dep").expect("kept");
        assert_eq!(
            owner_uids(&dep),
            vec![
                b["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            ]
        );
    }

    #[test]
    fn namespace_deletion_removes_content() {
        let mut s = State::new(1000);
        s.create(
            "",
            "v1",
            "namespaces",
            None,
            json!({"metadata": {"name": "pr-1"}}),
            &w(),
        )
        .expect("ns");
        s.create("", "v1", "configmaps", Some("pr-1"), cm("x", &[]), &w())
            .expect("cm");
        let ns = s.resource("", "v1", "namespaces").expect("kind");
        s.delete(&ns, "v1", None, "pr-1", &DeleteOptions::default())
            .expect("delete");
        assert_eq!(s.get(&ns, None, "pr-1").map_err(|e| e.code), Err(404));
        let t = s.resource("", "v1", "configmaps").expect("kind");
        assert!(s.get(&t, Some("pr-1"), "x").is_err());
    }
}
