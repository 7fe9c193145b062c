//! Services' addresses: the cluster's service range and NodePort range,
//! what a Service holds of them (its [`Claim`]s), and how the store fills
//! in `spec.clusterIP` and `nodePort`s ([`assign`]) — the one place these
//! rules live. The store writes each claim as a key of its own in the same
//! Raft entry as the Service (created only if absent), so no two Services
//! ever hold one address or port, and frees them in the entry that
//! removes the Service.
//!
//! Also the environment variables a pod gets for the Services of its
//! namespace ([`env_for`]), in Kubernetes' format, and the API's own
//! Service, `default/kubernetes` ([`api_service`], [`api_endpoint_slice`]),
//! through which pods reach the Kubernetes API.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::FieldCause;

/// Where the store keeps claims: outside every kind's key space, so no
/// watch or list of a kind ever sees them.
pub const CLAIM_PREFIX: &str = "/_claims/";
/// Random picks tried before a scan of the whole range.
const RANDOM_PICKS: usize = 64;

/// The cluster's service address range and NodePort range (kube-apiserver's
/// `--service-cluster-ip-range` and `--service-node-port-range`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceNet {
    base: u32,
    prefix: u8,
    pub node_ports: (u16, u16),
}

impl Default for ServiceNet {
    /// k3s' defaults: 10.43.0.0/16 and Kubernetes' 30000-32767.
    fn default() -> ServiceNet {
        ServiceNet {
            base: u32::from(Ipv4Addr::new(10, 43, 0, 0)),
            prefix: 16,
            node_ports: (30000, 32767),
        }
    }
}

/// Why a range flag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RangeError(String);

impl ServiceNet {
    /// From `10.43.0.0/16` and `30000-32767`.
    pub fn parse(cidr: &str, node_ports: &str) -> Result<ServiceNet, RangeError> {
        let bad = |why: &str| RangeError(format!("service range {cidr:?}: {why}"));
        let (addr, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| bad("expected an IPv4 CIDR such as 10.43.0.0/16"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad("not an IPv4 address before the '/'"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix length must be a number"))?;
        // at most 2^20 addresses, as Kubernetes' allocator; at least 16
        if !(12..=28).contains(&prefix) {
            return Err(bad("the prefix length must be between 12 and 28"));
        }
        let mask = u32::MAX << (32 - prefix);
        let base = u32::from(addr);
        if base & !mask != 0 {
            return Err(bad("host bits are set (give the network address)"));
        }
        let bad_ports = |why: &str| RangeError(format!("node port range {node_ports:?}: {why}"));
        let (lo, hi) = node_ports
            .split_once('-')
            .ok_or_else(|| bad_ports("expected FIRST-LAST such as 30000-32767"))?;
        let lo: u16 = lo.trim().parse().map_err(|_| bad_ports("not a port"))?;
        let hi: u16 = hi.trim().parse().map_err(|_| bad_ports("not a port"))?;
        if lo == 0 || lo > hi {
            return Err(bad_ports("must be FIRST-LAST with 0 < FIRST <= LAST"));
        }
        Ok(ServiceNet {
            base,
            prefix,
            node_ports: (lo, hi),
        })
    }

    /// The range in CIDR form.
    pub fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }

    fn size(&self) -> u32 {
        1 << (32 - self.prefix)
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip).wrapping_sub(self.base) < self.size()
    }

    /// The address Kubernetes gives the `kubernetes` Service (the first).
    pub fn api_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    /// The cluster DNS address (the tenth, as k3s' kube-dns), which every
    /// node's DNS server answers on.
    pub fn dns_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 10)
    }

    /// Why `ip` cannot be a Service's, if it cannot (outside, the network
    /// or broadcast address, or reserved); the API's address is the
    /// `kubernetes` Service's alone (`api`).
    fn refuse(&self, ip: Ipv4Addr, api: bool) -> Option<String> {
        if !self.contains(ip) {
            return Some(format!(
                "provided IP is not in the valid range; the range of valid IPs is {}",
                self.cidr()
            ));
        }
        let offset = u32::from(ip) - self.base;
        if offset == 0 || offset == self.size() - 1 {
            return Some(format!(
                "provided IP is the network or broadcast address of {}",
                self.cidr()
            ));
        }
        if (ip == self.api_ip() && !api) || ip == self.dns_ip() {
            return Some(format!(
                "provided IP is reserved ({} for the API service, {} for cluster DNS)",
                self.api_ip(),
                self.dns_ip()
            ));
        }
        None
    }

    fn node_port_range(&self) -> String {
        format!("{}-{}", self.node_ports.0, self.node_ports.1)
    }
}

