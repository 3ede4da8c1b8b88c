//! Sigma correlation rules: parsing, and the engine that runs them over a
//! stream of rule matches.
//!
//! All seven types of Sigma 2.1 — `event_count`, `value_count`,
//! `temporal`, `temporal_ordered`, `value_sum`, `value_avg`,
//! `value_percentile` — plus legacy `| count() by … > N` aggregations,
//! which become `event_count`/`value_count` correlations on their own rule.
//!
//! # Time and order
//!
//! Windows slide on event time, never arrival time. The engine holds
//! arriving matches in a reorder buffer and releases them in time order
//! once the newest time seen is `lateness` past them, so a stream that is
//! out of order by less than `lateness` gives exactly the results of the
//! same stream sorted. Anything later than that is counted in
//! [`EngineStats::late`] and dropped, never silently.
//!
//! # Semantics (see docs/sigma-semantics.md, Correlation)
//!
//! - Events belong together when their group-by values are equal (a
//!   missing field is the empty value). `aliases` rename a group-by field
//!   per referenced rule.
//! - A window holds the events of a group whose times lie within
//!   `timespan` of the newest one (inclusive: exactly `timespan` apart is
//!   inside).
//! - The condition is checked each time an event enters a group's window;
//!   when it holds, a [`CorrelationMatch`] is emitted and the group's
//!   window is cleared, so one burst gives one match.
//! - Correlations can refer to correlations: a match feeds the rules that
//!   name it, with its group-by values as its fields.

use crate::error::RuleError;
use crate::rule::{Document, Level, Rule};
use crate::yaml::{Node, NodeKind};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use vigil_event::Event;

/// The correlation types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CorrelationType {
    /// Count of events.
    EventCount,
    /// Count of distinct values of a field.
    ValueCount,
    /// All referenced rules matched in the window, in any order.
    Temporal,
    /// All referenced rules matched in the window, in the order listed.
    TemporalOrdered,
    /// Sum of a numeric field.
    ValueSum,
    /// Average of a numeric field.
    ValueAvg,
    /// A percentile of a numeric field.
    ValuePercentile,
}

impl CorrelationType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "event_count" => Self::EventCount,
            "value_count" => Self::ValueCount,
            "temporal" => Self::Temporal,
            "temporal_ordered" => Self::TemporalOrdered,
            "value_sum" => Self::ValueSum,
            "value_avg" => Self::ValueAvg,
            "value_percentile" => Self::ValuePercentile,
            _ => return None,
        })
    }

    /// The type's name as written in rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EventCount => "event_count",
            Self::ValueCount => "value_count",
            Self::Temporal => "temporal",
            Self::TemporalOrdered => "temporal_ordered",
            Self::ValueSum => "value_sum",
            Self::ValueAvg => "value_avg",
            Self::ValuePercentile => "value_percentile",
        }
    }

    fn needs_field(self) -> bool {
        matches!(
            self,
            Self::ValueCount | Self::ValueSum | Self::ValueAvg | Self::ValuePercentile
        )
    }
}

/// A numeric condition: every bound must hold (`gt: 100, lte: 200`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bounds {
    /// `gt`
    pub gt: Option<f64>,
    /// `gte`
    pub gte: Option<f64>,
    /// `lt`
    pub lt: Option<f64>,
    /// `lte`
    pub lte: Option<f64>,
    /// `eq`
    pub eq: Option<f64>,
    /// `neq`
    pub neq: Option<f64>,
}

impl Bounds {
    /// Whether `x` satisfies every bound.
    pub fn holds(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
            && self.eq.is_none_or(|b| x == b)
            && self.neq.is_none_or(|b| x != b)
    }

    fn is_empty(&self) -> bool {
        *self == Bounds::default()
    }
}

/// A parsed correlation rule.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Correlation {
    /// `title`
    pub title: String,
    /// `id`
    pub id: Option<String>,
    /// `name`
    pub name: Option<String>,
    /// `level`
    pub level: Option<Level>,
    /// `status`
    pub status: Option<String>,
    /// `description`
    pub description: Option<String>,
    /// `tags`
    pub tags: Vec<String>,
    /// `correlation.type`
    pub kind: CorrelationType,
    /// `correlation.rules`: ids or names.
    pub rules: Vec<String>,
    /// `correlation.group-by`
    pub group_by: Vec<String>,
    /// `correlation.timespan`, in nanoseconds.
    pub timespan_ns: i64,
    /// `correlation.condition` bounds.
    pub condition: Bounds,
    /// `correlation.condition.field`
    pub field: Option<String>,
    /// `correlation.condition.percentile` (value_percentile), 0–100.
    pub percentile: Option<f64>,
    /// `correlation.aliases`: alias → (rule name → field).
    pub aliases: Vec<(String, Vec<(String, String)>)>,
    /// `correlation.generate`: also report the referenced rules' own
    /// matches.
    pub generate: bool,
    /// The file it came from.
    pub path: Option<Arc<str>>,
    /// 1-based line of the document.
    pub line: usize,
}

fn err(node: &Node, field: &str, reason: impl Into<String>) -> RuleError {
    RuleError::new(node.line, Some(field.to_string()), reason)
}

