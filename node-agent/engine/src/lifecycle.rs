//! Acting on existing containers from outside their monitor: signals, stop, wait and
//! removal. The container's process is addressed through a pidfd, so a recycled pid can
//! never receive a signal meant for a container that is gone.

use std::fs;
use std::os::fd::AsFd;
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;

use nix::sys::signal::Signal;

use crate::container::{self, Container, Liveness, Status};
use crate::paths::Paths;
use berth_runtime::pid::wait_exit;
use berth_sys::syscall as sys;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("cannot remove running container {0}: stop it first, or use rm -f")]
    Running(String),
    #[error("signalling container {name}: {source}")]
    Signal { name: String, source: Errno },
    #[error(transparent)]
    Container(#[from] container::Error),
    #[error(transparent)]
    Cgroup(#[from] berth_runtime::cgroup::Error),
    #[error(transparent)]
    Network(#[from] crate::endpoint::Error),
    #[error("removing container {name}: {source}")]
    Remove {
        name: String,
        source: std::io::Error,
    },
}

/// Sends `signal` to the container's first process.
pub fn kill(c: &Container, signal: Signal) -> Result<(), Error> {
    let pidfd = c
        .state
        .process
        .and_then(|p| p.open())
        .ok_or_else(|| Error::NotRunning(c.config.name.clone()))?;
    if signal == Signal::SIGKILL || c.config.stop_signal == signal.as_str() {
        mark_stopped(c)?;
    }
    sys::pidfd_send_signal(pidfd.as_fd(), signal).map_err(|source| Error::Signal {
        name: c.config.name.clone(),
        source,
    })
}

fn mark_stopped(c: &Container) -> Result<(), Error> {
    fs::write(c.stop_marker(), b"").map_err(|source| Error::Remove {
        name: c.config.name.clone(),
        source,
    })
}

/// `berth stop`: the stop signal, then SIGKILL after `timeout`; returns once the
/// container has exited and its exit is recorded. Stopping a stopped container is fine.
pub fn stop(paths: &Paths, c: &Container, timeout: Duration) -> Result<(), Error> {
    if !c.is_running() {
        return Ok(());
    }
    mark_stopped(c)?;
    let monitor = c.state.monitor.and_then(|p| p.open());
    if let Some(pidfd) = c.state.process.and_then(|p| p.open()) {
        let signal = crate::options::parse_signal(&c.config.stop_signal).unwrap_or(Signal::SIGTERM);
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), signal);
        if !wait_exit(&pidfd, timeout) {
            let _ = sys::pidfd_send_signal(pidfd.as_fd(), Signal::SIGKILL);
            wait_exit(&pidfd, Duration::from_secs(10));
        }
    }
    match monitor {
        // A monitor sleeping before a restart wakes up on SIGTERM and sees the marker.
        Some(m) => {
            let _ = sys::pidfd_send_signal(m.as_fd(), Signal::SIGTERM);
            wait_exit(&m, Duration::from_secs(10));
        }
        None => record_orphan_exit(paths, c)?,
    }
    Ok(())
}

/// The monitor is gone, so nobody could collect the exit status: record what is known
/// and release the cgroup. Callers judged the monitor dead from a state read earlier: a
/// monitor that recorded the exit and ended in between must not have its record
/// overwritten, so the state is read again (the monitor being dead, it no longer
/// changes).
fn record_orphan_exit(paths: &Paths, c: &Container) -> Result<(), Error> {
    let mut c = c.clone();
    match c.reload_state() {
        Err(container::Error::NotFound(_)) => return Ok(()),
        r => r?,
    }
    if !matches!(c.state.status, Status::Running | Status::Restarting) {
        return Ok(());
    }
    c.cgroup()?.remove()?;
    crate::endpoint::withdraw(paths, &c.dir)?;
    c.state.status = Status::Exited;
    c.state.process = None;
    c.state.finished_at = Some(SystemTime::now());
    c.state.error = Some("the container's monitor had died; its exit code is unknown".into());
    c.save_state()?;
    Ok(())
}

