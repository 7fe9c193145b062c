//! `kubus bench gateway`: the Kubernetes API gateway's cost. get, list
//! (100 objects) and create, 1 and 64 in flight, through the gateway
//! (HTTPS, HTTP/2 on one connection, as client-go talks) and — in the same
//! run, on the same cluster — the same calls over the bus
//! (`kubus_bus::Client`). Goal (issue 21): the gateway adds ≤ 0.3 ms p99
//! and keeps ≥ 0.8× the bus's requests/s.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kubus_api::Kind;
use kubus_bus::Client;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};

use super::pods::{start_up, CLUSTER};
use super::{histogram, summary};
use crate::cli::BenchGatewayArgs;
use crate::nats_server::NatsServer;

/// Objects the list reads.
const LIST_OBJECTS: usize = 100;
/// How long the cluster may take to serve.
const START_WAIT_MAX: Duration = Duration::from_secs(60);
/// Requests before each measured case, not counted.
const WARM_UP: usize = 200;

pub fn run(args: BenchGatewayArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut nats = NatsServer::start(&dir.path().join("nats-server.log"), None)?;
    let url = nats.url();
    let kubeconfig = dir.path().join("kubeconfig");
    let kc = kubeconfig.to_string_lossy().to_string();
    let result = start_up(
        dir.path(),
        &url,
        Some((0, 100)),
        &["--api-address", "127.0.0.1:0", "--write-kubeconfig", &kc],
    )
    .and_then(|mut cluster| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("tokio runtime")?;
        let out = runtime.block_on(measure(&url, &kubeconfig, &args, cluster.pid()));
        cluster.stop();
        out
    });
    nats.stop();
    result
}

/// One HTTP/2 connection to the gateway with the kubeconfig's credentials.
#[derive(Clone)]
struct Https {
    server: String,
    send: SendRequest<Full<Bytes>>,
}

impl Https {
    async fn connect(kubeconfig: &Path) -> anyhow::Result<Https> {
        let text = std::fs::read_to_string(kubeconfig)
            .with_context(|| format!("reading {}", kubeconfig.display()))?;
        let kc: Value = serde_saphyr::from_str(&text).context("the kubeconfig's YAML")?;
        let field = |pointer: &str| -> anyhow::Result<Vec<u8>> {
            let b64 = kc
                .pointer(pointer)
                .and_then(Value::as_str)
                .with_context(|| format!("the kubeconfig has no {pointer}"))?;
            Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
        };
        let server = kc
            .pointer("/clusters/0/cluster/server")
            .and_then(Value::as_str)
            .context("the kubeconfig names no server")?
            .to_string();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(&field(
            "/clusters/0/cluster/certificate-authority-data",
        )?)?)?;
        let cert =
            CertificateDer::from_pem_slice(&field("/users/0/user/client-certificate-data")?)?;
        let key = PrivateKeyDer::from_pem_slice(&field("/users/0/user/client-key-data")?)?;
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![cert], key)?;
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let authority = server.trim_start_matches("https://").to_string();
        let host = authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(h, _)| h)
            .to_string();
        let tcp = tokio::net::TcpStream::connect(&authority).await?;
        tcp.set_nodelay(true)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from(host)?, tcp)
            .await?;
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Https { server, send })
    }

    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Bytes> {
        let bytes = body
            .map(serde_json::to_vec)
            .transpose()?
            .unwrap_or_default();
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.server))
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))?;
        let resp = self.send.clone().send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }
}

/// `n` calls of `f`, `in_flight` at once: latencies (µs) and requests/s.
async fn load<F, Fut>(n: usize, in_flight: usize, f: F) -> anyhow::Result<(Histogram<u64>, f64)>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut h = histogram()?;
    let started = Instant::now();
    let mut calls = futures::stream::iter(0..n)
        .map(|i| {
            let call = f(i);
            async move {
                let t = Instant::now();
                call.await.map(|_| t.elapsed())
            }
        })
        .buffer_unordered(in_flight.max(1));
    while let Some(r) = calls.next().await {
        h.record(r?.as_micros().max(1) as u64)?;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    Ok((h, n as f64 / secs))
}

