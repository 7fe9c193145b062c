//! Decisions about the change history, as pure functions: how far it may
//! be pruned ([`prune_to`]: retention by count and by age), and what a
//! range of keys held at a past revision ([`objects_before`] and
//! [`merge_at`]: the current objects with the changes after that revision
//! undone).
//!
//! No I/O here: the peer and the [`crate::Store`] read RocksDB and hand in
//! what they read; tests hand in vectors.
//!
//! # Retention
//!
//! A revision is pruned once it is outside either bound: more than
//! [`Retention::revisions`] behind the current revision, or made more than
//! [`Retention::age_ms`] before "now". The current revision is never
//! pruned, and pruning always removes a prefix of the history (so a
//! revision without a recorded time goes when a later one does).
//!
//! Which "now"? While applying, the stamp of the last entry applied (the
//! leader's clock at proposal, the same on every peer); on a timer, the
//! peer's own clock. Peers may therefore prune at different moments and
//! hold different `compacted_to` points; nothing needs them equal. What
//! correctness needs is local: a peer's `compacted_to` only grows, stays
//! below its revision, and every read of the history checks it in the same
//! RocksDB snapshot it reads the history from, so a read gets either the
//! whole history it asked for or [`crate::StoreError::Compacted`] — which
//! a client answers by relisting, on whichever peer.
//!
//! # Past states
//!
//! Every [`crate::Change`] records the object before it
//! ([`crate::Change::prev`]). The
//! state of a key at revision `at` is therefore the `prev` of its first
//! change after `at`, or, if it has not changed since, its current object.

use std::collections::BTreeMap;
use std::iter::Peekable;

use crate::model::{ChangeOp, KeyValue};
use crate::record::StoredChange;

/// How much history a peer keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Most revisions kept behind the current one (at least 1).
    pub revisions: u64,
    /// Longest time a revision is kept, in milliseconds.
    pub age_ms: u64,
}

/// Whether a revision made at `made_ms` is too old to keep at `now_ms`.
pub fn expired(made_ms: u64, now_ms: u64, age_ms: u64) -> bool {
    now_ms.saturating_sub(made_ms) > age_ms
}

/// The revision the history may be pruned up to (inclusive; `compacted_to`
/// itself when nothing may go).
///
/// - `compacted_to`: everything up to it is already pruned;
/// - `revision`: the current revision, which always stays;
/// - `now_ms`: the time to judge age by (`None`: by count only);
/// - `times`: `(revision, made_ms)` of the retained revisions after
///   `compacted_to`, in revision order (revisions without a recorded time
///   are simply absent);
/// - `chunk`: most revisions pruned at once (at least 1).
///
/// Reads at most `chunk` items of `times`.
pub fn prune_to(
    compacted_to: u64,
    revision: u64,
    retention: Retention,
    now_ms: Option<u64>,
    times: impl IntoIterator<Item = (u64, u64)>,
    chunk: u64,
) -> u64 {
    // The current revision always stays.
    let limit = compacted_to
        .saturating_add(chunk.max(1))
        .min(revision.saturating_sub(1));
    let by_count = revision.saturating_sub(retention.revisions);
    let by_age = match now_ms {
        None => 0,
        Some(now) => times
            .into_iter()
            .take_while(|&(r, made)| r <= limit && expired(made, now, retention.age_ms))
            .last()
            .map_or(0, |(r, _)| r),
    };
    by_count.max(by_age).min(limit).max(compacted_to)
}

/// Why a past state cannot be rebuilt from the history.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// A change was recorded before the history kept previous objects, so
    /// it cannot be undone; states from `revision` on can be rebuilt.
    #[error(
        "the change of {key} at revision {revision} was recorded without the object before it"
    )]
    PreviousUnknown {
        /// The key changed.
        key: String,
        /// The revision of that change.
        revision: u64,
    },
}

