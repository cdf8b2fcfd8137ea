//! Live progress of `tasker task create --wait` and `tasker task watch`: plain lines when stderr
//! is not a terminal, a line redrawn in place on a pseudo-terminal (`script`); in local mode and
//! in remote mode (`--api-url`, against `tasker serve --http`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn tasker_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tasker")
}

/// A `tasker worker` with the built-in handlers, killed when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A database with a three-step chain whose steps sleep `ms` each, and a worker serving it.
fn setup(dir: &Path, ms: u64) -> (String, Worker) {
    let url = format!("sqlite://{}/t.db", dir.display());
    let template = dir.join("slow.yaml");
    std::fs::write(
        &template,
        format!(
            "name: slow\nnamespace_name: progress\nversion: 1.0.0\nsteps:\n\
             - {{name: fetch, handler: {{callable: sleep, initialization: {{ms: {ms}}}}}}}\n\
             - {{name: transform, handler: {{callable: sleep, initialization: {{ms: {ms}}}}}, dependencies: [fetch]}}\n\
             - {{name: store, handler: {{callable: sleep, initialization: {{ms: {ms}}}}}, dependencies: [transform]}}\n"
        ),
    )
    .expect("write template");
    let o = Command::new(tasker_bin())
        .args([
            "--database-url",
            &url,
            "template",
            "register",
            template.to_str().expect("utf-8"),
        ])
        .output()
        .expect("register");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let worker = Command::new(tasker_bin())
        .args(["--database-url", &url, "worker", "--queue", "progress"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker");
    (url, Worker(worker))
}

#[test]
fn create_wait_prints_plain_progress_lines_when_not_on_a_terminal() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (url, _worker) = setup(tmp.path(), 1500);
    let o = Command::new(tasker_bin())
        .args([
            "--database-url",
            &url,
            "task",
            "create",
            "--namespace",
            "progress",
            "--name",
            "slow",
            "--wait",
            "60",
        ])
        .output()
        .expect("create");
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stderr}");
    // stdout: the uuid, then the task, as before; progress goes to stderr only.
    assert!(
        uuid::Uuid::parse_str(stdout.lines().next().unwrap_or_default().trim()).is_ok(),
        "{stdout}"
    );
    assert!(!stdout.contains("steps done"), "{stdout}");
    assert!(
        !stderr.contains('\r') && !stderr.contains("\x1b["),
        "no terminal control codes: {stderr:?}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("steps done")).collect();
    // A line per change at least: the first step running, then the second, the third, done.
    assert!(lines.len() >= 3, "{stderr}");
    assert!(lines.iter().any(|l| l.contains("running: transform")), "{stderr}");
    let last = lines.last().copied().unwrap_or_default();
    assert!(last.starts_with("progress/slow complete: 3/3 steps done"), "{last}");
}

#[test]
fn a_quiet_wait_still_prints_a_line_every_few_seconds() {
    let tmp = tempfile::tempdir().expect("tmp");
    // One long step: nothing changes for 12 s.
    let (url, _worker) = setup(tmp.path(), 12_000);
    let o = Command::new(tasker_bin())
        .args([
            "--database-url",
            &url,
            "task",
            "create",
            "--namespace",
            "progress",
            "--name",
            "slow",
            "--wait",
            "2",
        ])
        .output()
        .expect("create");
    // The limit passes first: a timeout, after at least one line.
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("running: fetch"), "{stderr}");
    assert!(stderr.contains("timeout") || stderr.contains("timed out"), "{stderr}");

    let uuid = Command::new(tasker_bin())
        .args(["--database-url", &url, "task", "list", "--json", "--limit", "1"])
        .output()
        .expect("list");
    let list: serde_json::Value = serde_json::from_slice(&uuid.stdout).expect("json");
    let id = list[0]["task_uuid"].as_str().expect("uuid").to_owned();
    let start = std::time::Instant::now();
    let o = Command::new(tasker_bin())
        .args(["--database-url", &url, "task", "watch", &id, "--timeout", "11"])
        .output()
        .expect("watch");
    let stderr = String::from_utf8_lossy(&o.stderr);
    let waited = start.elapsed();
    let lines = stderr.lines().filter(|l| l.contains("running: fetch")).count();
    // Nothing changed, yet a line came at least every 5 s.
    let expected = (waited.as_secs() / 5).max(1) as usize;
    assert!(lines >= expected, "{lines} lines in {waited:?}: {stderr}");
}

