#!/usr/bin/env bash
# Runs every test suite, on SQLite and on PostgreSQL:
#   Rust engine + CLI (cargo), Python (pytest), Ruby (RSpec), TypeScript (node --test),
#   and the cross-language end-to-end tests.
# PostgreSQL: DATABASE_URL if set, otherwise a throwaway cluster started and stopped here.
# Installs what it needs (apt packages, a Python venv, node_modules) on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh
use_postgres

echo "==> API parity: docs/parity.md against the typed surfaces of every language"
python3 scripts/check-parity.py --self-test && python3 scripts/check-parity.py

echo "==> Rust: format, lint, tests (engine + CLI)"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo build -p tasker-cli
cargo test

for lang in python ruby node; do
  if [ -x "bindings-$lang/scripts/test.sh" ]; then
    echo "==> $lang package"
    "bindings-$lang/scripts/test.sh"
  fi
done

echo "==> REST API: schemathesis against /openapi.json (server/scripts/schemathesis.sh)"
server/scripts/schemathesis.sh

echo "==> dashboard: headless Chromium end to end (server/dashboard/scripts/test.sh)"
server/dashboard/scripts/test.sh

if [ -x tests/run.sh ]; then
  echo "==> cross-language end-to-end tests"
  tests/run.sh
fi
if [ -x scripts/first-hour.sh ]; then
  echo "==> first hour: tasker init in each language, its tests, its worker and a task (scripts/first-hour.sh)"
  scripts/first-hour.sh
fi
if [ -x tests/faults/run.sh ]; then
  echo "==> fault-injection suite (reduced sizes; TASKER_FAULTS_FULL=1 tests/faults/run.sh for the full ones)"
  tests/faults/run.sh
fi

if [ -x scripts/fuzz.sh ]; then
  echo "==> fuzzing, ${TASKER_FUZZ_SECONDS:-60} s per target (scripts/fuzz.sh 600 for a longer run)"
  scripts/fuzz.sh "${TASKER_FUZZ_SECONDS:-60}"
fi
echo "==> all test suites passed"
