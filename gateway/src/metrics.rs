//! `metrics.k8s.io/v1beta1`, the resource metrics API that `kubectl top`
//! (and any client written for metrics-server) reads: NodeMetrics and
//! PodMetrics made from the figures the node agents sample every 10 s
//! (the same `kubus top` prints). Pure: paths in, targets out; usage in,
//! Kubernetes JSON out. The handler lists the objects as the user (so the
//! store decides what they may see), asks the agents, and answers with
//! these.

use kubus_api::{meta, print};
use kubus_bus::protocol::{NodeUsage, PodUsage};
use serde_json::{json, Value};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
const GROUP_VERSION: &str = "metrics.k8s.io/v1beta1";
const VERBS: &[&str] = &["get", "list"];

/// What a metrics path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/nodes`, `/nodes/{name}`
    Nodes { name: Option<String> },
    /// `/pods` (every namespace), `/namespaces/{ns}/pods[/{name}]`
    Pods {
        namespace: Option<String>,
        name: Option<String>,
    },
}

impl Target {
    /// The path after `/apis/metrics.k8s.io/v1beta1/`.
    pub fn parse(rest: &[&str]) -> Option<Target> {
        let named = |n: &&str| (!n.is_empty()).then(|| n.to_string());
        Some(match rest {
            ["nodes"] => Target::Nodes { name: None },
            ["nodes", n] => Target::Nodes {
                name: Some(named(n)?),
            },
            ["pods"] => Target::Pods {
                namespace: None,
                name: None,
            },
            ["namespaces", ns, "pods"] => Target::Pods {
                namespace: Some(named(ns)?),
                name: None,
            },
            ["namespaces", ns, "pods", n] => Target::Pods {
                namespace: Some(named(ns)?),
                name: Some(named(n)?),
            },
            _ => return None,
        })
    }

    /// The resource RBAC names (`nodes` or `pods` in `metrics.k8s.io`).
    pub fn resource(&self) -> &'static str {
        match self {
            Target::Nodes { .. } => "nodes",
            Target::Pods { .. } => "pods",
        }
    }

    pub fn name(&self) -> Option<&str> {
        match self {
            Target::Nodes { name } | Target::Pods { name, .. } => name.as_deref(),
        }
    }

    pub fn namespace(&self) -> Option<&str> {
        match self {
            Target::Nodes { .. } => None,
            Target::Pods { namespace, .. } => namespace.as_deref(),
        }
    }
}

