//! `berth build|history|builder prune`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use crate::format::{ago, human_size, table};
use berth_build::{self as builder, BuildOptions, Mode, Progress};
use berth_engine::Paths;
use berth_image::{ImageStore, Reference, store::parse_time};

#[derive(Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (name:tag); may be repeated
    #[arg(short, long = "tag")]
    tags: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg")]
    build_args: Vec<String>,
    /// Build this stage (FROM ... AS name) and stop
    #[arg(long)]
    target: Option<String>,
    /// Run every step, ignoring the build cache
    #[arg(long)]
    no_cache: bool,
    /// Print only the image id
    #[arg(short, long)]
    quiet: bool,
    /// auto, plain (every line of RUN output) or tty (a live view)
    #[arg(long, default_value = "auto")]
    progress: String,
    /// The network of RUN steps: bridge (default), none, host, or a network's name
    #[arg(long)]
    network: Option<String>,
    /// The build context: a directory
    context: PathBuf,
}

#[derive(Args)]
pub struct HistoryArgs {
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
    /// Only show image ids
    #[arg(short, long)]
    quiet: bool,
    image: String,
}

#[derive(Subcommand)]
pub enum BuilderCommand {
    /// Remove the build cache
    Prune(PruneArgs),
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation (berth never asks; accepted for docker compatibility)
    #[arg(short, long)]
    force: bool,
}

/// Exit code of a failed build, as `docker build` gives.
const EXIT_BUILD_FAILED: i32 = 1;

pub fn build(paths: &Paths, args: BuildArgs) -> Result<i32> {
    let mode = Mode::choose(&args.progress, args.quiet)?;
    let context = args
        .context
        .canonicalize()
        .with_context(|| format!("build context {}", args.context.display()))?;
    if !context.is_dir() {
        bail!(
            "build context {} is not a directory; give the directory with the Dockerfile",
            args.context.display()
        );
    }
    let dockerfile = match &args.file {
        Some(f) => f
            .canonicalize()
            .with_context(|| format!("Dockerfile {}", f.display()))?,
        None => context.join("Dockerfile"),
    };
    let mut build_args = BTreeMap::new();
    for arg in &args.build_args {
        match arg.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            // Docker takes a bare KEY from the environment, and ignores it when unset.
            None => match std::env::var(arg) {
                Ok(v) => build_args.insert(arg.clone(), v),
                Err(_) => continue,
            },
        };
    }
    let tags = args
        .tags
        .iter()
        .map(|t| Reference::parse(t))
        .collect::<Result<Vec<_>, _>>()?;
    let network = match &args.network {
        None => Default::default(),
        Some(n) => n.parse().map_err(anyhow::Error::msg)?,
    };
    let opts = BuildOptions {
        context,
        dockerfile,
        tags,
        build_args,
        target: args.target,
        no_cache: args.no_cache,
        network,
    };
    crate::containers::require_root()?;
    // Before any thread starts: the namespace is per thread until then.
    builder::private_namespace()?;
    builder::catch_interrupts();
    let mut progress = Progress::new(mode);
    match builder::build(paths, &opts, &mut progress) {
        Ok(image) => {
            for tag in &opts.tags {
                progress.note(&format!("Successfully tagged {}", tag.familiar()));
            }
            println!("{}", image.id);
            Ok(0)
        }
        Err(e) => {
            eprintln!("berth: {e}");
            Ok(EXIT_BUILD_FAILED)
        }
    }
}

/// Like `docker history`: newest step first; sizes are the compressed layers'.
pub fn history(paths: &Paths, args: HistoryArgs) -> Result<i32> {
    let store = ImageStore::open(&paths.root)?;
    let image = store.resolve(&args.image)?;
    let history = image.config.history().clone().unwrap_or_default();
    let mut sizes = image.manifest.layers().iter().map(|l| l.size());
    let mut rows = Vec::new();
    for (i, entry) in history.iter().enumerate() {
        let empty = entry.empty_layer().unwrap_or(false);
        let size = if empty { 0 } else { sizes.next().unwrap_or(0) };
        let id = if i + 1 == history.len() {
            image.short_id().to_string()
        } else {
            "<missing>".to_string()
        };
        let created = entry
            .created()
            .as_deref()
            .and_then(parse_time)
            .map_or_else(|| "N/A".to_string(), ago);
        let mut by = entry
            .created_by()
            .clone()
            .unwrap_or_default()
            .replace('\n', " ");
        if !args.no_trunc && by.chars().count() > 45 {
            by = format!("{}…", by.chars().take(44).collect::<String>());
        }
        rows.push(vec![
            id,
            created,
            by,
            human_size(size),
            entry.comment().clone().unwrap_or_default(),
        ]);
    }
    rows.reverse();
    let mut out = io::stdout().lock();
    if args.quiet {
        for row in &rows {
            writeln!(out, "{}", row[0])?;
        }
        return Ok(0);
    }
    write!(
        out,
        "{}",
        table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &rows
        )
    )?;
    Ok(0)
}

pub fn builder(paths: &Paths, command: BuilderCommand) -> Result<i32> {
    match command {
        BuilderCommand::Prune(_) => {
            let removed = ImageStore::open(&paths.root)?
                .prune_build_cache(&berth_engine::images_in_use(paths)?)?;
            println!("Removed {removed} cached build steps");
            Ok(0)
        }
    }
}
