//! Loading the fixture templates through the public API: valid ones in
//! `fixtures/templates/`, one broken file per kind of mistake in `fixtures/invalid/`.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;
use tasker_core::error::{TaskerError, TemplateProblem};
use tasker_core::template::{
    load_path, parse_str, BackoffKind, ContextValidator, LoadedTemplate, StepType, TaskTemplate,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn valid(name: &str) -> PathBuf {
    fixtures().join("templates").join(name)
}

fn invalid(name: &str) -> PathBuf {
    fixtures().join("invalid").join(name)
}

fn load_one(path: &Path, env: &str) -> LoadedTemplate {
    let mut all = load_path(path, env).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(all.len(), 1, "{}", path.display());
    all.remove(0)
}

/// Loads a file that must fail; returns the problems and the error's full text.
fn load_err(path: &Path) -> (Vec<TemplateProblem>, String) {
    match load_path(path, "development") {
        Ok(t) => panic!("{} loaded: {t:?}", path.display()),
        Err(e) => {
            let text = e.to_string();
            assert_eq!(e.code(), "template_invalid");
            match e {
                TaskerError::Template(problems) => (problems, text),
                other => panic!("unexpected error {other:?}"),
            }
        }
    }
}

fn names(t: &TaskTemplate) -> Vec<&str> {
    t.steps.iter().map(|s| s.name.as_str()).collect()
}

fn topo_names(t: &TaskTemplate) -> Vec<&str> {
    t.topological_order()
        .into_iter()
        .map(|i| t.steps[i].name.as_str())
        .collect()
}

fn deps<'a>(t: &'a TaskTemplate, step: &str) -> Vec<&'a str> {
    let i = t.step_index(step).expect("step exists");
    t.steps[i].dependencies.iter().map(String::as_str).collect()
}

// ------------------------------------------------------------------------------------------
// Valid templates

#[test]
fn directory_loads_every_template_in_sorted_order() {
    let all = load_path(&fixtures().join("templates"), "development").expect("all valid");
    let keys: Vec<String> = all.iter().map(|t| t.template.key()).collect();
    assert_eq!(
        keys,
        vec![
            "diamond_workflow/diamond_pattern@1.0.0",
            "integrations/fetch_and_store@1.2.0",
            "linear_workflow/mathematical_sequence@1.0.0",
            "mixed_dag_workflow/complex_dag@2.1.0-beta.1",
            "tree_workflow/hierarchical_tree@1.0.0",
            "billing/send_invoice@1.0.0",
            "billing/send_invoice@1.1.0",
            "order_fulfillment/process_order@1.0.0",
        ]
    );
    for t in &all {
        assert!(t.warnings.is_empty(), "{}: {:?}", t.template.key(), t.warnings);
        assert!(t.template.environments.is_empty());
        let source = t.source.as_deref().expect("loaded from a file");
        assert!(source.starts_with(fixtures().join("templates")));
    }
}

#[test]
fn linear_template() {
    let t = load_one(&valid("linear.yaml"), "development");
    assert_eq!(t.version, semver::Version::new(1, 0, 0));
    assert_eq!(t.source.as_deref(), Some(valid("linear.yaml").as_path()));
    let tpl = &t.template;
    assert_eq!(tpl.name, "mathematical_sequence");
    assert_eq!(tpl.namespace_name, "linear_workflow");
    assert_eq!(
        names(tpl),
        vec!["linear_step_1", "linear_step_2", "linear_step_3", "linear_step_4"]
    );
    assert_eq!(topo_names(tpl), names(tpl));
    assert!(deps(tpl, "linear_step_1").is_empty());
    assert_eq!(deps(tpl, "linear_step_2"), vec!["linear_step_1"]);
    // `depends_on` is an alias of `dependencies`.
    assert_eq!(deps(tpl, "linear_step_3"), vec!["linear_step_2"]);
    assert_eq!(deps(tpl, "linear_step_4"), vec!["linear_step_3"]);

    let first = &tpl.steps[0];
    assert_eq!(
        first.handler.callable,
        "linear_workflow.step_handlers.LinearStep1Handler"
    );
    assert_eq!(first.handler.method, "call");
    assert_eq!(first.handler.initialization, json!({"operation": "square"}));
    assert_eq!(first.timeout_seconds, Some(30));
    assert_eq!(first.retry.backoff, BackoffKind::Exponential);
    assert_eq!(first.retry.max_backoff_ms, 30_000);
    assert_eq!(tpl.steps[1].retry.backoff, BackoffKind::Linear);
    // Defaults.
    let third = &tpl.steps[2];
    assert!(third.retry.retryable);
    assert_eq!(third.retry.max_attempts, 3);
    assert_eq!(third.handler.initialization, json!({}));
    assert_eq!(third.step_type, StepType::Standard);
    assert_eq!(third.timeout_seconds, None);
    // Pass-through fields.
    assert_eq!(tpl.steps[3].handler.method, "finish");
    assert_eq!(
        tpl.steps[3].publishes_events,
        Some(json!([{"name": "sequence.completed", "condition": "success"}]))
    );
    assert_eq!(
        tpl.metadata.as_ref().map(|m| &m["tags"]),
        Some(&json!(["linear", "example"]))
    );
    assert_eq!(tpl.system_dependencies, Some(json!({"primary": "default"})));
    assert_eq!(tpl.domain_events, Some(json!([])));
}

