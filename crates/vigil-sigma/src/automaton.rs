//! A multi-literal automaton (Aho–Corasick) held in plain arrays, so that
//! a rule-set snapshot can store it and a hunt read it back instead of
//! building it again.
//!
//! `aho-corasick` cannot serialize its automata, and building those of
//! SigmaHQ's Windows rules is the largest single cost of a short hunt
//! (about 15 ms of CPU; the largest set, 5,787 command-line literals, 4 ms
//! alone). This one is built once, when the rules are compiled, and read
//! back from the compiled-rule cache in a fraction of that. Literal sets
//! of 8 or more use it; smaller ones keep `aho-corasick`, which builds
//! them in microseconds.
//!
//! Layout: every byte maps to a class, one per byte that occurs in some
//! literal and class 0 for all others (which always lead back to the
//! root). States are numbered breadth-first. Those up to depth 2, where a
//! search spends most of its time, have a full row of transitions with
//! failures resolved; deeper ones list their transitions and fall back
//! along failure links. A transition's target carries [`MATCH`] when a
//! literal ends there. Measured against `aho-corasick`'s contiguous NFA on
//! the corpus's 141k field values with the 40 largest literal sets of
//! SigmaHQ's Windows rules: 276 vs 395 ms, same matches.
//!
//! The word tables are kept as little-endian bytes, one after another in
//! one buffer, which a snapshot decoded in place shares rather than copies
//! (2.2 MB for SigmaHQ's Windows rules, copied into fresh memory on every
//! hunt before). A search reads the words unaligned, as x86 and ARM do at
//! no cost.
//!
//! Invariant: every index stored in the arrays is in bounds and every
//! failure link points to a smaller state; [`LiteralAutomaton::new`]
//! guarantees it and deserializing checks it, so a damaged snapshot is an
//! error, never a panic.

use crate::byte_string::{bytes, StoredBytes};
use serde::{Deserialize, Serialize};

/// Flag on a transition's target: a literal ends in that state.
const MATCH: u32 = 1 << 31;

/// States up to this depth get a full row of transitions.
const DENSE_DEPTH: usize = 2;

/// An automaton over a set of literals that reports, for a text, every
/// occurrence of every literal (overlapping ones included), by the
/// literal's index in the set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Packed")]
pub(crate) struct LiteralAutomaton {
    p: Packed,
}

/// The tables of a [`LiteralAutomaton`], as built.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tables {
    /// Class of each byte (256 entries).
    classes: Vec<u8>,
    /// How many classes there are.
    class_count: u32,
    /// States `0..dense_states` have a row in `dense`.
    dense_states: u32,
    /// `dense_states` rows of `class_count` targets.
    dense: Vec<u32>,
    /// Per state: its failure link (no flag).
    fail: Vec<u32>,
    /// Per state and one more: where its listed transitions start.
    trans_start: Vec<u32>,
    trans_class: Vec<u8>,
    trans_target: Vec<u32>,
    /// Per state and one more: where the literals ending there start.
    out_start: Vec<u32>,
    outputs: Vec<u32>,
    /// How many literals the automaton was built over.
    patterns: u32,
    /// The bytes that begin a literal, when there are at most three: at
    /// the root a search skips to the next of them with `memchr`.
    start_bytes: Vec<u8>,
}

/// The word tables in the order [`Packed::data`] holds them.
const DENSE: usize = 0;
const FAIL: usize = 1;
const TRANS_START: usize = 2;
const TRANS_TARGET: usize = 3;
const OUT_START: usize = 4;
const OUTPUTS: usize = 5;
/// The transitions' classes (bytes) come after the word tables.
const TRANS_CLASS: usize = 6;

/// The tables as kept and stored: the small ones as they are, the large
/// ones packed into `data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Packed {
    #[serde(with = "bytes")]
    classes: Vec<u8>,
    class_count: u32,
    dense_states: u32,
    patterns: u32,
    #[serde(with = "bytes")]
    start_bytes: Vec<u8>,
    /// Where each table starts in `data`, in bytes (in the order of the
    /// constants above), and where the last ends.
    at: [u32; 8],
    /// The word tables, little-endian, then the transitions' classes.
    data: StoredBytes,
}

