# frozen_string_literal: true

module TaskerCore
  # Version of the tasker-core-rb gem.
  VERSION = "0.1.0"
end
