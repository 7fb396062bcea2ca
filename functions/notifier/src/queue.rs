//! The feedback queue, for the one call the event source mapping does not make for us:
//! delaying a rate-limited message until GitHub lets us call again.

use std::time::Duration;

/// The feedback queue (an SQS FIFO queue), built once at cold start.
#[derive(Debug, Clone)]
pub struct FeedbackQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl FeedbackQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Self {
        Self { client, url }
    }

    /// Makes the message of `receipt_handle` visible again only after `delay` (already within
    /// the queue's 1 s to 12 h). A failure is logged: the message then comes back after the
    /// queue's visibility timeout instead, which is early but loses nothing.
    pub async fn delay(&self, receipt_handle: &str, delay: Duration) {
        let secs = i32::try_from(delay.as_secs()).unwrap_or(i32::MAX);
        let result = self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await;
        if let Err(e) = result {
            tracing::warn!(
                error = %aws_sdk_sqs::error::DisplayErrorContext(&e),
                delay_secs = secs,
                "could not delay a rate-limited message; it returns after the visibility timeout"
            );
        }
    }
}
