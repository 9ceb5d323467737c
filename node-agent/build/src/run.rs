//! RUN: the command runs in a container of the step's root filesystem, made and started
//! by the runtime like any other (a detached monitor owns it, so this process may have
//! threads); its output is followed in its log, and its upper directory is the step's
//! layer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::image::Config;

use crate::Error;
use berth_engine::Paths;
use berth_engine::container::Container;
use berth_engine::create::{self, Base, CreateOptions};
use berth_engine::logs::{Entry, Follower, Stream};
use berth_engine::options::VolumeSpec;
use berth_engine::{lifecycle, monitor};
use berth_net::NetworkMode;
use berth_sys::fs::random_hex;

/// Where the runtime mounts something over the root filesystem: when a step's upper
/// directory has one of these only because the runtime made it, it is not the step's.
pub const MOUNT_POINTS: &[&str] = &[
    "dev",
    "proc",
    "sys",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
];

pub use berth_sys::signal::{catch_interrupts, interrupted};

/// A step's container; removed when dropped, whatever happened.
struct StepContainer<'a> {
    paths: &'a Paths,
    container: Container,
}

impl Drop for StepContainer<'_> {
    fn drop(&mut self) {
        // As the monitor has it now: running (to be killed) or exited, and which monitor
        // to wait for.
        let _ = self.container.reload_state();
        let _ = lifecycle::remove(self.paths, &self.container, true);
    }
}

/// How the command ended.
pub enum Outcome {
    /// Exit code 0; its changes are in this directory (moved out of the container into
    /// the caller's `keep` directory, on the same filesystem as the layers).
    Succeeded(PathBuf),
    /// It exited with this code, or could not start (126, 127).
    Failed(i32),
}

/// Runs `config`'s command (its `Cmd`) on `layers`, with `volumes` mounted, and calls
/// `output` with each line it prints.
pub fn run(
    paths: &Paths,
    layers: &[PathBuf],
    config: &Config,
    network: NetworkMode,
    volumes: Vec<VolumeSpec>,
    keep: &Path,
    output: &mut dyn FnMut(&Entry),
) -> Result<Outcome, Error> {
    let name = format!("berth-build-{}", random_hex(6));
    let opts = CreateOptions {
        name: Some(name.clone()),
        image: "(build step)".into(),
        network: Some(network),
        volumes,
        ..Default::default()
    };
    let base = Base {
        image_id: "",
        config: Some(config),
        layers,
    };
    let container = create::create_on(paths, &opts, &base)?;
    let step = StepContainer { paths, container };
    let mut follower = Follower::at_end(&step.container.log_path())
        .map_err(|e| Error::io("reading the output of", step.container.log_path(), e))?;
    match monitor::spawn_detached(paths, &step.container) {
        Ok(()) => {}
        Err(monitor::SpawnError::Start(e)) => {
            // A command that cannot start (not found, not executable) fails like one
            // that ran: its message is its output.
            output(&Entry {
                log: format!("{}\n", e.message),
                stream: Stream::Stderr,
                time: String::new(),
            });
            return Ok(Outcome::Failed(e.code));
        }
        Err(source) => {
            return Err(Error::StartStep {
                container: name,
                source,
            });
        }
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    {
        let paths = paths.clone();
        let mut container = step.container.clone();
        std::thread::spawn(move || {
            // As the monitor left it once the command started.
            let result = container
                .reload_state()
                .map_err(lifecycle::Error::from)
                .and_then(|()| lifecycle::wait(&paths, &container));
            let _ = done_tx.send(result);
        });
    }
    let exit_code = loop {
        let done = done_rx.recv_timeout(Duration::from_millis(20));
        for entry in follower.poll().unwrap_or_default() {
            output(&entry);
        }
        match done {
            Ok(code) => {
                break code.map_err(|source| Error::WaitStep {
                    container: name,
                    source,
                })?;
            }
            Err(_) if interrupted() => return Err(Error::Interrupted),
            Err(_) => {}
        }
    };
    if exit_code != 0 {
        return Ok(Outcome::Failed(exit_code));
    }
    let upper = keep.join("upper");
    std::fs::rename(step.container.dir.join("upper"), &upper)
        .map_err(|e| Error::io("keeping the changes of", &upper, e))?;
    Ok(Outcome::Succeeded(upper))
}
