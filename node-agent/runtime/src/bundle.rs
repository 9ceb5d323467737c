//! OCI bundles the way runc runs them: `create` sets a container up from a bundle
//! directory (its `config.json` and root filesystem) and leaves its first process
//! waiting just before `execve`; `start` lets it run; `state`, `kill` and `delete` as the
//! OCI runtime spec defines them. Each container's record is `<root>/<id>/state.json`;
//! its start gate is the fifo `exec.fifo` beside it, which the waiting process holds
//! open read-write, so `start` can open it from any process.
//!
//! The caller of `create` becomes the parent of the container's process (and must be
//! single-threaded: it forks). A process that outlives its parent is reparented as
//! usual; one whose parent lives on stays a zombie until that parent reaps it, and a
//! zombie counts as stopped.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitPidFlag, waitpid};
use oci_spec::runtime::{ContainerState, Process, Spec, State, StateBuilder};
use serde::{Deserialize, Serialize};

use crate::cgroup::{self, Cgroup, Hierarchy};
use crate::init::StartError;
use crate::pid::{ProcessRef, wait_exit};
use crate::process::{self, Launch};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "invalid container id {0:?}: use letters, digits, '_', '.' and '-', starting with a \
         letter or digit"
    )]
    InvalidId(String),
    #[error("container {0} exists already: delete it first, or choose another id")]
    Exists(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("reading the bundle's {path}: {source}")]
    Bundle {
        path: PathBuf,
        source: oci_spec::OciSpecError,
    },
    #[error("container {id} is {status}: {action} needs a {needs} container")]
    State {
        id: String,
        status: ContainerState,
        action: &'static str,
        needs: &'static str,
    },
    #[error("container {id}: {what}: {source}")]
    Io {
        id: String,
        what: String,
        source: io::Error,
    },
    #[error("container {id}: {source}")]
    Cgroup { id: String, source: cgroup::Error },
    #[error("container {id}: {source}")]
    Start { id: String, source: StartError },
    #[error("container {id}: sending {signal}: {source}")]
    Signal {
        id: String,
        signal: Signal,
        source: Errno,
    },
    #[error("container {id}: {source}")]
    Exec {
        id: String,
        source: crate::exec::Error,
    },
}

/// What the runtime keeps of a container between commands.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    id: String,
    bundle: PathBuf,
    /// `created` or `running`: what it was last told; the process's liveness decides
    /// whether it is stopped.
    status: ContainerState,
    process: ProcessRef,
    cgroup: String,
}

/// Containers under one state directory (runc's `--root`).
pub struct Runtime {
    root: PathBuf,
    /// Where containers whose spec names no cgroup get theirs (`<parent>/<id>`).
    cgroup_parent: String,
}

const STATE: &str = "state.json";
const GATE: &str = "exec.fifo";
const KILL_WAIT: Duration = Duration::from_secs(10);

