//! The names of the store's failpoints, one per persist step. They exist
//! (as `fail` failpoints) only in builds with the `failpoints` feature;
//! the names are here, always, so that tests and docs spell them once.
//!
//! A crash test arms one with an action such as `"20*off->panic"` (pass
//! twenty times, then panic) in a process whose panic hook aborts: the
//! process dies at that step without unwinding, closing or flushing
//! anything, as it would on `kill -9`.

/// Before the Ready's new entries (and HardState) are written.
pub const BEFORE_LOG_APPEND: &str = "kubus_before_log_append";
/// After the Ready's new entries are written (synced when fsync is on),
/// before the messages that promise them leave.
pub const AFTER_LOG_APPEND: &str = "kubus_after_log_append";
/// After a HardState (term, vote, commit) is written, before the votes and
/// acknowledgements that depend on it leave. Entries and HardState share
/// one write batch, so this follows [`AFTER_LOG_APPEND`] when both change.
pub const AFTER_HARD_STATE: &str = "kubus_after_hard_state";
/// Inside the apply batch: every committed entry of the batch is staged,
/// nothing is written yet.
pub const APPLY_BATCH: &str = "kubus_apply_batch";
/// After the apply batch is written, before its proposers are answered.
pub const AFTER_APPLY: &str = "kubus_after_apply";
/// Before an apply batch that also compacts the Raft log is written.
pub const LOG_COMPACTION: &str = "kubus_log_compaction";
/// After a snapshot is built for a lagging peer, before it is sent.
pub const SNAPSHOT_SAVE: &str = "kubus_snapshot_save";
/// Before a received snapshot replaces the state machine and the log.
pub const SNAPSHOT_APPLY: &str = "kubus_snapshot_apply";
/// After a received snapshot is installed, before anything after it is
/// applied.
pub const AFTER_SNAPSHOT_APPLY: &str = "kubus_after_snapshot_apply";
