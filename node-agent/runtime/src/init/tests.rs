//! The container's set-up, run against the recording fake: which calls, with which
//! arguments, in which order, and where a failure stops it.

use std::collections::HashSet;

use berth_sys::syscall::{Call, CapSet, MOUNT_ATTR_RDONLY, RecordingSyscall};
use nix::sys::resource::Resource;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceBuilder, LinuxDeviceType,
    LinuxNamespaceBuilder, MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder,
    RootBuilder, SpecBuilder, UserBuilder,
};

use super::*;

#[test]
fn start_errors_round_trip_through_the_pipe_format() {
    let e = StartError {
        code: 127,
        message: "exec: \"x\": executable file not found in $PATH".into(),
    };
    assert_eq!(StartError::decode(&e.encode()), e);
    assert_eq!(StartError::decode(b"garbage").code, EXIT_SETUP_FAILED);
}

fn mount(typ: &str, source: &str, destination: &str, options: &[&str]) -> oci_spec::runtime::Mount {
    MountBuilder::default()
        .typ(typ)
        .source(source)
        .destination(destination)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .unwrap()
}

fn caps(list: &[Capability]) -> HashSet<Capability> {
    list.iter().copied().collect()
}

/// A container with a bundle root, a proc mount, a directory and a file bound in, one
/// device of its own, masked and read-only paths, limits and a non-root user.
fn spec() -> Spec {
    let namespaces = [
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Cgroup,
    ]
    .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build().unwrap());
    let fuse = LinuxDeviceBuilder::default()
        .path("/dev/fuse")
        .typ(LinuxDeviceType::C)
        .major(10)
        .minor(229)
        .file_mode(0o600u32)
        .uid(0u32)
        .gid(0u32)
        .build()
        .unwrap();
    let linux = LinuxBuilder::default()
        .namespaces(namespaces.to_vec())
        .devices(vec![fuse])
        .masked_paths(["/proc/kcore", "/proc/acpi", "/proc/gone"].map(String::from))
        .readonly_paths(["/proc/sys", "/proc/absent"].map(String::from))
        .build()
        .unwrap();
    let process = ProcessBuilder::default()
        .args(["/bin/app", "--serve"].map(String::from))
        .env(["PATH=/bin".to_string()])
        .cwd("/work")
        .user(
            UserBuilder::default()
                .uid(1000u32)
                .gid(1001u32)
                .additional_gids(vec![10u32, 20])
                .build()
                .unwrap(),
        )
        .rlimits(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(1024u64)
                .hard(2048u64)
                .build()
                .unwrap(),
        ])
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps(&[Capability::Chown, Capability::NetBindService]))
                .effective(caps(&[Capability::NetBindService]))
                .permitted(caps(&[Capability::NetBindService]))
                .inheritable(caps(&[]))
                .ambient(caps(&[Capability::NetBindService]))
                .build()
                .unwrap(),
        )
        .no_new_privileges(true)
        .build()
        .unwrap();
    SpecBuilder::default()
        .root(
            RootBuilder::default()
                .path("/bundle/rootfs")
                .readonly(true)
                .build()
                .unwrap(),
        )
        .hostname("box")
        .mounts(vec![
            mount("proc", "proc", "/proc", &["nosuid"]),
            mount("bind", "/srv/data", "/data", &["rbind", "ro"]),
            mount("bind", "/srv/hosts", "/etc/hosts", &["bind"]),
        ])
        .linux(linux)
        .process(process)
        .build()
        .unwrap()
}

/// The host and container paths `spec()` refers to that exist.
fn fake() -> RecordingSyscall {
    [
        ("/srv/data", FileKind::Directory),
        ("/srv/hosts", FileKind::Regular),
        ("/proc/kcore", FileKind::Regular),
        ("/proc/acpi", FileKind::Directory),
        ("/proc/sys", FileKind::Directory),
        ("/bin/app", FileKind::Regular),
    ]
    .into_iter()
    .fold(RecordingSyscall::new(), |sys, (path, kind)| {
        sys.with_file(path, kind)
    })
}

fn overlay() -> Rootfs {
    Rootfs {
        layers_dir: "/var/lib/berth/layers".into(),
        layers: vec!["base".into(), "app".into()],
        upper: "/c/upper".into(),
        work: "/c/work".into(),
        merged: "/c/merged".into(),
    }
}

