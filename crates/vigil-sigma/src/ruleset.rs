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

use crate::bucket::{cond_trigger, lazy_automata, Atom, Bucket, BucketPlan};
pub use snapshot::{RuleSetSnapshot, RuleSetSnapshotRef, SnapshotError, SNAPSHOT_FORMAT};

mod event_ids;
mod rule_store;
pub(crate) mod snapshot;
pub use crate::byte_string::{decode_in_place, SharedBytes};
pub use crate::eval::Scratch;
use crate::eval::{eval_detection, eval_item, eval_selection, SlotState, View};
use crate::logsource::LogSourceMap;
use crate::rule::{Document, Filter, Rule};
use crate::RuleError;
use rule_store::RuleStore;
use rustc_hash::FxHashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use vigil_event::Event;

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
                // Correlations run in a `CorrelationEngine`, on the matches
                // of this set.
                Document::Correlation(_) => self,
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

    /// Compiles the rule set, keeping the builder. Filters naming no
    /// loaded rule are reported in [`RuleSet::warnings`].
    pub fn build(&self) -> RuleSet {
        self.clone().finish()
    }

    /// Compiles the rule set, consuming the builder (no copy of the
    /// rules).
    pub fn finish(self) -> RuleSet {
        let map = self.map.unwrap_or_default();
        let mut rules = self.rules;
        let mut warnings = Vec::new();
        for filter in &self.filters {
            let mut applied = 0;
            for rule in rules.iter_mut() {
                let named = filter.rules.iter().any(|r| {
                    rule.id.as_deref() == Some(r.as_str())
                        || rule.name.as_deref() == Some(r.as_str())
                });
                if named && logsource_covers(&filter.logsource, &rule.logsource) {
                    let label = filter.id.as_deref().unwrap_or(&filter.title).to_string();
                    rule.detection
                        .and_also(&filter.detection, &format!("filter {label}"));
                    applied += 1;
                }
            }
            if applied == 0 {
                warnings.push(
                    RuleError::new(
                        filter.line,
                        Some("filter.rules".into()),
                        "names no loaded rule",
                    )
                    .with_path(filter.path.clone()),
                );
            }
        }
        warnings.extend(repeated_ids(&rules));
        let mut c = Compiler::default();
        let channel = c.field_id("Channel");
        let event_id = c.field_id("EventID");
        let mut variants = Vec::new();
        let mut unmapped = Vec::new();
        for (ri, rule) in rules.iter().enumerate() {
            let entries: Vec<_> = map.entries_for(&rule.logsource).collect();
            if entries.is_empty() {
                if map.narrows(&rule.logsource) {
                    unmapped.push(ri);
                }
                variants.push(c.variant(ri, rule, None, &[]));
            } else {
                for e in entries {
                    variants.push(c.variant(ri, rule, e.conditions.as_deref(), &e.fieldmappings));
                }
            }
        }
        let triggers = triggers(&rules, &variants, self.prefilter, [channel, event_id]);
        for rule in &rules {
            warnings.extend(rule.warnings());
        }
        let aggregating = (0..rules.len() as u32)
            .filter(|&i| rules[i as usize].aggregation.is_some())
            .collect();
        // With the prefilter off, every variant of a channel is a
        // candidate for each of its events (what tests compare against).
        let detected_ids: Vec<Option<Vec<i64>>> = variants
            .iter()
            .map(|v| {
                let det = &rules[v.rule as usize].detection;
                self.prefilter
                    .then(|| event_ids::event_ids(det, &v.fields, event_id))
                    .flatten()
            })
            .collect();
        let routes = Routes::build(&variants, &triggers, &detected_ids, channel, event_id);
        RuleSet::assemble(
            Parts {
                rules: RuleStore::compiled(rules),
                variants,
                field_names: c.names,
                channel,
                event_id,
                warnings,
                unmapped,
                aggregating,
            },
            routes,
        )
    }
}

/// Each variant's trigger (`None` for all when the prefilter is off).
fn triggers(
    rules: &[Rule],
    variants: &[Variant],
    prefilter: bool,
    routing: [u32; 2],
) -> Vec<Option<Vec<Atom>>> {
    crate::bucket::par_map(variants, 64, |v| {
        if !prefilter {
            return None;
        }
        let det = &rules[v.rule as usize].detection;
        cond_trigger(&det.cond, det, &v.fields, routing)
    })
}

