//! Compiled value patterns and how each matches one scalar of an event.

use crate::glob::{StrMatcher, Tok};
use crate::modifier::Shape;
use rustc_hash::FxHashMap;
use std::net::IpAddr;
use vigil_event::Value;

/// A numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CmpOp {
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `>`
    Gt,
    /// `>=`
    Gte,
}

/// A component of a timestamp, for the time modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TimePart {
    /// 0–59
    Minute,
    /// 0–23
    Hour,
    /// Day of month, 1–31
    Day,
    /// ISO week, 1–53
    Week,
    /// 1–12
    Month,
    /// The year
    Year,
}

impl TimePart {
    /// The legal range of values.
    pub fn range(self) -> (i64, i64) {
        match self {
            TimePart::Minute => (0, 59),
            TimePart::Hour => (0, 23),
            TimePart::Day => (1, 31),
            TimePart::Week => (1, 53),
            TimePart::Month => (1, 12),
            TimePart::Year => (0, 9999),
        }
    }
}

/// A rule's regular expression (flags inline in its source). Compiled when
/// the rule is compiled, which reports a pattern that does not; loaded
/// from a rule-set snapshot, it is compiled on first use instead: SigmaHQ's
/// Windows rules hold 153, and compiling them all was about half the CPU
/// of decoding a snapshot's rules (24 MB allocated), while a hunt reaches
/// only those of the rules its events get to.
#[derive(Debug, Clone)]
pub struct RuleRegex {
    source: String,
    /// `None` inside: the source did not compile, which only a damaged
    /// snapshot can hold (the compiler refuses such a rule); it then
    /// matches nothing.
    compiled: std::sync::OnceLock<Option<regex::Regex>>,
}

impl RuleRegex {
    /// A regex compiled already.
    pub(crate) fn compiled(re: regex::Regex) -> Self {
        RuleRegex {
            source: re.as_str().to_string(),
            compiled: std::sync::OnceLock::from(Some(re)),
        }
    }

    /// The source, flags inline.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the regex matches somewhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.compiled
            .get_or_init(|| compile_shared(&self.source))
            .as_ref()
            .is_some_and(|re| re.is_match(text))
    }
}

/// Compiles `source`, or clones what this process compiled from the same
/// source before (a `Regex` clone shares the compiled program). Rules
/// repeat each other's expressions: of the 62 regexes a hunt over the
/// corpus compiled with SigmaHQ's Windows rules, 8 were repeats, and one
/// of those alone took 0.5 ms to compile.
fn compile_shared(source: &str) -> Option<regex::Regex> {
    use std::sync::{Mutex, OnceLock};
    /// Past this many sources (a server reloading ever new rules), the
    /// map starts over.
    const LIMIT: usize = 1 << 12;
    static COMPILED: OnceLock<Mutex<FxHashMap<String, Option<regex::Regex>>>> = OnceLock::new();
    let map = COMPILED.get_or_init(Default::default);
    if let Some(known) = map.lock().ok().and_then(|m| m.get(source).cloned()) {
        return known;
    }
    // Compiled without the lock held: other threads go on meanwhile (two
    // may compile the same source once each).
    let compiled = crate::modifier::build_regex(source).ok();
    if let Ok(mut m) = map.lock() {
        if m.len() >= LIMIT {
            m.clear();
        }
        m.insert(source.to_string(), compiled.clone());
    }
    compiled
}

impl serde::Serialize for RuleRegex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> serde::Deserialize<'de> for RuleRegex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(RuleRegex {
            source: String::deserialize(d)?,
            compiled: std::sync::OnceLock::new(),
        })
    }
}

/// A string pattern: a wildcard matcher, case-insensitive unless `cased`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StrPattern {
    /// The matcher; its literals are lowercase unless `cased`.
    pub matcher: StrMatcher,
    /// Case-sensitive matching.
    pub cased: bool,
    /// For a plain YAML number (`EventID: 4688`): numeric event values
    /// compare by number.
    pub number: Option<f64>,
}

impl StrPattern {
    /// Compiles tokens.
    pub fn new(toks: &[Tok], cased: bool, number: Option<f64>) -> Self {
        StrPattern {
            matcher: StrMatcher::new(toks, !cased),
            cased,
            number,
        }
    }
}

