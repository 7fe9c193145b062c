//! `DeploymentController`: owns ReplicaSets. A template change rolls pods to
//! a new ReplicaSet (RollingUpdate within maxSurge / maxUnavailable, or
//! Recreate); old ReplicaSets are kept at zero up to revisionHistoryLimit;
//! ReplicaSets whose Deployment is gone are the garbage collector's.
//!
//! [`reconcile`] decides; [`DeploymentReconciler`] puts it on the
//! controller runtime.

use kubus_api::{
    meta::{self, int_at},
    Kind,
};
use serde_json::{json, Value};

use crate::runtime::{Plan, Planned, Reconcile, View, Watch};
use crate::watching::{controller_ref, stable_hash};
use crate::write::Write;

/// The label that ties a ReplicaSet and its pods to one template.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The annotation carrying a ReplicaSet's revision number.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// The template hash, as a short lowercase token.
pub fn template_hash(deployment: &Value) -> String {
    let template = deployment
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    format!("{:010x}", stable_hash(&template) & 0xff_ffff_ffff)
}

/// Resolve an int-or-percent against `total`; percentages round up for
/// surge and down for unavailability, as Kubernetes does.
pub fn resolve(value: Option<&Value>, total: i64, round_up: bool, default_percent: i64) -> i64 {
    let percent = |p: i64| {
        if round_up {
            (p * total + 99) / 100
        } else {
            p * total / 100
        }
    };
    match value {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.trim().parse::<i64>().ok())
            .map_or(0, percent),
        _ => percent(default_percent),
    }
}

