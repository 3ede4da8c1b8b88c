//! Value modifiers: parsing `field|mod1|mod2` and applying the chain to a
//! rule value, producing the [`Pattern`]s a field item matches with.
//!
//! Modifiers apply left to right, as in pySigma: transformations (`windash`,
//! `wide`, `base64offset`, `expand`, …) rewrite the value, and the match
//! shape modifiers (`contains`, `startswith`, `endswith`) add wildcards.
//! Combinations that make no sense (`re|contains`, `base64` of a wildcard
//! string, `i` without `re`) are refused with a reason.

use crate::glob::{self, Tok};
use crate::pattern::{CmpOp, Pattern, RuleRegex, StrPattern, TimePart};
use base64::Engine as _;
use std::collections::HashMap;
use std::net::IpAddr;

/// A value modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modifier {
    /// `contains`
    Contains,
    /// `startswith`
    StartsWith,
    /// `endswith`
    EndsWith,
    /// `all`: every value of the list must match.
    All,
    /// `exists`
    Exists,
    /// `cased`: case-sensitive.
    Cased,
    /// `neq`: the field differs from every value.
    Neq,
    /// `windash`
    Windash,
    /// `re`
    Re,
    /// `i` (regex flag)
    ReI,
    /// `m` (regex flag)
    ReM,
    /// `s` (regex flag)
    ReS,
    /// `base64`
    Base64,
    /// `base64offset`
    Base64Offset,
    /// `utf16le` / `wide`
    Utf16le,
    /// `utf16be`
    Utf16be,
    /// `utf16` (with byte-order mark)
    Utf16,
    /// `lt`
    Lt,
    /// `lte`
    Lte,
    /// `gt`
    Gt,
    /// `gte`
    Gte,
    /// `minute`, `hour`, `day`, `week`, `month`, `year`
    Time(TimePart),
    /// `cidr`
    Cidr,
    /// `expand`
    Expand,
    /// `fieldref`
    FieldRef,
}

impl Modifier {
    /// Parses one modifier name.
    pub fn parse(name: &str) -> Option<Modifier> {
        use Modifier::*;
        Some(match name {
            "contains" => Contains,
            "startswith" => StartsWith,
            "endswith" => EndsWith,
            "all" => All,
            "exists" => Exists,
            "cased" => Cased,
            "neq" => Neq,
            "windash" => Windash,
            "re" => Re,
            "i" | "ignorecase" => ReI,
            "m" | "multiline" => ReM,
            "s" | "dotall" => ReS,
            "base64" => Base64,
            "base64offset" => Base64Offset,
            "utf16le" | "wide" => Utf16le,
            "utf16be" => Utf16be,
            "utf16" => Utf16,
            "lt" => Lt,
            "lte" => Lte,
            "gt" => Gt,
            "gte" => Gte,
            "minute" => Time(TimePart::Minute),
            "hour" => Time(TimePart::Hour),
            "day" => Time(TimePart::Day),
            "week" => Time(TimePart::Week),
            "month" => Time(TimePart::Month),
            "year" => Time(TimePart::Year),
            "cidr" => Cidr,
            "expand" => Expand,
            "fieldref" => FieldRef,
            _ => return None,
        })
    }
}

/// A field key split into its field name and modifiers.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldKey {
    /// The field name; `None` for keyword (keyless) values.
    pub field: Option<String>,
    /// Modifiers in the order written.
    pub modifiers: Vec<Modifier>,
}

/// Parses `Field|mod1|mod2`.
///
/// # Errors
/// An unknown modifier, or an empty field name before modifiers.
pub fn parse_key(key: &str) -> Result<FieldKey, String> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let mut modifiers = Vec::new();
    for name in parts {
        match Modifier::parse(name) {
            Some(m) => modifiers.push(m),
            None => return Err(format!("unknown modifier '{name}'")),
        }
    }
    Ok(FieldKey {
        field: (!field.is_empty()).then(|| field.to_string()),
        modifiers,
    })
}

/// One rule value as written: its text, or null.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// A scalar's text; `plain` when it was unquoted in YAML.
    Text {
        /// The text as written.
        text: String,
        /// Whether the scalar was unquoted (so `4688` may be a number).
        plain: bool,
    },
    /// `null`, `~` or an empty unquoted scalar.
    Null,
}