/// Parses `10s`, `5m`, `1h`, `2d` (and `1w`, `1M`, `1y` as legacy
/// `timeframe` allows) into nanoseconds.
pub fn parse_timespan(s: &str) -> Option<i64> {
    let s = s.trim();
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()]
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)?;
    let secs = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        'w' => 7 * 86400,
        'M' => 30 * 86400,
        'y' => 365 * 86400,
        _ => return None,
    };
    n.checked_mul(secs)?.checked_mul(1_000_000_000)
}

fn strings(node: &Node, field: &str) -> Result<Vec<String>, RuleError> {
    match &node.kind {
        NodeKind::Scalar { text, .. } if !node.is_null() => Ok(vec![text.clone()]),
        NodeKind::Seq(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| err(i, field, "must be a string"))
            })
            .collect(),
        _ => Err(err(node, field, "must be a string or a list of strings")),
    }
}

fn number(node: &Node, field: &str) -> Result<f64, RuleError> {
    node.as_str()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|f| f.is_finite())
        .ok_or_else(|| {
            err(
                node,
                field,
                format!(
                    "must be a number, not {:?}",
                    node.as_str().unwrap_or("a non-scalar")
                ),
            )
        })
}

/// Parses a correlation document (`doc` has a `correlation` key).
pub(crate) fn parse(doc: &Node, title: String) -> Result<Correlation, RuleError> {
    let c = doc.get("correlation").expect("caller checked");
    if c.as_map().is_none() {
        return Err(err(c, "correlation", "must be a map"));
    }
    let s = |k: &str| doc.get(k).and_then(Node::as_str).map(str::to_string);
    let kind_node = c
        .get("type")
        .ok_or_else(|| err(c, "correlation.type", "missing required key"))?;
    let kind_text = kind_node.as_str().unwrap_or_default();
    let kind = CorrelationType::parse(kind_text).ok_or_else(|| {
        err(
            kind_node,
            "correlation.type",
            format!("unknown type '{kind_text}' (event_count, value_count, temporal, temporal_ordered, value_sum, value_avg, value_percentile)"),
        )
    })?;
    let rules_node = c
        .get("rules")
        .ok_or_else(|| err(c, "correlation.rules", "missing required key"))?;
    let rules = strings(rules_node, "correlation.rules")?;
    if rules.is_empty() {
        return Err(err(rules_node, "correlation.rules", "names no rule"));
    }
    let group_by = match c.get("group-by") {
        Some(n) if !n.is_null() => strings(n, "correlation.group-by")?,
        _ => Vec::new(),
    };
    let ts_node = c
        .get("timespan")
        .ok_or_else(|| err(c, "correlation.timespan", "missing required key"))?;
    let ts_text = ts_node.as_str().unwrap_or_default();
    let timespan_ns = parse_timespan(ts_text).ok_or_else(|| {
        err(
            ts_node,
            "correlation.timespan",
            format!("'{ts_text}' is not a timespan (a number and s, m, h or d: 90m)"),
        )
    })?;
    let mut condition = Bounds::default();
    let mut field = None;
    let mut percentile = None;
    if let Some(cond) = c.get("condition") {
        let entries = cond.as_map().ok_or_else(|| {
            err(
                cond,
                "correlation.condition",
                "must be a map such as {gte: 10}",
            )
        })?;
        for (k, v) in entries {
            let key = k.as_str().unwrap_or_default();
            let path = format!("correlation.condition.{key}");
            match key {
                "gt" => condition.gt = Some(number(v, &path)?),
                "gte" => condition.gte = Some(number(v, &path)?),
                "lt" => condition.lt = Some(number(v, &path)?),
                "lte" => condition.lte = Some(number(v, &path)?),
                "eq" => condition.eq = Some(number(v, &path)?),
                "neq" => condition.neq = Some(number(v, &path)?),
                "field" => {
                    field = Some(
                        v.as_str()
                            .ok_or_else(|| err(v, &path, "must be a field name"))?
                            .to_string(),
                    )
                }
                "percentile" => {
                    let p = number(v, &path)?;
                    if !(0.0..=100.0).contains(&p) {
                        return Err(err(v, &path, "must be between 0 and 100"));
                    }
                    percentile = Some(p);
                }
                other => return Err(err(k, &path, format!("unknown condition key '{other}'"))),
            }
        }
    }
    let temporal = matches!(
        kind,
        CorrelationType::Temporal | CorrelationType::TemporalOrdered
    );
    if condition.is_empty() && !temporal {
        return Err(err(
            c,
            "correlation.condition",
            format!("{} needs a condition such as {{gte: 10}}", kind.as_str()),
        ));
    }
    if kind.needs_field() && field.is_none() {
        return Err(err(
            c,
            "correlation.condition.field",
            format!("{} needs condition.field", kind.as_str()),
        ));
    }
    if kind == CorrelationType::ValuePercentile && percentile.is_none() {
        return Err(err(
            c,
            "correlation.condition.percentile",
            "value_percentile needs condition.percentile (0-100)",
        ));
    }
    if !matches!(
        kind,
        CorrelationType::EventCount | CorrelationType::ValueCount
    ) && !temporal
        && group_by.is_empty()
    {
        // Allowed: one global group.
    }
    let mut aliases = Vec::new();
    if let Some(a) = c.get("aliases") {
        let map = a
            .as_map()
            .ok_or_else(|| err(a, "correlation.aliases", "must be a map"))?;
        for (alias, per_rule) in map {
            let alias = alias.as_str().unwrap_or_default().to_string();
            let path = format!("correlation.aliases.{alias}");
            let entries = per_rule
                .as_map()
                .ok_or_else(|| err(per_rule, &path, "must map rule names to fields"))?;
            let mut m = Vec::new();
            for (r, f) in entries {
                match (r.as_str(), f.as_str()) {
                    (Some(r), Some(f)) => m.push((r.to_string(), f.to_string())),
                    _ => return Err(err(r, &path, "must map rule names to field names")),
                }
            }
            aliases.push((alias, m));
        }
    }
    let generate = match c.get("generate").or_else(|| doc.get("generate")) {
        None => false,
        Some(n) => n
            .as_bool()
            .ok_or_else(|| err(n, "correlation.generate", "must be true or false"))?,
    };
    let level = match s("level") {
        None => None,
        Some(l) => Some(Level::parse(&l).ok_or_else(|| {
            err(
                doc.get("level").expect("present"),
                "level",
                format!("unknown level '{l}'"),
            )
        })?),
    };
    let tags = match doc.get("tags") {
        Some(n) if !n.is_null() => strings(n, "tags")?,
        _ => Vec::new(),
    };
    Ok(Correlation {
        title,
        id: s("id"),
        name: s("name"),
        level,
        status: s("status"),
        description: s("description"),
        tags,
        kind,
        rules,
        group_by,
        timespan_ns,
        condition,
        field,
        percentile,
        aliases,
        generate,
        path: None,
        line: doc.line,
    })
}

