//! The DaemonSet controller: one pod of the set on every node that should
//! run it — the template's nodeSelector and required node affinity match
//! the node, and the node's NoSchedule/NoExecute taints are tolerated
//! (daemon pods tolerate not-ready, unreachable, pressure and cordoned
//! nodes, as Kubernetes adds those tolerations) — and none elsewhere.
//! Pods are bound to their node by the controller (`spec.nodeName`, and
//! the node-name affinity Kubernetes gives them). A template change rolls
//! out node by node: RollingUpdate within maxUnavailable (or, with
//! maxSurge, a new pod beside the old one until it is available), or
//! OnDelete (a new pod only where the old one was deleted).
//!
//! [`reconcile`] decides; [`DaemonSetReconciler`] puts it on the runtime.

use std::collections::BTreeMap;

use kubus_api::{
    meta::{self, int_at},
    placement, pod, Kind, ObjectRef,
};
use serde_json::{json, Value};

use crate::deployment::{resolve, template_hash};
use crate::informer::{key_of, Delta};
use crate::runtime::{Plan, Planned, Reconcile, View, Watch};
use crate::workload::{pod_from, with_status};
use crate::write::Write;

pub use crate::revisions::REVISION_HASH_LABEL;
/// The label carrying the set's generation when the pod was made.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// Most pod writes one sync asks for (the next sync follows at once).
pub const WRITES_PER_SYNC_MAX: usize = 256;

/// Whether the set's pods belong on `node`.
pub fn should_run(ds: &Value, node: &Value) -> bool {
    runs_on(&daemon_spec(ds), node)
}

/// The set's pod spec with the tolerations every daemon pod gets.
fn daemon_spec(ds: &Value) -> Value {
    let mut spec = ds
        .pointer("/spec/template/spec")
        .cloned()
        .unwrap_or(json!({}));
    let host_network = spec.get("hostNetwork") == Some(&Value::Bool(true));
    if let Some(obj) = spec.as_object_mut() {
        let mut tolerations = obj
            .get("tolerations")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        tolerations.extend(placement::daemon_tolerations(host_network));
        obj.insert("tolerations".into(), Value::Array(tolerations));
    }
    spec
}

/// Whether a daemon pod of `spec` (see [`daemon_spec`]) belongs on `node`.
fn runs_on(spec: &Value, node: &Value) -> bool {
    placement::selected(spec, node)
        && placement::untolerated_taint(spec, node, &["NoSchedule", "NoExecute"]).is_none()
}

