//! `berth volume ...`.

use anyhow::Result;
use clap::Subcommand;

use crate::paths::Paths;

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Create a volume
    Create { name: String },
}

pub fn run(_paths: &Paths, _cmd: VolumeCommand) -> Result<i32> {
    anyhow::bail!("not implemented yet")
}
