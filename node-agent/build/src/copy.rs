//! COPY and ADD: sources from the build context (as `.dockerignore` leaves it), another
//! stage or image, a heredoc or a URL, copied into a step's mounted root filesystem
//! with Docker's rules for destinations, ownership and modes.
//!
//! Paths inside the root filesystem are resolved as if it were `/` (a symlink in an image
//! cannot lead a copy out onto the host); sources are read without following symlinks
//! below the source itself.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use sha2::{Digest, Sha256};

use crate::context::{self, Entry, FileKind, Glob};
use berth_image::blob;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("\"{arg}\" not found in the build context (or excluded by .dockerignore)")]
    NotInContext { arg: String },
    #[error("\"{arg}\" not found")]
    NotFound { arg: String },
    #[error("no source files were specified (\"{arg}\" matches nothing)")]
    NoMatch { arg: String },
    #[error(transparent)]
    Context(#[from] context::Error),
    #[error("too many levels of symbolic links in \"{rel}\"")]
    SymlinkLoop { rel: String },
    #[error(
        "when copying several sources, the destination must be a directory ending in /: \"{dest}\""
    )]
    SeveralSources { dest: String },
    #[error("invalid --chmod \"{text}\": give an octal mode such as 755")]
    BadMode { text: String },
    #[error("\"{name}\" cannot name a file: it must be one path component")]
    NotPlainName { name: String },
    #[error(transparent)]
    Io(#[from] berth_sys::fs::IoError),
    #[error("copying {} to {}: {source}", from.display(), to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    // tar's errors say which entry; their source says what went wrong with it.
    #[error("extracting {}: {source}{}", archive.display(), cause(source))]
    Extract {
        archive: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Archive(#[from] berth_image::Error),
}

impl Error {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
        let io = berth_sys::fs::io_error(action, path);
        move |source| Error::Io(io(source))
    }
}

fn cause(e: &io::Error) -> String {
    std::error::Error::source(e)
        .map(|c| format!(": {c}"))
        .unwrap_or_default()
}

/// Where a COPY's sources are.
pub enum Origin<'a> {
    /// The build context: its directory and its listing with `.dockerignore` applied.
    Context { dir: &'a Path, entries: &'a [Entry] },
    /// A root filesystem (another stage's or an image's), mounted.
    Rootfs(&'a Path),
}

/// One source, resolved: a file or directory (with what is below it) to copy.
#[derive(Debug)]
pub struct Source {
    /// Where to read it.
    pub path: PathBuf,
    /// The name it is copied under when the destination is a directory.
    pub name: String,
    pub kind: FileKind,
    /// For a directory: what is below it, relative to it, parents first.
    pub children: Vec<Entry>,
    /// ADD of a local archive: its content is extracted instead.
    pub extract: bool,
}

impl Origin<'_> {
    /// The sources one COPY argument names: a path, or a pattern with `*`, `?`, `[...]`.
    pub fn resolve(&self, arg: &str) -> Result<Vec<Source>, Error> {
        let rel = clean(arg);
        if context::has_glob(&rel) {
            let glob = Glob::new(&rel)?;
            let mut found = Vec::new();
            for entry in self.list(&glob_base(&rel))? {
                let path = entry.path.to_string_lossy();
                if glob.is_match(&path) {
                    found.push(self.source(&path, entry.kind)?);
                }
            }
            if found.is_empty() {
                return Err(Error::NoMatch { arg: arg.into() });
            }
            return Ok(found);
        }
        let kind = self.kind_of(&rel).ok_or_else(|| match self {
            Origin::Context { .. } => Error::NotInContext { arg: arg.into() },
            Origin::Rootfs(_) => Error::NotFound { arg: arg.into() },
        })?;
        Ok(vec![self.source(&rel, kind)?])
    }

    fn root(&self) -> &Path {
        match self {
            Origin::Context { dir, .. } => dir,
            Origin::Rootfs(root) => root,
        }
    }

    fn kind_of(&self, rel: &str) -> Option<FileKind> {
        if rel.is_empty() {
            return Some(FileKind::Dir);
        }
        match self {
            Origin::Context { entries, .. } => entries
                .iter()
                .find(|e| e.path == Path::new(rel))
                .map(|e| e.kind),
            Origin::Rootfs(root) => {
                let meta = fs::symlink_metadata(within(root, rel, false).ok()?).ok()?;
                Some(kind(&meta))
            }
        }
    }

    /// Everything below `rel` (relative to the root), parents first.
    fn list(&self, rel: &str) -> Result<Vec<Entry>, Error> {
        match self {
            Origin::Context { entries, .. } => {
                let prefix = Path::new(rel);
                Ok(entries
                    .iter()
                    .filter(|e| rel.is_empty() || (e.path.starts_with(prefix) && e.path != prefix))
                    .cloned()
                    .collect())
            }
            Origin::Rootfs(root) => {
                let base = within(root, rel, true)?;
                if !base.is_dir() {
                    return Ok(Vec::new());
                }
                let listing = context::walk(&base, &context::Ignore::default())?;
                Ok(listing
                    .into_iter()
                    .map(|e| Entry {
                        path: Path::new(rel).join(e.path),
                        kind: e.kind,
                    })
                    .collect())
            }
        }
    }

    fn source(&self, rel: &str, kind: FileKind) -> Result<Source, Error> {
        // The source itself may be a symlink, which is followed (within the root).
        let follow = kind == FileKind::Symlink;
        let path = within(self.root(), rel, follow)?;
        let kind = if follow {
            fs::metadata(&path)
                .map(|m| self::kind(&m))
                .map_err(Error::io("reading the target of", &path))?
        } else {
            kind
        };
        let children = if kind == FileKind::Dir {
            let real = path.strip_prefix(self.root()).unwrap_or(Path::new(""));
            let real = real.to_string_lossy();
            self.list(&real)?
                .into_iter()
                .filter_map(|e| {
                    let inner = e.path.strip_prefix(real.as_ref()).ok()?.to_path_buf();
                    Some(Entry {
                        path: inner,
                        kind: e.kind,
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let name = Path::new(rel)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Source {
            path,
            name,
            kind,
            children,
            extract: false,
        })
    }
}

/// A source argument made relative to its root: no leading `/` or `./`, no `..` out.
fn clean(arg: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(arg).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

/// The directory a glob's matches can be under: its components before the first with a
/// metacharacter.
fn glob_base(pattern: &str) -> String {
    pattern
        .split('/')
        .take_while(|part| !context::has_glob(part))
        .collect::<Vec<_>>()
        .join("/")
}

fn kind(meta: &fs::Metadata) -> FileKind {
    let t = meta.file_type();
    if t.is_dir() {
        FileKind::Dir
    } else if t.is_symlink() {
        FileKind::Symlink
    } else if t.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    }
}

/// `rel` inside `root` with every symlink on the way resolved as if `root` were `/`
/// (and the last component too when `follow`). Like `chroot` path lookup, without a
/// chroot: nothing resolves outside `root`.
pub fn within(root: &Path, rel: &str, follow: bool) -> Result<PathBuf, Error> {
    let mut resolved = PathBuf::new();
    let mut pending: Vec<String> = rel.split('/').rev().map(str::to_string).collect();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = resolved.join(&part);
        let last = pending.iter().all(|p| p.is_empty() || p == ".");
        match fs::symlink_metadata(root.join(&candidate)) {
            Ok(m) if m.file_type().is_symlink() && (follow || !last) => {
                links += 1;
                if links > 255 {
                    return Err(Error::SymlinkLoop { rel: rel.into() });
                }
                let link = root.join(&candidate);
                let target = fs::read_link(&link).map_err(Error::io("reading", &link))?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved = PathBuf::new();
                }
                pending.extend(target.split('/').rev().map(str::to_string));
            }
            _ => resolved = candidate,
        }
    }
    Ok(root.join(resolved))
}

/// A digest of what the sources hold: names, types, modes, link targets and contents,
/// not times or owners (the cache must hit when only an mtime changed).
pub fn digest(sources: &[Source]) -> Result<String, Error> {
    let mut hash = Sha256::new();
    for source in sources {
        hash.update(format!(
            "{}\0{:?}\0{}\0",
            source.name, source.kind, source.extract
        ));
        entry_digest(&mut hash, &source.path)?;
        for child in &source.children {
            hash.update(format!("{}\0", child.path.display()));
            entry_digest(&mut hash, &source.path.join(&child.path))?;
        }
    }
    Ok(format!("sha256:{:x}", hash.finalize()))
}

fn entry_digest(hash: &mut Sha256, path: &Path) -> Result<(), Error> {
    let meta = fs::symlink_metadata(path).map_err(Error::io("reading", path))?;
    hash.update(format!("{:o}\0", meta.mode()));
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path).map_err(Error::io("reading", path))?;
        hash.update(target.as_os_str().as_encoded_bytes());
    } else if meta.is_file() {
        let mut file = File::open(path).map_err(Error::io("reading", path))?;
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = file.read(&mut buf).map_err(Error::io("reading", path))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
        }
    }
    hash.update([0]);
    Ok(())
}

