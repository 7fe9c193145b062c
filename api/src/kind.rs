//! The kinds kubus serves, and how a manifest's `apiVersion`/`kind` or a
//! CLI word (`po`, `deploy`, `svc`…) maps to one of them.
//!
//! A kind that is valid Kubernetes but not served yet is refused with a
//! message that says so, never silently dropped; an old apiVersion is refused
//! with a message naming the current one.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A kind served by kubus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    Service,
    ConfigMap,
    Secret,
    Event,
    ReplicaSet,
    Deployment,
    /// `coordination.k8s.io/v1`: the leases elected actors hold.
    Lease,
    /// `v1` Endpoints, kept for older clients beside EndpointSlices.
    Endpoints,
    /// `discovery.k8s.io/v1`: which pods back a Service.
    EndpointSlice,
    DaemonSet,
    StatefulSet,
    /// `batch/v1`.
    Job,
    /// `batch/v1`.
    CronJob,
    /// `v1`: the ReplicaSet's predecessor, still served by Kubernetes.
    ReplicationController,
    /// `policy/v1`: how many of a set of pods may be disrupted at once.
    PodDisruptionBudget,
    /// `autoscaling/v2`: a target's replicas follow its pods' usage.
    HorizontalPodAutoscaler,
    /// Cluster-scoped: a piece of storage.
    PersistentVolume,
    /// A request for storage, bound to one PersistentVolume.
    PersistentVolumeClaim,
    /// `storage.k8s.io/v1`, cluster-scoped: how claims of a class are provisioned.
    StorageClass,
    /// `apps/v1`: one template revision of a DaemonSet or StatefulSet.
    ControllerRevision,
    /// `scheduling.k8s.io/v1`, cluster-scoped: a named pod priority.
    PriorityClass,
    /// `v1`: an identity for the processes of pods.
    ServiceAccount,
    /// `rbac.authorization.k8s.io/v1`: permissions within a namespace.
    Role,
    /// `rbac.authorization.k8s.io/v1`: a Role (or ClusterRole) granted to
    /// users, groups and service accounts within a namespace.
    RoleBinding,
    /// `rbac.authorization.k8s.io/v1`, cluster-scoped: permissions.
    ClusterRole,
    /// `rbac.authorization.k8s.io/v1`, cluster-scoped: a ClusterRole
    /// granted cluster-wide.
    ClusterRoleBinding,
}

/// Why an `apiVersion`/`kind` pair (or a resource word) is not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    #[error("kind {kind:?} in {api_version:?} is valid Kubernetes but not supported by kubus yet")]
    NotYetSupported { api_version: String, kind: String },
    #[error("apiVersion {given:?} for kind {kind:?} is not served; use {current:?}")]
    OldApiVersion {
        given: String,
        kind: String,
        current: &'static str,
    },
    #[error("apiVersion {api_version:?} does not serve kind {kind:?}")]
    WrongApiVersion { api_version: String, kind: String },
    #[error("unknown kind {kind:?} (apiVersion {api_version:?})")]
    Unknown { api_version: String, kind: String },
    #[error("unknown resource type {0:?}")]
    UnknownResource(String),
}

