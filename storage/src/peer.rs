//! The Raft peer driver: one `std::thread` that owns the raft-rs
//! [`RawNode`], feeds it proposals, inbound messages and ticks, and runs the
//! Ready loop (persist, send, apply, answer). See the crate doc for the
//! loop step by step and the durability contract it keeps.
//!
//! The thread talks to [`crate::Store`] handles only through a bounded
//! command channel and the atomics in [`Shared`]; it never blocks on a
//! handle. It knows nothing of actix or NATS: messages leave through the
//! [`Transport`] trait and applied changes through a bounded tokio mpsc
//! channel.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use raft::prelude::{
    ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType, Snapshot,
};
use raft::{ProgressState, RawNode, SnapshotStatus, StateRole, INVALID_ID};
use rocksdb::{WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::config::StoreConfig;
use crate::error::{self, CodecError, StoreError};
use crate::history::{self, Retention};
use crate::layout::{
    be, cf, meta_u64, next_change_key, read_u64, stream_head_key, CF_HISTORY, CF_HISTORY_NEXT,
    CF_HISTORY_TIME, CF_META, CF_OBJECTS, KEY_APPLIED_INDEX, KEY_HISTORY_COMPACTED_TO,
    KEY_REVISION,
};
use crate::log_writer::{self, LogWrite, LogWriter, SharedTransport};
use crate::logger::raft_logger;
use crate::machine::{self, Commit, Decision, StateView};
use crate::model::{Change, KeyValue, Txn, TxnOutcome};
use crate::object_cache::{self, ObjectCache};
use crate::raft_storage::RocksStorage;
use crate::record;
use crate::snapshot::{self, Descriptor, Outgoing, SnapshotError};
use crate::transport::{SnapshotFetcher, Transport};

/// Most history revisions pruned by one apply batch or one timer tick.
const HISTORY_PRUNE_CHUNK: u64 = 4096;
/// A ReadIndex request unanswered this many heartbeats is asked again (the
/// request or its answer may have been lost, or there was no leader).
const READ_INDEX_RETRY_HEARTBEATS: u64 = 2;
/// Largest append message to a follower (NATS' default payload limit).
pub(crate) const RAFT_MSG_BYTES_MAX: u64 = 1024 * 1024;
/// Append messages in flight to one follower.
const RAFT_INFLIGHT_MSGS_MAX: usize = 256;
/// Proposed but uncommitted bytes before the leader drops proposals.
const RAFT_UNCOMMITTED_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Committed entries handed out by one Ready (bounds one apply batch).
const RAFT_COMMITTED_BYTES_PER_READY_MAX: u64 = 16 * 1024 * 1024;
/// How long the Raft thread waits between attempts to hand changes to a
/// full change channel (it also checks for shutdown then).
const CHANGES_FULL_WAIT: Duration = Duration::from_millis(1);
/// Most stream heads the Raft thread keeps in memory; past it the cache
/// starts over (the heads are on disk: this bounds memory, not meaning).
const STREAM_HEADS_CACHED_MAX: usize = 4096;

/// State the Raft thread shares with the handles: the database (handles
/// read it directly) and figures the thread publishes.
pub(crate) struct Shared {
    pub db: Arc<DB>,
    pub revision: AtomicU64,
    pub applied_index: AtomicU64,
    pub first_log_index: AtomicU64,
    pub last_log_index: AtomicU64,
    pub history_compacted_to: AtomicU64,
    pub leader_id: AtomicU64,
    pub term: AtomicU64,
    pub is_leader: AtomicBool,
    /// A handle asked the thread to stop.
    pub stop_requested: AtomicBool,
    /// The thread has stopped (or is about to).
    pub stopped: AtomicBool,
    /// Proposals and reads accepted and not yet answered.
    pub in_flight: AtomicUsize,
    /// The configuration and, on the leader, each peer's progress.
    pub membership: Mutex<Membership>,
    /// Writes of new log entries (one per Ready that had some).
    pub log_writes: AtomicU64,
    /// Of those, the ones synced.
    pub log_syncs: AtomicU64,
    /// Log entries written, all writes together.
    pub log_entries: AtomicU64,
    /// The objects applied last (filled by the Raft thread only).
    pub objects: Arc<Mutex<ObjectCache>>,
    /// The snapshots this peer streams to others (see [`crate::snapshot`]).
    pub outgoing: Arc<Outgoing>,
}

/// How the Raft log has been written since the store opened: group commit
/// shows as `log_entries` well above `log_writes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersistStats {
    /// Writes of new log entries (one per Ready that had some).
    pub log_writes: u64,
    /// Of those, the ones fsynced (all of them with fsync on).
    pub log_syncs: u64,
    /// Log entries written, all writes together.
    pub log_entries: u64,
}

/// The Raft configuration as this peer knows it, and (leader only) how far
/// each peer's log matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Membership {
    /// Voting peers, in order.
    pub voters: Vec<u64>,
    /// Non-voting peers.
    pub learners: Vec<u64>,
    /// On the leader: every peer's replication progress; empty elsewhere.
    pub progress: Vec<PeerProgress>,
}

/// How far one peer's log matches the leader's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    /// The peer.
    pub peer_id: u64,
    /// The highest log index known to match the leader's.
    pub matched: u64,
    /// `probe`, `replicate` or `snapshot` (being sent a snapshot).
    pub state: &'static str,
}

impl Shared {
    pub fn new(db: Arc<DB>, outgoing: Outgoing) -> Shared {
        Shared {
            db,
            outgoing: Arc::new(outgoing),
            revision: AtomicU64::new(0),
            applied_index: AtomicU64::new(0),
            first_log_index: AtomicU64::new(0),
            last_log_index: AtomicU64::new(0),
            history_compacted_to: AtomicU64::new(0),
            leader_id: AtomicU64::new(0),
            term: AtomicU64::new(0),
            is_leader: AtomicBool::new(false),
            stop_requested: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            log_writes: AtomicU64::new(0),
            log_syncs: AtomicU64::new(0),
            log_entries: AtomicU64::new(0),
            membership: Mutex::new(Membership::default()),
            objects: Arc::new(Mutex::new(ObjectCache::new(object_cache::CACHE_BYTES_MAX))),
        }
    }

    /// The leader this peer knows of.
    pub fn leader(&self) -> Option<u64> {
        match self.leader_id.load(Ordering::Acquire) {
            INVALID_ID => None,
            id => Some(id),
        }
    }
}

/// One place in the proposal budget; given back when dropped (answered,
/// abandoned, or dropped with the thread).
pub(crate) struct InFlightSlot(Arc<Shared>);

impl InFlightSlot {
    pub fn acquire(shared: &Arc<Shared>, max: usize) -> Option<InFlightSlot> {
        let before = shared.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= max {
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InFlightSlot(Arc::clone(shared)))
    }
}

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Identifies a proposal across peers and restarts: a peer id and the
/// store's incarnation (bumped at every open) make the sequence number
/// unique, so an entry re-applied after a restart, or proposed by another
/// peer, never answers a waiting proposer it does not belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct ProposalId {
    pub peer: u64,
    pub incarnation: u64,
    pub seq: u64,
}

/// The data of a normal Raft entry, as encoded by the proposer.
#[derive(Serialize)]
pub(crate) struct EntryDataRef<'a> {
    pub id: ProposalId,
    pub txn: &'a Txn,
    /// The proposer's W3C trace context, handed to the changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<&'a str>,
}

/// The data of a normal Raft entry, as decoded by the applier.
#[derive(Deserialize)]
struct EntryData {
    id: ProposalId,
    txn: Txn,
    #[serde(default)]
    trace: Option<String>,
}

pub(crate) type Reply = oneshot::Sender<Result<TxnOutcome, StoreError>>;

/// A transaction on its way to the Raft thread.
pub(crate) struct Proposal {
    pub id: ProposalId,
    /// The encoded [`EntryDataRef`].
    pub data: Vec<u8>,
    pub reply: Reply,
    pub slot: InFlightSlot,
    /// The proposer's span: this thread's spans of the proposal are its
    /// children (disabled when the write is not traced).
    pub span: tracing::Span,
}

/// Answers a ReadIndex request with the index the read may be served at,
/// once this peer has applied it.
pub(crate) struct ReadRequest {
    pub reply: oneshot::Sender<Result<u64, StoreError>>,
    /// Held until the read is answered (the in-flight budget).
    pub slot: InFlightSlot,
}

/// A waiting read and when it gives up.
struct WaitingRead {
    req: ReadRequest,
    deadline: Instant,
}

/// Reads that asked Raft for a read index together (one context).
struct ReadBatch {
    reads: Vec<WaitingRead>,
    retry_at: Instant,
}

