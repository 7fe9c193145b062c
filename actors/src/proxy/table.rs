//! What a node's proxy forwards where: from the Services and
//! EndpointSlices it sees, every address it listens on (a
//! [`Frontend`]: a cluster IP, a node port, a load balancer address) and
//! where connections to it go (a [`Backend`]). Pure: the proxy actor
//! recomputes the table on every change and swaps it in whole.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use kubus_api::endpoints::SERVICE_NAME_LABEL;
use serde_json::Value;

/// A transport the proxy forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn parse(s: &str) -> Option<Proto> {
        match s {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            // SCTP is accepted by validation but not proxied
            _ => None,
        }
    }
}

/// An address the proxy listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frontend {
    pub addr: SocketAddr,
    pub proto: Proto,
}

/// Where one frontend's traffic goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// `namespace/name:port`, for logs.
    pub service: String,
    /// Ready endpoints.
    pub ready: Vec<SocketAddr>,
    /// Serving but terminating endpoints: used only when none is ready,
    /// so connections still land during a rollout's hand-over.
    pub terminating: Vec<SocketAddr>,
    /// `sessionAffinity: ClientIP`: how long a client sticks to its pick.
    pub affinity: Option<Duration>,
}

impl Backend {
    /// The endpoints to use now: the ready ones, or else the serving
    /// terminating ones.
    pub fn usable(&self) -> &[SocketAddr] {
        if self.ready.is_empty() {
            &self.terminating
        } else {
            &self.ready
        }
    }
}

/// Every frontend of the node and its backend.
pub type Table = BTreeMap<Frontend, Backend>;

/// Kubernetes' default ClientIP affinity timeout (3 hours).
const AFFINITY_DEFAULT: Duration = Duration::from_secs(10_800);

/// One service port's endpoints, split by readiness, honouring a `Local`
/// traffic policy (`local_only`: only endpoints on `node`).
fn endpoints_of(
    slices: &[&Value],
    port_name: &str,
    proto: &str,
    node: &str,
    local_only: bool,
) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let mut ready = Vec::new();
    let mut terminating = Vec::new();
    for slice in slices {
        if slice["addressType"] != "IPv4" {
            continue;
        }
        let Some(port) = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| {
                p["name"].as_str().unwrap_or_default() == port_name
                    && p["protocol"].as_str().unwrap_or("TCP") == proto
            })
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for e in slice["endpoints"].as_array().into_iter().flatten() {
            if local_only && e["nodeName"].as_str() != Some(node) {
                continue;
            }
            let c = &e["conditions"];
            // absent conditions mean ready (the API's rule for readers)
            let is_ready = c["ready"].as_bool().unwrap_or(true);
            let serving = c["serving"].as_bool().unwrap_or(is_ready);
            let is_terminating = c["terminating"].as_bool().unwrap_or(false);
            let addrs = e["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str()?.parse::<Ipv4Addr>().ok())
                .map(|ip| SocketAddr::new(IpAddr::V4(ip), port));
            if is_ready {
                ready.extend(addrs);
            } else if serving && is_terminating {
                terminating.extend(addrs);
            }
        }
    }
    ready.sort();
    ready.dedup();
    terminating.sort();
    terminating.dedup();
    (ready, terminating)
}

