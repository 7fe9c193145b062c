//! The state machine's decisions, as pure functions: does a transaction's
//! every precondition hold, and if so, which objects, changes and stream
//! heads does it write.
//!
//! No I/O here: the current state comes in through [`StateView`] (RocksDB
//! plus the not-yet-written part of the current apply batch in the peer; a
//! `BTreeMap` in tests), and the result is a [`Decision`] the caller writes.
//! Every peer must reach the same decision from the same log, so nothing
//! here may look at clocks, randomness or peer-local state.

use std::collections::HashMap;

use crate::error::StoreError;
use crate::model::{stream_of, Change, ChangeOp, KeyValue, Op, Precondition, Txn};

/// Read access to the state as of the entry being applied.
pub trait StateView {
    /// The object at `key`, if any.
    fn object(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    /// The revision of the last change in `stream` (0 if none).
    fn stream_head(&self, stream: &str) -> Result<u64, StoreError>;
}

/// What applying one transaction at some revision does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The transaction breaks a rule of [`Txn::validate`]; nothing is
    /// written. (Proposers validate first; this guards the log.)
    Invalid(String),
    /// The precondition of `ops[op_index]` does not hold; nothing is
    /// written and no revision is consumed.
    Failed {
        /// The first failing op.
        op_index: usize,
        /// Its key as it is.
        current: Option<KeyValue>,
    },
    /// Every precondition holds.
    Commit(Commit),
}

/// The writes of a transaction whose preconditions hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The transaction's revision: the previous one + 1, or the previous
    /// one unchanged when nothing changed.
    pub revision: u64,
    /// Per op: the written object, `None` for a delete.
    pub kvs: Vec<Option<KeyValue>>,
    /// Objects to store (`Some`) or remove (`None`), in op order.
    pub writes: Vec<(String, Option<KeyValue>)>,
    /// The history record of `revision`; empty when nothing changed.
    pub changes: Vec<Change>,
    /// New heads of the streams that changed.
    pub stream_heads: Vec<(String, u64)>,
}

/// Whether `expect` holds for a key whose current object is `current`.
pub fn precondition_holds(expect: &Precondition, current: Option<&KeyValue>) -> bool {
    match expect {
        Precondition::None => true,
        Precondition::Absent => current.is_none(),
        Precondition::Present => current.is_some(),
        Precondition::ModRevision(r) => current.map_or(0, |kv| kv.mod_revision) == *r,
        Precondition::CreateRevision(r) => current.is_some_and(|kv| kv.create_revision == *r),
    }
}

/// The index of the first op whose precondition fails against `current`
/// (one entry per op), if any.
pub fn first_failed(txn: &Txn, current: &[Option<KeyValue>]) -> Option<usize> {
    txn.ops
        .iter()
        .zip(current)
        .position(|(op, cur)| !precondition_holds(op.expect(), cur.as_ref()))
}

