//! Whether a workload rolled out, from its spec and status alone (the rules of
//! `kubectl rollout status`): the controller observed the current generation, every desired
//! replica runs the current template, and every one is available.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};

/// Where one workload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub ready: bool,
    /// `Deployment web: 2 of 3 replicas available`.
    pub detail: String,
}

fn progress(kind: &str, name: &str, ready: bool, what: String) -> Progress {
    Progress {
        ready,
        detail: format!("{kind} {name}: {what}"),
    }
}

fn observed(generation: Option<i64>, observed: Option<i64>) -> bool {
    observed.unwrap_or(0) >= generation.unwrap_or(0)
}

pub fn deployment(d: &Deployment) -> Progress {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let p = |ready, what| progress("Deployment", name, ready, what);
    let desired = d.spec.replicas.unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    if !observed(d.metadata.generation, status.observed_generation) {
        return p(false, "waiting for the rollout to start".into());
    }
    if let Some(c) = status.conditions.iter().flatten().find(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        let why = c.message.clone().unwrap_or_default();
        return p(false, format!("progress deadline exceeded ({why})"));
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    if updated < desired {
        return p(false, format!("{updated} of {desired} replicas updated"));
    }
    if total > updated {
        return p(
            false,
            format!("{} old replicas pending termination", total - updated),
        );
    }
    if available < desired {
        return p(
            false,
            format!("{available} of {desired} replicas available"),
        );
    }
    p(true, format!("{available} of {desired} replicas available"))
}

pub fn stateful_set(s: &StatefulSet) -> Progress {
    let name = s.metadata.name.as_deref().unwrap_or_default();
    let p = |ready, what| progress("StatefulSet", name, ready, what);
    let desired = s.spec.replicas.unwrap_or(1);
    let status = s.status.clone().unwrap_or_default();
    if !observed(s.metadata.generation, status.observed_generation) {
        return p(false, "waiting for the rollout to start".into());
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status
        .available_replicas
        .unwrap_or(status.ready_replicas.unwrap_or(0));
    if updated < desired {
        return p(false, format!("{updated} of {desired} replicas updated"));
    }
    if available < desired {
        return p(
            false,
            format!("{available} of {desired} replicas available"),
        );
    }
    p(true, format!("{available} of {desired} replicas available"))
}

pub fn daemon_set(d: &DaemonSet) -> Progress {
    let name = d.metadata.name.as_deref().unwrap_or_default();
    let p = |ready, what| progress("DaemonSet", name, ready, what);
    let Some(status) = d.status.as_ref() else {
        return p(false, "waiting for the rollout to start".into());
    };
    if !observed(d.metadata.generation, status.observed_generation) {
        return p(false, "waiting for the rollout to start".into());
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let available = status.number_available.unwrap_or(0);
    if updated < desired {
        return p(false, format!("{updated} of {desired} pods updated"));
    }
    if available < desired {
        return p(false, format!("{available} of {desired} pods available"));
    }
    p(true, format!("{available} of {desired} pods available"))
}

/// The environment's verdict from its workloads' progress: ready when all are; the message
/// lists what is not (at most three, then a count).
pub fn summarize(progress: &[Progress]) -> (bool, String) {
    let waiting: Vec<&str> = progress
        .iter()
        .filter(|p| !p.ready)
        .map(|p| p.detail.as_str())
        .collect();
    if waiting.is_empty() {
        return (true, format!("{} workload(s) rolled out", progress.len()));
    }
    let mut message = waiting[..waiting.len().min(3)].join("; ");
    if waiting.len() > 3 {
        message = format!("{message}; and {} more", waiting.len() - 3);
    }
    (false, message)
}

/// `10m`, `1h30m`, `90s` → `1m30s`: Go's notation, whole seconds.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(generation: i64, replicas: i32, status: serde_json::Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "generation": generation},
            "spec": {"replicas": replicas, "selector": {}, "template": {}},
            "status": status,
        }))
        .expect("deployment")
    }

    #[test]
    fn a_deployment_is_ready_once_observed_updated_and_available() {
        let full = json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3});
        assert!(deployment(&deploy(2, 3, full.clone())).ready);
        let stale = deploy(3, 3, full);
        assert_eq!(
            deployment(&stale).detail,
            "Deployment web: waiting for the rollout to start"
        );
        let partial = deploy(
            2,
            3,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
        );
        let p = deployment(&partial);
        assert!(!p.ready);
        assert_eq!(p.detail, "Deployment web: 2 of 3 replicas available");
        let surge = deploy(
            2,
            3,
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
        );
        assert_eq!(
            deployment(&surge).detail,
            "Deployment web: 1 old replicas pending termination"
        );
        let old = deploy(
            2,
            3,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 3}),
        );
        assert_eq!(
            deployment(&old).detail,
            "Deployment web: 1 of 3 replicas updated"
        );
        let none = deploy(1, 1, serde_json::Value::Null);
        assert!(!deployment(&none).ready, "no status yet");
        let deadline = deploy(
            2,
            1,
            json!({"observedGeneration": 2, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"web-1\" has timed out progressing."}]}),
        );
        assert!(
            deployment(&deadline)
                .detail
                .contains("progress deadline exceeded")
        );
    }

    #[test]
    fn scaled_to_zero_is_ready() {
        let zero = deploy(1, 0, json!({"observedGeneration": 1}));
        assert!(deployment(&zero).ready);
    }

    #[test]
    fn stateful_and_daemon_sets_follow_the_same_rules() {
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "db", "generation": 1},
            "spec": {"replicas": 2, "selector": {}, "serviceName": "db", "template": {}},
            "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1},
        }))
        .expect("sts");
        assert_eq!(
            stateful_set(&sts).detail,
            "StatefulSet db: 1 of 2 replicas available"
        );
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "generation": 1},
            "spec": {"selector": {}, "template": {}},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 2, "currentNumberScheduled": 2,
                "numberMisscheduled": 0, "numberReady": 2, "updatedNumberScheduled": 2, "numberAvailable": 2},
        }))
        .expect("ds");
        assert!(daemon_set(&ds).ready);
    }

    #[test]
    fn the_summary_names_what_is_waited_for() {
        let p = |ready, d: &str| Progress {
            ready,
            detail: d.into(),
        };
        assert_eq!(
            summarize(&[p(true, "a"), p(true, "b")]),
            (true, "2 workload(s) rolled out".into())
        );
        let (ready, msg) = summarize(&[
            p(true, "a"),
            p(false, "b"),
            p(false, "c"),
            p(false, "d"),
            p(false, "e"),
        ]);
        assert!(!ready);
        assert_eq!(msg, "b; c; d; and 1 more");
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(format_duration(Duration::from_secs(600)), "10m");
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
