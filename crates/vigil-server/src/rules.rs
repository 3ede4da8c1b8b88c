//! Loading Sigma rule files from disk, in parallel, keeping every error.
//! Shared by the server and the command-line tools.

use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vigil_sigma::yaml::{parse_documents, NodeKind};
use vigil_sigma::{rule::parse_file, Document, Placeholders, RuleError};

pub use crate::rule_walk::Found;

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
    let (found, errors) = walk_rule_files(paths, |_| ());
    (found.into_iter().map(|(path, ())| path).collect(), errors)
}

/// [`rule_files`], each file also handed to `per_file` on the thread
/// that found it, with its directory open (to `stat` it there, say): the
/// walk is spread over the thread pool (see `rule_walk.rs`).
pub fn walk_rule_files<T: Send>(
    paths: &[PathBuf],
    per_file: impl Fn(Found<'_>) -> T + Sync,
) -> (Vec<(PathBuf, T)>, Vec<RuleError>) {
    crate::rule_walk::walk(paths, per_file)
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
    use crate::rule_walk::sort_paths;

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

    /// A directory of more files than one task takes gives them all, in
    /// order, each handed to the per-file function once.
    #[test]
    fn a_large_directory_is_walked_in_runs_without_loss() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut expected = Vec::new();
        for i in 0..300 {
            let f = dir.path().join(format!("r{i:03}.yml"));
            std::fs::write(&f, "title: t").expect("write");
            expected.push(f);
        }
        let (found, errors) = walk_rule_files(&[dir.path().to_path_buf()], |f| {
            (f.path.to_path_buf(), f.in_dir.is_some())
        });
        assert!(errors.is_empty(), "{errors:?}");
        let paths: Vec<PathBuf> = found.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(paths, expected);
        assert!(found.iter().all(|(p, (seen, in_dir))| p == seen && *in_dir));
    }

    /// A tree deeper than the walk goes is reported where it stops, and
    /// what is above is found.
    #[test]
    fn a_tree_too_deep_is_reported_not_walked_for_ever() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut deep = dir.path().to_path_buf();
        for _ in 0..300 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).expect("mkdir");
        std::fs::write(dir.path().join("top.yml"), "title: t").expect("write");
        std::fs::write(deep.join("bottom.yml"), "title: t").expect("write");
        let (files, errors) = rule_files(&[dir.path().to_path_buf()]);
        assert_eq!(files, vec![dir.path().join("top.yml")]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].reason.contains("directories deep"),
            "{:?}",
            errors[0]
        );
    }

    /// A link back to a directory the walk is inside is a loop: reported,
    /// not followed. A broken link is reported too; the other files are
    /// found all the same.
    #[cfg(unix)]
    #[test]
    fn rule_files_report_loops_and_broken_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rules");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        std::fs::write(root.join("a.yml"), "title: t").expect("write");
        std::fs::write(root.join("sub/b.yml"), "title: t").expect("write");
        std::os::unix::fs::symlink(&root, root.join("sub/up")).expect("symlink");
        std::os::unix::fs::symlink(root.join("nowhere"), root.join("broken.yml")).expect("symlink");
        let (files, errors) = rule_files(std::slice::from_ref(&root));
        assert_eq!(files, vec![root.join("a.yml"), root.join("sub/b.yml")]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        let broken = root.join("broken.yml").to_string_lossy().to_string();
        let up = root.join("sub/up").to_string_lossy().to_string();
        assert_eq!(errors[0].path.as_deref(), Some(broken.as_str()));
        assert_eq!(errors[1].path.as_deref(), Some(up.as_str()));
        assert!(errors[1].reason.contains("loop"), "{:?}", errors[1]);
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
