//! The on-disk layout: column families, fixed keys, and how numbers are
//! written. Every byte the store puts into RocksDB is named here.
//!
//! | column family | key | value |
//! | --- | --- | --- |
//! | `raft_log` | entry index, big-endian u64 | `eraftpb::Entry` protobuf; a normal entry's `context` is its leader's stamp (ms since the Unix epoch, BE u64) and the index through which every peer had the log when the leader took the entry (BE u64) |
//! | `raft_state` | `hard_state`, `conf_state` | protobuf |
//! | `raft_state` | `log_truncated` | index and term of the last compacted entry, 2 × BE u64 |
//! | `objects` | the object's key | [`crate::KeyValue`], MessagePack (named) |
//! | `history` | revision, BE u64 | `Vec<`[`crate::record::StoredChange`]`>`, MessagePack (named): the revision's changes, most values left out ([`crate::record`]) |
//! | `history_next` | revision, BE u64, then the key | the revision of the key's next change, BE u64 |
//! | `history_time` | revision, BE u64 | the stamp of the entry that made the revision: ms since the Unix epoch, BE u64 |
//! | `meta` | `applied_index`, `revision`, `history_compacted_to`, `incarnation` | BE u64 |
//! | `meta` | `stream/<name>` | revision of the stream's last change, BE u64 |
//!
//! Big-endian integers sort numerically under RocksDB's bytewise order, so
//! log and history scans are range scans.
//!
//! Changes to this layout, each readable by the code after it:
//!
//! - `history_time` was added with retention by age. A store written
//!   before it opens with the column family empty (RocksDB creates it):
//!   revisions without a time are kept by count alone, until a later,
//!   stamped revision is pruned by age (pruning always takes a prefix).
//! - The second word of an entry's `context` (the index through which
//!   every peer had the log) was added with log compaction to it; entries
//!   written before carry the stamp alone (8 bytes) and say nothing of it.
//! - Values were left out of `history` records (and `history_next` was
//!   added to find them): records written before carry every value and
//!   decode with `value_elided: false` ([`crate::record`]). A store
//!   written by this layout cannot be read by a kubus before it.
//! - [`crate::Change::prev`] was added with lists at a past revision;
//!   records written before it decode with `prev: None`, and a list that
//!   would need the previous object of such an update or delete answers
//!   [`crate::StoreError::Compacted`] at that revision.

use std::path::Path;

use rocksdb::{BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, Options, DB};

use crate::error::{CodecError, StoreError};

/// Raft log entries.
pub const CF_RAFT_LOG: &str = "raft_log";
/// HardState, ConfState, log truncation point.
pub const CF_RAFT_STATE: &str = "raft_state";
/// The objects.
pub const CF_OBJECTS: &str = "objects";
/// Changes by revision.
pub const CF_HISTORY: &str = "history";
/// Per change still in the history, the revision of the same key's next
/// change: where the value its record left out is ([`crate::record`]).
pub const CF_HISTORY_NEXT: &str = "history_next";
/// The time each revision was made, by revision (retention by age).
pub const CF_HISTORY_TIME: &str = "history_time";
/// Applied index, revision, stream heads and other counters.
pub const CF_META: &str = "meta";

const ALL_CFS: [&str; 7] = [
    CF_RAFT_LOG,
    CF_RAFT_STATE,
    CF_OBJECTS,
    CF_HISTORY,
    CF_HISTORY_NEXT,
    CF_HISTORY_TIME,
    CF_META,
];

/// `raft_state`: the persisted HardState.
pub const KEY_HARD_STATE: &[u8] = b"hard_state";
/// `raft_state`: the persisted ConfState.
pub const KEY_CONF_STATE: &[u8] = b"conf_state";
/// `raft_state`: index and term of the last compacted log entry.
pub const KEY_LOG_TRUNCATED: &[u8] = b"log_truncated";
/// `meta`: the last applied Raft index.
pub const KEY_APPLIED_INDEX: &[u8] = b"applied_index";
/// `meta`: the store's revision.
pub const KEY_REVISION: &[u8] = b"revision";
/// `meta`: the last revision pruned from `history` (0: none).
pub const KEY_HISTORY_COMPACTED_TO: &[u8] = b"history_compacted_to";
/// `meta`: how many times this store was opened (part of proposal ids).
pub const KEY_INCARNATION: &[u8] = b"incarnation";
/// `meta`: prefix of stream heads.
pub const STREAM_HEAD_PREFIX: &str = "stream/";

