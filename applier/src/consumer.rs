//! The queue consumer: long-polls SQS, processes different pull requests concurrently (bounded)
//! and one pull request's messages strictly in order, and deletes a message only after its work
//! is complete.
//!
//! Failure handling (retry in process, as controller-runtime's work queue does, rather than
//! through the queue):
//! - transient (API 5xx/429/timeouts, connection errors): retried in this process with a
//!   growing delay (`retry_base` doubling up to `retry_max`) while the message and the later
//!   messages of its group stay held (see below), so an outage charges no receive to any of
//!   them and never pushes a message that was not even tried towards the dead-letter queue.
//!   Only when the retry budget is spent does the message return to the queue with a backoff
//!   visibility (one receive counted) and its group's later messages are released; after the
//!   queue's max receive count SQS moves it to the DLQ. A worker busy retrying keeps its
//!   concurrency permit, so an outage that fails every message stops the receiving.
//! - permanent (invalid template, refused kind, an API answer such as 400/403/404/422): recorded
//!   on the statuses and as a Warning Event where the reconcile can, message acknowledged and
//!   counted as `failed`; never sent towards the dead-letter queue.
//! - poison (a body that is not a kubetempura event): never deleted; released at once on every
//!   receive so it reaches the DLQ after the max receive count, quickly.
//!
//! Held messages: from its receipt until it is deleted or given back, every message (being
//! processed, retried, or waiting behind its group or for a worker) has its visibility extended
//! by the queue's visibility timeout each time a third of it has passed (a heartbeat), so long
//! work is never received a second time meanwhile. On shutdown they are released (visibility 0)
//! for another replica.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use kubetempura_common::check::QueueMessage;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::reconcile::{Ctx, handle_message};

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub queue_url: String,
    pub wait_time_seconds: i32,
    pub max_messages: i32,
    pub concurrency: usize,
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// How long a transient failure is retried in process before its message returns to the
    /// queue (zero: one attempt per receive).
    pub retry_budget: Duration,
    /// The queue's visibility timeout: a held message is extended by this much each time a
    /// third of it has passed.
    pub visibility_timeout: Duration,
}

/// The visibility timeout assumed when the queue's cannot be read (SQS's default).
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);

/// The delay after the `n`-th failure (of an attempt, or of a receive): `base`, doubling, at
/// most `max`.
pub fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    let exp = n.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << exp).min(max)
}

/// After the `attempt`-th failed attempt of a message, `elapsed` after its first attempt began:
/// the delay before the next attempt, or `None` when waiting it would overrun `budget` (the
/// message then returns to the queue).
pub fn next_retry(
    base: Duration,
    max: Duration,
    budget: Duration,
    attempt: u32,
    elapsed: Duration,
) -> Option<Duration> {
    let delay = backoff(base, max, attempt);
    (elapsed.saturating_add(delay) <= budget).then_some(delay)
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

/// The queue settings the applier depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueAttributes {
    pub visibility_timeout: Duration,
    pub retention: Duration,
    /// The redrive policy's `maxReceiveCount`.
    pub max_receive_count: Option<u32>,
    /// The redrive policy's dead-letter queue.
    pub dead_letter: Option<DeadLetterQueue>,
}

/// A dead-letter queue, from the redrive policy of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterQueue {
    pub arn: String,
    /// Its message retention, or why it could not be read.
    pub retention: Result<Duration, String>,
}

impl DeadLetterQueue {
    /// The queue's name (the last part of its ARN).
    pub fn name(&self) -> &str {
        queue_name_and_owner(&self.arn).map_or(self.arn.as_str(), |(name, _)| name)
    }
}

/// The tag naming the applier a queue was made for (set by terraform/ on every queue).
pub const APPLIER_TAG: &str = "kubetempura:applier";

/// Why the queue's tags suggest another applier consumes it too, if they do: a queue made for
/// one applier (its `kubetempura:applier` tag) consumed by an applier of another name. Two
/// appliers on one queue take each other's events, each acknowledging what it has no ReviewApp
/// for.
pub fn queue_sharing_problem(
    tags: &HashMap<String, String>,
    cluster_name: Option<&str>,
) -> Option<String> {
    let owner = tags.get(APPLIER_TAG)?;
    let me = cluster_name?;
    (owner != me).then(|| {
        format!(
            "the queue is tagged {APPLIER_TAG}={owner:?} but this applier is --cluster-name {me:?}: if the applier {owner:?} consumes it too, each takes the other's events and acknowledges those it has no ReviewApp for. Give every applier its own queue (terraform: the `appliers` map)"
        )
    })
}

