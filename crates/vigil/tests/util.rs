//! Test helpers: run the `vigil` binary, find the shared corpus.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `vigil` with `args`.
pub fn vigil(args: &[&str]) -> Output {
    command().args(args).output().expect("vigil runs")
}

/// The `vigil` command, its compiled-rule cache in the build's directory
/// for tests (never the user's), shared by the tests: most hunts here
/// then run once on freshly compiled rules and again from the cache.
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vigil"));
    c.env(
        "VIGIL_CACHE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("rule-cache"),
    );
    c
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Standard output read as JSON lines, one record per line.
pub fn jsonl(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// `vigil hunt INPUT -r RULES -f jsonl -q`, which must succeed: its
/// records.
pub fn hunt_jsonl(input: &Path, rules: &Path) -> Vec<serde_json::Value> {
    let out = vigil(&[
        "hunt",
        &input.to_string_lossy(),
        "-r",
        &rules.to_string_lossy(),
        "-f",
        "jsonl",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    jsonl(&out)
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shared corpus (`../shared/corpus` beside the repository, or
/// `$VIGIL_CORPUS`). When it is absent the test says so loudly and is
/// skipped, unless `VIGIL_REQUIRE_CORPUS` is set (as `.ci/run` does),
/// which makes its absence a failure.
pub fn corpus(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("VIGIL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/corpus"));
    if dir.join("sigma").is_dir() && dir.join("evtx").is_dir() {
        return Some(dir);
    }
    if std::env::var_os("VIGIL_REQUIRE_CORPUS").is_some() {
        panic!(
            "{test}: the shared corpus is required (VIGIL_REQUIRE_CORPUS) but {} is missing",
            dir.display()
        );
    }
    eprintln!(
        "\n*** SKIPPING {test}: shared corpus not found at {} (set VIGIL_CORPUS) ***\n",
        dir.display()
    );
    None
}
