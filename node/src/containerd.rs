//! The private containerd `kubus up --runtime cri` runs: its root, state,
//! socket and CNI config under `<data>/containerd`, started as a child and
//! stopped by its pid after the node agent removed its pods through CRI.
//! The configuration templates are deploy/containerd/*.
//!
//! A mesh node killed without a chance to stop it (SIGKILL, a crash)
//! leaves its containerd running, with the pods' containers. The next run
//! on the same data directory adopts that containerd instead of starting a
//! second one on the same root (which could not open its database), so the
//! node agent can re-adopt the containers. The containerd is recognised by
//! the pid in `containerd.pid` *and* its command line naming this
//! directory's `config.toml` (never a recycled pid); an adopted containerd
//! keeps the configuration it was started with.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tracing::{info, warn};

const CONFIG_TEMPLATE: &str = include_str!("../../deploy/containerd/config.toml");
const CNI_TEMPLATE: &str = include_str!("../../deploy/containerd/10-kubus-bridge.conflist");
/// How long containerd may take to open its socket.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long containerd may take to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Restarts allowed before the mesh node gives up on its containerd.
pub const RESTARTS_MAX: u32 = 5;

/// What the private containerd is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    /// The sandbox ("pause") image; it must already be imported.
    pub sandbox_image: String,
    /// The pod network (a private range: addresses live only in network
    /// namespaces this containerd creates).
    pub pod_cidr: String,
    /// The Linux bridge the pods attach to.
    pub bridge: String,
    /// The service range, routed from every pod to the node (whose proxy
    /// and DNS answer there).
    pub service_cidr: String,
}

/// The containerd process.
enum Process {
    /// Started by this run: our child.
    Child(Child),
    /// Left running by an earlier run (now another process's child): known
    /// only by its pid, checked against its command line before a signal.
    Adopted(i32),
}

pub struct Containerd {
    process: Process,
    settings: Settings,
    pub socket: PathBuf,
    pub restarts: u32,
}

