
  # The events no handle_<name> method takes ({{wildcards}}).
  def handle(event)
    TaskerCore.logger.info("{{class_name}}: #{event.name} #{event.event_id}")
  end