impl fmt::Display for ServiceNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (node ports {})", self.cidr(), self.node_port_range())
    }
}

/// One address or port a Service holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Claim {
    ClusterIp(Ipv4Addr),
    NodePort(u16),
}

impl Claim {
    /// The store key that holds it.
    pub fn key(&self) -> String {
        match self {
            Claim::ClusterIp(ip) => format!("{CLAIM_PREFIX}clusterips/{ip}"),
            Claim::NodePort(p) => format!("{CLAIM_PREFIX}nodeports/{p}"),
        }
    }

    /// What the key holds: who has the claim, for the error another
    /// Service gets.
    pub fn holder_value(namespace: &str, name: &str) -> Value {
        json!({ "service": format!("{namespace}/{name}") })
    }
}

/// What a stored Service holds.
pub fn claims(svc: &Value) -> BTreeSet<Claim> {
    let spec = &svc["spec"];
    let mut out = BTreeSet::new();
    if let Some(ip) = spec["clusterIP"]
        .as_str()
        .and_then(|s| s.parse::<Ipv4Addr>().ok())
    {
        out.insert(Claim::ClusterIp(ip));
    }
    for port in spec["ports"].as_array().into_iter().flatten() {
        if let Some(p) = port["nodePort"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
        {
            if p != 0 {
                out.insert(Claim::NodePort(p));
            }
        }
    }
    out
}

/// Whether a Service's type gives it node ports.
fn has_node_ports(svc: &Value) -> bool {
    matches!(
        svc["spec"]["type"].as_str(),
        Some("NodePort") | Some("LoadBalancer")
    )
}

/// Fill in what the store allocates on a create (`current` None) or an
/// update: `spec.clusterIP` (kept from `current` when the update omits it;
/// picked from the range when empty; `None` for a headless Service; none
/// for `ExternalName`), `clusterIPs`/`ipFamilies`, and each port's
/// `nodePort` for `NodePort` and `LoadBalancer` Services (kept from the
/// current port with the same number and protocol, else picked). A
/// requested address or port is checked against the ranges and `held`,
/// which says who else holds a claim (None: free); `random` draws
/// candidates. Errors name the field and the rule.
pub fn assign(
    svc: &mut Value,
    current: Option<&Value>,
    net: &ServiceNet,
    held: &mut dyn FnMut(&Claim) -> Option<String>,
    random: &mut dyn FnMut() -> u32,
) -> Result<(), Vec<FieldCause>> {
    let mut causes = Vec::new();
    let own = current.map(claims).unwrap_or_default();
    let type_ = svc["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    let api = is_api_service(svc);
    let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let mut chosen: BTreeSet<Claim> = BTreeSet::new();
    // a claim is free for this Service when it holds it already or no one does
    let mut free = |c: &Claim, chosen: &BTreeSet<Claim>| -> Result<(), String> {
        if chosen.contains(c) {
            return Err("duplicate value within this Service".to_string());
        }
        if own.contains(c) {
            return Ok(());
        }
        match held(c) {
            None => Ok(()),
            Some(who) => Err(format!("provided value is already allocated (to {who})")),
        }
    };

    // the cluster address
    if type_ == "ExternalName" {
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            spec.remove(f);
        }
    } else {
        let kept = current.and_then(|c| c["spec"]["clusterIP"].as_str());
        let asked = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or(kept)
            .map(str::to_string);
        let ip = match asked.as_deref() {
            Some("None") => None,
            Some(text) => match text.parse::<Ipv4Addr>() {
                Err(_) => {
                    causes.push(FieldCause::new(
                        "spec.clusterIP",
                        format!("Invalid value {text:?}: kubus serves IPv4 service addresses only"),
                    ));
                    None
                }
                Ok(ip) => {
                    let claim = Claim::ClusterIp(ip);
                    let why = if own.contains(&claim) {
                        None
                    } else {
                        net.refuse(ip, api).or_else(|| free(&claim, &chosen).err())
                    };
                    match why {
                        Some(why) => {
                            causes.push(FieldCause::new(
                                "spec.clusterIP",
                                format!("Invalid value {text:?}: {why}"),
                            ));
                            None
                        }
                        None => Some(ip),
                    }
                }
            },
            None => {
                let size = u64::from(net.size());
                let candidate = |offset: u64| Ipv4Addr::from(net.base + offset as u32);
                let mut ok = |ip: Ipv4Addr| {
                    net.refuse(ip, false).is_none() && free(&Claim::ClusterIp(ip), &chosen).is_ok()
                };
                let mut found = None;
                for _ in 0..RANDOM_PICKS {
                    let ip = candidate(u64::from(random()) % size);
                    if ok(ip) {
                        found = Some(ip);
                        break;
                    }
                }
                if found.is_none() {
                    let start = u64::from(random()) % size;
                    found = (0..size)
                        .map(|i| candidate((start + i) % size))
                        .find(|ip| ok(*ip));
                }
                if found.is_none() {
                    causes.push(FieldCause::new(
                        "spec.clusterIP",
                        format!(
                            "no address left in the service range {} (every one is allocated)",
                            net.cidr()
                        ),
                    ));
                }
                found
            }
        };
        match (asked.as_deref(), ip) {
            (Some("None"), _) => {
                spec.insert("clusterIP".into(), json!("None"));
                spec.insert("clusterIPs".into(), json!(["None"]));
            }
            (_, Some(ip)) => {
                chosen.insert(Claim::ClusterIp(ip));
                spec.insert("clusterIP".into(), json!(ip.to_string()));
                spec.insert("clusterIPs".into(), json!([ip.to_string()]));
            }
            _ => {}
        }
        spec.insert("ipFamilies".into(), json!(["IPv4"]));
        spec.insert("ipFamilyPolicy".into(), json!("SingleStack"));
    }

    // node ports
    let with_node_ports = matches!(type_.as_str(), "NodePort" | "LoadBalancer");
    let current_ports: Vec<(i64, String, u16)> = current
        .filter(|c| has_node_ports(c))
        .and_then(|c| c["spec"]["ports"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["port"].as_i64()?,
                p["protocol"].as_str().unwrap_or("TCP").to_string(),
                u16::try_from(p["nodePort"].as_u64()?).ok()?,
            ))
        })
        .collect();
    let (lo, hi) = net.node_ports;
    let span = u32::from(hi - lo) + 1;
    // a number this Service already gives one protocol may serve another
    let mut by_number: Vec<(u16, String)> = Vec::new();
    let ports = spec.get_mut("ports").and_then(Value::as_array_mut);
    for (i, port) in ports.into_iter().flatten().enumerate() {
        let Some(port) = port.as_object_mut() else {
            continue;
        };
        if !with_node_ports {
            port.remove("nodePort");
            continue;
        }
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        let protocol = port
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP")
            .to_string();
        let asked = port
            .get("nodePort")
            .and_then(Value::as_u64)
            .filter(|p| *p != 0)
            .or_else(|| {
                current_ports
                    .iter()
                    .find(|(n, proto, _)| *n == number && *proto == protocol)
                    .map(|(_, _, np)| u64::from(*np))
            });
        let field = format!("spec.ports[{i}].nodePort");
        let got = match asked {
            Some(p) => {
                let p16 = u16::try_from(p).ok().filter(|p| (lo..=hi).contains(p));
                match p16 {
                    None => {
                        causes.push(FieldCause::new(
                            &field,
                            format!(
                                "Invalid value {p}: provided port is not in the valid range; \
                                 the range of valid ports is {}",
                                net.node_port_range()
                            ),
                        ));
                        None
                    }
                    Some(p) => {
                        let shared = by_number
                            .iter()
                            .any(|(n, proto)| *n == p && *proto != protocol);
                        let claim = Claim::NodePort(p);
                        let why = if shared {
                            None
                        } else {
                            free(&claim, &chosen).err()
                        };
                        match why {
                            Some(why) => {
                                causes.push(FieldCause::new(
                                    &field,
                                    format!("Invalid value {p}: {why}"),
                                ));
                                None
                            }
                            None => Some(p),
                        }
                    }
                }
            }
            None => {
                let start = random() % span;
                let mut found = None;
                for i in 0..span {
                    let p = lo + ((start + i) % span) as u16;
                    if free(&Claim::NodePort(p), &chosen).is_ok() {
                        found = Some(p);
                        break;
                    }
                }
                if found.is_none() {
                    causes.push(FieldCause::new(
                        &field,
                        format!(
                            "no port left in the node port range {} (every one is allocated)",
                            net.node_port_range()
                        ),
                    ));
                }
                found
            }
        };
        if let Some(p) = got {
            chosen.insert(Claim::NodePort(p));
            by_number.push((p, protocol));
            port.insert("nodePort".into(), json!(p));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(causes)
    }
}