/// Containers whose monitor and first process are both gone without a recorded exit (a
/// crash, a reboot): their leftovers on the host (cgroup, published ports) are released
/// and they are recorded as exited. Every berth command starts with this, as a daemon
/// would at its start.
pub fn reap_dead(paths: &Paths) -> Result<(), Error> {
    // Only states are read: the whole record (the OCI spec within) of the rare dead one.
    for id in container::ids(paths)? {
        let dead = container::load_state(paths, &id).is_ok_and(|s| s.liveness() == Liveness::Dead);
        if dead {
            match container::load(paths, &id) {
                Ok(c) => record_orphan_exit(paths, &c)?,
                Err(container::Error::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// `berth rm`: refuses a running container unless `force`, which kills it first.
pub fn remove(paths: &Paths, c: &Container, force: bool) -> Result<(), Error> {
    if c.is_running() {
        if !force {
            return Err(Error::Running(c.config.name.clone()));
        }
        stop(paths, c, Duration::ZERO)?;
    } else if c.liveness() == Liveness::Dead {
        record_orphan_exit(paths, c)?;
    }
    // A foreground or --rm monitor may still be finishing; it must not outlive the files.
    if let Some(m) = c.state.monitor.and_then(|p| p.open()) {
        wait_exit(&m, Duration::from_secs(10));
    }
    remove_files(paths, c)
}

/// Deletes the container's directory (upper layer, logs, state). Nothing is mounted on
/// the host for a container: its root filesystem lives only in its own mount namespace.
pub fn remove_files(paths: &Paths, c: &Container) -> Result<(), Error> {
    crate::endpoint::release(paths, &c.dir, &c.config.id)?;
    match fs::remove_dir_all(&c.dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Remove {
            name: c.config.name.clone(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// `berth wait`: blocks until the container is not running and returns its exit code.
pub fn wait(paths: &Paths, c: &Container) -> Result<i32, Error> {
    let mut c = c.clone();
    loop {
        match c.liveness() {
            Liveness::Exited | Liveness::Created => {
                return Ok(c.state.exit_code.unwrap_or(-1));
            }
            Liveness::Dead => {
                // Liveness is read from /proc after the state: a monitor that recorded
                // the exit and ended in between looks dead with the older state.
                match c.reload_state() {
                    Err(container::Error::NotFound(_)) => {}
                    r => r?,
                }
                return Ok(c.state.exit_code.unwrap_or(-1));
            }
            Liveness::RunningWithoutMonitor => {
                if let Some(p) = c.state.process.and_then(|p| p.open()) {
                    wait_exit(&p, Duration::from_secs(3600 * 24 * 365));
                }
                record_orphan_exit(paths, &c)?;
                return Ok(-1);
            }
            Liveness::Running | Liveness::Restarting => {
                // The monitor writes the state when the process exits; wait for that.
                match c.state.process.and_then(|p| p.open()) {
                    Some(p) => {
                        wait_exit(&p, Duration::from_secs(3600 * 24 * 365));
                    }
                    None => std::thread::sleep(Duration::from_millis(20)),
                }
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    match c.reload_state() {
                        Err(container::Error::NotFound(_)) => {
                            return Ok(c.state.exit_code.unwrap_or(0));
                        }
                        r => r?,
                    }
                    if c.state.status != Status::Running || Instant::now() > deadline {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                if c.state.status == Status::Exited || c.state.status == Status::Restarting {
                    return Ok(c.state.exit_code.unwrap_or(-1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::{Config, LogOptions, RestartPolicy, State};
    use berth_runtime::init::Rootfs;

    fn container(paths: &Paths) -> Container {
        let config = Config {
            id: "c0ffee".into(),
            name: "orphan".into(),
            created: SystemTime::now(),
            image: "base".into(),
            image_id: "sha256:0".into(),
            rootfs: Rootfs {
                layers_dir: "/nonexistent".into(),
                layers: vec![],
                upper: "/nonexistent".into(),
                work: "/nonexistent".into(),
                merged: "/nonexistent".into(),
            },
            spec: Default::default(),
            restart: RestartPolicy::No,
            auto_remove: false,
            stop_signal: "SIGTERM".into(),
            stop_timeout: 10,
            log: LogOptions::default(),
            network: berth_net::NetworkMode::None,
            mounts: vec![],
            interactive: false,
            labels: Default::default(),
        };
        container::create(paths, &config).unwrap()
    }

    #[test]
    fn an_exit_the_monitor_recorded_meanwhile_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::at(dir.path().join("root"), dir.path().join("run"));
        let mut stale = container(&paths);
        stale.state.status = Status::Running;
        // The monitor records the exit after the caller read the state, then ends.
        let recorded = State {
            status: Status::Exited,
            exit_code: Some(0),
            ..State::default()
        };
        container::save_state(&stale.dir, "c0ffee", &recorded).unwrap();

        record_orphan_exit(&paths, &stale).unwrap();
        let now = container::load(&paths, "c0ffee").unwrap();
        assert_eq!(now.state.status, Status::Exited);
        assert_eq!(now.state.exit_code, Some(0), "the monitor's record stands");
        assert_eq!(now.state.error, None);
    }
}
