//! A compiled rule set: every loaded rule, indexed for cheap evaluation.
//!
//! How an event is evaluated ([`RuleSet::matches`]):
//! 1. Its fields are resolved once against the set's field dictionary and
//!    lowercased once into [`Scratch`] (reused across events).
//! 2. Routing: the event's `Channel` and `EventID` pick the rule variants
//!    whose log-source conditions can hold (a `HashMap` lookup); variants
//!    with other selectors are checked one by one.
//! 3. Prefilter: most rules need some literal text in some field (`Image`
//!    ends with `\x.exe`). All such literals of one field form one
//!    Aho-Corasick automaton, run at most once per field per event, and
//!    only for fields that routed rules need. A rule none of whose
//!    required literals occur is skipped without evaluation.
//! 4. The remaining rules are evaluated in full.
//!
//! The prefilter never changes a result: a rule is skipped only when it
//! provably cannot match (tested against full evaluation).

use crate::condition::Cond;
use crate::logsource::LogSourceMap;
use crate::pattern::{compare_shape, Pattern, Scalar};
use crate::rule::{Detection, Document, Filter, Item, Rule};
use crate::RuleError;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use vigil_event::{Event, Value};

/// Builds a [`RuleSet`].
///
/// # Example
/// ```
/// use vigil_sigma::{RuleSetBuilder, Scratch, rule::parse_file, Placeholders};
/// use vigil_event::Event;
/// let text = "title: t\nid: r1\nlogsource: {product: test}\ndetection:\n  sel: {CommandLine|contains: whoami}\n  condition: sel\n";
/// let (docs, errors) = parse_file(None, text, &Placeholders::new());
/// assert!(errors.is_empty());
/// let mut builder = RuleSetBuilder::new();
/// builder.add_documents(docs);
/// let set = builder.build();
/// let mut event = Event::new();
/// event.push("CommandLine", "cmd /c WHOAMI /all");
/// let mut scratch = Scratch::default();
/// let hits = set.matches(&event, &mut scratch);
/// assert_eq!(set.rule(hits[0].rule).id.as_deref(), Some("r1"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct RuleSetBuilder {
    rules: Vec<Rule>,
    filters: Vec<Filter>,
    map: Option<LogSourceMap>,
    prefilter: bool,
}

impl RuleSetBuilder {
    /// A builder with the shipped log-source mapping.
    pub fn new() -> Self {
        RuleSetBuilder {
            prefilter: true,
            ..Default::default()
        }
    }

    /// Uses `map` instead of the shipped log-source mapping.
    pub fn logsources(&mut self, map: LogSourceMap) -> &mut Self {
        self.map = Some(map);
        self
    }

    /// Turns the literal prefilter on or off (on by default; off is for
    /// testing that it changes nothing).
    pub fn prefilter(&mut self, on: bool) -> &mut Self {
        self.prefilter = on;
        self
    }

    /// Adds a rule.
    pub fn add_rule(&mut self, rule: Rule) -> &mut Self {
        self.rules.push(rule);
        self
    }

    /// Adds a filter.
    pub fn add_filter(&mut self, filter: Filter) -> &mut Self {
        self.filters.push(filter);
        self
    }

    /// Adds parsed documents.
    pub fn add_documents(&mut self, docs: impl IntoIterator<Item = Document>) -> &mut Self {
        for d in docs {
            match d {
                Document::Rule(r) => self.add_rule(*r),
                Document::Filter(f) => self.add_filter(*f),
            };
        }
        self
    }

