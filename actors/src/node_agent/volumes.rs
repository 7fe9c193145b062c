//! Carries out a pod's volume plan ([`super::config::plan_volumes`]) on the
//! node: creates emptyDir directories, checks (or creates) hostPath paths
//! by their `type`, mounts the tmpfs of secret and `medium: Memory`
//! volumes, and writes the files of configMap and secret volumes. Blocking
//! file I/O: the agent runs it off its thread. Decisions (what to write,
//! how big a tmpfs, which volumes changed) are the plan's; this module
//! only carries them out.
//!
//! # configMap and secret volumes
//!
//! Laid out as the kubelet's atomic writer does, so a running container
//! sees a whole new version or the old one, never a mix:
//!
//! ```text
//! <volume>/..2024_05_01_12_00_00.123456789/<files>   this version
//! <volume>/..data -> ..2024_05_01_12_00_00.123456789
//! <volume>/<key>  -> ..data/<key>                    one per top-level name
//! ```
//!
//! A new version is written into a new timestamped directory, then a new
//! `..data` link is renamed over the old one (atomic), then the top-level
//! links of new names are made and those of dropped names removed, and
//! the old directory goes. Nothing is rewritten when the files on disk are
//! already the plan's. A `subPath` mount binds one file as it was when the
//! container started and does not follow updates (as in Kubernetes).
//!
//! # tmpfs
//!
//! Mounting goes through the [`Mounter`] seam: [`HostMounter`] calls
//! mount(2) (it needs CAP_SYS_ADMIN; without it the volume fails, it never
//! falls back to disk), a fake stands in for tests. A mount outlives the
//! agent's process: a restarted agent finds it mounted and keeps it (a
//! re-adopted container's bind mount shows that very tmpfs), and
//! [`remove_pod_volumes`] unmounts before it removes.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::config::{visible_names, Medium, PlannedVolume, SourceKind, VolumeKind};

/// Why a volume could not be made ready (or removed).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("volume {name:?}: {source}")]
    Volume {
        name: String,
        #[source]
        source: Box<Error>,
    },
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Mounting failed: usually the agent lacks CAP_SYS_ADMIN.
    #[error("cannot mount a tmpfs on {}: {source} (secret and emptyDir medium: Memory volumes live on a tmpfs, and mounting one needs CAP_SYS_ADMIN; they are never written to disk instead)", path.display())]
    Mount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot unmount {}: {source}", path.display())]
    Unmount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("hostPath type check failed: {0}")]
    HostPath(String),
    #[error("hostPath type {0:?} is not one of Directory, DirectoryOrCreate, File, FileOrCreate, Socket, CharDevice, BlockDevice")]
    HostPathType(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `map_err` for an I/O step on a path.
fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// Mounts and unmounts the tmpfs of volumes: the seam between the volume
/// writer and the kernel.
pub trait Mounter: Send + Sync + 'static {
    /// Mount a tmpfs on the directory `path`: at most `size_bytes` (None:
    /// the kernel's default), its root with `mode`.
    fn mount_tmpfs(&self, path: &Path, size_bytes: Option<u64>, mode: u32) -> io::Result<()>;
    /// Unmount what is mounted on `path` (lazily: a mount still in use
    /// goes when its last user does).
    fn unmount(&self, path: &Path) -> io::Result<()>;
    /// Whether something is mounted on `path` (false when it is absent).
    fn is_mounted(&self, path: &Path) -> io::Result<bool>;
}

/// The node's own mount(2) and umount2(2).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostMounter;

impl Mounter for HostMounter {
    fn mount_tmpfs(&self, path: &Path, size_bytes: Option<u64>, mode: u32) -> io::Result<()> {
        use nix::mount::{mount, MsFlags};
        let mut data = format!("mode={mode:o}");
        if let Some(size) = size_bytes {
            data.push_str(&format!(",size={size}"));
        }
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(data.as_str()),
        )
        .map_err(io::Error::from)
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from)
    }

    fn is_mounted(&self, path: &Path) -> io::Result<bool> {
        // a mount point is on another device than its parent
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let parent = path.parent().unwrap_or(Path::new("/"));
        Ok(meta.is_dir() && fs::metadata(parent)?.dev() != meta.dev())
    }
}

