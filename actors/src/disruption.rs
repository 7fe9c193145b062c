//! The disruption controller: each PodDisruptionBudget's status — the
//! pods it selects (`expectedPods`), how many are healthy (Ready, not
//! being deleted, not just evicted: `currentHealthy`), how many must stay
//! so (`desiredHealthy`, from minAvailable or maxUnavailable, numbers or
//! percentages rounded up as Kubernetes does), and so how many may be
//! evicted now (`disruptionsAllowed`, with the `DisruptionAllowed`
//! condition). The eviction subresource (`crate::eviction`) reads it and
//! charges it.
//!
//! `status.disruptedPods` (pod name → when its eviction was granted) is
//! written by the eviction in the same Raft entry as the pod's delete; it
//! covers the moment when this controller has seen the budget charged but
//! not yet the pod going. A pod listed there is not counted healthy until
//! it is seen terminating or gone, or [`DELETION_TIMEOUT`] passed (then it
//! is dropped with a `NotDeleted` Warning), as Kubernetes'
//! `buildDisruptedPodMap` and `countHealthyPods` do.
//!
//! [`budget`] decides; [`DisruptionReconciler`] puts it on the runtime.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kubus_api::selector::Selector;
use kubus_api::{meta, pod, Kind};
use serde_json::{json, Map, Value};

use crate::informer::{key_of, Delta};
use crate::runtime::{Plan, Planned, Reconcile, View, Watch};
use crate::workload::{conditions, set_condition, time, with_status};
use crate::write::Write;

/// How long an evicted pod listed in `status.disruptedPods` may take to be
/// seen going before the controller stops waiting for it (Kubernetes'
/// `DeletionTimeout`, 2 minutes).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

fn selector_of(pdb: &Value) -> Option<Selector> {
    let raw = pdb.pointer("/spec/selector")?;
    let ls: LabelSelector = serde_json::from_value(raw.clone()).ok()?;
    Selector::from_label_selector(&ls).ok()
}

/// Whether `pdb` selects a pod with `labels`: an empty selector selects
/// every pod of the namespace (policy/v1), an absent or unreadable one
/// none.
pub fn selects(pdb: &Value, labels: &BTreeMap<String, String>) -> bool {
    selector_of(pdb).is_some_and(|s| s.matches(labels))
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

/// A budget's status as [`budget`] decides it.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub status: Value,
    /// Evicted pods still listed but not seen going within
    /// [`DELETION_TIMEOUT`]: dropped from `disruptedPods` (worth a Warning).
    pub expired: Vec<String>,
    /// When the oldest entry kept in `disruptedPods` expires: look again
    /// then.
    pub recheck_at: Option<jiff::Timestamp>,
}

/// The `disruptedPods` entries still to honour among the `selected` pods
/// at `now`: an entry goes once its pod is gone or terminating (the delete
/// was seen), or [`DELETION_TIMEOUT`] after the eviction. Returns the
/// entries kept, the expired pods' names and the earliest expiry kept.
fn disrupted_pods(
    pdb: &Value,
    selected: &[&Value],
    now: jiff::Timestamp,
) -> (Map<String, Value>, Vec<String>, Option<jiff::Timestamp>) {
    let mut kept = Map::new();
    let mut expired = Vec::new();
    let mut recheck: Option<jiff::Timestamp> = None;
    let Some(listed) = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
    else {
        return (kept, expired, recheck);
    };
    let timeout = jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default();
    for p in selected.iter().filter(|p| !pod::is_terminating(p)) {
        let name = meta::name(p).unwrap_or_default();
        let Some(since) = listed.get(name) else {
            continue;
        };
        let Some(at) = since
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        else {
            // unreadable: as if it had expired
            expired.push(name.to_string());
            continue;
        };
        let until = at.saturating_add(timeout).unwrap_or(at);
        if until <= now {
            expired.push(name.to_string());
        } else {
            recheck = Some(recheck.map_or(until, |r| r.min(until)));
            kept.insert(name.to_string(), since.clone());
        }
    }
    (kept, expired, recheck)
}

