#!/usr/bin/env bash
# Cross-language end-to-end tests (tests/e2e): worker processes in Python, Ruby and TypeScript
# sharing one database, on SQLite and PostgreSQL (DATABASE_URL), plus the PostgreSQL scale-out
# test. Builds the three packages first (scripts/build-packages.sh), and type-checks the
# TypeScript handlers and worker (tests/tsconfig.json, tsc --strict).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-packages.sh
# The handlers of test_telemetry.py use the OpenTelemetry SDK (its OTLP exporter brings the
# protobuf classes the test's receiver decodes with).
bindings-python/.venv/bin/python -m pip install -q --disable-pip-version-check \
  "opentelemetry-sdk>=1.25" "opentelemetry-exporter-otlp-proto-http>=1.25"
node_modules/.bin/tsc --noEmit --strict -p tests/tsconfig.json
if [ -z "${DATABASE_URL:-}" ]; then
  source scripts/lib/postgres.sh
  use_postgres
fi
cargo build -q -p tasker-cli
exec bindings-python/.venv/bin/python -m pytest -q tests/e2e "$@"
