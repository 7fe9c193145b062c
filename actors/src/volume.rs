//! The persistent-volume controllers: the binder ([`ClaimBinder`]) binds
//! each PersistentVolumeClaim to a volume — one pre-bound to it, an
//! Available one that fits (class, access modes, size), or one the
//! built-in local-path provisioner makes on the node the scheduler chose
//! for the claim's first pod (`WaitForFirstConsumer`) — and gives a claim
//! without a class the default one; the reclaimer ([`VolumeReclaimer`])
//! keeps each volume's phase and, once its claim is gone, deletes it
//! (reclaim `Delete`) or keeps it `Released` (`Retain`). A deleted
//! local-path volume's directory is removed by its node's agent.
//!
//! The rules are in [`kubus_api::storage`]; [`bind`] and [`reclaim`]
//! decide; the reconcilers put them on the runtime.

use kubus_api::storage::{
    self, LOCAL_PATH_PROVISIONER, LOCAL_PATH_ROOT_ANNOTATION, SELECTED_NODE_ANNOTATION,
};
use kubus_api::{
    meta::{self, str_at},
    Kind, ObjectRef,
};
use kubus_bus::client::DeleteOptions;
use serde_json::{json, Value};

use crate::informer::{key_of, Delta};
use crate::runtime::{Plan, Planned, Reconcile, View, Watch};
use crate::write::Write;

/// Where local-path volumes live on a node that does not say.
pub const DEFAULT_LOCAL_PATH_ROOT: &str = "/var/lib/kubus/storage";

fn with(object: &Value, pointer: &str, value: Value) -> Value {
    let mut o = object.clone();
    let mut at = &mut o;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        let Some(map) = at.as_object_mut() else {
            return o;
        };
        if i + 1 == parts.len() {
            map.insert((*p).to_string(), value);
            return o;
        }
        at = map.entry(*p).or_insert_with(|| json!({}));
    }
    o
}

/// One step of binding a claim, with the Event it deserves.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub write: Write,
    pub event: Option<(&'static str, String)>,
}

fn step(write: Write) -> Step {
    Step { write, event: None }
}

fn noted(write: Write, reason: &'static str, message: String) -> Step {
    Step {
        write,
        event: Some((reason, message)),
    }
}

/// The claim with status `phase` (and, when bound, the volume's modes and
/// capacity), if that changed.
fn claim_status(pvc: &Value, phase: &str, pv: Option<&Value>) -> Option<Value> {
    let mut status = json!({"phase": phase});
    if let Some(pv) = pv {
        status["accessModes"] = pv
            .pointer("/spec/accessModes")
            .cloned()
            .unwrap_or(json!([]));
        status["capacity"] = pv.pointer("/spec/capacity").cloned().unwrap_or(json!({}));
    }
    crate::workload::with_status(pvc, status)
}

