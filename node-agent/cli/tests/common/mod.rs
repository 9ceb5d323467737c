//! A berth installation of its own for each test: its own root, run directory and
//! cgroup parent, a busybox base image, and a check that nothing was left behind.

#![allow(dead_code)] // each test crate uses a different part of this module

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use berth_engine::Paths;
use std::time::{Duration, Instant};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// A tarball of a busybox root filesystem, made once per test binary by
/// `scripts/busybox-rootfs.sh` (needs Debian's busybox-static).
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests run real containers and must run as root"
        );
        let dir = std::env::temp_dir().join(format!("berth-test-rootfs-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let tar = dir.join("busybox-rootfs.tar");
        let script = repo().join("scripts/busybox-rootfs.sh");
        let out = Command::new(script).arg(&tar).output().unwrap();
        assert!(
            out.status.success(),
            "busybox-rootfs.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tar
    })
}

/// The repository. Cargo says where at run time too: a test binary built in another
/// checkout sharing the target directory, and not rebuilt, would point at that one.
pub fn repo() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.join("../..")
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A berth installation of its own: everything host-global it touches (cgroup parent,
/// default bridge and subnet, nftables table) is named for it alone.
pub struct Env {
    _dir: tempfile::TempDir,
    pub paths: Paths,
}

/// The result of one berth command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Env {
    /// A fresh installation with `base:latest` imported from the busybox tarball.
    pub fn new() -> Env {
        let env = Env::empty();
        env.ok(&["import", busybox_tar().to_str().unwrap(), "base:latest"]);
        env
    }

    /// A fresh installation with no images.
    pub fn empty() -> Env {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir()
            .unwrap();
        let mut paths = Paths::at(dir.path().join("root"), dir.path().join("run"));
        paths.cgroup_parent = format!("berth-test-{pid}-{n}");
        paths.bridge = format!("bt{:x}x{n:x}", pid % 0x10000);
        paths.bridge_subnet = format!("10.{}.{}.0/24", 100 + pid % 100, n % 256);
        paths.nft_table = format!("berth_test_{pid}_{n}");
        Env { _dir: dir, paths }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_of(Path::new(BERTH), args)
    }

    /// A command running `program` (a copy of berth) on this installation.
    pub fn command_of(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args).envs(self.paths.env()).stdin(Stdio::null());
        // Registry credentials and CAs of this installation's own, never the host's.
        c.env("XDG_CONFIG_HOME", self.config_home())
            .env("DOCKER_CONFIG", self.file("docker-config"))
            .env_remove("BERTH_INSECURE_REGISTRIES");
        c
    }

    pub fn paths(&self) -> Paths {
        self.paths.clone()
    }

    /// `$XDG_CONFIG_HOME` of this installation's commands (berth's `auth.json`, `certs.d`).
    pub fn config_home(&self) -> PathBuf {
        self.file("config")
    }

    /// A path for a test's own files, removed with the installation.
    pub fn file(&self, name: &str) -> PathBuf {
        self._dir.path().join(name)
    }

    pub fn berth(&self, args: &[&str]) -> Run {
        self.berth_with(args, None)
    }

    /// Runs a command with `stdin` as its standard input.
    pub fn berth_with(&self, args: &[&str], stdin: Option<&[u8]>) -> Run {
        let mut command = self.command(args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command.spawn().unwrap();
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        child.wait_with_output().unwrap().into()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, None)
    }

    pub fn ok_with(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let r = self.berth_with(args, stdin);
        assert_eq!(r.code, 0, "berth {args:?} failed: {}{}", r.stdout, r.stderr);
        r.stdout
    }

    /// Each command must fail, its error containing the given text; `run` with Docker's
    /// code for berth's own failures (125) and, unless the command line parser refused
    /// it, a message of one line.
    pub fn expect_errors(&self, cases: &[(&[&str], &str)]) {
        for (args, message) in cases {
            let r = self.berth(args);
            assert_ne!(r.code, 0, "{args:?} succeeded");
            assert!(
                r.stderr.contains(message),
                "{args:?}: expected {message:?} in {:?}",
                r.stderr
            );
            if args[0] == "run" {
                assert_eq!(r.code, 125, "{args:?}");
            }
            if !message.starts_with("unexpected argument") {
                assert_eq!(
                    r.stderr.lines().count(),
                    1,
                    "{args:?}: one line: {:?}",
                    r.stderr
                );
            }
        }
    }

    /// Runs a command that must fail with `code`; returns its stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let r = self.berth(args);
        assert_eq!(
            r.code, code,
            "berth {args:?}: stdout {}, stderr {}",
            r.stdout, r.stderr
        );
        r.stderr
    }

    /// `berth inspect` of one object, parsed.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", name]);
        let mut v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0].take()
    }

    /// Polls `check` until it holds or `timeout` passes.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        fs::read_dir("/sys/fs/cgroup")
            .unwrap()
            .flatten()
            .map(|e| e.path().join(&self.paths.cgroup_parent))
            .filter(|p| p.exists())
            .collect()
    }

    /// Everything berth made for containers is gone: no container directory, no mount
    /// mentioning this installation, no cgroup below its parent, no process running
    /// from it. Call at the end of a test, after removing its containers.
    pub fn assert_clean(&self) {
        let containers: Vec<_> = fs::read_dir(self.paths.root.join("containers"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name())
                    .filter(|n| n.len() == 64)
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            containers.is_empty(),
            "container directories left: {containers:?}"
        );
        let root = self.paths.root.to_string_lossy().into_owned();
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(&root)).collect();
        assert!(leaked.is_empty(), "mounts left: {leaked:?}");
        for dir in self.cgroup_dirs() {
            let children: Vec<_> = fs::read_dir(&dir)
                .unwrap()
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name())
                .collect();
            assert!(
                children.is_empty(),
                "cgroups left under {}: {children:?}",
                dir.display()
            );
        }
        let procs: Vec<String> = fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            .filter_map(|e| {
                fs::read(e.path().join("cmdline"))
                    .ok()
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            })
            .filter(|c| c.contains(&root))
            .collect();
        assert!(procs.is_empty(), "processes left: {procs:?}");
        self.assert_network_clean();
    }

    /// No port on any bridge of this installation, no address still allocated, no port
    /// still published.
    pub fn assert_network_clean(&self) {
        self.check_network(true);
    }

    /// As `assert_network_clean`, for containers that still exist (and keep addresses).
    pub fn assert_network_clean_but_addresses(&self) {
        self.check_network(false);
    }

    fn check_network(&self, addresses: bool) {
        let networks = berth_net::network::Networks::new(self.paths.net())
            .list()
            .unwrap();
        for n in &networks {
            // A dead container's veth goes with its network namespace, which the kernel
            // tears down in the background: give it a moment.
            let brif = format!("/sys/class/net/{}/brif", n.bridge);
            let ports = || -> Vec<_> {
                fs::read_dir(&brif)
                    .map(|d| d.flatten().map(|e| e.file_name()).collect())
                    .unwrap_or_default()
            };
            let deadline = Instant::now() + Duration::from_secs(5);
            while !ports().is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let ports = ports();
            assert!(
                ports.is_empty(),
                "veths left on bridge {}: {ports:?}",
                n.bridge
            );
            let ipam = self
                .paths
                .root
                .join("networks")
                .join(&n.name)
                .join("ipam.json");
            let allocations = fs::read_to_string(&ipam).unwrap_or_else(|_| "{}".into());
            assert!(
                !addresses || allocations.trim() == "{}",
                "addresses left on network {}: {allocations}",
                n.name
            );
        }
        for map in ["ports", "addr_ports"] {
            let out = Command::new("nft")
                .args(["list", "map", "inet", &self.paths.nft_table, map])
                .output()
                .unwrap();
            let listing = String::from_utf8_lossy(&out.stdout);
            assert!(
                !listing.contains("elements"),
                "published ports left in {}: {listing}",
                self.paths.nft_table
            );
        }
    }
}

