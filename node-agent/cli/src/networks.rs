//! `berth network create|ls|inspect|rm|connect|disconnect` and `berth port`.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use crate::format::{short_id, table};
use berth_engine::Paths;
use berth_engine::container;
use berth_engine::endpoint;
use berth_net::network::{self, Networks};
use berth_net::ports::Protocol;

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network
    Create {
        /// Subnet in CIDR form (e.g. 10.90.0.0/24); a free one is picked otherwise
        #[arg(long)]
        subnet: Option<String>,
        name: String,
    },
    /// List networks
    #[command(alias = "list")]
    Ls {
        /// Only display network names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show networks as JSON, with their containers
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (refused while containers are on them)
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a container to a network
    Connect {
        /// Another name for the container on this network
        #[arg(long)]
        alias: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect { network: String, container: String },
}

pub fn run(paths: &Paths, cmd: NetworkCommand) -> Result<i32> {
    let nets = Networks::new(paths.net());
    match cmd {
        NetworkCommand::Create { subnet, name } => {
            let subnet = subnet.as_deref().map(network::parse_subnet).transpose()?;
            println!("{}", nets.create(&name, subnet)?.id);
        }
        NetworkCommand::Ls { quiet } => {
            let all = nets.list()?;
            if quiet {
                all.iter().for_each(|n| println!("{}", n.name));
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|n| {
                        vec![
                            short_id(&n.id).to_string(),
                            n.name.clone(),
                            "bridge".into(),
                            n.subnet.to_string(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["NETWORK ID", "NAME", "DRIVER", "SUBNET"], &rows)
                );
            }
        }
        NetworkCommand::Inspect { names } => {
            let containers = container::list(paths)?;
            let mut out = Vec::new();
            for name in names {
                let n = nets.get(&name)?;
                let mut members = serde_json::Map::new();
                for c in &containers {
                    for e in endpoint::load(&c.dir)?
                        .endpoints
                        .iter()
                        .filter(|e| e.network == n.name)
                    {
                        members.insert(
                            c.config.id.clone(),
                            serde_json::json!({ "Name": c.config.name, "IPv4Address": format!("{}/{}", e.ip, n.subnet.prefix_len()) }),
                        );
                    }
                }
                out.push(serde_json::json!({
                    "Name": n.name, "Id": n.id, "Created": crate::format::rfc3339(n.created), "Driver": "bridge",
                    "IPAM": { "Config": [{ "Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string() }] },
                    "Options": { "com.docker.network.bridge.name": n.bridge },
                    "Containers": members,
                }));
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        NetworkCommand::Rm { names } => {
            for name in names {
                endpoint::remove_network(paths, &name)?;
                println!("{name}");
            }
        }
        NetworkCommand::Connect {
            alias,
            network,
            container,
        } => {
            let c = container::find(paths, &container)?;
            endpoint::connect(paths, &c, &network, &alias)?;
        }
        NetworkCommand::Disconnect { network, container } => {
            let c = container::find(paths, &container)?;
            endpoint::disconnect(paths, &c, &network)?;
        }
    }
    Ok(0)
}

#[derive(Args)]
pub struct PortArgs {
    container: String,
    /// Only this container port (PORT[/PROTO])
    port: Option<String>,
}

/// `berth port`: the container's published ports, as `docker port` prints them.
pub fn port(paths: &Paths, a: PortArgs) -> Result<i32> {
    let c = container::find(paths, &a.container)?;
    let published = endpoint::load(&c.dir)?.published;
    let wanted = match a.port.as_deref() {
        None => None,
        Some(p) => {
            let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            let num: u16 = num
                .parse()
                .map_err(|_| anyhow::anyhow!("invalid port \"{p}\""))?;
            Some((num, proto.parse::<Protocol>().map_err(anyhow::Error::msg)?))
        }
    };
    let shown: Vec<_> = published
        .iter()
        .filter(|p| wanted.is_none_or(|(n, proto)| p.container_port == n && p.protocol == proto))
        .collect();
    if let (Some(p), true) = (&a.port, shown.is_empty()) {
        bail!("no public port \"{p}\" published for {}", c.config.name);
    }
    for p in shown {
        match wanted {
            Some(_) => println!(
                "{}:{}",
                p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                p.host_port
            ),
            None => println!("{p}"),
        }
    }
    Ok(0)
}
