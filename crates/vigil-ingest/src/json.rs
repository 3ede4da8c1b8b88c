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

mod array;
mod batches;
mod pipeline;
use batches::{Batch, Batches};

/// Turns one JSON document into an event with the shipped field mappings
/// (see the module docs).
pub fn event_from_json(doc: &Json) -> Event {
    event_from_json_with(doc, FieldMap::builtin())
}

/// Turns one JSON document into an event with the given field mappings.
/// An Elasticsearch document as `elasticdump` and the search API write it
/// (`{"_index": …, "_id": …, "_source": {…}}`) is its `_source`.
pub fn event_from_json_with(doc: &Json, map: &FieldMap) -> Event {
    let doc = match doc.get("_source") {
        Some(source)
            if source.is_object() && (doc.get("_index").is_some() || doc.get("_id").is_some()) =>
        {
            source
        }
        _ => doc,
    };
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
/// mappings, without building a JSON tree for it: an EVTX record rendered
/// as JSON (what `evtx_dump -o jsonl` writes) through the EVTX flattener,
/// anything else flattened by path and mapped. Only the rare shapes the
/// bytes do not give away (an EVTX record not first in its document, an
/// Elasticsearch `_source`) go the tree way.
///
/// # Errors
/// The bytes are not one valid JSON document.
pub fn event_from_json_bytes_with(
    bytes: &[u8],
    map: &FieldMap,
) -> Result<Event, serde_json::Error> {
    if is_evtx_shaped(bytes) {
        let mut e = Event::with_capacity(32);
        if crate::evtx_json::flatten_evtx_json(bytes, &mut e).is_ok() {
            e.meta.product = Some("windows".into());
            return Ok(e);
        }
    }
    let mut e = vigil_event::event_from_json_slice(bytes)?;
    if e.fields()
        .any(|(n, _)| n.starts_with("Event.System.") || n.starts_with("_source."))
    {
        let doc: Json = serde_json::from_slice(bytes)?;
        return Ok(event_from_json_with(&doc, map));
    }
    map.apply(&mut e);
    Ok(e)
}

/// Opens `reader`, transparently gunzipping when it starts with the gzip
/// magic bytes, and giving UTF-8 when the text starts with a byte-order
/// mark (UTF-8's is skipped, UTF-16 is transcoded).
pub fn utf8_text<'a, R: Read + 'a>(reader: R) -> std::io::Result<Box<dyn BufRead + 'a>> {
    let mut buf = BufReader::with_capacity(1 << 16, reader);
    let head = buf.fill_buf()?;
    let plain: Box<dyn BufRead + 'a> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(buf),
        ))
    } else {
        Box::new(buf)
    };
    crate::text::utf8_reader(plain)
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
    on_item: impl FnMut(Result<Event, IngestError>),
) -> Result<(), IngestError> {
    read_json_par(source, reader, map, 1, |e| e, on_item)
}

/// How many bytes of lines one parallel task takes at least.
const BATCH_BYTES: usize = 1 << 20;

/// [`read_json_with`] on `threads` threads: lines are parsed and passed
/// through `convert` in parallel, in batches of about a megabyte, and
/// what `convert` returns goes to `on_item` on the calling thread, in
/// input order. Memory stays bounded by two batches per thread.
///
/// A batch ends before a line that starts with `{` in its first column
/// where there is one: an object pretty-printed over several lines
/// (nested lines indented, as `jq` writes them) does not straddle two
/// batches.
///
/// # Errors
/// I/O errors reading the source; parse errors are passed to `on_item`.
pub fn read_json_par<R: Read, T: Send>(
    source: &Arc<str>,
    reader: R,
    map: &FieldMap,
    threads: usize,
    convert: impl Fn(Event) -> T + Sync,
    on_item: impl FnMut(Result<T, IngestError>),
) -> Result<(), IngestError> {
    read_json_batched(source, reader, map, threads, BATCH_BYTES, convert, on_item)
}