fn revision_of(rs: &Value) -> i64 {
    meta::annotations(rs)
        .get(REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The annotation that says why a revision was made (`kubectl
/// annotate … kubernetes.io/change-cause=…`); copied to the ReplicaSet.
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";

/// The annotations a Deployment's ReplicaSet of `revision` carries.
fn rs_annotations(deployment: &Value, revision: i64) -> Value {
    let mut a = serde_json::Map::new();
    a.insert(REVISION_ANNOTATION.into(), json!(revision.to_string()));
    if let Some(cause) = meta::annotations(deployment).get(CHANGE_CAUSE_ANNOTATION) {
        a.insert(CHANGE_CAUSE_ANNOTATION.into(), json!(cause));
    }
    Value::Object(a)
}

/// A new ReplicaSet for the deployment's current template.
pub fn new_replicaset(deployment: &Value, hash: &str, replicas: i64, revision: i64) -> Value {
    let name = format!("{}-{hash}", meta::name(deployment).unwrap_or("deployment"));
    let mut template = deployment
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(labels) = template
        .as_object_mut()
        .map(|t| t.entry("metadata").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
        .map(|m| m.entry("labels").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    {
        labels.insert(TEMPLATE_HASH_LABEL.into(), json!(hash));
    }
    let mut selector = deployment
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(s) = selector.as_object_mut() {
        let ml = s.entry("matchLabels").or_insert_with(|| json!({}));
        if let Some(ml) = ml.as_object_mut() {
            ml.insert(TEMPLATE_HASH_LABEL.into(), json!(hash));
        }
    }
    let mut labels = template
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(l) = labels.as_object_mut() {
        l.insert(TEMPLATE_HASH_LABEL.into(), json!(hash));
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": meta::namespace(deployment).unwrap_or("default"),
            "labels": labels,
            "annotations": rs_annotations(deployment, revision),
            "ownerReferences": [controller_ref(deployment)],
        },
        "spec": {"replicas": replicas, "selector": selector, "template": template},
    })
}

fn with_replicas(rs: &Value, replicas: i64) -> Write {
    let mut updated = rs.clone();
    if let Some(spec) = updated.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("replicas".into(), json!(replicas));
    }
    Write::Update(updated)
}

/// Decide the writes for one Deployment given the ReplicaSets it owns
/// (conditions timed at the epoch; [`decide`] takes the time).
pub fn reconcile(deployment: &Value, owned: &[&Value]) -> Vec<Write> {
    decide(deployment, owned, jiff::Timestamp::UNIX_EPOCH).0
}

/// The writes for one Deployment at `now`, and when to look again (its
/// progress deadline).
pub fn decide(
    deployment: &Value,
    owned: &[&Value],
    now: jiff::Timestamp,
) -> (Vec<Write>, Option<std::time::Duration>) {
    let mut writes = if deployment.pointer("/spec/paused") == Some(&Value::Bool(true)) {
        paused(deployment, owned)
    } else {
        rollout(deployment, owned)
    };
    let (status, requeue) = status(deployment, owned, !writes.is_empty(), now);
    writes.extend(status.map(Write::Update));
    (writes, requeue)
}

/// A paused Deployment rolls nothing out; a change of `replicas` still
/// scales its one active ReplicaSet.
fn paused(deployment: &Value, owned: &[&Value]) -> Vec<Write> {
    let desired = int_at(deployment, "/spec/replicas").unwrap_or(1).max(0);
    let active: Vec<&&Value> = owned
        .iter()
        .filter(|rs| int_at(rs, "/spec/replicas").unwrap_or(0) > 0)
        .collect();
    match active.as_slice() {
        [only] if int_at(only, "/spec/replicas") != Some(desired) => {
            vec![with_replicas(only, desired)]
        }
        _ => Vec::new(),
    }
}

/// The ReplicaSet writes that roll the current template out.
fn rollout(deployment: &Value, owned: &[&Value]) -> Vec<Write> {
    let desired = int_at(deployment, "/spec/replicas").unwrap_or(1).max(0);
    let hash = template_hash(deployment);
    let spec_of = |rs: &Value| int_at(rs, "/spec/replicas").unwrap_or(0);
    let available_of = |rs: &Value| int_at(rs, "/status/availableReplicas").unwrap_or(0);
    let new_rs = owned
        .iter()
        .copied()
        .find(|rs| meta::labels(rs).get(TEMPLATE_HASH_LABEL) == Some(&hash));
    let mut old: Vec<&Value> = owned
        .iter()
        .copied()
        .filter(|rs| meta::labels(rs).get(TEMPLATE_HASH_LABEL) != Some(&hash))
        .collect();
    old.sort_by_key(|rs| revision_of(rs));
    let recreate = deployment
        .pointer("/spec/strategy/type")
        .and_then(Value::as_str)
        == Some("Recreate");
    let old_total: i64 = old.iter().map(|rs| spec_of(rs)).sum();
    let mut writes = Vec::new();

    // The new ReplicaSet: created, then grown as the strategy allows.
    let new_spec = new_rs.map_or(0, spec_of);
    let all_total = old_total + new_spec;
    let new_target = if recreate {
        let old_pods: i64 = old
            .iter()
            .map(|rs| int_at(rs, "/status/replicas").unwrap_or(0))
            .sum();
        if old_total == 0 && old_pods == 0 {
            desired
        } else {
            new_spec.min(desired)
        }
    } else if old_total == 0 {
        desired
    } else {
        let surge = resolve(
            deployment.pointer("/spec/strategy/rollingUpdate/maxSurge"),
            desired,
            true,
            25,
        );
        let room = (desired + surge - all_total).max(0);
        (new_spec + room).min(desired).max(new_spec.min(desired))
    };
    match new_rs {
        None => {
            let revision = owned.iter().map(|rs| revision_of(rs)).max().unwrap_or(0) + 1;
            writes.push(Write::Create(new_replicaset(
                deployment, &hash, new_target, revision,
            )));
        }
        Some(rs) => {
            // a template rolled back to is the newest revision again, as in
            // Kubernetes; it carries the Deployment's change-cause
            let newest = owned.iter().map(|r| revision_of(r)).max().unwrap_or(0);
            let revision = if revision_of(rs) < newest {
                newest + 1
            } else {
                revision_of(rs)
            };
            let mut updated = rs.clone();
            let mut changed = false;
            if let Some(m) = updated.get_mut("metadata").and_then(Value::as_object_mut) {
                let a = m.entry("annotations").or_insert_with(|| json!({}));
                if let Some(a) = a.as_object_mut() {
                    for (k, v) in rs_annotations(deployment, revision)
                        .as_object()
                        .into_iter()
                        .flatten()
                    {
                        if a.get(k) != Some(v) {
                            a.insert(k.clone(), v.clone());
                            changed = true;
                        }
                    }
                }
            }
            if new_target != new_spec {
                if let Some(spec) = updated.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("replicas".into(), json!(new_target));
                }
                changed = true;
            }
            if changed {
                writes.push(Write::Update(updated));
            }
        }
    }

    // Old ReplicaSets: scaled down as availability allows (Recreate: at once).
    if recreate {
        writes.extend(
            old.iter()
                .filter(|rs| spec_of(rs) > 0)
                .map(|rs| with_replicas(rs, 0)),
        );
    } else if old_total > 0 {
        let unavailable = resolve(
            deployment.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
            desired,
            false,
            25,
        );
        let min_available = desired - unavailable;
        // the new set's pods count as unavailable until they are (including
        // the ones this sync is about to ask for)
        let new_unavailable = (new_target - new_rs.map_or(0, available_of)).max(0);
        let all_total = old_total + new_target;
        let mut budget = all_total - min_available - new_unavailable;
        for rs in &old {
            // Pods of an old set that are not available can always go.
            let unhealthy = (spec_of(rs) - available_of(rs)).max(0);
            let take = spec_of(rs).min(budget.max(0) + unhealthy);
            if take > 0 {
                writes.push(with_replicas(rs, spec_of(rs) - take));
                budget -= take - unhealthy.min(take);
            }
        }
    }

    // History: old sets at zero beyond revisionHistoryLimit are deleted.
    let limit = int_at(deployment, "/spec/revisionHistoryLimit")
        .unwrap_or(10)
        .max(0) as usize;
    let idle: Vec<&&Value> = old
        .iter()
        .filter(|rs| spec_of(rs) == 0 && int_at(rs, "/status/replicas").unwrap_or(0) == 0)
        .collect();
    if idle.len() > limit {
        for rs in idle.iter().take(idle.len() - limit) {
            if let Some(r) = meta::object_ref(rs) {
                writes.push(Write::delete(r, meta::resource_version(rs)));
            }
        }
    }

    writes
}

