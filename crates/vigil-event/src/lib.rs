//! Vigil's event model.
//!
//! An [`Event`] is a flat list of named fields, each holding a typed
//! [`Value`], plus [`EventMeta`] that says where the event came from. Nested
//! input (JSON objects, EVTX `EventData`) is flattened by the readers in
//! `vigil-ingest` before it gets here, so detection never walks a tree: a
//! field is found by its full name.
//!
//! Field names are case-sensitive, as in Sigma. An event may hold the same
//! name twice only if a reader chose to; [`Event::get`] returns the first.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod json_stream;
pub mod json_write;

pub use json_stream::{deserialize_document, event_from_json_slice};

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;

/// Past this many distinct names a thread stops interning new ones.
const INTERN_LIMIT: usize = 1 << 16;

/// The interned names of one thread, hashed by `foldhash` with a seed
/// drawn per process. Field names can come from hostile input, so the
/// hash must be keyed, as std's SipHash is, so that no one can craft
/// names that collide; `foldhash` is several times cheaper. With
/// SipHash, interning took 63.9M of the 702M instructions of a
/// parse-only pass over the EVTX corpus; with `foldhash`, 26.7M of 665M
/// (callgrind).
type Names = HashMap<Box<str>, Arc<str>, foldhash::fast::RandomState>;

thread_local! {
    static NAMES: RefCell<Names> = RefCell::new(Names::default());
}

/// Returns a shared copy of a field name.
///
/// Log sources repeat the same few dozen field names; readers that intern
/// them make every event of a source point at the same names, which keeps
/// them in cache and lets detection cache name lookups by pointer. Names
/// are interned per thread, up to a bound (past it a fresh copy is
/// returned), so hostile input cannot grow the table without limit.
pub fn intern(name: &str) -> Arc<str> {
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some(n) = names.get(name) {
            return n.clone();
        }
        let n: Arc<str> = name.into();
        if names.len() < INTERN_LIMIT {
            names.insert(name.into(), n.clone());
        }
        n
    })
}

/// A field's value.
///
/// Numbers keep their type so that Sigma's numeric modifiers (`lt`, `gt`, …)
/// can compare them without parsing text, while string matching uses
/// [`Value::write_text`] to see the same decimal text a log would show.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An explicit null (JSON `null`, an empty EVTX element with no text).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    Str(Box<str>),
    /// A list of values; a matcher matches the list when it matches any item.
    List(Vec<Value>),
}

impl Value {
    /// Writes the value as text into `buf` (cleared first) and returns it,
    /// or `None` for `Null` and `List`, which have no single text form.
    ///
    /// Strings are returned without copying.
    pub fn text<'a>(&'a self, buf: &'a mut String) -> Option<&'a str> {
        match self {
            Value::Str(s) => Some(s),
            Value::Null | Value::List(_) => None,
            other => {
                buf.clear();
                // Writing to a String cannot fail.
                let _ = other.write_text(buf);
                Some(buf.as_str())
            }
        }
    }

    /// Writes the textual form of a scalar: `true`/`false`, decimal
    /// numbers, the string itself; nothing for `Null`; a list's items
    /// joined by `, `.
    pub fn write_text(&self, out: &mut impl fmt::Write) -> fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Bool(b) => out.write_str(if *b { "true" } else { "false" }),
            // Rule matching writes every integer field of every event as
            // text: `itoa` skips the formatting machinery.
            Value::Int(i) => out.write_str(itoa::Buffer::new().format(*i)),
            Value::Float(f) => write!(out, "{f}"),
            Value::Str(s) => out.write_str(s),
            Value::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.write_str(", ")?;
                    }
                    item.write_text(out)?;
                }
                Ok(())
            }
        }
    }

    /// The value as a number, if it is one or is a string holding one
    /// (surrounding white space allowed, as in `" 42"`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
    }

    /// The value as an integer, if it is one or a string holding a decimal
    /// integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            Value::Str(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        }
    }

    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_text(f)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s.into_boxed_str())
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

