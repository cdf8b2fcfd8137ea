//! Every route's success path and its error paths, over TCP against a bound server, on SQLite
//! and PostgreSQL: idempotent create, cursor pagination while tasks are being created, operator
//! actions, the DLQ, body limits, and the error format.

mod common;

use std::collections::HashSet;

use common::{fixture_text, send, Db, TestServer};
use serde_json::{json, Value};
use tasker_server::ServerConfig;

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"], code, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert!(body.get("details").is_some(), "{body}");
}

async fn templates(kind: Db) {
    let s = TestServer::start(kind, ServerConfig::default()).await;
    let c = &s.client;
    let yaml = fixture_text("orders.yaml");

    // Validate: nothing stored.
    let (st, _, body) = send(c.post(s.url("/v1/templates/validate")).body(yaml.clone())).await;
    assert_eq!(st, 200);
    assert_eq!(body["valid"], true, "{body}");
    assert_eq!(body["template"], "shop/checkout@1.0.0");
    let (_, _, list) = send(c.get(s.url("/v1/templates"))).await;
    assert_eq!(list, json!([]));

    let broken = "name: x\nnamespace_name: y\nversion: 1.0.0\nsteps:\n  - name: a\n    depends_on: [a]\n    handler: {callable: a}\n";
    let (st, _, body) = send(c.post(s.url("/v1/templates/validate")).body(broken)).await;
    assert_eq!(st, 200);
    assert_eq!(body["valid"], false);
    assert!(!body["problems"].as_array().unwrap().is_empty(), "{body}");

    // Register (YAML), idempotently; JSON works too.
    let (st, _, body) = send(
        c.post(s.url("/v1/templates"))
            .header("content-type", "application/yaml")
            .body(yaml.clone()),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(body["queues"], json!(["shop"]));
    let (st, _, _) = send(c.post(s.url("/v1/templates")).body(yaml.clone())).await;
    assert_eq!(st, 201);
    let changed = yaml.replace("Charge and ship an order", "changed");
    let (st, _, body) = send(c.post(s.url("/v1/templates")).body(changed)).await;
    assert_eq!(st, 409);
    assert_error(&body, "template_conflict");
    let (st, _, body) = send(c.post(s.url("/v1/templates")).body(broken)).await;
    assert_eq!(st, 422);
    assert_error(&body, "template_invalid");
    assert!(body["details"]["problems"].is_array());
    let as_json = json!({"name": "j", "namespace_name": "shop", "version": "0.1.0",
        "steps": [{"name": "only", "handler": {"callable": "x"}}]});
    let (st, _, _) = send(c.post(s.url("/v1/templates")).json(&as_json)).await;
    assert_eq!(st, 201);

    // Read back.
    let (st, _, list) = send(c.get(s.url("/v1/templates"))).await;
    assert_eq!(st, 200);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (st, _, t) = send(c.get(s.url("/v1/templates/shop/checkout"))).await;
    assert_eq!(st, 200);
    assert_eq!(t["version"], "1.0.0");
    assert_eq!(t["definition"]["steps"].as_array().unwrap().len(), 3);
    let (st, _, _) = send(c.get(s.url("/v1/templates/shop/checkout/1.0.0"))).await;
    assert_eq!(st, 200);
    let (st, _, body) = send(c.get(s.url("/v1/templates/shop/checkout/9.9.9"))).await;
    assert_eq!(st, 404);
    assert_error(&body, "template_not_found");
    let (st, _, _) = send(c.get(s.url("/v1/templates/nope/nothing"))).await;
    assert_eq!(st, 404);
    s.stop().await;
}

async fn tasks(kind: Db) {
    let s = TestServer::start(kind, ServerConfig::default()).await;
    s.register_fixture().await;
    let c = &s.client;
    let body = json!({"namespace": "shop", "name": "checkout", "context": {"order_id": 7},
        "initiator": "api-test", "tags": ["vip"], "priority": 3, "idempotency_key": "order-7"});

    // Idempotent create: 201, then 200 with the same task.
    let (st, _, first) = send(c.post(s.url("/v1/tasks")).json(&body)).await;
    assert_eq!(st, 201, "{first}");
    assert_eq!(first["state"], "steps_in_process");
    assert_eq!(first["context"], json!({"order_id": 7}));
    let (st, _, again) = send(c.post(s.url("/v1/tasks")).json(&body)).await;
    assert_eq!(st, 200);
    assert_eq!(again["task_uuid"], first["task_uuid"]);
    let uuid = first["task_uuid"].as_str().unwrap().to_owned();

    // Creation errors.
    let (st, _, e) = send(
        c.post(s.url("/v1/tasks"))
            .json(&json!({"namespace": "shop", "name": "checkout", "context": {"order_id": "x"}})),
    )
    .await;
    assert_eq!(st, 422);
    assert_error(&e, "validation_failed");
    let (st, _, e) = send(
        c.post(s.url("/v1/tasks"))
            .json(&json!({"namespace": "shop", "name": "nope"})),
    )
    .await;
    assert_eq!(st, 404);
    assert_error(&e, "template_not_found");
    let (st, _, e) = send(
        c.post(s.url("/v1/tasks"))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(st, 400);
    assert_error(&e, "invalid_argument");
    let (st, _, e) = send(c.post(s.url("/v1/tasks")).json(&json!({"name": "checkout"}))).await;
    assert_eq!(st, 400);
    assert_error(&e, "invalid_body");
    let (st, _, e) = send(c.post(s.url("/v1/tasks")).body("{}")).await;
    assert_eq!(st, 415, "{e}");
    // 2 MiB body over the 1 MiB default.
    let big = json!({"namespace": "shop", "name": "checkout", "context": {"order_id": 1, "pad": "x".repeat(2 << 20)}});
    // A client of its own: the server answers before reading the body and closes that
    // connection, which a pooled client could otherwise try to reuse.
    let (st, _, e) = send(reqwest::Client::new().post(s.url("/v1/tasks")).json(&big)).await;
    assert_eq!(st, 413);
    assert_error(&e, "payload_too_large");

    // Get, with steps and transitions on request.
    let (st, _, t) = send(c.get(s.url(&format!("/v1/tasks/{uuid}")))).await;
    assert_eq!(st, 200);
    assert!(t.get("steps").is_none());
    let (st, _, t) = send(c.get(s.url(&format!("/v1/tasks/{uuid}?include=steps,transitions")))).await;
    assert_eq!(st, 200);
    assert_eq!(t["steps"].as_array().unwrap().len(), 3);
    assert!(!t["transitions"].as_array().unwrap().is_empty());
    let (st, _, e) = send(c.get(s.url(&format!("/v1/tasks/{uuid}?include=everything")))).await;
    assert_eq!(st, 400);
    assert_error(&e, "invalid_argument");
    let (st, _, e) = send(c.get(s.url("/v1/tasks/not-a-uuid"))).await;
    assert_eq!(st, 400);
    assert_error(&e, "invalid_argument");
    let missing = uuid::Uuid::now_v7();
    let (st, _, e) = send(c.get(s.url(&format!("/v1/tasks/{missing}")))).await;
    assert_eq!(st, 404);
    assert_error(&e, "task_not_found");

    // Diagram: JSON graph and Mermaid.
    let (st, _, d) = send(c.get(s.url(&format!("/v1/tasks/{uuid}/diagram")))).await;
    assert_eq!(st, 200);
    assert_eq!(d["nodes"].as_array().unwrap().len(), 3);
    assert_eq!(
        d["edges"],
        json!([{"from": "s0", "to": "s1"}, {"from": "s1", "to": "s2"}])
    );
    let resp = c
        .get(s.url(&format!("/v1/tasks/{uuid}/diagram?format=mermaid")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("flowchart TD") && text.contains("s0 --> s1"), "{text}");
    let (st, _, _) = send(c.get(s.url(&format!("/v1/tasks/{uuid}/diagram?format=png")))).await;
    assert_eq!(st, 400);
    let (st, _, _) = send(c.get(s.url(&format!("/v1/tasks/{missing}/diagram")))).await;
    assert_eq!(st, 404);

    // Filters.
    let (st, _, page) = send(c.get(s.url("/v1/tasks?namespace=shop&state=steps_in_process&tag=vip"))).await;
    assert_eq!(st, 200);
    assert_eq!(page["tasks"].as_array().unwrap().len(), 1);
    assert!(page["next_cursor"].is_null());
    let (_, _, page) = send(c.get(s.url("/v1/tasks?tag=other"))).await;
    assert_eq!(page["tasks"], json!([]));
    let (_, _, page) = send(c.get(s.url("/v1/tasks?created_after=2100-01-01T00:00:00Z"))).await;
    assert_eq!(page["tasks"], json!([]));
    let (_, _, page) = send(c.get(s.url("/v1/tasks?created_before=2100-01-01T00:00:00Z&name=checkout"))).await;
    assert_eq!(page["tasks"].as_array().unwrap().len(), 1);
    for bad in [
        "state=flying",
        "limit=0",
        "limit=501",
        "cursor=garbage",
        "created_after=yesterday",
    ] {
        let (st, _, e) = send(c.get(s.url(&format!("/v1/tasks?{bad}")))).await;
        assert_eq!(st, 400, "{bad}: {e}");
        assert_error(&e, "invalid_argument");
    }

    // Retry a task that is not in error: 409. Cancel: 200, again: 409.
    let (st, _, e) = send(
        c.post(s.url(&format!("/v1/tasks/{uuid}/retry")))
            .json(&json!({"reason": "try"})),
    )
    .await;
    assert_eq!(st, 409);
    assert_error(&e, "invalid_state");
    let (st, _, t) = send(c.delete(s.url(&format!("/v1/tasks/{uuid}")))).await;
    assert_eq!(st, 200);
    assert_eq!(t["state"], "cancelled");
    let (st, _, e) = send(c.delete(s.url(&format!("/v1/tasks/{uuid}")))).await;
    assert_eq!(st, 409, "{e}");
    let (st, _, _) = send(c.delete(s.url(&format!("/v1/tasks/{missing}")))).await;
    assert_eq!(st, 404);
    let (st, _, _) = send(c.post(s.url(&format!("/v1/tasks/{missing}/retry")))).await;
    assert_eq!(st, 404);
    s.stop().await;
}

async fn steps(kind: Db) {
    let s = TestServer::start(kind, ServerConfig::default()).await;
    s.register_fixture().await;
    let c = &s.client;
    let task = s.create_task(1).await;
    let base = format!("/v1/tasks/{task}/workflow_steps");

    let (st, _, list) = send(c.get(s.url(&base))).await;
    assert_eq!(st, 200);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["validate", "charge", "ship"]);
    let (st, _, step) = send(c.get(s.url(&format!("{base}/validate")))).await;
    assert_eq!(st, 200);
    assert_eq!(step["state"], "enqueued");
    let by_uuid = step["step_uuid"].as_str().unwrap().to_owned();
    let (st, _, _) = send(c.get(s.url(&format!("{base}/{by_uuid}")))).await;
    assert_eq!(st, 200);
    let (st, _, e) = send(c.get(s.url(&format!("{base}/nope")))).await;
    assert_eq!(st, 404);
    assert_error(&e, "step_not_found");

    // complete_manually needs completion_data; then it completes and releases `charge`.
    let (st, _, e) = send(
        c.patch(s.url(&format!("{base}/validate")))
            .json(&json!({"action_type": "complete_manually", "reason": "by hand"})),
    )
    .await;
    assert_eq!(st, 400);
    assert_error(&e, "invalid_argument");
    let (st, _, step) = send(c.patch(s.url(&format!("{base}/validate"))).json(&json!({
        "action_type": "complete_manually", "reason": "by hand", "completion_data": {"ok": true}
    })))
    .await;
    assert_eq!(st, 200, "{step}");
    assert_eq!(step["state"], "complete");
    assert_eq!(step["results"], json!({"ok": true}));
    // The operator is the credential (anonymous here), not a body field.
    let by = step["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|t| t["metadata"]["by"].as_str().map(str::to_owned));
    assert_eq!(by.as_deref(), Some("anonymous"));
    let (_, _, charge) = send(c.get(s.url(&format!("{base}/charge")))).await;
    assert_eq!(charge["state"], "enqueued");

    // Reset a complete step: 409. Unknown action: 400. Resolve, then cancel `ship`.
    let (st, _, e) = send(
        c.patch(s.url(&format!("{base}/validate")))
            .json(&json!({"action_type": "reset_for_retry", "reason": "again"})),
    )
    .await;
    assert_eq!(st, 409);
    assert_error(&e, "invalid_state");
    let (st, _, _) = send(
        c.patch(s.url(&format!("{base}/validate")))
            .json(&json!({"action_type": "explode", "reason": "x"})),
    )
    .await;
    assert_eq!(st, 400);
    let (st, _, step) = send(
        c.patch(s.url(&format!("{base}/charge")))
            .json(&json!({"action_type": "resolve_manually", "reason": "paid offline"})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(step["state"], "resolved_manually");
    let (st, _, step) = send(
        c.patch(s.url(&format!("{base}/ship")))
            .json(&json!({"action_type": "cancel", "reason": "no shipping"})),
    )
    .await;
    assert_eq!(st, 200, "{step}");
    assert_eq!(step["state"], "cancelled");
    let missing = uuid::Uuid::now_v7();
    let (st, _, _) = send(c.get(s.url(&format!("/v1/tasks/{missing}/workflow_steps")))).await;
    assert_eq!(st, 404);
    s.stop().await;
}

async fn dlq_workers_events_system(kind: Db) {
    let s = TestServer::start(kind, ServerConfig::default()).await;
    s.register_fixture().await;
    let c = &s.client;
    let task = s.create_task(2).await;
    let entry = s.tasker.add_to_dlq(task, "tests", "looks stuck").await.expect("dlq");

    let (st, _, list) = send(c.get(s.url("/v1/dlq?open_only=true"))).await;
    assert_eq!(st, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["reason"], "manual");
    let (st, _, list) = send(c.get(s.url("/v1/dlq?status=cancelled&reason=manual"))).await;
    assert_eq!(st, 200);
    assert_eq!(list, json!([]));
    for bad in ["status=lost", "limit=0", "offset=-1", "reason=boredom"] {
        let (st, _, _) = send(c.get(s.url(&format!("/v1/dlq?{bad}")))).await;
        assert_eq!(st, 400, "{bad}");
    }
    let (st, _, of_task) = send(c.get(s.url(&format!("/v1/dlq/task/{task}")))).await;
    assert_eq!(st, 200);
    assert_eq!(of_task[0]["entry_uuid"], entry.entry_uuid.to_string());
    let (st, _, _) = send(c.get(s.url(&format!("/v1/dlq/task/{}", uuid::Uuid::now_v7())))).await;
    assert_eq!(st, 404);

    let (st, _, one) = send(c.get(s.url(&format!("/v1/dlq/entry/{}", entry.entry_uuid)))).await;
    assert_eq!(st, 200);
    assert_eq!(one["status"], "pending");
    let (st, _, _) = send(c.get(s.url(&format!("/v1/dlq/entry/{}", uuid::Uuid::now_v7())))).await;
    assert_eq!(st, 404);
    let (st, _, updated) = send(
        c.patch(s.url(&format!("/v1/dlq/entry/{}", entry.entry_uuid)))
            .json(&json!({"status": "investigating", "note": "looking"})),
    )
    .await;
    assert_eq!(st, 200, "{updated}");
    assert_eq!(updated["status"], "investigating");
    assert_eq!(updated["notes"].as_array().unwrap().last().unwrap()["by"], "anonymous");
    let (st, _, e) = send(
        c.patch(s.url(&format!("/v1/dlq/entry/{}", uuid::Uuid::now_v7())))
            .json(&json!({"note": "x"})),
    )
    .await;
    assert_eq!(st, 404);
    assert_error(&e, "dlq_entry_not_found");

    let (st, _, stats) = send(c.get(s.url("/v1/dlq/stats"))).await;
    assert_eq!(st, 200);
    assert_eq!(stats["total"], 1);
    assert_eq!(stats["open"], 1);
    let (st, _, q) = send(c.get(s.url("/v1/dlq/investigation-queue?limit=10"))).await;
    assert_eq!(st, 200);
    assert_eq!(q.as_array().unwrap().len(), 1);
    assert!(q[0]["score"].as_f64().unwrap() > 0.0);
    let (st, _, report) = send(c.get(s.url("/v1/dlq/staleness?min_ratio=0"))).await;
    assert_eq!(st, 200);
    assert_eq!(report[0]["task_uuid"], task.to_string());
    let (st, _, _) = send(c.get(s.url("/v1/dlq/staleness?min_ratio=2"))).await;
    assert_eq!(st, 400);

    let (st, _, workers) = send(c.get(s.url("/v1/workers"))).await;
    assert_eq!(st, 200);
    assert!(workers.is_array());
    let (st, _, catalog) = send(c.get(s.url("/v1/events/catalog"))).await;
    assert_eq!(st, 200);
    assert!(catalog.as_array().unwrap().iter().any(|e| e["name"] == "task.created"));

    let (st, _, h) = send(c.get(s.url("/health"))).await;
    assert_eq!((st, h), (200, json!({"status": "ok"})));
    let (st, _, r) = send(c.get(s.url("/health/ready"))).await;
    assert_eq!(st, 200);
    assert_eq!(r["checks"]["database"], "ok");
    assert_eq!(r["checks"]["migrations"], "ok");
    let (st, _, m) = send(c.get(s.url("/metrics"))).await;
    assert_eq!(st, 200);
    assert!(m.as_str().unwrap().contains("tasker_http_requests_total"), "{m}");
    let (st, _, doc) = send(c.get(s.url("/openapi.json"))).await;
    assert_eq!(st, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/tasks/{task_uuid}/workflow_steps/{step}"]["patch"].is_object());
    let (st, _, e) = send(c.get(s.url("/v2/anything"))).await;
    assert_eq!(st, 404);
    assert_error(&e, "not_found");
    let (st, _, e) = send(c.put(s.url("/v1/tasks"))).await;
    assert_eq!(st, 405);
    assert_error(&e, "method_not_allowed");
    s.stop().await;
}

/// Pages of 25 while another client creates tasks: every task that existed before the first
/// page appears exactly once, newest first, and nothing repeats.
async fn pagination_with_concurrent_inserts(kind: Db) {
    let s = TestServer::start(kind, ServerConfig::default()).await;
    s.register_fixture().await;
    let mut before = HashSet::new();
    for i in 0..120 {
        before.insert(s.create_task(i).await.to_string());
    }
    let writer = {
        let client = s.client.clone();
        let url = s.url("/v1/tasks");
        tokio::spawn(async move {
            for i in 0..60 {
                let body = json!({"namespace": "shop", "name": "checkout", "context": {"order_id": 1000 + i}});
                let (st, _, b) = send(client.post(&url).json(&body)).await;
                assert_eq!(st, 201, "{b}");
            }
        })
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = s.url("/v1/tasks?limit=25");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (st, _, page) = send(s.client.get(url)).await;
        assert_eq!(st, 200, "{page}");
        for t in page["tasks"].as_array().unwrap() {
            seen.push((
                t["created_at"].as_str().unwrap().to_owned(),
                t["task_uuid"].as_str().unwrap().to_owned(),
            ));
        }
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    let uuids: Vec<&String> = seen.iter().map(|(_, u)| u).collect();
    let unique: HashSet<&String> = uuids.iter().copied().collect();
    assert_eq!(unique.len(), uuids.len(), "a task appeared twice");
    for id in &before {
        assert!(unique.contains(id), "task {id} was skipped");
    }
    assert!(pages >= 5, "{pages} pages");
    // Newest first: (created_at, uuid) strictly descending.
    for w in seen.windows(2) {
        let a = (chrono::DateTime::parse_from_rfc3339(&w[0].0).unwrap(), &w[0].1);
        let b = (chrono::DateTime::parse_from_rfc3339(&w[1].0).unwrap(), &w[1].1);
        assert!(a > b, "{w:?} out of order");
    }
    s.stop().await;
}

/// Reads SSE messages from `response` until `n` have arrived (or 20 s pass): (id, event, data).
async fn sse_messages(response: &mut reqwest::Response, n: usize) -> Vec<(String, String, Value)> {
    let mut buffer = String::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while out.len() < n && tokio::time::Instant::now() < deadline {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), response.chunk()).await;
        let Ok(Ok(Some(bytes))) = chunk else { break };
        buffer.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
            for line in message.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !data.is_empty() {
                out.push((id, event, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
        }
    }
    out
}

async fn event_stream(kind: Db) {
    let s = TestServer::start(kind, ServerConfig::default()).await;
    let c = &s.client;
    let mut stream = c
        .get(s.url("/v1/events/stream?patterns=orders.*"))
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    // Give the stream's group a moment, then publish.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    s.tasker
        .publish_events("orders.placed", &json!({"n": 1}), 3)
        .await
        .expect("publish");
    s.tasker
        .publish_events("other.thing", &json!({}), 2)
        .await
        .expect("publish");
    let got = sse_messages(&mut stream, 3).await;
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got
        .iter()
        .all(|(_, name, data)| name == "orders.placed" && data["name"] == "orders.placed"));
    let ids: Vec<i64> = got
        .iter()
        .map(|(id, _, _)| id.parse().expect("id is a position"))
        .collect();
    drop(stream);

    // Reconnect after the first: the rest, then what was written while away.
    s.tasker
        .publish_events("orders.placed", &json!({"n": 2}), 1)
        .await
        .expect("publish");
    let mut ids_sorted = ids.clone();
    ids_sorted.sort_unstable();
    let mut resumed = c
        .get(s.url("/v1/events/stream?patterns=orders.*"))
        .header("last-event-id", ids_sorted[0].to_string())
        .send()
        .await
        .expect("stream");
    let again = sse_messages(&mut resumed, 3).await;
    let again_ids: Vec<i64> = again.iter().map(|(id, _, _)| id.parse().expect("id")).collect();
    assert_eq!(again.len(), 3, "{again:?}");
    assert!(
        ids_sorted[1..].iter().all(|i| again_ids.contains(i)),
        "{ids_sorted:?} {again_ids:?}"
    );
    assert!(again.iter().any(|(_, _, d)| d["payload"]["n"] == 2));
    drop(resumed);

    let (st, _, body) = send(c.get(s.url("/v1/events/stream")).header("last-event-id", "yesterday")).await;
    assert_eq!(st, 400);
    assert_error(&body, "invalid_argument");
    // The streams' groups go away with them.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let groups = s.tasker.event_groups().await.expect("groups");
    assert!(groups.is_empty(), "{groups:?}");
    s.stop().await;
}

/// What the dashboard reads beyond the other routes: the overview's counts, who the credential
/// is, search by idempotency key; and the dashboard's own files at `/`.
async fn dashboard_reads(kind: Db) {
    let s = TestServer::start(kind, ServerConfig::default()).await;
    s.register_fixture().await;
    let c = &s.client;
    for i in 0..3 {
        s.create_task(i).await;
    }
    let (st, _, keyed) = send(c.post(s.url("/v1/tasks")).json(&json!({
        "namespace": "shop", "name": "checkout", "context": {"order_id": 9}, "idempotency_key": "order-nine"
    })))
    .await;
    assert_eq!(st, 201, "{keyed}");

    let (st, _, stats) = send(c.get(s.url("/v1/stats"))).await;
    assert_eq!(st, 200, "{stats}");
    let counted: i64 = stats["tasks_by_state"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(counted, 4, "{stats}");
    let buckets = stats["last_hour"].as_array().unwrap();
    assert_eq!(buckets.len(), 12);
    let created: i64 = buckets.iter().map(|b| b["created"].as_i64().unwrap()).sum();
    assert_eq!(created, 4, "every task was created within the hour: {stats}");
    assert_eq!(stats["completed_last_hour"], 0);
    let shop = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "shop")
        .unwrap_or_else(|| panic!("the root steps' messages wait on queue shop: {stats}"));
    assert_eq!(shop["depth"], 4, "{stats}");
    assert_eq!(shop["visible"], 4, "{stats}");
    assert!(shop["oldest_age_ms"].as_i64().unwrap() >= 0);

    let (st, _, page) = send(c.get(s.url("/v1/tasks?idempotency_key=order-nine"))).await;
    assert_eq!(st, 200);
    let tasks = page["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{page}");
    assert_eq!(tasks[0]["task_uuid"], keyed["task_uuid"]);
    let (_, _, page) = send(c.get(s.url("/v1/tasks?idempotency_key=nothing&state=pending"))).await;
    assert_eq!(page["tasks"], json!([]));

    let (st, _, me) = send(c.get(s.url("/v1/auth/whoami"))).await;
    assert_eq!(st, 200);
    assert_eq!(me["subject"], "anonymous");
    assert_eq!(me["auth_enabled"], false);
    assert!(
        me["permissions"].as_array().unwrap().contains(&json!("steps:resolve")),
        "{me}"
    );

    let resp = c.get(s.url("/")).send().await.expect("index");
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(resp.text().await.unwrap().contains("/assets/app.js"));
    let resp = c.get(s.url("/assets/app.js")).send().await.expect("asset");
    assert_eq!(resp.headers()["content-type"], "text/javascript; charset=utf-8");
    let (st, _, e) = send(c.get(s.url("/assets/../Cargo.toml"))).await;
    assert_eq!(st, 404, "{e}");
    s.stop().await;
}

on_both_backends!(
    dashboard_reads,
    templates,
    tasks,
    steps,
    dlq_workers_events_system,
    pagination_with_concurrent_inserts,
    event_stream
);
