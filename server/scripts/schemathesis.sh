#!/usr/bin/env bash
# Runs schemathesis (from PyPI, in a venv) against `tasker serve --http` on a temporary SQLite
# database, with auth on (one API key holding `*`): every operation of /openapi.json is
# exercised; the run fails on any server error, any response that violates the schema, and the
# other schemathesis checks listed below. Bounded: at most TASKER_SCHEMATHESIS_SECONDS (default
# 150) of fuzzing.
#
#   server/scripts/schemathesis.sh            # builds the CLI (debug) first
#   TASKER_BIN=path/to/tasker server/scripts/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
venv=${TASKER_SCHEMATHESIS_VENV:-$root/target/schemathesis-venv}
if [ ! -x "$venv/bin/schemathesis" ]; then
  echo "==> installing schemathesis into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet "schemathesis>=4,<5"
fi
if [ -z "${TASKER_BIN:-}" ]; then
  cargo build --quiet -p tasker-cli
  TASKER_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/tasker"
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

key="schemathesis-$(date +%s)-$$"
cat > "$work/api.toml" <<TOML
[auth]
enabled = true
[[auth.api_keys]]
subject = "schemathesis"
key = "$key"
permissions = ["*"]
TOML
db="sqlite://$work/tasker.db"
export TASKER_API_CONFIG="$work/api.toml"
"$TASKER_BIN" --database-url "$db" template register server/tests/fixtures/orders.yaml examples/templates >/dev/null
"$TASKER_BIN" --database-url "$db" task create --namespace shop --name checkout --context '{"order_id": 1}' >/dev/null

"$TASKER_BIN" --database-url "$db" serve --http 127.0.0.1:0 2> "$work/serve.log" &
server_pid=$!
addr=""
for _ in $(seq 1 100); do
  addr=$(sed -n 's|.*REST API on http://\([0-9.:]*\).*|\1|p' "$work/serve.log" | head -1)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$work/serve.log"; echo "the server did not start" >&2; exit 1; }
echo "==> schemathesis against http://$addr/openapi.json"

# The event stream never ends (Server-Sent Events): server/tests/routes.rs tests it instead.
"$venv/bin/schemathesis" run "http://$addr/openapi.json" \
  --header "X-API-Key: $key" \
  --exclude-path /v1/events/stream \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,ignored_auth,unsupported_method \
  --max-time "${TASKER_SCHEMATHESIS_SECONDS:-150}" \
  --max-examples "${TASKER_SCHEMATHESIS_EXAMPLES:-60}" \
  --workers 1 \
  --generation-database none \
  --no-color
