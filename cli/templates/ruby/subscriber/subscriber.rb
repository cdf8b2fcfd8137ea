# Tasker event subscriber {{class_name}}, group "{{group}}".
# It takes {{event_list}}.
#
# Each event goes to handle_<its name, dots as underscores>(event){{fallback_doc}}.
# Returning acknowledges it; raising retries it with backoff, and after max_attempts (5) it goes
# to the group's dead letters (`tasker events dead`). Delivery is at least once: event.event_id
# is the key to skip an event seen before.
class {{class_name}} < TaskerCore::Subscriber
  # The group's position in the event log lives under this name: keep it when renaming the class.
  group "{{group}}"
  subscribe_to {{patterns}}
{{methods}}end