/// Answers a membership change with the voters after it, in order.
pub(crate) type MembershipReply = oneshot::Sender<Result<Vec<u64>, StoreError>>;

/// A membership change in the log, waiting to be applied.
struct ConfWaiter {
    ctx: Vec<u8>,
    reply: MembershipReply,
    /// Past it the proposer hears [`StoreError::Timeout`] (the change may
    /// still be applied).
    deadline: Instant,
}

/// What a handle asks of the Raft thread.
pub(crate) enum Command {
    /// Propose a transaction. The leader appends it; a follower that knows
    /// the leader forwards it there (raft-rs `MsgPropose`) and answers its
    /// proposer when it applies the entry, recognised by its id.
    Propose(Proposal),
    /// Step a message from another peer.
    Step(Message),
    /// Ask for a linearizable read index.
    ReadIndex(ReadRequest),
    /// Hand leadership to a peer (a follower forwards the request).
    TransferLeader(u64),
    /// Propose a membership change (leader only).
    ChangeMembership(ConfChange, MembershipReply),
    /// Stop the thread.
    Shutdown,
    /// The log writer wrote more (or failed): see [`LogWriter::persisted`].
    Persisted,
    /// The data of this snapshot message was received and staged (by the
    /// receiving thread [`Peer::start_receive`] started): step it.
    SnapshotReceived(Message),
    /// Receiving the data of snapshot `id` failed.
    SnapshotFailed(u64),
}

/// A proposal in the Raft log, waiting to be applied.
struct Pending {
    reply: Reply,
    slot: InFlightSlot,
    /// `raft.propose`: from the proposal's arrival here to its answer.
    span: tracing::Span,
}

impl Pending {
    /// Gives the in-flight place back, then answers: a proposer that hears
    /// back sees its place free again.
    fn answer(self, result: Result<TxnOutcome, StoreError>) {
        drop(self.slot);
        let _ = self.reply.send(result);
    }
}

/// The Raft thread's state.
pub(crate) struct Peer {
    cfg: StoreConfig,
    raw: RawNode<RocksStorage>,
    rx: Receiver<Command>,
    transport: SharedTransport,
    /// Writes the log and HardState off this thread (see [`crate::log_writer`]).
    writer: LogWriter,
    /// The number of the last Ready raft-rs was told is persisted.
    persisted_number: u64,
    shared: Arc<Shared>,
    changes: mpsc::Sender<Vec<Change>>,
    changes_open: bool,
    /// Set while `new` re-applies the committed backlog: nobody reads the
    /// change channel yet, so changes that do not fit are dropped
    /// (watchers recover them from the history) instead of waited for.
    catching_up: bool,
    pending: HashMap<ProposalId, Pending>,
    /// Log index of each pending proposal: when an index is applied, any
    /// proposal still waiting there lost its entry to a new leader.
    pending_by_index: BTreeMap<u64, ProposalId>,
    /// Pending proposals, oldest first, with the time they give up: a
    /// forward or the leader may be lost, or a leader cut off from the
    /// others may never learn what became of its entry.
    deadlines: VecDeque<(Instant, ProposalId)>,
    /// Reads that arrived during this turn of the loop; they share one
    /// ReadIndex request.
    reads_new: Vec<ReadRequest>,
    /// ReadIndex requests in Raft, by context.
    reads: HashMap<u64, ReadBatch>,
    next_read_ctx: u64,
    /// Reads with a read index, waiting until it is applied.
    read_waiters: BTreeMap<u64, Vec<WaitingRead>>,
    /// Membership changes in the log, by index.
    conf_waiters: BTreeMap<u64, ConfWaiter>,
    /// How this peer fetches the data of the snapshots it is sent.
    fetcher: Option<Arc<dyn SnapshotFetcher>>,
    /// The command channel, for the thread that receives a snapshot.
    wake: SyncSender<Command>,
    /// `(from, id)` of the snapshot being received, if one is.
    receiving: Option<(u64, u64)>,
    /// `(from, id)` of the snapshot received and staged, not yet
    /// installed.
    staged: Option<(u64, u64)>,
    /// Set when the peer stops: the receiving thread gives up.
    cancel: Arc<AtomicBool>,
    request_timeout: Duration,
    applied_index: u64,
    revision: u64,
    history_compacted_to: u64,
    /// `(revision, made_ms)` of every retained revision that has a time
    /// (see [`CF_HISTORY_TIME`]), oldest first: the mirror of that column
    /// family, so that deciding whether age pruning is due reads no disk.
    /// One pair per retained revision: bounded by the history's retention.
    history_times: VecDeque<(u64, u64)>,
    /// The head of every stream written since `open` or the last snapshot
    /// installed (one entry per resource; cleared past
    /// [`STREAM_HEADS_CACHED_MAX`]), so that applying a change reads a
    /// stream's head from RocksDB at most once.
    stream_heads: HashMap<String, u64>,
    /// The highest index through which, by the word of a leader in an
    /// applied entry ([`EntryContext::log_everywhere`]), every peer had the
    /// log: this peer compacts its own log that far (0 after `open`, until
    /// the next entry says).
    log_everywhere: u64,
    /// The commit index this leader last told its followers of
    /// ([`Peer::broadcast_commit`]).
    commit_sent: u64,
    apply_write: WriteOptions,
}

impl Peer {
    /// Loads (bootstrapping if fresh) the Raft state and the state
    /// machine's position, and builds the Raft node. A single-voter store
    /// campaigns at once instead of waiting out an election timeout.
    pub fn new(
        cfg: StoreConfig,
        transport: Box<dyn Transport>,
        shared: Arc<Shared>,
        changes: mpsc::Sender<Vec<Change>>,
        rx: Receiver<Command>,
        wake: SyncSender<Command>,
    ) -> Result<Peer, StoreError> {
        let db = Arc::clone(&shared.db);
        let mut storage = RocksStorage::load(Arc::clone(&db))?;
        storage.set_outgoing(Arc::clone(&shared.outgoing));
        if let Some(marker) = db.get_cf(cf(&db, CF_META)?, KEY_SNAPSHOT_INSTALLING)? {
            // A crash interrupted an install: the state machine is half
            // replaced. Install the staged snapshot again, from the start.
            let (from, id, meta) = decode_install_marker(&marker)?;
            let path = snapshot::staged_path(&cfg.data_dir, from, id);
            tracing::warn!(
                peer = cfg.peer_id,
                index = meta.index,
                "finishing a snapshot install a crash interrupted"
            );
            install_staged(&db, &mut storage, &path, (from, id), &meta, cfg.fsync)?;
        }
        snapshot::clear_staging(&cfg.data_dir, None);
        // A joining peer (no initial peers) writes nothing: its log stays
        // empty at index 0, below the start of every bootstrapped log, so
        // the leader must send it a snapshot (which carries the
        // configuration). Replaying the log instead would start from an
        // empty configuration and leave it believing it is alone.
        if !storage.is_initialized() && !cfg.initial_peers.is_empty() {
            let mut wb = WriteBatch::default();
            storage.stage_bootstrap(&mut wb, cfg.initial_peers.clone())?;
            db.write_opt(wb, &sync_write(cfg.fsync))?;
            tracing::info!(peer = cfg.peer_id, voters = ?cfg.initial_peers, "bootstrapped a fresh store");
        }
        // The truncation point is never past the persisted applied index
        // (compaction and snapshots write both in one batch), except right
        // after bootstrap, where the log starts after RAFT_INIT_INDEX.
        let applied_index =
            meta_u64(&db, KEY_APPLIED_INDEX, "applied index")?.max(storage.truncated_index());
        let revision = meta_u64(&db, KEY_REVISION, "revision")?;
        let history_compacted_to =
            meta_u64(&db, KEY_HISTORY_COMPACTED_TO, "history compaction point")?;
        let history_times = load_history_times(&db, history_compacted_to)?;
        if applied_index > storage.last_log_index() {
            return Err(StoreError::Corrupt(format!(
                "applied index {applied_index} is past the last log entry {}",
                storage.last_log_index()
            )));
        }
        if applied_index + 1 < storage.first_log_index() {
            return Err(StoreError::Corrupt(format!(
                "applied index {applied_index} is before the first log entry {}",
                storage.first_log_index()
            )));
        }
        if storage.hard_state().commit < applied_index {
            // Only committed entries are applied, and the apply batch
            // persists the commit index with the applied index; repair an
            // older store rather than let raft-rs panic on it.
            let mut wb = WriteBatch::default();
            storage.stage_commit(&mut wb, applied_index)?;
            db.write_opt(wb, &sync_write(cfg.fsync))?;
        }
        storage.set_applied_index(applied_index);
        let solo = storage.conf_state().voters == [cfg.peer_id]
            && storage.conf_state().learners.is_empty();

        let config = raft::Config {
            id: cfg.peer_id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied: applied_index,
            max_size_per_msg: RAFT_MSG_BYTES_MAX,
            max_inflight_msgs: RAFT_INFLIGHT_MSGS_MAX,
            check_quorum: true,
            // The leader tells followers of a new commit index once per turn
            // of the loop (`Peer::broadcast_commit`), not once per ack.
            skip_bcast_commit: true,
            pre_vote: true,
            max_uncommitted_size: RAFT_UNCOMMITTED_BYTES_MAX,
            max_committed_size_per_ready: RAFT_COMMITTED_BYTES_PER_READY_MAX,
            ..Default::default()
        };
        let mut raw = RawNode::new(&config, storage, &raft_logger(cfg.peer_id))?;
        if solo {
            raw.campaign()?;
        }
        // The apply batch bypasses RocksDB's write-ahead log: the Raft log
        // already holds every entry it applies, and a crash loses the
        // unflushed batches as one consistent suffix (atomic flush), which
        // a restart applies again from the log. See the crate doc.
        let mut apply_write = WriteOptions::default();
        apply_write.set_sync(false);
        apply_write.disable_wal(true);
        let request_timeout = Duration::from_millis(cfg.request_timeout_ms);
        let fetcher = transport.snapshot_fetcher();
        let transport: SharedTransport = Arc::new(Mutex::new(transport));
        let writer = LogWriter::start(
            cfg.peer_id,
            Arc::clone(&shared),
            Arc::clone(&transport),
            wake.clone(),
        )?;
        let mut peer = Peer {
            cfg,
            raw,
            rx,
            transport,
            writer,
            persisted_number: 0,
            shared,
            changes,
            changes_open: true,
            catching_up: true,
            pending: HashMap::new(),
            pending_by_index: BTreeMap::new(),
            deadlines: VecDeque::new(),
            reads_new: Vec::new(),
            reads: HashMap::new(),
            next_read_ctx: 1,
            read_waiters: BTreeMap::new(),
            conf_waiters: BTreeMap::new(),
            fetcher,
            wake,
            receiving: None,
            staged: None,
            cancel: Arc::new(AtomicBool::new(false)),
            request_timeout,
            applied_index,
            revision,
            history_compacted_to,
            history_times,
            stream_heads: HashMap::new(),
            log_everywhere: 0,
            commit_sent: 0,
            apply_write,
        };
        // Apply what the log says is committed before the store is handed
        // out, so that reads after `open` see every acknowledged write. A
        // sole voter (leader already) commits its whole log again with the
        // empty entry of its new term: every entry it persisted had its
        // quorum, so that covers writes acknowledged after the last
        // HardState written.
        let committed = if solo {
            peer.raw.raft.raft_log.last_index()
        } else {
            peer.raw.raft.raft_log.committed
        };
        while peer.applied_index < committed && peer.raw.has_ready() {
            peer.on_ready()?;
            peer.writer.drain()?;
            peer.on_persisted()?;
        }
        peer.catching_up = false;
        peer.publish_status();
        peer.publish_membership();
        Ok(peer)
    }

