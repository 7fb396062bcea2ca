//! What reading a `PR` object costs on the applier's watch: the typed read a reflector does,
//! against the tolerant read the applier does (untyped first, then [`parse_pr`], so that one
//! object it cannot read never stops the watch). Per object, for a record as the applier writes
//! it (both field sets, a status with a 12-object inventory and its conditions) and for an
//! object as the original KubeTempura leaves it.
//!
//! `cargo bench -p kubetempura-common --bench pr_read`

#![allow(clippy::unwrap_used)] // A bench: a panic is the failure report.

use criterion::{Criterion, criterion_group, criterion_main};
use kube::core::DynamicObject;
use kubetempura_common::crd::{PR, parse_pr};
use serde_json::json;

fn recorded() -> Vec<u8> {
    let inventory: Vec<_> = (0..12)
        .map(|i| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "team-a",
                   "name": format!("web-pr123-{i}"), "uid": format!("2b1c5a4e-0000-4000-8000-{i:012}")})
        })
        .collect();
    serde_json::to_vec(&json!({
        "apiVersion": "kubetempura.mercari.com/v1", "kind": "PR",
        "metadata": {"name": "web-pr123", "namespace": "team-a", "uid": "0b4c0e9e-6a3c-4c1e-9d55-2d4c3b2a1f00",
                     "resourceVersion": "123456", "generation": 7,
                     "creationTimestamp": "2026-12-01T09:00:00Z",
                     "labels": {"app.kubernetes.io/managed-by": "kubetempura",
                                "kubetempura.mercari.com/reviewapp": "web", "kubetempura.mercari.com/pr": "123"},
                     "ownerReferences": [{"apiVersion": "kubetempura.mercari.com/v1", "kind": "ReviewApp",
                                          "name": "web", "uid": "5f0e8d2c-1b3a-4c5d-8e7f-0a1b2c3d4e5f",
                                          "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"reviewApp": "web", "parentReviewApp": "web", "number": 123, "prNumber": "123",
                 "headSha": "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7",
                 "headCommitRef": "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7",
                 "repository": "https://github.com/mercari/not-exists",
                 "headBranch": "feature/pr-123", "baseBranch": "main", "author": "octocat",
                 "title": "Add a preview", "labels": ["preview"], "draft": false, "fork": false,
                 "lastEventAt": "2026-12-01T09:00:00Z", "lastPushAt": "2026-12-01T09:00:00Z",
                 "lastDeliveryId": "72d3162e-cc78-11e3-81ab-4c9367dc0958", "closed": false,
                 "origin": "Webhook"},
        "status": {"phase": "Applied", "commitShort": "32f7bfe",
                   "appliedCommit": "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7", "appliedGeneration": 3,
                   "inventory": inventory, "message": "12 object(s) applied at 32f7bfe",
                   "conditions": [
                       {"type": "Ready", "status": "True", "reason": "Applied", "message": "12 object(s) applied",
                        "lastTransitionTime": "2026-12-01T09:00:01Z", "observedGeneration": 3},
                       {"type": "RolledOut", "status": "True", "reason": "Complete", "message": "",
                        "lastTransitionTime": "2026-12-01T09:00:30Z", "observedGeneration": 3}]},
    }))
    .unwrap()
}

fn original() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "kubetempura.mercari.com/v1", "kind": "PR",
        "metadata": {"name": "web-pr123", "namespace": "team-a", "uid": "0b4c0e9e-6a3c-4c1e-9d55-2d4c3b2a1f00",
                     "resourceVersion": "123456", "creationTimestamp": "2026-12-01T09:00:00Z"},
        "spec": {"parentReviewApp": "web", "prNumber": "123",
                 "headCommitRef": "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7",
                 "envVars": [{"name": "FEATURE_FLAG", "value": "on"}]},
    }))
    .unwrap()
}

fn bench(c: &mut Criterion) {
    for (name, bytes) in [("recorded", recorded()), ("original", original())] {
        let mut group = c.benchmark_group(format!("pr_read/{name}"));
        group.bench_function("typed", |b| {
            b.iter(|| serde_json::from_slice::<PR>(std::hint::black_box(&bytes)).unwrap());
        });
        group.bench_function("tolerant", |b| {
            b.iter(|| {
                let obj: DynamicObject =
                    serde_json::from_slice(std::hint::black_box(&bytes)).unwrap();
                parse_pr(obj).unwrap()
            });
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
