# Checks of infra/ (the Kubernetes install), included from the top-level Makefile.
# No cluster and no Docker engine here; these checks need kubectl from $(VENV), the pinned
# checkers in $(CHECKS_VENV) and cargo:
#   1. kustomize: infra/ and every overlay of infra/overlays/ render (`kubectl kustomize`);
#   2. kubernetes-validate --strict against Kubernetes $(INFRA_KUBE_VERSION) (offline, bundled
#      schemas) on the rendered install and on what every example renders; kinds without a
#      bundled schema (VirtualService, HTTPRoute) only warn;
#   3. checkov on each rendered install, every skip carrying its reason inline (checkov.io/skipN
#      annotations in infra/base/deployment.yaml);
#   4. settings: every variable the applier reads is documented in infra/README.md, and every
#      KUBETEMPURA_* name in infra/base/applier.env is one the applier reads;
#   5. examples: each renders with `kubetempura render` without warnings;
#   6. the control plane: every example (and what it renders), the install and every overlay apply
#      server-side to the control plane with the real kubectl, and Go-template text survives
#      rendering byte for byte (tests/tests/e2e/infra_examples.rs, run by `make test-rust`).
# All steps run even when one fails, so one run shows every problem; the target then fails.

INFRA_DIR          := $(CURDIR)/infra
INFRA_OVERLAYS     := $(sort $(notdir $(wildcard $(INFRA_DIR)/overlays/*)))
INFRA_EXAMPLES     := $(sort $(wildcard $(INFRA_DIR)/examples/*.yaml))
INFRA_KUBE_VERSION := 1.37.0
INFRA_RENDER_SHA   := 32f7bfe8b7279912ce1eb6dfb6653ee297936cf7
# The pull request the examples are rendered for: labelled `preview`, with the `build` check run
# and the `CI` workflow passed (what reviewapp-lifecycle.yaml's policy and gate ask for), so every
# example is deployed (`render` prints its policy preview on stderr; warnings start `warning:`).
INFRA_RENDER_PR    := --label preview --check check-run:build=success --check workflow:CI=success

.PHONY: test-infra
test-infra: $(VENV)/.installed $(CHECKS_VENV)/.installed ## Kubernetes install checks: kustomize, kubernetes-validate, checkov, examples render and apply to the control plane
	@# The binary the Rust tests use (the workspace's feature set): `cargo run -p` would build
	@# the applier's dependencies a second time with the applier's features alone.
	$(CARGO) build --quiet --locked --bins --workspace
	@status=0; out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	echo "== kustomize: infra/ and overlays: $(INFRA_OVERLAYS)"; \
	$(VENV)/bin/kubectl kustomize $(INFRA_DIR) > $$out/install-base.yaml || status=1; \
	for o in $(INFRA_OVERLAYS); do \
	  $(VENV)/bin/kubectl kustomize $(INFRA_DIR)/overlays/$$o > $$out/install-$$o.yaml || status=1; \
	done; \
	echo "== examples: kubetempura render"; \
	for f in $(INFRA_EXAMPLES); do \
	  n=$$(basename $$f); \
	  if $(TARGET_DIR)/debug/kubetempura render -f $$f --pr 1 \
	       --sha $(INFRA_RENDER_SHA) $(INFRA_RENDER_PR) > $$out/example-$$n 2> $$out/example-$$n.err; then \
	    if grep -q 'warning:' $$out/example-$$n.err || ! grep -q 'phase: Applied' $$out/example-$$n.err; then \
	      echo "$$n renders with warnings or is not deployed:"; cat $$out/example-$$n.err; status=1; fi; \
	  else echo "$$n does not render:"; cat $$out/example-$$n.err; status=1; fi; \
	done; \
	echo "== kubernetes-validate --strict (Kubernetes $(INFRA_KUBE_VERSION))"; \
	$(CHECKS_VENV)/bin/kubernetes-validate --strict --quiet -k $(INFRA_KUBE_VERSION) $$out/*.yaml || status=1; \
	echo "== checkov"; \
	for f in $$out/install-*.yaml; do \
	  echo "-- $$(basename $$f)"; \
	  $(CHECKS_VENV)/bin/checkov -f $$f --framework kubernetes --skip-download --quiet --compact || status=1; \
	done; \
	echo "== settings: applier variables vs infra/README.md and infra/base/applier.env"; \
	known=$$(grep -ohE '"(QUEUE_URL|KUBETEMPURA_[A-Z_]+)"' $(CURDIR)/applier/src/*.rs | tr -d '"' | sort -u); \
	[ -n "$$known" ] || { echo "no variables found in applier/src"; status=1; }; \
	for v in $$known; do \
	  grep -qF "\`$$v\`" $(INFRA_DIR)/README.md || { echo "infra/README.md does not document $$v"; status=1; }; \
	done; \
	for v in $$(grep -oE '^[# ]*KUBETEMPURA_[A-Z_]+=' $(INFRA_DIR)/base/applier.env | tr -d '#= '); do \
	  echo "$$known" | grep -qx "$$v" || { echo "infra/base/applier.env: $$v is not a variable the applier reads"; status=1; }; \
	done; \
	exit $$status
# Step 6 (tests/tests/e2e/infra_examples.rs) runs with every other Rust test in `make test-rust`:
#   cargo nextest run -p kubetempura-tests --test e2e infra_examples::
