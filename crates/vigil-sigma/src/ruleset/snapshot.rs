//! A compiled rule set in a form that can be stored and loaded again
//! without parsing or compiling a single rule.
//!
//! Loading SigmaHQ's 2,407 Windows rules costs about 80 ms of CPU: reading
//! and parsing thousands of small YAML files, compiling every value,
//! working out each variant's trigger. A hunt over one host's logs takes
//! less than that. A snapshot keeps the result of all that work — the
//! rules with their compiled values, the variants, the field dictionary,
//! and the routes the triggers were grouped into, with their buckets
//! (`bucket/stored.rs`) — so that a cache (the caller's business: this
//! crate does no I/O) can skip it. The triggers themselves are not kept:
//! only building the routes needs them. It also holds the automata of
//! the large literal sets ([`crate::automaton`]), the costliest to build.
//! Each rule is stored as its own byte string and decoded when first used
//! (`rule_store.rs`): a hunt evaluates a fraction of the rules. The small
//! literal sets' automata, which `aho-corasick` cannot serialize, are
//! built when first used, and regular expressions are compiled again from
//! their text, each when first used ([`crate::pattern::RuleRegex`]).
//!
//! Invariant: a rule set loaded from a snapshot evaluates every event
//! exactly as the set the snapshot was taken of (tested below and in the
//! hunt's tests).
//!
//! A snapshot is trusted input: it is meant to be read back by the program
//! that wrote it, behind a checksum. Its indices are checked on load, so a
//! damaged one gives an error rather than a panic in the cheap cases, but
//! not every invariant of every compiled value is re-verified.

use super::{ChannelRoute, Parts, PartsRef, Routes, RuleSet, Variant};
use crate::bucket::{load_automata, AutomataWriter, Bounds, Bucket, StoredAutomaton, StoredBucket};
use crate::rule::Rule;
use rustc_hash::FxHashMap;

/// The snapshot layout's version. Bump it whenever a type a snapshot
/// holds changes shape; a cache keys its entries on it (postcard is not
/// self-describing, so a stale layout might otherwise decode as garbage).
pub const SNAPSHOT_FORMAT: u32 = 8;

/// A compiled rule set, ready to serialize (with serde: the cache uses
/// postcard) and to load back with [`RuleSet::from_snapshot`].
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RuleSetSnapshot {
    parts: Parts,
    routes: StoredRoutes,
}

/// A snapshot borrowed from a rule set, for writing: it serializes to
/// exactly the bytes a [`RuleSetSnapshot`] is read from, without copying
/// the rules first.
#[derive(serde::Serialize)]
pub struct RuleSetSnapshotRef<'a> {
    parts: PartsRef<'a>,
    routes: StoredRoutes,
}

/// The routes as a snapshot stores them: each distinct automaton once,
/// channels and event ids in order.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredRoutes {
    automata: Vec<StoredAutomaton>,
    channels: Vec<StoredChannel>,
    generic: Vec<(String, StoredBucket)>,
    patterns: u32,
}

/// A channel's buckets: by event id, and for any event id.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredChannel {
    name: String,
    by_event_id: Vec<(i64, StoredBucket)>,
    any: StoredBucket,
}

/// Why a snapshot could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("rule-set snapshot is inconsistent: {0}")]
pub struct SnapshotError(String);

impl RuleSet {
    /// A snapshot of this rule set, to serialize. Its large automata are
    /// built now if they are not yet.
    pub fn snapshot(&self) -> RuleSetSnapshotRef<'_> {
        let inner = &*self.inner;
        RuleSetSnapshotRef {
            parts: PartsRef {
                rules: &inner.rules,
                variants: &inner.variants,
                field_names: &inner.field_names,
                channel: inner.channel,
                event_id: inner.event_id,
                warnings: &inner.warnings,
                unmapped: &inner.unmapped,
                aggregating: &inner.aggregating,
            },
            routes: inner.routes.stored(),
        }
    }

    /// The rule set a snapshot was taken of.
    ///
    /// # Errors
    /// When an index in the snapshot points nowhere (a damaged snapshot).
    pub fn from_snapshot(snapshot: RuleSetSnapshot) -> Result<RuleSet, SnapshotError> {
        check(&snapshot)?;
        let RuleSetSnapshot { parts, routes } = snapshot;
        let bounds = Bounds {
            fields: parts.field_names.len() as u32,
            variants: parts.variants.len() as u32,
            patterns: routes.patterns,
        };
        let routes = Routes::load(routes, &bounds).map_err(SnapshotError)?;
        Ok(RuleSet::assemble(parts, routes))
    }
}

