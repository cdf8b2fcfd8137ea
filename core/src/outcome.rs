//! What a handler reports for one attempt of a step.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::TaskerError;
use crate::limits::{self, LimitViolation};

/// Longest delay a handler's `retry_after` may ask for (30 days); longer ones are clamped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum StepOutcome {
    Success {
        result: Value,
        #[serde(default)]
        metadata: Value,
    },
    Failure(StepFailure),
}

impl StepOutcome {
    /// Success with a result and no metadata.
    pub fn success(result: Value) -> Self {
        StepOutcome::Success {
            result,
            metadata: Value::Null,
        }
    }

    /// Parses the outcome JSON a binding hands over (`{"status": "success", "result": …}` or
    /// `{"status": "failure", "message": …, "error_type": …, "retryable": …}`).
    ///
    /// A document nested too deep for serde_json (128 levels) is not an invalid call: it is a
    /// result over the nesting limit, so it becomes the same permanent `result_too_deep`
    /// failure that [`StepOutcome::normalized`] gives a shallower over-deep result.
    pub fn from_json(text: &str) -> Result<StepOutcome, TaskerError> {
        serde_json::from_str(text).or_else(|e| {
            if e.to_string().starts_with("recursion limit exceeded") {
                Ok(StepOutcome::Failure(limit_failure(
                    &LimitViolation::TooDeep,
                    "the step's outcome",
                )))
            } else {
                Err(TaskerError::InvalidArgument(format!("step outcome is invalid: {e}")))
            }
        })
    }

    /// The outcome as the engine stores it, the same from every language and on both backends:
    /// `\u0000` in any string or key becomes U+FFFD (PostgreSQL cannot store it), error texts are
    /// cut to [`limits::MAX_TEXT_BYTES`], `retry_after` is clamped to [`MAX_RETRY_AFTER`], and a
    /// result or metadata over the size or nesting limit turns into a permanent
    /// `result_too_large` / `result_too_deep` failure of this step alone, naming the limit.
    pub fn normalized(self) -> StepOutcome {
        match self {
            StepOutcome::Success {
                mut result,
                mut metadata,
            } => {
                for (value, what) in [(&result, "the step's result"), (&metadata, "the step's metadata")] {
                    if let Err(violation) = limits::check(value) {
                        return StepOutcome::Failure(limit_failure(&violation, what));
                    }
                }
                limits::replace_nul(&mut result);
                limits::replace_nul(&mut metadata);
                StepOutcome::Success { result, metadata }
            }
            StepOutcome::Failure(mut f) => {
                f.message = limits::clean_text(&f.message);
                f.error_type = limits::clean_text(&f.error_type);
                f.backtrace = f.backtrace.as_deref().map(limits::clean_text);
                f.retry_after = f.retry_after.map(|d| d.min(MAX_RETRY_AFTER));
                match limits::check(&f.metadata) {
                    Ok(()) => limits::replace_nul(&mut f.metadata),
                    Err(violation) => {
                        // The failure itself stands; only the metadata that cannot be stored goes.
                        let code = match violation {
                            LimitViolation::TooLarge { .. } => error_types::METADATA_TOO_LARGE,
                            LimitViolation::TooDeep => error_types::METADATA_TOO_DEEP,
                        };
                        f.metadata = dropped_metadata(code, "metadata", &violation.describe("the failure's metadata"));
                    }
                }
                StepOutcome::Failure(f)
            }
        }
    }
}

/// The note that replaces a failure's metadata when the metadata cannot be stored, so that the
/// failure keeps its message, error type and retryability in every language:
/// `{"metadata_dropped": {"code", "path", "reason"}}`. `code` is
/// [`error_types::METADATA_NOT_SERIALIZABLE`] (no JSON form: a NaN, an object, a cycle, …),
/// [`error_types::METADATA_TOO_LARGE`] or [`error_types::METADATA_TOO_DEEP`]; `path` names the bad
/// value (`metadata.items[2].price`). The Python, Ruby and TypeScript packages write the same note.
pub fn dropped_metadata(code: &str, path: &str, reason: &str) -> Value {
    json!({ "metadata_dropped": { "code": code, "path": path, "reason": reason } })
}

