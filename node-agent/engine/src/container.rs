//! Containers on disk: the immutable record written at create time (`config.json`), the
//! state the monitor keeps current (`state.json`), lookup by id, short id or name, and
//! the truth about whether the processes the state names are still alive.

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::paths::Paths;
use berth_net::NetworkMode;
use berth_runtime::cgroup::{Cgroup, Hierarchy};
use berth_runtime::init::Rootfs;
use berth_sys::fs::write_atomic;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container id prefix \"{0}\" is ambiguous; give more characters")]
    Ambiguous(String),
    #[error(
        "container name \"{name}\" is already in use by container {id}; remove it (berth rm {name}) or pick another name"
    )]
    NameInUse { name: String, id: String },
    #[error("invalid container name \"{0}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("container {id}: {path}: {source}")]
    Io {
        id: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("container {id}: corrupt {path}: {source}")]
    Corrupt {
        id: String,
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// When the monitor restarts a container that exited (`--restart`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Name", rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    OnFailure {
        #[serde(rename = "MaximumRetryCount")]
        max_retries: u32,
    },
    Always,
    UnlessStopped,
}

/// How a container's output is kept: JSON lines, rotated by size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOptions {
    pub max_size: u64,
    pub max_files: u32,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            max_size: 10 << 20,
            max_files: 3,
        }
    }
}

/// A volume or bind mount, as `inspect` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// `volume` or `bind`.
    pub kind: String,
    /// The volume's name, for volumes.
    pub name: Option<String>,
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// What a container is: fixed when it is created.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    pub id: String,
    pub name: String,
    #[serde(with = "berth_sys::record::rfc3339")]
    pub created: SystemTime,
    /// The image as the user named it, and the id it resolved to.
    pub image: String,
    pub image_id: String,
    pub rootfs: Rootfs,
    pub spec: Spec,
    pub restart: RestartPolicy,
    pub auto_remove: bool,
    pub stop_signal: String,
    pub stop_timeout: u32,
    pub log: LogOptions,
    pub network: NetworkMode,
    pub mounts: Vec<MountRecord>,
    /// Attach standard input (`-i`) when run in the foreground.
    pub interactive: bool,
    /// `--label`s; the node agent marks the containers it runs with them.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Restarting,
    Exited,
}

pub use berth_runtime::pid::ProcessRef;

/// What a container is doing: kept current by its monitor.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// The container's first process, as seen from the host.
    pub process: Option<ProcessRef>,
    pub monitor: Option<ProcessRef>,
    #[serde(default, with = "berth_sys::record::rfc3339::option")]
    pub started_at: Option<SystemTime>,
    #[serde(default, with = "berth_sys::record::rfc3339::option")]
    pub finished_at: Option<SystemTime>,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    pub error: Option<String>,
    pub restart_count: u32,
}

impl State {
    /// What the container is doing, from this record and which of its processes live.
    pub fn liveness(&self) -> Liveness {
        let monitor_alive = self.monitor.is_some_and(|m| m.alive());
        match self.status {
            Status::Created => Liveness::Created,
            Status::Exited => Liveness::Exited,
            Status::Restarting if monitor_alive => Liveness::Restarting,
            Status::Running | Status::Restarting => {
                let process_alive = self.process.is_some_and(|p| p.alive());
                match (process_alive, monitor_alive) {
                    (true, true) => Liveness::Running,
                    (true, false) => Liveness::RunningWithoutMonitor,
                    (false, true) => Liveness::Running, // exiting; the monitor will record it
                    (false, false) => Liveness::Dead,
                }
            }
        }
    }
}

/// A container as found on disk.
#[derive(Clone, Debug)]
pub struct Container {
    pub config: Config,
    pub state: State,
    pub dir: PathBuf,
}

/// The status the user sees, reconciled with which processes really exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Created,
    Running,
    /// Running, but the monitor that owns it is gone: output is no longer logged and
    /// the exit will not be recorded.
    RunningWithoutMonitor,
    Restarting,
    Exited,
    /// The state says running, but neither the container nor its monitor exists.
    Dead,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.config.id
    }

    pub fn liveness(&self) -> Liveness {
        self.state.liveness()
    }

    pub fn is_running(&self) -> bool {
        matches!(
            self.liveness(),
            Liveness::Running | Liveness::RunningWithoutMonitor | Liveness::Restarting
        )
    }

    pub fn save_state(&self) -> Result<(), Error> {
        save_state(&self.dir, &self.config.id, &self.state)
    }

    pub fn reload_state(&mut self) -> Result<(), Error> {
        self.state = read_json(&self.dir.join(STATE), &self.config.id)?;
        Ok(())
    }

    /// The marker `stop`, `kill` through `rm` and the like leave so the monitor does not
    /// restart the container.
    pub fn stop_marker(&self) -> PathBuf {
        self.dir.join("stop-requested")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("container.log")
    }

    /// The container's cgroup, as its spec names it, on this host's hierarchies.
    pub fn cgroup(&self) -> Result<Cgroup, berth_runtime::cgroup::Error> {
        let path = self
            .config
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .unwrap_or_default();
        Ok(Cgroup::new(Hierarchy::detect()?, &path.to_string_lossy()))
    }
}

