# kubetempura on GKE: the applier authenticates to AWS with web identity federation.
#
# A GKE cluster is an OIDC issuer for its own service-account tokens; its discovery document and
# keys are public at <issuer>/.well-known/openid-configuration. The module registers the issuer
# as an IAM OIDC provider and lets the applier's service account (and only it) assume the
# applier role with a projected token whose audience is sts.amazonaws.com. No Google service
# account, no long-lived AWS key.
#
# On the cluster side the applier's pod needs (the AWS SDK picks them up by itself):
#   - a projected serviceAccountToken volume, audience "sts.amazonaws.com", mounted for
#     example at /var/run/secrets/aws/token;
#   - AWS_ROLE_ARN = the `applier_role_arn` output, AWS_WEB_IDENTITY_TOKEN_FILE = that path,
#     AWS_REGION = the `aws_region` output;
#   - the queue URL (`queue_url` output) in the applier's own setting, and the
#     `applier_feedback_run_flag` output among its `kubetempura run` arguments.

module "kubetempura" {
  source = "../.."

  name = var.name

  applier_oidc_issuer_url = "https://container.googleapis.com/v1/projects/${var.gcp_project}/locations/${var.gke_location}/clusters/${var.gke_cluster}"
  applier_oidc_audience   = "sts.amazonaws.com"
  applier_namespace       = var.applier_namespace
  applier_service_account = var.applier_service_account

  alarm_sns_topic_arn = var.alarm_sns_topic_arn

  # PR feedback (on by default): the notifier shows each environment's state on its pull
  # request as a GitHub App. Build target/lambda/notifier/bootstrap.zip first
  # (`make lambda FUNCTION=notifier`), or set feedback_enabled = false.
  github_api_url = var.github_api_url

  tags = {
    cluster = "gke/${var.gcp_project}/${var.gke_location}/${var.gke_cluster}"
  }
}
