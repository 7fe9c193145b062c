//! Discovery: `/version`, `/api`, `/apis`, `/apis/{group}`, the resource
//! lists of each group version, and aggregated discovery
//! (`apidiscovery.k8s.io` v2 and v2beta1: kubectl 1.30+ asks for v2,
//! 1.27–1.29 for v2beta1 only). Every fact comes from `kubus_api::Kind`;
//! nothing here is typed twice. Pure.

use kubus_api::Kind;
use serde_json::{json, Value};

use crate::route::Sub;

/// The verbs every served kind answers.
pub const VERBS: [&str; 7] = [
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// Which discovery document an `Accept` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `APIVersions` / `APIGroupList`.
    Legacy,
    /// `APIGroupDiscoveryList` of `apidiscovery.k8s.io/v2`.
    AggregatedV2,
    /// The same, `v2beta1`.
    AggregatedV2Beta1,
}

impl Format {
    /// The first aggregated form `accept` offers, else the legacy one.
    pub fn negotiate(accept: &str) -> Format {
        for offer in accept.split(',') {
            let params: Vec<&str> = offer.split(';').map(str::trim).collect();
            let has = |p: &str| params.contains(&p);
            if has("g=apidiscovery.k8s.io") && has("as=APIGroupDiscoveryList") {
                if has("v=v2") {
                    return Format::AggregatedV2;
                }
                if has("v=v2beta1") {
                    return Format::AggregatedV2Beta1;
                }
            }
        }
        Format::Legacy
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Legacy => "application/json",
            Format::AggregatedV2 => {
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            }
            Format::AggregatedV2Beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        }
    }

    fn api_version(self) -> &'static str {
        match self {
            Format::AggregatedV2Beta1 => "apidiscovery.k8s.io/v2beta1",
            _ => "apidiscovery.k8s.io/v2",
        }
    }
}

/// `/version`. kubectl's dispatcher picks its build by `minor`.
pub fn version() -> Value {
    let crate_version = env!("CARGO_PKG_VERSION");
    json!({
        "major": "1",
        "minor": crate::KUBERNETES_MINOR,
        "gitVersion": format!("v1.{}.0+kubus.{crate_version}", crate::KUBERNETES_MINOR),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "n/a (kubus is written in Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The named groups served, in the order of `Kind::ALL` (the core group
/// `""` is not among them).
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for k in Kind::ALL {
        if !k.group().is_empty() && !out.contains(&k.group()) {
            out.push(k.group());
        }
    }
    out
}

fn kinds_in<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = Kind> + 'a {
    Kind::ALL
        .into_iter()
        .filter(move |k| k.group() == group && k.version() == version)
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// A subresource as discovery describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubResource {
    pub sub: Sub,
    /// The group, version and kind it answers with.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// The subresources served for `kind`.
pub fn subresources(kind: Kind) -> Vec<SubResource> {
    let own = |sub, verbs| SubResource {
        sub,
        group: kind.group(),
        version: kind.version(),
        kind: kind.as_str(),
        verbs,
    };
    let mut out = Vec::new();
    if Sub::Status.served_for(kind) {
        out.push(own(Sub::Status, &["get", "patch", "update"]));
    }
    if Sub::Scale.served_for(kind) {
        out.push(SubResource {
            sub: Sub::Scale,
            group: "autoscaling",
            version: "v1",
            kind: "Scale",
            verbs: &["get", "patch", "update"],
        });
    }
    if kind == Kind::Pod {
        out.push(own(Sub::Log, &["get"]));
        out.push(SubResource {
            sub: Sub::Exec,
            group: "",
            version: "v1",
            kind: "PodExecOptions",
            verbs: &["create", "get"],
        });
        out.push(SubResource {
            sub: Sub::Eviction,
            group: "policy",
            version: "v1",
            kind: "Eviction",
            verbs: &["create"],
        });
    }
    if kind == Kind::ServiceAccount {
        out.push(SubResource {
            sub: Sub::Token,
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: &["create"],
        });
    }
    out
}

/// `/api`: the core group's versions.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str) -> Value {
    let versions: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for k in Kind::ALL.iter().filter(|k| k.group() == group) {
            if !v.contains(&k.version()) {
                v.push(k.version());
            }
        }
        v
    };
    let gv = |v: &str| json!({"groupVersion": group_version(group, v), "version": v});
    json!({
        "name": group,
        "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
        "preferredVersion": gv(versions.first().copied().unwrap_or("v1")),
    })
}

/// `/apis`: every named group.
pub fn group_list() -> Value {
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups()
            .into_iter()
            .map(group_entry)
            .chain([crate::metrics::group_entry()])
            .collect::<Vec<_>>(),
    })
}

/// `/apis/{group}`.
pub fn group(group: &str) -> Value {
    let mut g = if group == crate::metrics::GROUP {
        crate::metrics::group_entry()
    } else {
        group_entry(group)
    };
    if let Some(o) = g.as_object_mut() {
        o.insert("kind".into(), json!("APIGroup"));
        o.insert("apiVersion".into(), json!("v1"));
    }
    g
}

