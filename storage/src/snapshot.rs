//! Snapshots of the state machine: what a lagging or new peer receives
//! instead of log entries that were compacted away.
//!
//! A snapshot is a scan of one RocksDB snapshot: the store's revision, every
//! stream head, and every object (the `objects` column family's bytes as
//! they are, so nothing is decoded and re-encoded). The history is not sent:
//! the receiving peer records its history as compacted up to the
//! snapshot's revision, so a watcher asking it for older changes relists
//! (exactly as after history retention). The Raft metadata (index, term,
//! ConfState) travels beside the data in raft-rs's `SnapshotMetadata`.
//!
//! The format is length-prefixed and versioned:
//!
//! ```text
//! "KSNAP1" | revision u64 | heads u32 | (len u32, name, head u64)* | (klen u32, key, vlen u32, value)*
//! ```
//!
//! It is built in memory (raft-rs hands a snapshot around as one `Bytes`),
//! on a thread of its own from a RocksDB snapshot taken between two apply
//! batches (see `RocksStorage`'s `raft::Storage::snapshot`), and sent by the
//! transport in chunks under the NATS payload limit.

use rocksdb::{IteratorMode, ReadOptions, WriteBatch, DB};

use crate::error::{CodecError, StoreError};
use crate::layout::{
    be, cf, prefix_end, read_u64, CF_HISTORY, CF_HISTORY_NEXT, CF_HISTORY_TIME, CF_META,
    CF_OBJECTS, KEY_HISTORY_COMPACTED_TO, KEY_REVISION, STREAM_HEAD_PREFIX,
};

const MAGIC: &[u8] = b"KSNAP1";

