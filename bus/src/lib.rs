//! # kubus-bus: everything NATS
//!
//! Subjects, headers, the codec, typed request/reply and the watch client.
//! This crate knows nothing of storage or actix: it moves `kubus-api`
//! objects over NATS and nothing else.
//!
//! # Layout
//! - [`subject`]: the only module that builds subjects and header names.
//! - [`auth`]: identities on the bus, their grants, the server's
//!   accounts configuration, and who sent a request.
//! - [`connect`]: connection options: a list of servers, bounded
//!   reconnects.
//! - [`codec`]: MessagePack (named) bodies, JSON on request.
//! - [`frame`]: messages over the payload limit (Raft snapshots) as
//!   several publishes, and put back together.
//! - [`protocol`]: request, reply and event bodies.
//! - [`client`]: typed API calls over request/reply.
//! - [`watch`]: list-then-watch with gap detection.
//! - [`stream`]: a TCP connection carried over NATS (port-forward).
//! - [`session`]: an exec session's channels framed over a stream.
//! - [`backup`]: a backup file pulled from a store peer in chunks.
//! - [`trace`]: one trace context across a write's path (headers, Raft
//!   entries, change events).

pub mod auth;
pub mod backup;
pub mod client;
pub mod codec;
pub mod connect;
pub mod frame;
pub mod protocol;
pub mod session;
pub mod stream;
pub mod subject;
pub mod trace;
pub mod watch;

pub use client::{Client, ClientError, FenceCell};
pub use kubus_trace::trace_span;
pub use subject::Subjects;
