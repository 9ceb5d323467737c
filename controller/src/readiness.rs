//! Keeps each BerthNode's `Ready` condition in step with its Lease (the agent writes the
//! rest of its status). One host's failed write is logged and does not stop the others.

use std::sync::Arc;
use std::time::Duration;

use berth_crds::BerthNode;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::nodes;
use crate::reconcile::Context;

/// Syncs every host's readiness every two seconds, until the process stops.
pub async fn watch_nodes(ctx: Arc<Context>) {
    loop {
        sync(&ctx, Timestamp::now()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// One pass: writes the `Ready` condition of each host whose status changed. Returns
/// how many hosts were written.
pub async fn sync(ctx: &Context, now: Timestamp) -> usize {
    let api: Api<BerthNode> = Api::all(ctx.client.clone());
    let mut nodes: Vec<BerthNode> = ctx.nodes.state().iter().map(|n| (**n).clone()).collect();
    // In name order, so the writes come in an order that does not depend on the cache.
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let leases = ctx
        .leases
        .state()
        .iter()
        .map(|l| (**l).clone())
        .collect::<Vec<_>>();
    let mut written = 0;
    for (node, view) in nodes
        .iter()
        .zip(nodes::views(&nodes, &leases, now, ctx.grace))
    {
        let mut wanted = nodes::ready_condition(&view);
        let current = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        if current.is_some_and(|c| c.status == wanted.status) {
            continue;
        }
        wanted.last_transition_time = Some(now.to_string());
        let patch = Patch::Merge(json!({"status": {"conditions": [wanted]}}));
        match api
            .patch_status(&view.name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => {
                written += 1;
                tracing::info!(node = %view.name, ready = %wanted.status, "host readiness changed")
            }
            Err(error) => tracing::warn!(node = %view.name, %error, "updating host readiness"),
        }
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::host;
    use crate::reconcile::Context;
    use berth_kube::mock::{Exchange, MERGE_PATCH, client, finish, scenario, store, within};

    const NODES: &str = "/apis/berth.dev/v1alpha1/berthnodes";

    #[tokio::test]
    async fn a_failed_write_for_one_host_does_not_stop_the_others() {
        let now = Timestamp::now();
        let (mut steady, steady_lease) = host("steady", true);
        steady.status.as_mut().unwrap().conditions =
            vec![nodes::ready_condition(&crate::plan::Node {
                name: "steady".into(),
                ready: true,
                lost: false,
                unschedulable: false,
                labels: Default::default(),
                pods: 10,
            })];
        let (x, x_lease) = host("x", true);
        let (y, y_lease) = host("y", false);
        let (client, handle) = client();
        let ready = |status: &str, reason: &str, message: &str| {
            json!({"status": {"conditions": [{
                "type": "Ready",
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": now.to_string(),
            }]}})
        };
        let driver = scenario(
            handle,
            vec![
                // "steady" already shows Ready: nothing is sent for it.
                Exchange::patch(
                    &format!("{NODES}/x/status?"),
                    MERGE_PATCH,
                    ready("True", "AgentReady", "the agent renews its lease"),
                )
                .fail(500, "InternalError"),
                Exchange::patch(
                    &format!("{NODES}/y/status?"),
                    MERGE_PATCH,
                    ready(
                        "Unknown",
                        "LeaseExpired",
                        "the agent stopped renewing its lease",
                    ),
                )
                .reply(200, serde_json::to_value(&y).unwrap()),
            ],
        );
        let ctx = Context {
            client,
            replicas: store(vec![]),
            nodes: store(vec![steady, x, y.clone()]),
            leases: store(vec![steady_lease, x_lease, y_lease]),
            grace: Duration::from_secs(30),
            resync: Duration::from_secs(10),
        };
        let written = within(sync(&ctx, now)).await;
        drop(ctx);
        finish(driver).await;
        assert_eq!(written, 1);
    }
}
