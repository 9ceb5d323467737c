//! `berth-agent`: wiring only. Runs this host's part of the cluster (see `agent`).

mod agent;
mod convert;
mod decide;
mod engine;
mod node;
mod sync;

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "berth-agent",
    version,
    about = "Runs the berth Replicas bound to this host"
)]
struct Args {
    /// This host's name in the cluster (its BerthNode)
    #[arg(long, env = "BERTH_NODE")]
    node: String,
    /// The address other hosts reach this one at
    #[arg(long, env = "BERTH_NODE_ADDRESS")]
    address: String,
    /// Labels of this host (KEY=VALUE), for App placement
    #[arg(long = "label")]
    labels: Vec<String>,
    /// How many Replicas this host takes
    #[arg(long, default_value_t = 110)]
    max_pods: i64,
    /// Seconds the host's Lease lasts without renewal
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
    /// Seconds between full syncs of this host's Replicas
    #[arg(long, default_value_t = 5)]
    resync_seconds: u64,
}

fn main() -> anyhow::Result<()> {
    // The agent starts containers' monitors by re-executing itself (see
    // `berth_engine::monitor::spawn_detached`); that entry must stay single-threaded,
    // so it is taken before any runtime starts.
    let mut argv = std::env::args_os().skip(1);
    if argv.next().as_deref() == Some(std::ffi::OsStr::new(berth_engine::monitor::ENTRY)) {
        std::process::exit(berth_engine::monitor::detached_main(argv.next().as_deref()));
    }
    tokio::runtime::Runtime::new()?.block_on(agent())
}

async fn agent() -> anyhow::Result<()> {
    berth_kube::init_tracing();
    let args = Args::parse();
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("invalid --label \"{l}\": expected KEY=VALUE"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    agent::run(agent::Config {
        node: args.node,
        address: args.address,
        labels,
        max_pods: args.max_pods,
        lease_duration: Duration::from_secs(args.lease_seconds),
        resync: Duration::from_secs(args.resync_seconds),
        paths: berth_engine::Paths::from_env(),
    })
    .await
}
