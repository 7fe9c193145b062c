//! # kubus-tests: the integration-test harness
//!
//! Starts real `kubus` processes (each with its own `nats-server` child,
//! RocksDB data directory and `KUBUS_HOME`) and talks to them only through
//! public subjects and the CLI. Every process a test starts is stopped by its
//! PID when its guard drops; every wait is bounded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod browser;

/// The `kubus` binary next to the test executable (built by `cargo build`
/// before the tests; `deploy/test.sh` does that), or `$KUBUS_BIN`.
pub fn kubus_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBUS_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/<test> → target/debug/kubus
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    dir.join("kubus")
}

/// This crate's directory as cargo gives it to the running test (so a test
/// binary built in a target directory shared with a checkout elsewhere
/// still finds this checkout's files), else as it was at build time.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Where the shared Kubernetes example manifests are: `../shared/k8s-examples`
/// beside the repository, else the copy in `tests/fixtures/k8s-examples`.
pub fn k8s_examples() -> PathBuf {
    let dir = manifest_dir();
    let repo = dir.parent().unwrap_or(Path::new("."));
    let shared = repo.join("../shared/k8s-examples");
    if shared.is_dir() {
        shared
    } else {
        repo.join("tests/fixtures/k8s-examples")
    }
}

/// Whether the tests run as root (what containerd, mounts and network
/// namespaces need).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Poll `f` every 100 ms until it returns Some, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether a process (or process group leader) with this pid exists.
pub fn alive(pid: i32) -> bool {
    // SAFETY-free check through /proc: a zombie counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// One `kubus up` cluster in a private directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub nats_url: String,
    pub nats_pid: Option<u32>,
    /// More `kubus up` arguments, on every launch.
    up_args: Vec<String>,
}

impl Cluster {
    /// Start `kubus up` in a fresh directory and wait until it serves.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// [`Cluster::start`] with more `kubus up` arguments. Unless they
    /// name one, the cluster gets a service range of its own
    /// (`10.<N>.0.0/16`, N from 100), so clusters of tests running at once
    /// never answer for each other's cluster IPs or DNS.
    pub fn start_with(up_args: &[&str]) -> Cluster {
        let mut c = Cluster::unstarted(up_args);
        c.launch();
        c
    }

    /// A cluster in a fresh directory, not started yet: fill its
    /// [`Cluster::data_dir`] first (a restore), then [`Cluster::launch`].
    /// The same arguments as [`Cluster::start_with`].
    pub fn unstarted(up_args: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut up_args: Vec<String> = up_args.iter().map(|a| a.to_string()).collect();
        if !up_args.iter().any(|a| a == "--runtime") {
            // the default would pick containerd on a machine that has it
            up_args.extend(["--runtime".to_string(), "process".to_string()]);
        }
        if !up_args.iter().any(|a| a == "--process-network") {
            // the tests of the node's network; a test of pod networks asks
            up_args.extend(["--process-network".to_string(), "host".to_string()]);
        }
        if !up_args.iter().any(|a| a == "--service-cidr") {
            up_args.extend(["--service-cidr".to_string(), unique_service_cidr()]);
        }
        Cluster {
            dir,
            child: None,
            nats_url: String::new(),
            nats_pid: None,
            up_args,
        }
    }

