//! An etcd 3.4 child process for `kubus bench store`: one member on
//! loopback ports, a fresh data directory, stopped by its PID (SIGTERM,
//! then SIGKILL) when the guard is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::nats_server::free_port;

/// How long etcd may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long etcd may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running etcd; dropping it stops it.
pub struct Etcd {
    child: Child,
    client_url: String,
    log: PathBuf,
}

impl Etcd {
    /// Starts `binary` with its data in `dir/data` (which must not exist
    /// yet) and its output in `dir/etcd.log`, and waits until it answers.
    pub async fn start(binary: &Path, dir: &Path) -> anyhow::Result<Etcd> {
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = dir.join("etcd.log");
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let data = dir.join("data");
        let child = Command::new(binary)
            .arg("--name")
            .arg("bench")
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("bench={peer_url}")])
            .args(["--initial-cluster-state", "new"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (Debian package etcd-server; deploy/install-deps.sh installs it)",
                    binary.display()
                )
            })?;
        let mut etcd = Etcd {
            child,
            client_url,
            log,
        };
        etcd.wait_ready().await?;
        Ok(etcd)
    }

    /// The URL clients connect to.
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "etcd exited at start ({status}); see {}",
                    self.log.display()
                );
            }
            match etcd_client::Client::connect([self.client_url.as_str()], None).await {
                Ok(mut c) => match c.status().await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "etcd did not answer on {} within {READY_TIMEOUT:?}: {last}; see {}",
            self.client_url,
            self.log.display()
        )
    }

    /// Stops etcd by its PID: SIGTERM, then SIGKILL after
    /// [`STOP_TIMEOUT`]; reaps it. Idempotent.
    pub fn stop(&mut self) {
        crate::child::stop(
            &mut self.child,
            nix::sys::signal::Signal::SIGTERM,
            STOP_TIMEOUT,
        );
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
