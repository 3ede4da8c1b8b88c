//! Buckets as a rule-set snapshot stores them, so that loading one does
//! not plan and build them again.
//!
//! Building the buckets of SigmaHQ's Windows rules from the variants'
//! triggers took a third of loading a snapshot (4.3 of 17.5 ms, 10 MiB of
//! memory, most of it freed again: every literal copied into per-field
//! maps, then grouped). Stored, each distinct literal set is written once
//! and the scans refer to it by number; an automaton that is ours (a
//! large set) is stored built, the others are built when first used, as
//! they are after compiling.
//!
//! Everything read back is checked before it is used: numbers of
//! automata, fields, variants and patterns all point somewhere, so a
//! damaged snapshot is an error, never a panic.

use super::{Bucket, FieldScan, LazyAutomaton, Literals, Scanner, VariantLists, ANY_FIELD};
use crate::automaton::LiteralAutomaton;
use crate::byte_string::StoredBytes;
use crate::keyed::KeyedLiterals;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

/// A literal set and, when it is one of ours, its automaton.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredAutomaton {
    /// How many literals there are.
    count: u32,
    /// The literals, `Vec<String>` (postcard): decoded by a hunt only
    /// when it builds their automaton.
    literals: StoredBytes,
    large: Option<LiteralAutomaton>,
}

/// A bucket, its scans' automata by number.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredBucket {
    always: Vec<u32>,
    scans: Vec<StoredScan>,
}

#[derive(Serialize, Deserialize)]
struct StoredScan {
    field: u32,
    ac: Option<u32>,
    keyed: Option<KeyedLiterals>,
    base: u32,
    variants: VariantLists,
    few: Option<Vec<u32>>,
}

/// Numbers the distinct automata of the buckets written, in the order
/// they are first met.
#[derive(Default)]
pub(crate) struct AutomataWriter {
    numbers: FxHashMap<*const LazyAutomaton, u32>,
    automata: Vec<StoredAutomaton>,
}

impl AutomataWriter {
    /// The stored form of `bucket`; its automata are numbered here, the
    /// large ones built now if they are not yet.
    pub fn bucket(&mut self, bucket: &Bucket) -> StoredBucket {
        StoredBucket {
            always: bucket.always.clone(),
            scans: bucket.scans.iter().map(|s| self.scan(s)).collect(),
        }
    }

    fn scan(&mut self, scan: &FieldScan) -> StoredScan {
        StoredScan {
            field: scan.field,
            ac: scan.ac.as_ref().map(|lazy| self.number(lazy)),
            keyed: scan.keyed.clone(),
            base: scan.base,
            variants: scan.variants.clone(),
            few: scan.few.clone(),
        }
    }

    fn number(&mut self, lazy: &Arc<LazyAutomaton>) -> u32 {
        let next = self.automata.len() as u32;
        *self.numbers.entry(Arc::as_ptr(lazy)).or_insert_with(|| {
            let large = match lazy.get() {
                Some(Scanner::Large(a)) => Some((**a).clone()),
                _ => None,
            };
            let literals = match &lazy.literals {
                Literals::Stored { encoded, .. } => encoded.clone(),
                // Encoding strings into a growable buffer has no failure
                // but running out of memory.
                Literals::Decoded(l) => postcard::to_allocvec(l)
                    .expect("strings always encode")
                    .into(),
            };
            self.automata.push(StoredAutomaton {
                count: lazy.literals.len() as u32,
                literals,
                large,
            });
            next
        })
    }

    /// The automata numbered, in order.
    pub fn finish(self) -> Vec<StoredAutomaton> {
        self.automata
    }
}

/// The automata of a snapshot, ready to be shared by its buckets: a
/// stored one built, the others built on first use.
///
/// # Errors
/// When a stored automaton was not built over its literal set.
pub(crate) fn load_automata(
    stored: Vec<StoredAutomaton>,
) -> Result<Vec<Arc<LazyAutomaton>>, String> {
    stored
        .into_iter()
        .map(|s| {
            let built = OnceLock::new();
            let count = s.count as usize;
            if let Some(a) = s.large {
                if a.patterns() != count {
                    return Err("a stored automaton is not its literal set's".into());
                }
                let _ = built.set(Some(Scanner::Large(Box::new(a))));
            }
            Ok(Arc::new(LazyAutomaton {
                literals: Literals::Stored {
                    count,
                    encoded: s.literals,
                    decoded: OnceLock::new(),
                },
                built,
            }))
        })
        .collect()
}

/// How far the numbers in stored buckets may go.
pub(crate) struct Bounds {
    /// Field ids below this (or [`ANY_FIELD`]).
    pub fields: u32,
    /// Variant ids below this.
    pub variants: u32,
    /// Pattern numbers below this.
    pub patterns: u32,
}

impl StoredBucket {
    /// The bucket, its automata taken from `automata`.
    ///
    /// # Errors
    /// When a number points nowhere.
    pub fn load(self, automata: &[Arc<LazyAutomaton>], bounds: &Bounds) -> Result<Bucket, String> {
        let variant_ok = |v: &u32| *v < bounds.variants;
        if !self.always.iter().all(variant_ok) {
            return Err("a bucket's variant id".into());
        }
        let scans = self
            .scans
            .into_iter()
            .map(|s| {
                if s.field >= bounds.fields && s.field != ANY_FIELD {
                    return Err("a scan's field id".to_string());
                }
                let ac = match s.ac {
                    Some(i) => Some(
                        automata
                            .get(i as usize)
                            .ok_or("a scan's automaton number")?
                            .clone(),
                    ),
                    None => None,
                };
                // Patterns 0..n are the automaton's, the keyed ones after.
                let in_automaton = ac.as_ref().map_or(0, |a| a.len());
                let keyed = match &s.keyed {
                    None if ac.is_none() => None,
                    None => Some(0),
                    Some(k) => k.patterns_after(in_automaton),
                };
                let Some(keyed) = keyed else {
                    return Err("a scan's keyed literals".to_string());
                };
                let patterns = in_automaton + keyed;
                let end = u64::from(s.base) + patterns as u64;
                if s.variants.len() != patterns
                    || !s.variants.is_consistent()
                    || end > u64::from(bounds.patterns)
                {
                    return Err("a scan's pattern numbers".to_string());
                }
                let few_ok = s
                    .few
                    .as_ref()
                    .is_none_or(|f| f.iter().all(variant_ok) && ac.is_some());
                if !few_ok || !s.variants.all().iter().all(variant_ok) {
                    return Err("a scan's variant id".to_string());
                }
                Ok(FieldScan {
                    field: s.field,
                    ac,
                    keyed: s.keyed,
                    base: s.base,
                    variants: s.variants,
                    few: s.few,
                    packed: OnceLock::new(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Bucket {
            always: self.always,
            scans,
        })
    }
}

#[cfg(test)]
impl StoredBucket {
    /// Points the first scan with an automaton at one that is not there.
    pub fn damage_automaton_number(&mut self) {
        let scan = self
            .scans
            .iter_mut()
            .find(|s| s.ac.is_some())
            .expect("a scan");
        scan.ac = Some(999);
    }

    /// Names a variant that is not there.
    pub fn damage_variant_id(&mut self) {
        self.scans[0].variants.ids[0] = 999_999;
    }

    /// Numbers the first scan's patterns past the end.
    pub fn damage_pattern_numbers(&mut self) {
        self.scans[0].base = u32::MAX - 1;
    }
}
