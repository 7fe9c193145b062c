//! Nodes, as kubectl describes them: conditions, addresses, capacity,
//! system info, and the pods on the node with their requests and limits.

use kubus_api::meta;
use serde_json::Value;

use super::{annotations_multiline, labels_multiline, list, s, string_map, Writer};
use crate::print::{self, rfc1123z};

pub(super) fn node(w: &mut Writer, node: &Value, pods: &[Value], now: jiff::Timestamp) {
    w.write(
        0,
        &format!("Name:\t{}\n", meta::name(node).unwrap_or_default()),
    );
    let mut roles: Vec<String> = meta::labels(node)
        .keys()
        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    roles.sort();
    w.write(
        0,
        &format!(
            "Roles:\t{}\n",
            if roles.is_empty() {
                "<none>".to_string()
            } else {
                roles.join(",")
            }
        ),
    );
    labels_multiline(w, "Labels", &meta::labels(node));
    annotations_multiline(w, "Annotations", &meta::annotations(node));
    w.write(
        0,
        &format!(
            "CreationTimestamp:\t{}\n",
            rfc1123z(meta::meta_str(node, "creationTimestamp").unwrap_or_default())
        ),
    );
    let taints = list(node, "/spec/taints");
    w.write(0, "Taints:\t");
    if taints.is_empty() {
        w.write(0, "<none>\n");
    }
    for (i, t) in taints.iter().enumerate() {
        if i > 0 {
            w.write(0, "\t");
        }
        let value = match s(t, "/value") {
            "" => String::new(),
            v => format!("={v}"),
        };
        w.write(0, &format!("{}{value}:{}\n", s(t, "/key"), s(t, "/effect")));
    }
    w.write(
        0,
        &format!(
            "Unschedulable:\t{}\n",
            node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true)
        ),
    );
    let conditions = list(node, "/status/conditions");
    if !conditions.is_empty() {
        w.write(
            0,
            "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n",
        );
        w.write(
            1,
            "----\t------\t-----------------\t------------------\t------\t-------\n",
        );
        for c in conditions {
            w.write(
                1,
                &format!(
                    "{} \t{} \t{} \t{} \t{} \t{}\n",
                    s(c, "/type"),
                    s(c, "/status"),
                    rfc1123z(s(c, "/lastHeartbeatTime")),
                    rfc1123z(s(c, "/lastTransitionTime")),
                    s(c, "/reason"),
                    s(c, "/message")
                ),
            );
        }
    }
    w.write(0, "Addresses:\n");
    for a in list(node, "/status/addresses") {
        w.write(1, &format!("{}:\t{}\n", s(a, "/type"), s(a, "/address")));
    }
    for (field, title) in [
        ("/status/capacity", "Capacity"),
        ("/status/allocatable", "Allocatable"),
    ] {
        let r = string_map(node.pointer(field));
        if !r.is_empty() {
            w.write(0, &format!("{title}:\n"));
            for (k, v) in r {
                w.write(0, &format!("  {k}:\t{v}\n"));
            }
        }
    }
    w.write(0, "System Info:\n");
    for (field, title) in [
        ("machineID", "Machine ID"),
        ("systemUUID", "System UUID"),
        ("bootID", "Boot ID"),
        ("kernelVersion", "Kernel Version"),
        ("osImage", "OS Image"),
        ("operatingSystem", "Operating System"),
        ("architecture", "Architecture"),
        ("containerRuntimeVersion", "Container Runtime Version"),
        ("kubeletVersion", "Kubelet Version"),
    ] {
        w.write(
            0,
            &format!(
                "  {title}:\t{}\n",
                s(node, &format!("/status/nodeInfo/{field}"))
            ),
        );
    }
    if !s(node, "/spec/podCIDR").is_empty() {
        w.write(0, &format!("PodCIDR:\t{}\n", s(node, "/spec/podCIDR")));
    }
    let name = meta::name(node).unwrap_or_default();
    let on_node: Vec<&Value> = pods
        .iter()
        .filter(|p| s(p, "/spec/nodeName") == name && !kubus_api::pod::is_finished(p))
        .collect();
    let allocatable = |r: &str, as_cpu: bool| -> i64 {
        let text = s(node, &format!("/status/allocatable/{r}"));
        let text = if text.is_empty() {
            s(node, &format!("/status/capacity/{r}"))
        } else {
            text
        };
        quantity(text, as_cpu)
    };
    let (cpu_alloc, mem_alloc) = (allocatable("cpu", true), allocatable("memory", false));
    let percent = |x: i64, of: i64| if of > 0 { x * 100 / of } else { 0 };
    w.write(
        0,
        &format!("Non-terminated Pods:\t({} in total)\n", on_node.len()),
    );
    w.write(
        1,
        "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n",
    );
    w.write(
        1,
        "---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n",
    );
    let mut totals = [0i64; 4];
    for p in &on_node {
        let sums = [
            pod_resource(p, "requests", "cpu"),
            pod_resource(p, "limits", "cpu"),
            pod_resource(p, "requests", "memory"),
            pod_resource(p, "limits", "memory"),
        ];
        for (t, x) in totals.iter_mut().zip(sums) {
            *t += x;
        }
        w.write(
            1,
            &format!(
                "{}\t{}\t\t{} ({}%)\t{} ({}%)\t{} ({}%)\t{} ({}%)\t{}\n",
                meta::namespace(p).unwrap_or_default(),
                meta::name(p).unwrap_or_default(),
                millis_text(sums[0]),
                percent(sums[0], cpu_alloc),
                millis_text(sums[1]),
                percent(sums[1], cpu_alloc),
                bytes_text(sums[2]),
                percent(sums[2], mem_alloc),
                bytes_text(sums[3]),
                percent(sums[3], mem_alloc),
                print::age(meta::meta_str(p, "creationTimestamp"), now)
            ),
        );
    }
    w.write(
        0,
        "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n",
    );
    w.write(1, "Resource\tRequests\tLimits\n");
    w.write(1, "--------\t--------\t------\n");
    w.write(
        1,
        &format!(
            "cpu\t{} ({}%)\t{} ({}%)\n",
            millis_text(totals[0]),
            percent(totals[0], cpu_alloc),
            millis_text(totals[1]),
            percent(totals[1], cpu_alloc)
        ),
    );
    w.write(
        1,
        &format!(
            "memory\t{} ({}%)\t{} ({}%)\n",
            bytes_text(totals[2]),
            percent(totals[2], mem_alloc),
            bytes_text(totals[3]),
            percent(totals[3], mem_alloc)
        ),
    );
}

/// A quantity in millicores (cpu) or bytes; 0 when absent or unreadable.
fn quantity(text: &str, as_cpu: bool) -> i64 {
    if text.is_empty() {
        return 0;
    }
    let parsed = if as_cpu {
        kubus_api::quantity::cpu_millis(text)
    } else {
        kubus_api::quantity::memory_bytes(text)
    };
    parsed.unwrap_or(0)
}

/// The sum over a pod's containers of one resource's requests or limits
/// (millicores for cpu, bytes for memory).
fn pod_resource(p: &Value, which: &str, resource: &str) -> i64 {
    list(p, "/spec/containers")
        .iter()
        .map(|c| {
            quantity(
                s(c, &format!("/resources/{which}/{resource}")),
                resource == "cpu",
            )
        })
        .sum()
}

fn millis_text(m: i64) -> String {
    if m % 1000 == 0 {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    }
}

fn bytes_text(b: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (1 << 40, "Ti"),
        (1 << 30, "Gi"),
        (1 << 20, "Mi"),
        (1 << 10, "Ki"),
    ];
    for (size, unit) in UNITS {
        if b != 0 && b % size == 0 {
            return format!("{}{unit}", b / size);
        }
    }
    b.to_string()
}
