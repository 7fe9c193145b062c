//! The endpoints controllers on the runtime: for every Service with a
//! selector, its EndpointSlices and its v1 Endpoints follow its pods
//! ([`kubus_api::endpoints`] states the rules); and the load balancer
//! controller, which gives `LoadBalancer` Services the addresses of the
//! nodes their ports are served on (as k3s' ServiceLB does, without pods).
//!
//! Both derive what they write from the shared caches; the slices and
//! the Endpoints carry a controller reference to their Service, so the
//! garbage collector removes them with it.

use std::collections::{BTreeMap, BTreeSet};

use kubus_api::endpoints::{self, MANAGED_BY, MANAGED_BY_LABEL};
use kubus_api::{lifecycle, meta, Kind};
use serde_json::{json, Value};

use crate::informer::{key_of, Delta};
use crate::runtime::{Plan, Planned, Reconcile, View, Watch};
use crate::write::Write;

/// The fields of a derived object the controller owns: a stored one that
/// differs in any of them is rewritten.
const OWNED_FIELDS: [&str; 4] = ["endpoints", "ports", "subsets", "addressType"];

/// Whether `have` (stored) already says what `want` says.
fn same(have: &Value, want: &Value) -> bool {
    OWNED_FIELDS.iter().all(|f| have.get(*f) == want.get(*f))
        && have["metadata"]["labels"] == want["metadata"]["labels"]
        && have["metadata"]["annotations"].get("endpoints.kubernetes.io/over-capacity")
            == want["metadata"]["annotations"].get("endpoints.kubernetes.io/over-capacity")
}

/// `want` as an update of `have`: its revision (so a concurrent change is
/// a conflict, retried) and the metadata the store keeps.
fn as_update(have: &Value, want: &Value) -> Value {
    let mut v = have.clone();
    for f in OWNED_FIELDS {
        match want.get(f) {
            Some(x) => v[f] = x.clone(),
            None => {
                if let Some(o) = v.as_object_mut() {
                    o.remove(f);
                }
            }
        }
    }
    v["metadata"]["labels"] = want["metadata"]["labels"].clone();
    if let Some(a) = want["metadata"].get("annotations") {
        v["metadata"]["annotations"] = a.clone();
    }
    v
}

/// The writes that bring `owned` (what exists) to `desired`, matched by name.
fn converge(owned: &[&Value], desired: Vec<Value>) -> Vec<Write> {
    let by_name: BTreeMap<&str, &Value> = owned
        .iter()
        .filter_map(|o| Some((meta::name(o)?, *o)))
        .collect();
    let mut writes = Vec::new();
    let mut wanted = BTreeSet::new();
    for want in desired {
        let name = meta::name(&want).unwrap_or_default().to_string();
        match by_name.get(name.as_str()) {
            Some(have) if same(have, &want) => {}
            Some(have) => writes.push(Write::Update(as_update(have, &want))),
            None => writes.push(Write::Create(want)),
        }
        wanted.insert(name);
    }
    for (name, have) in by_name {
        if !wanted.contains(name) {
            if let Some(r) = meta::object_ref(have) {
                writes.push(Write::delete(r, None));
            }
        }
    }
    writes
}

