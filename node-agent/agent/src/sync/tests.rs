//! The sync against a scripted API server (`berth_kube::mock`) and a fake engine: each
//! test lists the exact requests one pass sends and the answers it gets, and checks the
//! engine calls it made.

use std::sync::Mutex;
use std::time::Duration;

use berth_crds::{CONTAINER_FINALIZER, ReplicaPhase, ReplicaSpec, ReplicaStatus, Template};
use berth_engine::create::CreateOptions;
use berth_kube::mock::{self, Exchange, JSON_PATCH, finish, scenario, within};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::convert::UID_LABEL;

const REPLICAS: &str = "/apis/berth.dev/v1alpha1/namespaces/prod/replicas";
const APPLY: &str = "application/apply-patch+yaml";
const HOST_IP: &str = "10.0.0.1";

/// An engine that keeps containers in memory and records what it was asked.
#[derive(Default)]
struct Fake {
    containers: Mutex<Vec<Observed>>,
    calls: Mutex<Vec<String>>,
    /// Containers whose removal fails.
    stuck: Vec<String>,
}

impl Fake {
    fn with(containers: Vec<Observed>) -> Self {
        Fake {
            containers: Mutex::new(containers),
            ..Default::default()
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

impl Engine for Fake {
    fn containers(&self) -> Result<Vec<Observed>, engine::Error> {
        Ok(self.containers.lock().unwrap().clone())
    }

    fn run(&self, opts: CreateOptions) -> Result<Observed, engine::Error> {
        let name = opts.name.clone().unwrap();
        self.record(format!("run {name} {}", opts.image));
        let c = running(&format!("id-{name}"), &opts.labels[UID_LABEL]);
        self.containers.lock().unwrap().push(c.clone());
        Ok(c)
    }

    fn restart(&self, id: &str) -> Result<Observed, engine::Error> {
        self.record(format!("restart {id}"));
        let all = self.containers.lock().unwrap();
        Ok(all.iter().find(|c| c.id == id).unwrap().clone())
    }

    fn remove(&self, id: &str) -> Result<(), engine::Error> {
        self.record(format!("remove {id}"));
        if self.stuck.iter().any(|s| s == id) {
            return Err(engine::Error::Failed(format!("container {id} is busy")));
        }
        self.containers.lock().unwrap().retain(|c| c.id != id);
        Ok(())
    }
}

fn running(id: &str, uid: &str) -> Observed {
    Observed {
        id: id.into(),
        name: format!("prod.{id}"),
        replica_uid: uid.into(),
        stopped: false,
        status: ReplicaStatus {
            phase: ReplicaPhase::Running,
            ready: true,
            host_ip: Some(HOST_IP.into()),
            container_id: Some(id.into()),
            ..Default::default()
        },
    }
}

fn replica(name: &str, finalizers: &[&str]) -> Replica {
    let mut r = Replica::new(
        name,
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
    r.metadata.uid = Some(format!("uid-{name}"));
    r.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
    r
}

fn deleting(mut r: Replica) -> Replica {
    r.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1).unwrap()));
    r
}

fn body(r: &Replica) -> Value {
    serde_json::to_value(r).unwrap()
}

fn add_finalizer(name: &str) -> Exchange {
    Exchange::patch(
        &format!("{REPLICAS}/{name}?"),
        JSON_PATCH,
        json!([
            {"op": "test", "path": "/metadata/uid", "value": format!("uid-{name}")},
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [CONTAINER_FINALIZER]},
        ]),
    )
}