/// Separates correlation rules from the other documents (rules and
/// filters, for a [`crate::RuleSetBuilder`]), each in its order.
pub fn split(docs: Vec<Document>) -> (Vec<Document>, Vec<Correlation>) {
    let mut rest = Vec::with_capacity(docs.len());
    let mut corrs = Vec::new();
    for d in docs {
        match d {
            Document::Correlation(c) => corrs.push(*c),
            other => rest.push(other),
        }
    }
    (rest, corrs)
}

/// Turns a legacy aggregation (`count() by Host > 5` with `timeframe`)
/// into a correlation over the rule itself.
///
/// # Errors
/// When the aggregation is not `count([field]) [by field] OP number`, or
/// the rule has no usable `timeframe`.
pub fn from_legacy(rule: &Rule) -> Result<Correlation, RuleError> {
    let agg = rule.aggregation.as_deref().unwrap_or_default();
    let fail = |why: String| {
        RuleError::new(rule.line, Some("detection.condition".into()), why)
            .with_path(rule.path.clone())
    };
    let rest = agg.trim().strip_prefix("count(").ok_or_else(|| {
        fail(format!(
            "unsupported aggregation '{agg}' (only count() is supported)"
        ))
    })?;
    let (field, rest) = rest
        .split_once(')')
        .ok_or_else(|| fail(format!("unclosed count( in '{agg}'")))?;
    let field = field.trim();
    let rest = rest.trim();
    let (group, comparison) = match rest.strip_prefix("by ") {
        Some(r) => {
            let pos = r
                .find(['>', '<', '=', '!'])
                .ok_or_else(|| fail(format!("no comparison in '{agg}'")))?;
            (
                r[..pos]
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                &r[pos..],
            )
        }
        None => (Vec::new(), rest),
    };
    let (op, n) = ["<=", ">=", "!=", "==", "<", ">", "="]
        .iter()
        .find_map(|op| comparison.strip_prefix(op).map(|n| (*op, n.trim())))
        .ok_or_else(|| fail(format!("no comparison in '{agg}'")))?;
    let n: f64 = n
        .parse()
        .map_err(|_| fail(format!("'{n}' is not a number in '{agg}'")))?;
    let mut condition = Bounds::default();
    match op {
        ">" => condition.gt = Some(n),
        ">=" => condition.gte = Some(n),
        "<" => condition.lt = Some(n),
        "<=" => condition.lte = Some(n),
        "!=" => condition.neq = Some(n),
        _ => condition.eq = Some(n),
    }
    let timespan_ns = match rule.timeframe.as_deref() {
        Some(t) => {
            parse_timespan(t).ok_or_else(|| fail(format!("timeframe '{t}' is not a timespan")))?
        }
        // Without a timeframe the legacy semantics is "over the whole
        // search": a very wide window.
        None => 100 * 365 * 86400 * 1_000_000_000,
    };
    Ok(Correlation {
        title: rule.title.clone(),
        id: rule.id.clone(),
        name: rule.name.clone(),
        level: rule.level,
        status: rule.status.clone(),
        description: rule.description.clone(),
        tags: rule.tags.clone(),
        kind: if field.is_empty() {
            CorrelationType::EventCount
        } else {
            CorrelationType::ValueCount
        },
        rules: vec![legacy_self_ref(rule)],
        group_by: group,
        timespan_ns,
        condition,
        field: (!field.is_empty()).then(|| field.to_string()),
        percentile: None,
        aliases: Vec::new(),
        generate: false,
        path: rule.path.clone(),
        line: rule.line,
    })
}

/// How a legacy aggregation's correlation names its own rule.
pub fn legacy_self_ref(rule: &Rule) -> String {
    format!(
        "legacy-aggregation:{}:{}",
        rule.path.as_deref().unwrap_or(""),
        rule.line
    )
}

