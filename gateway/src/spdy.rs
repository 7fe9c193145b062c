//! The streaming subresources over SPDY/3.1 ([`kubus_spdy`]), as kubectl
//! 1.29 and older speaks exec and attach, and every kubectl port-forward
//! (1.31+ tunnels it in a websocket, see [`crate::portforward`]).
//!
//! The request asks `Upgrade: SPDY/3.1` and offers sub-protocols in
//! `X-Stream-Protocol-Version`; the answer names one. Then the client opens
//! one stream per role, named by its `streamtype` header:
//! - exec/attach: `error` (the end: v4 a JSON `Status`, older plain text),
//!   `stdin`, `stdout`, `stderr` (not with a TTY), `resize` (JSON sizes,
//!   v3+). Nothing is written until every expected stream is there
//!   (kubectl reads none before it has opened them all).
//! - port-forward: per connection an `error` and a `data` stream sharing a
//!   `requestid` and naming the `port`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kubus_api::error::ApiError;
use kubus_bus::session;
use kubus_bus::Client;
use kubus_spdy::{k8s, RecvStream, SendStream, Session};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::body::{self, Body};
use crate::exec::{self, ExecQuery};
use crate::query::Query;
use crate::status::{self, Failure};

/// The exec sub-protocols served, preferred first.
pub const EXEC_PROTOCOLS: [&str; 3] = [k8s::EXEC_V4, k8s::EXEC_V3, k8s::EXEC_V2];
/// How long the client has to open the streams an exec needs (the
/// kubelet's bound).
pub const STREAMS_WAIT: Duration = Duration::from_secs(30);
/// How long the client has to close the connection after the end.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// Port-forward connections carried at once on one session.
pub const FORWARDS_MAX: usize = 64;
/// Bytes read at once.
const READ_BYTES: usize = 32 * 1024;
/// Most bytes of resize messages buffered before one parses.
const RESIZE_BYTES_MAX: usize = 4096;

/// Whether a request asks to switch to SPDY.
pub fn wanted<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(k8s::UPGRADE))
}

/// The first of `served` the client offered (`X-Stream-Protocol-Version`,
/// once per protocol or comma-separated).
pub fn choose_protocol<B>(req: &Request<B>, served: &[&'static str]) -> Option<&'static str> {
    let offered: Vec<&str> = req
        .headers()
        .get_all(k8s::PROTOCOL_VERSION_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    served.iter().copied().find(|p| offered.contains(p))
}

/// The `101 Switching Protocols` answer naming `protocol`.
pub fn response(protocol: &'static str) -> Response<Body> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(k8s::UPGRADE));
    h.insert(
        k8s::PROTOCOL_VERSION_HEADER,
        HeaderValue::from_static(protocol),
    );
    r
}

/// The session once the connection has switched (None: it did not).
async fn upgraded(upgrade: hyper::upgrade::OnUpgrade) -> Option<Session> {
    match upgrade.await {
        Ok(u) => Some(Session::server(TokioIo::new(u))),
        Err(e) => {
            tracing::debug!(error = %e, "the SPDY upgrade failed");
            None
        }
    }
}

/// Answers an exec or attach request over SPDY.
pub async fn serve_exec<B>(
    client: &Client,
    namespace: &str,
    pod: &str,
    mut req: Request<B>,
    attach: bool,
) -> Result<Response<Body>, Failure>
where
    B: Send + 'static,
{
    let q = Query::parse(req.uri().query());
    let eq = ExecQuery::parse(&q, attach).map_err(|e| status::from_api(&e))?;
    let protocol = choose_protocol(&req, &EXEC_PROTOCOLS).ok_or_else(|| {
        status::from_api(&ApiError::bad_request(format!(
            "exec over SPDY: no sub-protocol kubus speaks was offered \
             (X-Stream-Protocol-Version); it speaks {}",
            EXEC_PROTOCOLS.join(", ")
        )))
    })?;
    let wants = Wanted {
        stdin: eq.stdin,
        stdout: q.flag("stdout").unwrap_or(true),
        stderr: q.flag("stderr").unwrap_or(true) && !eq.tty,
        resize: eq.tty && protocol != k8s::EXEC_V2,
    };
    let (input, outputs) = exec::open(client, namespace, pod, &eq).await?;
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Some(session) = upgraded(upgrade).await {
            carry_exec(session, wants, protocol, input, outputs, eq).await;
        }
    });
    Ok(response(protocol))
}

/// The streams an exec expects besides `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub resize: bool,
}

