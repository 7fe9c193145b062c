//! Namespaces, ConfigMaps and Secrets (sizes only, never values), and
//! kubectl's generic describer for every other kind: each field, by name.

use kubus_api::meta;
use serde_json::Value;

use super::{annotations_multiline, header, labels_multiline, s, scalar, string_map, Writer};
use crate::print::rfc1123z;

pub(super) fn namespace(w: &mut Writer, ns: &Value) {
    w.write(
        0,
        &format!("Name:\t{}\n", meta::name(ns).unwrap_or_default()),
    );
    labels_multiline(w, "Labels", &meta::labels(ns));
    annotations_multiline(w, "Annotations", &meta::annotations(ns));
    let phase = match s(ns, "/status/phase") {
        "" => "Active",
        p => p,
    };
    w.write(0, &format!("Status:\t{phase}\n"));
    w.write(0, "\nNo resource quota.\n\nNo LimitRange resource.\n");
}

pub(super) fn config_map(w: &mut Writer, cm: &Value) {
    header(w, cm);
    labels_multiline(w, "Labels", &meta::labels(cm));
    annotations_multiline(w, "Annotations", &meta::annotations(cm));
    w.write(0, "\nData\n====\n");
    for (k, v) in string_map(cm.get("data")) {
        w.write(0, &format!("{k}:\n----\n{v}\n\n"));
    }
    w.write(0, "\nBinaryData\n====\n");
    for (k, v) in string_map(cm.get("binaryData")) {
        let len = decoded_len(&v);
        w.write(0, &format!("{k}: {len} bytes\n"));
    }
    w.write(0, "\n");
}

/// The length of base64 data once decoded.
fn decoded_len(b64: &str) -> usize {
    let body = b64.trim_end_matches('=').len();
    body * 3 / 4
}

pub(super) fn secret(w: &mut Writer, sec: &Value) {
    header(w, sec);
    labels_multiline(w, "Labels", &meta::labels(sec));
    annotations_multiline(w, "Annotations", &meta::annotations(sec));
    w.write(0, &format!("\nType:\t{}\n", s(sec, "/type")));
    w.write(0, "\nData\n====\n");
    for (k, v) in string_map(sec.get("data")) {
        w.write(0, &format!("{k}:\t{} bytes\n", decoded_len(&v)));
    }
}

/// kubectl's generic describer, with the creation time up front: every
/// field but the metadata shown above, by name, nested maps indented.
pub(super) fn generic(w: &mut Writer, obj: &Value) {
    header(w, obj);
    labels_multiline(w, "Labels", &meta::labels(obj));
    annotations_multiline(w, "Annotations", &meta::annotations(obj));
    w.write(
        0,
        &format!(
            "CreationTimestamp:\t{}\n",
            rfc1123z(meta::meta_str(obj, "creationTimestamp").unwrap_or_default())
        ),
    );
    if let Some(m) = obj.as_object() {
        let rest: serde_json::Map<String, Value> = m
            .iter()
            .filter(|(k, _)| k.as_str() != "metadata")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        unstructured(w, 0, &rest);
    }
}

/// kubectl's `printUnstructuredContent`.
fn unstructured(w: &mut Writer, level: usize, content: &serde_json::Map<String, Value>) {
    let mut fields: Vec<&String> = content.keys().collect();
    fields.sort();
    for field in fields {
        let value = &content[field];
        let label = smart_label(field);
        match value {
            Value::Object(m) => {
                w.write(level, &format!("{label}:\n"));
                unstructured(w, level + 1, m);
            }
            Value::Array(items) => {
                w.write(level, &format!("{label}:\n"));
                for item in items {
                    match item {
                        Value::Object(m) => unstructured(w, level + 1, m),
                        other => w.write(level + 1, &format!("{}\n", scalar(other))),
                    }
                }
            }
            other => w.write(level, &format!("{label}:\t{}\n", scalar(other))),
        }
    }
}

/// A field name as kubectl labels it: `creationTimestamp` → `Creation
/// Timestamp`, `apiVersion` → `API Version`, `podIP` → `Pod IP`.
pub fn smart_label(field: &str) -> String {
    if field.chars().any(|c| !c.is_alphabetic() && c != '-') {
        return field.to_string();
    }
    // runs of lower case, upper case and other characters; the last
    // capital of a capital run starts the lower-case run after it
    let class = |c: char| {
        if c.is_lowercase() {
            0
        } else if c.is_uppercase() {
            1
        } else {
            2
        }
    };
    let mut runs: Vec<(u8, String)> = Vec::new();
    for c in field.chars() {
        let k = class(c);
        match runs.last_mut() {
            Some((last, text)) if *last == k => text.push(c),
            _ => runs.push((k, c.to_string())),
        }
    }
    for i in 0..runs.len().saturating_sub(1) {
        if runs[i].0 == 1 && runs[i + 1].0 == 0 {
            if let Some(c) = runs[i].1.pop() {
                runs[i + 1].1.insert(0, c);
            }
        }
    }
    let parts: Vec<String> = runs
        .into_iter()
        .map(|(_, t)| t)
        .filter(|t| !t.is_empty())
        .collect();
    let mut merged: Vec<String> = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let part = &parts[i];
        let all_upper = part.chars().all(|c| !c.is_alphabetic() || c.is_uppercase());
        if let Some(next) = parts.get(i + 1) {
            if part.chars().count() >= 2
                && all_upper
                && next.chars().next().is_some_and(char::is_uppercase)
            {
                merged.push(format!("{part}{next}"));
                i += 2;
                continue;
            }
        }
        merged.push(part.clone());
        i += 1;
    }
    merged
        .into_iter()
        .filter(|p| p != "_")
        .map(|p| {
            if ["API", "URL", "UID", "GUID"].contains(&p.to_uppercase().as_str()) {
                p.to_uppercase()
            } else if p.to_lowercase() == p {
                let mut chars = p.chars();
                chars
                    .next()
                    .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
                    .unwrap_or_default()
            } else {
                p
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
