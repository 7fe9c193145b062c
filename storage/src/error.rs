//! [`StoreError`], the one error type of the store's public API, and
//! [`CodecError`], what can go wrong turning bytes into values and back.
//!
//! Errors a caller can cause ([`StoreError::InvalidTxn`],
//! [`StoreError::InvalidConfig`]) say which rule was broken; errors of the
//! machine ([`StoreError::Rocks`], [`StoreError::Corrupt`]) say what was
//! being read or written.

/// Everything a [`crate::Store`] call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB refused a read or a write.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// The operating system refused (e.g. to start the Raft thread).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// raft-rs refused an operation (a bad config, a message it cannot step).
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// A value could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    /// This peer is not the leader; writes must go to `leader` (if known).
    #[error("this peer is not the raft leader (leader: {})", leader.map_or("unknown".to_string(), |l| l.to_string()))]
    NotLeader {
        /// The peer this peer believes to be the leader.
        leader: Option<u64>,
    },
    /// The store was shut down (or its raft thread stopped after an error).
    #[error("the store is stopped")]
    Stopped,
    /// The history before `compacted_to + 1` was pruned; relist instead.
    #[error("history up to revision {compacted_to} was compacted")]
    Compacted {
        /// The last pruned revision; `changes_since(compacted_to, …)` works.
        compacted_to: u64,
    },
    /// A read named a revision this peer has not reached; after a
    /// linearizable read it is a revision no write has made yet.
    #[error("revision {revision} is newer than the store's revision {current}")]
    FutureRevision {
        /// The revision asked for.
        revision: u64,
        /// The store's revision.
        current: u64,
    },
    /// Reading the state at `revision` would read more than `bytes_max`
    /// bytes of history ([`crate::StoreConfig::history_read_bytes_max`]);
    /// read at a newer revision.
    #[error("reading at revision {revision} would read more than {bytes_max} bytes of history")]
    HistoryReadLimit {
        /// The revision asked for.
        revision: u64,
        /// The bound.
        bytes_max: usize,
    },
    /// A request that needed other peers got no answer in time. For a
    /// write the outcome is unknown: it may yet be applied.
    #[error("the request timed out waiting for the raft leader (a write may still be applied)")]
    Timeout,
    /// A configuration change was refused (another one is pending, or it
    /// would remove the last voter).
    #[error("membership change refused: {0}")]
    MembershipRefused(String),
    /// Too many proposals or inbound messages are queued; retry later.
    #[error("the store is busy (too many requests in flight)")]
    Busy,
    /// A streamed Raft snapshot could not be sent, received or installed.
    #[error("snapshot: {0}")]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// The data on disk breaks an invariant of the store.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// A transaction broke a rule of [`crate::Txn::validate`].
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
    /// A [`crate::StoreConfig`] broke a rule of [`crate::StoreConfig::validate`].
    #[error("invalid store config: {0}")]
    InvalidConfig(String),
}

/// A value that could not be turned into bytes or back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// MessagePack encoding failed.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's complaint.
        source: rmp_serde::encode::Error,
    },
    /// MessagePack decoding failed.
    #[error("cannot decode {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The decoder's complaint.
        source: rmp_serde::decode::Error,
    },
    /// A raft protobuf message could not be encoded or decoded.
    #[error("protobuf {what}: {source}")]
    Protobuf {
        /// What was being encoded or decoded.
        what: &'static str,
        /// The codec's complaint.
        source: protobuf::ProtobufError,
    },
    /// A fixed-width value had the wrong length.
    #[error("{what}: expected {expected} bytes, found {found}")]
    Length {
        /// What was being decoded.
        what: &'static str,
        /// The width it must have.
        expected: usize,
        /// The width it had.
        found: usize,
    },
}

/// MessagePack with named fields (the only form that round-trips every
/// serde type we store).
pub(crate) fn encode<T: serde::Serialize + ?Sized>(
    what: &'static str,
    value: &T,
) -> Result<Vec<u8>, CodecError> {
    rmp_serde::to_vec_named(value).map_err(|source| CodecError::Encode { what, source })
}

/// The inverse of [`encode`].
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, CodecError> {
    rmp_serde::from_slice(bytes).map_err(|source| CodecError::Decode { what, source })
}
