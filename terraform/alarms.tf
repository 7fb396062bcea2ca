# CloudWatch alarms. Decision: they are created whenever create_alarms is true, with or without
# alarm_sns_topic_arn. Without a topic they have no actions but still show their state in the
# console and in `aws cloudwatch describe-alarms`, and a topic can be wired later without
# recreating them. With a topic, it is notified on ALARM and on recovery (OK).
#
# Four signals, so that nothing fails silently:
#   dlq_not_empty       an event exhausted its retries: inspect it, fix, redrive.
#   function_errors     the function crashed or timed out (Lambda "Errors").
#   webhook_5xx         the function answered 5xx (for example the queue refused the event):
#                       a handled error, which "Errors" does not count; GitHub shows the
#                       delivery as failed and it can be redelivered.
#   queue_oldest_event  events wait too long: the applier is down, stuck or cannot
#                       authenticate.
# The two queue alarms watch the single queue (when it exists); with appliers each applier's
# queues get the same two (below), and the topic one more.

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  count = var.create_alarms && local.single_queue ? 1 : 0

  alarm_name        = "${var.name}-dlq-not-empty"
  alarm_description = "kubetempura ${var.name}: events in the dead-letter queue ${local.dlq_name}. The applier gave up on them after ${var.max_receive_count} receives; inspect, fix the cause, then redrive them to ${local.queue_name}."

  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq[0].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  count = var.create_alarms ? 1 : 0

  alarm_name        = "${var.name}-webhook-errors"
  alarm_description = "kubetempura ${var.name}: the webhook function ${local.function_name} failed (crash, timeout or runtime error). See its log group /aws/lambda/${local.function_name}."

  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.webhook.function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "webhook_5xx" {
  count = var.create_alarms ? 1 : 0

  alarm_name        = "${var.name}-webhook-5xx"
  alarm_description = "kubetempura ${var.name}: the webhook answered 5xx (for example ${local.fanout_enabled ? "SNS" : "SQS"} refused the event); GitHub marks those deliveries failed. Redeliver them from the webhook's settings once fixed."

  namespace   = local.use_api_gateway ? "AWS/ApiGateway" : "AWS/Lambda"
  metric_name = local.use_api_gateway ? "5xx" : "Url5xxCount"
  dimensions = local.use_api_gateway ? {
    ApiId = aws_apigatewayv2_api.webhook[0].id
    Stage = "$default"
    } : {
    FunctionName = aws_lambda_function.webhook.function_name
  }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "queue_oldest_event" {
  count = var.create_alarms && local.single_queue ? 1 : 0

  alarm_name        = "${var.name}-queue-oldest-event"
  alarm_description = "kubetempura ${var.name}: the oldest event in ${local.queue_name} is older than ${var.queue_age_alarm_threshold_seconds} s. Is the applier running, and can it assume its role?"

  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.events[0].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.queue_age_alarm_threshold_seconds
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions

  tags = local.tags
}

# PR feedback (feedback_enabled), four more signals, one resource over a map:
#   feedback_dlq_not_empty      the notifier gave up on an environment state after
#                               feedback_max_receive_count attempts (GitHub App not installed on
#                               the repository, secret empty or wrong, GitHub down for long).
#   feedback_queue_oldest_event states wait too long: the notifier fails, is throttled or its
#                               event source mapping is disabled.
#   notifier_errors             the notifier crashed, timed out or failed a whole batch.
#   notifier_throttles          invocations were throttled (reserved concurrency or the
#                               account's limit): events wait and count receives.
locals {
  feedback_alarms = {
    feedback_dlq_not_empty = {
      name        = "${var.name}-feedback-dlq-not-empty"
      description = "kubetempura ${var.name}: environment states in the feedback dead-letter queue ${local.feedback_dlq_name}; the notifier gave up on them after ${var.feedback_max_receive_count} attempts. See /aws/lambda/${local.notifier_function_name}, fix the cause (App installed? secret set?), then redrive them to ${local.feedback_queue_name}."
      namespace   = "AWS/SQS"
      metric      = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = local.feedback_dlq_name }
      statistic   = "Maximum"
      threshold   = 0
    }
    feedback_queue_oldest_event = {
      name        = "${var.name}-feedback-queue-oldest-event"
      description = "kubetempura ${var.name}: the oldest environment state in ${local.feedback_queue_name} is older than ${var.feedback_queue_age_alarm_threshold_seconds} s; pull requests show stale states. Is the notifier failing or its event source mapping disabled?"
      namespace   = "AWS/SQS"
      metric      = "ApproximateAgeOfOldestMessage"
      dimensions  = { QueueName = local.feedback_queue_name }
      statistic   = "Maximum"
      threshold   = var.feedback_queue_age_alarm_threshold_seconds
    }
    notifier_errors = {
      name        = "${var.name}-notifier-errors"
      description = "kubetempura ${var.name}: the notifier function ${local.notifier_function_name} failed (crash, timeout or runtime error). See its log group /aws/lambda/${local.notifier_function_name}."
      namespace   = "AWS/Lambda"
      metric      = "Errors"
      dimensions  = { FunctionName = local.notifier_function_name }
      statistic   = "Sum"
      threshold   = 0
    }
    notifier_throttles = {
      name        = "${var.name}-notifier-throttles"
      description = "kubetempura ${var.name}: invocations of the notifier ${local.notifier_function_name} were throttled; its events wait and count receives towards the dead-letter queue. Check notifier_reserved_concurrency against notifier_maximum_concurrency and the account's concurrency."
      namespace   = "AWS/Lambda"
      metric      = "Throttles"
      dimensions  = { FunctionName = local.notifier_function_name }
      statistic   = "Sum"
      threshold   = 0
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "feedback" {
  for_each = var.create_alarms && var.feedback_enabled ? local.feedback_alarms : {}

  alarm_name        = each.value.name
  alarm_description = each.value.description

  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = each.value.statistic
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions

  tags = local.tags

  # The alarms name the queues and the function by name; created after them.
  depends_on = [aws_sqs_queue.feedback, aws_sqs_queue.feedback_dlq, aws_lambda_function.notifier]
}

# One webhook, many clusters (fanout.tf), with appliers:
#   <name>-applier-<applier>-dlq-not-empty, <name>-applier-<applier>-queue-oldest-event
#       as dlq_not_empty and queue_oldest_event above, for each applier whose create_alarms
#       (or the module's) is true; specified by modules/appliers.
#   topic_delivery_failed  SNS could not deliver an event to an applier's queue (the queue
#                          deleted, its policy or the KMS key policy refusing SNS): that
#                          applier never sees the event. Fix the cause, then redeliver the
#                          delivery from the webhook's settings on GitHub.
resource "aws_cloudwatch_metric_alarm" "applier" {
  for_each = module.appliers.alarms

  alarm_name        = each.value.name
  alarm_description = each.value.description

  namespace           = "AWS/SQS"
  metric_name         = each.value.metric
  dimensions          = { QueueName = each.value.queue_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions

  tags = local.tags

  # The alarms name the queues by name; created after them.
  depends_on = [aws_sqs_queue.applier, aws_sqs_queue.applier_dlq]
}

resource "aws_cloudwatch_metric_alarm" "topic_delivery_failed" {
  count = var.create_alarms && local.fanout_enabled ? 1 : 0

  alarm_name        = "${var.name}-topic-delivery-failed"
  alarm_description = "kubetempura ${var.name}: SNS could not deliver events from ${local.topic_name} to an applier's queue (queue policy, KMS key policy, queue deleted); those appliers never see them. Fix the cause, then redeliver the deliveries from the webhook's settings on GitHub."

  namespace           = "AWS/SNS"
  metric_name         = "NumberOfNotificationsFailed"
  dimensions          = { TopicName = aws_sns_topic.events[0].name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"

  alarm_actions = local.alarm_actions
  ok_actions    = local.alarm_actions

  tags = local.tags
}
