//! # kubus-storage: the Raft-replicated state store
//!
//! One store **peer**: a raft-rs [`RawNode`](raft::RawNode) driven on its own
//! thread, its log and state in RocksDB ([`RocksStorage`]), and a key/value
//! state machine with etcd-style revisions, a change history and per-stream
//! change chains. A store is 1, 3 or 5 such peers: Raft messages leave
//! through a [`Transport`] and come in through [`Store::step`].
//!
//! **Architecture invariant: storage knows nothing of actix or NATS.** It
//! uses `tokio` only for `tokio::sync` channels (replies and the change
//! stream), never a runtime. Raft messages leave through [`Transport`],
//! whose NATS implementation is wired in by the `node` crate.
//!
//! ```
//! # async fn demo() -> Result<(), kubus_storage::StoreError> {
//! use kubus_storage::{NoPeers, Op, Precondition, Store, StoreConfig, Txn, TxnOutcome};
//!
//! let dir = tempfile::tempdir().expect("tempdir");
//! let (store, mut changes) = Store::open(StoreConfig::single(dir.path().into()), Box::new(NoPeers))?;
//! let put = Txn { ops: vec![Op::Put {
//!     key: "/pods/default/web-1".into(),
//!     value: b"{}".to_vec(),
//!     expect: Precondition::Absent,
//! }] };
//! let TxnOutcome::Committed { revision, .. } = store.propose(put).await? else { panic!() };
//! assert_eq!(store.get("/pods/default/web-1")?.map(|kv| kv.mod_revision), Some(revision));
//! let batch = changes.recv().await.expect("one change");
//! assert_eq!((batch[0].stream.as_str(), batch[0].stream_prev), ("pods", 0));
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(demo()).expect("demo");
//! ```
//!
//! # The Store API
//!
//! What the `node` crate (the store server, the NATS transport, the
//! benchmark) uses; kept stable.
//!
//! - [`Store::open`]`(cfg, transport)` → `(Store, ChangeReceiver)`. A fresh
//!   directory is bootstrapped with [`StoreConfig::initial_peers`]; empty
//!   `initial_peers` means "join": the peer waits to be added and is sent a
//!   snapshot. [`StoreConfig::single`] and [`StoreConfig::peer`] give
//!   production defaults.
//! - Writes: [`Store::propose`]`(Txn)` on any peer (a follower forwards to
//!   the leader; the entry carries the proposal's id, so the proposing peer
//!   answers when it applies it). Answers after fsync, commit and apply.
//!   Errors: [`StoreError::NotLeader`] (never in the log: retry elsewhere),
//!   [`StoreError::Timeout`] (not applied within
//!   [`StoreConfig::request_timeout_ms`]: outcome unknown),
//!   [`StoreError::Busy`], [`StoreError::Stopped`].
//! - Reads: [`Store::get`], [`Store::range`], [`Store::range_from`],
//!   [`Store::changes_since`], [`Store::stream_head`] read this peer's
//!   applied state (every write this peer acknowledged, but possibly not
//!   the latest: a follower lags, a deposed leader may not know it yet);
//!   [`Store::read_index`], [`Store::get_linearizable`] and
//!   [`Store::range_linearizable`] are linearizable on any peer (Raft
//!   ReadIndex, batched: all reads that arrive in one turn of the loop share
//!   one request).
//! - Reads at a past revision: [`Store::range_at`] lists keys as they were
//!   at a revision still in the history (the current objects with the
//!   later changes undone, see [`history`]); [`StoreError::Compacted`]
//!   names the oldest revision still listable,
//!   [`StoreError::FutureRevision`] a revision not yet made.
//! - Raft traffic: [`Store::step`]`(Message)` for every message the
//!   transport receives (whole, after reassembly of chunks; never blocks,
//!   [`StoreError::Busy`] when the inbound queue is full).
//! - Membership and leadership: [`Store::add_peer`],
//!   [`Store::remove_peer`] (on the leader; they answer with the voters
//!   once the change is applied), [`Store::transfer_leader`] (any peer).
//! - Backups: [`Store::backup`] streams a backup file of this peer's
//!   applied state in bounded chunks; [`backup::restore`] makes a new
//!   store directory from one (see [`backup`]).
//! - [`Store::status`] ([`StoreStatus`]: role, term, indexes, voters, the
//!   leader's view of each peer's progress), [`Store::persist_stats`]
//!   (log writes, syncs and entries: group commit), [`Store::is_leader`],
//!   [`Store::revision`], [`Store::shutdown`] (stops the Raft thread; the
//!   database closes when the last clone of the handle is dropped, so a
//!   peer reopened in the same process must drop its old handles first).
//!
//! # The Ready loop, step by step
//!
//! The Raft thread (`peer.rs`) loops:
//!
//! 1. **Wait** for one command (a proposal, a message from another peer,
//!    shutdown) or until the next tick is due.
//! 2. **Drain** up to [`StoreConfig::max_batch_entries`] more queued
//!    commands into the `RawNode` without waiting: `propose` for each
//!    proposal (recording its id and log index), `step` for each message.
//!    This is group commit: everything that queued up during the previous
//!    fsync goes into the next one.
//! 3. **Tick** the `RawNode` if a tick is due (elections, heartbeats).
//! 4. Tell raft-rs what the **log writer** (`log_writer.rs`, its own
//!    thread) has written since: `on_persist_ready` with the number of the
//!    last Ready it wrote. That is what advances a follower's acks, a
//!    leader's own match index and so the commit index.
//! 5. A leader whose commit index moved **tells its followers once**
//!    (`bcast_append`), unless an append of this turn already carries it.
//!    raft-rs would broadcast on every ack that moves the commit index
//!    (`skip_bcast_commit` is set so that it does not): with many
//!    proposals in flight that was several rounds of messages per turn.
//!    The loop does not wait for a command while a commit is untold.
//! 6. If the node `has_ready`, take the `Ready` and:
//!    1. **send** `ready.messages()` — only a leader has these; it may send
//!       appends before persisting them (Raft thesis §10.2.1) because a
//!       follower acknowledges only what *it* persisted;
//!    2. **apply** `ready.committed_entries()` — raft-rs hands out only
//!       entries both committed and persisted here;
//!    3. **stage** `ready.entries()` and `ready.hs()` in one RocksDB write
//!       batch (the entries go into the in-memory entry cache at once,
//!       where Raft reads them until they are written) and hand it, with
//!       `ready.persisted_messages()` (a follower's votes and append acks),
//!       to the log writer; then `advance_append_async` and
//!       `advance_apply`. A Ready with nothing to write and an idle writer
//!       is done at once.
//!    4. A Ready carrying a **snapshot** from the leader is the exception:
//!       the writer is drained first, then the snapshot — objects, stream
//!       heads, revision, applied index and the Raft log's new start — is
//!       installed in one synced write batch (see [`snapshot`]) and the
//!       rest of the Ready is persisted on this thread.
//!
//! The log writer takes every Ready queued (at most 16), writes their
//! batches in order and syncs the last one (`WriteOptions::set_sync(cfg.
//! fsync)` when any of them `must_sync()`): **one fsync for everything
//! that queued up while the previous one ran**, however many proposals.
//! Only then does it send their persisted messages and report the last
//! number. So the Raft thread never waits for the disk: during a sync it
//! steps acks (a leader commits as soon as a quorum has the entries),
//! applies, answers and gathers the next proposals — the overlap of apply
//! and fsync etcd gets from applying on another goroutine. A writer that
//! fails or dies (a failpoint's panic) stops the peer at its next turn.
//!
//! *Applying* a run of committed entries builds **one** write batch: for
//! each transaction the pure [`machine::decide`] checks every precondition
//! against the state as of that entry and yields the objects, the history
//! record, the stream heads and one new revision (or nothing, if a
//! precondition failed); the batch also carries the applied index, the
//! revision, the commit index (never below the applied index), history
//! pruning (at most 4096 revisions per batch, of those outside
//! [`StoreConfig::history_retention_revisions`] or older than
//! [`StoreConfig::history_retention_age`] by the stamp of the last entry
//! applied: the leader puts its [`Clock`]'s time in every entry's context,
//! so every peer prunes alike; a timer prunes by the peer's own clock when
//! no writes come) and Raft log compaction: up to the index through which
//! every peer has the log — the leader puts the least `matched` of its
//! progress into every entry's context beside its clock, and each peer
//! compacts its own log that far once it applies the entry — and in any
//! case up to the applied index minus [`StoreConfig::log_entries_kept`]
//! (a peer away for longer catches up from a snapshot). With every peer
//! keeping up an entry lives for a few milliseconds after it is applied,
//! so most are deleted in RocksDB's memtable and never written to a table
//! (at 2 KiB values three peers wrote ~40 % fewer bytes to disk). After the
//! batch is written its changes go to the [`ChangeReceiver`] (one `Vec` per
//! batch, in revision order), and only then do the waiting proposers get
//! their [`TxnOutcome`] — so a proposer that hears back will find its change
//! in the channel. A proposer whose log index was applied with someone
//! else's entry (a new leader overwrote it) gets [`StoreError::NotLeader`].
//!
//! # Durability contract
//!
//! - Entries and HardState are persisted, fsynced, **before** any message
//!   that depends on them is sent (votes, append acks) and before any
//!   proposal they carry is acknowledged.
//! - A committed entry is applied with its objects, history, stream heads,
//!   revision and the applied index in **one** write batch, so a crash
//!   leaves either all or none of an entry's effects.
//! - A proposer hears back only after its entry is fsynced, committed and
//!   applied.
//! - The apply batch is written **without RocksDB's write-ahead log**
//!   (`disable_wal`): the Raft log is the state machine's write-ahead log,
//!   so writing every value again into RocksDB's would only cost bytes and
//!   CPU (at 2 KiB values three peers did ~9.4k puts/s with it, ~14k
//!   without). The state's column families are flushed to disk together
//!   (`atomic_flush`), so what a crash leaves of them is always a
//!   consistent prefix of apply batches: objects, history, stream heads,
//!   revision, applied index and the log compaction staged with them
//!   (the log is never compacted past what the surviving state has
//!   applied). A clean close flushes them.
//! - On restart the peer starts from the persisted applied index
//!   (`Config::applied`) and applies the committed entries after it again
//!   before [`Store::open`] returns; their replies go nowhere. A sole voter
//!   first commits its whole log again (the empty entry of its new term:
//!   every entry it persisted had its quorum), so reads after `open` see
//!   every acknowledged write. With several peers, entries acknowledged
//!   after the last HardState written are applied once a leader commits
//!   them again; a linearizable read waits for that.
//! - The Raft thread writes apply batches while the log writer may be
//!   writing later entries: an apply batch covers only entries raft-rs
//!   reports persisted, so the applied index never runs ahead of the log
//!   on disk. The commit index it carries may be overwritten by an older
//!   HardState the writer had queued; a restart raises a commit index
//!   found below the applied index.
//! - `fsync = false` is a test-only switch. It loses acknowledged writes
//!   on power loss or an OS crash — and, because the store then keeps
//!   unsynced writes in RocksDB's own buffer (`manual_wal_flush`), on a
//!   killed process too, so that the crash tests can show they see loss.
//!
//! Every queue and batch has a bound: proposals in flight
//! ([`StoreError::Busy`] past it), inbound messages, commands per Ready,
//! bytes per entry and per Ready, the change channel (backpressure),
//! history and log retention.
//!
//! # Failpoints
//!
//! Built with the `failpoints` cargo feature (tests only), the store has a
//! [`fail`](https://docs.rs/fail) failpoint at every persist step, named in
//! [`failpoints`]: before and after the log append, after the HardState,
//! inside the apply batch (staged, not written) and after it, before a write
//! that compacts the log, after a snapshot is built for a peer, and before and
//! after a received snapshot is installed. `storage/tests/crash.rs` crashes a
//! 3-peer cluster (a child process that aborts) at each and checks, after a
//! restart, that no acknowledged write was lost; the same test with fsync
//! off sees the loss. `storage/tests/crash/crash_one_peer.rs` kills one peer at
//! each while the other two go on, and checks that it comes back and
//! catches up.
//!
//! # Layout
//! - [`store`]: [`Store`], the handle: open, propose, step, reads.
//! - [`backup`]: backup files (`kubus store snapshot save / restore`),
//!   streamed both ways.
//! - `peer`: the Raft thread and its Ready loop.
//! - `log_writer`: the thread that writes and syncs the Raft log.
//! - [`raft_storage`]: [`RocksStorage`], raft-rs's `Storage` on RocksDB.
//! - [`machine`]: the state machine's decisions, pure.
//! - [`model`]: transactions, objects, outcomes, changes.
//! - [`layout`]: column families and keys on disk.
//! - [`transport`]: the [`Transport`] seam and [`NoPeers`].
//! - [`config`]: [`StoreConfig`]. [`error`]: [`StoreError`].
//! - [`failpoints`]: the names of the failpoints.
//! - `logger`: raft-rs's `slog` records into `tracing`.

