# The single event queue and its dead-letter queue, both FIFO. They exist without appliers (the
# default), and with appliers only while keep_single_queue lets the old applier drain them
# (local.single_queue); each applier's own queues are in fanout.tf. moved.tf keeps the addresses
# they had before they were counted.
#
# MessageGroupId = repository + PR number (per-PR order, parallel across PRs) and
# MessageDeduplicationId = X-GitHub-Delivery are set by the function, so content-based
# deduplication is OFF: two different deliveries with equal bodies are two events.
#
# High-throughput FIFO (`deduplication_scope = "messageGroup"` with
# `fifo_throughput_limit = "perMessageGroupId"`) is OFF by default (var.high_throughput_fifo).
# Reasons: standard FIFO allows 300 API calls per second per action (3,000 messages with
# batching), orders of magnitude above the pull-request events of even a large organisation,
# and the applier receives at most 10 per call. Queue-wide deduplication is the stronger
# guarantee: a redelivered X-GitHub-Delivery is dropped even if its group key were computed
# differently the second time (a function version that changed the key format, a repository
# renamed in between); with messageGroup scope it would be dropped only within the same
# group. The price is the same either way, so a team that outgrows 300 TPS can switch it on;
# the function's keys (one delivery id always maps to one group) make that safe too.

resource "aws_sqs_queue" "dlq" {
  count = local.single_queue ? 1 : 0

  name                        = local.dlq_name
  fifo_queue                  = true
  content_based_deduplication = false
  deduplication_scope         = var.high_throughput_fifo ? "messageGroup" : "queue"
  fifo_throughput_limit       = var.high_throughput_fifo ? "perMessageGroupId" : "perQueue"

  # FIFO: the enqueue timestamp resets when a message moves here, so the event gets the full
  # DLQ retention, longer than the queue's (checked below) to leave time to inspect it.
  message_retention_seconds = var.dlq_message_retention_seconds
  receive_wait_time_seconds = 20

  # Encryption at rest: SSE-SQS unless a customer managed key is given.
  sqs_managed_sse_enabled           = var.kms_key_arn == null ? true : null
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = var.kms_key_arn == null ? null : var.kms_data_key_reuse_period_seconds

  tags = local.single_queue_tags
}

resource "aws_sqs_queue" "events" {
  count = local.single_queue ? 1 : 0

  name                        = local.queue_name
  fifo_queue                  = true
  content_based_deduplication = false
  deduplication_scope         = var.high_throughput_fifo ? "messageGroup" : "queue"
  fifo_throughput_limit       = var.high_throughput_fifo ? "perMessageGroupId" : "perQueue"

  visibility_timeout_seconds = var.visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  # Long polling: the applier's ReceiveMessage waits up to 20 s for an event.
  receive_wait_time_seconds = 20

  sqs_managed_sse_enabled           = var.kms_key_arn == null ? true : null
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = var.kms_key_arn == null ? null : var.kms_data_key_reuse_period_seconds

  # After max_receive_count receives without a delete (transient failures the applier kept
  # retrying), the event moves to the dead-letter queue. With FIFO this unblocks the PR's
  # group: later events of that PR proceed, and the applier skips any event older than what it
  # already recorded, so order is preserved where it matters.
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[0].arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = local.single_queue_tags

  lifecycle {
    precondition {
      condition     = var.dlq_message_retention_seconds > var.message_retention_seconds
      error_message = "dlq_message_retention_seconds must be longer than message_retention_seconds."
    }
  }
}

# Only the event queue may use the dead-letter queue as its DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  count = local.single_queue ? 1 : 0

  queue_url = aws_sqs_queue.dlq[0].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events[0].arn]
  })
}

# Refuse any request to any of the module's queues that is not made over TLS (the feedback
# queues of feedback.tf too, when feedback_enabled, and the appliers' dead-letter queues of
# fanout.tf; an applier's own queue has a policy of its own there, which also lets the topic in).
data "aws_iam_policy_document" "queue_tls_only" {
  for_each = merge(
    local.single_queue ? {
      events = aws_sqs_queue.events[0].arn
      dlq    = aws_sqs_queue.dlq[0].arn
    } : {},
    var.feedback_enabled ? {
      feedback     = aws_sqs_queue.feedback[0].arn
      feedback_dlq = aws_sqs_queue.feedback_dlq[0].arn
    } : {},
    { for k, q in aws_sqs_queue.applier_dlq : "applier_dlq/${k}" => q.arn },
  )

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [each.value]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "events" {
  count = local.single_queue ? 1 : 0

  queue_url = aws_sqs_queue.events[0].id
  policy    = data.aws_iam_policy_document.queue_tls_only["events"].json
}

resource "aws_sqs_queue_policy" "dlq" {
  count = local.single_queue ? 1 : 0

  queue_url = aws_sqs_queue.dlq[0].id
  policy    = data.aws_iam_policy_document.queue_tls_only["dlq"].json
}
