//! [`StoreConfig`]: where the store lives, who its peers are, and the limit
//! on every queue, batch and retention window it keeps.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::StoreError;

/// The default of [`StoreConfig::history_retention_revisions`].
pub const HISTORY_RETENTION_REVISIONS_DEFAULT: u64 = 100_000;
/// The default of [`StoreConfig::history_retention_age`]: five minutes, what
/// kube-apiserver's compactor guarantees at the least (it compacts etcd
/// every `--etcd-compaction-interval`, 5 min by default, up to the revision
/// it saw one interval earlier, so history lives 5 to 10 minutes). A
/// watcher cut off for less than that resumes from the history instead of
/// relisting.
pub const HISTORY_RETENTION_AGE_DEFAULT: Duration = Duration::from_secs(5 * 60);
/// The shortest [`StoreConfig::history_retention_age`] allowed: below a
/// second a watcher that merely reconnects would already have to relist.
pub const HISTORY_RETENTION_AGE_MIN: Duration = Duration::from_secs(1);

/// The default memtable budget of a store ([`StoreConfig::memtable_bytes`]).
pub const MEMTABLE_BYTES_DEFAULT: usize = 64 * 1024 * 1024;
/// The smallest memtable budget a store accepts.
pub const MEMTABLE_BYTES_MIN: usize = 64 * 1024;

/// How one store peer is set up. Every queue and window has a bound here.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Directory of the RocksDB database (created if missing).
    pub data_dir: PathBuf,
    /// This peer's Raft id; never 0.
    pub peer_id: u64,
    /// The voters written when a fresh store is bootstrapped; must contain
    /// `peer_id`. Ignored when the store already exists. Empty: this peer
    /// joins a running cluster (`add-peer` it there) and starts from the
    /// snapshot the leader sends.
    pub initial_peers: Vec<u64>,
    /// Length of one Raft tick.
    pub tick_interval_ms: u64,
    /// Ticks without a heartbeat before a follower campaigns.
    pub election_ticks: usize,
    /// Ticks between the leader's heartbeats; less than `election_ticks`.
    pub heartbeat_ticks: usize,
    /// Commands (proposals and inbound messages) drained into the Raft node
    /// before each Ready: the group-commit batch. One fsync covers them all.
    pub max_batch_entries: usize,
    /// fsync the Raft log before acknowledging. A test-only switch: `true`
    /// in production, where turning it off loses acknowledged writes on
    /// power loss. Off, unsynced writes stay in RocksDB's buffer until a
    /// flush (see [`crate::layout::open_db_for`]), so that a killed process
    /// loses them too and crash tests can see the loss.
    pub fsync: bool,
    /// Proposals queued or in Raft, not yet answered; past this `propose`
    /// answers [`StoreError::Busy`].
    pub proposals_max_in_flight: usize,
    /// Inbound Raft messages queued for the Raft thread; past this `step`
    /// answers [`StoreError::Busy`] (Raft retries lost messages).
    pub messages_max_queued: usize,
    /// Most revisions kept in the history: older ones are pruned.
    pub history_retention_revisions: u64,
    /// Longest time a revision is kept in the history after it was made
    /// (by the stamp its leader put on its entry); older ones are pruned.
    /// Both bounds are caps: a revision outside either goes (at most
    /// `HISTORY_PRUNE_CHUNK` revisions per apply batch or timer tick), but
    /// the current revision always stays.
    pub history_retention_age: Duration,
    /// Most bytes of history one read at a past revision
    /// ([`crate::Store::range_at`]) may go through; past it the read fails
    /// with [`StoreError::HistoryReadLimit`].
    pub history_read_bytes_max: usize,
    /// Most applied Raft log entries kept behind the applied index for a
    /// peer that is behind; older ones are compacted away (that peer then
    /// catches up from a snapshot). Entries every peer has go sooner (see
    /// the crate doc, "The Ready loop, step by step").
    pub log_entries_kept: u64,
    /// The log is compacted once at least this many entries can go at once
    /// (fewer, larger deletions).
    pub log_compaction_step_entries: u64,
    /// Largest encoded proposal (one Raft entry).
    pub entry_bytes_max: usize,
    /// How long a request that depends on other peers may wait: a
    /// proposal (applied or not), a ReadIndex, a configuration change. Past
    /// it the caller gets [`StoreError::Timeout`] (a write's outcome is then
    /// unknown: it may still be applied).
    pub request_timeout_ms: u64,
    /// A snapshot transfer no chunk of which was asked for in this long is
    /// given up and reported lost to Raft, which then sends a fresh one
    /// (see [`crate::snapshot`]).
    pub snapshot_resend_ms: u64,
    /// The size of the chunks a snapshot is streamed in (at most
    /// [`crate::backup::CHUNK_BYTES_MAX`]; under the transport's payload
    /// limit).
    pub snapshot_chunk_bytes: usize,
    /// RocksDB's memtable budget for the whole store, in bytes: past it
    /// the memtables are flushed to disk (all column families at once).
    /// The state machine's writes bypass RocksDB's write-ahead log, so
    /// this is also about how much a crash makes the peer apply again
    /// from the Raft log on restart.
    pub memtable_bytes: usize,
    /// Capacity of the [`crate::ChangeReceiver`], in batches of changes.
    /// When it is full the Raft thread waits (backpressure).
    pub changes_channel_capacity: usize,
    /// Wall-clock time, for the stamps on entries and the history's
    /// retention by age ([`SystemClock`] in production).
    pub clock: Arc<dyn Clock>,
}

