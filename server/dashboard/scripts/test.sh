#!/usr/bin/env bash
# The dashboard's end-to-end tests in headless Chromium (server/dashboard/README.md), once on
# SQLite and once on PostgreSQL. Installs what they need when missing: Debian's chromium (and a
# font), node, the two npm dev packages. PostgreSQL is the server in DATABASE_URL (each
# deployment creates and drops a database of its own there), else a throwaway cluster
# (scripts/lib/postgres.sh).
#
#   server/dashboard/scripts/test.sh                       # builds the CLI (debug) first
#   TASKER_BIN=path/to/tasker server/dashboard/scripts/test.sh
#   TASKER_DASHBOARD_SCREENSHOTS=docs/img server/dashboard/scripts/test.sh   # refresh the docs' images
#   TASKER_DASHBOARD_BACKENDS=sqlite server/dashboard/scripts/test.sh        # one backend only
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(cd ../.. && pwd)

missing=()
[ -x /usr/lib/chromium/chromium ] || [ -n "${CHROMIUM_PATH:-}" ] || missing+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
command -v node >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]} (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/axe-core ]; then
  npm ci --no-audit --no-fund --silent
fi
if [ -z "${TASKER_BIN:-}" ]; then
  (cd "$root" && cargo build --quiet -p tasker-cli)
  export TASKER_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/tasker"
fi
for backend in ${TASKER_DASHBOARD_BACKENDS:-sqlite postgres}; do
  case "$backend" in
    sqlite) ;;
    postgres)
      # shellcheck source=../../../scripts/lib/postgres.sh
      . "$root/scripts/lib/postgres.sh"
      use_postgres
      command -v psql >/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null
      }
      export TASKER_DASHBOARD_PG_URL="$DATABASE_URL"
      ;;
    *) echo "unknown backend '$backend' (sqlite, postgres)" >&2; exit 2 ;;
  esac
  echo "==> dashboard browser tests on $backend"
  TASKER_DASHBOARD_BACKEND=$backend npm test
done
