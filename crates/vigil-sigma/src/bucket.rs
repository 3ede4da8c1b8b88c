//! Routing buckets and the literal prefilter.
//!
//! A bucket holds the rule variants that can apply to one kind of event
//! (one Windows channel and event ID, or the generic rules of one product).
//! Most variants need at least one of a few literal strings in some field
//! (their *trigger*, derived from the condition below); a bucket compiles
//! the triggers of all its variants into one Aho-Corasick automaton per
//! field. For an event, only the fields that some variant needs are
//! scanned, and only the variants whose literals occur become candidates:
//! the cost follows the number of hits, not the number of rules.
//!
//! A trigger is a necessary condition, never a sufficient one: a variant
//! without one (its condition is `not x`, or it only uses regular
//! expressions or numbers) is always a candidate.

use crate::automaton::LiteralAutomaton;
use crate::condition::Cond;
use crate::eval::Scratch;
use crate::keyed::KeyedLiterals;
use crate::pattern::Pattern;
use crate::rule::{Detection, Item};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use rustc_hash::FxHashMap;
use std::sync::{Arc, OnceLock};

mod memo;
pub(crate) use memo::ScanMemo;
mod stored;
pub(crate) use stored::{load_automata, AutomataWriter, Bounds, StoredAutomaton, StoredBucket};

/// A literal that must occur in a field (`u32::MAX`: in any field).
pub(crate) type Atom = (u32, String);

/// Marks "any field" (keyword search) in an [`Atom`].
pub(crate) const ANY_FIELD: u32 = u32::MAX;

/// One field's literals while a bucket is built: the literals, their
/// index (borrowing the triggers: a bucket plan copies each distinct
/// literal once), and per literal the variants it triggers.
type FieldLiterals<'a> = (Vec<String>, FxHashMap<&'a str, usize>, Vec<Vec<u32>>);

/// One field's literals: an automaton over most of them, a keyed lookup
/// for `key=value` literals (see `keyed.rs`).
#[derive(Debug)]
struct FieldScan {
    field: u32,
    /// Over patterns `0..n` (`None`: all are keyed).
    ac: Option<Arc<LazyAutomaton>>,
    /// Patterns `n..`.
    keyed: Option<KeyedLiterals>,
    /// Global number of this automaton's first pattern, for the
    /// per-event "seen" stamps.
    base: u32,
    /// Per pattern: the variants it triggers.
    variants: VariantLists,
    /// When the automaton serves only a few variants, finding any literal
    /// is enough to queue them all: `is_match` stops at the first hit and
    /// uses the automaton's prefilter, where an overlapping search must
    /// walk every byte.
    few: Option<Vec<u32>>,
    /// For `few`: a SIMD (Teddy) searcher over the same literals when the
    /// CPU and the literal count allow; much faster than the automaton at
    /// answering "is any literal here". Built on first use, as the
    /// automata are.
    packed: OnceLock<Option<aho_corasick::packed::Searcher>>,
}

/// Per pattern, the variants it triggers: the lists one after another,
/// one allocation for all the patterns of a scan rather than one each
/// (tens of thousands for SigmaHQ's rules, each made again when a
/// snapshot is loaded).
///
/// Invariant: `ends` never decreases and its last entry is `ids.len()`
/// (checked when read from a snapshot).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct VariantLists {
    /// Where each pattern's list ends in `ids`.
    #[serde(with = "crate::byte_string::words")]
    ends: Vec<u32>,
    #[serde(with = "crate::byte_string::words")]
    ids: Vec<u32>,
}

impl VariantLists {
    fn new(lists: Vec<Vec<u32>>) -> VariantLists {
        let mut out = VariantLists {
            ends: Vec::with_capacity(lists.len()),
            ids: Vec::with_capacity(lists.iter().map(Vec::len).sum()),
        };
        for list in lists {
            out.ids.extend(list);
            out.ends.push(out.ids.len() as u32);
        }
        out
    }

    /// How many patterns there are.
    fn len(&self) -> usize {
        self.ends.len()
    }

