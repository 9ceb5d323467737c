//! From "what the user asked for" to an OCI runtime `Spec`: pure functions, no I/O.
//!
//! The defaults follow Docker's (moby `oci/defaults.go`): the capability set, mounts,
//! devices, masked and read-only paths. Where berth differs on purpose, it says so.

use std::collections::HashSet;
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice,
    LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimit, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};

use berth_net::NetworkMode;
use berth_runtime::user::ExecUser;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "no command specified: the image has no ENTRYPOINT or CMD; give one after the image name"
    )]
    NoCommand,
    #[error("unknown capability \"{0}\" (see capabilities(7) for the names)")]
    UnknownCapability(String),
    #[error("building the OCI runtime spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
}

/// The capabilities Docker grants by default.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

pub use berth_runtime::DEFAULT_PATH;

/// The process's argv, combining the image's ENTRYPOINT and CMD with the run's
/// `--entrypoint` and arguments exactly as Docker does: arguments replace CMD, and an
/// `--entrypoint` (even an empty one) replaces ENTRYPOINT and drops the image's CMD.
pub fn command(
    image_entrypoint: &[String],
    image_cmd: &[String],
    entrypoint: Option<&str>,
    args: &[String],
) -> Result<Vec<String>, Error> {
    let (entrypoint, default_cmd): (Vec<String>, &[String]) = match entrypoint {
        Some("") => (Vec::new(), &[]),
        Some(e) => (vec![e.to_string()], &[]),
        None => (image_entrypoint.to_vec(), image_cmd),
    };
    let cmd = if args.is_empty() { default_cmd } else { args };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd.iter().cloned()).collect();
    if argv.is_empty() {
        return Err(Error::NoCommand);
    }
    Ok(argv)
}

/// The environment: the image's, then `-e` values (later wins per key), then PATH,
/// HOSTNAME and HOME where nothing set them.
pub fn environment(
    image_env: &[String],
    run_env: &[String],
    hostname: &str,
    home: &str,
) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let key = |kv: &str| kv.split_once('=').map_or(kv, |(k, _)| k).to_string();
    for kv in image_env.iter().chain(run_env) {
        let k = key(kv);
        env.retain(|e| key(e) != k);
        env.push(kv.clone());
    }
    let defaults = [
        ("PATH", DEFAULT_PATH),
        ("HOSTNAME", hostname),
        ("HOME", home),
    ];
    for (k, v) in defaults.into_iter().rev() {
        if !env.iter().any(|e| key(e) == k) {
            env.insert(0, format!("{k}={v}"));
        }
    }
    env
}

/// Parses a capability name as Docker accepts it: any case, with or without `CAP_`.
pub fn parse_capability(name: &str) -> Result<Capability, Error> {
    let upper = name.to_ascii_uppercase();
    Capability::from_str(upper.strip_prefix("CAP_").unwrap_or(&upper))
        .map_err(|_| Error::UnknownCapability(name.to_string()))
}

/// Docker's default set, plus `--cap-add`, minus `--cap-drop` (`ALL` works in both).
pub fn capabilities(add: &[String], drop: &[String]) -> Result<HashSet<Capability>, Error> {
    let all = || {
        caps::all()
            .into_iter()
            .filter_map(|c| parse_capability(&c.to_string()).ok())
    };
    let mut set: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
    for name in drop {
        if name.eq_ignore_ascii_case("all") {
            set.clear();
        } else {
            set.remove(&parse_capability(name)?);
        }
    }
    for name in add {
        if name.eq_ignore_ascii_case("all") {
            set.extend(all());
        } else {
            set.insert(parse_capability(name)?);
        }
    }
    Ok(set)
}

/// A host path (named volume or bind mount) made visible in the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// cgroup limits. `None` means unlimited.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub memory: Option<i64>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
}

/// Everything `generate` needs, already resolved and validated.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub hostname: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: ExecUser,
    pub capabilities: HashSet<Capability>,
    pub read_only: bool,
    pub terminal: bool,
    pub resources: Resources,
    pub rlimits: Vec<PosixRlimit>,
    pub network: NetworkMode,
    pub binds: Vec<BindMount>,
    /// Directory holding this container's `hostname`, `hosts` and `resolv.conf`.
    pub etc_dir: PathBuf,
    pub cgroups_path: String,
    /// Mount the cgroup2 filesystem at /sys/fs/cgroup (a pure cgroup v2 host).
    pub cgroup2: bool,
}

const CPU_PERIOD_US: u64 = 100_000;

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, Error> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn char_device(path: &str, major: i64, minor: i64) -> Result<LinuxDevice, Error> {
    Ok(LinuxDeviceBuilder::default()
        .path(path)
        .typ(LinuxDeviceType::C)
        .major(major)
        .minor(minor)
        .file_mode(0o666u32)
        .uid(0u32)
        .gid(0u32)
        .build()?)
}

fn device_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup, Error> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    Ok(b.build()?)
}

