//! JSON arrays of objects, read element by element (see
//! [`super::read_json_par`]).

use super::{batches, event_from_json_bytes_with, pipeline, with_meta, Lines};
use crate::{IngestError, Position};
use std::io::BufRead;
use std::sync::Arc;
use vigil_event::Event;

/// A JSON array of objects, read element by element: memory holds a few
/// batches of elements' text (no tree), whatever the file's size, and
/// batches are turned into events on `threads` threads, handed on in
/// order. [`ElementSplitter`] cuts the array, following only strings and
/// nesting; each element is then parsed on its own, so a damaged one is
/// reported and the rest read.
pub(super) fn read_array<R: BufRead, T: Send>(
    lines: &Lines<'_>,
    mut reader: R,
    threads: usize,
    batch_bytes: usize,
    convert: &(impl Fn(Event) -> T + Sync),
    on_item: &mut impl FnMut(Result<T, IngestError>),
) -> Result<(), IngestError> {
    // The `[` the caller peeked at.
    reader.consume(1);
    let mut elements = Elements {
        reader,
        batch_bytes,
        source: lines.source.clone(),
        buf: Vec::new(),
        split: ElementSplitter::default(),
        next: 1,
        eof: false,
        done: false,
        queued: None,
    };
    let one = |n: u64, text: &[u8]| -> Result<T, IngestError> {
        let error = |reason: String| IngestError {
            source: lines.source.clone(),
            position: Position::Record(n),
            reason,
        };
        if !text.starts_with(b"{") {
            return Err(error("array item is not an object".into()));
        }
        match event_from_json_bytes_with(text, lines.map) {
            Ok(e) => Ok(convert(with_meta(e, lines.source, n))),
            Err(e) => Err(error(format!("invalid JSON: {e}"))),
        }
    };
    pipeline::in_order(
        threads,
        || elements.next(),
        |job: ArrayJob| match job {
            ArrayJob::Items { first, texts } => {
                (first..).zip(&texts).map(|(n, t)| one(n, t)).collect()
            }
            ArrayJob::Error(e) => vec![Err(e)],
        },
        |out: Vec<Result<T, IngestError>>| out.into_iter().for_each(&mut *on_item),
    )
}

/// What [`Elements`] hands out.
enum ArrayJob {
    /// Elements' text, the first numbered `first` (from 1).
    Items { first: u64, texts: Vec<Vec<u8>> },
    /// The array ends badly (not closed, or text after it).
    Error(IngestError),
}

/// The elements of a JSON array, read from `reader` in batches of about
/// `batch_bytes`.
struct Elements<R> {
    reader: R,
    batch_bytes: usize,
    source: Arc<str>,
    buf: Vec<u8>,
    split: ElementSplitter,
    /// The number of the next element.
    next: u64,
    eof: bool,
    /// Nothing more to hand out (but `queued`).
    done: bool,
    /// An error to hand out after the batch before it.
    queued: Option<IngestError>,
}

impl<R: BufRead> Elements<R> {
    /// Reads until the buffer holds `want` bytes or the input ends.
    fn fill(&mut self, want: usize) -> Result<(), IngestError> {
        if !self.eof {
            self.eof =
                batches::fill(&mut self.reader, &mut self.buf, want).map_err(|e| IngestError {
                    source: self.source.clone(),
                    position: Position::Source,
                    reason: e.to_string(),
                })?;
        }
        Ok(())
    }

    fn next(&mut self) -> Result<Option<ArrayJob>, IngestError> {
        if let Some(e) = self.queued.take() {
            return Ok(Some(ArrayJob::Error(e)));
        }
        while !self.done {
            self.fill(self.batch_bytes)?;
            let (ranges, consumed) = self.split.elements(&self.buf);
            if ranges.is_empty() && !self.eof && !self.split.closed {
                // One element longer than what is buffered: read on.
                self.fill(self.buf.len() * 2)?;
                continue;
            }
            let first = self.next;
            self.next += ranges.len() as u64;
            let texts: Vec<Vec<u8>> = ranges.into_iter().map(|r| self.buf[r].to_vec()).collect();
            self.buf.drain(..consumed);
            self.split.shift(consumed);
            let error = |reason: &str| IngestError {
                source: self.source.clone(),
                position: Position::Record(self.next),
                reason: reason.into(),
            };
            let end = if self.split.closed {
                self.done = true;
                self.buf
                    .iter()
                    .any(|b| !b.is_ascii_whitespace())
                    .then(|| error("text after the end of the array"))
            } else if self.eof {
                self.done = true;
                Some(error(
                    "invalid JSON: the array is not closed before the end of input",
                ))
            } else {
                None
            };
            if texts.is_empty() {
                if let Some(e) = end {
                    return Ok(Some(ArrayJob::Error(e)));
                }
                continue;
            }
            self.queued = end;
            return Ok(Some(ArrayJob::Items { first, texts }));
        }
        Ok(None)
    }
}

/// Finds the elements of a JSON array (after its `[`) in text that
/// arrives piece by piece: it follows strings, escapes and nesting, and
/// nothing else (each element is parsed later, on its own).
#[derive(Debug, Default)]
struct ElementSplitter {
    /// Where scanning resumes in the buffer.
    pos: usize,
    /// Where the element being scanned starts (`None`: between elements).
    start: Option<usize>,
    /// Open `[` and `{` inside the element.
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// The array's closing `]` was seen.
    closed: bool,
}

impl ElementSplitter {
    /// The elements complete in `buf` from where the last call stopped,
    /// as ranges, and how much of `buf` they (and the separators) used.
    fn elements(&mut self, buf: &[u8]) -> (Vec<std::ops::Range<usize>>, usize) {
        let mut out = Vec::new();
        let mut consumed = self.start.unwrap_or(self.pos).min(self.pos);
        let mut i = self.pos;
        while i < buf.len() && !self.closed {
            let b = buf[i];
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
            } else if self.start.is_none() {
                if b == b']' {
                    self.closed = true;
                    consumed = i + 1;
                } else if !b.is_ascii_whitespace() && b != b',' {
                    self.start = Some(i);
                    continue;
                } else {
                    consumed = i + 1;
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'[' | b'{' => self.depth += 1,
                    b']' | b'}' if self.depth > 0 => self.depth -= 1,
                    b',' | b']' if self.depth == 0 => {
                        let start = self.start.take().unwrap_or(i);
                        let end = start + buf[start..i].trim_ascii_end().len();
                        out.push(start..end);
                        consumed = i + 1;
                        if b == b']' {
                            self.closed = true;
                        }
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        self.pos = i;
        (out, consumed)
    }

    /// The buffer lost its first `n` bytes.
    fn shift(&mut self, n: usize) {
        self.pos -= n;
        if let Some(s) = self.start.as_mut() {
            *s -= n;
        }
    }
}
