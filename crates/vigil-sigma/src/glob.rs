//! Sigma strings: wildcards, escapes, and the matcher a string compiles to.
//!
//! A Sigma value is text in which `*` stands for any run of characters and
//! `?` for exactly one; `\*`, `\?` and `\\` are the literal characters, and
//! a backslash before anything else is itself literal (so `C:\Windows\`
//! ends in a backslash). [`parse`] turns the text into [`Tok`]s;
//! [`StrMatcher::new`] picks the cheapest matcher for the shape: equality,
//! prefix, suffix, substring (with a precompiled `memmem` finder), or a
//! general glob.
//!
//! Our own glob matcher instead of a regex: every Sigma value compiles to
//! one, thousands per rule set, and the segment matcher below costs neither
//! compile time nor memory while matching in linear time for the `*`-only
//! shapes that make up nearly all rules.

use memchr::memmem;

/// One token of a Sigma string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A literal character.
    Lit(char),
    /// `*`: any run of characters, possibly empty.
    Star,
    /// `?`: exactly one character.
    One,
}

/// Parses Sigma wildcard syntax.
pub fn parse(text: &str) -> Vec<Tok> {
    let mut toks = Vec::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::One),
            '\\' => match chars.peek() {
                Some(&next @ ('*' | '?' | '\\')) => {
                    chars.next();
                    toks.push(Tok::Lit(next));
                }
                _ => toks.push(Tok::Lit('\\')),
            },
            c => toks.push(Tok::Lit(c)),
        }
    }
    toks
}

/// Literal tokens only, with no wildcard interpretation.
pub fn literal(text: &str) -> Vec<Tok> {
    text.chars().map(Tok::Lit).collect()
}

/// Whether any token is a wildcard.
pub fn has_wildcards(toks: &[Tok]) -> bool {
    toks.iter().any(|t| !matches!(t, Tok::Lit(_)))
}

/// Renders tokens back into Sigma syntax (escaping literals that need it).
pub fn render(toks: &[Tok]) -> String {
    let mut s = String::with_capacity(toks.len());
    for t in toks {
        match t {
            Tok::Star => s.push('*'),
            Tok::One => s.push('?'),
            Tok::Lit(c @ ('*' | '?' | '\\')) => {
                s.push('\\');
                s.push(*c);
            }
            Tok::Lit(c) => s.push(*c),
        }
    }
    s
}

/// A piece of a glob segment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Piece {
    Text(String),
    AnyChar,
}

/// A substring searcher built on first use (kept in a snapshot as its
/// needle alone).
///
/// Building a `memmem::Finder` costs about a microsecond; a rule set holds
/// thousands of them and an event reaches only the few its prefilter lets
/// through, so building them all up front would dominate the start-up of
/// a short hunt.
#[derive(Debug, Clone)]
pub struct LazyFinder {
    needle: String,
    /// Boxed: a built finder is ~300 bytes, and a rule set holds tens of
    /// thousands of needles of which a hunt builds a few hundred.
    finder: std::sync::OnceLock<Box<memmem::Finder<'static>>>,
}

impl LazyFinder {
    fn new(needle: String) -> Self {
        LazyFinder {
            needle,
            finder: std::sync::OnceLock::new(),
        }
    }

    /// The byte offset of the first occurrence of the needle in `hay`.
    fn find(&self, hay: &[u8]) -> Option<usize> {
        self.finder
            .get_or_init(|| Box::new(memmem::Finder::new(self.needle.as_bytes()).into_owned()))
            .find(hay)
    }

    /// The text searched for.
    pub fn needle(&self) -> &str {
        &self.needle
    }
}

impl serde::Serialize for LazyFinder {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.needle)
    }
}

impl<'de> serde::Deserialize<'de> for LazyFinder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(LazyFinder::new)
    }
}

/// A run of literal text and `?` between two `*` of a glob.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    pieces: Vec<Piece>,
    /// Finder for the leading text, to skip to candidate positions.
    finder: Option<LazyFinder>,
}

impl Segment {
    fn new(pieces: Vec<Piece>) -> Self {
        let finder = match pieces.first() {
            Some(Piece::Text(t)) => Some(LazyFinder::new(t.clone())),
            _ => None,
        };
        Segment { pieces, finder }
    }

