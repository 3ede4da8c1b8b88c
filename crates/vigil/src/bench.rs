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
    /// Sustained ingest through a running server (`_bulk` and syslog TCP)
    /// with the given rules active: events/s to detection, and p50/p99
    /// event-to-alert latency.
    Ingest(IngestBench),
    /// Correlation engine throughput and memory per group: synthetic
    /// matches for N correlation rules over many distinct group keys.
    Correlation(CorrelationBench),
}

#[derive(clap::Args, Debug)]
pub struct IngestBench {
    /// Sigma rule files or directories active in the server.
    #[arg(long = "rules", required = true)]
    rules: Vec<PathBuf>,
    /// EVTX files or directories whose records, in Winlogbeat's shape,
    /// make the event mix.
    #[arg(long = "events", required = true)]
    events: Vec<PathBuf>,
    /// Events to send per transport.
    #[arg(long, default_value_t = 400_000)]
    count: usize,
    /// Concurrent senders.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Events per `_bulk` request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Offered load for `_bulk` in events/s over all senders (0: as fast
    /// as the server answers). Latency is only meaningful below the rate
    /// detection sustains.
    #[arg(long, default_value_t = 0)]
    rate: u64,
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
        BenchCommand::Ingest(b) => ingest(b),
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
        "{:>8} {:>12} {:>14} {:>10} {:>12}",
        "rules", "events/s", "ns/event", "matches", "evals/event"
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
        let mut evals = 0;
        for _ in 0..b.repeat.max(1) {
            hits = 0;
            evals = scratch.evaluations();
            let start = Instant::now();
            for e in &events {
                hits += set.matches(e, &mut scratch).len();
            }
            times.push(start.elapsed().as_secs_f64());
            evals = scratch.evaluations() - evals;
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{:>8} {:>12.0} {:>14.0} {:>10} {:>12.2}",
            n,
            events.len() as f64 / median,
            median * 1e9 / events.len() as f64,
            hits,
            evals as f64 / events.len() as f64
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Wall time and peak resident memory of one child process.
struct Run {
    secs: f64,
    peak_rss_kib: i64,
    /// For a hunt: the seconds its summary says went to loading rules.
    rules_secs: Option<f64>,
}

/// The rule-loading time from a hunt summary ("of which loading rules:
/// 0.062 s (…)").
fn rules_secs(summary: &str) -> Option<f64> {
    summary
        .lines()
        .find_map(|l| l.strip_prefix("of which loading rules: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Runs a command to completion with its output discarded, measuring wall
/// time and the child's own peak RSS (from `wait4`).
fn measure(cmd: &mut std::process::Command) -> anyhow::Result<Run> {
    use std::process::Stdio;
    let mut stderr = tempfile::tempfile()?;
    let start = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(stderr.try_clone()?)
        .spawn()?;
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
    let mut text = String::new();
    {
        use std::io::{Read, Seek};
        stderr.rewind()?;
        stderr.read_to_string(&mut text)?;
    }
    Ok(Run {
        secs,
        peak_rss_kib: usage.ru_maxrss,
        rules_secs: rules_secs(&text),
    })
}

fn median_run(repeat: usize, make: impl Fn() -> std::process::Command) -> anyhow::Result<Run> {
    let mut runs = median_runs(repeat, &[&make])?;
    Ok(runs.remove(0))
}

/// Runs every command `repeat` times, round-robin (so the machine's noise
/// hits all of them alike, not one more than another); the median run of
/// each.
fn median_runs(
    repeat: usize,
    make: &[&dyn Fn() -> std::process::Command],
) -> anyhow::Result<Vec<Run>> {
    let mut runs: Vec<Vec<Run>> = make.iter().map(|_| Vec::new()).collect();
    for _ in 0..repeat.max(1) {
        for (m, out) in make.iter().zip(&mut runs) {
            out.push(measure(&mut m())?);
        }
    }
    Ok(runs.into_iter().map(median).collect())
}

/// The median of runs by wall time, with the highest peak memory of all
/// and the median rule-loading time.
fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    let peak = runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0);
    let mid = &runs[runs.len() / 2];
    let mut rules: Vec<f64> = runs.iter().filter_map(|r| r.rules_secs).collect();
    rules.sort_by(f64::total_cmp);
    Run {
        secs: mid.secs,
        peak_rss_kib: peak,
        rules_secs: rules.get(rules.len() / 2).copied(),
    }
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
    // A compiled-rule cache of the benchmark's own, filled by a first hunt
    // before the clock starts.
    let cache = tmp.path().join("rule-cache");
    let vigil = |extra: &[&str]| {
        let mut c = std::process::Command::new(&exe);
        c.env("VIGIL_CACHE_DIR", &cache);
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
    let mut uncached_args = rule_refs.clone();
    uncached_args.push("--no-cache");
    measure(&mut vigil(&rule_refs))?;
    let runs = median_runs(
        b.repeat,
        &[&|| vigil(&["--parse-only"]), &|| vigil(&rule_refs), &|| {
            vigil(&uncached_args)
        }],
    )?;
    let [parse, full, uncached] =
        <[Run; 3]>::try_from(runs).map_err(|_| anyhow::anyhow!("three medians expected"))?;
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
    row("vigil hunt (rule cache)", &full);
    row("vigil hunt --no-cache", &uncached);
    match &dump {
        Some(d) => row("evtx_dump -o jsonl", d),
        None => println!("evtx_dump: not on PATH (cargo install evtx) — no outside reference"),
    }
    for (name, run) in [("hunt", &full), ("hunt --no-cache", &uncached)] {
        print!("ratio {name} / parse-only: {:.2}", run.secs / parse.secs);
        if let Some(r) = run.rules_secs {
            // Loading the rules is a fixed cost, whatever the corpus
            // size: on a small corpus it is much of the difference.
            print!(
                "; loading rules (median) {r:.3} s, ratio without it {:.2}",
                (run.secs - r) / parse.secs
            );
        }
        println!();
    }
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
    let (_, corrs) = vigil_sigma::correlation::split(docs);
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

/// An event in Winlogbeat's shape (as Winlogbeat would ship the record).
fn winlogbeat_doc(e: &Event) -> String {
    const SYSTEM: &[(&str, &str)] = &[
        ("Channel", "channel"),
        ("EventID", "event_id"),
        ("Computer", "computer_name"),
        ("Provider_Name", "provider_name"),
        ("EventRecordID", "record_id"),
    ];
    let mut winlog = serde_json::Map::new();
    let mut data = serde_json::Map::new();
    for (name, value) in e.fields() {
        match SYSTEM.iter().find(|(n, _)| *n == name) {
            Some((_, w)) => {
                winlog.insert((*w).to_string(), vigil_event::value_to_json(value));
            }
            None => {
                data.insert(name.to_string(), vigil_event::value_to_json(value));
            }
        }
    }
    winlog.insert("event_data".into(), serde_json::Value::Object(data));
    let ts = e.meta.timestamp_ns.unwrap_or(0);
    serde_json::json!({"@timestamp": vigil_ingest::rfc3339(ts), "winlog": winlog, "host": {"name": e.get("Computer").map(|c| c.to_string())}}).to_string()
}

fn http_post(
    addr: &std::net::SocketAddr,
    path: &str,
    token: &str,
    body: &str,
) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    anyhow::ensure!(
        out.starts_with("HTTP/1.1 200"),
        "{}",
        out.lines().next().unwrap_or("")
    );
    Ok(out)
}

fn ingest(b: IngestBench) -> anyhow::Result<ExitCode> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let mut docs = Vec::new();
    for f in evtx_files(&b.events) {
        if let Ok((ev, _)) = read_sample(&f, "evtx") {
            docs.extend(ev.iter().map(winlogbeat_doc));
        }
    }
    anyhow::ensure!(!docs.is_empty(), "no events read");
    let docs = Arc::new(docs);
    let dir = tempfile::tempdir()?;
    let config = vigil_server::Config {
        data_dir: dir.path().join("data"),
        rules: b.rules.clone(),
        syslog: vec![vigil_server::config::SyslogListener {
            listen: "127.0.0.1:0".into(),
            protocol: vigil_server::config::SyslogProtocol::Tcp,
            tls_cert: None,
            tls_key: None,
            product: Some("linux".into()),
        }],
        max_backlog_events: u64::MAX,
        ..vigil_server::Config::default()
    };
    std::fs::create_dir_all(&config.data_dir)?;
    let db = Arc::new(
        vigil_server::db::Db::open(&config.data_dir.join("vigil.db"))
            .map_err(anyhow::Error::msg)?,
    );
    let token = db
        .create_token("bench", vigil_server::auth::Role::Admin)
        .map_err(anyhow::Error::msg)?;
    let state = vigil_server::AppState::start(config.clone(), db).map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let router = vigil_server::app(state.clone());
    rt.spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await;
    });
    let syslog = rt
        .block_on(vigil_server::syslog::spawn_all(
            &config.syslog,
            state.clone(),
        ))
        .map_err(anyhow::Error::msg)?;
    println!(
        "machine: {} cores; rules: {:?}; event mix: {} Winlogbeat-shaped records from {:?}; {} senders",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        b.rules,
        docs.len(),
        b.events,
        b.clients
    );
    let wait_detected = |target: u64| loop {
        let (done, _) = state.detection_progress();
        if done >= target {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };

    // _bulk
    let sent = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..b.clients)
        .map(|c| {
            let (docs, sent, token) = (docs.clone(), sent.clone(), token.clone());
            let (count, batch, rate, clients) = (b.count, b.batch, b.rate, b.clients);
            std::thread::spawn(move || -> anyhow::Result<()> {
                // Request bodies are built before the clock matters and
                // reused: the senders share the machine with the server,
                // and what is measured is the server.
                let mut i = c * 7919;
                let bodies: Vec<String> = (0..8)
                    .map(|_| {
                        let mut body = String::with_capacity(batch * 600);
                        for _ in 0..batch {
                            body.push_str("{\"index\":{}}\n");
                            body.push_str(&docs[i % docs.len()]);
                            body.push('\n');
                            i += 1;
                        }
                        body
                    })
                    .collect();
                let mut n = 0;
                let began = Instant::now();
                loop {
                    let already = sent.fetch_add(batch, Ordering::SeqCst);
                    if already >= count {
                        return Ok(());
                    }
                    if rate > 0 {
                        // Pace: this sender's share of the offered load.
                        let due = (n * batch * clients) as f64 / rate as f64;
                        let wait = due - began.elapsed().as_secs_f64();
                        if wait > 0.0 {
                            std::thread::sleep(std::time::Duration::from_secs_f64(wait));
                        }
                    }
                    http_post(&addr, "/_bulk", &token, &bodies[n % bodies.len()])?;
                    n += 1;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    }
    let acked = b.count.div_ceil(b.batch) * b.batch;
    let ack_secs = start.elapsed().as_secs_f64();
    wait_detected(acked as u64);
    let secs = start.elapsed().as_secs_f64();
    let (_, lat) = state.detection_progress();
    let (p50, p99) = lat.unwrap_or((f64::NAN, f64::NAN));
    println!(
        "_bulk:      {acked} events; acknowledged (durable) at {:.0} events/s; through detection at {:.0} events/s ({:.2} s); event-to-alert latency p50 {:.3} s, p99 {:.3} s",
        acked as f64 / ack_secs,
        acked as f64 / secs,
        secs,
        p50,
        p99
    );

    // syslog over TCP: RFC 5424 lines, one connection per sender.
    let before = state.detection_progress().0;
    let start = Instant::now();
    let per = b.count / b.clients.max(1);
    let handles: Vec<_> = (0..b.clients)
        .map(|c| {
            let target = syslog[0];
            std::thread::spawn(move || -> anyhow::Result<()> {
                use std::io::Write;
                let mut s = std::io::BufWriter::new(std::net::TcpStream::connect(target)?);
                for i in 0..per {
                    writeln!(s, "<38>1 2026-11-20T10:00:00Z host{c} sshd {i} - - Failed password for invalid user admin{i} from 10.0.{c}.{} port 22 ssh2", i % 250)?;
                }
                s.flush()?;
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    }
    let total = (per * b.clients) as u64;
    wait_detected(before + total);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "syslog tcp: {total} events; through detection at {:.0} events/s ({secs:.2} s)",
        total as f64 / secs
    );
    state.shutdown();
    Ok(ExitCode::SUCCESS)
}