/// The table of a node named `node` with addresses `node_ips`, from all
/// Services and EndpointSlices.
pub fn build(services: &[&Value], slices: &[&Value], node: &str, node_ips: &[IpAddr]) -> Table {
    let mut by_service: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for s in slices {
        let Some(svc) = s["metadata"]["labels"][SERVICE_NAME_LABEL].as_str() else {
            continue;
        };
        let ns = s["metadata"]["namespace"].as_str().unwrap_or("default");
        by_service
            .entry((ns.to_string(), svc.to_string()))
            .or_default()
            .push(s);
    }
    let mut table = Table::new();
    for svc in services {
        let spec = &svc["spec"];
        let type_ = spec["type"].as_str().unwrap_or("ClusterIP");
        if type_ == "ExternalName" || svc["metadata"]["deletionTimestamp"].is_string() {
            continue;
        }
        let ns = svc["metadata"]["namespace"].as_str().unwrap_or("default");
        let name = svc["metadata"]["name"].as_str().unwrap_or_default();
        let cluster_ip = spec["clusterIP"]
            .as_str()
            .and_then(|s| s.parse::<Ipv4Addr>().ok());
        let svc_slices = by_service
            .get(&(ns.to_string(), name.to_string()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let affinity = (spec["sessionAffinity"] == "ClientIP").then(|| {
            spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
                .and_then(Value::as_u64)
                .map_or(AFFINITY_DEFAULT, Duration::from_secs)
        });
        let internal_local = spec["internalTrafficPolicy"] == "Local";
        let external_local = spec["externalTrafficPolicy"] == "Local";
        for port in spec["ports"].as_array().into_iter().flatten() {
            let proto_text = port["protocol"].as_str().unwrap_or("TCP");
            let Some(proto) = Proto::parse(proto_text) else {
                continue;
            };
            let Some(number) = port["port"].as_u64().and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            let port_name = port["name"].as_str().unwrap_or_default();
            let backend = |local: bool| {
                let (ready, terminating) =
                    endpoints_of(svc_slices, port_name, proto_text, node, local);
                Backend {
                    service: format!(
                        "{ns}/{name}:{}",
                        if port_name.is_empty() {
                            number.to_string()
                        } else {
                            port_name.to_string()
                        }
                    ),
                    ready,
                    terminating,
                    affinity,
                }
            };
            if let Some(ip) = cluster_ip {
                table.insert(
                    Frontend {
                        addr: SocketAddr::new(IpAddr::V4(ip), number),
                        proto,
                    },
                    backend(internal_local),
                );
            }
            let external = backend(external_local);
            if matches!(type_, "NodePort" | "LoadBalancer") {
                if let Some(np) = port["nodePort"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                {
                    table.insert(
                        Frontend {
                            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), np),
                            proto,
                        },
                        external.clone(),
                    );
                }
            }
            if type_ == "LoadBalancer" {
                for ip in node_ips {
                    table.insert(
                        Frontend {
                            addr: SocketAddr::new(*ip, number),
                            proto,
                        },
                        external.clone(),
                    );
                }
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(svc: &str, port_name: &str, port: u16, eps: Value) -> Value {
        json!({"metadata": {"name": format!("{svc}-0"), "namespace": "default",
                "labels": {SERVICE_NAME_LABEL: svc}},
               "addressType": "IPv4", "endpoints": eps,
               "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]})
    }

    fn ep(ip: &str, node: &str, ready: bool, serving: bool, terminating: bool) -> Value {
        json!({"addresses": [ip], "nodeName": node,
               "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn cluster_ip_node_port_and_load_balancer_frontends() {
        let svc = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.20",
                "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}]}});
        let s = slice(
            "web",
            "http",
            8080,
            json!([
                ep("10.88.0.2", "n1", true, true, false),
                ep("10.88.0.3", "n2", false, true, true),
                ep("10.88.0.4", "n2", false, false, false),
            ]),
        );
        let node_ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let t = build(&[&svc], &[&s], "n1", &[node_ip]);
        let keys: Vec<String> = t.keys().map(|f| f.addr.to_string()).collect();
        assert_eq!(keys, vec!["0.0.0.0:30080", "10.43.0.20:80", "127.0.0.1:80"]);
        let b = &t[&Frontend {
            addr: sa("10.43.0.20:80"),
            proto: Proto::Tcp,
        }];
        assert_eq!(b.ready, vec![sa("10.88.0.2:8080")]);
        assert_eq!(b.terminating, vec![sa("10.88.0.3:8080")]);
        assert_eq!(b.usable(), &[sa("10.88.0.2:8080")]);
        assert_eq!(b.service, "default/web:http");
    }

    #[test]
    fn terminating_endpoints_only_when_none_is_ready_and_local_policies() {
        let mut svc = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.20", "externalTrafficPolicy": "Local",
                "sessionAffinity": "ClientIP",
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}});
        let s = slice(
            "web",
            "",
            8080,
            json!([
                ep("10.88.0.3", "n2", false, true, true),
                ep("10.88.0.5", "n1", true, true, false),
            ]),
        );
        let t = build(&[&svc], &[&s], "n2", &[]);
        let cluster = &t[&Frontend {
            addr: sa("10.43.0.20:80"),
            proto: Proto::Tcp,
        }];
        assert_eq!(cluster.usable(), &[sa("10.88.0.5:8080")]);
        assert_eq!(cluster.affinity, Some(AFFINITY_DEFAULT));
        // externalTrafficPolicy Local on n2: only n2's (terminating) endpoint
        let node_port = &t[&Frontend {
            addr: sa("0.0.0.0:30080"),
            proto: Proto::Tcp,
        }];
        assert_eq!(node_port.usable(), &[sa("10.88.0.3:8080")]);
        // internalTrafficPolicy Local on n2: no ready endpoint here
        svc["spec"]["internalTrafficPolicy"] = json!("Local");
        let t = build(&[&svc], &[&s], "n2", &[]);
        let cluster = &t[&Frontend {
            addr: sa("10.43.0.20:80"),
            proto: Proto::Tcp,
        }];
        assert!(cluster.ready.is_empty());
        // headless and ExternalName Services have no frontends
        let headless = json!({"metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}});
        let ext = json!({"metadata": {"name": "x", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}});
        assert!(build(&[&headless, &ext], &[], "n1", &[]).is_empty());
    }
}
