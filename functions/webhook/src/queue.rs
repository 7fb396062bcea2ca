//! Sending events to the SQS FIFO queue.

use std::future::Future;
use std::pin::Pin;

use aws_sdk_sqs::types::MessageAttributeValue;
use kubetempura_common::event::PrEvent;

/// Why the queue did not take a message (the function answers 503 so GitHub can redeliver).
#[derive(Debug, thiserror::Error)]
#[error("queue did not accept the message: {0}")]
pub struct QueueError(pub String);

/// Where normalised events go. The production implementation is [`SqsQueue`].
pub trait EventQueue: Send + Sync {
    /// Sends one event; returns the queue's message id.
    fn send<'a>(
        &'a self,
        event: &'a PrEvent,
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
        event: &'a PrEvent,
    ) -> Pin<Box<dyn Future<Output = Result<String, QueueError>> + Send + 'a>> {
        Box::pin(async move {
            let out = self
                .client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(event.to_json())
                .message_group_id(event.message_group_id())
                .message_deduplication_id(&event.delivery_id)
                .message_attributes("event", attribute(&event.event)?)
                .message_attributes("action", attribute(event.action.as_str())?)
                .message_attributes("repository", attribute(&event.repository.full_name)?)
                .send()
                .await
                .map_err(|e| QueueError(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()))?;
            Ok(out.message_id.unwrap_or_default())
        })
    }
}