/// Where an event came from and when it happened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventMeta {
    /// Event time as nanoseconds since the Unix epoch (UTC), if known.
    pub timestamp_ns: Option<i64>,
    /// The file, listener or stream the event was read from.
    pub source: Option<Arc<str>>,
    /// The record number inside the source (EVTX `EventRecordID`, JSON line
    /// number), if any.
    pub record_id: Option<u64>,
    /// The product the event is known to come from (`windows` for EVTX).
    /// Sigma rules for another product never match it; `None` means
    /// unknown, and then only the rule's log-source conditions decide.
    pub product: Option<Arc<str>>,
}

/// One event: named fields and metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    /// Names are shared (`Arc`) so that readers can intern them: events
    /// from one source then point at the same few dozen names, which keeps
    /// them in cache and lets consumers cache lookups by pointer.
    fields: Vec<(Arc<str>, Value)>,
    /// Where the event came from and when it happened.
    pub meta: EventMeta,
}

impl Event {
    /// An empty event.
    pub fn new() -> Self {
        Event::default()
    }

    /// An empty event with room for `n` fields.
    pub fn with_capacity(n: usize) -> Self {
        Event {
            fields: Vec::with_capacity(n),
            meta: EventMeta::default(),
        }
    }

    /// Appends a field. A name already present is kept too; [`Event::get`]
    /// returns the first one.
    pub fn push(&mut self, name: impl Into<Arc<str>>, value: impl Into<Value>) {
        self.fields.push((name.into(), value.into()));
    }

    /// Sets a field, replacing the first one of that name if present.
    pub fn set(&mut self, name: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.fields.iter_mut().find(|(n, _)| &**n == name) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((name.into(), value)),
        }
    }

    /// The value of the first field named `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v)
    }

    /// The text of field `name`, if it is a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Renames the first field called `from` to `to`.
    pub fn rename(&mut self, from: &str, to: &str) {
        if let Some(slot) = self.fields.iter_mut().find(|(n, _)| &**n == from) {
            slot.0 = to.into();
        }
    }

    /// The shared name and value of the field at position `i`.
    pub fn field_entry(&self, i: usize) -> Option<&(Arc<str>, Value)> {
        self.fields.get(i)
    }

    /// All fields with their shared names.
    pub fn entries(&self) -> &[(Arc<str>, Value)] {
        &self.fields
    }

    /// The field at position `i` (in the order added).
    pub fn field_at(&self, i: usize) -> Option<(&str, &Value)> {
        self.fields.get(i).map(|(n, v)| (&**n, v))
    }

    /// All fields in the order they were added.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(n, v)| (&**n, v))
    }

    /// How many fields the event has.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the event has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Builds an event from a JSON value: objects are flattened with `.`
    /// between the keys (`{"a":{"b":1}}` has field `a.b`), arrays of
    /// scalars become [`Value::List`], arrays holding objects are flattened
    /// with their index (`a.0.b`).
    pub fn from_json(value: &serde_json::Value) -> Self {
        let mut event = Event::new();
        let mut path = String::new();
        flatten_json(value, &mut path, &mut event);
        event
    }

    /// Converts the fields to a flat JSON object (field name → value).
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::with_capacity(self.fields.len());
        for (name, value) in &self.fields {
            map.entry(name.to_string())
                .or_insert_with(|| value_to_json(value));
        }
        serde_json::Value::Object(map)
    }
}

/// Converts a [`Value`] to JSON.
pub fn value_to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::Str(s) => serde_json::Value::String(s.to_string()),
        Value::List(items) => items.iter().map(value_to_json).collect(),
    }
}

/// Converts a JSON scalar or array of scalars to a [`Value`]; `None` for
/// objects and arrays that hold objects.
pub fn value_from_json(value: &serde_json::Value) -> Option<Value> {
    Some(match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::Str(s.as_str().into()),
        serde_json::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(value_from_json(item)?);
            }
            Value::List(out)
        }
        serde_json::Value::Object(_) => return None,
    })
}

