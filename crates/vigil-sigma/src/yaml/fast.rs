//! A fast reader for the plain block YAML that Sigma rules are written in.
//!
//! Why our own: reading YAML was half of the start-up of a hunt (2,407
//! SigmaHQ rules, 3.9 MB, 45 ms of one core through `yaml-rust2`), and
//! nearly every rule uses only block mappings and sequences of one-line
//! scalars, `|` block text and the odd one-line flow list. This reader
//! handles exactly that subset, line by line, and builds the same
//! [`Node`] tree as the full parser; on anything else — anchors, tags,
//! flow mappings, multi-line plain or quoted scalars, tabs, duplicate
//! keys, any syntax error — it gives up (`None`) and the caller runs the
//! full parser, which then also writes the error messages. So the subset
//! can only make reading faster, never different: the tests compare the
//! two on every SigmaHQ rule and on generated input.

use super::{Node, NodeKind};

/// Parses `src` if it lies in the subset; `None` when the full parser
/// must decide.
pub(super) fn parse(src: &str) -> Option<Vec<Node>> {
    if src.contains(['\t', '\r']) || src.starts_with('\u{feff}') {
        return None;
    }
    let lines: Vec<&str> = src.split('\n').collect();
    let mut docs = Vec::new();
    let mut start = 0;
    let mut first = true;
    for (i, line) in lines.iter().enumerate() {
        if is_doc_marker(line)? {
            let chunk = Reader::new(&lines, start, i).document()?;
            match chunk {
                Some(node) => docs.push(node),
                // Only an empty stretch before the first marker is legal
                // here; an empty document elsewhere is left to the full
                // parser.
                None if first => {}
                None => return None,
            }
            first = false;
            start = i + 1;
        }
    }
    let last = Reader::new(&lines, start, lines.len()).document()?;
    docs.push(last?);
    Some(docs)
}

/// Whether the line is a document marker (`---` alone); `None` for any
/// other line the subset does not handle at the top (`...`, directives,
/// content after the marker).
fn is_doc_marker(line: &str) -> Option<bool> {
    if line.starts_with("...") || line.starts_with('%') {
        return None;
    }
    match line.strip_prefix("---") {
        Some(rest) if rest.trim_end().is_empty() => Some(true),
        Some(rest) if rest.starts_with(' ') && rest.trim_start().starts_with('#') => Some(true),
        Some(rest) if rest.starts_with([' ', '\n']) => None,
        _ => Some(false),
    }
}

/// A line's indentation and its text after it.
#[derive(Clone, Copy)]
struct Line<'a> {
    indent: usize,
    text: &'a str,
    /// 1-based line number.
    no: usize,
}

/// The lines of one document and a cursor over them.
struct Reader<'a> {
    lines: &'a [&'a str],
    pos: usize,
    end: usize,
    /// The rest of a `- key: value` line, read as a line of its own.
    pending: Option<Line<'a>>,
}

