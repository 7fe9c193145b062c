//! A SPDY/3.1 session: many [`Stream`]s over one upgraded connection.
//!
//! [`Session::server`] and [`Session::client`] take the connection and
//! spawn two tasks: a *reader* that decodes frames and routes them to
//! streams, and a *writer* that encodes queued frames in order. The handle
//! ([`Session`]) opens streams ([`Session::open`], waiting for the peer's
//! SYN_REPLY) and accepts the peer's ([`Session::accept`], which queues the
//! SYN_REPLY: client-go does not use a stream before it has one).
//!
//! A [`Stream`] has the headers it was opened with and splits into a
//! [`RecvStream`] (`AsyncRead` over its DATA; the peer's FIN reads as EOF,
//! its RST_STREAM as an error) and a [`SendStream`] (`AsyncWrite`; each
//! write queues one DATA frame of at most [`DATA_CHUNK_LEN`] bytes,
//! `shutdown` queues an empty DATA frame with FIN, dropping it without
//! `shutdown` does the same, and [`SendStream::reset`] sends RST_STREAM).
//!
//! The session answers PING, ignores SETTINGS and WINDOW_UPDATE, and after
//! a GOAWAY accepts and opens no new streams. It ends when the connection
//! fails or closes, when a frame cannot be decoded (after a GOAWAY with
//! PROTOCOL_ERROR), or when the [`Session`] handle and every stream have
//! been dropped (after a GOAWAY with OK). Streams still held then read
//! their queued data and then an error, and their writes fail.
//!
//! # Flow control, as spdystream does it
//!
//! SPDY/3.1 gives every stream (and the session) a 64 KiB send window that
//! the receiver reopens with WINDOW_UPDATE. moby/spdystream (kubectl, the
//! API server, the kubelet, containerd's CRI streaming server) implements
//! none of it: `connection.go` has no WINDOW_UPDATE or SETTINGS case in its
//! frame handler (they fall to "unhandled frame type"), it never sends
//! either frame, and `Stream.Write` in `stream.go` writes one DATA frame per
//! call with no window check. A side that waited for window credit would
//! stall after 64 KiB of output. So this session neither sends
//! WINDOW_UPDATE nor waits for one; the peer's WINDOW_UPDATE and SETTINGS
//! are read and ignored.
//!
//! What bounds memory instead is backpressure through the connection, as
//! in spdystream (whose frame queues block its read loop when full): each
//! stream's inbound data waits in a bounded queue ([`STREAM_INBOUND_CHUNKS`]
//! chunks of at most [`DATA_CHUNK_LEN`]); when one is full the reader task
//! waits, the connection's receive buffer fills, and TCP slows the peer.
//! **The consequence: one stream whose reader does not read stalls every
//! stream of the session**, and PINGs go unanswered until it reads. Callers
//! must keep reading every [`RecvStream`] they hold, or drop it (its data is
//! then discarded). Outbound, writes wait while the writer's queue
//! ([`OUTBOUND_QUEUE_FRAMES`]) is full, which it is while the peer does not
//! read.
//!
//! # Layout
//!
//! The decisions (is this SYN_STREAM acceptable, is this PING ours) are
//! pure functions at the top, with table tests; `Reader` applies them and
//! routes frames; `Writer` only encodes and writes. Stream bookkeeping
//! lives in one map under a `std::sync::Mutex` that is never held across an
//! `.await`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc::error::{SendError, TrySendError};
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use crate::frame::{
    header_block, Frame, FrameDecoder, FrameEncoder, FrameError, GoAwayStatus, Headers, RstStatus,
    StreamId, MAX_STREAM_ID,
};

/// The largest DATA frame we send, and the size of the chunks inbound data
/// is queued in. 32 KiB is what Go's `io.Copy` writes at a time, so
/// kubectl's own frames are this size.
pub const DATA_CHUNK_LEN: usize = 32 << 10;

/// Chunks queued per stream before the reader task waits: at most 512 KiB
/// of inbound data per stream.
pub const STREAM_INBOUND_CHUNKS: usize = 16;

/// Frames queued for the writer task from streams and the handle: at most
/// 2 MiB of outbound data per session.
pub const OUTBOUND_QUEUE_FRAMES: usize = 64;

/// Frames the reader task queues for the writer (PING echoes, refusals).
/// The reader never waits on this queue: when it is full, which takes a
/// peer that floods PINGs while not reading, such frames are dropped.
pub const CONTROL_QUEUE_FRAMES: usize = 64;

/// Streams the peer has opened and [`Session::accept`] has not yet taken.
pub const ACCEPT_BACKLOG: usize = 32;

/// Open streams per session; past it the peer's SYN_STREAMs are refused
/// and [`Session::open`] fails. kubectl exec opens 5, port-forward 2 per
/// forwarded connection.
pub const MAX_STREAMS: usize = 1024;

/// How long [`Session::open`] waits for SYN_REPLY: client-go's
/// `createStreamResponseTimeout`.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`Session::ping`] waits for the echo.
pub const PING_TIMEOUT: Duration = Duration::from_secs(30);

/// PINGs in flight at once.
pub const MAX_PENDING_PINGS: usize = 16;

/// How long the writer may take, once every handle is gone, to write what
/// is queued, the GOAWAY and the shutdown before it drops the connection
/// anyway.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes the writer gathers from queued frames before one write.
const WRITE_BATCH_LEN: usize = 256 << 10;

/// Room the reader keeps in its buffer for the next read.
const READ_BUF_LEN: usize = 64 << 10;

/// Which end of the connection we are: the client opens odd stream ids and
/// PINGs, the server even ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sent the HTTP upgrade request (kubectl; the node agent to the CRI
    /// streaming server).
    Client,
    /// Answered it (the API gateway; the CRI streaming server).
    Server,
}

impl Role {
    /// Whether `id` (a stream or PING id) is one this side originates.
    fn owns(self, id: u32) -> bool {
        (id % 2 == 1) == (self == Role::Client)
    }

    fn first_id(self) -> u32 {
        match self {
            Role::Client => 1,
            Role::Server => 2,
        }
    }
}

