# frozen_string_literal: true

require "set"

# Handlers of the recovery fixtures (recovery_*.yaml).
module RbSpec
  module Recovery
    @fixed = Set.new
    @lock = Mutex.new

    # From now on, Flaky succeeds for this task: the operator "deployed the fix".
    def self.fix(task_uuid)
      @lock.synchronize { @fixed << task_uuid }
    end

    def self.fixed?(task_uuid)
      @lock.synchronize { @fixed.include?(task_uuid) }
    end

    class Work < TaskerCore::StepHandler::Base
      def call(context)
        { "value" => context.step_name }
      end
    end

    # Returns the dependency results it received, so that a spec sees what an operator supplied.
    class Echo < TaskerCore::StepHandler::Base
      def call(context)
        { "received" => context.dependency_results }
      end
    end

    class Flaky < TaskerCore::StepHandler::Base
      def call(context)
        return { "fixed" => true, "attempt" => context.attempt } if Recovery.fixed?(context.task_uuid)

        message = "#{context.step_name} failed on attempt #{context.attempt}"
        raise TaskerCore::RetryableError.new(message, error_type: "Flaky") if context.input["fail"] == "retryable"

        raise TaskerCore::PermanentError.new("#{context.step_name} is broken", error_type: "Broken")
      end
    end

    class Sleep < TaskerCore::StepHandler::Base
      def call(context)
        deadline = Time.now + (context.input.fetch("sleep_ms", 300) / 1000.0)
        sleep 0.01 while Time.now < deadline && !context.cancelled?
        { "slept" => !context.cancelled? }
      end
    end
  end
end
