# Inputs of the kubetempura AWS module. Every variable is typed and described; names, ARNs and
# ranges are validated here so that a mistake fails at `terraform plan`, not halfway through an
# apply. Cross-variable rules (which need Terraform >= 1.9 inside `validation`) are
# `precondition`s on the resources they concern.

# ---------------------------------------------------------------------------------------------
# Naming and tagging

variable "name" {
  description = "Base name of every resource (function `<name>-webhook`, roles `<name>-webhook` and `<name>-applier`, alarms `<name>-...`). Letters, digits, `-` and `_`, at most 40 characters so that every derived name stays within AWS limits (64 for functions and roles)."
  type        = string
  default     = "kubetempura"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,40}$", var.name))
    error_message = "name must be 1-40 characters of letters, digits, '-' or '_'."
  }
}

variable "queue_name" {
  description = "Base name of the queue, WITHOUT the `.fifo` suffix: the module appends `.fifo` to the queue and `-dlq.fifo` to its dead-letter queue (both must be FIFO, and AWS requires FIFO names to end in `.fifo`). Null means `<name>-events`. At most 71 characters so that `<queue_name>-dlq.fifo` fits SQS's 80."
  type        = string
  default     = null

  validation {
    condition     = var.queue_name == null || can(regex("^[A-Za-z0-9_-]{1,71}$", var.queue_name))
    error_message = "queue_name must be 1-71 characters of letters, digits, '-' or '_' and must not end in '.fifo' (the module adds it)."
  }
}

variable "tags" {
  description = "Tags applied to every resource that supports them (merged over `{ app = \"kubetempura\" }`)."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------------------------
# Queue and dead-letter queue

variable "visibility_timeout_seconds" {
  description = "Seconds a received message stays invisible to other consumers. The applier reads it at start and extends the visibility of every message it holds each time a third of it has passed (ChangeMessageVisibility; also to delay a retry), so it does not bound the work on one event: it is how long a message held by an applier that died stays invisible. SQS allows 0-43200."
  type        = number
  default     = 300

  validation {
    condition     = var.visibility_timeout_seconds >= 0 && var.visibility_timeout_seconds <= 43200 && floor(var.visibility_timeout_seconds) == var.visibility_timeout_seconds
    error_message = "visibility_timeout_seconds must be a whole number from 0 to 43200."
  }
}

variable "message_retention_seconds" {
  description = "Seconds the queue keeps an unconsumed event (SQS allows 60-1209600). Default 4 days: enough to ride out an applier outage over a weekend."
  type        = number
  default     = 345600

  validation {
    condition     = var.message_retention_seconds >= 60 && var.message_retention_seconds <= 1209600 && floor(var.message_retention_seconds) == var.message_retention_seconds
    error_message = "message_retention_seconds must be a whole number from 60 to 1209600 (14 days)."
  }
}

variable "dlq_message_retention_seconds" {
  description = "Seconds the dead-letter queue keeps a failed event (SQS allows 60-1209600). Must be longer than message_retention_seconds (checked at plan): a failed event is kept longer than a pending one, leaving time to inspect and redrive it. Default 14 days, the maximum."
  type        = number
  default     = 1209600

  validation {
    condition     = var.dlq_message_retention_seconds >= 60 && var.dlq_message_retention_seconds <= 1209600 && floor(var.dlq_message_retention_seconds) == var.dlq_message_retention_seconds
    error_message = "dlq_message_retention_seconds must be a whole number from 60 to 1209600 (14 days)."
  }
}

variable "max_receive_count" {
  description = "Receives of one message before SQS moves it to the dead-letter queue. The applier retries a transient failure in process for its retry budget (KUBETEMPURA_RETRY_BUDGET_SECONDS, default 1 hour) before giving the message back, one receive counted: this counts budgets, not attempts. SQS allows 1-1000."
  type        = number
  default     = 5

  validation {
    condition     = var.max_receive_count >= 1 && var.max_receive_count <= 1000 && floor(var.max_receive_count) == var.max_receive_count
    error_message = "max_receive_count must be a whole number from 1 to 1000."
  }
}

variable "high_throughput_fifo" {
  description = "Use SQS high-throughput FIFO mode (`deduplication_scope = \"messageGroup\"`, `fifo_throughput_limit = \"perMessageGroupId\"`). Off by default: see the comment in sqs.tf for why queue-wide deduplication is kept."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "ARN of a customer managed KMS key to encrypt the queues (and, with appliers, the SNS topic; and the secrets the module creates: the generated webhook secret, the GitHub App secret) with. Null uses SSE-SQS (SQS-managed keys), the AWS managed key of SNS (`alias/aws/sns`) for the topic, and the AWS managed key of Secrets Manager. When set, the functions and the applier are granted only the KMS actions SQS (or SNS) needs, only through that service (`kms:ViaService`); the key policy must allow this account's IAM policies to grant it and, with appliers, must let the service principal `sns.amazonaws.com` use it (kms:GenerateDataKey, kms:Decrypt) to deliver to the appliers' queues."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-zA-Z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>); aliases cannot be used in IAM policies."
  }
}

