//! The planner: given an App's wish, its Replicas and the hosts, what to create and
//! delete next. Pure: no clock, no API calls; the reconciler gathers the inputs and
//! carries out the plan.

use std::collections::BTreeMap;

/// A host, as the planner needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// Its agent renews its Lease.
    pub ready: bool,
    /// NotReady for longer than the grace period: its Replicas are given up and made
    /// again elsewhere.
    pub lost: bool,
    pub unschedulable: bool,
    pub labels: BTreeMap<String, String>,
    /// How many Replicas it takes.
    pub pods: usize,
}

/// One of the App's Replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    pub name: String,
    pub node: String,
    pub revision: String,
    /// Orders Replicas by creation (larger is newer).
    pub created: i64,
    pub ready: bool,
    /// Being deleted already.
    pub deleting: bool,
}

/// What the App asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired<'a> {
    pub replicas: usize,
    /// The AppRevision of the current template.
    pub revision: &'a str,
    pub node_selector: &'a BTreeMap<String, String>,
}

/// The next steps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One new Replica of the current revision per entry, bound to that node.
    pub create: Vec<String>,
    /// Replicas to delete; their agents remove the containers.
    pub delete: Vec<String>,
    /// Replicas on lost nodes: deleted without waiting for an agent that is gone.
    pub abandon: Vec<String>,
    /// Replicas that fit on no node now.
    pub unschedulable: usize,
}

/// Plans one step towards `desired`. `load` is how many Replicas (of every App) each
/// node holds now.
pub fn plan(
    desired: &Desired<'_>,
    replicas: &[Replica],
    nodes: &[Node],
    load: &BTreeMap<String, usize>,
) -> Plan {
    let mut out = Plan::default();
    let node = |name: &str| nodes.iter().find(|n| n.name == name);
    let live: Vec<&Replica> = replicas.iter().filter(|r| !r.deleting).collect();

    let (lost, live): (Vec<&Replica>, Vec<&Replica>) = live
        .into_iter()
        .partition(|r| node(&r.node).is_none_or(|n| n.lost));
    out.abandon = lost.iter().map(|r| r.name.clone()).collect();
    // Deleting Replicas on lost nodes are stuck too: their agent will never finish them.
    out.abandon.extend(
        replicas
            .iter()
            .filter(|r| r.deleting && node(&r.node).is_none_or(|n| n.lost))
            .map(|r| r.name.clone()),
    );

    // A template change replaces the old revision's Replicas (rolling updates will pace
    // this; for now old ones go as new ones are made).
    let (mut current, old): (Vec<&Replica>, Vec<&Replica>) = live
        .into_iter()
        .partition(|r| r.revision == desired.revision);
    out.delete.extend(old.iter().map(|r| r.name.clone()));

    if current.len() > desired.replicas {
        // Scale down: newest first, not-ready before ready.
        current.sort_by_key(|r| (r.ready, std::cmp::Reverse(r.created)));
        let excess = current.len() - desired.replicas;
        out.delete
            .extend(current.drain(..excess).map(|r| r.name.clone()));
    }

    let missing = desired.replicas.saturating_sub(current.len());
    if missing > 0 {
        let (created, unschedulable) = place(missing, &current, nodes, load, desired.node_selector);
        out.create = created;
        out.unschedulable = unschedulable;
    }
    out
}

/// Picks a node for each of `count` new Replicas: among ready, schedulable nodes that
/// match the selector and have room, the one with the fewest of this App's Replicas, then
/// the emptiest, then by name. A min-heap keeps this O(count log nodes).
fn place(
    count: usize,
    current: &[&Replica],
    nodes: &[Node],
    load: &BTreeMap<String, usize>,
    selector: &BTreeMap<String, String>,
) -> (Vec<String>, usize) {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    let mut mine: BTreeMap<&str, usize> = BTreeMap::new();
    for r in current {
        *mine.entry(r.node.as_str()).or_default() += 1;
    }
    let mut heap = BinaryHeap::new();
    for n in nodes
        .iter()
        .filter(|n| n.ready && !n.unschedulable && !n.lost)
    {
        if !selector.iter().all(|(k, v)| n.labels.get(k) == Some(v)) {
            continue;
        }
        let used = load.get(&n.name).copied().unwrap_or(0);
        if used < n.pods {
            heap.push(Reverse((
                mine.get(n.name.as_str()).copied().unwrap_or(0),
                used,
                n.name.as_str(),
                n.pods,
            )));
        }
    }
    let mut created = Vec::with_capacity(count);
    while created.len() < count {
        let Some(Reverse((ours, used, name, pods))) = heap.pop() else {
            break;
        };
        created.push(name.to_string());
        if used + 1 < pods {
            heap.push(Reverse((ours + 1, used + 1, name, pods)));
        }
    }
    let unschedulable = count - created.len();
    (created, unschedulable)
}

