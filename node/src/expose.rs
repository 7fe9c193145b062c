//! `kubus expose` and `kubus service`: the Service kubectl's `expose`
//! would make for a workload or pod ([`service_for`]), and the URLs a
//! Service answers on from this machine ([`urls`]), as `minikube service`
//! prints them. Pure; the verbs in `commands` do the I/O.

use kubus_api::{meta, Kind};
use serde_json::{json, Map, Value};

/// What `kubus expose` was asked.
#[derive(Debug, Clone, Default)]
pub struct Expose {
    pub name: Option<String>,
    pub port: Option<i64>,
    pub target_port: Option<String>,
    pub protocol: Option<String>,
    pub type_: Option<String>,
}

/// The Service that exposes `obj` (a Deployment, ReplicaSet, Pod or
/// Service): its selector, and its port from the flags or the first
/// container port (kubectl's introspection). Errors say what is missing.
pub fn service_for(kind: Kind, obj: &Value, e: &Expose) -> Result<Value, String> {
    let name = meta::name(obj).unwrap_or_default();
    let (selector, template_spec): (Map<String, Value>, &Value) = match kind {
        Kind::Deployment | Kind::ReplicaSet => {
            let sel = obj
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object);
            if obj
                .pointer("/spec/selector/matchExpressions")
                .is_some_and(|m| !m.as_array().is_none_or(Vec::is_empty))
            {
                return Err(format!(
                    "{kind} {name} selects with matchExpressions, which a Service selector cannot express"
                ));
            }
            (
                sel.cloned().unwrap_or_default(),
                &obj["spec"]["template"]["spec"],
            )
        }
        Kind::Pod => (
            obj.pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            &obj["spec"],
        ),
        Kind::Service => (
            obj.pointer("/spec/selector")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            &Value::Null,
        ),
        other => {
            return Err(format!(
                "cannot expose a {other}: expose a Deployment, ReplicaSet, Pod or Service"
            ))
        }
    };
    if selector.is_empty() {
        return Err(format!("{kind} {name} has no labels to select its pods by"));
    }
    let first_port = template_spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .next();
    let port = e
        .port
        .or_else(|| first_port.and_then(|p| p["containerPort"].as_i64()))
        .or_else(|| match kind {
            Kind::Service => obj.pointer("/spec/ports/0/port").and_then(Value::as_i64),
            _ => None,
        })
        .ok_or_else(|| format!("{kind} {name} declares no container port: give one with --port"))?;
    let protocol = e
        .protocol
        .clone()
        .or_else(|| first_port.and_then(|p| p["protocol"].as_str().map(str::to_string)))
        .unwrap_or_else(|| "TCP".into());
    let target: Value = match &e.target_port {
        Some(t) => t.parse::<i64>().map_or_else(|_| json!(t), |n| json!(n)),
        None => json!(port),
    };
    let mut metadata = json!({"name": e.name.clone().unwrap_or_else(|| name.to_string())});
    if let Some(ns) = meta::namespace(obj) {
        metadata["namespace"] = json!(ns);
    }
    if let Some(labels) = obj.pointer("/metadata/labels") {
        metadata["labels"] = labels.clone();
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": e.type_.clone().unwrap_or_else(|| "ClusterIP".into()),
            "selector": selector,
            "ports": [{"port": port, "targetPort": target, "protocol": protocol}],
        },
    }))
}

/// One place a Service answers from this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub port: String,
    pub url: String,
    pub via: &'static str,
}

/// The URLs `svc` answers on from a node with addresses `node_ips`: its
/// cluster IP, its node ports on each node address, its load balancer
/// addresses. `http://` for TCP, `udp://` for UDP.
pub fn urls(svc: &Value, node_ips: &[String]) -> Vec<Url> {
    let spec = &svc["spec"];
    let mut out = Vec::new();
    for p in spec["ports"].as_array().into_iter().flatten() {
        let number = p["port"].as_i64().unwrap_or(0);
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        let scheme = if proto == "UDP" { "udp" } else { "http" };
        let label = match p["name"].as_str().filter(|n| !n.is_empty()) {
            Some(n) => format!("{n}/{number}"),
            None => number.to_string(),
        };
        let mut add = |host: &str, port: i64, via: &'static str| {
            out.push(Url {
                port: label.clone(),
                url: format!("{scheme}://{host}:{port}"),
                via,
            })
        };
        if let Some(ip) = spec["clusterIP"]
            .as_str()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        {
            add(ip, number, "cluster IP");
        }
        if let Some(np) = p["nodePort"].as_i64() {
            for ip in node_ips {
                add(ip, np, "node port");
            }
        }
        for ing in svc
            .pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(ip) = ing["ip"].as_str() {
                add(ip, number, "load balancer");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 8080}]}]}}}})
    }

    #[test]
    fn exposes_like_kubectl() {
        let svc =
            service_for(Kind::Deployment, &deployment(), &Expose::default()).expect("service");
        assert_eq!(svc["metadata"]["name"], "web");
        assert_eq!(svc["metadata"]["namespace"], "shop");
        assert_eq!(svc["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"port": 8080, "targetPort": 8080, "protocol": "TCP"}])
        );
        let e = Expose {
            port: Some(80),
            target_port: Some("http".into()),
            type_: Some("NodePort".into()),
            name: Some("front".into()),
            ..Expose::default()
        };
        let svc = service_for(Kind::Deployment, &deployment(), &e).expect("service");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
        assert_eq!(svc["spec"]["type"], "NodePort");
        assert_eq!(svc["metadata"]["name"], "front");
        let mut bare = deployment();
        bare["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .expect("c")
            .remove("ports");
        let err = service_for(Kind::Deployment, &bare, &Expose::default()).expect_err("no port");
        assert!(err.contains("--port"), "{err}");
        assert!(service_for(Kind::ConfigMap, &deployment(), &Expose::default()).is_err());
    }

    #[test]
    fn urls_from_this_machine() {
        let svc = json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.5",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}});
        let got: Vec<(String, &str)> = urls(&svc, &["127.0.0.1".into()])
            .into_iter()
            .map(|u| (u.url, u.via))
            .collect();
        assert_eq!(
            got,
            vec![
                ("http://10.43.0.5:80".into(), "cluster IP"),
                ("http://127.0.0.1:30080".into(), "node port"),
                ("http://127.0.0.1:80".into(), "load balancer"),
            ]
        );
    }
}
