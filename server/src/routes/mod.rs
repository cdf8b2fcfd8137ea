//! The handlers, one module per resource.

pub mod dlq;
pub mod events;
pub mod steps;
pub mod system;
pub mod tasks;
pub mod templates;