    /// How many rules were added.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether no rule was added.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Compiles the rule set. Filters naming no loaded rule are reported in
    /// [`RuleSet::warnings`].
    pub fn build(&self) -> RuleSet {
        let map = self.map.clone().unwrap_or_default();
        let mut rules = self.rules.clone();
        let mut warnings = Vec::new();
        for filter in &self.filters {
            let mut applied = 0;
            for rule in rules.iter_mut() {
                let named = filter.rules.iter().any(|r| {
                    rule.id.as_deref() == Some(r.as_str()) || rule.name.as_deref() == Some(r.as_str())
                });
                if named && logsource_covers(&filter.logsource, &rule.logsource) {
                    let label = filter.id.as_deref().unwrap_or(&filter.title).to_string();
                    rule.detection.and_also(&filter.detection, &format!("filter {label}"));
                    applied += 1;
                }
            }
            if applied == 0 {
                warnings.push(
                    RuleError::new(filter.line, Some("filter.rules".into()), "names no loaded rule")
                        .with_path(filter.path.clone()),
                );
            }
        }
        let mut c = Compiler::default();
        c.field_id("Channel");
        c.field_id("EventID");
        let mut variants = Vec::new();
        for (ri, rule) in rules.iter().enumerate() {
            let entries: Vec<_> = map.entries_for(&rule.logsource).collect();
            if rule.aggregation.is_some() {
                // Legacy aggregations are correlations; they never match a
                // single event.
                continue;
            }
            if entries.is_empty() {
                variants.push(c.variant(ri, rule, None, &[]));
            } else {
                for e in entries {
                    variants.push(c.variant(ri, rule, e.conditions.as_deref(), &e.fieldmappings));
                }
            }
        }
        let channel = c.fields["Channel"];
        let event_id = c.fields["EventID"];
        let mut routes: HashMap<String, ChannelRoute> = HashMap::new();
        let mut generic = Vec::new();
        for (vi, v) in variants.iter().enumerate() {
            let chans = v.conds.iter().find(|(f, _)| *f == channel).map(|(_, vals)| vals);
            let eids = v.conds.iter().find(|(f, _)| *f == event_id).map(|(_, vals)| vals);
            match chans {
                None => generic.push(vi as u32),
                Some(chans) => {
                    for ch in chans {
                        let route = routes.entry(ch.clone()).or_default();
                        match eids.and_then(|e| e.iter().map(|x| x.parse::<i64>().ok()).collect::<Option<Vec<_>>>()) {
                            Some(ids) => {
                                for id in ids {
                                    route.by_event_id.entry(id).or_default().push(vi as u32)
                                }
                            }
                            None => route.any.push(vi as u32),
                        }
                    }
                }
            }
        }
        let prefilter = if self.prefilter {
            Prefilter::build(&rules, &mut variants, c.names.len())
        } else {
            Prefilter::default()
        };
        RuleSet {
            inner: Arc::new(Inner {
                rules,
                variants,
                fields: c.fields,
                field_names: c.names,
                routes,
                generic,
                prefilter,
                channel,
                event_id,
                warnings,
            }),
        }
    }
}

/// Whether every key `filter` sets equals the rule's (a filter for
/// `process_creation` does not touch a `network_connection` rule).
fn logsource_covers(filter: &crate::LogSource, rule: &crate::LogSource) -> bool {
    let ok = |f: &Option<String>, r: &Option<String>| match f {
        None => true,
        Some(f) => r.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(f)),
    };
    ok(&filter.product, &rule.product)
        && ok(&filter.category, &rule.category)
        && ok(&filter.service, &rule.service)
}

#[derive(Default)]
struct Compiler {
    fields: HashMap<String, u32>,
    names: Vec<String>,
}

impl Compiler {
    fn field_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.fields.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.fields.insert(name.to_string(), id);
        id
    }

    fn variant(
        &mut self,
        rule: usize,
        r: &Rule,
        conds: Option<&[(String, Vec<String>)]>,
        fieldmap: &[(String, String)],
    ) -> Variant {
        let fields = r
            .detection
            .fields
            .iter()
            .map(|f| {
                let mapped = fieldmap
                    .iter()
                    .find(|(from, _)| from == f)
                    .map(|(_, to)| to.as_str())
                    .unwrap_or(f);
                self.field_id(mapped)
            })
            .collect();
        let conds = conds
            .unwrap_or_default()
            .iter()
            .map(|(f, vals)| (self.field_id(f), vals.iter().map(|v| v.to_lowercase()).collect()))
            .collect();
        Variant {
            rule: rule as u32,
            fields,
            conds,
            product: r.logsource.product.as_ref().map(|p| p.to_lowercase()),
            trigger: None,
        }
    }
}

#[derive(Debug, Default)]
struct ChannelRoute {
    by_event_id: HashMap<i64, Vec<u32>>,
    any: Vec<u32>,
}

/// One way a rule can apply: the rule under one log-source mapping entry.
#[derive(Debug)]
struct Variant {
    rule: u32,
    /// The detection's local field index → global field id.
    fields: Vec<u32>,
    /// Event conditions from the mapping: (field, lowercase values, any).
    conds: Vec<(u32, Vec<String>)>,
    /// The rule's product, lowercase.
    product: Option<String>,
    /// Prefilter: the atoms of which one must occur; `None` = always
    /// evaluate.
    trigger: Option<Vec<u32>>,
}

