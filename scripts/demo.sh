#!/usr/bin/env bash
# The demo: one order-fulfilment workflow whose steps run in Python, Ruby and TypeScript worker
# processes, coordinated by the Rust core through an embedded SQLite database (no setup).
# Builds the three packages on first use (a few minutes), then runs in seconds.
#
#   scripts/demo.sh            the polyglot demo
#   scripts/demo.sh --rust     `tasker demo`: the bundled examples with built-in Rust handlers,
#                              printing every state transition live
set -euo pipefail
cd "$(dirname "$0")/.."
rm -f tasker-demo.db tasker-demo.db-shm tasker-demo.db-wal
if [ "${1:-}" = "--rust" ]; then
  shift
  cargo build --release -p tasker-cli
  exec target/release/tasker --database-url sqlite://./tasker-demo.db demo "$@"
fi
scripts/build-packages.sh
exec bindings-python/.venv/bin/python scripts/polyglot_demo.py --database-url sqlite://./tasker-demo.db "$@"
