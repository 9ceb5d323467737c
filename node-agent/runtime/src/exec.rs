//! A new process in a running container: it joins the namespaces of the container's
//! first process (`target`) and its cgroup, and runs with the process description given
//! (identity, capabilities, limits as the container's first process gets them).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};
use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::cgroup::Cgroup;
use crate::init::{self, StartError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Enter { what: String, source: nix::Error },
    #[error(transparent)]
    Fork(#[from] berth_sys::process::ForkError),
    #[error("{0}")]
    Start(StartError),
}

/// How the new process is attached to the caller.
#[derive(Clone, Copy, Debug, Default)]
pub struct Io {
    /// Return at once; the process gets /dev/null and a session of its own.
    pub detach: bool,
    /// The caller's stdin goes to the process.
    pub interactive: bool,
    /// The process gets a pseudo-terminal (not with `detach`).
    pub tty: bool,
}

const JOIN_ORDER: [(LinuxNamespaceType, &str, CloneFlags); 5] = [
    (
        LinuxNamespaceType::Cgroup,
        "cgroup",
        CloneFlags::CLONE_NEWCGROUP,
    ),
    (LinuxNamespaceType::Ipc, "ipc", CloneFlags::CLONE_NEWIPC),
    (LinuxNamespaceType::Uts, "uts", CloneFlags::CLONE_NEWUTS),
    (LinuxNamespaceType::Network, "net", CloneFlags::CLONE_NEWNET),
    // Last: after it, paths resolve inside the container.
    (LinuxNamespaceType::Mount, "mnt", CloneFlags::CLONE_NEWNS),
];

/// Runs `process` in the container whose first process is `target` (made from `spec`,
/// in `cgroup`) and returns its exit code (0 at once with `detach`).
/// The caller must be single-threaded: it forks.
pub fn exec(
    target: Pid,
    spec: &Spec,
    cgroup: &Cgroup,
    process: &Process,
    io: &Io,
) -> Result<i32, Error> {
    let enter = |what: &str| {
        let what = what.to_string();
        move |source| Error::Enter { what, source }
    };
    let pid = target;
    let spec_ns: Vec<LinuxNamespaceType> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .map(|ns| ns.iter().map(|n| n.typ()).collect())
        .unwrap_or_default();
    let mut joins: Vec<(OwnedFd, CloneFlags)> = Vec::new();
    for (typ, file, flag) in JOIN_ORDER {
        if spec_ns.contains(&typ) {
            let fd = open(
                format!("/proc/{pid}/ns/{file}").as_str(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(enter(&format!("opening its {file} namespace")))?;
            joins.push((fd, flag));
        }
    }
    // Joining the pid namespace affects only this process's later children: the one
    // forked below is born there. The caller's own namespace for children is restored
    // when `_restore` drops, so the caller can go on making containers.
    let _restore = match spec_ns.contains(&LinuxNamespaceType::Pid) {
        true => {
            let ns = |path: &str, what: &str| {
                open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(enter(what))
            };
            let own = ns(
                "/proc/self/ns/pid_for_children",
                "opening this process's pid namespace",
            )?;
            let theirs = ns(&format!("/proc/{pid}/ns/pid"), "opening its pid namespace")?;
            setns(theirs.as_fd(), CloneFlags::CLONE_NEWPID)
                .map_err(enter("joining its pid namespace"))?;
            Some(RestorePidNamespace(own))
        }
        false => None,
    };
    let (errors_r, errors_w) = pipe2(OFlag::O_CLOEXEC).map_err(enter("pipe"))?;
    let console = (io.tty && !io.detach)
        .then(crate::tty::console_socket)
        .transpose()
        .map_err(enter("console socket"))?;

    match berth_sys::process::fork(CloneFlags::empty())? {
        None => {
            drop(errors_r);
            let result = enter_and_exec(
                cgroup,
                &joins,
                process,
                io,
                console.as_ref().map(|(_, theirs)| theirs),
            );
            let err = match result {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = File::from(errors_w).write_all(&err.encode());
            berth_sys::process::exit_now(err.code)
        }
        Some(child) => {
            drop(errors_w);
            let mut report = Vec::new();
            let _ = File::from(errors_r).read_to_end(&mut report);
            if !report.is_empty() {
                let _ = waitpid(child, None);
                return Err(Error::Start(StartError::decode(&report)));
            }
            if io.detach {
                return Ok(0);
            }
            if let Some(master) = console.and_then(|(ours, theirs)| {
                drop(theirs);
                crate::tty::receive(&ours)
            }) {
                crate::tty::copy_size(master.as_fd());
                let stdin = berth_sys::fd::stdin();
                let _raw = io
                    .interactive
                    .then(|| crate::tty::RawMode::enter(stdin))
                    .flatten();
                crate::tty::proxy(&master, io.interactive);
            }
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => return Ok(code),
                    Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
                    Ok(_) | Err(nix::Error::EINTR) => continue,
                    Err(e) => return Err(enter("waiting for the process")(e)),
                }
            }
        }
    }
}

/// Puts the caller's namespace for new children back.
struct RestorePidNamespace(OwnedFd);

impl Drop for RestorePidNamespace {
    fn drop(&mut self) {
        let _ = setns(self.0.as_fd(), CloneFlags::CLONE_NEWPID);
    }
}

fn enter_and_exec(
    cgroup: &Cgroup,
    joins: &[(OwnedFd, CloneFlags)],
    process: &Process,
    io: &Io,
    console: Option<&OwnedFd>,
) -> Result<std::convert::Infallible, StartError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| StartError {
        code: init::EXIT_SETUP_FAILED,
        message: format!("{what}: {e}"),
    };
    let me = std::process::id().to_string();
    for dir in cgroup.joined_dirs() {
        fs::write(dir.join("cgroup.procs"), &me)
            .map_err(|e| fail("joining the container's cgroup", &e))?;
    }
    for (fd, flag) in joins {
        setns(fd.as_fd(), *flag).map_err(|e| fail(&format!("setns {flag:?}"), &e))?;
    }
    init::reset_signals();
    if let Some(console) = console {
        nix::unistd::setsid().map_err(|e| fail("setsid", &e))?;
        init::attach_terminal(console)?;
        return crate::program::exec_process(&berth_sys::syscall::Linux, process, false);
    }
    if !io.interactive || io.detach {
        let null = File::open("/dev/null").map_err(|e| fail("/dev/null", &e))?;
        nix::unistd::dup2_stdin(null.as_fd()).map_err(|e| fail("stdin", &e))?;
    }
    if io.detach {
        let null = File::options()
            .write(true)
            .open("/dev/null")
            .map_err(|e| fail("/dev/null", &e))?;
        nix::unistd::dup2_stdout(null.as_fd()).map_err(|e| fail("stdout", &e))?;
        nix::unistd::dup2_stderr(null.as_fd()).map_err(|e| fail("stderr", &e))?;
        let _ = nix::unistd::setsid();
    }
    crate::program::exec_process(&berth_sys::syscall::Linux, process, false)
}
