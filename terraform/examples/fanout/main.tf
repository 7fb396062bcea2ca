# kubetempura for several clusters: one webhook, an SNS FIFO topic, a queue per applier.
#
#   eks  an EKS cluster in this account. Its applier uses the module's own applier role (IRSA,
#        use_module_identity), as in examples/eks, and serves the repositories listed in
#        eks_repositories plus every repository of github_owner whose name starts with "web-".
#   gke  a GKE cluster. Its applier uses a role of its own, defined below (web identity from the
#        cluster's issuer), with the gke applier's policy attached; it serves every repository
#        of the owners in gke_owners.
#
# An event no filter matches reaches no cluster. Each applier runs `kubetempura run` with the
# `run_args` of its entry in the `appliers` output (its own --queue-url, and the shared
# --feedback-queue-url). To add a cluster, add an entry to `appliers` and give its applier an
# identity: a role of its own with the entry's policy_arn attached, like the gke one here.

data "aws_eks_cluster" "this" {
  name = var.eks_cluster_name
}

data "aws_iam_openid_connect_provider" "eks" {
  url = data.aws_eks_cluster.this.identity[0].oidc[0].issuer
}

module "kubetempura" {
  source = "../.."

  name = var.name

  # The module's applier role: trusted by the EKS cluster's applier service account.
  applier_irsa_oidc_provider_arn = data.aws_iam_openid_connect_provider.eks.arn
  applier_namespace              = var.applier_namespace
  applier_service_account        = var.applier_service_account

  appliers = {
    eks = {
      repositories        = var.eks_repositories
      repository_prefixes = ["${var.github_owner}/web-"]
      use_module_identity = true
    }
    gke = {
      owners = var.gke_owners
      # A cluster further away: give its applier more time before the age alarm fires.
      queue_age_alarm_threshold_seconds = 1800
    }
  }

  alarm_sns_topic_arn = var.alarm_sns_topic_arn
  github_api_url      = var.github_api_url
}

# ---------------------------------------------------------------------------------------------
# The gke applier's identity: web identity federation with the GKE cluster's issuer (see
# examples/gke for the pod side), and the gke applier's policy, nothing else.

locals {
  gke_issuer = "container.googleapis.com/v1/projects/${var.gcp_project}/locations/${var.gke_location}/clusters/${var.gke_cluster}"
}

resource "aws_iam_openid_connect_provider" "gke" {
  url            = "https://${local.gke_issuer}"
  client_id_list = ["sts.amazonaws.com"]
}

data "aws_iam_policy_document" "gke_assume" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.gke.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.gke_issuer}:sub"
      values   = ["system:serviceaccount:${var.applier_namespace}:${var.applier_service_account}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.gke_issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "gke_applier" {
  name               = "${var.name}-applier-gke"
  description        = "kubetempura ${var.name}: the applier of the GKE cluster ${var.gke_cluster} (its own queue only)."
  assume_role_policy = data.aws_iam_policy_document.gke_assume.json
}

resource "aws_iam_role_policy_attachment" "gke_applier" {
  role       = aws_iam_role.gke_applier.name
  policy_arn = module.kubetempura.appliers["gke"].policy_arn
}
