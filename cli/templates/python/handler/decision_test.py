from tasker_core.testing import build_step_context, read_decision, run_handler

from {{module}} import {{class_name}}


def test_{{test_name}}_sends_large_amounts_to_manual_review() -> None:
    context = build_step_context(input={"amount": 5_000})
    assert read_decision(run_handler({{class_name}}, context)) == ["manual_review"]


def test_{{test_name}}_approves_small_amounts_automatically() -> None:
    context = build_step_context(input={"amount": 20})
    assert read_decision(run_handler({{class_name}}, context)) == ["auto_approve"]
