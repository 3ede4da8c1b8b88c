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
        let mut map = LogSourceMap::builtin();
        if let Some(path) = &self.logsources {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading log-source mapping {}", path.display()))?;
            let user = LogSourceMap::parse(&text, Some(path.to_string_lossy().into()))?;
            map.merge(user);
        }
        Ok(map)
    }
}
