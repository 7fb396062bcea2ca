//! The invocation: a batch of feedback messages in, the ones to redeliver out.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use kubetempura_common::feedback::{FeedbackEvent, FeedbackState};

use crate::comment::{CommentState, Links, web_url};
use crate::deployment::{create_deployment_body, status_body, status_state};
use crate::failure::{Class, Failure};
use crate::github::GitHub;
use crate::queue::FeedbackQueue;

/// The function's state, built once at cold start and borrowed by every invocation.
#[derive(Debug)]
pub struct App {
    pub github: GitHub,
    pub queue: FeedbackQueue,
}

/// What handling one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The comment already shows this environment at the event's time or later: nothing done.
    Stale,
    /// The deployment statuses were posted and the comment brought up to date.
    Shown {
        deployments: Vec<u64>,
        comment: CommentChange,
    },
}

/// What became of the environments comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentChange {
    Created,
    Updated,
    Unchanged,
}

/// The batch's result: the response for the event source mapping, and the messages to delay.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub response: SqsBatchResponse,
    /// Receipt handles of rate-limited messages and how long each should stay hidden.
    pub delays: Vec<(String, Duration)>,
}

/// Handles one invocation (the Lambda entry point's body).
pub async fn handle(app: &App, event: SqsEvent) -> SqsBatchResponse {
    let outcome = process_batch(&event.records, |record| notify_record(&app.github, record)).await;
    for (receipt_handle, delay) in &outcome.delays {
        app.queue.delay(receipt_handle, *delay).await;
    }
    outcome.response
}

/// The message group of a record (its FIFO `MessageGroupId`; the message alone without one).
fn group_of(record: &SqsMessage) -> String {
    record
        .attributes
        .get("MessageGroupId")
        .cloned()
        .or_else(|| record.message_id.clone())
        .unwrap_or_default()
}

/// Processes the records in order and reports the ones to redeliver.
///
/// A FIFO queue's order holds per message group, so once a message of a group fails, every
/// later message of that group in the batch is reported failed without being processed; other
/// groups go on. AWS's Lambda guide ("Implementing partial batch responses", with-sqs.html)
/// asks a FIFO consumer to stop at the first failure and return every failed and unprocessed
/// message; stopping per group is the finer version of that rule (Powertools' FIFO batch
/// processor calls it `skip_group_on_error`).
///
/// A rate limit stops the whole batch: calling GitHub on while it is limiting us risks a longer
/// ban, so every message left is reported failed and delayed like the limited one.
pub async fn process_batch<'a, F, Fut>(records: &'a [SqsMessage], mut process: F) -> BatchOutcome
where
    F: FnMut(&'a SqsMessage) -> Fut,
    Fut: Future<Output = Result<Outcome, Failure>>,
{
    let mut outcome = BatchOutcome::default();
    let mut failed_groups = HashSet::new();
    let mut halted: Option<Duration> = None;
    for record in records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let group = group_of(record);
        if let Some(delay) = halted {
            outcome.response.add_failure(message_id);
            if let Some(receipt) = &record.receipt_handle {
                outcome.delays.push((receipt.clone(), delay));
            }
            continue;
        }
        if failed_groups.contains(&group) {
            tracing::info!(
                message_id,
                group,
                "not processed: an earlier message of its group failed"
            );
            outcome.response.add_failure(message_id);
            continue;
        }
        match process(record).await {
            Ok(result) => tracing::info!(message_id, group, outcome = ?result, "feedback handled"),
            Err(failure) => {
                log_failure(&message_id, &group, &failure);
                if let Class::RateLimited(delay) = failure.class() {
                    halted = Some(delay);
                    if let Some(receipt) = &record.receipt_handle {
                        outcome.delays.push((receipt.clone(), delay));
                    }
                }
                failed_groups.insert(group);
                outcome.response.add_failure(message_id);
            }
        }
    }
    outcome
}

fn log_failure(message_id: &str, group: &str, failure: &Failure) {
    let request_id = failure.request_id().unwrap_or("-");
    let status = failure.status();
    let error = error_chain(failure);
    match failure.class() {
        Class::RateLimited(delay) => tracing::warn!(
            message_id,
            group,
            request_id,
            status,
            delay_secs = delay.as_secs(),
            error,
            "rate limited by GitHub; the batch's remaining messages come back after the delay"
        ),
        Class::Transient => tracing::warn!(
            message_id,
            group,
            request_id,
            status,
            error,
            "transient failure; the message is redelivered after the visibility timeout"
        ),
        Class::Permanent => tracing::error!(
            message_id,
            group,
            request_id,
            status,
            error,
            "permanent failure; the message goes to the dead-letter queue after the queue's maxReceiveCount"
        ),
    }
}

