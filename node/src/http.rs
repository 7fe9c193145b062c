//! The mesh node's HTTP endpoint (`--http-address`): `GET /metrics` — every
//! metric of this process (the store peer's, the actors', the process's own)
//! in the OpenMetrics text format, which Prometheus scrapes —, `GET
//! /healthz`, and on control nodes the live dashboard ([`crate::dashboard`]).
//! Plain HTTP, unauthenticated, read-only: bind it where only those who may
//! read what it shows reach it (`kubus up` binds loopback).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::Context as _;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tracing::{debug, warn};

use crate::dashboard::{reply, Body, Dashboard};

/// Where `kubus up` serves it unless told otherwise.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8474";
/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Most connections served at once; more wait in the listen backlog.
const CONNECTIONS_MAX: usize = 64;

/// Binds the endpoint: None when it is `off`, when no address is given and
/// there is no default, or when `default` is used and taken (then kubus
/// runs without it and says so, as with the Kubernetes API).
pub fn bind(address: Option<&str>, default: Option<&str>) -> anyhow::Result<Option<TcpListener>> {
    let (address, defaulted) = match (address, default) {
        (Some("off"), _) | (None, None) => return Ok(None),
        (Some(a), _) => (a, false),
        (None, Some(d)) => (d, true),
    };
    let addr: SocketAddr = address
        .parse()
        .with_context(|| format!("--http-address {address:?} is not an IP:port (or `off`)"))?;
    match TcpListener::bind(addr) {
        Ok(l) => {
            l.set_nonblocking(true)?;
            Ok(Some(l))
        }
        Err(e) if defaulted => {
            println!(
                "kubus: metrics are not served: {address} is taken ({e}); choose another with --http-address"
            );
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("binding the HTTP endpoint on {address}")),
    }
}

/// The URL a bound listener answers on.
pub fn url(listener: &TcpListener) -> anyhow::Result<String> {
    let bound = listener.local_addr()?;
    Ok(format!("http://{}:{}", url_host(bound), bound.port()))
}

/// The host part of a URL for a listener bound to `bound` (loopback for
/// the unspecified address, brackets around IPv6).
pub fn url_host(bound: SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else if bound.is_ipv6() {
        format!("[{}]", bound.ip())
    } else {
        bound.ip().to_string()
    }
}

/// Every metric this process has.
pub fn registry() -> Registry {
    let mut registry = Registry::default();
    kubus_storage::metrics::register(&mut registry);
    kubus_actors::metrics::register(&mut registry);
    registry.register_collector(Box::new(ProcessCollector));
    registry
}

/// Where a control node's dashboard will be: it starts once the store it
/// reads from answers (its first lists would only time out before), while
/// `/metrics` is served from the first moment.
pub type DashboardSlot = Arc<std::sync::OnceLock<Arc<Dashboard>>>;

/// Serves the endpoint until the process ends; the dashboard too when
/// this node runs one (`dashboard`: its slot, filled once it starts).
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    dashboard: Option<DashboardSlot>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "the HTTP endpoint cannot serve");
            return;
        }
    };
    let permits = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                debug!(error = %e, "accept failed");
                continue;
            }
        };
        let registry = registry.clone();
        let dashboard = dashboard.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let registry = registry.clone();
                let dashboard = dashboard.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        answer(&req, &registry, dashboard.as_ref()).await,
                    )
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                debug!(error = %e, "HTTP connection ended");
            }
            drop(permit);
        });
    }
}

async fn answer(
    req: &Request<Incoming>,
    registry: &Registry,
    dashboard: Option<&DashboardSlot>,
) -> Response<Body> {
    let text = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            text,
            format!("{} is not served here; use GET\n", req.method()),
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => reply(StatusCode::OK, OPENMETRICS, body),
                Err(e) => reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    text,
                    format!("encoding the metrics failed: {e}\n"),
                ),
            }
        }
        "/healthz" => reply(StatusCode::OK, text, "ok\n"),
        path => {
            let last_event_id = req
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok());
            match dashboard.map(|slot| slot.get()) {
                Some(Some(d)) => {
                    if let Some(r) = d.answer(path, req.uri().query(), last_event_id).await {
                        return r;
                    }
                }
                Some(None) if crate::dashboard::ROUTES.contains(&path) => {
                    return reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        text,
                        "the dashboard is not running yet: it starts once the store answers (the node's log says if it cannot)\n",
                    )
                }
                _ => {}
            }
            let dashboard_note = if dashboard.is_some() {
                "/ (the dashboard), "
            } else {
                ""
            };
            reply(
                StatusCode::NOT_FOUND,
                text,
                format!("{path} is not served here; try {dashboard_note}/metrics or /healthz\n"),
            )
        }
    }
}