    /// The loop: wait for a command or the next tick, drain a batch of
    /// commands into the Raft node, tick, handle the Ready. Returns when
    /// asked to stop, when every handle is gone, or on an I/O error.
    pub fn run(mut self) {
        let _stopped = StoppedOnExit(Arc::clone(&self.shared), Arc::clone(&self.cancel));
        let tick = Duration::from_millis(self.cfg.tick_interval_ms);
        let mut next_tick = Instant::now() + tick;
        loop {
            let wait = if self.commit_unsent() {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            let mut stop = match self.rx.recv_timeout(wait) {
                Ok(cmd) => self.handle(cmd),
                Err(RecvTimeoutError::Timeout) => false,
                Err(RecvTimeoutError::Disconnected) => true,
            };
            // Group commit: everything queued meanwhile goes into this Ready.
            let mut drained = 1;
            while !stop && drained < self.cfg.max_batch_entries {
                match self.rx.try_recv() {
                    Ok(cmd) => stop = self.handle(cmd),
                    Err(_) => break,
                }
                drained += 1;
            }
            if stop || self.shared.stop_requested.load(Ordering::Acquire) {
                break;
            }
            if let Err(e) = self.on_persisted() {
                tracing::error!(peer = self.cfg.peer_id, error = %e, "raft peer stopped after an error");
                break;
            }
            self.issue_reads();
            if Instant::now() >= next_tick {
                self.raw.tick();
                next_tick = Instant::now() + tick;
                self.on_tick(Instant::now());
                if let Err(e) = self.prune_history_by_clock() {
                    tracing::error!(peer = self.cfg.peer_id, error = %e, "raft peer stopped after an error");
                    break;
                }
            }
            self.broadcast_commit();
            if let Err(e) = self.on_ready() {
                tracing::error!(peer = self.cfg.peer_id, error = %e, "raft peer stopped after an error");
                break;
            }
            self.publish_status();
        }
        // Answer nobody: dropping the replies tells the proposers the store
        // stopped; entries already in the log are applied on restart.
        self.pending.clear();
        self.pending_by_index.clear();
        self.reads.clear();
        self.read_waiters.clear();
        self.conf_waiters.clear();
        if let Err(e) = self.writer.drain() {
            tracing::warn!(error = %e, "the log writer stopped before the peer");
        }
        if let Err(e) = self.shared.db.flush_wal(true) {
            tracing::warn!(error = %e, "cannot flush the write-ahead log at shutdown");
        }
        tracing::info!(peer = self.cfg.peer_id, "raft peer stopped");
    }

    /// Whether this leader's commit index moved since it last told its
    /// followers.
    fn commit_unsent(&self) -> bool {
        let raft = &self.raw.raft;
        raft.state == StateRole::Leader && raft.raft_log.committed > self.commit_sent
    }

    /// Tells the followers of a new commit index, once per turn of the
    /// loop. raft-rs would broadcast it on every ack that moves it
    /// (`skip_bcast_commit` is on): with many proposals in flight that is
    /// several rounds of appends per turn, each a message per follower
    /// through NATS. Here it goes out once, and not at all to a follower
    /// that an append of this turn already told (appends carry the commit
    /// index). The loop comes back at once while it is unsent, so a
    /// follower never waits for a later turn or a heartbeat.
    fn broadcast_commit(&mut self) {
        if !self.commit_unsent() {
            return;
        }
        let raft = &mut self.raw.raft;
        let committed = raft.raft_log.committed;
        let me = raft.id;
        let told = |to: u64| {
            raft.msgs.iter().any(|m| {
                m.to == to && m.get_msg_type() == MessageType::MsgAppend && m.commit >= committed
            })
        };
        let untold = raft.prs().iter().any(|(id, _)| *id != me && !told(*id));
        if untold {
            raft.bcast_append();
        }
        self.commit_sent = committed;
    }

    /// Hands one command to the Raft node; true when the loop must stop.
    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Propose(p) => self.propose(p),
            Command::Step(mut m) => {
                if m.get_msg_type() == MessageType::MsgPropose {
                    if m.entries.is_empty() {
                        // raft-rs treats this as a fatal bug; from the
                        // network it is only a bad message.
                        tracing::warn!(from = m.from, "empty proposal message dropped");
                        return false;
                    }
                    if self.raw.raft.state == StateRole::Leader {
                        // A proposal forwarded by a follower: the leader's
                        // clock stamps it, as it does its own.
                        let context = self.entry_context();
                        for e in m.mut_entries().iter_mut() {
                            if e.get_entry_type() == EntryType::EntryNormal {
                                e.context = context.clone().into();
                            }
                        }
                    }
                }
                if m.get_msg_type() == MessageType::MsgSnapshot {
                    // Its data is a descriptor: the state is fetched and
                    // staged first, then the message is stepped.
                    let d = match Descriptor::decode(&m.get_snapshot().data) {
                        Ok(d) => d,
                        Err(e) => {
                            tracing::warn!(from = m.from, error = %e, "damaged snapshot dropped");
                            return false;
                        }
                    };
                    if self.staged != Some((m.from, d.id)) {
                        self.start_receive(m, d);
                        return false;
                    }
                }
                if let Err(e) = self.raw.step(m) {
                    tracing::debug!(error = %e, "raft message not stepped");
                }
            }
            Command::ReadIndex(r) => self.reads_new.push(r),
            Command::TransferLeader(to) => {
                tracing::info!(peer = self.cfg.peer_id, to, "leader transfer requested");
                self.raw.transfer_leader(to);
            }
            Command::ChangeMembership(cc, reply) => self.propose_membership(cc, reply),
            Command::Shutdown => return true,
            // the loop asks the writer after every batch of commands
            Command::Persisted => {}
            Command::SnapshotReceived(m) => {
                let d = Descriptor::decode(&m.get_snapshot().data).ok();
                self.receiving = None;
                if let Some(d) = d {
                    let from = m.from;
                    self.staged = Some((from, d.id));
                    if let Err(e) = self.raw.step(m) {
                        tracing::debug!(error = %e, "snapshot not stepped");
                    }
                    // Raft may refuse it (stale by now): then nothing will
                    // ask for the staged file, and another may come.
                    if self.raw.raft.raft_log.unstable.snapshot.is_none() {
                        tracing::info!(from, id = d.id, "a received snapshot was not taken");
                        self.staged = None;
                        snapshot::clear_staging(&self.cfg.data_dir, None);
                    }
                }
            }
            Command::SnapshotFailed(id) => {
                if self.receiving.is_some_and(|(_, r)| r == id) {
                    self.receiving = None;
                }
            }
        }
        false
    }

    /// Starts fetching the data of the snapshot `m` describes on a thread
    /// of its own, into a staging file; the thread hands `m` back
    /// ([`Command::SnapshotReceived`]) once the file is complete and
    /// checked. One snapshot is received at a time: another that comes
    /// meanwhile is dropped (its sender gives it up and sends again).
    fn start_receive(&mut self, m: Message, d: Descriptor) {
        // One at a time: a snapshot being received, or received and taken
        // by Raft but not yet installed (its staged file is kept for the
        // install), makes another be dropped.
        if self.receiving.is_some() || self.staged.is_some() {
            tracing::debug!(
                from = m.from,
                id = d.id,
                "a snapshot is being received or installed; another dropped"
            );
            return;
        }
        let Some(fetcher) = self.fetcher.clone() else {
            tracing::warn!(from = m.from, error = %SnapshotError::NoFetcher, "snapshot dropped");
            return;
        };
        let (from, me, id) = (m.from, self.cfg.peer_id, d.id);
        let path = snapshot::staged_path(&self.cfg.data_dir, from, id);
        snapshot::clear_staging(&self.cfg.data_dir, None);
        let (wake, cancel) = (self.wake.clone(), Arc::clone(&self.cancel));
        let spawned = std::thread::Builder::new()
            .name(format!("kubus-snap-recv-{me}"))
            .spawn(move || {
                // However this thread ends (a panic included), the peer
                // hears of it and may receive another snapshot.
                let mut done = ReceiveDone {
                    wake,
                    id,
                    message: None,
                };
                tracing::info!(peer = me, from, id, index = d.index, "receiving a snapshot");
                match snapshot::receive(fetcher.as_ref(), (from, me, id), &path, &cancel) {
                    Ok(_) => done.message = Some(m),
                    Err(e) => {
                        tracing::warn!(peer = me, from, id, error = %e, "cannot receive a snapshot");
                        let _ = std::fs::remove_file(&path);
                    }
                }
            });
        match spawned {
            Ok(_) => self.receiving = Some((from, id)),
            Err(e) => tracing::warn!(error = %e, "cannot start a snapshot receiving thread"),
        }
    }

    /// Asks Raft for one read index on behalf of every read that arrived
    /// in this turn of the loop.
    fn issue_reads(&mut self) {
        if self.reads_new.is_empty() {
            return;
        }
        let now = Instant::now();
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let deadline = now + self.request_timeout;
        let reads = self
            .reads_new
            .drain(..)
            .map(|req| WaitingRead { req, deadline })
            .collect();
        self.raw.read_index(ctx.to_be_bytes().to_vec());
        self.reads.insert(
            ctx,
            ReadBatch {
                reads,
                retry_at: now + self.read_retry(),
            },
        );
    }

    fn read_retry(&self) -> Duration {
        Duration::from_millis(
            self.cfg.tick_interval_ms
                * self.cfg.heartbeat_ticks as u64
                * READ_INDEX_RETRY_HEARTBEATS,
        )
    }

    /// Timers: give up on requests past their deadline, ask again for read
    /// indexes not answered yet, re-send lost snapshots, publish progress.
    fn on_tick(&mut self, now: Instant) {
        // Oldest first; answered ones go too, so the queue holds little
        // more than the proposals in flight.
        while let Some(&(deadline, id)) = self.deadlines.front() {
            if deadline > now && self.pending.contains_key(&id) {
                break;
            }
            self.deadlines.pop_front();
            if let Some(p) = self.pending.remove(&id) {
                p.answer(Err(StoreError::Timeout));
            }
        }
        let late: Vec<u64> = self
            .conf_waiters
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(index, _)| *index)
            .collect();
        for index in late {
            if let Some(w) = self.conf_waiters.remove(&index) {
                let _ = w.reply.send(Err(StoreError::Timeout));
            }
        }
        let retry = self.read_retry();
        let mut again = Vec::new();
        self.reads.retain(|ctx, batch| {
            batch
                .reads
                .retain(|r| r.deadline > now && !r.req.reply.is_closed());
            if batch.reads.is_empty() {
                return false;
            }
            if batch.retry_at <= now {
                batch.retry_at = now + retry;
                again.push(*ctx);
            }
            true
        });
        for ctx in again {
            self.raw.read_index(ctx.to_be_bytes().to_vec());
        }
        for reads in self.read_waiters.values_mut() {
            reads.retain(|r| r.deadline > now && !r.req.reply.is_closed());
        }
        self.read_waiters.retain(|_, reads| !reads.is_empty());
        // Timed-out reads dropped above answer their caller with Timeout
        // through the closed channel (see `Store::read_index`).

        // Snapshot transfers: give up the idle ones, and tell raft-rs how
        // those that ended went (it probes again, and sends a new
        // snapshot if one is still needed).
        let outgoing = Arc::clone(&self.shared.outgoing);
        if self.raw.raft.state == StateRole::Leader {
            outgoing.expire(now);
            for (to, finished) in outgoing.ended() {
                let status = if finished {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                let in_snapshot = self
                    .raw
                    .raft
                    .prs()
                    .get(to)
                    .is_some_and(|p| p.state == ProgressState::Snapshot);
                if in_snapshot {
                    self.raw.report_snapshot(to, status);
                }
            }
        } else if outgoing.running() > 0 {
            outgoing.clear();
        }
        self.publish_progress();
    }

    fn propose_membership(&mut self, cc: ConfChange, reply: MembershipReply) {
        if self.raw.raft.state != StateRole::Leader {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        let ctx = self.next_read_ctx.to_be_bytes().to_vec();
        self.next_read_ctx += 1;
        match self.raw.propose_conf_change(ctx.clone(), cc) {
            Ok(()) => {
                let index = self.raw.raft.raft_log.last_index();
                let deadline = Instant::now() + self.request_timeout;
                self.conf_waiters.insert(
                    index,
                    ConfWaiter {
                        ctx,
                        reply,
                        deadline,
                    },
                );
            }
            Err(e) => {
                let _ = reply.send(Err(StoreError::MembershipRefused(e.to_string())));
            }
        }
    }

    /// Sends messages (noting snapshots in the log).
    fn send(&mut self, messages: Vec<Message>) {
        for m in &messages {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                tracing::info!(
                    to = m.to,
                    index = m.get_snapshot().get_metadata().index,
                    "sending a snapshot"
                );
            }
        }
        log_writer::send(&self.transport, messages);
    }

    fn not_leader(&self) -> StoreError {
        StoreError::NotLeader {
            leader: match self.raw.raft.leader_id {
                INVALID_ID => None,
                id => Some(id),
            },
        }
    }

    fn propose(&mut self, p: Proposal) {
        let Proposal {
            id,
            data,
            reply,
            slot,
            span,
        } = p;
        if reply.is_closed() {
            // The proposer gave up before we got to it.
            return;
        }
        let leading = self.raw.raft.state == StateRole::Leader;
        if !leading && self.raw.raft.leader_id == INVALID_ID {
            drop(slot);
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        // The leader's context is final; a follower's is replaced by the
        // leader it forwards the proposal to (see `handle`).
        let context = self.entry_context();
        match self.raw.propose(context, data) {
            Ok(()) => {
                // from its arrival here to its answer: replication, commit
                // and apply
                let span = kubus_trace::trace_span!(
                    child_of: &span,
                    "raft.propose",
                    leading,
                    index = tracing::field::Empty,
                );
                if leading {
                    let index = self.raw.raft.raft_log.last_index();
                    span.record("index", index);
                    self.pending_by_index.insert(index, id);
                }
                // Answered when the entry is applied here (a forwarded one
                // is recognised by its id), or with Timeout if it is not
                // in time.
                self.deadlines
                    .push_back((Instant::now() + self.request_timeout, id));
                self.pending.insert(id, Pending { reply, slot, span });
            }
            Err(raft::Error::ProposalDropped) => {
                // A leader drops proposals while it transfers leadership or
                // when too much is uncommitted.
                let e = if self.raw.raft.lead_transferee.is_some() || !leading {
                    self.not_leader()
                } else {
                    StoreError::Busy
                };
                drop(slot);
                let _ = reply.send(Err(e));
            }
            Err(e) => {
                drop(slot);
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    /// One turn of the Ready loop (the crate doc walks through it). The
    /// log write goes to the [`LogWriter`]; what it makes possible (a
    /// commit, a single peer's own entries) comes in a later turn, once
    /// [`Peer::on_persisted`] tells raft-rs.
    fn on_ready(&mut self) -> Result<(), StoreError> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        if !ready.snapshot().is_empty() {
            // A snapshot replaces the log: whatever was handed to the
            // writer goes to disk first, then it is installed here.
            self.writer.drain()?;
            self.on_persisted()?;
            return self.on_snapshot_ready(ready);
        }

        // 1. A leader may send before persisting (Raft thesis 10.2.1):
        //    followers acknowledge only what they persisted themselves.
        if !ready.messages().is_empty() {
            self.send(ready.take_messages());
        }

        // 2. Entries committed and persisted (raft-rs hands out only
        //    those), then the read indexes Raft confirmed.
        self.apply(ready.take_committed_entries())?;
        for rs in ready.take_read_states() {
            self.read_state(rs.index, &rs.request_ctx);
        }

        // 3. New entries and HardState: one batch for the writer, synced
        //    when Raft needs it, before the messages that depend on it.
        let mut batch = WriteBatch::default();
        let (entries, hard_state) = (ready.entries().len() as u64, ready.hs().is_some());
        if entries > 0 || hard_state {
            let storage = self.raw.mut_store();
            storage.stage_entries(&mut batch, ready.entries())?;
            if let Some(hs) = ready.hs() {
                storage.stage_hard_state(&mut batch, hs)?;
            }
        }
        let sync = self.cfg.fsync && ready.must_sync();
        let messages = ready.take_persisted_messages();
        let number = ready.number();
        self.raw.advance_append_async(ready);
        self.raw.advance_apply();
        if batch.is_empty() && self.writer.idle() {
            // Nothing to write and nothing queued: what the messages
            // promise is on disk already.
            if !messages.is_empty() {
                self.send(messages);
            }
            self.raw.on_persist_ready(number);
            self.persisted_number = number;
            return Ok(());
        }
        self.writer.submit(LogWrite {
            number,
            batch,
            sync,
            entries,
            hard_state,
            messages,
        })
    }

    /// Tells raft-rs how far the writer got; the cache may then let go of
    /// the entries written.
    fn on_persisted(&mut self) -> Result<(), StoreError> {
        let done = self.writer.persisted()?;
        if done > self.persisted_number {
            self.raw.on_persist_ready(done);
            self.persisted_number = done;
            let written = self.raw.raft.raft_log.persisted;
            self.raw.mut_store().set_written_through(written);
        }
        Ok(())
    }

    /// A Ready with a snapshot from the leader, handled on this thread
    /// with the writer idle: install it, persist the rest synchronously,
    /// then advance.
    fn on_snapshot_ready(&mut self, mut ready: raft::Ready) -> Result<(), StoreError> {
        if !ready.messages().is_empty() {
            self.send(ready.take_messages());
        }
        let snap = ready.snapshot().clone();
        self.install_snapshot(&snap)?;
        self.apply(ready.take_committed_entries())?;
        for rs in ready.take_read_states() {
            self.read_state(rs.index, &rs.request_ctx);
        }
        let (appends, hard_state) = (!ready.entries().is_empty(), ready.hs().is_some());
        if appends || hard_state {
            if appends {
                failpoint!(crate::failpoints::BEFORE_LOG_APPEND);
            }
            let mut wb = WriteBatch::default();
            let storage = self.raw.mut_store();
            storage.stage_entries(&mut wb, ready.entries())?;
            if let Some(hs) = ready.hs() {
                storage.stage_hard_state(&mut wb, hs)?;
            }
            let sync = self.cfg.fsync && ready.must_sync();
            self.shared.db.write_opt(wb, &sync_write(sync))?;
            let entries = ready.entries().len() as u64;
            crate::log_writer::written(&self.shared, entries, sync, hard_state);
        }
        if !ready.persisted_messages().is_empty() {
            self.send(ready.take_persisted_messages());
        }
        self.persisted_number = ready.number();
        let mut light = self.raw.advance(ready);
        let last = self.raw.store().last_log_index();
        self.raw.mut_store().set_written_through(last);
        if !light.messages().is_empty() {
            self.send(light.take_messages());
        }
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        Ok(())
    }

    /// A read index came back: its reads may be served once it is applied.
    fn read_state(&mut self, index: u64, ctx: &[u8]) {
        let Ok(ctx) = <[u8; 8]>::try_from(ctx) else {
            return;
        };
        let Some(batch) = self.reads.remove(&u64::from_be_bytes(ctx)) else {
            return; // answered by an earlier retry
        };
        self.read_waiters
            .entry(index)
            .or_default()
            .extend(batch.reads);
        self.release_reads();
    }

    /// Answers every read whose index is applied.
    fn release_reads(&mut self) {
        if self
            .read_waiters
            .first_key_value()
            .is_none_or(|(i, _)| *i > self.applied_index)
        {
            return;
        }
        let later = self.read_waiters.split_off(&(self.applied_index + 1));
        let ready = std::mem::replace(&mut self.read_waiters, later);
        for (index, reads) in ready {
            for r in reads {
                let ReadRequest { reply, slot } = r.req;
                drop(slot);
                let _ = reply.send(Ok(index));
            }
        }
    }

    /// Replaces the state machine and the log with a snapshot from the
    /// leader, from the file it was staged in (see [`install_staged`]).
    fn install_snapshot(&mut self, snap: &Snapshot) -> Result<(), StoreError> {
        let meta = snap.get_metadata();
        let d = Descriptor::decode(&snap.data)?;
        let Some((from, id)) = self.staged.take().filter(|(_, id)| *id == d.id) else {
            return Err(StoreError::Corrupt(format!(
                "raft hands out snapshot {} at {}, which was not received",
                d.id, meta.index
            )));
        };
        let path = snapshot::staged_path(&self.cfg.data_dir, from, id);
        let db = Arc::clone(&self.shared.db);
        self.stream_heads.clear();
        // Before the first write: no reader may find a replaced object
        // here once the snapshot's objects are on disk.
        lock(&self.shared.objects).clear();
        let summary = install_staged(
            &db,
            self.raw.mut_store(),
            &path,
            (from, id),
            meta,
            self.cfg.fsync,
        )?;
        let data = summary.header;
        tracing::info!(
            peer = self.cfg.peer_id,
            index = meta.index,
            revision = data.revision,
            objects = summary.objects,
            "installed a snapshot"
        );
        self.applied_index = meta.index;
        self.revision = data.revision;
        self.history_compacted_to = data.revision;
        self.history_times.clear();
        // Proposals whose entries the snapshot covers: applied or not, this
        // peer cannot tell.
        let later = self.pending_by_index.split_off(&(meta.index + 1));
        let covered = std::mem::replace(&mut self.pending_by_index, later);
        for (_, id) in covered {
            if let Some(p) = self.pending.remove(&id) {
                p.answer(Err(StoreError::Timeout));
            }
        }
        self.publish_membership();
        self.publish_status();
        self.release_reads();
        Ok(())
    }

    /// Applies committed entries in one write batch, then answers their
    /// proposers and publishes their changes.
    fn apply(&mut self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let Some(last_index) = entries.last().map(|e| e.index) else {
            return Ok(());
        };
        let started = Instant::now();
        crate::metrics::METRICS
            .entries_applied
            .inc_by(entries.len() as u64);
        // The batch starts from the cached stream heads and gives them back
        // once it is written; if it fails they are gone and read again.
        let heads = std::mem::take(&mut self.stream_heads);
        let mut batch = ApplyBatch::new(
            Arc::clone(&self.shared.db),
            Arc::clone(&self.shared.objects),
            heads,
            self.history_compacted_to,
        );
        let mut replies = Vec::new();
        let mut changes = Vec::new();
        // "Now" for retention by age: the last stamp applied, the same on
        // every peer (applying never reads the clock).
        let mut now_ms = None;
        for e in entries {
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    if e.data.is_empty() {
                        // The empty entry a new leader appends.
                        continue;
                    }
                    let EntryContext {
                        stamp,
                        log_everywhere,
                    } = EntryContext::of(&e);
                    if stamp.is_some() {
                        now_ms = stamp;
                    }
                    if let Some(index) = log_everywhere {
                        self.log_everywhere = self.log_everywhere.max(index);
                    }
                    let (id, result) = match error::decode::<EntryData>("proposal", &e.data) {
                        Ok(EntryData { id, txn, trace }) => {
                            let apply = self.apply_span(&id, trace.as_deref(), e.index);
                            let made = changes.len();
                            let result = apply.in_scope(|| {
                                self.apply_txn(&txn, stamp, &mut batch, &mut changes)
                            })?;
                            // what the changes set off follows the apply
                            let trace = kubus_trace::traceparent(&apply).or(trace);
                            if trace.is_some() {
                                for c in &mut changes[made..] {
                                    c.trace.clone_from(&trace);
                                }
                            }
                            (Some(id), result)
                        }
                        Err(err) => {
                            // Deterministic on every peer: skip the entry.
                            tracing::error!(index = e.index, error = %err, "undecodable proposal skipped");
                            (None, Err(StoreError::Codec(err)))
                        }
                    };
                    let id = id.or_else(|| self.pending_by_index.get(&e.index).copied());
                    if let Some(p) = id.and_then(|id| self.pending.remove(&id)) {
                        replies.push((p, result));
                    }
                }
                EntryType::EntryConfChange => {
                    let cc: ConfChange = parse_conf_change(&e.data)?;
                    let result = self.raw.apply_conf_change(&cc);
                    self.conf_changed(&mut batch.wb, result, &e)?;
                }
                EntryType::EntryConfChangeV2 => {
                    let cc: ConfChangeV2 = parse_conf_change(&e.data)?;
                    let result = self.raw.apply_conf_change(&cc);
                    self.conf_changed(&mut batch.wb, result, &e)?;
                }
            }
        }
        self.applied_index = last_index;
        failpoint!(crate::failpoints::APPLY_BATCH);

        let pruned = self.stage_prune(&mut batch.wb, now_ms)?;
        let db = &self.shared.db;
        let meta = cf(db, CF_META)?;
        batch.wb.put_cf(meta, KEY_APPLIED_INDEX, be(last_index));
        batch.wb.put_cf(meta, KEY_REVISION, be(self.revision));
        let storage = self.raw.mut_store();
        storage.stage_commit(&mut batch.wb, last_index)?;
        storage.set_applied_index(last_index);
        let compact_to =
            log_compaction_point(last_index, self.log_everywhere, self.cfg.log_entries_kept);
        if compact_to >= storage.first_log_index() + self.cfg.log_compaction_step_entries {
            storage.stage_compaction(&mut batch.wb, compact_to)?;
            failpoint!(crate::failpoints::LOG_COMPACTION);
        }
        self.shared.db.write_opt(batch.wb, &self.apply_write)?;
        // Before the applied index moves (`publish_status`): a read that
        // waited for it finds these objects in the cache or on disk.
        lock(&self.shared.objects).applied(batch.objects);
        self.stream_heads = batch.stream_heads;
        if self.stream_heads.len() > STREAM_HEADS_CACHED_MAX {
            self.stream_heads.clear();
        }
        failpoint!(crate::failpoints::AFTER_APPLY);
        crate::metrics::METRICS
            .apply_duration
            .observe(started.elapsed().as_secs_f64());
        self.pruned(pruned);
        self.publish_status();

        // Changes first: a proposer that hears back finds its change
        // already in the change channel.
        if !changes.is_empty() {
            self.publish_changes(changes);
        }
        for (p, result) in replies {
            p.answer(result);
        }
        // Proposals at applied indexes that were not answered above had
        // their entries replaced by another leader's.
        let later = self.pending_by_index.split_off(&(last_index + 1));
        let done = std::mem::replace(&mut self.pending_by_index, later);
        for (_, id) in done {
            if let Some(p) = self.pending.remove(&id) {
                p.answer(Err(self.not_leader()));
            }
        }
        // Membership changes whose index went by without them: raft-rs
        // turned them into empty entries (another change was pending) or a
        // new leader replaced them.
        let later = self.conf_waiters.split_off(&(last_index + 1));
        for (_, w) in std::mem::replace(&mut self.conf_waiters, later) {
            let _ = w.reply.send(Err(StoreError::MembershipRefused(
                "the change was dropped (another membership change was pending, or leadership changed); retry".into(),
            )));
        }
        self.release_reads();
        Ok(())
    }

    /// `raft.apply` of a traced entry: a child of this peer's `raft.propose`
    /// when the proposal waits here, else of the context the entry carries
    /// (a proposal forwarded here, or a follower's apply).
    fn apply_span(&self, id: &ProposalId, trace: Option<&str>, index: u64) -> tracing::Span {
        if trace.is_none() {
            return tracing::Span::none();
        }
        match self.pending.get(id).filter(|p| !p.span.is_disabled()) {
            Some(p) => kubus_trace::trace_span!(parent: &p.span, "raft.apply", index),
            None => {
                let span = kubus_trace::trace_span!(parent: None, "raft.apply", index);
                kubus_trace::adopt(&span, trace);
                span
            }
        }
    }

    /// Decides one transaction (whose entry carries `stamp`) and stages
    /// its writes.
    fn apply_txn(
        &mut self,
        txn: &Txn,
        stamp: Option<u64>,
        batch: &mut ApplyBatch,
        changes: &mut Vec<Change>,
    ) -> Result<Result<TxnOutcome, StoreError>, StoreError> {
        Ok(match machine::decide(txn, self.revision, batch)? {
            Decision::Invalid(reason) => Err(StoreError::InvalidTxn(reason)),
            Decision::Failed { op_index, current } => Ok(TxnOutcome::Failed { op_index, current }),
            Decision::Commit(mut c) => {
                for change in &mut c.changes {
                    change.committed_ms = stamp;
                }
                if !c.changes.is_empty() {
                    batch.stage(&c, stamp)?;
                    self.revision = c.revision;
                    if let Some(made) = stamp {
                        self.history_times.push_back((c.revision, made));
                    }
                }
                let Commit {
                    revision,
                    kvs,
                    changes: made,
                    ..
                } = c;
                changes.extend(made);
                Ok(TxnOutcome::Committed { revision, kvs })
            }
        })
    }

    /// Stages the pruning of the history that retention allows (by count,
    /// and by age when `now_ms` is given), at most [`HISTORY_PRUNE_CHUNK`]
    /// revisions; returns the new compaction point, to hand to
    /// [`Peer::pruned`] once the batch is written.
    fn stage_prune(&self, wb: &mut WriteBatch, now_ms: Option<u64>) -> Result<u64, StoreError> {
        let retention = Retention {
            revisions: self.cfg.history_retention_revisions,
            age_ms: u64::try_from(self.cfg.history_retention_age.as_millis()).unwrap_or(u64::MAX),
        };
        let from = self.history_compacted_to;
        let to = history::prune_to(
            from,
            self.revision,
            retention,
            now_ms,
            self.history_times.iter().copied(),
            HISTORY_PRUNE_CHUNK,
        );
        if to > from {
            let db = &self.shared.db;
            for name in [CF_HISTORY, CF_HISTORY_NEXT, CF_HISTORY_TIME] {
                wb.delete_range_cf(cf(db, name)?, be(from + 1), be(to + 1));
            }
            wb.put_cf(cf(db, CF_META)?, KEY_HISTORY_COMPACTED_TO, be(to));
        }
        Ok(to)
    }

    /// Records a compaction point [`Peer::stage_prune`] staged, now written.
    fn pruned(&mut self, to: u64) {
        self.history_compacted_to = to;
        while self.history_times.front().is_some_and(|(r, _)| *r <= to) {
            self.history_times.pop_front();
        }
    }

    /// Prunes, by this peer's own clock, history that has outgrown the
    /// retention age while no writes came to prune it (a local decision:
    /// see [`crate::history`]). Written without sync: a lost prune is
    /// made again.
    fn prune_history_by_clock(&mut self) -> Result<(), StoreError> {
        let now = self.cfg.clock.now_ms();
        let mut wb = WriteBatch::default();
        let to = self.stage_prune(&mut wb, Some(now))?;
        if to > self.history_compacted_to {
            self.shared.db.write_opt(wb, &self.apply_write)?;
            self.pruned(to);
            self.publish_status();
        }
        Ok(())
    }

    /// Persists the configuration a conf change entry produced and answers
    /// the peer that proposed it.
    fn conf_changed(
        &mut self,
        wb: &mut WriteBatch,
        result: raft::Result<ConfState>,
        e: &Entry,
    ) -> Result<(), StoreError> {
        let waiter = match self.conf_waiters.remove(&e.index) {
            Some(w) if w.ctx == e.context.as_ref() => Some(w),
            Some(w) => {
                self.conf_waiters.insert(e.index, w);
                None
            }
            None => None,
        };
        match result {
            Ok(cs) => {
                tracing::info!(index = e.index, voters = ?cs.voters, learners = ?cs.learners, "membership changed");
                let voters = sorted(&cs.voters);
                self.raw.mut_store().stage_conf_state(wb, cs)?;
                self.publish_membership();
                if let Some(w) = waiter {
                    let _ = w.reply.send(Ok(voters));
                }
                Ok(())
            }
            Err(err) => {
                // Rejected the same way on every peer.
                tracing::warn!(index = e.index, error = %err, "configuration change rejected");
                if let Some(w) = waiter {
                    let _ = w
                        .reply
                        .send(Err(StoreError::MembershipRefused(err.to_string())));
                }
                Ok(())
            }
        }
    }

    /// Publishes the configuration to the handles.
    fn publish_membership(&self) {
        let cs = self.raw.store().conf_state();
        let mut m = lock(&self.shared.membership);
        m.voters = sorted(&cs.voters);
        m.learners = sorted(&cs.learners);
    }

    /// Publishes every peer's progress (leader only; cleared elsewhere).
    fn publish_progress(&self) {
        let progress = if self.raw.raft.state == StateRole::Leader {
            let mut v: Vec<PeerProgress> = self
                .raw
                .raft
                .prs()
                .iter()
                .map(|(id, p)| PeerProgress {
                    peer_id: *id,
                    matched: p.matched,
                    state: match p.state {
                        ProgressState::Probe => "probe",
                        ProgressState::Replicate => "replicate",
                        ProgressState::Snapshot => "snapshot",
                    },
                })
                .collect();
            v.sort_by_key(|p| p.peer_id);
            v
        } else {
            Vec::new()
        };
        let mut m = lock(&self.shared.membership);
        m.progress = progress;
    }

    /// Hands changes to the change channel, waiting while it is full
    /// (backpressure) unless the store is stopping.
    fn publish_changes(&mut self, changes: Vec<Change>) {
        if !self.changes_open {
            return;
        }
        let mut item = changes;
        loop {
            match self.changes.try_send(item) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    tracing::debug!("change receiver dropped; changes are no longer published");
                    self.changes_open = false;
                    return;
                }
                Err(mpsc::error::TrySendError::Full(back)) => {
                    if self.catching_up {
                        tracing::warn!(
                            changes = back.len(),
                            "change channel full while re-applying the log at open; changes dropped (they remain in the history)"
                        );
                        return;
                    }
                    if self.shared.stop_requested.load(Ordering::Acquire) {
                        return;
                    }
                    item = back;
                    std::thread::sleep(CHANGES_FULL_WAIT);
                }
            }
        }
    }

    /// The context of an entry this peer proposes or, as leader, takes
    /// from a follower: the clock, and (as leader) the index through which
    /// every peer it replicates to has the log — the least `matched` of
    /// its progress, its own included. A follower's context is replaced by
    /// the leader's when the proposal is forwarded.
    fn entry_context(&self) -> Vec<u8> {
        let raft = &self.raw.raft;
        let log_everywhere = (raft.state == StateRole::Leader)
            .then(|| raft.prs().iter().map(|(_, p)| p.matched).min())
            .flatten();
        EntryContext {
            stamp: Some(self.cfg.clock.now_ms()),
            log_everywhere,
        }
        .bytes()
    }

    fn publish_status(&self) {
        let s = &self.shared;
        let raft = &self.raw.raft;
        let m = &crate::metrics::METRICS;
        let known = s.leader_id.load(Ordering::Acquire);
        if raft.leader_id != INVALID_ID && raft.leader_id != known {
            m.leader_changes.inc();
        }
        m.has_leader.set(i64::from(raft.leader_id != INVALID_ID));
        m.is_leader.set(i64::from(raft.state == StateRole::Leader));
        m.applied_index
            .set(i64::try_from(self.applied_index).unwrap_or(i64::MAX));
        m.revision
            .set(i64::try_from(self.revision).unwrap_or(i64::MAX));
        s.is_leader
            .store(raft.state == StateRole::Leader, Ordering::Release);
        s.leader_id.store(raft.leader_id, Ordering::Release);
        s.term.store(raft.term, Ordering::Release);
        s.applied_index.store(self.applied_index, Ordering::Release);
        s.revision.store(self.revision, Ordering::Release);
        s.history_compacted_to
            .store(self.history_compacted_to, Ordering::Release);
        let storage = self.raw.store();
        s.first_log_index
            .store(storage.first_log_index(), Ordering::Release);
        s.last_log_index
            .store(storage.last_log_index(), Ordering::Release);
    }
}

