//! The compiled-rule cache: a rule set compiled once, loaded by later runs
//! without reading, parsing or compiling a rule.
//!
//! Compiling SigmaHQ's Windows rules costs more than hunting through a
//! typical triage collection, and the rules rarely change between hunts.
//! An entry holds a [`RuleSetSnapshot`] with what else the hunt worked out
//! from the rules (correlations, load errors, how many were left out), in
//! one file per *key*.
//!
//! The key is a SHA-256 over everything the compiled set depends on: the
//! cache format, this executable (its size and modification time, so a
//! rebuilt binary never reads an older layout), the user, the settings
//! that shape the set (rule selection, placeholders, log-source mapping),
//! and every rule file's path, size, modification and change times and
//! inode. An edited, added, removed or replaced rule file gives a new key,
//! as it does for `make` or `ccache`'s direct mode; the change time cannot
//! be set back by `touch` or `cp -p`. (On a filesystem with coarse times,
//! FAT's 2 s, an edit that keeps the size within that time would go
//! unseen; `--no-cache` is the way out there.)
//!
//! File layout: magic, format, key, payload length, CRC-32 of the payload,
//! payload (postcard). Anything that does not check out, or an entry
//! another user owns, is a miss, and the entry is rebuilt; writes go
//! through a temporary file and a rename, so concurrent hunts never see
//! half an entry. Only the newest [`KEEP_ENTRIES`] entries are kept.
//!
//! Beside the entries, a `latest-*.key` file per set of settings holds the
//! key of the entry the last hunt with them used: working out the key
//! means a `stat` of every rule file, so a hunt decodes that entry while
//! it does, and keeps the result only if the keys agree.

use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use vigil_sigma::correlation::Correlation;
use vigil_sigma::ruleset::{RuleSetSnapshot, RuleSetSnapshotRef, SNAPSHOT_FORMAT};
use vigil_sigma::{RuleError, RuleSet};

const MAGIC: &[u8; 8] = b"VIGILRSC";
/// This file's own layout version, on top of the snapshot's.
const FILE_FORMAT: u32 = 1;
const HEADER: usize = 8 + 4 + 32 + 8 + 4;
/// Entries kept in the cache directory (the newest; one per distinct
/// rule set and settings).
pub const KEEP_ENTRIES: usize = 8;

/// A cache directory.
pub struct RuleCache {
    dir: PathBuf,
}

/// What the compiled set depends on, hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key([u8; 32]);

/// What a hunt keeps of its rules, as read back.
#[derive(serde::Deserialize)]
struct Entry {
    set: RuleSetSnapshot,
    correlations: Vec<Correlation>,
    errors: Vec<RuleError>,
    skipped: usize,
}

/// What a hunt keeps of its rules, borrowed for writing: the same fields
/// in the same order as [`Entry`], so it writes the bytes `Entry` reads.
#[derive(serde::Serialize)]
pub struct EntryRef<'a> {
    /// The compiled rule set.
    pub set: RuleSetSnapshotRef<'a>,
    /// Correlation rules, not compiled into the set.
    pub correlations: &'a [Correlation],
    /// Rules and files that did not load.
    pub errors: &'a [RuleError],
    /// Rules left out by the selection.
    pub skipped: usize,
}

/// What [`RuleCache::get`] found.
pub enum Lookup {
    /// An entry for the key.
    Hit(Box<LoadedEntry>),
    /// No entry for the key.
    Miss,
    /// An entry that could not be used, and why (it is rebuilt).
    Damaged(String),
}

/// A cache entry with its rule set loaded.
pub struct LoadedEntry {
    /// The rule set.
    pub set: RuleSet,
    /// Correlation rules.
    pub correlations: Vec<Correlation>,
    /// Load errors.
    pub errors: Vec<RuleError>,
    /// Rules left out by the selection.
    pub skipped: usize,
}

impl Key {
    /// The key of the rule `files` under `settings` (a description of
    /// every other input the compiled set depends on). Each file is
    /// `stat`ed: one that cannot be still takes part, by its path and
    /// error, so that it fails to load the same way.
    #[cfg(test)]
    pub fn new(files: &[PathBuf], settings: &str) -> Key {
        let stamps: Vec<Stamp> = files.iter().map(|f| stamp(f)).collect();
        Key::of_stamps(files, &stamps, settings)
    }

