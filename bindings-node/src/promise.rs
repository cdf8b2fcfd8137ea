//! Running core futures without blocking the Node.js event loop.

use std::future::Future;

use napi::bindgen_prelude::{Object, ToNapiValue};
use napi::{Env, JsDeferred};

use crate::error;

type Resolver<D> = Box<dyn FnOnce(Env) -> napi::Result<D> + Send>;

/// Settles the promise exactly once: with the future's output, or — if the future panics and is
/// dropped while unwinding — with an error. An unsettled deferred would keep the event loop
/// alive forever and leave the caller awaiting nothing.
struct Settle<D: ToNapiValue + Send + 'static>(Option<JsDeferred<D, Resolver<D>>>);

impl<D: ToNapiValue + Send + 'static> Settle<D> {
    fn settle(&mut self, result: napi::Result<D>) {
        if let Some(deferred) = self.0.take() {
            match result {
                Ok(value) => deferred.resolve(Box::new(move |_| Ok(value))),
                Err(e) => deferred.reject(e),
            }
        }
    }
}

impl<D: ToNapiValue + Send + 'static> Drop for Settle<D> {
    fn drop(&mut self) {
        if let Some(deferred) = self.0.take() {
            deferred.reject(error::internal("the native operation panicked; see stderr"));
        }
    }
}

/// Runs `future` on the core's runtime (the engine's background tasks live there, so every
/// core call must) and returns a promise of its output.
pub(crate) fn spawn<'e, D, F>(env: &'e Env, future: F) -> napi::Result<Object<'e>>
where
    D: ToNapiValue + Send + 'static,
    F: Future<Output = napi::Result<D>> + Send + 'static,
{
    let runtime = tasker_core::runtime::runtime().map_err(error::from_core)?;
    let (deferred, promise) = env.create_deferred::<D, Resolver<D>>()?;
    let mut settle = Settle(Some(deferred));
    runtime.spawn(async move {
        let result = future.await;
        settle.settle(result);
    });
    Ok(promise)
}

/// Serializes a core value for the JavaScript side.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> napi::Result<String> {
    serde_json::to_string(value).map_err(error::internal)
}