/// Runs the set-up of `spec()` on `sys` and returns its calls.
fn run(sys: &RecordingSyscall, rootfs: Option<&Rootfs>) -> Result<Vec<Call>, StartError> {
    set_up(sys, &spec(), rootfs, None).map(|_| sys.calls())
}

fn at(calls: &[Call], call: &Call) -> usize {
    calls
        .iter()
        .position(|c| c == call)
        .unwrap_or_else(|| panic!("{call:?} was not made; calls: {calls:#?}"))
}

fn mount_call(source: Option<&str>, target: &str, fstype: Option<&str>, flags: MsFlags) -> Call {
    Call::Mount {
        source: source.map(PathBuf::from),
        target: target.into(),
        fstype: fstype.map(String::from),
        flags,
        data: None,
    }
}

fn is_pivot(c: &Call) -> bool {
    matches!(c, Call::PivotRoot { .. })
}

#[test]
fn the_overlay_is_mounted_before_pivot_root() {
    let sys = fake();
    let calls = run(&sys, Some(&overlay())).unwrap();
    let overlay = Call::Mount {
        source: Some("overlay".into()),
        target: "/c/merged".into(),
        fstype: Some("overlay".into()),
        flags: MsFlags::empty(),
        data: Some(
            "lowerdir=app:base,upperdir=/c/upper,workdir=/c/work,redirect_dir=off,metacopy=off"
                .into(),
        ),
    };
    assert_eq!(
        calls[..7],
        [
            Call::Unshare(CloneFlags::CLONE_NEWCGROUP),
            Call::LoopbackUp,
            mount_call(None, "/", None, MsFlags::MS_REC | MsFlags::MS_SLAVE),
            // Layer names are relative to the layers directory, topmost first.
            Call::Chdir("/var/lib/berth/layers".into()),
            overlay,
            // The two trees bound in are opened here (see the next test).
            Call::OpenTree {
                path: "/srv/data".into(),
                recursive: true
            },
            Call::OpenTree {
                path: "/srv/hosts".into(),
                recursive: false
            },
        ]
    );
    assert_eq!(
        calls[7..11],
        [
            Call::Chdir("/c/merged".into()),
            Call::PivotRoot {
                new_root: ".".into(),
                put_old: ".".into()
            },
            Call::Umount2 {
                target: ".".into(),
                flags: MntFlags::MNT_DETACH
            },
            Call::Chdir("/".into()),
        ]
    );
}

#[test]
fn a_bundle_root_is_bound_onto_itself_and_entered() {
    let sys = fake();
    let calls = run(&sys, None).unwrap();
    let bind = mount_call(
        Some("/bundle/rootfs"),
        "/bundle/rootfs",
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
    );
    assert!(at(&calls, &bind) < at(&calls, &Call::Chdir("/bundle/rootfs".into())));
    assert!(at(&calls, &Call::Chdir("/bundle/rootfs".into())) < sys.position(is_pivot).unwrap());
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::Mount { fstype: Some(t), .. } if t == "overlay"))
    );
}

#[test]
fn bind_sources_are_opened_before_pivot_root_and_attached_after() {
    let sys = fake();
    let calls = run(&sys, None).unwrap();
    let pivot = sys.position(is_pivot).unwrap();
    let opened = |path: &str| {
        sys.position(|c| matches!(c, Call::OpenTree { path: p, .. } if p == Path::new(path)))
            .unwrap()
    };
    assert!(opened("/srv/data") < pivot && opened("/srv/hosts") < pivot);

    let data = Call::MoveMount {
        tree: "/srv/data".into(),
        target: "/data".into(),
    };
    let hosts = Call::MoveMount {
        tree: "/srv/hosts".into(),
        target: "/etc/hosts".into(),
    };
    assert!(pivot < at(&calls, &data) && at(&calls, &data) < at(&calls, &hosts));
    // A directory source gets a directory to attach to, a file source a file.
    let mkdir = |path: &str| Call::MkdirAll {
        path: path.into(),
        mode: 0o755,
    };
    assert!(at(&calls, &mkdir("/data")) < at(&calls, &data));
    assert!(at(&calls, &mkdir("/etc")) < at(&calls, &Call::CreateFile("/etc/hosts".into())));
    assert!(at(&calls, &Call::CreateFile("/etc/hosts".into())) < at(&calls, &hosts));
    // "ro" is applied to the attached tree, recursively as "rbind" asked.
    let ro = Call::MountSetattr {
        path: "/data".into(),
        recursive: true,
        set: MOUNT_ATTR_RDONLY,
    };
    assert_eq!(at(&calls, &ro), at(&calls, &data) + 1);
    // The proc mount is a new filesystem, made after pivot_root.
    let proc = mount_call(Some("proc"), "/proc", Some("proc"), MsFlags::MS_NOSUID);
    assert!(pivot < at(&calls, &proc));
}

