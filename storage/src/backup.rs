//! Backup files: `kubus store snapshot save` writes one from a running
//! store, `kubus store snapshot restore` makes a new store's data
//! directory from one. Both sides stream: neither holds the snapshot in
//! memory, so a store larger than RAM can be saved and restored.
//!
//! A backup is a scan of one RocksDB snapshot, like the Raft snapshot a
//! lagging peer receives ([`crate::snapshot`]): the revision, every stream
//! head and every object (the `objects` column family's bytes as they
//! are). The history, the Raft log and the Raft membership are not in it.
//! The format is that snapshot's versioned successor, made for a stream
//! that ends with a count and a checksum:
//!
//! ```text
//! "KSNAP2"
//! revision u64 | applied index u64 | taken at (ms since the epoch) u64
//! heads u32 | (len u32, name, head u64)*
//! (0x01, klen u32, key, vlen u32, value)*      one record per object
//! 0xFF | objects u64 | crc32c u32               over every byte before it
//! ```
//!
//! Integers are big-endian. Reading checks every length against a bound
//! before it allocates, the object count and the CRC-32C (Castagnoli)
//! at the end, and that nothing follows: a file that is not a backup, is
//! cut short, or was damaged is refused with what is wrong and where.
//!
//! - [`write_to`] scans a RocksDB snapshot into any [`Write`].
//! - [`stream`] runs that scan on a thread of its own into a bounded
//!   channel of chunks ([`BackupStream`]): at most [`CHUNKS_AHEAD`] chunks
//!   wait, so a slow reader slows the scan instead of filling memory; the
//!   scan stops when the stream is dropped.
//! - [`read_from`] reads one back, handing over each object, and checks it.
//! - [`restore`] makes a store directory from one: the objects go into
//!   RocksDB in bounded batches, then the state's metadata (the same
//!   staging a peer uses to install a Raft snapshot,
//!   [`crate::snapshot::stage_state`]) and a new Raft group
//!   ([`crate::RocksStorage::stage_restore`]) in one synced batch. It is
//!   built beside the target and renamed into place only once complete
//!   and checked, so a failed restore leaves nothing a store would open.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};
use tokio::sync::mpsc;

use crate::error::StoreError;
use crate::layout::{self, be, cf, read_u64, CF_META, CF_OBJECTS, KEY_APPLIED_INDEX};
use crate::raft_storage::{RocksStorage, RAFT_INIT_INDEX};
use crate::snapshot;

/// The first bytes of every backup file.
pub const MAGIC: &[u8] = b"KSNAP2";
/// Tag of an object record.
const TAG_OBJECT: u8 = 0x01;
/// Tag of the trailer.
const TAG_END: u8 = 0xFF;

/// Longest key a reader accepts (keys are object paths: far shorter).
pub const KEY_BYTES_MAX: usize = 64 * 1024;
/// Longest value a reader accepts (an object is bounded by the store's
/// entry limit, a few MiB).
pub const VALUE_BYTES_MAX: usize = 64 << 20;
/// Most stream heads a reader accepts (one per resource).
pub const HEADS_MAX: u32 = 1 << 16;
/// Longest stream name a reader accepts.
pub const HEAD_NAME_BYTES_MAX: usize = 4096;
/// Default size of the chunks [`stream`] hands out: a quarter of NATS'
/// default payload limit.
pub const CHUNK_BYTES_DEFAULT: usize = 256 * 1024;
/// Largest chunk [`stream`] is allowed to make.
pub const CHUNK_BYTES_MAX: usize = 4 << 20;
/// Chunks [`stream`] makes ahead of its reader, at most.
pub const CHUNKS_AHEAD: usize = 4;
/// A restore writes the objects to RocksDB in batches of about this size.
pub const RESTORE_BATCH_BYTES: usize = 4 << 20;

