//! The root filesystems a build works on directly (COPY, ADD, WORKDIR, and the sources of
//! `COPY --from`): overlay mounts in a mount namespace private to the build, so that
//! whatever way the build ends, the kernel takes its mounts down with it.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use tempfile::TempDir;

use crate::Error;

/// Moves this process into a mount namespace of its own where no mount propagates to the
/// host. Call it before any thread starts: a mount namespace is per thread until then.
pub fn private_namespace() -> Result<(), Error> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|source| Error::Mount {
        what: "making a private mount namespace for the build".into(),
        source,
    })?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|source| Error::Mount {
        what: "making the build's mounts private".into(),
        source,
    })
}

/// An overlay of unpacked layers, mounted until dropped. Writable layers put their
/// changes in `upper()`, which the caller packs once the mount is gone.
pub struct Rootfs {
    dir: TempDir,
    mounted: bool,
}

impl Rootfs {
    /// Mounts `layers` (lowest first) in a new directory under `tmp`, with a fresh upper
    /// directory when `writable`.
    pub fn mount(
        tmp: &Path,
        layers_dir: &Path,
        layers: &[PathBuf],
        writable: bool,
    ) -> Result<Rootfs, Error> {
        let dir = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(tmp)
            .map_err(|e| Error::io("creating a directory in", tmp, e))?;
        let mut rootfs = Rootfs {
            dir,
            mounted: false,
        };
        let mut subdirs = vec!["merged", "empty"];
        if writable {
            subdirs.extend(["upper", "work"]);
        }
        for d in subdirs {
            let p = rootfs.dir.path().join(d);
            fs::create_dir(&p).map_err(|e| Error::io("creating", &p, e))?;
        }
        if layers.is_empty() && !writable {
            // Nothing to see: the empty merged directory is the root.
            return Ok(rootfs);
        }
        let mut lower: Vec<String> = berth_image::without_repeats(layers)
            .iter()
            .rev()
            .map(|l| {
                l.strip_prefix(layers_dir)
                    .map_or_else(|_| l.display().to_string(), |r| r.display().to_string())
            })
            .collect();
        // overlayfs needs two lower layers to mount without an upper one, and one with.
        if lower.len() < if writable { 1 } else { 2 } {
            lower.push(rootfs.dir.path().join("empty").display().to_string());
        }
        // As for containers (see runtime::init): the upper directory holds whole changes.
        let mut options = format!("lowerdir={},redirect_dir=off,metacopy=off", lower.join(":"));
        if writable {
            let d = rootfs.dir.path();
            options += &format!(
                ",upperdir={},workdir={}",
                d.join("upper").display(),
                d.join("work").display()
            );
        }
        // Layer names relative to the layers directory keep the options within the page
        // mount(2) takes however deep the image.
        let cwd = std::env::current_dir().map_err(|e| Error::io("reading", ".", e))?;
        std::env::set_current_dir(layers_dir).map_err(|e| Error::io("entering", layers_dir, e))?;
        let merged = rootfs.root();
        let flags = if writable {
            MsFlags::empty()
        } else {
            MsFlags::MS_RDONLY
        };
        let result = mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            flags,
            Some(options.as_str()),
        );
        let _ = std::env::set_current_dir(cwd);
        result.map_err(|source| Error::Mount {
            what: format!(
                "mounting the root filesystem of a build step ({} layers)",
                layers.len()
            ),
            source,
        })?;
        rootfs.mounted = true;
        Ok(rootfs)
    }

    /// Where the merged tree is.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("merged")
    }

    /// Unmounts and returns the upper directory (still inside this `Rootfs`'s directory,
    /// which is removed on drop unless the caller moved the upper directory out).
    pub fn unmount(&mut self) -> Result<PathBuf, Error> {
        if self.mounted {
            umount2(&self.root(), MntFlags::empty()).map_err(|source| Error::Mount {
                what: "unmounting a build step's root filesystem".into(),
                source,
            })?;
            self.mounted = false;
        }
        Ok(self.dir.path().join("upper"))
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = umount2(&self.root(), MntFlags::MNT_DETACH);
        }
    }
}
