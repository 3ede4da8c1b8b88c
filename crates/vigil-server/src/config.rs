//! The server's configuration: one TOML file, every option documented in
//! docs/configuration.md; no file at all works too.

use serde::Deserialize;
use std::path::PathBuf;

/// Server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the database, the log and installed rules live.
    pub data_dir: PathBuf,
    /// HTTP listen address (loopback by default).
    pub listen: String,
    /// Sigma rule files or directories, in addition to DATA_DIR/rules
    /// (where `vigil rules update` installs rules).
    pub rules: Vec<PathBuf>,
    /// Placeholder values file for `expand`.
    pub placeholders: Option<PathBuf>,
    /// Largest request body, in bytes (after decompression).
    pub max_body_bytes: usize,
    /// Events acknowledged but not yet through detection past which
    /// ingest answers 429.
    pub max_backlog_events: u64,
    /// Matches of one rule with the same grouping key within this many
    /// seconds fold into one alert.
    pub alert_window_secs: u64,
    /// The event field whose value groups alerts (default: the host).
    pub alert_group_field: String,
    /// How far out of event-time order matches may reach correlation
    /// rules and still count (seconds). Correlation results wait this long
    /// (in event time, or in wall time when no newer event comes).
    pub correlation_lateness_secs: u64,
    /// Syslog listeners (none by default).
    pub syslog: Vec<SyslogListener>,
}

/// A syslog listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogListener {
    /// Address to listen on, e.g. `127.0.0.1:5514`.
    pub listen: String,
    /// `udp`, `tcp` (newline or octet-counted framing) or `tls`.
    pub protocol: SyslogProtocol,
    /// PEM certificate chain (for `tls`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (for `tls`).
    pub tls_key: Option<PathBuf>,
    /// The product the senders are (`linux`, …): Sigma rules of another
    /// product then never match their events.
    pub product: Option<String>,
}

/// Syslog transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogProtocol {
    /// UDP datagrams, one message each.
    Udp,
    /// TCP, RFC 6587 framing.
    Tcp,
    /// TCP with TLS (rustls).
    Tls,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("vigil-data"),
            listen: "127.0.0.1:7700".into(),
            rules: Vec::new(),
            placeholders: None,
            max_body_bytes: 64 << 20,
            max_backlog_events: 1_000_000,
            alert_window_secs: 600,
            alert_group_field: "Computer".into(),
            correlation_lateness_secs: 60,
            syslog: Vec::new(),
        }
    }
}

impl Config {
    /// Parses a configuration file.
    ///
    /// # Errors
    /// The parser's message, with the line.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The rule paths in effect: the configured ones and the data
    /// directory's installed rules.
    pub fn rule_paths(&self) -> Vec<PathBuf> {
        let mut paths = self.rules.clone();
        let installed = self.data_dir.join("rules");
        if !paths.contains(&installed) {
            paths.push(installed);
        }
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.listen, "127.0.0.1:7700");
        let c = Config::parse("listen = \"0.0.0.0:9000\"\nalert_window_secs = 60\n").unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.alert_window_secs, 60);
        assert!(Config::parse("lisen = 1").unwrap_err().contains("lisen"));
        let c = Config::parse(
            "[[syslog]]\nlisten = \"127.0.0.1:5514\"\nprotocol = \"udp\"\nproduct = \"linux\"\n",
        )
        .unwrap();
        assert_eq!(c.syslog[0].protocol, SyslogProtocol::Udp);
        assert!(Config::parse("[[syslog]]\nlisten = \"x\"\nprotocol = \"quic\"\n").is_err());
    }
}
