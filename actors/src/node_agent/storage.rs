//! The node's side of local-path volumes: their directories live under
//! [`super::storage_root`], made when a pod first mounts its claim
//! (hostPath `DirectoryOrCreate`). When a volume with reclaim policy
//! `Delete` is deleted, its directory goes too: a periodic sweep removes
//! every volume directory no PersistentVolume names any more (as k3s'
//! local-path provisioner removes a volume's directory on delete).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kubus_api::Kind;
use kubus_bus::Client;

/// How often the node looks for directories of deleted volumes.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
/// Most directories one sweep removes.
pub const SWEEP_REMOVALS_MAX: usize = 64;

/// The volume directories under `root` that no volume path names (pure).
pub fn orphans(dirs: &[PathBuf], volume_paths: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    dirs.iter()
        .filter(|d| {
            d.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("pvc-"))
        })
        .filter(|d| !volume_paths.contains(*d))
        .take(SWEEP_REMOVALS_MAX)
        .cloned()
        .collect()
}

fn volume_dirs(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Remove the directories of deleted volumes under `root`; returns how
/// many. The directories are read before the volumes are listed, so a
/// directory that exists was made for a volume the list then shows.
pub async fn sweep(client: &Client, root: &Path) -> Result<usize, String> {
    let dirs = match volume_dirs(root) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("cannot read {}: {e}", root.display())),
    };
    if dirs.is_empty() {
        return Ok(0);
    }
    let (volumes, _) = client
        .list(Kind::PersistentVolume, None, None, None)
        .await
        .map_err(|e| format!("cannot list persistent volumes: {e}"))?;
    let paths: BTreeSet<PathBuf> = volumes
        .iter()
        .filter_map(kubus_api::storage::volume_path)
        .map(PathBuf::from)
        .collect();
    let doomed = orphans(&dirs, &paths);
    let removed = tokio::task::spawn_blocking(move || {
        doomed
            .iter()
            .filter(|d| std::fs::remove_dir_all(d).is_ok())
            .count()
    })
    .await
    .map_err(|e| format!("volume sweep failed: {e}"))?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unnamed_volume_directories_go() {
        let root = PathBuf::from("/s");
        let dirs = vec![
            root.join("pvc-a_default_x"),
            root.join("pvc-b_default_y"),
            root.join("other"),
        ];
        let named: BTreeSet<PathBuf> = [root.join("pvc-a_default_x")].into_iter().collect();
        assert_eq!(orphans(&dirs, &named), vec![root.join("pvc-b_default_y")]);
    }
}
