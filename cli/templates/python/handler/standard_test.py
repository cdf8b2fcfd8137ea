from tasker_core.testing import assert_success, build_step_context, run_handler

from {{module}} import {{class_name}}


def test_{{test_name}}_greets_the_name_in_the_context() -> None:
    context = build_step_context(input={"name": "Ada"})
    assert_success(run_handler({{class_name}}, context), {"greeting": "Hello, Ada!"})


def test_{{test_name}}_greets_the_world_by_default() -> None:
    assert_success(run_handler({{class_name}}, build_step_context()), {"greeting": "Hello, world!"})
