//! The Kubernetes API gateway (`kubus_gateway`) in a mesh node: its
//! listener bound before the node starts (so the kubeconfig and
//! `current.json` name the real port), its certificates, the kubeconfig
//! written for the administrator, and the gateway started on the node's
//! runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use kubus_gateway::{kubeconfig, pki};

use crate::cli::ApiArgs;
use crate::config;

/// The address `kubus up` serves the API on unless told otherwise.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:6443";

/// A bound listener and what the gateway needs to start on it.
pub struct ApiStart {
    pub listener: std::net::TcpListener,
    pub tls: Arc<rustls::ServerConfig>,
    /// `https://host:port`, as the kubeconfig names it.
    pub url: String,
    /// Where the kubeconfig was written.
    pub kubeconfig: PathBuf,
    /// The CA of the serving certificate (PEM), published to pods.
    pub ca: String,
}

/// Binds the API's listener, makes (or reads) the certificates under
/// `pki_dir` (the serving certificate also names `api_ip`, the
/// `kubernetes` Service's address pods reach it at) and writes the
/// kubeconfig. None when the API is `off`, or
/// when `default` is the address asked for (`kubus up` without
/// `--api-address`) and it is taken: then kubus runs without it and says
/// so.
pub fn prepare(
    args: &ApiArgs,
    default: Option<&str>,
    cluster: &str,
    pki_dir: &Path,
    host: &str,
    api_ip: std::net::Ipv4Addr,
) -> anyhow::Result<Option<ApiStart>> {
    let (address, defaulted) = match (args.api_address.as_deref(), default) {
        (Some("off"), _) | (None, None) => return Ok(None),
        (Some(a), _) => (a, false),
        (None, Some(d)) => (d, true),
    };
    let addr: std::net::SocketAddr = address
        .parse()
        .with_context(|| format!("--api-address {address:?} is not an IP:port (or `off`)"))?;
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) if defaulted => {
            println!(
                "kubus: the Kubernetes API is not served: {address} is taken ({e}); \
                 choose another with --api-address"
            );
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("binding the API on {address}")),
    };
    let bound = listener.local_addr()?;
    let url_host = crate::http::url_host(bound);
    let mut extra = args.api_san.clone();
    extra.push(api_ip.to_string());
    if !bound.ip().is_unspecified() {
        extra.push(bound.ip().to_string());
    }
    let names = pki::default_names(host, &extra);
    let pki = pki::load_or_create(pki_dir, &names)
        .with_context(|| format!("making the API's certificates in {}", pki_dir.display()))?;
    let tls = pki::server_config(&pki)?;
    let url = format!("https://{url_host}:{}", bound.port());
    let ours = kubeconfig::render(cluster, &url, &pki);
    let path = args
        .write_kubeconfig
        .clone()
        .unwrap_or_else(|| config::kubus_home().join("kubeconfig"));
    kubeconfig::write(&path, &ours)?;
    if args.kubeconfig_merge {
        let target = kube_config_path();
        kubeconfig::merge_into(&target, &ours)
            .with_context(|| format!("merging into {}", target.display()))?;
        println!(
            "kubus: context {cluster:?} merged into {}",
            target.display()
        );
    }
    Ok(Some(ApiStart {
        listener,
        tls,
        url,
        kubeconfig: path,
        ca: pki.ca_cert.clone(),
    }))
}

/// `~/.kube/config`, or the first file `$KUBECONFIG` names.
fn kube_config_path() -> PathBuf {
    match std::env::var_os("KUBECONFIG") {
        Some(v) => std::env::split_paths(&v)
            .next()
            .unwrap_or_else(|| config::home().join(".kube").join("config")),
        None => config::home().join(".kube").join("config"),
    }
}
