//! Between the cluster's words and the engine's: a Replica's template becomes the options
//! of `berth run`, a container's state becomes the Replica's status. Pure.

use std::collections::BTreeMap;
use std::time::SystemTime;

use berth_crds::{Replica, ReplicaPhase, ReplicaStatus, Template};

use berth_engine::container::{Container, Liveness, RestartPolicy};
use berth_engine::create::CreateOptions;
use berth_engine::spec::Resources;

/// Labels that tie a container to its Replica.
pub const UID_LABEL: &str = "berth.dev/replica-uid";
pub const NAME_LABEL: &str = "berth.dev/replica";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("building images on hosts is not supported yet; give an image")]
    BuildUnsupported,
    #[error("invalid {what} quantity \"{value}\"")]
    Quantity { what: &'static str, value: String },
}

/// A CPU quantity (`2`, `1.5`, `500m`) in cores.
pub fn cpus(q: &str) -> Result<f64, Error> {
    let err = || Error::Quantity {
        what: "cpu",
        value: q.to_string(),
    };
    let (num, scale) = match q.strip_suffix('m') {
        Some(milli) => (milli, 1000.0),
        None => (q, 1.0),
    };
    let n: f64 = num.parse().map_err(|_| err())?;
    if !n.is_finite() || n <= 0.0 {
        return Err(err());
    }
    Ok(n / scale)
}

/// A memory quantity (`64Mi`, `1G`, `512k`, `1048576`) in bytes.
pub fn bytes(q: &str) -> Result<i64, Error> {
    let err = || Error::Quantity {
        what: "memory",
        value: q.to_string(),
    };
    const SUFFIXES: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (num, mult) = SUFFIXES
        .iter()
        .find_map(|(s, m)| q.strip_suffix(s).map(|n| (n, *m)))
        .unwrap_or((q, 1.0));
    let n: f64 = num.parse().map_err(|_| err())?;
    if !n.is_finite() || n <= 0.0 || n * mult > i64::MAX as f64 {
        return Err(err());
    }
    Ok((n * mult) as i64)
}

/// The container name of a Replica on this host: namespace and name.
pub fn container_name(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}")
}

/// What `berth run` would be told for this Replica's template.
pub fn create_options(
    namespace: &str,
    name: &str,
    uid: &str,
    t: &Template,
) -> Result<CreateOptions, Error> {
    let image = t.image.clone().ok_or(Error::BuildUnsupported)?;
    // A Kubernetes-style command replaces the whole ENTRYPOINT: its first word becomes
    // the entrypoint, the rest come before the arguments.
    let (entrypoint, args) = match t.command.split_first() {
        Some((first, rest)) => (
            Some(first.clone()),
            rest.iter().chain(&t.args).cloned().collect(),
        ),
        None => (None, t.args.clone()),
    };
    let resources = match &t.resources {
        Some(r) => Resources {
            cpus: r.cpu.as_deref().map(cpus).transpose()?,
            memory: r.memory.as_deref().map(bytes).transpose()?,
            pids: None,
        },
        None => Resources::default(),
    };
    Ok(CreateOptions {
        name: Some(container_name(namespace, name)),
        image,
        args,
        entrypoint,
        env: t
            .env
            .iter()
            .map(|e| format!("{}={}", e.name, e.value))
            .collect(),
        resources,
        expose: t
            .ports
            .iter()
            .map(|p| {
                format!(
                    "{}/{}",
                    p.container_port,
                    p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase()
                )
            })
            .collect(),
        restart: Some(RestartPolicy::Always),
        labels: BTreeMap::from([
            (UID_LABEL.to_string(), uid.to_string()),
            (NAME_LABEL.to_string(), format!("{namespace}/{name}")),
        ]),
        ..Default::default()
    })
}

fn rfc3339(t: Option<SystemTime>) -> Option<String> {
    t.map(|t| humantime::format_rfc3339_seconds(t).to_string())
}