/// [`read_json_par`] with batches of at least `batch_bytes` (tests cut
/// small inputs into many batches this way).
fn read_json_batched<R: Read, T: Send>(
    source: &Arc<str>,
    reader: R,
    map: &FieldMap,
    threads: usize,
    batch_bytes: usize,
    convert: impl Fn(Event) -> T + Sync,
    mut on_item: impl FnMut(Result<T, IngestError>),
) -> Result<(), IngestError> {
    let io_err = |e: std::io::Error| IngestError {
        source: source.clone(),
        position: Position::Source,
        reason: e.to_string(),
    };
    let mut reader = utf8_text(reader).map_err(io_err)?;
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
    let lines = Lines { source, map };
    if first == b'[' {
        return array::read_array(&lines, reader, threads, batch_bytes, &convert, &mut on_item);
    }
    let mut batches = Batches::new(reader, batch_bytes);
    pipeline::in_order(
        threads,
        || batches.next().map_err(io_err),
        |b: Batch| {
            let mut out = Vec::new();
            lines.read(&b, &mut |r| out.push(r.map(&convert)));
            out
        },
        |out| out.into_iter().for_each(&mut on_item),
    )
}

/// Turns the lines of a batch into events.
struct Lines<'a> {
    source: &'a Arc<str>,
    map: &'a FieldMap,
}

impl Lines<'_> {
    /// Each line to an event, or an error naming the line; an object
    /// spread over several lines (pretty-printed) is gathered first.
    fn read(&self, batch: &Batch, on_item: &mut dyn FnMut(Result<Event, IngestError>)) {
        let error = |line: u64, reason: String| IngestError {
            source: self.source.clone(),
            position: Position::Line(line),
            reason,
        };
        let mut pending: Option<(u64, Vec<u8>)> = None;
        let lines = batch.bytes.split_inclusive(|&b| b == b'\n');
        for (line_no, raw) in (batch.first_line..).zip(lines) {
            if let Some((start, buf)) = pending.as_mut() {
                if raw.first() != Some(&b'{') {
                    buf.extend_from_slice(raw);
                    if let Ok(e) = event_from_json_bytes_with(buf, self.map) {
                        self.hand_on(e, buf, *start, on_item);
                        pending = None;
                    }
                    continue;
                }
                // A line opening a new top-level object: the one pending
                // was never closed. Report it and go on from here, rather
                // than swallow the rest of the input into it.
                on_item(Err(error(
                    *start,
                    "invalid JSON: object is not closed before the next one starts".into(),
                )));
                pending = None;
            }
            let t = raw.trim_ascii();
            if t.is_empty() {
                continue;
            }
            if t[0] != b'{' {
                let reason = match serde_json::from_slice::<serde::de::IgnoredAny>(t) {
                    Ok(_) => "line is JSON but not an object".to_string(),
                    Err(e) => format!("invalid JSON: {e}"),
                };
                on_item(Err(error(line_no, reason)));
                continue;
            }
            match event_from_json_bytes_with(t, self.map) {
                Ok(e) => self.hand_on(e, t, line_no, on_item),
                Err(e) if e.is_eof() => pending = Some((line_no, raw.to_vec())),
                Err(e) => on_item(Err(error(line_no, format!("invalid JSON: {e}")))),
            }
        }
        if let Some((start, _)) = pending {
            // A batch other than the last ends before a new object.
            let reason = if batch.last {
                "invalid JSON: object is not closed before the end of input"
            } else {
                "invalid JSON: object is not closed before the next one starts"
            };
            on_item(Err(error(start, reason.into())));
        }
    }

    /// Hands on the event of the object `text` at `line`, or, when the
    /// object is an Elasticsearch search response (`curl …/_search`), the
    /// event of each of its hits, numbered from 1.
    fn hand_on(
        &self,
        event: Event,
        text: &[u8],
        line: u64,
        on_item: &mut dyn FnMut(Result<Event, IngestError>),
    ) {
        // Elasticsearch and OpenSearch write `took` first.
        let response = event.field_at(0).is_some_and(|(n, _)| n == "took")
            && event.fields().any(|(n, _)| n.starts_with("hits.hits."));
        let hits = response
            .then(|| serde_json::from_slice::<Json>(text).ok())
            .flatten();
        match hits.as_ref().and_then(|doc| doc["hits"]["hits"].as_array()) {
            Some(hits) => {
                for (n, hit) in (1..).zip(hits) {
                    on_item(Ok(with_meta(
                        event_from_json_with(hit, self.map),
                        self.source,
                        n,
                    )));
                }
            }
            None => on_item(Ok(with_meta(event, self.source, line))),
        }
    }
}

