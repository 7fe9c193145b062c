//! `kubus exec -i/-t`: a command's stdin, stdout, stderr and terminal
//! carried as an exec session ([`kubus_bus::session`]) with the pod's node
//! agent, as `kubectl exec -it` does through the API server.
//!
//! With `-t` and a terminal on our stdin, the terminal is put in raw mode
//! for the session (restored after, whatever happens) and its size is sent
//! at the start and whenever it changes (SIGWINCH).

use std::io::Write as _;
use std::os::fd::AsFd;

use anyhow::Context as _;
use bytes::Bytes;
use kubus_bus::protocol::ExecStreamRequest;
use kubus_bus::session::{Exit, Output};
use kubus_bus::Client;
use rustix::termios::{self, OptionalActions, Termios};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// Bytes read from our stdin at once.
const READ_BYTES: usize = 16 * 1024;

/// Puts our terminal back as it was when dropped.
struct RawMode(Termios);

impl RawMode {
    fn enter() -> std::io::Result<RawMode> {
        let stdin = std::io::stdin();
        let before = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = before.clone();
        raw.make_raw();
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)?;
        Ok(RawMode(before))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.0);
    }
}

/// Our terminal's width and height, if stdout is one.
fn terminal_size() -> Option<(u16, u16)> {
    let size = termios::tcgetwinsize(std::io::stdout().as_fd()).ok()?;
    (size.ws_col > 0 && size.ws_row > 0).then_some((size.ws_col, size.ws_row))
}

/// Run `req` on `node` as a session; returns the command's exit code.
pub async fn run(client: &Client, node: &str, mut req: ExecStreamRequest) -> anyhow::Result<i32> {
    if req.tty && !termios::isatty(std::io::stdin().as_fd()) {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
        req.tty = false;
    }
    let (input, mut outputs) = client
        .exec_session(node, &req)
        .await
        .with_context(|| format!("exec in pod {}/{}", req.namespace, req.pod))?;
    let raw = if req.tty {
        Some(RawMode::enter().context("putting the terminal in raw mode")?)
    } else {
        None
    };
    if req.tty {
        if let Some((w, h)) = terminal_size() {
            input.resize(w, h).await;
        }
        let input = input.clone();
        let mut winch =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some((w, h)) = terminal_size() {
                    if !input.resize(w, h).await {
                        return;
                    }
                }
            }
        });
    }
    if req.stdin {
        let input = input.clone();
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; READ_BYTES];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if !input.stdin(Bytes::copy_from_slice(&buf[..n])).await {
                            return;
                        }
                    }
                }
            }
            input.close_stdin().await;
        });
    }

    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut exit = None;
    while let Some(out) = outputs.next().await.context("exec session")? {
        match out {
            Output::Stdout(data) => {
                stdout.write_all(&data).await?;
                stdout.flush().await?;
            }
            Output::Stderr(data) => {
                stderr.write_all(&data).await?;
                stderr.flush().await?;
            }
            Output::Exit(e) => {
                exit = Some(e);
                break;
            }
        }
    }
    drop(raw);
    drop(input);
    let _ = std::io::stdout().flush();
    match exit {
        Some(Exit {
            exit_code: Some(code),
            ..
        }) => Ok(code),
        Some(Exit { error: Some(e), .. }) => {
            anyhow::bail!("exec in pod {}/{}: {e}", req.namespace, req.pod)
        }
        _ => anyhow::bail!(
            "exec in pod {}/{}: the session ended before the command did",
            req.namespace,
            req.pod
        ),
    }
}

/// How often `kubus run -it` looks whether its pod runs.
const RUNNING_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// `kubus run -i/-t`: once the pod `created` runs, attach to its container
/// (kubectl's `run -it`); with `--rm`, delete the pod after.
pub async fn run_attached(
    client: &Client,
    created: &serde_json::Value,
    args: &crate::cli::RunArgs,
) -> anyhow::Result<()> {
    use kubus_api::{meta, Kind, ObjectRef};
    let namespace = meta::namespace(created).unwrap_or("default").to_string();
    let name = meta::name(created).unwrap_or_default().to_string();
    let timeout = crate::wait::parse_duration(&args.pod_running_timeout)
        .map_err(|e| anyhow::anyhow!("--pod-running-timeout: {e}"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let node = loop {
        let pod = client.get(Kind::Pod, Some(&namespace), &name).await?;
        let phase = pod
            .pointer("/status/phase")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("Pending");
        match phase {
            "Running" => {
                if let Some(n) = pod.pointer("/spec/nodeName").and_then(|n| n.as_str()) {
                    break n.to_string();
                }
            }
            "Succeeded" | "Failed" => anyhow::bail!(
                "pod {namespace}/{name} ended ({phase}) before it could be attached to; \
                 see `kubus logs {name}`"
            ),
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "pod {namespace}/{name} did not run within {} (phase {phase}); \
                 see `kubus describe pod {name}`",
                args.pod_running_timeout
            );
        }
        tokio::time::sleep(RUNNING_POLL).await;
    };
    eprintln!("If you don't see a command prompt, try pressing enter.");
    let req = ExecStreamRequest {
        namespace: namespace.clone(),
        pod: name.clone(),
        container: None,
        command: Vec::new(),
        stdin: args.stdin,
        tty: args.tty,
        attach: true,
        stream: String::new(),
    };
    let code = match run(client, &node, req).await {
        // as kubectl: the container's own exit code, from its status
        Ok(session) => Ok(container_exit(client, &namespace, &name)
            .await
            .unwrap_or(session)),
        Err(e) => Err(e),
    };
    if args.rm {
        client
            .delete(&ObjectRef::new(Kind::Pod, Some(&namespace), &name), None)
            .await?;
        eprintln!("pod \"{name}\" deleted");
    }
    exit_with(code?)
}

/// How long `kubus run -it` waits for its container's exit to show in
/// the pod's status.
const EXIT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The exit code of the pod's first container once its status shows it
/// ended (now, or in its last run); None if it does not within
/// [`EXIT_WAIT`].
async fn container_exit(client: &Client, namespace: &str, name: &str) -> Option<i32> {
    let deadline = tokio::time::Instant::now() + EXIT_WAIT;
    loop {
        if let Ok(pod) = client
            .get(kubus_api::Kind::Pod, Some(namespace), name)
            .await
        {
            let s = pod.pointer("/status/containerStatuses/0");
            let code = s
                .and_then(|s| {
                    s.pointer("/state/terminated/exitCode")
                        .or_else(|| s.pointer("/lastState/terminated/exitCode"))
                })
                .and_then(serde_json::Value::as_i64);
            if let Some(c) = code {
                return i32::try_from(c).ok();
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(RUNNING_POLL).await;
    }
}

/// End the CLI with a session's exit code, at once: a read of our stdin
/// may still be waiting (on a terminal nobody types into), and the
/// runtime would wait for it.
pub fn exit_with(code: i32) -> ! {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(if code == 0 { 0 } else { code.clamp(1, 255) })
}