variable "kms_data_key_reuse_period_seconds" {
  description = "With kms_key_arn: seconds SQS reuses a data key before calling KMS again (60-86400). Longer means fewer KMS calls (cost) and a longer window for a compromised data key."
  type        = number
  default     = 300

  validation {
    condition     = var.kms_data_key_reuse_period_seconds >= 60 && var.kms_data_key_reuse_period_seconds <= 86400
    error_message = "kms_data_key_reuse_period_seconds must be from 60 to 86400."
  }
}

# ---------------------------------------------------------------------------------------------
# The webhook function

variable "lambda_zip_path" {
  description = "Path of the function's deployment package. Null means `<module>/../target/lambda/webhook/bootstrap.zip`, where `cargo lambda build --profile release-lambda --arm64 --output-format zip` writes it from the repository root. The file must exist at plan time."
  type        = string
  default     = null

  validation {
    condition     = var.lambda_zip_path == null || can(regex("\\.zip$", var.lambda_zip_path))
    error_message = "lambda_zip_path must name a .zip file."
  }
}

variable "lambda_architecture" {
  description = "Instruction set of the function: `arm64` (Graviton, the default: cheaper per GB-second; build with `cargo lambda build --arm64`) or `x86_64` (build with `--x86-64`). Must match the binary in the zip."
  type        = string
  default     = "arm64"

  validation {
    condition     = contains(["arm64", "x86_64"], var.lambda_architecture)
    error_message = "lambda_architecture must be \"arm64\" or \"x86_64\"."
  }
}

variable "lambda_memory_size" {
  description = "Memory of the function in MB (128-10240; CPU scales with it). The handler verifies an HMAC and sends one small SQS message: 128 MB is plenty; raise it only if cold starts matter."
  type        = number
  default     = 128

  validation {
    condition     = var.lambda_memory_size >= 128 && var.lambda_memory_size <= 10240 && floor(var.lambda_memory_size) == var.lambda_memory_size
    error_message = "lambda_memory_size must be a whole number of MB from 128 to 10240."
  }
}

variable "lambda_timeout" {
  description = "Function timeout in seconds (1-30). GitHub waits 10 s for a delivery's response and then records it as failed, so a longer timeout only does work nobody waits for."
  type        = number
  default     = 10

  validation {
    condition     = var.lambda_timeout >= 1 && var.lambda_timeout <= 30 && floor(var.lambda_timeout) == var.lambda_timeout
    error_message = "lambda_timeout must be a whole number of seconds from 1 to 30."
  }
}

variable "lambda_reserved_concurrency" {
  description = "Reserved concurrent executions of the function: a ceiling that also stops a flood of (unsigned, rejected) requests from using the account's whole concurrency. Null leaves it unreserved. New accounts whose concurrency quota is 10 cannot reserve any: use null there."
  type        = number
  default     = 10

  validation {
    condition     = var.lambda_reserved_concurrency == null || (try(var.lambda_reserved_concurrency >= 1, false) && try(floor(var.lambda_reserved_concurrency) == var.lambda_reserved_concurrency, false))
    error_message = "lambda_reserved_concurrency must be null or a whole number >= 1 (0 would disable the function)."
  }
}

