//! Backups served on the bus: this store peer answers
//! `kubus.<c>.store.snapshot.<peer-id>` with the chunks of a backup file
//! of its applied state (`kubus store snapshot save`; the protocol is
//! [`kubus_bus::backup`], the file format [`kubus_storage::backup`]).
//!
//! Each save is a session holding a [`BackupStream`] (a scan of one
//! RocksDB snapshot on a thread of its own, a few chunks ahead) and the
//! last chunk sent, so that a lost reply can be sent again. At most
//! [`SESSIONS_MAX`] sessions are scanning at once (an ended one is kept
//! until idle, to send its end again, but not counted); one not asked
//! anything for
//! [`SESSION_IDLE`] is dropped, which stops its scan and releases its
//! snapshot. What to do with a request is decided by
//! [`kubus_bus::backup::next_after`]; this module only carries it out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kubus_bus::backup::Bytes;
use kubus_bus::backup::{self as proto, ChunkRequest, Next, SessionState};
use kubus_bus::codec::Codec;
use kubus_bus::subject::{StoreOp, Subjects};
use kubus_storage::backup::{BackupStream, Chunk};
use kubus_storage::Store;
use tracing::{debug, info, warn};

/// Saves under way at once on one peer.
pub const SESSIONS_MAX: usize = 2;
/// A session nobody asked anything of for this long is dropped.
pub const SESSION_IDLE: Duration = Duration::from_secs(60);
/// How often idle sessions are looked for.
const REAP_EVERY: Duration = Duration::from_secs(5);

/// One save under way.
struct Session {
    stream: BackupStream,
    /// The chunk sent last: its number, whether it ended the file, bytes.
    last_seq: u64,
    ended: bool,
    last: Bytes,
    touched: Instant,
    bytes: u64,
}

impl Session {
    fn state(&self) -> SessionState {
        SessionState {
            last_seq: self.last_seq,
            ended: self.ended,
        }
    }
}

/// Takes the next chunk of `s` from its scan (waiting at most
/// [`proto::CHUNK_WAIT`]): `Ok(true)` when it is in `s.last`, `Ok(false)`
/// when the scan has not made it yet, `Err` when the save failed.
async fn pull(s: &mut Session) -> Result<bool, String> {
    match tokio::time::timeout(proto::CHUNK_WAIT, s.stream.next()).await {
        Err(_) => Ok(false),
        Ok(Some(Chunk::Data(data))) => {
            s.last_seq += 1;
            s.bytes += data.len() as u64;
            s.last = Bytes::from(data);
            Ok(true)
        }
        Ok(Some(Chunk::End(summary))) => {
            s.last_seq += 1;
            s.ended = true;
            s.last = Bytes::new();
            info!(
                revision = summary.header.revision,
                objects = summary.objects,
                bytes = summary.bytes,
                "backup sent"
            );
            Ok(true)
        }
        Ok(Some(Chunk::Failed(why))) => Err(format!("the backup failed on this peer: {why}")),
        Ok(None) => Err("the backup stopped on this peer".into()),
    }
}

/// Subscribes to this peer's backup subject and returns the task that
/// answers it (it ends when the subscription does).
pub async fn serve(
    store: Store,
    nats: async_nats::Client,
    subjects: Subjects,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, async_nats::SubscribeError> {
    let peer = store.status().peer_id;
    let mut requests = nats
        .subscribe(subjects.store_peer(StoreOp::Snapshot, peer))
        .await?;
    Ok(async move {
        let mut sessions: HashMap<u64, Session> = HashMap::new();
        let mut next_id: u64 = rand_id();
        let mut reap = tokio::time::interval(REAP_EVERY);
        loop {
            let msg = tokio::select! {
                m = requests.next() => match m {
                    Some(m) => m,
                    None => return,
                },
                _ = reap.tick() => {
                    let now = Instant::now();
                    sessions.retain(|id, s| {
                        let keep = now.duration_since(s.touched) < SESSION_IDLE;
                        if !keep && !s.ended {
                            warn!(session = id, chunks = s.last_seq, "backup session idle; dropped");
                        }
                        keep
                    });
                    continue;
                }
            };
            let Some(reply_to) = msg.reply.clone() else {
                continue;
            };
            let codec = Codec::from_headers(msg.headers.as_ref());
            let answer = match codec.decode::<ChunkRequest>(&msg.payload) {
                Err(e) => Answer::Refuse(format!("bad backup request: {e}")),
                Ok(req) => {
                    let state = sessions.get(&req.session).map(Session::state);
                    // an ended session is kept (its last chunk may be
                    // asked for again) but holds no snapshot: not counted
                    let open = sessions.values().filter(|s| !s.ended).count();
                    match proto::next_after(&req, state, open, SESSIONS_MAX) {
                        Next::Refuse(why) => Answer::Refuse(why),
                        Next::Start => {
                            let chunk =
                                proto::chunk_bytes(req.chunk_bytes, nats.server_info().max_payload);
                            match store.backup(chunk) {
                                Err(e) => Answer::Refuse(format!("cannot start a backup: {e}")),
                                Ok(stream) => {
                                    next_id = next_id.wrapping_add(1).max(1);
                                    info!(session = next_id, peer, "backup started");
                                    sessions.insert(
                                        next_id,
                                        Session {
                                            stream,
                                            last_seq: 0,
                                            ended: false,
                                            last: Bytes::new(),
                                            touched: Instant::now(),
                                            bytes: 0,
                                        },
                                    );
                                    answer_pull(&mut sessions, next_id).await
                                }
                            }
                        }
                        Next::Pull => answer_pull(&mut sessions, req.session).await,
                        Next::Resend => match sessions.get_mut(&req.session) {
                            Some(s) => {
                                s.touched = Instant::now();
                                Answer::Chunk(req.session, s.last_seq, s.ended, s.last.clone())
                            }
                            None => Answer::Refuse("no such session".into()),
                        },
                    }
                }
            };
            let (headers, payload) = match answer {
                Answer::Chunk(session, seq, eof, data) => {
                    proto::chunk_reply(session, seq, eof, data)
                }
                Answer::NotYet(session, seq) => (proto::not_yet(session, seq), Bytes::new()),
                Answer::Refuse(why) => {
                    debug!(%why, "backup request refused");
                    (proto::refusal(&why), Bytes::new())
                }
            };
            if let Err(e) = nats.publish_with_headers(reply_to, headers, payload).await {
                debug!(error = %e, "backup reply not sent");
            }
        }
    })
}

/// What to send back.
enum Answer {
    /// `(session, seq, eof, bytes)`.
    Chunk(u64, u64, bool, Bytes),
    /// `(session, seq)`: the scan has not made that chunk yet.
    NotYet(u64, u64),
    Refuse(String),
}

/// Pulls the next chunk of session `id` and says what to send: the
/// chunk, "not yet" (asked again by the client), or why the save ended
/// (the session is then dropped).
async fn answer_pull(sessions: &mut HashMap<u64, Session>, id: u64) -> Answer {
    let Some(s) = sessions.get_mut(&id) else {
        return Answer::Refuse("no such session".into());
    };
    s.touched = Instant::now();
    match pull(s).await {
        Ok(true) => Answer::Chunk(id, s.last_seq, s.ended, s.last.clone()),
        Ok(false) => Answer::NotYet(id, s.last_seq + 1),
        Err(why) => {
            warn!(session = id, bytes = s.bytes, %why, "backup failed");
            sessions.remove(&id);
            Answer::Refuse(why)
        }
    }
}

/// A session id no earlier run of this peer is likely to have used.
fn rand_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}
