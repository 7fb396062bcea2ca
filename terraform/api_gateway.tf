# Optional (endpoint_type = "api_gateway"): an API Gateway HTTP API in front of the function
# instead of the function URL, for teams that need a custom domain (attach an
# aws_apigatewayv2_domain_name and an aws_apigatewayv2_api_mapping to output api_gateway_id) or
# per-route throttling (below). AWS WAF cannot be attached to an HTTP API: a team that needs
# WAF puts CloudFront with a web ACL in front of it. Only `POST /` is routed; anything else is
# answered 404 by API Gateway without invoking the function.

resource "aws_apigatewayv2_api" "webhook" {
  count = local.use_api_gateway ? 1 : 0

  name          = local.function_name
  description   = "kubetempura ${var.name}: GitHub pull-request webhook endpoint."
  protocol_type = "HTTP"

  tags = local.tags
}

resource "aws_apigatewayv2_integration" "webhook" {
  count = local.use_api_gateway ? 1 : 0

  api_id                 = aws_apigatewayv2_api.webhook[0].id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.webhook.invoke_arn
  payload_format_version = "2.0"
  # GitHub waits 10 s; API Gateway's own limit is 30 s.
  timeout_milliseconds = min(30000, var.lambda_timeout * 1000 + 1000)
}

resource "aws_apigatewayv2_route" "webhook" {
  #checkov:skip=CKV_AWS_309:GitHub cannot present IAM, JWT or Lambda-authorizer credentials; it signs every delivery (X-Hub-Signature-256) and the function verifies that HMAC, answering 401 otherwise.
  count = local.use_api_gateway ? 1 : 0

  api_id             = aws_apigatewayv2_api.webhook[0].id
  route_key          = "POST /"
  target             = "integrations/${aws_apigatewayv2_integration.webhook[0].id}"
  authorization_type = "NONE"
}

resource "aws_cloudwatch_log_group" "api_access" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (default 30): operational access logs; a year is the operator's choice, not a default.
  count = local.use_api_gateway ? 1 : 0

  name              = "/aws/apigateway/${local.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.log_kms_key_arn

  tags = local.tags
}

resource "aws_apigatewayv2_stage" "webhook" {
  count = local.use_api_gateway ? 1 : 0

  api_id      = aws_apigatewayv2_api.webhook[0].id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_burst_limit   = var.api_gateway_throttling_burst_limit
    throttling_rate_limit    = var.api_gateway_throttling_rate_limit
    detailed_metrics_enabled = false
  }

  # No headers or bodies: the delivery id is enough to correlate with GitHub and the function.
  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api_access[0].arn
    format = jsonencode({
      requestId          = "$context.requestId"
      requestTime        = "$context.requestTime"
      sourceIp           = "$context.identity.sourceIp"
      userAgent          = "$context.identity.userAgent"
      routeKey           = "$context.routeKey"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      integrationStatus  = "$context.integrationStatus"
      integrationError   = "$context.integrationErrorMessage"
      integrationLatency = "$context.integrationLatency"
    })
  }

  tags = local.tags
}

resource "aws_lambda_permission" "api_gateway" {
  count = local.use_api_gateway ? 1 : 0

  statement_id  = "KubetempuraApiGateway"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.webhook.function_name
  principal     = "apigateway.amazonaws.com"
  # Only this API (any stage, the one route).
  source_arn = "${aws_apigatewayv2_api.webhook[0].execution_arn}/*/*"
}
