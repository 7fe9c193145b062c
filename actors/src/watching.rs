//! Plumbing shared by every watching actor: a watch turned into an actix
//! stream of [`Watched`] items tagged with their kind, and owner references.

use actix::prelude::*;
use futures::Stream;
use kubus_api::Kind;
use kubus_bus::watch::{watch, WatchItem, WatchSpec};
use kubus_bus::Client;
use serde_json::{json, Value};

/// One watch item of one kind, delivered to an actor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Watched {
    pub kind: Kind,
    pub item: WatchItem,
}

/// Start a watch and return it as a stream an actor can `add_stream`.
pub fn watched(client: &Client, spec: WatchSpec) -> impl Stream<Item = Watched> {
    let kind = spec.kind;
    let rx = watch(client.clone(), spec);
    futures::stream::unfold(rx, move |mut rx| async move {
        let item = rx.recv().await?;
        Some((Watched { kind, item }, rx))
    })
}

/// The controller owner reference that makes `owner` own a new object.
pub fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": kubus_api::meta::name(owner).unwrap_or_default(),
        "uid": kubus_api::meta::uid(owner).unwrap_or_default(),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A stable hash of a JSON value (FNV-1a over its canonical text; serde_json
/// maps are sorted by key, so equal values hash equal).
pub fn stable_hash(value: &Value) -> u64 {
    let text = value.to_string();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_sensitive() {
        let a = json!({"b": 1, "a": [1, 2]});
        let b = json!({"a": [1, 2], "b": 1});
        assert_eq!(stable_hash(&a), stable_hash(&b));
        assert_ne!(stable_hash(&a), stable_hash(&json!({"a": [2, 1], "b": 1})));
    }

    #[test]
    fn controller_refs_name_the_owner() {
        let owner = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-1", "uid": "u"}});
        let r = controller_ref(&owner);
        assert_eq!(r["uid"], "u");
        assert_eq!(r["controller"], true);
    }
}
