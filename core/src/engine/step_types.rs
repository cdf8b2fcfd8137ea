//! Decision points, deferred convergence and batches: which steps of a task exist.
//!
//! A task starts with the steps that need no run-time choice. The rest are created later, by
//! the transaction that completes a `decision` step (the branches it chose) or a `batchable`
//! step (instances of its `batch_worker`), together with whatever those make possible (steps
//! that depend only on created ones, and `deferred_convergence` steps once every dependency
//! they could have is settled). [`plan_steps`] decides all of it from the template and the
//! task's current steps, the same way at task creation and at every later expansion, so there
//! is one set of rules:
//!
//! * a step whose dependencies all exist is created, unless it depends on a decision step that
//!   has not decided yet (it waits) or decided without it (it never exists);
//! * a step with a dependency that can never exist never exists;
//! * a `deferred_convergence` step is created once none of its dependencies may still appear,
//!   with edges from those that exist, and receives their results; it runs even when no branch
//!   was taken, as long as the decision or batch it converges was reached at all;
//! * a `batch_worker` step is never created by these rules: only its instances are, by
//!   [`check_outcome`]'s batch expansion.
//!
//! Handlers' outcomes are checked here before anything is written ([`check_outcome`]): a bad
//! decision or batch outcome fails its step permanently, naming the bad value. A decision step
//! whose result has no `decision_point_outcome` at all did not choose: every step below it is
//! created (templates written for Tasker use `type: decision` on plain steps).

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::CompiledTemplate;
use crate::outcome::{error_types, StepFailure};
use crate::store::ExistingStep;
use crate::template::StepType;

/// Limits on what decisions and batches may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepTypeLimits {
    /// Most instances one `create_batches` outcome may ask for.
    pub max_batch_workers: usize,
    /// Most decision steps on one path, the first included: a decision nested deeper fails.
    pub max_decision_depth: usize,
}

impl Default for StepTypeLimits {
    fn default() -> Self {
        Self {
            max_batch_workers: 1_000,
            max_decision_depth: 8,
        }
    }
}

/// Key of a decision step's outcome in its result.
pub const DECISION_KEY: &str = "decision_point_outcome";
/// Key of a batchable step's outcome in its result.
pub const BATCH_KEY: &str = "batch_processing_outcome";

/// A step to create at run time: which template step it is an instance of, its name, and its
/// inputs (a batch worker's cursor).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Requested {
    pub index: usize,
    pub name: String,
    pub inputs: Option<Value>,
}

/// A step [`plan_steps`] creates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlannedStep {
    pub index: usize,
    pub name: String,
    pub step_uuid: Uuid,
    pub inputs: Option<Value>,
    /// Parents (existing or created now).
    pub parents: Vec<Uuid>,
    /// Parents not yet done.
    pub pending_parents: i32,
}

/// What a successful outcome of a decision or batchable step adds to its task.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expansion {
    /// The choice is read back from the stored result by [`plan_steps`].
    Decision,
    /// Batch worker instances to create.
    Batches(Vec<Requested>),
}

/// Checks the result of a successful attempt of the step `step_name`: `Ok(None)` for a step
/// type that creates nothing, the expansion for a valid decision or batch outcome, and a
/// permanent failure (naming the bad value) for an invalid one.
pub(crate) fn check_outcome(
    t: &CompiledTemplate,
    step_name: &str,
    result: &Value,
    limits: &StepTypeLimits,
) -> Result<Option<Expansion>, StepFailure> {
    let Some(index) = t.index_of(step_name) else {
        return Ok(None);
    };
    match t.template.steps[index].step_type {
        StepType::Decision => check_decision(t, index, result, limits).map(|()| Some(Expansion::Decision)),
        StepType::Batchable => check_batches(t, index, result, limits).map(|r| Some(Expansion::Batches(r))),
        _ => Ok(None),
    }
}

fn invalid_decision(message: String) -> StepFailure {
    StepFailure::permanent(error_types::INVALID_DECISION, message)
}

fn invalid_batches(message: String) -> StepFailure {
    StepFailure::permanent(error_types::INVALID_BATCH_OUTCOME, message)
}

