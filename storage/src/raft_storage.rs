//! [`RocksStorage`]: raft-rs's [`raft::Storage`] over the `raft_log` and
//! `raft_state` column families.
//!
//! raft-rs reads through the trait; the peer driver writes through the
//! `stage_*` methods, which add to a [`WriteBatch`] the driver commits. The
//! positions raft-rs asks for most (first and last index, last term, hard
//! and conf state) are kept in memory so the trait's infallible-in-practice
//! calls (`first_index`, `last_index`, which raft-rs unwraps) never touch
//! the disk. The in-memory state is updated as a batch is staged: a failed
//! write stops the peer, so a state ahead of the disk is never used.
//!
//! The newest entries are also kept in memory ([`EntryCache`]): raft-rs
//! reads back what was just appended — the committed entries to apply, the
//! entries to send a follower — and those reads are then served without
//! RocksDB.

use std::collections::VecDeque;
use std::sync::Arc;

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, DB};

use crate::error::{CodecError, StoreError};
use crate::layout::{
    be, cf, read_u64, CF_RAFT_LOG, CF_RAFT_STATE, KEY_CONF_STATE, KEY_HARD_STATE, KEY_LOG_TRUNCATED,
};
use crate::snapshot::{Descriptor, Outgoing};

/// Index (and term) a fresh store's log starts after. Bootstrapped voters
/// hold their configuration as if a snapshot at this index had been
/// installed, so the log proper begins at `RAFT_INIT_INDEX + 1` and a peer
/// that joins later (empty log) can only be brought up by a real snapshot,
/// never by replaying a log that lacks the bootstrap configuration. (TiKV
/// does the same with its `RAFT_INIT_LOG_INDEX`.)
pub const RAFT_INIT_INDEX: u64 = 5;
/// The term of the bootstrap point.
pub const RAFT_INIT_TERM: u64 = 5;

/// Most entries [`EntryCache`] keeps.
const CACHE_ENTRIES_MAX: usize = 4096;
/// Most bytes of entry data [`EntryCache`] keeps.
const CACHE_BYTES_MAX: usize = 16 << 20;

/// The newest entries of the log, in memory: always a contiguous suffix of
/// the log (ending at its last index) or empty, bounded by
/// [`CACHE_ENTRIES_MAX`] and [`CACHE_BYTES_MAX`] — except that entries not
/// yet written to RocksDB (the log writer's queue, itself bounded) are
/// never evicted: the cache is where Raft reads them from.
#[derive(Debug, Default)]
struct EntryCache {
    entries: VecDeque<Entry>,
    bytes: usize,
}

/// What one entry counts against [`CACHE_BYTES_MAX`].
fn cached_size(e: &Entry) -> usize {
    e.data.len() + e.context.len() + 32
}

impl EntryCache {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index)
    }

    /// `new` (contiguous) was staged: it replaces the cached entries from
    /// its first index on. A start before the cache or after its end (which
    /// the log's own checks rule out) empties the cache first, so what
    /// stays is always a suffix of the log.
    fn append(&mut self, new: &[Entry], written_through: u64) {
        let Some(first) = new.first() else {
            return;
        };
        match self.first_index() {
            Some(f) if first.index >= f && first.index - f <= self.entries.len() as u64 => {
                let keep = (first.index - f) as usize;
                for e in self.entries.drain(keep..) {
                    self.bytes -= cached_size(&e);
                }
            }
            _ => self.clear(),
        }
        for e in new {
            self.bytes += cached_size(e);
            self.entries.push_back(e.clone());
        }
        self.trim(written_through);
    }

    /// Evicts the oldest entries over the bounds, none after
    /// `written_through`.
    fn trim(&mut self, written_through: u64) {
        while self.entries.len() > CACHE_ENTRIES_MAX || self.bytes > CACHE_BYTES_MAX {
            if self
                .entries
                .front()
                .is_none_or(|e| e.index > written_through)
            {
                break;
            }
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= cached_size(&e);
            }
        }
    }

    /// Entries up to and including `index` were compacted away.
    fn compact_to(&mut self, index: u64) {
        while self.entries.front().is_some_and(|e| e.index <= index) {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= cached_size(&e);
            }
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    fn get(&self, index: u64) -> Option<&Entry> {
        let f = self.first_index()?;
        let i = usize::try_from(index.checked_sub(f)?).ok()?;
        self.entries.get(i)
    }

    /// Entries `low..high` (at least one, then no more than `max_size`
    /// bytes, as [`raft::Storage::entries`] wants), if all are cached.
    fn range(&self, low: u64, high: u64, max_size: u64) -> Option<Vec<Entry>> {
        let f = self.first_index()?;
        let last = f + self.entries.len() as u64;
        if low < f || high > last || low >= high {
            return None;
        }
        let from = (low - f) as usize;
        let mut out = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        for e in self.entries.range(from..(high - f) as usize) {
            size += u64::from(e.compute_size());
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e.clone());
        }
        Some(out)
    }
}

