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

mod access;
pub mod defaults;
pub mod validate;
pub mod workloads;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service,
};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, ReplicationController};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
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

/// Step 1: the served kind, or the causes saying why not.
fn identify(value: &Value) -> Result<Kind, Vec<FieldCause>> {
    let Some(obj) = value.as_object() else {
        return Err(vec![FieldCause::new(
            OBJECT_FIELD,
            format!(
                "must be a mapping with apiVersion and kind (got {})",
                crate::meta::type_name(value)
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
                format!("must be a string (got {})", crate::meta::type_name(other)),
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

/// "DaemonSet kube-system/fluentd", from the raw fields, for messages about
/// objects of kinds kubus does not serve.
fn raw_name(value: &Value) -> Option<String> {
    let kind = value.get("kind")?.as_str()?;
    let name = value.pointer("/metadata/name")?.as_str()?;
    Some(
        match value.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(ns) => format!("{kind} {ns}/{name}"),
            None => format!("{kind} {name}"),
        },
    )
}

/// Identify, default and validate one object.
///
/// Errors are [`Reason::Invalid`](crate::Reason::Invalid) with one cause per
/// broken rule; `object` is set whenever the kind and name are known.
pub fn admit(value: Value) -> Result<Admitted, ApiError> {
    let kind = identify(&value).map_err(|causes| {
        let mut e = ApiError::invalid(None, causes);
        // The kind is not served, but the manifest still names an object:
        // say which, so a refusal in a long manifest is easy to find.
        if let Some(what) = raw_name(&value) {
            e.message = e.message.replacen("object", &what, 1);
        }
        e
    })?;
    match kind {
        Kind::Namespace => admit_as::<Namespace>(kind, value, None, validate::namespace),
        Kind::Node => admit_as::<Node>(kind, value, None, validate::node),
        Kind::Pod => admit_as::<Pod>(kind, value, Some(defaults::pod), validate::pod),
        Kind::Service => {
            admit_as::<Service>(kind, value, Some(defaults::service), validate::service)
        }
        Kind::ConfigMap => admit_as::<ConfigMap>(kind, value, None, validate::config_map),
        Kind::Secret => admit_as::<Secret>(kind, value, Some(defaults::secret), validate::secret),
        Kind::Event => admit_as::<Event>(kind, value, None, validate::event),
        Kind::Lease => admit_as::<Lease>(kind, value, None, validate::lease),
        Kind::Endpoints => admit_as::<Endpoints>(kind, value, None, validate::endpoints),
        Kind::EndpointSlice => {
            admit_as::<EndpointSlice>(kind, value, None, validate::endpoint_slice)
        }
        Kind::ReplicaSet => admit_as::<ReplicaSet>(
            kind,
            value,
            Some(defaults::replica_set),
            validate::replica_set,
        ),
        Kind::Deployment => admit_as::<Deployment>(
            kind,
            value,
            Some(defaults::deployment),
            validate::deployment,
        ),
        Kind::DaemonSet => admit_as::<DaemonSet>(
            kind,
            value,
            Some(workloads::daemon_set),
            workloads::daemon_set_rules,
        ),
        Kind::StatefulSet => admit_as::<StatefulSet>(
            kind,
            value,
            Some(workloads::stateful_set),
            workloads::stateful_set_rules,
        ),
        Kind::Job => admit_as::<Job>(kind, value, Some(workloads::job), workloads::job_rules),
        Kind::CronJob => admit_as::<CronJob>(
            kind,
            value,
            Some(workloads::cron_job),
            workloads::cron_job_rules,
        ),
        Kind::ReplicationController => admit_as::<ReplicationController>(
            kind,
            value,
            Some(workloads::replication_controller),
            workloads::replication_controller_rules,
        ),
        Kind::PodDisruptionBudget => admit_as::<PodDisruptionBudget>(
            kind,
            value,
            None,
            workloads::pod_disruption_budget_rules,
        ),
        Kind::HorizontalPodAutoscaler => admit_as::<HorizontalPodAutoscaler>(
            kind,
            value,
            None,
            workloads::horizontal_pod_autoscaler_rules,
        ),
        Kind::PersistentVolume => admit_as::<PersistentVolume>(
            kind,
            value,
            Some(workloads::persistent_volume),
            workloads::persistent_volume_rules,
        ),
        Kind::PersistentVolumeClaim => admit_as::<PersistentVolumeClaim>(
            kind,
            value,
            Some(workloads::persistent_volume_claim),
            workloads::persistent_volume_claim_rules,
        ),
        Kind::ControllerRevision => {
            admit_as::<ControllerRevision>(kind, value, None, workloads::controller_revision_rules)
        }
        Kind::StorageClass => admit_as::<StorageClass>(
            kind,
            value,
            Some(workloads::storage_class),
            workloads::storage_class_rules,
        ),
        Kind::PriorityClass => admit_as::<PriorityClass>(
            kind,
            value,
            Some(workloads::priority_class),
            workloads::priority_class_rules,
        ),
        Kind::ServiceAccount => admit_as::<k8s_openapi::api::core::v1::ServiceAccount>(
            kind,
            value,
            None,
            access::service_account_rules,
        ),
        Kind::Role => admit_as::<Role>(kind, value, None, access::role_rules),
        Kind::ClusterRole => admit_as::<ClusterRole>(kind, value, None, access::cluster_role_rules),
        Kind::RoleBinding => admit_as::<RoleBinding>(
            kind,
            value,
            Some(access::role_binding),
            access::role_binding_rules,
        ),
        Kind::ClusterRoleBinding => admit_as::<ClusterRoleBinding>(
            kind,
            value,
            Some(access::cluster_role_binding),
            access::cluster_role_binding_rules,
        ),
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

/// Steps 2–5 for kind `T`; `default` is `None` for kinds without defaults
/// (their decoded form is then the admitted one: no second encoding).
fn admit_as<T: DeserializeOwned + Serialize>(
    kind: Kind,
    mut value: Value,
    default: Option<fn(&mut T)>,
    check: fn(&T, &mut Causes),
) -> Result<Admitted, ApiError> {
    if value
        .get("metadata")
        .is_some_and(|m| !m.is_object() && !m.is_null())
    {
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
    let decoded = serde_json::to_value(&typed)
        .map_err(|e| ApiError::internal(format!("re-encoding {kind}: {e}")))?;
    unknown_fields(&value, &decoded, "", &mut causes);
    if let Some(default) = default {
        default(&mut typed);
    }
    check(&typed, &mut causes);
    if !causes.0.is_empty() {
        return Err(refuse(causes));
    }
    let value = match default {
        None => decoded,
        Some(_) => serde_json::to_value(&typed)
            .map_err(|e| ApiError::internal(format!("encoding {kind}: {e}")))?,
    };
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
    // The common case, without a copy: it decodes as it is.
    if let Ok(typed) = T::deserialize(value) {
        return Some(typed);
    }
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

/// Fields whose value is a map from user-chosen keys: a key under them is
/// shown bracketed, as Kubernetes does (`metadata.labels[app]`).
const MAP_FIELDS: &[&str] = &[
    "labels",
    "annotations",
    "data",
    "binaryData",
    "stringData",
    "nodeSelector",
    "matchLabels",
    "limits",
    "requests",
    "overhead",
    "capacity",
    "allocatable",
];

/// `spec.template.spec.containers[1].name`; keys of maps (label keys,
/// data keys) and keys that are not plain words are bracketed:
/// `metadata.labels[app.kubernetes.io/name]`.
fn render_path(steps: &[PathStep]) -> String {
    let mut out = String::new();
    let mut parent: Option<&str> = None;
    for step in steps {
        out = match step {
            PathStep::Index(i) => format!("{out}[{i}]"),
            PathStep::Key(k) if is_map_key(parent, k) => format!("{out}[{k}]"),
            PathStep::Key(k) => child_path(&out, k),
        };
        parent = match step {
            PathStep::Key(k) => Some(k.as_str()),
            PathStep::Index(_) => None,
        };
    }
    if out.is_empty() {
        OBJECT_FIELD.to_string()
    } else {
        out
    }
}

/// Whether `key` under the field `parent` is a map key rather than a
/// schema field. A Service's `selector` is a map; a workload's holds
/// `matchLabels`/`matchExpressions`.
fn is_map_key(parent: Option<&str>, key: &str) -> bool {
    match parent {
        Some("selector") => !matches!(key, "matchLabels" | "matchExpressions"),
        Some(p) => MAP_FIELDS.contains(&p),
        None => false,
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
    // k8s-openapi's ByteString passes on the base64 decoder's words.
    if [
        "Invalid symbol",
        "Invalid padding",
        "Invalid last symbol",
        "Invalid input length",
    ]
    .iter()
    .any(|p| message.starts_with(p))
    {
        return format!(
            "must be base64-encoded data ({})",
            message.trim_end_matches('.')
        );
    }
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
        // k8s-openapi types expect their own name ("Container").
        other
            if other.starts_with(|c: char| c.is_ascii_uppercase())
                && other.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            format!("a mapping ({other})")
        }
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
    unknown_fields_under(None, input, decoded, path, causes);
}

fn unknown_fields_under(
    parent: Option<&str>,
    input: &Value,
    decoded: &Value,
    path: &str,
    causes: &mut Causes,
) {
    const UNKNOWN_FIELDS_MAX: usize = 20;
    match (input, decoded) {
        (Value::Object(inp), Value::Object(dec)) => {
            for (k, v) in inp {
                if causes.0.len() >= UNKNOWN_FIELDS_MAX {
                    return;
                }
                let child = if is_map_key(parent, k) {
                    format!("{path}[{k}]")
                } else {
                    child_path(path, k)
                };
                match dec.get(k) {
                    Some(d) => unknown_fields_under(Some(k), v, d, &child, causes),
                    None if v.is_null() => {}
                    None => causes.add(child, "unknown field"),
                }
            }
        }
        (Value::Array(inp), Value::Array(dec)) => {
            for (i, (v, d)) in inp.iter().zip(dec).enumerate() {
                unknown_fields_under(None, v, d, &format!("{path}[{i}]"), causes);
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
            format!(
                "field is immutable (was {}, got {})",
                quote(was),
                quote(got)
            ),
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
    // Only a delete sets these (and only a later delete shortens them): an
    // update may neither clear, move nor set them (graceful deletion).
    for field in crate::lifecycle::DELETION_META {
        let at = |v: &Value| {
            v.get("metadata")
                .and_then(|m| m.get(*field))
                .filter(|x| !x.is_null())
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
        };
        match (at(old), at(new)) {
            (was, got) if was == got => {}
            (None, Some(got)) => causes.add(
                format!("metadata.{field}"),
                format!("may be set only by a delete (got {})", quote(&got)),
            ),
            (Some(was), got) => immutable(
                &mut causes,
                &format!("metadata.{field}"),
                &was,
                got.as_deref().unwrap_or(""),
            ),
            (None, None) => {}
        }
    }

    match kind {
        Kind::Deployment | Kind::ReplicaSet | Kind::DaemonSet | Kind::Job => {
            let (was, got) = (selector_text(old), selector_text(new));
            if was != got {
                immutable(&mut causes, "spec.selector", &was, &got);
            }
            if kind == Kind::Job {
                for field in ["completionMode", "template"] {
                    let at = |v: &Value| v.pointer(&format!("/spec/{field}")).cloned();
                    if at(old) != at(new) {
                        causes.add(format!("spec.{field}"), "field is immutable");
                    }
                }
            }
        }
        Kind::StatefulSet => {
            // as Kubernetes: only these may change
            const MUTABLE: &[&str] = &[
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
                "revisionHistoryLimit",
            ];
            let fixed = |v: &Value| -> Vec<(String, Value)> {
                let spec = v.get("spec").and_then(Value::as_object);
                let mut out: Vec<(String, Value)> = spec
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| !MUTABLE.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                out
            };
            if fixed(old) != fixed(new) {
                causes.add(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy', 'minReadySeconds' and 'revisionHistoryLimit' are forbidden",
                );
            }
        }
        Kind::PersistentVolumeClaim => {
            for field in ["accessModes", "selector", "volumeMode", "dataSource"] {
                let at = |v: &Value| v.pointer(&format!("/spec/{field}")).cloned();
                if at(old) != at(new) {
                    causes.add(format!("spec.{field}"), "field is immutable");
                }
            }
            // a class or a volume may be set once, not changed
            for field in ["storageClassName", "volumeName"] {
                let was = str_at(old, &["spec", field]).unwrap_or_default();
                let got = str_at(new, &["spec", field]).unwrap_or_default();
                if !was.is_empty() && was != got {
                    immutable(&mut causes, &format!("spec.{field}"), was, got);
                }
            }
        }
        Kind::ControllerRevision => {
            if old.get("data") != new.get("data") {
                causes.add("data", "field is immutable");
            }
        }
        Kind::RoleBinding | Kind::ClusterRoleBinding => {
            if old.get("roleRef") != new.get("roleRef") {
                causes.add("roleRef", "cannot change roleRef");
            }
        }
        Kind::PriorityClass => {
            for field in ["value", "preemptionPolicy"] {
                if old.get(field) != new.get(field) {
                    causes.add(field, "field is immutable");
                }
            }
        }
        Kind::StorageClass => {
            for field in [
                "provisioner",
                "parameters",
                "reclaimPolicy",
                "volumeBindingMode",
            ] {
                if old.get(field) != new.get(field) {
                    causes.add(field, "field is immutable");
                }
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
        Kind::EndpointSlice => {
            let was = str_at(old, &["addressType"]).unwrap_or_default();
            let got = str_at(new, &["addressType"]).unwrap_or_default();
            if was != got {
                immutable(&mut causes, "addressType", was, got);
            }
        }
        Kind::Namespace
        | Kind::Node
        | Kind::Event
        | Kind::Lease
        | Kind::Endpoints
        | Kind::CronJob
        | Kind::ReplicationController
        | Kind::PodDisruptionBudget
        | Kind::HorizontalPodAutoscaler
        | Kind::PersistentVolume
        | Kind::ServiceAccount
        | Kind::Role
        | Kind::ClusterRole => {}
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
    let node = |v: &Value| {
        str_at(v, &["spec", "nodeName"])
            .unwrap_or_default()
            .to_string()
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Reason;
    use crate::manifest::parse_documents;
    use serde_json::json;

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                "ports": [{"containerPort": 80, "name": "http"}]}]}})
    }

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}})
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()}})
    }

    fn replica_set() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-abc"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template()}})
    }

    fn service() -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    }

    fn config_map() -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
            "data": {"a.txt": "x"}, "binaryData": {"b.bin": "AAE="}})
    }

    fn secret() -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"user": "YWRtaW4="}, "stringData": {"password": "hunter2"}})
    }

    fn namespace() -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    }

    fn node() -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1.example"},
            "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}})
    }

    fn event() -> Value {
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web-1.17a2b"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default"},
            "reason": "Scheduled", "type": "Normal", "count": 1})
    }

    /// A pod being deleted gracefully, as the store marks it.
    fn terminating() -> Value {
        let p = with(
            pod(),
            "/metadata/deletionTimestamp",
            json!("2026-01-01T00:00:30Z"),
        );
        with(p, "/metadata/deletionGracePeriodSeconds", json!(30))
    }

    /// Set the value at a JSON pointer, creating objects on the way; a
    /// `null` value removes the field.
    fn with(mut v: Value, pointer: &str, new: Value) -> Value {
        let mut at = &mut v;
        let steps: Vec<&str> = pointer.split('/').skip(1).collect();
        let Some((last, parents)) = steps.split_last() else {
            return new;
        };
        for step in parents {
            at = match at {
                Value::Array(a) => &mut a[step.parse::<usize>().expect("index")],
                _ => {
                    if !at.is_object() {
                        *at = json!({});
                    }
                    at.as_object_mut()
                        .expect("object")
                        .entry(step.to_string())
                        .or_insert(json!({}))
                }
            };
        }
        match at {
            Value::Array(a) => {
                let i = last.parse::<usize>().expect("index");
                if i == a.len() {
                    a.push(new);
                } else {
                    a[i] = new;
                }
            }
            Value::Object(m) if new.is_null() => {
                m.remove(*last);
            }
            Value::Object(m) => {
                m.insert(last.to_string(), new);
            }
            other => *other = json!({ *last: new }),
        }
        v
    }

    fn admitted(v: Value) -> Admitted {
        admit(v.clone()).unwrap_or_else(|e| panic!("{e}\n{v:#}"))
    }

    #[test]
    fn valid_objects_of_every_kind_are_admitted() {
        let table = [
            (pod(), "Pod default/web-1"),
            (deployment(), "Deployment shop/web"),
            (replica_set(), "ReplicaSet default/web-abc"),
            (service(), "Service default/web"),
            (config_map(), "ConfigMap default/cfg"),
            (secret(), "Secret default/s"),
            (namespace(), "Namespace shop"),
            (node(), "Node worker-1.example"),
            (event(), "Event default/web-1.17a2b"),
        ];
        for (v, want) in table {
            let a = admitted(v);
            assert_eq!(a.object.to_string(), want);
        }
    }

    #[test]
    fn pods_run_as_a_service_account_with_its_token_mounted() {
        let p = admitted(pod()).value;
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["serviceAccount"], "default");
        let vol = &p["spec"]["volumes"][0];
        assert_eq!(vol["name"], crate::token::VOLUME_NAME);
        assert_eq!(
            vol["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        let mount = &p["spec"]["containers"][0]["volumeMounts"][0];
        assert_eq!(mount["mountPath"], crate::token::MOUNT_PATH);
        assert_eq!(mount["readOnly"], true);
        // idempotent: the stored pod admitted again is the same
        assert_eq!(admitted(p.clone()).value["spec"], p["spec"]);
        // a named account is kept; opting out mounts nothing
        let named = admitted(with(pod(), "/spec/serviceAccountName", json!("robot"))).value;
        assert_eq!(named["spec"]["serviceAccount"], "robot");
        let off = admitted(with(
            pod(),
            "/spec/automountServiceAccountToken",
            json!(false),
        ))
        .value;
        assert!(
            off["spec"]
                .get("volumes")
                .is_none_or(|v| v.as_array().is_some_and(|a| a.is_empty())),
            "{off}"
        );
        assert!(
            off["spec"]["containers"][0].get("volumeMounts").is_none(),
            "{off}"
        );
        // a container that mounts something there itself keeps it
        let own = admitted(with(
            with(
                pod(),
                "/spec/volumes",
                json!([{"name": "mine", "emptyDir": {}}]),
            ),
            "/spec/containers/0/volumeMounts",
            json!([{"name": "mine", "mountPath": crate::token::MOUNT_PATH}]),
        ))
        .value;
        assert_eq!(
            own["spec"]["containers"][0]["volumeMounts"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn defaults_are_filled_in() {
        let p = admitted(with(
            with(
                pod(),
                "/spec/containers/0/livenessProbe",
                json!({"httpGet": {"port": 80}}),
            ),
            "/spec/initContainers",
            json!([{"name": "init", "image": "busybox",
                "resources": {"limits": {"cpu": "1", "memory": "64Mi"}, "requests": {"cpu": "100m"}}}]),
        ))
        .value;
        let d = admitted(deployment()).value;
        let rs = admitted(replica_set()).value;
        let svc = admitted(with(service(), "/spec/ports/0/name", json!("http"))).value;
        let s = admitted(secret()).value;
        let ns = admitted(with(namespace(), "/metadata/namespace", json!("x"))).value;
        let table: &[(&Value, &str, Value)] = &[
            (&p, "/metadata/namespace", json!("default")),
            (&p, "/spec/restartPolicy", json!("Always")),
            (&p, "/spec/dnsPolicy", json!("ClusterFirst")),
            (&p, "/spec/terminationGracePeriodSeconds", json!(30)),
            (&p, "/spec/schedulerName", json!("default-scheduler")),
            (
                &p,
                "/spec/containers/0/imagePullPolicy",
                json!("IfNotPresent"),
            ),
            (
                &p,
                "/spec/initContainers/0/imagePullPolicy",
                json!("Always"),
            ),
            (
                &p,
                "/spec/containers/0/terminationMessagePath",
                json!("/dev/termination-log"),
            ),
            (
                &p,
                "/spec/containers/0/terminationMessagePolicy",
                json!("File"),
            ),
            (
                &p,
                "/spec/initContainers/0/terminationMessagePolicy",
                json!("File"),
            ),
            (&p, "/spec/containers/0/ports/0/protocol", json!("TCP")),
            (
                &p,
                "/spec/containers/0/livenessProbe/timeoutSeconds",
                json!(1),
            ),
            (
                &p,
                "/spec/containers/0/livenessProbe/periodSeconds",
                json!(10),
            ),
            (
                &p,
                "/spec/containers/0/livenessProbe/successThreshold",
                json!(1),
            ),
            (
                &p,
                "/spec/containers/0/livenessProbe/failureThreshold",
                json!(3),
            ),
            (
                &p,
                "/spec/containers/0/livenessProbe/httpGet/path",
                json!("/"),
            ),
            (
                &p,
                "/spec/initContainers/0/resources/requests/cpu",
                json!("100m"),
            ),
            (
                &p,
                "/spec/initContainers/0/resources/requests/memory",
                json!("64Mi"),
            ),
            (&d, "/metadata/namespace", json!("shop")),
            (&d, "/spec/replicas", json!(1)),
            (&d, "/spec/strategy/type", json!("RollingUpdate")),
            (&d, "/spec/strategy/rollingUpdate/maxSurge", json!("25%")),
            (
                &d,
                "/spec/strategy/rollingUpdate/maxUnavailable",
                json!("25%"),
            ),
            (&d, "/spec/revisionHistoryLimit", json!(10)),
            (&d, "/spec/progressDeadlineSeconds", json!(600)),
            (&d, "/spec/template/spec/restartPolicy", json!("Always")),
            (
                &d,
                "/spec/template/spec/containers/0/imagePullPolicy",
                json!("Always"),
            ),
            (&rs, "/spec/replicas", json!(2)),
            (&rs, "/spec/template/spec/dnsPolicy", json!("ClusterFirst")),
            (&svc, "/spec/type", json!("ClusterIP")),
            (&svc, "/spec/sessionAffinity", json!("None")),
            (&svc, "/spec/ports/0/protocol", json!("TCP")),
            (&svc, "/spec/ports/0/targetPort", json!(80)),
            (&s, "/type", json!("Opaque")),
            (&s, "/data/password", json!("aHVudGVyMg==")),
            (&s, "/data/user", json!("YWRtaW4=")),
            (&s, "/stringData", Value::Null),
            (&ns, "/metadata/namespace", Value::Null),
            (&p, "/metadata/generation", Value::Null),
        ];
        for (v, pointer, want) in table {
            let got = v.pointer(pointer).cloned().unwrap_or(Value::Null);
            assert_eq!(&got, want, "{pointer}");
        }
        // Given values are kept.
        let d = admitted(with(
            deployment(),
            "/spec/strategy",
            json!({"type": "Recreate"}),
        ))
        .value;
        assert_eq!(d.pointer("/spec/strategy/rollingUpdate"), None);
        let d = admitted(with(deployment(), "/spec/replicas", json!(0))).value;
        assert_eq!(d.pointer("/spec/replicas"), Some(&json!(0)));
    }

    /// One broken rule per row: (object, pointer, new value, field, words in the rule).
    #[test]
    fn every_rule_is_reported_with_field_and_words() {
        type Row = (
            fn() -> Value,
            &'static str,
            Value,
            &'static str,
            &'static str,
        );
        let table: Vec<Row> = vec![
            // metadata
            (pod, "/metadata/name", Value::Null, "metadata.name", "name or generateName is required"),
            (pod, "/metadata/name", json!("Web_1"), "metadata.name", "lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (got \"Web_1\")"),
            (pod, "/metadata/name", json!("a".repeat(254)), "metadata.name", "no more than 253"),
            (service, "/metadata/name", json!("web.v1"), "metadata.name", "RFC 1123 label"),
            (namespace, "/metadata/name", json!("a".repeat(64)), "metadata.name", "no more than 63"),
            (node, "/metadata/name", json!("Worker"), "metadata.name", "RFC 1123 subdomain"),
            (pod, "/metadata/namespace", json!("my.ns"), "metadata.namespace", "RFC 1123 label"),
            (pod, "/metadata/labels", json!({"-app": "x"}), "metadata.labels", "name part must consist"),
            (pod, "/metadata/labels", json!({"Example.com/app": "x"}), "metadata.labels", "prefix part"),
            (pod, "/metadata/labels", json!({"app": "x y"}), "metadata.labels[app]", "a valid label must be an empty string"),
            (pod, "/metadata/labels", json!({"app": "a".repeat(64)}), "metadata.labels[app]", "no more than 63"),
            (pod, "/metadata/annotations", json!({"a/b/c": "x"}), "metadata.annotations", "qualified name"),
            (pod, "/metadata/annotations", json!({"big": "x".repeat(300 * 1024)}), "metadata.annotations", "262144 bytes"),
            (pod, "/metadata/ownerReferences", json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": ""}]), "metadata.ownerReferences[0].uid", "required"),
            (pod, "/metadata/ownerReferences", json!([
                {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": true},
                {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": true}]),
                "metadata.ownerReferences", "only one reference"),
            (pod, "/metadata/generateName", json!("Web-"), "metadata.generateName", "RFC 1123 subdomain"),
            // pod spec
            (pod, "/spec/containers", json!([]), "spec.containers", "at least one container"),
            (pod, "/spec", Value::Null, "spec.containers", "at least one container"),
            (pod, "/spec/containers/0/name", json!("Web"), "spec.containers[0].name", "RFC 1123 label"),
            (pod, "/spec/containers/0/name", Value::Null, "spec.containers[0].name", "required"),
            (pod, "/spec/initContainers", json!([{"name": "web", "image": "x"}]), "spec.containers[0].name", "duplicate container name \"web\""),
            (pod, "/spec/containers/0/image", Value::Null, "spec.containers[0].image", "required"),
            (pod, "/spec/containers/0/image", json!(" "), "spec.containers[0].image", "required"),
            (pod, "/spec/containers/0/ports/0/containerPort", json!(0), "spec.containers[0].ports[0].containerPort", "between 1 and 65535"),
            (pod, "/spec/containers/0/ports/0/containerPort", json!(65536), "spec.containers[0].ports[0].containerPort", "between 1 and 65535"),
            (pod, "/spec/containers/0/ports/0/hostPort", json!(70000), "spec.containers[0].ports[0].hostPort", "between 1 and 65535"),
            (pod, "/spec/containers/0/ports/0/name", json!("HTTP"), "spec.containers[0].ports[0].name", "alpha-numeric"),
            (pod, "/spec/containers/0/ports/0/name", json!("80"), "spec.containers[0].ports[0].name", "at least one letter"),
            (pod, "/spec/containers/0/ports/0/name", json!("a--b"), "spec.containers[0].ports[0].name", "consecutive hyphens"),
            (pod, "/spec/containers/0/ports/0/name", json!("-ab"), "spec.containers[0].ports[0].name", "begin or end"),
            (pod, "/spec/containers/0/ports/0/name", json!("abcdefghijklmnop"), "spec.containers[0].ports[0].name", "no more than 15"),
            (pod, "/spec/containers/0/ports/1", json!({"containerPort": 81, "name": "http"}), "spec.containers[0].ports[1].name", "duplicate port name"),
            (pod, "/spec/containers/0/ports/0/protocol", json!("tcp"), "spec.containers[0].ports[0].protocol", "must be one of \"TCP\", \"UDP\", \"SCTP\""),
            (pod, "/spec/containers/0/env", json!([{"name": "1X", "value": "v"}]), "spec.containers[0].env[0].name", "environment variable name"),
            (pod, "/spec/containers/0/env", json!([{"name": "", "value": "v"}]), "spec.containers[0].env[0].name", "required"),
            (pod, "/spec/containers/0/env", json!([{"name": "A", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]), "spec.containers[0].env[0].valueFrom", "may not be specified"),
            (pod, "/spec/containers/0/resources", json!({"requests": {"cpu": "lots"}}), "spec.containers[0].resources.requests[cpu]", "\"lots\""),
            (pod, "/spec/containers/0/resources", json!({"limits": {"memory": "-1Gi"}}), "spec.containers[0].resources.limits[memory]", "greater than or equal to 0"),
            (pod, "/spec/containers/0/resources", json!({"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}), "spec.containers[0].resources.requests[cpu]", "less than or equal to cpu limit of 500m"),
            (pod, "/spec/restartPolicy", json!("Sometimes"), "spec.restartPolicy", "\"Always\", \"OnFailure\", \"Never\""),
            (pod, "/spec/dnsPolicy", json!("Google"), "spec.dnsPolicy", "must be one of"),
            (pod, "/spec/terminationGracePeriodSeconds", json!(-1), "spec.terminationGracePeriodSeconds", "greater than or equal to 0"),
            (pod, "/spec/activeDeadlineSeconds", json!(0), "spec.activeDeadlineSeconds", "greater than or equal to 1"),
            (pod, "/spec/nodeSelector", json!({"disk": "s s d"}), "spec.nodeSelector[disk]", "valid label"),
            (pod, "/spec/tolerations", json!([{"key": "k", "operator": "Maybe"}]), "spec.tolerations[0].operator", "\"Equal\", \"Exists\""),
            (pod, "/spec/tolerations", json!([{"key": "k", "operator": "Exists", "value": "v"}]), "spec.tolerations[0].value", "must be empty"),
            (pod, "/spec/tolerations", json!([{"key": "k", "effect": "NoWay"}]), "spec.tolerations[0].effect", "must be one of"),
            (pod, "/spec/volumes", json!([{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]), "spec.volumes[1].name", "duplicate volume name"),
            (pod, "/spec/containers/0/volumeMounts", json!([{"name": "nope", "mountPath": "/x"}]), "spec.containers[0].volumeMounts[0].name", "no volume named \"nope\""),
            (pod, "/spec/containers/0/imagePullPolicy", json!("Sometimes"), "spec.containers[0].imagePullPolicy", "must be one of"),
            (pod, "/spec/containers/0/restartPolicy", json!("Always"), "spec.containers[0].restartPolicy", "only be set on init containers"),
            // probes
            (pod, "/spec/containers/0/livenessProbe", json!({"periodSeconds": 5}), "spec.containers[0].livenessProbe", "must specify a handler type"),
            (pod, "/spec/containers/0/livenessProbe", json!({"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}), "spec.containers[0].livenessProbe", "more than one handler"),
            (pod, "/spec/containers/0/readinessProbe", json!({"exec": {"command": ["true"]}, "periodSeconds": 0}), "spec.containers[0].readinessProbe.periodSeconds", "greater than or equal to 1"),
            (pod, "/spec/containers/0/readinessProbe", json!({"exec": {"command": ["true"]}, "initialDelaySeconds": -1}), "spec.containers[0].readinessProbe.initialDelaySeconds", "greater than or equal to 0"),
            (pod, "/spec/containers/0/readinessProbe", json!({"exec": {"command": ["true"]}, "timeoutSeconds": -1}), "spec.containers[0].readinessProbe.timeoutSeconds", "greater than or equal to 0"),
            (pod, "/spec/containers/0/readinessProbe", json!({"exec": {"command": ["true"]}, "failureThreshold": 0}), "spec.containers[0].readinessProbe.failureThreshold", "greater than or equal to 1"),
            (pod, "/spec/containers/0/readinessProbe", json!({"exec": {"command": ["true"]}, "successThreshold": 0}), "spec.containers[0].readinessProbe.successThreshold", "greater than or equal to 1"),
            (pod, "/spec/containers/0/livenessProbe", json!({"exec": {"command": ["true"]}, "successThreshold": 2}), "spec.containers[0].livenessProbe.successThreshold", "must be 1"),
            (pod, "/spec/containers/0/startupProbe", json!({"exec": {}}), "spec.containers[0].startupProbe.exec.command", "required"),
            (pod, "/spec/containers/0/startupProbe", json!({"httpGet": {"port": 0}}), "spec.containers[0].startupProbe.httpGet.port", "between 1 and 65535"),
            (pod, "/spec/containers/0/startupProbe", json!({"tcpSocket": {"port": "HTTP"}}), "spec.containers[0].startupProbe.tcpSocket.port", "alpha-numeric"),
            // deployment / replica set
            (deployment, "/spec/replicas", json!(-1), "spec.replicas", "greater than or equal to 0"),
            (deployment, "/spec/selector", Value::Null, "spec.selector", "empty selector"),
            (deployment, "/spec/selector", json!({"matchLabels": {}}), "spec.selector", "empty selector"),
            (deployment, "/spec/selector", json!({"matchExpressions": [{"key": "app", "operator": "In"}]}), "spec.selector", "at least one value"),
            (deployment, "/spec/selector/matchLabels/app", json!("db"), "spec.template.metadata.labels", "selector does not match template labels"),
            (deployment, "/spec/template/metadata", Value::Null, "spec.template.metadata.labels", "selector does not match template labels"),
            (deployment, "/spec/template/spec/restartPolicy", json!("Never"), "spec.template.spec.restartPolicy", "must be \"Always\""),
            (deployment, "/spec/template/spec/containers/0/name", json!("Web"), "spec.template.spec.containers[0].name", "RFC 1123 label"),
            (deployment, "/spec/template/spec", Value::Null, "spec.template.spec.containers", "at least one container"),
            (deployment, "/spec/template/metadata/labels/Bad Key", json!("x"), "spec.template.metadata.labels", "name part"),
            (deployment, "/spec/strategy", json!({"type": "Blue"}), "spec.strategy.type", "must be one of"),
            (deployment, "/spec/strategy", json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}), "spec.strategy.rollingUpdate", "may not be specified"),
            (deployment, "/spec/strategy", json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}), "spec.strategy.rollingUpdate.maxUnavailable", "may not be 0 when maxSurge is 0"),
            (deployment, "/spec/strategy", json!({"rollingUpdate": {"maxUnavailable": "150%"}}), "spec.strategy.rollingUpdate.maxUnavailable", "greater than 100%"),
            (deployment, "/spec/strategy", json!({"rollingUpdate": {"maxSurge": "lots"}}), "spec.strategy.rollingUpdate.maxSurge", "percentage"),
            (deployment, "/spec/strategy", json!({"rollingUpdate": {"maxSurge": -1}}), "spec.strategy.rollingUpdate.maxSurge", "greater than or equal to 0"),
            (deployment, "/spec/revisionHistoryLimit", json!(-1), "spec.revisionHistoryLimit", "greater than or equal to 0"),
            (deployment, "/spec/progressDeadlineSeconds", json!(0), "spec.progressDeadlineSeconds", "greater than minReadySeconds"),
            (deployment, "/spec", Value::Null, "spec", "required"),
            (replica_set, "/spec/replicas", json!(-3), "spec.replicas", "greater than or equal to 0"),
            (replica_set, "/spec/template", Value::Null, "spec.template", "required"),
            (replica_set, "/spec/minReadySeconds", json!(-1), "spec.minReadySeconds", "greater than or equal to 0"),
            (replica_set, "/spec/template/metadata/labels/app", json!("db"), "spec.template.metadata.labels", "selector does not match template labels"),
            // service
            (service, "/spec/ports/0/port", json!(0), "spec.ports[0].port", "between 1 and 65535"),
            (service, "/spec/ports", json!([]), "spec.ports", "at least one port"),
            (service, "/spec/ports/1", json!({"port": 81}), "spec.ports[0].name", "required value when there is more than one port"),
            (service, "/spec/ports", json!([{"port": 80, "name": "a"}, {"port": 81, "name": "a"}]), "spec.ports[1].name", "duplicate port name"),
            (service, "/spec/ports/0/name", json!("HTTP"), "spec.ports[0].name", "RFC 1123 label"),
            (service, "/spec/ports/0/targetPort", json!(0), "spec.ports[0].targetPort", "between 1 and 65535"),
            (service, "/spec/ports/0/targetPort", json!("Web--x"), "spec.ports[0].targetPort", "alpha-numeric"),
            (service, "/spec/ports/0/protocol", json!("HTTP"), "spec.ports[0].protocol", "must be one of"),
            (service, "/spec/type", json!("Magic"), "spec.type", "\"ClusterIP\", \"NodePort\", \"LoadBalancer\", \"ExternalName\""),
            (service, "/spec/type", json!("NodePort"), "", ""),
            (service, "/spec/ports/0/nodePort", json!(30080), "spec.ports[0].nodePort", "may not be used when type is \"ClusterIP\""),
            (service, "/spec/sessionAffinity", json!("Sticky"), "spec.sessionAffinity", "must be one of"),
            (service, "/spec/clusterIP", json!("10.0.0.300"), "spec.clusterIP", "valid IP address"),
            (service, "/spec/selector", json!({"app": "-x"}), "spec.selector[app]", "valid label"),
            (service, "/spec/type", json!("ExternalName"), "spec.externalName", "required"),
            // config map / secret
            (config_map, "/data/a b", json!("x"), "data[a b]", "valid config key"),
            (config_map, "/data/..", json!("x"), "data[..]", "must not be '.' or '..'"),
            (config_map, "/data/b.bin", json!("x"), "binaryData[b.bin]", "duplicate of key \"b.bin\" in data"),
            (config_map, "/binaryData/x", json!("not base64!"), "binaryData[x]", "must be base64-encoded data (Invalid symbol 32, offset 3)"),
            (config_map, "/data/big", json!("x".repeat(1024 * 1024)), "data", "1048576 bytes"),
            (config_map, "/data/k", json!(3), "data[k]", "must be a string"),
            (secret, "/stringData/a~b", json!("x"), "data[a~b]", "valid config key"),
            (secret, "/data/c", json!("***"), "data[c]", "must be base64-encoded data"),
            (secret, "/type", json!(""), "", ""),
            // node / event
            (node, "/spec/taints/0/effect", json!("Never"), "spec.taints[0].effect", "must be one of"),
            (node, "/spec/taints/0/key", json!("bad key"), "spec.taints[0].key", "name part"),
            (event, "/type", json!("Error"), "type", "\"Normal\", \"Warning\""),
            (event, "/count", json!(-1), "count", "greater than or equal to 0"),
            (event, "/involvedObject/namespace", json!("other"), "involvedObject.namespace", "does not match"),
            // wrong JSON types
            (deployment, "/spec/replicas", json!("3"), "spec.replicas", "must be a 32-bit integer (got string \"3\")"),
            (deployment, "/spec/replicas", json!(1.5), "spec.replicas", "must be a 32-bit integer"),
            (deployment, "/spec/replicas", json!(3_000_000_000u64), "spec.replicas", "32-bit integer"),
            (pod, "/spec/containers", json!({"name": "x"}), "spec.containers", "must be a list"),
            (pod, "/spec/containers/0", json!("nginx"), "spec.containers[0]", "must be a mapping"),
            (pod, "/metadata/labels/app", json!(1), "metadata.labels[app]", "must be a string"),
            (pod, "/metadata/labels", json!({"app.kubernetes.io/name": true}), "metadata.labels[app.kubernetes.io/name]", "must be a string"),
            (pod, "/metadata", json!("web"), "metadata", "must be a mapping"),
            (pod, "/spec/containers/0/env", json!([{"name": "A", "value": 1}]), "spec.containers[0].env[0].value", "must be a string"),
            (pod, "/spec/hostNetwork", json!("yes"), "spec.hostNetwork", "must be a boolean"),
            (service, "/spec/ports/0/targetPort", json!([80]), "spec.ports[0].targetPort", "must be an integer or a string"),
            // unknown fields
            (pod, "/spec/containers/0/imagee", json!("x"), "spec.containers[0].imagee", "unknown field"),
            (deployment, "/spec/templte", json!({}), "spec.templte", "unknown field"),
            (pod, "/metadata/labelz", json!({"a": "b"}), "metadata.labelz", "unknown field"),
            (pod, "/spek", json!({}), "spek", "unknown field"),
            // kinds
            (pod, "/kind", json!("Ingress"), "kind", "not supported by kubus yet"),
            (pod, "/kind", json!("Frobnicator"), "kind", "unknown kind"),
            (pod, "/kind", Value::Null, "kind", "required value"),
            (pod, "/kind", json!(7), "kind", "must be a string"),
            (pod, "/apiVersion", Value::Null, "apiVersion", "required value"),
            (pod, "/apiVersion", json!("apps/v1"), "apiVersion", "does not serve kind"),
            (deployment, "/apiVersion", json!("extensions/v1beta1"), "apiVersion", "use \"apps/v1\""),
        ];
        for (base, pointer, value, field, rule) in table {
            let v = with(base(), pointer, value.clone());
            let result = admit(v.clone());
            if field.is_empty() && rule.is_empty() {
                // Rows that must pass (next to their failing neighbours).
                if let Err(e) = result {
                    panic!("{pointer} = {value}: unexpected {e}");
                }
                continue;
            }
            let e = match result {
                Ok(_) => panic!("{pointer} = {value}: admitted, expected {field}: {rule}"),
                Err(e) => e,
            };
            assert_eq!(e.reason, Reason::Invalid, "{e}");
            assert!(
                e.causes
                    .iter()
                    .any(|c| c.field == field && c.rule.contains(rule)),
                "{pointer} = {value}: want {field}: {rule}\n got {e}"
            );
            assert!(e.message.contains(field), "{}", e.message);
        }
    }

    #[test]
    fn all_broken_rules_are_collected() {
        let v = with(
            with(
                with(
                    with(pod(), "/metadata/name", json!("Bad_Name")),
                    "/spec/restartPolicy",
                    json!("Nope"),
                ),
                "/spec/containers/1",
                json!({"name": "web", "image": ""}),
            ),
            "/spec/containers/0/ports/0/containerPort",
            json!(0),
        );
        let e = admit(v).expect_err("invalid");
        let fields: Vec<&str> = e.causes.iter().map(|c| c.field.as_str()).collect();
        for want in [
            "metadata.name",
            "spec.restartPolicy",
            "spec.containers[1].name",
            "spec.containers[1].image",
            "spec.containers[0].ports[0].containerPort",
        ] {
            assert!(fields.contains(&want), "{want} missing from {fields:?}");
        }
        // The name is known (if invalid), so the error names the object.
        assert_eq!(
            e.object.as_ref().map(ToString::to_string).as_deref(),
            Some("Pod default/Bad_Name")
        );

        // Several wrong types at once, and metadata rules next to them.
        let v = with(
            with(
                with(deployment(), "/spec/replicas", json!("3")),
                "/spec/template/spec/containers/0/ports",
                json!([{"containerPort": "80"}]),
            ),
            "/metadata/labels",
            json!({"ok": "-bad"}),
        );
        let e = admit(v).expect_err("invalid");
        let fields: Vec<&str> = e.causes.iter().map(|c| c.field.as_str()).collect();
        assert!(fields.contains(&"spec.replicas"), "{e}");
        assert!(
            fields.contains(&"spec.template.spec.containers[0].ports[0].containerPort"),
            "{e}"
        );
        assert!(fields.contains(&"metadata.labels[ok]"), "{e}");
        assert_eq!(
            e.object.as_ref().map(ToString::to_string).as_deref(),
            Some("Deployment shop/web")
        );
    }

    #[test]
    fn errors_name_the_object() {
        let e = admit(with(deployment(), "/spec/replicas", json!(-1))).expect_err("invalid");
        assert_eq!(
            e.to_string(),
            "Invalid: Deployment shop/web is invalid: spec.replicas: must be greater than or equal to 0 (got -1)"
        );
        let e = admit(with(pod(), "/kind", json!("Ingress"))).expect_err("invalid");
        assert_eq!(e.object, None);
        assert_eq!(e.causes[0].field, "kind");
        let e = admit(json!("Pod")).expect_err("invalid");
        assert_eq!(e.causes[0].field, OBJECT_FIELD);
        assert!(e.causes[0].rule.contains("got a string"), "{e}");
    }

    #[test]
    fn too_many_causes_are_bounded() {
        let labels: Map<String, Value> = (0..500).map(|i| (format!("-k{i}"), json!("v"))).collect();
        let e = admit(with(pod(), "/metadata/labels", Value::Object(labels))).expect_err("invalid");
        assert_eq!(e.causes.len(), CAUSES_MAX + 1);
        assert!(
            e.causes[CAUSES_MAX].rule.contains("400 more"),
            "{:?}",
            e.causes.last()
        );
    }

    #[test]
    fn generate_name() {
        let v = with(
            with(pod(), "/metadata/name", Value::Null),
            "/metadata/generateName",
            json!("web-"),
        );
        let mut a = admitted(v);
        assert_eq!(a.object.name, "");
        a.set_name("web-x7k2p");
        assert_eq!(a.object.to_string(), "Pod default/web-x7k2p");
        assert_eq!(meta::name(&a.value), Some("web-x7k2p"));
        let v = with(
            with(pod(), "/metadata/name", Value::Null),
            "/metadata/generateName",
            json!("a".repeat(250)),
        );
        let e = admit(v).expect_err("too long");
        assert!(
            e.to_string().contains("room for the generated suffix"),
            "{e}"
        );
    }

    #[test]
    fn update_rules() {
        type Row = (Kind, Value, Value, &'static [&'static str]);
        let table: Vec<Row> = vec![
            (Kind::Pod, pod(), pod(), &[]),
            (
                Kind::Pod,
                pod(),
                with(pod(), "/metadata/name", json!("web-2")),
                &["metadata.name"],
            ),
            (
                Kind::Pod,
                with(pod(), "/metadata/namespace", json!("a")),
                with(pod(), "/metadata/namespace", json!("b")),
                &["metadata.namespace"],
            ),
            (
                Kind::Pod,
                pod(),
                with(pod(), "/metadata/namespace", json!("default")),
                &[],
            ),
            (
                Kind::Pod,
                with(pod(), "/metadata/uid", json!("u1")),
                with(pod(), "/metadata/uid", json!("u2")),
                &["metadata.uid"],
            ),
            (
                Kind::Pod,
                with(pod(), "/metadata/uid", json!("u1")),
                pod(),
                &[],
            ),
            (
                Kind::Pod,
                pod(),
                with(pod(), "/spec/containers/0/image", json!("nginx:1.26")),
                &[],
            ),
            (
                Kind::Pod,
                pod(),
                with(pod(), "/spec/containers/0/name", json!("app")),
                &["spec.containers[0].name"],
            ),
            (
                Kind::Pod,
                pod(),
                with(pod(), "/spec/containers/0/command", json!(["sh"])),
                &["spec.containers[0].command"],
            ),
            (
                Kind::Pod,
                pod(),
                with(
                    pod(),
                    "/spec/containers/1",
                    json!({"name": "b", "image": "x"}),
                ),
                &["spec.containers"],
            ),
            (
                Kind::Pod,
                pod(),
                with(pod(), "/spec/nodeName", json!("n1")),
                &[],
            ),
            (
                Kind::Pod,
                with(pod(), "/spec/nodeName", json!("n1")),
                with(pod(), "/spec/nodeName", json!("n2")),
                &["spec.nodeName"],
            ),
            (
                Kind::Deployment,
                deployment(),
                with(deployment(), "/spec/replicas", json!(5)),
                &[],
            ),
            (
                Kind::Deployment,
                deployment(),
                with(deployment(), "/spec/selector/matchLabels/tier", json!("x")),
                &["spec.selector"],
            ),
            (
                Kind::ReplicaSet,
                replica_set(),
                with(
                    replica_set(),
                    "/spec/selector",
                    json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}),
                ),
                &["spec.selector"],
            ),
            (
                Kind::Service,
                with(service(), "/spec/clusterIP", json!("10.0.0.1")),
                with(service(), "/spec/clusterIP", json!("10.0.0.2")),
                &["spec.clusterIP"],
            ),
            (
                Kind::Service,
                with(service(), "/spec/clusterIP", json!("10.0.0.1")),
                service(),
                &[],
            ),
            (
                Kind::Service,
                service(),
                with(service(), "/spec/clusterIP", json!("10.0.0.2")),
                &[],
            ),
            (
                Kind::Namespace,
                namespace(),
                with(namespace(), "/metadata/name", json!("other")),
                &["metadata.name"],
            ),
            (
                Kind::ConfigMap,
                with(config_map(), "/immutable", json!(true)),
                with(
                    with(config_map(), "/immutable", json!(true)),
                    "/data/a.txt",
                    json!("y"),
                ),
                &["data"],
            ),
            (
                Kind::ConfigMap,
                with(config_map(), "/immutable", json!(true)),
                config_map(),
                &["immutable"],
            ),
            (
                Kind::ConfigMap,
                config_map(),
                with(config_map(), "/data/a.txt", json!("y")),
                &[],
            ),
            (Kind::Node, node(), json!(42), &["metadata.name"]),
            // graceful deletion (issue 5): the deletion fields are the delete's
            (
                Kind::Pod,
                terminating(),
                with(terminating(), "/status/phase", json!("Failed")),
                &[],
            ),
            (
                Kind::Pod,
                terminating(),
                with(terminating(), "/metadata/deletionTimestamp", Value::Null),
                &["metadata.deletionTimestamp"],
            ),
            (
                Kind::Pod,
                terminating(),
                with(
                    with(
                        terminating(),
                        "/metadata/deletionTimestamp",
                        json!("2030-01-01T00:00:00Z"),
                    ),
                    "/metadata/deletionGracePeriodSeconds",
                    json!(1),
                ),
                &[
                    "metadata.deletionTimestamp",
                    "metadata.deletionGracePeriodSeconds",
                ],
            ),
            (
                Kind::Pod,
                pod(),
                with(
                    pod(),
                    "/metadata/deletionTimestamp",
                    json!("2030-01-01T00:00:00Z"),
                ),
                &["metadata.deletionTimestamp"],
            ),
        ];
        for (kind, old, new, want) in table {
            let got = validate_update(kind, &old, &new);
            let fields: Vec<&str> = got.iter().map(|c| c.field.as_str()).collect();
            assert_eq!(fields, want, "{kind}: {got:?}");
            assert!(got.iter().all(|c| !c.rule.is_empty()));
        }
    }

    #[test]
    fn serde_messages_in_words() {
        assert_eq!(
            serde_rule("invalid type: string \"3\", expected i32"),
            "must be a 32-bit integer (got string \"3\")"
        );
        assert_eq!(
            serde_rule("invalid type: map, expected a sequence"),
            "must be a list (got map)"
        );
        assert_eq!(serde_rule("something else"), "something else");
        assert_eq!(
            render_path(&[
                PathStep::Key("metadata".into()),
                PathStep::Key("labels".into()),
                PathStep::Key("app.kubernetes.io/name".into()),
            ]),
            "metadata.labels[app.kubernetes.io/name]"
        );
        assert_eq!(render_path(&[]), OBJECT_FIELD);
    }

    /// Where the shared real-world example manifests are.
    fn examples_dir() -> std::path::PathBuf {
        let dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
            .join("../../shared/k8s-examples");
        if dir.exists() {
            dir
        } else {
            std::path::PathBuf::from("/work/shared/k8s-examples")
        }
    }

    /// Every real manifest in /work/shared/k8s-examples parses, and each
    /// document is admitted or refused with a message naming field and rule.
    /// Run with `--nocapture` to see the outcome of each document.
    #[test]
    fn real_manifests() {
        let dir = examples_dir();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            println!("no examples at {} — skipped", dir.display());
            return;
        };
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        assert!(!files.is_empty());
        let (mut ok, mut refused) = (0, 0);
        for path in files {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path).expect("readable example");
            let docs = parse_documents(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!docs.is_empty(), "{name}");
            for doc in docs {
                match admit(doc.value.clone()) {
                    Ok(a) => {
                        ok += 1;
                        println!("{name} {}: admitted {}", doc.describe(), a.object);
                    }
                    Err(e) => {
                        refused += 1;
                        println!("{name} {}: refused: {e}", doc.describe());
                        assert_eq!(e.reason, Reason::Invalid);
                        assert!(!e.causes.is_empty(), "{e}");
                        for c in &e.causes {
                            assert!(!c.field.is_empty() && !c.rule.is_empty(), "{e}");
                            assert!(e.message.contains(&c.to_string()), "{e}");
                        }
                    }
                }
            }
        }
        println!("{ok} admitted, {refused} refused");
        assert!(ok >= 10, "most documents use served kinds");
    }

    const YAML_SAMPLE: &str = r#"# a sample
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports: [{containerPort: 80}]
        env:
        - {name: MODE, value: "prod"}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web}
  spec: {ports: [{port: 80}], selector: {app: web}}
"#;

    /// Seeded fuzzing of manifest parsing and admission. Each run feeds at
    /// least 10,000 manifests through `parse_documents` + `admit`: real
    /// objects mutated as values (admitted directly, then written out as
    /// JSON or YAML and parsed back) and manifest text mutated as text. It
    /// asserts that nothing panics, that every refusal is `Invalid` with at
    /// least one cause and every cause has a field and a rule, and that no
    /// input takes 100 ms or more to parse and admit (in a debug build).
    /// Replay a run with the seed it prints:
    /// `KUBUS_FUZZ_SEED=<seed> cargo test -p kubus-api fuzz -- --nocapture`.
    mod fuzz {
        use std::panic::{catch_unwind, AssertUnwindSafe};
        use std::time::{Duration, Instant};

        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};

        use super::*;

        /// Cases per run; each case makes two manifest texts (and one
        /// object admitted directly).
        const CASES: usize = 6_000;
        /// The issue's floor on manifests per run.
        const INPUTS_MIN: usize = 10_000;
        /// "No input takes more than 100 ms" (parse + admit, debug build).
        const INPUT_MS_MAX: u128 = 100;
        /// Generated texts stop growing past this size; the time bound is
        /// for manifests of the size people write, not for the 3 MiB limit.
        const INPUT_BYTES_MAX: usize = 64 * 1024;
        /// A slow first measurement is retaken this many times and the
        /// fastest kept, so that a descheduled test thread is not taken for
        /// a slow input (a slow input is slow every time).
        const RETIMES: usize = 3;

        /// Why a refusal breaks the error contract, if it does.
        fn refusal_problem(e: &ApiError) -> Option<String> {
            if e.reason != Reason::Invalid {
                return Some(format!("refused as {:?}, not Invalid: {e}", e.reason));
            }
            if e.causes.is_empty() {
                return Some(format!("Invalid without causes: {e}"));
            }
            e.causes
                .iter()
                .find(|c| c.field.is_empty() || c.rule.is_empty())
                .map(|c| format!("cause without field or rule ({c:?}): {e}"))
        }

        #[derive(Default)]
        struct Outcome {
            admitted: usize,
            refused: usize,
            unparsed: usize,
        }

        /// Parse and admit every document of `text`; the time covers both.
        /// `None` when the text does not parse.
        fn parse_and_admit(text: &str) -> (Duration, Option<Vec<Result<Admitted, ApiError>>>) {
            let start = Instant::now();
            let results = parse_documents(text)
                .ok()
                .map(|docs| docs.into_iter().map(|d| admit(d.value)).collect());
            (start.elapsed(), results)
        }

        /// The slowest input so far.
        struct Slowest {
            took: Duration,
            bytes: usize,
            case: usize,
            text: String,
        }

        struct Run {
            seed: u64,
            inputs: usize,
            outcome: Outcome,
            slowest: Slowest,
        }

        impl Run {
            /// Parse and admit one manifest text and check the outcome.
            fn feed(&mut self, case: usize, text: &str) {
                let seed = self.seed;
                let measured = catch_unwind(AssertUnwindSafe(|| parse_and_admit(text)));
                let Ok((mut took, results)) = measured else {
                    panic!("seed {seed} case {case}: panicked on this input:\n{text}");
                };
                self.inputs += 1;
                match results {
                    None => self.outcome.unparsed += 1,
                    Some(results) => {
                        for result in results {
                            match result {
                                Ok(_) => self.outcome.admitted += 1,
                                Err(e) => {
                                    self.outcome.refused += 1;
                                    if let Some(problem) = refusal_problem(&e) {
                                        panic!("seed {seed} case {case}: {problem}\n{text}");
                                    }
                                }
                            }
                        }
                    }
                }
                if took.as_millis() >= INPUT_MS_MAX {
                    took = (0..RETIMES)
                        .map(|_| parse_and_admit(text).0)
                        .min()
                        .unwrap_or(took);
                }
                if took > self.slowest.took {
                    self.slowest = Slowest {
                        took,
                        bytes: text.len(),
                        case,
                        text: text.to_string(),
                    };
                }
            }
        }

        const WORDS: &[&str] = &[
            "",
            "a",
            "web",
            "Web_1",
            "-x",
            "80",
            "http",
            "TCP",
            "Always",
            "25%",
            "500m",
            "128Mi",
            "lots",
            "app",
            "a/b",
            "é",
            "nginx:latest",
            "v1",
            "Pod",
            "List",
        ];

        const KEYS: &[&str] = &[
            "name",
            "image",
            "port",
            "containers",
            "labels",
            "spec",
            "metadata",
            "replicas",
            "selector",
            "matchLabels",
            "template",
            "x",
        ];

        fn random_value(rng: &mut StdRng, depth: u32) -> Value {
            match rng.gen_range(0..if depth == 0 { 6 } else { 8 }) {
                0 => Value::Null,
                1 => Value::Bool(rng.gen()),
                2 => json!(rng.gen_range(-70_000i64..70_000)),
                3 => json!(rng.gen::<i64>()),
                4 => json!(rng.gen::<f64>() * 100.0),
                5 => json!(WORDS[rng.gen_range(0..WORDS.len())]),
                6 => Value::Array(
                    (0..rng.gen_range(0..3))
                        .map(|_| random_value(rng, depth - 1))
                        .collect(),
                ),
                _ => Value::Object(
                    (0..rng.gen_range(0..3))
                        .map(|_| {
                            (
                                KEYS[rng.gen_range(0..KEYS.len())].to_string(),
                                random_value(rng, depth - 1),
                            )
                        })
                        .collect(),
                ),
            }
        }

        /// Every JSON pointer in `v`.
        fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, child) in m {
                        let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                        out.push(p.clone());
                        pointers(child, p, out);
                    }
                }
                Value::Array(a) => {
                    for (i, child) in a.iter().enumerate() {
                        let p = format!("{at}/{i}");
                        out.push(p.clone());
                        pointers(child, p, out);
                    }
                }
                _ => {}
            }
        }

        /// Delete, replace or duplicate one to three fields or elements.
        fn mutate_value(rng: &mut StdRng, mut v: Value) -> Value {
            for _ in 0..rng.gen_range(1..4) {
                let mut ps = Vec::new();
                pointers(&v, String::new(), &mut ps);
                if ps.is_empty() {
                    break;
                }
                let p = ps[rng.gen_range(0..ps.len())].clone();
                let (parent, last) = p.rsplit_once('/').unwrap_or(("", ""));
                let last = last.replace("~1", "/").replace("~0", "~");
                match rng.gen_range(0..10) {
                    0..=2 => match v.pointer_mut(parent) {
                        Some(Value::Object(m)) => {
                            m.remove(&last);
                        }
                        Some(Value::Array(a)) => {
                            if let Ok(i) = last.parse::<usize>() {
                                if i < a.len() {
                                    a.remove(i);
                                }
                            }
                        }
                        _ => {}
                    },
                    3 => {
                        // Duplicate a list element (same name twice) or
                        // copy a field's value into another key.
                        let copy = v.pointer(&p).cloned().unwrap_or(Value::Null);
                        match v.pointer_mut(parent) {
                            Some(Value::Array(a)) => a.push(copy),
                            Some(Value::Object(m)) => {
                                let key = KEYS[rng.gen_range(0..KEYS.len())];
                                m.insert(key.to_string(), copy);
                            }
                            _ => {}
                        }
                    }
                    _ => {
                        let new = random_value(rng, 3);
                        if let Some(slot) = v.pointer_mut(&p) {
                            *slot = new;
                        }
                    }
                }
            }
            v
        }

        /// Lines that YAML parsers and admission find hard, inserted into
        /// text at a line's indentation.
        fn snippets() -> Vec<String> {
            let mut s: Vec<String> = [
                "x: &a [1, 2, 3]",
                "y: *a",
                "- *a",
                "<<: *a",
                "<<: {name: merged}",
                "k: !!binary aGk=",
                "k: !!str 5",
                "k: !!int x",
                "k: !custom 1",
                "? [a, b]\n: c",
                "---",
                "...",
                "%YAML 1.2\n---",
                "%TAG ! tag:example.com,2000:",
                "k: |\n  line one\n  line two",
                "k: >-\n  folded",
                "{{{{",
                "]]]]",
                "k: 0x1F",
                "k: 0o17",
                "k: 0644",
                "k: 1e400",
                "k: -.inf",
                "k: .nan",
                "k: ~",
                "k: 99999999999999999999999",
                "k: \"\\uD800\"",
                "k: \"\\0\"",
                "\tk: tab",
                "k: 'unterminated",
                "- - - - -",
                "k: yes",
                "name: ''",
                "name: Web_1",
                "replicas: -1",
                "replicas: '3'",
                "containers: []",
                "containers: [{name: a}, {name: a}]",
                "labels: {'': x}",
                "labels: {a: [1]}",
                "image: \"\"",
                "port: 65536",
                "containerPort: 0",
                "namespace: Not_Valid",
                "\u{feff}k: bom",
                "apiVersion: v1\nkind: List\nitems: [1]",
                "kind: PodList\nitems: [{metadata: {name: p}}]",
                "metadata: [1]",
                "metadata:",
                "status: {phase: Running}",
            ]
            .map(String::from)
            .to_vec();
            // Nesting past the parsers' limits, flow and block.
            s.push(format!("k: {}{}", "[".repeat(300), "]".repeat(300)));
            s.push(format!("k: {}1{}", "{a: ".repeat(100), "}".repeat(100)));
            s.push(
                (0..200)
                    .map(|i| format!("{}k{i}:", " ".repeat(i)))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
            // A long scalar and a long key.
            s.push(format!("k: {}", "a".repeat(20_000)));
            s.push(format!("{}: 1", "k".repeat(5_000)));
            // Billion laughs: nine levels of nine aliases each.
            let mut laughs = String::from("l0: &l0 [x, x, x, x, x, x, x, x, x]");
            for i in 1..10 {
                let refs = vec![format!("*l{}", i - 1); 9].join(", ");
                laughs.push_str(&format!("\nl{i}: &l{i} [{refs}]"));
            }
            s.push(laughs);
            // A storm of empty documents and of tiny ones.
            s.push("---\n".repeat(3_000));
            s.push("--- {}\n".repeat(2_000));
            s
        }

        /// One edit to manifest text.
        fn mutate_text_once(rng: &mut StdRng, snippets: &[String], text: &str) -> String {
            const NOISE: &[char] = &[
                '-', ':', ' ', '\n', '{', '[', '"', '\'', '#', '&', '*', '!', '|', '>', '?', '%',
                '@', '`', ',', '\t', '\\', '0', 'x', 'é', '\u{0}',
            ];
            let chars: Vec<char> = text.chars().collect();
            let at = rng.gen_range(0..=chars.len());
            let noise = NOISE[rng.gen_range(0..NOISE.len())];
            let lines: Vec<&str> = text.split('\n').collect();
            let line = rng.gen_range(0..lines.len());
            let indent: String = lines[line].chars().take_while(|c| *c == ' ').collect();
            let rejoin = |lines: Vec<String>| lines.join("\n");
            let owned = || lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
            match rng.gen_range(0..9) {
                0 => chars[..at].iter().collect(),
                1 => chars
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != at)
                    .map(|(_, c)| c)
                    .collect(),
                2 => chars
                    .iter()
                    .enumerate()
                    .map(|(i, c)| if i == at { noise } else { *c })
                    .collect(),
                3 => {
                    let mut out = chars.clone();
                    out.insert(at, noise);
                    out.into_iter().collect()
                }
                4 => {
                    let mut out = owned();
                    out.insert(line, lines[line].to_string());
                    rejoin(out)
                }
                5 => {
                    let mut out = owned();
                    out.remove(line);
                    rejoin(out)
                }
                6 => {
                    let snippet = &snippets[rng.gen_range(0..snippets.len())];
                    let indented: Vec<String> = snippet
                        .split('\n')
                        .map(|l| format!("{indent}{l}"))
                        .collect();
                    let mut out = owned();
                    out.insert(line, indented.join("\n"));
                    rejoin(out)
                }
                7 => {
                    let mut out = owned();
                    out[line] = if rng.gen_bool(0.5) {
                        format!("{}{}", " ".repeat(rng.gen_range(1..4)), lines[line])
                    } else {
                        lines[line].chars().skip(rng.gen_range(1..3)).collect()
                    };
                    rejoin(out)
                }
                _ => format!("{text}\n---\n{text}"),
            }
        }

        /// One to three edits, never growing the text past
        /// [`INPUT_BYTES_MAX`].
        fn mutate_text(rng: &mut StdRng, snippets: &[String], text: &str) -> String {
            let mut out = text.to_string();
            for _ in 0..rng.gen_range(1..=3) {
                let next = mutate_text_once(rng, snippets, &out);
                if next.len() <= INPUT_BYTES_MAX {
                    out = next;
                }
            }
            out
        }

        /// An object as manifest text: compact JSON, indented JSON or YAML.
        fn render(rng: &mut StdRng, v: &Value) -> String {
            match rng.gen_range(0..3) {
                0 => v.to_string(),
                1 => format!("{v:#}"),
                _ => serde_saphyr::to_string(v).unwrap_or_else(|_| v.to_string()),
            }
        }

        /// The texts of the shared real-world examples (none if absent).
        fn example_texts() -> Vec<String> {
            let Ok(entries) = std::fs::read_dir(examples_dir()) else {
                return Vec::new();
            };
            let mut paths: Vec<_> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .collect();
            paths.sort();
            paths
                .iter()
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .collect()
        }

        #[test]
        fn random_and_mutated_manifests_never_panic() {
            let seed = std::env::var("KUBUS_FUZZ_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0x6b75_6275_u64);
            let mut rng = StdRng::seed_from_u64(seed);
            let started = Instant::now();

            let sample = parse_documents(YAML_SAMPLE).expect("sample parses");
            assert_eq!(sample.len(), 2);
            let mut objects = vec![
                pod(),
                deployment(),
                replica_set(),
                service(),
                config_map(),
                secret(),
                namespace(),
                node(),
                event(),
            ];
            for doc in sample {
                objects.push(admitted(doc.value.clone()).value);
                objects.push(doc.value);
            }
            let mut texts = vec![YAML_SAMPLE.to_string()];
            for text in example_texts() {
                if let Ok(docs) = parse_documents(&text) {
                    objects.extend(docs.into_iter().map(|d| d.value));
                }
                texts.push(text);
            }
            for v in &objects {
                if let Ok(yaml) = serde_saphyr::to_string(v) {
                    texts.push(yaml);
                }
            }
            let snippets = snippets();

            let mut run = Run {
                seed,
                inputs: 0,
                outcome: Outcome::default(),
                slowest: Slowest {
                    took: Duration::ZERO,
                    bytes: 0,
                    case: 0,
                    text: String::new(),
                },
            };
            for case in 0..CASES {
                // A real object (one in ten: a random value) mutated as a
                // value, admitted directly...
                let v = if case % 10 == 0 {
                    random_value(&mut rng, 4)
                } else {
                    objects[rng.gen_range(0..objects.len())].clone()
                };
                let v = mutate_value(&mut rng, v);
                let direct = catch_unwind(AssertUnwindSafe(|| admit(v.clone())));
                let Ok(direct) = direct else {
                    panic!("seed {seed} case {case}: admit panicked on\n{v}");
                };
                match direct {
                    Ok(a) => {
                        // What is admitted is admitted again unchanged.
                        let again = admit(a.value.clone()).unwrap_or_else(|e| {
                            panic!("seed {seed} case {case}: re-admit: {e}\n{v}")
                        });
                        assert_eq!(again.value, a.value, "seed {seed} case {case}");
                        let _ = validate_update(a.object.kind, &a.value, &v);
                    }
                    Err(e) => {
                        if let Some(problem) = refusal_problem(&e) {
                            panic!("seed {seed} case {case}: {problem}\n{v}");
                        }
                    }
                }
                // ...and as text.
                let text = render(&mut rng, &v);
                run.feed(case, &text);
                // Manifest text mutated as text.
                let base = if rng.gen_bool(0.25) {
                    &text
                } else {
                    &texts[rng.gen_range(0..texts.len())]
                };
                let mutated = mutate_text(&mut rng, &snippets, base);
                run.feed(case, &mutated);
            }

            let Run {
                inputs,
                outcome,
                slowest,
                ..
            } = run;
            println!(
                "seed {seed}: {inputs} manifests in {:.1?}: {} objects admitted, {} refused, \
                 {} texts not parsed; slowest parse+admit {:.2?} on a {}-byte input (case {})",
                started.elapsed(),
                outcome.admitted,
                outcome.refused,
                outcome.unparsed,
                slowest.took,
                slowest.bytes,
                slowest.case,
            );
            assert!(inputs >= INPUTS_MIN, "{inputs} manifests");
            assert!(outcome.admitted > 0 && outcome.refused > 0 && outcome.unparsed > 0);
            let head: String = slowest.text.chars().take(2_000).collect();
            assert!(
                slowest.took.as_millis() < INPUT_MS_MAX,
                "seed {seed} case {}: {:?} to parse and admit {} bytes (limit {INPUT_MS_MAX} ms):\n{head}",
                slowest.case,
                slowest.took,
                slowest.bytes,
            );
        }
    }
}
