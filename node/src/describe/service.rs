//! Services, as kubectl describes them: type, addresses, and for each
//! port its target and the endpoints behind it.

use kubus_api::meta;
use serde_json::Value;

use super::{
    annotations_multiline, header, labels_multiline, list, n, s, scalar, string_map, Writer,
};

/// kubectl's `formatEndpointSlices` for one service port name: the first
/// three `ip:port`, then `+ N more...`.
fn endpoints_text(slices: &[Value], port_name: &str) -> String {
    if slices.is_empty() {
        return "<none>".into();
    }
    let mut shown = Vec::new();
    let mut count = 0;
    for slice in slices {
        let endpoints = list(slice, "/endpoints");
        let ports = list(slice, "/ports");
        let addresses = endpoints
            .iter()
            .filter_map(|e| list(e, "/addresses").first().map(scalar));
        if ports.is_empty() {
            for a in addresses {
                if shown.len() < 3 {
                    shown.push(a);
                }
                count += 1;
            }
            continue;
        }
        for p in ports.iter().filter(|p| s(p, "/name") == port_name) {
            for a in addresses.clone() {
                if shown.len() < 3 {
                    shown.push(if a.contains(':') {
                        format!("[{a}]:{}", n(p, "/port"))
                    } else {
                        format!("{a}:{}", n(p, "/port"))
                    });
                }
                count += 1;
            }
        }
    }
    if count > 3 {
        format!("{} + {} more...", shown.join(","), count - 3)
    } else {
        shown.join(",")
    }
}

pub(super) fn service(w: &mut Writer, svc: &Value, slices: &[Value]) {
    header(w, svc);
    labels_multiline(w, "Labels", &meta::labels(svc));
    annotations_multiline(w, "Annotations", &meta::annotations(svc));
    let selector = string_map(svc.pointer("/spec/selector"))
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    w.write(0, &format!("Selector:\t{selector}\n"));
    w.write(0, &format!("Type:\t{}\n", s(svc, "/spec/type")));
    if !s(svc, "/spec/ipFamilyPolicy").is_empty() {
        w.write(
            0,
            &format!("IP Family Policy:\t{}\n", s(svc, "/spec/ipFamilyPolicy")),
        );
    }
    let joined = |p: &str| {
        let items: Vec<String> = list(svc, p).iter().map(scalar).collect();
        if items.is_empty() {
            "<none>".to_string()
        } else {
            items.join(",")
        }
    };
    w.write(
        0,
        &format!("IP Families:\t{}\n", joined("/spec/ipFamilies")),
    );
    w.write(0, &format!("IP:\t{}\n", s(svc, "/spec/clusterIP")));
    w.write(0, &format!("IPs:\t{}\n", joined("/spec/clusterIPs")));
    if !list(svc, "/spec/externalIPs").is_empty() {
        w.write(
            0,
            &format!("External IPs:\t{}\n", joined("/spec/externalIPs")),
        );
    }
    if !s(svc, "/spec/externalName").is_empty() {
        w.write(
            0,
            &format!("External Name:\t{}\n", s(svc, "/spec/externalName")),
        );
    }
    let ingress: Vec<String> = list(svc, "/status/loadBalancer/ingress")
        .iter()
        .map(|i| match s(i, "/ip") {
            "" => s(i, "/hostname").to_string(),
            ip => ip.to_string(),
        })
        .collect();
    if !ingress.is_empty() {
        w.write(
            0,
            &format!("LoadBalancer Ingress:\t{}\n", ingress.join(", ")),
        );
    }
    for p in list(svc, "/spec/ports") {
        let name = match s(p, "/name") {
            "" => "<unset>",
            x => x,
        };
        let proto = match s(p, "/protocol") {
            "" => "TCP",
            x => x,
        };
        w.write(0, &format!("Port:\t{name}\t{}/{proto}\n", n(p, "/port")));
        let target = p
            .get("targetPort")
            .map(scalar)
            .unwrap_or_else(|| n(p, "/port").to_string());
        w.write(0, &format!("TargetPort:\t{target}/{proto}\n"));
        if n(p, "/nodePort") != 0 {
            w.write(
                0,
                &format!("NodePort:\t{name}\t{}/{proto}\n", n(p, "/nodePort")),
            );
        }
        w.write(
            0,
            &format!("Endpoints:\t{}\n", endpoints_text(slices, s(p, "/name"))),
        );
    }
    w.write(
        0,
        &format!("Session Affinity:\t{}\n", s(svc, "/spec/sessionAffinity")),
    );
    for (field, title) in [
        ("/spec/externalTrafficPolicy", "External Traffic Policy"),
        ("/spec/internalTrafficPolicy", "Internal Traffic Policy"),
    ] {
        if !s(svc, field).is_empty() {
            w.write(0, &format!("{title}:\t{}\n", s(svc, field)));
        }
    }
}
