//! The history's records as stored: each object's bytes are written once.
//!
//! A revision's record holds its [`Change`]s, except that the new object's
//! value of a change is left out ([`StoredChange::value_elided`]) because
//! the same bytes are already on disk, in a place the record implies:
//!
//! - a `Deleted` change's value is that of its `prev` (the object removed);
//! - a `Created` or `Updated` change's value is the `prev` value of the
//!   key's next change, whose revision the `history_next` column family
//!   gives (`(revision, key)` → revision of the key's next change), or,
//!   when the key has not changed since, the current object's value.
//!
//! So a create writes its value to the state machine once (`objects`)
//! instead of twice (`objects` and the record), and an update twice
//! instead of three times (the record keeps the object it replaced, which
//! lists at a past revision and the change before need). etcd stores a
//! value once too, the other way round: by revision, with the keys'
//! latest revisions in memory.
//!
//! A `history_next` entry is written with the change that makes it, in the
//! same apply batch, and only while the revision it is about is still in
//! the history (above the compaction point); pruning deletes it with that
//! revision's record. Every record a reader can see (above the compaction
//! point of the RocksDB snapshot it reads) therefore finds its values.
//!
//! Reading a page back ([`fill_values`]) takes each missing value from a
//! later change of the same key in the page when there is one (no I/O),
//! and asks a [`ValueSource`] — the RocksDB snapshot the page was read
//! from; a map in tests — for the rest. Records written before values
//! were left out carry every value and decode with `value_elided: false`.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{self, CodecError, StoreError};
use crate::model::{as_bytes, Change, ChangeOp, KeyValue};

/// A change as a history record stores it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct StoredChange {
    /// [`Change::revision`].
    pub revision: u64,
    /// [`Change::key`].
    pub key: String,
    /// [`Change::op`].
    pub op: ChangeOp,
    /// [`Change::kv`], with an empty value when `value_elided`.
    pub kv: KeyValue,
    /// [`Change::prev`].
    #[serde(default)]
    pub prev: Option<KeyValue>,
    /// [`Change::stream`].
    pub stream: String,
    /// [`Change::stream_prev`].
    pub stream_prev: u64,
    /// `kv.value` was left out: see the module doc for where it is.
    #[serde(default)]
    pub value_elided: bool,
    /// [`Change::committed_ms`] (absent from records written before
    /// kubus kept it).
    #[serde(default)]
    pub committed_ms: Option<u64>,
}

impl StoredChange {
    /// The change, its value as stored (empty when elided).
    fn into_change(self) -> Change {
        Change {
            revision: self.revision,
            key: self.key,
            op: self.op,
            kv: self.kv,
            prev: self.prev,
            stream: self.stream,
            stream_prev: self.stream_prev,
            committed_ms: self.committed_ms,
            trace: None,
        }
    }
}

/// What is serialized of a change: [`StoredChange`]'s fields, borrowed.
#[derive(Serialize)]
struct ChangeOut<'a> {
    revision: u64,
    key: &'a str,
    op: ChangeOp,
    kv: KeyValueOut<'a>,
    prev: &'a Option<KeyValue>,
    stream: &'a str,
    stream_prev: u64,
    value_elided: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    committed_ms: Option<u64>,
}

/// [`KeyValue`]'s fields, borrowed, the value possibly left out.
#[derive(Serialize)]
struct KeyValueOut<'a> {
    key: &'a str,
    #[serde(with = "as_bytes")]
    value: &'a [u8],
    create_revision: u64,
    mod_revision: u64,
    version: u64,
}

/// Whether the record may leave out the value of `c`: always, except for
/// a delete that does not carry the object it removed (which the state
/// machine never makes).
fn elides(c: &Change) -> bool {
    match c.op {
        ChangeOp::Created | ChangeOp::Updated => true,
        ChangeOp::Deleted => c.prev.is_some(),
    }
}

/// The record of one revision's `changes` (MessagePack, named), values
/// left out where [`elides`] allows.
pub fn encode(changes: &[Change]) -> Result<Vec<u8>, CodecError> {
    let out: Vec<ChangeOut<'_>> = changes
        .iter()
        .map(|c| {
            let elided = elides(c);
            ChangeOut {
                revision: c.revision,
                key: &c.key,
                op: c.op,
                kv: KeyValueOut {
                    key: &c.kv.key,
                    value: if elided { &[] } else { &c.kv.value },
                    create_revision: c.kv.create_revision,
                    mod_revision: c.kv.mod_revision,
                    version: c.kv.version,
                },
                prev: &c.prev,
                stream: &c.stream,
                stream_prev: c.stream_prev,
                value_elided: elided,
                committed_ms: c.committed_ms,
            }
        })
        .collect();
    error::encode("history record", &out)
}

/// A record as stored, values possibly left out.
pub fn decode(bytes: &[u8]) -> Result<Vec<StoredChange>, CodecError> {
    error::decode("history record", bytes)
}

