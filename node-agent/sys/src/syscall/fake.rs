//! A [`Syscall`] that changes nothing: it records each call with its arguments, keeps a
//! small map of the files the set-up asks about, and fails the calls it is told to.
//! For tests of code that would otherwise need root.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{AccessFlags, Gid, Uid};

use super::{CapSet, Capability, Error, FileKind, Result, Syscall};

/// One call that changes something, as [`RecordingSyscall`] saw it. Look-ups
/// (`file_kind`, `canonicalize`, `access`, `supported_capabilities`) are not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount2 {
        target: PathBuf,
        flags: MntFlags,
    },
    PivotRoot {
        new_root: PathBuf,
        put_old: PathBuf,
    },
    OpenTree {
        path: PathBuf,
        recursive: bool,
    },
    /// `tree` is the path the attached tree was opened from.
    MoveMount {
        tree: PathBuf,
        target: PathBuf,
    },
    MountSetattr {
        path: PathBuf,
        recursive: bool,
        set: u64,
    },
    Chdir(PathBuf),
    MkdirAll {
        path: PathBuf,
        mode: u32,
    },
    CreateFile(PathBuf),
    Mknod {
        path: PathBuf,
        kind: SFlag,
        mode: Mode,
        dev: u64,
    },
    Chmod {
        path: PathBuf,
        mode: u32,
    },
    Chown {
        path: PathBuf,
        uid: Option<Uid>,
        gid: Option<Gid>,
    },
    RemoveFile(PathBuf),
    Symlink {
        target: PathBuf,
        link: PathBuf,
    },
    Sethostname(String),
    Unshare(CloneFlags),
    Setsid,
    LoopbackUp,
    Setrlimit {
        resource: Resource,
        soft: u64,
        hard: u64,
    },
    SetKeepcaps(bool),
    Setgroups(Vec<Gid>),
    Setresgid(Gid),
    Setresuid(Uid),
    DropBounding(Capability),
    SetCapabilities {
        set: CapSet,
        caps: Vec<Capability>,
    },
    ClearAmbient,
    RaiseAmbient(Capability),
    SetNoNewPrivs,
    CloexecFrom(u32),
    Execve {
        program: String,
        argv: Vec<String>,
        envp: Vec<String>,
    },
}

type Matcher = Box<dyn Fn(&Call) -> bool + Send + Sync>;

/// Records calls instead of making them. A call a matcher given to [`fail_on`] accepts
/// is recorded, then fails with its errno. `execve` never replaces the process: it
/// fails with `ENOSYS` unless told otherwise.
///
/// [`fail_on`]: RecordingSyscall::fail_on
#[derive(Default)]
pub struct RecordingSyscall {
    calls: Mutex<Vec<Call>>,
    files: Mutex<HashMap<PathBuf, FileKind>>,
    resolved: HashMap<PathBuf, PathBuf>,
    failures: Vec<(Matcher, Errno)>,
    /// Which path each open tree was opened from, by fd.
    trees: Mutex<HashMap<RawFd, PathBuf>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding the lock has failed already; its data is
    // still what it recorded.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RecordingSyscall {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `path` exist as `kind` (for `file_kind` and `access`).
    pub fn with_file(self, path: impl Into<PathBuf>, kind: FileKind) -> Self {
        lock(&self.files).insert(path.into(), kind);
        self
    }

    /// Makes `canonicalize(path)` answer `real` (by default a path is its own).
    pub fn with_resolved(mut self, path: impl Into<PathBuf>, real: impl Into<PathBuf>) -> Self {
        self.resolved.insert(path.into(), real.into());
        self
    }

    /// Fails every call `matches` accepts with `errno`.
    pub fn fail_on(
        mut self,
        matches: impl Fn(&Call) -> bool + Send + Sync + 'static,
        errno: Errno,
    ) -> Self {
        self.failures.push((Box::new(matches), errno));
        self
    }

    /// The calls made so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// Where the first call `matches` accepts is in [`calls`](Self::calls).
    pub fn position(&self, matches: impl Fn(&Call) -> bool) -> Option<usize> {
        lock(&self.calls).iter().position(matches)
    }

    fn record(&self, call: Call) -> Result<()> {
        let failure = self.failures.iter().find(|(m, _)| m(&call)).map(|f| f.1);
        lock(&self.calls).push(call);
        match failure {
            Some(errno) => Err(Error::Errno(errno)),
            None => Ok(()),
        }
    }