/// The counts an App's status reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
}

pub fn counts(revision: &str, replicas: &[Replica]) -> Counts {
    let live = replicas.iter().filter(|r| !r.deleting);
    let mut c = Counts::default();
    for r in live {
        c.replicas += 1;
        c.ready += i32::from(r.ready);
        c.available += i32::from(r.ready);
        c.updated += i32::from(r.revision == revision);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(name: &str) -> Node {
        Node {
            name: name.into(),
            ready: true,
            lost: false,
            unschedulable: false,
            labels: BTreeMap::new(),
            pods: 10,
        }
    }

    fn replica(name: &str, node: &str, created: i64) -> Replica {
        Replica {
            name: name.into(),
            node: node.into(),
            revision: "r1".into(),
            created,
            ready: true,
            deleting: false,
        }
    }

    fn desired(n: usize, selector: &BTreeMap<String, String>) -> Desired<'_> {
        Desired {
            replicas: n,
            revision: "r1",
            node_selector: selector,
        }
    }

    fn load_of(replicas: &[Replica]) -> BTreeMap<String, usize> {
        let mut load = BTreeMap::new();
        for r in replicas {
            *load.entry(r.node.clone()).or_default() += 1;
        }
        load
    }

    #[test]
    fn spreads_over_ready_nodes() {
        let nodes = [node("a"), node("b"), node("c")];
        let none = BTreeMap::new();
        let p = plan(&desired(3, &none), &[], &nodes, &BTreeMap::new());
        assert_eq!(p.create, ["a", "b", "c"]);
        let p = plan(&desired(6, &none), &[], &nodes, &BTreeMap::new());
        assert_eq!(p.create, ["a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn never_binds_to_not_ready_unschedulable_or_full_nodes() {
        let mut b = node("b");
        b.ready = false;
        let mut c = node("c");
        c.unschedulable = true;
        let mut d = node("d");
        d.pods = 1;
        let nodes = [node("a"), b, c, d];
        let none = BTreeMap::new();
        let load = BTreeMap::from([("d".to_string(), 1)]);
        let p = plan(&desired(2, &none), &[], &nodes, &load);
        assert_eq!(p.create, ["a", "a"]);
    }

    #[test]
    fn respects_the_node_selector_and_reports_what_does_not_fit() {
        let mut a = node("a");
        a.labels.insert("disk".into(), "ssd".into());
        a.pods = 1;
        let nodes = [a, node("b")];
        let selector = BTreeMap::from([("disk".to_string(), "ssd".to_string())]);
        let p = plan(&desired(3, &selector), &[], &nodes, &BTreeMap::new());
        assert_eq!(p.create, ["a"]);
        assert_eq!(p.unschedulable, 2);
    }

    #[test]
    fn scales_down_newest_first() {
        let rs = [
            replica("r-1", "a", 1),
            replica("r-2", "b", 2),
            replica("r-3", "c", 3),
        ];
        let none = BTreeMap::new();
        let nodes = [node("a"), node("b"), node("c")];
        let p = plan(&desired(1, &none), &rs, &nodes, &load_of(&rs));
        assert_eq!(p.delete, ["r-3", "r-2"]);
        assert!(p.create.is_empty());
    }

    #[test]
    fn scale_down_takes_not_ready_replicas_first() {
        let mut rs = vec![replica("r-1", "a", 1), replica("r-2", "b", 2)];
        rs[0].ready = false;
        let none = BTreeMap::new();
        let p = plan(
            &desired(1, &none),
            &rs,
            &[node("a"), node("b")],
            &load_of(&rs),
        );
        assert_eq!(p.delete, ["r-1"]);
    }

    #[test]
    fn replicas_on_lost_nodes_are_abandoned_and_made_again_elsewhere() {
        let mut b = node("b");
        b.ready = false;
        b.lost = true;
        let rs = [replica("r-1", "a", 1), replica("r-2", "b", 2)];
        let none = BTreeMap::new();
        let p = plan(
            &desired(2, &none),
            &rs,
            &[node("a"), b, node("c")],
            &load_of(&rs),
        );
        assert_eq!(p.abandon, ["r-2"]);
        assert_eq!(p.create, ["c"]);
    }

    #[test]
    fn a_not_ready_node_within_grace_keeps_its_replicas() {
        let mut b = node("b");
        b.ready = false;
        let rs = [replica("r-1", "a", 1), replica("r-2", "b", 2)];
        let none = BTreeMap::new();
        let p = plan(&desired(2, &none), &rs, &[node("a"), b], &load_of(&rs));
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn a_new_revision_replaces_the_old_one() {
        let mut old = replica("r-1", "a", 1);
        old.revision = "r0".into();
        let none = BTreeMap::new();
        let p = plan(
            &desired(1, &none),
            &[old],
            &[node("a"), node("b")],
            &BTreeMap::from([("a".to_string(), 1)]),
        );
        assert_eq!(p.delete, ["r-1"]);
        assert_eq!(p.create, ["b"]);
    }

    #[test]
    fn deleting_replicas_do_not_count_but_occupy_their_node() {
        let mut going = replica("r-1", "a", 1);
        going.deleting = true;
        let mut a = node("a");
        a.pods = 1;
        let none = BTreeMap::new();
        let p = plan(
            &desired(1, &none),
            std::slice::from_ref(&going),
            &[a, node("b")],
            &load_of(std::slice::from_ref(&going)),
        );
        assert_eq!(p.create, ["b"]);
        assert!(p.delete.is_empty());
    }

    #[test]
    fn counts_for_status() {
        let mut rs = vec![
            replica("a", "n", 1),
            replica("b", "n", 2),
            replica("c", "n", 3),
        ];
        rs[1].ready = false;
        rs[2].revision = "r0".into();
        rs.push(Replica {
            deleting: true,
            ..replica("d", "n", 4)
        });
        assert_eq!(
            counts("r1", &rs),
            Counts {
                replicas: 3,
                ready: 2,
                updated: 2,
                available: 2
            }
        );
    }

    /// Applies a plan the way the cluster would once agents caught up.
    fn apply(replicas: &mut Vec<Replica>, p: &Plan, next: &mut i64) {
        replicas.retain(|r| !p.delete.contains(&r.name) && !p.abandon.contains(&r.name));
        for n in &p.create {
            *next += 1;
            replicas.push(Replica {
                name: format!("r-{next}"),
                node: n.clone(),
                revision: "r1".into(),
                created: *next,
                ready: true,
                deleting: false,
            });
        }
    }

    proptest! {
        /// From any state, planning then applying reaches the desired count in one step
        /// (when it fits), only on eligible nodes, evenly spread, and then stays put.
        #[test]
        fn converges_spread_and_stable(
            desired_n in 0usize..40,
            existing in proptest::collection::vec((0usize..5, 0i64..100), 0..30),
            ready in proptest::collection::vec(any::<bool>(), 5),
        ) {
            let nodes: Vec<Node> = (0..5).map(|i| Node { ready: ready[i], ..node(&format!("n{i}")) }).collect();
            let mut replicas: Vec<Replica> = existing
                .iter()
                .enumerate()
                .map(|(i, (n, c))| Replica { created: *c, ..replica(&format!("x-{i}"), &format!("n{n}"), 0) })
                .collect();
            let none = BTreeMap::new();
            let d = desired(desired_n, &none);
            let mut next = 1000;
            let p = plan(&d, &replicas, &nodes, &load_of(&replicas));
            for n in &p.create {
                prop_assert!(nodes.iter().any(|x| &x.name == n && x.ready));
            }
            let capacity: usize = nodes.iter().filter(|n| n.ready).map(|n| n.pods).sum();
            apply(&mut replicas, &p, &mut next);
            if p.unschedulable == 0 {
                prop_assert_eq!(replicas.len(), desired_n);
            }
            // Stable: once applied, nothing more to do (unless some did not fit).
            let again = plan(&d, &replicas, &nodes, &load_of(&replicas));
            prop_assert!(again.delete.is_empty());
            prop_assert!(again.create.is_empty() || p.unschedulable > 0);
            // Spread from scratch: counts on ready nodes differ by at most one.
            if existing.is_empty() && desired_n <= capacity {
                let ready_nodes: Vec<&Node> = nodes.iter().filter(|n| n.ready).collect();
                let counts: Vec<usize> = ready_nodes.iter().map(|n| replicas.iter().filter(|r| r.node == n.name).count()).collect();
                if let (Some(max), Some(min)) = (counts.iter().max(), counts.iter().min()) {
                    prop_assert!(max - min <= 1, "{:?}", counts);
                }
            }
        }
    }
}
