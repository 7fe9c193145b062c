//! `kubus store snapshot save | status | restore`: backups of a cluster's
//! store (docs/backup.md).
//!
//! - `save FILE` pulls a backup file from the store leader (or `--peer`)
//!   over the bus ([`kubus_bus::backup::save`]) into `FILE.tmp`, one chunk
//!   at a time, syncs it, reads it back to check its count and checksum
//!   ([`kubus_storage::backup::read_from`]), and only then renames it to
//!   FILE. Nothing is held in memory beyond one chunk.
//! - `status FILE` checks a file and says what it holds.
//! - `restore FILE --data-dir DIR` (offline) makes DIR a new single-peer
//!   store's data directory ([`kubus_storage::backup::restore`]): DIR must
//!   be absent or empty.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use kubus_bus::protocol::PeerStatus;
use kubus_bus::Client;
use kubus_storage::backup::{self, BackupSummary};

use crate::cli::SnapshotCommand;

/// The voters of a restored store: one peer, id 1 (what `kubus up` and a
/// `kubus node --roles store` without `--peer-id` run as).
pub const RESTORED_VOTERS: [u64; 1] = [1];

/// The peer a save reads from: the one asked for, else the leader.
pub fn save_source(peers: &[PeerStatus], asked: Option<u64>) -> Result<u64, String> {
    if let Some(p) = asked {
        return Ok(p);
    }
    if peers.is_empty() {
        return Err("no store peer answered (is a store role running on this bus?)".into());
    }
    crate::store_admin::leader_of(peers).ok_or_else(|| {
        format!(
            "no store leader known to the {} peer(s) that answered; try again after the election, or pass --peer N",
            peers.len()
        )
    })
}

/// Where a save writes before the file is complete and checked.
pub fn tmp_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Syncs the directory holding `path`, so that a rename into it lasts.
fn sync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(parent) {
        let _ = d.sync_all();
    }
}

/// One line for a summary.
fn describe(s: &BackupSummary) -> String {
    format!(
        "revision {}, {} objects, {} bytes, crc32c {:08x}",
        s.header.revision, s.objects, s.bytes, s.crc32c
    )
}

pub async fn save(
    client: &Client,
    peers: &[PeerStatus],
    file: &Path,
    peer: Option<u64>,
) -> anyhow::Result<()> {
    let from = save_source(peers, peer).map_err(|e| anyhow!(e))?;
    let tmp = tmp_path(file);
    let started = Instant::now();
    let out = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let pulled = kubus_bus::backup::save(client, from, |chunk| out.write_all(chunk)).await;
    let finished = pulled.map_err(anyhow::Error::from).and_then(|_| {
        let f = out.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        Ok(())
    });
    if let Err(e) = finished {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context(format!(
            "saving a snapshot to {} from store peer {from}",
            file.display()
        )));
    }
    let check = std::fs::File::open(&tmp)
        .map_err(backup::BackupError::from)
        .and_then(|f| backup::read_from(f, |_| Ok(()), |_, _| Ok(())));
    let summary = match check {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            bail!(
                "the snapshot store peer {from} sent is not sound ({}: {e}); nothing saved",
                tmp.display()
            );
        }
    };
    std::fs::rename(&tmp, file)
        .with_context(|| format!("renaming {} to {}", tmp.display(), file.display()))?;
    sync_parent(file);
    let took = started.elapsed();
    println!(
        "Snapshot saved at {} from store peer {from}: {} in {:.2} s ({:.1} MB/s)",
        file.display(),
        describe(&summary),
        took.as_secs_f64(),
        summary.bytes as f64 / 1e6 / took.as_secs_f64().max(1e-3)
    );
    Ok(())
}

/// `status` and `restore`: no cluster, only files.
pub fn offline(cmd: SnapshotCommand) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Status { file } => status(&file),
        SnapshotCommand::Restore { file, data_dir } => restore(&file, &data_dir),
        SnapshotCommand::Save { .. } => bail!("`save` needs a running cluster"),
    }
}

fn open(file: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))
}

fn status(file: &Path) -> anyhow::Result<()> {
    let s = backup::read_from(open(file)?, |_| Ok(()), |_, _| Ok(()))
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    let taken = UNIX_EPOCH + Duration::from_millis(s.header.taken_ms);
    let taken = jiff::Timestamp::try_from(taken)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| format!("{} ms after the epoch", s.header.taken_ms));
    println!(
        "{}: a sound kubus snapshot: {}; taken {taken}; {} streams; applied Raft index {}",
        file.display(),
        describe(&s),
        s.header.stream_heads.len(),
        s.header.applied_index
    );
    Ok(())
}

/// Whether `dir` is absent or an empty directory.
fn fillable(dir: &Path) -> anyhow::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(anyhow!("reading {}: {e}", dir.display())),
    }
}

fn restore(file: &Path, data_dir: &Path) -> anyhow::Result<()> {
    if !fillable(data_dir)? {
        bail!(
            "{} is not empty: a restore makes a new data directory and never overwrites one (give an absent or empty --data-dir)",
            data_dir.display()
        );
    }
    let input = open(file)?;
    let existed = data_dir.exists();
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let store_dir = data_dir.join("store");
    let restored = backup::restore(input, &store_dir, RESTORED_VOTERS.to_vec());
    let s = match restored {
        Ok(s) => s,
        Err(e) => {
            if !existed {
                let _ = std::fs::remove_dir(data_dir);
            }
            bail!("{}: {e}; nothing restored", file.display());
        }
    };
    println!(
        "Restored {} into {}: {}.\nA new store of one peer (peer 1), history compacted at revision {}. Start it with\n  kubus up --data-dir {}\nor  kubus node --roles store[,control,worker] --data-dir {} --nats URL…",
        file.display(),
        data_dir.display(),
        describe(&s),
        s.header.revision,
        data_dir.display(),
        data_dir.display()
    );
    println!(
        "Its Secrets are sealed with the saved cluster's keys: copy that cluster's {} into {} first (or give it with --encryption-provider-config).",
        crate::mesh::ENCRYPTION_CONFIG_FILE,
        data_dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, is_leader: bool) -> PeerStatus {
        PeerStatus {
            peer_id: id,
            is_leader,
            leader: Some(2),
            term: 3,
            revision: 5,
            applied_index: 7,
            first_log_index: 1,
            last_log_index: 7,
            proposals_in_flight: 0,
            voters: vec![1, 2, 3],
        }
    }

    #[test]
    fn a_save_reads_from_the_leader_unless_told() {
        let peers = [peer(1, false), peer(2, true), peer(3, false)];
        assert_eq!(save_source(&peers, None), Ok(2));
        assert_eq!(save_source(&peers, Some(3)), Ok(3));
        assert!(save_source(&[], None).is_err());
        assert!(save_source(&[peer(1, false)], None).is_err());
    }

    #[test]
    fn the_temporary_file_is_beside_the_file() {
        assert_eq!(tmp_path(Path::new("/b/x.db")), PathBuf::from("/b/x.db.tmp"));
        assert_eq!(tmp_path(Path::new("x")), PathBuf::from("x.tmp"));
    }

    #[test]
    fn only_absent_or_empty_directories_are_restored_into() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(fillable(&d.path().join("absent")).expect("absent"));
        assert!(fillable(d.path()).expect("empty"));
        std::fs::write(d.path().join("f"), b"x").expect("write");
        assert!(!fillable(d.path()).expect("full"));
    }
}
