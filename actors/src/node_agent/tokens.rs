//! The ServiceAccount tokens of the node's pods, as the kubelet's token
//! manager: each projected `serviceAccountToken` source gets a token of the
//! pod's ServiceAccount bound to the pod (it stops working when the pod
//! goes), asked for once and again when [`REFRESH_AT_PERCENT`] of its
//! lifetime has passed; between, the one held is written. At most
//! [`HELD_MAX`] tokens are held (all are forgotten when full).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use kubus_api::{meta, token};
use kubus_bus::Client;
use serde_json::{json, Value};

use super::config::{self, TokenKey};

/// A token is asked for again once this share of its lifetime has passed
/// (Kubernetes' kubelet: 80 %).
pub const REFRESH_AT_PERCENT: u64 = 80;
/// Most tokens one agent holds.
pub const HELD_MAX: usize = 100_000;

#[derive(Debug, Clone)]
struct Held {
    token: String,
    fetched_ms: u64,
    lifetime_ms: u64,
}

/// Whether a token fetched at `fetched_ms` for `lifetime_ms` is still the
/// one to write at `now_ms`.
pub fn fresh(fetched_ms: u64, lifetime_ms: u64, now_ms: u64) -> bool {
    now_ms < fetched_ms.saturating_add(lifetime_ms / 100 * REFRESH_AT_PERCENT)
}

/// The TokenRequest for `key`, bound to `pod`.
pub fn request(pod: &Value, key: &TokenKey) -> Value {
    let mut spec = json!({
        "expirationSeconds": key.expiration_seconds,
        "boundObjectRef": {
            "kind": "Pod",
            "apiVersion": "v1",
            "name": meta::name(pod).unwrap_or_default(),
            "uid": meta::uid(pod).unwrap_or_default(),
        },
    });
    if let Some(a) = &key.audience {
        spec["audiences"] = json!([a]);
    }
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
}

/// The tokens the node's pods hold. Cloning shares them.
#[derive(Clone, Default)]
pub struct Tokens {
    held: Arc<Mutex<HashMap<(String, TokenKey), Held>>>,
}

impl Tokens {
    /// Every token `pod`'s projected volumes ask for: held, or asked for
    /// now (an error names why there is none).
    pub async fn of(
        &self,
        client: &Client,
        pod: &Value,
        now_ms: u64,
    ) -> BTreeMap<TokenKey, Result<String, String>> {
        let uid = meta::uid(pod).unwrap_or_default().to_string();
        let namespace = meta::namespace(pod).unwrap_or("default");
        let account = token::pod_service_account(pod);
        let mut out = BTreeMap::new();
        for key in config::token_requests(pod) {
            let slot = (uid.clone(), key.clone());
            let held = self
                .held
                .lock()
                .ok()
                .and_then(|h| h.get(&slot).cloned())
                .filter(|h| fresh(h.fetched_ms, h.lifetime_ms, now_ms));
            if let Some(h) = held {
                out.insert(key, Ok(h.token));
                continue;
            }
            let got = client
                .create_token(namespace, account, request(pod, &key))
                .await
                .map_err(|e| {
                    format!("cannot get a token of serviceaccount {namespace}/{account}: {e}")
                })
                .and_then(|answer| {
                    answer["status"]["token"]
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| "the store's answer holds no token".to_string())
                });
            if let (Ok(t), Ok(mut h)) = (&got, self.held.lock()) {
                if h.len() >= HELD_MAX {
                    h.clear();
                }
                h.insert(
                    slot,
                    Held {
                        token: t.clone(),
                        fetched_ms: now_ms,
                        lifetime_ms: u64::try_from(key.expiration_seconds)
                            .unwrap_or(0)
                            .saturating_mul(1000),
                    },
                );
            }
            out.insert(key, got);
        }
        out
    }

    /// Forget the tokens of a pod that is gone.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut h) = self.held.lock() {
            h.retain(|(u, _), _| u != uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_renewed_at_eighty_percent_of_its_life() {
        let life = 3_607_000;
        assert!(fresh(1_000, life, 1_000));
        assert!(fresh(1_000, life, 1_000 + life / 100 * 80 - 1));
        assert!(!fresh(1_000, life, 1_000 + life / 100 * 80));
    }

    #[test]
    fn requests_bind_the_pod_and_name_the_audience() {
        let pod = json!({"metadata": {"name": "p", "namespace": "n", "uid": "u"}});
        let key = TokenKey {
            audience: Some("vault".into()),
            expiration_seconds: 3607,
        };
        let r = request(&pod, &key);
        assert_eq!(r["spec"]["boundObjectRef"]["uid"], "u");
        assert_eq!(r["spec"]["audiences"], json!(["vault"]));
        assert_eq!(r["spec"]["expirationSeconds"], 3607);
        let plain = request(
            &pod,
            &TokenKey {
                audience: None,
                expiration_seconds: 600,
            },
        );
        assert!(plain["spec"].get("audiences").is_none());
    }
}
