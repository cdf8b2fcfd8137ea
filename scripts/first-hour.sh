#!/usr/bin/env bash
# A new user's first hour, in CI: `tasker init` a project in each language outside the
# repository, set it up, run its tests, start its worker and run a task through it; then the
# per-language generator tests (cli/tests/scaffold.rs with TASKER_SCAFFOLD_PROJECTS=1: a handler
# of every step type added, the project's tests, ruff / rubocop / tsc --strict / clippy).
#
#   scripts/first-hour.sh                      # all four languages
#   scripts/first-hour.sh python rust          # some of them
#   TASKER_FIRST_HOUR_FRESH=1 scripts/first-hour.sh   # in a fresh clone of HEAD, built from nothing
#
# By default the projects use this checkout's packages, built here by scripts/build-packages.sh
# (which this script runs; it is incremental, so after scripts/test-all.sh it takes seconds). The
# projects themselves start from nothing but what `tasker init` wrote. With
# TASKER_FIRST_HOUR_FRESH=1 the checkout is a fresh clone of HEAD in a temporary directory, with
# its own target directory: slow (everything is compiled), but nothing built here is used.
set -euo pipefail
cd "$(dirname "$0")/.."

languages=("$@")
[ ${#languages[@]} -gt 0 ] || languages=(python ruby typescript rust)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tasker-first-hour.XXXXXX")
worker_pid=""
cleanup() {
  # The worker's process group (it was started with setsid): npm and cargo run children.
  if [ -n "$worker_pid" ]; then kill -TERM -- "-$worker_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

source_dir=$PWD
if [ "${TASKER_FIRST_HOUR_FRESH:-0}" = 1 ]; then
  echo "==> fresh clone of $(git rev-parse HEAD) into $tmp/tasker"
  git clone --quiet --no-local "$PWD" "$tmp/tasker"
  git -C "$tmp/tasker" -c advice.detachedHead=false checkout --quiet --detach "$(git rev-parse HEAD)"
  source_dir="$tmp/tasker"
  export CARGO_TARGET_DIR="$tmp/target"
fi
target_dir="${CARGO_TARGET_DIR:-$source_dir/target}"

echo "==> the tasker CLI and the packages (scripts/build-packages.sh)"
(cd "$source_dir" && cargo build -q -p tasker-cli)
needs_packages=0
for lang in "${languages[@]}"; do [ "$lang" = rust ] || needs_packages=1; done
if [ "$needs_packages" = 1 ]; then (cd "$source_dir" && scripts/build-packages.sh >/dev/null); fi
# The user's PATH has `tasker` on it.
mkdir -p "$tmp/bin"
ln -s "$target_dir/debug/tasker" "$tmp/bin/tasker"
export PATH="$tmp/bin:$PATH" TASKER_SOURCE="$source_dir"
# Generated projects must not see this repository's environment.
unset VIRTUAL_ENV PYTHONPATH RUBYLIB RUBYOPT NODE_PATH TASKER_DATABASE_URL DATABASE_URL TASKER_CONFIG_ROOT TASKER_ENV

# Runs the worker of the project in the current directory, creates a task and checks its result.
run_worker_and_task() {
  local lang=$1 run=$2 log="$tmp/worker-$1.log"
  setsid bash -c "exec $run" >"$log" 2>&1 &
  worker_pid=$!
  for _ in $(seq 1 600); do
    grep -q "worker serving" "$log" && break
    kill -0 "$worker_pid" 2>/dev/null || { cat "$log" >&2; echo "first-hour: the $lang worker exited" >&2; return 1; }
    sleep 0.5
  done
  grep -q "worker serving" "$log" || { cat "$log" >&2; echo "first-hour: the $lang worker did not start" >&2; return 1; }
  local out uuid
  out=$(tasker task create --namespace "first_$lang" --name greeting --context '{"name": "Ada"}' --wait 60)
  uuid=$(head -1 <<<"$out")
  tasker task get "$uuid" --json | python3 -c '
import json, sys
task = json.load(sys.stdin)
state, result = task["task"]["state"], task["steps"][0]["results"]
assert state == "complete", f"task {state}: {task}"
assert result == {"greeting": "Hello, Ada!"}, result
uuid = task["task"]["task_uuid"]
print(f"    task {uuid}: {state}, {result}")'
  kill -TERM -- "-$worker_pid" 2>/dev/null || true
  wait "$worker_pid" 2>/dev/null || true
  worker_pid=""
}

for lang in "${languages[@]}"; do
  project="$tmp/first_$lang"
  echo "==> $lang: tasker init, setup, tests, worker + a task"
  tasker init "$project" --language "$lang" >/dev/null
  cd "$project"
  case "$lang" in
    python)
      bin/setup >/dev/null
      .venv/bin/python -m pytest -q
      run_worker_and_task python ".venv/bin/python worker.py"
      ;;
    ruby)
      bin/setup >/dev/null
      rspec
      run_worker_and_task ruby "ruby worker.rb"
      ;;
    typescript)
      bin/setup >/dev/null
      npm test --silent
      npm run --silent typecheck
      run_worker_and_task typescript "npm run --silent worker"
      ;;
    rust)
      # The checkout's target directory: what it built is reused where the features agree.
      CARGO_TARGET_DIR="$target_dir" cargo test -q
      CARGO_TARGET_DIR="$target_dir" cargo build -q
      run_worker_and_task rust "env CARGO_TARGET_DIR=$target_dir cargo run -q"
      ;;
    *)
      echo "first-hour: unknown language '$lang' (python, ruby, typescript, rust)" >&2
      exit 2
      ;;
  esac
  cd "$source_dir"
done

echo "==> generators: a handler of every step type in each language (cli/tests/scaffold.rs)"
filters=()
for lang in "${languages[@]}"; do filters+=("a_${lang}_project"); done
(cd "$source_dir" && TASKER_SCAFFOLD_PROJECTS=1 cargo test -q -p tasker-cli --test scaffold -- "${filters[@]}")
echo "==> first hour passed: ${languages[*]}"
