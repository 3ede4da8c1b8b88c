//! Sigma documents: detection rules and filters, parsed and validated.

use crate::condition::{self, Cond};
use crate::error::RuleError;
use crate::modifier::{self, CompiledValues, Modifier, Placeholders, RawValue};
use crate::pattern::Pattern;
use crate::yaml::{self, Node, NodeKind};
use std::sync::Arc;

/// A rule's severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Level {
    /// `informational`
    Informational,
    /// `low`
    Low,
    /// `medium`
    Medium,
    /// `high`
    High,
    /// `critical`
    Critical,
}

impl Level {
    /// Parses a level name.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "informational" => Level::Informational,
            "low" => Level::Low,
            "medium" => Level::Medium,
            "high" => Level::High,
            "critical" => Level::Critical,
            _ => return None,
        })
    }

    /// The level's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }
}

/// A rule's `logsource`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogSource {
    /// `product`
    pub product: Option<String>,
    /// `category`
    pub category: Option<String>,
    /// `service`
    pub service: Option<String>,
}

/// `product/category/service`, leaving out the keys not given
/// (`windows/file_access`).
impl std::fmt::Display for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = [&self.product, &self.category, &self.service];
        for (i, key) in keys.into_iter().flatten().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(key)?;
        }
        Ok(())
    }
}

/// One field item of a selection: `Image|endswith: [...]`, or a keyword
/// item when `field` is `None`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Item {
    /// Index into [`Detection::fields`]; `None` for keywords.
    pub field: Option<usize>,
    pub values: CompiledValues,
}

/// A named selection: an OR of AND-groups of items.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Selection {
    pub groups: Vec<Vec<Item>>,
}

/// A rule's detection: selections, the fields they name, and the condition.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Detection {
    pub names: Vec<String>,
    pub selections: Vec<Selection>,
    /// Field names used, indexed by [`Item::field`].
    pub fields: Vec<String>,
    pub cond: Cond,
    /// Problems that do not stop the rule from loading.
    pub warnings: Vec<RuleError>,
}

impl Detection {
    /// Appends `other` so that this detection matches only when `other`
    /// also does: a Sigma filter's condition says what to keep, usually
    /// `not selection` (filters specification; pySigma does the same).
    pub fn and_also(&mut self, other: &Detection, label: &str) {
        let sel_offset = self.selections.len();
        let mut field_map = Vec::with_capacity(other.fields.len());
        for f in &other.fields {
            field_map.push(self.field_index(f));
        }
        for (name, sel) in other.names.iter().zip(&other.selections) {
            let mut sel = sel.clone();
            for group in &mut sel.groups {
                for item in group {
                    item.field = item.field.map(|i| field_map[i]);
                    for p in &mut item.values.patterns {
                        if let Pattern::FieldRef { local, .. } = p {
                            *local = field_map[*local];
                        }
                    }
                }
            }
            self.names.push(format!("{label}:{name}"));
            self.selections.push(sel);
        }
        let mut cond = other.cond.clone();
        cond.shift(sel_offset);
        let own = std::mem::replace(&mut self.cond, Cond::And(Vec::new()));
        self.cond = Cond::And(vec![own, cond]);
    }

    fn field_index(&mut self, name: &str) -> usize {
        match self.fields.iter().position(|f| f == name) {
            Some(i) => i,
            None => {
                self.fields.push(name.to_string());
                self.fields.len() - 1
            }
        }
    }
}

/// A parsed, validated Sigma detection rule.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Rule {
    /// `title`
    pub title: String,
    /// `id`
    pub id: Option<String>,
    /// `name` (used by correlation rules to refer to this one)
    pub name: Option<String>,
    /// `status`
    pub status: Option<String>,
    /// `level`
    pub level: Option<Level>,
    /// `description`
    pub description: Option<String>,
    /// `author`
    pub author: Option<String>,
    /// `tags`
    pub tags: Vec<String>,
    /// `references`
    pub references: Vec<String>,
    /// `falsepositives`
    pub falsepositives: Vec<String>,
    /// `fields`
    pub fields: Vec<String>,
    /// `logsource`
    pub logsource: LogSource,
    /// A legacy aggregation after `|` in the condition, as written. The
    /// rule set matches the part before `|` on single events; what matches
    /// feeds the correlation [`crate::correlation::from_legacy`] makes of
    /// it, and is not a detection on its own.
    pub aggregation: Option<String>,
    /// Legacy `timeframe`.
    pub timeframe: Option<String>,
    /// Vigil's own attribute `vigil.alert_group_by`: the event field whose
    /// value groups this rule's alerts (default: the server's setting, the
    /// host).
    pub alert_group_by: Option<String>,
    /// The file the rule came from.
    pub path: Option<Arc<str>>,
    /// 1-based line where the rule's document starts.
    pub line: usize,
    pub(crate) detection: Detection,
}