/// The error and its sources, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn notify_record(github: &GitHub, record: &SqsMessage) -> Result<Outcome, Failure> {
    let body = record.body.as_deref().ok_or(Failure::EmptyBody)?;
    let event = FeedbackEvent::from_json(body).map_err(Failure::Undecodable)?;
    notify(github, &event).await
}

/// Shows one event on its pull request: the deployment status of its environment, then the
/// comment's row. The comment is read first: it records the time of what each environment
/// shows, so an event no newer than that changes neither the comment nor the deployment. The
/// comment is written last, so a failure in between is retried in full.
pub async fn notify(github: &GitHub, event: &FeedbackEvent) -> Result<Outcome, Failure> {
    let repository = &event.repository;
    let environment = event.github_environment();
    let comment = github.find_comment(repository, event.pr_number).await?;
    let mut state = match &comment {
        None => CommentState::default(),
        Some(c) => CommentState::parse(c.body()).unwrap_or_else(|e| {
            tracing::warn!(comment_id = c.id, error = %e, "the environments comment's state is unreadable; it is rewritten from this event");
            CommentState::default()
        }),
    };
    if !state.is_news(event) {
        tracing::info!(repository, pr = event.pr_number, environment, time = %event.time, "event no newer than the comment shows; ignored");
        return Ok(Outcome::Stale);
    }
    let deployments = record_deployment(github, event, &environment).await?;
    if event.state == FeedbackState::Closed && state.shown(&environment).is_none() {
        // The close of an environment the pull request never showed (e.g. the tombstones an
        // applier finds when feedback is first turned on) adds no row, and no comment to a
        // pull request that has none. A skip does: "not deployed: drafts are skipped" is news;
        // so are a queue ("queued: 2 ahead") and an expiry, which says how to wake the
        // environment of a pull request that is still open.
        tracing::info!(repository, pr = event.pr_number, environment, state = %event.state, "a removed environment the comment never showed; no row");
        return Ok(Outcome::Shown {
            deployments,
            comment: CommentChange::Unchanged,
        });
    }
    state.record(event);
    let links = Links {
        web_url: web_url(github.api_url()),
        repository: repository.clone(),
    };
    let body = state.render(&links);
    let change = match comment {
        None => {
            github
                .create_comment(repository, event.pr_number, &body)
                .await?;
            CommentChange::Created
        }
        Some(c) if c.body() != body => {
            github.update_comment(repository, c.id, &body).await?;
            CommentChange::Updated
        }
        Some(_) => CommentChange::Unchanged,
    };
    Ok(Outcome::Shown {
        deployments,
        comment: change,
    })
}

