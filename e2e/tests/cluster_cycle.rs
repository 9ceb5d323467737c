//! `make cluster-down && make cluster`, twice, against the real script: a cluster taken
//! down and brought up again in the same directory (so with the same network names) must
//! come up healthy every time, however slowly the kernel tears down the namespaces of the
//! one before, and nothing of it may be left after the last `down`.
//!
//! Its own test target, so its clusters never overlap the shared one of `cluster.rs`
//! (cargo runs test targets one after the other).

use std::process::ExitCode;
use std::time::Duration;

use e2e::{Cluster, text};

fn main() -> ExitCode {
    e2e::take_down_on_signals();
    e2e::harness::run(
        || (),
        |_| {},
        &[("cluster_down_then_up_twice", cluster_down_then_up_twice)],
    )
}

/// Containers on the hosts, so that `down` has namespaces with something in them to
/// tear down (container veths and bridges inside the hosts' namespaces), as after real use.
fn use_it(c: &Cluster) {
    let app = "apiVersion: berth.dev/v1alpha1\nkind: App\nmetadata:\n  name: cycle\nspec:\n  replicas: 3\n  template:\n    image: base:latest\n    args: [httpd, -f, -p, \"8080\", -h, /var/www]\n";
    let out = c.apply(app);
    assert!(out.status.success(), "kubectl apply: {}", text(&out));
    c.wait_for("3 running replicas", Duration::from_secs(90), || {
        c.running("cycle").len() == 3
    });
    // Where they run is the scheduler's business (cluster.rs checks the spread).
    c.wait_for("3 containers", Duration::from_secs(90), || {
        c.app_container_count("cycle") == 3
    });
}

fn cluster_down_then_up_twice(_: &()) {
    let dir = std::env::temp_dir().join(format!("berth-e2e-cycle-{}", std::process::id()));
    let mut c = Cluster::up(&dir);
    use_it(&c);
    let id = c.id.clone();
    for round in 1..=2 {
        eprintln!("round {round}: down, then up in the same directory");
        c.down();
        // Nothing of it left, right after `down` returns.
        let left = c.leftovers();
        assert!(left.is_empty(), "left after down (round {round}): {left:?}");
        c = Cluster::up(&dir);
        assert_eq!(c.id, id, "the same directory, the same network names");
        use_it(&c);
    }
    c.down();
    let left = c.leftovers();
    assert!(left.is_empty(), "left after the last down: {left:?}");
}
