//! `kubus bench scheduler`: scheduling throughput in the manner of
//! kube-scheduler's `scheduler_perf` — many Node objects without agents
//! (nothing runs the pods; only bindings are measured), pods created at a
//! high rate, and the time each pod's binding is seen by a watcher.
//!
//! Cases, in one `kubus up` child: a baseline of the same pods created
//! already bound (`spec.nodeName` set: the store's rate for these writes,
//! the ceiling the scheduler's bindings share), then plain pods, pods with
//! required anti-affinity by hostname (ten groups), and pods with a zone
//! topology spread constraint (maxSkew 1, DoNotSchedule, ten zones).
//! kube-scheduler's CI minimum at 5,000 nodes is 680 pods/s (plain).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use kubus_api::{meta, Kind};
use kubus_bus::watch::{watch, WatchItem, WatchSpec};
use kubus_bus::Client;
use serde_json::{json, Value};

use super::pods::{rss, start_up, CLUSTER, WORKER};
use super::{histogram, summary};
use crate::cli::BenchSchedulerArgs;
use crate::nats_server::NatsServer;

/// Creates in flight at once.
const CREATES_IN_FLIGHT: usize = 128;
/// How long the pod watch may take to list what earlier cases made.
const WATCH_START_MAX: Duration = Duration::from_secs(120);
/// Zones the nodes are spread over.
const ZONES: usize = 10;
/// Anti-affinity groups.
const GROUPS: usize = 10;

pub fn run(args: BenchSchedulerArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut nats = NatsServer::start(&dir.path().join("nats-server.log"), None)?;
    let url = nats.url();
    // no node agents judge these nodes: keep the lifecycle controller from
    // calling them lost during the run
    let extra = ["--node-monitor-grace-period-secs", "86400"];
    let result = start_up(dir.path(), &url, Some((0, 0)), &extra).and_then(|mut cluster| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let out = runtime.block_on(measure(&url, &args, cluster.pid()));
        cluster.stop();
        out
    });
    nats.stop();
    result
}

fn node(i: usize) -> Value {
    let name = format!("sched-node-{i:05}");
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
            "topology.kubernetes.io/zone": format!("zone-{}", i % ZONES), "kubus.io/bench": "scheduler"}},
        "spec": {},
        "status": {"capacity": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})
}

/// One case's pod `i`.
fn pod(case: &str, i: usize, nodes: usize) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{case}-{i:05}"), "namespace": "default",
            "labels": {"app": case, "group": format!("g{}", i % GROUPS)}},
        "spec": {"containers": [{"name": "main", "image": "busybox",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
            "nodeSelector": {"kubus.io/bench": "scheduler"}}});
    match case {
        "bound" => p["spec"]["nodeName"] = json!(format!("sched-node-{:05}", i % nodes)),
        "anti" => {
            p["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": case, "group": format!("g{}", i % GROUPS)}},
                 "topologyKey": "kubernetes.io/hostname"}]}});
        }
        "spread" => {
            p["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": case}}}]);
        }
        _ => {}
    }
    p
}

/// Create `objects`, `CREATES_IN_FLIGHT` at a time; the time it took.
async fn create_all(client: &Client, objects: Vec<Value>) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let results: Vec<_> = stream::iter(objects)
        .map(|o| {
            let c = client.clone();
            async move { c.create(o).await }
        })
        .buffer_unordered(CREATES_IN_FLIGHT)
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        bail!("a benchmark object was refused: {e}");
    }
    Ok(started.elapsed())
}

/// What one case did.
struct Outcome {
    created: Duration,
    bound: usize,
    /// First create → last binding seen.
    all_bound: Option<Duration>,
    /// Pod first seen → its binding seen.
    latency: Histogram<u64>,
}

