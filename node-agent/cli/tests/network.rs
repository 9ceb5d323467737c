//! Bridge networking with real containers, as root, on bridges, subnets and nftables
//! tables each test makes for itself: published ports, links, user-defined networks,
//! isolation, address allocation under concurrency, conflicts, and leak checks.

mod common;

use std::collections::HashSet;
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use common::{Env, free_port};

fn http_get(addr: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-m", "5", &format!("http://{addr}/")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip_of(env: &Env, container: &str, network: &str) -> String {
    env.inspect(container)["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string()
}

fn gateway(env: &Env) -> String {
    let out = env.ok(&["network", "inspect", "bridge"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v[0]["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap()
        .to_string()
}

const HELLO: &str = "<h1>hello from berth</h1>\n";

/// Starts a detached web server named `name` with its port 5000 published on
/// a free host port, and returns that port once it answers.
fn publish_web(env: &Env, name: &str) -> u16 {
    let port = free_port();
    env.ok(&[
        "run",
        "-d",
        "--name",
        name,
        "-p",
        &format!("{port}:5000"),
        "base",
        "httpd",
        "-f",
        "-p",
        "5000",
        "-h",
        "/var/www",
    ]);
    env.wait_for("the published port", Duration::from_secs(10), || {
        http_get(&format!("127.0.0.1:{port}")) == HELLO
    });
    port
}

#[test]
fn the_default_bridge_gives_an_address_a_route_and_hosts_entries() {
    let env = Env::new();
    let out = env.ok(&[
        "run",
        "--rm",
        "--name",
        "probe",
        "base",
        "sh",
        "-c",
        "ip -4 -o addr show eth0; ip route; grep probe /etc/hosts",
    ]);
    let subnet_prefix = env
        .paths
        .bridge_subnet
        .rsplit_once('.')
        .unwrap()
        .0
        .to_string();
    assert!(out.contains(&format!("inet {subnet_prefix}.2/24")), "{out}");
    assert!(
        out.contains(&format!("default via {subnet_prefix}.1 dev eth0")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{subnet_prefix}.2\t")) && out.contains(" probe"),
        "{out}"
    );
    env.assert_clean();
}

#[test]
fn published_ports_answer_on_localhost_the_host_and_from_containers() {
    let env = Env::new();
    let port = publish_web(&env, "web");
    // Another of the host's addresses: the bridge's gateway is one.
    assert_eq!(http_get(&format!("{}:{port}", gateway(&env))), HELLO);
    // From a container, through the host's address (hairpin).
    let out = env.ok(&[
        "run",
        "--rm",
        "base",
        "wget",
        "-qO-",
        &format!("http://{}:{port}/", gateway(&env)),
    ]);
    assert_eq!(out, HELLO);
    assert_eq!(
        env.ok(&["port", "web"]),
        format!("5000/tcp -> 0.0.0.0:{port}\n")
    );
    assert_eq!(
        env.ok(&["port", "web", "5000"]),
        format!("0.0.0.0:{port}\n")
    );
    assert!(
        env.ok(&["ps"])
            .contains(&format!("0.0.0.0:{port}->5000/tcp"))
    );
    env.ok(&["rm", "-f", "web"]);
    assert_ne!(
        http_get(&format!("127.0.0.1:{port}")),
        HELLO,
        "the port is withdrawn with the container"
    );
    env.assert_clean();
}

/// A UDP echo server, built static so it runs in the busybox image (whose nc has no
/// UDP mode).
const UDP_ECHO: &str = r#"
#include <stdlib.h>
#include <netinet/in.h>
#include <sys/socket.h>
int main(int argc, char **argv) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0}, from;
    a.sin_family = AF_INET;
    a.sin_port = htons(atoi(argv[1]));
    if (bind(s, (struct sockaddr *)&a, sizeof a)) return 1;
    char buf[2048];
    for (;;) {
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n > 0) sendto(s, buf, n, 0, (struct sockaddr *)&from, len);
    }
}
"#;

fn build_udp_echo(env: &Env) -> std::path::PathBuf {
    let dir = env.file("udp");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("echo.c"), UDP_ECHO).unwrap();
    let out = std::process::Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(dir.join("udp-echo"))
        .arg(dir.join("echo.c"))
        .output()
        .expect("running cc (install gcc and libc6-dev)");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[test]
fn publish_all_uses_free_ports_and_udp_works() {
    let env = Env::new();
    let bin = format!("{}:/opt:ro", build_udp_echo(&env).display());
    env.ok(&[
        "run",
        "-d",
        "--name",
        "both",
        "-P",
        "--expose",
        "5000",
        "--expose",
        "5353/udp",
        "-v",
        &bin,
        "base",
        "sh",
        "-c",
        "httpd -p 5000 -h /var/www; exec /opt/udp-echo 5353",
    ]);
    let ports = env.ok(&["port", "both"]);
    assert_eq!(ports.lines().count(), 2, "{ports}");
    let host_port = |spec: &str| -> u16 {
        let line = ports
            .lines()
            .find(|l| l.starts_with(spec))
            .unwrap_or_else(|| panic!("{spec} in {ports}"));
        line.rsplit(':').next().unwrap().parse().unwrap()
    };
    let (tcp, udp) = (host_port("5000/tcp"), host_port("5353/udp"));
    env.wait_for("the tcp port", Duration::from_secs(10), || {
        http_get(&format!("127.0.0.1:{tcp}")) == HELLO
    });
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    env.wait_for("the datagram's echo", Duration::from_secs(10), || {
        sock.send_to(b"datagram over udp", ("127.0.0.1", udp))
            .unwrap();
        matches!(sock.recv_from(&mut buf), Ok((17, _))) && &buf[..17] == b"datagram over udp"
    });
    env.ok(&["rm", "-f", "both"]);
    env.assert_clean();
}

#[test]
fn links_resolve_and_describe_the_linked_container() {
    let env = Env::new();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "mysql",
        "--expose",
        "3306",
        "-e",
        "MYSQL_DATABASE=app",
        "base",
        "httpd",
        "-f",
        "-p",
        "3306",
        "-h",
        "/var/www",
    ]);
    let ip = ip_of(&env, "mysql", "bridge");
    let out = env.ok(&[
        "run", "--rm", "--link", "mysql:dbserver", "-e", "DATABASE_URL=mysql://u:p@dbserver/app", "base", "sh", "-c",
        "env | grep -E '^DBSERVER_' | sort; wget -qO- http://dbserver:3306/; wget -qO- http://mysql:3306/",
    ]);
    for want in [
        format!("DBSERVER_PORT_3306_TCP_ADDR={ip}\n"),
        "DBSERVER_PORT_3306_TCP_PORT=3306\n".to_string(),
        format!("DBSERVER_PORT=tcp://{ip}:3306\n"),
        "DBSERVER_ENV_MYSQL_DATABASE=app\n".to_string(),
    ] {
        assert!(out.contains(&want), "missing {want:?} in {out}");
    }
    assert_eq!(out.matches(HELLO).count(), 2, "{out}");
    env.ok(&["rm", "-f", "mysql"]);
    env.assert_clean();
}

