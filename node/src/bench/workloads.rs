//! `kubus bench workloads`: the DaemonSet and Job controllers at scale on
//! hollow nodes, beside a baseline from the same run.
//!
//! It starts a nats-server and a `kubus up --hollow-nodes N` child (as
//! `kubus bench pods` does), then:
//! 1. baseline: a Deployment of N pods (one per node's worth) — pods/s
//!    through the ReplicaSet controller and the scheduler;
//! 2. a DaemonSet over the N hollow nodes — time until every daemon pod
//!    runs, pods/s (the DaemonSet controller binds its pods itself);
//! 3. a Job of `--completions` pods, `--parallelism` at a time, whose
//!    hollow containers run `true` (exit 0 after twice the start-up delay)
//!    — time until the Job is Complete, completions/s.
//!
//! kube-scheduler's CI minimum for its DaemonSet case is 1,100 pods/s at
//! 15,000 nodes (`scheduler_perf`): printed for reference, not measured
//! here.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kubus_api::Kind;
use kubus_bus::Client;
use serde_json::Value;

use super::pods::{
    deploy, is_hollow_node, rss, run_until_running, start_up, wait_for_nodes, CLUSTER, HOLLOW_POD,
};
use crate::cli::BenchWorkloadsArgs;
use crate::nats_server::NatsServer;

pub fn run(args: BenchWorkloadsArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut nats = NatsServer::start(&dir.path().join("nats-server.log"), None)?;
    let url = nats.url();
    let result = start_up(
        dir.path(),
        &url,
        Some((args.hollow_nodes, args.hollow_delay_ms)),
        &[],
    )
    .and_then(|mut cluster| {
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

async fn measure(url: &str, args: &BenchWorkloadsArgs, pid: u32) -> anyhow::Result<()> {
    let client = Client::connect(url, CLUSTER).await?;
    let nodes = args.hollow_nodes.max(1);
    println!(
        "kubus bench workloads: {nodes} hollow nodes (start-up {} ms each), one `kubus up` process",
        args.hollow_delay_ms
    );
    println!(
        "(build: {}; fsync on; one store peer; client, cluster and nats-server share this machine)\n",
        super::build()
    );
    let started = Instant::now();
    wait_for_nodes(&client, nodes, is_hollow_node).await?;
    println!(
        "{nodes} hollow nodes Ready after {:.1} s; kubus up RSS {}",
        started.elapsed().as_secs_f64(),
        rss(pid)
    );
    let timeout = Duration::from_secs(args.timeout_s.max(1));

    let baseline = deploy(&client, "bench-baseline", nodes, HOLLOW_POD, timeout).await?;
    baseline.print(&format!("baseline: a Deployment of {nodes} pods"));

    let daemon = format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: bench-daemon}}\nspec:\n  selector: {{matchLabels: {{app: bench-daemon}}}}\n  template:\n    metadata: {{labels: {{app: bench-daemon}}}}\n    spec:\n      {HOLLOW_POD}\n"
    );
    let ds = run_until_running(&client, "bench-daemon", &daemon, nodes, timeout).await?;
    ds.print(&format!("a DaemonSet over {nodes} hollow nodes"));

    let job = job_run(&client, args, timeout).await?;
    println!(
        "\na Job of {} completions, parallelism {}",
        args.completions, args.parallelism
    );
    match job {
        Some(t) => println!(
            "  Complete after {:.2} s ({:.0} completions/s)",
            t.as_secs_f64(),
            args.completions as f64 / t.as_secs_f64().max(1e-9)
        ),
        None => println!("  not Complete before the timeout"),
    }
    println!("kubus up RSS after: {}", rss(pid));
    let rate = |o: &super::pods::Outcome| match o.all_running {
        Some(t) => o.running as f64 / t.as_secs_f64().max(1e-9),
        None => 0.0,
    };
    println!(
        "\nDaemonSet {:.0} pods/s vs. the Deployment baseline {:.0} pods/s ({:.2}×); \
         kube-scheduler's CI minimum for its DaemonSet case: 1,100 pods/s at 15,000 nodes (not measured here)",
        rate(&ds),
        rate(&baseline),
        rate(&ds) / rate(&baseline).max(1e-9)
    );
    Ok(())
}

/// Apply the Job and wait for its Complete condition.
async fn job_run(
    client: &Client,
    args: &BenchWorkloadsArgs,
    timeout: Duration,
) -> anyhow::Result<Option<Duration>> {
    let manifest = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: bench-job}}\nspec:\n  completions: {}\n  parallelism: {}\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      nodeSelector: {{kubus.io/hollow: \"true\"}}\n      containers:\n      - {{name: main, image: busybox, command: [\"true\"], resources: {{requests: {{cpu: 10m, memory: 16Mi}}}}}}\n",
        args.completions, args.parallelism
    );
    let published = Instant::now();
    let reply = client.apply_manifests(&manifest).await?;
    if let Some(e) = reply.error.as_ref() {
        bail!("the benchmark's Job was refused: {e}");
    }
    let deadline = published + timeout;
    // bounded by the timeout; a read every 200 ms
    while Instant::now() < deadline {
        let job = client.get(Kind::Job, Some("default"), "bench-job").await?;
        let done = |kind: &str| {
            job.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == kind && c["status"] == "True")
                })
        };
        if done("Complete") {
            return Ok(Some(published.elapsed()));
        }
        if done("Failed") {
            bail!("the benchmark's Job failed: {:?}", job.pointer("/status"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(None)
}