/// The group in `/apis` (legacy discovery).
pub fn group_entry() -> Value {
    let gv = json!({"groupVersion": GROUP_VERSION, "version": VERSION});
    json!({"name": GROUP, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `/apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": VERBS},
            {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": VERBS},
        ],
    })
}

/// The group in aggregated discovery (`/apis`).
pub fn aggregated_group() -> Value {
    let resource = |name: &str, kind: &str, scope: &str| {
        json!({
            "resource": name,
            "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
            "scope": scope,
            "singularResource": "",
            "verbs": VERBS,
        })
    };
    json!({
        "metadata": {"name": GROUP},
        "versions": [{
            "version": VERSION,
            "freshness": "Current",
            "resources": [
                resource("nodes", "NodeMetrics", "Cluster"),
                resource("pods", "PodMetrics", "Namespaced"),
            ],
        }],
    })
}

/// CPU as metrics-server writes it: nanocores.
fn cpu(nano_cores: u64) -> String {
    format!("{nano_cores}n")
}

/// Memory as metrics-server writes it: kibibytes.
fn memory(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

fn timestamp(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap_or(0))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn window(ms: u64) -> String {
    format!("{}s", ms.div_ceil(1000).max(1))
}

/// A node's NodeMetrics (`node` is the Node object), or None when its
/// agent measures nothing (a hollow node, or not sampled yet).
pub fn node_metrics(node: &Value, u: &NodeUsage) -> Option<Value> {
    let usage = u.usage?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": {
            "name": meta::name(node).unwrap_or_default(),
            "creationTimestamp": timestamp(u.timestamp_ms),
            "labels": node.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
        },
        "timestamp": timestamp(u.timestamp_ms),
        "window": window(u.window_ms),
        "usage": {"cpu": cpu(usage.cpu_nano_cores), "memory": memory(usage.memory_bytes)},
    }))
}

/// A pod's PodMetrics (`pod` is the Pod object, `u` its node's answer,
/// `p` the pod's figures in it).
pub fn pod_metrics(pod: &Value, u: &NodeUsage, p: &PodUsage) -> Value {
    json!({
        "kind": "PodMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": {
            "name": p.name,
            "namespace": p.namespace,
            "creationTimestamp": timestamp(u.timestamp_ms),
            "labels": pod.pointer("/metadata/labels").cloned().unwrap_or_else(|| json!({})),
        },
        "timestamp": timestamp(u.timestamp_ms),
        "window": window(u.window_ms),
        "containers": p.containers.iter().map(|c| json!({
            "name": c.name,
            "usage": {"cpu": cpu(c.usage.cpu_nano_cores), "memory": memory(c.usage.memory_bytes)},
        })).collect::<Vec<_>>(),
    })
}

/// `NodeMetricsList` or `PodMetricsList`.
pub fn list(target: &Target, items: Vec<Value>) -> Value {
    let kind = match target {
        Target::Nodes { .. } => "NodeMetricsList",
        Target::Pods { .. } => "PodMetricsList",
    };
    json!({"kind": kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})
}

/// The nodes to ask for `pods`' figures: where they run, once each.
pub fn nodes_of(pods: &[Value]) -> Vec<String> {
    let mut on: Vec<String> = pods
        .iter()
        .map(|p| print::s(p, "/spec/nodeName").to_string())
        .filter(|n| !n.is_empty())
        .collect();
    on.sort();
    on.dedup();
    on
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubus_bus::protocol::{ContainerUsage, Usage};

    #[test]
    fn paths_name_nodes_and_pods() {
        assert_eq!(
            Target::parse(&["nodes"]),
            Some(Target::Nodes { name: None })
        );
        assert_eq!(
            Target::parse(&["namespaces", "default", "pods", "web"]),
            Some(Target::Pods {
                namespace: Some("default".into()),
                name: Some("web".into())
            })
        );
        assert_eq!(Target::parse(&["pods"]).map(|t| t.resource()), Some("pods"));
        assert_eq!(Target::parse(&["namespaces", "", "pods"]), None);
        assert_eq!(Target::parse(&["deployments"]), None);
    }

    #[test]
    fn figures_read_as_metrics_server_writes_them() {
        let u = NodeUsage {
            node: "n1".into(),
            timestamp_ms: 1_796_644_813_000,
            window_ms: 10_000,
            usage: Some(Usage {
                cpu_nano_cores: 250_000_000,
                memory_bytes: 64 << 20,
            }),
            pods: vec![PodUsage {
                namespace: "default".into(),
                name: "web".into(),
                containers: vec![ContainerUsage {
                    name: "c".into(),
                    usage: Usage {
                        cpu_nano_cores: 1_000_000,
                        memory_bytes: 2048,
                    },
                }],
            }],
        };
        let node = json!({"metadata": {"name": "n1", "labels": {"a": "b"}}});
        let m = node_metrics(&node, &u).expect("measured");
        assert_eq!(
            m["usage"],
            json!({"cpu": "250000000n", "memory": "65536Ki"})
        );
        assert_eq!(m["window"], "10s");
        assert_eq!(m["metadata"]["labels"]["a"], "b");
        assert!(m["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        let pod = json!({"metadata": {"name": "web", "labels": {"app": "web"}}});
        let p = pod_metrics(&pod, &u, &u.pods[0]);
        assert_eq!(p["containers"][0]["usage"]["cpu"], "1000000n");
        assert_eq!(p["metadata"]["namespace"], "default");
        let hollow = NodeUsage { usage: None, ..u };
        assert_eq!(node_metrics(&node, &hollow), None);
        assert_eq!(
            nodes_of(&[
                json!({"spec": {"nodeName": "b"}}),
                json!({"spec": {"nodeName": "a"}}),
                json!({"spec": {"nodeName": "b"}}),
                json!({"spec": {}})
            ]),
            ["a", "b"]
        );
    }
}
