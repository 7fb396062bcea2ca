output "webhook_url" {
  description = "Payload URL of the GitHub webhook."
  value       = module.kubetempura.webhook_url
}

output "webhook_secret" {
  description = "Secret of the GitHub webhook (`terraform output -raw webhook_secret`)."
  value       = module.kubetempura.webhook_secret
  sensitive   = true
}

output "queue_url" {
  description = "Queue URL for the applier's configuration."
  value       = module.kubetempura.queue_url
}

output "dlq_url" {
  description = "Dead-letter queue URL, to inspect and redrive failed events."
  value       = module.kubetempura.dlq_url
}

output "applier_role_arn" {
  description = "AWS_ROLE_ARN of the applier's pod."
  value       = module.kubetempura.applier_role_arn
}

output "aws_region" {
  description = "AWS_REGION of the applier's pod."
  value       = module.kubetempura.applier_region
}

output "applier_oidc_provider_arn" {
  description = "The IAM OIDC provider registered for the GKE cluster's issuer."
  value       = module.kubetempura.applier_oidc_provider_arn
}

output "feedback_queue_url" {
  description = "Feedback queue the applier sends environment states to (null with feedback_enabled = false)."
  value       = module.kubetempura.feedback_queue_url
}

output "applier_feedback_run_flag" {
  description = "Argument to add to the applier's `kubetempura run` (--feedback-queue-url=...)."
  value       = module.kubetempura.applier_feedback_run_flag
}

output "github_app_secret_arn" {
  description = "Secret to put the GitHub App's {\"appId\", \"privateKey\"} into (README, \"Creating the GitHub App\")."
  value       = module.kubetempura.github_app_secret_arn
}