    /// Where the mesh node's HTTP endpoint (metrics, dashboard) listens,
    /// as `current.json` says.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        let current: Value = serde_json::from_slice(
            &std::fs::read(self.home().join("current.json")).expect("current.json"),
        )
        .expect("current.json parses");
        current["http"]
            .as_str()
            .expect("current.json names the HTTP endpoint (started with --http-address)")
            .trim_start_matches("http://")
            .parse()
            .expect("an address")
    }

    /// The cluster's service range, as given to `kubus up`.
    pub fn service_cidr(&self) -> String {
        let at = self.up_args.iter().position(|a| a == "--service-cidr");
        at.and_then(|i| self.up_args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| "10.43.0.0/16".to_string())
    }

    /// The cluster DNS address (the service range's tenth).
    pub fn dns_addr(&self) -> std::net::SocketAddr {
        let cidr = self.service_cidr();
        let base: std::net::Ipv4Addr = cidr
            .split('/')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("service range");
        let ip = std::net::Ipv4Addr::from(u32::from(base) + 10);
        std::net::SocketAddr::new(ip.into(), 53)
    }

    /// The bus credentials of `identity` that `kubus up` made.
    pub fn credentials_of(
        &self,
        identity: &kubus_bus::auth::Identity,
    ) -> kubus_bus::auth::Credentials {
        let path = self
            .data_dir()
            .join("bus")
            .join(format!("{}.json", identity.user()));
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("credentials {}: {e}", path.display()));
        serde_json::from_slice(&bytes).expect("a credentials file")
    }

    /// The administrator's bus credentials.
    pub fn credentials(&self) -> kubus_bus::auth::Credentials {
        self.credentials_of(&kubus_bus::auth::Identity::Admin)
    }

    /// A tokio runtime and the administrator's bus client.
    pub fn bus_client(&self) -> (tokio::runtime::Runtime, kubus_bus::Client) {
        bus_client_as(&self.nats_url, Some(&self.credentials()))
    }

    /// A bus client as the administrator, on the caller's runtime.
    pub async fn connect(&self) -> kubus_bus::Client {
        kubus_bus::Client::connect_as(&self.nats_url, "kubus", Some(&self.credentials()))
            .await
            .expect("connect")
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Start (or restart) `kubus up` on this cluster's data directory.
    pub fn launch(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("kubus.log"))
            .expect("log file");
        let _ = std::fs::remove_file(self.home().join("current.json"));
        // every test cluster serves the Kubernetes API on a port of its own
        let api: &[&str] = if self.up_args.iter().any(|a| a.starts_with("--api-address")) {
            &[]
        } else {
            &["--api-address", "127.0.0.1:0"]
        };
        // and metrics on a port of its own
        let http: &[&str] = if self.up_args.iter().any(|a| a.starts_with("--http-address")) {
            &[]
        } else {
            &["--http-address", "127.0.0.1:0"]
        };
        let child = Command::new(kubus_bin())
            .args(["up", "--node-name", "node-1", "--data-dir"])
            .arg(self.data_dir())
            .args(api)
            .args(http)
            .args(&self.up_args)
            .env("KUBUS_HOME", self.home())
            .env(
                "RUST_LOG",
                std::env::var("KUBUS_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", kubus_bin().display()));
        self.child = Some(child);
        let current = wait_for(Duration::from_secs(30), || {
            let bytes = std::fs::read(self.home().join("current.json")).ok()?;
            serde_json::from_slice::<Value>(&bytes).ok()
        })
        .unwrap_or_else(|| panic!("kubus up did not record its bus; log:\n{}", self.log()));
        self.nats_url = current["nats"].as_str().unwrap_or_default().to_string();
        self.nats_pid = current["nats_pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok());
        // ready = the store answers and the node registered
        wait_for(Duration::from_secs(30), || {
            let out = self.kubus(&["get", "nodes", "-o", "json"]);
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            (v["items"].as_array()?.len() == 1).then_some(())
        })
        .unwrap_or_else(|| panic!("cluster not ready; log:\n{}", self.log()));
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stop with SIGTERM (a clean shutdown), bounded; SIGKILL if it hangs.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "-TERM");
            let done = wait_for(Duration::from_secs(30), || child.try_wait().ok().flatten());
            if done.is_none() {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "kubus did not stop within 30 s of SIGTERM; log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Kill with SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // its nats-server child is orphaned: stop it by the pid kubus recorded
        if let Some(pid) = self.nats_pid {
            signal(pid, "-KILL");
        }
    }

    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("kubus.log")).unwrap_or_default();
        let start = text.len().saturating_sub(8000);
        text.get(start..).unwrap_or(&text).to_string()
    }

    /// Run the kubus CLI against this cluster.
    pub fn kubus(&self, args: &[&str]) -> Output {
        Command::new(kubus_bin())
            .args(args)
            .env("KUBUS_HOME", self.home())
            .env_remove("KUBUS_NATS")
            .stdin(Stdio::null())
            .output()
            .expect("run kubus")
    }

    /// Run the kubus CLI with `input` on its stdin.
    pub fn kubus_with_input(&self, args: &[&str], input: &str) -> Output {
        output_with_input(
            Command::new(kubus_bin())
                .args(args)
                .env("KUBUS_HOME", self.home())
                .env_remove("KUBUS_NATS"),
            input,
        )
    }

    /// Run `kubus ARGS`, which must succeed; what it printed (stdout,
    /// then stderr).
    pub fn kubus_ok(&self, args: &[&str]) -> String {
        let out = self.kubus(args);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kubus {args:?}: {said}");
        said
    }

    /// The machine's kubectl build for `minor` (`"1.33"`, `"1.27"`), or
    /// None when it has none (the one on the PATH is a dispatcher that
    /// picks the server's minor).
    pub fn kubectl_build(minor: &str) -> Option<PathBuf> {
        let p = PathBuf::from(format!("/usr/lib/google-cloud-sdk/bin/kubectl.{minor}"));
        p.is_file().then_some(p)
    }

    /// Run kubectl (`binary`) against this cluster's Kubernetes API with
    /// the kubeconfig `kubus up` wrote, `stdin` as its input; a HOME of
    /// its own per binary (kubectl caches discovery there).
    pub fn kubectl_in(&self, binary: &Path, args: &[&str], stdin: &str) -> Output {
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let home = self.dir.path().join(format!("home-{name}"));
        let _ = std::fs::create_dir_all(&home);
        output_with_input(
            Command::new(binary)
                .args(args)
                .env("KUBECONFIG", self.home().join("kubeconfig"))
                .env("HOME", &home),
            stdin,
        )
    }

    /// kubectl (`binary`) as a child with `args` (a `port-forward`), its
    /// output appended to `log`; stopped by its PID when dropped.
    pub fn kubectl_spawn(&self, binary: &Path, args: &[&str], log: &Path) -> Proc {
        let name = binary
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let home = self.dir.path().join(format!("home-{name}"));
        let _ = std::fs::create_dir_all(&home);
        Proc::spawn(
            Command::new(binary)
                .args(args)
                .env("KUBECONFIG", self.home().join("kubeconfig"))
                .env("HOME", &home),
            log,
        )
    }

    /// Apply a manifest given as text (through `kubus apply -f -`).
    pub fn apply(&self, manifest: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(kubus_bin())
            .args(["apply", "-f", "-"])
            .env("KUBUS_HOME", self.home())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubus apply");
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(manifest.as_bytes())
                .expect("write manifest");
        }
        child.wait_with_output().expect("kubus apply")
    }

    /// Apply `manifest` and wait until the pod `name` runs.
    pub fn apply_and_run(&self, manifest: &str, name: &str) {
        let out = self.apply(manifest);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for(Duration::from_secs(30), || {
            self.items("pods")
                .iter()
                .any(|p| p["metadata"]["name"] == name && p["status"]["phase"] == "Running")
                .then_some(())
        })
        .unwrap_or_else(|| panic!("pod {name} not running\n{}", self.log()));
    }

    /// A worker mesh node `name` on the cluster's bus, with process pods
    /// on the node's network (its own data directory; stopped by its PID
    /// when dropped).
    pub fn worker(&self, name: &str) -> Proc {
        let dir = self.dir.path().join(name);
        std::fs::create_dir_all(&dir).expect("worker dir");
        let mut cmd = Command::new(kubus_bin());
        cmd.args(["node", "--roles", "worker", "--node-name", name])
            .args(["--runtime", "process", "--process-network", "host"])
            .args(["--service-cidr", &self.service_cidr()])
            .arg("--nats")
            .arg(&self.nats_url)
            // joins the bus as another machine would (docs/security.md)
            .arg("--join-token-file")
            .arg(self.data_dir().join("bus").join("join-token"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env(
                "RUST_LOG",
                std::env::var("KUBUS_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        Proc::spawn(&mut cmd, &dir.join("node.log"))
    }

    /// `kubus get KIND -o json` items.
    pub fn items(&self, kind: &str) -> Vec<Value> {
        let out = self.kubus(&["get", kind, "-o", "json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
    }
}

// The ranges tests use, kept apart so that no cluster's routes swallow
// another's traffic: service ranges 10.99 (containerd tests), 10.100-199
// (one per cluster, below), 10.200-229 (one per mesh test run, below);
// pod ranges 10.88 and 10.89 (the defaults) and 10.231 (pod networks).

/// A service range no other cluster of this test run uses.
fn unique_service_cidr() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) + std::process::id();
    format!("10.{}.0.0/16", 100 + n % 100)
}

/// The service range the nodes of a mesh test share (one per test run).
pub fn mesh_service_cidr() -> String {
    format!("10.{}.0.0/16", 200 + std::process::id() % 30)
}

/// Run `cmd` with `input` on its stdin; its output once it ends.
pub fn output_with_input(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    child.wait_with_output().expect("the command ends")
}

/// GET `path` from `addr` over HTTP/1.0: the body, or None on any failure
/// (bounded by `timeout` for connect and for the whole read).
pub fn http_get(addr: std::net::SocketAddr, path: &str, timeout: Duration) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.take(8 << 20).read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_string())
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.child.is_some() {
            let pid = self.pid();
            if let Some(mut child) = self.child.take() {
                if let Some(pid) = pid {
                    signal(pid, "-TERM");
                }
                if wait_for(Duration::from_secs(20), || child.try_wait().ok().flatten()).is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}

/// Pods whose phase is Running, every container ready, and not being
/// deleted (a terminating pod runs until its containers stop, but
/// `kubus get pods` shows it `Terminating`, issue 5).
pub fn running(pods: &[Value]) -> Vec<&Value> {
    pods.iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["containerStatuses"]
                .as_array()
                .is_some_and(|cs| cs.iter().all(|c| c["ready"] == true))
        })
        .collect()
}

/// The process-group ids of a pod's running containers.
pub fn container_pids(pod: &Value) -> Vec<i32> {
    pod["status"]["containerStatuses"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["containerID"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The Events (from `kubus get events -o json` items) about the object
/// named `name`, as (reason, message) pairs.
pub fn events_about(events: &[Value], name: &str) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["involvedObject"]["name"] == name)
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (s("reason"), s("message"))
        })
        .collect()
}

