//! Admission: turn one manifest object (JSON form) into an object kubus
//! will store, or refuse it with every broken rule.
//!
//! [`admit`] runs four steps, as the Kubernetes apiserver does:
//! 1. **identify** the kind from `apiVersion`/`kind` ([`Kind::from_type`]);
//! 2. **decode** into the typed `k8s-openapi` struct, reporting each wrong
//!    JSON type and each unknown field with its path;
//! 3. **default** omitted fields ([`defaults`]);
//! 4. **validate** ([`validate`]) and collect every broken rule.
//!
//! [`validate_update`] holds the rules that compare an update with the
//! stored object (immutable fields).
//!
//! Pure functions only: no I/O, no clock, no randomness. A name requested
//! by `generateName` is chosen by the store, which calls
//! [`Admitted::set_name`].

pub mod defaults;
pub mod validate;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::error::{ApiError, FieldCause};
use crate::kind::{Kind, KindError, ObjectRef};
use crate::meta;
use crate::selector::Selector;
use validate::{quote, Causes};

/// Field named by causes about the object as a whole (it is not a mapping).
pub const OBJECT_FIELD: &str = "(object)";

/// Most causes reported for one object; the rest are counted, not listed.
pub const CAUSES_MAX: usize = 100;

/// Most wrong-type fields reported for one object (each costs a decode).
const TYPE_ERRORS_MAX: usize = 20;

/// Stand-ins tried in place of a wrongly typed value so that decoding can go
/// on and find the next wrong type; the first that decodes is kept.
fn stand_ins() -> [Value; 5] {
    [
        Value::Null,
        Value::Object(Map::new()),
        Value::String(String::new()),
        Value::from(0),
        Value::Array(Vec::new()),
    ]
}

/// An object that passed admission: identified, defaulted and valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// Kind, namespace (defaulted) and name. The name is empty when the
    /// object asked for `generateName`; see [`Admitted::set_name`].
    pub object: ObjectRef,
    /// The defaulted object in its Kubernetes JSON form.
    pub value: Value,
}

impl Admitted {
    /// Give the object its name (the store does this for `generateName`,
    /// after choosing a free one).
    pub fn set_name(&mut self, name: &str) {
        self.object.name = name.to_string();
        meta::set_meta(&mut self.value, "name", Value::String(name.to_string()));
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Step 1: the served kind, or the causes saying why not.
fn identify(value: &Value) -> Result<Kind, Vec<FieldCause>> {
    let Some(obj) = value.as_object() else {
        return Err(vec![FieldCause::new(
            OBJECT_FIELD,
            format!(
                "must be a mapping with apiVersion and kind (got {})",
                type_name(value)
            ),
        )]);
    };
    let mut causes = Vec::new();
    let mut text = |field: &str| match obj.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        None | Some(Value::Null) => {
            causes.push(FieldCause::new(field, "required value"));
            None
        }
        Some(Value::String(_)) => {
            causes.push(FieldCause::new(field, "must not be empty"));
            None
        }
        Some(other) => {
            causes.push(FieldCause::new(
                field,
                format!("must be a string (got {})", type_name(other)),
            ));
            None
        }
    };
    let api_version = text("apiVersion");
    let kind = text("kind");
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        return Err(causes);
    };
    Kind::from_type(&api_version, &kind).map_err(|e| {
        let field = match e {
            KindError::OldApiVersion { .. } | KindError::WrongApiVersion { .. } => "apiVersion",
            _ => "kind",
        };
        vec![FieldCause::new(field, e.to_string())]
    })
}

/// Identify, default and validate one object.
///
/// Errors are [`Reason::Invalid`](crate::Reason::Invalid) with one cause per
/// broken rule; `object` is set whenever the kind and name are known.
pub fn admit(value: Value) -> Result<Admitted, ApiError> {
    let kind = identify(&value).map_err(|causes| ApiError::invalid(None, causes))?;
    match kind {
        Kind::Namespace => admit_as::<Namespace>(kind, value, |_| {}, validate::namespace),
        Kind::Node => admit_as::<Node>(kind, value, |_| {}, validate::node),
        Kind::Pod => admit_as::<Pod>(kind, value, defaults::pod, validate::pod),
        Kind::Service => admit_as::<Service>(kind, value, defaults::service, validate::service),
        Kind::ConfigMap => admit_as::<ConfigMap>(kind, value, |_| {}, validate::config_map),
        Kind::Secret => admit_as::<Secret>(kind, value, defaults::secret, validate::secret),
        Kind::Event => admit_as::<Event>(kind, value, |_| {}, validate::event),
        Kind::ReplicaSet => {
            admit_as::<ReplicaSet>(kind, value, defaults::replica_set, validate::replica_set)
        }
        Kind::Deployment => {
            admit_as::<Deployment>(kind, value, defaults::deployment, validate::deployment)
        }
    }
}

