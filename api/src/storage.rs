//! Persistent storage rules, stated once: which StorageClass a claim gets,
//! whether a PersistentVolume can satisfy a claim, what the built-in
//! local-path provisioner makes for a claim on a node (a directory under
//! the node's data dir, as k3s' local-path provisioner does), and which
//! nodes a volume can be used from.

use serde_json::{json, Value};

use crate::meta::{self, str_at};

/// The provisioner of kubus' built-in StorageClass.
pub const LOCAL_PATH_PROVISIONER: &str = "kubus.io/local-path";
/// The name of the built-in StorageClass (k3s' name for its own).
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// The annotation a node agent sets on its Node: where its local-path
/// volumes live.
pub const LOCAL_PATH_ROOT_ANNOTATION: &str = "kubus.io/local-path-root";
/// The annotation the scheduler sets on a claim whose class waits for the
/// first consumer: the node the consumer was placed on.
pub const SELECTED_NODE_ANNOTATION: &str = "volume.kubernetes.io/selected-node";
/// Who provisioned a volume.
pub const PROVISIONED_BY_ANNOTATION: &str = "pv.kubernetes.io/provisioned-by";
/// A StorageClass that is the default.
pub use crate::admission::workloads::DEFAULT_CLASS_ANNOTATION;

/// The built-in StorageClass: the default one, binding when a pod first
/// uses the claim, volumes deleted with their claim.
pub fn local_path_class() -> Value {
    json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": LOCAL_PATH_CLASS,
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    })
}

/// The default StorageClass among `classes`: the newest marked default,
/// as Kubernetes picks when several are.
pub fn default_class<'a>(classes: &[&'a Value]) -> Option<&'a Value> {
    classes
        .iter()
        .copied()
        .filter(|c| {
            meta::annotations(c)
                .get(DEFAULT_CLASS_ANNOTATION)
                .map(String::as_str)
                == Some("true")
        })
        .max_by_key(|c| str_at(c, "/metadata/creationTimestamp").to_string())
}

/// Whether a class binds when the first pod uses the claim.
pub fn waits_for_consumer(class: &Value) -> bool {
    str_at(class, "/volumeBindingMode") == "WaitForFirstConsumer"
}

/// A claim's requested storage, in bytes.
pub fn requested_bytes(pvc: &Value) -> i128 {
    crate::quantity::parse_milli(str_at(pvc, "/spec/resources/requests/storage")).unwrap_or(0)
        / 1000
}

/// A volume's capacity, in bytes.
pub fn capacity_bytes(pv: &Value) -> i128 {
    crate::quantity::parse_milli(str_at(pv, "/spec/capacity/storage")).unwrap_or(0) / 1000
}

fn modes(v: &Value) -> Vec<&str> {
    v.pointer("/spec/accessModes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Whether `pv` is pre-bound to, or could be bound to, `pvc`: claimed by
/// it, or unclaimed and Available with the claim's class, every access
/// mode it asks for and at least its size.
pub fn fits(pv: &Value, pvc: &Value, class: &str) -> bool {
    if let Some(r) = pv.pointer("/spec/claimRef").filter(|r| !r.is_null()) {
        return claimed_by(pv, pvc)
            || (r.get("uid").is_none()
                && str_at(r, "/name") == meta::name(pvc).unwrap_or_default()
                && str_at(r, "/namespace") == meta::namespace(pvc).unwrap_or_default());
    }
    if crate::pod::is_terminating(pv)
        || matches!(str_at(pv, "/status/phase"), "Released" | "Failed")
    {
        return false;
    }
    let pv_modes = modes(pv);
    str_at(pv, "/spec/storageClassName") == class
        && modes(pvc).iter().all(|m| pv_modes.contains(m))
        && capacity_bytes(pv) >= requested_bytes(pvc)
}

/// Whether `pv`'s claim reference names `pvc` (by uid).
pub fn claimed_by(pv: &Value, pvc: &Value) -> bool {
    let uid = meta::uid(pvc).unwrap_or_default();
    !uid.is_empty() && str_at(pv, "/spec/claimRef/uid") == uid
}

/// A claim reference to `pvc`.
pub fn claim_ref(pvc: &Value) -> Value {
    json!({
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "namespace": meta::namespace(pvc).unwrap_or("default"),
        "name": meta::name(pvc).unwrap_or_default(),
        "uid": meta::uid(pvc).unwrap_or_default(),
    })
}

/// The name of the volume provisioned for `pvc`.
pub fn provisioned_name(pvc: &Value) -> String {
    format!("pvc-{}", meta::uid(pvc).unwrap_or_default())
}

/// Where the local-path provisioner keeps `pvc`'s data under `root`.
pub fn local_path(root: &str, pvc: &Value) -> String {
    format!(
        "{}/{}_{}_{}",
        root.trim_end_matches('/'),
        provisioned_name(pvc),
        meta::namespace(pvc).unwrap_or("default"),
        meta::name(pvc).unwrap_or_default()
    )
}

/// The volume the local-path provisioner makes for `pvc` on `node`
/// (whose agent keeps volumes under `root`).
pub fn local_path_volume(pvc: &Value, class: &Value, node: &str, root: &str) -> Value {
    let storage = pvc
        .pointer("/spec/resources/requests/storage")
        .cloned()
        .unwrap_or(json!("0"));
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": provisioned_name(pvc),
            "annotations": {PROVISIONED_BY_ANNOTATION: LOCAL_PATH_PROVISIONER}},
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": pvc.pointer("/spec/accessModes").cloned().unwrap_or(json!(["ReadWriteOnce"])),
            "persistentVolumeReclaimPolicy": class.get("reclaimPolicy").cloned().unwrap_or(json!("Delete")),
            "storageClassName": meta::name(class).unwrap_or(LOCAL_PATH_CLASS),
            "volumeMode": "Filesystem",
            "hostPath": {"path": local_path(root, pvc), "type": "DirectoryOrCreate"},
            "claimRef": claim_ref(pvc),
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}},
        },
    })
}