const CONFIG: &str = "config.json";
const STATE: &str = "state.json";

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, id: &str) -> Result<T, Error> {
    let data = fs::read(path).map_err(|source| match source.kind() {
        ErrorKind::NotFound => Error::NotFound(id.to_string()),
        _ => Error::Io {
            id: id.to_string(),
            path: path.to_path_buf(),
            source,
        },
    })?;
    serde_json::from_slice(&data).map_err(|source| Error::Corrupt {
        id: id.to_string(),
        path: path.to_path_buf(),
        source,
    })
}

pub fn save_state(dir: &Path, id: &str, state: &State) -> Result<(), Error> {
    let path = dir.join(STATE);
    let data = serde_json::to_vec_pretty(state).expect("state serializes");
    write_atomic(&path, &data, false).map_err(|source| Error::Io {
        id: id.to_string(),
        path,
        source,
    })
}

/// Loads one container by its full id.
pub fn load(paths: &Paths, id: &str) -> Result<Container, Error> {
    let dir = paths.container(id);
    let config: Config = read_json(&dir.join(CONFIG), id)?;
    let state: State = read_json(&dir.join(STATE), id)?;
    Ok(Container { config, state, dir })
}

/// Every container on this host, newest first. Half-created or half-removed
/// directories (no config yet, or no longer) are skipped.
/// The ids of the containers on this host.
pub fn ids(paths: &Paths) -> Result<Vec<String>, Error> {
    let dir = paths.containers();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                id: String::new(),
                path: dir,
                source,
            });
        }
    };
    Ok(entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|id| id.len() == 64)
        .collect())
}

/// Just a container's state: a much smaller read than its whole record.
pub fn load_state(paths: &Paths, id: &str) -> Result<State, Error> {
    read_json(&paths.container(id).join(STATE), id)
}

pub fn list(paths: &Paths) -> Result<Vec<Container>, Error> {
    let mut all = Vec::new();
    for id in ids(paths)? {
        match load(paths, &id) {
            Ok(c) => all.push(c),
            Err(Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    all.sort_by_key(|c| std::cmp::Reverse(c.config.created));
    Ok(all)
}

/// Finds a container by full id, name, or unique id prefix (as Docker does).
pub fn find(paths: &Paths, key: &str) -> Result<Container, Error> {
    let all = list(paths)?;
    if let Some(c) = all
        .iter()
        .find(|c| c.config.id == key || c.config.name == key)
    {
        return Ok(c.clone());
    }
    let mut matches = all
        .into_iter()
        .filter(|c| !key.is_empty() && c.config.id.starts_with(key));
    match (matches.next(), matches.next()) {
        (Some(c), None) => Ok(c),
        (Some(_), Some(_)) => Err(Error::Ambiguous(key.to_string())),
        _ => Err(Error::NotFound(key.to_string())),
    }
}

pub fn validate_name(name: &str) -> Result<(), Error> {
    match berth_sys::record::is_valid_name(name) {
        true => Ok(()),
        false => Err(Error::InvalidName(name.to_string())),
    }
}

/// Writes a new container's record. The caller holds the containers lock, so the name
/// check and the write are one step.
pub fn create(paths: &Paths, config: &Config) -> Result<Container, Error> {
    validate_name(&config.name)?;
    if let Some(other) = list(paths)?
        .into_iter()
        .find(|c| c.config.name == config.name)
    {
        return Err(Error::NameInUse {
            name: config.name.clone(),
            id: other.config.id,
        });
    }
    let dir = paths.container(&config.id);
    let io = |path: &Path| {
        let (id, path) = (config.id.clone(), path.to_path_buf());
        move |source| Error::Io { id, path, source }
    };
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let container = Container {
        config: config.clone(),
        state: State::default(),
        dir: dir.clone(),
    };
    let result = container.save_state().and_then(|()| {
        let data = serde_json::to_vec_pretty(config).expect("config serializes");
        let path = dir.join(CONFIG);
        write_atomic(&path, &data, false).map_err(io(&path))
    });
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(container)
}

/// A name like Docker's (`adjective_surname`) for containers created without `--name`.
pub fn generate_name(id: &str) -> String {
    const ADJECTIVES: [&str; 16] = [
        "brave", "calm", "eager", "fervent", "gallant", "happy", "jolly", "keen", "lucid", "merry",
        "nifty", "proud", "quirky", "serene", "trusting", "vibrant",
    ];
    const NAMES: [&str; 16] = [
        "babbage", "curie", "dijkstra", "euler", "feynman", "goodall", "hopper", "knuth",
        "lamport", "lovelace", "noether", "pike", "ritchie", "thompson", "turing", "wozniak",
    ];
    let byte = |i: usize| u8::from_str_radix(&id[i..i + 2], 16).unwrap_or(0) as usize;
    format!(
        "{}_{}_{}",
        ADJECTIVES[byte(0) % 16],
        NAMES[byte(2) % 16],
        &id[4..8]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_docker_rules() {
        for ok in ["web", "my_app.1", "A-b", "0x"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-web", "we b", "a/b", "_x", "é"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_names_are_valid_and_stable() {
        let id = "a".repeat(64);
        let n = generate_name(&id);
        assert!(validate_name(&n).is_ok());
        assert_eq!(n, generate_name(&id));
    }

    #[test]
    fn restart_policy_json_is_dockers() {
        let p = RestartPolicy::OnFailure { max_retries: 2 };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"Name":"on-failure","MaximumRetryCount":2}"#
        );
    }
}