/// What a value list compiles to for one field.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CompiledValues {
    /// The patterns; the item matches when any matches (or, with `all`,
    /// when every written value has a matching pattern).
    pub patterns: Vec<Pattern>,
    /// For each pattern, the index of the written value it came from: one
    /// value may compile to several alternatives (`windash`,
    /// `base64offset`, `expand`), which `all` treats as one.
    pub value_of: Vec<u32>,
    /// `all`: every pattern must match.
    pub all: bool,
    /// `neq`: the item matches when no pattern matches a present field.
    pub negate: bool,
    /// Placeholders (`expand`) with no configured values. A value that
    /// names one matches nothing; the rule still loads, with a warning.
    pub unresolved: Vec<String>,
}

/// Placeholder values for `expand`, by name without the `%`.
pub type Placeholders = HashMap<String, Vec<String>>;

/// The most alternatives one value may expand to (windash permutations and
/// placeholders multiply); past this the rule is refused rather than
/// compiling to something huge.
const MAX_ALTERNATIVES: usize = 4096;

/// Applies `modifiers` to `values`.
///
/// # Errors
/// A message naming the value and the reason when a combination is illegal
/// or a value cannot be used with a modifier.
pub fn compile_values(
    modifiers: &[Modifier],
    values: &[RawValue],
    placeholders: &Placeholders,
) -> Result<CompiledValues, String> {
    use Modifier::*;
    let has = |m: Modifier| modifiers.contains(&m);
    let is_re = has(Re);
    for m in modifiers {
        if matches!(m, ReI | ReM | ReS) && !is_re {
            return Err("regular expression flags (i, m, s) need the 're' modifier".into());
        }
    }
    let all = has(All);
    if all && values.len() < 2 {
        // The specification: "Single item values are not allowed to have
        // an all modifier as some back-ends cannot support it."
        return Err("'all' needs a list of at least two values".into());
    }
    if values.len() > 1 && values.contains(&RawValue::Null) {
        return Err("null cannot be part of a list of values; give it its own selection".into());
    }
    let negate = has(Neq);
    let cased = has(Cased);
    let shape_count = modifiers
        .iter()
        .filter(|m| matches!(m, Contains | StartsWith | EndsWith))
        .count();
    if shape_count > 1 {
        return Err("only one of contains, startswith, endswith may be used".into());
    }

    // Modifiers that stand alone with their own value type.
    if has(Exists) {
        if modifiers.iter().any(|m| !matches!(m, Exists)) {
            return Err("'exists' cannot be combined with other modifiers".into());
        }
        let [RawValue::Text { text, .. }] = values else {
            return Err("'exists' takes a single value, true or false".into());
        };
        return match text.to_ascii_lowercase().as_str() {
            "true" | "yes" => Ok(single(Pattern::Exists(true))),
            "false" | "no" => Ok(single(Pattern::Exists(false))),
            _ => Err(format!("'exists' takes true or false, not '{text}'")),
        };
    }
    let cmp = modifiers.iter().find_map(|m| match m {
        Lt => Some(CmpOp::Lt),
        Lte => Some(CmpOp::Lte),
        Gt => Some(CmpOp::Gt),
        Gte => Some(CmpOp::Gte),
        _ => None,
    });
    let time = modifiers.iter().find_map(|m| match m {
        Time(p) => Some(*p),
        _ => None,
    });
    let only = |allowed: &[Modifier], what: &str| -> Result<(), String> {
        match modifiers.iter().find(|m| !allowed.contains(m)) {
            Some(m) => Err(format!("'{what}' cannot be combined with {m:?}").to_lowercase()),
            None => Ok(()),
        }
    };
    let mut patterns = Vec::new();
    if is_re {
        only(&[Re, ReI, ReM, ReS, All, Neq, Cased], "re")?;
        for v in values {
            let text = text_of(v, "re")?;
            let pcre = ascii_classes(text);
            // The flags go inline, so that the pattern's text says it all
            // and a rule-set snapshot can rebuild it from that alone.
            let flags: String = [(ReI, 'i'), (ReM, 'm'), (ReS, 's')]
                .into_iter()
                .filter(|(m, _)| has(*m))
                .map(|(_, c)| c)
                .collect();
            let source = if flags.is_empty() {
                pcre.clone()
            } else {
                format!("(?{flags}){pcre}")
            };
            let re = build_regex(&source)
                .map_err(|e| format!("invalid regular expression '{text}': {e}"))?;
            let literals = regex_literals(&pcre, has(ReI), has(ReM), has(ReS));
            patterns.push(Pattern::Regex(Box::new(RuleRegex::compiled(re)), literals));
        }
        return Ok(CompiledValues::new(patterns, all, negate));
    }
    if let Some(op) = cmp {
        only(&[Lt, Lte, Gt, Gte, All, Neq], "lt/lte/gt/gte")?;
        if modifiers
            .iter()
            .filter(|m| matches!(m, Lt | Lte | Gt | Gte))
            .count()
            > 1
        {
            return Err("only one of lt, lte, gt, gte may be used".into());
        }
        for v in values {
            let text = text_of(v, "lt/lte/gt/gte")?;
            let n: f64 = text
                .trim()
                .parse()
                .map_err(|_| format!("'{text}' is not numeric; lt/lte/gt/gte compare numbers"))?;
            patterns.push(Pattern::Cmp(op, n));
        }
        return Ok(CompiledValues::new(patterns, all, negate));
    }
    if let Some(part) = time {
        only(&[Time(part), All, Neq], "time")?;
        for v in values {
            let text = text_of(v, "time")?;
            let n: i64 = text
                .trim()
                .parse()
                .map_err(|_| format!("'{text}' is not a whole number"))?;
            let (lo, hi) = part.range();
            if n < lo || n > hi {
                return Err(
                    format!("{part:?} value {n} is out of range {lo}..={hi}").to_lowercase()
                );
            }
            patterns.push(Pattern::Time(part, n));
        }
        return Ok(CompiledValues::new(patterns, all, negate));
    }
    if has(Cidr) {
        only(&[Cidr, All, Neq], "cidr")?;
        for v in values {
            let text = text_of(v, "cidr")?;
            patterns.push(Pattern::Cidr(parse_cidr(text)?));
        }
        return Ok(CompiledValues::new(patterns, all, negate));
    }
    if has(FieldRef) {
        only(
            &[FieldRef, Contains, StartsWith, EndsWith, Cased, All, Neq],
            "fieldref",
        )?;
        for v in values {
            let text = text_of(v, "fieldref")?;
            let shape = modifiers.iter().find_map(|m| match m {
                Contains => Some(Shape::Contains),
                StartsWith => Some(Shape::StartsWith),
                EndsWith => Some(Shape::EndsWith),
                _ => None,
            });
            patterns.push(Pattern::FieldRef {
                field: text.to_string(),
                local: usize::MAX,
                shape: shape.unwrap_or(Shape::Exact),
                cased,
            });
        }
        return Ok(CompiledValues::new(patterns, all, negate));
    }

    // String values through the transformation chain.
    let mut value_of = Vec::new();
    let mut unresolved = Vec::new();
    for (vi, v) in values.iter().enumerate() {
        let (text, plain) = match v {
            RawValue::Null => {
                if !modifiers.iter().all(|m| matches!(m, All | Neq)) {
                    return Err("null cannot be used with value modifiers".into());
                }
                patterns.push(Pattern::Null);
                value_of.push(vi as u32);
                continue;
            }
            RawValue::Text { text, plain } => (text, *plain),
        };
        let mut alts: Vec<SVal> = vec![SVal::Str(glob::parse(text))];
        for m in modifiers {
            alts = apply(*m, alts, placeholders, &mut unresolved)?;
            if alts.len() > MAX_ALTERNATIVES {
                return Err(format!(
                    "value '{text}' expands to more than {MAX_ALTERNATIVES} alternatives"
                ));
            }
        }
        let number = if plain && modifiers.is_empty() {
            plain_number(text)
        } else {
            None
        };
        for alt in alts {
            let toks = alt.into_toks();
            patterns.push(Pattern::Str(StrPattern::new(&toks, cased, number)));
            value_of.push(vi as u32);
        }
    }
    Ok(CompiledValues {
        patterns,
        value_of,
        all,
        negate,
        unresolved,
    })
}

