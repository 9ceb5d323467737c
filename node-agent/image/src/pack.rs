//! Packing a directory in overlayfs form (an upper directory, or an unpacked layer) into
//! an OCI layer: a tar stream of the filesystem diff, the inverse of [`crate::layer`].
//!
//! - a character device 0:0 `DIR/NAME` (overlayfs: NAME deleted) becomes `DIR/.wh.NAME`;
//! - `trusted.overlay.opaque=y` on DIR becomes a `DIR/.wh..wh..opq` entry after DIR;
//! - other `trusted.overlay.*` xattrs (overlayfs bookkeeping) are left out; the rest go in
//!   PAX records, as Docker writes them;
//! - hard links within the directory stay hard links; sockets are skipped, as tar does.
//!
//! Entries come sorted by name so that the same tree always gives the same bytes.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::Error;
use crate::layer::{
    OVERLAY_OPAQUE_XATTR, OVERLAY_XATTR_PREFIX, PAX_XATTR_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX,
};

/// Writes the tree under `root` (not `root` itself) as a layer tar to `out`. `skip` leaves
/// out an entry (and, for a directory, everything below it) given its relative path.
/// Returns how many entries were written.
pub fn pack(
    root: &Path,
    out: impl Write,
    skip: &dyn Fn(&Path, &Metadata) -> bool,
) -> Result<usize, Error> {
    let mut packer = Packer {
        root,
        tar: tar::Builder::new(out),
        links: HashMap::new(),
        skip,
        entries: 0,
    };
    packer.dir(Path::new(""))?;
    let entries = packer.entries;
    packer
        .tar
        .into_inner()
        .and_then(|mut out| out.flush())
        .map_err(Error::io("writing the layer of", root))?;
    Ok(entries)
}

struct Packer<'a, W: Write> {
    root: &'a Path,
    tar: tar::Builder<W>,
    /// (device, inode) of files with several links -> the first path packed.
    links: HashMap<(u64, u64), PathBuf>,
    skip: &'a dyn Fn(&Path, &Metadata) -> bool,
    entries: usize,
}

impl<W: Write> Packer<'_, W> {
    fn dir(&mut self, rel: &Path) -> Result<(), Error> {
        let path = self.root.join(rel);
        let mut names: Vec<_> = fs::read_dir(&path)
            .and_then(|entries| entries.map(|e| e.map(|e| e.file_name())).collect())
            .map_err(Error::io("listing", &path))?;
        names.sort();
        for name in names {
            self.entry(&rel.join(name))?;
        }
        Ok(())
    }

    fn entry(&mut self, rel: &Path) -> Result<(), Error> {
        let path = self.root.join(rel);
        let meta = fs::symlink_metadata(&path).map_err(Error::io("inspecting", &path))?;
        if (self.skip)(rel, &meta) || meta.file_type().is_socket() {
            return Ok(());
        }
        self.entries += 1;
        let kind = meta.file_type();
        let write = |e| Error::io("packing", &path)(e);
        if kind.is_char_device() && meta.rdev() == 0 {
            let name = rel.file_name().unwrap_or_default().to_string_lossy();
            let whiteout = rel.with_file_name(format!("{WHITEOUT_PREFIX}{name}"));
            let mut header = header(&meta, EntryType::Regular);
            header.set_mode(0o644);
            return self
                .tar
                .append_data(&mut header, whiteout, io::empty())
                .map_err(write);
        }
        self.xattrs(&path, &meta)?;
        if kind.is_dir() {
            let mut header = header(&meta, EntryType::Directory);
            self.tar
                .append_data(&mut header, rel, io::empty())
                .map_err(write)?;
            if xattr::get(&path, OVERLAY_OPAQUE_XATTR)
                .ok()
                .flatten()
                .as_deref()
                == Some(b"y")
            {
                let mut header = header.clone();
                header.set_entry_type(EntryType::Regular);
                header.set_mode(0o644);
                self.tar
                    .append_data(&mut header, rel.join(WHITEOUT_OPAQUE), io::empty())
                    .map_err(write)?;
            }
            return self.dir(rel);
        }
        if kind.is_symlink() {
            let target = fs::read_link(&path).map_err(Error::io("reading the link", &path))?;
            let mut header = header(&meta, EntryType::Symlink);
            return self
                .tar
                .append_link(&mut header, rel, target)
                .map_err(write);
        }
        if meta.nlink() > 1 && !kind.is_dir() {
            if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                let mut header = header(&meta, EntryType::Link);
                let first = first.clone();
                return self.tar.append_link(&mut header, rel, first).map_err(write);
            }
            self.links
                .insert((meta.dev(), meta.ino()), rel.to_path_buf());
        }
        let special = if kind.is_char_device() {
            Some(EntryType::Char)
        } else if kind.is_block_device() {
            Some(EntryType::Block)
        } else if kind.is_fifo() {
            Some(EntryType::Fifo)
        } else {
            None
        };
        if let Some(entry_type) = special {
            let mut header = header(&meta, entry_type);
            let dev = meta.rdev();
            header
                .set_device_major(nix::sys::stat::major(dev) as u32)
                .and_then(|()| header.set_device_minor(nix::sys::stat::minor(dev) as u32))
                .map_err(write)?;
            return self
                .tar
                .append_data(&mut header, rel, io::empty())
                .map_err(write);
        }
        let file = File::open(&path).map_err(Error::io("reading", &path))?;
        let mut header = header(&meta, EntryType::Regular);
        header.set_size(meta.len());
        self.tar.append_data(&mut header, rel, file).map_err(write)
    }

    /// The entry's xattrs as PAX records, written just before it.
    fn xattrs(&mut self, path: &Path, meta: &Metadata) -> Result<(), Error> {
        if meta.file_type().is_symlink() {
            return Ok(());
        }
        let names = xattr::list(path).map_err(Error::io("listing xattrs of", path))?;
        let mut records = Vec::new();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            // Overlay bookkeeping, and the host's SELinux labels, are not the image's.
            if name.starts_with(OVERLAY_XATTR_PREFIX) || name == "security.selinux" {
                continue;
            }
            if let Some(value) =
                xattr::get(path, &name).map_err(Error::io("reading xattrs of", path))?
            {
                records.push((format!("{PAX_XATTR_PREFIX}{name}"), value));
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        self.tar
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(Error::io("packing", path))
    }
}