/// One input of the engine: a rule (or correlation) that matched.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// Event time, nanoseconds since the epoch.
    pub ts_ns: i64,
    /// The id or name by which correlations refer to what matched.
    pub refs: &'a [String],
    /// The event, for group-by and value fields.
    pub event: &'a Event,
    /// An opaque reference to the event (file and record, alert id…).
    pub event_ref: &'a str,
}

/// A correlation that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationMatch {
    /// Index of the correlation in its [`CorrelationSet`].
    pub correlation: usize,
    /// The group-by values, in `group_by` order.
    pub group: Vec<(String, String)>,
    /// The count, distinct count, sum, average or percentile that met the
    /// condition (for temporal types: the number of rules seen).
    pub value: f64,
    /// Time of the first and last event in the window.
    pub window: (i64, i64),
    /// References of the events the match rests on (at most
    /// [`MAX_EVENT_REFS`], the most recent).
    pub events: Vec<String>,
}

/// The most event references kept per match.
pub const MAX_EVENT_REFS: usize = 100;

/// Correlation rules resolved against each other.
#[derive(Debug, Clone, Default)]
pub struct CorrelationSet {
    corrs: Vec<Correlation>,
    /// For each correlation, the id/name references it consumes, by
    /// position in its `rules`.
    by_ref: FxHashMap<String, Vec<(usize, usize)>>,
}

