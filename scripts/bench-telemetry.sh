#!/usr/bin/env bash
# The cost of telemetry on W2: `tasker bench --workloads w2` with export off, then on (spans and
# metrics to a local OTLP receiver that discards them, scripts/bench/otlp_sink.py), interleaved,
# ROUNDS times, on SQLite and PostgreSQL. Also the circuit breaker off vs on (PostgreSQL). Prints
# each run's W2 steps/s with the load average; the figures go in docs/benchmarks.md.
#
#   scripts/bench-telemetry.sh [ROUNDS] [W2_TASKS]          # default 3 rounds of 1000 tasks
#
# PostgreSQL: DATABASE_URL, else a throwaway cluster. Builds the release CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/postgres.sh
use_postgres
rounds="${1:-3}"
tasks="${2:-1000}"
cargo build --release -q -p tasker-cli
tasker="${CARGO_TARGET_DIR:-target}/release/tasker"
scratch="$(mktemp -d)"
python3 scripts/bench/otlp_sink.py "$scratch/endpoint" 2>"$scratch/sink.log" &
sink=$!
trap 'kill $sink 2>/dev/null || true; rm -rf "$scratch"' EXIT
for _ in $(seq 50); do [ -s "$scratch/endpoint" ] && break; sleep 0.1; done
endpoint="$(cat "$scratch/endpoint")"

w2() { # label, env...
  local label="$1"; shift
  local load; load="$(cut -d' ' -f1-3 /proc/loadavg)"
  env "$@" "$tasker" bench --backend "$backend" --workloads w2 --w2-tasks "$tasks" --json 2>/dev/null \
    | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["backends"][0]["w2_steps_per_s"]))' \
    | sed "s/^/$backend $label: /; s/\$/ steps\/s (load $load)/"
}

for round in $(seq "$rounds"); do
  echo "== round $round"
  for backend in sqlite postgres; do
    w2 "telemetry off" TASKER_TELEMETRY__ENABLED=false
    w2 "telemetry on " TASKER_TELEMETRY__ENABLED=true TASKER_TELEMETRY__OTLP_ENDPOINT="$endpoint" \
      TASKER_TELEMETRY__EXPORT_INTERVAL_MS=1000
  done
  backend=postgres
  w2 "breaker off  " TASKER_CIRCUIT_BREAKER__ENABLED=false
  w2 "breaker on   " TASKER_CIRCUIT_BREAKER__ENABLED=true
done
kill -TERM "$sink"; wait "$sink" 2>/dev/null || true
echo "OTLP receiver: $(cat "$scratch/sink.log")"
