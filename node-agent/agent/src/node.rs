//! This host in the cluster: its `BerthNode` (capacity, addresses, labels) and the Lease
//! whose renewal says it is alive.

use berth_crds::{BerthNode, SYSTEM_NAMESPACE};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::agent::Config;

const MANAGER: &str = "berth-agent";

fn memory_bytes() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .map(|v| v.trim().trim_end_matches(" kB").trim().parse::<i64>().ok())
            })
        })
        .flatten()
        .map_or(0, |kb| kb * 1024)
}

/// Creates or updates this host's BerthNode (server-side apply).
pub async fn register(client: &Client, config: &Config) -> Result<(), kube::Error> {
    let api: Api<BerthNode> = Api::all(client.clone());
    let params = PatchParams::apply(MANAGER).force();
    let node = json!({
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "BerthNode",
        "metadata": { "name": config.node, "labels": config.labels },
        "spec": {},
    });
    api.patch(&config.node, &params, &Patch::Apply(node))
        .await?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let status = json!({
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "BerthNode",
        "status": {
            "capacity": { "cpu": cpus, "memory": memory_bytes(), "pods": config.max_pods },
            "addresses": [{ "type": "InternalIP", "address": config.address }],
        },
    });
    api.patch_status(&config.node, &params, &Patch::Apply(status))
        .await?;
    Ok(())
}

/// Renews the Lease every third of its duration, for as long as the agent runs.
pub async fn keep_lease(client: Client, config: Config) -> anyhow::Result<()> {
    let api: Api<Lease> = Api::namespaced(client, SYSTEM_NAMESPACE);
    loop {
        if let Err(error) = renew(&api, &config).await {
            tracing::warn!(node = %config.node, %error, "renewing the lease failed; retrying");
        }
        tokio::time::sleep(config.lease_duration / 3).await;
    }
}

async fn renew(api: &Api<Lease>, config: &Config) -> Result<(), kube::Error> {
    let now = MicroTime(Timestamp::now());
    match api.get_opt(&config.node).await? {
        Some(mut lease) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = Some(config.node.clone());
            spec.lease_duration_seconds = Some(config.lease_duration.as_secs() as i32);
            spec.renew_time = Some(now);
            api.replace(&config.node, &PostParams::default(), &lease)
                .await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.node.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(config.node.clone()),
                    lease_duration_seconds: Some(config.lease_duration.as_secs() as i32),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}