variable "max_body_bytes" {
  description = "Largest request body the function accepts, in bytes, passed as MAX_BODY_BYTES. Null omits the variable and the function's default (5 MiB) applies. At most 6291456: a Lambda invocation payload cannot exceed 6 MB."
  type        = number
  default     = null

  validation {
    condition     = var.max_body_bytes == null || (try(var.max_body_bytes >= 1024, false) && try(var.max_body_bytes <= 6291456, false) && try(floor(var.max_body_bytes) == var.max_body_bytes, false))
    error_message = "max_body_bytes must be null or a whole number from 1024 to 6291456."
  }
}

variable "log_retention_days" {
  description = "Days CloudWatch keeps the function's logs (and the API Gateway access logs). One of CloudWatch's allowed values; 0 keeps them forever."
  type        = number
  default     = 30

  validation {
    condition     = contains([0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be 0 (never expire) or one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653."
  }
}

variable "log_kms_key_arn" {
  description = "ARN of a customer managed KMS key for the CloudWatch log groups. Null uses CloudWatch Logs' own encryption at rest. The key policy must allow the `logs.<region>.amazonaws.com` service principal."
  type        = string
  default     = null

  validation {
    condition     = var.log_kms_key_arn == null || can(regex("^arn:aws[a-zA-Z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.log_kms_key_arn))
    error_message = "log_kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)."
  }
}

variable "log_level" {
  description = "Application log level Lambda applies to the function's JSON logs (TRACE, DEBUG, INFO, WARN, ERROR or FATAL)."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"], var.log_level)
    error_message = "log_level must be one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL."
  }
}

# ---------------------------------------------------------------------------------------------
# How GitHub reaches the function

variable "endpoint_type" {
  description = "`function_url` (default): a Lambda function URL with auth type NONE; GitHub signs every delivery and the handler verifies the signature. `api_gateway`: an API Gateway HTTP API in front of the function instead, for teams that need a custom domain or throttling (WAF cannot attach to an HTTP API: put CloudFront with WAF in front of it)."
  type        = string
  default     = "function_url"

  validation {
    condition     = contains(["function_url", "api_gateway"], var.endpoint_type)
    error_message = "endpoint_type must be \"function_url\" or \"api_gateway\"."
  }
}

variable "api_gateway_throttling_burst_limit" {
  description = "With endpoint_type = api_gateway: burst limit (requests) of the webhook route."
  type        = number
  default     = 50

  validation {
    condition     = var.api_gateway_throttling_burst_limit >= 1 && var.api_gateway_throttling_burst_limit <= 5000
    error_message = "api_gateway_throttling_burst_limit must be from 1 to 5000."
  }
}

variable "api_gateway_throttling_rate_limit" {
  description = "With endpoint_type = api_gateway: steady-state rate limit (requests per second) of the webhook route."
  type        = number
  default     = 20

  validation {
    condition     = var.api_gateway_throttling_rate_limit >= 1 && var.api_gateway_throttling_rate_limit <= 10000
    error_message = "api_gateway_throttling_rate_limit must be from 1 to 10000."
  }
}

# ---------------------------------------------------------------------------------------------
# The webhook secret

variable "webhook_secret_arn" {
  description = "ARN of an existing Secrets Manager secret holding the webhook secret (several comma-separated values during rotation). Null makes the module generate one and store it in a new secret."
  type        = string
  default     = null

  validation {
    condition     = var.webhook_secret_arn == null || can(regex("^arn:aws[a-zA-Z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$", var.webhook_secret_arn))
    error_message = "webhook_secret_arn must be a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix>)."
  }
}

variable "webhook_secret_kms_key_arn" {
  description = "With webhook_secret_arn: the customer managed KMS key that encrypts that existing secret, so the function may kms:Decrypt through Secrets Manager. Null when it uses the AWS managed key. (A generated secret uses kms_key_arn.)"
  type        = string
  default     = null

  validation {
    condition     = var.webhook_secret_kms_key_arn == null || can(regex("^arn:aws[a-zA-Z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.webhook_secret_kms_key_arn))
    error_message = "webhook_secret_kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)."
  }
}

variable "webhook_secret_length" {
  description = "Length of the generated webhook secret (40-128 letters and digits; no commas, which separate values during rotation)."
  type        = number
  default     = 48

  validation {
    condition     = var.webhook_secret_length >= 40 && var.webhook_secret_length <= 128 && floor(var.webhook_secret_length) == var.webhook_secret_length
    error_message = "webhook_secret_length must be a whole number from 40 to 128."
  }
}

variable "webhook_secret_previous_values" {
  description = "Rotation of a generated secret: values still accepted besides the current one, stored after it, comma-separated. Put the old value here while replacing random_password.webhook, update GitHub, then empty the list (see README)."
  type        = list(string)
  default     = []
  sensitive   = true

  validation {
    condition     = alltrue([for v in var.webhook_secret_previous_values : length(v) > 0 && !strcontains(v, ",")])
    error_message = "webhook_secret_previous_values must not contain empty values or commas (a comma separates values)."
  }
}

variable "secret_recovery_window_days" {
  description = "Days Secrets Manager keeps a deleted generated secret recoverable: 0 (delete at once) or 7-30."
  type        = number
  default     = 7

  validation {
    condition     = var.secret_recovery_window_days == 0 || (var.secret_recovery_window_days >= 7 && var.secret_recovery_window_days <= 30)
    error_message = "secret_recovery_window_days must be 0 or from 7 to 30."
  }
}

# ---------------------------------------------------------------------------------------------
# The applier's identity. Any combination of the trust options below may be set (for example
# IRSA and Pod Identity together while migrating); the role is created when at least one is.

variable "applier_namespace" {
  description = "Kubernetes namespace of the applier's service account (must match the install under infra/)."
  type        = string
  default     = "kubetempura"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.applier_namespace))
    error_message = "applier_namespace must be a DNS-1123 label."
  }
}

variable "applier_service_account" {
  description = "Name of the applier's Kubernetes service account (must match the install under infra/)."
  type        = string
  default     = "kubetempura-applier"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", var.applier_service_account))
    error_message = "applier_service_account must be a DNS-1123 subdomain."
  }
}

variable "applier_irsa_oidc_provider_arn" {
  description = "EKS IRSA: ARN of the cluster's IAM OIDC provider (arn:aws:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<id>). The role then trusts only the applier's service account (`:sub`) with audience sts.amazonaws.com (`:aud`)."
  type        = string
  default     = null

  validation {
    condition     = var.applier_irsa_oidc_provider_arn == null || can(regex("^arn:aws[a-zA-Z-]*:iam::[0-9]{12}:oidc-provider/[^\\s]+$", var.applier_irsa_oidc_provider_arn))
    error_message = "applier_irsa_oidc_provider_arn must be an IAM OIDC provider ARN (arn:aws:iam::<account>:oidc-provider/<issuer host and path>)."
  }
}

variable "applier_pod_identity_cluster_name" {
  description = "EKS Pod Identity: name of the EKS cluster. The role trusts `pods.eks.amazonaws.com` (sts:AssumeRole and sts:TagSession), limited by session tags to this cluster, namespace and service account."
  type        = string
  default     = null

  validation {
    condition     = var.applier_pod_identity_cluster_name == null || can(regex("^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$", var.applier_pod_identity_cluster_name))
    error_message = "applier_pod_identity_cluster_name must be an EKS cluster name (1-100 letters, digits, '-' or '_', starting with a letter or digit)."
  }
}

variable "applier_pod_identity_create_association" {
  description = "With applier_pod_identity_cluster_name: also create the aws_eks_pod_identity_association binding the role to the service account (requires the eks-pod-identity-agent add-on on the cluster)."
  type        = bool
  default     = true
}

variable "applier_oidc_issuer_url" {
  description = "Any other cluster (GKE, AKS, on-premises ...): the HTTPS issuer URL of its service-account tokens, for web identity federation (for GKE: https://container.googleapis.com/v1/projects/<project>/locations/<location>/clusters/<cluster>). The applier exchanges a projected service-account token for role credentials with sts:AssumeRoleWithWebIdentity."
  type        = string
  default     = null

  validation {
    condition     = var.applier_oidc_issuer_url == null || can(regex("^https://[^\\s/]+(/[^\\s]*[^\\s/])?$", var.applier_oidc_issuer_url))
    error_message = "applier_oidc_issuer_url must be an https:// URL without a trailing slash."
  }
}

variable "applier_oidc_create_provider" {
  description = "With applier_oidc_issuer_url: create the aws_iam_openid_connect_provider for the issuer. Set false when the account already has one for this issuer (IAM allows one per URL); its ARN is derived from the URL."
  type        = bool
  default     = true
}

variable "applier_oidc_audience" {
  description = "With applier_oidc_issuer_url: audience of the applier's projected service-account token (its `aud`), registered as the provider's client ID and required in the trust policy."
  type        = string
  default     = "sts.amazonaws.com"

  validation {
    condition     = length(var.applier_oidc_audience) > 0 && length(var.applier_oidc_audience) <= 255
    error_message = "applier_oidc_audience must be 1-255 characters."
  }
}

variable "applier_oidc_thumbprints" {
  description = "With applier_oidc_issuer_url and applier_oidc_create_provider: SHA-1 thumbprints (40 hex digits) of the issuer's TLS certificate chain. Empty lets IAM verify the JWKS endpoint against its own trusted CAs, which it does for public CAs."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for t in var.applier_oidc_thumbprints : can(regex("^[0-9A-Fa-f]{40}$", t))])
    error_message = "Each of applier_oidc_thumbprints must be 40 hexadecimal digits."
  }
}

