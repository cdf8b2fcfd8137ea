//! The step handlers, each registered under the `callable` a template's step names.
//! `tasker generate handler` adds its module here, above the `tasker:` marker lines.

use tasker_core::handler::HandlerRegistry;

{{modules}}// tasker:modules

/// Registers every handler of this project.
pub fn register_all(registry: &mut HandlerRegistry) {
{{registrations}}    // tasker:register
}
