//! Backups over the bus: a store peer streams a backup file to a client
//! (`kubus store snapshot save`), one chunk per request, on
//! `kubus.<c>.store.snapshot.<peer-id>`.
//!
//! The client pulls: it asks for chunk 1 with session 0 (a new save), the
//! peer starts a backup of its applied state (one RocksDB snapshot) and
//! answers with the first chunk and the session's id; the client asks for
//! chunk 2, 3, … of that session until a reply carries [`HEADER_EOF`].
//! Pulling is the flow control: the peer makes at most a few chunks ahead
//! of the client's requests (`kubus_storage::backup::CHUNKS_AHEAD`), so
//! neither side holds the backup in memory. A lost reply is asked for
//! again (same sequence number) and sent again: the peer keeps the last
//! chunk it sent. A session nobody asks anything of for a while is
//! dropped by the peer, with its RocksDB snapshot.
//!
//! A reply is the chunk's bytes as the payload, with the session, the
//! sequence number and the end in headers; a refusal has
//! [`HEADER_ERROR`] and no payload. The file's integrity is the file's
//! own business (a count and a CRC-32C at its end): the client checks the
//! file it wrote, not the transfer.
//!
//! Decisions are pure ([`next_after`]); [`save`] does the I/O.

use std::time::Duration;

use async_nats::HeaderMap;
/// The chunk type, for servers that do not depend on `bytes` themselves.
pub use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::codec;
use crate::subject::StoreOp;

/// Header: the session a chunk belongs to.
pub const HEADER_SESSION: &str = "Kubus-Backup-Session";
/// Header: the chunk's sequence number (from 1).
pub const HEADER_SEQ: &str = crate::stream::HEADER_SEQ;
/// Header: the file ends with this chunk (which may be empty).
pub const HEADER_EOF: &str = crate::stream::HEADER_EOF;
/// Header: the peer refuses; the value says why.
pub const HEADER_ERROR: &str = "Kubus-Error";
/// Header: the chunk named is not made yet (the scan is slow): ask again.
pub const HEADER_NOT_YET: &str = "Kubus-Not-Yet";

/// Size of the chunks a client asks for: a quarter of NATS' default
/// payload limit (a server that allows less is obeyed).
pub const CHUNK_BYTES: usize = 256 * 1024;
/// How long a client waits for one chunk. The peer waits at most
/// [`CHUNK_WAIT`] for its scan, so this covers that and the bus.
pub const CHUNK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer waits for its scan to make the next chunk before it
/// answers "not yet" (the client asks again).
pub const CHUNK_WAIT: Duration = Duration::from_secs(10);
/// Tries of one chunk (a lost reply, a reconnect of the bus, a slow scan).
pub const CHUNK_TRIES: usize = 6;
/// Pause between two tries of one chunk.
pub const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// What a client asks of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    /// 0: start a new save (with `seq` 1).
    pub session: u64,
    /// The chunk wanted, from 1.
    pub seq: u64,
    /// The chunk size wanted (a new save only; the peer bounds it).
    pub chunk_bytes: u64,
}

/// What a peer does with a [`ChunkRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Start a new session and send its first chunk.
    Start,
    /// Send the chunk sent last again (its reply was lost).
    Resend,
    /// Take the next chunk from the scan and send it.
    Pull,
    /// Refuse, saying why.
    Refuse(String),
}

/// Where a session stands, as [`next_after`] needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionState {
    /// The sequence number of the chunk sent last (0: none yet).
    pub last_seq: u64,
    /// The chunk sent last ended the file.
    pub ended: bool,
}

/// The peer's decision on `req`, given the session it names (None: no
/// such session) and how many sessions are open (at most `sessions_max`).
pub fn next_after(
    req: &ChunkRequest,
    session: Option<SessionState>,
    sessions_open: usize,
    sessions_max: usize,
) -> Next {
    if req.session == 0 {
        if req.seq != 1 {
            return Next::Refuse(format!("a new save starts at chunk 1, not {}", req.seq));
        }
        if sessions_open >= sessions_max {
            return Next::Refuse(format!(
                "{sessions_open} saves are under way on this peer (at most {sessions_max}); try again later"
            ));
        }
        return Next::Start;
    }
    let Some(s) = session else {
        return Next::Refuse(format!(
            "save session {} is unknown here (it expired or the peer restarted); start again",
            req.session
        ));
    };
    if req.seq == s.last_seq {
        Next::Resend
    } else if req.seq == s.last_seq + 1 && !s.ended {
        Next::Pull
    } else if s.ended {
        Next::Refuse(format!("the file ended at chunk {}", s.last_seq))
    } else {
        Next::Refuse(format!(
            "chunk {} asked for; chunk {} is next",
            req.seq,
            s.last_seq + 1
        ))
    }
}

