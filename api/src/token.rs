//! ServiceAccount tokens, as Kubernetes' TokenRequest API
//! (`serviceaccounts/token`, `authentication.k8s.io/v1`): what a request
//! asks for ([`parse_request`], with Kubernetes' limits and messages), the
//! claims a token carries ([`Claims`]: issuer, audiences, expiry, the
//! ServiceAccount and the pod it is bound to, by name and uid), the answer
//! ([`response`]) and the user a verified token is ([`service_account_user`]).
//!
//! Pure: signing and verifying are the store's
//! (`actors::store::tokens`), which alone holds the key.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::rbac::{UserInfo, AUTHENTICATED};
use crate::{meta, ApiError, FieldCause, Kind, ObjectRef};

/// The issuer of every token, and the audience the Kubernetes API accepts
/// (Kubernetes' default `--service-account-issuer`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// A token's lifetime when the request names none (Kubernetes': one hour).
pub const EXPIRATION_DEFAULT_SECONDS: i64 = 3600;
/// The shortest lifetime a request may ask for.
pub const EXPIRATION_MIN_SECONDS: i64 = 600;
/// The longest (Kubernetes' bound: 2^32 seconds).
pub const EXPIRATION_MAX_SECONDS: i64 = 1 << 32;
/// Most audiences one token names.
pub const AUDIENCES_MAX: usize = 16;
/// The ServiceAccount a pod that names none runs as; every namespace has
/// it (the ServiceAccount controller).
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Where a pod's containers find their ServiceAccount's token.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The projected volume that holds it.
pub const VOLUME_NAME: &str = "kube-api-access";
/// The ConfigMap in every namespace that holds the CA of the API's serving
/// certificate (Kubernetes' root-ca-cert-publisher), and its key: pods
/// find it as `ca.crt` beside their token.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
pub const ROOT_CA_KEY: &str = "ca.crt";
/// The lifetime of a pod's token (Kubernetes': one hour and 7 seconds);
/// the node agent asks for a new one at 80 % of it.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The group of every ServiceAccount, and the prefix of its user name.
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";
const USER_PREFIX: &str = "system:serviceaccount:";

/// A name and a uid: the ServiceAccount, or the pod a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    pub name: String,
    pub uid: String,
}

/// Kubernetes' private claims (`kubernetes.io`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: Bound,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Bound>,
}

/// What a token says (a JWT's claims, as Kubernetes writes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// What a TokenRequest asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    /// The pod the token is bound to (it stops verifying when that pod
    /// goes): its name, and its uid when the request names one.
    pub pod: Option<(String, Option<String>)>,
}

/// The user name of ServiceAccount `namespace/name`.
pub fn user_name(namespace: &str, name: &str) -> String {
    format!("{USER_PREFIX}{namespace}:{name}")
}

/// The ServiceAccount a user name is, if it is one.
pub fn service_account_of(user: &str) -> Option<(&str, &str)> {
    user.strip_prefix(USER_PREFIX)?.split_once(':')
}

/// The user of ServiceAccount `namespace/name`, with Kubernetes' groups.
pub fn service_account_user(namespace: &str, name: &str) -> UserInfo {
    UserInfo {
        name: user_name(namespace, name),
        groups: vec![
            SERVICE_ACCOUNTS_GROUP.to_string(),
            format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
            AUTHENTICATED.to_string(),
        ],
    }
}

