#!/usr/bin/env bash
# `tasker bench` (W1 latency, W2 throughput; SQLite and PostgreSQL) beside the peer engines'
# benchmark scripts in ../shared/peers (DBOS, Celery, procrastinate, pgqueuer, graphile-worker,
# optionally Temporal), interleaved round by round, the PostgreSQL ones on the same server as
# ours. Prints one table with every engine's figures, the load average around each run, and the
# ratios ours / best peer.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test scripts/bench-compare.sh
#       [--rounds 2] [--peers dbos_pg,dbos_sqlite,celery,procrastinate,pgqueuer,graphile[,temporal]]
#       [--tasker target/release/tasker] [--out DIR]
#
# The peers are not part of this project: their scripts are run from a scratch copy (so their
# results/*.json land in --out, not in the shared directory), with their own environments as
# their README sets them up: a venv in /tmp/peers-venv (PyPI), Redis on port 6390 for Celery
# (apt), graphile-worker in /tmp/peers-node (npm). A peer that cannot be set up here is skipped
# with a message saying why. They create databases peers_* on the PostgreSQL server (the
# server of DATABASE_URL, whose user must be allowed to create databases without a password,
# like the peers' own pg.sh cluster); this script drops them at the end.
#
# W1 is 200 runs after 20 warm-up runs and W2 1,000 diamonds on every side (the peers' defaults
# and ours). The queue floors (procrastinate, pgqueuer, graphile-worker) drain 4,000 single jobs,
# not workflows: they are listed beside W2 as jobs/s, not counted as workflow peers.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

rounds=2
peers="dbos_pg,dbos_sqlite,celery,procrastinate,pgqueuer,graphile"
tasker=target/release/tasker
out=""
peers_src=${PEERS_DIR:-$repo/../shared/peers}
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --peers) peers=$2; shift 2 ;;
    --tasker) tasker=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "bench-compare: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

die() { echo "bench-compare: $*" >&2; exit 1; }
note() { echo "bench-compare: $*" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

case "${DATABASE_URL:-}" in
  postgres://* | postgresql://*) ;;
  *) die "DATABASE_URL=postgres://USER@HOST:PORT/DB is needed: the PostgreSQL server every engine runs on" ;;