/// Kubernetes kinds kubus knows about but does not serve yet, with the
/// apiVersion they are current in.
const NOT_YET: &[(&str, &str)] = &[
    ("v1", "LimitRange"),
    ("v1", "ResourceQuota"),
    ("v1", "Binding"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
];

/// The served namespaced kinds other than Event: what the control plane
/// keeps in its caches, collects by owner references, and empties a
/// deleted namespace of (Events expire by themselves and are too many to
/// cache). A test keeps it in step with [`Kind::ALL`].
pub const NAMESPACED_CONTENT: [Kind; 21] = [
    Kind::Deployment,
    Kind::ReplicaSet,
    Kind::Pod,
    Kind::Service,
    Kind::ConfigMap,
    Kind::Secret,
    Kind::Lease,
    Kind::Endpoints,
    Kind::EndpointSlice,
    Kind::DaemonSet,
    Kind::StatefulSet,
    Kind::Job,
    Kind::CronJob,
    Kind::ReplicationController,
    Kind::PodDisruptionBudget,
    Kind::HorizontalPodAutoscaler,
    Kind::PersistentVolumeClaim,
    Kind::ControllerRevision,
    Kind::ServiceAccount,
    Kind::Role,
    Kind::RoleBinding,
];

/// Old apiVersions that Kubernetes has removed, mapped to the current group
/// version of the same kind.
const OLD_GROUPS: &[(&str, &str)] = &[
    ("extensions/v1beta1", "apps/v1"),
    ("apps/v1beta1", "apps/v1"),
    ("apps/v1beta2", "apps/v1"),
    ("batch/v1beta1", "batch/v1"),
    ("batch/v2alpha1", "batch/v1"),
    ("policy/v1beta1", "policy/v1"),
    ("networking.k8s.io/v1beta1", "networking.k8s.io/v1"),
    ("autoscaling/v2beta1", "autoscaling/v2"),
    ("autoscaling/v2beta2", "autoscaling/v2"),
    ("autoscaling/v1", "autoscaling/v2"),
    (
        "rbac.authorization.k8s.io/v1beta1",
        "rbac.authorization.k8s.io/v1",
    ),
    ("events.k8s.io/v1beta1", "events.k8s.io/v1"),
];

impl Kind {
    pub const ALL: [Kind; 29] = [
        Kind::Namespace,
        Kind::Node,
        Kind::Pod,
        Kind::Service,
        Kind::ConfigMap,
        Kind::Secret,
        Kind::Event,
        Kind::ReplicaSet,
        Kind::Deployment,
        Kind::Lease,
        Kind::Endpoints,
        Kind::EndpointSlice,
        Kind::DaemonSet,
        Kind::StatefulSet,
        Kind::Job,
        Kind::CronJob,
        Kind::ReplicationController,
        Kind::PodDisruptionBudget,
        Kind::HorizontalPodAutoscaler,
        Kind::PersistentVolume,
        Kind::PersistentVolumeClaim,
        Kind::StorageClass,
        Kind::ControllerRevision,
        Kind::PriorityClass,
        Kind::ServiceAccount,
        Kind::Role,
        Kind::RoleBinding,
        Kind::ClusterRole,
        Kind::ClusterRoleBinding,
    ];

    /// The `apiVersion` this kind is served at.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::ReplicaSet
            | Kind::Deployment
            | Kind::DaemonSet
            | Kind::StatefulSet
            | Kind::ControllerRevision => "apps/v1",
            Kind::Job | Kind::CronJob => "batch/v1",
            Kind::PodDisruptionBudget => "policy/v1",
            Kind::HorizontalPodAutoscaler => "autoscaling/v2",
            Kind::StorageClass => "storage.k8s.io/v1",
            Kind::PriorityClass => "scheduling.k8s.io/v1",
            Kind::Role | Kind::RoleBinding | Kind::ClusterRole | Kind::ClusterRoleBinding => {
                "rbac.authorization.k8s.io/v1"
            }
            Kind::Lease => "coordination.k8s.io/v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            _ => "v1",
        }
    }

    /// The `kind` string, as in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::Service => "Service",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::Event => "Event",
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Deployment => "Deployment",
            Kind::Lease => "Lease",
            Kind::Endpoints => "Endpoints",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::DaemonSet => "DaemonSet",
            Kind::StatefulSet => "StatefulSet",
            Kind::Job => "Job",
            Kind::CronJob => "CronJob",
            Kind::ReplicationController => "ReplicationController",
            Kind::PodDisruptionBudget => "PodDisruptionBudget",
            Kind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            Kind::PersistentVolume => "PersistentVolume",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
            Kind::StorageClass => "StorageClass",
            Kind::ControllerRevision => "ControllerRevision",
            Kind::PriorityClass => "PriorityClass",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Role => "Role",
            Kind::RoleBinding => "RoleBinding",
            Kind::ClusterRole => "ClusterRole",
            Kind::ClusterRoleBinding => "ClusterRoleBinding",
        }
    }

    /// The plural lowercase resource name: a subject token and a store key
    /// segment.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Namespace => "namespaces",
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::ConfigMap => "configmaps",
            Kind::Secret => "secrets",
            Kind::Event => "events",
            Kind::ReplicaSet => "replicasets",
            Kind::Deployment => "deployments",
            Kind::Lease => "leases",
            Kind::Endpoints => "endpoints",
            Kind::EndpointSlice => "endpointslices",
            Kind::DaemonSet => "daemonsets",
            Kind::StatefulSet => "statefulsets",
            Kind::Job => "jobs",
            Kind::CronJob => "cronjobs",
            Kind::ReplicationController => "replicationcontrollers",
            Kind::PodDisruptionBudget => "poddisruptionbudgets",
            Kind::HorizontalPodAutoscaler => "horizontalpodautoscalers",
            Kind::PersistentVolume => "persistentvolumes",
            Kind::PersistentVolumeClaim => "persistentvolumeclaims",
            Kind::StorageClass => "storageclasses",
            Kind::ControllerRevision => "controllerrevisions",
            Kind::PriorityClass => "priorityclasses",
            Kind::ServiceAccount => "serviceaccounts",
            Kind::Role => "roles",
            Kind::RoleBinding => "rolebindings",
            Kind::ClusterRole => "clusterroles",
            Kind::ClusterRoleBinding => "clusterrolebindings",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Kind::Namespace
                | Kind::Node
                | Kind::PersistentVolume
                | Kind::StorageClass
                | Kind::PriorityClass
                | Kind::ClusterRole
                | Kind::ClusterRoleBinding
        )
    }

    /// The kind named by a manifest's `apiVersion` and `kind`.
    pub fn from_type(api_version: &str, kind: &str) -> Result<Kind, KindError> {
        if let Some(k) = Kind::ALL.iter().copied().find(|k| k.as_str() == kind) {
            if k.api_version() == api_version {
                return Ok(k);
            }
            if OLD_GROUPS.iter().any(|(old, _)| *old == api_version)
                || (k == Kind::Event && api_version == "events.k8s.io/v1")
            {
                return Err(KindError::OldApiVersion {
                    given: api_version.to_string(),
                    kind: kind.to_string(),
                    current: k.api_version(),
                });
            }
            return Err(KindError::WrongApiVersion {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            });
        }
        if let Some((current, _)) = NOT_YET.iter().find(|(_, k)| *k == kind) {
            if let Some((_, new_group)) = OLD_GROUPS.iter().find(|(old, _)| *old == api_version) {
                if new_group == current {
                    return Err(KindError::OldApiVersion {
                        given: api_version.to_string(),
                        kind: kind.to_string(),
                        current,
                    });
                }
            }
            return Err(KindError::NotYetSupported {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            });
        }
        Err(KindError::Unknown {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        })
    }

    /// The kind a CLI word names: plural, singular, kind or short name, any case.
    pub fn from_resource(word: &str) -> Result<Kind, KindError> {
        let w = word.to_ascii_lowercase();
        Kind::ALL
            .iter()
            .copied()
            .find(|k| {
                k.resource() == w || k.singular() == w || k.short_names().contains(&w.as_str())
            })
            .ok_or_else(|| KindError::UnknownResource(word.to_string()))
    }

    /// The kinds `all` names (Kubernetes' `all` category), in the order
    /// `kubectl get all` prints them.
    pub const CATEGORY_ALL: [Kind; 10] = [
        Kind::Pod,
        Kind::ReplicationController,
        Kind::Service,
        Kind::DaemonSet,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::StatefulSet,
        Kind::HorizontalPodAutoscaler,
        Kind::CronJob,
        Kind::Job,
    ];

    /// The API group: `""` for the core group, else `apps`, `batch`…
    pub fn group(self) -> &'static str {
        self.api_version()
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// The version within the group (`v1`).
    pub fn version(self) -> &'static str {
        self.api_version()
            .rsplit_once('/')
            .map_or(self.api_version(), |(_, version)| version)
    }

    /// The singular resource name (the lowercased kind).
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Namespace => "namespace",
            Kind::Node => "node",
            Kind::Pod => "pod",
            Kind::Service => "service",
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
            Kind::Event => "event",
            Kind::ReplicaSet => "replicaset",
            Kind::Deployment => "deployment",
            Kind::Lease => "lease",
            Kind::Endpoints => "endpoints",
            Kind::EndpointSlice => "endpointslice",
            Kind::DaemonSet => "daemonset",
            Kind::StatefulSet => "statefulset",
            Kind::Job => "job",
            Kind::CronJob => "cronjob",
            Kind::ReplicationController => "replicationcontroller",
            Kind::PodDisruptionBudget => "poddisruptionbudget",
            Kind::HorizontalPodAutoscaler => "horizontalpodautoscaler",
            Kind::PersistentVolume => "persistentvolume",
            Kind::PersistentVolumeClaim => "persistentvolumeclaim",
            Kind::StorageClass => "storageclass",
            Kind::ControllerRevision => "controllerrevision",
            Kind::PriorityClass => "priorityclass",
            Kind::ServiceAccount => "serviceaccount",
            Kind::Role => "role",
            Kind::RoleBinding => "rolebinding",
            Kind::ClusterRole => "clusterrole",
            Kind::ClusterRoleBinding => "clusterrolebinding",
        }
    }

    /// Kubernetes' short names for the kind (`po`, `deploy`…).
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::Namespace => &["ns"],
            Kind::Node => &["no"],
            Kind::Pod => &["po"],
            Kind::Service => &["svc"],
            Kind::ConfigMap => &["cm"],
            Kind::Event => &["ev"],
            Kind::ReplicaSet => &["rs"],
            Kind::Deployment => &["deploy"],
            Kind::Endpoints => &["ep"],
            Kind::DaemonSet => &["ds"],
            Kind::StatefulSet => &["sts"],
            Kind::CronJob => &["cj"],
            Kind::ReplicationController => &["rc"],
            Kind::PodDisruptionBudget => &["pdb"],
            Kind::HorizontalPodAutoscaler => &["hpa"],
            Kind::PersistentVolume => &["pv"],
            Kind::PersistentVolumeClaim => &["pvc"],
            Kind::StorageClass => &["sc"],
            Kind::PriorityClass => &["pc"],
            Kind::ServiceAccount => &["sa"],
            Kind::Secret
            | Kind::Lease
            | Kind::EndpointSlice
            | Kind::Job
            | Kind::ControllerRevision
            | Kind::Role
            | Kind::RoleBinding
            | Kind::ClusterRole
            | Kind::ClusterRoleBinding => &[],
        }
    }

    /// Kubernetes' categories of the kind (`all`).
    pub fn categories(self) -> &'static [&'static str] {
        if Kind::CATEGORY_ALL.contains(&self) {
            &["all"]
        } else {
            &[]
        }
    }

    /// Whether the kind has a `status` subresource.
    pub fn has_status(self) -> bool {
        !matches!(
            self,
            Kind::ConfigMap
                | Kind::Secret
                | Kind::Event
                | Kind::Lease
                | Kind::Endpoints
                | Kind::EndpointSlice
                | Kind::StorageClass
                | Kind::ControllerRevision
                | Kind::PriorityClass
                | Kind::ServiceAccount
                | Kind::Role
                | Kind::RoleBinding
                | Kind::ClusterRole
                | Kind::ClusterRoleBinding
        )
    }

    /// Whether the kind has a `scale` subresource (`spec.replicas`).
    pub fn scalable(self) -> bool {
        matches!(
            self,
            Kind::Deployment | Kind::ReplicaSet | Kind::StatefulSet | Kind::ReplicationController
        )
    }

    /// The kind served under `group`/`version` as the plural `resource`
    /// (the REST path's words; no short names).
    pub fn from_plural(group: &str, version: &str, resource: &str) -> Option<Kind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.group() == group && k.version() == version && k.resource() == resource)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names one object: kind, namespace (None for cluster-scoped kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: Kind, namespace: Option<&str>, name: &str) -> ObjectRef {
        ObjectRef {
            kind,
            namespace: if kind.namespaced() {
                namespace.map(str::to_string)
            } else {
                None
            },
            name: name.to_string(),
        }
    }

    /// The store key: `/<resource>/<namespace or _>/<name>`.
    pub fn key(&self) -> String {
        format!(
            "{}{}",
            prefix(self.kind, self.namespace.as_deref()),
            self.name
        )
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// The store key prefix of a kind, in one namespace or (None) in all.
/// Cluster-scoped kinds use `_` as their namespace segment.
pub fn prefix(kind: Kind, namespace: Option<&str>) -> String {
    match (kind.namespaced(), namespace) {
        (true, Some(ns)) => format!("/{}/{}/", kind.resource(), ns),
        (true, None) => format!("/{}/", kind.resource()),
        (false, _) => format!("/{}/_/", kind.resource()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_kinds_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_type(k.api_version(), k.as_str()), Ok(k));
            assert_eq!(Kind::from_resource(k.resource()), Ok(k));
        }
    }

    #[test]
    fn refusals_say_why() {
        let e = Kind::from_type("batch/v1beta1", "CronJob").expect_err("refused");
        assert!(e.to_string().contains("batch/v1"), "{e}");
        let e = Kind::from_type("extensions/v1beta1", "Deployment").expect_err("refused");
        assert!(e.to_string().contains("apps/v1"), "{e}");
        let e = Kind::from_type("networking.k8s.io/v1", "Ingress").expect_err("refused");
        assert!(e.to_string().contains("not supported by kubus yet"), "{e}");
        assert!(matches!(
            Kind::from_type("v1", "Frobnicator"),
            Err(KindError::Unknown { .. })
        ));
    }

    #[test]
    fn keys() {
        let r = ObjectRef::new(Kind::Pod, Some("default"), "web-1");
        assert_eq!(r.key(), "/pods/default/web-1");
        let n = ObjectRef::new(Kind::Node, Some("ignored"), "n1");
        assert_eq!(n.key(), "/nodes/_/n1");
    }

    #[test]
    fn namespaced_content_is_every_namespaced_kind_but_event() {
        let want: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| k.namespaced() && *k != Kind::Event)
            .collect();
        let mut have = NAMESPACED_CONTENT.to_vec();
        have.sort();
        let mut want = want;
        want.sort();
        assert_eq!(have, want);
    }
}
