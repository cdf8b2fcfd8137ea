# frozen_string_literal: true

require "rspec/expectations"
require "tasker_core"

module TaskerCore
  module Testing
    # RSpec matchers for handler results. `actual` may be a {StepResult}, or a handler's raw
    # return value (a Hash counts as a success).
    #
    #   expect(run_handler(ChargeCard, context)).to be_success
    #   expect(result).to have_result("charge_id" => "ch_1")
    #   expect(result).to have_result(include("charge_id"))
    #   expect(result).to be_retryable
    #   expect(result).to choose_steps("auto_approve")     # or choose_no_branches
    #   expect(result).to have_batches(worker: "process_batch", count: 3)   # or have_no_batches
    #   expect(result).to have_published_event("payment.charged", "amount" => 5)
    module Matchers
      extend RSpec::Matchers::DSL

      # @api private
      def self.result_of(actual)
        StepResult.from(actual)
      end

      # @api private
      # `actual.predicate?` for objects that answer it themselves (a StepResult, but also a
      # Process::Status or a Rails response, so that `be_success` keeps working for them), else
      # the predicate of the handler return value `actual` as a StepResult.
      def self.predicate(actual, name)
        actual.respond_to?(name) ? actual.public_send(name) : result_of(actual).public_send(name)
      end

      # @api private
      # Expected data normalised like a stored result (Symbol keys -> String keys); matchers
      # and other non-JSON values are left as they are.
      def self.normalize(expected)
        Native.json_roundtrip(expected)
      rescue TaskerCore::Error
        expected
      end

      matcher :be_success do
        match { |actual| Matchers.predicate(actual, :success?) }
        failure_message do |actual|
          shown = actual.respond_to?(:success?) && !actual.is_a?(StepResult::Failure) ? actual : Matchers.result_of(actual)
          "expected a successful step result, got #{shown.inspect}"
        end
        failure_message_when_negated { |_| "expected the step not to succeed" }
      end

      matcher :be_failure do
        match { |actual| Matchers.predicate(actual, :failure?) }
        failure_message { |actual| "expected a failed step result, got #{Matchers.result_of(actual).inspect}" }
      end

      matcher :be_retryable do
        match do |actual|
          Matchers.predicate(actual, :failure?) && Matchers.predicate(actual, :retryable?)
        end
        failure_message { |actual| "expected a retryable failure, got #{Matchers.result_of(actual).inspect}" }
        failure_message_when_negated { |actual| "expected no retryable failure, got #{Matchers.result_of(actual).inspect}" }
      end

      matcher :have_result do |expected|
        match do |actual|
          r = Matchers.result_of(actual)
          @result = r
          r.success? && values_match?(Matchers.normalize(expected), Matchers.normalize(r.result))
        end
        failure_message do |_|
          if @result.success?
            "expected result #{RSpec::Support::ObjectFormatter.format(expected)}, got " \
              "#{RSpec::Support::ObjectFormatter.format(Matchers.normalize(@result.result))}"
          else
            "expected result #{RSpec::Support::ObjectFormatter.format(expected)}, but the step failed: #{@result.inspect}"
          end
        end
      end

      # @api private
      def self.describe_outcome(result)
        return "a failure (#{result.inspect})" if result.failure?

        result.decision&.inspect || result.batches&.inspect || "a result without a decision or batch outcome"
      end

      # A decision choosing exactly these steps (in any order).
      #   expect(run_handler(Router, context)).to choose_steps("manager_approval", "finance_review")
      matcher :choose_steps do |*expected|
        match do |actual|
          @result = Matchers.result_of(actual)
          decision = @result.success? && @result.decision
          decision && !decision.no_branches? && decision.steps.sort == expected.flatten.map(&:to_s).sort
        end
        failure_message do |_|
          "expected a decision choosing #{expected.flatten.map(&:to_s).inspect}, got #{Matchers.describe_outcome(@result)}"
        end
      end

      # A decision that creates no branch.
      matcher :choose_no_branches do
        match do |actual|
          @result = Matchers.result_of(actual)
          @result.success? && @result.decision&.no_branches?
        end
        failure_message { |_| "expected decision_no_branches, got #{Matchers.describe_outcome(@result)}" }
      end

      # A batch outcome creating batches, optionally of this worker, count and total.
      #   expect(result).to have_batches(worker: "process_batch", count: 3, total: 2500)
      matcher :have_batches do |worker: nil, count: nil, total: nil|
        match do |actual|
          @result = Matchers.result_of(actual)
          b = @result.success? && @result.batches
          b && !b.no_batches? && (worker.nil? || b.worker == worker.to_s) &&
            (count.nil? || values_match?(count, b.worker_count)) && (total.nil? || values_match?(total, b.total_items))
        end
        failure_message do |_|
          wanted = { worker: worker, count: count, total: total }.compact
          "expected batches #{wanted.inspect}, got #{Matchers.describe_outcome(@result)}"
        end
      end

      # A batch outcome with nothing to process.
      matcher :have_no_batches do
        match do |actual|
          @result = Matchers.result_of(actual)
          @result.success? && @result.batches&.no_batches?
        end
        failure_message { |_| "expected no_batches, got #{Matchers.describe_outcome(@result)}" }
      end

      # A result (success or failure) whose handler published the domain event `name`, optionally
      # with a payload matching `payload` (a Hash, or a matcher like `include("amount" => 5)`).
      #   expect(run_handler(ChargeCard, context)).to have_published_event("payment.charged", include("amount" => 5))
      matcher :have_published_event do |name, payload = nil|
        match do |actual|
          @events = Matchers.result_of(actual).published_events.map { |e| Matchers.normalize(e) }
          @events.any? do |e|
            e["name"] == name.to_s && (payload.nil? || values_match?(Matchers.normalize(payload), e["payload"]))
          end
        end
        failure_message do |_|
          wanted = payload.nil? ? name.to_s : "#{name} with #{RSpec::Support::ObjectFormatter.format(payload)}"
          "expected the handler to publish #{wanted}, it published #{RSpec::Support::ObjectFormatter.format(@events)}"
        end
        failure_message_when_negated { |_| "expected the handler not to publish #{name}" }
      end

      matcher :have_error_type do |expected|
        match do |actual|
          r = Matchers.result_of(actual)
          r.failure? && values_match?(expected, r.error_type)
        end
        failure_message do |actual|
          "expected a failure of type #{expected.inspect}, got #{Matchers.result_of(actual).inspect}"
        end
      end
    end
  end
end

if defined?(RSpec) && RSpec.respond_to?(:configure)
  RSpec.configure do |config|
    config.include TaskerCore::Testing::Matchers
    config.include TaskerCore::Testing::Helpers
  end
end
