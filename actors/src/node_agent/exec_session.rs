//! An exec session on the agent's side: a command started with its streams
//! open ([`ExecProcess`]) carried as [`kubus_bus::session`] frames over a
//! byte stream ([`kubus_bus::stream`]) to whoever asked (`kubus exec -it`,
//! the API gateway).
//!
//! Stdin frames are written to the command, a close frame closes its stdin,
//! resize frames size its terminal. Its stdout and stderr go back as they
//! come; when it exits (and its output has drained, at most
//! [`DRAIN_MAX`]), one exit frame, then the end of the stream. When the
//! asking side goes (its direction of the stream ends), the command is
//! ended: dropping the process kills it.

use std::time::Duration;

use bytes::Bytes;
use kubus_bus::session::{self, Exit};
use kubus_bus::stream::Side;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::runtime::ExecProcess;

/// How long output may still drain after the command exits (what it
/// started may hold its terminal or pipes open).
pub const DRAIN_MAX: Duration = Duration::from_secs(2);
/// Bytes read from the command's output at once.
const READ_BYTES: usize = 32 * 1024;
/// Frames queued for the stream.
const QUEUE_FRAMES: usize = 16;

/// Carry `process` over `side` until it exits or the asking side goes.
pub async fn carry(process: ExecProcess, side: Side) {
    let (mut from_client, mut to_client) = tokio::io::split(side.pipe());
    let ExecProcess {
        mut stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = process;

    let (tx, mut rx) = mpsc::channel::<(u8, Bytes)>(QUEUE_FRAMES);
    let writer = tokio::spawn(async move {
        while let Some((channel, data)) = rx.recv().await {
            if session::write_frame(&mut to_client, channel, &data)
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = to_client.shutdown().await;
    });

    let input = async {
        loop {
            match session::read_frame(&mut from_client).await {
                Ok(Some((session::STDIN, data))) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&data).await.and(w.flush().await).is_err() {
                            // the command closed its stdin: later input has nowhere to go
                            stdin = None;
                        }
                    }
                }
                Ok(Some((session::CLOSE, data))) if data.first() == Some(&session::STDIN) => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                Ok(Some((session::RESIZE, data))) => {
                    if let (Some(resize), Ok((w, h))) = (&resize, session::parse_resize(&data)) {
                        resize(w, h);
                    }
                }
                Ok(Some((channel, _))) => debug!(channel, "exec session: unknown channel"),
                // the asking side went (or broke the framing): end the command
                Ok(None) | Err(_) => return,
            }
        }
    };

    let output = async move {
        let outputs = async {
            tokio::join!(
                pump(stdout, session::STDOUT, tx.clone()),
                pump_optional(stderr, session::STDERR, tx.clone())
            )
        };
        tokio::pin!(outputs);
        let mut exit = exit;
        let (code, drained) = tokio::select! {
            code = &mut exit => (code, false),
            _ = &mut outputs => (exit.await, true),
        };
        if !drained {
            let _ = tokio::time::timeout(DRAIN_MAX, outputs).await;
        }
        let _ = tx
            .send((session::EXIT, exit_frame(code.map_err(|e| e.to_string()))))
            .await;
    };

    // whichever ends first ends the other: the command (dropped, so
    // killed) or the asking side's input
    tokio::select! {
        () = input => {}
        () = output => {}
    }
    // the stream itself ends when the asking side closes its direction
    // (at most the stream's idle bound later)
    let _ = writer.await;
}

/// Send what `from` yields as frames of `channel` until it ends.
async fn pump(
    mut from: std::pin::Pin<Box<dyn AsyncRead + Send>>,
    channel: u8,
    tx: mpsc::Sender<(u8, Bytes)>,
) {
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx
                    .send((channel, Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

async fn pump_optional(
    from: Option<std::pin::Pin<Box<dyn AsyncRead + Send>>>,
    channel: u8,
    tx: mpsc::Sender<(u8, Bytes)>,
) {
    if let Some(from) = from {
        pump(from, channel, tx).await;
    }
}

/// The exit frame's data for how the command ended.
pub fn exit_frame(code: Result<i32, String>) -> Bytes {
    match code {
        Ok(code) => Exit::code(code).encode(),
        Err(e) => Exit::error(e).encode(),
    }
}
