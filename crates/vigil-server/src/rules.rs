//! Loading Sigma rule files from disk, in parallel, keeping every error.
//! Shared by the server and the command-line tools.

use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vigil_sigma::yaml::{parse_documents, NodeKind};
use vigil_sigma::{rule::parse_file, Document, Placeholders, RuleError};

/// Reads a placeholder values file (`Name: [value, …]`).
///
/// # Errors
/// I/O and syntax errors, with the file and line.
pub fn read_placeholders(path: &Path) -> Result<Placeholders, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading placeholders {}: {e}", path.display()))?;
    let docs = parse_documents(&text)
        .map_err(|e| format!("{}:{}: {}", path.display(), e.line, e.message))?;
    let mut out = HashMap::new();
    if let Some(map) = docs.first().and_then(|d| d.as_map()) {
        for (k, v) in map {
            let values = match &v.kind {
                NodeKind::Seq(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect(),
                NodeKind::Scalar { text, .. } => vec![text.clone()],
                NodeKind::Map(_) => {
                    return Err(format!(
                        "{}:{}: placeholder values must be a list",
                        path.display(),
                        v.line
                    ))
                }
            };
            out.insert(k.as_str().unwrap_or_default().to_string(), values);
        }
    }
    Ok(out)
}

/// Every `.yml`/`.yaml` file under the paths (files named directly are
/// taken whatever their extension), sorted for stable output.
pub fn rule_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<RuleError>) {
    walk_rule_files(paths, |_| {})
}

/// Files handed to [`walk_rule_files`]'s `found` at a time.
const RUN: usize = 128;

/// [`rule_files`], handing the files to `found` in runs as the walk finds
/// them (in the walk's order, before sorting and without duplicates
/// removed), so that work on them can start while the walk goes on.
pub fn walk_rule_files(
    paths: &[PathBuf],
    mut found: impl FnMut(&[PathBuf]),
) -> (Vec<PathBuf>, Vec<RuleError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let mut handed = 0;
    // Hands the files found since the last run to `found` once there are
    // `at_least` of them.
    let mut hand_over = |files: &[PathBuf], at_least: usize| {
        if files.len() - handed >= at_least.max(1) {
            found(&files[handed..]);
            handed = files.len();
        }
    };
    for p in paths {
        if p.is_file() {
            files.push(p.clone());
            hand_over(&files, RUN);
            continue;
        }
        if !p.exists() {
            errors.push(
                RuleError::new(0, None, "no such file or directory")
                    .with_path(Some(p.to_string_lossy().into())),
            );
            continue;
        }
        for entry in walkdir::WalkDir::new(p).follow_links(true) {
            match entry {
                Ok(e) if e.file_type().is_file() => {
                    let path = e.path();
                    if matches!(
                        path.extension().and_then(|x| x.to_str()),
                        Some("yml" | "yaml")
                    ) {
                        files.push(path.to_path_buf());
                        hand_over(&files, RUN);
                    }
                }
                Ok(_) => {}
                Err(err) => errors.push(
                    RuleError::new(0, None, err.to_string())
                        .with_path(err.path().map(|p| p.to_string_lossy().into())),
                ),
            }
        }
    }
    hand_over(&files, 1);
    sort_paths(&mut files);
    files.dedup();
    (files, errors)
}

/// Sorts paths as `Path`'s own order (component by component) does, a
/// few times faster: comparing `Path`s splits both into components on
/// every comparison, and a hunt sorts thousands of rule files before each
/// run. On Unix, a path's bytes with the separator made the lowest byte
/// order the same way for the paths a directory walk gives (no `.`, no
/// repeated separators).
fn sort_paths(paths: &mut [PathBuf]) {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        paths.sort_by_cached_key(|p| {
            let bytes = p.as_os_str().as_bytes();
            let mut key: Vec<u8> = bytes
                .iter()
                .map(|&b| if b == b'/' { 0 } else { b })
                .collect();
            // A trailing separator is not a component.
            while key.last() == Some(&0) {
                key.pop();
            }
            key
        });
    }
    #[cfg(not(unix))]
    paths.sort();
}

/// The outcome of loading rule files.
pub struct Loaded {
    /// The documents that loaded.
    pub docs: Vec<Document>,
    /// One error per document or file that did not.
    pub errors: Vec<RuleError>,
    /// Rule files read.
    pub files: usize,
}

/// Loads all rule files under the paths.
pub fn load_rules(paths: &[PathBuf], placeholders: &Placeholders) -> Loaded {
    let (files, mut errors) = rule_files(paths);
    let (docs, file_errors) = load_rule_files(&files, placeholders);
    errors.extend(file_errors);
    Loaded {
        docs,
        errors,
        files: files.len(),
    }
}

/// Loads the rule files given, in parallel: their documents in file
/// order, and an error per document or file that did not load.
pub fn load_rule_files(
    files: &[PathBuf],
    placeholders: &Placeholders,
) -> (Vec<Document>, Vec<RuleError>) {
    let results: Vec<(Vec<Document>, Vec<RuleError>)> = files
        .par_iter()
        .map(|f| load_file(f, placeholders))
        .collect();
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    for (d, e) in results {
        docs.extend(d);
        errors.extend(e);
    }
    (docs, errors)
}

/// Loads one rule file.
pub fn load_file(f: &Path, placeholders: &Placeholders) -> (Vec<Document>, Vec<RuleError>) {
    let path: Arc<str> = f.to_string_lossy().into();
    match std::fs::read(f) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => parse_file(Some(path), &text, placeholders),
            Err(e) => (
                Vec::new(),
                vec![RuleError::new(0, None, format!("not UTF-8 text: {e}")).with_path(Some(path))],
            ),
        },
        Err(e) => (
            Vec::new(),
            vec![RuleError::new(0, None, e.to_string()).with_path(Some(path))],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_files_sort_as_paths_do() {
        let names = [
            "r/a/b.yml",
            "r/a-b/c.yml",
            "r/a.b.yml",
            "r/a/b/c.yml",
            "r/ab.yml",
            "r/a b/x.yml",
            "r/a/",
            "r/a",
            "r/A/z.yml",
            "r/a/\u{e9}.yml",
            "r/a/e.yml",
            "r/!/x.yml",
            "r/a!/x.yml",
        ];
        let mut ours: Vec<PathBuf> = names.iter().map(PathBuf::from).collect();
        let mut std_order = ours.clone();
        sort_paths(&mut ours);
        std_order.sort();
        assert_eq!(ours, std_order);
    }

    /// Rule files are found through symbolic links to files and to
    /// directories as in a plain tree; other files are left out.
    #[test]
    fn rule_files_follow_symbolic_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rules");
        let outside = dir.path().join("outside");
        for d in [root.join("sub"), outside.clone()] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        for f in [
            root.join("a.yml"),
            root.join("sub/b.yaml"),
            root.join("notes.txt"),
            outside.join("c.yml"),
        ] {
            std::fs::write(f, "title: t").expect("write");
        }
        let (plain, errors) = rule_files(std::slice::from_ref(&root));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(plain, vec![root.join("a.yml"), root.join("sub/b.yaml")]);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&outside, root.join("linked")).expect("symlink");
            std::os::unix::fs::symlink(outside.join("c.yml"), root.join("sub/l.yml"))
                .expect("symlink");
            let (linked, errors) = rule_files(std::slice::from_ref(&root));
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(
                linked,
                vec![
                    root.join("a.yml"),
                    root.join("linked/c.yml"),
                    root.join("sub/b.yaml"),
                    root.join("sub/l.yml"),
                ]
            );
        }
    }
}
