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

resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  count = var.create_alarms ? 1 : 0

  alarm_name        = "${var.name}-dlq-not-empty"
  alarm_description = "kubetempura ${var.name}: events in the dead-letter queue ${local.dlq_name}. The applier gave up on them after ${var.max_receive_count} receives; inspect, fix the cause, then redrive them to ${local.queue_name}."

  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq.name }
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
  alarm_description = "kubetempura ${var.name}: the webhook answered 5xx (for example SQS refused the event); GitHub marks those deliveries failed. Redeliver them from the webhook's settings once fixed."

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
  count = var.create_alarms ? 1 : 0

  alarm_name        = "${var.name}-queue-oldest-event"
  alarm_description = "kubetempura ${var.name}: the oldest event in ${local.queue_name} is older than ${var.queue_age_alarm_threshold_seconds} s. Is the applier running, and can it assume its role?"

  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.events.name }
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
