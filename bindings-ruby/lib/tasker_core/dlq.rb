# frozen_string_literal: true

require "forwardable"

module TaskerCore
  # One note of a DLQ investigation.
  DlqNote = Struct.new(:by, :text, :at, :status, keyword_init: true)

  # One note of a DLQ investigation: who wrote it, when, and the status the entry moved to with
  # it (nil when it did not move).
  class DlqNote
    # @api private
    # @return [DlqNote]
    def self.from_h(hash)
      new(by: hash["by"], text: hash["text"], at: TaskerCore.parse_time(hash["at"]), status: hash["status"]).freeze
    end
  end

  # A dead-letter queue entry: a task that needs a human.
  DlqEntry = Struct.new(:entry_uuid, :task_uuid, :reason, :task_state, :snapshot, :status, :notes, :resolved_by,
                        :resolved_at, :created_at, :updated_at, :task_priority, keyword_init: true)

  # A dead-letter queue entry: a task that needs a human. Written by the engine in the
  # transaction that made the task stuck (a step's final failure, the staleness detector, a queue
  # no live worker serves) or by {Client#add_to_dlq}. A task has at most one open entry; it closes
  # by itself (`manually_resolved`) when an operator action lets the task finish.
  #
  # `snapshot` is the task as it entered: "task", "steps" (name, state, attempts, last_error, ...)
  # and "template" (namespace, name, version), as String-keyed Hashes.
  class DlqEntry
    # Why a task is in the DLQ.
    REASONS = %w[max_retries_exceeded permanent_failure staleness_timeout worker_unavailable manual].freeze
    # Where an investigation stands.
    STATUSES = %w[pending investigating manually_resolved permanently_failed cancelled].freeze
    # The statuses of an entry still under investigation.
    OPEN_STATUSES = %w[pending investigating].freeze

    # @api private
    # @return [DlqEntry]
    def self.from_h(hash)
      new(entry_uuid: hash["entry_uuid"], task_uuid: hash["task_uuid"], reason: hash["reason"],
          task_state: hash["task_state"], snapshot: hash["snapshot"], status: hash["status"],
          notes: hash["notes"].map { |n| DlqNote.from_h(n) }, resolved_by: hash["resolved_by"],
          resolved_at: TaskerCore.parse_time(hash["resolved_at"]), created_at: TaskerCore.parse_time(hash["created_at"]),
          updated_at: TaskerCore.parse_time(hash["updated_at"]), task_priority: hash["task_priority"]).freeze
    end

    # Whether the investigation is still open (`pending` or `investigating`).
    def open?
      OPEN_STATUSES.include?(status)
    end

    def inspect
      "#<TaskerCore::DlqEntry #{entry_uuid} task=#{task_uuid} #{reason} #{status}>"
    end
  end

  # An open entry in the investigation queue ({Client#dlq_queue}), with its priority score.
  QueuedDlqEntry = Struct.new(:score, :entry, keyword_init: true)

  # An open entry in the investigation queue ({Client#dlq_queue}): the {DlqEntry} (whose readers
  # it answers too) and its score, highest first: the reason's weight (permanent_failure 40,
  # max_retries_exceeded 30, worker_unavailable 25, staleness_timeout 20, manual 10), plus a point
  # per hour waited, plus the task's priority.
  class QueuedDlqEntry
    extend Forwardable
    def_delegators :entry, *DlqEntry.members, :open?

    # @api private
    # @return [QueuedDlqEntry]
    def self.from_h(hash)
      new(score: hash["score"], entry: DlqEntry.from_h(hash)).freeze
    end

    def inspect
      "#<TaskerCore::QueuedDlqEntry score=#{format('%.2f', score)} #{entry_uuid} #{reason} #{status}>"
    end
  end

  # DLQ entries of one reason and status. `count` is the engine's field name in every language; it
  # hides Enumerable#count, which means nothing for a record of three fields.
  DlqCount = Struct.new(:reason, :status, :count, keyword_init: true) # rubocop:disable Lint/StructNewOverride

  # DLQ entries counted by reason and by status.
  DlqStats = Struct.new(:total, :open, :by_reason, :by_status, :counts, keyword_init: true)

  # DLQ entries counted by reason and by status ({Client#dlq_stats}): `by_reason` and `by_status`
  # are Hashes of counts by name, `open` counts the `pending` and `investigating` entries, and
  # `counts` has one {DlqCount} per (reason, status) pair.
  class DlqStats
    # @api private
    # @return [DlqStats]
    def self.from_h(hash)
      counts = hash["counts"].map { |c| DlqCount.new(reason: c["reason"], status: c["status"], count: c["count"]).freeze }
      new(total: hash["total"], open: hash["open"], by_reason: hash["by_reason"], by_status: hash["by_status"],
          counts: counts).freeze
    end
  end

  # An unfinished task in the staleness report.
  TaskHealth = Struct.new(:task_uuid, :state, :health, :idle_ms, :threshold_ms, :age_ms, :max_duration_ms,
                          keyword_init: true)

  # An unfinished task in the staleness report ({Client#staleness_report}): how long it has made
  # no progress (`idle_ms`) against the threshold of its state (`threshold_ms`, from the
  # template's `lifecycle:` block or the defaults), and its age against `max_duration_ms`.
  # `health` is "healthy" (under 80 % of both), "warning" or "stale" (past one: the detector moves
  # it to `error` and the DLQ).
  class TaskHealth
    # @api private
    # @return [TaskHealth]
    def self.from_h(hash)
      new(task_uuid: hash["task_uuid"], state: hash["state"], health: hash["health"], idle_ms: hash["idle_ms"],
          threshold_ms: hash["threshold_ms"], age_ms: hash["age_ms"], max_duration_ms: hash["max_duration_ms"]).freeze
    end

    def healthy?
      health == "healthy"
    end

    def warning?
      health == "warning"
    end

    def stale?
      health == "stale"
    end
  end

  # A worker process in the registry.
  WorkerInfo = Struct.new(:registration_uuid, :worker_id, :host, :pid, :language, :queues, :concurrency, :in_flight,
                          :started_at, :last_heartbeat_at, :stopped_at, :live, keyword_init: true)

  # A worker process as registered ({Client#list_workers}): every worker (in any language)
  # registers when it starts, heartbeats, and is marked stopped when it shuts down. `live` means
  # heartbeating and not stopped; `in_flight` is the steps it held at its last heartbeat.
  class WorkerInfo
    # @api private
    # @return [WorkerInfo]
    def self.from_h(hash)
      new(registration_uuid: hash["registration_uuid"], worker_id: hash["worker_id"], host: hash["host"],
          pid: hash["pid"], language: hash["language"], queues: hash["queues"], concurrency: hash["concurrency"],
          in_flight: hash["in_flight"], started_at: TaskerCore.parse_time(hash["started_at"]),
          last_heartbeat_at: TaskerCore.parse_time(hash["last_heartbeat_at"]),
          stopped_at: TaskerCore.parse_time(hash["stopped_at"]), live: hash["live"]).freeze
    end

    def live?
      live
    end

    def inspect
      "#<TaskerCore::WorkerInfo #{worker_id} #{language} #{queues.join(',')} #{live ? 'live' : 'gone'}>"
    end
  end
end