/// Read a TokenRequest for ServiceAccount `sa` (an empty body asks for
/// the defaults). Errors name the field and the rule.
pub fn parse_request(body: &Value, sa: &ObjectRef) -> Result<Wanted, ApiError> {
    let invalid = |field: &str, rule: String| {
        ApiError::invalid(Some(sa.clone()), vec![FieldCause::new(field, rule)])
    };
    if !body.is_null() {
        let api_version = body["apiVersion"]
            .as_str()
            .unwrap_or("authentication.k8s.io/v1");
        let kind = body["kind"].as_str().unwrap_or("TokenRequest");
        if api_version != "authentication.k8s.io/v1" || kind != "TokenRequest" {
            return Err(ApiError::bad_request(format!(
                "the body of a token request is an authentication.k8s.io/v1 TokenRequest, not \
                 {api_version} {kind}"
            )));
        }
    }
    let spec = &body["spec"];
    let audiences = match &spec["audiences"] {
        Value::Null => vec![ISSUER.to_string()],
        Value::Array(a) if a.is_empty() => vec![ISSUER.to_string()],
        Value::Array(a) => {
            let mut out = Vec::with_capacity(a.len());
            for (i, v) in a.iter().enumerate() {
                match v.as_str() {
                    Some(s) if !s.is_empty() => out.push(s.to_string()),
                    _ => {
                        return Err(invalid(
                            &format!("spec.audiences[{i}]"),
                            "must be a non-empty string".into(),
                        ))
                    }
                }
            }
            if out.len() > AUDIENCES_MAX {
                return Err(invalid(
                    "spec.audiences",
                    format!("at most {AUDIENCES_MAX} audiences"),
                ));
            }
            out
        }
        other => {
            return Err(invalid(
                "spec.audiences",
                format!("must be a list of strings, not {}", meta::type_name(other)),
            ))
        }
    };
    let expiration_seconds = match &spec["expirationSeconds"] {
        Value::Null => EXPIRATION_DEFAULT_SECONDS,
        v => match v.as_i64() {
            Some(s) if s < EXPIRATION_MIN_SECONDS => {
                return Err(invalid(
                    "spec.expirationSeconds",
                    format!(
                        "may not specify a duration less than {EXPIRATION_MIN_SECONDS} seconds"
                    ),
                ))
            }
            Some(s) if s > EXPIRATION_MAX_SECONDS => {
                return Err(invalid(
                    "spec.expirationSeconds",
                    format!(
                        "may not specify a duration larger than {EXPIRATION_MAX_SECONDS} seconds"
                    ),
                ))
            }
            Some(s) => s,
            None => {
                return Err(invalid(
                    "spec.expirationSeconds",
                    "must be an integer".into(),
                ))
            }
        },
    };
    let pod = match &spec["boundObjectRef"] {
        Value::Null => None,
        r => {
            let kind = r["kind"].as_str().unwrap_or_default();
            if kind != "Pod" {
                return Err(invalid(
                    "spec.boundObjectRef.kind",
                    format!("{kind:?}: kubus binds tokens to a Pod"),
                ));
            }
            let Some(name) = r["name"].as_str().filter(|n| !n.is_empty()) else {
                return Err(invalid("spec.boundObjectRef.name", "required".into()));
            };
            Some((
                name.to_string(),
                r["uid"]
                    .as_str()
                    .filter(|u| !u.is_empty())
                    .map(str::to_string),
            ))
        }
    };
    Ok(Wanted {
        audiences,
        expiration_seconds,
        pod,
    })
}

/// The claims of a token for ServiceAccount `sa` (bound to `pod`), issued
/// at `now` (seconds since the epoch).
pub fn claims(
    sa: &Value,
    pod: Option<&Value>,
    wanted: &Wanted,
    now: i64,
) -> Result<Claims, ApiError> {
    let field = |o: &Value, f: fn(&Value) -> Option<&str>, what: &str| {
        f(o).map(str::to_string)
            .ok_or_else(|| ApiError::internal(format!("stored object without {what}")))
    };
    let namespace = field(sa, meta::namespace, "a namespace")?;
    let name = field(sa, meta::name, "a name")?;
    let bound = |o: &Value| -> Result<Bound, ApiError> {
        Ok(Bound {
            name: field(o, meta::name, "a name")?,
            uid: field(o, meta::uid, "a uid")?,
        })
    };
    Ok(Claims {
        iss: ISSUER.to_string(),
        sub: user_name(&namespace, &name),
        aud: wanted.audiences.clone(),
        exp: now.saturating_add(wanted.expiration_seconds),
        iat: now,
        nbf: now,
        kubernetes: KubernetesClaims {
            namespace,
            serviceaccount: bound(sa)?,
            pod: pod.map(bound).transpose()?,
        },
    })
}

/// The TokenRequest answered: the request's spec as granted, and the
/// token with its expiry.
pub fn response(sa: &ObjectRef, claims: &Claims, token: &str) -> Value {
    let expires = jiff::Timestamp::from_second(claims.exp)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let mut spec = json!({
        "audiences": claims.aud,
        "expirationSeconds": claims.exp - claims.iat,
    });
    if let Some(pod) = &claims.kubernetes.pod {
        spec["boundObjectRef"] =
            json!({"kind": "Pod", "apiVersion": "v1", "name": pod.name, "uid": pod.uid});
    }
    json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": {"name": sa.name, "namespace": sa.namespace, "creationTimestamp": null},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": expires},
    })
}

/// Why verified `claims` no longer stand, given the ServiceAccount and
/// the bound pod as the store holds them now (a token outlives neither).
pub fn revoked(claims: &Claims, sa: Option<&Value>, pod: Option<&Value>) -> Option<String> {
    let k = &claims.kubernetes;
    let who = format!("{}/{}", k.namespace, k.serviceaccount.name);
    match sa {
        Some(sa) if meta::uid(sa) == Some(k.serviceaccount.uid.as_str()) => {}
        Some(_) => {
            return Some(format!(
                "service account {who} was deleted and created again"
            ))
        }
        None => return Some(format!("service account {who} has been deleted")),
    }
    let bound = k.pod.as_ref()?;
    match pod {
        Some(p) if meta::uid(p) == Some(bound.uid.as_str()) => None,
        _ => Some(format!(
            "the pod {}/{} the token is bound to is gone",
            k.namespace, bound.name
        )),
    }
}