/// What to do with a SYN_STREAM from the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Incoming {
    /// Queue it for [`Session::accept`].
    Accept,
    /// Answer with RST_STREAM.
    Refuse(RstStatus),
}

/// Judges a SYN_STREAM: its id must have the peer's parity and be above
/// every id the peer used before (else PROTOCOL_ERROR, as spdystream does);
/// we must be accepting (a server whose handle is alive, before any GOAWAY)
/// and under [`MAX_STREAMS`] (else REFUSED_STREAM, which tells the peer
/// nothing was processed).
fn judge_syn_stream(
    role: Role,
    id: StreamId,
    last_peer_id: StreamId,
    accepting: bool,
    open_streams: usize,
) -> Incoming {
    if role.owns(id) || id <= last_peer_id {
        Incoming::Refuse(RstStatus::PROTOCOL_ERROR)
    } else if !accepting || open_streams >= MAX_STREAMS {
        Incoming::Refuse(RstStatus::REFUSED_STREAM)
    } else {
        Incoming::Accept
    }
}

/// What a PING is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PingKind {
    /// The peer's probe: send it back unchanged.
    Echo,
    /// The echo of one of ours.
    Answer,
}

/// spdystream's rule: a PING whose id has the other side's parity is a
/// probe to echo.
fn judge_ping(role: Role, id: u32) -> PingKind {
    if role.owns(id) {
        PingKind::Answer
    } else {
        PingKind::Echo
    }
}

/// The id after `id` among this side's PING ids, kept to 31 bits and
/// never 0 (spdystream drops the connection on PING 0).
fn next_ping_id(id: u32) -> u32 {
    match id.checked_add(2) {
        Some(next) if next <= MAX_STREAM_ID => next,
        _ => 2 - id % 2,
    }
}

/// Why [`Session`] could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The session has ended (the connection closed or failed).
    #[error("the SPDY session has ended")]
    Closed,
    /// The peer sent GOAWAY: it takes no new streams.
    #[error("the peer sent GOAWAY and takes no new streams")]
    GoneAway,
    /// We sent GOAWAY ([`Session::close`]): no new streams either way.
    #[error("this session sent GOAWAY and opens no new streams")]
    Closing,
    /// The peer answered our SYN_STREAM with RST_STREAM.
    #[error("the peer refused stream {id}: {status}")]
    Refused {
        /// The stream.
        id: StreamId,
        /// The peer's reason.
        status: RstStatus,
    },
    /// No SYN_REPLY within [`REPLY_TIMEOUT`]; the stream was reset.
    #[error("no SYN_REPLY for stream {id} within {after:?}")]
    ReplyTimeout {
        /// The stream.
        id: StreamId,
        /// How long we waited.
        after: Duration,
    },
    /// [`MAX_STREAMS`] streams are open.
    #[error("{open} streams are open, the most one session allows")]
    TooManyStreams {
        /// Streams open.
        open: usize,
    },
    /// Every 31-bit stream id of our parity has been used.
    #[error("this session has used every stream id")]
    StreamIdsExhausted,
    /// No PING echo within [`PING_TIMEOUT`].
    #[error("no PING echo within {0:?}")]
    PingTimeout(Duration),
    /// [`MAX_PENDING_PINGS`] PINGs are already waiting.
    #[error("{0} PINGs are already waiting for an echo")]
    TooManyPings(usize),
    /// The headers cannot be sent (see [`crate::frame::header_block`]).
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Why a stream read or write failed; carried inside the [`io::Error`]s
/// that [`RecvStream`] and [`SendStream`] return (`get_ref` and
/// `downcast_ref` reach it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The peer sent RST_STREAM (kubectl's teardown sends CANCEL to every
    /// stream it has not finished). Kind: `ConnectionReset`.
    #[error("stream {id} was reset by the peer: {status}")]
    Reset {
        /// The stream.
        id: StreamId,
        /// The peer's reason.
        status: RstStatus,
    },
    /// This side reset the stream. Kind: `ConnectionAborted`.
    #[error("stream {id} was reset on this side")]
    LocalReset {
        /// The stream.
        id: StreamId,
    },
    /// The session ended before the peer finished the stream with FIN.
    /// Kind: `UnexpectedEof`.
    #[error("the session ended before the peer finished stream {id}")]
    Truncated {
        /// The stream.
        id: StreamId,
    },
    /// A write after `shutdown` (FIN already queued). Kind: `BrokenPipe`.
    #[error("stream {id} has already finished sending")]
    Finished {
        /// The stream.
        id: StreamId,
    },
    /// A write after the session ended. Kind: `BrokenPipe`.
    #[error("the session of stream {id} has ended")]
    SessionClosed {
        /// The stream.
        id: StreamId,
    },
}

impl From<StreamError> for io::Error {
    fn from(e: StreamError) -> Self {
        let kind = match e {
            StreamError::Reset { .. } => io::ErrorKind::ConnectionReset,
            StreamError::LocalReset { .. } => io::ErrorKind::ConnectionAborted,
            StreamError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            StreamError::Finished { .. } | StreamError::SessionClosed { .. } => {
                io::ErrorKind::BrokenPipe
            }
        };
        io::Error::new(kind, e)
    }
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every critical section here is a few assignments).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How the peer's direction of a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Remote {
    Open,
    /// FIN: reads drain the queue, then EOF.
    Fin,
    /// RST_STREAM before FIN: reads fail at once.
    Reset(RstStatus),
    /// [`SendStream::reset`]: reads fail at once.
    LocalReset,
    /// The session ended first: reads drain the queue, then fail.
    SessionEnded,
}

/// How our direction of a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    Open,
    Fin,
    Reset,
}

#[derive(Debug)]
struct Flags {
    remote: Remote,
    local: Local,
    /// Set by the peer's RST_STREAM even after its FIN: our writes fail.
    peer_reset: Option<RstStatus>,
}

/// One stream's state, shared by its halves and the reader task.
#[derive(Debug)]
struct StreamState {
    id: StreamId,
    flags: Mutex<Flags>,
    /// Wakes the reader task if it is waiting to queue data for a stream
    /// that this side then resets.
    abort: Notify,
}

