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
