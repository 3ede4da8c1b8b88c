//! `vigil hunt`: Sigma rules over EVTX and JSON logs, offline.
//!
//! Files are read by a few worker threads (one per core); EVTX chunks are
//! rendered and matched on the rayon pool, so a single large file uses
//! every core too. Rule evaluation runs next to parsing, and only events
//! that match leave the worker: memory stays bounded by what is in flight,
//! whatever the size of the corpus, unless `--sort` asks for all
//! detections first (then they spill to disk past a bound).

mod correlate;
mod inputs;
pub mod output;
mod select;
mod summary;

use crate::load::{load_rules, RuleOptions};
use anyhow::Context;
use inputs::{discover, InputKind};
use output::{Detection, Format, Sink};
use std::cell::RefCell;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use summary::Summary;
use vigil_event::Event;
use vigil_sigma::{RuleSet, RuleSetBuilder, Scratch};

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
    /// jsonl), none (table, csv).
    #[arg(long, value_delimiter = ',')]
    fields: Vec<String>,
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
    /// Data directory holding installed rules.
    #[arg(long, env = "VIGIL_DATA_DIR", default_value = "vigil-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    options: RuleOptions,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Matches one event; returns its detections.
fn detect(set: &RuleSet, event: Event) -> Option<(Event, Vec<usize>)> {
    SCRATCH
        .with(|s| {
            let mut s = s.borrow_mut();
            let hits = set.matches(&event, &mut s);
            if hits.is_empty() {
                None
            } else {
                Some(hits.iter().map(|m| m.rule).collect())
            }
        })
        .map(|rules| (event, rules))
}

