//! The auth matrix — every route × {no credential, bad key, expired token, wrong audience,
//! insufficient permission, sufficient permission} → the exact status — plus redaction, the
//! operator's identity, the per-credential rate limit, the request timeout and the in-flight
//! bound (503 with `Retry-After`, and no task lost or invented), on SQLite and PostgreSQL.

mod common;

use common::{fixture_text, send, Db, TestServer};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use tasker_server::auth::{issue_token, IssuedClaims, PERMISSIONS};
use tasker_server::{ApiKeyConfig, AuthConfig, JwtConfig, LimitsConfig, ServerConfig};

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
const GOOD_KEY: &str = "good-api-key";

fn config(limits: LimitsConfig) -> ServerConfig {
    ServerConfig {
        auth: AuthConfig {
            enabled: true,
            api_keys: vec![
                ApiKeyConfig {
                    subject: "ops".into(),
                    key: None,
                    key_sha256: Some(tasker_server::auth::hash_key(GOOD_KEY)),
                    permissions: vec!["*".into()],
                    rate_limit_per_second: None,
                },
                ApiKeyConfig {
                    subject: "reader".into(),
                    key: Some("reader-key".into()),
                    key_sha256: None,
                    permissions: vec!["tasks:read".into()],
                    rate_limit_per_second: Some(100_000),
                },
            ],
            jwt: Some(JwtConfig {
                algorithm: "HS256".into(),
                public_key_path: None,
                jwks_path: None,
                secret: Some(SECRET.into()),
                issuer: Some("tasker-tests".into()),
                audience: Some("tasker-api".into()),
                leeway_seconds: 30,
                permissions_claim: "permissions".into(),
            }),
        },
        limits,
    }
}

struct Token {
    sub: &'static str,
    permissions: Vec<String>,
    exp_offset: i64,
    nbf_offset: i64,
    iss: &'static str,
    aud: &'static str,
    secret: &'static str,
}

impl Token {
    fn new(permissions: Vec<String>) -> Self {
        Self {
            sub: "alice",
            permissions,
            exp_offset: 3600,
            nbf_offset: 0,
            iss: "tasker-tests",
            aud: "tasker-api",
            secret: SECRET,
        }
    }

    fn sign(&self) -> String {
        let now = chrono::Utc::now().timestamp();
        issue_token(
            Algorithm::HS256,
            self.secret.as_bytes(),
            &IssuedClaims {
                sub: self.sub.into(),
                permissions: self.permissions.clone(),
                iat: now,
                nbf: now + self.nbf_offset,
                exp: now + self.exp_offset,
                iss: Some(self.iss.into()),
                aud: Some(self.aud.into()),
            },
            None,
        )
        .expect("sign")
    }
}

#[derive(Clone, Copy)]
enum Cred<'a> {
    None,
    Key(&'a str),
    Bearer(&'a str),
}

struct Route {
    method: &'static str,
    path: String,
    body: Option<Value>,
    yaml: Option<String>,
    permission: &'static str,
    success: u16,
}

fn route(method: &'static str, path: String, permission: &'static str, success: u16) -> Route {
    Route {
        method,
        path,
        body: None,
        yaml: None,
        permission,
        success,
    }
}

async fn call(s: &TestServer, r: &Route, cred: Cred<'_>) -> (u16, reqwest::header::HeaderMap, Value) {
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).unwrap();
    let mut req = s.client.request(method, s.url(&r.path));
    if let Some(b) = &r.body {
        req = req.json(b);
    }
    if let Some(y) = &r.yaml {
        req = req.header("content-type", "application/yaml").body(y.clone());
    }
    req = match cred {
        Cred::None => req,
        Cred::Key(k) => req.header("x-api-key", k),
        Cred::Bearer(t) => req.bearer_auth(t),
    };
    send(req).await
}

