//! Cluster mode end to end, as root: a real kube-apiserver and etcd, three hosts (network
//! namespaces with their own berth state, each running berth-agent) and berth-controller,
//! driven with kubectl.
//!
//! One cluster serves every scenario; each is its own reported test (see e2e::harness for
//! why this runner and not libtest's). They run one at a time in the order below, each on
//! an App of its own name, after [`fresh`] has removed every App and made sure every host
//! and the controller run (so one that fails leaves nothing in the next one's way). The
//! ones that stop parts of the cluster (an agent, the controller, the API server, a host)
//! put them back themselves, and [`fresh`] again if they fail midway; the host loss comes
//! last. Every wait polls a condition with a deadline.

use std::collections::BTreeSet;
use std::process::{Command, ExitCode};
use std::time::Duration;

use e2e::{Cluster, HOSTS, text};

fn main() -> ExitCode {
    e2e::take_down_on_signals();
    e2e::harness::run(
        || Cluster::up(&std::env::temp_dir().join(format!("berth-e2e-{}", std::process::id()))),
        fresh,
        &[
            ("apply_spreads_and_serves", apply_spreads_and_serves),
            ("scale_up_and_down", scale_up_and_down),
            (
                "agent_restart_adopts_containers",
                agent_restart_adopts_containers,
            ),
            ("controller_restart_mid_scale", controller_restart_mid_scale),
            ("apiserver_restart", apiserver_restart),
            ("standby_controller_waits", standby_controller_waits),
            (
                "delete_app_removes_containers",
                delete_app_removes_containers,
            ),
            ("invalid_app_refused", invalid_app_refused),
            ("missing_image_reported", missing_image_reported),
            ("host_loss_reschedules", host_loss_reschedules),
        ],
    )
}

/// Long enough for a loaded two-core machine; the waits end as soon as their condition
/// holds.
const LONG: Duration = Duration::from_secs(90);

/// Before each scenario: the standby controller stopped, the controller and every agent
/// running, every host Ready, no App, no Replica, no container left.
fn fresh(c: &Cluster) {
    c.control("controller", &["standby", "stop"]);
    // Running, with the usual settings (apiserver_restart changes them for a while).
    let usual = c
        .cmdline("controller.pid")
        .is_some_and(|cmd| cmd.contains("--node-grace-seconds 6 "));
    if !usual {
        c.control("controller", &["controller", "stop"]);
        c.control("controller", &["controller", "start"]);
    }
    for h in HOSTS {
        if !c.runs(&format!("hosts/{h}/agent.pid")) {
            c.control("agent", &[h, "start"]);
        }
    }
    c.kubectl_ok(&["delete", "apps", "--all", "--timeout=60s"]);
    c.wait_for("no replica left", LONG, || {
        c.kubectl_ok(&["get", "replicas", "-o", "name"]).is_empty()
    });
    c.wait_for("every host Ready and empty", LONG, || {
        HOSTS
            .iter()
            .all(|h| c.node_ready(h) == "True" && c.containers(h).is_empty())
    });
}

/// An App serving "hello from berth" on port 8080 (busybox httpd).
fn app(name: &str, replicas: u32) -> String {
    app_on(name, replicas, None)
}

/// The same, only on `host` when given.
fn app_on(name: &str, replicas: u32, host: Option<&str>) -> String {
    let placement = host.map_or(String::new(), |h| {
        format!("  placement:\n    nodeSelector:\n      berth.dev/host: {h}\n")
    });
    format!(
        "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n{placement}  template:\n    image: base:latest\n    args: [httpd, -f, -p, \"8080\", -h, /var/www]\n    ports:\n      - containerPort: 8080\n"
    )
}

fn apply_ok(c: &Cluster, yaml: &str) {
    let out = c.apply(yaml);
    assert!(out.status.success(), "kubectl apply: {}", text(&out));
}

fn wait_running(c: &Cluster, app: &str, n: usize) {
    c.wait_for(&format!("{n} running replicas of {app}"), LONG, || {
        c.running(app).len() == n
    });
}

fn scale(c: &Cluster, app: &str, n: u32) {
    c.kubectl_ok(&["scale", &format!("app/{app}"), &format!("--replicas={n}")]);
}

