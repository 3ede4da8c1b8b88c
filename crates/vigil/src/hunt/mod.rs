//! `vigil hunt`: Sigma rules over EVTX and JSON logs, offline.
//!
//! Files are read by a few worker threads (one per core), each reading
//! and matching a whole file itself while the files left can keep the
//! others busy; a larger file, or one of the last, has its EVTX chunks
//! rendered and matched on the rayon pool, so a single large file uses
//! every core too (`queue.rs`). Rule evaluation runs next to parsing, and
//! only events that match leave the worker: memory stays bounded by what
//! is in flight, whatever the size of the corpus, unless `--sort` asks
//! for all detections first (then they spill to disk past a bound).

mod correlate;
mod dedup;
mod inputs;
pub mod output;
mod queue;
mod read;
use read::{process, Hit};
mod rules;
mod select;
mod summary;
mod window;

use crate::load::RuleOptions;
use crate::rulecache::RuleCache;
use anyhow::Context;
use inputs::discover;
use output::{Format, Render, Sink};
use queue::Queue;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use summary::{Summary, TimeSpan};
use vigil_event::Event;
use vigil_sigma::RuleSet;
use window::Window;

/// Arguments of `vigil hunt`.
#[derive(clap::Args, Debug)]
pub struct HuntArgs {
    /// Files or directories (recursive) of .evtx, .json, .jsonl, .ndjson
    /// (optionally .gz); `-` reads JSON from standard input.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Sigma rule files or directories (repeatable; rules, filters).
    /// Default: the rules installed by `vigil rules update`.
    #[arg(short, long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    #[command(flatten)]
    select: select::RuleSelection,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write detections to FILE instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Event fields to include (comma-separated); default: all (json,
    /// jsonl), the fields that made the rule match (table), none (csv).
    #[arg(long, value_delimiter = ',')]
    fields: Vec<String>,
    /// Only events at or after this time: RFC 3339, a UTC time
    /// (`2019-07-19 14:43:46`) or a date (its start).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Only events at or before this time (a date: its end).
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Report a rule's match on a record once when the same record is in
    /// several inputs (overlapping collections, a log copied twice)
    #[arg(long)]
    dedup: bool,
    /// Sort detections by event time across all inputs (buffers them;
    /// spills to disk past --sort-memory).
    #[arg(long)]
    sort: bool,
    /// Detections kept in memory by --sort before spilling to disk.
    #[arg(long, default_value_t = 100_000, hide = true)]
    sort_memory: usize,
    /// Worker threads (default: one per core).
    #[arg(short = 'j', long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    /// JSON field mappings loaded on top of the built-in ones (format of
    /// crates/vigil-ingest/data/fieldmaps.yml): shippers' field names to
    /// Sigma's.
    #[arg(long, value_name = "FILE")]
    field_map: Option<PathBuf>,
    /// Read and decode every input but evaluate no rule (the parse-only
    /// pass of `vigil bench hunt`).
    #[arg(long, hide = true)]
    parse_only: bool,
    /// Compile the rules afresh, without reading or writing the
    /// compiled-rule cache.
    #[arg(long)]
    no_cache: bool,
    /// Directory of the compiled-rule cache (default:
    /// $XDG_CACHE_HOME/vigil, else ~/.cache/vigil).
    #[arg(long, env = "VIGIL_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Data directory holding installed rules.
    #[arg(long, env = "VIGIL_DATA_DIR", default_value = "vigil-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    options: RuleOptions,
}

pub fn run(args: HuntArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let time = Arc::new(Time {
        window: Window::new(args.from.as_deref(), args.to.as_deref())?,
        span: TimeSpan::default(),
    });
    let rule_paths = if args.parse_only {
        Vec::new()
    } else if args.rules.is_empty() {
        let dir = args.data_dir.join("rules");
        anyhow::ensure!(
            dir.is_dir(),
            "no --rules given and no rules installed in {} (run `vigil rules update --from <sigma checkout or git URL>`)",
            dir.display()
        );
        vec![dir]
    } else {
        args.rules.clone()
    };
    let cache = match (&args.cache_dir, args.no_cache || args.parse_only) {
        (_, true) => None,
        (Some(dir), false) => Some(RuleCache::new(dir.clone())),
        (None, false) => RuleCache::default_dir().map(RuleCache::new),
    };
    // The inputs are listed on the thread pool while this thread loads
    // the rules: listing the corpus's 277 files takes a millisecond, and
    // the pool idles while the rules are decoded.
    let (listed, listing) = std::sync::mpsc::sync_channel(1);
    let input_paths = args.inputs.clone();
    rayon::spawn(move || {
        let _ = listed.send(discover(&input_paths));
    });
    let mut rules = rules::load(&rule_paths, &args.select, &args.options, cache)?;
    let set = rules.set.clone();
    // The process ends with the hunt: freeing thousands of compiled rules
    // and their automata one by one would only delay the exit (~5 ms with
    // SigmaHQ's rules), so one reference is never dropped.
    std::mem::forget(set.clone());
    let corr = correlate::Correlator::new(&set, std::mem::take(&mut rules.correlations));
    let mut rule_errors = std::mem::take(&mut rules.errors);
    rule_errors.extend(corr.errors.iter().cloned());
    let mut field_map = vigil_ingest::fieldmap::FieldMap::builtin().clone();
    if let Some(path) = &args.field_map {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let user = vigil_ingest::fieldmap::FieldMap::parse(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        field_map.merge(user);
    }
    let threads = args
        .threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    let (inputs, input_errors) = listing
        .recv()
        .map_err(|_| anyhow::anyhow!("listing the inputs failed"))?;
    let total_bytes: u64 = inputs.iter().map(|i| i.len).sum();
    let warnings = set.warnings().to_vec();
    let mut summary = Summary::new(&set, rule_errors, rules.skipped, warnings);
    summary.correlations = corr.set.correlations().len();
    summary.files = inputs.len() as u64;
    for e in input_errors {
        summary.input_error(e);
    }
    let sink = Sink::open(
        args.format,
        args.output.as_deref(),
        &args.fields,
        args.sort,
        args.sort_memory,
    )?;
    let render = sink.renderer();
    let shared = Arc::new(Shared {
        set: set.clone(),
        render,
        field_map,
        corr: Mutex::new(corr),
        dedup: args.dedup.then(Default::default),
        parse_only: args.parse_only,
        time,
        sink: Mutex::new(sink),
        summary: Mutex::new(summary),
        events: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        active: Default::default(),
        progress: progress_bar(args.quiet, total_bytes),
    });
    let queue = Queue::new(inputs);
    let work = |queue: &Queue, shared: &Arc<Shared>| -> anyhow::Result<()> {
        while let Some((input, chunk_threads)) = queue.next(threads) {
            shared.active.fetch_add(1, Ordering::Relaxed);
            let done = process(shared, &input, chunk_threads);
            shared.active.fetch_sub(1, Ordering::Relaxed);
            done?;
        }
        Ok(())
    };
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (1..threads)
            .map(|_| scope.spawn(|| work(&queue, &shared)))
            .collect();
        // The main thread is a worker too: its heap is warm from loading
        // the rules, where a new thread's first allocations fault in
        // fresh pages.
        let mine = work(&queue, &shared);
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        }
        mine
    })?;
    let shared = Arc::try_unwrap(shared).map_err(|_| anyhow::anyhow!("workers still running"))?;
    if let Some(p) = &shared.progress {
        p.finish_and_clear();
    }
    let mut sink = shared.sink.into_inner().expect("sink");
    let mut summary = shared.summary.into_inner().expect("summary");
    // Correlations run last, over every consumed match in time order.
    let corr = shared.corr.into_inner().expect("correlator");
    let (correlated, stats) = corr.run();
    for d in correlated {
        summary.correlation_match(&d);
        sink.write(d)?;
    }
    summary.correlation_stats = stats;
    sink.finish()?;
    summary.events = shared.events.load(Ordering::Relaxed);
    summary.bytes = shared.bytes.load(Ordering::Relaxed);
    summary.elapsed = started.elapsed();
    summary.rules_loading = rules.timing;
    rules.finish_writing();
    summary.rules_cached = rules.cached;
    summary.rule_cache = rules.note;
    if set.unreadable() > 0 {
        // Never expected of an entry this build wrote behind a checksum;
        // if it happens, the user must know that some rules did not run.
        let note = format!(
            "{} rules could not be read back from it and matched nothing; hunt again with --no-cache",
            set.unreadable()
        );
        summary.rule_cache = Some(match summary.rule_cache.take() {
            Some(before) => format!("{before}; {note}"),
            None => note,
        });
    }
    summary.window = shared.time.window.as_ref().map(Window::describe);
    summary.span = shared.time.span.bounds();
    summary.repeats = shared.dedup.map(|d| d.into_inner().expect("dedup").repeats);
    eprint!("{}", summary.render());
    Ok(if summary.failed_inputs() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// What the hunt keeps of event times: the `--from`/`--to` window and
/// the span of times read.
struct Time {
    window: Option<Window>,
    span: TimeSpan,
}

struct Shared {
    set: RuleSet,
    /// Formats records on the matching threads (`None` when sorting).
    render: Option<Render>,
    field_map: vigil_ingest::fieldmap::FieldMap,
    corr: Mutex<correlate::Correlator>,
    /// With `--dedup`: the detections seen.
    dedup: Option<Mutex<dedup::Dedup>>,
    parse_only: bool,
    time: Arc<Time>,
    sink: Mutex<Sink>,
    summary: Mutex<Summary>,
    events: AtomicU64,
    bytes: AtomicU64,
    /// Inputs being read right now.
    active: std::sync::atomic::AtomicUsize,
    progress: Option<indicatif::ProgressBar>,
}

impl Shared {
    fn emit(&self, event: Arc<Event>, mut hits: Vec<Hit>) -> anyhow::Result<()> {
        if let Some(dedup) = &self.dedup {
            // Before correlation too: a repeated record must not count
            // twice towards a threshold.
            let record = dedup::Digest::of(&event);
            let mut dedup = dedup.lock().expect("dedup");
            hits.retain(|hit| dedup.first(hit.rule, record));
        }
        let mut report = Vec::with_capacity(hits.len());
        {
            let mut corr = self.corr.lock().expect("correlator");
            for hit in hits {
                if corr.consume(hit.rule, &event) {
                    report.push(hit);
                }
            }
        }
        let mut summary = self.summary.lock().expect("summary");
        let mut sink = self.sink.lock().expect("sink");
        for hit in report {
            summary.detection(self.set.rule(hit.rule), &hit.detection);
            match &hit.rendered {
                Some(bytes) => sink.write_rendered(bytes)?,
                None => sink.write(hit.detection)?,
            }
        }
        Ok(())
    }

    fn error(&self, e: vigil_ingest::IngestError) {
        self.summary.lock().expect("summary").input_error(e);
    }
}

fn progress_bar(quiet: bool, total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}
