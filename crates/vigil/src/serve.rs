//! `vigil serve`, `vigil users …`, `vigil tokens …`.

use anyhow::Context;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use vigil_server::auth::Role;
use vigil_server::{db::Db, Config};

/// Arguments of `vigil serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file (see docs/configuration.md); without it,
    /// the defaults.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Overrides `data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Overrides `listen`.
    #[arg(long)]
    listen: Option<String>,
    /// Overrides `rules` (repeatable).
    #[arg(short, long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
}

pub fn load_config(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        None => Ok(Config::default()),
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        }
    }
}

pub fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = load_config(args.config.as_ref())?;
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if !args.rules.is_empty() {
        config.rules = args.rules;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime
        .block_on(vigil_server::serve(config))
        .map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}

/// Where the account commands find the database.
#[derive(clap::Args, Debug)]
pub struct DbArgs {
    /// Data directory (as for `vigil serve`).
    #[arg(long, env = "VIGIL_DATA_DIR", default_value = "vigil-data")]
    data_dir: PathBuf,
}

impl DbArgs {
    fn open(&self) -> anyhow::Result<Db> {
        std::fs::create_dir_all(&self.data_dir)?;
        Db::open(&self.data_dir.join("vigil.db")).map_err(anyhow::Error::msg)
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum UsersCommand {
    /// Adds a user; the password is read from standard input.
    Add {
        name: String,
        /// admin, analyst or viewer.
        #[arg(long, default_value = "analyst")]
        role: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Sets a user's password, read from standard input.
    Passwd {
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Lists users and roles.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum TokensCommand {
    /// Creates an API token and prints it (once).
    Create {
        /// A label (who or what uses it).
        name: String,
        /// ingest (shippers), viewer, analyst or admin.
        #[arg(long, default_value = "ingest")]
        role: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Lists tokens (ids, labels, roles; never the secrets).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revokes a token by id.
    Revoke {
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn role(s: &str) -> anyhow::Result<Role> {
    Role::parse(s)
        .ok_or_else(|| anyhow::anyhow!("unknown role '{s}' (admin, analyst, viewer, ingest)"))
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

pub fn users(c: UsersCommand) -> anyhow::Result<ExitCode> {
    match c {
        UsersCommand::Add { name, role: r, db } => {
            let r = role(&r)?;
            anyhow::ensure!(
                r != Role::Ingest,
                "ingest is for tokens; use `vigil tokens create`"
            );
            db.open()?
                .add_user(&name, r, &read_password()?)
                .map_err(anyhow::Error::msg)?;
            println!("added {name} ({})", r.as_str());
        }
        UsersCommand::Passwd { name, db } => {
            db.open()?
                .set_password(&name, &read_password()?)
                .map_err(anyhow::Error::msg)?;
            println!("password of {name} changed");
        }
        UsersCommand::List { db } => {
            for (n, r) in db.open()?.users().map_err(anyhow::Error::msg)? {
                println!("{n}\t{r}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn tokens(c: TokensCommand) -> anyhow::Result<ExitCode> {
    match c {
        TokensCommand::Create { name, role: r, db } => {
            let t = db
                .open()?
                .create_token(&name, role(&r)?)
                .map_err(anyhow::Error::msg)?;
            println!("{t}");
        }
        TokensCommand::List { db } => {
            for (id, n, r, revoked) in db.open()?.tokens().map_err(anyhow::Error::msg)? {
                println!("{id}\t{n}\t{r}{}", if revoked { "\trevoked" } else { "" });
            }
        }
        TokensCommand::Revoke { id, db } => {
            db.open()?.revoke_token(&id).map_err(anyhow::Error::msg)?;
            println!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
