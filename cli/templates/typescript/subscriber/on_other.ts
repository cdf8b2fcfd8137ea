
  // The events no handle<Name> method takes ({{wildcards}}).
  handle(event: Event): void {
    console.log(`{{class_name}}: ${event.name} ${event.eventId}`);
  }