/// What can go wrong writing, reading or restoring a backup.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The bytes do not start like a backup file.
    #[error("not a kubus snapshot file (it does not start with {magic:?})", magic = String::from_utf8_lossy(MAGIC))]
    NotASnapshot,
    /// The bytes end before the trailer.
    #[error("truncated: it ends at byte {offset} while reading {what} (after {objects} objects); the save did not finish or the copy is incomplete")]
    Truncated {
        /// Bytes read.
        offset: u64,
        /// What was being read.
        what: &'static str,
        /// Objects read before.
        objects: u64,
    },
    /// The checksum at the end does not match the bytes before it.
    #[error("checksum mismatch: the file says crc32c {expected:08x}, its bytes give {found:08x}; it is damaged")]
    Checksum {
        /// What the trailer says.
        expected: u32,
        /// What the bytes give.
        found: u32,
    },
    /// A length, tag or count breaks the format.
    #[error("malformed at byte {offset}: {what}")]
    Malformed {
        /// Where.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The directory a restore would fill is not empty.
    #[error("{} exists and is not empty: a restore makes a new data directory and never overwrites one", .0.display())]
    NotEmpty(PathBuf),
    /// Reading or writing failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    /// The store's database refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rocksdb::Error> for BackupError {
    fn from(e: rocksdb::Error) -> Self {
        BackupError::Store(e.into())
    }
}

pub type Result<T, E = BackupError> = std::result::Result<T, E>;

/// What a backup's header says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupHeader {
    /// The store's revision when it was taken.
    pub revision: u64,
    /// The Raft index the state had applied (of the old Raft group).
    pub applied_index: u64,
    /// When it was taken, ms since the Unix epoch.
    pub taken_ms: u64,
    /// `(stream, head revision)`.
    pub stream_heads: Vec<(String, u64)>,
}

/// What a whole backup held, once written or read and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupSummary {
    pub header: BackupHeader,
    /// Objects (every key of the `objects` column family).
    pub objects: u64,
    /// Bytes of the whole file.
    pub bytes: u64,
    /// The CRC-32C at its end.
    pub crc32c: u32,
}

// ---- CRC-32C --------------------------------------------------------------

/// A running CRC-32C (Castagnoli, the checksum of iSCSI, ext4 and
/// RocksDB's own blocks), by the `crc32c` crate (SSE 4.2 where there is).
#[derive(Debug, Clone, Copy, Default)]
pub struct Crc32c(u32);

impl Crc32c {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0 = crc32c::crc32c_append(self.0, bytes);
    }

    pub fn value(&self) -> u32 {
        self.0
    }
}

// ---- writing --------------------------------------------------------------

/// A writer that counts and checksums what passes through it.
struct Summing<W> {
    inner: W,
    crc: Crc32c,
    bytes: u64,
}

