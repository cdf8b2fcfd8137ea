//! Task and step state machines as pure transition tables (no I/O).
//!
//! These tables are the only way states change: the store asks [`TaskState::apply`] /
//! [`StepState::apply`] for the target state and then persists it with a compare-and-swap on the
//! source state, so an illegal or stale change is an error, never a silent no-op.

mod step;
mod task;

pub use step::{StepState, StepTrigger};
pub use task::{TaskState, TaskTrigger};

use crate::error::TaskerError;

/// A state that has a stable lowercase name in the database and the APIs.
pub trait NamedState: Sized + Copy + 'static {
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;

    /// Parses a database/API name.
    fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|s| s.as_str() == name)
    }
}

/// Parses a state name from user input (CLI flags, binding arguments); the error lists the
/// valid names.
fn parse_input<S: NamedState>(kind: &str, name: &str) -> Result<S, TaskerError> {
    S::parse(name).ok_or_else(|| {
        let all: Vec<&str> = S::ALL.iter().map(|s| s.as_str()).collect();
        TaskerError::InvalidArgument(format!("{kind} state '{name}' is not one of {}", all.join(", ")))
    })
}

impl std::str::FromStr for TaskState {
    type Err = TaskerError;
    fn from_str(name: &str) -> Result<Self, TaskerError> {
        parse_input("task", name)
    }
}

impl std::str::FromStr for StepState {
    type Err = TaskerError;
    fn from_str(name: &str) -> Result<Self, TaskerError> {
        parse_input("step", name)
    }
}