/// What a rule set is made of before its routes and automata are built:
/// what [`RuleSetBuilder::finish`] works out from the rules, and what a
/// snapshot keeps.
#[derive(serde::Serialize, serde::Deserialize)]
struct Parts {
    rules: RuleStore,
    /// Grouped by rule, in rule order.
    #[serde(with = "snapshot::chunked")]
    variants: Vec<Variant>,
    field_names: Vec<String>,
    channel: u32,
    event_id: u32,
    warnings: Vec<RuleError>,
    unmapped: Vec<usize>,
    /// Rules with a legacy aggregation.
    aggregating: Vec<u32>,
}

/// [`Parts`] borrowed from a rule set, written exactly as `Parts` is (the
/// same fields in the same order), so that taking a snapshot copies
/// nothing.
#[derive(serde::Serialize)]
struct PartsRef<'a> {
    rules: &'a RuleStore,
    #[serde(with = "snapshot::chunked")]
    variants: &'a [Variant],
    field_names: &'a [String],
    channel: u32,
    event_id: u32,
    warnings: &'a [RuleError],
    unmapped: &'a [usize],
    aggregating: &'a [u32],
}

impl RuleSet {
    /// The rule set of `parts` with its routes.
    fn assemble(parts: Parts, routes: Routes) -> RuleSet {
        let Parts {
            rules,
            variants,
            field_names,
            channel,
            event_id,
            warnings,
            unmapped,
            aggregating,
        } = parts;
        let fields = field_names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i as u32))
            .collect();
        // Scratches key their caches by set: by a number never reused,
        // since a new set can be allocated where a dropped one was.
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        RuleSet {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                variant_starts: variant_starts(&variants, rules.len()),
                rules,
                variants,
                fields,
                field_names,
                routes,
                channel,
                event_id,
                warnings,
                unmapped,
                aggregating,
            }),
        }
    }
}

/// A warning for each rule whose id an earlier rule of the set already
/// has: both run, so each match is reported twice (a copy of a rule kept
/// beside the original, say), which the user should know.
fn repeated_ids(rules: &[Rule]) -> Vec<RuleError> {
    let mut first: FxHashMap<&str, &Rule> = FxHashMap::default();
    let mut warnings = Vec::new();
    for rule in rules {
        let Some(id) = rule.id.as_deref() else {
            continue;
        };
        match first.get(id) {
            None => {
                first.insert(id, rule);
            }
            Some(earlier) => {
                let where_ = match &earlier.path {
                    Some(path) => format!("{path}:{}", earlier.line),
                    None => format!("line {}", earlier.line),
                };
                warnings.push(
                    RuleError::new(
                        rule.line,
                        Some("id".into()),
                        format!("{id} is also the id of the rule at {where_}; both run"),
                    )
                    .with_path(rule.path.clone()),
                );
            }
        }
    }
    warnings
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
    fields: FxHashMap<String, u32>,
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
        let conds: Vec<(u32, Vec<Want>)> = conds
            .unwrap_or_default()
            .iter()
            .map(|(f, vals)| {
                (
                    self.field_id(f),
                    vals.iter()
                        .map(|v| Want {
                            text: crate::glob::lower(v),
                            int: v.parse().ok(),
                        })
                        .collect(),
                )
            })
            .collect();
        let (channel, event_id) = (self.field_id("Channel"), self.field_id("EventID"));
        let routed = conds.iter().any(|(f, _)| *f == channel);
        let residual = conds
            .iter()
            .filter(|(f, _)| !routed || (*f != channel && *f != event_id))
            .cloned()
            .collect();
        Variant {
            rule: rule as u32,
            fields,
            conds,
            residual,
            product: r.logsource.product.as_ref().map(|p| p.to_lowercase()),
        }
    }
}

/// A value a log-source condition accepts: lowercase, and as an integer
/// when it is one (worked out once, not per event).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Want {
    text: String,
    int: Option<i64>,
}