/// Where the values records leave out are read from.
pub trait ValueSource {
    /// The revision of the change to `key` after the one at `revision`,
    /// if there is one (the `history_next` column family).
    fn next_change(&mut self, revision: u64, key: &str) -> Result<Option<u64>, StoreError>;
    /// The record of `revision` (empty when there is none).
    fn record(&mut self, revision: u64) -> Result<Vec<StoredChange>, StoreError>;
    /// The current object at `key`.
    fn object(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError>;
}

/// Where [`fill_values`] takes one change's value from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueAt {
    /// The value is stored in the change.
    Itself,
    /// The change's own `prev` (a delete).
    OwnPrev,
    /// The `prev` of the change at this index of the page.
    LaterInPage(usize),
    /// Not in the page: ask the [`ValueSource`].
    Lookup,
}

/// The changes of `page` (consecutive records, in revision order) with
/// every value left out put back.
pub fn fill_values(
    page: Vec<StoredChange>,
    source: &mut impl ValueSource,
) -> Result<Vec<Change>, StoreError> {
    // Backwards, so that each key's next change in the page is known.
    let mut plan = vec![ValueAt::Itself; page.len()];
    let mut next_in_page: HashMap<&str, usize> = HashMap::new();
    for (i, c) in page.iter().enumerate().rev() {
        if c.value_elided {
            plan[i] = match (c.op, next_in_page.get(c.key.as_str())) {
                (ChangeOp::Deleted, _) => ValueAt::OwnPrev,
                (_, Some(&j)) => ValueAt::LaterInPage(j),
                (_, None) => ValueAt::Lookup,
            };
        }
        next_in_page.insert(&c.key, i);
    }
    drop(next_in_page);

    let mut values = Vec::with_capacity(page.len());
    let mut records: HashMap<u64, Vec<StoredChange>> = HashMap::new();
    for (i, c) in page.iter().enumerate() {
        let value = match plan[i] {
            ValueAt::Itself => None,
            ValueAt::OwnPrev => Some(value_of(c, c.prev.as_ref(), "its own previous object")?),
            ValueAt::LaterInPage(j) => Some(value_of(
                c,
                page[j].prev.as_ref(),
                "the previous object of the next change",
            )?),
            ValueAt::Lookup => Some(value_from_source(c, source, &mut records)?),
        };
        values.push(value);
    }
    Ok(page
        .into_iter()
        .zip(values)
        .map(|(c, value)| {
            let mut change = c.into_change();
            if let Some(value) = value {
                change.kv.value = value;
            }
            change
        })
        .collect())
}

/// The value of the elided change `c` as `found` holds it: `found` must
/// be the object `c` made (same key, `mod_revision` = `c.revision`).
fn value_of(
    c: &StoredChange,
    found: Option<&KeyValue>,
    place: &str,
) -> Result<Vec<u8>, StoreError> {
    match found {
        Some(kv) if kv.key == c.key && made_by(kv, c) => Ok(kv.value.clone()),
        Some(kv) => Err(StoreError::Corrupt(format!(
            "history: the value of {} at revision {} should be {place}, \
             but that is {} at revision {}",
            c.key, c.revision, kv.key, kv.mod_revision
        ))),
        None => Err(StoreError::Corrupt(format!(
            "history: the value of {} at revision {} should be {place}, which is missing",
            c.key, c.revision
        ))),
    }
}

/// Whether `kv` is the object the change `c` made (a delete "makes" the
/// object it removed, whose `mod_revision` is older).
fn made_by(kv: &KeyValue, c: &StoredChange) -> bool {
    match c.op {
        ChangeOp::Deleted => c
            .prev
            .as_ref()
            .is_some_and(|p| p.mod_revision == kv.mod_revision),
        ChangeOp::Created | ChangeOp::Updated => kv.mod_revision == c.revision,
    }
}

