//! Sending events to the SQS FIFO queue, or to the SNS FIFO topic a queue per applier subscribes
//! to.
//!
//! Every message goes in its FIFO group (a pull request's, or a commit's for a check result that
//! names none), with the delivery id (suffixed per pull request when one delivery gives several
//! messages) as deduplication id, and the message attributes of [`attributes`]: the topic's
//! subscriptions filter on `repository` and `owner` (Terraform's `appliers`), and a queue read
//! directly carries the same ones for operators.

use std::future::Future;
use std::pin::Pin;

use kubetempura_common::check::QueueMessage;

/// Why the queue did not take a message (the function answers 503 so GitHub can redeliver).
#[derive(Debug, thiserror::Error)]
#[error("queue did not accept the message: {0}")]
pub struct QueueError(pub String);

/// Where normalised events go: [`SqsQueue`] or [`SnsTopic`] in production.
pub trait EventQueue: Send + Sync {
    /// Sends one message; returns the queue's (or topic's) message id.
    fn send<'a>(
        &'a self,
        message: &'a QueueMessage,
    ) -> Pin<Box<dyn Future<Output = Result<String, QueueError>> + Send + 'a>>;
}

/// The message attributes of a message, all of type `String`: `event`, `repository` (`owner/name`
/// as GitHub spells it), `owner` (the owner's login) and, where the event has one, `action`.
/// Terraform's modules/appliers builds its filter policies on `repository` and `owner`.
pub fn attributes(message: &QueueMessage) -> Vec<(&'static str, &str)> {
    let repository = message.repository();
    let mut attributes = vec![
        ("event", message.event()),
        ("repository", repository.full_name.as_str()),
        ("owner", repository.owner.as_str()),
    ];
    if let Some(action) = message.action() {
        attributes.push(("action", action));
    }
    attributes
}

/// Sets the FIFO group, the deduplication id and [`attributes`] on an SQS `SendMessage` or SNS
/// `Publish` request of the SDK `$sdk`, sends it and gives the message id. A macro because the
/// two SDKs' builders and attribute types have the same methods but no common trait.
macro_rules! send_fifo {
    ($sdk:ident, $request:expr, $message:expr) => {{
        let mut request = $request
            .message_group_id($message.message_group_id())
            .message_deduplication_id($message.delivery_id());
        for (name, value) in attributes($message) {
            let value = $sdk::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| QueueError(e.to_string()))?;
            request = request.message_attributes(name, value);
        }
        let out = request
            .send()
            .await
            .map_err(|e| QueueError($sdk::error::DisplayErrorContext(&e).to_string()))?;
        Ok(out.message_id.unwrap_or_default())
    }};
}

/// An SQS FIFO queue reached through the AWS SDK.
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }
}

impl EventQueue for SqsQueue {
    fn send<'a>(
        &'a self,
        message: &'a QueueMessage,
    ) -> Pin<Box<dyn Future<Output = Result<String, QueueError>> + Send + 'a>> {
        Box::pin(async move {
            let request = self
                .client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(message.to_json());
            send_fifo!(aws_sdk_sqs, request, message)
        })
    }
}

/// An SNS FIFO topic reached through the AWS SDK; each applier's queue subscribes to it with raw
/// message delivery, so a queue receives the same body, group, deduplication id and attributes
/// as [`SqsQueue`] would send.
pub struct SnsTopic {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsTopic {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: String) -> Self {
        Self { client, topic_arn }
    }
}

impl EventQueue for SnsTopic {
    fn send<'a>(
        &'a self,
        message: &'a QueueMessage,
    ) -> Pin<Box<dyn Future<Output = Result<String, QueueError>> + Send + 'a>> {
        Box::pin(async move {
            let request = self
                .client
                .publish()
                .topic_arn(&self.topic_arn)
                .message(message.to_json());
            send_fifo!(aws_sdk_sns, request, message)
        })
    }
}
