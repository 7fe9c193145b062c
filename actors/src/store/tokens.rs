//! ServiceAccount tokens in the store: issued for `serviceaccounts/token`
//! (a TokenRequest) and verified for `review` (a TokenReview), so the
//! signing key never leaves the store.
//!
//! The key is an ECDSA P-256 key (tokens are ES256 JWTs, which Kubernetes'
//! verifiers accept) kept as the Secret `kube-system/kubus-service-account-key`:
//! replicated by Raft like every object, sealed at rest like every Secret,
//! created at the store's first start ([`signing_key_object`]). A token is
//! valid while it has not expired, names the API's audience, and its
//! ServiceAccount (and the pod it is bound to) still exist with the uids
//! it names ([`kubus_api::token::revoked`]).

use std::sync::{Arc, Mutex};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kubus_api::rbac::UserInfo;
use kubus_api::token::{self, Claims};
use kubus_api::{meta, ApiError, Kind, ObjectRef};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use super::service::Api;

/// Where the signing key is kept.
pub const KEY_NAMESPACE: &str = "kube-system";
pub const KEY_NAME: &str = "kubus-service-account-key";
/// The Secret's type.
const KEY_TYPE: &str = "kubus.io/service-account-key";
/// Its data fields: the PKCS#8 private key, the raw public key.
const PRIVATE_FIELD: &str = "key.pk8";
const PUBLIC_FIELD: &str = "key.pub";
/// Longest bearer token verified.
const TOKEN_BYTES_MAX: usize = 16 * 1024;

fn key_ref() -> ObjectRef {
    ObjectRef::new(Kind::Secret, Some(KEY_NAMESPACE), KEY_NAME)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A fresh signing key, as the Secret that keeps it.
pub fn signing_key_object() -> Result<Value, ApiError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| ApiError::internal("cannot make a token signing key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| ApiError::internal("a token signing key just made does not parse"))?;
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": KEY_NAME, "namespace": KEY_NAMESPACE},
        "type": KEY_TYPE,
        "data": {
            PRIVATE_FIELD: b64().encode(pkcs8.as_ref()),
            PUBLIC_FIELD: b64().encode(pair.public_key().as_ref()),
        },
    }))
}

