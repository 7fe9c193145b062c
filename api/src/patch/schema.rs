//! How each field of a served kind takes a strategic merge patch: the one
//! table of patch strategies ([`FIELD_STRATEGIES`]) and the small type graph
//! that tells the patch walker which type it is inside.
//!
//! The strategies are Kubernetes' own struct tags (`patchStrategy`,
//! `patchMergeKey` in `k8s.io/api` and `k8s.io/apimachinery` 1.33), for every
//! type reachable from a kind kubus serves. The OpenAPI document emits the
//! same rows as `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`,
//! so kubectl computes its patches with the rules the server applies.
//!
//! Types are named as the last segment of their OpenAPI definition
//! (`io.k8s.api.core.v1.PodSpec` is `PodSpec`); an object's root type is its
//! kind's name (`Deployment`). A field the tables do not name has the JSON
//! merge defaults: maps merge, lists are replaced.
//!
//! Architecture Invariant: a field's strategy is stated here and nowhere
//! else; the walker in `strategic.rs` only reads it.

use crate::kind::Kind;

/// How a field is patched (`x-kubernetes-patch-strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchStrategy {
    /// A list merged element by element: by its merge key for objects, as
    /// a set for strings and numbers.
    Merge,
    /// A list merged by key whose elements also take `$retainKeys`
    /// (`volumes`: a volume changing its source drops the old one).
    MergeRetainKeys,
    /// A map (a union such as a Deployment's `strategy`) whose patch may
    /// carry `$retainKeys` to drop the members it no longer sets.
    RetainKeys,
    /// A map replaced whole instead of merged.
    Replace,
}

impl PatchStrategy {
    /// The value of `x-kubernetes-patch-strategy`.
    pub fn as_str(self) -> &'static str {
        match self {
            PatchStrategy::Merge => "merge",
            PatchStrategy::MergeRetainKeys => "merge,retainKeys",
            PatchStrategy::RetainKeys => "retainKeys",
            PatchStrategy::Replace => "replace",
        }
    }

    /// Whether a list under this strategy is merged rather than replaced.
    pub fn merges_lists(self) -> bool {
        matches!(self, PatchStrategy::Merge | PatchStrategy::MergeRetainKeys)
    }
}

/// One field with a patch strategy other than the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldStrategy {
    /// The type holding the field (`PodSpec`).
    pub parent: &'static str,
    /// The field's JSON name (`containers`).
    pub field: &'static str,
    pub strategy: PatchStrategy,
    /// `x-kubernetes-patch-merge-key`: what identifies an element of a list
    /// of objects. `None` for a list of strings merged as a set, and for maps.
    pub merge_key: Option<&'static str>,
}

const fn by_key(parent: &'static str, field: &'static str, key: &'static str) -> FieldStrategy {
    FieldStrategy {
        parent,
        field,
        strategy: PatchStrategy::Merge,
        merge_key: Some(key),
    }
}

const fn retain_by_key(
    parent: &'static str,
    field: &'static str,
    key: &'static str,
) -> FieldStrategy {
    FieldStrategy {
        parent,
        field,
        strategy: PatchStrategy::MergeRetainKeys,
        merge_key: Some(key),
    }
}

const fn other(
    parent: &'static str,
    field: &'static str,
    strategy: PatchStrategy,
) -> FieldStrategy {
    FieldStrategy {
        parent,
        field,
        strategy,
        merge_key: None,
    }
}

