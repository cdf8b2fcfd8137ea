//! The checks behind each fuzz target, one function per target. The targets in
//! `fuzz_targets/` call them on libFuzzer's inputs; `core/tests/fuzz_regressions.rs` includes
//! this file and calls them on the saved inputs in `core/tests/fixtures/fuzz/<target>/`, so a
//! finding stays fixed.
//!
//! Each function must return normally for every input: a panic (including a failed
//! invariant below), a hang or a stack overflow is a finding.

use serde_json::Value;
use tasker_core::limits::{self, MAX_JSON_BYTES, MAX_TEXT_BYTES};
use tasker_core::outcome::MAX_RETRY_AFTER;
use tasker_core::template::{self, ContextValidator, TaskTemplate};
use tasker_core::{StepFailure, StepOutcome};

/// `template_yaml`: arbitrary text through `parse_str` (YAML → JSON, environment merge, field
/// checks, `validate_template`), then what registration and task creation do with a template
/// that passed: store it as JSON and read it back, compile its `input_schema`, order its steps,
/// validate a context against the schema.
pub fn template_yaml(data: &[u8]) {
    let Ok(yaml) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(loaded) = template::parse_str(yaml, None, "test") else {
        return;
    };
    let t = &loaded.template;

    assert!(
        t.environments.is_empty(),
        "environment overrides are merged and cleared"
    );

    // Registration stores `serde_json::to_value(template)`; the engine reads it back.
    let stored = serde_json::to_value(t).expect("a template serializes");
    let back: TaskTemplate = serde_json::from_value(stored.clone()).expect("a stored template reads back");
    assert_eq!(&back, t, "a template round-trips through its stored JSON");
    // The databases hand the definition back as text, which serde_json reads up to 128 levels
    // deep.
    let _: TaskTemplate = serde_json::from_str(&stored.to_string()).expect("stored template text reads back");

    // What `CompiledTemplate::from_row` does with it.
    let version = semver::Version::parse(&back.version).expect("the stored version parses");
    assert_eq!(version, loaded.version);
    let validator = ContextValidator::new(back.input_schema.as_ref()).expect("a validated schema compiles");
    assert_eq!(
        back.topological_order().len(),
        back.steps.len(),
        "a validated template has no cycle"
    );
    for step in &back.steps {
        assert!(template::is_valid_queue_name(step.queue_name(&back.namespace_name)));
    }

    // Task creation: contexts checked against the template's schema (any JSON value of the
    // document will do as a context).
    for context in [back.metadata.as_ref(), back.system_dependencies.as_ref(), Some(&stored)]
        .into_iter()
        .flatten()
    {
        let _ = validator.validate(context);
    }
}

/// `outcome_json`: the JSON every binding hands to the core. Arbitrary text decodes to an
/// outcome or an error; a normalized outcome is what the engine stores: it re-serializes to
/// JSON that parses back, holds no NUL character, and keeps within the size and nesting limits.
pub fn outcome_json(data: &[u8]) {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(outcome) = StepOutcome::from_json(json) else {
        return;
    };
    let outcome = outcome.normalized();
    let text = serde_json::to_string(&outcome).expect("an outcome serializes");
    let reread: Value = serde_json::from_str(&text).expect("a normalized outcome parses back as JSON");
    assert!(
        limits::find_nul(&reread).is_none(),
        "NUL in a normalized outcome: {text}"
    );
    let back = StepOutcome::from_json(&text).expect("a normalized outcome parses back as an outcome");
    assert_eq!(
        std::mem::discriminant(&back),
        std::mem::discriminant(&outcome),
        "success stays success, failure stays failure"
    );
    match &outcome {
        StepOutcome::Success { result, metadata } => {
            for value in [result, metadata] {
                assert!(limits::check(value).is_ok(), "a normalized result is within the limits");
                assert!(limits::serialized_len(value) <= MAX_JSON_BYTES);
            }
        }
        StepOutcome::Failure(failure) => check_failure(failure),
    }
}

fn check_failure(f: &StepFailure) {
    // A cut text keeps MAX_TEXT_BYTES and gains a short marker.
    for text in [Some(&f.message), Some(&f.error_type), f.backtrace.as_ref()]
        .into_iter()
        .flatten()
    {
        assert!(text.len() <= MAX_TEXT_BYTES + 64, "error text of {} bytes", text.len());
    }
    assert!(f.retry_after.is_none_or(|after| after <= MAX_RETRY_AFTER));
    assert!(
        limits::check(&f.metadata).is_ok(),
        "failure metadata is within the limits"
    );
    // The step's `last_error`, as stored.
    let record = f.to_record(1);
    assert!(limits::find_nul(&record).is_none(), "NUL in last_error");
    let _: Value = serde_json::from_str(&record.to_string()).expect("last_error parses back");
}
