//! An object's finalizer list, changed by JSON patches (RFC 6902) whose `test` ops make
//! the API server refuse the write (422) if the list is no longer what we read, or the
//! object is another one of the same name (its uid differs). A finalizer another writer
//! added or removed meanwhile is never overwritten; the caller fails and retries on the
//! fresh object. These are the patches kube's `runtime::finalizer` helper sends (plus
//! the uid test), without the helper's control flow, which ends a reconcile after adding
//! the finalizer and removes it whenever cleanup returns Ok.

use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

/// The JSON patch adding `finalizer`, or None if `obj` has it.
pub fn add<K: Resource>(obj: &K, finalizer: &str) -> Option<Value> {
    let current = obj.finalizers();
    if current.iter().any(|f| f == finalizer) {
        return None;
    }
    let mut ops = uid_test(obj);
    if current.is_empty() {
        // A missing list tests equal to null.
        ops.push(json!({"op": "test", "path": "/metadata/finalizers", "value": null}));
        ops.push(json!({"op": "add", "path": "/metadata/finalizers", "value": [finalizer]}));
    } else {
        ops.push(json!({"op": "test", "path": "/metadata/finalizers", "value": current}));
        ops.push(json!({"op": "add", "path": "/metadata/finalizers/-", "value": finalizer}));
    }
    Some(Value::Array(ops))
}

/// The JSON patch removing `finalizer`, or None if `obj` does not have it.
pub fn remove<K: Resource>(obj: &K, finalizer: &str) -> Option<Value> {
    let index = obj.finalizers().iter().position(|f| f == finalizer)?;
    let path = format!("/metadata/finalizers/{index}");
    let mut ops = uid_test(obj);
    ops.push(json!({"op": "test", "path": path, "value": finalizer}));
    ops.push(json!({"op": "remove", "path": path}));
    Some(Value::Array(ops))
}

fn uid_test<K: Resource>(obj: &K) -> Vec<Value> {
    obj.uid()
        .map(|uid| json!({"op": "test", "path": "/metadata/uid", "value": uid}))
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    const MINE: &str = "berth.dev/mine";

    fn object(finalizers: &[&str]) -> ConfigMap {
        let mut o = ConfigMap::default();
        o.metadata.name = Some("hello".into());
        o.metadata.uid = Some("uid-1".into());
        o.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        o
    }

    #[test]
    fn patches_test_what_they_change() {
        assert_eq!(
            add(&object(&[]), MINE),
            Some(json!([
                {"op": "test", "path": "/metadata/uid", "value": "uid-1"},
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": [MINE]},
            ]))
        );
        assert_eq!(
            add(&object(&["other"]), MINE),
            Some(json!([
                {"op": "test", "path": "/metadata/uid", "value": "uid-1"},
                {"op": "test", "path": "/metadata/finalizers", "value": ["other"]},
                {"op": "add", "path": "/metadata/finalizers/-", "value": MINE},
            ]))
        );
        assert_eq!(add(&object(&[MINE]), MINE), None);
        assert_eq!(
            remove(&object(&["other", MINE]), MINE),
            Some(json!([
                {"op": "test", "path": "/metadata/uid", "value": "uid-1"},
                {"op": "test", "path": "/metadata/finalizers/1", "value": MINE},
                {"op": "remove", "path": "/metadata/finalizers/1"},
            ]))
        );
        assert_eq!(remove(&object(&["other"]), MINE), None);
    }

    #[test]
    fn an_object_without_a_uid_is_patched_without_the_uid_test() {
        let mut o = object(&[]);
        o.metadata.uid = None;
        assert_eq!(
            add(&o, MINE),
            Some(json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": [MINE]},
            ]))
        );
    }
}
