output "webhook_url" {
  description = "Payload URL of the GitHub webhook (one for all clusters)."
  value       = module.kubetempura.webhook_url
}

output "webhook_secret" {
  description = "Secret of the GitHub webhook (`terraform output -raw webhook_secret`)."
  value       = module.kubetempura.webhook_secret
  sensitive   = true
}

output "topic_arn" {
  description = "The SNS FIFO topic the webhook publishes to."
  value       = module.kubetempura.topic_arn
}

output "eks_run_args" {
  description = "Arguments of the EKS applier's `kubetempura run` (its queue, the feedback queue)."
  value       = module.kubetempura.appliers["eks"].run_args
}

output "eks_service_account_annotations" {
  description = "Annotations to put on the EKS applier's Kubernetes service account."
  value = {
    "eks.amazonaws.com/role-arn" = module.kubetempura.applier_role_arn
  }
}

output "gke_run_args" {
  description = "Arguments of the GKE applier's `kubetempura run` (its queue, the feedback queue)."
  value       = module.kubetempura.appliers["gke"].run_args
}

output "gke_role_arn" {
  description = "AWS_ROLE_ARN of the GKE applier's pod."
  value       = aws_iam_role.gke_applier.arn
}

output "aws_region" {
  description = "AWS_REGION of both appliers' pods."
  value       = module.kubetempura.applier_region
}

output "appliers" {
  description = "Everything per applier: queue and dead-letter queue URLs and ARNs, policy ARN, filter policy, run arguments and environment."
  value       = module.kubetempura.appliers
}

output "github_app_secret_arn" {
  description = "Secret to put the GitHub App's {\"appId\", \"privateKey\"} into (README, \"Creating the GitHub App\")."
  value       = module.kubetempura.github_app_secret_arn
}