    /// Matches the segment at byte `pos`; returns the end position.
    fn match_at(&self, text: &str, mut pos: usize) -> Option<usize> {
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => {
                    if !text.get(pos..)?.starts_with(t.as_str()) {
                        return None;
                    }
                    pos += t.len();
                }
                Piece::AnyChar => pos += text.get(pos..)?.chars().next()?.len_utf8(),
            }
        }
        Some(pos)
    }

    /// Finds the leftmost match starting at or after `from`; returns end.
    fn find(&self, text: &str, from: usize) -> Option<usize> {
        match &self.finder {
            Some(finder) => {
                let mut start = from;
                while let Some(i) = finder.find(text.as_bytes().get(start..)?) {
                    if let Some(end) = self.match_at(text, start + i) {
                        return Some(end);
                    }
                    start += i + 1;
                    // `start` may now sit inside a character; the finder
                    // only reports positions where the (valid UTF-8)
                    // needle starts, which are boundaries.
                }
                None
            }
            None => {
                let mut pos = from;
                loop {
                    if let Some(end) = self.match_at(text, pos) {
                        return Some(end);
                    }
                    pos += text.get(pos..)?.chars().next()?.len_utf8();
                }
            }
        }
    }
}

/// A compiled matcher for one Sigma string.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum StrMatcher {
    /// The whole text equals this.
    Exact(String),
    /// The text starts with this.
    Prefix(String),
    /// The text ends with this.
    Suffix(String),
    /// The text contains this.
    Contains(LazyFinder),
    /// Anything else: `*`-separated segments; the first is anchored at the
    /// start and the last at the end.
    Glob {
        /// Segments between stars.
        segments: Vec<Segment>,
        /// Whether the pattern starts with `*`.
        open_start: bool,
        /// Whether the pattern ends with `*`.
        open_end: bool,
    },
    /// `*`: any text.
    Any,
}

impl StrMatcher {
    /// Compiles tokens; when `lowercase` is set, literal text is lowercased
    /// (the caller then matches lowercased text).
    pub fn new(toks: &[Tok], lowercase: bool) -> Self {
        if let Some(m) = Self::simple(toks, lowercase) {
            return m;
        }
        let mut segments: Vec<Vec<Piece>> = vec![Vec::new()];
        for (i, t) in toks.iter().enumerate() {
            match t {
                Tok::Star => {
                    if !segments.last().is_some_and(|s| s.is_empty()) || segments.len() == 1 {
                        segments.push(Vec::new());
                    }
                }
                Tok::One => segments.last_mut().expect("non-empty").push(Piece::AnyChar),
                Tok::Lit(c) => {
                    let seg = segments.last_mut().expect("non-empty");
                    match seg.last_mut() {
                        Some(Piece::Text(s)) => s.push(*c),
                        _ => {
                            // Sized for the rest of the value: most values
                            // are one run of text.
                            let mut text = String::with_capacity(toks.len() - i);
                            text.push(*c);
                            seg.push(Piece::Text(text));
                        }
                    }
                }
            }
        }
        if lowercase {
            for seg in &mut segments {
                for p in seg.iter_mut() {
                    if let Piece::Text(s) = p {
                        if s.is_ascii() {
                            s.make_ascii_lowercase();
                        } else {
                            *s = lower(s);
                        }
                    }
                }
            }
        }
        let open_start = matches!(toks.first(), Some(Tok::Star));
        let open_end = matches!(toks.last(), Some(Tok::Star));
        // Drop the empty segments that a leading or trailing star leaves.
        let mut segs: Vec<Vec<Piece>> = segments.into_iter().filter(|s| !s.is_empty()).collect();
        let single_text = match segs.as_mut_slice() {
            [seg] => match seg.as_mut_slice() {
                [Piece::Text(t)] => Some(std::mem::take(t)),
                _ => None,
            },
            _ => None,
        };
        match (segs.len(), open_start, open_end, single_text) {
            (0, false, false, _) => StrMatcher::Exact(String::new()),
            (0, _, _, _) => StrMatcher::Any,
            (1, false, false, Some(t)) => StrMatcher::Exact(t),
            (1, false, true, Some(t)) => StrMatcher::Prefix(t),
            (1, true, false, Some(t)) => StrMatcher::Suffix(t),
            (1, true, true, Some(t)) => StrMatcher::Contains(LazyFinder::new(t)),
            (_, _, _, Some(t)) => {
                // Only reachable with one bare text segment, all handled
                // above; keep the text rather than lose it.
                segs[0] = vec![Piece::Text(t)];
                StrMatcher::Glob {
                    segments: segs.into_iter().map(Segment::new).collect(),
                    open_start,
                    open_end,
                }
            }
            _ => StrMatcher::Glob {
                segments: segs.into_iter().map(Segment::new).collect(),
                open_start,
                open_end,
            },
        }
    }

