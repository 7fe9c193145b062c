//! Patches and the client-side apply merge, on objects in their JSON form.
//!
//! - [`PatchType`] and [`apply_patch`]: the three `PATCH` bodies Kubernetes
//!   clients send, chosen by `Content-Type`:
//!   - [`merge_patch`]: RFC 7386 JSON Merge Patch
//!     (`application/merge-patch+json`);
//!   - RFC 6902 JSON Patch (`application/json-patch+json`), a list of
//!     operations, through the `json-patch` crate;
//!   - Kubernetes' strategic merge patch
//!     (`application/strategic-merge-patch+json`, what `kubectl patch` and
//!     client-side `kubectl apply` send): [`strategic`], with each field's
//!     strategy in the one table of [`schema`].
//! - [`three_way_merge`]: what `kubectl apply` (client side) computes from
//!   the configuration it applied last time, the new manifest and the live
//!   object, so that fields a user stops writing are removed while fields
//!   other writers (controllers, `kubectl scale`) own survive.
//! - [`LAST_APPLIED_ANNOTATION`], [`last_applied`], [`with_last_applied`]:
//!   where that last configuration is kept, exactly as kubectl keeps it, so
//!   objects move between kubectl and kubus without losing their history.
//!
//! In [`three_way_merge`] (kubus' own apply) lists are always replaced
//! wholesale: it uses plain JSON merge semantics for every kind, as kubectl
//! does for kinds without a patch schema (custom resources). A value
//! defaulted inside a list element is therefore dropped by such an apply
//! and filled in again by admission. A strategic merge patch from kubectl
//! merges the lists its schema merges (containers by `name`).
//!
//! Pure functions on [`serde_json::Value`]; like the rest of this crate, no
//! I/O. Recursion follows the value's depth, which parsing already bounds
//! (serde_json and the manifest parser both limit nesting).

pub mod schema;
pub mod strategic;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ApiError, FieldCause};
use crate::kind::{Kind, ObjectRef};
use crate::meta;

/// The annotation in which kubectl (and kubus) keep the configuration last
/// applied to an object, as compact JSON.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `Content-Type` of an RFC 7386 JSON merge patch.
pub const MERGE_PATCH_CONTENT_TYPE: &str = "application/merge-patch+json";
/// `Content-Type` of an RFC 6902 JSON patch.
pub const JSON_PATCH_CONTENT_TYPE: &str = "application/json-patch+json";
/// `Content-Type` of a Kubernetes strategic merge patch.
pub const STRATEGIC_MERGE_PATCH_CONTENT_TYPE: &str = "application/strategic-merge-patch+json";

/// Most operations one JSON patch may hold, as the Kubernetes API server
/// allows (`maxJSONPatchOperations`): each operation walks the object, so
/// the work of one request stays bounded.
pub const JSON_PATCH_OPERATIONS_MAX: usize = 10_000;

/// Which kind of patch a `PATCH` body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PatchType {
    /// RFC 7386 JSON merge patch: objects merge, `null` deletes, lists and
    /// scalars replace.
    #[default]
    Merge,
    /// RFC 6902 JSON patch: a list of `add`/`remove`/`replace`/`move`/
    /// `copy`/`test` operations.
    Json,
    /// Kubernetes' strategic merge patch: a merge patch whose lists merge
    /// by the field's strategy, with `$patch`-style directives.
    Strategic,
}

impl PatchType {
    /// The patch type a request's `Content-Type` names; parameters
    /// (`; charset=utf-8`) and case are ignored. `None` for anything else,
    /// including server-side apply's `application/apply-patch+yaml`, which
    /// is not a patch of the current object.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        [PatchType::Merge, PatchType::Json, PatchType::Strategic]
            .into_iter()
            .find(|t| t.content_type().eq_ignore_ascii_case(media))
    }

    /// The `Content-Type` a client sends this patch with.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => MERGE_PATCH_CONTENT_TYPE,
            PatchType::Json => JSON_PATCH_CONTENT_TYPE,
            PatchType::Strategic => STRATEGIC_MERGE_PATCH_CONTENT_TYPE,
        }
    }
}

