//! What the App reconciler writes, computed without the API server: the planner's view of
//! an App's Replicas, the AppRevision and Replica objects it creates, the App's status, the
//! finalizer patches, and what an App being deleted still needs. Pure: no clock (the
//! caller passes `now`), no API calls; `reconcile` gathers the inputs and sends the writes.

use std::collections::BTreeMap;

use berth_crds::{
    APP_LABEL, App, AppRevision, AppRevisionSpec, AppStatus, REVISION_LABEL, Replica, ReplicaPhase,
    ReplicaSpec, app::Condition,
};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::plan;

/// Held on an App until its Replicas (and their containers) are gone.
pub const APP_FINALIZER: &str = "berth.dev/replicas";

/// The AppRevision name for a template: the App's name and a hash of the template.
pub fn revision_name(app: &str, template: &berth_crds::Template) -> String {
    let hash = Sha256::digest(serde_json::to_vec(template).expect("templates serialize"));
    let hex: String = hash.iter().take(5).map(|b| format!("{b:02x}")).collect();
    format!("{app}-{hex}")
}

/// The slot of a Replica named `<revision>-<slot>`.
pub fn slot_of(replica: &str, revision: &str) -> Option<usize> {
    replica
        .strip_prefix(revision)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// The planner's view of one Replica.
pub fn replica_view(r: &Replica) -> plan::Replica {
    plan::Replica {
        name: r.name_any(),
        node: r.spec.node_name.clone(),
        revision: r.spec.revision.clone(),
        created: slot_of(&r.name_any(), &r.spec.revision).map_or(0, |s| s as i64),
        ready: r
            .status
            .as_ref()
            .is_some_and(|s| s.ready && s.phase == ReplicaPhase::Running),
        deleting: r.meta().deletion_timestamp.is_some(),
    }
}

/// How many Replicas (of every App) each node holds.
pub fn load<'a>(all: impl IntoIterator<Item = &'a Replica>) -> BTreeMap<String, usize> {
    let mut load = BTreeMap::new();
    for r in all {
        *load.entry(r.spec.node_name.clone()).or_default() += 1;
    }
    load
}

/// The label selector of an App's AppRevisions and Replicas.
pub fn app_selector(app: &str) -> String {
    format!("{APP_LABEL}={app}")
}

/// The number a new AppRevision gets: one past the highest of the App's others.
pub fn next_revision_number(existing: &[AppRevision]) -> i64 {
    existing.iter().map(|r| r.spec.revision).max().unwrap_or(0) + 1
}

/// The AppRevision of the App's current template.
pub fn new_revision(app: &App, name: &str, number: i64) -> AppRevision {
    let mut rev = AppRevision::new(
        name,
        AppRevisionSpec {
            app: app.name_any(),
            revision: number,
            template: app.spec.template.clone(),
        },
    );
    rev.metadata.labels = Some(BTreeMap::from([(APP_LABEL.to_string(), app.name_any())]));
    rev.metadata.owner_references = app.controller_owner_ref(&()).map(|o| vec![o]);
    rev
}

/// Names each Replica the plan creates (one per node in `create`, in order):
/// `<revision>-<slot>`, taking the lowest slots that no Replica in `views` has.
pub fn replica_names(
    revision: &str,
    views: &[plan::Replica],
    create: &[String],
) -> Vec<(String, String)> {
    let mut used: Vec<usize> = views
        .iter()
        .filter_map(|r| slot_of(&r.name, revision))
        .collect();
    create
        .iter()
        .map(|node| {
            let slot = (0..).find(|s| !used.contains(s)).expect("a free slot");
            used.push(slot);
            (format!("{revision}-{slot}"), node.clone())
        })
        .collect()
}

/// A new Replica of the App's current template, bound to `node`.
pub fn new_replica(app: &App, revision: &str, name: &str, node: &str) -> Replica {
    let mut replica = Replica::new(
        name,
        ReplicaSpec {
            app: app.name_any(),
            revision: revision.to_string(),
            node_name: node.to_string(),
            template: app.spec.template.clone(),
        },
    );
    replica.metadata.labels = Some(BTreeMap::from([
        (APP_LABEL.to_string(), app.name_any()),
        (REVISION_LABEL.to_string(), revision.to_string()),
    ]));
    replica.metadata.owner_references = app.controller_owner_ref(&()).map(|o| vec![o]);
    replica
}

