# frozen_string_literal: true

require "spec_helper"

# Telemetry from Ruby: a task created with a traceparent joins that trace, handlers get their
# attempt's trace context when traces are exported, and the engine's metrics and health are
# readable (docs/operations.md).
RSpec.describe "telemetry" do
  caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
  caller_parent = "00-#{caller_trace}-00f067aa0ba902b7-01"

  # A handler that records each attempt's trace context.
  def trace_recorder(seen)
    lambda do |ctx|
      seen << ctx.trace_context
      {}
    end
  end

  each_backend do
    before(:all) { @client = TaskerCore.connect(database_url: database_url) }
    after(:all) { @client&.close }

    let(:client) { @client }

    it "joins the caller's trace, and gives handlers no trace context when traces are not exported" do
      ns = register_fixture(client, "single.yaml")
      seen = []
      with_worker(client, queues: [ns], handlers: { "single.only" => trace_recorder(seen) }) do
        task = client.create_task(namespace: ns, name: "single_workflow", context: {}, traceparent: caller_parent)
        expect(task.correlation_id.delete("-")).to eq(caller_trace)
        expect(task.wait(timeout: 30).state).to eq("complete")
      end
      expect(seen).to eq([nil])
    end

    it "refuses a bad traceparent, naming it" do
      ns = register_fixture(client, "single.yaml")
      expect { client.create_task(namespace: ns, name: "single_workflow", context: {}, traceparent: "00-nope") }
        .to raise_error(TaskerCore::InvalidArgumentError, /traceparent/)
    end

    it "gives handlers their attempt's trace context when traces are exported" do
      saved = ENV.to_h.slice("TASKER_TELEMETRY__ENABLED", "TASKER_TELEMETRY__OTLP_ENDPOINT")
      # Nothing listens there: the export fails quietly; the handlers still get their contexts.
      ENV["TASKER_TELEMETRY__ENABLED"] = "true"
      ENV["TASKER_TELEMETRY__OTLP_ENDPOINT"] = "http://127.0.0.1:9"
      traced = TaskerCore.connect(database_url: database_url)
      begin
        ns = register_fixture(traced, "single.yaml")
        seen = []
        with_worker(traced, queues: [ns], handlers: { "single.only" => trace_recorder(seen) }) do
          task = traced.create_task(namespace: ns, name: "single_workflow", context: {}, traceparent: caller_parent)
          expect(task.wait(timeout: 30).state).to eq("complete")
        end
        version, trace, span, flags = seen.fetch(0).split("-")
        expect([version, trace, flags]).to eq(["00", caller_trace, "01"])
        expect(span).to match(/\A\h{16}\z/)
        expect(span).not_to eq("00f067aa0ba902b7")
      ensure
        traced.close
        %w[TASKER_TELEMETRY__ENABLED TASKER_TELEMETRY__OTLP_ENDPOINT].each { |k| ENV[k] = saved[k] }
      end
    end

    it "reports metrics and health" do
      ns = register_fixture(client, "single.yaml")
      with_worker(client, queues: [ns], handlers: { "single.only" => ->(_ctx) { {} } }) do
        expect(client.create_task(namespace: ns, name: "single_workflow", context: {}).wait(timeout: 30).state)
          .to eq("complete")
      end
      text = client.prometheus_metrics
      expect(text).to include("# TYPE tasker_steps_completed_total counter")
      expect(text).to include(%(tasker_steps_claimed_total{queue="#{ns}"} 1))
      names = client.metrics.fetch("samples").map { |s| s.fetch("name") }
      expect(names).to include("tasker.tasks.created", "tasker.steps.completed", "db.client.connection.count")
      health = client.health
      expect(health).to include("live" => true, "ready" => true)
      expect(health.fetch("checks").map { |c| c.fetch("name") }).to include("database", "migrations")
    end
  end
end
