//! Reading OCI mount entries: fstab-style options to `mount(2)` flags, mount attributes
//! and filesystem data. Pure.

use nix::mount::MsFlags;
use oci_spec::runtime::Mount;

use berth_sys::syscall::{
    MOUNT_ATTR_NODEV, MOUNT_ATTR_NOEXEC, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("mount at {0}: a bind mount needs a source")]
    NoSource(String),
    #[error("mount at {0}: no filesystem type given")]
    NoType(String),
    #[error("mount destination \"{0}\" must be an absolute path")]
    RelativeDestination(String),
}

/// How one OCI mount entry is carried out.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// A host path made visible at `destination` (attached from a detached tree).
    Bind {
        source: String,
        destination: String,
        recursive: bool,
        /// `MOUNT_ATTR_*` to set once attached.
        attrs: u64,
        propagation: Option<MsFlags>,
    },
    /// A new filesystem instance (proc, tmpfs, sysfs, devpts, mqueue, cgroup2 ...).
    Filesystem {
        fstype: String,
        source: String,
        destination: String,
        flags: MsFlags,
        data: String,
        propagation: Option<MsFlags>,
    },
}

fn flag(option: &str) -> Option<(bool, MsFlags)> {
    Some(match option {
        "ro" => (true, MsFlags::MS_RDONLY),
        "rw" => (false, MsFlags::MS_RDONLY),
        "nosuid" => (true, MsFlags::MS_NOSUID),
        "suid" => (false, MsFlags::MS_NOSUID),
        "nodev" => (true, MsFlags::MS_NODEV),
        "dev" => (false, MsFlags::MS_NODEV),
        "noexec" => (true, MsFlags::MS_NOEXEC),
        "exec" => (false, MsFlags::MS_NOEXEC),
        "sync" => (true, MsFlags::MS_SYNCHRONOUS),
        "async" => (false, MsFlags::MS_SYNCHRONOUS),
        "noatime" => (true, MsFlags::MS_NOATIME),
        "atime" => (false, MsFlags::MS_NOATIME),
        "nodiratime" => (true, MsFlags::MS_NODIRATIME),
        "diratime" => (false, MsFlags::MS_NODIRATIME),
        "relatime" => (true, MsFlags::MS_RELATIME),
        "norelatime" => (false, MsFlags::MS_RELATIME),
        "strictatime" => (true, MsFlags::MS_STRICTATIME),
        "nostrictatime" => (false, MsFlags::MS_STRICTATIME),
        "bind" => (true, MsFlags::MS_BIND),
        "rbind" => (true, MsFlags::MS_BIND | MsFlags::MS_REC),
        _ => return None,
    })
}

fn propagation(option: &str) -> Option<MsFlags> {
    Some(match option {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// The `MOUNT_ATTR_*` equivalent of the per-mount flags in `flags`.
fn attrs(flags: MsFlags) -> u64 {
    [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
    ]
    .into_iter()
    .filter(|(f, _)| flags.contains(*f))
    .fold(0, |acc, (_, a)| acc | a)
}

pub fn plan(m: &Mount) -> Result<Plan, Error> {
    let destination = m.destination().to_string_lossy().into_owned();
    if !destination.starts_with('/') {
        return Err(Error::RelativeDestination(destination));
    }
    let mut flags = MsFlags::empty();
    let mut prop = None;
    let mut data = Vec::new();
    for o in m.options().iter().flatten() {
        if let Some((set, f)) = flag(o) {
            flags.set(f, set);
        } else if let Some(p) = propagation(o) {
            prop = Some(p);
        } else {
            data.push(o.as_str());
        }
    }
    let fstype = m.typ().clone().unwrap_or_default();
    let source = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned());
    if fstype == "bind" || flags.contains(MsFlags::MS_BIND) {
        return Ok(Plan::Bind {
            source: source.ok_or_else(|| Error::NoSource(destination.clone()))?,
            destination,
            recursive: flags.contains(MsFlags::MS_REC),
            attrs: attrs(flags),
            propagation: prop,
        });
    }
    if fstype.is_empty() {
        return Err(Error::NoType(destination));
    }
    Ok(Plan::Filesystem {
        source: source.unwrap_or_else(|| fstype.clone()),
        fstype,
        destination,
        flags,
        data: data.join(","),
        propagation: prop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::MountBuilder;

    fn m(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(source)
            .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap()
    }

    #[test]
    fn filesystem_flags_and_data() {
        let p = plan(&m(
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
        ))
        .unwrap();
        assert_eq!(
            p,
            Plan::Filesystem {
                fstype: "devpts".into(),
                source: "devpts".into(),
                destination: "/dev/pts".into(),
                flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
                data: "newinstance,ptmxmode=0666,mode=0620,gid=5".into(),
                propagation: None,
            }
        );
    }

    #[test]
    fn later_options_override_earlier() {
        let Plan::Filesystem { flags, .. } =
            plan(&m("/x", "tmpfs", "tmpfs", &["ro", "rw", "nodev"])).unwrap()
        else {
            panic!("not a filesystem")
        };
        assert_eq!(flags, MsFlags::MS_NODEV);
    }

    #[test]
    fn binds_get_attributes_and_propagation() {
        let p = plan(&m(
            "/data",
            "bind",
            "/srv/data",
            &["rbind", "rprivate", "ro", "nosuid"],
        ))
        .unwrap();
        assert_eq!(
            p,
            Plan::Bind {
                source: "/srv/data".into(),
                destination: "/data".into(),
                recursive: true,
                attrs: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
                propagation: Some(MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            }
        );
        // "bind" in the options makes a bind mount whatever the type says
        assert!(matches!(
            plan(&m("/d", "none", "/s", &["bind"])).unwrap(),
            Plan::Bind {
                recursive: false,
                ..
            }
        ));
    }

    #[test]
    fn bad_entries_are_rejected() {
        assert_eq!(
            plan(&m("rel", "tmpfs", "tmpfs", &[])),
            Err(Error::RelativeDestination("rel".into()))
        );
        let no_type = MountBuilder::default().destination("/x").build().unwrap();
        assert_eq!(plan(&no_type), Err(Error::NoType("/x".into())));
    }
}
