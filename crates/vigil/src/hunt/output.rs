//! Detection records and the formats they are written in.

use anyhow::Context;
use serde_json::{Map, Value as Json};
use std::collections::BinaryHeap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use vigil_event::{json_write, value_to_json, Event};
use vigil_ingest::rfc3339;
use vigil_sigma::Rule;

/// Output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON array.
    Json,
    /// One JSON object per line.
    Jsonl,
}

/// One detection: a rule that matched an event.
#[derive(Debug, Clone)]
pub struct Detection {
    /// Event time, nanoseconds since the epoch (UTC), for sorting.
    pub timestamp_ns: Option<i64>,
    /// The record, fields in output order.
    pub record: Map<String, Json>,
    /// The event whose fields are the record's `fields` (then a null
    /// placeholder in `record`): written straight from the event, since
    /// building a JSON tree of every field was most of the cost of a
    /// detection.
    pub event: Option<Arc<Event>>,
}

fn text(event: &Event, names: &[&str]) -> Json {
    names
        .iter()
        .find_map(|n| event.get(n))
        .map(value_to_json)
        .unwrap_or(Json::Null)
}

impl Detection {
    /// The record for `rule` matching `event`, whose time is `ts`
    /// ([`vigil_ingest::event_time`]).
    pub fn new(rule: &Rule, event: Arc<Event>, ts: Option<i64>) -> Detection {
        // Sized for the fields below and `matched_fields`: grown entry by
        // entry, the map was reallocated three times per record.
        let mut m = Map::with_capacity(12);
        m.insert(
            "timestamp".into(),
            ts.map(|t| Json::String(rfc3339(t))).unwrap_or(Json::Null),
        );
        m.insert(
            "rule_id".into(),
            rule.id.clone().map(Json::String).unwrap_or(Json::Null),
        );
        m.insert("rule_title".into(), Json::String(rule.title.clone()));
        m.insert(
            "level".into(),
            rule.level
                .map(|l| Json::String(l.as_str().into()))
                .unwrap_or(Json::Null),
        );
        m.insert(
            "tags".into(),
            rule.tags.iter().cloned().map(Json::String).collect(),
        );
        m.insert(
            "computer".into(),
            text(&event, &["Computer", "host.name", "hostname"]),
        );
        m.insert("channel".into(), text(&event, &["Channel"]));
        m.insert("event_id".into(), text(&event, &["EventID"]));
        m.insert(
            "record_id".into(),
            event.meta.record_id.map(Json::from).unwrap_or(Json::Null),
        );
        m.insert(
            "source".into(),
            event
                .meta
                .source
                .as_deref()
                .map(|s| Json::String(s.into()))
                .unwrap_or(Json::Null),
        );
        m.insert("fields".into(), Json::Null);
        Detection {
            timestamp_ns: ts,
            record: m,
            event: Some(event),
        }
    }

    /// Puts the event's fields into the record as JSON (for what stores
    /// records rather than writing them).
    fn materialize(&mut self) {
        if let Some(event) = self.event.take() {
            self.record.insert("fields".into(), event.to_json());
        }
    }

    /// The value of one event field, `None` when absent.
    fn field(&self, name: &str) -> Option<Json> {
        match &self.event {
            Some(e) => e.get(name).map(value_to_json),
            None => self.record.get("fields").and_then(|f| f.get(name)).cloned(),
        }
    }
}

/// Columns of the table and CSV formats, before the event fields.
const COLUMNS: &[&str] = &[
    "timestamp",
    "level",
    "rule_title",
    "rule_id",
    "computer",
    "channel",
    "event_id",
    "record_id",
    "source",
];

/// Where detections go: straight to the writer, or through a sorter.
pub struct Sink {
    writer: FormatWriter,
    sorter: Option<Sorter>,
}

impl Sink {
    pub fn open(
        format: Format,
        path: Option<&Path>,
        fields: &[String],
        sort: bool,
        sort_memory: usize,
    ) -> anyhow::Result<Sink> {
        use std::io::IsTerminal;
        let out: Box<dyn Write + Send> = match path {
            Some(p) => Box::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            ),
            None => Box::new(std::io::stdout()),
        };
        // Levels in colour for a person at a terminal; never in a file or
        // a pipe, nor when NO_COLOR is set (no-color.org).
        let color = format == Format::Table
            && path.is_none()
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let mut writer = FormatWriter {
            out: BufWriter::with_capacity(1 << 16, out),
            render: Render {
                format,
                fields: fields.to_vec(),
                color,
            },
            count: 0,
        };
        writer.header()?;
        Ok(Sink {
            writer,
            sorter: sort.then(|| Sorter::new(sort_memory.max(1))),
        })
    }

    pub fn write(&mut self, mut d: Detection) -> anyhow::Result<()> {
        match &mut self.sorter {
            Some(s) => {
                d.materialize();
                s.push(d)
            }
            None => self.writer.write(&d),
        }
    }

    /// What formats records for this sink, to run on the threads that
    /// find detections; `None` when the sink sorts (records then go
    /// through [`Sink::write`]).
    pub fn renderer(&self) -> Option<Render> {
        self.sorter.is_none().then(|| self.writer.render.clone())
    }

    /// Writes a record made by [`Render::render`] (only for a sink that
    /// does not sort).
    pub fn write_rendered(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        debug_assert!(self.sorter.is_none());
        self.writer.write_rendered(bytes)
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        if let Some(sorter) = self.sorter.take() {
            sorter.drain(&mut |d| self.writer.write(&d))?;
        }
        self.writer.footer()?;
        self.writer.out.flush()?;
        Ok(())
    }
}

