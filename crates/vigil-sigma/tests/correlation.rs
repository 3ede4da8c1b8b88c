//! Correlation rules: the specification's examples and our own cases, each
//! type with matching and non-matching sequences, boundaries, out-of-order
//! input and chains; and a property test that live (shuffled within the
//! lateness bound) and hunt (sorted) give the same results.

use proptest::prelude::*;
use std::sync::Arc;
use vigil_event::Event;
use vigil_sigma::correlation::{
    split, CorrelationEngine, CorrelationMatch, CorrelationSet, EngineConfig, Input,
};
use vigil_sigma::{
    rule::parse_file, Document, LogSourceMap, Placeholders, RuleSet, RuleSetBuilder, Scratch,
};

const S: i64 = 1_000_000_000;

/// A match without its event references: (correlation, group, value, window).
type Summary = (usize, Vec<(String, String)>, String, (i64, i64));

struct Harness {
    rules: RuleSet,
    set: Arc<CorrelationSet>,
}

fn harness(yaml: &str) -> Harness {
    let (docs, errors) = parse_file(Some("t.yml".into()), yaml, &Placeholders::new());
    assert!(errors.is_empty(), "{errors:?}");
    let (docs, corrs) = split(docs);
    let mut b = RuleSetBuilder::new();
    b.logsources(LogSourceMap::empty());
    b.add_documents(docs);
    let rules = b.finish();
    let ids: Vec<String> = rules
        .rules()
        .flat_map(|r| [r.id.clone(), r.name.clone()])
        .flatten()
        .collect();
    let (set, errors) = CorrelationSet::new(corrs, &|r| ids.iter().any(|i| i == r));
    assert!(errors.is_empty(), "{errors:?}");
    Harness {
        rules,
        set: Arc::new(set),
    }
}

fn ev(fields: &[(&str, &str)]) -> Event {
    let mut e = Event::new();
    for (k, v) in fields {
        e.push(*k, *v);
    }
    e
}

impl Harness {
    fn run(&self, stream: &[(i64, Event)], lateness: i64) -> Vec<CorrelationMatch> {
        let mut engine = CorrelationEngine::new(
            self.set.clone(),
            EngineConfig {
                lateness_ns: lateness,
                ..Default::default()
            },
        );
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        for (i, (ts, e)) in stream.iter().enumerate() {
            let hits: Vec<usize> = self
                .rules
                .matches(e, &mut scratch)
                .iter()
                .map(|m| m.rule)
                .collect();
            for r in hits {
                let rule = self.rules.rule(r);
                let refs: Vec<String> = [rule.id.clone(), rule.name.clone()]
                    .into_iter()
                    .flatten()
                    .collect();
                let event_ref = format!("#{i}");
                out.extend(engine.push(Input {
                    ts_ns: *ts,
                    refs: &refs,
                    event: e,
                    event_ref: &event_ref,
                }));
            }
        }
        out.extend(engine.flush());
        out
    }
}

const FAILED: &str = "title: failed\nid: r-failed\nname: failed_login\nlogsource: {product: windows, service: security}\ndetection:\n  sel: {EventID: 4625}\n  condition: sel\n";
const OK: &str = "title: ok\nid: r-ok\nname: successful_login\nlogsource: {product: windows, service: security}\ndetection:\n  sel: {EventID: 4624}\n  condition: sel\n";

fn login(ok: bool, user: &str, src: &str) -> Event {
    ev(&[
        ("EventID", if ok { "4624" } else { "4625" }),
        ("User", user),
        ("IpAddress", src),
    ])
}

#[test]
fn event_count_threshold_and_boundaries() {
    let h = harness(&format!("title: brute\nid: c1\ncorrelation:\n  type: event_count\n  rules: [failed_login]\n  group-by: [User]\n  timespan: 10s\n  condition: {{gte: 3}}\n---\n{FAILED}"));
    // Three failures exactly 10 s apart from first to last: inside (inclusive).
    let s = vec![
        (0, login(false, "bob", "a")),
        (5 * S, login(false, "bob", "a")),
        (10 * S, login(false, "bob", "a")),
    ];
    let m = h.run(&s, 0);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].value, 3.0);
    assert_eq!(m[0].window, (0, 10 * S));
    assert_eq!(m[0].group, vec![("User".to_string(), "bob".to_string())]);
    assert_eq!(m[0].events, vec!["#0", "#1", "#2"]);
    // One nanosecond wider: the first falls out.
    let s = vec![
        (0, login(false, "bob", "a")),
        (5 * S, login(false, "bob", "a")),
        (10 * S + 1, login(false, "bob", "a")),
    ];
    assert!(h.run(&s, 0).is_empty());
    // Two users never add up.
    let s = vec![
        (0, login(false, "bob", "a")),
        (1, login(false, "eve", "a")),
        (2, login(false, "bob", "a")),
    ];
    assert!(h.run(&s, 0).is_empty());
    // Successes do not count.
    let s = vec![
        (0, login(false, "bob", "a")),
        (1, login(true, "bob", "a")),
        (2, login(false, "bob", "a")),
    ];
    assert!(h.run(&s, 0).is_empty());
}

