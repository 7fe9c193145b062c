//! The roles and bindings a cluster starts with, as Kubernetes' bootstrap
//! policy names them: `cluster-admin` (bound to `system:masters`), the
//! user-facing `admin`, `edit` and `view` (aggregated from
//! `system:aggregate-to-*`, so a ClusterRole labelled
//! `rbac.authorization.k8s.io/aggregate-to-view: "true"` extends `view`),
//! `system:basic-user` (anyone may ask what it may do), and kubus's own:
//! the dashboards bound to `view`, the API gateway allowed to impersonate
//! the users it authenticates.

use serde_json::{json, Value};

use super::{AUTHENTICATED, DASHBOARDS, GATEWAYS, GROUP, MASTERS};

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 6] = [
    "create",
    "delete",
    "deletecollection",
    "patch",
    "update",
    "apply",
];

/// The label that adds a ClusterRole's rules to `to` (`admin`, `edit`,
/// `view`).
pub fn aggregate_label(to: &str) -> String {
    format!("{GROUP}/aggregate-to-{to}")
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn cluster_role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    let mut metadata = json!({"name": name, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}});
    if !labels.is_null() {
        metadata["labels"] = labels;
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata,
        "rules": rules,
    })
}

fn aggregated(name: &str, labels: Value) -> Value {
    let mut role = cluster_role(name, labels, vec![]);
    role["aggregationRule"] = json!({"clusterRoleSelectors": [
        {"matchLabels": {aggregate_label(name): "true"}}
    ]});
    role
}

fn binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

fn group(name: &str) -> Value {
    json!({"apiGroup": GROUP, "kind": "Group", "name": name})
}

/// What `view` reads: everything namespaced but Secrets (and RBAC).
const VIEW_CORE: [&str; 14] = [
    "pods",
    "pods/log",
    "pods/status",
    "services",
    "services/status",
    "endpoints",
    "configmaps",
    "persistentvolumeclaims",
    "persistentvolumeclaims/status",
    "replicationcontrollers",
    "replicationcontrollers/scale",
    "events",
    "namespaces",
    "serviceaccounts",
];
const APPS: [&str; 10] = [
    "deployments",
    "deployments/scale",
    "deployments/status",
    "replicasets",
    "replicasets/scale",
    "replicasets/status",
    "statefulsets",
    "statefulsets/scale",
    "daemonsets",
    "controllerrevisions",
];
const BATCH: [&str; 4] = ["jobs", "jobs/status", "cronjobs", "cronjobs/status"];

