//! What runs in the container's first process between `clone` and `execve`: the root
//! filesystem, mounts, devices, masking, hostname, limits, identity and capabilities.
//! It runs in a freshly cloned child of a single-threaded parent, reports any failure
//! over a close-on-exec pipe (so a successful `execve` reads as end-of-file), and never
//! returns.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_sys::syscall::{FileKind, Linux, MOUNT_ATTR_RDONLY, Syscall};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::stat::{Mode, SFlag, makedev};
use nix::unistd::{Gid, Uid, dup2_stderr, dup2_stdin, dup2_stdout};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::mounts::{self, Plan};
use crate::program::ReadyToExec;

/// Exit codes Docker uses for a process that could not be started.
pub const EXIT_NOT_FOUND: i32 = 127;
pub const EXIT_CANNOT_EXEC: i32 = 126;
pub const EXIT_SETUP_FAILED: i32 = 125;

/// A failure before the container's program started: the exit code it maps to and a
/// message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    pub code: i32,
    pub message: String,
}

impl std::error::Error for StartError {}

impl StartError {
    /// A failure of the set-up step `what` (exit code 125, as Docker's).
    pub fn setup(what: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        StartError {
            code: EXIT_SETUP_FAILED,
            message: format!("{what}: {err}"),
        }
    }

    /// `code` then the message: the wire format of the error pipe.
    pub fn encode(&self) -> Vec<u8> {
        format!("{}\n{}", self.code, self.message).into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> StartError {
        let text = String::from_utf8_lossy(bytes);
        let (code, message) = text.split_once('\n').unwrap_or(("125", &text));
        StartError {
            code: code.parse().unwrap_or(EXIT_SETUP_FAILED),
            message: message.to_string(),
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub(crate) trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, StartError>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, StartError> {
        self.map_err(|e| StartError::setup(what(), e))
    }
}

/// Where the container's root filesystem comes from: the image's unpacked layers
/// (lowest first) stacked under a private upper directory with overlayfs.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Rootfs {
    pub layers_dir: PathBuf,
    /// Layer directory names inside `layers_dir`, lowest first.
    pub layers: Vec<String>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where the overlay is mounted (inside the container's mount namespace only).
    pub merged: PathBuf,
}

/// Everything the child needs, prepared by the parent before `clone`.
pub struct InitArgs<'a> {
    pub spec: &'a Spec,
    /// The overlay to mount as the root; `None`: the spec's `root.path`, an absolute
    /// directory prepared by the caller (an OCI bundle's rootfs).
    pub rootfs: Option<&'a Rootfs>,
    /// The container's stdin, stdout and stderr.
    pub stdio: [BorrowedFd<'a>; 3],
    /// `-t`: the console socket over which the container's terminal goes to the monitor.
    pub console: Option<OwnedFd>,
    /// The parent writes one byte here once the child is in its cgroup.
    pub go: OwnedFd,
    /// The child writes one byte here when it is set up and waits only for `start`.
    pub ready: OwnedFd,
    /// One byte read from here lets the child exec its program (`start`).
    pub start: OwnedFd,
    /// Close-on-exec; a failure is written here before exiting.
    pub errors: OwnedFd,
}

/// The body of the container's first process. Never returns.
pub fn container_init(args: InitArgs<'_>) -> ! {
    let err = match start_container(&args) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    fail(args.errors, err)
}

fn fail(errors: OwnedFd, err: StartError) -> ! {
    let _ = File::from(errors).write_all(&err.encode());
    berth_sys::process::exit_now(err.code)
}

/// Resets what the child inherited from the monitor: blocked signals (the monitor takes
/// them through a signalfd) and ignored ones (Rust ignores SIGPIPE), so the program
/// starts with the defaults it expects.
pub fn reset_signals() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            berth_sys::signal::set_default(sig);
        }
    }
}

fn set_stdio(fds: [BorrowedFd<'_>; 3]) -> Result<(), StartError> {
    dup2_stdin(fds[0]).ctx(|| "setting up stdin".into())?;
    dup2_stdout(fds[1]).ctx(|| "setting up stdout".into())?;
    dup2_stderr(fds[2]).ctx(|| "setting up stderr".into())?;
    Ok(())
}

fn has_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == typ))
}

