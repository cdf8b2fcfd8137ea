# frozen_string_literal: true

module TaskerCore
  # A task as last read from the database. {#reload} and {#wait} read it again.
  class Task
    TERMINAL_STATES = %w[complete error cancelled resolved_manually].freeze

    # @return [String]
    attr_reader :uuid, :namespace, :name, :version, :state, :correlation_id
    # @return [Hash] the task's context (input)
    attr_reader :context
    # @return [String, nil]
    attr_reader :initiator, :source_system, :reason, :idempotency_key
    # @return [Array<String>]
    attr_reader :tags
    # @return [Integer]
    attr_reader :priority, :total_steps, :completed_steps, :active_steps, :failed_steps
    # @return [Time, nil]
    attr_reader :created_at, :updated_at, :completed_at

    alias task_uuid uuid

    # @api private
    # @param client [Client]
    # @param summary [Hash] native task summary
    # @param detail [Hash, nil] native task detail (steps and transitions)
    # @param created [Boolean, nil] whether create_task made a new task
    def initialize(client, summary, detail: nil, created: nil)
      @client = client
      @created = created
      assign(summary, detail)
    end

    # Whether {Client#create_task} created this task (false: the idempotency key matched an
    # existing task).
    def created?
      @created != false
    end

    # Whether the task reached a terminal state (complete, error, cancelled, resolved_manually).
    def terminal?
      TERMINAL_STATES.include?(state)
    end
    alias finished? terminal?

    def complete?
      state == "complete"
    end

    def error?
      state == "error"
    end

    def cancelled?
      state == "cancelled"
    end

    # The task's steps (read on first use).
    # @return [Array<Step>]
    def steps
      load_detail unless @steps
      @steps
    end

    # The step called `name`, or nil.
    # @return [Step, nil]
    def step(name)
      steps.find { |s| s.name == name.to_s }
    end

    # Results of the complete steps, by step name.
    # @return [Hash{String => Object}]
    def results
      steps.select(&:complete?).to_h { |s| [s.name, s.result] }
    end

    # State transitions of the task and of its steps, oldest first.
    # @return [Array<Transition>]
    def transitions
      load_detail unless @transitions
      @transitions
    end

    # Reads the task again.
    # @return [self]
    def reload
      load_detail
      self
    end

    # Blocks (with the GVL released) until the task reaches a terminal state.
    # @param timeout [Numeric] seconds
    # @return [self]
    # @raise [TimeoutError] when it is still running after `timeout` seconds
    def wait(timeout: 60)
      assign_detail(@client.native.wait_for_task(uuid, Float(timeout)))
      self
    end

    # Cancels the task.
    # @return [self]
    def cancel
      assign(@client.native.cancel_task(uuid), nil)
      @steps = nil
      @transitions = nil
      self
    end

    # @return [Hash{Symbol => Object}]
    def to_h
      { uuid: uuid, namespace: namespace, name: name, version: version, state: state, context: context,
        initiator: initiator, source_system: source_system, reason: reason, tags: tags, priority: priority,
        correlation_id: correlation_id, idempotency_key: idempotency_key, total_steps: total_steps,
        completed_steps: completed_steps, active_steps: active_steps, failed_steps: failed_steps,
        created_at: created_at, updated_at: updated_at, completed_at: completed_at }
    end

    def inspect
      "#<TaskerCore::Task #{namespace}/#{name}@#{version} #{uuid} #{state}>"
    end

    private

    def load_detail
      assign_detail(@client.native.get_task(uuid))
    end

    def assign_detail(detail)
      assign(detail["task"], detail)
    end

    def assign(t, detail)
      @uuid = t["task_uuid"]
      @namespace = t["namespace"]
      @name = t["name"]
      @version = t["version"]
      @state = t["state"]
      @context = t["context"]
      @initiator = t["initiator"]
      @source_system = t["source_system"]
      @reason = t["reason"]
      @tags = t["tags"]
      @priority = t["priority"]
      @correlation_id = t["correlation_id"]
      @idempotency_key = t["idempotency_key"]
      @total_steps = t["total_steps"]
      @completed_steps = t["completed_steps"]
      @active_steps = t["active_steps"]
      @failed_steps = t["failed_steps"]
      @created_at = TaskerCore.parse_time(t["created_at"])
      @updated_at = TaskerCore.parse_time(t["updated_at"])
      @completed_at = TaskerCore.parse_time(t["completed_at"])
      return unless detail

      @steps = detail["steps"].map { |s| Step.new(s) }
      @transitions = (detail["task_transitions"] + detail["step_transitions"])
                     .map { |tr| Transition.new(tr) }
                     .sort_by(&:created_at)
    end
  end

  # A step of a task, as last read.
  class Step
    # @return [String]
    attr_reader :uuid, :name, :queue, :state
    # @return [Integer]
    attr_reader :attempts, :max_attempts
    # @return [Integer] attempt numbers that do not count against `max_attempts`: released claims,
    #   lost leases, and every attempt before an operator's {Client#reset_step}
    attr_reader :free_attempts
    # @return [Object, nil] the handler's result once complete
    attr_reader :results
    # @return [Hash, nil] the last failure: "message", "error_type", "retryable", "attempt",
    #   and "retry_after_seconds" / "backtrace" / "metadata" when set
    attr_reader :last_error
    # @return [Array<String>] names of the steps this one depends on
    attr_reader :dependencies
    # @return [String, nil] the decision or batchable step that created this step at run time
    #   (nil for the steps created with the task)
    attr_reader :created_by
    # @return [BatchContext, nil] for a batch worker instance, its cursor range (read only: it
    #   records no checkpoints)
    attr_reader :batch
    # @return [Checkpoint, nil] the last checkpoint any attempt of this step recorded
    attr_reader :checkpoint
    # @return [Time, nil]
    attr_reader :next_retry_at, :created_at, :first_attempted_at, :last_attempted_at, :completed_at

    alias step_uuid uuid

    # @deprecated Use {#results} (the name every language uses); removed in the next release.
    # @return [Object, nil]
    def result
      warn("TaskerCore::Step#result is deprecated, use #results", uplevel: 1, category: :deprecated)
      results
    end

    # @api private
    def initialize(s)
      @uuid = s["step_uuid"]
      @name = s["name"]
      @queue = s["queue"]
      @state = s["state"]
      @attempts = s["attempts"]
      @max_attempts = s["max_attempts"]
      @free_attempts = s["free_attempts"] || 0
      @retryable = s["retryable"]
      @results = s["results"]
      @last_error = s["last_error"]
      @dependencies = s["dependencies"]
      @created_by = s["created_by"]
      @checkpoint = Checkpoint.from_h(s["checkpoint"])
      @batch = BatchContext.from_h(s["batch"], checkpoint: @checkpoint)
      @next_retry_at = TaskerCore.parse_time(s["next_retry_at"])
      @created_at = TaskerCore.parse_time(s["created_at"])
      @first_attempted_at = TaskerCore.parse_time(s["first_attempted_at"])
      @last_attempted_at = TaskerCore.parse_time(s["last_attempted_at"])
      @completed_at = TaskerCore.parse_time(s["completed_at"])
    end

    def retryable?
      @retryable
    end

    def complete?
      state == "complete"
    end

    def error?
      state == "error"
    end

    def inspect
      "#<TaskerCore::Step #{name} #{state} attempts=#{attempts}/#{max_attempts}>"
    end
  end

  # One audited state change.
  class Transition
    # @return [String, nil] the step's name, nil for a task transition
    attr_reader :step_name
    # @return [String, nil]
    attr_reader :from_state
    # @return [String]
    attr_reader :to_state, :event
    # @return [Hash]
    attr_reader :metadata
    # @return [Time]
    attr_reader :created_at

    # @api private
    def initialize(t)
      @step_name = t["step_name"]
      @from_state = t["from_state"]
      @to_state = t["to_state"]
      @event = t["event"]
      @metadata = t["metadata"]
      @most_recent = t["most_recent"]
      @created_at = TaskerCore.parse_time(t["created_at"])
    end

    def most_recent?
      @most_recent
    end

    def inspect
      "#<TaskerCore::Transition #{step_name || 'task'} #{from_state.inspect} -> #{to_state} (#{event})>"
    end
  end
