//! `pods/{name}/exec` over a websocket, as kubectl 1.30+ and the Python
//! client speak it (`v5.channel.k8s.io`, also `v4`): every binary frame
//! starts with its channel — 0 stdin, 1 stdout, 2 stderr, 3 the command's
//! `Status` (a non-zero exit is `NonZeroExitCode` with an `ExitCode`
//! cause, which kubectl turns into its own exit code), 4 the terminal's
//! size, 255 (v5) the client closes a channel (stdin). The command runs as
//! an exec session with the pod's node agent over the bus
//! ([`kubus_bus::session`]), as `kubus exec -it` does. kubectl 1.29 and
//! older speak SPDY instead ([`crate::spdy`]), onto the same session.

use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use http::{Request, Response};
use kubus_api::error::ApiError;
use kubus_api::Kind;
use kubus_bus::protocol::ExecStreamRequest;
use kubus_bus::session::{self, Exit};
use kubus_bus::Client;
use serde_json::{json, Value};
use tokio_websockets::{CloseCode, Message};

use crate::body::Body;
use crate::query::Query;
use crate::status::{self, Failure};
use crate::websocket;

/// The channel protocols served, preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
/// v5: the client closes one of its channels (the data names which).
const CLOSE: u8 = 255;

/// What an exec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecQuery {
    pub command: Vec<String>,
    pub container: Option<String>,
    pub stdin: bool,
    pub tty: bool,
    /// Attach to the container's own process (`pods/{name}/attach`).
    pub attach: bool,
}

impl ExecQuery {
    /// An exec's query (a command is required), or an attach's (no
    /// command: the container's own process).
    pub fn parse(q: &Query, attach: bool) -> Result<ExecQuery, ApiError> {
        let command: Vec<String> = q.all("command").to_vec();
        if command.is_empty() && !attach {
            return Err(ApiError::bad_request(
                "exec needs a command (the `command` query parameter, once per word)",
            ));
        }
        if !command.is_empty() && attach {
            return Err(ApiError::bad_request(
                "attach connects to the container's own process: it takes no `command`",
            ));
        }
        Ok(ExecQuery {
            command,
            container: q.nonempty("container").map(str::to_string),
            stdin: q.flag("stdin")?,
            tty: q.flag("tty")?,
            attach,
        })
    }
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

/// Answers an exec (or, with `attach`, an attach) request: the websocket
/// handshake, then the command's output and status on their channels.
pub async fn serve<B>(
    client: &Client,
    namespace: &str,
    pod: &str,
    mut req: Request<B>,
    attach: bool,
) -> Result<Response<Body>, Failure>
where
    B: Send + 'static,
{
    if crate::spdy::wanted(&req) {
        return crate::spdy::serve_exec(client, namespace, pod, req, attach).await;
    }
    let q = Query::parse(req.uri().query());
    let eq = ExecQuery::parse(&q, attach).map_err(|e| status::from_api(&e))?;
    let handshake = websocket::Handshake::check(&req, &PROTOCOLS).map_err(|e| {
        status::from_api(&ApiError::bad_request(format!(
            "exec through the Kubernetes API needs a websocket: {e} \
             (or SPDY/3.1, as kubectl 1.29 and older speak)"
        )))
    })?;
    let (input, outputs) = open(client, namespace, pod, &eq).await?;
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Some(ws) = websocket::upgraded(upgrade).await {
            carry_websocket(ws, input, outputs, eq).await;
        }
    });
    Ok(handshake.response())
}

/// Start the command of `eq` in its pod's container, through its node
/// agent: the session's input and output.
pub async fn open(
    client: &Client,
    namespace: &str,
    pod: &str,
    eq: &ExecQuery,
) -> Result<(session::Input, session::Outputs), Failure> {
    let p = client
        .get(Kind::Pod, Some(namespace), pod)
        .await
        .map_err(|e| status::from_client(&e))?;
    let node = p
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            status::from_api(&ApiError::bad_request(format!(
                "pod {namespace}/{pod} is not scheduled to a node yet"
            )))
        })?;
    let req = ExecStreamRequest {
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        container: eq.container.clone(),
        command: eq.command.clone(),
        stdin: eq.stdin,
        tty: eq.tty,
        attach: eq.attach,
        stream: String::new(),
    };
    client
        .exec_session(node, &req)
        .await
        .map_err(|e| status::from_client(&e))
}

