//! Snapshots of the state machine: what a lagging or new peer receives
//! instead of log entries that were compacted away. They are streamed:
//! neither the leader nor the receiver holds one in memory, so a store
//! larger than RAM can be sent to a joining peer (as TiKV does, the Raft
//! message carries a descriptor and the data travels beside it).
//!
//! - The snapshot's **data** is the backup format of [`crate::backup`]
//!   (`KSNAP2`: revision, stream heads, every object of the `objects`
//!   column family as its bytes are, a count and a CRC-32C), scanned from
//!   one RocksDB snapshot on a thread of its own ([`crate::backup::stream`]).
//!   The history is not sent: the receiver records its history as
//!   compacted up to the snapshot's revision, so a watcher asking it for
//!   older changes relists (exactly as after history retention).
//! - raft-rs's `Snapshot` message carries the Raft metadata (index, term,
//!   ConfState) and, as its `data`, only a [`Descriptor`]: `"KSNAP3" | id
//!   u64 | index u64`. `raft::Storage::snapshot` on the leader starts the
//!   scan between two apply batches (so it holds exactly the state at the
//!   applied index) and registers it in [`Outgoing`] under a new id.
//! - The receiver **pulls** the data: one [`ChunkRequest`] at a time
//!   (through [`crate::transport::SnapshotFetcher`], the transport's
//!   request/reply), each answered by the next chunk of at most
//!   [`crate::StoreConfig::snapshot_chunk_bytes`]. The leader's scan runs
//!   at most [`crate::backup::CHUNKS_AHEAD`] chunks ahead of what was
//!   asked for, and keeps the last chunk it gave out (a request repeated
//!   after a lost reply gets it again): per transfer the leader holds a
//!   handful of chunks, and at most [`SENDS_MAX`] transfers run at once.
//! - The receiver writes each chunk to a file in its data directory's
//!   `snapshot-staging/` as it arrives ([`receive`], on a thread of its
//!   own: the Raft thread never waits for the network), then reads the
//!   file back to check its count and checksum. Only then is the Raft
//!   message stepped into raft-rs, which hands it back in a Ready to be
//!   installed: the objects go into RocksDB in bounded batches
//!   ([`crate::backup`]'s restore does the same), then the state and the
//!   Raft log's new start in one synced batch. A marker written before
//!   the first batch names the snapshot; a peer that crashes mid-install
//!   installs the staged file again when it opens.
//! - Bounds: a chunk's size, chunks ahead of the reader, transfers at
//!   once, the time one chunk request may take
//!   ([`CHUNK_REQUEST_TIMEOUT`]) and its retries ([`CHUNK_RETRIES`]), the
//!   whole transfer's time ([`TRANSFER_TIME_MAX`]), and how long the
//!   leader keeps a transfer nobody asks chunks of
//!   ([`crate::StoreConfig::snapshot_resend_ms`]). The leader reports to
//!   raft-rs `Finish` when the last chunk was taken and `Failure` when a
//!   transfer is given up; raft-rs then probes and sends a new snapshot
//!   if one is still needed.
//!
use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backup::{self, BackupStream, BackupSummary};
use crate::peer::lock;
use crate::transport::SnapshotFetcher;
use rocksdb::{IteratorMode, ReadOptions, WriteBatch, DB};

use crate::error::StoreError;
use crate::layout::{
    be, cf, prefix_end, read_u64, CF_HISTORY, CF_HISTORY_NEXT, CF_HISTORY_TIME, CF_META,
    CF_OBJECTS, KEY_HISTORY_COMPACTED_TO, KEY_REVISION, STREAM_HEAD_PREFIX,
};

/// Every stream head: `(name, head revision)`.
pub type StreamHeads = Vec<(Vec<u8>, u64)>;

