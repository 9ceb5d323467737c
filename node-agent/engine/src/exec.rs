//! `berth exec`: a new process inside a running container's namespaces, cgroup and root
//! filesystem, with the container's capabilities and (unless `-u`) its user.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::pipe2;
use oci_spec::runtime::{LinuxNamespaceType, Process};

use crate::container::Container;
use crate::spec;
use berth_runtime::cgroup::Cgroup;
use berth_runtime::init::{self, StartError};
use berth_runtime::user;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error(transparent)]
    User(#[from] user::Error),
    #[error("entering container {name}: {what}: {source}")]
    Enter {
        name: String,
        what: String,
        source: nix::Error,
    },
    #[error("entering container {name}: {source}")]
    Fork {
        name: String,
        source: berth_sys::process::ForkError,
    },
    #[error(transparent)]
    Cgroup(#[from] berth_runtime::cgroup::Error),
    #[error("{0}")]
    Start(StartError),
}

impl Error {
    /// The exit code Docker gives for this failure (126/127 for exec problems).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Start(e) => e.code,
            _ => init::EXIT_SETUP_FAILED,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ExecOptions {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub detach: bool,
    pub interactive: bool,
    /// `-t`: the process gets a pseudo-terminal (not with `detach`).
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

/// Runs the process and returns its exit code (0 at once with `detach`).
/// The caller must be single-threaded: it forks.
pub fn exec(c: &Container, opts: &ExecOptions) -> Result<i32, Error> {
    let name = c.config.name.clone();
    let target = c
        .state
        .process
        .filter(|p| p.alive())
        .ok_or_else(|| Error::NotRunning(name.clone()))?;
    let enter = |what: &str| {
        let (name, what) = (name.clone(), what.to_string());
        move |source| Error::Enter { name, what, source }
    };
    let pid = target.pid();
    let base = c.config.spec.process().clone().unwrap_or_default();
    let process = exec_process(&base, opts, &format!("/proc/{pid}/root"))?;

    let spec_ns: Vec<LinuxNamespaceType> = c
        .config
        .spec
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
    let cgroup = c.cgroup()?;
    if spec_ns.contains(&LinuxNamespaceType::Pid) {
        // Affects only the children of this process: the one forked below is born there.
        let pid_ns = open(
            format!("/proc/{pid}/ns/pid").as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(enter("opening its pid namespace"))?;
        setns(pid_ns.as_fd(), CloneFlags::CLONE_NEWPID)
            .map_err(enter("joining its pid namespace"))?;
    }
    let (errors_r, errors_w) = pipe2(OFlag::O_CLOEXEC).map_err(enter("pipe"))?;
    let console = (opts.tty && !opts.detach)
        .then(berth_runtime::tty::console_socket)
        .transpose()
        .map_err(enter("console socket"))?;

    let forked = berth_sys::process::fork(CloneFlags::empty());
    let name = name.clone();
    match forked.map_err(|source| Error::Fork { name, source })? {
        None => {
            drop(errors_r);
            let result = enter_and_exec(
                &cgroup,
                &joins,
                &process,
                opts,
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
            if opts.detach {
                return Ok(0);
            }
            if let Some(master) = console.and_then(|(ours, theirs)| {
                drop(theirs);
                berth_runtime::tty::receive(&ours)
            }) {
                berth_runtime::tty::copy_size(master.as_fd());
                let stdin = berth_sys::fd::stdin();
                let _raw = opts
                    .interactive
                    .then(|| berth_runtime::tty::RawMode::enter(stdin))
                    .flatten();
                berth_runtime::tty::proxy(&master, opts.interactive);
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

fn enter_and_exec(
    cgroup: &Cgroup,
    joins: &[(OwnedFd, CloneFlags)],
    process: &Process,
    opts: &ExecOptions,
    console: Option<&OwnedFd>,
) -> Result<std::convert::Infallible, StartError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| StartError {
        code: init::EXIT_SETUP_FAILED,
        message: format!("{what}: {e}"),
    };
    let me = std::process::id().to_string();
    for dir in cgroup.dirs() {
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
        return init::exec_process(process, false);
    }
    if !opts.interactive || opts.detach {
        let null = File::open("/dev/null").map_err(|e| fail("/dev/null", &e))?;
        nix::unistd::dup2_stdin(null.as_fd()).map_err(|e| fail("stdin", &e))?;
    }
    if opts.detach {
        let null = File::options()
            .write(true)
            .open("/dev/null")
            .map_err(|e| fail("/dev/null", &e))?;
        nix::unistd::dup2_stdout(null.as_fd()).map_err(|e| fail("stdout", &e))?;
        nix::unistd::dup2_stderr(null.as_fd()).map_err(|e| fail("stderr", &e))?;
        let _ = nix::unistd::setsid();
    }
    init::exec_process(process, false)
}

/// The process to run: the container's, with `exec`'s arguments, extra environment,
/// working directory and user (resolved against the container's own /etc files).
fn exec_process(
    base: &Process,
    opts: &ExecOptions,
    container_root: &str,
) -> Result<Process, Error> {
    let mut p = base.clone();
    p.set_args(Some(opts.args.clone()));
    let hostname = base
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("HOSTNAME="))
        .unwrap_or("");
    let mut home = base
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("HOME="))
        .unwrap_or("/")
        .to_string();
    if let Some(u) = &opts.user {
        let read =
            |f: &str| fs::read_to_string(format!("{container_root}/etc/{f}")).unwrap_or_default();
        let resolved = user::resolve(u, &read("passwd"), &read("group"))?;
        home = resolved.home.clone();
        let user = p.user_mut();
        user.set_uid(resolved.uid);
        user.set_gid(resolved.gid);
        user.set_additional_gids(Some(resolved.additional_gids));
        let env: Vec<String> = base
            .env()
            .iter()
            .flatten()
            .filter(|e| !e.starts_with("HOME="))
            .cloned()
            .collect();
        p.set_env(Some(env));
    }
    let env = spec::environment(
        p.env().as_deref().unwrap_or_default(),
        &opts.env,
        hostname,
        &home,
    );
    p.set_env(Some(env));
    if let Some(w) = &opts.workdir {
        p.set_cwd(w.into());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::ProcessBuilder;

    #[test]
    fn exec_process_overrides_args_env_and_cwd() {
        let base = ProcessBuilder::default()
            .args(vec!["sleep".to_string(), "100".to_string()])
            .env(vec![
                "PATH=/bin".to_string(),
                "HOSTNAME=abc".to_string(),
                "HOME=/root".to_string(),
                "A=1".to_string(),
            ])
            .cwd("/srv")
            .build()
            .unwrap();
        let opts = ExecOptions {
            args: vec!["ps".into()],
            env: vec!["A=2".into(), "B=3".into()],
            workdir: Some("/tmp".into()),
            ..Default::default()
        };
        let p = exec_process(&base, &opts, "/nonexistent").unwrap();
        assert_eq!(p.args().as_deref().unwrap(), ["ps"]);
        assert_eq!(
            p.env().as_deref().unwrap(),
            ["PATH=/bin", "HOSTNAME=abc", "HOME=/root", "A=2", "B=3"]
        );
        assert_eq!(p.cwd().to_str(), Some("/tmp"));
    }
}
