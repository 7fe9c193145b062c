//! Frames: how one message larger than the NATS payload limit (a Raft
//! snapshot) crosses the bus as several publishes, and is put back
//! together on the other side.
//!
//! Every frame is a fixed header and a slice of the message:
//!
//! ```text
//! "KF" | version u8 | 0 u8 | from u64 | message u64 | chunk u32 | chunks u32 | bytes…
//! ```
//!
//! (big-endian). `from` is the sending peer, `message` its sequence number
//! for the message, `chunk` counts from 0 to `chunks - 1`. A message that
//! fits in one frame is one frame with `chunks == 1` and is never buffered.
//!
//! NATS delivers one publisher's messages to one subscriber in order, so
//! the [`Reassembler`] accepts only the next chunk it expects: a gap (a
//! dropped frame, a restarted sender) drops that message — the sender's
//! protocol retransmits (Raft re-sends appends, and a snapshot it was
//! never told arrived). What it buffers is bounded in messages, bytes and
//! time.
//!
//! Pure: no NATS, no clock (callers pass `now`), no knowledge of Raft.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The header's length in bytes.
pub const HEADER_BYTES: usize = 28;
const MAGIC: &[u8; 2] = b"KF";
const VERSION: u8 = 1;

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than a header, or not a frame.
    #[error("not a frame ({0})")]
    Malformed(&'static str),
    /// A version this build does not read.
    #[error("frame version {0} is not supported")]
    Version(u8),
    /// `chunk >= chunks`, or `chunks == 0`.
    #[error("chunk {chunk} of {chunks} is impossible")]
    BadChunk { chunk: u32, chunks: u32 },
    /// The message would exceed [`Limits::message_bytes_max`].
    #[error("a {bytes}-byte message is over the {max}-byte limit")]
    TooLarge { bytes: usize, max: usize },
    /// A chunk arrived out of order; the partial message was dropped.
    #[error("chunk {got} arrived while chunk {expected} was expected; message dropped")]
    OutOfOrder { expected: u32, got: u32 },
}

/// One frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub from: u64,
    pub message: u64,
    pub chunk: u32,
    pub chunks: u32,
}

impl Header {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(0);
        out.extend_from_slice(&self.from.to_be_bytes());
        out.extend_from_slice(&self.message.to_be_bytes());
        out.extend_from_slice(&self.chunk.to_be_bytes());
        out.extend_from_slice(&self.chunks.to_be_bytes());
    }

    /// Reads the header of `frame`; returns it and the frame's payload.
    pub fn parse(frame: &[u8]) -> Result<(Header, &[u8]), FrameError> {
        if frame.len() < HEADER_BYTES {
            return Err(FrameError::Malformed("shorter than a header"));
        }
        let (head, body) = frame.split_at(HEADER_BYTES);
        if &head[0..2] != MAGIC {
            return Err(FrameError::Malformed("bad magic"));
        }
        if head[2] != VERSION {
            return Err(FrameError::Version(head[2]));
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let u32_at = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&head[i..i + 4]);
            u32::from_be_bytes(b)
        };
        let h = Header {
            from: u64_at(4),
            message: u64_at(12),
            chunk: u32_at(20),
            chunks: u32_at(24),
        };
        if h.chunks == 0 || h.chunk >= h.chunks {
            return Err(FrameError::BadChunk {
                chunk: h.chunk,
                chunks: h.chunks,
            });
        }
        Ok((h, body))
    }
}

/// Splits `message` into frames of at most `frame_bytes_max` bytes each
/// (header included; at least one payload byte must fit). An empty message
/// is one frame.
pub fn split(
    from: u64,
    message_seq: u64,
    message: &[u8],
    frame_bytes_max: usize,
) -> Result<Vec<Vec<u8>>, FrameError> {
    let room = frame_bytes_max
        .checked_sub(HEADER_BYTES)
        .filter(|r| *r > 0)
        .ok_or(FrameError::Malformed("frame_bytes_max leaves no room"))?;
    let chunks = message.len().div_ceil(room).max(1);
    let chunks_u32 = u32::try_from(chunks).map_err(|_| FrameError::TooLarge {
        bytes: message.len(),
        max: room.saturating_mul(u32::MAX as usize),
    })?;
    let mut out = Vec::with_capacity(chunks);
    for chunk in 0..chunks {
        let part = message
            .get(chunk * room..((chunk + 1) * room).min(message.len()))
            .unwrap_or(&[]);
        let mut f = Vec::with_capacity(HEADER_BYTES + part.len());
        Header {
            from,
            message: message_seq,
            chunk: chunk as u32,
            chunks: chunks_u32,
        }
        .write(&mut f);
        f.extend_from_slice(part);
        out.push(f);
    }
    Ok(out)
}

