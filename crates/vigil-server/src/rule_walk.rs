//! Finding rule files: a directory walk spread over the thread pool, each
//! directory read, and its files handed to the caller, by the thread that
//! took it.
//!
//! A hunt that loads its rules from the compiled-rule cache still walks
//! every rule directory and `stat`s every file for the cache key. For
//! SigmaHQ's Windows rules (92 directories, 2,407 files) that was 5 ms,
//! two thirds of loading: one thread walked (walkdir) while the pool
//! stamped the files it found in runs, so the walk was the critical path
//! and the second core was idle half the time. Here every directory is a
//! task of its own, and so is every run of a large directory's files;
//! the thread that reads a directory also has it open for the caller to
//! `stat` its files relative to it.
//!
//! Symbolic links are followed, to files and to directories, as
//! `walkdir` does with `follow_links(true)`; a link back to a directory
//! the walk is inside is reported as a loop, not followed.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use vigil_sigma::RuleError;

/// A rule file the walk found, as the per-file function sees it.
pub struct Found<'a> {
    /// Its path: the path it was found under, joined with the
    /// directories walked into.
    pub path: &'a Path,
    /// Its directory, open, and its name there; `None` for a file named
    /// directly, or when the directory did not open.
    pub in_dir: Option<(&'a File, &'a OsStr)>,
}

/// How deep a walk goes: a backstop, should a loop go unseen (a
/// directory whose identity cannot be read).
const MAX_DEPTH: usize = 256;

/// Files one task takes at a time from a large directory (SigmaHQ's
/// `process_creation` holds half of its Windows rules).
const RUN: usize = 128;

