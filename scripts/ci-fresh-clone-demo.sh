#!/usr/bin/env bash
# CI: the README's first command, `scripts/demo.sh`, from a clean clone with nothing pre-built.
#
# Clones this checkout's HEAD commit (committed files only) into a temporary directory, runs
# scripts/demo.sh there with a fresh CARGO_TARGET_DIR, venv and node_modules, and checks that it
# exits 0 and that every order of the workflow ends "complete". The temporary directory is
# removed on exit. A CI machine may hold packages installed by hand; this shows the demo does not
# depend on anything built in the main checkout (apt packages are system-wide and are not undone).
#
# Shared with the main checkout: only download caches (the cargo registry in CARGO_HOME, pip's
# and npm's caches), which hold sources and published packages, never build output.
# TASKER_FRESH_CACHES=1 gives the run empty caches too (everything is downloaded again).
#
# `--then CMD...` runs CMD in the clone after the demo passed, with the clone's target dir,
# venv and node_modules: CI runs every test suite that way (.ci/run), so the release builds
# of the three packages the demo made are the ones the suites test, instead of building them
# a second time in the main checkout (about 15 minutes of CI's 90 on 2 cores).
#
#   scripts/ci-fresh-clone-demo.sh                              # by hand: the demo only
#   scripts/ci-fresh-clone-demo.sh --then scripts/test-all.sh   # CI (.ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."

then_cmd=()
if [ "${1:-}" = "--then" ]; then
  shift
  [ $# -gt 0 ] || { echo "usage: $0 [--then CMD...]" >&2; exit 2; }
  then_cmd=("$@")
fi

rev=$(git rev-parse HEAD)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tasker-fresh-clone.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "==> fresh clone of $rev into $tmp/tasker"
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  echo "    (uncommitted changes in $PWD are not part of the clone)"
fi
git clone --quiet --no-local "$PWD" "$tmp/tasker"
git -C "$tmp/tasker" -c advice.detachedHead=false checkout --quiet --detach "$rev"

# Nothing built elsewhere may leak in: a fresh target dir, and no variables pointing at other
# builds, load paths or compiler caches.
unset VIRTUAL_ENV PYTHONPATH RUBYLIB RUBYOPT GEM_HOME GEM_PATH NODE_PATH \
  CARGO_BUILD_TARGET_DIR RUSTC_WRAPPER CARGO_BUILD_RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER
export CARGO_TARGET_DIR="$tmp/target"
if [ "${TASKER_FRESH_CACHES:-0}" = 1 ]; then
  # rustup's proxies in ~/.cargo/bin keep working: the toolchains live in RUSTUP_HOME.
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH" CARGO_HOME="$tmp/cargo-home"
  export PIP_NO_CACHE_DIR=1 npm_config_cache="$tmp/npm-cache"
fi

log="$tmp/demo.log"
echo "==> scripts/demo.sh (in the clone; each line prefixed with the seconds since it started)"
start=$SECONDS
set +e
(cd "$tmp/tasker" && scripts/demo.sh) 2>&1 | tee "$log" |
  while IFS= read -r line; do printf '[%5ds] %s\n' "$((SECONDS - start))" "$line"; done
rc=${PIPESTATUS[0]}
set -e
took=$((SECONDS - start))
echo "==> fresh-clone demo: exit $rc after ${took}s ($((took / 60)) min $((took % 60)) s)"

[ "$rc" = 0 ] || { echo "fresh-clone demo FAILED: scripts/demo.sh exited $rc" >&2; exit 1; }
orders=$(grep -cE '^order [0-9]+: ' "$log" || true)
complete=$(grep -cE '^order [0-9]+: complete$' "$log" || true)
if [ "$orders" = 0 ] || [ "$complete" != "$orders" ] || ! grep -qE "^All $orders orders finished" "$log"; then
  echo "fresh-clone demo FAILED: $complete of $orders orders complete" >&2
  exit 1
fi
echo "==> fresh-clone demo passed: all $orders orders complete"

if [ ${#then_cmd[@]} -gt 0 ]; then
  echo "==> in the clone: ${then_cmd[*]}"
  cd "$tmp/tasker"
  # Not exec: the EXIT trap removes the clone afterwards.
  "${then_cmd[@]}"
fi