    /// The variants of pattern `p` (none past the end).
    fn get(&self, p: usize) -> &[u32] {
        let start = if p == 0 { 0 } else { self.ends[p - 1] as usize };
        let end = self.ends.get(p).map_or(start, |&e| e as usize);
        self.ids.get(start..end).unwrap_or_default()
    }

    /// Every variant of every pattern.
    fn all(&self) -> &[u32] {
        &self.ids
    }

    /// Whether the invariant holds.
    fn is_consistent(&self) -> bool {
        self.ends.windows(2).all(|w| w[0] <= w[1])
            && self.ends.last().map_or(0, |&e| e as usize) == self.ids.len()
    }
}

/// Up to this many variants, a scan queues all of them on any hit.
const FEW_VARIANTS: usize = 4;

/// What [`FieldScan::find`] reports when a scan with few variants finds
/// any of its literals (no pattern has this number).
const FEW_HIT: u32 = u32::MAX;

/// The variants for one kind of event, with their prefilter.
#[derive(Debug, Default)]
pub(crate) struct Bucket {
    /// Variants without a trigger: always candidates.
    always: Vec<u32>,
    scans: Vec<FieldScan>,
}

/// A bucket's literals grouped by field, before any automaton is built:
/// routing plans every bucket first, so that the automata of all of them
/// can be built at once, in parallel, each distinct literal set once.
#[derive(Debug, Default)]
pub(crate) struct BucketPlan {
    always: Vec<u32>,
    fields: Vec<FieldPlan>,
}

/// One field's literals in a [`BucketPlan`]: those for the automaton
/// first, then those looked up by key.
#[derive(Debug)]
struct FieldPlan {
    field: u32,
    literals: Vec<String>,
    /// Per literal: the variants it triggers.
    variants: Vec<Vec<u32>>,
    /// How many of `literals` (from the start) go into the automaton.
    automaton: usize,
}

impl BucketPlan {
    /// Groups the triggers of the variants `ids` by field.
    pub fn new(ids: &[u32], triggers: &[Option<Vec<Atom>>]) -> BucketPlan {
        let mut always = Vec::new();
        let mut per_field: FxHashMap<u32, FieldLiterals> = FxHashMap::default();
        for &v in ids {
            match &triggers[v as usize] {
                None => always.push(v),
                Some(atoms) => {
                    for (field, needle) in atoms {
                        let (needles, index, variants) = per_field.entry(*field).or_default();
                        let p = *index.entry(needle.as_str()).or_insert_with(|| {
                            needles.push(needle.clone());
                            variants.push(Vec::new());
                            needles.len() - 1
                        });
                        if variants[p].last() != Some(&v) {
                            variants[p].push(v);
                        }
                    }
                }
            }
        }
        let mut fields: Vec<FieldPlan> = per_field
            .into_iter()
            .map(|(field, (needles, _, variants))| {
                // Automaton literals first, keyed ones after, each in
                // their order.
                let keyed = crate::keyed::partition(&needles);
                let (mut lits, mut vars) = (Vec::new(), Vec::new());
                let (mut keyed_lits, mut keyed_vars) = (Vec::new(), Vec::new());
                for ((l, v), k) in needles.into_iter().zip(variants).zip(keyed) {
                    if k {
                        keyed_lits.push(l);
                        keyed_vars.push(v);
                    } else {
                        lits.push(l);
                        vars.push(v);
                    }
                }
                let automaton = lits.len();
                lits.extend(keyed_lits);
                vars.extend(keyed_vars);
                FieldPlan {
                    field,
                    literals: lits,
                    variants: vars,
                    automaton,
                }
            })
            .collect();
        fields.sort_by_key(|f| f.field);
        BucketPlan { always, fields }
    }

