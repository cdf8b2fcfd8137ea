//! Registration-time checks of a template, and task-context validation against its
//! `input_schema`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use serde_json::Value;

use super::model::{StepType, TaskTemplate};
use crate::error::{TaskerError, TemplateProblem, ValidationError};

/// Largest task context accepted, measured as serialized JSON.
pub const MAX_CONTEXT_BYTES: usize = crate::limits::MAX_JSON_BYTES;

/// Longest queue (and so namespace) name: PGMQ prefixes it to build table names, and
/// PostgreSQL identifiers are limited to 63 bytes.
const MAX_QUEUE_NAME_LEN: usize = 40;

/// Highest `retry.max_attempts` a template may ask for.
const MAX_ATTEMPTS_LIMIT: u32 = 100;

/// Longest `timeout_seconds` a template may ask for: 30 days.
pub const MAX_TIMEOUT_SECONDS: u64 = 30 * 24 * 3600;

/// Longest `retry.backoff_base_ms` / `retry.max_backoff_ms`: 30 days. Bounding them here keeps
/// every delay the engine computes representable as a timestamp.
pub const MAX_BACKOFF_MS: u64 = 30 * 24 * 3600 * 1000;

/// The allowed values of a numeric template field, for error messages; `None` for other fields.
pub(crate) fn allowed_range(field: &str) -> Option<String> {
    match field {
        "timeout_seconds" => Some(format!("1 to {MAX_TIMEOUT_SECONDS} (30 days)")),
        "retry.backoff_base_ms" | "retry.max_backoff_ms" => Some(format!("0 to {MAX_BACKOFF_MS} (30 days)")),
        "retry.max_attempts" => Some(format!("0 to {MAX_ATTEMPTS_LIMIT}")),
        _ => None,
    }
}

/// At most this many schema violations are listed in one [`ValidationError`].
const MAX_REPORTED_VIOLATIONS: usize = 10;

const QUEUE_NAME_RULE: &str = "use 1 to 40 characters: lowercase ASCII letters, digits and '_', starting with a letter";

/// Whether `name` may be used as a queue name (and so as a namespace name): 1 to 40
/// characters, lowercase ASCII letters, digits and `_`, starting with a letter. Queue names
/// become PGMQ table names, hence the restriction.
pub fn is_valid_queue_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(first) if bytes.len() <= MAX_QUEUE_NAME_LEN => {
            first.is_ascii_lowercase()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
        }
        _ => false,
    }
}

/// Checks everything registration requires of a template and returns its parsed version.
///
/// Every problem found is reported, each naming the file (when `source` is given), the
/// template, and where applicable the step and the field.
pub fn validate_template(t: &TaskTemplate, source: Option<&Path>) -> Result<semver::Version, Vec<TemplateProblem>> {
    let mut v = Problems {
        file: source,
        template: t.key(),
        list: Vec::new(),
    };

    if t.name.trim().is_empty() {
        v.top("name", "template name must not be empty".to_owned());
    }
    if t.namespace_name.is_empty() {
        v.top("namespace_name", "namespace_name must not be empty".to_owned());
    } else if !is_valid_queue_name(&t.namespace_name) {
        v.top(
            "namespace_name",
            format!(
                "namespace_name '{}' is not a valid queue name: {QUEUE_NAME_RULE}",
                t.namespace_name
            ),
        );
    }
    let version = match semver::Version::parse(&t.version) {
        Ok(version) => Some(version),
        Err(e) => {
            v.top(
                "version",
                format!(
                    "version '{}' is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.0.0): {e}",
                    t.version
                ),
            );
            None
        }
    };
    if let Some(schema) = &t.input_schema {
        if let Err(message) = check_schema(schema) {
            v.top("input_schema", message);
        }
    }

    if t.steps.is_empty() {
        v.top("steps", "template has no steps".to_owned());
    }
    check_steps(t, &mut v);
    check_cycles(t, &mut v);
    if v.list.is_empty() {
        // Only on a well-formed DAG: the checks walk dependencies.
        check_step_types(t, &mut v);
        for (step, field, message) in crate::events::domain::problems(t) {
            v.push(step.as_deref(), &field, message);
        }
    }

    match version {
        Some(version) if v.list.is_empty() => Ok(version),
        _ => Err(v.list),
    }
}

/// Accumulates the problems of one template.
struct Problems<'a> {
    file: Option<&'a Path>,
    template: String,
    list: Vec<TemplateProblem>,
}

