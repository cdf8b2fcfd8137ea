
  it "handles {{event}}" do
    event = build_event("{{event}}")
    expect(TaskerCore.logger).to receive(:info).with("{{class_name}}: {{event}} #{event.event_id}")
    run_subscriber(described_class, event)
  end