/// For every key under `prefix` that `changes` touch, its object at
/// revision `at` (`None`: absent then). `changes` are the changes after
/// `at`, in revision order (earlier ones are ignored).
pub fn objects_before(
    changes: &[StoredChange],
    at: u64,
    prefix: &str,
) -> Result<BTreeMap<String, Option<KeyValue>>, HistoryError> {
    let mut before = BTreeMap::new();
    for c in changes
        .iter()
        .filter(|c| c.revision > at && c.key.starts_with(prefix))
    {
        if before.contains_key(&c.key) {
            continue; // only the first change after `at` says what was
        }
        let was = match (c.op, &c.prev) {
            (ChangeOp::Created, _) => None,
            (ChangeOp::Updated | ChangeOp::Deleted, Some(prev)) => Some(prev.clone()),
            (ChangeOp::Updated | ChangeOp::Deleted, None) => {
                return Err(HistoryError::PreviousUnknown {
                    key: c.key.clone(),
                    revision: c.revision,
                })
            }
        };
        before.insert(c.key.clone(), was);
    }
    Ok(before)
}

/// The objects at a past revision, in key order from `start`: the
/// `current` objects (in key order, from `start`, within the range) with
/// those that changed since replaced by what they were (`before`, from
/// [`objects_before`]). At most `limit` (at least 1); the flag says more
/// follow.
pub fn merge_at<E>(
    current: impl Iterator<Item = Result<KeyValue, E>>,
    before: &BTreeMap<String, Option<KeyValue>>,
    start: &str,
    limit: usize,
) -> Result<(Vec<KeyValue>, bool), E> {
    let mut merged = Merge {
        current: current.peekable(),
        before: before.range(start.to_string()..).peekable(),
    };
    let limit = limit.max(1);
    let mut items = Vec::new();
    while let Some(kv) = merged.next_item()? {
        if items.len() == limit {
            return Ok((items, true));
        }
        items.push(kv);
    }
    Ok((items, false))
}

/// Two key-ordered sources walked together; `before` wins on equal keys.
struct Merge<'a, I: Iterator, B: Iterator<Item = (&'a String, &'a Option<KeyValue>)>> {
    current: Peekable<I>,
    before: Peekable<B>,
}