#[test]
fn event_count_gt_is_strict_and_fires_once_per_burst() {
    let h = harness(&format!("title: brute\nid: c1\ncorrelation:\n  type: event_count\n  rules: [r-failed]\n  group-by: [User]\n  timespan: 1m\n  condition: {{gt: 2}}\n---\n{FAILED}"));
    let s: Vec<_> = (0..2).map(|i| (i * S, login(false, "bob", "a"))).collect();
    assert!(h.run(&s, 0).is_empty(), "2 is not > 2");
    let s: Vec<_> = (0..7).map(|i| (i * S, login(false, "bob", "a"))).collect();
    // 3 → fire, window cleared; 3 more → fire again; the 7th alone does not.
    assert_eq!(h.run(&s, 0).len(), 2);
}

#[test]
fn range_condition() {
    let h = harness(&format!("title: r\nid: c1\ncorrelation:\n  type: event_count\n  rules: [r-failed]\n  group-by: [User]\n  timespan: 1m\n  condition: {{gt: 1, lte: 2}}\n---\n{FAILED}"));
    let s: Vec<_> = (0..2).map(|i| (i * S, login(false, "bob", "a"))).collect();
    let m = h.run(&s, 0);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].value, 2.0);
}

#[test]
fn value_count_spraying() {
    let h = harness(&format!("title: spray\nid: c2\ncorrelation:\n  type: value_count\n  rules: [r-failed]\n  group-by: [IpAddress]\n  timespan: 1h\n  condition: {{field: User, gte: 3}}\n---\n{FAILED}"));
    let same_user: Vec<_> = (0..5)
        .map(|i| (i * S, login(false, "bob", "10.0.0.1")))
        .collect();
    assert!(
        h.run(&same_user, 0).is_empty(),
        "one account many times is not spraying"
    );
    let s = vec![
        (0, login(false, "bob", "10.0.0.1")),
        (S, login(false, "bob", "10.0.0.1")),
        (2 * S, login(false, "eve", "10.0.0.1")),
        (3 * S, login(false, "amy", "10.0.0.2")),
        (4 * S, login(false, "zed", "10.0.0.1")),
    ];
    let m = h.run(&s, 0);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].value, 3.0);
    assert_eq!(m[0].group[0].1, "10.0.0.1");
}

#[test]
fn temporal_any_order_and_ordered() {
    let rules = "title: a\nid: ra\nname: recon_a\nlogsource: {product: x}\ndetection:\n  s: {Cmd: whoami}\n  condition: s\n---\ntitle: b\nid: rb\nname: recon_b\nlogsource: {product: x}\ndetection:\n  s: {Cmd: ipconfig}\n  condition: s\n";
    let cmd = |c: &str, h: &str| ev(&[("Cmd", c), ("Host", h)]);
    let t = harness(&format!("title: t\nid: c3\ncorrelation:\n  type: temporal\n  rules: [recon_a, recon_b]\n  group-by: [Host]\n  timespan: 5m\n---\n{rules}"));
    let reversed = vec![(0, cmd("ipconfig", "h1")), (60 * S, cmd("whoami", "h1"))];
    assert_eq!(t.run(&reversed, 0).len(), 1);
    let other_host = vec![(0, cmd("ipconfig", "h1")), (60 * S, cmd("whoami", "h2"))];
    assert!(t.run(&other_host, 0).is_empty());
    let too_far = vec![(0, cmd("ipconfig", "h1")), (301 * S, cmd("whoami", "h1"))];
    assert!(t.run(&too_far, 0).is_empty());
    let o = harness(&format!("title: t\nid: c4\ncorrelation:\n  type: temporal_ordered\n  rules: [recon_a, recon_b]\n  group-by: [Host]\n  timespan: 5m\n---\n{rules}"));
    assert!(
        o.run(&reversed, 0).is_empty(),
        "b before a is the wrong order"
    );
    let in_order = vec![
        (0, cmd("ipconfig", "h1")),
        (10 * S, cmd("whoami", "h1")),
        (20 * S, cmd("ipconfig", "h1")),
    ];
    let m = o.run(&in_order, 0);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].window, (0, 20 * S));
}

