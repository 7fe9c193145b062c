//! `kubus describe`: kubectl's describers, as text. Pods, Deployments,
//! ReplicaSets (and ReplicationControllers), Services, Nodes, Namespaces,
//! ConfigMaps and Secrets have kubectl's own sections; every other kind
//! gets kubectl's generic describer (each field of the object, by name).
//! Each ends with the object's Events.
//!
//! [`describe`] is pure: the object, what it relates to ([`Related`]) and
//! the clock in, text out. Text is written in kubectl's tab-separated cells
//! and aligned by [`print::tabbed`] (Go's tabwriter), flushed where
//! kubectl flushes. [`run`] fetches.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use kubus_api::{meta, Kind, Reason};
use kubus_bus::Client;
use serde_json::Value;

use crate::cli::DescribeArgs;
use crate::commands::emit;
use crate::print;
use crate::targets::{self, Targets};

mod generic;
mod node;
mod pod;
mod service;
mod workload;

pub use pod::pod_template_text;
pub use workload::{same_template, POD_TEMPLATE_HASH_LABEL};

/// Annotations kubectl never shows in a describe.
const SKIPPED_ANNOTATIONS: [&str; 1] = ["kubectl.kubernetes.io/last-applied-configuration"];

/// Longest `key: value` annotation shown on one line.
const ANNOTATION_LEN_MAX: usize = 140;

/// kubectl's `PrefixWriter` over a tabwriter: text at a nesting level
/// (two spaces each), aligned when flushed.
#[derive(Debug, Default)]
pub struct Writer {
    done: String,
    pending: String,
}

impl Writer {
    /// Write `text` after `level` indents (it carries its own newline).
    pub fn write(&mut self, level: usize, text: &str) {
        for _ in 0..level {
            self.pending.push_str("  ");
        }
        self.pending.push_str(text);
    }

    /// Align what is pending; later text aligns on its own.
    pub fn flush(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.done.push_str(&print::tabbed(&pending));
    }

    pub fn finish(mut self) -> String {
        self.flush();
        self.done
    }
}

use crate::print::{list, n, s};

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, x)| {
                    let x = match x {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), x)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A scalar as Go's `%v` prints it.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

/// What an object relates to, for the kinds whose describers show it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Related<'a> {
    /// A Deployment's ReplicaSets.
    pub replica_sets: &'a [Value],
    /// A ReplicaSet's pods, or the pods on a Node.
    pub pods: &'a [Value],
    /// A Service's EndpointSlices.
    pub endpoint_slices: &'a [Value],
    /// The Events about the object, oldest first.
    pub events: &'a [Value],
}

/// kubectl's description of `obj`.
pub fn describe(kind: Kind, obj: &Value, related: &Related<'_>, now: jiff::Timestamp) -> String {
    let mut w = Writer::default();
    match kind {
        Kind::Pod => pod::pod(&mut w, obj, now),
        Kind::Deployment => workload::deployment(&mut w, obj, related.replica_sets),
        Kind::ReplicaSet | Kind::ReplicationController => {
            workload::replica_set(&mut w, obj, related.pods)
        }
        Kind::Service => service::service(&mut w, obj, related.endpoint_slices),
        Kind::Node => node::node(&mut w, obj, related.pods, now),
        Kind::Namespace => generic::namespace(&mut w, obj),
        Kind::ConfigMap => generic::config_map(&mut w, obj),
        Kind::Secret => generic::secret(&mut w, obj),
        _ => generic::generic(&mut w, obj),
    }
    // kubectl shows no Events section for Secrets and Namespaces
    if !matches!(kind, Kind::Secret | Kind::Namespace) {
        events(&mut w, related.events, now);
    }
    w.finish()
}

/// `Labels:  a=b` then one `key=value` a line (kubectl's
/// `printLabelsMultiline`); `title` may carry its own indent.
pub fn labels_multiline(w: &mut Writer, title: &str, labels: &BTreeMap<String, String>) {
    w.write(0, &format!("{title}:\t"));
    if labels.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            w.write(0, "\t");
        }
        w.write(0, &format!("{k}={v}\n"));
    }
}