fn remove_finalizer(name: &str) -> Exchange {
    Exchange::patch(
        &format!("{REPLICAS}/{name}?"),
        JSON_PATCH,
        json!([
            {"op": "test", "path": "/metadata/uid", "value": format!("uid-{name}")},
            {"op": "test", "path": "/metadata/finalizers/0", "value": CONTAINER_FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ]),
    )
}

/// The status write of a Replica whose container `id` runs.
fn status_running(name: &str, id: &str) -> Exchange {
    Exchange::patch(
        &format!("{REPLICAS}/{name}/status?&force=true&fieldManager=berth-agent"),
        APPLY,
        json!({
            "apiVersion": "berth.dev/v1alpha1",
            "kind": "Replica",
            "status": {
                "phase": "Running",
                "ready": true,
                "hostIP": HOST_IP,
                "containerID": id,
                "restarts": 0,
            },
        }),
    )
}

/// Runs one pass at `now` over `replicas` against `script`; the errors it reports.
async fn pass_at(
    engine: &Arc<Fake>,
    replicas: &[Replica],
    script: Vec<Exchange>,
    now: Instant,
) -> Vec<Error> {
    let (client, handle) = mock::client();
    let driver = scenario(handle, script);
    let mut syncer = Syncer::new(client, engine.clone(), HOST_IP.into());
    let refs: Vec<&Replica> = replicas.iter().collect();
    let errors = within(syncer.pass(&refs, now)).await;
    drop(syncer);
    finish(driver).await;
    errors
}

async fn pass(engine: &Arc<Fake>, replicas: &[Replica], script: Vec<Exchange>) -> Vec<Error> {
    pass_at(engine, replicas, script, Instant::now()).await
}

fn api_code(e: &Error) -> Option<(&str, &'static str, u16)> {
    match e {
        Error::Api {
            replica,
            step,
            source: kube::Error::Api(s),
        } => Some((replica.as_str(), *step, s.code)),
        _ => None,
    }
}

#[tokio::test]
async fn a_new_replica_gets_the_finalizer_a_container_and_a_running_status() {
    let r = replica("hello-0", &[]);
    let mut finalized = r.clone();
    finalized.metadata.finalizers = Some(vec![CONTAINER_FINALIZER.into()]);
    let engine = Arc::new(Fake::default());
    let errors = pass(
        &engine,
        &[r],
        vec![
            add_finalizer("hello-0").reply(200, body(&finalized)),
            status_running("hello-0", "id-prod.hello-0").reply(200, body(&finalized)),
        ],
    )
    .await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(engine.calls(), ["run prod.hello-0 base:latest"]);
}

#[tokio::test]
async fn a_running_replica_whose_status_is_current_sends_nothing() {
    let mut r = replica("hello-0", &[CONTAINER_FINALIZER]);
    let c = running("id-a", "uid-hello-0");
    r.status = Some(c.status.clone());
    let engine = Arc::new(Fake::with(vec![c]));
    let errors = pass(&engine, &[r], vec![]).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(engine.calls().is_empty());
}

#[tokio::test]
async fn a_conflict_on_the_status_write_is_reported_and_the_next_pass_writes_it_again() {
    let r = replica("hello-0", &[CONTAINER_FINALIZER]);
    let engine = Arc::new(Fake::with(vec![running("id-a", "uid-hello-0")]));
    let errors = pass(
        &engine,
        std::slice::from_ref(&r),
        vec![status_running("hello-0", "id-a").fail(409, "Conflict")],
    )
    .await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        api_code(&errors[0]),
        Some(("prod/hello-0", "writing its status", 409))
    );
    let errors = pass(
        &engine,
        std::slice::from_ref(&r),
        vec![status_running("hello-0", "id-a").reply(200, body(&r))],
    )
    .await;
    assert!(errors.is_empty(), "{errors:?}");
    assert!(engine.calls().is_empty(), "the container was left alone");
}

#[tokio::test]
async fn a_deleted_replica_loses_its_container_then_its_finalizer() {
    let r = deleting(replica("hello-0", &[CONTAINER_FINALIZER]));
    let engine = Arc::new(Fake::with(vec![running("id-a", "uid-hello-0")]));
    let mut released = r.clone();
    released.metadata.finalizers = None;
    let errors = pass(
        &engine,
        &[r],
        vec![remove_finalizer("hello-0").reply(200, body(&released))],
    )
    .await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(engine.calls(), ["remove id-a"]);
    assert!(engine.containers().unwrap().is_empty());
}

