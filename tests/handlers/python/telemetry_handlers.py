"""Python handler of the cross-language trace (tests/fixtures/templates/telemetry_polyglot.yaml,
tests/e2e/test_telemetry.py):

  telemetry.python_step  starts a span of its own with the OpenTelemetry SDK, under the
                         attempt's span (``context.trace_context``), exported over OTLP/HTTP to
                         ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
"""

from __future__ import annotations

from typing import Any, Dict

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tasker_core import StepContext, step_handler

_provider = TracerProvider(resource=Resource.create({"service.name": "python-handlers"}))
# Simple: each span is sent when it ends, so nothing waits in a buffer when the worker stops.
_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
_tracer = _provider.get_tracer("telemetry_handlers")


@step_handler("telemetry.python_step")
def python_step(context: StepContext) -> Dict[str, Any]:
    parent = TraceContextTextMapPropagator().extract({"traceparent": context.trace_context or ""})
    with _tracer.start_as_current_span("python.handler", context=parent) as span:
        span.set_attribute("language", "python")
    return {"by": "python", "trace_context": context.trace_context}


HANDLERS = [python_step]