/// A table of little-endian words in a byte slice.
#[derive(Clone, Copy)]
struct Words<'a>(&'a [u8]);

impl<'a> Words<'a> {
    #[inline]
    fn get(self, i: usize) -> u32 {
        let b = &self.0[i * 4..i * 4 + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn len(self) -> usize {
        self.0.len() / 4
    }

    /// The largest word, with `mask` applied (0 for no words).
    fn max_masked(self, mask: u32) -> u32 {
        self.iter().fold(0, |m, w| m.max(w & mask))
    }

    fn iter(self) -> impl Iterator<Item = u32> + Clone + 'a {
        self.0
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The tables of a [`Packed`] automaton, for one search.
#[derive(Clone, Copy)]
struct View<'a> {
    classes: &'a [u8],
    class_count: usize,
    dense_states: u32,
    dense: Words<'a>,
    fail: Words<'a>,
    trans_start: Words<'a>,
    trans_target: Words<'a>,
    out_start: Words<'a>,
    outputs: Words<'a>,
    trans_class: &'a [u8],
}

impl Packed {
    fn pack(t: Tables) -> Packed {
        let mut data = Vec::new();
        let mut at = [0u32; 8];
        for (k, table) in [
            &t.dense,
            &t.fail,
            &t.trans_start,
            &t.trans_target,
            &t.out_start,
            &t.outputs,
        ]
        .into_iter()
        .enumerate()
        {
            at[k] = data.len() as u32;
            data.extend(table.iter().flat_map(|w| w.to_le_bytes()));
        }
        at[TRANS_CLASS] = data.len() as u32;
        data.extend_from_slice(&t.trans_class);
        at[7] = data.len() as u32;
        Packed {
            classes: t.classes,
            class_count: t.class_count,
            dense_states: t.dense_states,
            patterns: t.patterns,
            start_bytes: t.start_bytes,
            at,
            data: data.into(),
        }
    }

    /// The tables; `None` when `at` does not cut `data` into them (a
    /// damaged snapshot).
    #[inline]
    fn view(&self) -> Option<View<'_>> {
        let data = self.data.as_slice();
        let table = |k: usize| data.get(self.at[k] as usize..self.at[k + 1] as usize);
        let words = |k: usize| {
            let t = table(k)?;
            (t.len() % 4 == 0).then_some(Words(t))
        };
        Some(View {
            classes: &self.classes,
            class_count: self.class_count as usize,
            dense_states: self.dense_states,
            dense: words(DENSE)?,
            fail: words(FAIL)?,
            trans_start: words(TRANS_START)?,
            trans_target: words(TRANS_TARGET)?,
            out_start: words(OUT_START)?,
            outputs: words(OUTPUTS)?,
            trans_class: table(TRANS_CLASS)?,
        })
    }

    /// The tables as vectors again (tests change them).
    #[cfg(test)]
    fn unpack(&self) -> Tables {
        let v = self.view().expect("packed tables");
        Tables {
            classes: self.classes.clone(),
            class_count: self.class_count,
            dense_states: self.dense_states,
            dense: v.dense.iter().collect(),
            fail: v.fail.iter().collect(),
            trans_start: v.trans_start.iter().collect(),
            trans_class: v.trans_class.to_vec(),
            trans_target: v.trans_target.iter().collect(),
            out_start: v.out_start.iter().collect(),
            outputs: v.outputs.iter().collect(),
            patterns: self.patterns,
            start_bytes: self.start_bytes.clone(),
        }
    }
}

impl LiteralAutomaton {
    /// The automaton over `literals`; `None` when it would have more
    /// states than it can number.
    pub fn new(literals: &[String]) -> Option<LiteralAutomaton> {
        // Class 0 is for bytes no literal has, so at most 255 may; an
        // empty literal would match everywhere. `aho-corasick` serves both.
        let mut seen = [false; 256];
        for b in literals.iter().flat_map(|l| l.bytes()) {
            seen[b as usize] = true;
        }
        if seen.iter().all(|s| *s) || literals.iter().any(String::is_empty) {
            return None;
        }
        let mut classes = vec![0u8; 256];
        let mut class_count = 1usize;
        for (b, _) in seen.iter().enumerate().filter(|(_, s)| **s) {
            classes[b] = class_count as u8;
            class_count += 1;
        }
        // The trie, over classes.
        let mut children: Vec<Vec<(u8, u32)>> = vec![Vec::new()];
        let mut ends: Vec<Vec<u32>> = vec![Vec::new()];
        let mut depth = vec![0usize];
        for (i, lit) in literals.iter().enumerate() {
            let mut s = 0usize;
            for b in lit.bytes() {
                let c = classes[b as usize];
                s = match child(&children[s], c) {
                    Some(x) => x as usize,
                    None => {
                        let n = children.len();
                        if n as u32 >= MATCH {
                            return None;
                        }
                        children.push(Vec::new());
                        ends.push(Vec::new());
                        depth.push(depth[s] + 1);
                        children[s].push((c, n as u32));
                        n
                    }
                };
            }
            ends[s].push(i as u32);
        }
        // Failure links breadth-first; each state also reports what its
        // failure state reports.
        let n = children.len();
        let mut order = Vec::with_capacity(n);
        order.push(0u32);
        let mut fail = vec![0u32; n];
        let mut next = 0;
        while next < order.len() {
            let u = order[next] as usize;
            next += 1;
            for k in 0..children[u].len() {
                let (c, v) = children[u][k];
                if u != 0 {
                    let mut f = fail[u] as usize;
                    fail[v as usize] = loop {
                        if let Some(x) = child(&children[f], c) {
                            break x;
                        }
                        if f == 0 {
                            break 0;
                        }
                        f = fail[f] as usize;
                    };
                    let inherited = ends[fail[v as usize] as usize].clone();
                    ends[v as usize].extend(inherited);
                }
                order.push(v);
            }
        }
        let mut id = vec![0u32; n];
        for (k, &old) in order.iter().enumerate() {
            id[old as usize] = k as u32;
        }
        let target = |old: u32| {
            let new = id[old as usize];
            if ends[old as usize].is_empty() {
                new
            } else {
                new | MATCH
            }
        };
        let dense_states = order
            .iter()
            .take_while(|&&o| depth[o as usize] <= DENSE_DEPTH)
            .count();
        let mut dense = vec![0u32; dense_states * class_count];
        for (k, &old) in order[..dense_states].iter().enumerate() {
            let old = old as usize;
            for c in 0..class_count {
                dense[k * class_count + c] = match child(&children[old], c as u8) {
                    Some(x) => target(x),
                    None if old == 0 || c == 0 => 0,
                    // Failure states come earlier in the order.
                    None => dense[id[fail[old] as usize] as usize * class_count + c],
                };
            }
        }
        let mut t = Tables {
            classes,
            class_count: class_count as u32,
            dense_states: dense_states as u32,
            dense,
            fail: Vec::with_capacity(n),
            trans_start: Vec::with_capacity(n + 1),
            trans_class: Vec::new(),
            trans_target: Vec::new(),
            out_start: Vec::with_capacity(n + 1),
            outputs: Vec::new(),
            patterns: literals.len() as u32,
            start_bytes: Vec::new(),
        };
        for (k, &old) in order.iter().enumerate() {
            let old = old as usize;
            t.fail.push(id[fail[old] as usize]);
            t.trans_start.push(t.trans_class.len() as u32);
            if k >= dense_states {
                let mut kids = children[old].clone();
                kids.sort_unstable();
                for (c, v) in kids {
                    t.trans_class.push(c);
                    t.trans_target.push(target(v));
                }
            }
            t.out_start.push(t.outputs.len() as u32);
            t.outputs.extend(&ends[old]);
        }
        t.trans_start.push(t.trans_class.len() as u32);
        t.out_start.push(t.outputs.len() as u32);
        let starts: Vec<u8> = (0..=255u8)
            .filter(|&b| {
                let c = t.classes[b as usize] as usize;
                c != 0 && t.dense[c] != 0
            })
            .collect();
        if starts.len() <= 3 {
            t.start_bytes = starts;
        }
        Some(LiteralAutomaton { p: Packed::pack(t) })
    }

