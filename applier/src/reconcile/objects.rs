//! An environment's objects in the cluster: applying them, pruning and deleting them, and the
//! ownership rule that guards both.
//!
//! **Ownership.** The applier changes or deletes only objects of its own environment: an object
//! carrying the environment's annotation ([`ANNOTATION_ENVIRONMENT`]) or an owner reference to
//! the environment's `PR` object (objects created before the annotation existed). Every apply over
//! an existing object and every delete names the object's uid as a precondition, so an object
//! deleted and re-created by someone else under the same name is neither taken over nor deleted.
//! An object the inventory recorded (with its uid) is applied without reading it first; any other
//! is read once, then created, applied with its uid, or refused as someone else's.

use kube::ResourceExt;
use kube::api::DynamicObject;
use kubetempura_common::crd::{ANNOTATION_ENVIRONMENT, InventoryEntry};
use kubetempura_common::render::RenderedObject;

use crate::kubeapi::{self, Discovery, Failure};

/// Who an environment is, as its objects record it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `<namespace>/<PR object name>`, the value of [`ANNOTATION_ENVIRONMENT`].
    pub environment: String,
    /// The uid of the `PR` object (owner of the environment's namespaced objects).
    pub pr_uid: String,
}

impl Identity {
    /// True when `obj` belongs to this environment.
    pub fn owns(&self, obj: &DynamicObject) -> bool {
        obj.annotations().get(ANNOTATION_ENVIRONMENT) == Some(&self.environment)
            || obj.owner_references().iter().any(|o| o.uid == self.pr_uid)
    }

    /// Why `obj` is not ours, for humans.
    fn refusal(&self, what: &str, obj: &DynamicObject) -> Failure {
        let owner = match obj.annotations().get(ANNOTATION_ENVIRONMENT) {
            Some(other) => format!("it belongs to the environment {other}"),
            None => "it was not created by this environment".to_owned(),
        };
        Failure::permanent(format!(
            "{what} already exists and {owner}; kubetempura does not take over or delete objects it does not own"
        ))
    }
}

/// True when a failed apply with a uid precondition means "this uid is not the object's any more":
/// a 409 when no object has the name, a 422 on `metadata.uid` when another object has it.
fn uid_precondition_failed(f: &Failure) -> bool {
    f.status() == Some(409) || (f.status() == Some(422) && f.to_string().contains("metadata.uid"))
}

/// Applies one rendered object if it is absent or ours; returns its inventory entry (with uid).
/// `known` is the inventory's entry for the same object, when the environment applied it before.
///
/// `(manager, adopt_from)`: the applier's field manager, and the one whose fields an object
/// adopted through its owner reference alone (the original KubeTempura's) hands over first, so
/// that later renders own — and can remove — everything that manager set (see
/// [`kubeapi::hand_over_fields`]).
pub async fn apply_owned(
    discovery: &Discovery,
    (manager, adopt_from): (&str, Option<&str>),
    identity: &Identity,
    obj: &RenderedObject,
    known: Option<&InventoryEntry>,
) -> Result<InventoryEntry, Failure> {
    let entry = |uid: String| InventoryEntry {
        uid: Some(uid),
        ..obj.inventory_entry()
    };
    if let Some(uid) = known.and_then(|k| k.uid.as_deref()) {
        match kubeapi::apply(discovery, manager, obj, Some(uid)).await {
            Ok(uid) => return Ok(entry(uid)),
            // Deleted, or replaced by another object since: look at what is there now.
            Err(f) if uid_precondition_failed(&f) => {}
            Err(f) => return Err(f),
        }
    }
    let what = format!("{} {}", obj.group_kind(), obj.name);
    let live = kubeapi::get(
        discovery,
        &obj.api_version,
        &obj.kind,
        obj.namespace.as_deref(),
        &obj.name,
    )
    .await?;
    let uid = match &live {
        None => None,
        Some(live) if identity.owns(live) => {
            if let Some(from) = adopt_from
                && !live.annotations().contains_key(ANNOTATION_ENVIRONMENT)
            {
                kubeapi::hand_over_fields(discovery, obj, live, from, manager).await?;
            }
            live.uid()
        }
        Some(live) => return Err(identity.refusal(&what, live)),
    };
    match kubeapi::apply(discovery, manager, obj, uid.as_deref()).await {
        Ok(uid) => Ok(entry(uid)),
        // Between the read and the apply, the object was deleted or replaced: retried from the read.
        Err(f) if uid.is_some() && uid_precondition_failed(&f) => Err(Failure::transient(format!(
            "{what} changed while it was being applied: {f}"
        ))),
        Err(f) => Err(f),
    }
}