impl Routes {
    fn stored(&self) -> StoredRoutes {
        let mut automata = AutomataWriter::default();
        let mut channels: Vec<_> = self.channels.iter().collect();
        channels.sort_by(|a, b| a.0.cmp(b.0));
        let channels = channels
            .into_iter()
            .map(|(name, route)| {
                let mut ids: Vec<_> = route.by_event_id.iter().collect();
                ids.sort_by_key(|(id, _)| **id);
                let by_event_id = ids
                    .into_iter()
                    .map(|(id, b)| (*id, automata.bucket(b)))
                    .collect();
                StoredChannel {
                    name: name.clone(),
                    by_event_id,
                    any: automata.bucket(&route.any),
                }
            })
            .collect();
        let mut generic: Vec<_> = self.generic.iter().collect();
        generic.sort_by(|a, b| a.0.cmp(b.0));
        let generic = generic
            .into_iter()
            .map(|(p, b)| (p.clone(), automata.bucket(b)))
            .collect();
        StoredRoutes {
            automata: automata.finish(),
            channels,
            generic,
            patterns: self.patterns as u32,
        }
    }

    fn load(s: StoredRoutes, bounds: &Bounds) -> Result<Routes, String> {
        let automata = load_automata(s.automata)?;
        let mut channels = FxHashMap::default();
        for c in s.channels {
            let mut route = ChannelRoute {
                by_event_id: FxHashMap::default(),
                any: c.any.load(&automata, bounds)?,
            };
            for (id, bucket) in c.by_event_id {
                route
                    .by_event_id
                    .insert(id, bucket.load(&automata, bounds)?);
            }
            channels.insert(c.name, route);
        }
        let mut generic = FxHashMap::default();
        for (product, bucket) in s.generic {
            generic.insert(product, bucket.load(&automata, bounds)?);
        }
        let routes = Routes {
            channels,
            generic,
            patterns: s.patterns as usize,
        };
        // Every pattern numbered once, and no more counted than there are:
        // each event's scratch holds a stamp per pattern.
        let numbered: usize = routes.all_buckets().map(Bucket::pattern_count).sum();
        if numbered != routes.patterns {
            return Err("the routes' pattern count".into());
        }
        Ok(routes)
    }
}

/// The indices that evaluation follows without bounds checks of its own,
/// but for those within rules: rules are decoded when first used, and
/// checked then ([`rule_fits`]).
fn check(s: &RuleSetSnapshot) -> Result<(), SnapshotError> {
    let p = &s.parts;
    let fields = p.field_names.len() as u32;
    let rules = p.rules.len();
    let bad = |what: &str| Err(SnapshotError(what.to_string()));
    if p.channel >= fields || p.event_id >= fields {
        return bad("routing fields");
    }
    if p.unmapped.iter().any(|&r| r >= rules) || p.aggregating.iter().any(|&r| r as usize >= rules)
    {
        return bad("rule index");
    }
    let mut last_rule = 0;
    for v in &p.variants {
        if v.rule as usize >= rules {
            return bad("variant's rule index");
        }
        if v.rule < last_rule {
            return bad("variants out of rule order");
        }
        last_rule = v.rule;
        if v.fields.iter().any(|&f| f >= fields) {
            return bad("variant's field ids");
        }
        let conds = v.conds.iter().chain(&v.residual);
        if conds.map(|(f, _)| *f).any(|f| f >= fields) {
            return bad("variant's condition fields");
        }
    }
    Ok(())
}

/// Whether a rule decoded from a snapshot is consistent in itself and
/// with its variants: the indices its evaluation follows point somewhere.
pub(super) fn rule_fits(rule: &Rule, variants: &[Variant]) -> bool {
    let d = &rule.detection;
    if d.names.len() != d.selections.len() || !d.cond.selections_below(d.selections.len()) {
        return false;
    }
    if variants.iter().any(|v| v.fields.len() != d.fields.len()) {
        return false;
    }
    d.selections
        .iter()
        .flat_map(|s| s.groups.iter().flatten())
        .all(|item| {
            let refs = item.values.patterns.iter().filter_map(|p| match p {
                crate::pattern::Pattern::FieldRef { local, .. } => Some(*local),
                _ => None,
            });
            item.values.value_of.len() == item.values.patterns.len()
                && item
                    .field
                    .into_iter()
                    .chain(refs)
                    .all(|f| f < d.fields.len())
        })
}

