//! The event subscribers, each started beside the worker as a member of its group.
//! `tasker generate subscriber` adds its module here, above the `tasker:` marker lines.

use tasker_core::events::Subscriber;

{{modules}}// tasker:modules

/// Every subscriber of this project (`src/main.rs` starts them).
pub fn all() -> Vec<Box<dyn Subscriber>> {
    vec![
{{entries}}        // tasker:subscribers
    ]
}