impl CorrelationSet {
    /// Resolves correlations. `known` holds the ids and names of loaded
    /// detection rules; a reference to neither a rule nor a correlation is
    /// an error, as is a cycle.
    ///
    /// # Errors
    /// One error per correlation that cannot be used; the others are kept.
    pub fn new(
        corrs: Vec<Correlation>,
        known: &dyn Fn(&str) -> bool,
    ) -> (CorrelationSet, Vec<RuleError>) {
        let mut errors = Vec::new();
        let mut kept: Vec<Correlation> = Vec::new();
        let names = |c: &Correlation| {
            [c.id.clone(), c.name.clone()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
        };
        let all_names: Vec<String> = corrs.iter().flat_map(names).collect();
        for c in corrs {
            let missing: Vec<&String> = c
                .rules
                .iter()
                .filter(|r| {
                    !known(r) && !all_names.contains(r) && !r.starts_with("legacy-aggregation:")
                })
                .collect();
            if !missing.is_empty() {
                errors.push(
                    RuleError::new(
                        c.line,
                        Some("correlation.rules".into()),
                        format!(
                            "refers to {} which no loaded rule or correlation has as id or name",
                            missing
                                .iter()
                                .map(|m| format!("'{m}'"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                    .with_path(c.path.clone()),
                );
                continue;
            }
            kept.push(c);
        }
        // Cycles: a correlation that (transitively) consumes itself.
        let index: FxHashMap<String, usize> = kept
            .iter()
            .enumerate()
            .flat_map(|(i, c)| names(c).into_iter().map(move |n| (n, i)))
            .collect();
        let reaches_itself = |start: usize| {
            let mut stack = vec![start];
            let mut seen = vec![false; kept.len()];
            while let Some(i) = stack.pop() {
                for r in &kept[i].rules {
                    if let Some(&j) = index.get(r) {
                        if j == start {
                            return true;
                        }
                        if !seen[j] {
                            seen[j] = true;
                            stack.push(j);
                        }
                    }
                }
            }
            false
        };
        let cyclic: Vec<bool> = (0..kept.len()).map(reaches_itself).collect();
        let mut out = Vec::new();
        for (c, cyc) in kept.into_iter().zip(cyclic) {
            if cyc {
                errors.push(
                    RuleError::new(
                        c.line,
                        Some("correlation.rules".into()),
                        "correlation refers to itself (directly or through others)",
                    )
                    .with_path(c.path.clone()),
                );
            } else {
                out.push(c);
            }
        }
        let mut by_ref: FxHashMap<String, Vec<(usize, usize)>> = FxHashMap::default();
        for (ci, c) in out.iter().enumerate() {
            for (pos, r) in c.rules.iter().enumerate() {
                by_ref.entry(r.clone()).or_default().push((ci, pos));
            }
        }
        (CorrelationSet { corrs: out, by_ref }, errors)
    }

    /// The correlations.
    pub fn correlations(&self) -> &[Correlation] {
        &self.corrs
    }

    /// Whether any correlation consumes matches of `r` (an id or name).
    pub fn consumes(&self, r: &str) -> bool {
        self.by_ref.contains_key(r)
    }

    /// Whether every correlation that consumes `r` has `generate: false`,
    /// so that `r`'s own matches should not be reported.
    pub fn suppresses(&self, r: &str) -> bool {
        self.by_ref
            .get(r)
            .is_some_and(|uses| uses.iter().all(|(ci, _)| !self.corrs[*ci].generate))
    }
}

/// Correlations resolved against a compiled rule set, with what each rule
/// of the set feeds them.
#[derive(Debug, Clone)]
pub struct CorrelationPlan {
    /// The correlations that loaded.
    pub set: Arc<CorrelationSet>,
    /// Correlations that did not (unknown references, cycles, legacy
    /// aggregations that cannot be read).
    pub errors: Vec<RuleError>,
    /// Per rule of the rule set: the references correlations consume, and
    /// whether the rule's own matches are to be reported (not when every
    /// correlation consuming it says `generate: false`, nor for a legacy
    /// aggregation).
    pub per_rule: Vec<(Vec<String>, bool)>,
}

impl CorrelationPlan {
    /// Resolves `corrs` and the legacy aggregations of the rules of
    /// `set`. Without either, no rule is looked at (a set loaded from a
    /// snapshot decodes its rules only when they are used).
    pub fn new(set: &crate::RuleSet, mut corrs: Vec<Correlation>) -> CorrelationPlan {
        if corrs.is_empty() && set.aggregating().next().is_none() {
            return CorrelationPlan {
                set: Arc::new(CorrelationSet::new(Vec::new(), &|_| false).0),
                errors: Vec::new(),
                per_rule: vec![(Vec::new(), true); set.len()],
            };
        }
        let rules: Vec<&Rule> = set.rules().collect();
        let mut errors = Vec::new();
        for r in rules.iter().copied() {
            if r.aggregation.is_some() {
                match from_legacy(r) {
                    Ok(c) => corrs.push(c),
                    Err(e) => errors.push(e),
                }
            }
        }
        let known: std::collections::HashSet<String> =
            rules.iter().flat_map(|r| r.refs()).collect();
        let (set, errs) = CorrelationSet::new(corrs, &|r| known.contains(r));
        errors.extend(errs);
        let per_rule = rules
            .iter()
            .map(|r| {
                let refs: Vec<String> = r.refs().into_iter().filter(|x| set.consumes(x)).collect();
                let report = r.aggregation.is_none()
                    && (refs.is_empty() || !refs.iter().all(|x| set.suppresses(x)));
                (refs, report)
            })
            .collect();
        CorrelationPlan {
            set: Arc::new(set),
            errors,
            per_rule,
        }
    }
}

/// Limits and tolerances of an engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// How far out of time order inputs may arrive and still be placed
    /// correctly (nanoseconds).
    pub lateness_ns: i64,
    /// Most groups kept per correlation; past it the group idle longest is
    /// evicted (and counted).
    pub max_groups: usize,
    /// Most events kept per group window; past it the oldest are dropped
    /// (and counted).
    pub max_events_per_group: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            lateness_ns: 60 * 1_000_000_000,
            max_groups: 100_000,
            max_events_per_group: 10_000,
        }
    }
}

/// Counters an engine keeps, for reports and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Inputs accepted.
    pub inputs: u64,
    /// Inputs that arrived later than the lateness bound and were dropped.
    pub late: u64,
    /// Groups evicted by `max_groups`.
    pub evicted_groups: u64,
    /// Window entries dropped by `max_events_per_group`.
    pub dropped_entries: u64,
    /// Matches emitted.
    pub matches: u64,
}

/// What one input gives one consuming correlation: (correlation, position
/// in its `rules`, group key, value of `condition.field`).
type Feed = (usize, usize, Box<str>, Option<Box<str>>);

/// A buffered input, reduced to what correlations need.
#[derive(Debug, Clone)]
struct Pending {
    ts: i64,
    seq: u64,
    /// Per consuming (correlation, position): group key and value.
    feeds: Vec<Feed>,
    event_ref: Arc<str>,
}

#[derive(Debug, Clone)]
struct Entry {
    ts: i64,
    pos: usize,
    value: Option<Box<str>>,
    event_ref: Arc<str>,
}

/// Separates group-by values inside a group key (a control character no
/// log value is expected to hold).
const KEY_SEP: char = '\u{1f}';

/// One group's window and the aggregates of it, kept up to date as
/// entries come and go so that checking a condition costs O(1) (O(log n)
/// for percentiles, O(n) for `temporal_ordered`).
#[derive(Debug, Default, Clone)]
struct Group {
    entries: VecDeque<Entry>,
    last_seen: i64,
    /// value_count: occurrences of each value in the window.
    distinct: FxHashMap<Box<str>, u32>,
    /// value_sum / value_avg: sum and count of numeric values.
    sum: f64,
    numbers: u64,
    /// value_percentile: numeric values, sorted.
    sorted: Vec<f64>,
    /// temporal: entries per rule position.
    per_pos: Vec<u32>,
}

impl Group {
    fn add(&mut self, e: Entry) {
        if let Some(v) = &e.value {
            *self.distinct.entry(v.clone()).or_default() += 1;
            if let Ok(n) = v.trim().parse::<f64>() {
                self.sum += n;
                self.numbers += 1;
                let i = self.sorted.partition_point(|x| *x < n);
                self.sorted.insert(i, n);
            }
        }
        if self.per_pos.len() <= e.pos {
            self.per_pos.resize(e.pos + 1, 0);
        }
        self.per_pos[e.pos] += 1;
        self.entries.push_back(e);
    }

