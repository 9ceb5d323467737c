//! The Replicas bound to this host, made real: a container per Replica (found again by
//! the Replica's uid on its labels, so an agent restart adopts what runs without touching
//! it), removed when its Replica goes, and the Replica's status kept current.
//!
//! A pass syncs one Replica at a time: what to do is decided in `decide` (pure), and a
//! Replica whose API write or engine call fails is logged and retried on the next pass
//! without holding up the others.

use std::sync::Arc;
use std::time::Instant;

use berth_crds::Replica;
use futures::{FutureExt, StreamExt};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::Value;
use tracing::Instrument;

use crate::agent::Config;
use crate::convert;
use crate::decide::{self, Action, Backoff, Container};
use crate::engine::{self, Engine, Observed};

const MANAGER: &str = "berth-agent";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing this host's containers: {0}")]
    List(#[source] engine::Error),
    #[error("removing container {container}, whose Replica is gone: {source}")]
    Orphan {
        container: String,
        source: engine::Error,
    },
    #[error("Replica {replica}: {step}: {source}")]
    Api {
        replica: String,
        step: &'static str,
        source: kube::Error,
    },
    #[error("Replica {replica}: {step}: {source}")]
    Engine {
        replica: String,
        step: &'static str,
        source: engine::Error,
    },
    #[error("Replica {replica}: building the finalizer patch: {source}")]
    Patch {
        replica: String,
        source: serde_json::Error,
    },
}

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
    let engine = Arc::new(engine::Host {
        paths: config.paths.clone(),
        address: config.address.clone(),
    });
    let mut syncer = Syncer::new(client, engine, config.address.clone());
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
        let replicas = store.state();
        let replicas: Vec<&Replica> = replicas.iter().map(|r| &**r).collect();
        for error in syncer.pass(&replicas, Instant::now()).await {
            tracing::warn!(%error, "sync failed; retrying on the next change or tick");
        }
    }
}

/// Syncs this host's Replicas with its containers, remembering back-off between passes.
pub struct Syncer {
    client: Client,
    engine: Arc<dyn Engine>,
    /// This host's address (the statuses' hostIP).
    host_ip: String,
    backoff: Backoff,
}

impl Syncer {
    pub fn new(client: Client, engine: Arc<dyn Engine>, host_ip: String) -> Self {
        Syncer {
            client,
            engine,
            host_ip,
            backoff: Backoff::default(),
        }
    }

    /// One pass over `replicas` (all those bound here) at `now`: what failed, one error
    /// per Replica or container.
    pub async fn pass(&mut self, replicas: &[&Replica], now: Instant) -> Vec<Error> {
        self.backoff
            .retain(|uid| replicas.iter().any(|r| r.uid().as_deref() == Some(uid)));
        let containers = match engine::call(&self.engine, |e| e.containers()).await {
            Ok(c) => c,
            Err(e) => return vec![Error::List(e)],
        };
        let mut errors = Vec::new();
        for c in decide::orphans(replicas, &containers) {
            let id = c.id.clone();
            match engine::call(&self.engine, move |e| e.remove(&id)).await {
                Ok(()) => tracing::info!(container = %c.name, "removed: its replica is gone"),
                Err(source) => errors.push(Error::Orphan {
                    container: c.name.clone(),
                    source,
                }),
            }
        }
        for r in replicas {
            let existing = containers
                .iter()
                .find(|c| r.uid().as_deref() == Some(c.replica_uid.as_str()));
            let replica = format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any());
            let span = tracing::info_span!("sync", %replica);
            let one = One {
                api: Api::namespaced(self.client.clone(), &r.namespace().unwrap_or_default()),
                r,
                replica,
            };
            if let Err(e) = self.sync_one(one, existing, now).instrument(span).await {
                errors.push(e);
            }
        }
        errors
    }

    async fn sync_one(
        &mut self,
        one: One<'_>,
        existing: Option<&Observed>,
        now: Instant,
    ) -> Result<(), Error> {
        let r = one.r;
        match decide::decide(r, existing, &self.host_ip, &mut self.backoff, now) {
            Action::Release {
                container,
                finalizer,
            } => {
                if let Some(id) = container {
                    engine::call(&self.engine, move |e| e.remove(&id))
                        .await
                        .map_err(one.engine_error("removing its container"))?;
                    tracing::info!("container removed: the replica is being deleted");
                }
                if let Some(ops) = finalizer {
                    one.patch_finalizers(ops, "removing the finalizer").await?;
                }
            }
            Action::Run {
                finalizer,
                container,
            } => {
                // A Replica gone meanwhile gets no container.
                if let Some(ops) = finalizer
                    && !one.patch_finalizers(ops, "adding the finalizer").await?
                {
                    return Ok(());
                }
                let status = match container {
                    Container::Report(status) => status,
                    Container::Restart(id) => {
                        engine::call(&self.engine, move |e| e.restart(&id))
                            .await
                            .map_err(one.engine_error("restarting its container"))?
                            .status
                    }
                    Container::Create(opts) => {
                        match engine::call(&self.engine, move |e| e.run(*opts)).await {
                            Ok(c) => {
                                tracing::info!(container = %c.id, "started");
                                c.status
                            }
                            // What stands in the way becomes the status.
                            Err(e) => convert::waiting(e.reason(), e.to_string(), &self.host_ip),
                        }
                    }
                };
                if let Some(body) = decide::status_patch(r, &status) {
                    let params = PatchParams::apply(MANAGER).force();
                    let sent = one
                        .api
                        .patch_status(&r.name_any(), &params, &Patch::Apply(body))
                        .await;
                    gone_is_done(sent).map_err(one.api_error("writing its status"))?;
                }
            }
        }
        Ok(())
    }
}

/// The API calls about one Replica, and its errors.
struct One<'a> {
    api: Api<Replica>,
    r: &'a Replica,
    /// `namespace/name`, for errors.
    replica: String,
}

impl One<'_> {
    fn api_error(&self, step: &'static str) -> impl FnOnce(kube::Error) -> Error {
        let replica = self.replica.clone();
        move |source| Error::Api {
            replica,
            step,
            source,
        }
    }

    fn engine_error(&self, step: &'static str) -> impl FnOnce(engine::Error) -> Error {
        let replica = self.replica.clone();
        move |source| Error::Engine {
            replica,
            step,
            source,
        }
    }

    /// Sends a `berth_kube::finalizer` JSON patch; false if the Replica is gone.
    async fn patch_finalizers(&self, ops: Value, step: &'static str) -> Result<bool, Error> {
        let ops = serde_json::from_value(ops).map_err(|source| Error::Patch {
            replica: self.replica.clone(),
            source,
        })?;
        let sent = self
            .api
            .patch(
                &self.r.name_any(),
                &PatchParams::default(),
                &Patch::Json::<()>(ops),
            )
            .await;
        Ok(gone_is_done(sent).map_err(self.api_error(step))?.is_some())
    }
}

/// A Replica that is gone (404) needs nothing more: `Ok(None)`.
fn gone_is_done<T>(result: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match result {
        Ok(t) => Ok(Some(t)),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            tracing::debug!("the replica is gone");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