/// `metadata.namespace`: "default" when absent for namespaced kinds,
/// removed for cluster-scoped ones.
fn default_namespace(kind: Kind, value: &mut Value) {
    let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) else {
        if kind.namespaced() {
            meta::set_meta(value, "namespace", defaults::DEFAULT_NAMESPACE.into());
        }
        return;
    };
    if !kind.namespaced() {
        metadata.remove("namespace");
        return;
    }
    let absent = match metadata.get("namespace") {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(_) => false, // a wrong type is reported by decoding
    };
    if absent {
        metadata.insert("namespace".into(), defaults::DEFAULT_NAMESPACE.into());
    }
}

fn admit_as<T: DeserializeOwned + Serialize>(
    kind: Kind,
    mut value: Value,
    default: fn(&mut T),
    check: fn(&T, &mut Causes),
) -> Result<Admitted, ApiError> {
    if value.get("metadata").is_some_and(|m| !m.is_object() && !m.is_null()) {
        // Reported by decoding; do not let namespace defaulting replace it.
    } else {
        default_namespace(kind, &mut value);
    }
    let name = meta::name(&value).filter(|n| !n.is_empty());
    let object = name.map(|n| ObjectRef::new(kind, meta::namespace(&value), n));
    let refuse = |causes: Causes| ApiError::invalid(object.clone(), bounded(causes.0));

    let mut causes = Causes::default();
    let Some(mut typed) = decode::<T>(&value, &mut causes) else {
        // Still check metadata when it decodes on its own, so that a wrong
        // type elsewhere does not hide a bad name.
        let metadata = value.get("metadata").cloned().unwrap_or(Value::Null);
        if let Ok(m) = serde_json::from_value::<ObjectMeta>(metadata) {
            let mut more = Causes::default();
            validate::object_meta(kind, &m, &mut more);
            let reported: Vec<String> = causes.0.iter().map(|c| c.field.clone()).collect();
            causes
                .0
                .extend(more.0.into_iter().filter(|c| !reported.contains(&c.field)));
        }
        return Err(refuse(causes));
    };
    match serde_json::to_value(&typed) {
        Ok(decoded) => unknown_fields(&value, &decoded, "", &mut causes),
        Err(e) => return Err(ApiError::internal(format!("re-encoding {kind}: {e}"))),
    }
    default(&mut typed);
    check(&typed, &mut causes);
    if !causes.0.is_empty() {
        return Err(refuse(causes));
    }
    let value = serde_json::to_value(&typed)
        .map_err(|e| ApiError::internal(format!("encoding {kind}: {e}")))?;
    let namespace = meta::namespace(&value);
    let object = ObjectRef::new(kind, namespace, meta::name(&value).unwrap_or_default());
    Ok(Admitted { object, value })
}

/// At most [`CAUSES_MAX`] causes, the last saying how many were left out.
fn bounded(mut causes: Vec<FieldCause>) -> Vec<FieldCause> {
    if causes.len() > CAUSES_MAX {
        let left_out = causes.len() - CAUSES_MAX;
        causes.truncate(CAUSES_MAX);
        let field = causes
            .last()
            .map_or(OBJECT_FIELD.to_string(), |c| c.field.clone());
        causes.push(FieldCause::new(
            field,
            format!("and {left_out} more broken rules not listed"),
        ));
    }
    causes
}

