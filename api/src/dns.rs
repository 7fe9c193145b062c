//! Cluster DNS rules that are not about answering: the cluster domain and
//! what a pod's resolver is configured with (`dnsPolicy`, `dnsConfig`), as
//! the kubelet decides it.

use serde_json::Value;

/// The cluster domain (kubelet's `--cluster-domain` default).
pub const CLUSTER_DOMAIN: &str = "cluster.local";
/// Kubernetes' `ndots` for pods of `ClusterFirst`.
pub const NDOTS: u32 = 5;

/// A pod's resolver configuration (CRI's `DNSConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodDns {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// What a pod's resolv.conf holds, given the cluster DNS address: `None`
/// means the node's own (dnsPolicy `Default`, or `ClusterFirst` on the
/// host network, or no cluster DNS). `ClusterFirst` (the default) gets the
/// cluster's server, the search list `<ns>.svc.<domain> svc.<domain>
/// <domain>` and `ndots:5`; `None` gets only `spec.dnsConfig`, which is
/// merged into the others (servers and searches appended, options by
/// name, a later one winning).
pub fn pod_dns(pod: &Value, cluster_dns: Option<&str>) -> Option<PodDns> {
    let spec = &pod["spec"];
    let host_network = spec["hostNetwork"].as_bool() == Some(true);
    let policy = spec["dnsPolicy"].as_str().unwrap_or("ClusterFirst");
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let use_cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let mut dns = match cluster_dns.filter(|_| use_cluster) {
        Some(ip) => PodDns {
            servers: vec![ip.to_string()],
            searches: vec![
                format!("{namespace}.svc.{CLUSTER_DOMAIN}"),
                format!("svc.{CLUSTER_DOMAIN}"),
                CLUSTER_DOMAIN.to_string(),
            ],
            options: vec![format!("ndots:{NDOTS}")],
        },
        None if policy == "None" => PodDns::default(),
        _ => {
            // the node's resolver, unless dnsConfig adds to it
            if spec["dnsConfig"].is_null() {
                return None;
            }
            PodDns::default()
        }
    };
    let config = &spec["dnsConfig"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    dns.servers.extend(strings(&config["nameservers"]));
    dns.searches.extend(strings(&config["searches"]));
    for o in config["options"].as_array().into_iter().flatten() {
        let Some(name) = o["name"].as_str() else {
            continue;
        };
        let text = match o["value"].as_str() {
            Some(v) => format!("{name}:{v}"),
            None => name.to_string(),
        };
        dns.options.retain(|x| x.split(':').next() != Some(name));
        dns.options.push(text);
    }
    dns.servers.dedup();
    dns.searches.dedup();
    Some(dns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec})
    }

    #[test]
    fn policies() {
        let cluster = Some("10.43.0.10");
        let first = pod_dns(&pod(json!({})), cluster).expect("cluster first");
        assert_eq!(first.servers, vec!["10.43.0.10"]);
        assert_eq!(
            first.searches,
            vec![
                "shop.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local"
            ]
        );
        assert_eq!(first.options, vec!["ndots:5"]);
        // on the host network ClusterFirst means the node's resolver
        assert_eq!(pod_dns(&pod(json!({"hostNetwork": true})), cluster), None);
        let with_host = pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}));
        assert_eq!(
            pod_dns(&with_host, cluster).expect("cluster").servers,
            vec!["10.43.0.10"]
        );
        assert_eq!(
            pod_dns(&pod(json!({"dnsPolicy": "Default"})), cluster),
            None
        );
        assert_eq!(pod_dns(&pod(json!({})), None), None);
        // None: only dnsConfig; options merge by name
        let none = pod(json!({"dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["192.0.2.53"], "searches": ["example.com"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}));
        let d = pod_dns(&none, cluster).expect("none");
        assert_eq!(d.servers, vec!["192.0.2.53"]);
        assert_eq!(d.searches, vec!["example.com"]);
        assert_eq!(d.options, vec!["ndots:2", "edns0"]);
        let merged = pod(json!({"dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}));
        assert_eq!(
            pod_dns(&merged, cluster).expect("merged").options,
            vec!["ndots:1"]
        );
    }
}