/// The AppRevisions to delete: all but the current one and the newest `limit` others.
pub fn old_revisions(mut all: Vec<AppRevision>, current: &str, limit: i32) -> Vec<String> {
    all.retain(|r| r.name_any() != current);
    all.sort_by_key(|r| std::cmp::Reverse(r.spec.revision));
    all.iter()
        .skip(limit.max(0) as usize)
        .map(|r| r.name_any())
        .collect()
}

/// The App's status after this step. A condition keeps its last transition time while its
/// status stays the same; a new or changed one gets `now`.
pub fn status(
    app: &App,
    revision: &str,
    views: &[plan::Replica],
    replicas: &[&Replica],
    step: &plan::Plan,
    now: Timestamp,
) -> AppStatus {
    let counts = plan::counts(revision, views);
    let desired = app.spec.replicas;
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
    let old = app.status.clone().unwrap_or_default();
    for c in &mut conditions {
        let previous = old.conditions.iter().find(|o| o.type_ == c.type_);
        c.last_transition_time = match previous {
            Some(p) if p.status == c.status => p.last_transition_time.clone(),
            _ => Some(now.to_string()),
        };
    }
    AppStatus {
        observed_generation: app.metadata.generation,
        replicas: counts.replicas,
        ready_replicas: counts.ready,
        updated_replicas: counts.updated,
        available_replicas: counts.available,
        current_revision: Some(revision.to_string()),
        conditions,
    }
}

/// A Replica that cannot run (its image missing, its container failing) surfaces on the
/// App, with the reason its agent gave.
fn replica_failure(replicas: &[&Replica]) -> Option<Condition> {
    let failing: Vec<&Replica> = replicas
        .iter()
        .copied()
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

/// What an App being deleted does to one of its remaining Replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Teardown {
    /// Delete it; its agent removes the container, then the Replica's finalizer.
    Delete(String),
    /// Its host is lost: drop its finalizers and delete it without waiting for an agent.
    Abandon(String),
}

