//! The per-container monitor (like podman's conmon): starts the container's process,
//! logs its output, records its exit, applies the restart policy and `--rm`. For
//! `berth run -d` it is a small process of its own; for a foreground `berth run` the CLI
//! process plays the monitor and also copies output to its terminal. It is
//! single-threaded by design: it `clone`s the container's first process.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, pipe2};

use crate::container::{Container, ProcessRef, RestartPolicy, Status};
use crate::endpoint;
use crate::logs::{LogWriter, Stream};
use crate::paths::Paths;
use berth_runtime::cgroup::Cgroup;
use berth_runtime::init::{self, StartError};
use berth_runtime::process::{self, Launch};
use berth_runtime::tty;

/// Where the monitor's output goes besides the log.
pub enum Attach {
    /// `berth run -d`: once the container has started (or failed to), one line is
    /// written to `ready` (`ok`, or the error), then the monitor runs on its own.
    Detached { ready: File },
    /// Foreground `berth run`: output is copied to this process's stdout and stderr,
    /// signals are forwarded to the container, stdin is passed through with `-i`.
    Foreground,
}

/// `berth __monitor ID`: how a detached monitor is started (see [`spawn_detached`]).
pub const ENTRY: &str = "__monitor";

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The container could not start; its exit code says why (125, 126, 127).
    #[error("{0}")]
    Start(StartError),
    #[error("starting the monitor of container {name}: {source}")]
    Io {
        name: String,
        source: std::io::Error,
    },
    #[error(
        "the monitor of container {name} exited ({status}) before the container started; see {log}"
    )]
    Died {
        name: String,
        status: std::process::ExitStatus,
        log: String,
    },
}

/// Starts a detached monitor for `c` and returns once the container runs (or failed to
/// start). The monitor re-executes this binary, so it is single-threaded from its first
/// instruction whatever the caller is; it reports on its stdout and then runs on alone.
pub fn spawn_detached(paths: &Paths, c: &Container) -> Result<(), SpawnError> {
    let io = |source| SpawnError::Io {
        name: c.config.name.clone(),
        source,
    };
    let log = c.dir.join("monitor.log");
    let mut child = std::process::Command::new("/proc/self/exe")
        .arg(ENTRY)
        .arg(&c.config.id)
        .envs(paths.env())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(File::create(&log).map_err(io)?)
        .spawn()
        .map_err(io)?;
    let mut report = Vec::new();
    let _ = child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_end(&mut report);
    // The direct child only forked the monitor and exited.
    let status = child.wait().map_err(io)?;
    if report == b"ok" {
        return Ok(());
    }
    if let Some(err) = report.strip_prefix(b"err ") {
        return Err(SpawnError::Start(StartError::decode(err)));
    }
    Err(SpawnError::Died {
        name: c.config.name.clone(),
        status,
        log: log.display().to_string(),
    })
}

/// The body of `berth __monitor ID`; the installation comes from the environment.
pub fn detached_main(id: Option<&std::ffi::OsStr>) -> i32 {
    let paths = Paths::from_env();
    let Some(id) = id.and_then(|i| i.to_str()) else {
        eprintln!("berth {ENTRY}: expected a container id");
        return init::EXIT_SETUP_FAILED;
    };
    // Run on as a grandchild of the caller: the child exits at once, so a long-lived
    // caller (the node agent) reaps it and never gathers zombies.
    // This process was just exec'd and has started no thread.
    match berth_sys::process::fork(CloneFlags::empty()) {
        Ok(Some(_)) => return 0,
        Ok(None) => {}
        Err(e) => {
            eprintln!("berth {ENTRY}: fork: {e}");
            return init::EXIT_SETUP_FAILED;
        }
    }
    // A session of its own: the terminal that ran `berth run -d` may go away.
    let _ = nix::unistd::setsid();
    let c = match crate::container::load(&paths, id) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth {ENTRY}: {e}");
            return init::EXIT_SETUP_FAILED;
        }
    };
    // Our stdout is the pipe `spawn_detached` reads the start report from.
    match nix::unistd::dup(std::io::stdout().as_fd()) {
        Ok(fd) => run(
            &paths,
            c,
            Attach::Detached {
                ready: File::from(fd),
            },
        ),
        Err(e) => {
            eprintln!("berth {ENTRY}: {e}");
            init::EXIT_SETUP_FAILED
        }
    }
}