/// Opens (creating if needed) the database with every column family, for
/// a store with fsync on.
pub fn open_db(dir: &Path) -> Result<DB, StoreError> {
    open_db_for(dir, true, crate::config::MEMTABLE_BYTES_DEFAULT)
}

/// Opens the database for a store with `fsync` on or off and a memtable
/// budget of `memtable_bytes` for all column families together.
///
/// With fsync off (a test-only switch) RocksDB keeps unsynced write-ahead
/// log writes in its own buffer (`manual_wal_flush`) until a synced write,
/// an explicit flush or a full buffer: a killed process then loses exactly
/// what a power cut would lose — everything not yet synced — which is what
/// the crash tests must be able to see. (Without it, unsynced writes sit in
/// the kernel's page cache and survive any process crash, so no test on
/// one machine could tell fsync on from off.)
pub fn open_db_for(dir: &Path, fsync: bool, memtable_bytes: usize) -> Result<DB, StoreError> {
    let mut opts = Options::default();
    opts.set_manual_wal_flush(!fsync);
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_db_write_buffer_size(memtable_bytes);
    opts.set_max_background_jobs(2);
    // The state machine's column families are written without RocksDB's
    // write-ahead log (the Raft log is the write-ahead log of the state):
    // what survives a crash of them is what the last flush wrote, and
    // flushing every column family at once keeps that a consistent prefix
    // of apply batches — objects, history, applied index and log
    // truncation from the same batch (crate doc, "Durability contract").
    // A clean close flushes them (`avoid_flush_during_shutdown` stays off).
    opts.set_atomic_flush(true);
    let cfs = ALL_CFS
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, cf_options(name)));
    Ok(DB::open_cf_descriptors(&opts, dir, cfs)?)
}

/// A column family's options. `objects` is read by key for every
/// transaction applied (mostly a miss for creates): whole-key Bloom filters
/// on its tables and its memtable let a miss skip the lookups.
fn cf_options(name: &str) -> Options {
    let mut opts = Options::default();
    if name == CF_OBJECTS {
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(OBJECT_FILTER_BITS_PER_KEY, false);
        opts.set_block_based_table_factory(&table);
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(OBJECT_MEMTABLE_BLOOM_RATIO);
    }
    opts
}

/// Bits per key of the `objects` tables' Bloom filters (~1 % false
/// positives).
const OBJECT_FILTER_BITS_PER_KEY: f64 = 10.0;
/// Share of the `objects` memtable given to its Bloom filter.
const OBJECT_MEMTABLE_BLOOM_RATIO: f64 = 0.02;

/// The handle of a column family opened by [`open_db`].
pub fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a ColumnFamily, StoreError> {
    db.cf_handle(name)
        .ok_or_else(|| StoreError::Corrupt(format!("column family {name} is missing")))
}

/// A u64 as a sortable key or value.
pub fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// The inverse of [`be`], for values read from disk.
pub fn read_u64(what: &'static str, bytes: &[u8]) -> Result<u64, CodecError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| CodecError::Length {
        what,
        expected: 8,
        found: bytes.len(),
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// Reads a u64 from `meta`, 0 when absent.
pub fn meta_u64(db: &DB, key: &[u8], what: &'static str) -> Result<u64, StoreError> {
    match db.get_pinned_cf(cf(db, CF_META)?, key)? {
        Some(v) => Ok(read_u64(what, &v)?),
        None => Ok(0),
    }
}

/// The `history_next` key of the change to `key` at `revision`.
pub fn next_change_key(revision: u64, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + key.len());
    k.extend_from_slice(&be(revision));
    k.extend_from_slice(key.as_bytes());
    k
}

/// The `meta` key of a stream head.
pub fn stream_head_key(stream: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(STREAM_HEAD_PREFIX.len() + stream.len());
    k.extend_from_slice(STREAM_HEAD_PREFIX.as_bytes());
    k.extend_from_slice(stream.as_bytes());
    k
}

/// The smallest key greater than every key starting with `prefix`, or
/// `None` when there is none (empty prefix, or all bytes 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/pods/"), Some(b"/pods0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn u64_round_trip_and_order() {
        assert!(be(255) < be(256));
        assert_eq!(read_u64("x", &be(42)).expect("8 bytes"), 42);
        assert!(read_u64("x", b"short").is_err());
    }
}