/// The ServiceAccount a pod runs as (Kubernetes' default: `default`).
pub fn pod_service_account(pod: &Value) -> &str {
    pod.pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
}

/// The reference of ServiceAccount `name` in `namespace`.
pub fn service_account_ref(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef::new(Kind::ServiceAccount, Some(namespace), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa() -> (ObjectRef, Value) {
        (
            service_account_ref("team", "robot"),
            json!({"metadata": {"name": "robot", "namespace": "team", "uid": "u-1"}}),
        )
    }

    #[test]
    fn requests_take_kubernetes_defaults_and_limits() {
        let (r, _) = sa();
        let w = parse_request(&Value::Null, &r).expect("empty");
        assert_eq!(w.audiences, vec![ISSUER.to_string()]);
        assert_eq!(w.expiration_seconds, 3600);
        assert_eq!(w.pod, None);
        let w = parse_request(
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": ["vault"], "expirationSeconds": 7200,
                         "boundObjectRef": {"kind": "Pod", "name": "p", "uid": "pu"}}}),
            &r,
        )
        .expect("full");
        assert_eq!(w.audiences, vec!["vault".to_string()]);
        assert_eq!(w.pod, Some(("p".into(), Some("pu".into()))));
        let cases = [
            (
                json!({"spec": {"expirationSeconds": 60}}),
                "spec.expirationSeconds: may not specify a duration less than 600 seconds",
            ),
            (
                json!({"spec": {"expirationSeconds": "1h"}}),
                "spec.expirationSeconds: must be an integer",
            ),
            (
                json!({"spec": {"audiences": [""]}}),
                "spec.audiences[0]: must be a non-empty string",
            ),
            (
                json!({"spec": {"audiences": "x"}}),
                "spec.audiences: must be a list of strings",
            ),
            (
                json!({"spec": {"boundObjectRef": {"kind": "Secret", "name": "s"}}}),
                "spec.boundObjectRef.kind: \"Secret\": kubus binds tokens to a Pod",
            ),
            (
                json!({"spec": {"boundObjectRef": {"kind": "Pod"}}}),
                "spec.boundObjectRef.name: required",
            ),
            (
                json!({"kind": "Pod", "apiVersion": "v1"}),
                "is an authentication.k8s.io/v1 TokenRequest, not v1 Pod",
            ),
        ];
        for (body, want) in cases {
            let got = parse_request(&body, &r)
                .err()
                .map(|e| e.message)
                .unwrap_or_default();
            assert!(got.contains(want), "{got:?} should say {want:?}");
        }
    }

    #[test]
    fn claims_name_the_account_and_pod_and_lapse_with_them() {
        let (r, sa) = sa();
        let pod = json!({"metadata": {"name": "p", "namespace": "team", "uid": "pu"}});
        let w = parse_request(&json!({"spec": {"expirationSeconds": 600}}), &r).expect("w");
        let c = claims(&sa, Some(&pod), &w, 1_000).expect("claims");
        assert_eq!(c.sub, "system:serviceaccount:team:robot");
        assert_eq!((c.iat, c.exp), (1_000, 1_600));
        assert_eq!(
            c.kubernetes.pod.as_ref().map(|p| p.uid.as_str()),
            Some("pu")
        );
        assert_eq!(revoked(&c, Some(&sa), Some(&pod)), None);
        let recreated = json!({"metadata": {"name": "robot", "namespace": "team", "uid": "u-2"}});
        assert!(
            revoked(&c, Some(&recreated), Some(&pod)).is_some_and(|m| m.contains("created again"))
        );
        assert!(revoked(&c, None, Some(&pod)).is_some_and(|m| m.contains("has been deleted")));
        assert!(revoked(&c, Some(&sa), None).is_some_and(|m| m.contains("pod team/p")));
        let out = response(&r, &c, "t0k3n");
        assert_eq!(out["status"]["token"], "t0k3n");
        assert_eq!(out["status"]["expirationTimestamp"], "1970-01-01T00:26:40Z");
        assert_eq!(out["spec"]["boundObjectRef"]["name"], "p");
        let user = service_account_user("team", "robot");
        assert_eq!(service_account_of(&user.name), Some(("team", "robot")));
        assert!(user
            .groups
            .contains(&"system:serviceaccounts:team".to_string()));
    }
}