#[tokio::test]
async fn a_replica_gone_while_its_finalizer_is_released_is_done() {
    let r = deleting(replica("hello-0", &[CONTAINER_FINALIZER]));
    let engine = Arc::new(Fake::with(vec![running("id-a", "uid-hello-0")]));
    let errors = pass(
        &engine,
        &[r],
        vec![remove_finalizer("hello-0").fail(404, "NotFound")],
    )
    .await;
    assert!(errors.is_empty(), "a 404 is success here: {errors:?}");
    assert_eq!(engine.calls(), ["remove id-a"]);
}

#[tokio::test]
async fn a_container_that_cannot_be_removed_keeps_the_finalizer() {
    let r = deleting(replica("hello-0", &[CONTAINER_FINALIZER]));
    let engine = Arc::new(Fake {
        stuck: vec!["id-a".into()],
        ..Fake::with(vec![running("id-a", "uid-hello-0")])
    });
    // No request: the finalizer stays until the container is gone.
    let errors = pass(&engine, &[r], vec![]).await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(&errors[0], Error::Engine { replica, step: "removing its container", .. } if replica == "prod/hello-0"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn a_failing_replica_does_not_block_the_others() {
    // `a`'s finalizer patch is refused (another writer changed the list); `b` is stuck
    // in deletion; `c` is new and must still be run and reported.
    let a = replica("a", &[]);
    let b = deleting(replica("b", &[CONTAINER_FINALIZER]));
    let c = replica("c", &[]);
    let engine = Arc::new(Fake {
        stuck: vec!["id-b".into()],
        ..Fake::with(vec![running("id-b", "uid-b")])
    });
    let errors = pass(
        &engine,
        &[a, b, c.clone()],
        vec![
            add_finalizer("a").fail(422, "Invalid"),
            add_finalizer("c").reply(200, body(&c)),
            status_running("c", "id-prod.c").reply(200, body(&c)),
        ],
    )
    .await;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(
        api_code(&errors[0]),
        Some(("prod/a", "adding the finalizer", 422))
    );
    assert!(
        matches!(&errors[1], Error::Engine { replica, .. } if replica == "prod/b"),
        "{errors:?}"
    );
    assert_eq!(
        engine.calls(),
        ["remove id-b", "run prod.c base:latest"],
        "no container for a Replica without its finalizer"
    );
}

#[tokio::test]
async fn a_container_whose_replica_is_gone_is_removed() {
    let kept = replica("hello-1", &[CONTAINER_FINALIZER]);
    let mut kept_status = kept.clone();
    let c = running("id-1", "uid-hello-1");
    kept_status.status = Some(c.status.clone());
    let engine = Arc::new(Fake::with(vec![running("id-0", "uid-hello-0"), c]));
    let errors = pass(&engine, &[kept_status], vec![]).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(engine.calls(), ["remove id-0"]);
}

#[tokio::test]
async fn a_stopped_container_is_restarted_with_backoff_between_passes() {
    let mut stopped = running("id-a", "uid-hello-0");
    stopped.stopped = true;
    stopped.status.phase = ReplicaPhase::Failed;
    stopped.status.ready = false;
    let mut r = replica("hello-0", &[CONTAINER_FINALIZER]);
    r.status = Some(stopped.status.clone());
    let engine = Arc::new(Fake::with(vec![stopped]));
    let (client, handle) = mock::client();
    let driver = scenario(handle, vec![]);
    let mut syncer = Syncer::new(client, engine.clone(), HOST_IP.into());
    let t0 = Instant::now();
    for after in [0, 500, 999, 1000, 2000, 3000] {
        let errors = within(syncer.pass(&[&r], t0 + Duration::from_millis(after))).await;
        assert!(errors.is_empty(), "{errors:?}");
    }
    drop(syncer);
    finish(driver).await;
    // At 0, then 1 s later, then 2 s after that.
    assert_eq!(
        engine.calls(),
        ["restart id-a", "restart id-a", "restart id-a"]
    );
}