    /// The literal sets this bucket needs automata for.
    pub fn literal_sets(&self) -> impl Iterator<Item = &[String]> + '_ {
        self.fields
            .iter()
            .map(|f| &f.literals[..f.automaton])
            .filter(|set| !set.is_empty())
    }

    /// Builds the bucket around the automata of [`lazy_automata`], with
    /// its patterns numbered from 0, and says how many it numbered:
    /// buckets are finished in parallel, then [`Bucket::number_from`]
    /// numbers them globally.
    pub fn finish(self, automata: &Automata) -> (Bucket, u32) {
        let mut next_pattern = 0u32;
        let BucketPlan { mut always, fields } = self;
        let mut scans = Vec::with_capacity(fields.len());
        for plan in fields {
            let FieldPlan {
                field,
                literals,
                variants,
                automaton,
            } = plan;
            let for_automaton = &literals[..automaton];
            let ac = automata.get(for_automaton).cloned();
            let keyed = KeyedLiterals::new(&literals[automaton..], automaton as u32);
            if ac.is_none() && keyed.is_none() {
                continue;
            }
            let variants = VariantLists::new(variants);
            let mut distinct: Vec<u32> = variants.all().to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            let few = (distinct.len() <= FEW_VARIANTS && keyed.is_none() && ac.is_some())
                .then_some(distinct);
            scans.push(FieldScan {
                field,
                ac,
                keyed,
                base: next_pattern,
                variants,
                few,
                packed: OnceLock::new(),
            });
            next_pattern += literals.len() as u32;
        }
        always.sort_unstable();
        always.dedup();
        (Bucket { always, scans }, next_pattern)
    }
}

/// `items.iter().map(f).collect()`, on every core, in order, giving each
/// thread at least `min_per_thread` items. Working out the triggers of
/// thousands of rule variants is a tenth of compiling the SigmaHQ rules,
/// and each variant is independent.
pub(crate) fn par_map<T: Sync, U: Send>(
    items: &[T],
    min_per_thread: usize,
    f: impl Fn(&T) -> U + Sync + Send,
) -> Vec<U> {
    par_map_owned(items.iter().collect(), min_per_thread, f)
}

/// [`par_map`] taking the items.
///
/// On rayon's pool rather than threads of its own: the pool's threads
/// outlive the call (a hunt reads EVTX on the same pool), so their
/// allocator heaps are reused instead of each new thread faulting in
/// fresh pages. Loading SigmaHQ's Windows rules from the cache, 31 runs:
/// 23.1 → 21.6 ms, and the 1× hunt 83.4 → 79.0 ms.
pub(crate) fn par_map_owned<T: Send, U: Send>(
    items: Vec<T>,
    min_per_thread: usize,
    f: impl Fn(T) -> U + Sync + Send,
) -> Vec<U> {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads()
        .min(items.len() / min_per_thread.max(1))
        .max(1);
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    items.into_par_iter().with_min_len(per).map(f).collect()
}

/// An automaton over one literal set, built the first time an event
/// needs it, unless the snapshot the rule set was loaded from had it.
///
/// Building every automaton of SigmaHQ's Windows rules costs about 15 ms
/// of CPU. A hunt over one case's logs reaches a part of the buckets only,
/// so the automata of the others are never built; the large ones are
/// stored in snapshots ([`LiteralAutomaton`]).
#[derive(Debug)]
pub(crate) struct LazyAutomaton {
    literals: Literals,
    built: OnceLock<Option<Scanner>>,
}

/// A literal set, as compiled or as a snapshot stored it: decoded when
/// first needed, which for a set whose automaton was stored built is
/// never (13,082 strings of SigmaHQ's Windows rules, 0.4 ms and 0.6 MB of
/// every hunt before).
#[derive(Debug)]
pub(crate) enum Literals {
    Decoded(Box<[String]>),
    Stored {
        count: usize,
        /// `Vec<String>`, postcard.
        encoded: crate::byte_string::StoredBytes,
        decoded: OnceLock<Option<Box<[String]>>>,
    },
}

impl Literals {
    /// How many literals there are.
    pub fn len(&self) -> usize {
        match self {
            Literals::Decoded(l) => l.len(),
            Literals::Stored { count, .. } => *count,
        }
    }

