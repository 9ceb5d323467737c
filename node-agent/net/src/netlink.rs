//! Links, addresses and routes through rtnetlink, in the host's network namespace or a
//! container's. Each `Netlink` drives its own single-threaded tokio runtime, so callers
//! stay synchronous and no thread outlives a call (the monitor forks after using it).

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use nix::sched::{CloneFlags, setns};
use nix::unistd::Pid;
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkMessage,
};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        source: rtnetlink::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("network interface {0} not found")]
    NoSuchLink(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// `EEXIST` from the kernel: the thing is already there, which is what we wanted.
fn exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EEXIST)
}

pub struct Netlink {
    rt: tokio::runtime::Runtime,
    handle: Handle,
}

impl Netlink {
    /// A connection in this process's network namespace.
    pub fn host() -> Result<Netlink, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(io("starting the netlink runtime"))?;
        let (connection, handle, _) = {
            let _guard = rt.enter();
            rtnetlink::new_connection().map_err(io("opening a netlink socket"))?
        };
        rt.spawn(connection);
        Ok(Netlink { rt, handle })
    }

    /// A connection in the network namespace of process `pid` (its socket is opened
    /// there; this process goes back to its own namespace at once).
    pub fn in_netns_of(pid: Pid) -> Result<Netlink, Error> {
        let own =
            File::open("/proc/thread-self/ns/net").map_err(io("opening our network namespace"))?;
        let target = File::open(format!("/proc/{pid}/ns/net"))
            .map_err(io(format!("opening the network namespace of {pid}")))?;
        setns(target.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| io(format!("entering the network namespace of {pid}"))(e.into()))?;
        let result = Netlink::host();
        setns(own.as_fd(), CloneFlags::CLONE_NEWNET)
            .expect("returning to our own network namespace");
        result
    }

    fn run<T>(
        &self,
        what: impl Into<String>,
        f: impl Future<Output = Result<T, rtnetlink::Error>>,
    ) -> Result<T, Error> {
        self.rt.block_on(f).map_err(|source| Error::Netlink {
            what: what.into(),
            source,
        })
    }

    pub fn index(&self, name: &str) -> Result<Option<u32>, Error> {
        let found = self.rt.block_on(async {
            let mut links = self
                .handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute();
            links.try_next().await
        });
        match found {
            Ok(link) => Ok(link.map(|l: LinkMessage| l.header.index)),
            // The kernel answers ENODEV for an unknown name.
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => Ok(None),
            Err(source) => Err(Error::Netlink {
                what: format!("looking up {name}"),
                source,
            }),
        }
    }

    fn require(&self, name: &str) -> Result<u32, Error> {
        self.index(name)?
            .ok_or_else(|| Error::NoSuchLink(name.to_string()))
    }

    /// Makes the bridge `name` exist, up, with the gateway address; true if it had to be
    /// made. Safe to race.
    pub fn ensure_bridge(&self, name: &str, gateway: Ipv4Net) -> Result<bool, Error> {
        if self.index(name)?.is_some() {
            return Ok(false);
        }
        match self.rt.block_on(
            self.handle
                .link()
                .add(LinkBridge::new(name).build())
                .execute(),
        ) {
            Err(e) if !exists(&e) => {
                return Err(Error::Netlink {
                    what: format!("creating bridge {name}"),
                    source: e,
                });
            }
            _ => {}
        }
        let index = self.require(name)?;
        let add = self
            .handle
            .address()
            .add(index, IpAddr::V4(gateway.addr()), gateway.prefix_len())
            .execute();
        match self.rt.block_on(add) {
            Err(e) if !exists(&e) => {
                return Err(Error::Netlink {
                    what: format!("adding {gateway} to {name}"),
                    source: e,
                });
            }
            _ => {}
        }
        self.run(
            format!("bringing up {name}"),
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute(),
        )?;
        // Published ports reach containers from 127.0.0.1 (DNAT in the output hook).
        sysctl(&format!("net/ipv4/conf/{name}/route_localnet"), "1")?;
        sysctl("net/ipv4/ip_forward", "1")?;
        Ok(true)
    }

    /// Creates a veth pair: `host_end` on this side, up and enslaved to `bridge`, and
    /// `peer` in the network namespace of `pid`.
    pub fn veth_into(
        &self,
        host_end: &str,
        bridge: &str,
        peer: &str,
        pid: Pid,
    ) -> Result<(), Error> {
        let bridge_index = self.require(bridge)?;
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .setns_by_pid(pid.as_raw() as u32)
            .build();
        let veth = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
            .name(host_end.to_string())
            .controller(bridge_index)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        self.run(
            format!("creating veth {host_end}"),
            self.handle.link().add(veth).execute(),
        )?;
        // A container may reach itself through a published port: the bridge must send
        // such packets back out of the port they came in by. (Through netlink: /sys
        // shows the network namespace that mounted it, not necessarily ours.)
        let index = self.require(host_end)?;
        let port = LinkUnspec::new_with_index(index)
            .set_port_kind(InfoPortKind::Bridge)
            .set_port_data(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )]))
            .build();
        self.run(
            format!("setting hairpin mode on {host_end}"),
            self.handle.link().set_port(port).execute(),
        )
    }

    /// Inside a container's namespace: address `addr` on `iface`, up, and the default
    /// route through `gateway` when given.
    pub fn configure(
        &self,
        iface: &str,
        addr: Ipv4Net,
        gateway: Option<Ipv4Addr>,
    ) -> Result<(), Error> {
        let index = self.require(iface)?;
        self.run(
            format!("adding {addr} to {iface}"),
            self.handle
                .address()
                .add(index, IpAddr::V4(addr.addr()), addr.prefix_len())
                .execute(),
        )?;
        self.run(
            format!("bringing up {iface}"),
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute(),
        )?;
        if let Some(gw) = gateway {
            let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build();
            self.run(
                format!("adding the default route via {gw}"),
                self.handle.route().add(route).execute(),
            )?;
        }
        Ok(())
    }

    /// Deletes the link `name` if it exists.
    pub fn delete(&self, name: &str) -> Result<(), Error> {
        match self.index(name)? {
            Some(index) => self.run(
                format!("deleting {name}"),
                self.handle.link().del(index).execute(),
            ),
            None => Ok(()),
        }
    }
}

/// A sysctl of this process's network namespace (/proc/sys/net follows the reader's).
fn sysctl(key: &str, value: &str) -> Result<(), Error> {
    let path = format!("/proc/sys/{key}");
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(io(format!("setting {path} to {value}")))
}
