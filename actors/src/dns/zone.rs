//! The cluster's DNS records, after the Kubernetes DNS specification,
//! built from Services and EndpointSlices (pure; rebuilt on every change):
//!
//! - `<svc>.<ns>.svc.<domain>`: A → the cluster IP; for a headless
//!   Service, A → each ready endpoint; for an ExternalName, CNAME;
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>`: SRV for each named port
//!   (to the Service's name, or each headless endpoint's own name);
//! - `<hostname>.<svc>.<ns>.svc.<domain>` for endpoints with a hostname
//!   (pods whose `subdomain` is the Service), and `<a-b-c-d>.<svc>…` for
//!   the others of a headless Service;
//! - `<a-b-c-d>.<ns>.pod.<domain>`: A → a.b.c.d.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use kubus_api::dns::CLUSTER_DOMAIN;
use kubus_api::endpoints::SERVICE_NAME_LABEL;
use serde_json::Value;

/// One record's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rec {
    A(Ipv4Addr),
    Cname(String),
    Srv { port: u16, target: String },
}

/// What a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    A,
    Srv,
    Cname,
    Any,
    /// AAAA, TXT, …: answered with no data for names that exist.
    Other,
}

/// What the zone says about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(Vec<Rec>),
    /// The name exists, with no record of the asked type.
    NoData,
    /// In the cluster domain, and no such name.
    NxDomain,
    /// Not in the cluster domain: for the upstream resolvers.
    NotOurs,
}

/// All records, by lowercase name without the trailing dot.
#[derive(Debug, Default)]
pub struct Zone {
    names: HashMap<String, Vec<Rec>>,
}

fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

impl Zone {
    pub fn build(services: &[&Value], slices: &[&Value]) -> Zone {
        let mut by_service: HashMap<(&str, &str), Vec<&Value>> = HashMap::new();
        for s in slices {
            if let (Some(ns), Some(svc)) = (
                s["metadata"]["namespace"].as_str(),
                s["metadata"]["labels"][SERVICE_NAME_LABEL].as_str(),
            ) {
                by_service.entry((ns, svc)).or_default().push(s);
            }
        }
        let mut zone = Zone::default();
        for svc in services {
            let (Some(ns), Some(name)) = (
                svc["metadata"]["namespace"].as_str(),
                svc["metadata"]["name"].as_str(),
            ) else {
                continue;
            };
            let base = format!("{name}.{ns}.svc.{CLUSTER_DOMAIN}");
            let spec = &svc["spec"];
            if spec["type"] == "ExternalName" {
                if let Some(target) = spec["externalName"].as_str() {
                    zone.add(
                        &base,
                        Rec::Cname(target.trim_end_matches('.').to_lowercase()),
                    );
                }
                continue;
            }
            let ports: Vec<(&str, &str)> = spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    let n = p["name"].as_str().filter(|n| !n.is_empty())?;
                    Some((n, p["protocol"].as_str().unwrap_or("TCP")))
                })
                .collect();
            let svc_port = |port_name: &str| {
                spec["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["name"].as_str() == Some(port_name))
                    .and_then(|p| p["port"].as_u64())
                    .and_then(|p| u16::try_from(p).ok())
            };
            match spec["clusterIP"].as_str() {
                Some("None") => {
                    // headless: the ready endpoints themselves
                    let slices = by_service.get(&(ns, name)).cloned().unwrap_or_default();
                    zone.names.entry(base.clone()).or_default();
                    for slice in slices {
                        let slice_port = |port_name: &str, proto: &str| {
                            slice["ports"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .find(|p| {
                                    p["name"].as_str() == Some(port_name)
                                        && p["protocol"].as_str().unwrap_or("TCP") == proto
                                })
                                .and_then(|p| p["port"].as_u64())
                                .and_then(|p| u16::try_from(p).ok())
                        };
                        for e in slice["endpoints"].as_array().into_iter().flatten() {
                            if e["conditions"]["ready"].as_bool() == Some(false) {
                                continue;
                            }
                            let Some(ip) = e["addresses"][0]
                                .as_str()
                                .and_then(|a| a.parse::<Ipv4Addr>().ok())
                            else {
                                continue;
                            };
                            let host = e["hostname"]
                                .as_str()
                                .map_or_else(|| dashed(ip), str::to_lowercase);
                            let own = format!("{host}.{base}");
                            zone.add(&base, Rec::A(ip));
                            zone.add(&own, Rec::A(ip));
                            for (port_name, proto) in &ports {
                                if let Some(port) = slice_port(port_name, proto) {
                                    zone.add(
                                        &srv_name(port_name, proto, &base),
                                        Rec::Srv {
                                            port,
                                            target: own.clone(),
                                        },
                                    );
                                }
                            }
                        }
                    }
                }
                Some(ip) => {
                    let Ok(ip) = ip.parse::<Ipv4Addr>() else {
                        continue;
                    };
                    zone.add(&base, Rec::A(ip));
                    for (port_name, proto) in &ports {
                        if let Some(port) = svc_port(port_name) {
                            zone.add(
                                &srv_name(port_name, proto, &base),
                                Rec::Srv {
                                    port,
                                    target: base.clone(),
                                },
                            );
                        }
                    }
                }
                None => {}
            }
        }
        zone
    }

    fn add(&mut self, name: &str, rec: Rec) {
        let recs = self.names.entry(name.to_string()).or_default();
        if !recs.contains(&rec) {
            recs.push(rec);
        }
    }

    /// Answer for `name` (lowercase, without the trailing dot).
    pub fn lookup(&self, name: &str, want: Want) -> Lookup {
        let suffix = format!(".{CLUSTER_DOMAIN}");
        if !(name.ends_with(&suffix) || name == CLUSTER_DOMAIN) {
            return Lookup::NotOurs;
        }
        let recs: Vec<Rec> = match self.names.get(name) {
            Some(r) => r.clone(),
            None => match pod_address(name) {
                Some(ip) => vec![Rec::A(ip)],
                // every ancestor of a name exists (an empty non-terminal)
                None if self.names.keys().any(|k| k.ends_with(&format!(".{name}"))) => {
                    return Lookup::NoData
                }
                None if name == CLUSTER_DOMAIN => return Lookup::NoData,
                None => return Lookup::NxDomain,
            },
        };
        let picked: Vec<Rec> = recs
            .into_iter()
            .filter(|r| match (want, r) {
                (Want::Any, _) => true,
                // a CNAME answers for every type (the resolver follows it)
                (_, Rec::Cname(_)) => true,
                (Want::A, Rec::A(_)) | (Want::Srv, Rec::Srv { .. }) => true,
                _ => false,
            })
            .collect();
        if picked.is_empty() {
            Lookup::NoData
        } else {
            Lookup::Found(picked)
        }
    }
}

fn srv_name(port: &str, proto: &str, base: &str) -> String {
    format!("_{}._{}.{base}", port.to_lowercase(), proto.to_lowercase())
}

/// `a-b-c-d.<ns>.pod.<domain>` → a.b.c.d.
fn pod_address(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(&format!(".pod.{CLUSTER_DOMAIN}"))?;
    let (host, _namespace) = rest.split_once('.')?;
    host.replace('-', ".").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn zone() -> Zone {
        let web = json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}});
        let db = json!({"metadata": {"name": "db", "namespace": "shop"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}});
        let ext = json!({"metadata": {"name": "mail", "namespace": "shop"},
            "spec": {"type": "ExternalName", "externalName": "Mail.Example.com."}});
        let slice = json!({"metadata": {"name": "db-0", "namespace": "shop", "labels": {SERVICE_NAME_LABEL: "db"}},
            "addressType": "IPv4", "ports": [{"name": "pg", "port": 5433, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.88.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.88.0.6"], "conditions": {"ready": true}},
                {"addresses": ["10.88.0.7"], "conditions": {"ready": false}}]});
        Zone::build(&[&web, &db, &ext], &[&slice])
    }

    fn a(s: &str) -> Rec {
        Rec::A(s.parse().expect("ip"))
    }

    #[test]
    fn answers_after_the_cluster_dns_specification() {
        let z = zone();
        let cases: Vec<(&str, Want, Lookup)> = vec![
            (
                "web.shop.svc.cluster.local",
                Want::A,
                Lookup::Found(vec![a("10.43.0.20")]),
            ),
            ("web.shop.svc.cluster.local", Want::Other, Lookup::NoData),
            (
                "_http._tcp.web.shop.svc.cluster.local",
                Want::Srv,
                Lookup::Found(vec![Rec::Srv {
                    port: 80,
                    target: "web.shop.svc.cluster.local".into(),
                }]),
            ),
            (
                "db.shop.svc.cluster.local",
                Want::A,
                Lookup::Found(vec![a("10.88.0.5"), a("10.88.0.6")]),
            ),
            (
                "db-0.db.shop.svc.cluster.local",
                Want::A,
                Lookup::Found(vec![a("10.88.0.5")]),
            ),
            (
                "10-88-0-6.db.shop.svc.cluster.local",
                Want::A,
                Lookup::Found(vec![a("10.88.0.6")]),
            ),
            (
                "_pg._tcp.db.shop.svc.cluster.local",
                Want::Srv,
                Lookup::Found(vec![
                    Rec::Srv {
                        port: 5433,
                        target: "db-0.db.shop.svc.cluster.local".into(),
                    },
                    Rec::Srv {
                        port: 5433,
                        target: "10-88-0-6.db.shop.svc.cluster.local".into(),
                    },
                ]),
            ),
            (
                "mail.shop.svc.cluster.local",
                Want::A,
                Lookup::Found(vec![Rec::Cname("mail.example.com".into())]),
            ),
            (
                "10-88-0-9.shop.pod.cluster.local",
                Want::A,
                Lookup::Found(vec![a("10.88.0.9")]),
            ),
            ("nope.shop.svc.cluster.local", Want::A, Lookup::NxDomain),
            ("shop.svc.cluster.local", Want::A, Lookup::NoData),
            ("example.com", Want::A, Lookup::NotOurs),
        ];
        for (name, want, expected) in cases {
            assert_eq!(z.lookup(name, want), expected, "{name} {want:?}");
        }
    }
}
