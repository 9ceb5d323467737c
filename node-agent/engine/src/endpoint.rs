//! A container's place on its networks: addresses (given at create, kept until `rm`),
//! the veth pairs made at each start, published ports, links and `/etc/hosts`. Recorded
//! in `containers/<id>/network.json`, which changes when ports are settled at start and
//! with `network connect`/`disconnect`.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::container;
use crate::paths::Paths;
use berth_net::hosts::{self, Entry};
use berth_net::netlink::{self, Netlink};
use berth_net::network::{self, Network, Networks};
use berth_net::nft::{self, Table};
use berth_net::ports::{PortSpec, Protocol, Published};
use berth_net::{NetworkMode, links};
use berth_sys::fs::{random_hex, write_atomic};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Network(#[from] network::Error),
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
    #[error(transparent)]
    Nft(#[from] nft::Error),
    #[error(transparent)]
    Container(#[from] container::Error),
    #[error("cannot link to {0}: no such container")]
    LinkMissing(String),
    #[error("cannot link to {0}: the container is not running; start it first")]
    LinkStopped(String),
    #[error("cannot link to {target}: it is not on network {network}")]
    LinkElsewhere { target: String, network: String },
    #[error("{what} needs a bridge network, not --network {mode}")]
    NoNetwork { what: &'static str, mode: String },
    #[error("port {port} is already in use on this host: {source}")]
    PortInUse {
        port: String,
        source: std::io::Error,
    },
    #[error("container {container} is already connected to network {network}")]
    AlreadyConnected { container: String, network: String },
    #[error("container {container} is not connected to network {network}")]
    NotConnected { container: String, network: String },
    #[error("network state {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The container on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network: String,
    pub ip: Ipv4Addr,
    /// Other names it has there (`--network-alias`).
    pub aliases: Vec<String>,
}

/// A link to another container (`--link name:alias`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub id: String,
    pub name: String,
    pub alias: String,
}

/// Everything about a container's networking, in `network.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachments {
    pub name: String,
    pub hostname: String,
    pub endpoints: Vec<Endpoint>,
    /// What `-p`/`-P` asked for.
    pub ports: Vec<PortSpec>,
    /// The host side of each, as settled at the last start.
    pub published: Vec<Published>,
    pub links: Vec<Link>,
    /// Its exposed ports, which containers linking to it learn about.
    pub exposed: Vec<(u16, Protocol)>,
}

fn file(dir: &Path) -> PathBuf {
    dir.join("network.json")
}

/// The container's attachments (empty for containers without a network).
pub fn load(dir: &Path) -> Result<Attachments, Error> {
    let path = file(dir);
    match fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data).map_err(|e| Error::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Attachments::default()),
        Err(source) => Err(Error::Io { path, source }),
    }
}

fn save(dir: &Path, a: &Attachments) -> Result<(), Error> {
    let path = file(dir);
    write_atomic(
        &path,
        &serde_json::to_vec_pretty(a).expect("serializes"),
        false,
    )
    .map_err(|source| Error::Io { path, source })
}

/// What `berth run` asks of the network, before the container exists.
pub struct Request<'a> {
    pub mode: &'a NetworkMode,
    pub aliases: &'a [String],
    pub ports: &'a [PortSpec],
    /// `(container, alias)` pairs from `--link`.
    pub links: &'a [(String, String)],
}

/// What create learns before writing the container: resolved links (and their
/// environment variables); fixed host ports are checked to be free.
pub struct Plan {
    pub links: Vec<Link>,
    pub env: Vec<String>,
}

/// Checks the request against what exists: the network, the linked containers (running,
/// on the same network), free host ports. Nothing is changed.
pub fn plan(paths: &Paths, name: &str, req: &Request<'_>) -> Result<Plan, Error> {
    let network = match req.mode.network() {
        Some(n) => Some(Networks::new(paths.net()).get(n)?),
        None => {
            let what = [
                (!req.links.is_empty(), "--link"),
                (!req.aliases.is_empty(), "--network-alias"),
                (!req.ports.is_empty(), "publishing ports"),
            ];
            if let Some((_, what)) = what.into_iter().find(|(asked, _)| *asked) {
                return Err(Error::NoNetwork {
                    what,
                    mode: req.mode.to_string(),
                });
            }
            None
        }
    };
    let mut out = Plan {
        links: Vec::new(),
        env: Vec::new(),
    };
    for (target, alias) in req.links {
        let c = container::find(paths, target).map_err(|_| Error::LinkMissing(target.clone()))?;
        if !c.is_running() {
            return Err(Error::LinkStopped(target.clone()));
        }
        let theirs = load(&c.dir)?;
        let network = network.as_ref().expect("checked above");
        let endpoint = theirs
            .endpoints
            .iter()
            .find(|e| e.network == network.name)
            .ok_or_else(|| Error::LinkElsewhere {
                target: target.clone(),
                network: network.name.clone(),
            })?;
        let env = c
            .config
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.env().clone())
            .unwrap_or_default();
        out.env.extend(links::env(
            name,
            &links::Linked {
                alias,
                ip: endpoint.ip,
                ports: &theirs.exposed,
                env: &env,
            },
        ));
        out.links.push(Link {
            id: c.config.id.clone(),
            name: c.config.name.clone(),
            alias: alias.clone(),
        });
    }
    for p in req.ports.iter().filter(|p| p.host_port != 0) {
        reserve(p)?;
    }
    Ok(out)
}

