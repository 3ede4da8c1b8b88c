//! `vigil rules validate PATH...`

use crate::load::{load_rules, RuleOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `vigil rules validate`.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Rule files or directories (searched recursively for .yml/.yaml).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(flatten)]
    rules: RuleOptions,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let placeholders = args.rules.placeholders()?;
    let loaded = load_rules(&args.paths, &placeholders);
    let mut errors = loaded.errors;
    errors.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    // Filters naming no loaded rule are reported as warnings by the build.
    let mut builder = vigil_sigma::RuleSetBuilder::new();
    builder.logsources(args.rules.logsource_map()?);
    builder.add_documents(loaded.docs.iter().cloned());
    let set = builder.finish();
    let mut warnings: Vec<String> = set.warnings().iter().map(|w| w.to_string()).collect();
    for r in set.unmapped() {
        warnings.push(format!(
            "{}: logsource {} is not in the log-source mapping; the rule runs on every {} event",
            r.path.as_deref().unwrap_or("-"),
            r.logsource,
            r.logsource.product.as_deref().unwrap_or_default(),
        ));
    }
    let out = std::io::stdout();
    let mut out = out.lock();
    let (n, m) = (loaded.docs.len(), errors.len());
    match args.format {
        Format::Text => {
            for e in &errors {
                writeln!(out, "{e}")?;
            }
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            writeln!(out, "loaded {n}, failed {m}")?;
        }
        Format::Json => {
            let failures: Vec<_> = errors
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "path": e.path.as_deref(),
                        "line": e.line,
                        "field": e.field,
                        "reason": e.reason,
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "loaded": n,
                "failed": m,
                "files": loaded.files,
                "failures": failures,
                "warnings": warnings,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
    }
    Ok(if m > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
