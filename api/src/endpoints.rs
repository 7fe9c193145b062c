//! Which pods back a Service, in Kubernetes' two forms: EndpointSlices
//! (`discovery.k8s.io/v1`) and the older `v1` Endpoints. The one place
//! these rules live:
//!
//! - a pod counts when it matches the Service's selector, has an IP and
//!   has not finished;
//! - `serving` = the pod is Ready, `terminating` = it is being deleted,
//!   `ready = publishNotReadyAddresses || (serving && !terminating)`;
//! - a named `targetPort` is resolved per pod from its containers' ports
//!   (pods may serve one name on different numbers; a pod without it is
//!   left out of that port's slices);
//! - endpoints with the same resolved ports share slices of at most
//!   [`ENDPOINTS_PER_SLICE_MAX`]; `hostname` is set when the pod's
//!   `spec.subdomain` is the Service's name;
//! - Endpoints (v1) list ready pods under `addresses` and the others
//!   under `notReadyAddresses`, terminating pods only with
//!   `publishNotReadyAddresses`, at most [`ENDPOINTS_ADDRESSES_MAX`].

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::pod;
use crate::selector::Selector;

/// Kubernetes' `--max-endpoints-per-slice` default.
pub const ENDPOINTS_PER_SLICE_MAX: usize = 100;
/// Kubernetes truncates an Endpoints object at this many addresses.
pub const ENDPOINTS_ADDRESSES_MAX: usize = 1000;
/// The label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice; slices others manage are theirs.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Kubernetes' value of [`MANAGED_BY_LABEL`] (consumers filter on it).
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// One resolved Service port of one pod.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Port {
    name: String,
    port: i64,
    protocol: String,
    app_protocol: Option<String>,
}

/// The Service's selector, if it has one (a Service without one has
/// endpoints its user manages).
pub fn selector(svc: &Value) -> Option<Selector> {
    let labels = string_map(&svc["spec"]["selector"]);
    (!labels.is_empty()).then(|| Selector::from_match_labels(&labels))
}

/// A JSON map of strings (labels, a selector) as a map.
fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// Whether `pod` is one of `svc`'s (same namespace, selected).
pub fn selects(svc: &Value, sel: &Selector, pod: &Value) -> bool {
    pod["metadata"]["namespace"] == svc["metadata"]["namespace"]
        && sel.matches(&string_map(&pod["metadata"]["labels"]))
}

/// The number `pod` serves a Service port's `targetPort` on.
fn target_port(svc_port: &Value, pod: &Value) -> Option<i64> {
    let protocol = svc_port["protocol"].as_str().unwrap_or("TCP");
    match &svc_port["targetPort"] {
        Value::Number(n) => n.as_i64(),
        Value::String(name) => pod["spec"]["containers"]
            .as_array()?
            .iter()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .find(|p| {
                p["name"].as_str() == Some(name)
                    && p["protocol"].as_str().unwrap_or("TCP") == protocol
            })
            .and_then(|p| p["containerPort"].as_i64()),
        _ => svc_port["port"].as_i64(),
    }
}

/// A pod that counts, its resolved ports, and its conditions.
struct Member<'a> {
    pod: &'a Value,
    ip: &'a str,
    ports: Vec<Port>,
    serving: bool,
    terminating: bool,
}

fn members<'a>(svc: &Value, pods: &[&'a Value]) -> Vec<Member<'a>> {
    let Some(sel) = selector(svc) else {
        return Vec::new();
    };
    let svc_ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
    let mut out: Vec<Member<'a>> = pods
        .iter()
        .filter(|p| selects(svc, &sel, p))
        .filter(|p| !pod::is_finished(p))
        .filter_map(|p| {
            let ip = p["status"]["podIP"].as_str().filter(|ip| !ip.is_empty())?;
            let mut ports: Vec<Port> = svc_ports
                .iter()
                .filter_map(|sp| {
                    Some(Port {
                        name: sp["name"].as_str().unwrap_or_default().to_string(),
                        port: target_port(sp, p)?,
                        protocol: sp["protocol"].as_str().unwrap_or("TCP").to_string(),
                        app_protocol: sp["appProtocol"].as_str().map(str::to_string),
                    })
                })
                .collect();
            ports.sort();
            Some(Member {
                pod: p,
                ip,
                ports,
                serving: pod::is_ready(p),
                terminating: pod::is_terminating(p),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        a.pod["metadata"]["name"]
            .as_str()
            .cmp(&b.pod["metadata"]["name"].as_str())
    });
    out
}

fn target_ref(pod: &Value) -> Value {
    json!({
        "kind": "Pod",
        "namespace": pod["metadata"]["namespace"],
        "name": pod["metadata"]["name"],
        "uid": pod["metadata"]["uid"],
    })
}

/// The pod's DNS hostname under the Service, when its subdomain names it.
fn hostname<'a>(svc: &Value, pod: &'a Value) -> Option<&'a str> {
    let host = pod["spec"]["hostname"].as_str().filter(|h| !h.is_empty())?;
    (pod["spec"]["subdomain"] == svc["metadata"]["name"]).then_some(host)
}