impl Problems<'_> {
    fn push(&mut self, step: Option<&str>, field: &str, message: String) {
        self.list.push(TemplateProblem {
            file: self.file.map(Path::to_path_buf),
            template: Some(self.template.clone()),
            step: step.map(str::to_owned),
            field: Some(field.to_owned()),
            message,
        });
    }

    fn top(&mut self, field: &str, message: String) {
        self.push(None, field, message);
    }
}

/// How a step is named in messages: its name, or `#n` (1-based) when it has none.
fn step_label(t: &TaskTemplate, index: usize) -> String {
    let name = &t.steps[index].name;
    if name.trim().is_empty() {
        format!("#{}", index + 1)
    } else {
        name.clone()
    }
}

fn check_steps(t: &TaskTemplate, v: &mut Problems<'_>) {
    let mut first_index: HashMap<&str, usize> = HashMap::new();
    for (i, step) in t.steps.iter().enumerate() {
        let label = step_label(t, i);
        let label = label.as_str();

        if step.name.trim().is_empty() {
            v.push(Some(label), "name", "step name must not be empty".to_owned());
        } else if let Some(first) = first_index.get(step.name.as_str()) {
            v.push(
                Some(label),
                "name",
                format!(
                    "duplicate step name '{}' (steps #{} and #{})",
                    step.name,
                    first + 1,
                    i + 1
                ),
            );
        } else {
            first_index.insert(step.name.as_str(), i);
        }

        if step.handler.callable.trim().is_empty() {
            v.push(
                Some(label),
                "handler.callable",
                "handler.callable must not be empty".to_owned(),
            );
        }
        if let Some(queue) = &step.queue {
            if !is_valid_queue_name(queue) {
                v.push(
                    Some(label),
                    "queue",
                    format!("queue '{queue}' is not a valid queue name: {QUEUE_NAME_RULE}"),
                );
            }
        }

        let mut seen = BTreeSet::new();
        for dep in &step.dependencies {
            if !seen.insert(dep.as_str()) {
                v.push(
                    Some(label),
                    "dependencies",
                    format!("dependency '{dep}' is listed more than once"),
                );
            } else if *dep == step.name {
                v.push(Some(label), "dependencies", format!("step '{dep}' depends on itself"));
            } else if t.step_index(dep).is_none() {
                v.push(Some(label), "dependencies", format!("depends on unknown step '{dep}'"));
            }
        }

        let retry = &step.retry;
        if retry.max_attempts > MAX_ATTEMPTS_LIMIT {
            v.push(
                Some(label),
                "retry.max_attempts",
                format!(
                    "max_attempts {} is out of range: allowed 0 to {MAX_ATTEMPTS_LIMIT}",
                    retry.max_attempts
                ),
            );
        }
        for (field, value) in [
            ("retry.backoff_base_ms", retry.backoff_base_ms),
            ("retry.max_backoff_ms", retry.max_backoff_ms),
        ] {
            if value > MAX_BACKOFF_MS {
                v.push(
                    Some(label),
                    field,
                    format!(
                        "{value} is out of range: allowed {}",
                        allowed_range(field).unwrap_or_default()
                    ),
                );
            }
        }
        if retry.max_backoff_ms < retry.backoff_base_ms {
            v.push(
                Some(label),
                "retry.max_backoff_ms",
                format!(
                    "max_backoff_ms ({}) is less than backoff_base_ms ({})",
                    retry.max_backoff_ms, retry.backoff_base_ms
                ),
            );
        }
        match step.timeout_seconds {
            Some(0) => v.push(
                Some(label),
                "timeout_seconds",
                "timeout_seconds must be at least 1 (leave it out for no deadline)".to_owned(),
            ),
            Some(secs) if secs > MAX_TIMEOUT_SECONDS => v.push(
                Some(label),
                "timeout_seconds",
                format!(
                    "{secs} is out of range: allowed {}",
                    allowed_range("timeout_seconds").unwrap_or_default()
                ),
            ),
            _ => {}
        }
    }
}

