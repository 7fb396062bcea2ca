# kubetempura task runner. The README's two commands are `make demo` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        := $(CURDIR)/.venv
CHECKS_VENV := $(CURDIR)/.venv-checks
export PATH := $(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export CARGO_TERM_COLOR ?= never
CARGO       ?= cargo
NEXTEST_VERSION := 0.9.143

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# ---------------------------------------------------------------------------------------------
# Tools: pinned, installed into the project (.venv, node_modules), never globally.

$(VENV)/.installed: tools/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements.txt
	touch $@

$(CHECKS_VENV)/.installed: tools/requirements-checks.txt
	python3 -m venv $(CHECKS_VENV)
	$(CHECKS_VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-checks.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

.PHONY: deps
deps: $(VENV)/.installed $(CHECKS_VENV)/.installed node_modules/.installed ## Install the pinned test tools (emulators, kubectl, checkers, fixtures)
	@command -v cargo-nextest >/dev/null || $(CARGO) install --locked cargo-nextest --version $(NEXTEST_VERSION)

# ---------------------------------------------------------------------------------------------
# Checks and tests.

.PHONY: fmt-check
fmt-check: ## Check formatting
	$(CARGO) fmt --all -- --check

.PHONY: lint
lint: ## Clippy with warnings denied
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: test-rust
test-rust: deps ## All Rust tests (unit, property, stand-in conformance, end to end)
	$(CARGO) build --quiet --locked --bins --workspace
	$(CARGO) nextest run --workspace --locked --no-fail-fast

.PHONY: test-real-cluster
test-real-cluster: deps ## The end-to-end walkthrough against KUBETEMPURA_E2E_KUBECONFIG (a real cluster)
	@test -n "$${KUBETEMPURA_E2E_KUBECONFIG:-}" || { echo "set KUBETEMPURA_E2E_KUBECONFIG to a real cluster's kubeconfig"; exit 2; }
	$(CARGO) build --quiet --locked --bins --workspace
	$(CARGO) nextest run -p kubetempura-tests --test walkthrough_e2e --run-ignored ignored-only

.PHONY: test
test: deps fmt-check lint test-rust test-terraform test-infra ## Everything CI runs

.PHONY: crds
crds: ## Regenerate infra/crds/crds.yaml from the Rust types
	$(CARGO) run --quiet -p kubetempura-applier -- crd > infra/crds/crds.yaml

# ---------------------------------------------------------------------------------------------
# The deployable Lambda zip (target/lambda/webhook/bootstrap.zip).

ARCH ?= arm64
.PHONY: lambda
lambda: $(VENV)/.installed ## Build the webhook function's bootstrap.zip (ARCH=arm64|x86_64)
	cargo-lambda lambda build --release --$(subst x86_64,x86-64,$(ARCH)) --output-format zip -p kubetempura-webhook
	@ls -l target/lambda/webhook/bootstrap.zip

# ---------------------------------------------------------------------------------------------
# Demo.

.PHONY: demo
demo: $(VENV)/.installed ## The whole system on loopback: play the walkthrough with signed deliveries (DEMO_KUBECONFIG=path for a real cluster)
	$(CARGO) build --quiet --bins -p kubetempura-applier -p kubetempura-webhook -p kubetempura-tests
	target/debug/kubetempura-demo

-include terraform/terraform.mk
-include infra/infra.mk

# Fallbacks while a part has no checks of its own yet.
.PHONY: test-terraform test-infra
