//! Cluster mode on one host: register this host as a `BerthNode`, keep its Lease alive,
//! and make the Replicas bound to it run as containers of the same engine `berth run`
//! uses, writing their status back.

use std::collections::BTreeMap;
use std::time::Duration;

use berth_engine::Paths;

/// How this agent runs.
#[derive(Clone, Debug)]
pub struct Config {
    pub node: String,
    /// The address other hosts reach this one at (reported as hostIP).
    pub address: String,
    pub labels: BTreeMap<String, String>,
    /// How many Replicas this host takes.
    pub max_pods: i64,
    pub lease_duration: Duration,
    /// How often every Replica is checked even without events.
    pub resync: Duration,
    pub paths: Paths,
}

/// Runs the agent until the process is stopped.
pub async fn run(config: Config) -> anyhow::Result<()> {
    use anyhow::Context;
    let client = kube::Client::try_default()
        .await
        .context("connecting to the API server (KUBECONFIG or in-cluster)")?;
    crate::node::register(&client, &config)
        .await
        .context("registering this host's BerthNode")?;
    tracing::info!(node = %config.node, "registered");
    let lease = tokio::spawn(crate::node::keep_lease(client.clone(), config.clone()));
    let replicas = crate::sync::run(client, config);
    tokio::select! {
        result = replicas => result,
        result = lease => result.context("the lease task stopped")?,
    }
}
