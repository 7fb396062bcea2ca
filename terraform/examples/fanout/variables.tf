variable "aws_region" {
  description = "AWS region of the EKS cluster, the topic, the queues and the webhook function."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Base name of the AWS resources (see the module's `name`)."
  type        = string
  default     = "kubetempura"
}

variable "github_owner" {
  description = "GitHub organisation (or user) whose `web-*` repositories the EKS cluster serves, as GitHub spells it."
  type        = string
}

variable "eks_cluster_name" {
  description = "Name of the EKS cluster whose applier uses the module's applier role (IRSA). Its IAM OIDC provider must exist."
  type        = string
}

variable "eks_repositories" {
  description = "Repositories (`owner/name`, as GitHub spells them) the EKS cluster serves besides the `web-*` ones."
  type        = list(string)
  default     = []
}

variable "gcp_project" {
  description = "Google Cloud project ID of the GKE cluster."
  type        = string
}

variable "gke_location" {
  description = "Region or zone of the GKE cluster (as in its resource name)."
  type        = string
}

variable "gke_cluster" {
  description = "Name of the GKE cluster."
  type        = string
}

variable "gke_owners" {
  description = "GitHub organisations (or users) whose every repository the GKE cluster serves."
  type        = list(string)
}

variable "applier_namespace" {
  description = "Kubernetes namespace of the applier (the same in both clusters here)."
  type        = string
  default     = "kubetempura"
}

variable "applier_service_account" {
  description = "Kubernetes service account of the applier (the same in both clusters here)."
  type        = string
  default     = "kubetempura-applier"
}

variable "alarm_sns_topic_arn" {
  description = "SNS topic notified by the alarms; null creates them without actions."
  type        = string
  default     = null
}

variable "github_api_url" {
  description = "GitHub REST API the notifier calls: https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server."
  type        = string
  default     = "https://api.github.com"
}