/// What the leader writes into a normal entry's context (see
/// [`crate::layout`]): its clock, and the index through which every peer
/// it replicates to has the log.
#[derive(Debug, Default, PartialEq, Eq)]
struct EntryContext {
    /// The leader's clock when it took the proposal, ms since the Unix
    /// epoch (retention by age); `None` in entries written before entries
    /// were stamped, or not by kubus.
    stamp: Option<u64>,
    /// Every voter and learner had the log through this index when the
    /// leader took the proposal (so every peer may compact that far); `None`
    /// in entries written before it was added.
    log_everywhere: Option<u64>,
}

impl EntryContext {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&be(self.stamp.unwrap_or_default()));
        if let Some(index) = self.log_everywhere {
            out.extend_from_slice(&be(index));
        }
        out
    }

    fn of(e: &Entry) -> EntryContext {
        let c = e.context.as_ref();
        let word = |at: usize| {
            c.get(at..at + 8)
                .and_then(|b| read_u64("entry context", b).ok())
        };
        match c.len() {
            8 => EntryContext {
                stamp: word(0),
                log_everywhere: None,
            },
            16 => EntryContext {
                stamp: word(0),
                log_everywhere: word(8),
            },
            _ => EntryContext::default(),
        }
    }
}

/// The index through which the applied log may be compacted: everything
/// every peer already has (the leader's word, `log_everywhere`), and in
/// any case everything but the last `kept` entries — a peer that has been
/// away for longer than that catches up from a snapshot. Never past
/// `applied`.
fn log_compaction_point(applied: u64, log_everywhere: u64, kept: u64) -> u64 {
    applied
        .saturating_sub(kept)
        .max(log_everywhere)
        .min(applied)
}

