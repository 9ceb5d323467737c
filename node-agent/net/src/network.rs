//! Networks and their address management. A network is a Linux bridge with a subnet;
//! `bridge` is the default one. Definitions live in `$BERTH_ROOT/networks/<name>/`
//! (`network.json`, and `ipam.json`: which address each container holds), changed under
//! one lock so concurrent `berth run`s never get the same address.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, ErrorKind};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::Config;
use berth_sys::fs::{Lock, random_hex, write_atomic};

/// The name of the default network.
pub const DEFAULT: &str = "bridge";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("network {0} not found; `berth network ls` lists them")]
    NotFound(String),
    #[error("network with name {0} already exists")]
    Exists(String),
    #[error("invalid network name \"{0}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidName(String),
    #[error("\"{0}\" is a predefined network and cannot be created or removed")]
    Predefined(String),
    #[error("invalid subnet \"{0}\": expected an IPv4 network like 10.90.0.0/24")]
    InvalidSubnet(String),
    #[error(
        "subnet {subnet} overlaps with network {other} ({other_subnet}); pick another with --subnet"
    )]
    Overlap {
        subnet: Ipv4Net,
        other: String,
        other_subnet: Ipv4Net,
    },
    #[error("network {network} has no free address left in {subnet}")]
    Exhausted { network: String, subnet: Ipv4Net },
    #[error("network {network} is in use by container {container}; remove or disconnect it first")]
    InUse { network: String, container: String },
    #[error("no free subnet left for a new network; give one with --subnet")]
    NoFreeSubnet,
    #[error("network state {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub id: String,
    /// The bridge interface on the host.
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    #[serde(with = "berth_sys::record::rfc3339")]
    pub created: SystemTime,
    /// Members resolve each other by name: true for user-defined networks, false for
    /// the default one (where only links do), as in Docker.
    pub dns: bool,
}

impl Network {
    /// A network made now, its gateway the subnet's first host address.
    fn new(
        name: &str,
        id: String,
        bridge: String,
        subnet: Ipv4Net,
        dns: bool,
    ) -> Result<Self, Error> {
        let gateway = subnet
            .hosts()
            .next()
            .ok_or(Error::InvalidSubnet(subnet.to_string()))?;
        Ok(Network {
            name: name.to_string(),
            id,
            bridge,
            subnet,
            gateway,
            created: SystemTime::now(),
            dns,
        })
    }

    /// `ip` with the subnet's prefix, as an interface on this network carries it.
    pub fn address(&self, ip: Ipv4Addr) -> Ipv4Net {
        Ipv4Net::new(ip, self.subnet.prefix_len()).expect("prefix from a valid subnet")
    }

    /// The gateway address with the subnet's prefix, as the bridge carries it.
    pub fn gateway_net(&self) -> Ipv4Net {
        self.address(self.gateway)
    }
}

/// Which container holds which address.
type Allocations = BTreeMap<Ipv4Addr, String>;

/// The lowest address of `subnet` that is neither the network, the gateway, the
/// broadcast address nor taken.
pub fn free_address(subnet: Ipv4Net, gateway: Ipv4Addr, taken: &Allocations) -> Option<Ipv4Addr> {
    subnet
        .hosts()
        .find(|a| *a != gateway && !taken.contains_key(a))
}

fn validate_name(name: &str) -> Result<(), Error> {
    match berth_sys::record::is_valid_name(name) {
        true => Ok(()),
        false => Err(Error::InvalidName(name.to_string())),
    }
}

pub fn parse_subnet(s: &str) -> Result<Ipv4Net, Error> {
    let net: Ipv4Net = s.parse().map_err(|_| Error::InvalidSubnet(s.to_string()))?;
    if net.prefix_len() > 30 {
        return Err(Error::InvalidSubnet(s.to_string()));
    }
    Ok(net.trunc())
}

pub struct Networks {
    paths: Config,
}

impl Networks {
    pub fn new(paths: Config) -> Self {
        Networks { paths }
    }

    fn dir(&self) -> PathBuf {
        self.paths.dir.clone()
    }

    fn lock(&self) -> Result<Lock, Error> {
        let path = self.dir().join(".lock");
        Lock::exclusive(&path).map_err(io_err(&path))
    }

    fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
        match fs::read(path) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| Error::Io {
                    path: path.to_path_buf(),
                    source: io::Error::new(ErrorKind::InvalidData, e),
                }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io {
                path: path.to_path_buf(),
                source: e,
            }),
        }
    }

    /// Network definitions are written durably; allocations need not be (after a crash,
    /// allocations of containers that are gone are reclaimed anyway).
    fn write<T: Serialize>(path: &Path, value: &T, durable: bool) -> Result<(), Error> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        write_atomic(
            path,
            &serde_json::to_vec_pretty(value).expect("serializes"),
            durable,
        )
        .map_err(io_err(path))
    }

    fn network_file(&self, name: &str) -> PathBuf {
        self.dir().join(name).join("network.json")
    }

    fn ipam_file(&self, name: &str) -> PathBuf {
        self.dir().join(name).join("ipam.json")
    }

    /// The default network as this installation configures it.
    fn default_network(&self) -> Result<Network, Error> {
        let subnet = parse_subnet(&self.paths.bridge_subnet)?;
        Network::new(
            DEFAULT,
            random_hex(32),
            self.paths.bridge.clone(),
            subnet,
            false,
        )
    }

    /// Finds a network by name; the default one is recorded the first time it is asked for.
    pub fn get(&self, name: &str) -> Result<Network, Error> {
        if let Some(n) = Self::read(&self.network_file(name))? {
            return Ok(n);
        }
        if name != DEFAULT {
            return Err(Error::NotFound(name.to_string()));
        }
        let _lock = self.lock()?;
        if let Some(n) = Self::read(&self.network_file(name))? {
            return Ok(n);
        }
        let n = self.default_network()?;
        Self::write(&self.network_file(name), &n, true)?;
        Ok(n)
    }

    pub fn list(&self) -> Result<Vec<Network>, Error> {
        let mut names = vec![DEFAULT.to_string()];
        if let Ok(entries) = fs::read_dir(self.dir()) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') && name != DEFAULT {
                    names.push(name);
                }
            }
        }
        let mut all = Vec::new();
        for name in names {
            match self.get(&name) {
                Ok(n) => all.push(n),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// `berth network create NAME [--subnet CIDR]`: records the network; the bridge is
    /// made when the first container joins.
    pub fn create(&self, name: &str, subnet: Option<Ipv4Net>) -> Result<Network, Error> {
        validate_name(name)?;
        if matches!(name, DEFAULT | "host" | "none") {
            return Err(Error::Predefined(name.to_string()));
        }
        let existing = self.list()?;
        let _lock = self.lock()?;
        if existing.iter().any(|n| n.name == name) {
            return Err(Error::Exists(name.to_string()));
        }
        let subnet = match subnet {
            Some(s) => {
                if let Some(other) = existing
                    .iter()
                    .find(|n| n.subnet.contains(&s.network()) || s.contains(&n.subnet.network()))
                {
                    return Err(Error::Overlap {
                        subnet: s,
                        other: other.name.clone(),
                        other_subnet: other.subnet,
                    });
                }
                s
            }
            None => pick_subnet(&existing)?,
        };
        let id = random_hex(32);
        let bridge = format!("br-{}", &id[..12]);
        let network = Network::new(name, id, bridge, subnet, true)?;
        Self::write(&self.network_file(name), &network, true)?;
        Ok(network)
    }

    /// Forgets the network. The caller has checked that no container uses it and removes
    /// the bridge.
    pub fn remove(&self, name: &str) -> Result<Network, Error> {
        if matches!(name, DEFAULT | "host" | "none") {
            return Err(Error::Predefined(name.to_string()));
        }
        let network = self.get(name)?;
        let _lock = self.lock()?;
        let live = self.live_allocations(name)?;
        if let Some(id) = live.values().next() {
            return Err(Error::InUse {
                network: name.to_string(),
                container: id.clone(),
            });
        }
        let dir = self.dir().join(name);
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(network)
    }

    /// Allocations of containers that still exist; the rest were left by containers
    /// that vanished without `rm` (a crash) and are free again.
    fn live_allocations(&self, name: &str) -> Result<Allocations, Error> {
        let all: Allocations = Self::read(&self.ipam_file(name))?.unwrap_or_default();
        Ok(all
            .into_iter()
            .filter(|(_, id)| self.paths.holders.join(id).exists())
            .collect())
    }

    /// Gives `container` an address on the network (the one it already has, if any).
    pub fn allocate(&self, network: &Network, container: &str) -> Result<Ipv4Addr, Error> {
        let _lock = self.lock()?;
        let mut taken = self.live_allocations(&network.name)?;
        if let Some((ip, _)) = taken.iter().find(|(_, id)| *id == container) {
            return Ok(*ip);
        }
        let ip = free_address(network.subnet, network.gateway, &taken).ok_or_else(|| {
            Error::Exhausted {
                network: network.name.clone(),
                subnet: network.subnet,
            }
        })?;
        taken.insert(ip, container.to_string());
        Self::write(&self.ipam_file(&network.name), &taken, false)?;
        Ok(ip)
    }

    /// Releases whatever `container` holds on the network.
    pub fn release(&self, network: &str, container: &str) -> Result<(), Error> {
        let _lock = self.lock()?;
        let mut taken: Allocations = Self::read(&self.ipam_file(network))?.unwrap_or_default();
        let before = taken.len();
        taken.retain(|_, id| id != container);
        if taken.len() != before {
            Self::write(&self.ipam_file(network), &taken, false)?;
        }
        Ok(())
    }
}

/// The first /24 of 10.89.0.0/16 that overlaps no existing network.
fn pick_subnet(existing: &[Network]) -> Result<Ipv4Net, Error> {
    (0..=255u8)
        .map(|i| Ipv4Net::new(Ipv4Addr::new(10, 89, i, 0), 24).expect("valid prefix"))
        .find(|s| {
            !existing
                .iter()
                .any(|n| n.subnet.contains(&s.network()) || s.contains(&n.subnet.network()))
        })
        .ok_or(Error::NoFreeSubnet)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        let p = Config {
            dir: dir.path().join("networks"),
            run: dir.path().join("run"),
            holders: dir.path().join("containers"),
            bridge: "berth0".into(),
            bridge_subnet: "10.250.0.0/29".into(),
            nft_table: "berth".into(),
        };
        (dir, p)
    }

    fn fake_container(p: &Config, id: &str) {
        fs::create_dir_all(p.holders.join(id)).unwrap();
    }

    #[test]
    fn addresses_skip_network_gateway_and_broadcast() {
        let subnet: Ipv4Net = "10.0.0.0/29".parse().unwrap();
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let mut taken = Allocations::new();
        let mut got = Vec::new();
        while let Some(ip) = free_address(subnet, gw, &taken) {
            taken.insert(ip, String::new());
            got.push(ip.octets()[3]);
        }
        assert_eq!(got, [2, 3, 4, 5, 6]);
    }

    #[test]
    fn allocation_is_stable_released_and_reclaimed_from_vanished_containers() {
        let (_d, p) = paths();
        let nets = Networks::new(p.clone());
        let net = nets.get(DEFAULT).unwrap();
        assert_eq!(net.gateway, Ipv4Addr::new(10, 250, 0, 1));
        for id in ["a", "b", "c", "d", "e", "f", "g"] {
            fake_container(&p, id);
        }
        let a = nets.allocate(&net, "a").unwrap();
        assert_eq!(
            nets.allocate(&net, "a").unwrap(),
            a,
            "same container, same address"
        );
        let b = nets.allocate(&net, "b").unwrap();
        assert_ne!(a, b);
        nets.release(&net.name, "a").unwrap();
        assert_eq!(
            nets.allocate(&net, "c").unwrap(),
            a,
            "released addresses are reused"
        );
        for id in ["d", "e", "f"] {
            nets.allocate(&net, id).unwrap();
        }
        assert!(matches!(
            nets.allocate(&net, "g"),
            Err(Error::Exhausted { .. })
        ));
        // A container that disappeared without rm gives its address back.
        fs::remove_dir_all(p.holders.join("b")).unwrap();
        assert_eq!(nets.allocate(&net, "g").unwrap(), b);
    }

    #[test]
    fn user_networks_get_distinct_subnets_and_refuse_overlaps() {
        let (_d, p) = paths();
        let nets = Networks::new(p.clone());
        let one = nets.create("one", None).unwrap();
        let two = nets.create("two", None).unwrap();
        assert_ne!(one.subnet, two.subnet);
        assert!(one.dns && one.bridge.starts_with("br-") && one.bridge.len() <= 15);
        assert!(matches!(nets.create("one", None), Err(Error::Exists(_))));
        let overlap = nets
            .create("three", Some(parse_subnet("10.89.0.128/25").unwrap()))
            .unwrap_err();
        assert!(
            overlap.to_string().contains("overlaps with network one"),
            "{overlap}"
        );
        assert!(matches!(
            nets.create("bridge", None),
            Err(Error::Predefined(_))
        ));
        let names: Vec<String> = nets.list().unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["bridge", "one", "two"]);
    }

    #[test]
    fn removal_refuses_while_a_container_holds_an_address() {
        let (_d, p) = paths();
        let nets = Networks::new(p.clone());
        let net = nets
            .create("backend", Some(parse_subnet("10.251.0.0/24").unwrap()))
            .unwrap();
        fake_container(&p, "c1");
        nets.allocate(&net, "c1").unwrap();
        assert!(matches!(nets.remove("backend"), Err(Error::InUse { .. })));
        nets.release("backend", "c1").unwrap();
        nets.remove("backend").unwrap();
        assert!(matches!(nets.get("backend"), Err(Error::NotFound(_))));
    }

    #[test]
    fn subnets_are_validated() {
        assert_eq!(
            parse_subnet("10.1.2.3/24").unwrap().to_string(),
            "10.1.2.0/24"
        );
        for bad in ["10.0.0.0", "10.0.0.0/31", "nonsense", "::1/64"] {
            assert!(parse_subnet(bad).is_err(), "{bad}");
        }
    }
}
