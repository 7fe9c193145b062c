//! Attaching to a container's own process (`kubectl attach`, `kubus run
//! -it`) in the process runtime: a container whose spec asks for `stdin`
//! or `tty` keeps its stdin (a pipe, or its terminal) open for sessions to
//! write to, and what it prints goes to every attached session as well as
//! to its log.
//!
//! Sessions come and go; the container runs on. With `stdinOnce`, the end
//! of the first session's stdin closes the container's (on a terminal: an
//! end-of-file character, as a user typing Ctrl-D).

use std::fmt;
use std::pin::Pin;

use bytes::Bytes;
use kubus_bus::session::{STDERR, STDOUT};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, watch};

use super::pty::Pty;
use super::runtime::{ExecProcess, RuntimeError};

/// Output chunks kept for a slow session before it misses some.
const OUTPUT_CHUNKS: usize = 256;
/// Stdin writes queued for the container.
const STDIN_QUEUE: usize = 16;
/// Bytes read at once.
const READ_BYTES: usize = 32 * 1024;
/// The in-process pipes between a session and the container's streams.
const PIPE_BYTES: usize = 64 * 1024;
/// What a terminal reads as end of input (Ctrl-D).
const EOT: u8 = 0x04;

enum Input {
    Data(Bytes),
    /// stdinOnce: the container's stdin ends.
    Close,
}

/// A running container sessions can attach to.
#[derive(Clone)]
pub struct Attachable {
    output: broadcast::Sender<(u8, Bytes)>,
    stdin: Option<mpsc::Sender<Input>>,
    stdin_once: bool,
    pty: Option<Pty>,
    exit: watch::Receiver<Option<i32>>,
}

impl fmt::Debug for Attachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachable")
            .field("stdin", &self.stdin.is_some())
            .field("stdin_once", &self.stdin_once)
            .field("tty", &self.pty.is_some())
            .finish()
    }
}

/// The runtime's side: feed what the container prints, and tell its exit.
pub struct Feed {
    pub output: broadcast::Sender<(u8, Bytes)>,
    pub exit: watch::Sender<Option<i32>>,
}

impl Attachable {
    /// An attach point for a container whose stdin is `stdin` (its pipe or
    /// its terminal), and whose terminal is `pty`.
    pub fn new(
        stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
        stdin_once: bool,
        pty: Option<Pty>,
    ) -> (Attachable, Feed) {
        let (output, _) = broadcast::channel(OUTPUT_CHUNKS);
        let (exit_tx, exit) = watch::channel(None);
        let tty = pty.is_some();
        let stdin = stdin.map(|mut w| {
            let (tx, mut rx) = mpsc::channel::<Input>(STDIN_QUEUE);
            tokio::spawn(async move {
                while let Some(input) = rx.recv().await {
                    let wrote = match input {
                        Input::Data(d) => w.write_all(&d).await.and(w.flush().await),
                        Input::Close if tty => w.write_all(&[EOT]).await,
                        Input::Close => return,
                    };
                    if wrote.is_err() {
                        return;
                    }
                }
            });
            tx
        });
        let feed = Feed {
            output: output.clone(),
            exit: exit_tx,
        };
        (
            Attachable {
                output,
                stdin,
                stdin_once,
                pty,
                exit,
            },
            feed,
        )
    }

