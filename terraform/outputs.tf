output "webhook_url" {
  description = "URL to enter as the GitHub webhook's Payload URL (content type application/json; events \"Pull requests\", and \"Check runs\", \"Check suites\", \"Workflow runs\" and \"Statuses\" for build-gated ReviewApps): the function URL, or the API Gateway endpoint with endpoint_type = api_gateway."
  value       = local.use_api_gateway ? "${aws_apigatewayv2_api.webhook[0].api_endpoint}/" : aws_lambda_function_url.webhook[0].function_url
}

output "function_name" {
  description = "Name of the webhook Lambda function."
  value       = aws_lambda_function.webhook.function_name
}

output "function_arn" {
  description = "ARN of the webhook Lambda function."
  value       = aws_lambda_function.webhook.arn
}

output "function_log_group_name" {
  description = "CloudWatch log group of the webhook function."
  value       = aws_cloudwatch_log_group.webhook.name
}

output "api_gateway_id" {
  description = "ID of the API Gateway HTTP API (to map a custom domain onto), or null with endpoint_type = function_url."
  value       = local.use_api_gateway ? aws_apigatewayv2_api.webhook[0].id : null
}

output "queue_url" {
  description = "URL of the single SQS FIFO event queue: the applier's queue setting (--queue-url). Null with appliers (see the appliers output), unless keep_single_queue keeps it for draining."
  value       = local.single_queue ? aws_sqs_queue.events[0].url : null
}

output "queue_arn" {
  description = "ARN of the single SQS FIFO event queue, or null when it does not exist (see queue_url)."
  value       = local.single_queue ? aws_sqs_queue.events[0].arn : null
}

output "dlq_url" {
  description = "URL of the single queue's FIFO dead-letter queue (inspect and redrive failed events from here), or null when it does not exist (see queue_url)."
  value       = local.single_queue ? aws_sqs_queue.dlq[0].url : null
}

output "dlq_arn" {
  description = "ARN of the single queue's FIFO dead-letter queue, or null when it does not exist (see queue_url)."
  value       = local.single_queue ? aws_sqs_queue.dlq[0].arn : null
}

output "applier_role_arn" {
  description = "ARN of the applier's IAM role (annotate the service account with it for IRSA, or set AWS_ROLE_ARN for web identity), or null when no trust option is set."
  value       = local.create_applier_role ? aws_iam_role.applier[0].arn : null
}

output "applier_oidc_provider_arn" {
  description = "ARN of the IAM OIDC provider the applier role trusts for web identity federation (created or derived), or null when applier_oidc_issuer_url is not set."
  value       = local.applier_oidc_provider_arn
}

output "applier_region" {
  description = "AWS region of the queue, for the applier's AWS_REGION."
  value       = local.region
}

output "webhook_secret_arn" {
  description = "ARN of the Secrets Manager secret holding the webhook secret(s) (the function's WEBHOOK_SECRET_ARN)."
  value       = local.secret_arn
}

output "webhook_secret" {
  description = "The generated webhook secret, to paste into the GitHub webhook's Secret field (`terraform output -raw webhook_secret`). Null when webhook_secret_arn was given."
  value       = local.create_secret ? random_password.webhook[0].result : null
  sensitive   = true
}

output "applier_access_key_id" {
  description = "DISCOURAGED fallback: access key ID of the applier IAM user, only with create_applier_user = true (else null)."
  value       = var.create_applier_user ? aws_iam_access_key.applier[0].id : null
  sensitive   = true
}

output "applier_secret_access_key" {
  description = "DISCOURAGED fallback: secret access key of the applier IAM user, only with create_applier_user = true (else null). Store it in a Kubernetes Secret and rotate it by hand."
  value       = var.create_applier_user ? aws_iam_access_key.applier[0].secret : null
  sensitive   = true
}

# ---------------------------------------------------------------------------------------------
# PR feedback (null with feedback_enabled = false)

output "feedback_queue_url" {
  description = "URL of the SQS FIFO feedback queue the applier sends environment states to (its --feedback-queue-url), or null with feedback_enabled = false."
  value       = var.feedback_enabled ? aws_sqs_queue.feedback[0].url : null
}