    /// The rule files under `paths` (as `rule_files` finds them, with its
    /// errors) and their key under `settings`. Each file
    /// is stamped by the thread of the walk that found it, relative to
    /// its open directory.
    pub fn of_rule_files(
        paths: &[PathBuf],
        settings: &str,
    ) -> (Key, Vec<PathBuf>, Vec<vigil_sigma::RuleError>) {
        let (found, errors) = vigil_server::rules::walk_rule_files(paths, |f| {
            #[cfg(unix)]
            if let Some(stamp) = f
                .in_dir
                .and_then(|(dir, name)| unix_stat::stat_at(dir, name))
            {
                return Ok(stamp);
            }
            stamp(f.path)
        });
        let (files, stamps): (Vec<PathBuf>, Vec<Stamp>) = found.into_iter().unzip();
        (Key::of_stamps(&files, &stamps, settings), files, errors)
    }

    /// The key of `files`, whose stamps are `stamps`, under `settings`.
    fn of_stamps(files: &[PathBuf], stamps: &[Stamp], settings: &str) -> Key {
        let mut h = Sha256::new();
        h.update(format!("vigil {FILE_FORMAT} {SNAPSHOT_FORMAT}\n").as_bytes());
        h.update(executable_stamp().as_bytes());
        // Users sharing a cache directory each get entries of their own.
        #[cfg(unix)]
        // SAFETY: geteuid has no preconditions and cannot fail.
        h.update(unsafe { libc::geteuid() }.to_le_bytes());
        h.update(settings.len().to_le_bytes());
        h.update(settings.as_bytes());
        for (file, stamp) in files.iter().zip(stamps) {
            hash_stamp(&mut h, file, stamp);
        }
        Key(h.finalize().into())
    }

    fn hex(&self) -> String {
        self.0[..12].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A file's stamp, or why it could not be `stat`ed.
type Stamp = Result<FileStamp, String>;

/// What of a file's metadata changes when its content may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    /// Modification time, nanoseconds since the epoch (0 before it).
    modified_ns: i128,
    /// Change time (seconds, nanoseconds), inode and device.
    #[cfg(unix)]
    unix: (i64, i64, u64, u64),
}

impl From<&std::fs::Metadata> for FileStamp {
    fn from(m: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileStamp {
                len: m.len(),
                modified_ns: (i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()))
                    .max(0),
                unix: (m.ctime(), m.ctime_nsec(), m.ino(), m.dev()),
            }
        }
        #[cfg(not(unix))]
        FileStamp {
            len: m.len(),
            modified_ns: m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128),
        }
    }
}

/// Hashes a file's path and stamp (or the error that kept it from being
/// `stat`ed) into a key. In binary: formatting thousands of stamps as
/// text cost a fifth of stamping them.
fn hash_stamp(h: &mut Sha256, path: &Path, stamp: &Stamp) {
    let name = path.as_os_str().as_encoded_bytes();
    h.update((name.len() as u64).to_le_bytes());
    h.update(name);
    match stamp {
        Err(e) => {
            h.update([0]);
            h.update((e.len() as u64).to_le_bytes());
            h.update(e.as_bytes());
        }
        Ok(s) => {
            h.update([1]);
            h.update(s.len.to_le_bytes());
            h.update(s.modified_ns.to_le_bytes());
            #[cfg(unix)]
            {
                let (ctime, ctime_nsec, ino, dev) = s.unix;
                h.update(ctime.to_le_bytes());
                h.update(ctime_nsec.to_le_bytes());
                h.update(ino.to_le_bytes());
                h.update(dev.to_le_bytes());
            }
        }
    }
}

/// A file's stamp, `stat`ed by its path.
fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .map(|m| FileStamp::from(&m))
        .map_err(|e| e.to_string())
}

/// `stat` relative to an open directory: the kernel then looks up one
/// name instead of walking the whole path from the root, which was most
/// of the cost of `stat`ing thousands of rule files.
#[cfg(unix)]
mod unix_stat {
    use super::FileStamp;
    use std::ffi::{CString, OsStr};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::AsRawFd;

