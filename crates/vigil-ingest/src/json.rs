//! JSON inputs: one object, an array of objects, or NDJSON (one object per
//! line), optionally gzip-compressed.
//!
//! Objects are flattened with `.` between keys. A document that looks like
//! an EVTX record rendered as JSON (`{"Event": {"System": …}}`) is
//! flattened like an EVTX record; a Winlogbeat document gets EVTX-style
//! aliases (`winlog.channel` → `Channel`). Everything else keeps its own
//! field names.

use crate::fieldmap::FieldMap;
use crate::winlog::event_from_evtx_json;
use crate::{IngestError, Position};
use serde_json::Value as Json;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;
use vigil_event::Event;

/// Turns one JSON document into an event with the shipped field mappings
/// (see the module docs).
pub fn event_from_json(doc: &Json) -> Event {
    event_from_json_with(doc, FieldMap::builtin())
}

/// Turns one JSON document into an event with the given field mappings.
pub fn event_from_json_with(doc: &Json, map: &FieldMap) -> Event {
    if doc.get("Event").and_then(|e| e.get("System")).is_some() {
        let mut e = Event::with_capacity(32);
        event_from_evtx_json(doc, &mut e);
        e.meta.product = Some("windows".into());
        return e;
    }
    let mut e = Event::from_json(doc);
    map.apply(&mut e);
    e
}

/// Turns one JSON document, as bytes, into an event with the given field
/// mappings, without building a JSON tree for it (the usual case); a
/// document in the shape of an EVTX record goes the tree way.
///
/// # Errors
/// The bytes are not one valid JSON document.
pub fn event_from_json_bytes_with(
    bytes: &[u8],
    map: &FieldMap,
) -> Result<Event, serde_json::Error> {
    let mut e = vigil_event::event_from_json_slice(bytes)?;
    if e.fields().any(|(n, _)| n.starts_with("Event.System.")) {
        let doc: Json = serde_json::from_slice(bytes)?;
        return Ok(event_from_json_with(&doc, map));
    }
    map.apply(&mut e);
    Ok(e)
}

/// Opens `reader`, transparently gunzipping when it starts with the gzip
/// magic bytes.
pub fn maybe_gunzip<'a, R: Read + 'a>(reader: R) -> std::io::Result<Box<dyn BufRead + 'a>> {
    let mut buf = BufReader::with_capacity(1 << 16, reader);
    let head = buf.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(buf),
        )))
    } else {
        Ok(Box::new(buf))
    }
}

/// Reads JSON events from `reader`: NDJSON when the first non-blank byte
/// starts an object and the input holds one object per line; a single
/// object or an array of objects otherwise. Each event, or the error for
/// each line that does not parse, goes to `on_item`.
///
/// # Errors
/// I/O errors reading the source; parse errors are passed to `on_item`.
pub fn read_json<R: Read>(
    source: &Arc<str>,
    reader: R,
    on_item: impl FnMut(Result<Event, IngestError>),
) -> Result<(), IngestError> {
    read_json_with(source, reader, FieldMap::builtin(), on_item)
}

/// [`read_json`] with the given field mappings.
///
/// # Errors
/// I/O errors reading the source; parse errors are passed to `on_item`.
pub fn read_json_with<R: Read>(
    source: &Arc<str>,
    reader: R,
    map: &FieldMap,
    mut on_item: impl FnMut(Result<Event, IngestError>),
) -> Result<(), IngestError> {
    let event_from_json = |doc: &Json| event_from_json_with(doc, map);
    let io_err = |e: std::io::Error| IngestError {
        source: source.clone(),
        position: Position::Source,
        reason: e.to_string(),
    };
    let mut reader = maybe_gunzip(reader).map_err(io_err)?;
    // Peek at the first non-blank byte.
    let first = loop {
        let buf = reader.fill_buf().map_err(io_err)?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                let b = buf[i];
                reader.consume(i);
                break b;
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    if first == b'[' {
        let mut text = Vec::new();
        reader.read_to_end(&mut text).map_err(io_err)?;
        return match serde_json::from_slice::<Json>(&text) {
            Ok(Json::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if item.is_object() {
                        on_item(Ok(with_meta(event_from_json(item), source, i as u64 + 1)));
                    } else {
                        on_item(Err(IngestError {
                            source: source.clone(),
                            position: Position::Record(i as u64),
                            reason: "array item is not an object".into(),
                        }));
                    }
                }
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => {
                on_item(Err(IngestError {
                    source: source.clone(),
                    position: Position::Line(e.line() as u64),
                    reason: format!("invalid JSON: {e}"),
                }));
                Ok(())
            }
        };
    }
    // One object per line; a pretty-printed single object spanning lines
    // is handled by falling back to a streaming parse of the rest.
    let mut line = String::new();
    let mut n: u64 = 0;
    let mut pending: Option<(u64, String)> = None;
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(io_err)?;
        if read == 0 {
            break;
        }
        n += 1;
        if let Some((start, buf)) = pending.as_mut() {
            buf.push_str(&line);
            if let Ok(doc) = serde_json::from_str::<Json>(buf) {
                on_item(Ok(with_meta(event_from_json(&doc), source, *start)));
                pending = None;
            }
            continue;
        }
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        match serde_json::from_str::<Json>(t) {
            Ok(doc @ Json::Object(_)) => on_item(Ok(with_meta(event_from_json(&doc), source, n))),
            Ok(_) => on_item(Err(IngestError {
                source: source.clone(),
                position: Position::Line(n),
                reason: "line is JSON but not an object".into(),
            })),
            Err(e) if e.is_eof() && t.starts_with('{') => pending = Some((n, line.clone())),
            Err(e) => on_item(Err(IngestError {
                source: source.clone(),
                position: Position::Line(n),
                reason: format!("invalid JSON: {e}"),
            })),
        }
    }
    if let Some((start, _)) = pending {
        on_item(Err(IngestError {
            source: source.clone(),
            position: Position::Line(start),
            reason: "invalid JSON: object is not closed before the end of input".into(),
        }));
    }
    Ok(())
}

