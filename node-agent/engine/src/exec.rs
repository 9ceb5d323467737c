//! `berth exec`: a new process inside a running container's namespaces, cgroup and root
//! filesystem (the runtime's `exec`), with the container's capabilities and (unless
//! `-u`) its user, resolved against the container's own /etc files.

use std::fs;

use berth_runtime::init::StartError;
use oci_spec::runtime::Process;

use crate::container::Container;
use crate::spec;
use berth_runtime::user;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error(transparent)]
    User(#[from] user::Error),
    #[error(transparent)]
    Cgroup(#[from] berth_runtime::cgroup::Error),
    #[error("entering container {name}: {source}")]
    Runtime {
        name: String,
        source: berth_runtime::exec::Error,
    },
    /// The process could not start (Docker prints this without the container's name).
    #[error("{0}")]
    Start(StartError),
}

impl Error {
    /// The exit code Docker gives for this failure (126/127 for exec problems).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Start(e) => e.code,
            _ => berth_runtime::init::EXIT_SETUP_FAILED,
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

/// Runs the process and returns its exit code (0 at once with `detach`).
/// The caller must be single-threaded: it forks.
pub fn exec(c: &Container, opts: &ExecOptions) -> Result<i32, Error> {
    let name = c.config.name.clone();
    let target = c
        .state
        .process
        .filter(|p| p.alive())
        .ok_or_else(|| Error::NotRunning(name.clone()))?;
    let pid = target.pid();
    let base = c.config.spec.process().clone().unwrap_or_default();
    let process = exec_process(&base, opts, &format!("/proc/{pid}/root"))?;
    let io = berth_runtime::exec::Io {
        detach: opts.detach,
        interactive: opts.interactive,
        tty: opts.tty,
    };
    berth_runtime::exec::exec(pid, &c.config.spec, &c.cgroup()?, &process, &io).map_err(|e| match e
    {
        berth_runtime::exec::Error::Start(e) => Error::Start(e),
        source => Error::Runtime { name, source },
    })
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