/// What a Rust handler returns when its step succeeds: the result, and metadata stored beside it
/// (a handler's notes: timings, the API it called, …). A plain [`Value`] converts into a success
/// without metadata, so `Ok(json!({...}))` keeps working.
///
/// ```
/// use serde_json::json;
/// use tasker_core::StepSuccess;
///
/// let done = StepSuccess::new(json!({"charged": 42})).with_metadata(json!({"gateway": "test"}));
/// assert_eq!(done.metadata["gateway"], "test");
///
/// #[derive(serde::Serialize)]
/// struct Quote { price: f64 }
/// // Typed values are checked: NaN and infinities are refused, naming the field.
/// let refused = StepSuccess::serialize(&Quote { price: f64::NAN }).unwrap_err();
/// assert_eq!(refused.error_type, "result_not_serializable");
/// assert!(refused.message.contains("result.price is NaN"));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepSuccess {
    pub result: Value,
    pub metadata: Value,
}

impl StepSuccess {
    /// A success with `result` and no metadata.
    pub fn new(result: Value) -> Self {
        Self {
            result,
            metadata: Value::Null,
        }
    }

    /// A success whose result is `result` serialized; a value with no JSON form (a non-finite
    /// number, a non-string map key) is a permanent `result_not_serializable` failure naming its
    /// path, as in every other language.
    pub fn serialize<T: Serialize + ?Sized>(result: &T) -> Result<Self, StepFailure> {
        crate::serialize::to_json(result, "result")
            .map(Self::new)
            .map_err(|e| not_serializable("result", &e))
    }

    /// The same success with `metadata`.
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// The same success with `metadata` serialized, or the permanent `result_not_serializable`
    /// failure naming what has no JSON form.
    pub fn with_serialized_metadata<T: Serialize + ?Sized>(self, metadata: &T) -> Result<Self, StepFailure> {
        let metadata = crate::serialize::to_json(metadata, "metadata").map_err(|e| not_serializable("metadata", &e))?;
        Ok(self.with_metadata(metadata))
    }
}

impl From<Value> for StepSuccess {
    fn from(result: Value) -> Self {
        Self::new(result)
    }
}

impl From<StepSuccess> for StepOutcome {
    fn from(success: StepSuccess) -> Self {
        StepOutcome::Success {
            result: success.result,
            metadata: success.metadata,
        }
    }
}

fn not_serializable(what: &str, e: &crate::serialize::NotJson) -> StepFailure {
    StepFailure::permanent(
        error_types::RESULT_NOT_SERIALIZABLE,
        format!("the handler's {what} cannot be serialized to JSON: {e}"),
    )
}

/// One batch of a `create_batches` outcome: which items a batch worker instance processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchCursor {
    pub batch_id: String,
    pub start_cursor: Value,
    pub end_cursor: Value,
    pub batch_size: u64,
}

/// The most batches [`batch_cursors`] builds (far above any worker limit, so a mistaken total
/// fails fast instead of filling memory).
pub const MAX_BATCH_CURSORS: u64 = 100_000;

/// Splits `total` items into batches of `batch_size` (the last one smaller): ids `"001"`,
/// `"002"`, … (more digits past 999), cursors `[start, end)`. No items, no batches.
pub fn batch_cursors(total: u64, batch_size: u64) -> Result<Vec<BatchCursor>, TaskerError> {
    if batch_size == 0 {
        return Err(TaskerError::InvalidArgument("batch_size must be at least 1".into()));
    }
    let count = total.div_ceil(batch_size);
    if count > MAX_BATCH_CURSORS {
        return Err(TaskerError::InvalidArgument(format!(
            "{total} items in batches of {batch_size} make {count} batches; at most {MAX_BATCH_CURSORS} are built"
        )));
    }
    let width = count.to_string().len().max(3);
    Ok((0..count)
        .map(|i| {
            let start = i.saturating_mul(batch_size);
            let end = start.saturating_add(batch_size).min(total);
            BatchCursor {
                batch_id: format!("{:0width$}", i + 1),
                start_cursor: json!(start),
                end_cursor: json!(end),
                batch_size: end - start,
            }
        })
        .collect())
}

