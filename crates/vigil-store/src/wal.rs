//! A segmented write-ahead log with group commit.
//!
//! # Format
//! The log is a directory of segment files `wal-<first seq, 20 digits>.log`.
//! A segment is a run of records, each
//! `[payload length: u32 LE][crc32: u32 LE][seq: u64 LE][payload]`, where
//! the CRC covers the sequence number and the payload. Sequence numbers
//! start at 1 and grow by one per record across segments.
//!
//! # Durability
//! [`Wal::append`] returns once its records are written *and* synced to
//! disk. Writers that arrive while a sync is running wait for the next one,
//! which then covers all of them (group commit): under load, one `fsync`
//! acknowledges many batches.
//!
//! # Recovery
//! [`Wal::open`] checks every record. A damaged or partial record at the
//! end of the last segment is what a crash mid-write leaves: it was never
//! acknowledged, so it is cut off (and reported in [`Recovery`]). Damage
//! anywhere else is corruption of acknowledged data and an error naming
//! the segment and offset — never skipped silently.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

const HEADER: usize = 16;
/// The largest record payload accepted (a hostile or broken length field
/// must not make recovery allocate gigabytes).
pub const MAX_RECORD: usize = 64 << 20;

/// Errors of the log.
#[derive(Debug)]
pub enum WalError {
    /// An I/O error, with the file it concerns.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A damaged record that is not a torn tail.
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A payload over [`MAX_RECORD`].
    TooLarge(usize),
}

impl std::fmt::Display for WalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            WalError::Corrupt {
                path,
                offset,
                reason,
            } => {
                write!(
                    f,
                    "{}: offset {offset}: corrupt record: {reason}",
                    path.display()
                )
            }
            WalError::TooLarge(n) => {
                write!(f, "record of {n} bytes is over the {MAX_RECORD}-byte limit")
            }
        }
    }
}

impl std::error::Error for WalError {}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Settings of a log.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            segment_bytes: 64 << 20,
        }
    }
}

/// What [`Wal::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records in the log.
    pub records: u64,
    /// Bytes cut from the end of the last segment (a write a crash
    /// interrupted; never acknowledged).
    pub truncated_bytes: u64,
}

struct Segment {
    first_seq: u64,
    path: PathBuf,
}

struct State {
    dir: PathBuf,
    config: WalConfig,
    segments: Vec<Segment>,
    file: File,
    size: u64,
    /// Next sequence number to assign.
    next_seq: u64,
    /// Every record below this is on disk.
    durable: u64,
    /// A sync is running.
    syncing: bool,
}

/// A write-ahead log. `Send + Sync`; share it behind an `Arc`.
pub struct Wal {
    state: Mutex<State>,
    synced: Condvar,
    /// Where the last read stopped: (next seq, its segment's first seq,
    /// byte offset in that segment).
    cursor: Mutex<Option<(u64, u64, u64)>>,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("wal-{first_seq:020}.log"))
}

/// Reads one record at the reader's position: `Ok(None)` at a clean end,
/// `Err(reason)` for a partial or damaged record.
/// A record read back: sequence number and payload.
pub type Record = (u64, Vec<u8>);

/// The outcome of reading one record: a record, a clean end (`None`), or
/// why the bytes there are not a record.
type ReadOutcome = Result<Option<Record>, String>;

fn read_record(r: &mut impl Read) -> io::Result<ReadOutcome> {
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        let n = r.read(&mut header[got..])?;
        if n == 0 {
            return Ok(if got == 0 {
                Ok(None)
            } else {
                Err(format!("partial header ({got} of {HEADER} bytes)"))
            });
        }
        got += n;
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    if len > MAX_RECORD {
        return Ok(Err(format!("length {len} is over the limit")));
    }
    let mut payload = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = r.read(&mut payload[got..])?;
        if n == 0 {
            return Ok(Err(format!("partial payload ({got} of {len} bytes)")));
        }
        got += n;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&header[8..16]);
    h.update(&payload);
    if h.finalize() != crc {
        return Ok(Err("checksum mismatch".into()));
    }
    Ok(Ok(Some((seq, payload))))
}