#[test]
fn user_networks_resolve_names_and_aliases_and_are_isolated() {
    let env = Env::new();
    env.ok(&["network", "create", "backend"]);
    env.ok(&["network", "create", "frontend"]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "backend",
        "--network-alias",
        "database",
        "base",
        "httpd",
        "-f",
        "-p",
        "3306",
        "-h",
        "/var/www",
    ]);
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "backend",
        "base",
        "sh",
        "-c",
        "wget -qO- http://db:3306/; wget -qO- http://database:3306/",
    ]);
    assert_eq!(out, HELLO.repeat(2));
    // Isolated from another network: even by address.
    let db_ip = ip_of(&env, "db", "backend");
    let r = env.berth(&[
        "run",
        "--rm",
        "--network",
        "frontend",
        "base",
        "sh",
        "-c",
        &format!("echo GET / | nc -w 2 {db_ip} 3306"),
    ]);
    assert_ne!(r.code, 0, "frontend reached backend: {}", r.stdout);
    // connect joins a running container to another network, disconnect takes it off.
    env.ok(&["network", "connect", "frontend", "db"]);
    assert_eq!(
        env.ok(&[
            "run",
            "--rm",
            "--network",
            "frontend",
            "base",
            "wget",
            "-qO-",
            "http://db:3306/"
        ]),
        HELLO
    );
    env.ok(&["network", "disconnect", "frontend", "db"]);
    let r = env.berth(&[
        "run",
        "--rm",
        "--network",
        "frontend",
        "base",
        "sh",
        "-c",
        "grep -w db /etc/hosts",
    ]);
    assert_ne!(r.code, 0, "db still resolves on frontend: {}", r.stdout);

    let r = env.berth(&["network", "rm", "backend"]);
    assert!(
        r.stderr
            .contains("network backend is in use by container db"),
        "{}",
        r.stderr
    );
    env.ok(&["rm", "-f", "db"]);
    env.ok(&["network", "rm", "backend", "frontend"]);
    assert_eq!(env.ok(&["network", "ls", "-q"]), "bridge\n");
    env.assert_clean();
}

