# frozen_string_literal: true

# Loads the native extension (built by ext/tasker_core/extconf.rb, or `rake compile` in a
# checkout): tasker_core/tasker_core_native.so on the load path.
begin
  require "tasker_core/tasker_core_native"
rescue LoadError => e
  raise LoadError, "tasker-core-rb: the native extension is not built (#{e.message}). In a checkout, run " \
                   "`rake compile` at the repository root; otherwise reinstall the gem."
end