/// Decides what `txn` does when applied on top of `view`, whose current
/// revision is `revision`.
///
/// Rules: preconditions are checked against the state before the
/// transaction; if all hold, every write gets `mod_revision = revision + 1`,
/// `create_revision` kept (or `revision + 1` when created), `version` + 1
/// (1 when created). Deleting an absent key is a no-op. A transaction that
/// changes nothing consumes no revision.
pub fn decide(txn: &Txn, revision: u64, view: &impl StateView) -> Result<Decision, StoreError> {
    if let Err(e) = txn.validate() {
        return Ok(Decision::Invalid(match e {
            StoreError::InvalidTxn(reason) => reason,
            other => other.to_string(),
        }));
    }
    let current = txn
        .ops
        .iter()
        .map(|op| view.object(op.key()))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(op_index) = first_failed(txn, &current) {
        return Ok(Decision::Failed {
            op_index,
            current: current.into_iter().nth(op_index).flatten(),
        });
    }

    let next = revision + 1;
    let mut kvs = Vec::with_capacity(txn.ops.len());
    let mut writes = Vec::with_capacity(txn.ops.len());
    let mut changes = Vec::with_capacity(txn.ops.len());
    for (op, cur) in txn.ops.iter().zip(current) {
        match op {
            Op::Put { key, value, .. } => {
                let kv = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: cur.as_ref().map_or(next, |c| c.create_revision),
                    mod_revision: next,
                    version: cur.as_ref().map_or(1, |c| c.version + 1),
                };
                let change_op = if cur.is_some() {
                    ChangeOp::Updated
                } else {
                    ChangeOp::Created
                };
                changes.push((key.clone(), change_op, kv.clone(), cur));
                writes.push((key.clone(), Some(kv.clone())));
                kvs.push(Some(kv));
            }
            Op::Delete { key, .. } => {
                if let Some(prev) = cur {
                    let last = KeyValue {
                        mod_revision: next,
                        ..prev.clone()
                    };
                    changes.push((key.clone(), ChangeOp::Deleted, last, Some(prev)));
                    writes.push((key.clone(), None));
                }
                kvs.push(None);
            }
            // checked above; writes nothing
            Op::Check { .. } => kvs.push(None),
        }
    }
    if changes.is_empty() {
        return Ok(Decision::Commit(Commit {
            revision,
            kvs,
            writes: Vec::new(),
            changes: Vec::new(),
            stream_heads: Vec::new(),
        }));
    }

    // Chain the changes of each stream: each points at the one before it.
    let mut heads: HashMap<String, u64> = HashMap::new();
    let mut stream_heads = Vec::new();
    let mut out = Vec::with_capacity(changes.len());
    for (key, op, kv, prev) in changes {
        let stream = stream_of(&key).to_string();
        let stream_prev = match heads.get(&stream) {
            Some(head) => *head,
            None => {
                stream_heads.push((stream.clone(), next));
                view.stream_head(&stream)?
            }
        };
        heads.insert(stream.clone(), next);
        out.push(Change {
            revision: next,
            key,
            op,
            kv,
            prev,
            stream,
            stream_prev,
            committed_ms: None,
            trace: None,
        });
    }
    Ok(Decision::Commit(Commit {
        revision: next,
        kvs,
        writes,
        changes: out,
        stream_heads,
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(Default)]
    struct Mem {
        objects: BTreeMap<String, KeyValue>,
        heads: BTreeMap<String, u64>,
        revision: u64,
    }

    impl StateView for Mem {
        fn object(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
            Ok(self.objects.get(key).cloned())
        }
        fn stream_head(&self, stream: &str) -> Result<u64, StoreError> {
            Ok(self.heads.get(stream).copied().unwrap_or(0))
        }
    }

    impl Mem {
        /// Applies like the peer does; returns the decision.
        fn apply(&mut self, txn: Txn) -> Decision {
            let d = decide(&txn, self.revision, self).expect("in-memory view");
            if let Decision::Commit(c) = &d {
                for (k, v) in &c.writes {
                    match v {
                        Some(kv) => self.objects.insert(k.clone(), kv.clone()),
                        None => self.objects.remove(k),
                    };
                }
                for (s, h) in &c.stream_heads {
                    self.heads.insert(s.clone(), *h);
                }
                self.revision = c.revision;
            }
            d
        }
    }

    fn kv(key: &str, mod_revision: u64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: b"v".to_vec(),
            create_revision: 1,
            mod_revision,
            version: 1,
        }
    }

    fn put(key: &str, expect: Precondition) -> Op {
        Op::Put {
            key: key.into(),
            value: b"v".to_vec(),
            expect,
        }
    }

    fn check(key: &str, expect: Precondition) -> Op {
        Op::Check {
            key: key.into(),
            expect,
        }
    }

    fn del(key: &str, expect: Precondition) -> Op {
        Op::Delete {
            key: key.into(),
            expect,
        }
    }

    #[test]
    fn precondition_table() {
        use Precondition::*;
        let present = kv("/a", 7);
        let cases = [
            (None, Option::None, true),
            (None, Some(&present), true),
            (Absent, Option::None, true),
            (Absent, Some(&present), false),
            (Present, Option::None, false),
            (Present, Some(&present), true),
            (ModRevision(7), Some(&present), true),
            (ModRevision(6), Some(&present), false),
            (ModRevision(8), Some(&present), false),
            (ModRevision(7), Option::None, false),
            (ModRevision(0), Option::None, true),
            (ModRevision(0), Some(&present), false),
        ];
        for (expect, current, holds) in cases {
            assert_eq!(
                precondition_holds(&expect, current),
                holds,
                "{expect:?} on {current:?}"
            );
        }
    }

    /// Each case: ops against a state holding `/a` (mod_revision 5) at
    /// revision 5; the expected decision kind and failing op.
    #[test]
    fn txn_decision_table() {
        use Precondition as P;
        let cases: Vec<(&str, Vec<Op>, Option<usize>, bool)> = vec![
            // (name, ops, failing op, consumes a revision)
            ("put new, absent", vec![put("/b", P::Absent)], None, true),
            (
                "put existing, absent",
                vec![put("/a", P::Absent)],
                Some(0),
                false,
            ),
            (
                "put existing, present",
                vec![put("/a", P::Present)],
                None,
                true,
            ),
            (
                "put new, present",
                vec![put("/b", P::Present)],
                Some(0),
                false,
            ),
            ("cas right", vec![put("/a", P::ModRevision(5))], None, true),
            (
                "cas stale",
                vec![put("/a", P::ModRevision(4))],
                Some(0),
                false,
            ),
            (
                "cas on absent, 0",
                vec![put("/b", P::ModRevision(0))],
                None,
                true,
            ),
            ("delete absent, none", vec![del("/b", P::None)], None, false),
            (
                "delete absent, absent",
                vec![del("/b", P::Absent)],
                None,
                false,
            ),
            (
                "delete absent, present",
                vec![del("/b", P::Present)],
                Some(0),
                false,
            ),
            (
                "delete present",
                vec![del("/a", P::ModRevision(5))],
                None,
                true,
            ),
            (
                "second op fails: nothing written",
                vec![put("/b", P::Absent), put("/a", P::Absent)],
                Some(1),
                false,
            ),
            (
                "first of three fails",
                vec![
                    put("/a", P::ModRevision(1)),
                    put("/b", P::None),
                    del("/c", P::None),
                ],
                Some(0),
                false,
            ),
            // fencing: `/a` stands for a Lease created at revision 1
            (
                "fenced write, the lease as acquired",
                vec![put("/b", P::Absent), check("/a", P::CreateRevision(1))],
                None,
                true,
            ),
            (
                "fenced write, the lease acquired again since",
                vec![put("/b", P::Absent), check("/a", P::CreateRevision(2))],
                Some(1),
                false,
            ),
            (
                "fenced write, the lease gone",
                vec![put("/c", P::Absent), check("/b", P::CreateRevision(1))],
                Some(1),
                false,
            ),
            (
                "a check alone writes nothing",
                vec![check("/a", P::CreateRevision(1))],
                None,
                false,
            ),
            (
                "all hold",
                vec![
                    put("/b", P::Absent),
                    put("/a", P::ModRevision(5)),
                    del("/c", P::None),
                ],
                None,
                true,
            ),
        ];
        for (name, ops, fails, bumps) in cases {
            let mut mem = Mem {
                revision: 5,
                ..Default::default()
            };
            mem.objects.insert("/a".into(), kv("/a", 5));
            let before = mem.objects.clone();
            match mem.apply(Txn { ops: ops.clone() }) {
                Decision::Failed { op_index, current } => {
                    assert_eq!(Some(op_index), fails, "{name}");
                    assert_eq!(current, before.get(ops[op_index].key()).cloned(), "{name}");
                    assert_eq!(mem.objects, before, "{name}: nothing written");
                    assert_eq!(mem.revision, 5, "{name}");
                }
                Decision::Commit(c) => {
                    assert_eq!(fails, None, "{name}");
                    assert_eq!(c.kvs.len(), ops.len(), "{name}");
                    assert_eq!(c.revision, if bumps { 6 } else { 5 }, "{name}");
                    assert_eq!(c.changes.is_empty(), !bumps, "{name}");
                }
                Decision::Invalid(r) => panic!("{name}: invalid: {r}"),
            }
        }
    }

    #[test]
    fn revision_version_create_revision() {
        let mut mem = Mem::default();
        let Decision::Commit(c) = mem.apply(Txn {
            ops: vec![put("/pods/a", Precondition::Absent)],
        }) else {
            panic!("create failed")
        };
        let a = c.kvs[0].clone().expect("written");
        assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 1, 1));
        assert_eq!(c.changes[0].op, ChangeOp::Created);
        assert_eq!(c.changes[0].prev, None);
        let first = a;

        // Another key moves the revision; /pods/a is untouched.
        mem.apply(Txn {
            ops: vec![put("/pods/b", Precondition::None)],
        });
        let Decision::Commit(c) = mem.apply(Txn {
            ops: vec![put("/pods/a", Precondition::ModRevision(1))],
        }) else {
            panic!("update failed")
        };
        let a = c.kvs[0].clone().expect("written");
        assert_eq!((a.create_revision, a.mod_revision, a.version), (1, 3, 2));
        assert_eq!(c.changes[0].op, ChangeOp::Updated);
        assert_eq!(c.changes[0].prev, Some(first), "the object it replaced");

        let Decision::Commit(c) = mem.apply(Txn {
            ops: vec![del("/pods/a", Precondition::Present)],
        }) else {
            panic!("delete failed")
        };
        assert_eq!(c.revision, 4);
        assert_eq!(c.kvs, vec![None]);
        let gone = &c.changes[0];
        assert_eq!(gone.op, ChangeOp::Deleted);
        assert_eq!(
            (
                gone.kv.create_revision,
                gone.kv.mod_revision,
                gone.kv.version
            ),
            (1, 4, 2)
        );
        assert_eq!(gone.prev, Some(a), "the object it removed, as it was");

        // Re-created: a new life, version starts again.
        let Decision::Commit(c) = mem.apply(Txn {
            ops: vec![put("/pods/a", Precondition::Absent)],
        }) else {
            panic!("re-create failed")
        };
        let a = c.kvs[0].clone().expect("written");
        assert_eq!((a.create_revision, a.mod_revision, a.version), (5, 5, 1));
    }

    #[test]
    fn stream_prev_chains_per_stream() {
        let mut mem = Mem::default();
        let mut changes = Vec::new();
        for ops in [
            vec![put("/pods/a", Precondition::None)],       // 1
            vec![put("/services/x", Precondition::None)],   // 2
            vec![put("/pods/b", Precondition::None)],       // 3
            vec![del("/nothing/here", Precondition::None)], // no revision
            vec![
                put("/pods/c", Precondition::None),
                put("/services/y", Precondition::None),
                put("/pods/d", Precondition::None),
            ], // 4
            vec![del("/services/x", Precondition::None)],   // 5
        ] {
            if let Decision::Commit(c) = mem.apply(Txn { ops }) {
                changes.extend(c.changes);
            }
        }
        let got: Vec<(&str, u64, &str, u64)> = changes
            .iter()
            .map(|c| (c.key.as_str(), c.revision, c.stream.as_str(), c.stream_prev))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/pods/a", 1, "pods", 0),
                ("/services/x", 2, "services", 0),
                ("/pods/b", 3, "pods", 1),
                ("/pods/c", 4, "pods", 3),
                ("/services/y", 4, "services", 2),
                ("/pods/d", 4, "pods", 4),
                ("/services/x", 5, "services", 4),
            ]
        );
        assert_eq!(mem.heads.get("pods"), Some(&4));
        assert_eq!(mem.heads.get("services"), Some(&5));
        assert_eq!(mem.heads.get("nothing"), None);
    }

    #[test]
    fn invalid_txn_writes_nothing() {
        let mut mem = Mem::default();
        let d = mem.apply(Txn {
            ops: vec![put("/a", Precondition::None), put("/a", Precondition::None)],
        });
        assert!(matches!(d, Decision::Invalid(_)));
        assert_eq!(mem.revision, 0);
        assert!(mem.objects.is_empty());
    }
}
