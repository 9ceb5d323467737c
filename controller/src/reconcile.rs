//! The App reconciler: makes the App's current template an AppRevision, asks the planner
//! what Replicas to create and delete, carries that out, and writes the App's status.
//!
//! Level-triggered and restartable: every step is derived from what the API server holds.
//! Replicas have deterministic names (`<app>-<revision hash>-<slot>`), so a controller
//! that restarts, or acts on a cache that lags, cannot make a duplicate: the second
//! create of a name fails and is ignored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth_crds::{
    APP_LABEL, App, AppRevision, AppRevisionSpec, AppStatus, BerthNode, REVISION_LABEL, Replica,
    ReplicaPhase, ReplicaSpec, app::Condition,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::{nodes, plan};

/// Held on an App until its Replicas (and their containers) are gone.
pub const APP_FINALIZER: &str = "berth.dev/replicas";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("App {0} has no namespace")]
    NoNamespace(String),
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

/// The AppRevision name for a template: the App's name and a hash of the template.
pub fn revision_name(app: &str, template: &berth_crds::Template) -> String {
    let hash = Sha256::digest(serde_json::to_vec(template).expect("templates serialize"));
    let hex: String = hash.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{app}-{hex}")
}

fn slot_of(replica: &str, revision: &str) -> Option<usize> {
    replica
        .strip_prefix(revision)?
        .strip_prefix('-')?
        .parse()
        .ok()
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
}