impl<W: Write> Summing<W> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.crc.update(b);
        self.bytes += b.len() as u64;
        self.inner.write_all(b)
    }

    fn put_len(&mut self, what: &str, n: usize, max: usize) -> Result<()> {
        if n > max {
            return Err(BackupError::Malformed {
                offset: self.bytes,
                what: format!("a {n}-byte {what} is over the format's bound of {max}"),
            });
        }
        // n <= max < u32::MAX
        self.put(&(n as u32).to_be_bytes())?;
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Writes the backup of the RocksDB snapshot `snap` of `db` to `out`.
pub fn write_to<W: Write>(db: &DB, snap: &rocksdb::Snapshot<'_>, out: W) -> Result<BackupSummary> {
    let (revision, heads) = snapshot::read_state(db, snap)?;
    let applied_index = match snap.get_cf(cf(db, CF_META)?, KEY_APPLIED_INDEX)? {
        Some(v) => read_u64("applied index", &v).map_err(StoreError::from)?,
        None => 0,
    };
    let mut w = Summing {
        inner: out,
        crc: Crc32c::default(),
        bytes: 0,
    };
    let taken_ms = now_ms();
    w.put(MAGIC)?;
    w.put(&be(revision))?;
    w.put(&be(applied_index))?;
    w.put(&be(taken_ms))?;
    let count = u32::try_from(heads.len())
        .ok()
        .filter(|n| *n <= HEADS_MAX)
        .ok_or_else(|| BackupError::Malformed {
            offset: w.bytes,
            what: format!(
                "{} stream heads are over the bound of {HEADS_MAX}",
                heads.len()
            ),
        })?;
    w.put(&count.to_be_bytes())?;
    let mut stream_heads = Vec::with_capacity(heads.len());
    for (name, head) in &heads {
        w.put_len("stream name", name.len(), HEAD_NAME_BYTES_MAX)?;
        w.put(name)?;
        w.put(&be(*head))?;
        stream_heads.push((String::from_utf8_lossy(name).into_owned(), *head));
    }
    let mut objects = 0u64;
    for item in snap.iterator_cf(cf(db, CF_OBJECTS)?, IteratorMode::Start) {
        let (k, v) = item?;
        w.put(&[TAG_OBJECT])?;
        w.put_len("key", k.len(), KEY_BYTES_MAX)?;
        w.put(&k)?;
        w.put_len("value", v.len(), VALUE_BYTES_MAX)?;
        w.put(&v)?;
        objects += 1;
    }
    w.put(&[TAG_END])?;
    w.put(&be(objects))?;
    let crc = w.crc.value();
    w.inner.write_all(&crc.to_be_bytes())?;
    w.inner.flush()?;
    Ok(BackupSummary {
        header: BackupHeader {
            revision,
            applied_index,
            taken_ms,
            stream_heads,
        },
        objects,
        bytes: w.bytes + 4,
        crc32c: crc,
    })
}

/// One item of a [`BackupStream`].
#[derive(Debug)]
pub enum Chunk {
    /// The next bytes of the file (at most the stream's chunk size).
    Data(Vec<u8>),
    /// The file is complete: what it holds. Nothing follows.
    End(BackupSummary),
    /// The scan failed; nothing follows.
    Failed(String),
}

/// The chunks of a backup being made on a thread of its own, at most
/// [`CHUNKS_AHEAD`] ahead of [`BackupStream::next`]. Dropping it stops
/// the scan (and releases its RocksDB snapshot) at its next chunk.
#[derive(Debug)]
pub struct BackupStream {
    rx: mpsc::Receiver<Chunk>,
    /// The scan's thread, joined on drop (it holds the database open).
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for BackupStream {
    /// Stops the scan and waits for its thread, which ends at its next
    /// chunk: the database is let go of when the stream is.
    fn drop(&mut self) {
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl BackupStream {
    /// The next chunk; `None` if the scan ended without saying how (its
    /// thread died): treat as failed.
    pub async fn next(&mut self) -> Option<Chunk> {
        self.rx.recv().await
    }

    /// [`BackupStream::next`] for a caller outside an async runtime.
    pub fn next_blocking(&mut self) -> Option<Chunk> {
        self.rx.blocking_recv()
    }
}

/// An [`io::Write`] that cuts what it is given into chunks of
/// `chunk_bytes` and sends each into the channel, waiting while
/// [`CHUNKS_AHEAD`] are queued; fails once the reader is gone.
struct ChunkSender {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
    chunk_bytes: usize,
}

impl ChunkSender {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(self.chunk_bytes));
        self.tx
            .blocking_send(Chunk::Data(full))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the backup's reader is gone"))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let room = self.chunk_bytes - self.buf.len();
        let n = b.len().min(room);
        self.buf.extend_from_slice(&b[..n]);
        if self.buf.len() >= self.chunk_bytes {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

/// Starts making a backup of `db` as it is now, in chunks of
/// `chunk_bytes` (clamped to 1..=[`CHUNK_BYTES_MAX`]). Returns once the
/// scan's thread holds its RocksDB snapshot (microseconds), so the
/// backup is exactly the state at the call: the Raft thread, which starts
/// the stream of a Raft snapshot between two apply batches, may apply
/// more as soon as this returns.
pub fn stream(db: Arc<DB>, chunk_bytes: usize) -> Result<BackupStream> {
    let chunk_bytes = chunk_bytes.clamp(1, CHUNK_BYTES_MAX);
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    let (taken_tx, taken_rx) = std::sync::mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("kubus-backup".into())
        .spawn(move || {
            let snap = db.snapshot();
            let _ = taken_tx.send(());
            let mut out = ChunkSender {
                tx: tx.clone(),
                buf: Vec::with_capacity(chunk_bytes),
                chunk_bytes,
            };
            let last = match write_to(&db, &snap, &mut out) {
                Ok(summary) => Chunk::End(summary),
                Err(BackupError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => return,
                Err(e) => Chunk::Failed(e.to_string()),
            };
            drop(snap);
            let _ = tx.blocking_send(last);
        })?;
    let _ = taken_rx.recv();
    Ok(BackupStream {
        rx,
        thread: Some(thread),
    })
}

// ---- reading --------------------------------------------------------------

/// A reader that checksums and counts what it reads, and turns an early
/// end into [`BackupError::Truncated`].
struct Checked<R> {
    inner: R,
    crc: Crc32c,
    offset: u64,
    objects: u64,
}

impl<R: BufRead> Checked<R> {
    fn exact(&mut self, what: &'static str, buf: &mut [u8]) -> Result<()> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.crc.update(buf);
                self.offset += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(BackupError::Truncated {
                offset: self.offset,
                what,
                objects: self.objects,
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn u8(&mut self, what: &'static str) -> Result<u8> {
        let mut b = [0u8; 1];
        self.exact(what, &mut b)?;
        Ok(b[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32> {
        let mut b = [0u8; 4];
        self.exact(what, &mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64> {
        let mut b = [0u8; 8];
        self.exact(what, &mut b)?;
        Ok(u64::from_be_bytes(b))
    }

    /// A length-prefixed byte string of at most `max` bytes, into `buf`.
    fn bytes_into(&mut self, what: &'static str, max: usize, buf: &mut Vec<u8>) -> Result<()> {
        let at = self.offset;
        let n = self.u32(what)? as usize;
        if n > max {
            return Err(BackupError::Malformed {
                offset: at,
                what: format!("a {n}-byte {what} is over the format's bound of {max}"),
            });
        }
        buf.clear();
        buf.resize(n, 0);
        self.exact(what, buf)
    }
}

/// Reads a backup from `input`: its header to `on_header`, then each
/// object to `on_object`, then checks the count, the checksum and that
/// nothing follows. Only one object is in memory at a time. The callbacks
/// may fail (a write to a database); their error ends the read.
pub fn read_from<R: Read>(
    input: R,
    mut on_header: impl FnMut(&BackupHeader) -> Result<()>,
    mut on_object: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<BackupSummary> {
    let mut r = Checked {
        inner: BufReader::with_capacity(256 * 1024, input),
        crc: Crc32c::default(),
        offset: 0,
        objects: 0,
    };
    let mut magic = [0u8; 6];
    match r.exact("the format's name", &mut magic) {
        Err(BackupError::Truncated { .. }) => return Err(BackupError::NotASnapshot),
        other => other?,
    }
    if magic != MAGIC {
        return Err(BackupError::NotASnapshot);
    }
    let revision = r.u64("the revision")?;
    let applied_index = r.u64("the applied index")?;
    let taken_ms = r.u64("the time taken")?;
    let at = r.offset;
    let count = r.u32("the stream count")?;
    if count > HEADS_MAX {
        return Err(BackupError::Malformed {
            offset: at,
            what: format!("{count} stream heads are over the bound of {HEADS_MAX}"),
        });
    }
    let mut stream_heads = Vec::with_capacity(count.min(1024) as usize);
    let mut key = Vec::new();
    let mut value = Vec::new();
    for _ in 0..count {
        let at = r.offset;
        r.bytes_into("stream name", HEAD_NAME_BYTES_MAX, &mut key)?;
        let name = String::from_utf8(key.clone()).map_err(|_| BackupError::Malformed {
            offset: at,
            what: "a stream name is not UTF-8".into(),
        })?;
        stream_heads.push((name, r.u64("a stream head")?));
    }
    let header = BackupHeader {
        revision,
        applied_index,
        taken_ms,
        stream_heads,
    };
    on_header(&header)?;
    loop {
        let at = r.offset;
        match r.u8("a record tag")? {
            TAG_OBJECT => {
                r.bytes_into("key", KEY_BYTES_MAX, &mut key)?;
                r.bytes_into("value", VALUE_BYTES_MAX, &mut value)?;
                on_object(&key, &value)?;
                r.objects += 1;
            }
            TAG_END => break,
            tag => {
                return Err(BackupError::Malformed {
                    offset: at,
                    what: format!("unknown record tag {tag:#04x}"),
                })
            }
        }
    }
    let at = r.offset;
    let said = r.u64("the object count")?;
    if said != r.objects {
        return Err(BackupError::Malformed {
            offset: at,
            what: format!(
                "the trailer counts {said} objects, the file holds {}",
                r.objects
            ),
        });
    }
    let found = r.crc.value();
    let expected = r.u32("the checksum")?;
    if expected != found {
        return Err(BackupError::Checksum { expected, found });
    }
    let mut extra = [0u8; 1];
    if r.inner.read(&mut extra)? != 0 {
        return Err(BackupError::Malformed {
            offset: r.offset,
            what: "bytes follow the checksum".into(),
        });
    }
    Ok(BackupSummary {
        header,
        objects: r.objects,
        bytes: r.offset,
        crc32c: expected,
    })
}

// ---- restoring ------------------------------------------------------------

/// Whether `dir` may be made by a restore: absent, or an empty directory.
fn fillable(dir: &Path) -> Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Where a restore into `dir` is built: beside it, hidden.
fn staging_dir(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    dir.with_file_name(format!(".{name}.restoring"))
}

/// Makes the store directory `dir` (absent or empty; else
/// [`BackupError::NotEmpty`]) from the backup read from `input`, as a new
/// Raft group whose only voters are `voters` (a new single-peer store:
/// `[1]`). Returns what the backup held.
pub fn restore<R: Read>(input: R, dir: &Path, voters: Vec<u64>) -> Result<BackupSummary> {
    if !fillable(dir)? {
        return Err(BackupError::NotEmpty(dir.to_path_buf()));
    }
    let staging = staging_dir(dir);
    if staging.exists() {
        // left by a restore that did not finish: ours to remove
        std::fs::remove_dir_all(&staging)?;
    }
    let built = build_store(input, &staging, voters);
    let summary = match built {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    if dir.exists() {
        std::fs::remove_dir(dir)?; // empty, checked above
    }
    std::fs::rename(&staging, dir)?;
    if let Some(parent) = dir.parent() {
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
    Ok(summary)
}

/// Replaces every object of `db` by the objects of the backup read from
/// `input`, in unsynced batches of about [`RESTORE_BATCH_BYTES`] (the
/// first also clears the history and the stream heads:
/// [`snapshot::stage_clear`]); returns what the backup held and a batch
/// of the last objects, not yet written. The caller stages the state
/// after them ([`snapshot::stage_state`]) in that batch and writes it
/// synced, which makes the earlier batches durable too. Used by
/// [`restore`] and by a peer installing a Raft snapshot it received.
pub(crate) fn write_objects<R: Read>(db: &DB, input: R) -> Result<(BackupSummary, WriteBatch)> {
    let mut wb = WriteBatch::default();
    snapshot::stage_clear(db, &mut wb)?;
    let objects = cf(db, CF_OBJECTS)?;
    let mut unsynced = WriteOptions::default();
    unsynced.set_sync(false);
    let summary = read_from(
        input,
        |_| Ok(()),
        |k, v| {
            wb.put_cf(objects, k, v);
            if wb.size_in_bytes() >= RESTORE_BATCH_BYTES {
                db.write_opt(std::mem::take(&mut wb), &unsynced)?;
            }
            Ok(())
        },
    )?;
    Ok((summary, wb))
}

fn build_store<R: Read>(input: R, staging: &Path, voters: Vec<u64>) -> Result<BackupSummary> {
    std::fs::create_dir_all(staging)?;
    let db = Arc::new(layout::open_db(staging)?);
    let (summary, mut wb) = write_objects(&db, input)?;
    let h = &summary.header;
    snapshot::stage_state(&db, &mut wb, h.revision, &h.stream_heads)?;
    wb.put_cf(cf(&db, CF_META)?, KEY_APPLIED_INDEX, be(RAFT_INIT_INDEX));
    let mut storage = RocksStorage::load(Arc::clone(&db))?;
    storage.stage_restore(&mut wb, voters)?;
    let mut synced = WriteOptions::default();
    synced.set_sync(true);
    // The objects' batches went to RocksDB's write-ahead log unsynced;
    // this synced write makes them durable with it.
    db.write_opt(wb, &synced)?;
    drop(storage);
    match Arc::try_unwrap(db) {
        Ok(db) => drop(db),
        Err(_) => {
            return Err(StoreError::Corrupt("the restored database is still in use".into()).into())
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::layout::{open_db, stream_head_key, KEY_REVISION};

    #[test]
    fn crc32c_of_the_standard_check_string() {
        let mut c = Crc32c::default();
        c.update(b"123456789");
        assert_eq!(c.value(), 0xE306_9283);
        let mut split = Crc32c::default();
        split.update(b"1234");
        split.update(b"56789");
        assert_eq!(split.value(), c.value());
        assert_eq!(Crc32c::default().value(), 0);
    }

    fn sample_db(dir: &Path, objects: usize) -> DB {
        let db = open_db(dir).expect("db");
        let mut wb = WriteBatch::default();
        let meta = cf(&db, CF_META).expect("meta");
        wb.put_cf(meta, KEY_REVISION, be(42));
        wb.put_cf(meta, KEY_APPLIED_INDEX, be(77));
        wb.put_cf(meta, stream_head_key("pods"), be(40));
        wb.put_cf(meta, stream_head_key("configmaps"), be(41));
        let o = cf(&db, CF_OBJECTS).expect("objects");
        for i in 0..objects {
            wb.put_cf(
                o,
                format!("/configmaps/default/c{i:05}"),
                vec![(i % 251) as u8; 100 + i],
            );
        }
        db.write(wb).expect("write");
        db
    }

    fn backup_bytes(db: &DB) -> (Vec<u8>, BackupSummary) {
        let mut out = Vec::new();
        let s = write_to(db, &db.snapshot(), &mut out).expect("write");
        (out, s)
    }

    type Objects = Vec<(Vec<u8>, Vec<u8>)>;

    /// Revision, stream heads and every object, as `db` has them now.
    fn state_of(db: &DB) -> (u64, snapshot::StreamHeads, Objects) {
        let snap = db.snapshot();
        let (revision, heads) = snapshot::read_state(db, &snap).expect("state");
        let objects = snap
            .iterator_cf(
                cf(db, CF_OBJECTS).expect("objects"),
                rocksdb::IteratorMode::Start,
            )
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("object"))
            .collect();
        (revision, heads, objects)
    }

    fn read(bytes: &[u8]) -> Result<(BackupSummary, Objects)> {
        let mut objects = Vec::new();
        let s = read_from(
            bytes,
            |_| Ok(()),
            |k, v| {
                objects.push((k.to_vec(), v.to_vec()));
                Ok(())
            },
        )?;
        Ok((s, objects))
    }

    #[test]
    fn a_backup_reads_back_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sample_db(dir.path(), 50);
        let (bytes, written) = backup_bytes(&db);
        assert_eq!(written.bytes, bytes.len() as u64);
        assert_eq!(written.objects, 50);
        let (read_back, objects) = read(&bytes).expect("read");
        assert_eq!(read_back, written);
        assert_eq!(read_back.header.revision, 42);
        assert_eq!(read_back.header.applied_index, 77);
        assert_eq!(
            read_back.header.stream_heads,
            vec![("configmaps".to_string(), 41), ("pods".to_string(), 40)]
        );
        assert_eq!(objects.len(), 50);
        assert_eq!(objects[3].0, b"/configmaps/default/c00003".to_vec());
        assert_eq!(objects[3].1, vec![3u8; 103]);
    }

    /// Every cut of the file is refused as truncated (or, cut inside the
    /// magic, as not a snapshot); no cut reads as a smaller backup.
    #[test]
    fn every_truncation_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sample_db(dir.path(), 3);
        let (bytes, _) = backup_bytes(&db);
        for cut in 0..bytes.len() {
            match read(&bytes[..cut]) {
                Err(BackupError::NotASnapshot) => assert!(cut < MAGIC.len(), "cut {cut}"),
                Err(BackupError::Truncated { offset, .. }) => {
                    assert!(offset as usize <= cut, "cut {cut} reported at {offset}")
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(matches!(read(&extra), Err(BackupError::Malformed { .. })));
    }

    /// Any one flipped bit is refused (by the checksum, or earlier by a
    /// length or tag it made impossible).
    #[test]
    fn every_flipped_bit_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sample_db(dir.path(), 3);
        let (bytes, _) = backup_bytes(&db);
        for i in 0..bytes.len() {
            for bit in [0u8, 3, 7] {
                let mut damaged = bytes.clone();
                damaged[i] ^= 1 << bit;
                assert!(read(&damaged).is_err(), "byte {i} bit {bit} went unnoticed");
            }
        }
        let mut last = bytes.clone();
        let n = last.len();
        last[n - 1] ^= 0x10;
        assert!(matches!(read(&last), Err(BackupError::Checksum { .. })));
    }

    #[test]
    fn other_files_are_named_for_what_they_are() {
        assert!(matches!(read(b""), Err(BackupError::NotASnapshot)));
        assert!(matches!(
            read(b"hello world, not a backup"),
            Err(BackupError::NotASnapshot)
        ));
        // a length over the bound is refused before anything is allocated
        let mut huge = Vec::from(MAGIC);
        huge.extend_from_slice(&[0u8; 24]);
        huge.extend_from_slice(&0u32.to_be_bytes());
        huge.push(TAG_OBJECT);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(read(&huge), Err(BackupError::Malformed { .. })));
    }

    /// The stream's chunks are the file `write_to` makes, none larger than
    /// asked, ending with its summary.
    #[test]
    fn the_stream_is_the_file_in_bounded_chunks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(sample_db(dir.path(), 200));
        let (whole, summary) = backup_bytes(&db);
        let mut s = stream(Arc::clone(&db), 1000).expect("stream");
        let mut got = Vec::new();
        let mut chunks = 0;
        let end = loop {
            match s.next_blocking() {
                Some(Chunk::Data(c)) => {
                    assert!(!c.is_empty() && c.len() <= 1000);
                    chunks += 1;
                    got.extend_from_slice(&c);
                }
                Some(Chunk::End(s)) => break s,
                other => panic!("{other:?}"),
            }
        };
        assert!(chunks > 20);
        assert_eq!(end.objects, summary.objects);
        assert_eq!(end.bytes, got.len() as u64);
        // the same bytes but for the time it was taken (and so the crc)
        assert_eq!(got.len(), whole.len());
        assert_eq!(read(&got).expect("read").0.objects, 200);
        // a reader that goes away stops the scan
        let mut s = stream(Arc::clone(&db), 100).expect("stream");
        assert!(matches!(s.next_blocking(), Some(Chunk::Data(_))));
        drop(s);
    }

    #[test]
    fn a_restore_makes_a_new_single_voter_store() {
        let a = tempfile::tempdir().expect("tempdir");
        let db = sample_db(a.path(), 20);
        let (bytes, _) = backup_bytes(&db);
        let b = tempfile::tempdir().expect("tempdir");
        let target = b.path().join("data").join("store");
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        let s = restore(bytes.as_slice(), &target, vec![1]).expect("restore");
        assert_eq!((s.header.revision, s.objects), (42, 20));
        assert!(!staging_dir(&target).exists());

        let restored = Arc::new(open_db(&target).expect("open"));
        assert_eq!(state_of(&restored), state_of(&db));
        assert_eq!(
            layout::meta_u64(&restored, layout::KEY_HISTORY_COMPACTED_TO, "c").expect("c"),
            42
        );
        let storage = RocksStorage::load(Arc::clone(&restored)).expect("load");
        assert_eq!(storage.conf_state().voters, vec![1]);
        assert_eq!(storage.hard_state().commit, RAFT_INIT_INDEX);
        assert_eq!(storage.first_log_index(), RAFT_INIT_INDEX + 1);
        drop(storage);
        drop(restored);

        // never into a store that has something in it
        assert!(matches!(
            restore(bytes.as_slice(), &target, vec![1]),
            Err(BackupError::NotEmpty(_))
        ));
        // a damaged file leaves nothing behind
        let fresh = b.path().join("other");
        let mut damaged = bytes.clone();
        let n = damaged.len();
        damaged[n / 2] ^= 0xff;
        assert!(restore(damaged.as_slice(), &fresh, vec![1]).is_err());
        assert!(!fresh.exists());
        assert!(!staging_dir(&fresh).exists());
    }
}