    /// A session on the container: its output from now on, its stdin when
    /// `stdin` (and the container has one). Dropping it detaches.
    pub fn attach(&self, stdin: bool) -> Result<ExecProcess, RuntimeError> {
        if stdin && self.stdin.is_none() {
            return Err(RuntimeError::Invalid {
                reason: "AttachError",
                message: "the container was not started with stdin (spec.containers[].stdin: true)"
                    .into(),
            });
        }
        let (out_here, out_there) = tokio::io::duplex(PIPE_BYTES);
        let (err_here, err_there) = tokio::io::duplex(PIPE_BYTES);
        let mut output = self.output.subscribe();
        tokio::spawn(async move {
            let (mut out, mut err) = (out_there, err_there);
            loop {
                let wrote = match output.recv().await {
                    Ok((STDOUT, d)) => out.write_all(&d).await,
                    Ok((STDERR, d)) => err.write_all(&d).await,
                    Ok(_) => Ok(()),
                    Err(broadcast::error::RecvError::Lagged(_)) => Ok(()),
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                if wrote.is_err() {
                    return;
                }
            }
        });
        let session_stdin = match (&self.stdin, stdin) {
            (Some(tx), true) => {
                let (here, mut there) = tokio::io::duplex(PIPE_BYTES);
                let (tx, once) = (tx.clone(), self.stdin_once);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; READ_BYTES];
                    loop {
                        match there.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let d = Bytes::copy_from_slice(&buf[..n]);
                                if tx.send(Input::Data(d)).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    if once {
                        let _ = tx.send(Input::Close).await;
                    }
                });
                Some(Box::pin(here) as Pin<Box<dyn AsyncWrite + Send>>)
            }
            _ => None,
        };
        let mut exit = self.exit.clone();
        let resize = self.pty.clone();
        Ok(ExecProcess {
            stdin: session_stdin,
            stdout: Box::pin(out_here),
            stderr: self
                .pty
                .is_none()
                .then(|| Box::pin(err_here) as Pin<Box<dyn AsyncRead + Send>>),
            resize: resize.map(|p| {
                Box::new(move |w, h| {
                    let _ = p.resize(w, h);
                }) as Box<dyn Fn(u16, u16) + Send + Sync>
            }),
            exit: Box::pin(async move {
                let code = exit
                    .wait_for(Option::is_some)
                    .await
                    .map(|c| c.unwrap_or(0))
                    .map_err(|_| RuntimeError::Runtime("the container's runtime went".into()))?;
                Ok(code)
            }),
        })
    }
}

/// Read `from` in chunks until it ends: each chunk to the attached
/// sessions as `channel`, each line to the log as `stream`.
pub async fn pump<R: AsyncRead + Unpin>(
    mut from: R,
    channel: u8,
    stream: &'static str,
    output: Option<broadcast::Sender<(u8, Bytes)>>,
    log: mpsc::Sender<(&'static str, Vec<u8>)>,
    line_max: usize,
) {
    let mut buf = vec![0u8; READ_BYTES];
    let mut line = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(o) = &output {
            // no session attached: nobody to tell
            let _ = o.send((channel, Bytes::copy_from_slice(&buf[..n])));
        }
        for lines in split_lines(&mut line, &buf[..n], line_max) {
            if log.send((stream, lines)).await.is_err() {
                return;
            }
        }
    }
    if !line.is_empty() {
        let _ = log.send((stream, line)).await;
    }
}

/// Append `chunk` to the partial `line`; return the lines it completes
/// (without their newline), a line over `line_max` cut there.
pub fn split_lines(line: &mut Vec<u8>, chunk: &[u8], line_max: usize) -> Vec<Vec<u8>> {
    let mut done = Vec::new();
    for &b in chunk {
        if b == b'\n' {
            done.push(std::mem::take(line));
            continue;
        }
        line.push(b);
        if line.len() >= line_max {
            done.push(std::mem::take(line));
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_across_chunks_and_long_ones_are_cut() {
        let mut line = Vec::new();
        assert!(split_lines(&mut line, b"hel", 8).is_empty());
        assert_eq!(
            split_lines(&mut line, b"lo\nwor", 8),
            vec![b"hello".to_vec()]
        );
        assert_eq!(
            split_lines(&mut line, b"ld\n\n0123456789", 8),
            vec![b"world".to_vec(), Vec::new(), b"01234567".to_vec()]
        );
        assert_eq!(line, b"89");
    }

    #[tokio::test]
    async fn sessions_see_output_and_write_stdin_and_once_closes_it() {
        let (stdin_w, mut stdin_r) = tokio::io::duplex(1024);
        let (a, feed) = Attachable::new(Some(Box::pin(stdin_w)), true, None);
        let mut s = a.attach(true).expect("attach");
        feed.output
            .send((STDOUT, Bytes::from_static(b"out")))
            .expect("a session listens");
        let mut got = [0u8; 3];
        s.stdout.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"out");
        let mut w = s.stdin.take().expect("stdin");
        w.write_all(b"in").await.expect("write");
        w.shutdown().await.expect("close");
        drop(w);
        let mut seen = Vec::new();
        stdin_r
            .read_to_end(&mut seen)
            .await
            .expect("stdin ends with the session's");
        assert_eq!(seen, b"in");
        feed.exit.send_replace(Some(3));
        assert_eq!(s.exit.await.expect("exit"), 3);
        assert!(a.attach(false).is_ok(), "another session may attach");
    }
}
