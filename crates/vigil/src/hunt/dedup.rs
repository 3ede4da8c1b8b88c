//! `--dedup`: one detection per rule and record when the same record is in
//! several inputs (collections that overlap, a log copied twice).
//!
//! A record is known by its content: every field name and value, in order
//! (the source file and reader metadata left out). Only matching records
//! are remembered, as 128-bit digests, so memory follows the number of
//! detections, not of events.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use vigil_event::{Event, Value};

/// The detections seen so far.
#[derive(Debug, Default)]
pub struct Dedup {
    seen: HashSet<(usize, Digest)>,
    /// Detections left out as repeats.
    pub repeats: u64,
}

/// A record's content, as two SipHash runs with different keys: a 64-bit
/// digest could, once in a great many detections, drop a real one as a
/// repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(u64, u64);

impl Digest {
    /// The digest of `event`'s fields (not its source or reader metadata).
    pub fn of(event: &Event) -> Digest {
        let run = |key: u64| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            for (name, value) in event.fields() {
                name.hash(&mut h);
                hash_value(value, &mut h);
            }
            h.finish()
        };
        Digest(run(1), run(2))
    }
}

impl Dedup {
    /// Whether rule `rule` matching the record of digest `record` is new;
    /// remembers it, and counts it as a repeat when not.
    pub fn first(&mut self, rule: usize, record: Digest) -> bool {
        let new = self.seen.insert((rule, record));
        if !new {
            self.repeats += 1;
        }
        new
    }
}

fn hash_value(v: &Value, h: &mut impl Hasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Int(i) => (2u8, i).hash(h),
        Value::Float(f) => (3u8, f.to_bits()).hash(h),
        Value::Str(s) => (4u8, s).hash(h),
        Value::List(items) => {
            (5u8, items.len()).hash(h);
            for item in items {
                hash_value(item, h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn event(record: i64, source: &str) -> Event {
        let mut e = Event::new();
        e.push("EventRecordID", Value::Int(record));
        e.push("CommandLine", "whoami");
        e.meta.source = Some(Arc::from(source));
        e
    }

    #[test]
    fn the_same_record_from_another_file_is_a_repeat() {
        let mut d = Dedup::default();
        assert!(d.first(0, Digest::of(&event(1, "a.evtx"))));
        assert!(!d.first(0, Digest::of(&event(1, "copy/a.evtx"))));
        assert!(d.first(1, Digest::of(&event(1, "a.evtx"))), "another rule");
        assert!(
            d.first(0, Digest::of(&event(2, "a.evtx"))),
            "another record"
        );
        assert_eq!(d.repeats, 1);
    }
}