impl CompiledValues {
    /// One pattern per written value.
    fn new(patterns: Vec<Pattern>, all: bool, negate: bool) -> Self {
        CompiledValues {
            value_of: (0..patterns.len() as u32).collect(),
            patterns,
            all,
            negate,
            unresolved: Vec::new(),
        }
    }

    /// The patterns grouped by the written value they came from.
    pub fn by_value(&self) -> impl Iterator<Item = &[Pattern]> + '_ {
        let v = &self.value_of;
        let mut start = 0;
        std::iter::from_fn(move || {
            if start >= v.len() {
                return None;
            }
            let end = (start..v.len())
                .find(|&i| v[i] != v[start])
                .unwrap_or(v.len());
            let group = &self.patterns[start..end];
            start = end;
            Some(group)
        })
    }
}

/// Rewrites the shorthand classes `\w \W \d \D \s \S \b \B` to their
/// ASCII meaning, as in PCRE (Sigma's regex dialect) without Unicode mode;
/// the `regex` crate would read them as Unicode classes, which match more
/// (any script's letters and digits) and compile to automata hundreds of
/// times larger (`\w{1,64}`: megabytes). Everything else is left as is.
pub(crate) fn ascii_classes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut chars = pattern.chars().peekable();
    let mut class_depth = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let (inside, outside) = match next {
                    'w' => ("[:word:]", "[[:word:]]"),
                    'W' => ("[:^word:]", "[^[:word:]]"),
                    'd' => ("[:digit:]", "[0-9]"),
                    'D' => ("[:^digit:]", "[^0-9]"),
                    's' => ("[:space:]", "[[:space:]]"),
                    'S' => ("[:^space:]", "[^[:space:]]"),
                    'b' if class_depth == 0 => ("", "(?-u:\\b)"),
                    'B' if class_depth == 0 => ("", "(?-u:\\B)"),
                    other => {
                        out.push('\\');
                        out.push(other);
                        continue;
                    }
                };
                out.push_str(if class_depth > 0 { inside } else { outside });
            }
            '[' => {
                // `[:word:]` inside a class is a POSIX class, not nesting.
                if class_depth > 0 && chars.peek() == Some(&':') {
                    out.push(c);
                    for d in chars.by_ref() {
                        out.push(d);
                        if d == ']' {
                            break;
                        }
                    }
                    continue;
                }
                class_depth += 1;
                out.push(c);
                // A `]` right after `[` or `[^` is a literal.
                if chars.peek() == Some(&'^') {
                    out.push(chars.next().expect("peeked"));
                }
                if chars.peek() == Some(&']') {
                    out.push(chars.next().expect("peeked"));
                }
            }
            ']' if class_depth > 0 => {
                class_depth -= 1;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// Literals of which every match of the regex must contain one
/// (lowercased): the regex's prefixes or suffixes, or a literal run
/// inside it, whichever is the most selective; `None` when there is no
/// short, finite set of them (as for `.*x`).
fn regex_literals(pattern: &str, i: bool, m: bool, s: bool) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = regex_syntax::ParserBuilder::new()
        .case_insensitive(i)
        .multi_line(m)
        .dot_matches_new_line(s)
        .build()
        .parse(pattern)
        .ok()?;
    let mut best = required_literals(&hir);
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        let mut ex = Extractor::new();
        ex.kind(kind).limit_total(MAX_REQUIRED);
        let seq = ex.extract(&hir);
        let Some(lits) = seq.literals() else {
            continue;
        };
        if lits.is_empty() || lits.iter().any(|l| l.as_bytes().len() < 2) {
            continue;
        }
        let mut out: Vec<String> = lits
            .iter()
            .filter_map(|l| {
                std::str::from_utf8(l.as_bytes())
                    .ok()
                    .map(crate::glob::lower)
            })
            .collect();
        if out.len() != lits.len() {
            continue;
        }
        out.sort();
        out.dedup();
        keep_better(&mut best, out);
    }
    best
}

