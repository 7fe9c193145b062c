//! The websocket handshake (RFC 6455) for the subresources that stream
//! (exec, port-forward), and the channel frames Kubernetes puts in
//! binary messages (the channel byte first).

use bytes::{BufMut, BytesMut};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_websockets::{Message, ServerBuilder, WebSocketStream};

use crate::body::{self, Body};

/// RFC 6455's key suffix.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A connection after the handshake.
pub type Upgraded = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A checked request to switch to a websocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The subprotocol chosen ("" when the client offered none and that
    /// is allowed).
    pub protocol: &'static str,
    key: String,
}

/// Why a request cannot switch to a websocket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("the request asks for no websocket upgrade")]
    NotWebsocket,
    #[error("no websocket subprotocol kubus speaks was offered; it speaks {0}")]
    NoProtocol(String),
    #[error("Sec-WebSocket-Key is missing")]
    NoKey,
}

fn header_str<B>(req: &Request<B>, name: header::HeaderName) -> &str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Whether a request asks to switch to a websocket.
pub fn wanted<B>(req: &Request<B>) -> bool {
    header_str(req, header::UPGRADE).eq_ignore_ascii_case("websocket")
}

impl Handshake {
    /// Check `req` against the subprotocols served, preferred first (an
    /// empty one: a client may offer none).
    pub fn check<B>(
        req: &Request<B>,
        protocols: &[&'static str],
    ) -> Result<Handshake, HandshakeError> {
        if !wanted(req) {
            return Err(HandshakeError::NotWebsocket);
        }
        let offered = header_str(req, header::SEC_WEBSOCKET_PROTOCOL);
        let protocol = choose_protocol(offered, protocols).ok_or_else(|| {
            HandshakeError::NoProtocol(
                protocols
                    .iter()
                    .filter(|p| !p.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })?;
        let key = header_str(req, header::SEC_WEBSOCKET_KEY)
            .trim()
            .to_string();
        if key.is_empty() {
            return Err(HandshakeError::NoKey);
        }
        Ok(Handshake { protocol, key })
    }

    /// The `101 Switching Protocols` answer.
    pub fn response(&self) -> Response<Body> {
        let mut r = Response::new(body::empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if !self.protocol.is_empty() {
            h.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(self.protocol),
            );
        }
        if let Ok(v) = HeaderValue::from_str(&accept_key(&self.key)) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        r
    }
}

/// The websocket once the connection has switched (None: it did not).
pub async fn upgraded(upgrade: hyper::upgrade::OnUpgrade) -> Option<Upgraded> {
    match upgrade.await {
        Ok(u) => Some(ServerBuilder::new().serve(TokioIo::new(u))),
        Err(e) => {
            tracing::debug!(error = %e, "the websocket upgrade failed");
            None
        }
    }
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    use base64::Engine as _;
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

/// The first of `protocols` the client offered (`offered` is a
/// `Sec-WebSocket-Protocol` header); "" matches a client that offered none.
pub fn choose_protocol(offered: &str, protocols: &[&'static str]) -> Option<&'static str> {
    let offered: Vec<&str> = offered
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    protocols
        .iter()
        .copied()
        .find(|p| offered.contains(p) || (p.is_empty() && offered.is_empty()))
}

/// A binary message of `channel` carrying `data`.
pub fn frame(channel: u8, data: &[u8]) -> Message {
    let mut b = BytesMut::with_capacity(data.len() + 1);
    b.put_u8(channel);
    b.put_slice(data);
    Message::binary(b.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_reads_as_rfc_6455_and_kubernetes_write_it() {
        // RFC 6455's example
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let served = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
        assert_eq!(
            choose_protocol("v4.channel.k8s.io, v5.channel.k8s.io", &served),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(choose_protocol("channel.k8s.io", &served), None);
        assert_eq!(choose_protocol("", &served), None);
        assert_eq!(choose_protocol("", &["v4.channel.k8s.io", ""]), Some(""));
        assert_eq!(frame(1, b"hi").as_payload().as_ref(), b"\x01hi");
    }

    #[test]
    fn a_plain_request_is_no_handshake() {
        let req = Request::builder().body(()).expect("request");
        assert_eq!(
            Handshake::check(&req, &["x"]),
            Err(HandshakeError::NotWebsocket)
        );
        let req = Request::builder()
            .header("upgrade", "websocket")
            .header("sec-websocket-protocol", "x")
            .body(())
            .expect("request");
        assert_eq!(Handshake::check(&req, &["x"]), Err(HandshakeError::NoKey));
    }
}
