//! Where berth keeps its state on this host.

use std::path::PathBuf;

/// A berth installation: where its state lives and the names it uses for things that are
/// global to the host. Persistent state lives under `$BERTH_ROOT` (default
/// `/var/lib/berth`), runtime state that does not survive a reboot under `$BERTH_RUN`
/// (default `/run/berth`). Tests and each e2e host use installations of their own, with
/// their own cgroup parent, default bridge, subnet and nftables table.
#[derive(Clone, Debug)]
pub struct Paths {
    pub root: PathBuf,
    pub run: PathBuf,
    /// The cgroup (relative to each hierarchy's root) under which containers get theirs.
    pub cgroup_parent: String,
    /// The default network's bridge interface and subnet.
    pub bridge: String,
    pub bridge_subnet: String,
    /// The nftables table (family inet) holding all of this installation's rules.
    pub nft_table: String,
}

/// Environment variable and default of each setting, in `Paths` field order.
const SETTINGS: [(&str, &str); 6] = [
    ("BERTH_ROOT", "/var/lib/berth"),
    ("BERTH_RUN", "/run/berth"),
    ("BERTH_CGROUP_PARENT", "berth"),
    ("BERTH_BRIDGE", "berth0"),
    ("BERTH_BRIDGE_SUBNET", "10.88.0.0/16"),
    ("BERTH_NFT_TABLE", "berth"),
];

impl Paths {
    /// An installation at `root` and `run`, with the default names.
    pub fn at(root: PathBuf, run: PathBuf) -> Self {
        Self {
            root,
            run,
            ..Self::from_values(|_| None)
        }
    }

    /// The installation the `BERTH_*` environment variables describe.
    pub fn from_env() -> Self {
        Self::from_values(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    fn from_values(value: impl Fn(&str) -> Option<String>) -> Self {
        let [root, run, cgroup_parent, bridge, bridge_subnet, nft_table] =
            SETTINGS.map(|(name, default)| value(name).unwrap_or_else(|| default.to_string()));
        Self {
            root: root.into(),
            run: run.into(),
            cgroup_parent,
            bridge,
            bridge_subnet,
            nft_table,
        }
    }

    /// The environment that describes this installation to another berth process.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let values = [
            self.root.display().to_string(),
            self.run.display().to_string(),
            self.cgroup_parent.clone(),
            self.bridge.clone(),
            self.bridge_subnet.clone(),
            self.nft_table.clone(),
        ];
        SETTINGS.iter().map(|(name, _)| *name).zip(values).collect()
    }

    /// The image store's directories under the root.
    pub fn image_dirs(&self) -> berth_image::Dirs {
        berth_image::Dirs::new(&self.root)
    }

    pub fn images(&self) -> PathBuf {
        self.image_dirs().images()
    }

    pub fn layers(&self) -> PathBuf {
        self.image_dirs().layers()
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
        self.image_dirs().tmp()
    }

    /// What networking needs of this installation.
    pub fn net(&self) -> berth_net::Config {
        berth_net::Config {
            dir: self.root.join("networks"),
            run: self.run.clone(),
            holders: self.containers(),
            bridge: self.bridge.clone(),
            bridge_subnet: self.bridge_subnet.clone(),
            nft_table: self.nft_table.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_round_trips() {
        let mut p = Paths::at("/r".into(), "/x".into());
        p.bridge = "bt1".into();
        let env = p.env();
        let back =
            Paths::from_values(|name| env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()));
        assert_eq!(format!("{back:?}"), format!("{p:?}"));
        assert_eq!(Paths::at("/r".into(), "/x".into()).nft_table, "berth");
    }
}
