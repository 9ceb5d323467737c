//! `berth inspect`: containers (and images) as Docker-shaped JSON.

use std::time::SystemTime;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::format::rfc3339;
use berth_engine::Paths;
use berth_engine::container::{self, Container, Liveness, RestartPolicy};
use berth_engine::endpoint;
use berth_image::ImageStore;

#[derive(Args)]
pub struct InspectArgs {
    /// Only inspect objects of this type: container or image
    #[arg(long = "type")]
    kind: Option<String>,
    #[arg(required = true)]
    names: Vec<String>,
}

/// Docker's `NetworkSettings`: addresses per network and published ports.
fn network_json(c: &Container, paths: &Paths) -> Value {
    let a = endpoint::load(&c.dir).unwrap_or_default();
    let nets = berth_net::network::Networks::new(paths.net());
    let mut networks = serde_json::Map::new();
    for e in &a.endpoints {
        let n = nets.get(&e.network).ok();
        networks.insert(
            e.network.clone(),
            json!({
                "IPAddress": e.ip.to_string(),
                "IPPrefixLen": n.as_ref().map(|n| n.subnet.prefix_len()),
                "Gateway": n.as_ref().map(|n| n.gateway.to_string()),
                "Aliases": e.aliases,
            }),
        );
    }
    let mut ports = serde_json::Map::new();
    for p in &a.published {
        let host = json!({ "HostIp": p.host_ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED).to_string(), "HostPort": p.host_port.to_string() });
        if let Value::Array(list) = ports
            .entry(format!("{}/{}", p.container_port, p.protocol))
            .or_insert(json!([]))
        {
            list.push(host);
        }
    }
    json!({
        "IPAddress": a.endpoints.first().map(|e| e.ip.to_string()).unwrap_or_default(),
        "Networks": networks,
        "Ports": ports,
    })
}

fn container_json(c: &Container, paths: &Paths) -> Value {
    let s = &c.state;
    let time =
        |t: Option<SystemTime>| t.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339);
    let process = c.config.spec.process().clone().unwrap_or_default();
    let res = c
        .config
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let status = match c.liveness() {
        Liveness::Created => "created",
        Liveness::Running | Liveness::RunningWithoutMonitor => "running",
        Liveness::Restarting => "restarting",
        Liveness::Exited => "exited",
        Liveness::Dead => "dead",
    };
    let restart = match c.config.restart {
        RestartPolicy::No => json!({"Name": "no", "MaximumRetryCount": 0}),
        p => serde_json::to_value(p).unwrap_or_default(),
    };
    json!({
        "Id": c.config.id,
        "Created": rfc3339(c.config.created),
        "Path": process.args().as_ref().and_then(|a| a.first().cloned()).unwrap_or_default(),
        "Args": process.args().as_ref().map(|a| a[1..].to_vec()).unwrap_or_default(),
        "State": {
            "Status": status,
            "Running": c.is_running(),
            "Restarting": c.liveness() == Liveness::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": c.liveness() == Liveness::Dead,
            "Pid": s.process.filter(|p| p.alive()).map_or(0, |p| p.pid),
            "MonitorPid": s.monitor.filter(|p| p.alive()).map_or(0, |p| p.pid),
            "ExitCode": s.exit_code.unwrap_or(0),
            "Error": s.error.clone().unwrap_or_default(),
            "StartedAt": time(s.started_at),
            "FinishedAt": time(s.finished_at),
        },
        "Image": c.config.image_id,
        "Name": format!("/{}", c.config.name),
        "RestartCount": s.restart_count,
        "LogPath": c.log_path(),
        "HostConfig": {
            "NetworkMode": c.config.network.to_string(),
            "RestartPolicy": restart,
            "AutoRemove": c.config.auto_remove,
            "ReadonlyRootfs": c.config.spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false),
            "Memory": res.memory().and_then(|m| m.limit()).unwrap_or(0),
            "NanoCpus": res.cpu().as_ref().and_then(|cpu| Some(cpu.quota()? * 1_000_000_000 / cpu.period()? as i64)).unwrap_or(0),
            "PidsLimit": res.pids().map(|p| p.limit()),
            "Binds": c.config.mounts.iter().map(|m| format!("{}:{}{}", m.name.clone().unwrap_or_else(|| m.source.display().to_string()), m.destination, if m.read_only { ":ro" } else { "" })).collect::<Vec<_>>(),
        },
        "NetworkSettings": network_json(c, paths),
        "Mounts": c.config.mounts.iter().map(|m| json!({
            "Type": m.kind, "Name": m.name, "Source": m.source, "Destination": m.destination, "RW": !m.read_only,
        })).collect::<Vec<_>>(),
        "Config": {
            "Hostname": c.config.spec.hostname(),
            "User": format!("{}:{}", process.user().uid(), process.user().gid()),
            "Env": process.env(),
            "Cmd": process.args(),
            "Image": c.config.image,
            "WorkingDir": process.cwd(),
            "StopSignal": c.config.stop_signal,
            "Labels": c.config.labels,
            "StopTimeout": c.config.stop_timeout,
        },
    })
}

pub fn inspect(paths: &Paths, a: InspectArgs) -> Result<i32> {
    let kind = a.kind.as_deref();
    if let Some(k) = kind.filter(|k| !["container", "image"].contains(k)) {
        bail!("invalid --type \"{k}\": use container or image");
    }
    let mut out = Vec::new();
    let mut failed = false;
    for name in &a.names {
        let found = if kind != Some("image") {
            container::find(paths, name)
                .ok()
                .map(|c| container_json(&c, paths))
        } else {
            None
        };
        let found = match found {
            Some(v) => Some(v),
            None if kind != Some("container") => {
                let store = ImageStore::open(&paths.root)?;
                store.resolve(name).ok().map(|i| store.inspect_json(&i))
            }
            None => None,
        };
        match found {
            Some(v) => out.push(v),
            None => {
                eprintln!("berth: no such object: {name}");
                failed = true;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if failed { 1 } else { 0 })
}
