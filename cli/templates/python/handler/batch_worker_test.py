from tasker_core.testing import build_batch_worker_context, recorded_checkpoints, run_handler

from {{module}} import {{class_name}}


def test_{{test_name}}_processes_its_range_with_checkpoints() -> None:
    context = build_batch_worker_context(0, 250, batch_config={"checkpoint_interval": 100})
    assert run_handler({{class_name}}, context).result == {"items": 250, "sum": sum(range(250))}
    assert [c.cursor for c in recorded_checkpoints(context)] == [100, 200, 250]


def test_{{test_name}}_resumes_from_the_last_checkpoint() -> None:
    checkpoint = {"cursor": 200, "items_done": 200, "accumulated": {"sum": sum(range(200))}}
    context = build_batch_worker_context(0, 250, batch_config={"checkpoint_interval": 100}, checkpoint=checkpoint)
    assert run_handler({{class_name}}, context).result == {"items": 250, "sum": sum(range(250))}
    assert [c.cursor for c in recorded_checkpoints(context)] == [250]
