//! The worker: registers the templates under templates/, runs their steps and starts the event
//! subscribers of src/subscribers/ until Ctrl-C.
//!
//! ```sh
//! cargo run
//! ```
//!
//! It connects to the database of config/tasker (an SQLite file, ./tasker.db), so the `tasker`
//! CLI run from this directory sees the same tasks.

mod handlers;
mod subscribers;

use std::sync::Arc;
use std::time::Duration;

use tasker_core::events::SubscriberRunner;
use tasker_core::handler::{run_handlers, HandlerRegistry};
use tasker_core::{config, Tasker, Worker};

const QUEUES: &[&str] = &["{{namespace}}"];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The configuration of config/tasker (TASKER_ENV picks the environment).
    let loaded = config::load_current()?;
    let tasker = Tasker::connect_with(loaded.config.connect_options(None)).await?;
    for template in tasker.register_templates(concat!(env!("CARGO_MANIFEST_DIR"), "/templates")).await? {
        println!("registered {}/{}@{}", template.namespace, template.name, template.version);
    }
    let queues: Vec<String> = QUEUES.iter().map(|q| q.to_string()).collect();
    let worker = Worker::start(&tasker, loaded.config.worker_config(&queues)).await?;
    let mut registry = HandlerRegistry::new();
    handlers::register_all(&mut registry);
    let runner = tokio::spawn(run_handlers(worker.clone(), Arc::new(registry)));
    // Each subscriber joins its group here: the events of tasks created from now on reach it.
    let mut running = Vec::new();
    for subscriber in subscribers::all() {
        running.push(SubscriberRunner::start(&tasker, subscriber, None).await?);
    }
    println!("worker serving {} (Ctrl-C to stop)", QUEUES.join(", "));
    tokio::signal::ctrl_c().await?;
    for subscriber in running {
        subscriber.stop().await?;
    }
    worker.shutdown(Duration::from_secs(10)).await?;
    runner.await?;
    tasker.close().await;
    Ok(())
}
