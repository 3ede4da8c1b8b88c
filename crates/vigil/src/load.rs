//! Rule options shared by the commands that load rules; the loading itself
//! is `vigil_server::rules`, shared with the server.

use anyhow::Context;
use std::path::PathBuf;
use vigil_sigma::{LogSourceMap, Placeholders};

pub use vigil_server::rules::load_rules;

/// Options shared by the commands that load rules.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RuleOptions {
    /// YAML file of placeholder values for the `expand` modifier
    /// (`Name: [value, …]`).
    #[arg(long, value_name = "FILE")]
    pub placeholders: Option<PathBuf>,
    /// Log-source mapping file loaded on top of the built-in one (same
    /// format as crates/vigil-sigma/data/logsources.yml).
    #[arg(long, value_name = "FILE")]
    pub logsources: Option<PathBuf>,
}

impl RuleOptions {
    /// The placeholder values, from `--placeholders` (none without it).
    pub fn placeholders(&self) -> anyhow::Result<Placeholders> {
        match &self.placeholders {
            None => Ok(Placeholders::new()),
            Some(path) => vigil_server::rules::read_placeholders(path).map_err(anyhow::Error::msg),
        }
    }

    /// The built-in log-source mapping with `--logsources` on top.
    pub fn logsource_map(&self) -> anyhow::Result<LogSourceMap> {
        logsource_map_with(self.logsource_file()?.as_ref())
    }

    /// The `--logsources` file as read, if one was given: with the
    /// executable (which holds the built-in mapping), all a compiled rule
    /// set's mapping depends on, so that a hunt can key its rule cache on
    /// it without parsing the mapping.
    pub fn logsource_file(&self) -> anyhow::Result<Option<(PathBuf, String)>> {
        let Some(path) = &self.logsources else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading log-source mapping {}", path.display()))?;
        Ok(Some((path.clone(), text)))
    }
}

/// The built-in log-source mapping with `file` (as
/// [`RuleOptions::logsource_file`] read it) on top.
pub fn logsource_map_with(file: Option<&(PathBuf, String)>) -> anyhow::Result<LogSourceMap> {
    let mut map = LogSourceMap::builtin();
    if let Some((path, text)) = file {
        let user = LogSourceMap::parse(text, Some(path.to_string_lossy().into()))?;
        map.merge(user);
    }
    Ok(map)
}