impl StoreConfig {
    /// Peer 1, alone, with production defaults (fsync on).
    pub fn single(data_dir: PathBuf) -> StoreConfig {
        StoreConfig {
            data_dir,
            peer_id: 1,
            initial_peers: vec![1],
            tick_interval_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            max_batch_entries: 256,
            fsync: true,
            proposals_max_in_flight: 4096,
            messages_max_queued: 4096,
            history_retention_revisions: HISTORY_RETENTION_REVISIONS_DEFAULT,
            history_retention_age: HISTORY_RETENTION_AGE_DEFAULT,
            history_read_bytes_max: 64 * 1024 * 1024,
            log_entries_kept: 10_000,
            log_compaction_step_entries: 256,
            // etcd's default --max-request-bytes.
            entry_bytes_max: 1536 * 1024,
            changes_channel_capacity: 1024,
            memtable_bytes: MEMTABLE_BYTES_DEFAULT,
            request_timeout_ms: 5_000,
            snapshot_resend_ms: 10_000,
            snapshot_chunk_bytes: crate::backup::CHUNK_BYTES_DEFAULT,
            clock: Arc::new(SystemClock),
        }
    }

    /// Peer `peer_id` of a cluster bootstrapped with `initial_peers` (empty
    /// to join a running one), with production defaults.
    pub fn peer(data_dir: PathBuf, peer_id: u64, initial_peers: Vec<u64>) -> StoreConfig {
        StoreConfig {
            peer_id,
            initial_peers,
            ..StoreConfig::single(data_dir)
        }
    }

    /// Checks the rules every field must obey.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |why: &str| Err(StoreError::InvalidConfig(why.to_string()));
        if self.peer_id == 0 {
            return bad("peer_id must not be 0");
        }
        if self.initial_peers.contains(&0) {
            return bad("initial_peers must not contain 0");
        }
        if !self.initial_peers.is_empty() && !self.initial_peers.contains(&self.peer_id) {
            // Empty means "join"; a list that leaves this peer out is a typo.
            return bad(
                "initial_peers must contain peer_id (or be empty to join a running cluster)",
            );
        }
        if self.tick_interval_ms == 0 {
            return bad("tick_interval_ms must be at least 1");
        }
        if self.heartbeat_ticks == 0 || self.heartbeat_ticks >= self.election_ticks {
            return bad("heartbeat_ticks must be at least 1 and less than election_ticks");
        }
        for (name, value) in [
            ("max_batch_entries", self.max_batch_entries),
            ("proposals_max_in_flight", self.proposals_max_in_flight),
            ("messages_max_queued", self.messages_max_queued),
            ("entry_bytes_max", self.entry_bytes_max),
            ("changes_channel_capacity", self.changes_channel_capacity),
            ("history_read_bytes_max", self.history_read_bytes_max),
        ] {
            if value == 0 {
                return Err(StoreError::InvalidConfig(format!(
                    "{name} must be at least 1"
                )));
            }
        }
        if self.memtable_bytes < MEMTABLE_BYTES_MIN {
            return Err(StoreError::InvalidConfig(format!(
                "memtable_bytes must be at least {MEMTABLE_BYTES_MIN}"
            )));
        }
        if self.request_timeout_ms == 0 || self.snapshot_resend_ms == 0 {
            return bad("request_timeout_ms and snapshot_resend_ms must be at least 1");
        }
        if self.snapshot_chunk_bytes == 0
            || self.snapshot_chunk_bytes > crate::backup::CHUNK_BYTES_MAX
        {
            return bad("snapshot_chunk_bytes must be 1 to backup::CHUNK_BYTES_MAX");
        }
        if self.history_retention_revisions == 0 {
            return bad("history_retention_revisions must be at least 1");
        }
        if self.history_retention_age < HISTORY_RETENTION_AGE_MIN {
            return bad("history_retention_age must be at least 1 s");
        }
        if u64::try_from(self.history_retention_age.as_millis()).is_err() {
            return bad("history_retention_age must fit in u64 milliseconds");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_is_valid() {
        assert!(StoreConfig::single(PathBuf::from("/tmp/x"))
            .validate()
            .is_ok());
    }

    #[test]
    fn joining_peer_is_valid() {
        let cfg = StoreConfig::peer(PathBuf::from("/tmp/x"), 4, Vec::new());
        assert!(cfg.validate().is_ok());
    }

    #[test]
    fn rules() {
        let base = StoreConfig::single(PathBuf::from("/tmp/x"));
        type Change = Box<dyn Fn(&mut StoreConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            ("peer 0", Box::new(|c| c.peer_id = 0)),
            (
                "self not a voter",
                Box::new(|c| c.initial_peers = vec![2, 3]),
            ),
            (
                "heartbeat >= election",
                Box::new(|c| c.heartbeat_ticks = 10),
            ),
            ("zero batch", Box::new(|c| c.max_batch_entries = 0)),
            (
                "zero in flight",
                Box::new(|c| c.proposals_max_in_flight = 0),
            ),
            (
                "zero retention",
                Box::new(|c| c.history_retention_revisions = 0),
            ),
            (
                "retention age under a second",
                Box::new(|c| c.history_retention_age = Duration::from_millis(999)),
            ),
            (
                "retention age past u64 ms",
                Box::new(|c| c.history_retention_age = Duration::MAX),
            ),
            ("zero tick", Box::new(|c| c.tick_interval_ms = 0)),
            ("zero timeout", Box::new(|c| c.request_timeout_ms = 0)),
        ];
        for (name, change) in cases {
            let mut cfg = base.clone();
            change(&mut cfg);
            assert!(
                matches!(cfg.validate(), Err(StoreError::InvalidConfig(_))),
                "{name}"
            );
        }
    }
}