    /// The stamp of `name` in the open directory `dir` by `stat(2)`
    /// (following symbolic links, as `std::fs::metadata` does); `None`
    /// when it fails, for the caller to do it the usual way and report
    /// the error as it would.
    pub fn stat_at(dir: &std::fs::File, name: &OsStr) -> Option<FileStamp> {
        let name = CString::new(name.as_bytes()).ok()?;
        // SAFETY: an all-zero `stat` is a valid value of this plain C
        // struct; fstatat writes it whole on success.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the directory descriptor is open for the call, the
        // name is NUL-terminated and `st` is a valid place to write.
        let rc = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, 0) };
        // The casts are those of `std::os::unix::fs::MetadataExt`: the
        // field types differ between Unix systems.
        #[allow(clippy::unnecessary_cast)]
        (rc == 0).then(|| FileStamp {
            len: st.st_size as u64,
            modified_ns: (st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128).max(0),
            unix: (
                st.st_ctime as i64,
                st.st_ctime_nsec as i64,
                st.st_ino as u64,
                st.st_dev as u64,
            ),
        })
    }
}

/// This executable's version, size and modification time: a rebuilt
/// binary may lay its types out differently.
fn executable_stamp() -> String {
    let exe = std::env::current_exe()
        .map(|p| format!("{}\0{:?}", p.display(), stamp(&p)))
        .unwrap_or_else(|e| format!("unknown executable: {e}"));
    format!("{} {exe}\n", env!("CARGO_PKG_VERSION"))
}

impl RuleCache {
    /// The cache in `dir` (created when an entry is first stored).
    pub fn new(dir: PathBuf) -> Self {
        RuleCache { dir }
    }

    /// The default directory: `$XDG_CACHE_HOME/vigil`, else
    /// `$HOME/.cache/vigil`; `None` when neither is set.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".cache"))
            })?;
        Some(base.join("vigil"))
    }

    fn path(&self, key: &Key) -> PathBuf {
        self.dir.join(format!("rules-{}.bin", key.hex()))
    }

    /// Where the key of the newest entry for `settings` is kept.
    fn latest_path(&self, settings: &str) -> PathBuf {
        let named = Key(Sha256::digest(settings.as_bytes()).into());
        self.dir.join(format!("latest-{}.key", named.hex()))
    }

    /// Writes `bytes` to `path` in the cache directory through a
    /// temporary file and a rename, so that no reader sees half of it.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        tmp.write_all(bytes)?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }

    /// The key of the entry the last hunt with `settings` used, if it was
    /// kept: a guess, right unless a rule file changed since, which a
    /// hunt may decode while it works out the real key. `None` when there
    /// is none, or it is not this user's.
    pub fn recall(&self, settings: &str) -> Option<Key> {
        let file = std::fs::File::open(self.latest_path(settings)).ok()?;
        owned_by_us(&file).ok()?;
        let mut bytes = Vec::with_capacity(32);
        file.take(33).read_to_end(&mut bytes).ok()?;
        Some(Key(bytes.try_into().ok()?))
    }

    /// Keeps `key` as the one to [`RuleCache::recall`] for `settings`.
    /// Errors are ignored: the guess only saves time.
    pub fn remember(&self, settings: &str, key: &Key) {
        let _ = self.write_atomically(&self.latest_path(settings), &key.0);
    }

    /// The entry for `key`, with its rule set loaded.
    pub fn get(&self, key: &Key) -> Lookup {
        let path = self.path(key);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Damaged(format!("{}: {e}", path.display())),
        };
        if let Err(why) = owned_by_us(&file) {
            return Lookup::Damaged(format!("{}: {why}", path.display()));
        }
        let bytes = match EntryBytes::read(&file) {
            Ok(b) => std::sync::Arc::new(b),
            Err(e) => return Lookup::Damaged(format!("{}: {e}", path.display())),
        };
        // The set reads its rules from the entry's bytes when it needs
        // them, rather than from a copy.
        match vigil_sigma::ruleset::decode_in_place(bytes, |b| decode(b, key)) {
            Ok(entry) => Lookup::Hit(Box::new(entry)),
            Err(why) => Lookup::Damaged(format!("{}: {why}", path.display())),
        }
    }

    /// Stores `entry` under `key`, then removes all but the newest
    /// [`KEEP_ENTRIES`] entries.
    ///
    /// # Errors
    /// When the directory cannot be created or the file written.
    pub fn put(&self, key: &Key, entry: &EntryRef<'_>) -> Result<(), String> {
        let payload = postcard::to_allocvec(entry).map_err(|e| format!("encoding: {e}"))?;
        let mut bytes = Vec::with_capacity(HEADER + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FILE_FORMAT.to_le_bytes());
        bytes.extend_from_slice(&key.0);
        bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        self.write_atomically(&self.path(key), &bytes)
            .map_err(|e| format!("{}: {e}", self.dir.display()))?;
        self.evict(&self.path(key));
        Ok(())
    }

    /// Removes all but the newest entries, never `written`, and the
    /// temporary files of writes that never finished (a hunt stopped
    /// mid-write) once they are an hour old. Errors are ignored: another
    /// hunt may be evicting too.
    fn evict(&self, written: &Path) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = std::time::SystemTime::now();
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        let mut pointers: Vec<(std::time::SystemTime, PathBuf)> = Vec::new();
        for e in dir.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Some(modified) = e.metadata().ok().and_then(|m| m.modified().ok()) else {
                continue;
            };
            if name.starts_with(".tmp") {
                let age = now.duration_since(modified).unwrap_or_default();
                if age > std::time::Duration::from_secs(3600) {
                    let _ = std::fs::remove_file(e.path());
                }
            } else if name.starts_with("rules-") && name.ends_with(".bin") && e.path() != written {
                entries.push((modified, e.path()));
            } else if name.starts_with("latest-") && name.ends_with(".key") {
                pointers.push((modified, e.path()));
            }
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (_, path) in entries.into_iter().skip(KEEP_ENTRIES - 1) {
            let _ = std::fs::remove_file(path);
        }
        // Keys of entries to guess: one per set of settings, as many as
        // there are entries.
        pointers.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (_, path) in pointers.into_iter().skip(KEEP_ENTRIES) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// An entry is read only when this user wrote it: in a directory others