/// `Annotations:  key: value`, long or multi-line values on lines of
/// their own, cut at 140 characters (kubectl's
/// `printAnnotationsMultiline`).
pub fn annotations_multiline(w: &mut Writer, title: &str, annotations: &BTreeMap<String, String>) {
    w.write(0, &format!("{title}:\t"));
    let shown: Vec<(&String, &String)> = annotations
        .iter()
        .filter(|(k, _)| !SKIPPED_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    if shown.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    for (i, (k, v)) in shown.into_iter().enumerate() {
        if i > 0 {
            w.write(0, "\t");
        }
        let value = v.strip_suffix('\n').unwrap_or(v);
        if value.len() + k.len() + 2 > ANNOTATION_LEN_MAX || value.contains('\n') {
            w.write(0, &format!("{k}:\n"));
            for line in value.split('\n') {
                w.write(
                    0,
                    &format!("\t  {}\n", shorten(line, ANNOTATION_LEN_MAX - 2)),
                );
            }
        } else {
            w.write(0, &format!("{k}: {value}\n"));
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

fn header(w: &mut Writer, obj: &Value) {
    w.write(
        0,
        &format!("Name:\t{}\n", meta::name(obj).unwrap_or_default()),
    );
    if let Some(ns) = meta::namespace(obj) {
        w.write(0, &format!("Namespace:\t{ns}\n"));
    }
}

fn controlled_by(obj: &Value) -> Option<String> {
    let owner = list(obj, "/metadata/ownerReferences")
        .iter()
        .find(|r| r["controller"] == true)?;
    Some(format!("{}/{}", s(owner, "/kind"), s(owner, "/name")))
}

/// The Events table, or `Events:  <none>` (kubectl's `DescribeEvents`).
pub fn events(w: &mut Writer, events: &[Value], now: jiff::Timestamp) {
    if events.is_empty() {
        w.write(0, "Events:\t<none>\n");
        return;
    }
    w.flush();
    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    w.write(1, "----\t------\t----\t----\t-------\n");
    for e in events {
        let first = print::age(
            e.get("firstTimestamp")
                .and_then(Value::as_str)
                .or_else(|| e.get("eventTime").and_then(Value::as_str)),
            now,
        );
        let count = e.get("count").and_then(Value::as_i64).unwrap_or(1);
        let interval = if count > 1 {
            let last = print::age(e.get("lastTimestamp").and_then(Value::as_str), now);
            format!("{last} (x{count} over {first})")
        } else {
            first
        };
        let from = [
            "/source/component",
            "/reportingController",
            "/reportingComponent",
        ]
        .iter()
        .map(|p| s(e, p))
        .find(|x| !x.is_empty())
        .unwrap_or_default();
        let mut message = s(e, "/message").trim().to_string();
        let field_path = s(e, "/involvedObject/fieldPath");
        if !field_path.is_empty() {
            message = format!("{field_path}: {message}");
        }
        w.write(
            1,
            &format!(
                "{}\t{}\t{interval}\t{from}\t{message}\n",
                s(e, "/type"),
                s(e, "/reason")
            ),
        );
    }
}

/// The Events about `obj` among `all` (by uid when both have one, else
/// by kind, namespace and name), oldest first.
pub fn events_about(all: &[Value], obj: &Value) -> Vec<Value> {
    let uid = meta::uid(obj).unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = meta::name(obj).unwrap_or_default();
    let namespace = meta::namespace(obj).unwrap_or_default();
    let mut out: Vec<Value> = all
        .iter()
        .filter(|e| {
            let io = &e["involvedObject"];
            match (uid, s(io, "/uid")) {
                (a, b) if !a.is_empty() && !b.is_empty() => a == b,
                _ => {
                    io["kind"] == kind
                        && io["name"] == name
                        && (namespace.is_empty() || s(io, "/namespace") == namespace)
                }
            }
        })
        .cloned()
        .collect();
    out.sort_by_key(print::event_order);
    out
}

/// The objects `kubus describe` names: by name (falling back, as kubectl
/// does, to every object whose name starts with it), by selector, or
/// every object of the kind.
async fn objects(client: &Client, args: &DescribeArgs) -> anyhow::Result<Vec<Value>> {
    let targets = targets::parse(&args.resources)?;
    let named = match targets {
        Targets::Kind(kind) => {
            let (mut items, _) = client
                .list(kind, Some(&args.namespace), args.selector.as_deref(), None)
                .await?;
            items.sort_by(|a, b| meta::name(a).cmp(&meta::name(b)));
            return Ok(items);
        }
        Targets::Named(named) => named,
    };
    let mut out = Vec::new();
    for (kind, name) in named {
        match client.get(kind, Some(&args.namespace), &name).await {
            Ok(o) => out.push(o),
            Err(e) if e.reason() == Some(Reason::NotFound) => {
                let (mut items, _) = client.list(kind, Some(&args.namespace), None, None).await?;
                items.retain(|o| meta::name(o).is_some_and(|n| n.starts_with(&name)));
                if items.is_empty() {
                    return Err(e.into());
                }
                items.sort_by(|a, b| meta::name(a).cmp(&meta::name(b)));
                out.extend(items);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// `kubus describe`: fetch each object and what its describer shows, then
/// print them, a blank line apart.
pub async fn run(client: &Client, args: DescribeArgs) -> anyhow::Result<()> {
    let objects = objects(client, &args).await?;
    if objects.is_empty() {
        eprintln!("No resources found in {} namespace.", args.namespace);
        return Ok(());
    }
    // Events of a namespace, read once however many objects are in it
    let mut events_by_ns: HashMap<String, Vec<Value>> = HashMap::new();
    for (i, obj) in objects.iter().enumerate() {
        let kind = meta::kind_of(obj).context("the object read names no served kind")?;
        let ns = meta::namespace(obj).map(str::to_string);
        let key = ns.clone().unwrap_or_default();
        if !events_by_ns.contains_key(&key) {
            let events = crate::commands::list_events(client, ns.as_deref()).await?;
            events_by_ns.insert(key.clone(), events);
        }
        let events = events_about(&events_by_ns[&key], obj);
        let (mut sets, mut pods, mut slices) = (Vec::new(), Vec::new(), Vec::new());
        match kind {
            Kind::Deployment => {
                sets = client
                    .list(Kind::ReplicaSet, ns.as_deref(), None, None)
                    .await?
                    .0;
            }
            Kind::ReplicaSet | Kind::ReplicationController => {
                pods = client.list(Kind::Pod, ns.as_deref(), None, None).await?.0;
            }
            Kind::Node => {
                let on_node = format!("spec.nodeName={}", meta::name(obj).unwrap_or_default());
                pods = client.list(Kind::Pod, None, None, Some(&on_node)).await?.0;
                pods.sort_by(|a, b| {
                    (meta::namespace(a), meta::name(a)).cmp(&(meta::namespace(b), meta::name(b)))
                });
            }
            Kind::Service => {
                let selector = format!(
                    "{}={}",
                    kubus_api::endpoints::SERVICE_NAME_LABEL,
                    meta::name(obj).unwrap_or_default()
                );
                slices = client
                    .list(Kind::EndpointSlice, ns.as_deref(), Some(&selector), None)
                    .await?
                    .0;
            }
            _ => {}
        }
        let related = Related {
            replica_sets: &sets,
            pods: &pods,
            endpoint_slices: &slices,
            events: &events,
        };
        if i > 0 {
            emit("\n\n");
        }
        emit(&describe(kind, obj, &related, jiff::Timestamp::now()));
        // beyond kubectl: why a pod waits for a node
        let unbound = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if kind == Kind::Pod && unbound && !kubus_api::pod::is_finished(obj) {
            emit("\nScheduling (kubus explain pod):\n");
            emit(&crate::explain::explanation(client, obj).await?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:01:00Z".parse().expect("ts")
    }

    fn event(reason: &str, message: &str, count: i64, uid: &str) -> Value {
        json!({"type": "Normal", "reason": reason, "message": message, "count": count,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:50Z",
            "source": {"component": "deployment-controller"},
            "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "default", "uid": uid}})
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "d1",
                "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"app": "web"},
                "annotations": {"deployment.kubernetes.io/revision": "2"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "main", "image": "nginx:2",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}},
            "status": {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "readyReplicas": 3,
                "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}]}})
    }

    fn rs(name: &str, image: &str, replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default",
                "ownerReferences": [{"uid": "d1", "controller": true, "kind": "Deployment", "name": "web"}]},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": {"app": "web", "pod-template-hash": name}},
                "spec": {"containers": [{"name": "main", "image": image,
                    "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}},
            "status": {"replicas": replicas}})
    }

    #[test]
    fn a_deployment_reads_like_kubectl() {
        let sets = [rs("web-a", "nginx:1", 0), rs("web-b", "nginx:2", 3)];
        let events = [event(
            "ScalingReplicaSet",
            "Scaled up replica set web-b to 3",
            1,
            "d1",
        )];
        let related = Related {
            replica_sets: &sets,
            events: &events,
            ..Related::default()
        };
        let text = describe(Kind::Deployment, &deployment(), &related, now());
        let want = "\
Name:                   web
Namespace:              default
CreationTimestamp:      Thu, 01 Jan 2026 00:00:00 +0000
Labels:                 app=web
Annotations:            deployment.kubernetes.io/revision: 2
Selector:               app=web
Replicas:               3 desired | 3 updated | 3 total | 3 available | 0 unavailable
StrategyType:           RollingUpdate
MinReadySeconds:        0
RollingUpdateStrategy:  25% max unavailable, 25% max surge
Pod Template:
  Labels:  app=web
  Containers:
   main:
    Image:         nginx:2
    Port:          80/TCP
    Host Port:     0/TCP
    Environment:   <none>
    Mounts:        <none>
  Volumes:         <none>
  Node-Selectors:  <none>
  Tolerations:     <none>
Conditions:
  Type           Status  Reason
  ----           ------  ------
  Available      True    MinimumReplicasAvailable
OldReplicaSets:  web-a (0/0 replicas created)
NewReplicaSet:   web-b (3/3 replicas created)
Events:
  Type    Reason             Age   From                   Message
  ----    ------             ----  ----                   -------
  Normal  ScalingReplicaSet  60s   deployment-controller  Scaled up replica set web-b to 3
";
        assert_eq!(text, want, "\n{text}");
    }

    #[test]
    fn a_pod_reads_like_kubectl() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-b-x", "namespace": "default", "uid": "p1", "labels": {"app": "web"},
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-b", "controller": true, "uid": "r"}]},
            "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "busybox",
                "command": ["sh", "-c", "sleep 3600"],
                "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}]},
            "status": {"phase": "Running", "hostIP": "10.0.0.1", "podIP": "10.89.0.5",
                "podIPs": [{"ip": "10.89.0.5"}], "startTime": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "main", "ready": true, "restartCount": 1, "containerID": "4242",
                    "imageID": "", "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}}}]}});
        let events = [
            json!({"type": "Normal", "reason": "Started", "message": "Started container main",
            "count": 3, "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:30Z",
            "source": {"component": "kubelet"},
            "involvedObject": {"kind": "Pod", "name": "web-b-x", "namespace": "default", "uid": "p1"}}),
        ];
        let related = Related {
            events: &events,
            ..Related::default()
        };
        let text = describe(Kind::Pod, &pod, &related, now());
        let want = "\
Name:         web-b-x
Namespace:    default
Node:         node-1/10.0.0.1
Start Time:   Thu, 01 Jan 2026 00:00:00 +0000
Labels:       app=web
Annotations:  <none>
Status:       Running
IP:           10.89.0.5
IPs:
  IP:           10.89.0.5
Controlled By:  ReplicaSet/web-b
Containers:
  main:
    Container ID:  4242
    Image:         busybox
    Image ID:
    Port:          <none>
    Host Port:     <none>
    Command:
      sh
      -c
      sleep 3600
    State:          Running
      Started:      Thu, 01 Jan 2026 00:00:01 +0000
    Ready:          True
    Restart Count:  1
    Readiness:      exec [true] delay=0s timeout=1s period=1s #success=1 #failure=3
    Environment:
      POD:   web-b-x (v1:metadata.name)
    Mounts:  <none>
Conditions:
  Type           Status
  Ready          True
Volumes:         <none>
QoS Class:       BestEffort
Node-Selectors:  <none>
Tolerations:     <none>
Events:
  Type    Reason   Age                From     Message
  ----    ------   ----               ----     -------
  Normal  Started  30s (x3 over 60s)  kubelet  Started container main
";
        assert_eq!(text, want, "\n{text}");
    }

    #[test]
    fn a_service_lists_its_endpoints() {
        let svc = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "ClusterIP", "selector": {"app": "web"}, "clusterIP": "10.43.0.9",
                "clusterIPs": ["10.43.0.9"], "ipFamilies": ["IPv4"], "sessionAffinity": "None",
                "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}});
        let slice = json!({"ports": [{"name": "", "port": 8080}],
            "endpoints": [{"addresses": ["10.89.0.5"]}, {"addresses": ["10.89.0.6"]},
                {"addresses": ["10.89.0.7"]}, {"addresses": ["10.89.0.8"]}]});
        let slices = [slice];
        let related = Related {
            endpoint_slices: &slices,
            ..Related::default()
        };
        let text = describe(Kind::Service, &svc, &related, now());
        assert!(text.contains("Type:              ClusterIP\n"), "{text}");
        assert!(
            text.contains("Port:              <unset>  80/TCP\n"),
            "{text}"
        );
        assert!(text.contains("TargetPort:        8080/TCP\n"), "{text}");
        assert!(
            text.contains(
                "Endpoints:         10.89.0.5:8080,10.89.0.6:8080,10.89.0.7:8080 + 1 more...\n"
            ),
            "{text}"
        );
        assert!(text.ends_with("Events:            <none>\n"), "{text}");
    }

    #[test]
    fn other_kinds_get_the_generic_describer() {
        let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"schedule": "*/5 * * * *", "suspend": false,
                "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox", "args": ["date"]}]}}}}}});
        let text = describe(Kind::CronJob, &cj, &Related::default(), now());
        assert!(text.contains("API Version:        batch/v1\n"), "{text}");
        assert!(text.contains("Spec:\n  Job Template:\n"), "{text}");
        // one column block from Name to Events, as kubectl's tabwriter has it
        assert!(
            text.contains("\n  Schedule:         */5 * * * *\n"),
            "{text}"
        );
        assert!(
            text.contains("\n            Args:\n              date\n"),
            "{text}"
        );
        // a Secret's values are never shown, only their sizes
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "s", "namespace": "default"}, "data": {"password": "aHVudGVyMg=="}});
        let text = describe(Kind::Secret, &secret, &Related::default(), now());
        assert!(text.contains("password:  7 bytes\n"), "{text}");
        assert!(!text.contains("aHVudGVyMg"), "{text}");
    }

    #[test]
    fn field_labels_read_like_kubectl() {
        for (field, want) in [
            ("creationTimestamp", "Creation Timestamp"),
            ("apiVersion", "API Version"),
            ("podIP", "Pod IP"),
            ("uid", "UID"),
            ("spec", "Spec"),
            ("maxSurge", "Max Surge"),
            ("kubernetes.io/x", "kubernetes.io/x"),
            ("podIPAddress", "Pod IPAddress"),
        ] {
            assert_eq!(generic::smart_label(field), want, "{field}");
        }
    }

    #[test]
    fn events_are_matched_by_uid_else_by_name() {
        let d = deployment();
        let all = [
            event("A", "mine", 1, "d1"),
            event("B", "an older web", 1, "d0"),
            json!({"reason": "C", "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "default"}}),
        ];
        let reasons: Vec<String> = events_about(&all, &d)
            .iter()
            .map(|e| s(e, "/reason").to_string())
            .collect();
        assert_eq!(reasons, vec!["C", "A"]);
    }
}