esac
[ -d "$peers_src" ] || die "no peer scripts at $peers_src (set PEERS_DIR)"
command -v python3 >/dev/null || die "python3 is needed"
# The peers' scripts take the server from PEERS_PGHOST/PEERS_PGPORT and connect as `postgres`.
read -r pg_host pg_port pg_user < <(python3 -c '
import sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
print(u.hostname or "127.0.0.1", u.port or 5432, u.username or "postgres")' "$DATABASE_URL")
[ "$pg_user" = postgres ] || note "the peers connect as user postgres, not $pg_user"
export PEERS_PGHOST=$pg_host PEERS_PGPORT=$pg_port

if [ "$tasker" = target/release/tasker ]; then
  echo "==> cargo build --release -p tasker-cli"
  cargo build --release -q -p tasker-cli
fi
[ -x "$tasker" ] || die "no tasker binary at $tasker"

[ -n "$out" ] || out=$(mktemp -d "${TMPDIR:-/tmp}/bench-compare.XXXXXX")
mkdir -p "$out/results" "$out/logs"
work="$out/peers"
rm -rf "$work"
mkdir -p "$work"
# Scripts only (not their recorded results): they write results/ next to themselves.
find "$peers_src" -maxdepth 1 -type f \( -name '*.py' -o -name '*.js' -o -name '*.sh' -o -name '*.txt' \) \
  -exec cp {} "$work/" \;
echo "==> results and logs in $out"

# --- peer set-up (each failure skips the peers that need it) -------------------------------------
wanted() { [[ ",$peers," == *",$1,"* ]]; }
declare -A skip=()
python_peers=(dbos_pg dbos_sqlite celery procrastinate pgqueuer temporal)
venv=${PEERS_VENV:-/tmp/peers-venv}
need_python=0
for p in "${python_peers[@]}"; do wanted "$p" && need_python=1; done
if [ "$need_python" = 1 ]; then
  if ! "$venv/bin/python" -c 'import dbos, celery, procrastinate, pgqueuer, temporalio, psycopg' 2>/dev/null; then
    echo "==> peer venv $venv (pip install -r requirements-lock.txt)"
    if ! { [ -x "$venv/bin/python" ] || python3 -m venv "$venv"; } ||
      ! "$venv/bin/pip" install -q --disable-pip-version-check -r "$work/requirements-lock.txt" \
        >"$out/logs/peers-venv.log" 2>&1; then
      for p in "${python_peers[@]}"; do skip[$p]="its Python venv could not be set up (see $out/logs/peers-venv.log)"; done
    fi
  fi
fi
redis_started=0
if wanted celery && [ -z "${skip[celery]:-}" ]; then
  if ! command -v redis-server >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get install -y -qq redis-server >/dev/null 2>&1 || true
  fi
  if ! command -v redis-server >/dev/null; then
    skip[celery]="redis-server is not installed and apt-get could not install it"
  elif redis-cli -p 6390 ping >/dev/null 2>&1; then
    note "Redis already answers on port 6390; Celery uses it (its script flushes it)"
  elif (cd "$work" && ./redis.sh start >"$out/logs/redis.log" 2>&1); then
    redis_started=1
  else
    skip[celery]="Redis did not start on port 6390 (see $out/logs/redis.log)"
  fi
fi
node_modules=${PEERS_NODE_MODULES:-/tmp/peers-node/node_modules}
if wanted graphile; then
  if ! command -v node >/dev/null; then
    skip[graphile]="node is not installed"
  elif [ ! -d "$node_modules/graphile-worker" ] || [ ! -d "$node_modules/pg" ]; then
    echo "==> graphile-worker in $(dirname "$node_modules") (npm)"
    mkdir -p "$(dirname "$node_modules")"
    if ! (cd "$(dirname "$node_modules")" && { [ -f package.json ] || npm init -y >/dev/null; } &&
      npm install -s graphile-worker@0.17.3 pg@8.23.1) >"$out/logs/peers-node.log" 2>&1; then
      skip[graphile]="npm could not install graphile-worker (see $out/logs/peers-node.log)"
    fi
  fi
fi
export PEERS_NODE_MODULES=$node_modules PEERS_VENV=$venv
temporal_started=0
if wanted temporal && [ -z "${skip[temporal]:-}" ]; then
  if (cd "$work" && ./temporal.sh start >"$out/logs/temporal-server.log" 2>&1); then
    temporal_started=1
  else
    skip[temporal]="the Temporal dev server did not start (see $out/logs/temporal-server.log)"
  fi
fi

cleanup() {
  [ "$redis_started" = 1 ] && (cd "$work" && ./redis.sh stop >/dev/null 2>&1 || true)
  [ "$temporal_started" = 1 ] && (cd "$work" && ./temporal.sh stop >/dev/null 2>&1 || true)
  for db in peers_dbos peers_procrastinate peers_pgqueuer peers_graphile; do
    psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

# --- one measurement -----------------------------------------------------------------------------
# run_one NAME ROUND RESULT_FILE COMMAND…: runs COMMAND in the peers' scratch copy, keeps its log,
# and stores RESULT_FILE (the JSON it saved) as results/NAME_rROUND.json with the load averages.
run_one() {
  local name=$1 round=$2 result=$3
  shift 3
  if [ -n "${skip[$name]:-}" ]; then
    return 0
  fi
  local before after log="$out/logs/${name}_r$round.log"
  rm -f "$work/results/$result"
  before=$(load)
  echo "    $name: load $before"
  if (cd "$work" && timeout 1200 "$@") >"$log" 2>&1 && [ -f "$work/results/$result" ]; then
    after=$(load)
    python3 "$repo/scripts/bench/annotate.py" "$work/results/$result" "$out/results/${name}_r$round.json" \
      "$name" "$round" "$before" "$after"
  else
    note "$name (round $round) failed; see $log"
  fi
}

run_tasker() {
  local round=$1 before after log="$out/logs/tasker_r$round.log"
  before=$(load)
  echo "    tasker (sqlite, postgres): load $before"
  if "$tasker" bench --backend both --workloads w1,w2 --w1-runs 200 --w2-tasks 1000 \
    --postgres-url "$DATABASE_URL" --json >"$work/tasker.json" 2>"$log"; then
    after=$(load)
    python3 "$repo/scripts/bench/annotate.py" "$work/tasker.json" "$out/results/tasker_r$round.json" \
      tasker "$round" "$before" "$after"
  else
    note "tasker bench (round $round) failed; see $log"
  fi
}

run_peers() {
  local round=$1 py="$venv/bin/python"
  wanted dbos_pg && run_one dbos_pg "$round" dbos_pg.json "$py" dbos_bench.py --backend pg
  wanted dbos_sqlite && run_one dbos_sqlite "$round" dbos_sqlite.json "$py" dbos_bench.py --backend sqlite
  wanted celery && run_one celery "$round" celery_prefork_c2.json "$py" celery_bench.py --pool prefork -c 2
  wanted procrastinate && run_one procrastinate "$round" procrastinate_p1_c10.json \
    "$py" procrastinate_bench.py --procs 1 --concurrency 10
  wanted pgqueuer && run_one pgqueuer "$round" pgqueuer_b10.json "$py" pgqueuer_bench.py --batch-size 10
  wanted graphile && run_one graphile "$round" graphile_c10.json node graphile_bench.js --concurrency 10
  wanted temporal && run_one temporal "$round" temporal.json "$py" temporal_bench.py
  return 0
}

for name in "${!skip[@]}"; do
  wanted "$name" && note "skipping $name: ${skip[$name]}"
done
# Interleaved: ours first in odd rounds and last in even ones, so a drift in the machine's load
# does not always favour the same side.
for round in $(seq 1 "$rounds"); do
  echo "==> round $round of $rounds"
  if [ $((round % 2)) = 1 ]; then
    run_tasker "$round"
    run_peers "$round"
  else
    run_peers "$round"
    run_tasker "$round"
  fi
done

echo
skipped=""
for name in "${!skip[@]}"; do
  wanted "$name" && skipped+="$name: ${skip[$name]}"$'\n'
done
printf '%s' "$skipped" >"$out/skipped.txt"
python3 "$repo/scripts/bench/compare_table.py" "$out" | tee "$out/table.md"
