//! The hunt's rule set: loaded from the compiled-rule cache when neither
//! the rule files nor the settings changed since a hunt compiled it,
//! compiled otherwise (and then cached in the background while the hunt
//! runs).
//!
//! Loading the rules while the inputs are already being read was tried:
//! the loader then competes with the readers for the same cores, and on
//! 2 cores the hunt was no faster (`compare-hunt.sh`, 21 runs: 93.8 vs
//! 91.8 ms on the 1× corpus; with one parser thread beside a loader that
//! no longer compiles anything, 80.2 vs 79.9 ms), so the hunt loads first.

use super::select::RuleSelection;
use crate::load::RuleOptions;
use crate::rulecache::{EntryRef, Key, Lookup, RuleCache};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vigil_server::rules::{load_rule_files, rule_files};
use vigil_sigma::correlation::Correlation;
use vigil_sigma::{RuleError, RuleSet, RuleSetBuilder};

/// The rules a hunt runs, and how they were had.
pub(super) struct HuntRules {
    /// The compiled detection rules and filters.
    pub set: RuleSet,
    /// Correlation rules, compiled by the hunt's correlator.
    pub correlations: Vec<Correlation>,
    /// Files and rules that did not load.
    pub errors: Vec<RuleError>,
    /// Rules left out by the selection.
    pub skipped: usize,
    /// Time spent reading the rules, then compiling them.
    pub timing: (Duration, Duration),
    /// Whether the set came from the cache.
    pub cached: bool,
    /// What the summary should say about the cache, if anything.
    pub note: Option<String>,
    /// Writing the cache entry, when one is being written.
    pub writer: Option<JoinHandle<Result<(), String>>>,
}

impl HuntRules {
    /// Waits for the cache entry to be written; a failure becomes the
    /// summary's note about the cache.
    pub fn finish_writing(&mut self) {
        if let Some(writer) = self.writer.take() {
            let failed = match writer.join() {
                Ok(Ok(())) => return,
                Ok(Err(e)) => format!("not written: {e}"),
                Err(_) => "not written: the writer panicked".to_string(),
            };
            self.note = Some(match self.note.take() {
                Some(before) => format!("{before}; {failed}"),
                None => failed,
            });
        }
    }
}

/// Loads and compiles the rules under `paths`, through `cache` when
/// given. Wrong options (a placeholder or mapping file that does not
/// read, an unknown level) are an error; rules that do not load are
/// errors in the result.
pub(super) fn load(
    paths: &[PathBuf],
    select: &RuleSelection,
    options: &RuleOptions,
    cache: Option<RuleCache>,
) -> anyhow::Result<HuntRules> {
    let started = Instant::now();
    let select = select.selector()?;
    let placeholders = options.placeholders()?;
    // Parsed only to compile: the cache's key takes the mapping file as
    // written (the built-in mapping is part of the executable, which the
    // key covers), and parsing the built-in one took a third of a
    // millisecond of every hunt.
    let map_file = options.logsource_file()?;
    let mut guessed = None;
    let (cache, files, mut errors) = match cache {
        Some(cache) => {
            let mut sorted: Vec<_> = placeholders.iter().collect();
            sorted.sort();
            let settings = format!("{paths:?}\n{select:?}\n{sorted:?}\n{map_file:?}");
            // The key (a walk and a `stat` of every rule file, 4 ms for
            // SigmaHQ's Windows rules) is worked out on the thread pool
            // while this thread decodes the entry the last hunt with these
            // settings used, which is the right one unless a rule file
            // changed since; it is used only if the key says so.
            let (found, finding) = std::sync::mpsc::sync_channel(1);
            let (walk_paths, walk_settings) = (paths.to_vec(), settings.clone());
            rayon::spawn(move || {
                let _ = found.send(Key::of_rule_files(&walk_paths, &walk_settings));
            });
            guessed = cache.recall(&settings).map(|k| (k, cache.get(&k)));
            let (key, files, errors) = finding
                .recv()
                .map_err(|_| anyhow::anyhow!("finding the rule files failed"))?;
            (Some((cache, key, settings)), files, errors)
        }
        None => {
            let (files, errors) = rule_files(paths);
            (None, files, errors)
        }
    };
    let mut note = None;
    if let Some((cache, key, settings)) = &cache {
        let lookup = match guessed {
            Some((k, lookup)) if k == *key => lookup,
            _ => {
                let lookup = cache.get(key);
                if matches!(lookup, Lookup::Hit(_)) {
                    cache.remember(settings, key);
                }
                lookup
            }
        };
        match lookup {
            Lookup::Hit(entry) => {
                errors.extend(entry.errors);
                return Ok(HuntRules {
                    set: entry.set,
                    correlations: entry.correlations,
                    errors,
                    skipped: entry.skipped,
                    timing: (started.elapsed(), Duration::ZERO),
                    cached: true,
                    note: None,
                    writer: None,
                });
            }
            Lookup::Miss => {}
            Lookup::Damaged(why) => note = Some(format!("rebuilt an unusable entry ({why})")),
        }
    }
    let (docs, file_errors) = load_rule_files(&files, &placeholders);
    let read = started.elapsed();
    let (docs, skipped) = select.apply(docs);
    let (docs, correlations) = vigil_sigma::correlation::split(docs);
    let mut builder = RuleSetBuilder::new();
    builder.logsources(crate::load::logsource_map_with(map_file.as_ref())?);
    builder.add_documents(docs);
    let set = builder.finish();
    let writer = cache.map(|(cache, key, settings)| {
        let entry_set = set.clone();
        let entry_correlations = correlations.clone();
        let entry_errors = file_errors.clone();
        std::thread::spawn(move || {
            let entry = EntryRef {
                set: entry_set.snapshot(),
                correlations: &entry_correlations,
                errors: &entry_errors,
                skipped,
            };
            cache.put(&key, &entry)?;
            cache.remember(&settings, &key);
            Ok(())
        })
    });
    errors.extend(file_errors);
    Ok(HuntRules {
        set,
        correlations,
        errors,
        skipped,
        timing: (read, started.elapsed() - read),
        cached: false,
        note,
        writer,
    })
}