/// Every field of a served kind with a patch strategy, as Kubernetes 1.33
/// tags it. Conditions are keyed by `type` on every status that has them.
pub const FIELD_STRATEGIES: &[FieldStrategy] = &[
    // apimachinery meta/v1
    other("ObjectMeta", "finalizers", PatchStrategy::Merge),
    by_key("ObjectMeta", "ownerReferences", "uid"),
    // core/v1 pods
    retain_by_key("PodSpec", "volumes", "name"),
    by_key("PodSpec", "initContainers", "name"),
    by_key("PodSpec", "containers", "name"),
    by_key("PodSpec", "ephemeralContainers", "name"),
    by_key("PodSpec", "imagePullSecrets", "name"),
    by_key("PodSpec", "hostAliases", "ip"),
    // Kubernetes lists topologyKey + whenUnsatisfiable as the list-map keys
    // (server-side apply), but the strategic merge key is topologyKey alone.
    by_key("PodSpec", "topologySpreadConstraints", "topologyKey"),
    by_key("PodSpec", "schedulingGates", "name"),
    retain_by_key("PodSpec", "resourceClaims", "name"),
    by_key("Container", "ports", "containerPort"),
    by_key("Container", "env", "name"),
    by_key("Container", "volumeMounts", "mountPath"),
    by_key("Container", "volumeDevices", "devicePath"),
    by_key("EphemeralContainer", "ports", "containerPort"),
    by_key("EphemeralContainer", "env", "name"),
    by_key("EphemeralContainer", "volumeMounts", "mountPath"),
    by_key("EphemeralContainer", "volumeDevices", "devicePath"),
    by_key("PodStatus", "conditions", "type"),
    by_key("PodStatus", "hostIPs", "ip"),
    by_key("PodStatus", "podIPs", "ip"),
    retain_by_key("PodStatus", "resourceClaimStatuses", "name"),
    by_key("ContainerStatus", "volumeMounts", "mountPath"),
    by_key("ContainerStatus", "allocatedResourcesStatus", "name"),
    // core/v1 others
    by_key("ReplicationControllerStatus", "conditions", "type"),
    by_key("ServiceSpec", "ports", "port"),
    by_key("ServiceStatus", "conditions", "type"),
    other("NodeSpec", "podCIDRs", PatchStrategy::Merge),
    by_key("NodeStatus", "conditions", "type"),
    by_key("NodeStatus", "addresses", "type"),
    by_key("NamespaceStatus", "conditions", "type"),
    by_key("PersistentVolumeClaimStatus", "conditions", "type"),
    // apps/v1
    other("DeploymentSpec", "strategy", PatchStrategy::RetainKeys),
    by_key("DeploymentStatus", "conditions", "type"),
    by_key("ReplicaSetStatus", "conditions", "type"),
    by_key("DaemonSetStatus", "conditions", "type"),
    by_key("StatefulSetStatus", "conditions", "type"),
    // batch/v1
    by_key("JobStatus", "conditions", "type"),
    // policy/v1
    other(
        "PodDisruptionBudgetSpec",
        "selector",
        PatchStrategy::Replace,
    ),
    by_key("PodDisruptionBudgetStatus", "conditions", "type"),
];

/// (parent type, field, the field's type — for a list, its elements'):
/// enough of the object graph to reach every row of [`FIELD_STRATEGIES`]
/// from a kind's root. `metadata` of a kind's root is `ObjectMeta` without
/// a row (see [`field_type`]).
const FIELD_TYPES: &[(&str, &str, &str)] = &[
    ("Pod", "spec", "PodSpec"),
    ("Pod", "status", "PodStatus"),
    ("PodTemplateSpec", "metadata", "ObjectMeta"),
    ("PodTemplateSpec", "spec", "PodSpec"),
    ("PodSpec", "containers", "Container"),
    ("PodSpec", "initContainers", "Container"),
    ("PodSpec", "ephemeralContainers", "EphemeralContainer"),
    ("PodStatus", "containerStatuses", "ContainerStatus"),
    ("PodStatus", "initContainerStatuses", "ContainerStatus"),
    ("PodStatus", "ephemeralContainerStatuses", "ContainerStatus"),
    ("Node", "spec", "NodeSpec"),
    ("Node", "status", "NodeStatus"),
    ("Namespace", "status", "NamespaceStatus"),
    ("Service", "spec", "ServiceSpec"),
    ("Service", "status", "ServiceStatus"),
    (
        "PersistentVolumeClaim",
        "status",
        "PersistentVolumeClaimStatus",
    ),
    ("ReplicationController", "spec", "ReplicationControllerSpec"),
    (
        "ReplicationController",
        "status",
        "ReplicationControllerStatus",
    ),
    ("ReplicationControllerSpec", "template", "PodTemplateSpec"),
    ("Deployment", "spec", "DeploymentSpec"),
    ("Deployment", "status", "DeploymentStatus"),
    ("DeploymentSpec", "template", "PodTemplateSpec"),
    ("ReplicaSet", "spec", "ReplicaSetSpec"),
    ("ReplicaSet", "status", "ReplicaSetStatus"),
    ("ReplicaSetSpec", "template", "PodTemplateSpec"),
    ("DaemonSet", "spec", "DaemonSetSpec"),
    ("DaemonSet", "status", "DaemonSetStatus"),
    ("DaemonSetSpec", "template", "PodTemplateSpec"),
    ("StatefulSet", "spec", "StatefulSetSpec"),
    ("StatefulSet", "status", "StatefulSetStatus"),
    ("StatefulSetSpec", "template", "PodTemplateSpec"),
    (
        "StatefulSetSpec",
        "volumeClaimTemplates",
        "PersistentVolumeClaim",
    ),
    ("Job", "spec", "JobSpec"),
    ("Job", "status", "JobStatus"),
    ("JobSpec", "template", "PodTemplateSpec"),
    ("CronJob", "spec", "CronJobSpec"),
    ("CronJobSpec", "jobTemplate", "JobTemplateSpec"),
    ("JobTemplateSpec", "metadata", "ObjectMeta"),
    ("JobTemplateSpec", "spec", "JobSpec"),
    ("PodDisruptionBudget", "spec", "PodDisruptionBudgetSpec"),
    ("PodDisruptionBudget", "status", "PodDisruptionBudgetStatus"),
];

