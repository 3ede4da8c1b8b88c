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
    /// Hunting speed and memory on EVTX files: a parse-only pass through
    /// the same reader, the full hunt, and `evtx_dump -o jsonl` (the
    /// `evtx` crate's own tool, when on PATH) as an outside reference.
    Hunt(HuntBench),
    /// Correlation engine throughput and memory per group: synthetic
    /// matches for N correlation rules over many distinct group keys.
    Correlation(CorrelationBench),
}

#[derive(clap::Args, Debug)]
pub struct CorrelationBench {
    /// Correlation rules (a mix of all seven types).
    #[arg(long, default_value_t = 50)]
    rules: usize,
    /// Distinct group-by values.
    #[arg(long, default_value_t = 100_000)]
    groups: usize,
    /// Matches fed to the engine.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
}

#[derive(clap::Args, Debug)]
pub struct HuntBench {
    /// Sigma rule files or directories for the full hunt.
    #[arg(long = "rules", required = true)]
    rules: Vec<PathBuf>,
    /// EVTX files or directories.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Runs of each command; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Hunt N copies of the inputs (symbolic links), to check that memory
    /// stays bounded as the corpus grows.
    #[arg(long, default_value_t = 1)]
    copies: usize,
    /// Worker threads for vigil (default: one per core).
    #[arg(short = 'j', long)]
    threads: Option<usize>,
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
        BenchCommand::Hunt(b) => hunt(b),
        BenchCommand::Correlation(b) => correlation(b),
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

/// Wall time and peak resident memory of one child process.
struct Run {
    secs: f64,
    peak_rss_kib: i64,
}

/// Runs a command to completion with its output discarded, measuring wall
/// time and the child's own peak RSS (from `wait4`).
fn measure(cmd: &mut std::process::Command) -> anyhow::Result<Run> {
    use std::process::Stdio;
    let start = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain old data that wait4 fills in; `pid` is our
    // child, which nothing else waits for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        r == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) <= 1,
        "{cmd:?} failed with status {status}"
    );
    Ok(Run {
        secs,
        peak_rss_kib: usage.ru_maxrss,
    })
}

fn median_run(
    repeat: usize,
    mut make: impl FnMut() -> std::process::Command,
) -> anyhow::Result<Run> {
    let mut runs = Vec::new();
    for _ in 0..repeat.max(1) {
        runs.push(measure(&mut make())?);
    }
    runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let peak = runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0);
    let mid = &runs[runs.len() / 2];
    Ok(Run {
        secs: mid.secs,
        peak_rss_kib: peak,
    })
}

