//! The eviction subresource's rules (Kubernetes' `pods/eviction`, a
//! policy/v1 `Eviction`): whether a pod may be evicted now, given the
//! PodDisruptionBudgets of its namespace, and what the budget that allows
//! it looks like afterwards. Kubernetes states them in
//! `pkg/registry/core/pod/storage/eviction.go`.
//!
//! Pure: [`decide`] takes the pod, the budgets and the clock. The store's
//! API service (`store::service`, its `evict` module) reads them, and
//! writes the charged budget and the pod's graceful delete in one Raft
//! entry, each at the revision it was read at. Nothing here does I/O.
//!
//! The rules, in order:
//! 1. A pod that is `Succeeded`, `Failed` or `Pending`, or already
//!    terminating, is deleted without consulting budgets: it is no part of
//!    the application's availability.
//! 2. More than one budget selecting the pod: refused (Kubernetes' 500).
//! 3. No budget: deleted.
//! 4. A pod that is not Ready: with `unhealthyPodEvictionPolicy:
//!    AlwaysAllow`, deleted; with `IfHealthyBudget` (the default), deleted
//!    when the budget is met without it (`currentHealthy >=
//!    desiredHealthy > 0`, checked against the budget as read); otherwise
//!    on to 5.
//! 5. The budget must be current (`status.observedGeneration` at least
//!    `metadata.generation`, else `TooManyRequests` — "still being
//!    processed"), allow a disruption (`disruptionsAllowed > 0`, else
//!    `TooManyRequests` with Kubernetes' "Cannot evict pod as it would
//!    violate the pod's disruption budget."), and not hold more than
//!    [`DISRUPTED_PODS_MAX`] unconfirmed evictions. Then the pod is deleted
//!    and the budget charged: one disruption fewer allowed, the pod
//!    recorded in `status.disruptedPods` (name → time), so the disruption
//!    controller does not count it healthy before it sees it go.

use kubus_api::{meta, pod, ApiError, Kind, ObjectRef, Reason};
use serde_json::{json, Value};

use crate::disruption;
use crate::workload::{conditions, set_condition, time};

/// Most pods a budget's `status.disruptedPods` may hold before the
/// evictions it guards are refused: that many evictions granted and not
/// yet confirmed by the disruption controller means the controller is not
/// keeping up (Kubernetes' `MaxDisruptedPodSize`).
pub const DISRUPTED_PODS_MAX: usize = 2000;

/// When a budget's status is older than its spec, when to try again
/// (Kubernetes suggests 10 s).
pub const STALE_BUDGET_RETRY_MS: u64 = 10_000;

/// When a budget allows no disruption now, when to try again: kubectl's
/// drain waits 5 s between attempts.
pub const NO_DISRUPTION_RETRY_MS: u64 = 5_000;

/// Kubernetes' words for an eviction a budget refuses (kubectl prints
/// them; clients match on the reason, `TooManyRequests`, not on these).
pub const VIOLATES_BUDGET: &str =
    "Cannot evict pod as it would violate the pod's disruption budget.";

/// Kubernetes' words for a pod two budgets select.
pub const MORE_THAN_ONE_BUDGET: &str =
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";

/// The condition an evicted pod gets (Kubernetes' `DisruptionTarget`,
/// reason `EvictionByEvictionAPI`).
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";

/// What an eviction does.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Delete the pod as a delete would, leaving every budget as it is;
    /// with `guard`, only while the budget at that index of the slice
    /// given to [`decide`] is still as read (the decision rested on its
    /// status).
    Delete { guard: Option<usize> },
    /// Delete the pod and, in the same Raft entry, replace the budget at
    /// `index` with `budget` (only while it is still as read).
    Charge { index: usize, budget: Value },
    /// Not now, or not at all: the error names the budget and the rule.
    Refuse(ApiError),
}

