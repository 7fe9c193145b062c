//! The dashboard's benchmark (issue 23), measured in headless Chromium:
//! with PODS pods Running on NODES hollow nodes, the first meaningful
//! render (from navigation start to the first frame drawn from the
//! snapshot) and the delay from a commit to the frame that shows it
//! (p50/p99, the leader's commit time against the page's clock: one
//! machine); and what scraping `/metrics` costs the store's requests
//! (sequential gets with nobody scraping, then with a scraper reading
//! `/metrics` back to back, then nobody again — the baseline twice, in the
//! same run).
//!
//! ```text
//! KUBUS_BIN=<a release kubus> cargo run -p kubus-tests --example dashboard_bench -- [PODS] [NODES]
//! ```
//! (defaults 30000 and 1000; docs/benchmarks.md has the figures).

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubus_api::Kind;
use kubus_tests::browser::{self, Browser};
use kubus_tests::{free_port, http_get, kubus_bin, nats_server, wait_for, Proc};
use serde_json::{json, Value};

/// Sequential gets per latency phase.
const GETS: usize = 2_000;
/// Changes made while the page measures their delay.
const CHANGES: usize = 500;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let pods: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(30_000);
    let nodes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    assert!(
        browser::installed(),
        "install chromium and chromium-driver (deploy/install-deps.sh)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let (_nats, url) = nats_server(dir.path());
    let http_port = free_port();
    let up = Proc::spawn(
        Command::new(kubus_bin())
            .args([
                "up",
                "--nats",
                &url,
                "--cluster",
                "kubus",
                "--runtime",
                "process",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--node-name", "bench-worker", "--api-address", "off"])
            .args([
                "--hollow-nodes",
                &nodes.to_string(),
                "--hollow-delay-ms",
                "100",
            ])
            .args(["--http-address", &format!("127.0.0.1:{http_port}")])
            .env("KUBUS_HOME", dir.path().join("home"))
            .env("RUST_LOG", "warn"),
        &dir.path().join("kubus-up.log"),
    );
    let up_pid = up.pid().expect("kubus up runs");
    println!(
        "dashboard bench: {pods} pods on {nodes} hollow nodes, one `kubus up` ({})",
        kubus_bin().display()
    );
    let rt = kubus_tests::runtime();
    let client = wait_for(Duration::from_secs(30), || {
        rt.block_on(kubus_bus::Client::connect(&url, "kubus")).ok()
    })
    .expect("the bus");
    let ready_nodes = || -> usize {
        rt.block_on(client.list(Kind::Node, None, None, None))
            .map(|(items, _)| {
                items
                    .iter()
                    .filter(|n| {
                        n.pointer("/status/conditions")
                            .and_then(Value::as_array)
                            .is_some_and(|cs| {
                                cs.iter()
                                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
                            })
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(300), || {
        (ready_nodes() > nodes).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{} of {} nodes Ready: {}",
            ready_nodes(),
            nodes + 1,
            up.log_tail()
        )
    });

    let began = Instant::now();
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "bench", "namespace": "default"},
        "spec": {"replicas": pods, "selector": {"matchLabels": {"app": "bench"}},
            "template": {"metadata": {"labels": {"app": "bench"}}, "spec": {
                "nodeSelector": {"kubus.io/hollow": "true"},
                "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}
    });
    rt.block_on(client.create(deployment))
        .expect("the deployment");
    let ready = || -> i64 {
        rt.block_on(client.get(Kind::Deployment, Some("default"), "bench"))
            .ok()
            .and_then(|d| d.pointer("/status/readyReplicas").and_then(Value::as_i64))
            .unwrap_or(0)
    };
    wait_for(Duration::from_secs(900), || {
        std::thread::sleep(Duration::from_secs(1));
        (ready() >= pods as i64).then_some(())
    })
    .unwrap_or_else(|| panic!("{} of {pods} pods ready: {}", ready(), up.log_tail()));
    println!(
        "{pods} pods Running after {:.1} s; kubus up RSS {:.0} MiB",
        began.elapsed().as_secs_f64(),
        rss_mib(up_pid)
    );

    // the first meaningful render: the snapshot drawn
    let b = Browser::start(dir.path(), dir.path().join("shots"));
    b.goto(&format!("http://127.0.0.1:{http_port}/"));
    let stats = wait_for(Duration::from_secs(120), || {
        let s = b.eval("return window.kubusStats");
        (s["snapshotRows"].as_u64().unwrap_or(0) as usize >= pods && !s["firstRenderMs"].is_null())
            .then_some(s)
    })
    .unwrap_or_else(|| {
        panic!(
            "the page did not render the snapshot: {}",
            b.eval("return window.kubusStats")
        )
    });
    let navigation = b.eval(
        "const n = performance.getEntriesByType('navigation')[0]; return [n.responseEnd, n.domContentLoadedEventEnd]",
    );
    println!(
        "first meaningful render: {:.0} ms after navigation start (snapshot of {} rows, {:.1} MB; page loaded at {:.0} ms); kubus up RSS {:.0} MiB with the page open",
        stats["firstRenderMs"].as_f64().unwrap_or(f64::NAN),
        stats["snapshotRows"],
        stats["snapshotBytes"].as_f64().unwrap_or(0.0) / 1e6,
        navigation[1].as_f64().unwrap_or(f64::NAN),
        rss_mib(up_pid)
    );
    b.click("button[data-tab=pods]");
    std::thread::sleep(Duration::from_millis(500));
    let pods_render = b.eval("return window.kubusStats.lastRenderMs");
    println!(
        "the pods tab ({pods} pods, virtualized) draws in {:.1} ms per frame",
        pods_render.as_f64().unwrap_or(f64::NAN)
    );
    b.screenshot("pods");

    // commit → page: label pods one at a time while the page shows them
    b.eval("window.kubusStats.latencies = []");
    let (items, _) = rt
        .block_on(client.list(Kind::Pod, Some("default"), Some("app=bench"), None))
        .expect("pods");
    let names: Vec<String> = items
        .iter()
        .filter_map(|p| kubus_api::meta::name(p).map(str::to_string))
        .take(CHANGES)
        .collect();
    let started = Instant::now();
    for (i, n) in names.iter().enumerate() {
        let r = kubus_api::ObjectRef::new(Kind::Pod, Some("default"), n);
        rt.block_on(client.patch(
            &r,
            json!({"metadata": {"labels": {"bench-mark": i.to_string()}}}),
        ))
        .expect("patch");
        std::thread::sleep(Duration::from_millis(10));
    }
    let changes_secs = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    let mut latencies: Vec<f64> = b
        .eval("return window.kubusStats.latencies")
        .as_array()
        .map(|l| l.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    latencies.sort_by(f64::total_cmp);
    println!(
        "commit → page over {} changes ({} writes in {changes_secs:.1} s, with the pods tab open): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        names.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    drop(b);

    // /metrics: the store's get latency with and without a scraper
    let target = names.first().cloned().expect("a pod");
    let gets = || -> (f64, f64) {
        let mut l: Vec<f64> = (0..GETS)
            .map(|_| {
                let t = Instant::now();
                let _ = rt.block_on(client.get(Kind::Pod, Some("default"), &target));
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        l.sort_by(f64::total_cmp);
        (percentile(&l, 0.5), percentile(&l, 0.99))
    };
    let quiet = gets();
    let stop = Arc::new(AtomicBool::new(false));
    let (scrapes, scrape_us, scrape_bytes) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let scraper = {
        let (stop, scrapes, us, bytes) = (
            stop.clone(),
            scrapes.clone(),
            scrape_us.clone(),
            scrape_bytes.clone(),
        );
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let body = http_get(addr, "/metrics", Duration::from_secs(10)).unwrap_or_default();
                us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                bytes.store(body.len() as u64, Ordering::Relaxed);
                scrapes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let scraped = gets();
    stop.store(true, Ordering::Relaxed);
    let _ = scraper.join();
    let quiet_again = gets();
    let n = scrapes.load(Ordering::Relaxed).max(1);
    println!(
        "store get latency ({GETS} sequential gets each): nobody scraping p50 {:.2} ms p99 {:.2} ms; /metrics scraped back to back ({n} scrapes of {:.0} KB, {:.1} ms each) p50 {:.2} ms p99 {:.2} ms; nobody again p50 {:.2} ms p99 {:.2} ms",
        quiet.0,
        quiet.1,
        scrape_bytes.load(Ordering::Relaxed) as f64 / 1e3,
        scrape_us.load(Ordering::Relaxed) as f64 / n as f64 / 1e3,
        scraped.0,
        scraped.1,
        quiet_again.0,
        quiet_again.1
    );
}