/// Every default ClusterRole and ClusterRoleBinding.
pub fn objects() -> Vec<Value> {
    let label = |to: &str| json!({aggregate_label(to): "true"});
    let view_rules = vec![
        rule(&[""], &VIEW_CORE, &READ),
        rule(&["apps"], &APPS, &READ),
        rule(&["batch"], &BATCH, &READ),
        rule(&["policy"], &["poddisruptionbudgets"], &READ),
        rule(
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
            &READ,
        ),
        rule(&["discovery.k8s.io"], &["endpointslices"], &READ),
        rule(&["coordination.k8s.io"], &["leases"], &READ),
        // metrics-server's system:aggregated-metrics-reader
        rule(&["metrics.k8s.io"], &["pods", "nodes"], &READ),
    ];
    let mut edit_core: Vec<&str> = VIEW_CORE
        .iter()
        .copied()
        .filter(|r| !r.contains("/status") && *r != "namespaces" && *r != "pods/log")
        .collect();
    edit_core.push("secrets");
    let edit_rules = vec![
        rule(&[""], &edit_core, &WRITE),
        rule(&[""], &["secrets"], &READ),
        rule(
            &[""],
            &[
                "pods/exec",
                "pods/attach",
                "pods/portforward",
                "pods/eviction",
            ],
            &["create", "get"],
        ),
        rule(&["apps"], &APPS, &WRITE),
        rule(&["batch"], &BATCH, &WRITE),
        rule(&["policy"], &["poddisruptionbudgets"], &WRITE),
        rule(&["autoscaling"], &["horizontalpodautoscalers"], &WRITE),
        rule(&["discovery.k8s.io"], &["endpointslices"], &WRITE),
        rule(&["coordination.k8s.io"], &["leases"], &WRITE),
        rule(&[""], &["serviceaccounts/token"], &["create"]),
    ];
    let mut rbac_verbs: Vec<&str> = READ.to_vec();
    rbac_verbs.extend(WRITE);
    let admin_rules = vec![rule(&[GROUP], &["roles", "rolebindings"], &rbac_verbs)];
    vec![
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "cluster-admin", "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ],
        }),
        aggregated("admin", Value::Null),
        aggregated("edit", label("admin")),
        aggregated("view", label("edit")),
        cluster_role("system:aggregate-to-admin", label("admin"), admin_rules),
        cluster_role("system:aggregate-to-edit", label("edit"), edit_rules),
        cluster_role("system:aggregate-to-view", label("view"), view_rules),
        cluster_role(
            "system:basic-user",
            Value::Null,
            vec![rule(
                &["authorization.k8s.io"],
                &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                &["create"],
            )],
        ),
        cluster_role(
            "kubus:dashboard",
            Value::Null,
            vec![
                rule(&[""], &["nodes", "persistentvolumes", "namespaces"], &READ),
                rule(&["storage.k8s.io"], &["storageclasses"], &READ),
                rule(&["scheduling.k8s.io"], &["priorityclasses"], &READ),
            ],
        ),
        cluster_role(
            "system:kubus-gateway",
            Value::Null,
            vec![
                rule(
                    &[""],
                    &["users", "groups", "serviceaccounts"],
                    &["impersonate"],
                ),
                // bearer tokens: verified by the store (TokenReview)
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
            ],
        ),
        binding("cluster-admin", "cluster-admin", json!([group(MASTERS)])),
        binding(
            "system:basic-user",
            "system:basic-user",
            json!([group(AUTHENTICATED)]),
        ),
        binding("kubus:dashboards", "view", json!([group(DASHBOARDS)])),
        binding(
            "kubus:dashboards:cluster",
            "kubus:dashboard",
            json!([group(DASHBOARDS)]),
        ),
        binding(
            "system:kubus-gateway",
            "system:kubus-gateway",
            json!([group(GATEWAYS)]),
        ),
    ]
}

/// The index of the default objects alone (what a fresh cluster
/// authorizes with).
pub fn index() -> super::Index {
    let objects = objects();
    let of = |kind: &str| -> Vec<Value> {
        objects
            .iter()
            .filter(|o| o["kind"] == kind)
            .cloned()
            .collect()
    };
    super::Index::build(
        &of("Role"),
        &of("ClusterRole"),
        &of("RoleBinding"),
        &of("ClusterRoleBinding"),
    )
}

#[cfg(test)]
mod tests {
    use super::super::{Attributes, UserInfo};
    use super::*;

    #[test]
    fn admin_takes_edit_which_takes_view() {
        let ix = index();
        let rules = |name: &str| ix.cluster_role_rules(name).map_or(0, <[_]>::len);
        assert!(rules("view") >= 6);
        assert!(rules("edit") > rules("view"));
        assert!(rules("admin") > rules("edit"));
        let dashboard = UserInfo {
            name: super::super::DASHBOARD_USER.into(),
            groups: vec![DASHBOARDS.into()],
        };
        let list = |resource: &str| Attributes::new("list", "", resource).in_namespace(Some("a"));
        assert!(ix.authorize(&dashboard, &list("pods")).allowed());
        assert!(!ix.authorize(&dashboard, &list("secrets")).allowed());
        assert!(!ix
            .authorize(
                &dashboard,
                &Attributes::new("delete", "", "pods").in_namespace(Some("a"))
            )
            .allowed());
    }
}