/// Most alternatives a regex's required literals may have.
const MAX_REQUIRED: usize = 64;

/// Replaces `best` with `candidate` when its shortest literal is longer,
/// or as long with fewer alternatives.
fn keep_better(best: &mut Option<Vec<String>>, candidate: Vec<String>) {
    let score = |lits: &[String]| {
        let min = lits.iter().map(String::len).min().unwrap_or(0);
        (min, std::cmp::Reverse(lits.len()))
    };
    if !candidate.is_empty() && best.as_ref().is_none_or(|b| score(&candidate) > score(b)) {
        *best = Some(candidate);
    }
}

/// Literals (lowercased) of which every match of `hir` contains one,
/// found anywhere in it: runs of literal characters in a concatenation,
/// what every branch of an alternation requires, what a repetition of at
/// least one requires. Finds `werfaultsecure` in
/// `(?i)\.exe\s+[^"]{0,64}werfaultsecure`, where prefixes give only
/// `.exe`.
fn required_literals(hir: &regex_syntax::hir::Hir) -> Option<Vec<String>> {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Literal(_) | HirKind::Class(_) => literal_text(hir).map(|t| vec![t]),
        HirKind::Capture(c) => required_literals(&c.sub),
        HirKind::Repetition(r) if r.min >= 1 => required_literals(&r.sub),
        HirKind::Alternation(branches) => {
            let mut out = Vec::new();
            for b in branches {
                out.extend(required_literals(b)?);
                if out.len() > MAX_REQUIRED {
                    return None;
                }
            }
            out.sort();
            out.dedup();
            Some(out)
        }
        HirKind::Concat(parts) => {
            let mut best = None;
            let mut run = String::new();
            for part in parts {
                if let Some(t) = literal_text(part) {
                    run.push_str(&t);
                    continue;
                }
                // Zero-width: the characters around it are adjacent.
                if matches!(part.kind(), HirKind::Look(_) | HirKind::Empty) {
                    continue;
                }
                if !run.is_empty() {
                    keep_better(&mut best, vec![std::mem::take(&mut run)]);
                }
                if let Some(inner) = required_literals(part) {
                    keep_better(&mut best, inner);
                }
            }
            if !run.is_empty() {
                keep_better(&mut best, vec![run]);
            }
            best
        }
        _ => None,
    }
}

