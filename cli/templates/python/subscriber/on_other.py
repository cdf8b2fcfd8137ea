
    def handle(self, event: Event) -> None:
        # The events no handle_<name> method takes ({{wildcards}}).
        routed = getattr(self, "handle_" + event.name.replace(".", "_"), None)
        if routed is not None:
            routed(event)
            return
        log.info("{{class_name}}: %s %s", event.name, event.event_id)