/// One chunk as a reply's headers and payload.
pub fn chunk_reply(session: u64, seq: u64, eof: bool, data: Bytes) -> (HeaderMap, Bytes) {
    let mut h = HeaderMap::new();
    h.insert(HEADER_SESSION, session.to_string().as_str());
    h.insert(HEADER_SEQ, seq.to_string().as_str());
    if eof {
        h.insert(HEADER_EOF, "1");
    }
    (h, data)
}

/// "Chunk `seq` of `session` is not made yet; ask again" as a reply's
/// headers (no payload).
pub fn not_yet(session: u64, seq: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(HEADER_SESSION, session.to_string().as_str());
    h.insert(HEADER_NOT_YET, seq.to_string().as_str());
    h
}

/// The chunk size a peer uses for a save that asked for `asked` bytes
/// (0: the default) on a server whose payload limit is `max_payload`
/// (0: unknown): never over half the limit, headers being extra.
pub fn chunk_bytes(asked: u64, max_payload: usize) -> usize {
    let cap = match max_payload {
        0 => CHUNK_BYTES,
        n => (n / 2).max(1),
    };
    match usize::try_from(asked) {
        Ok(0) | Err(_) => CHUNK_BYTES.min(cap),
        Ok(n) => n.min(cap),
    }
}

/// A refusal as a reply's headers (no payload).
pub fn refusal(why: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    // header values are one line
    let line: String = why
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    h.insert(HEADER_ERROR, line.as_str());
    h
}

