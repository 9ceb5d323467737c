//! The App reconciler: makes the App's current template an AppRevision, asks the planner
//! what Replicas to create and delete, carries that out, and writes the App's status.
//! What to write is computed in `objects` (pure); this module reads the caches and talks
//! to the API server.
//!
//! Level-triggered and restartable: every step is derived from what the API server holds.
//! Replicas have deterministic names (`<app>-<revision hash>-<slot>`), so a controller
//! that restarts, or acts on a cache that lags, cannot make a duplicate: the second
//! create of a name fails and is ignored.

use std::sync::Arc;
use std::time::Duration;

use berth_crds::{App, AppRevision, BerthNode, Replica};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tracing::Instrument;

use crate::objects::{self, Teardown};
use crate::{nodes, plan};

pub use crate::objects::{APP_FINALIZER, revision_name};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("App {0} has no namespace")]
    NoNamespace(String),
    #[error("building a JSON patch: {0}")]
    Patch(#[source] serde_json::Error),
}

pub struct Context {
    pub client: Client,
    pub replicas: Store<Replica>,
    pub nodes: Store<BerthNode>,
    pub leases: Store<Lease>,
    /// How long a NotReady host keeps its Replicas before they are made elsewhere.
    pub grace: Duration,
    /// Reconcile each App at least this often (host liveness changes with time).
    pub resync: Duration,
}

impl Context {
    /// The planner's view of the hosts, as the caches have them now.
    pub(crate) fn node_views(&self, now: Timestamp) -> Vec<plan::Node> {
        let nodes: Vec<BerthNode> = self.nodes.state().iter().map(|n| (**n).clone()).collect();
        let leases: Vec<Lease> = self.leases.state().iter().map(|l| (**l).clone()).collect();
        nodes::views(&nodes, &leases, now, self.grace)
    }
}

pub async fn reconcile(app: Arc<App>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = app
        .namespace()
        .ok_or_else(|| Error::NoNamespace(app.name_any()))?;
    let span = tracing::info_span!("reconcile", app = %format!("{ns}/{}", app.name_any()));
    Reconciler {
        app: &app,
        ctx: &ctx,
        ns: &ns,
        now: Timestamp::now(),
    }
    .run()
    .instrument(span)
    .await
}