fn mounts(cfg: &RunConfig) -> Result<Vec<Mount>, Error> {
    let mut m = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
    ];
    // sysfs can only be mounted by the owner of a network namespace; with the host's,
    // bind the host's /sys read-only instead (as runc does).
    m.push(match cfg.network {
        NetworkMode::Host => mount(
            "/sys",
            "bind",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        )?,
        NetworkMode::None | NetworkMode::Network(_) => mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
    });
    if cfg.cgroup2 {
        m.push(mount(
            "/sys/fs/cgroup",
            "cgroup2",
            "cgroup",
            &["nosuid", "noexec", "nodev", "ro"],
        )?);
    }
    for file in ["hostname", "hosts", "resolv.conf"] {
        let source = cfg.etc_dir.join(file);
        m.push(mount(
            &format!("/etc/{file}"),
            "bind",
            &source.to_string_lossy(),
            &["rbind", "rprivate"],
        )?);
    }
    for b in &cfg.binds {
        let mut options = vec!["rbind", "rprivate"];
        if b.read_only {
            options.push("ro");
        }
        m.push(mount(
            &b.destination,
            "bind",
            &b.source.to_string_lossy(),
            &options,
        )?);
    }
    Ok(m)
}

/// The OCI runtime spec for a container. `root.path` is left to the runtime, which
/// stacks the image's layers there.
pub fn generate(cfg: &RunConfig) -> Result<Spec, Error> {
    let caps = cfg.capabilities.clone();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let user = UserBuilder::default()
        .uid(cfg.user.uid)
        .gid(cfg.user.gid)
        .additional_gids(cfg.user.additional_gids.clone())
        .build()?;
    let process = ProcessBuilder::default()
        .terminal(cfg.terminal)
        .user(user)
        .args(cfg.args.clone())
        .env(cfg.env.clone())
        .cwd(&cfg.cwd)
        .capabilities(capabilities)
        .rlimits(cfg.rlimits.clone())
        // Docker leaves this off unless asked; berth always sets it: no container
        // process should gain privileges through setuid binaries or file capabilities.
        .no_new_privileges(true)
        .build()?;

    let mut namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ];
    if cfg.network != NetworkMode::Host {
        namespaces.push(LinuxNamespaceType::Network);
    }
    let namespaces = namespaces
        .into_iter()
        .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
        .collect::<Result<Vec<_>, _>>()?;

    let devices = berth_runtime::init::DEFAULT_DEVICES
        .iter()
        .map(|(path, major, minor)| char_device(path, *major, *minor))
        .collect::<Result<Vec<_>, _>>()?;
    let mut device_rules = vec![
        device_rule(false, LinuxDeviceType::A, None, None, "rwm")?,
        device_rule(true, LinuxDeviceType::C, None, None, "m")?,
        device_rule(true, LinuxDeviceType::B, None, None, "m")?,
        device_rule(true, LinuxDeviceType::C, Some(5), Some(2), "rwm")?, // /dev/ptmx
        device_rule(true, LinuxDeviceType::C, Some(136), None, "rwm")?,  // /dev/pts/*
    ];
    for d in &devices {
        device_rules.push(device_rule(
            true,
            LinuxDeviceType::C,
            Some(d.major()),
            Some(d.minor()),
            "rwm",
        )?);
    }

    let mut resources = LinuxResourcesBuilder::default().devices(device_rules);
    if let Some(limit) = cfg.resources.memory {
        resources = resources.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    if let Some(cpus) = cfg.resources.cpus {
        let quota = (cpus * CPU_PERIOD_US as f64).round() as i64;
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD_US)
                .build()?,
        );
    }
    if let Some(limit) = cfg.resources.pids {
        resources = resources.pids(LinuxPidsBuilder::default().limit(limit).build()?);
    }

    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .devices(devices)
        .resources(resources.build()?)
        .cgroups_path(&cfg.cgroups_path)
        .masked_paths(MASKED_PATHS.map(String::from).to_vec())
        .readonly_paths(READONLY_PATHS.map(String::from).to_vec())
        .rootfs_propagation("rslave")
        .build()?;

    Ok(SpecBuilder::default()
        .version("1.2.0")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(cfg.read_only)
                .build()?,
        )
        .hostname(&cfg.hostname)
        .process(process)
        .mounts(mounts(cfg)?)
        .linux(linux)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn command_combines_like_docker() {
        let ep = s(&["./boot.sh"]);
        let cmd = s(&["--port", "5000"]);
        // ENTRYPOINT + CMD
        assert_eq!(
            command(&ep, &cmd, None, &[]).unwrap(),
            s(&["./boot.sh", "--port", "5000"])
        );
        // run arguments replace CMD, keep ENTRYPOINT
        assert_eq!(
            command(&ep, &cmd, None, &s(&["-x"])).unwrap(),
            s(&["./boot.sh", "-x"])
        );
        // only CMD
        assert_eq!(command(&[], &s(&["sh"]), None, &[]).unwrap(), s(&["sh"]));
        assert_eq!(
            command(&[], &s(&["sh"]), None, &s(&["echo", "hi"])).unwrap(),
            s(&["echo", "hi"])
        );
        // --entrypoint drops the image's CMD too
        assert_eq!(
            command(&ep, &cmd, Some("/bin/env"), &[]).unwrap(),
            s(&["/bin/env"])
        );
        assert_eq!(
            command(&ep, &cmd, Some("ls"), &s(&["-l"])).unwrap(),
            s(&["ls", "-l"])
        );
        // --entrypoint "" clears it, arguments alone remain
        assert_eq!(
            command(&ep, &cmd, Some(""), &s(&["true"])).unwrap(),
            s(&["true"])
        );
        // shell-form entries arrive as the builder stored them
        let shell = s(&["/bin/sh", "-c", "exec gunicorn app"]);
        assert_eq!(
            command(&shell, &[], None, &s(&["ignored?"])).unwrap().len(),
            4
        );
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        assert!(matches!(
            command(&[], &[], None, &[]),
            Err(Error::NoCommand)
        ));
        assert!(matches!(
            command(&s(&["x"]), &[], Some(""), &[]),
            Err(Error::NoCommand)
        ));
    }

    #[test]
    fn environment_merges_by_key_and_adds_defaults() {
        let env = environment(
            &s(&["PATH=/opt/bin", "A=1", "B=2"]),
            &s(&["B=3", "C=4", "A=5"]),
            "abc",
            "/root",
        );
        assert_eq!(
            env,
            s(&[
                "HOSTNAME=abc",
                "HOME=/root",
                "PATH=/opt/bin",
                "B=3",
                "C=4",
                "A=5"
            ])
        );
        let env = environment(&[], &s(&["HOME=/x"]), "h", "/root");
        assert_eq!(
            env,
            s(&[&format!("PATH={DEFAULT_PATH}"), "HOSTNAME=h", "HOME=/x"])
        );
    }

    #[test]
    fn capability_names_in_any_form() {
        for name in ["net_admin", "NET_ADMIN", "CAP_NET_ADMIN", "cap_net_admin"] {
            assert_eq!(parse_capability(name).unwrap(), Capability::NetAdmin);
        }
        assert!(matches!(parse_capability("FLY"), Err(Error::UnknownCapability(n)) if n == "FLY"));
    }

    #[test]
    fn capability_set_add_and_drop() {
        let set = capabilities(&[], &[]).unwrap();
        assert_eq!(set.len(), 14);
        assert!(!set.contains(&Capability::SysAdmin));
        let set = capabilities(&s(&["SYS_ADMIN"]), &s(&["chown", "CAP_KILL"])).unwrap();
        assert!(set.contains(&Capability::SysAdmin));
        assert!(!set.contains(&Capability::Chown) && !set.contains(&Capability::Kill));
        let set = capabilities(&s(&["NET_BIND_SERVICE"]), &s(&["ALL"])).unwrap();
        assert_eq!(
            set.into_iter().collect::<Vec<_>>(),
            vec![Capability::NetBindService]
        );
        assert!(capabilities(&s(&["ALL"]), &[]).unwrap().len() > 35);
    }

    fn config() -> RunConfig {
        RunConfig {
            hostname: "abc".into(),
            args: s(&["sh"]),
            env: s(&["PATH=/bin"]),
            cwd: "/".into(),
            user: ExecUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![1000, 1001],
                home: "/".into(),
            },
            capabilities: capabilities(&[], &[]).unwrap(),
            read_only: false,
            terminal: false,
            resources: Resources {
                memory: Some(64 << 20),
                cpus: Some(1.5),
                pids: Some(100),
            },
            rlimits: vec![],
            network: NetworkMode::None,
            binds: vec![BindMount {
                source: "/data".into(),
                destination: "/x".into(),
                read_only: true,
            }],
            etc_dir: "/c/etc".into(),
            cgroups_path: "berth/abc".into(),
            cgroup2: false,
        }
    }

    #[test]
    fn spec_carries_limits_user_and_isolation() {
        let spec = generate(&config()).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let res = linux.resources().as_ref().unwrap();
        assert_eq!(res.memory().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(150_000));
        assert_eq!(res.pids().unwrap().limit(), 100);
        let ns: Vec<_> = linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect();
        assert!(ns.contains(&LinuxNamespaceType::Network) && ns.contains(&LinuxNamespaceType::Pid));
        let p = spec.process().as_ref().unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
        assert_eq!(p.no_new_privileges(), Some(true));
        let mounts = spec.mounts().as_ref().unwrap();
        let x = mounts
            .iter()
            .find(|m| m.destination().to_str() == Some("/x"))
            .unwrap();
        assert!(x.options().as_ref().unwrap().contains(&"ro".to_string()));
        assert!(mounts.iter().any(|m| m.typ().as_deref() == Some("sysfs")));
    }

    #[test]
    fn host_network_shares_the_namespace_and_binds_sys() {
        let mut cfg = config();
        cfg.network = NetworkMode::Host;
        let spec = generate(&cfg).unwrap();
        let ns = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap();
        assert!(ns.iter().all(|n| n.typ() != LinuxNamespaceType::Network));
        let sys = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination().to_str() == Some("/sys"))
            .unwrap();
        assert_eq!(sys.typ().as_deref(), Some("bind"));
    }
}
