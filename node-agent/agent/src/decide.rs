//! What the sync does for one Replica, decided from its spec and metadata, its
//! container's state and the clock, without calling anything: `sync` carries it out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_crds::{CONTAINER_FINALIZER, Replica, ReplicaStatus};
use berth_engine::create::CreateOptions;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

use crate::convert;
use crate::engine::Observed;

/// When each Replica's container may be started again: 1 s after the first failure,
/// doubling up to 5 minutes, as the kubelet backs off a crashing container.
#[derive(Debug, Default)]
pub struct Backoff {
    next: HashMap<String, (Instant, Duration)>,
}

const FIRST_DELAY: Duration = Duration::from_millis(500);
const MAX_DELAY: Duration = Duration::from_secs(300);

impl Backoff {
    /// Whether `uid` may be started at `now`; if so, the attempt after waits longer.
    pub fn ready(&mut self, uid: &str, now: Instant) -> bool {
        let (at, delay) = self.next.get(uid).copied().unwrap_or((now, FIRST_DELAY));
        if now < at {
            return false;
        }
        let delay = (delay * 2).min(MAX_DELAY);
        self.next.insert(uid.to_string(), (now + delay, delay));
        true
    }

    /// Forgets the Replicas `keep` says are gone.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.next.retain(|uid, _| keep(uid));
    }
}

/// What to do for one Replica.
#[derive(Debug)]
pub enum Action {
    /// It is being deleted: remove its container (if any), then send the patch
    /// releasing its finalizer (if it holds it).
    Release {
        container: Option<String>,
        finalizer: Option<Value>,
    },
    /// It should run: add the finalizer first (if the patch is there), then see to the
    /// container and write the status that results.
    Run {
        finalizer: Option<Value>,
        container: Container,
    },
}

/// What to do about a running Replica's container.
#[derive(Debug)]
pub enum Container {
    /// Nothing: the Replica's status is this.
    Report(ReplicaStatus),
    /// Start this stopped container again.
    Restart(String),
    /// Make and start a container with these options.
    Create(Box<CreateOptions>),
}

/// The action for `r`, whose container (found by the Replica's uid) is `existing`.
/// Starting a container, again or anew, waits for the back-off.
pub fn decide(
    r: &Replica,
    existing: Option<&Observed>,
    host_ip: &str,
    backoff: &mut Backoff,
    now: Instant,
) -> Action {
    if r.meta().deletion_timestamp.is_some() {
        return Action::Release {
            container: existing.map(|c| c.id.clone()),
            finalizer: berth_kube::finalizer::remove(r, CONTAINER_FINALIZER),
        };
    }
    let (ns, name, uid) = convert::identity(r);
    let container = match existing {
        Some(c) if c.stopped && backoff.ready(&uid, now) => Container::Restart(c.id.clone()),
        Some(c) => Container::Report(c.status.clone()),
        // Making the container again (a pull or a create failed) backs off too.
        None if !backoff.ready(&uid, now) => {
            Container::Report(r.status.clone().unwrap_or_default())
        }
        None => match convert::create_options(&ns, &name, &uid, &r.spec.template) {
            Ok(opts) => Container::Create(Box::new(opts)),
            Err(e) => {
                Container::Report(convert::waiting("InvalidTemplate", e.to_string(), host_ip))
            }
        },
    };
    Action::Run {
        finalizer: berth_kube::finalizer::add(r, CONTAINER_FINALIZER),
        container,
    }
}

/// The server-side apply body writing `status`, or None if the Replica has it already.
pub fn status_patch(r: &Replica, status: &ReplicaStatus) -> Option<Value> {
    (r.status.as_ref() != Some(status))
        .then(|| json!({ "apiVersion": "berth.dev/v1alpha1", "kind": "Replica", "status": status }))
}