/// A compiled, immutable rule set. Cheap to clone (an `Arc` inside), and
/// `Send + Sync`: share one across threads, each with its own [`Scratch`].
#[derive(Debug, Clone)]
pub struct RuleSet {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    rules: Vec<Rule>,
    variants: Vec<Variant>,
    fields: HashMap<String, u32>,
    field_names: Vec<String>,
    routes: HashMap<String, ChannelRoute>,
    generic: Vec<u32>,
    prefilter: Prefilter,
    channel: u32,
    event_id: u32,
    warnings: Vec<RuleError>,
}

/// A rule that matched an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Match {
    /// Index of the rule in the set ([`RuleSet::rule`]).
    pub rule: usize,
}

/// Literal prefilter: per field, one automaton over every required literal.
#[derive(Debug, Default)]
struct Prefilter {
    /// Per global field id: automaton and, per pattern, the atom it is.
    by_field: Vec<Option<(AhoCorasick, Vec<u32>)>>,
    /// Keyword atoms, searched in every field.
    keywords: Option<(AhoCorasick, Vec<u32>)>,
    /// Per atom: its field (`u32::MAX` for keywords).
    atom_field: Vec<u32>,
    atoms: usize,
}

type Atom = (u32, String);

impl Prefilter {
    fn build(rules: &[Rule], variants: &mut [Variant], nfields: usize) -> Prefilter {
        let mut atom_ids: HashMap<Atom, u32> = HashMap::new();
        let mut atom_list: Vec<Atom> = Vec::new();
        for v in variants.iter_mut() {
            let det = &rules[v.rule as usize].detection;
            if let Some(atoms) = cond_trigger(&det.cond, det, &v.fields) {
                let mut ids: Vec<u32> = atoms
                    .into_iter()
                    .map(|a| {
                        *atom_ids.entry(a.clone()).or_insert_with(|| {
                            atom_list.push(a);
                            (atom_list.len() - 1) as u32
                        })
                    })
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                v.trigger = Some(ids);
            }
        }
        let mut per_field: HashMap<u32, (Vec<String>, Vec<u32>)> = HashMap::new();
        for (id, (field, needle)) in atom_list.iter().enumerate() {
            let e = per_field.entry(*field).or_default();
            e.0.push(needle.clone());
            e.1.push(id as u32);
        }
        let build = |needles: &[String]| {
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::Standard)
                .build(needles)
                .ok()
        };
        let mut by_field: Vec<Option<(AhoCorasick, Vec<u32>)>> = (0..nfields).map(|_| None).collect();
        let mut keywords = None;
        for (field, (needles, ids)) in per_field {
            let Some(ac) = build(&needles) else {
                continue;
            };
            if field == u32::MAX {
                keywords = Some((ac, ids));
            } else {
                by_field[field as usize] = Some((ac, ids));
            }
        }
        // An automaton that failed to build leaves its atoms unsearchable:
        // the variants that need them must then always be evaluated.
        let searchable = |field: u32| {
            if field == u32::MAX {
                keywords.is_some()
            } else {
                by_field[field as usize].is_some()
            }
        };
        for v in variants.iter_mut() {
            if let Some(t) = &v.trigger {
                if !t.iter().all(|&a| searchable(atom_list[a as usize].0)) {
                    v.trigger = None;
                }
            }
        }
        Prefilter {
            by_field,
            keywords,
            atom_field: atom_list.iter().map(|(f, _)| *f).collect(),
            atoms: atom_list.len(),
        }
    }
}

/// Score of a trigger: higher is more selective (longest shortest needle,
/// then fewest atoms).
fn trigger_score(atoms: &[Atom]) -> (usize, std::cmp::Reverse<usize>) {
    let min = atoms.iter().map(|(_, n)| n.len()).min().unwrap_or(0);
    (min.min(8), std::cmp::Reverse(atoms.len()))
}

