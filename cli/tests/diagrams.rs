//! Golden Mermaid diagrams and Markdown docs of the template fixtures (`tests/fixtures/templates`),
//! and a task's diagram coloured by state.
//!
//! `UPDATE_GOLDEN=1 cargo test -p tasker-cli --test diagrams` rewrites `cli/tests/golden/` after
//! a deliberate change; review the diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tasker_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tasker")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tasker(args: &[&str]) -> Output {
    Command::new(tasker_bin()).args(args).output().expect("run tasker")
}

fn stdout_of(args: &[&str]) -> String {
    let o = tasker(args);
    assert!(
        o.status.success(),
        "tasker {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8")
}

/// Compares `actual` with the golden file `name`, or writes it with `UPDATE_GOLDEN=1`.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs (UPDATE_GOLDEN=1 rewrites it)",
        path.display()
    );
}

fn fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("tests/fixtures/templates"))
        .expect("fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    files
}

#[test]
fn template_diagrams_match_their_golden_files() {
    for file in fixtures() {
        let stem = file.file_stem().expect("stem").to_string_lossy().into_owned();
        let mermaid = stdout_of(&["template", "diagram", file.to_str().expect("utf-8")]);
        assert!(mermaid.starts_with("flowchart TD\n"), "{mermaid}");
        golden(&format!("{stem}.mmd"), &mermaid);
    }
}

#[test]
fn template_docs_match_their_golden_files() {
    for file in fixtures() {
        let stem = file.file_stem().expect("stem").to_string_lossy().into_owned();
        let docs = stdout_of(&["template", "docs", file.to_str().expect("utf-8")]);
        golden(&format!("{stem}.md"), &docs);
    }
}

#[test]
fn a_diagram_as_json_holds_the_same_mermaid() {
    let file = repo_root().join("tests/fixtures/templates/approval_batches_polyglot.yaml");
    let path = file.to_str().expect("utf-8");
    let text = stdout_of(&["template", "diagram", path]);
    let json: serde_json::Value =
        serde_json::from_str(&stdout_of(&["template", "diagram", path, "--json"])).expect("json");
    assert_eq!(json[0]["mermaid"], text.as_str());
}

#[test]
fn an_unknown_template_is_named_in_the_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}/t.db", tmp.path().display());
    let o = tasker(&["--database-url", &url, "template", "diagram", "nope/missing"]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("nope") && e.contains("missing"), "{e}");
    let o = tasker(&["template", "docs", "no-such-file.yaml"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("no-such-file.yaml") && e.contains("namespace/name"), "{e}");
}

#[test]
fn a_task_diagram_colours_each_step_by_state() {
    let tmp = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}/t.db", tmp.path().display());
    let template = tmp.path().join("chain.yaml");
    std::fs::write(
        &template,
        "name: chain\nnamespace_name: diagrams\nversion: 1.0.0\nsteps:\n\
         - {name: first, handler: {callable: noop}}\n\
         - {name: second, handler: {callable: noop}, dependencies: [first]}\n\
         - {name: \"third \\\"quoted\\\"\", handler: {callable: noop}, dependencies: [second]}\n",
    )
    .expect("write");
    stdout_of(&[
        "--database-url",
        &url,
        "template",
        "register",
        template.to_str().expect("utf-8"),
    ]);
    let created = stdout_of(&[
        "--database-url",
        &url,
        "task",
        "create",
        "--namespace",
        "diagrams",
        "--name",
        "chain",
    ]);
    let uuid = created.trim();
    let mermaid = stdout_of(&["--database-url", &url, "task", "diagram", uuid]);
    golden("task_chain_created.mmd", &mermaid);
    let json: serde_json::Value =
        serde_json::from_str(&stdout_of(&["--database-url", &url, "task", "diagram", uuid, "--json"])).expect("json");
    assert_eq!(json["mermaid"], mermaid.as_str());
    assert_eq!(json["task_uuid"], uuid);
}
