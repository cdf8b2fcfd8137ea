//! Step handlers written in Rust, run on the same poll/complete path the language bindings use.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::outcome::{error_types, StepFailure, StepOutcome};
use crate::worker::{Poll, StepEvent, Worker};

/// A step handler. `Ok(value)` completes the step with `value` as its result.
#[async_trait]
pub trait StepHandler: Send + Sync + 'static {
    async fn call(&self, step: &StepEvent) -> Result<Value, StepFailure>;
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<Value, StepFailure>> + Send>>;

struct FnHandler<F>(F);

#[async_trait]
impl<F> StepHandler for FnHandler<F>
where
    F: Fn(StepEvent) -> BoxFuture + Send + Sync + 'static,
{
    async fn call(&self, step: &StepEvent) -> Result<Value, StepFailure> {
        (self.0)(step.clone()).await
    }
}

/// Handlers by callable name.
#[derive(Default, Clone)]
pub struct HandlerRegistry {
    handlers: HashMap<String, Arc<dyn StepHandler>>,
}

impl std::fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.handlers.keys()).finish()
    }
}

impl HandlerRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for steps whose `handler.callable` is `callable`.
    pub fn register(&mut self, callable: impl Into<String>, handler: impl StepHandler) -> &mut Self {
        self.handlers.insert(callable.into(), Arc::new(handler));
        self
    }

    /// Registers an async closure.
    pub fn register_fn<F, Fut>(&mut self, callable: impl Into<String>, f: F) -> &mut Self
    where
        F: Fn(StepEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, StepFailure>> + Send + 'static,
    {
        let boxed = move |e: StepEvent| -> BoxFuture { Box::pin(f(e)) };
        self.register(callable, FnHandler(boxed))
    }

    pub fn get(&self, callable: &str) -> Option<Arc<dyn StepHandler>> {
        self.handlers.get(callable).cloned()
    }

    /// Runs one event through its handler, turning a missing handler into a permanent
    /// `handler_not_found` failure.
    pub async fn run(&self, event: &StepEvent) -> StepOutcome {
        match self.get(&event.handler.callable) {
            Some(h) => match h.call(event).await {
                Ok(result) => StepOutcome::success(result),
                Err(failure) => StepOutcome::Failure(failure),
            },
            None => StepOutcome::Failure(StepFailure::permanent(
                error_types::HANDLER_NOT_FOUND,
                format!("no handler registered for callable '{}'", event.handler.callable),
            )),
        }
    }
}

/// Polls `worker` and runs each event on a tokio task until the worker shuts down. Returns
/// once every started handler has completed.
pub async fn run_handlers(worker: Worker, registry: Arc<HandlerRegistry>) {
    let mut running = tokio::task::JoinSet::new();
    loop {
        match worker.poll_async(Duration::from_millis(200)).await {
            Poll::Event(event) => {
                let worker = worker.clone();
                let registry = registry.clone();
                running.spawn(async move {
                    let event_id = event.event_id;
                    // On a task of its own, so a panicking handler fails its step instead of
                    // leaving the event uncompleted.
                    let outcome = match tokio::spawn(async move { registry.run(&event).await }).await {
                        Ok(outcome) => outcome,
                        Err(e) => StepOutcome::Failure(StepFailure::retryable(
                            "panic",
                            format!("the handler panicked: {}", panic_message(e)),
                        )),
                    };
                    if let Err(e) = worker.complete(event_id, outcome) {
                        tracing::warn!(error = %e, event_id, "completion not accepted");
                    }
                });
            }
            Poll::Empty => {}
            Poll::ShutDown => break,
            Poll::Failed(e) => {
                tracing::error!(error = %e, "worker failed; no more steps are run here");
                break;
            }
        }
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

/// The message of a panicked task, for error reports.
pub(crate) fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return "cancelled".to_owned();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(no message)".to_owned())
}
