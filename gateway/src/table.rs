//! `meta.k8s.io/v1` `Table`s — what `kubectl get` asks for — from
//! `kubus_api::print`, the printer `kubus get` uses: the same columns and
//! cells for both. Pure.
//!
//! The columns are the wide ones; those `kubus get` shows only with
//! `-o wide` have priority 1, which kubectl hides without it. kubectl adds
//! NAMESPACE (`-A`) and LABELS (`--show-labels`) itself from each row's
//! object metadata.

use kubus_api::{print, Kind};
use serde_json::{json, Value};

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Include {
    None,
    /// `PartialObjectMetadata`: the object's metadata (the default).
    #[default]
    Metadata,
    Object,
}

impl Include {
    pub fn parse(word: Option<&str>) -> Include {
        match word {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// Whether an `Accept` header asks for a `Table`.
pub fn wanted(accept: &str) -> bool {
    accept.split(',').any(|offer| {
        let params: Vec<&str> = offer.split(';').map(str::trim).collect();
        params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
    })
}

/// The column definitions of `kind`'s table.
pub fn column_definitions(kind: Kind) -> Vec<Value> {
    let narrow = print::columns(kind, false);
    print::columns(kind, true)
        .into_iter()
        .map(|name| {
            json!({
                "name": name,
                "type": "string",
                "format": if name == "NAME" { "name" } else { "" },
                "description": "",
                "priority": if narrow.contains(&name) { 0 } else { 1 },
            })
        })
        .collect()
}

fn row(kind: Kind, obj: &Value, include: Include, now: jiff::Timestamp) -> Value {
    let mut r = json!({ "cells": print::cells(kind, obj, true, now) });
    match include {
        Include::None => {}
        Include::Metadata => {
            r["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
            });
        }
        Include::Object => r["object"] = obj.clone(),
    }
    r
}

/// A table of `items` read at `revision` (`continue_token`: the next
/// page's). `columns`: with its column definitions (a watch sends them on
/// its first event only).
pub fn table(
    kind: Kind,
    items: &[Value],
    (revision, continue_token): (u64, Option<&str>),
    include: Include,
    columns: bool,
    now: jiff::Timestamp,
) -> Value {
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if let Some(c) = continue_token {
        metadata["continue"] = json!(c);
    }
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "rows": items.iter().map(|o| row(kind, o, include, now)).collect::<Vec<_>>(),
    });
    if columns {
        t["columnDefinitions"] = json!(column_definitions(kind));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_header_asks_for_a_table() {
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
    }

    #[test]
    fn a_pod_table_has_kubus_gets_cells_and_hides_wide_columns() {
        let now: jiff::Timestamp = "2026-01-01T00:01:00Z".parse().expect("ts");
        let pod = json!({"metadata": {"name": "web", "namespace": "default",
            "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": "10.88.0.5",
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]}});
        let t = table(
            Kind::Pod,
            std::slice::from_ref(&pod),
            (7, None),
            Include::Metadata,
            true,
            now,
        );
        assert_eq!(t["metadata"]["resourceVersion"], "7");
        let cols: Vec<(&str, u64)> = t["columnDefinitions"]
            .as_array()
            .expect("columns")
            .iter()
            .filter_map(|c| Some((c["name"].as_str()?, c["priority"].as_u64()?)))
            .collect();
        assert_eq!(cols[0], ("NAME", 0));
        assert!(cols.contains(&("STATUS", 0)), "{cols:?}");
        assert!(
            cols.contains(&("IP", 1)) && cols.contains(&("NODE", 1)),
            "{cols:?}"
        );
        let cells = t["rows"][0]["cells"].as_array().expect("cells");
        assert_eq!(cells.len(), cols.len());
        assert_eq!(
            cells
                .iter()
                .map(|c| c.as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>(),
            print::cells(Kind::Pod, &pod, true, now)
        );
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "web");
        let t = table(
            Kind::Pod,
            &[pod],
            (7, Some("7:x")),
            Include::None,
            false,
            now,
        );
        assert!(t.get("columnDefinitions").is_none() && t["rows"][0].get("object").is_none());
        assert_eq!(t["metadata"]["continue"], "7:x");
    }
}
