//! `vigil hunt`: placeholder until the hunt command lands.

/// Arguments of `vigil hunt`.
#[derive(clap::Args, Debug)]
pub struct HuntArgs {}

pub fn run(_args: HuntArgs) -> anyhow::Result<std::process::ExitCode> {
    anyhow::bail!("not implemented yet")
}