    /// How many literals the automaton was built over.
    pub fn patterns(&self) -> usize {
        self.p.patterns as usize
    }

    /// Calls `f` with the index of every literal occurring in `text`, once
    /// per occurrence, in the order the occurrences end.
    pub fn for_each_match(&self, text: &[u8], mut f: impl FnMut(u32)) {
        self.search(text, |p| {
            f(p);
            true
        });
    }

    /// Whether any literal occurs in `text`.
    pub fn is_match(&self, text: &[u8]) -> bool {
        let mut found = false;
        self.search(text, |_| {
            found = true;
            false
        });
        found
    }

    /// Runs the automaton over `text`, calling `f` per match until it says
    /// `false`.
    fn search(&self, text: &[u8], mut f: impl FnMut(u32) -> bool) {
        // Always there: checked when built or read back.
        let Some(t) = self.p.view() else { return };
        let mut s = 0u32;
        let mut i = 0;
        while i < text.len() {
            if s == 0 && !self.p.start_bytes.is_empty() {
                match self.next_start(&text[i..]) {
                    Some(k) => i += k,
                    None => return,
                }
            }
            let c = t.classes[text[i] as usize] as usize;
            // Most steps are from a shallow state: its row answers at once.
            s = if c == 0 {
                0
            } else if s < t.dense_states {
                t.dense.get(s as usize * t.class_count + c)
            } else {
                step_deep(&t, s, c as u8)
            };
            if s & MATCH != 0 {
                s &= !MATCH;
                let (a, z) = (t.out_start.get(s as usize), t.out_start.get(s as usize + 1));
                for k in a as usize..z as usize {
                    if !f(t.outputs.get(k)) {
                        return;
                    }
                }
            }
            i += 1;
        }
    }