    /// The literals; `None` when stored ones do not decode to as many as
    /// were counted (a damaged snapshot: the caller then treats every
    /// literal as found, which can only cost evaluations).
    pub fn get(&self) -> Option<&[String]> {
        match self {
            Literals::Decoded(l) => Some(l),
            Literals::Stored {
                count,
                encoded,
                decoded,
            } => decoded
                .get_or_init(|| {
                    postcard::from_bytes::<Vec<String>>(encoded.as_slice())
                        .ok()
                        .filter(|l| l.len() == *count)
                        .map(Vec::into_boxed_slice)
                })
                .as_deref(),
        }
    }
}

/// A built automaton: `aho-corasick`'s for the smallest literal sets,
/// ours for the others (as fast to search, and it can be stored).
#[derive(Debug)]
enum Scanner {
    Small(AhoCorasick),
    Large(Box<LiteralAutomaton>),
}

/// From this many literals on, a set gets a [`LiteralAutomaton`], stored
/// built in snapshots. A hunt over the EVTX corpus with SigmaHQ's Windows
/// rules built 29 `aho-corasick` automata of 1 to 99 literals when this
/// was 100 (2.8 ms of CPU); from 8 on, the whole hunt runs 1.2% fewer
/// instructions (callgrind: 1,118.3M at 100, 1,110.3M at 32, 1,104.5M at
/// 8, 1,104.7M at 4), the cache entry 8% larger (6.05 → 6.53 MB).
const LARGE_SET: usize = 8;

impl Scanner {
    fn build(literals: &[String]) -> Option<Scanner> {
        if literals.len() >= LARGE_SET {
            if let Some(a) = LiteralAutomaton::new(literals) {
                return Some(Scanner::Large(Box::new(a)));
            }
        }
        // The contiguous NFA: measured as fast as a full DFA here (`vigil
        // bench rules`, all SigmaHQ rules: 301k vs 299k events/s), for a
        // quarter less compile time and 20 MiB less memory.
        AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(literals)
            .ok()
            .map(Scanner::Small)
    }

    /// Calls `f` with the index of every literal occurrence in `text`.
    fn for_each_match(&self, text: &str, mut f: impl FnMut(usize)) {
        match self {
            Scanner::Small(ac) => {
                for m in ac.find_overlapping_iter(text) {
                    f(m.pattern().as_usize());
                }
            }
            Scanner::Large(a) => a.for_each_match(text.as_bytes(), |p| f(p as usize)),
        }
    }

    fn is_match(&self, text: &str) -> bool {
        match self {
            Scanner::Small(ac) => ac.is_match(text),
            Scanner::Large(a) => a.is_match(text.as_bytes()),
        }
    }
}

impl LazyAutomaton {
    /// The automaton, built now if it is not yet; `None` when it is too
    /// large to build.
    fn get(&self) -> Option<&Scanner> {
        self.built
            .get_or_init(|| self.literals.get().and_then(Scanner::build))
            .as_ref()
    }

    /// How many literals (patterns) the automaton has.
    fn len(&self) -> usize {
        self.literals.len()
    }
}

/// Automata by literal set.
pub(crate) type Automata = FxHashMap<Vec<String>, Arc<LazyAutomaton>>;

/// One automaton per distinct literal set among `sets`, shared by every
/// bucket that has the same set, built on first use.
pub(crate) fn lazy_automata<'a>(sets: impl Iterator<Item = &'a [String]>) -> Automata {
    let mut out = Automata::default();
    for set in sets {
        if out.contains_key(set) {
            continue;
        }
        let lazy = LazyAutomaton {
            literals: Literals::Decoded(set.into()),
            built: OnceLock::new(),
        };
        out.insert(set.to_vec(), Arc::new(lazy));
    }
    out
}

/// The distinct automata of `buckets` (buckets share one per literal
/// set).
#[cfg(test)]
fn distinct_automata<'a>(
    buckets: impl Iterator<Item = &'a Bucket>,
) -> impl Iterator<Item = &'a LazyAutomaton> {
    let mut seen = std::collections::HashSet::new();
    buckets
        .flat_map(|b| b.scans.iter().filter_map(|s| s.ac.as_ref()))
        .filter(move |lazy| seen.insert(Arc::as_ptr(lazy)))
        .map(|lazy| &**lazy)
}