fn check_decision(
    t: &CompiledTemplate,
    index: usize,
    result: &Value,
    limits: &StepTypeLimits,
) -> Result<(), StepFailure> {
    let name = &t.template.steps[index].name;
    let allowed: Vec<&str> = t.children[index]
        .iter()
        .map(|&c| t.template.steps[c].name.as_str())
        .collect();
    let Some(outcome) = result.get(DECISION_KEY) else {
        // Templates written for Tasker mark steps `decision` whose handlers return plain
        // results; such a step did not choose, and everything below it runs, as it always did.
        tracing::warn!(
            step = %name,
            "decision step returned no '{DECISION_KEY}': every step depending on it is created"
        );
        return Ok(());
    };
    match outcome.get("type").and_then(Value::as_str) {
        Some("no_branches") => Ok(()),
        Some("create_steps") => {
            let names = outcome.get("step_names").and_then(Value::as_array).ok_or_else(|| {
                invalid_decision(format!(
                    "decision step '{name}': create_steps needs 'step_names', a list of step names"
                ))
            })?;
            for n in names {
                match n.as_str() {
                    Some(n) if allowed.contains(&n) => {}
                    _ => {
                        return Err(invalid_decision(format!(
                            "decision step '{name}' chose {n}, which is not a step that depends on it; allowed: [{}]",
                            allowed.join(", ")
                        )))
                    }
                }
            }
            let depth = t.decision_depth[index];
            if !names.is_empty() && depth > limits.max_decision_depth {
                return Err(invalid_decision(format!(
                    "decision step '{name}' is nested {depth} decisions deep; the limit is {}",
                    limits.max_decision_depth
                )));
            }
            Ok(())
        }
        _ => Err(invalid_decision(format!(
            "decision step '{name}': '{DECISION_KEY}.type' must be \"create_steps\" or \"no_branches\", got {}",
            outcome
                .get("type")
                .map_or_else(|| "nothing".to_owned(), Value::to_string)
        ))),
    }
}

/// What a decision step chose, as stored in its result.
#[derive(Debug, Clone, PartialEq)]
enum Choice<'a> {
    /// These steps (none for `no_branches`, or an unreadable outcome).
    Steps(Vec<&'a str>),
    /// Its result has no `decision_point_outcome`: it did not choose, everything below it runs.
    Every,
}

impl Choice<'_> {
    fn includes(&self, name: &str) -> bool {
        match self {
            Choice::Steps(names) => names.contains(&name),
            Choice::Every => true,
        }
    }
}

fn choice_of(results: Option<&Value>) -> Choice<'_> {
    // A decision resolved by an operator without a result chose nothing.
    let Some(results) = results else {
        return Choice::Steps(Vec::new());
    };
    let Some(outcome) = results.get(DECISION_KEY) else {
        return Choice::Every;
    };
    Choice::Steps(
        Some(outcome)
            .filter(|o| o.get("type").and_then(Value::as_str) == Some("create_steps"))
            .and_then(|o| o.get("step_names"))
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default(),
    )
}

/// The name of instance `number` of `worker` when it has `count` instances: zero-padded to at
/// least three digits, so names sort in order.
pub fn instance_name(worker: &str, number: usize, count: usize) -> String {
    let width = count.to_string().len().max(3);
    format!("{worker}_{number:0width$}")
}