    /// Where the next byte that begins a literal is.
    fn next_start(&self, text: &[u8]) -> Option<usize> {
        match self.p.start_bytes[..] {
            [a] => memchr::memchr(a, text),
            [a, b] => memchr::memchr2(a, b, text),
            [a, b, c] => memchr::memchr3(a, b, c, text),
            _ => Some(0),
        }
    }
}

/// The target of deep state `s` on class `c` (with its flag): its listed
/// transitions, else its failure state's.
#[inline]
fn step_deep(t: &View<'_>, mut s: u32, c: u8) -> u32 {
    loop {
        let (a, z) = (
            t.trans_start.get(s as usize) as usize,
            t.trans_start.get(s as usize + 1) as usize,
        );
        if let Some(k) = t.trans_class[a..z].iter().position(|&x| x == c) {
            return t.trans_target.get(a + k);
        }
        s = t.fail.get(s as usize);
        if s < t.dense_states {
            return t.dense.get(s as usize * t.class_count + c as usize);
        }
    }
}

/// The child of a trie state on class `c`, among its `(class, child)`
/// pairs.
fn child(kids: &[(u8, u32)], c: u8) -> Option<u32> {
    kids.iter().find(|x| x.0 == c).map(|x| x.1)
}

impl TryFrom<Packed> for LiteralAutomaton {
    type Error = String;