#[test]
fn watch_redraws_one_line_on_a_pseudo_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (url, _worker) = setup(tmp.path(), 1200);
    let created = Command::new(tasker_bin())
        .args([
            "--database-url",
            &url,
            "task",
            "create",
            "--namespace",
            "progress",
            "--name",
            "slow",
        ])
        .output()
        .expect("create");
    let id = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let command = format!("{} --database-url {url} task watch {id} --timeout 60", tasker_bin());
    let typescript = tmp.path().join("typescript");
    let o = Command::new("script")
        .args(["-q", "-e", "-c", &command, typescript.to_str().expect("utf-8")])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    // Redrawn in place: carriage return and erase-line before each frame, spinner included.
    assert!(out.matches("\r\x1b[2K").count() >= 3, "{out:?}");
    assert!(out.contains("running: transform"), "{out:?}");
    assert!(out.contains("progress/slow complete: 3/3 steps done"), "{out:?}");
    std::thread::sleep(Duration::from_millis(10));
}

/// `tasker serve --http 127.0.0.1:0` on `url` (no auth: loopback), stopped when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(db: &str) -> Self {
        let mut child = Command::new(tasker_bin())
            .args(["--database-url", db, "serve", "--http", "127.0.0.1:0"])
            .env_remove("TASKER_API_CONFIG")
            .env_remove("TASKER_API_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tasker serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let url = loop {
            let line = lines.next().expect("serve exited early").expect("read stderr");
            if let Some(rest) = line.split("REST API on ").nth(1) {
                break rest.split_whitespace().next().expect("address").to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tasker --api-url … args` with no database in its environment: everything goes through the API.
fn remote(server: &Server) -> Command {
    let mut c = Command::new(tasker_bin());
    c.args(["--api-url", &server.url])
        .env_remove("TASKER_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("TASKER_AUTH_TOKEN")
        .env_remove("TASKER_API_KEY");
    c
}

#[test]
fn remote_create_wait_prints_the_same_progress_lines() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (url, _worker) = setup(tmp.path(), 1500);
    let server = Server::start(&url);
    let o = remote(&server)
        .args([
            "task",
            "create",
            "--namespace",
            "progress",
            "--name",
            "slow",
            "--wait",
            "60",
        ])
        .output()
        .expect("create");
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stderr}");
    // stdout: the uuid, then the task as the API gives it; progress goes to stderr only.
    assert!(
        uuid::Uuid::parse_str(stdout.lines().next().unwrap_or_default().trim()).is_ok(),
        "{stdout}"
    );
    assert!(!stdout.contains("steps done"), "{stdout}");
    assert!(
        !stderr.contains('\r') && !stderr.contains("\x1b["),
        "no terminal control codes: {stderr:?}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("steps done")).collect();
    assert!(lines.len() >= 3, "{stderr}");
    assert!(lines.iter().any(|l| l.contains("running: transform")), "{stderr}");
    let last = lines.last().copied().unwrap_or_default();
    assert!(last.starts_with("progress/slow complete: 3/3 steps done"), "{last}");
}

#[test]
fn remote_watch_redraws_one_line_on_a_pseudo_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (url, _worker) = setup(tmp.path(), 1200);
    let server = Server::start(&url);
    let created = remote(&server)
        .args(["task", "create", "--namespace", "progress", "--name", "slow"])
        .output()
        .expect("create");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let id = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    // `script` runs the command through a shell: its environment is this test's, minus the
    // database (unset below), so only the API can answer.
    let command = format!(
        "unset TASKER_DATABASE_URL DATABASE_URL; {} --api-url {} task watch {id} --timeout 60",
        tasker_bin(),
        server.url
    );
    let typescript = tmp.path().join("typescript");
    let o = Command::new("script")
        .args(["-q", "-e", "-c", &command, typescript.to_str().expect("utf-8")])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(out.matches("\r\x1b[2K").count() >= 3, "{out:?}");
    assert!(out.contains("running: transform"), "{out:?}");
    assert!(out.contains("progress/slow complete: 3/3 steps done"), "{out:?}");
}
