# frozen_string_literal: true

module TaskerCore
  # @api private
  # Runs one attempt of a handler and turns whatever happens into a {StepResult}. Shared by
  # {Worker} and {Testing}, so that tests see exactly what a worker would record.
  module Execution
    HANDLER_NOT_FOUND = "handler_not_found"
    RESULT_NOT_SERIALIZABLE = "result_not_serializable"
    RESULT_TOO_DEEP = "result_too_deep"

    module_function

    # @param entry [HandlerRegistry::Entry]
    # @param context [StepContext]
    # @return [StepResult::Success, StepResult::Failure]
    def run(entry, context)
      StepResult.from(entry.invoke(context, context.handler_method))
    rescue HandlerNotFound => e
      handler_not_found(e)
    rescue StandardError, ScriptError => e
      StepResult.from_exception(e)
    end

    # The permanent failure recorded when no handler matches.
    def handler_not_found(error)
      StepResult::Failure.new(message: error.message, error_type: HANDLER_NOT_FOUND, retryable: false,
                              metadata: { "callable" => error.callable })
    end

    # The permanent failure recorded when a result has no JSON form (`result_not_serializable`),
    # or is nested too deeply to convert (`result_too_deep`, as the engine reports values over its
    # nesting limit).
    def not_serializable(error)
      error_type = error.respond_to?(:code) && error.code == RESULT_TOO_DEEP ? RESULT_TOO_DEEP : RESULT_NOT_SERIALIZABLE
      StepResult::Failure.new(message: "handler result cannot be stored as JSON: #{error.message}",
                              error_type: error_type, retryable: false,
                              metadata: { "path" => error.respond_to?(:path) ? error.path : nil })
    end
  end
end
