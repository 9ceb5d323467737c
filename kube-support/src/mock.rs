//! Tests against a scripted API server: a `kube::Client` over `tower_test`'s mock
//! service, and a driver task that checks each request the code sends against the next
//! expected exchange (verb, path and query, content type, body) and answers it. A request
//! out of order, one too many, or one that never comes fails the test.
//!
//! Behind the `mock` feature: the controller and the agent take it as a dev-dependency.

use std::time::Duration;

use http::{Request, Response};
use kube::Resource;
use kube::client::Body;
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_test::mock;

pub use http::Method;

pub type Handle = mock::Handle<Request<Body>, Response<Body>>;

/// A client whose requests arrive at the returned handle.
pub fn client() -> (kube::Client, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

pub const JSON: &str = "application/json";
pub const MERGE_PATCH: &str = "application/merge-patch+json";
pub const JSON_PATCH: &str = "application/json-patch+json";

type Check = Box<dyn FnOnce(Value) + Send>;

enum Expected {
    /// No body (or an empty one).
    Empty,
    Json(Value),
    /// A body checked by a function (for bodies with the time in them).
    Check(Check),
}

/// One request the code should send, and the answer it gets.
pub struct Exchange {
    method: Method,
    uri: String,
    content_type: Option<&'static str>,
    body: Expected,
    status: u16,
    response: Value,
}

impl Exchange {
    fn new(method: Method, uri: &str, content_type: Option<&'static str>, body: Expected) -> Self {
        Exchange {
            method,
            uri: uri.into(),
            content_type,
            body,
            status: 200,
            response: json!({}),
        }
    }

    pub fn get(uri: &str) -> Self {
        Self::new(Method::GET, uri, None, Expected::Empty)
    }

    pub fn post(uri: &str, body: Value) -> Self {
        Self::new(Method::POST, uri, Some(JSON), Expected::Json(body))
    }

    pub fn patch(uri: &str, content_type: &'static str, body: Value) -> Self {
        Self::new(Method::PATCH, uri, Some(content_type), Expected::Json(body))
    }

    /// A request whose JSON body `check` asserts on (for bodies with the time in them).
    pub fn checked(
        method: Method,
        uri: &str,
        content_type: &'static str,
        check: impl FnOnce(Value) + Send + 'static,
    ) -> Self {
        Self::new(
            method,
            uri,
            Some(content_type),
            Expected::Check(Box::new(check)),
        )
    }

    pub fn delete(uri: &str, body: Value) -> Self {
        Self::new(Method::DELETE, uri, Some(JSON), Expected::Json(body))
    }

    /// The answer: an HTTP status and a JSON body.
    pub fn reply(mut self, status: u16, body: Value) -> Self {
        self.status = status;
        self.response = body;
        self
    }

    /// An error answer, as the API server gives them: a `Status` with a reason.
    pub fn fail(self, code: u16, reason: &str) -> Self {
        self.reply(
            code,
            json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": format!("scripted {reason}"),
                "reason": reason,
                "code": code,
            }),
        )
    }
}

/// The body a successful delete gets.
pub fn deleted() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

/// A list response of `kind` (e.g. `AppRevisionList`).
pub fn list(api_version: &str, kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// Answers the exchanges in order, then checks that nothing more is sent before every
/// client clone is dropped. Await the handle with [`finish`].
pub fn scenario(mut handle: Handle, exchanges: Vec<Exchange>) -> JoinHandle<()> {
    tokio::spawn(async move {
        for (i, ex) in exchanges.into_iter().enumerate() {
            let Some((request, send)) = handle.next_request().await else {
                panic!(
                    "exchange {i}: no request came; expected {} {}",
                    ex.method, ex.uri
                );
            };
            let (parts, body) = request.into_parts();
            assert_eq!(
                (&parts.method, parts.uri.to_string()),
                (&ex.method, ex.uri.clone()),
                "exchange {i}: request line"
            );
            let content_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().expect("an ASCII content type"));
            let body = body.collect_bytes().await.expect("a request body");
            match ex.body {
                Expected::Empty => assert!(
                    body.is_empty(),
                    "exchange {i} ({} {}): unexpected body {}",
                    ex.method,
                    ex.uri,
                    String::from_utf8_lossy(&body)
                ),
                Expected::Json(want) => {
                    assert_eq!(content_type, ex.content_type, "exchange {i}: content type");
                    let got: Value = serde_json::from_slice(&body).expect("a JSON body");
                    assert_eq!(got, want, "exchange {i} ({} {}): body", ex.method, ex.uri);
                }
                Expected::Check(check) => {
                    assert_eq!(content_type, ex.content_type, "exchange {i}: content type");
                    check(serde_json::from_slice(&body).expect("a JSON body"));
                }
            }
            send.send_response(
                Response::builder()
                    .status(ex.status)
                    .header(http::header::CONTENT_TYPE, JSON)
                    .body(Body::from(serde_json::to_vec(&ex.response).unwrap()))
                    .unwrap(),
            );
        }
        if let Some((request, _)) = handle.next_request().await {
            panic!(
                "unexpected request after the script: {} {}",
                request.method(),
                request.uri()
            );
        }
    })
}

/// Waits for a scenario to end (every client clone must be dropped by now), failing the
/// test with the driver's own panic if it had one.
pub async fn finish(driver: JoinHandle<()>) {
    match tokio::time::timeout(Duration::from_secs(10), driver).await {
        Err(_) => panic!("the scenario did not end: is a client clone still alive?"),
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(other) => other.expect("the scenario task"),
    }
}

/// Runs the code under test, failing if it waits for an answer that never comes.
pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("the code under test hung")
}

/// A cache holding `objects`.
pub fn store<K>(objects: Vec<K>) -> reflector::Store<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    store
}
