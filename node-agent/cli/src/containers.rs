//! `berth run|ps|logs|exec|stop|kill|rm|wait|inspect`.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde_json::{Value, json};

use crate::format::{ago, human_duration, rfc3339, short_id, table};
use berth_engine::Paths;
use berth_engine::container::{self, Container, Liveness, RestartPolicy};
use berth_engine::create::{self, CreateOptions};
use berth_engine::endpoint;
use berth_engine::exec::{self, ExecOptions};
use berth_engine::logs::{self, Entry, Follower, Stream};
use berth_engine::monitor::{self, Attach};
use berth_engine::options::{self, parse_env, parse_env_file};
use berth_engine::spec::Resources;
use berth_engine::{lifecycle, options::parse_signal};
use berth_image::ImageStore;
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

fn host_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
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

pub(super) fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("berth needs root to create namespaces, mounts and cgroups; run it with sudo");
    }
    Ok(())
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

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    all: bool,
    /// Only display container ids
    #[arg(short, long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    no_trunc: bool,
}

fn status_text(c: &Container) -> String {
    let s = &c.state;
    let since = |t: Option<SystemTime>| {
        t.map(|t| human_duration(SystemTime::now().duration_since(t).unwrap_or_default()))
            .unwrap_or_default()
    };
    match c.liveness() {
        Liveness::Created => "Created".into(),
        Liveness::Running => format!("Up {}", since(s.started_at)),
        Liveness::RunningWithoutMonitor => format!("Up {} (monitor dead)", since(s.started_at)),
        Liveness::Restarting => format!(
            "Restarting ({}) {} ago",
            s.exit_code.unwrap_or(0),
            since(s.finished_at)
        ),
        Liveness::Exited => match s.exit_code {
            Some(code) => format!("Exited ({code}) {} ago", since(s.finished_at)),
            None => format!("Exited (unknown) {} ago", since(s.finished_at)),
        },
        Liveness::Dead => "Dead".into(),
    }
}

fn command_text(c: &Container, no_trunc: bool) -> String {
    let args = c
        .config
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.args().clone())
        .unwrap_or_default()
        .join(" ");
    if no_trunc || args.chars().count() <= 20 {
        format!("\"{args}\"")
    } else {
        format!("\"{}…\"", args.chars().take(19).collect::<String>())
    }
}

/// Published ports while running, as Docker's PORTS column shows them.
fn ports_text(c: &Container) -> String {
    if !c.is_running() {
        return String::new();
    }
    let published = endpoint::load(&c.dir)
        .map(|a| a.published)
        .unwrap_or_default();
    let shown: Vec<String> = published
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                p.host_port,
                p.container_port,
                p.protocol
            )
        })
        .collect();
    shown.join(", ")
}

/// Docker's `NetworkSettings`: addresses per network and published ports.
fn network_json(c: &Container, paths: &Paths) -> Value {
    let a = endpoint::load(&c.dir).unwrap_or_default();
    let nets = berth_net::network::Networks::new(paths.net());
    let mut networks = serde_json::Map::new();
    for e in &a.endpoints {
        let n = nets.get(&e.network).ok();
        networks.insert(
            e.network.clone(),
            json!({
                "IPAddress": e.ip.to_string(),
                "IPPrefixLen": n.as_ref().map(|n| n.subnet.prefix_len()),
                "Gateway": n.as_ref().map(|n| n.gateway.to_string()),
                "Aliases": e.aliases,
            }),
        );
    }
    let mut ports = serde_json::Map::new();
    for p in &a.published {
        let host = json!({ "HostIp": p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED).to_string(), "HostPort": p.host_port.to_string() });
        if let Value::Array(list) = ports
            .entry(format!("{}/{}", p.container_port, p.protocol))
            .or_insert(json!([]))
        {
            list.push(host);
        }
    }
    json!({
        "IPAddress": a.endpoints.first().map(|e| e.ip.to_string()).unwrap_or_default(),
        "Networks": networks,
        "Ports": ports,
    })
}

pub fn ps(paths: &Paths, a: PsArgs) -> Result<i32> {
    let all = container::list(paths)?;
    let shown: Vec<&Container> = all.iter().filter(|c| a.all || c.is_running()).collect();
    if a.quiet {
        for c in shown {
            println!("{}", if a.no_trunc { c.id() } else { short_id(c.id()) });
        }
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|c| {
            vec![
                if a.no_trunc {
                    c.id().to_string()
                } else {
                    short_id(c.id()).to_string()
                },
                c.config.image.clone(),
                command_text(c, a.no_trunc),
                ago(c.config.created),
                status_text(c),
                ports_text(c),
                c.config.name.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES"
            ],
            &rows
        )
    );
    Ok(0)
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short, long)]
    follow: bool,
    /// Number of lines to show from the end ("all" for everything)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show timestamps
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