/// Decide the next step of binding `pvc` (one write at a time: each step
/// is decided on what the last one did).
pub fn bind(pvc: &Value, volumes: &[&Value], classes: &[&Value], nodes: &[&Value]) -> Option<Step> {
    if kubus_api::lifecycle::is_marked(pvc) {
        return None;
    }
    let ns_name = format!(
        "{}/{}",
        meta::namespace(pvc).unwrap_or("default"),
        meta::name(pvc).unwrap_or_default()
    );
    let volume_name = str_at(pvc, "/spec/volumeName");
    if !volume_name.is_empty() {
        let pv = volumes
            .iter()
            .copied()
            .find(|v| meta::name(v) == Some(volume_name));
        return match pv {
            None => claim_status(pvc, "Lost", None).map(|c| {
                noted(Write::Update(c), "ClaimLost", "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!".to_string())
            }),
            Some(pv) if str_at(pv, "/spec/claimRef/uid").is_empty() => {
                Some(step(Write::Update(with(pv, "/spec/claimRef", storage::claim_ref(pvc)))))
            }
            Some(pv) if storage::claimed_by(pv, pvc) => claim_status(pvc, "Bound", Some(pv)).map(|c| step(Write::Update(c))),
            Some(pv) => claim_status(pvc, "Lost", None).map(|c| {
                noted(
                    Write::Update(c),
                    "ClaimMisbound",
                    format!("Two claims are bound to the same volume, this one is bound incorrectly (volume {})", meta::name(pv).unwrap_or_default()),
                )
            }),
        };
    }
    // a claim without a class gets the default one (when there is one)
    let class_name = str_at(pvc, "/spec/storageClassName");
    if pvc
        .pointer("/spec/storageClassName")
        .is_none_or(Value::is_null)
    {
        if let Some(default) = storage::default_class(classes).and_then(|c| meta::name(c)) {
            return Some(step(Write::Update(with(
                pvc,
                "/spec/storageClassName",
                json!(default),
            ))));
        }
    }
    // a volume claimed for it, or one that fits
    let mut fitting: Vec<&Value> = volumes
        .iter()
        .copied()
        .filter(|v| storage::fits(v, pvc, class_name))
        .collect();
    fitting.sort_by_key(|v| {
        (
            !storage::claimed_by(v, pvc),
            storage::capacity_bytes(v),
            meta::name(v).unwrap_or_default().to_string(),
        )
    });
    if let Some(pv) = fitting.first() {
        let pv_name = meta::name(pv).unwrap_or_default().to_string();
        if !storage::claimed_by(pv, pvc) {
            return Some(step(Write::Update(with(
                pv,
                "/spec/claimRef",
                storage::claim_ref(pvc),
            ))));
        }
        let bound = with(pvc, "/spec/volumeName", json!(pv_name));
        return Some(noted(
            Write::Update(bound),
            "Bound",
            format!("Successfully bound to volume {pv_name}"),
        ));
    }
    // none: provision one
    let pending = |reason: &'static str, message: String| {
        claim_status(pvc, "Pending", None).map(|c| noted(Write::Update(c), reason, message))
    };
    if class_name.is_empty() {
        return pending(
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set".into(),
        );
    }
    let Some(class) = classes
        .iter()
        .copied()
        .find(|c| meta::name(c) == Some(class_name))
    else {
        return pending(
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io {class_name:?} not found"),
        );
    };
    let provisioner = str_at(class, "/provisioner");
    if provisioner != LOCAL_PATH_PROVISIONER {
        return pending(
            "ExternalProvisioning",
            format!("Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator"),
        );
    }
    let selected = meta::annotations(pvc)
        .get(SELECTED_NODE_ANNOTATION)
        .cloned();
    let node = match selected {
        Some(n) => nodes
            .iter()
            .copied()
            .find(|v| meta::name(v) == Some(n.as_str())),
        None if storage::waits_for_consumer(class) => {
            return pending(
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".into(),
            );
        }
        // Immediate binding: the first Ready node by name
        None => {
            let mut ready: Vec<&Value> = nodes
                .iter()
                .copied()
                .filter(|n| crate::workload::condition_true(n, "Ready"))
                .collect();
            ready.sort_by_key(|n| meta::name(n).unwrap_or_default().to_string());
            ready.first().copied()
        }
    };
    let Some(node) = node else {
        return pending(
            "ProvisioningFailed",
            format!("claim {ns_name}: no node to provision a local-path volume on"),
        );
    };
    let node_name = meta::name(node).unwrap_or_default();
    let root = meta::annotations(node)
        .get(LOCAL_PATH_ROOT_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| DEFAULT_LOCAL_PATH_ROOT.to_string());
    let pv = storage::local_path_volume(pvc, class, node_name, &root);
    Some(noted(
        Write::Create(pv),
        "ProvisioningSucceeded",
        format!(
            "Successfully provisioned volume {} on node {node_name}",
            storage::provisioned_name(pvc)
        ),
    ))
}