/// What decision points and batches require of a template's shape:
/// * a `batch_worker` step depends on exactly one step, and that step is `batchable`; only
///   `deferred_convergence` steps depend on a `batch_worker` (its instances exist only at run
///   time, in a number only the batchable step knows);
/// * a `batchable` step has a `batch_worker` step depending on it (`no_batches` creates a
///   placeholder instance of it);
/// * no step is named like a batch worker's instance (`<worker>_<digits>`).
///
/// A `deferred_convergence` step that depends only on steps that always exist is allowed and
/// runs like a standard step: templates written for Tasker use it so (its tree workflow), and
/// they must load unchanged.
///
/// Cycles through created steps cannot happen: created steps are instances of template steps
/// with the template's edges (and instances of a batch worker are never parents of each other).
fn check_step_types(t: &TaskTemplate, v: &mut Problems<'_>) {
    let index = |name: &str| t.step_index(name);
    let kind = |i: usize| t.steps[i].step_type;
    for step in &t.steps {
        let label = Some(step.name.as_str());
        let deps: Vec<usize> = step.dependencies.iter().filter_map(|d| index(d)).collect();
        match step.step_type {
            StepType::BatchWorker if deps.len() != 1 || kind(deps[0]) != StepType::Batchable => v.push(
                label,
                "dependencies",
                format!(
                    "a batch_worker step must depend on exactly one step, a batchable one (it depends on [{}])",
                    step.dependencies.join(", ")
                ),
            ),
            StepType::Batchable
                if !t
                    .steps
                    .iter()
                    .any(|c| c.step_type == StepType::BatchWorker && c.dependencies.contains(&step.name)) =>
            {
                v.push(
                    label,
                    "type",
                    "a batchable step needs a batch_worker step that depends on it".to_owned(),
                )
            }
            _ => {}
        }
        if step.step_type != StepType::DeferredConvergence {
            for &p in &deps {
                if kind(p) == StepType::BatchWorker {
                    v.push(
                        label,
                        "dependencies",
                        format!(
                            "only a deferred_convergence step may depend on the batch_worker '{}' (its instances are created at run time)",
                            t.steps[p].name
                        ),
                    );
                }
            }
        }
        if let Some(worker) = instance_of(t, &step.name) {
            v.push(
                label,
                "name",
                format!(
                    "'{}' is the name of an instance of the batch_worker '{worker}'; rename the step",
                    step.name
                ),
            );
        }
    }
}

/// The batch worker step that `name` would be an instance of (`<worker>_<digits>`).
pub(crate) fn instance_of<'t>(t: &'t TaskTemplate, name: &str) -> Option<&'t str> {
    let (base, digits) = name.rsplit_once('_')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.steps
        .iter()
        .find(|s| s.name == base && s.step_type == StepType::BatchWorker)
        .map(|s| s.name.as_str())
}