struct FormatWriter {
    out: BufWriter<Box<dyn Write + Send>>,
    render: Render,
    count: u64,
}

/// Formats one detection record into bytes. Formatting is most of the
/// cost of writing a detection, so the hunt runs it on the matching
/// threads and the output lock only covers copying the bytes.
#[derive(Debug, Clone)]
pub struct Render {
    format: Format,
    fields: Vec<String>,
    /// Table levels in ANSI colour.
    color: bool,
}

fn write_csv_row(out: &mut impl Write, cols: &[String]) -> std::io::Result<()> {
    let row: Vec<String> = cols.iter().map(|c| csv_field(c)).collect();
    writeln!(out, "{}", row.join(","))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn plain(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        Json::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(" "),
        other => other.to_string(),
    }
}

impl FormatWriter {
    fn header(&mut self) -> anyhow::Result<()> {
        match self.render.format {
            Format::Csv => {
                let mut cols: Vec<String> = COLUMNS.iter().map(|c| c.to_string()).collect();
                cols.push("tags".into());
                cols.push("details".into());
                cols.extend(self.render.fields.iter().cloned());
                write_csv_row(&mut self.out, &cols)?;
            }
            Format::Json => write!(self.out, "[")?,
            Format::Table => writeln!(
                self.out,
                "{}",
                table_line(
                    [
                        "Timestamp",
                        "Level",
                        "Rule",
                        "Computer",
                        "EventID",
                        "RecordID"
                    ],
                    if self.render.fields.is_empty() {
                        "Details (matched fields)"
                    } else {
                        "Fields"
                    },
                    "Source",
                    None,
                )
            )?,
            Format::Jsonl => {}
        }
        Ok(())
    }

    fn footer(&mut self) -> anyhow::Result<()> {
        if self.render.format == Format::Json {
            writeln!(self.out, "{}]", if self.count > 0 { "\n" } else { "" })?;
        }
        Ok(())
    }

    fn write(&mut self, d: &Detection) -> anyhow::Result<()> {
        let bytes = self.render.render(d)?;
        self.write_rendered(&bytes)
    }

    fn write_rendered(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        if self.render.format == Format::Json {
            write!(self.out, "{}\n  ", if self.count > 0 { "," } else { "" })?;
        }
        self.out.write_all(bytes)?;
        self.count += 1;
        Ok(())
    }
}

impl Render {
    /// Writes the record's `fields`, cut down to `--fields` when given.
    fn write_fields(&self, d: &Detection, out: &mut Vec<u8>) -> serde_json::Result<()> {
        if !self.fields.is_empty() {
            let mut m = Map::new();
            for f in &self.fields {
                m.insert(f.clone(), d.field(f).unwrap_or(Json::Null));
            }
            return serde_json::to_writer(out, &m);
        }
        match (&d.event, d.record.get("fields")) {
            (Some(e), _) => {
                json_write::write_fields(out, e);
                Ok(())
            }
            (None, Some(f)) => serde_json::to_writer(out, f),
            (None, None) => serde_json::to_writer(out, &Json::Null),
        }
    }