variable "applier_oidc_subject" {
  description = "With applier_oidc_issuer_url: the token subject (`sub`) the role trusts. Null means `system:serviceaccount:<applier_namespace>:<applier_service_account>`, the subject of a Kubernetes service-account token."
  type        = string
  default     = null

  validation {
    condition     = var.applier_oidc_subject == null || try(length(var.applier_oidc_subject) > 0 && !strcontains(var.applier_oidc_subject, "*"), false)
    error_message = "applier_oidc_subject must be a non-empty exact subject, without wildcards."
  }
}

variable "create_applier_user" {
  description = "DISCOURAGED: also create an IAM user with an access key and the applier's permissions, for clusters that can federate no identity at all. Long-lived keys leak and must be rotated by hand; prefer any of the federation options. The key is in the sensitive outputs (and in the Terraform state)."
  type        = bool
  default     = false
}

variable "iam_permissions_boundary_arn" {
  description = "ARN of an IAM managed policy set as permissions boundary on every role and user this module creates (organisations that require one). Null sets none."
  type        = string
  default     = null

  validation {
    condition     = var.iam_permissions_boundary_arn == null || can(regex("^arn:aws[a-zA-Z-]*:iam::([0-9]{12}|aws):policy/.+$", var.iam_permissions_boundary_arn))
    error_message = "iam_permissions_boundary_arn must be an IAM policy ARN (arn:aws:iam::<account>:policy/<name>)."
  }
}