/// Mode of a secret volume's tmpfs root. Kubernetes' is 1777; 0755 lets a
/// container's non-root user reach the files (each has its own mode) while
/// the node's other users are kept out by the 0700 plugin directory above
/// it on the host ([`SECRET_PARENT_MODE`]), which a container never sees.
pub const SECRET_TMPFS_MODE: u32 = 0o755;
/// Mode of `volumes/kubernetes.io~secret` on the host.
pub const SECRET_PARENT_MODE: u32 = 0o700;
/// Mode of an emptyDir's tmpfs root (the kubelet's emptyDir mode).
pub const EMPTY_DIR_MODE: u32 = 0o777;

/// Make every planned volume exist on the node. The error names the volume
/// and what is wrong with it.
pub fn write(volumes: &[PlannedVolume], mounter: &dyn Mounter) -> Result<()> {
    for v in volumes {
        write_volume(v, mounter)?;
    }
    Ok(())
}

/// Make one planned volume exist on the node; returns whether a configMap
/// or secret volume got a new version of its files (a live refresh).
pub fn write_volume(v: &PlannedVolume, mounter: &dyn Mounter) -> Result<bool> {
    write_one(v, mounter).map_err(|e| Error::Volume {
        name: v.name.clone(),
        source: Box::new(e),
    })
}

fn write_one(v: &PlannedVolume, mounter: &dyn Mounter) -> Result<bool> {
    let path = &v.host_path;
    match &v.kind {
        VolumeKind::EmptyDir { medium } => {
            fs::create_dir_all(path).map_err(io_err("create", path))?;
            if let Medium::Memory { size_bytes } = medium {
                ensure_tmpfs(path, *size_bytes, EMPTY_DIR_MODE, mounter)?;
            }
            Ok(false)
        }
        VolumeKind::HostPath { check } => host_path(path, check).map(|()| false),
        VolumeKind::Files { kind, files } => {
            fs::create_dir_all(path).map_err(io_err("create", path))?;
            if let (SourceKind::Secret, Some(parent)) = (kind, path.parent()) {
                fs::set_permissions(parent, fs::Permissions::from_mode(SECRET_PARENT_MODE))
                    .map_err(io_err("set the mode of", parent))?;
            }
            if let Some(size) = v.tmpfs() {
                ensure_tmpfs(path, size, SECRET_TMPFS_MODE, mounter)?;
            }
            write_files(path, files)
        }
    }
}

/// Mount a tmpfs on `path` unless one is there already (a restarted agent
/// keeps what its earlier run mounted).
fn ensure_tmpfs(
    path: &Path,
    size_bytes: Option<u64>,
    mode: u32,
    mounter: &dyn Mounter,
) -> Result<()> {
    let mounted = mounter
        .is_mounted(path)
        .map_err(io_err("look for a mount on", path))?;
    if mounted {
        return Ok(());
    }
    mounter
        .mount_tmpfs(path, size_bytes, mode)
        .map_err(|source| Error::Mount {
            path: path.to_path_buf(),
            source,
        })
}

/// The link to the current version, and its stand-in while it is swapped.
const DATA_LINK: &str = "..data";
const DATA_LINK_NEW: &str = "..data_tmp";

/// Most directory levels and entries one volume's files are walked to.
const DEPTH_MAX: usize = 16;
const ENTRIES_MAX: usize = 10_000;

