//! The SQS emulator (`ministack`, pinned in tools/requirements.txt), reached by the unmodified
//! aws-sdk-sqs (and aws-sdk-sns) clients through an endpoint URL, bound to 127.0.0.1 only. It
//! speaks SNS too: FIFO topics, SQS subscriptions with raw delivery and filter policies
//! (see [`super::fanout`]).

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;

use super::process::ChildGuard;
use super::{free_port, tools, wait_http};

/// Static test credentials the emulator accepts.
pub const TEST_ACCESS_KEY: &str = "test";
pub const TEST_SECRET_KEY: &str = "test";
pub const TEST_REGION: &str = "us-east-1";

/// A running emulator.
pub struct SqsEmulator {
    process: ChildGuard,
    pub endpoint: String,
    pub client: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
}

/// A FIFO queue and its dead-letter queue.
#[derive(Debug, Clone)]
pub struct Queues {
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
    pub dlq_arn: String,
}

impl SqsEmulator {
    /// Starts the emulator on a free loopback port and waits until it answers.
    pub async fn start() -> Self {
        let port = free_port();
        let mut cmd = Command::new(tools::ministack());
        cmd.env("GATEWAY_PORT", port.to_string())
            .env("BIND_HOST", "127.0.0.1")
            .env("SERVICES", "sqs,sns,secretsmanager")
            .env("LOG_LEVEL", "WARNING");
        let mut process = ChildGuard::spawn("ministack", cmd);
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_http(
            "the SQS emulator",
            &format!("{endpoint}/_ministack/health"),
            Duration::from_secs(60),
        )
        .await;
        process.assert_running();
        let config = sdk_config(&endpoint).await;
        Self {
            process,
            endpoint,
            client: aws_sdk_sqs::Client::new(&config),
            sns: aws_sdk_sns::Client::new(&config),
        }
    }

    /// The environment a separate process needs to reach the emulator with the AWS SDK.
    pub fn env(&self) -> Vec<(String, String)> {
        aws_env(&self.endpoint)
    }

    /// Stops the emulator (as a queue outage would).
    pub fn stop(&mut self) {
        self.process.stop(Duration::from_secs(5));
    }

    /// Creates a FIFO queue `name.fifo` with a FIFO dead-letter queue `name-dlq.fifo`, a redrive
    /// policy after `max_receive_count` receives, and the given visibility timeout.
    pub async fn create_fifo_with_dlq(
        &self,
        name: &str,
        max_receive_count: u32,
        visibility_timeout_secs: u32,
    ) -> Queues {
        let dlq = self
            .client
            .create_queue()
            .queue_name(format!("{name}-dlq.fifo"))
            .attributes(QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .expect("create DLQ");
        let dlq_url = dlq.queue_url.expect("DLQ URL");
        let dlq_arn = self.arn(&dlq_url).await;
        let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}).to_string();
        let q = self
            .client
            .create_queue()
            .queue_name(format!("{name}.fifo"))
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout_secs.to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive)
            .send()
            .await
            .expect("create queue");
        let url = q.queue_url.expect("queue URL");
        Queues {
            arn: self.arn(&url).await,
            url,
            dlq_url,
            dlq_arn,
        }
    }

    /// A queue's ARN.
    pub async fn arn(&self, queue_url: &str) -> String {
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes");
        attrs
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("queue ARN")
    }

    /// Sets a queue's message retention (SQS allows 60 s to 14 days).
    pub async fn set_retention(&self, queue_url: &str, seconds: u32) {
        self.client
            .set_queue_attributes()
            .queue_url(queue_url)
            .attributes(
                QueueAttributeName::MessageRetentionPeriod,
                seconds.to_string(),
            )
            .send()
            .await
            .expect("set the message retention");
    }

    /// Sends `body` to the FIFO queue `queue_url` in message group `group` with deduplication
    /// id `dedup`.
    pub async fn send_fifo(&self, queue_url: &str, body: &str, group: &str, dedup: &str) {
        self.client
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .send()
            .await
            .expect("send");
    }

    /// Receives up to 10 messages (waiting up to `wait_secs`), without deleting them.
    pub async fn receive(
        &self,
        queue_url: &str,
        wait_secs: i32,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        self.client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_secs)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default()
    }

    /// Waits up to `timeout` for the next message, deletes it and returns its body (`None` when
    /// none came).
    pub async fn take(&self, queue_url: &str, timeout: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let out = self
                .client
                .receive_message()
                .queue_url(queue_url)
                .max_number_of_messages(1)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            if let Some(m) = out.messages.unwrap_or_default().into_iter().next() {
                self.client
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(m.receipt_handle.unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
                return m.body;
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Approximate visible + in-flight message counts.
    pub async fn depth(&self, queue_url: &str) -> (u64, u64) {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let attrs: HashMap<QueueAttributeName, String> = out.attributes.unwrap_or_default();
        let get = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

/// Environment for the AWS SDK in a child process: endpoint, static credentials, region.
pub fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY),
        ("AWS_REGION", TEST_REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// An SDK configuration for the emulator, for clients inside the test process.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(TEST_REGION))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            TEST_ACCESS_KEY,
            TEST_SECRET_KEY,
            None,
            None,
            "kubetempura-tests",
        ))
        .load()
        .await
}