    /// Checks what searching relies on: indices in bounds and failure
    /// links going back to smaller states.
    fn try_from(p: Packed) -> Result<LiteralAutomaton, String> {
        let bad = |what: &str| Err(format!("literal automaton: {what}"));
        let Some(t) = p.view() else {
            return bad("table layout");
        };
        let n = t.fail.len();
        let classes = p.class_count as usize;
        if p.classes.len() != 256 || classes == 0 || classes > 256 {
            return bad("byte classes");
        }
        if p.classes.iter().any(|&c| c as usize >= classes) {
            return bad("byte class out of range");
        }
        if n == 0 || n as u64 >= MATCH as u64 || p.dense_states == 0 {
            return bad("state count");
        }
        if p.dense_states as usize > n || t.dense.len() != p.dense_states as usize * classes {
            return bad("dense rows");
        }
        // The checks below read every word of the tables (2.2 MB for
        // SigmaHQ's Windows rules, on every hunt that loads them from the
        // cache), so each is a fold the compiler can vectorize rather
        // than a search that stops early: a damaged entry is rare, and
        // its checksum usually catches it first.
        let fail_ok = t
            .fail
            .iter()
            .zip(0u32..)
            .skip(1)
            .fold(true, |ok, (f, s)| ok & (f < s));
        if !fail_ok {
            return bad("failure link");
        }
        let monotonic = |starts: Words<'_>, len: usize| {
            starts.len() == n + 1
                && starts
                    .iter()
                    .zip(starts.iter().skip(1))
                    .fold(true, |ok, (a, b)| ok & (a <= b))
                && starts.get(n) as usize == len
        };
        if t.trans_class.len() != t.trans_target.len()
            || !monotonic(t.trans_start, t.trans_class.len())
        {
            return bad("transition lists");
        }
        if !monotonic(t.out_start, t.outputs.len()) {
            return bad("output lists");
        }
        if t.outputs.len() > 0 && t.outputs.max_masked(u32::MAX) >= p.patterns {
            return bad("literal index");
        }
        // Targets must be states. Whether a target's `MATCH` flag agrees
        // with its state's outputs is not checked: a wrong flag can only
        // report a state's (empty) outputs or miss them, never read out
        // of bounds, and checking it looked up every target's outputs,
        // more than half of the instructions of decoding SigmaHQ's
        // Windows rules from the cache (12.6M of 21.5M, callgrind).
        let state_bound = n as u32;
        if t.dense
            .max_masked(!MATCH)
            .max(t.trans_target.max_masked(!MATCH))
            >= state_bound
        {
            return bad("transition target");
        }
        if p.start_bytes.len() > 3 {
            return bad("start bytes");
        }
        Ok(LiteralAutomaton { p })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every (literal, end) pair, as `aho-corasick` finds them.
    fn reference(literals: &[String], text: &str) -> Vec<(u32, usize)> {
        let ac = aho_corasick::AhoCorasick::new(literals).unwrap();
        let mut out: Vec<(u32, usize)> = ac
            .find_overlapping_iter(text)
            .map(|m| (m.pattern().as_u32(), m.end()))
            .collect();
        out.sort_unstable();
        out
    }

    fn ours(a: &LiteralAutomaton, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        a.for_each_match(text.as_bytes(), |p| out.push(p));
        out.sort_unstable();
        out
    }