impl StreamState {
    fn new(id: StreamId, remote: Remote, local: Local) -> Self {
        Self {
            id,
            flags: Mutex::new(Flags {
                remote,
                local,
                peer_reset: None,
            }),
            abort: Notify::new(),
        }
    }

    /// An error that makes reads fail before the queue is drained: only
    /// our own reset. What the peer sent before resetting the stream is
    /// read first (the CRI streaming servers write an exec's status, then
    /// reset its stream), then the reset is the error.
    fn read_abort(&self) -> Option<StreamError> {
        match lock(&self.flags).remote {
            Remote::LocalReset => Some(StreamError::LocalReset { id: self.id }),
            _ => None,
        }
    }

    /// What a read returns once the queue is drained and closed.
    fn read_end(&self) -> io::Result<()> {
        match lock(&self.flags).remote {
            Remote::Open | Remote::Fin => Ok(()),
            Remote::Reset(status) => Err(StreamError::Reset {
                id: self.id,
                status,
            }
            .into()),
            Remote::LocalReset => Err(StreamError::LocalReset { id: self.id }.into()),
            Remote::SessionEnded => Err(StreamError::Truncated { id: self.id }.into()),
        }
    }

    fn locally_reset(&self) -> bool {
        lock(&self.flags).local == Local::Reset
    }
}

/// The reader task's route to one stream.
struct Entry {
    /// Where its DATA goes; `None` once the peer finished.
    inbound: Option<mpsc::Sender<Bytes>>,
    stream: Arc<StreamState>,
    /// Wakes [`Session::open`] with the SYN_REPLY.
    reply: Option<oneshot::Sender<Headers>>,
}

struct State {
    streams: HashMap<StreamId, Entry>,
    next_stream_id: u32,
    next_ping_id: u32,
    pings: HashMap<u32, oneshot::Sender<()>>,
    /// The highest stream id the peer has opened.
    last_peer_id: StreamId,
    peer_goaway: bool,
    local_goaway: bool,
}

struct Shared {
    role: Role,
    state: Mutex<State>,
    /// Set when the reader task stops.
    ended: AtomicBool,
    /// Held from choosing a stream id to queueing its SYN_STREAM, so ids
    /// reach the wire in increasing order (spdystream refuses a lower one).
    open_order: tokio::sync::Mutex<()>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Stops routing frames to `id`.
    fn forget(&self, id: StreamId) {
        self.state().streams.remove(&id);
    }

    /// Forgets `id` once both directions have ended.
    fn forget_if_done(&self, id: StreamId) {
        let mut st = self.state();
        let done = st.streams.get(&id).is_some_and(|e| {
            let f = lock(&e.stream.flags);
            f.remote != Remote::Open && f.local != Local::Open
        });
        if done {
            st.streams.remove(&id);
        }
    }
}

/// A stream the peer opened, waiting in the accept queue.
struct Pending {
    headers: Headers,
    inbound: mpsc::Receiver<Bytes>,
    stream: Arc<StreamState>,
}

/// Held by the [`Session`] handle and by every stream; when the last one
/// goes, the writer gives itself [`CLOSE_TIMEOUT`] to finish.
type HandlesAlive = Arc<watch::Sender<()>>;

/// Resolves when the `watch::Sender` behind `rx` is dropped: each task
/// holds one to say it is running, and [`HandlesAlive`] is one.
async fn dropped(rx: &mut watch::Receiver<()>) {
    while rx.changed().await.is_ok() {}
}

/// A SPDY/3.1 session. See the [module docs](self).
pub struct Session {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Frame>,
    incoming: tokio::sync::Mutex<mpsc::Receiver<Pending>>,
    reader_running: watch::Receiver<()>,
    handles: HandlesAlive,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let streams = self.shared.state().streams.len();
        f.debug_struct("Session")
            .field("role", &self.shared.role)
            .field("streams", &streams)
            .field("ended", &self.shared.ended())
            .finish()
    }
}

