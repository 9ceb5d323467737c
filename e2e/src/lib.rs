//! End-to-end tests of cluster mode: `tests/cluster.rs` brings up a real control plane
//! (etcd and kube-apiserver built from upstream Go modules) and hosts made of network
//! namespaces with `e2e/scripts/cluster.sh`, and drives them with kubectl;
//! `tests/cluster_cycle.rs` takes such a cluster down and up again, as `make cluster-down &&
//! make cluster` does.
//!
//! This library holds what both share: [`Cluster`] (one cluster, torn down when dropped,
//! or on SIGINT/SIGTERM/SIGHUP) and [`harness::run`], the test runner both test targets use
//! (`harness = false`; see there why).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod harness;

/// The repository. Cargo says where at run time too: a test binary built in another
/// checkout sharing the target directory, and not rebuilt, would point at that one.
pub fn repo() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().unwrap().to_path_buf()
}

/// Where cargo put this workspace's binaries (target/<profile>).
pub fn binaries() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    for b in ["berth", "berth-agent", "berth-controller"] {
        assert!(
            dir.join(b).exists(),
            "{} is missing: run `cargo build --workspace --bins` first",
            dir.join(b).display()
        );
    }
    dir
}

/// A command's stdout and stderr, for messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Polls `check` every 250 ms until it holds; panics with `what` (and `context()`, for
/// the message) once `timeout` has passed. The only way these tests wait.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; {}",
            context()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The bin directory of the control plane (etcd, kube-apiserver, kubectl), built the first
/// time; waits for a build another process is running.
fn control_plane_bin() -> PathBuf {
    let built = Command::new(repo().join("e2e/scripts/build-control-plane.sh"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "building the control plane: {}",
        text(&built)
    );
    PathBuf::from(
        String::from_utf8_lossy(&built.stdout)
            .trim()
            .lines()
            .last()
            .unwrap_or_default(),
    )
}

/// The directories of the clusters this process brought up and has not taken down yet:
/// the signal thread takes them down when the run is interrupted. A cluster's `down` holds
/// the lock, so an interrupted run waits for a `down` under way instead of racing it.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Set once a signal has come: from then on the tests' threads wait (for the exit) instead
/// of talking to clusters being taken down, whose addresses would soon lead nowhere.
static STOPPING: AtomicBool = AtomicBool::new(false);

fn stop_here_if_stopping() {
    while STOPPING.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes the live clusters down on SIGINT, SIGTERM or SIGHUP, then exits. Their processes
/// run in sessions of their own (setsid), so a Ctrl-C would otherwise leave them running,
/// with their namespaces and bridge. Call first thing in `main`, before any other thread
/// exists: the signals are blocked in every thread and taken by one that waits for them
/// (child processes start with an empty mask again: std resets it).
pub fn take_down_on_signals() {
    // SAFETY: plain libc calls on a zeroed, then initialised, sigset_t.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut signal = 0;
        // SAFETY: `set` is initialised; sigwait writes the signal number.
        unsafe { libc::sigwait(&set, &mut signal) };
        STOPPING.store(true, Ordering::SeqCst);
        eprintln!("signal {signal}: taking the clusters down");
        let mut dirs = live();
        for dir in dirs.drain(..) {
            let out = run_script(&["down", dir.to_str().unwrap()], &[]);
            if !out.status.success() {
                eprintln!("cluster down {}: {}", dir.display(), text(&out));
            }
        }
        std::process::exit(128 + signal);
    });
}

/// `e2e/scripts/cluster.sh ARGS...` with this build's binaries and short test timings.
fn script(args: &[&str]) -> Output {
    script_with(args, &[])
}

/// The same, with more environment (overriding the timings).
fn script_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    stop_here_if_stopping();
    run_script(args, env)
}

