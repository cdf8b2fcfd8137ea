"""The subscriber of the `{{group}}` group."""

import logging

from tasker_core.events import Event, Subscriber

log = logging.getLogger(__name__)


class {{class_name}}(Subscriber):
    """Handles {{event_list}}.

    Each event goes to handle_<its name, dots as underscores>(event){{fallback_doc}}.
    Returning acknowledges it; raising has it delivered again after a backoff, and after
    max_attempts (5) it goes to the group's dead letters (`tasker events dead`). Delivery is at
    least once: event.event_id is the key to skip an event seen before.

    Run it beside the worker: SubscriberRunner(client, {{class_name}}).start()
    (from tasker_core.events).
    """

    # The group's position in the event log lives under this name: keep it when renaming the class.
    group = "{{group}}"
    subscribe_to = [{{patterns}}]
{{methods}}