/// A daemon pod for `node`.
pub fn daemon_pod(ds: &Value, node: &str, hash: &str) -> Value {
    let mut p = pod_from(ds, None);
    let generation = int_at(ds, "/metadata/generation").unwrap_or(1);
    if let Some(labels) = p
        .pointer_mut("/metadata")
        .and_then(Value::as_object_mut)
        .map(|m| m.entry("labels").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    {
        labels.insert(REVISION_HASH_LABEL.into(), json!(hash));
        labels.insert(
            TEMPLATE_GENERATION_LABEL.into(),
            json!(generation.to_string()),
        );
    }
    if let Some(spec) = p.get_mut("spec").and_then(Value::as_object_mut) {
        let host_network = spec.get("hostNetwork") == Some(&Value::Bool(true));
        spec.insert("nodeName".into(), json!(node));
        let affinity = spec.entry("affinity").or_insert_with(|| json!({}));
        if let Some(a) = affinity.as_object_mut() {
            let na = a.entry("nodeAffinity").or_insert_with(|| json!({}));
            if let Some(na) = na.as_object_mut() {
                na.insert(
                    "requiredDuringSchedulingIgnoredDuringExecution".into(),
                    json!({"nodeSelectorTerms": [{"matchFields": [
                        {"key": "metadata.name", "operator": "In", "values": [node]}]}]}),
                );
            }
        }
        let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
        if let Some(t) = tolerations.as_array_mut() {
            for extra in placement::daemon_tolerations(host_network) {
                if !t.iter().any(|have| {
                    have.get("key") == extra.get("key") && have.get("effect") == extra.get("effect")
                }) {
                    t.push(extra);
                }
            }
        }
    }
    p
}

fn created(p: &Value) -> String {
    p.pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// What one sync of a DaemonSet does.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decision {
    /// Nodes to create a pod on.
    pub creates: Vec<String>,
    pub deletes: Vec<ObjectRef>,
    pub status: Option<Value>,
}

/// Decide one sync of `ds` from the nodes and its pods.
pub fn reconcile(ds: &Value, nodes: &[&Value], pods: &[&Value], now: i64) -> Decision {
    let mut d = Decision::default();
    if kubus_api::lifecycle::is_marked(ds) {
        return d;
    }
    let hash = template_hash(ds);
    let min_ready = int_at(ds, "/spec/minReadySeconds").unwrap_or(0);
    let on_delete = ds
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        == Some("OnDelete");
    let available = |p: &Value| pod::is_available(p, min_ready, now);
    let is_new = |p: &Value| meta::labels(p).get(REVISION_HASH_LABEL) == Some(&hash);

    // the set's pods by node
    let mut by_node: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for &p in pods {
        if pod::is_terminating(p) {
            continue;
        }
        let node = p
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if pod::is_finished(p) {
            // a daemon that stopped is replaced: delete it, a new one follows
            d.deletes.extend(meta::object_ref(p));
            continue;
        }
        by_node.entry(node).or_default().push(p);
    }
    let spec = daemon_spec(ds);
    let mut eligible: Vec<&str> = nodes
        .iter()
        .filter(|n| runs_on(&spec, n))
        .filter_map(|n| meta::name(n))
        .collect();
    eligible.sort_unstable();
    let desired = eligible.len() as i64;
    let max_unavailable = resolve(
        ds.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
        desired,
        true,
        0,
    )
    .max(0);
    let max_surge = resolve(
        ds.pointer("/spec/updateStrategy/rollingUpdate/maxSurge"),
        desired,
        true,
        0,
    )
    .max(0);

    let (mut scheduled, mut ready, mut available_n, mut updated) = (0, 0, 0, 0);
    let mut unavailable_now = 0;
    let mut surging = 0;
    for node in &eligible {
        let here = by_node.get(node).map(Vec::as_slice).unwrap_or_default();
        if here.iter().any(|p| !available(p)) || here.is_empty() {
            unavailable_now += 1;
        }
        if here.iter().any(|p| is_new(p)) && here.iter().any(|p| !is_new(p)) {
            surging += 1;
        }
    }
    let mut unavailable_budget = max_unavailable - unavailable_now;
    let mut surge_budget = max_surge - surging;

    for node in &eligible {
        let mut here: Vec<&Value> = by_node.remove(node).unwrap_or_default();
        here.sort_by_key(|p| created(p));
        if here.is_empty() {
            d.creates.push(node.to_string());
            continue;
        }
        scheduled += 1;
        if here.iter().any(|p| pod::is_ready(p)) {
            ready += 1;
        }
        if here.iter().any(|p| available(p)) {
            available_n += 1;
        }
        let (new, old): (Vec<&Value>, Vec<&Value>) = here.iter().partition(|p| is_new(p));
        if !new.is_empty() {
            updated += 1;
        }
        // duplicates of one revision: keep the oldest
        d.deletes
            .extend(new.iter().skip(1).filter_map(|p| meta::object_ref(p)));
        if on_delete || old.is_empty() {
            d.deletes
                .extend(old.iter().skip(1).filter_map(|p| meta::object_ref(p)));
            continue;
        }
        // rolling update of this node
        match new.first() {
            Some(n) if available(n) => d
                .deletes
                .extend(old.iter().filter_map(|p| meta::object_ref(p))),
            Some(_) => {} // the surge pod is not available yet
            None => {
                let old_available = old.iter().any(|p| available(p));
                if !old_available {
                    d.deletes
                        .extend(old.iter().filter_map(|p| meta::object_ref(p)));
                } else if max_surge > 0 {
                    if surge_budget > 0 {
                        surge_budget -= 1;
                        d.creates.push(node.to_string());
                    }
                } else if unavailable_budget > 0 {
                    unavailable_budget -= 1;
                    d.deletes
                        .extend(old.iter().filter_map(|p| meta::object_ref(p)));
                }
            }
        }
    }
    // pods on nodes that should not run them (or on no node) go
    let misscheduled = by_node.len() as i64;
    for (_, here) in by_node {
        d.deletes
            .extend(here.iter().filter_map(|p| meta::object_ref(p)));
    }
    d.creates.truncate(WRITES_PER_SYNC_MAX);
    d.deletes.truncate(WRITES_PER_SYNC_MAX);

    let status = json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": scheduled,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "numberAvailable": available_n,
        "numberUnavailable": (desired - available_n).max(0),
        "updatedNumberScheduled": updated,
        "observedGeneration": ds.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
    });
    d.status = with_status(ds, status);
    d
}

