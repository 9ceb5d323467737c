//! Which hosts are alive: a host is Ready while its agent renews its Lease, and lost once
//! it has not for longer than the grace period on top. Pure.

use std::time::Duration;

use berth_crds::BerthNode;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;

use crate::plan;

/// When the Lease was last renewed, and for how long that counts.
fn expiry(lease: &Lease) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref()?.0;
    let duration = spec.lease_duration_seconds.unwrap_or(0).max(0) as u64;
    renewed.checked_add(Duration::from_secs(duration)).ok()
}

/// The `Ready` condition a host's BerthNode should show, given its view.
pub fn ready_condition(node: &plan::Node) -> berth_crds::app::Condition {
    let (status, reason, message) = if node.ready {
        ("True", "AgentReady", "the agent renews its lease")
    } else {
        (
            "Unknown",
            "LeaseExpired",
            "the agent stopped renewing its lease",
        )
    };
    berth_crds::app::Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_transition_time: None,
    }
}

/// The planner's view of the hosts: each BerthNode with its Lease (same name).
pub fn views(
    nodes: &[BerthNode],
    leases: &[Lease],
    now: Timestamp,
    grace: Duration,
) -> Vec<plan::Node> {
    nodes
        .iter()
        .map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            let expires = leases
                .iter()
                .find(|l| l.metadata.name.as_deref() == Some(name.as_str()))
                .and_then(expiry);
            let ready = expires.is_some_and(|e| e > now);
            let lost = !ready
                && expires.is_none_or(|e| e.checked_add(grace).is_ok_and(|lost_at| lost_at <= now));
            plan::Node {
                ready,
                lost,
                unschedulable: n.spec.unschedulable,
                labels: n.metadata.labels.clone().unwrap_or_default(),
                pods: n
                    .status
                    .as_ref()
                    .map_or(0, |s| s.capacity.pods.max(0) as usize),
                name,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    fn node(name: &str) -> BerthNode {
        let mut n = BerthNode::new(name, Default::default());
        n.status = Some(berth_crds::BerthNodeStatus {
            capacity: berth_crds::node::Capacity {
                pods: 5,
                ..Default::default()
            },
            ..Default::default()
        });
        n
    }

    fn lease(name: &str, renewed: Timestamp, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(seconds),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn readiness_follows_the_lease() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let ago = |s: i64| Timestamp::from_second(1_000_000 - s).unwrap();
        let nodes = [node("fresh"), node("late"), node("gone"), node("never")];
        let leases = [
            lease("fresh", ago(5), 15),
            lease("late", ago(20), 15),
            lease("gone", ago(100), 15),
        ];
        let v = views(&nodes, &leases, now, Duration::from_secs(30));
        let state: Vec<(bool, bool)> = v.iter().map(|n| (n.ready, n.lost)).collect();
        assert_eq!(
            state,
            [(true, false), (false, false), (false, true), (false, true)]
        );
        assert_eq!(v[0].pods, 5);
    }
}
