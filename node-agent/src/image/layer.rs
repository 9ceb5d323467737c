//! Unpacking one layer (a tar stream of a filesystem diff) into a directory that overlayfs
//! can stack as a lowerdir.
//!
//! The tar crate parses the stream (headers, PAX records, GNU long names, sparse files);
//! the files are created here, because a layer needs what its unpacker does not do: device
//! nodes and fifos, metadata on directories and symlinks, exact mtimes applied after a
//! directory's children, and the conversion of OCI whiteouts to overlayfs ones:
//!
//! - `DIR/.wh.NAME` (NAME deleted) becomes a character device 0:0 `DIR/NAME`;
//! - `DIR/.wh..wh..opq` (DIR's lower content hidden) sets `trusted.overlay.opaque=y` on DIR.
//!
//! Entries may not leave the directory: absolute paths, `..` components and paths through a
//! symlink are refused. Symlink targets are never followed while unpacking. `trusted.overlay.*`
//! xattrs in the archive are dropped: only whiteouts decide what overlayfs hides.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, lchown, symlink};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::Error;
use super::blob::{self, CopyError};

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// Unpacks the tar stream `reader` into the existing, empty directory `root`. `layer`
/// names the layer in errors. Reads up to the end-of-archive marker; the caller drains
/// what follows when it needs the digest of the whole stream.
pub fn unpack(reader: impl Read, root: &Path, layer: &str) -> Result<(), Error> {
    let mut unpacker = Unpacker {
        root,
        layer,
        dir_times: Vec::new(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(|e| unpacker.bad_tar(e))? {
        let mut entry = entry.map_err(|e| unpacker.bad_tar(e))?;
        if entry.header().entry_type().is_pax_global_extensions() {
            continue;
        }
        let raw = entry.path().map_err(|e| unpacker.bad_tar(e))?.into_owned();
        unpacker.entry(&mut entry, &raw)?;
    }
    unpacker.finish()
}

struct Unpacker<'a> {
    root: &'a Path,
    layer: &'a str,
    /// Directories' times, set last: creating their children changes them.
    dir_times: Vec<(PathBuf, TimeSpec)>,
}

/// The metadata of an entry, from its header and PAX records.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: TimeSpec,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Unpacker<'_> {
    fn unsafe_entry(&self, entry: &Path, reason: impl Into<String>) -> Error {
        Error::UnsafeEntry {
            layer: self.layer.to_string(),
            entry: entry.display().to_string(),
            reason: reason.into(),
        }
    }

    fn bad_tar(&self, e: io::Error) -> Error {
        Error::bad_input(format!("layer {}", self.layer), format!("invalid tar: {e}"))
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, raw: &Path) -> Result<(), Error> {
        let rel = relative_path(raw).map_err(|reason| self.unsafe_entry(raw, reason))?;
        let meta = Meta::of(entry).map_err(|e| {
            let what = format!("layer {}: entry \"{}\"", self.layer, raw.display());
            Error::bad_input(what, e.to_string())
        })?;
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name == WHITEOUT_OPAQUE {
            let marker = self.check_ancestors(&rel, raw, true)?;
            let dir = marker.parent().unwrap_or(self.root);
            return xattr::set(dir, OVERLAY_OPAQUE_XATTR, b"y")
                .map_err(Error::io("marking opaque", dir));
        }
        if name.starts_with(WHITEOUT_META_PREFIX) || is_in_aufs_metadata(&rel) {
            return Ok(()); // aufs bookkeeping (.wh..wh.plnk and the like): nothing to unpack
        }
        if let Some(deleted) = name.strip_prefix(WHITEOUT_PREFIX) {
            if matches!(deleted, "" | "." | "..") {
                return Err(self.unsafe_entry(raw, "is a whiteout of no file"));
            }
            let path = self.check_ancestors(&rel.with_file_name(deleted), raw, true)?;
            remove_any(&path)?;
            mknod(&path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .map_err(|e| Error::io("creating whiteout", &path)(e.into()))?;
            return lchown(&path, Some(meta.uid), Some(meta.gid))
                .map_err(Error::io("changing owner of", path));
        }

        let path = self.check_ancestors(&rel, raw, true)?;
        let kind = entry.header().entry_type();
        if rel.as_os_str().is_empty() && !kind.is_dir() {
            return Err(self.unsafe_entry(raw, "would replace the root directory"));
        }
        if kind.is_dir() {
            if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                remove_any(&path)?;
                fs::create_dir(&path).map_err(Error::io("creating directory", &path))?;
            }
            self.apply(&path, &meta, Kind::Dir)?;
            self.dir_times.push((path, meta.mtime));
            return Ok(());
        }
        remove_any(&path)?;
        let kind = match kind {
            EntryType::Link => {
                let target = self.link_target(entry, raw)?;
                let source = self.check_ancestors(&target, raw, false)?;
                if fs::symlink_metadata(&source).map_or(true, |m| m.is_dir()) {
                    let reason = format!(
                        "is a hard link to \"{}\", which is not a file earlier in the layer",
                        target.display()
                    );
                    return Err(self.unsafe_entry(raw, reason));
                }
                // The link shares the target's inode, and so its metadata.
                return fs::hard_link(&source, &path)
                    .map_err(Error::io("creating hard link", path));
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .filter(|t| !t.as_os_str().is_empty());
                let target =
                    target.ok_or_else(|| self.unsafe_entry(raw, "is a symlink to nothing"))?;
                symlink(&target, &path).map_err(Error::io("creating symlink", &path))?;
                Kind::Symlink
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                mknod(&path, sflag, Mode::empty(), device(entry))
                    .map_err(|e| Error::io("creating device node", &path)(e.into()))?;
                Kind::Other
            }
            // Regular files, and as POSIX says, any type we do not know.
            _ => {
                let mut file = File::create_new(&path).map_err(Error::io("creating", &path))?;
                blob::copy(entry, &mut file).map_err(|e| match e {
                    CopyError::Read(e) => self.bad_tar(e),
                    CopyError::Write(e) => Error::io("writing", &path)(e),
                })?;
                Kind::Other
            }
        };
        self.apply(&path, &meta, kind)
    }

    /// A hard link's target, relative to the root.
    fn link_target<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        raw: &Path,
    ) -> Result<PathBuf, Error> {
        let target = entry.link_name().ok().flatten();
        let target = target.ok_or_else(|| self.unsafe_entry(raw, "is a hard link to nothing"))?;
        relative_path(&target).map_err(|reason| {
            self.unsafe_entry(
                raw,
                format!("links to \"{}\", which {reason}", target.display()),
            )
        })
    }

    /// Checks that the parents of `rel` are real directories under the root (creating the
    /// missing ones when `create`), and returns the absolute path of `rel`.
    fn check_ancestors(&self, rel: &Path, raw: &Path, create: bool) -> Result<PathBuf, Error> {
        let mut path = self.root.to_path_buf();
        let parent = rel.parent().unwrap_or(Path::new(""));
        for component in parent.components() {
            path.push(component);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    let through = path.strip_prefix(self.root).unwrap_or(&path);
                    return Err(self.unsafe_entry(
                        raw,
                        format!("goes through the symlink \"{}\"", through.display()),
                    ));
                }
                Ok(_) => {
                    let through = path.strip_prefix(self.root).unwrap_or(&path);
                    return Err(self.unsafe_entry(
                        raw,
                        format!(
                            "is under \"{}\", which is not a directory",
                            through.display()
                        ),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&path).map_err(Error::io("creating directory", &path))?;
                    fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                        .map_err(Error::io("changing mode of", &path))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let missing = path.strip_prefix(self.root).unwrap_or(&path);
                    let reason = format!(
                        "refers to \"{}\", which is not in the layer",
                        missing.display()
                    );
                    return Err(self.unsafe_entry(raw, reason));
                }
                Err(e) => return Err(Error::io("inspecting", &path)(e)),
            }
        }
        Ok(self.root.join(rel))
    }

    /// Sets owner, then mode (a chown clears setuid bits), then xattrs (a chown clears
    /// `security.capability`), then times (anything else changes ctime only).
    fn apply(&self, path: &Path, meta: &Meta, kind: Kind) -> Result<(), Error> {
        lchown(path, Some(meta.uid), Some(meta.gid))
            .map_err(Error::io("changing owner of", path))?;
        if kind != Kind::Symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))
                .map_err(Error::io("changing mode of", path))?;
        }
        for (name, value) in &meta.xattrs {
            xattr::set(path, name, value).map_err(Error::io("setting xattrs of", path))?;
        }
        if kind != Kind::Dir {
            set_times(path, meta.mtime)?;
        }
        Ok(())
    }

    fn finish(self) -> Result<(), Error> {
        for (dir, mtime) in &self.dir_times {
            set_times(dir, *mtime)?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    Symlink,
    Other,
}

impl Meta {
    fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let header = entry.header();
        let id = |v: u64| u32::try_from(v).map_err(|_| invalid("uid or gid out of range"));
        let mut meta = Meta {
            uid: id(header.uid()?)?,
            gid: id(header.gid()?)?,
            mode: header.mode()? & 0o7777,
            mtime: TimeSpec::new(i64::try_from(header.mtime()?).unwrap_or(i64::MAX), 0),
            xattrs: Vec::new(),
        };
        for record in entry.pax_extensions()?.into_iter().flatten() {
            let record = record?;
            let key = record.key().map_err(|_| invalid("PAX key is not UTF-8"))?;
            if key == "mtime" {
                let value = record
                    .value()
                    .map_err(|_| invalid("PAX mtime is not UTF-8"))?;
                meta.mtime = parse_pax_time(value).ok_or_else(|| invalid("invalid PAX mtime"))?;
            } else if let Some(name) = key
                .strip_prefix(PAX_XATTR_PREFIX)
                .filter(|name| !name.starts_with(OVERLAY_XATTR_PREFIX))
            {
                meta.xattrs
                    .push((name.to_string(), record.value_bytes().to_vec()));
            }
        }
        Ok(meta)
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn device<R: Read>(entry: &tar::Entry<'_, R>) -> nix::libc::dev_t {
    let header = entry.header();
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    makedev(major.into(), minor.into())
}

/// `1700000000` or `1700000000.5` (PAX time: seconds, optional fraction).
fn parse_pax_time(value: &str) -> Option<TimeSpec> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &frac[..frac.len().min(9)];
    let nanos = format!("{digits:0<9}").parse::<i64>().ok()?;
    // A negative time with a fraction counts the fraction down from the second.
    let (secs, nanos) = if secs < 0 && nanos > 0 {
        (secs - 1, 1_000_000_000 - nanos)
    } else {
        (secs, nanos)
    };
    Some(TimeSpec::new(secs, nanos))
}

fn set_times(path: &Path, mtime: TimeSpec) -> Result<(), Error> {
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &mtime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| Error::io("setting times of", path)(e.into()))
}

/// Removes whatever is at `path` (a later entry replaces an earlier one).
fn remove_any(path: &Path) -> Result<(), Error> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(Error::io("replacing", path))
}

/// Whether `rel` is under a top-level aufs metadata directory (`.wh..wh.plnk/...`).
fn is_in_aufs_metadata(rel: &Path) -> bool {
    rel.components().next().is_some_and(|first| {
        first
            .as_os_str()
            .to_str()
            .is_some_and(|f| f.starts_with(WHITEOUT_META_PREFIX))
    })
}

/// A path from an archive, made relative and checked not to climb out.
pub(crate) fn relative_path(raw: &Path) -> Result<PathBuf, &'static str> {
    let mut rel = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(c) => rel.push(c),
            Component::CurDir => {}
            Component::ParentDir => return Err("contains \"..\""),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    Ok(rel)
}
