# One webhook, many appliers: what each applier's queues, subscription and alarms look like,
# computed from the inputs alone (no provider). The root module creates the AWS resources from
# the outputs (fanout.tf); the tests apply this module with several inputs and read them.
#
# Filter policy (SNS, scope MessageAttributes), from the attributes the webhook function sets on
# every message: `repository` (owner/name as GitHub spells it) and `owner` (the owner's login).
#   repositories only or repository_prefixes only, or both:
#       {"repository": ["owner/exact", {"prefix": "owner/start"}]}
#   owners only:
#       {"owner": ["owner"]}
#   repositories or prefixes, and owners: either matches ("$or" needs at least two branches,
#   which it has here):
#       {"$or": [{"repository": [...]}, {"owner": [...]}]}
#   none of them: no filter policy, so the applier receives every event.
# SNS compares strings case-sensitively; the validations keep each value well-formed.

locals {
  appliers = {
    for k, a in var.appliers : k => {
      queue_name = "${var.name}-${k}.fifo"
      dlq_name   = "${var.name}-${k}-dlq.fifo"

      filter_policy = (
        length(local.repository_values[k]) > 0 && length(a.owners) > 0
        ? jsonencode({ "$or" = [{ repository = local.repository_values[k] }, { owner = distinct(a.owners) }] })
        : length(local.repository_values[k]) > 0 ? jsonencode({ repository = local.repository_values[k] })
        : length(a.owners) > 0 ? jsonencode({ owner = distinct(a.owners) })
        : null
      )

      max_receive_count                 = coalesce(a.max_receive_count, var.defaults.max_receive_count)
      visibility_timeout_seconds        = coalesce(a.visibility_timeout_seconds, var.defaults.visibility_timeout_seconds)
      message_retention_seconds         = coalesce(a.message_retention_seconds, var.defaults.message_retention_seconds)
      dlq_message_retention_seconds     = coalesce(a.dlq_message_retention_seconds, var.defaults.dlq_message_retention_seconds)
      create_alarms                     = coalesce(a.create_alarms, var.defaults.create_alarms)
      queue_age_alarm_threshold_seconds = coalesce(a.queue_age_alarm_threshold_seconds, var.defaults.queue_age_alarm_threshold_seconds)
      use_module_identity               = a.use_module_identity

      # The applier reads these (ListQueueTags) to warn when its queue looks shared.
      tags = merge(var.tags, {
        "kubetempura:applier" = k
        "kubetempura:fanout"  = "true"
      })
    }
  }

  # Exact names, then {"prefix": ...} objects, in one list (a tuple: the element types differ).
  repository_values = {
    for k, a in var.appliers : k => concat(distinct(a.repositories), [for p in distinct(a.repository_prefixes) : { prefix = p }])
  }

  # Two alarms per applier whose create_alarms (or the module's) is true, keyed
  # "<applier>/<alarm>". Named <name>-applier-<applier>-..., a prefix none of the module's other
  # alarms uses.
  alarms = merge([
    for k, a in local.appliers : a.create_alarms ? {
      "${k}/dlq-not-empty" = {
        name        = "${var.name}-applier-${k}-dlq-not-empty"
        description = "kubetempura ${var.name}: events in the dead-letter queue ${a.dlq_name} of applier ${k}. It gave up on them after ${a.max_receive_count} receives; inspect, fix the cause, then redrive them to ${a.queue_name}."
        metric      = "ApproximateNumberOfMessagesVisible"
        queue_name  = a.dlq_name
        threshold   = 0
      }
      "${k}/queue-oldest-event" = {
        name        = "${var.name}-applier-${k}-queue-oldest-event"
        description = "kubetempura ${var.name}: the oldest event in ${a.queue_name} (applier ${k}) is older than ${a.queue_age_alarm_threshold_seconds} s. Is that applier running, and can it assume its role?"
        metric      = "ApproximateAgeOfOldestMessage"
        queue_name  = a.queue_name
        threshold   = a.queue_age_alarm_threshold_seconds
      }
    } : {}
  ]...)

  queue_names = flatten([for a in values(local.appliers) : [a.queue_name, a.dlq_name]])
}
