//! Whether a pod may be placed on a node, by the rules that do not count
//! resources: `nodeSelector`, required node affinity (`nodeSelectorTerms`
//! with `matchExpressions` and `matchFields`), and taints against
//! tolerations. Kubernetes states these in its scheduler's NodeAffinity
//! and TaintToleration plugins and in `component-helpers`; the DaemonSet
//! controller asks them for each node, as Kubernetes' does.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Taint keys the node lifecycle sets, which daemon pods tolerate.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

fn labels(node: &Value) -> BTreeMap<String, String> {
    crate::meta::labels(node)
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// One `matchExpressions`/`matchFields` requirement against `value` (the
/// label's or field's value; None when absent).
fn requirement(req: &Value, value: Option<&str>) -> bool {
    let values = strings(req.get("values"));
    let number = |s: &str| s.parse::<i64>().ok();
    match req.get("operator").and_then(Value::as_str).unwrap_or("") {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(number), values.first().and_then(|s| number(s))), (Some(a), Some(b)) if a > b)
        }
        "Lt" => {
            matches!((value.and_then(number), values.first().and_then(|s| number(s))), (Some(a), Some(b)) if a < b)
        }
        _ => false,
    }
}

/// A `nodeSelectorTerm`: all its expressions and fields hold (an empty
/// term matches nothing, as in Kubernetes).
pub fn term_matches(term: &Value, node: &Value) -> bool {
    let name = node
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    term_matches_on(term, &labels(node), name)
}

/// [`term_matches`] on a node known by its labels and name.
pub fn term_matches_on(term: &Value, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = term.get("matchExpressions").and_then(Value::as_array);
    let fields = term.get("matchFields").and_then(Value::as_array);
    if exprs.is_none_or(Vec::is_empty) && fields.is_none_or(Vec::is_empty) {
        return false;
    }
    exprs.into_iter().flatten().all(|r| {
        let key = r.get("key").and_then(Value::as_str).unwrap_or("");
        requirement(r, labels.get(key).map(String::as_str))
    }) && fields.into_iter().flatten().all(|r| {
        let value = match r.get("key").and_then(Value::as_str) {
            Some("metadata.name") => Some(name),
            _ => None,
        };
        requirement(r, value)
    })
}

/// `spec.nodeSelector` and required node affinity of a pod spec hold on `node`.
pub fn selected(pod_spec: &Value, node: &Value) -> bool {
    let name = node
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    selected_on(pod_spec, &labels(node), name)
}

/// [`selected`] on a node known by its labels and name.
pub fn selected_on(pod_spec: &Value, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let selector_ok = pod_spec
        .get("nodeSelector")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str());
    let terms = pod_spec
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array);
    let affinity_ok = match terms {
        None => true,
        Some(terms) => terms.iter().any(|t| term_matches_on(t, labels, name)),
    };
    selector_ok && affinity_ok
}

/// Whether `toleration` tolerates `taint`.
pub fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let effect = s(toleration, "effect");
    if !effect.is_empty() && effect != s(taint, "effect") {
        return false;
    }
    let key = s(toleration, "key");
    match toleration
        .get("operator")
        .and_then(Value::as_str)
        .unwrap_or("Equal")
    {
        "Exists" => key.is_empty() || key == s(taint, "key"),
        _ => key == s(taint, "key") && s(toleration, "value") == s(taint, "value"),
    }
}

/// The first taint of `node` with one of `effects` that no toleration of
/// the pod spec tolerates.
pub fn untolerated_taint<'a>(
    pod_spec: &Value,
    node: &'a Value,
    effects: &[&str],
) -> Option<&'a Value> {
    let taints = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    untolerated_among(tolerations(pod_spec), taints, effects)
}

/// A pod spec's `tolerations`.
pub fn tolerations(pod_spec: &Value) -> &[Value] {
    pod_spec
        .get("tolerations")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The first of `taints` with one of `effects` that none of `tolerations`
/// tolerates.
pub fn untolerated_among<'a>(
    tolerations: &[Value],
    taints: &'a [Value],
    effects: &[&str],
) -> Option<&'a Value> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.get("effect").and_then(Value::as_str).unwrap_or("")))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// The tolerations Kubernetes adds to every daemon pod, so that a daemon
/// stays on a node that is not ready, unreachable, under pressure or
/// cordoned.
pub fn daemon_tolerations(host_network: bool) -> Vec<Value> {
    let mut t = vec![
        json!({"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": TAINT_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}),
    ];
    if host_network {
        t.push(json!({"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}})
    }

    #[test]
    fn selectors_and_affinity() {
        let n = node("n1", json!({"disk": "ssd", "cores": "8"}), json!([]));
        let table = [
            (json!({}), true),
            (json!({"nodeSelector": {"disk": "ssd"}}), true),
            (json!({"nodeSelector": {"disk": "hdd"}}), false),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
                {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}]}}}}),
                true,
            ),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}}),
                false,
            ),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}],
                 "matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}]}}}}),
                true,
            ),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{}]}}}}),
                false,
            ),
        ];
        for (spec, want) in table {
            assert_eq!(selected(&spec, &n), want, "{spec}");
        }
    }

    #[test]
    fn taints_and_tolerations() {
        let n = node(
            "n1",
            json!({}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"},
                   {"key": "soft", "effect": "PreferNoSchedule"}]),
        );
        let hard = ["NoSchedule", "NoExecute"];
        let table = [
            (json!({}), true),
            (
                json!({"tolerations": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}),
                false,
            ),
            (
                json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}),
                false,
            ),
            (json!({"tolerations": [{"operator": "Exists"}]}), false),
            (
                json!({"tolerations": [{"key": "dedicated", "value": "web", "effect": "NoSchedule"}]}),
                true,
            ),
            (
                json!({"tolerations": [{"key": "dedicated", "value": "db", "effect": "NoExecute"}]}),
                true,
            ),
        ];
        for (spec, blocked) in table {
            assert_eq!(
                untolerated_taint(&spec, &n, &hard).is_some(),
                blocked,
                "{spec}"
            );
        }
        let cordoned = node(
            "n2",
            json!({}),
            json!([{"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"},
            {"key": TAINT_NOT_READY, "effect": "NoExecute"}]),
        );
        let daemon = json!({"tolerations": daemon_tolerations(false)});
        assert!(untolerated_taint(&daemon, &cordoned, &hard).is_none());
    }
}
