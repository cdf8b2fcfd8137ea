# frozen_string_literal: true

require "minitest"
require "tasker_core"

module TaskerCore
  module Testing
    # Minitest assertions for handler results, included into `Minitest::Test` together with
    # {Helpers} (`build_step_context`, `run_handler`). `actual` may be a {StepResult} or a
    # handler's raw return value (a Hash counts as a success).
    #
    #   require "tasker_core/testing/minitest"
    #
    #   class ChargeCardTest < Minitest::Test
    #     def test_charges
    #       result = run_handler(ChargeCard, build_step_context(input: { "amount" => 5 }))
    #       assert_step_success result
    #       assert_step_result({ "charged" => 5 }, result)
    #     end
    #   end
    module Assertions
      include Helpers

      def assert_step_success(actual, msg = nil)
        r = StepResult.from(actual)
        assert(r.success?, message(msg) { "Expected a successful step result, got #{r.inspect}" })
      end

      def assert_step_failure(actual, msg = nil)
        r = StepResult.from(actual)
        assert(r.failure?, message(msg) { "Expected a failed step result, got #{r.inspect}" })
      end

      def assert_step_retryable(actual, msg = nil)
        r = StepResult.from(actual)
        assert(r.failure? && r.retryable?, message(msg) { "Expected a retryable failure, got #{r.inspect}" })
      end

      # Compares like a stored result: Symbol and String keys alike.
      def assert_step_result(expected, actual, msg = nil)
        r = StepResult.from(actual)
        assert(r.success?, message(msg) { "Expected result #{expected.inspect}, but the step failed: #{r.inspect}" })
        assert_equal(Native.json_roundtrip(expected), Native.json_roundtrip(r.result), msg)
      end

      def assert_step_error_type(expected, actual, msg = nil)
        r = StepResult.from(actual)
        assert(r.failure? && r.error_type == expected.to_s,
               message(msg) { "Expected a failure of type #{expected.inspect}, got #{r.inspect}" })
      end
    end
  end
end

Minitest::Test.include(TaskerCore::Testing::Assertions) if defined?(Minitest::Test)
