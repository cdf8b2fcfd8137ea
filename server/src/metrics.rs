//! Prometheus metrics of the API, rendered at `GET /metrics`.
//!
//! Counters live in one process-wide registry (auth failures are counted where they are
//! decided, deep in the auth code, without threading a handle through). The label sets are
//! bounded: routes are the matched route templates, never raw paths, so a client cannot grow
//! the registry by requesting random URLs.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};

/// (method, route, status) → (count, seconds in total).
type RequestCounts = BTreeMap<(String, String, u16), (u64, f64)>;

#[derive(Default)]
struct Registry {
    requests: Mutex<RequestCounts>,
    auth_failures: Mutex<BTreeMap<&'static str, u64>>,
    overloaded: AtomicU64,
    rate_limited: AtomicU64,
    timed_out: AtomicU64,
    in_flight: AtomicI64,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);

/// Buckets of the latency histogram, in seconds.
const BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

static HISTOGRAM: LazyLock<Mutex<BTreeMap<String, [u64; 9]>>> = LazyLock::new(Default::default);

/// Counts one answered request.
pub fn request(method: &str, route: &str, status: u16, seconds: f64) {
    if let Ok(mut m) = REGISTRY.requests.lock() {
        let e = m.entry((method.to_owned(), route.to_owned(), status)).or_default();
        e.0 += 1;
        e.1 += seconds;
    }
    if let Ok(mut h) = HISTOGRAM.lock() {
        let buckets = h.entry(route.to_owned()).or_insert([0; 9]);
        let i = BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(BUCKETS.len());
        buckets[i] += 1;
    }
}

/// Counts a rejected credential, by why (`bad_api_key`, `token_expired`, `forbidden`, …).
pub fn auth_failure(reason: &'static str) {
    if let Ok(mut m) = REGISTRY.auth_failures.lock() {
        *m.entry(reason).or_default() += 1;
    }
}

pub fn overloaded() {
    REGISTRY.overloaded.fetch_add(1, Ordering::Relaxed);
}

pub fn rate_limited() {
    REGISTRY.rate_limited.fetch_add(1, Ordering::Relaxed);
}

pub fn timed_out() {
    REGISTRY.timed_out.fetch_add(1, Ordering::Relaxed);
}

pub fn in_flight(delta: i64) {
    REGISTRY.in_flight.fetch_add(delta, Ordering::Relaxed);
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The registry in Prometheus' text format.
pub fn render() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP tasker_http_requests_total HTTP requests answered, by route and status."
    );
    let _ = writeln!(out, "# TYPE tasker_http_requests_total counter");
    let requests = REGISTRY.requests.lock().map(|m| m.clone()).unwrap_or_default();
    for ((method, route, status), (count, _)) in &requests {
        let _ = writeln!(
            out,
            "tasker_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {count}",
            escape(method),
            escape(route)
        );
    }
    let _ = writeln!(
        out,
        "# HELP tasker_http_request_duration_seconds Time to answer, by route."
    );
    let _ = writeln!(out, "# TYPE tasker_http_request_duration_seconds histogram");
    let histogram = HISTOGRAM.lock().map(|h| h.clone()).unwrap_or_default();
    for (route, buckets) in &histogram {
        let route = escape(route);
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += buckets[i];
            let _ = writeln!(
                out,
                "tasker_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
            );
        }
        cumulative += buckets[BUCKETS.len()];
        let _ = writeln!(
            out,
            "tasker_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {cumulative}"
        );
        let sum: f64 = requests
            .iter()
            .filter(|((_, r, _), _)| escape(r) == route)
            .map(|(_, (_, s))| s)
            .sum();
        let _ = writeln!(
            out,
            "tasker_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum}"
        );
        let _ = writeln!(
            out,
            "tasker_http_request_duration_seconds_count{{route=\"{route}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP tasker_http_auth_failures_total Rejected credentials, by reason."
    );
    let _ = writeln!(out, "# TYPE tasker_http_auth_failures_total counter");
    let failures = REGISTRY.auth_failures.lock().map(|m| m.clone()).unwrap_or_default();
    for (reason, count) in failures {
        let _ = writeln!(out, "tasker_http_auth_failures_total{{reason=\"{reason}\"}} {count}");
    }
    for (name, help, value) in [
        (
            "tasker_http_overloaded_total",
            "Requests answered 503 because the in-flight bound was reached.",
            REGISTRY.overloaded.load(Ordering::Relaxed),
        ),
        (
            "tasker_http_rate_limited_total",
            "Requests answered 429 by a per-credential rate limit.",
            REGISTRY.rate_limited.load(Ordering::Relaxed),
        ),
        (
            "tasker_http_timeouts_total",
            "Requests answered 503 because they ran past the request timeout.",
            REGISTRY.timed_out.load(Ordering::Relaxed),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
    let _ = writeln!(
        out,
        "# HELP tasker_http_in_flight Requests being answered now.\n# TYPE tasker_http_in_flight gauge\ntasker_http_in_flight {}",
        REGISTRY.in_flight.load(Ordering::Relaxed)
    );
    out
}
