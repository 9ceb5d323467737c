//! Control groups: one per container, on cgroup v1 (one directory per controller, plus
//! the unified hierarchy when the host mounts it beside them) or on a pure cgroup v2
//! host. Limits come from the spec's `linux.resources`.

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no cgroup filesystem is mounted under /sys/fs/cgroup")]
    NoHierarchy,
    #[error("cgroup {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cgroup limit {file}={value} refused by the kernel: {source}")]
    Limit {
        file: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("cgroup {0} still has processes after they were killed")]
    Busy(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The v1 controllers berth knows (each where the host mounts it); a container joins
/// those [`v1_controllers`] picks.
const V1_CONTROLLERS: [&str; 8] = [
    "memory", "cpu", "cpuacct", "pids", "devices", "freezer", "blkio", "cpuset",
];

/// The v1 controllers a container with `resources` joins. Each write of a pid to a v1
/// `cgroup.procs` costs the kernel an RCU grace period (milliseconds on a busy host), so a
/// container joins only the controllers whose limits it has, plus `devices` (its device
/// isolation) and `memory` (so an OOM kill is seen). Pure.
pub fn v1_controllers(resources: Option<&LinuxResources>) -> Vec<&'static str> {
    let mut wanted = vec!["devices", "memory"];
    let Some(r) = resources else {
        return wanted;
    };
    if r.pids().is_some() {
        wanted.push("pids");
    }
    if let Some(cpu) = r.cpu() {
        if cpu.quota().is_some() || cpu.period().is_some() || cpu.shares().is_some() {
            wanted.extend(["cpu", "cpuacct"]);
        }
        if cpu.cpus().is_some() || cpu.mems().is_some() {
            wanted.push("cpuset");
        }
    }
    if r.block_io().is_some() {
        wanted.push("blkio");
    }
    wanted
}

/// Where the host mounts its cgroup hierarchies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// Pure cgroup v2: one tree with every controller.
    V2 { root: PathBuf },
    /// cgroup v1, controller name -> mount point; `unified` is a cgroup2 mount beside
    /// them (without controllers), which containers do not join (it limits nothing),
    /// kept so that cgroups an older berth made there are removed.
    V1 {
        controllers: Vec<(String, PathBuf)>,
        unified: Option<PathBuf>,
    },
}

impl Hierarchy {
    /// Reads `/proc/self/mountinfo`.
    pub fn detect() -> Result<Hierarchy, Error> {
        let info = fs::read_to_string("/proc/self/mountinfo")
            .map_err(io_err(Path::new("/proc/self/mountinfo")))?;
        Self::from_mountinfo(&info).ok_or(Error::NoHierarchy)
    }

    fn from_mountinfo(info: &str) -> Option<Hierarchy> {
        let mut controllers = Vec::new();
        let mut unified = None;
        for line in info.lines() {
            // id parent major:minor root mountpoint options [optional...] - fstype source superopts
            let (pre, post) = line.split_once(" - ")?;
            let mountpoint = PathBuf::from(pre.split(' ').nth(4)?);
            let mut post = post.split(' ');
            let (fstype, _source, superopts) =
                (post.next()?, post.next()?, post.next().unwrap_or(""));
            match fstype {
                "cgroup2" if mountpoint == Path::new("/sys/fs/cgroup") => {
                    return Some(Hierarchy::V2 { root: mountpoint });
                }
                "cgroup2" => unified = Some(mountpoint),
                "cgroup" => {
                    for opt in superopts.split(',') {
                        if V1_CONTROLLERS.contains(&opt)
                            && !controllers.iter().any(|(c, _)| c == opt)
                        {
                            controllers.push((opt.to_string(), mountpoint.clone()));
                        }
                    }
                }
                _ => {}
            }
        }
        if controllers.is_empty() {
            return unified.map(|root| Hierarchy::V2 { root });
        }
        Some(Hierarchy::V1 {
            controllers,
            unified,
        })
    }
}

/// One container's cgroup: `path` (e.g. `berth/<id>`) below each hierarchy root.
#[derive(Clone, Debug)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    path: PathBuf,
}

