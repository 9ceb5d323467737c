//! [`Syscall`] as the kernel does it.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{AccessFlags, Gid, Uid};

use super::{CapSet, Capability, FileKind, Result, Syscall, raw};

/// The real system calls.
#[derive(Debug, Default, Clone, Copy)]
pub struct Linux;

impl Syscall for Linux {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()> {
        Ok(nix::mount::mount(source, target, fstype, flags, data)?)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> Result<()> {
        Ok(nix::mount::umount2(target, flags)?)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<()> {
        Ok(nix::unistd::pivot_root(new_root, put_old)?)
    }

    fn open_tree(&self, path: &Path, recursive: bool) -> Result<OwnedFd> {
        Ok(raw::open_tree(path, recursive)?)
    }

    fn move_mount(&self, tree: BorrowedFd<'_>, target: &Path) -> Result<()> {
        Ok(raw::move_mount(tree, target)?)
    }

    fn mount_setattr(&self, path: &Path, recursive: bool, set: u64) -> Result<()> {
        Ok(raw::mount_setattr(path, recursive, set)?)
    }

    fn chdir(&self, path: &Path) -> Result<()> {
        Ok(nix::unistd::chdir(path)?)
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> Result<()> {
        Ok(fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)?)
    }

    fn create_file(&self, path: &Path) -> Result<()> {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        Ok(())
    }

    fn mknod(&self, path: &Path, kind: SFlag, mode: Mode, dev: u64) -> Result<()> {
        Ok(nix::sys::stat::mknod(path, kind, mode, dev)?)
    }

    fn chmod(&self, path: &Path, mode: u32) -> Result<()> {
        Ok(fs::set_permissions(path, fs::Permissions::from_mode(mode))?)
    }

    fn chown(&self, path: &Path, uid: Option<Uid>, gid: Option<Gid>) -> Result<()> {
        Ok(nix::unistd::chown(path, uid, gid)?)
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        Ok(fs::remove_file(path)?)
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<()> {
        Ok(std::os::unix::fs::symlink(target, link)?)
    }

    fn file_kind(&self, path: &Path, follow: bool) -> Result<FileKind> {
        let meta = match follow {
            true => fs::metadata(path)?,
            false => fs::symlink_metadata(path)?,
        };
        let t = meta.file_type();
        Ok(if t.is_dir() {
            FileKind::Directory
        } else if t.is_file() {
            FileKind::Regular
        } else if t.is_symlink() {
            FileKind::Symlink
        } else {
            FileKind::Other
        })
    }

    fn canonicalize(&self, path: &Path) -> Result<PathBuf> {
        Ok(fs::canonicalize(path)?)
    }

    fn access(&self, path: &Path, mode: AccessFlags) -> Result<()> {
        Ok(nix::unistd::access(path, mode)?)
    }

    fn sethostname(&self, name: &str) -> Result<()> {
        Ok(nix::unistd::sethostname(name)?)
    }

    fn unshare(&self, flags: CloneFlags) -> Result<()> {
        Ok(nix::sched::unshare(flags)?)
    }

    fn setsid(&self) -> Result<()> {
        nix::unistd::setsid()?;
        Ok(())
    }

    fn loopback_up(&self) -> Result<()> {
        Ok(crate::net::loopback_up()?)
    }

    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> Result<()> {
        Ok(nix::sys::resource::setrlimit(resource, soft, hard)?)
    }

    fn set_keepcaps(&self, keep: bool) -> Result<()> {
        Ok(nix::sys::prctl::set_keepcaps(keep)?)
    }

    fn setgroups(&self, groups: &[Gid]) -> Result<()> {
        Ok(nix::unistd::setgroups(groups)?)
    }

    fn setresgid(&self, gid: Gid) -> Result<()> {
        Ok(nix::unistd::setresgid(gid, gid, gid)?)
    }

    fn setresuid(&self, uid: Uid) -> Result<()> {
        Ok(nix::unistd::setresuid(uid, uid, uid)?)
    }

    fn supported_capabilities(&self) -> HashSet<Capability> {
        caps::runtime::thread_all_supported()
    }

    fn drop_bounding(&self, cap: Capability) -> Result<()> {
        Ok(caps::drop(None, caps::CapSet::Bounding, cap)?)
    }

    fn set_capabilities(&self, set: CapSet, value: &HashSet<Capability>) -> Result<()> {
        let set = match set {
            CapSet::Effective => caps::CapSet::Effective,
            CapSet::Permitted => caps::CapSet::Permitted,
            CapSet::Inheritable => caps::CapSet::Inheritable,
        };
        Ok(caps::set(None, set, value)?)
    }

    fn clear_ambient(&self) -> Result<()> {
        Ok(caps::clear(None, caps::CapSet::Ambient)?)
    }

    fn raise_ambient(&self, cap: Capability) -> Result<()> {
        Ok(caps::raise(None, caps::CapSet::Ambient, cap)?)
    }

    fn set_no_new_privs(&self) -> Result<()> {
        Ok(nix::sys::prctl::set_no_new_privs()?)
    }

    fn cloexec_from(&self, first: u32) -> Result<()> {
        Ok(raw::cloexec_from(first)?)
    }

    fn execve(&self, program: &CString, argv: &[CString], envp: &[CString]) -> Errno {
        match nix::unistd::execve(program, argv, envp) {
            Err(e) => e,
            Ok(never) => match never {},
        }
    }
}
