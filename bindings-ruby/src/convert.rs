//! JSON values <-> Ruby objects, at the edge.
//!
//! Ruby -> JSON is strict: only nil, true/false, Integer, finite Float, String (valid UTF-8, or
//! convertible to it), Symbol, Array and Hash (String/Symbol/Integer keys) are accepted. Anything
//! else is an error naming where it was found, instead of the silent `to_s` that `JSON.generate`
//! would apply to an arbitrary object.
//!
//! JSON -> Ruby builds plain Hashes with String keys, like `JSON.parse`.

use magnus::encoding::EncodingCapable;
use magnus::rb_sys::AsRawValue;
use magnus::value::{Qfalse, Qtrue, ReprValue};
use magnus::{r_hash::ForEach, Float, Integer, RArray, RHash, RString, Ruby, Symbol, Value};
use serde_json::{Map, Number, Value as Json};

/// Nesting deeper than this is rejected (it also catches self-referencing structures).
const MAX_DEPTH: usize = 128;

/// A Ruby value that has no JSON form.
#[derive(Debug, Clone)]
pub struct JsonError {
    /// Where the value sits, e.g. `result.items[2].price`.
    pub path: String,
    pub message: String,
    /// Nested deeper than [`MAX_DEPTH`]: far over the engine's own nesting limit
    /// ([`tasker_core::limits::MAX_JSON_DEPTH`]), which a step reports as `result_too_deep`.
    pub too_deep: bool,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.message, self.path)
    }
}

/// Converts a Ruby object into JSON; `root` names it in error paths.
pub fn to_json(value: Value, root: &str) -> Result<Json, JsonError> {
    let mut path = String::from(root);
    let mut ancestors = Vec::new();
    convert(value, &mut path, 0, &mut ancestors)
}

fn fail(path: &str, message: String) -> JsonError {
    JsonError {
        path: path.to_owned(),
        message,
        too_deep: false,
    }
}

fn class_name(value: Value) -> String {
    // SAFETY: the name is copied out immediately; no Ruby code runs in between.
    unsafe { value.classname() }.into_owned()
}

fn string(s: RString, path: &str) -> Result<String, JsonError> {
    s.to_string().map_err(|_| {
        let encoding = s.enc_get();
        let name = magnus::encoding::RbEncoding::from(encoding).name().to_owned();
        fail(path, format!("string is not valid UTF-8 (encoding {name})"))
    })
}