/// The Raft log and Raft state of one peer, in RocksDB.
pub struct RocksStorage {
    db: Arc<DB>,
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry removed by compaction (0, 0 when
    /// none): `first_index == truncated_index + 1`.
    truncated_index: u64,
    truncated_term: u64,
    last_index: u64,
    last_term: u64,
    /// Set by the driver after each apply; bounds snapshots.
    applied_index: u64,
    /// The snapshots being streamed to lagging peers (none until the
    /// driver sets it: see [`RocksStorage::set_outgoing`]).
    outgoing: Option<Arc<Outgoing>>,
    /// The newest entries, as staged.
    cache: EntryCache,
    /// Entries up to here are written to RocksDB (the rest are staged and
    /// queued for the log writer, and only the cache holds them).
    written_through: u64,
}

fn raft_err(e: StoreError) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

fn parse<M: protobuf::Message>(what: &'static str, bytes: &[u8]) -> Result<M, StoreError> {
    M::parse_from_bytes(bytes).map_err(|source| CodecError::Protobuf { what, source }.into())
}

fn to_bytes(what: &'static str, m: &impl protobuf::Message) -> Result<Vec<u8>, StoreError> {
    m.write_to_bytes()
        .map_err(|source| CodecError::Protobuf { what, source }.into())
}

impl RocksStorage {
    /// Loads the Raft state from `db`. A store that was never bootstrapped
    /// has an empty ConfState: see [`RocksStorage::is_initialized`].
    pub fn load(db: Arc<DB>) -> Result<RocksStorage, StoreError> {
        let state = cf(&db, CF_RAFT_STATE)?;
        let hard_state = match db.get_pinned_cf(state, KEY_HARD_STATE)? {
            Some(b) => parse("hard state", &b)?,
            None => HardState::default(),
        };
        let conf_state = match db.get_pinned_cf(state, KEY_CONF_STATE)? {
            Some(b) => parse("conf state", &b)?,
            None => ConfState::default(),
        };
        let (truncated_index, truncated_term) = match db.get_pinned_cf(state, KEY_LOG_TRUNCATED)? {
            Some(b) if b.len() == 16 => (
                read_u64("truncated index", &b[..8])?,
                read_u64("truncated term", &b[8..])?,
            ),
            Some(b) => {
                return Err(CodecError::Length {
                    what: "log truncation point",
                    expected: 16,
                    found: b.len(),
                }
                .into())
            }
            None => (0, 0),
        };
        let mut storage = RocksStorage {
            db,
            hard_state,
            conf_state,
            truncated_index,
            truncated_term,
            last_index: truncated_index,
            last_term: truncated_term,
            applied_index: 0,
            outgoing: None,
            cache: EntryCache::default(),
            written_through: 0,
        };
        let last = {
            let log = cf(&storage.db, CF_RAFT_LOG)?;
            let mut iter = storage.db.iterator_cf(log, IteratorMode::End);
            match iter.next() {
                Some(item) => {
                    let (_, v) = item?;
                    Some(parse::<Entry>("log entry", &v)?)
                }
                None => None,
            }
        };
        if let Some(e) = last {
            if e.index <= truncated_index {
                return Err(StoreError::Corrupt(format!(
                    "last log entry {} is not after the truncation point {truncated_index}",
                    e.index
                )));
            }
            storage.last_index = e.index;
            storage.last_term = e.term;
        }
        storage.written_through = storage.last_index;
        Ok(storage)
    }

    /// Whether the store has a configuration (was bootstrapped).
    pub fn is_initialized(&self) -> bool {
        self.conf_state != ConfState::default()
    }

