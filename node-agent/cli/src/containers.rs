//! `berth ps|logs|exec|stop|kill|rm|wait`, and the helpers the other commands share.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow, bail};
use clap::Args;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::format::{ago, human_duration, short_id, table};
use berth_engine::Paths;
use berth_engine::container::{self, Container, Liveness};
use berth_engine::endpoint;
use berth_engine::exec::{self, ExecOptions};
use berth_engine::lifecycle;
use berth_engine::logs::{self, Entry, Follower, Stream};
use berth_engine::options::{parse_env, parse_signal};

pub(super) fn host_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

pub(super) fn require_root() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("berth needs root to create namespaces, mounts and cgroups; run it with sudo");
    }
    Ok(())
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
    f: impl FnMut(&Container) -> Result<()>,
) -> Result<i32> {
    each_shown(paths, names, f, |name, ()| println!("{name}"))
}

/// `for_each` with what to print on success left to `show` (`wait` prints exit codes).
fn each_shown<T>(
    paths: &Paths,
    names: &[String],
    mut f: impl FnMut(&Container) -> Result<T>,
    show: impl Fn(&str, T),
) -> Result<i32> {
    let mut failed = false;
    for name in names {
        match container::find(paths, name)
            .map_err(anyhow::Error::from)
            .and_then(|c| f(&c))
        {
            Ok(value) => show(name, value),
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
    each_shown(
        paths,
        &a.containers,
        |c| Ok(lifecycle::wait(paths, c)?),
        |_, code| println!("{code}"),
    )
}