/// Why a save failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// The peer refused.
    #[error("store peer {peer}: {why}")]
    Refused { peer: u64, why: String },
    /// No reply after every try.
    #[error("store peer {peer} did not send chunk {seq} after {tries} tries: {last}")]
    NoReply {
        peer: u64,
        seq: u64,
        tries: usize,
        last: String,
    },
    /// A reply that is not a chunk of this save.
    #[error("store peer {peer} sent a reply that is not chunk {seq}: {what}")]
    Unexpected { peer: u64, seq: u64, what: String },
    /// Writing a chunk failed.
    #[error("writing the file: {0}")]
    Write(#[from] std::io::Error),
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

/// What arrived for one chunk.
#[derive(Debug, PartialEq)]
enum Reply {
    Chunk {
        session: u64,
        seq: u64,
        eof: bool,
        data: Bytes,
    },
    /// Ask again (the session it belongs to).
    NotYet { session: u64 },
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.as_str().parse().ok()
}

/// Reads a reply: a chunk, "not yet", or the peer's refusal.
fn parse_reply(headers: Option<&HeaderMap>, payload: &Bytes) -> Result<Reply, String> {
    let Some(h) = headers else {
        return Err("a reply without headers".into());
    };
    if let Some(why) = h.get(HEADER_ERROR) {
        return Err(why.as_str().to_string());
    }
    let session = header_u64(h, HEADER_SESSION);
    match (session, header_u64(h, HEADER_SEQ), h.get(HEADER_NOT_YET)) {
        (Some(session), _, Some(_)) => Ok(Reply::NotYet { session }),
        (Some(session), Some(seq), None) => Ok(Reply::Chunk {
            session,
            seq,
            eof: h.get(HEADER_EOF).is_some(),
            data: payload.clone(),
        }),
        _ => Err("a reply without session or sequence header".into()),
    }
}

/// Pulls a backup file from store peer `peer`, handing each chunk to
/// `write` in order; returns the bytes written. Every chunk is tried at
/// most [`CHUNK_TRIES`] times (a refusal is not tried again: the peer
/// refuses only what asking again cannot fix).
pub async fn save(
    client: &Client,
    peer: u64,
    mut write: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<u64, SaveError> {
    let subject = client.subjects().store_peer(StoreOp::Snapshot, peer);
    let chunk_bytes = chunk_bytes(0, client.nats().server_info().max_payload);
    let mut session = 0u64;
    let mut seq = 1u64;
    let mut written = 0u64;
    loop {
        let mut last = String::new();
        let mut got = None;
        for attempt in 0..CHUNK_TRIES {
            if attempt > 0 {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            let body = codec::encode(&ChunkRequest {
                session,
                seq,
                chunk_bytes: chunk_bytes as u64,
            })?;
            let r = async_nats::Request::new()
                .payload(body)
                .timeout(Some(CHUNK_TIMEOUT));
            match client.nats().send_request(subject.clone(), r).await {
                Ok(msg) => match parse_reply(msg.headers.as_ref(), &msg.payload) {
                    Ok(Reply::NotYet { session: s }) => {
                        session = s;
                        last = format!("chunk {seq} was not made yet");
                    }
                    Ok(chunk) => {
                        got = Some(chunk);
                        break;
                    }
                    Err(why) => return Err(SaveError::Refused { peer, why }),
                },
                // A new save whose reply was lost may have started a
                // session the peer drops once idle; asking again starts
                // another.
                Err(e) => last = e.to_string(),
            }
        }
        let Some(Reply::Chunk {
            session: s,
            seq: n,
            eof,
            data,
        }) = got
        else {
            return Err(SaveError::NoReply {
                peer,
                seq,
                tries: CHUNK_TRIES,
                last,
            });
        };
        if n != seq || (session != 0 && s != session) {
            return Err(SaveError::Unexpected {
                peer,
                seq,
                what: format!("session {s} chunk {n}"),
            });
        }
        session = s;
        write(&data)?;
        written += data.len() as u64;
        if eof {
            return Ok(written);
        }
        seq += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(session: u64, seq: u64) -> ChunkRequest {
        ChunkRequest {
            session,
            seq,
            chunk_bytes: 1024,
        }
    }

    fn at(last_seq: u64, ended: bool) -> Option<SessionState> {
        Some(SessionState { last_seq, ended })
    }

    #[test]
    fn what_a_peer_does_with_each_request() {
        let refuse = |n: &Next| matches!(n, Next::Refuse(_));
        type Case = (ChunkRequest, Option<SessionState>, usize, fn(&Next) -> bool);
        let cases: Vec<Case> = vec![
            (req(0, 1), None, 0, |n| *n == Next::Start),
            (req(0, 1), None, 2, refuse), // too many saves
            (req(0, 2), None, 0, refuse), // a new save starts at 1
            (req(7, 3), None, 0, refuse), // unknown session
            (req(7, 3), at(3, false), 1, |n| *n == Next::Resend),
            (req(7, 4), at(3, false), 1, |n| *n == Next::Pull),
            (req(7, 5), at(3, false), 1, refuse), // a gap
            (req(7, 2), at(3, false), 1, refuse), // too old
            (req(7, 3), at(3, true), 1, |n| *n == Next::Resend), // the end, again
            (req(7, 4), at(3, true), 1, refuse),  // past the end
        ];
        for (r, s, open, ok) in cases {
            let got = next_after(&r, s, open, 2);
            assert!(ok(&got), "{r:?} {s:?} open {open}: {got:?}");
        }
    }

    #[test]
    fn replies_carry_their_place_in_headers() {
        let (h, data) = chunk_reply(9, 4, true, Bytes::from_static(b"abc"));
        assert_eq!(header_u64(&h, HEADER_SESSION), Some(9));
        assert_eq!(header_u64(&h, HEADER_SEQ), Some(4));
        assert!(h.get(HEADER_EOF).is_some());
        assert_eq!(&data[..], b"abc");
        let h = refusal("two\nlines");
        assert_eq!(h.get(HEADER_ERROR).map(|v| v.as_str()), Some("two lines"));
    }

    #[test]
    fn replies_parse_back() {
        let (h, data) = chunk_reply(9, 4, false, Bytes::from_static(b"abc"));
        assert_eq!(
            parse_reply(Some(&h), &data),
            Ok(Reply::Chunk {
                session: 9,
                seq: 4,
                eof: false,
                data: Bytes::from_static(b"abc")
            })
        );
        let h = not_yet(9, 5);
        assert_eq!(
            parse_reply(Some(&h), &Bytes::new()),
            Ok(Reply::NotYet { session: 9 })
        );
        let h = refusal("busy");
        assert_eq!(
            parse_reply(Some(&h), &Bytes::new()),
            Err("busy".to_string())
        );
        assert!(parse_reply(None, &Bytes::new()).is_err());
        assert!(parse_reply(Some(&HeaderMap::new()), &Bytes::new()).is_err());
    }

    #[test]
    fn chunks_stay_under_the_payload_limit() {
        assert_eq!(chunk_bytes(0, 0), CHUNK_BYTES);
        assert_eq!(chunk_bytes(0, 1 << 20), CHUNK_BYTES);
        assert_eq!(chunk_bytes(1 << 20, 1 << 20), 512 * 1024);
        assert_eq!(chunk_bytes(0, 64 * 1024), 32 * 1024);
        assert_eq!(chunk_bytes(1000, 1 << 20), 1000);
        assert_eq!(chunk_bytes(u64::MAX, 1 << 20), 512 * 1024);
    }
}
