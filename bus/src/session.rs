//! Exec sessions: a command's stdin, stdout, stderr, terminal size and
//! exit carried as frames over one byte stream ([`crate::stream`]) between
//! the side that asked (`kubus exec -it`, the API gateway) and the pod's
//! node agent.
//!
//! A frame is its channel (one byte), its length (u32, big-endian) and its
//! data. The channels are Kubernetes' (`v5.channel.k8s.io`), so the
//! gateway maps websocket frames one to one:
//! - [`STDIN`], [`RESIZE`] and [`CLOSE`] go to the agent; a resize is the
//!   width and height as two big-endian u16; a close names the channel
//!   that ends (only stdin can).
//! - [`STDOUT`] and [`STDERR`] come back, then one [`EXIT`] frame (an
//!   [`Exit`] in JSON) and the end of the stream.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadHalf};
use tokio::sync::mpsc;

use crate::stream::Side;

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const RESIZE: u8 = 4;
pub const CLOSE: u8 = 255;

/// Most data one frame carries.
pub const FRAME_MAX_BYTES: usize = 64 * 1024;

/// How a session's command ended: its exit code, or why it could not run
/// or was cut off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Exit {
    pub fn code(code: i32) -> Exit {
        Exit {
            exit_code: Some(code),
            error: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Exit {
        Exit {
            exit_code: None,
            error: Some(message.into()),
        }
    }

    pub fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(data: &[u8]) -> Result<Exit, SessionError> {
        serde_json::from_slice(data).map_err(|e| SessionError::Malformed(format!("exit: {e}")))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("a session frame of {0} bytes is over the bound of {FRAME_MAX_BYTES}")]
    TooBig(usize),
    #[error("malformed session frame: {0}")]
    Malformed(String),
    #[error("session: {0}")]
    Io(#[from] std::io::Error),
}

/// One frame's bytes.
pub fn encode(channel: u8, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + data.len());
    b.put_u8(channel);
    b.put_u32(data.len() as u32);
    b.put_slice(data);
    b.freeze()
}

/// A resize frame's data.
pub fn resize(width: u16, height: u16) -> [u8; 4] {
    let (w, h) = (width.to_be_bytes(), height.to_be_bytes());
    [w[0], w[1], h[0], h[1]]
}

/// The width and height a resize frame carries.
pub fn parse_resize(data: &[u8]) -> Result<(u16, u16), SessionError> {
    match data {
        [w0, w1, h0, h1] => Ok((
            u16::from_be_bytes([*w0, *w1]),
            u16::from_be_bytes([*h0, *h1]),
        )),
        _ => Err(SessionError::Malformed(format!(
            "a resize is 4 bytes, not {}",
            data.len()
        ))),
    }
}

/// Write one frame, splitting data over [`FRAME_MAX_BYTES`] into several.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    channel: u8,
    data: &[u8],
) -> Result<(), SessionError> {
    if data.is_empty() {
        w.write_all(&encode(channel, data)).await?;
    }
    for part in data.chunks(FRAME_MAX_BYTES) {
        w.write_all(&encode(channel, part)).await?;
    }
    w.flush().await?;
    Ok(())
}

/// Read the next frame; None at the end of the stream (between frames).
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<(u8, Bytes)>, SessionError> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        let n = r.read(&mut head[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(SessionError::Malformed(
                "the stream ended inside a frame".into(),
            ));
        }
        got += n;
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > FRAME_MAX_BYTES {
        return Err(SessionError::TooBig(len));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).await?;
    Ok(Some((head[0], Bytes::from(data))))
}

/// Frames queued for the stream on the asking side.
const QUEUE_FRAMES: usize = 16;

/// The asking side's input to a session (cheap to clone). When every
/// clone is dropped the session ends: the agent ends the command.
#[derive(Clone)]
pub struct Input {
    tx: mpsc::Sender<(u8, Bytes)>,
}

/// What the command sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdout(Bytes),
    Stderr(Bytes),
    /// The command ended; nothing follows.
    Exit(Exit),
}

