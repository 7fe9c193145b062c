//! The Kubernetes API over HTTPS: a thin adapter so that unmodified
//! kubectl, client-go, kube-rs and the Python client work against kubus.
//!
//! The bus stays kubus's interface and the Raft log its only source of
//! truth: every answer comes from one bus call (or one bus watch), and the
//! gateway keeps nothing beyond one request or one watch. The decisions
//! are pure functions, each with table tests:
//!
//! - [`route`]: a request path → which object, collection or document;
//! - [`query`]: the query string → list, watch, delete and log options;
//! - [`discovery`]: `/version`, `/api`, `/apis` (legacy and aggregated v2 /
//!   v2beta1, negotiated by `Accept`), from `kubus_api::Kind`'s facts;
//! - [`openapi`]: the OpenAPI v3 documents kubectl reads before `apply`;
//!   [`openapi_v2`]: the protobuf v2 document kubectl 1.27/1.28 need too;
//! - [`table`]: `meta.k8s.io/v1` `Table`s from `kubus_api::print`, the
//!   printer `kubus get` uses;
//! - [`status`]: every error as a Kubernetes `Status` with its code;
//! - [`exec`], [`portforward`]: `pods/exec`, `pods/attach` and
//!   `pods/portforward`, over [`websocket`]s or [`spdy`], onto exec
//!   sessions and byte streams with the pod's node agent;
//! - [`pki`] and [`kubeconfig`]: the CA, certificates and kubeconfig
//!   `kubus up` writes (as k3s does).
//!
//! The I/O is in [`handlers`] (one function per verb, over
//! `kubus_bus::Client`), [`watch`] (a bus watch as a chunked stream of
//! events) and [`server`] (TLS, HTTP/1.1 and HTTP/2, limits, the client
//! certificate check).

pub mod bearer;
pub mod body;
pub mod discovery;
pub mod exec;
pub mod handlers;
pub mod kubeconfig;
pub mod metrics;
pub mod openapi;
pub mod openapi_v2;
pub mod pki;
pub mod portforward;
pub mod query;
pub mod route;
pub mod server;
pub mod spdy;
pub mod status;
pub mod table;
pub mod watch;
pub mod websocket;

use std::time::Duration;

pub use server::{Gateway, GatewayError};

/// The Kubernetes minor version kubus answers to (its types are
/// k8s-openapi's `v1_33`).
pub const KUBERNETES_MINOR: &str = "33";

/// Connections served at once; more wait in the listener's backlog.
pub const CONNECTIONS_MAX: usize = 512;
/// Requests (watches excepted) served at once; more get 429, as the
/// Kubernetes API server's max-requests-inflight.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 400;
/// Watches open at once; more get 429.
pub const WATCHES_MAX: usize = 1000;
/// The largest request body (the bus's own bound on a request).
pub const BODY_BYTES_MAX: usize = kubus_bus::codec::MAX_BODY_BYTES;
/// How long a TLS handshake may take.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a watch runs (a client asks for less with
/// `timeoutSeconds`; client-go re-watches after).
pub const WATCH_TIMEOUT_MAX: Duration = Duration::from_secs(30 * 60);
/// How often a watch that asked for bookmarks gets one.
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(10);
/// Attempts of a patch's read-modify-write when the object moved on.
pub const PATCH_ATTEMPTS: usize = 5;
/// Streams one HTTP/2 connection may carry at once.
pub const HTTP2_STREAMS_MAX: u32 = 250;
