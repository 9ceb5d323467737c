//! The reconciler against a scripted API server (see `berth_kube::mock`): each test lists the
//! exact requests one reconcile sends and the answers it gets.

use std::sync::Arc;
use std::time::Duration;

use berth_crds::{AppSpec, ReplicaPhase, ReplicaStatus, Template};
use berth_kube::mock::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::*;
use crate::fixtures::host;
use berth_kube::mock::{
    Exchange, JSON_PATCH, MERGE_PATCH, deleted, finish, list, scenario, store, within,
};

const APPS: &str = "/apis/berth.dev/v1alpha1/namespaces/prod/apps";
const REVISIONS: &str = "/apis/berth.dev/v1alpha1/namespaces/prod/apprevisions";
const REPLICAS: &str = "/apis/berth.dev/v1alpha1/namespaces/prod/replicas";
const SELECTOR: &str = "labelSelector=berth.dev%2Fapp%3Dhello";
const RESYNC: Duration = Duration::from_secs(10);

fn template() -> Template {
    Template {
        image: Some("base:latest".into()),
        ..Default::default()
    }
}

fn revision() -> String {
    revision_name("hello", &template())
}

fn app(replicas: i32, finalizers: &[&str]) -> App {
    let mut app = App::new(
        "hello",
        AppSpec {
            replicas,
            template: template(),
            revision_history_limit: 10,
            placement: Default::default(),
        },
    );
    app.metadata.namespace = Some("prod".into());
    app.metadata.uid = Some("app-uid".into());
    app.metadata.resource_version = Some("7".into());
    app.metadata.generation = Some(2);
    app.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
    app
}

fn owner() -> Value {
    json!([{
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "App",
        "name": "hello",
        "uid": "app-uid",
        "controller": true,
    }])
}

/// The Replica JSON the controller should create: e2e relies on the name and labels.
fn replica_json(slot: usize, node: &str) -> Value {
    let rev = revision();
    json!({
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "Replica",
        "metadata": {
            "name": format!("{rev}-{slot}"),
            "labels": {"berth.dev/app": "hello", "berth.dev/revision": rev},
            "ownerReferences": owner(),
        },
        "spec": {
            "app": "hello",
            "revision": rev,
            "nodeName": node,
            "template": {"image": "base:latest"},
        },
    })
}

fn revision_json(name: &str, number: i64) -> Value {
    json!({
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "AppRevision",
        "metadata": {
            "name": name,
            "labels": {"berth.dev/app": "hello"},
            "ownerReferences": owner(),
        },
        "spec": {"app": "hello", "revision": number, "template": {"image": "base:latest"}},
    })
}

/// A Replica in the cache: this App's, of the current revision, Running and ready.
fn cached_replica(slot: usize, node: &str) -> Replica {
    let mut r: Replica = serde_json::from_value(replica_json(slot, node)).unwrap();
    r.metadata.namespace = Some("prod".into());
    r.status = Some(ReplicaStatus {
        phase: ReplicaPhase::Running,
        ready: true,
        ..Default::default()
    });
    r
}

fn context(client: Client, replicas: Vec<Replica>, hosts: &[(&str, bool)]) -> Arc<Context> {
    let (nodes, leases) = hosts.iter().map(|(n, live)| host(n, *live)).unzip();
    Arc::new(Context {
        client,
        replicas: store(replicas),
        nodes: store(nodes),
        leases: store(leases),
        grace: Duration::from_secs(30),
        resync: RESYNC,
    })
}

/// Runs one reconcile of `app` against the script and returns its result once the
/// script has been checked to the end.
async fn reconcile_against(
    app: App,
    replicas: Vec<Replica>,
    hosts: &[(&str, bool)],
    script: Vec<Exchange>,
) -> Result<Action, Error> {
    let (client, handle) = berth_kube::mock::client();
    let driver = scenario(handle, script);
    let ctx = context(client, replicas, hosts);
    let result = within(reconcile(Arc::new(app), ctx)).await;
    finish(driver).await;
    result
}