/// Records a new container's attachments and gives it its address. The container's
/// directory exists (address allocation counts on it). On failure the caller removes
/// the directory, and with it anything recorded here.
pub fn create(
    paths: &Paths,
    dir: &Path,
    id: &str,
    attachments: Attachments,
    mode: &NetworkMode,
    aliases: &[String],
) -> Result<(), Error> {
    let mut a = attachments;
    if let Some(name) = mode.network() {
        let nets = Networks::new(paths.net());
        let network = nets.get(name)?;
        let ip = nets.allocate(&network, id)?;
        a.endpoints.push(Endpoint {
            network: network.name.clone(),
            ip,
            aliases: aliases.to_vec(),
        });
    }
    save(dir, &a)?;
    refresh_hosts(paths, &a.endpoints)?;
    write_hosts(paths, dir, &a)
}

/// A bound (not listening) socket holds a host port for as long as the container is
/// published there, so nothing else on the host can take it meanwhile.
pub struct Reservation {
    _socket: OwnedFd,
}

fn reserve(p: &PortSpec) -> Result<(Reservation, u16), Error> {
    let ip = p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let label = format!("{ip}:{}/{}", p.host_port, p.protocol);
    let in_use = |source: std::io::Error| Error::PortInUse {
        port: label.clone(),
        source,
    };
    let kind = match p.protocol {
        Protocol::Tcp => SockType::Stream,
        Protocol::Udp => SockType::Datagram,
    };
    let sock = socket(AddressFamily::Inet, kind, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| in_use(e.into()))?;
    let addr = SockaddrIn::from(SocketAddrV4::new(ip, p.host_port));
    bind(std::os::fd::AsRawFd::as_raw_fd(&sock), &addr).map_err(|e| in_use(e.into()))?;
    let bound: SockaddrIn =
        getsockname(std::os::fd::AsRawFd::as_raw_fd(&sock)).map_err(|e| in_use(e.into()))?;
    Ok((Reservation { _socket: sock }, bound.port()))
}

/// What a running container holds on the host until it exits.
#[derive(Default)]
pub struct Active {
    pub published: Vec<Published>,
    _reservations: Vec<Reservation>,
}

/// At each start, once the container's first process exists (in its own network
/// namespace) and before it runs: a veth pair per network, addresses and the default
/// route inside, then the published ports. On failure, what was published is withdrawn;
/// the veths go away with the namespace.
pub fn attach(paths: &Paths, dir: &Path, pid: Pid) -> Result<Active, Error> {
    let mut a = load(dir)?;
    if a.endpoints.is_empty() {
        return Ok(Active::default());
    }
    let nets = Networks::new(paths.net());
    let wiring = Wiring::open(paths, pid)?;
    for (i, e) in a.endpoints.iter().enumerate() {
        wiring.plug(&nets.get(&e.network)?, dir, i, e.ip, pid)?;
    }
    let mut active = Active::default();
    for p in &a.ports {
        let (reservation, host_port) = reserve(p)?;
        active._reservations.push(reservation);
        active.published.push(Published {
            host_ip: p.host_ip,
            host_port,
            container_port: p.container_port,
            protocol: p.protocol,
        });
    }
    wiring.table.publish(a.endpoints[0].ip, &active.published)?;
    a.published = active.published.clone();
    if let Err(e) = save(dir, &a) {
        wiring.table.unpublish(&active.published);
        return Err(e);
    }
    Ok(active)
}

/// What plugging a container into its networks takes: netlink on both sides and the
/// rules table.
struct Wiring {
    host: Netlink,
    inside: Netlink,
    table: Table,
    new_table: bool,
}