impl<'a> Reader<'a> {
    fn new(lines: &'a [&'a str], start: usize, end: usize) -> Self {
        Reader {
            lines,
            pos: start,
            end,
            pending: None,
        }
    }

    /// The document's root node: `Some(None)` for a document without
    /// content.
    fn document(mut self) -> Option<Option<Node>> {
        let Some(first) = self.peek() else {
            return Some(None);
        };
        let node = self.block(first.indent)?;
        // Everything must have been consumed.
        match self.peek() {
            None => Some(Some(node)),
            Some(_) => None,
        }
    }

    /// The next line with content (not blank, not a comment).
    fn peek(&mut self) -> Option<Line<'a>> {
        if let Some(p) = self.pending {
            return Some(p);
        }
        while self.pos < self.end {
            let raw = self.lines[self.pos];
            let text = raw.trim_start_matches(' ');
            if text.trim_end().is_empty() || text.starts_with('#') {
                self.pos += 1;
                continue;
            }
            return Some(Line {
                indent: raw.len() - text.len(),
                text,
                no: self.pos + 1,
            });
        }
        None
    }

    /// The line of what follows the document: the next `---`, or the end
    /// of the input (the line after its last line break).
    fn next_token_line(&self) -> usize {
        if self.end == self.lines.len() {
            self.end
        } else {
            self.end + 1
        }
    }

    fn advance(&mut self) {
        if self.pending.take().is_none() {
            self.pos += 1;
        }
    }

    /// The block node starting at the next line, which has `indent`.
    fn block(&mut self, indent: usize) -> Option<Node> {
        let line = self.peek()?;
        if line.indent != indent {
            return None;
        }
        if is_entry(line.text) {
            self.sequence(indent, false)
        } else {
            self.mapping(indent)
        }
    }

    /// A block sequence whose `-` sit at `indent`. `in_map`: it is the
    /// value of a mapping key at the same indentation (`key:` then `- x`
    /// below it), so a key line ends it.
    fn sequence(&mut self, indent: usize, in_map: bool) -> Option<Node> {
        let first = self.peek()?;
        let mut items = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent < indent {
                break;
            }
            if line.indent > indent || !is_entry(line.text) {
                if line.indent == indent && in_map {
                    break;
                }
                return None;
            }
            let rest = &line.text[1..];
            let content = rest.trim_start_matches(' ');
            let col = indent + 1 + (rest.len() - content.len());
            if content.is_empty() || content.starts_with('#') || is_entry(content) {
                // An item on the following lines, or a nested `- - x`.
                return None;
            }
            if self.pending.is_none() && split_key(content).is_some() {
                // `- key: value`: a mapping whose keys sit at `col`.
                self.advance();
                self.pending = Some(Line {
                    indent: col,
                    text: content,
                    no: line.no,
                });
                items.push(self.mapping(col)?);
                continue;
            }
            let value = self.inline_value(content, line.no, indent)?;
            items.push(value);
        }
        Some(Node {
            kind: NodeKind::Seq(items),
            line: first.no,
        })
    }

    /// A block mapping whose keys sit at `indent`.
    fn mapping(&mut self, indent: usize) -> Option<Node> {
        let first = self.peek()?;
        let mut entries: Vec<(Node, Node)> = Vec::new();
        while let Some(line) = self.peek() {
            if line.indent < indent {
                break;
            }
            if line.indent > indent {
                return None;
            }
            let (key, rest) = split_key(line.text)?;
            let key = Node {
                kind: NodeKind::Scalar {
                    text: key.0,
                    quoted: key.1,
                },
                line: line.no,
            };
            let name = key.as_str().unwrap_or_default();
            if entries.iter().any(|(k, _)| k.as_str() == Some(name)) {
                return None;
            }
            let rest = rest.trim_start_matches(' ');
            let value = if rest.is_empty() || rest.starts_with('#') {
                self.advance();
                match self.peek() {
                    Some(next) if next.indent > indent => self.block(next.indent)?,
                    Some(next) if next.indent == indent && is_entry(next.text) => {
                        self.sequence(indent, true)?
                    }
                    // `key:` and nothing under it: null, placed where the
                    // full parser places it (at the next token).
                    next => Node {
                        kind: NodeKind::Scalar {
                            text: String::new(),
                            quoted: false,
                        },
                        line: next.map_or(self.next_token_line(), |n| n.no),
                    },
                }
            } else {
                self.inline_value(rest, line.no, indent)?
            };
            entries.push((key, value));
        }
        Some(Node {
            kind: NodeKind::Map(entries),
            line: first.no,
        })
    }

    /// The value written after `key:` or `- ` on the current line:
    /// consumes that line, and a block scalar's lines. `parent` is the
    /// indentation of the key or entry.
    fn inline_value(&mut self, text: &'a str, no: usize, parent: usize) -> Option<Node> {
        self.advance();
        let node = |kind| Node { kind, line: no };
        let value = match text.as_bytes()[0] {
            b'\'' => {
                let (s, rest) = single_quoted(text)?;
                end_of_value(rest)?;
                node(NodeKind::Scalar {
                    text: s,
                    quoted: true,
                })
            }
            b'"' => {
                let (s, rest) = double_quoted(text)?;
                end_of_value(rest)?;
                node(NodeKind::Scalar {
                    text: s,
                    quoted: true,
                })
            }
            b'[' => node(NodeKind::Seq(flow_sequence(text, no)?)),
            b'|' => {
                // The full parser places a block scalar at its first line
                // of text.
                let first_line = self.pos + 1;
                let chomp = match text[1..].trim_end_matches(' ') {
                    "" => Chomp::Clip,
                    "-" => Chomp::Strip,
                    "+" => Chomp::Keep,
                    _ => return None,
                };
                Node {
                    kind: NodeKind::Scalar {
                        text: self.literal_block(parent, chomp)?,
                        quoted: true,
                    },
                    line: first_line,
                }
            }
            _ => node(NodeKind::Scalar {
                text: plain(text)?.to_string(),
                quoted: false,
            }),
        };
        // A more indented line right after a one-line value would continue
        // it (a multi-line scalar) or be an error: not for this reader.
        if !text.starts_with('|') && self.peek().is_some_and(|next| next.indent > parent) {
            return None;
        }
        Some(value)
    }

    /// The lines of a `|` block scalar, whose indicator line is already
    /// consumed; its content is indented more than `parent`.
    fn literal_block(&mut self, parent: usize, chomp: Chomp) -> Option<String> {
        if self.pending.is_some() {
            return None;
        }
        let mut indent = None;
        let mut out = String::new();
        let mut blank_run = 0;
        while self.pos < self.end {
            let raw = self.lines[self.pos];
            let text = raw.trim_start_matches(' ');
            let spaces = raw.len() - text.len();
            if text.is_empty() {
                match indent {
                    // Leading blank lines: the full parser decides.
                    None => return None,
                    Some(n) if spaces > n => return None,
                    Some(_) => {
                        blank_run += 1;
                        self.pos += 1;
                        continue;
                    }
                }
            }
            let n = *indent.get_or_insert(spaces);
            if spaces < n {
                break;
            }
            if n <= parent {
                return None;
            }
            for _ in 0..blank_run {
                out.push('\n');
            }
            blank_run = 0;
            out.push_str(&raw[n..]);
            out.push('\n');
            self.pos += 1;
        }
        indent?;
        if blank_run > 0 && matches!(chomp, Chomp::Keep) {
            // Kept trailing blank lines: where the full parser draws the
            // line is not worth copying.
            return None;
        }
        match chomp {
            Chomp::Clip => {}
            Chomp::Strip => {
                out.pop();
            }
            Chomp::Keep => {
                for _ in 0..blank_run {
                    out.push('\n');
                }
            }
        }
        Some(out)
    }
}