/// Write a configMap or secret volume's files as a new version (see the
/// module's doc), unless the current one already holds exactly them.
/// Returns whether a new version was written.
pub fn write_files(dir: &Path, files: &[(PathBuf, Vec<u8>, u32)]) -> Result<bool> {
    fs::create_dir_all(dir).map_err(io_err("create", dir))?;
    let visible = visible_names(files);
    let current = fs::read_link(dir.join(DATA_LINK))
        .ok()
        .and_then(|t| t.to_str().map(str::to_string))
        .filter(|t| t.starts_with("..") && !t.contains('/'));
    if let Some(cur) = &current {
        if same_files(&dir.join(cur), files) {
            link_names(dir, &visible)?;
            prune(dir, &visible, cur)?;
            return Ok(false);
        }
    }
    let version = new_version(current.as_deref());
    let version_dir = dir.join(&version);
    if version_dir.exists() {
        fs::remove_dir_all(&version_dir).map_err(io_err("remove", &version_dir))?;
    }
    fs::create_dir(&version_dir).map_err(io_err("create", &version_dir))?;
    fs::set_permissions(&version_dir, fs::Permissions::from_mode(0o755))
        .map_err(io_err("set the mode of", &version_dir))?;
    for (rel, bytes, mode) in files {
        let file = version_dir.join(rel);
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        fs::write(&file, bytes).map_err(io_err("write", &file))?;
        fs::set_permissions(&file, fs::Permissions::from_mode(*mode))
            .map_err(io_err("set the mode of", &file))?;
    }
    // the swap: rename(2) replaces the old link in one step
    let new_link = dir.join(DATA_LINK_NEW);
    match fs::remove_file(&new_link) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(io_err("remove", &new_link)(e))
        }
        _ => {}
    }
    std::os::unix::fs::symlink(&version, &new_link).map_err(io_err("link", &new_link))?;
    let link = dir.join(DATA_LINK);
    fs::rename(&new_link, &link).map_err(io_err("replace", &link))?;
    link_names(dir, &visible)?;
    prune(dir, &visible, &version)?;
    Ok(true)
}

/// A version directory's name: `..` and the time to the nanosecond (as
/// the kubelet's), never the current one's.
fn new_version(current: Option<&str>) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let now = jiff::Timestamp::now();
    let name = format!(
        "..{}.{:09}",
        now.strftime("%Y_%m_%d_%H_%M_%S"),
        now.subsec_nanosecond()
    );
    if Some(name.as_str()) == current {
        return format!("{name}_{}", SEQ.fetch_add(1, Ordering::Relaxed));
    }
    name
}

/// Whether the version directory holds exactly `files` (content and mode);
/// false when it cannot tell within the walk's bounds.
fn same_files(version_dir: &Path, files: &[(PathBuf, Vec<u8>, u32)]) -> bool {
    let mut found = BTreeSet::new();
    let mut budget = ENTRIES_MAX;
    if !walk_files(version_dir, Path::new(""), 0, &mut budget, &mut found) {
        return false;
    }
    let planned: BTreeSet<&Path> = files.iter().map(|(p, _, _)| p.as_path()).collect();
    if found.iter().map(PathBuf::as_path).collect::<BTreeSet<_>>() != planned {
        return false;
    }
    files.iter().all(|(rel, bytes, mode)| {
        let file = version_dir.join(rel);
        fs::metadata(&file).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
            && fs::read(&file).is_ok_and(|b| b == *bytes)
    })
}