/// Echoes a request body back as the created or patched object.
fn echo(mut object: Value) -> Value {
    object["metadata"]["namespace"] = json!("prod");
    object["metadata"]["uid"] = json!("new-uid");
    object["metadata"]["resourceVersion"] = json!("8");
    object
}

fn app_json(app: &App) -> Value {
    serde_json::to_value(app).unwrap()
}

fn get_revision_exists() -> Exchange {
    Exchange::get(&format!("{REVISIONS}/{}", revision()))
        .reply(200, echo(revision_json(&revision(), 3)))
}

/// The status patch: checks every field, and that new transition times are after `since`.
fn status_patch(since: Timestamp, want: Value) -> Exchange {
    Exchange::checked(
        Method::PATCH,
        &format!("{APPS}/hello/status?"),
        MERGE_PATCH,
        move |mut got| {
            for c in got["status"]["conditions"].as_array_mut().unwrap() {
                let at: Timestamp = c["lastTransitionTime"].as_str().unwrap().parse().unwrap();
                assert!(
                    at >= since.checked_sub(Duration::from_secs(1)).unwrap(),
                    "{at}"
                );
                assert!(at <= Timestamp::now(), "{at}");
                c.as_object_mut().unwrap().remove("lastTransitionTime");
            }
            assert_eq!(got, want, "status patch");
        },
    )
    // The reconciler does not read the answer; it only has to be an App.
    .reply(200, app_json(&app(1, &[APP_FINALIZER])))
}

fn conditions(available: bool, of: &str) -> Value {
    json!([
        {
            "type": "Available",
            "status": if available { "True" } else { "False" },
            "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
            "message": of,
        },
        {
            "type": "Scheduled",
            "status": "True",
            "reason": "AllScheduled",
            "message": "every replica is bound to a host",
        },
    ])
}

