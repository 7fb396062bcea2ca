# The notifier function: consumes the feedback queue (feedback.tf) through an event source
# mapping and shows each environment state on its pull request as a GitHub App (a deployment
# status and one comment per pull request). Built like the webhook, by
# `make lambda FUNCTION=notifier` (cargo lambda), which writes
# target/lambda/notifier/bootstrap.zip: a `bootstrap` executable for provided.al2023.
#
# Everything here exists only with var.feedback_enabled (count).

resource "aws_cloudwatch_log_group" "notifier" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 30), as for the webhook: operational logs; GitHub keeps the deployment statuses and comments themselves.
  count = var.feedback_enabled ? 1 : 0

  name              = "/aws/lambda/${local.notifier_function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn

  tags = local.tags
}

resource "aws_lambda_function" "notifier" {
  #checkov:skip=CKV_AWS_117:The function calls only public endpoints (SQS, Secrets Manager, the GitHub API); a VPC would add NAT or endpoints and cold-start cost without isolating anything.
  #checkov:skip=CKV_AWS_116:Invoked only by the SQS event source mapping (synchronously); a Lambda DLQ applies to asynchronous invocations. Failed events go to the feedback queue's own dead-letter queue (redrive_policy).
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile and AWS Signer in the build; the package is built from this repository by CI. Teams that sign can add a code_signing_config.
  #checkov:skip=CKV_AWS_173:The environment holds only the queue URL, the secret's ARN, the GitHub API URL and RUST_LOG, no secret; Lambda encrypts it at rest with an AWS managed key.
  #checkov:skip=CKV_AWS_50:X-Ray needs xray:PutTraceSegments on Resource "*", against this module's least-privilege rule; the function logs JSON and the alarms watch its metrics.
  #checkov:skip=CKV_AWS_115:Concurrency is capped by the event source mapping's maximum concurrency (notifier_maximum_concurrency, default 5), which does not throttle; reserved concurrency (notifier_reserved_concurrency) is optional.
  count = var.feedback_enabled ? 1 : 0

  function_name = local.notifier_function_name
  description   = "kubetempura ${var.name}: show review environments' states on their pull requests (GitHub App)."
  role          = aws_iam_role.notifier[0].arn

  runtime       = "provided.al2023"
  handler       = "bootstrap"
  architectures = [var.lambda_architecture]

  filename         = local.notifier_zip_path
  source_code_hash = filebase64sha256(local.notifier_zip_path)

  memory_size = var.notifier_memory_size
  timeout     = var.notifier_timeout
  # -1 = unreserved.
  reserved_concurrent_executions = var.notifier_reserved_concurrency == null ? -1 : var.notifier_reserved_concurrency

  environment {
    variables = local.notifier_environment
  }

  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.notifier[0].name
    application_log_level = var.log_level
    system_log_level      = "WARN"
  }

  tags = local.tags

  depends_on = [
    aws_cloudwatch_log_group.notifier,
    aws_iam_role_policy.notifier,
  ]
}

# Lambda polls the feedback queue and invokes the notifier with up to notifier_batch_size
# events of (FIFO) in-order message groups. The notifier answers with the events it could not
# show (ReportBatchItemFailures): only those return to the queue, with their group's later
# events behind them.
resource "aws_lambda_event_source_mapping" "notifier" {
  count = var.feedback_enabled ? 1 : 0

  event_source_arn        = aws_sqs_queue.feedback[0].arn
  function_name           = aws_lambda_function.notifier[0].arn
  batch_size              = var.notifier_batch_size
  function_response_types = ["ReportBatchItemFailures"]

  dynamic "scaling_config" {
    for_each = var.notifier_maximum_concurrency == null ? [] : [var.notifier_maximum_concurrency]
    content {
      maximum_concurrency = scaling_config.value
    }
  }

  tags = local.tags

  # Creating the mapping checks that the role may receive from the queue.
  depends_on = [aws_iam_role_policy.notifier]

  lifecycle {
    precondition {
      condition     = var.notifier_reserved_concurrency == null || var.notifier_maximum_concurrency == null || try(var.notifier_maximum_concurrency <= var.notifier_reserved_concurrency, false)
      error_message = "notifier_maximum_concurrency must not exceed notifier_reserved_concurrency: the event source would invoke more than may run, and the throttled events would count receives towards the dead-letter queue."
    }
  }
}

# ---------------------------------------------------------------------------------------------
# The notifier's role, least privilege:
#   the four consumer actions on the feedback queue only (the event source mapping uses the
#   function's role; ChangeMessageVisibility lets the notifier delay a retry after a GitHub
#   rate limit), GetSecretValue on the GitHub App secret only, its own log streams; KMS only
#   for customer managed keys, only via the service that uses the key.

resource "aws_iam_role" "notifier" {
  count = var.feedback_enabled ? 1 : 0

  name                 = local.notifier_function_name
  description          = "kubetempura ${var.name}: the notifier function (consume the feedback queue, read the GitHub App secret, write logs)."
  assume_role_policy   = data.aws_iam_policy_document.webhook_assume.json
  permissions_boundary = var.iam_permissions_boundary_arn

  tags = local.tags
}

data "aws_iam_policy_document" "notifier" {
  count = var.feedback_enabled ? 1 : 0

  statement {
    sid = "ConsumeFeedback"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
    ]
    resources = [aws_sqs_queue.feedback[0].arn]
  }

  statement {
    sid       = "ReadGitHubAppSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.github_app_secret_arn]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.notifier[0].arn}:*"]
  }

  # Receiving from a queue encrypted with a customer managed key decrypts its data key.
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "DecryptFeedbackViaSqs"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["sqs.${local.region}.${local.dns_suffix}"]
      }
    }
  }

  dynamic "statement" {
    for_each = local.github_app_secret_kms_key_arn == null ? [] : [local.github_app_secret_kms_key_arn]
    content {
      sid       = "DecryptGitHubAppSecretViaSecretsManager"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.${local.dns_suffix}"]
      }
    }
  }
}

resource "aws_iam_role_policy" "notifier" {
  count = var.feedback_enabled ? 1 : 0

  name   = "notifier"
  role   = aws_iam_role.notifier[0].id
  policy = data.aws_iam_policy_document.notifier[0].json
}