    /// One record in the sink's format: a JSONL, CSV or table line, or a
    /// JSON array element (without its separator).
    pub fn render(&self, d: &Detection) -> anyhow::Result<Vec<u8>> {
        let r = &d.record;
        let mut out = Vec::with_capacity(1024);
        match self.format {
            Format::Jsonl | Format::Json => {
                // Written key by key: no copy of the record for the sake
                // of replacing its fields.
                out.push(b'{');
                for (i, (k, v)) in r.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    json_write::write_str(&mut out, k);
                    out.push(b':');
                    if k == "fields" {
                        self.write_fields(d, &mut out)?;
                    } else {
                        write_json(&mut out, v)?;
                    }
                }
                if !r.contains_key("fields") {
                    out.extend_from_slice(b",\"fields\":");
                    self.write_fields(d, &mut out)?;
                }
                out.push(b'}');
                if self.format == Format::Jsonl {
                    out.push(b'\n');
                }
            }
            Format::Csv => {
                let mut cols: Vec<String> = COLUMNS
                    .iter()
                    .map(|c| plain(r.get(*c).unwrap_or(&Json::Null)))
                    .collect();
                cols.push(plain(r.get("tags").unwrap_or(&Json::Null)));
                cols.push(details(d, &matched_fields(r), None));
                for f in &self.fields {
                    cols.push(plain(&d.field(f).unwrap_or(Json::Null)));
                }
                write_csv_row(&mut out, &cols)?;
            }
            Format::Table => {
                let get = |k: &str| plain(r.get(k).unwrap_or(&Json::Null));
                // The picked fields, or else the fields that made the rule
                // match: what an analyst reads first (Hayabusa's
                // "Details").
                let matched;
                let shown = if self.fields.is_empty() {
                    matched = matched_fields(r);
                    &matched
                } else {
                    &self.fields
                };
                let details = details(d, shown, Some(DETAIL_CHARS));
                let level = get("level");
                let line = table_line(
                    [
                        &get("timestamp"),
                        &level,
                        &get("rule_title"),
                        &get("computer"),
                        &get("event_id"),
                        &get("record_id"),
                    ],
                    &details,
                    &get("source"),
                    level_color(&level).filter(|_| self.color),
                );
                writeln!(out, "{}", line.trim_end())?;
            }
        }
        Ok(out)
    }
}

/// Writes `v` as `serde_json::to_writer` does, strings through the faster
/// [`json_write::write_str`] (a record's values are strings, numbers and
/// lists of strings).
fn write_json(out: &mut Vec<u8>, v: &Json) -> serde_json::Result<()> {
    match v {
        Json::String(s) => json_write::write_str(out, s),
        Json::Array(items) => {
            out.push(b'[');
            for (k, item) in items.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                write_json(out, item)?;
            }
            out.push(b']');
        }
        other => serde_json::to_writer(out, other)?,
    }
    Ok(())
}

/// The ANSI colour of a level in the table: the more severe, the louder.
fn level_color(level: &str) -> Option<&'static str> {
    match level {
        "critical" => Some("1;31"),
        "high" => Some("31"),
        "medium" => Some("33"),
        "low" => Some("32"),
        _ => None,
    }
}