/// The asking side's output of a session.
pub struct Outputs {
    from_agent: ReadHalf<DuplexStream>,
}

impl Input {
    /// False when the session has ended.
    pub async fn stdin(&self, data: Bytes) -> bool {
        self.tx.send((STDIN, data)).await.is_ok()
    }

    /// The command's stdin ends here.
    pub async fn close_stdin(&self) -> bool {
        self.tx
            .send((CLOSE, Bytes::from_static(&[STDIN])))
            .await
            .is_ok()
    }

    /// The terminal is now `width` × `height`.
    pub async fn resize(&self, width: u16, height: u16) -> bool {
        let data = Bytes::copy_from_slice(&resize(width, height));
        self.tx.send((RESIZE, data)).await.is_ok()
    }
}

impl Outputs {
    /// The next output; None when the stream ended without an exit.
    pub async fn next(&mut self) -> Result<Option<Output>, SessionError> {
        loop {
            match read_frame(&mut self.from_agent).await? {
                None => return Ok(None),
                Some((STDOUT, d)) => return Ok(Some(Output::Stdout(d))),
                Some((STDERR, d)) => return Ok(Some(Output::Stderr(d))),
                Some((EXIT, d)) => return Ok(Some(Output::Exit(Exit::decode(&d)?))),
                Some(_) => continue,
            }
        }
    }
}

/// Carry a session over `side` (a stream opened for it): its input and
/// its output.
pub fn attach(side: Side) -> (Input, Outputs) {
    let (from_agent, mut to_agent) = tokio::io::split(side.pipe());
    let (tx, mut rx) = mpsc::channel::<(u8, Bytes)>(QUEUE_FRAMES);
    tokio::spawn(async move {
        while let Some((channel, data)) = rx.recv().await {
            if write_frame(&mut to_agent, channel, &data).await.is_err() {
                return;
            }
        }
        // every input is gone: the asking side has gone
        let _ = to_agent.shutdown().await;
    });
    (Input { tx }, Outputs { from_agent })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_big_data_splits() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        write_frame(&mut a, STDOUT, b"hello").await.expect("write");
        write_frame(&mut a, CLOSE, &[STDIN]).await.expect("write");
        write_frame(&mut a, STDERR, &vec![7u8; FRAME_MAX_BYTES + 10])
            .await
            .expect("write");
        write_frame(&mut a, STDIN, b"").await.expect("write");
        drop(a);
        let f = read_frame(&mut b).await.expect("read");
        assert_eq!(f, Some((STDOUT, Bytes::from_static(b"hello"))));
        assert_eq!(
            read_frame(&mut b).await.expect("read"),
            Some((CLOSE, Bytes::from_static(&[STDIN])))
        );
        let (ch, d) = read_frame(&mut b).await.expect("read").expect("frame");
        assert_eq!((ch, d.len()), (STDERR, FRAME_MAX_BYTES));
        let (_, d) = read_frame(&mut b).await.expect("read").expect("frame");
        assert_eq!(d.len(), 10);
        assert_eq!(
            read_frame(&mut b).await.expect("read"),
            Some((STDIN, Bytes::new()))
        );
        assert!(read_frame(&mut b).await.expect("read").is_none());
    }

    #[tokio::test]
    async fn a_cut_or_oversized_frame_is_an_error() {
        let mut cut: &[u8] = &[1, 0, 0];
        assert!(matches!(
            read_frame(&mut cut).await,
            Err(SessionError::Malformed(_))
        ));
        let mut big: &[u8] = &[1, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut big).await,
            Err(SessionError::TooBig(_))
        ));
    }

    #[test]
    fn resize_and_exit_read_back() {
        assert_eq!(parse_resize(&resize(120, 40)).expect("resize"), (120, 40));
        assert!(parse_resize(b"{}").is_err());
        assert_eq!(
            Exit::decode(&Exit::code(3).encode()).expect("exit"),
            Exit::code(3)
        );
        assert_eq!(
            Exit::decode(br#"{"error":"gone"}"#).expect("exit"),
            Exit::error("gone")
        );
    }
}
