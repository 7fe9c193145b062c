//! What a Kubernetes API gateway publishes so that pods can reach it, as
//! kube-apiserver and kube-controller-manager do: in every namespace the
//! `kube-root-ca.crt` ConfigMap holding the CA of the API's serving
//! certificate (pods read it as `ca.crt` beside their token), and in
//! `default` the API's own Service, `kubernetes` (the first address of the
//! service range, port 443) with this gateway's endpoints.
//!
//! Every gateway runs one, each with its own CA and address: a gateway
//! adds its CA to the ConfigMap's bundle when it is missing (a mesh whose
//! gateways have CAs of their own trusts them all) and keeps one
//! EndpointSlice of its own, `kubernetes-<node>`; the Service is made when
//! it is missing and otherwise left alone.

use std::net::Ipv4Addr;

use kubus_api::service::{self, ServiceNet, API_SERVICE_NAME, API_SERVICE_NAMESPACE};
use kubus_api::token::{ROOT_CA_CONFIG_MAP, ROOT_CA_KEY};
use kubus_api::{lifecycle, meta, Kind};
use serde_json::{json, Value};

use crate::informer::Delta;
use crate::runtime::{Plan, Planned, Reconcile, View, Watch};
use crate::write::Write;

/// Where this gateway serves, and what it publishes.
#[derive(Debug, Clone)]
pub struct ApiPublisher {
    /// The CA of the gateway's serving certificate (PEM).
    pub ca: String,
    /// The node the gateway runs on (its slice's name).
    pub node: String,
    /// The address pods reach it at: its listener's, or the node's when
    /// it listens on every address.
    pub address: Ipv4Addr,
    pub port: u16,
    pub net: ServiceNet,
}

/// The namespace a changed object concerns: the root CA ConfigMap's, or
/// `default` for the API's Service and this gateway's slice.
fn namespace_concerned(d: &Delta, _: &View<'_>) -> Vec<String> {
    let (Some(ns), Some(name)) = (meta::namespace(&d.object), meta::name(&d.object)) else {
        return Vec::new();
    };
    let ours = match meta::kind_of(&d.object) {
        Some(Kind::ConfigMap) => name == ROOT_CA_CONFIG_MAP,
        Some(Kind::Service) => name == API_SERVICE_NAME,
        Some(Kind::EndpointSlice) => {
            d.object
                .pointer("/metadata/labels/kubernetes.io~1service-name")
                .and_then(Value::as_str)
                == Some(API_SERVICE_NAME)
        }
        _ => false,
    };
    if ours {
        vec![ns.to_string()]
    } else {
        Vec::new()
    }
}

/// The certificates of a PEM bundle, each as its text (for comparing).
fn certificates(bundle: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    bundle
        .split_inclusive(END)
        .map(str::trim)
        .filter(|c| c.ends_with(END))
        .map(str::to_string)
        .collect()
}

/// `bundle` with `ca` added unless it holds it already.
pub fn with_ca(bundle: &str, ca: &str) -> Option<String> {
    let have = certificates(bundle);
    let new: Vec<String> = certificates(ca)
        .into_iter()
        .filter(|c| !have.contains(c))
        .collect();
    if new.is_empty() {
        return None;
    }
    let mut out: Vec<String> = have;
    out.extend(new);
    Some(out.join("\n") + "\n")
}

impl ApiPublisher {
    /// The write that puts this gateway's CA in `namespace`'s root CA
    /// ConfigMap, if one is needed.
    fn root_ca(&self, namespace: &str, view: &View<'_>) -> Option<Write> {
        let key = format!("{namespace}/{ROOT_CA_CONFIG_MAP}");
        match view.cache(Kind::ConfigMap).and_then(|c| c.cache.get(&key)) {
            None => Some(Write::Create(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA_CONFIG_MAP, "namespace": namespace},
                "data": {ROOT_CA_KEY: with_ca("", &self.ca).unwrap_or_default()},
            }))),
            Some(cm) => {
                let bundle = cm
                    .pointer(&format!("/data/{ROOT_CA_KEY}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let added = with_ca(bundle, &self.ca)?;
                let mut cm = cm.clone();
                cm["data"][ROOT_CA_KEY] = json!(added);
                Some(Write::Update(cm))
            }
        }
    }

    /// The writes that make the API's Service and keep this gateway's
    /// endpoints of it.
    fn api_service(&self, view: &View<'_>) -> Vec<Write> {
        let mut out = Vec::new();
        let svc_key = format!("{API_SERVICE_NAMESPACE}/{API_SERVICE_NAME}");
        if view
            .cache(Kind::Service)
            .and_then(|c| c.cache.get(&svc_key))
            .is_none()
        {
            out.push(Write::Create(service::api_service(&self.net, self.port)));
        }
        let want = service::api_endpoint_slice(&self.node, self.address, self.port);
        let slice_key = format!(
            "{API_SERVICE_NAMESPACE}/{}",
            service::api_slice_name(&self.node)
        );
        match view
            .cache(Kind::EndpointSlice)
            .and_then(|c| c.cache.get(&slice_key))
        {
            None => out.push(Write::Create(want)),
            Some(have)
                if have.get("endpoints") != want.get("endpoints")
                    || have.get("ports") != want.get("ports") =>
            {
                let mut updated = have.clone();
                updated["endpoints"] = want["endpoints"].clone();
                updated["ports"] = want["ports"].clone();
                updated["addressType"] = want["addressType"].clone();
                out.push(Write::Update(updated));
            }
            Some(_) => {}
        }
        out
    }
}

