//! The values the store takes and gives: transactions ([`Txn`], [`Op`],
//! [`Precondition`]), stored objects ([`KeyValue`]), answers
//! ([`TxnOutcome`], [`RangeResult`]) and applied changes ([`Change`]).
//!
//! Plain data with serde derives; no I/O. Byte values are encoded as
//! MessagePack `bin`, not as arrays of integers.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// Longest key, in bytes.
pub const KEY_BYTES_MAX: usize = 4096;
/// Most operations in one transaction.
pub const TXN_OPS_MAX: usize = 10_000;

/// An all-or-nothing group of writes: one Raft entry, at most one revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// The writes, in order.
    pub ops: Vec<Op>,
}

/// One write of a [`Txn`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create or replace `key`.
    Put {
        /// The object's key, e.g. `/pods/default/web-1`.
        key: String,
        /// The object's bytes (opaque to the store).
        #[serde(with = "as_bytes")]
        value: Vec<u8>,
        /// What must be true of `key` before the transaction.
        expect: Precondition,
    },
    /// Remove `key`; removing an absent key is a no-op.
    Delete {
        /// The object's key.
        key: String,
        /// What must be true of `key` before the transaction.
        expect: Precondition,
    },
    /// Write nothing; only require `expect` of `key` (etcd's compare
    /// without a write). Fences a write on another object: a controller's
    /// writes carry a check that its Lease is still the one it acquired.
    Check {
        /// The key checked.
        key: String,
        /// What must be true of it.
        expect: Precondition,
    },
}

impl Op {
    /// The key this op writes.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } | Op::Check { key, .. } => key,
        }
    }

    /// The condition this op checks.
    pub fn expect(&self) -> &Precondition {
        match self {
            Op::Put { expect, .. } | Op::Delete { expect, .. } | Op::Check { expect, .. } => expect,
        }
    }
}

/// A condition on a key, checked against the state before the transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precondition {
    /// Always holds.
    None,
    /// The key does not exist.
    Absent,
    /// The key exists.
    Present,
    /// The key's `mod_revision` is exactly this (etcd's compare on
    /// `mod_revision`: an absent key has `mod_revision` 0, so
    /// `ModRevision(0)` means absent).
    ModRevision(u64),
    /// The key exists and was created at exactly this revision (so it was
    /// not deleted and created again since): the identity of one Lease
    /// acquisition.
    CreateRevision(u64),
}

/// One stored object with its revision bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The bytes.
    #[serde(with = "as_bytes")]
    pub value: Vec<u8>,
    /// The revision that created the key (since its last deletion).
    pub create_revision: u64,
    /// The revision of the last write to the key.
    pub mod_revision: u64,
    /// Writes since creation: 1 when created.
    pub version: u64,
}

/// A consistent page of a prefix scan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeResult {
    /// The objects, in key order.
    pub items: Vec<KeyValue>,
    /// The revision all `items` were read at.
    pub revision: u64,
    /// More keys with the prefix follow the last item.
    pub more: bool,
}

/// What a proposed transaction did once applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOutcome {
    /// Every precondition held and every op was carried out.
    Committed {
        /// The transaction's revision. A transaction that changed nothing
        /// (only deletes of absent keys) consumes no revision and reports
        /// the current one.
        revision: u64,
        /// Per op: the written object, `None` for a delete.
        kvs: Vec<Option<KeyValue>>,
    },
    /// The precondition of `ops[op_index]` (the first to fail) did not
    /// hold; nothing was written.
    Failed {
        /// Index of the failing op.
        op_index: usize,
        /// That op's key as it was.
        current: Option<KeyValue>,
    },
}

/// The kind of one [`Change`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeOp {
    /// The key did not exist before.
    Created,
    /// The key existed and was overwritten.
    Updated,
    /// The key was removed.
    Deleted,
}

/// One applied change of one key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The revision of the transaction that made the change.
    pub revision: u64,
    /// The changed key.
    pub key: String,
    /// What happened to it.
    pub op: ChangeOp,
    /// The new object; for `Deleted` the last object with `mod_revision`
    /// set to the deleting revision.
    pub kv: KeyValue,
    /// The object just before the change: `None` for `Created`. (Records
    /// written before kubus kept it decode with `None` for every change.)
    /// With it the history can undo changes: see [`crate::history`].
    #[serde(default)]
    pub prev: Option<KeyValue>,
    /// The first path segment of the key ([`stream_of`]).
    pub stream: String,
    /// The revision of the previous change in the same stream (0 if none).
    /// When one revision changes several keys of a stream, the second and
    /// later of them have `stream_prev == revision`: each change points at
    /// the change just before it.
    pub stream_prev: u64,
    /// The leader's clock when it took the proposal (ms since the Unix
    /// epoch); `None` for changes recorded before kubus kept it.
    #[serde(default)]
    pub committed_ms: Option<u64>,
    /// The W3C trace context of the write that made the change, when it
    /// was traced ([`crate::Store::propose_in`]); opaque here, never stored.
    #[serde(skip)]
    pub trace: Option<String>,
}