/// The Replica status a container's state amounts to.
pub fn status(c: &Container, host_ip: &str) -> ReplicaStatus {
    let s = &c.state;
    let mut out = ReplicaStatus {
        host_ip: Some(host_ip.to_string()),
        container_id: Some(c.config.id.clone()),
        restarts: s.restart_count as i32,
        exit_code: s.exit_code,
        started_at: rfc3339(s.started_at),
        ..Default::default()
    };
    match c.liveness() {
        Liveness::Running => {
            out.phase = ReplicaPhase::Running;
            out.ready = true;
            out.exit_code = None;
        }
        Liveness::RunningWithoutMonitor => {
            out.phase = ReplicaPhase::Running;
            out.ready = true;
            out.reason = Some("MonitorLost".into());
            out.message =
                Some("the container runs but its monitor died; its exit will not be seen".into());
        }
        Liveness::Created => out.phase = ReplicaPhase::Pending,
        Liveness::Restarting => {
            out.phase = ReplicaPhase::Running;
            out.reason = Some("Restarting".into());
            out.message = Some(format!(
                "exited with code {}; restarting",
                s.exit_code.unwrap_or(-1)
            ));
        }
        Liveness::Exited | Liveness::Dead => {
            out.phase = if s.exit_code == Some(0) {
                ReplicaPhase::Succeeded
            } else {
                ReplicaPhase::Failed
            };
            out.finished_at = rfc3339(s.finished_at);
            if let Some(error) = &s.error {
                out.reason = Some("StartError".into());
                out.message = Some(error.clone());
            } else {
                out.reason = Some("Exited".into());
                out.message = Some(format!("exited with code {}", s.exit_code.unwrap_or(-1)));
            }
        }
    }
    out
}

/// A status for a Replica this host cannot run (yet): no container.
pub fn waiting(reason: &str, message: String, host_ip: &str) -> ReplicaStatus {
    ReplicaStatus {
        phase: ReplicaPhase::Pending,
        host_ip: Some(host_ip.to_string()),
        reason: Some(reason.to_string()),
        message: Some(message),
        ..Default::default()
    }
}

/// The uid a container was made for.
pub fn replica_uid(c: &Container) -> Option<&str> {
    c.config.labels.get(UID_LABEL).map(String::as_str)
}

/// The Replica's identity: namespace, name and uid.
pub fn identity(r: &Replica) -> (String, String, String) {
    (
        r.metadata.namespace.clone().unwrap_or_default(),
        r.metadata.name.clone().unwrap_or_default(),
        r.metadata.uid.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_crds::app::{ContainerPort, EnvVar, Resources as Limits};

    #[test]
    fn quantities() {
        assert_eq!(cpus("2"), Ok(2.0));
        assert_eq!(cpus("500m"), Ok(0.5));
        assert_eq!(cpus("1.5"), Ok(1.5));
        assert!(cpus("lots").is_err() && cpus("0").is_err());
        assert_eq!(bytes("64Mi"), Ok(64 << 20));
        assert_eq!(bytes("1G"), Ok(1_000_000_000));
        assert_eq!(bytes("512k"), Ok(512_000));
        assert_eq!(bytes("1048576"), Ok(1 << 20));
        assert!(bytes("12Q").is_err() && bytes("-1Mi").is_err());
    }

    #[test]
    fn templates_become_run_options() {
        let t = Template {
            image: Some("base:latest".into()),
            command: vec!["/bin/sh".into(), "-c".into()],
            args: vec!["httpd -f -p 8080".into()],
            env: vec![EnvVar {
                name: "A".into(),
                value: "1".into(),
            }],
            ports: vec![ContainerPort {
                name: None,
                container_port: 8080,
                protocol: None,
            }],
            resources: Some(Limits {
                cpu: Some("250m".into()),
                memory: Some("32Mi".into()),
            }),
            build: None,
        };
        let o = create_options("default", "hello-abc-0", "uid-1", &t).unwrap();
        assert_eq!(o.name.as_deref(), Some("default.hello-abc-0"));
        assert_eq!(o.entrypoint.as_deref(), Some("/bin/sh"));
        assert_eq!(o.args, ["-c", "httpd -f -p 8080"]);
        assert_eq!(o.env, ["A=1"]);
        assert_eq!(o.expose, ["8080/tcp"]);
        assert_eq!(
            (o.resources.cpus, o.resources.memory),
            (Some(0.25), Some(32 << 20))
        );
        assert_eq!(o.restart, Some(RestartPolicy::Always));
        assert_eq!(o.labels.get(UID_LABEL).map(String::as_str), Some("uid-1"));
    }

    #[test]
    fn builds_are_refused_clearly() {
        let t = Template {
            build: Some(Default::default()),
            ..Default::default()
        };
        assert_eq!(
            create_options("d", "n", "u", &t).unwrap_err(),
            Error::BuildUnsupported
        );
    }
}