/// The metadata every object derived from `svc` carries: its namespace, a
/// controller reference to it, and its labels.
fn derived_meta(svc: &Value, name: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    m.insert("namespace".into(), svc["metadata"]["namespace"].clone());
    m.insert(
        "ownerReferences".into(),
        json!([{
            "apiVersion": "v1", "kind": "Service",
            "name": svc["metadata"]["name"], "uid": svc["metadata"]["uid"],
            "controller": true, "blockOwnerDeletion": true,
        }]),
    );
    m
}

/// The EndpointSlices `svc` should have, named `<service>-<n>` in a stable
/// order (by port set, then pod name); None when the Service has no
/// selector (its slices are its user's).
pub fn slices_for(svc: &Value, pods: &[&Value]) -> Option<Vec<Value>> {
    selector(svc)?;
    let publish = svc["spec"]["publishNotReadyAddresses"].as_bool() == Some(true);
    let svc_name = svc["metadata"]["name"].as_str().unwrap_or_default();
    let mut groups: BTreeMap<Vec<Port>, Vec<Value>> = BTreeMap::new();
    for m in members(svc, pods) {
        let mut ep = json!({
            "addresses": [m.ip],
            "conditions": {
                "ready": publish || (m.serving && !m.terminating),
                "serving": m.serving,
                "terminating": m.terminating,
            },
            "targetRef": target_ref(m.pod),
        });
        if let Some(node) = m.pod["spec"]["nodeName"].as_str() {
            ep["nodeName"] = json!(node);
        }
        if let Some(h) = hostname(svc, m.pod) {
            ep["hostname"] = json!(h);
        }
        groups.entry(m.ports).or_default().push(ep);
    }
    let mut labels = svc["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), json!(svc_name));
    labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY));
    let mut slices = Vec::new();
    let port_json = |ports: &[Port]| -> Value {
        ports
            .iter()
            .map(|p| {
                let mut v = json!({"name": p.name, "port": p.port, "protocol": p.protocol});
                if let Some(a) = &p.app_protocol {
                    v["appProtocol"] = json!(a);
                }
                v
            })
            .collect()
    };
    for (ports, endpoints) in &groups {
        for chunk in endpoints.chunks(ENDPOINTS_PER_SLICE_MAX) {
            let mut metadata = derived_meta(svc, &format!("{svc_name}-{}", slices.len()));
            metadata.insert("labels".into(), Value::Object(labels.clone()));
            slices.push(json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": metadata,
                "addressType": "IPv4",
                "endpoints": chunk,
                "ports": port_json(ports),
            }));
        }
    }
    if slices.is_empty() {
        // a Service without pods still has one (empty) slice, as in Kubernetes
        let mut metadata = derived_meta(svc, &format!("{svc_name}-0"));
        metadata.insert("labels".into(), Value::Object(labels));
        slices.push(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": metadata, "addressType": "IPv4", "endpoints": [], "ports": [],
        }));
    }
    Some(slices)
}

