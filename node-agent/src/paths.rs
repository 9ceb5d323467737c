//! Where berth keeps its state on this host.

use std::path::{Path, PathBuf};

/// The two roots of a berth installation: persistent state (`$BERTH_ROOT`, default
/// `/var/lib/berth`) and runtime state that does not survive a reboot (`$BERTH_RUN`,
/// default `/run/berth`). Tests and each e2e host use roots of their own.
#[derive(Clone, Debug)]
pub struct Paths {
    pub root: PathBuf,
    pub run: PathBuf,
    /// The cgroup (relative to each hierarchy's root) under which containers get theirs.
    pub cgroup_parent: String,
}

impl Paths {
    /// An installation at `root` and `run`, with the default cgroup parent.
    pub fn at(root: PathBuf, run: PathBuf) -> Self {
        Self {
            root,
            run,
            cgroup_parent: "berth".to_string(),
        }
    }

    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map_or_else(|| PathBuf::from(default), PathBuf::from)
        };
        Self {
            root: var("BERTH_ROOT", "/var/lib/berth"),
            run: var("BERTH_RUN", "/run/berth"),
            cgroup_parent: var("BERTH_CGROUP_PARENT", "berth")
                .to_string_lossy()
                .into_owned(),
        }
    }

    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }

    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }

    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// Temporary files that must land on the same filesystem as the store (for rename).
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}
