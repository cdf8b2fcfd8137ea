from tasker_core.testing import build_step_context, read_batches, run_handler

from {{module}} import {{class_name}}


def test_{{test_name}}_splits_the_items_into_batches() -> None:
    batches = read_batches(run_handler({{class_name}}, build_step_context(input={"total_items": 250})))
    assert batches.worker == "process_batch"
    assert [(c.start_cursor, c.end_cursor) for c in batches.cursors] == [(0, 100), (100, 200), (200, 250)]


def test_{{test_name}}_without_items_creates_no_batches() -> None:
    assert read_batches(run_handler({{class_name}}, build_step_context(input={"total_items": 0}))).no_batches
