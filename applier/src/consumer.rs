//! The queue consumer: long-polls SQS, processes different pull requests concurrently (bounded)
//! and one pull request's messages strictly in order, and deletes a message only after its work
//! is complete.
//!
//! Failure handling:
//! - transient (API 5xx/429/timeouts): the message's visibility is set to a growing delay, and
//!   the later messages of its group in the same batch are released (visibility 0) so they are
//!   never processed ahead of it; after the queue's max receive count SQS moves it to the DLQ.
//! - permanent (invalid template, refused kind, an API answer such as 400/403/404/422): recorded
//!   on the statuses and as a Warning Event where the reconcile can, message acknowledged and
//!   counted as `failed`; never sent towards the dead-letter queue.
//! - poison (a body that is not a kubetempura event): never deleted; released at once on every
//!   receive so it reaches the DLQ after the max receive count, quickly.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use kubetempura_common::event::PrEvent;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::reconcile::{Ctx, handle_event};

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub queue_url: String,
    pub wait_time_seconds: i32,
    pub max_messages: i32,
    pub concurrency: usize,
    pub retry_base: Duration,
    pub retry_max: Duration,
}

/// The delay before a message that failed for the `receive_count`-th time is retried.
pub fn backoff(base: Duration, max: Duration, receive_count: u32) -> Duration {
    let exp = receive_count.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << exp).min(max)
}

fn receive_count(m: &Message) -> u32 {
    m.attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn group_id(m: &Message) -> String {
    m.attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
        .cloned()
        .unwrap_or_else(|| m.message_id.clone().unwrap_or_default())
}

fn age(m: &Message) -> Option<Duration> {
    let sent_ms: u64 = m
        .attributes
        .as_ref()?
        .get(&MessageSystemAttributeName::SentTimestamp)?
        .parse()
        .ok()?;
    let now_ms = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_millis(),
    )
    .ok()?;
    Some(Duration::from_millis(now_ms.saturating_sub(sent_ms)))
}

/// Splits a batch into groups, keeping queue order inside each group and the order in which
/// groups first appear.
pub fn group_in_order(messages: Vec<Message>) -> Vec<Vec<Message>> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<Message>> = HashMap::new();
    for m in messages {
        let g = group_id(&m);
        if !groups.contains_key(&g) {
            order.push(g.clone());
        }
        groups.entry(g).or_default().push(m);
    }
    order
        .into_iter()
        .filter_map(|g| groups.remove(&g))
        .collect()
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Processed {
    /// Its work is done and it was deleted.
    Acknowledged,
    /// A transient failure: it returns to the queue after a backoff; its group stops here.
    Retry,
    /// Not a kubetempura event: released towards the dead-letter queue.
    Poison,
}

/// The consumer.
pub struct Consumer {
    pub sqs: aws_sdk_sqs::Client,
    pub config: ConsumerConfig,
    pub ctx: Arc<Ctx>,
}

