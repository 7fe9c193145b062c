//! Node lifecycle: what happens when a node stops answering.
//!
//! - [`NodeLifecycle`] judges each node by its Lease in `kube-node-lease`,
//!   which its agent renews every 10 s: one not renewed for the grace
//!   period (Kubernetes' 40 s; `--node-monitor-grace-period-secs`) gets
//!   its Ready condition `Unknown` and the `node.kubernetes.io/unreachable`
//!   NoSchedule and NoExecute taints; a node whose agent reports not Ready
//!   gets the `not-ready` ones; a cordoned node the `unschedulable`
//!   NoSchedule taint. A renewed Lease takes them away again.
//! - [`TaintEviction`] deletes the pods of a node with NoExecute taints
//!   they do not tolerate — at once, or after the `tolerationSeconds` of
//!   the toleration that lets them stay (300 s for the not-ready and
//!   unreachable taints, which admission adds to every pod as Kubernetes'
//!   DefaultTolerationSeconds does). Their controllers replace them on
//!   other nodes.
//!
//! - [`PodGc`] removes the pods of a node that was deleted.
//!
//! [`judge`], [`evictions`] and [`orphaned`] decide; the reconcilers put
//! them on the runtime.

use std::time::Duration;

use kubus_api::meta::{self, str_at};
use kubus_api::placement::{self, TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE};
use kubus_api::{pod, Kind, ObjectRef};
use serde_json::{json, Value};

use crate::informer::Delta;
use crate::runtime::{Plan, Planned, Reconcile, View, Watch};
use crate::workload::{set_condition, time, time_at};
use crate::write::Write;

/// Kubernetes' node monitor grace period.
pub const GRACE_DEFAULT: Duration = Duration::from_secs(40);
/// The namespace of the nodes' Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Most pods one node's sync evicts.
pub const EVICTIONS_PER_SYNC_MAX: usize = 128;

