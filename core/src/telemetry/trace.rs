//! Trace identity and the engine's spans.
//!
//! A task's spans outlive any one process: the task span runs from creation to finish, and its
//! steps' attempts run in whichever workers claimed them. So the engine does not keep spans open
//! in memory; it derives every identity from what is stored and emits each span as a finished
//! record when its end is known:
//!
//! * the **trace id** is the task's correlation id (16 bytes). A task created with a W3C
//!   `traceparent` takes the caller's trace id as its correlation id, so it joins that trace;
//! * the **task span id** is the last 8 bytes of the task uuid (random in a UUIDv7), its parent
//!   the caller's span when there was one; it is emitted by the process that finishes the task;
//! * each **step attempt** gets a fresh span id when it is handed to a handler, under the task
//!   span; the handler receives it as [`TraceContext::traceparent`] so that the spans it makes with
//!   its own OpenTelemetry SDK nest under the attempt.

use std::fmt;
use std::time::SystemTime;

use uuid::Uuid;

/// A W3C trace context: which trace, which span in it, and whether it is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// Why a `traceparent` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traceparent '{value}': {reason} (expected 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>)")]
pub struct TraceParentError {
    pub value: String,
    pub reason: &'static str,
}

impl TraceContext {
    /// Parses a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`). Versions above `00` are
    /// read by their first four fields, as the specification asks; all-zero ids are invalid.
    pub fn parse(traceparent: &str) -> Result<Self, TraceParentError> {
        let refuse = |reason| TraceParentError {
            value: traceparent.chars().take(80).collect(),
            reason,
        };
        let value = traceparent.trim();
        let mut parts = value.split('-');
        let (Some(version), Some(trace), Some(span), Some(flags)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refuse("fewer than four fields"));
        };
        if version.len() != 2 || version.eq_ignore_ascii_case("ff") || hex_bytes::<1>(version).is_none() {
            return Err(refuse("bad version"));
        }
        if version == "00" && parts.next().is_some() {
            return Err(refuse("version 00 has exactly four fields"));
        }
        let trace_id = hex_bytes::<16>(trace).ok_or_else(|| refuse("the trace id is not 32 lowercase hex digits"))?;
        let span_id = hex_bytes::<8>(span).ok_or_else(|| refuse("the span id is not 16 lowercase hex digits"))?;
        let [flags] = hex_bytes::<1>(flags).ok_or_else(|| refuse("the flags are not 2 hex digits"))?;
        if trace_id == [0; 16] {
            return Err(refuse("the trace id is all zeros"));
        }
        if span_id == [0; 8] {
            return Err(refuse("the span id is all zeros"));
        }
        Ok(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// This context as a W3C `traceparent` header value.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            u8::from(self.sampled)
        )
    }

    /// The trace a task belongs to: its correlation id.
    pub fn trace_id_of(correlation_id: Uuid) -> [u8; 16] {
        *correlation_id.as_bytes()
    }

    /// The context of a task's own span.
    pub fn of_task(task_uuid: Uuid, correlation_id: Uuid, sampled: bool) -> Self {
        Self {
            trace_id: Self::trace_id_of(correlation_id),
            span_id: task_span_id(task_uuid),
            sampled,
        }
    }

    /// A new span in the same trace.
    pub fn child(&self) -> Self {
        Self {
            span_id: new_span_id(),
            ..*self
        }
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

/// The task span's id: the random tail of its UUIDv7 (never all zeros).
pub fn task_span_id(task_uuid: Uuid) -> [u8; 8] {
    let b = task_uuid.as_bytes();
    let mut id = [0u8; 8];
    id.copy_from_slice(&b[8..16]);
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// A fresh random span id.
pub fn new_span_id() -> [u8; 8] {
    loop {
        let id: [u8; 8] = rand::random();
        if id != [0; 8] {
            return id;
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The kind of a span, as OpenTelemetry defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    /// A step attempt: the worker consumes a queued message.
    Consumer,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    Str(String),
    Int(i64),
    Bool(bool),
}

impl From<&str> for AttributeValue {
    fn from(s: &str) -> Self {
        Self::Str(s.to_owned())
    }
}
impl From<String> for AttributeValue {
    fn from(s: String) -> Self {
        Self::Str(s)
    }
}
impl From<i64> for AttributeValue {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}
impl From<bool> for AttributeValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

/// A finished span, ready for export.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub context: TraceContext,
    pub parent_span_id: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(&'static str, AttributeValue)>,
    /// `Some(message)` marks the span as failed.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::parse(tp).unwrap();
        assert!(c.sampled);
        assert_eq!(c.traceparent(), tp);
        let unsampled = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn bad_traceparents_are_refused_with_a_reason() {
        for bad in [
            "",
            "00-abc",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-é4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let e = TraceContext::parse(bad).unwrap_err();
            assert!(e.to_string().contains("invalid traceparent"), "{e}");
        }
        // A later version may carry more fields.
        assert!(TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_ok());
    }

    #[test]
    fn a_task_span_comes_from_its_ids() {
        let task = Uuid::now_v7();
        let correlation = Uuid::now_v7();
        let c = TraceContext::of_task(task, correlation, true);
        assert_eq!(c.trace_id, *correlation.as_bytes());
        assert_eq!(c.span_id, task_span_id(task));
        let child = c.child();
        assert_eq!(child.trace_id, c.trace_id);
        assert_ne!(child.span_id, c.span_id);
    }
}
