//! Authorization: Kubernetes' RBAC and its Node authorizer, as pure
//! functions of a request's attributes and the cluster's RBAC objects.
//!
//! - [`UserInfo`] is who asks (a name and groups, as an authenticator gives
//!   them); `system:masters` may do anything, as in Kubernetes.
//! - [`Attributes`] are what is asked: a verb, a resource (and
//!   subresource) in an API group, a namespace and a name.
//! - [`Index`] holds Roles, ClusterRoles (with aggregation resolved) and
//!   their bindings; [`Index::authorize`] answers with Kubernetes' words.
//! - [`node`] decides for nodes (`system:node:<name>` in `system:nodes`):
//!   a node reads its own pods and what they use, writes their status.
//! - [`defaults`] are the roles and bindings a cluster starts with.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::selector::Selector;

pub mod defaults;
pub mod node;

/// The group whose members may do anything.
pub const MASTERS: &str = "system:masters";
/// The group of every authenticated user.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group of the nodes.
pub const NODES: &str = "system:nodes";
/// The prefix of a node's user name.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The group of read-only dashboards.
pub const DASHBOARDS: &str = "kubus:dashboards";
/// The dashboard identity's user.
pub const DASHBOARD_USER: &str = "kubus-dashboard";
/// The group of the Kubernetes API gateways.
pub const GATEWAYS: &str = "kubus:gateways";
/// The API gateway's user.
pub const GATEWAY_USER: &str = "system:kubus-gateway";
/// The prefix of a service account's user name.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
/// The group of every service account.
pub const SERVICE_ACCOUNTS: &str = "system:serviceaccounts";
/// The RBAC API group.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct UserInfo {
    #[serde(rename = "user")]
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The node this user is, if it is one.
    pub fn node(&self) -> Option<&str> {
        self.name
            .strip_prefix(NODE_USER_PREFIX)
            .filter(|_| self.in_group(NODES))
    }

    /// The user of service account `name` in `namespace`, with its groups.
    pub fn service_account(namespace: &str, name: &str) -> UserInfo {
        UserInfo {
            name: format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"),
            groups: vec![
                SERVICE_ACCOUNTS.to_string(),
                format!("{SERVICE_ACCOUNTS}:{namespace}"),
                AUTHENTICATED.to_string(),
            ],
        }
    }
}

/// What is asked, as Kubernetes' authorizers see a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Attributes {
    /// `get list watch create update patch delete deletecollection
    /// impersonate …`.
    pub verb: String,
    #[serde(default)]
    pub group: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
    /// None for cluster-scoped resources and all-namespace lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// None for lists, watches and creates of a generated name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Attributes {
    pub fn new(verb: &str, group: &str, resource: &str) -> Attributes {
        Attributes {
            verb: verb.to_string(),
            group: group.to_string(),
            resource: resource.to_string(),
            ..Attributes::default()
        }
    }

    pub fn in_namespace(mut self, namespace: Option<&str>) -> Attributes {
        self.namespace = namespace.map(str::to_string);
        self
    }

    pub fn named(mut self, name: Option<&str>) -> Attributes {
        self.name = name.filter(|n| !n.is_empty()).map(str::to_string);
        self
    }

    pub fn subresource(mut self, subresource: &str) -> Attributes {
        self.subresource = subresource.to_string();
        self
    }

    /// The resource as RBAC rules name it (`pods`, `pods/log`).
    fn full_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused, with the reason in Kubernetes' words.
    Deny(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// Kubernetes' refusal text: `pods "web" is forbidden: User "u" cannot
/// delete resource "pods" in API group "" in the namespace "default"`.
pub fn forbidden_message(user: &UserInfo, a: &Attributes) -> String {
    let object = match &a.name {
        Some(n) => format!("{} {n:?}", a.full_resource()),
        None => a.full_resource(),
    };
    let scope = match &a.namespace {
        Some(ns) => format!("in the namespace {ns:?}"),
        None => "at the cluster scope".to_string(),
    };
    format!(
        "{object} is forbidden: User {:?} cannot {} resource {:?} in API group {:?} {scope}",
        user.name,
        a.verb,
        a.full_resource(),
        a.group
    )
}

fn matches_any(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

/// Whether one rule allows `a` (Kubernetes' `RuleAllows`).
pub fn rule_allows(rule: &PolicyRule, a: &Attributes) -> bool {
    if !matches_any(&rule.verbs, &a.verb) {
        return false;
    }
    let groups = rule.api_groups.as_deref().unwrap_or_default();
    if !matches_any(groups, &a.group) {
        return false;
    }
    let resources = rule.resources.as_deref().unwrap_or_default();
    let full = a.full_resource();
    let resource_ok = resources.iter().any(|r| {
        r == "*"
            || *r == full
            || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
    });
    if !resource_ok {
        return false;
    }
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => a
            .name
            .as_deref()
            .is_some_and(|n| names.iter().any(|x| x == n)),
    }
}

/// Whether `subject` of a binding in `binding_ns` (None: a
/// ClusterRoleBinding) names `user`.
pub fn subject_names(subject: &Subject, binding_ns: Option<&str>, user: &UserInfo) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == user.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let ns = subject.namespace.as_deref().or(binding_ns).unwrap_or("");
            user.name == format!("{SERVICE_ACCOUNT_PREFIX}{ns}:{}", subject.name)
        }
        _ => false,
    }
}

