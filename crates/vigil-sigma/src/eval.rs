//! Evaluating a rule's detection on one prepared event.
//!
//! [`Scratch`] holds the event's fields resolved against the rule set's
//! field dictionary and every scalar's text lowercased once, so that the
//! thousands of matchers that look at `CommandLine` share one lowercasing.

use crate::pattern::{compare_shape, Pattern, Scalar};
use crate::rule::{Detection, Item, Selection};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use vigil_event::{Event, Value};

/// Reusable per-thread working memory for [`crate::RuleSet::matches`].
///
/// Holding one per thread makes evaluation allocation-free once its
/// buffers have grown to the size of the largest event seen.
#[derive(Debug, Default)]
pub struct Scratch {
    pub(crate) slots: Vec<Slot>,
    touched: Vec<u32>,
    pub(crate) scalars: Vec<ScalarRec>,
    text: String,
    pub(crate) lower: String,
    /// Per prefilter pattern: the event number it was last seen in.
    pub(crate) pattern_seen: Vec<u32>,
    /// Per variant: the event number it was last queued in.
    pub(crate) variant_seen: Vec<u32>,
    /// Per rule: the event number it last matched in.
    pub(crate) rule_seen: Vec<u32>,
    /// Counts events; stamps above compare against it, so nothing needs
    /// clearing between events.
    pub(crate) epoch: u32,
    pub(crate) candidates: Vec<u32>,
    pub(crate) matches: Vec<crate::Match>,
    /// Rule variants fully evaluated so far (the prefilter's misses cost
    /// one each).
    pub(crate) evaluated: u64,
    /// Field id by name pointer: events whose names are interned (as the
    /// readers do) skip hashing the name. Each entry keeps its name alive,
    /// so a pointer cannot be reused for another name while cached.
    ids_by_ptr: FxHashMap<usize, (Arc<str>, u32)>,
    /// What field scans found in recent texts.
    pub(crate) memo: crate::bucket::ScanMemo,
    /// Patterns found by the scan being run, for the memo.
    pub(crate) found: Vec<u32>,
    /// The rule set the caches above belong to (its id).
    owner: usize,
}

/// Bound on the pointer cache; past it, it is cleared.
const PTR_CACHE_LIMIT: usize = 1 << 14;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Slot {
    pub start: u32,
    pub len: u32,
    pub state: SlotState,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum SlotState {
    #[default]
    Absent,
    Null,
    Present,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ScalarRec {
    field: u32,
    elem: u32,
    /// Range in `Scratch::text`; start `u32::MAX` for the event's own
    /// string.
    text: (u32, u32),
    pub lower: (u32, u32),
}

impl Scratch {
    /// How many rule variants this scratch has fully evaluated: what the
    /// prefilter let through. Divided by the events matched, it measures
    /// how selective the prefilter is.
    pub fn evaluations(&self) -> u64 {
        self.evaluated
    }

    /// The rule set this scratch was last prepared for (its id).
    pub(crate) fn owner(&self) -> usize {
        self.owner
    }

    /// Resolves `event`'s fields against `fields` and lowercases every
    /// scalar; sizes the stamp arrays.
    pub(crate) fn prepare(
        &mut self,
        event: &Event,
        owner: usize,
        fields: &FxHashMap<String, u32>,
        nfields: usize,
        sizes: (usize, usize, usize),
    ) {
        if self.owner != owner || self.ids_by_ptr.len() > PTR_CACHE_LIMIT {
            self.ids_by_ptr.clear();
            if self.owner != owner {
                self.memo.clear();
            }
            self.owner = owner;
        }
        if self.slots.len() != nfields {
            self.slots = vec![Slot::default(); nfields];
            self.touched.clear();
        }
        for &t in &self.touched {
            self.slots[t as usize] = Slot::default();
        }
        self.touched.clear();
        self.scalars.clear();
        self.text.clear();
        self.lower.clear();
        let (patterns, variants, rules) = sizes;
        if self.pattern_seen.len() != patterns
            || self.variant_seen.len() != variants
            || self.rule_seen.len() != rules
            || self.epoch == u32::MAX
        {
            self.pattern_seen = vec![0; patterns];
            self.variant_seen = vec![0; variants];
            self.rule_seen = vec![0; rules];
            self.epoch = 0;
        }
        self.epoch += 1;
        for (i, (name, value)) in event.entries().iter().enumerate() {
            let start = self.scalars.len() as u32;
            let state = match value {
                Value::Null => SlotState::Null,
                Value::List(items) => {
                    for (e, item) in items.iter().enumerate() {
                        self.push_scalar(i as u32, e as u32, item);
                    }
                    SlotState::Present
                }
                v => {
                    self.push_scalar(i as u32, 0, v);
                    SlotState::Present
                }
            };
            let key = Arc::as_ptr(name) as *const u8 as usize;
            let fid = match self.ids_by_ptr.get(&key) {
                Some(&(_, id)) => id,
                None => {
                    let id = fields.get(&**name).copied().unwrap_or(u32::MAX);
                    self.ids_by_ptr.insert(key, (name.clone(), id));
                    id
                }
            };
            if fid != u32::MAX {
                let slot = &mut self.slots[fid as usize];
                if slot.state == SlotState::Absent {
                    *slot = Slot {
                        start,
                        len: self.scalars.len() as u32 - start,
                        state,
                    };
                    self.touched.push(fid);
                }
            }
        }
    }

    fn push_scalar(&mut self, field: u32, elem: u32, v: &Value) {
        let a = self.lower.len() as u32;
        let text = match v {
            Value::Str(s) => {
                crate::glob::lower_into(s, &mut self.lower);
                (u32::MAX, 0)
            }
            Value::Null | Value::List(_) => (0, 0),
            other => {
                let t0 = self.text.len();
                let _ = other.write_text(&mut self.text);
                // Numbers and booleans are ASCII; lowercase in place.
                self.lower.push_str(&self.text[t0..]);
                let l0 = a as usize;
                self.lower[l0..].make_ascii_lowercase();
                (t0 as u32, self.text.len() as u32)
            }
        };
        self.scalars.push(ScalarRec {
            field,
            elem,
            text,
            lower: (a, self.lower.len() as u32),
        });
    }
}

/// An event prepared in a [`Scratch`].
pub(crate) struct View<'a> {
    pub event: &'a Event,
    pub s: &'a Scratch,
}

impl<'a> View<'a> {
    fn scalar(&self, rec: &ScalarRec) -> Scalar<'a> {
        let (_, v) = self
            .event
            .field_at(rec.field as usize)
            .expect("indexed field");
        let value = match v {
            Value::List(items) => &items[rec.elem as usize],
            v => v,
        };
        let text = match value {
            Value::Str(s) if rec.text.0 == u32::MAX => s,
            _ => &self.s.text[rec.text.0 as usize..rec.text.1 as usize],
        };
        Scalar {
            value,
            text,
            lower: &self.s.lower[rec.lower.0 as usize..rec.lower.1 as usize],
        }
    }

    pub fn slot(&self, fid: u32) -> Slot {
        self.s.slots[fid as usize]
    }

    pub fn scalars_of(&self, slot: Slot) -> impl Iterator<Item = Scalar<'a>> + '_ {
        self.s.scalars[slot.start as usize..(slot.start + slot.len) as usize]
            .iter()
            .map(|r| self.scalar(r))
    }

    pub fn first(&self, fid: u32) -> Option<Scalar<'a>> {
        let slot = self.slot(fid);
        self.scalars_of(slot).next()
    }

    fn all_scalars(&self) -> impl Iterator<Item = Scalar<'a>> + '_ {
        self.s.scalars.iter().map(|r| self.scalar(r))
    }
}

