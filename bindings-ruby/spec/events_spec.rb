# frozen_string_literal: true

require "spec_helper"
require "json"
require "open3"
require "active_support/notifications"
require "tasker_core/notifications_bridge"

# Events: the catalog, domain events published by Ruby handlers, subscribers and their runner,
# fast subscriptions, the operator calls and the ActiveSupport::Notifications bridge.
RSpec.describe "Events" do
  # Records what it is given, routing task.completed to its own method.
  class EventRecorder < TaskerCore::Subscriber # rubocop:disable Lint/ConstantDefinitionInBlock
    subscribe_to "task.*", "step.*"

    attr_reader :events

    def initialize(fail_when: nil)
      super()
      @events = []
      @lock = Mutex.new
      @fail_when = fail_when
    end

    def handle_task_completed(event)
      record(event, :routed)
    end

    def handle(event)
      record(event, :fallback)
    end

    def seen
      @lock.synchronize { @events.dup }
    end

    def of_task(uuid)
      seen.select { |e, _| e.task_uuid == uuid }.map do |e, _|
        e.category == "step" ? "#{e.name}:#{e.payload['step_name']}" : e.name
      end
    end

    private

    def record(event, how)
      @lock.synchronize { @events << [event, how] }
      raise "poisoned #{event.name}" if @fail_when&.call(event)
    end
  end

  # Waits for a condition (a guard that fails instead of hanging, not a timing assertion).
  def eventually(what, seconds: 30)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
    until (value = yield)
      raise RSpec::Expectations::ExpectationNotMetError, "#{what}: not within #{seconds}s" \
        if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
    end
    value
  end

  describe "the catalog" do
    it "lists every lifecycle event with a category, description, schema and example" do
      names = TaskerCore::Events.catalog.map(&:name)
      expect(names).to include("task.created", "task.started", "task.completed", "task.failed", "task.cancelled",
                               "task.resolved", "step.enqueued", "step.started", "step.completed", "step.failed",
                               "step.retry_scheduled", "step.timed_out", "step.resolved", "dlq.entry_created")
      info = TaskerCore::Events.event_info("task.completed")
      expect(info).to be_frozen
      expect(info).to have_attributes(name: "task.completed", category: "task")
      expect(info.description).to be_a(String).and(satisfy { |d| !d.empty? })
      expect(info.payload_schema).to include("type" => "object", "required" => include("namespace", "to_state"))
      expect(info.example).to include("to_state" => "complete")
      expect(TaskerCore::Events.event_info(:"step.failed").category).to eq("step")
      expect(TaskerCore::Events.event_info("payment.charged")).to be_nil
      expect(TaskerCore::Events.envelope_schema["required"]).to include("event_id", "name", "payload")
    end

    it "matches names with * wildcards" do
      expect(TaskerCore::Events.matches?("payment.*", "payment.charged")).to be(true)
      expect(TaskerCore::Events.matches?("*", "task.completed")).to be(true)
      expect(TaskerCore::Events.matches?("task.*", "step.completed")).to be(false)
      expect(TaskerCore::Events.matches?("task.completed", "task.completed")).to be(true)
    end
  end

  describe TaskerCore::Subscriber do
    it "routes handle_<name> with dots as underscores, else handle, and inherits patterns" do
      klass = Class.new(TaskerCore::Subscriber) do
        subscribe_to "task.completed", :"payment.*"
        group "billing"
        def handle_task_completed(_event) = :completed
        def handle_payment_charged(_event) = :charged
        def handle(_event) = :fallback
      end
      sub = Class.new(klass) { subscribe_to "step.failed" }
      expect(klass.patterns).to eq(%w[task.completed payment.*])
      expect(sub.patterns).to eq(%w[task.completed payment.* step.failed])
      expect(sub.group).to eq("billing")
      expect(klass.subscribed_to?("payment.refunded")).to be(true)
      expect(klass.subscribed_to?("step.failed")).to be(false)
      expect(run_subscriber(klass, build_event("task.completed"))).to eq(:completed)
      expect(run_subscriber(klass, build_event("payment.charged", payload: { amount: 5 }))).to eq(:charged)
      expect(run_subscriber(klass, build_event("payment.refunded"))).to eq(:fallback)
    end

    it "names its group after the class, underscored" do
      expect(EventRecorder.group).to eq("event_recorder")
      stub_const("Billing::AuditLOGSubscriber", Class.new(TaskerCore::Subscriber))
      expect(Billing::AuditLOGSubscriber.group).to eq("billing/audit_log_subscriber")
      expect { Class.new(TaskerCore::Subscriber).group }.to raise_error(TaskerCore::InvalidArgumentError, /anonymous/)
    end

    it "raises for an event it has no method for, so that it is not acknowledged silently" do
      klass = Class.new(TaskerCore::Subscriber) { subscribe_to "*" }
      expect { run_subscriber(klass, build_event("task.created")) }
        .to raise_error(NotImplementedError, /handle_task_created\(event\) nor handle\(event\)/)
    end

    it "refuses bad patterns and unknown options" do
      expect { Class.new(TaskerCore::Subscriber) { subscribe_to "" } }.to raise_error(TaskerCore::InvalidArgumentError)
      expect { Class.new(TaskerCore::Subscriber) { subscribe_to 5 } }.to raise_error(TaskerCore::InvalidArgumentError)
      expect { Class.new(TaskerCore::Subscriber) { subscription_options(retries: 3) } }
        .to raise_error(TaskerCore::InvalidArgumentError, /retries/)
    end

    it "builds test events from the catalog's examples" do
      event = build_event("step.completed", step_uuid: "0192f2b4-7c1e-7000-8000-000000000009")
      expect(event).to have_attributes(category: "step", delivery: "durable", attempt: 1, redelivery?: false)
      expect(event.payload).to eq(TaskerCore::Events.event_info("step.completed").example)
      expect(event.step_uuid).to eq("0192f2b4-7c1e-7000-8000-000000000009")
      expect(event.occurred_at).to be_a(Time)
      expect(build_event("payment.charged", payload: { amount: 1 })).to have_attributes(
        category: "domain", domain?: true, payload: { "amount" => 1 }
      )
      expect(build_event("task.created", delivery: "fast")).to have_attributes(fast?: true, attempt: nil)
    end
  end

  describe "StepContext#publish" do
    it "adds the events to the outcome's metadata, keeping the handler's own" do
      handler = Class.new(TaskerCore::StepHandler::Base) do
        def call(context)
          context.publish("payment.charged", { amount: 5 })
          context.publish(:"metrics.timed")
          success(result: { ok: true }, metadata: { "gateway" => "test" })
        end
      end
      result = run_handler(handler, build_step_context)
      expect(result).to be_success
      expect(result).to have_published_event("payment.charged", "amount" => 5)
      expect(result).to have_published_event("metrics.timed")
      expect(result).not_to have_published_event("payment.refunded")
      expect(result.metadata).to eq("gateway" => "test", "events" => [
                                      { "name" => "payment.charged", "payload" => { "amount" => 5 } },
                                      { "name" => "metrics.timed", "payload" => {} }
                                    ])
    end

    it "keeps events published before the handler raised, and those its metadata listed" do
      handler = Class.new(TaskerCore::StepHandler::Base) do
        def call(context)
          context.publish("payment.declined", { reason: "no funds" })
          raise TaskerCore::PermanentError.new("declined", metadata: { "events" => [{ "name" => "a.b", "payload" => {} }] })
        end
      end
      result = run_handler(handler, build_step_context)
      expect(result).to be_failure
      expect(result.published_events.map { |e| e["name"] }).to eq(["a.b", "payment.declined"])
      expect(result).to have_published_event("payment.declined", include("reason" => "no funds"))
      expect { build_step_context.publish("", {}) }.to raise_error(TaskerCore::InvalidArgumentError)
    end
  end

  each_backend do
    let(:client) { TaskerCore.connect(database_url: database_url) }

    before do
      @runners = []
      @groups = []
    end

    after do
      @runners.each { |r| r.stop(timeout: 5) }
      @groups.each { |g| client.delete_event_group(g) }
      # Each example's client has its own pool: give its connections back.
      client.close
    end

    def group_name(prefix)
      "#{prefix}-#{SecureRandom.hex(4)}".tap { |g| @groups << g }
    end

    def start_runner(subscriber, **options)
      options[:group] ||= group_name("rb") unless options[:fast]
      TaskerCore::SubscriberRunner.new(client, subscriber, poll_interval: 0.02, lease: 1.5, backoff: 0.01,
                                                           **options).start.tap { |r| @runners << r }
    end

    def create(namespace, template, context = {})
      client.create_task(namespace: namespace, name: template, context: context)
    end

    it "delivers a task's lifecycle events in order, routed by name" do
      ns = register_fixture(client, "events_pair.yaml")
      recorder = EventRecorder.new
      runner = start_runner(recorder)
      expect(runner.group).to start_with("rb-")
      expect(runner.member_id).to be_a(String)
      task = with_worker(client, queues: [ns]) do
        create(ns, "events_pair").wait(timeout: 30).tap { |t| expect(t.state).to eq("complete") }
      end
      eventually("task.completed") { recorder.of_task(task.uuid).include?("task.completed") }
      expect(recorder.of_task(task.uuid)).to eq(%w[task.created task.started step.enqueued:a step.started:a
                                                   step.completed:a step.enqueued:b step.started:b step.completed:b
                                                   task.completed])
      routed = recorder.seen.select { |e, _| e.task_uuid == task.uuid }.map { |e, how| [e.name, how] }
      expect(routed).to include(["task.completed", :routed], ["task.created", :fallback])
      completed = recorder.seen.map(&:first).find { |e| e.task_uuid == task.uuid && e.name == "task.completed" }
      expect(completed).to have_attributes(category: "task", delivery: "durable", attempt: 1, namespace: ns,
                                           task_name: "events_pair")
      expect(completed.event_id).to match(/\A\h{8}-\h{4}-7\h{3}-/)
      expect(completed.payload).to include("to_state" => "complete", "total_steps" => 2)
      expect(completed.occurred_at).to be_a(Time)
      group = client.event_groups.find { |g| g.group == runner.group }
      expect(group).to have_attributes(patterns: %w[task.* step.*], live_members: 1, dead_letters: 0)
      expect(runner.stats[:handled]).to be >= 9
    end

    it "keeps each task's events in order with several threads" do
      ns = register_fixture(client, "events_pair.yaml")
      recorder = EventRecorder.new
      start_runner(recorder, concurrency: 3)
      tasks = with_worker(client, queues: [ns], concurrency: 4) do
        Array.new(3) { create(ns, "events_pair") }.map { |t| t.wait(timeout: 30) }
      end
      eventually("every task.completed") { tasks.all? { |t| recorder.of_task(t.uuid).include?("task.completed") } }
      tasks.each do |t|
        names = recorder.of_task(t.uuid)
        expect(names.first).to eq("task.created")
        expect(names.last).to eq("task.completed")
        expect(names.index("step.completed:a")).to be < names.index("step.started:b")
      end
    end

    it "delivers a domain event published by a Ruby handler, durably and fast" do
      ns = register_fixture(client, "events_payments.yaml")
      ledger = Class.new(TaskerCore::Subscriber) do
        subscribe_to "payment.*"
        attr_reader :got

        def initialize
          super
          @got = Queue.new
        end

        def handle_payment_charged(event) = @got << event
      end.new
      start_runner(ledger)
      fast = client.subscribe_fast("metrics.*")
      fast_runner_events = Queue.new
      start_runner(->(e) { fast_runner_events << e }, fast: true, patterns: ["metrics.charge_timed"])
      task = with_worker(client, queues: [ns]) { create(ns, "events_payments", { "card" => "ok" }).wait(timeout: 30) }
      expect(task.state).to eq("complete")

      charged = within(30, "payment.charged") { ledger.got.pop }
      expect(charged).to have_attributes(name: "payment.charged", category: "domain", delivery: "durable",
                                         task_uuid: task.uuid, namespace: ns, payload: { "amount" => 10.5 })
      expect(charged.step_uuid).to eq(task.step("charge").uuid)

      timed = nil
      within(30, "the fast event") { timed = fast.poll(timeout: 1) until timed&.task_uuid == task.uuid }
      expect(timed).to have_attributes(name: "metrics.charge_timed", delivery: "fast", fast?: true, position: nil,
                                       payload: { "ms" => 3 })
      expect(fast.missed).to eq(0)
      from_runner = within(30, "the fast runner") { fast_runner_events.pop }
      expect(from_runner.name).to eq("metrics.charge_timed")
    end

    it "publishes a failure's events, and fails the step for an undeclared event or a bad payload" do
      ns = register_fixture(client, "events_payments.yaml")
      recorder = EventRecorder.new
      start_runner(recorder, patterns: ["payment.*"])
      tasks = with_worker(client, queues: [ns]) do
        %w[declined undeclared bad_payload].to_h do |card|
          [card, create(ns, "events_payments", { "card" => card }).wait(timeout: 30)]
        end
      end
      expect(tasks.values.map(&:state)).to all(eq("error"))
      expect(client.get_step(tasks["undeclared"].uuid, "charge").errors.last.error_type).to eq("event_not_declared")
      expect(client.get_step(tasks["bad_payload"].uuid, "charge").errors.last.error_type).to eq("event_payload_invalid")

      eventually("payment.declined") { recorder.of_task(tasks["declined"].uuid) == ["payment.declined"] }
      declined = recorder.seen.map(&:first).find { |e| e.name == "payment.declined" && e.task_uuid == tasks["declined"].uuid }
      expect(declined.payload).to eq("reason" => "insufficient funds")
      expect(recorder.of_task(tasks["undeclared"].uuid) + recorder.of_task(tasks["bad_payload"].uuid)).to eq([])
    end

    it "retries a subscriber that raises, then dead-letters the event and moves on" do
      ns = register_fixture(client, "events_pair.yaml")
      poisoned = nil
      recorder = EventRecorder.new(fail_when: ->(e) { e.task_uuid == poisoned })
      runner = start_runner(recorder, patterns: ["task.completed"], max_attempts: 3)
      first, second = with_worker(client, queues: [ns]) do
        first = create(ns, "events_pair")
        poisoned = first.uuid
        [first.wait(timeout: 30), create(ns, "events_pair").wait(timeout: 30)]
      end
      letter = eventually("the dead letter") do
        client.event_dead_letters(group: runner.group).find { |d| d.task_uuid == first.uuid }
      end
      expect(letter).to have_attributes(name: "task.completed", attempts: 3, group: runner.group)
      expect(letter.error).to include("RuntimeError: poisoned task.completed")
      expect(letter.event).to have_attributes(name: "task.completed", task_uuid: first.uuid)
      expect(letter.dead_at).to be_a(Time)
      attempts = recorder.seen.map(&:first).select { |e| e.task_uuid == first.uuid }.map(&:attempt)
      expect(attempts).to eq([1, 2, 3])
      eventually("the next task's event") { recorder.of_task(second.uuid) == ["task.completed"] }
      expect(runner.stats).to include(failed: 3)
      expect(client.event_dead_letters(limit: 1000).map(&:id)).to include(letter.id)
      expect(client.event_groups.find { |g| g.group == runner.group }.dead_letters).to eq(1)
    end

    it "splits a group's events between two runners, none handled twice" do
      ns = register_fixture(client, "single.yaml")
      group = group_name("split")
      a = EventRecorder.new
      b = EventRecorder.new
      start_runner(a, group: group, patterns: ["task.completed"], member_id: "a")
      start_runner(b, group: group, patterns: ["task.completed"], member_id: "b")
      eventually("both members") { client.event_groups.find { |g| g.group == group }&.live_members == 2 }
      sleep 1.5 # one lease: the first member gives the second its share of the partitions
      # Tasks until they span 8 of the 16 partitions (a task's partition is its uuid's last byte
      # mod 16): then both members hold some of them.
      tasks = []
      with_worker(client, queues: [ns], handlers: { "single.only" => ->(_c) { { "ok" => true } } }) do
        tasks << create(ns, "single_workflow").wait(timeout: 30) until tasks.map { |t| t.uuid[-2, 2].hex % 16 }.uniq.size >= 8
      end
      uuids = tasks.map(&:uuid)
      got = -> { (a.seen + b.seen).map(&:first).select { |e| uuids.include?(e.task_uuid) } }
      eventually("every task.completed") { got.call.map(&:task_uuid).uniq.size == uuids.size }
      sleep 0.3 # a duplicate would come right after
      expect(got.call.map(&:task_uuid).sort).to eq(uuids.sort)
      expect(a.seen.map(&:first).map(&:task_uuid) & b.seen.map(&:first).map(&:task_uuid)).to eq([])
      expect([a, b].map { |r| r.seen.count { |e, _| uuids.include?(e.task_uuid) } }).to all(be_positive)
    end

    it "records positions on stop: the next runner of the group resumes after them" do
      ns = register_fixture(client, "events_pair.yaml")
      group = group_name("resume")
      first = EventRecorder.new
      runner = start_runner(first, group: group, patterns: ["task.completed"])
      with_worker(client, queues: [ns]) do
        one = create(ns, "events_pair").wait(timeout: 30)
        eventually("the first task's event") { first.of_task(one.uuid) == ["task.completed"] }
        expect(runner.stop(timeout: 5)).to include(handled: 1, failed: 0, abandoned: 0)
        expect(runner.running?).to be(false)
        two = create(ns, "events_pair").wait(timeout: 30)
        second = EventRecorder.new
        start_runner(second, group: group, patterns: ["task.completed"])
        eventually("the second task's event") { second.of_task(two.uuid) == ["task.completed"] }
        sleep 0.3
        expect(second.of_task(one.uuid)).to eq([])
      end
    end

    it "re-publishes events on ActiveSupport::Notifications as tasker.<name>" do
      ns = register_fixture(client, "events_payments.yaml")
      received = Queue.new
      listener = ActiveSupport::Notifications.subscribe(/\Atasker\./) { |*args| received << args }
      begin
        start_runner(TaskerCore::NotificationsBridge, patterns: ["task.completed", "payment.*"])
        task = with_worker(client, queues: [ns]) { create(ns, "events_payments", { "card" => "ok" }).wait(timeout: 30) }
        seen = {}
        within(30, "both notifications") do
          until seen.key?("tasker.payment.charged") && seen.key?("tasker.task.completed")
            name, _start, _finish, _id, payload = received.pop
            seen[name] = payload if payload[:task_uuid] == task.uuid
          end
        end
        expect(seen["tasker.payment.charged"]).to include(name: "payment.charged", payload: { "amount" => 10.5 })
        expect(seen["tasker.payment.charged"][:event]).to be_a(TaskerCore::Event)
        expect(seen["tasker.task.completed"][:event].payload).to include("to_state" => "complete")
      ensure
        ActiveSupport::Notifications.unsubscribe(listener)
      end
    end

    # How many times another Ruby thread ran (every 10 ms) during `blocking`.
    def stamps_during(&blocking)
      stamps = Queue.new
      ticker = Thread.new do
        loop do
          stamps << Process.clock_gettime(Process::CLOCK_MONOTONIC)
          sleep 0.01
        end
      end
      sleep 0.05
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      blocking.call
      t1 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      ticker.kill.join
      all = []
      all << stamps.pop until stamps.empty?
      all.count { |s| s > t0 && s < t1 }
    end

    it "waits in poll without the GVL, and Thread#raise interrupts the wait" do
      sub = client.subscribe(group: group_name("gvl"), patterns: ["nothing.ever"])
      fast = client.subscribe_fast("nothing.ever")
      expect(stamps_during { expect(sub.poll(timeout: 0.5)).to be_nil }).to be >= 10
      expect(stamps_during { expect(fast.poll(timeout: 0.5)).to be_nil }).to be >= 10
      expect(stamps_during { TaskerCore::Native.block_holding_gvl(0.5) }).to be < 10
      poller = Thread.new do
        sub.poll(timeout: 60)
        :returned
      rescue RuntimeError => e
        e.message
      end
      sleep 0.05 until poller.status == "sleep"
      poller.raise(RuntimeError, "stop waiting")
      expect(within(10, "the interrupted poll") { poller.value }).to eq("stop waiting")
      sub.close
    end

    it "runs a subscriber alone in its own process until TERM, then leaves the group" do
      url = database_url
      own = TaskerCore.connect(database_url: url)
      ns = register_fixture(own, "single.yaml")
      group = "proc-#{SecureRandom.hex(4)}"
      script = File.expand_path("fixtures/events/runner.rb", __dir__)
      Open3.popen3(ruby_subprocess_env, RbConfig.ruby, script, url, group) do |stdin, stdout, stderr, thread|
        stdin.close
        expect(within(60, "the child runner") { stdout.gets }).to eq("ready\n")
        task = with_worker(own, queues: [ns], handlers: { "single.only" => ->(_c) { {} } }) do
          own.create_task(namespace: ns, name: "single_workflow", context: {}).wait(timeout: 30)
        end
        line = within(30, "the child's event") do
          loop do
            got = JSON.parse(stdout.gets || raise("the child exited: #{stderr.read}"))
            break got if got["task_uuid"] == task.uuid
          end
        end
        expect(line).to eq("name" => "task.completed", "task_uuid" => task.uuid, "attempt" => 1)
        Process.kill("TERM", thread.pid)
        report = JSON.parse(within(30, "the child's stop") { stdout.read }.lines.last)
        expect(report).to include("failed" => 0, "abandoned" => 0, "running" => 0)
        expect(report["handled"]).to be >= 1
        expect(thread.value).to be_success, stderr.read
      end
      # Closed, not crashed: the member left the group at once (no lease to run out).
      expect(own.event_groups.find { |g| g.group == group }.live_members).to eq(0)
    ensure
      own&.delete_event_group(group) if group
      own&.close
    end

    it "offers the low-level pull API and the operator calls" do
      group = group_name("pull")
      sub = client.subscribe(group: group, patterns: "task.*", max_attempts: 2, backoff: 0.01, lease: 1.0)
      expect(sub.group).to eq(group)
      expect(client.event_groups.map(&:group)).to include(group)
      ns = register_fixture(client, "single.yaml")
      task = with_worker(client, queues: [ns], handlers: { "single.only" => ->(_c) { {} } }) do
        create(ns, "single_workflow").wait(timeout: 30)
      end
      mine = []
      within(30, "the task's events") do
        until mine.any? { |e| e.name == "task.completed" }
          event = sub.poll(timeout: 0.5)
          next unless event

          if event.task_uuid == task.uuid && event.name == "task.created" && event.attempt == 1
            sub.fail(event, "not yet")
          else
            sub.ack(event)
            mine << event if event.task_uuid == task.uuid
          end
        end
      end
      expect(mine.first).to have_attributes(name: "task.created", attempt: 2, redelivery?: true)
      expect(mine.first.to_envelope).to include("name" => "task.created", "task_uuid" => task.uuid,
                                                "delivery" => "durable", "occurred_at" => a_string_matching(/\A\d{4}-/))
      expect(mine.first.to_envelope).not_to have_key("attempt")
      expect { sub.ack(mine.first) }.to raise_error(TaskerCore::InvalidArgumentError, /already settled/)
      sub.close
      expect(sub).to be_closed
      expect { sub.poll(timeout: 0.1) }.to raise_error(TaskerCore::InvalidStateError)
      expect(client.sequence_events).to be >= 0
      expect(client.delete_event_group(group)).to be(true)
      expect(client.delete_event_group(group)).to be(false)
      expect { client.subscribe(group: "", patterns: ["*"]) }.to raise_error(TaskerCore::InvalidArgumentError)
      expect { client.subscribe(group: "x", patterns: []) }.to raise_error(TaskerCore::InvalidArgumentError)
      expect { client.event_dead_letters(limit: 0) }.to raise_error(TaskerCore::InvalidArgumentError)
    end
  end
end
