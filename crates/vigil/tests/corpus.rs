//! Conformance on the shared corpus (`../shared/corpus`): SigmaHQ's rules
//! and regression suite, and EVTX-ATTACK-SAMPLES. Each test skips loudly
//! when the corpus is absent; `.ci/run` sets VIGIL_REQUIRE_CORPUS so that
//! there they must run.

use crate::util::{corpus, hunt_jsonl, jsonl, repo, stderr, stdout, vigil};
use std::path::{Path, PathBuf};
use vigil_event::Event;
use vigil_sigma::{rule::parse_file, Placeholders, RuleSetBuilder, Scratch};

fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or_default().to_string()
}

#[test]
fn sigmahq_rule_folders_load_completely() {
    let Some(c) = corpus("sigmahq_rule_folders_load_completely") else {
        return;
    };
    let placeholders = repo().join("config/placeholders.example.yml");
    for (dir, with_placeholders) in [
        ("rules", false),
        ("rules-emerging-threats", false),
        ("rules-threat-hunting", false),
        ("rules-compliance", false),
        ("deprecated", true),
        ("rules-placeholder", true),
    ] {
        let path = c.join("sigma").join(dir);
        let mut args = vec!["rules", "validate", path.to_str().unwrap()];
        if with_placeholders {
            args.extend(["--placeholders", placeholders.to_str().unwrap()]);
        }
        let out = vigil(&args);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{dir}:\n{text}");
        assert!(
            last_line(&text).ends_with(", failed 0"),
            "{dir}: {}",
            last_line(&text)
        );
    }
}

#[test]
fn unsupported_rules_load_or_fail_with_a_reason() {
    let Some(c) = corpus("unsupported_rules_load_or_fail_with_a_reason") else {
        return;
    };
    let out = vigil(&[
        "rules",
        "validate",
        "--format",
        "json",
        c.join("sigma/unsupported").to_str().unwrap(),
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for f in doc["failures"].as_array().unwrap() {
        let reason = f["reason"].as_str().unwrap();
        assert!(
            f["line"].as_u64().unwrap() > 0 && reason.len() > 10,
            "vague failure: {f}"
        );
        assert!(f["path"].as_str().unwrap().ends_with(".yml"));
    }
    assert!(doc["loaded"].as_u64().unwrap() > 0);
}

#[test]
fn sigmahq_regression_suite_passes() {
    let Some(c) = corpus("sigmahq_regression_suite_passes") else {
        return;
    };
    let out = vigil(&["rules", "test", c.join("sigma").to_str().unwrap()]);
    let text = stdout(&out);
    let last = last_line(&text);
    let nums: Vec<u64> = last
        .split(|ch: char| !ch.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (passed, failed) = (nums[0], nums[1]);
    assert!(passed >= 150, "{last}");
    // At least 99% must pass; every failure left is listed in
    // docs/sigma-conformance.md.
    assert!(failed * 100 <= (passed + failed), "{text}");
}

fn evtx_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "evtx"))
        .collect();
    v.sort();
    v
}

/// Every record of the corpus's EVTX files, read once for all the tests
/// that need them.
fn corpus_events(c: &Path) -> &'static [Event] {
    static EVENTS: std::sync::OnceLock<Vec<Event>> = std::sync::OnceLock::new();
    EVENTS.get_or_init(|| read_all(&evtx_files(&c.join("evtx"))))
}

fn read_all(files: &[PathBuf]) -> Vec<Event> {
    let mut events = Vec::new();
    for f in files {
        vigil_ingest::evtx::read_evtx(
            f,
            Default::default(),
            |e| e,
            |r| {
                if let Ok(e) = r {
                    events.push(e)
                }
            },
        )
        .unwrap();
    }
    events
}

/// An EVTX event's `record_id` is its own `EventRecordID`, not the record
/// header's number: most corpus files are exports, renumbered from 1.
#[test]
fn evtx_record_id_is_the_events_own_event_record_id() {
    let Some(c) = corpus("evtx_record_id_is_the_events_own_event_record_id") else {
        return;
    };
    let events = corpus_events(&c);
    assert!(events.len() > 8000);
    for e in events {
        let own = e.get("EventRecordID").and_then(|v| v.as_i64());
        assert_eq!(
            e.meta.record_id.map(|r| r as i64),
            own,
            "in {:?}",
            e.meta.source
        );
    }
}