impl Rule {
    /// The ids and names by which correlations may refer to this rule
    /// (including the reference its own legacy aggregation uses).
    pub fn refs(&self) -> Vec<String> {
        let mut refs: Vec<String> = [self.id.clone(), self.name.clone()]
            .into_iter()
            .flatten()
            .collect();
        if self.aggregation.is_some() {
            refs.push(crate::correlation::legacy_self_ref(self));
        }
        refs
    }

    /// Problems that did not stop the rule from loading (placeholders
    /// without values), each with its line.
    pub fn warnings(&self) -> impl Iterator<Item = RuleError> + '_ {
        self.detection
            .warnings
            .iter()
            .map(|w| w.clone().with_path(self.path.clone()))
    }
}

/// A Sigma filter document: a selection that suppresses matches of the
/// rules it names.
#[derive(Debug, Clone)]
pub struct Filter {
    /// `title`
    pub title: String,
    /// `id`
    pub id: Option<String>,
    /// `logsource`
    pub logsource: LogSource,
    /// The ids (or names) of the rules it applies to.
    pub rules: Vec<String>,
    /// The file it came from.
    pub path: Option<Arc<str>>,
    /// 1-based line where the document starts.
    pub line: usize,
    pub(crate) detection: Detection,
}

/// A document in a rule file.
#[derive(Debug, Clone)]
pub enum Document {
    /// A detection rule.
    Rule(Box<Rule>),
    /// A filter.
    Filter(Box<Filter>),
    /// A correlation rule.
    Correlation(Box<crate::correlation::Correlation>),
}

/// Parses every document of a rule file. Documents that fail give an error
/// each; the others are returned.
pub fn parse_file(
    path: Option<Arc<str>>,
    text: &str,
    placeholders: &Placeholders,
) -> (Vec<Document>, Vec<RuleError>) {
    let docs = match yaml::parse_documents(text) {
        Ok(d) => d,
        Err(e) => {
            return (
                Vec::new(),
                vec![
                    RuleError::new(e.line, None, format!("invalid YAML: {}", e.message))
                        .with_path(path),
                ],
            )
        }
    };
    let docs = apply_collection_actions(docs);
    let mut out = Vec::new();
    let mut errors = Vec::new();
    if docs.is_empty() {
        errors.push(RuleError::new(1, None, "file holds no YAML document").with_path(path.clone()));
    }
    let several = docs.len() > 1;
    for doc in &docs {
        // A stray `---` at the end of a multi-document file leaves an
        // empty document: nothing to load, nothing wrong.
        if several && doc.is_null() {
            continue;
        }
        match parse_document(doc, placeholders) {
            Ok(mut d) => {
                match &mut d {
                    Document::Rule(r) => r.path = path.clone(),
                    Document::Filter(f) => f.path = path.clone(),
                    Document::Correlation(c) => c.path = path.clone(),
                }
                out.push(d)
            }
            Err(e) => errors.push(e.with_path(path.clone())),
        }
    }
    (out, errors)
}

