
  // Every subscribed event has its method above: another one fails (and ends in the dead
  // letters) rather than being acknowledged unseen.
  handle(event: Event): void {
    throw new Error(`{{class_name}} has no method for ${event.name}`);
  }