# ---------------------------------------------------------------------------------------------
# Alarms

variable "create_alarms" {
  description = "Create the CloudWatch alarms (dead-letter queue not empty, function errors, 5xx responses, oldest queued event too old; with feedback_enabled, the same for the feedback queues and the notifier, plus its throttles). They are created even without alarm_sns_topic_arn, so their state shows in the console and can be wired later."
  type        = bool
  default     = true
}

variable "alarm_sns_topic_arn" {
  description = "ARN of an SNS topic notified when an alarm fires and when it recovers. Null creates the alarms without actions."
  type        = string
  default     = null

  validation {
    condition     = var.alarm_sns_topic_arn == null || can(regex("^arn:aws[a-zA-Z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\\.fifo)?$", var.alarm_sns_topic_arn))
    error_message = "alarm_sns_topic_arn must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic>)."
  }
}

variable "queue_age_alarm_threshold_seconds" {
  description = "Alarm when the oldest event in the queue is older than this many seconds: the applier is down, stuck or cannot authenticate (60-1209600)."
  type        = number
  default     = 900

  validation {
    condition     = var.queue_age_alarm_threshold_seconds >= 60 && var.queue_age_alarm_threshold_seconds <= 1209600
    error_message = "queue_age_alarm_threshold_seconds must be from 60 to 1209600."
  }
}