/// What a [`Reassembler`] may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message put back together.
    pub message_bytes_max: usize,
    /// Messages partly received at once (the oldest is dropped past it).
    pub partial_max: usize,
    /// A partial message not completed within this is dropped.
    pub partial_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            message_bytes_max: 1 << 30,
            partial_max: 8,
            partial_timeout: Duration::from_secs(30),
        }
    }
}

struct Partial {
    chunks: u32,
    next: u32,
    bytes: Vec<u8>,
    started: Instant,
}

/// Puts messages back together from their frames.
pub struct Reassembler {
    limits: Limits,
    partial: HashMap<(u64, u64), Partial>,
}

impl Reassembler {
    pub fn new(limits: Limits) -> Reassembler {
        Reassembler {
            limits,
            partial: HashMap::new(),
        }
    }

    /// Messages partly received.
    pub fn partial_count(&self) -> usize {
        self.partial.len()
    }

    /// Takes one frame; returns the sender and the whole message when this
    /// frame completes one.
    pub fn push(
        &mut self,
        frame: &[u8],
        now: Instant,
    ) -> Result<Option<(u64, Vec<u8>)>, FrameError> {
        let timeout = self.limits.partial_timeout;
        self.partial
            .retain(|_, p| now.saturating_duration_since(p.started) < timeout);
        let (h, body) = Header::parse(frame)?;
        let max = self.limits.message_bytes_max;
        if h.chunks == 1 {
            if body.len() > max {
                return Err(FrameError::TooLarge {
                    bytes: body.len(),
                    max,
                });
            }
            return Ok(Some((h.from, body.to_vec())));
        }
        let key = (h.from, h.message);
        if h.chunk == 0 {
            // A fresh start (also after a sender restarted with the same
            // sequence number): forget any older partial under this key.
            self.partial.remove(&key);
            if self.partial.len() >= self.limits.partial_max {
                if let Some(oldest) = self
                    .partial
                    .iter()
                    .min_by_key(|(_, p)| p.started)
                    .map(|(k, _)| *k)
                {
                    self.partial.remove(&oldest);
                }
            }
            self.partial.insert(
                key,
                Partial {
                    chunks: h.chunks,
                    next: 0,
                    bytes: Vec::with_capacity(body.len().saturating_mul(2)),
                    started: now,
                },
            );
        }
        let Some(p) = self.partial.get_mut(&key) else {
            return Err(FrameError::OutOfOrder {
                expected: 0,
                got: h.chunk,
            });
        };
        if h.chunk != p.next || h.chunks != p.chunks {
            let expected = p.next;
            self.partial.remove(&key);
            return Err(FrameError::OutOfOrder {
                expected,
                got: h.chunk,
            });
        }
        let bytes = p.bytes.len() + body.len();
        if bytes > max {
            self.partial.remove(&key);
            return Err(FrameError::TooLarge { bytes, max });
        }
        p.bytes.extend_from_slice(body);
        p.next += 1;
        if p.next < p.chunks {
            return Ok(None);
        }
        Ok(self.partial.remove(&key).map(|p| (h.from, p.bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn split_and_reassemble_round_trip() {
        let max = HEADER_BYTES + 10;
        // (message bytes, frames expected)
        for (n, frames) in [(0, 1), (1, 1), (10, 1), (11, 2), (35, 4), (1000, 100)] {
            let m = message(n);
            let fs = split(7, 42, &m, max).expect("split");
            assert_eq!(fs.len(), frames, "{n} bytes");
            assert!(fs.iter().all(|f| f.len() <= max));
            let mut r = Reassembler::new(Limits::default());
            let now = Instant::now();
            let mut out = None;
            for (i, f) in fs.iter().enumerate() {
                let got = r.push(f, now).expect("push");
                if i + 1 < fs.len() {
                    assert_eq!(got, None, "{n} bytes, frame {i}");
                } else {
                    out = got;
                }
            }
            assert_eq!(out, Some((7, m)), "{n} bytes");
            assert_eq!(r.partial_count(), 0);
        }
    }

    #[test]
    fn interleaved_senders_are_kept_apart() {
        let max = HEADER_BYTES + 4;
        let a = split(1, 9, &message(10), max).expect("a");
        let b = split(2, 9, &[9u8; 7], max).expect("b");
        let mut r = Reassembler::new(Limits::default());
        let now = Instant::now();
        let mut done = Vec::new();
        for i in 0..a.len().max(b.len()) {
            for fs in [&a, &b] {
                if let Some(f) = fs.get(i) {
                    if let Some(m) = r.push(f, now).expect("push") {
                        done.push(m);
                    }
                }
            }
        }
        done.sort();
        assert_eq!(done, vec![(1, message(10)), (2, vec![9u8; 7])]);
    }

    #[test]
    fn a_gap_drops_the_message() {
        let fs = split(1, 1, &message(30), HEADER_BYTES + 10).expect("split");
        let mut r = Reassembler::new(Limits::default());
        let now = Instant::now();
        assert_eq!(r.push(&fs[0], now), Ok(None));
        assert_eq!(
            r.push(&fs[2], now),
            Err(FrameError::OutOfOrder {
                expected: 1,
                got: 2
            })
        );
        assert_eq!(r.partial_count(), 0);
        // a later chunk of a message never started
        assert!(matches!(
            r.push(&fs[1], now),
            Err(FrameError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn a_restart_at_chunk_zero_starts_over() {
        let fs = split(1, 1, &message(30), HEADER_BYTES + 10).expect("split");
        let mut r = Reassembler::new(Limits::default());
        let now = Instant::now();
        assert_eq!(r.push(&fs[0], now), Ok(None));
        assert_eq!(r.push(&fs[0], now), Ok(None));
        assert_eq!(r.push(&fs[1], now), Ok(None));
        assert_eq!(r.push(&fs[2], now), Ok(Some((1, message(30)))));
    }

    #[test]
    fn partials_are_bounded_in_count_time_and_bytes() {
        let limits = Limits {
            message_bytes_max: 25,
            partial_max: 2,
            partial_timeout: Duration::from_secs(1),
        };
        let mut r = Reassembler::new(limits);
        let t0 = Instant::now();
        for seq in 0..5 {
            let fs = split(1, seq, &message(20), HEADER_BYTES + 10).expect("split");
            assert_eq!(r.push(&fs[0], t0), Ok(None));
            assert!(r.partial_count() <= 2);
        }
        // the newest two survive; after the timeout, none
        let fs = split(1, 4, &message(20), HEADER_BYTES + 10).expect("split");
        assert_eq!(r.push(&fs[1], t0), Ok(Some((1, message(20)))));
        let late = t0 + Duration::from_secs(2);
        let fs3 = split(1, 3, &message(20), HEADER_BYTES + 10).expect("split");
        assert!(r.push(&fs3[1], late).is_err());
        assert_eq!(r.partial_count(), 0);
        // too large
        let big = split(1, 9, &message(30), HEADER_BYTES + 10).expect("split");
        assert_eq!(r.push(&big[0], late), Ok(None));
        assert_eq!(r.push(&big[1], late), Ok(None));
        assert_eq!(
            r.push(&big[2], late),
            Err(FrameError::TooLarge { bytes: 30, max: 25 })
        );
    }

    #[test]
    fn malformed_frames_are_refused() {
        let good = split(1, 1, b"x", 64).expect("split").remove(0);
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        let mut bad_version = good.clone();
        bad_version[2] = 9;
        let mut bad_chunk = good.clone();
        bad_chunk[20..24].copy_from_slice(&5u32.to_be_bytes());
        let cases: [(&[u8], FrameError); 4] = [
            (&good[..5], FrameError::Malformed("shorter than a header")),
            (&bad_magic, FrameError::Malformed("bad magic")),
            (&bad_version, FrameError::Version(9)),
            (
                &bad_chunk,
                FrameError::BadChunk {
                    chunk: 5,
                    chunks: 1,
                },
            ),
        ];
        for (frame, want) in cases {
            assert_eq!(Header::parse(frame).map(|_| ()), Err(want));
        }
        assert!(split(1, 1, b"x", HEADER_BYTES).is_err());
    }
}