fn all_daemon_sets(_: &Delta, view: &View<'_>) -> Vec<String> {
    view.own()
        .map(|c| c.cache.values().map(key_of).collect())
        .unwrap_or_default()
}

/// The DaemonSet controller on the runtime: it owns pods and follows nodes.
#[derive(Debug, Clone, Copy, Default)]
pub struct DaemonSetReconciler;

impl Reconcile for DaemonSetReconciler {
    fn kind(&self) -> Kind {
        Kind::DaemonSet
    }

    fn name(&self) -> &'static str {
        "daemonset-controller"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![
            Watch::Owns(Kind::Pod),
            Watch::Owns(Kind::ControllerRevision),
            Watch::Maps(Kind::Node, all_daemon_sets),
        ]
    }

    fn reconcile(&self, ds: &Value, view: &View<'_>) -> Plan {
        // one step at a time: the next is decided on what this one did
        if !view.pending.is_empty() {
            return Plan::default();
        }
        let nodes: Vec<&Value> = view
            .cache(Kind::Node)
            .map(|c| c.cache.values().collect())
            .unwrap_or_default();
        let pods = view.owned(Kind::Pod, meta::uid(ds).unwrap_or_default());
        let d = reconcile(ds, &nodes, &pods, view.now.as_second());
        let hash = template_hash(ds);
        let creates = d.creates.iter().map(|node| {
            Planned::noted(
                Write::Create(daemon_pod(ds, node, &hash)),
                "SuccessfulCreate",
                "Created pod: {name}",
            )
        });
        let deletes = d.deletes.into_iter().map(|r| {
            Planned::noted(
                Write::delete(r, None),
                "SuccessfulDelete",
                "Deleted pod: {name}",
            )
        });
        let status = d.status.map(|s| Planned::quiet(Write::Update(s)));
        let in_use: std::collections::BTreeSet<String> = pods
            .iter()
            .filter_map(|p| meta::labels(p).get(REVISION_HASH_LABEL).cloned())
            .map(|h| crate::revisions::name_of(ds, &h))
            .collect();
        let revisions = view.owned(Kind::ControllerRevision, meta::uid(ds).unwrap_or_default());
        let history = crate::revisions::plan(ds, &hash, &revisions, &in_use)
            .into_iter()
            .map(Planned::quiet);
        Plan::writes(
            creates
                .collect::<Vec<_>>()
                .into_iter()
                .chain(deletes)
                .chain(status)
                .chain(history),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(strategy: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "ds-uid", "generation": 2},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "updateStrategy": strategy,
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"nodeSelector": {"role": "worker"}, "containers": [{"name": "c", "image": "i"}]}}}})
    }

    fn node(name: &str, role: &str, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": {"role": role}}, "spec": {"taints": taints}})
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "kube-system", "creationTimestamp": format!("2026-01-01T00:00:0{}Z", name.len() % 10),
                "labels": {REVISION_HASH_LABEL: hash}},
            "spec": {"nodeName": node},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    fn names(d: &Decision) -> Vec<String> {
        d.deletes.iter().map(|r| r.name.clone()).collect()
    }

    #[test]
    fn one_pod_per_eligible_node() {
        let set = ds(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}));
        let h = template_hash(&set);
        let (a, b, c, tainted) = (
            node("a", "worker", json!([])),
            node("b", "worker", json!([])),
            node("c", "db", json!([])),
            node(
                "t",
                "worker",
                json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]),
            ),
        );
        let cordoned = node(
            "u",
            "worker",
            json!([{"key": placement::TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}]),
        );
        let nodes = [&a, &b, &c, &tainted, &cordoned];
        let pa = pod("pa", "a", &h, true);
        let pc = pod("pc", "c", &h, true);
        let d = reconcile(&set, &nodes, &[&pa, &pc], 0);
        assert_eq!(d.creates, ["b", "u"]);
        assert_eq!(names(&d), ["pc"]);
        let s = &d.status.as_ref().expect("status")["status"];
        assert_eq!(s["desiredNumberScheduled"], 3);
        assert_eq!(s["currentNumberScheduled"], 1);
        assert_eq!(s["numberMisscheduled"], 1);
        assert_eq!(s["updatedNumberScheduled"], 1);
        let made = daemon_pod(&set, "b", &h);
        assert_eq!(made["spec"]["nodeName"], "b");
        assert_eq!(made["metadata"]["labels"][REVISION_HASH_LABEL], h.as_str());
        assert!(made["spec"]["tolerations"]
            .as_array()
            .is_some_and(|t| t.len() == 6));
    }

    #[test]
    fn rolling_update_within_max_unavailable() {
        let set = ds(
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        );
        let h = template_hash(&set);
        let nodes: Vec<Value> = ["a", "b", "c"]
            .iter()
            .map(|n| node(n, "worker", json!([])))
            .collect();
        let nodes: Vec<&Value> = nodes.iter().collect();
        let old: Vec<Value> = ["a", "b", "c"]
            .iter()
            .map(|n| pod(&format!("old-{n}"), n, "old", true))
            .collect();
        let refs: Vec<&Value> = old.iter().collect();
        let d = reconcile(&set, &nodes, &refs, 0);
        assert_eq!(names(&d), ["old-a"], "one at a time");
        assert!(d.creates.is_empty());
        // a's new pod not ready yet: nothing more goes
        let new_a = pod("new-a", "a", &h, false);
        let d = reconcile(&set, &nodes, &[&new_a, &old[1], &old[2]], 0);
        assert!(names(&d).is_empty());
        // ready: the next node
        let new_a = pod("new-a", "a", &h, true);
        let d = reconcile(&set, &nodes, &[&new_a, &old[1], &old[2]], 0);
        assert_eq!(names(&d), ["old-b"]);
        // OnDelete: nothing is replaced
        let on_delete = ds(json!({"type": "OnDelete"}));
        assert!(names(&reconcile(&on_delete, &nodes, &refs, 0)).is_empty());
    }

    #[test]
    fn surge_starts_the_new_pod_first() {
        let set = ds(
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}),
        );
        let h = template_hash(&set);
        let nodes: Vec<Value> = ["a", "b"]
            .iter()
            .map(|n| node(n, "worker", json!([])))
            .collect();
        let nodes: Vec<&Value> = nodes.iter().collect();
        let (oa, ob) = (
            pod("old-a", "a", "old", true),
            pod("old-b", "b", "old", true),
        );
        let d = reconcile(&set, &nodes, &[&oa, &ob], 0);
        assert_eq!(d.creates, ["a"]);
        assert!(names(&d).is_empty());
        let na = pod("new-a", "a", &h, true);
        let d = reconcile(&set, &nodes, &[&oa, &na, &ob], 0);
        assert_eq!(names(&d), ["old-a"]);
    }
}
