//! Sending events to the SQS FIFO queue.
//!
//! Every message goes in its FIFO group (a pull request's, or a commit's for a check result that
//! names none), with the delivery id (suffixed per pull request when one delivery gives several
//! messages) as deduplication id, and the message attributes `event`, `repository` and, where
//! the event has one, `action` (for SNS filter policies and operators).

use std::future::Future;
use std::pin::Pin;

use aws_sdk_sqs::types::MessageAttributeValue;
use kubetempura_common::check::QueueMessage;

/// Why the queue did not take a message (the function answers 503 so GitHub can redeliver).
#[derive(Debug, thiserror::Error)]
#[error("queue did not accept the message: {0}")]
pub struct QueueError(pub String);

/// Where normalised events go. The production implementation is [`SqsQueue`].
pub trait EventQueue: Send + Sync {
    /// Sends one message; returns the queue's message id.
    fn send<'a>(
        &'a self,
        message: &'a QueueMessage,
    ) -> Pin<Box<dyn Future<Output = Result<String, QueueError>> + Send + 'a>>;
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

fn attribute(value: &str) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(|e| QueueError(e.to_string()))
}

impl EventQueue for SqsQueue {
    fn send<'a>(
        &'a self,
        message: &'a QueueMessage,
    ) -> Pin<Box<dyn Future<Output = Result<String, QueueError>> + Send + 'a>> {
        Box::pin(async move {
            let mut request = self
                .client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(message.to_json())
                .message_group_id(message.message_group_id())
                .message_deduplication_id(message.delivery_id())
                .message_attributes("event", attribute(message.event())?)
                .message_attributes("repository", attribute(&message.repository().full_name)?);
            if let Some(action) = message.action() {
                request = request.message_attributes("action", attribute(action)?);
            }
            let out = request
                .send()
                .await
                .map_err(|e| QueueError(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()))?;
            Ok(out.message_id.unwrap_or_default())
        })
    }
}