/// How copied files are owned and moded.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attributes {
    /// `--chown`; without it, root for files from the context and their own owners for
    /// files from another stage or image (`--from`), as Docker does.
    pub owner: Option<(u32, u32)>,
    /// `--chmod`.
    pub mode: Option<u32>,
}

impl Attributes {
    /// The owner of the directories a copy creates (mode 0755 whatever `--chmod` says:
    /// the files must stay reachable).
    fn parent_owner(self) -> (u32, u32) {
        self.owner.unwrap_or((0, 0))
    }
}

/// `--chmod=755`: octal only, as Docker takes it.
pub fn parse_mode(text: &str) -> Result<u32, Error> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| Error::BadMode { text: text.into() })
}

/// Checks a name a file gets from the Dockerfile or a URL (a heredoc's, a download's):
/// one path component, so it cannot point anywhere else.
pub fn plain_name(name: &str) -> Result<&str, Error> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(Error::NotPlainName { name: name.into() });
    }
    Ok(name)
}

/// Copies `sources` to `dest` (absolute, inside `root`) with Docker's rules: a
/// destination ending in `/`, or several sources, or an existing directory, is a
/// directory to copy into; a directory source has its contents copied. Every path is
/// resolved inside `root`: a symlink to a directory there (`/bin -> usr/bin`) is
/// copied into, not replaced.
pub fn copy(root: &Path, sources: &[Source], dest: &str, attrs: Attributes) -> Result<(), Error> {
    let multiple = sources.len() > 1;
    if multiple && !dest.ends_with('/') {
        return Err(Error::SeveralSources { dest: dest.into() });
    }
    let resolve = |rel: &str, follow: bool| within(root, rel, follow);
    let target = resolve(dest, true)?;
    let dest_is_dir = dest.ends_with('/') || multiple || target.is_dir();
    let dest = dest.trim_end_matches('/');
    for source in sources {
        if source.extract {
            make_dirs(root, &target, attrs.parent_owner())?;
            extract(&source.path, &target)?;
        } else if source.kind == FileKind::Dir {
            make_dirs(root, &target, attrs.parent_owner())?;
            for child in &source.children {
                let rel = format!("{dest}/{}", child.path.display());
                let to = resolve(&rel, child.kind == FileKind::Dir)?;
                copy_entry(&source.path.join(&child.path), &to, attrs)?;
            }
        } else {
            let to = if dest_is_dir {
                make_dirs(root, &target, attrs.parent_owner())?;
                target.join(&source.name)
            } else {
                if let Some(parent) = target.parent() {
                    make_dirs(root, parent, attrs.parent_owner())?;
                }
                target.clone()
            };
            copy_entry(&source.path, &to, attrs)?;
        }
    }
    Ok(())
}

