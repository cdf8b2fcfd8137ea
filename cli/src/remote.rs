//! Remote mode: with `--api-url` (or `TASKER_API_URL`), the task, step, template, dlq and worker
//! commands talk to a Tasker REST API instead of the database, so an operator needs a token
//! (`--token` / `TASKER_AUTH_TOKEN`) or an API key (`--api-key` / `TASKER_API_KEY`), not
//! database credentials.
//!
//! The operator recorded for an action is the credential's subject: `--by` does not apply
//! remotely. Output is the API's JSON (pretty-printed) with `--json`, else a line per item.
//! A failure prints the API's `error: message` (with `--json`, its error body) and exits 1.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::progress;
use crate::recovery::{DlqCommand, StepCommand};
use crate::{TaskCommand, TemplateCommand, WorkerCommand, WorkerSubcommand};

/// How to reach the API.
pub struct Remote {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
    api_key: Option<String>,
}

enum Payload {
    Json(Value),
    Yaml(String),
}

/// A failed call: the API's error body, or why there was none.
struct Failed {
    body: Value,
}

impl Failed {
    fn local(code: &str, message: impl Into<String>) -> Self {
        Self {
            body: json!({ "error": code, "message": message.into(), "details": null }),
        }
    }

    fn report(&self, json_output: bool) -> ExitCode {
        if json_output {
            eprintln!("{}", self.body);
        } else {
            eprintln!(
                "error: {}",
                self.body["message"].as_str().unwrap_or("the API call failed")
            );
        }
        ExitCode::FAILURE
    }
}

type Outcome = Result<ExitCode, Failed>;

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