output "feedback_queue_arn" {
  description = "ARN of the SQS FIFO feedback queue, or null with feedback_enabled = false."
  value       = var.feedback_enabled ? aws_sqs_queue.feedback[0].arn : null
}

output "feedback_dlq_url" {
  description = "URL of the feedback queue's FIFO dead-letter queue (inspect and redrive states the notifier gave up on), or null with feedback_enabled = false."
  value       = var.feedback_enabled ? aws_sqs_queue.feedback_dlq[0].url : null
}

output "feedback_dlq_arn" {
  description = "ARN of the feedback queue's FIFO dead-letter queue, or null with feedback_enabled = false."
  value       = var.feedback_enabled ? aws_sqs_queue.feedback_dlq[0].arn : null
}

output "notifier_function_name" {
  description = "Name of the notifier Lambda function, or null with feedback_enabled = false."
  value       = var.feedback_enabled ? aws_lambda_function.notifier[0].function_name : null
}

output "notifier_function_arn" {
  description = "ARN of the notifier Lambda function, or null with feedback_enabled = false."
  value       = var.feedback_enabled ? aws_lambda_function.notifier[0].arn : null
}

output "notifier_log_group_name" {
  description = "CloudWatch log group of the notifier function, or null with feedback_enabled = false."
  value       = var.feedback_enabled ? aws_cloudwatch_log_group.notifier[0].name : null
}

output "github_app_secret_arn" {
  description = "ARN of the Secrets Manager secret for the GitHub App's credentials (the notifier's GITHUB_APP_SECRET_ARN): put {\"appId\": ..., \"privateKey\": ...} into it with `aws secretsmanager put-secret-value --secret-id <this>`. Null with feedback_enabled = false."
  value       = var.feedback_enabled ? local.github_app_secret_arn : null
}

output "applier_feedback_run_flag" {
  description = "The argument to add to the applier's `kubetempura run` so it sends environment states to the feedback queue: `--feedback-queue-url=<feedback_queue_url>`. Null with feedback_enabled = false (run without it)."
  value       = var.feedback_enabled ? "--feedback-queue-url=${aws_sqs_queue.feedback[0].url}" : null
}

# ---------------------------------------------------------------------------------------------
# One webhook, many clusters (empty or null without appliers)

output "topic_arn" {
  description = "ARN of the SNS FIFO topic the function publishes to (its TOPIC_ARN), or null without appliers."
  value       = local.fanout_enabled ? aws_sns_topic.events[0].arn : null
}

output "appliers" {
  description = "Per applier (empty without appliers): queue_url, queue_arn, dlq_url, dlq_arn, policy_arn (the managed policy to attach to the role of the cluster that runs it), role_arn (the module's applier role for the applier with use_module_identity, else null), filter_policy (null: every event), run_args (the `kubetempura run` arguments: --queue-url, and --feedback-queue-url with feedback_enabled) and env (the same as environment variables, QUEUE_URL and FEEDBACK_QUEUE_URL, plus AWS_REGION)."
  value = {
    for k, a in local.appliers : k => {
      queue_url     = aws_sqs_queue.applier[k].url
      queue_arn     = aws_sqs_queue.applier[k].arn
      dlq_url       = aws_sqs_queue.applier_dlq[k].url
      dlq_arn       = aws_sqs_queue.applier_dlq[k].arn
      policy_arn    = aws_iam_policy.applier[k].arn
      role_arn      = a.use_module_identity && local.create_applier_role ? aws_iam_role.applier[0].arn : null
      filter_policy = a.filter_policy
      run_args = concat(
        ["--queue-url=${aws_sqs_queue.applier[k].url}"],
        var.feedback_enabled ? ["--feedback-queue-url=${aws_sqs_queue.feedback[0].url}"] : [],
      )
      env = merge(
        { QUEUE_URL = aws_sqs_queue.applier[k].url, AWS_REGION = local.region },
        var.feedback_enabled ? { FEEDBACK_QUEUE_URL = aws_sqs_queue.feedback[0].url } : {},
      )
    }
  }
}