/// Three Replicas, spread over three hosts, each a container really serving in its host's
/// network namespace; the App's status counts them.
fn apply_spreads_and_serves(c: &Cluster) {
    apply_ok(c, &app("spread", 3));
    wait_running(c, "spread", 3);
    let nodes: BTreeSet<String> = c.running("spread").into_iter().map(|(_, n)| n).collect();
    assert_eq!(nodes.len(), 3, "one replica per host: {nodes:?}");
    for (name, node) in c.running("spread") {
        let container = format!("default.{name}");
        assert!(
            c.containers(&node).contains(&container),
            "{container} on {node}"
        );
        let ip = c.container_json(&node, &container)["NetworkSettings"]["IPAddress"]
            .as_str()
            .unwrap()
            .to_string();
        // The Replica is ready once its container runs; httpd may take a moment longer
        // to listen.
        c.wait_for(&format!("{container} serving at {ip}"), LONG, || {
            let page = Command::new("nsenter")
                .arg(format!("--net=/run/netns/berth-{}-{node}", c.id))
                .args(["curl", "-sS", "-m", "5", &format!("http://{ip}:8080/")])
                .output()
                .unwrap();
            let served = String::from_utf8_lossy(&page.stdout) == "<h1>hello from berth</h1>\n";
            if !served {
                eprintln!("{container}: {}", text(&page));
            }
            served
        });
    }
    c.wait_for("the App's status to say 3/3", LONG, || {
        c.kubectl_ok(&[
            "get",
            "app",
            "spread",
            "-o",
            "jsonpath={.status.readyReplicas}/{.status.availableReplicas}",
        ]) == "3/3"
    });
}

/// Scaling through the /scale subresource: 3 -> 6 (two per host) -> 1, the other
/// containers removed.
fn scale_up_and_down(c: &Cluster) {
    apply_ok(c, &app("scaled", 3));
    wait_running(c, "scaled", 3);
    scale(c, "scaled", 6);
    wait_running(c, "scaled", 6);
    for host in HOSTS {
        assert_eq!(
            c.running("scaled")
                .iter()
                .filter(|(_, n)| n == host)
                .count(),
            2,
            "two on {host}: {:?}",
            c.running("scaled")
        );
    }
    scale(c, "scaled", 1);
    c.wait_for("1 replica", LONG, || c.replicas("scaled").len() == 1);
    c.wait_for("the other containers gone", LONG, || {
        c.app_container_count("scaled") == 1
    });
    wait_running(c, "scaled", 1);
}

/// An agent killed and started again adopts its containers: no restart. The App is pinned
/// to one host, so that scaling it afterwards makes the new agent act there: once the new
/// Replica runs, the new agent has synced, with the old container in its view.
fn agent_restart_adopts_containers(c: &Cluster) {
    apply_ok(c, &app_on("adopted", 1, Some("h2")));
    wait_running(c, "adopted", 1);
    let (name, node) = c.running("adopted").remove(0);
    assert_eq!(node, "h2");
    let container = format!("default.{name}");
    let before = c.container_json(&node, &container)["State"]["StartedAt"].clone();
    c.control("agent", &[&node, "kill"]);
    c.control("agent", &[&node, "start"]);
    scale(c, "adopted", 2);
    wait_running(c, "adopted", 2);
    let after = c.container_json(&node, &container);
    assert_eq!(
        after["State"]["StartedAt"], before,
        "the container was not restarted"
    );
    assert_eq!(after["State"]["Running"], true);
    assert!(c.running("adopted").iter().any(|(n, _)| n == &name));
    assert_eq!(c.app_containers(&node, "adopted").len(), 2);
}

/// The controller killed in the middle of scaling up finishes after its restart, with no
/// duplicate and no missing Replica.
fn controller_restart_mid_scale(c: &Cluster) {
    apply_ok(c, &app("midscale", 1));
    wait_running(c, "midscale", 1);
    scale(c, "midscale", 6);
    c.control("controller", &["controller", "kill"]);
    c.control("controller", &["controller", "start"]);
    wait_running(c, "midscale", 6);
    let all = c.all_replicas("midscale");
    assert_eq!(all.len(), 6, "{all:?}");
    c.wait_for("6 containers", LONG, || {
        c.app_container_count("midscale") == 6
    });
}

/// kube-apiserver killed and started again: the controller and the agents watch again and
/// carry on (a scale made afterwards is carried out, down to the containers), and the
/// Replicas running meanwhile are left alone.
///
/// While the API server is away (and for a few seconds after it is back, while its RBAC
/// cache fills and it answers Forbidden), no agent can renew its Lease: with the suite's
/// 10 s Leases and 6 s grace the controller would take every host for lost and make all
/// Replicas again elsewhere. So the controller runs with a grace longer than an API server
/// restart meanwhile (as it would in production, where the grace is 30 s or more), and
/// with the usual one again afterwards ([`fresh`] also sees to it).
fn apiserver_restart(c: &Cluster) {
    c.control("controller", &["controller", "stop"]);
    c.control_with(
        "controller",
        &["controller", "start"],
        &[("BERTH_NODE_GRACE", "60")],
    );
    apply_ok(c, &app("rewatch", 4));
    wait_running(c, "rewatch", 4);
    let before: BTreeSet<String> = c.replicas("rewatch").into_keys().collect();
    c.control("restart-apiserver", &[]);
    scale(c, "rewatch", 2);
    c.wait_for("2 replicas after the apiserver restart", LONG, || {
        c.replicas("rewatch").len() == 2
    });
    c.wait_for("the other containers gone", LONG, || {
        c.app_container_count("rewatch") == 2
    });
    wait_running(c, "rewatch", 2);
    let after: BTreeSet<String> = c.replicas("rewatch").into_keys().collect();
    assert!(
        after.is_subset(&before),
        "replicas made again: {after:?}, were {before:?}; the controller said:\n{}",
        c.log_tail("controller.log", 30)
    );
    // And up again: new Replicas are made and started.
    scale(c, "rewatch", 3);
    wait_running(c, "rewatch", 3);
    c.control("controller", &["controller", "stop"]);
    c.control("controller", &["controller", "start"]);
}