fn print_entry(e: &Entry, timestamps: bool) {
    let text = if timestamps {
        format!("{} {}", e.time, e.log)
    } else {
        e.log.clone()
    };
    // Output that goes away (a closed pipe) ends the command, as for any filter.
    let _ = match e.stream {
        Stream::Stdout => std::io::stdout().write_all(text.as_bytes()),
        Stream::Stderr => std::io::stderr().write_all(text.as_bytes()),
    };
}

pub fn logs(paths: &Paths, a: LogsArgs) -> Result<i32> {
    let tail = match a.tail.as_str() {
        "all" => None,
        n => Some(
            n.parse::<usize>()
                .map_err(|_| anyhow!("invalid --tail \"{n}\": give a number or all"))?,
        ),
    };
    let mut c = container::find(paths, &a.container)?;
    let path = c.log_path();
    // Start following before reading, so nothing written in between is lost.
    let mut follower = Follower::at_end(&path)?;
    let entries = logs::read_all(&path, c.config.log.max_files)?;
    let skip = tail.map_or(0, |n| entries.len().saturating_sub(n));
    for e in &entries[skip..] {
        print_entry(e, a.timestamps);
    }
    if !a.follow {
        return Ok(0);
    }
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
    inotify.add_watch(
        &c.dir,
        AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_DELETE_SELF,
    )?;
    loop {
        for e in follower.poll()? {
            print_entry(&e, a.timestamps);
        }
        let _ = std::io::stdout().flush();
        if c.reload_state().is_err() || !c.is_running() {
            for e in follower.poll()? {
                print_entry(&e, a.timestamps);
            }
            return Ok(0);
        }
        // Woken by any write in the container's directory; the timeout catches a
        // monitor that died without a last write.
        let mut fds = [PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(1000u16));
        while let Ok(events) = inotify.read_events() {
            if events.is_empty() {
                break;
            }
        }
    }
}

