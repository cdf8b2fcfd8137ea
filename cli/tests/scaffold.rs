//! `tasker init` and `tasker generate`: what they refuse, what they write, and — per language —
//! that a generated project's tests pass as generated, with a handler of every step type added
//! by `tasker generate handler` and subscribers added by `tasker generate subscriber`.
//!
//! The per-language tests need the packages of this checkout built (`scripts/build-packages.sh`)
//! and download test tools (pytest, npm's tsx/typescript), so they run when
//! `TASKER_SCAFFOLD_PROJECTS=1` (`scripts/first-hour.sh` sets it) and are skipped otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tasker_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tasker")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo root")
}

fn tasker(dir: &Path, args: &[&str]) -> Output {
    Command::new(tasker_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("TASKER_SOURCE")
        .output()
        .expect("run tasker")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = tasker(dir, args);
    assert!(o.status.success(), "tasker {args:?} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(dir: &Path, args: &[&str]) -> String {
    let o = tasker(dir, args);
    assert!(!o.status.success(), "tasker {args:?} should have failed: {}", text(&o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).expect("under base").display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn init_refuses_a_non_empty_dir_a_bad_name_and_an_unknown_language() {
    let tmp = tempfile::tempdir().expect("tmp");
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).expect("mkdir");
    std::fs::write(busy.join("notes.txt"), "mine").expect("write");
    let e = fails(tmp.path(), &["init", "busy", "--language", "python"]);
    assert!(e.contains("busy is not empty (notes.txt)"), "{e}");
    assert_eq!(tree(&busy), ["notes.txt"], "nothing written");

    let e = fails(tmp.path(), &["init", "My App", "--language", "ruby"]);
    assert!(e.contains("project name 'My App'") && e.contains("--name"), "{e}");

    let o = tasker(tmp.path(), &["init", "x", "--language", "cobol"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("cobol") && e.contains("python, ruby, typescript, rust"),
        "{e}"
    );

    let e = fails(
        tmp.path(),
        &[
            "init",
            "y",
            "--language",
            "rust",
            "--tasker-source",
            tmp.path().to_str().expect("utf-8"),
        ],
    );
    assert!(e.contains("is not a Tasker checkout"), "{e}");
}

#[test]
fn generate_refuses_bad_names_and_never_overwrites() {
    let tmp = tempfile::tempdir().expect("tmp");
    let e = fails(
        tmp.path(),
        &["generate", "handler", "Payments::Charge", "--language", "ruby"],
    );
    assert!(e.contains("did you mean 'payments/charge'?"), "{e}");
    let e = fails(tmp.path(), &["generate", "handler", "class", "--language", "python"]);
    assert!(e.contains("keyword"), "{e}");

    ok(
        tmp.path(),
        &["generate", "handler", "billing/charge", "--language", "python"],
    );
    let before = tree(tmp.path());
    assert_eq!(
        before,
        [
            "handlers/__init__.py",
            "handlers/billing/__init__.py",
            "handlers/billing/charge.py",
            "tests/test_billing_charge.py"
        ]
    );
    std::fs::write(tmp.path().join("handlers/billing/charge.py"), "# mine\n").expect("write");
    let e = fails(
        tmp.path(),
        &[
            "generate",
            "handler",
            "billing/charge",
            "--language",
            "python",
            "--type",
            "decision",
        ],
    );
    assert!(
        e.contains("refusing to overwrite") && e.contains("handlers/billing/charge.py"),
        "{e}"
    );
    assert_eq!(tree(tmp.path()), before);
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("handlers/billing/charge.py")).expect("read"),
        "# mine\n"
    );
}

#[test]
fn generate_subscriber_checks_its_name_and_events_and_never_overwrites() {
    let tmp = tempfile::tempdir().expect("tmp");
    let e = fails(
        tmp.path(),
        &["generate", "subscriber", "Billing::Audit", "--language", "ruby"],
    );
    assert!(
        e.contains("subscriber name 'Billing::Audit'") && e.contains("did you mean 'billing/audit'?"),
        "{e}"
    );
    let e = fails(
        tmp.path(),
        &[
            "generate",
            "subscriber",
            "audit",
            "--language",
            "python",
            "--events",
            "Task Completed",
        ],
    );
    assert!(e.contains("--events: 'Task Completed' has 'T'"), "{e}");
    let e = fails(
        tmp.path(),
        &[
            "generate",
            "subscriber",
            "audit",
            "--language",
            "python",
            "--events",
            "task.compleated",
        ],
    );
    assert!(
        e.contains("'task.compleated' is not an event of the catalog") && e.contains("task.completed"),
        "{e}"
    );
    let e = fails(
        tmp.path(),
        &[
            "generate",
            "subscriber",
            "audit",
            "--language",
            "python",
            "--events",
            ",",
        ],
    );
    assert!(e.contains("--events names no event"), "{e}");
    assert!(tree(tmp.path()).is_empty(), "nothing written");

    let out = ok(
        tmp.path(),
        &[
            "generate",
            "subscriber",
            "billing/audit",
            "--language",
            "python",
            "--events",
            "task.completed,step.failed,payment.*",
        ],
    );
    assert!(
        out.contains("subscriber AuditSubscriber (group \"billing/audit_subscriber\")")
            && out.contains("SubscriberRunner(client, AuditSubscriber)"),
        "{out}"
    );
    let before = tree(tmp.path());
    assert_eq!(
        before,
        [
            "subscribers/__init__.py",
            "subscribers/billing/__init__.py",
            "subscribers/billing/audit.py",
            "tests/test_billing_audit_subscriber.py"
        ]
    );
    let source = std::fs::read_to_string(tmp.path().join("subscribers/billing/audit.py")).expect("read");
    assert!(
        source.contains("class AuditSubscriber(Subscriber):")
            && source.contains("subscribe_to = [\"task.completed\", \"step.failed\", \"payment.*\"]")
            && source.contains("def handle_task_completed(self, event: Event)")
            && source.contains("def handle(self, event: Event)"),
        "{source}"
    );
    std::fs::write(tmp.path().join("tests/test_billing_audit_subscriber.py"), "# mine\n").expect("write");
    let e = fails(
        tmp.path(),
        &["generate", "subscriber", "billing/audit", "--language", "python"],
    );
    assert!(
        e.contains("refusing to overwrite") && e.contains("tests/test_billing_audit_subscriber.py"),
        "{e}"
    );
    assert_eq!(tree(tmp.path()), before);

    // Rust: a project made by `tasker init` lists the subscriber where its worker starts them.
    let project = tmp.path().join("shop");
    ok(tmp.path(), &["init", "shop", "--language", "rust"]);
    let main = std::fs::read_to_string(project.join("src/main.rs")).expect("main");
    assert!(
        main.contains("mod subscribers;") && main.contains("subscribers::all()"),
        "{main}"
    );
    let out = ok(
        &project,
        &[
            "generate",
            "subscriber",
            "audit",
            "--language",
            "rust",
            "--events",
            "task.completed",
        ],
    );
    assert!(out.contains("updated ./src/subscribers/mod.rs"), "{out}");
    let registry = std::fs::read_to_string(project.join("src/subscribers/mod.rs")).expect("mod.rs");
    assert!(
        registry.contains("pub mod audit;\n// tasker:modules")
            && registry.contains("        Box::new(audit::AuditSubscriber),\n        // tasker:subscribers"),
        "{registry}"
    );
}

#[test]
fn init_writes_the_same_handler_as_generate() {
    let tmp = tempfile::tempdir().expect("tmp");
    for lang in ["python", "ruby", "typescript", "rust"] {
        let project = tmp.path().join(format!("p_{lang}"));
        ok(
            tmp.path(),
            &["init", project.to_str().expect("utf-8"), "--language", lang],
        );
        let files = tree(&project);
        for expected in [
            "README.md",
            "config/tasker/base/common.toml",
            "templates/greeting.yaml",
            ".gitignore",
        ] {
            assert!(
                files.iter().any(|f| f == expected),
                "{lang}: no {expected} in {files:?}"
            );
        }
        let readme = std::fs::read_to_string(project.join("README.md")).expect("readme");
        assert!(readme.contains("tasker task create --namespace p_"), "{lang}: {readme}");
        // The configuration is valid, and the template too.
        ok(&project, &["config", "validate"]);
        ok(&project, &["template", "validate", "templates"]);

        let alone = tmp.path().join(format!("g_{lang}"));
        std::fs::create_dir(&alone).expect("mkdir");
        ok(&alone, &["generate", "handler", "say_hello", "--language", lang]);
        for file in tree(&alone) {
            if file.ends_with("__init__.py") {
                continue;
            }
            assert_eq!(
                std::fs::read_to_string(alone.join(&file)).expect("generated"),
                std::fs::read_to_string(project.join(&file)).expect("in the project"),
                "{lang}: {file} differs between init and generate"
            );
        }
    }
}

#[test]
fn generate_template_takes_the_namespace_of_the_templates_beside_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let project = tmp.path().join("shop");
    ok(tmp.path(), &["init", "shop", "--language", "ruby"]);
    let out = ok(
        &project,
        &[
            "generate",
            "template",
            "refund",
            "--language",
            "ruby",
            "--step",
            "check_refund",
        ],
    );
    assert!(out.contains("templates/refund.yaml"), "{out}");
    let yaml = std::fs::read_to_string(project.join("templates/refund.yaml")).expect("template");
    assert!(
        yaml.contains("namespace_name: shop") && yaml.contains("callable: CheckRefundHandler"),
        "{yaml}"
    );
    ok(&project, &["template", "validate", "templates/refund.yaml"]);

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let e = fails(&empty, &["generate", "template", "refund"]);
    assert!(e.contains("--namespace"), "{e}");
}

/// `TASKER_SCAFFOLD_PROJECTS=1`: the per-language project tests run.
fn projects_enabled(lang: &str) -> bool {
    let on = std::env::var("TASKER_SCAFFOLD_PROJECTS").is_ok_and(|v| v == "1");
    if !on {
        eprintln!("skipped: the {lang} project test runs with TASKER_SCAFFOLD_PROJECTS=1 (scripts/first-hour.sh)");
    }
    on
}

/// Runs `program args` in `dir`, asserting success; returns stdout and stderr.
fn sh(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let o = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let t = text(&o);
    assert!(
        o.status.success(),
        "{program} {args:?} in {} failed: {t}",
        dir.display()
    );
    t
}

/// The subscribers each project test adds: events named and by pattern (4 tests), named only
/// (3), every event (2).
const SUBSCRIBERS: &[(&str, &str)] = &[
    ("billing/audit", "task.completed,step.failed,payment.*"),
    ("notify", "task.failed,task.completed"),
    ("watch_all", "*"),
];

/// The tests of a project made by [`project_with_every_handler_type`]: the greeting's 2, the
/// handlers' 8, the subscribers' 9.
const PROJECT_TESTS: usize = 19;

/// A fresh project in `lang` with one handler of each step type and the [`SUBSCRIBERS`], added
/// by `tasker generate`.
fn project_with_every_handler_type(tmp: &Path, lang: &str) -> PathBuf {
    let project = tmp.join(format!("first_{lang}"));
    ok(tmp, &["init", project.to_str().expect("utf-8"), "--language", lang]);
    for (name, kind) in [
        ("billing/charge_card", "standard"),
        ("route_order", "decision"),
        ("imports/split_rows", "batchable"),
        ("imports/process_batch", "batch_worker"),
    ] {
        ok(
            &project,
            &["generate", "handler", name, "--language", lang, "--type", kind],
        );
    }
    for (name, events) in SUBSCRIBERS {
        ok(
            &project,
            &["generate", "subscriber", name, "--language", lang, "--events", events],
        );
    }
    project
}

#[test]
fn a_python_project_passes_its_tests_as_generated() {
    if !projects_enabled("python") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let project = project_with_every_handler_type(tmp.path(), "python");
    sh(&project, "bin/setup", &[], &[]);
    let out = sh(&project, ".venv/bin/python", &["-m", "pytest", "-q"], &[]);
    assert!(out.contains(&format!("{PROJECT_TESTS} passed")), "{out}");
    sh(
        &project,
        ".venv/bin/python",
        &["-m", "pip", "install", "-q", "ruff"],
        &[],
    );
    sh(&project, ".venv/bin/python", &["-m", "ruff", "check", "."], &[]);
}

#[test]
fn a_ruby_project_passes_its_specs_as_generated() {
    if !projects_enabled("ruby") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let project = project_with_every_handler_type(tmp.path(), "ruby");
    sh(&project, "bin/setup", &[], &[]);
    let out = sh(&project, "rspec", &[], &[]);
    assert!(out.contains(&format!("{PROJECT_TESTS} examples, 0 failures")), "{out}");
    if Command::new("rubocop")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        sh(&project, "rubocop", &["--format", "simple"], &[]);
    } else {
        eprintln!("rubocop not installed: the generated Ruby was not linted");
    }
}

#[test]
fn a_typescript_project_passes_its_tests_and_tsc_strict_as_generated() {
    if !projects_enabled("typescript") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let project = project_with_every_handler_type(tmp.path(), "typescript");
    sh(&project, "bin/setup", &[], &[]);
    let out = sh(&project, "npm", &["test"], &[]);
    assert!(
        out.contains(&format!("# pass {PROJECT_TESTS}")) && out.contains("# fail 0"),
        "{out}"
    );
    sh(&project, "npm", &["run", "typecheck"], &[]);
}

#[test]
fn a_rust_project_passes_its_tests_as_generated() {
    if !projects_enabled("rust") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let project = project_with_every_handler_type(tmp.path(), "rust");
    // The checkout's own target directory: the dependencies built for it are reused where
    // their features agree.
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    let env = [("CARGO_TARGET_DIR", target.to_str().expect("utf-8"))];
    let out = sh(&project, "cargo", &["test", "-q"], &env);
    assert!(out.contains(&format!("{PROJECT_TESTS} passed")), "{out}");
    sh(
        &project,
        "cargo",
        &["clippy", "-q", "--all-targets", "--", "-D", "warnings"],
        &env,
    );
}
