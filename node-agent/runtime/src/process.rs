//! A container's first process, started in the steps the OCI runtime spec has: `spawn`
//! clones it into its new namespaces, where it waits while the caller puts it in its
//! cgroup (and network); `set_up` lets it build its root filesystem, mounts, devices and
//! identity and stop just before `execve` (the container is *created*); `start` lets it
//! exec its program (*running*).
//!
//! The child reports over three pipes: `ready` (one byte once created), `errors`
//! (close-on-exec: end-of-file with nothing in it means the program is running), and a
//! start gate it reads one byte from. The gate is a pipe `Created::start` writes, or an
//! OCI bundle's exec fifo that another process opens later (see `bundle`).
//!
//! A `Spawned` or `Created` dropped before it was started kills and reaps the child:
//! nothing half-made outlives a failure.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{BorrowedFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{Pid, pipe2};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::init::{self, InitArgs, Rootfs, StartError};
use crate::tty;

/// What to start.
pub struct Launch<'a> {
    pub spec: &'a Spec,
    /// The overlay to mount as the root; `None`: the spec's `root.path` as it is.
    pub rootfs: Option<&'a Rootfs>,
    /// The process's stdin, stdout and stderr (ignored with a terminal, which the
    /// process makes itself when `process.terminal` is set).
    pub stdio: [BorrowedFd<'a>; 3],
    /// A gate that another process will open to start the container; `None`: a pipe
    /// that [`Created::start`] writes.
    pub gate: Option<OwnedFd>,
}

/// The namespaces the child is cloned into. The cgroup namespace is left out: the
/// child makes it once it is in its cgroup, so that the cgroup is its root.
pub fn clone_flags(spec: &Spec) -> CloneFlags {
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    namespaces
        .iter()
        .map(|ns| match ns.typ() {
            LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
            LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
            LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
            LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
            LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
            _ => CloneFlags::empty(),
        })
        .fold(CloneFlags::empty(), |all, f| all | f)
}

/// Kills and reaps `pid` unless disarmed: the child of a step that failed.
struct Child {
    pid: Pid,
    armed: bool,
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.armed {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// A child cloned into its namespaces, waiting to be let go.
pub struct Spawned {
    child: Child,
    go: File,
    ready: File,
    errors: File,
    start: Option<File>,
    console: Option<OwnedFd>,
}

/// Clones the container's first process. The caller must be single-threaded (checked:
/// `fork` refuses otherwise), so the child may run ordinary Rust code until it execs.
pub fn spawn(launch: Launch<'_>) -> Result<Spawned, StartError> {
    let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| StartError::setup("pipe", e));
    let terminal = launch.spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    // With a terminal, the child makes it from the container's /dev/ptmx and sends its
    // master side over this socket (see `tty`).
    let console = terminal
        .then(tty::console_socket)
        .transpose()
        .map_err(|e| StartError::setup("console socket", e))?;
    let (go_r, go_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let (errors_r, errors_w) = pipe()?;
    let (gate, start) = match launch.gate {
        Some(gate) => (gate, None),
        None => {
            let (r, w) = pipe()?;
            (r, Some(File::from(w)))
        }
    };
    let forked = berth_sys::process::fork(clone_flags(launch.spec));
    match forked.map_err(|e| StartError::setup("clone", e))? {
        None => init::container_init(InitArgs {
            spec: launch.spec,
            rootfs: launch.rootfs,
            stdio: launch.stdio,
            console: console.map(|(_, theirs)| theirs),
            go: go_r,
            ready: ready_w,
            start: gate,
            errors: errors_w,
        }),
        Some(pid) => Ok(Spawned {
            child: Child { pid, armed: true },
            go: File::from(go_w),
            ready: File::from(ready_r),
            errors: File::from(errors_r),
            start,
            console: console.map(|(ours, _)| ours),
        }),
    }
}

impl Spawned {
    pub fn pid(&self) -> Pid {
        self.child.pid
    }

    /// Lets the child set itself up (call once it is in its cgroup); returns when it
    /// is created and waits for start, or with why it failed.
    pub fn set_up(mut self) -> Result<Created, StartError> {
        self.go
            .write_all(b"g")
            .map_err(|e| StartError::setup("starting the container", e))?;
        let mut byte = [0u8; 1];
        if !matches!(self.ready.read(&mut byte), Ok(1)) {
            // It exited: the reason is on the error pipe.
            let _ = waitpid(self.child.pid, None);
            self.child.armed = false;
            let mut report = Vec::new();
            let _ = self.errors.read_to_end(&mut report);
            return Err(match report.is_empty() {
                true => StartError::setup("setting up the container", "its first process died"),
                false => StartError::decode(&report),
            });
        }
        // A terminal was sent before `ready`, so this does not wait.
        let terminal =
            match self.console.take() {
                Some(ours) => Some(tty::receive(&ours).ok_or_else(|| {
                    StartError::setup("the container's terminal", "never arrived")
                })?),
                None => None,
            };
        Ok(Created {
            child: Child {
                pid: self.child.pid,
                armed: std::mem::replace(&mut self.child.armed, false),
            },
            errors: self.errors,
            start: self.start,
            terminal,
        })
    }
}

/// A container set up and waiting for start.
pub struct Created {
    child: Child,
    errors: File,
    start: Option<File>,
    terminal: Option<OwnedFd>,
}

impl Created {
    pub fn pid(&self) -> Pid {
        self.child.pid
    }

    /// The master side of the container's terminal, when its spec asks for one.
    pub fn take_terminal(&mut self) -> Option<OwnedFd> {
        self.terminal.take()
    }

    /// Lets the process exec its program; returns once it has, or with why it could not
    /// (then the process is gone).
    pub fn start(mut self) -> Result<(), StartError> {
        let Some(mut gate) = self.start.take() else {
            return Err(StartError::setup(
                "starting the container",
                "it is started through its gate",
            ));
        };
        gate.write_all(b"s")
            .map_err(|e| StartError::setup("starting the container", e))?;
        let mut report = Vec::new();
        let _ = self.errors.read_to_end(&mut report);
        if !report.is_empty() {
            let _ = waitpid(self.child.pid, None);
            self.child.armed = false;
            return Err(StartError::decode(&report));
        }
        self.child.armed = false;
        Ok(())
    }

    /// Leaves the process created, to be started through its gate by another process.
    pub fn leave(mut self) -> Pid {
        self.child.armed = false;
        self.child.pid
    }
}
