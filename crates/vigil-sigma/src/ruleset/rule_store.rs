//! The rules of a set, each decoded on first use when the set was loaded
//! from a snapshot.
//!
//! Decoding thousands of compiled rules (their strings, selections and
//! values: about 55 allocations each) was the largest part of loading a
//! snapshot, while a hunt through one host's logs evaluates a third of
//! SigmaHQ's Windows rules and reports fewer. So a snapshot stores each
//! rule as its own byte string, and a loaded set keeps those bytes and
//! decodes a rule the first time it is asked for.
//!
//! Invariant: [`RuleStore::get`] gives the rule that was stored or, when
//! its bytes do not decode or the caller's check of the decoded rule
//! fails (which a checksummed cache entry written by the same build never
//! does), a rule that matches nothing, counted in
//! [`RuleStore::unreadable`].

use crate::byte_string::{in_place_buffer, offset_within, Bytes, StoredBytes};
use crate::condition::Cond;
use crate::rule::{Detection, Rule};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The rules of a set, in set order.
#[derive(Debug, Default)]
pub(crate) struct RuleStore {
    /// Boxed: a cell holding a whole `Rule` is half a KiB, and a loaded
    /// set leaves most of its cells empty.
    cells: Vec<OnceLock<Box<Rule>>>,
    /// The rules as stored (postcard): the snapshot's own buffer when
    /// decoded in place (see [`crate::byte_string::decode_in_place`]), else copied out of it;
    /// empty for a compiled set, whose cells are all filled.
    encoded: StoredBytes,
    /// Where each stored rule is in `encoded`.
    spans: Vec<(u32, u32)>,
    /// Stored rules that did not decode.
    unreadable: AtomicUsize,
}

impl RuleStore {
    /// The store of a compiled set.
    pub fn compiled(rules: Vec<Rule>) -> RuleStore {
        RuleStore {
            cells: rules
                .into_iter()
                .map(|r| OnceLock::from(Box::new(r)))
                .collect(),
            ..RuleStore::default()
        }
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// Rule `i`, decoded now if it was not yet; `check` says whether a
    /// decoded rule is consistent with the rest of the set.
    ///
    /// # Panics
    /// If `i` is not below [`RuleStore::len`].
    pub fn get(&self, i: usize, check: impl FnOnce(&Rule) -> bool) -> &Rule {
        self.cells[i].get_or_init(|| match postcard::from_bytes::<Rule>(self.stored(i)) {
            Ok(rule) if check(&rule) => Box::new(rule),
            _ => {
                self.unreadable.fetch_add(1, Ordering::Relaxed);
                Box::new(unreadable_rule())
            }
        })
    }

    /// Rule `i` if it is decoded.
    #[cfg(test)]
    pub fn decoded(&self, i: usize) -> Option<&Rule> {
        self.cells[i].get().map(|r| &**r)
    }

    /// How many stored rules did not decode (so far: rules are decoded
    /// when first used).
    pub fn unreadable(&self) -> usize {
        self.unreadable.load(Ordering::Relaxed)
    }

    fn stored(&self, i: usize) -> &[u8] {
        self.spans
            .get(i)
            .and_then(|&(a, z)| self.encoded.as_slice().get(a as usize..z as usize))
            .unwrap_or_default()
    }
}

/// What stands in for a stored rule that does not decode: it matches
/// nothing (an `or` of no selections is false).
fn unreadable_rule() -> Rule {
    Rule {
        title: "(a rule the compiled-rule snapshot could not give back)".into(),
        id: None,
        name: None,
        status: None,
        level: None,
        description: None,
        author: None,
        tags: Vec::new(),
        references: Vec::new(),
        falsepositives: Vec::new(),
        fields: Vec::new(),
        logsource: Default::default(),
        aggregation: None,
        timeframe: None,
        alert_group_by: None,
        path: None,
        line: 0,
        detection: Detection {
            names: Vec::new(),
            selections: Vec::new(),
            fields: Vec::new(),
            cond: Cond::Or(Vec::new()),
            warnings: Vec::new(),
        },
    }
}

/// Written as a list of byte strings, one rule each: a stored rule as it
/// was read, a decoded one encoded now.
impl Serialize for RuleStore {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = s.serialize_seq(Some(self.cells.len()))?;
        for (i, cell) in self.cells.iter().enumerate() {
            match cell.get() {
                Some(rule) => {
                    let bytes = postcard::to_allocvec(rule).map_err(S::Error::custom)?;
                    seq.serialize_element(&Bytes(bytes.into()))?;
                }
                None => seq.serialize_element(&Bytes(self.stored(i).into()))?,
            }
        }
        seq.end()
    }
}

