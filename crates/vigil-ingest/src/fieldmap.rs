//! JSON field mappings: shippers' field names to the names Sigma rules use.
//!
//! The shipped mappings (`data/fieldmaps.yml`, compiled in) cover
//! Winlogbeat / Elastic Agent Windows events and ECS endpoint documents; a
//! user file in the same format adds entries or replaces them by name. The
//! file's header explains the format.

use std::sync::OnceLock;
use vigil_event::{Event, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// The shipped mappings file.
pub const DEFAULT_FIELD_MAPS: &str = include_str!("../data/fieldmaps.yml");

/// One mapping entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Unique name.
    pub name: String,
    /// The entry applies when any of these fields exists.
    pub when: Vec<String>,
    /// Product of matching documents.
    pub product: Option<String>,
    /// Prefixes whose fields are added without the prefix.
    pub strip_prefixes: Vec<String>,
    /// Field → Sigma name.
    pub rename: Vec<(String, String)>,
    /// Sigma names whose text value becomes a number.
    pub numeric: Vec<String>,
}

/// A set of mappings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldMap {
    mappings: Vec<Mapping>,
}

impl FieldMap {
    /// The shipped mappings.
    pub fn builtin() -> &'static FieldMap {
        static MAP: OnceLock<FieldMap> = OnceLock::new();
        MAP.get_or_init(|| FieldMap::parse(DEFAULT_FIELD_MAPS).unwrap_or_default())
    }

    /// The entries.
    pub fn mappings(&self) -> &[Mapping] {
        &self.mappings
    }

    /// Parses a mappings file.
    ///
    /// # Errors
    /// A message naming the entry and what is wrong.
    pub fn parse(text: &str) -> Result<FieldMap, String> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| format!("invalid YAML: {e}"))?;
        let root = docs.first().ok_or("empty file")?;
        let list = root["mappings"]
            .as_vec()
            .ok_or("expected a list under 'mappings'")?;
        let strs = |y: &Yaml| -> Vec<String> {
            match y {
                Yaml::Array(items) => items.iter().filter_map(scalar).collect(),
                other => scalar(other).into_iter().collect(),
            }
        };
        let mut mappings = Vec::with_capacity(list.len());
        for (i, m) in list.iter().enumerate() {
            let name = scalar(&m["name"]).ok_or(format!("entry {} has no name", i + 1))?;
            let when = strs(&m["when"]);
            if when.is_empty() {
                return Err(format!("entry '{name}': 'when' names no field"));
            }
            let mut rename = Vec::new();
            if let Some(h) = m["rename"].as_hash() {
                for (k, v) in h {
                    match (scalar(k), scalar(v)) {
                        (Some(k), Some(v)) => rename.push((k, v)),
                        _ => {
                            return Err(format!(
                                "entry '{name}': rename maps field names to field names"
                            ))
                        }
                    }
                }
            }
            mappings.push(Mapping {
                name,
                when,
                product: scalar(&m["product"]),
                strip_prefixes: strs(&m["strip_prefixes"]),
                rename,
                numeric: strs(&m["numeric"]),
            });
        }
        Ok(FieldMap { mappings })
    }

    /// Adds `other`'s entries: same name replaces, new name appends.
    pub fn merge(&mut self, other: FieldMap) {
        for m in other.mappings {
            match self.mappings.iter_mut().find(|x| x.name == m.name) {
                Some(slot) => *slot = m,
                None => self.mappings.push(m),
            }
        }
    }

    /// Adds Sigma names to a flattened JSON event, per every entry that
    /// applies; sets the event's product from the first that names one.
    pub fn apply(&self, event: &mut Event) {
        for m in &self.mappings {
            if !m.when.iter().any(|f| event.get(f).is_some()) {
                continue;
            }
            let mut extra: Vec<(String, Value)> = Vec::new();
            for (name, value) in event.fields() {
                let alias = m
                    .strip_prefixes
                    .iter()
                    .find_map(|p| name.strip_prefix(p.as_str()))
                    .map(str::to_string)
                    .or_else(|| {
                        m.rename
                            .iter()
                            .find(|(from, _)| from == name)
                            .map(|(_, to)| to.clone())
                    });
                if let Some(alias) = alias {
                    let value = match value {
                        Value::Str(s) if m.numeric.contains(&alias) => s
                            .trim()
                            .parse::<i64>()
                            .map(Value::Int)
                            .unwrap_or_else(|_| value.clone()),
                        _ => value.clone(),
                    };
                    extra.push((alias, value));
                }
            }
            // No check for names already there: a field keeps its first
            // value (`Event::get` and detection read the first), so an
            // alias pushed after an existing field is never seen, and a
            // check would cost a scan of the event per alias.
            for (name, value) in extra {
                event.push(vigil_event::intern(&name), value);
            }
            if event.meta.product.is_none() {
                if let Some(p) = &m.product {
                    event.meta.product = Some(p.as_str().into());
                }
            }
        }
    }
}

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_parses() {
        let m = FieldMap::builtin();
        assert!(m.mappings().iter().any(|m| m.name == "winlogbeat"));
        assert!(m.mappings().iter().any(|m| m.name == "ecs"));
    }

    #[test]
    fn ecs_process_event() {
        let mut e = Event::from_json(
            &json!({"ecs": {"version": "8.11"}, "process": {"command_line": "cmd /c whoami", "executable": "C:\\Windows\\System32\\cmd.exe", "pid": "42", "parent": {"executable": "C:\\x.exe"}}, "user": {"name": "bob"}}),
        );
        FieldMap::builtin().apply(&mut e);
        assert_eq!(e.get_str("CommandLine"), Some("cmd /c whoami"));
        assert_eq!(e.get_str("Image"), Some("C:\\Windows\\System32\\cmd.exe"));
        assert_eq!(e.get_str("ParentImage"), Some("C:\\x.exe"));
        assert_eq!(e.get("ProcessId"), Some(&Value::Int(42)));
        assert_eq!(e.get_str("User"), Some("bob"));
        assert_eq!(e.get_str("process.command_line"), Some("cmd /c whoami"));
        assert_eq!(e.meta.product, None);
    }

    #[test]
    fn user_file_replaces_and_adds() {
        let mut m = FieldMap::builtin().clone();
        let user = FieldMap::parse("mappings:\n  - name: ecs\n    when: [ecs.version]\n    rename: {process.command_line: Cmd}\n  - name: mine\n    when: [app.user]\n    product: acme\n    rename: {app.user: User}\n").unwrap();
        m.merge(user);
        let mut e =
            Event::from_json(&json!({"ecs": {"version": "8"}, "process": {"command_line": "x"}}));
        m.apply(&mut e);
        assert_eq!(e.get_str("Cmd"), Some("x"));
        assert_eq!(e.get("CommandLine"), None);
        let mut e = Event::from_json(&json!({"app": {"user": "z"}}));
        m.apply(&mut e);
        assert_eq!(e.get_str("User"), Some("z"));
        assert_eq!(e.meta.product.as_deref(), Some("acme"));
    }

    #[test]
    fn bad_files_say_why() {
        assert!(FieldMap::parse("mappings:\n  - when: [a]\n")
            .unwrap_err()
            .contains("no name"));
        assert!(FieldMap::parse("mappings:\n  - name: x\n")
            .unwrap_err()
            .contains("'when'"));
        assert!(FieldMap::parse("nope: 1\n")
            .unwrap_err()
            .contains("mappings"));
    }
}
