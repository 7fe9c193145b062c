//! Request paths → what they name: a discovery or OpenAPI document, or a
//! collection, object or subresource of a served kind. Pure.
//!
//! Kubernetes' paths: `{prefix}[/namespaces/{ns}]/{resource}[/{name}[/{sub}]]`
//! with `{prefix}` `/api/v1` (the core group) or `/apis/{group}/{version}`;
//! `/api/v1/namespaces/{name}[/{sub}]` is the Namespace object itself.

use kubus_api::Kind;

use crate::metrics;

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/version`
    Version,
    /// `/healthz`, `/livez`, `/readyz` (and their sub-checks)
    Health,
    /// `/api`: the core group's versions (or, aggregated, its resources).
    Api,
    /// `/apis`: the named groups (or, aggregated, their resources).
    Apis,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`: the resources served there.
    Resources { group: String, version: String },
    /// `/openapi/v3`: the index of the per-group-version documents.
    OpenApiIndex,
    /// `/openapi/v2`: the protobuf document kubectl 1.27 and 1.28 read.
    OpenApiV2,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
    OpenApi { group: String, version: String },
    /// A collection, an object or a subresource.
    Resource(Target),
    /// `metrics.k8s.io`: node and pod usage, from the node agents.
    Metrics(crate::metrics::Target),
}

/// A collection (`name` None), an object, or an object's subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: Kind,
    /// The path's namespace (None: cluster-scoped, or every namespace).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<Sub>,
}

/// The subresources a path may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    Status,
    Scale,
    Log,
    Eviction,
    Exec,
    Attach,
    PortForward,
    /// A Namespace's `finalize`.
    Finalize,
    /// A ServiceAccount's `token` (a TokenRequest).
    Token,
}

impl Sub {
    fn parse(word: &str) -> Option<Sub> {
        Some(match word {
            "status" => Sub::Status,
            "scale" => Sub::Scale,
            "log" => Sub::Log,
            "eviction" => Sub::Eviction,
            "exec" => Sub::Exec,
            "attach" => Sub::Attach,
            "portforward" => Sub::PortForward,
            "finalize" => Sub::Finalize,
            "token" => Sub::Token,
            _ => return None,
        })
    }

    /// The path word.
    pub fn as_str(self) -> &'static str {
        match self {
            Sub::Status => "status",
            Sub::Scale => "scale",
            Sub::Log => "log",
            Sub::Eviction => "eviction",
            Sub::Exec => "exec",
            Sub::Attach => "attach",
            Sub::PortForward => "portforward",
            Sub::Finalize => "finalize",
            Sub::Token => "token",
        }
    }

    /// Whether `kind` has this subresource.
    pub fn served_for(self, kind: Kind) -> bool {
        match self {
            Sub::Status => kind.has_status(),
            Sub::Scale => kind.scalable(),
            Sub::Log | Sub::Eviction | Sub::Exec | Sub::Attach | Sub::PortForward => {
                kind == Kind::Pod
            }
            Sub::Finalize => kind == Kind::Namespace,
            Sub::Token => kind == Kind::ServiceAccount,
        }
    }
}

/// Why a path names nothing: Kubernetes answers 404.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server could not find the requested resource")]
pub struct NotFound;