/// One way a rule can apply: the rule under one log-source mapping entry.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Variant {
    rule: u32,
    /// The detection's local field index → global field id.
    fields: Vec<u32>,
    /// Event conditions from the mapping: (field, values, any).
    conds: Vec<(u32, Vec<Want>)>,
    /// The conditions routing does not already guarantee: for a variant
    /// routed by channel, all but `Channel` and `EventID`.
    residual: Vec<(u32, Vec<Want>)>,
    /// The rule's product, lowercase.
    product: Option<String>,
}

/// A compiled, immutable rule set. Cheap to clone (an `Arc` inside), and
/// `Send + Sync`: share one across threads, each with its own [`Scratch`].
#[derive(Debug, Clone)]
pub struct RuleSet {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Unique among the sets of this process.
    id: usize,
    rules: RuleStore,
    /// Grouped by rule, in rule order.
    variants: Vec<Variant>,
    /// Per rule, where its variants start in `variants` (one more entry
    /// than rules, for the end).
    variant_starts: Vec<u32>,
    fields: FxHashMap<String, u32>,
    field_names: Vec<String>,
    routes: Routes,
    channel: u32,
    event_id: u32,
    warnings: Vec<RuleError>,
    /// Rules of [`RuleSet::unmapped`].
    unmapped: Vec<usize>,
    /// Rules with a legacy aggregation.
    aggregating: Vec<u32>,
}

/// A rule that matched an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Match {
    /// Index of the rule in the set ([`RuleSet::rule`]).
    pub rule: usize,
}

/// Routing: channel and event ID to bucket, and the generic buckets.
#[derive(Debug, Default)]
struct Routes {
    /// Lowercase channel → its buckets.
    channels: FxHashMap<String, ChannelRoute>,
    /// Generic variants (no channel condition) by event product
    /// (lowercase): an event of a known product gets only the rules of
    /// that product (a `webserver` rule without product does not run on
    /// EVTX records); the key "" holds every generic variant, for events
    /// of unknown product.
    generic: FxHashMap<String, Bucket>,
    /// How many prefilter patterns all buckets hold.
    patterns: usize,
}

#[derive(Debug, Default)]
struct ChannelRoute {
    /// Variants for one event ID.
    by_event_id: FxHashMap<i64, Bucket>,
    /// Variants for any event ID of the channel (their rules check the ID
    /// themselves, if at all). Kept apart rather than copied into every
    /// event-ID bucket, so each literal is compiled once.
    any: Bucket,
}

/// A channel's variants while routes are built: by event ID, and those for
/// any event ID.
type ChannelVariants = (FxHashMap<i64, Vec<u32>>, Vec<u32>);

/// A channel's buckets in a fixed order: the channel, its variants by
/// event ID (sorted by ID), its variants for any event ID.
type ChannelBuckets = (String, Vec<(i64, Vec<u32>)>, Vec<u32>);

impl Routes {
    /// Every bucket.
    fn all_buckets(&self) -> impl Iterator<Item = &Bucket> {
        self.channels
            .values()
            .flat_map(|c| c.by_event_id.values().chain([&c.any]))
            .chain(self.generic.values())
    }