/// Whether an object's first key is `Event`, holding an object with a
/// `System` key somewhere: an EVTX record rendered as JSON. A cheap look
/// at the bytes, before any parsing.
fn is_evtx_shaped(bytes: &[u8]) -> bool {
    let rest = bytes.trim_ascii_start();
    let Some(rest) = rest.strip_prefix(b"{") else {
        return false;
    };
    let Some(rest) = rest.trim_ascii_start().strip_prefix(b"\"Event\"") else {
        return false;
    };
    let Some(rest) = rest.trim_ascii_start().strip_prefix(b":") else {
        return false;
    };
    rest.trim_ascii_start().starts_with(b"{") && memchr::memmem::find(rest, b"\"System\"").is_some()
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
        // An object left open does not swallow the ones after it.
        let (ok, bad) = read(b"{\"a\": 1,\n{\"b\": 2}\n{\"c\": 3}\n");
        assert_eq!((ok.len(), bad.len()), (2, 1));
        assert_eq!(bad[0].position, Position::Line(1));
        assert!(
            bad[0].reason.contains("not closed before the next one"),
            "{}",
            bad[0]
        );
    }

    /// Several batches on two threads: every line's event and error
    /// arrive in input order with its own line number, and a
    /// pretty-printed object across lines still reads as one.
    #[test]
    fn parallel_batches_keep_order_and_line_numbers() {
        let mut input = Vec::new();
        let mut expected = Vec::new();
        let mut line = 1u64;
        for i in 0..60_000u64 {
            if i == 20_000 {
                input.extend_from_slice(b"{broken\n");
                line += 1;
            } else if i == 40_000 {
                input.extend_from_slice(b"{\n  \"n\": 40000,\n  \"x\": {\"y\": 1}\n}\n");
                expected.push((40_000, line));
                line += 4;
                continue;
            }
            input.extend_from_slice(
                format!("{{\"n\": {i}, \"pad\": \"{}\"}}\n", "p".repeat(40)).as_bytes(),
            );
            expected.push((i, line));
            line += 1;
        }
        assert!(input.len() > 3 * BATCH_BYTES);
        let mut got = Vec::new();
        let mut errors = Vec::new();
        read_json_par(
            &Arc::from("t"),
            &input[..],
            FieldMap::builtin(),
            2,
            |e| {
                (
                    e.get("n").and_then(|v| v.as_i64()).unwrap() as u64,
                    e.meta.record_id.unwrap(),
                )
            },
            |r| match r {
                Ok(x) => got.push(x),
                Err(e) => errors.push(e.position),
            },
        )
        .unwrap();
        // record_id is the line number where there is no EventRecordID.
        assert_eq!(got, expected);
        assert_eq!(errors, vec![Position::Line(20_001)]);
    }

    /// A read error part-way: every whole line read before it is handed
    /// on, then the error is returned.
    #[test]
    fn read_error_midway_keeps_what_came_before() {
        /// Fails once `at` bytes are read.
        struct Failing(std::io::Cursor<Vec<u8>>, u64);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let left = self.1.saturating_sub(self.0.position()) as usize;
                if left == 0 {
                    return Err(std::io::Error::other("disk gone"));
                }
                let n = buf.len().min(left);
                self.0.read(&mut buf[..n])
            }
        }
        let line = format!("{{\"pad\": \"{}\"}}\n", "p".repeat(90));
        let input = line.repeat(3 * BATCH_BYTES / line.len());
        // Mid-line, well past the first batch.
        let at = (2 * BATCH_BYTES + line.len() / 2) as u64;
        let whole_lines = input.as_bytes()[..at as usize]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        let mut got = 0;
        let result = read_json_par(
            &Arc::from("t"),
            Failing(std::io::Cursor::new(input.into_bytes()), at),
            FieldMap::builtin(),
            2,
            |e| e,
            |r| {
                r.unwrap();
                got += 1;
            },
        );
        let err = result.unwrap_err();
        assert!(err.to_string().contains("disk gone"), "{err}");
        assert_eq!(got, whole_lines);
    }

    /// Everything `read_json_batched` reports, in order, comparable.
    fn outcomes(input: &[u8], threads: usize, batch_bytes: usize) -> Vec<String> {
        let mut out = Vec::new();
        read_json_batched(
            &Arc::from("t"),
            input,
            FieldMap::builtin(),
            threads,
            batch_bytes,
            |e| e,
            |r| {
                out.push(match r {
                    Ok(e) => format!(
                        "{:?} {:?}",
                        e.meta.record_id,
                        e.fields().collect::<Vec<_>>()
                    ),
                    Err(e) => format!("error {e}"),
                })
            },
        )
        .unwrap();
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// Cut into any batch size and read on any number of threads,
        /// an input gives what one batch on one thread gives: the same
        /// events and errors, in order, with the same line numbers.
        #[test]
        fn batches_and_threads_change_nothing(
            docs in proptest::collection::vec(0u8..8, 0..60),
            threads in 1usize..4,
            batch_bytes in 8usize..200,
        ) {
            let mut input = String::new();
            for (i, kind) in docs.iter().enumerate() {
                match kind {
                    0 => input.push_str(&format!("{{\"n\": {i}, \"s\": \"x y\"}}\n")),
                    1 => input.push_str(&format!("{{\n  \"n\": {i},\n  \"o\": {{\"a\": [1, 2]}}\n}}\n")),
                    2 => input.push_str("{broken\n"),
                    3 => input.push('\n'),
                    4 => input.push_str("[1, 2]\n"),
                    5 => input.push_str(&format!("{{\"n\": {i}}}\r\n")),
                    6 => input.push_str(&format!("{{\"n\": {i},\n  \"cut\": \n")),
                    _ => input.push_str(&format!("{{\"Event\": {{\"System\": {{\"EventID\": {i}, \"Channel\": \"Security\"}}}}}}\n")),
                }
            }
            let reference = outcomes(input.as_bytes(), 1, usize::MAX / 128);
            proptest::prop_assert_eq!(outcomes(input.as_bytes(), threads, batch_bytes), reference);
        }
    }

    /// A JSON array is read element by element, in batches on several
    /// threads, with the same results as in one piece; a truncated array
    /// keeps the elements before the damage.
    #[test]
    fn arrays_stream_in_batches() {
        let mut input = String::from("[\n");
        for i in 0..500 {
            if i > 0 {
                input.push_str(",\n");
            }
            match i % 5 {
                0 => input.push('3'),
                1 => input.push_str(&format!(
                    "{{\"Event\": {{\"System\": {{\"EventID\": {i}}}}}}}"
                )),
                _ => input.push_str(&format!("{{\n  \"n\": {i},\n  \"o\": {{\"a\": [1]}}\n}}")),
            }
        }
        input.push_str("\n]\n");
        let reference = outcomes(input.as_bytes(), 1, usize::MAX / 128);
        assert_eq!(reference.len(), 500);
        assert_eq!(
            reference.iter().filter(|r| r.starts_with("error")).count(),
            100
        );
        assert!(
            reference[0].contains("t: record 1: array item is not an object"),
            "{}",
            reference[0]
        );
        assert!(reference[2].starts_with("Some(3) "), "{}", reference[2]);
        for (threads, batch) in [(1, 64), (2, 64), (3, 1000), (2, 1)] {
            assert_eq!(outcomes(input.as_bytes(), threads, batch), reference);
        }
        let cut = &input.as_bytes()[..input.len() / 2];
        let got = outcomes(cut, 2, 64);
        assert!(
            got.last().unwrap().starts_with("error t:"),
            "{:?}",
            got.last()
        );
        assert_eq!(&got[..got.len() - 1], &reference[..got.len() - 1]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// The element splitter against serde_json: strings holding
        /// brackets, commas, quotes and backslashes, nesting, any
        /// whitespace, any batch size.
        #[test]
        fn array_elements_split_as_serde_json_parses_them(
            elements in proptest::collection::vec(
                (proptest::collection::vec(0u8..9, 0..12), 0u8..3),
                0..20,
            ),
            pad in 0usize..3,
            threads in 1usize..3,
            batch_bytes in 1usize..64,
        ) {
            let pieces = ["a", ",", "]", "}", "{", "[", "\\\"", "\\\\", " "];
            let ws = ["", " ", "\n  "][pad];
            let mut input = format!("{ws}[{ws}");
            for (i, (chars, shape)) in elements.iter().enumerate() {
                if i > 0 {
                    input.push_str(&format!("{ws},{ws}"));
                }
                let text: String = chars.iter().map(|&c| pieces[c as usize]).collect();
                match shape {
                    0 => input.push_str(&format!("{{\"s\":{ws}\"{text}\", \"n\": [1, {{\"x\": \"]\"}}]}}")),
                    1 => input.push_str(&format!("[\"{text}\"]")),
                    _ => input.push_str(&format!("\"{text}\"")),
                }
            }
            input.push_str(&format!("{ws}]{ws}"));
            let parsed: Json = serde_json::from_str(&input).unwrap();
            let expected: Vec<String> = (1..)
                .zip(parsed.as_array().unwrap())
                .map(|(n, item)| match item {
                    Json::Object(_) => {
                        let e = event_from_json_bytes_with(item.to_string().as_bytes(), FieldMap::builtin()).unwrap();
                        format!("Some({n}) {:?}", e.fields().collect::<Vec<_>>())
                    }
                    _ => format!("error t: record {n}: array item is not an object"),
                })
                .collect();
            proptest::prop_assert_eq!(outcomes(input.as_bytes(), threads, batch_bytes), expected);
        }
    }

    /// What Windows tools write: a UTF-8 byte-order mark, or UTF-16
    /// (Windows PowerShell's `Out-File`), gzip-compressed or not.
    #[test]
    fn byte_order_marks_and_utf16_are_read() {
        use std::io::Write;
        let text = "{\"a\": \"é\"}\n{\"a\": 2}\n";
        let mut utf16 = vec![0xFF, 0xFE];
        for u in text.encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        let mut bom8 = vec![0xEF, 0xBB, 0xBF];
        bom8.extend_from_slice(text.as_bytes());
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&utf16).unwrap();
        for input in [utf16.clone(), bom8, enc.finish().unwrap()] {
            let (ok, bad) = read(&input);
            assert_eq!((ok.len(), bad.len()), (2, 0), "{bad:?}");
            assert_eq!(ok[0].get_str("a"), Some("é"));
        }
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

    /// A search response, as `curl …/_search` saves it (pretty-printed
    /// here): one event per hit.
    #[test]
    fn elasticsearch_search_responses_are_their_hits() {
        let text = concat!(
            "{\n  \"took\": 3,\n  \"timed_out\": false,\n  \"hits\": {\n    \"total\": {\"value\": 2},\n",
            "    \"hits\": [\n",
            r#"      {"_index": "w", "_id": "1", "_source": {"winlog": {"channel": "Security", "event_id": 4625}}},"#,
            "\n",
            r#"      {"_index": "w", "_id": "2", "_source": {"process": {"command_line": "whoami"}, "ecs": {"version": "8"}}}"#,
            "\n    ]\n  }\n}\n",
        );
        let (ok, bad) = read(text.as_bytes());
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].get_str("Channel"), Some("Security"));
        assert_eq!(ok[1].get_str("CommandLine"), Some("whoami"));
        assert_eq!(ok[1].meta.record_id, Some(2));
    }

    /// `elasticdump` output and search hits: the event is the `_source`,
    /// mapped like any Winlogbeat or EVTX-shaped document.
    #[test]
    fn elasticsearch_documents_are_their_source() {
        let lines = concat!(
            r#"{"_index": "winlogbeat-8", "_id": "a1", "_source": {"winlog": {"channel": "Security", "event_id": "4625", "event_data": {"TargetUserName": "bob"}}}}"#,
            "\n",
            r#"{"_id": "a2", "_source": {"Event": {"System": {"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational"}, "EventData": {"Image": "x.exe"}}}}"#,
            "\n",
            r#"{"_source": "not a wrapper", "n": 1}"#,
            "\n",
        );
        let (ok, bad) = read(lines.as_bytes());
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok[0].get_str("Channel"), Some("Security"));
        assert_eq!(ok[0].get_str("TargetUserName"), Some("bob"));
        assert_eq!(ok[0].get("EventID"), Some(&vigil_event::Value::Int(4625)));
        assert_eq!(ok[1].get_str("Image"), Some("x.exe"));
        assert_eq!(ok[1].meta.product.as_deref(), Some("windows"));
        assert_eq!(ok[2].get_str("_source"), Some("not a wrapper"));
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
