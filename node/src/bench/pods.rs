//! `kubus bench pods`: pod startup latency on hollow nodes, measured the way
//! Kubernetes states its SLO: from the pod's creation to its `Running` as a
//! watcher sees it.
//!
//! It starts a nats-server and a `kubus up --hollow-nodes N` child (every
//! role, all hollow agents in that one process) in a temporary directory,
//! waits for the nodes, then:
//! 1. baseline: a Deployment of one pod on the idle cluster;
//! 2. load: a Deployment of `--pods` replicas published as one manifest.
//!
//! For each it prints, per pod, created → Running seen and manifest
//! published → Running seen (p50, p99), and the time until all run.
//!
//! With `--runtime cri` the pods are real containers: `kubus up --runtime
//! cri` with its private containerd (the test images imported by
//! `--images-script`), and first the baseline of the same pods started by
//! raw CRI calls on that containerd ([`super::raw_cri`]).

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use kubus_api::{meta, Kind};
use kubus_bus::watch::{watch, WatchItem, WatchSpec};
use kubus_bus::Client;
use serde_json::Value;

use super::{histogram, summary};
use crate::cli::BenchPodsArgs;
use crate::nats_server::NatsServer;

/// The cluster name the benchmark's subjects use.
pub(super) const CLUSTER: &str = "bench";
/// Longest wait for the hollow nodes to register.
const NODES_WAIT_MAX: Duration = Duration::from_secs(300);
/// The worker's node name.
pub(super) const WORKER: &str = "bench-worker";
/// The image of the cri runtime's pods (imported by the images script).
const CRI_IMAGE: &str = "localhost/busybox:latest";
/// Longest wait for the private containerd's socket.
const CONTAINERD_WAIT_MAX: Duration = Duration::from_secs(60);

pub fn run(args: BenchPodsArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut nats = NatsServer::start(&dir.path().join("nats-server.log"), None)?;
    let url = nats.url();
    let result = start_cluster(dir.path(), &url, &args).and_then(|mut cluster| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let out = if args.runtime == "cri" {
            import_images(dir.path(), &args).and_then(|socket| {
                runtime.block_on(measure_cri(&url, &args, cluster.pid(), &socket, dir.path()))
            })
        } else {
            runtime.block_on(measure(&url, &args, cluster.pid()))
        };
        cluster.stop();
        out
    });
    nats.stop();
    result
}

/// The `kubus up` child, stopped (by its PID) when dropped.
pub(super) struct Cluster {
    child: Child,
}

