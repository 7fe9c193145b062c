//! The typed error every API call and manifest apply can return, modelled on
//! Kubernetes' `metav1.Status`: a reason a client can act on, a message for
//! people, the object concerned and, for invalid input, one cause per field.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::kind::ObjectRef;

/// What kind of failure; a client branches on this, never on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reason {
    NotFound,
    AlreadyExists,
    /// A compare-and-swap precondition (resourceVersion) did not hold.
    Conflict,
    /// The object breaks a validation rule; see `causes`.
    Invalid,
    /// The request itself is malformed (not an object problem).
    BadRequest,
    Forbidden,
    /// The store cannot serve now; retry after `retry_after_ms`.
    Unavailable,
    /// Refused for now, as Kubernetes' HTTP 429: an eviction that a
    /// PodDisruptionBudget does not allow at the moment. The same request
    /// may succeed later; `retry_after_ms` says when to try again.
    TooManyRequests,
    TooLarge,
    Internal,
    /// The requested revision is older than the history kept (Kubernetes'
    /// 410 Gone): relist.
    Expired,
}

impl Reason {
    /// Kubernetes' HTTP status code for this reason (the gateway answers
    /// with it; metrics label requests by it).
    pub fn http_code(self) -> u16 {
        match self {
            Reason::NotFound => 404,
            Reason::AlreadyExists | Reason::Conflict => 409,
            Reason::Invalid => 422,
            Reason::BadRequest => 400,
            Reason::Forbidden => 403,
            Reason::Unavailable => 503,
            Reason::TooManyRequests => 429,
            Reason::TooLarge => 413,
            Reason::Internal => 500,
            Reason::Expired => 410,
        }
    }

    /// Kubernetes' `reason` word in a `Status` (`metav1.StatusReason`).
    pub fn status_reason(self) -> &'static str {
        match self {
            Reason::NotFound => "NotFound",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Invalid => "Invalid",
            Reason::BadRequest => "BadRequest",
            Reason::Forbidden => "Forbidden",
            Reason::Unavailable => "ServiceUnavailable",
            Reason::TooManyRequests => "TooManyRequests",
            Reason::TooLarge => "RequestEntityTooLarge",
            Reason::Internal => "InternalError",
            Reason::Expired => "Expired",
        }
    }
}

/// The cause of a compacted-history `Expired` error that names the
/// revision the history was compacted to.
pub const OLDEST_KEPT: &str = "compactedTo";

/// One broken rule: the field path (`spec.template.spec.containers[0].name`)
/// and the rule, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldCause {
    pub field: String,
    pub rule: String,
}

impl FieldCause {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> FieldCause {
        FieldCause {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for FieldCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

/// A failed API call or a refused object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct ApiError {
    pub reason: Reason,
    pub message: String,
    #[serde(default)]
    pub object: Option<ObjectRef>,
    #[serde(default)]
    pub causes: Vec<FieldCause>,
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    pub fn new(reason: Reason, message: impl Into<String>) -> ApiError {
        ApiError {
            reason,
            message: message.into(),
            object: None,
            causes: Vec::new(),
            retry_after_ms: None,
        }
    }

    pub fn not_found(object: ObjectRef) -> ApiError {
        ApiError {
            message: format!("{object} not found"),
            object: Some(object),
            ..ApiError::new(Reason::NotFound, "")
        }
    }

    pub fn already_exists(object: ObjectRef) -> ApiError {
        ApiError {
            message: format!("{object} already exists"),
            object: Some(object),
            ..ApiError::new(Reason::AlreadyExists, "")
        }
    }

    pub fn conflict(object: ObjectRef, message: impl Into<String>) -> ApiError {
        ApiError {
            message: format!(
                "operation on {object} failed: {}; read the latest and try again",
                message.into()
            ),
            object: Some(object),
            ..ApiError::new(Reason::Conflict, "")
        }
    }

    /// An invalid object: `object` may be None when the manifest is too
    /// broken to name one.
    pub fn invalid(object: Option<ObjectRef>, causes: Vec<FieldCause>) -> ApiError {
        let what = match &object {
            Some(o) => format!("{o} is invalid"),
            None => "object is invalid".to_string(),
        };
        let list: Vec<String> = causes.iter().map(ToString::to_string).collect();
        ApiError {
            message: format!("{what}: {}", list.join("; ")),
            object,
            causes,
            ..ApiError::new(Reason::Invalid, "")
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(Reason::BadRequest, message)
    }

    pub fn unavailable(message: impl Into<String>, retry_after_ms: u64) -> ApiError {
        ApiError {
            retry_after_ms: Some(retry_after_ms),
            ..ApiError::new(Reason::Unavailable, message)
        }
    }

    /// Refused for now (HTTP 429); try again after `retry_after_ms`.
    pub fn too_many_requests(message: impl Into<String>, retry_after_ms: u64) -> ApiError {
        ApiError {
            retry_after_ms: Some(retry_after_ms),
            ..ApiError::new(Reason::TooManyRequests, message)
        }
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(Reason::TooLarge, message)
    }

    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(Reason::Expired, message)
    }

    /// `Expired` because the history was compacted: its one cause names
    /// the revision it was compacted to ([`OLDEST_KEPT`]), from which a
    /// reader may start again.
    pub fn compacted(message: impl Into<String>, compacted_to: u64) -> ApiError {
        let mut e = ApiError::new(Reason::Expired, message);
        e.causes = vec![FieldCause::new(OLDEST_KEPT, compacted_to.to_string())];
        e
    }

    /// The revision an `Expired` error says the history was compacted to.
    pub fn compacted_to(&self) -> Option<u64> {
        (self.reason == Reason::Expired)
            .then(|| self.causes.iter().find(|c| c.field == OLDEST_KEPT))
            .flatten()
            .and_then(|c| c.rule.parse().ok())
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(Reason::Internal, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.reason, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::Kind;

    #[test]
    fn invalid_names_object_field_and_rule() {
        let e = ApiError::invalid(
            Some(ObjectRef::new(Kind::Deployment, Some("default"), "web")),
            vec![FieldCause::new(
                "spec.replicas",
                "must be greater than or equal to 0",
            )],
        );
        assert_eq!(
            e.to_string(),
            "Invalid: Deployment default/web is invalid: spec.replicas: must be greater than or equal to 0"
        );
    }
}
