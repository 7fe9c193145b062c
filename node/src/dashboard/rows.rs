//! What the dashboard shows of an object: a [`Row`] — kubectl's cells for
//! its kind (from [`kubus_api::print`], the one printer) and the few facts
//! the page needs beyond them: who owns it, why it is not well, how far a
//! rollout has come, where a pod runs and what it asks for, what a node
//! can give, which addresses back a Service. Pure: an object in, a row out.

use kubus_actors::scheduler::pod_requests;
use kubus_api::print::{self, pod_summary};
use kubus_api::{meta, pod, quantity, Kind};
use serde::Serialize;
use serde_json::Value;

/// The kinds the dashboard watches, in the order its pages list them.
/// Secrets are not among them: the dashboard's identity cannot read them.
pub const KINDS: &[Kind] = &[
    Kind::Node,
    Kind::Namespace,
    Kind::Deployment,
    Kind::StatefulSet,
    Kind::DaemonSet,
    Kind::ReplicaSet,
    Kind::Job,
    Kind::CronJob,
    Kind::HorizontalPodAutoscaler,
    Kind::Pod,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::PersistentVolumeClaim,
    Kind::Event,
];

/// One object as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// The kind's name (`Pod`).
    pub kind: &'static str,
    /// Empty for a cluster-scoped object.
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The store revision of the object's last change.
    pub revision: u64,
    /// The time its AGE counts from (an Event's: its last occurrence).
    pub since: String,
    /// kubectl's wide columns for the kind ([`columns`]), AGE as printed
    /// when the row was made (the page counts it on from `since`).
    pub cells: Vec<String>,
    /// Its controller, `Kind/name`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub owner: String,
    /// Why it is not well, in a sentence (a Pending pod: the scheduler's
    /// reason; a waiting container: its reason and message; a node: its
    /// failing conditions).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub why: String,
    /// A workload's ready replicas of those wanted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<[i64; 2]>,
    /// Being deleted (`metadata.deletionTimestamp` is set).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub terminating: bool,
    /// A pod's node; an EndpointSlice's Service; an Event's object
    /// (`Kind/namespace/name`).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub refers: String,
    /// A pod's requests (while it may run) or a node's allocatable: CPU in
    /// millicores and memory in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<[i64; 2]>,
    /// An EndpointSlice's endpoints (`ip:port`, ` (not ready)` when not).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// A pod's or a node's health for the page's colours: `ok`, `warn`
    /// (pending, not ready, restarting) or `bad` (failed, crashing).
    pub health: &'static str,
}

/// The columns of [`Row::cells`] for `kind`.
pub fn columns(kind: Kind) -> Vec<&'static str> {
    print::columns(kind, true)
}

/// The row of `object` (of `kind`) at `now`.
pub fn row(kind: Kind, object: &Value, now: jiff::Timestamp) -> Row {
    let since = match kind {
        Kind::Event => event_time(object),
        _ => meta::meta_str(object, "creationTimestamp").unwrap_or_default(),
    };
    let mut r = Row {
        kind: kind.as_str(),
        namespace: meta::namespace(object).unwrap_or_default().to_string(),
        name: meta::name(object).unwrap_or_default().to_string(),
        uid: meta::uid(object).unwrap_or_default().to_string(),
        revision: meta::resource_version(object).unwrap_or(0),
        since: since.to_string(),
        cells: print::cells(kind, object, true, now),
        owner: owner(object),
        why: String::new(),
        progress: None,
        terminating: pod::is_terminating(object),
        refers: String::new(),
        resources: None,
        endpoints: Vec::new(),
        health: "ok",
    };
    match kind {
        Kind::Pod => pod_facts(object, &mut r),
        Kind::Node => node_facts(object, &mut r),
        Kind::Deployment | Kind::StatefulSet | Kind::ReplicaSet => {
            let wanted = meta::int_at(object, "/spec/replicas").unwrap_or(1);
            let ready = meta::int_at(object, "/status/readyReplicas").unwrap_or(0);
            r.progress = Some([ready, wanted]);
            r.why = failing_condition(object, "Progressing")
                .or_else(|| failing_condition(object, "ReplicaFailure"))
                .unwrap_or_default();
            r.health = if ready < wanted { "warn" } else { "ok" };
        }
        Kind::DaemonSet => {
            let wanted = meta::int_at(object, "/status/desiredNumberScheduled").unwrap_or(0);
            let ready = meta::int_at(object, "/status/numberReady").unwrap_or(0);
            r.progress = Some([ready, wanted]);
            r.health = if ready < wanted { "warn" } else { "ok" };
        }
        Kind::Job => {
            let wanted = meta::int_at(object, "/spec/completions").unwrap_or(1);
            let done = meta::int_at(object, "/status/succeeded").unwrap_or(0);
            r.progress = Some([done, wanted]);
            if let Some(why) = true_condition(object, "Failed") {
                r.why = why;
                r.health = "bad";
            }
        }
        Kind::EndpointSlice => {
            r.refers = print::s(object, "/metadata/labels/kubernetes.io~1service-name").to_string();
            r.endpoints = slice_endpoints(object);
        }
        Kind::Event => {
            let o = &object["involvedObject"];
            r.refers = format!(
                "{}/{}/{}",
                print::s(o, "/kind"),
                print::s(o, "/namespace"),
                print::s(o, "/name")
            );
            if print::s(object, "/type") == "Warning" {
                r.health = "warn";
            }
        }
        _ => {}
    }
    r
}

