# frozen_string_literal: true

# Handlers used by the workflow fixtures. Each returns its value plus the names of the
# dependency results it saw, so that the specs can check what was passed between steps.
module RbSpec
  NOT_A_HANDLER = "a string constant"

  def self.seen(context)
    context.dependency_results.keys.sort
  end

  module Linear
    # Squares the task's even_number (first step) or the previous step's value.
    class Square < TaskerCore::StepHandler::Base
      def call(context)
        source = config.fetch("source")
        base = source == "input" ? context.input.fetch("even_number") : context.dependency_result(source).fetch("value")
        success(result: { value: base * base, seen: RbSpec.seen(context) }, metadata: { "squared" => base })
      end
    end
  end

  module Tree
    class Root < TaskerCore::StepHandler::Base
      handler_name "tree.root"

      def call(context)
        { "value" => context.input.fetch("n"), "seen" => RbSpec.seen(context) }
      end
    end

    class Scale < TaskerCore::StepHandler::Base
      handler_name "tree.scale"

      def call(context)
        { "value" => context.dependency_result("tree_root")["value"] * config["factor"], "seen" => RbSpec.seen(context) }
      end
    end

    class Offset < TaskerCore::StepHandler::Base
      handler_name "tree.offset"

      def call(context)
        parent = context.dependency_results.values.first
        { "value" => parent["value"] + config["offset"], "seen" => RbSpec.seen(context) }
      end
    end

    class Sum < TaskerCore::StepHandler::Base
      handler_name "tree.sum"

      def call(context)
        { "value" => context.dependency_results.values.sum { |r| r["value"] }, "seen" => RbSpec.seen(context) }
      end
    end
  end

  module Mixed
    class Init < TaskerCore::StepHandler::Base
      def call(context)
        { value: context.input.fetch("n"), seen: RbSpec.seen(context) }
      end
    end

    # Registered explicitly under "mixed.double"; the template names `method: double`.
    class Doubler
      def double(context)
        { "value" => context.dependency_result(:dag_init)["value"] * 2, "seen" => RbSpec.seen(context) }
      end
    end

    class SquareOfA < TaskerCore::StepHandler::Base
      def call(context)
        a = context.dependency_result("dag_a")["value"]
        success(result: { "value" => a * a, "seen" => RbSpec.seen(context) })
      end
    end

    class Sum < TaskerCore::StepHandler::Base
      def call(context)
        { "value" => context.dependency_results.values.sum { |r| r["value"] }, "seen" => RbSpec.seen(context) }
      end
    end
  end

  module Retry
    # Raises on the first `fail_times` attempts, then succeeds.
    class Flaky < TaskerCore::StepHandler::Base
      def call(context)
        raise IOError, "flaky failure on attempt #{context.attempt}" if context.attempt <= config.fetch("fail_times", 0)

        { "attempt" => context.attempt, "was_retry" => context.retry?, "last_retry" => context.last_retry? }
      end
    end

    class Permanent < TaskerCore::StepHandler::Base
      def call(_context)
        raise TaskerCore::PermanentError.new("card declined", error_type: "card_declined", metadata: { "code" => 51 })
      end
    end

    class AlwaysFails < TaskerCore::StepHandler::Base
      def call(context)
        raise ArgumentError, "bad thing on attempt #{context.attempt}"
      end
    end

    class RateLimited < TaskerCore::StepHandler::Base
      def call(context)
        raise TaskerCore::RetryableError.new("rate limited", retry_after: config["retry_after"]) if context.attempt == 1

        { "attempt" => context.attempt }
      end
    end

    class ReturnsFailureOnce < TaskerCore::StepHandler::Base
      def call(context)
        return failure(message: "not yet", error_type: "not_ready", retryable: true) if context.attempt == 1

        success(result: { "attempt" => context.attempt })
      end
    end

    class ReturnsPermanentFailure < TaskerCore::StepHandler::Base
      def call(_context)
        failure(message: "invalid account", error_type: "invalid_account", retryable: false)
      end
    end
  end

  module Bad
    class NanResult < TaskerCore::StepHandler::Base
      def call(_context) = { "ratio" => Float::NAN }
    end

    class ObjectResult < TaskerCore::StepHandler::Base
      def call(_context) = { "items" => [1, Object.new] }
    end

    class InvalidUtf8Result < TaskerCore::StepHandler::Base
      def call(_context) = { "name" => (+"caf\xC3").force_encoding("UTF-8") }
    end

    class CyclicResult < TaskerCore::StepHandler::Base
      def call(_context)
        h = { "a" => 1 }
        h["self"] = h
        h
      end
    end

    class Good < TaskerCore::StepHandler::Base
      def call(context) = { "ok" => true, "order" => context.input["order_id"] }
    end
  end

  # Overruns its timeout on the first attempt, then succeeds.
  class Sleepy < TaskerCore::StepHandler::Base
    LATE = Queue.new

    def call(context)
      if context.attempt == 1
        sleep config.fetch("sleep_first_attempt")
        LATE << context.step_uuid
      end
      { "attempt" => context.attempt }
    end
  end

  # Blocks until released through SLOW_GATE (or 30 s), reporting its start on SLOW_STARTED.
  class Slow < TaskerCore::StepHandler::Base
    STARTED = Queue.new
    GATE = Queue.new

    def call(context)
      STARTED << context.step_uuid
      Timeout.timeout(30) { GATE.pop }
      { "released" => true }
    rescue Timeout::Error
      { "released" => false }
    end
  end
end

# Block-style handlers of the diamond and mixed fixtures.
TaskerCore.step_handler("rb_diamond_start") do |context|
  n = context.input.fetch("n")
  { "value" => n * n, "seen" => RbSpec.seen(context) }
end

TaskerCore.step_handler("rb_diamond_branch_b") do |context|
  success(result: { "value" => context.dependency_result("diamond_start")["value"] + config["add"],
                    "seen" => RbSpec.seen(context) })
end

TaskerCore.step_handler("rb_diamond_branch_c") do |context|
  { "value" => context.dependency_result("diamond_start")["value"] * config["multiply"], "seen" => RbSpec.seen(context) }
end

TaskerCore.step_handler("rb_diamond_end") do |context|
  b = context.dependency_result("diamond_branch_b")["value"]
  c = context.dependency_result("diamond_branch_c")["value"]
  { "value" => b + c, "seen" => RbSpec.seen(context) }
end

TaskerCore.step_handler("rb_mixed_increment") do |context|
  { "value" => context.dependency_result("dag_init")["value"] + 1, "seen" => RbSpec.seen(context) }
end
