//! The notifier function under the Lambda runtime emulator (`cargo lambda watch`), fed from
//! the SQS emulator by a stand-in for the SQS event source mapping.
//!
//! The stand-in does what AWS's mapping does for a FIFO queue with `ReportBatchItemFailures`:
//! it receives up to 10 messages with every attribute, invokes the function once with the SQS
//! event AWS builds from them, deletes the messages the function did not list in
//! `batchItemFailures`, and leaves the listed ones in flight: they come back when their
//! visibility ends (the queue's timeout, or what the function set), and the queue's redrive
//! policy moves them to the dead-letter queue after `maxReceiveCount` receives. A function
//! error (no batch response) fails the whole batch, as on AWS.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::Message;
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::lambda::{Watch, watch};
use super::process::ChildGuard;
use super::sqs::SqsEmulator;
use super::wait_for;

/// A running notifier function.
pub struct NotifierFunction {
    process: ChildGuard,
    /// The emulator's invoke API for the function.
    pub invoke_url: String,
    client: reqwest::Client,
    _env_file: tempfile::NamedTempFile,
}

/// One message as the mapping handed it to the function.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Which pump (batch) delivered it, from 0 in a [`NotifierFunction::pump_until_empty`].
    pub batch: usize,
    /// When the mapping received it.
    pub at: Instant,
    pub message_id: String,
    pub body: String,
    pub group: String,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
    /// Reported in `batchItemFailures` (left in flight) rather than handled (deleted).
    pub failed: bool,
}

/// What one pump did.
#[derive(Debug, Default)]
pub struct PumpOutcome {
    /// The batch, in the order received; empty when no message was visible.
    pub deliveries: Vec<Delivery>,
    /// The function's answer (`null` when nothing was invoked).
    pub response: Value,
}

impl NotifierFunction {
    /// Starts `cargo lambda watch` for the `notifier` binary with `env` and waits until the
    /// function answers an invoke (an empty batch, answered with no failures).
    pub async fn start(env: &[(String, String)]) -> Self {
        let Watch {
            mut process,
            port,
            env_file,
        } = watch("notifier", env);
        let invoke_url =
            format!("http://127.0.0.1:{port}/2015-03-31/functions/notifier/invocations");
        let client = super::http();
        wait_for(
            "the notifier function under cargo lambda watch",
            Duration::from_secs(300),
            // A short timeout: an invoke sent while the function is still starting can be lost
            // by the emulator; the next attempt then reaches the running function.
            || {
                process.assert_running();
                let req = client
                    .post(&invoke_url)
                    .json(&json!({ "Records": [] }))
                    .timeout(Duration::from_secs(5));
                async move {
                    let answer: Value = req.send().await.ok()?.json().await.ok()?;
                    answer.get("batchItemFailures").map(|_| ())
                }
            },
        )
        .await;
        process.assert_running();
        Self {
            process,
            invoke_url,
            client,
            _env_file: env_file,
        }
    }

    /// Everything the emulator and the function printed so far.
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// One round of the event source mapping on the queue `queue_url` (ARN `queue_arn`).
    pub async fn pump(&self, sqs: &SqsEmulator, queue_url: &str, queue_arn: &str) -> PumpOutcome {
        let messages = sqs.receive(queue_url, 0).await;
        let at = Instant::now();
        if messages.is_empty() {
            return PumpOutcome::default();
        }
        let region = queue_arn.split(':').nth(3).unwrap_or_default();
        let records: Vec<Value> = (messages.iter())
            .map(|m| record(m, queue_arn, region))
            .collect();
        let response: Value = self
            .client
            .post(&self.invoke_url)
            .json(&json!({ "Records": records }))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .expect("invoke the notifier")
            .json()
            .await
            .expect("the invoke answer is JSON");
        let failed: Option<Vec<&str>> = response["batchItemFailures"].as_array().map(|f| {
            (f.iter())
                .filter_map(|f| f["itemIdentifier"].as_str())
                .collect()
        });
        let mut deliveries = Vec::new();
        for m in &messages {
            let id = m.message_id.clone().unwrap_or_default();
            // No batch response (a function error) fails every message, as on AWS.
            let failed = failed.as_ref().is_none_or(|f| f.contains(&id.as_str()));
            if !failed {
                sqs.client
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete a handled message");
            }
            let attribute = |name: &str| {
                let attrs = m.attributes.as_ref();
                let found = attrs.and_then(|a| a.iter().find(|(k, _)| k.as_str() == name));
                found.map(|(_, v)| v.clone()).unwrap_or_default()
            };
            deliveries.push(Delivery {
                batch: 0,
                at,
                message_id: id,
                body: m.body.clone().unwrap_or_default(),
                group: attribute("MessageGroupId"),
                receive_count: attribute("ApproximateReceiveCount").parse().unwrap_or(0),
                failed,
            });
        }
        PumpOutcome {
            deliveries,
            response,
        }
    }

    /// Pumps until the queue holds no message, visible or in flight (a dead-lettered message
    /// has left it), within `timeout`; returns every delivery, oldest first.
    pub async fn pump_until_empty(
        &self,
        sqs: &SqsEmulator,
        queue_url: &str,
        queue_arn: &str,
        timeout: Duration,
    ) -> Vec<Delivery> {
        let history = Mutex::new(Vec::<Delivery>::new());
        let batches = std::sync::atomic::AtomicUsize::new(0);
        wait_for("the notifier to drain the feedback queue", timeout, || {
            let (history, batches) = (&history, &batches);
            async move {
                let outcome = self.pump(sqs, queue_url, queue_arn).await;
                if !outcome.deliveries.is_empty() {
                    let batch = batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let mut history = history.lock().unwrap_or_else(PoisonError::into_inner);
                    let delivered = outcome.deliveries.into_iter();
                    history.extend(delivered.map(|d| Delivery { batch, ..d }));
                }
                (sqs.depth(queue_url).await == (0, 0)).then_some(())
            }
        })
        .await;
        history.into_inner().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The record AWS's mapping builds from a received message.
fn record(m: &Message, queue_arn: &str, region: &str) -> Value {
    let attributes: Map<String, Value> = (m.attributes.iter().flatten())
        .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
        .collect();
    let message_attributes: Map<String, Value> = (m.message_attributes.iter().flatten())
        .map(|(name, v)| {
            let binary = v
                .binary_value
                .as_ref()
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b.as_ref()));
            let value = json!({
                "stringValue": v.string_value, "binaryValue": binary,
                "stringListValues": [], "binaryListValues": [], "dataType": v.data_type,
            });
            (name.clone(), value)
        })
        .collect();
    json!({
        "messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body,
        "attributes": attributes, "messageAttributes": message_attributes,
        "md5OfBody": m.md5_of_body, "md5OfMessageAttributes": m.md5_of_message_attributes,
        "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region,
    })
}
