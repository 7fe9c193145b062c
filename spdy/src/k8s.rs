//! The strings kubectl, the API server and the kubelet put on SPDY streams:
//! header names, stream types and sub-protocol names. Every such string the
//! gateway and the node agent send is taken from here.
//!
//! Header names are lower-case because that is how they travel: client-go
//! sets `streamType` and `requestID`, and the SPDY framer lower-cases them.

/// The `Upgrade` header value for SPDY/3.1.
pub const UPGRADE: &str = "SPDY/3.1";

/// The HTTP header that offers (request, once per protocol) and names
/// (response) the stream sub-protocol.
pub const PROTOCOL_VERSION_HEADER: &str = "X-Stream-Protocol-Version";

/// exec/attach with exit codes: the error stream carries a JSON
/// `metav1.Status` (kubectl ≤ 1.29 negotiates this over SPDY).
pub const EXEC_V4: &str = "v4.channel.k8s.io";
/// exec/attach with terminal resize; the error stream carries plain text.
pub const EXEC_V3: &str = "v3.channel.k8s.io";
/// exec/attach; the error stream carries plain text.
pub const EXEC_V2: &str = "v2.channel.k8s.io";
/// port-forward.
pub const PORT_FORWARD_V1: &str = "portforward.k8s.io";

/// Names the role of each stream.
pub const STREAM_TYPE: &str = "streamtype";
/// port-forward: the remote port of a stream pair.
pub const PORT: &str = "port";
/// port-forward: pairs a connection's error and data streams.
pub const REQUEST_ID: &str = "requestid";

/// Values of [`STREAM_TYPE`].
pub mod stream_type {
    /// exec: the exit status (v4: JSON `metav1.Status`); port-forward: a
    /// text error message. The server writes it, then FINs.
    pub const ERROR: &str = "error";
    /// The container's standard input (kubectl FINs it at EOF).
    pub const STDIN: &str = "stdin";
    /// The container's standard output.
    pub const STDOUT: &str = "stdout";
    /// The container's standard error (absent with a TTY).
    pub const STDERR: &str = "stderr";
    /// Terminal sizes as JSON `{"Width":..,"Height":..}` objects (v3+).
    pub const RESIZE: &str = "resize";
    /// port-forward: the forwarded bytes.
    pub const DATA: &str = "data";
}
