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

#[cfg(test)]
mod tests {
    use super::*;
    use berth_kube::mock::{self, Exchange, JSON, Method, finish, scenario, within};
    use serde_json::Value;
    use std::collections::BTreeMap;
    use std::time::Duration;

    const NODE: &str = "/apis/berth.dev/v1alpha1/berthnodes/h1";
    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/berth-system/leases";
    const APPLY: &str = "application/apply-patch+yaml";

    fn config() -> Config {
        Config {
            node: "h1".into(),
            address: "10.0.0.1".into(),
            labels: BTreeMap::from([("zone".to_string(), "a".to_string())]),
            max_pods: 7,
            lease_duration: Duration::from_secs(15),
            resync: Duration::from_secs(5),
            paths: berth_engine::Paths::at("/nonexistent/root".into(), "/nonexistent/run".into()),
        }
    }

    fn lease(holder: &str, renewed: &str) -> Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "h1", "namespace": "berth-system", "resourceVersion": "4"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed},
        })
    }

    /// A Lease body held by h1 for 15 s, renewed within the last minute.
    fn held_by_h1(body: &Value) {
        assert_eq!(body["spec"]["holderIdentity"], "h1");
        assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
        let renewed: Timestamp = body["spec"]["renewTime"].as_str().unwrap().parse().unwrap();
        let age = Timestamp::now().duration_since(renewed);
        assert!(age.as_secs() < 60, "renewTime is now, not {renewed}");
    }

    #[tokio::test]
    async fn registration_applies_the_node_then_its_capacity_and_address() {
        let (client, handle) = mock::client();
        let node = json!({"apiVersion": "berth.dev/v1alpha1", "kind": "BerthNode",
            "metadata": {"name": "h1"}, "spec": {}});
        let driver = scenario(
            handle,
            vec![
                Exchange::patch(
                    &format!("{NODE}?&force=true&fieldManager=berth-agent"),
                    APPLY,
                    json!({
                        "apiVersion": "berth.dev/v1alpha1",
                        "kind": "BerthNode",
                        "metadata": {"name": "h1", "labels": {"zone": "a"}},
                        "spec": {},
                    }),
                )
                .reply(200, node.clone()),
                Exchange::checked(
                    Method::PATCH,
                    &format!("{NODE}/status?&force=true&fieldManager=berth-agent"),
                    APPLY,
                    |body| {
                        let status = &body["status"];
                        assert_eq!(
                            status["addresses"],
                            json!([{"type": "InternalIP", "address": "10.0.0.1"}])
                        );
                        assert_eq!(status["capacity"]["pods"], 7);
                        assert!(status["capacity"]["cpu"].as_i64().unwrap() >= 1);
                    },
                )
                .reply(200, node),
            ],
        );
        within(register(&client, &config())).await.unwrap();
        drop(client);
        finish(driver).await;
    }

    #[tokio::test]
    async fn a_missing_lease_is_created_and_a_present_one_renewed_at_its_version() {
        let (client, handle) = mock::client();
        let old = "2020-01-01T00:00:00.000000Z";
        let driver = scenario(
            handle,
            vec![
                Exchange::get(&format!("{LEASES}/h1")).fail(404, "NotFound"),
                Exchange::checked(Method::POST, &format!("{LEASES}?"), JSON, |body| {
                    held_by_h1(&body);
                    assert_eq!(body["spec"]["acquireTime"], body["spec"]["renewTime"]);
                })
                .reply(201, lease("h1", old)),
                Exchange::get(&format!("{LEASES}/h1")).reply(200, lease("other", old)),
                Exchange::checked(Method::PUT, &format!("{LEASES}/h1?"), JSON, |body| {
                    held_by_h1(&body);
                    // Optimistic concurrency: the write fails if the Lease changed.
                    assert_eq!(body["metadata"]["resourceVersion"], "4");
                })
                .reply(200, lease("h1", old)),
            ],
        );
        let api: Api<Lease> = Api::namespaced(client, SYSTEM_NAMESPACE);
        within(renew(&api, &config())).await.unwrap();
        within(renew(&api, &config())).await.unwrap();
        drop(api);
        finish(driver).await;
    }
}