/// Signals the monitor takes through its signalfd.
const HANDLED: [Signal; 9] = [
    Signal::SIGCHLD,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

struct Running {
    pid: Pid,
    /// The process's output: its stdout pipe, or the master side of its terminal.
    stdout: OwnedFd,
    /// Its stderr pipe (none with a terminal: both streams come through it).
    stderr: Option<OwnedFd>,
    /// Where the user's input goes, with `-it` in the foreground (the terminal).
    input: Option<OwnedFd>,
    /// Published ports and their reservations, held until the process exits.
    network: endpoint::Active,
}

/// Runs the container until it is done (including restarts) and returns its last exit
/// code, or the start failure's code.
pub fn run(paths: &Paths, mut c: Container, attach: Attach) -> i32 {
    let mut ready = match attach {
        Attach::Detached { ready } => Some(ready),
        Attach::Foreground => None,
    };
    let foreground = ready.is_none();
    c.state.monitor = ProcessRef::of(nix::unistd::getpid());
    // `-it` in the foreground: keys go to the container's terminal as typed.
    let terminal = c.config.spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    let _raw = (foreground && terminal && c.config.interactive)
        .then(|| tty::RawMode::enter(berth_sys::fd::stdin()))
        .flatten();
    let (signals, cgroup, mut log) = match prepare(&c) {
        Ok(prepared) => prepared,
        Err(e) => return finish_failed(paths, &mut c, &mut ready, e),
    };

    let mut backoff = Duration::from_millis(100);
    loop {
        let running = match start(paths, &c, &cgroup, foreground && c.config.interactive) {
            Ok(r) => r,
            Err(e) => return finish_failed(paths, &mut c, &mut ready, e),
        };
        let started = Instant::now();
        c.state.status = Status::Running;
        c.state.process = ProcessRef::of(running.pid);
        c.state.started_at = Some(SystemTime::now());
        c.state.error = None;
        let _ = c.save_state();
        if let Some(r) = ready.take() {
            report(r, b"ok");
            // Nobody reads the monitor's stdout any more.
            if let Ok(null) = File::options().write(true).open("/dev/null") {
                let _ = nix::unistd::dup2_stdout(null.as_fd());
            }
            // Drop the start-up code a detached monitor never runs again.
            berth_sys::memory::release_clean_read_only_mappings();
        }

        let code = supervise(&running, &signals, &mut log, foreground);
        endpoint::detach(paths, running.network);
        let _ = log.flush();
        c.state.oom_killed = cgroup.oom_killed();
        let _ = cgroup.remove();
        c.state.exit_code = Some(code);
        c.state.finished_at = Some(SystemTime::now());
        c.state.process = None;

        let stop_requested = c.stop_marker().exists();
        if !stop_requested && should_restart(c.config.restart, code, c.state.restart_count) {
            if started.elapsed() > Duration::from_secs(10) {
                backoff = Duration::from_millis(100);
            }
            c.state.status = Status::Restarting;
            let _ = c.save_state();
            // Sleep through the backoff, unless asked to stop (SIGTERM from `berth stop`).
            if wait_or_stop(&signals, backoff, &c) {
                c.state.restart_count += 1;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        }
        c.state.status = Status::Exited;
        let _ = c.save_state();
        if c.config.auto_remove {
            let _ = crate::lifecycle::remove_files(paths, &c);
        }
        return code;
    }
}

/// What the monitor needs before the first start: signals through a signalfd (blocked
/// first, so none is lost), the cgroup handle and the log.
fn prepare(c: &Container) -> Result<(SignalFd, Cgroup, LogWriter), StartError> {
    let mut mask = SigSet::empty();
    for s in HANDLED {
        mask.add(s);
    }
    let signals = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .and_then(|()| SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK))
        .map_err(|e| StartError::setup("signalfd", e))?;
    let cgroup = c.cgroup().map_err(|e| StartError::setup("cgroups", e))?;
    let log = LogWriter::open(&c.log_path(), c.config.log)
        .map_err(|e| StartError::setup(format!("opening {}", c.log_path().display()), e))?;
    Ok((signals, cgroup, log))
}

/// Docker's rules: `on-failure[:N]` restarts on a non-zero exit, at most N times when
/// N > 0; `always` and `unless-stopped` restart whatever the code.
pub fn should_restart(policy: RestartPolicy, code: i32, restarts_so_far: u32) -> bool {
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        RestartPolicy::OnFailure { max_retries } => {
            code != 0 && (max_retries == 0 || restarts_so_far < max_retries)
        }
    }
}

