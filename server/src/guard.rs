//! The middleware in front of every `/v1` route, in the order a request meets it:
//!
//! 1. the in-flight bound: when `limits.max_in_flight` requests are under way, the next one
//!    answers 503 with `Retry-After` at once instead of waiting in a queue without bound;
//! 2. authentication: the credential becomes a [`Principal`] in the request's extensions, or
//!    the request answers 401;
//! 3. the per-credential rate limit (429 with `Retry-After`);
//! 4. the request timeout: a request still running after `limits.request_timeout_ms` answers
//!    503 (which also bounds how long it can wait for a database connection).
//!
//! A second, outer middleware counts every answered request in the metrics by route template.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Bounds, authenticates, rate-limits and times out one request.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        crate::metrics::overloaded();
        return ApiError::overloaded("too many requests in flight; retry shortly").into_response();
    };
    let principal = match state.auth.authenticate(request.headers()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Some(wait) = state.rate.check(&principal.subject, principal.rate_limit_per_second) {
        crate::metrics::rate_limited();
        let secs = wait.as_secs().max(1);
        return ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("rate limit of this credential reached; retry in {secs} s"),
        )
        .retry_after(secs)
        .into_response();
    }
    request.extensions_mut().insert(principal);
    crate::metrics::in_flight(1);
    let timeout = Duration::from_millis(state.limits.request_timeout_ms);
    let response = match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(r) => r,
        Err(_) => {
            crate::metrics::timed_out();
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!("the request did not finish within {} ms", timeout.as_millis()),
            )
            .retry_after(1)
            .into_response()
        }
    };
    crate::metrics::in_flight(-1);
    response
}

/// Counts the request by method, route template and status.
pub async fn count(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    crate::metrics::request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Token buckets by credential subject.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Subjects tracked at most; past it, buckets that have refilled are forgotten (a full bucket
/// is the same as none), so memory stays bounded whatever subjects appear.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `None` when `subject` may go on, else how long until it may. `own_rate` is the
    /// credential's own limit, when it has one.
    pub fn check(&self, subject: &str, own_rate: Option<u32>) -> Option<Duration> {
        let rate = own_rate.map_or(self.per_second, f64::from);
        if rate <= 0.0 {
            return None;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().ok()?;
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(subject) {
            let burst = self.burst;
            // A bucket that refilled is the same as none (at the slowest rate, to be safe).
            let slowest = self.per_second.min(rate).max(f64::MIN_POSITIVE);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * slowest < burst);
            if buckets.len() >= MAX_BUCKETS {
                return Some(Duration::from_secs(1));
            }
        }
        let (tokens, at) = buckets.entry(subject.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - *tokens) / rate))
        }
    }
}

/// Shared handle.
pub type SharedRateLimiter = Arc<RateLimiter>;