/// The same, even once a signal has come: for taking clusters down (the signal thread's
/// `down`, and a `down` under way, which holds the lock of [`LIVE`] the signal thread waits
/// for).
fn run_script(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(repo().join("e2e/scripts/cluster.sh"))
        .args(args)
        .env("BERTH_BIN", binaries())
        // Short enough for a test to see hosts come and go, long enough that an agent
        // slowed down by a loaded machine does not miss a renewal (its host would look
        // not ready, and Replicas be placed elsewhere).
        .env("BERTH_LEASE_SECONDS", "10")
        // The leader's Lease outlasts an API server restart on a loaded machine (several
        // seconds, RBAC answering Forbidden for a while after): a leader that cannot renew
        // it exits, for a supervisor to start again, and these clusters have none.
        .env("BERTH_CONTROLLER_LEASE_SECONDS", "30")
        .env("BERTH_NODE_GRACE", "6")
        .env("BERTH_RESYNC", "2")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

pub const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

/// A cluster made by `cluster.sh up`; taken down (`cluster.sh down`) when dropped, whatever
/// happened in between, unless [`Cluster::down`] did already.
pub struct Cluster {
    pub dir: PathBuf,
    pub kubectl: PathBuf,
    /// The cluster's id (network names: bridge `bc<id>`, namespaces `berth-<id>-<host>`).
    pub id: String,
    up: bool,
}

impl Cluster {
    /// `cluster.sh up DIR` (three hosts), then waits for every host to be Ready.
    pub fn up(dir: &Path) -> Cluster {
        assert!(is_root(), "the e2e tests need root");
        let bin = control_plane_bin();
        live().push(dir.to_path_buf());
        // Made before `up` runs, so that a failed `up` is taken down too (when dropped).
        let mut c = Cluster {
            kubectl: bin.join("kubectl"),
            dir: dir.to_path_buf(),
            id: String::new(),
            up: true,
        };
        let started = Instant::now();
        let out = c.script(&["up", dir.to_str().unwrap()]);
        assert!(out.status.success(), "cluster up: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        for export in [
            format!("export KUBECONFIG={}/cp/admin.kubeconfig", dir.display()),
            format!("export PATH={}:$PATH", bin.display()),
        ] {
            assert!(
                stdout.lines().any(|l| l == export),
                "`up` prints {export:?}: {stdout}"
            );
        }
        let env = std::fs::read_to_string(dir.join("cluster.env")).unwrap();
        c.id = env
            .lines()
            .find_map(|l| l.strip_prefix("id="))
            .unwrap()
            .to_string();
        c.wait_for("every host Ready", Duration::from_secs(90), || {
            HOSTS.iter().all(|h| c.node_ready(h) == "True")
        });
        eprintln!(
            "cluster {} up in {:.1}s",
            dir.display(),
            started.elapsed().as_secs_f64()
        );
        c
    }

    /// `cluster.sh down DIR`; panics if it fails.
    pub fn down(&mut self) {
        let mut live = live();
        self.up = false;
        live.retain(|d| d != &self.dir);
        let out = run_script(&["down", self.dir.to_str().unwrap()], &[]);
        assert!(out.status.success(), "cluster down: {}", text(&out));
    }

    pub fn script(&self, args: &[&str]) -> Output {
        script(args)
    }

    /// `cluster.sh WHAT DIR ARGS...`, which must succeed.
    pub fn control(&self, what: &str, args: &[&str]) {
        self.control_with(what, args, &[]);
    }

    /// The same, with more environment (`BERTH_NODE_GRACE`...).
    pub fn control_with(&self, what: &str, args: &[&str], env: &[(&str, &str)]) {
        let mut all = vec![what, self.dir.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = script_with(&all, env);
        assert!(out.status.success(), "cluster.sh {all:?}: {}", text(&out));
    }

    /// The command line of the process recorded in `pidfile` (relative to the cluster's
    /// directory), arguments separated by spaces, if it runs.
    pub fn cmdline(&self, pidfile: &str) -> Option<String> {
        let pid = std::fs::read_to_string(self.dir.join(pidfile)).ok()?;
        let pid = pid.trim().parse::<u32>().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        if status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
        {
            return None;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        Some(String::from_utf8_lossy(&cmdline).replace('\0', " "))
    }

    /// Whether the process recorded in `pidfile` runs.
    pub fn runs(&self, pidfile: &str) -> bool {
        self.cmdline(pidfile).is_some()
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        stop_here_if_stopping();
        Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", self.dir.join("cp/admin.kubeconfig"))
            .output()
            .unwrap()
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn apply(&self, yaml: &str) -> Output {
        let path = self.dir.join("apply.yaml");
        std::fs::write(&path, yaml).unwrap();
        self.kubectl(&["apply", "-f", path.to_str().unwrap()])
    }

    /// `berth` as one host sees it.
    pub fn berth(&self, host: &str, args: &[&str]) -> String {
        let mut all = vec!["berth", self.dir.to_str().unwrap(), host];
        all.extend_from_slice(args);
        let out = self.script(&all);
        assert!(
            out.status.success(),
            "berth on {host} {args:?}: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The App's Replicas not being deleted: name -> (node, phase, ready).
    pub fn replicas(&self, app: &str) -> BTreeMap<String, (String, String, bool)> {
        let out = self.kubectl_ok(&[
            "get",
            "replicas",
            "-l",
            &format!("berth.dev/app={app}"),
            "-o",
            "json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["metadata"]["deletionTimestamp"].is_null())
            .map(|r| {
                (
                    r["metadata"]["name"].as_str().unwrap().to_string(),
                    (
                        r["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                        r["status"]["phase"].as_str().unwrap_or("").to_string(),
                        r["status"]["ready"].as_bool().unwrap_or(false),
                    ),
                )
            })
            .collect()
    }

    /// The App's Replicas running and ready: (name, node).
    pub fn running(&self, app: &str) -> Vec<(String, String)> {
        self.replicas(app)
            .into_iter()
            .filter(|(_, (_, phase, ready))| phase == "Running" && *ready)
            .map(|(n, (node, ..))| (n, node))
            .collect()
    }

    /// Every Replica of any App, as `kubectl get -o name` says, deleting or not.
    pub fn all_replicas(&self, app: &str) -> Vec<String> {
        self.kubectl_ok(&[
            "get",
            "replicas",
            "-l",
            &format!("berth.dev/app={app}"),
            "-o",
            "name",
        ])
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// Polls `check` until it holds, for at most `timeout`; the message on a timeout shows
    /// the Replicas and the hosts.
    pub fn wait_for(&self, what: &str, timeout: Duration, check: impl FnMut() -> bool) {
        wait_until(what, timeout, check, || {
            format!(
                "replicas:\n{}\nhosts:\n{}\nthe controller's last words:\n{}",
                text(&self.kubectl(&["get", "replicas", "-o", "wide"])),
                text(&self.kubectl(&["get", "berthnodes", "-o", "wide"])),
                self.log_tail("controller.log", 15)
            )
        });
    }

    /// The last `n` lines of a log in the cluster's directory.
    pub fn log_tail(&self, log: &str, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Names of the containers on `host` (running or not).
    pub fn containers(&self, host: &str) -> BTreeSet<String> {
        let table = self.berth(host, &["ps", "-a"]);
        table
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().last())
            .map(str::to_string)
            .collect()
    }

    /// The containers of the App's Replicas (in namespace default) on `host`, by name:
    /// `default.<app>-<revision hash>-<slot>` (an App named `<app>-<hex>` would pass too:
    /// the tests give their Apps names that do not nest so).
    pub fn app_containers(&self, host: &str, app: &str) -> BTreeSet<String> {
        let prefix = format!("default.{app}-");
        self.containers(host)
            .into_iter()
            .filter(|c| {
                c.strip_prefix(&prefix).is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
                })
            })
            .collect()
    }

    /// How many containers of the App there are over all hosts.
    pub fn app_container_count(&self, app: &str) -> usize {
        HOSTS
            .iter()
            .map(|h| self.app_containers(h, app).len())
            .sum()
    }

    pub fn container_json(&self, host: &str, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.berth(host, &["inspect", name])).unwrap();
        v[0].clone()
    }

    /// The status of the host's Ready condition: True, False, Unknown or "" (none yet).
    pub fn node_ready(&self, host: &str) -> String {
        let out = self.kubectl(&[
            "get",
            "berthnode",
            host,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What of this cluster is left on the machine: network namespaces, links in the
    /// root namespace, processes, cgroups, its directory. Empty once it is down.
    pub fn leftovers(&self) -> Vec<String> {
        leftovers(&self.dir, &self.id)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.up {
            let mut live = live();
            live.retain(|d| d != &self.dir);
            let out = run_script(&["down", self.dir.to_str().unwrap()], &[]);
            if !out.status.success() {
                eprintln!("cluster down: {}", text(&out));
            }
        }
    }
}

fn names(dir: &str, matches: impl Fn(&str) -> bool) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| matches(n))
                .map(|n| format!("{dir}/{n}"))
                .collect()
        })
        .unwrap_or_default()
}

/// See [`Cluster::leftovers`].
pub fn leftovers(dir: &Path, id: &str) -> Vec<String> {
    let mut left = Vec::new();
    let host_prefix = format!("berth-{id}-");
    left.extend(names("/run/netns", |n| n.starts_with(&host_prefix)));
    let veth_prefix = format!("vc{id}");
    let bridge = format!("bc{id}");
    left.extend(names("/sys/class/net", |n| {
        n == bridge || n.starts_with(&veth_prefix)
    }));
    // cgroup v1 hierarchies, or v2 at the top.
    left.extend(names("/sys/fs/cgroup", |n| n.starts_with(&host_prefix)));
    for hierarchy in names("/sys/fs/cgroup", |_| true) {
        left.extend(names(&hierarchy, |n| n.starts_with(&host_prefix)));
    }
    let dir_text = dir.display().to_string();
    let me = std::process::id().to_string();
    for pid in names("/proc", |n| {
        n.bytes().all(|b| b.is_ascii_digit()) && n != me
    }) {
        let environ = std::fs::read(format!("{pid}/environ")).unwrap_or_default();
        let cmdline = std::fs::read(format!("{pid}/cmdline")).unwrap_or_default();
        let ours = environ.split(|b| *b == 0).any(|e| {
            let e = String::from_utf8_lossy(e);
            e == format!("BERTH_CLUSTER_DIR={dir_text}")
                || e.starts_with(&format!("BERTH_ROOT={dir_text}/"))
        }) || String::from_utf8_lossy(&cmdline).contains(&format!("{dir_text}/"));
        if ours {
            left.push(format!(
                "process {pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    if dir.exists() {
        left.push(dir_text);
    }
    left
}