/// The `Status` for how a session's command ended (the error channel).
/// An attach ends well whatever the container's exit code (as the
/// kubelet's: kubectl reads that from the pod).
pub fn end_status(exit: Option<&Exit>, eq: &ExecQuery) -> Value {
    match exit {
        Some(Exit {
            exit_code: Some(_), ..
        }) if eq.attach => exit_status(0, &[]),
        Some(Exit {
            exit_code: Some(code),
            ..
        }) => exit_status(*code, &eq.command),
        Some(Exit { error: Some(e), .. }) => failure(e),
        _ => failure("the exec session ended before the command did"),
    }
}

fn failure(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
}

/// A terminal size as kubectl sends it (`{"Width":…,"Height":…}`).
pub fn parse_size(data: &[u8]) -> Option<(u16, u16)> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    let s: Size = serde_json::from_slice(data).ok()?;
    Some((s.width, s.height))
}

/// One message a client sent on the websocket, applied to the session;
/// false when the session has ended.
async fn client_frame(input: &session::Input, data: &[u8]) -> bool {
    match data.split_first() {
        Some((&STDIN, rest)) => input.stdin(Bytes::copy_from_slice(rest)).await,
        Some((&RESIZE, rest)) => match parse_size(rest) {
            Some((w, h)) => input.resize(w, h).await,
            None => true,
        },
        Some((&CLOSE, [STDIN])) => input.close_stdin().await,
        _ => true,
    }
}

/// Carry a session over a websocket until the command ends or the client
/// goes.
async fn carry_websocket<S>(
    ws: tokio_websockets::WebSocketStream<S>,
    input: session::Input,
    mut outputs: session::Outputs,
    eq: ExecQuery,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let from_client = async move {
        while let Some(Ok(m)) = stream.next().await {
            if m.is_close() {
                break;
            }
            if !client_frame(&input, m.as_payload()).await {
                break;
            }
        }
        // dropping the input ends the command
    };
    let to_client = async {
        let mut exit = None;
        while let Ok(Some(out)) = outputs.next().await {
            let f = match out {
                session::Output::Stdout(d) => websocket::frame(STDOUT, &d),
                session::Output::Stderr(d) => websocket::frame(STDERR, &d),
                session::Output::Exit(e) => {
                    exit = Some(e);
                    break;
                }
            };
            if sink.send(f).await.is_err() {
                return;
            }
        }
        let status = end_status(exit.as_ref(), &eq);
        let _ = sink
            .send(websocket::frame(
                STATUS,
                &serde_json::to_vec(&status).unwrap_or_default(),
            ))
            .await;
        let _ = sink
            .send(Message::close(Some(CloseCode::NORMAL_CLOSURE), ""))
            .await;
        let _ = sink.close().await;
    };
    tokio::select! {
        () = from_client => {}
        () = to_client => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_and_sizes_read_as_kubernetes_writes_them() {
        let s = exit_status(3, &["sh".into(), "-c".into(), "exit 3".into()]);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(
            s["details"]["causes"][0],
            json!({"reason": "ExitCode", "message": "3"})
        );
        assert_eq!(exit_status(0, &[])["status"], "Success");
        assert_eq!(parse_size(br#"{"Width":120,"Height":40}"#), Some((120, 40)));
        assert_eq!(parse_size(b"{}"), None);
    }

    #[test]
    fn an_exec_needs_a_command() {
        let q = Query::parse(Some(
            "command=sh&command=-c&command=echo%20hi&container=c&stdout=true",
        ));
        let e = ExecQuery::parse(&q, false).expect("parse");
        assert_eq!(e.command, ["sh", "-c", "echo hi"]);
        assert_eq!(e.container.as_deref(), Some("c"));
        assert!(!e.stdin && !e.tty);
        assert!(ExecQuery::parse(&Query::parse(Some("container=c")), false).is_err());
        assert!(ExecQuery::parse(&Query::parse(Some("container=c")), true).is_ok());
        assert!(ExecQuery::parse(&q, true).is_err());
    }
}