impl Wiring {
    fn open(paths: &Paths, pid: Pid) -> Result<Wiring, Error> {
        let (table, new_table) = Table::ensure(&paths.net())?;
        Ok(Wiring {
            host: Netlink::host()?,
            inside: Netlink::in_netns_of(pid)?,
            table,
            new_table,
        })
    }

    /// The container's `index`th interface, `eth<index>`, on `network` with address `ip`
    /// (the first one also gets the default route). The network's bridge is made first
    /// when missing, and told to the rules (only a new bridge or a new table needs that).
    fn plug(
        &self,
        network: &Network,
        dir: &Path,
        index: usize,
        ip: Ipv4Addr,
        pid: Pid,
    ) -> Result<(), Error> {
        if self
            .host
            .ensure_bridge(&network.bridge, network.gateway_net())?
            || self.new_table
        {
            self.table.add_network(&network.bridge, network.subnet)?;
        }
        let iface = format!("eth{index}");
        self.host
            .veth_into(&host_end(dir, index), &network.bridge, &iface, pid)?;
        self.inside.configure(
            &iface,
            network.address(ip),
            (index == 0).then_some(network.gateway),
        )?;
        Ok(())
    }
}

/// The host's end of the container's veth on its `index`th network. The container's end
/// lives in its network namespace, and the pair goes with it: the kernel destroys a dead
/// namespace's devices in the background. A random suffix keeps a restart from colliding
/// with the previous start's pair while that is still being destroyed.
fn host_end(dir: &Path, index: usize) -> String {
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("vb{}{index}{}", &id[..id.len().min(8)], random_hex(1))
}

/// When the container has exited: its published ports go (its veths went with its
/// network namespace).
pub fn detach(paths: &Paths, active: Active) {
    if let Some(table) = (!active.published.is_empty())
        .then(|| Table::existing(&paths.net()))
        .flatten()
    {
        table.unpublish(&active.published);
    }
}

/// What a container whose monitor died left on the host while it ran: its published
/// ports. Its addresses stay: it still exists.
pub fn withdraw(paths: &Paths, dir: &Path) -> Result<Attachments, Error> {
    let mut a = load(dir)?;
    if let Some(table) = (!a.published.is_empty())
        .then(|| Table::existing(&paths.net()))
        .flatten()
    {
        table.unpublish(&a.published);
    }
    if !a.published.is_empty() && dir.exists() {
        a.published.clear();
        save(dir, &a)?;
    }
    Ok(a)
}

/// At `rm`: withdraws what a dead monitor left, gives the addresses back, and updates
/// the hosts files of the containers that could reach it by name.
pub fn release(paths: &Paths, dir: &Path, id: &str) -> Result<(), Error> {
    let a = withdraw(paths, dir)?;
    let nets = Networks::new(paths.net());
    for e in &a.endpoints {
        nets.release(&e.network, id)?;
    }
    let _ = fs::remove_file(file(dir));
    refresh_hosts(paths, &a.endpoints)
}

/// The lines for `c` in others' hosts files on `network`: its name and aliases.
fn names_on(a: &Attachments, e: &Endpoint) -> Vec<String> {
    std::iter::once(a.name.clone())
        .chain(e.aliases.iter().cloned())
        .collect()
}

/// Writes the hosts file of the container in `dir`.
fn write_hosts(paths: &Paths, dir: &Path, a: &Attachments) -> Result<(), Error> {
    let nets = Networks::new(paths.net());
    let mut peers = Vec::new();
    for l in &a.links {
        let theirs = load(&paths.container(&l.id))?;
        let shared = theirs
            .endpoints
            .iter()
            .find(|t| a.endpoints.iter().any(|e| e.network == t.network));
        if let Some(t) = shared {
            peers.push(Entry {
                ip: t.ip,
                names: vec![l.alias.clone(), l.name.clone(), theirs.hostname.clone()],
            });
        }
    }
    for e in &a.endpoints {
        if !nets.get(&e.network)?.dns {
            continue;
        }
        for other in container::list(paths)? {
            if other.dir == dir {
                continue;
            }
            let theirs = load(&other.dir)?;
            for t in theirs.endpoints.iter().filter(|t| t.network == e.network) {
                peers.push(Entry {
                    ip: t.ip,
                    names: names_on(&theirs, t),
                });
            }
        }
    }
    let own: Vec<Entry> = a
        .endpoints
        .iter()
        .map(|e| Entry {
            ip: e.ip,
            names: std::iter::once(a.hostname.clone())
                .chain(names_on(a, e))
                .collect(),
        })
        .collect();
    let path = dir.join("etc").join("hosts");
    hosts::write_in_place(&path, &hosts::render(&peers, &own))
        .map_err(|source| Error::Io { path, source })
}

