# frozen_string_literal: true

module TaskerCore
  # What one attempt of a step produced: a {Success} or a {Failure}.
  module StepResult
    # A successful attempt.
    class Success
      # @return [Object] the step's result (JSON data), visible to dependent steps
      attr_reader :result
      # @return [Hash] extra data stored with the result
      attr_reader :metadata

      def initialize(result: {}, metadata: {})
        @result = result
        @metadata = metadata
      end

      def success? = true
      def failure? = false
      def retryable? = false

      def to_h
        { status: "success", result: result, metadata: metadata }
      end

      # The same result with other metadata.
      # @param metadata [Hash]
      # @return [Success]
      def with_metadata(metadata)
        Success.new(result: result, metadata: metadata)
      end

      # The decision this result carries (`decision_point_outcome`), or nil.
      # @return [Decision, nil]
      def decision
        Decision.from(result)
      end

      # The batch outcome this result carries (`batch_processing_outcome`), or nil.
      # @return [Batches, nil]
      def batches
        Batches.from(result)
      end

      # The domain events published with this attempt (metadata "events"), as `{"name", "payload"}`.
      # @return [Array<Hash>]
      def published_events
        StepResult.published_events(metadata)
      end

      def inspect
        "#<TaskerCore::StepResult::Success result=#{result.inspect}>"
      end
    end

    # A failed attempt.
    class Failure
      attr_reader :message, :error_type, :retry_after, :backtrace, :metadata

      # @param message [String]
      # @param error_type [String] short machine-readable kind
      # @param retryable [Boolean] false fails the step at once
      # @param retry_after [Numeric, nil] seconds before the next attempt (overrides backoff)
      # @param backtrace [String, Array<String>, nil]
      # @param metadata [Hash]
      def initialize(message:, error_type: "handler_failure", retryable: true, retry_after: nil, backtrace: nil,
                     metadata: {})
        unless retry_after.nil? || (retry_after.is_a?(Numeric) && retry_after.to_f.finite? && retry_after >= 0)
          raise InvalidArgumentError, "retry_after must be nil or a non-negative number of seconds, got #{retry_after.inspect}"
        end

        @message = message.to_s
        @error_type = error_type.to_s
        @retryable = retryable ? true : false
        @retry_after = retry_after
        @backtrace = backtrace.is_a?(Array) ? backtrace.join("\n") : backtrace
        @metadata = metadata
      end

      def success? = false
      def failure? = true
      def retryable? = @retryable

      def to_h
        { status: "failure", message: message, error_type: error_type, retryable: retryable?,
          retry_after: retry_after, backtrace: backtrace, metadata: metadata }
      end

      # The same failure with other metadata.
      # @param metadata [Hash]
      # @return [Failure]
      def with_metadata(metadata)
        Failure.new(message: message, error_type: error_type, retryable: retryable?, retry_after: retry_after,
                    backtrace: backtrace, metadata: metadata)
      end

      # The domain events published with this attempt (metadata "events"), as `{"name", "payload"}`.
      # @return [Array<Hash>]
      def published_events
        StepResult.published_events(metadata)
      end

      def inspect
        "#<TaskerCore::StepResult::Failure #{error_type}: #{message} retryable=#{retryable?}>"
      end
    end

    # @api private
    # The "events" list of a result's metadata.
    def self.published_events(metadata)
      list = metadata.is_a?(Hash) ? (metadata["events"] || metadata[:events]) : nil
      list.is_a?(Array) ? list : []
    end

    # Turns what a handler returned into a result: a {Success} or {Failure} as is, anything
    # else (a Hash, nil, ...) as the result of a success.
    # @return [Success, Failure]
    def self.from(value)
      case value
      when Success, Failure then value
      else Success.new(result: value, metadata: {})
      end
    end

    # Turns an exception raised by a handler into a {Failure}: {PermanentError} is not
    # retryable, {RetryableError} carries `retry_after`, anything else is retryable and records
    # the class, message and backtrace.
    # @return [Failure]
    def self.from_exception(error)
      backtrace = error.backtrace&.join("\n")
      case error
      when PermanentError
        Failure.new(message: error.message, error_type: error.error_type || error.class.name || "PermanentError",
                    retryable: false, backtrace: backtrace, metadata: error.metadata)
      when RetryableError
        Failure.new(message: error.message, error_type: error.error_type || error.class.name || "RetryableError",
                    retryable: true, retry_after: error.retry_after, backtrace: backtrace, metadata: error.metadata)
      else
        name = error.class.name || error.class.superclass&.name || "Exception"
        Failure.new(message: error.message, error_type: name, retryable: true, backtrace: backtrace,
                    metadata: { "exception_class" => name })
      end
    end
  end
end
