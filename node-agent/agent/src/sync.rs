//! The Replicas bound to this host, made real: a container per Replica (found again by
//! the Replica's uid on its labels, so an agent restart adopts what runs without touching
//! it), removed when its Replica goes, and the Replica's status kept current.

use std::sync::Arc;

use berth_crds::{CONTAINER_FINALIZER as FINALIZER, Replica, ReplicaStatus};
use futures::{FutureExt, StreamExt};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::agent::Config;
use crate::convert::{self, replica_uid};
use berth_engine::Paths;
use berth_engine::container::{self, Container};
use berth_engine::{create, lifecycle, monitor};

const MANAGER: &str = "berth-agent";

/// Watches this host's Replicas and syncs on every change and every `resync`.
pub async fn run(client: Client, config: Config) -> anyhow::Result<()> {
    let api: Api<Replica> = Api::all(client.clone());
    let (store, writer) = reflector::store();
    // Only the Replicas bound here (a selectable field of the CRD).
    let selector = watcher::Config::default().fields(&format!("spec.nodeName={}", config.node));
    let mut events = watcher(api, selector)
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .boxed();
    let mut tick = tokio::time::interval(config.resync);
    let mut backoff = Backoff::default();
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(_)) => {}
                Some(Err(error)) => tracing::warn!(%error, "watching replicas"),
                None => anyhow::bail!("the replica watch ended"),
            },
            _ = tick.tick() => {}
        }
        // Before the first full list, an empty cache would read as "no Replicas here":
        // never act on it, or a restarted agent would remove every container.
        if store.wait_until_ready().now_or_never().is_none() {
            continue;
        }
        if let Err(error) = sync(&client, &config, &store, &mut backoff).await {
            tracing::warn!(%error, "sync failed; retrying on the next change or tick");
        }
    }
}

/// When each Replica's container may be started again: 1 s after the first failure,
/// doubling up to 5 minutes, as the kubelet backs off a crashing container.
#[derive(Default)]
struct Backoff {
    next: std::collections::HashMap<String, (std::time::Instant, std::time::Duration)>,
}

impl Backoff {
    /// Whether `uid` may be started now; if so, the next attempt waits longer.
    fn ready(&mut self, uid: &str) -> bool {
        let now = std::time::Instant::now();
        let (at, delay) = self
            .next
            .get(uid)
            .copied()
            .unwrap_or((now, std::time::Duration::from_millis(500)));
        if now < at {
            return false;
        }
        let delay = (delay * 2).min(std::time::Duration::from_secs(300));
        self.next.insert(uid.to_string(), (now + delay, delay));
        true
    }
}

/// The engine is synchronous (files, fork and exec): it runs off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

fn our_containers(paths: &Paths) -> anyhow::Result<Vec<Container>> {
    Ok(container::list(paths)?
        .into_iter()
        .filter(|c| replica_uid(c).is_some())
        .collect())
}

async fn sync(
    client: &Client,
    config: &Config,
    store: &Store<Replica>,
    backoff: &mut Backoff,
) -> anyhow::Result<()> {
    let replicas: Vec<Arc<Replica>> = store.state();
    backoff
        .next
        .retain(|uid, _| replicas.iter().any(|r| r.uid().as_deref() == Some(uid)));
    let paths = config.paths.clone();
    let containers = blocking(move || our_containers(&paths)).await??;

    // Containers whose Replica is gone (or was replaced by a new one of the same name).
    for c in &containers {
        let uid = replica_uid(c).unwrap_or_default();
        if !replicas.iter().any(|r| r.uid().as_deref() == Some(uid)) {
            remove(config, c.clone()).await?;
        }
    }
    for r in &replicas {
        let (ns, name, uid) = convert::identity(r);
        let api: Api<Replica> = Api::namespaced(client.clone(), &ns);
        let existing = containers
            .iter()
            .find(|c| replica_uid(c) == Some(uid.as_str()))
            .cloned();
        if r.meta().deletion_timestamp.is_some() {
            if let Some(c) = existing {
                remove(config, c).await?;
            }
            let finalizers: Vec<String> = r
                .finalizers()
                .iter()
                .filter(|f| *f != FINALIZER)
                .cloned()
                .collect();
            api.patch(
                &name,
                &PatchParams::default(),
                &finalizers_patch(finalizers),
            )
            .await?;
            continue;
        }
        if !r.finalizers().iter().any(|f| f == FINALIZER) {
            let mut finalizers = r.finalizers().to_vec();
            finalizers.push(FINALIZER.to_string());
            api.patch(
                &name,
                &PatchParams::default(),
                &finalizers_patch(finalizers),
            )
            .await?;
        }
        let status = match existing {
            Some(c) if needs_start(&c) => match backoff.ready(&uid) {
                true => restart(config, c).await?,
                false => convert::status(&c, &config.address),
            },
            Some(c) => convert::status(&c, &config.address),
            // Making the container again (a pull or a create failed) backs off too.
            None if !backoff.ready(&uid) => r.status.clone().unwrap_or_default(),
            None => start(config, &ns, &name, &uid, r).await?,
        };
        if r.status.as_ref() != Some(&status) {
            let patch =
                json!({ "apiVersion": "berth.dev/v1alpha1", "kind": "Replica", "status": status });
            api.patch_status(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(patch),
            )
            .await?;
        }
    }
    Ok(())
}

