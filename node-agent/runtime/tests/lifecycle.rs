//! The runtime on its own, through its API on an OCI bundle, the way youki's `contest`
//! drives a runtime: create, start, state, exec, kill, delete, and what each refuses.
//! As root, on a busybox root filesystem.
//!
//! `harness = false`: the runtime forks, which it allows only in a single-threaded
//! process, and libtest runs tests on threads of their own. Each case is reported as
//! libtest would, and the binary fails if any case does.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_runtime::bundle::{Error, Runtime};
use berth_runtime::cgroup::{Cgroup, Hierarchy};
use berth_runtime::exec::Io;
use nix::sys::signal::Signal;
use oci_spec::runtime::{ContainerState, Process, RootBuilder, Spec};

struct Fixture {
    _dir: tempfile::TempDir,
    bundle: PathBuf,
    state_root: PathBuf,
    cgroup_parent: String,
    null: File,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let tar = dir.path().join("busybox.tar");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let made = Command::new(repo.join("scripts/busybox-rootfs.sh"))
            .arg(&tar)
            .output()
            .unwrap();
        assert!(made.status.success(), "busybox-rootfs.sh: {made:?}");
        let untar = Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&rootfs)
            .status()
            .unwrap();
        assert!(untar.success());
        Fixture {
            state_root: dir.path().join("state"),
            cgroup_parent: format!("berth-lifecycle-{}", std::process::id()),
            null: File::options()
                .read(true)
                .write(true)
                .open("/dev/null")
                .unwrap(),
            bundle,
            _dir: dir,
        }
    }

    fn runtime(&self) -> Runtime {
        Runtime::new(&self.state_root, &self.cgroup_parent)
    }

    /// Writes the bundle's config.json: runc's default spec running `script`.
    fn spec(&self, script: &str) {
        let mut spec = Spec::default();
        spec.set_root(Some(
            RootBuilder::default()
                .path("rootfs")
                .readonly(false)
                .build()
                .unwrap(),
        ));
        // A `cgroup` mount (runc's default) is not supported yet: the OCI conformance work
        // adds it. Everything else of the default spec is kept.
        let mounts = spec.mounts().clone().unwrap_or_default();
        spec.set_mounts(Some(
            mounts
                .into_iter()
                .filter(|m| m.typ().as_deref() != Some("cgroup"))
                .collect(),
        ));
        let mut process = spec.process().clone().unwrap();
        process.set_args(Some(vec!["sh".into(), "-c".into(), script.into()]));
        process.set_terminal(Some(false));
        spec.set_process(Some(process));
        spec.save(self.bundle.join("config.json")).unwrap();
    }

    fn create(&self, id: &str) -> Result<oci_spec::runtime::State, Error> {
        let fd = self.null.as_fd();
        self.runtime().create(id, &self.bundle, [fd, fd, fd])
    }

    fn rootfs(&self, name: &str) -> PathBuf {
        self.bundle.join("rootfs").join(name)
    }

    fn status(&self, id: &str) -> ContainerState {
        *self.runtime().state(id).unwrap().status()
    }

    /// Removes what a failed case left behind.
    fn remove_all(&self) {
        for entry in std::fs::read_dir(&self.state_root)
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = self
                .runtime()
                .delete(&entry.file_name().to_string_lossy(), true);
        }
    }

    /// Nothing of the runtime's is left: no state, no cgroup under the parent.
    fn assert_clean(&self) {
        let states: Vec<_> = std::fs::read_dir(&self.state_root)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(states.is_empty(), "state left: {states:?}");
        let parent = Cgroup::new(Hierarchy::detect().unwrap(), &self.cgroup_parent);
        for dir in parent.dirs() {
            let children: Vec<_> = std::fs::read_dir(&dir)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.file_name())
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                children.is_empty(),
                "cgroups left in {}: {children:?}",
                dir.display()
            );
        }
    }
}

fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn exec_process(args: &[&str]) -> Process {
    let mut p = Spec::default().process().clone().unwrap();
    p.set_args(Some(args.iter().map(|a| a.to_string()).collect()));
    p.set_terminal(Some(false));
    p
}

