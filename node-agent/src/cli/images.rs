//! `berth images|import|save|load|tag|rmi`.

use anyhow::Result;
use clap::Args;

use crate::paths::Paths;

#[derive(Args)]
pub struct ImagesArgs {
    /// Only show image ids
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct ImportArgs {
    /// Tarball of a root filesystem (`-` for standard input)
    pub file: String,
    /// Name for the new image
    pub reference: Option<String>,
}

#[derive(Args)]
pub struct SaveArgs {
    /// Write to this file instead of standard output
    #[arg(short, long)]
    pub output: Option<String>,
    /// docker-archive (default) or oci-archive
    #[arg(long, default_value = "docker-archive")]
    pub format: String,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args)]
pub struct LoadArgs {
    /// Read from this file instead of standard input
    #[arg(short, long)]
    pub input: Option<String>,
    /// Only print the names of the loaded images
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args)]
pub struct RmiArgs {
    /// Remove even if containers were made from it (never while one is running)
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub fn images(_paths: &Paths, _args: ImagesArgs) -> Result<i32> {
    anyhow::bail!("berth images: not implemented yet")
}

pub fn import(_paths: &Paths, _args: ImportArgs) -> Result<i32> {
    anyhow::bail!("berth import: not implemented yet")
}

pub fn save(_paths: &Paths, _args: SaveArgs) -> Result<i32> {
    anyhow::bail!("berth save: not implemented yet")
}

pub fn load(_paths: &Paths, _args: LoadArgs) -> Result<i32> {
    anyhow::bail!("berth load: not implemented yet")
}

pub fn tag(_paths: &Paths, _args: TagArgs) -> Result<i32> {
    anyhow::bail!("berth tag: not implemented yet")
}

pub fn rmi(_paths: &Paths, _args: RmiArgs) -> Result<i32> {
    anyhow::bail!("berth rmi: not implemented yet")
}
