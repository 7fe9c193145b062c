//! Kubernetes' Node authorizer and NodeRestriction, for kubus's node
//! agents: a node (`system:node:<name>` in `system:nodes`) reads Nodes,
//! Services and their endpoints (its proxy and DNS), its own pods, the
//! Secrets, ConfigMaps and claims those pods use, and PersistentVolumes
//! (the agent is the local-path provisioner's deleter: it sweeps the
//! directories no volume names, so it lists them; they hold no secret);
//! it writes its
//! own Node and Lease, Events, and its pods (their status: that the spec
//! stays is checked where the old object is at hand, [`spec_kept`]);
//! nothing else.
//!
//! What the store knows about pods comes through [`Graph`].

use serde_json::Value;

use super::{forbidden_message, Attributes, Decision, UserInfo};

/// The namespace of the nodes' Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// What the Node authorizer asks of the store.
pub trait Graph {
    /// The node pod `namespace/name` is bound to (None: absent, unbound).
    fn pod_node(&self, namespace: &str, name: &str) -> Option<String>;
    /// Whether a pod bound to `node` in `namespace` uses the object of
    /// `resource` (`secrets`, `configmaps`, `persistentvolumeclaims`)
    /// named `name`.
    fn used_on(&self, node: &str, namespace: &str, resource: &str, name: &str) -> bool;
}

/// The field selector a node's list or watch of pods must carry.
pub fn pods_selector(node: &str) -> String {
    format!("spec.nodeName={node}")
}

/// The Node authorizer's answer for `node` (the user `user`) asking `a`;
/// `field_selector` is the list's or watch's.
pub fn authorize(
    user: &UserInfo,
    node: &str,
    a: &Attributes,
    field_selector: Option<&str>,
    graph: &dyn Graph,
) -> Decision {
    let read = matches!(a.verb.as_str(), "get" | "list" | "watch");
    let named = |n: &str| a.name.as_deref() == Some(n);
    let allowed = match (a.group.as_str(), a.resource.as_str()) {
        ("", "nodes") => {
            read || (named(node)
                && matches!(a.verb.as_str(), "create" | "update" | "patch" | "apply"))
        }
        ("coordination.k8s.io", "leases") => {
            a.namespace.as_deref() == Some(NODE_LEASE_NAMESPACE)
                && named(node)
                && matches!(
                    a.verb.as_str(),
                    "get" | "create" | "update" | "patch" | "apply"
                )
        }
        ("", "pods") => match a.verb.as_str() {
            "list" | "watch" => field_selector.is_some_and(|f| selects_node(f, node)),
            "get" | "update" | "patch" | "delete" => match (&a.namespace, &a.name) {
                (Some(ns), Some(name)) => graph.pod_node(ns, name).as_deref() == Some(node),
                _ => false,
            },
            _ => false,
        },
        ("", "events") | ("events.k8s.io", "events") => {
            matches!(a.verb.as_str(), "create" | "update" | "patch" | "apply")
        }
        ("", "services") | ("", "endpoints") | ("discovery.k8s.io", "endpointslices") => read,
        ("", "namespaces") | ("", "persistentvolumes") | ("storage.k8s.io", "storageclasses") => {
            read
        }
        // a token for the ServiceAccount of one of its pods (the store
        // also requires the token bound to such a pod)
        ("", "serviceaccounts") => {
            a.verb == "create"
                && a.subresource == "token"
                && match (&a.namespace, &a.name) {
                    (Some(ns), Some(name)) => graph.used_on(node, ns, "serviceaccounts", name),
                    _ => false,
                }
        }
        // the API's CA, which every pod's token volume projects: public,
        // and read at every pod's start (no scan of the namespace's pods)
        ("", "configmaps")
            if a.verb == "get" && a.name.as_deref() == Some(crate::token::ROOT_CA_CONFIG_MAP) =>
        {
            true
        }
        ("", resource @ ("secrets" | "configmaps" | "persistentvolumeclaims")) => {
            a.verb == "get"
                && match (&a.namespace, &a.name) {
                    (Some(ns), Some(name)) => graph.used_on(node, ns, resource, name),
                    _ => false,
                }
        }
        _ => false,
    };
    let subresource = a.subresource.is_empty()
        || a.subresource == "status"
        || (a.resource == "serviceaccounts" && a.subresource == "token");
    if allowed && subresource {
        Decision::Allow
    } else {
        Decision::Deny(format!(
            "{}: no relationship found between node {node:?} and this object",
            forbidden_message(user, a)
        ))
    }
}