/// Writes a heredoc source as a file.
pub fn write_inline(
    root: &Path,
    name: &str,
    content: &str,
    dest: &str,
    attrs: Attributes,
) -> Result<(), Error> {
    let target = within(root, dest, true)?;
    let to = if dest.ends_with('/') || target.is_dir() {
        make_dirs(root, &target, attrs.parent_owner())?;
        target.join(plain_name(name)?)
    } else {
        if let Some(parent) = target.parent() {
            make_dirs(root, parent, attrs.parent_owner())?;
        }
        target
    };
    remove_non_dir(&to)?;
    fs::write(&to, content).map_err(Error::io("writing", &to))?;
    finish(
        &to,
        Some(attrs.parent_owner()),
        attrs.mode.unwrap_or(0o644),
        None,
    )
}

/// Creates `dir` and its missing parents (below `root`), mode 0755, owned by `owner`.
pub fn make_dirs(root: &Path, dir: &Path, owner: (u32, u32)) -> Result<(), Error> {
    if dir.is_dir() || dir == root {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_dirs(root, parent, owner)?;
    }
    remove_non_dir(dir)?;
    fs::create_dir(dir).map_err(Error::io("creating", dir))?;
    finish(dir, Some(owner), 0o755, None)
}

fn remove_non_dir(path: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(path) {
        Ok(m) if !m.is_dir() => fs::remove_file(path).map_err(Error::io("replacing", path)),
        _ => Ok(()),
    }
}

