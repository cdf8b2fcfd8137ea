#!/usr/bin/env bash
# Builds the three language packages in place, for the demo and the cross-language tests:
#   Python  — bindings-python/.venv with the extension (maturin develop)
#   Ruby    — the native extension next to bindings-ruby/lib (rake compile)
#   Node    — node_modules and the compiled package (npm run build)
# Installs missing system packages with apt-get. Safe to re-run: builds are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

echo "==> Python package"
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then apt_install python3-venv; fi
if [ ! -x bindings-python/.venv/bin/python ]; then python3 -m venv bindings-python/.venv; fi
bindings-python/.venv/bin/python -m pip install -q --disable-pip-version-check "maturin>=1.16,<2" "pytest>=7"
(
  export VIRTUAL_ENV="$PWD/bindings-python/.venv" PATH="$PWD/bindings-python/.venv/bin:$PATH"
  maturin develop --quiet
)

echo "==> Ruby gem (native extension)"
missing=()
command -v ruby >/dev/null || missing+=(ruby ruby-dev)
command -v rake >/dev/null || missing+=(rake)
[ -e /usr/lib/x86_64-linux-gnu/libclang.so ] || ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
ruby -e 'require "mkmf"' 2>/dev/null || missing+=(ruby-dev)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
rake compile

echo "==> Node package"
if ! command -v npm >/dev/null; then apt_install nodejs npm; fi
# `npm install`, not `npm ci`: see bindings-node/scripts/test.sh.
if [ ! -d node_modules ]; then npm install --no-audit --no-fund; fi
npm run build --silent
