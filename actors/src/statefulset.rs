//! The StatefulSet controller: pods with stable names `<set>-<ordinal>`,
//! each with `hostname` = its name and `subdomain` = the governing Service,
//! and its own PersistentVolumeClaims `<template>-<set>-<ordinal>` made
//! from `volumeClaimTemplates` before the pod. `OrderedReady` starts
//! ordinals in order, each once its predecessors run and are Ready, and
//! removes them from the highest down, one at a time; `Parallel` does
//! both at once. A template change rolls out from the highest ordinal
//! down to `partition` (RollingUpdate: one pod at a time, once all are
//! Ready), or waits for pods to be deleted (OnDelete). Claims are kept,
//! or deleted with the set / on scale-down, as
//! `persistentVolumeClaimRetentionPolicy` says.
//!
//! [`reconcile`] decides; [`StatefulSetReconciler`] puts it on the runtime.

use std::collections::BTreeMap;

use kubus_api::{
    meta::{self, int_at, str_at},
    pod, Kind, ObjectRef,
};
use serde_json::{json, Value};

use crate::daemonset::REVISION_HASH_LABEL;
use crate::deployment::template_hash;
use crate::informer::{key_of, Delta};
use crate::runtime::{Plan, Planned, Reconcile, View, Watch};
use crate::workload::{pod_from, with_status};
use crate::write::Write;

/// The label naming a stateful pod (a Service can select one pod by it).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label carrying a stateful pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The ordinal of `pod` in the set named `set`.
pub fn ordinal(set: &str, pod: &Value) -> Option<i64> {
    let name = meta::name(pod)?;
    let rest = name.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty()
        || !rest.bytes().all(|b| b.is_ascii_digit())
        || (rest.len() > 1 && rest.starts_with('0'))
    {
        return None;
    }
    rest.parse().ok()
}

/// The revision name of the set's current template.
pub fn revision(sts: &Value) -> String {
    crate::revisions::name_of(sts, &template_hash(sts))
}

/// The claim of `template` for ordinal `i`.
pub fn claim_name(template: &str, set: &str, i: i64) -> String {
    format!("{template}-{set}-{i}")
}

fn claim_templates(sts: &Value) -> Vec<&Value> {
    sts.pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .map(|v| v.iter().collect())
        .unwrap_or_default()
}

/// The claims ordinal `i` uses: each template made into a claim.
pub fn claims_for(sts: &Value, i: i64) -> Vec<Value> {
    let set = meta::name(sts).unwrap_or("set");
    let ns = meta::namespace(sts).unwrap_or("default");
    let delete_with_set = str_at(
        sts,
        "/spec/persistentVolumeClaimRetentionPolicy/whenDeleted",
    ) == "Delete";
    let selector_labels = sts
        .pointer("/spec/selector/matchLabels")
        .cloned()
        .unwrap_or_else(|| json!({}));
    claim_templates(sts)
        .into_iter()
        .filter_map(|t| {
            let template = meta::name(t)?;
            let mut labels = selector_labels.clone();
            if let (Some(l), Some(own)) = (
                labels.as_object_mut(),
                t.pointer("/metadata/labels").and_then(Value::as_object),
            ) {
                l.extend(own.clone());
            }
            let mut metadata =
                json!({"name": claim_name(template, set, i), "namespace": ns, "labels": labels});
            if delete_with_set {
                // deleted with the set by the garbage collector
                let mut owner = crate::watching::controller_ref(sts);
                owner["controller"] = json!(false);
                owner["blockOwnerDeletion"] = json!(false);
                metadata["ownerReferences"] = json!([owner]);
            }
            Some(json!({
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": metadata,
                "spec": t.get("spec").cloned().unwrap_or_else(|| json!({})),
            }))
        })
        .collect()
}

/// The pod of ordinal `i`.
pub fn stateful_pod(sts: &Value, i: i64) -> Value {
    let set = meta::name(sts).unwrap_or("set");
    let name = format!("{set}-{i}");
    let mut p = pod_from(sts, Some(&name));
    if let Some(labels) = p
        .pointer_mut("/metadata")
        .and_then(Value::as_object_mut)
        .map(|m| m.entry("labels").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    {
        labels.insert(POD_NAME_LABEL.into(), json!(name));
        labels.insert(POD_INDEX_LABEL.into(), json!(i.to_string()));
        labels.insert(REVISION_HASH_LABEL.into(), json!(revision(sts)));
    }
    let service = str_at(sts, "/spec/serviceName").to_string();
    let claims: Vec<(String, String)> = claim_templates(sts)
        .into_iter()
        .filter_map(|t| meta::name(t))
        .map(|t| (t.to_string(), claim_name(t, set, i)))
        .collect();
    if let Some(spec) = p.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("hostname".into(), json!(name));
        if !service.is_empty() {
            spec.insert("subdomain".into(), json!(service));
        }
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(volumes) = volumes.as_array_mut() {
            for (template, claim) in claims {
                volumes
                    .retain(|v| v.get("name").and_then(Value::as_str) != Some(template.as_str()));
                volumes
                    .push(json!({"name": template, "persistentVolumeClaim": {"claimName": claim}}));
            }
        }
    }
    p
}