    fn lits(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn finds_overlapping_and_nested_literals() {
        let l = lits(&["he", "she", "his", "hers", "e"]);
        let a = LiteralAutomaton::new(&l).unwrap();
        let text = "ushers and his";
        let mut want: Vec<u32> = reference(&l, text).into_iter().map(|(p, _)| p).collect();
        want.sort_unstable();
        assert_eq!(want, vec![0, 1, 2, 3, 4]);
        assert_eq!(ours(&a, text), want);
        assert!(a.is_match(b"xxhexx"));
        assert!(!a.is_match(b"xxxx"));
        assert_eq!(a.patterns(), 5);
    }

    #[test]
    fn skips_to_start_bytes() {
        // Literals that all begin with a backslash: the search jumps.
        let l = lits(&["\\cmd.exe", "\\csi.exe", "\\\\"]);
        let a = LiteralAutomaton::new(&l).unwrap();
        assert_eq!(a.p.start_bytes, vec![b'\\']);
        let text = "c:\\windows\\system32\\cmd.exe \\\\\\ x\\csi.exe";
        let mut want: Vec<u32> = reference(&l, text).into_iter().map(|(p, _)| p).collect();
        want.sort_unstable();
        assert_eq!(ours(&a, text), want);
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let l = lits(&["powershell", "-enc", "frombase64string", "iex"]);
        let a = LiteralAutomaton::new(&l).unwrap();
        let bytes = postcard::to_allocvec(&a).unwrap();
        let back: LiteralAutomaton = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, a);
        let check = |t: Tables| LiteralAutomaton::try_from(Packed::pack(t));
        assert_eq!(check(a.p.unpack()), Ok(a.clone()));
        let mut t = a.p.unpack();
        t.fail[3] = 7;
        assert!(check(t).is_err());
        let mut t = a.p.unpack();
        t.dense[5] = 10_000;
        assert!(check(t).is_err());
        let mut t = a.p.unpack();
        t.outputs[0] = 99;
        assert!(check(t).is_err());
        let mut t = a.p.unpack();
        t.trans_start.pop();
        assert!(check(t).is_err());
        // Table bounds that do not cut the data into tables.
        let mut p = a.p.clone();
        p.at.swap(2, 3);
        assert!(LiteralAutomaton::try_from(p).is_err());
    }

    /// Decoded in place, the tables stay in the buffer they were read
    /// from, and search as the original's do.
    #[test]
    fn decoded_in_place_the_tables_are_shared() {
        let l = lits(&["powershell", "-enc", "frombase64string", "iex"]);
        let a = LiteralAutomaton::new(&l).unwrap();
        let bytes = postcard::to_allocvec(&a).unwrap();
        let buffer: crate::byte_string::SharedBytes = std::sync::Arc::new(bytes.clone());
        let shared: LiteralAutomaton =
            crate::byte_string::decode_in_place(buffer, |b| postcard::from_bytes(b)).unwrap();
        assert!(matches!(shared.p.data, StoredBytes::Shared { .. }));
        let copied: LiteralAutomaton = postcard::from_bytes(&bytes).unwrap();
        assert!(matches!(copied.p.data, StoredBytes::Owned(_)));
        let text = "powershell -enc ZQBjAGgAbwA= ; iex(frombase64string(x))";
        assert_eq!(ours(&shared, text), ours(&a, text));
        assert_eq!(ours(&copied, text), ours(&a, text));
        assert_eq!(postcard::to_allocvec(&shared).unwrap(), bytes);
    }

    proptest! {
        /// Same matches as `aho-corasick` on texts over a small alphabet
        /// (so that literals overlap and fail often), UTF-8 included.
        #[test]
        fn matches_as_aho_corasick_does(
            literals in prop::collection::vec("[abc\\\\é]{1,6}", 1..40),
            texts in prop::collection::vec("[abcd\\\\é ]{0,40}", 1..10),
        ) {
            let a = LiteralAutomaton::new(&literals).unwrap();
            let bytes = postcard::to_allocvec(&a).unwrap();
            let back: LiteralAutomaton = postcard::from_bytes(&bytes).unwrap();
            for text in &texts {
                let mut want: Vec<u32> =
                    reference(&literals, text).into_iter().map(|(p, _)| p).collect();
                want.sort_unstable();
                prop_assert_eq!(&ours(&a, text), &want);
                prop_assert_eq!(&ours(&back, text), &want);
                prop_assert_eq!(a.is_match(text.as_bytes()), !want.is_empty());
            }
        }

        /// Deserializing damaged bytes gives an error or an automaton that
        /// searches without panicking.
        #[test]
        fn damaged_bytes_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let a = LiteralAutomaton::new(&lits(&["abc", "bcd", "\\x.exe", "cab"])).unwrap();
            let mut bytes = postcard::to_allocvec(&a).unwrap();
            for (at, v) in flips {
                let i = at.index(bytes.len());
                bytes[i] = v;
            }
            if let Ok(b) = postcard::from_bytes::<LiteralAutomaton>(&bytes) {
                b.for_each_match(b"zabcdcab\\x.exe", |_| {});
            }
        }
    }
}