#[test]
fn fifty_containers_started_at_once_get_distinct_addresses() {
    let env = Env::new();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                s.spawn(|| {
                    env.ok(&["run", "-d", "base", "sleep", "60"])
                        .trim()
                        .to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ips: HashSet<String> = ids.iter().map(|id| ip_of(&env, id, "bridge")).collect();
    assert_eq!(ips.len(), 50, "{ips:?}");
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    env.ok(&args);
    env.assert_clean();
}

#[test]
fn a_port_in_use_is_a_clear_error_and_leaves_nothing() {
    let env = Env::new();
    let taken = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let r = env.berth(&[
        "run",
        "-d",
        "-p",
        &format!("{port}:80"),
        "base",
        "sleep",
        "60",
    ]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr
            .contains(&format!("port 0.0.0.0:{port}/tcp is already in use")),
        "{}",
        r.stderr
    );
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
    drop(taken);
    // Two containers cannot have the same host port either.
    let port = free_port().to_string();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "first",
        "-p",
        &format!("{port}:80"),
        "base",
        "sleep",
        "60",
    ]);
    let r = env.berth(&[
        "run",
        "-d",
        "-p",
        &format!("{port}:80"),
        "base",
        "sleep",
        "60",
    ]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("already in use"), "{}", r.stderr);
    env.ok(&["rm", "-f", "first"]);
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
    env.assert_clean();
}

#[test]
fn bad_network_input_gets_clear_errors() {
    let env = Env::new();
    env.ok(&["network", "create", "--subnet", "10.254.10.0/24", "taken"]);
    env.ok(&["run", "-d", "--name", "stopped", "base", "true"]);
    env.ok(&["wait", "stopped"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--network", "nowhere", "base", "true"],
            "network nowhere not found",
        ),
        (
            &["network", "create", "--subnet", "10.254.10.128/25", "other"],
            "overlaps with network taken",
        ),
        (
            &["network", "create", "--subnet", "nonsense", "other"],
            "invalid subnet \"nonsense\"",
        ),
        (
            &["network", "create", "taken"],
            "network with name taken already exists",
        ),
        (
            &["run", "-p", "80:", "base", "true"],
            "invalid port mapping \"80:\"",
        ),
        (
            &["run", "-p", "1.2.3.4.5:80:80", "base", "true"],
            "is not an IPv4 address",
        ),
        (
            &["run", "--link", "ghost:db", "base", "true"],
            "cannot link to ghost: no such container",
        ),
        (
            &["run", "--link", "stopped:db", "base", "true"],
            "cannot link to stopped: the container is not running",
        ),
        (
            &[
                "run",
                "--network",
                "none",
                "--link",
                "stopped",
                "base",
                "true",
            ],
            "--link needs a bridge network, not --network none",
        ),
        (&["network", "rm", "bridge"], "predefined network"),
        (
            &["run", "--network", "host", "-p", "80:80", "base", "true"],
            "publishing ports needs a bridge network, not --network host",
        ),
    ];
    env.expect_errors(cases);
    env.ok(&["rm", "stopped"]);
    assert_eq!(env.ok(&["ps", "-a", "-q"]), "");
    env.ok(&["network", "rm", "taken"]);
    env.assert_clean();
}

#[test]
fn after_a_crash_the_next_command_cleans_up_the_dead_containers_leftovers() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let env = Env::new();
    let port = publish_web(&env, "crashed");
    // A host crash, as far as berth can tell: monitor and container gone at once.
    let state = &env.inspect("crashed")["State"];
    for pid in [&state["MonitorPid"], &state["Pid"]] {
        kill(Pid::from_raw(pid.as_i64().unwrap() as i32), Signal::SIGKILL).unwrap();
    }
    env.wait_for("the container to die", Duration::from_secs(10), || {
        !env.ok(&["ps", "-a"]).contains("Up ")
    });
    assert!(env.ok(&["ps", "-a"]).contains("Exited (unknown)"));
    assert_ne!(
        http_get(&format!("127.0.0.1:{port}")),
        HELLO,
        "the port is withdrawn"
    );
    env.assert_network_clean_but_addresses();
    env.ok(&["rm", "crashed"]);
    env.assert_clean();
}