/// How many of the distinct automata of `buckets` have been built, and
/// how many there are.
#[cfg(test)]
pub(crate) fn automata_built<'a>(buckets: impl Iterator<Item = &'a Bucket>) -> (usize, usize) {
    distinct_automata(buckets).fold((0, 0), |(built, all), lazy| {
        (built + usize::from(lazy.built.get().is_some()), all + 1)
    })
}

impl Bucket {
    /// How many prefilter patterns the bucket's scans hold.
    pub fn pattern_count(&self) -> usize {
        self.scans.iter().map(|s| s.variants.len()).sum()
    }

    /// Numbers this bucket's patterns from `first` on, not from 0.
    pub fn number_from(&mut self, first: u32) {
        for scan in &mut self.scans {
            scan.base += first;
        }
    }

    /// Appends to `s.candidates` every variant of this bucket that could
    /// match the prepared event (each once per event).
    pub fn candidates(&self, s: &mut Scratch) {
        let epoch = s.epoch;
        for &v in &self.always {
            push_candidate(s, v, epoch);
        }
        for scan in &self.scans {
            if scan.field == ANY_FIELD {
                // Keyword literals: one pass over all lowercased text at
                // once. A hit across two values' boundary only makes an
                // extra candidate, which full evaluation then rejects.
                let text = std::mem::take(&mut s.lower);
                scan.hits(&text, s, epoch);
                s.lower = text;
                continue;
            }
            let slot = s.slots[scan.field as usize];
            for i in slot.start..slot.start + slot.len {
                let (a, b) = s.scalars[i as usize].lower;
                let text = std::mem::take(&mut s.lower);
                scan.hits(&text[a as usize..b as usize], s, epoch);
                s.lower = text;
            }
        }
    }
}

impl FieldScan {
    /// Queues the variants of every literal found in `text`: found now, or
    /// as the memo remembers it from the last time the text was scanned.
    fn hits(&self, text: &str, s: &mut Scratch, epoch: u32) {
        if let (Some(few), Some(_)) = (&self.few, &self.ac) {
            if few.iter().all(|&v| s.variant_seen[v as usize] == epoch) {
                return;
            }
        }
        // Keyword scans run over all of an event's text, never the same.
        if text.len() < memo::MIN_TEXT || self.field == ANY_FIELD {
            self.find(text, |p| self.queue(p, s, epoch));
            return;
        }
        match s.memo.get(self.base, text.as_bytes()) {
            memo::Lookup::Found(range) => {
                for i in range {
                    let p = s.memo.hit(i);
                    self.queue(p, s, epoch);
                }
            }
            memo::Lookup::Absent(hash) => {
                let mut found = std::mem::take(&mut s.found);
                found.clear();
                self.find(text, |p| found.push(p));
                for &p in &found {
                    self.queue(p, s, epoch);
                }
                s.memo.insert(self.base, text.as_bytes(), hash, &found);
                s.found = found;
            }
        }
    }

    /// Calls `f` with every pattern found in `text`, or, for a scan that
    /// queues its few variants on any hit, with [`FEW_HIT`] once.
    fn find(&self, text: &str, mut f: impl FnMut(u32)) {
        if let (Some(_), Some(lazy)) = (&self.few, &self.ac) {
            let packed = self.packed.get_or_init(|| {
                aho_corasick::packed::Config::new()
                    .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
                    .builder()
                    .extend(lazy.literals.get()?)
                    .build()
            });
            let hit = match packed {
                Some(p) => p.find(text).is_some(),
                None => match lazy.get() {
                    Some(scanner) => scanner.is_match(text),
                    // Too large to build: its variants are always candidates.
                    None => true,
                },
            };
            if hit {
                f(FEW_HIT);
            }
            return;
        }
        if let Some(lazy) = &self.ac {
            match lazy.get() {
                Some(scanner) => scanner.for_each_match(text, |p| f(p as u32)),
                // Too large to build: its variants are always candidates.
                None => {
                    for p in 0..lazy.len() {
                        f(p as u32);
                    }
                }
            }
        }
        if let Some(keyed) = &self.keyed {
            keyed.find(text.as_bytes(), &mut f);
        }
    }

