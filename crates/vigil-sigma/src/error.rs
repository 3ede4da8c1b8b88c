//! Errors of loading rules: where and why.

use std::fmt;
use std::sync::Arc;

/// A rule (or filter, or mapping file) that could not be loaded.
///
/// Displays as `path:line: field: reason`, for example
/// `rules/x.yml:12: detection.sel.Image|endwith: unknown modifier 'endwith'`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RuleError {
    /// The file, if the rule came from one.
    pub path: Option<Arc<str>>,
    /// 1-based line of the offending node (0 when unknown).
    pub line: usize,
    /// The dotted path to the offending key (`detection.sel.Image|re`).
    pub field: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl RuleError {
    /// A new error without a path.
    pub fn new(line: usize, field: Option<String>, reason: impl Into<String>) -> Self {
        RuleError {
            path: None,
            line,
            field,
            reason: reason.into(),
        }
    }

    /// Sets the path.
    pub fn with_path(mut self, path: Option<Arc<str>>) -> Self {
        self.path = path;
        self
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: ",
            self.path.as_deref().unwrap_or("<input>"),
            self.line
        )?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for RuleError {}
