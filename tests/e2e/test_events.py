"""A domain event across languages and processes, on SQLite and PostgreSQL: a Python step
publishes order.placed (tests/fixtures/templates/events_polyglot.yaml); a Ruby subscriber and a
TypeScript subscriber, each a process of its own in a group of its own, both receive every one,
with the payload the Python handler gave it; and each group also gets the lifecycle events it
subscribed to."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List

from polyglot import ScratchDb, WorkerGroup

import tasker_core

ORDERS = 6


def read_lines(path: Path) -> List[Dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_python_domain_event_reaches_ruby_and_typescript_subscribers(
    db: ScratchDb, client: tasker_core.Client, tmp_path: Path
) -> None:
    group = WorkerGroup()
    outputs = {"ruby": tmp_path / "ruby.jsonl", "typescript": tmp_path / "typescript.jsonl"}
    try:
        # The subscribers join first: a group sees what is written after it exists.
        group.start_subscriber("ruby", db.url, "ruby_audit", ["order.*", "task.completed"], outputs["ruby"])
        group.start_subscriber("typescript", db.url, "ts_audit", ["order.placed"], outputs["typescript"])
        group.start("python", db.url, ["events_python"], lease=5, handlers="events")
        tasks = [
            client.create_task("polyglot_events", "order_events", context={"order_id": i, "total": 10.5 * i})
            for i in range(1, ORDERS + 1)
        ]
        for t in tasks:
            assert t.wait(timeout=60).state == "complete"
        uuids = {str(t.uuid) for t in tasks}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ruby = [e for e in read_lines(outputs["ruby"]) if e["task_uuid"] in uuids]
            ts = [e for e in read_lines(outputs["typescript"]) if e["task_uuid"] in uuids]
            if len({e["event_id"] for e in ruby}) >= 2 * ORDERS and len({e["event_id"] for e in ts}) >= ORDERS:
                break
            time.sleep(0.2)
    finally:
        group.stop()

    ruby = [e for e in read_lines(outputs["ruby"]) if e["task_uuid"] in uuids]
    ts = [e for e in read_lines(outputs["typescript"]) if e["task_uuid"] in uuids]
    placed = {
        lang: {e["task_uuid"]: e for e in evs if e["name"] == "order.placed"}
        for lang, evs in (("ruby", ruby), ("typescript", ts))
    }
    for lang in ("ruby", "typescript"):
        assert set(placed[lang]) == uuids, (lang, placed[lang])
    for order_id, t in enumerate(tasks, start=1):
        key = str(t.uuid)
        for lang in ("ruby", "typescript"):
            assert placed[lang][key]["payload"] == {"order_id": order_id, "total": 10.5 * order_id, "by": "python"}
        # The same event (one id) in both groups.
        assert placed["ruby"][key]["event_id"] == placed["typescript"][key]["event_id"]
    # The Ruby group also subscribed to task.completed, and gets it after the task's order.placed.
    for key in uuids:
        names = [e["name"] for e in ruby if e["task_uuid"] == key]
        assert names == ["order.placed", "task.completed"], (key, names)
    assert all(e["name"] == "order.placed" for e in ts)
