//! `vigil hunt` on JSON fixtures written here.

use crate::util::{jsonl, repo, stderr, stdout, vigil};

fn examples() -> (String, String) {
    let r = repo();
    (
        r.join("examples/logs").to_string_lossy().into_owned(),
        r.join("examples/rules").to_string_lossy().into_owned(),
    )
}

#[test]
fn jsonl_output_has_required_fields_and_detections() {
    let (logs, rules) = examples();
    let out = vigil(&["hunt", &logs, "-r", &rules, "-f", "jsonl", "--sort"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let recs = jsonl(&out);
    let titles: Vec<&str> = recs
        .iter()
        .map(|r| r["rule_title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        vec![
            "Whoami Execution",
            "Encoded PowerShell Command Line",
            "Logon Failure For Administrator"
        ]
    );
    for r in &recs {
        for key in [
            "timestamp",
            "rule_id",
            "rule_title",
            "level",
            "tags",
            "computer",
            "channel",
            "event_id",
            "record_id",
            "source",
            "fields",
        ] {
            assert!(r.get(key).is_some(), "{key} missing in {r}");
        }
    }
    assert_eq!(recs[0]["timestamp"], "2026-11-20T08:15:02.123456Z");
    assert_eq!(recs[2]["computer"], "dc01.example.org");
    assert_eq!(recs[2]["event_id"], 4625);
    assert_eq!(recs[2]["fields"]["TargetUserName"], "admin_jo");
    assert_eq!(
        recs[2]["matched_fields"],
        serde_json::json!(["EventID", "TargetUserName"])
    );
    assert_eq!(
        recs[1]["matched_fields"],
        serde_json::json!(["Image", "CommandLine"])
    );
    let summary = stderr(&out);
    assert!(
        summary.contains("detections: 3 (high 1, medium 1, low 1)"),
        "{summary}"
    );
    assert!(summary.contains("inputs: 1 files"), "{summary}");
    assert!(
        summary
            .contains("events from 2026-11-20T08:15:02.123456Z to 2026-11-20T10:01:05.000000Z\n"),
        "{summary}"
    );
    // Compiled here, or loaded from the cache an earlier test filled.
    assert!(
        summary.contains("of which loading rules: ")
            && (summary.contains("compiling")
                || summary.contains("compiled-rule cache: loaded from it")),
        "{summary}"
    );
}

/// The default table: a header row, then per detection the fields that
/// made the rule match with their values, each row on one line even when
/// a value spans several.
#[test]
fn table_shows_a_header_and_the_matched_fields_on_one_line() {
    let (logs, rules) = examples();
    let dir = tempfile::tempdir().unwrap();
    let mut text =
        std::fs::read_to_string(std::path::Path::new(&logs).join("sample.jsonl")).unwrap();
    text.push_str(
        "{\"Event\": {\"System\": {\"EventID\": 1, \"Channel\": \"Microsoft-Windows-Sysmon/Operational\", \"Computer\": \"ws02\", \"EventRecordID\": 7}, \"EventData\": {\"Image\": \"C:\\\\Windows\\\\System32\\\\WindowsPowerShell\\\\v1.0\\\\powershell.exe\", \"CommandLine\": \"powershell.exe -enc SQBFAFgA\\r\\nsecond line\"}}}\n",
    );
    let input = dir.path().join("logs.jsonl");
    std::fs::write(&input, text).unwrap();
    let out = vigil(&["hunt", input.to_str().unwrap(), "-r", &rules, "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = stdout(&out);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(
        lines[0].starts_with("Timestamp") && lines[0].contains("RecordID"),
        "{table}"
    );
    assert!(lines[0].contains("Details (matched fields)"), "{table}");
    let multi = lines
        .iter()
        .find(|l| l.contains("ws02"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        multi.contains(
            "Image=C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe ¦ \
             CommandLine=powershell.exe -enc SQBFAFgA\\nsecond line"
        ),
        "{multi}"
    );
    assert!(multi.contains(" 7 "), "record id: {multi}");
    let logon = lines
        .iter()
        .find(|l| l.contains("Logon Failure"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(logon.contains("TargetUserName=admin_jo"), "{logon}");
    assert!(
        !logon.contains("EventID="),
        "EventID has its column: {logon}"
    );

    // With --fields the picked fields replace the matched ones.
    let out = vigil(&["hunt", &logs, "-r", &rules, "-q", "--fields", "User"]);
    let table = stdout(&out);
    assert!(table.lines().next().unwrap().contains("Fields"), "{table}");
    assert!(table.contains("User=EXAMPLE\\alice"), "{table}");
    assert!(!table.contains("CommandLine="), "{table}");
}

/// `--from`/`--to` hunt one stretch of time; the summary says what they
/// left out.
#[test]
fn time_window_limits_the_hunt() {
    let (logs, rules) = examples();
    let hunt = |extra: &[&str]| {
        let mut args = vec!["hunt", &logs, "-r", &rules, "-f", "jsonl", "--sort", "-q"];
        args.extend_from_slice(extra);
        let out = vigil(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let titles: Vec<String> = jsonl(&out)
            .iter()
            .map(|r| r["rule_title"].as_str().unwrap().to_string())
            .collect();
        (titles, stderr(&out))
    };
    let (titles, summary) = hunt(&[
        "--from",
        "2026-11-20T08:15:09Z",
        "--to",
        "2026-11-20 10:00:00",
    ]);
    assert_eq!(titles, vec!["Encoded PowerShell Command Line"]);
    assert!(
        summary.contains(
            "time window: 2026-11-20T08:15:09.000000Z to 2026-11-20T10:00:00.000000Z: \
             3 events outside it, 0 without a time, left out"
        ),
        "{summary}"
    );
    let (titles, _) = hunt(&["--to", "2026-11-20"]);
    assert_eq!(titles.len(), 3, "a date as --to takes in its whole day");
    let (titles, _) = hunt(&["--from", "2026-11-21"]);
    assert!(titles.is_empty());

    let out = vigil(&["hunt", &logs, "-r", &rules, "--from", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("soon: not a time"),
        "{}",
        stderr(&out)
    );
}

/// `--dedup`: the same records in two files are reported once.
#[test]
fn dedup_reports_a_record_copied_into_two_inputs_once() {
    let (logs, rules) = examples();
    let dir = tempfile::tempdir().unwrap();
    let sample = std::path::Path::new(&logs).join("sample.jsonl");
    for name in ["a.jsonl", "b.jsonl"] {
        std::fs::copy(&sample, dir.path().join(name)).unwrap();
    }
    let d = dir.path().to_str().unwrap();
    let all = vigil(&["hunt", d, "-r", &rules, "-f", "jsonl", "-q"]);
    assert_eq!(jsonl(&all).len(), 6);
    let once = vigil(&["hunt", d, "-r", &rules, "-f", "jsonl", "-q", "--dedup"]);
    assert_eq!(jsonl(&once).len(), 3);
    let summary = stderr(&once);
    assert!(summary.contains("detections: 3 "), "{summary}");
    assert!(
        summary.contains("  3 more left out by --dedup"),
        "{summary}"
    );
}

#[test]
fn csv_and_json_parse() {
    let (logs, rules) = examples();
    let out = vigil(&[
        "hunt",
        &logs,
        "-r",
        &rules,
        "-f",
        "csv",
        "--fields",
        "CommandLine,User",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "timestamp,level,rule_title,rule_id,computer,channel,event_id,record_id,source,tags,details,CommandLine,User"
    );
    assert_eq!(lines.count(), 3);
    assert!(text.contains("whoami /all,EXAMPLE\\alice"), "{text}");
    // The details column: the fields that made the rule match.
    assert!(text.contains(",TargetUserName=admin_jo,"), "{text}");

    let out = vigil(&["hunt", &logs, "-r", &rules, "-f", "json", "-q"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc.as_array().unwrap().len(), 3);
}

#[test]
fn broken_inputs_are_reported_and_the_rest_is_read() {
    let (_, rules) = examples();
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(repo().join("examples/logs/sample.jsonl")).unwrap();
    std::fs::write(dir.path().join("good.jsonl"), &good).unwrap();
    std::fs::write(dir.path().join("broken.jsonl"), format!("{{broken\n{good}")).unwrap();
    std::fs::write(dir.path().join("fake.evtx"), b"this is not an evtx file").unwrap();
    let out = vigil(&[
        "hunt",
        dir.path().to_str().unwrap(),
        "-r",
        &rules,
        "-f",
        "jsonl",
        "-q",
    ]);
    let summary = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{summary}");
    assert_eq!(
        stdout(&out).lines().count(),
        6,
        "both good copies are hunted"
    );
    assert!(
        summary.contains("broken.jsonl:1: invalid JSON"),
        "{summary}"
    );
    assert!(summary.contains("fake.evtx"), "{summary}");
    assert!(summary.contains("2 inputs with errors"), "{summary}");
}

#[test]
fn empty_directory_and_broken_rule() {
    let (logs, rules) = examples();
    let empty = tempfile::tempdir().unwrap();
    let out = vigil(&["hunt", empty.path().to_str().unwrap(), "-r", &rules, "-q"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("inputs: 0 files"));

    let rdir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(&rules).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, rdir.path().join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        rdir.path().join("broken.yml"),
        "title: x\nlogsource: {}\ndetection:\n  sel: {a|nope: 1}\n  condition: sel\n",
    )
    .unwrap();
    let out = vigil(&[
        "hunt",
        &logs,
        "-r",
        rdir.path().to_str().unwrap(),
        "-f",
        "jsonl",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out).lines().count(), 3);
    let summary = stderr(&out);
    assert!(
        summary.contains("rules: 3 loaded, 1 failed to load"),
        "{summary}"
    );
    assert!(
        summary.contains("broken.yml:4: detection.sel.a|nope: unknown modifier 'nope'"),
        "{summary}"
    );
}

#[test]
fn rule_selection_by_level_and_tag() {
    let (logs, rules) = examples();
    let detections = |selection: &[&str]| {
        let mut args = vec!["hunt", &logs, "-r", &rules, "-f", "jsonl", "-q"];
        args.extend(selection);
        stdout(&vigil(&args)).lines().count()
    };
    assert_eq!(detections(&["--min-level", "medium"]), 2);
    assert_eq!(detections(&["--exclude-tag", "attack.t1059*"]), 2);
    assert_eq!(detections(&["--include-tag", "attack.discovery"]), 1);
}

#[test]
fn gzip_and_stdin_inputs() {
    use std::io::Write;
    let (_, rules) = examples();
    let good = std::fs::read(repo().join("examples/logs/sample.jsonl")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&good).unwrap();
    std::fs::write(dir.path().join("x.jsonl.gz"), enc.finish().unwrap()).unwrap();
    let out = vigil(&[
        "hunt",
        dir.path().to_str().unwrap(),
        "-r",
        &rules,
        "-f",
        "jsonl",
        "-q",
    ]);
    assert_eq!(stdout(&out).lines().count(), 3);

    let mut child = crate::util::command()
        .args(["hunt", "-", "-r", &rules, "-f", "jsonl", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&good).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out).lines().count(), 3);
}

/// A correlation in a hunt: five failed logons of one account within a
/// minute, then a success; the base rule's own matches are not reported
/// (`generate` is false), the correlation's are, with group, count, window
/// and the events it rests on.
#[test]
fn correlation_rules_in_a_hunt() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("brute.yml"),
        "title: Brute force then success\nid: corr-1\nlevel: high\ntags: [attack.credential-access]\ncorrelation:\n  type: temporal_ordered\n  rules: [many_failures, logon_ok]\n  group-by: [TargetUserName]\n  timespan: 10m\n---\ntitle: Many failures\nid: corr-0\nname: many_failures\ncorrelation:\n  type: event_count\n  rules: [logon_failed]\n  group-by: [TargetUserName]\n  timespan: 1m\n  condition: {gte: 5}\n---\ntitle: Logon failed\nid: base-1\nname: logon_failed\nlogsource: {product: windows, service: security}\ndetection:\n  sel: {EventID: 4625}\n  condition: sel\n---\ntitle: Logon ok\nid: base-2\nname: logon_ok\nlogsource: {product: windows, service: security}\ndetection:\n  sel: {EventID: 4624}\n  condition: sel\n",
    )
    .unwrap();
    let mut lines = String::new();
    // Written out of time order across two files: the hunt sorts.
    for (i, user) in ["bob", "bob", "eve", "bob", "bob", "bob"]
        .iter()
        .enumerate()
    {
        lines.push_str(&format!(
            "{{\"@timestamp\":\"2026-11-20T10:00:{:02}Z\",\"winlog\":{{\"channel\":\"Security\",\"event_id\":4625,\"record_id\":{i},\"event_data\":{{\"TargetUserName\":\"{user}\"}}}}}}\n",
            10 + i
        ));
    }
    std::fs::write(dir.path().join("b.jsonl"), &lines).unwrap();
    std::fs::write(
        dir.path().join("a.jsonl"),
        "{\"@timestamp\":\"2026-11-20T10:03:00Z\",\"winlog\":{\"channel\":\"Security\",\"event_id\":4624,\"record_id\":99,\"event_data\":{\"TargetUserName\":\"bob\"}}}\n",
    )
    .unwrap();
    let out = vigil(&[
        "hunt",
        dir.path().to_str().unwrap(),
        "-r",
        rules.to_str().unwrap(),
        "-f",
        "jsonl",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let recs = jsonl(&out);
    let ids: Vec<&str> = recs
        .iter()
        .map(|r| r["rule_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["corr-0", "corr-1"], "{recs:#?}");
    let inner = &recs[0];
    assert_eq!(inner["correlation_type"], "event_count");
    assert_eq!(inner["group"]["TargetUserName"], "bob");
    assert_eq!(inner["value"], 5.0);
    assert_eq!(inner["window"]["start"], "2026-11-20T10:00:10.000000Z");
    assert_eq!(inner["window"]["end"], "2026-11-20T10:00:15.000000Z");
    assert_eq!(inner["events"].as_array().unwrap().len(), 5);
    let outer = &recs[1];
    assert_eq!(outer["level"], "high");
    assert_eq!(outer["timestamp"], "2026-11-20T10:03:00.000000Z");
    assert!(
        stderr(&out).contains("correlations: 2 rules, 2 matches"),
        "{}",
        stderr(&out)
    );
}

/// ECS-shaped endpoint documents (Elastic Agent) are hunted with Sigma's
/// field names through the shipped field mappings; a user mapping file
/// adds a shipper of its own.
#[test]
fn ecs_documents_and_user_field_maps() {
    let (_, rules) = examples();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ecs.ndjson"),
        "{\"@timestamp\":\"2026-11-21T12:00:00Z\",\"ecs\":{\"version\":\"8.11.0\"},\"event\":{\"category\":\"process\"},\"host\":{\"name\":\"ws9\"},\"process\":{\"executable\":\"C:\\\\Windows\\\\System32\\\\whoami.exe\",\"command_line\":\"whoami\"}}\n",
    )
    .unwrap();
    // The example rule is for Windows process creation, which the mapping
    // selects by Channel; this ECS document has none, so map it to Sysmon.
    let map = dir.path().join("map.yml");
    std::fs::write(&map, "mappings:\n  - name: my_agent\n    when: [event.category]\n    product: windows\n    rename: {event.category: Category}\n").unwrap();
    let logsources = dir.path().join("ls.yml");
    std::fs::write(&logsources, "logsources:\n  - name: process_creation_ecs\n    logsource: {product: windows, category: process_creation}\n    conditions: {Category: process}\n").unwrap();
    let out = vigil(&[
        "hunt",
        dir.path().join("ecs.ndjson").to_str().unwrap(),
        "-r",
        &rules,
        "-f",
        "jsonl",
        "-q",
        "--field-map",
        map.to_str().unwrap(),
        "--logsources",
        logsources.to_str().unwrap(),
    ]);
    let recs = jsonl(&out);
    assert_eq!(recs.len(), 1, "{}", stderr(&out));
    assert_eq!(recs[0]["rule_title"], "Whoami Execution");
    assert_eq!(recs[0]["computer"], "ws9");
    assert_eq!(recs[0]["matched_fields"], serde_json::json!(["Image"]));
}

/// The compiled-rule cache: a second hunt loads the rules from it and
/// reports the same detections; an edited rule is compiled again; a
/// damaged entry is rebuilt, with a word in the summary; `--no-cache`
/// neither reads nor writes it.
#[test]
fn compiled_rules_are_cached_and_compiled_again_when_a_rule_changes() {
    let (logs, examples) = examples();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    for f in std::fs::read_dir(&examples).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, rules.join(f.file_name().unwrap())).unwrap();
    }
    let cache = dir.path().join("cache");
    let hunt = |extra: &[&str]| {
        let out = crate::util::command()
            .env("VIGIL_CACHE_DIR", &cache)
            .args([
                "hunt",
                &logs,
                "-r",
                rules.to_str().unwrap(),
                "-f",
                "jsonl",
                "--sort",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        (stdout(&out), stderr(&out))
    };
    let from_cache = "compiled-rule cache: loaded from it";

    let (first, summary) = hunt(&[]);
    assert_eq!(first.lines().count(), 3);
    assert!(summary.contains("compiling"), "{summary}");
    assert!(!summary.contains(from_cache), "{summary}");
    let (second, summary) = hunt(&[]);
    assert!(summary.contains(from_cache), "{summary}");
    assert!(summary.contains("rules: 3 loaded"), "{summary}");
    assert_eq!(second, first);

    // Other settings are another entry.
    let (high, summary) = hunt(&["--min-level", "high"]);
    assert!(!summary.contains(from_cache), "{summary}");
    assert!(high.lines().count() < 3, "{high}");

    // So is another log-source mapping file, and the same file edited:
    // the key takes the file as written. Here the edit maps Sysmon's
    // process creations elsewhere (the entry replaces the built-in one of
    // its name), and the rules for them no longer match.
    let mapping = dir.path().join("ls.yml");
    std::fs::write(&mapping, "logsources: []\n").unwrap();
    let args = ["--logsources", mapping.to_str().unwrap()];
    let (mapped, summary) = hunt(&args);
    assert!(!summary.contains(from_cache), "{summary}");
    assert_eq!(mapped, first);
    let (_, summary) = hunt(&args);
    assert!(summary.contains(from_cache), "{summary}");
    std::fs::write(
        &mapping,
        "logsources:\n  - name: process_creation_sysmon\n    logsource: {product: windows, category: process_creation}\n    conditions: {Channel: Elsewhere}\n",
    )
    .unwrap();
    let (remapped, summary) = hunt(&args);
    assert!(!summary.contains(from_cache), "{summary}");
    assert_eq!(remapped.lines().count(), 1, "{remapped}");

    let whoami = rules.join("whoami_sysmon.yml");
    let text = std::fs::read_to_string(&whoami).unwrap();
    std::fs::write(&whoami, text.replace("whoami.exe", "whoareyou.exe")).unwrap();
    let (edited, summary) = hunt(&[]);
    assert!(!summary.contains(from_cache), "{summary}");
    assert_eq!(edited.lines().count(), 2, "{edited}");
    assert!(!edited.contains("Whoami Execution"), "{edited}");

    for entry in std::fs::read_dir(&cache).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not an entry").unwrap();
    }
    let (rebuilt, summary) = hunt(&[]);
    assert!(summary.contains("rebuilt an unusable entry"), "{summary}");
    assert!(summary.contains("not a rule cache entry"), "{summary}");
    assert_eq!(rebuilt, edited);
    let (_, summary) = hunt(&[]);
    assert!(summary.contains(from_cache), "{summary}");

    std::fs::remove_dir_all(&cache).unwrap();
    let (uncached, summary) = hunt(&["--no-cache"]);
    assert!(!summary.contains("compiled-rule cache"), "{summary}");
    assert_eq!(uncached, edited);
    assert!(!cache.exists());
}
