# frozen_string_literal: true

module TaskerCore
  # Root of every exception this gem raises. The native layer sets {#code} to the engine's
  # stable error code (e.g. "validation_failed", "task_not_found").
  class Error < StandardError
    # @return [String, nil] machine-readable code of the engine error
    attr_reader :code

    # @param message [String, nil]
    # @param code [String, nil]
    def initialize(message = nil, code: nil)
      super(message)
      @code = code
    end
  end

  # A task context failed the template's `input_schema` (or a size limit).
  class ValidationError < Error
    # @return [String] JSON pointer of the failing value in the context ("" for the whole context)
    attr_reader :path
  end

  # A template file could not be read, parsed or validated.
  class TemplateError < Error
    # @return [Array<Hash{Symbol => String, nil}>] one entry per problem with the keys
    #   :file, :template, :step, :field and :message
    def problems
      @problems || []
    end
  end

  # No registered template matches (namespace, name, version).
  class TemplateNotFound < Error; end

  # The same template version was registered before with different content.
  class TemplateConflict < Error; end

  # No task has this uuid.
  class TaskNotFound < Error
    # @return [String, nil]
    attr_reader :task_uuid
  end

  # No step of that name (or uuid) in the task.
  class StepNotFound < Error
    # @return [String, nil]
    attr_reader :task_uuid
    # @return [String, nil] the name or uuid that was asked for
    attr_reader :step
  end

  # No dead-letter queue entry has this uuid.
  class DlqEntryNotFound < Error
    # @return [String, nil]
    attr_reader :entry_uuid
  end

  # The operation is not allowed in the current state (cancelling a finished task, resetting a
  # complete step, ...). The message names the state and what is allowed, e.g. "step 'a' is
  # complete; only error, waiting_for_retry, enqueued steps can be reset"; {#code} is
  # "invalid_state" for operator actions and DLQ updates, "illegal_transition" otherwise.
  class InvalidStateError < Error; end

  # The configuration does not load ({#code} "config_invalid": an unknown file, section or key,
  # a wrong type or an out-of-range value in a `config/tasker` file or a `TASKER_<SECTION>__<KEY>`
  # variable), or the database URL is malformed or names an unsupported scheme
  # ("database_url_invalid"). The message lists every problem with its file or variable and key.
  class ConfigurationError < Error
    # @return [Array<Hash{Symbol => String}>] one entry per configuration problem with the keys
    #   :source (the file or `$VARIABLE`), :key (`section.key`) and :message; empty for a bad URL
    def problems
      @problems || []
    end
  end

  # The database failed (query, migration, queue or corrupt data).
  class DatabaseError < Error; end

  # The database could not be reached ({#code} "database_unreachable"), or the message broker
  # with `messaging.backend = "rabbitmq"` ("broker_unreachable").
  class ConnectionError < DatabaseError; end

  # Waiting (e.g. {Task#wait}) ran out of time.
  class TimeoutError < Error; end

  # A completion named a step event this worker never handed out, or already completed.
  class UnknownEventError < Error; end

  # The worker is shut down.
  class ShutDownError < Error; end

  # A background task of the worker died; it claims nothing more (see the message).
  class WorkerFailedError < Error; end

  # The database is unreachable and the circuit breaker around it is open: the call was refused
  # at once instead of waiting on it ({#code} "unavailable"). Nothing was written; retry after
  # {#retry_after} seconds.
  class UnavailableError < Error
    # @return [String] what is unavailable ("database")
    attr_reader :resource
    # @return [Float] seconds until the breaker lets the next probe through
    attr_reader :retry_after
  end

  # Creating the task would put more waiting steps on a queue than
  # `backpressure.max_queue_depth` allows: workers are not keeping up ({#code} "backpressure").
  # Nothing was written; retry after {#retry_after} seconds, or add workers.
  class BackpressureError < Error
    # @return [String] the queue at its limit
    attr_reader :queue
    # @return [Integer] steps waiting on it
    attr_reader :depth
    # @return [Integer] the configured limit
    attr_reader :limit
    # @return [Float] seconds until the depths are read again
    attr_reader :retry_after
  end

  # A checkpoint (or completion) came from an attempt that no longer holds its step: it timed
  # out, was re-claimed by another worker or cancelled. Nothing was stored; the handler should
  # stop, since nobody will use its result.
  class FencedError < Error; end

  # An argument was rejected; the message names it.
  class InvalidArgumentError < Error; end

  # A value has no JSON form (NaN, an arbitrary object, invalid UTF-8, ...).
  class SerializationError < Error
    # @return [String] where the value was found, e.g. "result.items[2].price"
    attr_reader :path
  end

  # No handler matches a step's callable.
  class HandlerNotFound < Error
    # @return [String, nil] the callable that could not be resolved
    attr_reader :callable

    def initialize(message = nil, callable: nil)
      super(message, code: "handler_not_found")
      @callable = callable
    end
  end

  # Raise from a handler to fail the step without retrying it.
  class PermanentError < Error
    # @return [String, nil] error type recorded on the step (default: the exception's class name)
    attr_reader :error_type
    # @return [Hash] extra data recorded with the failure
    attr_reader :metadata

    def initialize(message = nil, error_type: nil, metadata: {})
      super(message)
      @error_type = error_type
      @metadata = metadata
    end
  end

  # Raise from a handler to fail this attempt and retry the step (while attempts remain),
  # optionally after `retry_after` seconds instead of the template's backoff.
  class RetryableError < Error
    # @return [Numeric, nil] seconds to wait before the next attempt
    attr_reader :retry_after
    # @return [String, nil] error type recorded on the step (default: the exception's class name)
    attr_reader :error_type
    # @return [Hash] extra data recorded with the failure
    attr_reader :metadata

    def initialize(message = nil, retry_after: nil, error_type: nil, metadata: {})
      super(message)
      @retry_after = retry_after
      @error_type = error_type
      @metadata = metadata
    end
  end
end