/// Whether one of `events` has this reason and a message `message` accepts.
pub fn has_event(
    events: &[(String, String)],
    reason: &str,
    message: impl Fn(&str) -> bool,
) -> bool {
    events.iter().any(|(r, m)| r == reason && message(m))
}

/// A child process this test started, stopped by its PID when dropped
/// (SIGTERM, then SIGKILL after 20 s), also when the test panics.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(cmd: &mut Command, log: &Path) -> Proc {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .expect("spawn");
        Proc {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL by PID, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The end of the log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text.get(start..).unwrap_or(&text).to_string()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "-TERM");
            if wait_for(Duration::from_secs(20), || c.try_wait().ok().flatten()).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A loopback port free a moment ago (for a child told to listen on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A two-thread tokio runtime for tests that drive clients themselves.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A tokio runtime and a bus client of cluster `kubus` at `url` (as the
/// user of `credentials`), for tests that speak to the API directly.
pub fn bus_client_as(
    url: &str,
    credentials: Option<&kubus_bus::auth::Credentials>,
) -> (tokio::runtime::Runtime, kubus_bus::Client) {
    let rt = runtime();
    let client = rt
        .block_on(kubus_bus::Client::connect_as(url, "kubus", credentials))
        .expect("connect");
    (rt, client)
}

/// A plain nats-server on a free loopback port; returns it and its URL.
pub fn nats_server(dir: &Path) -> (Proc, String) {
    let port = free_port();
    let proc = Proc::spawn(
        Command::new("nats-server").args(["-a", "127.0.0.1", "-p", &port.to_string()]),
        &dir.join("nats-server.log"),
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()
    })
    .expect("nats-server up");
    (proc, format!("nats://127.0.0.1:{port}"))
}

/// A NATS cluster of `n` nats-server processes on free loopback ports,
/// each with a route to every other (`--routes`), in `dir`; returns them
/// and their client URLs, once every one accepts connections and sees
/// its routes.
pub fn nats_cluster(dir: &Path, n: usize) -> (Vec<Proc>, Vec<String>) {
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let routes: Vec<String> = ports
        .iter()
        .map(|(_, cluster)| format!("nats-route://127.0.0.1:{cluster}"))
        .collect();
    let mut procs = Vec::with_capacity(n);
    for (i, (client, cluster)) in ports.iter().enumerate() {
        let others: Vec<&str> = routes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, r)| r.as_str())
            .collect();
        let mut cmd = Command::new("nats-server");
        cmd.args(["-a", "127.0.0.1", "-p", &client.to_string()])
            .args(["--cluster_name", "kubus-test"])
            .args(["--cluster", &format!("nats://127.0.0.1:{cluster}")])
            .args(["--routes", &others.join(",")])
            .args(["-n", &format!("nats-{}", i + 1)]);
        procs.push(Proc::spawn(
            &mut cmd,
            &dir.join(format!("nats-{}.log", i + 1)),
        ));
    }
    for (client, _) in &ports {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], *client));
        wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()
        })
        .unwrap_or_else(|| panic!("nats-server on {addr} up\n{}", logs_of(&procs)));
    }
    // routes: every server logs one "Route connection created" per peer
    wait_for(Duration::from_secs(10), || {
        procs
            .iter()
            .all(|p| {
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                log.matches("Route connection created").count() >= n - 1
            })
            .then_some(())
    })
    .unwrap_or_else(|| panic!("nats routes not up in 10 s\n{}", logs_of(&procs)));
    let urls = ports
        .iter()
        .map(|(client, _)| format!("nats://127.0.0.1:{client}"))
        .collect();
    (procs, urls)
}

/// The ends of the logs of `procs`, each under its file name: what a
/// failed multi-process test prints.
pub fn logs_of<'a>(procs: impl IntoIterator<Item = &'a Proc>) -> String {
    procs
        .into_iter()
        .map(|p| format!("== {}\n{}", p.log.display(), p.log_tail()))
        .collect::<Vec<_>>()
        .join("\n")
}