/// What `path` (without its query) names.
pub fn parse(path: &str) -> Result<Route, NotFound> {
    let words: Vec<&str> = path.trim_matches('/').split('/').collect();
    match words.as_slice() {
        ["version"] => Ok(Route::Version),
        [h, ..] if matches!(*h, "healthz" | "livez" | "readyz") => Ok(Route::Health),
        ["api"] => Ok(Route::Api),
        ["apis"] => Ok(Route::Apis),
        ["openapi", "v3"] => Ok(Route::OpenApiIndex),
        ["openapi", "v2"] => Ok(Route::OpenApiV2),
        ["openapi", "v3", "api", "v1"] => Ok(Route::OpenApi {
            group: String::new(),
            version: "v1".into(),
        }),
        ["openapi", "v3", "apis", g, v] if served_group_version(g, v) => Ok(Route::OpenApi {
            group: g.to_string(),
            version: v.to_string(),
        }),
        ["apis", g] if served_group(g) => Ok(Route::Group(g.to_string())),
        ["apis", metrics::GROUP, metrics::VERSION, rest @ ..] if !rest.is_empty() => {
            metrics::Target::parse(rest)
                .map(Route::Metrics)
                .ok_or(NotFound)
        }
        ["api", "v1"] => Ok(Route::Resources {
            group: String::new(),
            version: "v1".into(),
        }),
        ["apis", g, v] if served_group_version(g, v) => Ok(Route::Resources {
            group: g.to_string(),
            version: v.to_string(),
        }),
        ["api", "v1", rest @ ..] => resource("", "v1", rest),
        ["apis", g, v, rest @ ..] => resource(g, v, rest),
        _ => Err(NotFound),
    }
}

fn served_group(group: &str) -> bool {
    !group.is_empty() && (group == metrics::GROUP || Kind::ALL.iter().any(|k| k.group() == group))
}

fn served_group_version(group: &str, version: &str) -> bool {
    (group, version) == (metrics::GROUP, metrics::VERSION)
        || Kind::ALL
            .iter()
            .any(|k| k.group() == group && k.version() == version && !group.is_empty())
}

