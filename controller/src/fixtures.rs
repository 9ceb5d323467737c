//! Objects the controller's tests start from (the scripted API server itself is
//! `berth_kube::mock`).

use std::time::Duration;

use berth_crds::{BerthNode, BerthNodeStatus, node::Capacity};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;

/// A host with room for 10 Replicas; `live` says whether its Lease is current (else it
/// was last renewed an hour ago: lost).
pub fn host(name: &str, live: bool) -> (BerthNode, Lease) {
    let mut node = BerthNode::new(name, Default::default());
    node.status = Some(BerthNodeStatus {
        capacity: Capacity {
            pods: 10,
            ..Default::default()
        },
        ..Default::default()
    });
    let now = Timestamp::now();
    let renewed = if live {
        now
    } else {
        now.checked_sub(Duration::from_secs(3600)).unwrap()
    };
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("berth-system".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    (node, lease)
}
