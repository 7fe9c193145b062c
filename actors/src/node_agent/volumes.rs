//! Carries out a pod's volume plan ([`super::config::plan_volumes`]) on the
//! node: creates emptyDir directories, checks (or creates) hostPath paths
//! by their `type`, and writes the files of configMap and secret volumes
//! with their modes. Blocking file I/O: the agent runs it off its thread.
//!
//! Files are rewritten in place before each container start, so a
//! restarted container sees current values; files of keys no longer in
//! the ConfigMap or Secret are removed.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::config::{PlannedVolume, VolumeKind};

/// Make every planned volume exist on the node. The error names the volume
/// and what is wrong with it.
pub fn write(volumes: &[PlannedVolume]) -> Result<(), String> {
    for v in volumes {
        write_one(v).map_err(|e| format!("volume {:?}: {e}", v.name))?;
    }
    Ok(())
}

fn write_one(v: &PlannedVolume) -> Result<(), String> {
    let path = &v.host_path;
    let shown = path.display();
    match &v.kind {
        VolumeKind::EmptyDir => {
            fs::create_dir_all(path).map_err(|e| format!("cannot create {shown}: {e}"))
        }
        VolumeKind::HostPath { check } => host_path(path, check),
        VolumeKind::Files { files, .. } => {
            fs::create_dir_all(path).map_err(|e| format!("cannot create {shown}: {e}"))?;
            for (rel, bytes, mode) in files {
                let file = path.join(rel);
                if let Some(parent) = file.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                }
                // a read-only file of the last write may not be opened again
                let _ = fs::remove_file(&file);
                fs::write(&file, bytes)
                    .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
                fs::set_permissions(&file, fs::Permissions::from_mode(*mode))
                    .map_err(|e| format!("cannot set the mode of {}: {e}", file.display()))?;
            }
            let keep: BTreeSet<PathBuf> = files.iter().map(|(rel, _, _)| path.join(rel)).collect();
            let mut budget = ENTRIES_MAX;
            prune(path, &keep, 0, &mut budget)
        }
    }
}

/// Most directory levels and entries [`prune`] walks in one volume.
const DEPTH_MAX: usize = 16;
const ENTRIES_MAX: usize = 10_000;

/// Remove the files under `dir` that are not in `keep` (keys dropped from
/// the ConfigMap or Secret since the last write), walking at most
/// [`DEPTH_MAX`] levels and `budget` entries.
fn prune(
    dir: &Path,
    keep: &BTreeSet<PathBuf>,
    depth: usize,
    budget: &mut usize,
) -> Result<(), String> {
    if depth > DEPTH_MAX {
        return Ok(());
    }
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        if *budget == 0 {
            return Ok(());
        }
        *budget -= 1;
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => prune(&path, keep, depth + 1, budget)?,
            Ok(_) if !keep.contains(&path) => fs::remove_file(&path)
                .map_err(|e| format!("cannot remove {}: {e}", path.display()))?,
            _ => {}
        }
    }
    Ok(())
}

/// hostPath `type`s, as Kubernetes checks them.
fn host_path(path: &Path, check: &str) -> Result<(), String> {
    let shown = path.display();
    let meta = fs::metadata(path);
    let kind_is = |want: &str, ok: &dyn Fn(&fs::FileType) -> bool| match &meta {
        Ok(m) if ok(&m.file_type()) => Ok(()),
        Ok(_) => Err(format!(
            "hostPath type check failed: {shown} is not a {want}"
        )),
        Err(e) => Err(format!("hostPath type check failed: {shown}: {e}")),
    };
    match check {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            fs::create_dir_all(path).map_err(|e| format!("cannot create {shown}: {e}"))
        }
        "Directory" => kind_is("directory", &|t| t.is_dir()),
        "FileOrCreate" => {
            if meta.is_err() {
                fs::write(path, b"").map_err(|e| format!("cannot create {shown}: {e}"))?;
                return Ok(());
            }
            kind_is("file", &|t| t.is_file())
        }
        "File" => kind_is("file", &|t| t.is_file()),
        "Socket" => kind_is("socket", &|t| t.is_socket()),
        "CharDevice" => kind_is("character device", &|t| t.is_char_device()),
        "BlockDevice" => kind_is("block device", &|t| t.is_block_device()),
        other => Err(format!(
            "hostPath type {other:?} is not one of Directory, DirectoryOrCreate, File, FileOrCreate, Socket, CharDevice, BlockDevice"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::SourceKind;
    use super::*;

    #[test]
    fn writes_files_with_modes_and_checks_host_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = PlannedVolume {
            name: "cfg".into(),
            host_path: dir.path().join("v/cfg"),
            kind: VolumeKind::Files {
                kind: SourceKind::Secret,
                files: vec![("a/b.txt".into(), b"hi".to_vec(), 0o400)],
            },
        };
        let empty = PlannedVolume {
            name: "tmp".into(),
            host_path: dir.path().join("v/tmp"),
            kind: VolumeKind::EmptyDir,
        };
        let host = |p: &str, check: &str| PlannedVolume {
            name: "h".into(),
            host_path: dir.path().join(p),
            kind: VolumeKind::HostPath {
                check: check.into(),
            },
        };
        write(&[files.clone(), empty, host("made", "DirectoryOrCreate")]).expect("writes");
        let f = dir.path().join("v/cfg/a/b.txt");
        assert_eq!(fs::read(&f).expect("file"), b"hi");
        assert_eq!(
            fs::metadata(&f).expect("meta").permissions().mode() & 0o777,
            0o400
        );
        assert!(dir.path().join("v/tmp").is_dir() && dir.path().join("made").is_dir());
        // rewritten in place (a read-only file too); dropped keys go
        write(std::slice::from_ref(&files)).expect("rewrites");
        let mut fewer = files.clone();
        fewer.kind = VolumeKind::Files {
            kind: SourceKind::Secret,
            files: vec![("c.txt".into(), b"new".to_vec(), 0o644)],
        };
        write(&[fewer]).expect("rewrites");
        assert!(!f.exists(), "a dropped key's file goes");
        assert_eq!(
            fs::read(dir.path().join("v/cfg/c.txt")).expect("new"),
            b"new"
        );
        let e = write(&[host("absent", "Directory")]).expect_err("absent");
        assert!(
            e.starts_with("volume \"h\": hostPath type check failed"),
            "{e}"
        );
        let e = write(&[host("made", "File")]).expect_err("a dir");
        assert!(e.contains("is not a file"), "{e}");
        write(&[host("new-file", "FileOrCreate")]).expect("creates");
        assert!(dir.path().join("new-file").is_file());
    }
}
