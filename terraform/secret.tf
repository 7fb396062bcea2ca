# The GitHub webhook secret, in Secrets Manager. The function receives only its ARN
# (WEBHOOK_SECRET_ARN) and reads the value with GetSecretValue when an execution environment
# starts; the value itself never appears in the function's configuration.
#
# The secret string may hold several comma-separated values: the function accepts a delivery
# signed with any of them. That is how the secret rotates without dropping deliveries (README,
# "Rotating the webhook secret"): store "new,old", switch GitHub to the new value, then store
# "new" alone. Values therefore never contain commas; the generated one is letters and digits.

resource "random_password" "webhook" {
  count = local.create_secret ? 1 : 0

  length  = var.webhook_secret_length
  special = false
}

resource "aws_secretsmanager_secret" "webhook" {
  #checkov:skip=CKV2_AWS_57:The value must change in GitHub's webhook settings at the same time, which a rotation Lambda cannot do; rotation is the documented two-step "new,old" procedure.
  count = local.create_secret ? 1 : 0

  name_prefix             = "${var.name}-webhook-"
  description             = "GitHub webhook secret(s) of kubetempura ${var.name}; several comma-separated values are all accepted (rotation)."
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.secret_recovery_window_days

  tags = local.tags
}

resource "aws_secretsmanager_secret_version" "webhook" {
  count = local.create_secret ? 1 : 0

  secret_id     = aws_secretsmanager_secret.webhook[0].id
  secret_string = join(",", concat([random_password.webhook[0].result], var.webhook_secret_previous_values))
}