/// Whether a pod on `node` can use `pv` (its node affinity allows it).
pub fn usable_from(pv: &Value, node: &Value) -> bool {
    match pv
        .pointer("/spec/nodeAffinity/required/nodeSelectorTerms")
        .and_then(Value::as_array)
    {
        None => true,
        Some(terms) => terms
            .iter()
            .any(|t| crate::placement::term_matches(t, node)),
    }
}

/// The path on its node where `pv`'s data is.
pub fn volume_path(pv: &Value) -> Option<&str> {
    pv.pointer("/spec/hostPath/path")
        .or_else(|| pv.pointer("/spec/local/path"))
        .and_then(Value::as_str)
}

/// The claims a pod's volumes name.
pub fn pod_claims(pod: &Value) -> Vec<&str> {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| {
            v.pointer("/persistentVolumeClaim/claimName")
                .and_then(Value::as_str)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pvc(size: &str, modes: Value) -> Value {
        json!({"metadata": {"name": "www-web-0", "namespace": "default", "uid": "c-uid"},
            "spec": {"accessModes": modes, "resources": {"requests": {"storage": size}}}})
    }

    fn pv(size: &str, class: &str, modes: Value) -> Value {
        json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": size},
            "storageClassName": class, "accessModes": modes, "hostPath": {"path": "/x"}},
            "status": {"phase": "Available"}})
    }

    #[test]
    fn volumes_fit_claims() {
        let rwo = json!(["ReadWriteOnce"]);
        let c = pvc("1Gi", rwo.clone());
        let table = [
            (pv("1Gi", "fast", rwo.clone()), "fast", true),
            (pv("2Gi", "fast", rwo.clone()), "fast", true),
            (pv("500Mi", "fast", rwo.clone()), "fast", false),
            (pv("1Gi", "slow", rwo.clone()), "fast", false),
            (pv("1Gi", "fast", json!(["ReadOnlyMany"])), "fast", false),
            (
                pv("1Gi", "fast", json!(["ReadWriteOnce", "ReadOnlyMany"])),
                "fast",
                true,
            ),
        ];
        for (v, class, want) in table {
            assert_eq!(fits(&v, &c, class), want, "{v}");
        }
        let mut claimed = pv("1Gi", "fast", rwo.clone());
        claimed["spec"]["claimRef"] = json!({"name": "other", "namespace": "default", "uid": "o"});
        assert!(!fits(&claimed, &c, "fast"));
        claimed["spec"]["claimRef"] = claim_ref(&c);
        assert!(
            fits(&claimed, &c, "other-class"),
            "a pre-bound volume fits its claim"
        );
    }

    #[test]
    fn local_path_volumes_live_on_their_node() {
        let c = pvc("1Gi", json!(["ReadWriteOnce"]));
        let v = local_path_volume(&c, &local_path_class(), "n1", "/var/lib/kubus/storage/");
        assert_eq!(
            volume_path(&v),
            Some("/var/lib/kubus/storage/pvc-c-uid_default_www-web-0")
        );
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert!(claimed_by(&v, &c));
        let node =
            |n: &str| json!({"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}});
        assert!(usable_from(&v, &node("n1")));
        assert!(!usable_from(&v, &node("n2")));
        let classes = [local_path_class()];
        let refs: Vec<&Value> = classes.iter().collect();
        assert_eq!(
            default_class(&refs).and_then(|c| meta::name(c)),
            Some(LOCAL_PATH_CLASS)
        );
    }
}