/// Decide the next step for volume `pv` given the claim its reference
/// names (None: that claim is not there).
pub fn reclaim(pv: &Value, claim: Option<&Value>) -> Option<Step> {
    if kubus_api::lifecycle::is_marked(pv) {
        return None;
    }
    let claim_ref = pv.pointer("/spec/claimRef").filter(|r| !r.is_null());
    let phase = match (claim_ref, claim) {
        (None, _) => "Available",
        (Some(r), Some(c))
            if r.get("uid")
                .is_none_or(|u| Some(u.as_str().unwrap_or_default()) == meta::uid(c)) =>
        {
            "Bound"
        }
        (Some(_), _) => "Released",
    };
    if phase == "Released" && str_at(pv, "/spec/persistentVolumeReclaimPolicy") == "Delete" {
        let r = meta::object_ref(pv)?;
        let claim_name = claim_ref.map(|c| {
            (
                str_at(c, "/namespace").to_string(),
                str_at(c, "/name").to_string(),
            )
        });
        let only_if_absent = claim_name
            .map(|(ns, name)| {
                vec![ObjectRef::new(
                    Kind::PersistentVolumeClaim,
                    Some(&ns),
                    &name,
                )]
            })
            .unwrap_or_default();
        return Some(step(Write::Delete(
            r,
            DeleteOptions {
                resource_version: meta::resource_version(pv),
                only_if_absent,
                ..DeleteOptions::default()
            },
        )));
    }
    let status = json!({"phase": phase});
    crate::workload::with_status(pv, status).map(|v| step(Write::Update(v)))
}

fn claim_of_volume(delta: &Delta, _: &View<'_>) -> Vec<String> {
    let r = &delta.object;
    match (
        r.pointer("/spec/claimRef/namespace")
            .and_then(Value::as_str),
        r.pointer("/spec/claimRef/name").and_then(Value::as_str),
    ) {
        (Some(ns), Some(name)) => {
            vec![format!("{ns}/{name}")]
        }
        _ => Vec::new(),
    }
}

fn unbound_claims(_: &Delta, view: &View<'_>) -> Vec<String> {
    view.own()
        .map(|c| {
            c.cache
                .values()
                .filter(|pvc| str_at(pvc, "/spec/volumeName").is_empty())
                .map(key_of)
                .collect()
        })
        .unwrap_or_default()
}

fn volumes_of_claim(delta: &Delta, view: &View<'_>) -> Vec<String> {
    let (ns, name) = (
        meta::namespace(&delta.object).unwrap_or_default(),
        meta::name(&delta.object).unwrap_or_default(),
    );
    view.own()
        .map(|c| {
            c.cache
                .values()
                .filter(|pv| {
                    str_at(pv, "/spec/claimRef/namespace") == ns
                        && str_at(pv, "/spec/claimRef/name") == name
                })
                .map(key_of)
                .collect()
        })
        .unwrap_or_default()
}

fn planned(s: Step) -> Planned {
    match s.event {
        Some((reason, message)) => Planned::noted(s.write, reason, message),
        None => Planned::quiet(s.write),
    }
}

/// The binder and local-path provisioner on the runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClaimBinder;

impl Reconcile for ClaimBinder {
    fn kind(&self) -> Kind {
        Kind::PersistentVolumeClaim
    }

    fn name(&self) -> &'static str {
        "persistentvolume-controller"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![
            Watch::Maps(Kind::PersistentVolume, claim_of_volume),
            Watch::Maps(Kind::StorageClass, unbound_claims),
            Watch::Maps(Kind::Node, unbound_claims),
        ]
    }

    fn reconcile(&self, pvc: &Value, view: &View<'_>) -> Plan {
        if !view.pending.is_empty() {
            return Plan::default();
        }
        let all = |k: Kind| -> Vec<&Value> {
            view.cache(k)
                .map(|c| c.cache.values().collect())
                .unwrap_or_default()
        };
        let (volumes, classes, nodes) = (
            all(Kind::PersistentVolume),
            all(Kind::StorageClass),
            all(Kind::Node),
        );
        Plan::writes(bind(pvc, &volumes, &classes, &nodes).map(planned))
    }
}

/// The volume reclaimer on the runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct VolumeReclaimer;

impl Reconcile for VolumeReclaimer {
    fn kind(&self) -> Kind {
        Kind::PersistentVolume
    }

