//! Finding the input files of a hunt and telling EVTX from JSON.

use std::io::Read;
use std::path::{Path, PathBuf};
use vigil_ingest::{IngestError, Position};

/// How an input is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Evtx,
    Json,
    Stdin,
}

/// One input file.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: PathBuf,
    pub kind: InputKind,
    pub len: u64,
}

/// The kind a file name says, if any.
fn kind_by_name(path: &Path) -> Option<InputKind> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".evtx") {
        Some(InputKind::Evtx)
    } else if name.ends_with(".json") || name.ends_with(".jsonl") || name.ends_with(".ndjson") {
        Some(InputKind::Json)
    } else {
        None
    }
}

/// The kind by content: EVTX files start with `ElfFile\0`.
fn kind_by_content(path: &Path) -> std::io::Result<InputKind> {
    let mut head = [0u8; 8];
    let mut f = std::fs::File::open(path)?;
    let n = f.read(&mut head)?;
    Ok(if n == 8 && &head == b"ElfFile\0" {
        InputKind::Evtx
    } else {
        InputKind::Json
    })
}

/// Expands the command line's inputs: directories recursively (files of
/// known extensions only), files named directly whatever their name (by
/// content), `-` for standard input. Paths that do not exist or cannot be
/// listed are errors; the rest goes on.
pub fn discover(paths: &[PathBuf]) -> (Vec<Input>, Vec<IngestError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let err = |p: &Path, reason: String| IngestError {
        source: p.to_string_lossy().into(),
        position: Position::Source,
        reason,
    };
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(Input {
                path: p.clone(),
                kind: InputKind::Stdin,
                len: 0,
            });
            continue;
        }
        let meta = match std::fs::metadata(p) {
            Ok(m) => m,
            Err(e) => {
                errors.push(err(p, e.to_string()));
                continue;
            }
        };
        if meta.is_file() {
            let kind = match kind_by_name(p) {
                Some(k) => k,
                None => match kind_by_content(p) {
                    Ok(k) => k,
                    Err(e) => {
                        errors.push(err(p, e.to_string()));
                        continue;
                    }
                },
            };
            out.push(Input {
                path: p.clone(),
                kind,
                len: meta.len(),
            });
            continue;
        }
        if !meta.is_dir() {
            // A pipe or device named on the command line, as with
            // `vigil hunt <(zcat logs.jsonl.gz)`: read as a JSON stream.
            // EVTX cannot be: its reader seeks.
            match kind_by_name(p) {
                Some(InputKind::Evtx) => errors.push(err(
                    p,
                    "not a regular file: EVTX is read by seeking, so it must be a file".into(),
                )),
                _ => out.push(Input {
                    path: p.clone(),
                    kind: InputKind::Json,
                    len: 0,
                }),
            }
            continue;
        }
        for entry in walkdir::WalkDir::new(p)
            .follow_links(true)
            .sort_by_file_name()
        {
            match entry {
                Ok(e) if e.file_type().is_file() => {
                    if let Some(kind) = kind_by_name(e.path()) {
                        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                        out.push(Input {
                            path: e.into_path(),
                            kind,
                            len,
                        });
                    }
                }
                Ok(e) if !e.file_type().is_dir() && kind_by_name(e.path()).is_some() => {
                    // A pipe, socket or device with a log's name: reading it
                    // could block for ever, so it is skipped, and said so.
                    errors.push(err(
                        e.path(),
                        "not a regular file, skipped (name it on the command line to read it as a stream)"
                            .into(),
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| p.clone());
                    errors.push(err(&path, e.to_string()));
                }
            }
        }
    }
    // Largest first: the long EVTX files start early and the small ones
    // fill the gaps at the end.
    out.sort_by(|a, b| b.len.cmp(&a.len).then_with(|| a.path.cmp(&b.path)));
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe named on the command line is read as a JSON stream; one
    /// found in a directory is reported, not read (it could block) and
    /// not silently dropped.
    #[test]
    fn pipes_named_are_read_and_pipes_found_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("live.jsonl");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("SKIPPED: mkfifo is not available");
            return;
        }
        let (inputs, errors) = discover(std::slice::from_ref(&fifo));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(inputs[0].kind, InputKind::Json);
        let (inputs, errors) = discover(&[dir.path().to_path_buf()]);
        assert!(inputs.is_empty());
        assert!(
            errors[0].reason.starts_with("not a regular file, skipped"),
            "{errors:?}"
        );
        let evtx = dir.path().join("pipe.evtx");
        std::process::Command::new("mkfifo")
            .arg(&evtx)
            .status()
            .unwrap();
        let (inputs, errors) = discover(&[evtx]);
        assert!(inputs.is_empty());
        assert!(
            errors[0].reason.contains("EVTX is read by seeking"),
            "{errors:?}"
        );
    }

    #[test]
    fn kinds_by_name() {
        assert_eq!(kind_by_name(Path::new("a/B.EVTX")), Some(InputKind::Evtx));
        assert_eq!(kind_by_name(Path::new("x.jsonl.gz")), Some(InputKind::Json));
        assert_eq!(kind_by_name(Path::new("x.ndjson")), Some(InputKind::Json));
        assert_eq!(kind_by_name(Path::new("x.txt")), None);
    }

    #[test]
    fn missing_path_is_an_error_and_directories_recurse() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.json"), "{}").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let (inputs, errors) = discover(&[dir.path().to_path_buf(), dir.path().join("nope")]);
        assert_eq!(inputs.len(), 1);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].source.ends_with("nope"));
    }
}
