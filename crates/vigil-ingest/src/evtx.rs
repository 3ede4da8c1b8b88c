//! EVTX files, read with the `evtx` crate.
//!
//! Chunks of an EVTX file are independent, so the `evtx` crate renders them
//! on a thread pool; [`read_evtx`] runs the caller's `map` right there, on
//! the worker that rendered the record, so work done per event (detection)
//! is parallel within one file too. Results come back in file order.

use crate::{IngestError, Position};
use evtx::err::EvtxError;
use evtx::{EvtxParser, ParserSettings};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use vigil_event::Event;

/// How to read EVTX files.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtxOptions {
    /// Worker threads for rendering records (0: one per core).
    pub threads: usize,
    /// Verify chunk checksums and report chunks that fail (off: a damaged
    /// checksum alone does not stop a readable chunk from being read).
    pub validate_checksums: bool,
}

/// Reads every record of an EVTX file, turns it into an [`Event`] and
/// hands it to `map` (on a worker thread); `on_item` receives the results
/// (or the error of each record or chunk that could not be read) in file
/// order, on the calling thread.
///
/// # Errors
/// Only when the file cannot be opened or is not an EVTX file; damaged
/// chunks and records are passed to `on_item` and reading goes on.
pub fn read_evtx<U, M, F>(
    path: &Path,
    opts: EvtxOptions,
    map: M,
    on_item: F,
) -> Result<(), IngestError>
where
    U: Send + 'static,
    M: Fn(Event) -> U + Send + Sync + Clone + 'static,
    F: FnMut(Result<U, IngestError>),
{
    read_evtx_with_progress(path, opts, |_| {}, map, on_item)
}

