//! `berth-controller`: wiring only. Connects to the API server, waits to lead, then runs
//! the App reconciler until leadership is lost.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use berth_controller::leader::Elector;
use berth_controller::readiness;
use berth_controller::reconcile::{self, Context};
use berth_crds::{App, BerthNode, Replica, SYSTEM_NAMESPACE};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client};

#[derive(Parser)]
#[command(
    name = "berth-controller",
    version,
    about = "Reconciles berth Apps into Replicas bound to hosts"
)]
struct Args {
    /// This controller's name in the leader election (default: host name and pid)
    #[arg(long)]
    identity: Option<String>,
    /// Seconds a leader lease lasts without renewal
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Seconds a host may be NotReady before its Replicas are made elsewhere
    #[arg(long, default_value_t = 30)]
    node_grace_seconds: u64,
    /// Seconds between reconciles of each App even without changes
    #[arg(long, default_value_t = 10)]
    resync_seconds: u64,
}

/// A cache of every object of a kind, kept current by a watch in the background.
fn cache<K>(api: Api<K>, config: watcher::Config) -> reflector::Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .applied_objects();
    tokio::spawn(stream.for_each(|_| async {}));
    store
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    berth_kube::init_tracing();
    let args = Args::parse();
    let client = Client::try_default()
        .await
        .context("connecting to the API server (KUBECONFIG or in-cluster)")?;
    let identity = args
        .identity
        .unwrap_or_else(|| format!("{}-{}", nix_hostname(), std::process::id()));
    let elector = Elector::new(
        client.clone(),
        SYSTEM_NAMESPACE,
        "berth-controller",
        &identity,
        Duration::from_secs(args.lease_seconds),
    );
    elector
        .acquire()
        .await
        .context("acquiring the leader lease")?;
    tracing::info!(%identity, "leading");

    let ctx = Arc::new(Context {
        replicas: cache(
            Api::<Replica>::all(client.clone()),
            watcher::Config::default(),
        ),
        nodes: cache(
            Api::<BerthNode>::all(client.clone()),
            watcher::Config::default(),
        ),
        leases: cache(
            Api::<Lease>::namespaced(client.clone(), SYSTEM_NAMESPACE),
            watcher::Config::default(),
        ),
        client: client.clone(),
        grace: Duration::from_secs(args.node_grace_seconds),
        resync: Duration::from_secs(args.resync_seconds),
    });
    for (what, ready) in [
        ("replicas", ctx.replicas.wait_until_ready().await),
        ("nodes", ctx.nodes.wait_until_ready().await),
        ("leases", ctx.leases.wait_until_ready().await),
    ] {
        ready.with_context(|| format!("waiting for the {what} cache"))?;
    }
    let nodes = readiness::watch_nodes(ctx.clone());
    let controller = Controller::new(Api::<App>::all(client.clone()), watcher::Config::default())
        .owns(
            Api::<Replica>::all(client.clone()),
            watcher::Config::default(),
        )
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|_| async {});
    tokio::select! {
        () = controller => anyhow::bail!("the controller stopped"),
        () = nodes => anyhow::bail!("the host readiness task stopped"),
        () = elector.hold() => anyhow::bail!("lost leadership; exiting so a restart campaigns again"),
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "controller".into())
}
