

def test_{{test_name}}_handles_{{event_word}}(caplog: pytest.LogCaptureFixture) -> None:
    event = build_event("{{event}}")
    with caplog.at_level(logging.INFO):
        run_subscriber({{class_name}}, event)
    assert f"{{class_name}}: {{event}} {event.event_id}" in caplog.text