/// Whether the detection matches, with the rule's local fields resolved
/// through `fields`.
pub(crate) fn eval_detection(det: &Detection, fields: &[u32], view: &View<'_>) -> bool {
    det.cond
        .eval(&mut |i| eval_selection(&det.selections[i], fields, view))
}

pub(crate) fn eval_selection(sel: &Selection, fields: &[u32], view: &View<'_>) -> bool {
    sel.groups
        .iter()
        .any(|g| g.iter().all(|item| eval_item(item, fields, view)))
}

pub(crate) fn eval_item(item: &Item, fields: &[u32], view: &View<'_>) -> bool {
    let v = &item.values;
    // Most fields hold one value: resolve it once for all the patterns
    // (an item may list dozens), not once per pattern.
    let single = item.field.and_then(|l| {
        let slot = view.slot(fields[l]);
        (slot.state == SlotState::Present && slot.len == 1)
            .then(|| view.scalar(&view.s.scalars[slot.start as usize]))
    });
    let one = |p: &Pattern| -> bool {
        if let (Some(s), false) = (single, matches!(p, Pattern::FieldRef { .. })) {
            return p.matches(s);
        }
        match item.field {
            None => view.all_scalars().any(|s| p.matches(s)),
            Some(l) => {
                let slot = view.slot(fields[l]);
                match slot.state {
                    SlotState::Absent => p.matches_missing(false),
                    SlotState::Null => p.matches_missing(true),
                    SlotState::Present => match p {
                        Pattern::FieldRef {
                            local,
                            shape,
                            cased,
                            ..
                        } => {
                            let other = view.slot(fields[*local]);
                            view.scalars_of(slot).any(|a| {
                                view.scalars_of(other).any(|b| {
                                    if *cased {
                                        compare_shape(*shape, a.text, b.text)
                                    } else {
                                        compare_shape(*shape, a.lower, b.lower)
                                    }
                                })
                            })
                        }
                        _ => view.scalars_of(slot).any(|s| p.matches(s)),
                    },
                }
            }
        }
    };
    let hit = if v.all {
        // A value left without alternatives (an unresolved placeholder)
        // can never match, so neither can "all of them".
        v.unresolved.is_empty() && v.by_value().all(|alts| alts.iter().any(one))
    } else {
        v.patterns.iter().any(one)
    };
    hit != v.negate
}