fn resource(group: &str, version: &str, rest: &[&str]) -> Result<Route, NotFound> {
    let kind_of = |plural: &str| Kind::from_plural(group, version, plural).ok_or(NotFound);
    let sub_of = |kind: Kind, word: &str| {
        Sub::parse(word)
            .filter(|s| s.served_for(kind))
            .ok_or(NotFound)
    };
    let nonempty = |w: &str| (!w.is_empty()).then(|| w.to_string()).ok_or(NotFound);
    let target = match rest {
        // the Namespace object and its subresources
        ["namespaces", name] if group.is_empty() => Target {
            kind: Kind::Namespace,
            namespace: None,
            name: Some(nonempty(name)?),
            sub: None,
        },
        ["namespaces", name, sub] if group.is_empty() && Sub::parse(sub).is_some() => Target {
            kind: Kind::Namespace,
            namespace: None,
            name: Some(nonempty(name)?),
            sub: Some(sub_of(Kind::Namespace, sub)?),
        },
        ["namespaces", ns, plural, more @ ..] => {
            let kind = kind_of(plural)?;
            if !kind.namespaced() {
                return Err(NotFound);
            }
            let (name, sub) = match more {
                [] => (None, None),
                [name] => (Some(nonempty(name)?), None),
                [name, sub] => (Some(nonempty(name)?), Some(sub_of(kind, sub)?)),
                _ => return Err(NotFound),
            };
            Target {
                kind,
                namespace: Some(nonempty(ns)?),
                name,
                sub,
            }
        }
        [plural, more @ ..] => {
            let kind = kind_of(plural)?;
            let (name, sub) = match more {
                [] => (None, None),
                // a namespaced object is named only under its namespace
                [name] if !kind.namespaced() => (Some(nonempty(name)?), None),
                [name, sub] if !kind.namespaced() => {
                    (Some(nonempty(name)?), Some(sub_of(kind, sub)?))
                }
                _ => return Err(NotFound),
            };
            Target {
                kind,
                namespace: None,
                name,
                sub,
            }
        }
        [] => return Err(NotFound),
    };
    Ok(Route::Resource(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: Kind, ns: Option<&str>, name: Option<&str>, sub: Option<Sub>) -> Route {
        Route::Resource(Target {
            kind,
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
            sub,
        })
    }

    #[test]
    fn metrics_paths_are_their_own_group() {
        assert_eq!(
            parse("/apis/metrics.k8s.io"),
            Ok(Route::Group("metrics.k8s.io".into()))
        );
        assert_eq!(
            parse("/apis/metrics.k8s.io/v1beta1"),
            Ok(Route::Resources {
                group: "metrics.k8s.io".into(),
                version: "v1beta1".into()
            })
        );
        assert_eq!(
            parse("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods"),
            Ok(Route::Metrics(metrics::Target::Pods {
                namespace: Some("default".into()),
                name: None
            }))
        );
        assert_eq!(
            parse("/apis/metrics.k8s.io/v1beta1/services"),
            Err(NotFound)
        );
    }

    #[test]
    fn paths_name_what_kubernetes_names() {
        let cases: Vec<(&str, Result<Route, NotFound>)> = vec![
            ("/version", Ok(Route::Version)),
            ("/readyz/ping", Ok(Route::Health)),
            ("/api", Ok(Route::Api)),
            ("/apis", Ok(Route::Apis)),
            ("/apis/apps", Ok(Route::Group("apps".into()))),
            ("/apis/nope", Err(NotFound)),
            (
                "/api/v1",
                Ok(Route::Resources {
                    group: "".into(),
                    version: "v1".into(),
                }),
            ),
            (
                "/apis/batch/v1",
                Ok(Route::Resources {
                    group: "batch".into(),
                    version: "v1".into(),
                }),
            ),
            ("/apis/batch/v2", Err(NotFound)),
            ("/api/v1/pods", Ok(target(Kind::Pod, None, None, None))),
            (
                "/api/v1/namespaces/default/pods",
                Ok(target(Kind::Pod, Some("default"), None, None)),
            ),
            (
                "/api/v1/namespaces/default/pods/web/log",
                Ok(target(
                    Kind::Pod,
                    Some("default"),
                    Some("web"),
                    Some(Sub::Log),
                )),
            ),
            (
                "/apis/apps/v1/namespaces/a/deployments/web/scale",
                Ok(target(
                    Kind::Deployment,
                    Some("a"),
                    Some("web"),
                    Some(Sub::Scale),
                )),
            ),
            // a ConfigMap has no scale, a Pod is not in apps
            ("/api/v1/namespaces/a/configmaps/c/scale", Err(NotFound)),
            ("/apis/apps/v1/namespaces/a/pods", Err(NotFound)),
            // the Namespace object, not a namespaced collection
            (
                "/api/v1/namespaces/kube-system",
                Ok(target(Kind::Namespace, None, Some("kube-system"), None)),
            ),
            (
                "/api/v1/namespaces/x/finalize",
                Ok(target(
                    Kind::Namespace,
                    None,
                    Some("x"),
                    Some(Sub::Finalize),
                )),
            ),
            (
                "/api/v1/namespaces",
                Ok(target(Kind::Namespace, None, None, None)),
            ),
            (
                "/api/v1/nodes/n1",
                Ok(target(Kind::Node, None, Some("n1"), None)),
            ),
            (
                "/api/v1/nodes/n1/status",
                Ok(target(Kind::Node, None, Some("n1"), Some(Sub::Status))),
            ),
            // a namespaced object is named under its namespace only
            ("/api/v1/pods/web", Err(NotFound)),
            // a cluster-scoped kind under a namespace
            ("/api/v1/namespaces/a/nodes", Err(NotFound)),
            ("/api/v1/namespaces/a/pods/web/log/more", Err(NotFound)),
            ("/api/v1/namespaces//pods", Err(NotFound)),
            ("/openapi/v3", Ok(Route::OpenApiIndex)),
            (
                "/openapi/v3/apis/apps/v1",
                Ok(Route::OpenApi {
                    group: "apps".into(),
                    version: "v1".into(),
                }),
            ),
            ("/openapi/v2", Ok(Route::OpenApiV2)),
            ("/", Err(NotFound)),
        ];
        for (path, want) in cases {
            assert_eq!(parse(path), want, "{path}");
        }
    }
}