#[test]
fn diamond_template() {
    let t = load_one(&valid("diamond.yaml"), "development").template;
    assert_eq!(t.steps.len(), 4);
    assert!(deps(&t, "diamond_start").is_empty());
    assert_eq!(deps(&t, "diamond_branch_b"), vec!["diamond_start"]);
    assert_eq!(deps(&t, "diamond_branch_c"), vec!["diamond_start"]);
    assert_eq!(deps(&t, "diamond_end"), vec!["diamond_branch_b", "diamond_branch_c"]);
    let order = topo_names(&t);
    assert_eq!(order.first(), Some(&"diamond_start"));
    assert_eq!(order.last(), Some(&"diamond_end"));
    assert_eq!(order.len(), 4);
}

#[test]
fn tree_template() {
    let t = load_one(&valid("tree.yaml"), "development").template;
    assert_eq!(t.steps.len(), 8);
    let roots: Vec<&str> = t
        .steps
        .iter()
        .filter(|s| s.dependencies.is_empty())
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(roots, vec!["tree_root"]);
    assert_eq!(deps(&t, "tree_leaf_f"), vec!["tree_branch_right"]);
    let last = &t.steps[7];
    assert_eq!(last.name, "tree_final_convergence");
    assert_eq!(last.step_type, StepType::DeferredConvergence);
    assert_eq!(
        last.dependencies,
        vec!["tree_leaf_d", "tree_leaf_e", "tree_leaf_f", "tree_leaf_g"]
    );
    assert_topological(&t);
}

#[test]
fn mixed_dag_template() {
    let loaded = load_one(&valid("mixed_dag.yaml"), "development");
    assert_eq!(loaded.version, semver::Version::parse("2.1.0-beta.1").expect("semver"));
    let t = loaded.template;
    assert_eq!(t.steps.len(), 7);
    assert_eq!(
        deps(&t, "dag_finalize"),
        vec!["dag_validate", "dag_transform", "dag_analyze"]
    );
    assert_eq!(deps(&t, "dag_validate"), vec!["dag_process_left", "dag_process_right"]);
    let right = &t.steps[t.step_index("dag_process_right").expect("step")];
    assert_eq!(right.queue_name(&t.namespace_name), "mixed_dag_python");
    assert_eq!(t.steps[0].queue_name(&t.namespace_name), "mixed_dag_workflow");
    let validate = &t.steps[t.step_index("dag_validate").expect("step")];
    assert_eq!(validate.step_type, StepType::Decision);
    let transform = &t.steps[t.step_index("dag_transform").expect("step")];
    assert!(!transform.retry.retryable);
    assert_eq!(transform.retry.backoff, BackoffKind::None);
    let analyze = &t.steps[t.step_index("dag_analyze").expect("step")];
    assert_eq!(analyze.retry.max_attempts, 10);
    assert_eq!(analyze.retry.backoff, BackoffKind::Fibonacci);
    assert_eq!(analyze.retry.backoff_base_ms, 250);
    assert_eq!(analyze.retry.max_backoff_ms, 5_000);
    assert_eq!(analyze.handler.resolver.as_deref(), Some("class_constant"));
    assert_eq!(t.lifecycle, Some(json!({"on_complete": "notify"})));
    assert_topological(&t);
}

fn assert_topological(t: &TaskTemplate) {
    let order = t.topological_order();
    assert_eq!(order.len(), t.steps.len());
    for (pos, &i) in order.iter().enumerate() {
        for dep in &t.steps[i].dependencies {
            let p = t.step_index(dep).expect("known dependency");
            let dep_pos = order.iter().position(|&x| x == p).expect("in order");
            assert!(dep_pos < pos, "{dep} must come before {}", t.steps[i].name);
        }
    }
}