/// Reports each distinct dependency cycle once, as `a -> b -> a` where `x -> y` means `y`
/// depends on `x` (execution order). Self-dependencies and unknown names are reported by
/// [`check_steps`] and ignored here.
fn check_cycles(t: &TaskTemplate, v: &mut Problems<'_>) {
    let n = t.steps.len();
    // children[p] = steps that depend on p, in template order. With duplicate step names the
    // first one wins, as in `step_index`.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, step) in t.steps.iter().enumerate() {
        for dep in &step.dependencies {
            if let Some(p) = t.step_index(dep) {
                if p != i && !children[p].contains(&i) {
                    children[p].push(i);
                }
            }
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut mark = vec![Mark::New; n];
    let mut seen_cycles: BTreeSet<Vec<usize>> = BTreeSet::new();
    let mut cycles: Vec<Vec<usize>> = Vec::new();

    // Iterative depth-first search: (node, index of the next child to visit).
    for root in 0..n {
        if mark[root] != Mark::New {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::OnPath;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&child) = children[node].get(*next) {
                *next += 1;
                match mark[child] {
                    Mark::New => {
                        mark[child] = Mark::OnPath;
                        stack.push((child, 0));
                    }
                    Mark::OnPath => {
                        let start = stack.iter().position(|&(s, _)| s == child).unwrap_or(0);
                        let cycle: Vec<usize> = stack[start..].iter().map(|&(s, _)| s).collect();
                        // Rotate so the cycle starts at its earliest step: one report per
                        // distinct cycle, however the search entered it.
                        let min_pos = cycle
                            .iter()
                            .enumerate()
                            .min_by_key(|&(_, s)| *s)
                            .map_or(0, |(pos, _)| pos);
                        let mut rotated = cycle[min_pos..].to_vec();
                        rotated.extend_from_slice(&cycle[..min_pos]);
                        if seen_cycles.insert(rotated.clone()) {
                            cycles.push(rotated);
                        }
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }

    for cycle in cycles {
        let mut names: Vec<String> = cycle.iter().map(|&i| step_label(t, i)).collect();
        let first = names[0].clone();
        names.push(first.clone());
        v.push(
            Some(&first),
            "dependencies",
            format!("dependency cycle: {}", names.join(" -> ")),
        );
    }
}

/// Compiles `schema` (which also checks it against its meta-schema) and describes the first
/// problem.
pub(crate) fn check_schema(schema: &Value) -> Result<jsonschema::Validator, String> {
    if let Some(cycle) = in_place_ref_cycle(schema) {
        return Err(format!(
            "invalid JSON Schema: $ref cycle that never descends into the value ({}): validating it would never end",
            cycle.join(" -> ")
        ));
    }
    jsonschema::validator_for(schema).map_err(|e| {
        let at = e.instance_path.as_str();
        let keyword = at.rsplit('/').next().unwrap_or("");
        let what = if keyword == "type" && matches!(e.kind, jsonschema::error::ValidationErrorKind::AnyOf { .. }) {
            // The meta-schema's alternatives for `type` are "one of the simple types" or "a list
            // of them", which reads best as the list itself.
            format!(
                "{} is not a JSON Schema type; 'type' must be one of {SCHEMA_TYPES}, or a list of them",
                e.instance
            )
        } else {
            in_plain_words(&e)
        };
        if at.is_empty() {
            format!("invalid JSON Schema: {what}")
        } else {
            format!("invalid JSON Schema at '{at}': {what}")
        }
    })
}

/// The types a JSON Schema `type` keyword may name.
const SCHEMA_TYPES: &str = "array, boolean, integer, null, number, object, string";

/// A schema violation in words a user understands. jsonschema reports a value that fits none of
/// an `anyOf`/`oneOf`'s alternatives as "not valid under any of the schemas listed in the
/// 'anyOf' keyword"; this says which alternatives there were and why each one did not fit.
pub(crate) fn in_plain_words(e: &jsonschema::ValidationError<'_>) -> String {
    use jsonschema::error::ValidationErrorKind as Kind;
    let alternatives = match &e.kind {
        Kind::AnyOf { context } | Kind::OneOfNotValid { context } => context,
        _ => return e.to_string(),
    };
    let value = e.instance.as_ref();
    let reasons: Vec<String> = alternatives
        .iter()
        .filter_map(|branch| {
            let described: Vec<String> = branch.iter().take(3).map(|b| b.to_string()).collect();
            (!described.is_empty()).then(|| described.join(" and "))
        })
        .collect();
    if reasons.is_empty() {
        return e.to_string();
    }
    format!(
        "{value} fits none of the {} allowed forms: {}",
        alternatives.len(),
        reasons.join("; or ")
    )
}

/// A cycle of subschemas that apply to the *same* value (`$ref`, `allOf`/`anyOf`/`oneOf`,
/// `not`, `if`/`then`/`else`, `dependentSchemas`), as JSON pointers, e.g. `# -> #/$defs/a -> #`.
/// Validating such a schema recurses without end (the validator overflows the stack). A
/// recursive schema that descends into the value (`properties: {child: {$ref: "#"}}`) is fine:
/// the value's depth is bounded.
fn in_place_ref_cycle(schema: &Value) -> Option<Vec<String>> {
    /// The pointers of the subschemas of `node` that apply in place.
    fn in_place(node: &Value, at: &str) -> Vec<String> {
        let Value::Object(map) = node else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for key in ["$ref", "$dynamicRef", "$recursiveRef"] {
            if let Some(Value::String(r)) = map.get(key) {
                if let Some(fragment) = r.strip_prefix('#') {
                    if fragment.is_empty() || fragment.starts_with('/') {
                        out.push(fragment.to_owned());
                    }
                }
            }
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            if let Some(Value::Array(items)) = map.get(key) {
                out.extend((0..items.len()).map(|i| format!("{at}/{key}/{i}")));
            }
        }
        for key in ["not", "if", "then", "else"] {
            if map.contains_key(key) {
                out.push(format!("{at}/{key}"));
            }
        }
        if let Some(Value::Object(deps)) = map.get("dependentSchemas") {
            out.extend(
                deps.keys()
                    .map(|k| format!("{at}/dependentSchemas/{}", escape_pointer(k))),
            );
        }
        out
    }
    fn escape_pointer(key: &str) -> String {
        key.replace('~', "~0").replace('/', "~1")
    }
    // Every object in the document may be a subschema (an over-approximation that is safe:
    // it can only find more in-place edges among real subschemas, not fewer).
    let mut nodes = Vec::new();
    let mut stack = vec![(schema, String::new())];
    while let Some((v, at)) = stack.pop() {
        match v {
            Value::Object(map) => {
                nodes.push(at.clone());
                for (k, child) in map {
                    stack.push((child, format!("{at}/{}", escape_pointer(k))));
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    stack.push((child, format!("{at}/{i}")));
                }
            }
            _ => {}
        }
    }
    // Iterative depth-first search with colours: 1 on the current path, 2 finished.
    let mut colour: HashMap<String, u8> = HashMap::new();
    for start in nodes {
        if colour.contains_key(&start) {
            continue;
        }
        let mut path: Vec<(String, Vec<String>)> = Vec::new();
        let edges = schema.pointer(&start).map(|n| in_place(n, &start)).unwrap_or_default();
        colour.insert(start.clone(), 1);
        path.push((start, edges));
        while let Some((_, edges)) = path.last_mut() {
            match edges.pop() {
                Some(next) => match colour.get(&next) {
                    Some(1) => {
                        let from = path.iter().position(|(p, _)| *p == next).unwrap_or(0);
                        let mut cycle: Vec<String> = path[from..].iter().map(|(p, _)| format!("#{p}")).collect();
                        cycle.push(format!("#{next}"));
                        return Some(cycle);
                    }
                    Some(_) => {}
                    None => {
                        let Some(node) = schema.pointer(&next) else {
                            // An unresolvable pointer is the validator's error to report.
                            colour.insert(next, 2);
                            continue;
                        };
                        let edges = in_place(node, &next);
                        colour.insert(next.clone(), 1);
                        path.push((next, edges));
                    }
                },
                None => {
                    if let Some((done, _)) = path.pop() {
                        colour.insert(done, 2);
                    }
                }
            }
        }
    }
    None
}

/// Validates task contexts against one template's `input_schema`. Build it once per
/// template and share it (it is `Send + Sync`).
#[derive(Debug)]
pub struct ContextValidator {
    schema: Option<jsonschema::Validator>,
}

impl ContextValidator {
    /// Compiles `schema`; `None` accepts any context within the size limit.
    pub fn new(schema: Option<&Value>) -> Result<Self, TaskerError> {
        Self::for_field(schema, "input_schema")
    }

    /// Compiles `schema`, found at template field `field` (named in the error).
    pub fn for_field(schema: Option<&Value>, field: &str) -> Result<Self, TaskerError> {
        let schema = match schema {
            None => None,
            Some(schema) => Some(check_schema(schema).map_err(|message| {
                TaskerError::Template(vec![TemplateProblem {
                    file: None,
                    template: None,
                    step: None,
                    field: Some(field.to_owned()),
                    message,
                }])
            })?),
        };
        Ok(Self { schema })
    }

    /// Checks the size of `context`, then the schema. The error's `path` is the JSON pointer
    /// of the first failing value (for a missing property, the object that lacks it); its
    /// message lists every violation found, up to ten.
    pub fn validate(&self, context: &Value) -> Result<(), ValidationError> {
        if let Err(violation) = crate::limits::check(context) {
            return Err(ValidationError {
                path: String::new(),
                message: violation.describe("task context"),
            });
        }
        if let Some(path) = crate::limits::find_nul(context) {
            return Err(ValidationError {
                path,
                message: "contains a NUL character (\\u0000), which the engine cannot store".to_owned(),
            });
        }
        let Some(schema) = &self.schema else {
            return Ok(());
        };
        let mut errors = schema.iter_errors(context);
        let Some(first) = errors.next() else {
            return Ok(());
        };
        let path = first.instance_path.as_str().to_owned();
        let mut message = in_plain_words(&first);
        // The first one is already in `message`.
        for (listed, e) in (1..).zip(errors) {
            if listed >= MAX_REPORTED_VIOLATIONS {
                message.push_str("; …");
                break;
            }
            let at = e.instance_path.as_str();
            let what = in_plain_words(&e);
            if at.is_empty() {
                message.push_str(&format!("; {what}"));
            } else {
                message.push_str(&format!("; at '{at}': {what}"));
            }
        }
        Err(ValidationError { path, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{HandlerSpec, RetryPolicy, StepTemplate, StepType};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn step(name: &str, deps: &[&str]) -> StepTemplate {
        StepTemplate {
            name: name.to_owned(),
            description: None,
            handler: HandlerSpec {
                callable: format!("handlers.{name}"),
                method: "call".to_owned(),
                resolver: None,
                initialization: json!({}),
                extra: BTreeMap::new(),
            },
            dependencies: deps.iter().map(|d| (*d).to_owned()).collect(),
            step_type: StepType::Standard,
            retry: RetryPolicy::default(),
            timeout_seconds: None,
            publishes_events: None,
            batch_config: None,
            queue: None,
            extra: BTreeMap::new(),
        }
    }

    fn template(steps: Vec<StepTemplate>) -> TaskTemplate {
        TaskTemplate {
            name: "process_order".to_owned(),
            namespace_name: "orders".to_owned(),
            version: "1.2.3".to_owned(),
            description: None,
            metadata: None,
            system_dependencies: None,
            domain_events: None,
            input_schema: None,
            steps,
            environments: BTreeMap::new(),
            lifecycle: None,
            extra: BTreeMap::new(),
        }
    }

    fn problems(t: &TaskTemplate) -> Vec<TemplateProblem> {
        validate_template(t, Some(Path::new("t.yaml"))).expect_err("template should be invalid")
    }

    fn messages(t: &TaskTemplate) -> Vec<String> {
        problems(t).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn queue_names() {
        for ok in ["a", "orders", "order_fulfillment", "q1", &"a".repeat(40)] {
            assert!(is_valid_queue_name(ok), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "_abc",
            "Orders",
            "order-fulfillment",
            "order.x",
            "ordérs",
            "a b",
            &"a".repeat(41),
        ] {
            assert!(!is_valid_queue_name(bad), "{bad}");
        }
    }

    #[test]
    fn valid_template_returns_version() {
        let t = template(vec![step("a", &[]), step("b", &["a"]), step("c", &["a", "b"])]);
        let version = validate_template(&t, None).expect("valid");
        assert_eq!(version, semver::Version::new(1, 2, 3));
    }

    #[test]
    fn reports_every_problem_with_context() {
        let mut t = template(vec![step("a", &["zzz"]), step("a", &[]), step("", &[])]);
        t.name = " ".to_owned();
        t.namespace_name = "Bad-Namespace".to_owned();
        t.version = "1.0".to_owned();
        t.steps[0].handler.callable = String::new();
        t.steps[0].retry.max_attempts = 101;
        t.steps[0].retry.backoff_base_ms = 5_000;
        t.steps[0].retry.max_backoff_ms = 100;
        t.steps[0].timeout_seconds = Some(0);
        t.steps[1].queue = Some("Python Queue".to_owned());
        let all = problems(&t);
        let field_of = |field: &str| {
            all.iter()
                .find(|p| p.field.as_deref() == Some(field))
                .unwrap_or_else(|| panic!("no problem for {field}: {all:#?}"))
        };
        assert!(field_of("name").step.is_none());
        assert!(field_of("namespace_name").message.contains("lowercase"));
        assert!(field_of("version").message.contains("'1.0'"));
        let callable = field_of("handler.callable");
        assert_eq!(callable.step.as_deref(), Some("a"));
        assert_eq!(callable.file.as_deref(), Some(Path::new("t.yaml")));
        assert_eq!(callable.template.as_deref(), Some("Bad-Namespace/ @1.0"));
        assert!(field_of("retry.max_attempts").message.contains("101"));
        assert!(field_of("retry.max_backoff_ms").message.contains("100"));
        assert!(field_of("timeout_seconds").message.contains("at least 1"));
        assert!(field_of("queue").message.contains("'Python Queue'"));
        let deps = field_of("dependencies");
        assert_eq!(deps.message, "depends on unknown step 'zzz'");
        let text: Vec<String> = all.iter().map(ToString::to_string).collect();
        assert!(text.iter().any(|m| m.contains("duplicate step name 'a'")), "{text:#?}");
        assert!(text
            .iter()
            .any(|m| m.contains("step '#3'") && m.contains("must not be empty")));
    }

    #[test]
    fn no_steps() {
        let msgs = messages(&template(vec![]));
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].contains("field 'steps'") && msgs[0].contains("no steps"));
    }

    #[test]
    fn empty_namespace() {
        let mut t = template(vec![step("a", &[])]);
        t.namespace_name = String::new();
        let msgs = messages(&t);
        assert!(msgs[0].contains("namespace_name must not be empty"), "{msgs:?}");
    }

    #[test]
    fn self_and_duplicate_dependencies() {
        let t = template(vec![step("a", &[]), step("b", &["b", "a", "a"])]);
        let msgs = messages(&t);
        assert_eq!(msgs.len(), 2, "{msgs:#?}");
        assert!(msgs[0].contains("step 'b'") && msgs[0].contains("depends on itself"));
        assert!(msgs[1].contains("'a' is listed more than once"));
    }

    #[test]
    fn cycle_path_is_reported() {
        let t = template(vec![
            step("start", &[]),
            step("a", &["start", "c"]),
            step("b", &["a"]),
            step("c", &["b"]),
        ]);
        let all = problems(&t);
        assert_eq!(all.len(), 1, "{all:#?}");
        assert_eq!(all[0].message, "dependency cycle: a -> b -> c -> a");
        assert_eq!(all[0].step.as_deref(), Some("a"));
        assert_eq!(all[0].field.as_deref(), Some("dependencies"));
    }

    #[test]
    fn distinct_cycles_each_reported_once() {
        // Two cycles sharing `a`: a -> b -> a and a -> c -> a; plus x <-> y apart.
        let t = template(vec![
            step("a", &["b", "c"]),
            step("b", &["a"]),
            step("c", &["a"]),
            step("x", &["y"]),
            step("y", &["x"]),
        ]);
        let msgs: Vec<String> = problems(&t).into_iter().map(|p| p.message).collect();
        assert_eq!(
            msgs,
            vec![
                "dependency cycle: a -> b -> a",
                "dependency cycle: a -> c -> a",
                "dependency cycle: x -> y -> x",
            ]
        );
    }

    #[test]
    fn long_acyclic_chain_is_fine() {
        let names: Vec<String> = (0..2_000).map(|i| format!("s{i}")).collect();
        let steps = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                if i == 0 {
                    step(n, &[])
                } else {
                    step(n, &[names[i - 1].as_str()])
                }
            })
            .collect();
        assert!(validate_template(&template(steps), None).is_ok());
    }

    #[test]
    fn invalid_input_schema() {
        let mut t = template(vec![step("a", &[])]);
        t.input_schema = Some(json!({"type": "object", "properties": {"id": {"type": "strin"}}}));
        let all = problems(&t);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].field.as_deref(), Some("input_schema"));
        assert!(all[0].message.contains("/properties/id/type"), "{}", all[0]);
        assert!(all[0].message.contains("strin"), "{}", all[0]);
        // In plain words: the allowed types, not "not valid under any of the schemas listed".
        assert!(all[0].message.contains(SCHEMA_TYPES), "{}", all[0]);
        assert!(!all[0].message.contains("anyOf"), "{}", all[0]);

        t.input_schema = Some(json!({"properties": {"id": {"pattern": "(["}}}));
        assert!(problems(&t)[0].message.contains("regex"));
        t.input_schema = Some(json!({"$schema": "not-a-draft"}));
        assert!(problems(&t)[0].message.contains("not-a-draft"));
        t.input_schema = Some(json!({"$ref": "https://example.com/schema.json"}));
        assert!(problems(&t)[0].field.as_deref() == Some("input_schema"));
        t.input_schema = Some(json!(true));
        assert!(validate_template(&t, None).is_ok());
    }

    #[test]
    fn a_context_matching_no_alternative_says_why_each_did_not_fit() {
        let validator = ContextValidator::new(Some(&json!({
            "properties": {"id": {"anyOf": [{"type": "integer"}, {"type": "string", "minLength": 3}]}}
        })))
        .expect("schema");
        let err = validator.validate(&json!({"id": "ab"})).expect_err("too short");
        assert_eq!(err.path, "/id");
        assert!(
            err.message.contains("fits none of the 2 allowed forms"),
            "{}",
            err.message
        );
        assert!(err.message.contains("is not of type \"integer\""), "{}", err.message);
        assert!(err.message.contains("shorter than 3"), "{}", err.message);
    }

    #[test]
    fn context_validator_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<ContextValidator>();
    }

    #[test]
    fn context_without_schema_only_checks_size() {
        let v = ContextValidator::new(None).expect("no schema");
        assert!(v.validate(&json!({"anything": [1, 2, 3]})).is_ok());
        assert!(v.validate(&Value::Null).is_ok());
    }

    #[test]
    fn context_size_limit() {
        let v = ContextValidator::new(None).expect("no schema");
        // `{"a":"…"}` is 8 bytes plus the string.
        let at_limit = json!({ "a": "x".repeat(MAX_CONTEXT_BYTES - 8) });
        assert_eq!(crate::limits::serialized_len(&at_limit), MAX_CONTEXT_BYTES);
        assert_eq!(
            serde_json::to_vec(&at_limit).map(|b| b.len()).ok(),
            Some(MAX_CONTEXT_BYTES)
        );
        assert!(v.validate(&at_limit).is_ok());
        let over = json!({ "a": "x".repeat(MAX_CONTEXT_BYTES - 7) });
        let err = v.validate(&over).expect_err("too big");
        assert_eq!(err.path, "");
        assert!(err.message.contains(&(MAX_CONTEXT_BYTES + 1).to_string()), "{err}");
        assert!(err.message.contains(&MAX_CONTEXT_BYTES.to_string()), "{err}");
    }

    #[test]
    fn context_schema_errors_point_at_the_value() {
        let schema = json!({
            "type": "object",
            "required": ["order_id"],
            "properties": {
                "order_id": {"type": "integer"},
                "items": {"type": "array", "items": {"type": "string"}}
            }
        });
        let v = ContextValidator::new(Some(&schema)).expect("valid schema");
        assert!(v.validate(&json!({"order_id": 7, "items": ["a"]})).is_ok());

        let err = v.validate(&json!({"items": []})).expect_err("missing");
        assert_eq!(err.path, "");
        assert_eq!(err.message, "\"order_id\" is a required property");

        let err = v.validate(&json!({"order_id": "x"})).expect_err("type");
        assert_eq!(err.path, "/order_id");
        assert!(err.message.contains("\"x\" is not of type \"integer\""), "{err}");

        let err = v
            .validate(&json!({"order_id": 1, "items": ["a", 2]}))
            .expect_err("item");
        assert_eq!(err.path, "/items/1");
        assert_eq!(err.to_string(), "at '/items/1': 2 is not of type \"string\"");
    }

    #[test]
    fn context_reports_several_violations_first_path() {
        let schema = json!({
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}
        });
        let v = ContextValidator::new(Some(&schema)).expect("valid schema");
        let err = v.validate(&json!({"a": "x", "b": "y"})).expect_err("two");
        assert_eq!(err.path, "/a");
        assert!(err.message.contains("; at '/b':"), "{err}");
    }

    #[test]
    fn context_violations_are_capped() {
        let schema = json!({"type": "array", "items": {"type": "integer"}});
        let v = ContextValidator::new(Some(&schema)).expect("valid schema");
        let err = v.validate(&Value::from(vec!["x"; 50])).expect_err("all wrong");
        assert_eq!(err.path, "/0");
        assert_eq!(err.message.matches("is not of type").count(), MAX_REPORTED_VIOLATIONS);
        assert!(err.message.ends_with("; …"), "{err}");
    }

    #[test]
    fn context_validator_rejects_invalid_schema() {
        let err = ContextValidator::new(Some(&json!({"type": 12}))).expect_err("invalid");
        assert!(matches!(&err, TaskerError::Template(p) if p[0].field.as_deref() == Some("input_schema")));
    }

    #[test]
    fn schemas_that_would_recurse_forever_are_refused() {
        for schema in [
            json!({"$ref": "#"}),
            json!({"$ref": "#/$defs/a", "$defs": {"a": {"allOf": [{"$ref": "#/$defs/b"}]}, "b": {"$ref": "#/$defs/a"}}}),
            json!({"properties": {"x": {"$ref": "#/$defs/a"}}, "$defs": {"a": {"not": {"$ref": "#/$defs/a"}}}}),
        ] {
            let err = ContextValidator::new(Some(&schema)).expect_err("refused");
            assert!(err.to_string().contains("$ref cycle"), "{err}");
        }
        // Recursion that descends into the value terminates: allowed.
        let tree = json!({"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#"}}}});
        let v = ContextValidator::new(Some(&tree)).expect("a recursive tree schema is fine");
        assert!(v.validate(&json!({"children": [{"children": []}]})).is_ok());
    }
}
