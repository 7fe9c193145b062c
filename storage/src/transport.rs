//! [`Transport`]: how a peer's Raft messages reach the other peers.
//!
//! This crate only defines the seam; the NATS implementation lives in the
//! crate that wires a mesh node together, so storage never depends on NATS.
//! [`NoPeers`] is the transport of a single-peer store.

use raft::eraftpb::Message;

/// Sends Raft messages to other peers. Called on the Raft thread, so it
/// must not block for long: hand the messages to a queue (bounded, dropping
/// when full — Raft retransmits) and return.
pub trait Transport: Send + 'static {
    /// Sends `messages`, each to its `to` peer. Never called with an empty
    /// vector.
    fn send(&mut self, messages: Vec<Message>);
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
