//! [`Transport`]: how a peer's Raft messages reach the other peers.
//!
//! This crate only defines the seam; the NATS implementation lives in the
//! crate that wires a mesh node together, so storage never depends on NATS.
//! [`NoPeers`] is the transport of a single-peer store.

use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::Message;

pub use crate::snapshot::{ChunkRequest, SnapshotChunk};

/// The chunk size a transport should split large messages into: under
/// half of NATS' default 1 MiB payload limit, so that a chunk and its
/// header always fit, and one chunk never holds the connection for long.
pub const CHUNK_BYTES_DEFAULT: usize = 512 * 1024;

/// Sends Raft messages to other peers. Called on the Raft thread, so it
/// must not block for long: hand the messages to a queue (bounded, dropping
/// when full — Raft retransmits) and return.
///
/// A message can be larger than a transport's payload limit: one append
/// carries up to 1 MiB of entries plus one entry of up to
/// [`crate::StoreConfig::entry_bytes_max`]. The transport encodes each
/// message (raft-rs protobuf), splits what is larger than its chunk size
/// (by default [`CHUNK_BYTES_DEFAULT`]) into chunks, and the receiving side
/// puts them back together and hands the whole message to
/// [`crate::Store::step`]. A chunk lost on the way loses the message; Raft
/// sends it again.
///
/// A snapshot (`MsgSnapshot`) is small: its data is only a descriptor
/// ([`crate::snapshot::Descriptor`]). The state it stands for is pulled
/// by the receiving peer, chunk by chunk, through the transport's
/// [`SnapshotFetcher`]: the sending side answers each
/// [`ChunkRequest`] with [`crate::Store::snapshot_chunk`] (see
/// [`crate::snapshot`]).
pub trait Transport: Send + 'static {
    /// Sends `messages`, each to its `to` peer. Never called with an empty
    /// vector.
    fn send(&mut self, messages: Vec<Message>);

    /// How this peer asks other peers for snapshot chunks; `None` (the
    /// default) if it cannot, and so cannot be sent a snapshot.
    fn snapshot_fetcher(&self) -> Option<Arc<dyn SnapshotFetcher>> {
        None
    }
}

/// Asks another peer for one chunk of a snapshot it sends this one (a
/// request and its reply). Called on a thread of its own, never the Raft
/// thread, one request at a time per transfer.
pub trait SnapshotFetcher: Send + Sync + 'static {
    /// Asks peer `req.from` for the chunk `req`; gives up after `timeout`
    /// with the reason (the receiver asks again, a bounded number of
    /// times).
    fn fetch(&self, req: &ChunkRequest, timeout: Duration) -> Result<SnapshotChunk, String>;
}

/// The transport of a store with one peer: there is nobody to talk to, so
/// any message (there should be none) is logged and dropped.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            tracing::warn!(
                to = m.to,
                msg_type = ?m.get_msg_type(),
                "single-peer store has no transport; raft message dropped"
            );
        }
    }
}
