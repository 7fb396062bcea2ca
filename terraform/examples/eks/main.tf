# kubetempura on EKS with IRSA (IAM roles for service accounts).
#
# The cluster's IAM OIDC provider is looked up from the cluster; the module makes the applier
# role assumable only by system:serviceaccount:<namespace>:<service account> with audience
# sts.amazonaws.com. Annotate that service account with
#   eks.amazonaws.com/role-arn: <applier_role_arn output>
# and EKS injects AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE into the applier's pod. Add the
# `applier_feedback_run_flag` output to the applier's `kubetempura run` arguments.
#
# With EKS Pod Identity instead, replace applier_irsa_oidc_provider_arn with
#   applier_pod_identity_cluster_name = var.eks_cluster_name
# (the module then also creates the pod identity association; no annotation needed).

data "aws_eks_cluster" "this" {
  name = var.eks_cluster_name
}

data "aws_iam_openid_connect_provider" "this" {
  url = data.aws_eks_cluster.this.identity[0].oidc[0].issuer
}

module "kubetempura" {
  source = "../.."

  name = var.name

  applier_irsa_oidc_provider_arn = data.aws_iam_openid_connect_provider.this.arn
  applier_namespace              = var.applier_namespace
  applier_service_account        = var.applier_service_account

  alarm_sns_topic_arn = var.alarm_sns_topic_arn

  # PR feedback (on by default): the notifier shows each environment's state on its pull
  # request as a GitHub App. Build target/lambda/notifier/bootstrap.zip first
  # (`make lambda FUNCTION=notifier`), or set feedback_enabled = false.
  github_api_url = var.github_api_url

  tags = {
    cluster = "eks/${var.eks_cluster_name}"
  }
}
