//! The detection thread: follows the event log, matches every event
//! against the rule set, folds matches into alerts.

use crate::db::{Db, NewMatch};
use crate::rules::load_rules;
use crate::Config;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;
use vigil_sigma::{Document, RuleError, RuleSet, RuleSetBuilder, Scratch};
use vigil_store::wal::Wal;

/// The loaded rules and what failed to load.
pub struct Rules {
    /// The compiled set.
    pub set: RuleSet,
    /// Rules that did not load, with reasons.
    pub errors: Vec<RuleError>,
}

impl Rules {
    /// Loads the configured rules, leaving out the ids in `disabled`.
    pub fn load_without(config: &Config, disabled: &[String]) -> Result<Rules, String> {
        let mut r = Self::load(config)?;
        if !disabled.is_empty() {
            let kept: Vec<_> = r
                .set
                .rules()
                .iter()
                .filter(|rule| !rule.id.as_ref().is_some_and(|id| disabled.contains(id)))
                .cloned()
                .collect();
            let mut b = RuleSetBuilder::new();
            for rule in kept {
                b.add_rule(rule);
            }
            r.set = b.finish();
        }
        Ok(r)
    }

    /// Loads the configured rules.
    pub fn load(config: &Config) -> Result<Rules, String> {
        let placeholders = match &config.placeholders {
            Some(p) => crate::rules::read_placeholders(p)?,
            None => Default::default(),
        };
        let paths: Vec<_> = config
            .rule_paths()
            .into_iter()
            .filter(|p| p.exists())
            .collect();
        let loaded = load_rules(&paths, &placeholders);
        let mut b = RuleSetBuilder::new();
        b.add_documents(
            loaded
                .docs
                .into_iter()
                .filter(|d| !matches!(d, Document::Correlation(_))),
        );
        Ok(Rules {
            set: b.finish(),
            errors: loaded.errors,
        })
    }
}

/// Counters the metrics endpoint shows.
#[derive(Default)]
pub struct Counters {
    /// Events through detection.
    pub events_detected: AtomicU64,
    /// Matches folded into alerts.
    pub matches: AtomicU64,
    /// Sum and count of event-to-alert latencies (microseconds).
    pub latency_us_sum: AtomicU64,
    /// Count of latency samples.
    pub latency_samples: AtomicU64,
    /// Largest latency seen (microseconds).
    pub latency_us_max: AtomicU64,
    /// Records that could not be decoded (counted, reported in the log).
    pub bad_records: AtomicU64,
    /// A uniform sample of event-to-alert latencies (microseconds), for
    /// percentiles.
    pub latency_sample: Mutex<Vec<u64>>,
}

/// Latencies kept for percentiles (reservoir sampling past this).
const LATENCY_SAMPLE: usize = 100_000;

impl Counters {
    /// p50 and p99 of the sampled event-to-alert latencies, in seconds.
    pub fn latency_percentiles(&self) -> Option<(f64, f64)> {
        let mut v = self
            .latency_sample
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at =
            |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1e6;
        Some((at(0.50), at(0.99)))
    }
}

/// The running pipeline.
pub struct Pipeline {
    /// The event log.
    pub wal: Arc<Wal>,
    /// The rules in use.
    pub rules: RwLock<Arc<Rules>>,
    /// Next log record detection will read.
    pub detected_up_to: AtomicU64,
    /// Counters.
    pub counters: Counters,
    stop: AtomicBool,
    wake: (Mutex<bool>, Condvar),
}

