//! Docker's legacy links: `--link name[:alias]` makes the alias resolve to the linked
//! container and describes it in environment variables. Pure.

use std::net::Ipv4Addr;

use crate::ports::Protocol;

/// What the new container learns about a container it links to.
pub struct Linked<'a> {
    pub alias: &'a str,
    pub ip: Ipv4Addr,
    /// Its exposed ports, lowest first.
    pub ports: &'a [(u16, Protocol)],
    /// Its environment (`KEY=VALUE`).
    pub env: &'a [String],
}

/// The variables Docker sets for a link (moby `links.go`): `ALIAS_NAME`, `ALIAS_PORT`,
/// `ALIAS_PORT_<port>_<PROTO>[_ADDR|_PORT|_PROTO]` and `ALIAS_ENV_<KEY>`.
pub fn env(container_name: &str, link: &Linked<'_>) -> Vec<String> {
    let prefix: String = link.alias.to_ascii_uppercase().replace('-', "_");
    let mut env = vec![format!("{prefix}_NAME=/{container_name}/{}", link.alias)];
    if let Some((port, proto)) = link.ports.first() {
        env.push(format!("{prefix}_PORT={proto}://{}:{port}", link.ip));
    }
    for (port, proto) in link.ports {
        let p = format!(
            "{prefix}_PORT_{port}_{}",
            proto.to_string().to_ascii_uppercase()
        );
        env.push(format!("{p}={proto}://{}:{port}", link.ip));
        env.push(format!("{p}_ADDR={}", link.ip));
        env.push(format!("{p}_PORT={port}"));
        env.push(format!("{p}_PROTO={proto}"));
    }
    for kv in link.env {
        if let Some((k, v)) = kv.split_once('=')
            && !matches!(k, "HOME" | "PATH" | "HOSTNAME")
        {
            env.push(format!("{prefix}_ENV_{k}={v}"));
        }
    }
    env
}

/// `--link name[:alias]`: the alias defaults to the name.
pub fn parse(value: &str) -> (&str, &str) {
    value.split_once(':').unwrap_or((value, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_match_dockers() {
        let env = env(
            "app",
            &Linked {
                alias: "db-server",
                ip: Ipv4Addr::new(10, 88, 0, 3),
                ports: &[(3306, Protocol::Tcp), (33060, Protocol::Tcp)],
                env: &[
                    "MYSQL_DATABASE=app".into(),
                    "PATH=/bin".into(),
                    "EMPTY=".into(),
                ],
            },
        );
        assert_eq!(
            env,
            [
                "DB_SERVER_NAME=/app/db-server",
                "DB_SERVER_PORT=tcp://10.88.0.3:3306",
                "DB_SERVER_PORT_3306_TCP=tcp://10.88.0.3:3306",
                "DB_SERVER_PORT_3306_TCP_ADDR=10.88.0.3",
                "DB_SERVER_PORT_3306_TCP_PORT=3306",
                "DB_SERVER_PORT_3306_TCP_PROTO=tcp",
                "DB_SERVER_PORT_33060_TCP=tcp://10.88.0.3:33060",
                "DB_SERVER_PORT_33060_TCP_ADDR=10.88.0.3",
                "DB_SERVER_PORT_33060_TCP_PORT=33060",
                "DB_SERVER_PORT_33060_TCP_PROTO=tcp",
                "DB_SERVER_ENV_MYSQL_DATABASE=app",
                "DB_SERVER_ENV_EMPTY=",
            ]
        );
    }

    #[test]
    fn alias_defaults_to_the_name() {
        assert_eq!(parse("mysql:dbserver"), ("mysql", "dbserver"));
        assert_eq!(parse("mysql"), ("mysql", "mysql"));
    }
}
