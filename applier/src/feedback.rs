//! The outbound side: each environment state change goes, once, to the feedback queue
//! (`--feedback-queue-url`), where the notifier turns it into GitHub deployment statuses and
//! the pull request's comment. The applier needs `sqs:SendMessage` on that queue and nothing
//! on GitHub.
//!
//! What to send is derived from the `PR` record alone ([`kubetempura_common::feedback::desired`]);
//! what was sent is recorded on it (`status.feedback`, a digest). The record is written after
//! the send succeeded, so a crash in between sends the state again (the notifier ignores an
//! event that is not newer than what it shows); a failed send is retried by the caller.

use aws_sdk_sqs::Client as SqsClient;
use chrono::{SecondsFormat, Utc};
use kubetempura_common::crd::{FeedbackRecord, PR};
use kubetempura_common::feedback::{Desired, desired};

use crate::kubeapi::Failure;
use crate::reconcile::{Ctx, write_pr_status};

/// Sends environment states to the feedback queue.
pub struct FeedbackSender {
    sqs: SqsClient,
    queue_url: String,
    cluster: Option<String>,
}

impl FeedbackSender {
    pub fn new(sqs: SqsClient, queue_url: String, cluster: Option<String>) -> Self {
        Self {
            sqs,
            queue_url,
            cluster,
        }
    }

    /// What `pr` should show and has not been sent yet.
    pub fn pending(pr: &PR) -> Option<Desired> {
        let wanted = desired(pr)?;
        let sent = pr.status.as_ref().and_then(|s| s.feedback.as_ref());
        (sent.map(|f| f.digest.as_str()) != Some(wanted.digest().as_str())).then_some(wanted)
    }

    /// Sends what `pr` should show, if it was not sent yet, and records it on `pr`. Returns the
    /// record as written (or `pr` unchanged).
    pub async fn sync(&self, ctx: &Ctx, pr: PR) -> Result<PR, Failure> {
        let Some(wanted) = Self::pending(&pr) else {
            return Ok(pr);
        };
        let now = Utc::now();
        let Some(event) = wanted.event(&pr, self.cluster.as_deref(), now) else {
            tracing::warn!(pr = ?pr.metadata.name, repository = %pr.spec.repository, "the record names no GitHub repository; no feedback");
            return Ok(pr);
        };
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_group_id(event.message_group_id())
            .message_deduplication_id(event.deduplication_id())
            .message_body(event.to_json())
            .send()
            .await
            .map_err(|e| {
                Failure::transient(format!(
                    "send {} feedback for {}: {}",
                    event.state,
                    event.environment,
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                ))
            })?;
        tracing::info!(environment = %event.environment, state = %event.state, commit = %event.head_sha, "feedback sent");
        let mut status = pr.status.clone().unwrap_or_default();
        status.feedback = Some(FeedbackRecord {
            state: event.state.as_str().to_owned(),
            commit: event.head_sha.clone(),
            digest: wanted.digest(),
            time: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        write_pr_status(ctx, &pr, status).await
    }
}
