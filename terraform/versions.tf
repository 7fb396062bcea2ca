terraform {
  # 1.5: `check` blocks and the `import` block; nothing here needs anything newer.
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.28.0 added `invoked_via_function_url` to aws_lambda_permission: since October 2025 a
      # public function URL needs lambda:InvokeFunction (scoped to URL invocations) as well as
      # lambda:InvokeFunctionUrl, and no earlier provider can express the first statement
      # without making the function invocable by anyone through the Invoke API.
      version = ">= 6.28.0, < 7.0.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.5.0, < 4.0.0"
    }
  }
}
