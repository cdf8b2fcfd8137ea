#!/usr/bin/env bash
# Builds the Python package and runs its tests on SQLite and (with DATABASE_URL) PostgreSQL.
#
#   bindings-python/scripts/test.sh              # SQLite; PostgreSQL too when DATABASE_URL is set
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test bindings-python/scripts/test.sh
#   bindings-python/scripts/test.sh -k retry     # extra arguments go to pytest
#
# Creates bindings-python/.venv (git-ignored) with maturin, pytest, fastapi and httpx, builds the
# extension into it with `maturin develop`, checks the .pyi stubs against the built module and
# lints with ruff, then runs pytest. In CI (CI=true) PostgreSQL is required.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENV="$HERE/.venv"
cd "$ROOT"

log() { printf '\n== %s\n' "$*"; }

apt_install() {
  if command -v apt-get >/dev/null; then
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
  else
    echo "missing: $* (and no apt-get to install it)" >&2
    exit 1
  fi
}

PYTHON="${PYTHON:-python3}"
if ! command -v "$PYTHON" >/dev/null; then
  log "installing python3"
  apt_install python3 python3-venv python3-dev
fi
if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 9), sys.version' 2>/dev/null; then
  echo "Python >= 3.9 is required (found: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  log "installing python3-venv"
  apt_install python3-venv
fi
if ! command -v cargo >/dev/null; then
  echo "cargo (Rust) is required to build the extension" >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
export RUFF_CACHE_DIR="$HERE/.ruff_cache"
log "installing build and test tools"
python -m pip install -q --disable-pip-version-check --upgrade pip
# structlog: the events logging bridge's structlog path is tested, not skipped;
# prometheus-client: test_telemetry.py parses the /metrics text with its parser.
python -m pip install -q --disable-pip-version-check \
  "maturin>=1.16,<2" "pytest>=7" "fastapi>=0.100" "httpx>=0.24" "mypy>=1.10" "ruff>=0.5" \
  "structlog>=23" "prometheus-client>=0.17"

log "building the extension (maturin develop)"
maturin develop --quiet ${MATURIN_ARGS:-}

log "type checks: .pyi stubs against the built module (stubtest), the package (mypy)"
# (run from bindings-python/ so mypy's cache lands in its git-ignored .mypy_cache)
# The docs' Python snippets (docs/snippets/python/, run by tests/test_docs_snippets.py) are
# type-checked and linted with the package.
SNIPPETS="$ROOT/docs/snippets/python"
(cd "$HERE" && python -m mypy.stubtest tasker_core._native && python -m mypy --no-error-summary -p tasker_core \
  && python -m mypy --no-error-summary "$SNIPPETS")

log "linting (ruff)"
ruff check "$HERE/python" "$HERE/tests" "$HERE/examples" "$HERE/bench" "$SNIPPETS"
ruff format --check "$HERE/python" "$HERE/tests" "$HERE/examples" "$HERE/bench" "$SNIPPETS"

BACKENDS="sqlite"
if [ -n "${DATABASE_URL:-}" ] && [ -n "${RABBITMQ_URL:-}" ]; then
  BACKENDS="sqlite,postgres,postgres_rabbitmq"
elif [ -n "${DATABASE_URL:-}" ]; then
  BACKENDS="sqlite,postgres"
elif [ "${CI:-}" = "true" ]; then
  echo "CI=true but DATABASE_URL is not set: the PostgreSQL tests cannot run" >&2
  exit 1
else
  echo "note: DATABASE_URL is not set; running the SQLite tests only" >&2
fi
export TASKER_TEST_BACKENDS="${TASKER_TEST_BACKENDS:-$BACKENDS}"

log "pytest (backends: $TASKER_TEST_BACKENDS)"
python -m pytest "$HERE/tests" -q -p no:cacheprovider "$@"
