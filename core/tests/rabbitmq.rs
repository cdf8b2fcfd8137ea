//! RabbitMQ as the messaging backend, under faults: a worker's broker connection cut mid-step,
//! the configuration refusing what cannot keep the guarantees, and readiness. (The broker
//! restarted mid-run is `rabbitmq_restart.rs`: it disturbs every test using the broker, so it
//! runs in a binary of its own.)
//!
//! Every handler run is written to a ledger; "no step ran twice" is read from it and from the
//! audit rows (one `succeed` per step).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ledger::*;
use common::*;
use serde_json::json;
use tasker_core::messaging::MessagingOptions;
use tasker_core::{Tasker, TaskerOptions};

/// `host:port` of an AMQP URL.
fn broker_address(url: &str) -> String {
    let uri: lapin::uri::AMQPUri = url.parse().expect("AMQP URL");
    format!("{}:{}", uri.authority.host, uri.authority.port)
}

/// An AMQP URL through `proxy`.
fn broker_through(url: &str, proxy: &Proxy) -> String {
    let mut uri: lapin::uri::AMQPUri = url.parse().expect("AMQP URL");
    let (user, pass) = (
        uri.authority.userinfo.username.clone(),
        uri.authority.userinfo.password.clone(),
    );
    uri.authority.port = proxy.port;
    let vhost: String = url::form_urlencoded::byte_serialize(uri.vhost.as_bytes()).collect();
    format!("amqp://{user}:{pass}@127.0.0.1:{}/{vhost}", proxy.port)
}

async fn until(what: &str, bound: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < bound, "{what}: not within {bound:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// A worker's TCP connection to RabbitMQ is cut while its steps run: they finish and commit
// (their leases are in PostgreSQL), what it had buffered goes to the other worker, it
// reconnects, and no step runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_broker_connection_is_cut_mid_step_runs_nothing_twice() {
    let db = TestDb::new(Db::PostgresRabbitmq).await;
    let proxy = Proxy::start(broker_address(&rabbitmq_url())).await;
    let mut cut_options = db.options();
    cut_options.messaging.rabbitmq.url = Some(broker_through(&rabbitmq_url(), &proxy));
    let cut = db.connect_with(cut_options).await;
    let steady = db.connect().await;
    let loaded = tasker_core::template::parse_str(&chain_template(), None, "test").expect("template");
    steady.register_template(&loaded).await.expect("register");
    let ledger: Ledger = Arc::default();
    let pause = Duration::from_millis(400);
    let w_cut = RunningWorker::start(&cut, &[NAMESPACE], 4, ledger_registry(&ledger, pause)).await;
    let w_steady = RunningWorker::start(&steady, &[NAMESPACE], 4, ledger_registry(&ledger, pause)).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        tasks.push(create(&steady, NAMESPACE, "chain", json!({ "n": i })).await);
    }
    // Cut once the cut worker got deliveries and steps run, for longer than a step.
    let broker = cut.broker().expect("broker").clone();
    until("the cut worker runs steps", Duration::from_secs(30), || {
        broker.status().delivered > 0 && !ledger.lock().expect("ledger").is_empty()
    })
    .await;
    proxy.cut();
    until("the cut is noticed", Duration::from_secs(15), || {
        !broker.status().connected
    })
    .await;
    assert!(!cut.health(&[]).await.ready, "readiness reports the broker down");
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.restore();
    until("the worker reconnects", Duration::from_secs(30), || {
        broker.status().connected
    })
    .await;
    assert_each_step_ran_once(&steady, &tasks, &ledger).await;
    assert!(broker.status().reconnects >= 1);
    // Ready again once every check is: the circuit breaker, opened by the calls that failed
    // during the cut, closes only after its cool-down and a successful trial call.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let health = cut.health(&[]).await;
        if health.ready {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready 30 s after the broker came back: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w_cut.stop().await;
    w_steady.stop().await;
    db.cleanup().await;
}

// SQLite cannot be a broker's outbox: refused, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_with_rabbitmq_is_refused_naming_the_key() {
    let db = TestDb::new(Db::Sqlite).await;
    let err = Tasker::connect_with(TaskerOptions {
        database_url: Some(db.url.clone()),
        messaging: MessagingOptions::rabbitmq(Some(rabbitmq_url())),
        ..TaskerOptions::default()
    })
    .await
    .expect_err("SQLite + RabbitMQ is refused");
    assert_eq!(err.code(), "invalid_argument");
    assert!(err.to_string().contains("messaging.backend"), "{err}");
    db.cleanup().await;
}

// A broker that is not there does not stop the engine: it starts, readiness says why it is not
// ready, task creation still commits (the messages wait in PostgreSQL), and they run once the
// broker is reachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_broker_delays_steps_and_loses_none() {
    let db = TestDb::new(Db::PostgresRabbitmq).await;
    let proxy = Proxy::start(broker_address(&rabbitmq_url())).await;
    proxy.cut();
    let mut options = db.options();
    options.messaging.rabbitmq.url = Some(broker_through(&rabbitmq_url(), &proxy));
    let tasker = Tasker::connect_with(options)
        .await
        .expect("connects without the broker");
    let health = tasker.health(&[]).await;
    let check = health
        .checks
        .iter()
        .find(|c| c.name == "broker")
        .expect("a broker check");
    assert!(!check.ok && !health.ready, "{health:?}");
    let loaded = tasker_core::template::parse_str(&chain_template(), None, "test").expect("template");
    tasker.register_template(&loaded).await.expect("register");
    let ledger: Ledger = Arc::default();
    let worker = RunningWorker::start(&tasker, &[NAMESPACE], 2, ledger_registry(&ledger, Duration::ZERO)).await;
    let tasks = vec![
        create(&tasker, NAMESPACE, "chain", json!({})).await,
        create(&tasker, NAMESPACE, "chain", json!({})).await,
    ];
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        ledger.lock().expect("ledger").is_empty(),
        "nothing runs without the broker"
    );
    proxy.restore();
    assert_each_step_ran_once(&tasker, &tasks, &ledger).await;
    assert!(tasker.health(&[]).await.ready);
    worker.stop().await;
    if let Some(b) = tasker.broker() {
        let _ = b.delete_declared_queues().await;
    }
    tasker.close().await;
    db.cleanup().await;
}