/// The objects of `values` that decode as `T`.
fn typed<T: serde::de::DeserializeOwned>(values: &[Value]) -> Vec<T> {
    values
        .iter()
        .filter_map(|o| serde_json::from_value(o.clone()).ok())
        .collect()
}

/// The cluster's RBAC objects, ready to answer.
#[derive(Debug, Clone, Default)]
pub struct Index {
    /// Roles by namespace and name.
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    /// ClusterRoles by name, aggregation resolved.
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    /// RoleBindings by namespace.
    role_bindings: HashMap<String, Vec<RoleBinding>>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
}

impl Index {
    /// Build from the stored objects of the four kinds (any that do not
    /// decode are skipped: admission let them in, so none should).
    pub fn build(
        roles: &[Value],
        cluster_roles: &[Value],
        role_bindings: &[Value],
        cluster_role_bindings: &[Value],
    ) -> Index {
        let roles: Vec<Role> = typed(roles);
        let cluster_roles: Vec<ClusterRole> = typed(cluster_roles);
        let role_bindings: Vec<RoleBinding> = typed(role_bindings);
        let cluster_role_bindings: Vec<ClusterRoleBinding> = typed(cluster_role_bindings);
        let mut index = Index {
            cluster_role_bindings,
            ..Index::default()
        };
        for r in roles {
            let key = (
                r.metadata.namespace.clone().unwrap_or_default(),
                r.metadata.name.clone().unwrap_or_default(),
            );
            index.roles.insert(key, r.rules.unwrap_or_default());
        }
        index.cluster_roles = aggregate(&cluster_roles);
        for b in role_bindings {
            let ns = b.metadata.namespace.clone().unwrap_or_default();
            index.role_bindings.entry(ns).or_default().push(b);
        }
        index
    }

    /// The rules of a ClusterRole, aggregation resolved.
    pub fn cluster_role_rules(&self, name: &str) -> Option<&[PolicyRule]> {
        self.cluster_roles.get(name).map(Vec::as_slice)
    }

    /// Every rule that applies to `user` in `namespace` (None: cluster
    /// rules only).
    pub fn rules_for(&self, user: &UserInfo, namespace: Option<&str>) -> Vec<&PolicyRule> {
        let mut out = Vec::new();
        for b in &self.cluster_role_bindings {
            let named = b
                .subjects
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|s| subject_names(s, None, user));
            if named && b.role_ref.kind == "ClusterRole" {
                if let Some(rules) = self.cluster_roles.get(&b.role_ref.name) {
                    out.extend(rules.iter());
                }
            }
        }
        let Some(ns) = namespace else {
            return out;
        };
        for b in self
            .role_bindings
            .get(ns)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let named = b
                .subjects
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|s| subject_names(s, Some(ns), user));
            if !named {
                continue;
            }
            let rules = match b.role_ref.kind.as_str() {
                "Role" => self.roles.get(&(ns.to_string(), b.role_ref.name.clone())),
                "ClusterRole" => self.cluster_roles.get(&b.role_ref.name),
                _ => None,
            };
            if let Some(rules) = rules {
                out.extend(rules.iter());
            }
        }
        out
    }

    /// RBAC's answer for `user` asking `a`.
    pub fn authorize(&self, user: &UserInfo, a: &Attributes) -> Decision {
        if user.in_group(MASTERS) {
            return Decision::Allow;
        }
        if self
            .rules_for(user, a.namespace.as_deref())
            .into_iter()
            .any(|r| rule_allows(r, a))
        {
            Decision::Allow
        } else {
            Decision::Deny(forbidden_message(user, a))
        }
    }
}

/// Each ClusterRole's rules; an aggregated one's are its own and those of
/// every ClusterRole its selectors match, themselves aggregated (`admin`
/// takes `edit`, which takes `view`), as Kubernetes' aggregation
/// controller writes them.
fn aggregate(roles: &[ClusterRole]) -> HashMap<String, Vec<PolicyRule>> {
    let by_name: HashMap<&str, &ClusterRole> = roles
        .iter()
        .filter_map(|r| Some((r.metadata.name.as_deref()?, r)))
        .collect();
    let mut out = HashMap::new();
    for name in by_name.keys() {
        let mut rules = Vec::new();
        let mut seen = std::collections::HashSet::new();
        collect(name, &by_name, roles, &mut seen, &mut rules);
        out.insert(name.to_string(), rules);
    }
    out
}