impl Drop for Env {
    /// Best effort, also when a test failed: kill and remove every container, then the
    /// (empty) cgroup parents.
    fn drop(&mut self) {
        let ids = self.berth(&["ps", "-a", "-q", "--no-trunc"]).stdout;
        for id in ids.lines() {
            let _ = self.berth(&["rm", "-f", id]);
        }
        for dir in self.cgroup_dirs() {
            let _ = fs::remove_dir(dir);
        }
        berth_engine::endpoint::teardown(&self.paths);
    }
}

/// Fails the test, saying what to install, when `tool` is missing.
pub fn require(tool: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        found.is_ok_and(|s| s.success()),
        "{tool} is needed for this interop test: apt-get install {tool}"
    );
}

/// Runs a peer tool that must succeed; returns its stdout.
pub fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Podman images named for one test, removed when it ends however it ends.
pub struct PodmanImages(pub Vec<String>);

impl PodmanImages {
    pub fn name(&mut self, test: &str) -> String {
        let name = format!("localhost/berth-{test}-{}:v1", std::process::id());
        self.0.push(name.clone());
        name
    }
}

impl Drop for PodmanImages {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("podman").args(["rmi", "-f", name]).output();
        }
    }
}

/// `podman run --rm` of `image` without a network; returns its output.
pub fn podman_run(image: &str, cmd: &[&str]) -> String {
    // This host's hard limits are below podman's defaults: ask for ones it can set.
    let mut args = vec![
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        image,
    ];
    args.extend_from_slice(cmd);
    tool("podman", &args)
}