# ---------------------------------------------------------------------------------------------
# PR feedback: the outbound (feedback) queue, the notifier function and the GitHub App secret
# (feedback.tf, notifier.tf). The applier sends an environment's state to the feedback queue;
# the notifier shows it on the pull request as a GitHub App.

variable "feedback_enabled" {
  description = "Create the PR feedback path: the feedback FIFO queue and its dead-letter queue, the notifier function and its event source mapping, the GitHub App secret, their alarms, and the applier's sqs:SendMessage on the feedback queue. False creates none of them and the feedback outputs are null; the applier then runs without --feedback-queue-url."
  type        = bool
  default     = true
}

variable "feedback_queue_name" {
  description = "Base name of the feedback queue, WITHOUT the `.fifo` suffix: the module appends `.fifo` and `-dlq.fifo`. Null means `<name>-feedback`. At most 71 characters so that `<feedback_queue_name>-dlq.fifo` fits SQS's 80."
  type        = string
  default     = null

  validation {
    condition     = var.feedback_queue_name == null || can(regex("^[A-Za-z0-9_-]{1,71}$", var.feedback_queue_name))
    error_message = "feedback_queue_name must be 1-71 characters of letters, digits, '-' or '_' and must not end in '.fifo' (the module adds it)."
  }
}

variable "feedback_visibility_timeout_seconds" {
  description = "Visibility timeout of the feedback queue in seconds. Null means 6 x notifier_timeout, AWS's guidance for a queue that is a Lambda event source (time for Lambda to retry a throttled batch). A value must be at least 6 x notifier_timeout (checked at plan) and at most 43200. The notifier also sets a message's visibility itself (ChangeMessageVisibility) to wait out a GitHub rate limit."
  type        = number
  default     = null

  validation {
    condition     = var.feedback_visibility_timeout_seconds == null || (try(var.feedback_visibility_timeout_seconds >= 6, false) && try(var.feedback_visibility_timeout_seconds <= 43200, false) && try(floor(var.feedback_visibility_timeout_seconds) == var.feedback_visibility_timeout_seconds, false))
    error_message = "feedback_visibility_timeout_seconds must be null or a whole number from 6 to 43200."
  }
}

variable "feedback_max_receive_count" {
  description = "Receives of one feedback message before SQS moves it to the feedback dead-letter queue. Each failed notifier attempt (GitHub unreachable, the App not installed, a bad key) counts one; at the default 6 x 30 s visibility, 10 receives ride out about half an hour of GitHub trouble. SQS allows 1-1000."
  type        = number
  default     = 10

  validation {
    condition     = var.feedback_max_receive_count >= 1 && var.feedback_max_receive_count <= 1000 && floor(var.feedback_max_receive_count) == var.feedback_max_receive_count
    error_message = "feedback_max_receive_count must be a whole number from 1 to 1000."
  }
}

variable "notifier_zip_path" {
  description = "Path of the notifier function's deployment package. Null means `<module>/../target/lambda/notifier/bootstrap.zip`, where `make lambda FUNCTION=notifier` (cargo lambda) writes it from the repository root. Built for lambda_architecture, like the webhook. The file must exist at plan time when feedback_enabled is true."
  type        = string
  default     = null

  validation {
    condition     = var.notifier_zip_path == null || can(regex("\\.zip$", var.notifier_zip_path))
    error_message = "notifier_zip_path must name a .zip file."
  }
}

