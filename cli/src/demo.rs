//! `tasker demo`: registers the bundled example templates, runs a few tasks through a worker
//! with the built-in Rust handlers, and prints every transition as it happens.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tasker_core::template::{current_env, parse_str};
use tasker_core::{EngineEvent, TaskRequest, Tasker, TaskerError, Worker, WorkerConfig};
use uuid::Uuid;

use crate::{handlers, output};

/// The templates shipped with the binary, so the demo works from any directory.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "order_fulfillment.yaml",
        include_str!("../../examples/templates/order_fulfillment.yaml"),
    ),
    (
        "etl_pipeline.yaml",
        include_str!("../../examples/templates/etl_pipeline.yaml"),
    ),
];

#[derive(Args)]
pub struct DemoArgs {
    /// How many orders to run.
    #[arg(long, default_value_t = 3)]
    orders: u32,
}

pub async fn run(database_url: Option<String>, args: DemoArgs) -> Result<ExitCode, TaskerError> {
    let tasker = Tasker::connect(database_url.as_deref()).await?;
    println!("Tasker demo on {} ({})\n", tasker.database(), tasker.backend().as_str());
    for (file, yaml) in TEMPLATES {
        let loaded = parse_str(yaml, Some(std::path::Path::new(file)), &current_env())?;
        let t = tasker.register_template(&loaded).await?;
        println!(
            "registered {}/{}@{} -> queues {}",
            t.namespace,
            t.name,
            t.version,
            t.queues.join(", ")
        );
    }
    let mut events = tasker.subscribe_events();
    let mut config = WorkerConfig::new(vec!["ecommerce".into(), "data".into()]);
    config.concurrency = 8;
    let worker = Worker::start(&tasker, config).await?;
    let runner = tokio::spawn(tasker_core::handler::run_handlers(
        worker.clone(),
        Arc::new(handlers::registry()),
    ));

    let started = Instant::now();
    let mut labels: HashMap<Uuid, String> = HashMap::new();
    let mut tasks = Vec::new();
    for i in 1..=args.orders {
        let created = tasker
            .create_task(TaskRequest {
                namespace: "ecommerce".into(),
                name: "order_fulfillment".into(),
                context: json!({
                    "order_id": 1000 + i,
                    "customer_email": format!("customer{i}@example.com"),
                    "items": [{"sku": "WIDGET", "quantity": i, "price": 9.99}, {"sku": "GADGET", "quantity": 1, "price": 24.5}],
                    // The second order's first charge fails, to show a retry with backoff.
                    "simulate_gateway_timeout": i == 2,
                }),
                initiator: Some("tasker demo".into()),
                source_system: Some("cli".into()),
                reason: Some("demonstration".into()),
                tags: vec!["demo".into()],
                ..Default::default()
            })
            .await?;
        labels.insert(created.task.task_uuid, format!("order {}", 1000 + i));
        tasks.push(created.task.task_uuid);
    }
    let etl = tasker
        .create_task(TaskRequest {
            namespace: "data".into(),
            name: "etl_pipeline".into(),
            context: json!({"rows": 250}),
            initiator: Some("tasker demo".into()),
            ..Default::default()
        })
        .await?;
    labels.insert(etl.task.task_uuid, "etl run".into());
    tasks.push(etl.task.task_uuid);

    let mut remaining: std::collections::HashSet<Uuid> = tasks.iter().copied().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() {
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(e)) => e,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(_)) | Err(_) => break,
        };
        let ms = started.elapsed().as_millis();
        match event {
            EngineEvent::Step {
                task_uuid,
                step_name,
                from,
                to,
                attempt,
                ..
            } => {
                let label = labels.get(&task_uuid).map(String::as_str).unwrap_or("?");
                let attempt = if attempt > 0 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                println!("{ms:>6} ms  {label:<11} {step_name:<18} {from} -> {to}{attempt}");
            }
            EngineEvent::Task { task_uuid, to, .. } => {
                let label = labels.get(&task_uuid).map(String::as_str).unwrap_or("?");
                println!("{ms:>6} ms  {label:<11} task is {to}");
                if to.is_terminal() {
                    remaining.remove(&task_uuid);
                }
            }
            EngineEvent::Other { name, task_uuid, .. } => {
                let label = task_uuid
                    .and_then(|t| labels.get(&t))
                    .map(String::as_str)
                    .unwrap_or("?");
                println!("{ms:>6} ms  {label:<11} {name}");
            }
        }
    }
    worker.shutdown(Duration::from_secs(5)).await?;
    let _ = runner.await;
    println!("\nResults:");
    let mut all_complete = true;
    for id in &tasks {
        let detail = tasker.get_task(*id).await?;
        all_complete &= detail.task.state == "complete";
        println!();
        output::print_task(&detail);
    }
    tasker.close().await;
    Ok(if all_complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