/// Creates and starts the Replica's container; what stands in the way becomes the status.
async fn start(
    config: &Config,
    ns: &str,
    name: &str,
    uid: &str,
    r: &Replica,
) -> anyhow::Result<ReplicaStatus> {
    let opts = match convert::create_options(ns, name, uid, &r.spec.template) {
        Ok(o) => o,
        Err(e) => {
            return Ok(convert::waiting(
                "InvalidTemplate",
                e.to_string(),
                &config.address,
            ));
        }
    };
    let paths = config.paths.clone();
    let (ns, name) = (ns.to_string(), name.to_string());
    let result = blocking(move || -> Result<Container, String> {
        // A container left by an earlier Replica of the same name goes first.
        if let Ok(old) = container::find(&paths, &convert::container_name(&ns, &name)) {
            lifecycle::remove(&paths, &old, true).map_err(|e| e.to_string())?;
        }
        pull_if_absent(&paths, &opts.image)?;
        let c = create::create(&paths, &opts).map_err(|e| e.to_string())?;
        if let Err(e) = monitor::spawn_detached(&paths, &c) {
            tracing::warn!(replica = %name, error = %e, "container failed to start");
        }
        container::load(&paths, &c.config.id).map_err(|e| e.to_string())
    })
    .await?;
    Ok(match result {
        Ok(c) => {
            tracing::info!(replica = %r.name_any(), container = %c.config.id, "started");
            convert::status(&c, &config.address)
        }
        Err(message) if message.contains("not found locally") => {
            convert::waiting("ImageNotFound", message, &config.address)
        }
        Err(message) => convert::waiting("CreateError", message, &config.address),
    })
}

/// Pulls the image when this host does not have it. The registry client runs its own
/// async runtime, so it gets a thread of its own (this one belongs to tokio's pool).
fn pull_if_absent(paths: &Paths, image: &str) -> Result<(), String> {
    use berth_image::{self as image, ImageStore, Reference, registry};
    match ImageStore::open(&paths.root)
        .map_err(|e| e.to_string())?
        .resolve(image)
    {
        Err(image::Error::NotFound(_)) => {}
        _ => return Ok(()),
    }
    let reference = Reference::parse(image).map_err(|e| e.to_string())?;
    std::thread::scope(|s| {
        s.spawn(|| {
            let progress = registry::Progress::new(false, true);
            registry::pull(
                &paths.root,
                &reference,
                &registry::Options::from_env(None),
                &progress,
            )
            .map(drop)
            .map_err(|e| format!("image \"{image}\" not found locally, and pulling it failed: {e}"))
        })
        .join()
        .map_err(|_| "the image pull panicked".to_string())?
    })
}

/// A container of a Replica should run: one whose monitor is gone without running it
/// (never started, failed to start, or gave up) is started again, with backoff.
fn needs_start(c: &Container) -> bool {
    use berth_engine::container::Liveness;
    matches!(
        c.liveness(),
        Liveness::Created | Liveness::Exited | Liveness::Dead
    )
}

async fn restart(config: &Config, c: Container) -> anyhow::Result<ReplicaStatus> {
    let paths = config.paths.clone();
    let id = c.config.id.clone();
    let c = blocking(move || {
        if let Err(e) = monitor::spawn_detached(&paths, &c) {
            tracing::warn!(container = %c.config.name, error = %e, "container failed to start again");
        }
        container::load(&paths, &id)
    })
    .await??;
    Ok(convert::status(&c, &config.address))
}

async fn remove(config: &Config, c: Container) -> anyhow::Result<()> {
    let paths = config.paths.clone();
    let name = c.config.name.clone();
    blocking(move || lifecycle::remove(&paths, &c, true)).await??;
    tracing::info!(container = %name, "removed: its replica is gone");
    Ok(())
}

/// The merge patch that sets an object's finalizers to `finalizers`.
fn finalizers_patch(finalizers: Vec<String>) -> Patch<serde_json::Value> {
    Patch::Merge(json!({ "metadata": { "finalizers": finalizers } }))
}
