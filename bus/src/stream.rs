//! Byte streams over NATS: one TCP connection (or any byte pipe) carried
//! between two processes as NATS messages (`kubus port-forward`, and exec
//! sessions framed by [`crate::session`]: the CLI or the API gateway on
//! one side, the pod's node agent on the other). Each side publishes what it reads
//! on its `tx` subject and writes what arrives on its `rx` subject; the
//! two sides' subjects are each other's ([`Subjects::stream`]).
//!
//! Nothing is lost silently: every chunk carries a sequence number
//! ([`HEADER_SEQ`]); a receiver that sees a gap (NATS dropped a message to
//! a slow consumer) ends the stream with an error. A sender keeps at most
//! [`WINDOW_BYTES`] unacknowledged (the receiver acknowledges every
//! [`ACK_EVERY_BYTES`] it has written), so a fast sender cannot outrun a
//! slow reader. An empty chunk with [`HEADER_EOF`] closes a direction; a
//! stream idle for [`IDLE_MAX`] is closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::subject::{StreamEnd, Subjects};

/// Header: the chunk's sequence number (from 1 in each direction).
pub const HEADER_SEQ: &str = "Kubus-Seq";
/// Header: this direction ends here.
pub const HEADER_EOF: &str = "Kubus-Eof";
/// Most bytes one chunk carries.
pub const CHUNK_BYTES: usize = 32 * 1024;
/// Most bytes a sender has sent and not seen acknowledged.
pub const WINDOW_BYTES: u64 = 1024 * 1024;
/// A receiver acknowledges after writing this many more bytes.
pub const ACK_EVERY_BYTES: u64 = 128 * 1024;
/// The in-process pipe of [`Side::pipe`].
pub const PIPE_BYTES: usize = 256 * 1024;
/// A stream with no traffic either way for this long is closed.
pub const IDLE_MAX: Duration = Duration::from_secs(300);

/// Why a stream ended early.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the stream lost data (chunk {got} arrived, {want} was next): closed")]
    Gap { want: u64, got: u64 },
    #[error("the stream was idle for {0:?}: closed")]
    Idle(Duration),
    #[error("bus: {0}")]
    Nats(String),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

/// One side of a stream, subscribed: create it before the other side may
/// send (the side that opens subscribes before asking, the side that
/// accepts before answering), then [`Side::run`] it.
pub struct Side {
    nats: async_nats::Client,
    tx: String,
    rx: async_nats::Subscriber,
    acks: async_nats::Subscriber,
    ack_subject: String,
}

impl Side {
    /// Subscribe as `end` of stream `id` with node `node`'s agent.
    pub async fn subscribe(
        nats: &async_nats::Client,
        subjects: &Subjects,
        node: &str,
        id: &str,
        end: StreamEnd,
    ) -> Result<Side, StreamError> {
        let (tx, rx) = subjects.stream(node, id, end);
        let rx_sub = nats
            .subscribe(rx.clone())
            .await
            .map_err(|e| StreamError::Nats(e.to_string()))?;
        // acknowledgements of what this side sent come on tx's ack subject
        let acks = nats
            .subscribe(subjects.stream_ack(&tx))
            .await
            .map_err(|e| StreamError::Nats(e.to_string()))?;
        Ok(Side {
            nats: nats.clone(),
            tx,
            rx: rx_sub,
            acks,
            ack_subject: subjects.stream_ack(&rx),
        })
    }

    /// Carry `tcp` until both directions have ended (or an error, or
    /// [`IDLE_MAX`] without traffic).
    pub async fn run(self, tcp: TcpStream) -> Result<(), StreamError> {
        let _ = tcp.set_nodelay(true);
        let (read, write) = tcp.into_split();
        self.carry(read, write).await
    }

    /// Carry the stream in the background; the returned pipe's end reads
    /// what the other side sends and writes what it receives (bounded by
    /// [`PIPE_BYTES`]).
    pub fn pipe(self) -> tokio::io::DuplexStream {
        let (here, there) = tokio::io::duplex(PIPE_BYTES);
        let (read, write) = tokio::io::split(there);
        tokio::spawn(async move {
            let _ = self.carry(read, write).await;
        });
        here
    }

