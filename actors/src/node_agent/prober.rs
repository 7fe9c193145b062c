//! Runs one probe once: an exec through the runtime (CRI ExecSync), an HTTP
//! GET or a TCP connect to the pod's address. Thin I/O, every step bounded
//! by the probe's timeout; what the results mean is decided in
//! [`super::probe`].

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::probe::{self, Action, Probe};
use super::runtime::Runtime;

/// Most bytes of an HTTP response read (only the status line matters).
const HTTP_HEAD_MAX_BYTES: usize = 4096;

/// A probe's result: Ok, or why it failed (for the Unhealthy event).
pub type Outcome = Result<(), String>;

/// Run `p` against the container `id` (the runtime's handle) whose pod has
/// the address `pod_ip`.
pub fn run<R: Runtime>(
    runtime: &Arc<R>,
    id: &str,
    pod_ip: &str,
    p: &Probe,
) -> BoxFuture<'static, Outcome> {
    let timeout = p.timeout;
    match &p.action {
        Action::Exec { command } => {
            let exec = runtime.exec(id, command.clone(), timeout);
            Box::pin(async move {
                // the runtime bounds the command by `timeout`; this bounds
                // the runtime's answer too
                match tokio::time::timeout(timeout + Duration::from_secs(5), exec).await {
                    Err(_) => Err(format!("command timed out after {timeout:?}")),
                    Ok(Err(e)) => Err(e.to_string()),
                    Ok(Ok(out)) if out.exit_code == 0 => Ok(()),
                    Ok(Ok(out)) => {
                        let text = probe::output_message(&out.stdout, &out.stderr);
                        Err(if text.is_empty() {
                            format!("command exited with {}", out.exit_code)
                        } else {
                            text
                        })
                    }
                }
            })
        }
        Action::TcpSocket { host, port } => {
            let addr = format!("{}:{port}", host.as_deref().unwrap_or(pod_ip));
            Box::pin(async move {
                match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
                    Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
                    Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
                    Ok(Ok(_)) => Ok(()),
                }
            })
        }
        Action::HttpGet {
            host,
            port,
            path,
            headers,
        } => {
            let host = host.clone().unwrap_or_else(|| pod_ip.to_string());
            let request = probe::http_request(&host, *port, path, headers);
            let url = format!("http://{host}:{port}{path}");
            let addr = format!("{host}:{port}");
            Box::pin(async move {
                let get = async {
                    let mut s = TcpStream::connect(&addr)
                        .await
                        .map_err(|e| format!("Get {url:?}: dial tcp {addr}: {e}"))?;
                    s.write_all(request.as_bytes())
                        .await
                        .map_err(|e| format!("Get {url:?}: {e}"))?;
                    let mut head = Vec::with_capacity(256);
                    let mut buf = [0u8; 512];
                    while head.len() < HTTP_HEAD_MAX_BYTES && !head.contains(&b'\n') {
                        let n = s
                            .read(&mut buf)
                            .await
                            .map_err(|e| format!("Get {url:?}: {e}"))?;
                        if n == 0 {
                            break;
                        }
                        head.extend_from_slice(&buf[..n]);
                    }
                    match probe::parse_status_line(&head) {
                        Some(code) if probe::http_ok(code) => Ok(()),
                        Some(code) => Err(format!("HTTP probe failed with statuscode: {code}")),
                        None => Err(format!("Get {url:?}: malformed HTTP response")),
                    }
                };
                match tokio::time::timeout(timeout, get).await {
                    Err(_) => Err(format!(
                        "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                    )),
                    Ok(r) => r,
                }
            })
        }
    }
}
