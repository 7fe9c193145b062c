//! Bearer tokens: a request without a client certificate may carry
//! `Authorization: Bearer <token>` (a ServiceAccount's, from `kubus create
//! token` or a pod's projected token). The store verifies it (the `review`
//! subject, Kubernetes' TokenReview); an answer is kept for
//! [`VERIFIED_TTL`], so a deleted ServiceAccount's tokens stop working
//! within that time, and at most [`VERIFIED_MAX`] answers are kept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderMap;
use kubus_api::rbac::UserInfo;
use kubus_bus::Client;

/// How long a verified token is trusted without asking again.
pub const VERIFIED_TTL: Duration = Duration::from_secs(10);
/// Most verified tokens remembered (all are forgotten when full).
pub const VERIFIED_MAX: usize = 1024;

/// The token of an `Authorization: Bearer` header, if there is one.
pub fn token_of(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Tokens the store verified lately, with the user each names.
#[derive(Default)]
pub struct Verified {
    seen: Mutex<HashMap<String, (UserInfo, Instant)>>,
}

impl Verified {
    /// The user `token` names: remembered, or asked of the store; the
    /// error is the 401's message.
    pub async fn user(&self, client: &Client, token: &str) -> Result<UserInfo, String> {
        if let Some(user) = self.remembered(token, Instant::now()) {
            return Ok(user);
        }
        let review = client.review_token(token).await.map_err(|e| match e {
            kubus_bus::ClientError::Api(api) => api.message,
            other => format!("the token could not be verified: {other}"),
        })?;
        self.remember(token, review.user.clone(), Instant::now());
        Ok(review.user)
    }

    fn remembered(&self, token: &str, now: Instant) -> Option<UserInfo> {
        let seen = self.seen.lock().ok()?;
        let (user, at) = seen.get(token)?;
        (now.duration_since(*at) < VERIFIED_TTL).then(|| user.clone())
    }

    fn remember(&self, token: &str, user: UserInfo, now: Instant) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= VERIFIED_MAX {
                seen.clear();
            }
            seen.insert(token.to_string(), (user, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers_are_read_and_answers_expire() {
        let mut h = HeaderMap::new();
        assert_eq!(token_of(&h), None);
        h.insert(
            http::header::AUTHORIZATION,
            "Bearer abc.def".parse().expect("header"),
        );
        assert_eq!(token_of(&h), Some("abc.def"));
        h.insert(
            http::header::AUTHORIZATION,
            "Basic dXNlcg==".parse().expect("header"),
        );
        assert_eq!(token_of(&h), None);
        let v = Verified::default();
        let t0 = Instant::now();
        let user = UserInfo {
            name: "system:serviceaccount:a:b".into(),
            groups: vec![],
        };
        v.remember("t", user.clone(), t0);
        assert_eq!(v.remembered("t", t0), Some(user));
        assert_eq!(v.remembered("t", t0 + VERIFIED_TTL), None);
        for i in 0..VERIFIED_MAX {
            v.remember(&i.to_string(), UserInfo::default(), t0);
        }
        assert!(v.seen.lock().expect("lock").len() <= VERIFIED_MAX);
    }
}