/// `current`, an object of `kind`, with `patch` applied as `patch_type`
/// says. The result is not admitted: the caller runs admission on it as on
/// any update.
///
/// A patch that is malformed, or malformed for this object (a strategic
/// list element without its merge key, an unknown `$` directive), is
/// `BadRequest`; a JSON patch whose operation does not apply (a `test`
/// that fails, a path that does not exist) is `Invalid` with the
/// operation's path as the cause. Every error names the object.
///
/// ```
/// use kubus_api::patch::{apply_patch, PatchType};
/// use kubus_api::Kind;
/// use serde_json::json;
///
/// let live = json!({"kind": "Deployment", "metadata": {"name": "web"},
///     "spec": {"template": {"spec": {"containers": [
///         {"name": "web", "image": "nginx:1.25"},
///         {"name": "log", "image": "busybox"}]}}}});
/// let patch = json!({"spec": {"template": {"spec": {"containers": [
///     {"name": "web", "image": "nginx:1.27"}]}}}});
/// let got = apply_patch(Kind::Deployment, &live, PatchType::Strategic, &patch).unwrap();
/// let containers = &got["spec"]["template"]["spec"]["containers"];
/// assert_eq!(containers[0]["image"], "nginx:1.27");
/// assert_eq!(containers[1]["name"], "log"); // merged by name, not replaced
/// ```
pub fn apply_patch(
    kind: Kind,
    current: &Value,
    patch_type: PatchType,
    patch: &Value,
) -> Result<Value, ApiError> {
    let object = ObjectRef::new(
        kind,
        meta::namespace(current),
        meta::name(current).unwrap_or_default(),
    );
    let bad_request = |message: String| ApiError {
        object: Some(object.clone()),
        ..ApiError::bad_request(message)
    };
    match patch_type {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(bad_request(format!(
                    "merge patch of {object}: the patch must be a JSON object"
                )));
            }
            Ok(merge_patch(current, patch))
        }
        PatchType::Json => json_patch(&object, current, patch),
        PatchType::Strategic => strategic::strategic_merge_patch(kind, current, patch)
            .map_err(|e| bad_request(format!("strategic merge patch of {object}: {e}"))),
    }
}

/// Apply an RFC 6902 JSON patch to `current`.
fn json_patch(object: &ObjectRef, current: &Value, patch: &Value) -> Result<Value, ApiError> {
    let bad_request = |message: String| ApiError {
        object: Some(object.clone()),
        ..ApiError::bad_request(format!("json patch of {object}: {message}"))
    };
    let Value::Array(operations) = patch else {
        return Err(bad_request(
            "the patch must be a JSON list of operations".to_string(),
        ));
    };
    if operations.len() > JSON_PATCH_OPERATIONS_MAX {
        return Err(ApiError {
            object: Some(object.clone()),
            ..ApiError::too_large(format!(
                "json patch of {object}: {} operations; at most {JSON_PATCH_OPERATIONS_MAX} are allowed",
                operations.len()
            ))
        });
    }
    let mut parsed = Vec::with_capacity(operations.len());
    for (i, op) in operations.iter().enumerate() {
        let op = json_patch::PatchOperation::deserialize(op)
            .map_err(|e| bad_request(format!("operation {i}: {e}")))?;
        parsed.push(op);
    }
    let mut out = current.clone();
    match json_patch::patch(&mut out, &parsed) {
        Ok(()) => Ok(out),
        Err(e) => {
            let rule = match e.kind {
                json_patch::PatchErrorKind::TestFailed => {
                    "test failed: the value differs".to_string()
                }
                json_patch::PatchErrorKind::InvalidPointer => "the path does not exist".to_string(),
                json_patch::PatchErrorKind::InvalidFromPointer => {
                    "the \"from\" path does not exist".to_string()
                }
                json_patch::PatchErrorKind::CannotMoveInsideItself => {
                    "cannot move a value inside itself".to_string()
                }
                other => other.to_string(),
            };
            Err(ApiError::invalid(
                Some(object.clone()),
                vec![FieldCause::new(
                    e.path.to_string(),
                    format!("json patch operation {}: {rule}", e.operation),
                )],
            ))
        }
    }
}

