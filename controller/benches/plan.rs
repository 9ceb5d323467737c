//! Planner throughput: one full plan for 10,000 Replicas of 100 Apps over 100 nodes,
//! from scratch (all to create) and at steady state (nothing to do).
//! `cargo bench -p berth-controller --bench plan`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_controller::plan::{Desired, Node, Replica, plan};

fn nodes() -> Vec<Node> {
    (0..100)
        .map(|i| Node {
            name: format!("node-{i:03}"),
            ready: true,
            lost: false,
            unschedulable: false,
            labels: BTreeMap::new(),
            pods: 200,
        })
        .collect()
}

/// Times `runs` calls of `f` and reports the fastest and the mean.
fn time(what: &str, runs: u32, mut f: impl FnMut()) {
    let mut best = Duration::MAX;
    let mut total = Duration::ZERO;
    for _ in 0..runs {
        let start = Instant::now();
        f();
        let took = start.elapsed();
        best = best.min(took);
        total += took;
    }
    println!(
        "{what}: best {best:?}, mean {:?} ({runs} runs)",
        total / runs
    );
}

fn main() {
    let nodes = nodes();
    let selector = BTreeMap::new();
    // 100 Apps of 100 Replicas each: the planner runs per App, so a full plan of the
    // cluster is 100 plans.
    let desired = Desired {
        replicas: 100,
        revision: "r1",
        node_selector: &selector,
    };
    time("10,000 replicas to create (100 Apps x 100)", 20, || {
        let mut load = BTreeMap::new();
        for _ in 0..100 {
            let p = plan(&desired, &[], &nodes, &load);
            for n in p.create {
                *load.entry(n).or_insert(0usize) += 1;
            }
        }
    });
    let apps: Vec<Vec<Replica>> = (0..100)
        .map(|a| {
            (0..100)
                .map(|i| Replica {
                    name: format!("app{a}-r1-{i}"),
                    node: format!("node-{:03}", (a + i) % 100),
                    revision: "r1".into(),
                    created: i as i64,
                    ready: true,
                    deleting: false,
                })
                .collect()
        })
        .collect();
    let mut load: BTreeMap<String, usize> = BTreeMap::new();
    for r in apps.iter().flatten() {
        *load.entry(r.node.clone()).or_default() += 1;
    }
    time(
        "10,000 replicas at steady state (100 Apps x 100)",
        20,
        || {
            for replicas in &apps {
                let p = plan(&desired, replicas, &nodes, &load);
                assert!(p.create.is_empty() && p.delete.is_empty());
            }
        },
    );
}