fn start_container(args: &InitArgs<'_>) -> Result<std::convert::Infallible, StartError> {
    let sys = &Linux;
    set_stdio(args.stdio)?;
    reset_signals();
    sys.setsid().ctx(|| "setsid".into())?;

    let mut byte = [0u8; 1];
    if !matches!(
        File::from(args.go.try_clone().ctx(|| "sync pipe".into())?).read(&mut byte),
        Ok(1)
    ) {
        // The parent gave up on us (it failed to set up the cgroup, or died).
        berth_sys::process::exit_now(EXIT_SETUP_FAILED)
    }
    let ready = set_up(sys, args.spec, args.rootfs, args.console.as_ref())?;
    // Created: everything is in place but the program. Say so, then wait for start.
    File::from(args.ready.try_clone().ctx(|| "ready pipe".into())?)
        .write_all(b"r")
        .ctx(|| "reporting the container created".into())?;
    let mut byte = [0u8; 1];
    match File::from(args.start.try_clone().ctx(|| "start gate".into())?).read(&mut byte) {
        Ok(1) => ready.exec(sys),
        // Deleted before it was started.
        _ => berth_sys::process::exit_now(EXIT_SETUP_FAILED),
    }
}

/// The container's set-up, once it is in its cgroup: namespaces finished, the root
/// filesystem and its mounts, devices, masked and read-only paths, hostname, terminal,
/// then the program's limits, identity and capabilities. What is left is `execve`.
pub(crate) fn set_up(
    sys: &dyn Syscall,
    spec: &Spec,
    rootfs: Option<&Rootfs>,
    console: Option<&OwnedFd>,
) -> Result<ReadyToExec, StartError> {
    if has_namespace(spec, LinuxNamespaceType::Cgroup) {
        sys.unshare(CloneFlags::CLONE_NEWCGROUP)
            .ctx(|| "creating the cgroup namespace".into())?;
    }
    if has_namespace(spec, LinuxNamespaceType::Network) {
        sys.loopback_up()
            .ctx(|| "bringing up the loopback interface".into())?;
    }

    sys.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None,
    )
    .ctx(|| "making the host's mounts private to the container".into())?;
    let root = match rootfs {
        Some(rootfs) => {
            mount_rootfs(sys, rootfs)?;
            rootfs.merged.clone()
        }
        None => bind_root(sys, spec)?,
    };

    let plans = spec
        .mounts()
        .iter()
        .flatten()
        .map(mounts::plan)
        .collect::<Result<Vec<_>, _>>()
        .ctx(|| "reading the spec's mounts".into())?;
    // Host paths are opened before the host's root disappears; they are attached after
    // pivot_root, where every path resolves inside the container's root.
    let mut trees = Vec::new();
    for p in &plans {
        if let Plan::Bind {
            source, recursive, ..
        } = p
        {
            let source = Path::new(source);
            let what = || format!("bind mount source {}", source.display());
            let is_dir = sys.file_kind(source, true).ctx(what)? == FileKind::Directory;
            let tree = sys.open_tree(source, *recursive).ctx(what)?;
            trees.push(Some((tree, is_dir)));
        } else {
            trees.push(None);
        }
    }

    enter_rootfs(sys, &root)?;
    for (p, tree) in plans.iter().zip(trees) {
        apply_mount(sys, p, tree)?;
    }
    let linux = spec.linux().as_ref();
    create_devices(sys, spec)?;
    for path in linux
        .and_then(|l| l.masked_paths().as_ref())
        .into_iter()
        .flatten()
    {
        mask_path(sys, Path::new(path))?;
    }
    for path in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        readonly_path(sys, Path::new(path))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        sys.mount_setattr(Path::new("/"), false, MOUNT_ATTR_RDONLY)
            .ctx(|| "making the root filesystem read-only".into())?;
    }
    if let Some(hostname) = spec.hostname() {
        sys.sethostname(hostname)
            .ctx(|| format!("setting hostname {hostname}"))?;
    }
    if let Some(console) = console {
        attach_terminal(console)?;
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| StartError::setup("spec", "no process"))?;
    crate::program::prepare(sys, process, true)
}

