//! The disruption controller: each PodDisruptionBudget's status — the
//! pods it selects (`expectedPods`), how many are healthy (Ready, not
//! being deleted: `currentHealthy`), how many must stay so
//! (`desiredHealthy`, from minAvailable or maxUnavailable, numbers or
//! percentages rounded up as Kubernetes does), and so how many may be
//! evicted now (`disruptionsAllowed`, with the `DisruptionAllowed`
//! condition). Evictions (the nodes issue's drain) read it.
//!
//! [`budget`] decides; [`DisruptionReconciler`] puts it on the runtime.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kubus_api::selector::Selector;
use kubus_api::{meta, pod, Kind};
use serde_json::{json, Value};

use crate::informer::{key_of, Delta};
use crate::runtime::{Plan, Planned, Reconcile, View, Watch};
use crate::workload::{conditions, set_condition, time, with_status};
use crate::write::Write;

fn selector_of(pdb: &Value) -> Option<Selector> {
    let raw = pdb.pointer("/spec/selector")?;
    let ls: LabelSelector = serde_json::from_value(raw.clone()).ok()?;
    Selector::from_label_selector(&ls).ok()
}

/// An int-or-percent of `total`, percentages rounded up.
fn scaled(v: &Value, total: i64) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(0, |p| (p * total + 99) / 100),
        _ => 0,
    }
}

/// The status of `pdb` over the pods of its namespace.
pub fn budget(pdb: &Value, pods: &[&Value], now: jiff::Timestamp) -> Value {
    let selected: Vec<&Value> = match selector_of(pdb) {
        // an empty selector selects every pod of the namespace (policy/v1)
        Some(sel) => pods
            .iter()
            .copied()
            .filter(|p| sel.matches(&meta::labels(p)))
            .filter(|p| !pod::is_finished(p))
            .collect(),
        None => Vec::new(),
    };
    let expected = selected.len() as i64;
    let healthy = selected
        .iter()
        .filter(|p| !pod::is_terminating(p) && pod::is_ready(p))
        .count() as i64;
    let desired = match (
        pdb.pointer("/spec/minAvailable"),
        pdb.pointer("/spec/maxUnavailable"),
    ) {
        (Some(min), _) => scaled(min, expected),
        (None, Some(max)) => (expected - scaled(max, expected)).max(0),
        (None, None) => expected,
    };
    let allowed = (healthy - desired).max(0);
    let mut conds = conditions(pdb);
    let (reason, message) = if allowed > 0 {
        ("SufficientPods", "")
    } else {
        ("InsufficientPods", "")
    };
    set_condition(
        &mut conds,
        "DisruptionAllowed",
        allowed > 0,
        reason,
        message,
        &time(now),
    );
    json!({
        "observedGeneration": pdb.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "expectedPods": expected,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "disruptionsAllowed": allowed,
        "conditions": conds,
    })
}

fn budgets_of_pod(delta: &Delta, view: &View<'_>) -> Vec<String> {
    let ns = meta::namespace(&delta.object).unwrap_or("default");
    let labels = meta::labels(&delta.object);
    view.own()
        .map(|c| {
            c.cache
                .in_namespace(ns)
                .filter(|pdb| selector_of(pdb).is_some_and(|s| s.matches(&labels)))
                .map(key_of)
                .collect()
        })
        .unwrap_or_default()
}

/// The disruption controller on the runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct DisruptionReconciler;

impl Reconcile for DisruptionReconciler {
    fn kind(&self) -> Kind {
        Kind::PodDisruptionBudget
    }

    fn name(&self) -> &'static str {
        "disruption-controller"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::Maps(Kind::Pod, budgets_of_pod)]
    }

    fn reconcile(&self, pdb: &Value, view: &View<'_>) -> Plan {
        if !view.pending.is_empty() || kubus_api::lifecycle::is_marked(pdb) {
            return Plan::default();
        }
        let ns = meta::namespace(pdb).unwrap_or("default");
        let pods: Vec<&Value> = view
            .cache(Kind::Pod)
            .map(|c| c.cache.in_namespace(ns).collect())
            .unwrap_or_default();
        // the transition time only moves with the condition's status, so
        // an unchanged budget writes nothing
        let status = budget(pdb, &pods, view.now);
        Plan::writes(with_status(pdb, status).map(|p| Planned::quiet(Write::Update(p))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(spec: Value) -> Value {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "zk"}});
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "zk-pdb", "namespace": "default", "generation": 1}, "spec": spec})
    }

    fn pod(app: &str, ready: bool) -> Value {
        json!({"metadata": {"name": "p", "namespace": "default", "labels": {"app": app}},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    #[test]
    fn budgets() {
        let (a, b, c, d) = (
            pod("zk", true),
            pod("zk", true),
            pod("zk", false),
            pod("web", true),
        );
        let pods = [&a, &b, &c, &d];
        let now = jiff::Timestamp::UNIX_EPOCH;
        // (spec, expected, healthy, desired, allowed)
        let table = [
            (json!({"maxUnavailable": 1}), 3, 2, 2, 0),
            (json!({"minAvailable": 1}), 3, 2, 1, 1),
            (json!({"minAvailable": "50%"}), 3, 2, 2, 0),
            (json!({"maxUnavailable": "34%"}), 3, 2, 1, 1),
        ];
        for (spec, expected, healthy, desired, allowed) in table {
            let s = budget(&pdb(spec.clone()), &pods, now);
            assert_eq!(
                (
                    s["expectedPods"].as_i64(),
                    s["currentHealthy"].as_i64(),
                    s["desiredHealthy"].as_i64(),
                    s["disruptionsAllowed"].as_i64()
                ),
                (Some(expected), Some(healthy), Some(desired), Some(allowed)),
                "{spec}"
            );
        }
    }
}