async fn auth_matrix(kind: Db) {
    let s = TestServer::start(kind, config(LimitsConfig::default())).await;
    s.register_fixture().await;
    let a = s.create_task(1).await;
    let to_cancel = s.create_task(2).await;
    let entry = s.tasker.add_to_dlq(a, "tests", "matrix").await.expect("dlq");
    let create = json!({"namespace": "shop", "name": "checkout", "context": {"order_id": 3}});
    let mut other_template = fixture_text("orders.yaml").replace("version: 1.0.0", "version: 1.1.0");
    other_template.push('\n');
    let routes = vec![
        Route {
            body: Some(create),
            ..route("POST", "/v1/tasks".into(), "tasks:create", 201)
        },
        route("GET", "/v1/tasks".into(), "tasks:list", 200),
        route("GET", format!("/v1/tasks/{a}"), "tasks:read", 200),
        route("DELETE", format!("/v1/tasks/{to_cancel}"), "tasks:cancel", 200),
        route("POST", format!("/v1/tasks/{a}/retry"), "tasks:retry", 409),
        route("GET", format!("/v1/tasks/{a}/diagram"), "tasks:read", 200),
        route("GET", format!("/v1/tasks/{a}/workflow_steps"), "steps:read", 200),
        route(
            "GET",
            format!("/v1/tasks/{a}/workflow_steps/validate"),
            "steps:read",
            200,
        ),
        Route {
            body: Some(json!({"action_type": "resolve_manually", "reason": "matrix"})),
            ..route(
                "PATCH",
                format!("/v1/tasks/{a}/workflow_steps/validate"),
                "steps:resolve",
                200,
            )
        },
        route("GET", "/v1/templates".into(), "templates:read", 200),
        route("GET", "/v1/templates/shop/checkout".into(), "templates:read", 200),
        route("GET", "/v1/templates/shop/checkout/1.0.0".into(), "templates:read", 200),
        Route {
            yaml: Some(other_template),
            ..route("POST", "/v1/templates".into(), "templates:write", 201)
        },
        Route {
            yaml: Some(fixture_text("orders.yaml")),
            ..route("POST", "/v1/templates/validate".into(), "templates:validate", 200)
        },
        route("GET", "/v1/dlq".into(), "dlq:read", 200),
        route("GET", format!("/v1/dlq/task/{a}"), "dlq:read", 200),
        route("GET", format!("/v1/dlq/entry/{}", entry.entry_uuid), "dlq:read", 200),
        Route {
            body: Some(json!({"note": "matrix"})),
            ..route(
                "PATCH",
                format!("/v1/dlq/entry/{}", entry.entry_uuid),
                "dlq:update",
                200,
            )
        },
        route("GET", "/v1/dlq/stats".into(), "dlq:stats", 200),
        route("GET", "/v1/dlq/investigation-queue".into(), "dlq:read", 200),
        route("GET", "/v1/dlq/staleness".into(), "dlq:read", 200),
        route("GET", "/v1/workers".into(), "workers:read", 200),
        route("GET", "/v1/events/catalog".into(), "events:read", 200),
        route("GET", "/metrics".into(), "system:read", 200),
    ];
    let expired = Token {
        exp_offset: -3600,
        nbf_offset: -7200,
        ..Token::new(vec!["*".into()])
    }
    .sign();
    let wrong_audience = Token {
        aud: "someone-else",
        ..Token::new(vec!["*".into()])
    }
    .sign();
    let mut problems = Vec::new();
    for r in &routes {
        let all_but: Vec<String> = PERMISSIONS
            .iter()
            .filter(|p| **p != r.permission)
            .map(|p| p.to_string())
            .collect();
        let insufficient = Token::new(all_but).sign();
        let sufficient = Token::new(vec![r.permission.into()]).sign();
        let cases: [(&str, Cred, u16); 6] = [
            ("no credential", Cred::None, 401),
            ("bad key", Cred::Key("not-a-key"), 401),
            ("expired token", Cred::Bearer(&expired), 401),
            ("wrong audience", Cred::Bearer(&wrong_audience), 401),
            ("insufficient permission", Cred::Bearer(&insufficient), 403),
            ("sufficient permission", Cred::Bearer(&sufficient), r.success),
        ];
        for (case, cred, expected) in cases {
            let (st, _, body) = call(&s, r, cred).await;
            if st != expected {
                problems.push(format!(
                    "{} {} × {case}: {st} (expected {expected}) {body}",
                    r.method, r.path
                ));
            }
            if expected == 401 && body["error"] != "unauthenticated" && body["error"] != "invalid_credentials" {
                problems.push(format!("{} {} × {case}: error code {body}", r.method, r.path));
            }
            if expected == 403 && body["details"]["required_permission"] != r.permission {
                problems.push(format!(
                    "{} {} × {case}: 403 does not name {}: {body}",
                    r.method, r.path, r.permission
                ));
            }
        }
    }
    for path in ["/health", "/health/ready", "/openapi.json"] {
        for cred in [Cred::None, Cred::Key("not-a-key"), Cred::Bearer(&expired)] {
            let (st, _, _) = call(&s, &route("GET", path.into(), "", 200), cred).await;
            if st != 200 {
                problems.push(format!("GET {path}: {st} (public, expected 200)"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The API key with `*`; other token defects.
    let get_a = route("GET", format!("/v1/tasks/{a}"), "tasks:read", 200);
    assert_eq!(call(&s, &get_a, Cred::Key(GOOD_KEY)).await.0, 200);
    for bad in [
        Token {
            iss: "mallory",
            ..Token::new(vec!["*".into()])
        },
        Token {
            secret: "another-secret-that-is-long-enough-too!!",
            ..Token::new(vec!["*".into()])
        },
        Token {
            nbf_offset: 3600,
            exp_offset: 7200,
            ..Token::new(vec!["*".into()])
        },
    ] {
        assert_eq!(call(&s, &get_a, Cred::Bearer(&bad.sign())).await.0, 401);
    }
    assert_eq!(call(&s, &get_a, Cred::Bearer("garbage")).await.0, 401);

    // Redaction: the context and results only with tasks:context_read.
    let reader = Token::new(vec!["tasks:read".into(), "steps:read".into()]).sign();
    let (_, _, t) = call(&s, &get_a, Cred::Bearer(&reader)).await;
    assert_eq!(t["context"], Value::Null, "{t}");
    let (_, _, t) = call(&s, &get_a, Cred::Key("reader-key")).await;
    assert_eq!(t["context"], Value::Null, "{t}");
    let full = Token::new(vec!["tasks:read".into(), "tasks:context_read".into()]).sign();
    let (_, _, t) = call(&s, &get_a, Cred::Bearer(&full)).await;
    assert_eq!(t["context"], json!({"order_id": 1}));
    let steps = route(
        "GET",
        format!("/v1/tasks/{a}/workflow_steps/validate"),
        "steps:read",
        200,
    );
    let (_, _, step) = call(&s, &steps, Cred::Bearer(&reader)).await;
    assert_eq!(step["results"], Value::Null);
    // The operator of the PATCH above is the token's subject.
    let by: Vec<&str> = step["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["metadata"]["by"].as_str())
        .collect();
    assert_eq!(by, ["alice"], "{step}");
    let (_, _, dlq) = call(&s, &route("GET", "/v1/dlq".into(), "", 200), Cred::Key(GOOD_KEY)).await;
    assert_eq!(dlq[0]["notes"].as_array().unwrap().last().unwrap()["by"], "alice");

    // Failures are counted.
    let (_, _, m) = call(&s, &route("GET", "/metrics".into(), "", 200), Cred::Key(GOOD_KEY)).await;
    let m = m.as_str().unwrap().to_owned();
    for reason in [
        "missing_credentials",
        "bad_api_key",
        "token_expired",
        "wrong_audience",
        "forbidden",
    ] {
        assert!(
            m.contains(&format!("tasker_http_auth_failures_total{{reason=\"{reason}\"}}")),
            "{reason}: {m}"
        );
    }
    s.stop().await;
}

async fn rate_limit(kind: Db) {
    let s = TestServer::start(
        kind,
        config(LimitsConfig {
            rate_limit_per_second: 1,
            rate_limit_burst: 3,
            ..LimitsConfig::default()
        }),
    )
    .await;
    let r = route("GET", "/v1/workers".into(), "workers:read", 200);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let (st, h, _) = call(&s, &r, Cred::Key(GOOD_KEY)).await;
        statuses.push(st);
        if st == 429 {
            retry_after = h.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        }
    }
    assert_eq!(&statuses[..3], [200, 200, 200]);
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    assert!(retry_after.is_some_and(|v| v.parse::<u64>().unwrap() >= 1));
    // Another credential has its own bucket, and this one its own rate (100,000/s): not limited.
    let own = route(
        "GET",
        "/v1/tasks/00000000-0000-0000-0000-000000000000".into(),
        "tasks:read",
        404,
    );
    for _ in 0..10 {
        assert_eq!(call(&s, &own, Cred::Key("reader-key")).await.0, 404);
    }
    s.stop().await;
}

/// With one request allowed in flight, a burst of concurrent creates answers 201 or 503 with
/// `Retry-After` — nothing else — and exactly the 201s exist afterwards.
async fn overload(kind: Db) {
    let s = TestServer::start(
        kind,
        config(LimitsConfig {
            max_in_flight: 1,
            ..LimitsConfig::default()
        }),
    )
    .await;
    s.register_fixture().await;
    let mut handles = Vec::new();
    for i in 0..64 {
        let client = s.client.clone();
        let url = s.url("/v1/tasks");
        handles.push(tokio::spawn(async move {
            let body = json!({"namespace": "shop", "name": "checkout", "context": {"order_id": i}});
            send(client.post(url).header("x-api-key", GOOD_KEY).json(&body)).await
        }));
    }
    let (mut created, mut shed) = (Vec::new(), 0);
    for h in handles {
        let (st, headers, body) = h.await.unwrap();
        match st {
            201 => created.push(body["task_uuid"].as_str().unwrap().to_owned()),
            503 => {
                assert_eq!(body["error"], "overloaded");
                assert_eq!(headers["retry-after"], "1");
                shed += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(shed > 0, "64 concurrent requests with one slot shed none");
    assert!(!created.is_empty());
    let listed = s
        .tasker
        .list_tasks(&tasker_core::TaskFilter {
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut listed: Vec<String> = listed.into_iter().map(|t| t.task_uuid.to_string()).collect();
    listed.sort();
    created.sort();
    assert_eq!(listed, created, "the 201s are exactly the tasks that exist");
    // Saturation passes: the next request goes through.
    let r = route("GET", "/v1/tasks".into(), "tasks:list", 200);
    assert_eq!(call(&s, &r, Cred::Key(GOOD_KEY)).await.0, 200);
    s.stop().await;
}

/// A misconfigured auth section never yields a half-secured server.
#[test]
fn inconsistent_auth_configuration_is_refused() {
    let mut c = config(LimitsConfig::default());
    c.auth.api_keys[0].permissions = vec!["tasks:fly".into()];
    assert!(tasker_server::auth::Authenticator::new(&c.auth).is_err());
    let mut c = config(LimitsConfig::default());
    c.auth.jwt.as_mut().unwrap().secret = Some("short".into());
    assert!(tasker_server::auth::Authenticator::new(&c.auth).is_err());
    let c = AuthConfig {
        enabled: true,
        ..AuthConfig::default()
    };
    assert!(tasker_server::auth::Authenticator::new(&c).is_err());
}

on_both_backends!(auth_matrix, rate_limit, overload);

/// A request held up by the database (here: another transaction holds the task's row lock)
/// answers 503 `timeout` with `Retry-After` once `request_timeout_ms` passes, and the same
/// request goes through once the lock is gone.
async fn request_timeout(kind: Db) {
    let s = TestServer::start(
        kind,
        config(LimitsConfig {
            request_timeout_ms: 300,
            ..LimitsConfig::default()
        }),
    )
    .await;
    s.register_fixture().await;
    let task = s.create_task(9).await;
    let step = s.tasker.list_steps(task).await.unwrap()[0].step.step_uuid;
    let mut tx = s.tasker.store().begin().await.unwrap();
    tx.lock_steps(&[step]).await.unwrap();
    let cancel = route("DELETE", format!("/v1/tasks/{task}"), "tasks:cancel", 200);
    let (st, headers, body) = call(&s, &cancel, Cred::Key(GOOD_KEY)).await;
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["error"], "timeout");
    assert_eq!(headers["retry-after"], "1");
    tx.rollback().await.unwrap();
    let (st, _, body) = call(&s, &cancel, Cred::Key(GOOD_KEY)).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["state"], "cancelled");
    s.stop().await;
}

on_both_backends!(request_timeout);
