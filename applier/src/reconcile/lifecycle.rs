//! The lifecycle policies of a ReviewApp beyond its filters: idle expiry (`expireAfter`), the
//! build gate (`waitFor`, decided in [`super::environment`] against the check ledger) and the
//! cap on deployed environments (`maxActive`). The rules here are pure; [`sweep`] applies the
//! time- and slot-driven ones periodically.
//!
//! Everything is computed from what the `PR` records say (the time of the last push, the
//! phase, the inventory), never from timers in memory: a restarted applier decides the same,
//! and because every decision runs under the environment's lock and writes its record
//! conditionally, a sweep and an event (or two replicas) never act twice on one environment.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kubetempura_common::crd::{PR, PRStatus, Phase, ReviewApp};

use super::record::{event_from_pr, pushed_at};
use super::{Ctx, Trigger, reconcile};

/// True when an environment last pushed (or woken) at `pushed_at` (RFC 3339) has been idle for
/// `ttl` at `now`. An unreadable time never expires anything.
pub fn is_expired(pushed_at: &str, ttl: Duration, now: DateTime<Utc>) -> bool {
    DateTime::parse_from_rfc3339(pushed_at).is_ok_and(|t| {
        (now - t.with_timezone(&Utc))
            .to_std()
            .is_ok_and(|idle| idle >= ttl)
    })
}

/// True when the environment's objects are at `sha` (the gate was passed for it).
pub fn is_deployed_at(status: &PRStatus, sha: &str) -> bool {
    matches!(status.phase, Some(Phase::Applied | Phase::Failed))
        && status.applied_commit.as_deref() == Some(sha)
}

/// True when the environment holds one of its ReviewApp's `maxActive` slots: it is deployed
/// (`Applied`), or it failed or waits at the gate with objects of an earlier commit still up.
pub fn occupies_slot(status: &PRStatus) -> bool {
    match status.phase {
        Some(Phase::Applied) => true,
        Some(Phase::Failed | Phase::Waiting | Phase::Blocked) => !status.inventory.is_empty(),
        _ => false,
    }
}

fn holds_slot(pr: &PR) -> bool {
    !pr.spec.closed && pr.status.as_ref().is_some_and(occupies_slot)
}

fn is_queued(pr: &PR) -> bool {
    !pr.spec.closed && pr.status.as_ref().and_then(|s| s.phase) == Some(Phase::Queued)
}

/// Whether pull request `number` may take a slot of `max`, given the ReviewApp's `others`
/// environments: yes when a slot is free for it after every queued, older (lower-numbered)
/// pull request; otherwise its queue position (1: next).
pub fn slot<'a>(max: u32, number: u64, others: impl Iterator<Item = &'a PR>) -> Result<(), u32> {
    let (mut occupied, mut ahead) = (0_u32, 0_u32);
    for pr in others {
        if holds_slot(pr) {
            occupied = occupied.saturating_add(1);
        } else if is_queued(pr) && pr.spec.number < number {
            ahead = ahead.saturating_add(1);
        }
    }
    let position = ahead.saturating_add(1);
    if position <= max.saturating_sub(occupied) {
        Ok(())
    } else {
        Err(position)
    }
}

/// A duration as Kubernetes writes them: `48h`, `1h30m`, `90s`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Whether the sweep should expire `pr` now.
fn expiry_due(pr: &PR, ttl: Duration, now: DateTime<Utc>) -> bool {
    // An environment made by hand lives until its PR object is deleted.
    let live = !pr.spec.closed
        && pr.spec.origin != kubetempura_common::crd::Origin::Manual
        && !matches!(
            pr.status.as_ref().and_then(|s| s.phase),
            None | Some(Phase::Expired | Phase::Skipped | Phase::Closed)
        );
    live && pushed_at(pr).is_some_and(|t| (now - t).to_std().is_ok_and(|idle| idle >= ttl))
}

/// The environments of `app` (not closed), freshest copies, including this process's own
/// writes the watch cache does not show yet.
pub(super) fn environments(ctx: &Ctx, app: &ReviewApp) -> Vec<Arc<PR>> {
    let ns = app.namespace().unwrap_or_default();
    let name = app.name_any();
    ctx.current_prs()
        .into_iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(ns.as_str())
                && p.spec.review_app == name
                && !p.spec.closed
        })
        .collect()
}

/// The queued environments the sweep must re-decide: those a free slot now admits, and those
/// whose recorded position moved. Oldest pull request first.
fn queue_moves(max: u32, prs: &[Arc<PR>]) -> Vec<Arc<PR>> {
    let occupied = prs.iter().filter(|p| holds_slot(p)).count();
    let free = usize::try_from(max)
        .unwrap_or(usize::MAX)
        .saturating_sub(occupied);
    let mut queued: Vec<_> = prs.iter().filter(|p| is_queued(p)).cloned().collect();
    queued.sort_by_key(|p| p.spec.number);
    queued
        .into_iter()
        .enumerate()
        .filter(|(i, p)| {
            let position = u32::try_from(i + 1).unwrap_or(u32::MAX);
            *i < free || p.status.as_ref().and_then(|s| s.queue_position) != Some(position)
        })
        .map(|(_, p)| p)
        .collect()
}

