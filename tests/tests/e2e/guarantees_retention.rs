//! Nothing resurrects a closed environment: the applier refuses to start when a tombstone would
//! be collected while the queue or its dead-letter queue may still hold an event of its pull
//! request, unless told to accept it. Real processes: the SQS emulator and `kubetempura run`.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use crate::guarantees_support;

use std::time::Duration;

use guarantees_support::*;
use kubetempura_tests::harness::stack::{Stack, StackOptions};

#[tokio::test(flavor = "multi_thread")]
async fn a_tombstone_retention_shorter_than_the_queues_message_retention_is_refused_at_start() {
    let mut stack = Stack::start(StackOptions {
        applier: false,
        ..options("retention", &[])
    })
    .await;
    // The queue keeps a message one hour, its dead-letter queue two days.
    stack.sqs.set_retention(&stack.queues.url, 3_600).await;
    stack
        .sqs
        .set_retention(&stack.queues.dlq_url, 172_800)
        .await;

    // Two hours covers the queue, not its dead-letter queue.
    let (status, output) = stack.run_applier_to_exit(
        &["--tombstone-retention-seconds", "7200"],
        Duration::from_secs(60),
    );
    let status = status.unwrap_or_else(|| panic!("the applier did not exit:\n{output}"));
    assert!(!status.success(), "{output}");
    let error = output
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{output}"));
    for part in [
        "--tombstone-retention-seconds (KUBETEMPURA_TOMBSTONE_RETENTION_SECONDS) is 7200 s",
        "message retention (3600 s)",
        "retention-dlq.fifo's (172800 s)",
        "at least 172800",
        "--allow-short-tombstone-retention",
    ] {
        assert!(error.contains(part), "{part:?} not in {error}");
    }

    // The escape hatch: it starts, and says what it accepted.
    stack.options.applier_args.extend(
        [
            "--tombstone-retention-seconds",
            "7200",
            "--allow-short-tombstone-retention",
        ]
        .map(String::from),
    );
    stack.start_applier().await;
    let log = log(&stack);
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("is 7200 s, shorter than")
            && l.contains("accepted: --allow-short-tombstone-retention")),
        "{log}"
    );
}