impl Pipeline {
    /// Starts the detection thread.
    pub fn start(config: &Config, db: Arc<Db>, wal: Arc<Wal>) -> Result<Arc<Pipeline>, String> {
        let rules = Rules::load_without(config, &db.disabled_rules()?)?;
        let start = db.checkpoint()?;
        let p = Arc::new(Pipeline {
            wal,
            rules: RwLock::new(Arc::new(rules)),
            detected_up_to: AtomicU64::new(start),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            wake: (Mutex::new(false), Condvar::new()),
        });
        let worker = p.clone();
        let window_ns = config.alert_window_secs as i64 * 1_000_000_000;
        let group_field = config.alert_group_field.clone();
        let watch_db = db.clone();
        std::thread::Builder::new()
            .name("vigil-detect".into())
            .spawn(move || worker.run(&db, window_ns, &group_field))
            .map_err(|e| e.to_string())?;
        // Reload when rule files change (checked every few seconds: a
        // modification time or a file count that moved).
        let watcher = p.clone();
        let config = config.clone();
        std::thread::Builder::new()
            .name("vigil-rules-watch".into())
            .spawn(move || {
                let mut seen = rules_fingerprint(&config);
                while !watcher.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_secs(2));
                    let now = rules_fingerprint(&config);
                    if now != seen {
                        seen = now;
                        let disabled = watch_db.disabled_rules().unwrap_or_default();
                        match Rules::load_without(&config, &disabled) {
                            Ok(r) => {
                                eprintln!(
                                    "vigil: rules changed on disk: loaded {}, failed {}",
                                    r.set.len(),
                                    r.errors.len()
                                );
                                *watcher.rules.write().unwrap_or_else(|e| e.into_inner()) =
                                    Arc::new(r);
                            }
                            Err(e) => eprintln!(
                                "vigil: rules changed on disk but could not be reloaded: {e}"
                            ),
                        }
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(p)
    }

    /// Wakes the detection thread (new events in the log).
    pub fn notify(&self) {
        let (lock, cv) = &self.wake;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_one();
    }

    /// Asks the thread to stop once the log is drained.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.notify();
    }

    /// Events acknowledged but not yet through detection.
    pub fn backlog(&self) -> u64 {
        self.wal
            .next_seq()
            .saturating_sub(self.detected_up_to.load(Ordering::Relaxed))
    }

    fn run(&self, db: &Db, window_ns: i64, group_field: &str) {
        loop {
            let from = self.detected_up_to.load(Ordering::SeqCst);
            let records = match self.wal.read_range(from, 5_000) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("vigil: detection cannot read the event log: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            if records.is_empty() {
                if self.stop.load(Ordering::SeqCst) {
                    return;
                }
                let (lock, cv) = &self.wake;
                let mut woken = lock.lock().unwrap_or_else(|e| e.into_inner());
                if !*woken {
                    woken = cv
                        .wait_timeout(woken, Duration::from_millis(200))
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                *woken = false;
                continue;
            }
            let rules = self.rules.read().unwrap_or_else(|e| e.into_inner()).clone();
            let next = records.last().map(|(s, _)| s + 1).unwrap_or(from);
            // Decoding and matching run on every core; folding into alerts
            // then runs in log order.
            let per_record: Vec<Option<Vec<(NewMatch, i64)>>> = records
                .par_iter()
                .map(|(_, payload)| detect_one(&rules, payload, group_field))
                .collect();
            let mut matches = Vec::new();
            let mut latencies = Vec::new();
            for r in per_record {
                match r {
                    None => {
                        self.counters.bad_records.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(ms) => {
                        for (m, received) in ms {
                            matches.push(m);
                            latencies.push(received);
                        }
                    }
                }
            }
            match db.fold(&matches, window_ns, next) {
                Ok(()) => {
                    let now = now_ns();
                    let mut sample = self
                        .counters
                        .latency_sample
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    for r in latencies {
                        let us = ((now - r).max(0) / 1000) as u64;
                        let n = self
                            .counters
                            .latency_samples
                            .fetch_add(1, Ordering::Relaxed)
                            + 1;
                        self.counters
                            .latency_us_sum
                            .fetch_add(us, Ordering::Relaxed);
                        self.counters
                            .latency_us_max
                            .fetch_max(us, Ordering::Relaxed);
                        if sample.len() < LATENCY_SAMPLE {
                            sample.push(us);
                        } else {
                            // Reservoir sampling: each latency is kept with
                            // equal probability (a cheap hash stands in for
                            // randomness).
                            let j = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % n;
                            if (j as usize) < LATENCY_SAMPLE {
                                sample[j as usize] = us;
                            }
                        }
                    }
                    drop(sample);
                    self.counters
                        .events_detected
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    self.counters
                        .matches
                        .fetch_add(matches.len() as u64, Ordering::Relaxed);
                    self.detected_up_to.store(next, Ordering::SeqCst);
                    // Processed records need not be kept in the log.
                    let _ = self.wal.remove_before(next);
                }
                Err(e) => {
                    eprintln!("vigil: storing alerts failed, will retry: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Decodes one log record and matches it; the matches with the record's
/// receive time, or `None` when the record does not decode.
fn detect_one(rules: &Rules, payload: &[u8], group_field: &str) -> Option<Vec<(NewMatch, i64)>> {
    // Header line, newline, the document as sent (see `store_events`).
    let split = payload.iter().position(|b| *b == b'\n')?;
    let (head, doc) = (&payload[..split], &payload[split + 1..]);
    let rec = serde_json::from_slice::<serde_json::Value>(head).ok()?;
    let received = rec.get("t").and_then(|t| t.as_i64()).unwrap_or(0);
    let mut event = vigil_ingest::json::event_from_json_bytes_with(
        doc,
        vigil_ingest::fieldmap::FieldMap::builtin(),
    )
    .ok()?;
    event.meta.source = rec.get("l").and_then(|l| l.as_str()).map(Into::into);
    if let Some(p) = rec.get("prod").and_then(|p| p.as_str()) {
        event.meta.product = Some(p.into());
    }
    let hits: Vec<usize> = SCRATCH.with(|s| {
        rules
            .set
            .matches(&event, &mut s.borrow_mut())
            .iter()
            .map(|m| m.rule)
            .collect()
    });
    if hits.is_empty() {
        return Some(Vec::new());
    }
    let ts = event_time(&event).unwrap_or(received);
    let group_key = event
        .get(group_field)
        .or_else(|| event.get("host.name"))
        .map(|v| v.to_string())
        .unwrap_or_else(|| "-".into());
    let event_json = String::from_utf8_lossy(doc).into_owned();
    Some(
        hits.into_iter()
            .map(|r| {
                let rule = rules.set.rule(r);
                (
                    NewMatch {
                        rule_id: rule.id.clone().unwrap_or_else(|| rule.title.clone()),
                        rule_title: rule.title.clone(),
                        level: rule.level.map(|l| l.as_str().to_string()),
                        tags: rule.tags.clone(),
                        group_key: group_key.clone(),
                        ts,
                        matched_fields: rules.set.matched_fields(r, &event),
                        event: event_json.clone(),
                    },
                    received,
                )
            })
            .collect(),
    )
}

/// (newest modification time, file count) of the rule files.
fn rules_fingerprint(config: &Config) -> (u128, usize) {
    let mut newest = 0u128;
    let mut count = 0;
    for p in config.rule_paths() {
        for e in walkdir::WalkDir::new(p).into_iter().filter_map(Result::ok) {
            if e.file_type().is_file() {
                count += 1;
                if let Some(m) = e.metadata().ok().and_then(|m| m.modified().ok()) {
                    let t = m
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0);
                    newest = newest.max(t);
                }
            }
        }
    }
    (newest, count)
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn event_time(event: &vigil_event::Event) -> Option<i64> {
    for f in [
        "@timestamp",
        "TimeCreated_SystemTime",
        "timestamp",
        "UtcTime",
    ] {
        if let Some(vigil_event::Value::Str(s)) = event.get(f) {
            if let Some(t) = crate::db::parse_rfc3339(s) {
                return Some(t);
            }
        }
    }
    None
}