/// Every `.yml`/`.yaml` file under `paths` (a file named directly is
/// taken whatever its extension), with what `per_file` made of it on the
/// thread that found it; sorted by path as [`Path`]'s order has it,
/// without duplicates: a file under two of `paths`, however they are
/// spelled (`rules` and `./rules/`, a relative path and an absolute one,
/// a link to a directory and the directory), is taken once, where it
/// comes first. Errors (a path that does not exist, a directory that
/// does not read, a broken link, a loop) are sorted by path.
pub fn walk<T: Send>(
    paths: &[PathBuf],
    per_file: impl Fn(Found<'_>) -> T + Sync,
) -> (Vec<(PathBuf, T)>, Vec<RuleError>) {
    let walk = Walk {
        per_file,
        found: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
    };
    // Spelled as their components (`a//b/./c` as `a/b/c`), so that every
    // path found is one whose order key is equal for equal paths only.
    let roots: Vec<PathBuf> = paths.iter().map(|p| p.components().collect()).collect();
    rayon::scope(|scope| {
        for p in &roots {
            if p.is_file() {
                let found = (walk.per_file)(Found {
                    path: p,
                    in_dir: None,
                });
                lock(&walk.found).push((p.clone(), found));
            } else if !p.exists() {
                walk.error(p, "no such file or directory".into());
            } else if p.is_dir() {
                let walk = &walk;
                let dir = p.clone();
                scope.spawn(move |scope| walk.directory(scope, dir, Arc::new(Vec::new())));
            }
        }
    });
    let mut found = walk.found.into_inner().unwrap_or_else(|e| e.into_inner());
    found.sort_by_cached_key(|(p, _)| path_order_key(p));
    // Under one root every file is found once, by one path; only several
    // roots (overlapping, or one place spelled two ways) find one twice.
    if roots.len() > 1 {
        found = first_of_each_file(found, &roots);
    }
    let mut errors = walk.errors.into_inner().unwrap_or_else(|e| e.into_inner());
    errors.sort_by(|a, b| (&a.path, &a.reason).cmp(&(&b.path, &b.reason)));
    (found, errors)
}

/// `found` (in order) without the files already found under another
/// spelling of the same place: each path is keyed by the canonical path
/// of the longest of `roots` it is under, joined with the rest of it
/// (names the walk read, never `..`). Links inside a walked tree are not
/// resolved: a file reached through a link to a sibling directory is
/// still found under both paths. Run for several roots only, the case a
/// differently spelled root makes.
fn first_of_each_file<T>(found: Vec<(PathBuf, T)>, roots: &[PathBuf]) -> Vec<(PathBuf, T)> {
    let canonical: Vec<Option<PathBuf>> = roots.iter().map(|r| r.canonicalize().ok()).collect();
    let mut seen = std::collections::HashSet::new();
    found
        .into_iter()
        .filter(|(p, _)| seen.insert(place_of(p, roots, &canonical)))
        .collect()
}

/// Where `path` is: the canonical path of the longest of `roots` it is
/// under, joined with the rest of it; the path itself when no root's
/// canonical path is known.
fn place_of(path: &Path, roots: &[PathBuf], canonical: &[Option<PathBuf>]) -> PathBuf {
    let under = roots
        .iter()
        .zip(canonical)
        .filter_map(|(root, canonical)| Some((root, path.strip_prefix(root).ok()?, canonical)))
        .max_by_key(|(root, _, _)| root.as_os_str().len());
    match under {
        Some((_, rest, Some(canonical))) if rest.as_os_str().is_empty() => canonical.clone(),
        Some((_, rest, Some(canonical))) => canonical.join(rest),
        _ => path.to_path_buf(),
    }
}

/// What the tasks of one walk share.
struct Walk<F, T> {
    per_file: F,
    found: Mutex<Vec<(PathBuf, T)>>,
    errors: Mutex<Vec<RuleError>>,
}

/// The directories the walk is inside: their identities (when they could
/// be read) and paths.
type Ancestors = Arc<Vec<(Option<DirId>, PathBuf)>>;

impl<F: Fn(Found<'_>) -> T + Sync, T: Send> Walk<F, T> {
    /// Reads `dir`: its subdirectories become tasks, its rule files are
    /// handed to `per_file` here or, past [`RUN`] of them, in tasks too.
    fn directory<'s>(&'s self, scope: &rayon::Scope<'s>, dir: PathBuf, ancestors: Ancestors) {
        let open = File::open(&dir);
        let id = dir_id(open.as_ref().ok(), &dir);
        if let Some(id) = &id {
            if let Some((_, ancestor)) = ancestors.iter().find(|(a, _)| a.as_ref() == Some(id)) {
                let why = format!(
                    "File system loop found: {} points to an ancestor {}",
                    dir.display(),
                    ancestor.display()
                );
                return self.error(&dir, why);
            }
        }
        if ancestors.len() >= MAX_DEPTH {
            let why = format!("more than {MAX_DEPTH} directories deep: {}", dir.display());
            return self.error(&dir, why);
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => return self.io_error(&dir, &e),
        };
        let mut below = (*ancestors).clone();
        below.push((id, dir.clone()));
        let below = Arc::new(below);
        let mut names = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    self.io_error(&dir, &e);
                    continue;
                }
            };
            let mut file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) => {
                    self.io_error(&entry.path(), &e);
                    continue;
                }
            };
            if file_type.is_symlink() {
                file_type = match std::fs::metadata(entry.path()) {
                    Ok(m) => m.file_type(),
                    Err(e) => {
                        self.io_error(&entry.path(), &e);
                        continue;
                    }
                };
            }
            if file_type.is_dir() {
                let below = below.clone();
                let sub = entry.path();
                scope.spawn(move |scope| self.directory(scope, sub, below));
            } else if is_rule_file(&entry.file_name()) {
                names.push(entry.file_name());
            }
        }
        let dir = Arc::new((dir, open.ok()));
        let mut runs = names.chunks(RUN).map(<[OsString]>::to_vec);
        let first = runs.next();
        for run in runs {
            let dir = dir.clone();
            scope.spawn(move |_| self.files(&dir, &run));
        }
        if let Some(run) = first {
            self.files(&dir, &run);
        }
    }

    /// Hands the files `names` of a directory to `per_file`.
    fn files(&self, (dir, open): &(PathBuf, Option<File>), names: &[OsString]) {
        let found: Vec<(PathBuf, T)> = names
            .iter()
            .map(|name| {
                let path = dir.join(name);
                let made = (self.per_file)(Found {
                    path: &path,
                    in_dir: open.as_ref().map(|f| (f, name.as_os_str())),
                });
                (path, made)
            })
            .collect();
        lock(&self.found).extend(found);
    }

    fn io_error(&self, path: &Path, e: &std::io::Error) {
        self.error(
            path,
            format!("IO error for operation on {}: {e}", path.display()),
        );
    }

    fn error(&self, path: &Path, why: String) {
        let path: Arc<str> = path.to_string_lossy().into();
        lock(&self.errors).push(RuleError::new(0, None, why).with_path(Some(path)));
    }
}