/// The environment variables a container gets for `services` (those of
/// its namespace that exist when it starts, with a cluster address), in
/// Kubernetes' format: `{SVC}_SERVICE_HOST`, `{SVC}_SERVICE_PORT`,
/// `{SVC}_SERVICE_PORT_{NAME}` and the docker-link style `{SVC}_PORT`,
/// `{SVC}_PORT_{p}_{PROTO}` (+ `_PROTO`, `_PORT`, `_ADDR`). Headless and
/// ExternalName Services give none.
pub fn env_for(services: &[&Value]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut sorted: Vec<&Value> = services.to_vec();
    sorted.sort_by_key(|s| {
        s["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    });
    for svc in sorted {
        let Some(ip) = svc["spec"]["clusterIP"]
            .as_str()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        let name = svc["metadata"]["name"].as_str().unwrap_or_default();
        let prefix = env_name(name);
        let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
        let Some(first) = ports.first() else {
            continue;
        };
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        out.push((
            format!("{prefix}_SERVICE_PORT"),
            first["port"].as_i64().unwrap_or(0).to_string(),
        ));
        for p in &ports {
            if let Some(port_name) = p["name"].as_str().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(port_name)),
                    p["port"].as_i64().unwrap_or(0).to_string(),
                ));
            }
        }
        let link = |p: &Value| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            (p["port"].as_i64().unwrap_or(0), proto.to_string())
        };
        let (port, proto) = link(first);
        out.push((
            format!("{prefix}_PORT"),
            format!("{}://{ip}:{port}", proto.to_ascii_lowercase()),
        ));
        for p in &ports {
            let (port, proto) = link(p);
            let base = format!("{prefix}_PORT_{port}_{}", proto.to_ascii_uppercase());
            out.push((
                base.clone(),
                format!("{}://{ip}:{port}", proto.to_ascii_lowercase()),
            ));
            out.push((format!("{base}_PROTO"), proto.to_ascii_lowercase()));
            out.push((format!("{base}_PORT"), port.to_string()));
            out.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// The Services whose variables a pod of `namespace` gets: its namespace's
/// when `links` (`spec.enableServiceLinks`, true unless false), and the
/// API's Service in any case (`KUBERNETES_SERVICE_HOST`, as the kubelet's
/// master service).
pub fn env_services<'a>(
    namespace: &str,
    links: bool,
    in_namespace: impl Iterator<Item = &'a Value>,
    api: Option<&'a Value>,
) -> Vec<&'a Value> {
    let mut out: Vec<&Value> = if links {
        in_namespace.collect()
    } else {
        Vec::new()
    };
    if let Some(api) = api {
        if !(links && namespace == API_SERVICE_NAMESPACE) {
            out.push(api);
        }
    }
    out
}