/// The root type of an object of `kind`.
pub fn root_type(kind: Kind) -> &'static str {
    kind.as_str()
}

/// The strategy of `field` inside `parent`, when it is not the default.
pub fn field_strategy(parent: &str, field: &str) -> Option<&'static FieldStrategy> {
    FIELD_STRATEGIES
        .iter()
        .find(|s| s.parent == parent && s.field == field)
}

/// The type of `field` inside `parent` (of its elements, for a list), when
/// the walker needs to know it.
pub fn field_type(parent: &str, field: &str) -> Option<&'static str> {
    if let Some(&(_, _, child)) = FIELD_TYPES
        .iter()
        .find(|(p, f, _)| *p == parent && *f == field)
    {
        return Some(child);
    }
    let is_root = Kind::ALL.iter().any(|k| root_type(*k) == parent);
    (is_root && field == "metadata").then_some("ObjectMeta")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every type reachable from a served kind's root.
    fn reachable() -> BTreeSet<&'static str> {
        let mut seen: BTreeSet<&'static str> = Kind::ALL.iter().map(|k| root_type(*k)).collect();
        seen.insert("ObjectMeta");
        loop {
            let before = seen.len();
            for (parent, _, child) in FIELD_TYPES {
                if seen.contains(parent) {
                    seen.insert(child);
                }
            }
            if seen.len() == before {
                return seen;
            }
        }
    }

    #[test]
    fn every_strategy_is_reachable_from_a_served_kind() {
        let seen = reachable();
        for s in FIELD_STRATEGIES {
            assert!(
                seen.contains(s.parent),
                "{}.{}: no served kind reaches {}",
                s.parent,
                s.field,
                s.parent
            );
        }
        for (parent, field, _) in FIELD_TYPES {
            assert!(seen.contains(parent), "{parent}.{field} is unreachable");
        }
    }

    #[test]
    fn one_row_per_field_and_keys_only_on_lists_merged_by_key() {
        let mut rows = BTreeSet::new();
        for s in FIELD_STRATEGIES {
            assert!(
                rows.insert((s.parent, s.field)),
                "{}.{} twice",
                s.parent,
                s.field
            );
            if s.merge_key.is_some() {
                assert!(s.strategy.merges_lists(), "{}.{}", s.parent, s.field);
            }
        }
        let mut edges = BTreeSet::new();
        for (parent, field, _) in FIELD_TYPES {
            assert!(edges.insert((parent, field)), "{parent}.{field} twice");
        }
    }

    #[test]
    fn lookups() {
        let containers = field_strategy("PodSpec", "containers");
        assert_eq!(containers.and_then(|s| s.merge_key), Some("name"));
        assert_eq!(
            field_strategy("PodSpec", "volumes").map(|s| s.strategy.as_str()),
            Some("merge,retainKeys")
        );
        assert_eq!(field_strategy("PodSpec", "tolerations"), None);
        assert_eq!(field_type("Deployment", "metadata"), Some("ObjectMeta"));
        assert_eq!(
            field_type("PersistentVolumeClaim", "metadata"),
            Some("ObjectMeta")
        );
        assert_eq!(field_type("PodSpec", "metadata"), None);
        assert_eq!(
            field_type("CronJobSpec", "jobTemplate"),
            Some("JobTemplateSpec")
        );
    }
}
