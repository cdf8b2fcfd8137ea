# frozen_string_literal: true

require "minitest"
require "tasker_core"

module TaskerCore
  module Testing
    # Minitest assertions for handler results (`assert_step_decision`, `assert_step_batches` for
    # decision and batchable steps, `assert_event_published` for domain events), included into `Minitest::Test` together with
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

      # A decision choosing exactly `expected` steps (any order); `[]` for decision_no_branches.
      def assert_step_decision(expected, actual, msg = nil)
        r = StepResult.from(actual)
        decision = r.success? ? r.decision : nil
        assert(decision, message(msg) { "Expected a decision, got #{r.inspect}" })
        assert_equal(Array(expected).map(&:to_s).sort, decision.steps.sort, msg)
      end

      # A batch outcome of `count` batches for `worker` (either may be nil); `count: 0` for
      # no_batches. Returns the outcome for further checks.
      def assert_step_batches(actual, worker: nil, count: nil, msg: nil)
        r = StepResult.from(actual)
        batches = r.success? ? r.batches : nil
        assert(batches, message(msg) { "Expected a batch outcome, got #{r.inspect}" })
        if count&.zero?
          assert(batches.no_batches?, message(msg) { "Expected no_batches, got #{batches.inspect}" })
        else
          refute(batches.no_batches?, message(msg) { "Expected batches, got no_batches" })
          assert_equal(worker.to_s, batches.worker, msg) if worker
          assert_equal(count, batches.worker_count, msg) if count
        end
        batches
      end

      def assert_step_error_type(expected, actual, msg = nil)
        r = StepResult.from(actual)
        assert(r.failure? && r.error_type == expected.to_s,
               message(msg) { "Expected a failure of type #{expected.inspect}, got #{r.inspect}" })
      end

      # The handler published the domain event `name` (with exactly `payload`, when given,
      # Symbol and String keys alike). Returns the published payload.
      def assert_event_published(name, actual, payload = nil, msg = nil)
        events = StepResult.from(actual).published_events.map { |e| Native.json_roundtrip(e) }
        found = events.find { |e| e["name"] == name.to_s }
        assert(found, message(msg) { "Expected #{name} to be published, got #{events.inspect}" })
        assert_equal(Native.json_roundtrip(payload), found["payload"], msg) unless payload.nil?
        found["payload"]
      end
    end
  end
end

Minitest::Test.include(TaskerCore::Testing::Assertions) if defined?(Minitest::Test)
