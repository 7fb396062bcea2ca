//! The webhook function across processes: the binary under `cargo lambda watch`, the SQS
//! emulator, signed deliveries POSTed over HTTP.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use kubetempura_applier::send_event::CheckDelivery;
use kubetempura_common::check::{CheckKind, CheckState, QueueMessage};
use kubetempura_common::event::{PrAction, PrEvent};
use kubetempura_common::testing::pull_request_examples;
use kubetempura_tests::harness::github::post_delivery;
use kubetempura_tests::harness::lambda::WebhookFunction;
use kubetempura_tests::harness::sqs::SqsEmulator;
use kubetempura_tests::harness::wait_for;

const SECRET: &str = "e2e-secret";

async fn function_for(sqs: &SqsEmulator, queue_url: &str) -> WebhookFunction {
    let mut env = sqs.env();
    env.push(("QUEUE_URL".into(), queue_url.into()));
    env.push(("WEBHOOK_SECRET".into(), format!("old-secret,{SECRET}")));
    WebhookFunction::start(&env).await
}

fn opened_example() -> Vec<u8> {
    pull_request_examples()
        .into_iter()
        .find(|e| e.action == "opened")
        .expect("opened example")
        .body
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_delivery_leaves_exactly_one_message_and_a_redelivery_none() {
    let sqs = SqsEmulator::start().await;
    let queues = sqs.create_fifo_with_dlq("webhook-e2e", 3, 30).await;
    let function = function_for(&sqs, &queues.url).await;
    let body = opened_example();
    let raw: serde_json::Value = serde_json::from_slice(&body).unwrap();

    let (status, reply) = post_delivery(
        &function.url,
        SECRET,
        "pull_request",
        "delivery-0001",
        &body,
    )
    .await;
    assert_eq!(status, 202, "{reply}\n{}", function.output());
    assert_eq!(reply["status"], "queued");
    let message_id = reply["messageId"].as_str().expect("message id").to_owned();

    // The same delivery again (GitHub's "Redeliver"): accepted, deduplicated by the queue.
    let (status, _) = post_delivery(
        &function.url,
        SECRET,
        "pull_request",
        "delivery-0001",
        &body,
    )
    .await;
    assert_eq!(status, 202);
    // A bad signature never reaches the queue.
    let (status, _) = post_delivery(
        &function.url,
        "wrong",
        "pull_request",
        "delivery-0002",
        &body,
    )
    .await;
    assert_eq!(status, 401);

    let messages = sqs.receive(&queues.url, 1).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert_eq!(m.message_id.as_deref(), Some(message_id.as_str()));
    let event = PrEvent::from_json(m.body.as_deref().unwrap()).unwrap();
    assert_eq!(event.action, PrAction::Opened);
    assert_eq!(event.delivery_id, "delivery-0001");
    assert_eq!(event.number, raw["number"].as_u64().unwrap());
    assert_eq!(
        event.head_sha,
        raw["pull_request"]["head"]["sha"].as_str().unwrap()
    );
    let attrs = m.attributes.as_ref().expect("system attributes");
    let repo = raw["repository"]["full_name"].as_str().unwrap();
    assert_eq!(
        attrs
            .get(&MessageSystemAttributeName::MessageGroupId)
            .map(String::as_str),
        Some(format!("{repo}#{}", event.number).as_str())
    );
    assert_eq!(
        attrs
            .get(&MessageSystemAttributeName::MessageDeduplicationId)
            .map(String::as_str),
        Some("delivery-0001")
    );
    let user_attrs = m.message_attributes.as_ref().expect("message attributes");
    assert_eq!(user_attrs["event"].string_value(), Some("pull_request"));
    assert_eq!(user_attrs["action"].string_value(), Some("opened"));
    assert_eq!(user_attrs["repository"].string_value(), Some(repo));

    // Nothing else is on the queue once the visibility timeout would have passed for others.
    assert!(sqs.receive(&queues.url, 1).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_that_is_down_gives_503_so_github_can_redeliver() {
    let mut sqs = SqsEmulator::start().await;
    let queues = sqs.create_fifo_with_dlq("webhook-down", 3, 30).await;
    let function = function_for(&sqs, &queues.url).await;
    // The function is warm (its clients are built); now the queue goes away.
    sqs.stop();
    let started = std::time::Instant::now();
    let (status, reply) = post_delivery(
        &function.url,
        SECRET,
        "pull_request",
        "delivery-down",
        &opened_example(),
    )
    .await;
    assert_eq!(status, 503, "{reply}\n{}", function.output());
    assert_eq!(reply["status"], "error");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "GitHub gives up after 10 s; took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_from_secrets_manager_are_fetched_at_cold_start_and_rotation_works() {
    let sqs = SqsEmulator::start().await;
    let queues = sqs.create_fifo_with_dlq("webhook-secret-arn", 3, 30).await;
    let sm = aws_sdk_secretsmanager::Client::new(
        &kubetempura_tests::harness::sqs::sdk_config(&sqs.endpoint).await,
    );
    let created = sm
        .create_secret()
        .name("kubetempura/webhook")
        .secret_string(r#"{"secrets": ["new-secret", "old-secret"]}"#)
        .send()
        .await
        .unwrap();
    let arn = created.arn().unwrap().to_owned();
    let mut env = sqs.env();
    env.push(("QUEUE_URL".into(), queues.url.clone()));
    env.push(("WEBHOOK_SECRET_ARN".into(), arn));
    let function = WebhookFunction::start(&env).await;
    let body = opened_example();
    for (secret, delivery, want) in [
        ("new-secret", "d-new", 202),
        ("old-secret", "d-old", 202),
        ("not-the-secret", "d-bad", 401),
    ] {
        let (status, reply) =
            post_delivery(&function.url, secret, "pull_request", delivery, &body).await;
        assert_eq!(status, want, "{secret}: {reply}\n{}", function.output());
    }
    assert!(
        !function.output().contains("new-secret"),
        "the secret was logged"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_check_run_lands_in_its_pull_requests_group_and_a_status_in_its_commits() {
    let sqs = SqsEmulator::start().await;
    let queues = sqs.create_fifo_with_dlq("webhook-checks", 3, 30).await;
    let function = function_for(&sqs, &queues.url).await;
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let repo = "https://github.com/owner/name";
    let mut run = CheckDelivery::new(repo, sha, CheckKind::CheckRun, "build");
    run.pull_requests = vec![7];
    let mut status = CheckDelivery::new(repo, sha, CheckKind::Status, "ci/circleci: build");
    status.conclusion = Some("failure".into());
    for (delivery, id) in [(&run, "check-run-0001"), (&status, "status-0001")] {
        let (code, reply) = post_delivery(
            &function.url,
            SECRET,
            delivery.event(),
            id,
            &delivery.payload().unwrap(),
        )
        .await;
        assert_eq!(code, 202, "{id}: {reply}\n{}", function.output());
        assert_eq!(reply["status"], "queued", "{id}: {reply}");
    }

    let received = std::sync::Mutex::new(Vec::new());
    let (sqs, url, received) = (&sqs, &queues.url, &received);
    let messages = wait_for(
        "both check messages",
        Duration::from_secs(30),
        || async move {
            let batch = sqs.receive(url, 1).await;
            let mut all = received.lock().unwrap();
            all.extend(batch);
            (all.len() >= 2).then(|| all.clone())
        },
    )
    .await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    let mut by_group = std::collections::BTreeMap::new();
    for m in &messages {
        let attrs = m.attributes.as_ref().expect("system attributes");
        let group = attrs[&MessageSystemAttributeName::MessageGroupId].clone();
        let dedup = attrs[&MessageSystemAttributeName::MessageDeduplicationId].clone();
        let user = m.message_attributes.as_ref().expect("message attributes");
        let QueueMessage::Check(check) =
            QueueMessage::from_json(m.body.as_deref().unwrap()).unwrap()
        else {
            panic!("not a check message: {m:?}")
        };
        assert_eq!(user["event"].string_value(), Some(check.event.as_str()));
        assert_eq!(user["repository"].string_value(), Some("owner/name"));
        assert!(!user.contains_key("action"), "{user:?}");
        by_group.insert(group, (dedup, *check));
    }
    let want = [
        (
            "owner/name#7".to_owned(),
            "check-run-0001",
            CheckKind::CheckRun,
            "build",
            CheckState::Success,
            Some(7),
        ),
        (
            format!("owner/name@{sha}"),
            "status-0001",
            CheckKind::Status,
            "ci/circleci: build",
            CheckState::Failure,
            None,
        ),
    ];
    for (group, want_dedup, kind, name, state, pr) in want {
        let (dedup, check) = &by_group[&group];
        assert_eq!(dedup, want_dedup, "{group}");
        assert_eq!(
            (
                check.kind,
                check.name.as_str(),
                check.state,
                check.pull_request
            ),
            (kind, name, state, pr),
            "{group}"
        );
        assert_eq!(check.head_sha, sha);
    }
}