impl Remote {
    pub fn new(base: &str, token: Option<String>, api_key: Option<String>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("--api-url must start with http:// or https://, got '{base}'"));
        }
        Ok(Self {
            base,
            client,
            token,
            api_key,
        })
    }

    async fn call(&self, method: reqwest::Method, path: &str, payload: Option<Payload>) -> Result<Value, Failed> {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = &self.api_key {
            req = req.header("x-api-key", k);
        }
        req = match payload {
            Some(Payload::Json(v)) => req.json(&v),
            Some(Payload::Yaml(y)) => req.header("content-type", "application/yaml").body(y),
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|e| Failed::local("api_unreachable", format!("cannot reach {}: {e}", self.base)))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp
            .text()
            .await
            .map_err(|e| Failed::local("api_unreachable", format!("reading the answer: {e}")))?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(body);
        }
        let mut body = if body.get("error").is_some() {
            body
        } else {
            json!({ "error": "http_error", "message": format!("HTTP {status}"), "details": body })
        };
        if let Some(secs) = retry_after {
            if let Some(m) = body["message"].as_str().map(str::to_owned) {
                body["message"] = Value::String(format!("{m} (retry after {secs} s)"));
            }
        }
        Err(Failed { body })
    }

    async fn get(&self, path: &str) -> Result<Value, Failed> {
        self.call(reqwest::Method::GET, path, None).await
    }
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Template files under `path` (itself when a file), as `tasker template register` reads them.
fn template_files(path: &Path) -> Result<Vec<PathBuf>, Failed> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| Failed::local("invalid_argument", format!("{}: {e}", path.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<String, Failed> {
    std::fs::read_to_string(path).map_err(|e| Failed::local("invalid_argument", format!("{}: {e}", path.display())))
}

impl Remote {
    pub async fn template(&self, cmd: TemplateCommand) -> ExitCode {
        let r = match cmd {
            TemplateCommand::Validate { paths } => self.templates(&paths, "/v1/templates/validate").await,
            TemplateCommand::Register { paths } => self.templates(&paths, "/v1/templates").await,
            TemplateCommand::Diagram { .. } | TemplateCommand::Docs { .. } => Err(Failed::local(
                "unsupported",
                "diagrams and docs of registered templates need the database; run without --api-url \
                 (a template file works either way)",
            )),
            TemplateCommand::List { json: true } => self.get("/v1/templates").await.map(|list| {
                print_json(&list);
                ExitCode::SUCCESS
            }),
            TemplateCommand::List { json: false } => match self.get("/v1/templates").await {
                Ok(list) => {
                    for t in list.as_array().into_iter().flatten() {
                        println!("{}/{}@{}", s(t, "namespace"), s(t, "name"), s(t, "version"));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(e),
            },
        };
        r.unwrap_or_else(|e| e.report(false))
    }

    async fn templates(&self, paths: &[PathBuf], route: &str) -> Outcome {
        let validate = route.ends_with("validate");
        let mut ok = true;
        for path in paths {
            for file in template_files(path)? {
                let body = self
                    .call(reqwest::Method::POST, route, Some(Payload::Yaml(read(&file)?)))
                    .await;
                match body {
                    Ok(v) if validate && v["valid"] == false => {
                        ok = false;
                        for p in v["problems"].as_array().into_iter().flatten() {
                            eprintln!("error: {}: {}", file.display(), s(p, "message"));
                        }
                    }
                    Ok(v) if validate => println!("ok {} ({})", s(&v, "template"), file.display()),
                    Ok(v) => println!(
                        "registered {}/{}@{} (queues: {})",
                        s(&v, "namespace"),
                        s(&v, "name"),
                        s(&v, "version"),
                        v["queues"]
                            .as_array()
                            .map(|q| q.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                            .unwrap_or_default()
                    ),
                    Err(e) => {
                        ok = false;
                        eprintln!("error: {}: {}", file.display(), s(&e.body, "message"));
                    }
                }
            }
        }
        Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    }

    pub async fn task(&self, cmd: TaskCommand) -> ExitCode {
        let json_output = match &cmd {
            TaskCommand::Get { json, .. } | TaskCommand::List { json, .. } | TaskCommand::Diagram { json, .. } => *json,
            TaskCommand::Retry(a) | TaskCommand::Resolve(a) => a.op.json,
            TaskCommand::Create(_) | TaskCommand::Cancel { .. } | TaskCommand::Watch { .. } => false,
        };
        self.task_on(cmd).await.unwrap_or_else(|e| e.report(json_output))
    }

    async fn task_on(&self, cmd: TaskCommand) -> Outcome {
        match cmd {
            TaskCommand::Create(args) => {
                let context_text = match args.context.strip_prefix('@') {
                    Some(file) => read(Path::new(file))?,
                    None => args.context.clone(),
                };
                let context: Value = serde_json::from_str(&context_text)
                    .map_err(|e| Failed::local("invalid_argument", format!("--context is not valid JSON: {e}")))?;
                let body = json!({
                    "namespace": args.namespace, "name": args.name, "version": args.version,
                    "context": context, "initiator": args.initiator, "source_system": args.source_system,
                    "reason": args.reason, "tags": args.tags, "priority": args.priority,
                    "idempotency_key": args.idempotency_key,
                    "traceparent": args.traceparent,
                });
                let task = self.call(reqwest::Method::POST, "/v1/tasks", Some(Payload::Json(body))).await?;
                let id = s(&task, "task_uuid").to_owned();
                println!("{id}");
                if let Some(secs) = args.wait {
                    print_json(&self.wait(&id, Duration::from_secs(secs)).await?);
                }
            }
            TaskCommand::Get { task_uuid, .. } => {
                print_json(&self.get(&format!("/v1/tasks/{task_uuid}?include=steps,transitions")).await?);
            }
            TaskCommand::List {
                namespace,
                state,
                limit,
                json,
            } => {
                let q = query(&[
                    ("namespace", namespace),
                    ("state", state),
                    ("limit", Some(limit.clamp(1, 500).to_string())),
                ]);
                let page = self.get(&format!("/v1/tasks{q}")).await?;
                if json {
                    print_json(&page["tasks"]);
                } else {
                    for t in page["tasks"].as_array().into_iter().flatten() {
                        println!(
                            "{}  {:<20} {}/{}@{}  {}",
                            s(t, "task_uuid"),
                            s(t, "state"),
                            s(t, "namespace"),
                            s(t, "name"),
                            s(t, "version"),
                            s(t, "created_at")
                        );
                    }
                }
            }
            TaskCommand::Cancel { task_uuid } => {
                let t = self.call(reqwest::Method::DELETE, &format!("/v1/tasks/{task_uuid}"), None).await?;
                println!("{} {}", s(&t, "task_uuid"), s(&t, "state"));
            }
            TaskCommand::Retry(a) => {
                let t = self
                    .call(
                        reqwest::Method::POST,
                        &format!("/v1/tasks/{}/retry", a.task_uuid),
                        Some(Payload::Json(json!({ "reason": a.op.reason }))),
                    )
                    .await?;
                if a.op.json {
                    print_json(&t);
                } else {
                    println!("{} {}", s(&t, "task_uuid"), s(&t, "state"));
                }
            }
            TaskCommand::Diagram { task_uuid, json } => {
                let d = self.get(&format!("/v1/tasks/{task_uuid}/diagram")).await?;
                if json {
                    print_json(&json!({ "task_uuid": d["task_uuid"], "state": d["state"], "mermaid": d["mermaid"] }));
                } else {
                    print!("{}", s(&d, "mermaid"));
                }
            }
            TaskCommand::Watch { task_uuid, timeout } => {
                // Polls as `create --wait` does, with the same progress on stderr, then shows it.
                let limit = Duration::from_secs(timeout.unwrap_or(24 * 3600));
                let t = self.wait(&task_uuid.to_string(), limit).await?;
                print_json(&t);
                let succeeded = matches!(s(&t, "state"), "complete" | "resolved_manually");
                return Ok(if succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE });
            }
            TaskCommand::Resolve(_) => {
                return Err(Failed::local(
                    "unsupported",
                    "resolving a whole task has no REST route; resolve its steps (tasker step resolve) or run this without --api-url",
                ))
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// Polls the task until it is terminal (the API has no wait route), showing its progress on
    /// stderr as local mode does: the task with its steps is what the line is made of.
    async fn wait(&self, id: &str, timeout: Duration) -> Result<Value, Failed> {
        let deadline = Instant::now() + timeout;
        let mut reporter = progress::Reporter::new(std::io::stderr().is_terminal());
        loop {
            let t = match self.get(&format!("/v1/tasks/{id}?include=steps")).await {
                Ok(t) => t,
                Err(e) => {
                    reporter.clear();
                    return Err(e);
                }
            };
            let snapshot = progress::Snapshot::from_api(&t);
            if matches!(s(&t, "state"), "complete" | "error" | "cancelled" | "resolved_manually") {
                match &snapshot {
                    Some(snapshot) => reporter.finish(snapshot),
                    None => reporter.clear(),
                }
                return Ok(t);
            }
            if Instant::now() >= deadline {
                reporter.clear();
                return Err(Failed::local(
                    "timeout",
                    format!("task {id} did not finish within {timeout:?}"),
                ));
            }
            if let Some(snapshot) = &snapshot {
                reporter.update(snapshot);
            }
            tokio::time::sleep(progress::TICK.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    pub async fn step(&self, cmd: StepCommand) -> ExitCode {
        let json_output = cmd.json();
        let r: Outcome = async {
            let (task, step, action, reason, data, json) = match cmd {
                StepCommand::List { task_uuid, json } => {
                    let list = self.get(&format!("/v1/tasks/{task_uuid}/workflow_steps")).await?;
                    if json {
                        print_json(&list);
                    } else {
                        for st in list.as_array().into_iter().flatten() {
                            println!(
                                "{:<24} {:<26} attempts {}/{}",
                                s(st, "name"),
                                s(st, "state"),
                                st["attempts"],
                                st["max_attempts"]
                            );
                        }
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                StepCommand::Get { task_uuid, step, .. } => {
                    print_json(
                        &self
                            .get(&format!("/v1/tasks/{task_uuid}/workflow_steps/{}", encode(&step)))
                            .await?,
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                StepCommand::Reset(t) => (t.task_uuid, t.step, "reset_for_retry", t.op.reason, None, t.op.json),
                StepCommand::Resolve(t) => (t.task_uuid, t.step, "resolve_manually", t.op.reason, None, t.op.json),
                StepCommand::Cancel(t) => (t.task_uuid, t.step, "cancel", t.op.reason, None, t.op.json),
                StepCommand::Complete(c) => {
                    let data = c.result.or(c.result_file);
                    let t = c.target;
                    (t.task_uuid, t.step, "complete_manually", t.op.reason, data, t.op.json)
                }
            };
            let body = json!({ "action_type": action, "reason": reason, "completion_data": data });
            let st = self
                .call(
                    reqwest::Method::PATCH,
                    &format!("/v1/tasks/{task}/workflow_steps/{}", encode(&step)),
                    Some(Payload::Json(body)),
                )
                .await?;
            if json {
                print_json(&st);
            } else {
                println!("{} {}", s(&st, "name"), s(&st, "state"));
            }
            Ok(ExitCode::SUCCESS)
        }
        .await;
        r.unwrap_or_else(|e| e.report(json_output))
    }

    pub async fn dlq(&self, cmd: DlqCommand) -> ExitCode {
        let json_output = cmd.json();
        let r: Outcome = async {
            let (value, json) = match cmd {
                DlqCommand::List {
                    status,
                    open,
                    reason,
                    task_uuid,
                    limit,
                    offset,
                    json,
                } => {
                    let path = match task_uuid {
                        Some(t) => format!("/v1/dlq/task/{t}"),
                        None => format!(
                            "/v1/dlq{}",
                            query(&[
                                ("status", status.map(|s| s.as_str().to_owned())),
                                ("open_only", open.then(|| "true".to_owned())),
                                ("reason", reason.map(|r| r.as_str().to_owned())),
                                ("limit", Some(limit.to_string())),
                                ("offset", Some(offset.to_string())),
                            ])
                        ),
                    };
                    let list = self.get(&path).await?;
                    if !json {
                        for e in list.as_array().into_iter().flatten() {
                            println!(
                                "{}  task {}  {:<22} {}",
                                s(e, "entry_uuid"),
                                s(e, "task_uuid"),
                                s(e, "reason"),
                                s(e, "status")
                            );
                        }
                        return Ok(ExitCode::SUCCESS);
                    }
                    (list, json)
                }
                DlqCommand::Show { entry_uuid, json } => {
                    (self.get(&format!("/v1/dlq/entry/{entry_uuid}")).await?, json)
                }
                DlqCommand::Update {
                    entry_uuid,
                    status,
                    note,
                    json,
                    ..
                } => {
                    let body = json!({ "status": status.map(|s| s.as_str()), "note": note.unwrap_or_default() });
                    let e = self
                        .call(
                            reqwest::Method::PATCH,
                            &format!("/v1/dlq/entry/{entry_uuid}"),
                            Some(Payload::Json(body)),
                        )
                        .await?;
                    if !json {
                        println!("{} {}", s(&e, "entry_uuid"), s(&e, "status"));
                        return Ok(ExitCode::SUCCESS);
                    }
                    (e, json)
                }
                DlqCommand::Add { .. } => {
                    return Err(Failed::local(
                        "unsupported",
                        "adding a task to the DLQ by hand has no REST route; run this without --api-url",
                    ))
                }
                DlqCommand::Stats { json } => (self.get("/v1/dlq/stats").await?, json),
                DlqCommand::Queue { limit, json } => (
                    self.get(&format!("/v1/dlq/investigation-queue?limit={}", limit.clamp(1, 500)))
                        .await?,
                    json,
                ),
                DlqCommand::Staleness { min_ratio, limit, json } => (
                    self.get(&format!(
                        "/v1/dlq/staleness?min_ratio={min_ratio}&limit={}",
                        limit.clamp(1, 500)
                    ))
                    .await?,
                    json,
                ),
            };
            let _ = json;
            print_json(&value);
            Ok(ExitCode::SUCCESS)
        }
        .await;
        r.unwrap_or_else(|e| e.report(json_output))
    }

    pub async fn worker(&self, cmd: WorkerCommand) -> ExitCode {
        match cmd.command {
            Some(WorkerSubcommand::List { json }) => match self.get("/v1/workers").await {
                Ok(list) if json => {
                    print_json(&list);
                    ExitCode::SUCCESS
                }
                Ok(list) => {
                    for w in list.as_array().into_iter().flatten() {
                        println!(
                            "{:<30} {:<8} {:<5} queues {}  in flight {}",
                            s(w, "worker_id"),
                            s(w, "language"),
                            if w["live"] == true { "live" } else { "gone" },
                            w["queues"],
                            w["in_flight"]
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => e.report(json),
            },
            None => Failed::local(
                "unsupported",
                "a worker runs handlers against the database; run it without --api-url",
            )
            .report(false),
        }
    }
}
