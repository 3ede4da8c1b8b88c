//! Choosing which loaded rules a hunt runs.

use std::collections::BTreeSet;
use std::path::PathBuf;
use vigil_sigma::{Document, Level};

/// Rule selection options of `vigil hunt`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RuleSelection {
    /// Only rules of at least this level (informational, low, medium,
    /// high, critical).
    #[arg(long, value_name = "LEVEL")]
    min_level: Option<String>,
    /// Only rules with these statuses (comma-separated). Default: all but
    /// deprecated and unsupported.
    #[arg(long, value_delimiter = ',')]
    status: Vec<String>,
    /// Only rules with one of these tags (`attack.t1059`; a trailing `*`
    /// matches a prefix, as in `attack.t1059*`).
    #[arg(long = "include-tag", value_name = "TAG")]
    include_tags: Vec<String>,
    /// Leave out rules with any of these tags.
    #[arg(long = "exclude-tag", value_name = "TAG")]
    exclude_tags: Vec<String>,
    /// Only these rule ids.
    #[arg(long = "include-id", value_name = "ID")]
    include_ids: Vec<String>,
    /// Leave out these rule ids.
    #[arg(long = "exclude-id", value_name = "ID")]
    exclude_ids: Vec<String>,
    /// File of rule ids to leave out, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    exclude_noisy: Option<PathBuf>,
}

fn tag_matches(pattern: &str, tag: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => tag
            .to_ascii_lowercase()
            .starts_with(&prefix.to_ascii_lowercase()),
        None => tag.eq_ignore_ascii_case(pattern),
    }
}

impl RuleSelection {
    /// The selection, checked (`--min-level`) and with the
    /// `--exclude-noisy` file read.
    pub fn selector(&self) -> anyhow::Result<Selector> {
        let min_level = match &self.min_level {
            None => None,
            Some(l) => Some(Level::parse(&l.to_ascii_lowercase()).ok_or_else(|| {
                anyhow::anyhow!("unknown level '{l}' (informational, low, medium, high, critical)")
            })?),
        };
        let mut excluded: BTreeSet<String> = self.exclude_ids.iter().cloned().collect();
        if let Some(path) = &self.exclude_noisy {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            for line in text.lines() {
                let id = line.split('#').next().unwrap_or_default().trim();
                if !id.is_empty() {
                    excluded.insert(id.to_string());
                }
            }
        }
        Ok(Selector {
            min_level,
            excluded,
            statuses: self.status.iter().map(|s| s.to_ascii_lowercase()).collect(),
            include_ids: self.include_ids.clone(),
            include_tags: self.include_tags.clone(),
            exclude_tags: self.exclude_tags.clone(),
        })
    }
}

/// A checked rule selection. Its `Debug` form says everything it depends
/// on (part of the compiled-rule cache key).
#[derive(Debug, Clone)]
pub struct Selector {
    min_level: Option<Level>,
    /// `--exclude-id` and the ids of `--exclude-noisy`.
    excluded: BTreeSet<String>,
    statuses: Vec<String>,
    include_ids: Vec<String>,
    include_tags: Vec<String>,
    exclude_tags: Vec<String>,
}

impl Selector {
    /// Keeps the selected rules (filters are always kept); returns them and
    /// how many rules were left out.
    pub fn apply(&self, docs: Vec<Document>) -> (Vec<Document>, usize) {
        let mut kept = Vec::with_capacity(docs.len());
        let mut skipped = 0;
        for d in docs {
            let Document::Rule(r) = &d else {
                kept.push(d);
                continue;
            };
            let id = r.id.as_deref().unwrap_or_default();
            let status = r.status.as_deref().unwrap_or("experimental");
            let keep = !self.excluded.contains(id)
                && (self.include_ids.is_empty() || self.include_ids.iter().any(|i| i == id))
                && self
                    .min_level
                    .is_none_or(|m| r.level.is_some_and(|l| l >= m))
                && if self.statuses.is_empty() {
                    !matches!(status, "deprecated" | "unsupported")
                } else {
                    self.statuses.iter().any(|s| s == status)
                }
                && (self.include_tags.is_empty()
                    || self
                        .include_tags
                        .iter()
                        .any(|p| r.tags.iter().any(|t| tag_matches(p, t))))
                && !self
                    .exclude_tags
                    .iter()
                    .any(|p| r.tags.iter().any(|t| tag_matches(p, t)));
            if keep {
                kept.push(d);
            } else {
                skipped += 1;
            }
        }
        (kept, skipped)
    }
}
