//! `kubus bench proxy`: the service proxy and cluster DNS of a real `kubus
//! up` (process runtime, a service range in 127.0.0.0/8 unless
//! `--service-cidr` says otherwise), each figure beside its baseline from
//! the same run:
//!
//! 1. short HTTP requests (a new connection each, `--connections` at once)
//!    through a cluster IP and straight to the backend: requests/s,
//!    request p50/p99, connect p99;
//! 2. one long stream through the cluster IP and straight: bytes/s;
//! 3. a pod turning Ready → the proxy sending it traffic: the time from
//!    a watcher-like poll first seeing the pod Ready to the first
//!    connection through the cluster IP that lands on it (p50/p99);
//! 4. cluster DNS: p50/p99 at a fixed 1,000 lookups/s, and lookups/s at
//!    saturation.
//!
//! The backends of 1, 2 and 4 are servers in this process behind
//! selector-less Services whose EndpointSlices this benchmark writes; the
//! pods of 3 are real (process runtime) pods behind a selector, so their
//! path includes the EndpointSlice controller.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use kubus_api::{Kind, ObjectRef};
use kubus_bus::Client;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::{histogram, summary};
use crate::cli::BenchProxyArgs;
use crate::nats_server::NatsServer;

const CLUSTER: &str = "bench";
const WORKER: &str = "bench-worker";
/// Bound on waiting for the cluster, a pod, a route.
const WAIT_MAX: Duration = Duration::from_secs(60);
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
const STREAM_CHUNK: usize = 64 * 1024;

pub fn run(args: BenchProxyArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut nats = NatsServer::start(&dir.path().join("nats-server.log"), None)?;
    let url = nats.url();
    let result = start_cluster(dir.path(), &url, &args).and_then(|mut child| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let out = runtime.block_on(measure(&url, &args, dir.path()));
        crate::child::stop(
            &mut child,
            nix::sys::signal::Signal::SIGINT,
            Duration::from_secs(15),
        );
        out
    });
    nats.stop();
    result
}

fn start_cluster(dir: &Path, url: &str, args: &BenchProxyArgs) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding the kubus binary")?;
    let log = std::fs::File::create(dir.join("kubus-up.log")).context("creating the log")?;
    Command::new(exe)
        .args(["up", "--nats", url, "--cluster", CLUSTER, "--data-dir"])
        .arg(dir.join("data"))
        .args(["--node-name", WORKER, "--runtime", "process"])
        .args(["--service-cidr", &args.service_cidr])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("log")?)
        .stderr(log)
        .spawn()
        .context("starting kubus up")
}