    /// The matcher for text with stars at most at its ends — nearly every
    /// Sigma value — built without the segment machinery (rule loading
    /// compiles tens of thousands of values). `None` for anything else.
    fn simple(toks: &[Tok], lowercase: bool) -> Option<Self> {
        let open_start = matches!(toks.first(), Some(Tok::Star));
        let open_end = matches!(toks.last(), Some(Tok::Star));
        let start = toks.iter().position(|t| *t != Tok::Star)?;
        let end = toks.iter().rposition(|t| *t != Tok::Star)? + 1;
        let mut text = String::with_capacity(end - start);
        for t in &toks[start..end] {
            match t {
                Tok::Lit(c) => text.push(*c),
                Tok::Star | Tok::One => return None,
            }
        }
        if lowercase {
            text = if text.is_ascii() {
                text.make_ascii_lowercase();
                text
            } else {
                lower(&text)
            };
        }
        Some(match (open_start, open_end) {
            (false, false) => StrMatcher::Exact(text),
            (false, true) => StrMatcher::Prefix(text),
            (true, false) => StrMatcher::Suffix(text),
            (true, true) => StrMatcher::Contains(LazyFinder::new(text)),
        })
    }

    /// Whether `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        match self {
            StrMatcher::Exact(s) => text == s,
            StrMatcher::Prefix(s) => text.starts_with(s.as_str()),
            StrMatcher::Suffix(s) => text.ends_with(s.as_str()),
            StrMatcher::Contains(f) => f.find(text.as_bytes()).is_some(),
            StrMatcher::Any => true,
            StrMatcher::Glob {
                segments,
                open_start,
                open_end,
            } => glob_match(segments, *open_start, *open_end, text),
        }
    }

    /// The literal text every match must contain, the longest one this
    /// matcher knows of (used to build the rule set's prefilter).
    pub fn required_literal(&self) -> Option<&str> {
        match self {
            StrMatcher::Exact(s) | StrMatcher::Prefix(s) | StrMatcher::Suffix(s) => {
                Some(s.as_str())
            }
            StrMatcher::Contains(f) => Some(f.needle()),
            StrMatcher::Any => None,
            StrMatcher::Glob { segments, .. } => segments
                .iter()
                .flat_map(|s| s.pieces.iter())
                .filter_map(|p| match p {
                    Piece::Text(t) => Some(t.as_str()),
                    Piece::AnyChar => None,
                })
                .max_by_key(|t| t.len()),
        }
        .filter(|s| !s.is_empty())
    }
}

fn glob_match(segments: &[Segment], open_start: bool, open_end: bool, text: &str) -> bool {
    let n = segments.len();
    if n == 0 {
        // Never compiled so (that is `Exact("")` or `Any`), but a rule
        // set loaded from a damaged snapshot must not panic.
        return open_start || open_end || text.is_empty();
    }
    let mut pos = 0;
    let mut first = 0;
    let mut last = n;
    if !open_start {
        match segments[0].match_at(text, 0) {
            Some(end) => pos = end,
            None => return false,
        }
        first = 1;
        if n == 1 && !open_end {
            return pos == text.len();
        }
    }
    // The last segment is anchored at the end: find where it must start.
    let mut end_limit = text.len();
    if !open_end && last > first {
        let seg = &segments[n - 1];
        // Try every start so that the segment ends exactly at the end; a
        // segment has a fixed length in characters, so walk back by chars.
        let chars_needed: usize = seg
            .pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.chars().count(),
                Piece::AnyChar => 1,
            })
            .sum();
        let start = match text
            .char_indices()
            .rev()
            .nth(chars_needed.wrapping_sub(1))
            .map(|(i, _)| i)
        {
            Some(i) if chars_needed > 0 => i,
            _ if chars_needed == 0 => text.len(),
            _ => return false,
        };
        if start < pos || seg.match_at(text, start) != Some(text.len()) {
            return false;
        }
        end_limit = start;
        last = n - 1;
    } else if !open_end && last == first {
        // Only the anchored first segment, already matched above.
        return pos == text.len();
    }
    for seg in &segments[first..last] {
        match seg.find(text, pos) {
            Some(end) if end <= end_limit => pos = end,
            _ => return false,
        }
    }
    true
}

/// Lowercases text character by character, with an ASCII fast path.
///
/// Rule values and event text must be lowercased the same way, and
/// without context: `str::to_lowercase` turns a word-final `Σ` into `ς`,
/// so a value lowercased as a whole would not match the same word in an
/// event lowercased piece by piece.
pub fn lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    lower_into(s, &mut out);
    out
}

/// Lowercases `s` onto the end of `out`, as [`lower`] does.
pub fn lower_into(s: &str, out: &mut String) {
    if s.is_ascii() {
        push_ascii_lower(s, out);
        return;
    }
    // ASCII runs are copied and lowercased whole, even in a value with a
    // few other characters (a name with an accent, a typographic quote).
    let mut rest = s;
    while !rest.is_empty() {
        let ascii = rest
            .bytes()
            .position(|b| !b.is_ascii())
            .unwrap_or(rest.len());
        push_ascii_lower(&rest[..ascii], out);
        let mut chars = rest[ascii..].chars();
        if let Some(c) = chars.next() {
            out.extend(c.to_lowercase());
        }
        rest = chars.as_str();
    }
}