/// Block scalar chomping: what happens to the final line breaks.
#[derive(Clone, Copy)]
enum Chomp {
    Clip,
    Strip,
    Keep,
}

/// Whether a line is a sequence entry (`- x` or a lone `-`).
fn is_entry(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// Splits `key: rest` into the key (text, quoted) and what follows the
/// colon; `None` when the line is not a simple key.
fn split_key(text: &str) -> Option<((String, bool), &str)> {
    let (key, after) = match text.as_bytes()[0] {
        b'\'' => {
            let (k, rest) = single_quoted(text)?;
            ((k, true), rest.strip_prefix(':')?)
        }
        b'"' => {
            let (k, rest) = double_quoted(text)?;
            ((k, true), rest.strip_prefix(':')?)
        }
        _ => {
            let colon = find_value_colon(text)?;
            let key = &text[..colon];
            if key.ends_with(' ') || plain(key)? != key {
                return None;
            }
            ((key.to_string(), false), &text[colon + 1..])
        }
    };
    if !(after.is_empty() || after.starts_with(' ')) {
        return None;
    }
    Some((key, after))
}

/// The byte offset of the colon that ends a plain key: the first `:`
/// followed by a space or the end of the line, before any comment.
fn find_value_colon(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    for i in 0..b.len() {
        match b[i] {
            b':' if b.get(i + 1).is_none_or(|&c| c == b' ') => return Some(i),
            b'#' if i > 0 && b[i - 1] == b' ' => return None,
            _ => {}
        }
    }
    None
}

/// A one-line plain scalar with any trailing comment removed; `None`
/// for what a plain scalar cannot be or this reader does not handle.
fn plain(text: &str) -> Option<&str> {
    let first = *text.as_bytes().first()?;
    match first {
        b'[' | b']' | b'{' | b'}' | b',' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\''
        | b'"' | b'%' | b'@' | b'`' | b'?' | b':' => return None,
        b'-' if text.len() == 1 || text.as_bytes()[1] == b' ' => return None,
        _ => {}
    }
    let b = text.as_bytes();
    let mut end = b.len();
    for i in 0..b.len() {
        match b[i] {
            b'#' if b[i - 1] == b' ' => {
                end = i;
                break;
            }
            b':' if b.get(i + 1).is_none_or(|&c| c == b' ') => return None,
            _ => {}
        }
    }
    let s = text[..end].trim_end_matches(' ');
    (!s.is_empty()).then_some(s)
}

/// After a quoted scalar or flow list: only spaces and a comment may
/// follow.
fn end_of_value(rest: &str) -> Option<()> {
    let t = rest.trim_start_matches(' ');
    (t.is_empty() || (t.starts_with('#') && t.len() < rest.len())).then_some(())
}

/// `'…'` on one line (`''` is a quote); the text and what follows.
fn single_quoted(text: &str) -> Option<(String, &str)> {
    let mut rest = &text[1..];
    let mut out = String::new();
    loop {
        let q = rest.find('\'')?;
        out.push_str(&rest[..q]);
        if rest[q + 1..].starts_with('\'') {
            out.push('\'');
            rest = &rest[q + 2..];
        } else {
            return Some((out, &rest[q + 1..]));
        }
    }
}

/// `"…"` on one line with the common escapes; the text and what follows.
fn double_quoted(text: &str) -> Option<(String, &str)> {
    let body = &text[1..];
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &body[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                let hex = |n: usize, chars: &mut std::str::CharIndices| -> Option<char> {
                    let mut v = 0u32;
                    for _ in 0..n {
                        v = v * 16 + chars.next()?.1.to_digit(16)?;
                    }
                    char::from_u32(v)
                };
                out.push(match e {
                    '\\' => '\\',
                    '"' => '"',
                    '/' => '/',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    'x' => hex(2, &mut chars)?,
                    'u' => hex(4, &mut chars)?,
                    _ => return None,
                });
            }
            c => out.push(c),
        }
    }
    None
}

