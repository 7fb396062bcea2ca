data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  tags = merge({ app = "kubetempura" }, var.tags)
  # The single queue's applier tag, as each applier's queues carry theirs (modules/appliers): the
  # applier reads it (ListQueueTags) to tell a dedicated queue from a shared one.
  single_queue_tags = merge(local.tags, { "kubetempura:applier" = "default" })

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  dns_suffix = data.aws_partition.current.dns_suffix
  region     = data.aws_region.current.region

  # FIFO queue names must end in ".fifo"; the variable takes the base name.
  queue_base_name = coalesce(var.queue_name, "${var.name}-events")
  queue_name      = "${local.queue_base_name}.fifo"
  dlq_name        = "${local.queue_base_name}-dlq.fifo"

  function_name = "${var.name}-webhook"
  # Where `cargo lambda build --profile release-lambda --arm64 --output-format zip` (run at the repository root)
  # writes the package. A variable default cannot use path.module, hence the null default.
  lambda_zip_path = coalesce(var.lambda_zip_path, "${path.module}/../target/lambda/webhook/bootstrap.zip")

  use_api_gateway = var.endpoint_type == "api_gateway"

  # The webhook secret: generated here, or an existing one given by ARN.
  create_secret      = var.webhook_secret_arn == null
  secret_arn         = local.create_secret ? aws_secretsmanager_secret.webhook[0].arn : var.webhook_secret_arn
  secret_kms_key_arn = local.create_secret ? var.kms_key_arn : var.webhook_secret_kms_key_arn

  # One webhook, many clusters (fanout.tf). With appliers the function publishes to the topic;
  # the single queue exists only without them, or while keep_single_queue lets the old applier
  # drain it.
  fanout_enabled = length(var.appliers) > 0
  single_queue   = !local.fanout_enabled || var.keep_single_queue

  # The function's environment. These names are read by functions/webhook/src/config.rs
  # (ENV_VARS); tests/test_structure.py fails if either side renames one. WEBHOOK_SECRET (the
  # plaintext secret, for local runs) is deliberately absent: the function gets the ARN only.
  # Exactly one of QUEUE_URL and TOPIC_ARN is set: the function never writes to both.
  function_environment_required = {
    WEBHOOK_SECRET_ARN = local.secret_arn
  }
  function_environment_optional = {
    QUEUE_URL      = local.fanout_enabled ? null : aws_sqs_queue.events[0].url
    TOPIC_ARN      = local.fanout_enabled ? aws_sns_topic.events[0].arn : null
    MAX_BODY_BYTES = var.max_body_bytes == null ? null : tostring(var.max_body_bytes)
  }
  function_environment = merge(
    local.function_environment_required,
    { for k, v in local.function_environment_optional : k => v if v != null },
  )

  # The applier's trust options.
  applier_k8s_subject  = "system:serviceaccount:${var.applier_namespace}:${var.applier_service_account}"
  applier_irsa_enabled = var.applier_irsa_oidc_provider_arn != null
  # IAM condition keys of an OIDC provider are "<issuer host and path>:<claim>".
  applier_irsa_issuer          = local.applier_irsa_enabled ? split("oidc-provider/", var.applier_irsa_oidc_provider_arn)[1] : null
  applier_pod_identity_enabled = var.applier_pod_identity_cluster_name != null
  applier_oidc_enabled         = var.applier_oidc_issuer_url != null
  applier_oidc_issuer          = local.applier_oidc_enabled ? trimprefix(var.applier_oidc_issuer_url, "https://") : null
  applier_oidc_provider_arn = !local.applier_oidc_enabled ? null : (
    var.applier_oidc_create_provider
    ? aws_iam_openid_connect_provider.applier[0].arn
    : "arn:${local.partition}:iam::${local.account_id}:oidc-provider/${local.applier_oidc_issuer}"
  )
  applier_oidc_subject = coalesce(var.applier_oidc_subject, local.applier_k8s_subject)
  create_applier_role  = local.applier_irsa_enabled || local.applier_pod_identity_enabled || local.applier_oidc_enabled

  # PR feedback (feedback.tf, notifier.tf). Every resource of it has count or for_each gated by
  # var.feedback_enabled; these locals are null when it is off.
  feedback_queue_base_name = coalesce(var.feedback_queue_name, "${var.name}-feedback")
  feedback_queue_name      = "${local.feedback_queue_base_name}.fifo"
  feedback_dlq_name        = "${local.feedback_queue_base_name}-dlq.fifo"
  # AWS: a Lambda event source queue's visibility timeout should be at least six times the
  # function's timeout, so Lambda can retry a throttled batch before the messages reappear.
  feedback_visibility_timeout_seconds = coalesce(var.feedback_visibility_timeout_seconds, 6 * var.notifier_timeout)

  notifier_function_name = "${var.name}-notifier"
  notifier_zip_path      = coalesce(var.notifier_zip_path, "${path.module}/../target/lambda/notifier/bootstrap.zip")

  # The GitHub App's credentials: an empty secret created here (its value is put by hand, never
  # by Terraform), or an existing one given by ARN.
  create_github_app_secret = var.feedback_enabled && var.github_app_secret_arn == null
  github_app_secret_arn = !var.feedback_enabled ? null : (
    local.create_github_app_secret ? aws_secretsmanager_secret.github_app[0].arn : var.github_app_secret_arn
  )
  github_app_secret_kms_key_arn = !var.feedback_enabled ? null : (
    local.create_github_app_secret ? var.kms_key_arn : var.github_app_secret_kms_key_arn
  )

  # The notifier's environment. These names are read by functions/notifier/src/config.rs
  # (its ENV_* constants); tests/test_structure.py fails if either side renames one. The log
  # format is not here: logging_config (JSON) makes Lambda set AWS_LAMBDA_LOG_FORMAT and
  # AWS_LAMBDA_LOG_LEVEL itself, as for the webhook.
  notifier_environment = {
    GITHUB_APP_SECRET_ARN = local.github_app_secret_arn
    FEEDBACK_QUEUE_URL    = var.feedback_enabled ? aws_sqs_queue.feedback[0].url : null
    GITHUB_API_URL        = var.github_api_url
    RUST_LOG              = var.notifier_rust_log
  }

  # Alarm notifications: none when no topic is given (the alarms still exist and show state).
  alarm_actions = var.alarm_sns_topic_arn == null ? [] : [var.alarm_sns_topic_arn]
}

# With appliers (and no single queue) an applier may well get its identity elsewhere (a role of
# its cluster's own, with the appliers output's policy_arn attached): nothing to warn about.
check "applier_has_an_identity" {
  assert {
    condition     = !local.single_queue || local.create_applier_role || var.create_applier_user
    error_message = "No applier identity is configured: set applier_irsa_oidc_provider_arn, applier_pod_identity_cluster_name or applier_oidc_issuer_url (or, discouraged, create_applier_user) so the in-cluster applier can read the queue."
  }
}