/// What a snapshot carries besides the Raft metadata.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SnapshotData {
    /// The store's revision at the snapshot's index.
    pub revision: u64,
    /// `(stream, head revision)`.
    pub stream_heads: Vec<(String, u64)>,
    /// `(key, encoded KeyValue)` from the `objects` column family.
    pub objects: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Scans the applied state of `db` into snapshot bytes (one consistent
/// RocksDB snapshot).
pub fn build(db: &DB) -> Result<Vec<u8>, StoreError> {
    build_from(db, &db.snapshot())
}

/// Scans the RocksDB snapshot `snap` of `db` into snapshot bytes.
pub fn build_from(db: &DB, snap: &rocksdb::Snapshot<'_>) -> Result<Vec<u8>, StoreError> {
    let (revision, heads) = read_state(db, snap)?;
    let mut out = Vec::with_capacity(64 * 1024);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&be(revision));
    out.extend_from_slice(&(heads.len() as u32).to_be_bytes());
    for (name, head) in &heads {
        put_bytes(&mut out, name)?;
        out.extend_from_slice(&be(*head));
    }
    for item in snap.iterator_cf(cf(db, CF_OBJECTS)?, IteratorMode::Start) {
        let (k, v) = item?;
        put_bytes(&mut out, &k)?;
        put_bytes(&mut out, &v)?;
    }
    Ok(out)
}

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

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(b.len()).map_err(|_| {
        StoreError::Corrupt(format!("a {}-byte value cannot be snapshotted", b.len()))
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], CodecError> {
        if self.b.len() < n {
            return Err(CodecError::Length {
                what,
                expected: n,
                found: self.b.len(),
            });
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        read_u64(what, self.take(what, 8)?)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let b = self.take(what, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], CodecError> {
        let n = self.u32(what)? as usize;
        self.take(what, n)
    }
}

/// Parses snapshot bytes made by [`build`].
pub fn parse(bytes: &[u8]) -> Result<SnapshotData, StoreError> {
    let mut stream_heads = Vec::new();
    let mut objects = Vec::new();
    let revision = walk(
        bytes,
        |name, head| stream_heads.push((name.to_string(), head)),
        |k, v| objects.push((k.to_vec(), v.to_vec())),
    )?;
    Ok(SnapshotData {
        revision,
        stream_heads,
        objects,
    })
}

/// Checks that `bytes` parse, without keeping anything: a snapshot from
/// the network is checked before Raft sees it, so that a damaged one is
/// dropped (and sent again) instead of stopping the peer at install.
pub fn check(bytes: &[u8]) -> Result<(), StoreError> {
    walk(bytes, |_, _| {}, |_, _| {}).map(|_| ())
}

/// Reads snapshot bytes, handing each stream head and object to the
/// callbacks; returns the revision.
fn walk(
    bytes: &[u8],
    mut on_head: impl FnMut(&str, u64),
    mut on_object: impl FnMut(&[u8], &[u8]),
) -> Result<u64, StoreError> {
    let mut r = Reader { b: bytes };
    if r.take("snapshot magic", MAGIC.len())? != MAGIC {
        return Err(StoreError::Corrupt("snapshot has an unknown format".into()));
    }
    let revision = r.u64("snapshot revision")?;
    let n = r.u32("snapshot stream count")?;
    for _ in 0..n {
        let name = std::str::from_utf8(r.bytes("snapshot stream name")?)
            .map_err(|_| StoreError::Corrupt("snapshot stream name is not UTF-8".into()))?;
        on_head(name, r.u64("snapshot stream head")?);
    }
    while !r.b.is_empty() {
        let k = r.bytes("snapshot key")?;
        let v = r.bytes("snapshot value")?;
        on_object(k, v);
    }
    Ok(revision)
}

/// Stages the replacement of the whole state machine by `data`: objects,
/// stream heads, revision, and a history that starts after the snapshot's
/// revision. (The applied index and the Raft state are staged by the
/// caller in the same batch.)
pub fn stage_install(db: &DB, wb: &mut WriteBatch, data: &SnapshotData) -> Result<(), StoreError> {
    stage_clear(db, wb)?;
    let objects = cf(db, CF_OBJECTS)?;
    for (k, v) in &data.objects {
        wb.put_cf(objects, k, v);
    }
    stage_state(db, wb, data.revision, &data.stream_heads)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::open_db;

    #[test]
    fn build_parse_install_round_trip() {
        let a = tempfile::tempdir().expect("tempdir");
        let db = open_db(a.path()).expect("db");
        let mut wb = WriteBatch::default();
        let meta = cf(&db, CF_META).expect("meta");
        wb.put_cf(meta, KEY_REVISION, be(42));
        wb.put_cf(meta, crate::layout::stream_head_key("pods"), be(40));
        let objects = cf(&db, CF_OBJECTS).expect("objects");
        wb.put_cf(objects, b"/pods/a/b", b"v1");
        wb.put_cf(objects, b"/svc/a/b", vec![0xffu8; 3000]);
        db.write(wb).expect("write");
        let bytes = build(&db).expect("build");
        let data = parse(&bytes).expect("parse");
        assert_eq!(data.revision, 42);
        assert_eq!(data.stream_heads, vec![("pods".to_string(), 40)]);
        assert_eq!(data.objects.len(), 2);
        assert!(parse(&bytes[..bytes.len() - 1]).is_err(), "truncated");
        assert!(check(&bytes).is_ok());
        assert!(check(&bytes[..bytes.len() - 1]).is_err(), "truncated");
        assert!(check(b"KSNAP0").is_err(), "magic");

        let b = tempfile::tempdir().expect("tempdir");
        let db2 = open_db(b.path()).expect("db");
        let mut wb = WriteBatch::default();
        wb.put_cf(cf(&db2, CF_OBJECTS).expect("objects"), b"/old/x/y", b"gone");
        db2.write(wb).expect("write");
        let mut wb = WriteBatch::default();
        stage_install(&db2, &mut wb, &data).expect("install");
        db2.write(wb).expect("write");
        assert_eq!(parse(&build(&db2).expect("build")).expect("parse"), data);
    }
}