/// can write to (`--cache-dir /tmp/…`), an entry planted under the
/// expected name would otherwise decide which rules run.
fn owned_by_us(file: &std::fs::File) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let owner = file.metadata().map_err(|e| e.to_string())?.uid();
        // SAFETY: geteuid has no preconditions and cannot fail.
        let us = unsafe { libc::geteuid() };
        if owner != us {
            return Err(format!("owned by user {owner}, not by this user ({us})"));
        }
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// An entry file's bytes: mapped into memory where that is possible,
/// read otherwise.
///
/// Mapped, the bytes are the page cache's own pages: reading the 6 MB
/// entry of SigmaHQ's Windows rules copied them into fresh memory, whose
/// first touch the kernel pays for page by page. With the rules left in
/// place (`decode_in_place`), loading them went from 15 to 10 huge pages
/// faulted in and from 10.3 to 7.4 ms of system CPU (31 alternating
/// runs).
enum EntryBytes {
    #[cfg(unix)]
    Mapped(mapped::Mapped),
    Read(Vec<u8>),
}

impl EntryBytes {
    fn read(file: &std::fs::File) -> std::io::Result<EntryBytes> {
        #[cfg(unix)]
        if let Some(m) = mapped::Mapped::of(file) {
            return Ok(EntryBytes::Mapped(m));
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &*file, &mut bytes)?;
        Ok(EntryBytes::Read(bytes))
    }
}

impl AsRef<[u8]> for EntryBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            #[cfg(unix)]
            EntryBytes::Mapped(m) => m.bytes(),
            EntryBytes::Read(v) => v,
        }
    }
}

/// A read-only memory mapping of a whole file.
#[cfg(unix)]
mod mapped {
    use std::os::unix::io::AsRawFd;

    /// Invariant: `ptr` is the start of a live mapping of `len` (> 0)
    /// readable bytes, unmapped only by `Drop`.
    pub struct Mapped {
        ptr: *const u8,
        len: usize,
    }

    // SAFETY: the mapping is read-only and nothing writes the file (see
    // `of`): reading it from any thread is reading immutable memory.
    unsafe impl Send for Mapped {}
    // SAFETY: as for `Send`.
    unsafe impl Sync for Mapped {}

    impl Mapped {
        /// `file` mapped, or `None` (empty, or the system refused: the
        /// caller reads it instead).
        ///
        /// Sound only for a file nobody writes while it is mapped: a
        /// cache entry is written to a temporary file and renamed into
        /// place, never written in place, and is checked to be this
        /// user's before it is read.
        pub fn of(file: &std::fs::File) -> Option<Mapped> {
            let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
            if len == 0 {
                return None;
            }
            // SAFETY: a fresh private read-only mapping of an open file
            // descriptor; the kernel checks the arguments. MAP_POPULATE
            // maps the (cached) pages at once instead of fault by fault.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | populate(),
                    file.as_raw_fd(),
                    0,
                )
            };
            (ptr != libc::MAP_FAILED).then(|| Mapped {
                ptr: ptr as *const u8,
                len,
            })
        }

        pub fn bytes(&self) -> &[u8] {
            // SAFETY: the invariant; the bytes live as long as `self`.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn populate() -> libc::c_int {
        libc::MAP_POPULATE
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn populate() -> libc::c_int {
        0
    }

    impl Drop for Mapped {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `of`, unmapped once.
            unsafe {
                libc::munmap(self.ptr as *mut libc::c_void, self.len);
            }
        }
    }
}

