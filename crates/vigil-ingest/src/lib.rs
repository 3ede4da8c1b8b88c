//! Readers that turn bytes into Vigil events: EVTX files, JSON and NDJSON
//! (plain, gzip-compressed), with Windows events from any of them given the
//! field names Sigma rules use (`EventID`, `Channel`, `Image`, …).
//!
//! Readers never stop at the first bad record: each record that fails is
//! an [`IngestError`] naming the source, the position and the reason, and
//! reading goes on with the next one.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod counted;
pub mod evtx;
pub mod evtx_json;
pub mod fieldmap;
pub mod json;
pub mod syslog;
mod text;
pub mod time;
pub mod winlog;

pub use counted::Counted;
pub use time::{event_time, parse_time, rfc3339};

use std::fmt;
use std::sync::Arc;

/// Where in a source an error happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// The whole source (it could not be opened or recognised).
    Source,
    /// An EVTX record, by its record id.
    Record(u64),
    /// An EVTX chunk, by its number.
    Chunk(u64),
    /// A 1-based line of a text source.
    Line(u64),
    /// A byte offset.
    Offset(u64),
}

/// A record or source that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestError {
    /// The source (file path, `-` for standard input).
    pub source: Arc<str>,
    /// Where in the source.
    pub position: Position,
    /// Why.
    pub reason: String,
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.source)?;
        match self.position {
            Position::Source => {}
            Position::Record(r) => write!(f, ": record {r}")?,
            Position::Chunk(c) => write!(f, ": chunk {c}")?,
            Position::Line(l) => write!(f, ":{l}")?,
            Position::Offset(o) => write!(f, ": offset {o:#x}")?,
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for IngestError {}
