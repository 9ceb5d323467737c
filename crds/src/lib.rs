//! berth's cluster API (group `berth.dev`, version `v1alpha1`): what a user asks for
//! (`App`), the immutable snapshots of its template (`AppRevision`), the containers the
//! controller binds to hosts (`Replica`), and the hosts (`BerthNode`).
//!
//! Field names follow Kubernetes conventions; lists that server-side apply should merge
//! by key carry list-map markers.

// kube's `printcolumn(...)` repeats keys like `type_` from one column to the next, which
// clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod app;
pub mod node;
pub mod replica;

pub use app::{App, AppRevision, AppRevisionSpec, AppSpec, AppStatus, Template};
pub use node::{BerthNode, BerthNodeSpec, BerthNodeStatus};
pub use replica::{Replica, ReplicaPhase, ReplicaSpec, ReplicaStatus};

/// The API group.
pub const GROUP: &str = "berth.dev";

/// Label on Replicas and AppRevisions: the App they belong to.
pub const APP_LABEL: &str = "berth.dev/app";
/// Label on Replicas: the AppRevision they run.
pub const REVISION_LABEL: &str = "berth.dev/revision";
/// Held by a host's agent on each Replica it runs, until the container is gone; the
/// controller removes it from Replicas on lost hosts.
pub const CONTAINER_FINALIZER: &str = "berth.dev/container";
/// The namespace of the agents' Leases and the controller's leader Lease.
pub const SYSTEM_NAMESPACE: &str = "berth-system";

/// Every CRD, for `crdgen` and for tests that install them.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        App::crd(),
        AppRevision::crd(),
        Replica::crd(),
        BerthNode::crd(),
    ]
}