/// The signing key as parsed, with the revision it was read at.
struct Keys {
    revision: u64,
    id: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// Issues and verifies tokens; caches the parsed key until its Secret
/// changes. Cloning shares the cache.
#[derive(Clone, Default)]
pub struct Tokens {
    cached: Arc<Mutex<Option<Arc<Keys>>>>,
}

impl Tokens {
    fn keys(&self, api: &Api) -> Result<Arc<Keys>, ApiError> {
        let missing = || {
            ApiError::unavailable(
                format!("the token signing key {} is not there yet", key_ref()),
                500,
            )
        };
        let kv = super::service::read_kv(api, &key_ref().key())?.ok_or_else(missing)?;
        if let Ok(guard) = self.cached.lock() {
            if let Some(k) = guard.as_ref().filter(|k| k.revision == kv.mod_revision) {
                return Ok(k.clone());
            }
        }
        let secret = api.decode(&kv)?;
        let field = |f: &str| -> Result<Vec<u8>, ApiError> {
            secret["data"][f]
                .as_str()
                .and_then(|s| b64().decode(s).ok())
                .ok_or_else(|| {
                    ApiError::internal(format!("{} has no readable data.{f}", key_ref()))
                })
        };
        let (private, public) = (field(PRIVATE_FIELD)?, field(PUBLIC_FIELD)?);
        let digest = ring::digest::digest(&ring::digest::SHA256, &public);
        let keys = Arc::new(Keys {
            revision: kv.mod_revision,
            id: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]),
            encoding: EncodingKey::from_ec_der(&private),
            decoding: DecodingKey::from_ec_der(&public),
        });
        if let Ok(mut guard) = self.cached.lock() {
            *guard = Some(keys.clone());
        }
        Ok(keys)
    }

    /// Answer a TokenRequest for ServiceAccount `namespace/name`.
    pub fn issue(
        &self,
        api: &Api,
        namespace: &str,
        name: &str,
        request: &Value,
    ) -> Result<Value, ApiError> {
        let sa_ref = token::service_account_ref(namespace, name);
        let wanted = token::parse_request(request, &sa_ref)?;
        let sa = read(api, &sa_ref)?.ok_or_else(|| ApiError::not_found(sa_ref.clone()))?;
        let pod = match &wanted.pod {
            None => None,
            Some((pod_name, uid)) => {
                let pod_ref = ObjectRef::new(Kind::Pod, Some(namespace), pod_name);
                let pod =
                    read(api, &pod_ref)?.ok_or_else(|| ApiError::not_found(pod_ref.clone()))?;
                if uid.as_deref().is_some_and(|u| meta::uid(&pod) != Some(u)) {
                    return Err(ApiError::conflict(
                        pod_ref,
                        "the uid in spec.boundObjectRef is not the pod's",
                    ));
                }
                Some(pod)
            }
        };
        let claims = token::claims(
            &sa,
            pod.as_ref(),
            &wanted,
            jiff::Timestamp::now().as_second(),
        )?;
        let keys = self.keys(api)?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(keys.id.clone());
        let signed = jsonwebtoken::encode(&header, &claims, &keys.encoding)
            .map_err(|e| ApiError::internal(format!("signing a token: {e}")))?;
        Ok(token::response(&sa_ref, &claims, &signed))
    }

    /// The user `bearer` names, or why it names none (in words fit for a
    /// 401's message).
    pub fn verify(&self, api: &Api, bearer: &str) -> Result<UserInfo, String> {
        if bearer.len() > TOKEN_BYTES_MAX {
            return Err(format!("the token is longer than {TOKEN_BYTES_MAX} bytes"));
        }
        let keys = self.keys(api).map_err(|e| e.message)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[token::ISSUER]);
        validation.set_issuer(&[token::ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims: Claims = jsonwebtoken::decode(bearer, &keys.decoding, &validation)
            .map_err(|e| format!("the token is not valid: {e}"))?
            .claims;
        let k = &claims.kubernetes;
        let sa = read(
            api,
            &token::service_account_ref(&k.namespace, &k.serviceaccount.name),
        )
        .map_err(|e| e.message)?;
        let pod = match &k.pod {
            Some(p) => read(api, &ObjectRef::new(Kind::Pod, Some(&k.namespace), &p.name))
                .map_err(|e| e.message)?,
            None => None,
        };
        if let Some(why) = token::revoked(&claims, sa.as_ref(), pod.as_ref()) {
            return Err(why);
        }
        Ok(token::service_account_user(
            &k.namespace,
            &k.serviceaccount.name,
        ))
    }
}

fn read(api: &Api, r: &ObjectRef) -> Result<Option<Value>, ApiError> {
    super::service::read(api, &r.key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_key_is_a_secret_that_signs_and_verifies() {
        let secret = signing_key_object().expect("key");
        assert_eq!(secret["type"], KEY_TYPE);
        let field = |f: &str| {
            b64()
                .decode(secret["data"][f].as_str().expect("field"))
                .expect("base64")
        };
        let claims = json!({"iss": token::ISSUER, "aud": [token::ISSUER], "sub": "s", "exp": 4_000_000_000i64});
        let signed = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_der(&field(PRIVATE_FIELD)),
        )
        .expect("sign");
        let mut v = Validation::new(Algorithm::ES256);
        v.set_audience(&[token::ISSUER]);
        let ok = jsonwebtoken::decode::<Value>(
            &signed,
            &DecodingKey::from_ec_der(&field(PUBLIC_FIELD)),
            &v,
        );
        assert!(ok.is_ok(), "{ok:?}");
        // another key's token does not verify
        let other = signing_key_object().expect("key");
        let other_pub = b64()
            .decode(other["data"][PUBLIC_FIELD].as_str().expect("field"))
            .expect("base64");
        assert!(
            jsonwebtoken::decode::<Value>(&signed, &DecodingKey::from_ec_der(&other_pub), &v)
                .is_err()
        );
    }
}
