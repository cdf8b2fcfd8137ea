#!/usr/bin/env bash
# Once per checkout: npm install, with tasker-core linked from a Tasker checkout (package.json:
# "tasker-core": "file:…"; the package is not on the npm registry). It must have been built
# there with `scripts/build-packages.sh`.
#
#   TASKER_SOURCE=/path/to/tasker bin/setup     # default: {{tasker_source}}
set -euo pipefail
cd "$(dirname "$0")/.."
source="${TASKER_SOURCE:-{{tasker_source}}}"
if ! compgen -G "$source/bindings-node/native/*.node" >/dev/null || [ ! -f "$source/bindings-node/dist/index.js" ]; then
  echo "bin/setup: no built tasker-core package in $source (bindings-node/native, bindings-node/dist)" >&2
  echo "  run scripts/build-packages.sh there, or point TASKER_SOURCE at a checkout where it ran" >&2
  exit 1
fi
if [ -n "${TASKER_SOURCE:-}" ]; then
  npm pkg set "dependencies.tasker-core=file:$source"
fi
npm install --no-audit --no-fund
echo "ready: tasker-core from $source"