/// The script that builds kubus's own sandbox image (busybox `sleep
/// infinity`) and imports it; the tests import their busybox image with it
/// too.
const SANDBOX_IMAGE_SCRIPT: &str = include_str!("../../deploy/build-test-image.sh");
/// Bound on pulling the sandbox image from a registry.
const SANDBOX_PULL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Bound on building and importing kubus's own.
const SANDBOX_BUILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Make sure the containerd at `socket` holds the sandbox image `image`:
/// present, or pulled from its registry, or — offline — kubus's own built
/// from the host's static busybox and imported under that name.
pub async fn ensure_sandbox_image(
    cri: &kubus_actors::node_agent::cri::CriRuntime,
    socket: &Path,
    image: &str,
) -> anyhow::Result<()> {
    if cri.has_image(image).await? {
        return Ok(());
    }
    match cri.pull(image, SANDBOX_PULL_TIMEOUT).await {
        Ok(()) => {
            info!(image, "pulled the sandbox image");
            return Ok(());
        }
        Err(e) => info!(image, error = %e, "cannot pull the sandbox image; importing kubus's own"),
    }
    let mut child = tokio::process::Command::new("bash")
        .args(["-s", "--", "--address"])
        .arg(socket)
        .arg(image)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("running bash to build the sandbox image")?;
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        stdin.write_all(SANDBOX_IMAGE_SCRIPT.as_bytes()).await?;
    }
    let out = tokio::time::timeout(SANDBOX_BUILD_TIMEOUT, child.wait_with_output())
        .await
        .context("building the sandbox image timed out")??;
    if !out.status.success() || !cri.has_image(image).await? {
        anyhow::bail!(
            "no sandbox image {image:?}: it cannot be pulled, and building kubus's own failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    info!(image, "imported kubus's own sandbox image");
    Ok(())
}

/// Bound on importing one image tarball.
const IMPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Import an image tarball (docker-archive or OCI) into the k8s.io
/// namespace of the containerd at `socket`, with `ctr`; what it printed.
pub async fn import_image(socket: &Path, file: &Path) -> anyhow::Result<String> {
    let run = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["-n", "k8s.io", "images", "import"])
        .arg(file)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(IMPORT_TIMEOUT, run)
        .await
        .with_context(|| format!("importing {} timed out", file.display()))?
        .context("running ctr (from the containerd package)")?;
    if !out.status.success() {
        bail!(
            "cannot import {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

/// Import every `*.tar` of `dir` (the data directory's `images/`, as k3s'
/// airgap images folder), in name order; a tarball that fails is reported
/// and skipped.
pub async fn import_folder(socket: &Path, dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .collect();
    files.sort();
    let mut imported = 0;
    for f in files {
        match import_image(socket, &f).await {
            Ok(_) => imported += 1,
            Err(e) => warn!(error = %e, "image tarball not imported"),
        }
    }
    if imported > 0 {
        info!(imported, dir = %dir.display(), "imported the images folder");
    }
    imported
}

/// Fill the templates' placeholders.
fn render(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter()
        .fold(template.to_string(), |t, (k, v)| t.replace(k, v))
}

impl Containerd {
    /// The socket a containerd under `dir` listens on.
    pub fn socket_in(dir: &Path) -> PathBuf {
        dir.join("containerd.sock")
    }

    /// Adopt the containerd an earlier run on `s.dir` left running, or
    /// start one.
    pub fn start(s: &Settings) -> anyhow::Result<Containerd> {
        let socket = Containerd::socket_in(&s.dir);
        if let Some(pid) = running_in(&s.dir) {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                info!(pid, socket = %socket.display(), "adopted the containerd an earlier run left");
                return Ok(Containerd {
                    process: Process::Adopted(pid),
                    settings: s.clone(),
                    socket,
                    restarts: 0,
                });
            }
            // it runs but does not answer: it cannot be used, and a second
            // one on its root could not open the database
            warn!(
                pid,
                "the containerd an earlier run left does not answer; stopping it"
            );
            stop_adopted(pid, &s.dir);
        }
        let (child, socket) = Containerd::spawn(s)?;
        Ok(Containerd {
            process: Process::Child(child),
            settings: s.clone(),
            socket,
            restarts: 0,
        })
    }

    fn spawn(s: &Settings) -> anyhow::Result<(Child, PathBuf)> {
        let cni_dir = s.dir.join("cni").join("net.d");
        std::fs::create_dir_all(&cni_dir)
            .with_context(|| format!("creating {}", cni_dir.display()))?;
        let socket = Containerd::socket_in(&s.dir);
        let _ = std::fs::remove_file(&socket);
        let config = render(
            CONFIG_TEMPLATE,
            &[
                ("@ROOT@", s.dir.join("root").display().to_string()),
                ("@STATE@", s.dir.join("state").display().to_string()),
                ("@ADDRESS@", socket.display().to_string()),
                ("@SANDBOX_IMAGE@", s.sandbox_image.clone()),
                ("@CNI_CONF_DIR@", cni_dir.display().to_string()),
            ],
        );
        let config_path = s.dir.join("config.toml");
        std::fs::write(&config_path, config)?;
        let cni = render(
            CNI_TEMPLATE,
            &[
                ("@BRIDGE@", s.bridge.clone()),
                (
                    "@IPAM_DIR@",
                    s.dir.join("cni").join("ipam").display().to_string(),
                ),
                ("@SUBNET@", s.pod_cidr.clone()),
                ("@SERVICE_CIDR@", s.service_cidr.clone()),
            ],
        );
        std::fs::write(cni_dir.join("10-kubus-bridge.conflist"), cni)?;
        let log_path = s.dir.join("containerd.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut child = Command::new("containerd")
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting containerd (install it with deploy/install-deps.sh, or pass --cri-socket)")?;
        std::fs::write(s.dir.join("containerd.pid"), child.id().to_string())?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "containerd exited at start ({status}); see {}",
                    log_path.display()
                );
            }
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "containerd did not open {} within {READY_TIMEOUT:?}",
                    socket.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        info!(pid = child.id(), socket = %socket.display(), "containerd started");
        Ok((child, socket))
    }

    /// Restart containerd if it died (its containers' shims live on), a
    /// bounded number of times; an error once that is exhausted.
    pub fn supervise(&mut self) -> anyhow::Result<()> {
        let status = match &mut self.process {
            Process::Child(child) => match child.try_wait()? {
                Some(status) => status.to_string(),
                None => return Ok(()),
            },
            Process::Adopted(pid) if is_ours(*pid, &self.settings.dir) => return Ok(()),
            Process::Adopted(_) => "gone".to_string(),
        };
        if self.restarts >= RESTARTS_MAX {
            bail!("containerd exited ({status}) and was restarted {RESTARTS_MAX} times already");
        }
        self.restarts += 1;
        warn!(%status, restarts = self.restarts, "containerd exited; restarting it");
        let (child, socket) = Containerd::spawn(&self.settings)?;
        self.process = Process::Child(child);
        self.socket = socket;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after a bound; always by its own pid.
    pub fn stop(mut self) {
        let child = match &mut self.process {
            Process::Child(child) => child,
            Process::Adopted(pid) => {
                stop_adopted(*pid, &self.settings.dir);
                return;
            }
        };
        let pid = child.id();
        if let Ok(pid) = i32::try_from(pid) {
            // our own child, not yet reaped: the pid cannot have been reused
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                info!(pid, "containerd stopped");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        warn!(pid, "containerd did not stop after SIGTERM; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Containerd {
    /// A containerd never outlives the mesh node that started or adopted
    /// it (an error path that did not call `stop`).
    fn drop(&mut self) {
        match &mut self.process {
            Process::Child(child) => {
                if let Ok(None) = child.try_wait() {
                    warn!(pid = child.id(), "killing containerd");
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Process::Adopted(pid) => {
                if is_ours(*pid, &self.settings.dir) {
                    warn!(pid = *pid, "killing containerd");
                    signal(*pid, nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
    }
}

/// The containerd an earlier run on `dir` left running, by the pid it
/// recorded.
fn running_in(dir: &Path) -> Option<i32> {
    let pid = std::fs::read_to_string(dir.join("containerd.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_ours(pid, dir).then_some(pid)
}

/// Whether `pid` is a live containerd started with `dir`'s config (not a
/// zombie, not a recycled pid).
fn is_ours(pid: i32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|st| {
            let (_, rest) = st.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state == "Z")
        })
        .unwrap_or(true);
    !zombie && is_containerd_of(&cmdline, &dir.join("config.toml"))
}

/// Whether a `/proc/<pid>/cmdline` is `containerd --config <config>`.
fn is_containerd_of(cmdline: &[u8], config: &Path) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let program = args
        .first()
        .and_then(|a| Path::new(std::ffi::OsStr::from_bytes(a)).file_name())
        .is_some_and(|n| n == "containerd");
    program
        && args
            .windows(2)
            .any(|w| w[0] == b"--config" && w[1] == config.as_os_str().as_bytes())
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// Stop an adopted containerd: SIGTERM, then SIGKILL after a bound. Not
/// our child, so it cannot be waited for: it is polled, and every signal
/// goes only after its command line was checked again.
fn stop_adopted(pid: i32, dir: &Path) {
    if !is_ours(pid, dir) {
        return;
    }
    signal(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if !is_ours(pid, dir) {
            info!(pid, "containerd stopped");
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if is_ours(pid, dir) {
        warn!(pid, "containerd did not stop after SIGTERM; killing it");
        signal(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_have_no_placeholder_left() {
        let vars = [
            ("@ROOT@", "/r".to_string()),
            ("@STATE@", "/s".to_string()),
            ("@ADDRESS@", "/a.sock".to_string()),
            ("@SANDBOX_IMAGE@", "localhost/pause:kubus".to_string()),
            ("@CNI_CONF_DIR@", "/c".to_string()),
        ];
        let config = render(CONFIG_TEMPLATE, &vars);
        assert!(!config.contains('@'), "{config}");
        assert!(config.contains("restrict_oom_score_adj = true"));
        let cni = render(
            CNI_TEMPLATE,
            &[
                ("@BRIDGE@", "kubus0".to_string()),
                ("@IPAM_DIR@", "/i".to_string()),
                ("@SUBNET@", "10.88.0.0/16".to_string()),
                ("@SERVICE_CIDR@", "10.43.0.0/16".to_string()),
            ],
        );
        assert!(!cni.contains('@'), "{cni}");
        let v: serde_json::Value = serde_json::from_str(&cni).unwrap_or_default();
        assert_eq!(
            v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.88.0.0/16"
        );
        assert_eq!(v["plugins"][0]["ipam"]["routes"][1]["dst"], "10.43.0.0/16");
    }

    #[test]
    fn recognises_only_its_own_containerd() {
        let config = Path::new("/d/containerd/config.toml");
        let ok = b"/usr/bin/containerd\0--config\0/d/containerd/config.toml\0";
        assert!(is_containerd_of(ok, config));
        let other_dir = b"containerd\0--config\0/e/containerd/config.toml\0";
        assert!(!is_containerd_of(other_dir, config));
        let other_program = b"/bin/sleep\0--config\0/d/containerd/config.toml\0";
        assert!(!is_containerd_of(other_program, config));
        assert!(!is_containerd_of(b"", config));
        // this test's own process is no containerd of any directory
        assert!(!is_ours(
            std::process::id() as i32,
            Path::new("/d/containerd")
        ));
    }
}
