//! `vigil rules test ROOT`: SigmaHQ-format regression tests.
//!
//! Each `info.yml` under `ROOT/regression_data` names a rule (by id, in
//! `rule_metadata`) and samples with an expected `match_count`. A test
//! fails when the rule matches fewer records of its sample than expected
//! (a missing `match_count` means at least one), and warns when it
//! matches more.

use crate::load::{load_rules, RuleOptions};
use anyhow::Context;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use vigil_event::Event;
use vigil_sigma::yaml::{parse_documents, Node};
use vigil_sigma::{Document, RuleSetBuilder, Scratch};

/// Arguments of `vigil rules test`.
#[derive(clap::Args, Debug)]
pub struct TestArgs {
    /// Root of a SigmaHQ-style checkout (holding regression_data/ and rules*/).
    root: PathBuf,
    /// Rule files or directories (default: ROOT/rules*).
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// For each failing test, explain every record: which selections
    /// matched and which field values did not.
    #[arg(long)]
    explain: bool,
    #[command(flatten)]
    options: RuleOptions,
}

struct Case {
    info: PathBuf,
    rule_id: String,
    name: String,
    kind: String,
    sample: PathBuf,
    expected: Option<u64>,
}

fn cases(root: &Path) -> anyhow::Result<(Vec<Case>, Vec<String>)> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let dir = root.join("regression_data");
    let mut infos: Vec<PathBuf> = walkdir::WalkDir::new(&dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() == "info.yml")
        .map(|e| e.into_path())
        .collect();
    infos.sort();
    if infos.is_empty() {
        anyhow::bail!("no info.yml under {}", dir.display());
    }
    for info in infos {
        let text = std::fs::read_to_string(&info)
            .with_context(|| format!("reading {}", info.display()))?;
        let doc = match parse_documents(&text) {
            Ok(d) if !d.is_empty() => d.into_iter().next().expect("one"),
            Ok(_) => continue,
            Err(e) => {
                problems.push(format!(
                    "{}:{}: invalid YAML: {}",
                    info.display(),
                    e.line,
                    e.message
                ));
                continue;
            }
        };
        let rule_id = doc
            .get("rule_metadata")
            .and_then(Node::as_seq)
            .and_then(|s| s.last())
            .and_then(|m| m.get("id"))
            .and_then(Node::as_str)
            .map(str::to_string);
        let Some(rule_id) = rule_id else {
            problems.push(format!("{}: no rule_metadata id", info.display()));
            continue;
        };
        // An info.yml whose tests are all commented out holds none.
        for t in doc
            .get("regression_tests_info")
            .and_then(Node::as_seq)
            .unwrap_or_default()
        {
            let Some(path) = t.get("path").and_then(Node::as_str) else {
                continue;
            };
            out.push(Case {
                info: info.clone(),
                rule_id: rule_id.clone(),
                name: t
                    .get("name")
                    .and_then(Node::as_str)
                    .unwrap_or("test")
                    .to_string(),
                kind: t
                    .get("type")
                    .and_then(Node::as_str)
                    .unwrap_or("evtx")
                    .to_string(),
                sample: root.join(path),
                expected: t
                    .get("match_count")
                    .and_then(Node::as_str)
                    .and_then(|s| s.parse().ok()),
            });
        }
    }
    Ok((out, problems))
}

/// Reads every event of a sample file.
pub fn read_sample(path: &Path, kind: &str) -> anyhow::Result<(Vec<Event>, Vec<String>)> {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    match kind {
        "evtx" => {
            vigil_ingest::evtx::read_evtx(
                path,
                Default::default(),
                |e| e,
                |r| match r {
                    Ok(e) => events.push(e),
                    Err(e) => errors.push(e.to_string()),
                },
            )?;
        }
        "json" | "ndjson" | "jsonl" => {
            let f =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let source: Arc<str> = path.to_string_lossy().into();
            vigil_ingest::json::read_json(&source, f, |r| match r {
                Ok(e) => events.push(e),
                Err(e) => errors.push(e.to_string()),
            })?;
        }
        other => anyhow::bail!("unknown sample type '{other}'"),
    }
    Ok((events, errors))
}

pub fn run(args: TestArgs) -> anyhow::Result<ExitCode> {
    let placeholders = args.options.placeholders()?;
    let map = args.options.logsource_map()?;
    let rule_paths: Vec<PathBuf> = if args.rules.is_empty() {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&args.root)
            .with_context(|| format!("reading {}", args.root.display()))?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("rules") && e.path().is_dir())
            .map(|e| e.path())
            .collect();
        dirs.sort();
        dirs
    } else {
        args.rules.clone()
    };
    let loaded = load_rules(&rule_paths, &placeholders);
    let mut by_id: HashMap<String, &vigil_sigma::Rule> = HashMap::new();
    for d in &loaded.docs {
        if let Document::Rule(r) = d {
            if let Some(id) = &r.id {
                by_id.insert(id.clone(), r);
            }
        }
    }
    let load_errors: HashMap<String, String> = loaded
        .errors
        .iter()
        .filter_map(|e| Some((e.path.as_deref()?.to_string(), e.to_string())))
        .collect();
    let (cases, problems) = cases(&args.root)?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for p in &problems {
        println!("FAIL {p}");
        failed += 1;
    }
    for case in &cases {
        let label = format!("{} [{}] ({})", case.rule_id, case.name, case.info.display());
        let Some(rule) = by_id.get(&case.rule_id) else {
            let hint = load_errors
                .iter()
                .find(|(p, _)| {
                    p.contains(&case.rule_id)
                        || case.info.parent().is_some_and(|d| {
                            p.contains(&*d.file_name().unwrap_or_default().to_string_lossy())
                        })
                })
                .map(|(_, e)| format!(": {e}"))
                .unwrap_or_default();
            println!("FAIL {label}: rule not loaded{hint}");
            failed += 1;
            continue;
        };
        let (events, read_errors) = match read_sample(&case.sample, &case.kind) {
            Ok(x) => x,
            Err(e) => {
                println!(
                    "FAIL {label}: cannot read sample {}: {e:#}",
                    case.sample.display()
                );
                failed += 1;
                continue;
            }
        };
        let mut builder = RuleSetBuilder::new();
        builder.logsources(map.clone()).add_rule((*rule).clone());
        let set = builder.build();
        let mut scratch = Scratch::default();
        let count = events
            .iter()
            .filter(|e| !set.matches(e, &mut scratch).is_empty())
            .count() as u64;
        let expected = case.expected.unwrap_or(1);
        let shown = case
            .expected
            .map(|n| n.to_string())
            .unwrap_or_else(|| "at least 1".into());
        if count < expected {
            failed += 1;
            println!(
                "FAIL {label}: rule '{}' ({}) matched {count} of {} records, expected {shown}",
                rule.title,
                rule.path.as_deref().unwrap_or("?"),
                events.len()
            );
            for e in &read_errors {
                println!("  read error: {e}");
            }
            if args.explain {
                for (i, e) in events.iter().enumerate() {
                    println!("  record {} (#{i}):", e.meta.record_id.unwrap_or(0));
                    print!("{}", set.explain(0, e));
                }
            }
        } else {
            passed += 1;
            if count > expected && case.expected.is_some() {
                println!("WARN {label}: matched {count} records, expected {expected}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
