//! Cluster mode end to end, as root: a real kube-apiserver and etcd, three hosts (network
//! namespaces with their own berth state, each running berth-agent) and berth-controller,
//! driven with kubectl. One cluster serves every scenario, in order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository. Cargo says where at run time too: a test binary built in another
/// checkout sharing the target directory, and not rebuilt, would point at that one.
fn repo() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.parent().unwrap().to_path_buf()
}

/// Where cargo put this workspace's binaries (target/<profile>).
fn binaries() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    for b in ["berth", "berth-agent", "berth-controller"] {
        assert!(
            dir.join(b).exists(),
            "{} is missing: run `cargo build --workspace --bins` first",
            dir.join(b).display()
        );
    }
    dir
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Cluster {
    dir: PathBuf,
    kubectl: PathBuf,
    id: String,
}

impl Cluster {
    fn up() -> Cluster {
        assert!(is_root(), "the e2e tests need root");
        let built = Command::new(repo().join("e2e/scripts/build-control-plane.sh"))
            .output()
            .unwrap();
        assert!(
            built.status.success(),
            "building the control plane: {}",
            text(&built)
        );
        let bin = PathBuf::from(
            String::from_utf8_lossy(&built.stdout)
                .trim()
                .lines()
                .last()
                .unwrap_or_default(),
        );
        let dir = std::env::temp_dir().join(format!("berth-e2e-{}", std::process::id()));
        let mut c = Cluster {
            kubectl: bin.join("kubectl"),
            dir,
            id: String::new(),
        };
        let out = c.script(&["up", &c.dir.display().to_string()]);
        assert!(out.status.success(), "cluster up: {}", text(&out));
        let env = std::fs::read_to_string(c.dir.join("cluster.env")).unwrap();
        c.id = env
            .lines()
            .find_map(|l| l.strip_prefix("id="))
            .unwrap()
            .to_string();
        c
    }

    fn script(&self, args: &[&str]) -> Output {
        Command::new(repo().join("e2e/scripts/cluster.sh"))
            .args(args)
            .env("BERTH_BIN", binaries())
            // Short enough for a test to see hosts come and go.
            .env("BERTH_LEASE_SECONDS", "6")
            .env("BERTH_NODE_GRACE", "6")
            .env("BERTH_RESYNC", "2")
            .output()
            .unwrap()
    }