end

module TaskerCore
  # A registered template version ({Client#list_templates}, {Client#get_template}).
  class TemplateInfo
    # @return [String]
    attr_reader :namespace, :name, :version
    # @return [String, nil]
    attr_reader :description
    # @return [Array<String>] step names, in template order
    attr_reader :steps
    # @return [Array<String>] the queues its steps are dispatched to
    attr_reader :queues
    # @return [String, nil] the file it was registered from, when it came from one
    attr_reader :source_path
    # @return [Time]
    attr_reader :registered_at
    # @return [Hash{String => Object}] the whole template (after the environment merge), as stored
    attr_reader :definition

    # @api private
    def initialize(info)
      @namespace = info["namespace"]
      @name = info["name"]
      @version = info["version"]
      @description = info["description"]
      @steps = info["steps"]
      @queues = info["queues"]
      @source_path = info["source_path"]
      @registered_at = TaskerCore.parse_time(info["registered_at"])
      @definition = info["definition"]
    end

    # @return [Hash{Symbol => Object}]
    def to_h
      { namespace: namespace, name: name, version: version, description: description, steps: steps,
        queues: queues, source_path: source_path, registered_at: registered_at, definition: definition }
    end

    def ==(other)
      other.is_a?(TemplateInfo) && other.to_h == to_h
    end

    def inspect
      "#<TaskerCore::TemplateInfo #{namespace}/#{name}@#{version}>"
    end
  end
end