/// `result` (an object, or nothing) with `key: outcome` added.
fn with_outcome(result: Value, key: &str, outcome: Value) -> Value {
    let mut map = match result {
        Value::Object(map) => map,
        Value::Null => serde_json::Map::new(),
        other => serde_json::Map::from_iter([("value".to_owned(), other)]),
    };
    map.insert(key.to_owned(), outcome);
    Value::Object(map)
}

/// Results of decision and batchable steps, in the wire format (for Rust handlers, which
/// return a result value).
pub mod step_results {
    use serde_json::{json, Value};

    use super::{with_outcome, BatchCursor};
    use crate::engine::{BATCH_KEY, DECISION_KEY};

    /// A decision that creates `steps` (names of steps depending on the decision step), with
    /// the other keys of `result` (an object, or `Value::Null`).
    pub fn decision<S: AsRef<str>>(steps: &[S], result: Value) -> Value {
        let names: Vec<&str> = steps.iter().map(AsRef::as_ref).collect();
        with_outcome(
            result,
            DECISION_KEY,
            json!({"type": "create_steps", "step_names": names}),
        )
    }

    /// A decision that creates no branch.
    pub fn no_branches(result: Value) -> Value {
        with_outcome(result, DECISION_KEY, json!({"type": "no_branches"}))
    }

    /// Instances of the batch worker step `worker`, one per cursor.
    pub fn batches(worker: &str, cursors: &[BatchCursor], result: Value) -> Value {
        let total: u64 = cursors.iter().map(|c| c.batch_size).sum();
        with_outcome(
            result,
            BATCH_KEY,
            json!({
                "type": "create_batches",
                "worker_template_name": worker,
                "worker_count": cursors.len(),
                "total_items": total,
                "cursor_configs": cursors,
            }),
        )
    }

    /// No batches: one placeholder instance (`is_no_op`) runs, so convergence still happens.
    pub fn no_batches(result: Value) -> Value {
        with_outcome(result, BATCH_KEY, json!({"type": "no_batches"}))
    }
}

impl StepOutcome {
    /// A successful decision creating `steps` (see [`step_results::decision`]).
    pub fn decision<S: AsRef<str>>(steps: &[S], result: Value) -> Self {
        Self::success(step_results::decision(steps, result))
    }

    /// A successful decision creating nothing.
    pub fn no_branches(result: Value) -> Self {
        Self::success(step_results::no_branches(result))
    }

    /// A successful batchable step creating one `worker` instance per cursor.
    pub fn batches(worker: &str, cursors: &[BatchCursor], result: Value) -> Self {
        Self::success(step_results::batches(worker, cursors, result))
    }

    /// A successful batchable step creating no batch.
    pub fn no_batches(result: Value) -> Self {
        Self::success(step_results::no_batches(result))
    }
}

fn limit_failure(violation: &LimitViolation, what: &str) -> StepFailure {
    let error_type = match violation {
        LimitViolation::TooLarge { .. } => error_types::RESULT_TOO_LARGE,
        LimitViolation::TooDeep => error_types::RESULT_TOO_DEEP,
    };
    StepFailure::permanent(error_type, violation.describe(what))
}

/// A failed attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFailure {
    pub message: String,
    /// A short machine-readable kind, e.g. `timeout`, `handler_not_found`, `ValueError`.
    pub error_type: String,
    /// `false` fails the step at once; `true` retries while attempts remain.
    pub retryable: bool,
    /// Overrides the template's backoff for the next attempt.
    #[serde(default, with = "opt_secs", skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backtrace: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
}