/// The status of `pdb` over the pods of its namespace.
pub fn budget(pdb: &Value, pods: &[&Value], now: jiff::Timestamp) -> Budget {
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
    let (disrupted, expired, recheck_at) = disrupted_pods(pdb, &selected, now);
    let expected = selected.len() as i64;
    let healthy = selected
        .iter()
        .filter(|p| !pod::is_terminating(p) && pod::is_ready(p))
        .filter(|p| !disrupted.contains_key(meta::name(p).unwrap_or_default()))
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
    let mut status = json!({
        "observedGeneration": pdb.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "expectedPods": expected,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "disruptionsAllowed": allowed,
        "conditions": conds,
    });
    // written only while it holds something, as Kubernetes omits it empty
    if !disrupted.is_empty() {
        status["disruptedPods"] = Value::Object(disrupted);
    }
    Budget {
        status,
        expired,
        recheck_at,
    }
}

fn budgets_of_pod(delta: &Delta, view: &View<'_>) -> Vec<String> {
    let ns = meta::namespace(&delta.object).unwrap_or("default");
    let labels = meta::labels(&delta.object);
    view.own()
        .map(|c| {
            c.cache
                .in_namespace(ns)
                .filter(|pdb| selects(pdb, &labels))
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
        let b = budget(pdb, &pods, view.now);
        let write = with_status(pdb, b.status).map(|p| {
            if b.expired.is_empty() {
                Planned::quiet(Write::Update(p))
            } else {
                Planned::warned(
                    Write::Update(p),
                    "NotDeleted",
                    format!(
                        "Pod(s) {} were expected by PodDisruptionBudget {}/{} to be deleted \
                         within {}s of their eviction but were not",
                        b.expired.join(", "),
                        ns,
                        meta::name(pdb).unwrap_or_default(),
                        DELETION_TIMEOUT.as_secs()
                    ),
                )
            }
        });
        Plan {
            writes: write.into_iter().collect(),
            requeue_after: b.recheck_at.map(|at| {
                let left = view.now.duration_until(at);
                Duration::try_from(left).unwrap_or_default() + Duration::from_secs(1)
            }),
        }
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

    fn named(name: &str, ready: bool, terminating: bool) -> Value {
        let mut p = pod("zk", ready);
        p["metadata"]["name"] = json!(name);
        if terminating {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:30Z");
        }
        p
    }

    /// An evicted pod listed in `disruptedPods` is not healthy until it is
    /// seen going or the deletion timeout passes; the entry is dropped
    /// then, or once its pod is terminating or gone.
    #[test]
    fn disrupted_pods_are_not_counted_healthy_until_they_go_or_expire() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap_or_default();
        let at = |secs: i64| jiff::Timestamp::from_second(t0.as_second() + secs).unwrap_or(t0);
        let mut b = pdb(json!({"minAvailable": 1}));
        b["status"] = json!({"disruptedPods": {
            "a": "2026-01-01T00:00:00Z", // listed, still there
            "b": "2026-01-01T00:00:00Z", // listed, terminating: seen going
            "gone": "2026-01-01T00:00:00Z", // listed, no such pod
        }});
        let (a, bb, c) = (
            named("a", true, false),
            named("b", true, true),
            named("c", true, false),
        );
        let pods = [&a, &bb, &c];
        // (seconds after the eviction, healthy, allowed, kept, expired, recheck in)
        let table = [
            (10, 1, 0, vec!["a"], vec![], Some(110)),
            (119, 1, 0, vec!["a"], vec![], Some(1)),
            (120, 2, 1, vec![], vec!["a"], None),
            (600, 2, 1, vec![], vec!["a"], None),
        ];
        for (secs, healthy, allowed, kept, expired, recheck) in table {
            let now = at(secs);
            let got = budget(&b, &pods, now);
            let s = &got.status;
            assert_eq!(
                (
                    s["currentHealthy"].as_i64(),
                    s["disruptionsAllowed"].as_i64()
                ),
                (Some(healthy), Some(allowed)),
                "at {secs}s: {s}"
            );
            let listed: Vec<&str> = s["disruptedPods"]
                .as_object()
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            assert_eq!(listed, kept, "at {secs}s");
            assert_eq!(got.expired, expired, "at {secs}s");
            assert_eq!(
                got.recheck_at.map(|r| now.duration_until(r).as_secs()),
                recheck,
                "at {secs}s"
            );
        }
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
            let s = budget(&pdb(spec.clone()), &pods, now).status;
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