/// The v1 Endpoints object `svc` should have (same name as the Service);
/// None when the Service has no selector.
pub fn endpoints_for(svc: &Value, pods: &[&Value]) -> Option<Value> {
    selector(svc)?;
    let publish = svc["spec"]["publishNotReadyAddresses"].as_bool() == Some(true);
    let svc_name = svc["metadata"]["name"].as_str().unwrap_or_default();
    let mut groups: BTreeMap<Vec<Port>, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    let mut total = 0;
    let mut truncated = false;
    for m in members(svc, pods) {
        if m.terminating && !publish {
            continue;
        }
        if total == ENDPOINTS_ADDRESSES_MAX {
            truncated = true;
            break;
        }
        total += 1;
        let mut a = json!({"ip": m.ip, "targetRef": target_ref(m.pod)});
        if let Some(node) = m.pod["spec"]["nodeName"].as_str() {
            a["nodeName"] = json!(node);
        }
        if let Some(h) = hostname(svc, m.pod) {
            a["hostname"] = json!(h);
        }
        let (ready, not_ready) = groups.entry(m.ports).or_default();
        if publish || m.serving {
            ready.push(a);
        } else {
            not_ready.push(a);
        }
    }
    let subsets: Vec<Value> = groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| {
            let mut s = json!({
                "ports": ports.iter().map(|p| {
                    let mut v = json!({"port": p.port, "protocol": p.protocol});
                    if !p.name.is_empty() { v["name"] = json!(p.name); }
                    v
                }).collect::<Vec<_>>(),
            });
            if !ready.is_empty() {
                s["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready);
            }
            s
        })
        .collect();
    let mut metadata = derived_meta(svc, svc_name);
    if let Some(labels) = svc["metadata"]["labels"].as_object() {
        metadata.insert("labels".into(), Value::Object(labels.clone()));
    }
    if truncated {
        metadata.insert(
            "annotations".into(),
            json!({"endpoints.kubernetes.io/over-capacity": "truncated"}),
        );
    }
    Some(json!({
        "apiVersion": "v1", "kind": "Endpoints", "metadata": metadata, "subsets": subsets,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "default", "uid": "s1"}, "spec": spec})
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool, http_port: i64) -> Value {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": http_port}]}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        });
        if let Some(ip) = ip {
            p["status"]["podIP"] = json!(ip);
        }
        p
    }

    fn web() -> Value {
        svc(
            json!({"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}),
        )
    }

    /// (address, ready, serving, terminating, port) of every endpoint.
    fn flat(slices: &[Value]) -> Vec<(String, bool, bool, bool, i64)> {
        let mut out = Vec::new();
        for s in slices {
            for e in s["endpoints"].as_array().into_iter().flatten() {
                let c = &e["conditions"];
                out.push((
                    e["addresses"][0].as_str().unwrap_or_default().to_string(),
                    c["ready"] == true,
                    c["serving"] == true,
                    c["terminating"] == true,
                    s["ports"][0]["port"].as_i64().unwrap_or(0),
                ));
            }
        }
        out
    }

    #[test]
    fn slices_follow_readiness_termination_and_named_ports() {
        let ready = pod("a", Some("10.0.0.1"), true, 8080);
        let not_ready = pod("b", Some("10.0.0.2"), false, 8080);
        let mut terminating = pod("c", Some("10.0.0.3"), true, 9090);
        terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let no_ip = pod("d", None, true, 8080);
        let mut finished = pod("e", Some("10.0.0.5"), false, 8080);
        finished["status"]["phase"] = json!("Succeeded");
        let mut other = pod("f", Some("10.0.0.6"), true, 8080);
        other["metadata"]["labels"] = json!({"app": "db"});
        let mut elsewhere = pod("g", Some("10.0.0.7"), true, 8080);
        elsewhere["metadata"]["namespace"] = json!("prod");
        let pods = [
            &ready,
            &not_ready,
            &terminating,
            &no_ip,
            &finished,
            &other,
            &elsewhere,
        ];
        let slices = slices_for(&web(), &pods).expect("selector");
        // two port sets: 8080 (a, b) and 9090 (c), each its own slice
        assert_eq!(slices.len(), 2);
        assert_eq!(
            flat(&slices),
            vec![
                ("10.0.0.1".into(), true, true, false, 8080),
                ("10.0.0.2".into(), false, false, false, 8080),
                ("10.0.0.3".into(), false, true, true, 9090),
            ]
        );
        assert_eq!(slices[0]["metadata"]["labels"][SERVICE_NAME_LABEL], "web");
        assert_eq!(slices[0]["metadata"]["ownerReferences"][0]["uid"], "s1");
        assert_eq!(slices[0]["endpoints"][0]["targetRef"]["name"], "a");
        assert_eq!(slices[0]["endpoints"][0]["nodeName"], "n1");
        // publishNotReadyAddresses: every one is ready
        let mut publish = web();
        publish["spec"]["publishNotReadyAddresses"] = json!(true);
        let all = flat(&slices_for(&publish, &pods).expect("selector"));
        assert!(all.iter().all(|e| e.1), "{all:?}");
        // Endpoints: ready / not ready; terminating left out
        let ep = endpoints_for(&web(), &pods).expect("selector");
        let subsets = ep["subsets"].as_array().expect("subsets");
        assert_eq!(subsets.len(), 1, "{ep}");
        assert_eq!(subsets[0]["addresses"][0]["ip"], "10.0.0.1");
        assert_eq!(subsets[0]["notReadyAddresses"][0]["ip"], "10.0.0.2");
        assert_eq!(subsets[0]["ports"][0]["port"], 8080);
    }

    #[test]
    fn slices_hold_at_most_a_hundred_and_no_selector_means_none() {
        let pods: Vec<Value> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i:03}"),
                    Some(&format!("10.0.{}.{}", i / 200, i % 200)),
                    true,
                    80,
                )
            })
            .collect();
        let refs: Vec<&Value> = pods.iter().collect();
        let slices = slices_for(&web(), &refs).expect("selector");
        let sizes: Vec<usize> = slices
            .iter()
            .map(|s| s["endpoints"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        let names: Vec<&str> = slices
            .iter()
            .filter_map(|s| s["metadata"]["name"].as_str())
            .collect();
        assert_eq!(names, vec!["web-0", "web-1", "web-2"]);
        assert!(slices_for(&svc(json!({"ports": [{"port": 80}]})), &refs).is_none());
        // no pods: one empty slice
        let empty = slices_for(&web(), &[]).expect("selector");
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0]["endpoints"], json!([]));
    }

    #[test]
    fn hostnames_under_their_subdomain() {
        let mut p = pod("a", Some("10.0.0.1"), true, 80);
        p["spec"]["hostname"] = json!("db-0");
        p["spec"]["subdomain"] = json!("web");
        let mut q = pod("b", Some("10.0.0.2"), true, 80);
        q["spec"]["hostname"] = json!("db-1");
        q["spec"]["subdomain"] = json!("other");
        let slices = slices_for(&web(), &[&p, &q]).expect("selector");
        let eps = slices[0]["endpoints"].as_array().expect("endpoints");
        assert_eq!(eps[0]["hostname"], "db-0");
        assert!(eps[1].get("hostname").is_none());
    }
}
