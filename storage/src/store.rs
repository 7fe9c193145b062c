//! [`Store`]: the cheap, cloneable handle to one store peer. It starts the
//! Raft thread (`peer.rs`), sends it proposals and inbound messages
//! through a bounded channel, and serves reads straight from RocksDB.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rocksdb::{Direction, IteratorMode, ReadOptions, Snapshot, WriteBatch, WriteOptions, DB};
use tokio::sync::{mpsc, oneshot};

use crate::config::StoreConfig;
use crate::error::{self, StoreError};
use crate::history::{self, HistoryError};
use crate::layout::{
    self, be, cf, next_change_key, prefix_end, read_u64, CF_HISTORY, CF_HISTORY_NEXT, CF_META,
    CF_OBJECTS, KEY_HISTORY_COMPACTED_TO, KEY_INCARNATION, KEY_REVISION,
};
use crate::model::{Change, KeyValue, RangeResult, Txn, TxnOutcome};
use crate::peer::lock;
use crate::peer::{
    Command, EntryDataRef, InFlightSlot, Peer, PeerProgress, PersistStats, Proposal, ProposalId,
    ReadRequest, Shared,
};
use crate::record::{self, StoredChange, ValueSource};
use crate::transport::{ChunkRequest, SnapshotChunk, Transport};

/// Most items one [`Store::range`] returns.
pub const RANGE_ITEMS_MAX: usize = 100_000;
/// Most changes one [`Store::changes_since`] returns (a revision's changes
/// are never split, so one very large revision may exceed it).
pub const CHANGES_MAX: usize = 10_000;

/// Batches of applied changes, in revision order: one `Vec` per apply batch
/// (whole revisions, possibly several), sent before the proposers of those
/// revisions are answered. Bounded: the Raft thread waits while it is full
/// (it polls rather than `blocking_send`s, so that `shutdown` still gets
/// through), so keep reading it — or drop it to discard changes.
pub type ChangeReceiver = mpsc::Receiver<Vec<Change>>;

/// A handle to one store peer. Clones share the peer; the Raft thread stops
/// at [`Store::shutdown`] or when the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    tx: SyncSender<Command>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    peer_id: u64,
    incarnation: u64,
    next_seq: AtomicU64,
    proposals_max_in_flight: usize,
    entry_bytes_max: usize,
    history_read_bytes_max: usize,
}

