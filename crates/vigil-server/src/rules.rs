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
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.is_file() {
            files.push(p.clone());
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
    files.sort();
    files.dedup();
    (files, errors)
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
    let results: Vec<(Vec<Document>, Vec<RuleError>)> = files
        .par_iter()
        .map(|f| load_file(f, placeholders))
        .collect();
    let mut docs = Vec::new();
    for (d, e) in results {
        docs.extend(d);
        errors.extend(e);
    }
    Loaded {
        docs,
        errors,
        files: files.len(),
    }
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