fn create_start_exec_kill_delete(f: &Fixture) {
    f.spec("echo up > /started-1; exec sleep 60");
    let created = f.create("one").unwrap();
    assert_eq!(*created.status(), ContainerState::Created);
    let pid = created.pid().unwrap();
    assert!(pid > 0);
    assert_eq!(created.bundle(), &f.bundle.canonicalize().unwrap());
    assert!(
        !f.rootfs("started-1").exists(),
        "a created container's program has not run"
    );

    f.runtime().start("one").unwrap();
    poll_until("the program runs", || f.rootfs("started-1").exists());
    assert_eq!(f.status("one"), ContainerState::Running);
    assert_eq!(f.runtime().state("one").unwrap().pid(), &Some(pid));

    let code = f
        .runtime()
        .exec(
            "one",
            &exec_process(&["sh", "-c", "test -f /started-1 && exit 7"]),
            &Io::default(),
        )
        .unwrap();
    assert_eq!(
        code, 7,
        "exec runs in the container's root and returns its code"
    );

    f.runtime().kill("one", Signal::SIGKILL).unwrap();
    poll_until("the container stops", || {
        f.status("one") == ContainerState::Stopped
    });
    f.runtime().delete("one", false).unwrap();
    assert!(matches!(f.runtime().state("one"), Err(Error::NotFound(_))));
    f.assert_clean();
}

fn each_step_refuses_the_wrong_state(f: &Fixture) {
    f.spec("exec sleep 60");
    f.create("two").unwrap();
    let refused = |r: Result<(), Error>, status: ContainerState| match r {
        Err(Error::State { status: s, .. }) => assert_eq!(s, status),
        other => panic!("expected a refusal in state {status}, got {other:?}"),
    };
    let exec = f
        .runtime()
        .exec("two", &exec_process(&["true"]), &Io::default());
    assert!(matches!(exec, Err(Error::State { .. })), "{exec:?}");
    f.runtime().start("two").unwrap();
    refused(f.runtime().start("two"), ContainerState::Running);
    refused(f.runtime().delete("two", false), ContainerState::Running);
    // SIGKILL: as PID 1 of its namespace, sleep ignores signals it has no handler for.
    f.runtime().kill("two", Signal::SIGKILL).unwrap();
    poll_until("the container stops", || {
        f.status("two") == ContainerState::Stopped
    });
    refused(
        f.runtime().kill("two", Signal::SIGTERM),
        ContainerState::Stopped,
    );
    refused(f.runtime().start("two"), ContainerState::Stopped);
    f.runtime().delete("two", false).unwrap();
    f.assert_clean();
}

fn delete_kills_a_created_or_forced_container(f: &Fixture) {
    f.spec("exec sleep 60");
    let pid = f.create("three").unwrap().pid().unwrap();
    f.runtime().delete("three", false).unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the created process is gone and reaped"
    );

    f.create("four").unwrap();
    f.runtime().start("four").unwrap();
    f.runtime().delete("four", true).unwrap();
    f.assert_clean();
}

fn bad_input_is_refused_and_leaves_nothing(f: &Fixture) {
    f.spec("exec sleep 60");
    assert!(matches!(f.create("../x"), Err(Error::InvalidId(_))));
    let missing = f
        .runtime()
        .create("five", Path::new("/nonexistent/bundle"), {
            let fd = f.null.as_fd();
            [fd, fd, fd]
        });
    assert!(matches!(missing, Err(Error::Io { .. })), "{missing:?}");
    assert!(matches!(f.runtime().start("five"), Err(Error::NotFound(_))));

    f.create("six").unwrap();
    assert!(matches!(f.create("six"), Err(Error::Exists(_))));
    f.runtime().delete("six", false).unwrap();

    // The program is looked up before the container counts as created.
    let mut spec = Spec::load(f.bundle.join("config.json")).unwrap();
    let mut process = spec.process().clone().unwrap();
    process.set_args(Some(vec!["/no/such/program".into()]));
    spec.set_process(Some(process));
    spec.save(f.bundle.join("config.json")).unwrap();
    match f.create("seven") {
        Err(Error::Start { source, .. }) => {
            assert_eq!(source.code, 127);
            assert!(source.message.contains("/no/such/program"), "{source}");
        }
        other => panic!("expected a start error, got {other:?}"),
    }
    f.assert_clean();
}

/// A scenario: its name and its body.
type Case = (&'static str, fn(&Fixture));

fn main() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these tests run real containers and must run as root"
    );
    let fixture = Fixture::new();
    let cases: [Case; 4] = [
        (
            "create_start_exec_kill_delete",
            create_start_exec_kill_delete,
        ),
        (
            "each_step_refuses_the_wrong_state",
            each_step_refuses_the_wrong_state,
        ),
        (
            "delete_kills_a_created_or_forced_container",
            delete_kills_a_created_or_forced_container,
        ),
        (
            "bad_input_is_refused_and_leaves_nothing",
            bad_input_is_refused_and_leaves_nothing,
        ),
    ];
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut failed = Vec::new();
    let mut passed = 0;
    println!();
    for (name, case) in cases {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let result = std::panic::catch_unwind(|| case(&fixture));
        fixture.remove_all();
        match result {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(name);
            }
        }
    }
    let parent = Cgroup::new(Hierarchy::detect().unwrap(), &fixture.cgroup_parent);
    let _ = parent.remove();
    println!(
        "\ntest result: {}. {passed} passed; {} failed",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}