fn cond_trigger(cond: &Cond, det: &Detection, fields: &[u32]) -> Option<Vec<Atom>> {
    match cond {
        Cond::Sel(i) => {
            let sel = &det.selections[*i];
            let mut out = Vec::new();
            for group in &sel.groups {
                out.extend(group_trigger(group, fields)?);
            }
            Some(out)
        }
        Cond::And(cs) => cs
            .iter()
            .filter_map(|c| cond_trigger(c, det, fields))
            .max_by_key(|t| trigger_score(t)),
        Cond::Or(cs) | Cond::AtLeast(_, cs) => {
            let mut out = Vec::new();
            for c in cs {
                out.extend(cond_trigger(c, det, fields)?);
            }
            Some(out)
        }
        Cond::Not(_) => None,
    }
}

fn group_trigger(items: &[Item], fields: &[u32]) -> Option<Vec<Atom>> {
    items
        .iter()
        .filter_map(|item| item_trigger(item, fields))
        .max_by_key(|t| trigger_score(t))
}

fn item_trigger(item: &Item, fields: &[u32]) -> Option<Vec<Atom>> {
    if item.values.negate {
        return None;
    }
    let field = item.field.map(|l| fields[l]).unwrap_or(u32::MAX);
    let literal = |p: &Pattern| -> Option<String> {
        match p {
            Pattern::Str(s) if s.number.is_none() => {
                s.matcher.required_literal().map(crate::glob::lower)
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
                    .map(|p| literal(p).map(|l| (field, l)))
                    .collect::<Option<Vec<Atom>>>()
            })
            .max_by_key(|t| trigger_score(t));
    }
    item.values
        .patterns
        .iter()
        .map(|p| literal(p).map(|l| (field, l)))
        .collect()
}

/// Reusable per-thread working memory for [`RuleSet::matches`].
///
/// Holding one per thread makes evaluation allocation-free once its
/// buffers have grown to the size of the largest event seen.
#[derive(Debug, Default)]
pub struct Scratch {
    slots: Vec<Slot>,
    touched: Vec<u32>,
    scalars: Vec<ScalarRec>,
    text: String,
    lower: String,
    triggered: Vec<u64>,
    scanned: Vec<u64>,
    keywords_scanned: bool,
    seen_rules: Vec<u64>,
    matches: Vec<Match>,
    num: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    start: u32,
    len: u32,
    state: SlotState,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum SlotState {
    #[default]
    Absent,
    Null,
    Present,
}

#[derive(Debug, Clone, Copy)]
struct ScalarRec {
    field: u32,
    elem: u32,
    /// Range in `Scratch::text`, or `u32::MAX` start for the event's own
    /// string.
    text: (u32, u32),
    lower: (u32, u32),
}

fn set_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

/// An event prepared for evaluation.
struct View<'a> {
    event: &'a Event,
    s: &'a Scratch,
}

impl<'a> View<'a> {
    fn scalar(&self, rec: &ScalarRec) -> Scalar<'a> {
        let (_, v) = self.event.field_at(rec.field as usize).expect("indexed field");
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

    fn slot(&self, fid: u32) -> Slot {
        self.s.slots[fid as usize]
    }

    fn scalars_of(&self, slot: Slot) -> impl Iterator<Item = Scalar<'a>> + '_ {
        self.s.scalars[slot.start as usize..(slot.start + slot.len) as usize]
            .iter()
            .map(|r| self.scalar(r))
    }

    fn all_scalars(&self) -> impl Iterator<Item = Scalar<'a>> + '_ {
        self.s.scalars.iter().map(|r| self.scalar(r))
    }
}

impl RuleSet {
    /// The rules, indexed by [`Match::rule`].
    pub fn rules(&self) -> &[Rule] {
        &self.inner.rules
    }

    /// One rule.
    ///
    /// # Panics
    /// If `i` is not a rule index of this set.
    pub fn rule(&self, i: usize) -> &Rule {
        &self.inner.rules[i]
    }

    /// How many rules the set holds.
    pub fn len(&self) -> usize {
        self.inner.rules.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.rules.is_empty()
    }

    /// Problems found while building that did not stop it (a filter that
    /// names no loaded rule).
    pub fn warnings(&self) -> &[RuleError] {
        &self.inner.warnings
    }