/// What became of one inventory object asked to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Deleted,
    /// Already gone (or its kind is not served any more).
    Gone,
    /// Left alone: it is not ours any more (replaced under the same name), or the API server
    /// refused for good (a 403 …); the reason, for humans.
    Refused(String),
}

/// Deletes one inventory object if it is still ours. Transient failures are returned.
pub async fn delete_owned(
    discovery: &Discovery,
    identity: &Identity,
    entry: &InventoryEntry,
) -> Result<Removal, Failure> {
    let what = format!("{} {}", entry.kind, entry.name);
    let uid = match entry.uid.clone() {
        Some(uid) => uid,
        // Recorded before uids were: read it and check it is ours.
        None => {
            let live = kubeapi::get(
                discovery,
                &entry.api_version,
                &entry.kind,
                entry.namespace.as_deref(),
                &entry.name,
            )
            .await;
            match live {
                Ok(None) => return Ok(Removal::Gone),
                Ok(Some(live)) if identity.owns(&live) => live.uid().unwrap_or_default(),
                Ok(Some(live)) => {
                    return Ok(Removal::Refused(identity.refusal(&what, &live).to_string()));
                }
                Err(f) if f.is_transient() => return Err(f),
                Err(f) => return Ok(Removal::Refused(f.to_string())),
            }
        }
    };
    match kubeapi::delete(discovery, entry, &uid).await {
        Ok(true) => Ok(Removal::Deleted),
        Ok(false) => Ok(Removal::Gone),
        Err(f) if f.status() == Some(409) => Ok(Removal::Refused(format!(
            "{what} was replaced by an object this environment did not create; left alone"
        ))),
        Err(f) if f.is_transient() => Err(f),
        Err(f) => Ok(Removal::Refused(f.to_string())),
    }
}

/// What deleting a set of objects did.
#[derive(Debug, Default)]
pub struct Deleted {
    /// Objects deleted.
    pub count: usize,
    /// Objects left alone, with the reason.
    pub refused: Vec<String>,
}

impl Deleted {
    /// For humans: "2 object(s) deleted", plus what could not be.
    pub fn describe(&self) -> String {
        if self.refused.is_empty() {
            format!("{} object(s) deleted", self.count)
        } else {
            format!(
                "{} object(s) deleted; not deleted: {}",
                self.count,
                self.refused.join("; ")
            )
        }
    }
}

/// Deletes the given inventory objects concurrently (a close costs one round trip, not one per
/// object). A transient failure is returned (the work is retried); what is refused for good is
/// reported, so a close still completes.
pub async fn delete_all<'a>(
    discovery: &Discovery,
    identity: &Identity,
    entries: impl IntoIterator<Item = &'a InventoryEntry>,
) -> Result<Deleted, Failure> {
    let results = futures::future::join_all(
        entries
            .into_iter()
            .map(|e| delete_owned(discovery, identity, e)),
    )
    .await;
    let mut done = Deleted::default();
    for r in results {
        match r? {
            Removal::Deleted => done.count += 1,
            Removal::Gone => {}
            Removal::Refused(why) => done.refused.push(why),
        }
    }
    Ok(done)
}