/// `ancestors` holds the Arrays and Hashes on the way to `value` (to tell a cycle from a value
/// that is only nested deeply, once [`MAX_DEPTH`] is passed).
fn convert(
    value: Value,
    path: &mut String,
    depth: usize,
    ancestors: &mut Vec<rb_sys::VALUE>,
) -> Result<Json, JsonError> {
    if depth > MAX_DEPTH {
        let mut seen = ancestors.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() < ancestors.len() {
            return Err(fail(
                path,
                format!("nested more than {MAX_DEPTH} levels deep: the structure references itself (a cycle has no JSON form)"),
            ));
        }
        let mut e = fail(
            path,
            format!(
                "nested more than {MAX_DEPTH} levels deep, over the engine's limit of {}",
                tasker_core::limits::MAX_JSON_DEPTH
            ),
        );
        e.too_deep = true;
        return Err(e);
    }
    if value.is_nil() {
        return Ok(Json::Null);
    }
    if Qtrue::from_value(value).is_some() {
        return Ok(Json::Bool(true));
    }
    if Qfalse::from_value(value).is_some() {
        return Ok(Json::Bool(false));
    }
    if let Some(s) = RString::from_value(value) {
        return string(s, path).map(Json::String);
    }
    if let Some(i) = Integer::from_value(value) {
        if let Ok(n) = i.to_i64() {
            return Ok(Json::Number(n.into()));
        }
        if let Ok(n) = i.to_u64() {
            return Ok(Json::Number(n.into()));
        }
        return Err(fail(path, "integer does not fit in 64 bits".into()));
    }
    if let Some(f) = Float::from_value(value) {
        let n = f.to_f64();
        return Number::from_f64(n)
            .map(Json::Number)
            .ok_or_else(|| fail(path, format!("float {n} has no JSON representation")));
    }
    if let Some(sym) = Symbol::from_value(value) {
        return sym
            .name()
            .map(|n| Json::String(n.into_owned()))
            .map_err(|_| fail(path, "symbol name is not valid UTF-8".into()));
    }
    if let Some(array) = RArray::from_value(value) {
        let mut out = Vec::with_capacity(array.len());
        let len = path.len();
        ancestors.push(value.as_raw());
        for (i, item) in array.into_iter().enumerate() {
            path.push_str(&format!("[{i}]"));
            out.push(convert(item, path, depth + 1, ancestors)?);
            path.truncate(len);
        }
        ancestors.pop();
        return Ok(Json::Array(out));
    }
    if let Some(hash) = RHash::from_value(value) {
        let mut out = Map::new();
        let mut failure = None;
        let len = path.len();
        ancestors.push(value.as_raw());
        let iterated = hash.foreach(|k: Value, v: Value| {
            let key = match key(k, path) {
                Ok(key) => key,
                Err(e) => {
                    failure = Some(e);
                    return Ok(ForEach::Stop);
                }
            };
            path.push('.');
            path.push_str(&key);
            let converted = convert(v, path, depth + 1, ancestors);
            path.truncate(len);
            match converted {
                Ok(v) => {
                    out.insert(key, v);
                    Ok(ForEach::Continue)
                }
                Err(e) => {
                    failure = Some(e);
                    Ok(ForEach::Stop)
                }
            }
        });
        ancestors.pop();
        if let Some(e) = failure {
            return Err(e);
        }
        return match iterated {
            Ok(()) => Ok(Json::Object(out)),
            Err(e) => Err(fail(path, format!("hash could not be iterated: {e}"))),
        };
    }
    Err(fail(
        path,
        format!(
            "{} is not a JSON type (use Hash, Array, String, Symbol, Integer, finite Float, true, false or nil)",
            class_name(value)
        ),
    ))
}

fn key(k: Value, path: &str) -> Result<String, JsonError> {
    if let Some(s) = RString::from_value(k) {
        return string(s, path);
    }
    if let Some(sym) = Symbol::from_value(k) {
        return sym
            .name()
            .map(|n| n.into_owned())
            .map_err(|_| fail(path, "symbol key is not valid UTF-8".into()));
    }
    if let Some(i) = Integer::from_value(k) {
        if let Ok(n) = i.to_i64() {
            return Ok(n.to_string());
        }
    }
    Err(fail(
        path,
        format!("hash key of class {} is not a String, Symbol or Integer", class_name(k)),
    ))
}

/// Converts JSON into plain Ruby objects (String keys).
pub fn to_ruby(ruby: &Ruby, value: &Json) -> Value {
    match value {
        Json::Null => ruby.qnil().as_value(),
        Json::Bool(true) => ruby.qtrue().as_value(),
        Json::Bool(false) => ruby.qfalse().as_value(),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                ruby.integer_from_i64(i).as_value()
            } else if let Some(u) = n.as_u64() {
                ruby.integer_from_u64(u).as_value()
            } else {
                ruby.float_from_f64(n.as_f64().unwrap_or(f64::NAN)).as_value()
            }
        }
        Json::String(s) => ruby.str_new(s).as_value(),
        Json::Array(items) => {
            let array = ruby.ary_new_capa(items.len());
            for item in items {
                // Pushing onto a fresh, unfrozen array cannot fail.
                let _ = array.push(to_ruby(ruby, item));
            }
            array.as_value()
        }
        Json::Object(map) => hash(ruby, map).as_value(),
    }
}

/// Converts a JSON object into a Ruby Hash with String keys.
pub fn hash(ruby: &Ruby, map: &Map<String, Json>) -> RHash {
    let hash = ruby.hash_new();
    for (k, v) in map {
        // Storing into a fresh, unfrozen hash cannot fail.
        let _ = hash.aset(ruby.str_new(k), to_ruby(ruby, v));
    }
    hash
}

/// Serialises any serde value (a core record) into Ruby objects.
pub fn serialize<T: serde::Serialize>(ruby: &Ruby, value: &T) -> Result<Value, serde_json::Error> {
    Ok(to_ruby(ruby, &serde_json::to_value(value)?))
}