/// The lowercased text that every match of `hir` lowercases to, when it
/// is a literal, or a class whose characters all lowercase alike (`[kK]`
/// and the Kelvin sign, from `(?i)k`). `(?i)s` also matches `ſ`, which
/// lowercases to itself, so it has none.
fn literal_text(hir: &regex_syntax::hir::Hir) -> Option<String> {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Literal(l) => std::str::from_utf8(&l.0).ok().map(crate::glob::lower),
        HirKind::Class(Class::Unicode(c)) => {
            let mut chars = c.iter().flat_map(|r| r.start()..=r.end());
            let first = crate::glob::lower(&chars.next()?.to_string());
            let mut count = 1;
            for ch in chars {
                count += 1;
                if count > 4 || crate::glob::lower(&ch.to_string()) != first {
                    return None;
                }
            }
            Some(first)
        }
        HirKind::Class(Class::Bytes(c)) => {
            let mut bytes = c.iter().flat_map(|r| r.start()..=r.end());
            let first = bytes.next()?;
            if !first.is_ascii() || bytes.any(|b| !b.is_ascii() || !b.eq_ignore_ascii_case(&first))
            {
                return None;
            }
            Some((first.to_ascii_lowercase() as char).to_string())
        }
        _ => None,
    }
}

fn single(p: Pattern) -> CompiledValues {
    CompiledValues::new(vec![p], false, false)
}

fn text_of<'a>(v: &'a RawValue, what: &str) -> Result<&'a str, String> {
    match v {
        RawValue::Text { text, .. } => Ok(text),
        RawValue::Null => Err(format!("null cannot be used with '{what}'")),
    }
}

/// A plain YAML number as written (`4688`, `-1`, `0.5`); such values also
/// match numeric event values by number.
///
/// Only canonical numbers count: `010` keeps its leading zero and stays the
/// string "010", as written.
fn plain_number(text: &str) -> Option<f64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let int_part = digits.split('.').next().unwrap_or_default();
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        || (int_part.len() > 1 && int_part.starts_with('0'))
    {
        return None;
    }
    text.parse::<f64>().ok()
}

/// Compiles a rule's regular expression (flags inline).
pub(crate) fn build_regex(source: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(source)
        // Rules are untrusted input: bound the compiled size so a hostile
        // pattern cannot exhaust memory. The regex crate matches in linear
        // time, so there is no ReDoS.
        .size_limit(32 << 20)
        .build()
}

/// How a field reference compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Shape {
    /// Equal.
    Exact,
    /// Contains.
    Contains,
    /// Starts with.
    StartsWith,
    /// Ends with.
    EndsWith,
}

/// A value on its way through the modifier chain: a Sigma string, or bytes
/// after an encoding modifier (wildcards kept as markers).
#[derive(Debug, Clone)]
enum SVal {
    Str(Vec<Tok>),
    Bytes(Vec<BTok>),
}

#[derive(Debug, Clone, Copy)]
enum BTok {
    Byte(u8),
    Star,
    One,
}

impl SVal {
    fn into_toks(self) -> Vec<Tok> {
        match self {
            SVal::Str(t) => t,
            // Bytes that were never base64-encoded are matched as Latin-1
            // text; nothing in an event's decoded strings looks like that,
            // which is the honest outcome of e.g. `wide` alone.
            SVal::Bytes(b) => b
                .into_iter()
                .map(|t| match t {
                    BTok::Byte(b) => Tok::Lit(char::from(b)),
                    BTok::Star => Tok::Star,
                    BTok::One => Tok::One,
                })
                .collect(),
        }
    }

