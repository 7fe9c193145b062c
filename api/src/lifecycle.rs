//! How the store turns a request's object into the object it stores: system
//! metadata on create, what an update or an apply keeps from the stored
//! object, and when `metadata.generation` moves. Pure functions; the clock
//! and the random parts are arguments.

use serde_json::{Map, Value};

use crate::kind::Kind;
use crate::meta;

/// Metadata fields only the system writes; a request's values are ignored.
const SYSTEM_META: &[&str] = &["uid", "creationTimestamp", "generation"];

/// A Kubernetes `Time`: RFC 3339 at whole seconds, UTC.
pub fn format_time(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Fill in what the system owns for a new object. `suffix` completes a
/// `metadata.generateName` when no name was given.
pub fn prepare_create(mut obj: Value, uid: &str, now: &str, suffix: &str) -> Value {
    if meta::name(&obj).is_none() {
        if let Some(base) = meta::meta_str(&obj, "generateName").map(str::to_string) {
            meta::set_meta(&mut obj, "name", Value::String(format!("{base}{suffix}")));
        }
    }
    meta::set_meta(&mut obj, "uid", Value::String(uid.to_string()));
    meta::set_meta(
        &mut obj,
        "creationTimestamp",
        Value::String(now.to_string()),
    );
    meta::set_meta(&mut obj, "generation", Value::from(1));
    strip_revision(&mut obj);
    obj
}

/// An update replaces the object but keeps the system's metadata; the
/// generation moves when the spec changed.
pub fn prepare_update(mut new: Value, current: &Value) -> Value {
    for field in SYSTEM_META {
        let kept = current
            .get("metadata")
            .and_then(|m| m.get(*field))
            .cloned()
            .unwrap_or(Value::Null);
        if !kept.is_null() {
            meta::set_meta(&mut new, field, kept);
        }
    }
    if new.get("spec") != current.get("spec") {
        let generation = current
            .get("metadata")
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        meta::set_meta(&mut new, "generation", Value::from(generation + 1));
    }
    strip_revision(&mut new);
    new
}

/// Whether two stored forms are the same object state (ignoring the
/// revision, which the store fills in on read).
pub fn same_state(a: &Value, b: &Value) -> bool {
    let mut a = a.clone();
    let mut b = b.clone();
    strip_revision(&mut a);
    strip_revision(&mut b);
    a == b
}

/// The stored form never carries `resourceVersion`: it is the object's
/// modification revision, filled in on read.
pub fn strip_revision(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
}

/// An empty object of a kind, for tests and for building objects in code.
pub fn empty(kind: Kind, namespace: Option<&str>, name: &str) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(name.into()));
    if let (true, Some(ns)) = (kind.namespaced(), namespace) {
        metadata.insert("namespace".into(), Value::String(ns.into()));
    }
    let mut root = Map::new();
    root.insert(
        "apiVersion".into(),
        Value::String(kind.api_version().into()),
    );
    root.insert("kind".into(), Value::String(kind.as_str().into()));
    root.insert("metadata".into(), Value::Object(metadata));
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_sets_system_metadata_and_generates_names() {
        let o = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-", "resourceVersion": "9", "uid": "forged"}});
        let o = prepare_create(o, "u-1", "2026-01-01T00:00:00Z", "x7k2p");
        assert_eq!(meta::name(&o), Some("web-x7k2p"));
        assert_eq!(meta::uid(&o), Some("u-1"));
        assert_eq!(meta::resource_version(&o), None);
        assert_eq!(o["metadata"]["generation"], json!(1));
    }

    #[test]
    fn update_keeps_system_metadata_and_bumps_generation_on_spec_change() {
        let cur = json!({"metadata": {"name": "a", "uid": "u", "generation": 3,
            "creationTimestamp": "t"}, "spec": {"replicas": 1}});
        let same = prepare_update(
            json!({"metadata": {"name": "a", "uid": "x"}, "spec": {"replicas": 1}}),
            &cur,
        );
        assert_eq!(same["metadata"]["uid"], json!("u"));
        assert_eq!(same["metadata"]["generation"], json!(3));
        let changed = prepare_update(
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 2}}),
            &cur,
        );
        assert_eq!(changed["metadata"]["generation"], json!(4));
        assert_eq!(changed["metadata"]["creationTimestamp"], json!("t"));
    }
}
