//! What berth's cluster binaries (`berth-controller`, `berth-agent`) share: how they log,
//! how they change an object's finalizers, and (feature `mock`) the scripted API server
//! their tests run against.

pub mod finalizer;
#[cfg(feature = "mock")]
pub mod mock;

/// Logs to stderr, filtered by `RUST_LOG` (default: info, and only kube's warnings, whose
/// info lines are one per watch restart).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
}