variable "notifier_memory_size" {
  description = "Memory of the notifier function in MB (128-10240; CPU scales with it). It signs a short-lived JWT for GitHub and makes a few HTTPS calls per event: 128 MB is enough."
  type        = number
  default     = 128

  validation {
    condition     = var.notifier_memory_size >= 128 && var.notifier_memory_size <= 10240 && floor(var.notifier_memory_size) == var.notifier_memory_size
    error_message = "notifier_memory_size must be a whole number of MB from 128 to 10240."
  }
}

variable "notifier_timeout" {
  description = "Notifier function timeout in seconds (1-900) for one batch of at most notifier_batch_size events, each a few GitHub API calls. The feedback queue's visibility timeout is at least 6 times this."
  type        = number
  default     = 30

  validation {
    condition     = var.notifier_timeout >= 1 && var.notifier_timeout <= 900 && floor(var.notifier_timeout) == var.notifier_timeout
    error_message = "notifier_timeout must be a whole number of seconds from 1 to 900."
  }
}

variable "notifier_reserved_concurrency" {
  description = "Reserved concurrent executions of the notifier. Null (the default) leaves it unreserved: notifier_maximum_concurrency already caps how many batches run at once, without the throttling (and receives counted towards the dead-letter queue) that a reserved ceiling below the event source's concurrency causes. When both are set, notifier_maximum_concurrency must not exceed it (checked at plan)."
  type        = number
  default     = null

  validation {
    condition     = var.notifier_reserved_concurrency == null || (try(var.notifier_reserved_concurrency >= 1, false) && try(floor(var.notifier_reserved_concurrency) == var.notifier_reserved_concurrency, false))
    error_message = "notifier_reserved_concurrency must be null or a whole number >= 1 (0 would disable the function)."
  }
}

variable "notifier_batch_size" {
  description = "Feedback events per notifier invocation (the event source mapping's batch size). A FIFO queue allows 1-10; the notifier reports failed events one by one (ReportBatchItemFailures), so a failure does not repeat the whole batch."
  type        = number
  default     = 10

  validation {
    condition     = var.notifier_batch_size >= 1 && var.notifier_batch_size <= 10 && floor(var.notifier_batch_size) == var.notifier_batch_size
    error_message = "notifier_batch_size must be a whole number from 1 to 10 (the FIFO maximum)."
  }
}

variable "notifier_maximum_concurrency" {
  description = "Most notifier invocations the event source mapping runs at once (its scaling_config, 2-1000); this bounds the GitHub API calls in flight (an installation's rate limit is shared by all its calls). Null removes the cap: Lambda then scales with the number of pull requests (message groups) that have events."
  type        = number
  default     = 5

  validation {
    condition     = var.notifier_maximum_concurrency == null || (try(var.notifier_maximum_concurrency >= 2, false) && try(var.notifier_maximum_concurrency <= 1000, false) && try(floor(var.notifier_maximum_concurrency) == var.notifier_maximum_concurrency, false))
    error_message = "notifier_maximum_concurrency must be null or a whole number from 2 to 1000."
  }
}

variable "notifier_rust_log" {
  description = "RUST_LOG of the notifier: tracing's EnvFilter directives (for example `info` or `info,kubetempura_notifier=debug`). Lambda's application_log_level (log_level) filters the JSON logs as well."
  type        = string
  default     = "info"

  validation {
    condition     = can(regex("^[A-Za-z0-9_:=,.\\[\\]{}-]{1,256}$", var.notifier_rust_log))
    error_message = "notifier_rust_log must be 1-256 characters of EnvFilter directives (letters, digits and _ : = , . [ ] { } -)."
  }
}