    /// Queues the variants of what [`FieldScan::find`] found.
    fn queue(&self, p: u32, s: &mut Scratch, epoch: u32) {
        if p == FEW_HIT {
            for &v in self.few.as_deref().unwrap_or_default() {
                push_candidate(s, v, epoch);
            }
        } else {
            self.hit(p as usize, s, epoch);
        }
    }

    /// Queues the variants of pattern `p` (once per event).
    fn hit(&self, p: usize, s: &mut Scratch, epoch: u32) {
        let global = (self.base as usize) + p;
        if s.pattern_seen[global] == epoch {
            return;
        }
        s.pattern_seen[global] = epoch;
        for &v in self.variants.get(p) {
            push_candidate(s, v, epoch);
        }
    }
}

fn push_candidate(s: &mut Scratch, v: u32, epoch: u32) {
    if s.variant_seen[v as usize] != epoch {
        s.variant_seen[v as usize] = epoch;
        s.candidates.push(v);
    }
}

/// Text that most Windows events carry in some field. A literal found
/// within it selects little however long it is: `\windows\` is in
/// nearly every image path, `microsoft corporation` in nearly every
/// `Company`. Which trigger a rule gets changes what it costs, never what
/// it matches.
const COMMON_TEXT: &[&str] = &[
    "c:\\windows\\system32\\",
    "c:\\windows\\syswow64\\",
    "c:\\program files (x86)\\",
    "c:\\programdata\\",
    "c:\\users\\",
    "microsoft corporation",
    "nt authority\\system",
    ".exe",
    ".dll",
    "\\cmd.exe",
    "\\powershell.exe",
    "\\svchost.exe",
    "\\explorer.exe",
    "\\conhost.exe",
];

/// Whether `needle` (lowercase) occurs within text most events carry.
fn common(needle: &str) -> bool {
    COMMON_TEXT.iter().any(|c| c.contains(needle))
}

/// Score of a trigger: higher is more selective (no needle within common
/// text, then the longest shortest needle, then fewest atoms).
fn trigger_score(atoms: &[Atom]) -> (bool, usize, std::cmp::Reverse<usize>) {
    let min = atoms.iter().map(|(_, n)| n.len()).min().unwrap_or(0);
    let rare = !atoms.iter().any(|(_, n)| common(n));
    (rare, min.min(8), std::cmp::Reverse(atoms.len()))
}

/// Like [`trigger_score`], but an item on a routing field (`EventID`,
/// `Channel`) ranks below any other: events reach a bucket because of
/// those very values, so such a trigger rarely rules anything out.
fn item_score(t: &(bool, Vec<Atom>)) -> (bool, (bool, usize, std::cmp::Reverse<usize>)) {
    (t.0, trigger_score(&t.1))
}

/// The trigger of a condition: literals of which one must occur for the
/// condition to hold, or `None` when there is no such set.
///
/// `routing` holds the field ids of `Channel` and `EventID`.
pub(crate) fn cond_trigger(
    cond: &Cond,
    det: &Detection,
    fields: &[u32],
    routing: [u32; 2],
) -> Option<Vec<Atom>> {
    cond_trigger_ranked(cond, det, fields, routing).map(|t| t.1)
}

/// A trigger and whether it avoids the routing fields.
type Ranked = (bool, Vec<Atom>);

fn cond_trigger_ranked(
    cond: &Cond,
    det: &Detection,
    fields: &[u32],
    routing: [u32; 2],
) -> Option<Ranked> {
    match cond {
        Cond::Sel(i) => {
            let mut out = (true, Vec::new());
            for group in &det.selections[*i].groups {
                let (good, atoms) = group_trigger(group, fields, routing)?;
                out.0 &= good;
                out.1.extend(atoms);
            }
            Some(out)
        }
        Cond::And(cs) => cs
            .iter()
            .filter_map(|c| cond_trigger_ranked(c, det, fields, routing))
            .max_by_key(item_score),
        Cond::Or(cs) | Cond::AtLeast(_, cs) => {
            let mut out = (true, Vec::new());
            for c in cs {
                let (good, atoms) = cond_trigger_ranked(c, det, fields, routing)?;
                out.0 &= good;
                out.1.extend(atoms);
            }
            Some(out)
        }
        Cond::Not(_) => None,
    }
}

