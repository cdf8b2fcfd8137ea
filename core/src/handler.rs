//! Step handlers written in Rust, run on the same poll/complete path the language bindings use.
//!
//! A handler returns `Ok(result)` (a [`serde_json::Value`], or a [`StepSuccess`] carrying metadata too) or
//! `Err(`[`StepFailure`]`)`. Handlers are registered by the template's `handler.callable`; a
//! template naming another `handler.method` than `call` runs the handler registered for that
//! method with [`HandlerRegistry::register_method`].
//!
//! ```
//! use serde_json::json;
//! use tasker_core::handler::HandlerRegistry;
//! use tasker_core::{StepFailure, StepSuccess};
//!
//! let mut registry = HandlerRegistry::new();
//! registry.register_fn("payments.charge", |step| async move {
//!     let amount = step.task_context["amount"]
//!         .as_i64()
//!         .ok_or_else(|| StepFailure::permanent("invalid_input", "context.amount must be an integer"))?;
//!     Ok(StepSuccess::new(json!({"charged": amount})).with_metadata(json!({"gateway": "test"})))
//! });
//! registry.register_method_fn("payments.charge", "refund", |_step| async move { Ok(json!({"refunded": true})) });
//! assert!(registry.get_method("payments.charge", "refund").is_some());
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::outcome::{error_types, StepFailure, StepOutcome, StepSuccess};
use crate::worker::{Poll, StepEvent, Worker};

/// A step handler. `Ok(success)` completes the step with its result (and metadata); a plain
/// [`serde_json::Value`] converts with `.into()`. `Err(failure)` fails the attempt.
#[async_trait]
pub trait StepHandler: Send + Sync + 'static {
    async fn call(&self, step: &StepEvent) -> Result<StepSuccess, StepFailure>;
}

type BoxFuture = Pin<Box<dyn Future<Output = Result<StepSuccess, StepFailure>> + Send>>;

struct FnHandler<F>(F);

#[async_trait]
impl<F> StepHandler for FnHandler<F>
where
    F: Fn(StepEvent) -> BoxFuture + Send + Sync + 'static,
{
    async fn call(&self, step: &StepEvent) -> Result<StepSuccess, StepFailure> {
        (self.0)(step.clone()).await
    }
}

/// The method a template's `handler.method` defaults to.
pub const DEFAULT_METHOD: &str = "call";

/// Handlers by callable name and method.
#[derive(Default, Clone)]
pub struct HandlerRegistry {
    handlers: HashMap<(String, String), Arc<dyn StepHandler>>,
}

impl std::fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(
                self.handlers
                    .keys()
                    .map(|(callable, method)| format!("{callable}#{method}")),
            )
            .finish()
    }
}

impl HandlerRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for steps whose `handler.callable` is `callable` (and whose
    /// `handler.method` is `call`, the default).
    pub fn register(&mut self, callable: impl Into<String>, handler: impl StepHandler) -> &mut Self {
        self.register_method(callable, DEFAULT_METHOD, handler)
    }

    /// Registers `handler` for steps whose template names `callable` and `method`.
    pub fn register_method(
        &mut self,
        callable: impl Into<String>,
        method: impl Into<String>,
        handler: impl StepHandler,
    ) -> &mut Self {
        self.handlers
            .insert((callable.into(), method.into()), Arc::new(handler));
        self
    }

    /// Registers an async closure returning `Result<Value, StepFailure>` or
    /// `Result<StepSuccess, StepFailure>`.
    pub fn register_fn<F, Fut, R>(&mut self, callable: impl Into<String>, f: F) -> &mut Self
    where
        F: Fn(StepEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, StepFailure>> + Send + 'static,
        R: Into<StepSuccess> + 'static,
    {
        self.register_method_fn(callable, DEFAULT_METHOD, f)
    }

    /// Registers an async closure for `callable`'s `method`.
    pub fn register_method_fn<F, Fut, R>(
        &mut self,
        callable: impl Into<String>,
        method: impl Into<String>,
        f: F,
    ) -> &mut Self
    where
        F: Fn(StepEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, StepFailure>> + Send + 'static,
        R: Into<StepSuccess> + 'static,
    {
        let boxed = move |e: StepEvent| -> BoxFuture {
            let running = f(e);
            Box::pin(async move { running.await.map(Into::into) })
        };
        self.register_method(callable, method, FnHandler(boxed))
    }

    /// The handler of `callable`'s default method (`call`).
    pub fn get(&self, callable: &str) -> Option<Arc<dyn StepHandler>> {
        self.get_method(callable, DEFAULT_METHOD)
    }

    /// The handler of `callable`'s `method`.
    pub fn get_method(&self, callable: &str, method: &str) -> Option<Arc<dyn StepHandler>> {
        self.handlers.get(&(callable.to_owned(), method.to_owned())).cloned()
    }

    /// Runs one event through the handler its template names (callable and method), turning a
    /// missing handler into a permanent `handler_not_found` failure.
    pub async fn run(&self, event: &StepEvent) -> StepOutcome {
        let spec = &event.handler;
        let method = if spec.method.is_empty() {
            DEFAULT_METHOD
        } else {
            spec.method.as_str()
        };
        match self.get_method(&spec.callable, method) {
            Some(h) => {
                let outcome = match h.call(event).await {
                    Ok(success) => StepOutcome::from(success),
                    Err(failure) => StepOutcome::Failure(failure),
                };
                event
                    .take_published()
                    .into_iter()
                    .fold(outcome, |o, (name, payload)| o.with_event(&name, payload))
            }
            None if method == DEFAULT_METHOD => StepOutcome::Failure(StepFailure::permanent(
                error_types::HANDLER_NOT_FOUND,
                format!("no handler registered for callable '{}'", spec.callable),
            )),
            None => StepOutcome::Failure(StepFailure::permanent(
                error_types::HANDLER_NOT_FOUND,
                format!(
                    "no handler registered for callable '{}' method '{method}' (register it with register_method)",
                    spec.callable
                ),
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