fn header(meta: &Metadata, entry_type: EntryType) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(meta.uid().into());
    header.set_gid(meta.gid().into());
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    header.set_size(0);
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};

    fn entries(data: &[u8]) -> Vec<(String, EntryType)> {
        let mut archive = tar::Archive::new(data);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect()
    }

    #[test]
    fn files_links_and_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::write(root.join("b/c/f"), "x").unwrap();
        fs::write(root.join("a"), "y").unwrap();
        fs::hard_link(root.join("a"), root.join("z")).unwrap();
        std::os::unix::fs::symlink("a", root.join("s")).unwrap();
        let mut out = Vec::new();
        pack(root, &mut out, &|_, _| false).unwrap();
        let got = entries(&out);
        let names: Vec<_> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "b/c", "b/c/f", "s", "z"]);
        assert_eq!(got[4].1, EntryType::Symlink);
        assert_eq!(got[5].1, EntryType::Link);
    }

    #[test]
    fn skip_leaves_out_subtrees() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("proc/x")).unwrap();
        fs::write(dir.path().join("keep"), "").unwrap();
        let mut out = Vec::new();
        pack(dir.path(), &mut out, &|rel, _| rel == Path::new("proc")).unwrap();
        assert_eq!(entries(&out), [("keep".to_string(), EntryType::Regular)]);
    }

    /// Whiteouts and opaque markers become their OCI forms (needs root: mknod and
    /// trusted.* xattrs).
    #[test]
    fn overlay_whiteouts_become_oci_ones() {
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("d")).unwrap();
        mknod(
            &root.join("d/gone"),
            SFlag::S_IFCHR,
            Mode::empty(),
            makedev(0, 0),
        )
        .unwrap();
        fs::create_dir(root.join("o")).unwrap();
        xattr::set(root.join("o"), OVERLAY_OPAQUE_XATTR, b"y").unwrap();
        xattr::set(root.join("o"), "trusted.overlay.origin", b"junk").unwrap();
        let mut out = Vec::new();
        pack(root, &mut out, &|_, _| false).unwrap();
        let names: Vec<_> = entries(&out).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["d", "d/.wh.gone", "o", "o/.wh..wh..opq"]);
        // Unpacked again, it is the same overlay tree.
        let back = tempfile::tempdir().unwrap();
        crate::layer::unpack(out.as_slice(), back.path(), "test").unwrap();
        let gone = fs::symlink_metadata(back.path().join("d/gone")).unwrap();
        assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
        let opaque = xattr::get(back.path().join("o"), OVERLAY_OPAQUE_XATTR).unwrap();
        assert_eq!(opaque.as_deref(), Some(&b"y"[..]));
    }
}
