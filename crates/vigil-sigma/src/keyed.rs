//! Prefilter literals of the form `key=value`, found by their key and a
//! table lookup instead of through an Aho-Corasick automaton.
//!
//! SigmaHQ's Windows rules carry some 5,700 file hashes as
//! `Hashes|contains: 'SHA256=…'` (Sysmon writes `SHA1=…,MD5=…,…` into one
//! field): 60% of all the literal bytes the prefilter compiles, one
//! automaton of 2.7 MB, and the largest single part of compiling the rule
//! set. They share a handful of keys (`md5=`, `sha1=`, `sha256=`,
//! `imphash=`), so each key is searched for with `memmem` and the bytes
//! after it are looked up once per value length the key has.
//!
//! This finds exactly the occurrences an automaton would. A key is a
//! literal's text up to and including its first `=`, so it holds one `=`,
//! at its end; two occurrences of a key therefore never overlap, and a
//! literal occurs at offset `i` exactly when its key does and its value
//! follows.

use memchr::memmem;
use rustc_hash::FxHashMap;

/// A key needs this many literals to leave the automaton.
const MIN_GROUP: usize = 16;
/// Values shorter than this stay in the automaton (short values under a
/// common key are cheap there, and would make many lookups here).
const MIN_VALUE: usize = 8;

/// The key of a literal that may be looked up by key: its text through
/// the first `=`, when a value of at least [`MIN_VALUE`] bytes follows.
fn key_of(literal: &str) -> Option<&str> {
    let eq = literal.find('=')?;
    let value_len = literal.len() - eq - 1;
    (eq > 0 && value_len >= MIN_VALUE).then(|| &literal[..=eq])
}

/// Which of `literals` to look up by key (`true`) rather than put into
/// the automaton: those whose key at least [`MIN_GROUP`] of them share.
pub(crate) fn partition(literals: &[String]) -> Vec<bool> {
    let mut counts: FxHashMap<&str, usize> = FxHashMap::default();
    for l in literals {
        if let Some(k) = key_of(l) {
            *counts.entry(k).or_default() += 1;
        }
    }
    literals
        .iter()
        .map(|l| key_of(l).is_some_and(|k| counts[k] >= MIN_GROUP))
        .collect()
}

/// Literals looked up by key; each reports its pattern number.
#[derive(Debug, Clone)]
pub(crate) struct KeyedLiterals {
    groups: Vec<Group>,
}

/// The literals of one key.
#[derive(Debug, Clone)]
struct Group {
    key: memmem::Finder<'static>,
    /// Per value length: value → pattern number.
    by_len: Vec<(usize, Values)>,
}

/// Values of one length under one key, with their pattern numbers.
type Values = FxHashMap<Box<[u8]>, u32>;

impl KeyedLiterals {
    /// Indexes `literals` (each must have a key, see [`partition`]);
    /// literal `i` reports pattern `first + i`. `None` when there are none.
    pub(crate) fn new(literals: &[String], first: u32) -> Option<KeyedLiterals> {
        let mut groups: Vec<Group> = Vec::new();
        let mut by_key: FxHashMap<&str, usize> = FxHashMap::default();
        for (i, l) in literals.iter().enumerate() {
            let key = key_of(l)?;
            let g = *by_key.entry(key).or_insert_with(|| {
                groups.push(Group {
                    key: memmem::Finder::new(key.as_bytes()).into_owned(),
                    by_len: Vec::new(),
                });
                groups.len() - 1
            });
            let value = &l.as_bytes()[key.len()..];
            let by_len = &mut groups[g].by_len;
            let slot = match by_len.iter().position(|(n, _)| *n == value.len()) {
                Some(p) => p,
                None => {
                    by_len.push((value.len(), FxHashMap::default()));
                    by_len.len() - 1
                }
            };
            by_len[slot].1.insert(value.into(), first + i as u32);
        }
        (!groups.is_empty()).then_some(KeyedLiterals { groups })
    }

    /// How many literals there are, when their pattern numbers are
    /// exactly `first..first + count` (what a scan expects of the literals
    /// after its automaton's); `None` otherwise.
    pub(crate) fn patterns_after(&self, first: usize) -> Option<usize> {
        let mut seen = Vec::new();
        for (_, values) in self.groups.iter().flat_map(|g| &g.by_len) {
            seen.extend(values.values().map(|&p| p as usize));
        }
        seen.sort_unstable();
        let count = seen.len();
        seen.iter()
            .enumerate()
            .all(|(i, &p)| p == first + i)
            .then_some(count)
    }

    /// Calls `hit` with the pattern number of every literal occurring in
    /// `text` (a literal occurring twice may be reported twice).
    pub(crate) fn find(&self, text: &[u8], hit: &mut impl FnMut(u32)) {
        for g in &self.groups {
            let key_len = g.key.needle().len();
            for at in g.key.find_iter(text) {
                let rest = &text[at + key_len..];
                for (n, values) in &g.by_len {
                    if let Some(&p) = rest.get(..*n).and_then(|v| values.get(v)) {
                        hit(p);
                    }
                }
            }
        }
    }
}

