//! Container networking: bridge networks with addresses, published ports, links and name
//! resolution through `/etc/hosts`; or no network (`none`, loopback only), or the host's.
//! It knows addresses and their holders' ids, not containers: the engine connects those.

pub mod hosts;
pub mod links;
pub mod netlink;
pub mod network;
pub mod nft;
pub mod ports;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What networking needs to know of a berth installation (the engine makes it from its
/// paths): where its records live and the host-global names that are its own.
#[derive(Clone, Debug)]
pub struct Config {
    /// Network records and address allocations (`$BERTH_ROOT/networks`).
    pub dir: PathBuf,
    /// Runtime state that does not outlive a reboot: locks and markers.
    pub run: PathBuf,
    /// Who holds an address: a holder `id` is alive while `holders/<id>` exists, so the
    /// addresses of holders that vanished without releasing them are free again.
    pub holders: PathBuf,
    /// The default network's bridge interface and subnet.
    pub bridge: String,
    pub bridge_subnet: String,
    /// The nftables table (family inet) holding all of this installation's rules.
    pub nft_table: String,
}

/// `--network`: a network by name (`bridge` is the default one), or none, or the host's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum NetworkMode {
    /// An empty network namespace with only loopback.
    None,
    /// The host's network namespace.
    Host,
    /// A network namespace of its own on the named bridge network.
    Network(String),
}

impl NetworkMode {
    /// The named network, if any.
    pub fn network(&self) -> Option<&str> {
        match self {
            NetworkMode::Network(n) => Some(n),
            _ => None,
        }
    }
}

impl From<String> for NetworkMode {
    fn from(s: String) -> Self {
        match s.as_str() {
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            _ => NetworkMode::Network(s),
        }
    }
}

impl From<NetworkMode> for String {
    fn from(m: NetworkMode) -> String {
        m.to_string()
    }
}

impl Default for NetworkMode {
    fn default() -> Self {
        NetworkMode::Network(network::DEFAULT.to_string())
    }
}

impl FromStr for NetworkMode {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(s.to_string().into())
    }
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
            NetworkMode::Network(n) => n,
        })
    }
}
