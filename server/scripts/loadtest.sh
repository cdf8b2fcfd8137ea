#!/usr/bin/env bash
# Load test of the REST API with wrk on loopback, bounded in time, on SQLite and PostgreSQL:
#   1. POST /v1/tasks          (create; each request a new task)
#   2. GET  /v1/tasks/{uuid}   (read one task)
#   3. overload: POST /v1/tasks with limits.max_in_flight = 4 and 64 connections — the excess
#      must answer 503 with Retry-After, and afterwards every 201 is a task in the database and
#      the server answers normally.
# Prints req/s, p50/p99 and the load average for each run (docs/benchmarks.md, "REST API").
#
#   server/scripts/loadtest.sh                 # builds the CLI in release first
#   TASKER_LOAD_SECONDS=10 TASKER_LOAD_CONNECTIONS=16 server/scripts/loadtest.sh
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test   (the PostgreSQL server; else skipped)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
secs=${TASKER_LOAD_SECONDS:-10}
conns=${TASKER_LOAD_CONNECTIONS:-16}
command -v wrk >/dev/null || { apt-get install -y -qq wrk >/dev/null 2>&1 || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }; }
if [ -z "${TASKER_BIN:-}" ]; then
  cargo build --quiet --release -p tasker-cli
  TASKER_BIN="${CARGO_TARGET_DIR:-$root/target}/release/tasker"
fi
work=$(mktemp -d)
server_pid=""
pg_db=""
stop_server() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""; fi
}
cleanup() {
  stop_server
  if [ -n "$pg_db" ]; then psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"namespace":"shop","name":"checkout","context":{"order_id":1}}'
LUA
cat > "$work/overload.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"namespace":"shop","name":"checkout","context":{"order_id":2}}'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) created = 0; shed = 0; retry_after = 0; other = 0 end
function response(status, headers, body)
  if status == 201 then created = created + 1
  elseif status == 503 then
    shed = shed + 1
    if headers["retry-after"] or headers["Retry-After"] then retry_after = retry_after + 1 end
  else other = other + 1 end
end
function done(summary, latency, requests)
  local c, s, r, o = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created"); s = s + t:get("shed"); r = r + t:get("retry_after"); o = o + t:get("other")
  end
  io.write(string.format("STATUS created=%d shed_503=%d with_retry_after=%d other=%d\n", c, s, r, o))
end
LUA

start_server() { # url [api-config]
  local url=$1
  : > "$work/serve.log"
  if [ -n "${2:-}" ]; then export TASKER_API_CONFIG=$2; else unset TASKER_API_CONFIG; fi
  "$TASKER_BIN" --database-url "$url" serve --http 127.0.0.1:0 2> "$work/serve.log" &
  server_pid=$!
  addr=""
  for _ in $(seq 1 100); do
    addr=$(sed -n 's|.*REST API on http://\([0-9.:]*\).*|\1|p' "$work/serve.log" | head -1)
    [ -n "$addr" ] && return 0
    sleep 0.1
  done
  cat "$work/serve.log" >&2
  echo "server did not start" >&2
  exit 1
}

summary() { # label wrk-output-file
  local rps p50 p99 non2xx
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$2")
  p50=$(awk '$1=="50%" {print $2}' "$2")
  p99=$(awk '$1=="99%" {print $2}' "$2")
  non2xx=$(awk -F': *' '/Non-2xx/ {print $2}' "$2")
  errors=$(grep -E "Socket errors" "$2" || true)
  printf '%-44s %10s req/s  p50 %-9s p99 %-9s non-2xx %-6s load %s %s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$errors"
}

run_backend() { # label url
  local label=$1 url=$2
  "$TASKER_BIN" --database-url "$url" template register server/tests/fixtures/orders.yaml >/dev/null
  start_server "$url"
  local base="http://$addr"
  wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$work/post.lua" "$base/v1/tasks" > "$work/post.txt"
  summary "$label POST /v1/tasks (c=$conns, ${secs}s)" "$work/post.txt"
  local uuid
  uuid=$(curl -sf "$base/v1/tasks?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["tasks"][0]["task_uuid"])')
  wrk -t2 -c"$conns" -d"${secs}s" --latency "$base/v1/tasks/$uuid" > "$work/get.txt"
  summary "$label GET /v1/tasks/{uuid} (c=$conns, ${secs}s)" "$work/get.txt"
  stop_server

  # Overload: 4 requests in flight at most, 64 connections.
  printf '[limits]\nmax_in_flight = 4\n' > "$work/overload.toml"
  start_server "$url" "$work/overload.toml"
  base="http://$addr"
  local before after
  before=$(count_tasks "$base")
  wrk -t2 -c64 -d"${secs}s" --latency -s "$work/overload.lua" "$base/v1/tasks" > "$work/over.txt"
  summary "$label overload POST (max_in_flight=4, c=64)" "$work/over.txt"
  grep '^STATUS' "$work/over.txt"
  after=$(count_tasks "$base")
  local created
  created=$(sed -n 's/^STATUS created=\([0-9]*\).*/\1/p' "$work/over.txt")
  local other
  other=$(sed -n 's/.* other=\([0-9]*\).*/\1/p' "$work/over.txt")
  local status
  status=$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/tasks?limit=1")
  # Every 201 is a task; the tasks beyond the 201s are the answers still on their way when wrk
  # stopped reading (at most one per connection).
  local unseen=$((after - before - created))
  echo "after overload: tasks before=$before after=$after (+$((after - before))), 201s=$created (+$unseen answered after wrk stopped reading), other statuses=$other, next GET -> $status"
  if [ "$unseen" -lt 0 ] || [ "$unseen" -gt 64 ] || [ "$other" != "0" ] || [ "$status" != "200" ]; then
    echo "OVERLOAD CHECK FAILED: lost or invented tasks, or errors" >&2
    exit 1
  fi
  stop_server
}

count_tasks() { # base: pages through GET /v1/tasks
  python3 - "$1" <<'PY'
import json, sys, urllib.request
base, n, cursor = sys.argv[1], 0, None
while True:
    url = base + "/v1/tasks?limit=500" + (f"&cursor={cursor}" if cursor else "")
    page = json.load(urllib.request.urlopen(url))
    n += len(page["tasks"])
    cursor = page["next_cursor"]
    if not cursor:
        break
print(n)
PY
}

echo "== REST API load test: wrk, ${secs}s per run, $(nproc) cores, release build"
run_backend "sqlite" "sqlite://$work/load.db"
if [ -n "${DATABASE_URL:-}" ] && [[ "$DATABASE_URL" == postgres* ]]; then
  pg_db="tasker_load_$$"
  psql "$DATABASE_URL" -qc "CREATE DATABASE $pg_db" >/dev/null
  pg_url=$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$DATABASE_URL" "$pg_db")
  run_backend "postgres" "$pg_url"
else
  echo "(PostgreSQL skipped: set DATABASE_URL=postgres://…)"
fi