    /// The routes of `variants`; `detected_ids` are the event IDs each
    /// variant's detection allows (routing uses them when the mapping
    /// does not route by ID).
    fn build(
        variants: &[Variant],
        triggers: &[Option<Vec<Atom>>],
        detected_ids: &[Option<Vec<i64>>],
        channel: u32,
        event_id: u32,
    ) -> Routes {
        // channel → (event id → variants, variants for any event id)
        let mut by_channel: FxHashMap<String, ChannelVariants> = FxHashMap::default();
        let mut generic: Vec<u32> = Vec::new();
        for (vi, v) in variants.iter().enumerate() {
            let vi = vi as u32;
            let chans = v
                .conds
                .iter()
                .find(|(f, _)| *f == channel)
                .map(|(_, vals)| vals);
            let eids = v
                .conds
                .iter()
                .find(|(f, _)| *f == event_id)
                .and_then(|(_, vals)| vals.iter().map(|x| x.int).collect::<Option<Vec<i64>>>())
                .or_else(|| detected_ids[vi as usize].clone());
            let Some(chans) = chans else {
                generic.push(vi);
                continue;
            };
            for ch in chans {
                let (by_id, any) = by_channel.entry(ch.text.clone()).or_default();
                match &eids {
                    Some(ids) => ids
                        .iter()
                        .for_each(|id| by_id.entry(*id).or_default().push(vi)),
                    _ => any.push(vi),
                }
            }
        }
        // Every bucket's variants, in a fixed order: pattern numbers must
        // not depend on threads.
        let mut channel_ids: Vec<ChannelBuckets> = by_channel
            .into_iter()
            .map(|(ch, (by_id, any))| {
                let mut ids: Vec<(i64, Vec<u32>)> = by_id
                    .into_iter()
                    .map(|(id, mut ids)| {
                        ids.sort_unstable();
                        ids.dedup();
                        (id, ids)
                    })
                    .collect();
                ids.sort_by_key(|(id, _)| *id);
                (ch, ids, any)
            })
            .collect();
        channel_ids.sort_by(|a, b| a.0.cmp(&b.0));
        let mut products: Vec<&str> = generic
            .iter()
            .filter_map(|&v| variants[v as usize].product.as_deref())
            .collect();
        products.sort_unstable();
        products.dedup();
        let mut generic_ids: Vec<(String, Vec<u32>)> = products
            .into_iter()
            .map(|p| {
                let ids = generic
                    .iter()
                    .copied()
                    .filter(|&v| variants[v as usize].product.as_deref() == Some(p))
                    .collect();
                (p.to_string(), ids)
            })
            .collect();
        generic_ids.push((String::new(), generic));
        let buckets: Vec<&[u32]> = channel_ids
            .iter()
            .flat_map(|(_, ids, any)| ids.iter().map(|(_, v)| &v[..]).chain([&any[..]]))
            .chain(generic_ids.iter().map(|(_, v)| &v[..]))
            .collect();
        // Planning and finishing each bucket are independent per bucket:
        // both on every core. The automata are built when first used.
        let plans = crate::bucket::par_map(&buckets, 8, |ids| BucketPlan::new(ids, triggers));
        let automata = lazy_automata(plans.iter().flat_map(|p| p.literal_sets()));
        let mut next = 0u32;
        let mut finished = Vec::with_capacity(plans.len());
        for (mut bucket, patterns) in
            crate::bucket::par_map_owned(plans, 8, |p| p.finish(&automata))
        {
            bucket.number_from(next);
            next += patterns;
            finished.push(bucket);
        }
        let mut finished = finished.into_iter();
        let mut channels = FxHashMap::default();
        for (ch, ids, _) in channel_ids {
            let mut route = ChannelRoute::default();
            for (id, _) in ids {
                route
                    .by_event_id
                    .insert(id, finished.next().expect("a bucket per plan"));
            }
            route.any = finished.next().expect("a bucket per plan");
            channels.insert(ch, route);
        }
        let mut generic_buckets = FxHashMap::default();
        for (p, _) in generic_ids {
            generic_buckets.insert(p, finished.next().expect("a bucket per plan"));
        }
        Routes {
            channels,
            generic: generic_buckets,
            patterns: next as usize,
        }
    }
}