/// Resolves legacy Sigma rule collections (`action: global`, `reset`,
/// `repeat`): a global document is merged into every document after it,
/// `reset` forgets it, and `repeat` is the previous document with changes.
/// Files without `action` pass through unchanged.
fn apply_collection_actions(docs: Vec<Node>) -> Vec<Node> {
    if !docs.iter().any(|d| d.get("action").is_some()) {
        return docs;
    }
    let mut global: Option<Node> = None;
    let mut previous: Option<Node> = None;
    let mut out = Vec::new();
    for doc in docs {
        match doc.get("action").and_then(Node::as_str) {
            Some("global") => global = Some(without_key(&doc, "action")),
            Some("reset") => global = None,
            Some("repeat") => {
                let base = previous
                    .clone()
                    .unwrap_or_else(|| without_key(&doc, "action"));
                let merged = merge(&base, &without_key(&doc, "action"));
                previous = Some(merged.clone());
                out.push(merged);
            }
            _ => {
                let merged = match &global {
                    Some(g) => merge(g, &doc),
                    None => doc,
                };
                previous = Some(merged.clone());
                out.push(merged);
            }
        }
    }
    out
}

fn without_key(node: &Node, key: &str) -> Node {
    match &node.kind {
        NodeKind::Map(entries) => Node {
            kind: NodeKind::Map(
                entries
                    .iter()
                    .filter(|(k, _)| k.as_str() != Some(key))
                    .cloned()
                    .collect(),
            ),
            line: node.line,
        },
        _ => node.clone(),
    }
}

/// Deep-merges two maps; `over` wins for scalars and lists.
fn merge(base: &Node, over: &Node) -> Node {
    match (&base.kind, &over.kind) {
        (NodeKind::Map(b), NodeKind::Map(o)) => {
            let mut entries = b.clone();
            for (k, v) in o {
                match entries
                    .iter_mut()
                    .find(|(bk, _)| bk.as_str().is_some() && bk.as_str() == k.as_str())
                {
                    Some(slot) => slot.1 = merge(&slot.1, v),
                    None => entries.push((k.clone(), v.clone())),
                }
            }
            Node {
                kind: NodeKind::Map(entries),
                line: over.line,
            }
        }
        _ => over.clone(),
    }
}

fn err(node: &Node, field: &str, reason: impl Into<String>) -> RuleError {
    RuleError::new(node.line, Some(field.to_string()), reason)
}

fn string_field(doc: &Node, key: &str) -> Result<Option<String>, RuleError> {
    match doc.get(key) {
        None => Ok(None),
        Some(n) if n.is_null() => Ok(None),
        Some(n) => match n.as_str() {
            Some(s) => Ok(Some(s.to_string())),
            None => Err(err(
                n,
                key,
                format!("must be a string, not a {}", n.kind_name()),
            )),
        },
    }
}

fn string_list(doc: &Node, key: &str) -> Result<Vec<String>, RuleError> {
    match doc.get(key) {
        None => Ok(Vec::new()),
        Some(n) if n.is_null() => Ok(Vec::new()),
        Some(n) => match &n.kind {
            NodeKind::Scalar { text, .. } => Ok(vec![text.clone()]),
            NodeKind::Seq(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| err(i, key, "items must be strings"))
                })
                .collect(),
            NodeKind::Map(_) => Err(err(n, key, "must be a list of strings")),
        },
    }
}

fn parse_logsource(doc: &Node) -> Result<LogSource, RuleError> {
    let node = doc
        .get("logsource")
        .ok_or_else(|| err(doc, "logsource", "missing required key"))?;
    if node.as_map().is_none() {
        return Err(err(node, "logsource", "must be a map"));
    }
    let get = |k: &str| -> Result<Option<String>, RuleError> {
        string_field(node, k).map_err(|mut e| {
            e.field = Some(format!("logsource.{k}"));
            e
        })
    };
    Ok(LogSource {
        product: get("product")?,
        category: get("category")?,
        service: get("service")?,
    })
}

