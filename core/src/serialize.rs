//! Turning a Rust handler's typed values into JSON, refusing what JSON cannot hold.
//!
//! `serde_json::to_value` and `json!` write NaN and ±infinity as `null` without a word, so a
//! handler's `f64::NAN` would be stored as a silent `null`. [`to_json`] walks the value first and
//! names the first non-finite number by its path (`result.items[2].price`, the same path syntax
//! the Python, Ruby and TypeScript packages report), so the Rust API refuses it the way the other
//! languages do.
//!
//! ```
//! use tasker_core::serialize::to_json;
//!
//! #[derive(serde::Serialize)]
//! struct Quote { price: f64 }
//!
//! assert_eq!(to_json(&Quote { price: 2.5 }, "result").unwrap()["price"], 2.5);
//! let err = to_json(&Quote { price: f64::NAN }, "result").unwrap_err();
//! assert_eq!(err.path, "result.price");
//! assert_eq!(err.to_string(), "result.price is NaN, which JSON cannot represent");
//! ```

use std::fmt;

use serde::ser::{self, Impossible, Serialize};
use serde_json::Value;

/// A value that has no JSON form, and where in it the problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotJson {
    /// Where the problem is: the root's name, then `.key` and `[index]` steps.
    pub path: String,
    /// What is wrong there.
    pub reason: String,
}

impl fmt::Display for NotJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is {}", self.path, self.reason)
    }
}

impl std::error::Error for NotJson {}

/// `value` as JSON, or where it has no JSON form: a non-finite number, a map key that is not a
/// string or number, or a `Serialize` impl that fails. `root` names the value in the path.
pub fn to_json<T: Serialize + ?Sized>(value: &T, root: &str) -> Result<Value, NotJson> {
    let mut probe = Probe {
        path: root.to_owned(),
        found: None,
    };
    if value.serialize(&mut probe).is_err() || probe.found.is_some() {
        return Err(probe.found.unwrap_or_else(|| NotJson {
            path: root.to_owned(),
            reason: "not serializable".into(),
        }));
    }
    serde_json::to_value(value).map_err(|e| NotJson {
        path: root.to_owned(),
        reason: format!("not serializable: {e}"),
    })
}

/// Appends one object key to a path: `.key` for an identifier-like key, `["odd key"]` otherwise.
pub(crate) fn path_step_key(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        path.push('.');
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&serde_json::to_string(key).unwrap_or_default());
        path.push(']');
    }
}

/// A serializer that produces nothing and records the first non-finite float, with its path.
struct Probe {
    path: String,
    found: Option<NotJson>,
}

/// The probe's error only stops the walk; what went wrong is in `Probe::found`.
#[derive(Debug)]
struct Stop(String);

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Stop(msg.to_string())
    }
}

impl Probe {
    fn fail(&mut self, reason: String) -> Stop {
        if self.found.is_none() {
            self.found = Some(NotJson {
                path: self.path.clone(),
                reason,
            });
        }
        Stop(String::new())
    }

    fn float(&mut self, v: f64) -> Result<(), Stop> {
        if v.is_finite() {
            Ok(())
        } else {
            let shown = if v.is_nan() { "NaN".to_owned() } else { v.to_string() };
            Err(self.fail(format!("{shown}, which JSON cannot represent")))
        }
    }

    /// Runs `value` one path step further down.
    fn nested<T: Serialize + ?Sized>(&mut self, step: PathStep<'_>, value: &T) -> Result<(), Stop> {
        let len = self.path.len();
        match step {
            PathStep::Key(key) => path_step_key(&mut self.path, key),
            PathStep::Index(i) => self.path.push_str(&format!("[{i}]")),
        }
        let outcome = value.serialize(&mut *self);
        self.path.truncate(len);
        outcome
    }
}

enum PathStep<'a> {
    Key(&'a str),
    Index(usize),
}

macro_rules! accept {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method(self, _: $ty) -> Result<(), Stop> {
            Ok(())
        }
    )*};
}

impl<'a> ser::Serializer for &'a mut Probe {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = MapProbe<'a>;
    type SerializeStruct = Fields<'a>;
    type SerializeStructVariant = Fields<'a>;

    accept!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_f32(self, v: f32) -> Result<(), Stop> {
        self.float(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Stop> {
        self.float(v)
    }
    fn serialize_none(self) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Stop> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> Result<(), Stop> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), Stop> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        self.nested(PathStep::Key(variant), value)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'a>, Stop> {
        Ok(Seq { probe: self, index: 0 })
    }
    fn serialize_tuple(self, _: usize) -> Result<Seq<'a>, Stop> {
        Ok(Seq { probe: self, index: 0 })
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Seq<'a>, Stop> {
        Ok(Seq { probe: self, index: 0 })
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Seq<'a>, Stop> {
        Ok(Seq { probe: self, index: 0 })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapProbe<'a>, Stop> {
        Ok(MapProbe { probe: self, key: None })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Fields<'a>, Stop> {
        Ok(Fields { probe: self })
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Fields<'a>, Stop> {
        Ok(Fields { probe: self })
    }
}