    /// The database.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// The last persisted HardState.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The persisted ConfState.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The index of the first entry still in the log.
    pub fn first_log_index(&self) -> u64 {
        self.truncated_index + 1
    }

    /// The index of the last entry removed by compaction (or covered by an
    /// installed snapshot).
    pub fn truncated_index(&self) -> u64 {
        self.truncated_index
    }

    /// The index of the last entry in the log.
    pub fn last_log_index(&self) -> u64 {
        self.last_index
    }

    /// Where [`raft::Storage::snapshot`] starts the transfers of
    /// snapshots (see [`crate::snapshot`]).
    pub fn set_outgoing(&mut self, outgoing: Arc<Outgoing>) {
        self.outgoing = Some(outgoing);
    }

    /// Records how far the state machine has applied (bounds snapshots).
    pub fn set_applied_index(&mut self, index: u64) {
        self.applied_index = index;
    }

    /// Stages `entries` (contiguous, as in a Ready): they replace any
    /// entries at or after their first index.
    pub fn stage_entries(
        &mut self,
        wb: &mut WriteBatch,
        entries: &[Entry],
    ) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        if first.index <= self.truncated_index {
            return Err(StoreError::Corrupt(format!(
                "appending entry {} at or before the truncation point {}",
                first.index, self.truncated_index
            )));
        }
        if first.index > self.last_index + 1 {
            return Err(StoreError::Corrupt(format!(
                "appending entry {} leaves a gap after {}",
                first.index, self.last_index
            )));
        }
        let log = cf(&self.db, CF_RAFT_LOG)?;
        for (i, e) in entries.iter().enumerate() {
            if e.index != first.index + i as u64 {
                return Err(StoreError::Corrupt(format!(
                    "entries to append are not contiguous at {}",
                    e.index
                )));
            }
            wb.put_cf(log, be(e.index), to_bytes("log entry", e)?);
        }
        if last.index < self.last_index {
            // A new leader overwrote our tail: drop what follows it.
            wb.delete_range_cf(log, be(last.index + 1), be(self.last_index + 1));
        }
        self.last_index = last.index;
        self.last_term = last.term;
        // what is replaced is no longer the written log
        self.written_through = self.written_through.min(first.index - 1);
        self.cache.append(entries, self.written_through);
        Ok(())
    }

    /// The log writer wrote (and synced) every entry up to `index`: the
    /// cache may evict them.
    pub fn set_written_through(&mut self, index: u64) {
        self.written_through = index.min(self.last_index);
        self.cache.trim(self.written_through);
    }

    /// Stages a new HardState. The commit index never goes backwards here
    /// (the apply path may already have persisted a higher one).
    pub fn stage_hard_state(
        &mut self,
        wb: &mut WriteBatch,
        hs: &HardState,
    ) -> Result<(), StoreError> {
        let mut hs = hs.clone();
        hs.commit = hs.commit.max(self.hard_state.commit);
        wb.put_cf(
            cf(&self.db, CF_RAFT_STATE)?,
            KEY_HARD_STATE,
            to_bytes("hard state", &hs)?,
        );
        self.hard_state = hs;
        Ok(())
    }

    /// Stages `commit` as the persisted commit index if it is higher, so
    /// that the persisted applied index never exceeds it.
    pub fn stage_commit(&mut self, wb: &mut WriteBatch, commit: u64) -> Result<(), StoreError> {
        if commit > self.hard_state.commit {
            let mut hs = self.hard_state.clone();
            hs.commit = commit;
            self.stage_hard_state(wb, &hs)?;
        }
        Ok(())
    }

    /// Stages a new ConfState.
    pub fn stage_conf_state(
        &mut self,
        wb: &mut WriteBatch,
        cs: ConfState,
    ) -> Result<(), StoreError> {
        wb.put_cf(
            cf(&self.db, CF_RAFT_STATE)?,
            KEY_CONF_STATE,
            to_bytes("conf state", &cs)?,
        );
        self.conf_state = cs;
        Ok(())
    }

