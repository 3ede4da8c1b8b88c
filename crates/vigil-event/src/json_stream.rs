//! Flattening JSON bytes straight into an [`Event`], without building a
//! `serde_json::Value` tree: the same fields as [`Event::from_json`].

use crate::{intern, value_from_json, Event, Value};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;
use std::fmt;

/// Flattens one JSON document (an object) into an event.
///
/// # Errors
/// Invalid JSON, or trailing bytes after the document.
pub fn event_from_json_slice(bytes: &[u8]) -> Result<Event, serde_json::Error> {
    let mut event = Event::with_capacity(32);
    let mut path = String::new();
    deserialize_document(
        bytes,
        Seed {
            event: &mut event,
            path: &mut path,
        },
    )?;
    Ok(event)
}

/// Runs `seed` over `bytes` as one JSON document, with nothing after it.
///
/// The bytes are checked as UTF-8 once, whole, so that the parser need
/// not check each string as it meets it (for EVTX records rendered as
/// JSON, 665M → 620M instructions of a parse-only pass over the corpus,
/// callgrind). Bytes that are not UTF-8 go through the byte parser,
/// whose error says where.
///
/// # Errors
/// Invalid JSON, or trailing bytes after the document.
pub fn deserialize_document<'de, S: DeserializeSeed<'de>>(
    bytes: &'de [u8],
    seed: S,
) -> Result<S::Value, serde_json::Error> {
    fn whole<'de, R: serde_json::de::Read<'de>, S: DeserializeSeed<'de>>(
        mut de: serde_json::Deserializer<R>,
        seed: S,
    ) -> Result<S::Value, serde_json::Error> {
        let value = seed.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => whole(serde_json::Deserializer::from_str(text), seed),
        Err(_) => whole(serde_json::Deserializer::from_slice(bytes), seed),
    }
}

/// The scalar methods of a serde `Visitor` whose `Value = ()` and which has
/// a method `fn scalar<E>(self, v: Value) -> Result<(), E>`: every JSON
/// scalar becomes a [`crate::Value`] handed to it. Shared by the streaming
/// flatteners (here and in `vigil-ingest`), which differ only in where a
/// scalar goes.
#[macro_export]
macro_rules! visit_scalars {
    () => {
        fn visit_bool<E>(self, v: bool) -> Result<(), E> {
            self.scalar($crate::Value::Bool(v))
        }

        fn visit_i64<E>(self, v: i64) -> Result<(), E> {
            self.scalar($crate::Value::Int(v))
        }

        fn visit_u64<E>(self, v: u64) -> Result<(), E> {
            self.scalar(match i64::try_from(v) {
                Ok(i) => $crate::Value::Int(i),
                Err(_) => $crate::Value::Float(v as f64),
            })
        }

        fn visit_f64<E>(self, v: f64) -> Result<(), E> {
            self.scalar($crate::Value::Float(v))
        }

        fn visit_str<E>(self, v: &str) -> Result<(), E> {
            self.scalar($crate::Value::Str(v.into()))
        }

        fn visit_string<E>(self, v: String) -> Result<(), E> {
            self.scalar($crate::Value::Str(v.into_boxed_str()))
        }

        fn visit_unit<E>(self) -> Result<(), E> {
            self.scalar($crate::Value::Null)
        }

        fn visit_none<E>(self) -> Result<(), E> {
            self.scalar($crate::Value::Null)
        }
    };
}

struct Seed<'a> {
    event: &'a mut Event,
    path: &'a mut String,
}

impl Seed<'_> {
    fn scalar<E>(self, v: Value) -> Result<(), E> {
        self.event.push(intern(self.path), v);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    crate::visit_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // Arrays are rare and small; a list of scalars becomes a list
        // value, anything holding objects is flattened with indices, as
        // `Event::from_json` does.
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Json>()? {
            items.push(item);
        }
        if items.iter().any(Json::is_object) {
            for (i, item) in items.iter().enumerate() {
                let len = self.path.len();
                self.path.push('.');
                self.path.push_str(&i.to_string());
                let mut sub = Event::new();
                crate::flatten_json_into(item, self.path, &mut sub);
                for (n, v) in sub.fields() {
                    self.event.push(intern(n), v.clone());
                }
                self.path.truncate(len);
            }
            return Ok(());
        }
        let v = value_from_json(&Json::Array(items)).unwrap_or(Value::Null);
        self.scalar(v)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let len = self.path.len();
            if !self.path.is_empty() {
                self.path.push('.');
            }
            self.path.push_str(&key);
            map.next_value_seed(Seed {
                event: self.event,
                path: self.path,
            })?;
            self.path.truncate(len);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_as_the_tree_flattening() {
        for doc in [
            json!({"a": {"b": 1, "c": [1, "x"]}, "d": [{"e": true}, {"f": null}], "f": null, "g": 1.5, "h": u64::MAX, "i": []}),
            json!({"winlog": {"channel": "Security", "event_id": 4625, "event_data": {"TargetUserName": "bob"}}, "@timestamp": "2026"}),
            json!({}),
        ] {
            let stream = event_from_json_slice(doc.to_string().as_bytes()).unwrap();
            assert_eq!(stream, Event::from_json(&doc), "{doc}");
        }
        assert!(event_from_json_slice(b"{\"a\": ").is_err());
        assert!(event_from_json_slice(b"{} x").is_err());
    }
}
