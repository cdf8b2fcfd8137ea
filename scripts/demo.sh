#!/usr/bin/env bash
# The demo: builds the `tasker` CLI and runs the bundled example workflows on the embedded
# SQLite database, printing every step transition as it happens and the final results.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p tasker-cli
rm -f tasker-demo.db tasker-demo.db-shm tasker-demo.db-wal
exec target/release/tasker --database-url sqlite://./tasker-demo.db demo "$@"