#[tokio::test]
async fn a_new_app_gets_a_finalizer_a_revision_replicas_and_a_status() {
    let since = Timestamp::now();
    let rev = revision();
    let app = app(2, &[]);
    let mut finalized = app.clone();
    finalized.metadata.finalizers = Some(vec![APP_FINALIZER.into()]);
    let old = echo(revision_json("hello-0000000000", 3));
    let result = reconcile_against(
        app,
        vec![],
        &[("a", true), ("b", true)],
        vec![
            Exchange::patch(
                &format!("{APPS}/hello?"),
                JSON_PATCH,
                json!([
                    {"op": "test", "path": "/metadata/uid", "value": "app-uid"},
                    {"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": [APP_FINALIZER]},
                ]),
            )
            .reply(200, app_json(&finalized)),
            Exchange::get(&format!("{REVISIONS}/{rev}")).fail(404, "NotFound"),
            Exchange::get(&format!("{REVISIONS}?&{SELECTOR}")).reply(
                200,
                list("berth.dev/v1alpha1", "AppRevisionList", vec![old.clone()]),
            ),
            // Numbered one past the App's newest revision.
            Exchange::post(&format!("{REVISIONS}?"), revision_json(&rev, 4))
                .reply(201, echo(revision_json(&rev, 4))),
            Exchange::post(&format!("{REPLICAS}?"), replica_json(0, "a"))
                .reply(201, echo(replica_json(0, "a"))),
            Exchange::post(&format!("{REPLICAS}?"), replica_json(1, "b"))
                .reply(201, echo(replica_json(1, "b"))),
            Exchange::get(&format!("{REVISIONS}?&{SELECTOR}")).reply(
                200,
                list(
                    "berth.dev/v1alpha1",
                    "AppRevisionList",
                    vec![old, echo(revision_json(&rev, 4))],
                ),
            ),
            status_patch(
                since,
                json!({"status": {
                    "observedGeneration": 2,
                    "replicas": 0,
                    "readyReplicas": 0,
                    "updatedReplicas": 0,
                    "availableReplicas": 0,
                    "currentRevision": rev,
                    "conditions": conditions(false, "0 of 2 replicas available"),
                }}),
            ),
        ],
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
}

#[tokio::test]
async fn scale_down_deletes_the_newest_replicas_and_a_gone_one_counts_as_deleted() {
    let since = Timestamp::now();
    let rev = revision();
    let mut app = app(1, &[APP_FINALIZER]);
    app.spec.revision_history_limit = 1;
    let cached = vec![
        cached_replica(0, "a"),
        cached_replica(1, "b"),
        cached_replica(2, "a"),
    ];
    let result = reconcile_against(
        app,
        cached,
        &[("a", true), ("b", true)],
        vec![
            get_revision_exists(),
            // Already gone (another pass, or a person): not an error, the next goes on.
            Exchange::delete(&format!("{REPLICAS}/{rev}-2?"), json!({})).fail(404, "NotFound"),
            Exchange::delete(&format!("{REPLICAS}/{rev}-1?"), json!({})).reply(200, deleted()),
            Exchange::get(&format!("{REVISIONS}?&{SELECTOR}")).reply(
                200,
                list(
                    "berth.dev/v1alpha1",
                    "AppRevisionList",
                    vec![
                        echo(revision_json("hello-0000000001", 1)),
                        echo(revision_json(&rev, 3)),
                        echo(revision_json("hello-0000000002", 2)),
                    ],
                ),
            ),
            // revisionHistoryLimit 1: the current one and revision 2 stay.
            Exchange::delete(&format!("{REVISIONS}/hello-0000000001?"), json!({}))
                .reply(200, deleted()),
            status_patch(
                since,
                json!({"status": {
                    "observedGeneration": 2,
                    "replicas": 3,
                    "readyReplicas": 3,
                    "updatedReplicas": 3,
                    "availableReplicas": 3,
                    "currentRevision": rev,
                    "conditions": conditions(true, "3 of 1 replicas available"),
                }}),
            ),
        ],
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
}

#[tokio::test]
async fn creating_a_replica_that_exists_is_ignored() {
    let since = Timestamp::now();
    let rev = revision();
    // The cache lags: slot 0 was made by an earlier pass but is not seen yet.
    let result = reconcile_against(
        app(2, &[APP_FINALIZER]),
        vec![],
        &[("a", true), ("b", true)],
        vec![
            get_revision_exists(),
            Exchange::post(&format!("{REPLICAS}?"), replica_json(0, "a"))
                .fail(409, "AlreadyExists"),
            Exchange::post(&format!("{REPLICAS}?"), replica_json(1, "b"))
                .reply(201, echo(replica_json(1, "b"))),
            Exchange::get(&format!("{REVISIONS}?&{SELECTOR}")).reply(
                200,
                list(
                    "berth.dev/v1alpha1",
                    "AppRevisionList",
                    vec![echo(revision_json(&rev, 3))],
                ),
            ),
            status_patch(
                since,
                json!({"status": {
                    "observedGeneration": 2,
                    "replicas": 0,
                    "readyReplicas": 0,
                    "updatedReplicas": 0,
                    "availableReplicas": 0,
                    "currentRevision": rev,
                    "conditions": conditions(false, "0 of 2 replicas available"),
                }}),
            ),
        ],
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
}

#[tokio::test]
async fn a_failed_create_ends_the_reconcile_with_the_error() {
    // A 409 that is not AlreadyExists, and a server error: neither is ignored, and
    // nothing after the failed create is sent (the retry plans again).
    for (code, reason) in [(409, "Conflict"), (500, "InternalError")] {
        let result = reconcile_against(
            app(2, &[APP_FINALIZER]),
            vec![],
            &[("a", true), ("b", true)],
            vec![
                get_revision_exists(),
                Exchange::post(&format!("{REPLICAS}?"), replica_json(0, "a")).fail(code, reason),
            ],
        )
        .await;
        match result {
            Err(Error::Kube(kube::Error::Api(status))) => {
                assert_eq!((status.code, status.reason.as_str()), (code, reason))
            }
            other => panic!("expected the API error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_deleted_app_keeps_its_finalizer_while_replicas_remain() {
    let rev = revision();
    let mut app = app(2, &["other", APP_FINALIZER]);
    app.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let mut going = cached_replica(1, "a");
    going.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let remaining = vec![
        echo(replica_json(0, "a")),
        serde_json::to_value(&going).unwrap(),
        echo(replica_json(2, "gone")),
    ];
    let result = reconcile_against(
        app,
        vec![],
        &[("a", true), ("gone", false)],
        vec![
            Exchange::get(&format!("{REPLICAS}?&{SELECTOR}"))
                .reply(200, list("berth.dev/v1alpha1", "ReplicaList", remaining)),
            Exchange::delete(&format!("{REPLICAS}/{rev}-0?"), json!({})).reply(200, deleted()),
            // Slot 1 is being deleted by its agent already; slot 2's host is lost, so its
            // finalizers go and it is deleted without an agent.
            Exchange::patch(
                &format!("{REPLICAS}/{rev}-2?"),
                MERGE_PATCH,
                json!({"metadata": {"finalizers": null}}),
            )
            .reply(200, echo(replica_json(2, "gone"))),
            Exchange::delete(&format!("{REPLICAS}/{rev}-2?"), json!({})).fail(404, "NotFound"),
        ],
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(1)));
}

#[tokio::test]
async fn a_deleted_app_loses_only_its_own_finalizer_once_its_replicas_are_gone() {
    let mut app = app(2, &["other", APP_FINALIZER]);
    app.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let mut released = app.clone();
    released.metadata.finalizers = Some(vec!["other".into()]);
    let result = reconcile_against(
        app,
        vec![],
        &[("a", true)],
        vec![
            Exchange::get(&format!("{REPLICAS}?&{SELECTOR}"))
                .reply(200, list("berth.dev/v1alpha1", "ReplicaList", vec![])),
            Exchange::patch(
                &format!("{APPS}/hello?"),
                JSON_PATCH,
                json!([
                    {"op": "test", "path": "/metadata/uid", "value": "app-uid"},
                    {"op": "test", "path": "/metadata/finalizers/1", "value": APP_FINALIZER},
                    {"op": "remove", "path": "/metadata/finalizers/1"},
                ]),
            )
            .reply(200, app_json(&released)),
        ],
    )
    .await;
    assert_eq!(result.unwrap(), Action::await_change());
}

#[tokio::test]
async fn a_finalizer_changed_meanwhile_fails_the_patch_and_the_reconcile() {
    // The `test` op fails on the server (someone else changed the list): nothing is
    // overwritten, and the reconcile stops before creating anything.
    let result = reconcile_against(
        app(1, &["other"]),
        vec![],
        &[("a", true)],
        vec![
            Exchange::patch(
                &format!("{APPS}/hello?"),
                JSON_PATCH,
                json!([
                    {"op": "test", "path": "/metadata/uid", "value": "app-uid"},
                    {"op": "test", "path": "/metadata/finalizers", "value": ["other"]},
                    {"op": "add", "path": "/metadata/finalizers/-", "value": APP_FINALIZER},
                ]),
            )
            .fail(422, "Invalid"),
        ],
    )
    .await;
    assert!(
        matches!(&result, Err(Error::Kube(kube::Error::Api(s))) if s.code == 422),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_app_without_a_namespace_is_refused_without_a_request() {
    let mut app = app(1, &[APP_FINALIZER]);
    app.metadata.namespace = None;
    let result = reconcile_against(app, vec![], &[], vec![]).await;
    assert!(matches!(result, Err(Error::NoNamespace(n)) if n == "hello"));
}

#[test]
fn fixture_names_follow_the_scheme() {
    // `<app>-<10 hex digits>`: what e2e and the name checks above rely on.
    let rev = revision();
    let hash = rev.strip_prefix("hello-").unwrap();
    assert!(
        hash.len() == 10 && hash.chars().all(|c| c.is_ascii_hexdigit()),
        "{rev}"
    );
}

#[tokio::test]
async fn at_steady_state_nothing_is_written() {
    let rev = revision();
    let mut app = app(2, &[APP_FINALIZER]);
    let mut conditions: Vec<berth_crds::app::Condition> =
        serde_json::from_value(conditions(true, "2 of 2 replicas available")).unwrap();
    for c in &mut conditions {
        c.last_transition_time = Some("2020-01-01T00:00:00Z".into());
    }
    app.status = Some(berth_crds::AppStatus {
        observed_generation: Some(2),
        replicas: 2,
        ready_replicas: 2,
        updated_replicas: 2,
        available_replicas: 2,
        current_revision: Some(rev.clone()),
        conditions,
    });
    let result = reconcile_against(
        app,
        vec![cached_replica(0, "a"), cached_replica(1, "b")],
        &[("a", true), ("b", true)],
        vec![
            get_revision_exists(),
            Exchange::get(&format!("{REVISIONS}?&{SELECTOR}")).reply(
                200,
                list(
                    "berth.dev/v1alpha1",
                    "AppRevisionList",
                    vec![echo(revision_json(&rev, 3))],
                ),
            ),
        ],
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
}

#[tokio::test]
async fn a_new_template_replaces_the_old_revisions_replicas() {
    let since = Timestamp::now();
    let rev = revision();
    let mut old = cached_replica(0, "a");
    old.metadata.name = Some("hello-0000000000-0".into());
    old.spec.revision = "hello-0000000000".into();
    let result = reconcile_against(
        app(1, &[APP_FINALIZER]),
        vec![old],
        &[("a", true), ("b", true)],
        vec![
            get_revision_exists(),
            // The new one goes where this App has none; then the old one goes.
            Exchange::post(&format!("{REPLICAS}?"), replica_json(0, "b"))
                .reply(201, echo(replica_json(0, "b"))),
            Exchange::delete(&format!("{REPLICAS}/hello-0000000000-0?"), json!({}))
                .reply(200, deleted()),
            Exchange::get(&format!("{REVISIONS}?&{SELECTOR}")).reply(
                200,
                list(
                    "berth.dev/v1alpha1",
                    "AppRevisionList",
                    vec![echo(revision_json(&rev, 3))],
                ),
            ),
            status_patch(
                since,
                json!({"status": {
                    "observedGeneration": 2,
                    "replicas": 1,
                    "readyReplicas": 1,
                    "updatedReplicas": 0,
                    "availableReplicas": 1,
                    "currentRevision": rev,
                    "conditions": conditions(true, "1 of 1 replicas available"),
                }}),
            ),
        ],
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
}

#[tokio::test]
async fn a_replica_on_a_lost_host_is_abandoned_and_made_again_in_a_new_slot() {
    let since = Timestamp::now();
    let rev = revision();
    let result = reconcile_against(
        app(1, &[APP_FINALIZER]),
        vec![cached_replica(0, "gone")],
        &[("a", true), ("gone", false)],
        vec![
            get_revision_exists(),
            // Slot 0's name is still taken until the abandoned Replica is gone.
            Exchange::post(&format!("{REPLICAS}?"), replica_json(1, "a"))
                .reply(201, echo(replica_json(1, "a"))),
            Exchange::patch(
                &format!("{REPLICAS}/{rev}-0?"),
                MERGE_PATCH,
                json!({"metadata": {"finalizers": null}}),
            )
            .reply(200, echo(replica_json(0, "gone"))),
            Exchange::delete(&format!("{REPLICAS}/{rev}-0?"), json!({})).reply(200, deleted()),
            Exchange::get(&format!("{REVISIONS}?&{SELECTOR}")).reply(
                200,
                list(
                    "berth.dev/v1alpha1",
                    "AppRevisionList",
                    vec![echo(revision_json(&rev, 3))],
                ),
            ),
            status_patch(
                since,
                json!({"status": {
                    "observedGeneration": 2,
                    "replicas": 1,
                    "readyReplicas": 1,
                    "updatedReplicas": 1,
                    "availableReplicas": 1,
                    "currentRevision": rev,
                    "conditions": conditions(true, "1 of 1 replicas available"),
                }}),
            ),
        ],
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(RESYNC));
}