fn report(mut ready: File, message: &[u8]) {
    let _ = ready.write_all(message);
}

/// Records a failure to start; the container is left exited with the error.
fn finish_failed(
    paths: &Paths,
    c: &mut Container,
    ready: &mut Option<File>,
    err: StartError,
) -> i32 {
    c.state.status = Status::Exited;
    c.state.exit_code = Some(err.code);
    c.state.error = Some(err.message.clone());
    c.state.process = None;
    c.state.finished_at = Some(SystemTime::now());
    let _ = c.save_state();
    match ready.take() {
        Some(r) => report(r, &[b"err ".as_slice(), &err.encode()].concat()),
        None => eprintln!("berth: {}", err.message),
    }
    if c.config.auto_remove {
        let _ = crate::lifecycle::remove_files(paths, c);
    }
    err.code
}

/// Creates the cgroup, clones the container's first process and waits until it has
/// exec'd its program (or failed to).
fn start(
    paths: &Paths,
    c: &Container,
    cgroup: &Cgroup,
    pass_stdin: bool,
) -> Result<Running, StartError> {
    let resources = c
        .config
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref());
    cgroup
        .create(resources)
        .map_err(|e| StartError::setup("creating the cgroup", e))?;
    let result = spawn(paths, c, cgroup, pass_stdin);
    if result.is_err() {
        let _ = cgroup.remove();
    }
    result
}