/// Apply an RFC 7386 JSON merge patch: `null` deletes, objects merge
/// recursively, anything else replaces. A patch that is not an object
/// replaces the whole target.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

/// The object `kubectl apply` leaves behind when it applies `manifest` over
/// `live`, given the configuration it applied last time (`None` on the first
/// apply, or when the object was created some other way).
///
/// Starting from `live`, at every level of nested objects:
/// - a field present in `manifest` takes the manifest's value; when both the
///   manifest's and the live value are objects they are merged by these same
///   rules, so keys other writers set inside them survive; lists and scalars
///   replace the live value;
/// - a field set to `null` in `manifest` is removed (as in a merge patch);
/// - a field present in `last_applied` but absent from `manifest` at the same
///   path is removed — the whole field, even if other writers added keys
///   inside it since;
/// - every other live field (`status`, `spec.nodeName`, `metadata.uid`, a
///   label a controller added) is kept.
///
/// This is the result of kubectl's `CreateThreeWayJSONMergePatch` (deletions
/// from last-applied → manifest, changes from live → manifest) applied to
/// the live object. Applying the same manifest again changes nothing.
///
/// The caller stores the manifest's own configuration for next time by
/// merging [`with_last_applied`]`(manifest)`:
///
/// ```
/// use kubus_api::patch::{last_applied, three_way_merge, with_last_applied};
/// use serde_json::json;
///
/// let live = with_last_applied(&json!({
///     "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}}));
/// let manifest = json!({"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}});
/// let applied = three_way_merge(last_applied(&live).as_ref(), &with_last_applied(&manifest), &live);
/// assert_eq!(applied["data"], json!({"a": "1"}));
/// let recorded = last_applied(&applied);
/// assert_eq!(recorded.map(|c| c["data"].clone()), Some(json!({"a": "1"})));
/// ```
pub fn three_way_merge(last_applied: Option<&Value>, manifest: &Value, live: &Value) -> Value {
    let Value::Object(m) = manifest else {
        return manifest.clone();
    };
    let mut out = match live {
        Value::Object(l) => l.clone(),
        _ => Map::new(),
    };
    if let Some(Value::Object(last)) = last_applied {
        for k in last.keys() {
            if !m.contains_key(k) {
                out.remove(k);
            }
        }
    }
    for (k, v) in m {
        match v {
            Value::Null => {
                out.remove(k);
            }
            Value::Object(_) => {
                let last = last_applied.and_then(|l| l.get(k));
                let merged = three_way_merge(last, v, out.get(k).unwrap_or(&Value::Null));
                out.insert(k.clone(), merged);
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// The configuration last applied to `live`, from its
/// [`LAST_APPLIED_ANNOTATION`]. `None` when the annotation is absent, is not
/// valid JSON, or does not hold an object (it cannot describe one then, and
/// kubectl would refuse it): the next apply then behaves as a first apply.
pub fn last_applied(live: &Value) -> Option<Value> {
    let text = live
        .get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()?;
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
}

/// `manifest` with [`LAST_APPLIED_ANNOTATION`] set to the compact JSON of the
/// manifest without that annotation, as kubectl writes it: keys sorted, and
/// `metadata.annotations` present (`{}` when the manifest had none) in the
/// recorded configuration. A manifest whose `metadata` or
/// `metadata.annotations` is neither an object nor absent/null is returned
/// unchanged; admission refuses it anyway.
pub fn with_last_applied(manifest: &Value) -> Value {
    let mut out = manifest.clone();
    let Some(annotations) = annotations_mut(&mut out) else {
        return out;
    };
    annotations.remove(LAST_APPLIED_ANNOTATION);
    let recorded = out.to_string();
    if let Some(annotations) = annotations_mut(&mut out) {
        annotations.insert(LAST_APPLIED_ANNOTATION.into(), Value::String(recorded));
    }
    out
}

/// `metadata.annotations` of `obj` as a map, created (or turned from `null`
/// into `{}`) when missing; `None` when something in the way is not an
/// object.
fn annotations_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    fn child<'a>(parent: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Value> {
        let slot = parent
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        if slot.is_null() {
            *slot = Value::Object(Map::new());
        }
        slot.is_object().then_some(slot)
    }
    let metadata = child(obj.as_object_mut()?, "metadata")?;
    child(metadata.as_object_mut()?, "annotations")?.as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patch_types_from_content_types() {
        let table = [
            ("application/merge-patch+json", Some(PatchType::Merge)),
            ("application/json-patch+json", Some(PatchType::Json)),
            (
                "application/strategic-merge-patch+json",
                Some(PatchType::Strategic),
            ),
            (
                "application/strategic-merge-patch+json; charset=utf-8",
                Some(PatchType::Strategic),
            ),
            (
                " Application/JSON-Patch+JSON ;charset=UTF-8",
                Some(PatchType::Json),
            ),
            ("application/apply-patch+yaml", None),
            ("application/json", None),
            ("", None),
        ];
        for (content_type, want) in table {
            assert_eq!(
                PatchType::from_content_type(content_type),
                want,
                "{content_type:?}"
            );
        }
        for t in [PatchType::Merge, PatchType::Json, PatchType::Strategic] {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
        assert_eq!(PatchType::default(), PatchType::Merge);
        let names: Vec<Value> = [PatchType::Merge, PatchType::Json, PatchType::Strategic]
            .iter()
            .map(|t| serde_json::to_value(t).unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            vec![json!("merge"), json!("json"), json!("strategic")]
        );
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "a", "image": "i"}, {"name": "b", "image": "j"}]}}}})
    }

    #[test]
    fn apply_patch_by_type() {
        let live = deployment();
        let table: Vec<(&str, PatchType, Value, Value)> = vec![
            (
                "merge patch replaces lists",
                PatchType::Merge,
                json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
                    {"name": "a", "image": "i2"}]}}}}),
                json!([{"name": "a", "image": "i2"}]),
            ),
            (
                "strategic merge patch merges containers by name",
                PatchType::Strategic,
                json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
                    {"name": "a", "image": "i2"}]}}}}),
                json!([{"name": "a", "image": "i2"}, {"name": "b", "image": "j"}]),
            ),
            (
                "json patch operations in order",
                PatchType::Json,
                json!([
                    {"op": "test", "path": "/spec/replicas", "value": 2},
                    {"op": "replace", "path": "/spec/replicas", "value": 3},
                    {"op": "remove", "path": "/spec/template/spec/containers/1"},
                    {"op": "add", "path": "/spec/template/spec/containers/-",
                        "value": {"name": "c", "image": "k"}},
                    {"op": "copy", "from": "/spec/template/spec/containers/0/image",
                        "path": "/spec/template/spec/containers/1/image"}
                ]),
                json!([{"name": "a", "image": "i"}, {"name": "c", "image": "i"}]),
            ),
        ];
        for (name, patch_type, patch, containers) in table {
            let got = apply_patch(Kind::Deployment, &live, patch_type, &patch);
            let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got["spec"]["replicas"], 3, "{name}");
            assert_eq!(
                got["spec"]["template"]["spec"]["containers"], containers,
                "{name}"
            );
            assert_eq!(got["metadata"]["labels"], json!({"app": "web"}), "{name}");
        }
    }

    #[test]
    fn apply_patch_errors_name_the_object_and_the_path() {
        use crate::error::Reason;
        let live = deployment();
        let table: Vec<(&str, PatchType, Value, Reason, &str)> = vec![
            (
                "a merge patch that is not an object",
                PatchType::Merge,
                json!([1]),
                Reason::BadRequest,
                "merge patch of Deployment default/web: the patch must be a JSON object",
            ),
            (
                "a json patch that is not a list",
                PatchType::Json,
                json!({"op": "add"}),
                Reason::BadRequest,
                "json patch of Deployment default/web: the patch must be a JSON list of operations",
            ),
            (
                "an unknown operation",
                PatchType::Json,
                json!([{"op": "frobnicate", "path": "/spec"}]),
                Reason::BadRequest,
                "json patch of Deployment default/web: operation 0: ",
            ),
            (
                "an operation without a path",
                PatchType::Json,
                json!([{"op": "remove"}]),
                Reason::BadRequest,
                "json patch of Deployment default/web: operation 0: ",
            ),
            (
                "a failed test",
                PatchType::Json,
                json!([{"op": "replace", "path": "/spec/replicas", "value": 5},
                    {"op": "test", "path": "/spec/replicas", "value": 2}]),
                Reason::Invalid,
                "Deployment default/web is invalid: /spec/replicas: json patch operation 1: test failed",
            ),
            (
                "a path that does not exist",
                PatchType::Json,
                json!([{"op": "remove", "path": "/spec/paused"}]),
                Reason::Invalid,
                "Deployment default/web is invalid: /spec/paused: json patch operation 0: the path does not exist",
            ),
            (
                "a strategic patch element without its merge key",
                PatchType::Strategic,
                json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
                Reason::BadRequest,
                "strategic merge patch of Deployment default/web: \
                 spec.template.spec.containers[0]: has no merge key \"name\"",
            ),
        ];
        for (name, patch_type, patch, reason, message) in table {
            let e = apply_patch(Kind::Deployment, &live, patch_type, &patch).expect_err(name);
            assert_eq!(e.reason, reason, "{name}: {e}");
            assert!(e.message.starts_with(message), "{name}: {}", e.message);
            assert_eq!(e.object.map(|o| o.name), Some("web".to_string()), "{name}");
        }
        // The failed operation's path is the cause's field.
        let e = apply_patch(
            Kind::Deployment,
            &live,
            PatchType::Json,
            &json!([{"op": "test", "path": "/spec/replicas", "value": 9}]),
        );
        let causes = e.map_err(|e| e.causes);
        assert_eq!(
            causes.as_ref().err().map(|c| c[0].field.as_str()),
            Some("/spec/replicas")
        );
        let too_many = Value::Array(vec![
            json!({"op": "test", "path": "/spec/replicas", "value": 2});
            JSON_PATCH_OPERATIONS_MAX + 1
        ]);
        let e = apply_patch(Kind::Deployment, &live, PatchType::Json, &too_many);
        assert_eq!(e.map_err(|e| e.reason), Err(Reason::TooLarge));
    }

    /// RFC 7386 Appendix A, every example, plus the example of section 3.
    #[test]
    fn merge_patch_rfc7386_appendix_a() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
            // Section 3.
            (
                json!({"title": "Goodbye!",
                    "author": {"givenName": "John", "familyName": "Doe"},
                    "tags": ["example", "sample"],
                    "content": "This will be unchanged"}),
                json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890",
                    "author": {"familyName": null}, "tags": ["example"]}),
                json!({"title": "Hello!",
                    "author": {"givenName": "John"},
                    "tags": ["example"],
                    "content": "This will be unchanged",
                    "phoneNumber": "+01-123-456-7890"}),
            ),
        ];
        for (i, (target, patch, want)) in cases.iter().enumerate() {
            assert_eq!(
                &merge_patch(target, patch),
                want,
                "case {i}: {target} + {patch}"
            );
        }
    }

    struct Case {
        name: &'static str,
        last: Option<Value>,
        manifest: Value,
        live: Value,
        want: Value,
    }

    #[test]
    fn three_way_merge_table() {
        let deployment_live = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "web", "uid": "u-1", "generation": 3,
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"team": "a", "deployment.kubernetes.io/revision": "2"}},
            "spec": {
                "replicas": 5,
                "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "front"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                        "terminationMessagePath": "/dev/termination-log"}]}}},
            "status": {"replicas": 5, "readyReplicas": 5}});
        let deployment_last = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"team": "a"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web", "tier": "front"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}});

        let cases = vec![
            Case {
                name: "first apply creates: the manifest, nulls dropped",
                last: None,
                manifest: json!({"kind": "ConfigMap", "metadata": {"name": "c", "labels": null},
                    "data": {"a": "1"}}),
                live: json!({}),
                want: json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}),
            },
            Case {
                name: "first apply over an object created otherwise removes nothing",
                last: None,
                manifest: json!({"metadata": {"name": "c", "labels": {"a": "1"}},
                    "data": {"x": "2"}}),
                live: json!({"metadata": {"name": "c", "uid": "u", "labels": {"b": "2"}},
                    "data": {"x": "1", "y": "1"}}),
                want: json!({"metadata": {"name": "c", "uid": "u", "labels": {"a": "1", "b": "2"}},
                    "data": {"x": "2", "y": "1"}}),
            },
            Case {
                name: "a field removed from the manifest is removed",
                last: Some(json!({"spec": {"replicas": 3, "paused": false}})),
                manifest: json!({"spec": {"replicas": 3}}),
                live: json!({"spec": {"replicas": 3, "paused": false,
                    "progressDeadlineSeconds": 600}}),
                want: json!({"spec": {"replicas": 3, "progressDeadlineSeconds": 600}}),
            },
            Case {
                name: "fields controllers set are kept",
                last: Some(json!({"kind": "Pod", "metadata": {"name": "p"},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}})),
                manifest: json!({"kind": "Pod", "metadata": {"name": "p"},
                    "spec": {"containers": [{"name": "c", "image": "i2"}]}}),
                live: json!({"kind": "Pod",
                    "metadata": {"name": "p", "uid": "u-1", "creationTimestamp": "t"},
                    "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
                    "status": {"phase": "Running"}}),
                want: json!({"kind": "Pod",
                    "metadata": {"name": "p", "uid": "u-1", "creationTimestamp": "t"},
                    "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i2"}]},
                    "status": {"phase": "Running"}}),
            },
            Case {
                name: "a service keeps its allocated clusterIP",
                last: Some(json!({"spec": {"ports": [{"port": 80}]}})),
                manifest: json!({"spec": {"ports": [{"port": 8080}]}}),
                live: json!({"spec": {"ports": [{"port": 80, "protocol": "TCP"}],
                    "clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"]}}),
                want: json!({"spec": {"ports": [{"port": 8080}],
                    "clusterIP": "10.0.0.7", "clusterIPs": ["10.0.0.7"]}}),
            },
            Case {
                name: "labels, annotations and template labels removed key by key",
                last: Some(deployment_last.clone()),
                manifest: json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {}},
                    "spec": {
                        "replicas": 3,
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}}),
                live: deployment_live.clone(),
                want: json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {
                        "name": "web", "uid": "u-1", "generation": 3,
                        "labels": {"app": "web"},
                        "annotations": {"deployment.kubernetes.io/revision": "2"}},
                    "spec": {
                        "replicas": 3,
                        "progressDeadlineSeconds": 600,
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}},
                    "status": {"replicas": 5, "readyReplicas": 5}}),
            },
            Case {
                name: "a field neither applied nor in the manifest keeps another writer's value",
                last: Some(json!({"spec": {"template": {"x": 1}}})),
                manifest: json!({"spec": {"template": {"x": 1}}}),
                live: json!({"spec": {"replicas": 7, "template": {"x": 1}}}),
                want: json!({"spec": {"replicas": 7, "template": {"x": 1}}}),
            },
            Case {
                name: "a whole map dropped from the manifest goes, other writers' keys too",
                last: Some(json!({"metadata": {"name": "c", "labels": {"a": "1"}}})),
                manifest: json!({"metadata": {"name": "c"}}),
                live: json!({"metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}}),
                want: json!({"metadata": {"name": "c"}}),
            },
            Case {
                name: "lists are replaced wholesale, never merged",
                last: Some(json!({"spec": {"containers": [{"name": "a", "image": "i"},
                    {"name": "b", "image": "i"}], "args": ["x"]}})),
                manifest: json!({"spec": {"containers": [{"name": "b", "image": "j"}],
                    "tolerations": []}}),
                live: json!({"spec": {"containers": [
                        {"name": "a", "image": "i", "imagePullPolicy": "IfNotPresent"},
                        {"name": "b", "image": "i", "imagePullPolicy": "IfNotPresent"}],
                    "args": ["x"]}}),
                want: json!({"spec": {"containers": [{"name": "b", "image": "j"}],
                    "tolerations": []}}),
            },
            Case {
                name: "null in the manifest deletes",
                last: Some(json!({"data": {"a": "1"}})),
                manifest: json!({"data": {"a": null, "b": "2"}}),
                live: json!({"data": {"a": "1", "c": "3"}}),
                want: json!({"data": {"b": "2", "c": "3"}}),
            },
            Case {
                name: "an object replaces a live scalar, nested nulls dropped",
                last: None,
                manifest: json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}}),
                live: json!({"spec": {"strategy": "odd"}}),
                want: json!({"spec": {"strategy": {"type": "Recreate"}}}),
            },
            Case {
                name: "a scalar replaces a live object",
                last: Some(json!({"spec": {"x": {"a": 1}}})),
                manifest: json!({"spec": {"x": 2}}),
                live: json!({"spec": {"x": {"a": 1, "b": 1}}}),
                want: json!({"spec": {"x": 2}}),
            },
            Case {
                name: "last applied scalar where the manifest now has an object",
                last: Some(json!({"spec": {"x": 1}})),
                manifest: json!({"spec": {"x": {"a": 1}}}),
                live: json!({"spec": {"x": 1}}),
                want: json!({"spec": {"x": {"a": 1}}}),
            },
            Case {
                name: "deletion of a field already gone is a no-op",
                last: Some(json!({"spec": {"paused": true}, "extra": 1})),
                manifest: json!({"spec": {}}),
                live: json!({"spec": {"replicas": 1}}),
                want: json!({"spec": {"replicas": 1}}),
            },
        ];
        for case in &cases {
            let got = three_way_merge(case.last.as_ref(), &case.manifest, &case.live);
            assert_eq!(got, case.want, "{}", case.name);
            // Applying the same manifest again changes nothing.
            let again = three_way_merge(Some(&case.manifest), &case.manifest, &got);
            assert_eq!(again, got, "{}: not idempotent", case.name);
        }
    }

    /// Two applies through the annotation, as the store runs them: the
    /// second apply removes what the user dropped and keeps what the
    /// controllers wrote in between.
    #[test]
    fn apply_twice_through_the_annotation() {
        let first = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        // What kubectl records: the manifest, with empty annotations.
        let recorded = |manifest: &Value| {
            let mut m = manifest.clone();
            m["metadata"]["annotations"] = json!({});
            m
        };
        let mut live = three_way_merge(None, &with_last_applied(&first), &json!({}));
        assert_eq!(last_applied(&live), Some(recorded(&first)));
        // The store and a controller fill in their fields.
        live["metadata"]["uid"] = json!("u-1");
        live["metadata"]["labels"]["owner"] = json!("ops");
        live["spec"]["clusterIP"] = json!("10.0.0.9");
        live["status"] = json!({"loadBalancer": {}});

        let second = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080}]}});
        let got = three_way_merge(
            last_applied(&live).as_ref(),
            &with_last_applied(&second),
            &live,
        );
        assert_eq!(
            got["metadata"]["labels"],
            json!({"app": "web", "owner": "ops"})
        );
        assert_eq!(got["metadata"]["uid"], "u-1");
        assert_eq!(got["spec"]["clusterIP"], "10.0.0.9");
        assert_eq!(got["spec"]["ports"], json!([{"port": 8080}]));
        assert_eq!(got["status"], json!({"loadBalancer": {}}));
        assert_eq!(last_applied(&got), Some(recorded(&second)));
    }

    #[test]
    fn with_last_applied_records_as_kubectl_does() {
        let cases = [
            (
                "no annotations: recorded with empty annotations, as kubectl",
                json!({"kind": "ConfigMap", "apiVersion": "v1",
                    "metadata": {"name": "cfg", "namespace": "default"}, "data": {"k": "v"}}),
                Some(
                    r#"{"apiVersion":"v1","data":{"k":"v"},"kind":"ConfigMap","metadata":{"annotations":{},"name":"cfg","namespace":"default"}}"#,
                ),
            ),
            (
                "an old record is replaced, not nested",
                json!({"kind": "ConfigMap", "metadata": {"name": "cfg",
                    "annotations": {"a": "1", LAST_APPLIED_ANNOTATION: "{\"old\":true}"}}}),
                Some(r#"{"kind":"ConfigMap","metadata":{"annotations":{"a":"1"},"name":"cfg"}}"#),
            ),
            (
                "null metadata and annotations become maps",
                json!({"kind": "ConfigMap", "metadata": {"name": "c", "annotations": null}}),
                Some(r#"{"kind":"ConfigMap","metadata":{"annotations":{},"name":"c"}}"#),
            ),
            (
                "no metadata at all",
                json!({"kind": "ConfigMap"}),
                Some(r#"{"kind":"ConfigMap","metadata":{"annotations":{}}}"#),
            ),
            (
                "metadata that is not a mapping is left alone",
                json!({"kind": "ConfigMap", "metadata": "x"}),
                None,
            ),
            (
                "annotations that are not a mapping are left alone",
                json!({"kind": "ConfigMap", "metadata": {"annotations": [1]}}),
                None,
            ),
            ("not an object", json!([1]), None),
        ];
        for (name, manifest, want) in cases {
            let got = with_last_applied(&manifest);
            let recorded = got
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
                .and_then(Value::as_str);
            assert_eq!(recorded, want, "{name}");
            if want.is_none() {
                assert_eq!(got, manifest, "{name}");
            } else {
                // Recording is stable: doing it twice gives the same object.
                assert_eq!(with_last_applied(&got), got, "{name}");
            }
        }
    }

    #[test]
    fn last_applied_reads_the_annotation() {
        let with =
            |text: &str| json!({"metadata": {"annotations": {LAST_APPLIED_ANNOTATION: text}}});
        let cases = [
            ("absent", json!({"metadata": {"name": "x"}}), None),
            ("no metadata", json!({"kind": "Pod"}), None),
            ("unparseable", with("{not json"), None),
            ("not an object", with("[1,2]"), None),
            (
                "not a string",
                json!({"metadata": {"annotations": {LAST_APPLIED_ANNOTATION: 3}}}),
                None,
            ),
            (
                "an object",
                with(r#"{"kind":"Pod","metadata":{"annotations":{},"name":"p"}}"#),
                Some(json!({"kind": "Pod", "metadata": {"annotations": {}, "name": "p"}})),
            ),
        ];
        for (name, live, want) in cases {
            assert_eq!(last_applied(&live), want, "{name}");
        }
    }
}