    /// Stages the removal of every entry up to and including `index`
    /// (which must be applied). No-op if already compacted that far.
    pub fn stage_compaction(&mut self, wb: &mut WriteBatch, index: u64) -> Result<(), StoreError> {
        if index <= self.truncated_index {
            return Ok(());
        }
        if index > self.applied_index || index > self.last_index {
            return Err(StoreError::Corrupt(format!(
                "compacting to {index} beyond applied {} / last {}",
                self.applied_index, self.last_index
            )));
        }
        let term = self.entry_term(index)?;
        let log = cf(&self.db, CF_RAFT_LOG)?;
        wb.delete_range_cf(log, be(self.truncated_index + 1), be(index + 1));
        self.cache.compact_to(index);
        self.stage_truncation(wb, index, term)
    }

    /// Writes the bootstrap state of a fresh store: `voters`, an empty log
    /// that starts after [`RAFT_INIT_INDEX`], committed up to there.
    pub fn stage_bootstrap(
        &mut self,
        wb: &mut WriteBatch,
        voters: Vec<u64>,
    ) -> Result<(), StoreError> {
        let cs = ConfState {
            voters,
            ..Default::default()
        };
        self.stage_conf_state(wb, cs)?;
        self.stage_truncation(wb, RAFT_INIT_INDEX, RAFT_INIT_TERM)?;
        self.cache.clear();
        self.written_through = RAFT_INIT_INDEX;
        self.last_index = RAFT_INIT_INDEX;
        self.last_term = RAFT_INIT_TERM;
        let hs = HardState {
            term: RAFT_INIT_TERM,
            commit: RAFT_INIT_INDEX,
            ..Default::default()
        };
        self.stage_hard_state(wb, &hs)
    }

    /// Stages the installation of a snapshot's Raft half: the whole log is
    /// replaced by the snapshot's point, its ConfState is adopted, and the
    /// commit index moves up to it. (The state machine half is
    /// `snapshot::stage_install`, in the same batch.)
    pub fn stage_snapshot(
        &mut self,
        wb: &mut WriteBatch,
        meta: &raft::prelude::SnapshotMetadata,
    ) -> Result<(), StoreError> {
        let log = cf(&self.db, CF_RAFT_LOG)?;
        wb.delete_range_cf(log, be(0), be(u64::MAX));
        self.cache.clear();
        self.stage_truncation(wb, meta.index, meta.term)?;
        self.last_index = meta.index;
        self.last_term = meta.term;
        self.stage_conf_state(wb, meta.get_conf_state().clone())?;
        self.stage_commit(wb, meta.index)?;
        self.applied_index = meta.index;
        Ok(())
    }

    /// Stages the Raft half of a store restored from a backup file: a new
    /// Raft group of `voters`, as if a snapshot at the bootstrap point
    /// ([`RAFT_INIT_INDEX`], [`RAFT_INIT_TERM`]) had been installed —
    /// [`RocksStorage::stage_snapshot`], the path a peer takes when its
    /// leader sends it one — with the HardState a bootstrap writes. No
    /// trace of the old group's log, terms or members is kept.
    pub fn stage_restore(
        &mut self,
        wb: &mut WriteBatch,
        voters: Vec<u64>,
    ) -> Result<(), StoreError> {
        let mut meta = raft::prelude::SnapshotMetadata {
            index: RAFT_INIT_INDEX,
            term: RAFT_INIT_TERM,
            ..Default::default()
        };
        meta.set_conf_state(ConfState {
            voters,
            ..Default::default()
        });
        self.stage_snapshot(wb, &meta)?;
        self.written_through = RAFT_INIT_INDEX;
        let hs = HardState {
            term: RAFT_INIT_TERM,
            commit: RAFT_INIT_INDEX,
            ..Default::default()
        };
        self.stage_hard_state(wb, &hs)
    }

    fn stage_truncation(
        &mut self,
        wb: &mut WriteBatch,
        index: u64,
        term: u64,
    ) -> Result<(), StoreError> {
        let mut point = Vec::with_capacity(16);
        point.extend_from_slice(&be(index));
        point.extend_from_slice(&be(term));
        wb.put_cf(cf(&self.db, CF_RAFT_STATE)?, KEY_LOG_TRUNCATED, point);
        self.truncated_index = index;
        self.truncated_term = term;
        Ok(())
    }