/// One key's literals as stored: the key, and each value with its pattern
/// number.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredGroup {
    #[serde(with = "crate::byte_string::bytes")]
    key: Vec<u8>,
    values: Vec<StoredValue>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredValue {
    #[serde(with = "crate::byte_string::bytes")]
    value: Vec<u8>,
    pattern: u32,
}

/// Written as its keys and values; the finders and tables are built again
/// when read.
impl serde::Serialize for KeyedLiterals {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let groups: Vec<StoredGroup> = self
            .groups
            .iter()
            .map(|g| {
                let mut values: Vec<_> = g
                    .by_len
                    .iter()
                    .flat_map(|(_, values)| values.iter())
                    .map(|(v, &pattern)| StoredValue {
                        value: v.to_vec(),
                        pattern,
                    })
                    .collect();
                values.sort_by_key(|v| v.pattern);
                StoredGroup {
                    key: g.key.needle().to_vec(),
                    values,
                }
            })
            .collect();
        groups.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for KeyedLiterals {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = Vec::<StoredGroup>::deserialize(d)?;
        let mut groups = Vec::with_capacity(stored.len());
        for g in stored {
            if g.key.is_empty() {
                return Err(serde::de::Error::custom("keyed literals: an empty key"));
            }
            let mut by_len: Vec<(usize, Values)> = Vec::new();
            for StoredValue { value, pattern: p } in g.values {
                let slot = match by_len.iter().position(|(n, _)| *n == value.len()) {
                    Some(i) => i,
                    None => {
                        by_len.push((value.len(), FxHashMap::default()));
                        by_len.len() - 1
                    }
                };
                by_len[slot].1.insert(value.into(), p);
            }
            groups.push(Group {
                key: memmem::Finder::new(&g.key).into_owned(),
                by_len,
            });
        }
        Ok(KeyedLiterals { groups })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::AhoCorasick;
    use proptest::prelude::*;

    fn hashes(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("md5={:032x}", i * 7919))
            .chain((0..n).map(|i| format!("sha1={:040x}", i * 104729)))
            .collect()
    }

    #[test]
    fn partition_takes_large_key_groups_only() {
        let mut lits = hashes(20);
        lits.push("x=1234567890".into());
        lits.push("\\cmd.exe".into());
        lits.push("md5=short".into());
        let keyed = partition(&lits);
        assert!(keyed[..40].iter().all(|&k| k));
        assert!(!keyed[40] && !keyed[41] && !keyed[42]);
    }

    /// Reports the same patterns as an overlapping automaton search.
    fn same_as_automaton(lits: &[String], text: &str) {
        let keyed = KeyedLiterals::new(lits, 0).unwrap();
        let mut got = Vec::new();
        keyed.find(text.as_bytes(), &mut |p| got.push(p));
        got.sort_unstable();
        got.dedup();
        let ac = AhoCorasick::new(lits).unwrap();
        let mut want: Vec<u32> = ac
            .find_overlapping_iter(text)
            .map(|m| m.pattern().as_u32())
            .collect();
        want.sort_unstable();
        want.dedup();
        assert_eq!(got, want, "{text}");
    }

    /// Written and read back (as a rule-set snapshot stores them), the
    /// literals report the same patterns, and their numbers are checked.
    #[test]
    fn stored_and_read_back_they_find_the_same() {
        let lits = hashes(20);
        let keyed = KeyedLiterals::new(&lits, 5).unwrap();
        let bytes = postcard::to_allocvec(&keyed).expect("encode");
        let back: KeyedLiterals = postcard::from_bytes(&bytes).expect("decode");
        let text = format!("sha1={},md5={}", &lits[25][5..], &lits[3][4..]);
        let found = |k: &KeyedLiterals| {
            let mut got = Vec::new();
            k.find(text.as_bytes(), &mut |p| got.push(p));
            got.sort_unstable();
            got
        };
        assert_eq!(found(&back), vec![8, 30]);
        assert_eq!(found(&back), found(&keyed));
        assert_eq!(back.patterns_after(5), Some(40));
        assert_eq!(back.patterns_after(4), None);
    }

    #[test]
    fn finds_what_an_automaton_finds() {
        let lits = hashes(20);
        let text = format!("sha1={},md5={},imphash=00", &lits[25][5..], &lits[3][4..]);
        same_as_automaton(&lits, &text);
        same_as_automaton(&lits, &format!("xx{}", &lits[0][..30]));
        same_as_automaton(&lits, &format!("{}{}", lits[1], lits[1]));
    }

    proptest! {
        #[test]
        fn agrees_with_an_automaton(
            picks in prop::collection::vec((0usize..40, 0usize..3), 0..6),
            noise in "[a-f0-9=,]{0,40}",
        ) {
            let lits = hashes(20);
            let mut text = noise.clone();
            for (i, cut) in picks {
                // Whole literals, literals cut short, and literals glued
                // to the noise.
                let l = &lits[i];
                text.push_str(&l[..l.len() - cut]);
                text.push_str(&noise[..noise.len() / 2]);
            }
            same_as_automaton(&lits, &text);
        }
    }
}
