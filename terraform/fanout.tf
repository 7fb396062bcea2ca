# One webhook, many clusters (var.appliers). Everything here exists only with appliers.
#
#   webhook function ──Publish (group = repo+PR, dedup id = X-GitHub-Delivery,
#                               attributes repository, owner, event)──▶ SNS <name>-events.fifo
#       ──subscription per applier: raw delivery, filter policy on repository / owner──▶
#   SQS <name>-<applier>.fifo ──after max_receive_count──▶ SQS <name>-<applier>-dlq.fifo
#
# Raw message delivery puts the function's message body and its attributes on the queue as the
# function sent them, so an applier reads the same messages from its own queue as from the
# single queue. SNS FIFO keeps the group id and the deduplication id on delivery: per-PR order
# and redelivery deduplication hold end to end. What each applier's queues, filter policy and
# alarms are is computed by modules/appliers (no provider), which the tests evaluate.
#
# The single queue (sqs.tf) is not created with appliers unless keep_single_queue holds it for
# its old applier to drain (README, "Many clusters").

module "appliers" {
  source = "./modules/appliers"

  name     = var.name
  appliers = var.appliers
  defaults = {
    max_receive_count                 = var.max_receive_count
    visibility_timeout_seconds        = var.visibility_timeout_seconds
    message_retention_seconds         = var.message_retention_seconds
    dlq_message_retention_seconds     = var.dlq_message_retention_seconds
    create_alarms                     = var.create_alarms
    queue_age_alarm_threshold_seconds = var.queue_age_alarm_threshold_seconds
  }
  # Reserved whether or not they exist now: a queue name cannot be reused for 60 s after its
  # queue is deleted, which is what switching to appliers does to the single queue.
  reserved_queue_names = [local.queue_name, local.dlq_name, local.feedback_queue_name, local.feedback_dlq_name]
  tags                 = local.tags
}

locals {
  appliers                = module.appliers.appliers
  module_identity_applier = module.appliers.module_identity_applier
  topic_name              = "${var.name}-events.fifo"
}

# ---------------------------------------------------------------------------------------------
# The topic

# Content-based deduplication is off for the reason it is off on the queues (sqs.tf): the
# function sets the deduplication id. fifo_throughput_scope follows high_throughput_fifo like
# the queues' deduplication scope: "Topic" deduplicates across the whole topic.
# Encryption as for the queues: the customer managed key when given; otherwise SNS's AWS managed
# key (SNS has no counterpart of SSE-SQS), whose key policy already lets this account's
# principals use it through SNS, so no IAM grant is needed for it.
resource "aws_sns_topic" "events" {
  count = local.fanout_enabled ? 1 : 0

  name                        = local.topic_name
  fifo_topic                  = true
  content_based_deduplication = false
  fifo_throughput_scope       = var.high_throughput_fifo ? "MessageGroup" : "Topic"
  kms_master_key_id           = coalesce(var.kms_key_arn, "alias/aws/sns")

  tags = local.tags
}

# Only the webhook function's role may publish, and only over TLS. (Managing the topic stays
# with this account's IAM policies, as for any resource without a grant to other accounts.)
data "aws_iam_policy_document" "topic" {
  count = local.fanout_enabled ? 1 : 0

  statement {
    sid       = "PublishFromWebhookFunction"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.events[0].arn]

    principals {
      type        = "AWS"
      identifiers = [aws_iam_role.webhook.arn]
    }
  }

  statement {
    sid       = "DenyPublishByOthers"
    effect    = "Deny"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.events[0].arn]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    # For a role session, aws:PrincipalArn is the role's ARN.
    condition {
      test     = "ArnNotEquals"
      variable = "aws:PrincipalArn"
      values   = [aws_iam_role.webhook.arn]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sns:*"]
    resources = [aws_sns_topic.events[0].arn]

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

resource "aws_sns_topic_policy" "events" {
  count = local.fanout_enabled ? 1 : 0

  arn    = aws_sns_topic.events[0].arn
  policy = data.aws_iam_policy_document.topic[0].json
}

# ---------------------------------------------------------------------------------------------
# Each applier's queues (settings as sqs.tf's, resolved per applier by modules/appliers)

resource "aws_sqs_queue" "applier_dlq" {
  for_each = local.appliers

  name                        = each.value.dlq_name
  fifo_queue                  = true
  content_based_deduplication = false
  deduplication_scope         = var.high_throughput_fifo ? "messageGroup" : "queue"
  fifo_throughput_limit       = var.high_throughput_fifo ? "perMessageGroupId" : "perQueue"

  message_retention_seconds = each.value.dlq_message_retention_seconds
  receive_wait_time_seconds = 20

  sqs_managed_sse_enabled           = var.kms_key_arn == null ? true : null
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = var.kms_key_arn == null ? null : var.kms_data_key_reuse_period_seconds

  tags = each.value.tags
}

resource "aws_sqs_queue" "applier" {
  for_each = local.appliers

  name                        = each.value.queue_name
  fifo_queue                  = true
  content_based_deduplication = false
  deduplication_scope         = var.high_throughput_fifo ? "messageGroup" : "queue"
  fifo_throughput_limit       = var.high_throughput_fifo ? "perMessageGroupId" : "perQueue"

  visibility_timeout_seconds = each.value.visibility_timeout_seconds
  message_retention_seconds  = each.value.message_retention_seconds
  receive_wait_time_seconds  = 20

  sqs_managed_sse_enabled           = var.kms_key_arn == null ? true : null
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = var.kms_key_arn == null ? null : var.kms_data_key_reuse_period_seconds

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.applier_dlq[each.key].arn
    maxReceiveCount     = each.value.max_receive_count
  })

  tags = each.value.tags
}

# Only the applier's own queue may use its dead-letter queue.
resource "aws_sqs_queue_redrive_allow_policy" "applier_dlq" {
  for_each = local.appliers

  queue_url = aws_sqs_queue.applier_dlq[each.key].id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.applier[each.key].arn]
  })
}

# TLS only, and the topic (nothing else) may send to it.
data "aws_iam_policy_document" "applier_queue" {
  for_each = local.appliers

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.applier[each.key].arn]

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

  statement {
    sid       = "DeliverFromTopic"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.applier[each.key].arn]

    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_sns_topic.events[0].arn]
    }
  }
}

resource "aws_sqs_queue_policy" "applier" {
  for_each = local.appliers

  queue_url = aws_sqs_queue.applier[each.key].id
  policy    = data.aws_iam_policy_document.applier_queue[each.key].json
}

resource "aws_sqs_queue_policy" "applier_dlq" {
  for_each = local.appliers

  queue_url = aws_sqs_queue.applier_dlq[each.key].id
  policy    = data.aws_iam_policy_document.queue_tls_only["applier_dlq/${each.key}"].json
}

# The filter policy scope is set only with a filter policy: the provider refuses a scope
# without one. No filter policy: every event.
resource "aws_sns_topic_subscription" "applier" {
  for_each = local.appliers

  topic_arn            = aws_sns_topic.events[0].arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.applier[each.key].arn
  raw_message_delivery = true
  filter_policy        = each.value.filter_policy
  filter_policy_scope  = each.value.filter_policy == null ? null : "MessageAttributes"

  # The queue must let the topic in before the first delivery.
  depends_on = [aws_sqs_queue_policy.applier]
}