/// Step 2: decode into `T`. Each wrong type becomes a cause; the offending
/// value is replaced by a stand-in and decoding retried, so that several
/// wrong types are reported at once. None when any was found.
fn decode<T: DeserializeOwned>(value: &Value, causes: &mut Causes) -> Option<T> {
    let mut work = value.clone();
    let mut reported: Vec<Vec<PathStep>> = Vec::new();
    let mut stand_in = 0usize;
    for _ in 0..TYPE_ERRORS_MAX * 3 {
        match serde_path_to_error::deserialize::<_, T>(&work) {
            Ok(typed) => return reported.is_empty().then_some(typed),
            Err(e) => {
                let steps = path_steps(e.path());
                if reported.last() == Some(&steps) {
                    // The last stand-in did not fit either: try the next.
                    stand_in += 1;
                } else {
                    if reported.len() >= TYPE_ERRORS_MAX {
                        break;
                    }
                    causes.add(render_path(&steps), serde_rule(&e.inner().to_string()));
                    reported.push(steps.clone());
                    stand_in = 0;
                }
                let Some(replacement) = stand_ins().into_iter().nth(stand_in) else {
                    break;
                };
                if !replace_at(&mut work, &steps, replacement) {
                    break;
                }
            }
        }
    }
    if reported.is_empty() {
        // Undecodable without a reportable path; should not happen once
        // the kind is identified, but never admit what cannot be decoded.
        causes.add(OBJECT_FIELD, "could not be decoded");
    }
    None
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn path_steps(path: &serde_path_to_error::Path) -> Vec<PathStep> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(PathStep::Index(*index)),
            Segment::Map { key } => Some(PathStep::Key(key.clone())),
            Segment::Enum { variant } => Some(PathStep::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// `spec.template.spec.containers[1].name`; map keys that are not plain
/// words (label keys, data keys) are bracketed: `metadata.labels[app.kubernetes.io/name]`.
fn render_path(steps: &[PathStep]) -> String {
    let mut out = String::new();
    for step in steps {
        out = match step {
            PathStep::Index(i) => format!("{out}[{i}]"),
            PathStep::Key(k) => child_path(&out, k),
        };
    }
    if out.is_empty() {
        OBJECT_FIELD.to_string()
    } else {
        out
    }
}

/// The path of field `key` under `parent`.
fn child_path(parent: &str, key: &str) -> String {
    let word = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    match (word, parent.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{parent}.{key}"),
        (false, _) => format!("{parent}[{key}]"),
    }
}

/// Replace the value at `steps` (which must exist); false if it does not.
fn replace_at(root: &mut Value, steps: &[PathStep], replacement: Value) -> bool {
    let Some((last, parents)) = steps.split_last() else {
        return false;
    };
    let mut at = root;
    for step in parents {
        let next = match step {
            PathStep::Key(k) => at.get_mut(k.as_str()),
            PathStep::Index(i) => at.get_mut(*i),
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    let slot = match last {
        PathStep::Key(k) => at.get_mut(k.as_str()),
        PathStep::Index(i) => at.get_mut(*i),
    };
    match slot {
        Some(slot) => {
            *slot = replacement;
            true
        }
        None => false,
    }
}

/// A serde message in words: `invalid type: string "3", expected i32` →
/// `must be a 32-bit integer (got string "3")`.
fn serde_rule(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((got, expected)) = rest.rsplit_once(", expected ") {
                return format!("must be {} (got {got})", expected_in_words(expected));
            }
        }
    }
    message.to_string()
}

fn expected_in_words(expected: &str) -> String {
    match expected {
        "i8" | "i16" | "i32" | "u8" | "u16" | "u32" | "a 32-bit integer" => {
            "a 32-bit integer".into()
        }
        "i64" | "u64" | "i128" | "u128" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        "IntOrString" => "an integer or a string".into(),
        "Quantity" => "a quantity (a string like \"500m\" or a number)".into(),
        other => match other.strip_prefix("struct ") {
            Some(name) => format!("a mapping ({name})"),
            None => other.to_string(),
        },
    }
}

/// Report fields of `input` that decoding dropped: not part of the kind's
/// schema (typos, wrong indentation). Null values are ignored (`{}` and
/// `null` are how YAML writes "nothing").
fn unknown_fields(input: &Value, decoded: &Value, path: &str, causes: &mut Causes) {
    const UNKNOWN_FIELDS_MAX: usize = 20;
    match (input, decoded) {
        (Value::Object(inp), Value::Object(dec)) => {
            for (k, v) in inp {
                if causes.0.len() >= UNKNOWN_FIELDS_MAX {
                    return;
                }
                let child = child_path(path, k);
                match dec.get(k) {
                    Some(d) => unknown_fields(v, d, &child, causes),
                    None if v.is_null() => {}
                    None => causes.add(child, "unknown field"),
                }
            }
        }
        (Value::Array(inp), Value::Array(dec)) => {
            for (i, (v, d)) in inp.iter().zip(dec).enumerate() {
                unknown_fields(v, d, &format!("{path}[{i}]"), causes);
            }
        }
        _ => {}
    }
}

/// Rules that compare an update (`new`, already admitted) with the stored
/// object (`old`): the broken ones. Identity (`metadata.name`,
/// `metadata.namespace`, `metadata.uid`) never changes; neither do a
/// workload's `spec.selector`, a Pod's container names and commands and,
/// once set, its `spec.nodeName`, a Service's `spec.clusterIP` once set,
/// nor the data of an immutable ConfigMap or Secret.
///
/// A Service update that omits `spec.clusterIP` is accepted: the store is
/// expected to carry the allocated address over, as Kubernetes does.
pub fn validate_update(kind: Kind, old: &Value, new: &Value) -> Vec<FieldCause> {
    let mut causes = Causes::default();
    let immutable = |causes: &mut Causes, field: &str, was: &str, got: &str| {
        causes.add(
            field,
            format!("field is immutable (was {}, got {})", quote(was), quote(got)),
        );
    };

    let old_name = meta::name(old).unwrap_or_default();
    let new_name = meta::name(new).unwrap_or_default();
    if old_name != new_name {
        immutable(&mut causes, "metadata.name", old_name, new_name);
    }
    if kind.namespaced() {
        let ns = |v: &Value| {
            meta::namespace(v)
                .filter(|n| !n.is_empty())
                .unwrap_or(defaults::DEFAULT_NAMESPACE)
                .to_string()
        };
        let (was, got) = (ns(old), ns(new));
        if was != got {
            immutable(&mut causes, "metadata.namespace", &was, &got);
        }
    }
    if let (Some(was), Some(got)) = (meta::uid(old), meta::uid(new)) {
        if was != got {
            immutable(&mut causes, "metadata.uid", was, got);
        }
    }

    match kind {
        Kind::Deployment | Kind::ReplicaSet => {
            let (was, got) = (selector_text(old), selector_text(new));
            if was != got {
                immutable(&mut causes, "spec.selector", &was, &got);
            }
        }
        Kind::Pod => pod_update(old, new, &mut causes),
        Kind::Service => {
            let was = str_at(old, &["spec", "clusterIP"]).unwrap_or_default();
            let got = str_at(new, &["spec", "clusterIP"]).unwrap_or_default();
            if !was.is_empty() && !got.is_empty() && was != got {
                immutable(&mut causes, "spec.clusterIP", was, got);
            }
        }
        Kind::ConfigMap | Kind::Secret => {
            if old.get("immutable").and_then(Value::as_bool) == Some(true) {
                if new.get("immutable").and_then(Value::as_bool) != Some(true) {
                    causes.add("immutable", "may not be unset once true");
                }
                for field in ["data", "binaryData", "stringData"] {
                    let present = |v: &Value| v.get(field).filter(|d| !d.is_null()).cloned();
                    if present(old) != present(new) {
                        causes.add(field, "may not be changed when immutable is true");
                    }
                }
            }
        }
        Kind::Namespace | Kind::Node | Kind::Event => {}
    }
    causes.0
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |at, k| at.get(*k))?.as_str()
}

/// A workload's selector in string form, for comparison (key order and
/// `matchLabels` vs. absent do not count as changes).
fn selector_text(v: &Value) -> String {
    let raw = v.get("spec").and_then(|s| s.get("selector"));
    match raw.map(|s| serde_json::from_value::<LabelSelector>(s.clone())) {
        None => String::new(),
        Some(Ok(ls)) => match Selector::from_label_selector(&ls) {
            Ok(sel) => sel.to_string(),
            Err(_) => raw.map(Value::to_string).unwrap_or_default(),
        },
        Some(Err(_)) => raw.map(Value::to_string).unwrap_or_default(),
    }
}

fn pod_update(old: &Value, new: &Value, causes: &mut Causes) {
    for list in ["initContainers", "containers"] {
        let containers = |v: &Value| -> Vec<(String, Value)> {
            v.get("spec")
                .and_then(|s| s.get(list))
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .map(|c| {
                            let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
                            let command = c.get("command").cloned().unwrap_or(Value::Null);
                            (name.to_string(), command)
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let (was, got) = (containers(old), containers(new));
        if was.len() != got.len() {
            causes.add(
                format!("spec.{list}"),
                format!(
                    "may not add or remove containers (was {}, got {})",
                    was.len(),
                    got.len()
                ),
            );
            continue;
        }
        for (i, ((old_name, old_cmd), (new_name, new_cmd))) in was.iter().zip(&got).enumerate() {
            if old_name != new_name {
                causes.add(
                    format!("spec.{list}[{i}].name"),
                    format!(
                        "field is immutable (was {}, got {})",
                        quote(old_name),
                        quote(new_name)
                    ),
                );
            }
            if old_cmd != new_cmd {
                causes.add(format!("spec.{list}[{i}].command"), "field is immutable");
            }
        }
    }
    let node = |v: &Value| str_at(v, &["spec", "nodeName"]).unwrap_or_default().to_string();
    let (was, got) = (node(old), node(new));
    if !was.is_empty() && was != got {
        causes.add(
            "spec.nodeName",
            format!(
                "field is immutable once set (was {}, got {})",
                quote(&was),
                quote(&got)
            ),
        );
    }
}