fn check_batches(
    t: &CompiledTemplate,
    index: usize,
    result: &Value,
    limits: &StepTypeLimits,
) -> Result<Vec<Requested>, StepFailure> {
    let steps = &t.template.steps;
    let name = &steps[index].name;
    let workers: Vec<usize> = t.children[index]
        .iter()
        .copied()
        .filter(|&c| steps[c].step_type == StepType::BatchWorker)
        .collect();
    let worker_names: Vec<&str> = workers.iter().map(|&w| steps[w].name.as_str()).collect();
    let outcome = result.get(BATCH_KEY).ok_or_else(|| {
        invalid_batches(format!(
            "batchable step '{name}' returned no '{BATCH_KEY}': return create_batches (worker one of [{}]) or no_batches",
            worker_names.join(", ")
        ))
    })?;
    let no_op = |w: usize| Requested {
        index: w,
        name: instance_name(&steps[w].name, 0, 1),
        inputs: Some(json!({"batch": batch_input(
            steps[w].batch_config.as_ref(),
            Map::from_iter([
                ("batch_id".to_owned(), json!("000")),
                ("start_cursor".to_owned(), json!(0)),
                ("end_cursor".to_owned(), json!(0)),
                ("batch_size".to_owned(), json!(0)),
            ]),
            true,
        )})),
    };
    match outcome.get("type").and_then(Value::as_str) {
        Some("no_batches") => Ok(workers.iter().map(|&w| no_op(w)).collect()),
        Some("create_batches") => {
            let worker = outcome
                .get("worker_template_name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid_batches(format!(
                        "batchable step '{name}': create_batches needs 'worker_template_name', one of [{}]",
                        worker_names.join(", ")
                    ))
                })?;
            let w = workers
                .iter()
                .copied()
                .find(|&w| steps[w].name == worker)
                .ok_or_else(|| {
                    invalid_batches(format!(
                        "batchable step '{name}': worker_template_name '{worker}' is not a batch_worker step depending on it; allowed: [{}]",
                        worker_names.join(", ")
                    ))
                })?;
            let cursors = outcome.get("cursor_configs").and_then(Value::as_array).ok_or_else(|| {
                invalid_batches(format!(
                    "batchable step '{name}': create_batches needs 'cursor_configs', a list of cursors"
                ))
            })?;
            let count = match outcome.get("worker_count") {
                None => cursors.len(),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n == cursors.len())
                    .ok_or_else(|| {
                        invalid_batches(format!(
                            "batchable step '{name}': worker_count {v} does not match the {} cursor_configs",
                            cursors.len()
                        ))
                    })?,
            };
            if count > limits.max_batch_workers {
                return Err(invalid_batches(format!(
                    "batchable step '{name}' asked for {count} workers; the limit is {}",
                    limits.max_batch_workers
                )));
            }
            if count == 0 {
                return Ok(vec![no_op(w)]);
            }
            cursors
                .iter()
                .enumerate()
                .map(|(i, cursor)| {
                    let config = check_cursor(name, i, cursor)?;
                    Ok(Requested {
                        index: w,
                        name: instance_name(worker, i + 1, count),
                        inputs: Some(json!({"batch": batch_input(steps[w].batch_config.as_ref(), config, false)})),
                    })
                })
                .collect()
        }
        _ => Err(invalid_batches(format!(
            "batchable step '{name}': '{BATCH_KEY}.type' must be \"create_batches\" or \"no_batches\", got {}",
            outcome
                .get("type")
                .map_or_else(|| "nothing".to_owned(), Value::to_string)
        ))),
    }
}

/// A batchable step's result as stored: its `cursor_configs` left out (each instance holds its
/// own cursor as its `batch`), so the instances that read it as a dependency result do not each
/// read every cursor. The rest of the outcome (`type`, `worker_template_name`, `worker_count`,
/// `total_items`) and the result's other keys are kept.
pub(crate) fn without_cursors(result: &Value) -> Value {
    let mut stored = result.clone();
    if let Some(Value::Object(outcome)) = stored.get_mut(BATCH_KEY) {
        outcome.remove("cursor_configs");
    }
    stored
}

/// One cursor config, checked: an object with `batch_id` (a string; a number is turned into
/// one), `start_cursor` and `end_cursor` (any JSON), an optional non-negative `batch_size`;
/// other keys are kept.
fn check_cursor(step: &str, i: usize, cursor: &Value) -> Result<Map<String, Value>, StepFailure> {
    let at = format!("batchable step '{step}': cursor_configs[{i}]");
    let Value::Object(config) = cursor else {
        return Err(invalid_batches(format!("{at} must be an object, got {cursor}")));
    };
    let mut config = config.clone();
    match config.get("batch_id") {
        Some(Value::String(_)) => {}
        Some(Value::Number(n)) => {
            let id = n.to_string();
            config.insert("batch_id".into(), Value::String(id));
        }
        other => {
            return Err(invalid_batches(format!(
                "{at}: 'batch_id' must be a string, got {}",
                other.map_or_else(|| "nothing".to_owned(), Value::to_string)
            )))
        }
    }
    for key in ["start_cursor", "end_cursor"] {
        if !config.contains_key(key) {
            return Err(invalid_batches(format!("{at}: '{key}' is missing")));
        }
    }
    if let Some(size) = config.get("batch_size") {
        if !size.is_u64() {
            return Err(invalid_batches(format!(
                "{at}: 'batch_size' must be a non-negative integer, got {size}"
            )));
        }
    }
    Ok(config)
}

