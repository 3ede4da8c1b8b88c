//! Cutting a JSON input into batches of whole lines, for parsing on
//! several threads (see [`super::read_json_par`]).

use std::io::BufRead;

/// Whole lines of the input, and the number of the first.
pub(super) struct Batch {
    /// The number of its first line in the input (from 1).
    pub first_line: u64,
    /// Its lines, each with its line break.
    pub bytes: Vec<u8>,
    /// Whether the input ends with it.
    pub last: bool,
}

/// Cuts the input into [`Batch`]es (see [`super::read_json_par`]).
pub(super) struct Batches<R> {
    reader: R,
    /// The least a batch holds, but for the last.
    batch_bytes: usize,
    buf: Vec<u8>,
    next_line: u64,
    eof: bool,
    /// A read error, returned once the lines before it are handed out.
    error: Option<std::io::Error>,
}

impl<R: BufRead> Batches<R> {
    pub fn new(reader: R, batch_bytes: usize) -> Self {
        Batches {
            reader,
            batch_bytes,
            buf: Vec::new(),
            next_line: 1,
            eof: false,
            error: None,
        }
    }

    fn fill(&mut self, want: usize) -> std::io::Result<()> {
        if !self.eof {
            self.eof = fill(&mut self.reader, &mut self.buf, want)?;
        }
        Ok(())
    }

    /// [`Batches::fill`]; on a read error, what was read up to the last
    /// whole line is still handed out, then the error.
    fn fill_or_stop(&mut self, want: usize) {
        if let Err(e) = self.fill(want) {
            self.eof = true;
            let whole = memchr::memrchr(b'\n', &self.buf).map_or(0, |i| i + 1);
            self.buf.truncate(whole);
            self.error = Some(e);
        }
    }

    pub fn next(&mut self) -> std::io::Result<Option<Batch>> {
        self.fill_or_stop(self.batch_bytes);
        loop {
            if self.buf.is_empty() {
                return self.error.take().map_or(Ok(None), Err);
            }
            let cut = if self.eof {
                Some(self.buf.len())
            } else {
                // Before the last line that opens a top-level object
                // (from the second line on, so that every batch holds a
                // line). Failing that, read on: one object is longer than
                // a batch. Only past 64 batches without such a line, which
                // is no layout of JSON objects we know, cut before the last
                // line, to bound memory.
                memchr::memmem::rfind(&self.buf[1..], b"\n{")
                    .map(|i| i + 2)
                    .or_else(|| {
                        (self.buf.len() >= 64 * self.batch_bytes)
                            .then(|| memchr::memrchr(b'\n', &self.buf).map(|i| i + 1))
                            .flatten()
                    })
            };
            let Some(cut) = cut else {
                self.fill_or_stop(self.buf.len() * 2);
                continue;
            };
            let rest = self.buf.split_off(cut);
            let bytes = std::mem::replace(&mut self.buf, rest);
            let first_line = self.next_line;
            self.next_line += memchr::memchr_iter(b'\n', &bytes).count() as u64;
            let last = self.eof && self.buf.is_empty();
            return Ok(Some(Batch {
                first_line,
                bytes,
                last,
            }));
        }
    }
}

/// Reads from `reader` onto `buf` until it holds `want` bytes or the input
/// ends; `true` when it ended.
pub(super) fn fill(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    want: usize,
) -> std::io::Result<bool> {
    while buf.len() < want {
        let got = reader.fill_buf()?;
        if got.is_empty() {
            return Ok(true);
        }
        let n = got.len();
        buf.extend_from_slice(got);
        reader.consume(n);
    }
    Ok(false)
}