#[derive(Default)]
struct ExecStreams {
    error: Option<SendStream>,
    stdin: Option<(RecvStream, SendStream)>,
    stdout: Option<SendStream>,
    stderr: Option<SendStream>,
    resize: Option<RecvStream>,
}

impl ExecStreams {
    fn complete(&self, w: Wanted) -> bool {
        self.error.is_some()
            && self.stdin.is_some() == w.stdin
            && self.stdout.is_some() == w.stdout
            && self.stderr.is_some() == w.stderr
            && self.resize.is_some() == w.resize
    }
}

/// Accept the streams the exec needs (at most [`STREAMS_WAIT`]).
async fn accept_exec_streams(session: &Session, wants: Wanted) -> Option<ExecStreams> {
    let mut s = ExecStreams::default();
    let accept = async {
        while !s.complete(wants) {
            let stream = session.accept().await?;
            let kind = stream
                .headers()
                .get(k8s::STREAM_TYPE)
                .unwrap_or_default()
                .to_string();
            let (recv, send) = stream.split();
            match kind.as_str() {
                k8s::stream_type::ERROR => s.error = Some(send),
                k8s::stream_type::STDIN => s.stdin = Some((recv, send)),
                k8s::stream_type::STDOUT => s.stdout = Some(send),
                k8s::stream_type::STDERR => s.stderr = Some(send),
                k8s::stream_type::RESIZE => s.resize = Some(recv),
                other => tracing::debug!(stream_type = other, "exec over SPDY: unknown stream"),
            }
        }
        Some(())
    };
    match tokio::time::timeout(STREAMS_WAIT, accept).await {
        Ok(Some(())) => Some(s),
        _ => None,
    }
}

