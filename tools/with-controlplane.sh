#!/usr/bin/env bash
# Runs a command beside one real Kubernetes control plane (tests/controlplane) shared by every
# test: starts kube-controlplane, exports KUBETEMPURA_TEST_KUBECONFIG (its admin kubeconfig),
# runs the command, then stops the control plane, also when the command fails or is
# interrupted. Each test works in namespaces of its own (tests/src/harness/install.rs).
#
#   tools/with-controlplane.sh cargo nextest run --workspace
#
# The control plane's log goes to $CONTROLPLANE_LOG (default: a file under the temporary
# directory, printed at the end); its last lines are printed when the command fails.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${KUBE_CONTROLPLANE:-$root/tests/controlplane/bin/kube-controlplane}
[[ -x $bin ]] || { echo "with-controlplane: $bin not found: run \`make controlplane\`" >&2; exit 2; }

dir=$(mktemp -d -t kubetempura-controlplane.XXXXXX)
log=${CONTROLPLANE_LOG:-$dir/kube-controlplane.log}
kubeconfig=$dir/kubeconfig
"$bin" --kubeconfig "$kubeconfig" >"$log" 2>&1 &
pid=$!

stop() {
  local status=$?
  if kill -0 "$pid" 2>/dev/null; then
    awk '/VmHWM/ { printf "with-controlplane: kube-controlplane peak resident memory %d MiB\n", $2 / 1024 }' \
      "/proc/$pid/status" 2>/dev/null || true
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  if [[ $status -ne 0 ]]; then
    echo "--- last lines of the control plane's log ($log) ---" >&2
    tail -n 40 "$log" >&2 || true
  fi
  [[ -n ${CONTROLPLANE_LOG:-} ]] || rm -rf "$dir"
  exit "$status"
}
trap stop EXIT
trap 'exit 130' INT TERM

started=$(date +%s.%N)
until [[ -s $kubeconfig ]]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "with-controlplane: kube-controlplane exited before it was ready" >&2
    exit 1
  fi
  if (( $(date +%s) - ${started%.*} > 120 )); then
    echo "with-controlplane: kube-controlplane not ready within 120s" >&2
    exit 1
  fi
  sleep 0.1
done
awk -v a="$started" -v b="$(date +%s.%N)" -v pid="$pid" \
  'BEGIN { printf "with-controlplane: kube-controlplane ready in %.1fs (pid %s)\n", b - a, pid }'

export KUBETEMPURA_TEST_KUBECONFIG=$kubeconfig
"$@"