/// The process's own figures, read from `/proc/self` at each scrape
/// (Prometheus' standard `process_*` names).
#[derive(Debug)]
struct ProcessCollector;

/// What `/proc/self/stat` says, in seconds and bytes.
#[derive(Debug, Default, PartialEq)]
struct ProcStat {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    threads: i64,
    start_ticks: u64,
}

/// Parses `/proc/<pid>/stat` (fields after the command, which may hold
/// spaces and parentheses).
fn parse_stat(stat: &str, ticks_per_second: f64, page_bytes: i64) -> Option<ProcStat> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is the state (field 3 of proc(5))
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let utime = field(14)?;
    let stime = field(15)?;
    Some(ProcStat {
        cpu_seconds: (utime + stime) as f64 / ticks_per_second,
        threads: i64::try_from(field(20)?).ok()?,
        start_ticks: field(22)?,
        virtual_bytes: i64::try_from(field(23)?).ok()?,
        resident_bytes: i64::try_from(field(24)?).ok()?.saturating_mul(page_bytes),
    })
}

/// The system's boot time, seconds since the Unix epoch (`/proc/stat`).
fn boot_time() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ticks = rustix::param::clock_ticks_per_second().max(1) as f64;
        let page = i64::try_from(rustix::param::page_size()).unwrap_or(4096);
        let Some(stat) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| parse_stat(&s, ticks, page))
        else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stat.cpu_seconds);
        let m = encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            None,
            cpu.metric_type(),
        )?;
        cpu.encode(m)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                stat.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stat.virtual_bytes,
            ),
            ("process_threads", "Threads of the process", stat.threads),
            (
                "process_open_fds",
                "Open file descriptors",
                std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64),
            ),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
            g.encode(m)?;
        }
        if let Some(boot) = boot_time() {
            let start = ConstGauge::new(boot as f64 + stat.start_ticks as f64 / ticks);
            let m = encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
                None,
                start.metric_type(),
            )?;
            start.encode(m)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_an_odd_command_name() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 7 0 5000 1048576 300 18446744073709551615";
        let s = parse_stat(stat, 100.0, 4096).expect("parses");
        assert_eq!(
            s,
            ProcStat {
                cpu_seconds: 4.0,
                resident_bytes: 300 * 4096,
                virtual_bytes: 1_048_576,
                threads: 7,
                start_ticks: 5000,
            }
        );
        assert_eq!(parse_stat("garbage", 100.0, 4096), None);
    }

    #[test]
    fn this_process_is_read() {
        let registry = registry();
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &registry).expect("encodes");
        assert!(body.contains("process_resident_memory_bytes "), "{body}");
        assert!(body.contains("# TYPE kubus_raft_proposal_duration_seconds histogram"));
        assert!(body.contains("# TYPE scheduler_pod_scheduling_sli_duration_seconds histogram"));
        assert!(body.ends_with("# EOF\n"));
    }

    #[test]
    fn off_and_bad_addresses() {
        assert!(bind(Some("off"), Some(DEFAULT_ADDRESS))
            .expect("off")
            .is_none());
        assert!(bind(None, None).expect("none").is_none());
        let e = bind(Some("nowhere"), None).expect_err("refused");
        assert!(e.to_string().contains("--http-address \"nowhere\""), "{e}");
        let l = bind(Some("127.0.0.1:0"), None)
            .expect("binds")
            .expect("bound");
        assert!(url(&l).expect("url").starts_with("http://127.0.0.1:"));
    }
}