impl<'a, E, I, B> Merge<'a, I, B>
where
    I: Iterator<Item = Result<KeyValue, E>>,
    B: Iterator<Item = (&'a String, &'a Option<KeyValue>)>,
{
    /// The next object present at the past revision.
    fn next_item(&mut self) -> Result<Option<KeyValue>, E> {
        loop {
            let cur_key = match self.current.peek() {
                Some(Ok(kv)) => Some(kv.key.as_str()),
                Some(Err(_)) => match self.current.next() {
                    Some(Err(e)) => return Err(e),
                    _ => unreachable!("peeked an error"),
                },
                None => None,
            };
            let before_key = self.before.peek().map(|(k, _)| k.as_str());
            let take_before = match (cur_key, before_key) {
                (None, None) => return Ok(None),
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(c), Some(b)) => b <= c,
            };
            if take_before {
                let same = cur_key == before_key;
                let (_, was) = self.before.next().expect("peeked");
                if same {
                    self.current.next(); // replaced by what it was
                }
                match was {
                    Some(kv) => return Ok(Some(kv.clone())),
                    None => continue, // absent then
                }
            }
            return self.current.next().transpose();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::machine::{decide, Decision, StateView};
    use crate::model::{Op, Precondition, Txn};
    use crate::StoreError;

    const R: Retention = Retention {
        revisions: 100,
        age_ms: 1_000,
    };

    /// (case, compacted_to, revision, retention, now, times, chunk, want)
    #[test]
    fn prune_table() {
        let old = |r: u64| (r, 0u64);
        let young = |r: u64| (r, 9_500u64);
        type Case = (
            &'static str,
            u64,
            u64,
            Retention,
            Option<u64>,
            Vec<(u64, u64)>,
            u64,
            u64,
        );
        let cases: Vec<Case> = vec![
            ("nothing yet", 0, 0, R, Some(10_000), vec![], 10, 0),
            (
                "within both",
                0,
                50,
                R,
                Some(10_000),
                (1..=50).map(young).collect(),
                4096,
                0,
            ),
            ("by count", 0, 150, R, None, vec![], 4096, 50),
            ("count, chunked", 0, 150, R, None, vec![], 10, 10),
            (
                "count, from compacted_to",
                45,
                150,
                R,
                None,
                vec![],
                4096,
                50,
            ),
            ("never backwards", 60, 150, R, None, vec![], 4096, 60),
            (
                "by age: the old prefix",
                0,
                10,
                R,
                Some(10_000),
                (1..=4).map(old).chain((5..=10).map(young)).collect(),
                4096,
                4,
            ),
            (
                "by age: never the current revision",
                0,
                10,
                R,
                Some(10_000),
                (1..=10).map(old).collect(),
                4096,
                9,
            ),
            (
                "by age: stops at the first young one",
                0,
                10,
                R,
                Some(10_000),
                vec![old(1), young(2), old(3)],
                4096,
                1,
            ),
            (
                "by age: chunked",
                0,
                10,
                R,
                Some(10_000),
                (1..=10).map(old).collect(),
                3,
                3,
            ),
            (
                "by age: untimed revisions before an old one go with it",
                0,
                10,
                R,
                Some(10_000),
                vec![old(6), young(7)],
                4096,
                6,
            ),
            (
                "age exactly at the window stays",
                0,
                10,
                R,
                Some(1_000),
                vec![(1, 0), (2, 1)],
                4096,
                0,
            ),
            (
                "the larger of the two bounds",
                0,
                300,
                R,
                Some(10_000),
                (1..=250).map(old).chain((251..=300).map(young)).collect(),
                4096,
                250,
            ),
            (
                "a clock behind every stamp prunes by count only",
                0,
                150,
                R,
                Some(0),
                (1..=150).map(young).collect(),
                4096,
                50,
            ),
        ];
        for (name, compacted_to, revision, retention, now, times, chunk, want) in cases {
            assert_eq!(
                prune_to(compacted_to, revision, retention, now, times, chunk),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn prune_reads_at_most_a_chunk_of_times() {
        let mut read = 0;
        let times = (1..=1_000_000u64).map(|r| {
            read += 1;
            (r, 0)
        });
        assert_eq!(prune_to(0, 2_000_000, R, Some(10_000), times, 100), 100);
        assert!(read <= 101, "{read}");
    }

    /// The state machine over a `BTreeMap`, recording every state.
    #[derive(Default)]
    struct Model {
        objects: BTreeMap<String, KeyValue>,
        revision: u64,
        /// The history as stored (values left out).
        changes: Vec<StoredChange>,
        states: Vec<BTreeMap<String, KeyValue>>,
    }

    impl StateView for Model {
        fn object(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
            Ok(self.objects.get(key).cloned())
        }
        fn stream_head(&self, _: &str) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    impl Model {
        fn apply(&mut self, ops: Vec<Op>) {
            if self.states.is_empty() {
                self.states.push(BTreeMap::new());
            }
            if let Decision::Commit(c) = decide(&Txn { ops }, self.revision, self).expect("view") {
                if c.changes.is_empty() {
                    return;
                }
                write_objects(&mut self.objects, c.writes);
                self.revision = c.revision;
                let stored = crate::record::encode(&c.changes).expect("encode");
                self.changes
                    .extend(crate::record::decode(&stored).expect("decode"));
                self.states.push(self.objects.clone());
            }
        }

        /// `merge_at` over this model at `at`, from `start`, `limit` a page.
        fn at(&self, at: u64, prefix: &str, start: &str, limit: usize) -> (Vec<KeyValue>, bool) {
            let before = objects_before(&self.changes, at, prefix).expect("prev recorded");
            let current = self
                .objects
                .range(start.to_string()..)
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(_, kv)| Ok::<_, ()>(kv.clone()));
            merge_at(current, &before, start, limit).expect("no error")
        }
    }

    /// Carries out a commit's writes on a map of objects (also for the
    /// tests of [`crate::record`]).
    pub(crate) fn write_objects(
        objects: &mut BTreeMap<String, KeyValue>,
        writes: Vec<(String, Option<KeyValue>)>,
    ) {
        for (k, v) in writes {
            match v {
                Some(kv) => objects.insert(k, kv),
                None => objects.remove(&k),
            };
        }
    }

    /// An unconditional put.
    pub(crate) fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            expect: Precondition::None,
        }
    }

    /// An unconditional delete.
    pub(crate) fn del(key: &str) -> Op {
        Op::Delete {
            key: key.into(),
            expect: Precondition::None,
        }
    }

    fn keys(items: &[KeyValue]) -> Vec<(&str, &[u8])> {
        items
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
            .collect()
    }

    #[test]
    fn states_at_each_revision_of_a_script() {
        let mut m = Model::default();
        m.apply(vec![put("/p/a", "a1"), put("/p/b", "b1")]); // 1
        m.apply(vec![put("/p/a", "a2"), put("/q/x", "x1")]); // 2
        m.apply(vec![del("/p/b")]); // 3
        m.apply(vec![put("/p/c", "c1")]); // 4
        m.apply(vec![put("/p/b", "b2"), del("/p/a")]); // 5
        m.apply(vec![del("/p/zz")]); // nothing: no revision
        m.apply(vec![put("/p/a", "a3")]); // 6
        let want: Vec<Vec<(&str, &[u8])>> = vec![
            vec![],
            vec![("/p/a", b"a1"), ("/p/b", b"b1")],
            vec![("/p/a", b"a2"), ("/p/b", b"b1")],
            vec![("/p/a", b"a2")],
            vec![("/p/a", b"a2"), ("/p/c", b"c1")],
            vec![("/p/b", b"b2"), ("/p/c", b"c1")],
            vec![("/p/a", b"a3"), ("/p/b", b"b2"), ("/p/c", b"c1")],
        ];
        for (at, want) in want.iter().enumerate() {
            let (items, more) = m.at(at as u64, "/p/", "/p/", 100);
            assert_eq!(&keys(&items), want, "at {at}");
            assert!(!more);
        }
        // Bookkeeping as it was: /p/a at 2 is version 2, written at 2.
        let (items, _) = m.at(2, "/p/", "/p/", 100);
        assert_eq!(
            (
                items[0].create_revision,
                items[0].mod_revision,
                items[0].version
            ),
            (1, 2, 2)
        );
        // A page from a start key, and `more`.
        let (items, more) = m.at(4, "/p/", "/p/a\0", 1);
        assert_eq!(keys(&items), vec![("/p/c", b"c1".as_slice())]);
        assert!(!more);
        let (items, more) = m.at(6, "/p/", "/p/", 2);
        assert_eq!(items.len(), 2);
        assert!(more);
    }

    /// Random transactions over a few keys: every past state, in pages of
    /// every size, equals the state recorded then.
    #[test]
    fn random_histories_rebuild_every_state() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(3);
        let mut m = Model::default();
        for _ in 0..300 {
            let n = rng.gen_range(1..=3);
            let mut ops = Vec::new();
            let mut used = Vec::new();
            for _ in 0..n {
                let key = format!(
                    "/{}/k{}",
                    ["p", "q"][rng.gen_range(0..2)],
                    rng.gen_range(0..8)
                );
                if used.contains(&key) {
                    continue;
                }
                used.push(key.clone());
                ops.push(if rng.gen_bool(0.3) {
                    del(&key)
                } else {
                    put(&key, &rng.gen::<u32>().to_string())
                });
            }
            m.apply(ops);
        }
        for (at, state) in m.states.iter().enumerate() {
            let want: Vec<KeyValue> = state
                .iter()
                .filter(|(k, _)| k.starts_with("/p/"))
                .map(|(_, kv)| kv.clone())
                .collect();
            for page in [1, 3, 100] {
                let mut got = Vec::new();
                let mut start = "/p/".to_string();
                loop {
                    let (items, more) = m.at(at as u64, "/p/", &start, page);
                    if let Some(last) = items.last() {
                        start = format!("{}\0", last.key);
                    }
                    got.extend(items);
                    if !more {
                        break;
                    }
                }
                assert_eq!(got, want, "at {at}, pages of {page}");
            }
        }
    }

    #[test]
    fn a_change_without_its_previous_object_cannot_be_undone() {
        let mut m = Model::default();
        m.apply(vec![put("/p/a", "1")]);
        m.apply(vec![put("/p/a", "2")]);
        m.apply(vec![put("/p/b", "1")]);
        m.changes[1].prev = None; // as recorded by an older kubus
        assert_eq!(
            objects_before(&m.changes, 1, "/p/"),
            Err(HistoryError::PreviousUnknown {
                key: "/p/a".into(),
                revision: 2
            })
        );
        assert!(objects_before(&m.changes, 2, "/p/").is_ok());
        // A create needs no previous object.
        m.changes[2].prev = None;
        assert!(objects_before(&m.changes, 2, "/p/").is_ok());
    }

    #[test]
    fn errors_of_the_current_objects_come_through() {
        let before = BTreeMap::new();
        let current = vec![Err::<KeyValue, &str>("disk")].into_iter();
        assert_eq!(merge_at(current, &before, "", 10), Err("disk"));
    }
}
