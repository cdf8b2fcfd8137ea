#!/usr/bin/env bash
# Coverage-guided fuzzing of the core's input boundaries (cargo fuzz / libFuzzer, fuzz/):
#   template_yaml  template YAML -> parse_str -> registration and task-creation checks
#   outcome_json   a handler's outcome JSON, as every binding hands it to the core
# Builds the targets, then runs each for a bounded time from its seed corpus
# (fuzz/corpus/<target>/, left unchanged: new inputs go to a scratch directory).
# Exits non-zero if any target crashes, panics, hangs (> 10 s on one input) or runs out of
# memory (> 2 GiB); the input is saved in fuzz/artifacts/<target>/. See fuzz/README.md.
#
#   scripts/fuzz.sh [seconds per target, default 60] [target...]
#
# FUZZ_SANITIZER=none builds without AddressSanitizer (about 3x the executions per second;
# default: address). Installs cargo-fuzz from crates.io when missing. Works on stable Rust:
# RUSTC_BOOTSTRAP=1 lets it accept the -Z flags cargo fuzz passes.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [seconds per target] [target...]" >&2; exit 2 ;;
esac
targets=("$@")
sanitizer="${FUZZ_SANITIZER:-address}"
[ ${#targets[@]} -gt 0 ] || targets=(template_yaml outcome_json)

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
if ! command -v c++ >/dev/null 2>&1; then
  # libfuzzer-sys compiles libFuzzer (C++).
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq g++ >/dev/null
  else
    echo "scripts/fuzz.sh needs a C++ compiler (g++ or clang++)" >&2
    exit 1
  fi
fi

echo "==> building fuzz targets"
if [ $# -eq 0 ]; then
  cargo fuzz build -s "$sanitizer"
else
  for t in "${targets[@]}"; do
    cargo fuzz build -s "$sanitizer" "$t"
  done
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
  echo "==> fuzzing $t for ${seconds}s"
  mkdir -p "$scratch/$t" "fuzz/artifacts/$t"
  # libFuzzer writes new inputs to the first directory only.
  if cargo fuzz run -s "$sanitizer" "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$scratch/$t.log" 2>&1; then
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$scratch/$t.log" || true
  else
    failed+=("$t")
    # The report: the sanitizer / panic message and the input it was saved as.
    grep -v -E '^(#[0-9]+|INFO:|MS:|\s*$)' "$scratch/$t.log" | tail -n 80 >&2
    echo "!! $t failed; inputs in fuzz/artifacts/$t/ (replay: RUSTC_BOOTSTRAP=1 cargo fuzz run $t <file>)" >&2
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "==> fuzzing found problems in: ${failed[*]}" >&2
  exit 1
fi
echo "==> fuzzing: no crash, hang or out-of-memory in ${targets[*]}"
