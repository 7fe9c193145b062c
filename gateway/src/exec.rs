//! `pods/{name}/exec` over a websocket, as kubectl 1.30+ and the Python
//! client speak it (`v5.channel.k8s.io`, also `v4`): every binary frame
//! starts with its channel — 1 stdout, 2 stderr, 3 the command's `Status`
//! (a non-zero exit is `NonZeroExitCode` with an `ExitCode` cause, which
//! kubectl turns into its own exit code). The command runs through the
//! pod's node agent over the bus (`Client::exec`), as `kubus exec` does.
//!
//! Not yet: stdin and TTYs (`kubectl exec -i/-t`), and SPDY (kubectl
//! 1.29 and older): both are refused with a `Status` naming what works.

use bytes::{BufMut, BytesMut};
use futures::SinkExt as _;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kubus_api::error::ApiError;
use kubus_api::Kind;
use kubus_bus::protocol::ExecRequest;
use kubus_bus::Client;
use serde_json::{json, Value};
use tokio_websockets::{CloseCode, Message, ServerBuilder};

use crate::body::{self, Body};
use crate::query::Query;
use crate::status::{self, Failure};

/// The channel protocols served, preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// RFC 6455's key suffix.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;

/// What an exec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecQuery {
    pub command: Vec<String>,
    pub container: Option<String>,
    pub stdin: bool,
    pub tty: bool,
}

impl ExecQuery {
    pub fn parse(q: &Query) -> Result<ExecQuery, ApiError> {
        let command: Vec<String> = q.all("command").to_vec();
        if command.is_empty() {
            return Err(ApiError::bad_request(
                "exec needs a command (the `command` query parameter, once per word)",
            ));
        }
        Ok(ExecQuery {
            command,
            container: q.nonempty("container").map(str::to_string),
            stdin: q.flag("stdin")?,
            tty: q.flag("tty")?,
        })
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

/// The first protocol both sides speak, from a `Sec-WebSocket-Protocol`
/// header.
pub fn choose_protocol(offered: &str) -> Option<&'static str> {
    let offered: Vec<&str> = offered.split(',').map(str::trim).collect();
    PROTOCOLS.into_iter().find(|p| offered.contains(p))
}

/// The `Status` a finished command's exit code makes (channel 3).
pub fn exit_status(code: i32, command: &[String]) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut b = BytesMut::with_capacity(data.len() + 1);
    b.put_u8(channel);
    b.put_slice(data);
    Message::binary(b.freeze())
}

fn header_str<B>(req: &Request<B>, name: header::HeaderName) -> &str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Answers an exec request: the websocket handshake, then the command's
/// output and status on their channels.
pub async fn serve<B>(
    client: &Client,
    namespace: &str,
    pod: &str,
    mut req: Request<B>,
) -> Result<Response<Body>, Failure>
where
    B: Send + 'static,
{
    let api = |e: ApiError| status::from_api(&e);
    let q = Query::parse(req.uri().query());
    let wants_websocket = header_str(&req, header::UPGRADE).eq_ignore_ascii_case("websocket");
    if !wants_websocket {
        return Err(api(ApiError::bad_request(
            "exec through the Kubernetes API needs a websocket (v5.channel.k8s.io): \
             kubectl 1.30 or newer; SPDY (kubectl 1.29 and older) is not supported — \
             use `kubus exec POD -- COMMAND`",
        )));
    }
    let eq = ExecQuery::parse(&q).map_err(api)?;
    if eq.stdin || eq.tty {
        return Err(api(ApiError::bad_request(
            "interactive exec (stdin, -i/-t) is not supported through the Kubernetes API yet; \
             run the command without -i/-t, or use `kubus exec POD -- COMMAND`",
        )));
    }
    let protocol =
        choose_protocol(header_str(&req, header::SEC_WEBSOCKET_PROTOCOL)).ok_or_else(|| {
            api(ApiError::bad_request(format!(
                "no websocket subprotocol kubus speaks was offered; it speaks {}",
                PROTOCOLS.join(", ")
            )))
        })?;
    let key = header_str(&req, header::SEC_WEBSOCKET_KEY).to_string();
    if key.is_empty() {
        return Err(api(ApiError::bad_request("Sec-WebSocket-Key is missing")));
    }
    let p = client
        .get(Kind::Pod, Some(namespace), pod)
        .await
        .map_err(|e| status::from_client(&e))?;
    let node = p
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            api(ApiError::bad_request(format!(
                "pod {namespace}/{pod} is not scheduled to a node yet"
            )))
        })?
        .to_string();
    let exec = ExecRequest {
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        container: eq.container.clone(),
        command: eq.command.clone(),
        timeout_secs: None,
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let client = client.clone();
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "exec: the websocket upgrade failed");
                return;
            }
        };
        let mut ws = ServerBuilder::new().serve(TokioIo::new(upgraded));
        let frames = match client.exec(&node, &exec).await {
            Ok(out) => vec![
                frame(STDOUT, out.stdout.as_bytes()),
                frame(STDERR, out.stderr.as_bytes()),
                frame(
                    STATUS,
                    &serde_json::to_vec(&exit_status(out.exit_code, &exec.command))
                        .unwrap_or_default(),
                ),
            ],
            Err(e) => {
                let f = status::from_client(&e);
                vec![frame(
                    STATUS,
                    &serde_json::to_vec(&f.status).unwrap_or_default(),
                )]
            }
        };
        for f in frames {
            if f.as_payload().len() > 1 && ws.send(f).await.is_err() {
                return;
            }
        }
        let _ = ws
            .send(Message::close(Some(CloseCode::NORMAL_CLOSURE), ""))
            .await;
        let _ = ws.close().await;
    });
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol),
    );
    if let Ok(v) = HeaderValue::from_str(&accept_key(&key)) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(r)
}

/// A frame's bytes, for tests.
#[cfg(test)]
fn payload(m: &Message) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(m.as_payload())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_and_the_status_read_as_kubernetes_writes_them() {
        // RFC 6455's example
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            choose_protocol("v4.channel.k8s.io, v5.channel.k8s.io"),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(choose_protocol("channel.k8s.io"), None);
        let s = exit_status(3, &["sh".into(), "-c".into(), "exit 3".into()]);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(
            s["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        assert_eq!(exit_status(0, &[])["status"], "Success");
        assert_eq!(payload(&frame(STDOUT, b"hi")).as_ref(), b"\x01hi");
    }

    #[test]
    fn an_exec_needs_a_command() {
        let q = Query::parse(Some(
            "command=sh&command=-c&command=echo%20hi&container=c&stdout=true",
        ));
        let e = ExecQuery::parse(&q).expect("parse");
        assert_eq!(e.command, ["sh", "-c", "echo hi"]);
        assert_eq!(e.container.as_deref(), Some("c"));
        assert!(!e.stdin && !e.tty);
        assert!(ExecQuery::parse(&Query::parse(Some("container=c"))).is_err());
    }
}
