//! What every handler shares.

use std::sync::Arc;

use tasker_core::Tasker;
use tokio::sync::Semaphore;

use crate::auth::SharedAuthenticator;
use crate::config::LimitsConfig;
use crate::guard::SharedRateLimiter;

/// The router's state (axum's state extractor): the engine handle and the guards' shared parts.
#[derive(Debug, Clone)]
pub struct AppState {
    pub tasker: Tasker,
    pub auth: SharedAuthenticator,
    pub limits: LimitsConfig,
    /// One permit per request allowed under way at once.
    pub in_flight: Arc<Semaphore>,
    pub rate: SharedRateLimiter,
}
