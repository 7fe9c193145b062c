//! Deployments, ReplicaSets and ReplicationControllers, as kubectl
//! describes them: replicas, strategy, pod template, conditions, and a
//! Deployment's old and new ReplicaSets.

use kubus_api::meta;
use serde_json::Value;

use super::pod::pod_template;
use super::{
    annotations_multiline, controlled_by, header, labels_multiline, list, n, s, scalar, string_map,
    Writer,
};
use crate::print::{self, rfc1123z};

/// A label selector as kubectl prints it: `app=web,tier in (a,b)`.
pub(super) fn selector_text(sel: &Value) -> String {
    let mut parts: Vec<String> = string_map(sel.get("matchLabels"))
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in list(sel, "/matchExpressions") {
        let values: Vec<String> = list(e, "/values").iter().map(scalar).collect();
        let key = s(e, "/key");
        parts.push(match s(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            op => format!("{key} {op} ({})", values.join(",")),
        });
    }
    parts.sort();
    parts.join(",")
}

/// Whether two pod templates are the same but for the pod-template-hash
/// label (kubectl's `EqualIgnoreHash`).
pub fn same_template(a: &Value, b: &Value) -> bool {
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(labels) = t
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        t
    };
    strip(a) == strip(b)
}

/// The label a Deployment's ReplicaSets and pods carry their template's
/// hash in.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

pub(super) fn deployment(w: &mut Writer, d: &Value, sets: &[Value]) {
    header(w, d);
    w.write(
        0,
        &format!(
            "CreationTimestamp:\t{}\n",
            rfc1123z(meta::meta_str(d, "creationTimestamp").unwrap_or_default())
        ),
    );
    labels_multiline(w, "Labels", &meta::labels(d));
    annotations_multiline(w, "Annotations", &meta::annotations(d));
    w.write(
        0,
        &format!(
            "Selector:\t{}\n",
            selector_text(d.pointer("/spec/selector").unwrap_or(&Value::Null))
        ),
    );
    let desired = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    w.write(
        0,
        &format!(
            "Replicas:\t{desired} desired | {} updated | {} total | {} available | {} unavailable\n",
            n(d, "/status/updatedReplicas"),
            n(d, "/status/replicas"),
            n(d, "/status/availableReplicas"),
            n(d, "/status/unavailableReplicas")
        ),
    );
    w.write(
        0,
        &format!("StrategyType:\t{}\n", s(d, "/spec/strategy/type")),
    );
    w.write(
        0,
        &format!("MinReadySeconds:\t{}\n", n(d, "/spec/minReadySeconds")),
    );
    if let Some(ru) = d
        .pointer("/spec/strategy/rollingUpdate")
        .filter(|r| r.is_object())
    {
        let v = |f: &str| ru.get(f).map(scalar).unwrap_or_default();
        w.write(
            0,
            &format!(
                "RollingUpdateStrategy:\t{} max unavailable, {} max surge\n",
                v("maxUnavailable"),
                v("maxSurge")
            ),
        );
    }
    let template = d.pointer("/spec/template").unwrap_or(&Value::Null);
    pod_template(w, template);
    let conditions = list(d, "/status/conditions");
    if !conditions.is_empty() {
        w.write(0, "Conditions:\n  Type\tStatus\tReason\n");
        w.write(1, "----\t------\t------\n");
        for c in conditions {
            w.write(
                1,
                &format!(
                    "{} \t{}\t{}\n",
                    s(c, "/type"),
                    s(c, "/status"),
                    s(c, "/reason")
                ),
            );
        }
    }
    let uid = meta::uid(d).unwrap_or_default();
    let mut owned: Vec<&Value> = sets
        .iter()
        .filter(|rs| !uid.is_empty() && meta::controller_uid(rs) == Some(uid))
        .collect();
    owned.sort_by_key(|rs| {
        meta::meta_str(rs, "creationTimestamp")
            .unwrap_or_default()
            .to_string()
    });
    let (new, old): (Vec<&Value>, Vec<&Value>) = owned.into_iter().partition(|rs| {
        same_template(
            rs.pointer("/spec/template").unwrap_or(&Value::Null),
            template,
        )
    });
    if !new.is_empty() || !old.is_empty() {
        let text = |sets: &[&Value]| {
            let parts: Vec<String> = sets
                .iter()
                .map(|rs| {
                    format!(
                        "{} ({}/{} replicas created)",
                        meta::name(rs).unwrap_or_default(),
                        n(rs, "/status/replicas"),
                        n(rs, "/spec/replicas")
                    )
                })
                .collect();
            if parts.is_empty() {
                "<none>".to_string()
            } else {
                parts.join(", ")
            }
        };
        w.write(0, &format!("OldReplicaSets:\t{}\n", text(&old)));
        w.write(
            0,
            &format!("NewReplicaSet:\t{}\n", text(&new[..new.len().min(1)])),
        );
    }
}

pub(super) fn replica_set(w: &mut Writer, rs: &Value, pods: &[Value]) {
    header(w, rs);
    let selector = match rs.pointer("/spec/selector") {
        // a ReplicationController's selector is a plain map
        Some(sel) if sel.get("matchLabels").is_none() && sel.get("matchExpressions").is_none() => {
            print::format_labels(Some(sel))
        }
        Some(sel) => selector_text(sel),
        None => String::new(),
    };
    w.write(0, &format!("Selector:\t{selector}\n"));
    labels_multiline(w, "Labels", &meta::labels(rs));
    annotations_multiline(w, "Annotations", &meta::annotations(rs));
    if let Some(owner) = controlled_by(rs) {
        w.write(0, &format!("Controlled By:\t{owner}\n"));
    }
    w.write(
        0,
        &format!(
            "Replicas:\t{} current / {} desired\n",
            n(rs, "/status/replicas"),
            rs.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        ),
    );
    let uid = meta::uid(rs).unwrap_or_default();
    let mut counts = [0; 4];
    for p in pods
        .iter()
        .filter(|p| !uid.is_empty() && meta::controller_uid(p) == Some(uid))
    {
        match s(p, "/status/phase") {
            "Running" => counts[0] += 1,
            "Succeeded" => counts[2] += 1,
            "Failed" => counts[3] += 1,
            _ => counts[1] += 1,
        }
    }
    w.write(
        0,
        &format!(
            "Pods Status:\t{} Running / {} Waiting / {} Succeeded / {} Failed\n",
            counts[0], counts[1], counts[2], counts[3]
        ),
    );
    pod_template(w, rs.pointer("/spec/template").unwrap_or(&Value::Null));
    let conditions = list(rs, "/status/conditions");
    if !conditions.is_empty() {
        w.write(0, "Conditions:\n  Type\tStatus\tReason\n");
        w.write(1, "----\t------\t------\n");
        for c in conditions {
            w.write(
                1,
                &format!(
                    "{} \t{}\t{}\n",
                    s(c, "/type"),
                    s(c, "/status"),
                    s(c, "/reason")
                ),
            );
        }
    }
}