/// The revision and every stream head as the RocksDB snapshot `snap` of
/// `db` has them.
pub fn read_state(db: &DB, snap: &rocksdb::Snapshot<'_>) -> Result<(u64, StreamHeads), StoreError> {
    let meta = cf(db, CF_META)?;
    let revision = match snap.get_cf(meta, KEY_REVISION)? {
        Some(v) => read_u64("revision", &v)?,
        None => 0,
    };
    let mut heads = Vec::new();
    let mut opts = ReadOptions::default();
    if let Some(end) = prefix_end(STREAM_HEAD_PREFIX.as_bytes()) {
        opts.set_iterate_upper_bound(end);
    }
    let iter = snap.iterator_cf_opt(
        meta,
        opts,
        IteratorMode::From(STREAM_HEAD_PREFIX.as_bytes(), rocksdb::Direction::Forward),
    );
    for item in iter {
        let (k, v) = item?;
        let name = &k[STREAM_HEAD_PREFIX.len()..];
        heads.push((name.to_vec(), read_u64("stream head", &v)?));
    }
    Ok((revision, heads))
}

/// Stages the removal of every object, the whole history and every stream
/// head: the first half of an install (a restore from a backup file stages
/// it into an empty store, where it does nothing, and puts the objects in
/// batches of its own).
pub fn stage_clear(db: &DB, wb: &mut WriteBatch) -> Result<(), StoreError> {
    let objects = cf(db, CF_OBJECTS)?;
    // Keys are UTF-8 strings: no key holds the byte 0xff.
    wb.delete_range_cf(objects, b"".as_slice(), b"\xff".as_slice());
    for name in [CF_HISTORY, CF_HISTORY_NEXT, CF_HISTORY_TIME] {
        wb.delete_range_cf(cf(db, name)?, be(0), be(u64::MAX));
    }
    let meta = cf(db, CF_META)?;
    if let Some(end) = prefix_end(STREAM_HEAD_PREFIX.as_bytes()) {
        wb.delete_range_cf(meta, STREAM_HEAD_PREFIX.as_bytes(), end.as_slice());
    }
    Ok(())
}

/// Stages what an installed state says of itself besides its objects:
/// the stream heads, the revision, and a history recorded as compacted up
/// to that revision (a watcher asking for an older change relists).
pub fn stage_state(
    db: &DB,
    wb: &mut WriteBatch,
    revision: u64,
    stream_heads: &[(String, u64)],
) -> Result<(), StoreError> {
    let meta = cf(db, CF_META)?;
    for (stream, head) in stream_heads {
        wb.put_cf(meta, crate::layout::stream_head_key(stream), be(*head));
    }
    wb.put_cf(meta, KEY_REVISION, be(revision));
    wb.put_cf(meta, KEY_HISTORY_COMPACTED_TO, be(revision));
    Ok(())
}

// ---- streaming ------------------------------------------------------------

/// The first bytes of a [`Descriptor`].
pub const DESCRIPTOR_MAGIC: &[u8] = b"KSNAP3";
/// Transfers a leader runs at once; past it raft-rs is told "temporarily
/// unavailable" and asks again later.
pub const SENDS_MAX: usize = 4;
/// How long the receiver waits for one chunk.
pub const CHUNK_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How many times the receiver asks again for a chunk that did not come.
pub const CHUNK_RETRIES: u32 = 5;
/// The longest a whole transfer may take (on either side).
pub const TRANSFER_TIME_MAX: Duration = Duration::from_secs(3600);
/// The directory, inside a peer's data directory, where received
/// snapshots are staged.
pub const STAGING_DIR: &str = "snapshot-staging";

