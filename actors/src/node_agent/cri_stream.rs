//! The streaming half of CRI exec and attach: the runtime answers `Exec`
//! and `Attach` with a URL on its streaming server; the agent asks there
//! for `Upgrade: SPDY/3.1` (as the kubelet does) and opens the streams
//! kubectl would ([`kubus_spdy`]): `error`, then `stdin`, `stdout`,
//! `stderr` (not with a TTY) and `resize` (with one).
//!
//! The error stream says how the command ended (`v4.channel.k8s.io`: a
//! `Status`, its `ExitCode` cause the exit code).

use std::pin::Pin;
use std::time::Duration;

use kubus_spdy::{k8s, Headers, Session};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::runtime::{ExecProcess, RuntimeError};

/// The bound on connecting and on the upgrade's answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of the upgrade's answer, and of the error stream.
const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Terminal sizes queued for the resize stream.
const RESIZE_QUEUE: usize = 8;

/// Which streams a session opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streams {
    pub stdin: bool,
    pub tty: bool,
}

fn failed(what: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Runtime(format!("streaming server: {what}"))
}

/// The host:port and path of an `http://` streaming URL.
pub fn split_url(url: &str) -> Result<(&str, &str), RuntimeError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| failed(format!("{url:?} is not an http:// URL")))?;
    Ok(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

/// The exit code an error stream's text means: v4's `Status` (success, or
/// `NonZeroExitCode` with an `ExitCode` cause); any other text is the
/// failure's message.
pub fn exit_code(text: &[u8]) -> Result<i32, String> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(0);
    }
    let Ok(status) = serde_json::from_slice::<Value>(text) else {
        return Err(String::from_utf8_lossy(text).into_owned());
    };
    if status["status"] == "Success" {
        return Ok(0);
    }
    let code = status["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["reason"] == "ExitCode")
        .and_then(|c| c["message"].as_str())
        .and_then(|m| m.parse::<i32>().ok());
    match code {
        Some(c) => Ok(c),
        None => Err(status["message"]
            .as_str()
            .unwrap_or("the command failed")
            .to_string()),
    }
}

/// Upgrade a connection to `url` to SPDY and open the session's streams.
pub async fn connect(url: &str, streams: Streams) -> Result<ExecProcess, RuntimeError> {
    let (host, path) = split_url(url)?;
    let mut tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(host))
        .await
        .map_err(|_| failed(format!("connecting to {host} timed out")))?
        .map_err(|e| failed(format!("connecting to {host}: {e}")))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: {}\r\n\
         {h}: {}\r\n{h}: {}\r\nContent-Length: 0\r\n\r\n",
        k8s::UPGRADE,
        k8s::EXEC_V4,
        k8s::EXEC_V3,
        h = k8s::PROTOCOL_VERSION_HEADER,
    );
    tcp.write_all(request.as_bytes()).await?;
    let head = tokio::time::timeout(CONNECT_TIMEOUT, read_head(&mut tcp))
        .await
        .map_err(|_| failed("no answer to the upgrade"))??;
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.contains(" 101 ") {
        return Err(failed(format!("the upgrade was refused: {status_line}")));
    }
    let session = Session::client(tcp);
    let open = |kind: &str| {
        let mut h = Headers::new();
        h.insert(k8s::STREAM_TYPE, kind);
        session.open(h)
    };
    let map = |e: kubus_spdy::SessionError| failed(e);
    let error = open(k8s::stream_type::ERROR).await.map_err(map)?;
    let stdin = match streams.stdin {
        true => Some(open(k8s::stream_type::STDIN).await.map_err(map)?),
        false => None,
    };
    let stdout = open(k8s::stream_type::STDOUT).await.map_err(map)?;
    let stderr = match streams.tty {
        false => Some(open(k8s::stream_type::STDERR).await.map_err(map)?),
        true => None,
    };
    let resize = match streams.tty {
        true => Some(open(k8s::stream_type::RESIZE).await.map_err(map)?),
        false => None,
    };
    let resize = resize.map(|mut r| {
        let (tx, mut rx) = mpsc::channel::<(u16, u16)>(RESIZE_QUEUE);
        tokio::spawn(async move {
            while let Some((w, h)) = rx.recv().await {
                let size = serde_json::json!({"Width": w, "Height": h}).to_string();
                if r.write_all(size.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
        Box::new(move |w, h| {
            let _ = tx.try_send((w, h));
        }) as Box<dyn Fn(u16, u16) + Send + Sync>
    });
    let (mut error_read, _error_write) = error.split();
    Ok(ExecProcess {
        stdin: stdin.map(|s| Box::pin(s) as Pin<Box<dyn AsyncWrite + Send>>),
        stdout: Box::pin(stdout),
        stderr: stderr.map(|s| Box::pin(s) as _),
        resize,
        exit: Box::pin(async move {
            // the session lives as long as the command is waited for
            let _session = session;
            // the server may reset the stream after its status: what came
            // before the reset counts
            let mut text = Vec::new();
            let read = (&mut error_read)
                .take(HEAD_BYTES_MAX as u64)
                .read_to_end(&mut text)
                .await;
            if let (Err(e), true) = (read, text.is_empty()) {
                return Err(failed(format!(
                    "the error stream ended without a status: {e}"
                )));
            }
            exit_code(&text).map_err(RuntimeError::Runtime)
        }),
    })
}

/// The upgrade's answer up to its blank line (read a byte at a time: what
/// follows is the session's).
async fn read_head(tcp: &mut TcpStream) -> Result<String, RuntimeError> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= HEAD_BYTES_MAX {
            return Err(failed("the upgrade's answer is too long"));
        }
        if tcp.read(&mut byte).await? == 0 {
            return Err(failed("the connection closed during the upgrade"));
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_exit_codes_read_as_the_streaming_server_writes_them() {
        assert_eq!(
            split_url("http://127.0.0.1:4567/exec/AbC").expect("url"),
            ("127.0.0.1:4567", "/exec/AbC")
        );
        assert!(split_url("https://x/y").is_err());
        assert_eq!(exit_code(b""), Ok(0));
        assert_eq!(exit_code(br#"{"metadata":{},"status":"Success"}"#), Ok(0));
        let failed = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(exit_code(failed), Ok(3));
        assert_eq!(
            exit_code(b"container not found"),
            Err("container not found".into())
        );
    }
}
