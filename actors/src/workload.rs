//! What the workload controllers share: a pod (or Job) made from an
//! owner's template, a status written only when it changed, and
//! conditions with Kubernetes' transition-time rule.

use kubus_api::meta;
use serde_json::{json, Map, Value};

use crate::watching::controller_ref;

/// A new object of `kind` (`Pod` or `Job`) from `template` (a
/// `{metadata, spec}` pair), owned by `owner`: named `name`, or by
/// `generateName` `<prefix>` when `name` is None.
pub fn from_template(
    owner: &Value,
    template: Option<&Value>,
    api_version: &str,
    kind: &str,
    name: Option<&str>,
    prefix: &str,
) -> Value {
    let template = template.cloned().unwrap_or(Value::Null);
    let mut metadata = template
        .get("metadata")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if let Some(m) = metadata.as_object_mut() {
        m.remove("name");
        m.remove("generateName");
        match name {
            Some(n) => m.insert("name".into(), json!(n)),
            None => m.insert("generateName".into(), json!(prefix)),
        };
        m.insert(
            "namespace".into(),
            json!(meta::namespace(owner).unwrap_or("default")),
        );
        m.insert("ownerReferences".into(), json!([controller_ref(owner)]));
    }
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A pod from the template at `/spec/template` of `owner`.
pub fn pod_from(owner: &Value, name: Option<&str>) -> Value {
    let prefix = format!("{}-", meta::name(owner).unwrap_or("pod"));
    from_template(
        owner,
        owner.pointer("/spec/template"),
        "v1",
        "Pod",
        name,
        &prefix,
    )
}

/// `object` with `status`, when that differs from what it has.
pub fn with_status(object: &Value, status: Value) -> Option<Value> {
    if object.get("status") == Some(&status) {
        return None;
    }
    let mut updated = object.clone();
    if let Some(root) = updated.as_object_mut() {
        root.insert("status".into(), status);
    }
    Some(updated)
}

/// Set condition `type_` in `conditions`: its transition time moves only
/// when its status does; reason and message are always the latest. Only
/// the fields every condition type has (metav1.Condition's, which has no
/// probe or update time) are written.
pub fn set_condition(
    conditions: &mut Vec<Value>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &str,
) {
    let status = if status { "True" } else { "False" };
    let mut entry = Map::new();
    entry.insert("type".into(), json!(type_));
    entry.insert("status".into(), json!(status));
    entry.insert("reason".into(), json!(reason));
    entry.insert("message".into(), json!(message));
    match conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
    {
        Some(existing) => {
            let same = existing.get("status").and_then(Value::as_str) == Some(status);
            let since = existing
                .get("lastTransitionTime")
                .cloned()
                .filter(|_| same)
                .unwrap_or_else(|| json!(now));
            entry.insert("lastTransitionTime".into(), since);
            if same
                && existing.get("reason") == entry.get("reason")
                && existing.get("message") == entry.get("message")
            {
                return;
            }
            *existing = Value::Object(entry);
        }
        None => {
            entry.insert("lastTransitionTime".into(), json!(now));
            conditions.push(Value::Object(entry));
        }
    }
}

/// Whether condition `type_` of `object` is `True`.
pub fn condition_true(object: &Value, type_: &str) -> bool {
    kubus_api::pod::condition(object, type_).and_then(|c| c.get("status")?.as_str()) == Some("True")
}

/// The conditions `object` reports, to change and write back.
pub fn conditions(object: &Value) -> Vec<Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// A time as Kubernetes writes it (seconds, UTC).
pub fn time(t: jiff::Timestamp) -> String {
    kubus_api::lifecycle::format_time(t)
}

/// A timestamp field of `object`, if present and readable.
pub fn time_at(object: &Value, pointer: &str) -> Option<jiff::Timestamp> {
    object.pointer(pointer)?.as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_their_transition_time() {
        let mut c = Vec::new();
        set_condition(&mut c, "Complete", false, "A", "m", "t1");
        set_condition(&mut c, "Complete", false, "B", "m", "t2");
        assert_eq!(c[0]["lastTransitionTime"], "t1");
        assert_eq!(c[0]["reason"], "B");
        set_condition(&mut c, "Complete", true, "B", "m", "t3");
        assert_eq!(c[0]["lastTransitionTime"], "t3");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn pods_carry_template_and_owner() {
        let owner = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "ns", "uid": "u"},
            "spec": {"template": {"metadata": {"labels": {"a": "b"}, "name": "ignored"},
                "spec": {"containers": []}}}});
        let pod = pod_from(&owner, None);
        assert_eq!(pod["metadata"]["generateName"], "pi-");
        assert_eq!(pod["metadata"]["namespace"], "ns");
        assert_eq!(pod["metadata"]["labels"]["a"], "b");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "u");
        assert!(pod["metadata"].get("name").is_none());
        let named = pod_from(&owner, Some("pi-0"));
        assert_eq!(named["metadata"]["name"], "pi-0");
    }
}
