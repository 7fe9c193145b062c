//! The objects of `kubus create role|clusterrole|rolebinding|
//! clusterrolebinding|serviceaccount`, built as kubectl builds them
//! (pure), `kubus create token`'s TokenRequest, and `kubus auth can-i`'s
//! reading of a resource word.

use anyhow::bail;
use kubus_api::Kind;
use kubus_bus::Client;
use serde_json::{json, Value};

use crate::cli::CreateTokenArgs;

/// The verbs a rule may name (kubectl's list), `*` for all.
const VERBS: [&str; 13] = [
    "*",
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "use",
    "bind",
    "escalate",
    "impersonate",
];

/// Why a role or binding cannot be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccessError {
    #[error("invalid verb {0:?}: one of {list}", list = VERBS.join(", "))]
    Verb(String),
    #[error("at least one --verb is required")]
    NoVerb,
    #[error("at least one --resource (or --non-resource-url for a ClusterRole) is required")]
    NoResource,
    #[error("exactly one of --role and --clusterrole is required")]
    RoleRef,
    #[error("--serviceaccount {0:?}: expected NAMESPACE:NAME")]
    ServiceAccount(String),
}

/// A resource word as RBAC names it: `pods`, `pods/log`,
/// `deployments.apps`, a short name (`deploy`) — the API group and the
/// resource (with its subresource). Words kubus does not serve (`users`)
/// are in the core group.
pub fn resource_of(word: &str) -> (String, String) {
    let (word, sub) = match word.split_once('/') {
        Some((w, s)) => (w, Some(s)),
        None => (word, None),
    };
    let (resource, group) = match Kind::from_resource(word) {
        Ok(k) => (k.resource().to_string(), k.group().to_string()),
        Err(_) => match word.split_once('.') {
            Some((r, g)) => (r.to_string(), g.to_string()),
            None => (word.to_string(), String::new()),
        },
    };
    let resource = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource,
    };
    (group, resource)
}

fn rules(
    verbs: &[String],
    resources: &[String],
    resource_names: &[String],
    urls: &[String],
) -> Result<Vec<Value>, AccessError> {
    let verbs: Vec<String> = verbs
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect();
    if verbs.is_empty() {
        return Err(AccessError::NoVerb);
    }
    if let Some(bad) = verbs.iter().find(|v| !VERBS.contains(&v.as_str())) {
        return Err(AccessError::Verb(bad.clone()));
    }
    let words: Vec<&str> = resources
        .iter()
        .flat_map(|r| r.split(','))
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    if words.is_empty() && urls.is_empty() {
        return Err(AccessError::NoResource);
    }
    // one rule per API group, in the order the groups first appear
    let mut by_group: Vec<(String, Vec<String>)> = Vec::new();
    for w in words {
        let (group, resource) = resource_of(w);
        match by_group.iter_mut().find(|(g, _)| *g == group) {
            Some((_, list)) => list.push(resource),
            None => by_group.push((group, vec![resource])),
        }
    }
    let mut out: Vec<Value> = by_group
        .into_iter()
        .map(|(group, resources)| {
            let mut rule = json!({"verbs": verbs, "apiGroups": [group], "resources": resources});
            if !resource_names.is_empty() {
                rule["resourceNames"] = json!(resource_names);
            }
            rule
        })
        .collect();
    if !urls.is_empty() {
        out.push(json!({"verbs": verbs, "nonResourceURLs": urls}));
    }
    Ok(out)
}

/// `create role` (`cluster`: `create clusterrole`).
pub fn role(
    cluster: bool,
    name: &str,
    verbs: &[String],
    resources: &[String],
    resource_names: &[String],
    urls: &[String],
) -> Result<Value, AccessError> {
    Ok(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": if cluster { "ClusterRole" } else { "Role" },
        "metadata": {"name": name},
        "rules": rules(verbs, resources, resource_names, urls)?,
    }))
}

/// Who a binding names.
#[derive(Debug, Default, Clone)]
pub struct Subjects {
    pub users: Vec<String>,
    pub groups: Vec<String>,
    /// `NAMESPACE:NAME` each.
    pub service_accounts: Vec<String>,
}

fn subjects(s: &Subjects) -> Result<Vec<Value>, AccessError> {
    let mut out = Vec::new();
    for u in &s.users {
        out.push(json!({"apiGroup": kubus_api::rbac::GROUP, "kind": "User", "name": u}));
    }
    for g in &s.groups {
        out.push(json!({"apiGroup": kubus_api::rbac::GROUP, "kind": "Group", "name": g}));
    }
    for sa in &s.service_accounts {
        let (ns, name) = sa
            .split_once(':')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
            .ok_or_else(|| AccessError::ServiceAccount(sa.clone()))?;
        out.push(json!({"kind": "ServiceAccount", "namespace": ns, "name": name}));
    }
    Ok(out)
}

