//! Unpacking one layer into a directory. The tar crate parses the stream (headers, PAX
//! records, GNU long names, sparse files); the files are created here, because a layer
//! needs what its unpacker does not do: device nodes and fifos, metadata on directories and
//! symlinks, exact mtimes applied after a directory's children, and the conversion of OCI
//! whiteouts to overlayfs ones.
//!
//! Entries may not leave the directory: absolute paths, `..` components and paths through a
//! symlink are refused. Symlink targets are never followed while unpacking. `trusted.overlay.*`
//! xattrs in the archive are dropped: only whiteouts decide what overlayfs hides. Other xattrs
//! the filesystem refuses (`ENOTSUP`, `EPERM`) are skipped, as Docker skips them.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::{
    OVERLAY_OPAQUE_XATTR, OVERLAY_XATTR_PREFIX, PAX_XATTR_PREFIX, WHITEOUT_META_PREFIX,
    WHITEOUT_OPAQUE, WHITEOUT_PREFIX, relative_path,
};
use crate::Error;
use crate::blob::{self, CopyError};

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
            match xattr::set(path, name, value) {
                // As Docker does: a filesystem or namespace that takes no such attribute
                // (`user.*` on a symlink, say) does not make the layer unusable.
                Err(e)
                    if matches!(
                        Errno::from_raw(e.raw_os_error().unwrap_or(0)),
                        Errno::ENOTSUP | Errno::EPERM
                    ) => {}
                result => result.map_err(Error::io("setting xattrs of", path))?,
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// Builds layer tars entry by entry, with names written raw so that hostile ones
    /// (`../x`, `/abs`) can be made.
    struct Layer(tar::Builder<Vec<u8>>);

    impl Layer {
        fn new() -> Self {
            Layer(tar::Builder::new(Vec::new()))
        }

        fn entry(
            &mut self,
            kind: EntryType,
            path: &str,
            data: &[u8],
            edit: impl FnOnce(&mut tar::Header),
        ) -> &mut Self {
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(kind);
            header.set_size(data.len() as u64);
            header.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            header.set_mtime(1_600_000_000);
            header.set_uid(0);
            header.set_gid(0);
            header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            edit(&mut header);
            header.set_cksum();
            self.0.append(&header, data).unwrap();
            self
        }

        fn dir(&mut self, path: &str) -> &mut Self {
            self.entry(EntryType::Directory, path, b"", |_| {})
        }

        fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
            self.entry(EntryType::Regular, path, data, |_| {})
        }

        fn link(&mut self, kind: EntryType, path: &str, target: &str) -> &mut Self {
            self.entry(kind, path, b"", |h| {
                h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes())
            })
        }

        /// A PAX extended header applying to the next entry.
        fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
            let mut data = Vec::new();
            for (key, value) in records {
                let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
                let mut len = body_len + body_len.to_string().len();
                if len.to_string().len() != body_len.to_string().len() {
                    len += 1;
                }
                data.extend_from_slice(format!("{len} {key}=").as_bytes());
                data.extend_from_slice(value);
                data.push(b'\n');
            }
            self.entry(EntryType::XHeader, "PaxHeader", &data.clone(), |_| {})
        }

        fn unpack(&mut self) -> (tempfile::TempDir, Result<(), Error>) {
            let bytes = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
                .into_inner()
                .unwrap();
            let dir = tempfile::tempdir().unwrap();
            let result = unpack(&bytes[..], dir.path(), "sha256:test");
            (dir, result)
        }
    }

    fn unpacked(layer: &mut Layer) -> tempfile::TempDir {
        let (dir, result) = layer.unpack();
        result.unwrap();
        dir
    }

    fn refused(layer: &mut Layer, want: &str) {
        let (_, result) = layer.unpack();
        let err = result.expect_err("the layer should be refused");
        assert!(err.to_string().contains(want), "{err} (wanted {want:?})");
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let dir = unpacked(
            Layer::new()
                .dir("etc/")
                .entry(EntryType::Regular, "etc/.wh.passwd", b"", |h| {
                    h.set_uid(7);
                    h.set_gid(8);
                })
                .dir("var/")
                .file("var/.wh..wh..opq", b"")
                .file("var/new", b"kept")
                .file("opt/deep/.wh..wh..opq", b"")
                .file(".wh..wh.plnk/123", b"aufs")
                .file(".wh.gone", b""),
        );
        let root = dir.path();
        let whiteout = fs::symlink_metadata(root.join("etc/passwd")).unwrap();
        assert!(whiteout.file_type().is_char_device());
        assert_eq!(whiteout.rdev(), 0);
        assert_eq!((whiteout.uid(), whiteout.gid()), (7, 8));
        assert!(
            fs::symlink_metadata(root.join("gone"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
        assert!(!root.join("etc/.wh.passwd").exists());

        let opaque = |p: &str| xattr::get(root.join(p), OVERLAY_OPAQUE_XATTR).unwrap();
        assert_eq!(opaque("var").as_deref(), Some(&b"y"[..]));
        assert_eq!(opaque("opt/deep").as_deref(), Some(&b"y"[..]));
        assert_eq!(opaque("etc"), None);
        assert_eq!(fs::read(root.join("var/new")).unwrap(), b"kept");
        assert!(!root.join("var/.wh..wh..opq").exists());
        assert!(
            !root.join(".wh..wh.plnk").exists(),
            "aufs metadata is dropped"
        );
    }

    #[test]
    fn a_whiteout_replaces_what_the_layer_itself_had() {
        let dir = unpacked(Layer::new().file("a/f", b"x").file("a/.wh.f", b""));
        assert!(
            fs::symlink_metadata(dir.path().join("a/f"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    #[test]
    fn preserves_every_kind_of_file_and_its_metadata() {
        let dir = unpacked(
            Layer::new()
                .entry(EntryType::Directory, "./", b"", |h| h.set_mode(0o750))
                .entry(EntryType::Directory, "tmp/", b"", |h| h.set_mode(0o1777))
                .entry(EntryType::Regular, "bin/su", b"#!", |h| {
                    h.set_mode(0o4755);
                    h.set_uid(1000);
                    h.set_gid(1001);
                })
                .link(EntryType::Link, "bin/su2", "bin/su")
                .link(EntryType::Symlink, "bin/sh", "busybox")
                .link(EntryType::Symlink, "abs", "/etc/passwd")
                .entry(EntryType::Char, "dev/null", b"", |h| {
                    h.set_device_major(1).unwrap();
                    h.set_device_minor(3).unwrap();
                    h.set_mode(0o666);
                })
                .entry(EntryType::Block, "dev/loop0", b"", |h| {
                    h.set_device_major(7).unwrap();
                    h.set_device_minor(0).unwrap();
                })
                .entry(EntryType::Fifo, "run/fifo", b"", |_| {})
                .pax(&[
                    ("SCHILY.xattr.user.origin", b"berth"),
                    ("SCHILY.xattr.trusted.overlay.redirect", b"/elsewhere"),
                    ("mtime", b"1500000000.25"),
                ])
                .file("data", b"payload")
                .entry(EntryType::Directory, "old/", b"", |h| {
                    h.set_mtime(1_000_000_000)
                })
                .file("old/child", b"later"),
        );
        let root = dir.path();
        let meta = |p: &str| fs::symlink_metadata(root.join(p)).unwrap();

        assert_eq!(meta("").mode() & 0o7777, 0o750);
        assert_eq!(meta("tmp").mode() & 0o7777, 0o1777);
        let su = meta("bin/su");
        assert_eq!(su.mode() & 0o7777, 0o4755, "setuid survives the chown");
        assert_eq!((su.uid(), su.gid()), (1000, 1001));
        assert_eq!(su.mtime(), 1_600_000_000);
        assert_eq!(meta("bin/su2").ino(), su.ino(), "hard link");
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert_eq!(
            fs::read_link(root.join("abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            meta("bin/sh").mtime(),
            1_600_000_000,
            "symlink times are its own"
        );
        let null = meta("dev/null");
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), makedev(1, 3));
        assert_eq!(null.mode() & 0o7777, 0o666);
        assert!(meta("dev/loop0").file_type().is_block_device());
        assert!(meta("run/fifo").file_type().is_fifo());
        assert_eq!(
            meta("dev").mode() & 0o7777,
            0o755,
            "implicit parents are 0755"
        );

        let data = meta("data");
        assert_eq!(
            (data.mtime(), data.mtime_nsec()),
            (1_500_000_000, 250_000_000)
        );
        assert_eq!(
            xattr::get(root.join("data"), "user.origin")
                .unwrap()
                .as_deref(),
            Some(&b"berth"[..])
        );
        assert_eq!(
            xattr::get(root.join("data"), "trusted.overlay.redirect").unwrap(),
            None,
            "overlay xattrs from the archive are dropped"
        );
        assert_eq!(meta("old").mtime(), 1_000_000_000, "set after its children");
    }

    #[test]
    fn xattrs_the_filesystem_refuses_are_skipped() {
        let dir = unpacked(Layer::new().pax(&[("SCHILY.xattr.user.kept", b"no")]).link(
            EntryType::Symlink,
            "link",
            "target",
        ));
        assert!(
            fs::symlink_metadata(dir.path().join("link"))
                .unwrap()
                .is_symlink()
        );
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let dir = unpacked(
            Layer::new()
                .file("x", b"file")
                .dir("x/")
                .file("x/inner", b"")
                .file("y/inner", b"")
                .file("y", b"now a file")
                .link(EntryType::Symlink, "z", "x")
                .file("z", b"not through the link"),
        );
        let root = dir.path();
        assert!(root.join("x").is_dir());
        assert_eq!(fs::read(root.join("y")).unwrap(), b"now a file");
        assert!(fs::symlink_metadata(root.join("z")).unwrap().is_file());
        assert!(root.join("x/inner").exists());
    }

    #[test]
    fn refuses_entries_that_escape() {
        refused(Layer::new().file("../evil", b""), "contains \"..\"");
        refused(Layer::new().file("a/../../evil", b""), "contains \"..\"");
        refused(Layer::new().file("/etc/evil", b""), "is an absolute path");
        refused(
            Layer::new()
                .link(EntryType::Symlink, "link", "/etc")
                .file("link/passwd", b""),
            "goes through the symlink \"link\"",
        );
        refused(
            Layer::new()
                .link(EntryType::Symlink, "link", "..")
                .file("link/.wh.x", b""),
            "goes through the symlink",
        );
        refused(
            Layer::new()
                .link(EntryType::Symlink, "d", "/")
                .file("d/.wh..wh..opq", b""),
            "goes through the symlink",
        );
        refused(
            Layer::new().link(EntryType::Link, "l", "../outside"),
            "contains \"..\"",
        );
        refused(
            Layer::new().link(EntryType::Link, "l", "/etc/shadow"),
            "absolute path",
        );
        refused(
            Layer::new().link(EntryType::Link, "l", "missing"),
            "not a file earlier",
        );
        refused(
            Layer::new().link(EntryType::Symlink, "s", "/etc").link(
                EntryType::Link,
                "l",
                "s/shadow",
            ),
            "goes through the symlink",
        );
        refused(
            Layer::new().file("f", b"").file("f/g", b""),
            "not a directory",
        );
        refused(Layer::new().file(".wh..", b""), "whiteout of no file");
        refused(Layer::new().file("./", b""), "replace the root");
    }

    #[test]
    fn reports_a_truncated_layer() {
        let mut layer = Layer::new();
        layer.file("big", &[7; 4096]);
        let bytes = std::mem::replace(&mut layer.0, tar::Builder::new(Vec::new()))
            .into_inner()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = unpack(&bytes[..1024], dir.path(), "sha256:test").unwrap_err();
        assert!(err.to_string().contains("invalid tar"), "{err}");
    }

    #[test]
    fn pax_times() {
        let t = |s: &str| parse_pax_time(s).map(|t| (t.tv_sec(), t.tv_nsec()));
        assert_eq!(t("1500000000"), Some((1_500_000_000, 0)));
        assert_eq!(t("1500000000.5"), Some((1_500_000_000, 500_000_000)));
        assert_eq!(t("1.1234567891"), Some((1, 123_456_789)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("x"), None);
        assert_eq!(t("1.x"), None);
    }
}
