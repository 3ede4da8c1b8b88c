//! A YAML tree that keeps every scalar exactly as written, with its line.
//!
//! Sigma values such as `yes`, `no`, `on`, `010` or `1e3` are strings to a
//! rule author, so this module does no type resolution at all: a scalar is
//! its source text plus whether it was quoted. Callers decide what a scalar
//! means (only an unquoted `null`, `~` or empty scalar is null; only an
//! unquoted `true`/`false` is a boolean). Lines are kept so that every
//! error can name where it is.

mod fast;

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML node with its 1-based source line.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// What the node holds.
    pub kind: NodeKind,
    /// 1-based line where the node starts.
    pub line: usize,
}

/// The content of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A scalar, as written, and whether it was quoted or a block scalar.
    Scalar {
        /// The scalar's text after YAML unescaping.
        text: String,
        /// `true` for quoted and block scalars, which are always strings.
        quoted: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar text, if the node is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Whether this is a null scalar (`null`, `~`, or nothing, unquoted).
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, quoted: false }
            if text.is_empty() || text == "~" || text == "null" || text == "Null" || text == "NULL")
    }

    /// The boolean an unquoted `true`/`false` stands for.
    pub fn as_bool(&self) -> Option<bool> {
        match &self.kind {
            NodeKind::Scalar {
                text,
                quoted: false,
            } => match text.as_str() {
                "true" | "True" | "TRUE" => Some(true),
                "false" | "False" | "FALSE" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// The mapping's entries, if the node is a mapping.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The sequence's items, if the node is a sequence.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value under scalar key `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// A short name of the node's kind, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } if self.is_null() => "null",
            NodeKind::Scalar { .. } => "scalar",
            NodeKind::Seq(_) => "list",
            NodeKind::Map(_) => "map",
        }
    }
}

/// A YAML syntax error with its 1-based line.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    /// 1-based line of the error.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses every document of a YAML stream (documents separated by `---`).
///
/// Plain rule files take a fast path (`fast.rs`) that builds the same tree;
/// anything it does not handle goes through `yaml-rust2`.
///
/// # Errors
/// A syntax error, with its line; duplicate keys in one mapping are an
/// error too, because a rule with two `condition:` keys is ambiguous.
pub fn parse_documents(src: &str) -> Result<Vec<Node>, YamlError> {
    match fast::parse(src) {
        Some(docs) => Ok(docs),
        None => parse_full(src),
    }
}

/// The fast path of [`parse_documents`] alone: `None` where it leaves the
/// input to the full parser (for tests that compare the two).
pub fn parse_fast(src: &str) -> Option<Vec<Node>> {
    fast::parse(src)
}

/// [`parse_documents`] through the full YAML parser only, skipping the fast
/// path for plain rule files (for tests that compare the two).
pub fn parse_full(src: &str) -> Result<Vec<Node>, YamlError> {
    let mut builder = TreeBuilder::default();
    let mut parser = Parser::new_from_str(src);
    parser.load(&mut builder, true).map_err(|e| YamlError {
        line: e.marker().line(),
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(builder.docs)
}

/// Nodes under construction, innermost last.
enum Open {
    Seq(Node, usize),
    Map(Node, usize, Option<Node>),
}

#[derive(Default)]
struct TreeBuilder {
    docs: Vec<Node>,
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    error: Option<YamlError>,
    /// Nodes copied in by aliases so far.
    alias_nodes: usize,
}

/// Aliases are resolved by copying; past this many copied nodes the input
/// is refused ("billion laughs": a few lines of nested aliases that expand
/// to gigabytes).
const MAX_ALIAS_NODES: usize = 100_000;

fn node_count(n: &Node) -> usize {
    match &n.kind {
        NodeKind::Scalar { .. } => 1,
        NodeKind::Seq(items) => 1 + items.iter().map(node_count).sum::<usize>(),
        NodeKind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| node_count(k) + node_count(v))
                .sum::<usize>()
        }
    }
}

impl TreeBuilder {
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Open::Seq(seq, _)) => {
                if let NodeKind::Seq(items) = &mut seq.kind {
                    items.push(node);
                }
            }
            Some(Open::Map(map, _, pending_key)) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    if let NodeKind::Map(entries) = &mut map.kind {
                        if let Some(k) = key.as_str() {
                            if entries.iter().any(|(e, _)| e.as_str() == Some(k))
                                && self.error.is_none()
                            {
                                self.error = Some(YamlError {
                                    line: key.line,
                                    message: format!("duplicate key '{k}'"),
                                });
                            }
                        }
                        entries.push((key, node));
                    }
                }
            },
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                let quoted = !matches!(style, TScalarStyle::Plain);
                self.finish(
                    Node {
                        kind: NodeKind::Scalar { text, quoted },
                        line,
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(
                Node {
                    kind: NodeKind::Seq(Vec::new()),
                    line,
                },
                anchor,
            )),
            Event::MappingStart(anchor, _) => self.stack.push(Open::Map(
                Node {
                    kind: NodeKind::Map(Vec::new()),
                    line,
                },
                anchor,
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(open) = self.stack.pop() {
                    let (node, anchor) = match open {
                        Open::Seq(n, a) | Open::Map(n, a, _) => (n, a),
                    };
                    self.finish(node, anchor);
                }
            }
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or(Node {
                    kind: NodeKind::Scalar {
                        text: String::new(),
                        quoted: false,
                    },
                    line,
                });
                self.alias_nodes = self.alias_nodes.saturating_add(node_count(&node));
                if self.alias_nodes > MAX_ALIAS_NODES {
                    if self.error.is_none() {
                        self.error = Some(YamlError {
                            line,
                            message: format!("aliases expand to more than {MAX_ALIAS_NODES} nodes"),
                        });
                    }
                    return;
                }
                self.finish(node, 0);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_stay_as_written() {
        let docs = parse_documents("a: yes\nb: 010\nc: 'on'\nd:\ne: ~\nf: 1e3\n").unwrap();
        let d = &docs[0];
        assert_eq!(d.get("a").unwrap().as_str(), Some("yes"));
        assert_eq!(d.get("b").unwrap().as_str(), Some("010"));
        assert_eq!(d.get("c").unwrap().as_str(), Some("on"));
        assert!(d.get("d").unwrap().is_null());
        assert!(d.get("e").unwrap().is_null());
        assert!(!d.get("c").unwrap().is_null());
        assert_eq!(d.get("f").unwrap().as_str(), Some("1e3"));
        assert_eq!(d.get("b").unwrap().line, 2);
    }

    #[test]
    fn quoted_null_is_a_string() {
        let docs = parse_documents("a: 'null'\nb: \"\"\n").unwrap();
        assert!(!docs[0].get("a").unwrap().is_null());
        assert!(!docs[0].get("b").unwrap().is_null());
    }

    #[test]
    fn multiple_documents() {
        let docs = parse_documents("a: 1\n---\nb: [x, y]\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].get("b").unwrap().as_seq().unwrap().len(), 2);
    }

    #[test]
    fn errors_carry_lines() {
        let err = parse_documents("a: 1\nb: [x\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
        let err = parse_documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("duplicate key 'a'"));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            text.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n", p = i - 1));
        }
        let err = parse_documents(&text).unwrap_err();
        assert!(err.message.contains("aliases expand"), "{err:?}");
    }

    #[test]
    fn aliases_resolve() {
        let docs = parse_documents("a: &x [1, 2]\nb: *x\n").unwrap();
        assert_eq!(docs[0].get("b").unwrap().as_seq().unwrap().len(), 2);
    }
}