impl Wal {
    /// Opens (or creates) the log in `dir`, checking every record.
    ///
    /// # Errors
    /// I/O errors, and corruption anywhere but at the end of the last
    /// segment.
    pub fn open(dir: &Path, config: WalConfig) -> Result<(Wal, Recovery), WalError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut segments: Vec<Segment> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(n) = name
                .strip_prefix("wal-")
                .and_then(|n| n.strip_suffix(".log"))
            {
                if let Ok(first_seq) = n.parse::<u64>() {
                    segments.push(Segment {
                        first_seq,
                        path: entry.path(),
                    });
                }
            }
        }
        segments.sort_by_key(|s| s.first_seq);
        let mut recovery = Recovery::default();
        let mut next_seq = segments.first().map(|s| s.first_seq).unwrap_or(1);
        let last = segments.len().saturating_sub(1);
        let mut last_size = 0;
        for (i, seg) in segments.iter().enumerate() {
            let f = File::open(&seg.path).map_err(io_err(&seg.path))?;
            let mut r = BufReader::new(f);
            let mut offset = 0u64;
            if seg.first_seq != next_seq {
                return Err(WalError::Corrupt {
                    path: seg.path.clone(),
                    offset: 0,
                    reason: format!(
                        "segment starts at record {} but {next_seq} was expected",
                        seg.first_seq
                    ),
                });
            }
            loop {
                match read_record(&mut r).map_err(io_err(&seg.path))? {
                    Ok(None) => break,
                    Ok(Some((seq, payload))) if seq == next_seq => {
                        next_seq += 1;
                        recovery.records += 1;
                        offset += (HEADER + payload.len()) as u64;
                    }
                    Ok(Some((seq, _))) => {
                        return Err(WalError::Corrupt {
                            path: seg.path.clone(),
                            offset,
                            reason: format!("record {seq} where {next_seq} was expected"),
                        })
                    }
                    Err(_) if i == last => {
                        // A torn tail: cut it off.
                        let len = std::fs::metadata(&seg.path)
                            .map_err(io_err(&seg.path))?
                            .len();
                        recovery.truncated_bytes = len - offset;
                        let f = OpenOptions::new()
                            .write(true)
                            .open(&seg.path)
                            .map_err(io_err(&seg.path))?;
                        f.set_len(offset).map_err(io_err(&seg.path))?;
                        f.sync_all().map_err(io_err(&seg.path))?;
                        break;
                    }
                    Err(reason) => {
                        return Err(WalError::Corrupt {
                            path: seg.path.clone(),
                            offset,
                            reason,
                        })
                    }
                }
            }
            if i == last {
                last_size = offset;
            }
        }
        if segments.is_empty() {
            segments.push(Segment {
                first_seq: next_seq,
                path: segment_path(dir, next_seq),
            });
        }
        let path = &segments.last().expect("one segment").path;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        file.seek(SeekFrom::End(0)).map_err(io_err(path))?;
        sync_dir(dir)?;
        let state = State {
            dir: dir.to_path_buf(),
            config,
            segments,
            file,
            size: last_size,
            next_seq,
            durable: next_seq,
            syncing: false,
        };
        Ok((
            Wal {
                state: Mutex::new(state),
                synced: Condvar::new(),
                cursor: Mutex::new(None),
            },
            recovery,
        ))
    }

    /// Appends records and returns once they are on disk; returns the
    /// sequence number of the first. An empty batch returns at once.
    ///
    /// # Errors
    /// I/O errors (then nothing of the batch may be assumed durable) and
    /// payloads over [`MAX_RECORD`].
    pub fn append<P: AsRef<[u8]>>(&self, batch: &[P]) -> Result<u64, WalError> {
        if let Some(p) = batch.iter().find(|p| p.as_ref().len() > MAX_RECORD) {
            return Err(WalError::TooLarge(p.as_ref().len()));
        }
        let mut st = self.state.lock().expect("wal lock");
        let first = st.next_seq;
        if batch.is_empty() {
            return Ok(first);
        }
        if st.size >= st.config.segment_bytes {
            self.rotate(&mut st)?;
        }
        let mut buf = Vec::with_capacity(batch.iter().map(|p| p.as_ref().len() + HEADER).sum());
        for p in batch {
            let p = p.as_ref();
            let seq = st.next_seq;
            st.next_seq += 1;
            let mut h = crc32fast::Hasher::new();
            h.update(&seq.to_le_bytes());
            h.update(p);
            buf.extend_from_slice(&(p.len() as u32).to_le_bytes());
            buf.extend_from_slice(&h.finalize().to_le_bytes());
            buf.extend_from_slice(&seq.to_le_bytes());
            buf.extend_from_slice(p);
        }
        let path = st.segments.last().expect("one segment").path.clone();
        if let Err(e) = st.file.write_all(&buf) {
            // Take the partial write back, so that the next record does not
            // land after half a record.
            let size = st.size;
            let _ = st.file.set_len(size);
            st.next_seq = first;
            return Err(io_err(&path)(e));
        }
        st.size += buf.len() as u64;
        let end = st.next_seq;
        // Group commit: wait for a running sync, then sync everything
        // written so far unless someone else already did.
        loop {
            if st.durable >= end {
                return Ok(first);
            }
            if !st.syncing {
                st.syncing = true;
                let upto = st.next_seq;
                let file = st.file.try_clone().map_err(io_err(&path))?;
                drop(st);
                let result = file.sync_data().map_err(io_err(&path));
                st = self.state.lock().expect("wal lock");
                st.syncing = false;
                if result.is_ok() {
                    st.durable = st.durable.max(upto);
                }
                self.synced.notify_all();
                result?;
            } else {
                st = self.synced.wait(st).expect("wal lock");
            }
        }
    }

    fn rotate(&self, st: &mut State) -> Result<(), WalError> {
        let path = st.segments.last().expect("one segment").path.clone();
        st.file.sync_data().map_err(io_err(&path))?;
        st.durable = st.next_seq;
        let first = st.next_seq;
        let new = segment_path(&st.dir, first);
        st.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&new)
            .map_err(io_err(&new))?;
        sync_dir(&st.dir)?;
        st.segments.push(Segment {
            first_seq: first,
            path: new,
        });
        st.size = 0;
        Ok(())
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.state.lock().expect("wal lock").next_seq
    }

    /// Every durable record from `from` on, in order.
    ///
    /// # Errors
    /// I/O errors and corrupt records.
    pub fn read_from(&self, from: u64) -> Result<Vec<Record>, WalError> {
        self.read_range(from, usize::MAX)
    }

    /// Up to `max` durable records from `from` on, in order.
    ///
    /// # Errors
    /// I/O errors and corrupt records.
    pub fn read_range(&self, from: u64, max: usize) -> Result<Vec<Record>, WalError> {
        let (paths, end): (Vec<(u64, PathBuf)>, u64) = {
            let st = self.state.lock().expect("wal lock");
            (
                st.segments
                    .iter()
                    .map(|s| (s.first_seq, s.path.clone()))
                    .collect(),
                st.durable,
            )
        };
        // A reader that goes on where it stopped (the detection thread)
        // resumes at the byte offset it reached instead of rescanning the
        // segment from its start.
        let hint = *self.cursor.lock().expect("wal cursor");
        let mut out = Vec::new();
        for (i, (first, path)) in paths.iter().enumerate() {
            let next_first = paths.get(i + 1).map(|p| p.0).unwrap_or(u64::MAX);
            if next_first <= from {
                continue;
            }
            let mut file = File::open(path).map_err(io_err(path))?;
            let mut offset = 0u64;
            if let Some((seq, seg_first, off)) = hint {
                if seq == from && seg_first == *first {
                    file.seek(SeekFrom::Start(off)).map_err(io_err(path))?;
                    offset = off;
                }
            }
            let mut r = BufReader::with_capacity(1 << 20, file);
            loop {
                match read_record(&mut r).map_err(io_err(path))? {
                    Ok(None) => break,
                    Ok(Some((seq, payload))) => {
                        if seq >= end {
                            return Ok(out);
                        }
                        offset += (HEADER + payload.len()) as u64;
                        if seq >= from {
                            out.push((seq, payload));
                            if out.len() >= max {
                                *self.cursor.lock().expect("wal cursor") =
                                    Some((seq + 1, *first, offset));
                                return Ok(out);
                            }
                        }
                    }
                    // In the segment being written, bytes past the last
                    // complete record may be a write in progress.
                    Err(_) if i + 1 == paths.len() => break,
                    Err(reason) => {
                        return Err(WalError::Corrupt {
                            path: path.clone(),
                            offset,
                            reason,
                        })
                    }
                }
            }
            *self.cursor.lock().expect("wal cursor") =
                Some((out.last().map(|r| r.0 + 1).unwrap_or(from), *first, offset));
        }
        Ok(out)
    }

    /// Deletes segments that hold only records below `seq` (those already
    /// processed and stored elsewhere). The current segment is kept.
    ///
    /// # Errors
    /// I/O errors.
    pub fn remove_before(&self, seq: u64) -> Result<usize, WalError> {
        let mut st = self.state.lock().expect("wal lock");
        let mut removed = 0;
        while st.segments.len() > 1 && st.segments[1].first_seq <= seq {
            let seg = st.segments.remove(0);
            std::fs::remove_file(&seg.path).map_err(io_err(&seg.path))?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// Makes a directory entry (a new segment) durable.
fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(i: u64) -> Vec<u8> {
        format!("event {i} {}", "x".repeat((i % 50) as usize)).into_bytes()
    }

    #[test]
    fn append_reopen_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, rec) = Wal::open(dir.path(), WalConfig::default()).unwrap();
            assert_eq!(rec, Recovery::default());
            assert_eq!(wal.append(&[payload(1), payload(2)]).unwrap(), 1);
            assert_eq!(wal.append(&[payload(3)]).unwrap(), 3);
        }
        let (wal, rec) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        assert_eq!(rec.records, 3);
        assert_eq!(wal.next_seq(), 4);
        let all = wal.read_from(1).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2], (3, payload(3)));
        assert_eq!(wal.read_from(3).unwrap().len(), 1);
    }

    #[test]
    fn segments_rotate_and_old_ones_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let config = WalConfig { segment_bytes: 200 };
        let (wal, _) = Wal::open(dir.path(), config.clone()).unwrap();
        for i in 1..=50 {
            wal.append(&[payload(i)]).unwrap();
        }
        let segs = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(segs > 5, "{segs}");
        assert_eq!(wal.read_from(1).unwrap().len(), 50);
        let removed = wal.remove_before(40).unwrap();
        assert!(removed > 0);
        let rest = wal.read_from(40).unwrap();
        assert_eq!(rest.first().unwrap().0, 40);
        assert_eq!(rest.len(), 11);
        drop(wal);
        let (wal, rec) = Wal::open(dir.path(), config).unwrap();
        assert_eq!(wal.next_seq(), 51);
        assert!(rec.records >= 11);
    }

    #[test]
    fn torn_tail_is_cut_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
            wal.append(&[payload(1), payload(2), payload(3)]).unwrap();
        }
        let seg = segment_path(dir.path(), 1);
        let len = std::fs::metadata(&seg).unwrap().len();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 5).unwrap();
        let (wal, rec) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        assert_eq!(rec.records, 2);
        assert!(rec.truncated_bytes > 0);
        assert_eq!(wal.next_seq(), 3);
        wal.append(&[payload(3)]).unwrap();
        assert_eq!(wal.read_from(1).unwrap().len(), 3);
    }

    #[test]
    fn corruption_before_the_tail_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let config = WalConfig { segment_bytes: 100 };
        {
            let (wal, _) = Wal::open(dir.path(), config.clone()).unwrap();
            for i in 1..=20 {
                wal.append(&[payload(i)]).unwrap();
            }
        }
        let first = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[HEADER + 2] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        let err = Wal::open(dir.path(), config).err().expect("corrupt");
        let text = err.to_string();
        assert!(
            text.contains(
                "wal-00000000000000000001.log: offset 0: corrupt record: checksum mismatch"
            ),
            "{text}"
        );
    }

    #[test]
    fn concurrent_writers_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        let wal = std::sync::Arc::new(wal);
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let wal = wal.clone();
                std::thread::spawn(move || {
                    for i in 0..100u64 {
                        wal.append(&[payload(t * 1000 + i)]).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let all = wal.read_from(1).unwrap();
        assert_eq!(all.len(), 800);
        let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, (1..=800).collect::<Vec<_>>());
    }

    #[test]
    fn oversized_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), WalConfig::default()).unwrap();
        assert!(matches!(
            wal.append(&[vec![0u8; MAX_RECORD + 1]]),
            Err(WalError::TooLarge(_))
        ));
        assert_eq!(wal.next_seq(), 1);
    }
}