impl Cluster {
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT (a clean stop), up to 15 s, then SIGKILL.
    pub(super) fn stop(&mut self) {
        crate::child::stop(
            &mut self.child,
            nix::sys::signal::Signal::SIGINT,
            Duration::from_secs(15),
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn start_cluster(dir: &Path, url: &str, args: &BenchPodsArgs) -> anyhow::Result<Cluster> {
    let hollow = (args.runtime != "cri").then_some((args.hollow_nodes, args.hollow_delay_ms));
    start_up(dir, url, hollow, &[])
}

/// A `kubus up` child on `url` in `dir`: with `hollow` (nodes, start-up
/// ms) hollow nodes beside a process-runtime worker, else the cri runtime;
/// `extra` flags for `kubus up`.
pub(super) fn start_up(
    dir: &Path,
    url: &str,
    hollow: Option<(usize, u64)>,
    extra: &[&str],
) -> anyhow::Result<Cluster> {
    let exe = std::env::current_exe().context("finding the kubus binary")?;
    let log = std::fs::File::create(dir.join("kubus-up.log")).context("creating the log")?;
    let mut cmd = Command::new(exe);
    cmd.args(["up", "--nats", url, "--cluster", CLUSTER, "--data-dir"])
        .arg(dir.join("data"))
        .args(["--node-name", WORKER]);
    match hollow {
        None => {
            cmd.args(["--runtime", "cri"]);
        }
        Some((nodes, delay_ms)) => {
            cmd.args(["--runtime", "process"])
                .args(["--hollow-nodes", &nodes.to_string()])
                .args(["--hollow-delay-ms", &delay_ms.to_string()]);
        }
    }
    let child = cmd
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("log")?)
        .stderr(log)
        .spawn()
        .context("starting kubus up")?;
    Ok(Cluster { child })
}

async fn measure(url: &str, args: &BenchPodsArgs, pid: u32) -> anyhow::Result<()> {
    let client = Client::connect(url, CLUSTER).await?;
    println!(
        "kubus bench pods: {} pods on {} hollow nodes (start-up {} ms each), one `kubus up` process",
        args.pods, args.hollow_nodes, args.hollow_delay_ms
    );
    println!(
        "(build: {}; fsync on; one store peer; client, cluster and nats-server share this machine)\n",
        super::build()
    );
    let started = Instant::now();
    wait_for_nodes(&client, args.hollow_nodes, is_hollow_node).await?;
    println!(
        "{} hollow nodes Ready after {:.1} s; kubus up RSS {}",
        args.hollow_nodes,
        started.elapsed().as_secs_f64(),
        rss(pid)
    );
    let timeout = Duration::from_secs(args.timeout_s.max(1));
    let baseline = deploy(&client, "bench-baseline", 1, HOLLOW_POD, timeout).await?;
    baseline.print("baseline: 1 pod on the idle cluster");
    let load = deploy(&client, "bench-load", args.pods.max(1), HOLLOW_POD, timeout).await?;
    load.print(&format!("{} pods in one Deployment", args.pods.max(1)));
    println!("kubus up RSS after: {}", rss(pid));
    let p99 = load.startup.value_at_quantile(0.99) as f64 / 1e6;
    println!(
        "\ngoal (hollow nodes): startup p99 ≤ 0.5 s — {:.3} s; 30,000 pods Running in ≤ 60 s{}; \
         the whole cluster's peak RSS ≤ 1 GB",
        p99,
        match load.all_running {
            Some(t) => format!(" — {} in {:.1} s", load.running, t.as_secs_f64()),
            None => format!(" — only {} Running before the timeout", load.running),
        }
    );
    Ok(())
}

/// Start the pods with raw CRI calls, then through kubus, on the same
/// containerd.
async fn measure_cri(
    url: &str,
    args: &BenchPodsArgs,
    pid: u32,
    socket: &Path,
    dir: &Path,
) -> anyhow::Result<()> {
    let client = Client::connect(url, CLUSTER).await?;
    let pods = args.pods.max(1);
    println!(
        "kubus bench pods: {pods} pods as containers (cri runtime, private containerd), one `kubus up` process"
    );
    println!(
        "(build: {}; fsync on; one store peer; client, cluster, nats-server and containerd share this machine)\n",
        super::build()
    );
    wait_for_nodes(&client, 1, |n| meta::name(n) == Some(WORKER)).await?;
    let logs = dir.join("raw-cri-logs");
    let raw_one = super::raw_cri::run(socket, "raw-one", 1, CRI_IMAGE, logs.clone()).await?;
    println!("raw CRI: 1 pod (RunPodSandbox + CreateContainer + StartContainer)");
    println!(
        "  calls begun → container started    {}",
        summary(&raw_one.started)
    );
    let raw = super::raw_cri::run(socket, "raw", pods, CRI_IMAGE, logs).await?;
    println!("\nraw CRI: {pods} pods at once");
    println!(
        "  calls begun → container started    {}",
        summary(&raw.started)
    );
    println!("  all started after {:.2} s", raw.all_started.as_secs_f64());
    let timeout = Duration::from_secs(args.timeout_s.max(1));
    let baseline = deploy(&client, "bench-baseline", 1, CRI_POD, timeout).await?;
    baseline.print("kubus: 1 pod on the idle cluster");
    let load = deploy(&client, "bench-load", pods, CRI_POD, timeout).await?;
    load.print(&format!("kubus: {pods} pods in one Deployment"));
    println!("kubus up RSS after: {}", rss(pid));
    let ratio = |q: f64| {
        load.from_manifest.value_at_quantile(q) as f64
            / raw.started.value_at_quantile(q).max(1) as f64
    };
    println!(
        "\nkubus (manifest → Running seen) / raw CRI (calls → started): p50 {:.1}×, p99 {:.1}×{}",
        ratio(0.5),
        ratio(0.99),
        match load.all_running {
            Some(t) => format!(
                ", all {:.1}×",
                t.as_secs_f64() / raw.all_started.as_secs_f64().max(1e-9)
            ),
            None => String::new(),
        }
    );
    Ok(())
}

/// Wait for the private containerd of `kubus up --runtime cri` and import
/// the test images into it; returns its socket.
fn import_images(dir: &Path, args: &BenchPodsArgs) -> anyhow::Result<std::path::PathBuf> {
    let socket = dir.join("data").join("containerd").join("containerd.sock");
    let deadline = Instant::now() + CONTAINERD_WAIT_MAX;
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if Instant::now() > deadline {
            bail!(
                "the private containerd did not open {} within {CONTAINERD_WAIT_MAX:?} (see {})",
                socket.display(),
                dir.join("kubus-up.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !args.images_script.is_file() {
        bail!(
            "{} not found: run from the repository's root or pass --images-script",
            args.images_script.display()
        );
    }
    let out = Command::new("bash")
        .arg(&args.images_script)
        .arg("--address")
        .arg(&socket)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", args.images_script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.images_script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(socket)
}

pub(super) async fn wait_for_nodes(
    client: &Client,
    want: usize,
    counts: impl Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + NODES_WAIT_MAX;
    while Instant::now() < deadline {
        if let Ok((nodes, _)) = client.list(Kind::Node, None, None, None).await {
            if nodes.iter().filter(|n| counts(n)).count() >= want {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("the nodes did not register within {NODES_WAIT_MAX:?}")
}

pub(super) fn is_hollow_node(node: &Value) -> bool {
    node.pointer("/metadata/labels/kubus.io~1hollow")
        .and_then(Value::as_str)
        == Some("true")
}

/// What one Deployment's pods did.
pub(super) struct Outcome {
    /// Created (first seen) → Running seen, per pod.
    pub(super) startup: Histogram<u64>,
    /// Manifest published → Running seen, per pod.
    from_manifest: Histogram<u64>,
    pub(super) running: usize,
    pub(super) all_running: Option<Duration>,
    /// Store revisions between the manifest and the last pod Running: every
    /// write the cluster made for these pods (creates, bindings, status,
    /// Events, ReplicaSet status).
    writes: u64,
    /// Of those, the changes to the pods themselves the watcher saw.
    pod_writes: u64,
}

impl Outcome {
    pub(super) fn print(&self, title: &str) {
        println!("\n{title}");
        println!(
            "  pod created → Running seen        {}",
            summary(&self.startup)
        );
        println!(
            "  manifest published → Running seen {}",
            summary(&self.from_manifest)
        );
        match self.all_running {
            Some(t) => println!(
                "  all {} Running after {:.2} s ({:.0} pods/s)",
                self.running,
                t.as_secs_f64(),
                self.running as f64 / t.as_secs_f64().max(1e-9)
            ),
            None => println!("  only {} Running before the timeout", self.running),
        }
        let secs = self.all_running.map_or(0.0, |t| t.as_secs_f64());
        println!(
            "  store writes meanwhile: {} ({:.1} per pod, {:.1} of them to the pod itself; {:.0}/s)",
            self.writes,
            self.writes as f64 / self.running.max(1) as f64,
            self.pod_writes as f64 / self.running.max(1) as f64,
            self.writes as f64 / secs.max(1e-9)
        );
    }
}

/// A pod's first sighting and, once seen, when it was Running.
#[derive(Default)]
struct Seen {
    created: Option<Instant>,
    running: Option<Instant>,
}

/// The pod template's spec for hollow nodes.
pub(super) const HOLLOW_POD: &str = "nodeSelector: {kubus.io/hollow: \"true\"}\n      containers:\n      - {name: main, image: busybox, command: [sleep, \"3600\"], resources: {requests: {cpu: 10m, memory: 16Mi}}}";
/// The pod template's spec for the cri worker.
const CRI_POD: &str = "nodeSelector: {kubernetes.io/hostname: bench-worker}\n      containers:\n      - {name: main, image: \"localhost/busybox:latest\", imagePullPolicy: Never, command: [sleep, \"3600\"], resources: {requests: {cpu: 10m, memory: 16Mi}}}";

/// Apply a Deployment of `replicas` pods (`pod_spec`: its template's spec)
/// labelled `app=name` and watch its pods until all run (or `timeout`).
pub(super) async fn deploy(
    client: &Client,
    name: &str,
    replicas: usize,
    pod_spec: &str,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let manifest = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      {pod_spec}\n"
    );
    run_until_running(client, name, &manifest, replicas, timeout).await
}

/// Apply `manifest` and watch the pods labelled `app=name` until
/// `replicas` of them run (or `timeout`).
pub(super) async fn run_until_running(
    client: &Client,
    name: &str,
    manifest: &str,
    replicas: usize,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let mut items = watch(client.clone(), WatchSpec::all(client, Kind::Pod));
    // the watch lists first: wait for that, so no pod is seen late
    match tokio::time::timeout(Duration::from_secs(30), items.recv()).await {
        Ok(Some(WatchItem::Relisted { .. })) => {}
        _ => bail!("the pod watch did not start"),
    }
    let revision_before = store_revision(client).await?;
    let published = Instant::now();
    let reply = client.apply_manifests(manifest).await?;
    if let Some(e) = &reply.error {
        bail!("the benchmark's manifest was refused: {e}");
    }
    if let Some(Err(e)) = reply
        .documents
        .iter()
        .map(|d| &d.result)
        .find(|r| r.is_err())
    {
        bail!("the benchmark's manifest was refused: {e}");
    }
    let deadline = published + timeout;
    let mut pods: HashMap<String, Seen> = HashMap::new();
    let mut running = 0usize;
    let mut all_running = None;
    let mut pod_writes = 0u64;
    let progress = crate::progress::Progress::bar(replicas, "pods Running");
    while running < replicas {
        progress.set(running);
        let item = match tokio::time::timeout_at(deadline.into(), items.recv()).await {
            Ok(Some(item)) => item,
            Ok(None) => bail!("the pod watch ended"),
            Err(_) => break,
        };
        let now = Instant::now();
        let is_change = matches!(item, WatchItem::Event(_));
        let objects = match item {
            WatchItem::Event(e) => vec![e.object],
            WatchItem::Relisted { items, .. } => items,
            WatchItem::Bookmark(_) => continue,
        };
        for pod in objects {
            if pod.pointer("/metadata/labels/app").and_then(Value::as_str) != Some(name) {
                continue;
            }
            let Some(key) = meta::object_ref(&pod).map(|r| r.to_string()) else {
                continue;
            };
            pod_writes += u64::from(is_change);
            let seen = pods.entry(key).or_default();
            seen.created.get_or_insert(now);
            if seen.running.is_none()
                && pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
            {
                seen.running = Some(now);
                running += 1;
                if running == replicas {
                    all_running = Some(now - published);
                }
            }
        }
    }
    let writes = store_revision(client)
        .await?
        .saturating_sub(revision_before);
    let mut startup = histogram()?;
    let mut from_manifest = histogram()?;
    for seen in pods.values() {
        if let (Some(c), Some(r)) = (seen.created, seen.running) {
            startup.record(micros(r - c))?;
            from_manifest.record(micros(r - published))?;
        }
    }
    Ok(Outcome {
        startup,
        from_manifest,
        running,
        all_running,
        writes,
        pod_writes,
    })
}

/// The store's revision now (a one-item list's read revision).
async fn store_revision(client: &Client) -> anyhow::Result<u64> {
    let page = client
        .list_page(Kind::Namespace, None, None, None, Some(1), None)
        .await?;
    Ok(page.revision)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// The resident memory of process `pid` now and at its peak (the whole
/// single-process cluster: store, control plane, hollow nodes), as /proc
/// says it.
pub(super) fn rss(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.trim_start_matches(name).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    format!("{} (peak {})", field("VmRSS:"), field("VmHWM:"))
}