/// The queue's tags (ListQueueTags).
pub async fn read_queue_tags(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<HashMap<String, String>, String> {
    let out = sqs
        .list_queue_tags()
        .queue_url(queue_url)
        .send()
        .await
        .map_err(|e| format!("ListQueueTags of {queue_url}: {}", DisplayErrorContext(&e)))?;
    Ok(out.tags.unwrap_or_default())
}

/// Reads the visibility timeout, message retention and redrive policy of the queue, and the
/// message retention of its dead-letter queue (GetQueueAttributes on both, GetQueueUrl by the
/// name in the dead-letter queue's ARN).
pub async fn read_queue_attributes(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<QueueAttributes, String> {
    let attrs = get_attributes(
        sqs,
        queue_url,
        &[
            QueueAttributeName::VisibilityTimeout,
            QueueAttributeName::MessageRetentionPeriod,
            QueueAttributeName::RedrivePolicy,
        ],
    )
    .await?;
    let redrive = attrs
        .get(&QueueAttributeName::RedrivePolicy)
        .and_then(|p| parse_redrive_policy(p));
    let dead_letter = match &redrive {
        Some((arn, _)) => Some(DeadLetterQueue {
            arn: arn.clone(),
            retention: dead_letter_retention(sqs, arn).await,
        }),
        None => None,
    };
    Ok(QueueAttributes {
        visibility_timeout: seconds(&attrs, &QueueAttributeName::VisibilityTimeout)?,
        retention: seconds(&attrs, &QueueAttributeName::MessageRetentionPeriod)?,
        max_receive_count: redrive.and_then(|(_, n)| n),
        dead_letter,
    })
}

async fn get_attributes(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    names: &[QueueAttributeName],
) -> Result<HashMap<QueueAttributeName, String>, String> {
    let mut request = sqs.get_queue_attributes().queue_url(queue_url);
    for name in names {
        request = request.attribute_names(name.clone());
    }
    let out = request.send().await.map_err(|e| {
        format!(
            "GetQueueAttributes of {queue_url}: {}",
            DisplayErrorContext(&e)
        )
    })?;
    Ok(out.attributes.unwrap_or_default())
}

fn seconds(
    attrs: &HashMap<QueueAttributeName, String>,
    name: &QueueAttributeName,
) -> Result<Duration, String> {
    attrs
        .get(name)
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
        .ok_or_else(|| format!("the queue attribute {name} is missing or not a number"))
}

async fn dead_letter_retention(sqs: &aws_sdk_sqs::Client, arn: &str) -> Result<Duration, String> {
    let (name, owner) =
        queue_name_and_owner(arn).ok_or_else(|| format!("{arn} is not an SQS queue ARN"))?;
    let url = sqs
        .get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(owner)
        .send()
        .await
        .map_err(|e| format!("GetQueueUrl of {name}: {}", DisplayErrorContext(&e)))?
        .queue_url
        .ok_or_else(|| format!("GetQueueUrl of {name} returned no URL"))?;
    let attrs = get_attributes(sqs, &url, &[QueueAttributeName::MessageRetentionPeriod]).await?;
    seconds(&attrs, &QueueAttributeName::MessageRetentionPeriod)
}

/// The dead-letter queue's ARN and the max receive count of a `RedrivePolicy` attribute (SQS
/// writes the count as a number or as a string).
pub fn parse_redrive_policy(policy: &str) -> Option<(String, Option<u32>)> {
    let v: serde_json::Value = serde_json::from_str(policy).ok()?;
    let arn = v.get("deadLetterTargetArn")?.as_str()?.to_owned();
    let count = v.get("maxReceiveCount").and_then(|c| match c {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    });
    Some((arn, count))
}

/// `arn:<partition>:sqs:<region>:<account>:<name>` → (name, account).
pub fn queue_name_and_owner(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (scheme, _partition, service, _region, account, name) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (scheme == "arn" && service == "sqs" && !name.is_empty() && !account.is_empty())
        .then_some((name, account))
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Processed {
    /// Its work is done and it was deleted.
    Acknowledged,
    /// Given back to the queue (retry budget spent, or shutting down); its group stops here.
    GivenBack,
    /// Not a kubetempura event: released towards the dead-letter queue.
    Poison,
}

/// The consumer.
pub struct Consumer {
    pub sqs: aws_sdk_sqs::Client,
    pub config: ConsumerConfig,
    pub ctx: Arc<Ctx>,
    /// The messages this worker holds, by receipt handle, with when their visibility was last
    /// set. Its lock is held across the heartbeat's visibility calls, so a message let go
    /// meanwhile is never made invisible again afterwards.
    held: tokio::sync::Mutex<HashMap<String, Instant>>,
}

impl Consumer {
    pub fn new(sqs: aws_sdk_sqs::Client, config: ConsumerConfig, ctx: Arc<Ctx>) -> Self {
        Self {
            sqs,
            config,
            ctx,
            held: tokio::sync::Mutex::default(),
        }
    }

    /// Checks the queue is reachable (for readiness at start-up).
    pub async fn probe(&self) -> Result<(), String> {
        get_attributes(
            &self.sqs,
            &self.config.queue_url,
            &[QueueAttributeName::VisibilityTimeout],
        )
        .await
        .map(|_| ())
    }

    /// Receives and processes until `shutdown` fires, then waits for in-flight work.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, grace: Duration) {
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(self.clone().heartbeat(heartbeat_stop.clone()));
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
                    tracing::warn!(error = %DisplayErrorContext(&e), retry_in = ?error_delay, "receiving from the queue failed");
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
            self.hold(&messages).await;
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
                "grace period over; abandoning in-flight work (its messages are released for another replica)"
            );
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        heartbeat_stop.cancel();
        let _ = heartbeat.await;
        self.release_all().await;
    }

    /// Processes one group's messages in order. When one is given back (retry budget spent,
    /// or shutting down), releases the rest so none of them is processed ahead of it.
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
            let done = self.process_one(&m, shutdown).await;
            self.ctx.metrics.in_flight(-1);
            match done {
                Processed::Acknowledged | Processed::Poison => {}
                Processed::GivenBack => {
                    let rest: Vec<Message> = iter.collect();
                    self.release(&rest).await;
                    return;
                }
            }
        }
    }

    /// Processes one message, retrying a transient failure in process within the budget.
    async fn process_one(&self, m: &Message, shutdown: &CancellationToken) -> Processed {
        let id = m.message_id.as_deref().unwrap_or_default();
        let count = receive_count(m);
        if let Some(a) = age(m) {
            self.ctx.metrics.observe_age(a);
        }
        let body = m.body.as_deref().unwrap_or_default();
        let message = match QueueMessage::from_json(body) {
            Ok(e) => e,
            Err(e) => {
                // Never deleted: it goes to the dead-letter queue after the max receive count.
                // It carries no pull request, so it does not hold back its group's later messages.
                tracing::error!(message_id = id, receive_count = count, error = %e, "poison message: not a kubetempura event; releasing it towards the dead-letter queue");
                self.ctx.metrics.failed("poison");
                self.release(std::slice::from_ref(m)).await;
                return Processed::Poison;
            }
        };
        let span = match &message {
            QueueMessage::PullRequest(event) => {
                tracing::info_span!("event", delivery = %event.delivery_id, repository = %event.repository.full_name, pr = event.number, action = %event.action)
            }
            QueueMessage::Check(check) => {
                tracing::info_span!("check", delivery = %check.delivery_id, repository = %check.repository.full_name, pull_request = ?check.pull_request, check = %check.name, sha = %check.head_sha, state = ?check.state)
            }
        };
        // The span is entered only while polling (never held across an await), so log lines of
        // other messages processed on the same thread are not attributed to this one.
        async {
            let first = Instant::now();
            let mut attempt: u32 = 1;
            loop {
                match handle_message(&self.ctx, &message).await {
                    Ok(outcomes) => {
                        self.log_outcomes(&outcomes);
                        self.delete(m).await;
                        return Processed::Acknowledged;
                    }
                    Err(failure) if !failure.is_transient() => {
                        // Retrying cannot help (the API server refused our own record, say):
                        // the reconcile recorded what it could; the message is acknowledged,
                        // never sent towards the dead-letter queue.
                        tracing::error!(outcome = "failed", error = %failure, "permanent failure; message acknowledged");
                        self.ctx.metrics.acknowledged("failed");
                        self.delete(m).await;
                        return Processed::Acknowledged;
                    }
                    Err(failure) => {
                        self.ctx.metrics.failed("transient");
                        let c = &self.config;
                        let Some(delay) = next_retry(
                            c.retry_base,
                            c.retry_max,
                            c.retry_budget,
                            attempt,
                            first.elapsed(),
                        ) else {
                            let back = backoff(c.retry_base, c.retry_max, count);
                            tracing::warn!(attempt, receive_count = count, retry_in = ?back, error = %failure, "transient failure; retry budget spent, the message returns to the queue");
                            self.give_back(m, back).await;
                            return Processed::GivenBack;
                        };
                        tracing::warn!(attempt, retry_in = ?delay, error = %failure, "transient failure; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => {
                                tracing::info!(attempt, "stopping: the failing message is released for another replica");
                                self.release(std::slice::from_ref(m)).await;
                                return Processed::GivenBack;
                            }
                            _ = tokio::time::sleep(delay) => {}
                        }
                        attempt = attempt.saturating_add(1);
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    fn log_outcomes(&self, outcomes: &[crate::reconcile::Outcome]) {
        for o in outcomes {
            self.ctx.metrics.acknowledged(o.label());
            match o {
                crate::reconcile::Outcome::Stale(reason)
                | crate::reconcile::Outcome::Skipped(reason)
                | crate::reconcile::Outcome::Failed(reason)
                | crate::reconcile::Outcome::Gated(reason)
                | crate::reconcile::Outcome::Queued(reason)
                | crate::reconcile::Outcome::Expired(reason)
                | crate::reconcile::Outcome::Recorded(reason) => {
                    tracing::info!(outcome = o.label(), reason = %reason, "event handled")
                }
                // One queue per applier: an event of a repository no ReviewApp here follows is
                // another cluster's (or nobody's) business, acknowledged and counted, not news.
                crate::reconcile::Outcome::NoReviewApp => {
                    tracing::debug!(outcome = o.label(), "event handled")
                }
                _ => tracing::info!(outcome = o.label(), detail = ?o, "event handled"),
            }
        }
    }

    /// Starts holding freshly received messages.
    async fn hold(&self, messages: &[Message]) {
        let mut held = self.held.lock().await;
        let now = Instant::now();
        let mut n = 0;
        for handle in messages.iter().filter_map(|m| m.receipt_handle.as_deref()) {
            held.insert(handle.to_owned(), now);
            n += 1;
        }
        self.ctx.metrics.hold(n);
    }

    /// Stops holding a message (its heartbeat ends).
    async fn let_go(&self, m: &Message) {
        let Some(handle) = m.receipt_handle.as_deref() else {
            return;
        };
        if self.held.lock().await.remove(handle).is_some() {
            self.ctx.metrics.let_go(1);
        }
    }

    /// Every third of the visibility timeout, extends the visibility of every held message by
    /// the visibility timeout; also logs when the consumer stalls and recovers.
    async fn heartbeat(self: Arc<Self>, stop: CancellationToken) {
        let extension = self.config.visibility_timeout.max(Duration::from_secs(1));
        let due = extension / 3;
        let mut tick = tokio::time::interval((extension / 6).max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stalled = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.extend_due(due, extension).await;
            match (self.ctx.metrics.stalled(), stalled) {
                (Some(stall), false) => {
                    tracing::warn!(%stall, "/readyz fails until a message finishes");
                    stalled = true;
                }
                (None, true) => {
                    tracing::info!("the consumer made progress again; /readyz recovers");
                    stalled = false;
                }
                _ => {}
            }
        }
    }

    async fn extend_due(&self, due: Duration, extension: Duration) {
        let mut held = self.held.lock().await;
        let now = Instant::now();
        let handles: Vec<String> = held
            .iter()
            .filter(|(_, at)| now.duration_since(**at) >= due)
            .map(|(h, _)| h.clone())
            .collect();
        if handles.is_empty() {
            return;
        }
        let seconds = i32::try_from(extension.as_secs()).unwrap_or(i32::MAX);
        let results =
            futures::future::join_all(handles.iter().map(|h| self.change_visibility(h, seconds)))
                .await;
        for (handle, result) in handles.iter().zip(results) {
            match result {
                Ok(()) => {
                    held.insert(handle.clone(), now);
                }
                Err(e) => {
                    // It reappears on the queue when its visibility runs out; applying twice
                    // is harmless, only wasteful.
                    tracing::warn!(error = %e, "extending the visibility of a held message failed; it may be received again before its work ends")
                }
            }
        }
        tracing::debug!(
            count = handles.len(),
            ?extension,
            "extended the visibility of held messages"
        );
    }

    async fn delete(&self, m: &Message) {
        self.let_go(m).await;
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
                    tracing::warn!(attempt, error = %DisplayErrorContext(&e), "deleting a processed message failed");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
            }
        }
        // Redelivery is harmless: applying again is idempotent and stale events are skipped.
        self.ctx.metrics.failed("delete_error");
    }

    async fn change_visibility(&self, handle: &str, seconds: i32) -> Result<(), String> {
        self.sqs
            .change_message_visibility()
            .queue_url(&self.config.queue_url)
            .receipt_handle(handle)
            .visibility_timeout(seconds.clamp(0, 43_200))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| DisplayErrorContext(&e).to_string())
    }

    /// Stops holding `m` and makes it visible again after `delay`.
    async fn give_back(&self, m: &Message, delay: Duration) {
        self.let_go(m).await;
        let Some(handle) = m.receipt_handle.as_deref() else {
            return;
        };
        let seconds = i32::try_from(delay.as_secs()).unwrap_or(i32::MAX);
        if let Err(e) = self.change_visibility(handle, seconds).await {
            // The message reappears when its visibility timeout runs out anyway.
            tracing::warn!(error = %e, "changing message visibility failed");
        }
    }

    /// Gives messages back at once.
    async fn release(&self, messages: &[Message]) {
        for m in messages {
            self.give_back(m, Duration::ZERO).await;
        }
    }

    /// Gives back every message still held (work abandoned at the end of the grace period).
    async fn release_all(&self) {
        let handles: Vec<String> = self.held.lock().await.drain().map(|(h, _)| h).collect();
        if handles.is_empty() {
            return;
        }
        self.ctx.metrics.let_go(handles.len());
        tracing::info!(
            count = handles.len(),
            "releasing the messages still held for another replica"
        );
        for handle in &handles {
            if let Err(e) = self.change_visibility(handle, 0).await {
                tracing::warn!(error = %e, "releasing a held message failed; it reappears when its visibility runs out");
            }
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

    #[test]
    fn retries_in_process_stop_where_the_next_delay_would_overrun_the_budget() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(4));
        let next = |budget, attempt, elapsed| {
            next_retry(
                base,
                max,
                Duration::from_secs(budget),
                attempt,
                Duration::from_millis(elapsed),
            )
        };
        // Delays 1, 2, 4, 4 … while they fit in the budget.
        assert_eq!(next(60, 1, 0), Some(Duration::from_secs(1)));
        assert_eq!(next(60, 2, 1_000), Some(Duration::from_secs(2)));
        assert_eq!(next(60, 5, 20_000), Some(Duration::from_secs(4)));
        assert_eq!(next(60, 9, 56_000), Some(Duration::from_secs(4)));
        assert_eq!(next(60, 9, 56_001), None);
        // With a budget of 2 s: a retry after 1 s, then the message goes back.
        assert_eq!(next(2, 1, 10), Some(Duration::from_secs(1)));
        assert_eq!(next(2, 2, 1_020), None);
        // No budget: one attempt per receive.
        assert_eq!(next(0, 1, 0), None);
    }

    #[test]
    fn a_queue_tagged_for_another_applier_is_reported() {
        let tags = HashMap::from([(APPLIER_TAG.to_owned(), "eu-1".to_owned())]);
        assert_eq!(queue_sharing_problem(&tags, Some("eu-1")), None);
        let problem = queue_sharing_problem(&tags, Some("us-1")).unwrap();
        assert!(
            problem.contains("\"eu-1\"") && problem.contains("\"us-1\""),
            "{problem}"
        );
        // Nothing to compare: no tag (a queue made by hand), or an applier without a name.
        assert_eq!(queue_sharing_problem(&HashMap::new(), Some("us-1")), None);
        assert_eq!(queue_sharing_problem(&tags, None), None);
    }

    #[test]
    fn redrive_policies_and_queue_arns_parse() {
        let arn = "arn:aws:sqs:us-east-1:111122223333:kubetempura-events-dlq.fifo";
        assert_eq!(
            parse_redrive_policy(&format!(
                r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":5}}"#
            )),
            Some((arn.to_owned(), Some(5)))
        );
        assert_eq!(
            parse_redrive_policy(&format!(
                r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"7"}}"#
            )),
            Some((arn.to_owned(), Some(7)))
        );
        assert_eq!(parse_redrive_policy("not json"), None);
        assert_eq!(parse_redrive_policy(r#"{"maxReceiveCount":5}"#), None);
        assert_eq!(
            queue_name_and_owner(arn),
            Some(("kubetempura-events-dlq.fifo", "111122223333"))
        );
        assert_eq!(
            queue_name_and_owner("arn:aws-cn:sqs:cn-north-1:111122223333:q"),
            Some(("q", "111122223333"))
        );
        assert_eq!(
            queue_name_and_owner("arn:aws:sns:us-east-1:111122223333:t"),
            None
        );
        assert_eq!(queue_name_and_owner("kubetempura-events-dlq.fifo"), None);
        let dlq = DeadLetterQueue {
            arn: arn.to_owned(),
            retention: Ok(Duration::from_secs(60)),
        };
        assert_eq!(dlq.name(), "kubetempura-events-dlq.fifo");
    }
}