/// Decide the writes that bring a Service's slices and Endpoints in line
/// with `pods` (those of its namespace).
pub fn reconcile(
    svc: &Value,
    pods: &[&Value],
    slices: &[&Value],
    endpoints: &[&Value],
) -> Vec<Write> {
    if lifecycle::is_marked(svc) {
        return Vec::new();
    }
    let mut writes = Vec::new();
    // slices someone else manages (a selector-less Service's) are theirs
    let managed: Vec<&Value> = slices
        .iter()
        .filter(|s| s["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY)
        .copied()
        .collect();
    if let Some(desired) = endpoints::slices_for(svc, pods) {
        writes.extend(converge(&managed, desired));
    }
    if let Some(desired) = endpoints::endpoints_for(svc, pods) {
        writes.extend(converge(endpoints, vec![desired]));
    }
    writes
}

/// The EndpointSlice controller (which keeps v1 Endpoints too).
#[derive(Debug, Clone, Copy, Default)]
pub struct EndpointsReconciler;

/// The Services of the pod's namespace that select it (before or after
/// the change).
fn services_of_pod(delta: &Delta, view: &View<'_>) -> Vec<String> {
    let Some(services) = view.own() else {
        return Vec::new();
    };
    let ns = meta::namespace(&delta.object).unwrap_or("default");
    services
        .cache
        .in_namespace(ns)
        .filter(|svc| {
            endpoints::selector(svc).is_some_and(|sel| endpoints::selects(svc, &sel, &delta.object))
        })
        .map(key_of)
        .collect()
}

impl Reconcile for EndpointsReconciler {
    fn kind(&self) -> Kind {
        Kind::Service
    }

    fn name(&self) -> &'static str {
        "endpointslice-controller"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![
            Watch::Owns(Kind::EndpointSlice),
            Watch::Owns(Kind::Endpoints),
            Watch::Maps(Kind::Pod, services_of_pod),
        ]
    }

    fn reconcile(&self, svc: &Value, view: &View<'_>) -> Plan {
        // one step at a time: the next is decided on what this one wrote
        if !view.pending.is_empty() {
            return Plan::default();
        }
        let ns = meta::namespace(svc).unwrap_or("default");
        let pods: Vec<&Value> = view
            .cache(Kind::Pod)
            .map(|c| c.cache.in_namespace(ns).collect())
            .unwrap_or_default();
        let uid = meta::uid(svc).unwrap_or_default();
        let slices = view.owned(Kind::EndpointSlice, uid);
        let eps = view.owned(Kind::Endpoints, uid);
        Plan::writes(
            reconcile(svc, &pods, &slices, &eps)
                .into_iter()
                .map(Planned::quiet),
        )
    }
}

/// The addresses a `LoadBalancer` Service is served on: every Ready
/// node's InternalIP (each node's proxy listens on its own).
pub fn ingress(nodes: &[&Value]) -> Vec<Value> {
    let ips: BTreeSet<&str> = nodes
        .iter()
        .filter(|n| {
            n["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .flat_map(|n| n["status"]["addresses"].as_array().into_iter().flatten())
        .filter(|a| a["type"] == "InternalIP")
        .filter_map(|a| a["address"].as_str())
        .collect();
    ips.into_iter()
        .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
        .collect()
}

/// Sets `status.loadBalancer.ingress` of `LoadBalancer` Services (and
/// clears it when a Service stops being one).
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadBalancerReconciler;

/// Every LoadBalancer Service: a node change may change their addresses.
fn load_balancers(_: &Delta, view: &View<'_>) -> Vec<String> {
    view.own()
        .map(|c| {
            c.cache
                .values()
                .filter(|s| s["spec"]["type"] == "LoadBalancer")
                .map(key_of)
                .collect()
        })
        .unwrap_or_default()
}

impl Reconcile for LoadBalancerReconciler {
    fn kind(&self) -> Kind {
        Kind::Service
    }

    fn name(&self) -> &'static str {
        "service-lb-controller"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::Maps(Kind::Node, load_balancers)]
    }

    fn reconcile(&self, svc: &Value, view: &View<'_>) -> Plan {
        if !view.pending.is_empty() || lifecycle::is_marked(svc) {
            return Plan::default();
        }
        let want = if svc["spec"]["type"] == "LoadBalancer" {
            let nodes: Vec<&Value> = view
                .cache(Kind::Node)
                .map(|c| c.cache.values().collect())
                .unwrap_or_default();
            json!({"ingress": ingress(&nodes)})
        } else {
            json!({})
        };
        let have = svc
            .pointer("/status/loadBalancer")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if have == want {
            return Plan::default();
        }
        let mut updated = svc.clone();
        updated["status"]["loadBalancer"] = want;
        Plan::writes([Planned::quiet(Write::Update(updated))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::WriteKind;

    fn svc() -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "uid": "s1"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
    }

    fn pod(name: &str, ip: &str, ready: bool) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": name, "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": ip,
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    fn kinds(writes: &[Write]) -> Vec<(WriteKind, Kind)> {
        writes
            .iter()
            .map(|w| (w.kind(), w.object_kind().unwrap_or(Kind::Pod)))
            .collect()
    }

    #[test]
    fn creates_then_holds_then_follows_readiness() {
        let a = pod("a", "10.0.0.1", true);
        let first = reconcile(&svc(), &[&a], &[], &[]);
        assert_eq!(
            kinds(&first),
            vec![
                (WriteKind::Create, Kind::EndpointSlice),
                (WriteKind::Create, Kind::Endpoints)
            ]
        );
        let stored: Vec<Value> = first
            .iter()
            .filter_map(|w| match w {
                Write::Create(v) => Some(v.clone()),
                _ => None,
            })
            .collect();
        let (slices, eps): (Vec<&Value>, Vec<&Value>) =
            stored.iter().partition(|v| v["kind"] == "EndpointSlice");
        // nothing changed: nothing written
        assert!(reconcile(&svc(), &[&a], &slices, &eps).is_empty());
        // the pod stops being ready: both are updated
        let not_ready = pod("a", "10.0.0.1", false);
        let next = reconcile(&svc(), &[&not_ready], &slices, &eps);
        assert_eq!(
            kinds(&next),
            vec![
                (WriteKind::Update, Kind::EndpointSlice),
                (WriteKind::Update, Kind::Endpoints)
            ]
        );
        // a slice of another manager is left alone
        let mut foreign = slices[0].clone();
        foreign["metadata"]["name"] = json!("web-custom");
        foreign["metadata"]["labels"][MANAGED_BY_LABEL] = json!("someone-else");
        let mut all = slices.clone();
        all.push(&foreign);
        assert!(reconcile(&svc(), &[&a], &all, &eps).is_empty());
    }

    #[test]
    fn load_balancers_get_ready_nodes_addresses() {
        let node = |name: &str, ip: &str, ready: &str| {
            json!({"metadata": {"name": name}, "status": {
                "conditions": [{"type": "Ready", "status": ready}],
                "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}})
        };
        let (a, b, c) = (
            node("a", "127.0.0.1", "True"),
            node("b", "127.0.0.2", "False"),
            node("c", "127.0.0.1", "True"),
        );
        assert_eq!(
            ingress(&[&a, &b, &c]),
            vec![json!({"ip": "127.0.0.1", "ipMode": "VIP"})]
        );
    }
}