/// The specification's example: many failed logins followed by a success
/// of the same user, as a chain of two correlations.
#[test]
fn spec_example_chained_correlations() {
    let h = harness(&format!(
        "title: Correlation - Multiple Failed Logins Followed by Successful Login\nid: b180ead8\ncorrelation:\n  type: temporal_ordered\n  rules: [multiple_failed_login, successful_login]\n  group-by: [User]\n  timespan: 10m\nlevel: high\n---\ntitle: Multiple failed logons\nid: a8418a5a\nname: multiple_failed_login\ncorrelation:\n  type: event_count\n  rules: [failed_login]\n  group-by: [User]\n  timespan: 10m\n  condition: {{gte: 10}}\n---\n{FAILED}---\n{OK}"
    ));
    let mut s: Vec<_> = (0..10).map(|i| (i * S, login(false, "bob", "a"))).collect();
    s.push((30 * S, login(true, "bob", "a")));
    let m = h.run(&s, 0);
    let outer: Vec<_> = m
        .iter()
        .filter(|m| h.set.correlations()[m.correlation].id.as_deref() == Some("b180ead8"))
        .collect();
    assert_eq!(outer.len(), 1, "{m:?}");
    assert_eq!(
        outer[0].group,
        vec![("User".to_string(), "bob".to_string())]
    );
    // Nine failures are not enough.
    let mut s: Vec<_> = (0..9).map(|i| (i * S, login(false, "bob", "a"))).collect();
    s.push((30 * S, login(true, "bob", "a")));
    assert!(h
        .run(&s, 0)
        .iter()
        .all(|m| h.set.correlations()[m.correlation].id.as_deref() != Some("b180ead8")));
    // Success before the failures: wrong order.
    let mut s = vec![(0, login(true, "bob", "a"))];
    s.extend((1..11).map(|i| (i * S, login(false, "bob", "a"))));
    assert!(h
        .run(&s, 0)
        .iter()
        .all(|m| h.set.correlations()[m.correlation].id.as_deref() != Some("b180ead8")));
}

#[test]
fn aliases_group_across_fields() {
    let rules = "title: e\nid: re\nname: internal_error\nlogsource: {product: x}\ndetection:\n  s: {status: '500'}\n  condition: s\n---\ntitle: n\nid: rn\nname: new_network_connection\nlogsource: {product: x}\ndetection:\n  s: {event: conn}\n  condition: s\n";
    let h = harness(&format!("title: t\nid: c5\ncorrelation:\n  type: temporal\n  rules: [internal_error, new_network_connection]\n  group-by: [internal_ip]\n  timespan: 10s\n  aliases:\n    internal_ip:\n      internal_error: destination.ip\n      new_network_connection: source.ip\n---\n{rules}"));
    let s = vec![
        (0, ev(&[("status", "500"), ("destination.ip", "10.0.0.5")])),
        (S, ev(&[("event", "conn"), ("source.ip", "10.0.0.5")])),
    ];
    assert_eq!(h.run(&s, 0).len(), 1);
    let s = vec![
        (0, ev(&[("status", "500"), ("destination.ip", "10.0.0.5")])),
        (S, ev(&[("event", "conn"), ("source.ip", "10.0.0.6")])),
    ];
    assert!(h.run(&s, 0).is_empty());
}