/// Posts the event's deployment status; returns the deployments it went to.
///
/// The deployment of (head commit, environment) is found or created. A removed environment
/// (closed, skipped, expired) gets no deployment created: every deployment of the environment is
/// marked inactive instead (those of earlier commits too, and that of a newer commit that was
/// waiting or blocked; none may exist: nothing to do). GitHub's `auto_inactive` would not do it
/// for us: it skips transient environments, and ours are transient.
///
/// A head commit waiting for its checks, blocked by one or queued gets its own deployment
/// (`pending`, `error`, `queued`); the deployment of the commit that still serves is not
/// touched and keeps its `success`.
async fn record_deployment(
    github: &GitHub,
    event: &FeedbackEvent,
    environment: &str,
) -> Result<Vec<u64>, Failure> {
    let repository = &event.repository;
    let ids = if event.state.is_removed() {
        let all = github.deployments(repository, None, environment).await?;
        all.iter().map(|d| d.id).collect()
    } else {
        let existing = github
            .deployments(repository, Some(&event.head_sha), environment)
            .await?;
        match existing.first() {
            Some(deployment) => vec![deployment.id],
            None => {
                let body = create_deployment_body(event, environment);
                vec![github.create_deployment(repository, &body).await?.id]
            }
        }
    };
    let body = status_body(event, environment, status_state(event.state));
    for id in &ids {
        github.create_status(repository, *id, &body).await?;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn record(id: &str, group: Option<&str>) -> SqsMessage {
        let mut attributes = serde_json::Map::new();
        if let Some(g) = group {
            attributes.insert("MessageGroupId".into(), g.into());
        }
        serde_json::from_value(serde_json::json!({
            "messageId": id,
            "receiptHandle": format!("rh-{id}"),
            "body": id,
            "attributes": attributes,
        }))
        .expect("record")
    }

    fn refused() -> Failure {
        Failure::Refused {
            call: "test",
            status: 422,
            request_id: "R1".into(),
            message: "Validation Failed".into(),
        }
    }

    fn limited(secs: u64) -> Failure {
        Failure::RateLimited {
            call: "test",
            status: 403,
            request_id: "R2".into(),
            delay_secs: secs,
        }
    }

    fn ok() -> Outcome {
        Outcome::Stale
    }

    fn failed_ids(outcome: &BatchOutcome) -> Vec<&str> {
        outcome
            .response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    /// Runs `process_batch` with a processor failing the bodies in `fail` with `failure()`;
    /// returns the outcome and the bodies processed, in order.
    async fn run(
        records: &[SqsMessage],
        fail: &[&str],
        failure: fn() -> Failure,
    ) -> (BatchOutcome, Vec<String>) {
        let seen = RefCell::new(Vec::new());
        let outcome = process_batch(records, |r| {
            let body = r.body.clone().unwrap_or_default();
            seen.borrow_mut().push(body.clone());
            let result = if fail.contains(&body.as_str()) {
                Err(failure())
            } else {
                Ok(ok())
            };
            async move { result }
        })
        .await;
        (outcome, seen.into_inner())
    }

    #[tokio::test]
    async fn a_batch_that_succeeds_reports_no_failures() {
        let records = [record("a1", Some("A")), record("b1", Some("B"))];
        let (outcome, seen) = run(&records, &[], refused).await;
        assert!(outcome.response.batch_item_failures.is_empty());
        assert_eq!(seen, ["a1", "b1"]);
    }

    #[tokio::test]
    async fn after_a_failure_the_rest_of_its_group_is_failed_unprocessed_and_other_groups_go_on() {
        let records = [
            record("a1", Some("A")),
            record("a2", Some("A")),
            record("b1", Some("B")),
            record("a3", Some("A")),
            record("b2", Some("B")),
        ];
        let (outcome, seen) = run(&records, &["a2"], refused).await;
        assert_eq!(seen, ["a1", "a2", "b1", "b2"], "a3 is never processed");
        assert_eq!(failed_ids(&outcome), ["a2", "a3"]);
        assert!(outcome.delays.is_empty(), "only rate limits delay messages");
    }

    #[tokio::test]
    async fn a_message_without_a_group_fails_alone() {
        let records = [record("x", None), record("y", None)];
        let (outcome, seen) = run(&records, &["x"], refused).await;
        assert_eq!(seen, ["x", "y"]);
        assert_eq!(failed_ids(&outcome), ["x"]);
    }

    #[tokio::test]
    async fn a_rate_limit_stops_the_batch_and_delays_every_remaining_message() {
        let records = [
            record("a1", Some("A")),
            record("b1", Some("B")),
            record("c1", Some("C")),
            record("a2", Some("A")),
        ];
        let (outcome, seen) = run(&records, &["b1"], || limited(120)).await;
        assert_eq!(seen, ["a1", "b1"]);
        assert_eq!(failed_ids(&outcome), ["b1", "c1", "a2"]);
        let d = Duration::from_secs(120);
        assert_eq!(
            outcome.delays,
            [
                ("rh-b1".to_owned(), d),
                ("rh-c1".to_owned(), d),
                ("rh-a2".to_owned(), d)
            ]
        );
    }

    #[tokio::test]
    async fn undecodable_and_empty_messages_are_permanent_failures() {
        let mut empty = record("e", Some("E"));
        empty.body = None;
        let bad = record("not json", Some("B"));
        // No GitHub call is made before the body is decoded, so an unreachable client is fine.
        let key = crate::jwt::AppKey::new(&crate::config::AppCredentials {
            app_id: "1".into(),
            private_key: include_str!("../testdata/test-app-private-key-pkcs1.pem").into(),
        })
        .expect("key");
        let github = GitHub::new("http://127.0.0.1:9", key).expect("client");
        for r in [&empty, &bad] {
            let failure = notify_record(&github, r).await.expect_err("must fail");
            assert_eq!(failure.class(), Class::Permanent, "{failure}");
        }
    }

    #[test]
    fn the_error_chain_names_every_cause() {
        let failure =
            Failure::Undecodable(kubetempura_common::feedback::FeedbackDecodeError::Version {
                found: 2,
            });
        assert_eq!(
            error_chain(&failure),
            "the message is not a feedback event: feedback event schema version 2 is not supported (this build reads 1)"
        );
    }
}
