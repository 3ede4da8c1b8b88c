//! Streaming flattening of an EVTX record's JSON rendering.
//!
//! Same result as [`crate::winlog::event_from_evtx_json`], but read
//! straight from the bytes the `evtx` crate renders, with a serde visitor
//! that pushes fields as it meets them: no `serde_json::Value` tree is
//! built per record (only a value that is itself a nested object inside a
//! field, which Windows events almost never have, goes through one).

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;
use std::borrow::Cow;
use std::fmt;
use vigil_event::{intern, value_from_json, Event, Value};

/// Flattens `bytes` (one record as `{"Event": {...}}`) into `event`.
///
/// # Errors
/// When the bytes are not valid JSON.
pub fn flatten_evtx_json(bytes: &[u8], event: &mut Event) -> Result<(), serde_json::Error> {
    vigil_event::deserialize_document(
        bytes,
        Seed {
            event,
            mode: Mode::Root,
        },
    )
}

/// Where in the record the visitor is. Names borrow from the record's
/// bytes where they can: no allocation per field name.
enum Mode<'de> {
    /// The document: `{"Event": …}`.
    Root,
    /// Inside `Event`.
    EventObj,
    /// Inside `System`: children are elements.
    System,
    /// Inside `EventData`: children are elements named by `Name`.
    EventData,
    /// Inside `UserData`: wrappers whose leaves are fields.
    UserData,
    /// Under a `UserData` wrapper: keys are leaf names.
    Leaves,
    /// A `UserData` leaf called `.0`.
    Leaf(Cow<'de, str>),
    /// An element called `.0`: its text, attributes, children.
    Element(Cow<'de, str>),
    /// The attributes of element `.0`.
    Attributes(Cow<'de, str>),
    /// A value to push under `.0`.
    Value(Cow<'de, str>),
}

struct Seed<'a, 'de> {
    event: &'a mut Event,
    mode: Mode<'de>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn push(event: &mut Event, name: &str, value: Value) {
    let value = match value {
        Value::List(items) if items.is_empty() => Value::Null,
        v => v,
    };
    if event.get(name).is_none() {
        event.push(intern(name), value);
    }
}

impl<'de> Seed<'_, 'de> {
    /// Pushes a scalar met in this mode under its name, if it has one.
    fn scalar<E>(self, v: Value) -> Result<(), E> {
        let Seed { event, mode } = self;
        let name = match &mode {
            // `"EventData": null` is an event without data, not a field.
            Mode::EventData if v.is_null() => return Ok(()),
            Mode::EventData => "EventData",
            Mode::Element(n) | Mode::Value(n) | Mode::Leaf(n) => n.as_ref(),
            _ => return Ok(()),
        };
        push(event, name, v);
        Ok(())
    }

    fn child(&mut self, mode: Mode<'de>) -> Seed<'_, 'de> {
        Seed {
            event: self.event,
            mode,
        }
    }
}

impl<'de> Visitor<'de> for Seed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an EVTX record rendered as JSON")
    }

    vigil_event::visit_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // A list of values (unnamed `Data` items): scalars become a list;
        // anything nested is kept as its JSON text, as the tree-based
        // flattening does.
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Json>()? {
            items.push(item);
        }
        let json = Json::Array(items);
        let value = value_from_json(&json).unwrap_or_else(|| Value::Str(json.to_string().into()));
        self.scalar(value)
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        if let Mode::Value(name) = &self.mode {
            // An object where a value was expected: keep its JSON text.
            let name = name.clone();
            let json = Json::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
            push(self.event, &name, Value::Str(json.to_string().into()));
            return Ok(());
        }
        while let Some(owned_key) = map.next_key_seed(Key)? {
            let key: &str = &owned_key;
            let next = match (&self.mode, key) {
                (Mode::Root, "Event") => Some(Mode::EventObj),
                (Mode::Root | Mode::EventObj, "System") => Some(Mode::System),
                (Mode::Root | Mode::EventObj, "EventData") => Some(Mode::EventData),
                (Mode::Root | Mode::EventObj, "UserData") => Some(Mode::UserData),
                (Mode::Root | Mode::EventObj, _) => None,
                (Mode::System, _) => Some(Mode::Element(owned_key.clone())),
                (Mode::EventData, "#attributes") => None,
                (Mode::EventData, _) => Some(Mode::Element(owned_key.clone())),
                (Mode::UserData, _) => Some(Mode::Leaves),
                (Mode::Leaves, "#attributes") => None,
                (Mode::Leaves, _) => Some(Mode::Leaf(owned_key.clone())),
                (Mode::Leaf(_), "#attributes") => None,
                (Mode::Leaf(n), "#text") => Some(Mode::Value(n.clone())),
                (Mode::Leaf(_), _) => Some(Mode::Leaf(owned_key.clone())),
                (Mode::Element(n), "#text") => Some(Mode::Value(n.clone())),
                (Mode::Element(n), "#attributes") => Some(Mode::Attributes(n.clone())),
                (Mode::Element(n), k) => Some(Mode::Element(format!("{n}_{k}").into())),
                (Mode::Attributes(_), "xmlns") => None,
                (Mode::Attributes(n), a) => Some(Mode::Value(format!("{n}_{a}").into())),
                (Mode::Value(_), _) => None,
            };
            match next {
                Some(mode) => map.next_value_seed(self.child(mode))?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

use serde::Deserialize as _;

/// A map key, borrowed from the input when it holds no escapes. (Serde's
/// own `Cow<str>` always copies: a heap allocation per key of every
/// record.)
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::winlog::event_from_evtx_json;
    use serde_json::json;

    fn both(doc: Json) -> (Event, Event) {
        let mut tree = Event::new();
        event_from_evtx_json(&doc, &mut tree);
        let mut stream = Event::new();
        flatten_evtx_json(doc.to_string().as_bytes(), &mut stream).unwrap();
        (tree, stream)
    }

    #[test]
    fn same_fields_as_the_tree_flattening() {
        let docs = [
            json!({"Event": {"#attributes": {"xmlns": "x"}, "System": {
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon", "Guid": "{5770}"}},
                "EventID": 1, "Version": 5, "Channel": "Microsoft-Windows-Sysmon/Operational", "Computer": "pc1",
                "TimeCreated": {"#attributes": {"SystemTime": "2019-01-01T00:00:00Z"}},
                "Security": {"#attributes": {"UserID": "S-1-5-18"}}, "Correlation": null,
                "Keywords": "0x8000000000000000"},
                "EventData": {"Image": "C:\\x.exe", "CommandLine": "x -a", "Empty": null, "Hashes": "SHA1=AB"}}}),
            json!({"Event": {"System": {"EventID": {"#attributes": {"Qualifiers": 16384}, "#text": 7036}},
                "EventData": {"Data": {"#text": ["a", "b"]}, "Binary": "00"},
                "UserData": {"LogFileCleared": {"#attributes": {"xmlns": "y"}, "SubjectUserName": "bob", "Nested": {"#text": "t"}}}}}),
            json!({"Event": {"System": {"EventID": 400}, "EventData": {"Data": ["x", 1, null], "Weird": {"a": {"b": 1}}, "Empty": []}}}),
            json!({"Event": {"System": {"EventID": 1}, "EventData": "just text"}}),
            json!({"Event": {"System": {"EventID": 1}, "EventData": null}}),
            // Keys with escapes cannot be borrowed from the input.
            json!({"Event": {"System": {"EventID": 1}, "EventData": {"Na\"me": "x", "Tab\tKey": "y"}}}),
        ];
        for doc in docs {
            let (tree, stream) = both(doc);
            assert_eq!(tree, stream);
        }
    }

    #[test]
    fn broken_json_is_an_error() {
        let mut e = Event::new();
        assert!(flatten_evtx_json(b"{\"Event\": {", &mut e).is_err());
        assert!(flatten_evtx_json(b"{} trailing", &mut e).is_err());
    }

    /// Bytes that are not UTF-8 are an error that says where, and valid
    /// text reads the same either way in.
    #[test]
    fn bytes_that_are_not_utf8_are_an_error_with_its_place() {
        let mut e = Event::new();
        let bad = b"{\"Event\": {\"EventData\": {\"Data\": \"a\xff\"}}}";
        let err = flatten_evtx_json(bad, &mut e).expect_err("not UTF-8");
        assert_eq!((err.line(), err.column()), (1, 36), "{err}");
        let good = r#"{"Event": {"System": {"EventID": 4688}, "EventData": {"CommandLine": "x \u00e9 \"q\""}}}"#;
        let (mut a, mut b) = (Event::new(), Event::new());
        flatten_evtx_json(good.as_bytes(), &mut a).expect("valid");
        let mut de = serde_json::Deserializer::from_slice(good.as_bytes());
        Seed {
            event: &mut b,
            mode: Mode::Root,
        }
        .deserialize(&mut de)
        .expect("valid");
        assert_eq!(a.entries(), b.entries());
        assert_eq!(a.get("CommandLine"), Some(&Value::Str("x é \"q\"".into())));
    }
}
