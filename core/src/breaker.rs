//! A circuit breaker: while the database is unreachable, callers fail at once with
//! [`TaskerError::Unavailable`] instead of each waiting out a connection timeout.
//!
//! Without it, every caller (a client creating tasks, each worker loop, the orchestrator) waits
//! for the pool's acquire timeout before it learns the server is gone, holding its request, its
//! task and its memory meanwhile: an outage turns into a pile-up that outlives it.
//!
//! * **Closed** (normal): every call goes through. It opens after `failure_threshold`
//!   consecutive failures, or when at least `min_calls` calls in the current `window` failed at a
//!   rate of `failure_rate` or more.
//! * **Open**: calls are refused without touching the database, until `cool_down` has passed.
//! * **Half-open**: the next call is let through as the probe (others are still refused). Its
//!   success closes the breaker; its failure opens it for another `cool_down`.
//!
//! Only failures that say the server is away count (a lost connection, a pool timeout, a server
//! shutting down: [`TaskerError::is_unreachable`]). A constraint violation, a deadlock or a
//! statement timeout is the database answering, and counts as a success here.
//!
//! Time is passed in (`now`), so the state machine is tested without sleeping.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::TaskerError;

/// When a [`CircuitBreaker`] opens and for how long.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakerOptions {
    /// `false`: no breaker (every call goes to the database).
    pub enabled: bool,
    /// Consecutive failures that open it.
    pub failure_threshold: u32,
    /// The failure rate (0–1) over `window` that opens it, once `min_calls` calls were made.
    pub failure_rate: f64,
    pub min_calls: u32,
    pub window: Duration,
    /// How long it stays open before a probe is let through.
    pub cool_down: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_threshold: 5,
            failure_rate: 0.5,
            min_calls: 20,
            window: Duration::from_secs(10),
            cool_down: Duration::from_secs(2),
        }
    }
}

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }

    /// The `tasker.circuit_breaker.state` gauge's value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

/// What [`CircuitBreaker::status`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerStatus {
    pub name: &'static str,
    pub state: BreakerState,
    /// How long ago it last opened, while it is not closed.
    #[serde(skip)]
    pub open_for: Option<Duration>,
    /// The failure that opened it.
    pub last_failure: Option<String>,
    /// Times it opened since the engine started.
    pub opened: u64,
    /// Calls it refused since the engine started.
    pub rejected: u64,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    window_start: Instant,
    window_calls: u32,
    window_failures: u32,
    opened_at: Instant,
    probe_in_flight: bool,
    last_failure: Option<String>,
    opened: u64,
    rejected: u64,
}

/// See the module documentation. Shared by every call to one resource (`name`).
#[derive(Debug)]
pub struct CircuitBreaker {
    name: &'static str,
    options: BreakerOptions,
    inner: Mutex<Inner>,
}

/// Leave to make one call; settle it with [`Permit::succeeded`] or [`Permit::failed`]. A permit
/// dropped unsettled (the call was cancelled, or ended without saying anything about the
/// database) counts as neither, and gives the probe slot back.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<CircuitBreaker>,
    probe: bool,
    settled: bool,
}

impl Permit {
    /// The call reached the database (whatever its answer).
    pub fn succeeded(mut self, now: Instant) {
        self.settled = true;
        self.breaker.on_success(self.probe, now);
    }

    /// The call failed with `error`: counted if it says the database is unreachable.
    pub fn failed(mut self, error: &TaskerError, now: Instant) {
        self.settled = true;
        if error.is_unreachable() {
            self.breaker.on_failure(self.probe, error, now);
        } else {
            self.breaker.on_success(self.probe, now);
        }
    }

    /// Settles with the outcome of `result`.
    pub fn settle<T>(self, result: &Result<T, TaskerError>, now: Instant) {
        match result {
            Ok(_) => self.succeeded(now),
            Err(e) => self.failed(e, now),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.breaker.lock().probe_in_flight = false;
        }
    }
}