    /// Prepares `scratch` for `event`: resolves fields, lowercases texts.
    fn prepare(&self, event: &Event, s: &mut Scratch) {
        let inner = &*self.inner;
        if s.slots.len() != inner.field_names.len() {
            s.slots = vec![Slot::default(); inner.field_names.len()];
            s.touched.clear();
        }
        for &t in &s.touched {
            s.slots[t as usize] = Slot::default();
        }
        s.touched.clear();
        s.scalars.clear();
        s.text.clear();
        s.lower.clear();
        let words = inner.variants.len().div_ceil(64);
        s.triggered.clear();
        s.triggered.resize(inner.prefilter.atoms.div_ceil(64).max(1), 0);
        s.scanned.clear();
        s.scanned.resize(inner.field_names.len().div_ceil(64).max(1), 0);
        s.keywords_scanned = false;
        s.seen_rules.clear();
        s.seen_rules.resize(inner.rules.len().div_ceil(64).max(1), 0);
        let _ = words;
        for (i, (name, value)) in event.fields().enumerate() {
            let start = s.scalars.len() as u32;
            let state = match value {
                Value::Null => SlotState::Null,
                Value::List(items) => {
                    for (e, item) in items.iter().enumerate() {
                        push_scalar(s, i as u32, e as u32, item);
                    }
                    SlotState::Present
                }
                v => {
                    push_scalar(s, i as u32, 0, v);
                    SlotState::Present
                }
            };
            if let Some(&fid) = inner.fields.get(name) {
                let slot = &mut s.slots[fid as usize];
                if slot.state == SlotState::Absent {
                    *slot = Slot {
                        start,
                        len: s.scalars.len() as u32 - start,
                        state,
                    };
                    s.touched.push(fid);
                }
            }
        }
    }

