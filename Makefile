# kubetempura task runner. The README's two commands are `make demo` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        := $(CURDIR)/.venv
CHECKS_VENV := $(CURDIR)/.venv-checks
export PATH := $(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export CARGO_TERM_COLOR ?= never
CARGO       ?= cargo
GO          ?= go
NEXTEST_VERSION := 0.9.143
CARGO_FUZZ_VERSION := 0.13.2
CARGO_BLOAT_VERSION := 0.12.1
# cargo-fuzz, pinned, in the project (.tools/, not committed): one folder per version.
CARGO_FUZZ_ROOT := $(CURDIR)/.tools/cargo-fuzz-$(CARGO_FUZZ_VERSION)
CARGO_BLOAT_ROOT := $(CURDIR)/.tools/cargo-bloat-$(CARGO_BLOAT_VERSION)
# Where cargo puts binaries: honours CARGO_TARGET_DIR like cargo does.
TARGET_DIR  := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
CONTROLPLANE := $(CURDIR)/tests/controlplane/bin/kube-controlplane

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
deps: $(VENV)/.installed $(CHECKS_VENV)/.installed node_modules/.installed controlplane ## Install the pinned test tools (emulators, kubectl, checkers, fixtures) and build the control plane
	@command -v cargo-nextest >/dev/null || $(CARGO) install --locked cargo-nextest --version $(NEXTEST_VERSION)

# The real Kubernetes control plane of the tests and the demo: etcd, kube-apiserver and
# kube-controller-manager from the Kubernetes v1.37 Go modules (tests/controlplane/go.mod).
# Rebuilt when its Go sources or module files change. The version is stamped as Kubernetes' own
# build does (kubectl refuses an unparsable one).
CONTROLPLANE_SRC := $(shell find tests/controlplane -name '*.go' -o -name go.mod -o -name go.sum)
.PHONY: controlplane
controlplane: $(CONTROLPLANE) ## Build the test control plane (tests/controlplane/bin/kube-controlplane)

$(CONTROLPLANE): $(CONTROLPLANE_SRC)
	@command -v $(GO) >/dev/null || { echo "controlplane: Go (1.26) is required to build tests/controlplane"; exit 2; }
	cd tests/controlplane && v=$$($(GO) list -m -f '{{.Version}}' k8s.io/kubernetes) && \
	  minor=$$(echo "$$v" | cut -d. -f2) && pkg=k8s.io/component-base/version && \
	  $(GO) build -ldflags "-X $$pkg.gitVersion=$$v -X $$pkg.gitMajor=1 -X $$pkg.gitMinor=$$minor -X $$pkg.gitTreeState=clean" \
	    -o bin/kube-controlplane .

# ---------------------------------------------------------------------------------------------
# Checks and tests.

.PHONY: fmt-check
fmt-check: ## Check formatting
	$(CARGO) fmt --all -- --check

.PHONY: lint
lint: ## Clippy with warnings denied
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: test-rust
test-rust: deps ## All Rust tests (unit, property, end to end on one shared control plane)
	$(CARGO) build --quiet --locked --bins --workspace
	@# What `cargo lambda watch` runs (`cargo run --bin webhook`): its own feature set, built here
	@# once rather than inside the first test that starts the function.
	$(CARGO) build --quiet --locked --bin webhook
	@# And the function's feature set alone, as `make lambda` builds it, which lambda_runtime_e2e
	@# runs (`harness::tools::built_binary`): built here, not inside a timed test.
	$(CARGO) build --quiet --locked -p kubetempura-webhook --bin webhook
	tools/with-controlplane.sh $(CARGO) nextest run --workspace --locked --no-fail-fast

.PHONY: test-real-cluster
test-real-cluster: deps ## The end-to-end walkthrough against KUBETEMPURA_E2E_KUBECONFIG (a real cluster)
	@test -n "$${KUBETEMPURA_E2E_KUBECONFIG:-}" || { echo "set KUBETEMPURA_E2E_KUBECONFIG to a real cluster's kubeconfig"; exit 2; }
	$(CARGO) build --quiet --locked --bins --workspace
	$(CARGO) nextest run -p kubetempura-tests --test e2e walkthrough_e2e::the_sample_reviewapp_walkthrough_runs_end_to_end

.PHONY: test
test: deps fmt-check lint test-rust fuzz-smoke test-terraform test-infra ## Everything CI runs

.PHONY: crds
crds: ## Regenerate infra/crds/crds.yaml from the Rust types
	$(CARGO) run --quiet -p kubetempura-applier -- crd > infra/crds/crds.yaml

# ---------------------------------------------------------------------------------------------
# The deployable Lambda zips: target/lambda/$(FUNCTION)/bootstrap.zip, where terraform/ looks
# for them (FUNCTION=webhook, the default, or notifier).

ARCH ?= arm64
FUNCTION ?= webhook
.PHONY: lambda
lambda: $(VENV)/.installed ## Build a function's bootstrap.zip (FUNCTION=webhook|notifier, ARCH=arm64|x86_64)
	cargo-lambda lambda build --profile release-lambda --$(subst x86_64,x86-64,$(ARCH)) --output-format zip -p kubetempura-$(FUNCTION)
	@ls -l $(TARGET_DIR)/lambda/$(FUNCTION)/bootstrap.zip

$(CARGO_BLOAT_ROOT)/bin/cargo-bloat:
	$(CARGO) install --locked cargo-bloat --version $(CARGO_BLOAT_VERSION) --root $(CARGO_BLOAT_ROOT)

.PHONY: bloat
bloat: $(CARGO_BLOAT_ROOT)/bin/cargo-bloat ## What the webhook function's binary is made of: the largest crates and functions (release-lambda profile, symbols kept)
	PATH=$(CARGO_BLOAT_ROOT)/bin:$$PATH $(CARGO) bloat --profile release-lambda-bloat -p kubetempura-webhook --bin webhook --crates -n 30
	PATH=$(CARGO_BLOAT_ROOT)/bin:$$PATH $(CARGO) bloat --profile release-lambda-bloat -p kubetempura-webhook --bin webhook -n 25

.PHONY: bench-coldstart
bench-coldstart: $(VENV)/.installed node_modules/.installed ## Cold-start benchmark: the webhook function beside a lambda_http hello-world, both built with the release-lambda profile (RUNS=30)
	cargo-lambda lambda build --profile release-lambda --x86-64 -p kubetempura-webhook --bin webhook
	cargo-lambda lambda build --profile release-lambda --x86-64 -p kubetempura-webhook --example hello-world
	$(CARGO) build --quiet --locked -p kubetempura-tests --bin coldstart
	$(TARGET_DIR)/debug/coldstart --runs $(or $(RUNS),30) \
	  --webhook $(TARGET_DIR)/lambda/webhook/bootstrap --hello $(TARGET_DIR)/lambda/hello-world/bootstrap

# ---------------------------------------------------------------------------------------------
# Demo.

.PHONY: demo
demo: $(VENV)/.installed node_modules/.installed controlplane ## The whole system on loopback: play the walkthrough with signed deliveries (DEMO_KUBECONFIG=path for a real cluster)
	$(CARGO) build --quiet --bins -p kubetempura-applier -p kubetempura-webhook -p kubetempura-notifier -p kubetempura-tests
	$(TARGET_DIR)/debug/kubetempura-demo

# ---------------------------------------------------------------------------------------------
# Fuzzing (fuzz/, its own workspace): cargo-fuzz / libFuzzer on everything a stranger can send.

FUZZ_SECONDS ?= 180
FUZZ_SMOKE_SECONDS ?= 10

$(CARGO_FUZZ_ROOT)/bin/cargo-fuzz:
	$(CARGO) install --locked cargo-fuzz --version $(CARGO_FUZZ_VERSION) --root $(CARGO_FUZZ_ROOT)

.PHONY: fuzz
fuzz: $(CARGO_FUZZ_ROOT)/bin/cargo-fuzz ## Run every fuzz target for FUZZ_SECONDS (default 180) each
	PATH=$(CARGO_FUZZ_ROOT)/bin:$$PATH FUZZ_SECONDS=$(FUZZ_SECONDS) tools/fuzz.sh

.PHONY: fuzz-smoke
fuzz-smoke: $(CARGO_FUZZ_ROOT)/bin/cargo-fuzz ## Run every fuzz target for FUZZ_SMOKE_SECONDS (default 10) each
	PATH=$(CARGO_FUZZ_ROOT)/bin:$$PATH FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) tools/fuzz.sh

.PHONY: fuzz-seeds
fuzz-seeds: node_modules/.installed ## Rewrite the seed corpora fuzz/corpus/ from the octokit examples and infra/examples
	cd fuzz && $(CARGO) run --quiet --example seed-corpora

-include terraform/terraform.mk
-include infra/infra.mk

# Fallbacks while a part has no checks of its own yet.
.PHONY: test-terraform test-infra
