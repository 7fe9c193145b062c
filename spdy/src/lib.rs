//! # kubus-spdy: SPDY/3.1 as kubectl speaks it
//!
//! kubectl up to 1.29 runs `exec`, `attach` and `port-forward` over SPDY/3.1
//! (github.com/moby/spdystream, through client-go), and containerd's CRI
//! streaming server answers the kubelet the same way. This crate speaks that
//! protocol on a connection that has already been upgraded: the HTTP
//! `Upgrade: SPDY/3.1` exchange belongs to the caller (the API gateway as a
//! server, the node agent as a client).
//!
//! It depends on tokio, bytes and flate2 only: nothing of the Kubernetes
//! API, the bus or storage, so both the gateway and the node agent can use
//! it.
//!
//! # Layout
//! - [`frame`]: the frames, the header block and its zlib contexts; pure
//!   functions over bytes.
//! - [`session`]: a [`Session`] multiplexing [`Stream`]s over one
//!   connection, with a reader task and a writer task.
//! - [`k8s`]: the header names, stream types and protocol names kubectl and
//!   the kubelet put on these streams.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo(io: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
//! use kubus_spdy::{k8s, Headers, Session};
//! use tokio::io::AsyncWriteExt;
//!
//! // Node agent side: open kubectl's streams on the CRI streaming server.
//! let session = Session::client(io);
//! let mut headers = Headers::new();
//! headers.insert(k8s::STREAM_TYPE, k8s::stream_type::STDIN);
//! let mut stdin = session.open(headers).await?;
//! stdin.write_all(b"echo hi\n").await?;
//! stdin.shutdown().await?; // DATA with FIN: the container sees EOF
//! # Ok(()) }
//! ```
//!
//! Architecture invariant: frames are encoded in the order they are
//! written and decoded in the order they are read — each direction's
//! header compression is one zlib stream for the whole session.

pub mod frame;
pub mod k8s;
pub mod session;

pub use frame::{Frame, FrameError, Framer, Headers, RstStatus, StreamId};
pub use session::{RecvStream, SendStream, Session, SessionError, Stream, StreamError};