    fn into_bytes(self) -> Vec<BTok> {
        match self {
            SVal::Bytes(b) => b,
            SVal::Str(toks) => {
                let mut out = Vec::with_capacity(toks.len());
                let mut buf = [0u8; 4];
                for t in toks {
                    match t {
                        Tok::Lit(c) => out.extend(c.encode_utf8(&mut buf).bytes().map(BTok::Byte)),
                        Tok::Star => out.push(BTok::Star),
                        Tok::One => out.push(BTok::One),
                    }
                }
                out
            }
        }
    }

    fn plain_bytes(self, what: &str) -> Result<Vec<u8>, String> {
        self.into_bytes()
            .into_iter()
            .map(|t| match t {
                BTok::Byte(b) => Ok(b),
                _ => Err(format!("'{what}' cannot encode a value with wildcards")),
            })
            .collect()
    }
}

fn apply(
    m: Modifier,
    alts: Vec<SVal>,
    placeholders: &Placeholders,
    unresolved: &mut Vec<String>,
) -> Result<Vec<SVal>, String> {
    use Modifier::*;
    let mut out = Vec::with_capacity(alts.len());
    for alt in alts {
        match m {
            Contains | StartsWith | EndsWith => {
                let mut toks = match alt {
                    SVal::Str(t) => t,
                    other => other.into_toks(),
                };
                if matches!(m, Contains | EndsWith) && toks.first() != Some(&Tok::Star) {
                    toks.insert(0, Tok::Star);
                }
                if matches!(m, Contains | StartsWith) && toks.last() != Some(&Tok::Star) {
                    toks.push(Tok::Star);
                }
                out.push(SVal::Str(toks));
            }
            Windash => {
                let toks = match alt {
                    SVal::Str(t) => t,
                    _ => return Err("'windash' must come before encoding modifiers".into()),
                };
                out.extend(windash(&toks).into_iter().map(SVal::Str));
            }
            Utf16le | Utf16be | Utf16 => {
                let toks = match alt {
                    SVal::Str(t) => t,
                    _ => return Err("value is already encoded".into()),
                };
                let mut bytes = Vec::with_capacity(toks.len() * 2);
                if m == Utf16 {
                    bytes.extend([BTok::Byte(0xFF), BTok::Byte(0xFE)]);
                }
                for t in toks {
                    match t {
                        Tok::Lit(c) => {
                            let mut units = [0u16; 2];
                            for u in c.encode_utf16(&mut units) {
                                let b = if m == Utf16be {
                                    u.to_be_bytes()
                                } else {
                                    u.to_le_bytes()
                                };
                                bytes.extend([BTok::Byte(b[0]), BTok::Byte(b[1])]);
                            }
                        }
                        Tok::Star => bytes.push(BTok::Star),
                        Tok::One => bytes.push(BTok::One),
                    }
                }
                out.push(SVal::Bytes(bytes));
            }
            Base64 => {
                let data = alt.plain_bytes("base64")?;
                let enc = base64::engine::general_purpose::STANDARD.encode(data);
                out.push(SVal::Str(glob::literal(&enc)));
            }
            Base64Offset => {
                let data = alt.plain_bytes("base64offset")?;
                for enc in base64_offsets(&data) {
                    out.push(SVal::Str(glob::literal(&enc)));
                }
            }
            Expand => {
                let toks = match alt {
                    SVal::Str(t) => t,
                    _ => return Err("'expand' must come before encoding modifiers".into()),
                };
                out.extend(
                    expand(&toks, placeholders, unresolved)
                        .into_iter()
                        .map(SVal::Str),
                );
            }
            Cased | All | Neq => out.push(alt),
            other => {
                return Err(format!("modifier {other:?} cannot be combined here").to_lowercase())
            }
        }
    }
    Ok(out)
}