/// What a batch worker instance receives as `batch`: its cursor, whether it is the placeholder
/// of `no_batches`, and the template's `batch_config`.
fn batch_input(batch_config: Option<&Value>, mut cursor: Map<String, Value>, is_no_op: bool) -> Value {
    cursor.insert("is_no_op".into(), Value::Bool(is_no_op));
    cursor.insert("batch_config".into(), batch_config.cloned().unwrap_or(Value::Null));
    Value::Object(cursor)
}

/// Whether a step may exist in a task, as far as the planner can tell now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    Exists,
    /// A run-time choice may still create it.
    Maybe,
    /// Nothing can create it any more.
    Never,
}

/// The steps to create now in a task whose steps are `existing`: first the `requested` ones
/// (batch worker instances), then every step the rules in the module docs allow. With no
/// existing steps, this is what a task starts with.
pub(crate) fn plan_steps(
    t: &CompiledTemplate,
    existing: &[ExistingStep],
    requested: Vec<Requested>,
) -> Vec<PlannedStep> {
    let steps = &t.template.steps;
    let n = steps.len();
    // For each template step, its rows in the task (several for a batch worker's instances),
    // each with whether it satisfies a dependency.
    let mut rows: Vec<Vec<(Uuid, bool)>> = vec![Vec::new(); n];
    let mut decided: Vec<Option<Choice<'_>>> = vec![None; n];
    for s in existing {
        let Some(i) = t.index_of(&s.name) else { continue };
        let done = s.state.satisfies_dependency();
        rows[i].push((s.step_uuid, done));
        if done && steps[i].step_type == StepType::Decision {
            decided[i] = Some(choice_of(s.results.as_ref()));
        }
    }
    let mut planned = Vec::new();
    let create = |index: usize, name: String, inputs: Option<Value>, rows: &mut Vec<Vec<(Uuid, bool)>>| {
        let mut parents = Vec::new();
        let mut pending = 0i32;
        for &p in &t.parents[index] {
            for &(uuid, done) in &rows[p] {
                parents.push(uuid);
                pending += i32::from(!done);
            }
        }
        let step_uuid = Uuid::now_v7();
        rows[index].push((step_uuid, false));
        PlannedStep {
            index,
            name,
            step_uuid,
            inputs,
            parents,
            pending_parents: pending,
        }
    };
    for r in requested {
        planned.push(create(r.index, r.name, r.inputs, &mut rows));
    }
    let mut presence = vec![Presence::Maybe; n];
    for &i in &t.order {
        if !rows[i].is_empty() {
            presence[i] = Presence::Exists;
            continue;
        }
        let deps = &t.parents[i];
        let any = |p: Presence| deps.iter().any(|&d| presence[d] == p);
        let now = match steps[i].step_type {
            StepType::BatchWorker if any(Presence::Never) => Presence::Never,
            StepType::BatchWorker => Presence::Maybe,
            StepType::DeferredConvergence if any(Presence::Maybe) => Presence::Maybe,
            StepType::DeferredConvergence => {
                // Settled: create it if the choice it converges was reached (a dependency
                // exists, or one was not chosen by a step that exists).
                let reached = any(Presence::Exists)
                    || deps
                        .iter()
                        .any(|&d| t.parents[d].iter().any(|&g| presence[g] == Presence::Exists));
                if reached {
                    Presence::Exists
                } else {
                    Presence::Never
                }
            }
            _ if any(Presence::Never) => Presence::Never,
            _ if any(Presence::Maybe) => Presence::Maybe,
            _ => {
                let mut now = Presence::Exists;
                for &d in deps.iter().filter(|&&d| steps[d].step_type == StepType::Decision) {
                    match &decided[d] {
                        Some(choice) if choice.includes(&steps[i].name) => {}
                        Some(_) => now = Presence::Never,
                        None if now == Presence::Exists => now = Presence::Maybe,
                        None => {}
                    }
                }
                now
            }
        };
        presence[i] = now;
        if now == Presence::Exists {
            planned.push(create(i, steps[i].name.clone(), None, &mut rows));
        }
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::templates::CompiledTemplate;
    use crate::store::TemplateRow;

    fn compiled(yaml: &str) -> CompiledTemplate {
        let loaded = crate::template::parse_str(yaml, None, "test").expect("template");
        let row = TemplateRow {
            id: 1,
            namespace: loaded.template.namespace_name.clone(),
            name: loaded.template.name.clone(),
            version: loaded.template.version.clone(),
            definition: serde_json::to_value(&loaded.template).expect("json"),
            content_hash: String::new(),
            source_path: None,
            created_at: chrono::Utc::now(),
        };
        CompiledTemplate::from_row(&row).expect("compiled")
    }

    const TEMPLATE: &str = "name: t\nnamespace_name: ns\nversion: 1.0.0\nsteps:\n\
        - { name: d, type: decision, handler: { callable: x } }\n\
        - { name: b1, depends_on: [d], handler: { callable: x } }\n\
        - { name: b, type: batchable, handler: { callable: x } }\n\
        - { name: w, type: batch_worker, depends_on: [b], handler: { callable: x } }\n\
        - { name: c, type: deferred_convergence, depends_on: [b1, w], handler: { callable: x } }\n";

    #[test]
    fn hostile_outcomes_fail_cleanly_and_never_panic() {
        let t = compiled(TEMPLATE);
        let limits = StepTypeLimits::default();
        let hostile = [
            json!(null),
            json!(7),
            json!("decision_point_outcome"),
            json!({DECISION_KEY: null}),
            json!({DECISION_KEY: {"type": 5}}),
            json!({DECISION_KEY: {"type": "create_steps"}}),
            json!({DECISION_KEY: {"type": "create_steps", "step_names": "b1"}}),
            json!({DECISION_KEY: {"type": "create_steps", "step_names": [null, 1, {"x": []}]}}),
            json!({DECISION_KEY: {"type": "create_steps", "step_names": ["d"]}}),
            json!({BATCH_KEY: {"type": "create_batches"}}),
            json!({BATCH_KEY: {"type": "create_batches", "worker_template_name": "w", "cursor_configs": {}}}),
            json!({BATCH_KEY: {"type": "create_batches", "worker_template_name": "w", "worker_count": -1, "cursor_configs": []}}),
            json!({BATCH_KEY: {"type": "create_batches", "worker_template_name": "w", "worker_count": 1e300, "cursor_configs": [{}]}}),
            json!({BATCH_KEY: {"type": "create_batches", "worker_template_name": "w", "cursor_configs": [{"batch_id": true}]}}),
            json!({BATCH_KEY: {"type": "create_batches", "worker_template_name": "w", "cursor_configs": [{"batch_id": 1, "start_cursor": 0}]}}),
            json!({BATCH_KEY: {"type": "create_batches", "worker_template_name": "w", "cursor_configs": [{"batch_id": "1", "start_cursor": 0, "end_cursor": 1, "batch_size": -3}]}}),
        ];
        for step in ["d", "b"] {
            for value in &hostile {
                // Either an expansion or a permanent failure naming the problem; never a panic.
                match check_outcome(&t, step, value, &limits) {
                    Ok(_) => {}
                    Err(f) => {
                        assert!(!f.retryable);
                        assert!(f.message.contains(&format!("'{step}'")), "{}", f.message);
                    }
                }
            }
        }
        // Too many workers for the limit.
        let many: Vec<Value> = (0..1_001)
            .map(|i| json!({"batch_id": i, "start_cursor": i, "end_cursor": i + 1}))
            .collect();
        let outcome =
            json!({BATCH_KEY: {"type": "create_batches", "worker_template_name": "w", "cursor_configs": many}});
        let err = check_outcome(&t, "b", &outcome, &limits).expect_err("over the limit");
        assert!(err.message.contains("the limit is 1000"), "{}", err.message);
    }

    #[test]
    fn a_task_starts_with_the_steps_that_need_no_choice() {
        let t = compiled(TEMPLATE);
        let names: Vec<String> = plan_steps(&t, &[], Vec::new()).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["d", "b"]);
    }

    #[test]
    fn instance_names_sort_in_order() {
        assert_eq!(instance_name("w", 1, 3), "w_001");
        assert_eq!(instance_name("w", 1000, 1000), "w_1000");
        assert_eq!(instance_name("w", 7, 1000), "w_0007");
    }
}