/// `/api/v1` or `/apis/{group}/{version}`: an `APIResourceList`.
pub fn resource_list(group: &str, version: &str) -> Value {
    if (group, version) == (crate::metrics::GROUP, crate::metrics::VERSION) {
        return crate::metrics::resource_list();
    }
    let mut resources = Vec::new();
    for k in kinds_in(group, version) {
        let mut r = json!({
            "name": k.resource(),
            "singularName": k.singular(),
            "namespaced": k.namespaced(),
            "kind": k.as_str(),
            "verbs": VERBS,
        });
        if !k.short_names().is_empty() {
            r["shortNames"] = json!(k.short_names());
        }
        if !k.categories().is_empty() {
            r["categories"] = json!(k.categories());
        }
        resources.push(r);
        for r in subresources(k) {
            let mut s = json!({
                "name": format!("{}/{}", k.resource(), r.sub.as_str()),
                "singularName": "",
                "namespaced": k.namespaced(),
                "kind": r.kind,
                "verbs": r.verbs,
            });
            if (r.group, r.version) != (k.group(), k.version()) {
                s["group"] = json!(r.group);
                s["version"] = json!(r.version);
            }
            resources.push(s);
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": resources,
    })
}

fn aggregated_resource(k: Kind) -> Value {
    let mut r = json!({
        "resource": k.resource(),
        "responseKind": {"group": k.group(), "version": k.version(), "kind": k.as_str()},
        "scope": if k.namespaced() { "Namespaced" } else { "Cluster" },
        "singularResource": k.singular(),
        "verbs": VERBS,
    });
    if !k.short_names().is_empty() {
        r["shortNames"] = json!(k.short_names());
    }
    if !k.categories().is_empty() {
        r["categories"] = json!(k.categories());
    }
    let subs: Vec<Value> = subresources(k)
        .into_iter()
        .map(|r| {
            json!({
                "subresource": r.sub.as_str(),
                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                "verbs": r.verbs,
            })
        })
        .collect();
    if !subs.is_empty() {
        r["subresources"] = json!(subs);
    }
    r
}

fn aggregated_group(group: &str) -> Value {
    let mut versions: Vec<&str> = Vec::new();
    for k in Kind::ALL.iter().filter(|k| k.group() == group) {
        if !versions.contains(&k.version()) {
            versions.push(k.version());
        }
    }
    let metadata = if group.is_empty() {
        json!({})
    } else {
        json!({"name": group})
    };
    json!({
        "metadata": metadata,
        "versions": versions.iter().map(|v| json!({
            "version": v,
            "freshness": "Current",
            "resources": kinds_in(group, v).map(aggregated_resource).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Aggregated discovery: `/api` (`core`: the core group alone) or `/apis`
/// (every named group).
pub fn aggregated(format: Format, core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![aggregated_group("")]
    } else {
        groups()
            .into_iter()
            .map(aggregated_group)
            .chain([crate::metrics::aggregated_group()])
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format.api_version(),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_choose_the_form() {
        let kubectl_133 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        let kubectl_127 =
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(Format::negotiate(kubectl_133), Format::AggregatedV2);
        assert_eq!(Format::negotiate(kubectl_127), Format::AggregatedV2Beta1);
        assert_eq!(Format::negotiate("application/json, */*"), Format::Legacy);
        assert_eq!(Format::negotiate(""), Format::Legacy);
    }

    #[test]
    fn every_kind_is_discoverable_once() {
        let mut seen = Vec::new();
        let version = |g: &str| {
            Kind::ALL
                .iter()
                .find(|k| k.group() == g)
                .map_or("v1", |k| k.version())
        };
        for (g, list) in std::iter::once(("", resource_list("", "v1"))).chain(
            groups()
                .into_iter()
                .map(|g| (g, resource_list(g, version(g)))),
        ) {
            for r in list["resources"].as_array().expect("resources") {
                let name = r["name"].as_str().expect("name");
                if !name.contains('/') {
                    seen.push((g, name.to_string()));
                }
            }
        }
        assert_eq!(seen.len(), Kind::ALL.len());
        for k in Kind::ALL {
            assert!(seen.contains(&(k.group(), k.resource().to_string())), "{k}");
        }
        let apps = resource_list("apps", "v1");
        let scale = apps["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .expect("deployments/scale");
        assert_eq!(
            (&scale["group"], &scale["version"], &scale["kind"]),
            (&json!("autoscaling"), &json!("v1"), &json!("Scale"))
        );
    }

    #[test]
    fn aggregated_core_has_pods_with_their_subresources() {
        let d = aggregated(Format::AggregatedV2Beta1, true);
        assert_eq!(d["apiVersion"], "apidiscovery.k8s.io/v2beta1");
        let core = &d["items"][0];
        assert_eq!(core["metadata"], json!({}));
        let pods = core["versions"][0]["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| r["resource"] == "pods")
            .expect("pods");
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        let subs: Vec<&str> = pods["subresources"]
            .as_array()
            .expect("subresources")
            .iter()
            .filter_map(|s| s["subresource"].as_str())
            .collect();
        assert_eq!(subs, ["status", "log", "exec", "eviction"]);
        let groups = aggregated(Format::AggregatedV2, false);
        // every group of a kind, and metrics.k8s.io
        assert_eq!(
            groups["items"].as_array().map(Vec::len),
            Some(super::groups().len() + 1)
        );
        assert!(groups["items"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g["metadata"]["name"] == "metrics.k8s.io")));
    }
}
