#!/usr/bin/env bash
# Builds the npm package `tasker-core` (native addon + TypeScript) and runs its tests on SQLite
# and PostgreSQL, and on PostgreSQL with RabbitMQ carrying the messages when RABBITMQ_URL is set.
# Runnable on a fresh machine: installs what it needs.
#
#   bindings-node/scripts/test.sh             # DATABASE_URL must point at PostgreSQL
#   TASKER_SKIP_POSTGRES=1 bindings-node/scripts/test.sh   # SQLite only (local runs)
#   TASKER_NODE_SKIP_PACK=1 ...               # skip the npm pack / install check
set -euo pipefail

cd "$(dirname "$0")/../.."

log() { printf '\n== %s\n' "$*"; }

# --- toolchain ------------------------------------------------------------------------------
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  log "installing Node.js and npm (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
node -e '
  const [maj, min] = process.versions.node.split(".").map(Number);
  if (maj < 20 || (maj === 20 && min < 17)) {
    console.error(`Node.js >= 20.17 is needed (found ${process.versions.node})`);
    process.exit(1);
  }'
command -v cargo >/dev/null || { echo "cargo is needed to build the native addon" >&2; exit 1; }

if [[ -z "${DATABASE_URL:-}" && "${TASKER_SKIP_POSTGRES:-}" != "1" ]]; then
  echo "DATABASE_URL is not set: the PostgreSQL half of the suite cannot run." >&2
  echo "Export DATABASE_URL=postgres://... (or TASKER_SKIP_POSTGRES=1 for SQLite only)." >&2
  exit 1
fi

# --- dependencies and build -----------------------------------------------------------------
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  # `npm install`, not `npm ci`: npm 11's ci rejects this lockfile for lacking other
  # platforms' optional packages of @napi-rs/cli (npm/cli#4828), even freshly regenerated.
  log "npm install"
  npm install --no-audit --no-fund
fi

log "npm run build (native addon, release; TypeScript)"
npm run build

log "tsc --noEmit --strict (package, tests, example, bench)"
npx tsc --noEmit --strict -p tsconfig.json

log "cargo fmt --check / clippy (tasker-node)"
cargo fmt -p tasker-node -- --check
cargo clippy -q -p tasker-node -- -D warnings

# --- tests ----------------------------------------------------------------------------------
log "node --test (SQLite$( [[ -n "${DATABASE_URL:-}" ]] && echo ', PostgreSQL')$( [[ -n "${DATABASE_URL:-}" && -n "${RABBITMQ_URL:-}" ]] && echo ', PostgreSQL with RabbitMQ'))"
if [[ "${TASKER_SKIP_POSTGRES:-}" != "1" ]]; then export TASKER_REQUIRE_POSTGRES=1; fi
node --import tsx --test --test-concurrency=2 bindings-node/test/*.test.ts

# --- the package installs into another project ----------------------------------------------
if [[ "${TASKER_NODE_SKIP_PACK:-}" != "1" ]]; then
  log "npm pack, install the tarball into a scratch project, use it"
  SCRATCH=$(mktemp -d)
  trap 'rm -rf "$SCRATCH"' EXIT
  npm pack --silent --pack-destination "$SCRATCH" >/dev/null
  TARBALL=$(ls "$SCRATCH"/tasker-core-*.tgz)
  mkdir "$SCRATCH/app"
  cp bindings-node/test/fixtures/diamond.yaml "$SCRATCH/app/"
  # Copied, so that `require("tasker-core")` resolves from the scratch node_modules.
  cp bindings-node/scripts/pack-smoke.js "$SCRATCH/app/smoke.js"
  (
    cd "$SCRATCH/app"
    npm init -y >/dev/null
    npm install --no-audit --no-fund --silent "$TARBALL"
    node smoke.js
  )
fi
echo
echo "tasker-node: all checks passed"