/// What can go wrong sending or receiving a streamed snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A Raft snapshot whose data is not a descriptor.
    #[error("the snapshot's data is not a KSNAP3 descriptor")]
    NotADescriptor,
    /// A chunk request or reply that breaks the format.
    #[error("malformed snapshot {0}")]
    Malformed(&'static str),
    /// The leader no longer sends this snapshot (finished, given up, or
    /// another leader).
    #[error("peer {from} no longer sends snapshot {id}")]
    Gone {
        /// The sending peer.
        from: u64,
        /// The snapshot.
        id: u64,
    },
    /// A chunk did not come after every retry.
    #[error("chunk {seq} of snapshot {id} from peer {from}: {reason}")]
    Fetch {
        /// The sending peer.
        from: u64,
        /// The snapshot.
        id: u64,
        /// The chunk.
        seq: u64,
        /// The transport's last complaint.
        reason: String,
    },
    /// A chunk larger than the format allows.
    #[error("a {0}-byte snapshot chunk is over the bound")]
    ChunkTooLarge(usize),
    /// The transfer took longer than [`TRANSFER_TIME_MAX`].
    #[error("the transfer took longer than {0:?}")]
    TooLong(Duration),
    /// The receiving peer is shutting down.
    #[error("cancelled")]
    Cancelled,
    /// The transport has no way to fetch snapshot chunks.
    #[error("the transport cannot fetch snapshot chunks")]
    NoFetcher,
    /// The staged file is not a complete, intact snapshot.
    #[error("staged snapshot: {0}")]
    File(String),
    /// Writing the staged file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// What a Raft snapshot message's `data` says: which transfer holds the
/// state, and at which index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// The transfer's id on the sending peer.
    pub id: u64,
    /// The Raft index of the state (the snapshot metadata's index).
    pub index: u64,
}

impl Descriptor {
    /// `"KSNAP3" | id u64 | index u64`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(DESCRIPTOR_MAGIC.len() + 16);
        out.extend_from_slice(DESCRIPTOR_MAGIC);
        out.extend_from_slice(&be(self.id));
        out.extend_from_slice(&be(self.index));
        out
    }

    /// The inverse of [`Descriptor::encode`].
    pub fn decode(b: &[u8]) -> Result<Descriptor, SnapshotError> {
        let n = DESCRIPTOR_MAGIC.len();
        if b.len() != n + 16 || &b[..n] != DESCRIPTOR_MAGIC {
            return Err(SnapshotError::NotADescriptor);
        }
        let id =
            read_u64("snapshot id", &b[n..n + 8]).map_err(|_| SnapshotError::NotADescriptor)?;
        let index =
            read_u64("snapshot index", &b[n + 8..]).map_err(|_| SnapshotError::NotADescriptor)?;
        Ok(Descriptor { id, index })
    }
}

/// A receiver's request for one chunk: chunk `seq` (from 0) of transfer
/// `id`, sent by peer `from` to peer `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRequest {
    /// The sending peer (the leader).
    pub from: u64,
    /// The receiving peer (who asks).
    pub to: u64,
    /// The transfer.
    pub id: u64,
    /// The chunk.
    pub seq: u64,
}

impl ChunkRequest {
    /// `from u64 | to u64 | id u64 | seq u64`, for transports that carry
    /// bytes.
    pub fn encode(&self) -> Vec<u8> {
        [self.from, self.to, self.id, self.seq]
            .iter()
            .flat_map(|v| be(*v))
            .collect()
    }

    /// The inverse of [`ChunkRequest::encode`].
    pub fn decode(b: &[u8]) -> Result<ChunkRequest, SnapshotError> {
        if b.len() != 32 {
            return Err(SnapshotError::Malformed("chunk request"));
        }
        let at = |i: usize| {
            read_u64("chunk request", &b[i * 8..i * 8 + 8])
                .map_err(|_| SnapshotError::Malformed("chunk request"))
        };
        Ok(ChunkRequest {
            from: at(0)?,
            to: at(1)?,
            id: at(2)?,
            seq: at(3)?,
        })
    }
}

/// The answer to a [`ChunkRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotChunk {
    /// The chunk's bytes (the next part of the `KSNAP2` stream).
    Data(Vec<u8>),
    /// There is no chunk `seq`: the stream ended before it.
    End,
    /// The transfer is not (or no longer) being sent.
    Gone,
}

const CHUNK_DATA: u8 = 0;
const CHUNK_END: u8 = 1;
const CHUNK_GONE: u8 = 2;