fn hunt(b: HuntBench) -> anyhow::Result<ExitCode> {
    let files = evtx_files(&b.inputs);
    anyhow::ensure!(!files.is_empty(), "no .evtx files under {:?}", b.inputs);
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    let mut events = 0usize;
    for f in &files {
        vigil_ingest::evtx::read_evtx(
            f,
            Default::default(),
            |_| (),
            |r| {
                if r.is_ok() {
                    events += 1
                }
            },
        )?;
    }
    let tmp = tempfile::tempdir()?;
    let input_dir: PathBuf = if b.copies > 1 {
        for c in 0..b.copies {
            let d = tmp.path().join(format!("copy{c}"));
            std::fs::create_dir(&d)?;
            for (i, f) in files.iter().enumerate() {
                std::os::unix::fs::symlink(std::fs::canonicalize(f)?, d.join(format!("{i}.evtx")))?;
            }
        }
        tmp.path().to_path_buf()
    } else {
        b.inputs[0].clone()
    };
    let total_bytes = bytes * b.copies as u64;
    let total_events = events * b.copies;
    let exe = std::env::current_exe()?;
    let vigil = |extra: &[&str]| {
        let mut c = std::process::Command::new(&exe);
        c.arg("hunt")
            .arg(&input_dir)
            .args(["-f", "jsonl", "-o", "/dev/null", "-q"]);
        if let Some(t) = b.threads {
            c.args(["-j", &t.to_string()]);
        }
        c.args(extra);
        c
    };
    let mut rule_args: Vec<String> = Vec::new();
    for r in &b.rules {
        rule_args.push("--rules".into());
        rule_args.push(r.to_string_lossy().into_owned());
    }
    let rule_refs: Vec<&str> = rule_args.iter().map(String::as_str).collect();
    println!(
        "machine: {} cores; inputs: {} files x {} copies, {:.1} MiB, {} events; rules: {:?}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        files.len(),
        b.copies,
        total_bytes as f64 / 1048576.0,
        total_events,
        b.rules
    );
    let parse = median_run(b.repeat, || vigil(&["--parse-only"]))?;
    let full = median_run(b.repeat, || vigil(&rule_refs))?;
    let dump = match which("evtx_dump") {
        Some(tool) => {
            // evtx_dump reads one file per run; a shell loop over a list
            // file makes one measurement cover all files.
            let list = tmp.path().join("files.txt");
            let mut text = String::new();
            for _ in 0..b.copies {
                for f in &files {
                    text.push_str(&f.display().to_string());
                    text.push('\n');
                }
            }
            std::fs::write(&list, text)?;
            let script = format!(
                "while IFS= read -r f; do '{}' -o jsonl \"$f\" > /dev/null || exit 1; done < '{}'",
                tool.display(),
                list.display()
            );
            Some(median_run(b.repeat, || {
                let mut c = std::process::Command::new("sh");
                c.args(["-c", &script]);
                c
            })?)
        }
        None => None,
    };
    let row = |name: &str, r: &Run| {
        println!(
            "{:<28} {:>9.3} {:>9.1} {:>11.0} {:>10.1}",
            name,
            r.secs,
            total_bytes as f64 / 1048576.0 / r.secs,
            total_events as f64 / r.secs,
            r.peak_rss_kib as f64 / 1024.0
        );
    };
    println!(
        "{:<28} {:>9} {:>9} {:>11} {:>10}",
        "run (median)", "wall s", "MiB/s", "events/s", "peak MiB"
    );
    row("vigil parse-only", &parse);
    row("vigil hunt (all rules)", &full);
    match &dump {
        Some(d) => row("evtx_dump -o jsonl", d),
        None => println!("evtx_dump: not on PATH (cargo install evtx) — no outside reference"),
    }
    println!("ratio hunt / parse-only: {:.2}", full.secs / parse.secs);
    if let Some(d) = &dump {
        println!("ratio hunt / evtx_dump: {:.2}", full.secs / d.secs);
    }
    Ok(ExitCode::SUCCESS)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Resident memory of this process, from /proc (KiB).
fn rss_kib() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn correlation(b: CorrelationBench) -> anyhow::Result<ExitCode> {
    use vigil_sigma::correlation::{CorrelationEngine, CorrelationSet, EngineConfig, Input};
    const TYPES: [&str; 7] = [
        "type: event_count\n  condition: {gte: 1000000}",
        "type: value_count\n  condition: {field: src, gte: 1000000}",
        "type: temporal\n  condition: {gte: 1000}",
        "type: temporal_ordered\n  condition: {gte: 1000}",
        "type: value_sum\n  condition: {field: bytes, gte: 1.0e18}",
        "type: value_avg\n  condition: {field: bytes, gte: 1.0e18}",
        "type: value_percentile\n  condition: {field: bytes, percentile: 95, gte: 1.0e18}",
    ];
    // Conditions no window reaches, so that state only grows: the worst
    // case for memory.
    let mut text = String::new();
    for i in 0..b.rules {
        let ty = TYPES[i % TYPES.len()];
        text.push_str(&format!(
            "title: c{i}\nid: c{i}\ncorrelation:\n  {ty}\n  rules: [base{a}, base{b}]\n  group-by: [user]\n  timespan: 1h\n---\n",
            a = i % 5,
            b = (i + 1) % 5
        ));
    }
    let (docs, errors) =
        vigil_sigma::rule::parse_file(None, &text, &vigil_sigma::Placeholders::new());
    anyhow::ensure!(errors.is_empty(), "{errors:?}");
    let corrs = docs
        .into_iter()
        .filter_map(|d| match d {
            Document::Correlation(c) => Some(*c),
            _ => None,
        })
        .collect();
    let (set, errors) = CorrelationSet::new(corrs, &|r| r.starts_with("base"));
    anyhow::ensure!(errors.is_empty(), "{errors:?}");
    let mut engine = CorrelationEngine::new(
        std::sync::Arc::new(set),
        EngineConfig {
            lateness_ns: 0,
            max_groups: b.groups.max(1),
            max_events_per_group: 10_000,
        },
    );
    // Pre-build a small pool of events; the group key varies per input.
    let refs: Vec<Vec<String>> = (0..5).map(|i| vec![format!("base{i}")]).collect();
    let users: Vec<String> = (0..b.groups).map(|g| format!("user{g:06}")).collect();
    let before = rss_kib();
    let mut rng: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut event = Event::new();
    event.push("user", "");
    event.push("src", "");
    event.push("bytes", 0i64);
    let start = Instant::now();
    let mut fired = 0usize;
    for i in 0..b.events {
        let r = next();
        event.set("user", users[(r as usize) % users.len()].as_str());
        event.set("src", format!("10.0.{}.{}", (r >> 20) % 4, (r >> 30) % 250));
        event.set("bytes", ((r >> 40) % 100_000) as i64);
        let ts = i as i64 * 1_000_000; // 1 ms apart
        fired += engine
            .push(Input {
                ts_ns: ts,
                refs: &refs[(r >> 8) as usize % 5],
                event: &event,
                event_ref: "e",
            })
            .len();
    }
    let secs = start.elapsed().as_secs_f64();
    let after = rss_kib();
    let groups = engine.group_count();
    let stats = engine.stats();
    println!(
        "correlation rules: {}; distinct group keys: {}; inputs: {} (each feeds 20 rules on average)",
        b.rules, b.groups, b.events
    );
    println!(
        "throughput: {:.0} inputs/s ({:.2} s), single thread; matches {fired}; groups held {groups}; evicted {}; late {}",
        b.events as f64 / secs,
        secs,
        stats.evicted_groups,
        stats.late
    );
    println!(
        "memory: {:.1} MiB for {groups} groups = {:.0} bytes per group (RSS delta, includes window entries)",
        (after - before) as f64 / 1024.0,
        (after - before) as f64 * 1024.0 / groups.max(1) as f64
    );
    Ok(ExitCode::SUCCESS)
}