/// Carry an exec session over its SPDY streams until the command ends or
/// the client goes.
async fn carry_exec(
    session: Session,
    wants: Wanted,
    protocol: &'static str,
    input: session::Input,
    mut outputs: session::Outputs,
    eq: ExecQuery,
) {
    let Some(streams) = accept_exec_streams(&session, wants).await else {
        tracing::debug!("exec over SPDY: the client did not open its streams");
        let _ = session.close().await;
        return;
    };
    let ExecStreams {
        error,
        stdin,
        mut stdout,
        mut stderr,
        resize,
    } = streams;
    let (stdin_recv, mut stdin_send) = match stdin {
        Some((r, s)) => (Some(r), Some(s)),
        None => (None, None),
    };
    let from_client = {
        let input = input.clone();
        async move {
            let stdin = async {
                if let Some(mut r) = stdin_recv {
                    let mut buf = vec![0u8; READ_BYTES];
                    loop {
                        match r.read(&mut buf).await {
                            Ok(0) => {
                                input.close_stdin().await;
                                break;
                            }
                            Ok(n) => {
                                if !input.stdin(Bytes::copy_from_slice(&buf[..n])).await {
                                    break;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
            };
            let sizes = async {
                if let Some(r) = resize {
                    read_sizes(r, &input).await;
                }
            };
            tokio::join!(stdin, sizes);
            // the client's streams ended; the command runs on until it
            // ends or the client goes
            std::future::pending::<()>().await;
        }
    };
    let to_client = async {
        let mut exit = None;
        while let Ok(Some(out)) = outputs.next().await {
            let (to, data) = match out {
                session::Output::Stdout(d) => (stdout.as_mut(), d),
                session::Output::Stderr(d) => (stderr.as_mut().or(stdout.as_mut()), d),
                session::Output::Exit(e) => {
                    exit = Some(e);
                    break;
                }
            };
            if let Some(w) = to {
                if w.write_all(&data).await.is_err() {
                    return;
                }
            }
        }
        for w in [stdout.as_mut(), stderr.as_mut(), stdin_send.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = w.shutdown().await;
        }
        if let Some(mut e) = error {
            let status = exec::end_status(exit.as_ref(), &eq);
            let text = error_text(protocol, &status);
            if !text.is_empty() {
                let _ = e.write_all(&text).await;
            }
            let _ = e.shutdown().await;
        }
        // kubectl reads the error stream to its end, then closes
        let _ = tokio::time::timeout(CLOSE_WAIT, session.closed()).await;
    };
    tokio::select! {
        () = from_client => {}
        () = to_client => {}
        () = session.closed() => {}
    }
}

/// What the error stream says at the end: v4 the `Status` as JSON; older
/// protocols only a failure's message.
pub fn error_text(protocol: &str, status: &Value) -> Vec<u8> {
    if protocol == k8s::EXEC_V4 {
        return serde_json::to_vec(status).unwrap_or_default();
    }
    if status["status"] == "Success" {
        return Vec::new();
    }
    status["message"]
        .as_str()
        .unwrap_or("the command failed")
        .as_bytes()
        .to_vec()
}

/// Read the resize stream's JSON sizes, one after another, into the
/// session.
async fn read_sizes<R: AsyncRead + Unpin>(mut r: R, input: &session::Input) {
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 512];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
        let (sizes, used) = parse_sizes(&pending);
        pending.drain(..used);
        for (w, h) in sizes {
            if !input.resize(w, h).await {
                return;
            }
        }
        if pending.len() > RESIZE_BYTES_MAX {
            return;
        }
    }
}

/// The whole `{"Width":…,"Height":…}` objects at the start of `data` and
/// how many bytes they took (a partial one waits for more).
pub fn parse_sizes(data: &[u8]) -> (Vec<(u16, u16)>, usize) {
    let mut sizes = Vec::new();
    let mut it = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    let mut used = 0;
    loop {
        match it.next() {
            Some(Ok(v)) => {
                used = it.byte_offset();
                let w = v["Width"].as_u64().and_then(|w| u16::try_from(w).ok());
                let h = v["Height"].as_u64().and_then(|h| u16::try_from(h).ok());
                if let (Some(w), Some(h)) = (w, h) {
                    sizes.push((w, h));
                }
            }
            Some(Err(e)) if e.is_eof() => break,
            // garbage: drop what there is
            Some(Err(_)) => return (sizes, data.len()),
            None => break,
        }
    }
    (sizes, used)
}

/// Answers a port-forward request over SPDY.
pub async fn serve_port_forward<B>(
    client: &Client,
    namespace: &str,
    pod: &str,
    mut req: Request<B>,
) -> Result<Response<Body>, Failure>
where
    B: Send + 'static,
{
    let protocol = choose_protocol(&req, &[k8s::PORT_FORWARD_V1]).ok_or_else(|| {
        status::from_api(&ApiError::bad_request(format!(
            "port-forward over SPDY: the client must offer {} (X-Stream-Protocol-Version)",
            k8s::PORT_FORWARD_V1
        )))
    })?;
    // the pod must be there before the switch
    crate::portforward::node_of(client, namespace, pod).await?;
    let upgrade = hyper::upgrade::on(&mut req);
    let (client, namespace, pod) = (client.clone(), namespace.to_string(), pod.to_string());
    tokio::spawn(async move {
        if let Some(session) = upgraded(upgrade).await {
            carry_port_forward(session, client, namespace, pod).await;
        }
    });
    Ok(response(protocol))
}

/// Carry each connection kubectl opens on `session` to the pod, until the
/// session ends.
pub async fn carry_port_forward(session: Session, client: Client, namespace: String, pod: String) {
    let node = match crate::portforward::node_of(&client, &namespace, &pod).await {
        Ok(n) => n,
        Err(_) => {
            let _ = session.close().await;
            return;
        }
    };
    // each connection's error stream, until its data stream comes
    let mut waiting: HashMap<String, SendStream> = HashMap::new();
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(FORWARDS_MAX));
    while let Some(stream) = session.accept().await {
        let h = stream.headers();
        let kind = h.get(k8s::STREAM_TYPE).unwrap_or_default().to_string();
        let id = h.get(k8s::REQUEST_ID).unwrap_or_default().to_string();
        let port = h.get(k8s::PORT).and_then(|p| p.parse::<u16>().ok());
        let (recv, send) = stream.split();
        match kind.as_str() {
            k8s::stream_type::ERROR => {
                if waiting.len() >= FORWARDS_MAX {
                    continue;
                }
                waiting.insert(id, send);
            }
            k8s::stream_type::DATA => {
                let Some(error) = waiting.remove(&id) else {
                    tracing::debug!(request = %id, "port-forward: a data stream without its error stream");
                    continue;
                };
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    let mut error = error;
                    let _ = error
                        .write_all(format!("at most {FORWARDS_MAX} connections at once").as_bytes())
                        .await;
                    let _ = error.shutdown().await;
                    continue;
                };
                let (client, node, namespace, pod) =
                    (client.clone(), node.clone(), namespace.clone(), pod.clone());
                tokio::spawn(async move {
                    forward(&client, &node, &namespace, &pod, port, (recv, send), error).await;
                    drop(permit);
                });
            }
            other => tracing::debug!(
                stream_type = other,
                "port-forward over SPDY: unknown stream"
            ),
        }
    }
}

/// One forwarded connection: the data stream to the pod's port; a failure
/// on the error stream; the error stream ends with the connection.
async fn forward(
    client: &Client,
    node: &str,
    namespace: &str,
    pod: &str,
    port: Option<u16>,
    (mut from_client, mut to_client): (RecvStream, SendStream),
    mut error: SendStream,
) {
    let conn = match port {
        None => Err(ApiError::bad_request(
            "port-forward: the stream names no port (its `port` header)",
        )),
        Some(port) => crate::portforward::connect(client, node, namespace, pod, port).await,
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            let text = format!(
                "error forwarding port {} to pod {namespace}/{pod}: {}",
                port.unwrap_or(0),
                e.message
            );
            let _ = error.write_all(text.as_bytes()).await;
            let _ = error.shutdown().await;
            return;
        }
    };
    let (mut pod_read, mut pod_write) = tokio::io::split(conn);
    let up = async {
        let _ = tokio::io::copy(&mut from_client, &mut pod_write).await;
        let _ = pod_write.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut pod_read, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    // the connection ends with the pod's side (kubectl closes its local
    // connection once the error stream ends); the client's end only ends
    // what goes to the pod
    let (mut up, mut down) = (Box::pin(up), Box::pin(down));
    tokio::select! {
        () = &mut down => {}
        () = &mut up => down.await,
    }
    let _ = error.shutdown().await;
}

/// Bytes both ways between a websocket's binary messages and a byte pipe
/// (kubectl 1.31+ tunnels its SPDY connection in a websocket).
pub fn tunnel(ws: crate::websocket::Upgraded) -> tokio::io::DuplexStream {
    use futures::{SinkExt as _, StreamExt as _};
    let (here, there) = tokio::io::duplex(256 * 1024);
    let (mut read, mut write) = tokio::io::split(there);
    let (mut sink, mut stream) = ws.split();
    tokio::spawn(async move {
        let down = async {
            let mut buf = vec![0u8; READ_BYTES];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let m =
                            tokio_websockets::Message::binary(Bytes::copy_from_slice(&buf[..n]));
                        if sink.send(m).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = sink.close().await;
        };
        let up = async {
            while let Some(Ok(m)) = stream.next().await {
                if m.is_close() {
                    break;
                }
                if write.write_all(m.as_payload()).await.is_err() {
                    return;
                }
            }
            let _ = write.shutdown().await;
        };
        tokio::select! {
            () = down => {}
            () = up => {}
        }
    });
    here
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_they_come() {
        let (s, used) = parse_sizes(br#"{"Width":80,"Height":24}{"Width":100,"He"#);
        assert_eq!(s, [(80, 24)]);
        assert_eq!(used, 24);
        let (s, used) = parse_sizes(b"");
        assert!(s.is_empty() && used == 0);
        let (s, used) = parse_sizes(b"garbage");
        assert!(s.is_empty() && used == 7);
    }

    #[test]
    fn protocols_are_chosen_from_what_the_client_offers() {
        let req = Request::builder()
            .header("upgrade", "SPDY/3.1")
            .header("x-stream-protocol-version", "v4.channel.k8s.io")
            .header("x-stream-protocol-version", "v3.channel.k8s.io")
            .body(())
            .expect("request");
        assert!(wanted(&req));
        assert_eq!(choose_protocol(&req, &EXEC_PROTOCOLS), Some(k8s::EXEC_V4));
        assert_eq!(choose_protocol(&req, &[k8s::PORT_FORWARD_V1]), None);
        let ok = json_status("Success", "");
        assert_eq!(error_text(k8s::EXEC_V3, &ok), b"");
        let bad = json_status("Failure", "boom");
        assert_eq!(error_text(k8s::EXEC_V3, &bad), b"boom");
        assert!(error_text(k8s::EXEC_V4, &bad).starts_with(b"{"));
    }

    fn json_status(status: &str, message: &str) -> Value {
        serde_json::json!({"status": status, "message": message})
    }
}