/// The stream of a key: its first non-empty path segment when another
/// follows it (`/pods/default/web-1` → `pods`), else `""`, the root
/// stream: a key of one segment (`plain`, `/x`) is under no resource, so
/// it does not get a stream (and a stream head) of its own.
pub fn stream_of(key: &str) -> &str {
    let mut segments = key.split('/').filter(|s| !s.is_empty());
    match (segments.next(), segments.next()) {
        (Some(first), Some(_)) => first,
        _ => "",
    }
}

impl Txn {
    /// The rules a transaction must obey to be proposed: at least one op,
    /// at most [`TXN_OPS_MAX`]; keys non-empty, at most [`KEY_BYTES_MAX`]
    /// bytes, and each key at most once (so every op's precondition and
    /// result are about one well-defined before and after).
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.ops.is_empty() {
            return Err(StoreError::InvalidTxn(
                "a transaction needs at least one op".into(),
            ));
        }
        if self.ops.len() > TXN_OPS_MAX {
            return Err(StoreError::InvalidTxn(format!(
                "{} ops; at most {TXN_OPS_MAX} are allowed",
                self.ops.len()
            )));
        }
        let mut seen = HashSet::with_capacity(self.ops.len());
        for (i, op) in self.ops.iter().enumerate() {
            let key = op.key();
            if key.is_empty() {
                return Err(StoreError::InvalidTxn(format!("ops[{i}]: empty key")));
            }
            if key.len() > KEY_BYTES_MAX {
                return Err(StoreError::InvalidTxn(format!(
                    "ops[{i}]: key is {} bytes; at most {KEY_BYTES_MAX} are allowed",
                    key.len()
                )));
            }
            if !seen.insert(key) {
                return Err(StoreError::InvalidTxn(format!(
                    "ops[{i}]: key {key:?} appears more than once"
                )));
            }
        }
        Ok(())
    }
}

/// serde adapter: `Vec<u8>` as a byte string (MessagePack `bin`), and
/// accepting a sequence of integers too when reading.
pub(crate) mod as_bytes {
    use std::fmt;

    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // Bound the pre-allocation: the hint comes from the input.
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64 * 1024));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{decode, encode};

    fn put(key: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: vec![1],
            expect: Precondition::None,
        }
    }

    #[test]
    fn streams() {
        for (key, stream) in [
            ("/pods/default/web-1", "pods"),
            ("/nodes/_/n1", "nodes"),
            ("pods/x", "pods"),
            ("//a/b", "a"),
            ("/", ""),
            ("plain", ""),
            ("/pods", ""),
            ("00000042", ""),
        ] {
            assert_eq!(stream_of(key), stream, "{key}");
        }
    }

    #[test]
    fn validation_table() {
        let long = "k".repeat(KEY_BYTES_MAX + 1);
        let cases: Vec<(&str, Txn, bool)> = vec![
            (
                "one put",
                Txn {
                    ops: vec![put("/a")],
                },
                true,
            ),
            ("empty", Txn { ops: vec![] }, false),
            ("empty key", Txn { ops: vec![put("")] }, false),
            (
                "long key",
                Txn {
                    ops: vec![put(&long)],
                },
                false,
            ),
            (
                "distinct keys",
                Txn {
                    ops: vec![put("/a"), put("/b")],
                },
                true,
            ),
            (
                "duplicate key",
                Txn {
                    ops: vec![
                        put("/a"),
                        Op::Delete {
                            key: "/a".into(),
                            expect: Precondition::None,
                        },
                    ],
                },
                false,
            ),
        ];
        for (name, txn, ok) in cases {
            assert_eq!(txn.validate().is_ok(), ok, "{name}");
        }
    }

    /// A history record written before `Change::prev` existed still
    /// decodes, with `prev: None`.
    #[test]
    fn changes_without_prev_decode() {
        #[derive(Serialize)]
        struct OldChange {
            revision: u64,
            key: String,
            op: ChangeOp,
            kv: KeyValue,
            stream: String,
            stream_prev: u64,
        }
        let kv = KeyValue {
            key: "/a/b".into(),
            value: vec![1],
            create_revision: 1,
            mod_revision: 2,
            version: 2,
        };
        let old = OldChange {
            revision: 2,
            key: "/a/b".into(),
            op: ChangeOp::Updated,
            kv: kv.clone(),
            stream: "a".into(),
            stream_prev: 1,
        };
        let bytes = encode("old change", &vec![old]).expect("encode");
        let back: Vec<Change> = decode("change", &bytes).expect("decode");
        assert_eq!(back[0].kv, kv);
        assert_eq!(back[0].prev, None);
    }

    #[test]
    fn values_are_msgpack_bin() {
        let kv = KeyValue {
            key: "/a".into(),
            value: vec![200; 100],
            create_revision: 1,
            mod_revision: 2,
            version: 3,
        };
        let bytes = encode("kv", &kv).expect("encode");
        // 100 bytes of 200 as an integer array would take 200 bytes.
        assert!(bytes.len() < 180, "{} bytes", bytes.len());
        let back: KeyValue = decode("kv", &bytes).expect("decode");
        assert_eq!(back, kv);
    }
}