/// The API's Service: `default/kubernetes`.
pub const API_SERVICE_NAMESPACE: &str = "default";
pub const API_SERVICE_NAME: &str = "kubernetes";
/// Its port, and the name its endpoints' port goes by.
pub const API_SERVICE_PORT: u16 = 443;
pub const API_PORT_NAME: &str = "https";
/// The label that tells a kubus gateway's endpoints of the API apart.
pub const API_SLICE_MANAGER: &str = "kubus-apiserver";

/// Whether `svc` is the API's own Service (which alone may have
/// [`ServiceNet::api_ip`]).
fn is_api_service(svc: &Value) -> bool {
    crate::meta::namespace(svc) == Some(API_SERVICE_NAMESPACE)
        && crate::meta::name(svc) == Some(API_SERVICE_NAME)
}

/// The API's Service as Kubernetes makes it: the first address of the
/// service range, port 443 (`https`), no selector (its endpoints are the
/// gateways', [`api_endpoint_slice`]).
pub fn api_service(net: &ServiceNet, target_port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": API_SERVICE_NAME,
            "namespace": API_SERVICE_NAMESPACE,
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": net.api_ip().to_string(),
            "ports": [{
                "name": API_PORT_NAME,
                "port": API_SERVICE_PORT,
                "protocol": "TCP",
                "targetPort": target_port,
            }],
            "sessionAffinity": "None",
        },
    })
}