fn collect<'a>(
    name: &'a str,
    by_name: &HashMap<&'a str, &'a ClusterRole>,
    roles: &'a [ClusterRole],
    seen: &mut std::collections::HashSet<&'a str>,
    rules: &mut Vec<PolicyRule>,
) {
    let Some(role) = by_name.get(name) else {
        return;
    };
    if !seen.insert(name) {
        return;
    }
    rules.extend(role.rules.clone().unwrap_or_default());
    let selectors: Vec<Selector> = role
        .aggregation_rule
        .as_ref()
        .and_then(|a| a.cluster_role_selectors.as_ref())
        .map(|s| {
            s.iter()
                .filter_map(|ls| Selector::from_label_selector(ls).ok())
                .collect()
        })
        .unwrap_or_default();
    if selectors.is_empty() {
        return;
    }
    for other in roles {
        let labels: BTreeMap<String, String> = other.metadata.labels.clone().unwrap_or_default();
        if let Some(other_name) = other.metadata.name.as_deref() {
            if selectors.iter().any(|s| s.matches(&labels)) {
                collect(other_name, by_name, roles, seen, rules);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn index() -> Index {
        Index::build(
            &[
                json!({"metadata": {"name": "pod-reader", "namespace": "shop"},
                "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
                          {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get"]}]}),
            ],
            &[
                json!({"metadata": {"name": "view"},
                    "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]}}),
                json!({"metadata": {"name": "view-base", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
                    "rules": [{"apiGroups": ["", "apps"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]}),
                json!({"metadata": {"name": "scaler"},
                    "rules": [{"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]}]}),
            ],
            &[
                json!({"metadata": {"name": "alice-reads", "namespace": "shop"},
                "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "robot"}]}),
                json!({"metadata": {"name": "team-views", "namespace": "shop"},
                "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "Group", "name": "team"}]}),
            ],
            &[json!({"metadata": {"name": "ops-scale"},
                "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "scaler"},
                "subjects": [{"kind": "User", "name": "ops"}]})],
        )
    }

    #[test]
    fn roles_bind_within_their_namespace() {
        let ix = index();
        let alice = user("alice", &[AUTHENTICATED]);
        let get_pod = Attributes::new("get", "", "pods")
            .in_namespace(Some("shop"))
            .named(Some("web"));
        assert!(ix.authorize(&alice, &get_pod).allowed());
        assert!(ix
            .authorize(&alice, &get_pod.clone().subresource("log"))
            .allowed());
        assert!(!ix
            .authorize(&alice, &get_pod.clone().in_namespace(Some("other")))
            .allowed());
        let delete = Attributes {
            verb: "delete".into(),
            ..get_pod.clone()
        };
        assert_eq!(
            ix.authorize(&alice, &delete),
            Decision::Deny(
                "pods \"web\" is forbidden: User \"alice\" cannot delete resource \"pods\" in API group \"\" in the namespace \"shop\"".into()
            )
        );
        // resourceNames: only that name, and never a list
        let cm = Attributes::new("get", "", "configmaps").in_namespace(Some("shop"));
        assert!(ix
            .authorize(&alice, &cm.clone().named(Some("settings")))
            .allowed());
        assert!(!ix
            .authorize(&alice, &cm.clone().named(Some("other")))
            .allowed());
        assert!(!ix.authorize(&alice, &cm).allowed());
    }

    #[test]
    fn groups_service_accounts_aggregation_and_subresource_wildcards() {
        let ix = index();
        let member = user("bob", &["team", AUTHENTICATED]);
        let list_deploys =
            Attributes::new("list", "apps", "deployments").in_namespace(Some("shop"));
        assert!(
            ix.authorize(&member, &list_deploys).allowed(),
            "aggregated view"
        );
        assert!(!ix
            .authorize(
                &member,
                &Attributes {
                    verb: "create".into(),
                    ..list_deploys.clone()
                }
            )
            .allowed());
        let robot = UserInfo::service_account("shop", "robot");
        assert!(ix
            .authorize(
                &robot,
                &Attributes::new("list", "", "pods").in_namespace(Some("shop"))
            )
            .allowed());
        let ops = user("ops", &[]);
        let scale = Attributes::new("update", "apps", "deployments")
            .in_namespace(Some("x"))
            .subresource("scale");
        assert!(ix.authorize(&ops, &scale).allowed());
        assert!(!ix
            .authorize(
                &ops,
                &Attributes::new("update", "apps", "deployments").in_namespace(Some("x"))
            )
            .allowed());
        assert!(ix.authorize(&user("root", &[MASTERS]), &scale).allowed());
        let cluster = Attributes::new("list", "", "nodes");
        assert!(ix
            .authorize(&member, &cluster)
            .eq(&Decision::Deny(
                "nodes is forbidden: User \"bob\" cannot list resource \"nodes\" in API group \"\" at the cluster scope".into()
            )));
    }
}