impl Session {
    /// Serves an upgraded connection: the peer (kubectl) opens streams and
    /// we [`accept`](Self::accept) them. Must be called inside a Tokio
    /// runtime (it spawns the reader and writer tasks).
    pub fn server<T>(io: T) -> Session
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::new(io, Role::Server)
    }

    /// Drives an upgraded connection as its client: we
    /// [`open`](Self::open) streams. Streams the peer opens are refused.
    /// Must be called inside a Tokio runtime.
    pub fn client<T>(io: T) -> Session
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Self::new(io, Role::Client)
    }

    /// A session in the given role; see [`Session::server`] and
    /// [`Session::client`].
    pub fn new<T>(io: T, role: Role) -> Session
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(io);
        let shared = Arc::new(Shared {
            role,
            state: Mutex::new(State {
                streams: HashMap::new(),
                next_stream_id: role.first_id(),
                next_ping_id: role.first_id(),
                pings: HashMap::new(),
                last_peer_id: 0,
                peer_goaway: false,
                local_goaway: false,
            }),
            ended: AtomicBool::new(false),
            open_order: tokio::sync::Mutex::new(()),
        });
        let (tx, main_rx) = mpsc::channel(OUTBOUND_QUEUE_FRAMES);
        let (ctl_tx, ctl_rx) = mpsc::channel(CONTROL_QUEUE_FRAMES);
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_BACKLOG);
        let (reader_running_tx, reader_running) = watch::channel(());
        let (writer_running_tx, writer_running) = watch::channel(());
        let (handles_tx, handles_rx) = watch::channel(());

        let reader = Reader {
            shared: shared.clone(),
            decoder: FrameDecoder::new(),
            ctl: ctl_tx,
            accept: (role == Role::Server).then_some(accept_tx),
        };
        tokio::spawn(reader.run(read_half, writer_running, reader_running_tx));
        let writer = Writer {
            io: write_half,
            encoder: FrameEncoder::new(),
            main_rx,
            ctl_rx,
            shared: shared.clone(),
        };
        tokio::spawn(writer.run(reader_running.clone(), handles_rx, writer_running_tx));

        Session {
            shared,
            tx,
            incoming: tokio::sync::Mutex::new(accept_rx),
            reader_running,
            handles: Arc::new(handles_tx),
        }
    }

    /// Which end we are.
    pub fn role(&self) -> Role {
        self.shared.role
    }

    /// The next stream the peer opened, after queueing its SYN_REPLY (with
    /// no headers, as the Kubernetes servers send). `None` once the
    /// session has ended, or the peer sent GOAWAY, and the queue is empty;
    /// always `None` for a client. Cancel-safe.
    pub async fn accept(&self) -> Option<Stream> {
        // Reserve room for the reply first, so that being cancelled while
        // waiting for a stream loses nothing.
        let permit = self.tx.reserve().await.ok()?;
        let pending = self.incoming.lock().await.recv().await?;
        permit.send(Frame::SynReply {
            stream_id: pending.stream.id,
            fin: false,
            headers: Headers::new(),
        });
        Some(Stream::new(
            pending.headers,
            pending.inbound,
            pending.stream,
            self.shared.clone(),
            self.tx.clone(),
            self.handles.clone(),
        ))
    }

    /// Opens a stream with `headers` and waits (at most [`REPLY_TIMEOUT`])
    /// for the peer's SYN_REPLY. Dropping the future before then resets the
    /// stream.
    pub async fn open(&self, headers: Headers) -> Result<Stream, SessionError> {
        // Refuse headers the peer would choke on before anything is queued.
        header_block("SYN_STREAM", &headers)?;
        let (reply_tx, reply_rx) = oneshot::channel();
        let (inbound_tx, inbound_rx) = mpsc::channel(STREAM_INBOUND_CHUNKS);
        let order = self.shared.open_order.lock().await;
        let stream = {
            let mut st = self.shared.state();
            if self.shared.ended() {
                return Err(SessionError::Closed);
            }
            if st.peer_goaway {
                return Err(SessionError::GoneAway);
            }
            if st.local_goaway {
                return Err(SessionError::Closing);
            }
            if st.streams.len() >= MAX_STREAMS {
                return Err(SessionError::TooManyStreams {
                    open: st.streams.len(),
                });
            }
            let id = st.next_stream_id;
            if id > MAX_STREAM_ID {
                return Err(SessionError::StreamIdsExhausted);
            }
            st.next_stream_id = id + 2;
            let stream = Arc::new(StreamState::new(id, Remote::Open, Local::Open));
            st.streams.insert(
                id,
                Entry {
                    inbound: Some(inbound_tx),
                    stream: stream.clone(),
                    reply: Some(reply_tx),
                },
            );
            stream
        };
        let id = stream.id;
        let mut opening = Opening {
            shared: &self.shared,
            tx: &self.tx,
            id,
            syn_sent: false,
            done: false,
        };
        let syn = Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: headers.clone(),
        };
        if self.tx.send(syn).await.is_err() {
            return Err(SessionError::Closed);
        }
        opening.syn_sent = true;
        drop(order);
        match tokio::time::timeout(REPLY_TIMEOUT, reply_rx).await {
            Ok(Ok(_reply_headers)) => {}
            Ok(Err(_)) => {
                // The reader dropped our entry: a refusal or the end.
                opening.done = true;
                let peer_reset = lock(&stream.flags).peer_reset;
                return Err(match peer_reset {
                    Some(status) => SessionError::Refused { id, status },
                    None => SessionError::Closed,
                });
            }
            Err(_) => {
                return Err(SessionError::ReplyTimeout {
                    id,
                    after: REPLY_TIMEOUT,
                })
            }
        }
        opening.done = true;
        Ok(Stream::new(
            headers,
            inbound_rx,
            stream,
            self.shared.clone(),
            self.tx.clone(),
            self.handles.clone(),
        ))
    }

    /// Sends a PING and waits (at most [`PING_TIMEOUT`]) for its echo;
    /// returns the round trip, which includes time in the outbound queue.
    pub async fn ping(&self) -> Result<Duration, SessionError> {
        let (echo_tx, echo_rx) = oneshot::channel();
        let id = {
            let mut st = self.shared.state();
            if self.shared.ended() {
                return Err(SessionError::Closed);
            }
            if st.pings.len() >= MAX_PENDING_PINGS {
                return Err(SessionError::TooManyPings(st.pings.len()));
            }
            let id = st.next_ping_id;
            st.next_ping_id = next_ping_id(id);
            st.pings.insert(id, echo_tx);
            id
        };
        let _waiting = PingWait {
            shared: &self.shared,
            id,
        };
        let start = Instant::now();
        self.tx
            .send(Frame::Ping { id })
            .await
            .map_err(|_| SessionError::Closed)?;
        match tokio::time::timeout(PING_TIMEOUT, echo_rx).await {
            Ok(Ok(())) => Ok(start.elapsed()),
            Ok(Err(_)) => Err(SessionError::Closed),
            Err(_) => Err(SessionError::PingTimeout(PING_TIMEOUT)),
        }
    }

    /// Sends GOAWAY (OK): the peer should open no more streams, and from
    /// now on we accept and open none. Streams already open carry on.
    pub async fn close(&self) -> Result<(), SessionError> {
        let goaway = {
            let mut st = self.shared.state();
            if st.local_goaway {
                return Ok(());
            }
            st.local_goaway = true;
            Frame::GoAway {
                last_good_stream_id: st.last_peer_id,
                status: GoAwayStatus::OK,
            }
        };
        self.tx.send(goaway).await.map_err(|_| SessionError::Closed)
    }

    /// Resolves when the session has ended (the peer closed the connection,
    /// it failed, or it broke the protocol).
    pub async fn closed(&self) {
        let mut running = self.reader_running.clone();
        dropped(&mut running).await;
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.ended()
    }
}

/// Cleans up after [`Session::open`] if it does not finish: forgets the
/// stream and, if its SYN_STREAM went out, resets it.
struct Opening<'a> {
    shared: &'a Shared,
    tx: &'a mpsc::Sender<Frame>,
    id: StreamId,
    syn_sent: bool,
    done: bool,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.shared.forget(self.id);
        if self.syn_sent {
            // Best effort: if the queue is full, the peer keeps a stream
            // nobody uses until the session ends.
            let _ = self.tx.try_send(Frame::RstStream {
                stream_id: self.id,
                status: RstStatus::CANCEL,
            });
        }
    }
}