impl Runtime {
    pub fn new(root: impl Into<PathBuf>, cgroup_parent: impl Into<String>) -> Runtime {
        Runtime {
            root: root.into(),
            cgroup_parent: cgroup_parent.into(),
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Sets up the container `id` from the bundle at `bundle`, its process waiting for
    /// `start` with `stdio` as its standard streams.
    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        stdio: [BorrowedFd<'_>; 3],
    ) -> Result<State, Error> {
        if !berth_sys::record::is_valid_name(id) {
            return Err(Error::InvalidId(id.to_string()));
        }
        let dir = self.dir(id);
        let io = |what: &str| {
            let (id, what) = (id.to_string(), what.to_string());
            move |source| Error::Io { id, what, source }
        };
        fs::create_dir_all(&self.root).map_err(io("creating the state directory"))?;
        match fs::create_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists(id.to_string()));
            }
            r => r.map_err(io("creating its state directory"))?,
        }
        let record = self.set_up(id, &dir, bundle, stdio);
        match record {
            Ok(record) => Ok(state(&record, ContainerState::Created)),
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                Err(e)
            }
        }
    }

    fn set_up(
        &self,
        id: &str,
        dir: &Path,
        bundle: &Path,
        stdio: [BorrowedFd<'_>; 3],
    ) -> Result<Record, Error> {
        let io = |what: &str| {
            let (id, what) = (id.to_string(), what.to_string());
            move |source| Error::Io { id, what, source }
        };
        let bundle = bundle
            .canonicalize()
            .map_err(io(&format!("finding the bundle {}", bundle.display())))?;
        let spec = load_spec(&bundle)?;
        let cgroup_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().trim_start_matches('/').to_string())
            .unwrap_or_else(|| format!("{}/{id}", self.cgroup_parent));
        let cgroup_err = |source| Error::Cgroup {
            id: id.to_string(),
            source,
        };
        let cgroup = cgroup_of(id, &cgroup_path)?;
        let resources = spec.linux().as_ref().and_then(|l| l.resources().as_ref());
        cgroup.create(resources).map_err(cgroup_err)?;
        let made = (|| {
            let gate = make_gate(&dir.join(GATE)).map_err(io("making the start gate"))?;
            let start_err = |source| Error::Start {
                id: id.to_string(),
                source,
            };
            let spawned = process::spawn(Launch {
                spec: &spec,
                rootfs: None,
                stdio,
                gate: Some(gate),
            })
            .map_err(start_err)?;
            cgroup.add(spawned.pid()).map_err(cgroup_err)?;
            let pid = spawned.set_up().map_err(start_err)?.leave();
            let process = ProcessRef::of(pid).ok_or_else(|| Error::Start {
                id: id.to_string(),
                source: StartError::setup("the container's process", "exited at once"),
            })?;
            let record = Record {
                id: id.to_string(),
                bundle,
                status: ContainerState::Created,
                process,
                cgroup: cgroup_path.clone(),
            };
            save(dir, &record)?;
            Ok(record)
        })();
        if made.is_err() {
            let _ = cgroup.remove();
        }
        made
    }

    fn load(&self, id: &str) -> Result<Record, Error> {
        let path = self.dir(id).join(STATE);
        let data = match fs::read(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()));
            }
            r => r.map_err(|source| Error::Io {
                id: id.to_string(),
                what: "reading its state".into(),
                source,
            })?,
        };
        serde_json::from_slice(&data).map_err(|e| Error::Io {
            id: id.to_string(),
            what: format!("reading {}", path.display()),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })
    }

    /// The container's OCI state.
    pub fn state(&self, id: &str) -> Result<State, Error> {
        let record = self.load(id)?;
        Ok(state(&record, status(&record)))
    }

    /// Lets a created container's process exec its program.
    pub fn start(&self, id: &str) -> Result<(), Error> {
        let mut record = self.load(id)?;
        require(&record, "start", ContainerState::Created)?;
        let gate = self.dir(id).join(GATE);
        // Non-blocking: with no reader (the process is gone) this fails at once.
        let opened = OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open(&gate)
            .and_then(|mut f| f.write_all(b"s"));
        opened.map_err(|source| Error::Io {
            id: id.to_string(),
            what: "opening its start gate".into(),
            source,
        })?;
        let _ = fs::remove_file(&gate);
        record.status = ContainerState::Running;
        save(&self.dir(id), &record)
    }

    /// Sends `signal` to the container's process (created or running).
    pub fn kill(&self, id: &str, signal: Signal) -> Result<(), Error> {
        let record = self.load(id)?;
        let pidfd = record.process.open().ok_or_else(|| Error::State {
            id: id.to_string(),
            status: ContainerState::Stopped,
            action: "kill",
            needs: "created or running",
        })?;
        signal_pidfd(id, &pidfd, signal)
    }

    /// Removes a stopped or created container (a created one is killed); a running one
    /// only with `force`, which kills it first.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), Error> {
        let record = self.load(id)?;
        if status(&record) == ContainerState::Running && !force {
            return require(&record, "delete without force", ContainerState::Stopped);
        }
        if let Some(pidfd) = record.process.open() {
            signal_pidfd(id, &pidfd, Signal::SIGKILL)?;
            if !wait_exit(&pidfd, KILL_WAIT) {
                return Err(Error::Io {
                    id: id.to_string(),
                    what: "waiting for its process to die".into(),
                    source: io::Error::from(io::ErrorKind::TimedOut),
                });
            }
        }
        // Reap it if it is ours (a caller that created and deletes in one process).
        let _ = waitpid(record.process.pid(), Some(WaitPidFlag::WNOHANG));
        cgroup_of(id, &record.cgroup)?
            .remove()
            .map_err(|source| Error::Cgroup {
                id: id.to_string(),
                source,
            })?;
        fs::remove_dir_all(self.dir(id)).map_err(|source| Error::Io {
            id: id.to_string(),
            what: "removing its state".into(),
            source,
        })
    }

    /// Runs `process` in the running container and returns its exit code.
    pub fn exec(&self, id: &str, process: &Process, io: &crate::exec::Io) -> Result<i32, Error> {
        let record = self.load(id)?;
        require(&record, "exec", ContainerState::Running)?;
        let spec = load_spec(&record.bundle)?;
        let cgroup = cgroup_of(id, &record.cgroup)?;
        crate::exec::exec(record.process.pid(), &spec, &cgroup, process, io).map_err(|source| {
            Error::Exec {
                id: id.to_string(),
                source,
            }
        })
    }
}

