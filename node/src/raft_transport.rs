//! The NATS raft transport: [`kubus_storage::Transport`] on the bus, and
//! the receiving side that steps inbound messages into the local store.
//!
//! It lives here, in the wiring crate, because storage never depends on
//! NATS and the bus knows nothing of storage (DESIGN §2).
//!
//! - **Sending**: the Raft thread calls [`NatsTransport::send`], which only
//!   `try_send`s each message into a bounded queue
//!   ([`QUEUE_MESSAGES_MAX`]) and returns; when the queue is full the
//!   message is dropped and counted (Raft retransmits appends, heartbeats
//!   and votes, and re-sends a snapshot that was not acknowledged). A tokio
//!   task drains the queue: it encodes each message (raft-rs protobuf),
//!   splits it into frames ([`kubus_bus::frame`]) carrying at most 512 KiB
//!   each (`CHUNK_BYTES_DEFAULT`; less if the server's payload limit is
//!   smaller; only snapshots and very large appends need more than one)
//!   and publishes them on `kubus.<c>.raft.<to>`. A snapshot message is
//!   small: it carries a descriptor, and the receiver pulls the state.
//! - **Snapshot chunks**: a peer being sent a snapshot asks its leader
//!   for one chunk at a time ([`NatsFetcher`], a NATS request on
//!   `kubus.<c>.raft.<leader>.snapshot`, at most
//!   [`kubus_storage::snapshot::CHUNK_REQUEST_TIMEOUT`] each); the leader
//!   answers with [`serve_snapshots`] (`Store::snapshot_chunk`, off the
//!   runtime's workers). A chunk is at most the store's
//!   `snapshot_chunk_bytes` (256 KiB), under NATS' payload limit; see
//!   `kubus_storage::snapshot` for the flow control and the bounds.
//! - **Receiving**: [`receive`] subscribes to this peer's subject, puts
//!   frames back together (bounded in messages, bytes and time), decodes
//!   each message and hands it to a [`Delivery`] function — for a store
//!   peer, [`step_into`] (`Store::step`, which never blocks; a full inbound
//!   queue drops the message, as the network would).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kubus_bus::frame::{self, Limits, Reassembler};
use kubus_bus::Subjects;
use kubus_storage::{ChunkRequest, SnapshotChunk, SnapshotFetcher, Store, StoreError, Transport};
use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Raft messages queued for the sending task; past this they are dropped.
pub const QUEUE_MESSAGES_MAX: usize = 4096;
/// Largest frame published: a chunk of the size storage's transport
/// contract asks for ([`kubus_storage::CHUNK_BYTES_DEFAULT`], half of NATS'
/// default payload limit, so one frame never holds the connection for long)
/// and its header; a server that allows less is obeyed.
pub const FRAME_BYTES_MAX: usize = kubus_storage::CHUNK_BYTES_DEFAULT + frame::HEADER_BYTES;
/// Largest message put back together: an append (1 MiB of entries and
/// one entry of up to the store's entry limit) with room to spare.
/// Snapshots do not come this way: their state is pulled in chunks.
pub const MESSAGE_BYTES_MAX: usize = 64 << 20;
/// Messages partly received at once (large appends from different peers).
pub const PARTIAL_MESSAGES_MAX: usize = 4;
/// A partly received message not completed in this time is dropped.
pub const PARTIAL_TIMEOUT: Duration = Duration::from_secs(60);
/// One warning per this many dropped messages (drops are normal while a
/// peer is down; the log must not drown).
const DROPS_PER_WARNING: u64 = 1000;

/// Sends Raft messages over NATS; see the module doc.
pub struct NatsTransport {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
    fetcher: Option<Arc<NatsFetcher>>,
}

/// Asks other peers for snapshot chunks over NATS, from the store's
/// receiving thread (never a runtime worker): it blocks on the runtime the
/// transport was started on.
pub struct NatsFetcher {
    nats: async_nats::Client,
    subjects: Subjects,
    runtime: tokio::runtime::Handle,
}

impl SnapshotFetcher for NatsFetcher {
    fn fetch(&self, req: &ChunkRequest, timeout: Duration) -> Result<SnapshotChunk, String> {
        let subject = self.subjects.raft_snapshot(req.from);
        let payload = req.encode();
        let reply = self.runtime.block_on(async {
            tokio::time::timeout(timeout, self.nats.request(subject, payload.into())).await
        });
        match reply {
            Ok(Ok(msg)) => SnapshotChunk::decode(&msg.payload).map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer in {timeout:?}")),
        }
    }
}