/// The containers whose Replica is gone (or was replaced by a new one of the same name).
pub fn orphans<'a>(replicas: &[&Replica], containers: &'a [Observed]) -> Vec<&'a Observed> {
    containers
        .iter()
        .filter(|c| {
            !replicas
                .iter()
                .any(|r| r.uid().as_deref() == Some(c.replica_uid.as_str()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_crds::{ReplicaPhase, ReplicaSpec, Template};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn replica(uid: &str, finalizers: &[&str]) -> Replica {
        let mut r = Replica::new(
            "hello-0",
            ReplicaSpec {
                app: "hello".into(),
                revision: "hello-abc".into(),
                node_name: "h1".into(),
                template: Template {
                    image: Some("base:latest".into()),
                    ..Default::default()
                },
            },
        );
        r.metadata.namespace = Some("prod".into());
        r.metadata.uid = Some(uid.into());
        r.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        r
    }

    fn container(uid: &str, stopped: bool) -> Observed {
        Observed {
            id: format!("id-{uid}"),
            name: "prod.hello-0".into(),
            replica_uid: uid.into(),
            stopped,
            status: ReplicaStatus {
                phase: if stopped {
                    ReplicaPhase::Failed
                } else {
                    ReplicaPhase::Running
                },
                ..Default::default()
            },
        }
    }

    /// What `decide` says about the container of a Replica that should run, and
    /// whether it adds the finalizer.
    fn run(action: Action) -> (bool, Container) {
        match action {
            Action::Run {
                finalizer,
                container,
            } => (finalizer.is_some(), container),
            other => panic!("expected Run, got {other:?}"),
        }
    }

    fn reported(c: Container) -> ReplicaStatus {
        match c {
            Container::Report(status) => status,
            other => panic!("expected a report, got {other:?}"),
        }
    }

    #[test]
    fn backoff_doubles_from_one_second_to_five_minutes() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert!(b.ready("u", t0), "the first start waits for nothing");
        assert!(!b.ready("u", t0 + Duration::from_millis(999)));
        assert!(b.ready("u", t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        assert!(!b.ready("u", t1 + Duration::from_millis(1999)));
        assert!(b.ready("u", t1 + Duration::from_secs(2)));
        assert!(b.ready("other", t0), "each Replica backs off alone");
        let mut t = t1 + Duration::from_secs(2);
        for _ in 0..20 {
            t += MAX_DELAY;
            assert!(b.ready("u", t), "the delay never exceeds five minutes");
        }
        b.retain(|uid| uid != "u");
        assert!(b.ready("u", t), "a forgotten Replica starts afresh");
    }

    #[test]
    fn a_new_replica_gets_the_finalizer_and_a_container() {
        let r = replica("u1", &[]);
        let Action::Run {
            finalizer,
            container: Container::Create(opts),
        } = decide(
            &r,
            None,
            "10.0.0.1",
            &mut Backoff::default(),
            Instant::now(),
        )
        else {
            panic!("expected a create");
        };
        assert_eq!(
            finalizer,
            berth_kube::finalizer::add(&r, CONTAINER_FINALIZER)
        );
        assert!(finalizer.is_some());
        assert_eq!(opts.name.as_deref(), Some("prod.hello-0"));
        assert_eq!(
            opts.labels.get(convert::UID_LABEL).map(String::as_str),
            Some("u1")
        );
    }

    #[test]
    fn a_running_container_is_reported_and_the_finalizer_is_not_added_twice() {
        let r = replica("u1", &[CONTAINER_FINALIZER]);
        let c = container("u1", false);
        let (finalizer, action) = run(decide(
            &r,
            Some(&c),
            "ip",
            &mut Backoff::default(),
            Instant::now(),
        ));
        assert!(!finalizer);
        assert_eq!(reported(action), c.status);
    }

    #[test]
    fn a_stopped_container_is_restarted_only_when_the_backoff_allows() {
        let r = replica("u1", &[CONTAINER_FINALIZER]);
        let c = container("u1", true);
        let mut b = Backoff::default();
        let t0 = Instant::now();
        let mut at = |t| run(decide(&r, Some(&c), "ip", &mut b, t)).1;
        assert!(matches!(at(t0), Container::Restart(id) if id == "id-u1"));
        assert_eq!(reported(at(t0 + Duration::from_millis(500))), c.status);
        assert!(matches!(at(t0 + Duration::from_secs(1)), Container::Restart(id) if id == "id-u1"));
    }

    #[test]
    fn a_replica_that_could_not_be_made_keeps_its_status_while_backing_off() {
        let mut r = replica("u1", &[CONTAINER_FINALIZER]);
        let failed = convert::waiting("ImageNotFound", "no such image".into(), "ip");
        r.status = Some(failed.clone());
        let mut b = Backoff::default();
        let t0 = Instant::now();
        assert!(matches!(
            run(decide(&r, None, "ip", &mut b, t0)).1,
            Container::Create(_)
        ));
        let (finalizer, action) = run(decide(
            &r,
            None,
            "ip",
            &mut b,
            t0 + Duration::from_millis(10),
        ));
        assert!(!finalizer);
        assert_eq!(reported(action), failed);
    }

    #[test]
    fn an_invalid_template_is_reported_not_run() {
        let mut r = replica("u1", &[CONTAINER_FINALIZER]);
        r.spec.template.image = None;
        r.spec.template.build = Some(Default::default());
        let status = reported(
            run(decide(
                &r,
                None,
                "ip",
                &mut Backoff::default(),
                Instant::now(),
            ))
            .1,
        );
        assert_eq!(status.phase, ReplicaPhase::Pending);
        assert_eq!(status.reason.as_deref(), Some("InvalidTemplate"));
    }

    #[test]
    fn a_deleted_replica_releases_its_container_then_only_its_own_finalizer() {
        let mut r = replica("u1", &["other", CONTAINER_FINALIZER]);
        r.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
        let release = |r: &Replica, c: Option<&Observed>| match decide(
            r,
            c,
            "ip",
            &mut Backoff::default(),
            Instant::now(),
        ) {
            Action::Release {
                container,
                finalizer,
            } => (container, finalizer),
            other => panic!("expected Release, got {other:?}"),
        };
        let (container, finalizer) = release(&r, Some(&container("u1", false)));
        assert_eq!(container.as_deref(), Some("id-u1"));
        assert_eq!(
            finalizer,
            berth_kube::finalizer::remove(&r, CONTAINER_FINALIZER)
        );
        assert!(finalizer.is_some());
        r.metadata.finalizers = Some(vec!["other".into()]);
        assert_eq!(release(&r, None), (None, None));
    }

    #[test]
    fn status_is_written_only_when_it_changes() {
        let mut r = replica("u1", &[]);
        let running = container("u1", false).status;
        assert_eq!(
            status_patch(&r, &running),
            Some(json!({
                "apiVersion": "berth.dev/v1alpha1",
                "kind": "Replica",
                "status": serde_json::to_value(&running).unwrap(),
            }))
        );
        r.status = Some(running.clone());
        assert_eq!(status_patch(&r, &running), None);
    }

    #[test]
    fn containers_of_gone_or_replaced_replicas_are_orphans() {
        let kept = replica("u1", &[]);
        let containers = [container("u1", false), container("u0", false)];
        let orphans = orphans(&[&kept], &containers);
        assert_eq!(orphans, [&containers[1]]);
    }
}