    /// The rules that match `event`, in rule order without duplicates.
    ///
    /// The returned slice lives in `scratch` and is overwritten by the
    /// next call.
    pub fn matches<'s>(&self, event: &Event, scratch: &'s mut Scratch) -> &'s [Match] {
        self.prepare(event, scratch);
        let inner = &*self.inner;
        let mut matches = std::mem::take(&mut scratch.matches);
        matches.clear();
        let channel = {
            let view = View { event, s: scratch };
            let slot = view.slot(inner.channel);
            let c = view.scalars_of(slot).next().map(|s| s.lower.to_string());
            c
        };
        let event_id = {
            let view = View { event, s: scratch };
            let slot = view.slot(inner.event_id);
            let id = view.scalars_of(slot).next().and_then(|s| s.value.as_i64());
            id
        };
        let route = channel.as_deref().and_then(|c| inner.routes.get(c));
        let routed = route
            .into_iter()
            .flat_map(|r| {
                event_id
                    .and_then(|id| r.by_event_id.get(&id))
                    .into_iter()
                    .flatten()
                    .chain(r.any.iter())
            })
            .chain(inner.generic.iter());
        let product = event.meta.product.as_deref();
        for &vi in routed {
            let v = &inner.variants[vi as usize];
            if bit(&scratch.seen_rules, v.rule as usize) {
                continue;
            }
            if let (Some(want), Some(have)) = (&v.product, product) {
                if !want.eq_ignore_ascii_case(have) {
                    continue;
                }
            }
            if !self.conds_hold(v, event, scratch) {
                continue;
            }
            if let Some(trigger) = &v.trigger {
                if !self.triggered(trigger, event, scratch) {
                    continue;
                }
            }
            let view = View { event, s: scratch };
            let rule = &inner.rules[v.rule as usize];
            if eval_detection(&rule.detection, &v.fields, &view) {
                set_bit(&mut scratch.seen_rules, v.rule as usize);
                matches.push(Match {
                    rule: v.rule as usize,
                });
            }
        }
        matches.sort_unstable();
        scratch.matches = matches;
        &scratch.matches
    }

    fn conds_hold(&self, v: &Variant, event: &Event, s: &Scratch) -> bool {
        let view = View { event, s };
        v.conds.iter().all(|(fid, values)| {
            let slot = view.slot(*fid);
            view.scalars_of(slot).any(|sc| {
                values.iter().any(|want| {
                    sc.lower == want
                        || (sc.value.as_i64().is_some() && want.parse::<i64>().ok() == sc.value.as_i64())
                })
            })
        })
    }

    /// Whether any atom of `trigger` occurs, scanning fields on demand.
    fn triggered(&self, trigger: &[u32], event: &Event, s: &mut Scratch) -> bool {
        let pf = &self.inner.prefilter;
        for &atom in trigger {
            let field = pf.atom_field[atom as usize];
            if field == u32::MAX {
                if !s.keywords_scanned {
                    s.keywords_scanned = true;
                    if let Some((ac, ids)) = &pf.keywords {
                        for i in 0..s.scalars.len() {
                            let (a, b) = s.scalars[i].lower;
                            scan(ac, ids, &s.lower[a as usize..b as usize], &mut s.triggered);
                        }
                    }
                }
            } else if !bit(&s.scanned, field as usize) {
                set_bit(&mut s.scanned, field as usize);
                if let Some((ac, ids)) = &pf.by_field[field as usize] {
                    let slot = s.slots[field as usize];
                    for i in slot.start..slot.start + slot.len {
                        let (a, b) = s.scalars[i as usize].lower;
                        scan(ac, ids, &s.lower[a as usize..b as usize], &mut s.triggered);
                    }
                }
            }
            if bit(&s.triggered, atom as usize) {
                return true;
            }
        }
        let _ = event;
        false
    }

    /// Explains, for one rule and one event, which log-source entry
    /// applied, which selections matched and, for each field item, the
    /// event's value and whether it matched. For `vigil rules test
    /// --explain`.
    pub fn explain(&self, rule: usize, event: &Event) -> String {
        let mut s = Scratch::default();
        self.prepare(event, &mut s);
        let inner = &*self.inner;
        let mut out = String::new();
        let r = &inner.rules[rule];
        let variants: Vec<&Variant> = inner.variants.iter().filter(|v| v.rule as usize == rule).collect();
        if variants.is_empty() {
            let _ = writeln!(out, "  rule has no single-event detection (aggregation)");
        }
        for v in variants {
            let view = View { event, s: &s };
            let conds: Vec<String> = v
                .conds
                .iter()
                .map(|(f, vals)| format!("{}={}", inner.field_names[*f as usize], vals.join("|")))
                .collect();
            let holds = self.conds_hold(v, event, &s);
            let _ = writeln!(
                out,
                "  log source [{}]: {}",
                if conds.is_empty() { "any event".to_string() } else { conds.join(", ") },
                if holds { "applies" } else { "does not apply" }
            );
            if !holds {
                continue;
            }
            let det = &r.detection;
            for (i, sel) in det.selections.iter().enumerate() {
                let ok = eval_selection(sel, &v.fields, &view);
                let _ = writeln!(out, "    selection {}: {}", det.names[i], if ok { "matched" } else { "not matched" });
                for group in &sel.groups {
                    for item in group {
                        let ok = eval_item(item, &v.fields, &view);
                        let (name, value) = match item.field {
                            Some(l) => {
                                let fid = v.fields[l];
                                let slot = view.slot(fid);
                                let vals: Vec<String> = view.scalars_of(slot).map(|s| s.text.to_string()).collect();
                                (inner.field_names[fid as usize].clone(), match slot.state {
                                    SlotState::Absent => "(absent)".to_string(),
                                    SlotState::Null => "(null)".to_string(),
                                    SlotState::Present => vals.join(" | "),
                                })
                            }
                            None => ("(keywords)".to_string(), String::new()),
                        };
                        let _ = writeln!(out, "      {} {name} = {value:?}", if ok { "ok  " } else { "FAIL" });
                    }
                }
            }
            let ok = eval_detection(det, &v.fields, &view);
            let _ = writeln!(out, "    condition: {}", if ok { "true" } else { "false" });
        }
        out
    }
}

fn scan(ac: &AhoCorasick, ids: &[u32], text: &str, triggered: &mut [u64]) {
    for m in ac.find_overlapping_iter(text) {
        set_bit(triggered, ids[m.pattern().as_usize()] as usize);
    }
}

fn push_scalar(s: &mut Scratch, field: u32, elem: u32, v: &Value) {
    let text = match v {
        Value::Str(_) => (u32::MAX, 0),
        Value::Null | Value::List(_) => {
            let a = s.text.len() as u32;
            (a, a)
        }
        other => {
            let a = s.text.len() as u32;
            let _ = other.write_text(&mut s.text);
            (a, s.text.len() as u32)
        }
    };
    let src: &str = match v {
        Value::Str(st) => st,
        _ => {
            s.num.clear();
            s.num.push_str(&s.text[text.0 as usize..text.1 as usize]);
            &s.num
        }
    };
    let a = s.lower.len() as u32;
    if src.is_ascii() {
        let start = s.lower.len();
        s.lower.push_str(src);
        s.lower[start..].make_ascii_lowercase();
    } else {
        for c in src.chars() {
            s.lower.extend(c.to_lowercase());
        }
    }
    s.scalars.push(ScalarRec {
        field,
        elem,
        text,
        lower: (a, s.lower.len() as u32),
    });
}

