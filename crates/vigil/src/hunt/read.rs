//! Reading one input of a hunt and matching its events, on the threads
//! that read it: EVTX through the `evtx` crate's pipeline, JSON through
//! `vigil_ingest::json`'s.

use super::inputs::{self, InputKind};
use super::output::{Detection, Render};
use super::{Shared, Time};
use anyhow::Context;
use std::cell::RefCell;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use vigil_event::Event;
use vigil_sigma::{RuleSet, Scratch};

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A rule that matched an event, with its record built and, unless the
/// output is sorted, already formatted.
pub(super) struct Hit {
    pub rule: usize,
    pub detection: Detection,
    pub rendered: Option<Vec<u8>>,
}

/// Matches one event; returns its detections. Runs on the threads that
/// read events, so the records (matched fields, formatting) are built in
/// parallel too.
fn detect(set: &RuleSet, render: Option<&Render>, time: &Time, event: Event) -> Option<Matched> {
    let ts = vigil_ingest::event_time(&event);
    if let Some(ts) = ts {
        time.span.see(ts);
    }
    if time.window.as_ref().is_some_and(|w| !w.admits(ts)) {
        return None;
    }
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let rules: Vec<usize> = set.matches(&event, &mut s).iter().map(|m| m.rule).collect();
        if rules.is_empty() {
            return None;
        }
        let matched: Vec<Vec<String>> = rules
            .iter()
            .map(|&r| set.matched_fields_prepared(r, &event, &s))
            .collect();
        let event = Arc::new(event);
        let hits = rules
            .into_iter()
            .zip(matched)
            .map(|(r, fields)| {
                let mut detection = Detection::new(set.rule(r), event.clone(), ts);
                detection.record.insert(
                    "matched_fields".into(),
                    fields.into_iter().map(serde_json::Value::String).collect(),
                );
                // A record that cannot be formatted here is formatted
                // again at the sink, which then reports why.
                let rendered = render.and_then(|w| w.render(&detection).ok());
                Hit {
                    rule: r,
                    detection,
                    rendered,
                }
            })
            .collect();
        Some((event, hits))
    })
}

impl Shared {
    /// What a reader hands back, on the thread that called it: detections
    /// are written, input errors noted, and the first failure to write
    /// kept in `failure` (the hunt then stops).
    fn take(
        &self,
        item: Result<Option<Matched>, vigil_ingest::IngestError>,
        failure: &mut Option<anyhow::Error>,
    ) {
        match item {
            Ok(Some((event, hits))) => {
                if let Err(e) = self.emit(event, hits) {
                    failure.get_or_insert(e);
                }
            }
            Ok(None) => {}
            Err(e) => self.error(e),
        }
    }

    /// After one input: a write failure ends the hunt, a read failure is
    /// noted, and the events read are counted.
    fn settle(
        &self,
        matcher: &Matcher,
        failure: Option<anyhow::Error>,
        result: Result<(), vigil_ingest::IngestError>,
    ) -> anyhow::Result<()> {
        if let Some(e) = failure {
            return Err(e);
        }
        if let Err(e) = result {
            self.error(e);
        }
        self.events
            .fetch_add(matcher.events.load(Ordering::Relaxed), Ordering::Relaxed);
        Ok(())
    }
}

/// Moves the progress bar as one input's bytes are read, never past its
/// length (a reader may read some bytes twice), and by the rest when it is
/// done.
struct InputProgress<'a> {
    bar: Option<&'a indicatif::ProgressBar>,
    len: u64,
    done: AtomicU64,
}

impl InputProgress<'_> {
    fn read(&self, n: u64) {
        let Some(bar) = self.bar else { return };
        let before = self.done.fetch_add(n, Ordering::Relaxed);
        let step = (before + n)
            .min(self.len)
            .saturating_sub(before.min(self.len));
        if step > 0 {
            bar.inc(step);
        }
    }

    fn finish(&self) {
        self.read(self.len);
    }
}

