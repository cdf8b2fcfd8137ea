//! The engine's log records, handed to the host language's logger.
//!
//! The CLI and Rust programs install a `tracing` subscriber of their own and see the core's
//! records there. A Python, Ruby or TypeScript process has none: without this module the core's
//! warnings would vanish, and a stderr writer would bypass the application's logging (its
//! handlers, format, level and destination). [`forward`] installs a process-wide subscriber that
//! turns every record into a [`LogRecord`] on a bounded channel; the binding drains it on a thread
//! (or timer) of its own and calls Python's `logging`, Ruby's `Logger` (the Rails logger under
//! Rails) or a Node hook.
//!
//! Records never wait for the host: when the channel is full (the host logger fell behind, or
//! nobody drains) new records are counted and dropped, and the next record read is a warning
//! saying how many were lost.
//!
//! A record carries the fields of the event and of the `tracing` spans around it. Records that
//! concern a step carry [`STEP_FIELDS`]: `task_uuid`, `step_uuid`, `step_name`, `attempt` and
//! `correlation_id` (see the `step_log!` macro).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

use crate::error::{Result, TaskerError};

/// The fields on every record that concerns a step, in this order.
pub const STEP_FIELDS: [&str; 5] = ["task_uuid", "step_uuid", "step_name", "attempt", "correlation_id"];

/// How many records wait for the host logger before new ones are dropped, unless configured
/// (`logging.buffer`).
pub const DEFAULT_BUFFER: usize = 10_000;

/// A record's severity, lowercase on the wire (`"warn"`), as `tracing` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    fn of(level: &Level) -> Self {
        match *level {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            Level::DEBUG => LogLevel::Debug,
            Level::TRACE => LogLevel::Trace,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One log record of the core, as a host logger receives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogRecord {
    pub level: LogLevel,
    /// The Rust module that logged it (`tasker_core::worker`).
    pub target: String,
    pub message: String,
    /// The event's fields and those of the spans around it; values as text.
    pub fields: BTreeMap<String, String>,
    pub timestamp: DateTime<Utc>,
}

/// The receiving end of [`forward`]: the binding's drain reads from it.
pub struct LogForwarder {
    rx: flume::Receiver<LogRecord>,
    dropped: Arc<AtomicU64>,
    filter: String,
}

impl LogForwarder {
    /// The next record, waiting up to `timeout`. `None` when none came. Blocks the thread: call
    /// it with the host's interpreter lock released.
    pub fn poll(&self, timeout: Duration) -> Option<LogRecord> {
        if let Some(lost) = self.lost_notice() {
            return Some(lost);
        }
        self.rx.recv_timeout(timeout).ok()
    }

    /// Up to `max` records already waiting, without blocking (for an event loop's timer).
    pub fn drain(&self, max: usize) -> Vec<LogRecord> {
        let mut out: Vec<LogRecord> = self.lost_notice().into_iter().collect();
        out.extend(self.rx.try_iter().take(max.saturating_sub(out.len())));
        out
    }

    /// Records dropped so far because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The filter the subscriber was installed with (`TASKER_LOG`, else the level asked for).
    pub fn filter(&self) -> &str {
        &self.filter
    }

    fn lost_notice(&self) -> Option<LogRecord> {
        let lost = self.dropped.swap(0, Ordering::Relaxed);
        (lost > 0).then(|| LogRecord {
            level: LogLevel::Warn,
            target: module_path!().to_owned(),
            message: format!("{lost} log records were dropped: the host logger fell behind"),
            fields: BTreeMap::from([("dropped".to_owned(), lost.to_string())]),
            timestamp: Utc::now(),
        })
    }
}

static FORWARDER: OnceLock<LogForwarder> = OnceLock::new();

/// The forwarder [`forward`] installed, if it did.
pub fn installed() -> Option<&'static LogForwarder> {
    FORWARDER.get()
}

/// Installs the process-wide subscriber that forwards the core's records, filtered by
/// `TASKER_LOG` (a full `tracing` filter such as `tasker_core=debug`) when set, else by `level`
/// (`error`, `warn`, `info`, `debug`, `trace`, or a filter), holding up to `buffer` records for
/// the host. The first call installs it; later calls return the same forwarder whatever their
/// arguments.
///
/// Fails when `level` is not a valid filter, or when another `tracing` subscriber already owns the
/// process (a Rust program that set its own).
pub fn forward(level: &str, buffer: usize) -> Result<&'static LogForwarder> {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(f) = FORWARDER.get() {
        return Ok(f);
    }
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(f) = FORWARDER.get() {
        return Ok(f);
    }
    let (filter, text) = match std::env::var("TASKER_LOG") {
        Ok(spec) if !spec.trim().is_empty() => (parse_filter("TASKER_LOG", &spec)?, spec),
        // sqlx reports PostgreSQL's notices at info ("schema \"pgmq\" already exists,
        // skipping" on every connect): only its warnings (slow statements) are worth the host's
        // log at a plain level. `TASKER_LOG=sqlx=info` still shows them.
        _ => {
            parse_filter("logging.level", level)?;
            let spec = format!("{level},sqlx=warn");
            (parse_filter("logging.level", &spec)?, spec)
        }
    };
    let (tx, rx) = flume::bounded(buffer.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let layer = ForwardLayer {
        tx,
        dropped: dropped.clone(),
    };
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(filter).with(layer)).map_err(|_| {
        TaskerError::InvalidArgument("logs cannot be forwarded: this process already has a tracing subscriber".into())
    })?;
    Ok(FORWARDER.get_or_init(|| LogForwarder {
        rx,
        dropped,
        filter: text,
    }))
}