#[test]
fn value_sum_avg_percentile() {
    let base = "title: x\nid: rx\nlogsource: {product: x}\ndetection:\n  s: {kind: upload}\n  condition: s\n";
    let up = |bytes: &str| ev(&[("kind", "upload"), ("Host", "h"), ("bytes", bytes)]);
    let stream: Vec<_> = [100, 200, 300, 400]
        .iter()
        .enumerate()
        .map(|(i, b)| (i as i64 * S, up(&b.to_string())))
        .collect();
    let sum = harness(&format!("title: s\nid: c6\ncorrelation:\n  type: value_sum\n  rules: [rx]\n  group-by: [Host]\n  timespan: 1m\n  condition: {{field: bytes, gte: 600}}\n---\n{base}"));
    let m = sum.run(&stream, 0);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].value, 600.0);
    let avg = harness(&format!("title: s\nid: c7\ncorrelation:\n  type: value_avg\n  rules: [rx]\n  group-by: [Host]\n  timespan: 1m\n  condition: {{field: bytes, gt: 240}}\n---\n{base}"));
    let m = avg.run(&stream, 0);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].value, 250.0);
    let p = harness(&format!("title: s\nid: c8\ncorrelation:\n  type: value_percentile\n  rules: [rx]\n  group-by: [Host]\n  timespan: 1m\n  condition: {{field: bytes, percentile: 50, gte: 300}}\n---\n{base}"));
    // Median of [100,200,300] (nearest rank) is 200; of [100..400] is 200; never ≥ 300 until …
    assert!(p.run(&stream, 0).is_empty());
    let p90 = harness(&format!("title: s\nid: c9\ncorrelation:\n  type: value_percentile\n  rules: [rx]\n  group-by: [Host]\n  timespan: 1m\n  condition: {{field: bytes, percentile: 90, gte: 300}}\n---\n{base}"));
    // [100, 200, 300]: p90 is 300, fires and clears the window; then [400]
    // alone: p90 is 400, fires again.
    let m = p90.run(&stream, 0);
    assert_eq!(
        m.iter().map(|m| m.value).collect::<Vec<_>>(),
        vec![300.0, 400.0]
    );
}

#[test]
fn out_of_order_within_lateness_is_placed_by_event_time() {
    let h = harness(&format!("title: brute\nid: c1\ncorrelation:\n  type: event_count\n  rules: [r-failed]\n  group-by: [User]\n  timespan: 10s\n  condition: {{gte: 3}}\n---\n{FAILED}"));
    // Arrival order 20, 0, 5, 10: sorted, 0/5/10 fall in one window.
    let s = vec![
        (20 * S, login(false, "bob", "a")),
        (0, login(false, "bob", "a")),
        (5 * S, login(false, "bob", "a")),
        (10 * S, login(false, "bob", "a")),
    ];
    let live = h.run(&s, 30 * S);
    let mut sorted = s.clone();
    sorted.sort_by_key(|(t, _)| *t);
    let key = |m: &CorrelationMatch| (m.group.clone(), m.value, m.window, m.events.len());
    assert_eq!(
        live.iter().map(key).collect::<Vec<_>>(),
        h.run(&sorted, 0).iter().map(key).collect::<Vec<_>>()
    );
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].window, (0, 10 * S));
    // The events it rests on are the ones at 0, 5 and 10 s (arrival #1-#3).
    assert_eq!(live[0].events, vec!["#1", "#2", "#3"]);
}

#[test]
fn later_than_lateness_is_counted_not_lost_silently() {
    let h = harness(&format!("title: brute\nid: c1\ncorrelation:\n  type: event_count\n  rules: [r-failed]\n  group-by: [User]\n  timespan: 10s\n  condition: {{gte: 2}}\n---\n{FAILED}"));
    let mut engine = CorrelationEngine::new(
        h.set.clone(),
        EngineConfig {
            lateness_ns: S,
            ..Default::default()
        },
    );
    let e = login(false, "bob", "a");
    let refs = vec!["r-failed".to_string()];
    engine.push(Input {
        ts_ns: 100 * S,
        refs: &refs,
        event: &e,
        event_ref: "x",
    });
    engine.push(Input {
        ts_ns: 200 * S,
        refs: &refs,
        event: &e,
        event_ref: "y",
    });
    engine.push(Input {
        ts_ns: 50 * S,
        refs: &refs,
        event: &e,
        event_ref: "late",
    });
    assert_eq!(engine.stats().late, 1);
}

#[test]
fn group_limit_evicts_and_counts() {
    let h = harness(&format!("title: brute\nid: c1\ncorrelation:\n  type: event_count\n  rules: [r-failed]\n  group-by: [User]\n  timespan: 1h\n  condition: {{gte: 2}}\n---\n{FAILED}"));
    let mut engine = CorrelationEngine::new(
        h.set.clone(),
        EngineConfig {
            lateness_ns: 0,
            max_groups: 10,
            ..Default::default()
        },
    );
    let refs = vec!["r-failed".to_string()];
    for i in 0..25 {
        let e = login(false, &format!("u{i}"), "a");
        engine.push(Input {
            ts_ns: i * S,
            refs: &refs,
            event: &e,
            event_ref: "x",
        });
    }
    engine.flush();
    assert!(engine.group_count() <= 10);
    assert_eq!(engine.stats().evicted_groups, 15);
}