impl Reconcile for ApiPublisher {
    fn kind(&self) -> Kind {
        Kind::Namespace
    }

    fn name(&self) -> &'static str {
        "api-publisher"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![
            Watch::Maps(Kind::ConfigMap, namespace_concerned),
            Watch::Maps(Kind::Service, namespace_concerned),
            Watch::Maps(Kind::EndpointSlice, namespace_concerned),
        ]
    }

    fn reconcile(&self, ns: &Value, view: &View<'_>) -> Plan {
        let Some(name) = meta::name(ns) else {
            return Plan::default();
        };
        // a terminating namespace refuses creates; one write at a time
        if lifecycle::is_marked(ns) || !view.pending.is_empty() {
            return Plan::default();
        }
        let mut writes: Vec<Write> = self.root_ca(name, view).into_iter().collect();
        if name == API_SERVICE_NAMESPACE {
            writes.extend(self.api_service(view));
        }
        Plan::writes(writes.into_iter().map(Planned::quiet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::informers::Shared;
    use crate::runtime::Pending;

    const CA_A: &str = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    const CA_B: &str = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";

    fn publisher(ca: &str) -> ApiPublisher {
        ApiPublisher {
            ca: ca.to_string(),
            node: "node-1".into(),
            address: Ipv4Addr::new(127, 0, 0, 1),
            port: 6443,
            net: ServiceNet::default(),
        }
    }

    fn ns(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    }

    fn plan(p: &ApiPublisher, ns: &Value, objects: Vec<Value>) -> Vec<Write> {
        let of = |k: Kind| {
            let items: Vec<Value> = objects
                .iter()
                .filter(|o| meta::kind_of(o) == Some(k))
                .cloned()
                .collect();
            Shared::for_tests(k, items, 10)
        };
        let (cms, svcs, slices) = (
            of(Kind::ConfigMap),
            of(Kind::Service),
            of(Kind::EndpointSlice),
        );
        let (a, b, c) = (cms.read(), svcs.read(), slices.read());
        let caches = [
            (Kind::ConfigMap, &*a),
            (Kind::Service, &*b),
            (Kind::EndpointSlice, &*c),
        ];
        let view = View::new(&caches, Pending::default(), jiff::Timestamp::UNIX_EPOCH);
        p.reconcile(ns, &view)
            .writes
            .into_iter()
            .map(|w| w.write)
            .collect()
    }

    fn created(w: &[Write]) -> Vec<Value> {
        w.iter()
            .filter_map(|w| match w {
                Write::Create(o) => Some(o.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn every_namespace_gets_the_ca_and_default_the_apis_service() {
        let team = plan(&publisher(CA_A), &ns("team"), vec![]);
        let made = created(&team);
        assert_eq!(made.len(), 1, "{made:#?}");
        assert_eq!(made[0]["metadata"]["name"], "kube-root-ca.crt");
        assert_eq!(made[0]["data"]["ca.crt"], CA_A);

        let default = created(&plan(&publisher(CA_A), &ns("default"), vec![]));
        let kinds: Vec<&str> = default
            .iter()
            .map(|o| o["kind"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(kinds, ["ConfigMap", "Service", "EndpointSlice"]);
        assert_eq!(default[1]["spec"]["clusterIP"], "10.43.0.1");
        assert_eq!(default[2]["metadata"]["name"], "kubernetes-node-1");

        // all there: nothing to do
        let all = default.clone();
        assert!(plan(&publisher(CA_A), &ns("default"), all.clone()).is_empty());
        // a terminating namespace is left alone
        let mut marked = ns("team");
        marked["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(plan(&publisher(CA_A), &marked, vec![]).is_empty());

        // a second gateway adds its CA to the bundle and its own slice
        let second = ApiPublisher {
            node: "node-2".into(),
            ..publisher(CA_B)
        };
        let w = plan(&second, &ns("default"), all.clone());
        let bundle = w.iter().find_map(|w| match w {
            Write::Update(o) if o["kind"] == "ConfigMap" => o["data"]["ca.crt"].as_str(),
            _ => None,
        });
        assert_eq!(
            bundle.map(certificates),
            Some(certificates(&(CA_A.to_string() + CA_B)))
        );
        assert_eq!(created(&w)[0]["metadata"]["name"], "kubernetes-node-2");
        // the first gateway moved: its slice follows
        let moved = ApiPublisher {
            port: 7443,
            ..publisher(CA_A)
        };
        let w = plan(&moved, &ns("default"), all);
        assert!(
            matches!(&w[..], [Write::Update(s)] if s["ports"][0]["port"] == 7443),
            "{w:#?}"
        );
    }

    #[test]
    fn a_bundle_keeps_each_certificate_once() {
        assert_eq!(with_ca(CA_A, CA_A), None);
        assert_eq!(with_ca("", CA_A).as_deref(), Some(CA_A));
        let both = with_ca(CA_A, CA_B).expect("added");
        assert_eq!(with_ca(&both, CA_A), None);
        assert_eq!(certificates(&both).len(), 2);
    }
}