/// The three base64 forms of `data` at byte offsets 0, 1 and 2 inside a
/// longer encoded string, with the characters that depend on the unknown
/// neighbouring bytes cut off (pySigma's algorithm).
pub fn base64_offsets(data: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END: [usize; 3] = [0, 3, 2];
    let mut out = Vec::with_capacity(3);
    for i in 0..3 {
        let mut buf = vec![b' '; i];
        buf.extend_from_slice(data);
        let enc = base64::engine::general_purpose::STANDARD.encode(&buf);
        let cut_end = END[(data.len() + i) % 3];
        let end = enc.len().saturating_sub(cut_end);
        let s = enc.get(START[i]..end).unwrap_or_default().to_string();
        if !s.is_empty() && !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Every dash variant Windows command lines accept in place of `-` or `/`.
const WINDASH: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// All permutations of dash characters at option positions: a `-` or `/`
/// that starts a word (preceded by start or a non-word character, followed
/// by a word character), as pySigma's `\B[-/]\b`.
fn windash(toks: &[Tok]) -> Vec<Vec<Tok>> {
    let is_word =
        |t: Option<&Tok>| matches!(t, Some(Tok::Lit(c)) if c.is_alphanumeric() || *c == '_');
    let positions: Vec<usize> = (0..toks.len())
        .filter(|&i| {
            matches!(toks[i], Tok::Lit('-' | '/'))
                && !is_word(i.checked_sub(1).and_then(|j| toks.get(j)))
                && is_word(toks.get(i + 1))
        })
        .collect();
    let mut out = vec![toks.to_vec()];
    for &pos in &positions {
        let mut next = Vec::with_capacity(out.len() * WINDASH.len());
        for v in &out {
            for dash in WINDASH {
                let mut w = v.clone();
                w[pos] = Tok::Lit(dash);
                next.push(w);
            }
        }
        out = next;
        if out.len() > MAX_ALTERNATIVES {
            break;
        }
    }
    out
}

/// Replaces `%name%` placeholders with each configured value. A
/// placeholder without values leaves no alternative (the value matches
/// nothing) and is recorded in `unresolved`.
fn expand(
    toks: &[Tok],
    placeholders: &Placeholders,
    unresolved: &mut Vec<String>,
) -> Vec<Vec<Tok>> {
    let mut out: Vec<Vec<Tok>> = vec![Vec::new()];
    let mut i = 0;
    while i < toks.len() {
        // `\%` is a literal percent sign, not a placeholder delimiter.
        if toks[i] == Tok::Lit('\\') && toks.get(i + 1) == Some(&Tok::Lit('%')) {
            for v in &mut out {
                v.push(Tok::Lit('%'));
            }
            i += 2;
            continue;
        }
        if toks[i] == Tok::Lit('%') {
            if let Some(len) = toks[i + 1..].iter().position(|t| *t == Tok::Lit('%')) {
                let name: String = toks[i + 1..i + 1 + len]
                    .iter()
                    .map(|t| match t {
                        Tok::Lit(c) => *c,
                        Tok::Star => '*',
                        Tok::One => '?',
                    })
                    .collect();
                if !name.is_empty() {
                    let Some(values) = placeholders.get(&name) else {
                        if !unresolved.contains(&name) {
                            unresolved.push(name);
                        }
                        return Vec::new();
                    };
                    let mut next = Vec::with_capacity(out.len() * values.len());
                    for prefix in &out {
                        for v in values {
                            let mut p = prefix.clone();
                            p.extend(glob::parse(v));
                            next.push(p);
                        }
                    }
                    out = next;
                    i += len + 2;
                    continue;
                }
            }
        }
        for v in &mut out {
            v.push(toks[i].clone());
        }
        i += 1;
    }
    out
}

fn parse_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = text.split_once('/').unwrap_or((text, ""));
    let ip: IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a network in CIDR notation"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u8 = if len.is_empty() {
        max
    } else {
        len.trim()
            .parse()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("'{text}' has an invalid prefix length"))?
    };
    Ok((ip, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64offset_matches_pysigma() {
        // pySigma's documented example for 'http://'.
        assert_eq!(
            base64_offsets(b"http://"),
            vec!["aHR0cDovL", "h0dHA6Ly", "odHRwOi8v"]
        );
    }

    #[test]
    fn windash_permutes_option_dashes_only() {
        let v = windash(&glob::parse("-a x-y /b"));
        assert_eq!(v.len(), 25);
        let rendered: Vec<String> = v.iter().map(|t| glob::render(t)).collect();
        assert!(rendered.contains(&"\u{2015}a x-y \u{2013}b".to_string()));
        assert!(rendered.iter().all(|s| s.contains("x-y")));
    }

    #[test]
    fn keys() {
        let k = parse_key("Image|endswith|cased").unwrap();
        assert_eq!(k.field.as_deref(), Some("Image"));
        assert_eq!(k.modifiers, vec![Modifier::EndsWith, Modifier::Cased]);
        assert!(parse_key("x|endwith")
            .unwrap_err()
            .contains("unknown modifier 'endwith'"));
        assert_eq!(parse_key("|all").unwrap().field, None);
    }

    #[test]
    fn shorthand_classes_are_ascii_as_in_pcre() {
        assert_eq!(ascii_classes(r"\w+\s\d"), r"[[:word:]]+[[:space:]][0-9]");
        assert_eq!(ascii_classes(r"[\w.-]+"), r"[[:word:].-]+");
        assert_eq!(ascii_classes(r"[^\W]"), r"[^[:^word:]]");
        assert_eq!(
            ascii_classes(r"\bcmd\b\.exe\\"),
            r"(?-u:\b)cmd(?-u:\b)\.exe\\"
        );
        assert_eq!(ascii_classes(r"[]\d]"), r"[][:digit:]]");
        let re = regex::Regex::new(&ascii_classes(r"^\w+$")).unwrap();
        assert!(re.is_match("abc_1"));
        assert!(!re.is_match("été"), "PCRE's \\w is ASCII");
        // The pattern that needed megabytes under Unicode classes.
        assert!(
            regex::RegexBuilder::new(&ascii_classes(r"-k\s\w{1,64}(?:\s?(?:-p|-s))?"))
                .size_limit(1 << 20)
                .build()
                .is_ok()
        );
    }

    #[test]
    fn regex_literals_are_necessary() {
        assert_eq!(
            regex_literals(r"\\(cmd|powershell)\.exe$", false, false, false),
            Some(vec![
                "\\cmd.exe".to_string(),
                "\\powershell.exe".to_string()
            ])
        );
        assert_eq!(regex_literals(r".*", false, false, false), None);
        assert_eq!(regex_literals(r"[a-z]+\d", false, false, false), None);
        assert_eq!(
            regex_literals(r"[a-z]+x", false, false, false),
            Some(vec!["x".to_string()])
        );
        let lits = regex_literals(r"(?i)AbC\d", false, false, false).unwrap();
        assert_eq!(lits, vec!["abc".to_string()]);
        // Inside the pattern, not only at its ends.
        let wsass = r#"(?i)\.exe["']?\s+[^"]{0,64}werfaultsecure\.exe["']?\s+\d{2,10}"#;
        assert_eq!(
            regex_literals(wsass, false, false, false),
            Some(vec!["ecure.exe".to_string()])
        );
        assert_eq!(
            regex_literals(r"\w+`(?:\w+|-|.)`[\w+|\s]", false, false, false),
            Some(vec!["`".to_string()])
        );
        assert_eq!(
            regex_literals(r"\d+(?:Foo|bar)+\d", false, false, false),
            Some(vec!["bar".to_string(), "foo".to_string()])
        );
        assert_eq!(
            regex_literals(r"\d+(?:foo|\w)\d", false, false, false),
            None
        );
        assert_eq!(regex_literals(r"\d(?:foo)?\d", false, false, false), None);
        // `(?i)s` matches `ſ`, which lowercases to itself: the run breaks.
        assert_eq!(
            regex_literals(r"(?i)\d+ab\d+sc\d", false, false, false),
            Some(vec!["ab".to_string()])
        );
    }

    /// Whatever a regex matches, its lowercased text contains one of the
    /// regex's required literals.
    #[test]
    fn required_literals_occur_in_every_match() {
        let cases = [
            (r"(?i)\d+werFault\s", "x 12WERFAULT  y"),
            (r"(?i)\d+KeLvIn\s", "1\u{212A}ELVIN "),
            (r"[a-c]+(?:One|two)+\.exe", "bOnetwo.exe"),
            (r"\w+`(?:\w+|-|.)`[\w+|\s]", "IN`V`o`Ke"),
        ];
        for (re, text) in cases {
            assert!(regex::Regex::new(re).unwrap().is_match(text), "{re}");
            let lits = regex_literals(re, false, false, false).unwrap();
            let lower = crate::glob::lower(text);
            assert!(
                lits.iter().any(|l| lower.contains(l.as_str())),
                "{re}: {lits:?}"
            );
        }
    }

    #[test]
    fn cidr_parsing() {
        assert!(parse_cidr("10.0.0.0/8").is_ok());
        assert!(parse_cidr("fe80::/10").is_ok());
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("nope").is_err());
    }
}
