//! Task and step state machines as pure transition tables (no I/O).
//!
//! These tables are the only way states change: the store asks [`TaskState::apply`] /
//! [`StepState::apply`] for the target state and then persists it with a compare-and-swap on the
//! source state, so an illegal or stale change is an error, never a silent no-op.

mod step;
mod task;

pub use step::{StepState, StepTrigger};
pub use task::{TaskState, TaskTrigger};

/// A state that has a stable lowercase name in the database and the APIs.
pub trait NamedState: Sized + Copy + 'static {
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;

    /// Parses a database/API name.
    fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.as_str() == name)
    }
}