/// The name of the EndpointSlice a gateway on `node` keeps.
pub fn api_slice_name(node: &str) -> String {
    format!("{API_SERVICE_NAME}-{node}")
}

/// The endpoints of the API served on `node` at `ip:port`: one
/// EndpointSlice per gateway (each keeps its own), selected for the
/// `kubernetes` Service by its service-name label.
pub fn api_endpoint_slice(node: &str, ip: Ipv4Addr, port: u16) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": api_slice_name(node),
            "namespace": API_SERVICE_NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": API_SERVICE_NAME,
                "endpointslice.kubernetes.io/managed-by": API_SLICE_MANAGER,
            },
        },
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": [ip.to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "nodeName": node,
        }],
        "ports": [{"name": API_PORT_NAME, "port": port, "protocol": "TCP"}],
    })
}

/// A name as an env variable segment: upper case, `-` → `_`.
fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn svc(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn net() -> ServiceNet {
        ServiceNet::parse("10.43.0.0/28", "30000-30003").expect("valid")
    }

    /// Assign against a set of claims other Services hold.
    fn assign_with(
        v: &mut Value,
        current: Option<&Value>,
        others: &BTreeMap<Claim, &str>,
        seq: &mut u32,
    ) -> Result<(), Vec<FieldCause>> {
        let mut held = |c: &Claim| others.get(c).map(|s| s.to_string());
        let mut random = || {
            *seq = seq.wrapping_add(7);
            *seq
        };
        assign(v, current, &net(), &mut held, &mut random)
    }

    #[test]
    fn ranges_parse_or_say_why() {
        assert!(ServiceNet::parse("10.43.0.0/16", "30000-32767").is_ok());
        let cases = [
            ("10.43.0.0", "30000-32767", "CIDR"),
            ("10.43.0.1/16", "30000-32767", "host bits"),
            ("10.43.0.0/8", "30000-32767", "between 12 and 28"),
            ("10.43.0.0/16", "32767-30000", "FIRST <= LAST"),
            ("10.43.0.0/16", "30000", "FIRST-LAST"),
        ];
        for (cidr, ports, want) in cases {
            let e = ServiceNet::parse(cidr, ports).expect_err(cidr);
            assert!(e.to_string().contains(want), "{cidr} {ports}: {e}");
        }
        let n = ServiceNet::default();
        assert_eq!(n.dns_ip(), Ipv4Addr::new(10, 43, 0, 10));
        assert!(n.contains(Ipv4Addr::new(10, 43, 255, 254)));
        assert!(!n.contains(Ipv4Addr::new(10, 44, 0, 1)));
    }

    #[test]
    fn the_api_address_is_the_kubernetes_services_alone() {
        let mut seq = 0;
        let others = BTreeMap::new();
        let mut api = api_service(&net(), 6443);
        assign_with(&mut api, None, &others, &mut seq).expect("the API's own");
        assert_eq!(api["spec"]["clusterIP"], "10.43.0.1");
        assert_eq!(api["spec"]["ports"][0]["port"], 443);
        let mut other = svc(json!({"clusterIP": "10.43.0.1", "ports": [{"port": 443}]}));
        let e = assign_with(&mut other, None, &others, &mut seq).expect_err("reserved");
        assert!(e[0].rule.contains("reserved"), "{}", e[0].rule);
        // its endpoints: one slice per gateway, selected by the service name
        let slice = api_endpoint_slice("node-1", Ipv4Addr::new(192, 168, 1, 2), 6443);
        assert_eq!(slice["metadata"]["name"], "kubernetes-node-1");
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "kubernetes"
        );
        assert_eq!(slice["endpoints"][0]["addresses"], json!(["192.168.1.2"]));
        assert_eq!(
            slice["ports"][0],
            json!({"name": "https", "port": 6443, "protocol": "TCP"})
        );
    }

    #[test]
    fn every_pod_gets_the_apis_variables_and_its_namespaces_with_links() {
        let api = api_service(&net(), 6443);
        let mut web = svc(json!({"clusterIP": "10.43.0.5", "ports": [{"port": 80}]}));
        web["metadata"]["namespace"] = json!("shop");
        let names = |v: Vec<&Value>| -> Vec<String> {
            v.iter()
                .map(|s| {
                    s["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        };
        let shop = [web.clone()];
        assert_eq!(
            names(env_services("shop", true, shop.iter(), Some(&api))),
            ["web", "kubernetes"]
        );
        assert_eq!(
            names(env_services("shop", false, shop.iter(), Some(&api))),
            ["kubernetes"]
        );
        // in default the API's Service is among the namespace's: once
        let default = [api.clone()];
        assert_eq!(
            names(env_services("default", true, default.iter(), Some(&api))),
            ["kubernetes"]
        );
        let env = env_for(&env_services("shop", false, shop.iter(), Some(&api)));
        assert!(env.contains(&("KUBERNETES_SERVICE_HOST".into(), "10.43.0.1".into())));
        assert!(env.contains(&("KUBERNETES_SERVICE_PORT".into(), "443".into())));
        assert!(env.contains(&("KUBERNETES_SERVICE_PORT_HTTPS".into(), "443".into())));
    }

    #[test]
    fn picks_a_free_address_and_never_a_reserved_one() {
        // a /28 holds 16 addresses: 0 and 15 are network and broadcast,
        // 1 and 10 reserved; 12 are allocatable
        let mut others = BTreeMap::new();
        let mut seq = 0;
        let mut got = BTreeSet::new();
        for i in 0..12 {
            let mut v = svc(json!({"ports": [{"port": 80}]}));
            assign_with(&mut v, None, &others, &mut seq).expect("an address is left");
            let ip: Ipv4Addr = v["spec"]["clusterIP"]
                .as_str()
                .expect("set")
                .parse()
                .expect("ip");
            assert!(net().refuse(ip, false).is_none(), "{ip}");
            assert!(got.insert(ip), "{ip} given twice");
            assert_eq!(v["spec"]["clusterIPs"], json!([ip.to_string()]));
            others.insert(Claim::ClusterIp(ip), if i % 2 == 0 { "a" } else { "b" });
        }
        // exhausted
        let mut v = svc(json!({"ports": [{"port": 80}]}));
        let e = assign_with(&mut v, None, &others, &mut seq).expect_err("full");
        assert_eq!(e[0].field, "spec.clusterIP");
        assert!(e[0].rule.contains("no address left"), "{}", e[0].rule);
        // one freed (its Service deleted) is given again
        let freed = *got.iter().next().expect("one");
        others.remove(&Claim::ClusterIp(freed));
        let mut v = svc(json!({"ports": [{"port": 80}]}));
        assign_with(&mut v, None, &others, &mut seq).expect("reused");
        assert_eq!(v["spec"]["clusterIP"], json!(freed.to_string()));
    }

    #[test]
    fn requested_addresses_and_ports_are_checked() {
        let mut others = BTreeMap::new();
        others.insert(
            Claim::ClusterIp(Ipv4Addr::new(10, 43, 0, 5)),
            "Service default/db",
        );
        others.insert(Claim::NodePort(30001), "Service default/db");
        let cases = [
            (
                json!({"clusterIP": "10.0.0.5", "ports": [{"port": 80}]}),
                "spec.clusterIP",
                "not in the valid range",
            ),
            (
                json!({"clusterIP": "10.43.0.5", "ports": [{"port": 80}]}),
                "spec.clusterIP",
                "already allocated (to Service default/db)",
            ),
            (
                json!({"clusterIP": "10.43.0.10", "ports": [{"port": 80}]}),
                "spec.clusterIP",
                "reserved",
            ),
            (
                json!({"clusterIP": "10.43.0.15", "ports": [{"port": 80}]}),
                "spec.clusterIP",
                "broadcast",
            ),
            (
                json!({"clusterIP": "fd00::1", "ports": [{"port": 80}]}),
                "spec.clusterIP",
                "IPv4",
            ),
            (
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30001}]}),
                "spec.ports[0].nodePort",
                "already allocated",
            ),
            (
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 31000}]}),
                "spec.ports[0].nodePort",
                "range of valid ports is 30000-30003",
            ),
            (
                json!({"type": "NodePort", "ports": [{"name": "a", "port": 80, "nodePort": 30002}, {"name": "b", "port": 81, "nodePort": 30002}]}),
                "spec.ports[1].nodePort",
                "duplicate",
            ),
        ];
        for (spec, field, rule) in cases {
            let mut v = svc(spec.clone());
            let e = assign_with(&mut v, None, &others, &mut 0).expect_err(&spec.to_string());
            assert_eq!(e[0].field, field, "{spec}");
            assert!(e[0].rule.contains(rule), "{spec}: {}", e[0].rule);
        }
        // the same number for TCP and UDP in one Service is allowed
        let mut v = svc(json!({"type": "NodePort", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30002},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30002}]}));
        assign_with(&mut v, None, &others, &mut 0).expect("shared by protocols");
    }

    #[test]
    fn updates_keep_what_is_held_and_types_decide() {
        let others = BTreeMap::new();
        let mut current =
            svc(json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}));
        assign_with(&mut current, None, &others, &mut 3).expect("created");
        let ip = current["spec"]["clusterIP"].clone();
        let np = current["spec"]["ports"][0]["nodePort"].clone();
        assert!(np.as_u64().is_some_and(|p| (30000..=30003).contains(&p)));
        // an apply that names neither keeps both
        let mut update =
            svc(json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}));
        assign_with(&mut update, Some(&current), &others, &mut 9).expect("updated");
        assert_eq!(update["spec"]["clusterIP"], ip);
        assert_eq!(update["spec"]["ports"][0]["nodePort"], np);
        assert_eq!(claims(&update), claims(&current));
        // back to ClusterIP: the node port goes
        let mut update = svc(json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": np}]}));
        assign_with(&mut update, Some(&current), &others, &mut 9).expect("updated");
        assert!(update["spec"]["ports"][0].get("nodePort").is_none());
        assert_eq!(claims(&update).len(), 1);
        // headless and ExternalName hold nothing
        let mut headless = svc(json!({"clusterIP": "None", "ports": [{"port": 80}]}));
        assign_with(&mut headless, None, &others, &mut 0).expect("headless");
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        assert!(claims(&headless).is_empty());
        let mut ext =
            svc(json!({"type": "ExternalName", "externalName": "db.example.com", "clusterIP": ""}));
        assign_with(&mut ext, None, &others, &mut 0).expect("external");
        assert!(ext["spec"].get("clusterIP").is_none());
        assert!(claims(&ext).is_empty());
    }

    #[test]
    fn env_variables_in_kubernetes_format() {
        let redis = json!({"metadata": {"name": "redis-master"}, "spec": {"clusterIP": "10.43.0.11",
            "ports": [{"name": "redis", "port": 6379, "protocol": "TCP"}]}});
        let headless = json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}});
        let env: BTreeMap<String, String> = env_for(&[&headless, &redis]).into_iter().collect();
        let want = [
            ("REDIS_MASTER_SERVICE_HOST", "10.43.0.11"),
            ("REDIS_MASTER_SERVICE_PORT", "6379"),
            ("REDIS_MASTER_SERVICE_PORT_REDIS", "6379"),
            ("REDIS_MASTER_PORT", "tcp://10.43.0.11:6379"),
            ("REDIS_MASTER_PORT_6379_TCP", "tcp://10.43.0.11:6379"),
            ("REDIS_MASTER_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_MASTER_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_MASTER_PORT_6379_TCP_ADDR", "10.43.0.11"),
        ];
        assert_eq!(env.len(), want.len(), "{env:?}");
        for (k, v) in want {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
    }
}
