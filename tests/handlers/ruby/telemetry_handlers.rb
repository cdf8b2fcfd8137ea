# frozen_string_literal: true

# Ruby handler of the cross-language trace (tests/fixtures/templates/telemetry_polyglot.yaml,
# tests/e2e/test_telemetry.py):
#
#   telemetry.ruby_step  sends a span of its own under the attempt's span (ctx.trace_context)
#
# The OpenTelemetry Ruby SDK comes from RubyGems, which this machine cannot reach, so the span is
# written by hand in OTLP/JSON and posted to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the same thing
# an SDK's exporter sends, and enough to prove the trace context reaches a Ruby handler.

require "json"
require "net/http"
require "securerandom"
require "tasker_core"

# The Ruby step of the traced_chain template.
module TelemetryHandlers
  def self.now_nanos
    Process.clock_gettime(Process::CLOCK_REALTIME, :nanosecond)
  end

  def self.send_span(trace_context, name)
    _version, trace_id, parent_id, _flags = trace_context.to_s.split("-")
    start = now_nanos
    span = { traceId: trace_id, spanId: SecureRandom.hex(8), parentSpanId: parent_id, name: name, kind: 1,
             startTimeUnixNano: start.to_s, endTimeUnixNano: (start + 1000).to_s,
             attributes: [{ key: "language", value: { stringValue: "ruby" } }] }
    body = { resourceSpans: [{ resource: { attributes: [{ key: "service.name", value: { stringValue: "ruby-handlers" } }] },
                               scopeSpans: [{ scope: { name: "telemetry_handlers" }, spans: [span] }] }] }
    uri = URI(ENV.fetch("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    Net::HTTP.post(uri, JSON.generate(body), "Content-Type" => "application/json")
  end

  RUBY_STEP = TaskerCore.step_handler("telemetry.ruby_step") do |ctx|
    TelemetryHandlers.send_span(ctx.trace_context, "ruby.handler")
    { "by" => "ruby", "trace_context" => ctx.trace_context }
  end

  HANDLERS = [RUBY_STEP].freeze
end