struct Seq<'a> {
    probe: &'a mut Probe,
    index: usize,
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        let i = self.index;
        self.index += 1;
        self.probe.nested(PathStep::Index(i), value)
    }
}

macro_rules! seq_like {
    ($($trait:ident :: $method:ident),* $(,)?) => {$(
        impl ser::$trait for Seq<'_> {
            type Ok = ();
            type Error = Stop;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
                self.element(value)
            }
            fn end(self) -> Result<(), Stop> {
                Ok(())
            }
        }
    )*};
}

seq_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

struct MapProbe<'a> {
    probe: &'a mut Probe,
    key: Option<String>,
}

impl ser::SerializeMap for MapProbe<'_> {
    type Ok = ();
    type Error = Stop;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Stop> {
        match key.serialize(KeyName) {
            Ok(name) => {
                self.key = Some(name);
                Ok(())
            }
            Err(Stop(reason)) => Err(self.probe.fail(reason)),
        }
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        let key = self.key.take().unwrap_or_default();
        self.probe.nested(PathStep::Key(&key), value)
    }
    fn end(self) -> Result<(), Stop> {
        Ok(())
    }
}

struct Fields<'a> {
    probe: &'a mut Probe,
}

macro_rules! fields_like {
    ($($trait:ident),* $(,)?) => {$(
        impl ser::$trait for Fields<'_> {
            type Ok = ();
            type Error = Stop;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Stop> {
                self.probe.nested(PathStep::Key(key), value)
            }
            fn end(self) -> Result<(), Stop> {
                Ok(())
            }
        }
    )*};
}

fields_like!(SerializeStruct, SerializeStructVariant);

/// A map key as JSON would write it: strings as they are, numbers and booleans as text.
struct KeyName;

fn key_refused(what: &str) -> Stop {
    Stop(format!("a map with a {what} key; JSON object keys are strings"))
}

macro_rules! key_as_text {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method(self, v: $ty) -> Result<String, Stop> {
            Ok(v.to_string())
        }
    )*};
}

impl ser::Serializer for KeyName {
    type Ok = String;
    type Error = Stop;
    type SerializeSeq = Impossible<String, Stop>;
    type SerializeTuple = Impossible<String, Stop>;
    type SerializeTupleStruct = Impossible<String, Stop>;
    type SerializeTupleVariant = Impossible<String, Stop>;
    type SerializeMap = Impossible<String, Stop>;
    type SerializeStruct = Impossible<String, Stop>;
    type SerializeStructVariant = Impossible<String, Stop>;

    key_as_text!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
    );

    fn serialize_f32(self, v: f32) -> Result<String, Stop> {
        Err(key_refused(&format!("float ({v})")))
    }
    fn serialize_f64(self, v: f64) -> Result<String, Stop> {
        Err(key_refused(&format!("float ({v})")))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, Stop> {
        Err(key_refused("bytes"))
    }
    fn serialize_none(self) -> Result<String, Stop> {
        Err(key_refused("None"))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<String, Stop> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<String, Stop> {
        Err(key_refused("unit"))
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<String, Stop> {
        Err(key_refused(name))
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<String, Stop> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<String, Stop> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<String, Stop> {
        Err(key_refused(name))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Stop> {
        Err(key_refused("sequence"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Stop> {
        Err(key_refused("tuple"))
    }
    fn serialize_tuple_struct(self, name: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Stop> {
        Err(key_refused(name))
    }
    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Stop> {
        Err(key_refused(name))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Stop> {
        Err(key_refused("map"))
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Self::SerializeStruct, Stop> {
        Err(key_refused(name))
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Stop> {
        Err(key_refused(name))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde_json::json;

    use super::*;

    #[derive(serde::Serialize)]
    struct Line {
        sku: String,
        price: f32,
    }

    #[test]
    fn finite_values_convert_like_serde_json() {
        let lines = vec![Line {
            sku: "a".into(),
            price: 1.5,
        }];
        assert_eq!(
            to_json(&lines, "result").expect("json"),
            json!([{"sku": "a", "price": 1.5}])
        );
        assert_eq!(
            to_json(&BTreeMap::from([(7, "x")]), "m").expect("json"),
            json!({"7": "x"})
        );
    }

    #[test]
    fn the_first_non_finite_number_is_named_by_its_path() {
        let lines = vec![
            Line {
                sku: "a".into(),
                price: 1.0,
            },
            Line {
                sku: "b".into(),
                price: f32::INFINITY,
            },
        ];
        let err = to_json(&json!({"ok": 1}), "result")
            .map(|_| ())
            .and(to_json(&lines, "result"));
        assert_eq!(
            err.expect_err("infinite"),
            NotJson {
                path: "result[1].price".into(),
                reason: "inf, which JSON cannot represent".into()
            }
        );
        let map = HashMap::from([("odd key", vec![f64::NAN])]);
        assert_eq!(
            to_json(&map, "metadata").expect_err("nan").path,
            r#"metadata["odd key"][0]"#
        );
        let err = to_json(&HashMap::from([(vec![1], 1)]), "metadata").expect_err("key");
        assert!(err.reason.contains("JSON object keys are strings"), "{err}");
    }
}