/// Appends ASCII `s` to `out`, lowercased.
fn push_ascii_lower(s: &str, out: &mut String) {
    let start = out.len();
    out.push_str(s);
    out[start..].make_ascii_lowercase();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lowercases_mixed_text_char_by_char() {
        for s in [
            "ABC",
            "Grüße AUS Köln",
            "İSTANBUL \u{212A}",
            "ΣΑΣ x",
            "",
            "é",
        ] {
            let want: String = s.chars().flat_map(char::to_lowercase).collect();
            let mut out = String::from("pre:");
            lower_into(s, &mut out);
            assert_eq!(out, format!("pre:{want}"), "{s}");
        }
    }

    fn m(p: &str, t: &str) -> bool {
        StrMatcher::new(&parse(p), false).is_match(t)
    }

    #[test]
    fn shapes() {
        assert!(matches!(
            StrMatcher::new(&parse("abc"), false),
            StrMatcher::Exact(_)
        ));
        assert!(matches!(
            StrMatcher::new(&parse("abc*"), false),
            StrMatcher::Prefix(_)
        ));
        assert!(matches!(
            StrMatcher::new(&parse("*abc"), false),
            StrMatcher::Suffix(_)
        ));
        assert!(matches!(
            StrMatcher::new(&parse("*abc*"), false),
            StrMatcher::Contains(..)
        ));
        assert!(matches!(
            StrMatcher::new(&parse("**abc**"), false),
            StrMatcher::Contains(..)
        ));
        assert!(matches!(
            StrMatcher::new(&parse("*"), false),
            StrMatcher::Any
        ));
        assert!(matches!(
            StrMatcher::new(&parse("a*b"), false),
            StrMatcher::Glob { .. }
        ));
    }

    #[test]
    fn escapes() {
        assert_eq!(
            parse(r"a\*b"),
            vec![Tok::Lit('a'), Tok::Lit('*'), Tok::Lit('b')]
        );
        assert_eq!(
            parse(r"a\\*"),
            vec![Tok::Lit('a'), Tok::Lit('\\'), Tok::Star]
        );
        assert_eq!(parse(r"C:\W\"), literal(r"C:\W\"));
        assert_eq!(parse(r"\?"), vec![Tok::Lit('?')]);
        assert!(m(r"C:\Windows\", r"C:\Windows\"));
        assert!(m(r"a\*b", "a*b"));
        assert!(!m(r"a\*b", "axxb"));
        assert!(m(r"*\\*", r"x\y"));
    }

    #[test]
    fn lowercasing_is_context_free() {
        assert_eq!(lower("ΟΔΟΣ"), "οδοσ");
        let m = StrMatcher::new(&parse("ΟΔΟΣ"), true);
        assert!(m.is_match(&lower("οδοΣ")));
    }

    #[test]
    fn globs() {
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "a-b-b-c"));
        assert!(!m("a*b*c", "a-c-b"));
        assert!(m("a?c", "abc"));
        assert!(m("a?c", "aéc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*b?", "abc"));
        assert!(!m("*b?", "ab"));
        assert!(m("?", "é"));
        assert!(!m("", "x"));
        assert!(m("", ""));
        assert!(m("*", ""));
        assert!(m("a*a", "aa"));
        assert!(!m("a*a", "a"));
        assert!(m("*aab", "aaab"));
        assert!(m("x*?*y", "x1y"));
        assert!(!m("x*?*y", "xy"));
    }

    fn oracle(pattern: &[Tok], text: &str) -> bool {
        let mut re = String::from("(?s)^");
        for t in pattern {
            match t {
                Tok::Star => re.push_str(".*"),
                Tok::One => re.push('.'),
                Tok::Lit(c) => re.push_str(&regex::escape(&c.to_string())),
            }
        }
        re.push('$');
        regex::Regex::new(&re).unwrap().is_match(text)
    }

    fn tok() -> impl Strategy<Value = Tok> {
        prop_oneof![
            Just(Tok::Star),
            Just(Tok::One),
            Just(Tok::Lit('a')),
            Just(Tok::Lit('b')),
            Just(Tok::Lit('é')),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn glob_agrees_with_regex(pattern in prop::collection::vec(tok(), 0..7), text in "[abé]{0,8}") {
            let matcher = StrMatcher::new(&pattern, false);
            prop_assert_eq!(matcher.is_match(&text), oracle(&pattern, &text), "pattern {:?}", pattern);
        }

        #[test]
        fn render_parse_roundtrip(pattern in prop::collection::vec(prop_oneof![tok(), Just(Tok::Lit('\\')), Just(Tok::Lit('*'))], 0..8)) {
            prop_assert_eq!(parse(&render(&pattern)), pattern);
        }
    }
}