variable "github_api_url" {
  description = "Base URL of the GitHub REST API the notifier calls, without a trailing slash: `https://api.github.com` for github.com, `https://HOST/api/v3` for GitHub Enterprise Server."
  type        = string
  default     = "https://api.github.com"

  validation {
    condition     = can(regex("^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\\s?#]*[^\\s/?#])?$", var.github_api_url))
    error_message = "github_api_url must be an https:// URL without a trailing slash, query or fragment (https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server)."
  }
}

variable "github_app_secret_arn" {
  description = "ARN of an existing Secrets Manager secret holding the GitHub App's credentials as JSON `{\"appId\": \"...\", \"privateKey\": \"-----BEGIN RSA PRIVATE KEY-----...\"}`. Null makes the module create an empty secret whose value you put yourself (README, \"Creating the GitHub App\"); Terraform never holds the key."
  type        = string
  default     = null

  validation {
    condition     = var.github_app_secret_arn == null || can(regex("^arn:aws[a-zA-Z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+$", var.github_app_secret_arn))
    error_message = "github_app_secret_arn must be a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>-<suffix>)."
  }
}

variable "github_app_secret_kms_key_arn" {
  description = "With github_app_secret_arn: the customer managed KMS key that encrypts that existing secret, so the notifier may kms:Decrypt through Secrets Manager. Null when it uses the AWS managed key. (A secret created here uses kms_key_arn.)"
  type        = string
  default     = null

  validation {
    condition     = var.github_app_secret_kms_key_arn == null || can(regex("^arn:aws[a-zA-Z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$", var.github_app_secret_kms_key_arn))
    error_message = "github_app_secret_kms_key_arn must be a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)."
  }
}

variable "feedback_queue_age_alarm_threshold_seconds" {
  description = "Alarm when the oldest event in the feedback queue is older than this many seconds: the notifier is failing, throttled or disabled, and pull requests show stale states (60-1209600)."
  type        = number
  default     = 900

  validation {
    condition     = var.feedback_queue_age_alarm_threshold_seconds >= 60 && var.feedback_queue_age_alarm_threshold_seconds <= 1209600
    error_message = "feedback_queue_age_alarm_threshold_seconds must be from 60 to 1209600."
  }
}

# ---------------------------------------------------------------------------------------------
# One webhook, many clusters (fanout.tf, modules/appliers): an SNS FIFO topic and a queue per
# applier. Empty (the default): the single queue above, exactly as without these inputs.

variable "appliers" {
  description = "Appliers (clusters, or teams within a cluster) sharing this webhook, by name (1-30 lowercase letters, digits or `-`; their queues are `<name>-<applier>.fifo` and `<name>-<applier>-dlq.fifo`). Empty (the default): the single queue, no topic. With entries the function publishes to an SNS FIFO topic (TOPIC_ARN instead of QUEUE_URL) and each applier gets its own FIFO queue and dead-letter queue, alarms and IAM policy, the queue subscribed to the topic with raw message delivery and a filter policy on the message attributes `repository` and `owner`: `repositories` (`owner/name`, exact), `repository_prefixes` (`owner/` or `owner/name-start`, a prefix of `owner/name`), `owners` (logins, exact). An event matching any of them is delivered; an applier with none gets every event. Matching is case-sensitive: spell names as GitHub does. Per-applier options left null take the module's: max_receive_count, visibility_timeout_seconds, message_retention_seconds, dlq_message_retention_seconds, create_alarms, queue_age_alarm_threshold_seconds. `use_module_identity = true` (at most one applier) gives that applier's permissions to the module's own applier role or user; other appliers' clusters attach `appliers[<name>].policy_arn` to a role of their own. Validated in modules/appliers."
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
  default = {}
}

variable "keep_single_queue" {
  description = "With appliers: keep the single event queue, its dead-letter queue, their alarms and the module identity's permissions on them, although the function no longer sends to it. For the upgrade from the single queue: keep it while the old applier drains it (and its dead-letter queue), then set false, which deletes both queues with anything still in them. No effect without appliers (the single queue is the setup)."
  type        = bool
  default     = false
}