/// Whether evicting `pod` skips the budgets: it finished, has not started
/// running (`Pending`, or no phase yet), or is already being deleted.
pub fn ignores_budgets(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    matches!(phase, None | Some("Pending" | "Succeeded" | "Failed")) || pod::is_terminating(pod)
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn budget_ref(pdb: &Value) -> ObjectRef {
    ObjectRef::new(
        Kind::PodDisruptionBudget,
        meta::namespace(pdb),
        meta::name(pdb).unwrap_or_default(),
    )
}

fn refusal(reason: Reason, pdb: &Value, message: String, retry_after_ms: Option<u64>) -> Verdict {
    Verdict::Refuse(ApiError {
        object: Some(budget_ref(pdb)),
        retry_after_ms,
        ..ApiError::new(reason, message)
    })
}

/// Decide the eviction of `pod` among `budgets` (the PodDisruptionBudgets
/// of its namespace; those whose selector picks the pod guard it) at
/// `now`. See the module's doc for the rules.
pub fn decide(pod: &Value, budgets: &[Value], now: jiff::Timestamp) -> Verdict {
    if ignores_budgets(pod) {
        return Verdict::Delete { guard: None };
    }
    let labels = meta::labels(pod);
    let guarding: Vec<usize> = budgets
        .iter()
        .enumerate()
        .filter(|(_, b)| disruption::selects(b, &labels))
        .map(|(i, _)| i)
        .collect();
    let index = match guarding.as_slice() {
        [] => return Verdict::Delete { guard: None },
        [one] => *one,
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|i| meta::name(&budgets[*i]).unwrap_or_default().to_string())
                .collect();
            return Verdict::Refuse(ApiError::internal(format!(
                "{MORE_THAN_ONE_BUDGET} (PodDisruptionBudgets {} select it)",
                names.join(", ")
            )));
        }
    };
    let pdb = &budgets[index];
    let name = meta::name(pdb).unwrap_or_default();
    let (healthy, desired) = (
        int(pdb, "/status/currentHealthy"),
        int(pdb, "/status/desiredHealthy"),
    );
    if !pod::is_ready(pod) {
        let policy = pdb
            .pointer("/spec/unhealthyPodEvictionPolicy")
            .and_then(Value::as_str);
        if policy == Some("AlwaysAllow") {
            // an unready pod counts toward neither side of the budget
            return Verdict::Delete { guard: None };
        }
        if healthy >= desired && desired > 0 {
            // IfHealthyBudget: the application is whole without it
            return Verdict::Delete { guard: Some(index) };
        }
    }
    if int(pdb, "/status/observedGeneration") < int(pdb, "/metadata/generation") {
        return refusal(
            Reason::TooManyRequests,
            pdb,
            format!(
                "{VIOLATES_BUDGET} The disruption budget {name} is still being processed by the server."
            ),
            Some(STALE_BUDGET_RETRY_MS),
        );
    }
    let allowed = int(pdb, "/status/disruptionsAllowed");
    if allowed < 0 {
        return refusal(
            Reason::Forbidden,
            pdb,
            format!(
                "poddisruptionbudget {name:?} is forbidden: pdb disruptions allowed is negative"
            ),
            None,
        );
    }
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, serde_json::Map::len);
    if disrupted > DISRUPTED_PODS_MAX {
        return refusal(
            Reason::Forbidden,
            pdb,
            format!(
                "poddisruptionbudget {name:?} is forbidden: DisruptedPods map too big - too many \
                 evictions not confirmed by PDB controller ({disrupted} > {DISRUPTED_PODS_MAX})"
            ),
            None,
        );
    }
    if allowed == 0 {
        // the status counts pods whose eviction was granted a moment ago
        // until the disruption controller sees them go: say so
        let evicting = match disrupted {
            0 => String::new(),
            1 => ", of which 1 is being evicted".to_string(),
            n => format!(", of which {n} are being evicted"),
        };
        return refusal(
            Reason::TooManyRequests,
            pdb,
            format!(
                "{VIOLATES_BUDGET} The disruption budget {name} needs {desired} healthy pods \
                 and has {healthy} currently{evicting} (disruptionsAllowed: 0)."
            ),
            Some(NO_DISRUPTION_RETRY_MS),
        );
    }
    Verdict::Charge {
        index,
        budget: charged(pdb, meta::name(pod).unwrap_or_default(), allowed - 1, now),
    }
}

/// `pdb` after granting the eviction of pod `pod_name`: `allowed`
/// disruptions left (the condition follows when none are), the pod in
/// `status.disruptedPods` since `now`.
fn charged(pdb: &Value, pod_name: &str, allowed: i64, now: jiff::Timestamp) -> Value {
    let mut out = pdb.clone();
    let mut conds = conditions(pdb);
    if allowed == 0 {
        set_condition(
            &mut conds,
            "DisruptionAllowed",
            false,
            "InsufficientPods",
            "",
            &time(now),
        );
    }
    let mut status = out
        .get("status")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    status.insert("disruptionsAllowed".into(), json!(allowed));
    status.insert("conditions".into(), Value::Array(conds));
    let disrupted = status.entry("disruptedPods").or_insert_with(|| json!({}));
    if !disrupted.is_object() {
        *disrupted = json!({});
    }
    if let Some(map) = disrupted.as_object_mut() {
        map.insert(pod_name.to_string(), json!(time(now)));
    }
    if let Some(root) = out.as_object_mut() {
        root.insert("status".into(), Value::Object(status));
    }
    out
}

