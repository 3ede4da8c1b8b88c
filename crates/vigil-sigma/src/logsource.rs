//! The log-source mapping: which concrete events a rule's abstract
//! `logsource` (product/category/service) stands for.
//!
//! The default mapping ships in `data/logsources.yml` and is compiled into
//! the binary; users load their own file in the same format on top of it
//! ([`LogSourceMap::merge`]): an entry with a known `name` replaces the
//! default's, a new name adds an entry. The file's header explains the
//! format.

use crate::error::RuleError;
use crate::rule::LogSource;
use crate::yaml::{self, Node, NodeKind};
use std::sync::Arc;

/// The default mapping file, as shipped.
pub const DEFAULT_MAPPING: &str = include_str!("../data/logsources.yml");

/// One mapping entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unique name.
    pub name: String,
    /// The `logsource` keys this entry applies to.
    pub logsource: LogSource,
    /// Event conditions (field, any of values); all must hold. `None`:
    /// no selector, the entry applies to any event of its product.
    pub conditions: Option<Vec<(String, Vec<String>)>>,
    /// Rule field → event field, for events this entry selects.
    pub fieldmappings: Vec<(String, String)>,
}

impl Entry {
    /// Whether the entry applies to a rule's log source: every key the
    /// entry gives equals the rule's (case-insensitively).
    pub fn applies_to(&self, ls: &LogSource) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| match want {
            None => true,
            Some(w) => have.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(w)),
        };
        eq(&self.logsource.product, &ls.product)
            && eq(&self.logsource.category, &ls.category)
            && eq(&self.logsource.service, &ls.service)
    }
}

/// A log-source mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSourceMap {
    entries: Vec<Entry>,
}

impl Default for LogSourceMap {
    fn default() -> Self {
        Self::builtin()
    }
}

impl LogSourceMap {
    /// The mapping shipped with Vigil.
    ///
    /// # Panics
    /// Never in a released build: the shipped file is checked by a unit
    /// test.
    pub fn builtin() -> Self {
        Self::parse(DEFAULT_MAPPING, Some("logsources.yml".into()))
            .expect("the shipped log-source mapping parses")
    }

    /// A mapping with no entries: every rule applies to every event of its
    /// product.
    pub fn empty() -> Self {
        LogSourceMap {
            entries: Vec::new(),
        }
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entries that apply to a rule's log source.
    pub fn entries_for<'a>(&'a self, ls: &'a LogSource) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.applies_to(ls))
    }

    /// Whether a log source with no entry of its own is one the mapping
    /// would narrow: it names a category or service, and the mapping has
    /// entries with conditions for its product. (A product-only source, or
    /// one of a product mapped by file only, is meant to take all events.)
    pub fn narrows(&self, ls: &LogSource) -> bool {
        let Some(product) = ls.product.as_deref() else {
            return false;
        };
        (ls.category.is_some() || ls.service.is_some())
            && self.entries.iter().any(|e| {
                e.conditions.is_some()
                    && e.logsource
                        .product
                        .as_deref()
                        .is_some_and(|p| p.eq_ignore_ascii_case(product))
            })
    }

    /// Adds `other`'s entries: same name replaces, new name appends.
    pub fn merge(&mut self, other: LogSourceMap) {
        for e in other.entries {
            match self.entries.iter_mut().find(|x| x.name == e.name) {
                Some(slot) => *slot = e,
                None => self.entries.push(e),
            }
        }
    }

