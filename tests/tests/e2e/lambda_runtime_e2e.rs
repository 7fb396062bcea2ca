//! The webhook function's binary on the Lambda Runtime API (the loopback implementation of
//! `harness::runtime_api`, which the cold-start benchmark times it on): it takes invocations
//! from `next`, answers each on `/response`, and a cold start that cannot work is reported on
//! `/init/error` with its type and reason before the process exits non-zero.
//!
//! The emulator-based suites (`webhook_e2e`, under `cargo lambda watch`) run the same binary on
//! cargo-lambda's implementation of the same API: both agreeing is what holds the loopback one
//! to the protocol.

use std::process::Command;
use std::time::Duration;

use kubetempura_tests::harness::process::ChildGuard;
use kubetempura_tests::harness::runtime_api::{Observed, RuntimeApi, signed_pull_request_event};
use kubetempura_tests::harness::sqs::SqsEmulator;
use kubetempura_tests::harness::tls::TlsRelay;
use kubetempura_tests::harness::tools;

const SECRET: &str = "runtime-api-secret";
const WAIT: Duration = Duration::from_secs(60);

fn start(api: &RuntimeApi, env: &[(String, String)]) -> ChildGuard {
    let binary = tools::built_binary("kubetempura-webhook", "webhook");
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in api.env(128).into_iter().chain(env.iter().cloned()) {
        cmd.env(k, v);
    }
    ChildGuard::spawn("webhook-on-runtime-api", cmd)
}

/// The function's answer to invocation `request_id` (skipping its `next` polls): the HTTP
/// status and JSON reply inside; panics with the function's output on anything else.
async fn response_to(
    api: &mut RuntimeApi,
    function: &ChildGuard,
    request_id: &str,
) -> (u64, serde_json::Value) {
    let body = loop {
        match api.observe(WAIT).await {
            Some(Observed::Next { .. }) => {}
            Some(Observed::Response {
                request_id: id,
                body,
                ..
            }) if id == request_id => break body,
            other => panic!(
                "expected the response to {request_id}, got {other:?}\n{}",
                function.output()
            ),
        }
    };
    let answer: serde_json::Value = serde_json::from_slice(&body).expect("a JSON answer");
    let status = answer["statusCode"].as_u64().expect("statusCode");
    let reply = serde_json::from_str(answer["body"].as_str().expect("a text body"))
        .expect("the function's JSON reply");
    (status, reply)
}