impl RuleSet {
    /// The rules, in the order of [`Match::rule`]. A set loaded from a
    /// snapshot decodes each rule when first asked for it
    /// ([`RuleSet::rule`]): going through all of them decodes them all.
    pub fn rules(&self) -> impl ExactSizeIterator<Item = &Rule> + '_ {
        (0..self.len()).map(|i| self.rule(i))
    }

    /// One rule.
    ///
    /// # Panics
    /// If `i` is not a rule index of this set.
    pub fn rule(&self, i: usize) -> &Rule {
        self.inner.rule(i)
    }

    /// Rules with a legacy aggregation (`| count() by …`), which feed a
    /// correlation rather than reporting matches of their own.
    pub fn aggregating(&self) -> impl Iterator<Item = usize> + '_ {
        self.inner.aggregating.iter().map(|&i| i as usize)
    }

    /// How many rules of a set loaded from a snapshot could not be
    /// decoded so far (each then matches nothing). Always 0 for a snapshot
    /// this build wrote and a checksum vouched for; a caller that finds
    /// otherwise should say so and compile the rules again.
    pub fn unreadable(&self) -> usize {
        self.inner.rules.unreadable()
    }

    /// How many rules the set holds.
    pub fn len(&self) -> usize {
        self.inner.rules.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.inner.rules.len() == 0
    }

    /// Problems that did not stop a rule or the set from loading: a
    /// filter that names no loaded rule, and each rule's own
    /// ([`Rule::warnings`]).
    pub fn warnings(&self) -> &[RuleError] {
        &self.inner.warnings
    }

    /// Rules whose log source names a category or service the mapping has
    /// no entry for, while it maps others of the same product (Windows
    /// `file_access`, which comes from ETW, not from any event log): they
    /// are evaluated against every event of their product. Worth telling
    /// the user, who may want to map them (or leave them out).
    pub fn unmapped(&self) -> impl Iterator<Item = &Rule> + '_ {
        self.inner.unmapped.iter().map(|&i| self.rule(i))
    }

    /// How many of the distinct prefilter automata have been built, and
    /// how many there are.
    #[cfg(test)]
    fn automata_built(&self) -> (usize, usize) {
        crate::bucket::automata_built(self.inner.routes.all_buckets())
    }

    fn prepare(&self, event: &Event, s: &mut Scratch) {
        let inner = &*self.inner;
        s.prepare(
            event,
            inner.id,
            &inner.fields,
            inner.field_names.len(),
            (
                inner.routes.patterns,
                inner.variants.len(),
                inner.rules.len(),
            ),
        );
    }

    /// The rules that match `event`, in rule order without duplicates.
    ///
    /// The returned slice lives in `scratch` and is overwritten by the
    /// next call. Evaluation never fails: event content cannot make it
    /// error or panic.
    pub fn matches<'s>(&self, event: &Event, scratch: &'s mut Scratch) -> &'s [Match] {
        self.prepare(event, scratch);
        let inner = &*self.inner;
        scratch.candidates.clear();
        let (route, event_id, more_ids) = {
            let view = View { event, s: scratch };
            let route = view
                .first(inner.channel)
                .and_then(|c| inner.routes.channels.get(c.lower));
            let slot = view.slot(inner.event_id);
            let id = view.first(inner.event_id).and_then(|s| s.value.as_i64());
            // A rule matches when any value of a list does: an event with
            // several IDs (rare) takes the buckets of all of them.
            let more: Vec<i64> = if slot.len > 1 {
                view.scalars_of(slot)
                    .skip(1)
                    .filter_map(|s| s.value.as_i64())
                    .collect()
            } else {
                Vec::new()
            };
            (route, id, more)
        };
        if let Some(route) = route {
            for id in event_id.iter().chain(&more_ids) {
                if let Some(bucket) = route.by_event_id.get(id) {
                    bucket.candidates(scratch);
                }
            }
            route.any.candidates(scratch);
        }
        let product = event.meta.product.as_deref();
        if let Some(generic) = inner.routes.generic.get(product.unwrap_or("")) {
            generic.candidates(scratch);
        }

        let mut matches = std::mem::take(&mut scratch.matches);
        matches.clear();
        let candidates = std::mem::take(&mut scratch.candidates);
        let epoch = scratch.epoch;
        let mut evaluated = 0;
        for &vi in &candidates {
            let v = &inner.variants[vi as usize];
            if scratch.rule_seen[v.rule as usize] == epoch {
                continue;
            }
            if let (Some(want), Some(have)) = (&v.product, product) {
                if !want.eq_ignore_ascii_case(have) {
                    continue;
                }
            }
            let view = View { event, s: scratch };
            if !residual_hold(v, &view) {
                continue;
            }
            let rule = inner.rule(v.rule as usize);
            evaluated += 1;
            if eval_detection(&rule.detection, &v.fields, &view) {
                scratch.rule_seen[v.rule as usize] = epoch;
                matches.push(Match {
                    rule: v.rule as usize,
                });
            }
        }
        scratch.candidates = candidates;
        scratch.evaluated += evaluated;
        matches.sort_unstable();
        scratch.matches = matches;
        &scratch.matches
    }

    /// The event fields that made rule `rule` match `event`: the fields of
    /// every item in every selection group that matched (keyword matches
    /// name no field). Empty when the rule does not match. Costs one
    /// evaluation; meant for reporting a detection, not for the hot path.
    pub fn matched_fields(&self, rule: usize, event: &Event) -> Vec<String> {
        // A scratch per thread: a fresh one would allocate and zero the
        // per-pattern stamps (hundreds of KiB with every SigmaHQ rule) for
        // every detection reported.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
        }
        SCRATCH.with(|s| self.matched_fields_in(rule, event, &mut s.borrow_mut()))
    }

    fn matched_fields_in(&self, rule: usize, event: &Event, s: &mut Scratch) -> Vec<String> {
        self.prepare(event, s);
        self.matched_fields_prepared(rule, event, s)
    }

    /// [`RuleSet::matched_fields`] right after [`RuleSet::matches`] with
    /// the same event and scratch: the event is still prepared there, so
    /// this skips preparing it again (most of the cost).
    ///
    /// The result is meaningless if `scratch` was last used for another
    /// event or another rule set.
    pub fn matched_fields_prepared(&self, rule: usize, event: &Event, s: &Scratch) -> Vec<String> {
        if s.owner() != self.inner.id {
            return Vec::new();
        }
        let inner = &*self.inner;
        let view = View { event, s };
        let mut out: Vec<String> = Vec::new();
        let det = &inner.rule(rule).detection;
        for v in inner.variants_of(rule) {
            if !conds_hold(v, &view) || !eval_detection(det, &v.fields, &view) {
                continue;
            }
            for sel in &det.selections {
                for group in &sel.groups {
                    if !group.iter().all(|item| eval_item(item, &v.fields, &view)) {
                        continue;
                    }
                    for item in group {
                        if let Some(l) = item.field {
                            let name = &inner.field_names[v.fields[l] as usize];
                            if view.slot(v.fields[l]).state == SlotState::Present
                                && !out.contains(name)
                            {
                                out.push(name.clone());
                            }
                        }
                    }
                }
            }
            break;
        }
        out
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
        let r = inner.rule(rule);
        let variants: Vec<&Variant> = inner.variants_of(rule).iter().collect();
        if variants.is_empty() {
            let _ = writeln!(out, "  rule has no variant in this set");
        }
        let view = View { event, s: &s };
        for v in variants {
            let conds: Vec<String> = v
                .conds
                .iter()
                .map(|(f, vals)| {
                    let vals: Vec<&str> = vals.iter().map(|w| w.text.as_str()).collect();
                    format!("{}={}", inner.field_names[*f as usize], vals.join("|"))
                })
                .collect();
            let holds = conds_hold(v, &view);
            let _ = writeln!(
                out,
                "  log source [{}]: {}",
                if conds.is_empty() {
                    "any event".to_string()
                } else {
                    conds.join(", ")
                },
                if holds { "applies" } else { "does not apply" }
            );
            if !holds {
                continue;
            }
            let det = &r.detection;
            for (i, sel) in det.selections.iter().enumerate() {
                let ok = eval_selection(sel, &v.fields, &view);
                let _ = writeln!(
                    out,
                    "    selection {}: {}",
                    det.names[i],
                    if ok { "matched" } else { "not matched" }
                );
                for group in &sel.groups {
                    for item in group {
                        let ok = eval_item(item, &v.fields, &view);
                        let (name, value) = match item.field {
                            Some(l) => {
                                let fid = v.fields[l];
                                let slot = view.slot(fid);
                                let vals: Vec<String> =
                                    view.scalars_of(slot).map(|s| s.text.to_string()).collect();
                                let shown = match slot.state {
                                    SlotState::Absent => "(absent)".to_string(),
                                    SlotState::Null => "(null)".to_string(),
                                    SlotState::Present => vals.join(" | "),
                                };
                                (inner.field_names[fid as usize].clone(), shown)
                            }
                            None => ("(keywords)".to_string(), String::new()),
                        };
                        let _ = writeln!(
                            out,
                            "      {} {name} = {value:?}",
                            if ok { "ok  " } else { "FAIL" }
                        );
                    }
                }
            }
            let ok = eval_detection(det, &v.fields, &view);
            let _ = writeln!(out, "    condition: {}", if ok { "true" } else { "false" });
        }
        out
    }
}