pub fn error_policy(app: Arc<App>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(app = %app.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

struct Reconciler<'a> {
    app: &'a App,
    ctx: &'a Context,
    ns: &'a str,
    /// The time this reconcile reads host liveness and condition transitions at.
    now: Timestamp,
}

impl Reconciler<'_> {
    fn name(&self) -> String {
        self.app.name_any()
    }

    fn apps(&self) -> Api<App> {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }

    fn replicas_api(&self) -> Api<Replica> {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }

    fn revisions_api(&self) -> Api<AppRevision> {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }

    fn selector(&self) -> ListParams {
        ListParams::default().labels(&objects::app_selector(&self.name()))
    }

    /// Sends one of `berth_kube::finalizer`'s patches (see there why JSON patches).
    async fn patch_finalizers(&self, patch: serde_json::Value) -> Result<(), Error> {
        let patch = Patch::Json::<()>(serde_json::from_value(patch).map_err(Error::Patch)?);
        self.apps()
            .patch(&self.name(), &PatchParams::default(), &patch)
            .await?;
        Ok(())
    }

    /// This App's Replicas, as the cache has them.
    fn own_replicas(&self) -> Vec<Arc<Replica>> {
        let name = self.name();
        self.ctx
            .replicas
            .state()
            .into_iter()
            .filter(|r| r.namespace().as_deref() == Some(self.ns) && r.spec.app == name)
            .collect()
    }

    async fn run(&self) -> Result<Action, Error> {
        if self.app.meta().deletion_timestamp.is_some() {
            return self.finish_deletion().await;
        }
        if let Some(patch) = berth_kube::finalizer::add(self.app, APP_FINALIZER) {
            self.patch_finalizers(patch).await?;
        }
        let revision = self.ensure_revision().await?;
        let replicas = self.own_replicas();
        let replicas: Vec<&Replica> = replicas.iter().map(|r| &**r).collect();
        let views: Vec<plan::Replica> = replicas.iter().map(|r| objects::replica_view(r)).collect();
        let nodes = self.ctx.node_views(self.now);
        let load = objects::load(self.ctx.replicas.state().iter().map(|r| &**r));
        let desired = plan::Desired {
            replicas: self.app.spec.replicas.max(0) as usize,
            revision: &revision,
            node_selector: &self.app.spec.placement.node_selector,
        };
        let step = plan::plan(&desired, &views, &nodes, &load);
        self.execute(&step, &revision, &views).await?;
        self.collect_revisions(&revision).await?;
        let status = objects::status(self.app, &revision, &views, &replicas, &step, self.now);
        if self.app.status.as_ref() != Some(&status) {
            self.apps()
                .patch_status(
                    &self.name(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": status })),
                )
                .await?;
        }
        Ok(Action::requeue(self.ctx.resync))
    }

    /// The AppRevision of the current template, created when new.
    async fn ensure_revision(&self) -> Result<String, Error> {
        let name = revision_name(&self.name(), &self.app.spec.template);
        let api = self.revisions_api();
        if api.get_opt(&name).await?.is_some() {
            return Ok(name);
        }
        let existing = api.list(&self.selector()).await?;
        let number = objects::next_revision_number(&existing.items);
        let rev = objects::new_revision(self.app, &name, number);
        match api.create(&PostParams::default(), &rev).await {
            Ok(_) => tracing::info!(revision = %name, number, "new revision"),
            Err(kube::Error::Api(e)) if e.is_already_exists() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(name)
    }

    /// Carries out the plan, in order; the first failure ends the reconcile (the next
    /// one plans again from what the API server then holds).
    async fn execute(
        &self,
        step: &plan::Plan,
        revision: &str,
        views: &[plan::Replica],
    ) -> Result<(), Error> {
        let api = self.replicas_api();
        for (name, node) in objects::replica_names(revision, views, &step.create) {
            let replica = objects::new_replica(self.app, revision, &name, &node);
            match api.create(&PostParams::default(), &replica).await {
                Ok(_) => tracing::info!(replica = %name, %node, "created"),
                // A Replica of this name exists (the cache lagged, or another pass made
                // it): it is this revision's Replica of this slot, as wanted.
                Err(kube::Error::Api(e)) if e.is_already_exists() => {}
                Err(e) => return Err(e.into()),
            }
        }
        for name in &step.delete {
            delete_replica(&api, name).await?;
            tracing::info!(replica = %name, "deleted");
        }
        for name in &step.abandon {
            abandon_replica(&api, name).await?;
            tracing::info!(replica = %name, "abandoned: its host is lost");
        }
        Ok(())
    }

    /// Keeps the current revision and the newest `revisionHistoryLimit` others.
    async fn collect_revisions(&self, current: &str) -> Result<(), Error> {
        let api = self.revisions_api();
        let all = api.list(&self.selector()).await?.items;
        for old in objects::old_revisions(all, current, self.app.spec.revision_history_limit) {
            match api.delete(&old, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The App is being deleted: its Replicas go first (their agents remove the
    /// containers), then the App's finalizer.
    async fn finish_deletion(&self) -> Result<Action, Error> {
        let api = self.replicas_api();
        let lost: Vec<String> = self
            .ctx
            .node_views(self.now)
            .into_iter()
            .filter(|n| n.lost)
            .map(|n| n.name)
            .collect();
        let remaining = api.list(&self.selector()).await?.items;
        for step in objects::teardown(&remaining, &lost) {
            match step {
                Teardown::Abandon(name) => abandon_replica(&api, &name).await?,
                Teardown::Delete(name) => delete_replica(&api, &name).await?,
            }
        }
        if remaining.is_empty() {
            if let Some(patch) = berth_kube::finalizer::remove(self.app, APP_FINALIZER) {
                self.patch_finalizers(patch).await?;
            }
            tracing::info!("deleted: every replica is gone");
            return Ok(Action::await_change());
        }
        Ok(Action::requeue(Duration::from_secs(1)))
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

/// Deletes a Replica; one already gone counts as deleted.
async fn delete_replica(api: &Api<Replica>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a Replica without waiting for its agent (whose host is lost): every finalizer
/// on it goes, whoever set it, since no agent will ever finish it.
async fn abandon_replica(api: &Api<Replica>, name: &str) -> Result<(), Error> {
    let patch = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    match api.patch(name, &PatchParams::default(), &patch).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e.into()),
    }
    delete_replica(api, name).await
}

#[cfg(test)]
mod tests;