async fn measure(url: &str, args: &BenchProxyArgs, dir: &Path) -> anyhow::Result<()> {
    let net = kubus_api::service::ServiceNet::parse(&args.service_cidr, "30000-32767")?;
    let client = Client::connect(url, CLUSTER).await?;
    wait(|| async {
        let node = client.get(Kind::Node, None, WORKER).await.ok()?;
        node["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
            .then_some(())
    })
    .await
    .context("the node did not become Ready")?;
    println!(
        "kubus bench proxy: one `kubus up` (process runtime), service range {}, {} s per figure",
        args.service_cidr, args.seconds
    );
    println!(
        "(build: {}; the proxy is userspace tokio; client, proxy and backends share this machine's 2 cores)\n",
        super::build()
    );
    let period = Duration::from_secs(args.seconds.max(1));

    // 1 and 2: servers in this process behind selector-less Services
    let http = serve_http().await?;
    let stream = serve_stream().await?;
    let http_ip = expose(&client, "bench-http", 80, http).await?;
    let stream_ip = expose(&client, "bench-stream", 81, stream).await?;
    let via_http = SocketAddr::new(http_ip, 80);
    let via_stream = SocketAddr::new(stream_ip, 81);
    wait(|| async { request(via_http).await.ok() })
        .await
        .context("the cluster IP never answered")?;

    let direct = short_requests(http, args.connections, period).await?;
    let proxied = short_requests(via_http, args.connections, period).await?;
    println!(
        "short HTTP requests, a connection each, {} at once:",
        args.connections
    );
    direct.print("  straight to the backend");
    proxied.print("  through the cluster IP ");
    let direct_bps = long_stream(stream, period).await?;
    let proxied_bps = long_stream(via_stream, period).await?;
    println!("one long stream:");
    println!("  straight to the backend   {:>8.1} MB/s", direct_bps / 1e6);
    println!(
        "  through the cluster IP    {:>8.1} MB/s",
        proxied_bps / 1e6
    );

    // 3: real pods turning Ready
    let routed = ready_to_routed(&client, args.samples, dir).await?;
    println!(
        "pod Ready (seen) → first connection routed to it, {} pods:",
        routed.len()
    );
    println!("  {}", summary(&routed));

    // 4: cluster DNS
    let dns = SocketAddr::new(IpAddr::V4(net.dns_ip()), 53);
    let name = "bench-http.default.svc.cluster.local.";
    match dns_fixed_rate(dns, name, 1000, period).await {
        Ok((h, lost)) => {
            println!(
                "cluster DNS at 1,000 lookups/s ({dns}): {}, lost {lost}",
                summary(&h)
            );
            let qps = dns_saturated(dns, name, 32, period).await?;
            println!("cluster DNS at saturation (32 clients): {qps:.0} lookups/s");
            println!(
                "\ngoals: throughput ≥ 0.7× direct — {:.2}×; connect p99 ≤ 2× direct — {:.2}×; \
                 Ready → routed p99 ≤ 100 ms — {:.1} ms; DNS p99 ≤ 1 ms at 1,000/s — {:.3} ms",
                proxied.rate / direct.rate.max(1.0),
                proxied.connect.value_at_quantile(0.99) as f64
                    / direct.connect.value_at_quantile(0.99).max(1) as f64,
                routed.value_at_quantile(0.99) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0
            );
            println!(
                "long stream through the proxy: {:.2}× direct",
                proxied_bps / direct_bps.max(1.0)
            );
        }
        Err(e) => println!("cluster DNS at {dns}: not measured ({e}; port 53 needs root)"),
    }
    Ok(())
}

/// Poll `f` every 10 ms until it gives a value, up to [`WAIT_MAX`].
async fn wait<T, F, Fut>(mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT_MAX;
    while Instant::now() < deadline {
        if let Some(v) = f().await {
            return Ok(v);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("gave up after {WAIT_MAX:?}")
}

/// A selector-less Service `name` on `port` whose one endpoint is `backend`;
/// its cluster IP.
async fn expose(
    client: &Client,
    name: &str,
    port: u16,
    backend: SocketAddr,
) -> anyhow::Result<IpAddr> {
    let svc = client
        .create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": "p", "port": port, "protocol": "TCP"}]}}))
        .await?;
    client
        .create(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-bench"), "namespace": "default",
                "labels": {kubus_api::endpoints::SERVICE_NAME_LABEL: name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [backend.ip().to_string()], "conditions": {"ready": true}}],
            "ports": [{"name": "p", "port": backend.port(), "protocol": "TCP"}]}),
        )
        .await?;
    svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("the Service got no cluster IP")
}

async fn serve_http() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(RESPONSE).await;
            });
        }
    });
    Ok(addr)
}

async fn serve_stream() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let chunk = vec![7u8; STREAM_CHUNK];
                while s.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    Ok(addr)
}

/// One request on a new connection: (connect time, whole time) in µs.
async fn request(addr: SocketAddr) -> anyhow::Result<(u64, u64)> {
    let start = Instant::now();
    let mut s = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await??;
    let connected = start.elapsed();
    s.set_nodelay(true)?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut body)).await??;
    if !body.ends_with(b"ok") {
        bail!("unexpected answer");
    }
    Ok((
        connected.as_micros() as u64,
        start.elapsed().as_micros() as u64,
    ))
}

