# frozen_string_literal: true

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))

require "tasker_core"
require "tasker_core/testing/rspec"
require "securerandom"
require "tmpdir"
require "yaml"
require "timeout"

Dir[File.join(__dir__, "support", "**", "*.rb")].each { |f| require f }

RSpec.configure do |config|
  config.expect_with(:rspec) { |c| c.syntax = :expect }
  config.disable_monkey_patching!
  config.order = :defined
  config.include SpecSupport
  config.extend SpecSupport::Backends
  config.after(:suite) { SpecSupport.cleanup }
end
