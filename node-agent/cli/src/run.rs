//! `berth run`: its flags, and the engine's create options built from them.

use anyhow::{Context, Result};
use clap::Args;

use crate::containers::{host_env, require_root};
use berth_engine::Paths;
use berth_engine::container;
use berth_engine::create::{self, CreateOptions};
use berth_engine::monitor::{self, Attach};
use berth_engine::options::{self, parse_env, parse_env_file, parse_signal};
use berth_engine::spec::Resources;
use berth_net::{NetworkMode, links, ports};

#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run in the background and print the container id
    #[arg(short, long)]
    detach: bool,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Set environment variables (KEY=VALUE, or KEY to pass it on from here)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file
    #[arg(long)]
    env_file: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    /// User (name|uid)[:(group|gid)]
    #[arg(short, long)]
    user: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Override the image's ENTRYPOINT
    #[arg(long)]
    entrypoint: Option<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    read_only: bool,
    /// Add Linux capabilities
    #[arg(long)]
    cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long)]
    cap_drop: Vec<String>,
    /// Memory limit (e.g. 64m)
    #[arg(short, long)]
    memory: Option<String>,
    /// Number of CPUs (e.g. 1.5)
    #[arg(long)]
    cpus: Option<String>,
    /// Maximum number of processes (-1 for unlimited)
    #[arg(long)]
    pids_limit: Option<i64>,
    /// Resource limits (e.g. nofile=1024:2048)
    #[arg(long)]
    ulimit: Vec<String>,
    /// Network: bridge (default), none, host, or a network made with `berth network create`
    #[arg(long, alias = "net")]
    network: Option<String>,
    /// Another name for the container on its network
    #[arg(long)]
    network_alias: Vec<String>,
    /// Add a link to another container (name[:alias])
    #[arg(long)]
    link: Vec<String>,
    /// Bind mount a volume (NAME:/path or /host/path:/path, with :ro optionally)
    #[arg(short, long)]
    volume: Vec<String>,
    /// Publish a container's port to the host ([ip:][hostPort:]containerPort[/proto])
    #[arg(short, long)]
    publish: Vec<String>,
    /// Publish all exposed ports to free host ports
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// Expose a port (PORT[/PROTO]) without publishing it (-P publishes it)
    #[arg(long)]
    expose: Vec<String>,
    /// Restart policy: no, on-failure[:N], always, unless-stopped
    #[arg(long)]
    restart: Option<String>,
    /// Signal to stop the container
    #[arg(long)]
    stop_signal: Option<String>,
    /// Seconds to wait for the stop signal before SIGKILL
    #[arg(long)]
    stop_timeout: Option<u32>,
    /// Log options: max-size=SIZE, max-file=N
    #[arg(long)]
    log_opt: Vec<String>,
    /// Keep standard input open
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Set metadata on the container (KEY=VALUE)
    #[arg(short, long)]
    label: Vec<String>,
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// The image to run
    image: String,
    /// The command and its arguments (replaces the image's CMD)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

fn create_options(a: &RunArgs) -> Result<CreateOptions> {
    let mut env = Vec::new();
    for f in &a.env_file {
        let content =
            std::fs::read_to_string(f).with_context(|| format!("reading env file {f}"))?;
        env.extend(parse_env_file(&content, host_env)?);
    }
    for e in &a.env {
        env.extend(parse_env(e, host_env)?);
    }
    let mut log = container::LogOptions::default();
    for o in &a.log_opt {
        options::apply_log_opt(&mut log, o)?;
    }
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if let Some(s) = &a.stop_signal {
        parse_signal(s)?;
    }
    Ok(CreateOptions {
        name: a.name.clone(),
        image: a.image.clone(),
        args: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        read_only: a.read_only,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        resources: Resources {
            memory: a.memory.as_deref().map(options::parse_size).transpose()?,
            cpus: a
                .cpus
                .as_deref()
                .map(|c| options::parse_cpus(c, host_cpus))
                .transpose()?,
            pids: a.pids_limit.filter(|p| *p > 0),
        },
        ulimits: a
            .ulimit
            .iter()
            .map(|u| options::parse_ulimit(u))
            .collect::<Result<_, _>>()?,
        network: a.network.clone().map(NetworkMode::from),
        network_aliases: a.network_alias.clone(),
        ports: a
            .publish
            .iter()
            .map(|p| ports::parse(p))
            .collect::<Result<Vec<_>, _>>()?
            .concat(),
        publish_all: a.publish_all,
        expose: a.expose.clone(),
        links: a
            .link
            .iter()
            .map(|l| {
                let (name, alias) = links::parse(l);
                (name.to_string(), alias.to_string())
            })
            .collect(),
        volumes: a
            .volume
            .iter()
            .map(|v| options::parse_volume(v))
            .collect::<Result<_, _>>()?,
        restart: a
            .restart
            .as_deref()
            .map(options::parse_restart)
            .transpose()?,
        auto_remove: a.rm,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        log,
        interactive: a.interactive,
        tty: a.tty,
        labels: a
            .label
            .iter()
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap_or((l, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
    })
}

pub fn run(paths: &Paths, a: RunArgs) -> Result<i32> {
    let opts = create_options(&a)?;
    require_root()?;
    if let Some(code) = crate::registry::pull_if_absent(paths, &opts.image)? {
        return Ok(code);
    }
    let c = create::create(paths, &opts)?;
    if !a.detach {
        return Ok(monitor::run(paths, c, Attach::Foreground));
    }
    match monitor::spawn_detached(paths, &c) {
        Ok(()) => {
            println!("{}", c.config.id);
            Ok(0)
        }
        Err(monitor::SpawnError::Start(err)) => {
            eprintln!("berth: {}", err.message);
            Ok(err.code)
        }
        Err(e) => Err(e.into()),
    }
}