/// What one value of a field item compiles to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Pattern {
    /// A Sigma string (with wildcards).
    Str(StrPattern),
    /// `null`: the field is absent or null.
    Null,
    /// `exists`: the field is present (true) or absent (false).
    Exists(bool),
    /// `re`, with the literals one of which every match must contain
    /// (lowercase; for the prefilter), when they could be worked out.
    /// Boxed: the regex is the largest variant by far (88 bytes a
    /// pattern, where a string pattern takes 64), and a hunt decodes
    /// tens of thousands of patterns, a few hundred regexes.
    Regex(Box<RuleRegex>, Option<Vec<String>>),
    /// `lt`/`lte`/`gt`/`gte`
    Cmp(CmpOp, f64),
    /// A time component equals the value.
    Time(TimePart, i64),
    /// The value is an IP address inside the network.
    Cidr((IpAddr, u8)),
    /// Compares with another field of the same event.
    FieldRef {
        /// The other field's name (in the rule's namespace).
        field: String,
        /// Its index in the detection's field list.
        local: usize,
        /// How to compare.
        shape: Shape,
        /// Case-sensitive.
        cased: bool,
    },
}

/// One scalar of an event as the matchers see it.
#[derive(Debug, Clone, Copy)]
pub struct Scalar<'a> {
    /// The typed value.
    pub value: &'a Value,
    /// Its text.
    pub text: &'a str,
    /// Its text, lowercased.
    pub lower: &'a str,
}

impl Pattern {
    /// Whether the pattern matches a present, non-null scalar. Field
    /// references are handled by the caller, which can see other fields.
    pub fn matches(&self, s: Scalar<'_>) -> bool {
        match self {
            Pattern::Str(p) => {
                if let (Some(n), Value::Int(_) | Value::Float(_)) = (p.number, s.value) {
                    if s.value.as_f64() == Some(n) {
                        return true;
                    }
                }
                p.matcher.is_match(if p.cased { s.text } else { s.lower })
            }
            Pattern::Null => false,
            Pattern::Exists(e) => *e,
            // A text without any of the literals every match contains
            // cannot match: most regexes a hunt reaches are then never
            // compiled (33 of the 54 a hunt over the corpus compiled with
            // SigmaHQ's Windows rules, 0.1-0.7 ms each).
            Pattern::Regex(re, required) => {
                required
                    .as_ref()
                    .is_none_or(|lits| lits.iter().any(|l| s.lower.contains(l.as_str())))
                    && re.is_match(s.text)
            }
            Pattern::Cmp(op, n) => match s.value.as_f64() {
                Some(v) => match op {
                    CmpOp::Lt => v < *n,
                    CmpOp::Lte => v <= *n,
                    CmpOp::Gt => v > *n,
                    CmpOp::Gte => v >= *n,
                },
                None => false,
            },
            Pattern::Time(part, n) => time_part(s.text, *part) == Some(*n),
            Pattern::Cidr((net, len)) => match s.text.trim().parse::<IpAddr>() {
                Ok(ip) => in_network(ip, *net, *len),
                Err(_) => false,
            },
            Pattern::FieldRef { .. } => false,
        }
    }

    /// Whether the pattern matches a field that is absent (`present ==
    /// false`) or null.
    pub fn matches_missing(&self, present: bool) -> bool {
        match self {
            Pattern::Null => true,
            Pattern::Exists(e) => *e == present,
            _ => false,
        }
    }
}

/// Compares two texts the way a field reference does.
pub fn compare_shape(shape: Shape, a: &str, b: &str) -> bool {
    match shape {
        Shape::Exact => a == b,
        Shape::Contains => a.contains(b),
        Shape::StartsWith => a.starts_with(b),
        Shape::EndsWith => a.ends_with(b),
    }
}

fn in_network(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            (u32::from(ip) & mask) == (u32::from(net) & mask)
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            (u128::from(ip) & mask) == (u128::from(net) & mask)
        }
        // An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is the IPv4
        // address it carries.
        (IpAddr::V6(ip), IpAddr::V4(_)) => match ip.to_ipv4_mapped() {
            Some(v4) => in_network(IpAddr::V4(v4), net, len),
            None => false,
        },
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

/// Extracts a component from an ISO 8601 / RFC 3339 timestamp (`2024-03-05T10:20:30Z`,
/// `2024-03-05 10:20:30.123`), or from Unix epoch seconds or milliseconds.
pub fn time_part(text: &str, part: TimePart) -> Option<i64> {
    let t = text.trim();
    let (y, mo, d, h, mi) = if let Ok(epoch) = t.parse::<i64>() {
        let secs = if epoch.abs() > 100_000_000_000 {
            epoch / 1000
        } else {
            epoch
        };
        civil_from_epoch(secs)
    } else {
        let b = t.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> { t.get(r)?.parse().ok() };
        if b.len() < 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
            return None;
        }
        let (h, mi) = if b.len() >= 16 && matches!(b[10], b'T' | b't' | b' ') {
            (num(11..13)?, num(14..16)?)
        } else {
            (0, 0)
        };
        (num(0..4)?, num(5..7)?, num(8..10)?, h, mi)
    };
    Some(match part {
        TimePart::Minute => mi,
        TimePart::Hour => h,
        TimePart::Day => d,
        TimePart::Month => mo,
        TimePart::Year => y,
        TimePart::Week => iso_week(y, mo, d),
    })
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_epoch(secs: i64) -> (i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d, rem / 3600, rem % 3600 / 60)
}