/// Forgets a PING when [`Session::ping`] returns or is dropped.
struct PingWait<'a> {
    shared: &'a Shared,
    id: u32,
}

impl Drop for PingWait<'_> {
    fn drop(&mut self) {
        self.shared.state().pings.remove(&self.id);
    }
}

/// Forgets the stream when both halves are gone: later frames for it are
/// ignored.
struct HandleGuard {
    shared: Arc<Shared>,
    id: StreamId,
    _handles: HandlesAlive,
}

impl Drop for HandleGuard {
    fn drop(&mut self) {
        self.shared.forget(self.id);
    }
}

/// One SPDY stream: the headers it was opened with, a receiving and a
/// sending direction. `AsyncRead` and `AsyncWrite` here act on the two
/// halves; [`Stream::split`] separates them.
pub struct Stream {
    headers: Headers,
    recv: RecvStream,
    send: SendStream,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id())
            .field("headers", &self.headers)
            .finish()
    }
}

impl Stream {
    fn new(
        headers: Headers,
        inbound: mpsc::Receiver<Bytes>,
        stream: Arc<StreamState>,
        shared: Arc<Shared>,
        tx: mpsc::Sender<Frame>,
        handles: HandlesAlive,
    ) -> Stream {
        let guard = Arc::new(HandleGuard {
            shared: shared.clone(),
            id: stream.id,
            _handles: handles,
        });
        Stream {
            headers,
            recv: RecvStream {
                inbound,
                chunk: Bytes::new(),
                stream: stream.clone(),
                _guard: guard.clone(),
            },
            send: SendStream {
                tx,
                reserve: None,
                stream,
                shared,
                _guard: guard,
            },
        }
    }

    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.recv.stream.id
    }

    /// The headers of its SYN_STREAM (the peer's for an accepted stream,
    /// ours for an opened one), e.g. `streamtype`.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Separates the two directions.
    pub fn split(self) -> (RecvStream, SendStream) {
        (self.recv, self.send)
    }

    /// Sends RST_STREAM (CANCEL): both directions end at once.
    pub async fn reset(mut self) {
        self.send.reset().await;
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.send).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.send).poll_shutdown(cx)
    }
}

/// The receiving direction of a [`Stream`]: the peer's DATA, then EOF at
/// its FIN. Errors carry a [`StreamError`]. Dropping it discards the rest
/// of the stream's inbound data.
pub struct RecvStream {
    inbound: mpsc::Receiver<Bytes>,
    /// The part of the last chunk not yet read.
    chunk: Bytes,
    stream: Arc<StreamState>,
    _guard: Arc<HandleGuard>,
}

impl fmt::Debug for RecvStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvStream")
            .field("id", &self.stream.id)
            .finish()
    }
}

impl RecvStream {
    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.stream.id
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if let Some(e) = this.stream.read_abort() {
                return Poll::Ready(Err(e.into()));
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if !this.chunk.is_empty() {
                let n = this.chunk.len().min(buf.remaining());
                buf.put_slice(&this.chunk[..n]);
                this.chunk.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(this.inbound.poll_recv(cx)) {
                Some(chunk) => this.chunk = chunk,
                None => return Poll::Ready(this.stream.read_end()),
            }
        }
    }
}

type Reserve =
    Pin<Box<dyn Future<Output = Result<mpsc::OwnedPermit<Frame>, SendError<()>>> + Send + Sync>>;

/// The sending direction of a [`Stream`]. Each write queues one DATA frame
/// of at most [`DATA_CHUNK_LEN`] bytes for the writer task, which writes
/// them in order (so `flush` has nothing to do); `shutdown` queues FIN after
/// them, and so does dropping it. Errors carry a [`StreamError`].
pub struct SendStream {
    tx: mpsc::Sender<Frame>,
    /// Waiting for room in the writer's queue.
    reserve: Option<Reserve>,
    stream: Arc<StreamState>,
    shared: Arc<Shared>,
    _guard: Arc<HandleGuard>,
}

impl fmt::Debug for SendStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendStream")
            .field("id", &self.stream.id)
            .finish()
    }
}

impl SendStream {
    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.stream.id
    }

    /// Sends RST_STREAM (CANCEL): both directions end at once, and reads of
    /// the other half fail.
    pub async fn reset(&mut self) {
        {
            let mut f = lock(&self.stream.flags);
            if f.local == Local::Reset {
                return;
            }
            f.local = Local::Reset;
            if matches!(f.remote, Remote::Open | Remote::Fin) {
                f.remote = Remote::LocalReset;
            }
        }
        self.stream.abort.notify_one();
        self.shared.forget(self.stream.id);
        let _ = self
            .tx
            .send(Frame::RstStream {
                stream_id: self.stream.id,
                status: RstStatus::CANCEL,
            })
            .await;
    }

    fn check_writable(&self) -> io::Result<()> {
        let id = self.stream.id;
        let f = lock(&self.stream.flags);
        if let Some(status) = f.peer_reset {
            return Err(StreamError::Reset { id, status }.into());
        }
        match f.local {
            Local::Fin => return Err(StreamError::Finished { id }.into()),
            Local::Reset => return Err(StreamError::LocalReset { id }.into()),
            Local::Open => {}
        }
        if self.shared.ended() {
            return Err(StreamError::SessionClosed { id }.into());
        }
        Ok(())
    }

    /// Whether a FIN would still mean something to the peer.
    fn may_send_fin(&self) -> bool {
        let f = lock(&self.stream.flags);
        f.local == Local::Open && f.peer_reset.is_none() && !self.shared.ended()
    }

    fn poll_permit(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<mpsc::OwnedPermit<Frame>>> {
        let id = self.stream.id;
        let closed = move || io::Error::from(StreamError::SessionClosed { id });
        if self.reserve.is_none() {
            match self.tx.clone().try_reserve_owned() {
                Ok(permit) => return Poll::Ready(Ok(permit)),
                Err(TrySendError::Closed(_)) => return Poll::Ready(Err(closed())),
                Err(TrySendError::Full(_)) => {}
            }
        }
        let tx = &self.tx;
        let reserve = self
            .reserve
            .get_or_insert_with(|| Box::pin(tx.clone().reserve_owned()));
        let result = ready!(reserve.as_mut().poll(cx));
        self.reserve = None;
        Poll::Ready(result.map_err(|_| closed()))
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.check_writable()?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let permit = ready!(this.poll_permit(cx))?;
        // The stream may have ended while we waited for room.
        this.check_writable()?;
        let n = buf.len().min(DATA_CHUNK_LEN);
        permit.send(Frame::Data {
            stream_id: this.stream.id,
            fin: false,
            payload: Bytes::copy_from_slice(&buf[..n]),
        });
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Frames are handed to the writer task as they are written; it
        // writes them in order without being asked.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.may_send_fin() {
            return Poll::Ready(Ok(()));
        }
        let permit = ready!(this.poll_permit(cx))?;
        {
            let mut f = lock(&this.stream.flags);
            if f.local != Local::Open {
                return Poll::Ready(Ok(()));
            }
            f.local = Local::Fin;
        }
        permit.send(fin_frame(this.stream.id));
        this.shared.forget_if_done(this.stream.id);
        Poll::Ready(Ok(()))
    }
}