impl Inner {
    /// Rule `i`, decoded and checked against its variants now if it was
    /// stored.
    fn rule(&self, i: usize) -> &Rule {
        self.rules
            .get(i, |rule| snapshot::rule_fits(rule, self.variants_of(i)))
    }

    /// The variants of rule `rule`.
    fn variants_of(&self, rule: usize) -> &[Variant] {
        let (a, b) = (self.variant_starts[rule], self.variant_starts[rule + 1]);
        &self.variants[a as usize..b as usize]
    }
}

/// Where each rule's variants start in `variants` (grouped by rule, in
/// rule order), and where the last ends.
fn variant_starts(variants: &[Variant], rules: usize) -> Vec<u32> {
    debug_assert!(variants.windows(2).all(|w| w[0].rule <= w[1].rule));
    let mut starts = Vec::with_capacity(rules + 1);
    let mut next = 0;
    for r in 0..=rules {
        while next < variants.len() && (variants[next].rule as usize) < r {
            next += 1;
        }
        starts.push(next as u32);
    }
    starts
}

/// Whether the mapping entry's event conditions hold.
fn conds_hold(v: &Variant, view: &View<'_>) -> bool {
    all_hold(&v.conds, view)
}

/// Whether the conditions that routing left to check hold.
fn residual_hold(v: &Variant, view: &View<'_>) -> bool {
    all_hold(&v.residual, view)
}

