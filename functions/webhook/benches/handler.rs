//! The handler path (verify + parse + normalise, queue call excluded) beside its floor: a bare
//! HMAC-SHA256 of the same bytes and a bare `serde_json` parse of them.
//!
//! Run: `cargo bench -p kubetempura-webhook --bench handler` (needs `make deps` for the real
//! payloads). The goal is the handler path within 2x of HMAC + parse.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, Method};
use kubetempura_common::signature::{WebhookSecrets, sign};
use kubetempura_common::testing::largest_pull_request_example;
use kubetempura_webhook::handler::{App, Facts, Prepared, prepare};
use kubetempura_webhook::queue::{EventQueue, QueueError};
use sha2::Sha256;

const SECRET: &str = "bench-secret";

struct NoQueue;

impl EventQueue for NoQueue {
    fn send<'a>(
        &'a self,
        _: &'a kubetempura_common::check::QueueMessage,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, QueueError>> + Send + 'a>>
    {
        Box::pin(async { Err(QueueError("benchmarks never send".into())) })
    }
}

/// A real payload whose `pull_request.body` is padded to make the whole about 1 MB.
fn synthetic_1mb() -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&largest_pull_request_example().body).expect("example JSON");
    let filler = "Lorem ipsum dolor sit amet, \"quoted\" text\nwith lines and unicode: é漢字. "
        .repeat(14_000);
    v["pull_request"]["body"] = serde_json::Value::String(filler);
    let body = serde_json::to_vec(&v).expect("serialise");
    assert!(body.len() > 1_000_000, "{}", body.len());
    body
}

fn bench(c: &mut Criterion) {
    let app = App {
        secrets: WebhookSecrets::new([SECRET]).expect("secret"),
        queue: Arc::new(NoQueue),
        max_body_bytes: 5 * 1024 * 1024,
    };
    let largest = largest_pull_request_example();
    let payloads = [
        (
            format!("largest-example-{}B", largest.body.len()),
            largest.body,
        ),
        ("synthetic-1MB".to_owned(), synthetic_1mb()),
    ];
    let mut group = c.benchmark_group("webhook");
    for (name, body) in &payloads {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-event", HeaderValue::from_static("pull_request"));
        headers.insert(
            "x-github-delivery",
            HeaderValue::from_static("bench-delivery"),
        );
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert(
            "x-hub-signature-256",
            HeaderValue::from_str(&sign(SECRET.as_bytes(), body)).expect("header"),
        );
        assert!(
            matches!(
                prepare(&app, &Method::POST, &headers, body, &mut Facts::default()),
                Prepared::Enqueue { .. }
            ),
            "{name} must be queued"
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("handler_path", name), body, |b, body| {
            b.iter(|| {
                prepare(
                    &app,
                    &Method::POST,
                    &headers,
                    black_box(body),
                    &mut Facts::default(),
                )
            })
        });
        group.bench_with_input(BenchmarkId::new("hmac_sha256", name), body, |b, body| {
            b.iter(|| {
                let mut mac =
                    <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("key");
                mac.update(black_box(body));
                mac.finalize().into_bytes()
            })
        });
        group.bench_with_input(
            BenchmarkId::new("serde_json_parse", name),
            body,
            |b, body| {
                b.iter(|| {
                    serde_json::from_slice::<serde_json::Value>(black_box(body)).expect("json")
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("hmac_plus_parse", name),
            body,
            |b, body| {
                b.iter(|| {
                    let mut mac =
                        <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("key");
                    mac.update(black_box(body));
                    let tag = mac.finalize().into_bytes();
                    (
                        tag,
                        serde_json::from_slice::<serde_json::Value>(black_box(body)).expect("json"),
                    )
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