fn parse_document(doc: &Node, placeholders: &Placeholders) -> Result<Document, RuleError> {
    if doc.as_map().is_none() {
        return Err(err(
            doc,
            "document",
            format!("must be a map, not a {}", doc.kind_name()),
        ));
    }
    let title =
        string_field(doc, "title")?.ok_or_else(|| err(doc, "title", "missing required key"))?;
    if doc.get("correlation").is_some() {
        return crate::correlation::parse(doc, title).map(|c| Document::Correlation(Box::new(c)));
    }
    if let Some(filter) = doc.get("filter") {
        return parse_filter(doc, filter, title, placeholders);
    }
    let id = string_field(doc, "id")?;
    let status = string_field(doc, "status")?;
    if let Some(s) = &status {
        if !matches!(
            s.as_str(),
            "stable" | "test" | "experimental" | "deprecated" | "unsupported"
        ) {
            return Err(err(
                doc.get("status").expect("present"),
                "status",
                format!("unknown status '{s}'"),
            ));
        }
    }
    let level = match string_field(doc, "level")? {
        None => None,
        Some(l) => Some(Level::parse(&l).ok_or_else(|| {
            err(
                doc.get("level").expect("present"),
                "level",
                format!("unknown level '{l}'"),
            )
        })?),
    };
    let logsource = parse_logsource(doc)?;
    let det_node = doc
        .get("detection")
        .ok_or_else(|| err(doc, "detection", "missing required key"))?;
    let (detection, aggregation, timeframe) = parse_detection(det_node, placeholders)?;
    let description = string_field(doc, "description")?;
    let author = string_field(doc, "author")?;
    Ok(Document::Rule(Box::new(Rule {
        title,
        id,
        name: string_field(doc, "name")?,
        status,
        level,
        description,
        author,
        tags: string_list(doc, "tags")?,
        references: string_list(doc, "references")?,
        falsepositives: string_list(doc, "falsepositives")?,
        fields: string_list(doc, "fields")?,
        logsource,
        aggregation,
        timeframe,
        alert_group_by: doc
            .get("vigil")
            .and_then(|v| v.get("alert_group_by"))
            .and_then(Node::as_str)
            .map(str::to_string),
        path: None,
        line: doc.line,
        detection,
    })))
}

fn parse_filter(
    doc: &Node,
    filter: &Node,
    title: String,
    placeholders: &Placeholders,
) -> Result<Document, RuleError> {
    if filter.as_map().is_none() {
        return Err(err(filter, "filter", "must be a map"));
    }
    let rules = string_list(filter, "rules").map_err(|mut e| {
        e.field = Some("filter.rules".into());
        e
    })?;
    if rules.is_empty() {
        return Err(err(
            filter,
            "filter.rules",
            "a filter must name at least one rule",
        ));
    }
    let (detection, aggregation, _) = parse_detection(filter, placeholders).map_err(|mut e| {
        e.field = e.field.map(|f| f.replacen("detection", "filter", 1));
        e
    })?;
    if aggregation.is_some() {
        return Err(err(filter, "filter.condition", "a filter cannot aggregate"));
    }
    Ok(Document::Filter(Box::new(Filter {
        title,
        id: string_field(doc, "id")?,
        logsource: parse_logsource(doc)?,
        rules,
        path: None,
        line: doc.line,
        detection,
    })))
}

/// Parses a detection map (or a filter map, which has the same shape plus
/// `rules`).
fn parse_detection(
    node: &Node,
    placeholders: &Placeholders,
) -> Result<(Detection, Option<String>, Option<String>), RuleError> {
    let map = node
        .as_map()
        .ok_or_else(|| err(node, "detection", "must be a map"))?;
    let mut det = Detection {
        names: Vec::new(),
        selections: Vec::new(),
        fields: Vec::new(),
        cond: Cond::And(Vec::new()),
        warnings: Vec::new(),
    };
    let mut condition: Option<&Node> = None;
    let mut timeframe = None;
    for (key, value) in map {
        let Some(name) = key.as_str() else {
            return Err(err(key, "detection", "keys must be strings"));
        };
        match name {
            "condition" => condition = Some(value),
            "timeframe" => timeframe = value.as_str().map(str::to_string),
            "rules" => {}
            _ => {
                let path = format!("detection.{name}");
                let sel = parse_selection(value, &path, &mut det, placeholders)?;
                det.names.push(name.to_string());
                det.selections.push(sel);
            }
        }
    }
    let cnode =
        condition.ok_or_else(|| err(node, "detection.condition", "missing required key"))?;
    let texts: Vec<&str> = match &cnode.kind {
        NodeKind::Scalar { text, .. } => vec![text.as_str()],
        NodeKind::Seq(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .ok_or_else(|| err(i, "detection.condition", "must be a string"))
            })
            .collect::<Result<_, _>>()?,
        NodeKind::Map(_) => return Err(err(cnode, "detection.condition", "must be a string")),
    };
    let mut conds = Vec::new();
    let mut aggregation = None;
    for text in texts {
        let (bool_part, agg) = condition::split_aggregation(text);
        if let Some(a) = agg {
            aggregation = Some(a.to_string());
        }
        let c = condition::parse(bool_part, &det.names)
            .map_err(|e| err(cnode, "detection.condition", e))?;
        conds.push(c);
    }
    det.cond = if conds.len() == 1 {
        conds.pop().expect("one")
    } else {
        Cond::Or(conds)
    };
    Ok((det, aggregation, timeframe))
}

