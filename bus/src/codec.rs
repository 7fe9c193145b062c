//! Message bodies: MessagePack with named fields by default (compact, and
//! the only rmp form that round-trips Kubernetes types), JSON when the
//! `Kubus-Codec: json` header asks for it (people and foreign clients).

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use crate::subject::{CODEC_JSON, HEADER_CODEC};

/// Largest body kubus sends or accepts (NATS' default max_payload is 1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode message: {0}")]
    Encode(String),
    #[error("cannot decode message: {0}")]
    Decode(String),
    #[error("message of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
}

/// The body format of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    MessagePack,
    Json,
}

impl Codec {
    /// The codec a message's headers ask for.
    pub fn from_headers(headers: Option<&HeaderMap>) -> Codec {
        match headers.and_then(|h| h.get(HEADER_CODEC)) {
            Some(v) if v.as_str().eq_ignore_ascii_case(CODEC_JSON) => Codec::Json,
            _ => Codec::MessagePack,
        }
    }

    pub fn encode<T: Serialize>(self, value: &T) -> Result<Bytes, CodecError> {
        let body = match self {
            Codec::MessagePack => {
                rmp_serde::to_vec_named(value).map_err(|e| CodecError::Encode(e.to_string()))?
            }
            Codec::Json => {
                serde_json::to_vec(value).map_err(|e| CodecError::Encode(e.to_string()))?
            }
        };
        if body.len() > MAX_BODY_BYTES {
            return Err(CodecError::TooLarge {
                size: body.len(),
                limit: MAX_BODY_BYTES,
            });
        }
        Ok(Bytes::from(body))
    }

    pub fn decode<T: DeserializeOwned>(self, body: &[u8]) -> Result<T, CodecError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(CodecError::TooLarge {
                size: body.len(),
                limit: MAX_BODY_BYTES,
            });
        }
        match self {
            Codec::MessagePack => {
                rmp_serde::from_slice(body).map_err(|e| CodecError::Decode(e.to_string()))
            }
            Codec::Json => {
                serde_json::from_slice(body).map_err(|e| CodecError::Decode(e.to_string()))
            }
        }
    }
}

/// Encode as MessagePack (the default codec).
pub fn encode<T: Serialize>(value: &T) -> Result<Bytes, CodecError> {
    Codec::MessagePack.encode(value)
}

/// Decode MessagePack (the default codec).
pub fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    Codec::MessagePack.decode(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_values_round_trip_in_both_codecs() {
        let v = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}});
        for codec in [Codec::MessagePack, Codec::Json] {
            let bytes = codec.encode(&v).expect("encodes");
            let back: serde_json::Value = codec.decode(&bytes).expect("decodes");
            assert_eq!(back, v);
        }
    }

    #[test]
    fn oversized_bodies_are_refused() {
        let big = vec![0u8; MAX_BODY_BYTES + 1];
        assert!(matches!(
            decode::<serde_json::Value>(&big),
            Err(CodecError::TooLarge { .. })
        ));
    }
}
