//! Reading and writing `metadata` of an object held in its JSON form, and
//! reading any field of it by JSON pointer.
//!
//! These helpers never panic: a missing or mistyped field reads as absent.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::kind::{Kind, ObjectRef};

fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.as_object()
}

fn metadata_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let root = obj.as_object_mut()?;
    let m = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    m.as_object_mut()
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    metadata(obj)?.get(field)?.as_str()
}

/// The string at a JSON `pointer` of any object ("" when absent or not a
/// string).
pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at a JSON `pointer` of any object.
pub fn int_at(obj: &Value, pointer: &str) -> Option<i64> {
    obj.pointer(pointer).and_then(Value::as_i64)
}

/// Set a field of `metadata` (creating `metadata` if needed).
pub fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if let Some(m) = metadata_mut(obj) {
        m.insert(field.to_string(), value);
    }
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name")
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace")
}

pub fn uid(obj: &Value) -> Option<&str> {
    meta_str(obj, "uid")
}

/// `metadata.resourceVersion` parsed as the store revision it is.
pub fn resource_version(obj: &Value) -> Option<u64> {
    meta_str(obj, "resourceVersion")?.parse().ok()
}

pub fn set_resource_version(obj: &mut Value, revision: u64) {
    set_meta(obj, "resourceVersion", Value::String(revision.to_string()));
}

/// `metadata.labels` (empty when absent).
pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(obj, "labels")
}

pub fn annotations(obj: &Value) -> BTreeMap<String, String> {
    string_map(obj, "annotations")
}

fn string_map(obj: &Value, field: &str) -> BTreeMap<String, String> {
    metadata(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The kind named by `apiVersion` and `kind`, if kubus serves it.
pub fn kind_of(obj: &Value) -> Option<Kind> {
    let api_version = obj.get("apiVersion")?.as_str()?;
    let kind = obj.get("kind")?.as_str()?;
    Kind::from_type(api_version, kind).ok()
}

/// The reference naming this object, if it names a served kind and a name.
pub fn object_ref(obj: &Value) -> Option<ObjectRef> {
    Some(ObjectRef::new(kind_of(obj)?, namespace(obj), name(obj)?))
}

/// The uid of the controlling owner (`ownerReferences[*].controller: true`).
pub fn controller_uid(obj: &Value) -> Option<&str> {
    metadata(obj)?
        .get("ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))?
        .get("uid")?
        .as_str()
}

/// Short name of a JSON value's type, for messages.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_and_writes() {
        let mut o = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"app": "x"},
              "ownerReferences": [{"uid": "u1", "controller": true}]}});
        assert_eq!(name(&o), Some("a"));
        assert_eq!(labels(&o).get("app").map(String::as_str), Some("x"));
        assert_eq!(controller_uid(&o), Some("u1"));
        assert_eq!(resource_version(&o), None);
        set_resource_version(&mut o, 42);
        assert_eq!(resource_version(&o), Some(42));
        assert_eq!(object_ref(&o).map(|r| r.key()), Some("/pods/ns/a".into()));
        let mut broken = json!({"metadata": 3});
        set_meta(&mut broken, "name", json!("b"));
        assert_eq!(name(&broken), Some("b"));
    }
}
