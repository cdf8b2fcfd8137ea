#!/usr/bin/env bash
# The demo: one order-fulfilment workflow whose steps run in Python, Ruby and TypeScript worker
# processes, coordinated by the Rust core through an embedded SQLite database (no setup).
# Builds the three packages on first use (a few minutes), then runs in seconds.
# `target/release/tasker demo` shows the same engine with built-in Rust handlers only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-packages.sh
rm -f tasker-demo.db tasker-demo.db-shm tasker-demo.db-wal
exec bindings-python/.venv/bin/python scripts/polyglot_demo.py --database-url sqlite://./tasker-demo.db "$@"
