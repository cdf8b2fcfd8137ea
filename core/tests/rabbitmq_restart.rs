//! RabbitMQ restarted mid-run (`rabbitmqctl stop_app` / `start_app`): relays and consumers of
//! two engines reconnect with backoff, messages published before the stop survive it (durable
//! queues, persistent messages), messages sent during it wait in PostgreSQL, every task
//! completes and no step runs twice. Alone in its binary: it disturbs every test on the broker.
//!
//! It needs to control the broker: `RABBITMQCTL` (default `rabbitmqctl`) must reach the server
//! `RABBITMQ_URL` names (`scripts/test-all.sh` runs it against its own or the local server).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::ledger::*;
use common::*;
use serde_json::json;

fn rabbitmqctl(args: &[&str]) {
    let ctl = std::env::var("RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".into());
    let status = Command::new(&ctl)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("running {ctl} {args:?}: {e} (set RABBITMQCTL)"));
    assert!(status.success(), "{ctl} {args:?} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_restarted_mid_run_loses_no_task_and_runs_no_step_twice() {
    let db = TestDb::new(Db::PostgresRabbitmq).await;
    let a = db.connect().await;
    let b = db.connect().await;
    let loaded = tasker_core::template::parse_str(&chain_template(), None, "test").expect("template");
    a.register_template(&loaded).await.expect("register");
    let ledger: Ledger = std::sync::Arc::default();
    let pause = Duration::from_millis(200);
    let wa = RunningWorker::start(&a, &[NAMESPACE], 3, ledger_registry(&ledger, pause)).await;
    let wb = RunningWorker::start(&b, &[NAMESPACE], 3, ledger_registry(&ledger, pause)).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        tasks.push(create(&a, NAMESPACE, "chain", json!({ "n": i })).await);
    }
    let start = Instant::now();
    while ledger.lock().expect("ledger").is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "nothing ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rabbitmqctl(&["stop_app"]);
    // Work created while the broker is down waits in PostgreSQL.
    for i in 0..10 {
        tasks.push(create(&b, NAMESPACE, "chain", json!({ "during": i })).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!a.health(&[]).await.ready, "readiness reports the broker down");
    rabbitmqctl(&["start_app"]);
    assert_each_step_ran_once(&a, &tasks, &ledger).await;
    for t in [&a, &b] {
        let status = t.broker().expect("broker").status();
        assert!(status.connected && status.reconnects >= 1, "{status:?}");
    }
    wa.stop().await;
    wb.stop().await;
    db.cleanup().await;
}
