# The event queue and its dead-letter queue, both FIFO.
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

  tags = local.tags
}

resource "aws_sqs_queue" "events" {
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
    deadLetterTargetArn = aws_sqs_queue.dlq.arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = local.tags

  lifecycle {
    precondition {
      condition     = var.dlq_message_retention_seconds > var.message_retention_seconds
      error_message = "dlq_message_retention_seconds must be longer than message_retention_seconds."
    }
  }
}

# Only the event queue may use the dead-letter queue as its DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.events.arn]
  })
}

# Refuse any request to any of the module's queues that is not made over TLS (the feedback
# queues of feedback.tf too, when feedback_enabled).
data "aws_iam_policy_document" "queue_tls_only" {
  for_each = merge(
    {
      events = aws_sqs_queue.events.arn
      dlq    = aws_sqs_queue.dlq.arn
    },
    var.feedback_enabled ? {
      feedback     = aws_sqs_queue.feedback[0].arn
      feedback_dlq = aws_sqs_queue.feedback_dlq[0].arn
    } : {},
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
  queue_url = aws_sqs_queue.events.id
  policy    = data.aws_iam_policy_document.queue_tls_only["events"].json
}

resource "aws_sqs_queue_policy" "dlq" {
  queue_url = aws_sqs_queue.dlq.id
  policy    = data.aws_iam_policy_document.queue_tls_only["dlq"].json
}