fn fin_frame(stream_id: StreamId) -> Frame {
    Frame::Data {
        stream_id,
        fin: true,
        payload: Bytes::new(),
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        if !self.may_send_fin() {
            return;
        }
        lock(&self.stream.flags).local = Local::Fin;
        match self.tx.try_send(fin_frame(self.stream.id)) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(fin)) => {
                // Drop cannot wait for room; a task can. It holds a queue
                // sender, so the writer stays up until the FIN is queued.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let tx = self.tx.clone();
                    runtime.spawn(async move {
                        let _ = tx.send(fin).await;
                    });
                }
            }
        }
        self.shared.forget_if_done(self.stream.id);
    }
}

/// Why the reader task stopped.
#[derive(Debug)]
enum ReadEnd {
    /// The peer closed the connection.
    Eof,
    Io(io::Error),
    /// A frame could not be decoded.
    Protocol(FrameError),
    /// The writer task stopped (the connection failed, or every handle is
    /// gone).
    WriterStopped,
}

/// The reader task: decodes frames and routes them.
struct Reader {
    shared: Arc<Shared>,
    decoder: FrameDecoder,
    /// To the writer, for frames the reader itself sends.
    ctl: mpsc::Sender<Frame>,
    /// To [`Session::accept`]; `None` for a client, after a GOAWAY, or once
    /// the handle is gone.
    accept: Option<mpsc::Sender<Pending>>,
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(
        mut self,
        mut io: R,
        mut writer_running: watch::Receiver<()>,
        _running: watch::Sender<()>,
    ) {
        let mut buf = BytesMut::with_capacity(READ_BUF_LEN);
        let end = loop {
            match self.decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    tokio::select! {
                        () = dropped(&mut writer_running) => break ReadEnd::WriterStopped,
                        () = self.dispatch(frame) => continue,
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let last_good_stream_id = self.shared.state().last_peer_id;
                    self.control(Frame::GoAway {
                        last_good_stream_id,
                        status: GoAwayStatus::PROTOCOL_ERROR,
                    });
                    break ReadEnd::Protocol(e);
                }
            }
            if buf.capacity() - buf.len() < READ_BUF_LEN / 4 {
                buf.reserve(READ_BUF_LEN);
            }
            tokio::select! {
                () = dropped(&mut writer_running) => break ReadEnd::WriterStopped,
                read = io.read_buf(&mut buf) => match read {
                    Ok(0) => break ReadEnd::Eof,
                    Ok(_) => {}
                    Err(e) => break ReadEnd::Io(e),
                },
            }
        };
        match &end {
            ReadEnd::Protocol(e) => tracing::warn!(error = %e, "SPDY session ended: bad frame"),
            ReadEnd::Io(e) => tracing::debug!(error = %e, "SPDY session ended: read failed"),
            ReadEnd::Eof | ReadEnd::WriterStopped => {
                tracing::debug!(?end, partial_frame_bytes = buf.len(), "SPDY session ended")
            }
        }
        self.end_session();
    }

    /// Marks every stream ended (their queued data stays readable), fails
    /// waiting opens and pings, and closes the accept queue.
    fn end_session(&mut self) {
        self.accept = None;
        self.shared.ended.store(true, Ordering::Release);
        let mut st = self.shared.state();
        for (_, entry) in st.streams.drain() {
            let mut f = lock(&entry.stream.flags);
            if f.remote == Remote::Open {
                f.remote = Remote::SessionEnded;
            }
        }
        st.pings.clear();
    }

    /// Queues a frame for the writer without waiting (see
    /// [`CONTROL_QUEUE_FRAMES`]).
    fn control(&self, frame: Frame) {
        if let Err(TrySendError::Full(frame)) = self.ctl.try_send(frame) {
            tracing::warn!(
                frame = frame.kind(),
                "SPDY control queue full; frame dropped"
            );
        }
    }

    async fn dispatch(&mut self, frame: Frame) {
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                unidirectional,
                headers,
                ..
            } => {
                self.on_syn_stream(stream_id, fin, unidirectional, headers)
                    .await
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                if let Some(entry) = self.shared.state().streams.get_mut(&stream_id) {
                    // A second SYN_REPLY finds `reply` taken and is ignored.
                    if let Some(reply) = entry.reply.take() {
                        let _ = reply.send(headers);
                    }
                }
                if fin {
                    self.remote_end(stream_id, Remote::Fin);
                }
            }
            Frame::RstStream { stream_id, status } => {
                self.remote_end(stream_id, Remote::Reset(status))
            }
            Frame::Headers { stream_id, fin, .. } => {
                if fin {
                    self.remote_end(stream_id, Remote::Fin);
                }
            }
            Frame::Data {
                stream_id,
                fin,
                payload,
            } => self.on_data(stream_id, fin, payload).await,
            Frame::Ping { id } => match judge_ping(self.shared.role, id) {
                PingKind::Echo => self.control(Frame::Ping { id }),
                PingKind::Answer => {
                    if let Some(waiter) = self.shared.state().pings.remove(&id) {
                        let _ = waiter.send(());
                    }
                }
            },
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                tracing::debug!(last_good_stream_id, %status, "SPDY peer sent GOAWAY");
                self.shared.state().peer_goaway = true;
                // Streams already queued stay acceptable.
                self.accept = None;
            }
            // See "Flow control" in the module docs: spdystream neither
            // sends nor honours these.
            Frame::Settings { .. } | Frame::WindowUpdate { .. } => {
                tracing::trace!(frame = frame.kind(), "SPDY frame ignored");
            }
        }
    }

    async fn on_syn_stream(
        &mut self,
        id: StreamId,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    ) {
        let (inbound_tx, inbound_rx) = mpsc::channel(STREAM_INBOUND_CHUNKS);
        let stream = {
            let mut st = self.shared.state();
            let accepting = self.accept.is_some() && !st.peer_goaway && !st.local_goaway;
            let verdict = judge_syn_stream(
                self.shared.role,
                id,
                st.last_peer_id,
                accepting,
                st.streams.len(),
            );
            if verdict != Incoming::Refuse(RstStatus::PROTOCOL_ERROR) {
                st.last_peer_id = id;
            }
            if let Incoming::Refuse(status) = verdict {
                drop(st);
                tracing::debug!(stream_id = id, %status, "SPDY stream refused");
                self.control(Frame::RstStream {
                    stream_id: id,
                    status,
                });
                return;
            }
            let remote = if fin { Remote::Fin } else { Remote::Open };
            let local = if unidirectional {
                Local::Fin
            } else {
                Local::Open
            };
            let stream = Arc::new(StreamState::new(id, remote, local));
            st.streams.insert(
                id,
                Entry {
                    inbound: (!fin).then_some(inbound_tx),
                    stream: stream.clone(),
                    reply: None,
                },
            );
            stream
        };
        let pending = Pending {
            headers,
            inbound: inbound_rx,
            stream,
        };
        let queued = match &self.accept {
            // Waits while the backlog is full: backpressure, like DATA.
            Some(accept) => accept.send(pending).await.is_ok(),
            None => false,
        };
        if !queued {
            self.accept = None;
            self.shared.forget(id);
            self.control(Frame::RstStream {
                stream_id: id,
                status: RstStatus::REFUSED_STREAM,
            });
        }
    }

    async fn on_data(&mut self, id: StreamId, fin: bool, payload: Bytes) {
        let route = {
            let st = self.shared.state();
            st.streams
                .get(&id)
                .map(|e| (e.inbound.clone(), e.stream.clone()))
        };
        match route {
            None => tracing::trace!(
                stream_id = id,
                "DATA for a stream that is not open; ignored"
            ),
            Some((Some(inbound), stream)) => {
                // Copied into chunks so that a queued chunk never pins a
                // large frame or the read buffer.
                for chunk in payload.chunks(DATA_CHUNK_LEN) {
                    if stream.locally_reset() {
                        break;
                    }
                    let queued = tokio::select! {
                        sent = inbound.send(Bytes::copy_from_slice(chunk)) => sent.is_ok(),
                        () = stream.abort.notified() => false,
                    };
                    if !queued {
                        // The reader half is gone or reset: discard.
                        break;
                    }
                }
            }
            Some((None, _)) => {}
        }
        if fin {
            self.remote_end(id, Remote::Fin);
        }
    }

    /// The peer finished (FIN) or reset a stream.
    fn remote_end(&mut self, id: StreamId, end: Remote) {
        let mut st = self.shared.state();
        let Some(entry) = st.streams.get_mut(&id) else {
            return;
        };
        // Closing the queue wakes a waiting read.
        entry.inbound = None;
        let forget = {
            let mut f = lock(&entry.stream.flags);
            if let Remote::Reset(status) = end {
                f.peer_reset = Some(status);
            }
            // A reset after FIN leaves what was sent readable to EOF.
            if f.remote == Remote::Open {
                f.remote = end;
            }
            matches!(end, Remote::Reset(_)) || f.local != Local::Open
        };
        if forget {
            // Also drops `reply`, failing an `open` still waiting.
            st.streams.remove(&id);
        }
    }
}

