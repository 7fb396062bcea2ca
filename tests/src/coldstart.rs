//! `coldstart`: the cold-start benchmark of the webhook function (issue 16, BENCHMARKS.md).
//!
//! Each cold start is a fresh process of the function's binary on the loopback Lambda Runtime
//! API ([`crate::harness::runtime_api`]), with one invocation queued before it starts:
//!
//! - **init**: process spawn → its first `GET /runtime/invocation/next` (what Lambda bills as
//!   Init Duration: runtime start, configuration, AWS clients, the secret);
//! - **first invocation**: that `next` → the invocation's `/response` (the event parsed, the
//!   signature checked, the message sent to the queue emulator on first use of the client).
//!
//! Three functions, interleaved run by run so drift on a shared machine hits all alike:
//! a minimal `lambda_http` hello-world built with the same profile (the baseline), the webhook
//! with its secret in `WEBHOOK_SECRET`, and the webhook reading it from Secrets Manager
//! (`WEBHOOK_SECRET_ARN`, on the emulator, fetched during init). Every answer is checked:
//! a run whose function does not answer 202 `queued` (or `hello`) fails the benchmark.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

use crate::harness::process::ChildGuard;
use crate::harness::runtime_api::{Observed, RuntimeApi, signed_pull_request_event};
use crate::harness::sqs::SqsEmulator;

/// Command line of `coldstart`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "coldstart",
    about = "Cold-start benchmark of the webhook function on a loopback Lambda Runtime API",
    long_about = "Starts the webhook function's binary (and a lambda_http hello-world built with \
the same profile) as fresh processes on a loopback implementation of the Lambda Runtime API, \
RUNS times each, interleaved, and prints init (spawn -> first `next`) and first-invocation \
(`next` -> `/response`) times: median, p90 and min, and the ratio to the hello-world's. The \
webhook runs twice: secret from WEBHOOK_SECRET, and from Secrets Manager on the AWS emulator. \
Build both binaries first: `make bench-coldstart` does everything."
)]
pub struct Args {
    /// The webhook function's binary (`bootstrap`).
    #[arg(long, default_value = "target/lambda/webhook/bootstrap")]
    pub webhook: PathBuf,
    /// The hello-world baseline's binary, built with the same profile.
    #[arg(long, default_value = "target/lambda/hello-world/bootstrap")]
    pub hello: PathBuf,
    /// Cold starts per function.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// The memory size the functions are told (AWS_LAMBDA_FUNCTION_MEMORY_SIZE).
    #[arg(long, default_value_t = 128)]
    pub memory_mb: u32,
    /// An extra variable for every function's environment (repeatable), e.g.
    /// `SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt` to read the system's roots from the
    /// one bundle file, as on Lambda's image, instead of the bundle and every file beside it.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}

/// One function the benchmark starts.
struct Subject {
    name: &'static str,
    binary: PathBuf,
    env: Vec<(String, String)>,
    /// What the first invocation must answer: HTTP status and a text the body holds.
    expect: (u64, &'static str),
}

/// One cold start's figures.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub init: Duration,
    pub first: Duration,
}

/// The figures of one function over every run.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: &'static str,
    pub binary_bytes: u64,
    pub samples: Vec<Sample>,
}

/// Median, p90 and min of `values` (nearest rank), in that order.
pub fn summary(values: &[Duration]) -> (Duration, Duration, Duration) {
    let mut sorted = values.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return Default::default();
    }
    let rank = |p: f64| {
        let r = (p * sorted.len() as f64).ceil() as usize;
        sorted[r.clamp(1, sorted.len()) - 1]
    };
    (rank(0.5), rank(0.9), sorted[0])
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// The results as a Markdown table (what BENCHMARKS.md quotes), the first report the baseline.
pub fn render(reports: &[Report]) -> String {
    let base = reports
        .first()
        .map(|r| summary(&r.samples.iter().map(|s| s.init).collect::<Vec<_>>()).0);
    let mut out = String::from(
        "| Function | Binary | Runs | Init median (ms) | Init p90 | Init min | Init ÷ baseline | First invocation median (ms) | p90 | min |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let init = summary(&r.samples.iter().map(|s| s.init).collect::<Vec<_>>());
        let first = summary(&r.samples.iter().map(|s| s.first).collect::<Vec<_>>());
        let ratio = match base {
            Some(b) if !b.is_zero() => format!("{:.2}×", init.0.as_secs_f64() / b.as_secs_f64()),
            _ => "—".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {:.2} MB | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.name,
            r.binary_bytes as f64 / 1_000_000.0,
            r.samples.len(),
            ms(init.0),
            ms(init.1),
            ms(init.2),
            ratio,
            ms(first.0),
            ms(first.1),
            ms(first.2),
        ));
    }
    out
}

