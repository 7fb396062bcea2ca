# IAM, least privilege.
#   function: sqs:SendMessage on the single event queue, or with appliers sns:Publish on the
#             topic (never both); secretsmanager:GetSecretValue on the webhook secret, its own
#             log streams; KMS only for customer managed keys, only via the service that uses
#             the key.
#   applier:  one policy document per queue it may consume (the single queue, and each
#             applier's own queue with appliers), naming that queue and nothing of another's:
#             the four consumer actions and its tags on the queue (+ kms:Decrypt via SQS with a
#             customer managed key), and reading the dead-letter queue's attributes (its
#             message retention, checked at start against the tombstone retention). It never
#             receives from, deletes from or redrives the dead-letter queue: redriving is an
#             operator's action. With feedback_enabled, also sqs:SendMessage on the feedback
#             queue (and kms:GenerateDataKey via SQS with a customer managed key).
#             The single queue's document goes to the module's role and user (inline), each
#             applier's into a managed policy (its cluster's role attaches it) and, for the one
#             applier with use_module_identity, inline to the module's role and user too.
#   notifier: in notifier.tf.
# Every resource is named by ARN; the only wildcard is the log-stream part of the function's
# own log group ARN.

# ---------------------------------------------------------------------------------------------
# The function's role

data "aws_iam_policy_document" "webhook_assume" {
  statement {
    sid     = "LambdaAssumesRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "webhook" {
  name                 = local.function_name
  description          = "kubetempura ${var.name}: the webhook function (enqueue events, read the webhook secret, write logs)."
  assume_role_policy   = data.aws_iam_policy_document.webhook_assume.json
  permissions_boundary = var.iam_permissions_boundary_arn

  tags = local.tags
}

data "aws_iam_policy_document" "webhook" {
  dynamic "statement" {
    for_each = local.fanout_enabled ? [] : [aws_sqs_queue.events[0].arn]
    content {
      sid       = "SendEvents"
      actions   = ["sqs:SendMessage"]
      resources = [statement.value]
    }
  }

  # With appliers (fanout.tf): the topic instead of the queue.
  dynamic "statement" {
    for_each = local.fanout_enabled ? [aws_sns_topic.events[0].arn] : []
    content {
      sid       = "PublishEvents"
      actions   = ["sns:Publish"]
      resources = [statement.value]
    }
  }

  statement {
    sid       = "ReadWebhookSecret"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [local.secret_arn]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.webhook.arn}:*"]
  }

  # SendMessage to a queue encrypted with a customer managed key needs a data key; so does
  # Publish to a topic encrypted with one (with appliers).
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : (local.fanout_enabled ? [] : [var.kms_key_arn])
    content {
      sid       = "EncryptEventsViaSqs"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["sqs.${local.region}.${local.dns_suffix}"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : (local.fanout_enabled ? [var.kms_key_arn] : [])
    content {
      sid       = "EncryptEventsViaSns"
      actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["sns.${local.region}.${local.dns_suffix}"]
      }
    }
  }

  dynamic "statement" {
    for_each = local.secret_kms_key_arn == null ? [] : [local.secret_kms_key_arn]
    content {
      sid       = "DecryptSecretViaSecretsManager"
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

resource "aws_iam_role_policy" "webhook" {
  name   = "webhook"
  role   = aws_iam_role.webhook.id
  policy = data.aws_iam_policy_document.webhook.json
}

# ---------------------------------------------------------------------------------------------
# The applier's permissions: one document per queue an applier may consume. Key
# local.single_queue_key is the single queue (for the module's role and the discouraged IAM
# user); every other key is an applier of var.appliers and names that applier's queues only.

locals {
  # Not a valid applier name (those have no '_'), so it cannot collide with one.
  single_queue_key = "_single"

  applier_consumers = merge(
    local.single_queue ? {
      (local.single_queue_key) = { queue_arn = aws_sqs_queue.events[0].arn, dlq_arn = aws_sqs_queue.dlq[0].arn }
    } : {},
    { for k, _ in local.appliers : k => { queue_arn = aws_sqs_queue.applier[k].arn, dlq_arn = aws_sqs_queue.applier_dlq[k].arn } },
  )
}

data "aws_iam_policy_document" "applier" {
  for_each = local.applier_consumers

  statement {
    sid = "ConsumeEvents"
    actions = [
      "sqs:ReceiveMessage",
      "sqs:DeleteMessage",
      "sqs:ChangeMessageVisibility",
      "sqs:GetQueueAttributes",
    ]
    resources = [each.value.queue_arn]
  }

  # The queue's kubetempura:* tags tell the applier whether its queue is its own (an applier's,
  # `kubetempura:fanout`) and whose; it warns when a queue looks shared.
  statement {
    sid       = "ReadQueueTags"
    actions   = ["sqs:ListQueueTags"]
    resources = [each.value.queue_arn]
  }

  # At start the applier finds the dead-letter queue from the redrive policy (GetQueueUrl by
  # the name in its ARN) and reads its MessageRetentionPeriod.
  statement {
    sid = "ReadDeadLetterQueueRetention"
    actions = [
      "sqs:GetQueueUrl",
      "sqs:GetQueueAttributes",
    ]
    resources = [each.value.dlq_arn]
  }

  # PR feedback (feedback.tf): the applier only sends environment states to the feedback
  # queue; the notifier function consumes it.
  dynamic "statement" {
    for_each = var.feedback_enabled ? [aws_sqs_queue.feedback[0].arn] : []
    content {
      sid       = "SendFeedback"
      actions   = ["sqs:SendMessage"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [var.kms_key_arn]
    content {
      sid       = "DecryptEventsViaSqs"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["sqs.${local.region}.${local.dns_suffix}"]
      }
    }
  }

  # With feedback and a customer managed key: the data key a producer needs to send to a queue
  # under that key (kms:Decrypt above covers the rest).
  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : (var.feedback_enabled ? [var.kms_key_arn] : [])
    content {
      sid       = "EncryptFeedbackViaSqs"
      actions   = ["kms:GenerateDataKey"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["sqs.${local.region}.${local.dns_suffix}"]
      }
    }
  }
}

# ---------------------------------------------------------------------------------------------
# The applier's role and who may assume it

# Any other cluster (GKE, ...): its service-account token issuer, registered with IAM.
resource "aws_iam_openid_connect_provider" "applier" {
  count = local.applier_oidc_enabled && var.applier_oidc_create_provider ? 1 : 0

  url            = var.applier_oidc_issuer_url
  client_id_list = [var.applier_oidc_audience]
  # Null (not []) when none are given: IAM then computes them, and an empty list would show a
  # difference on every plan.
  thumbprint_list = length(var.applier_oidc_thumbprints) > 0 ? var.applier_oidc_thumbprints : null

  tags = local.tags
}

data "aws_iam_policy_document" "applier_assume" {
  # EKS IRSA: the cluster's OIDC provider, one service account, audience sts.amazonaws.com.
  dynamic "statement" {
    for_each = local.applier_irsa_enabled ? [var.applier_irsa_oidc_provider_arn] : []
    content {
      sid     = "EksIrsa"
      actions = ["sts:AssumeRoleWithWebIdentity"]

      principals {
        type        = "Federated"
        identifiers = [statement.value]
      }

      condition {
        test     = "StringEquals"
        variable = "${local.applier_irsa_issuer}:sub"
        values   = [local.applier_k8s_subject]
      }

      condition {
        test     = "StringEquals"
        variable = "${local.applier_irsa_issuer}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }

  # EKS Pod Identity: the EKS Auth service assumes the role and tags the session with the
  # cluster, namespace and service account, which the conditions pin.
  dynamic "statement" {
    for_each = local.applier_pod_identity_enabled ? [var.applier_pod_identity_cluster_name] : []
    content {
      sid     = "EksPodIdentity"
      actions = ["sts:AssumeRole", "sts:TagSession"]

      principals {
        type        = "Service"
        identifiers = ["pods.eks.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:RequestTag/eks-cluster-name"
        values   = [statement.value]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:RequestTag/kubernetes-namespace"
        values   = [var.applier_namespace]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:RequestTag/kubernetes-service-account"
        values   = [var.applier_service_account]
      }
    }
  }

  # Web identity federation with any other OIDC issuer (GKE and other clusters).
  dynamic "statement" {
    for_each = local.applier_oidc_enabled ? [local.applier_oidc_provider_arn] : []
    content {
      sid     = "OidcWebIdentity"
      actions = ["sts:AssumeRoleWithWebIdentity"]

      principals {
        type        = "Federated"
        identifiers = [statement.value]
      }

      condition {
        test     = "StringEquals"
        variable = "${local.applier_oidc_issuer}:sub"
        values   = [local.applier_oidc_subject]
      }

      condition {
        test     = "StringEquals"
        variable = "${local.applier_oidc_issuer}:aud"
        values   = [var.applier_oidc_audience]
      }
    }
  }
}

resource "aws_iam_role" "applier" {
  count = local.create_applier_role ? 1 : 0

  name                 = "${var.name}-applier"
  description          = "kubetempura ${var.name}: the in-cluster applier (consume the event queue)."
  assume_role_policy   = data.aws_iam_policy_document.applier_assume.json
  permissions_boundary = var.iam_permissions_boundary_arn

  tags = local.tags

  lifecycle {
    precondition {
      condition     = local.single_queue || local.module_identity_applier != null
      error_message = "The module's applier role would have no queue to read: with appliers (and keep_single_queue false) set use_module_identity = true on the applier whose cluster uses this role, or remove the applier_* trust options and give each cluster a role of its own (attach the appliers output's policy_arn)."
    }
  }
}

# The single queue.
resource "aws_iam_role_policy" "applier" {
  count = local.create_applier_role && local.single_queue ? 1 : 0

  name   = "consume-events"
  role   = aws_iam_role.applier[0].id
  policy = data.aws_iam_policy_document.applier[local.single_queue_key].json
}

# The applier with use_module_identity (its managed policy's document, inline like the above).
resource "aws_iam_role_policy" "applier_fanout" {
  count = local.create_applier_role && local.module_identity_applier != null ? 1 : 0

  name   = "consume-events-${local.module_identity_applier}"
  role   = aws_iam_role.applier[0].id
  policy = data.aws_iam_policy_document.applier[local.module_identity_applier].json
}

resource "aws_eks_pod_identity_association" "applier" {
  count = local.applier_pod_identity_enabled && var.applier_pod_identity_create_association ? 1 : 0

  cluster_name    = var.applier_pod_identity_cluster_name
  namespace       = var.applier_namespace
  service_account = var.applier_service_account
  role_arn        = aws_iam_role.applier[0].arn

  tags = local.tags
}

# ---------------------------------------------------------------------------------------------
# DISCOURAGED, off by default: an IAM user with a long-lived access key, for a cluster that can
# federate no identity. Prefer any option above.

resource "aws_iam_user" "applier" {
  count = var.create_applier_user ? 1 : 0

  name                 = "${var.name}-applier"
  permissions_boundary = var.iam_permissions_boundary_arn

  tags = local.tags

  lifecycle {
    precondition {
      condition     = local.single_queue || local.module_identity_applier != null
      error_message = "The applier IAM user would have no queue to read: with appliers (and keep_single_queue false) set use_module_identity = true on the applier that uses it, or set create_applier_user = false."
    }
  }
}

resource "aws_iam_user_policy" "applier" {
  #checkov:skip=CKV_AWS_40:The discouraged IAM user (create_applier_user, off by default) exists for a cluster that can federate no identity; it needs the applier's permissions like the role, and a group around one user would add nothing.
  count = var.create_applier_user && local.single_queue ? 1 : 0

  name   = "consume-events"
  user   = aws_iam_user.applier[0].name
  policy = data.aws_iam_policy_document.applier[local.single_queue_key].json
}

resource "aws_iam_user_policy" "applier_fanout" {
  #checkov:skip=CKV_AWS_40:The discouraged IAM user (create_applier_user, off by default) exists for a cluster that can federate no identity; it needs the applier's permissions like the role, and a group around one user would add nothing.
  count = var.create_applier_user && local.module_identity_applier != null ? 1 : 0

  name   = "consume-events-${local.module_identity_applier}"
  user   = aws_iam_user.applier[0].name
  policy = data.aws_iam_policy_document.applier[local.module_identity_applier].json
}

resource "aws_iam_access_key" "applier" {
  count = var.create_applier_user ? 1 : 0

  user = aws_iam_user.applier[0].name
}

# ---------------------------------------------------------------------------------------------
# Each applier's permissions as a managed policy, for the role of the cluster that runs it
# (attach the appliers output's policy_arn). It names that applier's queues only.

resource "aws_iam_policy" "applier" {
  for_each = local.appliers

  name        = "${var.name}-applier-${each.key}"
  description = "kubetempura ${var.name}: applier ${each.key} consumes its queue ${each.value.queue_name} (and nothing of another applier's)."
  policy      = data.aws_iam_policy_document.applier[each.key].json

  tags = each.value.tags

  lifecycle {
    precondition {
      condition     = !each.value.use_module_identity || local.create_applier_role || var.create_applier_user
      error_message = "Applier ${each.key} sets use_module_identity, but the module creates no applier identity: set applier_irsa_oidc_provider_arn, applier_pod_identity_cluster_name or applier_oidc_issuer_url (or create_applier_user), or drop use_module_identity and attach this policy to the cluster's own role."
    }
  }
}