/// A second controller waits while the first leads.
fn standby_controller_waits(c: &Cluster) {
    c.control("controller", &["standby", "start"]);
    let log = || std::fs::read_to_string(c.dir.join("standby.log")).unwrap_or_default();
    c.wait_for("the standby to see the leader", LONG, || {
        log().contains("another controller leads")
    });
    let holder = c.kubectl_ok(&[
        "get",
        "lease",
        "-n",
        "berth-system",
        "berth-controller",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert_eq!(holder, "controller");
    let log = log();
    assert!(!log.contains("leading"), "{log}");
    // The leader still does its work meanwhile.
    apply_ok(c, &app("led", 1));
    wait_running(c, "led", 1);
    c.control("controller", &["standby", "stop"]);
}

/// Deleting an App removes every container of it on every host before the delete returns
/// (the Replicas' finalizer), and its Replicas.
fn delete_app_removes_containers(c: &Cluster) {
    apply_ok(c, &app("doomed", 3));
    wait_running(c, "doomed", 3);
    assert_eq!(c.app_container_count("doomed"), 3);
    c.kubectl_ok(&["delete", "app", "doomed", "--timeout=60s"]);
    c.wait_for("the replicas gone", LONG, || {
        c.all_replicas("doomed").is_empty()
    });
    for host in HOSTS {
        assert!(
            c.app_containers(host, "doomed").is_empty(),
            "containers left on {host}"
        );
    }
}

/// Invalid Apps are refused by the API server, with the reasons.
fn invalid_app_refused(c: &Cluster) {
    let bad = "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata:\n  name: bad\nspec:\n  replicas: -1\n  template:\n    ports:\n      - containerPort: 70000\n";
    let out = c.apply(bad);
    assert!(!out.status.success());
    let message = text(&out);
    for reason in [
        "replicas must not be negative",
        "exactly one of image and build must be set",
        "containerPort must be 1-65535",
    ] {
        assert!(message.contains(reason), "{reason} in {message}");
    }
    let out = c.kubectl(&["get", "app", "bad"]);
    assert!(!out.status.success(), "{}", text(&out));
}

/// An image no host has: the Replica and the App say so.
fn missing_image_reported(c: &Cluster) {
    let ghost = "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata:\n  name: ghost\nspec:\n  replicas: 1\n  template:\n    image: localhost:1/nosuch:latest\n";
    apply_ok(c, ghost);
    c.wait_for("the replica's reason", LONG, || {
        c.kubectl_ok(&[
            "get",
            "replicas",
            "-l",
            "berth.dev/app=ghost",
            "-o",
            "jsonpath={.items[0].status.reason}",
        ]) == "ImageNotFound"
    });
    c.wait_for("the App's condition", LONG, || {
        c.kubectl_ok(&[
            "get",
            "app",
            "ghost",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"ReplicaFailure\")].reason}",
        ]) == "ImageNotFound"
    });
    c.kubectl_ok(&["delete", "app", "ghost", "--timeout=60s"]);
}

/// A host that stops: its Replicas come back on the others once its Lease has expired and
/// the grace period passed, and it is shown not ready. Back, it is Ready again and removes
/// the containers of the Replicas that moved away.
fn host_loss_reschedules(c: &Cluster) {
    apply_ok(c, &app("survivor", 3));
    wait_running(c, "survivor", 3);
    assert_eq!(c.app_containers("h3", "survivor").len(), 1);
    c.control("agent", &["h3", "kill"]);
    c.wait_for("the replicas moved off h3", LONG, || {
        let r = c.running("survivor");
        r.len() == 3 && r.iter().all(|(_, n)| n != "h3")
    });
    c.wait_for("h3 shown not ready", LONG, || {
        c.node_ready("h3") == "Unknown"
    });
    assert_eq!(c.node_ready("h1"), "True");
    assert_eq!(c.node_ready("h2"), "True");

    c.control("agent", &["h3", "start"]);
    c.wait_for("h3 Ready again", LONG, || c.node_ready("h3") == "True");
    c.wait_for("h3's stale container removed", LONG, || {
        c.app_containers("h3", "survivor").is_empty()
    });
    assert_eq!(c.running("survivor").len(), 3);
}