/// Checks and decodes an entry file's bytes.
fn decode(bytes: &[u8], key: &Key) -> Result<LoadedEntry, String> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err("not a rule cache entry".into());
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    if u32_at(8) != FILE_FORMAT {
        return Err(format!(
            "cache format {} (this build: {FILE_FORMAT})",
            u32_at(8)
        ));
    }
    if bytes[12..44] != key.0 {
        return Err("written for other rules or settings".into());
    }
    let len = u64::from_le_bytes(bytes[44..52].try_into().expect("8 bytes"));
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(format!("truncated: {} of {len} bytes", payload.len()));
    }
    if crc32fast::hash(payload) != u32_at(52) {
        return Err("checksum mismatch".into());
    }
    let entry: Entry = postcard::from_bytes(payload).map_err(|e| format!("decoding: {e}"))?;
    let set = RuleSet::from_snapshot(entry.set).map_err(|e| e.to_string())?;
    Ok(LoadedEntry {
        set,
        correlations: entry.correlations,
        errors: entry.errors,
        skipped: entry.skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_sigma::{rule::parse_file, Placeholders, RuleSetBuilder};

    fn set() -> RuleSet {
        let text = "title: t\nid: r1\nlogsource: {product: windows}\ndetection:\n  sel: {CommandLine|contains: whoami}\n  condition: sel\n";
        let (docs, _) = parse_file(Some("r.yml".into()), text, &Placeholders::new());
        let mut b = RuleSetBuilder::new();
        b.add_documents(docs);
        b.build()
    }

    fn entry<'a>(set: &'a RuleSet, errors: &'a [RuleError]) -> EntryRef<'a> {
        EntryRef {
            set: set.snapshot(),
            correlations: &[],
            errors,
            skipped: 2,
        }
    }

    #[test]
    fn an_entry_is_read_back_and_a_damaged_one_is_a_miss_with_its_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = RuleCache::new(dir.path().join("c"));
        let rule = dir.path().join("r.yml");
        std::fs::write(&rule, "x").expect("write");
        let key = Key::new(std::slice::from_ref(&rule), "settings");
        assert!(matches!(cache.get(&key), Lookup::Miss));
        let (set, errors) = (set(), vec![RuleError::new(3, None, "broken")]);
        cache.put(&key, &entry(&set, &errors)).expect("put");
        match cache.get(&key) {
            Lookup::Hit(e) => {
                assert_eq!(e.set.len(), 1);
                assert_eq!(e.skipped, 2);
                assert_eq!(e.errors[0].reason, "broken");
            }
            _ => panic!("expected a hit"),
        }
        // Other settings, or the rule file rewritten: another key.
        assert_ne!(Key::new(std::slice::from_ref(&rule), "other"), key);
        std::fs::write(&rule, "xy").expect("write");
        assert_ne!(Key::new(std::slice::from_ref(&rule), "settings"), key);

        let path = cache.path(&key);
        let good = std::fs::read(&path).expect("read");
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        for (bytes, why) in [
            (flipped, "checksum mismatch"),
            (good[..good.len() - 3].to_vec(), "truncated"),
            (b"garbage".to_vec(), "not a rule cache entry"),
        ] {
            std::fs::write(&path, bytes).expect("write");
            match cache.get(&key) {
                Lookup::Damaged(reason) => assert!(reason.contains(why), "{reason}"),
                _ => panic!("expected damaged: {why}"),
            }
        }
    }

    #[test]
    fn unfinished_writes_are_removed_once_an_hour_old() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = RuleCache::new(dir.path().to_path_buf());
        let old = dir.path().join(".tmpOld123");
        let fresh = dir.path().join(".tmpNew456");
        for p in [&old, &fresh] {
            std::fs::write(p, b"half an entry").expect("write");
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(two_hours_ago))
            .expect("set mtime");
        cache
            .put(&Key::new(&[], "s"), &entry(&set(), &[]))
            .expect("put");
        assert!(!old.exists());
        assert!(fresh.exists(), "another hunt may be writing it");
    }

    #[test]
    fn only_the_newest_entries_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = RuleCache::new(dir.path().to_path_buf());
        for i in 0..KEEP_ENTRIES + 3 {
            let key = Key::new(&[], &format!("settings {i}"));
            cache.put(&key, &entry(&set(), &[])).expect("put");
        }
        let n = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(n, KEEP_ENTRIES);
    }

    #[test]
    fn stamped_while_walking_the_key_and_files_are_those_found_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Several runs of files, in nested directories, a file that is not
        // a rule, and one path named twice.
        for d in ["", "a", "a/b", "c"] {
            let sub = dir.path().join(d);
            std::fs::create_dir_all(&sub).expect("mkdir");
            for i in 0..100 {
                std::fs::write(sub.join(format!("r{i}.yml")), "title: x").expect("write");
            }
            std::fs::write(sub.join("notes.txt"), "").expect("write");
        }
        let paths = vec![
            dir.path().to_path_buf(),
            dir.path().join("c"),
            dir.path().join("nowhere"),
        ];
        let (files, errors) = vigil_server::rules::rule_files(&paths);
        assert_eq!(files.len(), 400);
        let (key, walked, walk_errors) = Key::of_rule_files(&paths, "s");
        assert_eq!(walked, files);
        assert_eq!(walk_errors.len(), errors.len());
        assert_eq!(key, Key::new(&files, "s"));
        // An edited file changes the key.
        std::fs::write(dir.path().join("a/b/r7.yml"), "title: longer").expect("write");
        assert_ne!(Key::of_rule_files(&paths, "s").0, key);
    }

    /// The key remembered for a set of settings is the one recalled for
    /// them, and only for them; eviction keeps as many as there are
    /// entries.
    #[test]
    fn the_last_key_for_the_same_settings_is_recalled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = RuleCache::new(dir.path().join("cache"));
        assert_eq!(cache.recall("a"), None);
        let (k1, k2) = (Key([1; 32]), Key([2; 32]));
        cache.remember("a", &k1);
        cache.remember("b", &k2);
        assert_eq!(cache.recall("a"), Some(k1));
        assert_eq!(cache.recall("b"), Some(k2));
        cache.remember("a", &k2);
        assert_eq!(cache.recall("a"), Some(k2));
        for i in 0..KEEP_ENTRIES + 3 {
            cache.remember(&format!("s{i}"), &k1);
        }
        cache.evict(Path::new("none"));
        let kept = std::fs::read_dir(dir.path().join("cache"))
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("latest-"))
            .count();
        assert_eq!(kept, KEEP_ENTRIES);
        // A damaged file is no guess.
        std::fs::write(cache.latest_path("a"), b"short").expect("write");
        assert_eq!(cache.recall("a"), None);
    }

    #[test]
    fn stamps_relative_to_a_directory_equal_those_of_the_full_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("mkdir");
        let mut files = Vec::new();
        for (d, name) in [
            (dir.path(), "a.yml"),
            (&*sub, "b.yml"),
            (dir.path(), "c.yml"),
        ] {
            let f = d.join(name);
            std::fs::write(&f, name).expect("write");
            files.push(f);
        }
        #[cfg(unix)]
        {
            let link = dir.path().join("link.yml");
            std::os::unix::fs::symlink(&files[1], &link).expect("symlink");
            files.push(link);
            let dangling = dir.path().join("dangling.yml");
            std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).expect("symlink");
            files.push(dangling);
        }
        files.push(dir.path().join("missing.yml"));
        files.push(PathBuf::from("relative-and-missing.yml"));
        let expected: Vec<Stamp> = files.iter().map(|f| stamp(f)).collect();
        #[cfg(unix)]
        {
            // Where the directory opens and the file is there, relative
            // to the directory; elsewhere by path, as the walk does.
            let relative: Vec<Option<FileStamp>> = files
                .iter()
                .map(|f| {
                    let dir = std::fs::File::open(f.parent()?).ok()?;
                    unix_stat::stat_at(&dir, f.file_name()?)
                })
                .collect();
            assert_eq!(relative.iter().filter(|s| s.is_some()).count(), 4);
            for (relative, expected) in relative.iter().zip(&expected) {
                if let Some(s) = relative {
                    assert_eq!(Ok(*s), *expected);
                }
            }
        }
        // The symbolic link is followed: its stamp is its target's.
        #[cfg(unix)]
        assert_eq!(expected[3], expected[1]);
        assert!(expected.last().expect("one").is_err());
    }
}