    fn set_kind(&self, path: &Path, kind: FileKind) {
        lock(&self.files).insert(path.to_path_buf(), kind);
    }
}

fn owned(p: &Path) -> PathBuf {
    p.to_path_buf()
}

fn strings(v: &[CString]) -> Vec<String> {
    v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
}

impl Syscall for RecordingSyscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()> {
        self.record(Call::Mount {
            source: source.map(owned),
            target: owned(target),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        })
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> Result<()> {
        self.record(Call::Umount2 {
            target: owned(target),
            flags,
        })
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<()> {
        self.record(Call::PivotRoot {
            new_root: owned(new_root),
            put_old: owned(put_old),
        })
    }

    fn open_tree(&self, path: &Path, recursive: bool) -> Result<OwnedFd> {
        self.record(Call::OpenTree {
            path: owned(path),
            recursive,
        })?;
        // A real fd, so the caller can hold and lend it as it would a tree.
        let fd = OwnedFd::from(File::open("/dev/null")?);
        lock(&self.trees).insert(fd.as_raw_fd(), owned(path));
        Ok(fd)
    }

    fn move_mount(&self, tree: BorrowedFd<'_>, target: &Path) -> Result<()> {
        let source = lock(&self.trees)
            .get(&tree.as_raw_fd())
            .cloned()
            .unwrap_or_default();
        self.record(Call::MoveMount {
            tree: source,
            target: owned(target),
        })
    }

    fn mount_setattr(&self, path: &Path, recursive: bool, set: u64) -> Result<()> {
        self.record(Call::MountSetattr {
            path: owned(path),
            recursive,
            set,
        })
    }

    fn chdir(&self, path: &Path) -> Result<()> {
        self.record(Call::Chdir(owned(path)))
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> Result<()> {
        self.record(Call::MkdirAll {
            path: owned(path),
            mode,
        })?;
        for dir in path.ancestors().filter(|d| !d.as_os_str().is_empty()) {
            self.set_kind(dir, FileKind::Directory);
        }
        Ok(())
    }

    fn create_file(&self, path: &Path) -> Result<()> {
        self.record(Call::CreateFile(owned(path)))?;
        lock(&self.files)
            .entry(owned(path))
            .or_insert(FileKind::Regular);
        Ok(())
    }

    fn mknod(&self, path: &Path, kind: SFlag, mode: Mode, dev: u64) -> Result<()> {
        self.record(Call::Mknod {
            path: owned(path),
            kind,
            mode,
            dev,
        })?;
        self.set_kind(path, FileKind::Other);
        Ok(())
    }

    fn chmod(&self, path: &Path, mode: u32) -> Result<()> {
        self.record(Call::Chmod {
            path: owned(path),
            mode,
        })
    }

    fn chown(&self, path: &Path, uid: Option<Uid>, gid: Option<Gid>) -> Result<()> {
        self.record(Call::Chown {
            path: owned(path),
            uid,
            gid,
        })
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        self.record(Call::RemoveFile(owned(path)))?;
        match lock(&self.files).remove(path) {
            Some(_) => Ok(()),
            None => Err(Error::Errno(Errno::ENOENT)),
        }
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<()> {
        self.record(Call::Symlink {
            target: owned(target),
            link: owned(link),
        })?;
        match lock(&self.files).entry(owned(link)) {
            Entry::Occupied(_) => Err(Error::Errno(Errno::EEXIST)),
            Entry::Vacant(v) => {
                v.insert(FileKind::Symlink);
                Ok(())
            }
        }
    }

    fn file_kind(&self, path: &Path, _follow: bool) -> Result<FileKind> {
        lock(&self.files)
            .get(path)
            .copied()
            .ok_or(Error::Errno(Errno::ENOENT))
    }

    fn canonicalize(&self, path: &Path) -> Result<PathBuf> {
        Ok(self
            .resolved
            .get(path)
            .cloned()
            .unwrap_or_else(|| owned(path)))
    }

    fn access(&self, path: &Path, _mode: AccessFlags) -> Result<()> {
        self.file_kind(path, true).map(drop)
    }

    fn sethostname(&self, name: &str) -> Result<()> {
        self.record(Call::Sethostname(name.to_string()))
    }

    fn unshare(&self, flags: CloneFlags) -> Result<()> {
        self.record(Call::Unshare(flags))
    }

    fn setsid(&self) -> Result<()> {
        self.record(Call::Setsid)
    }

    fn loopback_up(&self) -> Result<()> {
        self.record(Call::LoopbackUp)
    }

    fn setrlimit(&self, resource: Resource, soft: u64, hard: u64) -> Result<()> {
        self.record(Call::Setrlimit {
            resource,
            soft,
            hard,
        })
    }

    fn set_keepcaps(&self, keep: bool) -> Result<()> {
        self.record(Call::SetKeepcaps(keep))
    }

    fn setgroups(&self, groups: &[Gid]) -> Result<()> {
        self.record(Call::Setgroups(groups.to_vec()))
    }

    fn setresgid(&self, gid: Gid) -> Result<()> {
        self.record(Call::Setresgid(gid))
    }

    fn setresuid(&self, uid: Uid) -> Result<()> {
        self.record(Call::Setresuid(uid))
    }

    fn supported_capabilities(&self) -> HashSet<Capability> {
        caps::all()
    }

    fn drop_bounding(&self, cap: Capability) -> Result<()> {
        self.record(Call::DropBounding(cap))
    }

    fn set_capabilities(&self, set: CapSet, value: &HashSet<Capability>) -> Result<()> {
        // Sorted, so that tests can compare calls.
        let mut caps: Vec<_> = value.iter().copied().collect();
        caps.sort_by_key(|c| c.index());
        self.record(Call::SetCapabilities { set, caps })
    }

    fn clear_ambient(&self) -> Result<()> {
        self.record(Call::ClearAmbient)
    }

    fn raise_ambient(&self, cap: Capability) -> Result<()> {
        self.record(Call::RaiseAmbient(cap))
    }

    fn set_no_new_privs(&self) -> Result<()> {
        self.record(Call::SetNoNewPrivs)
    }

    fn cloexec_from(&self, first: u32) -> Result<()> {
        self.record(Call::CloexecFrom(first))
    }

    fn execve(&self, program: &CString, argv: &[CString], envp: &[CString]) -> Errno {
        let call = Call::Execve {
            program: program.to_string_lossy().into_owned(),
            argv: strings(argv),
            envp: strings(envp),
        };
        match self.record(call) {
            Err(e) => e.errno().unwrap_or(Errno::ENOSYS),
            Ok(()) => Errno::ENOSYS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_calls_in_order_and_fails_the_ones_asked() {
        let sys = RecordingSyscall::new().fail_on(
            |c| matches!(c, Call::Chdir(p) if p == Path::new("/bad")),
            Errno::EACCES,
        );
        sys.sethostname("box").unwrap();
        sys.chdir(Path::new("/")).unwrap();
        let err = sys.chdir(Path::new("/bad")).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::EACCES));
        assert_eq!(
            sys.calls(),
            [
                Call::Sethostname("box".into()),
                Call::Chdir("/".into()),
                Call::Chdir("/bad".into()),
            ]
        );
    }

    #[test]
    fn trees_are_known_by_where_they_were_opened() {
        use std::os::fd::AsFd;
        let sys = RecordingSyscall::new();
        let a = sys.open_tree(Path::new("/srv/a"), true).unwrap();
        let b = sys.open_tree(Path::new("/srv/b"), false).unwrap();
        sys.move_mount(b.as_fd(), Path::new("/b")).unwrap();
        sys.move_mount(a.as_fd(), Path::new("/a")).unwrap();
        assert_eq!(
            sys.calls()[2..],
            [
                Call::MoveMount {
                    tree: "/srv/b".into(),
                    target: "/b".into()
                },
                Call::MoveMount {
                    tree: "/srv/a".into(),
                    target: "/a".into()
                },
            ]
        );
    }

    #[test]
    fn the_file_map_follows_what_was_made() {
        let sys = RecordingSyscall::new().with_file("/etc/hosts", FileKind::Regular);
        let kind = |p: &str| sys.file_kind(Path::new(p), false).ok();
        assert_eq!(kind("/etc/hosts"), Some(FileKind::Regular));
        assert_eq!(kind("/data"), None);
        sys.mkdir_all(Path::new("/data/x"), 0o755).unwrap();
        assert_eq!(kind("/data"), Some(FileKind::Directory));
        sys.symlink(Path::new("pts/ptmx"), Path::new("/dev/ptmx"))
            .unwrap();
        let again = sys.symlink(Path::new("pts/ptmx"), Path::new("/dev/ptmx"));
        assert_eq!(again.unwrap_err().errno(), Some(Errno::EEXIST));
        assert!(sys.remove_file(Path::new("/etc/hosts")).is_ok());
        assert_eq!(kind("/etc/hosts"), None);
    }
}