/// The prefilter must never change a result: every SigmaHQ rule over every
/// corpus record, with and without it.
#[test]
fn prefilter_never_changes_results_on_the_corpus() {
    let Some(c) = corpus("prefilter_never_changes_results_on_the_corpus") else {
        return;
    };
    let events = corpus_events(&c);
    assert!(events.len() > 8000);
    let mut builder = RuleSetBuilder::new();
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(c.join("sigma/rules"))
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    for f in files {
        let (docs, _) = parse_file(
            None,
            &std::fs::read_to_string(&f).unwrap(),
            &Placeholders::new(),
        );
        builder.add_documents(docs);
    }
    let fast = builder.build();
    let slow = builder.clone().prefilter(false).build();
    let (mut s1, mut s2) = (Scratch::default(), Scratch::default());
    let mut total = 0;
    for e in events {
        let a = fast.matches(e, &mut s1).to_vec();
        let b = slow.matches(e, &mut s2).to_vec();
        assert_eq!(a, b, "record {:?} of {:?}", e.meta.record_id, e.meta.source);
        total += a.len();
    }
    assert!(total > 1000, "only {total} matches");
}

/// A hunt over the corpus finds what the library finds, and keeps going
/// past truncated and bit-flipped copies of real files.
#[test]
fn hunt_survives_damaged_evtx_and_agrees_with_the_engine() {
    let Some(c) = corpus("hunt_survives_damaged_evtx_and_agrees_with_the_engine") else {
        return;
    };
    let rules = c.join("sigma/rules/windows");
    let dir = tempfile::tempdir().unwrap();
    let files = evtx_files(&c.join("evtx"));
    // Three larger samples, intact, truncated and bit-flipped.
    let mut picked: Vec<&PathBuf> = files
        .iter()
        .filter(|f| std::fs::metadata(f).unwrap().len() > 200_000)
        .take(3)
        .collect();
    picked.sort();
    let mut intact_records = 0;
    for (i, f) in picked.iter().enumerate() {
        let bytes = std::fs::read(f).unwrap();
        std::fs::write(dir.path().join(format!("{i}_intact.evtx")), &bytes).unwrap();
        intact_records += read_all(&[(*f).clone()]).len();
        // Cut in the middle of the second chunk.
        std::fs::write(
            dir.path().join(format!("{i}_truncated.evtx")),
            &bytes[..4096 + 65536 + 30000],
        )
        .unwrap();
        let mut flipped = bytes.clone();
        let mut pos = 4096 + 600;
        while pos < flipped.len() {
            flipped[pos] ^= 0x5A;
            pos += 7919;
        }
        std::fs::write(dir.path().join(format!("{i}_flipped.evtx")), &flipped).unwrap();
    }
    std::fs::write(dir.path().join("zero.evtx"), b"").unwrap();
    let out = vigil(&[
        "hunt",
        dir.path().to_str().unwrap(),
        "-r",
        rules.to_str().unwrap(),
        "-f",
        "jsonl",
        "-q",
    ]);
    let summary = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "damaged inputs make exit status 1:\n{summary}"
    );
    assert!(summary.contains("zero.evtx"), "{summary}");
    assert!(
        summary.contains("_truncated.evtx"),
        "truncation is reported:\n{summary}"
    );
    let recs = jsonl(&out);
    // Every detection of the intact copies is there.
    let intact: usize = recs
        .iter()
        .filter(|r| r["source"].as_str().unwrap().ends_with("_intact.evtx"))
        .count();
    let alone = vigil(&[
        "hunt",
        &picked[0].to_string_lossy(),
        &picked[1].to_string_lossy(),
        &picked[2].to_string_lossy(),
        "-r",
        rules.to_str().unwrap(),
        "-f",
        "jsonl",
        "-q",
    ]);
    assert_eq!(intact, stdout(&alone).lines().count());
    assert!(intact_records > 0);
}

/// The same records hunted as EVTX, as compact JSON lines (what
/// `evtx_dump -o jsonl` writes) and as pretty-printed JSON objects one
/// after another, on two threads: the same detections, field for field.
#[test]
fn evtx_and_its_json_renderings_hunt_alike() {
    let Some(c) = corpus("evtx_and_its_json_renderings_hunt_alike") else {
        return;
    };
    let files: Vec<PathBuf> = evtx_files(&c.join("evtx")).into_iter().take(60).collect();
    let dir = tempfile::tempdir().unwrap();
    let (mut compact, mut pretty) = (String::new(), String::new());
    for f in &files {
        let mut parser = evtx::EvtxParser::from_path(f).unwrap();
        for rec in parser.records_json_value().flatten() {
            compact.push_str(&rec.data.to_string());
            compact.push('\n');
            pretty.push_str(&serde_json::to_string_pretty(&rec.data).unwrap());
            pretty.push('\n');
        }
    }
    std::fs::write(dir.path().join("compact.jsonl"), &compact).unwrap();
    std::fs::write(dir.path().join("pretty.json"), &pretty).unwrap();
    let rules = c.join("sigma/rules/windows");
    let hunt = |inputs: Vec<String>| {
        let mut args = vec![
            "hunt",
            "-r",
            rules.to_str().unwrap(),
            "-f",
            "jsonl",
            "-q",
            "-j",
            "2",
        ];
        args.extend(inputs.iter().map(String::as_str));
        let out = vigil(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let mut recs: Vec<String> = jsonl(&out)
            .into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("source");
                r.to_string()
            })
            .collect();
        recs.sort();
        recs
    };
    let from_evtx = hunt(
        files
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .collect(),
    );
    assert!(from_evtx.len() > 100, "{}", from_evtx.len());
    for name in ["compact.jsonl", "pretty.json"] {
        let from_json = hunt(vec![dir.path().join(name).to_string_lossy().into_owned()]);
        assert_eq!(from_json.len(), from_evtx.len(), "{name}");
        for (a, b) in from_evtx.iter().zip(&from_json) {
            assert_eq!(a, b, "{name}");
        }
    }
}