/// [`read_evtx`], telling `progress` of every run of bytes read from the
/// file as it is read (chunk by chunk, in file order), so that a progress
/// bar moves within one large file.
///
/// # Errors
/// As [`read_evtx`].
pub fn read_evtx_with_progress<U, M, F>(
    path: &Path,
    opts: EvtxOptions,
    progress: impl Fn(u64),
    map: M,
    mut on_item: F,
) -> Result<(), IngestError>
where
    U: Send + 'static,
    M: Fn(Event) -> U + Send + Sync + Clone + 'static,
    F: FnMut(Result<U, IngestError>),
{
    let source: Arc<str> = path.to_string_lossy().into();
    let settings = ParserSettings::new()
        .num_threads(opts.threads)
        .validate_checksums(opts.validate_checksums);
    let fail = |reason: String| IngestError {
        source: source.clone(),
        position: Position::Source,
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let (input, file_len, position) =
        open_maybe_gzipped(file, &progress).map_err(|e| fail(format!("cannot read: {e}")))?;
    let mut parser = EvtxParser::from_read_seek(input)
        .map_err(|e| IngestError {
            source: source.clone(),
            position: Position::Source,
            reason: describe(&e),
        })?
        .with_configuration(settings);
    // The `evtx` crate stops quietly at the end of the file; a file cut
    // short (a copy interrupted, a disk full) would lose its last chunks
    // without a word. The header says how many chunks there should be.
    let declared = u64::from(parser.header().chunk_count);
    let expected = HEADER_BLOCK + declared * CHUNK_SIZE;
    let truncated = (file_len < expected).then(|| IngestError {
        source: source.clone(),
        position: Position::Offset(file_len),
        reason: format!(
            "file is truncated: its header declares {declared} chunks ({expected} bytes) but it has {file_len} bytes; \
             {} chunk(s) missing or cut short, their records are lost",
            (expected - file_len).div_ceil(CHUNK_SIZE)
        ),
    });
    let src = source.clone();
    let windows: Arc<str> = "windows".into();
    // Records passed on, and how far into a plain file progress has told.
    let (mut records, mut told) = (0usize, 0u64);
    for item in parser.serialized_records(move |record| {
        let record = record?;
        let record_id = record.event_record_id;
        let ts = record.timestamp.as_nanosecond();
        let rendered = record.into_json_bytes()?;
        // Straight from the rendered bytes to fields: no JSON tree.
        let mut event = Event::with_capacity(32);
        crate::evtx_json::flatten_evtx_json(&rendered.data, &mut event).map_err(|e| {
            EvtxError::FailedToParseRecord {
                record_id,
                source: Box::new(EvtxError::SerializationError(e.into())),
            }
        })?;
        // The event's own time (`System/TimeCreated`), as every peer and
        // the JSON rendering of the same record give it; the record
        // header's time is when the record was written, which can lag.
        event.meta.timestamp_ns = match event.get("TimeCreated_SystemTime") {
            Some(vigil_event::Value::Str(t)) => crate::parse_time(t),
            _ => None,
        }
        .or_else(|| i64::try_from(ts).ok());
        // The event's own `EventRecordID`, as Event Viewer, Hayabusa and
        // Chainsaw show it: in an exported or filtered file the record
        // header is renumbered from 1, so its number cannot be looked up
        // on the machine the event came from.
        event.meta.record_id = Some(
            event
                .get("EventRecordID")
                .and_then(|v| v.as_i64())
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(record_id),
        );
        event.meta.source = Some(src.clone());
        event.meta.product = Some(windows.clone());
        Ok(map(event))
    }) {
        if let (Some(file), 0) = (&position, records % PROGRESS_EVERY) {
            if let Ok(at) = (&*file).stream_position() {
                progress(at.saturating_sub(told));
                told = told.max(at);
            }
        }
        records += 1;
        on_item(item.map_err(|e| IngestError {
            source: source.clone(),
            position: position_of(&e),
            reason: describe(&e),
        }));
    }
    if let Some(e) = truncated {
        on_item(Err(e));
    }
    Ok(())
}

/// Records between two looks at how far a plain file has been read.
const PROGRESS_EVERY: usize = 64;

/// Size of the EVTX file header block.
const HEADER_BLOCK: u64 = 4096;
/// Size of one EVTX chunk.
const CHUNK_SIZE: u64 = 65536;

fn position_of(e: &EvtxError) -> Position {
    match e {
        EvtxError::FailedToParseRecord { record_id, .. } => Position::Record(*record_id),
        EvtxError::FailedToParseChunk { chunk_id, .. } => Position::Chunk(*chunk_id),
        EvtxError::FailedToReadRecordAt { offset, .. } => Position::Offset(*offset),
        _ => Position::Source,
    }
}

/// The error and its causes, joined: the `evtx` crate puts the useful part
/// (what was truncated, at which offset) in the sources.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// Read and seek, as one trait object.
trait ReadSeek: Read + Seek {}
impl<T: Read + Seek> ReadSeek for T {}

/// The EVTX bytes of `file`, their length, and, for a plain file, a
/// handle on it that shares its position (a progress bar reads how far
/// the parser has got there): the file itself, or, when it is
/// gzip-compressed (`.evtx.gz`), its content decompressed into an
/// anonymous temporary file, since the EVTX reader seeks and memory must
/// stay bounded whatever the file's size. `progress` hears of the bytes
/// read from a compressed `file` as they are read.
///
/// A plain file reaches the parser unwrapped: the parser reads each chunk
/// through `Read::read_to_end`, and any wrapper (one counting bytes, say)
/// makes the standard library zero every chunk's buffer before reading
/// into it, a file's worth of `memset` (39M of the 665M instructions of
/// a parse-only pass over the corpus, callgrind).
fn open_maybe_gzipped<'a>(
    mut file: std::fs::File,
    progress: &'a impl Fn(u64),
) -> std::io::Result<(Box<dyn ReadSeek + 'a>, u64, Option<std::fs::File>)> {
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic)?;
    file.seek(SeekFrom::Start(0))?;
    if n < 2 || magic != [0x1f, 0x8b] {
        let len = file.metadata()?.len();
        let position = file.try_clone().ok();
        return Ok((Box::new(file), len, position));
    }
    let mut plain = tempfile::tempfile()?;
    let mut gz = flate2::read::MultiGzDecoder::new(crate::Counted::new(file, progress));
    let len = std::io::copy(&mut gz, &mut plain)?;
    plain.seek(SeekFrom::Start(0))?;
    Ok((Box::new(plain), len, None))
}