#[test]
fn environment_overrides_are_merged_by_env() {
    let path = valid("env_overrides.yaml");

    let test = load_one(&path, "test").template;
    let fetch = &test.steps[0];
    assert_eq!(
        fetch.handler.initialization,
        json!({
            "url": "http://test.example.com/cart",
            "timeout_ms": 5000,
            "params": {"page_size": 50, "test_mode": true}
        })
    );
    assert_eq!(fetch.retry.max_attempts, 1);
    // Untouched fields of an overridden step keep their base values.
    assert_eq!(fetch.retry.backoff, BackoffKind::Exponential);
    assert_eq!(fetch.handler.callable, "Integrations::FetchCartHandler");
    assert_eq!(test.steps[1].handler.initialization, json!({"table": "carts_test"}));
    assert_eq!(test.steps[1].dependencies, vec!["fetch_cart"]);
    assert!(test.environments.is_empty());

    let dev = load_one(&path, "development").template;
    assert_eq!(
        dev.steps[0].handler.initialization["url"],
        json!("http://localhost:3000/cart")
    );
    assert_eq!(dev.steps[0].retry.max_attempts, 5);
    assert_eq!(dev.steps[1].handler.initialization, json!({"table": "carts"}));

    // No block for this environment: the base template.
    let prod = load_one(&path, "production").template;
    assert_eq!(
        prod.steps[0].handler.initialization,
        json!({"url": "https://api.example.com/cart", "timeout_ms": 5000, "params": {"page_size": 50}})
    );
    assert_eq!(prod.steps[0].retry.max_attempts, 5);
}

#[test]
fn input_schema_validates_contexts() {
    let t = load_one(&valid("with_schema.yaml"), "development").template;
    let schema = t.input_schema.as_ref().expect("schema");
    let v = ContextValidator::new(Some(schema)).expect("valid schema");

    let good = json!({
        "order_id": 42,
        "customer": {"email": "a@example.com"},
        "items": [{"sku": "X-1", "quantity": 2}]
    });
    assert!(v.validate(&good).is_ok());

    let err = v
        .validate(&json!({"customer": {"email": "a@example.com"}}))
        .expect_err("order_id missing");
    assert_eq!(err.path, "");
    assert_eq!(err.message, "\"order_id\" is a required property");

    let err = v
        .validate(&json!({"order_id": 1, "customer": {}}))
        .expect_err("email missing");
    assert_eq!(err.path, "/customer");
    assert!(err.message.contains("\"email\""), "{err}");

    let err = v
        .validate(&json!({
            "order_id": 1,
            "customer": {"email": "a@example.com"},
            "items": [{"sku": "X-1", "quantity": 0}]
        }))
        .expect_err("quantity too small");
    assert_eq!(err.path, "/items/0/quantity");
    assert!(
        err.to_string()
            .starts_with("at '/items/0/quantity': 0 is less than the minimum of 1"),
        "{err}"
    );

    let err = v
        .validate(&json!({"order_id": "42", "customer": {"email": "x"}}))
        .expect_err("type");
    assert_eq!(err.path, "/order_id");
}

#[test]
fn several_versions_coexist_in_one_file() {
    let all = load_path(&valid("versions"), "development").expect("valid");
    let versions: Vec<String> = all.iter().map(|t| t.version.to_string()).collect();
    assert_eq!(versions, vec!["1.0.0", "1.1.0"]);
    assert_eq!(all[1].template.steps.len(), 3);
    assert!(all
        .iter()
        .all(|t| t.source.as_deref() == Some(valid("versions/multi_version.yml").as_path())));
}

#[test]
fn parse_str_without_a_file() {
    let yaml = fs::read_to_string(valid("diamond.yaml")).expect("fixture");
    let t = parse_str(&yaml, None, "development").expect("valid");
    assert_eq!(t.source, None);
    assert_eq!(t.template.steps.len(), 4);

    let err = parse_str("name: [", None, "development").expect_err("bad yaml");
    assert!(err.to_string().starts_with("invalid template: invalid YAML"), "{err}");
}

