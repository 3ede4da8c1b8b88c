//! The detection thread: follows the event log, matches every event
//! against the rule set, folds matches into alerts.

use crate::db::{Db, NewMatch};
use crate::rules::load_rules;
use crate::Config;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;
use vigil_sigma::correlation::{CorrelationEngine, CorrelationPlan, EngineConfig, Input};
use vigil_sigma::{RuleError, RuleSet, RuleSetBuilder, Scratch};
use vigil_store::wal::Wal;

/// The loaded rules and what failed to load.
pub struct Rules {
    /// The compiled set.
    pub set: RuleSet,
    /// Rules that did not load, with reasons.
    pub errors: Vec<RuleError>,
    /// Correlation rules and what each detection rule feeds them.
    pub plan: CorrelationPlan,
}

impl Rules {
    /// Loads the configured rules, leaving out the ids in `disabled`.
    pub fn load_without(config: &Config, disabled: &[String]) -> Result<Rules, String> {
        let mut r = Self::load(config)?;
        if !disabled.is_empty() {
            let kept: Vec<_> = r
                .set
                .rules()
                .filter(|rule| !rule.id.as_ref().is_some_and(|id| disabled.contains(id)))
                .cloned()
                .collect();
            let mut b = RuleSetBuilder::new();
            for rule in kept {
                b.add_rule(rule);
            }
            r.set = b.finish();
            let corrs = r.plan.set.correlations().to_vec();
            // Legacy aggregations are re-derived from the rules kept.
            let corrs = corrs
                .into_iter()
                .filter(|c| !c.rules.iter().any(|x| x.starts_with("legacy-aggregation:")))
                .collect();
            r.plan = CorrelationPlan::new(&r.set, corrs);
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
        let (docs, corrs) = vigil_sigma::correlation::split(loaded.docs);
        let mut b = RuleSetBuilder::new();
        b.add_documents(docs);
        let set = b.finish();
        let plan = CorrelationPlan::new(&set, corrs);
        let mut errors = loaded.errors;
        errors.extend(plan.errors.iter().cloned());
        Ok(Rules { set, errors, plan })
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
    /// The correlation engine (state kept across restarts, see
    /// [`Db::fold`]).
    pub engine: Mutex<CorrelationEngine>,
    lateness_secs: u64,
    stop: AtomicBool,
    wake: (Mutex<bool>, Condvar),
}

impl Pipeline {
    /// Starts the detection thread.
    pub fn start(config: &Config, db: Arc<Db>, wal: Arc<Wal>) -> Result<Arc<Pipeline>, String> {
        let rules = Rules::load_without(config, &db.disabled_rules()?)?;
        let start = db.checkpoint()?;
        let engine = match db.correlation_snapshot()? {
            Some(snap) => {
                let (engine, dropped) = CorrelationEngine::restore(
                    rules.plan.set.clone(),
                    engine_config(config.correlation_lateness_secs),
                    snap,
                )?;
                if dropped > 0 {
                    eprintln!("vigil: {dropped} correlation groups dropped: their rules are gone");
                }
                engine
            }
            None => CorrelationEngine::new(
                rules.plan.set.clone(),
                engine_config(config.correlation_lateness_secs),
            ),
        };
        let p = Arc::new(Pipeline {
            wal,
            rules: RwLock::new(Arc::new(rules)),
            detected_up_to: AtomicU64::new(start),
            counters: Counters::default(),
            engine: Mutex::new(engine),
            lateness_secs: config.correlation_lateness_secs,
            stop: AtomicBool::new(false),
            wake: (Mutex::new(false), Condvar::new()),
        });
        let worker = p.clone();
        let window_ns = config.alert_window_secs as i64 * 1_000_000_000;
        let group_field = config.alert_group_field.clone();
        let watch_db = db.clone();
        std::thread::Builder::new()
            .name("vigil-detect".into())
            .spawn(move || worker.run(db, window_ns, &group_field))
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
                                watcher.replace_rules(r);
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

    /// Puts new rules in place; correlation windows carry over to the
    /// correlations that are still there.
    pub fn replace_rules(&self, rules: Rules) {
        let mut engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        let snap = engine.snapshot();
        if let Ok((e, _)) = CorrelationEngine::restore(
            rules.plan.set.clone(),
            engine_config(self.lateness_secs),
            snap,
        ) {
            *engine = e;
        }
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
    }

    /// Releases buffered correlation inputs once no event has come for
    /// the lateness bound in wall time: a quiet feed must not hold
    /// correlation results back for ever.
    fn flush_correlations_if_idle(
        &self,
        next: u64,
        group_field: &str,
        idle_since: &mut Option<std::time::Instant>,
    ) -> Option<Folded> {
        let since = *idle_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < Duration::from_secs(self.lateness_secs) {
            return None;
        }
        let mut engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
        if engine.pending() == 0 {
            return None;
        }
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner()).clone();
        let matches: Vec<NewMatch> = engine
            .flush()
            .iter()
            .map(|m| correlation_alert(&rules, m, group_field))
            .collect();
        Some(Folded {
            matches,
            latencies: Vec::new(),
            next,
            snapshot: Some(engine.snapshot()),
            records: 0,
        })
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

    fn run(self: Arc<Self>, db: Arc<Db>, window_ns: i64, group_field: &str) {
        // Two stages: this thread reads the log, decodes and matches
        // (in parallel) and runs correlations in log order; a second one
        // folds the results into the database, with the checkpoint and the
        // correlation state in the same transaction. The next batch is
        // matched while the previous one is being stored.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Folded>(2);
        let folder = {
            let this = self.clone();
            let db = db.clone();
            std::thread::Builder::new()
                .name("vigil-fold".into())
                .spawn(move || {
                    for f in rx {
                        this.store(&db, f, window_ns);
                    }
                })
                .expect("spawning the fold thread")
        };
        let mut read_from = self.detected_up_to.load(Ordering::SeqCst);
        // When the log went quiet; correlation inputs still buffered then
        // are released once it has been quiet for the lateness bound.
        let mut idle_since: Option<std::time::Instant> = None;
        loop {
            let records = match self.wal.read_range(read_from, 5_000) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("vigil: detection cannot read the event log: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            };
            if records.is_empty() {
                if let Some(f) =
                    self.flush_correlations_if_idle(read_from, group_field, &mut idle_since)
                {
                    let _ = tx.send(f);
                }
                if self.stop.load(Ordering::SeqCst) {
                    drop(tx);
                    let _ = folder.join();
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
            idle_since = None;
            let rules = self.rules.read().unwrap_or_else(|e| e.into_inner()).clone();
            let next = records.last().map(|(s, _)| s + 1).unwrap_or(read_from);
            // Decoding and matching run on every core; correlations then
            // see the matches in log order.
            let per_record: Vec<Option<Detected>> = records
                .par_iter()
                .map(|(seq, payload)| detect_one(&rules, *seq, payload, group_field))
                .collect();
            let mut matches = Vec::new();
            let mut latencies = Vec::new();
            let has_correlations = !rules.plan.set.correlations().is_empty();
            let mut engine = self.engine.lock().unwrap_or_else(|e| e.into_inner());
            for r in per_record {
                match r {
                    None => {
                        self.counters.bad_records.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(d) => {
                        for (m, received) in d.matches {
                            matches.push(m);
                            latencies.push(received);
                        }
                        if let Some((ts, refs, event, event_ref)) = d.feed {
                            for cm in engine.push(Input {
                                ts_ns: ts,
                                refs: &refs,
                                event: &event,
                                event_ref: &event_ref,
                            }) {
                                matches.push(correlation_alert(&rules, &cm, group_field));
                            }
                        }
                    }
                }
            }
            let snapshot = has_correlations.then(|| engine.snapshot());
            drop(engine);
            read_from = next;
            let folded = Folded {
                matches,
                latencies,
                next,
                snapshot,
                records: records.len() as u64,
            };
            if tx.send(folded).is_err() {
                return;
            }
        }
    }

    /// Stores one batch (retrying until the database takes it: the batch
    /// is acknowledged data and may not be skipped), then moves the
    /// checkpoint and lets the log drop what is stored.
    fn store(&self, db: &Db, f: Folded, window_ns: i64) {
        while let Err(e) = db.fold(&f.matches, window_ns, f.next, f.snapshot.as_ref()) {
            eprintln!("vigil: storing alerts failed, will retry: {e}");
            std::thread::sleep(Duration::from_secs(1));
        }
        let now = now_ns();
        let mut sample = self
            .counters
            .latency_sample
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for r in f.latencies {
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
                // Reservoir sampling: each latency is kept with equal
                // probability (a cheap hash stands in for randomness).
                let j = (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % n;
                if (j as usize) < LATENCY_SAMPLE {
                    sample[j as usize] = us;
                }
            }
        }
        drop(sample);
        self.counters
            .events_detected
            .fetch_add(f.records, Ordering::Relaxed);
        self.counters
            .matches
            .fetch_add(f.matches.len() as u64, Ordering::Relaxed);
        self.detected_up_to.store(f.next, Ordering::SeqCst);
        // Stored records need not be kept in the log.
        let _ = self.wal.remove_before(f.next);
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// One batch on its way to the database.
struct Folded {
    matches: Vec<NewMatch>,
    /// Receive times of the events behind `matches`, for latency.
    latencies: Vec<i64>,
    /// The checkpoint once stored.
    next: u64,
    snapshot: Option<vigil_sigma::correlation::EngineSnapshot>,
    /// Log records the batch covers.
    records: u64,
}

/// The header line of a log record (see `AppState::store_events`).
#[derive(serde::Deserialize)]
struct RecordHeader<'a> {
    /// Receive time, ns.
    #[serde(default)]
    t: i64,
    /// Listener.
    #[serde(borrow, default)]
    l: std::borrow::Cow<'a, str>,
    /// Product of the sender, if configured.
    #[serde(default)]
    prod: Option<String>,
    /// Peer address.
    #[serde(borrow, default)]
    p: std::borrow::Cow<'a, str>,
    /// Tenant.
    #[serde(borrow, default)]
    tenant: std::borrow::Cow<'a, str>,
}

/// The stored document with how it arrived added as `_vigil` (receive
/// time, listener, peer, tenant): an alert's event keeps its provenance.
/// `doc` is a JSON object (ingest checked it).
fn with_receipt(doc: &str, rec: &RecordHeader<'_>, received: i64) -> String {
    let receipt = serde_json::json!({
        "received": vigil_ingest::rfc3339(received),
        "listener": rec.l,
        "peer": rec.p,
        "tenant": rec.tenant,
    });
    let body = doc.trim_start().strip_prefix('{').unwrap_or("}");
    let sep = if body.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    format!("{{\"_vigil\":{receipt}{sep}{body}")
}

/// What detection makes of one log record.
struct Detected {
    /// Alerts to fold, with the record's receive time.
    matches: Vec<(NewMatch, i64)>,
    /// For correlations: event time, the references of the rules that
    /// matched and are consumed, the event, its reference.
    feed: Option<(i64, Vec<String>, vigil_event::Event, String)>,
}

fn engine_config(lateness_secs: u64) -> EngineConfig {
    EngineConfig {
        lateness_ns: lateness_secs as i64 * 1_000_000_000,
        ..EngineConfig::default()
    }
}

/// Decodes one log record and matches it; `None` when the record does not
/// decode.
fn detect_one(rules: &Rules, seq: u64, payload: &[u8], group_field: &str) -> Option<Detected> {
    // Header line, newline, the document as sent (see `store_events`).
    let split = payload.iter().position(|b| *b == b'\n')?;
    let (head, doc) = (&payload[..split], &payload[split + 1..]);
    let rec: RecordHeader = serde_json::from_slice(head).ok()?;
    let received = rec.t;
    let mut event = vigil_ingest::json::event_from_json_bytes_with(
        doc,
        vigil_ingest::fieldmap::FieldMap::builtin(),
    )
    .ok()?;
    event.meta.source = Some(rec.l.as_ref().into());
    if let Some(p) = rec.prod.as_deref() {
        event.meta.product = Some(p.into());
    }
    // Each hit with its matched fields, worked out while the event is
    // still prepared in the scratch.
    let hits: Vec<(usize, Vec<String>)> = SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let rules_hit: Vec<usize> = rules
            .set
            .matches(&event, &mut s)
            .iter()
            .map(|m| m.rule)
            .collect();
        rules_hit
            .into_iter()
            .map(|r| (r, rules.set.matched_fields_prepared(r, &event, &s)))
            .collect()
    });
    if hits.is_empty() {
        return Some(Detected {
            matches: Vec::new(),
            feed: None,
        });
    }
    let ts = vigil_ingest::event_time(&event).unwrap_or(received);
    let event_json = with_receipt(&String::from_utf8_lossy(doc), &rec, received);
    let mut refs = Vec::new();
    let mut matches = Vec::new();
    for (r, matched_fields) in hits {
        let (consumed, report) = &rules.plan.per_rule[r];
        refs.extend(consumed.iter().cloned());
        if !*report {
            continue;
        }
        let rule = rules.set.rule(r);
        // A rule may name its own grouping field (`vigil.alert_group_by`).
        let group_key = group_of(
            &event,
            rule.alert_group_by.as_deref().unwrap_or(group_field),
        );
        matches.push((
            NewMatch {
                rule_id: rule.id.clone().unwrap_or_else(|| rule.title.clone()),
                rule_title: rule.title.clone(),
                level: rule.level.map(|l| l.as_str().to_string()),
                tags: rule.tags.clone(),
                group_key,
                ts,
                matched_fields,
                event: event_json.clone(),
            },
            received,
        ));
    }
    let feed = (!refs.is_empty()).then(|| (ts, refs, event, format!("log#{seq}")));
    Some(Detected { matches, feed })
}

fn group_of(event: &vigil_event::Event, group_field: &str) -> String {
    event
        .get(group_field)
        .or_else(|| event.get("host.name"))
        .map(|v| v.to_string())
        .unwrap_or_else(|| "-".into())
}

/// A correlation match as an alert: grouped by its group-by values.
fn correlation_alert(
    rules: &Rules,
    m: &vigil_sigma::correlation::CorrelationMatch,
    group_field: &str,
) -> NewMatch {
    let c = &rules.plan.set.correlations()[m.correlation];
    let host = m
        .group
        .iter()
        .find(|(k, _)| k == group_field || k == "host.name")
        .map(|(_, v)| v.clone());
    let group_key = host.unwrap_or_else(|| {
        m.group
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    let group: serde_json::Map<String, serde_json::Value> = m
        .group
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    NewMatch {
        rule_id: c.id.clone().or_else(|| c.name.clone()).unwrap_or_else(|| c.title.clone()),
        rule_title: c.title.clone(),
        level: c.level.map(|l| l.as_str().to_string()),
        tags: c.tags.clone(),
        group_key,
        ts: m.window.1,
        matched_fields: Vec::new(),
        event: serde_json::json!({
            "correlation_type": c.kind.as_str(), "group": group, "value": m.value,
            "window": {"start": vigil_ingest::rfc3339(m.window.0), "end": vigil_ingest::rfc3339(m.window.1)},
            "events": m.events,
        })
        .to_string(),
    }
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