/// A failpoint at a persist step (see "Failpoints" above); compiled to
/// nothing without the `failpoints` feature.
macro_rules! failpoint {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name);
    };
}

/// Every failpoint of the store, in the order of the persist steps.
#[cfg(feature = "failpoints")]
pub const FAILPOINTS: &[&str] = &[
    failpoints::BEFORE_LOG_APPEND,
    failpoints::AFTER_LOG_APPEND,
    failpoints::AFTER_HARD_STATE,
    failpoints::APPLY_BATCH,
    failpoints::AFTER_APPLY,
    failpoints::LOG_COMPACTION,
    failpoints::SNAPSHOT_SAVE,
    failpoints::SNAPSHOT_APPLY,
    failpoints::AFTER_SNAPSHOT_APPLY,
];

pub mod backup;
pub mod clock;
mod coalesce;
pub mod config;
pub mod error;
pub mod failpoints;
pub mod history;
pub mod layout;
mod log_writer;
mod logger;
pub mod machine;
pub mod metrics;
pub mod model;
pub mod object_cache;
mod peer;
pub mod raft_storage;
pub mod record;
pub mod snapshot;
pub mod store;
pub mod transport;

pub use clock::{Clock, FakeClock, SystemClock};
pub use config::StoreConfig;
pub use error::{CodecError, StoreError};
pub use model::{
    stream_of, Change, ChangeOp, KeyValue, Op, Precondition, RangeResult, Txn, TxnOutcome,
};
pub use peer::{PeerProgress, PersistStats};
pub use raft_storage::RocksStorage;
pub use snapshot::{SendStats, SnapshotError};
pub use store::{ChangeReceiver, Store, StoreStatus, CHANGES_MAX, RANGE_ITEMS_MAX};
pub use transport::{
    ChunkRequest, NoPeers, SnapshotChunk, SnapshotFetcher, Transport, CHUNK_BYTES_DEFAULT,
};