/// A point-in-time view of a peer, for metrics and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    /// This peer's id.
    pub peer_id: u64,
    /// Whether this peer leads.
    pub is_leader: bool,
    /// The leader this peer knows of.
    pub leader: Option<u64>,
    /// The current Raft term.
    pub term: u64,
    /// The store's revision.
    pub revision: u64,
    /// The last applied Raft index.
    pub applied_index: u64,
    /// The first entry still in the Raft log.
    pub first_log_index: u64,
    /// The last entry in the Raft log.
    pub last_log_index: u64,
    /// History before `history_compacted_to + 1` is gone.
    pub history_compacted_to: u64,
    /// Proposals accepted and not yet answered.
    pub proposals_in_flight: usize,
    /// The Raft thread has stopped.
    pub stopped: bool,
    /// Voting peers, in order.
    pub voters: Vec<u64>,
    /// Non-voting peers.
    pub learners: Vec<u64>,
    /// On the leader, every peer's replication progress; empty elsewhere.
    pub progress: Vec<PeerProgress>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("peer_id", &self.inner.peer_id)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the store in `cfg.data_dir` and starts its Raft
    /// peer on its own thread. Returns the handle and the receiver of
    /// applied changes, in revision order.
    pub fn open(
        cfg: StoreConfig,
        transport: Box<dyn Transport>,
    ) -> Result<(Store, ChangeReceiver), StoreError> {
        cfg.validate()?;
        let db = Arc::new(layout::open_db_for(
            &cfg.data_dir,
            cfg.fsync,
            cfg.memtable_bytes,
        )?);
        let incarnation = layout::meta_u64(&db, KEY_INCARNATION, "incarnation")? + 1;
        let mut wb = WriteBatch::default();
        wb.put_cf(cf(&db, CF_META)?, KEY_INCARNATION, be(incarnation));
        let mut sync = WriteOptions::default();
        sync.set_sync(cfg.fsync);
        db.write_opt(wb, &sync)?;

        let outgoing = crate::snapshot::Outgoing::new(
            cfg.snapshot_chunk_bytes,
            std::time::Duration::from_millis(cfg.snapshot_resend_ms),
        );
        let shared = Arc::new(Shared::new(db, outgoing));
        let (tx, rx) = sync_channel(cfg.proposals_max_in_flight + cfg.messages_max_queued);
        let (changes_tx, changes_rx) = mpsc::channel(cfg.changes_channel_capacity);
        let peer_id = cfg.peer_id;
        let proposals_max_in_flight = cfg.proposals_max_in_flight;
        let entry_bytes_max = cfg.entry_bytes_max;
        let history_read_bytes_max = cfg.history_read_bytes_max;
        let peer = Peer::new(
            cfg,
            transport,
            Arc::clone(&shared),
            changes_tx,
            rx,
            tx.clone(),
        )?;
        let thread = std::thread::Builder::new()
            .name(format!("kubus-raft-{peer_id}"))
            .spawn(move || peer.run())?;
        let store = Store {
            inner: Arc::new(Inner {
                tx,
                shared,
                thread: Mutex::new(Some(thread)),
                peer_id,
                incarnation,
                next_seq: AtomicU64::new(1),
                proposals_max_in_flight,
                entry_bytes_max,
                history_read_bytes_max,
            }),
        };
        Ok((store, changes_rx))
    }

    /// Proposes `txn`. Resolves only after its entry is fsynced, committed
    /// and applied, with what it did; or with [`StoreError::NotLeader`]
    /// (no leader known, or a leader change dropped the entry),
    /// [`StoreError::Timeout`] (not applied within `request_timeout_ms`: outcome
    /// unknown), [`StoreError::Busy`] (too many in flight),
    /// [`StoreError::InvalidTxn`] or [`StoreError::Stopped`].
    ///
    /// On a follower the proposal is forwarded to the leader; the entry
    /// carries its id, so this peer answers when it applies it.
    ///
    /// Dropping the future does not withdraw a proposal already handed to
    /// Raft: it may still be applied.
    pub async fn propose(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        self.propose_in(txn, None).await
    }

    /// [`Store::propose`] as part of a trace: the Raft thread's spans of
    /// the proposal (`raft.propose`, `raft.apply`) are children of the
    /// caller's current span, and `trace`, the caller's W3C trace context,
    /// travels in the entry to the changes it makes ([`Change::trace`]),
    /// on every peer.
    pub async fn propose_in(
        &self,
        txn: Txn,
        trace: Option<String>,
    ) -> Result<TxnOutcome, StoreError> {
        let started = std::time::Instant::now();
        let answer = self.propose_inner(txn, trace).await;
        crate::metrics::proposal_done(started.elapsed(), answer.is_ok());
        answer
    }

    async fn propose_inner(
        &self,
        txn: Txn,
        trace: Option<String>,
    ) -> Result<TxnOutcome, StoreError> {
        txn.validate()?;
        let inner = &self.inner;
        let shared = &inner.shared;
        if shared.stop_requested.load(Ordering::Acquire) || shared.stopped.load(Ordering::Acquire) {
            return Err(StoreError::Stopped);
        }
        if !shared.is_leader.load(Ordering::Acquire) && shared.leader().is_none() {
            return Err(StoreError::NotLeader { leader: None });
        }
        let slot =
            InFlightSlot::acquire(shared, inner.proposals_max_in_flight).ok_or(StoreError::Busy)?;
        let id = ProposalId {
            peer: inner.peer_id,
            incarnation: inner.incarnation,
            seq: inner.next_seq.fetch_add(1, Ordering::Relaxed),
        };
        let data = error::encode(
            "proposal",
            &EntryDataRef {
                id,
                txn: &txn,
                trace: trace.as_deref(),
            },
        )?;
        if data.len() > inner.entry_bytes_max {
            return Err(StoreError::InvalidTxn(format!(
                "the transaction is {} bytes encoded; at most {} are allowed",
                data.len(),
                inner.entry_bytes_max
            )));
        }
        let (reply, answer) = oneshot::channel();
        let proposal = Proposal {
            id,
            data,
            reply,
            slot,
            span: match trace {
                Some(_) => tracing::Span::current(),
                None => tracing::Span::none(),
            },
        };
        match inner.tx.try_send(Command::Propose(proposal)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(StoreError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(StoreError::Stopped),
        }
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// Hands a Raft message from another peer to this one.
    pub fn step(&self, msg: raft::eraftpb::Message) -> Result<(), StoreError> {
        match self.inner.tx.try_send(Command::Step(msg)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(StoreError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Stopped),
        }
    }

    /// Waits until this peer has applied everything committed when it was
    /// called, confirmed by the leader with a quorum (Raft's ReadIndex);
    /// returns that index. Reads made after it returns are linearizable.
    /// Fails with [`StoreError::Timeout`] when no leader answers in
    /// `request_timeout_ms`.
    pub async fn read_index(&self) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let shared = &inner.shared;
        if shared.stop_requested.load(Ordering::Acquire) || shared.stopped.load(Ordering::Acquire) {
            return Err(StoreError::Stopped);
        }
        if shared.is_leader.load(Ordering::Acquire) && self.sole_voter() {
            // The only voter: every acknowledged write was applied before
            // it was acknowledged, so the applied state already includes
            // it; no round trip through the Raft thread is needed.
            return Ok(shared.applied_index.load(Ordering::Acquire));
        }
        let slot =
            InFlightSlot::acquire(shared, inner.proposals_max_in_flight).ok_or(StoreError::Busy)?;
        let (reply, answer) = oneshot::channel();
        match inner
            .tx
            .try_send(Command::ReadIndex(ReadRequest { reply, slot }))
        {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(StoreError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(StoreError::Stopped),
        }
        match answer.await {
            Ok(r) => r,
            // The thread drops a read past its deadline, or when it stops.
            Err(_) if shared.stopped.load(Ordering::Acquire) => Err(StoreError::Stopped),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// Whether this peer is the cluster's only voter.
    fn sole_voter(&self) -> bool {
        let membership = lock(&self.inner.shared.membership);
        membership.voters == [self.inner.peer_id]
    }

    /// [`Store::get`] after [`Store::read_index`]: linearizable on any peer.
    pub async fn get_linearizable(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.read_index().await?;
        self.get(key)
    }

    /// [`Store::range`] after [`Store::read_index`]: linearizable on any
    /// peer.
    pub async fn range_linearizable(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<RangeResult, StoreError> {
        self.read_index().await?;
        self.range(prefix, limit)
    }

    /// Asks the leader to hand leadership to `to` (it catches `to` up, then
    /// tells it to campaign at once). Returns when the request is queued;
    /// watch [`Store::status`] for the outcome.
    pub fn transfer_leader(&self, to: u64) -> Result<(), StoreError> {
        match self.inner.tx.try_send(Command::TransferLeader(to)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(StoreError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::Stopped),
        }
    }

    /// Adds `peer_id` as a voter (on the leader). Resolves with the voters
    /// once the change is applied here. The new peer starts empty (`kubus
    /// node --peer-id N` without `--initial-peers`) and catches up from a
    /// snapshot.
    pub async fn add_peer(&self, peer_id: u64) -> Result<Vec<u64>, StoreError> {
        self.change_membership(peer_id, raft::prelude::ConfChangeType::AddNode)
            .await
    }

    /// Removes `peer_id` from the voters (on the leader). Resolves with the
    /// voters once the change is applied here.
    pub async fn remove_peer(&self, peer_id: u64) -> Result<Vec<u64>, StoreError> {
        self.change_membership(peer_id, raft::prelude::ConfChangeType::RemoveNode)
            .await
    }

    async fn change_membership(
        &self,
        peer_id: u64,
        change_type: raft::prelude::ConfChangeType,
    ) -> Result<Vec<u64>, StoreError> {
        if peer_id == 0 {
            return Err(StoreError::MembershipRefused(
                "peer id 0 is not allowed".into(),
            ));
        }
        let mut cc = raft::prelude::ConfChange::default();
        cc.set_change_type(change_type);
        cc.node_id = peer_id;
        let (reply, answer) = oneshot::channel();
        match self.inner.tx.try_send(Command::ChangeMembership(cc, reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(StoreError::Busy),
            Err(TrySendError::Disconnected(_)) => return Err(StoreError::Stopped),
        }
        answer.await.map_err(|_| StoreError::Stopped)?
    }

    /// The object at `key` in this peer's applied state: on the leader, or
    /// with one peer, every acknowledged write is there; a follower may lag
    /// (use [`Store::get_linearizable`]).
    pub fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        if let Some(kv) = lock(&self.inner.shared.objects).get(key) {
            return Ok(Some(kv.clone()));
        }
        let db = &self.inner.shared.db;
        match db.get_pinned_cf(cf(db, CF_OBJECTS)?, key.as_bytes())? {
            Some(v) => Ok(Some(error::decode("object", &v)?)),
            None => Ok(None),
        }
    }

    /// The objects whose keys start with `prefix`, in key order, at most
    /// `limit` (0 or more than [`RANGE_ITEMS_MAX`] means
    /// [`RANGE_ITEMS_MAX`]), read from one RocksDB snapshot together with
    /// the revision they reflect.
    pub fn range(&self, prefix: &str, limit: usize) -> Result<RangeResult, StoreError> {
        self.range_from(prefix, prefix, limit)
    }

    /// Like [`Store::range`], starting at the first key `>= start`: pass
    /// the last key of a page plus `"\0"` to read the next page. (Pages are
    /// each consistent, not with each other.)
    pub fn range_from(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
    ) -> Result<RangeResult, StoreError> {
        self.read_range(prefix, start, limit, None)
    }

    /// Like [`Store::range_from`], as the objects were at `revision` (etcd's
    /// range at a revision, Kubernetes' list at an exact
    /// `resourceVersion`): the answer's `revision` is `revision`, and each
    /// object carries its bookkeeping of then. Pages at one revision are
    /// consistent with each other.
    ///
    /// The current objects are read with the history after `revision`
    /// undone ([`history`]), all from one RocksDB snapshot. Errors:
    /// [`StoreError::Compacted`] when that history was pruned (or recorded
    /// before it kept previous objects), [`StoreError::FutureRevision`]
    /// when this peer has not reached `revision` (read at
    /// [`Store::read_index`] first for a linearizable answer),
    /// [`StoreError::HistoryReadLimit`] when undoing would read more than
    /// [`crate::StoreConfig::history_read_bytes_max`] of history.
    pub fn range_at(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
        revision: u64,
    ) -> Result<RangeResult, StoreError> {
        self.read_range(prefix, start, limit, Some(revision))
    }

    /// [`Store::range_from`] (`at` = `None`) and [`Store::range_at`].
    fn read_range(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
        at: Option<u64>,
    ) -> Result<RangeResult, StoreError> {
        let limit = clamp_limit(limit, RANGE_ITEMS_MAX);
        let db = &self.inner.shared.db;
        let snap = db.snapshot();
        let revision = snapshot_u64(db, &snap, KEY_REVISION, "revision")?;
        let before = match at {
            Some(at) if at != revision => {
                let compacted_to = snapshot_compacted_to(db, &snap)?;
                if at > revision {
                    return Err(StoreError::FutureRevision {
                        revision: at,
                        current: revision,
                    });
                }
                if at < compacted_to {
                    return Err(StoreError::Compacted { compacted_to });
                }
                let changes = self.history_after(db, &snap, at, prefix)?;
                history::objects_before(&changes, at, prefix).map_err(
                    |HistoryError::PreviousUnknown { revision, .. }| StoreError::Compacted {
                        compacted_to: revision,
                    },
                )?
            }
            _ => BTreeMap::new(),
        };
        let mut opts = ReadOptions::default();
        if let Some(end) = prefix_end(prefix.as_bytes()) {
            opts.set_iterate_upper_bound(end);
        }
        let from = if start > prefix { start } else { prefix };
        let current = snap
            .iterator_cf_opt(
                cf(db, CF_OBJECTS)?,
                opts,
                IteratorMode::From(from.as_bytes(), Direction::Forward),
            )
            .map(|item| -> Result<KeyValue, StoreError> {
                let (_, v) = item?;
                Ok(error::decode("object", &v)?)
            });
        let (items, more) = history::merge_at(current, &before, from, limit)?;
        Ok(RangeResult {
            items,
            revision: at.unwrap_or(revision),
            more,
        })
    }

    /// The changes to keys under `prefix` after revision `at`, in order,
    /// from the snapshot `snap`; at most `history_read_bytes_max` bytes of
    /// history records are read.
    fn history_after(
        &self,
        db: &DB,
        snap: &Snapshot<'_>,
        at: u64,
        prefix: &str,
    ) -> Result<Vec<StoredChange>, StoreError> {
        let bytes_max = self.inner.history_read_bytes_max;
        let iter = snap.iterator_cf_opt(
            cf(db, CF_HISTORY)?,
            ReadOptions::default(),
            IteratorMode::From(&be(at.saturating_add(1)), Direction::Forward),
        );
        let mut bytes = 0;
        let mut out = Vec::new();
        for item in iter {
            let (_, v) = item?;
            bytes += v.len();
            if bytes > bytes_max {
                return Err(StoreError::HistoryReadLimit {
                    revision: at,
                    bytes_max,
                });
            }
            let changes = record::decode(&v)?;
            out.extend(changes.into_iter().filter(|c| c.key.starts_with(prefix)));
        }
        Ok(out)
    }

    /// The store's revision: that of the last applied change.
    pub fn revision(&self) -> u64 {
        self.inner.shared.revision.load(Ordering::Acquire)
    }

    /// The revision of the last change in `stream` (0: none yet). Watchers
    /// compare it with what they saw (bookmarks).
    pub fn stream_head(&self, stream: &str) -> Result<u64, StoreError> {
        crate::layout::meta_u64(
            &self.inner.shared.db,
            &crate::layout::stream_head_key(stream),
            "stream head",
        )
    }

    /// The changes of revisions after `after_revision`, in order, from the
    /// history. At most `limit` changes (0 or more than [`CHANGES_MAX`]
    /// means [`CHANGES_MAX`]), but never part of a revision: at least the
    /// first revision is returned whole. [`StoreError::Compacted`] if
    /// revision `after_revision + 1` was pruned.
    pub fn changes_since(
        &self,
        after_revision: u64,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        let limit = clamp_limit(limit, CHANGES_MAX);
        let db = &self.inner.shared.db;
        let snap = db.snapshot();
        let compacted_to = snapshot_compacted_to(db, &snap)?;
        if after_revision < compacted_to {
            return Err(StoreError::Compacted { compacted_to });
        }
        let Some(first) = after_revision.checked_add(1) else {
            return Ok(Vec::new());
        };
        let iter = snap.iterator_cf_opt(
            cf(db, CF_HISTORY)?,
            ReadOptions::default(),
            IteratorMode::From(&be(first), Direction::Forward),
        );
        let mut out = Vec::new();
        for item in iter {
            let (_, v) = item?;
            let changes = record::decode(&v)?;
            if !out.is_empty() && out.len() + changes.len() > limit {
                break;
            }
            out.extend(changes);
            if out.len() >= limit {
                break;
            }
        }
        record::fill_values(out, &mut SnapshotValues { db, snap: &snap })
    }

    /// How this peer's Raft log has been written since it opened (group
    /// commit: entries per write).
    pub fn persist_stats(&self) -> PersistStats {
        let s = &self.inner.shared;
        PersistStats {
            log_writes: s.log_writes.load(Ordering::Relaxed),
            log_syncs: s.log_syncs.load(Ordering::Relaxed),
            log_entries: s.log_entries.load(Ordering::Relaxed),
        }
    }

    /// Whether this peer is the Raft leader (the only one that accepts
    /// proposals).
    pub fn is_leader(&self) -> bool {
        self.inner.shared.is_leader.load(Ordering::Acquire)
    }

    /// Figures about this peer.
    pub fn status(&self) -> StoreStatus {
        let s = &self.inner.shared;
        let membership = lock(&s.membership).clone();
        StoreStatus {
            peer_id: self.inner.peer_id,
            is_leader: s.is_leader.load(Ordering::Acquire),
            leader: s.leader(),
            term: s.term.load(Ordering::Acquire),
            revision: s.revision.load(Ordering::Acquire),
            applied_index: s.applied_index.load(Ordering::Acquire),
            first_log_index: s.first_log_index.load(Ordering::Acquire),
            last_log_index: s.last_log_index.load(Ordering::Acquire),
            history_compacted_to: s.history_compacted_to.load(Ordering::Acquire),
            proposals_in_flight: s.in_flight.load(Ordering::Acquire),
            stopped: s.stopped.load(Ordering::Acquire),
            voters: membership.voters,
            learners: membership.learners,
            progress: membership.progress,
        }
    }

    /// Stops the Raft thread and waits for it (at most one Ready; it syncs
    /// the write-ahead log on the way out), blocking the calling thread. Idempotent; dropping the last handle does the same.
    /// Waiting proposals fail with [`StoreError::Stopped`]; reads keep
    /// working until the last handle is dropped.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }

    /// Starts a backup of this peer's applied state as it is now (one
    /// RocksDB snapshot, consistent: every apply batch is in it whole or
    /// not at all), streamed in chunks of `chunk_bytes` from a thread of
    /// its own (see [`crate::backup::stream`]). A follower's state may lag
    /// the leader's; ask the leader for the newest.
    pub fn backup(
        &self,
        chunk_bytes: usize,
    ) -> Result<crate::backup::BackupStream, crate::backup::BackupError> {
        crate::backup::stream(Arc::clone(&self.inner.shared.db), chunk_bytes)
    }
}

impl Store {
    /// Answers another peer's request for a chunk of a snapshot this peer
    /// sends it (see [`crate::snapshot`]): the next chunk, the last one
    /// again, [`SnapshotChunk::End`] or [`SnapshotChunk::Gone`]. Blocks
    /// while the scan makes the chunk (a few milliseconds; the scan runs
    /// ahead of the requests): call it from a thread that may block (in
    /// tokio, `spawn_blocking`).
    pub fn snapshot_chunk(&self, req: &ChunkRequest) -> SnapshotChunk {
        self.inner.shared.outgoing.chunk(req)
    }

    /// What this peer sent of snapshots so far.
    pub fn snapshot_stats(&self) -> crate::snapshot::SendStats {
        self.inner.shared.outgoing.stats()
    }
}

impl Inner {
    fn shutdown(&self) {
        self.shared.stop_requested.store(true, Ordering::Release);
        // Wakes the thread if it waits for a command; if the queue is full
        // it sees the flag within one batch anyway.
        let _ = self.tx.try_send(Command::Shutdown);
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                tracing::error!(peer = self.peer_id, "the raft thread panicked");
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The values history records left out, read from the RocksDB snapshot
/// the records were read from.
struct SnapshotValues<'a> {
    db: &'a DB,
    snap: &'a Snapshot<'a>,
}

impl ValueSource for SnapshotValues<'_> {
    fn next_change(&mut self, revision: u64, key: &str) -> Result<Option<u64>, StoreError> {
        let k = next_change_key(revision, key);
        match self.snap.get_cf(cf(self.db, CF_HISTORY_NEXT)?, k)? {
            Some(v) => Ok(Some(read_u64("next change", &v)?)),
            None => Ok(None),
        }
    }

    fn record(&mut self, revision: u64) -> Result<Vec<StoredChange>, StoreError> {
        match self.snap.get_cf(cf(self.db, CF_HISTORY)?, be(revision))? {
            Some(v) => Ok(record::decode(&v)?),
            None => Ok(Vec::new()),
        }
    }

    fn object(&mut self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        match self.snap.get_cf(cf(self.db, CF_OBJECTS)?, key.as_bytes())? {
            Some(v) => Ok(Some(error::decode("object", &v)?)),
            None => Ok(None),
        }
    }
}

/// The history's compaction point in the RocksDB snapshot `snap`.
fn snapshot_compacted_to(db: &DB, snap: &Snapshot<'_>) -> Result<u64, StoreError> {
    snapshot_u64(
        db,
        snap,
        KEY_HISTORY_COMPACTED_TO,
        "history compaction point",
    )
}

/// A `meta` counter as the RocksDB snapshot `snap` holds it (0: absent).
fn snapshot_u64(
    db: &DB,
    snap: &Snapshot<'_>,
    key: &[u8],
    what: &'static str,
) -> Result<u64, StoreError> {
    match snap.get_cf(cf(db, CF_META)?, key)? {
        Some(v) => Ok(read_u64(what, &v)?),
        None => Ok(0),
    }
}

fn clamp_limit(limit: usize, max: usize) -> usize {
    if limit == 0 {
        max
    } else {
        limit.min(max)
    }
}