#[test]
fn misspelled_fields_are_warnings() {
    let yaml = r#"
name: typos
namespace_name: examples
version: 1.0.0
steps:
  - name: a
    handler: {callable: examples.A}
  - name: b
    handler: {callable: examples.B, methd: run}
    dependecies: [a]
    retry: {max_atempts: 5}
    owner: team-x
"#;
    let t = parse_str(yaml, Some(Path::new("typos.yaml")), "development").expect("loads");
    let text: Vec<String> = t.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 3, "{text:#?}");
    assert!(
        text[0].contains("typos.yaml") && text[0].contains("step 'b'"),
        "{text:#?}"
    );
    assert!(text
        .iter()
        .any(|w| w.contains("'dependecies'") && w.contains("'dependencies'")));
    assert!(text
        .iter()
        .any(|w| w.contains("field 'retry.max_atempts'") && w.contains("'max_attempts'")));
    assert!(text
        .iter()
        .any(|w| w.contains("field 'handler.methd'") && w.contains("'method'")));
    // Misspelled fields are not applied: `b` has no dependencies and the default attempts.
    let b = &t.template.steps[1];
    assert!(b.dependencies.is_empty());
    assert_eq!(b.retry.max_attempts, 3);
    assert_eq!(b.extra.get("owner"), Some(&json!("team-x")));
}

// ------------------------------------------------------------------------------------------
// Invalid templates: each error names the file, the step and the field or value at fault.

fn assert_names(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "expected {part:?} in:\n{text}");
    }
}

#[test]
fn malformed_yaml() {
    let path = invalid("malformed.yaml");
    let (problems, text) = load_err(&path);
    assert_eq!(problems.len(), 1, "{text}");
    assert_eq!(problems[0].file.as_deref(), Some(path.as_path()));
    assert_names(
        &text,
        &[
            &path.display().to_string(),
            "invalid YAML",
            "line 8",
            "initialization: {retries: [1, 2, 3}",
        ],
    );
}

#[test]
fn duplicate_step_names() {
    let path = invalid("duplicate_steps.yaml");
    let (problems, text) = load_err(&path);
    assert_eq!(problems.len(), 1, "{text}");
    let p = &problems[0];
    assert_eq!(p.file.as_deref(), Some(path.as_path()));
    assert_eq!(p.template.as_deref(), Some("invalid_examples/duplicate_steps@1.0.0"));
    assert_eq!(p.step.as_deref(), Some("fetch"));
    assert_eq!(p.field.as_deref(), Some("name"));
    assert_names(
        &text,
        &[
            "duplicate_steps.yaml",
            "step 'fetch'",
            "field 'name'",
            "duplicate step name 'fetch'",
        ],
    );
}

#[test]
fn unknown_dependency() {
    let path = invalid("unknown_dependency.yaml");
    let (problems, text) = load_err(&path);
    assert_eq!(problems.len(), 1, "{text}");
    assert_eq!(problems[0].step.as_deref(), Some("publish"));
    assert_eq!(problems[0].field.as_deref(), Some("dependencies"));
    assert_names(
        &text,
        &[
            "unknown_dependency.yaml",
            "step 'publish'",
            "field 'dependencies'",
            "depends on unknown step 'transfrom'",
        ],
    );
}

#[test]
fn dependency_cycle() {
    let path = invalid("cycle.yaml");
    let (problems, text) = load_err(&path);
    assert_eq!(problems.len(), 1, "{text}");
    assert_eq!(problems[0].step.as_deref(), Some("extract"));
    assert_names(
        &text,
        &[
            "cycle.yaml",
            "step 'extract'",
            "field 'dependencies'",
            "dependency cycle: extract -> transform -> load -> extract",
        ],
    );
}

#[test]
fn bad_semver() {
    let path = invalid("bad_semver.yaml");
    let (problems, text) = load_err(&path);
    assert_eq!(problems.len(), 1, "{text}");
    assert_eq!(problems[0].step, None);
    assert_eq!(problems[0].field.as_deref(), Some("version"));
    assert_names(
        &text,
        &[
            "bad_semver.yaml",
            "invalid_examples/bad_semver@v1.2",
            "field 'version'",
            "'v1.2'",
        ],
    );
}

#[test]
fn invalid_json_schema() {
    let path = invalid("invalid_schema.yaml");
    let (problems, text) = load_err(&path);
    assert_eq!(problems.len(), 1, "{text}");
    assert_eq!(problems[0].field.as_deref(), Some("input_schema"));
    assert_names(
        &text,
        &[
            "invalid_schema.yaml",
            "field 'input_schema'",
            "invalid JSON Schema",
            "/properties/order_id/type",
            "\"integr\"",
        ],
    );
}

