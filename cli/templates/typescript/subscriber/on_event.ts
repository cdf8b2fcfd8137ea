
  // {{event}}: event.payload, event.taskUuid, event.occurredAt, ...
  {{method}}(event: Event): void {
    console.log(`{{class_name}}: ${event.name} ${event.eventId}`);
  }
