//! The embedded default bus: a `nats-server` child on a free loopback port,
//! restarted (a bounded number of times) if it dies, stopped with us.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tracing::{info, warn};

/// How long the server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Restarts allowed before `kubus up` gives up on its bus.
pub const RESTARTS_MAX: u32 = 5;

pub struct NatsServer {
    child: Child,
    host: std::net::IpAddr,
    port: u16,
    log: std::path::PathBuf,
    /// The configuration file (kubus's accounts and users), if any.
    config: Option<std::path::PathBuf>,
    pub restarts: u32,
}

/// A port on 127.0.0.1 that nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    free_port_on("127.0.0.1".parse()?)
}

/// A port on `host` that nobody listens on right now.
fn free_port_on(host: std::net::IpAddr) -> anyhow::Result<u16> {
    let l =
        TcpListener::bind((host, 0)).with_context(|| format!("finding a free port on {host}"))?;
    Ok(l.local_addr()?.port())
}

fn spawn(
    host: std::net::IpAddr,
    port: u16,
    log: &Path,
    config: Option<&Path>,
) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut cmd = Command::new("nats-server");
    if let Some(c) = config {
        cmd.arg("-c").arg(c);
    }
    // the flags win over the file
    cmd.args(["-a", &host.to_string(), "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .context(
            "starting nats-server (install it with deploy/install-deps.sh, or pass --nats URL)",
        )
}

fn wait_ready(child: &mut Child, host: std::net::IpAddr, port: u16) -> anyhow::Result<()> {
    let addr = SocketAddr::new(local_to(host), port);
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            bail!("nats-server exited at start ({status})");
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nats-server did not accept connections on {addr} within {READY_TIMEOUT:?}")
}

impl NatsServer {
    /// Start a nats-server on a free loopback port, with configuration
    /// file `config`; its output goes to `log`.
    pub fn start(log: &Path, config: Option<&Path>) -> anyhow::Result<NatsServer> {
        NatsServer::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), log, config)
    }

    /// [`NatsServer::start`] listening on `bind` (port 0: a free one).
    pub fn start_on(
        bind: SocketAddr,
        log: &Path,
        config: Option<&Path>,
    ) -> anyhow::Result<NatsServer> {
        let host = bind.ip();
        let port = match bind.port() {
            0 => free_port_on(host)?,
            p => p,
        };
        let mut child = spawn(host, port, log, config)?;
        if let Err(e) = wait_ready(&mut child, host, port) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        info!(port, pid = child.id(), "nats-server started");
        Ok(NatsServer {
            child,
            host,
            port,
            log: log.to_path_buf(),
            config: config.map(Path::to_path_buf),
            restarts: 0,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where clients on this machine reach the server.
    pub fn url(&self) -> String {
        format!("nats://{}", SocketAddr::new(local_to(self.host), self.port))
    }

    /// Restart the server on the same port if it died. Errors once the
    /// restart budget is spent.
    pub fn supervise(&mut self) -> anyhow::Result<()> {
        let Some(status) = self.child.try_wait()? else {
            return Ok(());
        };
        if self.restarts >= RESTARTS_MAX {
            bail!(
                "nats-server keeps dying (last: {status}); see {}",
                self.log.display()
            );
        }
        self.restarts += 1;
        warn!(%status, restarts = self.restarts, "nats-server exited; restarting");
        let mut child = spawn(self.host, self.port, &self.log, self.config.as_deref())?;
        wait_ready(&mut child, self.host, self.port)?;
        self.child = child;
        Ok(())
    }

    /// Have the server read its configuration file again (users and
    /// permissions change without a restart; open connections get the new
    /// permissions).
    pub fn reload(&self) -> anyhow::Result<()> {
        let pid = i32::try_from(self.child.id()).context("nats-server's pid")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGHUP,
        )
        .context("signalling nats-server to reload")?;
        Ok(())
    }

    /// Stop the server (SIGTERM, then SIGKILL after a second) and reap it.
    pub fn stop(&mut self) {
        crate::child::stop(
            &mut self.child,
            nix::sys::signal::Signal::SIGTERM,
            Duration::from_secs(1),
        );
    }
}

/// The address a client on this machine uses for a server bound to
/// `host` (a wildcard bind is reached on loopback).
fn local_to(host: std::net::IpAddr) -> std::net::IpAddr {
    if host.is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        host
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