impl Reconciler<'_> {
    fn name(&self) -> String {
        self.app.name_any()
    }

    fn apps(&self) -> Api<App> {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }

    async fn set_finalizers(&self, finalizers: Vec<String>) -> Result<(), Error> {
        let patch = Patch::Merge(json!({ "metadata": { "finalizers": finalizers } }));
        self.apps()
            .patch(&self.name(), &PatchParams::default(), &patch)
            .await?;
        Ok(())
    }

    fn replicas_api(&self) -> Api<Replica> {
        Api::namespaced(self.ctx.client.clone(), self.ns)
    }

    fn revisions_api(&self) -> Api<AppRevision> {
        Api::namespaced(self.ctx.client.clone(), self.ns)
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

    fn node_views(&self) -> Vec<plan::Node> {
        let nodes: Vec<BerthNode> = self
            .ctx
            .nodes
            .state()
            .iter()
            .map(|n| (**n).clone())
            .collect();
        let leases: Vec<Lease> = self
            .ctx
            .leases
            .state()
            .iter()
            .map(|l| (**l).clone())
            .collect();
        nodes::views(&nodes, &leases, Timestamp::now(), self.ctx.grace)
    }

    async fn run(&self) -> Result<Action, Error> {
        if self.app.meta().deletion_timestamp.is_some() {
            return self.finish_deletion().await;
        }
        if !self.app.finalizers().iter().any(|f| f == APP_FINALIZER) {
            let mut finalizers = self.app.finalizers().to_vec();
            finalizers.push(APP_FINALIZER.to_string());
            self.set_finalizers(finalizers).await?;
        }
        let revision = self.ensure_revision().await?;
        let replicas = self.own_replicas();
        let nodes = self.node_views();
        let mut load: BTreeMap<String, usize> = BTreeMap::new();
        for r in self.ctx.replicas.state() {
            *load.entry(r.spec.node_name.clone()).or_default() += 1;
        }
        let views: Vec<plan::Replica> = replicas
            .iter()
            .map(|r| plan::Replica {
                name: r.name_any(),
                node: r.spec.node_name.clone(),
                revision: r.spec.revision.clone(),
                created: slot_of(&r.name_any(), &r.spec.revision).map_or(0, |s| s as i64),
                ready: r
                    .status
                    .as_ref()
                    .is_some_and(|s| s.ready && s.phase == ReplicaPhase::Running),
                deleting: r.meta().deletion_timestamp.is_some(),
            })
            .collect();
        let selector = &self.app.spec.placement.node_selector;
        let desired = plan::Desired {
            replicas: self.app.spec.replicas.max(0) as usize,
            revision: &revision,
            node_selector: selector,
        };
        let step = plan::plan(&desired, &views, &nodes, &load);
        self.execute(&step, &revision, &views).await?;
        self.collect_revisions(&revision).await?;
        self.write_status(&revision, &views, &replicas, &step)
            .await?;
        Ok(Action::requeue(self.ctx.resync))
    }

    /// The AppRevision of the current template, created when new.
    async fn ensure_revision(&self) -> Result<String, Error> {
        let name = revision_name(&self.name(), &self.app.spec.template);
        let api = self.revisions_api();
        if api.get_opt(&name).await?.is_some() {
            return Ok(name);
        }
        let existing = api
            .list(&kube::api::ListParams::default().labels(&format!("{APP_LABEL}={}", self.name())))
            .await?;
        let number = existing
            .items
            .iter()
            .map(|r| r.spec.revision)
            .max()
            .unwrap_or(0)
            + 1;
        let mut rev = AppRevision::new(
            &name,
            AppRevisionSpec {
                app: self.name(),
                revision: number,
                template: self.app.spec.template.clone(),
            },
        );
        rev.metadata.labels = Some(BTreeMap::from([(APP_LABEL.to_string(), self.name())]));
        rev.metadata.owner_references = self.app.controller_owner_ref(&()).map(|o| vec![o]);
        match api.create(&PostParams::default(), &rev).await {
            Ok(_) => tracing::info!(revision = %name, number, "new revision"),
            Err(kube::Error::Api(e)) if e.is_already_exists() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(name)
    }

    async fn execute(
        &self,
        step: &plan::Plan,
        revision: &str,
        views: &[plan::Replica],
    ) -> Result<(), Error> {
        let api = self.replicas_api();
        let mut used: Vec<usize> = views
            .iter()
            .filter_map(|r| slot_of(&r.name, revision))
            .collect();
        for node in &step.create {
            let slot = (0..).find(|s| !used.contains(s)).expect("a free slot");
            used.push(slot);
            let name = format!("{revision}-{slot}");
            let mut replica = Replica::new(
                &name,
                ReplicaSpec {
                    app: self.name(),
                    revision: revision.to_string(),
                    node_name: node.clone(),
                    template: self.app.spec.template.clone(),
                },
            );
            replica.metadata.labels = Some(BTreeMap::from([
                (APP_LABEL.to_string(), self.name()),
                (REVISION_LABEL.to_string(), revision.to_string()),
            ]));
            replica.metadata.owner_references = self.app.controller_owner_ref(&()).map(|o| vec![o]);
            match api.create(&PostParams::default(), &replica).await {
                Ok(_) => tracing::info!(replica = %name, %node, "created"),
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
        let mut all = api
            .list(&kube::api::ListParams::default().labels(&format!("{APP_LABEL}={}", self.name())))
            .await?
            .items;
        all.retain(|r| r.name_any() != current);
        all.sort_by_key(|r| std::cmp::Reverse(r.spec.revision));
        for old in all
            .iter()
            .skip(self.app.spec.revision_history_limit.max(0) as usize)
        {
            match api.delete(&old.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn write_status(
        &self,
        revision: &str,
        views: &[plan::Replica],
        replicas: &[Arc<Replica>],
        step: &plan::Plan,
    ) -> Result<(), Error> {
        let counts = plan::counts(revision, views);
        let desired = self.app.spec.replicas;
        let condition = |type_: &str, ok: bool, reason: &str, message: String| Condition {
            type_: type_.into(),
            status: if ok { "True" } else { "False" }.into(),
            reason: Some(reason.into()),
            message: Some(message),
            last_transition_time: None,
        };
        let mut conditions = vec![condition(
            "Available",
            counts.available >= desired,
            if counts.available >= desired {
                "MinimumReplicasAvailable"
            } else {
                "MinimumReplicasUnavailable"
            },
            format!("{} of {desired} replicas available", counts.available),
        )];
        conditions.push(if step.unschedulable > 0 {
            condition(
                "Scheduled",
                false,
                "Unschedulable",
                format!("{} replicas fit on no ready host", step.unschedulable),
            )
        } else {
            condition(
                "Scheduled",
                true,
                "AllScheduled",
                "every replica is bound to a host".into(),
            )
        });
        conditions.extend(replica_failure(replicas));
        let old = self.app.status.clone().unwrap_or_default();
        for c in &mut conditions {
            let previous = old.conditions.iter().find(|o| o.type_ == c.type_);
            c.last_transition_time = match previous {
                Some(p) if p.status == c.status => p.last_transition_time.clone(),
                _ => Some(Timestamp::now().to_string()),
            };
        }
        let status = AppStatus {
            observed_generation: self.app.metadata.generation,
            replicas: counts.replicas,
            ready_replicas: counts.ready,
            updated_replicas: counts.updated,
            available_replicas: counts.available,
            current_revision: Some(revision.to_string()),
            conditions,
        };
        if self.app.status.as_ref() != Some(&status) {
            self.apps()
                .patch_status(
                    &self.name(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": status })),
                )
                .await?;
        }
        Ok(())
    }

    /// The App is being deleted: its Replicas go first (their agents remove the
    /// containers), then the App's finalizer.
    async fn finish_deletion(&self) -> Result<Action, Error> {
        let api = self.replicas_api();
        let lost: Vec<String> = self
            .node_views()
            .into_iter()
            .filter(|n| n.lost)
            .map(|n| n.name)
            .collect();
        let remaining = api
            .list(&kube::api::ListParams::default().labels(&format!("{APP_LABEL}={}", self.name())))
            .await?
            .items;
        for r in &remaining {
            if lost.contains(&r.spec.node_name) {
                abandon_replica(&api, &r.name_any()).await?;
            } else if r.meta().deletion_timestamp.is_none() {
                delete_replica(&api, &r.name_any()).await?;
            }
        }
        if remaining.is_empty() {
            let finalizers: Vec<String> = self
                .app
                .finalizers()
                .iter()
                .filter(|f| *f != APP_FINALIZER)
                .cloned()
                .collect();
            self.set_finalizers(finalizers).await?;
            tracing::info!("deleted: every replica is gone");
            return Ok(Action::await_change());
        }
        Ok(Action::requeue(Duration::from_secs(1)))
    }
}

/// Keeps each BerthNode's `Ready` condition in step with its Lease (the agent writes the
/// rest of its status), until the process stops.
pub async fn watch_nodes(ctx: Arc<Context>) {
    let api: Api<BerthNode> = Api::all(ctx.client.clone());
    loop {
        let nodes: Vec<BerthNode> = ctx.nodes.state().iter().map(|n| (**n).clone()).collect();
        let leases: Vec<Lease> = ctx.leases.state().iter().map(|l| (**l).clone()).collect();
        for (node, view) in
            nodes
                .iter()
                .zip(nodes::views(&nodes, &leases, Timestamp::now(), ctx.grace))
        {
            let mut wanted = nodes::ready_condition(&view);
            let current = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
            if current.is_some_and(|c| c.status == wanted.status) {
                continue;
            }
            wanted.last_transition_time = Some(Timestamp::now().to_string());
            let patch = Patch::Merge(json!({"status": {"conditions": [wanted]}}));
            match api
                .patch_status(&view.name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => {
                    tracing::info!(node = %view.name, ready = %wanted.status, "host readiness changed")
                }
                Err(error) => tracing::warn!(node = %view.name, %error, "updating host readiness"),
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// A Replica that cannot run (its image missing, its container failing) surfaces on the
/// App, with the reason its agent gave.
fn replica_failure(replicas: &[Arc<Replica>]) -> Option<Condition> {
    let failing: Vec<&Arc<Replica>> = replicas
        .iter()
        .filter(|r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.reason.is_some() && !s.ready)
        })
        .collect();
    let first = failing.first()?;
    let status = first.status.clone().unwrap_or_default();
    Some(Condition {
        type_: "ReplicaFailure".into(),
        status: "True".into(),
        reason: status.reason,
        message: Some(format!(
            "{} of {} replicas failing; {}: {}",
            failing.len(),
            replicas.len(),
            first.name_any(),
            status.message.unwrap_or_default()
        )),
        last_transition_time: None,
    })
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

async fn delete_replica(api: &Api<Replica>, name: &str) -> Result<(), Error> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a Replica without waiting for its agent (whose host is lost).
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
mod tests {
    use super::*;

    #[test]
    fn revision_names_follow_the_template() {
        let t = berth_crds::Template {
            image: Some("base:latest".into()),
            ..Default::default()
        };
        let a = revision_name("hello", &t);
        assert!(
            a.starts_with("hello-") && a.len() == "hello-".len() + 10,
            "{a}"
        );
        assert_eq!(a, revision_name("hello", &t.clone()));
        let other = berth_crds::Template {
            args: vec!["x".into()],
            ..t
        };
        assert_ne!(a, revision_name("hello", &other));
    }

    #[test]
    fn slots_come_from_names() {
        assert_eq!(slot_of("hello-ab12cd34ef-3", "hello-ab12cd34ef"), Some(3));
        assert_eq!(slot_of("hello-ab12cd34ef-x", "hello-ab12cd34ef"), None);
        assert_eq!(slot_of("other-1", "hello-ab12cd34ef"), None);
    }
}
