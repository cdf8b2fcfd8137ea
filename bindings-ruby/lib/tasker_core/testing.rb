# frozen_string_literal: true

require "securerandom"

module TaskerCore
  # Helpers to test handlers without a database or a worker.
  #
  #   context = TaskerCore::Testing.build_step_context(input: { "amount" => 5 })
  #   result = TaskerCore::Testing.run_handler(ChargeCard, context)
  #   expect(result).to be_success          # with require "tasker_core/testing/rspec"
  #
  # Include {Testing::Helpers} to call them without the module prefix.
  module Testing
    module_function

    # Builds a {StepContext} from plain data. Data goes through the same JSON conversion as in a
    # worker, so Symbol keys become Strings.
    # @param input [Hash] the task context
    # @param dependency_results [Hash{String => Object}] results of dependencies by step name
    # @param config [Hash] the handler's initialization config
    # @param attempt [Integer]
    # @param max_attempts [Integer]
    # @param step_name [String]
    # @param cancelled [Boolean, #call] what the context's `cancelled?` answers (a callable is asked
    #   on every check, to cancel an attempt part-way through a test)
    # @return [StepContext]
    def build_step_context(input: {}, dependency_results: {}, config: {}, attempt: 1, max_attempts: 3,
                           step_name: "test_step", namespace: "test", task_name: "test_task",
                           task_version: "1.0.0", handler_name: nil, handler_method: "call", cancelled: false)
      StepContext.new(
        task_uuid: SecureRandom.uuid, step_uuid: SecureRandom.uuid, step_name: step_name,
        input: Native.json_roundtrip(input), config: Native.json_roundtrip(config),
        dependency_results: Native.json_roundtrip(dependency_results), attempt: attempt,
        max_attempts: max_attempts, namespace: namespace, task_name: task_name, task_version: task_version,
        correlation_id: SecureRandom.uuid, handler_name: handler_name, handler_method: handler_method,
        cancelled: cancelled
      )
    end

    # Runs a handler the way a worker does and returns what the worker would record: exceptions
    # become failures, a result without a JSON form becomes a `result_not_serializable` failure,
    # and a successful result is normalised (String keys).
    # @param handler [Class, #call, String] a handler class, callable, or registered name
    # @param context [StepContext]
    # @return [StepResult::Success, StepResult::Failure]
    def run_handler(handler, context = build_step_context)
      entry = if handler.is_a?(String) || handler.is_a?(Symbol)
                TaskerCore.handlers.resolve(handler)
              else
                HandlerRegistry::Entry.new(handler.respond_to?(:name) ? handler.name.to_s : "handler", handler)
              end
      result = Execution.run(entry, context)
      return result unless result.success?

      begin
        StepResult::Success.new(result: Native.json_roundtrip(result.result),
                                metadata: Native.json_roundtrip(result.metadata))
      rescue SerializationError => e
        Execution.not_serializable(e)
      end
    rescue HandlerNotFound => e
      Execution.handler_not_found(e)
    end

    # Include in a test class or RSpec example group.
    module Helpers
      def build_step_context(**kwargs)
        Testing.build_step_context(**kwargs)
      end

      def run_handler(handler, context = Testing.build_step_context)
        Testing.run_handler(handler, context)
      end
    end
  end
end
