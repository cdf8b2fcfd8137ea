// Tasker event subscriber {{class_name}}, group "{{group}}".
// It takes {{event_list}}.
//
// Each event goes to handle<Name>(event) (task.completed: handleTaskCompleted){{fallback_doc}}.
// Returning acknowledges it; throwing has it delivered again after a backoff, and after
// maxAttempts (5) it goes to the group's dead letters (`tasker events dead`). Delivery is at
// least once: event.eventId is the key to skip an event seen before.
//
// Run it beside the worker: await new SubscriberRunner(client, {{class_name}}).start();

import { type Event, Subscriber } from 'tasker-core';

export class {{class_name}} extends Subscriber {
  static override subscribeTo = [{{patterns}}];
  // The group's position in the event log lives under this name: keep it when renaming the class.
  static override group = '{{group}}';
{{methods}}}