/// A gzip-compressed EVTX file (`.evtx.gz`) hunts like the file itself.
#[test]
fn gzipped_evtx_hunts_like_the_file() {
    use std::io::Write;
    let Some(c) = corpus("gzipped_evtx_hunts_like_the_file") else {
        return;
    };
    let files: Vec<PathBuf> = evtx_files(&c.join("evtx")).into_iter().take(30).collect();
    let (plain, gz) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (i, f) in files.iter().enumerate() {
        let bytes = std::fs::read(f).unwrap();
        std::fs::write(plain.path().join(format!("{i}.evtx")), &bytes).unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&bytes).unwrap();
        std::fs::write(
            gz.path().join(format!("{i}.evtx.gz")),
            enc.finish().unwrap(),
        )
        .unwrap();
    }
    let rules = c.join("sigma/rules/windows");
    let hunt = |dir: &Path| {
        let mut recs: Vec<String> = hunt_jsonl(dir, &rules)
            .into_iter()
            .map(|mut r| {
                let source = r["source"].as_str().unwrap().to_string();
                let name = Path::new(&source).file_name().unwrap().to_string_lossy();
                r["source"] = name.trim_end_matches(".gz").into();
                r.to_string()
            })
            .collect();
        recs.sort();
        recs
    };
    let from_plain = hunt(plain.path());
    assert!(from_plain.len() > 50, "{}", from_plain.len());
    assert_eq!(hunt(gz.path()), from_plain);
}

/// Hunting a regression sample with its rule finds what the test expects.
#[test]
fn hunt_on_a_regression_sample_finds_the_expected_match() {
    let Some(c) = corpus("hunt_on_a_regression_sample_finds_the_expected_match") else {
        return;
    };
    let info = c.join("sigma/regression_data/rules/windows/registry/registry_set/registry_set_disable_administrative_share");
    let sample: Vec<PathBuf> = evtx_files(&info);
    assert_eq!(sample.len(), 1);
    let out = vigil(&[
        "hunt",
        sample[0].to_str().unwrap(),
        "-r",
        c.join("sigma/rules/windows/registry").to_str().unwrap(),
        "-f",
        "jsonl",
        "-q",
        "--include-id",
        "c7dcacd0-cc59-4004-b0a4-1d6cdebe6f3e",
    ]);
    assert!(stdout(&out).lines().count() >= 1, "{}", stderr(&out));
}

/// The streaming EVTX flattener gives exactly the fields of the tree-based
/// one on every corpus record.
#[test]
fn streaming_flattening_equals_tree_flattening_on_the_corpus() {
    let Some(c) = corpus("streaming_flattening_equals_tree_flattening_on_the_corpus") else {
        return;
    };
    let mut n = 0;
    for f in evtx_files(&c.join("evtx")) {
        let mut parser = evtx::EvtxParser::from_path(&f).unwrap();
        for rec in parser.records_json_value().flatten() {
            let mut tree = Event::new();
            vigil_ingest::winlog::event_from_evtx_json(&rec.data, &mut tree);
            let mut stream = Event::new();
            vigil_ingest::evtx_json::flatten_evtx_json(
                rec.data.to_string().as_bytes(),
                &mut stream,
            )
            .unwrap();
            assert_eq!(
                tree,
                stream,
                "{} record {}",
                f.display(),
                rec.event_record_id
            );
            n += 1;
        }
    }
    assert!(n > 8000, "{n}");
}

fn yml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yml") {
            out.push(p);
        }
    }
}