    /// Parses a mapping file.
    ///
    /// # Errors
    /// The first problem found, with its line.
    pub fn parse(text: &str, path: Option<Arc<str>>) -> Result<Self, RuleError> {
        let fail = |line: usize, field: &str, reason: String| {
            RuleError::new(line, Some(field.to_string()), reason).with_path(path.clone())
        };
        let docs = yaml::parse_documents(text)
            .map_err(|e| fail(e.line, "logsources", format!("invalid YAML: {}", e.message)))?;
        let root = docs
            .first()
            .ok_or_else(|| fail(1, "logsources", "empty file".into()))?;
        let list = root
            .get("logsources")
            .and_then(Node::as_seq)
            .ok_or_else(|| {
                fail(
                    root.line,
                    "logsources",
                    "expected a list under 'logsources'".into(),
                )
            })?;
        let mut entries: Vec<Entry> = Vec::with_capacity(list.len());
        for node in list {
            let name = node
                .get("name")
                .and_then(Node::as_str)
                .ok_or_else(|| fail(node.line, "name", "every entry needs a name".into()))?
                .to_string();
            if entries.iter().any(|e| e.name == name) {
                return Err(fail(
                    node.line,
                    "name",
                    format!("duplicate entry name '{name}'"),
                ));
            }
            let ls = node
                .get("logsource")
                .filter(|n| n.as_map().is_some())
                .ok_or_else(|| {
                    fail(
                        node.line,
                        &format!("{name}.logsource"),
                        "must be a map".into(),
                    )
                })?;
            let key = |k: &str| ls.get(k).and_then(Node::as_str).map(str::to_string);
            let logsource = LogSource {
                product: key("product"),
                category: key("category"),
                service: key("service"),
            };
            let conditions = match node.get("conditions") {
                None => None,
                Some(c) => {
                    let map = c.as_map().ok_or_else(|| {
                        fail(
                            c.line,
                            &format!("{name}.conditions"),
                            "must be a map".into(),
                        )
                    })?;
                    let mut conds = Vec::with_capacity(map.len());
                    for (k, v) in map {
                        let field = k.as_str().unwrap_or_default().to_string();
                        let values: Vec<String> = match &v.kind {
                            NodeKind::Scalar { text, .. } => vec![text.clone()],
                            NodeKind::Seq(items) => items
                                .iter()
                                .filter_map(|i| i.as_str().map(str::to_string))
                                .collect(),
                            NodeKind::Map(_) => {
                                return Err(fail(
                                    v.line,
                                    &format!("{name}.conditions.{field}"),
                                    "must be a value or a list".into(),
                                ))
                            }
                        };
                        conds.push((field, values));
                    }
                    Some(conds)
                }
            };
            let mut fieldmappings = Vec::new();
            if let Some(fm) = node.get("fieldmappings").and_then(Node::as_map) {
                for (k, v) in fm {
                    if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                        fieldmappings.push((k.to_string(), v.to_string()));
                    }
                }
            }
            entries.push(Entry {
                name,
                logsource,
                conditions,
                fieldmappings,
            });
        }
        Ok(LogSourceMap { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_parses_and_maps_process_creation() {
        let map = LogSourceMap::builtin();
        assert!(map.entries().len() > 50);
        let ls = LogSource {
            product: Some("windows".into()),
            category: Some("process_creation".into()),
            service: None,
        };
        let names: Vec<&str> = map.entries_for(&ls).map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            vec!["process_creation_sysmon", "process_creation_security"]
        );
        let sec = map.entries_for(&ls).nth(1).unwrap();
        assert!(sec
            .fieldmappings
            .contains(&("Image".to_string(), "NewProcessName".to_string())));
    }

    #[test]
    fn merge_replaces_by_name() {
        let mut map = LogSourceMap::builtin();
        let n = map.entries().len();
        let user = LogSourceMap::parse(
            "logsources:\n  - name: process_creation_security\n    logsource: {product: windows, category: process_creation}\n    conditions: {Channel: Security, EventID: 4688}\n  - name: mine\n    logsource: {product: acme}\n",
            None,
        )
        .unwrap();
        map.merge(user);
        assert_eq!(map.entries().len(), n + 1);
        let e = map
            .entries()
            .iter()
            .find(|e| e.name == "process_creation_security")
            .unwrap();
        assert!(e.fieldmappings.is_empty());
    }

    #[test]
    fn bad_mapping_names_line() {
        let e = LogSourceMap::parse("logsources:\n  - logsource: {}\n", Some("m.yml".into()))
            .unwrap_err();
        assert_eq!(e.to_string(), "m.yml:2: name: every entry needs a name");
    }
}