    fn remove_oldest(&mut self) {
        let Some(e) = self.entries.pop_front() else {
            return;
        };
        if let Some(v) = &e.value {
            if let Some(c) = self.distinct.get_mut(v) {
                *c -= 1;
                if *c == 0 {
                    self.distinct.remove(v);
                }
            }
            if let Ok(n) = v.trim().parse::<f64>() {
                self.sum -= n;
                self.numbers -= 1;
                let i = self.sorted.partition_point(|x| *x < n);
                if i < self.sorted.len() {
                    self.sorted.remove(i);
                }
                if self.numbers == 0 {
                    // Keep float error from piling up across windows.
                    self.sum = 0.0;
                }
            }
        }
        self.per_pos[e.pos] -= 1;
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.distinct.clear();
        self.sum = 0.0;
        self.numbers = 0;
        self.sorted.clear();
        self.per_pos.iter_mut().for_each(|c| *c = 0);
    }
}

/// Runs a [`CorrelationSet`] over a stream of matches.
#[derive(Debug, Clone)]
pub struct CorrelationEngine {
    set: Arc<CorrelationSet>,
    config: EngineConfig,
    buffer: BTreeMap<(i64, u64), Pending>,
    seq: u64,
    newest: i64,
    released_up_to: i64,
    groups: Vec<FxHashMap<Box<str>, Group>>,
    stats: EngineStats,
}

/// The state of a [`CorrelationEngine`], to be stored and restored (a
/// server keeps windows across restarts with it). Plain data, serde-ready;
/// the caller picks the format.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EngineSnapshot {
    /// Snapshot format version.
    pub version: u32,
    /// Per correlation, by its identity (id, else name, else title).
    pub correlations: Vec<CorrelationState>,
    /// Inputs not yet released from the reorder buffer.
    pub pending: Vec<PendingState>,
    /// Input sequence counter.
    pub seq: u64,
    /// Newest event time seen.
    pub newest: i64,
    /// Time up to which inputs were released.
    pub released_up_to: i64,
    /// Counters.
    pub inputs: u64,
    /// Counters.
    pub late: u64,
    /// Counters.
    pub evicted_groups: u64,
    /// Counters.
    pub dropped_entries: u64,
    /// Counters.
    pub matches: u64,
}

/// One correlation's groups in a snapshot.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CorrelationState {
    /// Identity: id, else name, else title.
    pub identity: String,
    /// (group key, last seen, window entries).
    pub groups: Vec<(String, i64, Vec<EntryState>)>,
}

/// A window entry in a snapshot: (time, rule position, value, event ref).
pub type EntryState = (i64, usize, Option<String>, String);

/// One buffered input in a snapshot.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PendingState {
    /// Event time.
    pub ts: i64,
    /// Arrival sequence.
    pub seq: u64,
    /// (correlation identity, position, group key, value).
    pub feeds: Vec<(String, usize, String, Option<String>)>,
    /// Event reference.
    pub event_ref: String,
}

fn identity(c: &Correlation) -> String {
    c.id.clone()
        .or_else(|| c.name.clone())
        .unwrap_or_else(|| c.title.clone())
}

fn field_text(event: &Event, name: &str) -> Option<String> {
    let v = event.get(name)?;
    let mut buf = String::new();
    v.write_text(&mut buf).ok()?;
    Some(buf)
}

impl CorrelationEngine {
    /// A new engine with empty state.
    pub fn new(set: Arc<CorrelationSet>, config: EngineConfig) -> Self {
        let groups = vec![FxHashMap::default(); set.corrs.len()];
        CorrelationEngine {
            set,
            config,
            buffer: BTreeMap::new(),
            seq: 0,
            newest: i64::MIN,
            released_up_to: i64::MIN,
            groups,
            stats: EngineStats::default(),
        }
    }

    /// The engine's state, for [`CorrelationEngine::restore`].
    pub fn snapshot(&self) -> EngineSnapshot {
        let correlations = self
            .set
            .corrs
            .iter()
            .zip(&self.groups)
            .map(|(c, groups)| CorrelationState {
                identity: identity(c),
                groups: groups
                    .iter()
                    .map(|(k, g)| {
                        let entries = g
                            .entries
                            .iter()
                            .map(|e| {
                                (
                                    e.ts,
                                    e.pos,
                                    e.value.as_deref().map(str::to_string),
                                    e.event_ref.to_string(),
                                )
                            })
                            .collect();
                        (k.to_string(), g.last_seen, entries)
                    })
                    .collect(),
            })
            .collect();
        let pending = self
            .buffer
            .values()
            .map(|p| PendingState {
                ts: p.ts,
                seq: p.seq,
                feeds: p
                    .feeds
                    .iter()
                    .map(|(ci, pos, k, v)| {
                        (
                            identity(&self.set.corrs[*ci]),
                            *pos,
                            k.to_string(),
                            v.as_deref().map(str::to_string),
                        )
                    })
                    .collect(),
                event_ref: p.event_ref.to_string(),
            })
            .collect();
        EngineSnapshot {
            version: 1,
            correlations,
            pending,
            seq: self.seq,
            newest: self.newest,
            released_up_to: self.released_up_to,
            inputs: self.stats.inputs,
            late: self.stats.late,
            evicted_groups: self.stats.evicted_groups,
            dropped_entries: self.stats.dropped_entries,
            matches: self.stats.matches,
        }
    }

