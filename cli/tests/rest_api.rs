//! `tasker serve --http` as a process, the CLI's remote mode against it (`--api-url` with an API
//! key or a token), the loopback rule, and `tasker auth`'s key → token → validation round trip.
//! SQLite only: the API's own suite covers both backends.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn tasker_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tasker")
}

fn templates() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/templates")
        .display()
        .to_string()
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// Starts `tasker serve --http 127.0.0.1:0` and reads the bound address from its stderr.
    fn start(db: &str, api_config: &Path) -> Self {
        let mut child = Command::new(tasker_bin())
            .args(["--database-url", db, "serve", "--http", "127.0.0.1:0"])
            .env("TASKER_API_CONFIG", api_config)
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
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn remote(server: &Server, credential: (&str, &str), args: &[&str]) -> Output {
    Command::new(tasker_bin())
        .args(["--api-url", &server.url])
        .env(credential.0, credential.1)
        .env_remove("TASKER_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .args(args)
        .output()
        .expect("run tasker")
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn remote_mode_against_a_served_api() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("t.db").display());
    // Keys: an ES256 pair, and a token for the operator "carol".
    let keys = Command::new(tasker_bin())
        .args(["auth", "generate-keys", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(keys.status.success(), "{keys:?}");
    let config = dir.path().join("api.toml");
    std::fs::write(
        &config,
        format!(
            "[auth]\nenabled = true\n[[auth.api_keys]]\nsubject = \"ops\"\nkey = \"remote-key\"\npermissions = [\"*\"]\n\
             [auth.jwt]\nalgorithm = \"ES256\"\npublic_key_path = \"{}\"\naudience = \"tasker-api\"\n",
            dir.path().join("jwt-public.pem").display()
        ),
    )
    .unwrap();
    let token = Command::new(tasker_bin())
        .args([
            "auth",
            "generate-token",
            "--subject",
            "carol",
            "--permissions",
            "tasks:*,steps:*",
        ])
        .args(["--audience", "tasker-api", "--private-key"])
        .arg(dir.path().join("jwt-private.pem"))
        .output()
        .unwrap();
    assert!(token.status.success(), "{token:?}");
    let token = text(&token).trim().to_owned();
    let valid = Command::new(tasker_bin())
        .args(["auth", "validate-token", &token, "--api-config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(valid.status.success(), "{valid:?}");
    assert!(text(&valid).contains("subject carol"), "{}", text(&valid));

    let server = Server::start(&db, &config);
    let key = ("TASKER_API_KEY", "remote-key");
    let out = remote(&server, key, &["template", "register", &templates()]);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out).contains("registered data/etl_pipeline@1.0.0"));

    let bearer = ("TASKER_AUTH_TOKEN", token.as_str());
    let out = remote(
        &server,
        bearer,
        &[
            "task",
            "create",
            "--namespace",
            "data",
            "--name",
            "etl_pipeline",
            "--context",
            "{}",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let task = text(&out).trim().to_owned();
    let out = remote(&server, bearer, &["task", "list"]);
    assert!(text(&out).contains(&task), "{out:?}");
    let out = remote(
        &server,
        bearer,
        &[
            "step",
            "complete",
            &task,
            "extract",
            "--result",
            "{\"rows\": 3}",
            "--reason",
            "by hand",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out).trim(), "extract complete");
    let out = remote(&server, bearer, &["step", "get", &task, "extract", "--json"]);
    let step: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(step["results"], serde_json::json!({"rows": 3}));
    assert!(step["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["metadata"]["by"] == "carol"));
    // The token has no dlq permission: 403 names it, exit 1.
    let out = remote(&server, bearer, &["dlq", "stats"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("dlq:stats"), "{out:?}");
    // A bad key: 401, exit 1.
    let out = remote(&server, ("TASKER_API_KEY", "wrong"), &["task", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid API key"),
        "{out:?}"
    );
}

#[test]
fn serving_a_public_address_with_auth_off_needs_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("t.db").display());
    let out = Command::new(tasker_bin())
        .args(["--database-url", &db, "serve", "--http", "0.0.0.0:0"])
        .env_remove("TASKER_API_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));
    // A configuration that names an unknown permission stops it too.
    let config = dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[auth]\nenabled = true\n[[auth.api_keys]]\nsubject = \"x\"\nkey = \"k\"\npermissions = [\"tasks:fly\"]\n",
    )
    .unwrap();
    let out = Command::new(tasker_bin())
        .args(["--database-url", &db, "serve", "--http", "127.0.0.1:0", "--api-config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("tasks:fly"));
}

#[test]
fn show_permissions_expands_wildcards() {
    let out = Command::new(tasker_bin())
        .args(["auth", "show-permissions", "--permissions", "dlq:*"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out), "dlq:read\ndlq:update\ndlq:stats\n");
}