/// What one sync of a StatefulSet does.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decision {
    /// Claims to create (before the pods that use them).
    pub claims: Vec<Value>,
    /// Ordinals to create a pod for.
    pub creates: Vec<i64>,
    pub deletes: Vec<ObjectRef>,
    pub status: Option<Value>,
}

/// Decide one sync of `sts` from its pods and the claims of its namespace
/// (by name).
pub fn reconcile(
    sts: &Value,
    pods: &[&Value],
    claims: &BTreeMap<String, &Value>,
    now: i64,
) -> Decision {
    let mut d = Decision::default();
    if kubus_api::lifecycle::is_marked(sts) {
        return d;
    }
    let set = meta::name(sts).unwrap_or("set");
    let replicas = int_at(sts, "/spec/replicas").unwrap_or(1).max(0);
    let start = int_at(sts, "/spec/ordinals/start").unwrap_or(0).max(0);
    let end = start + replicas;
    let parallel = str_at(sts, "/spec/podManagementPolicy") == "Parallel";
    let on_delete = str_at(sts, "/spec/updateStrategy/type") == "OnDelete";
    let partition = int_at(sts, "/spec/updateStrategy/rollingUpdate/partition").unwrap_or(0);
    let min_ready = int_at(sts, "/spec/minReadySeconds").unwrap_or(0);
    let delete_scaled =
        str_at(sts, "/spec/persistentVolumeClaimRetentionPolicy/whenScaled") == "Delete";
    let update = revision(sts);
    let is_updated = |p: &Value| meta::labels(p).get(REVISION_HASH_LABEL) == Some(&update);
    let healthy = |p: &Value| {
        !pod::is_terminating(p) && str_at(p, "/status/phase") == "Running" && pod::is_ready(p)
    };

    let mut by_ordinal: BTreeMap<i64, &Value> = BTreeMap::new();
    for &p in pods {
        if let Some(i) = ordinal(set, p) {
            by_ordinal.insert(i, p);
        }
    }
    let terminating = by_ordinal.values().any(|p| pod::is_terminating(p));

    // finished pods are replaced (a stateful pod always runs)
    for p in by_ordinal.values() {
        if pod::is_finished(p) && !pod::is_terminating(p) {
            d.deletes.extend(meta::object_ref(p));
        }
    }

    // start missing ordinals (claims first)
    for i in start..end {
        match by_ordinal.get(&i) {
            Some(_) => {}
            None => {
                for c in claims_for(sts, i) {
                    if !claims.contains_key(meta::name(&c).unwrap_or_default()) {
                        d.claims.push(c);
                    }
                }
                d.creates.push(i);
                if !parallel {
                    break;
                }
            }
        }
        if !parallel {
            // the next ordinal waits for this one to run and be Ready
            match by_ordinal.get(&i) {
                Some(p) if healthy(p) => {}
                _ => break,
            }
        }
    }
    if !parallel && terminating {
        d.creates.clear();
        d.claims.clear();
    }

    // remove ordinals past the end, highest first
    let condemned: Vec<&Value> = by_ordinal
        .iter()
        .rev()
        .filter(|(i, _)| **i >= end || **i < start)
        .map(|(_, p)| *p)
        .collect();
    if !condemned.is_empty() {
        if parallel {
            d.deletes.extend(
                condemned
                    .iter()
                    .filter(|p| !pod::is_terminating(p))
                    .filter_map(|p| meta::object_ref(p)),
            );
        } else if !terminating {
            // OrderedReady: one at a time, and only while the rest are healthy
            let rest_healthy = by_ordinal
                .iter()
                .filter(|(i, _)| (start..end).contains(*i))
                .all(|(_, p)| healthy(p));
            if rest_healthy || condemned.iter().any(|p| !healthy(p)) {
                d.deletes.extend(meta::object_ref(condemned[0]));
            }
        }
    }
    // claims of removed ordinals, when the policy says so and the pod is gone
    if delete_scaled {
        for c in claims.values() {
            let Some(name) = meta::name(c) else { continue };
            let gone = claim_templates(sts)
                .iter()
                .filter_map(|t| meta::name(t))
                .any(|t| {
                    name.strip_prefix(&format!("{t}-{set}-"))
                        .and_then(|rest| rest.parse::<i64>().ok())
                        .is_some_and(|i| (i >= end || i < start) && !by_ordinal.contains_key(&i))
                });
            if gone && !pod::is_terminating(c) {
                d.deletes.extend(meta::object_ref(c));
            }
        }
    }

    // roll the template out, from the highest ordinal down to the partition
    let all_healthy = (start..end).all(|i| by_ordinal.get(&i).is_some_and(|p| healthy(p)));
    if !on_delete && d.creates.is_empty() && d.deletes.is_empty() && all_healthy && !terminating {
        if let Some((_, p)) = by_ordinal
            .iter()
            .rev()
            .find(|(i, p)| **i >= partition.max(start) && **i < end && !is_updated(p))
        {
            d.deletes.extend(meta::object_ref(p));
        }
    }

    // status
    let live: Vec<&Value> = by_ordinal
        .values()
        .copied()
        .filter(|p| !pod::is_finished(p))
        .collect();
    let updated = live.iter().filter(|p| is_updated(p)).count();
    let current_revision = match sts
        .pointer("/status/currentRevision")
        .and_then(Value::as_str)
    {
        Some(c) if updated < replicas as usize || live.len() != replicas as usize => c.to_string(),
        _ => update.clone(),
    };
    let current = live
        .iter()
        .filter(|p| meta::labels(p).get(REVISION_HASH_LABEL) == Some(&current_revision))
        .count();
    let status = json!({
        "observedGeneration": sts.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "replicas": live.len(),
        "readyReplicas": live.iter().filter(|p| pod::is_ready(p)).count(),
        "availableReplicas": live.iter().filter(|p| pod::is_available(p, min_ready, now)).count(),
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": update,
        "collisionCount": 0,
    });
    d.status = with_status(sts, status);
    d
}