/// An event that matched, with its detections.
pub(super) type Matched = (Arc<Event>, Vec<Hit>);

/// Matching as the readers run it, on their threads: cheap to clone into
/// them, and it counts the events of one input.
#[derive(Clone)]
struct Matcher {
    set: RuleSet,
    render: Option<Render>,
    time: Arc<Time>,
    parse_only: bool,
    events: Arc<AtomicU64>,
}

impl Matcher {
    fn new(shared: &Shared) -> Self {
        Matcher {
            set: shared.set.clone(),
            render: shared.render.clone(),
            time: shared.time.clone(),
            parse_only: shared.parse_only,
            events: Arc::new(AtomicU64::new(0)),
        }
    }

    fn run(&self, event: Event) -> Option<Matched> {
        self.events.fetch_add(1, Ordering::Relaxed);
        if self.parse_only {
            return None;
        }
        detect(&self.set, self.render.as_ref(), &self.time, event)
    }
}

pub(super) fn process(
    shared: &Arc<Shared>,
    input: &inputs::Input,
    threads: usize,
) -> anyhow::Result<()> {
    let source: Arc<str> = input.path.to_string_lossy().into();
    let progress = InputProgress {
        bar: shared.progress.as_ref(),
        len: input.len,
        done: AtomicU64::new(0),
    };
    match input.kind {
        InputKind::Evtx => {
            let matcher = Matcher::new(shared);
            let m = matcher.clone();
            let opts = vigil_ingest::evtx::EvtxOptions {
                threads,
                ..Default::default()
            };
            let mut failure = None;
            let result = vigil_ingest::evtx::read_evtx_with_progress(
                &input.path,
                opts,
                |n| progress.read(n),
                move |event| m.run(event),
                |item| shared.take(item, &mut failure),
            );
            shared.settle(&matcher, failure, result)?;
        }
        InputKind::Json | InputKind::Stdin => {
            let reader: Box<dyn Read> = if input.kind == InputKind::Stdin {
                Box::new(std::io::stdin().lock())
            } else {
                match std::fs::File::open(&input.path)
                    .with_context(|| format!("opening {}", input.path.display()))
                {
                    Ok(f) => Box::new(vigil_ingest::Counted::new(f, |n| progress.read(n))),
                    Err(e) => {
                        shared.error(vigil_ingest::IngestError {
                            source,
                            position: vigil_ingest::Position::Source,
                            reason: format!("{e:#}"),
                        });
                        return Ok(());
                    }
                }
            };
            let matcher = Matcher::new(shared);
            let mut failure = None;
            // The cores shared among the inputs being read: with as many
            // large files as cores, each is parsed on its own thread;
            // threads and batches in flight stay bounded by the core count.
            let active = shared.active.load(Ordering::Relaxed).max(1);
            let result = vigil_ingest::json::read_json_par(
                &source,
                reader,
                &shared.field_map,
                (threads / active).max(1),
                |event| matcher.run(event),
                |item| shared.take(item, &mut failure),
            );
            shared.settle(&matcher, failure, result)?;
        }
    }
    shared.bytes.fetch_add(input.len, Ordering::Relaxed);
    progress.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_progress_never_passes_the_inputs_length() {
        let bar = indicatif::ProgressBar::hidden();
        bar.set_length(150);
        let p = InputProgress {
            bar: Some(&bar),
            len: 100,
            done: AtomicU64::new(0),
        };
        p.read(60);
        assert_eq!(bar.position(), 60);
        p.read(60);
        assert_eq!(bar.position(), 100);
        p.finish();
        assert_eq!(bar.position(), 100);
        let q = InputProgress {
            bar: Some(&bar),
            len: 50,
            done: AtomicU64::new(0),
        };
        q.read(20);
        q.finish();
        assert_eq!(bar.position(), 150);
    }
}