#[derive(Args)]
pub struct ExecArgs {
    /// Detached mode: run the command in the background
    #[arg(short, long)]
    detach: bool,
    /// Keep standard input open
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// User (name|uid)[:(group|gid)]
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    workdir: Option<String>,
    container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

pub fn exec(paths: &Paths, a: ExecArgs) -> Result<i32> {
    require_root()?;
    let c = container::find(paths, &a.container)?;
    let mut env = Vec::new();
    for e in &a.env {
        env.extend(parse_env(e, host_env)?);
    }
    let opts = ExecOptions {
        args: a.command,
        env,
        user: a.user,
        workdir: a.workdir,
        detach: a.detach,
        interactive: a.interactive,
        tty: a.tty,
    };
    match exec::exec(&c, &opts) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("berth: {e}");
            Ok(e.exit_code())
        }
    }
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", alias = "timeout")]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Applies `f` to each named container, printing the name on success and an error per
/// failure, like Docker; the exit code is 1 when any failed.
fn for_each(
    paths: &Paths,
    names: &[String],
    mut f: impl FnMut(&Container) -> Result<()>,
) -> Result<i32> {
    let mut failed = false;
    for name in names {
        match container::find(paths, name)
            .map_err(anyhow::Error::from)
            .and_then(|c| f(&c))
        {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("berth: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

pub fn stop(paths: &Paths, a: StopArgs) -> Result<i32> {
    for_each(paths, &a.containers, |c| {
        let t = a.time.unwrap_or(c.config.stop_timeout as u64);
        Ok(lifecycle::stop(paths, c, Duration::from_secs(t))?)
    })
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn kill(paths: &Paths, a: KillArgs) -> Result<i32> {
    let signal = parse_signal(&a.signal)?;
    for_each(paths, &a.containers, |c| Ok(lifecycle::kill(c, signal)?))
}

#[derive(Args)]
pub struct RmArgs {
    /// Kill and remove running containers
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn rm(paths: &Paths, a: RmArgs) -> Result<i32> {
    for_each(paths, &a.containers, |c| {
        Ok(lifecycle::remove(paths, c, a.force)?)
    })
}

#[derive(Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn wait(paths: &Paths, a: WaitArgs) -> Result<i32> {
    let mut failed = false;
    for name in &a.containers {
        match container::find(paths, name)
            .map_err(anyhow::Error::from)
            .and_then(|c| Ok(lifecycle::wait(paths, &c)?))
        {
            Ok(code) => println!("{code}"),
            Err(e) => {
                eprintln!("berth: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

#[derive(Args)]
pub struct InspectArgs {
    /// Only inspect objects of this type: container or image
    #[arg(long = "type")]
    kind: Option<String>,
    #[arg(required = true)]
    names: Vec<String>,
}

fn container_json(c: &Container, paths: &Paths) -> Value {
    let s = &c.state;
    let time =
        |t: Option<SystemTime>| t.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339);
    let process = c.config.spec.process().clone().unwrap_or_default();
    let res = c
        .config
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let status = match c.liveness() {
        Liveness::Created => "created",
        Liveness::Running | Liveness::RunningWithoutMonitor => "running",
        Liveness::Restarting => "restarting",
        Liveness::Exited => "exited",
        Liveness::Dead => "dead",
    };
    let restart = match c.config.restart {
        RestartPolicy::No => json!({"Name": "no", "MaximumRetryCount": 0}),
        p => serde_json::to_value(p).unwrap_or_default(),
    };
    json!({
        "Id": c.config.id,
        "Created": rfc3339(c.config.created),
        "Path": process.args().as_ref().and_then(|a| a.first().cloned()).unwrap_or_default(),
        "Args": process.args().as_ref().map(|a| a[1..].to_vec()).unwrap_or_default(),
        "State": {
            "Status": status,
            "Running": c.is_running(),
            "Restarting": c.liveness() == Liveness::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": c.liveness() == Liveness::Dead,
            "Pid": s.process.filter(|p| p.alive()).map_or(0, |p| p.pid),
            "MonitorPid": s.monitor.filter(|p| p.alive()).map_or(0, |p| p.pid),
            "ExitCode": s.exit_code.unwrap_or(0),
            "Error": s.error.clone().unwrap_or_default(),
            "StartedAt": time(s.started_at),
            "FinishedAt": time(s.finished_at),
        },
        "Image": c.config.image_id,
        "Name": format!("/{}", c.config.name),
        "RestartCount": s.restart_count,
        "LogPath": c.log_path(),
        "HostConfig": {
            "NetworkMode": c.config.network.to_string(),
            "RestartPolicy": restart,
            "AutoRemove": c.config.auto_remove,
            "ReadonlyRootfs": c.config.spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false),
            "Memory": res.memory().and_then(|m| m.limit()).unwrap_or(0),
            "NanoCpus": res.cpu().as_ref().and_then(|cpu| Some(cpu.quota()? * 1_000_000_000 / cpu.period()? as i64)).unwrap_or(0),
            "PidsLimit": res.pids().map(|p| p.limit()),
            "Binds": c.config.mounts.iter().map(|m| format!("{}:{}{}", m.name.clone().unwrap_or_else(|| m.source.display().to_string()), m.destination, if m.read_only { ":ro" } else { "" })).collect::<Vec<_>>(),
        },
        "NetworkSettings": network_json(c, paths),
        "Mounts": c.config.mounts.iter().map(|m| json!({
            "Type": m.kind, "Name": m.name, "Source": m.source, "Destination": m.destination, "RW": !m.read_only,
        })).collect::<Vec<_>>(),
        "Config": {
            "Hostname": c.config.spec.hostname(),
            "User": format!("{}:{}", process.user().uid(), process.user().gid()),
            "Env": process.env(),
            "Cmd": process.args(),
            "Image": c.config.image,
            "WorkingDir": process.cwd(),
            "StopSignal": c.config.stop_signal,
            "Labels": c.config.labels,
            "StopTimeout": c.config.stop_timeout,
        },
    })
}

pub fn inspect(paths: &Paths, a: InspectArgs) -> Result<i32> {
    let kind = a.kind.as_deref();
    if let Some(k) = kind.filter(|k| !["container", "image"].contains(k)) {
        bail!("invalid --type \"{k}\": use container or image");
    }
    let mut out = Vec::new();
    let mut failed = false;
    for name in &a.names {
        let found = if kind != Some("image") {
            container::find(paths, name)
                .ok()
                .map(|c| container_json(&c, paths))
        } else {
            None
        };
        let found = match found {
            Some(v) => Some(v),
            None if kind != Some("container") => {
                let store = ImageStore::open(&paths.root)?;
                store.resolve(name).ok().map(|i| store.inspect_json(&i))
            }
            None => None,
        };
        match found {
            Some(v) => out.push(v),
            None => {
                eprintln!("berth: no such object: {name}");
                failed = true;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if failed { 1 } else { 0 })
}