fn sets_of_claim(delta: &Delta, view: &View<'_>) -> Vec<String> {
    // a claim named <template>-<set>-<i> concerns the sets of its namespace
    let Some(ns) = meta::namespace(&delta.object) else {
        return Vec::new();
    };
    view.own()
        .map(|c| c.cache.in_namespace(ns).map(key_of).collect())
        .unwrap_or_default()
}

/// The StatefulSet controller on the runtime: it owns pods, makes claims.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatefulSetReconciler;

impl Reconcile for StatefulSetReconciler {
    fn kind(&self) -> Kind {
        Kind::StatefulSet
    }

    fn name(&self) -> &'static str {
        "statefulset-controller"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![
            Watch::Owns(Kind::Pod),
            Watch::Owns(Kind::ControllerRevision),
            Watch::Maps(Kind::PersistentVolumeClaim, sets_of_claim),
        ]
    }

    fn reconcile(&self, sts: &Value, view: &View<'_>) -> Plan {
        // one step at a time: the next is decided on what this one did
        if !view.pending.is_empty() {
            return Plan::default();
        }
        let ns = meta::namespace(sts).unwrap_or("default");
        let pods = view.owned(Kind::Pod, meta::uid(sts).unwrap_or_default());
        let claims: BTreeMap<String, &Value> = view
            .cache(Kind::PersistentVolumeClaim)
            .map(|c| {
                c.cache
                    .in_namespace(ns)
                    .filter_map(|v| Some((meta::name(v)?.to_string(), v)))
                    .collect()
            })
            .unwrap_or_default();
        let d = reconcile(sts, &pods, &claims, view.now.as_second());
        let claims = d.claims.into_iter().map(|c| {
            Planned::noted(
                Write::Create(c),
                "SuccessfulCreate",
                "create Claim {name} success",
            )
        });
        let creates: Vec<Planned> = d
            .creates
            .iter()
            .map(|i| {
                Planned::noted(
                    Write::Create(stateful_pod(sts, *i)),
                    "SuccessfulCreate",
                    "create Pod {name} success",
                )
            })
            .collect();
        let deletes = d.deletes.into_iter().map(|r| {
            let what = if r.kind == Kind::Pod { "Pod" } else { "Claim" };
            Planned::noted(
                Write::delete(r, None),
                "SuccessfulDelete",
                format!("delete {what} {{name}} success"),
            )
        });
        let status = d.status.map(|s| Planned::quiet(Write::Update(s)));
        let in_use: std::collections::BTreeSet<String> = pods
            .iter()
            .filter_map(|p| meta::labels(p).get(REVISION_HASH_LABEL).cloned())
            .collect();
        let revisions = view.owned(Kind::ControllerRevision, meta::uid(sts).unwrap_or_default());
        let history = crate::revisions::plan(sts, &template_hash(sts), &revisions, &in_use)
            .into_iter()
            .map(Planned::quiet);
        Plan::writes(
            claims
                .chain(creates)
                .chain(deletes)
                .chain(status)
                .chain(history),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(replicas: i64, policy: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "sts-uid", "generation": 1},
            "spec": {"replicas": replicas, "serviceName": "nginx", "podManagementPolicy": policy,
                "selector": {"matchLabels": {"app": "nginx"}},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                "template": {"metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx",
                        "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}})
    }

    fn pod(set: &Value, i: i64, ready: bool) -> Value {
        let mut p = stateful_pod(set, i);
        p["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]});
        p
    }

    fn run(set: &Value, pods: &[Value], claims: &[&str]) -> Decision {
        let claim_objects: Vec<Value> = claims
            .iter()
            .map(|c| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": c, "namespace": "default"}}))
            .collect();
        let claims: BTreeMap<String, &Value> = claims
            .iter()
            .map(|c| c.to_string())
            .zip(claim_objects.iter())
            .collect();
        let refs: Vec<&Value> = pods.iter().collect();
        reconcile(set, &refs, &claims, 0)
    }

    fn deleted(d: &Decision) -> Vec<String> {
        d.deletes.iter().map(|r| r.name.clone()).collect()
    }

    #[test]
    fn ordered_ready_starts_in_order() {
        let s = sts(3, "OrderedReady");
        let d = run(&s, &[], &[]);
        assert_eq!(d.creates, [0]);
        assert_eq!(d.claims.len(), 1);
        assert_eq!(d.claims[0]["metadata"]["name"], "www-web-0");
        assert_eq!(d.claims[0]["metadata"]["labels"]["app"], "nginx");
        // web-0 not ready: web-1 waits
        let d = run(&s, &[pod(&s, 0, false)], &["www-web-0"]);
        assert!(d.creates.is_empty());
        let d = run(&s, &[pod(&s, 0, true)], &["www-web-0"]);
        assert_eq!(d.creates, [1]);
        // parallel: all at once
        let p = sts(3, "Parallel");
        assert_eq!(run(&p, &[], &[]).creates, [0, 1, 2]);
    }

    #[test]
    fn pods_are_stable_and_carry_their_claims() {
        let s = sts(3, "OrderedReady");
        let p = stateful_pod(&s, 1);
        assert_eq!(p["metadata"]["name"], "web-1");
        assert_eq!(p["spec"]["hostname"], "web-1");
        assert_eq!(p["spec"]["subdomain"], "nginx");
        assert_eq!(
            p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "www-web-1"
        );
        assert_eq!(p["metadata"]["labels"][POD_NAME_LABEL], "web-1");
        assert_eq!(ordinal("web", &p), Some(1));
        assert_eq!(
            ordinal("web", &json!({"metadata": {"name": "web-01"}})),
            None
        );
        assert_eq!(
            ordinal("web", &json!({"metadata": {"name": "webby-1"}})),
            None
        );
    }

    #[test]
    fn scale_down_from_the_highest_ordinal() {
        let s = sts(1, "OrderedReady");
        let pods = [pod(&s, 0, true), pod(&s, 1, true), pod(&s, 2, true)];
        assert_eq!(deleted(&run(&s, &pods, &[])), ["web-2"]);
        let mut going = pods.clone();
        going[2]["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(deleted(&run(&s, &going, &[])).is_empty(), "one at a time");
        // claims stay (Retain), or go once their pod has (Delete)
        let two = [pod(&s, 0, true), pod(&s, 1, true)];
        assert_eq!(
            deleted(&run(&s, &two[..1], &["www-web-0", "www-web-1"])),
            Vec::<String>::new()
        );
        let mut del = sts(1, "OrderedReady");
        del["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] = json!("Delete");
        let d = run(&del, &[pod(&del, 0, true)], &["www-web-0", "www-web-1"]);
        assert_eq!(deleted(&d), ["www-web-1"]);
    }

    #[test]
    fn rolling_update_from_the_top_down_to_the_partition() {
        let old = sts(3, "OrderedReady");
        let pods = [pod(&old, 0, true), pod(&old, 1, true), pod(&old, 2, true)];
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert_eq!(deleted(&run(&new, &pods, &[])), ["web-2"]);
        let mut partitioned = new.clone();
        partitioned["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(2);
        let updated = [pod(&old, 0, true), pod(&old, 1, true), pod(&new, 2, true)];
        assert!(deleted(&run(&partitioned, &updated, &[])).is_empty());
        assert_eq!(deleted(&run(&new, &updated, &[])), ["web-1"]);
        let mut on_delete = new.clone();
        on_delete["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        assert!(deleted(&run(&on_delete, &pods, &[])).is_empty());
    }
}