/// Collect the regular files under `dir` (relative to the walk's start);
/// false when the walk met its bounds or could not read a directory.
fn walk_files(
    dir: &Path,
    rel: &Path,
    depth: usize,
    budget: &mut usize,
    out: &mut BTreeSet<PathBuf>,
) -> bool {
    if depth > DEPTH_MAX {
        return false;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    for entry in entries.flatten() {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        let name = rel.join(entry.file_name());
        match entry.file_type() {
            Ok(t) if t.is_dir() => {
                if !walk_files(&entry.path(), &name, depth + 1, budget, out) {
                    return false;
                }
            }
            Ok(_) => {
                out.insert(name);
            }
            Err(_) => return false,
        }
    }
    true
}

/// Make `<name> -> ..data/<name>` for every visible name (replacing
/// whatever else has the name, e.g. a file of the layout before links).
fn link_names(dir: &Path, visible: &BTreeSet<String>) -> Result<()> {
    for name in visible {
        let path = dir.join(name);
        let target = Path::new(DATA_LINK).join(name);
        match fs::symlink_metadata(&path) {
            Ok(m)
                if m.file_type().is_symlink()
                    && fs::read_link(&path).ok() == Some(target.clone()) =>
            {
                continue
            }
            Ok(_) => remove_any(&path)?,
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&target, &path).map_err(io_err("link", &path))?;
    }
    Ok(())
}

/// Remove what is at the top of the volume besides `..data`, the version
/// `keep` and the visible names: older versions, links of dropped names.
fn prune(dir: &Path, visible: &BTreeSet<String>, keep: &str) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(io_err("list", dir))?;
    for entry in entries.flatten().take(ENTRIES_MAX) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == DATA_LINK || name == keep || visible.contains(name.as_ref()) {
            continue;
        }
        remove_any(&entry.path())?;
    }
    Ok(())
}

