//! The container's program, between set-up and `execve`: its limits, identity,
//! capabilities and working directory, and the lookup of the executable with Docker's
//! exit codes (126, 127). Shared by the container's first process and `exec`.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_sys::syscall::{CapSet, FileKind, Syscall};
use nix::errno::Errno;
use nix::sys::resource::Resource;
use nix::unistd::{AccessFlags, Gid, Uid};
use oci_spec::runtime::Process;

use crate::init::{Context, EXIT_CANNOT_EXEC, EXIT_NOT_FOUND, StartError, mkdir_all};

fn capability_set(set: Option<&HashSet<oci_spec::runtime::Capability>>) -> caps::CapsHashSet {
    set.into_iter()
        .flatten()
        .filter_map(|c| format!("CAP_{c}").parse::<caps::Capability>().ok())
        .collect()
}

/// Applies the process's rlimits, identity, capabilities and no_new_privs, changes to
/// its cwd and executes it. Shared by the container's first process and `exec`.
/// With `create_cwd`, a missing working directory is created first (as Docker does
/// for `-w` and WORKDIR).
pub fn exec_process(
    sys: &dyn Syscall,
    process: &Process,
    create_cwd: bool,
) -> Result<std::convert::Infallible, StartError> {
    prepare(sys, process, create_cwd)?.exec(sys)
}

/// A process with its identity, limits and working directory in place and its
/// program found: all that is left is `execve`.
pub(crate) struct ReadyToExec {
    argv0: String,
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

impl ReadyToExec {
    pub(crate) fn exec(self, sys: &dyn Syscall) -> Result<std::convert::Infallible, StartError> {
        sys.cloexec_from(3).ctx(|| "close_range".into())?;
        let err = sys.execve(&self.program, &self.argv, &self.envp);
        Err(exec_error(&self.argv0, err))
    }
}

pub(crate) fn prepare(
    sys: &dyn Syscall,
    process: &Process,
    create_cwd: bool,
) -> Result<ReadyToExec, StartError> {
    for r in process.rlimits().iter().flatten() {
        sys.setrlimit(rlimit_resource(r.typ()), r.soft(), r.hard())
            .ctx(|| {
                format!(
                    "setting {:?} to {}:{} (the hard limit may exceed what this host allows)",
                    r.typ(),
                    r.soft(),
                    r.hard()
                )
            })?;
    }
    let cwd = process.cwd();
    if create_cwd && sys.file_kind(cwd, false).is_err() {
        mkdir_all(sys, cwd)?;
    }

    let caps = process.capabilities().as_ref();
    let bounding = capability_set(caps.and_then(|c| c.bounding().as_ref()));
    for cap in sys.supported_capabilities() {
        if !bounding.contains(&cap) {
            sys.drop_bounding(cap)
                .ctx(|| format!("dropping {cap} from the bounding set"))?;
        }
    }
    let user = process.user();
    sys.set_keepcaps(true)
        .ctx(|| "prctl(PR_SET_KEEPCAPS)".into())?;
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    sys.setgroups(&groups)
        .ctx(|| "setting supplementary groups".into())?;
    let (uid, gid) = (Uid::from_raw(user.uid()), Gid::from_raw(user.gid()));
    sys.setresgid(gid)
        .ctx(|| format!("switching to gid {gid}"))?;
    sys.setresuid(uid)
        .ctx(|| format!("switching to uid {uid}"))?;
    let set = |set, name: &str, value| {
        sys.set_capabilities(set, &capability_set(value))
            .ctx(|| format!("setting {name} capabilities"))
    };
    set(
        CapSet::Effective,
        "effective",
        caps.and_then(|c| c.effective().as_ref()),
    )?;
    set(
        CapSet::Permitted,
        "permitted",
        caps.and_then(|c| c.permitted().as_ref()),
    )?;
    set(
        CapSet::Inheritable,
        "inheritable",
        caps.and_then(|c| c.inheritable().as_ref()),
    )?;
    sys.clear_ambient()
        .ctx(|| "clearing ambient capabilities".into())?;
    for cap in capability_set(caps.and_then(|c| c.ambient().as_ref())) {
        sys.raise_ambient(cap)
            .ctx(|| format!("raising ambient {cap}"))?;
    }
    if process.no_new_privileges() == Some(true) {
        sys.set_no_new_privs()
            .ctx(|| "prctl(PR_SET_NO_NEW_PRIVS)".into())?;
    }
    sys.chdir(cwd)
        .ctx(|| format!("changing to working directory {}", cwd.display()))?;

    let args = process.args().as_deref().unwrap_or_default();
    let argv0 = args
        .first()
        .ok_or_else(|| StartError::setup("spec", "process.args is empty"))?;
    let env = process.env().as_deref().unwrap_or_default();
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(crate::DEFAULT_PATH);
    let program = find_executable(sys, argv0, path_var)?;
    let cstr = |s: &str| {
        CString::new(s)
            .map_err(|_| StartError::setup("argument", format!("{s:?} contains a NUL byte")))
    };
    let argv = args
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = env.iter().map(|e| cstr(e)).collect::<Result<Vec<_>, _>>()?;
    let program = CString::new(program.as_os_str().as_bytes())
        .map_err(|_| StartError::setup("program", "contains a NUL byte"))?;
    Ok(ReadyToExec {
        argv0: argv0.clone(),
        program,
        argv,
        envp,
    })
}

fn exec_error(argv0: &str, err: Errno) -> StartError {
    match err {
        Errno::ENOENT => StartError {
            code: EXIT_NOT_FOUND,
            message: format!("exec: \"{argv0}\": no such file or directory"),
        },
        Errno::EACCES | Errno::EPERM => StartError {
            code: EXIT_CANNOT_EXEC,
            message: format!("exec: \"{argv0}\": permission denied"),
        },
        e => StartError {
            code: EXIT_CANNOT_EXEC,
            message: format!("exec: \"{argv0}\": {}", e.desc()),
        },
    }
}

/// `$PATH` lookup as execvp does it, with Docker's error messages.
fn find_executable(sys: &dyn Syscall, argv0: &str, path_var: &str) -> Result<PathBuf, StartError> {
    if argv0.contains('/') {
        // Checked here, not left to execve, so that a created container is one that
        // can start (as runc does).
        return match sys.file_kind(Path::new(argv0), true) {
            Err(e) if e.errno() == Some(Errno::ENOENT) => Err(exec_error(argv0, Errno::ENOENT)),
            _ => Ok(PathBuf::from(argv0)),
        };
    }
    let mut denied = None;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(argv0);
        if sys.file_kind(&candidate, true).ok() != Some(FileKind::Regular) {
            continue;
        }
        if sys.access(&candidate, AccessFlags::X_OK).is_ok() {
            return Ok(candidate);
        }
        denied.get_or_insert(candidate);
    }
    match denied {
        Some(_) => Err(exec_error(argv0, Errno::EACCES)),
        None => Err(StartError {
            code: EXIT_NOT_FOUND,
            message: format!("exec: \"{argv0}\": executable file not found in $PATH"),
        }),
    }
}

