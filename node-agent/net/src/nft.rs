//! berth's nftables rules, all in one table of its own (`inet <table>`): masquerading for
//! containers' outbound traffic, isolation between networks, and published ports as
//! elements of two maps, so publishing or withdrawing a port is one element, never a
//! rule edit. Changes go through `nft -f -`, each script applied atomically.
//!
//! Isolation: traffic routed from one bridge to another is dropped, unless it is to a
//! published port. nft cannot compare the input and output interfaces with each other,
//! so each bridge gets a small chain (`iso_<bridge>`: drop unless leaving by the same
//! bridge), reached through the `isolation` verdict map. Traffic within one bridge must
//! pass: with `br_netfilter`, bridged frames traverse the forward hook too.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use crate::Config;
use crate::ports::Published;
use berth_sys::fs::Lock;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("running nft (is the nftables package installed?): {0}")]
    Spawn(std::io::Error),
    #[error("nft refused {what}: {message}")]
    Refused { what: String, message: String },
    #[error("locking the nftables setup: {0}")]
    Lock(std::io::Error),
}

fn ruleset(table: &str) -> String {
    format!(
        r#"table inet {table} {{
	set bridges {{ type ifname; }}
	set subnets {{ type ipv4_addr; flags interval; }}
	map ports {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
	map addr_ports {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
	map isolation {{ type ifname : verdict; }}
	chain published {{
		dnat ip to ip daddr . meta l4proto . th dport map @addr_ports
		dnat ip to meta l4proto . th dport map @ports
	}}
	chain prerouting {{
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local jump published
	}}
	chain output {{
		type nat hook output priority -100; policy accept;
		fib daddr type local jump published
	}}
	chain postrouting {{
		type nat hook postrouting priority srcnat; policy accept;
		oifname @bridges ct status dnat ip saddr 127.0.0.0/8 masquerade
		oifname @bridges ct status dnat ip saddr @subnets masquerade
		ip saddr @subnets oifname != @bridges masquerade
	}}
	chain forward {{
		type filter hook forward priority filter; policy accept;
		ct status dnat accept
		iifname @bridges oifname @bridges iifname vmap @isolation
	}}
}}
"#
    )
}

/// Records under `$BERTH_RUN` that the table was made (see [`Table::ensure`]).
fn marker(paths: &Config) -> std::path::PathBuf {
    paths.run.join(format!("nft-{}.made", paths.nft_table))
}

fn isolation_chain(bridge: &str) -> String {
    format!("iso_{}", bridge.replace(['-', '.'], "_"))
}

/// Runs an nft script; `what` names it in errors.
fn apply(script: &str, what: &str) -> Result<(), Error> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(Error::Spawn)?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(Error::Spawn)?;
    let out = child.wait_with_output().map_err(Error::Spawn)?;
    if out.status.success() {
        return Ok(());
    }
    let message = String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    Err(Error::Refused {
        what: what.to_string(),
        message,
    })
}

fn table_exists(table: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", table])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// This installation's table, made on first use.
pub struct Table {
    name: String,
}

impl Table {
    /// The table, and whether it was just made (and so holds no network yet).
    pub fn ensure(paths: &Config) -> Result<(Table, bool), Error> {
        let table = Table {
            name: paths.nft_table.clone(),
        };
        if table_exists(&table.name) {
            return Ok((table, false));
        }
        let _lock = Lock::exclusive(&paths.run.join("nft.lock")).map_err(Error::Lock)?;
        if table_exists(&table.name) {
            return Ok((table, false));
        }
        apply(
            &ruleset(&table.name),
            &format!("creating table inet {}", table.name),
        )?;
        Ok((table, true))
    }

    /// The table if it exists, for withdrawing things: nothing to withdraw otherwise.
    /// (Only the paths that add networks create the table, so a new table never misses
    /// a network.)
    pub fn existing(paths: &Config) -> Option<Table> {
        (marker(paths).exists() || table_exists(&paths.nft_table)).then(|| Table {
            name: paths.nft_table.clone(),
        })
    }

    /// Treats traffic of `bridge`/`subnet` as containers' (masquerade, isolation).
    /// Idempotent.
    pub fn add_network(&self, bridge: &str, subnet: Ipv4Net) -> Result<(), Error> {
        let (t, chain) = (&self.name, isolation_chain(bridge));
        apply(
            &format!(
                "add element inet {t} bridges {{ \"{bridge}\" }}\n\
                 add element inet {t} subnets {{ {subnet} }}\n\
                 add chain inet {t} {chain}\n\
                 flush chain inet {t} {chain}\n\
                 add rule inet {t} {chain} oifname != \"{bridge}\" drop\n\
                 add element inet {t} isolation {{ \"{bridge}\" : jump {chain} }}\n"
            ),
            &format!("adding network {bridge}"),
        )
    }

    pub fn remove_network(&self, bridge: &str, subnet: Ipv4Net) -> Result<(), Error> {
        let (t, chain) = (&self.name, isolation_chain(bridge));
        apply(
            &format!(
                "delete element inet {t} isolation {{ \"{bridge}\" }}\n\
                 delete chain inet {t} {chain}\n\
                 delete element inet {t} bridges {{ \"{bridge}\" }}\n\
                 delete element inet {t} subnets {{ {subnet} }}\n"
            ),
            &format!("removing network {bridge}"),
        )
    }

    fn port_key(&self, p: &Published) -> (String, String) {
        match p.host_ip {
            Some(ip) => (
                "addr_ports".into(),
                format!("{ip} . {} . {}", p.protocol, p.host_port),
            ),
            None => ("ports".into(), format!("{} . {}", p.protocol, p.host_port)),
        }
    }

    /// Forwards the host port of `ports` to `ip` (all in one step: all or none).
    pub fn publish(&self, ip: Ipv4Addr, ports: &[Published]) -> Result<(), Error> {
        if ports.is_empty() {
            return Ok(());
        }
        let t = &self.name;
        let script: String = ports
            .iter()
            .map(|p| {
                let (map, key) = self.port_key(p);
                format!(
                    "add element inet {t} {map} {{ {key} : {ip} . {} }}\n",
                    p.container_port
                )
            })
            .collect();
        let list: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        apply(&script, &format!("publishing {}", list.join(", ")))
    }

    /// Withdraws published ports; ones already gone are fine.
    pub fn unpublish(&self, ports: &[Published]) {
        for p in ports {
            let (map, key) = self.port_key(p);
            let _ = apply(
                &format!("delete element inet {} {map} {{ {key} }}\n", self.name),
                "unpublishing",
            );
        }
    }

    /// Removes the whole table (an installation going away, e.g. at the end of a test).
    pub fn delete(paths: &Config) -> Result<(), Error> {
        let _ = std::fs::remove_file(marker(paths));
        if table_exists(&paths.nft_table) {
            apply(
                &format!("delete table inet {}\n", paths.nft_table),
                "deleting the table",
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_names_its_table_and_maps() {
        let r = ruleset("berth_t1");
        assert!(r.starts_with("table inet berth_t1 {"));
        for part in [
            "map ports",
            "map addr_ports",
            "hook prerouting",
            "hook output",
            "hook postrouting",
            "hook forward",
            "masquerade",
        ] {
            assert!(r.contains(part), "{part}");
        }
    }
}