/// Remove a file, link or directory tree (a link is removed, not followed).
fn remove_any(path: &Path) -> Result<()> {
    let is_dir = fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    let removed = if is_dir {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match removed {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Most volumes one pod's `volumes/` directory is searched for mounts.
const POD_VOLUMES_MAX: usize = 1024;

/// Unmount every tmpfs of a pod (`<pod dir>/volumes/<plugin>/<name>`);
/// returns how many were unmounted.
pub fn unmount_pod_volumes(volumes_dir: &Path, mounter: &dyn Mounter) -> Result<usize> {
    let plugins = match fs::read_dir(volumes_dir) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("list", volumes_dir)(e)),
    };
    let mut unmounted = 0;
    let mut budget = POD_VOLUMES_MAX;
    for plugin in plugins.flatten() {
        if !plugin.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(volumes) = fs::read_dir(plugin.path()) else {
            continue;
        };
        for v in volumes.flatten() {
            if budget == 0 {
                return Ok(unmounted);
            }
            budget -= 1;
            let path = v.path();
            if mounter
                .is_mounted(&path)
                .map_err(io_err("look for a mount on", &path))?
            {
                mounter.unmount(&path).map_err(|source| Error::Unmount {
                    path: path.clone(),
                    source,
                })?;
                unmounted += 1;
            }
        }
    }
    Ok(unmounted)
}

/// A pod's volumes go with it: its tmpfs mounts are unmounted, then its
/// `volumes/` directory is removed (emptyDir data, configMap and secret
/// files; hostPath volumes live elsewhere and stay). When an unmount fails
/// nothing is removed, so no removal ever reaches through a mount.
pub fn remove_pod_volumes(volumes_dir: &Path, mounter: &dyn Mounter) -> Result<()> {
    unmount_pod_volumes(volumes_dir, mounter)?;
    match fs::remove_dir_all(volumes_dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", volumes_dir)(e)),
        _ => Ok(()),
    }
}

/// Most pod directories a restarted agent looks through for orphans.
pub const POD_DIRS_MAX: usize = 10_000;

/// The names of the pod directories under `pods_dir` (`<ns>_<pod>_<uid>`),
/// at most [`POD_DIRS_MAX`].
pub fn pod_dir_names(pods_dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(pods_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", pods_dir)(e)),
    };
    Ok(entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .take(POD_DIRS_MAX)
        .collect())
}

/// hostPath `type`s, as Kubernetes checks them.
fn host_path(path: &Path, check: &str) -> Result<()> {
    let shown = path.display();
    let meta = fs::metadata(path);
    let kind_is = |want: &str, ok: &dyn Fn(&fs::FileType) -> bool| match &meta {
        Ok(m) if ok(&m.file_type()) => Ok(()),
        Ok(_) => Err(Error::HostPath(format!("{shown} is not a {want}"))),
        Err(e) => Err(Error::HostPath(format!("{shown}: {e}"))),
    };
    match check {
        "" => Ok(()),
        "DirectoryOrCreate" => fs::create_dir_all(path).map_err(io_err("create", path)),
        "Directory" => kind_is("directory", &|t| t.is_dir()),
        "FileOrCreate" => {
            if meta.is_err() {
                fs::write(path, b"").map_err(io_err("create", path))?;
                return Ok(());
            }
            kind_is("file", &|t| t.is_file())
        }
        "File" => kind_is("file", &|t| t.is_file()),
        "Socket" => kind_is("socket", &|t| t.is_socket()),
        "CharDevice" => kind_is("character device", &|t| t.is_char_device()),
        "BlockDevice" => kind_is("block device", &|t| t.is_block_device()),
        other => Err(Error::HostPathType(other.to_string())),
    }
}

#[cfg(test)]
pub mod fake {
    //! A [`Mounter`] that only remembers: what is "mounted" is a set of
    //! paths (the directory stays an ordinary one); it can be told to fail
    //! as a node without CAP_SYS_ADMIN does.

    use std::collections::BTreeMap;
    use std::io;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use super::Mounter;

    #[derive(Debug, Default)]
    pub struct FakeMounter {
        /// Path → (size, mode) of each tmpfs "mounted".
        pub mounted: Mutex<BTreeMap<PathBuf, (Option<u64>, u32)>>,
        pub mounts: Mutex<usize>,
        pub refuse: bool,
    }

    impl Mounter for FakeMounter {
        fn mount_tmpfs(&self, path: &Path, size: Option<u64>, mode: u32) -> io::Result<()> {
            if self.refuse {
                return Err(io::Error::from_raw_os_error(1)); // EPERM
            }
            if let Ok(mut n) = self.mounts.lock() {
                *n += 1;
            }
            if let Ok(mut m) = self.mounted.lock() {
                m.insert(path.to_path_buf(), (size, mode));
            }
            Ok(())
        }

        fn unmount(&self, path: &Path) -> io::Result<()> {
            match self.mounted.lock().map(|mut m| m.remove(path)) {
                Ok(Some(_)) => Ok(()),
                _ => Err(io::Error::from_raw_os_error(22)), // EINVAL
            }
        }

        fn is_mounted(&self, path: &Path) -> io::Result<bool> {
            Ok(self.mounted.lock().is_ok_and(|m| m.contains_key(path)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::config::{secret_tmpfs_bytes, Medium, SourceKind};
    use super::fake::FakeMounter;
    use super::*;

    fn files(kind: SourceKind, dir: &Path, list: &[(&str, &[u8], u32)]) -> PlannedVolume {
        PlannedVolume {
            name: "cfg".into(),
            host_path: dir.to_path_buf(),
            kind: VolumeKind::Files {
                kind,
                files: list
                    .iter()
                    .map(|(p, b, m)| (PathBuf::from(p), b.to_vec(), *m))
                    .collect(),
            },
        }
    }

    fn names(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn version(dir: &Path) -> String {
        fs::read_link(dir.join("..data"))
            .expect("..data")
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn writes_files_with_modes_and_checks_host_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = FakeMounter::default();
        let cfg = files(
            SourceKind::ConfigMap,
            &dir.path().join("v/cfg"),
            &[("a/b.txt", b"hi", 0o400)],
        );
        let empty = PlannedVolume {
            name: "tmp".into(),
            host_path: dir.path().join("v/tmp"),
            kind: VolumeKind::EmptyDir {
                medium: Medium::Disk,
            },
        };
        let host = |p: &str, check: &str| PlannedVolume {
            name: "h".into(),
            host_path: dir.path().join(p),
            kind: VolumeKind::HostPath {
                check: check.into(),
            },
        };
        write(&[cfg, empty, host("made", "DirectoryOrCreate")], &m).expect("writes");
        let f = dir.path().join("v/cfg/a/b.txt");
        assert_eq!(fs::read(&f).expect("file"), b"hi");
        assert_eq!(
            fs::metadata(&f).expect("meta").permissions().mode() & 0o777,
            0o400
        );
        assert!(dir.path().join("v/tmp").is_dir() && dir.path().join("made").is_dir());
        assert!(
            m.mounted.lock().expect("lock").is_empty(),
            "nothing on tmpfs"
        );
        let e = write(&[host("absent", "Directory")], &m)
            .expect_err("absent")
            .to_string();
        assert!(
            e.starts_with("volume \"h\": hostPath type check failed"),
            "{e}"
        );
        let e = write(&[host("made", "File")], &m)
            .expect_err("a dir")
            .to_string();
        assert!(e.contains("is not a file"), "{e}");
        let e = write(&[host("made", "Bogus")], &m)
            .expect_err("a type")
            .to_string();
        assert!(e.contains("hostPath type \"Bogus\" is not one of"), "{e}");
        write(&[host("new-file", "FileOrCreate")], &m).expect("creates");
        assert!(dir.path().join("new-file").is_file());
    }

    #[test]
    fn files_are_swapped_atomically_as_the_kubelet_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v = dir.path().join("cm");
        let first = [("a", &b"1"[..], 0o644), ("sub/b.txt", &b"2"[..], 0o600)];
        assert!(write_files(&v, files(SourceKind::ConfigMap, &v, &first).files()).expect("writes"));
        let v1 = version(&v);
        assert!(v1.starts_with("..") && v1.len() > 20, "{v1}");
        assert_eq!(
            names(&v),
            ["..data", "a", "sub", v1.as_str()]
                .into_iter()
                .map(String::from)
                .collect()
        );
        assert_eq!(
            fs::read_link(v.join("a")).expect("link"),
            Path::new("..data/a")
        );
        assert_eq!(
            fs::read_link(v.join("sub")).expect("link"),
            Path::new("..data/sub")
        );
        assert_eq!(fs::read(v.join("sub/b.txt")).expect("through links"), b"2");
        assert_eq!(
            fs::metadata(v.join("sub/b.txt"))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777,
            0o600
        );

        // the same files again: no new version
        assert!(!write_files(&v, files(SourceKind::ConfigMap, &v, &first).files()).expect("same"));
        assert_eq!(version(&v), v1);

        // a changed value, a dropped key, a new key
        let second = [("a", &b"one"[..], 0o644), ("c", &b"3"[..], 0o644)];
        assert!(
            write_files(&v, files(SourceKind::ConfigMap, &v, &second).files()).expect("writes")
        );
        let v2 = version(&v);
        assert_ne!(v2, v1);
        assert_eq!(
            names(&v),
            ["..data", "a", "c", v2.as_str()]
                .into_iter()
                .map(String::from)
                .collect(),
            "the old version and the dropped key's link are gone"
        );
        assert_eq!(fs::read(v.join("a")).expect("a"), b"one");
        assert_eq!(fs::read(v.join("c")).expect("c"), b"3");

        // a mode change alone is a change
        let third = [("a", &b"one"[..], 0o400), ("c", &b"3"[..], 0o644)];
        assert!(write_files(&v, files(SourceKind::ConfigMap, &v, &third).files()).expect("mode"));

        // everything dropped (an optional source gone): an empty version
        assert!(write_files(&v, &[]).expect("empty"));
        assert_eq!(names(&v).len(), 2, "{:?}", names(&v));
    }

    #[test]
    fn the_layout_before_links_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v = dir.path().join("cm");
        fs::create_dir_all(v.join("sub")).expect("dir");
        fs::write(v.join("a"), b"old").expect("file");
        fs::write(v.join("sub/x"), b"old").expect("file");
        fs::write(v.join("stale"), b"old").expect("file");
        let plan = [("a", &b"new"[..], 0o644), ("sub/x", &b"new"[..], 0o644)];
        write_files(&v, files(SourceKind::ConfigMap, &v, &plan).files()).expect("writes");
        assert_eq!(fs::read(v.join("a")).expect("a"), b"new");
        assert_eq!(fs::read(v.join("sub/x")).expect("x"), b"new");
        assert!(!v.join("stale").exists());
        assert!(fs::symlink_metadata(v.join("sub"))
            .expect("sub")
            .file_type()
            .is_symlink());
    }

    #[test]
    fn secret_and_memory_volumes_are_on_tmpfs_or_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = FakeMounter::default();
        let secret = files(
            SourceKind::Secret,
            &dir.path().join("volumes/kubernetes.io~secret/s"),
            &[("pw", b"hunter2", 0o400)],
        );
        let memory = PlannedVolume {
            name: "mem".into(),
            host_path: dir.path().join("volumes/kubernetes.io~empty-dir/mem"),
            kind: VolumeKind::EmptyDir {
                medium: Medium::Memory {
                    size_bytes: Some(1 << 20),
                },
            },
        };
        write(&[secret.clone(), memory.clone()], &m).expect("writes");
        let mounted = m.mounted.lock().expect("lock").clone();
        assert_eq!(
            mounted.get(&secret.host_path),
            Some(&(Some(secret_tmpfs_bytes(secret.files())), SECRET_TMPFS_MODE))
        );
        assert_eq!(
            mounted.get(&memory.host_path),
            Some(&(Some(1 << 20), EMPTY_DIR_MODE))
        );
        let parent = dir.path().join("volumes/kubernetes.io~secret");
        assert_eq!(
            fs::metadata(&parent).expect("meta").permissions().mode() & 0o777,
            SECRET_PARENT_MODE
        );
        // mounted already (a restarted agent): not mounted again
        write(&[secret.clone(), memory], &m).expect("rewrites");
        assert_eq!(*m.mounts.lock().expect("lock"), 2);

        // the pod goes: unmounted, then removed
        remove_pod_volumes(&dir.path().join("volumes"), &m).expect("removes");
        assert!(m.mounted.lock().expect("lock").is_empty());
        assert!(!dir.path().join("volumes").exists());
        remove_pod_volumes(&dir.path().join("volumes"), &m).expect("absent is fine");

        // no CAP_SYS_ADMIN: the volume fails, nothing reaches the disk
        let refusing = FakeMounter {
            refuse: true,
            ..FakeMounter::default()
        };
        let e = write(std::slice::from_ref(&secret), &refusing)
            .expect_err("refused")
            .to_string();
        assert!(
            e.starts_with("volume \"cfg\": cannot mount a tmpfs on") && e.contains("CAP_SYS_ADMIN"),
            "{e}"
        );
        assert!(
            names(&secret.host_path).is_empty(),
            "no secret file on disk"
        );
    }

    /// The real mount(2), where the test may mount (root); skipped else.
    #[test]
    fn host_mounter_mounts_a_bounded_tmpfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("volumes/kubernetes.io~secret/t");
        fs::create_dir_all(&path).expect("dir");
        let m = HostMounter;
        assert!(!m.is_mounted(&path).expect("looks"));
        if let Err(e) = m.mount_tmpfs(&path, Some(64 * 1024), 0o755) {
            eprintln!("skipped: cannot mount here ({e})");
            return;
        }
        assert!(m.is_mounted(&path).expect("looks"));
        let line = fs::read_to_string("/proc/self/mounts")
            .expect("mounts")
            .lines()
            .find(|l| l.split(' ').nth(1) == path.to_str())
            .map(str::to_string)
            .unwrap_or_default();
        assert!(
            line.starts_with("tmpfs ") && line.contains("size=64k"),
            "{line}"
        );
        let big = fs::write(path.join("big"), vec![0u8; 128 * 1024]);
        assert!(big.is_err(), "the size bounds it");
        let volumes = dir.path().join("volumes");
        assert_eq!(unmount_pod_volumes(&volumes, &m).ok(), Some(1));
        assert!(!m.is_mounted(&path).expect("looks"));
        remove_pod_volumes(&volumes, &m).expect("removes");
    }
}