/// Serde for a long list decoded on every core: it is written as a few
/// independently encoded chunks (postcard), and the chunks are decoded in
/// parallel (the variants of thousands of rules).
pub(crate) mod chunked {
    use crate::byte_string::Bytes;
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Chunks per list: enough for the cores of a large machine, few
    /// enough that each is worth a thread.
    const CHUNKS: usize = 16;

    pub fn serialize<T: Serialize, S: Serializer>(items: &[T], s: S) -> Result<S::Ok, S::Error> {
        let size = items.len().div_ceil(CHUNKS).max(1);
        let chunks = items
            .chunks(size)
            .map(|c| postcard::to_allocvec(c).map(|b| Bytes(b.into())))
            .collect::<Result<Vec<_>, _>>()
            .map_err(serde::ser::Error::custom)?;
        chunks.serialize(s)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
    where
        T: DeserializeOwned + Send,
        D: Deserializer<'de>,
    {
        let chunks = <Vec<Bytes<'de>>>::deserialize(d)?;
        let decoded = crate::bucket::par_map(&chunks, 1, |c| postcard::from_bytes::<Vec<T>>(&c.0));
        let mut items = Vec::new();
        for part in decoded {
            items.extend(part.map_err(serde::de::Error::custom)?);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::parse_file;
    use crate::{Placeholders, RuleSetBuilder, Scratch};
    use vigil_event::Event;

    const RULES: &str = r#"
title: encoded powershell
id: r1
level: high
logsource: {product: windows, category: process_creation}
detection:
  sel:
    Image|endswith: '\powershell.exe'
    CommandLine|contains|all: [' -enc', 'JAB']
  filter:
    ParentImage|startswith: 'C:\Program Files\'
  condition: sel and not filter
---
title: regex with flags
id: r2
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 4688
    CommandLine|re|i: 'WHOAMI\s+/ALL'
  condition: sel
---
title: keyword and glob
id: r3
logsource: {product: windows}
detection:
  keywords: ['*mimi?atz*']
  sel:
    TargetFilename|contains|windash: '-dump'
  condition: keywords or sel
"#;

    /// A snapshot of `set` as a cache reads it back.
    fn owned(set: &RuleSet) -> RuleSetSnapshot {
        let bytes = postcard::to_allocvec(&set.snapshot()).expect("encode");
        postcard::from_bytes(&bytes).expect("decode")
    }

    fn set() -> RuleSet {
        let (docs, errors) = parse_file(Some("t.yml".into()), RULES, &Placeholders::new());
        assert!(errors.is_empty(), "{errors:?}");
        let mut b = RuleSetBuilder::new();
        b.add_documents(docs);
        b.build()
    }

    fn events() -> Vec<Event> {
        let mut out = Vec::new();
        for parent in [
            r"C:\Windows\explorer.exe",
            r"C:\Program Files\Tool\tool.exe",
        ] {
            let mut e = Event::new();
            e.push("Channel", "Microsoft-Windows-Sysmon/Operational");
            e.push("EventID", "1");
            e.push(
                "Image",
                r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
            );
            e.push("CommandLine", "powershell -enc JABzAD0A");
            e.push("ParentImage", parent);
            out.push(e);
        }
        let mut e = Event::new();
        e.push("Channel", "Security");
        e.push("EventID", "4688");
        e.push("CommandLine", "cmd /c whoami   /all");
        out.push(e);
        let mut e = Event::new();
        e.push("Channel", "Security");
        e.push("EventID", "4663");
        e.push("ObjectName", "c:\\tools\\MIMIKATZ.exe");
        e.push("TargetFilename", "x /dump y");
        out.push(e);
        out
    }

    fn matches(set: &RuleSet) -> Vec<Vec<String>> {
        let mut scratch = Scratch::default();
        events()
            .iter()
            .map(|e| {
                let mut ids: Vec<String> = set
                    .matches(e, &mut scratch)
                    .iter()
                    .map(|m| set.rule(m.rule).id.clone().unwrap_or_default())
                    .collect();
                ids.sort();
                ids
            })
            .collect()
    }

    /// A large literal set's automaton is stored in the snapshot and
    /// loaded built, not built again; it matches as the original's does.
    #[test]
    fn large_automata_are_stored_and_loaded_built() {
        let values: Vec<String> = (0..150).map(|i| format!("      - 'tool{i}x'")).collect();
        let rule = format!("title: many\nid: big\nlogsource: {{product: windows, category: process_creation}}\ndetection:\n  sel:\n    CommandLine|contains:\n{}\n  condition: sel\n", values.join("\n"));
        let (docs, errors) = parse_file(None, &rule, &Placeholders::new());
        assert!(errors.is_empty(), "{errors:?}");
        let mut b = RuleSetBuilder::new();
        b.add_documents(docs);
        let original = b.build();
        assert_eq!(original.automata_built(), (0, 1));
        let snapshot = owned(&original);
        assert_eq!(snapshot.routes.automata.len(), 1);
        let loaded = RuleSet::from_snapshot(snapshot).expect("load");
        assert_eq!(loaded.automata_built(), (1, 1));
        let mut scratch = Scratch::default();
        for (text, hit) in [
            ("run TOOL149X now", true),
            ("tool150x", false),
            ("tool7x", true),
        ] {
            let mut e = Event::new();
            e.push("Channel", "Microsoft-Windows-Sysmon/Operational");
            e.push("EventID", 1);
            e.push("CommandLine", text);
            for set in [&original, &loaded] {
                assert_eq!(!set.matches(&e, &mut scratch).is_empty(), hit, "{text}");
            }
        }
    }

    /// A loaded set decodes a rule only when an event gets to it: not to
    /// load, not for the summary's warnings, not for a correlation plan
    /// without correlations.
    #[test]
    fn a_loaded_snapshot_decodes_only_the_rules_events_reach() {
        let loaded = RuleSet::from_snapshot(owned(&set())).expect("load");
        let decoded = |set: &RuleSet| -> Vec<usize> {
            (0..set.len())
                .filter(|&i| set.inner.rules.decoded(i).is_some())
                .collect()
        };
        assert_eq!(decoded(&loaded), Vec::<usize>::new());
        let _ = loaded.warnings();
        let plan = crate::correlation::CorrelationPlan::new(&loaded, Vec::new());
        assert_eq!(plan.per_rule.len(), 3);
        assert_eq!(decoded(&loaded), Vec::<usize>::new());
        // The Security 4688 event reaches the two rules routed to event
        // 4688 (the regex rule by its detection, the process-creation
        // rule by its mapping: their few literals share a scan, which
        // queues both on any hit), not the keyword rule.
        let mut scratch = Scratch::default();
        let hits = loaded.matches(&events()[2], &mut scratch).len();
        assert_eq!(hits, 1);
        assert_eq!(decoded(&loaded), vec![0, 1]);
    }

    #[test]
    fn a_loaded_snapshot_matches_like_the_original() {
        let original = set();
        let bytes = postcard::to_allocvec(&original.snapshot()).expect("encode");
        let decoded: RuleSetSnapshot = postcard::from_bytes(&bytes).expect("decode");
        let loaded = RuleSet::from_snapshot(decoded).expect("load");
        let expected = matches(&original);
        assert_eq!(
            expected,
            vec![
                vec!["r1".to_string()],
                vec![],
                vec!["r2".into()],
                vec!["r3".into()]
            ]
        );
        assert_eq!(matches(&loaded), expected);
        assert_eq!(loaded.len(), original.len());
        // A loaded set written again (its rules as they were
        // read, some rules decoded since) loads as the same set.
        let again = postcard::to_allocvec(&loaded.snapshot()).expect("encode");
        let reloaded =
            RuleSet::from_snapshot(postcard::from_bytes(&again).expect("decode")).expect("load");
        assert_eq!(matches(&reloaded), expected);
        assert_eq!(reloaded.warnings().len(), original.warnings().len());
        assert_eq!(loaded.rule(0).path.as_deref(), Some("t.yml"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Bytes changed anywhere decode to an error or to a rule set that
        /// evaluates events without panicking (the cache's checksum is the
        /// first line of defence; this is the second).
        #[test]
        fn changed_bytes_never_panic(
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), 1u8..=255), 1..4)
        ) {
            let mut bytes = postcard::to_allocvec(&set().snapshot()).expect("encode");
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            if let Ok(snapshot) = postcard::from_bytes::<RuleSetSnapshot>(&bytes) {
                if let Ok(loaded) = RuleSet::from_snapshot(snapshot) {
                    let _ = matches(&loaded);
                }
            }
        }
    }

    /// The rules of a snapshot, decoded.
    fn decoded_rules(snapshot: &RuleSetSnapshot) -> Vec<Rule> {
        let rules = &snapshot.parts.rules;
        (0..rules.len())
            .map(|i| rules.get(i, |_| true).clone())
            .collect()
    }

    /// `rules` as a loaded snapshot holds them: encoded.
    fn stored(rules: Vec<Rule>) -> super::super::RuleStore {
        let bytes =
            postcard::to_allocvec(&super::super::RuleStore::compiled(rules)).expect("encode");
        postcard::from_bytes(&bytes).expect("decode")
    }

    #[test]
    fn a_damaged_snapshot_is_an_error_not_a_panic() {
        let mut snapshot = owned(&set());
        snapshot.parts.variants[0].rule = 99;
        let err = RuleSet::from_snapshot(snapshot).expect_err("refused");
        assert!(err.to_string().contains("variant's rule index"), "{err}");

        // A rule whose indices point nowhere is found out when it is
        // decoded, on first use: it then matches nothing, and is counted.
        let mut snapshot = owned(&set());
        let mut rules = decoded_rules(&snapshot);
        rules[0].detection.selections[0].groups[0][0]
            .values
            .value_of
            .push(7);
        snapshot.parts.rules = stored(rules);
        let loaded = RuleSet::from_snapshot(snapshot).expect("loads");
        assert_eq!(loaded.unreadable(), 0);
        let expected = matches(&set());
        let mut without_r1 = expected.clone();
        without_r1[0].clear();
        assert_eq!(matches(&loaded), without_r1);
        assert_eq!(loaded.unreadable(), 1);

        // A glob without segments is never compiled, but must not panic.
        let mut snapshot = owned(&set());
        let mut rules = decoded_rules(&snapshot);
        for rule in &mut rules {
            for sel in &mut rule.detection.selections {
                for item in sel.groups.iter_mut().flatten() {
                    for p in &mut item.values.patterns {
                        if let crate::pattern::Pattern::Str(sp) = p {
                            sp.matcher = crate::glob::StrMatcher::Glob {
                                segments: Vec::new(),
                                open_start: false,
                                open_end: false,
                            };
                        }
                    }
                }
            }
        }
        snapshot.parts.rules = stored(rules);
        let loaded = RuleSet::from_snapshot(snapshot).expect("loads");
        let _ = matches(&loaded);

        // Routes whose numbers point nowhere.
        for (damage, why) in [
            (
                StoredBucket::damage_automaton_number as fn(&mut StoredBucket),
                "automaton number",
            ),
            (StoredBucket::damage_variant_id, "variant id"),
            (StoredBucket::damage_pattern_numbers, "pattern numbers"),
        ] {
            let mut snapshot = owned(&set());
            let channel = snapshot
                .routes
                .channels
                .iter_mut()
                .find(|c| c.name.contains("sysmon"))
                .expect("the sysmon channel");
            damage(&mut channel.by_event_id[0].1);
            let err = RuleSet::from_snapshot(snapshot).expect_err("refused");
            assert!(err.to_string().contains(why), "{err}");
        }

        // A pattern count no scan accounts for (each event would get a
        // stamp for each).
        let mut snapshot = owned(&set());
        snapshot.routes.patterns = u32::MAX;
        let err = RuleSet::from_snapshot(snapshot).expect_err("refused");
        assert!(err.to_string().contains("pattern count"), "{err}");

        let bytes = postcard::to_allocvec(&set().snapshot()).expect("encode");
        for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
            assert!(postcard::from_bytes::<RuleSetSnapshot>(&bytes[..cut]).is_err());
        }
    }
}
