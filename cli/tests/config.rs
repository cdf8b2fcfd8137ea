//! `tasker config init|validate|show`: a starter tree that validates, values shown with their
//! origin (file, environment variable, default), and mistakes named with file and key.

use std::process::Command;

use serde_json::Value;

fn tasker(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tasker"))
        .current_dir(dir)
        .args(args)
        .env_remove("TASKER_CONFIG_ROOT")
        .env_remove("TASKER_ENV")
        .env("TASKER_LOG", "error")
        .output()
        .expect("run tasker")
}

#[test]
fn init_validate_show_and_mistakes() {
    let dir = tempfile::tempdir().expect("tmp");
    let init = tasker(dir.path(), &["config", "init"]);
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let ok = tasker(dir.path(), &["config", "validate", "--env", "production"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(
        tasker(dir.path(), &["config", "init"]).status.code() == Some(1),
        "never overwrites"
    );

    std::fs::write(
        dir.path().join("config/tasker/base/worker.toml"),
        "[worker]\nconcurrency = 4\n",
    )
    .expect("write");
    let shown = Command::new(env!("CARGO_BIN_EXE_tasker"))
        .current_dir(dir.path())
        .args(["config", "show", "--json"])
        .env_remove("TASKER_CONFIG_ROOT")
        .env("TASKER_WORKER__LEASE_MS", "5000")
        .env("TASKER_DATABASE__URL", "postgres://u:secret@db/app")
        .output()
        .expect("show");
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(!text.contains("secret"), "secrets are redacted: {text}");
    let values: Vec<Value> = serde_json::from_str(&text).expect("json");
    let find = |k: &str| values.iter().find(|v| v["key"] == k).cloned().unwrap_or_default();
    assert_eq!(find("worker.concurrency")["value"], 4);
    assert_eq!(find("worker.concurrency")["origin"]["kind"], "file");
    assert_eq!(find("worker.lease_ms")["origin"]["var"], "TASKER_WORKER__LEASE_MS");
    assert_eq!(find("database.max_connections")["origin"]["kind"], "default");

    std::fs::write(
        dir.path().join("config/tasker/base/worker.toml"),
        "[worker]\nconcurency = 4\nlease_ms = 5\n",
    )
    .expect("write");
    let bad = tasker(dir.path(), &["config", "validate"]);
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("worker.toml: worker.concurency: unknown key (did you mean 'concurrency'?)"),
        "{err}"
    );
    assert!(
        err.contains("worker.lease_ms: 5 is out of range: allowed 1000 to"),
        "{err}"
    );
    // Any command that connects refuses a broken configuration, saying why.
    let task = tasker(dir.path(), &["task", "list"]);
    assert_ne!(task.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&task.stderr).contains("concurency"));
}

#[test]
fn json_logs_when_the_configuration_says_so() {
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}", dir.path().join("logs.db").display());
    let out = Command::new(env!("CARGO_BIN_EXE_tasker"))
        .current_dir(dir.path())
        .args(["--database-url", &url, "task", "list"])
        .env_remove("TASKER_CONFIG_ROOT")
        .env_remove("TASKER_LOG_FORMAT")
        .env("TASKER_LOG", "debug")
        .env("TASKER_LOGGING__FORMAT", "json")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "debug logs expected");
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
}
