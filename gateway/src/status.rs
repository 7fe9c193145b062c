//! Errors as Kubernetes `Status` objects with their HTTP codes. Pure.

use http::StatusCode;
use kubus_api::error::{ApiError, Reason};
use kubus_api::{Kind, ObjectRef};
use kubus_bus::ClientError;
use serde_json::{json, Value};

/// A `Status` and its HTTP code.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: StatusCode,
    pub status: Value,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after_secs: Option<u64>,
}

/// Kubernetes' `reason` word and HTTP code for a kubus reason.
pub fn code_of(reason: Reason) -> (StatusCode, &'static str) {
    let code =
        StatusCode::from_u16(reason.http_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, reason.status_reason())
}

fn details(object: Option<&ObjectRef>) -> Value {
    match object {
        Some(o) => json!({
            "name": o.name,
            "group": o.kind.group(),
            "kind": o.kind.resource(),
        }),
        None => json!({}),
    }
}

/// Kubernetes' words for a missing or existing object:
/// `deployments.apps "web" not found`.
fn resource_words(o: &ObjectRef) -> String {
    match o.kind.group() {
        "" => o.kind.resource().to_string(),
        g => format!("{}.{g}", o.kind.resource()),
    }
}

/// The `Status` of an API error.
pub fn from_api(e: &ApiError) -> Failure {
    let (code, reason) = code_of(e.reason);
    let message = match (e.reason, &e.object) {
        (Reason::NotFound, Some(o)) => format!("{} {:?} not found", resource_words(o), o.name),
        (Reason::AlreadyExists, Some(o)) => {
            format!("{} {:?} already exists", resource_words(o), o.name)
        }
        _ => e.message.clone(),
    };
    let mut d = details(e.object.as_ref());
    // a server-side apply's conflicts name their fields and managers
    let cause_reason = match e.reason {
        Reason::Conflict => "FieldManagerConflict",
        _ => "FieldValueInvalid",
    };
    if !e.causes.is_empty() {
        d["causes"] = json!(e
            .causes
            .iter()
            .map(|c| json!({"reason": cause_reason, "message": c.rule, "field": c.field}))
            .collect::<Vec<_>>());
    }
    let retry_after_secs = e.retry_after_ms.map(|ms| ms.div_ceil(1000).max(1));
    if let Some(s) = retry_after_secs {
        d["retryAfterSeconds"] = json!(s);
    }
    let message = if e.reason == Reason::Invalid && !e.causes.is_empty() {
        let what = e
            .object
            .as_ref()
            .map(|o| format!("{} {:?} is invalid: ", o.kind, o.name))
            .unwrap_or_default();
        let causes: Vec<String> = e
            .causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.rule))
            .collect();
        format!("{what}{}", causes.join(", "))
    } else {
        message
    };
    Failure {
        code,
        status: status(code, reason, &message, d),
        retry_after_secs,
    }
}

fn status(code: StatusCode, reason: &str, message: &str, details: Value) -> Value {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if details.as_object().is_some_and(|d| !d.is_empty()) {
        s["details"] = details;
    }
    s
}

/// The `Status` of a bus client's error.
pub fn from_client(e: &ClientError) -> Failure {
    match e {
        ClientError::Api(api) => from_api(api),
        ClientError::NoResponders { .. } | ClientError::Nats(_) => Failure {
            code: StatusCode::SERVICE_UNAVAILABLE,
            status: status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                &e.to_string(),
                json!({"retryAfterSeconds": 1}),
            ),
            retry_after_secs: Some(1),
        },
        ClientError::Timeout { .. } => Failure {
            code: StatusCode::GATEWAY_TIMEOUT,
            status: status(
                StatusCode::GATEWAY_TIMEOUT,
                "Timeout",
                &e.to_string(),
                json!({}),
            ),
            retry_after_secs: None,
        },
        ClientError::Codec(_) | ClientError::UnexpectedReply { .. } => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &e.to_string(),
        ),
    }
}

/// A `Status` with a code, a reason word and a message.
pub fn plain(code: StatusCode, reason: &str, message: &str) -> Failure {
    Failure {
        code,
        status: status(code, reason, message, json!({})),
        retry_after_secs: None,
    }
}

/// 404 for a path that names nothing.
pub fn not_found_path() -> Failure {
    plain(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
    )
}

/// 405 for a verb a path does not take.
pub fn method_not_allowed(method: &str, what: &str) -> Failure {
    plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        &format!(
            "the server does not allow this method on the requested resource: {method} {what}"
        ),
    )
}

/// The success `Status` some verbs answer (an eviction).
pub fn success(kind: Kind, name: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {"name": name, "group": kind.group(), "kind": kind.resource()},
        "code": 201,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubus_api::error::FieldCause;

    #[test]
    fn api_errors_read_as_kubernetes_statuses() {
        let web = ObjectRef::new(Kind::Deployment, Some("default"), "web");
        let f = from_api(&ApiError::not_found(web.clone()));
        assert_eq!(f.code, StatusCode::NOT_FOUND);
        assert_eq!(f.status["message"], "deployments.apps \"web\" not found");
        assert_eq!(f.status["reason"], "NotFound");
        assert_eq!(
            f.status["details"],
            json!({"name": "web", "group": "apps", "kind": "deployments"})
        );
        let f = from_api(&ApiError::already_exists(ObjectRef::new(
            Kind::Pod,
            Some("a"),
            "p",
        )));
        assert_eq!(
            (f.code, f.status["message"].as_str()),
            (StatusCode::CONFLICT, Some("pods \"p\" already exists"))
        );
        let f = from_api(&ApiError::invalid(
            Some(web),
            vec![FieldCause::new("spec.replicas", "must be at least 0")],
        ));
        assert_eq!(f.code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(f.status["details"]["causes"][0]["field"], "spec.replicas");
        assert!(f.status["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.replicas: must be at least 0")));
        let f = from_api(&ApiError::too_many_requests("budget", 2500));
        assert_eq!(
            (f.code, f.retry_after_secs),
            (StatusCode::TOO_MANY_REQUESTS, Some(3))
        );
        let f = from_api(&ApiError::expired("too old resource version: 3"));
        assert_eq!(
            (f.code, &f.status["reason"]),
            (StatusCode::GONE, &json!("Expired"))
        );
    }
}
