# frozen_string_literal: true

module TaskerCore
  # A connection to Tasker's database: register templates, create, read, cancel and wait for
  # tasks. Thread-safe; share one per process. Made by {TaskerCore.connect}.
  class Client
    # @api private
    # @return [Native::Client]
    attr_reader :native

    # @api private
    def initialize(native)
      @native = native
    end

    # The database, without credentials (a file path or postgres://host:port/db).
    # @return [String]
    def database
      native.database
    end

    # @return [String] "sqlite" or "postgres"
    def backend
      native.backend
    end

    # Loads, validates and registers every template in a YAML file or a directory. Nothing is
    # stored unless all are valid.
    # @param path [String, Pathname]
    # @return [Array<Hash{Symbol => Object}>] :namespace, :name, :version, :id, :queues, :warnings
    # @raise [TemplateError] naming the file, step and field of each problem
    def register_templates(path)
      native.register_templates(path.to_s).map { |h| h.transform_keys(&:to_sym) }
    end

    # Creates a task from a registered template and enqueues its first steps.
    # @param namespace [String]
    # @param name [String]
    # @param version [String, nil] nil picks the highest registered version
    # @param context [Hash] the task's input, checked against the template's input_schema
    # @param initiator [String, nil]
    # @param source_system [String, nil]
    # @param reason [String, nil]
    # @param tags [Array<String>]
    # @param priority [Integer] higher runs first; each point is worth a second of waiting on the
    #   queue, so a low priority is never starved
    # @param idempotency_key [String, nil] creating again with the same key returns the first task
    # @return [Task]
    # @raise [ValidationError] naming the failing property when the context violates the schema
    # @raise [TemplateNotFound]
    def create_task(namespace:, name:, context:, version: nil, initiator: nil, source_system: nil, reason: nil,
                    tags: [], priority: 0, idempotency_key: nil)
      check_string!(:namespace, namespace)
      check_string!(:name, name)
      %i[version initiator source_system reason idempotency_key].zip(
        [version, initiator, source_system, reason, idempotency_key]
      ).each { |field, value| check_string!(field, value, optional: true) }
      unless tags.is_a?(Array) && tags.all? { |t| t.is_a?(String) || t.is_a?(Symbol) }
        raise InvalidArgumentError, "tags must be an Array of Strings, got #{tags.inspect}"
      end
      unless priority.is_a?(Integer) && priority.bit_length < 32
        raise InvalidArgumentError, "priority must be a 32-bit Integer, got #{priority.inspect}"
      end

      created = native.create_task(namespace.to_s, name.to_s, version&.to_s, context, initiator&.to_s,
                                   source_system&.to_s, reason&.to_s, tags.map(&:to_s), priority,
                                   idempotency_key&.to_s)
      Task.new(self, created["task"], created: created["created"])
    end

    # A task with its steps and transitions.
    # @param uuid [String]
    # @return [Task]
    # @raise [TaskNotFound]
    def get_task(uuid)
      detail = native.get_task(uuid.to_s)
      Task.new(self, detail["task"], detail: detail)
    end

    # Tasks, newest first.
    # @param namespace [String, nil]
    # @param name [String, nil]
    # @param state [String, Symbol, nil]
    # @param limit [Integer, nil] at most this many (default 100)
    # @return [Array<Task>]
    def list_tasks(namespace: nil, name: nil, state: nil, limit: nil)
      raise InvalidArgumentError, "limit must be an Integer, got #{limit.inspect}" if !limit.nil? && !limit.is_a?(Integer)

      native.list_tasks(namespace&.to_s, name&.to_s, state&.to_s, limit).map { |t| Task.new(self, t) }
    end

    # Cancels a task: waiting steps are cancelled now; results of running steps are ignored.
    # @param uuid [String]
    # @return [Task]
    # @raise [InvalidStateError] when the task already finished
    def cancel_task(uuid)
      Task.new(self, native.cancel_task(uuid.to_s))
    end

    # Waits until the task reaches a terminal state.
    # @param uuid [String]
    # @param timeout [Numeric] seconds
    # @return [Task]
    # @raise [TimeoutError]
    def wait_for_task(uuid, timeout: 60)
      detail = native.wait_for_task(uuid.to_s, Float(timeout))
      Task.new(self, detail["task"], detail: detail)
    end

    # Closes the connection pool.
    def close
      native.close
    end

    def inspect
      "#<TaskerCore::Client #{backend} #{database}>"
    end

    private

    def check_string!(field, value, optional: false)
      return if value.is_a?(String) || value.is_a?(Symbol)
      return if optional && value.nil?

      raise InvalidArgumentError, "#{field} must be a String#{' or nil' if optional}, got #{value.inspect}"
    end
  end
end
