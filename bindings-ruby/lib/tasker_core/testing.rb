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
    # @param batch [Hash, nil] makes a batch worker context: `batch_id`, `start_cursor`,
    #   `end_cursor`, `batch_size`, `is_no_op`, `batch_config` (see {build_batch_context})
    # @param checkpoint [Hash, Checkpoint, nil] the last checkpoint of an earlier attempt
    #   (`cursor`, `items_done`, `accumulated`)
    # @return [StepContext]
    def build_step_context(input: {}, dependency_results: {}, config: {}, attempt: 1, max_attempts: 3,
                           step_name: "test_step", namespace: "test", task_name: "test_task",
                           task_version: "1.0.0", handler_name: nil, handler_method: "call", cancelled: false,
                           batch: nil, checkpoint: nil)
      checkpoint = test_checkpoint(checkpoint, attempt)
      if batch
        recorder = CheckpointRecorder.new(attempt)
        batch = BatchContext.from_h(Native.json_roundtrip(batch), checkpoint: checkpoint, checkpointer: recorder)
      end
      StepContext.new(
        task_uuid: SecureRandom.uuid, step_uuid: SecureRandom.uuid, step_name: step_name,
        input: Native.json_roundtrip(input), config: Native.json_roundtrip(config),
        dependency_results: Native.json_roundtrip(dependency_results), attempt: attempt,
        max_attempts: max_attempts, namespace: namespace, task_name: task_name, task_version: task_version,
        correlation_id: SecureRandom.uuid, handler_name: handler_name, handler_method: handler_method,
        cancelled: cancelled, batch: batch, checkpoint: checkpoint
      )
    end

    # Builds the context of a batch worker instance: its cursor range, the template's
    # `batch_config`, and optionally the last checkpoint of an earlier attempt (give `attempt:` 2
    # or more with it, as the engine would). Checkpoints the handler records are kept, for
    # {recorded_checkpoints}.
    #
    #   context = build_batch_context(start_cursor: 0, end_cursor: 300, batch_config: { checkpoint_interval: 100 })
    #   run_handler(SumBatch, context)
    #   recorded_checkpoints(context).map(&:cursor)  # => [100, 200, 300]
    #
    # @param batch_size [Integer, nil] default `end_cursor - start_cursor` for Integer cursors
    # @param no_op [Boolean] the placeholder instance of `no_batches` (cursor 0..0, id "000")
    # @param kwargs further {build_step_context} options (`input:`, `attempt:`, `step_name:`, ...)
    # @return [StepContext]
    def build_batch_context(start_cursor: 0, end_cursor: nil, batch_id: "001", batch_size: nil, batch_config: nil,
                            no_op: false, checkpoint: nil, **kwargs)
      if no_op
        start_cursor = 0
        end_cursor = 0
        batch_id = "000"
      end
      raise InvalidArgumentError, "build_batch_context needs end_cursor:" if end_cursor.nil?

      cursor = Batch.cursor({ batch_id: batch_id, start_cursor: start_cursor, end_cursor: end_cursor,
                              batch_size: batch_size }, 0)
      batch = cursor.to_h.merge("is_no_op" => no_op ? true : false, "batch_config" => batch_config)
      kwargs[:step_name] ||= "batch_worker_#{batch_id}"
      build_step_context(batch: batch, checkpoint: checkpoint, **kwargs)
    end

    # The checkpoints a handler recorded with `context.batch.checkpoint` on a context from
    # {build_batch_context}, oldest first.
    # @param context [StepContext]
    # @return [Array<Checkpoint>]
    def recorded_checkpoints(context)
      recorder = context.batch&.checkpointer
      unless recorder.is_a?(CheckpointRecorder)
        raise InvalidArgumentError, "#{context.inspect} was not built with build_batch_context (no recorded checkpoints)"
      end

      recorder.checkpoints
    end

    # The last checkpoint of an earlier attempt, as the engine would hand it to `attempt`.
    def test_checkpoint(checkpoint, attempt)
      return nil if checkpoint.nil?
      return checkpoint if checkpoint.is_a?(Checkpoint)

      data = { "attempt" => [attempt - 1, 1].max, "items_done" => 0 }.merge(Native.json_roundtrip(checkpoint))
      data["recorded_at"] ||= Time.now.utc.iso8601(6)
      Checkpoint.from_h(data)
    end
    private_class_method :test_checkpoint

    # Keeps the checkpoints recorded through a test context, checked as the engine checks them
    # (the payload must have a JSON form).
    class CheckpointRecorder
      # @return [Array<Checkpoint>]
      attr_reader :checkpoints

      def initialize(attempt)
        @attempt = attempt
        @checkpoints = []
        @lock = Mutex.new
      end

      # @param payload [Hash{String => Object}]
      # @return [nil]
      def call(payload)
        data = Native.json_roundtrip(payload, "checkpoint")
        checkpoint = Checkpoint.new(cursor: data["cursor"], items_done: data["items_done"], accumulated: data["accumulated"],
                                    attempt: @attempt, recorded_at: Time.now.utc)
        @lock.synchronize { @checkpoints << checkpoint }
        nil
      end
    end

    # Runs a handler the way a worker does and returns what the worker would record: exceptions
    # become failures, a result without a JSON form becomes a `result_not_serializable` failure,
    # a failure's metadata without one is replaced by the `metadata_dropped` note (the failure
    # itself is kept), and a successful result is normalised (String keys).
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
      return Execution.storable_failure(result) unless result.success?

      begin
        StepResult::Success.new(result: Native.json_roundtrip(result.result),
                                metadata: Native.json_roundtrip(result.metadata))
      rescue SerializationError => e
        Execution.not_serializable(e)
      end
    rescue HandlerNotFound => e
      Execution.handler_not_found(e)
    end

    # Builds an {Event} as a subscriber would receive it. The payload defaults to the catalog's
    # example for a system event, and to `{}` for a domain event; data goes through the JSON
    # conversion a real event went through (String keys).
    #
    #   event = build_event("task.completed", task_uuid: task.uuid)
    #   run_subscriber(Audit, event)
    #
    # @param name [String] e.g. "task.completed" or "payment.charged"
    # @param payload [Hash, nil]
    # @param attempt [Integer] the delivery attempt (1 is the first)
    # @param delivery [String] "durable" or "fast"
    # @param fields further envelope fields (`task_uuid:`, `step_uuid:`, `namespace:`, ...)
    # @return [Event]
    def build_event(name, payload: nil, attempt: 1, delivery: "durable", **fields)
      info = Events.event_info(name)
      payload = info&.example || {} if payload.nil?
      step = info.nil? || info.category == "step"
      envelope = {
        "event_id" => SecureRandom.uuid, "name" => name.to_s, "category" => info&.category || "domain",
        "occurred_at" => Time.now.utc.iso8601(6), "task_uuid" => SecureRandom.uuid,
        "step_uuid" => step ? SecureRandom.uuid : nil, "correlation_id" => SecureRandom.uuid,
        "namespace" => "test", "task_name" => "test_task", "task_version" => "1.0.0",
        "payload" => payload, "delivery" => delivery.to_s, "position" => delivery.to_s == "durable" ? 1 : nil
      }
      Event.from_h(Native.json_roundtrip(envelope.merge(fields.transform_keys(&:to_s)), "event"),
                   attempt: delivery.to_s == "durable" ? attempt : nil)
    end

    # Calls a subscriber with `event` as a {SubscriberRunner} would (a class is instantiated);
    # what the handler raises is raised here (a runner would fail the delivery with it).
    # @param subscriber [Class<Subscriber>, Subscriber, #call]
    # @param event [Event]
    # @return [Object] what the handler method returned
    def run_subscriber(subscriber, event)
      (subscriber.is_a?(Class) ? subscriber.new : subscriber).call(event)
    end

    # Include in a test class or RSpec example group.
    module Helpers
      def build_step_context(**kwargs)
        Testing.build_step_context(**kwargs)
      end

      def run_handler(handler, context = Testing.build_step_context)
        Testing.run_handler(handler, context)
      end

      def build_batch_context(**kwargs)
        Testing.build_batch_context(**kwargs)
      end

      def recorded_checkpoints(context)
        Testing.recorded_checkpoints(context)
      end

      def build_event(name, **kwargs)
        Testing.build_event(name, **kwargs)
      end

      def run_subscriber(subscriber, event)
        Testing.run_subscriber(subscriber, event)
      end
    end
  end
end