impl SnapshotChunk {
    /// A tag byte, then the data, for transports that carry bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            SnapshotChunk::Data(b) => {
                let mut out = Vec::with_capacity(b.len() + 1);
                out.push(CHUNK_DATA);
                out.extend_from_slice(b);
                out
            }
            SnapshotChunk::End => vec![CHUNK_END],
            SnapshotChunk::Gone => vec![CHUNK_GONE],
        }
    }

    /// The inverse of [`SnapshotChunk::encode`]; refuses data over
    /// [`backup::CHUNK_BYTES_MAX`].
    pub fn decode(b: &[u8]) -> Result<SnapshotChunk, SnapshotError> {
        match b.split_first() {
            Some((&CHUNK_DATA, data)) if data.len() > backup::CHUNK_BYTES_MAX => {
                Err(SnapshotError::ChunkTooLarge(data.len()))
            }
            Some((&CHUNK_DATA, data)) => Ok(SnapshotChunk::Data(data.to_vec())),
            Some((&CHUNK_END, [])) => Ok(SnapshotChunk::End),
            Some((&CHUNK_GONE, [])) => Ok(SnapshotChunk::Gone),
            _ => Err(SnapshotError::Malformed("chunk reply")),
        }
    }
}

/// One transfer on the sending side (its peer is beside it, in
/// [`Outgoing`]'s map).
struct Transfer {
    stream: BackupStream,
    /// The chunk the next request should ask for.
    next_seq: u64,
    /// The last chunk given out, for a request repeated after a lost
    /// reply.
    last: Option<(u64, Vec<u8>)>,
    /// The stream ended after this many chunks (the sequence of `End`).
    ended_at: Option<u64>,
    started: Instant,
    touched: Instant,
}

/// What a leader counts of the snapshots it sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Transfers started.
    pub started: u64,
    /// Transfers whose every chunk was taken.
    pub finished: u64,
    /// Transfers given up.
    pub failed: u64,
    /// Chunks given out (repeats included).
    pub chunks: u64,
    /// Bytes given out.
    pub bytes: u64,
    /// The largest chunk given out.
    pub chunk_bytes_largest: u64,
}

/// A transfer and the peer it goes to.
type Sending = (u64, Arc<Mutex<Transfer>>);

/// The snapshots a leader is sending, by transfer id; shared by the Raft
/// thread (which starts transfers and hears how they ended) and whoever
/// serves chunk requests ([`crate::Store::snapshot_chunk`]).
pub struct Outgoing {
    /// `id → (to, transfer)`. Lock order: the map, then a transfer; the
    /// Raft thread only `try_lock`s a transfer (one being served is not
    /// idle), so it never waits for a scan.
    sends: Mutex<HashMap<u64, Sending>>,
    /// `(to, finished)` of every transfer that ended since the Raft thread
    /// last asked ([`Outgoing::ended`]).
    ended: Mutex<Vec<(u64, bool)>>,
    next_id: AtomicU64,
    chunk_bytes: usize,
    idle_max: Duration,
    stats: Mutex<SendStats>,
}

impl Outgoing {
    /// Transfers in chunks of `chunk_bytes`, each given up after
    /// `idle_max` without a request.
    pub fn new(chunk_bytes: usize, idle_max: Duration) -> Outgoing {
        // Ids no earlier run of this peer used: a receiver still asking
        // for a transfer of the previous run is told it is gone.
        let first = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Outgoing {
            sends: Mutex::default(),
            ended: Mutex::default(),
            next_id: AtomicU64::new(first),
            chunk_bytes,
            idle_max,
            stats: Mutex::default(),
        }
    }