#[test]
fn devices_are_made_before_masking() {
    let sys = fake();
    let calls = run(&sys, None).unwrap();
    let fuse = at(
        &calls,
        &Call::Mknod {
            path: "/dev/fuse".into(),
            kind: SFlag::S_IFCHR,
            mode: Mode::from_bits_truncate(0o600),
            dev: makedev(10, 229),
        },
    );
    // mknod applies the umask: the mode is set again, then the owner.
    assert_eq!(
        calls[fuse + 1..fuse + 3],
        [
            Call::Chmod {
                path: "/dev/fuse".into(),
                mode: 0o600
            },
            Call::Chown {
                path: "/dev/fuse".into(),
                uid: Some(Uid::from_raw(0)),
                gid: Some(Gid::from_raw(0))
            },
        ]
    );
    let made: Vec<&Path> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Mknod { path, .. } => Some(path.as_path()),
            _ => None,
        })
        .collect();
    let defaults = DEFAULT_DEVICES.map(|(path, ..)| Path::new(path));
    assert_eq!(made[0], Path::new("/dev/fuse"));
    assert_eq!(made[1..], defaults);
    let ptmx = Call::Symlink {
        target: "pts/ptmx".into(),
        link: "/dev/ptmx".into(),
    };
    let first_mask = sys
        .position(|c| matches!(c, Call::Mount { target, .. } if target == Path::new("/proc/kcore")))
        .unwrap();
    assert!(at(&calls, &ptmx) < first_mask);
    let last_device = calls
        .iter()
        .rposition(|c| matches!(c, Call::Mknod { .. }))
        .unwrap();
    assert!(last_device < first_mask);
}

#[test]
fn masked_paths_get_dev_null_or_a_read_only_tmpfs() {
    let sys = fake();
    let calls = run(&sys, None).unwrap();
    let kcore = mount_call(Some("/dev/null"), "/proc/kcore", None, MsFlags::MS_BIND);
    let acpi = mount_call(
        Some("tmpfs"),
        "/proc/acpi",
        Some("tmpfs"),
        MsFlags::MS_RDONLY,
    );
    assert_eq!(at(&calls, &acpi), at(&calls, &kcore) + 1);
    // A path the container lacks is left alone.
    assert!(
        sys.position(|c| format!("{c:?}").contains("/proc/gone"))
            .is_none()
    );
}

#[test]
fn read_only_paths_are_bound_then_made_read_only_then_the_root() {
    let sys = fake();
    let calls = run(&sys, None).unwrap();
    let bind = mount_call(
        Some("/proc/sys"),
        "/proc/sys",
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
    );
    let i = at(&calls, &bind);
    assert_eq!(
        calls[i + 1..i + 4],
        [
            Call::MountSetattr {
                path: "/proc/sys".into(),
                recursive: true,
                set: MOUNT_ATTR_RDONLY
            },
            // root.readonly: the root alone, not what is mounted below it.
            Call::MountSetattr {
                path: "/".into(),
                recursive: false,
                set: MOUNT_ATTR_RDONLY
            },
            Call::Sethostname("box".into()),
        ]
    );
    assert!(
        sys.position(|c| format!("{c:?}").contains("/proc/absent"))
            .is_none()
    );
}