impl NatsTransport {
    /// A transport for peer `from` and its sending task, spawned on the
    /// current tokio runtime; the task ends when the transport is dropped.
    pub fn start(nats: async_nats::Client, subjects: Subjects, from: u64) -> NatsTransport {
        let (mut transport, rx) = NatsTransport::with_queue(QUEUE_MESSAGES_MAX);
        transport.fetcher = Some(Arc::new(NatsFetcher {
            nats: nats.clone(),
            subjects: subjects.clone(),
            runtime: tokio::runtime::Handle::current(),
        }));
        let frame_bytes_max = match nats.server_info().max_payload {
            0 => FRAME_BYTES_MAX,
            n => n.min(FRAME_BYTES_MAX),
        };
        tokio::spawn(send_loop(rx, nats, subjects, from, frame_bytes_max));
        transport
    }

    /// A transport and the receiving end of its queue (no task).
    fn with_queue(capacity: usize) -> (NatsTransport, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            NatsTransport {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
                fetcher: None,
            },
            rx,
        )
    }

    /// Messages dropped because the queue was full or the task gone.
    #[cfg(test)]
    fn dropped(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.dropped)
    }
}

impl Transport for NatsTransport {
    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            if self.tx.try_send(m).is_err() {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n % DROPS_PER_WARNING == 1 {
                    warn!(
                        dropped = n,
                        "raft transport queue full; messages dropped (raft retransmits)"
                    );
                }
            }
        }
    }

    fn snapshot_fetcher(&self) -> Option<Arc<dyn SnapshotFetcher>> {
        self.fetcher
            .as_ref()
            .map(|f| Arc::clone(f) as Arc<dyn SnapshotFetcher>)
    }
}

/// Everything store peer `me` hears from its peers, spawned on the
/// current runtime: Raft messages stepped into `store` ([`receive`] with
/// [`step_into`]) and snapshot chunk requests answered from it
/// ([`serve_snapshots`]). The tasks end with their subscriptions.
pub async fn serve_peer(
    nats: &async_nats::Client,
    subjects: &Subjects,
    me: u64,
    store: &Store,
) -> Result<[tokio::task::JoinHandle<()>; 2], async_nats::SubscribeError> {
    let inbound = receive(nats, subjects, me, step_into(store.clone())).await?;
    let snapshots = serve_snapshots(nats.clone(), subjects, me, store.clone()).await?;
    Ok([tokio::spawn(inbound), tokio::spawn(snapshots)])
}

/// Answers the snapshot chunk requests addressed to peer `me` from
/// `store` until the subscription ends. One request at a time: a chunk is
/// made on a blocking thread ([`Store::snapshot_chunk`] waits for the
/// scan), and each receiver asks for one chunk at a time.
pub async fn serve_snapshots(
    nats: async_nats::Client,
    subjects: &Subjects,
    me: u64,
    store: Store,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, async_nats::SubscribeError> {
    let mut sub = nats.subscribe(subjects.raft_snapshot(me)).await?;
    Ok(async move {
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply else { continue };
            let req = match ChunkRequest::decode(&msg.payload) {
                Ok(r) if r.from == me => r,
                Ok(r) => {
                    debug!(
                        from = r.from,
                        me, "snapshot chunk request for another peer dropped"
                    );
                    continue;
                }
                Err(e) => {
                    debug!(error = %e, "snapshot chunk request dropped");
                    continue;
                }
            };
            let s = store.clone();
            let chunk = match tokio::task::spawn_blocking(move || s.snapshot_chunk(&req)).await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "snapshot chunk not made");
                    continue;
                }
            };
            if let Err(e) = nats.publish(reply, chunk.encode().into()).await {
                debug!(error = %e, "snapshot chunk not published");
            }
        }
    })
}

/// A sequence number no earlier run of this peer used: message numbers
/// start at the clock, so a restarted sender cannot be confused with its
/// predecessor's half-sent snapshot.
fn first_sequence() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

async fn send_loop(
    mut rx: mpsc::Receiver<Message>,
    nats: async_nats::Client,
    subjects: Subjects,
    from: u64,
    frame_bytes_max: usize,
) {
    let mut seq = first_sequence();
    while let Some(m) = rx.recv().await {
        let to = m.to;
        let bytes = match m.write_to_bytes() {
            Ok(b) => b,
            Err(e) => {
                warn!(to, error = %e, "cannot encode a raft message; dropped");
                continue;
            }
        };
        seq = seq.wrapping_add(1);
        let frames = match frame::split(from, seq, &bytes, frame_bytes_max) {
            Ok(f) => f,
            Err(e) => {
                warn!(to, bytes = bytes.len(), error = %e, "cannot frame a raft message; dropped");
                continue;
            }
        };
        let subject = subjects.raft(to);
        for f in frames {
            if let Err(e) = nats.publish(subject.clone(), f.into()).await {
                debug!(to, error = %e, "raft message not published");
                break;
            }
        }
    }
}

/// What became of one inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Handed over.
    Accepted,
    /// Dropped (the receiver is busy); Raft retransmits.
    Dropped,
    /// The receiver is gone: stop receiving.
    Stop,
}

