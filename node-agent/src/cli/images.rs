//! `berth images|import|save|load|tag|rmi`.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, IsTerminal, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::image::{ArchiveFormat, ImageStore, Loaded, Reference, Removal};
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

pub fn images(paths: &Paths, args: ImagesArgs) -> Result<i32> {
    let images = ImageStore::open(paths)?.list()?;
    let mut out = io::stdout().lock();
    if args.quiet {
        let mut seen = HashSet::new();
        for image in images.iter().filter(|i| seen.insert(i.id.clone())) {
            writeln!(out, "{}", image.short_id())?;
        }
        return Ok(0);
    }
    let now = SystemTime::now();
    let mut rows = vec![["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"].map(String::from)];
    for image in &images {
        let created = image.created().map_or_else(
            || "N/A".to_string(),
            |t| {
                format!(
                    "{} ago",
                    human_duration(now.duration_since(t).unwrap_or_default())
                )
            },
        );
        let mut row = |repository: String, tag: String| {
            rows.push([
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
    write_table(&mut out, &rows)?;
    Ok(0)
}

pub fn import(paths: &Paths, args: ImportArgs) -> Result<i32> {
    let reference = args
        .reference
        .as_deref()
        .map(Reference::parse)
        .transpose()?;
    let store = ImageStore::open(paths)?;
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
    let store = ImageStore::open(paths)?;
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
    let store = ImageStore::open(paths)?;
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
    ImageStore::open(paths)?.tag(&args.source, &args.target)?;
    Ok(0)
}

/// Like `docker rmi`: goes on after an image it cannot remove, and fails at the end.
pub fn rmi(paths: &Paths, args: RmiArgs) -> Result<i32> {
    let store = ImageStore::open(paths)?;
    let mut status = 0;
    for image in &args.images {
        match store.remove(image, args.force) {
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

/// Columns separated by three spaces, as Docker's tables are.
fn write_table<const N: usize>(out: &mut impl Write, rows: &[[String; N]]) -> io::Result<()> {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   "));
            }
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// Docker's `units.HumanDuration`: "2 minutes", "About an hour", "3 weeks".
fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = (d.as_secs_f64() / 3600.0 + 0.5) as u64;
    match () {
        _ if seconds < 1 => "Less than a second".into(),
        _ if seconds == 1 => "1 second".into(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units, three significant
/// digits ("2.14MB", "512kB", "1.1GB").
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit + 1 < UNITS.len() {
        size /= 1000.0;
        unit += 1;
    }
    let integer_digits = if size < 10.0 {
        1
    } else if size < 100.0 {
        2
    } else {
        3
    };
    let formatted = format!("{size:.prec$}", prec = 3 - integer_digits);
    let trimmed = if formatted.contains('.') {
        formatted.trim_end_matches('0').trim_end_matches('.')
    } else {
        &formatted
    };
    format!("{trimmed}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (150, "2 minutes"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (5400, "2 hours"),
            (47 * 3600, "47 hours"),
            (3 * 86400, "3 days"),
            (15 * 86400, "2 weeks"),
            (90 * 86400, "3 months"),
            (800 * 86400, "2 years"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn sizes_read_like_docker() {
        let cases = [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (2_140_160, "2.14MB"),
            (2_100_000, "2.1MB"),
            (15_500_000, "15.5MB"),
            (123_456_789, "123MB"),
            (1_000_000_000, "1GB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(human_size(bytes), want, "{bytes}");
        }
    }

    #[test]
    fn tables_align_columns() {
        let rows = [
            ["A".to_string(), "BB".into(), "C".into()],
            ["long".into(), "x".into(), "y".into()],
        ];
        let mut out = Vec::new();
        write_table(&mut out, &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "A      BB   C\nlong   x    y\n"
        );
    }
}