    /// An engine for `set` with the state of `snap`. State of correlations
    /// that are no longer in `set` (matched by id, else name, else title) is
    /// dropped; the number of groups dropped so is returned with the
    /// engine. Rule positions past a correlation's current rule list are
    /// dropped too.
    ///
    /// # Errors
    /// A snapshot of an unknown format version.
    pub fn restore(
        set: Arc<CorrelationSet>,
        config: EngineConfig,
        snap: EngineSnapshot,
    ) -> Result<(Self, usize), String> {
        if snap.version != 1 {
            return Err(format!(
                "unknown correlation snapshot version {}",
                snap.version
            ));
        }
        let mut engine = CorrelationEngine::new(set.clone(), config);
        let index: FxHashMap<String, usize> = set
            .corrs
            .iter()
            .enumerate()
            .map(|(i, c)| (identity(c), i))
            .collect();
        let mut dropped = 0;
        for cs in snap.correlations {
            let Some(&ci) = index.get(&cs.identity) else {
                dropped += cs.groups.len();
                continue;
            };
            let n = set.corrs[ci].rules.len();
            for (key, last_seen, entries) in cs.groups {
                let mut g = Group::default();
                for (ts, pos, value, event_ref) in entries {
                    if pos < n {
                        g.add(Entry {
                            ts,
                            pos,
                            value: value.map(String::into_boxed_str),
                            event_ref: event_ref.into(),
                        });
                    }
                }
                g.last_seen = last_seen;
                engine.groups[ci].insert(key.into_boxed_str(), g);
            }
        }
        for p in snap.pending {
            let feeds: Vec<Feed> = p
                .feeds
                .into_iter()
                .filter_map(|(id, pos, k, v)| {
                    let ci = *index.get(&id)?;
                    (pos < set.corrs[ci].rules.len())
                        .then(|| (ci, pos, k.into_boxed_str(), v.map(String::into_boxed_str)))
                })
                .collect();
            if !feeds.is_empty() {
                engine.buffer.insert(
                    (p.ts, p.seq),
                    Pending {
                        ts: p.ts,
                        seq: p.seq,
                        feeds,
                        event_ref: p.event_ref.into(),
                    },
                );
            }
        }
        engine.seq = snap.seq;
        engine.newest = snap.newest;
        engine.released_up_to = snap.released_up_to;
        engine.stats = EngineStats {
            inputs: snap.inputs,
            late: snap.late,
            evicted_groups: snap.evicted_groups,
            dropped_entries: snap.dropped_entries,
            matches: snap.matches,
        };
        Ok((engine, dropped))
    }

    /// Counters so far.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// The correlations this engine runs.
    pub fn set(&self) -> &CorrelationSet {
        &self.set
    }

    /// Inputs waiting in the reorder buffer.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    /// Groups currently held, over all correlations.
    pub fn group_count(&self) -> usize {
        self.groups.iter().map(|g| g.len()).sum()
    }

    /// Feeds one match; returns the correlation matches that became final
    /// (those whose events are now more than `lateness` older than the
    /// newest input).
    pub fn push(&mut self, input: Input<'_>) -> Vec<CorrelationMatch> {
        let mut feeds = Vec::new();
        for r in input.refs {
            if let Some(uses) = self.set.by_ref.get(r) {
                for &(ci, pos) in uses {
                    let c = &self.set.corrs[ci];
                    let mut key = String::new();
                    for (i, g) in c.group_by.iter().enumerate() {
                        let field = c
                            .aliases
                            .iter()
                            .find(|(a, _)| a == g)
                            .and_then(|(_, per)| {
                                per.iter()
                                    .find(|(rn, _)| input.refs.contains(rn))
                                    .map(|(_, f)| f.as_str())
                            })
                            .unwrap_or(g);
                        if i > 0 {
                            key.push(KEY_SEP);
                        }
                        if let Some(v) = input.event.get(field) {
                            let _ = v.write_text(&mut key);
                        }
                    }
                    let value = c
                        .field
                        .as_deref()
                        .and_then(|f| field_text(input.event, f))
                        .map(String::into_boxed_str);
                    let key = key.into_boxed_str();
                    feeds.push((ci, pos, key, value));
                }
            }
        }
        if feeds.is_empty() {
            return Vec::new();
        }
        if input.ts_ns < self.released_up_to {
            self.stats.late += 1;
            return Vec::new();
        }
        self.stats.inputs += 1;
        self.seq += 1;
        self.buffer.insert(
            (input.ts_ns, self.seq),
            Pending {
                ts: input.ts_ns,
                seq: self.seq,
                feeds,
                event_ref: input.event_ref.into(),
            },
        );
        self.newest = self.newest.max(input.ts_ns);
        self.release(self.newest.saturating_sub(self.config.lateness_ns))
    }

    /// Releases everything buffered (end of a hunt, shutdown).
    pub fn flush(&mut self) -> Vec<CorrelationMatch> {
        self.release(i64::MAX)
    }

