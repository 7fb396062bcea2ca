//! Watch streams: newline-delimited JSON `WatchEvent`s.
//!
//! - `resourceVersion` unset or `0`: synthetic ADDED events for the current state, then changes.
//! - `resourceVersion=N`: the changes after N from the bounded history window; a version older
//!   than the window gets an ERROR event carrying a 410 `Expired` Status (as a real API server
//!   with its watch cache answers), after which the stream ends.
//! - `sendInitialEvents=true`: the current state as ADDED, then a BOOKMARK annotated
//!   `k8s.io/initial-events-end: "true"`, then changes (the streaming-list protocol).
//! - `allowWatchBookmarks=true`: periodic BOOKMARKs carrying the last resourceVersion sent.
//! - label/field selectors apply per event: an object that stops matching is sent as DELETED,
//!   one that starts matching as ADDED.
//! - `timeoutSeconds` ends the stream (default 30 minutes).

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::registry::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{EventType, State, StoredEvent, meta_str};

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Current state as ADDED events, then changes (`resourceVersion` unset or `0`).
    Current,
    /// Changes after this resourceVersion.
    After(u64),
}

/// A parsed watch request.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// Kind.
    pub rt: ResourceType,
    /// Served version (for apiVersion of objects).
    pub version: String,
    /// Namespace, or all.
    pub namespace: Option<String>,
    /// labelSelector.
    pub labels: LabelSelector,
    /// fieldSelector.
    pub fields: FieldSelector,
    /// Start.
    pub start: Start,
    /// allowWatchBookmarks.
    pub bookmarks: bool,
    /// sendInitialEvents.
    pub send_initial_events: bool,
    /// timeoutSeconds.
    pub timeout: Duration,
    /// Interval of periodic bookmarks.
    pub bookmark_interval: Duration,
}

fn line(type_: &str, object: Value) -> Bytes {
    let mut s = json!({"type": type_, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(rt: &ResourceType, version: &str, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end && let Some(m) = meta.as_object_mut() {
        m.insert(
            "annotations".into(),
            json!({"k8s.io/initial-events-end": "true"}),
        );
    }
    line(
        "BOOKMARK",
        json!({"kind": rt.kind, "apiVersion": rt.api_version(version), "metadata": meta}),
    )
}

/// What an event becomes for a watcher with selectors (None: not sent).
pub fn translate(
    ev: &StoredEvent,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Option<(&'static str, Value)> {
    let matches = |o: &Value| labels.matches(o) && fields.matches(o);
    match ev.type_ {
        EventType::Added => matches(&ev.object).then(|| ("ADDED", ev.object.clone())),
        EventType::Deleted => matches(&ev.object).then(|| ("DELETED", ev.object.clone())),
        EventType::Modified => {
            let was = ev.old.as_ref().is_some_and(matches);
            let is = matches(&ev.object);
            match (was, is) {
                (true, true) => Some(("MODIFIED", ev.object.clone())),
                (false, true) => Some(("ADDED", ev.object.clone())),
                (true, false) => Some(("DELETED", ev.object.clone())),
                (false, false) => None,
            }
        }
    }
}

/// Register the watch under the state lock and spawn the task feeding the response body.
/// Returns the receiver of body chunks.
pub fn start(state: &mut State, req: WatchRequest) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut initial: Vec<Bytes> = Vec::new();
    let ns = req.namespace.as_deref();
    let since = match (req.start, req.send_initial_events) {
        (Start::After(n), false) => Some(n),
        _ => None,
    };
    let mut last_rv = state.resource_version();
    let subscribed = state.subscribe(&req.rt, ns, since);
    let (backlog, mut events) = match subscribed {
        Ok(x) => x,
        Err(err) => {
            let _ = tx.try_send(line("ERROR", err.to_status()));
            return rx;
        }
    };
    if since.is_none() {
        for obj in state.list(&req.rt, ns, &req.labels, &req.fields, None) {
            initial.push(line("ADDED", State::present(&req.rt, &req.version, &obj)));
        }
        if req.send_initial_events {
            initial.push(bookmark(&req.rt, &req.version, last_rv, true));
        }
    } else if let Some(n) = since {
        last_rv = n;
    }
    let rt_for_bookmark = (req.rt.clone(), req.version.clone());
    let (labels, fields, rt, version) = (req.labels, req.fields, req.rt, req.version);
    let render = move |ev: &StoredEvent| {
        translate(ev, &labels, &fields).map(|(t, o)| line(t, State::present(&rt, &version, &o)))
    };
    for ev in &backlog {
        if let Some(l) = render(ev) {
            initial.push(l);
        }
        last_rv = last_rv.max(ev.rv);
    }
    let bookmarks = req.bookmarks;
    let timeout = req.timeout;
    let interval = req.bookmark_interval;
    tokio::spawn(async move {
        for l in initial {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = &mut deadline => return,
                ev = events.recv() => {
                    let Some(ev) = ev else { return };
                    last_rv = last_rv.max(ev.rv);
                    if let Some(l) = render(&ev)
                        && tx.send(l).await.is_err()
                    {
                        return;
                    }
                }
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(bookmark(&rt_for_bookmark.0, &rt_for_bookmark.1, last_rv, false)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Parse a `resourceVersion` for a watch.
pub fn parse_start(rv: Option<&str>) -> Result<Start, ApiError> {
    match rv {
        None | Some("") | Some("0") => Ok(Start::Current),
        Some(s) => s
            .parse::<u64>()
            .map(Start::After)
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}"))),
    }
}

/// The name in an event object (for logs).
pub fn event_name(v: &Value) -> &str {
    meta_str(v, "name").unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standin::store::ObjKey;

    fn ev(type_: EventType, old: Option<Value>, new: Value) -> StoredEvent {
        StoredEvent {
            rv: 1,
            type_,
            key: ObjKey {
                group: String::new(),
                plural: "configmaps".into(),
                namespace: "d".into(),
                name: "a".into(),
            },
            object: new,
            old,
        }
    }

    #[test]
    fn selector_transitions_become_added_and_deleted() {
        let sel = LabelSelector::parse("app=web").expect("sel");
        let fs = FieldSelector::default();
        let web = json!({"metadata": {"name": "a", "labels": {"app": "web"}}});
        let db = json!({"metadata": {"name": "a", "labels": {"app": "db"}}});
        let t = |e: &StoredEvent| translate(e, &sel, &fs).map(|(t, _)| t);
        assert_eq!(
            t(&ev(EventType::Modified, Some(db.clone()), web.clone())),
            Some("ADDED")
        );
        assert_eq!(
            t(&ev(EventType::Modified, Some(web.clone()), db.clone())),
            Some("DELETED")
        );
        assert_eq!(
            t(&ev(EventType::Modified, Some(web.clone()), web.clone())),
            Some("MODIFIED")
        );
        assert_eq!(
            t(&ev(EventType::Modified, Some(db.clone()), db.clone())),
            None
        );
        assert_eq!(t(&ev(EventType::Added, None, db)), None);
        assert_eq!(event_name(&web), "a");
    }

    #[test]
    fn start_parsing() {
        assert_eq!(parse_start(None), Ok(Start::Current));
        assert_eq!(parse_start(Some("0")), Ok(Start::Current));
        assert_eq!(parse_start(Some("12")), Ok(Start::After(12)));
        assert!(parse_start(Some("x")).is_err());
    }
}