fn all_hold(conds: &[(u32, Vec<Want>)], view: &View<'_>) -> bool {
    conds.iter().all(|(fid, values)| {
        let slot = view.slot(*fid);
        view.scalars_of(slot).any(|sc| {
            let int = sc.value.as_i64();
            values
                .iter()
                .any(|want| sc.lower == want.text || (want.int.is_some() && want.int == int))
        })
    })
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

    /// Two rules with one id both run, and the set warns of the second,
    /// naming where the first is.
    #[test]
    fn a_repeated_rule_id_is_a_warning() {
        let rule = "title: t\nid: r1\nlogsource: {product: windows}\ndetection:\n  sel: {CommandLine|contains: whoami}\n  condition: sel\n";
        let other = rule.replace("id: r1", "id: r2");
        let mut b = RuleSetBuilder::new();
        for (path, text) in [("a.yml", rule), ("b.yml", rule), ("c.yml", other.as_str())] {
            let (docs, errs) = parse_file(Some(path.into()), text, &Placeholders::new());
            assert!(errs.is_empty(), "{errs:?}");
            b.add_documents(docs);
        }
        let set = b.build();
        assert_eq!(set.len(), 3);
        let warnings: Vec<String> = set.warnings().iter().map(|w| w.to_string()).collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("b.yml"), "{warnings:?}");
        assert!(
            warnings[0].contains("id: r1 is also the id of the rule at a.yml:1; both run"),
            "{warnings:?}"
        );
        let mut e = Event::new();
        e.push("CommandLine", "whoami /all");
        assert_eq!(set.matches(&e, &mut Scratch::default()).len(), 3);
    }

    /// The prefilter keys on the rarest literal, not on the event ID the
    /// event was routed by: an event without the literal costs no
    /// evaluation.
    #[test]
    fn trigger_avoids_routing_fields() {
        let mut e = Event::new();
        e.push("Channel", "Security");
        e.push("EventID", 5145);
        e.push("ShareName", "\\\\*\\IPC$");
        e.push("RelativeTargetName", "srvsvc");
        assert_triggered_by(
            "title: t\nid: a\nlogsource: {product: windows, service: security}\ndetection:\n  sel:\n    EventID: 5145\n    ShareName|contains: 'IPC'\n    RelativeTargetName: 'protected_storage'\n  condition: sel\n",
            e,
            ("RelativeTargetName", "protected_storage"),
        );
    }

    /// `rule` costs no evaluation on `e`, which lacks its trigger, and
    /// one, a match, once `field` is set to `value`.
    fn assert_triggered_by(rule: &str, mut e: Event, (field, value): (&str, &str)) {
        let s = set(&[rule]);
        let mut scratch = Scratch::default();
        assert!(s.matches(&e, &mut scratch).is_empty());
        assert_eq!(scratch.evaluations(), 0);
        e.set(field, value);
        assert_eq!(s.matches(&e, &mut scratch).len(), 1);
        assert_eq!(scratch.evaluations(), 1);
    }

    /// A literal within text most events carry (`Microsoft Corporation`)
    /// is not the trigger when the rule has a rarer one, even a shorter
    /// one: an event with only the common text costs no evaluation.
    #[test]
    fn trigger_avoids_common_text() {
        let mut e = Event::new();
        e.push("Channel", "Microsoft-Windows-Sysmon/Operational");
        e.push("EventID", 1);
        e.push("Company", "Microsoft Corporation");
        e.push("Image", "C:\\Windows\\System32\\cmd.exe");
        assert_triggered_by(
            "title: t\nid: a\nlogsource: {product: windows, category: process_creation}\ndetection:\n  img:\n    Image|endswith: '\\csi.exe'\n  company:\n    Company: 'Microsoft Corporation'\n  condition: img and company\n",
            e,
            ("Image", "C:\\tools\\csi.exe"),
        );
    }

    /// An automaton is built when an event first needs it: an event of
    /// one channel builds that channel's automaton and no other.
    #[test]
    fn automata_are_built_on_first_use() {
        let rule = |id: usize, service: &str| {
            format!("title: r{id}\nid: r{id}\nlogsource: {{product: windows, service: {service}}}\ndetection:\n  sel:\n    Data|contains: 'needle{id}'\n  condition: sel\n")
        };
        // More rules per channel than a scan queues on any hit, so that
        // each channel's scan searches with its automaton.
        let rules: Vec<String> = (0..6)
            .map(|i| rule(i, "security"))
            .chain((6..12).map(|i| rule(i, "system")))
            .collect();
        let s = set(&rules.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(s.automata_built(), (0, 2));
        let mut scratch = Scratch::default();
        let mut e = Event::new();
        e.push("Channel", "Security");
        e.push("Data", "a needle3 here");
        let hits: Vec<_> = s.matches(&e, &mut scratch).iter().map(|m| m.rule).collect();
        assert_eq!(hits, vec![3]);
        assert_eq!(s.automata_built(), (1, 2));
        e.set("Channel", "System");
        e.set("Data", "needle7");
        let hits: Vec<_> = s.matches(&e, &mut scratch).iter().map(|m| m.rule).collect();
        assert_eq!(hits, vec![7]);
        assert_eq!(s.automata_built(), (2, 2));
    }

    /// A Windows category the mapping has no entry for is reported; mapped
    /// ones, product-only ones and products mapped by file only are not.
    #[test]
    fn unmapped_log_sources_are_reported() {
        let rule = |id: &str, ls: &str| {
            format!("title: {id}\nid: {id}\nlogsource: {ls}\ndetection:\n  sel:\n    a: b\n  condition: sel\n")
        };
        let rules = [
            rule("etw", "{product: windows, category: file_access}"),
            rule("sysmon", "{product: windows, category: process_creation}"),
            rule("any", "{product: windows}"),
            rule("lin", "{product: linux, category: process_creation}"),
        ];
        let s = set(&rules.iter().map(String::as_str).collect::<Vec<_>>());
        let ids: Vec<_> = s.unmapped().map(|r| r.id.as_deref().unwrap()).collect();
        assert_eq!(ids, vec!["etw"]);
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
    fn matched_fields_name_the_event_fields() {
        let s = set(&["title: t\nid: a\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel: {Image|endswith: '\\\\x.exe', CommandLine|contains: '-enc'}\n  other: {User: bob}\n  condition: sel or other\n"]);
        let mut e = Event::new();
        e.push("Channel", "Security");
        e.push("EventID", 4688);
        e.push("NewProcessName", "C:\\x.exe");
        e.push("CommandLine", "x -enc AAA");
        e.push("User", "alice");
        assert_eq!(
            s.matched_fields(0, &e),
            vec!["NewProcessName", "CommandLine"]
        );
        e.set("CommandLine", "nothing");
        assert!(s.matched_fields(0, &e).is_empty());
        // Right after matching, from the same scratch; a scratch prepared
        // by another set yields nothing rather than garbage.
        e.set("CommandLine", "x -enc AAA");
        let mut scratch = Scratch::default();
        assert_eq!(s.matches(&e, &mut scratch).len(), 1);
        assert_eq!(
            s.matched_fields_prepared(0, &e, &scratch),
            vec!["NewProcessName", "CommandLine"]
        );
        let other = set(&["title: u\nid: b\nlogsource: {product: windows}\ndetection:\n  sel: {User: bob}\n  condition: sel\n"]);
        other.matches(&e, &mut scratch);
        assert!(s.matched_fields_prepared(0, &e, &scratch).is_empty());
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