#[tokio::test(flavor = "multi_thread")]
async fn invocations_are_answered_on_the_runtime_api_and_reach_the_queue() {
    let sqs = SqsEmulator::start().await;
    let queues = sqs.create_fifo_with_dlq("runtime-api", 3, 30).await;
    let mut api = RuntimeApi::start().await;
    let mut env = sqs.env();
    env.push(("QUEUE_URL".into(), queues.url.clone()));
    env.push(("WEBHOOK_SECRET".into(), SECRET.into()));
    let first = api.invoke(&signed_pull_request_event(SECRET, "rt-1"));
    let second = api.invoke(&signed_pull_request_event("not-the-secret", "rt-2"));
    let function = start(&api, &env);

    // Init ends with the first `next`; nothing else comes before it.
    match api.observe(WAIT).await {
        Some(Observed::Next { .. }) => {}
        other => panic!(
            "expected the first next, got {other:?}\n{}",
            function.output()
        ),
    }
    let (status, reply) = response_to(&mut api, &function, &first).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["status"], "queued", "{reply}");
    let (status, reply) = response_to(&mut api, &function, &second).await;
    assert_eq!(status, 401, "a wrong signature: {reply}");
    let message = sqs
        .take(&queues.url, Duration::from_secs(10))
        .await
        .expect("the signed delivery's message");
    assert!(message.contains("\"opened\""), "{message}");
    assert!(
        sqs.take(&queues.url, Duration::from_secs(1))
            .await
            .is_none(),
        "the unsigned delivery left a message"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_queue_is_reached_over_https_trusting_the_systems_roots() {
    // The function's own HTTPS client (rustls on ring, roots from the system store, which
    // SSL_CERT_FILE points at here) against a TLS endpoint relaying to the emulator.
    let sqs = SqsEmulator::start().await;
    let queues = sqs.create_fifo_with_dlq("runtime-api-tls", 3, 30).await;
    let relay = TlsRelay::start(sqs.endpoint.trim_start_matches("http://")).await;
    let mut env: Vec<(String, String)> = sqs
        .env()
        .into_iter()
        .filter(|(k, _)| k != "AWS_ENDPOINT_URL")
        .collect();
    env.push(("AWS_ENDPOINT_URL_SQS".into(), relay.url()));
    env.push(("QUEUE_URL".into(), queues.url.clone()));
    env.push(("WEBHOOK_SECRET".into(), SECRET.into()));

    // Trusting the relay's CA: the message goes through.
    let mut trusted = env.clone();
    trusted.push((
        "SSL_CERT_FILE".into(),
        relay.ca_file().display().to_string(),
    ));
    let mut api = RuntimeApi::start().await;
    let id = api.invoke(&signed_pull_request_event(SECRET, "tls-1"));
    let function = start(&api, &trusted);
    let (status, reply) = response_to(&mut api, &function, &id).await;
    assert_eq!(status, 202, "{reply}\n{}", function.output());
    assert_eq!(reply["status"], "queued", "{reply}");
    drop(function);
    let message = sqs
        .take(&queues.url, Duration::from_secs(10))
        .await
        .expect("the message sent over TLS");
    assert!(message.contains("\"opened\""), "{message}");

    // Not trusting it (the system's own roots): the handshake fails, the delivery gets 503 so
    // GitHub can redeliver, and nothing is queued.
    let mut api = RuntimeApi::start().await;
    let id = api.invoke(&signed_pull_request_event(SECRET, "tls-2"));
    let function = start(&api, &env);
    let (status, reply) = response_to(&mut api, &function, &id).await;
    assert_eq!(status, 503, "{reply}\n{}", function.output());
    assert!(
        sqs.take(&queues.url, Duration::from_secs(1))
            .await
            .is_none(),
        "a message went through an untrusted endpoint"
    );
}

/// Starts the function with `env`, expects `/init/error` of `error_type` naming `mentions`,
/// then the process's non-zero exit.
async fn init_fails(env: &[(String, String)], error_type: &str, mentions: &str) {
    let mut api = RuntimeApi::start().await;
    let mut function = start(&api, env);
    match api.observe(WAIT).await {
        Some(Observed::InitError {
            error_type: header,
            body,
            ..
        }) => {
            assert_eq!(header.as_deref(), Some(error_type));
            let diagnostic: serde_json::Value =
                serde_json::from_slice(&body).expect("a JSON diagnostic");
            assert_eq!(diagnostic["errorType"], error_type, "{diagnostic}");
            let message = diagnostic["errorMessage"].as_str().unwrap_or_default();
            assert!(message.contains(mentions), "{diagnostic}");
        }
        other => panic!("expected /init/error, got {other:?}\n{}", function.output()),
    }
    let status = tokio::task::block_in_place(|| function.wait_timeout(WAIT))
        .expect("the function exits after reporting");
    assert!(!status.success(), "exit status {status}");
    // It never asked for an event (the process is gone: whatever it sent is recorded).
    assert!(api.try_observe().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_configuration_is_reported_as_the_init_error() {
    init_fails(
        &[("WEBHOOK_SECRET".into(), SECRET.into())],
        "kubetempura.ConfigError",
        "QUEUE_URL",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_secret_is_reported_as_the_init_error() {
    let sqs = SqsEmulator::start().await;
    let mut env = sqs.env();
    env.push((
        "QUEUE_URL".into(),
        format!("{}/000000000000/unused.fifo", sqs.endpoint),
    ));
    env.push((
        "WEBHOOK_SECRET_ARN".into(),
        "arn:aws:secretsmanager:us-east-1:000000000000:secret:kubetempura/missing-AbCdEf".into(),
    ));
    init_fails(&env, "kubetempura.SecretFetchError", "WEBHOOK_SECRET_ARN").await;
}
