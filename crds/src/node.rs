//! `BerthNode`: a host that runs Replicas. Its agent registers it and keeps it current;
//! its liveness is a `coordination.k8s.io` Lease in `berth-system`, renewed by the agent.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "berth.dev",
    version = "v1alpha1",
    kind = "BerthNode",
    status = "BerthNodeStatus",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Address",
        type_ = "string",
        json_path = ".status.addresses[0].address"
    ),
    printcolumn(name = "Pods", type_ = "integer", json_path = ".status.capacity.pods"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    doc = "A host running berth-agent."
)]
#[serde(rename_all = "camelCase")]
pub struct BerthNodeSpec {
    /// No new Replicas are bound here.
    #[serde(default)]
    pub unschedulable: bool,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BerthNodeStatus {
    #[serde(default)]
    pub capacity: Capacity,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub addresses: Vec<NodeAddress>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<crate::app::Condition>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// CPU cores.
    #[serde(default)]
    pub cpu: i64,
    /// Memory in bytes.
    #[serde(default)]
    pub memory: i64,
    /// How many Replicas the host takes.
    #[serde(default)]
    pub pods: i64,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeAddress {
    /// `InternalIP` or `Hostname`.
    #[serde(rename = "type")]
    pub type_: String,
    pub address: String,
}
