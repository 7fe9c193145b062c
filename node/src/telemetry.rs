//! What this process says about itself: logs on stderr (`RUST_LOG`, or the
//! command's default level) and, when `--otlp-endpoint` names a collector,
//! the spans of every write's path (`kubus_bus::trace`) exported over OTLP
//! (HTTP, protobuf) by the SDK's batch processor on a thread of its own.
//!
//! The two outputs filter apart: logs never print the trace spans, and the
//! exporter sees nothing but them (target `kubus::trace`).

use std::time::Duration;

use anyhow::{bail, Context as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// How long one export may take before the batch is dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where traces go, if anywhere.
#[derive(Debug, Clone)]
pub struct Traces {
    /// The collector's base URL (`http://127.0.0.1:4318`); spans are posted
    /// to `<url>/v1/traces`.
    pub endpoint: String,
    /// The share of traces begun in this process that are recorded.
    pub sample_ratio: f64,
    /// `service.name` of this process's spans.
    pub service: &'static str,
}

/// Holds the exporter; dropping it sends what is still batched.
#[must_use = "dropping it stops the exporter"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("warning: traces not all sent: {e}");
            }
        }
    }
}

/// The OTLP/HTTP traces URL of a collector's base URL, refusing what this
/// build cannot send to.
pub fn traces_url(endpoint: &str) -> anyhow::Result<String> {
    if endpoint.starts_with("https://") {
        bail!("--otlp-endpoint {endpoint}: this build exports over plain HTTP only; point it at a collector on this machine or network (http://HOST:4318)");
    }
    let Some(rest) = endpoint.strip_prefix("http://") else {
        bail!("--otlp-endpoint {endpoint}: not an http:// URL (an OTLP/HTTP collector, e.g. http://127.0.0.1:4318)");
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.starts_with('/') {
        bail!("--otlp-endpoint {endpoint}: the URL names no host");
    }
    // a full traces path is taken as it is
    Ok(if rest.ends_with("/v1/traces") {
        format!("http://{rest}")
    } else {
        format!("http://{rest}/v1/traces")
    })
}

/// Install logging, and the trace exporter when `traces` names one.
pub fn init(default_level: &str, traces: Option<Traces>) -> anyhow::Result<Telemetry> {
    let logs = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(default_level))
        .add_directive(
            format!("{}=off", kubus_bus::trace::TARGET)
                .parse()
                .context("log filter")?,
        );
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(logs);
    let Some(traces) = traces else {
        tracing_subscriber::registry().with(fmt).init();
        return Ok(Telemetry { provider: None });
    };
    if !(0.0..=1.0).contains(&traces.sample_ratio) {
        bail!(
            "--otlp-sample-ratio {}: must be between 0 and 1",
            traces.sample_ratio
        );
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(&traces.endpoint)?)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .with_context(|| format!("--otlp-endpoint {}", traces.endpoint))?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| traces.service.into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            traces.sample_ratio,
        ))))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build();
    let spans = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("kubus"))
        .with_filter(Targets::new().with_target(kubus_bus::trace::TARGET, tracing::Level::INFO));
    tracing_subscriber::registry().with(fmt).with(spans).init();
    kubus_bus::trace::set_on();
    Ok(Telemetry {
        provider: Some(provider),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_traces_urls_or_are_refused_saying_why() {
        let ok = |e: &str| traces_url(e).expect(e);
        assert_eq!(
            ok("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            ok("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(ok("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
        let err = |e: &str| traces_url(e).expect_err(e).to_string();
        assert!(err("https://c:4318").contains("plain HTTP only"));
        assert!(err("127.0.0.1:4318").contains("not an http:// URL"));
        assert!(err("http://").contains("names no host"));
    }
}