/// A poisoned lock still holds what was pushed before the panic (which
/// rayon passes on to the caller of [`walk`]).
fn lock<V>(m: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a file name has the extension `yml` or `yaml`, as
/// [`Path::extension`] has it (a dot file such as `.yml` has none), read
/// off the bytes: `Path::extension` parses the name as a path first, for
/// every entry of every rule directory.
fn is_rule_file(name: &OsStr) -> bool {
    let b = name.as_encoded_bytes();
    [&b".yml"[..], b".yaml"]
        .iter()
        .any(|ext| b.len() > ext.len() && b.ends_with(ext))
}

/// What identifies a directory however it is reached: device and inode.
#[cfg(unix)]
type DirId = (u64, u64);
#[cfg(not(unix))]
type DirId = PathBuf;

/// The identity of directory `path`, from its open handle when it
/// opened (one `fstat`), else from the path: without one, a link back up
/// the tree would be walked for ever.
#[cfg(unix)]
fn dir_id(open: Option<&File>, path: &Path) -> Option<DirId> {
    use std::os::unix::fs::MetadataExt;
    let m = match open {
        Some(f) => f.metadata().ok()?,
        None => std::fs::metadata(path).ok()?,
    };
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn dir_id(_: Option<&File>, path: &Path) -> Option<DirId> {
    std::fs::canonicalize(path).ok()
}

/// Sorts paths as `Path`'s own order (component by component) does, a
/// few times faster: comparing `Path`s splits both into components on
/// every comparison, and a hunt sorts thousands of rule files before each
/// run.
#[cfg(test)]
pub(crate) fn sort_paths(paths: &mut [PathBuf]) {
    paths.sort_by_cached_key(|p| path_order_key(p));
}

/// A key whose byte order is [`Path`]'s order. On Unix, a path's bytes
/// with the separator made the lowest byte, for the paths a directory
/// walk gives (no `.`, no repeated separators).
#[cfg(unix)]
fn path_order_key(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut key: Vec<u8> = p
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|&b| if b == b'/' { 0 } else { b })
        .collect();
    // A trailing separator is not a component.
    while key.last() == Some(&0) {
        key.pop();
    }
    key
}

#[cfg(not(unix))]
fn path_order_key(p: &Path) -> PathBuf {
    p.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_files_are_named_as_path_extension_has_it() {
        for name in [
            "a.yml",
            "a.yaml",
            ".yml",
            ".yaml",
            "..yml",
            "yml",
            "a.YML",
            "a.yml.bak",
            "a.ymlx",
            "a.txt",
            "a.",
            "a.y",
            "a.json",
            ".a.yml",
            "b.c.yaml",
            "",
        ] {
            let by_path = matches!(
                Path::new(name).extension().and_then(|x| x.to_str()),
                Some("yml" | "yaml")
            );
            assert_eq!(is_rule_file(OsStr::new(name)), by_path, "{name:?}");
        }
    }

    /// A file under two of the paths given, however they are spelled, is
    /// found once, under the path that comes first.
    #[test]
    fn a_file_under_two_spellings_of_a_path_is_found_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = dir.path().join("a");
        std::fs::create_dir_all(top.join("sub")).expect("mkdir");
        std::fs::create_dir(dir.path().join("b")).expect("mkdir");
        std::fs::write(top.join("sub/r.yml"), "title: t").expect("write");
        std::fs::write(top.join("top.yml"), "title: t").expect("write");
        let a = top.to_string_lossy().into_owned();
        let mut paths = vec![
            PathBuf::from(format!("{a}/sub")),
            PathBuf::from(format!("{a}//./sub/")),
            PathBuf::from(&a),
            PathBuf::from(format!("{a}/sub//r.yml")),
            PathBuf::from(format!("{a}/sub/../sub")),
        ];
        #[cfg(unix)]
        {
            let link = dir.path().join("b/link");
            std::os::unix::fs::symlink(top.join("sub"), &link).expect("symlink");
            paths.push(link);
        }
        let (found, errors) = walk(&paths, |_| ());
        assert!(errors.is_empty(), "{errors:?}");
        let found: Vec<PathBuf> = found
            .into_iter()
            .map(|(p, _)| p.canonicalize().expect("found files exist"))
            .collect();
        let top = top.canonicalize().expect("canonical");
        assert_eq!(found, [top.join("sub/r.yml"), top.join("top.yml")]);
    }
}