/// [`forward`] with this process's configured `logging.level` and `logging.buffer` (see
/// [`crate::config`]);
/// `TASKER_LOG` still wins. What the bindings call when they connect.
pub fn forward_configured() -> Result<&'static LogForwarder> {
    match installed() {
        Some(f) => Ok(f),
        None => {
            let config = crate::config::load_current()?.config;
            forward(&config.log_level, config.log_buffer)
        }
    }
}

fn parse_filter(source: &str, spec: &str) -> Result<EnvFilter> {
    EnvFilter::try_new(spec).map_err(|e| {
        TaskerError::InvalidArgument(format!(
            "{source} = {spec:?} is not a log filter ({e}); use error, warn, info, debug or trace"
        ))
    })
}

/// Logs a record about a step, with [`STEP_FIELDS`] from `$step` (anything with `task_uuid`,
/// `step_uuid`, `step_name`, `attempt` and `correlation_id`), then the extra fields.
///
/// ```ignore
/// step_log!(warn, entry.log, error_type = %f.error_type, "step attempt failed");
/// ```
macro_rules! step_log {
    ($level:ident, $step:expr, $($rest:tt)+) => {{
        let s = &$step;
        ::tracing::$level!(
            task_uuid = %s.task_uuid,
            step_uuid = %s.step_uuid,
            step_name = %s.step_name,
            attempt = s.attempt,
            correlation_id = %s.correlation_id,
            $($rest)+
        )
    }};
}
pub(crate) use step_log;

/// Turns `tracing` events into [`LogRecord`]s on the channel.
struct ForwardLayer {
    tx: flume::Sender<LogRecord>,
    dropped: Arc<AtomicU64>,
}

/// A span's fields, kept in its extensions for the events inside it.
struct SpanFields(BTreeMap<String, String>);

impl<S> Layer<S> for ForwardLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields.fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(SpanFields(existing)) = ext.get_mut::<SpanFields>() {
                let mut fields = Fields {
                    fields: std::mem::take(existing),
                    message: None,
                };
                values.record(&mut fields);
                *existing = fields.fields;
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(f)) = span.extensions().get::<SpanFields>() {
                    fields.fields.extend(f.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        event.record(&mut fields);
        let meta = event.metadata();
        let record = LogRecord {
            level: LogLevel::of(meta.level()),
            target: meta.target().to_owned(),
            message: fields.message.unwrap_or_default(),
            fields: fields.fields,
            timestamp: Utc::now(),
        };
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Collects fields as text; `message` apart.
#[derive(Default)]
struct Fields {
    fields: BTreeMap<String, String>,
    message: Option<String>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = Some(value);
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(run: impl FnOnce()) -> Vec<LogRecord> {
        let (tx, rx) = flume::bounded(16);
        let layer = ForwardLayer {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        let subscriber = tracing_subscriber::registry().with(EnvFilter::new("debug")).with(layer);
        tracing::subscriber::with_default(subscriber, run);
        rx.try_iter().collect()
    }

    struct Step {
        task_uuid: uuid::Uuid,
        step_uuid: uuid::Uuid,
        step_name: String,
        attempt: i32,
        correlation_id: uuid::Uuid,
    }

    #[test]
    fn a_step_record_carries_the_step_fields_and_its_own() {
        let step = Step {
            task_uuid: uuid::Uuid::nil(),
            step_uuid: uuid::Uuid::max(),
            step_name: "charge".into(),
            attempt: 2,
            correlation_id: uuid::Uuid::nil(),
        };
        let records = collect(|| step_log!(warn, step, error_type = "boom", "step attempt failed"));
        let [r] = records.as_slice() else {
            panic!("one record, got {records:?}")
        };
        assert_eq!(r.level, LogLevel::Warn);
        assert_eq!(r.message, "step attempt failed");
        for k in STEP_FIELDS {
            assert!(r.fields.contains_key(k), "{k} missing from {:?}", r.fields);
        }
        assert_eq!(r.fields["step_name"], "charge");
        assert_eq!(r.fields["attempt"], "2");
        assert_eq!(r.fields["error_type"], "boom");
    }

    #[test]
    fn span_fields_reach_the_events_inside_the_span() {
        let records = collect(|| {
            let span = tracing::info_span!("outer", group = "billing", member = tracing::field::Empty);
            span.record("member", "m-1");
            let _in = span.enter();
            tracing::info!(event = "e1", "delivered");
        });
        let [r] = records.as_slice() else {
            panic!("one record, got {records:?}")
        };
        assert_eq!(r.fields["group"], "billing");
        assert_eq!(r.fields["member"], "m-1");
        assert_eq!(r.fields["event"], "e1");
    }

    #[test]
    fn a_full_channel_drops_and_then_says_how_many() {
        let (tx, rx) = flume::bounded(1);
        let dropped = Arc::new(AtomicU64::new(0));
        let layer = ForwardLayer {
            tx,
            dropped: dropped.clone(),
        };
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            for i in 0..3 {
                tracing::warn!(i, "many");
            }
        });
        let forwarder = LogForwarder {
            rx,
            dropped,
            filter: "warn".into(),
        };
        let first = forwarder.poll(Duration::ZERO).expect("the lost-records notice");
        assert_eq!(first.fields["dropped"], "2");
        assert_eq!(forwarder.drain(10).len(), 1, "the one record that fit");
        assert!(forwarder.poll(Duration::ZERO).is_none());
    }

    #[test]
    fn a_bad_level_is_refused_with_the_value() {
        let Err(e) = parse_filter("logging.level", "loud[") else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("logging.level = \"loud[\""), "{e}");
    }
}