#[test]
fn legacy_count_aggregation() {
    let (docs, errs) = parse_file(None, "title: legacy\nid: l1\nlogsource: {product: x}\ndetection:\n  s: {EventID: 4625}\n  condition: s | count(TargetUserName) by IpAddress > 2\n  timeframe: 5m\n", &Placeholders::new());
    assert!(errs.is_empty());
    let Document::Rule(r) = &docs[0] else {
        panic!()
    };
    let c = vigil_sigma::correlation::from_legacy(r).unwrap();
    assert_eq!(
        c.kind,
        vigil_sigma::correlation::CorrelationType::ValueCount
    );
    assert_eq!(c.group_by, vec!["IpAddress"]);
    assert_eq!(c.field.as_deref(), Some("TargetUserName"));
    assert_eq!(c.condition.gt, Some(2.0));
    assert_eq!(c.timespan_ns, 300 * S);
}

#[test]
fn invalid_correlations_name_the_key() {
    let cases = [
        ("correlation:\n  type: event_cnt\n  rules: [a]\n  timespan: 1m\n  condition: {gte: 1}\n", "correlation.type"),
        ("correlation:\n  type: event_count\n  rules: [a]\n  timespan: 1 minute\n  condition: {gte: 1}\n", "correlation.timespan"),
        ("correlation:\n  type: event_count\n  rules: [a]\n  timespan: 1m\n", "correlation.condition"),
        ("correlation:\n  type: value_count\n  rules: [a]\n  timespan: 1m\n  condition: {gte: 1}\n", "correlation.condition.field"),
        ("correlation:\n  type: event_count\n  timespan: 1m\n  condition: {gte: 1}\n", "correlation.rules"),
        ("correlation:\n  type: event_count\n  rules: [a]\n  timespan: 1m\n  condition: {gte: many}\n", "correlation.condition.gte"),
    ];
    for (body, key) in cases {
        let (_, errs) = parse_file(
            Some("c.yml".into()),
            &format!("title: t\n{body}"),
            &Placeholders::new(),
        );
        assert_eq!(errs.len(), 1, "{body}");
        assert_eq!(errs[0].field.as_deref(), Some(key), "{}", errs[0]);
        assert!(errs[0].to_string().starts_with("c.yml:"), "{}", errs[0]);
    }
}

#[test]
fn unknown_references_and_cycles_are_refused() {
    let (docs, _) = parse_file(None, "title: a\nid: ca\ncorrelation:\n  type: temporal\n  rules: [cb]\n  timespan: 1m\n---\ntitle: b\nid: cb\ncorrelation:\n  type: temporal\n  rules: [ca]\n  timespan: 1m\n---\ntitle: c\nid: cc\ncorrelation:\n  type: temporal\n  rules: [nope]\n  timespan: 1m\n", &Placeholders::new());
    let (_, corrs) = split(docs);
    let (set, errs) = CorrelationSet::new(corrs, &|_| false);
    assert!(set.correlations().is_empty());
    assert_eq!(errs.len(), 3);
    assert!(errs.iter().any(|e| e.reason.contains("'nope'")));
    assert!(
        errs.iter()
            .filter(|e| e.reason.contains("refers to itself"))
            .count()
            == 2
    );
}