/// Rewrites the hosts files of every container on the name-resolving networks among
/// `endpoints`, after a container joined or left them.
fn refresh_hosts(paths: &Paths, endpoints: &[Endpoint]) -> Result<(), Error> {
    let nets = Networks::new(paths.net());
    let mut dns_networks = Vec::new();
    for e in endpoints {
        if nets.get(&e.network)?.dns {
            dns_networks.push(e.network.clone());
        }
    }
    if dns_networks.is_empty() {
        return Ok(());
    }
    for c in container::list(paths)? {
        let a = load(&c.dir)?;
        if a.endpoints
            .iter()
            .any(|e| dns_networks.contains(&e.network))
        {
            write_hosts(paths, &c.dir, &a)?;
        }
    }
    Ok(())
}

/// `berth network connect`: a new endpoint (and, if the container runs, its veth now).
pub fn connect(
    paths: &Paths,
    c: &container::Container,
    network: &str,
    aliases: &[String],
) -> Result<(), Error> {
    let mut a = load(&c.dir)?;
    if a.endpoints.iter().any(|e| e.network == network) {
        return Err(Error::AlreadyConnected {
            container: c.config.name.clone(),
            network: network.to_string(),
        });
    }
    if c.config.network.network().is_none() {
        return Err(Error::NoNetwork {
            what: "network connect",
            mode: c.config.network.to_string(),
        });
    }
    let nets = Networks::new(paths.net());
    let net = nets.get(network)?;
    let ip = nets.allocate(&net, &c.config.id)?;
    let index = a.endpoints.len();
    a.endpoints.push(Endpoint {
        network: net.name.clone(),
        ip,
        aliases: aliases.to_vec(),
    });
    let live = c.state.process.filter(|p| p.alive());
    let result = save(&c.dir, &a).and_then(|()| match live {
        Some(p) => Wiring::open(paths, p.pid())?.plug(&net, &c.dir, index, ip, p.pid()),
        None => Ok(()),
    });
    if let Err(e) = result {
        a.endpoints.pop();
        let _ = save(&c.dir, &a);
        let _ = nets.release(network, &c.config.id);
        return Err(e);
    }
    refresh_hosts(paths, &a.endpoints)
}

/// `berth network disconnect`: removes the endpoint (and the running container's veth).
pub fn disconnect(paths: &Paths, c: &container::Container, network: &str) -> Result<(), Error> {
    let mut a = load(&c.dir)?;
    let Some(pos) = a.endpoints.iter().position(|e| e.network == network) else {
        return Err(Error::NotConnected {
            container: c.config.name.clone(),
            network: network.to_string(),
        });
    };
    let removed = a.endpoints.remove(pos);
    if let Some(p) = c.state.process.filter(|p| p.alive()) {
        Netlink::in_netns_of(p.pid())?.delete(&format!("eth{pos}"))?;
    }
    save(&c.dir, &a)?;
    Networks::new(paths.net()).release(network, &c.config.id)?;
    refresh_hosts(paths, std::slice::from_ref(&removed))?;
    write_hosts(paths, &c.dir, &a)
}

/// Removes a user-defined network: refused while containers are on it; its bridge and
/// rules go with it.
pub fn remove_network(paths: &Paths, name: &str) -> Result<(), Error> {
    let network = Networks::new(paths.net())
        .remove(name)
        .map_err(|e| match e {
            // The network knows its holders by id; name the container for the user.
            network::Error::InUse { network, container } => network::Error::InUse {
                network,
                container: container::load(paths, &container).map_or(container, |c| c.config.name),
            },
            e => e,
        })?;
    Netlink::host()?.delete(&network.bridge)?;
    if let Some(table) = Table::existing(&paths.net()) {
        table
            .remove_network(&network.bridge, network.subnet)
            .or_else(|e| match e {
                // The bridge never had a container on it, so it never entered the sets.
                nft::Error::Refused { .. } => Ok(()),
                e => Err(e),
            })?;
    }
    Ok(())
}

/// A best-effort removal of everything this installation made on the host network
/// (bridges of its networks and its nftables table), for tests and uninstalls.
pub fn teardown(paths: &Paths) {
    if let (Ok(host), Ok(all)) = (Netlink::host(), Networks::new(paths.net()).list()) {
        for n in all {
            let _ = host.delete(&n.bridge);
        }
    }
    let _ = Table::delete(&paths.net());
}
