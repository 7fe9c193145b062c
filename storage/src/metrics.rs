//! The store peer's Prometheus metrics: how long a proposal takes to be
//! committed and applied, how long the log's fsync and the apply batch
//! take, entries applied, failed proposals, leader changes and who leads.
//!
//! One set per process ([`METRICS`]; a process runs at most one store
//! peer), recorded by the Raft thread, the log writer and
//! [`crate::Store::propose`]; the binary adds them to its registry with
//! [`register`]. Names follow etcd's where etcd has one, prefixed
//! `kubus_raft_`; durations are in seconds.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Buckets from 0.1 ms doubling to ~3.3 s: a local proposal takes about a
/// millisecond, an fsync a few.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The store peer's metrics.
pub struct RaftMetrics {
    /// From `Store::propose` to its answer (committed and applied here).
    pub proposal_duration: Histogram,
    /// Proposals answered with an error (no leader, busy, dropped, timed out).
    pub proposals_failed: Counter,
    /// One round of log writes, its fsync included.
    pub log_persist_duration: Histogram,
    /// One apply batch (its RocksDB write included).
    pub apply_duration: Histogram,
    /// Normal entries applied (the empty entries of new leaders included).
    pub entries_applied: Counter,
    /// Times this peer saw the leader change to a known peer.
    pub leader_changes: Counter,
    /// 1 while this peer knows a leader.
    pub has_leader: Gauge,
    /// 1 while this peer leads.
    pub is_leader: Gauge,
    /// The highest log index this peer applied.
    pub applied_index: Gauge,
    /// The store's revision (the last applied transaction's).
    pub revision: Gauge,
}

/// This process's store metrics.
pub static METRICS: LazyLock<RaftMetrics> = LazyLock::new(|| RaftMetrics {
    proposal_duration: latency(),
    proposals_failed: Counter::default(),
    log_persist_duration: latency(),
    apply_duration: latency(),
    entries_applied: Counter::default(),
    leader_changes: Counter::default(),
    has_leader: Gauge::default(),
    is_leader: Gauge::default(),
    applied_index: Gauge::default(),
    revision: Gauge::default(),
});

/// Records how long a proposal took and whether it failed.
pub(crate) fn proposal_done(took: Duration, ok: bool) {
    let m = &*METRICS;
    if ok {
        m.proposal_duration.observe(took.as_secs_f64());
    } else {
        m.proposals_failed.inc();
    }
}

/// Adds the store's metrics to `registry`.
pub fn register(registry: &mut Registry) {
    let m = &*METRICS;
    registry.register(
        "kubus_raft_proposal_duration_seconds",
        "Time from proposing a transaction to its answer (committed by a quorum and applied here)",
        m.proposal_duration.clone(),
    );
    registry.register(
        "kubus_raft_proposals_failed",
        "Proposals answered with an error (no leader, busy, dropped or timed out)",
        m.proposals_failed.clone(),
    );
    registry.register(
        "kubus_raft_log_persist_duration_seconds",
        "Time to write one round of Raft log entries, fsync included",
        m.log_persist_duration.clone(),
    );
    registry.register(
        "kubus_raft_apply_duration_seconds",
        "Time to apply one batch of committed entries to the state machine",
        m.apply_duration.clone(),
    );
    registry.register(
        "kubus_raft_entries_applied",
        "Committed log entries applied by this peer",
        m.entries_applied.clone(),
    );
    registry.register(
        "kubus_raft_leader_changes_seen",
        "Times this peer saw a new leader",
        m.leader_changes.clone(),
    );
    registry.register(
        "kubus_raft_has_leader",
        "1 while this peer knows a leader, else 0",
        m.has_leader.clone(),
    );
    registry.register(
        "kubus_raft_is_leader",
        "1 while this peer is the leader, else 0",
        m.is_leader.clone(),
    );
    registry.register(
        "kubus_raft_applied_index",
        "The highest Raft log index this peer applied",
        m.applied_index.clone(),
    );
    registry.register(
        "kubus_store_revision",
        "The store's revision (of the last applied transaction)",
        m.revision.clone(),
    );
}