/// Flattens `value` under `path` into `event` (shared with the streaming
/// flattener for arrays of objects).
pub(crate) fn flatten_json_into(value: &serde_json::Value, path: &mut String, event: &mut Event) {
    flatten_json(value, path, event)
}

fn flatten_json(value: &serde_json::Value, path: &mut String, event: &mut Event) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                flatten_json(child, path, event);
                path.truncate(len);
            }
        }
        serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            for (i, child) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, ".{i}");
                flatten_json(child, path, event);
                path.truncate(len);
            }
        }
        scalar => {
            if let Some(v) = value_from_json(scalar) {
                event.push(intern(path), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_write_as_text() {
        let text = |v: Value| {
            let mut out = String::new();
            v.write_text(&mut out).unwrap();
            out
        };
        assert_eq!(text(Value::Int(-42)), "-42");
        assert_eq!(text(Value::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(text(Value::Int(4688)), "4688");
        assert_eq!(text(Value::Bool(true)), "true");
        assert_eq!(text(Value::Bool(false)), "false");
        assert_eq!(text(Value::Float(1.5)), "1.5");
        assert_eq!(text(Value::Null), "");
        assert_eq!(
            text(Value::List(vec![Value::Int(1), Value::Str("a".into())])),
            "1, a"
        );
    }

    #[test]
    fn written_fields_are_what_to_json_builds() {
        let mut e = Event::new();
        e.push("a", "x \"q\" é");
        e.push("n", 42);
        e.push("f", Value::Float(1.5));
        e.push("nan", Value::Float(f64::NAN));
        e.push("z", Value::Null);
        e.push("a", "second a is dropped");
        e.push(
            "l",
            Value::List(vec![Value::Int(1), Value::from("y"), Value::Bool(false)]),
        );
        let mut written = Vec::new();
        json_write::write_fields(&mut written, &e);
        assert_eq!(
            String::from_utf8(written).unwrap(),
            serde_json::to_string(&e.to_json()).unwrap()
        );
    }

    #[test]
    fn flattens_nested_json() {
        let json = serde_json::json!({"a": {"b": 1, "c": [1, "x"]}, "d": [{"e": true}], "f": null});
        let event = Event::from_json(&json);
        assert_eq!(event.get("a.b"), Some(&Value::Int(1)));
        assert_eq!(
            event.get("a.c"),
            Some(&Value::List(vec![Value::Int(1), Value::from("x")]))
        );
        assert_eq!(event.get("d.0.e"), Some(&Value::Bool(true)));
        assert_eq!(event.get("f"), Some(&Value::Null));
        assert_eq!(event.get("a"), None);
    }

    #[test]
    fn text_of_scalars() {
        let mut buf = String::new();
        assert_eq!(Value::Int(-4688).text(&mut buf), Some("-4688"));
        assert_eq!(Value::Bool(true).text(&mut buf), Some("true"));
        assert_eq!(Value::Null.text(&mut buf), None);
        assert_eq!(Value::from(" 12 ").as_i64(), Some(12));
        assert_eq!(Value::from("1e3").as_f64(), Some(1000.0));
        assert_eq!(Value::from("inf").as_f64(), None);
    }

    #[test]
    fn interned_names_are_shared() {
        let a = intern("CommandLine");
        let b = intern("CommandLine");
        assert!(Arc::ptr_eq(&a, &b));
        let e1 = Event::from_json(&serde_json::json!({"x": 1}));
        let e2 = Event::from_json(&serde_json::json!({"x": 2}));
        assert!(Arc::ptr_eq(&e1.entries()[0].0, &e2.entries()[0].0));
    }

    #[test]
    fn set_replaces_and_rename_moves() {
        let mut e = Event::new();
        e.push("A", "1");
        e.set("A", "2");
        e.set("B", 3);
        e.rename("A", "C");
        assert_eq!(e.get_str("C"), Some("2"));
        assert_eq!(e.get("A"), None);
        assert_eq!(e.len(), 2);
        assert_eq!(e.to_json(), serde_json::json!({"C": "2", "B": 3}));
    }
}
