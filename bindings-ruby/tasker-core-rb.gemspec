# frozen_string_literal: true

require_relative "lib/tasker_core/version"

Gem::Specification.new do |spec|
  spec.name = "tasker-core-rb"
  spec.version = TaskerCore::VERSION
  spec.summary = "Tasker workflows with step handlers written as Ruby classes, on the Rust tasker-core engine"
  spec.description = <<~DESC
    Ruby bindings for tasker-core: register task templates (DAGs of steps), create and wait for
    tasks, and run step handlers as native Ruby classes in a worker, on SQLite or PostgreSQL.
    Includes RSpec helpers and a Railtie. The native extension is built with cargo at install time.
  DESC
  spec.license = "MIT"
  spec.authors = ["Tasker contributors"]
  spec.required_ruby_version = ">= 3.0"

  spec.files = Dir[
    "lib/**/*.rb", "lib/**/*.tt", "sig/**/*.rbs", "README.md", "tasker-core-rb.gemspec",
    "ext/tasker_core/extconf.rb", "ext/tasker_core/crate/**/*"
  ].reject { |f| File.directory?(f) || f.include?("/target/") }
  spec.require_paths = ["lib"]
  spec.extensions = ["ext/tasker_core/extconf.rb"]
  spec.metadata["rubygems_mfa_required"] = "true"
end