fn group_trigger(items: &[Item], fields: &[u32], routing: [u32; 2]) -> Option<Ranked> {
    items
        .iter()
        .filter_map(|item| {
            let atoms = item_trigger(item, fields)?;
            let good = !atoms.iter().all(|(f, _)| routing.contains(f));
            Some((good, atoms))
        })
        .max_by_key(item_score)
}

/// Whether a plain YAML number's text is also the text of every event
/// value it matches by number: a canonical integer (`4688`, `-1`).
fn integer_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
}

fn item_trigger(item: &Item, fields: &[u32]) -> Option<Vec<Atom>> {
    if item.values.negate {
        return None;
    }
    let field = item.field.map(|l| fields[l]).unwrap_or(ANY_FIELD);
    let literal = |p: &Pattern| -> Option<Vec<Atom>> {
        match p {
            // A plain number also matches numeric event values by number;
            // an integer prints as the same digits, anything else may not
            // ("1.50" against 1.5).
            Pattern::Str(s) => match (&s.matcher, s.number) {
                (crate::glob::StrMatcher::Exact(t), Some(_)) if integer_text(t) => {
                    Some(vec![(field, t.clone())])
                }
                (_, Some(_)) => None,
                (m, None) => m
                    .required_literal()
                    .map(|l| vec![(field, crate::glob::lower(l))]),
            },
            Pattern::Regex(_, Some(lits)) => {
                Some(lits.iter().map(|l| (field, l.clone())).collect())
            }
            _ => None,
        }
    };
    if item.values.all {
        // Every written value must match, so the alternatives of any one
        // value are a trigger; take the most selective.
        return item
            .values
            .by_value()
            .filter_map(|alts| {
                alts.iter()
                    .map(literal)
                    .collect::<Option<Vec<Vec<Atom>>>>()
                    .map(|v| v.concat())
            })
            .max_by_key(|t| trigger_score(t));
    }
    item.values
        .patterns
        .iter()
        .map(literal)
        .collect::<Option<Vec<Vec<Atom>>>>()
        .map(|v| v.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored literals are decoded when first asked for; ones that do not
    /// decode to the count stored give nothing, and their scan then
    /// counts every literal as found (its variants stay candidates).
    #[test]
    fn stored_literals_decode_on_demand_and_damage_is_conservative() {
        let set: Vec<String> = vec!["whoami".into(), "net user".into()];
        let encoded = postcard::to_allocvec(&set).unwrap();
        let stored = |count: usize, bytes: &[u8]| Literals::Stored {
            count,
            encoded: bytes.to_vec().into(),
            decoded: OnceLock::new(),
        };
        let good = stored(2, &encoded);
        assert!(matches!(&good, Literals::Stored { decoded, .. } if decoded.get().is_none()));
        assert_eq!(good.get(), Some(&set[..]));
        assert_eq!(stored(3, &encoded).get(), None);
        assert_eq!(stored(2, &encoded[..encoded.len() - 2]).get(), None);
        let lazy = LazyAutomaton {
            literals: stored(3, &encoded),
            built: OnceLock::new(),
        };
        assert!(lazy.get().is_none());
        let scan = FieldScan {
            field: 0,
            ac: Some(Arc::new(lazy)),
            keyed: None,
            base: 0,
            variants: VariantLists::new(vec![vec![0], vec![1], vec![2]]),
            few: None,
            packed: OnceLock::new(),
        };
        let mut found = Vec::new();
        scan.find("nothing here", |p| found.push(p));
        assert_eq!(found, vec![0, 1, 2]);
    }
}