/// An Event's last occurrence: `lastTimestamp`, else `eventTime`, else
/// its creation.
fn event_time(e: &Value) -> &str {
    [
        "/lastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .map(|p| print::s(e, p))
    .find(|t| !t.is_empty())
    .unwrap_or_default()
}

/// `Kind/name` of the controller owner reference, if any.
fn owner(object: &Value) -> String {
    print::list(object, "/metadata/ownerReferences")
        .iter()
        .find(|r| r["controller"] == true)
        .map(|r| format!("{}/{}", print::s(r, "/kind"), print::s(r, "/name")))
        .unwrap_or_default()
}

/// `reason: message` of condition `kind` when its status is not True.
fn failing_condition(object: &Value, kind: &str) -> Option<String> {
    let c = pod::condition(object, kind)?;
    (c["status"] == "False").then(|| reason_message(c))
}

/// `reason: message` of condition `kind` when its status is True.
fn true_condition(object: &Value, kind: &str) -> Option<String> {
    let c = pod::condition(object, kind)?;
    (c["status"] == "True").then(|| reason_message(c))
}

fn reason_message(v: &Value) -> String {
    match (print::s(v, "/reason"), print::s(v, "/message")) {
        ("", m) => m.to_string(),
        (r, "") => r.to_string(),
        (r, m) => format!("{r}: {m}"),
    }
}

fn pod_facts(p: &Value, r: &mut Row) {
    let summary = pod_summary(p);
    r.refers = print::s(p, "/spec/nodeName").to_string();
    if !pod::is_finished(p) {
        let req = pod_requests(p);
        r.resources = Some([req.cpu_millis, req.memory_bytes]);
    }
    let phase = print::s(p, "/status/phase");
    // why, in the order a person asks: not placed, not started, not
    // ready, failed
    r.why = failing_condition(p, "PodScheduled")
        .or_else(|| waiting_container(p))
        .or_else(|| (phase == "Failed").then(|| reason_message(&p["status"])))
        .unwrap_or_default();
    r.health = match summary.status.as_str() {
        "Running" | "Completed" | "Succeeded" if summary.ready == summary.total => "ok",
        "Completed" | "Succeeded" => "ok",
        "Error" | "Failed" | "CrashLoopBackOff" | "ImagePullBackOff" | "ErrImagePull"
        | "OOMKilled" | "Unknown" => "bad",
        s if s.starts_with("Init:") && s != "Init:0/1" && s.contains("Back") => "bad",
        _ => "warn",
    };
}

/// The first container waiting for a reason other than being created:
/// `container: reason: message`.
fn waiting_container(p: &Value) -> Option<String> {
    ["/status/initContainerStatuses", "/status/containerStatuses"]
        .iter()
        .flat_map(|at| print::list(p, at))
        .find_map(|c| {
            let w = c.pointer("/state/waiting")?;
            let reason = print::s(w, "/reason");
            (!reason.is_empty() && reason != "ContainerCreating" && reason != "PodInitializing")
                .then(|| format!("{}: {}", print::s(c, "/name"), reason_message(w)))
        })
}

fn node_facts(n: &Value, r: &mut Row) {
    let cpu = quantity::cpu_millis(print::s(n, "/status/allocatable/cpu")).unwrap_or(0);
    let mem = quantity::memory_bytes(print::s(n, "/status/allocatable/memory")).unwrap_or(0);
    r.resources = Some([cpu, mem]);
    let conditions = print::list(n, "/status/conditions");
    let mut failing: Vec<String> = conditions
        .iter()
        .filter(|c| {
            // Ready should be True; every pressure condition False
            (c["type"] == "Ready") != (c["status"] == "True")
        })
        .map(|c| {
            format!(
                "{} is {}: {}",
                print::s(c, "/type"),
                print::s(c, "/status"),
                reason_message(c)
            )
        })
        .collect();
    if conditions.is_empty() {
        failing.push("no conditions reported yet".into());
    }
    if n.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        failing.push("cordoned: new pods are not placed here".into());
    }
    let ready = pod::condition(n, "Ready").is_some_and(|c| c["status"] == "True");
    r.health = if !ready {
        "bad"
    } else if failing.is_empty() {
        "ok"
    } else {
        "warn"
    };
    r.why = failing.join("; ");
}

