#!/usr/bin/env bash
# Runs every test suite, on SQLite and on PostgreSQL:
#   Rust engine + CLI (cargo), Python (pytest), Ruby (RSpec), TypeScript (node --test),
#   and the cross-language end-to-end tests.
# PostgreSQL: DATABASE_URL if set, otherwise a throwaway cluster started and stopped here.
# RabbitMQ (the PostgreSQL + RabbitMQ runs of the scenario suites): RABBITMQ_URL if set, else
# the server on 127.0.0.1:5672, else one started here (scripts/lib/rabbitmq.sh).
# Installs what it needs (apt packages, a Python venv, node_modules) on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh
source scripts/lib/rabbitmq.sh
use_postgres
use_rabbitmq

# Each section's wall time, printed as it ends and again as a table at the end, so a CI log
# shows where the time went (the whole run must stay within CI's 90 minutes on 2 cores).
timings=()
section_name=""
run_start=$SECONDS
section() {
  end_section
  section_name="$1"
  section_start=$SECONDS
  echo "==> $1"
}
end_section() {
  if [ -n "$section_name" ]; then
    local took=$((SECONDS - section_start))
    timings+=("$(printf '%5d s  %s' "$took" "$section_name")")
    echo "<== ${took}s: $section_name"
  fi
  section_name=""
}
print_timings() {
  end_section
  echo "==> time per section (total $((SECONDS - run_start)) s)"
  printf '%s\n' "${timings[@]}"
}
# This replaces use_postgres's EXIT trap, so it stops the throwaway cluster too (a no-op with
# DATABASE_URL), and a RabbitMQ server started here.
trap 'print_timings; _tasker_pg_stop; _tasker_rabbit_stop' EXIT

section "API parity: docs/parity.md against the typed surfaces of every language"
python3 scripts/check-parity.py --self-test && python3 scripts/check-parity.py

section "Rust: format, lint, tests (engine + CLI)"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo build -p tasker-cli
cargo test

# The package suites test the release builds that scripts/build-packages.sh makes for the demo
# and the end-to-end tests (Ruby's and Node's test scripts build release already), so each
# package is compiled once here. bindings-python/scripts/test.sh alone builds debug.
export MATURIN_ARGS="${MATURIN_ARGS---release}"
for lang in python ruby node; do
  if [ -x "bindings-$lang/scripts/test.sh" ]; then
    section "$lang package"
    "bindings-$lang/scripts/test.sh"
  fi
done

section "REST API: schemathesis against /openapi.json (server/scripts/schemathesis.sh)"
server/scripts/schemathesis.sh

section "dashboard: headless Chromium end to end (server/dashboard/scripts/test.sh)"
server/dashboard/scripts/test.sh

if [ -x tests/run.sh ]; then
  section "cross-language end-to-end tests"
  tests/run.sh
fi
if [ -x scripts/first-hour.sh ]; then
  section "first hour: tasker init in each language, its tests, its worker and a task (scripts/first-hour.sh)"
  scripts/first-hour.sh
fi
if [ -x tests/faults/run.sh ]; then
  section "fault-injection suite (reduced sizes; TASKER_FAULTS_FULL=1 tests/faults/run.sh for the full ones)"
  tests/faults/run.sh
fi

# The fuzz targets' checks replay every saved input and seed inside `cargo test`
# (core/tests/fuzz_regressions.rs). The live fuzzer needs its own instrumented release build
# (about 15 minutes on 2 cores), so it runs here only when asked:
#   TASKER_FUZZ_SECONDS=60 scripts/test-all.sh, or scripts/fuzz.sh 600 on its own.
if [ "${TASKER_FUZZ_SECONDS:-0}" != 0 ]; then
  section "fuzzing, ${TASKER_FUZZ_SECONDS} s per target (scripts/fuzz.sh)"
  scripts/fuzz.sh "${TASKER_FUZZ_SECONDS}"
fi
end_section
echo "==> all test suites passed"