/// `[a, 'b', c]` on one line, of one-word plain or quoted scalars.
fn flow_sequence(text: &str, no: usize) -> Option<Vec<Node>> {
    let mut rest = text[1..].trim_start_matches(' ');
    let mut items = Vec::new();
    if let Some(after) = rest.strip_prefix(']') {
        end_of_value(after)?;
        return Some(items);
    }
    loop {
        let (scalar, after) = match rest.as_bytes().first()? {
            b'\'' => {
                let (s, a) = single_quoted(rest)?;
                ((s, true), a)
            }
            b'"' => {
                let (s, a) = double_quoted(rest)?;
                ((s, true), a)
            }
            _ => {
                let end = rest.find([',', ']'])?;
                let word = rest[..end].trim_end_matches(' ');
                if word.is_empty()
                    || word.contains(['[', '{', '}', '#', ':', '\'', '"'])
                    || plain(word)? != word
                {
                    return None;
                }
                ((word.to_string(), false), &rest[end..])
            }
        };
        items.push(Node {
            kind: NodeKind::Scalar {
                text: scalar.0,
                quoted: scalar.1,
            },
            line: no,
        });
        let after = after.trim_start_matches(' ');
        if let Some(a) = after.strip_prefix(',') {
            rest = a.trim_start_matches(' ');
            if rest.starts_with(']') {
                return None;
            }
        } else {
            end_of_value(after.strip_prefix(']')?)?;
            return Some(items);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_full;
    use super::*;
    use proptest::prelude::*;

    /// The fast path either agrees with the full parser or defers to it.
    fn agrees(src: &str) -> bool {
        match parse(src) {
            None => true,
            Some(fast) => {
                assert_eq!(Ok(fast), parse_full(src), "input:\n{src}");
                true
            }
        }
    }

    #[test]
    fn takes_plain_rules() {
        let rule = "title: T\nid: 1\ntags:\n    - attack.t1\n    - 'x'\ndetection:\n    sel:\n        - A|contains: 'x'\n          B: \"C:\\\\w\"\n        - C: [a, 'b']\n    condition: |\n        sel\n        and not x\n\nlevel: high  # comment\n";
        let docs = parse(rule).expect("fast path");
        assert_eq!(Ok(docs), parse_full(rule));
        let two = "---\na: 1\n---\nb:\n  - yes\n  - 010\n";
        assert_eq!(parse(two).expect("fast path").len(), 2);
        assert!(agrees(two));
    }

    #[test]
    fn defers_what_it_does_not_handle() {
        for src in [
            "a: &x 1\nb: *x\n",
            "a: !tag 1\n",
            "a: {b: 1}\n",
            "a: b\n  c\n",
            "a: 'b\n  c'\n",
            "a:\tb\n",
            "a: 1\na: 2\n",
            "a: 1\n---\n",
            "a: b: c\n",
            "- - a\n",
            "? a\n: b\n",
            "a: >\n  x\n",
            "a: |2\n  x\n",
            "just a scalar\n",
            "",
        ] {
            assert!(parse(src).is_none(), "should defer: {src:?}");
        }
    }

    #[test]
    fn agrees_on_edge_cases() {
        for src in [
            "a:\nb: 1\n",
            "a: 1\nb:\n",
            "a: 1\nb:\n\n\n# c\n",
            "a:\n  b:\nc: 1\n",
            "a:\n- x\n- y\nb: 1\n",
            "a: |\n  x\n\n  y\nb: 1\n",
            "a: |-\n  x\n  y\n",
            "a: |+\n  x\n",
            "a: |\n    x\n      y\n",
            "- a: 1\n  b: 2\n- c\n",
            "a: 'it''s'\nb: \"q\\\"q \\x41 \\u00e9\"\n",
            "a: x #c\nb: x#y\nc: '#'\n",
            "a: []\nb: [ x , 'y' ]\n",
            "'quoted key': 1\n\"k\": 2\n",
            "a: -x\nb: C:\\Windows\\\nc: http://x/y?z=1\n",
            "--- # start\na: 1\n",
            "a: é ü\n",
            "a:    \n  - 1\n",
            "a:\n  -   x\n  -    k: v\n       j: w\n",
            "a:\n    - k: v\n      l:\n        - 1\n    - 2\n",
            "a: x:y\nb: 'a''b' # c\nc: \"\" \n",
            "a:\n  b: |\n    line # not a comment\n    - not a list\n  c: 1\n",
            "a: 'x'\n  # indented comment\nb: 2\n",
            "key with spaces: v\nk|re: '^a.*$'\n",
            "a: [a b, c]\nb: [1, 2, 3]\n",
            "a: |\n  x  \n  y\n",
            "a: |\n  x\n\n\n",
            "a: |-\n  x\n\nb: 1\n",
            "a: |\n  x\n# c\nb: 1\n",
        ] {
            assert!(agrees(src));
        }
    }

    fn scalar() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "x",
            "yes",
            "010",
            "1e3",
            "~",
            "null",
            "'q''s'",
            "\"d\\\"q\"",
            "\"\\x41\\t\"",
            "a: b",
            "a #b",
            "#c",
            "x#y",
            "C:\\Windows\\",
            "*.exe",
            "x:",
            "http://a:80/b",
            "[a, b]",
            "['a', \"b\"]",
            "[]",
            "[a,]",
            "- x",
            "-x",
            "é",
            "&a x",
            "*a",
            "!t x",
            "{a: 1}",
            "'open",
            "\"open",
            "|",
            "|-",
            "? x",
            ": x",
            "@x",
            "`x",
            "%x",
            "a\\b",
            "x  ",
            "'x' y",
            "\"\\q\"",
        ])
        .prop_map(str::to_string)
    }

    /// Random block YAML of Sigma's shape, with odd scalars, indentation
    /// and comments mixed in.
    fn document() -> impl Strategy<Value = String> {
        let line = (
            0usize..4,
            prop::sample::select(vec!["k", "a|contains", "'q'", "b", "k"]),
            prop::option::of(scalar()),
            0u8..8,
        );
        prop::collection::vec(line, 1..12).prop_map(|lines| {
            let mut out = String::new();
            for (depth, key, value, form) in lines {
                let pad = " ".repeat(depth * 2 + usize::from(form == 7));
                match (form, value) {
                    (0, Some(v)) => out.push_str(&format!("{pad}- {v}\n")),
                    (1, Some(v)) => out.push_str(&format!("{pad}- {key}: {v}\n")),
                    (2, _) => {
                        out.push_str(&format!("{pad}{key}: |\n{pad}    text\n{pad}    more\n"))
                    }
                    (3, _) => out.push_str("\n# comment\n"),
                    (4, _) => out.push_str("---\n"),
                    (_, Some(v)) => out.push_str(&format!("{pad}{key}: {v}\n")),
                    (_, None) => out.push_str(&format!("{pad}{key}:\n")),
                }
            }
            out
        })
    }

    proptest! {
        // About one generated document in eight lies in the subset; the
        // rest check that the fast path defers.
        #![proptest_config(ProptestConfig::with_cases(10000))]
        #[test]
        fn fast_path_never_differs(src in document()) {
            prop_assert!(agrees(&src));
        }
    }
}
