//! `kubus get` tables, with kubectl's columns.

use kubus_api::{meta, Kind};
use serde_json::Value;

/// A duration as kubectl shows ages: 45s, 3m, 5h, 2d.
pub fn age(created: Option<&str>, now: jiff::Timestamp) -> String {
    let Some(ts) = created.and_then(|c| c.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = now.as_second().saturating_sub(ts.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn n(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The STATUS column of a pod, as kubectl words it.
pub fn pod_status(pod: &Value) -> String {
    if kubus_api::pod::is_terminating(pod) {
        return "Terminating".into();
    }
    let mut reason = s(pod, "/status/phase").to_string();
    if reason.is_empty() {
        reason = "Pending".into();
    }
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    for c in statuses.into_iter().flatten() {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
            if r != "ContainerCreating" || reason == "Pending" {
                reason = r.to_string();
            }
        } else if let Some(r) = c
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            reason = r.to_string();
        }
    }
    reason
}

fn pod_row(pod: &Value, wide: bool) -> Vec<String> {
    let statuses: Vec<&Value> = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let total = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses
        .iter()
        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let restarts: i64 = statuses.iter().map(|c| n(c, "/restartCount")).sum();
    let mut row = vec![
        meta::name(pod).unwrap_or_default().to_string(),
        format!("{ready}/{total}"),
        pod_status(pod),
        restarts.to_string(),
    ];
    if wide {
        row.push(String::new()); // AGE placeholder, filled by the caller
        let ip = s(pod, "/status/podIP");
        row.push(if ip.is_empty() {
            "<none>".into()
        } else {
            ip.into()
        });
        let node = s(pod, "/spec/nodeName");
        row.push(if node.is_empty() {
            "<none>".into()
        } else {
            node.into()
        });
    }
    row
}

fn columns(kind: Kind, wide: bool) -> Vec<&'static str> {
    match kind {
        Kind::Pod if wide => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"],
        Kind::Pod => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        Kind::Deployment => vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        Kind::ReplicaSet => vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        Kind::Node => vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        Kind::Service => {
            let mut c = vec![
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ];
            if wide {
                c.push("SELECTOR");
            }
            c
        }
        Kind::Endpoints => vec!["NAME", "ENDPOINTS", "AGE"],
        Kind::EndpointSlice => vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
        Kind::Namespace => vec!["NAME", "STATUS", "AGE"],
        Kind::ConfigMap => vec!["NAME", "DATA", "AGE"],
        Kind::Secret => vec!["NAME", "TYPE", "DATA", "AGE"],
        Kind::Event => vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        Kind::Lease => vec!["NAME", "HOLDER", "AGE"],
    }
}

fn row(kind: Kind, v: &Value, wide: bool, age: String) -> Vec<String> {
    let name = meta::name(v).unwrap_or_default().to_string();
    let count = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_object)
            .map_or(0, |m| m.len())
    };
    match kind {
        Kind::Pod => {
            let mut r = pod_row(v, wide);
            if wide {
                r[4] = age;
            } else {
                r.push(age);
            }
            r
        }
        Kind::Deployment => vec![
            name,
            format!(
                "{}/{}",
                n(v, "/status/readyReplicas"),
                n(v, "/spec/replicas")
            ),
            n(v, "/status/updatedReplicas").to_string(),
            n(v, "/status/availableReplicas").to_string(),
            age,
        ],
        Kind::ReplicaSet => vec![
            name,
            n(v, "/spec/replicas").to_string(),
            n(v, "/status/replicas").to_string(),
            n(v, "/status/readyReplicas").to_string(),
            age,
        ],
        Kind::Node => {
            let ready = v
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
            let mut status = if ready { "Ready" } else { "NotReady" }.to_string();
            if v.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            vec![
                name,
                status,
                "<none>".into(),
                age,
                s(v, "/status/nodeInfo/kubeletVersion").into(),
            ]
        }
        Kind::Service => {
            let ports: Vec<String> = v
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                            match n(p, "/nodePort") {
                                0 => format!("{}/{proto}", n(p, "/port")),
                                np => format!("{}:{np}/{proto}", n(p, "/port")),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let or_none = |x: String| {
                if x.is_empty() {
                    "<none>".to_string()
                } else {
                    x
                }
            };
            let mut r = vec![
                name,
                s(v, "/spec/type").into(),
                or_none(s(v, "/spec/clusterIP").into()),
                external_ip(v),
                or_none(ports.join(",")),
                age,
            ];
            if wide {
                let selector = v
                    .pointer("/spec/selector")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default()))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default();
                r.push(or_none(selector));
            }
            r
        }
        Kind::Endpoints => {
            let mut all = Vec::new();
            for subset in v
                .pointer("/subsets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let ports: Vec<i64> = subset["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| n(p, "/port"))
                    .collect();
                for a in subset["addresses"].as_array().into_iter().flatten() {
                    let ip = s(a, "/ip");
                    if ports.is_empty() {
                        all.push(ip.to_string());
                    }
                    all.extend(ports.iter().map(|p| format!("{ip}:{p}")));
                }
            }
            vec![name, first_three(&all), age]
        }
        Kind::EndpointSlice => {
            let ports: Vec<String> = v
                .pointer("/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| n(p, "/port").to_string())
                .collect();
            let addresses: Vec<String> = v
                .pointer("/endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            vec![
                name,
                s(v, "/addressType").into(),
                if ports.is_empty() {
                    "<unset>".into()
                } else {
                    ports.join(",")
                },
                first_three(&addresses),
                age,
            ]
        }
        Kind::Namespace => vec![name, "Active".into(), age],
        Kind::ConfigMap => vec![
            name,
            (count("/data") + count("/binaryData")).to_string(),
            age,
        ],
        Kind::Secret => vec![name, s(v, "/type").into(), count("/data").to_string(), age],
        Kind::Event => vec![
            age,
            s(v, "/type").into(),
            s(v, "/reason").into(),
            format!(
                "{}/{}",
                s(v, "/involvedObject/kind").to_ascii_lowercase(),
                s(v, "/involvedObject/name")
            ),
            s(v, "/message").into(),
        ],
        Kind::Lease => vec![name, s(v, "/spec/holderIdentity").into(), age],
    }
}