/// The taints a node's state calls for: (key, effect).
fn wanted_taints(ready: &str, unschedulable: bool) -> Vec<(&'static str, &'static str)> {
    let mut t = Vec::new();
    match ready {
        "Unknown" => t.extend([
            (TAINT_UNREACHABLE, "NoSchedule"),
            (TAINT_UNREACHABLE, "NoExecute"),
        ]),
        "False" => t.extend([
            (TAINT_NOT_READY, "NoSchedule"),
            (TAINT_NOT_READY, "NoExecute"),
        ]),
        _ => {}
    }
    if unschedulable {
        t.push((TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    t
}

const MANAGED: [&str; 3] = [TAINT_NOT_READY, TAINT_UNREACHABLE, TAINT_UNSCHEDULABLE];

/// The node as its lease says it should be (None: as it is), and when to
/// look again. `renewed`: the lease's last renewal (None: no lease yet).
pub fn judge(
    node: &Value,
    renewed: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
    grace: Duration,
) -> (Option<Value>, Option<Duration>) {
    let grace_s = grace.as_secs() as i64;
    // a node that never renewed counts from when it registered
    let since = renewed
        .or_else(|| time_at(node, "/metadata/creationTimestamp"))
        .unwrap_or(now);
    let left = since.as_second().saturating_add(grace_s) - now.as_second();
    let stale = left < 0;
    let ready_now = pod::condition(node, "Ready")
        .and_then(|c| c.get("status")?.as_str())
        .unwrap_or("Unknown")
        .to_string();
    let mut updated = node.clone();
    let now_text = time(now);
    let mut conds = crate::workload::conditions(node);
    let ready = if stale {
        if ready_now != "Unknown" {
            set_condition(
                &mut conds,
                "Ready",
                false,
                "NodeStatusUnknown",
                "Kubelet stopped posting node status.",
                &now_text,
            );
            if let Some(c) = conds.iter_mut().find(|c| c["type"] == "Ready") {
                c["status"] = json!("Unknown");
            }
        }
        "Unknown".to_string()
    } else if ready_now == "Unknown" {
        // the agent is back: its lease says so
        set_condition(
            &mut conds,
            "Ready",
            true,
            "KubeletReady",
            "kubus node agent is posting ready status",
            &now_text,
        );
        "True".to_string()
    } else {
        ready_now
    };
    if !conds.is_empty() {
        updated["status"]["conditions"] = Value::Array(conds);
    }
    // the taints this controller manages follow the state; others stay
    let unschedulable = node.pointer("/spec/unschedulable") == Some(&Value::Bool(true));
    let wanted = wanted_taints(&ready, unschedulable);
    let current: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut taints: Vec<Value> = current
        .iter()
        .filter(|t| {
            let key = str_at(t, "/key");
            !MANAGED.contains(&key)
                || wanted
                    .iter()
                    .any(|(k, e)| *k == key && *e == str_at(t, "/effect"))
        })
        .cloned()
        .collect();
    for (key, effect) in &wanted {
        if !taints
            .iter()
            .any(|t| str_at(t, "/key") == *key && str_at(t, "/effect") == *effect)
        {
            let mut t = json!({"key": key, "effect": effect});
            if *effect == "NoExecute" {
                t["timeAdded"] = json!(now_text);
            }
            taints.push(t);
        }
    }
    if taints != current {
        if let Some(spec) = updated
            .as_object_mut()
            .map(|o| o.entry("spec").or_insert_with(|| json!({})))
        {
            if taints.is_empty() {
                if let Some(s) = spec.as_object_mut() {
                    s.remove("taints");
                }
            } else {
                spec["taints"] = Value::Array(taints);
            }
        }
    }
    let requeue = (!stale).then(|| Duration::from_secs(left.max(0) as u64 + 1));
    ((updated != *node).then_some(updated), requeue)
}

/// The pods of `node` to evict now, and when the next one is due.
pub fn evictions<'a>(
    node: &Value,
    pods: &[&'a Value],
    now: jiff::Timestamp,
) -> (Vec<&'a Value>, Option<Duration>) {
    let taints: Vec<&Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| str_at(t, "/effect") == "NoExecute")
        .collect();
    if taints.is_empty() {
        return (Vec::new(), None);
    }
    let mut now_due = Vec::new();
    let mut soonest: Option<i64> = None;
    for &p in pods {
        if pod::is_terminating(p) || pod::is_finished(p) {
            continue;
        }
        let tolerations: Vec<&Value> = p
            .pointer("/spec/tolerations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        // every NoExecute taint must be tolerated; the pod stays until the
        // shortest tolerationSeconds among them runs out
        let mut until: Option<i64> = None;
        let mut evict = false;
        for t in &taints {
            match tolerations.iter().find(|tol| placement::tolerates(tol, t)) {
                None => evict = true,
                Some(tol) => {
                    if let Some(secs) = tol.get("tolerationSeconds").and_then(Value::as_i64) {
                        let added = time_at(t, "/timeAdded").unwrap_or(now).as_second();
                        let at = added.saturating_add(secs.max(0));
                        until = Some(until.map_or(at, |u| u.min(at)));
                    }
                }
            }
        }
        match until {
            _ if evict => now_due.push(p),
            Some(at) if at <= now.as_second() => now_due.push(p),
            Some(at) => soonest = Some(soonest.map_or(at, |s| s.min(at))),
            None => {}
        }
    }
    now_due.truncate(EVICTIONS_PER_SYNC_MAX);
    let requeue = soonest.map(|at| Duration::from_secs((at - now.as_second()).max(1) as u64));
    (now_due, requeue)
}

fn node_of_lease(delta: &Delta, _: &View<'_>) -> Vec<String> {
    match meta::namespace(&delta.object) {
        Some(NODE_LEASE_NAMESPACE) => meta::name(&delta.object)
            .map(str::to_string)
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

fn node_of_pod(delta: &Delta, _: &View<'_>) -> Vec<String> {
    delta
        .object
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .into_iter()
        .collect()
}

/// The node monitor on the runtime.
#[derive(Debug, Clone, Copy)]
pub struct NodeLifecycle {
    pub grace: Duration,
}

impl Reconcile for NodeLifecycle {
    fn kind(&self) -> Kind {
        Kind::Node
    }

    fn name(&self) -> &'static str {
        "node-controller"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::Maps(Kind::Lease, node_of_lease)]
    }

    fn reconcile(&self, node: &Value, view: &View<'_>) -> Plan {
        if !view.pending.is_empty() {
            return Plan::default();
        }
        let name = meta::name(node).unwrap_or_default();
        let renewed = view
            .cache(Kind::Lease)
            .and_then(|c| c.cache.get(&format!("{NODE_LEASE_NAMESPACE}/{name}")))
            .and_then(|l| time_at(l, "/spec/renewTime"));
        let (updated, requeue_after) = judge(node, renewed, view.now, self.grace);
        let writes = updated.map(|n| {
            let ready = pod::condition(&n, "Ready")
                .and_then(|c| c.get("status")?.as_str())
                .unwrap_or("");
            let was = pod::condition(node, "Ready")
                .and_then(|c| c.get("status")?.as_str())
                .unwrap_or("");
            match (was, ready) {
                (w, "Unknown") if w != "Unknown" => Planned::noted(
                    Write::Update(n),
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                ),
                ("Unknown", "True") => Planned::noted(
                    Write::Update(n),
                    "NodeReady",
                    format!("Node {name} status is now: NodeReady"),
                ),
                _ => Planned::quiet(Write::Update(n)),
            }
        });
        Plan {
            writes: writes.into_iter().collect(),
            requeue_after,
        }
    }
}

/// The NoExecute taint manager on the runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct TaintEviction;

impl Reconcile for TaintEviction {
    fn kind(&self) -> Kind {
        Kind::Node
    }

    fn name(&self) -> &'static str {
        "taint-eviction-controller"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::Maps(Kind::Pod, node_of_pod)]
    }

    fn reconcile(&self, node: &Value, view: &View<'_>) -> Plan {
        let has_no_execute = node
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .is_some_and(|t| t.iter().any(|t| str_at(t, "/effect") == "NoExecute"));
        if !has_no_execute || view.pending.deletes > 0 {
            return Plan::default();
        }
        let name = meta::name(node).unwrap_or_default();
        let pods: Vec<&Value> = view
            .cache(Kind::Pod)
            .map(|c| {
                c.cache
                    .values()
                    .filter(|p| str_at(p, "/spec/nodeName") == name)
                    .collect()
            })
            .unwrap_or_default();
        let (due, requeue_after) = evictions(node, &pods, view.now);
        let writes = due
            .into_iter()
            .filter_map(meta::object_ref)
            .map(|r: ObjectRef| {
                let what = format!(
                    "Marking for deletion Pod {}/{}",
                    r.namespace.as_deref().unwrap_or(""),
                    r.name
                );
                Planned::noted(Write::delete(r, None), "TaintManagerEviction", what)
            })
            .collect();
        Plan {
            writes,
            requeue_after,
        }
    }
}

/// What becomes of a pod whose node is gone: removed at once (grace 0 —
/// no agent is left to stop it), only if the node is still absent when
/// the delete is applied (checked in its Raft entry). Kubernetes' PodGC.
pub fn orphaned(pod: &Value, node_exists: bool) -> Option<Write> {
    let node = str_at(pod, "/spec/nodeName");
    if node.is_empty() || node_exists {
        return None;
    }
    let r = meta::object_ref(pod)?;
    Some(Write::Delete(
        r,
        kubus_bus::client::DeleteOptions {
            grace_period_seconds: Some(0),
            uid: meta::uid(pod).map(str::to_string),
            only_if_absent: vec![ObjectRef::new(Kind::Node, None, node)],
            ..Default::default()
        },
    ))
}

fn pods_of_deleted_node(delta: &Delta, view: &View<'_>) -> Vec<String> {
    if !delta.deleted {
        return Vec::new();
    }
    let name = meta::name(&delta.object).unwrap_or_default();
    view.own()
        .map(|c| {
            c.cache
                .values()
                .filter(|p| str_at(p, "/spec/nodeName") == name)
                .map(crate::informer::key_of)
                .collect()
        })
        .unwrap_or_default()
}

/// The pod garbage collector on the runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodGc;

impl Reconcile for PodGc {
    fn kind(&self) -> Kind {
        Kind::Pod
    }

    fn name(&self) -> &'static str {
        "pod-garbage-collector"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::Maps(Kind::Node, pods_of_deleted_node)]
    }

    fn reconcile(&self, pod: &Value, view: &View<'_>) -> Plan {
        if view.pending.deletes > 0 {
            return Plan::default();
        }
        let node = str_at(pod, "/spec/nodeName");
        let exists = node.is_empty()
            || view
                .cache(Kind::Node)
                .is_some_and(|c| c.cache.get(node).is_some());
        Plan::writes(orphaned(pod, exists).map(|w| {
            Planned::noted(
                w,
                "PodGCOrphaned",
                format!("Deleting pod {{name}}: its node {node} is gone"),
            )
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().expect("time")
    }

    fn node(ready: &str, taints: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "w1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "KubeletReady"}]}})
    }

    #[test]
    fn a_silent_node_turns_unknown_and_unreachable() {
        let n = node("True", json!([]));
        let renewed = Some(at("2026-01-01T00:01:00Z"));
        // within the grace: nothing, look again when it runs out
        let (u, requeue) = judge(&n, renewed, at("2026-01-01T00:01:30Z"), GRACE_DEFAULT);
        assert!(u.is_none());
        assert_eq!(requeue, Some(Duration::from_secs(11)));
        // past it: Unknown, tainted
        let (u, _) = judge(&n, renewed, at("2026-01-01T00:01:41Z"), GRACE_DEFAULT);
        let u = u.expect("changed");
        assert_eq!(u["status"]["conditions"][0]["status"], "Unknown");
        assert_eq!(u["status"]["conditions"][0]["reason"], "NodeStatusUnknown");
        let keys: Vec<(&str, &str)> = u["spec"]["taints"]
            .as_array()
            .expect("taints")
            .iter()
            .map(|t| (str_at(t, "/key"), str_at(t, "/effect")))
            .collect();
        assert_eq!(
            keys,
            [
                (TAINT_UNREACHABLE, "NoSchedule"),
                (TAINT_UNREACHABLE, "NoExecute")
            ]
        );
        assert!(
            judge(&u, renewed, at("2026-01-01T00:02:00Z"), GRACE_DEFAULT)
                .0
                .is_none(),
            "stable"
        );
        // renewed again: Ready, untainted
        let (back, _) = judge(
            &u,
            Some(at("2026-01-01T00:02:00Z")),
            at("2026-01-01T00:02:01Z"),
            GRACE_DEFAULT,
        );
        let back = back.expect("changed");
        assert_eq!(back["status"]["conditions"][0]["status"], "True");
        assert!(back["spec"].get("taints").is_none());
        // cordoned: the unschedulable taint; other taints stay
        let mut c = node(
            "True",
            json!([{"key": "dedicated", "effect": "NoSchedule"}]),
        );
        c["spec"]["unschedulable"] = json!(true);
        let (u, _) = judge(&c, renewed, at("2026-01-01T00:01:10Z"), GRACE_DEFAULT);
        assert_eq!(
            u.expect("changed")["spec"]["taints"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn pods_leave_a_no_execute_node_as_their_tolerations_say() {
        let n = node(
            "Unknown",
            json!([{"key": TAINT_UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}]),
        );
        let pod = |name: &str, tolerations: Value| {
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": "w1", "tolerations": tolerations}, "status": {"phase": "Running"}})
        };
        let bare = pod("bare", json!([]));
        let five = pod(
            "five",
            json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]),
        );
        let forever = pod(
            "forever",
            json!([{"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]),
        );
        let pods = [&bare, &five, &forever];
        let (due, requeue) = evictions(&n, &pods, at("2026-01-01T00:00:02Z"));
        let names: Vec<&str> = due.iter().filter_map(|p| meta::name(p)).collect();
        assert_eq!(names, ["bare"]);
        assert_eq!(requeue, Some(Duration::from_secs(3)));
        let (due, requeue) = evictions(&n, &pods, at("2026-01-01T00:00:05Z"));
        let names: Vec<&str> = due.iter().filter_map(|p| meta::name(p)).collect();
        assert_eq!(names, ["bare", "five"]);
        assert_eq!(requeue, None);
        assert!(
            evictions(&node("True", json!([])), &pods, at("2026-01-01T00:00:05Z"))
                .0
                .is_empty()
        );
    }

    #[test]
    fn pods_of_a_gone_node_are_removed_only_if_it_stays_gone() {
        let p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u"}, "spec": {"nodeName": "w9"}});
        assert!(orphaned(&p, true).is_none());
        let Some(Write::Delete(r, opts)) = orphaned(&p, false) else {
            panic!("a delete")
        };
        assert_eq!(r.name, "p");
        assert_eq!(opts.grace_period_seconds, Some(0));
        assert_eq!(
            opts.only_if_absent,
            vec![ObjectRef::new(Kind::Node, None, "w9")]
        );
        let unbound = json!({"metadata": {"name": "q", "namespace": "default"}, "spec": {}});
        assert!(orphaned(&unbound, false).is_none());
    }
}