fn write(file: &Path, value: &str) -> Result<(), Error> {
    fs::write(file, value).map_err(|source| Error::Limit {
        file: file.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

impl Cgroup {
    pub fn new(hierarchy: Hierarchy, path: &str) -> Cgroup {
        Cgroup {
            hierarchy,
            path: PathBuf::from(path.trim_start_matches('/')),
        }
    }

    /// Every directory of this cgroup, one per hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        match &self.hierarchy {
            Hierarchy::V2 { root } => vec![root.join(&self.path)],
            Hierarchy::V1 {
                controllers,
                unified,
            } => {
                let mut dirs: Vec<PathBuf> = Vec::new();
                for (_, mp) in controllers {
                    let d = mp.join(&self.path);
                    if !dirs.contains(&d) {
                        dirs.push(d);
                    }
                }
                dirs.extend(unified.iter().map(|u| u.join(&self.path)));
                dirs
            }
        }
    }

    fn controller_dir(&self, controller: &str) -> Option<PathBuf> {
        match &self.hierarchy {
            Hierarchy::V2 { root } => Some(root.join(&self.path)),
            Hierarchy::V1 { controllers, .. } => controllers
                .iter()
                .find(|(c, _)| c == controller)
                .map(|(_, mp)| mp.join(&self.path)),
        }
    }

    /// Creates the cgroup and applies the limits. On failure nothing is left behind.
    pub fn create(&self, resources: Option<&LinuxResources>) -> Result<(), Error> {
        let result = self.try_create(resources);
        if result.is_err() {
            let _ = self.remove();
        }
        result
    }

    fn try_create(&self, resources: Option<&LinuxResources>) -> Result<(), Error> {
        match &self.hierarchy {
            Hierarchy::V2 { root } => {
                // Controllers must be enabled in every ancestor's subtree_control.
                let mut dir = root.clone();
                for part in self.path.iter() {
                    let available =
                        fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
                    let enable: Vec<String> = ["memory", "cpu", "pids"]
                        .into_iter()
                        .filter(|c| available.split_whitespace().any(|a| a == *c))
                        .map(|c| format!("+{c}"))
                        .collect();
                    if !enable.is_empty() {
                        write(&dir.join("cgroup.subtree_control"), &enable.join(" "))?;
                    }
                    dir.push(part);
                    mkdir(&dir)?;
                }
            }
            Hierarchy::V1 { controllers, .. } => {
                let wanted = v1_controllers(resources);
                for (c, mp) in controllers
                    .iter()
                    .filter(|(c, _)| wanted.contains(&c.as_str()))
                {
                    let d = mp.join(&self.path);
                    fs::create_dir_all(&d).map_err(io_err(&d))?;
                    if c == "cpuset" {
                        init_cpuset(mp, &self.path)?;
                    }
                }
            }
        }
        if let Some(r) = resources {
            self.apply(r)?;
        }
        Ok(())
    }

    fn apply(&self, r: &LinuxResources) -> Result<(), Error> {
        let v2 = matches!(self.hierarchy, Hierarchy::V2 { .. });
        if let (Some(mem), Some(dir)) = (r.memory(), self.controller_dir("memory"))
            && let Some(limit) = mem.limit()
        {
            if v2 {
                write(&dir.join("memory.max"), &limit.to_string())?;
                if let Some(swap) = mem.swap().filter(|s| *s >= limit) {
                    let file = dir.join("memory.swap.max");
                    if file.exists() {
                        write(&file, &(swap - limit).to_string())?;
                    }
                }
            } else {
                write(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
                if let Some(swap) = mem.swap() {
                    let file = dir.join("memory.memsw.limit_in_bytes");
                    if file.exists() {
                        write(&file, &swap.to_string())?;
                    }
                }
            }
        }
        if let (Some(cpu), Some(dir)) = (r.cpu(), self.controller_dir("cpu"))
            && let (Some(quota), Some(period)) = (cpu.quota(), cpu.period())
        {
            if v2 {
                write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
            } else {
                write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
        if let (Some(pids), Some(dir)) = (r.pids(), self.controller_dir("pids")) {
            write(&dir.join("pids.max"), &pids.limit().to_string())?;
        }
        // On v2, device access is controlled by an eBPF program; berth does not
        // install one yet (see docs/runtime.md).
        if let (false, Some(rules), Some(dir)) = (v2, r.devices(), self.controller_dir("devices")) {
            for rule in rules {
                let file = if rule.allow() {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                write(&dir.join(file), &device_rule(rule))?;
            }
        }
        Ok(())
    }

    /// The directories `create` made: those a process of the container joins.
    pub fn joined_dirs(&self) -> Vec<PathBuf> {
        self.dirs().into_iter().filter(|d| d.is_dir()).collect()
    }

    /// Moves `pid` into every hierarchy of this cgroup.
    pub fn add(&self, pid: Pid) -> Result<(), Error> {
        for d in self.joined_dirs() {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Whether the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_killed(&self) -> bool {
        let Some(dir) = self.controller_dir("memory") else {
            return false;
        };
        let file = match self.hierarchy {
            Hierarchy::V2 { .. } => "memory.events",
            Hierarchy::V1 { .. } => "memory.oom_control",
        };
        fs::read_to_string(dir.join(file))
            .map(|s| {
                s.lines().any(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
                })
            })
            .unwrap_or(false)
    }

    /// The processes in this cgroup.
    pub fn pids(&self) -> Vec<Pid> {
        let mut pids: Vec<Pid> = Vec::new();
        for d in self.dirs() {
            for line in fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
            {
                if let Ok(p) = line.trim().parse::<i32>() {
                    let p = Pid::from_raw(p);
                    if !pids.contains(&p) {
                        pids.push(p);
                    }
                }
            }
        }
        pids
    }

    /// Kills every process left in the cgroup, then removes its directories. Absent
    /// directories are fine: removal is idempotent.
    pub fn remove(&self) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(5);
        for d in self.dirs().into_iter().rev() {
            loop {
                match fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        for pid in self.pids() {
                            let _ = kill(pid, Signal::SIGKILL);
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => return Err(Error::Busy(d)),
                    Err(e) => return Err(Error::Io { path: d, source: e }),
                }
            }
        }
        Ok(())
    }
}

fn mkdir(dir: &Path) -> Result<(), Error> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(Error::Io {
            path: dir.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// A new v1 cpuset cgroup starts with no CPUs and no memory nodes, so nothing could
/// join it; copy them down from the parent at each level that lacks them.
fn init_cpuset(mount: &Path, path: &Path) -> Result<(), Error> {
    let mut parent = mount.to_path_buf();
    for part in path.iter() {
        let dir = parent.join(part);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let current = fs::read_to_string(dir.join(file)).unwrap_or_default();
            if current.trim().is_empty() {
                let value = fs::read_to_string(parent.join(file)).map_err(io_err(&parent))?;
                write(&dir.join(file), value.trim())?;
            }
        }
        parent = dir;
    }
    Ok(())
}

/// A v1 `devices.allow`/`devices.deny` line: `c 1:3 rwm`, `a *:* rwm`.
fn device_rule(rule: &LinuxDeviceCgroup) -> String {
    let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
    format!(
        "{} {}:{} {}",
        rule.typ()
            .map_or_else(|| "a".to_string(), |t| t.as_str().to_string()),
        num(rule.major()),
        num(rule.minor()),
        rule.access().as_deref().unwrap_or("rwm")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime shared:5 - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn detects_hybrid_v1_with_unified() {
        let h = Hierarchy::from_mountinfo(HYBRID).unwrap();
        let Hierarchy::V1 {
            controllers,
            unified,
        } = &h
        else {
            panic!("{h:?}")
        };
        let names: Vec<&str> = controllers.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(names, ["cpu", "cpuacct", "memory", "pids"]);
        assert_eq!(
            unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        let cg = Cgroup::new(h, "/berth/abc");
        assert_eq!(cg.dirs().len(), 5);
        assert_eq!(
            cg.controller_dir("memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/berth/abc")
        );
        assert_eq!(cg.controller_dir("devices"), None);
    }

    #[test]
    fn v1_joins_only_the_controllers_a_container_uses() {
        use oci_spec::runtime::{LinuxCpuBuilder, LinuxPidsBuilder, LinuxResourcesBuilder};
        assert_eq!(v1_controllers(None), ["devices", "memory"]);
        let limited = LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(50).build().unwrap())
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000)
                    .period(100_000u64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert_eq!(
            v1_controllers(Some(&limited)),
            ["devices", "memory", "pids", "cpu", "cpuacct"]
        );
    }

    #[test]
    fn detects_pure_v2() {
        let info = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = Hierarchy::from_mountinfo(info).unwrap();
        assert_eq!(
            h,
            Hierarchy::V2 {
                root: "/sys/fs/cgroup".into()
            }
        );
        let cg = Cgroup::new(h, "berth/x");
        assert_eq!(cg.dirs(), vec![PathBuf::from("/sys/fs/cgroup/berth/x")]);
        assert_eq!(
            Hierarchy::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw\n"),
            None
        );
    }

    #[test]
    fn combined_v1_controllers_share_a_directory() {
        let info = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let cg = Cgroup::new(Hierarchy::from_mountinfo(info).unwrap(), "b/c");
        assert_eq!(
            cg.dirs(),
            vec![PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/b/c")]
        );
    }

    #[test]
    fn device_rules_in_v1_syntax() {
        use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType};
        let r = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1i64)
            .minor(3i64)
            .access("rwm")
            .build()
            .unwrap();
        assert_eq!(device_rule(&r), "c 1:3 rwm");
        let r = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .typ(LinuxDeviceType::A)
            .access("rwm")
            .build()
            .unwrap();
        assert_eq!(device_rule(&r), "a *:* rwm");
    }
}
