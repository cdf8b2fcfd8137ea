//! The task template data model, compatible with Tasker's YAML format.
//!
//! Field names follow the YAML. Unknown fields are preserved in `extra` maps (templates written
//! for Tasker must load unchanged), and the loader warns about fields that look like misspelled
//! known ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A workflow definition: a DAG of named steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskTemplate {
    pub name: String,
    pub namespace_name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_dependencies: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_events: Option<Value>,
    /// JSON Schema the task context must satisfy at task creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    pub steps: Vec<StepTemplate>,
    /// `environments.<env>.steps[]`: partial per-step overrides merged by `TASKER_ENV`.
    /// Already merged (and cleared) in a template returned by the loader.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environments: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Value>,
    /// Fields Tasker's format does not define; kept verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One node of the DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTemplate {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub handler: HandlerSpec,
    /// Names of the steps this one waits for (`depends_on` is accepted as an alias).
    #[serde(default, alias = "depends_on")]
    pub dependencies: Vec<String>,
    #[serde(default, rename = "type")]
    pub step_type: StepType,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Per-attempt deadline enforced by the engine; `None` means no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publishes_events: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_config: Option<Value>,
    /// Queue override (Tasker extension): routes this step to a queue other than the
    /// namespace's, so one task can mix handler languages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl StepTemplate {
    /// The queue this step is dispatched to within `namespace`.
    pub fn queue_name<'a>(&'a self, namespace: &'a str) -> &'a str {
        self.queue.as_deref().unwrap_or(namespace)
    }
}

/// Which code runs a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandlerSpec {
    /// Handler identifier: a registered name or a class path (`pkg.module.Class`,
    /// `Module::Class`).
    pub callable: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<String>,
    /// Free-form configuration handed to the handler as `config`.
    #[serde(default = "empty_object")]
    pub initialization: Value,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn default_method() -> String {
    "call".to_owned()
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// Step kinds (see `docs/conditional-workflows.md` and `docs/batch-processing.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepType {
    /// Runs when all its dependencies are done.
    #[default]
    Standard,
    /// Its result names which of the steps depending on it are created
    /// (`decision_point_outcome`); those steps do not exist until it decides.
    Decision,
    /// Waits for those of its dependencies that exist in the task (whichever branches or
    /// batches were created) and receives their results. `deferred` is Tasker's older name.
    #[serde(alias = "deferred")]
    DeferredConvergence,
    /// Its result splits work into instances of a `batch_worker` step
    /// (`batch_processing_outcome`).
    Batchable,
    /// A template for the instances a `batchable` step creates; never created on its own.
    BatchWorker,
}

impl StepType {
    /// The name used in templates.
    pub fn as_str(self) -> &'static str {
        match self {
            StepType::Standard => "standard",
            StepType::Decision => "decision",
            StepType::DeferredConvergence => "deferred_convergence",
            StepType::Batchable => "batchable",
            StepType::BatchWorker => "batch_worker",
        }
    }
}

/// Retry policy of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    #[serde(default = "yes")]
    pub retryable: bool,
    /// Total attempts allowed, the first included (0..=100; 0 behaves like 1).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub backoff: BackoffKind,
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retryable: true,
            max_attempts: default_max_attempts(),
            backoff: BackoffKind::default(),
            backoff_base_ms: default_backoff_base_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            extra: BTreeMap::new(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_max_attempts() -> u32 {
    3
}
fn default_backoff_base_ms() -> u64 {
    1_000
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

/// How the delay before the next attempt grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    None,
    Linear,
    #[default]
    Exponential,
    Fibonacci,
}
