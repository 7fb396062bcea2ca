# Inputs of the appliers submodule. The root module passes its own `appliers` variable through
# unchanged (same type) and resolves every per-applier option that is left null from its
# module-wide defaults here. The validations of `appliers` live here, not in the root module:
# the root module cannot be planned without the AWS provider, this one can, so the tests can
# prove that each rule rejects what it should.

variable "name" {
  description = "The root module's `name` (validated there: 1-40 letters, digits, `-` or `_`). Each applier's queues are `<name>-<applier>.fifo` and `<name>-<applier>-dlq.fifo`."
  type        = string
}

variable "appliers" {
  description = "The root module's `appliers` (see its description): applier name => the repositories it serves and its per-queue options."
  type = map(object({
    repositories                      = optional(list(string), [])
    repository_prefixes               = optional(list(string), [])
    owners                            = optional(list(string), [])
    max_receive_count                 = optional(number)
    visibility_timeout_seconds        = optional(number)
    message_retention_seconds         = optional(number)
    dlq_message_retention_seconds     = optional(number)
    create_alarms                     = optional(bool)
    queue_age_alarm_threshold_seconds = optional(number)
    use_module_identity               = optional(bool, false)
  }))

  # 30 = 80 (SQS's limit, `.fifo` included) - 40 (the longest `name`) - 1 (`-`) - 9 (`-dlq.fifo`).
  validation {
    condition     = alltrue([for k in keys(var.appliers) : can(regex("^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$", k))])
    error_message = "Each applier name must be 1-30 lowercase letters, digits or '-', starting and ending with a letter or digit (a DNS label short enough that <name>-<applier>-dlq.fifo fits SQS's 80 characters)."
  }

  validation {
    condition = alltrue(flatten([for a in values(var.appliers) : [
      for r in a.repositories : can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,37}[A-Za-z0-9])?/[A-Za-z0-9._-]{1,100}$", r)) && !endswith(r, ".git")
    ]]))
    error_message = "Each entry of an applier's repositories must be a GitHub repository `owner/name`, exactly as GitHub spells it (matching is case-sensitive), without a host, `.git` or a trailing '/'."
  }

  validation {
    condition = alltrue(flatten([for a in values(var.appliers) : [
      for p in a.repository_prefixes : can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,37}[A-Za-z0-9])?/[A-Za-z0-9._-]{0,99}$", p))
    ]]))
    error_message = "Each entry of an applier's repository_prefixes must start with a whole owner and '/' (`owner/` or `owner/name-start`), as GitHub spells it: a prefix without the '/' would also match other owners whose login starts the same way (use owners for a whole owner)."
  }

  validation {
    condition = alltrue(flatten([for a in values(var.appliers) : [
      for o in a.owners : can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,37}[A-Za-z0-9])?$", o))
    ]]))
    error_message = "Each entry of an applier's owners must be a GitHub user or organisation login (1-39 letters, digits or '-'), exactly as GitHub spells it."
  }

  # SNS: "the total combination of values in a filter policy must not exceed 150"; with the two
  # branches of "$or" each holding one list, that is the number of values.
  validation {
    condition     = alltrue([for a in values(var.appliers) : length(a.repositories) + length(a.repository_prefixes) + length(a.owners) <= 150])
    error_message = "An applier may list at most 150 repositories, repository_prefixes and owners together (the SNS filter policy limit); serve a whole owner with owners, or a family of repositories with one prefix."
  }

  validation {
    condition     = alltrue([for a in values(var.appliers) : a.max_receive_count == null || (try(a.max_receive_count >= 1, false) && try(a.max_receive_count <= 1000, false) && try(floor(a.max_receive_count) == a.max_receive_count, false))])
    error_message = "An applier's max_receive_count must be null (the module's max_receive_count) or a whole number from 1 to 1000."
  }

  validation {
    condition     = alltrue([for a in values(var.appliers) : a.visibility_timeout_seconds == null || (try(a.visibility_timeout_seconds >= 0, false) && try(a.visibility_timeout_seconds <= 43200, false) && try(floor(a.visibility_timeout_seconds) == a.visibility_timeout_seconds, false))])
    error_message = "An applier's visibility_timeout_seconds must be null (the module's visibility_timeout_seconds) or a whole number from 0 to 43200."
  }

  validation {
    condition     = alltrue([for a in values(var.appliers) : a.message_retention_seconds == null || (try(a.message_retention_seconds >= 60, false) && try(a.message_retention_seconds <= 1209600, false) && try(floor(a.message_retention_seconds) == a.message_retention_seconds, false))])
    error_message = "An applier's message_retention_seconds must be null (the module's message_retention_seconds) or a whole number from 60 to 1209600 (14 days)."
  }

  validation {
    condition     = alltrue([for a in values(var.appliers) : a.dlq_message_retention_seconds == null || (try(a.dlq_message_retention_seconds >= 60, false) && try(a.dlq_message_retention_seconds <= 1209600, false) && try(floor(a.dlq_message_retention_seconds) == a.dlq_message_retention_seconds, false))])
    error_message = "An applier's dlq_message_retention_seconds must be null (the module's dlq_message_retention_seconds) or a whole number from 60 to 1209600 (14 days)."
  }

  validation {
    condition     = alltrue([for a in values(var.appliers) : a.queue_age_alarm_threshold_seconds == null || (try(a.queue_age_alarm_threshold_seconds >= 60, false) && try(a.queue_age_alarm_threshold_seconds <= 1209600, false))])
    error_message = "An applier's queue_age_alarm_threshold_seconds must be null (the module's queue_age_alarm_threshold_seconds) or from 60 to 1209600."
  }

  validation {
    condition     = length([for a in values(var.appliers) : a if a.use_module_identity]) <= 1
    error_message = "At most one applier may set use_module_identity: the module's applier role (or user) trusts one service account of one cluster."
  }
}

variable "defaults" {
  description = "The root module's queue and alarm settings, used for every per-applier option left null: max_receive_count, visibility_timeout_seconds, message_retention_seconds, dlq_message_retention_seconds, create_alarms, queue_age_alarm_threshold_seconds (validated by the root module)."
  type = object({
    max_receive_count                 = number
    visibility_timeout_seconds        = number
    message_retention_seconds         = number
    dlq_message_retention_seconds     = number
    create_alarms                     = bool
    queue_age_alarm_threshold_seconds = number
  })
}

variable "reserved_queue_names" {
  description = "Names of the root module's other queues (the single event queue and its dead-letter queue, the feedback queues), which no applier's queue may take."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "The root module's tags; each applier's queues get these plus `kubetempura:applier = <applier>` and `kubetempura:fanout = \"true\"`."
  type        = map(string)
  default     = {}
}
