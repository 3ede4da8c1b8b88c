//! `vigil bench`: throughput measurements on real data.
//!
//! Numbers from here are the ones quoted in notes and docs; each run
//! prints the machine, the corpus and the command so that a figure can be
//! reproduced. Timing lives here, never in tests.

use crate::load::{load_rules, RuleOptions};
use crate::regress::read_sample;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use vigil_event::Event;
use vigil_sigma::{Document, RuleSetBuilder, Scratch};

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Rule evaluation throughput, single thread: events parsed once up
    /// front, then matched against 1, 100, 1000 and all rules.
    Rules(RulesBench),
}

#[derive(clap::Args, Debug)]
pub struct RulesBench {
    /// Sigma rule files or directories.
    #[arg(long = "rules", required = true)]
    rules: Vec<PathBuf>,
    /// EVTX files or directories whose records form the event mix.
    #[arg(long = "events", required = true)]
    events: Vec<PathBuf>,
    /// Rule counts to measure ("all" for every rule).
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000,all")]
    counts: Vec<String>,
    /// Passes over the events per measurement; the median is reported.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Turn the literal prefilter off (to measure what it buys).
    #[arg(long)]
    no_prefilter: bool,
    #[command(flatten)]
    options: RuleOptions,
}

pub fn run(c: BenchCommand) -> anyhow::Result<ExitCode> {
    match c {
        BenchCommand::Rules(b) => rules(b),
    }
}

/// Every EVTX file under the paths.
pub fn evtx_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = paths
        .iter()
        .flat_map(|p| walkdir::WalkDir::new(p).follow_links(true))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("evtx"))
        })
        .collect();
    files.sort();
    files
}

fn rules(b: RulesBench) -> anyhow::Result<ExitCode> {
    let placeholders = b.options.placeholders()?;
    let map = b.options.logsource_map()?;
    let loaded = load_rules(&b.rules, &placeholders);
    let rules: Vec<Document> = loaded
        .docs
        .into_iter()
        .filter(|d| matches!(d, Document::Rule(_)))
        .collect();
    let mut events: Vec<Event> = Vec::new();
    let mut bad = 0;
    for f in evtx_files(&b.events) {
        match read_sample(&f, "evtx") {
            Ok((ev, errs)) => {
                events.extend(ev);
                bad += errs.len();
            }
            Err(_) => bad += 1,
        }
    }
    anyhow::ensure!(!events.is_empty(), "no events read");
    println!(
        "machine: {} cores; events: {} records from {:?} ({bad} unreadable); rules: {} loaded ({} failed)",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        events.len(),
        b.events,
        rules.len(),
        loaded.errors.len()
    );
    println!(
        "{:>8} {:>12} {:>14} {:>10}",
        "rules", "events/s", "ns/event", "matches"
    );
    for c in &b.counts {
        let n = if c == "all" {
            rules.len()
        } else {
            c.parse::<usize>()?.min(rules.len())
        };
        let mut builder = RuleSetBuilder::new();
        builder.logsources(map.clone()).prefilter(!b.no_prefilter);
        builder.add_documents(rules.iter().take(n).cloned());
        let set = builder.build();
        let mut scratch = Scratch::default();
        let mut times = Vec::with_capacity(b.repeat);
        let mut hits = 0;
        for _ in 0..b.repeat.max(1) {
            hits = 0;
            let start = Instant::now();
            for e in &events {
                hits += set.matches(e, &mut scratch).len();
            }
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{:>8} {:>12.0} {:>14.0} {:>10}",
            n,
            events.len() as f64 / median,
            median * 1e9 / events.len() as f64,
            hits
        );
    }
    Ok(ExitCode::SUCCESS)
}
