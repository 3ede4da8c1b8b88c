//! Storage for Vigil.
//!
//! So far one piece: [`wal::Wal`], the write-ahead log that makes ingest
//! durable. An event is acknowledged to its sender only once it is in the
//! log and the log is on disk; after a crash the log is replayed. Many
//! concurrent writers share one `fsync` (group commit), which is what
//! makes durable ingest fast.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod wal;
