#!/usr/bin/env bash
# Builds the three language packages in place, for the demo and the cross-language tests:
#   Python  — bindings-python/.venv with the extension (maturin develop --release)
#   Ruby    — the native extension next to bindings-ruby/lib (rake compile, release)
#   Node    — node_modules and the compiled package (npm run build, release)
# All three are release builds: the demo and the benchmarks run through them (a debug Python
# extension made the polyglot workflow about twice as slow). The packages' own test scripts
# (bindings-*/scripts/test.sh) choose their profiles themselves.
# Installs missing system packages with apt-get. Safe to re-run: builds are incremental.
#
# Each check tests the thing the build really uses, not something that looks like it: a venv
# that has pip, the headers of the `ruby` on PATH, a libclang that bindgen can load (not
# libclang-cpp), a Node.js new enough for the package. After an install the check runs again,
# so a machine the packages cannot fix fails here with a reason instead of deep in a build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/libclang.sh
source scripts/lib/ruby.sh

die() {
  echo "build-packages: $*" >&2
  exit 1
}

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
apt_updated=0
apt_install() {
  echo "    installing (apt): $*"
  if [ "$apt_updated" = 0 ]; then
    $sudo apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- shared toolchain: cargo (rustup; Debian's is older than rust-version) and a C linker ------
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null || die "cargo is required: install Rust with https://rustup.rs"
command -v cc >/dev/null || apt_install build-essential
command -v cc >/dev/null || die "no C compiler/linker (cc) after installing build-essential"

echo "==> Python package"
venv=bindings-python/.venv
# A venv counts when its python runs pip: `python3 -m venv` without ensurepip (Debian without
# python3-venv) fails halfway and leaves a bin/python with no pip behind.
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  command -v python3 >/dev/null || apt_install python3
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    apt_install python3-venv
    python3 -m venv "$venv" || die "python3 -m venv fails even with python3-venv installed ($(command -v python3))"
  fi
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.16,<2" "pytest>=7"
(
  export VIRTUAL_ENV="$PWD/$venv" PATH="$PWD/$venv/bin:$PATH"
  # Release, like the Ruby and Node builds below, which then share its optimised build of the
  # core and its dependencies (only their binding crates are compiled on top).
  maturin develop --release --quiet
)

echo "==> Ruby gem (native extension)"
# The headers (scripts/lib/ruby.sh) and rake of the `ruby` on PATH: the Rakefile is run by it
# (`ruby -S rake`).
ruby_rake() { command -v rake >/dev/null && ruby -e 'require "rake"' 2>/dev/null; }
# bindgen (rb-sys) loads libclang at run time and parses Ruby's headers with clang's builtin
# headers: see scripts/lib/libclang.sh for where it looks and what it accepts.
libclang_ok() { find_libclang >/dev/null && libclang_headers_found; }
if [ -n "${LIBCLANG_PATH+set}" ] && ! find_libclang >/dev/null; then
  die "LIBCLANG_PATH=$LIBCLANG_PATH holds no libclang.so, libclang-<ver>.so or libclang.so.<N>; bindgen searches only there (unset it to use the system's)"
fi
missing=()
command -v ruby >/dev/null || missing+=(ruby)
ruby_headers || missing+=(ruby-dev)
ruby_rake || missing+=(rake)
libclang_ok || missing+=(libclang-dev)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
command -v ruby >/dev/null || die "no ruby on PATH after installing ruby"
ruby_headers || die "$(command -v ruby) has no headers (ruby.h, ruby/config.h); ruby-dev provides them for Debian's ruby"
ruby_rake || die "$(command -v ruby) cannot load rake"
find_libclang >/dev/null || die "no libclang that bindgen can load, even after installing libclang-dev"
libclang_headers_found || die "clang's builtin headers (lib/clang/*/include/stddef.h) are missing, even after installing libclang-dev"
ruby -S rake compile

echo "==> Node package"
# Debian 12's own nodejs is 18: too old for the package (engines: node >= 20), so an existing
# node is checked for its version, not just for being there.
if ! command -v node >/dev/null; then apt_install nodejs; fi
if ! command -v npm >/dev/null; then apt_install npm; fi
# shellcheck disable=SC2016 # JavaScript, not shell
node -e '
  const [maj, min] = process.versions.node.split(".").map(Number);
  if (maj < 20 || (maj === 20 && min < 17)) {
    console.error(`build-packages: Node.js >= 20.17 is needed (found ${process.versions.node} at ${process.execPath}); Debian 12 ships 18, use e.g. NodeSource`);
    process.exit(1);
  }'
# `npm install`, not `npm ci`: see bindings-node/scripts/test.sh. An existing node_modules counts
# only when it holds the build tools and is not older than the lockfile.
if [ ! -x node_modules/.bin/napi ] || [ ! -x node_modules/.bin/tsc ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm install --no-audit --no-fund
fi
npm run build --silent
