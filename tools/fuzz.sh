#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (or the targets named) for FUZZ_SECONDS each, one after the
# other, and prints libFuzzer's final stats line of each (executions per second, coverage).
#
#   FUZZ_SECONDS=180 tools/fuzz.sh [target ...]
#
# The pinned stable toolchain builds the targets: cargo-fuzz passes -Z flags, which stable takes
# with RUSTC_BOOTSTRAP=1 (set here); FUZZ_TOOLCHAIN=nightly uses a nightly instead. No
# sanitizer by default (FUZZ_SANITIZER=address to add one): the workspace forbids unsafe code,
# and what the fuzzer hunts here are panics, overflows (debug assertions are on) and the
# targets' own property checks, at about twice the executions per second of ASan.
#
# The committed seeds of fuzz/corpus/<target> are read; what the fuzzer finds goes to
# $FUZZ_CORPUS/<target> (default: under the target directory, never committed), crashes to
# fuzz/artifacts/<target>/. A crash fails the run: reproduce it with
#   cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none <target> artifacts/<target>/<file>
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-180}
sanitizer=${FUZZ_SANITIZER:-none}
target_dir=${CARGO_TARGET_DIR:-$root/target}
work=${FUZZ_CORPUS:-$target_dir/fuzz-corpus}
cargo=(cargo)
if [[ -n ${FUZZ_TOOLCHAIN:-} ]]; then
  cargo+=("+$FUZZ_TOOLCHAIN")
else
  export RUSTC_BOOTSTRAP=1
fi

cd "$root/fuzz"
if (($# > 0)); then
  targets=("$@")
else
  # Not `mapfile < <(…)`: a failing `cargo fuzz list` (cargo-fuzz missing) must fail the run,
  # never run zero targets and pass.
  listed=$("${cargo[@]}" fuzz list)
  mapfile -t targets <<<"$listed"
fi
if ((${#targets[@]} == 0)) || [[ -z ${targets[0]} ]]; then
  echo "fuzz: no targets to run" >&2
  exit 1
fi
for t in "${targets[@]}"; do "${cargo[@]}" fuzz build --sanitizer "$sanitizer" "$t"; done

summary=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  args=(-max_total_time="$seconds" -timeout=10 -print_final_stats=1)
  [[ -f dicts/$t.dict ]] && args+=(-dict="dicts/$t.dict")
  log=$work/$t.log
  echo "fuzz: $t for ${seconds}s (log: $log)"
  if ! "${cargo[@]}" fuzz run --sanitizer "$sanitizer" "$t" "$work/$t" "corpus/$t" -- "${args[@]}" >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $t failed: see fuzz/artifacts/$t/ and $log" >&2
    exit 1
  fi
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  speed=$(grep -E '^stat::average_exec_per_sec' "$log" | awk '{print $2}')
  final=$(grep -E '^#[0-9]+.*(DONE|pulse).*cov:' "$log" | tail -n 1)
  summary+=("$t: ${execs:-?} executions, ${speed:-?}/s; ${final:-no stats line}")
done
printf '%s\n' "${summary[@]}"
