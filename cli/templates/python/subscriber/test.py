import logging

import pytest
from tasker_core.testing import build_event, run_subscriber

from {{module}} import {{class_name}}


def test_{{test_name}}_subscribes_to_its_events() -> None:
    subscriber = {{class_name}}()
    assert subscriber.group_name() == "{{group}}"
    assert subscriber.patterns() == [{{patterns}}]
{{tests}}
