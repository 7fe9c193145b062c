//! Response bodies: whole (JSON, text) or streamed from a bounded channel
//! (watches, followed logs). A streamed body ends when its sender goes;
//! when the client goes, hyper drops the body and with it the receiver,
//! so the sender's next send fails and it stops.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::status::Failure;

/// Every response's body.
pub type Body = BoxBody<Bytes, Infallible>;

/// Chunks a streamed body buffers before its sender waits.
pub const STREAM_CHUNKS: usize = 64;

/// A body fed by a channel.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

/// A streamed body and the sender that feeds it.
pub fn channel() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel(STREAM_CHUNKS);
    (tx, ChannelBody { rx }.boxed())
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// A response with `body` and a content type.
pub fn bytes(
    code: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON response.
pub fn json(code: StatusCode, v: &Value) -> Response<Body> {
    json_as(code, v, "application/json")
}

/// A JSON response with another JSON content type (aggregated discovery).
pub fn json_as(code: StatusCode, v: &Value, content_type: &'static str) -> Response<Body> {
    let bytes = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    self::bytes(code, content_type, bytes)
}

/// A failure's `Status`, with `Retry-After` when it has one.
pub fn failure(f: &Failure) -> Response<Body> {
    let mut r = json(f.code, &f.status);
    if let Some(s) = f.retry_after_secs {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

/// A streamed response (chunked), `content_type` each chunk.
pub fn streamed(content_type: &'static str, body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Adds a `Warning: 299 - "…"` header (kubectl prints it).
pub fn warn(r: &mut Response<Body>, text: &str) {
    let clean: String = text
        .chars()
        .filter(|c| *c != '"' && !c.is_control())
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{clean}\"")) {
        r.headers_mut().append(header::WARNING, v);
    }
}