    fn name(&self) -> &'static str {
        "persistentvolume-reclaimer"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::Maps(Kind::PersistentVolumeClaim, volumes_of_claim)]
    }

    fn reconcile(&self, pv: &Value, view: &View<'_>) -> Plan {
        if !view.pending.is_empty() {
            return Plan::default();
        }
        let claim = match (
            pv.pointer("/spec/claimRef/namespace")
                .and_then(Value::as_str),
            pv.pointer("/spec/claimRef/name").and_then(Value::as_str),
        ) {
            (Some(ns), Some(name)) => view
                .cache(Kind::PersistentVolumeClaim)
                .and_then(|c| c.cache.get(&format!("{ns}/{name}"))),
            _ => None,
        };
        Plan::writes(reclaim(pv, claim).map(planned))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubus_api::storage::local_path_class;

    fn pvc(class: Option<&str>, selected: Option<&str>) -> Value {
        let mut c = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "www-web-0", "namespace": "default", "uid": "c-uid", "annotations": {}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        if let Some(class) = class {
            c["spec"]["storageClassName"] = json!(class);
        }
        if let Some(n) = selected {
            c["metadata"]["annotations"][SELECTED_NODE_ANNOTATION] = json!(n);
        }
        c
    }

    fn node(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name,
            "labels": {"kubernetes.io/hostname": name}, "annotations": {LOCAL_PATH_ROOT_ANNOTATION: format!("/data/{name}/storage")}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    }

    #[test]
    fn claims_are_provisioned_on_the_selected_node_and_bound() {
        let class = local_path_class();
        let (n1, n2) = (node("n1"), node("n2"));
        // no class: the default one
        let s = bind(&pvc(None, None), &[], &[&class], &[&n1]).expect("a step");
        let Write::Update(c) = &s.write else {
            panic!("{s:?}")
        };
        assert_eq!(c["spec"]["storageClassName"], "local-path");
        // waits for its first pod
        let s = bind(&pvc(Some("local-path"), None), &[], &[&class], &[&n1]).expect("a step");
        assert_eq!(s.event.as_ref().map(|e| e.0), Some("WaitForFirstConsumer"));
        // the scheduler chose n2: a volume there
        let s = bind(
            &pvc(Some("local-path"), Some("n2")),
            &[],
            &[&class],
            &[&n1, &n2],
        )
        .expect("a step");
        let Write::Create(pv) = &s.write else {
            panic!("{s:?}")
        };
        assert_eq!(
            storage::volume_path(pv),
            Some("/data/n2/storage/pvc-c-uid_default_www-web-0")
        );
        assert!(storage::usable_from(pv, &n2));
        // then the claim names it, then reports Bound
        let claim = pvc(Some("local-path"), Some("n2"));
        let s = bind(&claim, &[pv], &[&class], &[&n1, &n2]).expect("a step");
        let Write::Update(bound) = &s.write else {
            panic!("{s:?}")
        };
        assert_eq!(bound["spec"]["volumeName"], "pvc-c-uid");
        let s = bind(bound, &[pv], &[&class], &[]).expect("a step");
        let Write::Update(done) = &s.write else {
            panic!("{s:?}")
        };
        assert_eq!(done["status"]["phase"], "Bound");
        assert_eq!(bind(done, &[pv], &[&class], &[]), None);
    }

    #[test]
    fn static_volumes_are_claimed_then_bound() {
        let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "small"},
            "spec": {"capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                "hostPath": {"path": "/srv/a"}, "persistentVolumeReclaimPolicy": "Retain"}});
        let claim = pvc(Some("manual"), None);
        let s = bind(&claim, &[&pv], &[], &[]).expect("a step");
        let Write::Update(claimed) = &s.write else {
            panic!("{s:?}")
        };
        assert_eq!(claimed["spec"]["claimRef"]["uid"], "c-uid");
        // the volume is Bound while its claim is there, Released (kept) after
        assert_eq!(
            reclaim(claimed, Some(&claim)).map(|s| s.write),
            Some(Write::Update(with(
                claimed,
                "/status",
                json!({"phase": "Bound"})
            )))
        );
        let released = reclaim(claimed, None).expect("a step");
        let Write::Update(r) = &released.write else {
            panic!("{released:?}")
        };
        assert_eq!(r["status"]["phase"], "Released");
        // a Delete volume goes, only if the claim is still absent then
        let mut del = claimed.clone();
        del["spec"]["persistentVolumeReclaimPolicy"] = json!("Delete");
        let Some(Step {
            write: Write::Delete(r, opts),
            ..
        }) = reclaim(&del, None)
        else {
            panic!()
        };
        assert_eq!(r.name, "small");
        assert_eq!(opts.only_if_absent[0].name, "www-web-0");
    }
}