    fn read_entry(&self, index: u64) -> Result<Entry, StoreError> {
        let log = cf(&self.db, CF_RAFT_LOG)?;
        match self.db.get_pinned_cf(log, be(index))? {
            Some(b) => {
                let e: Entry = parse("log entry", &b)?;
                if e.index != index {
                    return Err(StoreError::Corrupt(format!(
                        "log key {index} holds entry {}",
                        e.index
                    )));
                }
                Ok(e)
            }
            None => Err(StoreError::Corrupt(format!("log entry {index} is missing"))),
        }
    }

    fn entry_term(&self, index: u64) -> Result<u64, StoreError> {
        if index == self.truncated_index {
            return Ok(self.truncated_term);
        }
        if index == self.last_index {
            return Ok(self.last_term);
        }
        if let Some(e) = self.cache.get(index) {
            return Ok(e.term);
        }
        Ok(self.read_entry(index)?.term)
    }
}

impl raft::Storage for RocksStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if low >= high {
            return Ok(Vec::new());
        }
        let max_size = max_size.into().unwrap_or(raft::NO_LIMIT);
        if let Some(cached) = self.cache.range(low, high, max_size) {
            return Ok(cached);
        }
        let log = cf(&self.db, CF_RAFT_LOG).map_err(raft_err)?;
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(be(high).to_vec());
        let iter =
            self.db
                .iterator_cf_opt(log, opts, IteratorMode::From(&be(low), Direction::Forward));
        let mut out = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        for item in iter {
            let (_, v) = item.map_err(|e| raft_err(e.into()))?;
            let e: Entry = parse("log entry", &v).map_err(raft_err)?;
            let expected = low + out.len() as u64;
            if e.index != expected {
                return Err(raft_err(StoreError::Corrupt(format!(
                    "log entry {expected} is missing (found {})",
                    e.index
                ))));
            }
            size += u64::from(e.compute_size());
            // Always at least one entry, then stop before exceeding max_size.
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e);
        }
        if out.is_empty() {
            return Err(raft_err(StoreError::Corrupt(format!(
                "log entries {low}..{high} are missing"
            ))));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        self.entry_term(idx).map_err(raft_err)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    /// A snapshot at the applied index (at or after `request_index`) for
    /// peer `to`: the metadata (index, term, ConfState) and, as its data,
    /// a [`Descriptor`] of the transfer [`Outgoing::start`] begins — a scan
    /// of a RocksDB snapshot taken here, between apply batches, so it holds
    /// exactly the state at the applied index, which `to` then pulls in
    /// chunks (see [`crate::snapshot`]). Nothing of the state is read
    /// here. "Temporarily unavailable" (raft-rs asks again at the peer's
    /// next heartbeat response) while too many transfers run.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let unavailable = || raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        if self.applied_index < request_index {
            return Err(unavailable());
        }
        let Some(outgoing) = &self.outgoing else {
            return Err(unavailable());
        };
        let term = self.entry_term(self.applied_index).map_err(raft_err)?;
        let Some(id) = outgoing.start(Arc::clone(&self.db), to) else {
            return Err(unavailable());
        };
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = self.applied_index;
        meta.term = term;
        meta.set_conf_state(self.conf_state.clone());
        snap.data = Descriptor {
            id,
            index: self.applied_index,
        }
        .encode()
        .into();
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage as _;

    use super::*;
    use crate::layout::open_db;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 10].into(),
            ..Default::default()
        }
    }

    fn write(storage: &mut RocksStorage, f: impl FnOnce(&mut RocksStorage, &mut WriteBatch)) {
        let mut wb = WriteBatch::default();
        f(storage, &mut wb);
        storage.db().write(wb).expect("write");
        let last = storage.last_log_index();
        storage.set_written_through(last);
    }

    fn open(dir: &std::path::Path) -> RocksStorage {
        RocksStorage::load(Arc::new(open_db(dir).expect("open db"))).expect("load")
    }

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    #[test]
    fn fresh_store_is_empty_and_uninitialized() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path());
        assert!(!s.is_initialized());
        assert_eq!(s.first_index().expect("first"), 1);
        assert_eq!(s.last_index().expect("last"), 0);
        assert_eq!(s.term(0).expect("term 0"), 0);
        assert!(s
            .entries(1, 1, None, ctx())
            .expect("empty range")
            .is_empty());
    }

    #[test]
    fn append_read_overwrite_compact_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        write(&mut s, |s, wb| {
            let cs = ConfState {
                voters: vec![1],
                ..Default::default()
            };
            s.stage_conf_state(wb, cs).expect("conf state");
            s.stage_entries(wb, &(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>())
                .expect("append");
        });
        assert!(s.is_initialized());
        assert_eq!(s.last_index().expect("last"), 10);
        let got = s.entries(3, 7, None, ctx()).expect("entries");
        assert_eq!(
            got.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        // max_size: at least one entry, then within the limit.
        let one = s.entries(3, 7, 1, ctx()).expect("entries");
        assert_eq!(one.len(), 1);
        let size2 = u64::from(entry(3, 1).compute_size() + entry(4, 1).compute_size());
        assert_eq!(s.entries(3, 7, size2, ctx()).expect("entries").len(), 2);
        assert!(matches!(
            s.entries(3, 12, None, ctx()),
            Err(raft::Error::Store(StorageError::Unavailable))
        ));

        // A new leader at term 2 overwrites from 6: 7..=10 must go.
        write(&mut s, |s, wb| {
            s.stage_entries(wb, &[entry(6, 2)]).expect("overwrite");
        });
        assert_eq!(s.last_index().expect("last"), 6);
        assert_eq!(s.term(6).expect("term"), 2);
        assert_eq!(s.term(5).expect("term"), 1);
        assert_eq!(s.entries(5, 7, None, ctx()).expect("entries").len(), 2);

        s.set_applied_index(5);
        assert!(
            s.stage_compaction(&mut WriteBatch::default(), 6).is_err(),
            "beyond applied"
        );
        write(&mut s, |s, wb| s.stage_compaction(wb, 4).expect("compact"));
        assert_eq!(s.first_index().expect("first"), 5);
        assert_eq!(s.term(4).expect("term of truncation point"), 1);
        assert!(matches!(
            s.term(3),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            s.entries(4, 6, None, ctx()),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        // No transfers without somewhere to keep them.
        assert!(matches!(
            s.snapshot(5, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        let outgoing = Arc::new(Outgoing::new(1024, std::time::Duration::from_secs(10)));
        s.set_outgoing(Arc::clone(&outgoing));
        let snap = s.snapshot(5, 2).expect("snapshot");
        assert_eq!(
            (snap.get_metadata().index, snap.get_metadata().term),
            (5, 1)
        );
        let d = Descriptor::decode(&snap.data).expect("a descriptor");
        assert_eq!(d.index, 5);
        assert_eq!(outgoing.running(), 1);
        outgoing.clear();

        let hs = HardState {
            term: 2,
            vote: 1,
            commit: 5,
            ..Default::default()
        };
        write(&mut s, |s, wb| s.stage_hard_state(wb, &hs).expect("hs"));
        drop(s);

        let s = open(dir.path());
        assert_eq!(s.first_index().expect("first"), 5);
        assert_eq!(s.last_index().expect("last"), 6);
        assert_eq!(s.term(6).expect("term"), 2);
        assert_eq!(s.term(4).expect("term"), 1);
        let st = s.initial_state().expect("state");
        assert_eq!(st.hard_state, hs);
        assert_eq!(st.conf_state.voters, vec![1]);
    }

    /// Random appends, overwrites and compactions: after each, every range
    /// and term the live storage (served from its cache where it can) gives
    /// equals what a storage freshly loaded from the same disk gives.
    #[test]
    fn cached_reads_equal_reads_from_disk() {
        use rand::{Rng, SeedableRng};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut term = 1;
        for step in 0..300 {
            let first = s.first_index().expect("first");
            let last = s.last_index().expect("last");
            match rng.gen_range(0..10) {
                0..=6 => {
                    // append at the end, or overwrite a tail (a new term)
                    let at = if rng.gen_bool(0.8) || last < first {
                        last + 1
                    } else {
                        term += 1;
                        rng.gen_range(first..=last)
                    };
                    let n = rng.gen_range(1..40);
                    let new: Vec<Entry> = (at..at + n).map(|i| entry(i, term)).collect();
                    write(&mut s, |s, wb| s.stage_entries(wb, &new).expect("append"));
                }
                _ if last > first => {
                    s.set_applied_index(last);
                    let to = rng.gen_range(first..last);
                    write(&mut s, |s, wb| s.stage_compaction(wb, to).expect("compact"));
                }
                _ => {}
            }
            let disk = RocksStorage::load(Arc::clone(s.db())).expect("reload");
            let (first, last) = (
                s.first_index().expect("first"),
                s.last_index().expect("last"),
            );
            assert_eq!(
                (disk.first_index().ok(), disk.last_index().ok()),
                (Some(first), Some(last))
            );
            for low in first..=last {
                assert_eq!(
                    s.term(low).ok(),
                    disk.term(low).ok(),
                    "step {step}: term {low}"
                );
                let high = rng.gen_range(low..=last + 1);
                let max = if rng.gen_bool(0.3) {
                    Some(rng.gen_range(1..200))
                } else {
                    None
                };
                let live = s.entries(low, high, max, ctx()).expect("live entries");
                let read = disk.entries(low, high, max, ctx()).expect("disk entries");
                assert_eq!(live, read, "step {step}: entries {low}..{high} max {max:?}");
            }
        }
        assert!(s.cache.entries.len() <= CACHE_ENTRIES_MAX);
    }

    #[test]
    fn the_entry_cache_stays_a_bounded_suffix() {
        let mut c = EntryCache::default();
        c.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>(), u64::MAX);
        c.append(&[entry(6, 2)], u64::MAX);
        assert_eq!(
            c.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            (1..=6).collect::<Vec<_>>()
        );
        assert_eq!(c.get(6).map(|e| e.term), Some(2));
        c.compact_to(3);
        assert_eq!(c.first_index(), Some(4));
        // a start before the cache: only the new entries stay
        c.append(&[entry(2, 3), entry(3, 3)], u64::MAX);
        assert_eq!(
            c.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(c.range(1, 3, u64::MAX), None, "not all cached");
        assert_eq!(c.range(2, 4, u64::MAX).map(|v| v.len()), Some(2));
        assert_eq!(c.range(2, 4, 1).map(|v| v.len()), Some(1), "at least one");
        let many: Vec<Entry> = (4..4 + CACHE_ENTRIES_MAX as u64 + 10)
            .map(|i| entry(i, 3))
            .collect();
        c.append(&many, u64::MAX);
        assert_eq!(c.entries.len(), CACHE_ENTRIES_MAX);
        assert_eq!(
            c.entries.back().map(|e| e.index),
            many.last().map(|e| e.index)
        );
        let bytes: usize = c.entries.iter().map(cached_size).sum();
        assert_eq!(c.bytes, bytes);
        c.clear();
        assert_eq!((c.first_index(), c.bytes), (None, 0));
    }

    #[test]
    fn the_entry_cache_keeps_entries_not_yet_written() {
        let mut c = EntryCache::default();
        let n = CACHE_ENTRIES_MAX as u64 + 100;
        c.append(&(1..=n).map(|i| entry(i, 1)).collect::<Vec<_>>(), 50);
        assert_eq!(c.first_index(), Some(51), "only written entries go");
        c.trim(n);
        assert_eq!(c.entries.len(), CACHE_ENTRIES_MAX, "bounded once written");
        assert_eq!(c.entries.back().map(|e| e.index), Some(n));
    }

    #[test]
    fn bootstrap_starts_the_log_after_the_init_point() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        write(&mut s, |s, wb| {
            s.stage_bootstrap(wb, vec![1, 2, 3]).expect("bootstrap")
        });
        assert_eq!(s.first_index().expect("first"), RAFT_INIT_INDEX + 1);
        assert_eq!(s.last_index().expect("last"), RAFT_INIT_INDEX);
        assert_eq!(s.term(RAFT_INIT_INDEX).expect("term"), RAFT_INIT_TERM);
        drop(s);
        let s = open(dir.path());
        assert_eq!(s.last_index().expect("last"), RAFT_INIT_INDEX);
        assert_eq!(s.hard_state().commit, RAFT_INIT_INDEX);
    }

    #[test]
    fn commit_never_goes_backwards() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = open(dir.path());
        write(&mut s, |s, wb| s.stage_commit(wb, 7).expect("commit"));
        let hs = HardState {
            term: 3,
            commit: 5,
            ..Default::default()
        };
        write(&mut s, |s, wb| s.stage_hard_state(wb, &hs).expect("hs"));
        assert_eq!(s.hard_state().commit, 7);
        assert_eq!(s.hard_state().term, 3);
    }
}