/// The `(revision, made_ms)` pairs of the retained history, oldest first.
fn load_history_times(db: &DB, compacted_to: u64) -> Result<VecDeque<(u64, u64)>, StoreError> {
    let iter = db.iterator_cf(
        cf(db, CF_HISTORY_TIME)?,
        rocksdb::IteratorMode::From(&be(compacted_to + 1), rocksdb::Direction::Forward),
    );
    let mut times = VecDeque::new();
    for item in iter {
        let (k, v) = item?;
        times.push_back((
            read_u64("history time key", &k)?,
            read_u64("history time", &v)?,
        ));
    }
    Ok(times)
}

fn sorted(ids: &[u64]) -> Vec<u64> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v
}

fn sync_write(sync: bool) -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(sync);
    o
}

fn parse_conf_change<M: protobuf::Message>(data: &[u8]) -> Result<M, StoreError> {
    let mut m = M::new();
    m.merge_from_bytes(data)
        .map_err(|source| CodecError::Protobuf {
            what: "configuration change",
            source,
        })?;
    Ok(m)
}

/// Marks the store stopped when the Raft thread ends, even by a panic;
/// stops the snapshot transfers (their scans hold the database open).
struct StoppedOnExit(Arc<Shared>, Arc<AtomicBool>);

impl Drop for StoppedOnExit {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
        self.0.is_leader.store(false, Ordering::Release);
        self.0.outgoing.clear();
        self.1.store(true, Ordering::Release);
    }
}

