//! `berth images|import|save|load|tag|rmi`.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::format::{ago, human_size, table};
use berth_engine::Paths;
use berth_image::{ArchiveFormat, ImageStore, Loaded, Reference, Removal};

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

pub fn images(paths: &Paths, args: ImagesArgs) -> Result<i32> {
    let images = ImageStore::open(&paths.root)?.list()?;
    let mut out = io::stdout().lock();
    if args.quiet {
        let mut seen = HashSet::new();
        for image in images.iter().filter(|i| seen.insert(i.id.clone())) {
            writeln!(out, "{}", image.short_id())?;
        }
        return Ok(0);
    }
    let mut rows = Vec::new();
    for image in &images {
        let created = image.created().map_or_else(|| "N/A".to_string(), ago);
        let mut row = |repository: String, tag: String| {
            rows.push(vec![
                repository,
                tag,
                image.short_id().to_string(),
                created.clone(),
                human_size(image.size),
            ]);
        };
        let references = image.references();
        if references.is_empty() {
            row("<none>".into(), "<none>".into());
        }
        for r in references {
            row(r.familiar_name(), r.tag().unwrap_or("<none>").to_string());
        }
    }
    write!(
        out,
        "{}",
        table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows)
    )?;
    Ok(0)
}

pub fn import(paths: &Paths, args: ImportArgs) -> Result<i32> {
    let reference = args
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    let store = ImageStore::open(&paths.root)?;
    let image = if args.file == "-" {
        let stdin = io::stdin().lock();
        if stdin.is_terminal() {
            bail!("no tarball on standard input; pipe one in, or give a file");
        }
        store.import(stdin, "standard input", reference.as_ref())?
    } else {
        let file = File::open(&args.file).with_context(|| format!("opening {}", args.file))?;
        store.import(BufReader::new(file), &args.file, reference.as_ref())?
    };
    println!("{}", image.id);
    Ok(0)
}

pub fn save(paths: &Paths, args: SaveArgs) -> Result<i32> {
    let format: ArchiveFormat = args.format.parse()?;
    let store = ImageStore::open(&paths.root)?;
    let Some(output) = args.output else {
        let stdout = io::stdout().lock();
        if stdout.is_terminal() {
            bail!("refusing to write an archive to a terminal; use -o FILE or redirect the output");
        }
        store.save(&args.images, format, BufWriter::new(stdout))?;
        return Ok(0);
    };
    // Write beside the destination and rename: a failed save leaves no partial archive.
    let output = Path::new(&output);
    let dir = match output.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    store.save(&args.images, format, BufWriter::new(tmp.as_file_mut()))?;
    let file = tmp.as_file();
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", output.display()))?;
    tmp.persist(output)
        .with_context(|| format!("writing {}", output.display()))?;
    Ok(0)
}

pub fn load(paths: &Paths, args: LoadArgs) -> Result<i32> {
    let store = ImageStore::open(&paths.root)?;
    let loaded = match &args.input {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("opening {path}"))?;
            store.load(BufReader::new(file))?
        }
        None => {
            let stdin = io::stdin().lock();
            if stdin.is_terminal() {
                bail!("no archive on standard input; pipe one in, or use -i FILE");
            }
            store.load(stdin)?
        }
    };
    let (loaded_name, loaded_id) = if args.quiet {
        ("", "")
    } else {
        ("Loaded image: ", "Loaded image ID: ")
    };
    for Loaded { image, names } in loaded {
        if names.is_empty() {
            println!("{loaded_id}{}", image.id);
        }
        for name in names {
            println!("{loaded_name}{}", name.familiar());
        }
    }
    Ok(0)
}

pub fn tag(paths: &Paths, args: TagArgs) -> Result<i32> {
    ImageStore::open(&paths.root)?.tag(&args.source, &args.target)?;
    Ok(0)
}

/// Like `docker rmi`: goes on after an image it cannot remove, and fails at the end.
pub fn rmi(paths: &Paths, args: RmiArgs) -> Result<i32> {
    let store = ImageStore::open(&paths.root)?;
    let mut status = 0;
    for image in &args.images {
        let uses = berth_engine::images_in_use(paths)?;
        match store.remove(image, args.force, &uses) {
            Ok(removals) => {
                for removal in removals {
                    match removal {
                        Removal::Untagged(name) => println!("Untagged: {name}"),
                        Removal::Deleted(id) => println!("Deleted: {id}"),
                    }
                }
            }
            Err(e) => {
                eprintln!("berth: {e}");
                status = 1;
            }
        }
    }
    Ok(status)
}