/// The bundle's spec, with its root path made absolute (it is relative to the bundle).
fn load_spec(bundle: &Path) -> Result<Spec, Error> {
    let path = bundle.join("config.json");
    let mut spec = Spec::load(&path).map_err(|source| Error::Bundle { path, source })?;
    if let Some(mut root) = spec.root().clone() {
        root.set_path(bundle.join(root.path()));
        spec.set_root(Some(root));
    }
    Ok(spec)
}

/// The fifo `start` writes to, opened read-write: the process that waits on it is then
/// a reader whatever else happens, and its own writer, so its read blocks instead of
/// seeing end-of-file.
fn make_gate(path: &Path) -> io::Result<OwnedFd> {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600))?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_CLOEXEC)
        .open(path)?;
    Ok(file.into())
}

/// The container's cgroup at `path` on this host's hierarchy.
fn cgroup_of(id: &str, path: &str) -> Result<Cgroup, Error> {
    let hierarchy = Hierarchy::detect().map_err(|source| Error::Cgroup {
        id: id.to_string(),
        source,
    })?;
    Ok(Cgroup::new(hierarchy, path))
}

fn signal_pidfd(id: &str, pidfd: &OwnedFd, signal: Signal) -> Result<(), Error> {
    berth_sys::syscall::pidfd_send_signal(pidfd.as_fd(), signal).map_err(|source| Error::Signal {
        id: id.to_string(),
        signal,
        source,
    })
}

fn save(dir: &Path, record: &Record) -> Result<(), Error> {
    let data = serde_json::to_vec_pretty(record).expect("records serialize");
    berth_sys::fs::write_atomic(&dir.join(STATE), &data, false).map_err(|source| Error::Io {
        id: record.id.clone(),
        what: "saving its state".into(),
        source,
    })
}

/// What the container is now: its recorded status while its process lives.
fn status(record: &Record) -> ContainerState {
    match record.process.alive() {
        true => record.status,
        false => ContainerState::Stopped,
    }
}

fn require(record: &Record, action: &'static str, needs: ContainerState) -> Result<(), Error> {
    let now = status(record);
    match now == needs {
        true => Ok(()),
        false => Err(Error::State {
            id: record.id.clone(),
            status: now,
            action,
            needs: match needs {
                ContainerState::Created => "created",
                ContainerState::Running => "running",
                _ => "stopped",
            },
        }),
    }
}

fn state(record: &Record, status: ContainerState) -> State {
    StateBuilder::default()
        .version(oci_spec::runtime::VERSION)
        .id(record.id.clone())
        .status(status)
        .pid(record.process.pid)
        .bundle(record.bundle.clone())
        .build()
        .expect("every field of the state is set")
}
