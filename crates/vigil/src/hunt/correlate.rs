//! Correlation rules in a hunt.
//!
//! Matches of rules that correlations consume are kept (as small copies of
//! their events) while files are read in parallel, in whatever order that
//! gives; at the end they are sorted by event time and run through the
//! same [`CorrelationEngine`] that a live server runs, so that a hunt and a
//! live feed of the same events give the same correlation results.

use super::output::Detection;
use serde_json::{Map, Value as Json};
use std::sync::Arc;
use vigil_event::Event;
use vigil_ingest::rfc3339;
use vigil_sigma::correlation::{
    Correlation, CorrelationEngine, CorrelationPlan, CorrelationSet, EngineConfig, EngineStats,
    Input,
};
use vigil_sigma::{RuleError, RuleSet};

/// A consumed match waiting for the correlation pass.
struct Held {
    ts: i64,
    refs: Vec<String>,
    event: Event,
    event_ref: String,
}

/// The correlation side of a hunt.
pub struct Correlator {
    pub set: Arc<CorrelationSet>,
    pub errors: Vec<RuleError>,
    /// Per rule of the rule set: the refs correlations consume, whether
    /// its own matches are reported.
    per_rule: Vec<(Vec<String>, bool)>,
    held: Vec<Held>,
}

impl Correlator {
    pub fn new(rules: &RuleSet, corrs: Vec<Correlation>) -> Correlator {
        let plan = CorrelationPlan::new(rules, corrs);
        Correlator {
            set: plan.set,
            errors: plan.errors,
            per_rule: plan.per_rule,
            held: Vec::new(),
        }
    }

    /// Keeps `event` if a correlation consumes rule `r`; returns whether
    /// the rule's own match is to be reported.
    pub fn consume(&mut self, r: usize, event: &Event) -> bool {
        let (refs, report) = &self.per_rule[r];
        if !refs.is_empty() {
            self.held.push(Held {
                ts: vigil_ingest::event_time(event).unwrap_or(0),
                refs: refs.clone(),
                event: event.clone(),
                event_ref: format!(
                    "{}#{}",
                    event.meta.source.as_deref().unwrap_or("-"),
                    event
                        .meta
                        .record_id
                        .map(|r| r.to_string())
                        .unwrap_or_default()
                ),
            });
        }
        *report
    }

    /// Runs the correlations over everything held, in time order.
    pub fn run(mut self) -> (Vec<Detection>, EngineStats) {
        if self.held.is_empty() {
            return (Vec::new(), EngineStats::default());
        }
        self.held.sort_by_key(|h| h.ts);
        let mut engine = CorrelationEngine::new(
            self.set.clone(),
            EngineConfig {
                lateness_ns: 0,
                ..Default::default()
            },
        );
        let mut matches = Vec::new();
        for h in &self.held {
            matches.extend(engine.push(Input {
                ts_ns: h.ts,
                refs: &h.refs,
                event: &h.event,
                event_ref: &h.event_ref,
            }));
        }
        matches.extend(engine.flush());
        let stats = engine.stats();
        let out = matches
            .into_iter()
            .map(|m| {
                let c = &self.set.correlations()[m.correlation];
                let mut r = Map::new();
                r.insert("timestamp".into(), Json::String(rfc3339(m.window.1)));
                r.insert(
                    "rule_id".into(),
                    c.id.clone().map(Json::String).unwrap_or(Json::Null),
                );
                r.insert("rule_title".into(), Json::String(c.title.clone()));
                r.insert(
                    "level".into(),
                    c.level
                        .map(|l| Json::String(l.as_str().into()))
                        .unwrap_or(Json::Null),
                );
                r.insert(
                    "tags".into(),
                    c.tags.iter().cloned().map(Json::String).collect(),
                );
                let group: Map<String, Json> = m
                    .group
                    .iter()
                    .map(|(k, v)| (k.clone(), Json::String(v.clone())))
                    .collect();
                let host = ["Computer", "host.name", "Host", "ComputerName"]
                    .iter()
                    .find_map(|k| group.get(*k).cloned())
                    .unwrap_or(Json::Null);
                r.insert("computer".into(), host);
                for k in ["channel", "event_id", "record_id", "source"] {
                    r.insert(k.into(), Json::Null);
                }
                r.insert(
                    "correlation_type".into(),
                    Json::String(c.kind.as_str().into()),
                );
                r.insert("group".into(), Json::Object(group.clone()));
                r.insert(
                    "value".into(),
                    serde_json::Number::from_f64(m.value)
                        .map(Json::Number)
                        .unwrap_or(Json::Null),
                );
                r.insert(
                    "window".into(),
                    serde_json::json!({"start": rfc3339(m.window.0), "end": rfc3339(m.window.1)}),
                );
                r.insert(
                    "events".into(),
                    m.events.iter().cloned().map(Json::String).collect(),
                );
                r.insert("fields".into(), Json::Object(group));
                Detection {
                    timestamp_ns: Some(m.window.1),
                    record: r,
                    event: None,
                }
            })
            .collect();
        (out, stats)
    }
}