fn raw_values(node: &Node, path: &str) -> Result<Vec<RawValue>, RuleError> {
    let one = |n: &Node| -> Result<RawValue, RuleError> {
        match &n.kind {
            _ if n.is_null() => Ok(RawValue::Null),
            NodeKind::Scalar { text, quoted } => Ok(RawValue::Text {
                text: text.clone(),
                plain: !quoted,
            }),
            _ => Err(err(
                n,
                path,
                format!("values must be scalars, not a {}", n.kind_name()),
            )),
        }
    };
    match &node.kind {
        NodeKind::Seq(items) => {
            if items.is_empty() {
                return Err(err(node, path, "empty list of values"));
            }
            items.iter().map(one).collect()
        }
        _ => Ok(vec![one(node)?]),
    }
}

fn parse_selection(
    node: &Node,
    path: &str,
    det: &mut Detection,
    placeholders: &Placeholders,
) -> Result<Selection, RuleError> {
    match &node.kind {
        NodeKind::Map(entries) => Ok(Selection {
            groups: vec![parse_group(node, entries, path, det, placeholders)?],
        }),
        NodeKind::Seq(items) => {
            if items.is_empty() {
                return Err(err(node, path, "empty selection"));
            }
            let mut groups = Vec::new();
            let mut keywords = Vec::new();
            for item in items {
                match &item.kind {
                    NodeKind::Map(entries) => {
                        groups.push(parse_group(item, entries, path, det, placeholders)?)
                    }
                    NodeKind::Scalar { .. } => keywords.push(item.clone()),
                    NodeKind::Seq(_) => {
                        return Err(err(item, path, "a selection list cannot hold lists"))
                    }
                }
            }
            if !keywords.is_empty() {
                let list = Node {
                    kind: NodeKind::Seq(keywords),
                    line: node.line,
                };
                groups.push(vec![keyword_item(&list, &[], path, placeholders)?]);
            }
            Ok(Selection { groups })
        }
        NodeKind::Scalar { .. } if !node.is_null() => Ok(Selection {
            groups: vec![vec![keyword_item(node, &[], path, placeholders)?]],
        }),
        _ => Err(err(
            node,
            path,
            "a selection must be a map, a list, or a keyword",
        )),
    }
}

fn keyword_item(
    values: &Node,
    modifiers: &[Modifier],
    path: &str,
    placeholders: &Placeholders,
) -> Result<Item, RuleError> {
    let raw = raw_values(values, path)?;
    if raw.contains(&RawValue::Null) {
        return Err(err(values, path, "a keyword cannot be null"));
    }
    // Keywords search the whole event: a value without wildcards matches
    // anywhere inside a field, as full-text search does (see
    // docs/sigma-semantics.md).
    let mut mods = modifiers.to_vec();
    if !mods.iter().any(|m| {
        matches!(
            m,
            Modifier::Contains
                | Modifier::StartsWith
                | Modifier::EndsWith
                | Modifier::Re
                | Modifier::Cidr
                | Modifier::Lt
                | Modifier::Lte
                | Modifier::Gt
                | Modifier::Gte
                | Modifier::Exists
                | Modifier::FieldRef
        )
    }) {
        mods.push(Modifier::Contains);
    }
    let values =
        modifier::compile_values(&mods, &raw, placeholders).map_err(|e| err(values, path, e))?;
    Ok(Item {
        field: None,
        values,
    })
}