impl Consumer {
    /// Checks the queue is reachable (for readiness at start-up).
    pub async fn probe(&self) -> Result<(), String> {
        self.sqs
            .get_queue_attributes()
            .queue_url(&self.config.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
    }

    /// Receives and processes until `shutdown` fires, then waits for in-flight work.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, grace: Duration) {
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut error_delay = Duration::from_millis(500);
        loop {
            // Receive only when a worker is free, so received messages do not wait.
            let free = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => p,
            };
            drop(free);
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "message worker panicked");
                }
            }
            let receive = self
                .sqs
                .receive_message()
                .queue_url(&self.config.queue_url)
                .max_number_of_messages(self.config.max_messages)
                .wait_time_seconds(self.config.wait_time_seconds)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .send();
            let result = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = receive => r,
            };
            let messages = match result {
                Ok(out) => {
                    self.ctx.metrics.queue_ok.store(true, Ordering::SeqCst);
                    error_delay = Duration::from_millis(500);
                    out.messages.unwrap_or_default()
                }
                Err(e) => {
                    self.ctx.metrics.queue_ok.store(false, Ordering::SeqCst);
                    self.ctx.metrics.failed("receive_error");
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), retry_in = ?error_delay, "receiving from the queue failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(error_delay) => {}
                    }
                    error_delay = (error_delay * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            if messages.is_empty() {
                continue;
            }
            self.ctx.metrics.received(messages.len());
            for group in group_in_order(messages) {
                let permit = tokio::select! {
                    _ = shutdown.cancelled() => {
                        // Not started: make them visible again for another replica.
                        self.release(&group).await;
                        continue;
                    }
                    p = permits.clone().acquire_owned() => p,
                };
                let Ok(permit) = permit else { break };
                let this = self.clone();
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    this.process_group(group, &shutdown).await;
                    drop(permit);
                });
            }
        }
        tracing::info!(
            in_flight = tasks.len(),
            ?grace,
            "stopped receiving; finishing in-flight work"
        );
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!(
                "grace period over; abandoning in-flight work (its messages will be redelivered)"
            );
            tasks.abort_all();
        }
    }

    /// Processes one group's messages in order; on a transient failure, releases the rest so
    /// none of them is processed ahead of the failed one. After `shutdown`, finishes the message
    /// in progress and releases the others.
    async fn process_group(&self, group: Vec<Message>, shutdown: &CancellationToken) {
        let mut iter = group.into_iter();
        while let Some(m) = iter.next() {
            if shutdown.is_cancelled() {
                let mut rest = vec![m];
                rest.extend(iter);
                self.release(&rest).await;
                return;
            }
            self.ctx.metrics.in_flight(1);
            let done = self.process_one(&m).await;
            self.ctx.metrics.in_flight(-1);
            match done {
                Processed::Acknowledged | Processed::Poison => {}
                Processed::Retry => {
                    let rest: Vec<Message> = iter.collect();
                    self.release(&rest).await;
                    return;
                }
            }
        }
    }

    /// Processes one message.
    async fn process_one(&self, m: &Message) -> Processed {
        let id = m.message_id.as_deref().unwrap_or_default();
        let count = receive_count(m);
        if let Some(a) = age(m) {
            self.ctx.metrics.observe_age(a);
        }
        let body = m.body.as_deref().unwrap_or_default();
        let event = match PrEvent::from_json(body) {
            Ok(e) => e,
            Err(e) => {
                // Never deleted: it goes to the dead-letter queue after the max receive count.
                // It carries no pull request, so it does not hold back its group's later messages.
                tracing::error!(message_id = id, receive_count = count, error = %e, "poison message: not a kubetempura event; releasing it towards the dead-letter queue");
                self.ctx.metrics.failed("poison");
                self.set_visibility(m, 0).await;
                return Processed::Poison;
            }
        };
        let span = tracing::info_span!("event", delivery = %event.delivery_id, repository = %event.repository.full_name, pr = event.number, action = %event.action);
        // The span is entered only while polling (never held across an await), so log lines of
        // other messages processed on the same thread are not attributed to this one.
        async {
            match handle_event(&self.ctx, &event).await {
                Ok(outcomes) => {
                    for o in &outcomes {
                        self.ctx.metrics.acknowledged(o.label());
                        match o {
                            crate::reconcile::Outcome::Stale(reason)
                            | crate::reconcile::Outcome::Skipped(reason)
                            | crate::reconcile::Outcome::Failed(reason) => {
                                tracing::info!(outcome = o.label(), reason = %reason, "event handled")
                            }
                            _ => tracing::info!(outcome = o.label(), detail = ?o, "event handled"),
                        }
                    }
                    self.delete(m).await;
                    Processed::Acknowledged
                }
                Err(failure) if !failure.is_transient() => {
                    // Retrying cannot help (the API server refused our own record, say): the
                    // reconcile recorded what it could; the message is acknowledged, never
                    // sent towards the dead-letter queue.
                    tracing::error!(outcome = "failed", error = %failure, "permanent failure; message acknowledged");
                    self.ctx.metrics.acknowledged("failed");
                    self.delete(m).await;
                    Processed::Acknowledged
                }
                Err(failure) => {
                    let delay = backoff(self.config.retry_base, self.config.retry_max, count);
                    tracing::warn!(receive_count = count, retry_in = ?delay, error = %failure, "transient failure; message returns to the queue");
                    self.ctx.metrics.failed("transient");
                    self.set_visibility(m, i32::try_from(delay.as_secs()).unwrap_or(i32::MAX))
                        .await;
                    Processed::Retry
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn delete(&self, m: &Message) {
        let Some(handle) = m.receipt_handle.as_deref() else {
            return;
        };
        for attempt in 1..=3 {
            match self
                .sqs
                .delete_message()
                .queue_url(&self.config.queue_url)
                .receipt_handle(handle)
                .send()
                .await
            {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(attempt, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "deleting a processed message failed");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        }
        // Redelivery is harmless: applying again is idempotent and stale events are skipped.
        self.ctx.metrics.failed("delete_error");
    }

    async fn set_visibility(&self, m: &Message, seconds: i32) {
        let Some(handle) = m.receipt_handle.as_deref() else {
            return;
        };
        if let Err(e) = self
            .sqs
            .change_message_visibility()
            .queue_url(&self.config.queue_url)
            .receipt_handle(handle)
            .visibility_timeout(seconds.clamp(0, 43_200))
            .send()
            .await
        {
            // The message reappears when its visibility timeout runs out anyway.
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "changing message visibility failed");
        }
    }

    async fn release(&self, messages: &[Message]) {
        for m in messages {
            self.set_visibility(m, 0).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, group: &str) -> Message {
        Message::builder()
            .message_id(id)
            .attributes(MessageSystemAttributeName::MessageGroupId, group)
            .build()
    }

    #[test]
    fn batches_split_into_groups_in_queue_order() {
        let groups = group_in_order(vec![
            msg("1", "a#1"),
            msg("2", "b#2"),
            msg("3", "a#1"),
            msg("4", "c#3"),
            msg("5", "b#2"),
        ]);
        let ids: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.iter().map(|m| m.message_id.as_deref().unwrap()).collect())
            .collect();
        assert_eq!(ids, vec![vec!["1", "3"], vec!["2", "5"], vec!["4"]]);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = |n| backoff(Duration::from_secs(2), Duration::from_secs(60), n);
        assert_eq!(
            [b(1), b(2), b(3), b(5), b(10), b(u32::MAX)],
            [2, 4, 8, 32, 60, 60].map(Duration::from_secs)
        );
    }
}
