# frozen_string_literal: true

require_relative "../config/boot"
require "tasker_core/testing/rspec"

RSpec.configure do |config|
  config.disable_monkey_patching!
  config.order = :random
end
