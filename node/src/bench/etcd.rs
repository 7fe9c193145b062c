//! etcd 3.4 child processes for `kubus bench store`: one member, or a
//! cluster of three, on loopback ports with fresh data directories, stopped
//! by their PIDs (SIGTERM, then SIGKILL) when the guard is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::nats_server::free_port;

/// How long etcd may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long etcd may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running etcd of one or more members; dropping it stops them all.
pub struct Etcd {
    members: Vec<Member>,
    /// The client URL of the leader (of the only member, for one).
    leader_url: String,
}

struct Member {
    child: Child,
    client_url: String,
    log: PathBuf,
}

impl Etcd {
    /// Starts `members` members of one cluster, member `i` with its data in
    /// `dir/data-i` (which must not exist yet) and its output in
    /// `dir/etcd-i.log`, and waits until they have a leader.
    pub async fn start(binary: &Path, dir: &Path, members: usize) -> anyhow::Result<Etcd> {
        let mut ports = Vec::with_capacity(members);
        for _ in 0..members.max(1) {
            ports.push((free_port()?, free_port()?));
        }
        let initial_cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members: Vec::with_capacity(ports.len()),
            leader_url: String::new(),
        };
        for (i, (client_port, peer_port)) in ports.iter().enumerate() {
            let member = Member::spawn(binary, dir, i, *client_port, *peer_port, &initial_cluster)?;
            etcd.members.push(member);
        }
        etcd.leader_url = etcd.wait_leader().await?;
        Ok(etcd)
    }

    /// The URL clients connect to: the leader's, so that no put takes an
    /// extra hop through a follower.
    pub fn client_url(&self) -> &str {
        &self.leader_url
    }

    /// Waits until every member answers and one of them leads; returns the
    /// leader's client URL.
    async fn wait_leader(&mut self) -> anyhow::Result<String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            for m in &mut self.members {
                if let Some(status) = m.child.try_wait()? {
                    bail!("etcd exited at start ({status}); see {}", m.log.display());
                }
            }
            for m in &self.members {
                match leader_of(&m.client_url).await {
                    Ok(true) => return Ok(m.client_url.clone()),
                    Ok(false) => last = "no leader yet".into(),
                    Err(e) => last = e,
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let logs: Vec<String> = self
            .members
            .iter()
            .map(|m| m.log.display().to_string())
            .collect();
        bail!(
            "etcd had no leader within {READY_TIMEOUT:?}: {last}; see {}",
            logs.join(", ")
        )
    }

    /// Stops every member by its PID: SIGTERM, then SIGKILL after
    /// [`STOP_TIMEOUT`]; reaps them. Idempotent.
    pub fn stop(&mut self) {
        for m in &mut self.members {
            crate::child::stop(
                &mut m.child,
                nix::sys::signal::Signal::SIGTERM,
                STOP_TIMEOUT,
            );
        }
    }
}

impl Member {
    fn spawn(
        binary: &Path,
        dir: &Path,
        i: usize,
        client_port: u16,
        peer_port: u16,
        initial_cluster: &str,
    ) -> anyhow::Result<Member> {
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = dir.join(format!("etcd-{i}.log"));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary)
            .arg("--name")
            .arg(format!("m{i}"))
            .arg("--data-dir")
            .arg(dir.join(format!("data-{i}")))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", initial_cluster])
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
        Ok(Member {
            child,
            client_url,
            log,
        })
    }
}

/// Whether the member at `url` is its cluster's leader.
async fn leader_of(url: &str) -> Result<bool, String> {
    let mut c = etcd_client::Client::connect([url], None)
        .await
        .map_err(|e| e.to_string())?;
    let status = c.status().await.map_err(|e| e.to_string())?;
    let me = status.header().map(|h| h.member_id());
    Ok(status.leader() != 0 && me == Some(status.leader()))
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