/// Read back with every rule still encoded: in place when decoded by
/// [`crate::byte_string::decode_in_place`], else copied into one buffer of the exact size
/// (grown as they came, it was copied over and over into fresh memory).
impl<'de> Deserialize<'de> for RuleStore {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let rules = Vec::<Bytes<'de>>::deserialize(d)?;
        let cells = (0..rules.len()).map(|_| OnceLock::new()).collect();
        if let Some((buffer, spans)) = in_place_buffer().and_then(|buffer| {
            let spans = spans_within((*buffer).as_ref(), &rules)?;
            Some((buffer, spans))
        }) {
            return Ok(RuleStore {
                cells,
                encoded: StoredBytes::whole(buffer),
                spans,
                ..RuleStore::default()
            });
        }
        let total: usize = rules.iter().map(|r| r.0.len()).sum();
        if u32::try_from(total).is_err() {
            return Err(serde::de::Error::custom("stored rules over 4 GiB"));
        }
        let mut encoded = Vec::with_capacity(total);
        let mut spans = Vec::with_capacity(rules.len());
        for rule in &rules {
            let start = encoded.len() as u32;
            encoded.extend_from_slice(&rule.0);
            spans.push((start, encoded.len() as u32));
        }
        Ok(RuleStore {
            cells,
            encoded: encoded.into(),
            spans,
            ..RuleStore::default()
        })
    }
}

/// Where each of `rules` is in `buffer`, when all were read from it in
/// place and it can be addressed by `u32`.
fn spans_within(buffer: &[u8], rules: &[Bytes<'_>]) -> Option<Vec<(u32, u32)>> {
    u32::try_from(buffer.len()).ok()?;
    rules
        .iter()
        .map(|r| match &r.0 {
            Cow::Borrowed(b) => {
                let start = offset_within(buffer, b)?;
                Some((start as u32, (start + b.len()) as u32))
            }
            Cow::Owned(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::byte_string::{decode_in_place, SharedBytes};
    use crate::rule::parse_file;
    use crate::Placeholders;
    use std::sync::Arc;

    fn rules() -> Vec<Rule> {
        let text = "title: a\nid: r1\nlogsource: {product: windows}\ndetection:\n  sel: {Image|endswith: '\\x.exe'}\n  condition: sel\n---\ntitle: b\nid: r2\nlogsource: {product: windows}\ndetection:\n  keywords: [mimikatz]\n  condition: keywords\n";
        let (docs, errors) = parse_file(None, text, &Placeholders::new());
        assert!(errors.is_empty(), "{errors:?}");
        docs.into_iter()
            .map(|d| match d {
                crate::Document::Rule(r) => *r,
                _ => panic!("a rule"),
            })
            .collect()
    }

    /// A stored rule is decoded when first asked for, and only then.
    #[test]
    fn stored_rules_are_decoded_on_first_use() {
        let bytes = postcard::to_allocvec(&RuleStore::compiled(rules())).expect("encode");
        let store: RuleStore = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(store.len(), 2);
        assert!(store.decoded(0).is_none() && store.decoded(1).is_none());
        assert_eq!(store.get(1, |_| true).id.as_deref(), Some("r2"));
        assert!(store.decoded(0).is_none());
        assert_eq!(store.unreadable(), 0);
        // Written again, the undecoded rule is copied as it was stored.
        assert_eq!(postcard::to_allocvec(&store).expect("encode"), bytes);
    }

    /// A rule that does not decode, or fails the caller's check, matches
    /// nothing and is counted; the others are unaffected.
    #[test]
    fn an_unreadable_rule_matches_nothing_and_is_counted() {
        let bytes = postcard::to_allocvec(&RuleStore::compiled(rules())).expect("encode");
        let mut damaged: RuleStore = postcard::from_bytes(&bytes).expect("decode");
        let (start, end) = damaged.spans[0];
        let StoredBytes::Owned(encoded) = &mut damaged.encoded else {
            panic!("copied")
        };
        encoded[(start + end) as usize / 2..end as usize].fill(0xff);
        let rule = damaged.get(0, |_| true);
        assert!(rule.id.is_none());
        assert!(!rule.detection.cond.eval(&mut |_| true));
        assert_eq!(damaged.unreadable(), 1);
        assert_eq!(damaged.get(1, |_| false).id, None);
        assert_eq!(damaged.unreadable(), 2);
    }

    /// Decoded in place, a store shares the buffer it was read from
    /// instead of copying the rules, and gives the same rules back.
    #[test]
    fn decoded_in_place_the_rules_stay_in_the_buffer() {
        let bytes = postcard::to_allocvec(&RuleStore::compiled(rules())).expect("encode");
        let buffer: SharedBytes = Arc::new(bytes.clone());
        let store: RuleStore =
            decode_in_place(buffer.clone(), |b| postcard::from_bytes(b)).expect("decode");
        assert!(matches!(store.encoded, StoredBytes::Shared { .. }));
        assert_eq!(Arc::strong_count(&buffer), 2);
        assert_eq!(store.get(1, |_| true).id.as_deref(), Some("r2"));
        assert_eq!(store.get(0, |_| true).id.as_deref(), Some("r1"));
        assert_eq!(postcard::to_allocvec(&store).expect("encode"), bytes);
        // Outside `decode_in_place`, the rules are copied.
        let copied: RuleStore = postcard::from_bytes(&bytes).expect("decode");
        assert!(matches!(copied.encoded, StoredBytes::Owned(_)));
    }
}