/// Why the writer task stopped.
#[derive(Debug)]
enum WriteEnd {
    /// Every sender of the outbound queue is gone: end politely.
    HandlesDropped,
    /// The reader stopped: the session is over.
    ReaderStopped,
    Io(io::Error),
    /// The header compressor failed; nothing more can be sent.
    Encoder,
}

/// The writer task: encodes queued frames, in order, onto the connection.
struct Writer<W> {
    io: W,
    encoder: FrameEncoder,
    /// From the handle and the streams.
    main_rx: mpsc::Receiver<Frame>,
    /// From the reader; served first.
    ctl_rx: mpsc::Receiver<Frame>,
    shared: Arc<Shared>,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn run(
        mut self,
        mut reader_running: watch::Receiver<()>,
        mut handles: watch::Receiver<()>,
        _running: watch::Sender<()>,
    ) {
        let mut out = BytesMut::with_capacity(WRITE_BATCH_LEN);
        // Set once every handle is gone: from then on writing is bounded.
        let mut deadline: Option<Instant> = None;
        let mut ctl_open = true;
        let end = 'session: loop {
            let frame = tokio::select! {
                biased;
                frame = self.ctl_rx.recv(), if ctl_open => match frame {
                    Some(frame) => frame,
                    None => {
                        ctl_open = false;
                        continue;
                    }
                },
                () = dropped(&mut reader_running) => break WriteEnd::ReaderStopped,
                frame = self.main_rx.recv() => match frame {
                    Some(frame) => frame,
                    None => break WriteEnd::HandlesDropped,
                },
                () = dropped(&mut handles), if deadline.is_none() => {
                    deadline = Some(Instant::now() + CLOSE_TIMEOUT);
                    continue;
                }
            };
            if !self.encode(&frame, &mut out) {
                break WriteEnd::Encoder;
            }
            while out.len() < WRITE_BATCH_LEN {
                let next = match self.ctl_rx.try_recv() {
                    Ok(frame) => frame,
                    Err(_) => match self.main_rx.try_recv() {
                        Ok(frame) => frame,
                        Err(_) => break,
                    },
                };
                if !self.encode(&next, &mut out) {
                    break 'session WriteEnd::Encoder;
                }
            }
            if let Err(e) = self.write_out(&out, &mut deadline, &mut handles).await {
                break WriteEnd::Io(e);
            }
            out.clear();
        };
        match &end {
            WriteEnd::Io(e) => tracing::debug!(error = %e, "SPDY writer stopped: write failed"),
            _ => tracing::debug!(?end, "SPDY writer stopped"),
        }
        if matches!(end, WriteEnd::HandlesDropped | WriteEnd::ReaderStopped) {
            self.farewell(end, deadline).await;
        }
    }

    /// Encodes `frame` onto `out`; false if the encoder can send no more.
    fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> bool {
        match self.encoder.encode(frame, out) {
            Ok(()) => true,
            Err(e @ (FrameError::Compress(_) | FrameError::Poisoned)) => {
                tracing::error!(error = %e, "SPDY header compression failed; ending the session");
                false
            }
            Err(e) => {
                // Callers validate what they queue, so this is a bug; it
                // costs one frame.
                tracing::error!(frame = frame.kind(), error = %e, "SPDY frame cannot be encoded; dropped");
                true
            }
        }
    }

    /// Writes `out` and flushes. Without a deadline this waits as long as
    /// the peer takes to read (backpressure, and the caller's idle policy
    /// is its own); once every handle is gone it gives up at the deadline.
    async fn write_out(
        &mut self,
        out: &[u8],
        deadline: &mut Option<Instant>,
        handles: &mut watch::Receiver<()>,
    ) -> io::Result<()> {
        let io = &mut self.io;
        let write = async move {
            io.write_all(out).await?;
            io.flush().await
        };
        tokio::pin!(write);
        loop {
            match *deadline {
                Some(at) => {
                    return tokio::time::timeout_at(at, &mut write)
                        .await
                        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
                }
                None => tokio::select! {
                    result = &mut write => return result,
                    () = dropped(handles) => *deadline = Some(Instant::now() + CLOSE_TIMEOUT),
                },
            }
        }
    }

    /// The last frames: what the reader still queued (a GOAWAY after a bad
    /// frame), our GOAWAY if the handles went away first, then shutdown,
    /// all within [`CLOSE_TIMEOUT`].
    async fn farewell(&mut self, end: WriteEnd, deadline: Option<Instant>) {
        let mut out = BytesMut::new();
        while let Ok(frame) = self.ctl_rx.try_recv() {
            if !self.encode(&frame, &mut out) {
                return;
            }
        }
        if matches!(end, WriteEnd::HandlesDropped) {
            let goaway = {
                let mut st = self.shared.state();
                (!st.local_goaway).then(|| {
                    st.local_goaway = true;
                    Frame::GoAway {
                        last_good_stream_id: st.last_peer_id,
                        status: GoAwayStatus::OK,
                    }
                })
            };
            if let Some(goaway) = goaway {
                if !self.encode(&goaway, &mut out) {
                    return;
                }
            }
        }
        let deadline = deadline.unwrap_or_else(|| Instant::now() + CLOSE_TIMEOUT);
        let io = &mut self.io;
        let _ = tokio::time::timeout_at(deadline, async move {
            io.write_all(&out).await?;
            io.shutdown().await
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syn_stream_verdicts() {
        use Incoming::*;
        use Role::*;
        let protocol = Refuse(RstStatus::PROTOCOL_ERROR);
        let refused = Refuse(RstStatus::REFUSED_STREAM);
        // (role, id, last peer id, accepting, open streams, verdict)
        let cases = [
            (Server, 1, 0, true, 0, Accept),
            (Server, 3, 1, true, 1, Accept),
            (Server, 7, 1, true, 1, Accept),   // gaps are allowed
            (Server, 2, 0, true, 0, protocol), // our parity
            (Server, 3, 3, true, 0, protocol), // reused
            (Server, 1, 5, true, 0, protocol), // lower
            (Server, 5, 3, false, 0, refused), // not accepting
            (Server, 5, 3, true, MAX_STREAMS, refused),
            (Client, 2, 0, true, 0, Accept),
            (Client, 1, 0, true, 0, protocol),
            (Client, 4, 2, false, 0, refused),
        ];
        for (role, id, last, accepting, open, want) in cases {
            assert_eq!(
                judge_syn_stream(role, id, last, accepting, open),
                want,
                "{role:?} id {id} last {last} accepting {accepting} open {open}"
            );
        }
    }

    #[test]
    fn ping_verdicts() {
        assert_eq!(judge_ping(Role::Server, 1), PingKind::Echo);
        assert_eq!(judge_ping(Role::Server, 2), PingKind::Answer);
        assert_eq!(judge_ping(Role::Client, 1), PingKind::Answer);
        assert_eq!(judge_ping(Role::Client, 4), PingKind::Echo);
    }

    #[test]
    fn ping_ids_keep_parity_and_31_bits() {
        assert_eq!(next_ping_id(1), 3);
        assert_eq!(next_ping_id(2), 4);
        assert_eq!(next_ping_id(MAX_STREAM_ID), 1);
        assert_eq!(next_ping_id(MAX_STREAM_ID - 1), 2);
    }

    #[test]
    fn stream_errors_map_to_io_kinds() {
        let kind = |e: StreamError| io::Error::from(e).kind();
        let reset = StreamError::Reset {
            id: 1,
            status: RstStatus::CANCEL,
        };
        assert_eq!(kind(reset), io::ErrorKind::ConnectionReset);
        assert_eq!(
            kind(StreamError::Truncated { id: 1 }),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            kind(StreamError::Finished { id: 1 }),
            io::ErrorKind::BrokenPipe
        );
    }
}
