//! The event IDs a rule's own detection allows.
//!
//! The log-source mapping routes `process_creation` to Sysmon event 1 and
//! Security event 4688, but a rule for `service: security` names its event
//! IDs in its detection (`EventID: 1102`), and until now such a rule was a
//! candidate for every event of its channel. In the corpus, "Security
//! Eventlog Cleared" was evaluated on 1,577 events to match 24: its
//! trigger, `Provider_Name: Security`, occurs in the provider name of
//! every Security event. When every way the condition can hold requires
//! one of a few event IDs, the rule is routed by those IDs instead.
//!
//! Only what certainly excludes a match counts: an item on `EventID` that
//! is not negated, lists plain values, each an integer written as such
//! (`4688`, not `46*` or `0x1250`), outside `all`. Anything else, and
//! `not`, allows every ID.

use crate::condition::Cond;
use crate::glob::StrMatcher;
use crate::pattern::Pattern;
use crate::rule::{Detection, Item};

/// The event IDs outside of which `det` cannot match, sorted, or `None`
/// when any may. `fields` maps the detection's fields to the set's field
/// ids; `event_id` is the id of `EventID`.
pub(super) fn event_ids(det: &Detection, fields: &[u32], event_id: u32) -> Option<Vec<i64>> {
    let mut ids = cond_ids(&det.cond, det, fields, event_id)?;
    ids.sort_unstable();
    ids.dedup();
    Some(ids)
}

fn cond_ids(cond: &Cond, det: &Detection, fields: &[u32], event_id: u32) -> Option<Vec<i64>> {
    match cond {
        Cond::Sel(i) => union(
            det.selections[*i]
                .groups
                .iter()
                .map(|g| group_ids(g, fields, event_id)),
        ),
        // Each part that restricts the IDs restricts the whole; the
        // narrowest is enough.
        Cond::And(cs) => cs
            .iter()
            .filter_map(|c| cond_ids(c, det, fields, event_id))
            .min_by_key(Vec::len),
        Cond::Or(cs) => union(cs.iter().map(|c| cond_ids(c, det, fields, event_id))),
        Cond::AtLeast(n, cs) if *n > 0 => {
            union(cs.iter().map(|c| cond_ids(c, det, fields, event_id)))
        }
        Cond::AtLeast(..) | Cond::Not(_) => None,
    }
}

/// All of the sets, or `None` when any is `None` (or there are none).
fn union(sets: impl Iterator<Item = Option<Vec<i64>>>) -> Option<Vec<i64>> {
    let mut out: Option<Vec<i64>> = None;
    for set in sets {
        out.get_or_insert_with(Vec::new).extend(set?);
    }
    out
}

/// The narrowest restriction among the items of one AND group.
fn group_ids(items: &[Item], fields: &[u32], event_id: u32) -> Option<Vec<i64>> {
    items
        .iter()
        .filter_map(|item| item_ids(item, fields, event_id))
        .min_by_key(Vec::len)
}