    /// Starts sending `db` as it is now to peer `to` (replacing a transfer
    /// to `to` still running); returns its id. `None` when
    /// [`SENDS_MAX`] transfers run or the scan cannot start.
    pub fn start(&self, db: Arc<DB>, to: u64) -> Option<u64> {
        self.expire(Instant::now());
        let replaced = {
            let mut sends = lock(&self.sends);
            let old: Vec<u64> = sends
                .iter()
                .filter(|(_, (peer, _))| *peer == to)
                .map(|(id, _)| *id)
                .collect();
            let old: Vec<_> = old.iter().filter_map(|id| sends.remove(id)).collect();
            if sends.len() >= SENDS_MAX {
                return None;
            }
            old
        };
        drop(replaced);
        let stream = match backup::stream(db, self.chunk_bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a snapshot scan");
                return None;
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let send = Transfer {
            stream,
            next_seq: 0,
            last: None,
            ended_at: None,
            started: now,
            touched: now,
        };
        lock(&self.sends).insert(id, (to, Arc::new(Mutex::new(send))));
        lock(&self.stats).started += 1;
        Some(id)
    }

    /// Answers a chunk request: the next chunk (waiting for the scan to
    /// make it), the last one again, `End`, or `Gone`. Blocks while the
    /// scan makes a chunk: call it off any async runtime's workers.
    pub fn chunk(&self, req: &ChunkRequest) -> SnapshotChunk {
        let Some((to, send)) = lock(&self.sends).get(&req.id).cloned() else {
            return SnapshotChunk::Gone;
        };
        if to != req.to {
            return SnapshotChunk::Gone;
        }
        let mut s = lock(&send);
        s.touched = Instant::now();
        if let Some((seq, bytes)) = &s.last {
            if *seq == req.seq {
                let chunk = bytes.clone();
                self.count(&chunk);
                return SnapshotChunk::Data(chunk);
            }
        }
        if s.ended_at == Some(req.seq) {
            return SnapshotChunk::End;
        }
        if req.seq != s.next_seq {
            return SnapshotChunk::Gone;
        }
        match s.stream.next_blocking() {
            Some(backup::Chunk::Data(bytes)) => {
                s.last = Some((req.seq, bytes.clone()));
                s.next_seq += 1;
                self.count(&bytes);
                SnapshotChunk::Data(bytes)
            }
            Some(backup::Chunk::End(summary)) => {
                failpoint!(crate::failpoints::SNAPSHOT_SAVE);
                tracing::info!(
                    to,
                    id = req.id,
                    objects = summary.objects,
                    bytes = summary.bytes,
                    chunks = req.seq,
                    "a snapshot was sent"
                );
                s.ended_at = Some(req.seq);
                s.last = None;
                lock(&self.ended).push((to, true));
                lock(&self.stats).finished += 1;
                SnapshotChunk::End
            }
            Some(backup::Chunk::Failed(e)) => {
                tracing::error!(error = %e, "cannot scan a snapshot");
                drop(s);
                self.fail(req.id, to);
                SnapshotChunk::Gone
            }
            None => {
                drop(s);
                self.fail(req.id, to);
                SnapshotChunk::Gone
            }
        }
    }

    fn count(&self, chunk: &[u8]) {
        let mut st = lock(&self.stats);
        st.chunks += 1;
        st.bytes += chunk.len() as u64;
        st.chunk_bytes_largest = st.chunk_bytes_largest.max(chunk.len() as u64);
    }

    fn fail(&self, id: u64, to: u64) {
        lock(&self.sends).remove(&id);
        lock(&self.ended).push((to, false));
        lock(&self.stats).failed += 1;
    }

    /// Drops transfers nobody asked a chunk of for `idle_max`, or running
    /// for longer than [`TRANSFER_TIME_MAX`] (a finished one is kept that
    /// long only to answer a repeated last request).
    pub fn expire(&self, now: Instant) {
        let mut gone = Vec::new();
        lock(&self.sends).retain(|id, (to, send)| {
            let s = match send.try_lock() {
                Ok(s) => s,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                // being served: not idle
                Err(std::sync::TryLockError::WouldBlock) => return true,
            };
            let idle = now.duration_since(s.touched) > self.idle_max;
            let old = now.duration_since(s.started) > TRANSFER_TIME_MAX;
            if idle || old {
                if s.ended_at.is_none() {
                    tracing::warn!(to = *to, id, "a snapshot transfer was given up");
                    gone.push(*to);
                }
                return false;
            }
            true
        });
        if !gone.is_empty() {
            lock(&self.stats).failed += gone.len() as u64;
            lock(&self.ended).extend(gone.into_iter().map(|to| (to, false)));
        }
    }

    /// `(to, finished)` of the transfers that ended since the last call.
    pub fn ended(&self) -> Vec<(u64, bool)> {
        std::mem::take(&mut *lock(&self.ended))
    }

    /// Stops every transfer (this peer no longer leads, or stops).
    pub fn clear(&self) {
        let all: Vec<_> = lock(&self.sends).drain().collect();
        drop(all);
        lock(&self.ended).clear();
    }

    /// Transfers running.
    pub fn running(&self) -> usize {
        lock(&self.sends).len()
    }

    /// What was sent so far.
    pub fn stats(&self) -> SendStats {
        *lock(&self.stats)
    }
}

/// Where the snapshot `id` from peer `from` is staged under `data_dir`.
pub fn staged_path(data_dir: &Path, from: u64, id: u64) -> PathBuf {
    data_dir
        .join(STAGING_DIR)
        .join(format!("{from}-{id}.ksnap2"))
}

/// Removes every staged snapshot under `data_dir` but `keep`.
pub fn clear_staging(data_dir: &Path, keep: Option<&Path>) {
    let Ok(entries) = std::fs::read_dir(data_dir.join(STAGING_DIR)) else {
        return;
    };
    for e in entries.flatten() {
        if Some(e.path().as_path()) != keep {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Fetches transfer `id` from peer `from` into the file `path`, one chunk
/// at a time, each asked again up to [`CHUNK_RETRIES`] times, the whole
/// within [`TRANSFER_TIME_MAX`]; then reads the file back to check it.
/// `cancel` stops it between chunks. Returns what the snapshot holds.
pub fn receive(
    fetcher: &dyn SnapshotFetcher,
    (from, to, id): (u64, u64, u64),
    path: &Path,
    cancel: &AtomicBool,
) -> Result<BackupSummary, SnapshotError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let started = Instant::now();
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut seq = 0u64;
    loop {
        if cancel.load(Ordering::Acquire) {
            return Err(SnapshotError::Cancelled);
        }
        if started.elapsed() > TRANSFER_TIME_MAX {
            return Err(SnapshotError::TooLong(TRANSFER_TIME_MAX));
        }
        let req = ChunkRequest { from, to, id, seq };
        let mut attempt = 0;
        let chunk = loop {
            match fetcher.fetch(&req, CHUNK_REQUEST_TIMEOUT) {
                Ok(c) => break c,
                Err(reason) if attempt >= CHUNK_RETRIES || cancel.load(Ordering::Acquire) => {
                    return Err(SnapshotError::Fetch {
                        from,
                        id,
                        seq,
                        reason,
                    })
                }
                Err(_) => attempt += 1,
            }
        };
        match chunk {
            SnapshotChunk::Data(b) if b.len() > backup::CHUNK_BYTES_MAX => {
                return Err(SnapshotError::ChunkTooLarge(b.len()))
            }
            SnapshotChunk::Data(b) => file.write_all(&b)?,
            SnapshotChunk::End => break,
            SnapshotChunk::Gone => return Err(SnapshotError::Gone { from, id }),
        }
        seq += 1;
    }
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    let summary = backup::read_from(std::fs::File::open(path)?, |_| Ok(()), |_, _| Ok(()))
        .map_err(|e| SnapshotError::File(e.to_string()))?;
    tracing::info!(
        from,
        id,
        chunks = seq,
        objects = summary.objects,
        bytes = summary.bytes,
        "received a snapshot"
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::open_db;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let d = Descriptor { id: 7, index: 99 };
        assert_eq!(Descriptor::decode(&d.encode()).expect("descriptor"), d);
        assert!(Descriptor::decode(b"KSNAP1\0\0").is_err());
        assert!(Descriptor::decode(&d.encode()[..20]).is_err());
        let r = ChunkRequest {
            from: 1,
            to: 2,
            id: 3,
            seq: 4,
        };
        assert_eq!(ChunkRequest::decode(&r.encode()).expect("request"), r);
        assert!(ChunkRequest::decode(&r.encode()[1..]).is_err());
        for c in [
            SnapshotChunk::Data(vec![1, 2, 3]),
            SnapshotChunk::End,
            SnapshotChunk::Gone,
        ] {
            assert_eq!(SnapshotChunk::decode(&c.encode()).expect("chunk"), c);
        }
        assert!(SnapshotChunk::decode(&[]).is_err());
        assert!(SnapshotChunk::decode(&[CHUNK_END, 0]).is_err());
        let mut huge = vec![CHUNK_DATA];
        huge.resize(backup::CHUNK_BYTES_MAX + 2, 0);
        assert!(matches!(
            SnapshotChunk::decode(&huge),
            Err(SnapshotError::ChunkTooLarge(_))
        ));
    }

    /// Answers from the sender's [`Outgoing`], losing the first reply to
    /// every third chunk (the receiver asks again).
    struct Lossy {
        out: Outgoing,
        lost: Mutex<std::collections::HashSet<u64>>,
    }

    impl SnapshotFetcher for Lossy {
        fn fetch(&self, req: &ChunkRequest, _: Duration) -> Result<SnapshotChunk, String> {
            let chunk = self.out.chunk(req);
            if req.seq % 3 == 1 && lock(&self.lost).insert(req.seq) {
                return Err(format!("reply to chunk {} lost", req.seq));
            }
            Ok(chunk)
        }
    }

    #[test]
    fn a_transfer_streams_in_bounded_chunks_through_lost_replies() {
        let a = tempfile::tempdir().expect("tempdir");
        let db = open_db(a.path()).expect("db");
        let mut wb = WriteBatch::default();
        wb.put_cf(cf(&db, CF_META).expect("meta"), KEY_REVISION, be(42));
        let objects = cf(&db, CF_OBJECTS).expect("objects");
        for i in 0..300 {
            wb.put_cf(objects, format!("/configmaps/a/c{i:04}"), vec![7u8; 500]);
        }
        db.write(wb).expect("write");
        let fetcher = Lossy {
            out: Outgoing::new(4096, Duration::from_secs(30)),
            lost: Mutex::default(),
        };
        let id = fetcher.out.start(Arc::new(db), 2).expect("a transfer");
        let path = staged_path(a.path(), 1, id);
        let summary =
            receive(&fetcher, (1, 2, id), &path, &AtomicBool::new(false)).expect("received");
        assert_eq!((summary.header.revision, summary.objects), (42, 300));
        assert!(
            lock(&fetcher.lost).len() > 10,
            "replies were lost and asked again"
        );
        assert_eq!(fetcher.out.ended(), vec![(2, true)]);
        // a finished transfer is kept (to answer a repeated last request)
        // until it has been idle for `idle_max`
        assert_eq!(fetcher.out.running(), 1);
        fetcher.out.expire(Instant::now() + Duration::from_secs(31));
        assert_eq!(fetcher.out.running(), 0);
        assert_eq!(fetcher.out.ended(), vec![], "a finished one is not failed");
        // a transfer nobody sends any more is Gone, not an empty snapshot
        let gone = ChunkRequest {
            from: 1,
            to: 2,
            id,
            seq: 0,
        };
        assert_eq!(fetcher.out.chunk(&gone), SnapshotChunk::Gone);
        assert!(matches!(
            receive(&fetcher, (1, 2, id), &path, &AtomicBool::new(false)),
            Err(SnapshotError::Gone { .. })
        ));
    }
}