async fn wait_ready(url: &str, kubeconfig: &Path) -> anyhow::Result<(Client, Https)> {
    let deadline = Instant::now() + START_WAIT_MAX;
    loop {
        let attempt = async {
            let client = Client::connect(url, CLUSTER).await?;
            client.get(Kind::Namespace, None, "default").await?;
            let https = Https::connect(kubeconfig).await?;
            https
                .call("GET", "/api/v1/namespaces/default", None)
                .await?;
            anyhow::Ok((client, https))
        };
        match attempt.await {
            Ok(r) => return Ok(r),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context("the cluster did not serve in time"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn configmap(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace}, "data": {"key": "value"}})
}

async fn measure(
    url: &str,
    kubeconfig: &Path,
    args: &BenchGatewayArgs,
    pid: u32,
) -> anyhow::Result<()> {
    let (client, https) = wait_ready(url, kubeconfig).await?;
    for ns in ["bench-read", "bench-bus", "bench-gateway"] {
        client
            .create(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .await?;
    }
    for i in 0..LIST_OBJECTS {
        client
            .create(configmap("bench-read", &format!("cm-{i:03}")))
            .await?;
    }
    println!(
        "kubus bench gateway: get, list ({LIST_OBJECTS} ConfigMaps) and create, over the bus \
         (kubus_bus::Client) and through the Kubernetes API gateway (HTTPS, HTTP/2, one connection)"
    );
    println!(
        "(build: {}; one `kubus up` (pid {pid}) with its store, gateway and nats-server on this \
         machine; {} requests per case, {WARM_UP} before each not counted)\n",
        super::build(),
        args.requests
    );
    let n = args.requests.max(1);
    // every create a name of its own
    let seq = std::sync::atomic::AtomicUsize::new(0);
    let next_name = || {
        format!(
            "c-{}",
            seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )
    };
    let mut rows = Vec::new();
    for op in ["get", "list", "create"] {
        for in_flight in [1usize, 64] {
            let count = if in_flight == 1 { n.min(2_000) } else { n };
            // the bus
            let bus = |_: usize| {
                let client = client.clone();
                let name = next_name();
                async move {
                    match op {
                        "get" => client
                            .get(Kind::ConfigMap, Some("bench-read"), "cm-000")
                            .await
                            .map(drop),
                        "list" => client
                            .list(Kind::ConfigMap, Some("bench-read"), None, None)
                            .await
                            .map(drop),
                        _ => client.create(configmap("bench-bus", &name)).await.map(drop),
                    }
                    .map_err(anyhow::Error::from)
                }
            };
            load(WARM_UP, in_flight, bus).await?;
            let (bh, brps) = load(count, in_flight, bus).await?;
            // the gateway
            let gw = |_: usize| {
                let https = https.clone();
                let name = next_name();
                async move {
                    match op {
                        "get" => https
                            .call(
                                "GET",
                                "/api/v1/namespaces/bench-read/configmaps/cm-000",
                                None,
                            )
                            .await
                            .map(drop),
                        "list" => https
                            .call("GET", "/api/v1/namespaces/bench-read/configmaps", None)
                            .await
                            .map(drop),
                        _ => https
                            .call(
                                "POST",
                                "/api/v1/namespaces/bench-gateway/configmaps",
                                Some(&configmap("bench-gateway", &name)),
                            )
                            .await
                            .map(drop),
                    }
                }
            };
            load(WARM_UP, in_flight, gw).await?;
            let (gh, grps) = load(count, in_flight, gw).await?;
            println!("{op} ×{in_flight}");
            println!("  bus:     {brps:>9.0} req/s   {}", summary(&bh));
            println!("  gateway: {grps:>9.0} req/s   {}", summary(&gh));
            let added =
                (gh.value_at_quantile(0.99) as f64 - bh.value_at_quantile(0.99) as f64) / 1000.0;
            let ratio = grps / brps.max(1e-9);
            println!("  gateway adds {added:+.3} ms p99; keeps {ratio:.2}× the bus's req/s\n");
            rows.push((op, in_flight, added, ratio));
        }
    }
    println!("goal: the gateway adds ≤ 0.3 ms p99 and keeps ≥ 0.8× the bus's requests/s");
    for (op, in_flight, added, ratio) in rows {
        let met = added <= 0.3 && ratio >= 0.8;
        println!(
            "  {op:<6} ×{in_flight:<3} {added:+.3} ms p99, {ratio:.2}× req/s — {}",
            if met { "met" } else { "missed" }
        );
    }
    Ok(())
}