/// The next steps for the Replicas an App being deleted still has, in their order.
/// Replicas already being deleted on live hosts are left to their agents.
pub fn teardown(remaining: &[Replica], lost: &[String]) -> Vec<Teardown> {
    remaining
        .iter()
        .filter_map(|r| {
            if lost.contains(&r.spec.node_name) {
                Some(Teardown::Abandon(r.name_any()))
            } else if r.meta().deletion_timestamp.is_none() {
                Some(Teardown::Delete(r.name_any()))
            } else {
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_crds::{AppSpec, ReplicaStatus, Template};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn app(finalizers: &[&str]) -> App {
        let mut app = App::new(
            "hello",
            AppSpec {
                replicas: 2,
                template: Template {
                    image: Some("base:latest".into()),
                    ..Default::default()
                },
                revision_history_limit: 10,
                placement: Default::default(),
            },
        );
        app.metadata.namespace = Some("default".into());
        app.metadata.uid = Some("uid-1".into());
        app.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        app
    }

    fn replica(name: &str, node: &str) -> Replica {
        let a = app(&[]);
        new_replica(&a, "hello-0011223344", name, node)
    }

    #[test]
    fn revision_names_follow_the_template() {
        let t = Template {
            image: Some("base:latest".into()),
            ..Default::default()
        };
        let a = revision_name("hello", &t);
        assert!(
            a.starts_with("hello-") && a.len() == "hello-".len() + 10,
            "{a}"
        );
        assert_eq!(a, revision_name("hello", &t.clone()));
        let other = Template {
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

    #[test]
    fn new_replicas_take_the_lowest_free_slots() {
        let view = |name: &str| plan::Replica {
            name: name.into(),
            node: "a".into(),
            revision: "hello-r".into(),
            created: 0,
            ready: true,
            deleting: false,
        };
        let views = [view("hello-r-0"), view("hello-r-2"), view("hello-old-1")];
        let names = replica_names("hello-r", &views, &["a".into(), "b".into(), "c".into()]);
        assert_eq!(
            names,
            [
                ("hello-r-1".to_string(), "a".to_string()),
                ("hello-r-3".to_string(), "b".to_string()),
                ("hello-r-4".to_string(), "c".to_string()),
            ]
        );
    }

    #[test]
    fn replica_views_read_readiness_slot_and_deletion() {
        let mut r = replica("hello-0011223344-4", "a");
        assert_eq!(
            replica_view(&r),
            plan::Replica {
                name: "hello-0011223344-4".into(),
                node: "a".into(),
                revision: "hello-0011223344".into(),
                created: 4,
                ready: false,
                deleting: false,
            }
        );
        r.status = Some(ReplicaStatus {
            phase: ReplicaPhase::Running,
            ready: true,
            ..Default::default()
        });
        r.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        let v = replica_view(&r);
        assert!(v.ready && v.deleting);
        // Ready but not Running is not ready.
        r.status.as_mut().unwrap().phase = ReplicaPhase::Pending;
        assert!(!replica_view(&r).ready);
    }

    #[test]
    fn old_revisions_keep_the_current_and_the_newest_others() {
        let a = app(&[]);
        let revs: Vec<AppRevision> = (1..=5)
            .map(|n| new_revision(&a, &format!("hello-{n}"), n))
            .collect();
        assert_eq!(
            old_revisions(revs.clone(), "hello-5", 2),
            ["hello-2", "hello-1"]
        );
        // The current one is kept even when it is not the newest.
        assert_eq!(
            old_revisions(revs.clone(), "hello-1", 1),
            ["hello-4", "hello-3", "hello-2"]
        );
        assert!(old_revisions(revs.clone(), "hello-5", 10).is_empty());
        assert_eq!(old_revisions(revs, "hello-5", -1).len(), 4);
        assert_eq!(next_revision_number(&[]), 1);
    }

    #[test]
    fn status_keeps_transition_times_of_unchanged_conditions() {
        let mut a = app(&[]);
        a.metadata.generation = Some(3);
        let earlier = "2020-01-01T00:00:00Z".to_string();
        a.status = Some(AppStatus {
            conditions: vec![
                Condition {
                    type_: "Available".into(),
                    status: "False".into(),
                    last_transition_time: Some(earlier.clone()),
                    ..Default::default()
                },
                Condition {
                    type_: "Scheduled".into(),
                    status: "False".into(),
                    last_transition_time: Some(earlier.clone()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        let mut failing = replica("hello-0011223344-0", "a");
        failing.status = Some(ReplicaStatus {
            reason: Some("ImagePullFailed".into()),
            message: Some("no such image".into()),
            ..Default::default()
        });
        let views = [replica_view(&failing)];
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let s = status(
            &a,
            "hello-0011223344",
            &views,
            &[&failing],
            &plan::Plan::default(),
            now,
        );
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(
            (s.replicas, s.updated_replicas, s.ready_replicas),
            (1, 1, 0)
        );
        let summary: Vec<(&str, &str, Option<&str>, Option<&str>)> = s
            .conditions
            .iter()
            .map(|c| {
                (
                    c.type_.as_str(),
                    c.status.as_str(),
                    c.reason.as_deref(),
                    c.last_transition_time.as_deref(),
                )
            })
            .collect();
        let now = now.to_string();
        assert_eq!(
            summary,
            [
                (
                    "Available",
                    "False",
                    Some("MinimumReplicasUnavailable"),
                    Some(earlier.as_str())
                ),
                (
                    "Scheduled",
                    "True",
                    Some("AllScheduled"),
                    Some(now.as_str())
                ),
                (
                    "ReplicaFailure",
                    "True",
                    Some("ImagePullFailed"),
                    Some(now.as_str())
                ),
            ]
        );
        assert_eq!(
            s.conditions[2].message.as_deref(),
            Some("1 of 1 replicas failing; hello-0011223344-0: no such image")
        );
    }

    #[test]
    fn teardown_abandons_on_lost_hosts_and_leaves_deleting_ones() {
        let mut going = replica("hello-0011223344-1", "a");
        going.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        let mut stuck = replica("hello-0011223344-2", "gone");
        stuck.metadata.deletion_timestamp = going.metadata.deletion_timestamp.clone();
        let remaining = [
            replica("hello-0011223344-0", "a"),
            going,
            stuck,
            replica("hello-0011223344-3", "gone"),
        ];
        assert_eq!(
            teardown(&remaining, &["gone".to_string()]),
            [
                Teardown::Delete("hello-0011223344-0".into()),
                Teardown::Abandon("hello-0011223344-2".into()),
                Teardown::Abandon("hello-0011223344-3".into()),
            ]
        );
    }
}
