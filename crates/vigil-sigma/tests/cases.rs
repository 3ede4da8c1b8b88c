//! Data-driven conformance cases: `tests/cases/*.yml`.
//!
//! Each case holds a rule (and optionally filters and placeholders) and
//! either events with the expected match result or the error the rule must
//! fail with. The files say which part of the Sigma specification they
//! follow; `tests/cases/README.md` explains the format. Rules are built
//! with an empty log-source mapping, so each applies to every event.

use std::collections::HashMap;
use vigil_event::{Event, Value};
use vigil_sigma::yaml::{parse_documents, Node, NodeKind};
use vigil_sigma::{rule::parse_file, LogSourceMap, RuleSetBuilder, Scratch};

fn to_value(node: &Node) -> Value {
    match &node.kind {
        NodeKind::Scalar { text, quoted } => {
            if node.is_null() {
                Value::Null
            } else if *quoted {
                Value::Str(text.as_str().into())
            } else if let Some(b) = node.as_bool() {
                Value::Bool(b)
            } else if let Ok(i) = text.parse::<i64>() {
                Value::Int(i)
            } else if let Ok(f) = text.parse::<f64>().map_err(|_| ()).and_then(|f| {
                if text.chars().any(|c| c.is_ascii_digit())
                    && !text
                        .chars()
                        .any(|c| c.is_alphabetic() && c != 'e' && c != 'E')
                {
                    Ok(f)
                } else {
                    Err(())
                }
            }) {
                Value::Float(f)
            } else {
                Value::Str(text.as_str().into())
            }
        }
        NodeKind::Seq(items) => Value::List(items.iter().map(to_value).collect()),
        NodeKind::Map(_) => Value::Null,
    }
}

fn flatten(node: &Node, prefix: &str, event: &mut Event) {
    if let Some(map) = node.as_map() {
        for (k, v) in map {
            let key = k.as_str().unwrap_or_default();
            let name = if prefix.is_empty() {
                key.to_string()
            } else {
                format!("{prefix}.{key}")
            };
            if v.as_map().is_some() {
                flatten(v, &name, event);
            } else {
                event.push(name, to_value(v));
            }
        }
    }
}

fn run_case(file: &str, case: &Node) -> Result<usize, String> {
    let name = case.get("name").and_then(Node::as_str).unwrap_or("?");
    let label = format!("{file}: {name} (line {})", case.line);
    let mut placeholders: HashMap<String, Vec<String>> = HashMap::new();
    if let Some(p) = case.get("placeholders").and_then(Node::as_map) {
        for (k, v) in p {
            let vals = match v.as_seq() {
                Some(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect(),
                None => v.as_str().map(|s| vec![s.to_string()]).unwrap_or_default(),
            };
            placeholders.insert(k.as_str().unwrap_or_default().to_string(), vals);
        }
    }
    let rule_text = case
        .get("rule")
        .and_then(Node::as_str)
        .ok_or(format!("{label}: no rule"))?;
    let (mut docs, mut errors) = parse_file(Some("rule".into()), rule_text, &placeholders);
    if let Some(filters) = case.get("filters").and_then(Node::as_seq) {
        for f in filters {
            let (d, e) = parse_file(
                Some("filter".into()),
                f.as_str().unwrap_or_default(),
                &placeholders,
            );
            docs.extend(d);
            errors.extend(e);
        }
    }
    if let Some(expected) = case.get("error").and_then(Node::as_str) {
        return match errors.first() {
            Some(e)
                if e.to_string()
                    .to_lowercase()
                    .contains(&expected.to_lowercase()) =>
            {
                Ok(1)
            }
            Some(e) => Err(format!(
                "{label}: error {e:?} does not mention {expected:?}"
            )),
            None => Err(format!(
                "{label}: loaded, but should fail with {expected:?}"
            )),
        };
    }
    if let Some(e) = errors.first() {
        return Err(format!("{label}: failed to load: {e}"));
    }
    let mut builder = RuleSetBuilder::new();
    builder
        .logsources(LogSourceMap::empty())
        .add_documents(docs);
    let set = builder.build();
    let unfiltered = {
        let mut b = builder.clone();
        b.prefilter(false);
        b.build()
    };
    let mut scratch = Scratch::default();
    let mut n = 0;
    for (i, ev) in case
        .get("events")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let want = ev
            .get("match")
            .and_then(Node::as_bool)
            .ok_or(format!("{label}: event {i} has no match"))?;
        let mut event = Event::new();
        if let Some(e) = ev.get("event") {
            flatten(e, "", &mut event);
        }
        let got = !set.matches(&event, &mut scratch).is_empty();
        let got_plain = !unfiltered.matches(&event, &mut scratch).is_empty();
        if got != got_plain {
            return Err(format!("{label}: event {i}: prefilter changed the result"));
        }
        if got != want {
            return Err(format!(
                "{label}: event {i} (line {}): expected match={want}, got {got}\n{}",
                ev.line,
                set.explain(0, &event)
            ));
        }
        n += 1;
    }
    Ok(n)
}

#[test]
fn sigma_cases() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    let mut checks = 0;
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let docs = parse_documents(&text).unwrap();
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        for case in docs[0].as_seq().unwrap() {
            match run_case(&file, case) {
                Ok(n) => checks += n,
                Err(e) => failures.push(e),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases ({checks} checks passed):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