/// An OCI bundle's root directory, bind-mounted onto itself so that it is a mount
/// point `pivot_root` accepts.
fn bind_root(sys: &dyn Syscall, spec: &Spec) -> Result<PathBuf, StartError> {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .ok_or_else(|| StartError::setup("spec", "no root.path"))?;
    sys.mount(
        Some(&root),
        &root,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .ctx(|| format!("bind-mounting the root filesystem {}", root.display()))?;
    Ok(root)
}

/// A terminal from the container's own `/dev/ptmx` becomes this process's stdio and
/// controlling terminal; its master side goes to the monitor over `console`.
pub fn attach_terminal(console: &OwnedFd) -> Result<(), StartError> {
    let master =
        crate::tty::open_as_stdio().ctx(|| "opening a terminal in the container".into())?;
    // fd 0 is the terminal just set up.
    berth_sys::tty::make_controlling(berth_sys::fd::stdin())
        .ctx(|| "making the terminal the container's".into())?;
    crate::tty::send(console, &master).ctx(|| "handing the terminal to the monitor".into())
}

fn mount_rootfs(sys: &dyn Syscall, rootfs: &Rootfs) -> Result<(), StartError> {
    // Relative lowerdir names keep the option string short however deep the image:
    // mount(2) takes at most one page of options.
    sys.chdir(&rootfs.layers_dir)
        .ctx(|| format!("entering {}", rootfs.layers_dir.display()))?;
    let lower: Vec<&str> = rootfs.layers.iter().rev().map(String::as_str).collect();
    let options = format!(
        // No redirects or metadata-only copies, whatever the module's defaults: the
        // upper directory must hold a step's whole change when a build packs it.
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
        lower.join(":"),
        rootfs.upper.display(),
        rootfs.work.display()
    );
    sys.mount(
        Some(Path::new("overlay")),
        &rootfs.merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .ctx(|| {
        format!(
            "mounting the root filesystem (overlay of {} layers)",
            lower.len()
        )
    })
}

fn enter_rootfs(sys: &dyn Syscall, root: &Path) -> Result<(), StartError> {
    sys.chdir(root)
        .ctx(|| format!("entering {}", root.display()))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it
    // leaves only the container's root, with no path back to the host's.
    let here = Path::new(".");
    sys.pivot_root(here, here).ctx(|| "pivot_root".into())?;
    sys.umount2(here, MntFlags::MNT_DETACH)
        .ctx(|| "detaching the host's root".into())?;
    sys.chdir(Path::new("/")).ctx(|| "chdir /".into())
}

pub(crate) fn mkdir_all(sys: &dyn Syscall, path: &Path) -> Result<(), StartError> {
    sys.mkdir_all(path, 0o755)
        .ctx(|| format!("creating {}", path.display()))
}

/// A mount target must not resolve into /proc or /sys when it was not asked to be
/// there: an image could otherwise aim a symlink at kernel interfaces.
fn check_target(sys: &dyn Syscall, destination: &str) -> Result<(), StartError> {
    let real = sys
        .canonicalize(Path::new(destination))
        .ctx(|| format!("resolving mount target {destination}"))?;
    for special in ["/proc", "/sys"] {
        if real.starts_with(special) && !Path::new(destination).starts_with(special) {
            return Err(StartError::setup(
                format!("mount target {destination}"),
                format!("resolves to {} inside {special}; refusing", real.display()),
            ));
        }
    }
    Ok(())
}

/// Sets the propagation the mount at `target` asked for, if any.
fn propagate(
    sys: &dyn Syscall,
    target: &Path,
    propagation: Option<MsFlags>,
) -> Result<(), StartError> {
    match propagation {
        Some(p) => sys
            .mount(None, target, None, p, None)
            .ctx(|| format!("setting propagation of {}", target.display())),
        None => Ok(()),
    }
}

fn apply_mount(
    sys: &dyn Syscall,
    plan: &Plan,
    tree: Option<(OwnedFd, bool)>,
) -> Result<(), StartError> {
    match (plan, tree) {
        (
            Plan::Bind {
                destination,
                recursive,
                attrs,
                propagation,
                ..
            },
            Some((tree, is_dir)),
        ) => {
            let target = Path::new(destination);
            if is_dir {
                mkdir_all(sys, target)?;
            } else if sys.file_kind(target, false).is_err() {
                if let Some(parent) = target.parent() {
                    mkdir_all(sys, parent)?;
                }
                sys.create_file(target)
                    .ctx(|| format!("creating mount target {destination}"))?;
            }
            check_target(sys, destination)?;
            sys.move_mount(tree.as_fd(), target)
                .ctx(|| format!("mounting {destination}"))?;
            if *attrs != 0 {
                sys.mount_setattr(target, *recursive, *attrs)
                    .ctx(|| format!("setting options of {destination}"))?;
            }
            propagate(sys, target, *propagation)
        }
        (
            Plan::Filesystem {
                fstype,
                source,
                destination,
                flags,
                data,
                propagation,
            },
            None,
        ) => {
            let target = Path::new(destination);
            mkdir_all(sys, target)?;
            check_target(sys, destination)?;
            let data = (!data.is_empty()).then_some(data.as_str());
            sys.mount(
                Some(Path::new(source)),
                target,
                Some(fstype.as_str()),
                *flags,
                data,
            )
            .ctx(|| format!("mounting {fstype} at {destination}"))?;
            propagate(sys, target, *propagation)
        }
        _ => unreachable!("bind plans always come with a tree, filesystems never"),
    }
}

/// The character devices every container gets whatever its spec lists, as the OCI
/// runtime spec requires: path, major and minor numbers.
pub const DEFAULT_DEVICES: [(&str, i64, i64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

fn make_device(
    sys: &dyn Syscall,
    path: &Path,
    kind: SFlag,
    mode: Mode,
    (major, minor): (i64, i64),
    owner: (Option<Uid>, Option<Gid>),
) -> Result<(), StartError> {
    let _ = sys.remove_file(path);
    sys.mknod(path, kind, mode, makedev(major as u64, minor as u64))
        .ctx(|| format!("creating {}", path.display()))?;
    // mknod applies the umask; the spec's mode is what the device must have.
    sys.chmod(path, mode.bits())
        .ctx(|| format!("chmod {}", path.display()))?;
    sys.chown(path, owner.0, owner.1)
        .ctx(|| format!("chown {}", path.display()))
}

fn create_devices(sys: &dyn Syscall, spec: &Spec) -> Result<(), StartError> {
    let devices = spec.linux().as_ref().and_then(|l| l.devices().as_ref());
    for d in devices.into_iter().flatten() {
        let kind = match d.typ() {
            oci_spec::runtime::LinuxDeviceType::B => SFlag::S_IFBLK,
            oci_spec::runtime::LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        make_device(
            sys,
            d.path(),
            kind,
            Mode::from_bits_truncate(d.file_mode().unwrap_or(0o666)),
            (d.major(), d.minor()),
            (d.uid().map(Uid::from_raw), d.gid().map(Gid::from_raw)),
        )?;
    }
    let listed = |path: &str| {
        devices
            .into_iter()
            .flatten()
            .any(|d| d.path() == Path::new(path))
    };
    for (path, major, minor) in DEFAULT_DEVICES {
        if !listed(path) {
            let root = (Some(Uid::from_raw(0)), Some(Gid::from_raw(0)));
            make_device(
                sys,
                Path::new(path),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                (major, minor),
                root,
            )?;
        }
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
        ("/dev/core", "/proc/kcore"),
    ] {
        match sys.symlink(Path::new(target), Path::new(link)) {
            Ok(()) => {}
            Err(e) if e.errno() == Some(Errno::EEXIST) => {}
            Err(e) => return Err(StartError::setup(format!("creating {link}"), e)),
        }
    }
    Ok(())
}

fn mask_path(sys: &dyn Syscall, path: &Path) -> Result<(), StartError> {
    let kind = match sys.file_kind(path, false) {
        Ok(kind) => kind,
        Err(_) => return Ok(()),
    };
    let result = if kind == FileKind::Directory {
        sys.mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )
    } else {
        sys.mount(
            Some(Path::new("/dev/null")),
            path,
            None,
            MsFlags::MS_BIND,
            None,
        )
    };
    result.ctx(|| format!("masking {}", path.display()))
}

fn readonly_path(sys: &dyn Syscall, path: &Path) -> Result<(), StartError> {
    if sys.file_kind(path, false).is_err() {
        return Ok(());
    }
    sys.mount(
        Some(path),
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .ctx(|| format!("making {} read-only", path.display()))?;
    sys.mount_setattr(path, true, MOUNT_ATTR_RDONLY)
        .ctx(|| format!("making {} read-only", path.display()))
}

#[cfg(test)]
mod tests;
