//! What each field scan found in the texts it scanned lately, per thread.
//!
//! Event logs repeat themselves: in the EVTX corpus, 77% of the bytes of
//! field values are values seen before in the same field (an image path,
//! a parent command line, a hash list, a user). A scan's result depends on
//! nothing but its literals and the text, so a text scanned once need not
//! be scanned again: the patterns found are kept, keyed by scan and text,
//! and replayed. The text itself is kept and compared, so a hash collision
//! can only cost a scan, never change a result.
//!
//! Memory is bounded: past [`TEXT_LIMIT`] bytes of kept text, everything
//! is forgotten and the memo fills again.

use rustc_hash::FxHashMap;
use std::hash::Hasher;
use std::ops::Range;

/// Texts shorter than this are scanned every time: a short scan costs
/// about what hashing and comparing the text would.
pub(crate) const MIN_TEXT: usize = 16;

/// Bytes of text kept before the memo is cleared.
const TEXT_LIMIT: usize = 1 << 20;

/// Patterns found per text beyond which the result is not kept.
const HITS_LIMIT: usize = 64;

/// The memo; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct ScanMemo {
    /// Entry by scan and text hash.
    index: FxHashMap<(u32, u64), u32>,
    entries: Vec<Entry>,
    text: Vec<u8>,
    hits: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    text: (u32, u32),
    hits: (u32, u32),
}

/// Where a text's result was looked for: found, or the hash to insert it
/// under.
pub(crate) enum Lookup {
    Found(Range<usize>),
    Absent(u64),
}

impl ScanMemo {
    /// The patterns scan `scan` found in `text` when it last scanned it.
    pub fn get(&self, scan: u32, text: &[u8]) -> Lookup {
        let mut h = rustc_hash::FxHasher::default();
        h.write(text);
        let hash = h.finish();
        match self.index.get(&(scan, hash)) {
            Some(&e) => {
                let e = self.entries[e as usize];
                let kept = &self.text[e.text.0 as usize..e.text.1 as usize];
                if kept == text {
                    Lookup::Found(e.hits.0 as usize..e.hits.1 as usize)
                } else {
                    Lookup::Absent(hash)
                }
            }
            None => Lookup::Absent(hash),
        }
    }

    /// Pattern number `i` of a result [`ScanMemo::get`] found.
    pub fn hit(&self, i: usize) -> u32 {
        self.hits[i]
    }

    /// Keeps what scan `scan` found in `text` (hashed to `hash` by
    /// [`ScanMemo::get`]).
    pub fn insert(&mut self, scan: u32, text: &[u8], hash: u64, found: &[u32]) {
        if found.len() > HITS_LIMIT || self.index.contains_key(&(scan, hash)) {
            return;
        }
        if self.text.len() + text.len() > TEXT_LIMIT {
            self.clear();
        }
        let t0 = self.text.len() as u32;
        self.text.extend_from_slice(text);
        let h0 = self.hits.len() as u32;
        self.hits.extend_from_slice(found);
        self.index.insert((scan, hash), self.entries.len() as u32);
        self.entries.push(Entry {
            text: (t0, self.text.len() as u32),
            hits: (h0, self.hits.len() as u32),
        });
    }

    /// Forgets everything (the scans changed, or the memo is full).
    pub fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
        self.text.clear();
        self.hits.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_results_by_scan_and_text() {
        let mut m = ScanMemo::default();
        let text = b"c:\\windows\\system32\\cmd.exe";
        let Lookup::Absent(h) = m.get(7, text) else {
            panic!("found in an empty memo")
        };
        m.insert(7, text, h, &[3, 1]);
        let Lookup::Found(r) = m.get(7, text) else {
            panic!("not kept")
        };
        assert_eq!(r.map(|i| m.hit(i)).collect::<Vec<_>>(), vec![3, 1]);
        // Another scan, another text: not the same result.
        assert!(matches!(m.get(8, text), Lookup::Absent(_)));
        assert!(matches!(
            m.get(7, b"c:\\windows\\system32\\cmd.exf"),
            Lookup::Absent(_)
        ));
        // Found nothing is a result too.
        let Lookup::Absent(h) = m.get(8, text) else {
            unreachable!()
        };
        m.insert(8, text, h, &[]);
        assert!(matches!(m.get(8, text), Lookup::Found(r) if r.is_empty()));
    }

    #[test]
    fn a_colliding_hash_is_not_taken_for_the_same_text() {
        let mut m = ScanMemo::default();
        let text = b"some text long enough";
        // An entry under the hash of `text` but holding another text, as
        // a collision would leave it.
        let Lookup::Absent(h) = m.get(1, text) else {
            unreachable!()
        };
        m.insert(1, b"another text, same hash", h, &[5]);
        assert!(matches!(m.get(1, text), Lookup::Absent(_)));
    }

    #[test]
    fn memory_stays_bounded() {
        let mut m = ScanMemo::default();
        let text = vec![b'a'; 4096];
        for scan in 0..1000u32 {
            let Lookup::Absent(h) = m.get(scan, &text) else {
                unreachable!()
            };
            m.insert(scan, &text, h, &[scan]);
            assert!(m.text.len() <= TEXT_LIMIT);
        }
        // The last one is still there.
        assert!(matches!(m.get(999, &text), Lookup::Found(_)));
        assert!(matches!(m.get(0, &text), Lookup::Absent(_)));
    }
}
