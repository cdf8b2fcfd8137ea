# frozen_string_literal: true

module TaskerCore
  # Everything a handler gets for one attempt of a step. JSON data (input, config, dependency
  # results) comes as plain Hashes with String keys, like `JSON.parse` returns.
  class StepContext
    # @return [String]
    attr_reader :task_uuid, :step_uuid, :step_name, :namespace, :task_name, :task_version, :correlation_id
    # @return [Hash] the task's context (its input)
    attr_reader :input
    # @return [Hash] the handler's `initialization` config from the template
    attr_reader :config
    # @return [Hash{String => Object}] results of the step's direct dependencies, by step name
    attr_reader :dependency_results
    # @return [Integer] 1-based attempt number
    attr_reader :attempt
    # @return [Integer]
    attr_reader :max_attempts
    # @return [String] the template's handler callable
    attr_reader :handler_name
    # @return [Time, nil] when the engine fails this attempt with a timeout
    attr_reader :deadline
    # @return [BatchContext, nil] for an instance of a `batch_worker` step: its cursor range, the
    #   template's `batch_config`, and {BatchContext#checkpoint} to record progress; nil otherwise
    attr_reader :batch
    # @return [Checkpoint, nil] the last checkpoint recorded by an earlier attempt of this step
    #   (where a retry resumes), nil on a first attempt or when none was recorded
    attr_reader :checkpoint
    # @api private
    attr_reader :event_id, :handler_method
    # The attempt's W3C traceparent when traces are exported (`telemetry.enabled`): extract it
    # with your OpenTelemetry SDK's propagator and your spans nest under the attempt's; nil
    # otherwise.
    attr_reader :trace_context

    alias task_context input
    alias initialization config

    # @param cancelled [Boolean, #call] what {#cancelled?} answers: a Boolean, or a callable asked
    #   on every check (workers pass the attempt's cancel signal)
    # @param batch [BatchContext, nil]
    # @param checkpoint [Checkpoint, nil]
    def initialize(task_uuid:, step_uuid:, step_name:, input: {}, config: {}, dependency_results: {},
                   attempt: 1, max_attempts: 1, namespace: nil, task_name: nil, task_version: nil,
                   correlation_id: nil, handler_name: nil, handler_method: "call", deadline: nil, event_id: nil,
                   cancelled: false, batch: nil, checkpoint: nil, trace_context: nil)
      @task_uuid = task_uuid
      @step_uuid = step_uuid
      @step_name = step_name
      @input = input
      @config = config || {}
      @dependency_results = dependency_results || {}
      @attempt = attempt
      @max_attempts = max_attempts
      @namespace = namespace
      @task_name = task_name
      @task_version = task_version
      @correlation_id = correlation_id
      @handler_name = handler_name
      @handler_method = handler_method || "call"
      @deadline = deadline
      @event_id = event_id
      @cancelled = cancelled
      @batch = batch
      @checkpoint = checkpoint
      @trace_context = trace_context
      @published = nil
    end

    # @api private
    # Builds a context from a native step event; `cancelled` answers {#cancelled?}, and
    # `checkpointer` stores the batch's checkpoints.
    def self.from_event(event, cancelled: false, checkpointer: nil)
      deadline = event["deadline"]
      checkpoint = Checkpoint.from_h(event["checkpoint"])
      batch = BatchContext.from_h(event["batch"], checkpoint: checkpoint, checkpointer: checkpointer)
      new(
        task_uuid: event["task_uuid"], step_uuid: event["step_uuid"], step_name: event["step_name"],
        input: event["input"], config: event["config"], dependency_results: event["dependency_results"],
        attempt: event["attempt"], max_attempts: event["max_attempts"], namespace: event["namespace"],
        task_name: event["task_name"], task_version: event["task_version"],
        correlation_id: event["correlation_id"], handler_name: event["callable"],
        handler_method: event["method"], deadline: deadline && Time.iso8601(deadline), event_id: event["event_id"],
        cancelled: cancelled, batch: batch, checkpoint: checkpoint, trace_context: event["trace_context"]
      )
    end

    # Whether the engine cancelled this attempt: it overran `timeout_seconds` (the attempt already
    # failed with `timeout`), the worker gave it up, or the worker's shutdown deadline passed. The
    # attempt's result is ignored from then on, so a long-running handler should check this between
    # units of work and return soon after it turns true. Cheap enough to call in a loop.
    def cancelled?
      c = @cancelled
      c = c.call if c.respond_to?(:call)
      c ? true : false
    end

    # Publishes a domain event with this attempt's outcome. The template must declare it
    # (`domain_events:`) and list it in this step's `publishes_events:`; the engine checks the
    # payload against the declared schema and publishes the event when the step's `condition`
    # (success, failure or always) holds for the attempt's outcome: durable events in the
    # transaction that records it, fast ones after. An undeclared event fails the step for good
    # (`event_not_declared`), and so does a payload that breaks its schema (`event_payload_invalid`).
    #
    #   context.publish("payment.charged", { "amount" => 42, "currency" => "EUR" })
    #
    # The events go into the outcome's metadata (`"events" => [{"name", "payload"}]`, beside the
    # handler's own metadata) whatever the handler returns or raises.
    # @param name [String, Symbol] a dotted lowercase name, like "payment.charged"
    # @param payload [Hash] JSON data (Symbol keys become Strings)
    # @return [nil]
    # @raise [InvalidArgumentError] for a name that is not a non-empty String or Symbol
    def publish(name, payload = {})
      unless (name.is_a?(String) || name.is_a?(Symbol)) && !name.to_s.empty?
        raise InvalidArgumentError, "event name must be a non-empty String, got #{name.inspect}"
      end

      (@published ||= []) << { "name" => name.to_s, "payload" => payload.nil? ? {} : payload }
      nil
    end

    # The events {#publish}ed in this attempt so far, oldest first.
    # @return [Array<Hash{String => Object}>] `{"name" => ..., "payload" => ...}`
    def published_events
      (@published || []).dup
    end

    # The result of the dependency called `name`, or nil when there is none.
    # @param name [String, Symbol]
    def dependency_result(name)
      dependency_results[name.to_s]
    end
    alias get_dependency_result dependency_result

    # Whether this is an instance of a `batch_worker` step.
    def batch?
      !batch.nil?
    end

    # Whether an earlier attempt of this step failed.
    def retry?
      attempt > 1
    end

    # Whether a failure of this attempt will not be retried.
    def last_retry?
      attempt >= max_attempts
    end

    def inspect
      "#<TaskerCore::StepContext #{namespace}/#{task_name} step=#{step_name} attempt=#{attempt}/#{max_attempts}" \
        "#{" batch=#{batch.batch_id}" if batch}>"
    end
  end
end