/// Tells the Raft thread how the receiving of snapshot `id` ended when
/// dropped: [`Command::SnapshotReceived`] with its message once staged,
/// else [`Command::SnapshotFailed`].
struct ReceiveDone {
    wake: SyncSender<Command>,
    id: u64,
    message: Option<Message>,
}

impl Drop for ReceiveDone {
    fn drop(&mut self) {
        let cmd = match self.message.take() {
            Some(m) => Command::SnapshotReceived(m),
            None => Command::SnapshotFailed(self.id),
        };
        let _ = self.wake.send(cmd);
    }
}

/// The `meta` key naming a snapshot being installed (see
/// [`install_staged`]).
const KEY_SNAPSHOT_INSTALLING: &[u8] = b"snapshot_installing";

/// `from u64 | id u64 | SnapshotMetadata (protobuf)`.
fn encode_install_marker(
    from: u64,
    id: u64,
    meta: &raft::prelude::SnapshotMetadata,
) -> Result<Vec<u8>, StoreError> {
    use protobuf::Message as _;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&be(from));
    out.extend_from_slice(&be(id));
    let m = meta
        .write_to_bytes()
        .map_err(|source| CodecError::Protobuf {
            what: "snapshot metadata",
            source,
        })?;
    out.extend_from_slice(&m);
    Ok(out)
}