#[test]
fn unknown_step_type() {
    let path = invalid("unknown_step_type.yaml");
    let (problems, text) = load_err(&path);
    assert_eq!(problems.len(), 1, "{text}");
    assert_eq!(problems[0].step.as_deref(), Some("fan_out"));
    assert_eq!(problems[0].field.as_deref(), Some("type"));
    assert_names(
        &text,
        &[
            "unknown_step_type.yaml",
            "step 'fan_out'",
            "field 'type'",
            "unknown step type `parallel_map`",
            "standard",
            "decision",
            "deferred_convergence",
            "batchable",
            "batch_worker",
        ],
    );
}

#[test]
fn max_attempts_out_of_range() {
    let path = invalid("max_attempts_101.yaml");
    let (problems, text) = load_err(&path);
    assert_eq!(problems.len(), 1, "{text}");
    assert_eq!(problems[0].step.as_deref(), Some("flaky_call"));
    assert_eq!(problems[0].field.as_deref(), Some("retry.max_attempts"));
    assert_names(
        &text,
        &[
            "max_attempts_101.yaml",
            "step 'flaky_call'",
            "field 'retry.max_attempts'",
            "101",
        ],
    );
}

#[test]
fn invalid_directory_reports_every_file() {
    let (problems, text) = load_err(&fixtures().join("invalid"));
    assert_eq!(problems.len(), 8, "{text}");
    assert!(text.starts_with("invalid template (8 problems):"), "{text}");
    for file in [
        "bad_semver.yaml",
        "cycle.yaml",
        "duplicate_steps.yaml",
        "invalid_schema.yaml",
        "malformed.yaml",
        "max_attempts_101.yaml",
        "unknown_dependency.yaml",
        "unknown_step_type.yaml",
    ] {
        assert!(
            problems
                .iter()
                .any(|p| p.file.as_deref() == Some(invalid(file).as_path())),
            "{file} not reported:\n{text}"
        );
    }
}

// ------------------------------------------------------------------------------------------
// Paths

#[test]
fn missing_path() {
    let path = fixtures().join("no_such_dir/none.yaml");
    let (problems, text) = load_err(&path);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].file.as_deref(), Some(path.as_path()));
    assert_names(&text, &["no_such_dir/none.yaml", "cannot read"]);
}

#[test]
fn empty_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("notes.txt"), "not yaml").expect("write");
    fs::create_dir(dir.path().join("sub")).expect("mkdir");
    let (problems, text) = load_err(dir.path());
    assert_eq!(problems.len(), 1);
    assert_names(&text, &["no templates found in", &dir.path().display().to_string()]);
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("empty.yaml");
    fs::write(&path, "# nothing yet\n").expect("write");
    let (_, text) = load_err(&path);
    assert_names(&text, &["empty.yaml", "no template found"]);
}

#[test]
fn same_template_in_two_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = fs::read_to_string(valid("diamond.yaml")).expect("fixture");
    fs::create_dir(dir.path().join("b")).expect("mkdir");
    fs::write(dir.path().join("a.yaml"), &yaml).expect("write");
    fs::write(dir.path().join("b/copy.yml"), &yaml).expect("write");
    let (problems, text) = load_err(dir.path());
    assert_eq!(problems.len(), 1, "{text}");
    assert_eq!(
        problems[0].file.as_deref(),
        Some(dir.path().join("b/copy.yml").as_path())
    );
    assert_names(
        &text,
        &[
            "diamond_workflow/diamond_pattern@1.0.0",
            "is defined in both",
            &dir.path().join("a.yaml").display().to_string(),
            &dir.path().join("b/copy.yml").display().to_string(),
        ],
    );

    // A new version of the same template is fine.
    fs::write(
        dir.path().join("b/copy.yml"),
        yaml.replace("version: 1.0.0", "version: 1.0.1"),
    )
    .expect("write");
    assert_eq!(load_path(dir.path(), "development").expect("valid").len(), 2);
}

#[test]
fn one_bad_file_fails_the_directory_with_all_problems() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::copy(valid("tree.yaml"), dir.path().join("tree.yaml")).expect("copy");
    fs::copy(invalid("cycle.yaml"), dir.path().join("cycle.yaml")).expect("copy");
    fs::write(
        dir.path().join("two_problems.yaml"),
        "name: two\nnamespace_name: Bad-Name\nversion: 1.0.0\nsteps:\n  - name: a\n    handler: {callable: ''}\n",
    )
    .expect("write");
    let (problems, text) = load_err(dir.path());
    assert_eq!(problems.len(), 3, "{text}");
    assert_names(
        &text,
        &[
            "cycle.yaml",
            "field 'namespace_name'",
            "step 'a': field 'handler.callable'",
        ],
    );
}
