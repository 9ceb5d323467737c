//! The system calls a container's first process makes while it sets itself up, behind
//! the [`Syscall`] trait: [`Linux`] makes them, [`RecordingSyscall`] records them (with
//! their arguments, in order) so that the set-up can be tested without root. Also the
//! raw calls `nix` does not wrap ([`raw`]), re-exported here.

mod fake;
mod linux;
pub mod raw;

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{AccessFlags, Gid, Uid};

pub use caps::Capability;
pub use fake::{Call, RecordingSyscall};
pub use linux::Linux;
pub use raw::*;

/// A failed system call. Each variant displays as its source does, so messages read
/// the same whichever layer reports them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Errno(#[from] Errno),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Caps(#[from] caps::errors::CapsError),
}

impl Error {
    /// The `errno` behind the failure, when there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Errno(e) => Some(*e),
            Error::Io(e) => e.raw_os_error().map(Errno::from_raw),
            Error::Caps(_) => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// What a path names, as far as the set-up cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Regular,
    Symlink,
    /// A device, fifo or socket.
    Other,
}

/// The capability sets a process changes whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapSet {
    Effective,
    Permitted,
    Inheritable,
}

/// The calls a container's process makes between `clone` and `execve`, the ones that
/// change something and the few look-ups whose answers steer the set-up. Paths are
/// resolved as the kernel would, relative to the caller's cwd and root.
pub trait Syscall {
    // Mounts.
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()>;
    fn umount2(&self, target: &Path, flags: MntFlags) -> Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<()>;
    /// A detached copy of the mount tree at `path`, to be attached with `move_mount`.
    fn open_tree(&self, path: &Path, recursive: bool) -> Result<OwnedFd>;
    fn move_mount(&self, tree: BorrowedFd<'_>, target: &Path) -> Result<()>;
    /// Sets `MOUNT_ATTR_*` flags on the mount at `path` (and below it if `recursive`).
    fn mount_setattr(&self, path: &Path, recursive: bool, set: u64) -> Result<()>;

    // Files.
    fn chdir(&self, path: &Path) -> Result<()>;
    /// Creates `path` and its missing parents with `mode` (less the umask).
    fn mkdir_all(&self, path: &Path, mode: u32) -> Result<()>;
    /// Creates an empty file at `path` unless one is there.
    fn create_file(&self, path: &Path) -> Result<()>;
    fn mknod(&self, path: &Path, kind: SFlag, mode: Mode, dev: u64) -> Result<()>;
    fn chmod(&self, path: &Path, mode: u32) -> Result<()>;
    fn chown(&self, path: &Path, uid: Option<Uid>, gid: Option<Gid>) -> Result<()>;
    fn remove_file(&self, path: &Path) -> Result<()>;
    fn symlink(&self, target: &Path, link: &Path) -> Result<()>;
    /// What `path` names, following symlinks if `follow`.
    fn file_kind(&self, path: &Path, follow: bool) -> Result<FileKind>;
    fn canonicalize(&self, path: &Path) -> Result<PathBuf>;
    fn access(&self, path: &Path, mode: AccessFlags) -> Result<()>;

    // The process.
    fn sethostname(&self, name: &str) -> Result<()>;
    fn unshare(&self, flags: CloneFlags) -> Result<()>;
    fn setsid(&self) -> Result<()>;
    /// Brings up `lo` in the caller's network namespace.
    fn loopback_up(&self) -> Result<()>;
    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> Result<()>;
    fn set_keepcaps(&self, keep: bool) -> Result<()>;
    fn setgroups(&self, groups: &[Gid]) -> Result<()>;
    /// Sets the real, effective and saved gid.
    fn setresgid(&self, gid: Gid) -> Result<()>;
    /// Sets the real, effective and saved uid.
    fn setresuid(&self, uid: Uid) -> Result<()>;
    /// The capabilities this kernel knows.
    fn supported_capabilities(&self) -> HashSet<Capability>;
    fn drop_bounding(&self, cap: Capability) -> Result<()>;
    fn set_capabilities(&self, set: CapSet, caps: &HashSet<Capability>) -> Result<()>;
    fn clear_ambient(&self) -> Result<()>;
    fn raise_ambient(&self, cap: Capability) -> Result<()>;
    fn set_no_new_privs(&self) -> Result<()>;
    /// Marks every fd from `first` up close-on-exec.
    fn cloexec_from(&self, first: u32) -> Result<()>;
    /// Replaces the process with `program`; returns only on failure.
    fn execve(&self, program: &CString, argv: &[CString], envp: &[CString]) -> Errno;
}
