variable "aws_region" {
  description = "AWS region of the queue and the webhook function."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Base name of the AWS resources (see the module's `name`)."
  type        = string
  default     = "kubetempura"
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
  description = "Name of the GKE cluster the applier runs in."
  type        = string
}

variable "applier_namespace" {
  description = "Kubernetes namespace of the applier."
  type        = string
  default     = "kubetempura"
}

variable "applier_service_account" {
  description = "Kubernetes service account of the applier."
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
