//! `vigil rules validate` and `vigil rules test` on fixtures.

use crate::util::{stdout, vigil};

const GOOD: &str = "title: Good\nid: 11111111-0000-0000-0000-000000000001\nlogsource: {product: windows, category: process_creation}\ndetection:\n  sel: {Image|endswith: '\\whoami.exe'}\n  condition: sel\nlevel: low\n";

#[test]
fn validate_reports_each_failure_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.yml"), GOOD).unwrap();
    std::fs::write(
        dir.path().join("bad_modifier.yml"),
        GOOD.replace("endswith", "endwith"),
    )
    .unwrap();
    std::fs::write(dir.path().join("bad_yaml.yml"), "title: [unclosed\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a rule").unwrap();
    let out = vigil(&["rules", "validate", dir.path().to_str().unwrap()]);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(lines.last(), Some(&"loaded 1, failed 2"));
    assert!(
        lines.iter().any(|l| l.contains(
            "bad_modifier.yml:5: detection.sel.Image|endwith: unknown modifier 'endwith'"
        )),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bad_yaml.yml:") && l.contains("invalid YAML")),
        "{text}"
    );

    let out = vigil(&[
        "rules",
        "validate",
        "--format",
        "json",
        dir.path().to_str().unwrap(),
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["loaded"], 1);
    assert_eq!(doc["failed"], 2);
    assert_eq!(doc["failures"].as_array().unwrap().len(), 2);
}

#[test]
fn validate_all_good_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.yml"), GOOD).unwrap();
    let out = vigil(&["rules", "validate", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out).trim(), "loaded 1, failed 0");
}

/// A SigmaHQ-layout root with one JSON sample test that passes and one
/// that fails.
#[test]
fn regression_tests_pass_and_fail_with_counts() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("rules/windows")).unwrap();
    std::fs::create_dir_all(r.join("regression_data/a")).unwrap();
    std::fs::create_dir_all(r.join("regression_data/b")).unwrap();
    std::fs::write(r.join("rules/windows/good.yml"), GOOD).unwrap();
    std::fs::write(
        r.join("rules/windows/other.yml"),
        GOOD.replace("000000000001", "000000000002")
            .replace("whoami", "nltest"),
    )
    .unwrap();
    let sample = r#"{"Event": {"System": {"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational"}, "EventData": {"Image": "C:\\Windows\\System32\\whoami.exe"}}}"#;
    std::fs::write(r.join("regression_data/a/sample.json"), sample).unwrap();
    std::fs::write(r.join("regression_data/b/sample.json"), sample).unwrap();
    let info = |id: &str, path: &str| {
        format!("id: x\nrule_metadata:\n  - id: {id}\n    title: t\nregression_tests_info:\n  - name: Positive\n    type: json\n    match_count: 1\n    path: {path}\n")
    };
    std::fs::write(
        r.join("regression_data/a/info.yml"),
        info(
            "11111111-0000-0000-0000-000000000001",
            "regression_data/a/sample.json",
        ),
    )
    .unwrap();
    std::fs::write(
        r.join("regression_data/b/info.yml"),
        info(
            "11111111-0000-0000-0000-000000000002",
            "regression_data/b/sample.json",
        ),
    )
    .unwrap();
    let out = vigil(&["rules", "test", r.to_str().unwrap(), "--explain"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(text.lines().last(), Some("1 passed, 1 failed"), "{text}");
    assert!(
        text.contains("matched 0 of 1 records, expected 1"),
        "{text}"
    );
    // --explain shows the failing field and value.
    assert!(
        text.contains("FAIL Image = \"C:\\\\Windows\\\\System32\\\\whoami.exe\""),
        "{text}"
    );
}

#[test]
fn update_from_a_directory_then_hunt_with_installed_rules() {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("rules/windows")).unwrap();
    std::fs::create_dir_all(src.path().join("tests")).unwrap();
    std::fs::write(src.path().join("rules/windows/good.yml"), GOOD).unwrap();
    std::fs::write(src.path().join("tests/not_a_rule.yml"), "x: 1").unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = vigil(&[
        "rules",
        "update",
        "--from",
        src.path().to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", crate::util::stderr(&out));
    assert!(
        stdout(&out).contains("installed 1 rule files"),
        "{}",
        stdout(&out)
    );
    assert!(data.path().join("rules/rules/windows/good.yml").is_file());
    // A second update replaces the first.
    std::fs::write(
        src.path().join("rules/windows/second.yml"),
        GOOD.replace("000000000001", "000000000009"),
    )
    .unwrap();
    let out = vigil(&[
        "rules",
        "update",
        "--from",
        src.path().to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
    ]);
    assert!(stdout(&out).contains("installed 2 rule files"));
    // hunt without --rules uses them.
    let logs = crate::util::repo().join("examples/logs");
    let out = vigil(&[
        "hunt",
        logs.to_str().unwrap(),
        "--data-dir",
        data.path().to_str().unwrap(),
        "-f",
        "jsonl",
        "-q",
    ]);
    assert_eq!(
        stdout(&out).lines().count(),
        2,
        "{}",
        crate::util::stderr(&out)
    );
}