/// `create rolebinding` (`cluster`: `create clusterrolebinding`, which
/// takes a ClusterRole only).
pub fn binding(
    cluster: bool,
    name: &str,
    role: Option<&str>,
    cluster_role: Option<&str>,
    who: &Subjects,
) -> Result<Value, AccessError> {
    let (kind, role_name) = match (role, cluster_role) {
        (Some(r), None) if !cluster => ("Role", r),
        (None, Some(r)) => ("ClusterRole", r),
        _ => return Err(AccessError::RoleRef),
    };
    Ok(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": if cluster { "ClusterRoleBinding" } else { "RoleBinding" },
        "metadata": {"name": name},
        "roleRef": {"apiGroup": kubus_api::rbac::GROUP, "kind": kind, "name": role_name},
        "subjects": subjects(who)?,
    }))
}

/// `create serviceaccount`.
pub fn service_account(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
}

/// The TokenRequest `kubus create token` sends, from its flags (kubectl's).
pub fn token_request(a: &CreateTokenArgs) -> anyhow::Result<Value> {
    let mut spec = serde_json::Map::new();
    if !a.audience.is_empty() {
        spec.insert("audiences".into(), json!(a.audience));
    }
    if let Some(d) = &a.duration {
        let d = crate::wait::parse_duration(d).map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
        spec.insert("expirationSeconds".into(), json!(d.as_secs()));
    }
    match (&a.bound_object_kind, &a.bound_object_name) {
        (None, None) if a.bound_object_uid.is_none() => {}
        (Some(kind), Some(name)) => {
            if kind != "Pod" {
                bail!("--bound-object-kind {kind:?}: kubus binds tokens to a Pod");
            }
            let mut r = json!({"kind": kind, "apiVersion": "v1", "name": name});
            if let Some(uid) = &a.bound_object_uid {
                r["uid"] = json!(uid);
            }
            spec.insert("boundObjectRef".into(), r);
        }
        _ => bail!("--bound-object-kind and --bound-object-name go together"),
    }
    Ok(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": spec,
    }))
}

/// `kubus create token SERVICEACCOUNT`: the token, on a line of its own.
pub async fn token(client: &Client, a: CreateTokenArgs) -> anyhow::Result<()> {
    let request = token_request(&a)?;
    let ns = a.namespace.as_deref().unwrap_or("default");
    let answered = client.create_token(ns, &a.name, request).await?;
    match a.output.as_deref() {
        None => {
            let Some(t) = answered["status"]["token"].as_str() else {
                bail!("the store's answer holds no token");
            };
            println!("{t}");
            Ok(())
        }
        Some(format @ ("yaml" | "json")) => {
            crate::create::print_object(&answered, Some(format), "")
        }
        Some(other) => bail!("unknown output format {other:?}: use yaml or json"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn roles_group_their_resources_by_api_group() {
        let r = role(
            false,
            "reader",
            &strings(&["get,list", "watch"]),
            &strings(&["pods", "deploy", "pods/log", "widgets.example.com"]),
            &[],
            &[],
        )
        .expect("role");
        assert_eq!(r["rules"][0]["apiGroups"], json!([""]));
        assert_eq!(r["rules"][0]["resources"], json!(["pods", "pods/log"]));
        assert_eq!(r["rules"][1]["apiGroups"], json!(["apps"]));
        assert_eq!(r["rules"][1]["resources"], json!(["deployments"]));
        assert_eq!(r["rules"][2]["apiGroups"], json!(["example.com"]));
        assert_eq!(r["rules"][0]["verbs"], json!(["get", "list", "watch"]));
        assert_eq!(
            role(
                false,
                "x",
                &strings(&["frob"]),
                &strings(&["pods"]),
                &[],
                &[]
            ),
            Err(AccessError::Verb("frob".into()))
        );
        assert_eq!(
            role(false, "x", &strings(&["get"]), &[], &[], &[]),
            Err(AccessError::NoResource)
        );
    }

    #[test]
    fn bindings_name_one_role_and_their_subjects() {
        let who = Subjects {
            users: strings(&["alice"]),
            groups: strings(&["team"]),
            service_accounts: strings(&["shop:robot"]),
        };
        let b = binding(false, "b", Some("reader"), None, &who).expect("binding");
        assert_eq!(b["roleRef"]["kind"], "Role");
        assert_eq!(
            b["subjects"][2],
            json!({"kind": "ServiceAccount", "namespace": "shop", "name": "robot"})
        );
        assert_eq!(
            binding(true, "b", Some("reader"), None, &who),
            Err(AccessError::RoleRef)
        );
        let bad = Subjects {
            service_accounts: strings(&["robot"]),
            ..Subjects::default()
        };
        assert!(matches!(
            binding(false, "b", None, Some("view"), &bad),
            Err(AccessError::ServiceAccount(_))
        ));
        assert_eq!(
            resource_of("deployments/scale"),
            ("apps".into(), "deployments/scale".into())
        );
        assert_eq!(resource_of("users"), ("".into(), "users".into()));
    }
}
