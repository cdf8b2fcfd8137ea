//! Task templates: the YAML model, loading (file or directory, `environments.<env>` merge) and
//! validation at registration, plus task-context validation against `input_schema`.

mod load;
mod model;
pub mod secrets;
mod validate;

use std::path::PathBuf;

pub(crate) use load::edit_distance;
pub use load::{current_env, load_path, parse_str};
pub use model::{BackoffKind, HandlerSpec, RetryPolicy, StepTemplate, StepType, TaskTemplate};
pub(crate) use validate::check_schema;
pub(crate) use validate::instance_of;
pub use validate::{is_valid_queue_name, validate_template, ContextValidator, MAX_CONTEXT_BYTES};

use crate::error::TemplateProblem;

/// A template read from YAML, environment overrides merged, validated.
#[derive(Debug, Clone)]
pub struct LoadedTemplate {
    pub template: TaskTemplate,
    /// Parsed `template.version`.
    pub version: semver::Version,
    /// File the template was read from.
    pub source: Option<PathBuf>,
    /// Non-fatal findings, e.g. an unknown field that looks like a misspelled known one.
    pub warnings: Vec<TemplateProblem>,
}

impl TaskTemplate {
    /// `namespace/name@version`, as used in messages.
    pub fn key(&self) -> String {
        format!("{}/{}@{}", self.namespace_name, self.name, self.version)
    }

    /// Index of the step called `name`.
    pub fn step_index(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    /// Step indices in a dependency-respecting order (parents before children). Assumes a
    /// validated template (no cycles, no unknown dependencies); unknown names are ignored.
    pub fn topological_order(&self) -> Vec<usize> {
        let n = self.steps.len();
        let mut indegree = vec![0usize; n];
        let mut children = vec![Vec::new(); n];
        for (i, step) in self.steps.iter().enumerate() {
            for dep in &step.dependencies {
                if let Some(p) = self.step_index(dep) {
                    indegree[i] += 1;
                    children[p].push(i);
                }
            }
        }
        let mut ready: std::collections::VecDeque<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_front() {
            order.push(i);
            for &c in &children[i] {
                indegree[c] -= 1;
                if indegree[c] == 0 {
                    ready.push_back(c);
                }
            }
        }
        order
    }
}