/// Stopping half way, snapshotting, restoring (through JSON, as a server
/// would store it) and going on gives the same matches as one run.
#[test]
fn snapshot_and_restore_keep_windows() {
    let h = harness(&format!("title: brute\nid: c1\ncorrelation:\n  type: value_count\n  rules: [r-failed]\n  group-by: [IpAddress]\n  timespan: 1h\n  condition: {{field: User, gte: 4}}\n---\n{FAILED}"));
    let users = ["a", "b", "c", "d", "e", "f"];
    let stream: Vec<(i64, Event)> = users
        .iter()
        .enumerate()
        .map(|(i, u)| (i as i64 * S, login(false, u, "10.9.9.9")))
        .collect();
    let whole = h.run(&stream, 2 * S);
    assert_eq!(whole.len(), 1);
    let refs = vec!["r-failed".to_string()];
    let config = EngineConfig {
        lateness_ns: 2 * S,
        ..Default::default()
    };
    let mut first = CorrelationEngine::new(h.set.clone(), config);
    let mut out = Vec::new();
    for (i, (ts, e)) in stream.iter().enumerate().take(3) {
        out.extend(first.push(Input {
            ts_ns: *ts,
            refs: &refs,
            event: e,
            event_ref: &format!("#{i}"),
        }));
    }
    let saved = serde_json::to_string(&first.snapshot()).unwrap();
    drop(first);
    let snap = serde_json::from_str(&saved).unwrap();
    let (mut second, dropped) = CorrelationEngine::restore(h.set.clone(), config, snap).unwrap();
    assert_eq!(dropped, 0);
    for (i, (ts, e)) in stream.iter().enumerate().skip(3) {
        out.extend(second.push(Input {
            ts_ns: *ts,
            refs: &refs,
            event: e,
            event_ref: &format!("#{i}"),
        }));
    }
    out.extend(second.flush());
    assert_eq!(out, whole);
    assert_eq!(second.stats().inputs, 6);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// Live (arrival order shuffled within the lateness bound) and hunt
    /// (sorted) agree, for every correlation type at once.
    #[test]
    fn live_equals_sorted(
        events in prop::collection::vec((0i64..600, 0usize..3, 0usize..3, 0usize..4, 0u32..500), 1..60),
        jitter in prop::collection::vec(0i64..20, 60),
    ) {
        let rules = "title: a\nid: ra\nname: ra\nlogsource: {product: x}\ndetection:\n  s: {k: a}\n  condition: s\n---\ntitle: b\nid: rb\nname: rb\nlogsource: {product: x}\ndetection:\n  s: {k: b}\n  condition: s\n---\ntitle: c\nid: rc\nname: rc\nlogsource: {product: x}\ndetection:\n  s: {k: c}\n  condition: s\n";
        let corr = |body: &str| format!("title: t\nid: x\ncorrelation:\n{body}---\n");
        let text = [
            corr("  type: event_count\n  rules: [ra, rb]\n  group-by: [h]\n  timespan: 30s\n  condition: {gte: 3}\n"),
            corr("  type: value_count\n  rules: [ra]\n  group-by: [h]\n  timespan: 60s\n  condition: {field: u, gte: 2}\n").replace("id: x", "id: x2"),
            corr("  type: temporal\n  rules: [ra, rb, rc]\n  group-by: [h]\n  timespan: 40s\n").replace("id: x", "id: x3"),
            corr("  type: temporal_ordered\n  rules: [ra, rb]\n  group-by: [h]\n  timespan: 40s\n").replace("id: x", "id: x4"),
            corr("  type: value_sum\n  rules: [rc]\n  group-by: [h]\n  timespan: 50s\n  condition: {field: n, gte: 700}\n").replace("id: x", "id: x5"),
            corr("  type: value_avg\n  rules: [rb]\n  group-by: [h]\n  timespan: 50s\n  condition: {field: n, gt: 300}\n").replace("id: x", "id: x6"),
            corr("  type: value_percentile\n  rules: [ra, rc]\n  group-by: [h]\n  timespan: 50s\n  condition: {field: n, percentile: 75, lt: 100}\n").replace("id: x", "id: x7"),
            rules.to_string(),
        ].concat();
        let h = harness(&text);
        // Distinct times, so that sorting is unambiguous.
        let mut stream: Vec<(i64, Event)> = events.iter().enumerate().map(|(i, (t, k, host, user, n))| {
            (t * S + i as i64, ev(&[("k", ["a", "b", "c"][*k]), ("h", ["h0", "h1", "h2"][*host]), ("u", ["u0", "u1", "u2", "u3"][*user]), ("n", &n.to_string())]))
        }).collect();
        let mut sorted = stream.clone();
        sorted.sort_by_key(|(t, _)| *t);
        // Shuffle: delay each event's arrival by up to 20 s, which keeps it
        // within a 25 s lateness bound.
        let mut keyed: Vec<(i64, usize)> = stream.iter().enumerate().map(|(i, (t, _))| (t + jitter[i % jitter.len()] * S, i)).collect();
        keyed.sort();
        let shuffled: Vec<(i64, Event)> = keyed.iter().map(|(_, i)| stream[*i].clone()).collect();
        stream.clear();
        let strip = |ms: Vec<CorrelationMatch>| -> Vec<Summary> {
            let mut v: Vec<_> = ms.into_iter().map(|m| (m.correlation, m.group, format!("{:.6}", m.value), m.window)).collect();
            v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            v
        };
        prop_assert_eq!(strip(h.run(&shuffled, 25 * S)), strip(h.run(&sorted, 0)));
    }
}