/// An EndpointSlice's endpoints, `ip:port` for the first port.
fn slice_endpoints(s: &Value) -> Vec<String> {
    let port = print::list(s, "/ports")
        .first()
        .and_then(|p| p["port"].as_i64());
    print::list(s, "/endpoints")
        .iter()
        .flat_map(|e| {
            let ready = e.pointer("/conditions/ready").and_then(Value::as_bool) != Some(false);
            print::list(e, "/addresses").iter().map(move |a| {
                let ip = a.as_str().unwrap_or_default();
                let at = port.map_or_else(|| ip.to_string(), |p| format!("{ip}:{p}"));
                if ready {
                    at
                } else {
                    format!("{at} (not ready)")
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> jiff::Timestamp {
        "2026-12-07T12:00:00Z".parse().expect("a time")
    }

    #[test]
    fn a_pending_pod_says_why_and_asks_for_its_requests() {
        let p = json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "big", "namespace": "default", "uid": "u1",
                "resourceVersion": "7", "creationTimestamp": "2026-12-07T11:59:00Z",
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1", "controller": true, "uid": "r"}]},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu."}]}
        });
        let r = row(Kind::Pod, &p, now());
        assert_eq!(
            r.why,
            "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu."
        );
        assert_eq!(r.owner, "ReplicaSet/web-1");
        assert_eq!(r.resources, Some([500, 1 << 30]));
        assert_eq!(r.revision, 7);
        assert_eq!(r.health, "warn");
        assert_eq!(r.cells[0], "big");
        assert_eq!(r.cells.len(), columns(Kind::Pod).len());
        assert_eq!(r.cells[2], "Pending");
    }

    #[test]
    fn a_crashing_container_and_a_terminating_pod() {
        let p = json!({
            "metadata": {"name": "c", "namespace": "default", "deletionTimestamp": "2026-12-07T12:00:30Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "app"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "app", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}}}]}
        });
        let r = row(Kind::Pod, &p, now());
        assert!(r.terminating);
        assert_eq!(r.refers, "n1");
        assert_eq!(
            r.why,
            "app: CrashLoopBackOff: back-off 40s restarting failed container"
        );
        assert_eq!(r.cells[2], "Terminating");
        assert_eq!(r.health, "warn");
        let mut crashing = p.clone();
        crashing["metadata"]
            .as_object_mut()
            .map(|m| m.remove("deletionTimestamp"));
        assert_eq!(row(Kind::Pod, &crashing, now()).health, "bad");
    }

    #[test]
    fn workloads_show_progress_and_nodes_their_trouble() {
        let d = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3}, "status": {"readyReplicas": 2}});
        let r = row(Kind::Deployment, &d, now());
        assert_eq!(r.progress, Some([2, 3]));
        assert_eq!(r.health, "warn");
        let n = json!({"metadata": {"name": "n1"}, "spec": {"unschedulable": true},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi"}, "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "MemoryPressure", "status": "True", "reason": "KubeletHasInsufficientMemory"}]}});
        let r = row(Kind::Node, &n, now());
        assert_eq!(r.resources, Some([2000, 4 << 30]));
        assert_eq!(
            r.why,
            "MemoryPressure is True: KubeletHasInsufficientMemory; cordoned: new pods are not placed here"
        );
        assert_eq!(r.health, "warn");
    }

    #[test]
    fn slices_list_their_endpoints_and_events_their_object() {
        let s = json!({"metadata": {"name": "web-x", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "web"}},
            "ports": [{"port": 80}],
            "endpoints": [{"addresses": ["10.88.0.2"], "conditions": {"ready": true}},
                          {"addresses": ["10.88.0.3"], "conditions": {"ready": false}}]});
        let r = row(Kind::EndpointSlice, &s, now());
        assert_eq!(r.refers, "web");
        assert_eq!(r.endpoints, ["10.88.0.2:80", "10.88.0.3:80 (not ready)"]);
        let e = json!({"metadata": {"name": "e1", "namespace": "default", "creationTimestamp": "2026-12-07T11:00:00Z"},
            "type": "Warning", "reason": "BackOff", "lastTimestamp": "2026-12-07T11:58:00Z",
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "c"}, "message": "m"});
        let r = row(Kind::Event, &e, now());
        assert_eq!(r.since, "2026-12-07T11:58:00Z");
        assert_eq!(r.refers, "Pod/default/c");
        assert_eq!(r.cells[0], "2m");
        assert_eq!(r.health, "warn");
    }
}
