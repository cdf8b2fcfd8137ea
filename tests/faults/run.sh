#!/usr/bin/env bash
# Fault-injection suite and race test (tests/faults): PostgreSQL restarted mid-run, workers and
# orchestrators SIGKILLed, hostile results and templates, concurrent cancels racing retries.
#
#   tests/faults/run.sh                       # reduced sizes (CI)
#   TASKER_FAULTS_FULL=1 tests/faults/run.sh  # full sizes (>= 2,000 steps per scenario)
#   tests/faults/run.sh -k races              # extra arguments go to pytest
#
# Builds the three packages (scripts/build-packages.sh) and the CLI, installs psycopg into
# bindings-python/.venv, and uses DATABASE_URL for PostgreSQL when it is set, a throwaway cluster
# otherwise. The restart scenario always starts a cluster of its own.
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/build-packages.sh
cargo build -q -p tasker-cli
bindings-python/.venv/bin/python -m pip install -q --disable-pip-version-check -r tests/faults/requirements.txt
if [ -z "${DATABASE_URL:-}" ]; then
  source scripts/lib/postgres.sh
  use_postgres
fi
# Not exec: the EXIT trap of use_postgres stops the throwaway cluster.
bindings-python/.venv/bin/python -m pytest -q -rfE -p no:cacheprovider tests/faults "$@"
