
  # {{event}}: event.payload, event.task_uuid, event.occurred_at ...
  def {{method}}(event)
    TaskerCore.logger.info("{{class_name}}: #{event.name} #{event.event_id}")
  end
