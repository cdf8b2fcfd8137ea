//! The subscriber of the `{{group}}` group.
//! It takes {{event_list}}.
//!
//! `handle` sends each event to a function by its name{{fallback_doc}}.
//! `Ok(())` acknowledges it; `Err(message)` has it delivered again after a backoff, and after
//! `max_attempts` (5) it goes to the group's dead letters (`tasker events dead`). Delivery is at
//! least once: `event.event_id` is the key to skip an event seen before.
//! `src/subscribers/mod.rs` lists it and the worker (`src/main.rs`) starts it.

use tasker_core::events::{async_trait, Event, Subscriber};

/// The group's position in the event log lives under this name: keep it when renaming.
pub const GROUP: &str = "{{group}}";
/// The events it takes (`*` matches any run of characters).
pub const PATTERNS: &[&str] = &[{{patterns}}];

pub struct {{class_name}};

#[async_trait]
impl Subscriber for {{class_name}} {
    fn group(&self) -> String {
        GROUP.to_owned()
    }

    fn patterns(&self) -> Vec<String> {
        PATTERNS.iter().map(|p| (*p).to_owned()).collect()
    }

    async fn handle(&self, event: &Event) -> Result<(), String> {
{{dispatch}}    }
}
{{functions}}
#[cfg(test)]
mod tests {
    use super::*;
    use tasker_core::testing;

    #[test]
    fn subscribes_to_its_events_in_its_group() {
        assert_eq!({{class_name}}.group(), "{{group}}");
        assert_eq!({{class_name}}.patterns(), [{{patterns}}]);
    }
{{tests}}}