/// Whether a field selector restricts to `spec.nodeName=node`.
fn selects_node(selector: &str, node: &str) -> bool {
    selector.split(',').map(str::trim).any(|term| {
        let term = term.replacen("==", "=", 1);
        term.split_once('=')
            .is_some_and(|(k, v)| k.trim() == "spec.nodeName" && v.trim() == node)
    })
}

/// The names of objects of `resource` pod `pod` uses: volumes (also
/// projected), env and envFrom of every container, image pull secrets,
/// its ServiceAccount.
pub fn pod_uses(pod: &Value, resource: &str) -> Vec<String> {
    if resource == "serviceaccounts" {
        return vec![crate::token::pod_service_account(pod).to_string()];
    }
    let spec = &pod["spec"];
    let mut out = Vec::new();
    let mut add = |v: &Value| {
        if let Some(s) = v.as_str().filter(|s| !s.is_empty()) {
            out.push(s.to_string());
        }
    };
    let items = |v: &Value| v.as_array().cloned().unwrap_or_default();
    for vol in items(&spec["volumes"]) {
        match resource {
            "secrets" => add(&vol["secret"]["secretName"]),
            "configmaps" => add(&vol["configMap"]["name"]),
            "persistentvolumeclaims" => add(&vol["persistentVolumeClaim"]["claimName"]),
            _ => {}
        }
        for source in items(&vol["projected"]["sources"]) {
            match resource {
                "secrets" => add(&source["secret"]["name"]),
                "configmaps" => add(&source["configMap"]["name"]),
                _ => {}
            }
        }
    }
    if resource == "secrets" {
        for s in items(&spec["imagePullSecrets"]) {
            add(&s["name"]);
        }
    }
    let (key_ref, from_ref) = match resource {
        "secrets" => ("secretKeyRef", "secretRef"),
        "configmaps" => ("configMapKeyRef", "configMapRef"),
        _ => return out,
    };
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in items(&spec[list]) {
            for e in items(&c["env"]) {
                add(&e["valueFrom"][key_ref]["name"]);
            }
            for e in items(&c["envFrom"]) {
                add(&e[from_ref]["name"]);
            }
        }
    }
    out
}

