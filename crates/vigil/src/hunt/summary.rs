//! The summary printed at the end of a hunt.

use super::output::Detection;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use vigil_ingest::IngestError;
use vigil_sigma::{Level, Rule, RuleError, RuleSet};

/// ATT&CK tactics, as Sigma tags name them (`attack.credential-access`).
/// ATT&CK v18 split Defense Evasion into Stealth and Defense Impairment,
/// and SigmaHQ's rules moved to the new tags; older rules still carry
/// `attack.defense-evasion`, so all three are kept.
const TACTICS: &[&str] = &[
    "reconnaissance",
    "resource-development",
    "initial-access",
    "execution",
    "persistence",
    "privilege-escalation",
    "defense-evasion",
    "stealth",
    "defense-impairment",
    "credential-access",
    "discovery",
    "lateral-movement",
    "collection",
    "command-and-control",
    "exfiltration",
    "impact",
];

/// The first and last event time seen, updated from every reading thread.
#[derive(Debug)]
pub struct TimeSpan {
    first: AtomicI64,
    last: AtomicI64,
}

impl Default for TimeSpan {
    fn default() -> Self {
        TimeSpan {
            first: AtomicI64::new(i64::MAX),
            last: AtomicI64::new(i64::MIN),
        }
    }
}

impl TimeSpan {
    /// Takes in one event's time.
    pub fn see(&self, ts: i64) {
        // Loads first: after the first few events the bounds rarely move,
        // so the shared cache line is mostly read, not written.
        if ts < self.first.load(Ordering::Relaxed) {
            self.first.fetch_min(ts, Ordering::Relaxed);
        }
        if ts > self.last.load(Ordering::Relaxed) {
            self.last.fetch_max(ts, Ordering::Relaxed);
        }
    }

    /// First and last, when any event had a time.
    pub fn bounds(&self) -> Option<(i64, i64)> {
        let (f, l) = (
            self.first.load(Ordering::Relaxed),
            self.last.load(Ordering::Relaxed),
        );
        (f <= l).then_some((f, l))
    }
}

/// Counts collected during a hunt.
pub struct Summary {
    rules: usize,
    rules_failed: Vec<RuleError>,
    rules_skipped: usize,
    warnings: Vec<RuleError>,
    /// Log sources the mapping does not narrow, with their rule counts.
    unmapped: BTreeMap<String, usize>,
    pub files: u64,
    pub bytes: u64,
    pub events: u64,
    pub elapsed: Duration,
    /// Of `elapsed`: reading the rules, then compiling them.
    pub rules_loading: (Duration, Duration),
    /// Whether the rules were loaded from the compiled-rule cache.
    pub rules_cached: bool,
    /// What became of the compiled-rule cache, when there is something
    /// to say.
    pub rule_cache: Option<String>,
    /// `--from`/`--to` and what they left out.
    pub window: Option<String>,
    /// First and last event time read.
    pub span: Option<(i64, i64)>,
    /// With `--dedup`: detections left out as repeats.
    pub repeats: Option<u64>,
    detections: u64,
    by_level: BTreeMap<Option<Level>, u64>,
    /// Per rule title: detections and the rule's level.
    by_rule: HashMap<String, (u64, Option<Level>)>,
    by_computer: HashMap<String, u64>,
    tactics: BTreeSet<String>,
    input_errors: Vec<IngestError>,
    failed_sources: BTreeSet<String>,
    /// Correlation rules in use.
    pub correlations: usize,
    /// The correlation engine's counters (evictions are reported).
    pub correlation_stats: vigil_sigma::correlation::EngineStats,
    correlation_matches: u64,
}

impl Summary {
    pub fn new(
        set: &RuleSet,
        rules_failed: Vec<RuleError>,
        rules_skipped: usize,
        warnings: Vec<RuleError>,
    ) -> Self {
        let mut unmapped = BTreeMap::new();
        for rule in set.unmapped() {
            *unmapped.entry(rule.logsource.to_string()).or_default() += 1;
        }
        Summary {
            unmapped,
            rules: set.len(),
            rules_failed,
            rules_skipped,
            warnings,
            files: 0,
            bytes: 0,
            events: 0,
            elapsed: Duration::ZERO,
            rules_loading: (Duration::ZERO, Duration::ZERO),
            rules_cached: false,
            rule_cache: None,
            window: None,
            span: None,
            repeats: None,
            detections: 0,
            by_level: BTreeMap::new(),
            by_rule: HashMap::new(),
            by_computer: HashMap::new(),
            tactics: BTreeSet::new(),
            input_errors: Vec::new(),
            failed_sources: BTreeSet::new(),
            correlations: 0,
            correlation_stats: Default::default(),
            correlation_matches: 0,
        }
    }