/// The value of the created or updated `c` when no later change of its
/// key is in the page: the current object's, or the next change's `prev`.
fn value_from_source(
    c: &StoredChange,
    source: &mut impl ValueSource,
    records: &mut HashMap<u64, Vec<StoredChange>>,
) -> Result<Vec<u8>, StoreError> {
    // Most often the key has not changed since: one read.
    let current = source.object(&c.key)?;
    if let Some(kv) = current.as_ref().filter(|kv| made_by(kv, c)) {
        return Ok(kv.value.clone());
    }
    let Some(next) = source.next_change(c.revision, &c.key)? else {
        return value_of(c, current.as_ref(), "the current object");
    };
    let record = match records.entry(next) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => e.insert(source.record(next)?),
    };
    let prev = record
        .iter()
        .find(|n| n.key == c.key)
        .and_then(|n| n.prev.as_ref());
    value_of(c, prev, "the previous object of the next change")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::history::tests::{del, put, write_objects};
    use crate::machine::{decide, Decision, StateView};
    use crate::model::{Op, Txn};

    /// The state machine and a history stored as kubus stores it: records
    /// with values left out, `history_next`, current objects.
    #[derive(Default)]
    struct Stored {
        revision: u64,
        objects: BTreeMap<String, KeyValue>,
        records: BTreeMap<u64, Vec<u8>>,
        next: BTreeMap<(u64, String), u64>,
        /// Every change as applied, with its value.
        changes: Vec<Change>,
        lookups: usize,
    }

    impl StateView for Stored {
        fn object(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
            Ok(self.objects.get(key).cloned())
        }
        fn stream_head(&self, _: &str) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    impl ValueSource for Stored {
        fn next_change(&mut self, revision: u64, key: &str) -> Result<Option<u64>, StoreError> {
            self.lookups += 1;
            Ok(self.next.get(&(revision, key.to_string())).copied())
        }
        fn record(&mut self, revision: u64) -> Result<Vec<StoredChange>, StoreError> {
            self.lookups += 1;
            match self.records.get(&revision) {
                Some(b) => Ok(decode(b)?),
                None => Ok(Vec::new()),
            }
        }
        fn object(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
            self.lookups += 1;
            Ok(self.objects.get(key).cloned())
        }
    }

    impl Stored {
        fn apply(&mut self, ops: Vec<Op>) {
            let Decision::Commit(c) = decide(&Txn { ops }, self.revision, self).expect("view")
            else {
                panic!("preconditions are None")
            };
            if c.changes.is_empty() {
                return;
            }
            write_objects(&mut self.objects, c.writes);
            for ch in &c.changes {
                if let Some(prev) = &ch.prev {
                    self.next
                        .insert((prev.mod_revision, ch.key.clone()), ch.revision);
                }
            }
            self.records
                .insert(c.revision, encode(&c.changes).expect("encode"));
            self.revision = c.revision;
            self.changes.extend(c.changes);
        }

        /// The records of `from..=to`, as read from disk.
        fn page(&self, from: u64, to: u64) -> Vec<StoredChange> {
            self.records
                .range(from..=to)
                .flat_map(|(_, b)| decode(b).expect("decode"))
                .collect()
        }
    }

    /// Creates, updates, deletes and re-creates, several keys per
    /// revision.
    fn history() -> Stored {
        let mut s = Stored::default();
        s.apply(vec![put("/p/a", "a1"), put("/p/b", "b1")]);
        s.apply(vec![put("/p/a", "a2")]);
        s.apply(vec![put("/p/c", "c1"), del("/p/b")]);
        s.apply(vec![put("/p/b", "b2"), put("/p/a", "a3")]);
        s.apply(vec![del("/p/a")]);
        s.apply(vec![put("/p/c", "c2")]);
        s.apply(vec![put("/p/d", "d1")]);
        s
    }

    #[test]
    fn records_leave_values_out_and_pages_put_them_back() {
        let mut s = history();
        let stored = s.page(1, s.revision);
        assert!(stored
            .iter()
            .all(|c| c.value_elided && c.kv.value.is_empty()));
        // Every page, at every start and end, reads back what was applied.
        for from in 1..=s.revision {
            for to in from..=s.revision {
                let page = s.page(from, to);
                let got = fill_values(page, &mut s).expect("fill");
                let want: Vec<Change> = s
                    .changes
                    .iter()
                    .filter(|c| (from..=to).contains(&c.revision))
                    .cloned()
                    .collect();
                assert_eq!(got, want, "revisions {from}..={to}");
            }
        }
    }

    #[test]
    fn values_come_from_the_page_before_any_lookup() {
        let mut s = history();
        // /p/a: 1 → 2 → 4 → deleted at 5, all within the page: no lookup
        // for it. The last changes of b, c and d in the page made their
        // current objects: one read each.
        let page = s.page(1, s.revision);
        s.lookups = 0;
        fill_values(page, &mut s).expect("fill");
        assert_eq!(s.lookups, 3);
    }

    #[test]
    fn records_written_with_their_values_still_read() {
        let mut s = history();
        // Before, a record was the revision's `Vec<Change>`.
        let bytes = error::encode("old record", &s.changes).expect("encode");
        let back = decode(&bytes).expect("decode");
        assert!(back.iter().all(|c| !c.value_elided));
        s.lookups = 0;
        assert_eq!(fill_values(back, &mut s).expect("fill"), s.changes);
        assert_eq!(s.lookups, 0);
    }

    #[test]
    fn a_value_found_nowhere_is_corruption_not_a_wrong_value() {
        let mut s = history();
        // The next-change entry of a2 lost: the current object of /p/a is
        // gone (deleted), so a2 has no source left.
        s.next.remove(&(2, "/p/a".to_string()));
        let page = s.page(2, 2);
        match fill_values(page, &mut s) {
            Err(StoreError::Corrupt(msg)) => assert!(msg.contains("/p/a"), "{msg}"),
            other => panic!("{other:?}"),
        }
        // c1's next change points at a record without /p/c.
        let mut s = history();
        s.next.insert((3, "/p/c".to_string()), 4);
        let page = s.page(3, 3);
        assert!(matches!(
            fill_values(page, &mut s),
            Err(StoreError::Corrupt(_))
        ));
    }
}
