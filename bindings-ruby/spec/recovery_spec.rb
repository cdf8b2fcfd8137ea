# frozen_string_literal: true

require "spec_helper"

RSpec.describe "recovering failed work (operator actions, the DLQ, workers)" do
  each_backend do
    before(:all) { @client = TaskerCore.connect(database_url: database_url) }
    after(:all) { @client&.close }

    let(:client) { @client }
    let(:ns) { SpecSupport.unique_namespace("rb_recovery") }

    before do
      %w[recovery_chain.yaml recovery_pair.yaml recovery_slow.yaml recovery_stale.yaml].each do |file|
        client.register_templates(write_fixture(file, namespace: ns))
      end
    end

    def create(name, context = {})
      client.create_task(namespace: ns, name: name, context: context)
    end

    # A task of template `name` that ran until it failed.
    def failed_task(name, context = {})
      task = create(name, context).wait(timeout: 60)
      expect(task.state).to eq("error")
      task
    end

    def entries_of(task)
      client.list_dlq(task_uuid: task.uuid)
    end

    def wait_for_step(task, step, state)
      within(20, "#{step} to be #{state}") { sleep 0.01 until client.get_step(task.uuid, step).state == state }
    end

    it "completes a permanently failed step by hand: the step below gets the operator's result, the DLQ entry closes" do
      with_worker(client, queues: [ns]) do
        task = failed_task("recovery_chain")
        entries = entries_of(task)
        expect(entries.size).to eq(1)
        entry = entries.first
        expect(entry).to be_a(TaskerCore::DlqEntry).and be_open
        expect(entry).to have_attributes(task_uuid: task.uuid, reason: "permanent_failure", status: "pending",
                                         task_state: "error", resolved_by: nil, resolved_at: nil)
        expect(entry.created_at).to be_a(Time)
        # The snapshot: the task, its steps as they were, the template.
        expect(entry.snapshot["template"]).to include("name" => "recovery_chain", "namespace" => ns)
        steps = entry.snapshot["steps"].to_h { |s| [s["name"], s] }
        expect(steps.keys).to contain_exactly("a", "b", "c")
        expect(steps["b"]).to include("state" => "error")
        expect(steps["b"]["last_error"]).to include("error_type" => "Broken", "retryable" => false)

        b = client.complete_step_manually(task.uuid, "b", result: { manual: 42 }, metadata: { ticket: "OPS-1" },
                                                          by: "alice", reason: "fixed upstream")
        expect(b).to be_a(TaskerCore::StepDetail)
        expect(b).to have_attributes(name: "b", state: "complete", result: { "manual" => 42 })
        manual = b.transitions.find { |t| t.event == "complete_manually" }
        expect(manual.metadata).to include("by" => "alice", "reason" => "fixed upstream",
                                           "metadata" => { "ticket" => "OPS-1" })

        done = task.wait(timeout: 60)
        expect(done).to be_complete
        expect(done.step("c").results["received"]).to eq("b" => { "manual" => 42 })
        # Re-opened on the way, audited with who and why.
        reopen = done.transitions.find { |t| t.step_name.nil? && t.event == "reopen" }
        expect(reopen).to have_attributes(from_state: "error", to_state: "enqueuing_steps")
        expect(reopen.metadata).to include("by" => "alice", "reason" => "fixed upstream")

        closed = client.get_dlq_entry(entry.entry_uuid)
        expect(closed).not_to be_open
        expect(closed).to have_attributes(status: "manually_resolved", resolved_by: "alice")
        expect(closed.resolved_at).to be_a(Time)
        expect(closed.notes).to all(be_a(TaskerCore::DlqNote))
        expect(closed.notes.map(&:text)).to include(a_string_including("fixed upstream"))
      end
    end

    it "resets a fixed step: get_step shows every attempt's error, the step runs again, the task completes" do
      with_worker(client, queues: [ns]) do
        task = failed_task("recovery_chain", { "fail" => "retryable" })
        b = client.get_step(task.uuid, :b)
        expect(b).to have_attributes(state: "error", attempts: 2, max_attempts: 2)
        expect(b.errors.map(&:attempt)).to eq([1, 2])
        expect(b.errors).to all(be_a(TaskerCore::StepError).and(have_attributes(error_type: "Flaky", retryable: true)))
        expect(b.errors.map(&:message)).to eq(["b failed on attempt 1", "b failed on attempt 2"])
        expect(b.last_error["message"]).to eq("b failed on attempt 2")
        expect(b).to be_dependencies_satisfied
        expect(b).not_to be_retry_possible
        expect(entries_of(task).map(&:reason)).to eq(["max_retries_exceeded"])
        # A step that has not run yet: nothing to satisfy it.
        c = client.get_step(task.uuid, "c")
        expect(c).to have_attributes(state: "pending", errors: [])
        expect(c).not_to be_dependencies_satisfied

        RbSpec::Recovery.fix(task.uuid)
        reset = client.reset_step(task.uuid, "b", by: "bob", reason: "deployed the fix")
        expect(%w[enqueued in_progress complete]).to include(reset.state)
        expect(reset.transitions.find { |t| t.event == "reset" }.metadata).to include("by" => "bob")

        done = task.wait(timeout: 60)
        expect(done).to be_complete
        b = client.get_step(task.uuid, "b")
        # Attempt numbers keep growing across a reset; the attempts before it stop counting.
        expect(b).to have_attributes(state: "complete", attempts: 3, free_attempts: 2,
                                     result: { "fixed" => true, "attempt" => 3 })
        expect(b.errors.size).to eq(2)
        expect(entries_of(task).first).to have_attributes(status: "manually_resolved", resolved_by: "bob")
      end
    end

    it "resolves a step manually: the steps below it run and the task completes" do
      with_worker(client, queues: [ns]) do
        task = failed_task("recovery_chain")
        b = client.resolve_step_manually(task.uuid, "b", by: "carol", reason: "not needed this time")
        expect(b.state).to eq("resolved_manually")
        done = task.wait(timeout: 60)
        expect(done).to be_complete
        expect(done.step("c").state).to eq("complete")
        expect(entries_of(task).first).to have_attributes(status: "manually_resolved", resolved_by: "carol")
      end
    end

    it "retries a task: every failed step is reset" do
      with_worker(client, queues: [ns]) do
        task = failed_task("recovery_pair")
        expect(client.list_steps(task.uuid).select(&:error?).map(&:name)).to eq(%w[b1 b2])
        expect(client.list_steps(task.uuid)).to all(be_a(TaskerCore::StepDetail))

        RbSpec::Recovery.fix(task.uuid)
        retried = client.retry_task(task.uuid, by: "dave", reason: "both fixed")
        expect(retried).to be_a(TaskerCore::Task)
        expect(retried.state).not_to eq("error")
        done = retried.wait(timeout: 60)
        expect(done).to be_complete
        expect(done.failed_steps).to eq(0)
        expect(done.step("d").results["received"].keys).to contain_exactly("b1", "b2")

        expect { client.retry_task(task.uuid, by: "dave", reason: "again") }
          .to raise_error(TaskerCore::InvalidStateError, /is complete; only a task in error can be retried/) { |e|
            expect(e.code).to eq("invalid_state")
          }
      end
    end

    it "resolves a task by hand: it closes, its waiting steps are cancelled, its DLQ entry closes" do
      with_worker(client, queues: [ns]) do
        task = failed_task("recovery_chain")
        resolved = client.resolve_task(task.uuid, by: "erin", reason: "handled outside")
        expect(resolved.state).to eq("resolved_manually")
        expect(resolved).to be_terminal
        expect(client.get_task(task.uuid).step("c").state).to eq("cancelled")
        expect(entries_of(task).first).to have_attributes(status: "manually_resolved", resolved_by: "erin")
        expect { client.resolve_task(task.uuid, by: "erin", reason: "twice") }
          .to raise_error(TaskerCore::InvalidStateError, /resolved_manually/)
      end
    end

    it "cancels a running step and the steps below it; the task completes" do
      with_worker(client, queues: [ns]) do
        task = create("recovery_slow", { "sleep_ms" => 5_000 })
        wait_for_step(task, "s", "in_progress")
        s = client.cancel_step(task.uuid, "s", by: "frank", reason: "no longer wanted")
        expect(s.state).to eq("cancelled")
        done = task.wait(timeout: 60)
        expect(done).to be_complete
        expect(done.step("t").state).to eq("cancelled")
      end
    end

    it "refuses illegal actions with the engine's message, and unknown steps, tasks and bad values" do
      with_worker(client, queues: [ns]) do
        task = failed_task("recovery_chain")
        expect { client.reset_step(task.uuid, "a", by: "x", reason: "y") }
          .to raise_error(TaskerCore::InvalidStateError) { |e|
            expect(e.code).to eq("invalid_state")
            expect(e.message).to eq("step 'a' is complete; only error, waiting_for_retry, enqueued steps can be reset")
          }
        expect { client.cancel_step(task.uuid, "b", by: "x", reason: "y") }
          .to raise_error(TaskerCore::InvalidStateError, /step 'b' is error/)
        expect { client.resolve_step_manually(task.uuid, "nope", by: "x", reason: "y") }
          .to raise_error(TaskerCore::StepNotFound, /no step 'nope'/) { |e|
            expect(e).to have_attributes(code: "step_not_found", step: "nope", task_uuid: task.uuid)
          }
        expect { client.get_step(task.uuid, "nope") }.to raise_error(TaskerCore::StepNotFound)
        missing = "0190a5c0-0000-7000-8000-000000000000"
        expect { client.reset_step(missing, "b", by: "x", reason: "y") }
          .to raise_error(TaskerCore::TaskNotFound) { |e| expect(e.task_uuid).to eq(missing) }
        expect { client.list_steps(missing) }.to raise_error(TaskerCore::TaskNotFound)
        expect { client.reset_step("not-a-uuid", "b", by: "x", reason: "y") }
          .to raise_error(TaskerCore::InvalidArgumentError, /not-a-uuid/)
        too_big = { "blob" => "x" * (2 * 1024 * 1024) }
        expect { client.complete_step_manually(task.uuid, "b", result: too_big, by: "x", reason: "y") }
          .to raise_error(TaskerCore::InvalidArgumentError) { |e| expect(e.code).to eq("invalid_argument") }
        expect { client.complete_step_manually(task.uuid, "b", result: { "x" => Float::NAN }, by: "x", reason: "y") }
          .to raise_error(TaskerCore::SerializationError) { |e| expect(e.path).to eq("result.x") }
        expect { client.reset_step(task.uuid, "b", by: nil, reason: "y") }
          .to raise_error(TaskerCore::InvalidArgumentError, /by must be a String/)
        # A step is found by uuid too.
        b = client.get_step(task.uuid, "b")
        expect(client.get_step(task.uuid, b.uuid).name).to eq("b")
        # Nothing changed.
        expect(client.get_task(task.uuid).state).to eq("error")
        client.resolve_task(task.uuid, by: "spec", reason: "done")
      end
    end

    it "investigates DLQ entries: add, update, filter, paginate, count and queue them" do
      stats_before = client.dlq_stats
      permanent = nil
      retryable = nil
      with_worker(client, queues: [ns]) do
        permanent = failed_task("recovery_chain")
        retryable = failed_task("recovery_chain", { "fail" => "retryable" })
      end
      # No worker serves this one: it waits while an operator looks at it.
      waiting = create("recovery_slow")
      manual = client.add_to_dlq(waiting.uuid, by: "hank", note: "looks odd")
      expect(manual).to have_attributes(reason: "manual", status: "pending", task_uuid: waiting.uuid)
      expect(manual.notes.map { |n| [n.by, n.text] }).to eq([["hank", "looks odd"]])
      expect { client.add_to_dlq(waiting.uuid, by: "hank", note: "twice") }
        .to raise_error(TaskerCore::InvalidStateError, /already has an open DLQ entry/)

      stats = client.dlq_stats
      expect(stats).to be_a(TaskerCore::DlqStats)
      expect(stats.counts).to all(be_a(TaskerCore::DlqCount))
      expect(stats.total).to eq(stats.counts.sum(&:count))
      expect(stats.open).to eq(stats.counts.select { |c| TaskerCore::DlqEntry::OPEN_STATUSES.include?(c.status) }.sum(&:count))
      expect(stats.by_reason.values.sum).to eq(stats.total)
      grown = ->(key) { stats.by_reason.fetch(key, 0) - stats_before.by_reason.fetch(key, 0) }
      # Other processes may share the PostgreSQL database: there, counts only grow.
      if backend == "sqlite"
        expect(%w[permanent_failure max_retries_exceeded manual].map(&grown)).to eq([1, 1, 1])
        expect(stats.open - stats_before.open).to eq(3)
      else
        expect(%w[permanent_failure max_retries_exceeded manual].map(&grown)).to all(be >= 1)
      end

      mine = [permanent, retryable, waiting].map(&:uuid)
      queue = client.dlq_queue(limit: 10_000).select { |q| mine.include?(q.task_uuid) }
      expect(queue).to all(be_a(TaskerCore::QueuedDlqEntry))
      expect(queue.map(&:reason)).to eq(%w[permanent_failure max_retries_exceeded manual])
      expect(queue.map(&:score)).to eq(queue.map(&:score).sort.reverse)
      expect(queue.first.entry).to be_a(TaskerCore::DlqEntry)
      expect(queue.first.score).to be >= 40
      expect(client.dlq_queue(limit: 1).size).to eq(1)

      entry = entries_of(permanent).first
      entry = client.update_dlq_entry(entry.entry_uuid, status: :investigating, note: "looking", by: "ivy")
      expect(entry.status).to eq("investigating")
      expect(entry).to be_open
      entry = client.update_dlq_entry(entry.entry_uuid, status: "permanently_failed", note: "bad input, won't fix",
                                                        by: "ivy")
      expect(entry).to have_attributes(status: "permanently_failed", resolved_by: "ivy")
      expect(entry.notes.map(&:status)).to eq(%w[investigating permanently_failed])
      expect(entry.notes.map(&:at)).to all(be_a(Time))
      noted = client.update_dlq_entry(entry.entry_uuid, note: "told the customer", by: "ivy")
      expect(noted.status).to eq("permanently_failed")
      expect(noted.notes.last).to have_attributes(text: "told the customer", status: nil)

      # Filters: newest first.
      open = client.list_dlq(open_only: true, limit: 10_000).map(&:task_uuid) & mine
      expect(open).to eq([waiting.uuid, retryable.uuid])
      expect(client.list_dlq(reason: :manual, task_uuid: waiting.uuid).map(&:entry_uuid)).to eq([manual.entry_uuid])
      expect(client.list_dlq(status: "permanently_failed", task_uuid: permanent.uuid).size).to eq(1)
      expect(client.list_dlq(status: "pending", task_uuid: permanent.uuid)).to eq([])
      # A task's history: its closed entry, then a new open one; a page at a time.
      again = client.add_to_dlq(permanent.uuid, by: "ivy", note: "customer called back")
      expect(client.list_dlq(task_uuid: permanent.uuid, limit: 1).map(&:entry_uuid)).to eq([again.entry_uuid])
      expect(client.list_dlq(task_uuid: permanent.uuid, limit: 1, offset: 1).map(&:entry_uuid)).to eq([entry.entry_uuid])
      expect { client.update_dlq_entry(entry.entry_uuid, status: "pending", note: "reopen", by: "ivy") }
        .to raise_error(TaskerCore::InvalidStateError, /already has an open DLQ entry/)

      expect { client.get_dlq_entry("0190a5c0-0000-7000-8000-000000000000") }
        .to raise_error(TaskerCore::DlqEntryNotFound) { |e|
          expect(e).to have_attributes(code: "dlq_entry_not_found", entry_uuid: "0190a5c0-0000-7000-8000-000000000000")
        }
      expect { client.list_dlq(status: "closed") }
        .to raise_error(TaskerCore::InvalidArgumentError, /status must be one of pending, investigating/)
      expect { client.list_dlq(reason: "bored") }.to raise_error(TaskerCore::InvalidArgumentError, /reason must be one of/)
      expect { client.list_dlq(limit: 0) }.to raise_error(TaskerCore::InvalidArgumentError, /limit must be at least 1/)
      expect { client.list_dlq(offset: -1) }.to raise_error(TaskerCore::InvalidArgumentError, /offset/)
      expect { client.dlq_queue(limit: "5") }.to raise_error(TaskerCore::InvalidArgumentError, /limit/)

      # Cancelling a task closes its entry; the others are closed by hand.
      client.cancel_task(waiting.uuid)
      expect(client.get_dlq_entry(manual.entry_uuid).status).to eq("cancelled")
      client.update_dlq_entry(again.entry_uuid, status: "cancelled", note: "spec done", by: "ivy")
      client.resolve_task(retryable.uuid, by: "ivy", reason: "spec done")
      expect(client.list_dlq(open_only: true, limit: 10_000).map(&:task_uuid) & mine).to eq([])
    end

    it "reports how close unfinished tasks are to the thresholds of their template's lifecycle" do
      with_worker(client, queues: [ns]) do
        stale = create("recovery_stale", { "sleep_ms" => 1_500 })
        healthy = create("recovery_slow", { "sleep_ms" => 1_500 })
        sleep 0.15 # past the stale template's 60 ms
        report = client.staleness_report(min_ratio: 0.0, limit: 10_000)
        expect(report).to all(be_a(TaskerCore::TaskHealth))
        mine = report.find { |h| h.task_uuid == stale.uuid }
        if mine
          expect(mine).to be_stale
          expect(mine).to have_attributes(threshold_ms: 60, state: "steps_in_process")
          expect(mine.idle_ms).to be >= 60
          expect(mine.max_duration_ms).to eq(24 * 60 * 60 * 1000)
        else
          # A detector (in another worker process sharing the database) got there first.
          expect(entries_of(stale).map(&:reason)).to eq(["staleness_timeout"])
        end
        other = report.find { |h| h.task_uuid == healthy.uuid }
        expect(other).to be_healthy
        expect(other.threshold_ms).to eq(60 * 60 * 1000)
        # Most overdue first; min_ratio leaves out the healthy ones.
        expect(report.index(mine)).to be < report.index(other) if mine
        expect(client.staleness_report(min_ratio: 0.8, limit: 10_000).map(&:task_uuid)).not_to include(healthy.uuid)
        expect { client.staleness_report(min_ratio: Float::NAN) }.to raise_error(TaskerCore::InvalidArgumentError, /min_ratio/)
        expect { client.staleness_report(min_ratio: "high") }.to raise_error(TaskerCore::InvalidArgumentError, /min_ratio/)
        [stale, healthy].each { |t| t.wait(timeout: 60) }
      end
    end

    it "lists this worker live, in Ruby, and stopped after it stops" do
      worker = TaskerCore::Worker.new(client, queues: [ns], concurrency: 3, worker_id: "rb-spec:#{ns}").start
      begin
        me = client.list_workers.find { |w| w.worker_id == "rb-spec:#{ns}" }
        expect(me).to be_a(TaskerCore::WorkerInfo).and be_live
        expect(me).to have_attributes(language: "ruby", queues: [ns], concurrency: 3, pid: Process.pid, stopped_at: nil,
                                      in_flight: 0)
        expect(me.host).not_to be_empty
        expect(me.started_at).to be_a(Time)
        expect(me.last_heartbeat_at).to be >= me.started_at
      ensure
        worker.stop(timeout: 10)
      end
      gone = client.list_workers.find { |w| w.registration_uuid == me.registration_uuid }
      expect(gone).not_to be_live
      expect(gone.stopped_at).to be_a(Time)
    end
  end
end