fn iso_week(y: i64, m: i64, d: i64) -> i64 {
    let days = days_from_civil(y, m, d);
    // 1970-01-01 was a Thursday; ISO weekday 1 = Monday.
    let weekday = (days + 3).rem_euclid(7) + 1;
    let thursday = days - weekday + 4;
    let (ty, _, _, _, _) = civil_from_epoch(thursday * 86400);
    let jan1 = days_from_civil(ty, 1, 1);
    (thursday - jan1) / 7 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regex_read_back_compiles_on_first_use_and_a_broken_one_matches_nothing() {
        let re = RuleRegex::compiled(crate::modifier::build_regex("(?i)^who").expect("compiles"));
        let bytes = postcard::to_allocvec(&re).expect("encode");
        let back: RuleRegex = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back.as_str(), "(?i)^who");
        assert!(back.compiled.get().is_none(), "not compiled on load");
        assert!(back.is_match("WHOami") && !back.is_match("x whoami"));
        assert!(back.compiled.get().is_some());

        let broken: RuleRegex =
            postcard::from_bytes(&postcard::to_allocvec("a(").expect("encode")).expect("decode");
        assert!(!broken.is_match("a("));
    }

    /// A text that holds none of the literals every match needs is no
    /// match, and the regex is not compiled for it; one that holds one is
    /// matched by the regex itself (here, case-sensitively).
    #[test]
    fn a_regex_is_compiled_only_for_a_text_holding_a_required_literal() {
        let stored = RuleRegex::compiled(
            crate::modifier::build_regex(r"net\s+user\s+\w+").expect("compiles"),
        );
        let bytes = postcard::to_allocvec(&stored).expect("encode");
        let back: RuleRegex = postcard::from_bytes(&bytes).expect("decode");
        let pattern = Pattern::Regex(Box::new(back), Some(vec!["net".into()]));
        let scalar = |text: &'static str, lower: &'static str| Scalar {
            value: Box::leak(Box::new(Value::Str(text.into()))),
            text,
            lower,
        };
        assert!(!pattern.matches(scalar("whoami /all", "whoami /all")));
        let Pattern::Regex(re, _) = &pattern else {
            unreachable!()
        };
        assert!(
            re.compiled.get().is_none(),
            "compiled for a text without 'net'"
        );
        assert!(!pattern.matches(scalar("NET USER bob", "net user bob")));
        assert!(re.compiled.get().is_some());
        assert!(pattern.matches(scalar("net  user bob", "net  user bob")));
    }

    #[test]
    fn cidr_v4_v6() {
        let net4 = ("10.0.0.0".parse().unwrap(), 8);
        let p = Pattern::Cidr(net4);
        let s = |t: &'static str| Scalar {
            value: Box::leak(Box::new(Value::from(t))),
            text: t,
            lower: t,
        };
        assert!(p.matches(s("10.1.2.3")));
        assert!(!p.matches(s("11.1.2.3")));
        assert!(p.matches(s("::ffff:10.9.9.9")));
        assert!(!p.matches(s("not an ip")));
        let p6 = Pattern::Cidr(("2001:db8::".parse().unwrap(), 32));
        assert!(p6.matches(s("2001:db8:1::1")));
        assert!(!p6.matches(s("2001:db9::1")));
        assert!(Pattern::Cidr(("0.0.0.0".parse().unwrap(), 0)).matches(s("1.2.3.4")));
    }

    #[test]
    fn time_parts() {
        let t = "2024-12-30T23:59:01.5Z";
        assert_eq!(time_part(t, TimePart::Year), Some(2024));
        assert_eq!(time_part(t, TimePart::Month), Some(12));
        assert_eq!(time_part(t, TimePart::Day), Some(30));
        assert_eq!(time_part(t, TimePart::Hour), Some(23));
        assert_eq!(time_part(t, TimePart::Minute), Some(59));
        // 2024-12-30 is a Monday in ISO week 1 of 2025.
        assert_eq!(time_part(t, TimePart::Week), Some(1));
        assert_eq!(time_part("2021-01-03", TimePart::Week), Some(53));
        assert_eq!(time_part("2024-06-15 08:30:00", TimePart::Week), Some(24));
        assert_eq!(time_part("0", TimePart::Year), Some(1970));
        assert_eq!(time_part("nonsense", TimePart::Year), None);
    }
}
