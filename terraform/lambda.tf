# The webhook function: verify the GitHub signature, normalise, SendMessage to the FIFO queue
# (or, with appliers, Publish to the FIFO topic of fanout.tf).
# Built with `cargo lambda build --profile release-lambda --arm64 --output-format zip` (repository root), which
# writes target/lambda/webhook/bootstrap.zip: a `bootstrap` executable for provided.al2023.

resource "aws_cloudwatch_log_group" "webhook" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 30): these are operational logs holding no audit record (GitHub keeps each delivery's log); a year is the operator's choice, not a default.
  name              = "/aws/lambda/${local.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn

  tags = local.tags
}

resource "aws_lambda_function" "webhook" {
  #checkov:skip=CKV_AWS_117:The function calls only public AWS endpoints (SQS or SNS, Secrets Manager) and serves a public webhook; a VPC would add NAT or endpoints and cold-start cost without isolating anything.
  #checkov:skip=CKV_AWS_116:Invoked synchronously only (function URL / API Gateway); a Lambda DLQ applies to asynchronous invocations. Failed deliveries are retried from GitHub's side (the function answers 5xx).
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile and AWS Signer in the build; the package is built from this repository by CI. Teams that sign can add a code_signing_config.
  #checkov:skip=CKV_AWS_173:The environment holds only the queue URL (or topic ARN) and the secret's ARN, no secret; Lambda encrypts it at rest with an AWS managed key.
  #checkov:skip=CKV_AWS_50:X-Ray needs xray:PutTraceSegments on Resource "*", against this module's least-privilege rule; the function logs JSON and the alarms watch its metrics.
  function_name = local.function_name
  description   = "kubetempura ${var.name}: verify GitHub pull-request webhooks and ${local.fanout_enabled ? "publish them to SNS" : "enqueue them on SQS"}."
  role          = aws_iam_role.webhook.arn

  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [var.lambda_architecture]

  filename         = local.lambda_zip_path
  source_code_hash = filebase64sha256(local.lambda_zip_path)

  memory_size = var.lambda_memory_size
  timeout     = var.lambda_timeout
  # -1 = unreserved.
  reserved_concurrent_executions = var.lambda_reserved_concurrency == null ? -1 : var.lambda_reserved_concurrency

  environment {
    variables = local.function_environment
  }

  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.webhook.name
    application_log_level = var.log_level
    system_log_level      = "WARN"
  }

  tags = local.tags

  # The log group and the role's permissions must exist before the first invocation, and the
  # secret must have a value before the function reads it. With appliers, every subscription
  # (and so its queue's policy) must exist before the function publishes: SNS delivers an event
  # only to the subscriptions it has at that moment.
  depends_on = [
    aws_cloudwatch_log_group.webhook,
    aws_iam_role_policy.webhook,
    aws_secretsmanager_secret_version.webhook,
    aws_sns_topic_subscription.applier,
  ]
}

# ---------------------------------------------------------------------------------------------
# Function URL (endpoint_type = "function_url", the default)

resource "aws_lambda_function_url" "webhook" {
  #checkov:skip=CKV_AWS_258:GitHub cannot sign requests with SigV4; it signs every delivery with the webhook secret (X-Hub-Signature-256) and the handler verifies that HMAC before doing anything, answering 401 otherwise.
  count = local.use_api_gateway ? 0 : 1

  function_name      = aws_lambda_function.webhook.function_name
  authorization_type = "NONE"
  invoke_mode        = "BUFFERED"
}

# Since October 2025 a public function URL needs both statements below: lambda:InvokeFunctionUrl
# for auth type NONE, and lambda:InvokeFunction limited to invocations through the URL. The AWS
# provider (>= 6.28) also adds them, outside the state, when it creates a URL of auth type NONE;
# declaring them here keeps them in the state (drift is repaired) and reviewable. The statement
# ids differ from the provider's so the two never collide.
resource "aws_lambda_permission" "function_url_public" {
  #checkov:skip=CKV_AWS_301:The webhook is public by design (GitHub calls it from the internet); this grant is limited to function-URL calls of auth type NONE and every request is HMAC-verified by the handler.
  count = local.use_api_gateway ? 0 : 1

  statement_id           = "KubetempuraPublicFunctionUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.webhook.function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

resource "aws_lambda_permission" "function_url_invoke" {
  #checkov:skip=CKV_AWS_301:lambda:InvokeFunction is granted only for invocations through the function URL (invoked_via_function_url), which AWS requires since October 2025; the Invoke API stays private.
  count = local.use_api_gateway ? 0 : 1

  statement_id             = "KubetempuraInvokeViaFunctionUrl"
  action                   = "lambda:InvokeFunction"
  function_name            = aws_lambda_function.webhook.function_name
  principal                = "*"
  invoked_via_function_url = true
}