/// One cold start of `subject`: spawn, first `next`, the invocation's response, then the
/// process is stopped.
async fn cold_start(
    subject: &Subject,
    event: &serde_json::Value,
    memory_mb: u32,
) -> anyhow::Result<Sample> {
    const WAIT: Duration = Duration::from_secs(30);
    let mut api = RuntimeApi::start().await;
    api.invoke(event);
    let mut cmd = Command::new(&subject.binary);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in api
        .env(memory_mb)
        .into_iter()
        .chain(subject.env.iter().cloned())
    {
        cmd.env(k, v);
    }
    let spawned = Instant::now();
    let mut process = ChildGuard::spawn(subject.name, cmd);
    let next_at = match api.observe(WAIT).await {
        Some(Observed::Next { at }) => at,
        other => bail!(
            "{}: expected the first next, got {other:?}\n{}",
            subject.name,
            process.output()
        ),
    };
    let (answered_at, body) = match api.observe(WAIT).await {
        Some(Observed::Response { at, body, .. }) => (at, body),
        other => bail!(
            "{}: expected the response, got {other:?}\n{}",
            subject.name,
            process.output()
        ),
    };
    process.stop(Duration::from_secs(2));
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .with_context(|| format!("{}: the response is not JSON", subject.name))?;
    let (status, text) = subject.expect;
    let got = answer["statusCode"].as_u64().unwrap_or(200);
    let got_body = answer["body"].as_str().unwrap_or_default();
    if got != status || !got_body.contains(text) {
        bail!(
            "{}: answered {got} {got_body:?}, expected {status} with {text:?}",
            subject.name
        );
    }
    Ok(Sample {
        init: next_at.duration_since(spawned),
        first: answered_at.duration_since(next_at),
    })
}

/// Runs the benchmark: the emulator, the secret and the queue, then `runs` cold starts of each
/// function, interleaved; prints progress on stderr.
pub async fn run(args: &Args) -> anyhow::Result<Vec<Report>> {
    for binary in [&args.webhook, &args.hello] {
        if !binary.is_file() {
            bail!(
                "{} does not exist: build it first (`make bench-coldstart` builds both binaries with the release-lambda profile)",
                binary.display()
            );
        }
    }
    const SECRET: &str = "coldstart-secret";
    let sqs = SqsEmulator::start().await;
    let queues = sqs.create_fifo_with_dlq("coldstart", 3, 30).await;
    let sm =
        aws_sdk_secretsmanager::Client::new(&crate::harness::sqs::sdk_config(&sqs.endpoint).await);
    let arn = sm
        .create_secret()
        .name("kubetempura/coldstart")
        .secret_string(format!(r#"{{"secrets": ["{SECRET}"]}}"#))
        .send()
        .await
        .context("creating the secret on the emulator")?
        .arn()
        .context("the created secret has no ARN")?
        .to_owned();
    let mut plain = sqs.env();
    plain.push(("QUEUE_URL".into(), queues.url.clone()));
    let mut with_env_secret = plain.clone();
    with_env_secret.push(("WEBHOOK_SECRET".into(), SECRET.into()));
    let mut with_secrets_manager = plain;
    with_secrets_manager.push(("WEBHOOK_SECRET_ARN".into(), arn));
    let mut subjects = [
        Subject {
            name: "hello-world (lambda_http)",
            binary: args.hello.clone(),
            env: Vec::new(),
            expect: (200, "hello"),
        },
        Subject {
            name: "webhook, WEBHOOK_SECRET",
            binary: args.webhook.clone(),
            env: with_env_secret,
            expect: (202, "queued"),
        },
        Subject {
            name: "webhook, Secrets Manager",
            binary: args.webhook.clone(),
            env: with_secrets_manager,
            expect: (202, "queued"),
        },
    ];
    for subject in &mut subjects {
        subject.env.extend(args.env.iter().cloned());
    }
    let mut reports: Vec<Report> = subjects
        .iter()
        .map(|s| {
            Ok(Report {
                name: s.name,
                binary_bytes: std::fs::metadata(&s.binary)
                    .with_context(|| s.binary.display().to_string())?
                    .len(),
                samples: Vec::new(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    // One unmeasured start of each first: the page cache then holds every binary.
    // Every delivery id is new, so the queue's deduplication drops none of the messages.
    for (i, subject) in subjects.iter().enumerate() {
        let event = signed_pull_request_event(SECRET, &format!("coldstart-{i}-warm"));
        cold_start(subject, &event, args.memory_mb).await?;
    }
    for n in 1..=args.runs {
        for (i, (subject, report)) in subjects.iter().zip(reports.iter_mut()).enumerate() {
            let event = signed_pull_request_event(SECRET, &format!("coldstart-{i}-{n}"));
            let sample = cold_start(subject, &event, args.memory_mb).await?;
            report.samples.push(sample);
        }
        if n % 10 == 0 || n == args.runs {
            eprintln!("coldstart: {n}/{} runs", args.runs);
        }
    }
    // Both webhook functions queued one message per start, warm-up included.
    let expected = 2 * (u64::from(args.runs) + 1);
    let (visible, in_flight) = sqs.depth(&queues.url).await;
    if visible + in_flight != expected {
        bail!(
            "{expected} messages expected on the queue, found {visible} (+{in_flight} in flight)"
        );
    }
    eprintln!("coldstart: all {expected} messages on the queue");
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn summary_is_nearest_rank() {
        let values: Vec<Duration> = (1..=10).rev().map(d).collect();
        assert_eq!(summary(&values), (d(5), d(9), d(1)));
        assert_eq!(summary(&[d(7)]), (d(7), d(7), d(7)));
        assert_eq!(summary(&[]), (d(0), d(0), d(0)));
    }

    #[test]
    fn the_table_gives_the_ratio_to_the_first_report() {
        let report = |name, init: u64| Report {
            name,
            binary_bytes: 2_500_000,
            samples: vec![Sample {
                init: d(init),
                first: d(3),
            }],
        };
        let table = render(&[report("base", 10), report("webhook", 13)]);
        assert!(table.contains("| base | 2.50 MB | 1 | 10.0 |"), "{table}");
        assert!(table.contains("| 1.30× |"), "{table}");
        assert!(table.contains("| 1.00× |"), "{table}");
    }
}