fn spawn(
    paths: &Paths,
    c: &Container,
    cgroup: &Cgroup,
    pass_stdin: bool,
) -> Result<Running, StartError> {
    let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| StartError::setup("pipe", e));
    let terminal = c.config.spec.process().as_ref().and_then(|p| p.terminal()) == Some(true);
    // Output comes through pipes, or through the terminal the container makes.
    let (out, err) = match terminal {
        false => (Some(pipe()?), Some(pipe()?)),
        true => (None, None),
    };
    let null = File::open("/dev/null").map_err(|e| StartError::setup("/dev/null", e))?;
    let stdio = [
        match pass_stdin && !terminal {
            true => berth_sys::fd::stdin(),
            false => null.as_fd(),
        },
        out.as_ref().map_or(null.as_fd(), |(_, w)| w.as_fd()),
        err.as_ref().map_or(null.as_fd(), |(_, w)| w.as_fd()),
    ];
    let spawned = process::spawn(Launch {
        spec: &c.config.spec,
        rootfs: Some(&c.config.rootfs),
        stdio,
        gate: None,
    })?;
    let pid = spawned.pid();
    drop(null);
    cgroup
        .add(pid)
        .map_err(|e| StartError::setup("joining the cgroup", e))?;
    let network = endpoint::attach(paths, &c.dir, pid)
        .map_err(|e| StartError::setup("connecting the container to its network", e))?;
    let started = spawned.set_up().and_then(|mut created| {
        let master = created.take_terminal();
        created.start().map(|()| master)
    });
    let master = match started {
        Ok(master) => master,
        Err(e) => {
            endpoint::detach(paths, network);
            return Err(e);
        }
    };
    let (stdout, stderr, input) = match (out, err, master) {
        (Some((out_r, _)), Some((err_r, _)), _) => (out_r, Some(err_r), None),
        (_, _, Some(master)) => {
            tty::copy_size(master.as_fd());
            let input = match pass_stdin {
                true => Some(
                    master
                        .try_clone()
                        .map_err(|e| StartError::setup("terminal", e))?,
                ),
                false => None,
            };
            (master, None, input)
        }
        _ => {
            return Err(StartError::setup(
                "the container's terminal",
                "never arrived",
            ));
        }
    };
    Ok(Running {
        pid,
        stdout,
        stderr,
        input,
        network,
    })
}

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Copies output to the log (and the terminal) until the process exits and its output
/// ends; forwards signals in the foreground. Returns the exit code.
fn supervise(r: &Running, signals: &SignalFd, log: &mut LogWriter, foreground: bool) -> i32 {
    let mut open = [Some(r.stdout.as_fd()), r.stderr.as_ref().map(|e| e.as_fd())];
    let user_input = berth_sys::fd::stdin();
    let mut input = if foreground {
        r.input.as_ref().map(|i| i.as_fd())
    } else {
        None
    };
    let mut code = None;
    let mut drain_deadline: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if code.is_some() && open.iter().all(Option::is_none) {
            break;
        }
        // Once the process has exited, its output ends as soon as the kernel has torn
        // down the PID namespace; don't wait forever on a descriptor someone leaked.
        let timeout = match drain_deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                berth_sys::syscall::poll_timeout(left)
            }
            None => PollTimeout::NONE,
        };
        let mut fds: Vec<PollFd> = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let streams: Vec<(usize, BorrowedFd)> = open
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.map(|f| (i, f)))
            .collect();
        fds.extend(
            streams
                .iter()
                .map(|(_, f)| PollFd::new(*f, PollFlags::POLLIN)),
        );
        if input.is_some() {
            fds.push(PollFd::new(user_input, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Err(Errno::EINTR) => continue,
            Err(_) => break,
            Ok(_) => {}
        }
        let revents: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        for (k, (i, fd)) in streams.iter().enumerate() {
            if revents[k + 1].is_empty() {
                continue;
            }
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => open[*i] = None,
                Ok(n) => {
                    let stream = if *i == 0 {
                        Stream::Stdout
                    } else {
                        Stream::Stderr
                    };
                    let _ = log.write(stream, &buf[..n]);
                    if foreground {
                        // Unbuffered: partial lines (prompts) must show at once.
                        let _ =
                            nix::unistd::write(berth_sys::fd::stdio(*i as RawFd + 1), &buf[..n]);
                    }
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(_) => open[*i] = None,
            }
        }
        if let (Some(to), Some(ready)) = (input, revents.get(streams.len() + 1))
            && !ready.is_empty()
        {
            match nix::unistd::read(user_input, &mut buf) {
                Ok(n) if n > 0 => {
                    let _ = nix::unistd::write(to, &buf[..n]);
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                _ => input = None,
            }
        }
        if !revents[0].is_empty() {
            while let Ok(Some(info)) = signals.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                if sig == Signal::SIGCHLD {
                    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                        if status == WaitStatus::StillAlive {
                            break;
                        }
                        if status.pid() == Some(r.pid) {
                            code = exit_code(status);
                            drain_deadline = Some(Instant::now() + Duration::from_secs(2));
                        }
                    }
                } else if sig == Signal::SIGWINCH && r.stderr.is_none() {
                    // A terminal: the kernel tells the container's foreground processes.
                    tty::copy_size(r.stdout.as_fd());
                } else if foreground && code.is_none() {
                    let _ = kill(r.pid, sig);
                }
            }
        }
    }
    code.unwrap_or(255)
}

/// Waits `backoff` before a restart. Returns false if a stop was requested meanwhile.
fn wait_or_stop(signals: &SignalFd, backoff: Duration, c: &Container) -> bool {
    let deadline = Instant::now() + backoff;
    loop {
        if c.stop_marker().exists() {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        if let Ok(n) = poll(&mut fds, berth_sys::syscall::poll_timeout(left))
            && n > 0
        {
            while let Ok(Some(_)) = signals.read_signal() {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_rules() {
        use RestartPolicy::*;
        assert!(!should_restart(No, 1, 0));
        assert!(should_restart(Always, 0, 100));
        assert!(should_restart(UnlessStopped, 0, 0));
        assert!(!should_restart(OnFailure { max_retries: 2 }, 0, 0));
        assert!(should_restart(OnFailure { max_retries: 2 }, 1, 1));
        assert!(!should_restart(OnFailure { max_retries: 2 }, 1, 2));
        assert!(should_restart(OnFailure { max_retries: 0 }, 3, 50));
    }
}