fn parse_group(
    node: &Node,
    entries: &[(Node, Node)],
    path: &str,
    det: &mut Detection,
    placeholders: &Placeholders,
) -> Result<Vec<Item>, RuleError> {
    if entries.is_empty() {
        return Err(err(node, path, "empty selection"));
    }
    let mut items = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let key = k
            .as_str()
            .ok_or_else(|| err(k, path, "field names must be strings"))?;
        let item_path = format!("{path}.{key}");
        let fk = modifier::parse_key(key).map_err(|e| err(k, &item_path, e))?;
        let Some(field) = fk.field else {
            items.push(keyword_item(v, &fk.modifiers, &item_path, placeholders)?);
            continue;
        };
        let raw = raw_values(v, &item_path)?;
        let mut values = modifier::compile_values(&fk.modifiers, &raw, placeholders)
            .map_err(|e| err(v, &item_path, e))?;
        for name in &values.unresolved {
            det.warnings.push(err(
                v,
                &item_path,
                format!("placeholder '%{name}%' has no values configured; this value matches nothing until it has (see --placeholders)"),
            ));
        }
        for p in &mut values.patterns {
            if let Pattern::FieldRef { field, local, .. } = p {
                *local = det.field_index(field);
            }
        }
        items.push(Item {
            field: Some(det.field_index(&field)),
            values,
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(text: &str) -> Result<Rule, RuleError> {
        let (docs, mut errs) = parse_file(Some("t.yml".into()), text, &Placeholders::new());
        if let Some(e) = errs.pop() {
            return Err(e);
        }
        match docs.into_iter().next() {
            Some(Document::Rule(r)) => Ok(*r),
            _ => panic!("not a rule"),
        }
    }

    #[test]
    fn parses_metadata() {
        let r = parse_one(
            "title: T\nid: 1\nlevel: high\ntags: [attack.t1059]\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel: {Image|endswith: '\\x.exe'}\n  condition: sel\n",
        )
        .unwrap();
        assert_eq!(r.title, "T");
        assert_eq!(r.level, Some(Level::High));
        assert_eq!(r.logsource.category.as_deref(), Some("process_creation"));
        assert_eq!(r.detection.fields, vec!["Image"]);
    }

    #[test]
    fn errors_name_line_and_field() {
        let e = parse_one(
            "title: T\nlogsource: {product: x}\ndetection:\n  sel:\n    Image|endwith: x\n  condition: sel\n",
        )
        .unwrap_err();
        assert_eq!(e.line, 5);
        assert_eq!(e.field.as_deref(), Some("detection.sel.Image|endwith"));
        assert_eq!(
            e.to_string(),
            "t.yml:5: detection.sel.Image|endwith: unknown modifier 'endwith'"
        );
        let e = parse_one("title: T\nlogsource: {}\ndetection:\n  sel: {a: 1}\n").unwrap_err();
        assert!(e
            .to_string()
            .contains("detection.condition: missing required key"));
        let e = parse_one(
            "title: T\nlogsource: {}\ndetection:\n  sel: {a: 1}\n  condition: sel and x\n",
        )
        .unwrap_err();
        assert!(e.reason.contains("'x'"), "{e}");
    }

    #[test]
    fn legacy_global_collections_merge() {
        let text = "action: global\ntitle: G\nlogsource: {product: windows}\ndetection:\n  condition: sel\n---\nid: a\ndetection:\n  sel: {EventID: 1}\n---\nid: b\nlogsource: {service: sysmon}\ndetection:\n  sel: {EventID: 2}\n";
        let (docs, errs) = parse_file(None, text, &Placeholders::new());
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(docs.len(), 2);
        let Document::Rule(b) = &docs[1] else {
            panic!()
        };
        assert_eq!(b.title, "G");
        assert_eq!(b.logsource.service.as_deref(), Some("sysmon"));
        assert_eq!(b.logsource.product.as_deref(), Some("windows"));
    }

    #[test]
    fn broken_yaml_is_an_error() {
        let (docs, errs) = parse_file(None, "title: [unclosed\n", &Placeholders::new());
        assert!(docs.is_empty());
        assert!(errs[0].reason.starts_with("invalid YAML"));
    }
}
