//! Published ports: `-p [ip:][hostPort:]containerPort[/tcp|udp]` (with ranges) and the
//! EXPOSEd ports `-P` publishes. Pure.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid port mapping \"{value}\": {reason}; expected [ip:][hostPort:]containerPort[/tcp|udp]"
)]
pub struct Error {
    value: String,
    reason: Reason,
}

/// What is wrong with a port mapping, or with a protocol name on its own.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Reason {
    #[error("\"{text}\" is not a port number (1-65535)")]
    NotAPort { text: String },

    #[error("the range {low}-{high} is reversed")]
    Reversed { low: u16, high: u16 },

    #[error("unknown protocol \"{protocol}\" (use tcp or udp)")]
    UnknownProtocol { protocol: String },

    #[error("\"{address}\" is not an IPv4 address")]
    NotIpv4 { address: String },

    #[error("too many colons")]
    TooManyColons,

    #[error("the host and container ranges differ in length")]
    RangeLengths,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

impl FromStr for Protocol {
    type Err = Reason;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(Reason::UnknownProtocol {
                protocol: other.to_owned(),
            }),
        }
    }
}

/// One port the user asked to publish. `host_port` 0 means "any free port".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// The host address to listen on; `None` for all of the host's addresses.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// A published port once the host side is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for Published {
    /// As `docker port` prints it: `5000/tcp -> 0.0.0.0:8000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = self.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
        write!(
            f,
            "{}/{} -> {ip}:{}",
            self.container_port, self.protocol, self.host_port
        )
    }
}

fn range(s: &str) -> Result<(u16, u16), Reason> {
    let port = |p: &str| -> Result<u16, Reason> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(Reason::NotAPort { text: p.to_owned() }),
            Ok(n) => Ok(n),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b {
                return Err(Reason::Reversed { low: a, high: b });
            }
            Ok((a, b))
        }
        None => port(s).map(|p| (p, p)),
    }
}

/// Parses one `-p` value into the ports it publishes.
pub fn parse(value: &str) -> Result<Vec<PortSpec>, Error> {
    let err = |reason: Reason| Error {
        value: value.to_string(),
        reason,
    };
    let (spec, protocol) = match value.rsplit_once('/') {
        Some((s, p)) => (s, p.parse::<Protocol>().map_err(err)?),
        None => (value, Protocol::Tcp),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => (None, None, *c),
        [h, c] => (None, Some(*h), *c),
        [ip, h, c] => (Some(*ip), Some(*h), *c),
        _ => return Err(err(Reason::TooManyColons)),
    };
    let host_ip = match ip {
        None | Some("") => None,
        Some(ip) => {
            let ip: Ipv4Addr = ip.parse().map_err(|_| {
                err(Reason::NotIpv4 {
                    address: ip.to_owned(),
                })
            })?;
            (!ip.is_unspecified()).then_some(ip)
        }
    };
    let (c_lo, c_hi) = range(container).map_err(err)?;
    let host = match host {
        None | Some("") => None,
        Some(h) => Some(range(h).map_err(err)?),
    };
    let count = c_hi - c_lo;
    if let Some((h_lo, h_hi)) = host
        && h_hi - h_lo != count
    {
        return Err(err(Reason::RangeLengths));
    }
    Ok((0..=count)
        .map(|i| PortSpec {
            host_ip,
            host_port: host.map_or(0, |(lo, _)| lo + i),
            container_port: c_lo + i,
            protocol,
        })
        .collect())
}

/// The ports `-P` publishes: every EXPOSEd one (`5000/tcp`, `53/udp`, `80`), on any
/// free host port.
pub fn exposed(exposed: &[String]) -> Result<Vec<PortSpec>, Error> {
    let mut out = Vec::new();
    for e in exposed {
        for mut p in parse(e)? {
            p.host_port = 0;
            out.push(p);
        }
    }
    out.sort_by_key(|p| (p.container_port, p.protocol));
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> PortSpec {
        let mut all = parse(v).unwrap();
        assert_eq!(all.len(), 1, "{v}");
        all.remove(0)
    }

    #[test]
    fn forms_docker_accepts() {
        let p = one("8000:5000");
        assert_eq!(
            (p.host_ip, p.host_port, p.container_port, p.protocol),
            (None, 8000, 5000, Protocol::Tcp)
        );
        let p = one("5000");
        assert_eq!((p.host_port, p.container_port), (0, 5000));
        let p = one("127.0.0.1:8000:5000/udp");
        assert_eq!(
            (p.host_ip, p.host_port, p.protocol),
            (Some(Ipv4Addr::LOCALHOST), 8000, Protocol::Udp)
        );
        let p = one("127.0.0.1::5000");
        assert_eq!((p.host_ip, p.host_port), (Some(Ipv4Addr::LOCALHOST), 0));
        let p = one("0.0.0.0:80:80/TCP");
        assert_eq!((p.host_ip, p.protocol), (None, Protocol::Tcp));
    }

    #[test]
    fn ranges_expand_pairwise() {
        let all = parse("8000-8002:5000-5002").unwrap();
        let pairs: Vec<(u16, u16)> = all
            .iter()
            .map(|p| (p.host_port, p.container_port))
            .collect();
        assert_eq!(pairs, [(8000, 5000), (8001, 5001), (8002, 5002)]);
        assert!(parse("8000-8001:5000-5002").is_err());
    }

    #[test]
    fn malformed_mappings_say_why() {
        for (bad, why) in [
            ("", "is not a port number"),
            ("abc", "is not a port number"),
            ("0", "is not a port number"),
            ("70000", "is not a port number"),
            ("8000:5000/sctp", "unknown protocol \"sctp\""),
            ("1.2.3:80:80", "is not an IPv4 address"),
            ("a:b:c:d", "too many colons"),
            ("90-80", "reversed"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(
            parse("90-80").unwrap_err().to_string(),
            "invalid port mapping \"90-80\": the range 90-80 is reversed; \
             expected [ip:][hostPort:]containerPort[/tcp|udp]"
        );
        assert_eq!(
            "sctp".parse::<Protocol>().unwrap_err().to_string(),
            "unknown protocol \"sctp\" (use tcp or udp)"
        );
    }

    #[test]
    fn exposed_ports_get_any_host_port() {
        let ps = exposed(&[
            "5000/tcp".into(),
            "53/udp".into(),
            "5000/tcp".into(),
            "80".into(),
        ])
        .unwrap();
        let got: Vec<(u16, Protocol, u16)> = ps
            .iter()
            .map(|p| (p.container_port, p.protocol, p.host_port))
            .collect();
        assert_eq!(
            got,
            [
                (53, Protocol::Udp, 0),
                (80, Protocol::Tcp, 0),
                (5000, Protocol::Tcp, 0)
            ]
        );
    }

    #[test]
    fn published_reads_like_docker_port() {
        let p = Published {
            host_ip: None,
            host_port: 8000,
            container_port: 5000,
            protocol: Protocol::Tcp,
        };
        assert_eq!(p.to_string(), "5000/tcp -> 0.0.0.0:8000");
    }
}
