//! The detection thread: follows the event log, matches every event
//! against the rule set, folds matches into alerts.

use crate::db::{Db, NewMatch};
use crate::rules::load_rules;
use crate::Config;
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
        let rules = Rules::load(config)?;
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
        std::thread::Builder::new()
            .name("vigil-detect".into())
            .spawn(move || worker.run(&db, window_ns, &group_field))
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
        let mut scratch = Scratch::default();
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
            let mut matches = Vec::new();
            let mut latencies = Vec::new();
            let next = records.last().map(|(s, _)| s + 1).unwrap_or(from);
            for (_, payload) in &records {
                let Ok(rec) = serde_json::from_slice::<serde_json::Value>(payload) else {
                    self.counters.bad_records.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let received = rec.get("t").and_then(|t| t.as_i64()).unwrap_or(0);
                let doc = rec.get("e").cloned().unwrap_or(serde_json::Value::Null);
                let mut event = vigil_ingest::json::event_from_json(&doc);
                event.meta.source = rec.get("l").and_then(|l| l.as_str()).map(Into::into);
                if let Some(p) = rec.get("prod").and_then(|p| p.as_str()) {
                    event.meta.product = Some(p.into());
                }
                let hits: Vec<usize> = rules
                    .set
                    .matches(&event, &mut scratch)
                    .iter()
                    .map(|m| m.rule)
                    .collect();
                for r in hits {
                    let rule = rules.set.rule(r);
                    let ts = event_time(&event).unwrap_or(received);
                    let group_key = event
                        .get(group_field)
                        .or_else(|| event.get("host.name"))
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into());
                    matches.push(NewMatch {
                        rule_id: rule.id.clone().unwrap_or_else(|| rule.title.clone()),
                        rule_title: rule.title.clone(),
                        level: rule.level.map(|l| l.as_str().to_string()),
                        tags: rule.tags.clone(),
                        group_key,
                        ts,
                        matched_fields: rules.set.matched_fields(r, &event),
                        event: doc.to_string(),
                    });
                    latencies.push(received);
                }
            }
            match db.fold(&matches, window_ns, next) {
                Ok(()) => {
                    let now = now_ns();
                    for r in latencies {
                        let us = ((now - r).max(0) / 1000) as u64;
                        self.counters
                            .latency_us_sum
                            .fetch_add(us, Ordering::Relaxed);
                        self.counters
                            .latency_samples
                            .fetch_add(1, Ordering::Relaxed);
                        self.counters
                            .latency_us_max
                            .fetch_max(us, Ordering::Relaxed);
                    }
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