async fn run_case(
    client: &Client,
    case: &str,
    pods: usize,
    nodes: usize,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let mut items = watch(client.clone(), WatchSpec::all(client, Kind::Pod));
    match tokio::time::timeout(WATCH_START_MAX, items.recv()).await {
        Ok(Some(WatchItem::Relisted { .. })) => {}
        _ => bail!("the pod watch did not start"),
    }
    let objects: Vec<Value> = (0..pods).map(|i| pod(case, i, nodes)).collect();
    let started = Instant::now();
    let creating = {
        let client = client.clone();
        tokio::spawn(async move { create_all(&client, objects).await })
    };
    let deadline = started + timeout;
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    let mut latency = histogram()?;
    let mut bound = 0usize;
    let mut all_bound = None;
    let mut done: std::collections::HashSet<String> = Default::default();
    while bound < pods {
        let item = match tokio::time::timeout_at(deadline.into(), items.recv()).await {
            Ok(Some(item)) => item,
            Ok(None) => bail!("the pod watch ended"),
            Err(_) => break,
        };
        let now = Instant::now();
        let objects = match item {
            WatchItem::Event(e) => vec![e.object],
            WatchItem::Relisted { items, .. } => items,
            WatchItem::Bookmark(_) => continue,
        };
        for p in objects {
            if p.pointer("/metadata/labels/app").and_then(Value::as_str) != Some(case) {
                continue;
            }
            let name = meta::name(&p).unwrap_or_default().to_string();
            let seen = *first_seen.entry(name.clone()).or_insert(now);
            let has_node = p
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            if has_node && done.insert(name) {
                latency.record(u64::try_from((now - seen).as_micros()).unwrap_or(u64::MAX))?;
                bound += 1;
                if bound == pods {
                    all_bound = Some(now - started);
                }
            }
        }
    }
    let created = creating.await.context("the creating task")??;
    Ok(Outcome {
        created,
        bound,
        all_bound,
        latency,
    })
}

fn print(title: &str, pods: usize, o: &Outcome) {
    println!("\n{title}");
    println!(
        "  created in {:.2} s ({:.0} creates/s, {CREATES_IN_FLIGHT} in flight)",
        o.created.as_secs_f64(),
        pods as f64 / o.created.as_secs_f64().max(1e-9)
    );
    match o.all_bound {
        Some(t) => println!(
            "  all {pods} bound after {:.2} s: {:.0} pods/s",
            t.as_secs_f64(),
            pods as f64 / t.as_secs_f64().max(1e-9)
        ),
        None => println!("  only {} of {pods} bound before the timeout", o.bound),
    }
    println!("  pod seen → binding seen  {}", summary(&o.latency));
}

async fn measure(url: &str, args: &BenchSchedulerArgs, pid: u32) -> anyhow::Result<()> {
    let client = Client::connect(url, CLUSTER).await?;
    let nodes = args.nodes.max(1);
    let pods = args.pods.max(1);
    println!(
        "kubus bench scheduler: {nodes} nodes (Node objects, no agents), {pods} pods per case"
    );
    println!(
        "(build: {}; fsync on; one store peer; client, cluster and nats-server share this machine)",
        super::build()
    );
    // the local worker takes no benchmark pods (they select the bench nodes)
    let started = Instant::now();
    let wait_local = Instant::now() + Duration::from_secs(60);
    while client.get(Kind::Node, None, WORKER).await.is_err() {
        if Instant::now() > wait_local {
            bail!("the local node did not register");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = create_all(&client, (0..nodes).map(node).collect()).await?;
    println!(
        "{nodes} nodes created in {:.1} s (cluster up after {:.1} s); kubus up RSS {}",
        took.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        rss(pid)
    );
    // let the scheduler's cache see them
    tokio::time::sleep(Duration::from_secs(2)).await;
    let timeout = Duration::from_secs(args.timeout_s.max(1));
    let cases = [
        (
            "bound",
            "baseline: pods created already bound (no scheduling; the store's rate)",
        ),
        ("plain", "plain pods (requests, a nodeSelector)"),
        ("anti", "required anti-affinity by hostname (10 groups)"),
        (
            "spread",
            "topology spread over 10 zones (maxSkew 1, DoNotSchedule)",
        ),
    ];
    for (case, title) in cases {
        if !args.cases.is_empty() && case != "bound" && !args.cases.iter().any(|c| c == case) {
            continue;
        }
        let o = run_case(&client, case, pods, nodes, timeout).await?;
        print(title, pods, &o);
    }
    println!("\nkubus up RSS after: {}", rss(pid));
    println!("kube-scheduler's CI minimum at 5,000 nodes: 680 pods/s (scheduler_perf, plain pods)");
    Ok(())
}