    /// Counts a correlation match like a detection of its level.
    pub fn correlation_match(&mut self, d: &Detection) {
        self.correlation_matches += 1;
        let field = |k: &str| d.record.get(k).and_then(|v| v.as_str());
        let tags = d.record.get("tags").and_then(|t| t.as_array());
        self.count(
            field("level").and_then(Level::parse),
            field("rule_title"),
            None,
            tags.into_iter().flatten().filter_map(|t| t.as_str()),
        );
    }

    pub fn detection(&mut self, rule: &Rule, d: &Detection) {
        let computer = d.record.get("computer").and_then(|c| c.as_str());
        self.count(
            rule.level,
            Some(&rule.title),
            computer,
            rule.tags.iter().map(String::as_str),
        );
    }

    /// Counts one detection by level, rule title, computer and the ATT&CK
    /// tactics among its tags.
    fn count<'a>(
        &mut self,
        level: Option<Level>,
        title: Option<&str>,
        computer: Option<&str>,
        tags: impl Iterator<Item = &'a str>,
    ) {
        self.detections += 1;
        *self.by_level.entry(level).or_default() += 1;
        // Keys repeat: look up before allocating one.
        if let Some(title) = title {
            match self.by_rule.get_mut(title) {
                Some((n, _)) => *n += 1,
                None => {
                    self.by_rule.insert(title.to_string(), (1, level));
                }
            }
        }
        if let Some(computer) = computer {
            match self.by_computer.get_mut(computer) {
                Some(n) => *n += 1,
                None => {
                    self.by_computer.insert(computer.to_string(), 1);
                }
            }
        }
        for t in tags {
            if let Some(tactic) = t.strip_prefix("attack.") {
                let tactic = tactic.replace('_', "-");
                if TACTICS.contains(&tactic.as_str()) {
                    self.tactics.insert(tactic);
                }
            }
        }
    }

    pub fn input_error(&mut self, e: IngestError) {
        self.failed_sources.insert(e.source.to_string());
        self.input_errors.push(e);
    }

    /// Inputs with at least one error.
    pub fn failed_inputs(&self) -> usize {
        self.failed_sources.len()
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(s, "\n== vigil hunt summary");
        let _ = writeln!(
            s,
            "rules: {} loaded, {} failed to load, {} not selected",
            self.rules,
            self.rules_failed.len(),
            self.rules_skipped
        );
        for e in self.rules_failed.iter().take(20) {
            let _ = writeln!(s, "  not loaded: {e}");
        }
        if self.rules_failed.len() > 20 {
            let _ = writeln!(
                s,
                "  … and {} more (see `vigil rules validate`)",
                self.rules_failed.len() - 20
            );
        }
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        if !self.unmapped.is_empty() {
            let list: Vec<String> = self
                .unmapped
                .iter()
                .map(|(ls, n)| format!("{ls} ({n})"))
                .collect();
            let _ = writeln!(
                s,
                "  log sources not in the mapping, their rules run on every event of the product: {} (map them with --logsources, or leave them out)",
                list.join(", ")
            );
        }
        let _ = writeln!(
            s,
            "inputs: {} files, {:.1} MiB, {} events; {} inputs with errors",
            self.files,
            self.bytes as f64 / (1024.0 * 1024.0),
            self.events,
            self.failed_inputs()
        );
        if let Some((first, last)) = self.span {
            let _ = writeln!(
                s,
                "events from {} to {}",
                vigil_ingest::rfc3339(first),
                vigil_ingest::rfc3339(last)
            );
        }
        if let Some(w) = &self.window {
            let _ = writeln!(s, "time window: {w}");
        }
        // One line per damaged input (its first error and how many more),
        // so a folder of broken files stays readable.
        let mut per_source: BTreeMap<&str, (usize, &IngestError)> = BTreeMap::new();
        for e in &self.input_errors {
            per_source.entry(&e.source).or_insert((0, e)).0 += 1;
        }
        for (n, e) in per_source.values().take(100) {
            let more = if *n > 1 {
                format!(" (+{} more errors in this input)", n - 1)
            } else {
                String::new()
            };
            let _ = writeln!(s, "  error: {e}{more}");
        }
        if per_source.len() > 100 {
            let _ = writeln!(
                s,
                "  … and {} more inputs with errors",
                per_source.len() - 100
            );
        }
        let levels: Vec<String> = self
            .by_level
            .iter()
            .rev()
            .map(|(l, n)| format!("{} {n}", l.map(|l| l.as_str()).unwrap_or("none")))
            .collect();
        let _ = writeln!(s, "detections: {} ({})", self.detections, levels.join(", "));
        if let Some(n) = self.repeats {
            let _ = writeln!(
                s,
                "  {n} more left out by --dedup: the same rule on the same record in another input"
            );
        }
        if self.correlations > 0 {
            let _ = writeln!(
                s,
                "correlations: {} rules, {} matches (included above); {} inputs, {} groups evicted at the group limit, {} window entries dropped at the window limit",
                self.correlations,
                self.correlation_matches,
                self.correlation_stats.inputs,
                self.correlation_stats.evicted_groups,
                self.correlation_stats.dropped_entries
            );
        }
        let top = |m: &HashMap<String, u64>| {
            let mut v: Vec<_> = m.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            v.into_iter()
                .take(10)
                .map(|(k, n)| format!("  {n:>7}  {k}"))
                .collect::<Vec<_>>()
        };
        if !self.by_rule.is_empty() {
            // The most severe first, then the most frequent: a critical
            // rule that fired once matters more than a noisy low one.
            let mut rules: Vec<_> = self.by_rule.iter().collect();
            rules.sort_by(|(ta, (na, la)), (tb, (nb, lb))| {
                lb.cmp(la).then(nb.cmp(na)).then(ta.cmp(tb))
            });
            let _ = writeln!(s, "top rules, most severe first:");
            for (title, (n, level)) in rules.into_iter().take(10) {
                let level = level.map_or("-", |l| l.as_str());
                let _ = writeln!(s, "  {n:>7}  {level:<13} {title}");
            }
            let _ = writeln!(s, "top computers:\n{}", top(&self.by_computer).join("\n"));
        }
        if !self.tactics.is_empty() {
            let _ = writeln!(
                s,
                "ATT&CK tactics: {}",
                self.tactics.iter().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        let _ = writeln!(
            s,
            "elapsed: {:.2} s, {:.1} MiB/s, {:.0} events/s",
            secs,
            self.bytes as f64 / (1024.0 * 1024.0) / secs,
            self.events as f64 / secs
        );
        let (read, compile) = self.rules_loading;
        let _ = if self.rules_cached {
            writeln!(
                s,
                "of which loading rules: {:.3} s (compiled-rule cache: loaded from it)",
                read.as_secs_f64()
            )
        } else {
            writeln!(
                s,
                "of which loading rules: {:.3} s (reading {:.3} s, compiling {:.3} s)",
                (read + compile).as_secs_f64(),
                read.as_secs_f64(),
                compile.as_secs_f64()
            )
        };
        if let Some(note) = &self.rule_cache {
            let _ = writeln!(s, "compiled-rule cache: {note}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        Summary::new(
            &vigil_sigma::RuleSetBuilder::new().finish(),
            Vec::new(),
            0,
            Vec::new(),
        )
    }

    #[test]
    fn top_rules_put_the_most_severe_first() {
        let mut s = summary();
        for _ in 0..5 {
            s.count(Some(Level::Low), Some("Noisy"), None, std::iter::empty());
        }
        s.count(
            Some(Level::Critical),
            Some("Rare"),
            None,
            std::iter::empty(),
        );
        s.count(Some(Level::Low), Some("Quiet"), None, std::iter::empty());
        let text = s.render();
        assert!(
            text.contains(
                "top rules, most severe first:\n        1  critical      Rare\n        5  low           Noisy\n        1  low           Quiet\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn tactics_include_the_ones_attack_v18_split_defense_evasion_into() {
        let mut s = summary();
        s.count(
            Some(Level::High),
            Some("Security Eventlog Cleared"),
            Some("DC1"),
            ["attack.defense-impairment", "attack.t1685.005"].into_iter(),
        );
        s.count(
            Some(Level::Medium),
            Some("Masquerading"),
            None,
            ["attack.stealth", "attack.defense_evasion", "attack.g0016"].into_iter(),
        );
        let text = s.render();
        assert!(
            text.contains("ATT&CK tactics: defense-evasion, defense-impairment, stealth\n"),
            "{text}"
        );
    }
}