    fn release(&mut self, up_to: i64) -> Vec<CorrelationMatch> {
        let mut out = Vec::new();
        while let Some((&(ts, _), _)) = self.buffer.first_key_value() {
            if ts > up_to {
                break;
            }
            let (_, p) = self.buffer.pop_first().expect("non-empty");
            self.released_up_to = self.released_up_to.max(p.ts);
            for (ci, pos, key, value) in p.feeds {
                self.apply(ci, pos, key, value, p.ts, p.event_ref.clone(), &mut out);
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        ci: usize,
        pos: usize,
        key: Box<str>,
        value: Option<Box<str>>,
        ts: i64,
        event_ref: Arc<str>,
        out: &mut Vec<CorrelationMatch>,
    ) {
        let c = &self.set.corrs[ci];
        let groups = &mut self.groups[ci];
        if !groups.contains_key(&key) && groups.len() >= self.config.max_groups {
            // Groups whose window has passed hold nothing that can still
            // match: drop them all first (not counted as evictions).
            let horizon = ts.saturating_sub(c.timespan_ns);
            groups.retain(|_, g| g.last_seen >= horizon);
            if groups.len() >= self.config.max_groups {
                // Still full of live groups: evict the one idle longest.
                if let Some(oldest) = groups
                    .iter()
                    .min_by_key(|(_, g)| g.last_seen)
                    .map(|(k, _)| k.clone())
                {
                    groups.remove(&oldest);
                    self.stats.evicted_groups += 1;
                }
            }
        }
        if !groups.contains_key(&key) {
            groups.insert(key.clone(), Group::default());
        }
        let group = groups.get_mut(&key).expect("inserted above");
        group.last_seen = ts;
        group.add(Entry {
            ts,
            pos,
            value,
            event_ref,
        });
        while group
            .entries
            .front()
            .is_some_and(|e| ts - e.ts > c.timespan_ns)
        {
            group.remove_oldest();
        }
        if group.entries.len() > self.config.max_events_per_group {
            group.remove_oldest();
            self.stats.dropped_entries += 1;
        }
        let fired = evaluate(c, group);
        if let Some(v) = fired {
            let first = group.entries.front().map(|e| e.ts).unwrap_or(ts);
            let events: Vec<String> = group
                .entries
                .iter()
                .rev()
                .take(MAX_EVENT_REFS)
                .rev()
                .map(|e| e.event_ref.to_string())
                .collect();
            group.clear();
            let m = CorrelationMatch {
                correlation: ci,
                group: c
                    .group_by
                    .iter()
                    .cloned()
                    .zip(key.split(KEY_SEP).map(str::to_string))
                    .collect(),
                value: v,
                window: (first, ts),
                events,
            };
            self.stats.matches += 1;
            // Chained correlations consume this match as an input at the
            // time of its last event.
            let refs: Vec<String> = [c.id.clone(), c.name.clone()]
                .into_iter()
                .flatten()
                .collect();
            if refs.iter().any(|r| self.set.by_ref.contains_key(r)) {
                let mut ev = Event::new();
                for (k, v) in &m.group {
                    ev.push(k.as_str(), v.as_str());
                }
                let feeds: Vec<_> = refs
                    .iter()
                    .filter_map(|r| self.set.by_ref.get(r))
                    .flatten()
                    .map(|&(cj, pj)| {
                        let cc = &self.set.corrs[cj];
                        let k: Vec<String> = cc
                            .group_by
                            .iter()
                            .map(|g| field_text(&ev, g).unwrap_or_default())
                            .collect();
                        let k = k.join(&KEY_SEP.to_string()).into_boxed_str();
                        let val = cc
                            .field
                            .as_deref()
                            .and_then(|f| field_text(&ev, f))
                            .map(String::into_boxed_str);
                        (cj, pj, k, val)
                    })
                    .collect();
                let r: Arc<str> = format!(
                    "correlation:{}",
                    c.id.as_deref().or(c.name.as_deref()).unwrap_or(&c.title)
                )
                .into();
                out.push(m);
                for (cj, pj, k, val) in feeds {
                    self.apply(cj, pj, k, val, ts, r.clone(), out);
                }
            } else {
                out.push(m);
            }
        }
    }
}

/// Whether a window meets the correlation's condition; the value if so.
fn evaluate(c: &Correlation, g: &Group) -> Option<f64> {
    let v = match c.kind {
        CorrelationType::EventCount => g.entries.len() as f64,
        CorrelationType::ValueCount => g.distinct.len() as f64,
        CorrelationType::ValueSum => g.sum,
        CorrelationType::ValueAvg => {
            if g.numbers == 0 {
                return None;
            }
            g.sum / g.numbers as f64
        }
        CorrelationType::ValuePercentile => {
            if g.sorted.is_empty() {
                return None;
            }
            // Nearest-rank percentile.
            let p = c.percentile.unwrap_or(50.0);
            let rank = ((p / 100.0) * g.sorted.len() as f64).ceil().max(1.0) as usize;
            g.sorted[rank.min(g.sorted.len()) - 1]
        }
        CorrelationType::Temporal => {
            let n = g.per_pos.iter().filter(|c| **c > 0).count() as f64;
            let met = if c.condition.is_empty() {
                n == c.rules.len() as f64
            } else {
                c.condition.holds(n)
            };
            return met.then_some(n);
        }
        CorrelationType::TemporalOrdered => {
            // Is there a subsequence of the window, in time order, that
            // visits rules[0], rules[1], … in turn?
            let mut next = 0;
            for e in &g.entries {
                if e.pos == next {
                    next += 1;
                    if next == c.rules.len() {
                        break;
                    }
                }
            }
            let met = if c.condition.is_empty() {
                next == c.rules.len()
            } else {
                c.condition.holds(next as f64)
            };
            return met.then_some(next as f64);
        }
    };
    c.condition.holds(v).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("90m"), Some(90 * 60 * 1_000_000_000));
        assert_eq!(parse_timespan("1d"), Some(86400 * 1_000_000_000));
        assert_eq!(parse_timespan("0s"), None);
        assert_eq!(parse_timespan("5x"), None);
        assert_eq!(parse_timespan(""), None);
    }

    #[test]
    fn bounds() {
        let b = Bounds {
            gt: Some(100.0),
            lte: Some(200.0),
            ..Default::default()
        };
        assert!(!b.holds(100.0));
        assert!(b.holds(101.0));
        assert!(b.holds(200.0));
        assert!(!b.holds(201.0));
    }
}