/// Mark a pod being evicted as Kubernetes does: the `DisruptionTarget`
/// condition, reason `EvictionByEvictionAPI`.
pub fn mark_disruption_target(pod: &mut Value, now: jiff::Timestamp) {
    let mut conds = conditions(pod);
    set_condition(
        &mut conds,
        DISRUPTION_TARGET,
        true,
        "EvictionByEvictionAPI",
        "Eviction API: evicting",
        &time(now),
    );
    if let Some(root) = pod.as_object_mut() {
        let status = root.entry("status").or_insert_with(|| json!({}));
        if let Some(s) = status.as_object_mut() {
            s.insert("conditions".into(), Value::Array(conds));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    fn pod(phase: &str, ready: bool, terminating: bool) -> Value {
        let mut p = json!({"metadata": {"name": "web-1", "namespace": "default",
                "labels": {"app": "web"}},
            "spec": {"nodeName": "n1"},
            "status": {"phase": phase,
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
        if terminating {
            p["metadata"]["deletionTimestamp"] = json!("2023-11-14T22:13:50Z");
        }
        p
    }

    /// A budget over `app: web` with this status (generation 1).
    fn pdb(name: &str, allowed: i64, healthy: i64, desired: i64, observed: i64) -> Value {
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": "default", "generation": 1},
            "spec": {"minAvailable": desired, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"observedGeneration": observed, "disruptionsAllowed": allowed,
                "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": 3}})
    }

    fn other(name: &str) -> Value {
        let mut b = pdb(name, 1, 3, 2, 1);
        b["spec"]["selector"] = json!({"matchLabels": {"app": "db"}});
        b
    }

    /// What a verdict comes to, for the table: "delete", "delete guarded
    /// by N", "charge N", or the refusal's reason.
    fn short(v: &Verdict) -> String {
        match v {
            Verdict::Delete { guard: None } => "delete".into(),
            Verdict::Delete { guard: Some(i) } => format!("delete guarded by {i}"),
            Verdict::Charge { index, .. } => format!("charge {index}"),
            Verdict::Refuse(e) => format!("{:?}", e.reason),
        }
    }

    #[test]
    fn eviction_table() {
        let ready = pod("Running", true, false);
        let unready = pod("Running", false, false);
        let always = {
            let mut b = pdb("web", 0, 1, 2, 1);
            b["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
            b
        };
        let mut everything = pdb("all", 1, 3, 2, 1);
        everything["spec"]["selector"] = json!({});
        let mut no_selector = pdb("none", 0, 3, 3, 1);
        no_selector["spec"]
            .as_object_mut()
            .map(|s| s.remove("selector"));
        let mut crowded = pdb("web", 1, 3, 2, 1);
        let many: serde_json::Map<String, Value> = (0..=DISRUPTED_PODS_MAX)
            .map(|i| (format!("p{i}"), json!("2023-11-14T22:13:20Z")))
            .collect();
        crowded["status"]["disruptedPods"] = Value::Object(many);
        // (what, pod, budgets, verdict)
        let table: Vec<(&str, Value, Vec<Value>, &str)> = vec![
            ("no budget", ready.clone(), vec![other("db")], "delete"),
            (
                "succeeded: budgets not read",
                pod("Succeeded", false, false),
                vec![pdb("web", 0, 2, 2, 1)],
                "delete",
            ),
            (
                "failed",
                pod("Failed", false, false),
                vec![pdb("web", 0, 2, 2, 1)],
                "delete",
            ),
            (
                "pending",
                pod("Pending", false, false),
                vec![pdb("web", 0, 2, 2, 1)],
                "delete",
            ),
            (
                "already terminating",
                pod("Running", true, true),
                vec![pdb("web", 0, 2, 2, 1)],
                "delete",
            ),
            (
                "allowed: charged",
                ready.clone(),
                vec![other("db"), pdb("web", 1, 3, 2, 1)],
                "charge 1",
            ),
            (
                "none allowed",
                ready.clone(),
                vec![pdb("web", 0, 2, 2, 1)],
                "TooManyRequests",
            ),
            (
                "status older than spec",
                ready.clone(),
                vec![pdb("web", 1, 3, 2, 0)],
                "TooManyRequests",
            ),
            (
                "negative",
                ready.clone(),
                vec![pdb("web", -1, 3, 2, 1)],
                "Forbidden",
            ),
            (
                "too many unconfirmed",
                ready.clone(),
                vec![crowded],
                "Forbidden",
            ),
            (
                "two budgets",
                ready.clone(),
                vec![pdb("a", 1, 3, 2, 1), pdb("b", 1, 3, 2, 1)],
                "Internal",
            ),
            (
                "an empty selector selects every pod",
                ready.clone(),
                vec![everything],
                "charge 0",
            ),
            (
                "no selector selects none",
                ready.clone(),
                vec![no_selector],
                "delete",
            ),
            (
                "unready, budget met without it",
                unready.clone(),
                vec![pdb("web", 0, 2, 2, 1)],
                "delete guarded by 0",
            ),
            (
                "unready, budget not met: the budget decides",
                unready.clone(),
                vec![pdb("web", 0, 1, 2, 1)],
                "TooManyRequests",
            ),
            (
                "unready, budget not met but allowing",
                unready.clone(),
                vec![pdb("web", 1, 1, 0, 1)],
                "charge 0",
            ),
            (
                "unready, AlwaysAllow",
                unready.clone(),
                vec![always.clone()],
                "delete",
            ),
            (
                "ready, AlwaysAllow is only for unready pods",
                ready.clone(),
                vec![always],
                "TooManyRequests",
            ),
        ];
        for (what, p, budgets, want) in table {
            let got = decide(&p, &budgets, now());
            assert_eq!(short(&got), want, "{what}: {got:?}");
        }
    }

    #[test]
    fn refusals_name_the_budget_and_its_status() {
        let v = decide(
            &pod("Running", true, false),
            &[pdb("web-pdb", 0, 2, 2, 1)],
            now(),
        );
        let Verdict::Refuse(e) = v else {
            panic!("{v:?}")
        };
        assert_eq!(
            e.message,
            "Cannot evict pod as it would violate the pod's disruption budget. The disruption \
             budget web-pdb needs 2 healthy pods and has 2 currently (disruptionsAllowed: 0)."
        );
        assert_eq!(
            e.object.map(|o| o.to_string()),
            Some("PodDisruptionBudget default/web-pdb".to_string())
        );
        assert_eq!(e.retry_after_ms, Some(NO_DISRUPTION_RETRY_MS));
        // just charged: the pods granted are named as going
        let mut charged = pdb("web-pdb", 0, 3, 2, 1);
        charged["status"]["disruptedPods"] = json!({"web-0": "2023-11-14T22:13:20Z"});
        let v = decide(&pod("Running", true, false), &[charged], now());
        let Verdict::Refuse(e) = v else {
            panic!("{v:?}")
        };
        assert!(
            e.message.ends_with(
                "needs 2 healthy pods and has 3 currently, of which 1 is being evicted \
                 (disruptionsAllowed: 0)."
            ),
            "{}",
            e.message
        );
        let v = decide(
            &pod("Running", true, false),
            &[pdb("a", 1, 3, 2, 1), pdb("b", 1, 3, 2, 1)],
            now(),
        );
        let Verdict::Refuse(e) = v else {
            panic!("{v:?}")
        };
        assert!(e.message.starts_with(MORE_THAN_ONE_BUDGET), "{}", e.message);
        assert!(e.message.contains("a, b"), "{}", e.message);
    }

    #[test]
    fn a_charged_budget_records_the_pod_and_its_last_disruption() {
        let v = decide(
            &pod("Running", true, false),
            &[pdb("web", 1, 3, 2, 1)],
            now(),
        );
        let Verdict::Charge { budget, .. } = v else {
            panic!("{v:?}")
        };
        assert_eq!(budget["status"]["disruptionsAllowed"], 0);
        assert_eq!(
            budget["status"]["disruptedPods"]["web-1"],
            "2023-11-14T22:13:20Z"
        );
        let cond = &budget["status"]["conditions"][0];
        assert_eq!(
            (&cond["type"], &cond["status"], &cond["reason"]),
            (
                &json!("DisruptionAllowed"),
                &json!("False"),
                &json!("InsufficientPods")
            )
        );
        // the rest of the status stays
        assert_eq!(budget["status"]["expectedPods"], 3);
        // with disruptions left, the condition is not touched
        let v = decide(
            &pod("Running", true, false),
            &[pdb("web", 2, 3, 1, 1)],
            now(),
        );
        let Verdict::Charge { budget, .. } = v else {
            panic!("{v:?}")
        };
        assert_eq!(budget["status"]["disruptionsAllowed"], 1);
        assert_eq!(budget["status"]["conditions"], json!([]));
    }

    #[test]
    fn evicted_pods_are_marked_as_disruption_targets() {
        let mut p = pod("Running", true, false);
        mark_disruption_target(&mut p, now());
        let conds = p["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(conds.len(), 2, "{conds:?}");
        assert_eq!(conds[1]["type"], DISRUPTION_TARGET);
        assert_eq!(conds[1]["reason"], "EvictionByEvictionAPI");
    }
}