fn with_meta(mut e: Event, source: &Arc<str>, line: u64) -> Event {
    e.meta.source = Some(source.clone());
    if e.meta.record_id.is_none() {
        e.meta.record_id = e
            .get("EventRecordID")
            .and_then(|v| v.as_i64())
            .map(|v| v as u64)
            .or(Some(line));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8]) -> (Vec<Event>, Vec<IngestError>) {
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        read_json(&Arc::from("t"), input, |r| match r {
            Ok(e) => ok.push(e),
            Err(e) => bad.push(e),
        })
        .unwrap();
        (ok, bad)
    }

    #[test]
    fn ndjson_with_a_bad_line_goes_on() {
        let (ok, bad) = read(b"{\"a\": 1}\n{broken\n\n{\"a\": 2}\n");
        assert_eq!(ok.len(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].position, Position::Line(2));
        assert!(
            bad[0].to_string().starts_with("t:2: invalid JSON"),
            "{}",
            bad[0]
        );
    }

    #[test]
    fn array_and_pretty_object() {
        let (ok, bad) = read(b"  [{\"a\": 1}, 3, {\"b\": {\"c\": true}}]");
        assert_eq!((ok.len(), bad.len()), (2, 1));
        assert!(ok[1].get("b.c").is_some());
        let (ok, bad) = read(b"{\n  \"a\": 1,\n  \"b\": 2\n}\n");
        assert_eq!((ok.len(), bad.len()), (1, 0));
        let (ok, bad) = read(b"{\n  \"a\": 1,\n");
        assert_eq!((ok.len(), bad.len()), (0, 1));
    }

    #[test]
    fn gzip_is_transparent() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"{\"a\": 1}\n{\"a\": 2}\n").unwrap();
        let (ok, bad) = read(&enc.finish().unwrap());
        assert_eq!((ok.len(), bad.len()), (2, 0));
    }

    #[test]
    fn bytes_and_tree_paths_agree() {
        for doc in [
            r#"{"winlog": {"channel": "Security", "event_id": "4688", "event_data": {"NewProcessName": "x"}}}"#,
            r#"{"Event": {"System": {"EventID": 4688, "Channel": "Security"}, "EventData": {"NewProcessName": "x"}}}"#,
            r#"{"ecs": {"version": "8"}, "process": {"command_line": "whoami"}}"#,
        ] {
            let tree = event_from_json(&serde_json::from_str(doc).unwrap());
            let bytes = event_from_json_bytes_with(doc.as_bytes(), FieldMap::builtin()).unwrap();
            assert_eq!(tree, bytes, "{doc}");
        }
    }

    #[test]
    fn winlogbeat_documents_get_evtx_names() {
        let (ok, _) = read(br#"{"winlog": {"channel": "Security", "event_id": "4688", "event_data": {"NewProcessName": "C:\\a.exe"}}}"#);
        let e = &ok[0];
        assert_eq!(e.get("EventID"), Some(&vigil_event::Value::Int(4688)));
        assert_eq!(e.get_str("Channel"), Some("Security"));
        assert_eq!(e.get_str("NewProcessName"), Some("C:\\a.exe"));
        assert_eq!(e.get_str("winlog.channel"), Some("Security"));
        assert_eq!(e.meta.product.as_deref(), Some("windows"));
    }

    #[test]
    fn evtx_shaped_json_is_flattened_like_evtx() {
        let (ok, _) = read(br#"{"Event": {"System": {"EventID": 4688, "Channel": "Security"}, "EventData": {"NewProcessName": "x"}}}"#);
        assert_eq!(ok[0].get_str("Channel"), Some("Security"));
        assert_eq!(ok[0].get_str("NewProcessName"), Some("x"));
        assert_eq!(ok[0].meta.product.as_deref(), Some("windows"));
    }
}
