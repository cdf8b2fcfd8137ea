"""One trace across three languages, on SQLite and PostgreSQL, checked at a real OTLP/HTTP
receiver (below: it decodes the protobuf requests the engine and the SDKs send, and the OTLP/JSON
the Ruby handler sends): the caller's span → the task span → a span per step attempt (a Python,
a Ruby and a TypeScript worker process) → each handler's own span, made with that language's
OpenTelemetry SDK (Ruby: by hand, see tests/handlers/ruby/telemetry_handlers.rb)."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from polyglot import ScratchDb, WorkerGroup

import tasker_core

# One reader of OTLP/HTTP request bodies (chunked or not, gzip or not), shared with the
# benchmark's receiver.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "bench"))
from otlp_sink import read_body  # noqa: E402

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


class Receiver:
    """Collects spans as {trace_id, span_id, parent, name, attributes, service} (ids in hex)."""

    def __init__(self) -> None:
        self.spans: List[Dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = read_body(self)
                if self.path == "/v1/traces":
                    if self.headers.get("content-type", "").startswith("application/json"):
                        receiver._add_json(json.loads(body))
                    else:
                        receiver._add_protobuf(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _add_protobuf(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        for rs in request.resource_spans:
            service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    attributes = {a.key: a.value.string_value or a.value.int_value for a in s.attributes}
                    self._add(s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.name, attributes, service)

    def _add_json(self, doc: Dict) -> None:
        for rs in doc["resourceSpans"]:
            service = next(
                (a["value"]["stringValue"] for a in rs["resource"]["attributes"] if a["key"] == "service.name"), ""
            )
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    attributes = {a["key"]: a["value"].get("stringValue") for a in s.get("attributes", [])}
                    self._add(s["traceId"], s["spanId"], s.get("parentSpanId", ""), s["name"], attributes, service)

    def _add(self, trace: str, span: str, parent: str, name: str, attributes: Dict, service: str) -> None:
        with self.lock:
            self.spans.append(
                {"trace_id": trace, "span_id": span, "parent": parent, "name": name, "attributes": attributes,
                 "service": service}
            )

    def named(self, name: str) -> List[Dict]:
        with self.lock:
            return [s for s in self.spans if s["name"] == name]

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_a_polyglot_task_is_one_trace_with_every_handlers_span(
    db: ScratchDb, client: tasker_core.Client, receiver: Receiver
) -> None:
    env = {
        "TASKER_TELEMETRY__ENABLED": "true",
        "TASKER_TELEMETRY__OTLP_ENDPOINT": receiver.url,
        "TASKER_TELEMETRY__EXPORT_INTERVAL_MS": "100",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.url}/v1/traces",
    }
    group = WorkerGroup()
    try:
        for language, queue in (("python", "telemetry_python"), ("ruby", "telemetry_ruby"), ("typescript", "telemetry_node")):
            group.start(language, db.url, [queue], lease=10, env=env, handlers="telemetry")
        task = client.create_task(
            "polyglot_telemetry", "traced_chain", context={}, traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
        )
        assert task.wait(timeout=60).state == "complete"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            handlers = [receiver.named(f"{lang}.handler") for lang in ("python", "ruby", "typescript")]
            if receiver.named("task polyglot_telemetry/traced_chain") and all(handlers):
                break
            time.sleep(0.1)
    finally:
        group.stop()

    [task_span] = receiver.named("task polyglot_telemetry/traced_chain")
    assert task_span["trace_id"] == CALLER_TRACE, "the task joins the caller's trace"
    assert task_span["parent"] == CALLER_SPAN, "under the caller's span"
    assert task_span["attributes"]["tasker.task.uuid"] == str(task.uuid)
    assert task_span["attributes"]["tasker.task.state"] == "complete"
    for language, step in (("python", "python_step"), ("ruby", "ruby_step"), ("typescript", "typescript_step")):
        [attempt] = receiver.named(f"step {step}")
        assert attempt["trace_id"] == CALLER_TRACE
        assert attempt["parent"] == task_span["span_id"], f"{step}'s attempt nests under the task"
        assert attempt["attributes"]["tasker.step.outcome"] == "success"
        assert attempt["attributes"]["tasker.task.uuid"] == str(task.uuid)
        [own] = receiver.named(f"{language}.handler")
        assert own["trace_id"] == CALLER_TRACE
        assert own["parent"] == attempt["span_id"], f"the {language} handler's span nests under its attempt"
        assert own["attributes"]["language"] == language
        assert own["service"] == f"{language}-handlers"
    # The handler saw the same context it was given.
    detail = client.get_task(task.uuid)
    for step in detail.steps:
        assert step.result["trace_context"].split("-")[1] == CALLER_TRACE