struct Requests {
    rate: f64,
    latency: Histogram<u64>,
    connect: Histogram<u64>,
    errors: u64,
}

impl Requests {
    fn print(&self, what: &str) {
        println!(
            "{what}  {:>8.0} req/s   request {}   connect p99 {:.3} ms   errors {}",
            self.rate,
            summary(&self.latency),
            self.connect.value_at_quantile(0.99) as f64 / 1000.0,
            self.errors
        );
    }
}

async fn short_requests(
    addr: SocketAddr,
    connections: usize,
    period: Duration,
) -> anyhow::Result<Requests> {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let (stop, errors) = (stop.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut latency = histogram()?;
            let mut connect = histogram()?;
            while !stop.load(Ordering::Relaxed) {
                match request(addr).await {
                    Ok((c, t)) => {
                        connect.record(c.max(1))?;
                        latency.record(t.max(1))?;
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            anyhow::Ok((latency, connect))
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(period).await;
    stop.store(true, Ordering::Relaxed);
    let mut latency = histogram()?;
    let mut connect = histogram()?;
    for t in tasks {
        let (l, c) = t.await??;
        latency.add(l)?;
        connect.add(c)?;
    }
    Ok(Requests {
        rate: latency.len() as f64 / started.elapsed().as_secs_f64(),
        latency,
        connect,
        errors: errors.load(Ordering::Relaxed),
    })
}

/// Bytes/s read from `addr` over `period`.
async fn long_stream(addr: SocketAddr, period: Duration) -> anyhow::Result<f64> {
    let mut s = TcpStream::connect(addr).await?;
    let mut buf = vec![0u8; STREAM_CHUNK];
    let started = Instant::now();
    let mut total = 0u64;
    while started.elapsed() < period {
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await??;
        if n == 0 {
            bail!("the stream ended");
        }
        total += n as u64;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// For each sample, a pod behind the Service `bench-ready` turns Ready
/// (its readiness probe finds a file this benchmark creates): the time
/// from the poll first seeing it Ready to the first connection through
/// the cluster IP that it answers.
async fn ready_to_routed(
    client: &Client,
    samples: usize,
    dir: &Path,
) -> anyhow::Result<Histogram<u64>> {
    let svc = client
        .create(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bench-ready", "namespace": "default"},
            "spec": {"selector": {"app": "bench-ready"}, "ports": [{"name": "http", "port": 82, "targetPort": "http"}]}}))
        .await?;
    let ip: IpAddr = svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("no cluster IP")?;
    let via = SocketAddr::new(ip, 82);
    let mut h = histogram()?;
    for i in 0..samples.max(1) {
        let name = format!("bench-ready-{i}");
        let port = 18_600 + i as u16;
        let mark = dir.join(format!("{name}.ready"));
        let script = format!(
            "d=$(mktemp -d) && echo {name} > $d/index.html && exec busybox httpd -f -p {port} -h $d"
        );
        client
            .create(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench-ready"}},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [{"name": "httpd", "image": "busybox",
                    "command": ["sh", "-c", script],
                    "ports": [{"name": "http", "containerPort": port}],
                    "readinessProbe": {"exec": {"command": ["test", "-f", mark.display().to_string()]},
                        "periodSeconds": 1, "failureThreshold": 1}}]}}))
            .await?;
        let r = ObjectRef::new(Kind::Pod, Some("default"), &name);
        wait(|| async {
            let p = client.get(Kind::Pod, Some("default"), &name).await.ok()?;
            (p["status"]["phase"] == "Running").then_some(())
        })
        .await
        .with_context(|| format!("{name} did not start"))?;
        std::fs::write(&mark, b"")?;
        let seen_ready = Arc::new(Mutex::new(None::<Instant>));
        let watcher = {
            let (client, name, seen) = (client.clone(), name.clone(), seen_ready.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + WAIT_MAX;
                while Instant::now() < deadline {
                    if let Ok(p) = client.get(Kind::Pod, Some("default"), &name).await {
                        if kubus_api::pod::is_ready(&p) {
                            if let Ok(mut s) = seen.lock() {
                                *s = Some(Instant::now());
                            }
                            return;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        let routed = wait(|| async {
            let mut s = tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(via))
                .await
                .ok()?
                .ok()?;
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.ok()?;
            let mut body = String::new();
            tokio::time::timeout(Duration::from_secs(1), s.read_to_string(&mut body))
                .await
                .ok()?
                .ok()?;
            body.contains(&name).then(Instant::now)
        })
        .await
        .with_context(|| format!("{name} was never routed to"))?;
        let _ = watcher.await;
        let ready = seen_ready
            .lock()
            .ok()
            .and_then(|s| *s)
            .context("Ready never seen")?;
        h.record(routed.saturating_duration_since(ready).as_micros().max(1) as u64)?;
        client.delete(&r, None).await?;
        let _ = std::fs::remove_file(&mark);
    }
    Ok(h)
}

fn dns_query(id: u16, name: &str) -> anyhow::Result<Vec<u8>> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    Ok(m.to_vec()?)
}

/// Lookups sent at `rate` per second for `period`: latency of each
/// answer, and how many got none within a second.
async fn dns_fixed_rate(
    server: SocketAddr,
    name: &str,
    rate: u32,
    period: Duration,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let sock = Arc::new(UdpSocket::bind("0.0.0.0:0").await?);
    sock.connect(server).await?;
    // one lookup first: the server must answer at all
    sock.send(&dns_query(0, name)?).await?;
    let mut buf = [0u8; 1500];
    tokio::time::timeout(Duration::from_secs(2), sock.recv(&mut buf))
        .await
        .context("no answer")??;
    let sent: Arc<Mutex<HashMap<u16, Instant>>> = Arc::default();
    let receiver = {
        let (sock, sent) = (sock.clone(), sent.clone());
        tokio::spawn(async move {
            let mut h = histogram()?;
            let mut buf = [0u8; 1500];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await
            {
                if n < 2 {
                    continue;
                }
                let id = u16::from_be_bytes([buf[0], buf[1]]);
                let at = sent.lock().ok().and_then(|mut m| m.remove(&id));
                if let Some(at) = at {
                    h.record(at.elapsed().as_micros().max(1) as u64)?;
                }
            }
            anyhow::Ok(h)
        })
    };
    let interval = Duration::from_secs(1) / rate.max(1);
    let total = (period.as_secs_f64() * f64::from(rate)) as usize;
    let start = Instant::now();
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let id = (i % 65_000) as u16 + 1;
        if let Ok(mut m) = sent.lock() {
            m.insert(id, Instant::now());
        }
        sock.send(&dns_query(id, name)?).await?;
    }
    let h = receiver.await??;
    let lost = sent.lock().map(|m| m.len() as u64).unwrap_or(0);
    Ok((h, lost))
}

/// Lookups/s with `clients` each sending its next lookup when the last
/// is answered.
async fn dns_saturated(
    server: SocketAddr,
    name: &str,
    clients: usize,
    period: Duration,
) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + period;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (done, name) = (done.clone(), name.to_string());
        tasks.push(tokio::spawn(async move {
            let sock = UdpSocket::bind("0.0.0.0:0").await?;
            sock.connect(server).await?;
            let query = dns_query(c as u16 + 1, &name)?;
            let mut buf = [0u8; 1500];
            while Instant::now() < deadline {
                sock.send(&query).await?;
                if let Ok(Ok(_)) =
                    tokio::time::timeout(Duration::from_secs(1), sock.recv(&mut buf)).await
                {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}