    /// Carry what `read` yields to the other side, and what the other side
    /// sends into `write`, until both directions have ended (or an error,
    /// or [`IDLE_MAX`] without traffic).
    pub async fn carry<R, W>(self, mut read: R, mut write: W) -> Result<(), StreamError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Side {
            nats,
            tx,
            mut rx,
            mut acks,
            ack_subject,
        } = self;
        let acked = Arc::new(AtomicU64::new(0));
        let more = Arc::new(Notify::new());
        let activity = Arc::new(Notify::new());

        let ack_task = {
            let (acked, more) = (acked.clone(), more.clone());
            async move {
                while let Some(m) = acks.next().await {
                    let n = std::str::from_utf8(&m.payload)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0);
                    acked.fetch_max(n, Ordering::Relaxed);
                    more.notify_waiters();
                    more.notify_one();
                }
            }
        };

        let send = {
            let (nats, acked, more, activity) =
                (nats.clone(), acked.clone(), more.clone(), activity.clone());
            async move {
                let mut buf = vec![0u8; CHUNK_BYTES];
                let mut seq = 0u64;
                let mut sent = 0u64;
                loop {
                    let n = read.read(&mut buf).await?;
                    activity.notify_one();
                    seq += 1;
                    let mut headers = HeaderMap::new();
                    headers.insert(HEADER_SEQ, seq.to_string().as_str());
                    if n == 0 {
                        headers.insert(HEADER_EOF, "1");
                        nats.publish_with_headers(tx.clone(), headers, Bytes::new())
                            .await
                            .map_err(|e| StreamError::Nats(e.to_string()))?;
                        return Ok::<(), StreamError>(());
                    }
                    while sent.saturating_sub(acked.load(Ordering::Relaxed)) > WINDOW_BYTES {
                        let wait = more.notified();
                        if sent.saturating_sub(acked.load(Ordering::Relaxed)) <= WINDOW_BYTES {
                            break;
                        }
                        if tokio::time::timeout(IDLE_MAX, wait).await.is_err() {
                            return Err(StreamError::Idle(IDLE_MAX));
                        }
                    }
                    sent += n as u64;
                    nats.publish_with_headers(
                        tx.clone(),
                        headers,
                        Bytes::copy_from_slice(&buf[..n]),
                    )
                    .await
                    .map_err(|e| StreamError::Nats(e.to_string()))?;
                }
            }
        };

        let receive = {
            let (nats, activity) = (nats.clone(), activity.clone());
            async move {
                let mut want = 1u64;
                let mut written = 0u64;
                let mut acked_at = 0u64;
                while let Some(m) = rx.next().await {
                    activity.notify_one();
                    let got = m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(HEADER_SEQ))
                        .and_then(|v| v.as_str().parse::<u64>().ok())
                        .unwrap_or(0);
                    if got != want {
                        return Err(StreamError::Gap { want, got });
                    }
                    want += 1;
                    let eof = m.headers.as_ref().and_then(|h| h.get(HEADER_EOF)).is_some();
                    if eof {
                        write.shutdown().await?;
                        return Ok(());
                    }
                    write.write_all(&m.payload).await?;
                    write.flush().await?;
                    written += m.payload.len() as u64;
                    if written - acked_at >= ACK_EVERY_BYTES {
                        acked_at = written;
                        nats.publish(ack_subject.clone(), Bytes::from(written.to_string()))
                            .await
                            .map_err(|e| StreamError::Nats(e.to_string()))?;
                    }
                }
                Ok::<(), StreamError>(())
            }
        };

        let idle = async {
            loop {
                if tokio::time::timeout(IDLE_MAX, activity.notified())
                    .await
                    .is_err()
                {
                    return StreamError::Idle(IDLE_MAX);
                }
            }
        };

        let both = async {
            let (s, r) = tokio::join!(send, receive);
            s.and(r)
        };
        tokio::select! {
            r = both => r,
            e = idle => Err(e),
            () = ack_task => Err(StreamError::Nats("acknowledgements ended".into())),
        }
    }
}