impl CircuitBreaker {
    pub fn new(name: &'static str, options: BreakerOptions, now: Instant) -> Arc<Self> {
        Arc::new(Self {
            name,
            options,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                window_start: now,
                window_calls: 0,
                window_failures: 0,
                opened_at: now,
                probe_in_flight: false,
                last_failure: None,
                opened: 0,
                rejected: 0,
            }),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn options(&self) -> &BreakerOptions {
        &self.options
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the counters half-updated in a way that
        // matters more than refusing every call would: keep going with what is there.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Leave to call the database now, or [`TaskerError::Unavailable`] while it is open.
    pub fn admit(self: &Arc<Self>, now: Instant) -> Result<Permit, TaskerError> {
        let mut inner = self.lock();
        let probe = match inner.state {
            BreakerState::Closed => false,
            BreakerState::Open | BreakerState::HalfOpen => {
                let open_for = now.saturating_duration_since(inner.opened_at);
                if open_for < self.options.cool_down || inner.probe_in_flight {
                    inner.rejected += 1;
                    let retry_after = self.options.cool_down.saturating_sub(open_for);
                    return Err(TaskerError::Unavailable {
                        resource: self.name,
                        reason: inner.last_failure.clone().unwrap_or_else(|| "unreachable".into()),
                        retry_after,
                    });
                }
                if inner.state == BreakerState::Open {
                    tracing::info!(
                        breaker = self.name,
                        "circuit breaker half-open: letting one probe through"
                    );
                }
                inner.state = BreakerState::HalfOpen;
                inner.probe_in_flight = true;
                true
            }
        };
        Ok(Permit {
            breaker: Arc::clone(self),
            probe,
            settled: false,
        })
    }

    /// Where it is now.
    pub fn status(&self, now: Instant) -> BreakerStatus {
        let inner = self.lock();
        BreakerStatus {
            name: self.name,
            state: inner.state,
            open_for: (inner.state != BreakerState::Closed).then(|| now.saturating_duration_since(inner.opened_at)),
            last_failure: inner.last_failure.clone(),
            opened: inner.opened,
            rejected: inner.rejected,
        }
    }

    fn roll_window(&self, inner: &mut Inner, now: Instant) {
        if now.saturating_duration_since(inner.window_start) >= self.options.window {
            inner.window_start = now;
            inner.window_calls = 0;
            inner.window_failures = 0;
        }
    }

    fn on_success(&self, probe: bool, now: Instant) {
        let mut inner = self.lock();
        if probe {
            inner.probe_in_flight = false;
            if inner.state == BreakerState::HalfOpen {
                tracing::info!(breaker = self.name, "circuit breaker closed: the probe succeeded");
                inner.state = BreakerState::Closed;
                inner.consecutive_failures = 0;
                inner.window_start = now;
                inner.window_calls = 0;
                inner.window_failures = 0;
            }
            return;
        }
        if inner.state != BreakerState::Closed {
            // A call let through before it opened: only the probe decides when it closes.
            return;
        }
        inner.consecutive_failures = 0;
        self.roll_window(&mut inner, now);
        inner.window_calls = inner.window_calls.saturating_add(1);
    }

    fn on_failure(&self, probe: bool, error: &TaskerError, now: Instant) {
        let mut inner = self.lock();
        if probe {
            inner.probe_in_flight = false;
            if inner.state == BreakerState::HalfOpen {
                self.open(&mut inner, error, now, "the probe failed");
            }
            return;
        }
        if inner.state != BreakerState::Closed {
            return;
        }
        self.roll_window(&mut inner, now);
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        inner.window_calls = inner.window_calls.saturating_add(1);
        inner.window_failures = inner.window_failures.saturating_add(1);
        let rate = f64::from(inner.window_failures) / f64::from(inner.window_calls);
        if inner.consecutive_failures >= self.options.failure_threshold {
            let why = format!("{} consecutive failures", inner.consecutive_failures);
            self.open(&mut inner, error, now, &why);
        } else if inner.window_calls >= self.options.min_calls && rate >= self.options.failure_rate {
            let why = format!(
                "{} of {} calls failed in {:?}",
                inner.window_failures, inner.window_calls, self.options.window
            );
            self.open(&mut inner, error, now, &why);
        }
    }

    fn open(&self, inner: &mut Inner, error: &TaskerError, now: Instant, why: &str) {
        inner.state = BreakerState::Open;
        inner.opened_at = now;
        inner.opened += 1;
        inner.last_failure = Some(error.to_string());
        tracing::warn!(
            breaker = self.name,
            error = %error,
            cool_down = ?self.options.cool_down,
            "circuit breaker open ({why}): calls fail with `unavailable` until a probe succeeds"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable() -> TaskerError {
        TaskerError::Database(sqlx::Error::PoolTimedOut)
    }

    fn breaker(t0: Instant) -> Arc<CircuitBreaker> {
        CircuitBreaker::new(
            "database",
            BreakerOptions {
                enabled: true,
                failure_threshold: 3,
                failure_rate: 0.5,
                min_calls: 10,
                window: Duration::from_secs(10),
                cool_down: Duration::from_secs(2),
            },
            t0,
        )
    }

    fn fail(b: &Arc<CircuitBreaker>, now: Instant) {
        b.admit(now).expect("admitted").failed(&unreachable(), now);
    }

    fn succeed(b: &Arc<CircuitBreaker>, now: Instant) {
        b.admit(now).expect("admitted").succeeded(now);
    }

    #[test]
    fn consecutive_failures_open_it_and_a_success_in_between_resets_the_count() {
        let t0 = Instant::now();
        let b = breaker(t0);
        fail(&b, t0);
        fail(&b, t0);
        succeed(&b, t0);
        fail(&b, t0);
        fail(&b, t0);
        assert_eq!(b.status(t0).state, BreakerState::Closed);
        fail(&b, t0);
        assert_eq!(b.status(t0).state, BreakerState::Open);
        let refused = b.admit(t0 + Duration::from_millis(500)).expect_err("open");
        assert_eq!(refused.code(), "unavailable");
        assert!(refused.is_transient(), "callers hold and retry their work");
        match refused {
            TaskerError::Unavailable { retry_after, .. } => assert_eq!(retry_after, Duration::from_millis(1500)),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.status(t0).rejected, 1);
        assert_eq!(b.status(t0).opened, 1);
    }

    #[test]
    fn a_failure_rate_over_the_window_opens_it() {
        let t0 = Instant::now();
        let b = breaker(t0);
        // Alternating: never 3 in a row, but the 10th call is the 5th failure.
        for i in 0..10 {
            if i % 2 == 1 {
                fail(&b, t0);
            } else {
                succeed(&b, t0);
            }
        }
        assert_eq!(b.status(t0).state, BreakerState::Open);
    }

    #[test]
    fn the_window_rolls_over() {
        let t0 = Instant::now();
        let b = breaker(t0);
        for i in 0..9 {
            if i % 2 == 0 {
                fail(&b, t0);
            } else {
                succeed(&b, t0);
            }
        }
        // A new window: the 5 old failures no longer count.
        let t1 = t0 + Duration::from_secs(11);
        fail(&b, t1);
        assert_eq!(b.status(t1).state, BreakerState::Closed);
    }

    #[test]
    fn after_the_cool_down_one_probe_goes_through_and_decides() {
        let t0 = Instant::now();
        let b = breaker(t0);
        for _ in 0..3 {
            fail(&b, t0);
        }
        let t1 = t0 + Duration::from_secs(2);
        let probe = b.admit(t1).expect("the probe");
        assert_eq!(b.status(t1).state, BreakerState::HalfOpen);
        assert!(b.admit(t1).is_err(), "one probe at a time");
        probe.failed(&unreachable(), t1);
        assert_eq!(b.status(t1).state, BreakerState::Open);
        assert!(b.admit(t1 + Duration::from_secs(1)).is_err(), "a new cool-down");

        let t2 = t1 + Duration::from_secs(2);
        b.admit(t2).expect("the next probe").succeeded(t2);
        assert_eq!(b.status(t2).state, BreakerState::Closed);
        succeed(&b, t2);
        assert_eq!(b.status(t2).opened, 2);
    }

    #[test]
    fn a_dropped_probe_gives_its_slot_back() {
        let t0 = Instant::now();
        let b = breaker(t0);
        for _ in 0..3 {
            fail(&b, t0);
        }
        let t1 = t0 + Duration::from_secs(3);
        drop(b.admit(t1).expect("the probe"));
        b.admit(t1).expect("another probe").succeeded(t1);
        assert_eq!(b.status(t1).state, BreakerState::Closed);
    }

    #[test]
    fn answers_from_the_database_are_not_failures() {
        let t0 = Instant::now();
        let b = breaker(t0);
        for _ in 0..10 {
            b.admit(t0)
                .expect("admitted")
                .failed(&TaskerError::InvalidArgument("bad".into()), t0);
        }
        assert_eq!(b.status(t0).state, BreakerState::Closed);
    }

    #[test]
    fn late_results_of_calls_let_through_before_it_opened_change_nothing() {
        let t0 = Instant::now();
        let b = breaker(t0);
        let early = b.admit(t0).expect("admitted");
        for _ in 0..3 {
            fail(&b, t0);
        }
        early.succeeded(t0);
        assert_eq!(b.status(t0).state, BreakerState::Open);
    }
}