pub fn run(args: HuntArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let placeholders = args.options.placeholders()?;
    let rule_paths = if args.rules.is_empty() && !args.parse_only {
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
    let mut loaded = if args.parse_only {
        crate::load::Loaded {
            docs: Vec::new(),
            errors: Vec::new(),
            files: 0,
        }
    } else {
        load_rules(&rule_paths, &placeholders)
    };
    let t_loaded = started.elapsed();
    let (docs, skipped) = args.select.apply(std::mem::take(&mut loaded.docs))?;
    let (docs, correlations) = correlate::split(docs);
    let mut builder = RuleSetBuilder::new();
    builder.logsources(args.options.logsource_map()?);
    builder.add_documents(docs);
    let set = builder.finish();
    let corr = correlate::Correlator::new(&set, correlations);
    loaded.errors.extend(corr.errors.iter().cloned());
    if std::env::var_os("VIGIL_TIMING").is_some() {
        eprintln!(
            "timing: rules loaded {t_loaded:?}, compiled {:?}",
            started.elapsed()
        );
    }
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
    let (inputs, input_errors) = discover(&args.inputs);
    let total_bytes: u64 = inputs.iter().map(|i| i.len).sum();
    let mut warnings = set.warnings().to_vec();
    for r in set.rules() {
        warnings.extend(r.warnings());
    }
    let mut summary = Summary::new(&set, loaded.errors, skipped, warnings);
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
    let shared = Arc::new(Shared {
        set: set.clone(),
        field_map,
        corr: Mutex::new(corr),
        parse_only: args.parse_only,
        sink: Mutex::new(sink),
        summary: Mutex::new(summary),
        events: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        progress: progress_bar(args.quiet, total_bytes),
    });
    let queue = Arc::new(Mutex::new(
        inputs
            .into_iter()
            .collect::<std::collections::VecDeque<_>>(),
    ));
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for _ in 0..threads {
            let queue = queue.clone();
            let shared = shared.clone();
            handles.push(scope.spawn(move || -> anyhow::Result<()> {
                loop {
                    let next = queue.lock().expect("queue").pop_front();
                    let Some(input) = next else { return Ok(()) };
                    process(&shared, &input, threads)?;
                }
            }));
        }
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a worker thread panicked"))??;
        }
        Ok(())
    })?;
    if std::env::var_os("VIGIL_TIMING").is_some() {
        eprintln!("timing: inputs done {:?}", started.elapsed());
    }
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
    eprint!("{}", summary.render());
    Ok(if summary.failed_inputs() > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

struct Shared {
    set: RuleSet,
    field_map: vigil_ingest::fieldmap::FieldMap,
    corr: Mutex<correlate::Correlator>,
    parse_only: bool,
    sink: Mutex<Sink>,
    summary: Mutex<Summary>,
    events: AtomicU64,
    bytes: AtomicU64,
    progress: Option<indicatif::ProgressBar>,
}

impl Shared {
    fn emit(&self, event: Event, rules: Vec<usize>) -> anyhow::Result<()> {
        let mut report = Vec::with_capacity(rules.len());
        {
            let mut corr = self.corr.lock().expect("correlator");
            for r in rules {
                if corr.consume(r, &event) {
                    report.push(r);
                }
            }
        }
        // Built before taking the output locks: working out the matched
        // fields re-evaluates the rule.
        let detections: Vec<(usize, Detection)> = report
            .into_iter()
            .map(|r| {
                let mut d = Detection::new(self.set.rule(r), &event);
                d.record.insert(
                    "matched_fields".into(),
                    self.set
                        .matched_fields(r, &event)
                        .into_iter()
                        .map(serde_json::Value::String)
                        .collect(),
                );
                (r, d)
            })
            .collect();
        let mut summary = self.summary.lock().expect("summary");
        let mut sink = self.sink.lock().expect("sink");
        for (r, d) in detections {
            summary.detection(self.set.rule(r), &d);
            sink.write(d)?;
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

fn process(shared: &Arc<Shared>, input: &inputs::Input, threads: usize) -> anyhow::Result<()> {
    let source: Arc<str> = input.path.to_string_lossy().into();
    match input.kind {
        InputKind::Evtx => {
            let set = shared.set.clone();
            let parse_only = shared.parse_only;
            let counter = Arc::new(AtomicU64::new(0));
            let c2 = counter.clone();
            let opts = vigil_ingest::evtx::EvtxOptions {
                threads,
                ..Default::default()
            };
            let mut failure = None;
            let result = vigil_ingest::evtx::read_evtx(
                &input.path,
                opts,
                move |event| {
                    c2.fetch_add(1, Ordering::Relaxed);
                    if parse_only {
                        return None;
                    }
                    detect(&set, event)
                },
                |item| match item {
                    Ok(Some((event, rules))) => {
                        if let Err(e) = shared.emit(event, rules) {
                            failure.get_or_insert(e);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => shared.error(e),
                },
            );
            if let Some(e) = failure {
                return Err(e);
            }
            if let Err(e) = result {
                shared.error(e);
            }
            shared
                .events
                .fetch_add(counter.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        InputKind::Json | InputKind::Stdin => {
            let reader: Box<dyn Read> = if input.kind == InputKind::Stdin {
                Box::new(std::io::stdin().lock())
            } else {
                match std::fs::File::open(&input.path)
                    .with_context(|| format!("opening {}", input.path.display()))
                {
                    Ok(f) => Box::new(f),
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
            let mut failure = None;
            let mut n = 0u64;
            let result =
                vigil_ingest::json::read_json_with(&source, reader, &shared.field_map, |item| {
                    match item {
                        Ok(event) => {
                            n += 1;
                            if shared.parse_only {
                                return;
                            }
                            if let Some((event, rules)) = detect(&shared.set, event) {
                                if let Err(e) = shared.emit(event, rules) {
                                    failure.get_or_insert(e);
                                }
                            }
                        }
                        Err(e) => shared.error(e),
                    }
                });
            if let Some(e) = failure {
                return Err(e);
            }
            if let Err(e) = result {
                shared.error(e);
            }
            shared.events.fetch_add(n, Ordering::Relaxed);
        }
    }
    shared.bytes.fetch_add(input.len, Ordering::Relaxed);
    if let Some(p) = &shared.progress {
        p.inc(input.len);
    }
    Ok(())
}