/// The fast YAML path builds exactly the full parser's tree for every
/// SigmaHQ rule file, and takes nearly all of them.
#[test]
fn fast_yaml_path_equals_the_full_parser_on_every_rule() {
    let Some(c) = corpus("fast_yaml_path_equals_the_full_parser_on_every_rule") else {
        return;
    };
    let mut files = Vec::new();
    for dir in [
        "rules",
        "rules-emerging-threats",
        "rules-threat-hunting",
        "rules-compliance",
        "rules-placeholder",
        "deprecated",
        "unsupported",
    ] {
        yml_files(&c.join("sigma").join(dir), &mut files);
    }
    let mut fast = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        if let Some(docs) = vigil_sigma::yaml::parse_fast(&text) {
            assert_eq!(
                Ok(docs),
                vigil_sigma::yaml::parse_full(&text),
                "{}",
                f.display()
            );
            fast += 1;
        }
    }
    assert!(files.len() > 4000, "{}", files.len());
    // A regression in the fast path shows as a fall in this share.
    assert!(fast * 100 >= files.len() * 99, "{fast} of {}", files.len());
}

/// All of SigmaHQ's rules (detection rules and filters of every folder the
/// hunt loads by default) over the whole EVTX corpus: compiled afresh,
/// written to the compiled-rule cache, and loaded back from it, the hunt
/// reports the same detections, record for record.
#[test]
fn hunt_from_the_rule_cache_agrees_with_a_fresh_compile() {
    let Some(c) = corpus("hunt_from_the_rule_cache_agrees_with_a_fresh_compile") else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let evtx = c.join("evtx");
    let hunt = |extra: &[&str]| {
        let out = crate::util::command()
            .env("VIGIL_CACHE_DIR", cache.path())
            .args([
                "hunt",
                evtx.to_str().unwrap(),
                "-f",
                "jsonl",
                "-q",
                "--sort",
            ])
            .args(["-r", c.join("sigma/rules").to_str().unwrap()])
            .args([
                "-r",
                c.join("sigma/rules-emerging-threats").to_str().unwrap(),
            ])
            .args(["-r", c.join("sigma/rules-threat-hunting").to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        (stdout(&out), stderr(&out))
    };
    let (fresh, summary) = hunt(&["--no-cache"]);
    assert!(!summary.contains("compiled-rule cache"), "{summary}");
    let (written, summary) = hunt(&[]);
    assert!(!summary.contains("loaded from it"), "{summary}");
    let (loaded, summary) = hunt(&[]);
    assert!(
        summary.contains("compiled-rule cache: loaded from it"),
        "{summary}"
    );
    let detections = fresh.lines().count();
    assert!(detections > 1000, "{detections} detections");
    assert_eq!(written, fresh);
    assert_eq!(loaded, fresh);
}

/// Reading a large EVTX file tells its progress as it goes, several times
/// before the end and never past the file's length, whether the file is
/// plain (read by one thread or several) or gzip-compressed.
#[test]
fn evtx_progress_moves_within_a_large_file() {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;
    let Some(c) = corpus("evtx_progress_moves_within_a_large_file") else {
        return;
    };
    let records = |f: &Path| {
        let mut n = 0;
        vigil_ingest::evtx::read_evtx(f, Default::default(), |_| (), |_| n += 1).unwrap();
        n
    };
    // The file with the most records: most are 17 chunks long, few full.
    let fullest = evtx_files(&c.join("evtx"))
        .into_iter()
        .max_by_key(|f| records(f))
        .unwrap();
    let bytes = std::fs::read(&fullest).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("big.evtx.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&bytes).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    for (file, threads) in [(&fullest, 1), (&fullest, 2), (&gz, 1)] {
        let len = std::fs::metadata(file).unwrap().len();
        let items = AtomicU64::new(0);
        // The bytes told so far at each report.
        let reports = Mutex::new(Vec::new());
        let told = AtomicU64::new(0);
        let opts = vigil_ingest::evtx::EvtxOptions {
            threads,
            ..Default::default()
        };
        vigil_ingest::evtx::read_evtx_with_progress(
            file,
            opts,
            |n| {
                let total = told.fetch_add(n, Ordering::Relaxed) + n;
                reports.lock().unwrap().push(total);
            },
            |e| e,
            |_| {
                items.fetch_add(1, Ordering::Relaxed);
            },
        )
        .unwrap();
        let reports = reports.into_inner().unwrap();
        let before_end = reports.iter().filter(|&&t| t > 0 && t < len).count();
        let what = format!("{} ({threads} threads): {reports:?}", file.display());
        assert!(before_end >= 2, "{what}");
        assert!(told.load(Ordering::Relaxed) <= len, "{what}");
        assert!(items.load(Ordering::Relaxed) > 1000, "{what}");
    }
}