/// The fields that made the rule match, but `EventID`, which has its own
/// column.
fn matched_fields(r: &Map<String, Json>) -> Vec<String> {
    match r.get("matched_fields") {
        Some(Json::Array(names)) => names
            .iter()
            .filter_map(|n| n.as_str())
            .filter(|n| *n != "EventID")
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// `Field=value ¦ Field=value` for the named fields of the event, each
/// value on one line and cut at `max` characters when given (Hayabusa's
/// "Details").
fn details(d: &Detection, fields: &[String], max: Option<usize>) -> String {
    let one = |f: &String| {
        let v = one_line(&plain(&d.field(f).unwrap_or(Json::Null)));
        let v = match max {
            Some(n) => truncate(&v, n),
            None => v,
        };
        format!("{f}={v}")
    };
    fields.iter().map(one).collect::<Vec<_>>().join(" ¦ ")
}

/// How much of one field's value a table line shows.
const DETAIL_CHARS: usize = 120;

/// One line of the table: the columns padded to their widths (cut with
/// `…` where longer), then the details and the source, which vary too
/// much in length to align.
fn table_line(cols: [&str; 6], details: &str, source: &str, color: Option<&str>) -> String {
    let [ts, level, title, computer, event_id, record_id] = cols;
    let details = if details.is_empty() { "-" } else { details };
    let mut level = format!("{level:<13}");
    if let Some(code) = color {
        level = format!("\x1b[{code}m{level}\x1b[0m");
    }
    format!(
        "{:<27} {} {:<60} {:<20} {:<7} {:<10} {}  {}",
        ts,
        level,
        truncate(title, 60),
        truncate(computer, 20),
        event_id,
        record_id,
        details,
        one_line(source),
    )
}

/// `s` on one line: line breaks and tabs (script blocks, multi-line
/// command lines) would break the table's rows.
fn one_line(s: &str) -> String {
    if !s.contains(['\n', '\r', '\t']) {
        return s.to_string();
    }
    s.replace("\r\n", "\\n")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
        .replace('\t', " ")
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// External sort by time: runs of `limit` detections are sorted in memory
/// and spilled to temporary files, then merged. Detections of the same
/// time are ordered by their record's text, so that the output does not
/// depend on which thread found what first.
struct Sorter {
    limit: usize,
    buffer: Vec<(i64, String)>,
    runs: Vec<tempfile::NamedTempFile>,
}

impl Sorter {
    fn new(limit: usize) -> Self {
        Sorter {
            limit,
            buffer: Vec::new(),
            runs: Vec::new(),
        }
    }

    fn push(&mut self, d: Detection) -> anyhow::Result<()> {
        let line = serde_json::to_string(&Json::Object(d.record))?;
        self.buffer.push((d.timestamp_ns.unwrap_or(i64::MIN), line));
        if self.buffer.len() >= self.limit {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> anyhow::Result<()> {
        self.buffer.sort_unstable();
        let mut f = tempfile::NamedTempFile::new().context("creating a sort run file")?;
        {
            let mut w = BufWriter::new(f.as_file_mut());
            for (t, line) in self.buffer.drain(..) {
                writeln!(w, "{t}\t{line}")?;
            }
            w.flush()?;
        }
        self.runs.push(f);
        Ok(())
    }

    fn drain(
        mut self,
        emit: &mut dyn FnMut(Detection) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let to_detection = |t: i64, line: &str| -> anyhow::Result<Detection> {
            let Json::Object(record) = serde_json::from_str(line)? else {
                anyhow::bail!("sort run holds a non-object");
            };
            Ok(Detection {
                timestamp_ns: (t != i64::MIN).then_some(t),
                record,
                event: None,
            })
        };
        if self.runs.is_empty() {
            self.buffer.sort_unstable();
            for (t, line) in std::mem::take(&mut self.buffer) {
                emit(to_detection(t, &line)?)?;
            }
            return Ok(());
        }
        if !self.buffer.is_empty() {
            self.spill()?;
        }
        let mut readers: Vec<_> = self
            .runs
            .iter()
            .map(|f| f.reopen().map(BufReader::new))
            .collect::<Result<_, _>>()?;
        let mut heap = BinaryHeap::new();
        let read = |r: &mut BufReader<std::fs::File>| -> anyhow::Result<Option<(i64, String)>> {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            let (t, rest) = line
                .trim_end()
                .split_once('\t')
                .context("corrupt sort run")?;
            Ok(Some((t.parse()?, rest.to_string())))
        };
        for (i, r) in readers.iter_mut().enumerate() {
            if let Some((t, l)) = read(r)? {
                heap.push(std::cmp::Reverse((t, l, i)));
            }
        }
        while let Some(std::cmp::Reverse((t, line, i))) = heap.pop() {
            emit(to_detection(t, &line)?)?;
            if let Some((t, l)) = read(&mut readers[i])? {
                heap.push(std::cmp::Reverse((t, l, i)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order of detections of one time does not depend on the order
    /// they were found in, in memory or spilled to disk.
    #[test]
    fn sorted_output_does_not_depend_on_arrival_order() {
        let detections: Vec<Detection> = [(2, "b"), (1, "z"), (2, "a"), (1, "y"), (2, "c")]
            .iter()
            .map(|(t, id)| {
                let mut record = Map::new();
                record.insert("rule_id".into(), Json::String(id.to_string()));
                Detection {
                    timestamp_ns: Some(*t),
                    record,
                    event: None,
                }
            })
            .collect();
        let sorted = |limit: usize, order: &[usize]| {
            let mut sorter = Sorter::new(limit);
            for &i in order {
                sorter.push(detections[i].clone()).unwrap();
            }
            let mut ids = Vec::new();
            sorter
                .drain(&mut |d| {
                    ids.push(d.record["rule_id"].as_str().unwrap().to_string());
                    Ok(())
                })
                .unwrap();
            ids.join("")
        };
        for limit in [1, 2, 100] {
            assert_eq!(sorted(limit, &[0, 1, 2, 3, 4]), "yzabc");
            assert_eq!(sorted(limit, &[4, 3, 2, 1, 0]), "yzabc");
        }
    }

    #[test]
    fn table_colours_only_the_level_and_keeps_the_columns_aligned() {
        let cols = [
            "2019-07-19T14:43:46.623217Z",
            "high",
            "Rule",
            "PC",
            "1",
            "7",
        ];
        let plain = table_line(cols, "Image=x", "f.evtx", None);
        let coloured = table_line(cols, "Image=x", "f.evtx", level_color("high"));
        assert!(!plain.contains('\x1b'));
        assert!(
            coloured.contains("\x1b[31mhigh         \x1b[0m"),
            "{coloured:?}"
        );
        assert_eq!(
            coloured.replace("\x1b[31m", "").replace("\x1b[0m", ""),
            plain
        );
        assert_eq!(level_color("informational"), None);
        assert_eq!(one_line("a\r\nb\tc\nd"), "a\\nb c\\nd");
    }
}