/// The Deployment's status, summed over every owned ReplicaSet, with the
/// Available and Progressing conditions (`progressed`: this sync wrote to
/// a ReplicaSet); and when the progress deadline runs out.
fn status(
    deployment: &Value,
    owned: &[&Value],
    progressed: bool,
    now: jiff::Timestamp,
) -> (Option<Value>, Option<std::time::Duration>) {
    use crate::workload::{conditions, set_condition, time, time_at};
    let desired = int_at(deployment, "/spec/replicas").unwrap_or(1).max(0);
    let hash = template_hash(deployment);
    let new_rs = owned
        .iter()
        .copied()
        .find(|rs| meta::labels(rs).get(TEMPLATE_HASH_LABEL) == Some(&hash));
    let sum = |p: &str| {
        owned
            .iter()
            .map(|rs| int_at(rs, p).unwrap_or(0))
            .sum::<i64>()
    };
    let available = sum("/status/availableReplicas");
    let replicas = sum("/status/replicas");
    let updated = new_rs.map_or(0, |rs| int_at(rs, "/status/replicas").unwrap_or(0));
    let ready = sum("/status/readyReplicas");
    let old = |p: &str| {
        deployment
            .pointer(&format!("/status/{p}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let moved = progressed
        || updated > old("updatedReplicas")
        || ready > old("readyReplicas")
        || available > old("availableReplicas");
    let now_text = time(now);
    let mut conds = conditions(deployment);
    let max_unavailable = match deployment
        .pointer("/spec/strategy/type")
        .and_then(Value::as_str)
    {
        Some("Recreate") => desired,
        _ => resolve(
            deployment.pointer("/spec/strategy/rollingUpdate/maxUnavailable"),
            desired,
            false,
            25,
        ),
    };
    if available >= desired - max_unavailable {
        set_condition(
            &mut conds,
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            &now_text,
        );
    } else {
        set_condition(
            &mut conds,
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &now_text,
        );
    }
    let rs_name = new_rs
        .and_then(|rs| meta::name(rs))
        .unwrap_or_default()
        .to_string();
    let complete = updated == desired
        && replicas == desired
        && available == desired
        && owned.iter().all(|rs| {
            rs.pointer("/spec/replicas") == new_rs.and_then(|n| n.pointer("/spec/replicas"))
                || int_at(rs, "/status/replicas").unwrap_or(0) == 0
        });
    let mut requeue = None;
    let deadline = int_at(deployment, "/spec/progressDeadlineSeconds");
    let exceeded = kubus_api::pod::condition(deployment, "Progressing").is_some_and(|c| {
        c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
    });
    let paused = deployment.pointer("/spec/paused") == Some(&Value::Bool(true));
    let progressing = |conds: &mut Vec<Value>, status: bool, reason: &str, message: String| {
        // a Progressing condition records when progress last happened
        conds.retain(|c| {
            c.get("type").and_then(Value::as_str) != Some("Progressing")
                || c.get("status").and_then(Value::as_str)
                    == Some(if status { "True" } else { "False" })
        });
        set_condition(conds, "Progressing", status, reason, &message, &now_text);
        if let Some(c) = conds
            .iter_mut()
            .find(|c| c.get("type").and_then(Value::as_str) == Some("Progressing"))
        {
            c["lastUpdateTime"] = json!(now_text);
        }
    };
    if paused {
        progressing(
            &mut conds,
            false,
            "DeploymentPaused",
            "Deployment is paused".into(),
        );
    } else if complete {
        if kubus_api::pod::condition(deployment, "Progressing")
            .and_then(|c| c.get("reason")?.as_str())
            != Some("NewReplicaSetAvailable")
        {
            progressing(
                &mut conds,
                true,
                "NewReplicaSetAvailable",
                format!("ReplicaSet {rs_name:?} has successfully progressed."),
            );
        }
    } else if moved
        || kubus_api::pod::condition(deployment, "Progressing").is_none()
        || kubus_api::pod::condition(deployment, "Progressing")
            .and_then(|c| c.get("reason")?.as_str())
            == Some("DeploymentPaused")
    {
        let reason = if progressed && new_rs.is_none() {
            "NewReplicaSetCreated"
        } else {
            "ReplicaSetUpdated"
        };
        progressing(
            &mut conds,
            true,
            reason,
            format!("ReplicaSet {rs_name:?} is progressing."),
        );
        if let Some(d) = deadline {
            requeue = Some(std::time::Duration::from_secs(d.max(1) as u64));
        }
    } else if let (Some(d), false) = (deadline, exceeded) {
        let since = kubus_api::pod::condition(deployment, "Progressing")
            .and_then(|c| time_at(c, "/lastUpdateTime"))
            .unwrap_or(now);
        let left = since.as_second().saturating_add(d) - now.as_second();
        if left <= 0 {
            progressing(
                &mut conds,
                false,
                "ProgressDeadlineExceeded",
                format!("ReplicaSet {rs_name:?} has timed out progressing."),
            );
        } else {
            requeue = Some(std::time::Duration::from_secs(left as u64));
        }
    }
    let status = json!({
        "observedGeneration": deployment.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "replicas": replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "unavailableReplicas": (desired - available).max(0),
        "conditions": conds,
    });
    // the Deployment says which revision is current, as Kubernetes does
    let mut with_revision = deployment.clone();
    if let Some(rs) = new_rs {
        if let Some(m) = with_revision
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
        {
            let a = m.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = a.as_object_mut() {
                a.insert(
                    REVISION_ANNOTATION.into(),
                    json!(revision_of(rs).to_string()),
                );
            }
        }
    }
    let updated = crate::workload::with_status(&with_revision, status)
        .or_else(|| (with_revision != *deployment).then_some(with_revision));
    (updated, requeue)
}

/// "Scaled up replica set web-5d8 to 3", for a write that creates or
/// rescales one of `owned` (None for other writes).
fn scaling_message(write: &Write, owned: &[&Value]) -> Option<String> {
    let (rs, before) = match write {
        Write::Create(rs) => (rs, 0),
        Write::Update(rs) if meta::kind_of(rs) == Some(Kind::ReplicaSet) => {
            let before = owned
                .iter()
                .find(|o| meta::uid(o) == meta::uid(rs))
                .and_then(|old| int_at(old, "/spec/replicas"));
            (rs, before?)
        }
        _ => return None,
    };
    let after = int_at(rs, "/spec/replicas")?;
    let name = meta::name(rs)?;
    match after.cmp(&before) {
        std::cmp::Ordering::Greater => Some(format!("Scaled up replica set {name} to {after}")),
        std::cmp::Ordering::Less => Some(format!("Scaled down replica set {name} to {after}")),
        std::cmp::Ordering::Equal => None,
    }
}

/// The Deployment controller on the runtime: it owns ReplicaSets.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeploymentReconciler;

impl Reconcile for DeploymentReconciler {
    fn kind(&self) -> Kind {
        Kind::Deployment
    }

    fn name(&self) -> &'static str {
        "deployment-controller"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::Owns(Kind::ReplicaSet)]
    }

    fn reconcile(&self, deployment: &Value, view: &View<'_>) -> Plan {
        // one step at a time: the next is decided on what this one did;
        // a Deployment being deleted is the garbage collector's
        if !view.pending.is_empty() || kubus_api::lifecycle::is_marked(deployment) {
            return Plan::default();
        }
        let owned = view.owned(Kind::ReplicaSet, meta::uid(deployment).unwrap_or_default());
        let (writes, requeue_after) = decide(deployment, &owned, view.now);
        Plan {
            writes: writes
                .into_iter()
                .map(|w| match scaling_message(&w, &owned) {
                    Some(message) => Planned::noted(w, "ScalingReplicaSet", message),
                    None => Planned::quiet(w),
                })
                .collect(),
            requeue_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i64, image: &str, strategy: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "strategy": strategy, "revisionHistoryLimit": 1,
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    fn rolling() -> Value {
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    }

    fn owned_rs(d: &Value, spec: i64, available: i64, revision: i64) -> Value {
        let hash = template_hash(d);
        let mut rs = new_replicaset(d, &hash, spec, revision);
        rs["status"] =
            json!({"replicas": spec, "availableReplicas": available, "readyReplicas": available});
        rs["metadata"]["resourceVersion"] = json!("5");
        rs
    }

    fn scales(writes: &[Write]) -> Vec<(String, i64)> {
        writes
            .iter()
            .filter_map(|w| match w {
                Write::Update(v) if meta::kind_of(v) == Some(Kind::ReplicaSet) => Some((
                    meta::name(v).unwrap_or_default().to_string(),
                    int_at(v, "/spec/replicas").unwrap_or(-1),
                )),
                Write::Create(v) => Some((
                    format!("new:{}", meta::name(v).unwrap_or_default()),
                    int_at(v, "/spec/replicas").unwrap_or(-1),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn percentages_resolve_like_kubernetes() {
        assert_eq!(resolve(Some(&json!("25%")), 3, true, 0), 1);
        assert_eq!(resolve(Some(&json!("25%")), 3, false, 0), 0);
        assert_eq!(resolve(Some(&json!(2)), 3, false, 0), 2);
        assert_eq!(resolve(None, 4, false, 25), 1);
    }

    #[test]
    fn first_rollout_creates_a_full_set() {
        let d = deployment(3, "v1", rolling());
        let w = reconcile(&d, &[]);
        let s = scales(&w);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].1, 3);
        assert!(s[0].0.starts_with("new:web-"));
    }

    #[test]
    fn template_change_rolls_within_surge_and_unavailability() {
        let d1 = deployment(3, "v1", rolling());
        let old = owned_rs(&d1, 3, 3, 1);
        let d2 = deployment(3, "v2", rolling());
        // step 1: the new set is created at 1 (surge 1); nothing old can go yet
        let s = scales(&reconcile(&d2, &[&old]));
        assert_eq!(s.len(), 1, "{s:?}");
        assert_eq!(s[0].1, 1);
        // step 2: the new pod is available: one old pod may go
        let new = owned_rs(&d2, 1, 1, 2);
        let s = scales(&reconcile(&d2, &[&old, &new]));
        assert_eq!(
            s,
            vec![(meta::name(&old).unwrap_or_default().to_string(), 2)]
        );
        // end: old at 0, new at 3, nothing left to do but history
        let old0 = owned_rs(&d1, 0, 0, 1);
        let new3 = owned_rs(&d2, 3, 3, 2);
        assert!(scales(&reconcile(&d2, &[&old0, &new3])).is_empty());
    }

    #[test]
    fn recreate_scales_old_to_zero_first() {
        let d1 = deployment(2, "v1", json!({"type": "Recreate"}));
        let old = owned_rs(&d1, 2, 2, 1);
        let d2 = deployment(2, "v2", json!({"type": "Recreate"}));
        let s = scales(&reconcile(&d2, &[&old]));
        assert!(
            s.contains(&(meta::name(&old).unwrap_or_default().to_string(), 0)),
            "{s:?}"
        );
        assert!(
            s.iter().any(|(n, r)| n.starts_with("new:") && *r == 0),
            "{s:?}"
        );
    }

    #[test]
    fn history_beyond_the_limit_is_deleted() {
        let d1 = deployment(1, "v1", rolling());
        let d2 = deployment(1, "v2", rolling());
        let d3 = deployment(1, "v3", rolling());
        let a = owned_rs(&d1, 0, 0, 1);
        let b = owned_rs(&d2, 0, 0, 2);
        let c = owned_rs(&d3, 1, 1, 3);
        let w = reconcile(&d3, &[&a, &b, &c]);
        let deleted: Vec<_> = w
            .iter()
            .filter_map(|w| match w {
                Write::Delete(r, _) => Some(r.name.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            deleted,
            vec![meta::name(&a).unwrap_or_default().to_string()]
        );
    }

    #[test]
    fn progress_deadline_and_pause() {
        let at = |t: &str| t.parse::<jiff::Timestamp>().expect("time");
        let mut d = deployment(2, "v2", rolling());
        d["spec"]["progressDeadlineSeconds"] = json!(10);
        let rs = owned_rs(&d, 2, 0, 1);
        // progress is recorded, then nothing happens for longer than the deadline
        let (w, requeue) = decide(&d, &[&rs], at("2026-01-01T00:00:00Z"));
        assert_eq!(requeue, Some(std::time::Duration::from_secs(10)));
        let Some(Write::Update(d1)) = w.last() else {
            panic!("{w:?}")
        };
        let (w, requeue) = decide(d1, &[&rs], at("2026-01-01T00:00:04Z"));
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(requeue, Some(std::time::Duration::from_secs(6)));
        let (w, _) = decide(d1, &[&rs], at("2026-01-01T00:00:11Z"));
        let Some(Write::Update(d2)) = w.last() else {
            panic!("{w:?}")
        };
        let p = kubus_api::pod::condition(d2, "Progressing").expect("condition");
        assert_eq!(p["status"], "False");
        assert_eq!(p["reason"], "ProgressDeadlineExceeded");
        // available at last: progressed
        let done = owned_rs(&d, 2, 2, 1);
        let (w, _) = decide(d2, &[&done], at("2026-01-01T00:00:20Z"));
        let Some(Write::Update(d3)) = w.last() else {
            panic!("{w:?}")
        };
        assert_eq!(
            kubus_api::pod::condition(d3, "Progressing").expect("c")["reason"],
            "NewReplicaSetAvailable"
        );
        // paused: a new template is not rolled out
        let mut p = deployment(2, "v3", rolling());
        p["spec"]["paused"] = json!(true);
        let (w, _) = decide(&p, &[&done], at("2026-01-01T00:00:30Z"));
        assert!(w.iter().all(|w| !matches!(w, Write::Create(_))), "{w:?}");
    }

    #[test]
    fn rollback_makes_the_old_template_the_newest_revision() {
        let v1 = deployment(2, "v1", rolling());
        let mut v2 = deployment(2, "v2", rolling());
        v2["metadata"]["annotations"] = json!({CHANGE_CAUSE_ANNOTATION: "image v2"});
        let old = owned_rs(&v1, 0, 0, 1);
        let new = owned_rs(&v2, 2, 2, 2);
        // back to v1's template: its ReplicaSet becomes revision 3
        let mut back = v1.clone();
        back["metadata"]["annotations"] = json!({CHANGE_CAUSE_ANNOTATION: "rollback"});
        let w = reconcile(&back, &[&old, &new]);
        let bumped = w.iter().find_map(|w| match w {
            Write::Update(rs)
                if rs["kind"] == "ReplicaSet"
                    && rs["metadata"]["name"] == old["metadata"]["name"] =>
            {
                Some(rs.clone())
            }
            _ => None,
        });
        let bumped = bumped.unwrap_or_else(|| panic!("{w:?}"));
        assert_eq!(bumped["metadata"]["annotations"][REVISION_ANNOTATION], "3");
        assert_eq!(
            bumped["metadata"]["annotations"][CHANGE_CAUSE_ANNOTATION],
            "rollback"
        );
        let Some(Write::Update(d)) = w.last() else {
            panic!("{w:?}")
        };
        assert_eq!(
            d["metadata"]["annotations"][REVISION_ANNOTATION], "1",
            "the status write names the ReplicaSet as read"
        );
    }
}