#[test]
fn limits_then_groups_gid_uid_then_capabilities_then_no_new_privs() {
    let sys = fake();
    let calls = run(&sys, None).unwrap();
    let start = at(&calls, &Call::Sethostname("box".into())) + 1;
    let (dropped, rest): (Vec<Call>, Vec<Call>) = calls[start..]
        .iter()
        .cloned()
        .partition(|c| matches!(c, Call::DropBounding(_)));
    let net = berth_sys::syscall::Capability::CAP_NET_BIND_SERVICE;
    assert_eq!(
        rest,
        [
            Call::Setrlimit {
                resource: Resource::RLIMIT_NOFILE,
                soft: 1024,
                hard: 2048
            },
            // The working directory is made when missing.
            Call::MkdirAll {
                path: "/work".into(),
                mode: 0o755
            },
            Call::SetKeepcaps(true),
            Call::Setgroups(vec![Gid::from_raw(10), Gid::from_raw(20)]),
            Call::Setresgid(Gid::from_raw(1001)),
            Call::Setresuid(Uid::from_raw(1000)),
            Call::SetCapabilities {
                set: CapSet::Effective,
                caps: vec![net]
            },
            Call::SetCapabilities {
                set: CapSet::Permitted,
                caps: vec![net]
            },
            Call::SetCapabilities {
                set: CapSet::Inheritable,
                caps: vec![]
            },
            Call::ClearAmbient,
            Call::RaiseAmbient(net),
            Call::SetNoNewPrivs,
            Call::Chdir("/work".into()),
        ]
    );
    // Everything outside the bounding set is dropped, before the ids change.
    let kept = [berth_sys::syscall::Capability::CAP_CHOWN, net];
    let expected: HashSet<_> = caps::all()
        .into_iter()
        .filter(|c| !kept.contains(c))
        .collect();
    let dropped_caps: HashSet<_> = dropped
        .iter()
        .map(|c| match c {
            Call::DropBounding(cap) => *cap,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(dropped_caps, expected);
    let last_drop = calls
        .iter()
        .rposition(|c| matches!(c, Call::DropBounding(_)))
        .unwrap();
    assert!(last_drop < at(&calls, &Call::SetKeepcaps(true)));
}

#[test]
fn the_program_is_found_and_executed_with_its_arguments() {
    let sys = fake();
    let ready = set_up(&sys, &spec(), None, None).unwrap();
    let err = ready.exec(&sys).unwrap_err();
    let calls = sys.calls();
    assert_eq!(
        calls[calls.len() - 2..],
        [
            Call::CloexecFrom(3),
            Call::Execve {
                program: "/bin/app".into(),
                argv: vec!["/bin/app".into(), "--serve".into()],
                envp: vec!["PATH=/bin".into()],
            },
        ]
    );
    // The fake cannot exec: its ENOSYS is reported as a failure to exec.
    assert_eq!(err.code, EXIT_CANNOT_EXEC);

    let missing = fake().fail_on(|c| matches!(c, Call::Execve { .. }), Errno::ENOENT);
    let ready = set_up(&missing, &spec(), None, None).unwrap();
    let err = ready.exec(&missing).unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            EXIT_NOT_FOUND,
            "exec: \"/bin/app\": no such file or directory"
        )
    );
}

#[test]
fn a_failing_call_stops_the_set_up_and_names_the_step() {
    type Matcher = fn(&Call) -> bool;
    let cases: [(Matcher, &str); 6] = [
        (is_pivot, "pivot_root"),
        (
            |c| matches!(c, Call::OpenTree { path, .. } if path == Path::new("/srv/data")),
            "bind mount source /srv/data",
        ),
        (
            |c| matches!(c, Call::Mknod { path, .. } if path == Path::new("/dev/null")),
            "creating /dev/null",
        ),
        (
            |c| matches!(c, Call::Mount { target, .. } if target == Path::new("/proc/acpi")),
            "masking /proc/acpi",
        ),
        (
            |c| matches!(c, Call::Sethostname(_)),
            "setting hostname box",
        ),
        (|c| matches!(c, Call::Setresuid(_)), "switching to uid 1000"),
    ];
    for (matches, step) in cases {
        let sys = fake().fail_on(matches, Errno::EPERM);
        let err = run(&sys, None).unwrap_err();
        assert_eq!(err.code, EXIT_SETUP_FAILED, "{step}");
        assert_eq!(
            err.message,
            format!("{step}: EPERM: Operation not permitted")
        );
        // Nothing is done after the failed call.
        let calls = sys.calls();
        assert!(matches(calls.last().unwrap()), "{step}: {calls:#?}");
        assert_eq!(calls.iter().filter(|c| matches(c)).count(), 1, "{step}");
    }
}

#[test]
fn a_mount_target_leading_into_proc_is_refused() {
    let sys = fake().with_resolved("/data", "/proc/sys/kernel");
    let err = run(&sys, None).unwrap_err();
    assert_eq!(
        err.message,
        "mount target /data: resolves to /proc/sys/kernel inside /proc; refusing"
    );
    assert!(
        sys.position(|c| matches!(c, Call::MoveMount { .. }))
            .is_none()
    );
}