/// kubectl's EXTERNAL-IP of a Service: the load balancer's addresses (or
/// `<pending>`), an ExternalName's name, `externalIPs`, else `<none>`.
fn external_ip(v: &Value) -> String {
    let list = |p: &str, field: Option<&str>| -> Vec<String> {
        v.pointer(p)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| match field {
                Some(f) => x.get(f).and_then(Value::as_str).map(str::to_string),
                None => x.as_str().map(str::to_string),
            })
            .collect()
    };
    let mut ips = list("/spec/externalIPs", None);
    match s(v, "/spec/type") {
        "ExternalName" => return s(v, "/spec/externalName").to_string(),
        "LoadBalancer" => {
            ips.extend(list("/status/loadBalancer/ingress", Some("ip")));
            if ips.is_empty() {
                return "<pending>".into();
            }
        }
        _ => {}
    }
    if ips.is_empty() {
        "<none>".into()
    } else {
        ips.join(",")
    }
}

/// kubectl's way of listing many addresses in one cell.
fn first_three(all: &[String]) -> String {
    match all.len() {
        0 => "<none>".into(),
        1..=3 => all.join(","),
        n => format!("{} + {} more...", all[..3].join(","), n - 3),
    }
}

/// Render objects as a kubectl-style table.
pub fn table(
    kind: Kind,
    items: &[Value],
    with_namespace: bool,
    wide: bool,
    now: jiff::Timestamp,
) -> String {
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(items.len() + 1);
    let mut header: Vec<String> = columns(kind, wide).into_iter().map(String::from).collect();
    if with_namespace {
        header.insert(0, "NAMESPACE".into());
    }
    rows.push(header);
    for v in items {
        // an Event's age is that of its last occurrence
        let when = match kind {
            Kind::Event => v.get("lastTimestamp").and_then(Value::as_str),
            _ => meta::meta_str(v, "creationTimestamp"),
        };
        let mut r = row(kind, v, wide, age(when, now));
        if with_namespace {
            r.insert(0, meta::namespace(v).unwrap_or_default().to_string());
        }
        rows.push(r);
    }
    columns_text(&rows)
}

/// Rows as kubectl aligns them: each column as wide as its widest cell,
/// three spaces apart, the last column unpadded.
pub fn columns_text(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == r.len() {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages() {
        let now: jiff::Timestamp = "2026-01-02T00:00:00Z".parse().expect("ts");
        assert_eq!(age(Some("2026-01-01T23:59:15Z"), now), "45s");
        assert_eq!(age(Some("2026-01-01T23:00:00Z"), now), "60m");
        assert_eq!(age(Some("2026-01-01T00:00:00Z"), now), "24h");
        assert_eq!(age(None, now), "<unknown>");
    }

    #[test]
    fn pod_table_has_kubectl_columns() {
        let now: jiff::Timestamp = "2026-01-01T00:00:10Z".parse().expect("ts");
        let pod = json!({"metadata": {"name": "web-x", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "containerStatuses": [{"ready": true, "restartCount": 2, "state": {"running": {}}}]}});
        let t = table(Kind::Pod, &[pod], false, false, now);
        assert_eq!(
            t,
            "NAME    READY   STATUS    RESTARTS   AGE\nweb-x   1/1     Running   2          10s\n"
        );
    }

    /// Issue 5: a pod being deleted gracefully shows as kubectl shows it.
    #[test]
    fn terminating_pods_show_in_status() {
        let pod = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:30Z"},
            "status": {"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]}});
        assert_eq!(pod_status(&pod), "Terminating");
    }

    #[test]
    fn crash_loops_show_in_status() {
        let pod = json!({"status": {"phase": "Running", "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(pod_status(&pod), "CrashLoopBackOff");
    }
}