fn eval_detection(det: &Detection, fields: &[u32], view: &View<'_>) -> bool {
    det.cond
        .eval(&mut |i| eval_selection(&det.selections[i], fields, view))
}

fn eval_selection(sel: &crate::rule::Selection, fields: &[u32], view: &View<'_>) -> bool {
    sel.groups
        .iter()
        .any(|g| g.iter().all(|item| eval_item(item, fields, view)))
}

fn eval_item(item: &Item, fields: &[u32], view: &View<'_>) -> bool {
    let v = &item.values;
    let one = |p: &Pattern| -> bool {
        match item.field {
            None => view.all_scalars().any(|s| p.matches(s)),
            Some(l) => {
                let slot = view.slot(fields[l]);
                match slot.state {
                    SlotState::Absent => p.matches_missing(false),
                    SlotState::Null => p.matches_missing(true),
                    SlotState::Present => match p {
                        Pattern::FieldRef {
                            local, shape, cased, ..
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
        v.by_value().all(|alts| alts.iter().any(one))
    } else {
        v.patterns.iter().any(one)
    };
    hit != v.negate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modifier::Placeholders;
    use crate::rule::parse_file;

    fn set(rules: &[&str]) -> RuleSet {
        let mut b = RuleSetBuilder::new();
        for r in rules {
            let (docs, errs) = parse_file(None, r, &Placeholders::new());
            assert!(errs.is_empty(), "{errs:?}");
            b.add_documents(docs);
        }
        b.build()
    }

    #[test]
    fn send_sync() {
        fn assert_send_sync<T: Send + Sync + std::panic::UnwindSafe>() {}
        assert_send_sync::<RuleSet>();
    }

    #[test]
    fn routes_by_channel_and_event_id_with_fieldmapping() {
        let s = set(&["title: t\nid: a\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel: {Image|endswith: '\\whoami.exe'}\n  condition: sel\n"]);
        let mut scratch = Scratch::default();
        let mut sysmon = Event::new();
        sysmon.push("Channel", "Microsoft-Windows-Sysmon/Operational");
        sysmon.push("EventID", 1);
        sysmon.push("Image", "C:\\Windows\\System32\\WHOAMI.EXE");
        assert_eq!(s.matches(&sysmon, &mut scratch).len(), 1);
        let mut security = Event::new();
        security.push("Channel", "Security");
        security.push("EventID", 4688);
        security.push("NewProcessName", "C:\\Windows\\System32\\whoami.exe");
        assert_eq!(s.matches(&security, &mut scratch).len(), 1);
        // The same field on the wrong event ID does not match.
        sysmon.set("EventID", 3);
        assert!(s.matches(&sysmon, &mut scratch).is_empty());
    }

    #[test]
    fn filter_documents_suppress() {
        let s = set(&[
            "title: t\nid: r1\nlogsource: {product: test}\ndetection:\n  sel: {User|startswith: adm}\n  condition: sel\n",
            "title: f\nlogsource: {product: test}\nfilter:\n  rules: [r1]\n  selection: {Host: jump01}\n  condition: not selection\n",
        ]);
        let mut scratch = Scratch::default();
        let mut e = Event::new();
        e.push("User", "admin");
        e.push("Host", "ws1");
        assert_eq!(s.matches(&e, &mut scratch).len(), 1);
        e.set("Host", "JUMP01");
        assert!(s.matches(&e, &mut scratch).is_empty());
    }

    #[test]
    fn product_mismatch_never_matches() {
        let s = set(&["title: t\nlogsource: {product: linux}\ndetection:\n  sel: {CommandLine|contains: x}\n  condition: sel\n"]);
        let mut e = Event::new();
        e.push("CommandLine", "x");
        let mut scratch = Scratch::default();
        assert_eq!(s.matches(&e, &mut scratch).len(), 1);
        e.meta.product = Some("windows".into());
        assert!(s.matches(&e, &mut scratch).is_empty());
    }
}
