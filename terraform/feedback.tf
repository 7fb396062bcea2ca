# PR feedback, the AWS side: the applier (in the cluster) sends each change of an environment's
# state (common/src/feedback.rs, FeedbackEvent) to this FIFO queue; the notifier function
# (notifier.tf) consumes it and shows the state on the pull request as a GitHub App, whose
# credentials are in the secret below. The cluster holds no GitHub credential.
#
# Everything here exists only with var.feedback_enabled (count).
#
# Message group = the pull request (one PR's states stay in order, PRs proceed in parallel);
# MessageDeduplicationId is set by the applier (the same state sent twice is one message), so
# content-based deduplication is off. High-throughput FIFO is always on here: deduplication
# per message group is exactly what the applier's ids need (an id is only ever reused within
# its pull request's group), and the queue-wide guarantee that sqs.tf keeps for the event queue
# (a delivery id whose group key changed) does not arise.

resource "aws_sqs_queue" "feedback_dlq" {
  count = var.feedback_enabled ? 1 : 0

  name                        = local.feedback_dlq_name
  fifo_queue                  = true
  content_based_deduplication = false
  deduplication_scope         = "messageGroup"
  fifo_throughput_limit       = "perMessageGroupId"

  # As for the event queue's DLQ: kept longer than the queue keeps a pending event.
  message_retention_seconds = var.dlq_message_retention_seconds
  receive_wait_time_seconds = 20

  sqs_managed_sse_enabled           = var.kms_key_arn == null ? true : null
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = var.kms_key_arn == null ? null : var.kms_data_key_reuse_period_seconds

  tags = local.tags
}

resource "aws_sqs_queue" "feedback" {
  count = var.feedback_enabled ? 1 : 0

  name                        = local.feedback_queue_name
  fifo_queue                  = true
  content_based_deduplication = false
  deduplication_scope         = "messageGroup"
  fifo_throughput_limit       = "perMessageGroupId"

  # At least 6 x the notifier's timeout (AWS's guidance for an event source queue; checked
  # below). Lambda's pollers long-poll on their own; receive_wait_time_seconds only matters to
  # an operator's receive-message.
  visibility_timeout_seconds = local.feedback_visibility_timeout_seconds
  message_retention_seconds  = var.message_retention_seconds
  receive_wait_time_seconds  = 20

  sqs_managed_sse_enabled           = var.kms_key_arn == null ? true : null
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = var.kms_key_arn == null ? null : var.kms_data_key_reuse_period_seconds

  # After feedback_max_receive_count failed attempts the event moves to the dead-letter queue,
  # which unblocks the pull request's group; a later state of that PR supersedes it anyway.
  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.feedback_dlq[0].arn
    maxReceiveCount     = var.feedback_max_receive_count
  })

  tags = local.tags

  lifecycle {
    precondition {
      condition     = local.feedback_visibility_timeout_seconds >= 6 * var.notifier_timeout
      error_message = "feedback_visibility_timeout_seconds must be at least 6 x notifier_timeout (AWS guidance for an SQS event source; Lambda refuses a visibility timeout shorter than the function timeout)."
    }
    precondition {
      condition     = local.feedback_visibility_timeout_seconds <= 43200
      error_message = "6 x notifier_timeout exceeds SQS's largest visibility timeout (43200 s): lower notifier_timeout."
    }
  }
}

# Only the feedback queue may use the feedback dead-letter queue as its DLQ.
resource "aws_sqs_queue_redrive_allow_policy" "feedback_dlq" {
  count = var.feedback_enabled ? 1 : 0

  queue_url = aws_sqs_queue.feedback_dlq[0].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.feedback[0].arn]
  })
}

# TLS only, like the event queues (data.aws_iam_policy_document.queue_tls_only in sqs.tf).
resource "aws_sqs_queue_policy" "feedback" {
  count = var.feedback_enabled ? 1 : 0

  queue_url = aws_sqs_queue.feedback[0].id
  policy    = data.aws_iam_policy_document.queue_tls_only["feedback"].json
}

resource "aws_sqs_queue_policy" "feedback_dlq" {
  count = var.feedback_enabled ? 1 : 0

  queue_url = aws_sqs_queue.feedback_dlq[0].id
  policy    = data.aws_iam_policy_document.queue_tls_only["feedback_dlq"].json
}

# ---------------------------------------------------------------------------------------------
# The GitHub App's credentials

# Created EMPTY: the value, JSON {"appId": "...", "privateKey": "-----BEGIN RSA PRIVATE KEY-----..."},
# is put with `aws secretsmanager put-secret-value` (README, "Creating the GitHub App"), so the
# private key never passes through Terraform or its state. Until it is put, the notifier fails
# its events (they are retried, then dead-lettered) and its error alarm fires.
resource "aws_secretsmanager_secret" "github_app" {
  #checkov:skip=CKV2_AWS_57:The private key is generated in the GitHub App's settings, which a rotation Lambda cannot do; rotation is the documented generate, put-secret-value, delete-old-key procedure.
  count = local.create_github_app_secret ? 1 : 0

  name_prefix             = "${var.name}-github-app-"
  description             = "GitHub App credentials of kubetempura ${var.name}'s notifier: JSON {\"appId\": ..., \"privateKey\": ...}. The value is managed outside Terraform."
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days

  tags = local.tags
}
