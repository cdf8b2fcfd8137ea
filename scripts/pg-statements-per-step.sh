#!/usr/bin/env bash
# Statements and commits per step on PostgreSQL, as the server counts them (pg_stat_statements,
# which sees every statement a client sends, BEGIN and COMMIT included; the pool's connection
# checks are protocol messages it does not see). Starts a throwaway cluster with the extension
# loaded, runs `tasker bench` twice per workload with different sizes and divides the difference
# by the difference in steps, so start-up, migrations and warm-up cancel out.
#
#   scripts/pg-statements-per-step.sh            # uses target/release/tasker
#   TASKER_BIN=path/to/tasker scripts/pg-statements-per-step.sh
#   BREAKDOWN=1 scripts/pg-statements-per-step.sh   # also: each statement's calls per step
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/postgres.sh
source scripts/lib/postgres.sh
unset DATABASE_URL
export TASKER_PG_EXTRA_OPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=top -c pg_stat_statements.max=10000"
use_postgres
bin=${TASKER_BIN:-target/release/tasker}
[ -x "$bin" ] || { echo "no $bin: cargo build --release -p tasker-cli" >&2; exit 1; }
psql -X "$DATABASE_URL" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"

# Statements and commits run in databases other than `postgres` (the bench creates its own and
# drops it; its admin statements run in `postgres`).
counts() {
  psql -X "$DATABASE_URL" -tAc "SELECT coalesce(sum(calls), 0) || ' ' || coalesce(sum(calls) FILTER (WHERE query ILIKE 'commit%'), 0)
    FROM pg_stat_statements WHERE dbid <> (SELECT oid FROM pg_database WHERE datname = 'postgres')"
}

# Calls per step of each statement of the last run (the large one: start-up is a small share).
breakdown() { # breakdown STEPS
  psql -X "$DATABASE_URL" -tAF ' | ' -c "SELECT round(sum(calls)::numeric / $1, 2), left(regexp_replace(query, '\s+', ' ', 'g'), 110)
    FROM pg_stat_statements WHERE dbid <> (SELECT oid FROM pg_database WHERE datname = 'postgres')
    GROUP BY 2 HAVING sum(calls) >= $1 / 20 ORDER BY 1 DESC"
}

measure() { # measure LABEL STEPS_PER_UNIT SMALL LARGE ARGS-WITH-@N@
  local label=$1 per=$2 small=$3 large=$4; shift 4
  local results=()
  for n in "$small" "$large"; do
    psql -X "$DATABASE_URL" -qtAc "SELECT pg_stat_statements_reset()" >/dev/null
    "$bin" bench --backend postgres "${@//@N@/$n}" >/dev/null 2>&1
    results+=("$(counts)")
  done
  [ -n "${BREAKDOWN:-}" ] && breakdown "$(( large * per ))"
  read -r s1 c1 <<<"${results[0]}"
  read -r s2 c2 <<<"${results[1]}"
  python3 - "$label" "$per" "$small" "$large" "$s1" "$c1" "$s2" "$c2" <<'PY'
import sys
label, per, small, large, s1, c1, s2, c2 = sys.argv[1], *map(int, sys.argv[2:])
steps = (large - small) * per
print(f"{label}: {(s2 - s1) / steps:.2f} statements/step, {(c2 - c1) / steps:.2f} commits/step "
      f"({s2 - s1} statements, {c2 - c1} commits over {steps} steps)")
PY
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
measure "W1 (4-step chain, one at a time, client wait included)" 4 50 250 --workloads w1 --w1-runs @N@
measure "W2 (diamonds submitted at once)" 4 250 1250 --workloads w2 --w2-tasks @N@
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