fn decode_install_marker(
    b: &[u8],
) -> Result<(u64, u64, raft::prelude::SnapshotMetadata), StoreError> {
    use protobuf::Message as _;
    if b.len() < 16 {
        return Err(CodecError::Length {
            what: "snapshot install marker",
            expected: 16,
            found: b.len(),
        }
        .into());
    }
    let from = read_u64("snapshot install marker", &b[..8])?;
    let id = read_u64("snapshot install marker", &b[8..16])?;
    let meta = raft::prelude::SnapshotMetadata::parse_from_bytes(&b[16..]).map_err(|source| {
        CodecError::Protobuf {
            what: "snapshot metadata",
            source,
        }
    })?;
    Ok((from, id, meta))
}

/// Installs the snapshot staged at `path` (received from peer `from` as
/// transfer `id`) with the Raft metadata `meta`: a marker naming it and
/// the removal of the old state (synced), the objects in bounded batches
/// ([`crate::backup`]'s restore writes them the same way), then the
/// state, the applied index, the Raft log's new start and the marker's
/// removal in one synced batch. A crash before that last write leaves the
/// marker: the peer installs the file again when it opens. The file is
/// removed once installed.
fn install_staged(
    db: &Arc<DB>,
    storage: &mut RocksStorage,
    path: &std::path::Path,
    (from, id): (u64, u64),
    meta: &raft::prelude::SnapshotMetadata,
    fsync: bool,
) -> Result<crate::backup::BackupSummary, StoreError> {
    let marker = encode_install_marker(from, id, meta)?;
    let meta_cf = cf(db, CF_META)?;
    let mut wb = WriteBatch::default();
    wb.put_cf(meta_cf, KEY_SNAPSHOT_INSTALLING, marker);
    db.write_opt(wb, &sync_write(fsync))?;
    let file = std::fs::File::open(path)
        .map_err(|e| SnapshotError::File(format!("{}: {e}", path.display())))?;
    let (summary, mut wb) =
        crate::backup::write_objects(db, file).map_err(|e| SnapshotError::File(e.to_string()))?;
    let h = &summary.header;
    snapshot::stage_state(db, &mut wb, h.revision, &h.stream_heads)?;
    wb.put_cf(meta_cf, KEY_APPLIED_INDEX, be(meta.index));
    storage.stage_snapshot(&mut wb, meta)?;
    wb.delete_cf(meta_cf, KEY_SNAPSHOT_INSTALLING);
    failpoint!(crate::failpoints::SNAPSHOT_APPLY);
    db.write_opt(wb, &sync_write(fsync))?;
    failpoint!(crate::failpoints::AFTER_SNAPSHOT_APPLY);
    let _ = std::fs::remove_file(path);
    Ok(summary)
}