/// The IDs an `EventID` item accepts, when they are plain integers.
///
/// Routing reads an event's ID with `Value::as_i64`, which trims and
/// parses text: every event value such an item matches, by text or by
/// number, reads back as one of these integers.
fn item_ids(item: &Item, fields: &[u32], event_id: u32) -> Option<Vec<i64>> {
    let v = &item.values;
    if item.field.map(|l| fields[l]) != Some(event_id)
        || v.negate
        || v.all
        || !v.unresolved.is_empty()
        || v.patterns.is_empty()
    {
        return None;
    }
    v.patterns
        .iter()
        .map(|p| match p {
            Pattern::Str(s) => match &s.matcher {
                StrMatcher::Exact(text) => {
                    let id: i64 = text.trim().parse().ok()?;
                    // A number matches numeric values by number too.
                    match s.number {
                        Some(n) if n != id as f64 => None,
                        _ => Some(id),
                    }
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::parse_file;
    use crate::Placeholders;

    /// The IDs of the first rule in `yaml`, with `EventID` as field 0.
    fn ids(detection: &str) -> Option<Vec<i64>> {
        let text = format!(
            "title: t\nlogsource: {{product: windows, service: security}}\ndetection:\n{detection}"
        );
        let (docs, errors) = parse_file(None, &text, &Placeholders::new());
        assert!(errors.is_empty(), "{errors:?}");
        let crate::Document::Rule(rule) = &docs[0] else {
            panic!("a rule")
        };
        let det = &rule.detection;
        let fields: Vec<u32> = det
            .fields
            .iter()
            .map(|f| if f == "EventID" { 0 } else { 1 })
            .collect();
        event_ids(det, &fields, 0)
    }

    #[test]
    fn one_id_per_selection_of_an_or() {
        assert_eq!(
            ids("  a: {EventID: 1102, Provider_Name: x}\n  b: {EventID: 517}\n  condition: 1 of *\n"),
            Some(vec![517, 1102])
        );
        assert_eq!(
            ids("  a: {EventID: [4624, 4625], LogonType: 3}\n  condition: a\n"),
            Some(vec![4624, 4625])
        );
    }

    #[test]
    fn and_takes_the_narrowest_part() {
        assert_eq!(
            ids("  a: {EventID: [1, 2]}\n  b: {EventID: 2}\n  f: {User: x}\n  condition: a and b and not f\n"),
            Some(vec![2])
        );
        assert_eq!(
            ids("  a: {EventID: 4688}\n  f: {User: x}\n  condition: a and not f\n"),
            Some(vec![4688])
        );
    }

    #[test]
    fn anything_uncertain_allows_every_id() {
        // A selection without an ID in an OR.
        assert_eq!(
            ids("  a: {EventID: 1}\n  b: {User: x}\n  condition: a or b\n"),
            None
        );
        // Negation, wildcards, modifiers, text that is not an integer.
        assert_eq!(ids("  a: {EventID: 1}\n  condition: not a\n"), None);
        assert_eq!(ids("  a: {EventID: '46*'}\n  condition: a\n"), None);
        assert_eq!(ids("  a: {EventID|gt: 4000}\n  condition: a\n"), None);
        assert_eq!(ids("  a: {EventID|contains: '46'}\n  condition: a\n"), None);
        assert_eq!(ids("  a: {EventID: '0x12'}\n  condition: a\n"), None);
        assert_eq!(ids("  a: {EventID|neq: 4}\n  condition: a\n"), None);
        assert_eq!(ids("  a: {EventID: null}\n  condition: a\n"), None);
        // A list of values where one group has no ID.
        assert_eq!(
            ids("  a:\n    - EventID: 1\n    - User: x\n  condition: a\n"),
            None
        );
    }

    #[test]
    fn quoted_integers_count() {
        assert_eq!(
            ids("  a: {EventID: '4688'}\n  condition: a\n"),
            Some(vec![4688])
        );
    }

    /// Routed by the IDs of its detection, a rule matches exactly the
    /// events it matches when every rule is evaluated on every event.
    #[test]
    fn routing_by_detected_ids_changes_no_result() {
        use crate::{RuleSetBuilder, Scratch};
        use vigil_event::{Event, Value};
        let text = "title: cleared\nid: c\nlogsource: {product: windows, service: security}\ndetection:\n  a: {EventID: 1102}\n  b: {EventID: 517, Provider_Name: Security}\n  condition: 1 of *\n";
        let (docs, errors) = parse_file(None, text, &Placeholders::new());
        assert!(errors.is_empty(), "{errors:?}");
        let mut b = RuleSetBuilder::new();
        b.add_documents(docs);
        let routed = b.build();
        b.prefilter(false);
        let plain = b.build();
        let event = |id: Value| {
            let mut e = Event::new();
            e.push("Channel", "Security");
            e.push("EventID", id);
            e.push("Provider_Name", "Security");
            e
        };
        let cases = [
            (event(Value::Int(1102)), true),
            (event(Value::from("1102")), true),
            (event(Value::Int(517)), true),
            (event(Value::Int(4624)), false),
            // Several IDs: one of them is enough, wherever it is.
            (
                event(Value::List(vec![Value::Int(4624), Value::Int(1102)])),
                true,
            ),
            (event(Value::from("0x44e")), false),
        ];
        let mut s = Scratch::default();
        for (e, want) in cases {
            let got = !routed.matches(&e, &mut s).is_empty();
            assert_eq!(got, !plain.matches(&e, &mut s).is_empty(), "{e:?}");
            assert_eq!(got, want, "{e:?}");
        }
    }
}
