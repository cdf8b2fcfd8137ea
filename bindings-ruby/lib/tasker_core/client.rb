# frozen_string_literal: true

module TaskerCore
  # A connection to Tasker's database: register templates, create, read, cancel and wait for
  # tasks; recover failed work (operator actions on steps and tasks, the dead-letter queue,
  # staleness, live workers); subscribe to events and watch subscriber groups. Thread-safe; share
  # one per process. Made by {TaskerCore.connect}.
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

    # Every registered template version.
    # @return [Array<TemplateInfo>]
    def list_templates
      native.list_templates.map { |h| TemplateInfo.new(h) }
    end

    # One registered template version; the highest one unless `version`.
    # @param namespace [String]
    # @param name [String]
    # @param version [String, nil]
    # @return [TemplateInfo]
    # @raise [TemplateNotFound]
    def get_template(namespace, name, version = nil)
      check_string!(:namespace, namespace)
      check_string!(:name, name)
      check_string!(:version, version, optional: true)
      TemplateInfo.new(native.get_template(namespace.to_s, name.to_s, version&.to_s))
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
    # @param strict_identity [Boolean] identify the task by a hash of namespace, name, version and
    #   context instead: creating the same request again returns the first task (not combinable
    #   with `idempotency_key`)
    # @param traceparent [String, nil] a W3C traceparent: the task joins that trace
    # @return [Task]
    # @raise [ValidationError] naming the failing property when the context violates the schema
    # @raise [TemplateNotFound]
    def create_task(namespace:, name:, context:, version: nil, initiator: nil, source_system: nil, reason: nil,
                    tags: [], priority: 0, idempotency_key: nil, strict_identity: false, traceparent: nil)
      check_string!(:namespace, namespace)
      check_string!(:name, name)
      %i[version initiator source_system reason idempotency_key traceparent].zip(
        [version, initiator, source_system, reason, idempotency_key, traceparent]
      ).each { |field, value| check_string!(field, value, optional: true) }
      check_tags_and_priority!(tags, priority)

      created = native.create_task(namespace.to_s, name.to_s, version&.to_s, context, initiator&.to_s,
                                   source_system&.to_s, reason&.to_s, tags.map(&:to_s), priority,
                                   idempotency_key&.to_s, strict_identity ? true : false, traceparent&.to_s)
      Task.new(self, created["task"], created: created["created"])
    end

    # The engine's metrics in the Prometheus text format (serve it at `/metrics`); the names are
    # listed in docs/operations.md.
    # @return [String]
    def prometheus_metrics
      native.prometheus_metrics
    end

    # The engine's metrics: `{"samples" => [{"name", "labels", "value"}, ...], ...}`.
    # @return [Hash]
    def metrics
      native.metrics
    end

    # Liveness and readiness: `{"live" => true, "ready" => Boolean, "checks" => [{"name", "ok",
    # "detail"}]}`: the database answers within `telemetry.health_probe_timeout_ms` (2 s by
    # default), the migrations ran, the circuit breaker around PostgreSQL is closed, and each
    # worker this process started on this client is alive (a `worker <id>` check each).
    # @return [Hash]
    def health
      native.health
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

    # @!group Recovering failed work: operator actions
    #
    # Each action is one transaction that checks the step's state, records who acted and why in
    # the audit row, and re-opens a failed task when it lets it progress (error -> enqueuing_steps
    # -> steps_in_process). A worker's late result for an attempt an operator reset, resolved or
    # cancelled is ignored. When the task then finishes, its open DLQ entry is closed
    # (`manually_resolved`, credited to `by`). A state the action does not allow raises
    # {InvalidStateError} with the engine's message, which names the state and what is allowed.

    # Sends a step in `error` (or stuck in `waiting_for_retry` / `enqueued`) back to `pending`
    # with a fresh retry budget; it is enqueued as soon as its dependencies allow. Attempt numbers
    # keep growing across a reset.
    # @param task_uuid [String]
    # @param step [String, Symbol] the step's name or uuid
    # @param by [String] who acts
    # @param reason [String] why
    # @return [StepDetail] the step afterwards
    # @raise [InvalidStateError, StepNotFound, TaskNotFound]
    def reset_step(task_uuid, step, by:, reason:)
      check_operator!(step, by, reason)
      StepDetail.new(native.reset_step(task_uuid.to_s, step.to_s, by.to_s, reason.to_s))
    end

    # Marks an unfinished or failed step `resolved_manually`: it satisfies its dependents, which
    # run (with no result from it).
    # @param (see #reset_step)
    # @return [StepDetail]
    # @raise [InvalidStateError, StepNotFound, TaskNotFound]
    def resolve_step_manually(task_uuid, step, by:, reason:)
      check_operator!(step, by, reason)
      StepDetail.new(native.resolve_step_manually(task_uuid.to_s, step.to_s, by.to_s, reason.to_s))
    end

    # Completes an unfinished or failed step with the operator's result, which its dependents
    # receive as its dependency result. For a decision or batchable step, the result's outcome
    # creates steps as the handler's would.
    # @param task_uuid [String]
    # @param step [String, Symbol] the step's name or uuid
    # @param result [Object] a JSON value (Symbols become Strings), within the engine's limits
    # @param metadata [Object] JSON recorded in the audit row
    # @param by [String]
    # @param reason [String]
    # @return [StepDetail]
    # @raise [InvalidStateError, StepNotFound, TaskNotFound]
    # @raise [InvalidArgumentError] when the result is over the engine's size or depth limit
    # @raise [SerializationError] when the result has no JSON form
    def complete_step_manually(task_uuid, step, result:, by:, reason:, metadata: nil)
      check_operator!(step, by, reason)
      StepDetail.new(native.complete_step_manually(task_uuid.to_s, step.to_s, result, metadata, by.to_s, reason.to_s))
    end

    # Cancels a step that has not finished, and the pending steps below it (they could never
    # run). Cancelled steps count as done: the task finishes as its other steps allow.
    # @param (see #reset_step)
    # @return [StepDetail]
    # @raise [InvalidStateError, StepNotFound, TaskNotFound]
    def cancel_step(task_uuid, step, by:, reason:)
      check_operator!(step, by, reason)
      StepDetail.new(native.cancel_step(task_uuid.to_s, step.to_s, by.to_s, reason.to_s))
    end

    # Resets every `error` step of a task in `error` ({#reset_step}), in one transaction.
    # @param task_uuid [String]
    # @param by [String]
    # @param reason [String]
    # @return [Task] the task afterwards
    # @raise [InvalidStateError] when the task is not in `error`
    # @raise [TaskNotFound]
    def retry_task(task_uuid, by:, reason:)
      check_operator!(nil, by, reason)
      Task.new(self, native.retry_task(task_uuid.to_s, by.to_s, reason.to_s))
    end

    # Closes a failed or unfinished task by hand: it becomes `resolved_manually`, its waiting steps
    # are cancelled and its open DLQ entry is closed.
    # @param (see #retry_task)
    # @return [Task]
    # @raise [InvalidStateError] when the task already finished otherwise
    # @raise [TaskNotFound]
    def resolve_task(task_uuid, by:, reason:)
      check_operator!(nil, by, reason)
      Task.new(self, native.resolve_task(task_uuid.to_s, by.to_s, reason.to_s))
    end

    # @!endgroup
    # @!group Recovering failed work: steps, the dead-letter queue, workers

    # A step of a task with every attempt's error.
    # @param task_uuid [String]
    # @param step [String, Symbol] the step's name or uuid
    # @return [StepDetail]
    # @raise [StepNotFound, TaskNotFound]
    def get_step(task_uuid, step)
      check_string!(:step, step)
      StepDetail.new(native.get_step(task_uuid.to_s, step.to_s))
    end

    # Every step of a task, in template order.
    # @param task_uuid [String]
    # @return [Array<StepDetail>]
    # @raise [TaskNotFound]
    def list_steps(task_uuid)
      native.list_steps(task_uuid.to_s).map { |s| StepDetail.new(s) }
    end

    # DLQ entries, newest first.
    # @param status [String, Symbol, nil] one of {DlqEntry::STATUSES}
    # @param reason [String, Symbol, nil] one of {DlqEntry::REASONS}
    # @param task_uuid [String, nil]
    # @param open_only [Boolean] only `pending` and `investigating` entries
    # @param limit [Integer] at most this many (>= 1)
    # @param offset [Integer] skip this many (>= 0)
    # @return [Array<DlqEntry>]
    # @raise [InvalidArgumentError] for an unknown status or reason, or a bad limit
    def list_dlq(status: nil, reason: nil, task_uuid: nil, open_only: false, limit: 100, offset: 0)
      check_string!(:status, status, optional: true)
      check_string!(:reason, reason, optional: true)
      check_integer!(:limit, limit)
      check_integer!(:offset, offset)
      native.list_dlq(status&.to_s, reason&.to_s, task_uuid&.to_s, open_only ? true : false, limit, offset)
            .map { |e| DlqEntry.from_h(e) }
    end

    # One DLQ entry.
    # @param entry_uuid [String]
    # @return [DlqEntry]
    # @raise [DlqEntryNotFound]
    def get_dlq_entry(entry_uuid)
      DlqEntry.from_h(native.dlq_entry(entry_uuid.to_s))
    end

    # @deprecated Use {#get_dlq_entry} (the name every language uses); removed in the next release.
    # @return [DlqEntry]
    def dlq_entry(entry_uuid)
      warn("TaskerCore::Client#dlq_entry is deprecated, use #get_dlq_entry", uplevel: 1, category: :deprecated)
      get_dlq_entry(entry_uuid)
    end

    # Records a step of an investigation: a note, and with `status` the entry's new status
    # (`manually_resolved`, `permanently_failed` or `cancelled` close it; nothing happens to the
    # task).
    # @param entry_uuid [String]
    # @param status [String, Symbol, nil] one of {DlqEntry::STATUSES}; nil keeps the status
    # @param note [String]
    # @param by [String]
    # @return [DlqEntry] the entry afterwards
    # @raise [DlqEntryNotFound]
    # @raise [InvalidStateError] when re-opening it while its task has another open entry
    def update_dlq_entry(entry_uuid, note:, by:, status: nil)
      check_string!(:status, status, optional: true)
      check_string!(:note, note)
      check_string!(:by, by)
      DlqEntry.from_h(native.update_dlq_entry(entry_uuid.to_s, status&.to_s, note.to_s, by.to_s))
    end

    # Puts a task in the DLQ by hand (reason `manual`); nothing happens to the task.
    # @param task_uuid [String]
    # @param by [String]
    # @param note [String] why
    # @return [DlqEntry]
    # @raise [InvalidStateError] when the task already has an open entry
    # @raise [TaskNotFound]
    def add_to_dlq(task_uuid, by:, note:)
      check_string!(:by, by)
      check_string!(:note, note)
      DlqEntry.from_h(native.add_to_dlq(task_uuid.to_s, by.to_s, note.to_s))
    end

    # DLQ entries counted by reason and status.
    # @return [DlqStats]
    def dlq_stats
      DlqStats.from_h(native.dlq_stats)
    end

    # The open DLQ entries, most urgent first (see {QueuedDlqEntry}).
    # @param limit [Integer] at most this many (>= 1)
    # @return [Array<QueuedDlqEntry>]
    def dlq_queue(limit: 50)
      check_integer!(:limit, limit)
      native.dlq_queue(limit).map { |e| QueuedDlqEntry.from_h(e) }
    end

    # Unfinished tasks whose time without progress reached at least `min_ratio` of their
    # threshold, most overdue first: monitoring, to alert before the staleness detector moves a
    # task to the DLQ.
    # @param min_ratio [Numeric] 0.0 lists every unfinished task; 0.8 the warning and stale ones
    # @param limit [Integer] at most this many (>= 1)
    # @return [Array<TaskHealth>]
    def staleness_report(min_ratio: 0.0, limit: 100)
      unless min_ratio.is_a?(Numeric) && min_ratio.real?
        raise InvalidArgumentError, "min_ratio must be a number, got #{min_ratio.inspect}"
      end

      check_integer!(:limit, limit)
      native.staleness_report(min_ratio.to_f, limit).map { |h| TaskHealth.from_h(h) }
    end

    # Worker processes (of every language) seen within the last hour, live ones first.
    # @return [Array<WorkerInfo>]
    def list_workers
      native.list_workers.map { |w| WorkerInfo.from_h(w) }
    end

    # @!endgroup
    # @!group Events (see {Events}, {Subscriber}, {SubscriberRunner})

    # Joins (creating it if needed) a durable subscriber group: the low-level API under
    # {SubscriberRunner}. Options left nil keep the engine's defaults.
    # @param group [String, Symbol] members of one group share its events; every group gets all
    # @param patterns [Array<String>, String] event names to take (`task.completed`, `payment.*`, `*`)
    # @param member_id [String, nil] this member's name (default host:pid:n)
    # @param from_start [Boolean, nil] a group created by this join starts at the log's start
    # @param max_attempts [Integer, nil] deliveries before an event goes to the dead letters (5)
    # @param backoff [Numeric, nil] seconds before the second delivery, doubling after (0.2)
    # @param max_backoff [Numeric, nil] (30)
    # @param lease [Numeric, nil] seconds a dead member's partitions stay held (15, at least 0.3)
    # @param poll_interval [Numeric, nil] seconds between looks for new events when idle (0.05)
    # @param batch_size [Integer, nil] events read per partition at once (500, 1..10000)
    # @return [EventSubscription]
    # @raise [InvalidArgumentError] for a bad option
    def subscribe(group:, patterns:, member_id: nil, from_start: nil, max_attempts: nil, backoff: nil, max_backoff: nil,
                  lease: nil, poll_interval: nil, batch_size: nil)
      check_string!(:group, group)
      check_string!(:member_id, member_id, optional: true)
      { max_attempts: max_attempts, batch_size: batch_size }.each do |field, value|
        next if value.nil? || (value.is_a?(Integer) && value.positive? && value.bit_length < 32)

        raise InvalidArgumentError, "#{field} must be a positive Integer, got #{value.inspect}"
      end
      seconds = { backoff: backoff, max_backoff: max_backoff, lease: lease, poll_interval: poll_interval }
      seconds.each do |field, value|
        next if value.nil? || value.is_a?(Numeric)

        raise InvalidArgumentError, "#{field} must be a number of seconds, got #{value.inspect}"
      end
      native_sub = native.subscribe(group.to_s, Events.patterns(patterns), member_id&.to_s, from_start ? true : false,
                                    max_attempts, *seconds.values.map { |v| v&.to_f }, batch_size)
      EventSubscription.new(native_sub)
    end

    # Reads this process's fast events matching `patterns`: lifecycle events of the changes this
    # process commits, and the `delivery: fast` domain events of the steps it completes. Nothing
    # is stored; see {FastSubscription}.
    # @param patterns [Array<String>] e.g. `"step.*"`, `"metrics.*"`
    # @return [FastSubscription]
    def subscribe_fast(*patterns)
      FastSubscription.new(native.subscribe_fast(Events.patterns(*patterns)))
    end

    # Every subscriber group, with its lag and dead letters.
    # @return [Array<EventGroupStatus>]
    def event_groups
      native.event_groups.map { |g| EventGroupStatus.from_h(g) }
    end

    # Events subscriber groups gave up on, newest first.
    # @param group [String, nil] one group's (default: every group's)
    # @param limit [Integer] at most this many (>= 1)
    # @return [Array<EventDeadLetter>]
    def event_dead_letters(group: nil, limit: 100)
      check_string!(:group, group, optional: true)
      check_integer!(:limit, limit)
      native.event_dead_letters(group&.to_s, limit).map { |d| EventDeadLetter.from_h(d) }
    end

    # Deletes a subscriber group with its positions and members (its dead letters stay). Once no
    # group exists, lifecycle events are no longer written (configuration `events.lifecycle`).
    # @param group [String]
    # @return [Boolean] whether it existed
    def delete_event_group(group)
      check_string!(:group, group)
      native.delete_event_group(group.to_s)
    end

    # Stamps positions on committed events (PostgreSQL; nothing to do on SQLite), so that tools
    # reading {#event_groups} see the log up to now. Subscribers do it as they read.
    # @return [Integer] events stamped
    def sequence_events
      native.sequence_events
    end

    # @!endgroup

    # Closes the connection pool.
    def close
      native.close
    end

    def inspect
      "#<TaskerCore::Client #{backend} #{database}>"
    end

    private

    def check_operator!(step, by, reason)
      check_string!(:step, step) unless step.nil?
      check_string!(:by, by)
      check_string!(:reason, reason)
    end

    def check_integer!(field, value)
      return if value.is_a?(Integer) && value.bit_length < 64

      raise InvalidArgumentError, "#{field} must be a 64-bit Integer, got #{value.inspect}"
    end

    def check_tags_and_priority!(tags, priority)
      unless tags.is_a?(Array) && tags.all? { |t| t.is_a?(String) || t.is_a?(Symbol) }
        raise InvalidArgumentError, "tags must be an Array of Strings, got #{tags.inspect}"
      end
      return if priority.is_a?(Integer) && priority.bit_length < 32

      raise InvalidArgumentError, "priority must be a 32-bit Integer, got #{priority.inspect}"
    end

    def check_string!(field, value, optional: false)
      return if value.is_a?(String) || value.is_a?(Symbol)
      return if optional && value.nil?

      raise InvalidArgumentError, "#{field} must be a String#{' or nil' if optional}, got #{value.inspect}"
    end
  end
end