    fn control(&self, what: &str, args: &[&str]) {
        let mut all = vec![what, self.dir.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = self.script(&all);
        assert!(out.status.success(), "cluster.sh {all:?}: {}", text(&out));
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", self.dir.join("cp/admin.kubeconfig"))
            .output()
            .unwrap()
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn apply(&self, yaml: &str) -> Output {
        let path = self.dir.join("apply.yaml");
        std::fs::write(&path, yaml).unwrap();
        self.kubectl(&["apply", "-f", path.to_str().unwrap()])
    }

    /// `berth` as one host sees it.
    fn berth(&self, host: &str, args: &[&str]) -> String {
        let mut all = vec!["berth", self.dir.to_str().unwrap(), host];
        all.extend_from_slice(args);
        let out = self.script(&all);
        assert!(
            out.status.success(),
            "berth on {host} {args:?}: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The App's Replicas: name -> (node, phase, ready).
    fn replicas(&self, app: &str) -> BTreeMap<String, (String, String, bool)> {
        let out = self.kubectl_ok(&[
            "get",
            "replicas",
            "-l",
            &format!("berth.dev/app={app}"),
            "-o",
            "json",
        ]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["metadata"]["deletionTimestamp"].is_null())
            .map(|r| {
                (
                    r["metadata"]["name"].as_str().unwrap().to_string(),
                    (
                        r["spec"]["nodeName"].as_str().unwrap().to_string(),
                        r["status"]["phase"].as_str().unwrap_or("").to_string(),
                        r["status"]["ready"].as_bool().unwrap_or(false),
                    ),
                )
            })
            .collect()
    }

    fn running(&self, app: &str) -> Vec<(String, String)> {
        self.replicas(app)
            .into_iter()
            .filter(|(_, (_, phase, ready))| phase == "Running" && *ready)
            .map(|(n, (node, ..))| (n, node))
            .collect()
    }

    fn wait_for(&self, what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; replicas: {}",
                self.kubectl_ok(&["get", "replicas", "-o", "wide"])
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Names of the containers on `host` (running or not).
    fn containers(&self, host: &str) -> BTreeSet<String> {
        let table = self.berth(host, &["ps", "-a"]);
        table
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().last())
            .map(str::to_string)
            .collect()
    }

    fn container_json(&self, host: &str, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.berth(host, &["inspect", name])).unwrap();
        v[0].clone()
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = self.script(&["down", self.dir.to_str().unwrap()]);
        if !out.status.success() {
            eprintln!("cluster down: {}", text(&out));
        }
    }
}

fn hello(replicas: u32) -> String {
    format!(
        "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata:\n  name: hello\nspec:\n  replicas: {replicas}\n  template:\n    image: base:latest\n    args: [httpd, -f, -p, \"8080\", -h, /var/www]\n    ports:\n      - containerPort: 8080\n"
    )
}

const LONG: Duration = Duration::from_secs(60);

#[test]
fn cluster_mode_end_to_end() {
    let c = Cluster::up();

    // Three Replicas, spread over three hosts, each a container really serving in its
    // host's network namespace.
    let out = c.apply(&hello(3));
    assert!(out.status.success(), "{}", text(&out));
    c.wait_for("3 running replicas", LONG, || c.running("hello").len() == 3);
    let nodes: BTreeSet<String> = c.running("hello").into_iter().map(|(_, n)| n).collect();
    assert_eq!(nodes.len(), 3, "one replica per host");
    for (name, node) in c.running("hello") {
        let container = format!("default.{name}");
        assert!(
            c.containers(&node).contains(&container),
            "{container} on {node}"
        );
        let ip = c.container_json(&node, &container)["NetworkSettings"]["IPAddress"]
            .as_str()
            .unwrap()
            .to_string();
        let page = Command::new("nsenter")
            .arg(format!("--net=/run/netns/berth-{}-{node}", c.id))
            .args(["curl", "-sS", "-m", "5", &format!("http://{ip}:8080/")])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&page.stdout),
            "<h1>hello from berth</h1>\n",
            "{}",
            text(&page)
        );
    }
    c.wait_for("the App's status", LONG, || {
        c.kubectl_ok(&[
            "get",
            "app",
            "hello",
            "-o",
            "jsonpath={.status.readyReplicas}/{.status.availableReplicas}",
        ]) == "3/3"
    });

    // Scale through the /scale subresource: 3 -> 6 -> 1.
    c.kubectl_ok(&["scale", "app/hello", "--replicas=6"]);
    c.wait_for("6 running replicas", LONG, || c.running("hello").len() == 6);
    for host in ["h1", "h2", "h3"] {
        assert_eq!(
            c.running("hello").iter().filter(|(_, n)| n == host).count(),
            2,
            "two on {host}"
        );
    }
    c.kubectl_ok(&["scale", "app/hello", "--replicas=1"]);
    c.wait_for("1 replica", LONG, || c.replicas("hello").len() == 1);
    c.wait_for("the other containers gone", LONG, || {
        ["h1", "h2", "h3"]
            .iter()
            .map(|h| c.containers(h).len())
            .sum::<usize>()
            == 1
    });

    // An agent killed and restarted adopts its containers: no restart.
    let (name, node) = c.running("hello").remove(0);
    let container = format!("default.{name}");
    let before = c.container_json(&node, &container)["State"]["StartedAt"].clone();
    c.control("agent", &[&node, "kill"]);
    c.control("agent", &[&node, "start"]);
    std::thread::sleep(Duration::from_secs(5));
    let after = c.container_json(&node, &container);
    assert_eq!(
        after["State"]["StartedAt"], before,
        "the container was not restarted"
    );
    assert_eq!(after["State"]["Running"], true);
    assert_eq!(c.running("hello").len(), 1);

    // The controller killed in the middle of scaling up finishes after its restart, with
    // no duplicate and no missing Replica.
    c.kubectl_ok(&["scale", "app/hello", "--replicas=6"]);
    c.control("controller", &["controller", "kill"]);
    c.control("controller", &["controller", "start"]);
    c.wait_for("6 running replicas after the restart", LONG, || {
        c.running("hello").len() == 6
    });
    let all = c.kubectl_ok(&["get", "replicas", "-o", "name"]);
    assert_eq!(all.lines().count(), 6, "{all}");

    // kube-apiserver killed and started again: the controller and the agents watch again
    // and carry on (a scale made afterwards is carried out).
    c.control("restart-apiserver", &[]);
    c.kubectl_ok(&["scale", "app/hello", "--replicas=3"]);
    c.wait_for(
        "3 running replicas after the apiserver restart",
        LONG,
        || c.running("hello").len() == 3,
    );
    c.wait_for("the other containers gone", LONG, || {
        ["h1", "h2", "h3"]
            .iter()
            .map(|h| c.containers(h).len())
            .sum::<usize>()
            == 3
    });

    // A second controller waits while the first leads.
    c.control("controller", &["standby", "start"]);
    std::thread::sleep(Duration::from_secs(3));
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
    let standby_log = std::fs::read_to_string(c.dir.join("standby.log")).unwrap();
    assert!(
        standby_log.contains("another controller leads"),
        "{standby_log}"
    );
    assert!(!standby_log.contains("leading"), "{standby_log}");
    c.control("controller", &["standby", "stop"]);

    // Deleting the App removes every container on every host.
    c.kubectl_ok(&["delete", "app", "hello", "--timeout=60s"]);
    for host in ["h1", "h2", "h3"] {
        assert!(c.containers(host).is_empty(), "containers left on {host}");
    }
    assert_eq!(c.kubectl_ok(&["get", "replicas", "-o", "name"]), "");

    // Invalid Apps are refused by the API server, with the reason.
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

    // A host that stops: its Replicas come back on the others once its Lease has expired
    // and the grace period passed.
    assert!(c.apply(&hello(3)).status.success());
    c.wait_for("3 running replicas", LONG, || c.running("hello").len() == 3);
    c.control("agent", &["h3", "kill"]);
    c.wait_for("the replicas moved off h3", LONG, || {
        let r = c.running("hello");
        r.len() == 3 && r.iter().all(|(_, n)| n != "h3")
    });
    let readiness = |node: &str| {
        c.kubectl_ok(&[
            "get",
            "berthnode",
            node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ])
    };
    c.wait_for("h3 shown not ready", LONG, || readiness("h3") == "Unknown");
    assert_eq!(readiness("h1"), "True");

    // An image no host has: the Replica and the App say so, and nothing loops hot.
    let ghost = "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata:\n  name: ghost\nspec:\n  replicas: 1\n  template:\n    image: localhost:1/nosuch:latest\n";
    assert!(c.apply(ghost).status.success());
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
