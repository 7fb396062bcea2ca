output "appliers" {
  description = "Applier name => its resolved settings: queue_name, dlq_name, filter_policy (JSON, or null for every event), max_receive_count, visibility_timeout_seconds, message_retention_seconds, dlq_message_retention_seconds, create_alarms, queue_age_alarm_threshold_seconds, use_module_identity, tags."
  value       = local.appliers

  # Rules across inputs (a variable's validation may only see that variable before Terraform 1.9).
  precondition {
    condition     = length(distinct(local.queue_names)) == length(local.queue_names) && length(setintersection(local.queue_names, var.reserved_queue_names)) == 0
    error_message = "Two queues would share a name: an applier's queue or dead-letter queue (<name>-<applier>.fifo, <name>-<applier>-dlq.fifo) is another applier's or one of the module's own (${join(", ", var.reserved_queue_names)}). Rename the applier."
  }

  precondition {
    condition     = alltrue([for n in local.queue_names : length(n) <= 80])
    error_message = "An applier's queue name exceeds SQS's 80 characters: shorten the module's name or the applier's."
  }

  precondition {
    condition     = alltrue([for a in values(local.appliers) : a.dlq_message_retention_seconds > a.message_retention_seconds])
    error_message = "Each applier's dlq_message_retention_seconds must be longer than its message_retention_seconds (its own, or the module's where left null)."
  }
}

output "alarms" {
  description = "CloudWatch alarms of the appliers' queues, \"<applier>/dlq-not-empty\" and \"<applier>/queue-oldest-event\" => name, description, metric (AWS/SQS), queue_name (the QueueName dimension), threshold. Only for appliers whose create_alarms is true."
  value       = local.alarms
}

output "module_identity_applier" {
  description = "Name of the applier that uses the module's own applier role or user (use_module_identity), or null."
  value       = one([for k, a in var.appliers : k if a.use_module_identity])
}