/// Expires the idle environments of every ReviewApp with `expireAfter`, then admits queued
/// environments into the slots of every ReviewApp with `maxActive` (and brings their queue
/// positions up to date). Each acts through an ordinary re-render, under the environment's
/// lock, from the freshest record.
pub async fn sweep(ctx: &Ctx) {
    for app in ctx.caches.all_apps() {
        let (ttl, max) = (app.spec.expire_after(), app.spec.max_active);
        if ttl.is_none() && max.is_none() {
            continue;
        }
        if let Some(ttl) = ttl {
            let now = Utc::now();
            for pr in environments(ctx, &app) {
                if expiry_due(&pr, ttl, now) {
                    rerender(ctx, &app, &pr, "expiry").await;
                }
            }
        }
        if let Some(max) = max {
            for pr in queue_moves(max, &environments(ctx, &app)) {
                rerender(ctx, &app, &pr, "queue").await;
            }
        }
    }
}

async fn rerender(ctx: &Ctx, app: &ReviewApp, pr: &PR, why: &str) {
    let Some(event) = event_from_pr(pr) else {
        return;
    };
    match reconcile(ctx, app, &event, Trigger::Rerender).await {
        Ok(outcome) => {
            tracing::info!(pr = %pr.name_any(), why, outcome = outcome.label(), "lifecycle")
        }
        Err(e) => {
            tracing::warn!(pr = %pr.name_any(), why, error = %e, "lifecycle re-decision failed; the next sweep retries")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubetempura_common::crd::{InventoryEntry, PRSpec};

    fn pr(number: u64, phase: Phase, objects: usize, position: Option<u32>) -> Arc<PR> {
        let mut pr = PR::new(
            &format!("web-pr{number}"),
            PRSpec {
                review_app: "web".into(),
                repository: "https://github.com/o/r".into(),
                number,
                head_sha: "a".repeat(40),
                recorded_head: Some("a".repeat(40)),
                head_branch: "f".into(),
                base_branch: "main".into(),
                author: None,
                title: None,
                labels: Vec::new(),
                draft: false,
                fork: false,
                last_event_at: "2026-12-01T00:00:00Z".into(),
                last_push_at: None,
                last_delivery_id: None,
                closed: false,
                env_vars: Vec::new(),
                origin: kubetempura_common::crd::Origin::Webhook,
            },
        );
        pr.status = Some(PRStatus {
            phase: Some(phase),
            inventory: (0..objects)
                .map(|i| InventoryEntry {
                    api_version: "v1".into(),
                    kind: "Service".into(),
                    namespace: Some("ns".into()),
                    name: format!("s{i}"),
                    uid: None,
                })
                .collect(),
            queue_position: position,
            ..PRStatus::default()
        });
        Arc::new(pr)
    }

    #[test]
    fn expiry_counts_from_the_last_push_and_bad_times_never_expire() {
        let now: DateTime<Utc> = "2026-12-03T00:00:00Z".parse().unwrap();
        let day = Duration::from_secs(86_400);
        assert!(is_expired("2026-12-02T00:00:00Z", day, now));
        assert!(!is_expired("2026-12-02T00:00:01Z", day, now));
        assert!(!is_expired("yesterday", day, now));
        // The sweep leaves alone what is already expired, skipped or not decided.
        let mut p = (*pr(1, Phase::Applied, 1, None)).clone();
        assert!(expiry_due(&p, day, now));
        for phase in [Phase::Expired, Phase::Skipped] {
            p.status.as_mut().unwrap().phase = Some(phase);
            assert!(!expiry_due(&p, day, now));
        }
        p.spec.last_push_at = Some("2026-12-02T12:00:00Z".into());
        p.status.as_mut().unwrap().phase = Some(Phase::Queued);
        assert!(!expiry_due(&p, day, now));
    }

    #[test]
    fn deployed_and_waiting_environments_with_objects_hold_slots() {
        let holds =
            |phase, objects| occupies_slot(pr(1, phase, objects, None).status.as_ref().unwrap());
        assert!(holds(Phase::Applied, 0));
        assert!(holds(Phase::Waiting, 2) && holds(Phase::Blocked, 1) && holds(Phase::Failed, 1));
        assert!(!holds(Phase::Waiting, 0) && !holds(Phase::Failed, 0));
        for phase in [Phase::Queued, Phase::Expired, Phase::Skipped, Phase::Closed] {
            assert!(!holds(phase, 0), "{phase:?}");
        }
    }

    #[test]
    fn slots_go_to_the_oldest_pull_request_first() {
        let others = [
            pr(1, Phase::Applied, 1, None),
            pr(4, Phase::Queued, 0, Some(1)),
            pr(9, Phase::Queued, 0, Some(2)),
        ];
        let others = || others.iter().map(AsRef::as_ref);
        // Two slots, one used: PR 2 (older than the queued 4) takes the free one; PR 7 is
        // behind 4 and gets position 2, with only one free slot.
        assert_eq!(slot(2, 2, others()), Ok(()));
        assert_eq!(slot(2, 7, others()), Err(2));
        assert_eq!(slot(1, 2, others()), Err(1));
        assert_eq!(slot(3, 7, others()), Ok(()));
    }

    #[test]
    fn the_sweep_admits_into_free_slots_and_renumbers_the_queue() {
        let prs = vec![
            pr(1, Phase::Applied, 1, None),
            pr(9, Phase::Queued, 0, Some(3)),
            pr(4, Phase::Queued, 0, Some(2)),
            pr(12, Phase::Queued, 0, Some(3)),
        ];
        let moved: Vec<u64> = queue_moves(2, &prs).iter().map(|p| p.spec.number).collect();
        // 4 takes the free slot; 9 moves from 3 to position 2; 12 stays at 3.
        assert_eq!(moved, vec![4, 9]);
        assert!(queue_moves(1, &prs[..1]).is_empty());
    }

    #[test]
    fn durations_read_like_kubernetes() {
        assert_eq!(human_duration(Duration::from_secs(48 * 3600)), "48h");
        assert_eq!(human_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
    }
}