/// Steps inbound messages into `store`.
pub fn step_into(store: Store) -> impl FnMut(Message) -> Delivery + Send + 'static {
    move |m| match store.step(m) {
        Ok(()) => Delivery::Accepted,
        Err(StoreError::Stopped) => Delivery::Stop,
        Err(_) => Delivery::Dropped,
    }
}

/// Receives the Raft messages addressed to peer `me` until the
/// subscription ends or `deliver` says stop. Subscribes before it returns
/// the task's future, so nothing published after this call is missed.
pub async fn receive<F>(
    nats: &async_nats::Client,
    subjects: &Subjects,
    me: u64,
    mut deliver: F,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, async_nats::SubscribeError>
where
    F: FnMut(Message) -> Delivery + Send + 'static,
{
    let mut sub = nats.subscribe(subjects.raft(me)).await?;
    Ok(async move {
        let mut reassembler = Reassembler::new(Limits {
            message_bytes_max: MESSAGE_BYTES_MAX,
            partial_max: PARTIAL_MESSAGES_MAX,
            partial_timeout: PARTIAL_TIMEOUT,
        });
        while let Some(msg) = sub.next().await {
            let bytes = match reassembler.push(&msg.payload, Instant::now()) {
                Ok(Some((_, bytes))) => bytes,
                Ok(None) => continue,
                Err(e) => {
                    debug!(error = %e, "raft frame dropped");
                    continue;
                }
            };
            let m = match Message::parse_from_bytes(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "undecodable raft message dropped");
                    continue;
                }
            };
            if m.to != me {
                debug!(to = m.to, me, "raft message for another peer dropped");
                continue;
            }
            if deliver(m) == Delivery::Stop {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nats_server::NatsServer;
    use raft::eraftpb::{MessageType, Snapshot};

    fn msg(from: u64, to: u64, kind: MessageType) -> Message {
        let mut m = Message {
            from,
            to,
            term: 3,
            ..Message::default()
        };
        m.set_msg_type(kind);
        m
    }

    #[test]
    fn a_full_queue_drops_without_blocking() {
        let (mut t, mut rx) = NatsTransport::with_queue(4);
        let batch: Vec<_> = (0..10)
            .map(|_| msg(1, 2, MessageType::MsgHeartbeat))
            .collect();
        t.send(batch);
        assert_eq!(t.dropped().load(Ordering::Relaxed), 6);
        let mut n = 0;
        while rx.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, 4);
        drop(rx);
        t.send(vec![msg(1, 2, MessageType::MsgHeartbeat)]);
        assert_eq!(t.dropped().load(Ordering::Relaxed), 7);
    }

    /// Peer 1 sends peer 2 a heartbeat and a 3 MiB snapshot (seven
    /// frames) through a real nats-server on loopback; peer 2 gets both
    /// whole, and nothing meant for peer 3.
    #[test]
    fn messages_and_chunked_snapshots_cross_a_real_server() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nats = NatsServer::start(&dir.path().join("nats.log"), None).expect("nats-server");
        let url = nats.url();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let subjects = Subjects::new("t");
            let a = async_nats::connect(&url).await.expect("connect a");
            let b = async_nats::connect(&url).await.expect("connect b");
            let (got_tx, mut got) = mpsc::channel(16);
            let task = receive(&b, &subjects, 2, move |m| {
                if got_tx.try_send(m).is_ok() {
                    Delivery::Accepted
                } else {
                    Delivery::Dropped
                }
            })
            .await
            .expect("subscribe");
            tokio::spawn(task);
            b.flush().await.expect("flush");

            let mut snap = msg(1, 2, MessageType::MsgSnapshot);
            let mut s = Snapshot {
                data: (0..3 * 1024 * 1024u32)
                    .map(|i| (i % 253) as u8)
                    .collect::<Vec<u8>>()
                    .into(),
                ..Snapshot::default()
            };
            s.mut_metadata().index = 77;
            snap.set_snapshot(s);
            let mut t = NatsTransport::start(a.clone(), subjects.clone(), 1);
            t.send(vec![
                msg(1, 3, MessageType::MsgHeartbeat),
                msg(1, 2, MessageType::MsgHeartbeat),
                snap.clone(),
            ]);
            let first = tokio::time::timeout(Duration::from_secs(10), got.recv())
                .await
                .expect("in time")
                .expect("a message");
            assert_eq!(first, msg(1, 2, MessageType::MsgHeartbeat));
            let second = tokio::time::timeout(Duration::from_secs(10), got.recv())
                .await
                .expect("in time")
                .expect("the snapshot");
            assert_eq!(second, snap);
            assert_eq!(t.dropped().load(Ordering::Relaxed), 0);
        });
        drop(nats);
    }
}