/// NodeRestriction: what a node's write of one of its pods may change —
/// the status (and the deletion it finishes), never the spec, labels or
/// owners. Some(reason) when `new` changes more than that.
pub fn spec_kept(old: &Value, new: &Value) -> Option<String> {
    for (field, at) in [
        ("spec", "/spec"),
        ("metadata.labels", "/metadata/labels"),
        ("metadata.ownerReferences", "/metadata/ownerReferences"),
    ] {
        if old.pointer(at) != new.pointer(at) {
            return Some(format!(
                "a node may change only the status of its pods, not {field}"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Pods(Vec<Value>);

    impl Graph for Pods {
        fn pod_node(&self, namespace: &str, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|p| p["metadata"]["namespace"] == namespace && p["metadata"]["name"] == name)
                .and_then(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
        }
        fn used_on(&self, node: &str, namespace: &str, resource: &str, name: &str) -> bool {
            self.0.iter().any(|p| {
                p["spec"]["nodeName"] == node
                    && p["metadata"]["namespace"] == namespace
                    && pod_uses(p, resource).iter().any(|n| n == name)
            })
        }
    }

    fn graph() -> Pods {
        Pods(vec![
            json!({"metadata": {"namespace": "a", "name": "web"}, "spec": {"nodeName": "n1",
                "volumes": [{"name": "v", "secret": {"secretName": "tls"}}],
                "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "env"}}],
                    "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "p"}}}]}]}}),
            json!({"metadata": {"namespace": "a", "name": "other"}, "spec": {"nodeName": "n2",
                "volumes": [{"name": "v", "secret": {"secretName": "n2-only"}}], "containers": []}}),
        ])
    }

    fn ask(verb: &str, resource: &str, ns: Option<&str>, name: Option<&str>) -> Attributes {
        Attributes::new(verb, "", resource)
            .in_namespace(ns)
            .named(name)
    }

    #[test]
    fn a_node_reads_its_pods_and_what_they_use_only() {
        let g = graph();
        let n1 = UserInfo {
            name: "system:node:n1".into(),
            groups: vec![super::super::NODES.into()],
        };
        let yes = |a: &Attributes, f: Option<&str>| authorize(&n1, "n1", a, f, &g).allowed();
        assert!(yes(&ask("get", "pods", Some("a"), Some("web")), None));
        assert!(!yes(&ask("get", "pods", Some("a"), Some("other")), None));
        assert!(yes(
            &ask("list", "pods", None, None),
            Some("spec.nodeName=n1")
        ));
        assert!(!yes(&ask("list", "pods", None, None), None));
        assert!(!yes(
            &ask("watch", "pods", None, None),
            Some("spec.nodeName=n2")
        ));
        assert!(yes(
            &ask("update", "pods", Some("a"), Some("web")).subresource("status"),
            None
        ));
        assert!(!yes(&ask("update", "pods", Some("a"), Some("other")), None));
        for secret in ["tls", "db"] {
            assert!(
                yes(&ask("get", "secrets", Some("a"), Some(secret)), None),
                "{secret}"
            );
        }
        assert!(!yes(
            &ask("get", "secrets", Some("a"), Some("n2-only")),
            None
        ));
        assert!(!yes(&ask("list", "secrets", Some("a"), None), None));
        assert!(yes(&ask("get", "configmaps", Some("a"), Some("env")), None));
        // the API's CA is every node's to read, used or not; nothing else so
        assert!(yes(
            &ask("get", "configmaps", Some("zz"), Some("kube-root-ca.crt")),
            None
        ));
        assert!(!yes(
            &ask("update", "configmaps", Some("zz"), Some("kube-root-ca.crt")),
            None
        ));
        assert!(!yes(
            &ask("get", "secrets", Some("zz"), Some("kube-root-ca.crt")),
            None
        ));
        assert!(yes(&ask("patch", "nodes", None, Some("n1")), None));
        assert!(!yes(&ask("patch", "nodes", None, Some("n2")), None));
        assert!(!yes(&ask("delete", "nodes", None, Some("n1")), None));
        assert!(yes(&ask("create", "events", Some("x"), None), None));
        assert!(yes(&ask("list", "persistentvolumes", None, None), None));
        assert!(!yes(&ask("create", "deployments", Some("a"), None), None));
        let d = authorize(
            &n1,
            "n1",
            &ask("get", "secrets", Some("a"), Some("n2-only")),
            None,
            &g,
        );
        assert!(
            matches!(d, Decision::Deny(m) if m.contains("no relationship found between node \"n1\""))
        );
        let lease = Attributes::new("update", "coordination.k8s.io", "leases")
            .in_namespace(Some(NODE_LEASE_NAMESPACE))
            .named(Some("n1"));
        assert!(yes(&lease, None));
        assert!(!yes(&lease.named(Some("n2")), None));
    }

    #[test]
    fn a_node_changes_only_the_status_of_its_pods() {
        let old =
            json!({"metadata": {"labels": {"a": "1"}}, "spec": {"nodeName": "n1"}, "status": {}});
        let mut new = old.clone();
        new["status"]["phase"] = json!("Running");
        assert_eq!(spec_kept(&old, &new), None);
        new["spec"]["nodeName"] = json!("n2");
        assert!(spec_kept(&old, &new).is_some_and(|m| m.contains("not spec")));
        assert!(selects_node(
            "metadata.namespace=a, spec.nodeName==n1",
            "n1"
        ));
        assert!(!selects_node("spec.nodeName=n10", "n1"));
    }
}
