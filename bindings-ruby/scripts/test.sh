#!/usr/bin/env bash
# Ruby gem tests: installs what is missing (Debian packages), lints with RuboCop, builds the
# native extension with cargo, runs RSpec on SQLite and, when DATABASE_URL is set, on PostgreSQL too
# (and, when RABBITMQ_URL is set as well, on PostgreSQL with RabbitMQ carrying the messages), then
# builds the gem and installs it offline into a scratch GEM_HOME to check `require "tasker_core"`
# from outside the repository.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
#   RABBITMQ_URL='amqp://guest:guest@127.0.0.1:5672/%2f' bindings-ruby/scripts/test.sh
#
# TASKER_REQUIRE_POSTGRES=1 (implied when CI is set) fails instead of skipping PostgreSQL when
# DATABASE_URL is missing. TASKER_RUBY_SKIP_GEM=1 skips the gem build/install check.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ruby_dir="$(dirname "$here")"
root="$(dirname "$ruby_dir")"
cd "$root"

log() { printf '\n== %s\n' "$*"; }
# What bindgen really loads (not a libclang-cpp look-alike): see scripts/lib/libclang.sh.
source scripts/lib/libclang.sh
source scripts/lib/ruby.sh

# --- system packages -------------------------------------------------------------------------
missing=()
command -v ruby >/dev/null 2>&1 || missing+=(ruby)
ruby_headers || missing+=(ruby-dev)
command -v rake >/dev/null 2>&1 || missing+=(rake)
ruby -e 'require "rspec/core"' >/dev/null 2>&1 || missing+=(ruby-rspec)
ruby -e 'require "minitest"' >/dev/null 2>&1 || missing+=(ruby-minitest)
ruby -e 'require "rails"; require "rails/generators"; exit(Rails::VERSION::MAJOR >= 6 ? 0 : 1)' >/dev/null 2>&1 || missing+=(ruby-railties)
{ find_libclang >/dev/null && libclang_headers_found; } || missing+=(libclang-dev)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v rubocop >/dev/null 2>&1 || missing+=(rubocop)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo is required (install Rust: https://rustup.rs)" >&2; exit 1; }

# --- PostgreSQL ----------------------------------------------------------------------------------
if [ -n "${CI:-}" ]; then export TASKER_REQUIRE_POSTGRES="${TASKER_REQUIRE_POSTGRES:-1}"; fi
if [ -z "${DATABASE_URL:-}" ]; then
  if [ "${TASKER_REQUIRE_POSTGRES:-0}" = 1 ]; then
    echo "DATABASE_URL is not set but PostgreSQL tests are required (CI or TASKER_REQUIRE_POSTGRES=1)" >&2
    exit 1
  fi
  echo "warning: DATABASE_URL is not set: the PostgreSQL examples will be skipped" >&2
fi

# --- lint, build, specs --------------------------------------------------------------------------
log "rubocop"
(cd "$ruby_dir" && rubocop --config .rubocop.yml --format progress . ../Rakefile ../docs/snippets/ruby)
log "rake compile"
rake compile
log "rspec"
# The Rails generator runs the tasker CLI (it writes the files): the spec uses this debug build.
cargo build -q -p tasker-cli
(cd "$ruby_dir" && rspec)

# --- gem build + offline install ----------------------------------------------------------------
if [ "${TASKER_RUBY_SKIP_GEM:-0}" != 1 ]; then
  log "rake gem && gem install --local (scratch GEM_HOME)"
  rake gem
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  # The check is about packaging: an unoptimised build in the workspace's target dir is enough.
  TASKER_RUBY_PROFILE=dev CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}" \
    gem install --local --no-document --install-dir "$scratch/gems" pkg/tasker-core-rb-*.gem
  (cd "$scratch" && GEM_HOME="$scratch/gems" GEM_PATH="$scratch/gems" RUBYLIB= ruby -e '
    require "tasker_core"
    path = $LOADED_FEATURES.grep(/tasker_core_native/).first
    abort "loaded from the checkout, not the gem: #{path}" unless path.start_with?(ENV["GEM_HOME"])
    client = TaskerCore.connect(database_url: "sqlite://#{Dir.pwd}/installed.db")
    ctx = TaskerCore::Testing.build_step_context(input: { n: 2 })
    result = TaskerCore::Testing.run_handler(->(c) { { "n" => c.input["n"] * 2 } }, ctx)
    abort "unexpected #{result.inspect}" unless result.success? && result.result == { "n" => 4 }
    puts "installed gem OK: #{path} (#{client.backend})"
  ')
fi