/// One apply batch: the RocksDB writes of every entry applied in one go,
/// and the objects and stream heads they changed (later entries of the
/// batch must see them before they reach the disk).
struct ApplyBatch {
    db: Arc<DB>,
    /// The peer's objects applied last, read before the disk.
    cached: Arc<Mutex<ObjectCache>>,
    wb: WriteBatch,
    objects: HashMap<String, Option<KeyValue>>,
    /// Heads as of the last write of the batch: the peer's cache of
    /// written heads (see `Peer::stream_heads`), then this batch's.
    stream_heads: HashMap<String, u64>,
    /// The history's compaction point before the batch.
    history_compacted_to: u64,
}

impl ApplyBatch {
    fn new(
        db: Arc<DB>,
        cached: Arc<Mutex<ObjectCache>>,
        stream_heads: HashMap<String, u64>,
        history_compacted_to: u64,
    ) -> ApplyBatch {
        ApplyBatch {
            db,
            cached,
            wb: WriteBatch::default(),
            objects: HashMap::new(),
            stream_heads,
            history_compacted_to,
        }
    }

    fn stage(&mut self, c: &Commit, made_ms: Option<u64>) -> Result<(), StoreError> {
        let objects = cf(&self.db, CF_OBJECTS)?;
        for (key, kv) in &c.writes {
            match kv {
                Some(kv) => self
                    .wb
                    .put_cf(objects, key.as_bytes(), error::encode("object", kv)?),
                None => self.wb.delete_cf(objects, key.as_bytes()),
            }
            self.objects.insert(key.clone(), kv.clone());
        }
        self.wb.put_cf(
            cf(&self.db, CF_HISTORY)?,
            be(c.revision),
            record::encode(&c.changes)?,
        );
        // Where the record of each replaced object's change finds its
        // value now (see `record`); not for revisions already pruned.
        let next = cf(&self.db, CF_HISTORY_NEXT)?;
        for change in &c.changes {
            if let Some(prev) = change.prev.as_ref() {
                if prev.mod_revision > self.history_compacted_to {
                    self.wb.put_cf(
                        next,
                        next_change_key(prev.mod_revision, &change.key),
                        be(change.revision),
                    );
                }
            }
        }
        if let Some(made) = made_ms {
            self.wb
                .put_cf(cf(&self.db, CF_HISTORY_TIME)?, be(c.revision), be(made));
        }
        let meta = cf(&self.db, CF_META)?;
        for (stream, head) in &c.stream_heads {
            self.wb.put_cf(meta, stream_head_key(stream), be(*head));
            self.stream_heads.insert(stream.clone(), *head);
        }
        Ok(())
    }
}

impl StateView for ApplyBatch {
    fn object(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        if let Some(kv) = self.objects.get(key) {
            return Ok(kv.clone());
        }
        if let Some(kv) = lock(&self.cached).get(key) {
            return Ok(Some(kv.clone()));
        }
        match self
            .db
            .get_pinned_cf(cf(&self.db, CF_OBJECTS)?, key.as_bytes())?
        {
            Some(v) => Ok(Some(error::decode("object", &v)?)),
            None => Ok(None),
        }
    }

    fn stream_head(&self, stream: &str) -> Result<u64, StoreError> {
        if let Some(head) = self.stream_heads.get(stream) {
            return Ok(*head);
        }
        match self
            .db
            .get_pinned_cf(cf(&self.db, CF_META)?, stream_head_key(stream))?
        {
            Some(v) => Ok(read_u64("stream head", &v)?),
            None => Ok(0),
        }
    }
}

/// Locks a mutex whose holder may have panicked (the data is still whole:
/// every holder leaves it consistent between statements).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_compacted_to_what_every_peer_has_or_to_the_kept_tail() {
        // Every peer has more than the kept tail would keep: that far.
        assert_eq!(log_compaction_point(20_000, 19_990, 10_000), 19_990);
        // A peer lags: the kept tail bounds how long the others wait.
        assert_eq!(log_compaction_point(20_000, 3, 10_000), 10_000);
        // Never past what this peer applied, however far the word reaches.
        assert_eq!(log_compaction_point(100, 150, 10_000), 100);
        assert_eq!(log_compaction_point(100, 0, 10_000), 0);
    }

    #[test]
    fn entry_contexts_read_back_old_and_new() {
        let both = EntryContext {
            stamp: Some(1_795_000_000_000),
            log_everywhere: Some(42),
        };
        let mut e = Entry {
            context: both.bytes().into(),
            ..Entry::default()
        };
        assert_eq!(EntryContext::of(&e), both);
        // Entries written before the word was added carry the stamp alone.
        let stamp_only = EntryContext {
            stamp: Some(7),
            log_everywhere: None,
        };
        e.context = stamp_only.bytes().into();
        assert_eq!(e.context.len(), 8);
        assert_eq!(EntryContext::of(&e), stamp_only);
        // Anything else (not written by kubus) says nothing.
        e.context = vec![1, 2, 3].into();
        assert_eq!(EntryContext::of(&e), EntryContext::default());
    }
}
