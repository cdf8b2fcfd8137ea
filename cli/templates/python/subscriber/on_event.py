
    def {{method}}(self, event: Event) -> None:
        # {{event}}: event.payload, event.task_uuid, event.occurred_at, ...
        log.info("{{class_name}}: %s %s", event.name, event.event_id)
