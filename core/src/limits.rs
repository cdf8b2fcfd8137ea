//! One size limit and one nesting limit for every JSON value the core stores (task contexts,
//! step results, metadata, error records), and the normalisation of text the databases cannot
//! hold.
//!
//! Why here, once: PostgreSQL's `jsonb` rejects `\u0000` and serde_json refuses to read back
//! values nested deeper than 128 levels. A value that the engine accepted but cannot store or
//! read back would fail a whole batch of completions, or every claim on its queue. So every
//! value is checked *before* it is written, with the same limits on both backends and from every
//! language.

use serde_json::{Map, Value};

/// Largest JSON value (serialized, compact) the engine stores: 1 MiB.
pub const MAX_JSON_BYTES: usize = 1024 * 1024;

/// Deepest nesting of arrays/objects the engine stores. Stored values are wrapped a few levels
/// deeper on the way out (dependency results by name, audit metadata), and serde_json reads back
/// at most 128 levels, so this leaves ample headroom.
pub const MAX_JSON_DEPTH: usize = 64;

/// Longest error message or backtrace kept, in bytes; longer ones are cut at a char boundary.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// What is wrong with a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitViolation {
    /// Serialized size in bytes is over [`MAX_JSON_BYTES`].
    TooLarge { bytes: usize },
    /// Nesting is deeper than [`MAX_JSON_DEPTH`].
    TooDeep,
}

impl LimitViolation {
    /// A sentence naming `what` and the limit, e.g. "result is 2000000 bytes as JSON, over the
    /// limit of 1048576 bytes".
    pub fn describe(&self, what: &str) -> String {
        match self {
            LimitViolation::TooLarge { bytes } => {
                format!("{what} is {bytes} bytes as JSON, over the limit of {MAX_JSON_BYTES} bytes")
            }
            LimitViolation::TooDeep => {
                format!("{what} is nested more than {MAX_JSON_DEPTH} levels deep, over the nesting limit")
            }
        }
    }
}

/// Checks depth first (iteratively, so a hostile value cannot overflow the stack), then size.
pub fn check(value: &Value) -> Result<(), LimitViolation> {
    if depth_exceeds(value, MAX_JSON_DEPTH) {
        return Err(LimitViolation::TooDeep);
    }
    let bytes = serialized_len(value);
    if bytes > MAX_JSON_BYTES {
        return Err(LimitViolation::TooLarge { bytes });
    }
    Ok(())
}

/// Whether `value` nests arrays/objects more than `limit` levels deep (a scalar is depth 0).
pub fn depth_exceeds(value: &Value, limit: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth + 1 > limit {
            return true;
        }
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    false
}

/// Length of `value` serialized as compact JSON, without building the string. Call only on a
/// value within [`MAX_JSON_DEPTH`] (the serializer recurses).
pub fn serialized_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serializing a `Value` into a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// JSON pointer of the first string or key containing `\u0000`, if any.
pub fn find_nul(value: &Value) -> Option<String> {
    let mut stack: Vec<(&Value, String)> = vec![(value, String::new())];
    while let Some((v, path)) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => return Some(path),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    stack.push((item, format!("{path}/{i}")));
                }
            }
            Value::Object(map) => {
                for (k, item) in map.iter() {
                    let at = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                    if k.contains('\0') {
                        return Some(at);
                    }
                    stack.push((item, at));
                }
            }
            _ => {}
        }
    }
    None
}

/// Replaces every `\u0000` in strings and keys with U+FFFD, in place. Iterative.
pub fn replace_nul(value: &mut Value) {
    if find_nul(value).is_none() {
        return;
    }
    let mut stack: Vec<&mut Value> = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{FFFD}"),
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    let old = std::mem::take(map);
                    let mut renamed = Map::new();
                    for (k, item) in old {
                        renamed.insert(k.replace('\0', "\u{FFFD}"), item);
                    }
                    *map = renamed;
                }
                stack.extend(map.values_mut());
            }
            _ => {}
        }
    }
}

/// `text` with `\u0000` replaced and cut to [`MAX_TEXT_BYTES`] (at a char boundary, with a
/// marker saying how much was cut).
pub fn clean_text(text: &str) -> String {
    let mut out = if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text.to_owned()
    };
    if out.len() > MAX_TEXT_BYTES {
        let marker = format!("… [cut: {} bytes, limit {MAX_TEXT_BYTES}]", out.len());
        // The marker counts against the limit too.
        let mut cut = MAX_TEXT_BYTES - marker.len();
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str(&marker);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut v = json!(1);
        for i in 0..levels {
            // Not `json!([v])`: that serializes `v` again, recursively.
            v = if i % 2 == 0 {
                Value::Array(vec![v])
            } else {
                Value::Object(Map::from_iter([("k".to_owned(), v)]))
            };
        }
        v
    }

    #[test]
    fn depth_is_counted_in_containers() {
        assert!(!depth_exceeds(&json!(1), 0));
        assert!(!depth_exceeds(&nested(MAX_JSON_DEPTH), MAX_JSON_DEPTH));
        assert!(depth_exceeds(&nested(MAX_JSON_DEPTH + 1), MAX_JSON_DEPTH));
        assert_eq!(check(&nested(MAX_JSON_DEPTH + 1)), Err(LimitViolation::TooDeep));
    }

    #[test]
    fn a_very_deep_value_does_not_overflow_the_stack() {
        // Built without recursion, checked without recursion; dropped with serde_json's own
        // (recursive) Drop only up to a depth the test thread's stack holds.
        let v = nested(20_000);
        assert!(depth_exceeds(&v, MAX_JSON_DEPTH));
        std::mem::forget(v);
    }

    #[test]
    fn size_limit_is_exact() {
        let at = json!({ "a": "x".repeat(MAX_JSON_BYTES - 8) });
        assert_eq!(serialized_len(&at), MAX_JSON_BYTES);
        assert_eq!(check(&at), Ok(()));
        let over = json!({ "a": "x".repeat(MAX_JSON_BYTES - 7) });
        assert_eq!(
            check(&over),
            Err(LimitViolation::TooLarge {
                bytes: MAX_JSON_BYTES + 1
            })
        );
        assert!(LimitViolation::TooLarge { bytes: 5 }
            .describe("result")
            .contains("1048576"));
    }

    #[test]
    fn nul_is_found_and_replaced_in_values_and_keys() {
        let mut v = json!({"ok": ["a", "b\u{0}c"], "k\u{0}ey": {"x/y": "\u{0}"}});
        assert!(find_nul(&v).is_some());
        replace_nul(&mut v);
        assert_eq!(find_nul(&v), None);
        assert_eq!(v["ok"][1], json!("b\u{FFFD}c"));
        assert_eq!(v["k\u{FFFD}ey"]["x/y"], json!("\u{FFFD}"));
        assert_eq!(
            find_nul(&json!({"a": {"b/c": ["\u{0}"]}})).as_deref(),
            Some("/a/b~1c/0")
        );
    }

    #[test]
    fn text_is_cleaned_and_cut_at_a_char_boundary() {
        assert_eq!(clean_text("a\u{0}b"), "a\u{FFFD}b");
        let long = "é".repeat(MAX_TEXT_BYTES);
        let cut = clean_text(&long);
        assert!(cut.len() <= MAX_TEXT_BYTES, "{}", cut.len());
        assert!(cut.contains("[cut:"));
    }
}
