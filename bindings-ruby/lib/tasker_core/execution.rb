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
      result = StepResult.from(entry.invoke(context, context.handler_method))
      with_events(result, context.published_events)
    rescue HandlerNotFound => e
      handler_not_found(e)
    rescue StandardError, ScriptError => e
      with_events(StepResult.from_exception(e), context.published_events)
    end

    # `result` with the events the handler published added to its metadata's "events" list
    # (after any the metadata already lists); the rest of the metadata is kept.
    # @param result [StepResult::Success, StepResult::Failure]
    # @param events [Array<Hash{String => Object}>]
    # @return [StepResult::Success, StepResult::Failure]
    def with_events(result, events)
      return result if events.empty?

      metadata = result.metadata
      metadata = metadata.nil? ? {} : metadata.dup
      metadata = { "value" => result.metadata } unless metadata.is_a?(Hash)
      listed = metadata.delete(:events) || metadata.delete("events")
      metadata["events"] = (listed.is_a?(Array) ? listed : []) + events
      result.with_metadata(metadata)
    end

    # The permanent failure recorded when no handler matches.
    def handler_not_found(error)
      StepResult::Failure.new(message: error.message, error_type: HANDLER_NOT_FOUND, retryable: false,
                              metadata: { "callable" => error.callable })
    end

    # Codes of the note that replaces a failure's metadata the engine cannot store (the same in
    # every language; the native worker writes it through tasker_core::outcome::dropped_metadata).
    METADATA_NOT_SERIALIZABLE = "metadata_not_serializable"
    METADATA_TOO_DEEP = "metadata_too_deep"

    # `failure` as the worker records it: metadata without a JSON form is replaced by the
    # `{"metadata_dropped" => {"code", "path", "reason"}}` note; message, error type and
    # retryability are kept.
    # @param failure [StepResult::Failure]
    # @return [StepResult::Failure]
    def storable_failure(failure)
      Native.json_roundtrip(failure.metadata, "metadata")
      failure
    rescue SerializationError => e
      path = e.respond_to?(:path) && e.path ? e.path : "metadata"
      code = e.respond_to?(:code) && e.code == RESULT_TOO_DEEP ? METADATA_TOO_DEEP : METADATA_NOT_SERIALIZABLE
      reason = e.message.delete_suffix(" at #{path}")
      failure.with_metadata({ "metadata_dropped" => { "code" => code, "path" => path, "reason" => reason } })
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
