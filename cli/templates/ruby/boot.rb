# frozen_string_literal: true

# Loads the tasker_core gem. It is not on rubygems.org: it comes from a Tasker checkout where
# `scripts/build-packages.sh` built it, named by TASKER_RUBY_LIB (its bindings-ruby/lib), else by
# TASKER_SOURCE, else the checkout `tasker init` ran from. An installed gem is used when none of
# these exists.
tasker_lib = ENV.fetch("TASKER_RUBY_LIB") do
  File.join(ENV.fetch("TASKER_SOURCE", "{{tasker_source}}"), "bindings-ruby", "lib")
end
$LOAD_PATH.unshift(tasker_lib) if File.directory?(tasker_lib) && !$LOAD_PATH.include?(tasker_lib)
require "tasker_core"

# The handlers: every file under handlers/ (in sorted order), so that each step's `callable` (a class
# name) resolves.
Dir[File.join(__dir__, "..", "handlers", "**", "*.rb")].each { |file| require File.expand_path(file) }