/// Copies one entry (not what is below a directory) with its mode and mtime, and its
/// owner unless `attrs` sets one.
fn copy_entry(from: &Path, to: &Path, attrs: Attributes) -> Result<(), Error> {
    let meta = fs::symlink_metadata(from).map_err(Error::io("reading", from))?;
    let t = meta.file_type();
    let failed = |source| Error::Copy {
        from: from.into(),
        to: to.into(),
        source,
    };
    if t.is_dir() {
        if !fs::symlink_metadata(to).is_ok_and(|m| m.is_dir()) {
            remove_non_dir(to)?;
            fs::create_dir(to).map_err(failed)?;
        }
    } else {
        match fs::symlink_metadata(to) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(to).map_err(failed)?,
            Ok(_) => fs::remove_file(to).map_err(failed)?,
            Err(_) => {}
        }
        if t.is_symlink() {
            symlink(fs::read_link(from).map_err(failed)?, to).map_err(failed)?;
        } else if t.is_file() {
            fs::copy(from, to).map_err(failed)?;
        } else {
            // Devices and fifos are not copied, as BuildKit skips them.
            return Ok(());
        }
    }
    let owner = attrs.owner.unwrap_or((meta.uid(), meta.gid()));
    let mode = attrs.mode.unwrap_or(meta.mode() & 0o7777);
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    finish(to, Some(owner), mode, Some(mtime))
}

/// Sets owner, then mode (chown clears setuid), then mtime.
fn finish(
    path: &Path,
    owner: Option<(u32, u32)>,
    mode: u32,
    mtime: Option<TimeSpec>,
) -> Result<(), Error> {
    let failed = |source: io::Error| Error::io("setting the attributes of", path)(source);
    if let Some((uid, gid)) = owner {
        lchown(path, Some(uid), Some(gid)).map_err(failed)?;
    }
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(failed)?;
    }
    if let Some(mtime) = mtime {
        utimensat(
            nix::fcntl::AT_FDCWD,
            path,
            &mtime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| failed(e.into()))?;
    }
    Ok(())
}

/// Whether the file at `path` is a tar archive, plain or compressed, as ADD extracts.
pub fn is_archive(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let Ok(mut reader) = blob::decompressed(file, "archive") else {
        return false;
    };
    let mut header = [0u8; 512];
    if reader.read_exact(&mut header).is_err() {
        return false;
    }
    // ustar (POSIX and GNU) magic at offset 257.
    &header[257..262] == b"ustar"
}

fn extract(archive: &Path, into: &Path) -> Result<(), Error> {
    let failed = |source| Error::Extract {
        archive: archive.into(),
        source,
    };
    let file = File::open(archive).map_err(failed)?;
    let reader = blob::decompressed(file, &archive.display().to_string())?;
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_ownerships(true);
    tar.set_preserve_mtime(true);
    tar.set_overwrite(true);
    // unpack refuses entries that would land outside `into`, through `..` or a symlink.
    tar.unpack(into).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_keeps_symlinks_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("real/sub")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        symlink("../../..", root.join("real/sub/up")).unwrap();
        symlink("/etc", root.join("host")).unwrap();
        assert_eq!(
            within(root, "abs/sub", true).unwrap(),
            root.join("real/sub")
        );
        assert_eq!(
            within(root, "real/sub/up/real", true).unwrap(),
            root.join("real")
        );
        // The image's /etc, not the host's.
        assert_eq!(
            within(root, "host/passwd", true).unwrap(),
            root.join("etc/passwd")
        );
        assert_eq!(within(root, "abs", false).unwrap(), root.join("abs"));
        symlink("loop", root.join("loop")).unwrap();
        assert!(within(root, "loop", true).is_err());
    }

    #[test]
    fn sources_are_cleaned_and_globs_based() {
        assert_eq!(clean("./app/../app/x"), "app/x");
        assert_eq!(clean("/a/b/"), "a/b");
        assert_eq!(clean("."), "");
        assert_eq!(glob_base("app/*.py"), "app");
        assert_eq!(glob_base("*.txt"), "");
    }

    #[test]
    fn missing_sources_say_where_they_were_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let entries = [Entry {
            path: "a.txt".into(),
            kind: FileKind::File,
        }];
        let context = Origin::Context {
            dir: dir.path(),
            entries: &entries,
        };
        let err = context.resolve("secret.key").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"secret.key\" not found in the build context (or excluded by .dockerignore)"
        );
        assert!(matches!(
            context.resolve("*.key"),
            Err(Error::NoMatch { arg }) if arg == "*.key"
        ));
        let rootfs = Origin::Rootfs(dir.path());
        assert_eq!(
            rootfs.resolve("nope").unwrap_err().to_string(),
            "\"nope\" not found"
        );
        assert!(matches!(plain_name("../x"), Err(Error::NotPlainName { name }) if name == "../x"));
    }

    #[test]
    fn chmod_is_octal() {
        assert_eq!(parse_mode("755").unwrap(), 0o755);
        assert!(matches!(parse_mode("u+x"), Err(Error::BadMode { text }) if text == "u+x"));
        assert!(parse_mode("99999").is_err());
    }
}
