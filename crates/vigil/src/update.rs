//! `vigil rules update`: install or refresh Sigma rules in the data
//! directory, from a git repository or a local directory (air-gapped
//! sites copy a checkout over and point `--from` at it).

use crate::load::load_rules;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vigil_sigma::Placeholders;

/// SigmaHQ's rule repository.
const DEFAULT_SOURCE: &str = "https://github.com/SigmaHQ/sigma.git";

/// Arguments of `vigil rules update`.
#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// A git URL, or a local directory (a SigmaHQ checkout, or any folder
    /// of rules).
    #[arg(long, default_value = DEFAULT_SOURCE)]
    from: String,
    /// Data directory; rules go to DATA_DIR/rules.
    #[arg(long, env = "VIGIL_DATA_DIR", default_value = "vigil-data")]
    data_dir: PathBuf,
}

fn is_url(s: &str) -> bool {
    s.contains("://") || s.starts_with("git@") || s.ends_with(".git")
}

/// The folders to install from a source tree: a SigmaHQ checkout's
/// `rules*` folders, or the whole tree when it has none.
fn rule_roots(src: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut roots: Vec<PathBuf> = std::fs::read_dir(src)
        .with_context(|| format!("reading {}", src.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir() && e.file_name().to_string_lossy().starts_with("rules"))
        .map(|e| e.path())
        .collect();
    roots.sort();
    if roots.is_empty() {
        roots.push(src.to_path_buf());
    }
    Ok(roots)
}

fn copy_rules(from: &Path, to: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    for entry in walkdir::WalkDir::new(from).follow_links(true) {
        let entry = entry?;
        let p = entry.path();
        if !entry.file_type().is_file()
            || !matches!(p.extension().and_then(|x| x.to_str()), Some("yml" | "yaml"))
        {
            continue;
        }
        let dest = to.join(p.strip_prefix(from)?);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(p, &dest).with_context(|| format!("copying {}", p.display()))?;
        n += 1;
    }
    Ok(n)
}

pub fn run(args: UpdateArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let clone_dir;
    let src: PathBuf = if is_url(&args.from) {
        clone_dir = tempfile::tempdir_in(&args.data_dir)?;
        eprintln!("cloning {} …", args.from);
        let status = std::process::Command::new("git")
            .args(["clone", "--depth", "1", "--quiet", &args.from])
            .arg(clone_dir.path().join("src"))
            .status()
            .context("running git (is it installed?)")?;
        anyhow::ensure!(
            status.success(),
            "git clone {} failed ({status})",
            args.from
        );
        clone_dir.path().join("src")
    } else {
        PathBuf::from(&args.from)
    };
    anyhow::ensure!(src.is_dir(), "{} is not a directory", src.display());
    // Install into a fresh folder, then swap it in, so a failed update
    // leaves the installed rules as they were.
    let target = args.data_dir.join("rules");
    let staging = args.data_dir.join("rules.new");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let mut files = 0;
    for root in rule_roots(&src)? {
        let name = if root == src {
            PathBuf::from("rules")
        } else {
            PathBuf::from(root.file_name().unwrap_or_default())
        };
        files += copy_rules(&root, &staging.join(name))?;
    }
    anyhow::ensure!(files > 0, "no .yml rule files found in {}", src.display());
    let loaded = load_rules(std::slice::from_ref(&staging), &Placeholders::new());
    let old = args.data_dir.join("rules.old");
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    if target.exists() {
        std::fs::rename(&target, &old)?;
    }
    std::fs::rename(&staging, &target)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    println!(
        "installed {files} rule files from {} into {}: loaded {}, failed {}",
        args.from,
        target.display(),
        loaded.docs.len(),
        loaded.errors.len()
    );
    for e in loaded.errors.iter().take(20) {
        println!("  {e}");
    }
    Ok(ExitCode::SUCCESS)
}
