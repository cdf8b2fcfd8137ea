#!/usr/bin/env bash
# Once per checkout: checks that Ruby, RSpec and the tasker_core gem of a Tasker checkout are
# there (the gem is not on rubygems.org; config/boot.rb loads it from the checkout).
#
#   TASKER_SOURCE=/path/to/tasker bin/setup     # default: {{tasker_source}}
set -euo pipefail
cd "$(dirname "$0")/.."
source="${TASKER_SOURCE:-{{tasker_source}}}"
lib="${TASKER_RUBY_LIB:-$source/bindings-ruby/lib}"
command -v ruby >/dev/null || { echo "bin/setup: ruby is not on PATH (Debian: apt-get install ruby)" >&2; exit 1; }
ruby -e 'require "rspec/core"' 2>/dev/null || { echo "bin/setup: RSpec is missing (gem install rspec, or Debian: apt-get install ruby-rspec)" >&2; exit 1; }
if ! compgen -G "$lib/tasker_core/*.so" >/dev/null; then
  echo "bin/setup: no built tasker_core under $lib" >&2
  echo "  run scripts/build-packages.sh in $source, or point TASKER_SOURCE at a checkout where it ran" >&2
  exit 1
fi
TASKER_RUBY_LIB="$lib" ruby -r ./config/boot -e 'puts "ready: tasker_core #{TaskerCore::VERSION} from #{$LOADED_FEATURES.grep(/tasker_core\.rb/).first}"'