impl StepFailure {
    /// A failure that will be retried while attempts remain.
    pub fn retryable(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            error_type: error_type.into(),
            retryable: true,
            retry_after: None,
            backtrace: None,
            metadata: Value::Null,
        }
    }

    /// A failure that is never retried.
    pub fn permanent(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            ..Self::retryable(error_type, message)
        }
    }

    /// Sets the failure's metadata (details for whoever investigates it).
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the failure's metadata, serialized. Metadata with no JSON form (a non-finite number, a
    /// non-string map key) never changes the failure: it is replaced by the
    /// [`dropped_metadata`] note naming the bad path, and the message, error type and
    /// retryability stay as they are.
    pub fn with_serialized_metadata<T: Serialize + ?Sized>(self, metadata: &T) -> Self {
        let metadata = crate::serialize::to_json(metadata, "metadata")
            .unwrap_or_else(|e| dropped_metadata(error_types::METADATA_NOT_SERIALIZABLE, &e.path, &e.reason));
        self.with_metadata(metadata)
    }

    /// Sets the delay before the next attempt.
    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// The JSON stored as the step's `last_error`.
    pub fn to_record(&self, attempt: i32) -> Value {
        let mut v = serde_json::json!({
            "message": self.message,
            "error_type": self.error_type,
            "retryable": self.retryable,
            "attempt": attempt,
        });
        if let Some(after) = self.retry_after {
            v["retry_after_seconds"] = serde_json::json!(after.as_secs_f64());
        }
        if let Some(bt) = &self.backtrace {
            v["backtrace"] = Value::String(bt.clone());
        }
        if !self.metadata.is_null() {
            v["metadata"] = self.metadata.clone();
        }
        v
    }
}

/// Error types the engine itself produces.
pub mod error_types {
    /// The attempt overran `timeout_seconds`.
    pub const TIMEOUT: &str = "timeout";
    /// The worker holding the attempt stopped renewing its lease (crashed or was killed).
    pub const WORKER_LOST: &str = "worker_lost";
    /// No handler matches the step's callable.
    pub const HANDLER_NOT_FOUND: &str = "handler_not_found";
    /// The handler's result could not be turned into JSON.
    pub const RESULT_NOT_SERIALIZABLE: &str = "result_not_serializable";
    /// The handler's result or metadata is larger than [`crate::limits::MAX_JSON_BYTES`].
    pub const RESULT_TOO_LARGE: &str = "result_too_large";
    /// The handler's result or metadata nests deeper than [`crate::limits::MAX_JSON_DEPTH`].
    pub const RESULT_TOO_DEEP: &str = "result_too_deep";
    /// Code of the [`super::dropped_metadata`] note: a failure's metadata had no JSON form.
    pub const METADATA_NOT_SERIALIZABLE: &str = "metadata_not_serializable";
    /// Code of the [`super::dropped_metadata`] note: a failure's metadata was over the size limit.
    pub const METADATA_TOO_LARGE: &str = "metadata_too_large";
    /// Code of the [`super::dropped_metadata`] note: a failure's metadata nested too deep.
    pub const METADATA_TOO_DEEP: &str = "metadata_too_deep";
    /// The step cannot be run: its stored data or its template cannot be read.
    pub const CORRUPT_STEP: &str = "corrupt_step";
    /// The database refused to store the handler's outcome (the step fails instead).
    pub const OUTCOME_REJECTED: &str = "outcome_rejected";
    /// Lost leases (crashed or killed workers) exceeded their own cap.
    pub const TOO_MANY_LOST_LEASES: &str = "too_many_lost_leases";
    /// A decision step's `decision_point_outcome` is missing or names a step it cannot create.
    pub const INVALID_DECISION: &str = "invalid_decision";
    /// A batchable step's `batch_processing_outcome` is missing or invalid.
    pub const INVALID_BATCH_OUTCOME: &str = "invalid_batch_outcome";
    /// A `${VAR}` in the handler's `initialization` names a variable the worker's environment
    /// does not have (and gives no default). Retryable: a worker started with it can run the
    /// step.
    pub const HANDLER_CONFIG_UNRESOLVED: &str = "handler_config_unresolved";
}

mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let secs = Option::<f64>::deserialize(d)?;
        match secs {
            Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s.min(1e9)))),
            Some(s) => Err(serde::de::Error::custom(format!(
                "retry_after must be a non-negative number of seconds, got {s}"
            ))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_too_deep_to_parse_fails_its_step_as_too_deep() {
        let deep = format!("{}1{}", "[".repeat(300), "]".repeat(300));
        let text = format!(r#"{{"status": "success", "result": {deep}}}"#);
        match StepOutcome::from_json(&text).expect("not an invalid call") {
            StepOutcome::Failure(f) => {
                assert_eq!(f.error_type, error_types::RESULT_TOO_DEEP);
                assert!(!f.retryable);
            }
            other => panic!("{other:?}"),
        }
        assert!(StepOutcome::from_json(r#"{"status": "maybe"}"#).is_err());
    }
}