fn rlimit_resource(typ: oci_spec::runtime::PosixRlimitType) -> Resource {
    use oci_spec::runtime::PosixRlimitType as T;
    match typ {
        T::RlimitCpu => Resource::RLIMIT_CPU,
        T::RlimitFsize => Resource::RLIMIT_FSIZE,
        T::RlimitData => Resource::RLIMIT_DATA,
        T::RlimitStack => Resource::RLIMIT_STACK,
        T::RlimitCore => Resource::RLIMIT_CORE,
        T::RlimitRss => Resource::RLIMIT_RSS,
        T::RlimitNproc => Resource::RLIMIT_NPROC,
        T::RlimitNofile => Resource::RLIMIT_NOFILE,
        T::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        T::RlimitAs => Resource::RLIMIT_AS,
        T::RlimitLocks => Resource::RLIMIT_LOCKS,
        T::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        T::RlimitNice => Resource::RLIMIT_NICE,
        T::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        T::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_sys::syscall::Linux;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn path_lookup_reports_docker_codes() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        fs::write(&exe, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        assert_eq!(find_executable(&Linux, "tool", &path).unwrap(), exe);
        assert_eq!(
            find_executable(&Linux, "missing", &path).unwrap_err().code,
            EXIT_NOT_FOUND
        );
        assert_eq!(
            find_executable(&Linux, exe.to_str().unwrap(), "").unwrap(),
            exe
        );
        assert_eq!(
            find_executable(&Linux, "./rel/x", &path).unwrap_err().code,
            EXIT_NOT_FOUND,
            "a path is checked too"
        );
        fs::write(dir.path().join("data"), "").unwrap();
        assert_eq!(
            find_executable(&Linux, "data", &path).unwrap_err().code,
            EXIT_CANNOT_EXEC
        );
    }
}
