//! The `cri` runtime: real containers through the CRI v1 gRPC API of
//! containerd (or CRI-O) on a unix socket. A pod is a sandbox (its network
//! namespace: a CNI bridge address, or the node's network for
//! `hostNetwork`); its containers are created in it from images, which are
//! looked up first (`ImageStatus`) and pulled only when absent and the
//! container's `imagePullPolicy` allows it.
//!
//! The agent's `start` returns at once with a handle of this runtime; the
//! CRI calls (sandbox, image, create, start) run in a task, and what they
//! end in comes back as an exit or a [`RuntimeEvent`]. Exits are seen by
//! polling `ContainerStatus` (containerd 1.6 has no container event stream).
//! Each name's last exited container is kept (as the kubelet keeps it) until
//! that name exits again or its pod goes, so a restarted agent can read
//! the exit.
//!
//! Re-adoption: every sandbox carries [`NODE_LABEL`]; every container
//! carries its pod's identity labels, its name, the agent's handle
//! ([`HANDLE_LABEL`]) and its spec's hash ([`HASH_LABEL`]), and its CRI
//! `attempt` is its restart count. [`Runtime::leftovers`] reads them back.
//!
//! What goes into the CRI requests is decided in the pure functions
//! [`sandbox_config`], [`container_config`] and [`pull_step`]; this module
//! must not depend on actix.
//!
//! Facts about containerd on this kind of machine:
//! ../shared/notes/cri-on-this-machine.md.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use kubus_api::meta;
use serde_json::Value;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint, Uri};
use tracing::{debug, info, warn, Instrument};

use super::cri_stream;
use super::runtime::{
    spec_hash, Adoption, ContainerSpec, ExecOutput, ExecProcess, ExecSpec, Exited, FoundContainer,
    FoundPod, FoundState, Leftovers, NodeImage, Runtime, RuntimeError, RuntimeEvent,
};

/// The CRI v1 messages and clients, for code that speaks CRI directly (the
/// benchmark's baseline).
pub use k8s_cri::v1;

/// How often a running container's status is polled for its exit.
const EXIT_POLL: Duration = Duration::from_millis(500);
/// Bound on one CRI call that is not a pull, a stop or an exec.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one image pull.
const PULL_TIMEOUT: Duration = Duration::from_secs(300);
/// Events buffered for the agent.
const EVENT_QUEUE: usize = 1024;
/// Sandbox attempts for one pod before its container start fails.
const SANDBOX_ATTEMPTS_MAX: u32 = 3;
/// Label on every sandbox this runtime creates: the node it belongs to.
pub const NODE_LABEL: &str = "kubus.io/node";
/// Label on every container: the id the agent knows it by.
pub const HANDLE_LABEL: &str = "kubus.io/handle";
/// Label on every container: [`spec_hash`] of its spec in the pod.
pub const HASH_LABEL: &str = "kubus.io/container-hash";
/// Label on every container: its name in the pod spec (the kubelet's).
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// Label on every sandbox and container: its pod's uid (the kubelet's).
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// How long a container no pod owns any more gets to stop (the kubelet's
/// minimum grace period, which it gives containers without a pod).
const ORPHAN_GRACE: Duration = Duration::from_secs(2);
/// Most sandboxes a restarted agent looks at (far above a node's pods).
const LEFTOVER_SANDBOXES_MAX: usize = 1024;
/// Leftover containers (or sandboxes) a restarted agent removes at once.
const LEFTOVER_REMOVALS_MAX: usize = 16;
/// CFS period for CPU limits, as the kubelet uses.
const CPU_PERIOD_US: i64 = 100_000;

type Result<T, E = RuntimeError> = std::result::Result<T, E>;

fn rpc(what: &str, e: tonic::Status) -> RuntimeError {
    RuntimeError::Runtime(format!("{what}: {}", e.message()))
}

async fn bounded<T>(
    what: &str,
    limit: Duration,
    f: impl std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(e)) => Err(rpc(what, e)),
        Err(_) => Err(RuntimeError::Runtime(format!(
            "{what}: no answer in {limit:?}"
        ))),
    }
}

/// Open a gRPC channel to a CRI runtime's unix socket.
pub async fn connect_socket(socket: &Path) -> Result<Channel> {
    let path = socket.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .map_err(|e| RuntimeError::Runtime(e.to_string()))?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .map_err(|e| RuntimeError::Runtime(format!("connect {}: {e}", socket.display())))
}

/// What to do about a container's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStep {
    /// Use the image already on the node.
    Use,
    Pull,
    /// Absent, and the policy forbids pulling (`ErrImageNeverPull`).
    NeverPull,
}

/// Kubernetes' default `imagePullPolicy`: `Always` for `:latest` or no tag,
/// else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    let name = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match name.rsplit_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

/// Decide the image step from the policy and whether the image is present.
pub fn pull_step(policy: &str, present: bool) -> PullStep {
    match (policy, present) {
        ("Always", _) => PullStep::Pull,
        ("Never", false) => PullStep::NeverPull,
        (_, true) => PullStep::Use,
        (_, false) => PullStep::Pull,
    }
}

fn is_host_network(pod: &Value) -> bool {
    pod.pointer("/spec/hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The labels that tie a sandbox or container to its pod, as the kubelet
/// sets them.
fn identity_labels(pod: &Value) -> [(String, String); 3] {
    let s = |v: Option<&str>| v.unwrap_or_default().to_string();
    [
        ("io.kubernetes.pod.name".into(), s(meta::name(pod))),
        (
            "io.kubernetes.pod.namespace".into(),
            s(meta::namespace(pod)),
        ),
        (POD_UID_LABEL.into(), s(meta::uid(pod))),
    ]
}

fn pod_labels(pod: &Value, node: &str) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = meta::labels(pod).into_iter().collect();
    labels.extend(identity_labels(pod));
    labels.insert(NODE_LABEL.into(), node.into());
    labels
}

fn namespaces(host_network: bool) -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: if host_network {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        } as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// The sandbox for a pod: its metadata, network mode, host ports and the
/// directory its containers' logs go under.
pub fn sandbox_config(
    pod: &Value,
    node: &str,
    cluster_dns: Option<&str>,
    log_directory: &Path,
    attempt: u32,
) -> cri::PodSandboxConfig {
    let host_network = is_host_network(pod);
    let name = meta::name(pod).unwrap_or_default();
    let port_mappings = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|p| {
            let host_port = p.get("hostPort").and_then(Value::as_i64)?;
            Some(cri::PortMapping {
                protocol: match p.get("protocol").and_then(Value::as_str) {
                    Some("UDP") => cri::Protocol::Udp,
                    Some("SCTP") => cri::Protocol::Sctp,
                    _ => cri::Protocol::Tcp,
                } as i32,
                container_port: p.get("containerPort").and_then(Value::as_i64).unwrap_or(0) as i32,
                host_port: host_port as i32,
                host_ip: p
                    .get("hostIP")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            })
        })
        .collect();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            uid: meta::uid(pod).unwrap_or_default().to_string(),
            namespace: meta::namespace(pod).unwrap_or_default().to_string(),
            attempt,
        }),
        hostname: if host_network {
            String::new()
        } else {
            pod.pointer("/spec/hostname")
                .and_then(Value::as_str)
                .unwrap_or(name)
                .to_string()
        },
        log_directory: log_directory.display().to_string(),
        dns_config: kubus_api::dns::pod_dns(pod, cluster_dns).map(|d| cri::DnsConfig {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings,
        labels: pod_labels(pod, node),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(host_network)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// CPU and memory limits (and CPU requests as shares) for the runtime.
pub fn resources(container: &Value) -> Result<cri::LinuxContainerResources, String> {
    let mut r = cri::LinuxContainerResources::default();
    let get = |kind: &str, what: &str| {
        container
            .pointer(&format!("/resources/{kind}/{what}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let bad = |path: &str, e: kubus_api::quantity::QuantityError| format!("resources.{path}: {e}");
    if let Some(cpu) = get("limits", "cpu") {
        let m = kubus_api::quantity::cpu_millis(&cpu).map_err(|e| bad("limits.cpu", e))?;
        r.cpu_period = CPU_PERIOD_US;
        // at least 1 ms per period, as the kubelet's MinQuotaPeriod
        r.cpu_quota = (m * CPU_PERIOD_US / 1000).max(1000);
    }
    let request = get("requests", "cpu").or(get("limits", "cpu"));
    if let Some(cpu) = request {
        let m = kubus_api::quantity::cpu_millis(&cpu).map_err(|e| bad("requests.cpu", e))?;
        r.cpu_shares = (m * 1024 / 1000).max(2);
    }
    if let Some(mem) = get("limits", "memory") {
        r.memory_limit_in_bytes =
            kubus_api::quantity::memory_bytes(&mem).map_err(|e| bad("limits.memory", e))?;
    }
    Ok(r)
}

/// Whether the pod's container `name` runs on a terminal.
fn container_tty(pod: &Value, name: &str) -> bool {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c["name"] == name)
        .and_then(|c| c["tty"].as_bool())
        .unwrap_or(false)
}

/// The container's CRI configuration. `log_path` is relative to the
/// sandbox's log directory; `handle` is the agent's id for it.
pub fn container_config(
    pod: &Value,
    container: &Value,
    spec: &ContainerSpec,
    attempt: u32,
    log_path: &str,
    handle: &str,
) -> Result<cri::ContainerConfig, String> {
    let image = container
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut labels: HashMap<String, String> = identity_labels(pod).into_iter().collect();
    labels.insert(CONTAINER_NAME_LABEL.into(), spec.container.clone());
    labels.insert(HANDLE_LABEL.into(), handle.to_string());
    labels.insert(HASH_LABEL.into(), spec_hash(container));
    Ok(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: spec.container.clone(),
            attempt,
        }),
        image: Some(cri::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: spec.command.clone(),
        args: spec.args.clone(),
        working_dir: spec.working_dir.clone().unwrap_or_default(),
        envs: spec
            .env
            .iter()
            .map(|(k, v)| cri::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        labels,
        log_path: log_path.to_string(),
        stdin: spec.stdin,
        stdin_once: spec.stdin_once,
        tty: spec.tty,
        mounts: spec
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.display().to_string(),
                readonly: m.read_only,
                ..Default::default()
            })
            .collect(),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources(container)?),
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(namespaces(is_host_network(pod))),
                ..Default::default()
            }),
        }),
        ..Default::default()
    })
}

/// A pod's sandbox once it runs.
#[derive(Debug, Clone)]
struct Sandbox {
    id: String,
    config: cri::PodSandboxConfig,
    /// Its address on the pod network (None: the node's network).
    ip: Option<String>,
}

#[derive(Debug)]
struct PodInfo {
    pod: Value,
    /// Held while the sandbox is being created, so a pod gets one.
    sandbox: Arc<tokio::sync::Mutex<Option<Sandbox>>>,
    attempts: u32,
    /// Each container name's last exited container (CRI id), kept until
    /// the name exits again or the pod goes.
    exited: HashMap<String, String>,
}

impl PodInfo {
    fn new(pod: &Value) -> PodInfo {
        PodInfo {
            pod: pod.clone(),
            sandbox: Arc::new(tokio::sync::Mutex::new(None)),
            attempts: 0,
            exited: HashMap::new(),
        }
    }
}

/// A container as the agent knows it (by this runtime's handle).
#[derive(Debug, Default)]
struct Handle {
    cri_id: Option<String>,
    stop_requested: bool,
    /// The container runs on a terminal (an attach asks for one).
    tty: bool,
}

struct Inner {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    node: String,
    /// The cluster DNS address pods of `ClusterFirst` use.
    cluster_dns: Option<String>,
    version: String,
    pods: Mutex<HashMap<String, PodInfo>>,
    handles: Mutex<HashMap<String, Handle>>,
    events_tx: mpsc::Sender<RuntimeEvent>,
    events_rx: Mutex<Option<mpsc::Receiver<RuntimeEvent>>>,
}

/// The CRI runtime; cheap to clone.
#[derive(Clone)]
pub struct CriRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CriRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriRuntime")
            .field("node", &self.inner.node)
            .field("version", &self.inner.version)
            .finish()
    }
}

/// Lock a std mutex; a panic elsewhere while it was held leaves plain maps
/// that are still consistent enough to use.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CriRuntime {
    /// Connect to the runtime at `socket` and check it speaks CRI v1. What
    /// an earlier run of node `node` left is the agent's to adopt or remove
    /// ([`Runtime::leftovers`]).
    pub async fn connect(
        socket: &Path,
        node: &str,
        cluster_dns: Option<String>,
    ) -> Result<CriRuntime> {
        let channel = connect_socket(socket).await?;
        let mut runtime = RuntimeServiceClient::new(channel.clone());
        let v = bounded(
            "Version",
            CALL_TIMEOUT,
            runtime.version(cri::VersionRequest {
                version: "v1".into(),
            }),
        )
        .await?;
        if v.runtime_api_version != "v1" {
            return Err(RuntimeError::Runtime(format!(
                "{} speaks CRI {:?}, not v1",
                v.runtime_name, v.runtime_api_version
            )));
        }
        let version = format!("{}://{}", v.runtime_name, v.runtime_version);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        info!(%version, socket = %socket.display(), "CRI runtime connected");
        Ok(CriRuntime {
            inner: Arc::new(Inner {
                images: ImageServiceClient::new(channel),
                runtime,
                node: node.to_string(),
                cluster_dns,
                version,
                pods: Mutex::new(HashMap::new()),
                handles: Mutex::new(HashMap::new()),
                events_tx,
                events_rx: Mutex::new(Some(events_rx)),
            }),
        })
    }

    /// Whether the runtime holds `image`.
    pub async fn has_image(&self, image: &str) -> Result<bool> {
        let mut images = self.inner.images.clone();
        let status = bounded(
            "ImageStatus",
            CALL_TIMEOUT,
            images.image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                verbose: false,
            }),
        )
        .await?;
        Ok(status.image.is_some())
    }

    /// Pull `image`, bounded by `timeout`.
    pub async fn pull(&self, image: &str, timeout: Duration) -> Result<()> {
        let mut images = self.inner.images.clone();
        let pull = images.pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        });
        bounded("PullImage", timeout, pull).await.map(|_| ())
    }

    /// Stop and remove every sandbox of this node (on shutdown, after the
    /// agent stopped its pods).
    pub async fn remove_all(&self) -> Result<usize> {
        let mut runtime = self.inner.runtime.clone();
        remove_sandboxes(&mut runtime, &self.inner.node).await
    }
}

/// The sandboxes of node `node` (at most [`LEFTOVER_SANDBOXES_MAX`]).
async fn node_sandboxes(
    runtime: &mut RuntimeServiceClient<Channel>,
    node: &str,
) -> Result<Vec<cri::PodSandbox>> {
    let list = bounded(
        "ListPodSandbox",
        CALL_TIMEOUT,
        runtime.list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: HashMap::from([(NODE_LABEL.to_string(), node.to_string())]),
                ..Default::default()
            }),
        }),
    )
    .await?;
    if list.items.len() > LEFTOVER_SANDBOXES_MAX {
        warn!(
            sandboxes = list.items.len(),
            "more sandboxes than a node runs; looking at the first {LEFTOVER_SANDBOXES_MAX}"
        );
    }
    Ok(list
        .items
        .into_iter()
        .take(LEFTOVER_SANDBOXES_MAX)
        .collect())
}

async fn remove_sandboxes(
    runtime: &mut RuntimeServiceClient<Channel>,
    node: &str,
) -> Result<usize> {
    let sandboxes = node_sandboxes(runtime, node).await?;
    for sb in &sandboxes {
        remove_sandbox(runtime, &sb.id).await;
    }
    Ok(sandboxes.len())
}

fn ns_to_ms(ns: i64) -> u64 {
    u64::try_from(ns / 1_000_000).unwrap_or(0)
}

/// Kubernetes' terminated reason for an exited container's status.
fn exit_reason(s: &cri::ContainerStatus) -> String {
    if !s.reason.is_empty() {
        s.reason.clone()
    } else if s.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    }
}

/// A container of one of this node's sandboxes as a [`FoundContainer`].
fn found_container(c: &cri::Container, status: Option<&cri::ContainerStatus>) -> FoundContainer {
    let label = |k: &str| c.labels.get(k).cloned();
    let md = c.metadata.clone().unwrap_or_default();
    let state = match status {
        Some(s) if s.state == cri::ContainerState::ContainerRunning as i32 => FoundState::Running {
            started_at_ms: ns_to_ms(s.started_at),
        },
        Some(s) if s.state == cri::ContainerState::ContainerExited as i32 => FoundState::Exited {
            code: s.exit_code,
            reason: exit_reason(s),
            started_at_ms: ns_to_ms(s.started_at),
            finished_at_ms: ns_to_ms(s.finished_at),
        },
        Some(s) if s.state == cri::ContainerState::ContainerCreated as i32 => FoundState::Created,
        _ => FoundState::Unknown,
    };
    FoundContainer {
        pod_uid: label(POD_UID_LABEL).unwrap_or_default(),
        container: label(CONTAINER_NAME_LABEL).unwrap_or(md.name),
        runtime_id: c.id.clone(),
        pod_runtime_id: Some(c.pod_sandbox_id.clone()),
        // a container started before handles were labelled: its CRI id
        id: label(HANDLE_LABEL).unwrap_or_else(|| format!("cri-{}", c.id)),
        restarts: md.attempt,
        spec_hash: label(HASH_LABEL),
        state,
    }
}

async fn remove_sandbox(runtime: &mut RuntimeServiceClient<Channel>, id: &str) {
    let stop = runtime.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    });
    if let Err(e) = bounded("StopPodSandbox", CALL_TIMEOUT, stop).await {
        warn!(sandbox = id, error = %e, "cannot stop sandbox");
    }
    let remove = runtime.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    });
    if let Err(e) = bounded("RemovePodSandbox", CALL_TIMEOUT, remove).await {
        warn!(sandbox = id, error = %e, "cannot remove sandbox");
    }
}

/// Why a container could not start: Kubernetes' waiting reason and a message.
#[derive(Debug)]
struct StartFailure {
    reason: &'static str,
    message: String,
}

impl StartFailure {
    fn new(reason: &'static str, message: impl Into<String>) -> StartFailure {
        StartFailure {
            reason,
            message: message.into(),
        }
    }
}

impl Inner {
    async fn ensure_sandbox(&self, pod_uid: &str, log_dir: &Path) -> Result<Sandbox, StartFailure> {
        let (cell, pod) = {
            let pods = lock(&self.pods);
            let info = pods.get(pod_uid).ok_or_else(|| {
                StartFailure::new("CreatePodSandboxError", "pod unknown to the runtime")
            })?;
            (info.sandbox.clone(), info.pod.clone())
        };
        let mut slot = cell.lock().await;
        if let Some(sb) = slot.as_ref() {
            return Ok(sb.clone());
        }
        let attempt = {
            let mut pods = lock(&self.pods);
            let info = pods
                .get_mut(pod_uid)
                .ok_or_else(|| StartFailure::new("CreatePodSandboxError", "pod is gone"))?;
            info.attempts += 1;
            info.attempts - 1
        };
        if attempt >= SANDBOX_ATTEMPTS_MAX {
            return Err(StartFailure::new(
                "CreatePodSandboxError",
                format!("sandbox failed {attempt} times; giving up"),
            ));
        }
        let config = sandbox_config(
            &pod,
            &self.node,
            self.cluster_dns.as_deref(),
            log_dir,
            attempt,
        );
        let mut rt = self.runtime.clone();
        let run = rt.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        });
        let id = bounded("RunPodSandbox", CALL_TIMEOUT, run)
            .await
            .map_err(|e| StartFailure::new("CreatePodSandboxError", e.to_string()))?
            .pod_sandbox_id;
        let status = bounded(
            "PodSandboxStatus",
            CALL_TIMEOUT,
            rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            }),
        )
        .await;
        let ip = status
            .ok()
            .and_then(|s| s.status)
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .filter(|ip| !ip.is_empty());
        debug!(pod_uid, sandbox = %id, ?ip, "sandbox running");
        if let Some(ip) = ip.clone() {
            let _ = self
                .events_tx
                .send(RuntimeEvent::PodNetwork {
                    pod_uid: pod_uid.to_string(),
                    ip,
                })
                .await;
        }
        let sb = Sandbox { id, config, ip };
        *slot = Some(sb.clone());
        Ok(sb)
    }

    /// Tell the agent about a step of a container's start (for its Events).
    async fn progress(
        &self,
        handle: &str,
        spec: &ContainerSpec,
        reason: &'static str,
        message: String,
    ) {
        let _ = self
            .events_tx
            .send(RuntimeEvent::Progress {
                pod_uid: spec.pod_uid.clone(),
                container: spec.container.clone(),
                id: handle.to_string(),
                reason,
                message,
            })
            .await;
    }

    async fn ensure_image(
        &self,
        handle: &str,
        spec_of: &ContainerSpec,
        image: &str,
        policy: &str,
    ) -> Result<(), StartFailure> {
        let spec = cri::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        };
        let mut images = self.images.clone();
        let status = bounded(
            "ImageStatus",
            CALL_TIMEOUT,
            images.image_status(cri::ImageStatusRequest {
                image: Some(spec.clone()),
                verbose: false,
            }),
        )
        .await
        .map_err(|e| StartFailure::new("ErrImagePull", e.to_string()))?;
        match pull_step(policy, status.image.is_some()) {
            PullStep::Use => {
                let message = format!("Container image {image:?} already present on machine");
                self.progress(handle, spec_of, "Pulled", message).await;
                Ok(())
            }
            PullStep::NeverPull => Err(StartFailure::new(
                "ErrImageNeverPull",
                format!("Container image {image:?} is not present with pull policy of Never"),
            )),
            PullStep::Pull => {
                info!(image, "pulling image");
                self.progress(
                    handle,
                    spec_of,
                    "Pulling",
                    format!("Pulling image {image:?}"),
                )
                .await;
                let started = std::time::Instant::now();
                let pull = images.pull_image(cri::PullImageRequest {
                    image: Some(spec),
                    ..Default::default()
                });
                match bounded("PullImage", PULL_TIMEOUT, pull).await {
                    Ok(_) => {}
                    // `Always` on a node that cannot reach the registry:
                    // run the copy the node holds (an airgapped node's
                    // imported images), saying so
                    Err(e) if status.image.is_some() => {
                        let message = format!(
                            "Failed to pull image {image:?} ({e}); using the copy present on the node"
                        );
                        warn!(image, error = %e, "pull failed; using the image present");
                        self.progress(handle, spec_of, "Pulled", message).await;
                        return Ok(());
                    }
                    Err(e) => {
                        return Err(StartFailure::new(
                            "ErrImagePull",
                            format!("failed to pull image {image:?}: {e}"),
                        ))
                    }
                }
                let took = started.elapsed().as_secs_f64();
                let message = format!("Successfully pulled image {image:?} in {took:.3}s");
                self.progress(handle, spec_of, "Pulled", message).await;
                Ok(())
            }
        }
    }

    /// Sandbox, image, create, start; then watch for the exit.
    async fn run(
        self: Arc<Self>,
        handle: String,
        spec: ContainerSpec,
        exits: mpsc::Sender<Exited>,
        span: tracing::Span,
    ) {
        let started = self.create_and_start(&handle, &spec).instrument(span).await;
        match started {
            Ok(cri_id) => {
                self.watch_exit(&handle, &spec.pod_uid, &spec.container, &cri_id, exits)
                    .await
            }
            Err(f) => {
                lock(&self.handles).remove(&handle);
                warn!(pod = %spec.pod, container = %spec.container, reason = f.reason, message = %f.message, "container did not start");
                let _ = self
                    .events_tx
                    .send(RuntimeEvent::StartFailed {
                        pod_uid: spec.pod_uid.clone(),
                        container: spec.container.clone(),
                        id: handle,
                        reason: f.reason.to_string(),
                        message: f.message,
                    })
                    .await;
            }
        }
    }

    async fn create_and_start(
        &self,
        handle: &str,
        spec: &ContainerSpec,
    ) -> Result<String, StartFailure> {
        let pod = lock(&self.pods)
            .get(&spec.pod_uid)
            .map(|p| p.pod.clone())
            .ok_or_else(|| {
                StartFailure::new("CreateContainerError", "pod unknown to the runtime")
            })?;
        let container = ["containers", "initContainers"]
            .iter()
            .filter_map(|f| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array))
            .flatten()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(spec.container.as_str()))
            .cloned()
            .ok_or_else(|| StartFailure::new("CreateContainerError", "container not in the pod"))?;
        // the agent's log path is <pod dir>/<container>/<restarts>.log; the
        // pod dir is the sandbox's log directory
        let (log_dir, rel_log, attempt) = split_log_path(&spec.log_path).ok_or_else(|| {
            StartFailure::new("CreateContainerError", "log path has no pod directory")
        })?;
        std::fs::create_dir_all(log_dir.join(&spec.container)).map_err(|e| {
            StartFailure::new("CreateContainerError", format!("log directory: {e}"))
        })?;
        let image = container
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let policy = container
            .get("imagePullPolicy")
            .and_then(Value::as_str)
            .unwrap_or_else(|| default_pull_policy(image));
        let current = tracing::Span::current();
        self.ensure_image(handle, spec, image, policy)
            .instrument(kubus_bus::trace_span!(child_of: &current, "cri.ensure_image", image))
            .await?;
        let sandbox = self
            .ensure_sandbox(&spec.pod_uid, &log_dir)
            .instrument(kubus_bus::trace_span!(child_of: &current, "cri.ensure_sandbox"))
            .await?;
        let config = container_config(&pod, &container, spec, attempt, &rel_log, handle)
            .map_err(|m| StartFailure::new("CreateContainerConfigError", m))?;
        let mut rt = self.runtime.clone();
        let create = rt.create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.id.clone(),
            config: Some(config),
            sandbox_config: Some(sandbox.config.clone()),
        });
        let cri_id = bounded("CreateContainer", CALL_TIMEOUT, create)
            .await
            .map_err(|e| StartFailure::new("CreateContainerError", e.to_string()))?
            .container_id;
        let message = format!("Created container {}", spec.container);
        self.progress(handle, spec, "Created", message).await;
        let stop_requested = {
            let mut handles = lock(&self.handles);
            let h = handles.entry(handle.to_string()).or_default();
            h.cri_id = Some(cri_id.clone());
            h.tty = spec.tty;
            h.stop_requested
        };
        if stop_requested {
            self.remove_container(&cri_id).await;
            return Err(StartFailure::new(
                "ContainerCannotRun",
                "stopped before it started",
            ));
        }
        let start = rt.start_container(cri::StartContainerRequest {
            container_id: cri_id.clone(),
        });
        if let Err(e) = bounded("StartContainer", CALL_TIMEOUT, start).await {
            self.remove_container(&cri_id).await;
            return Err(StartFailure::new("RunContainerError", e.to_string()));
        }
        debug!(pod = %spec.pod, container = %spec.container, %cri_id, "container started");
        let message = format!("Started container {}", spec.container);
        self.progress(handle, spec, "Started", message).await;
        Ok(cri_id)
    }

    /// Poll the container until it exits; keep it as its name's last
    /// exited container and report the exit.
    async fn watch_exit(
        &self,
        handle: &str,
        pod_uid: &str,
        container: &str,
        cri_id: &str,
        exits: mpsc::Sender<Exited>,
    ) {
        let mut rt = self.runtime.clone();
        let mut failures = 0u32;
        // bounded by the container's life: it ends when the container exits
        // or is gone, or after repeated failures to ask
        let (code, reason) = loop {
            tokio::time::sleep(EXIT_POLL).await;
            let status = bounded(
                "ContainerStatus",
                CALL_TIMEOUT,
                rt.container_status(cri::ContainerStatusRequest {
                    container_id: cri_id.to_string(),
                    verbose: false,
                }),
            )
            .await;
            match status.map(|s| s.status) {
                Ok(Some(s)) if s.state == cri::ContainerState::ContainerExited as i32 => {
                    break (s.exit_code, exit_reason(&s));
                }
                Ok(Some(_)) => failures = 0,
                Ok(None) => break (137, "ContainerGone".into()),
                Err(e) => {
                    failures += 1;
                    if failures >= 10 {
                        warn!(%cri_id, error = %e, "container status unknown; counting it as exited");
                        break (137, "Unknown".into());
                    }
                }
            }
        };
        let keep = reason != "ContainerGone" && reason != "Unknown";
        let replaced = {
            let mut pods = lock(&self.pods);
            match pods.get_mut(pod_uid) {
                Some(info) if keep => info
                    .exited
                    .insert(container.to_string(), cri_id.to_string()),
                // its pod is going (the sandbox takes it along), or it is gone
                _ => Some(cri_id.to_string()),
            }
        };
        if let Some(old) = replaced {
            self.remove_container(&old).await;
        }
        let _ = exits
            .send(Exited {
                pod_uid: pod_uid.to_string(),
                container: container.to_string(),
                id: handle.to_string(),
                code,
                reason,
            })
            .await;
        lock(&self.handles).remove(handle);
    }

    /// What an earlier run of this node's agent left: its sandboxes (with
    /// their addresses) and their containers (with their states).
    async fn leftovers(&self) -> Result<Leftovers> {
        let mut rt = self.runtime.clone();
        let mut out = Leftovers::default();
        for sb in node_sandboxes(&mut rt, &self.node).await? {
            let md = sb.metadata.clone().unwrap_or_default();
            let ready = sb.state == cri::PodSandboxState::SandboxReady as i32;
            let ip = if ready {
                let status = rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: sb.id.clone(),
                    verbose: false,
                });
                bounded("PodSandboxStatus", CALL_TIMEOUT, status)
                    .await?
                    .status
                    .and_then(|s| s.network)
                    .map(|n| n.ip)
                    .filter(|ip| !ip.is_empty())
            } else {
                None
            };
            out.pods.push(FoundPod {
                pod_uid: sb.labels.get(POD_UID_LABEL).cloned().unwrap_or(md.uid),
                runtime_id: sb.id.clone(),
                attempt: md.attempt,
                ready,
                ip,
            });
            let list = rt.list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    pod_sandbox_id: sb.id.clone(),
                    ..Default::default()
                }),
            });
            for c in bounded("ListContainers", CALL_TIMEOUT, list)
                .await?
                .containers
            {
                let status = rt.container_status(cri::ContainerStatusRequest {
                    container_id: c.id.clone(),
                    verbose: false,
                });
                let status = bounded("ContainerStatus", CALL_TIMEOUT, status)
                    .await?
                    .status;
                out.containers.push(found_container(&c, status.as_ref()));
            }
        }
        Ok(out)
    }

    /// Stop (with [`ORPHAN_GRACE`]) and remove containers, then stop and
    /// remove sandboxes; how many went.
    async fn remove_leftovers(
        &self,
        pods: Vec<FoundPod>,
        containers: Vec<FoundContainer>,
    ) -> usize {
        use futures::StreamExt;
        let count = containers.len() + pods.len();
        // several at once: each may take its grace period to stop
        futures::stream::iter(containers)
            .for_each_concurrent(LEFTOVER_REMOVALS_MAX, |c| async move {
                if matches!(c.state, FoundState::Running { .. } | FoundState::Unknown) {
                    let mut rt = self.runtime.clone();
                    let stop = rt.stop_container(cri::StopContainerRequest {
                        container_id: c.runtime_id.clone(),
                        timeout: ORPHAN_GRACE.as_secs() as i64,
                    });
                    if let Err(e) =
                        bounded("StopContainer", ORPHAN_GRACE + CALL_TIMEOUT, stop).await
                    {
                        warn!(cri_id = %c.runtime_id, error = %e, "cannot stop container");
                    }
                }
                self.remove_container(&c.runtime_id).await;
            })
            .await;
        futures::stream::iter(pods)
            .for_each_concurrent(LEFTOVER_REMOVALS_MAX, |sb| async move {
                let mut rt = self.runtime.clone();
                remove_sandbox(&mut rt, &sb.runtime_id).await;
            })
            .await;
        count
    }

    async fn remove_container(&self, cri_id: &str) {
        let mut rt = self.runtime.clone();
        let remove = rt.remove_container(cri::RemoveContainerRequest {
            container_id: cri_id.to_string(),
        });
        if let Err(e) = bounded("RemoveContainer", CALL_TIMEOUT, remove).await {
            debug!(%cri_id, error = %e, "cannot remove container");
        }
    }
}

/// `<pod dir>/<container>/<n>.log` → (pod dir, `<container>/<n>.log`, n).
fn split_log_path(path: &Path) -> Option<(PathBuf, String, u32)> {
    let file = path.file_name()?.to_str()?;
    let container = path.parent()?.file_name()?.to_str()?;
    let pod_dir = path.parent()?.parent()?;
    let attempt = file.strip_suffix(".log")?.parse().unwrap_or(0);
    Some((
        pod_dir.to_path_buf(),
        format!("{container}/{file}"),
        attempt,
    ))
}

impl Runtime for CriRuntime {
    fn version(&self) -> String {
        self.inner.version.clone()
    }

    /// containerd's figures from each container's cgroup: cumulative CPU
    /// time and the working set.
    fn usage(&self) -> BoxFuture<'static, Result<Vec<super::usage::RawUsage>>> {
        let mut runtime = self.inner.runtime.clone();
        Box::pin(async move {
            let list = bounded(
                "ListContainerStats",
                CALL_TIMEOUT,
                runtime.list_container_stats(cri::ListContainerStatsRequest { filter: None }),
            )
            .await?;
            Ok(list
                .stats
                .into_iter()
                .filter_map(|s| {
                    let id = s.attributes?.id;
                    let cpu_ns = s
                        .cpu
                        .and_then(|c| c.usage_core_nano_seconds)
                        .map_or(0, |v| v.value);
                    let memory_bytes = s
                        .memory
                        .and_then(|m| m.working_set_bytes)
                        .map_or(0, |v| v.value);
                    Some(super::usage::RawUsage {
                        id,
                        cpu_ns,
                        memory_bytes,
                    })
                })
                .collect())
        })
    }

    fn images(&self) -> BoxFuture<'static, Result<Vec<NodeImage>>> {
        let mut images = self.inner.images.clone();
        Box::pin(async move {
            let list = bounded(
                "ListImages",
                CALL_TIMEOUT,
                images.list_images(cri::ListImagesRequest { filter: None }),
            )
            .await?;
            Ok(list
                .images
                .into_iter()
                .map(|i| NodeImage {
                    names: i.repo_tags.into_iter().chain(i.repo_digests).collect(),
                    size_bytes: i.size,
                })
                .collect())
        })
    }

    fn start(&self, spec: &ContainerSpec, exits: mpsc::Sender<Exited>) -> Result<String> {
        if !lock(&self.inner.pods).contains_key(&spec.pod_uid) {
            return Err(RuntimeError::Start(format!(
                "pod {} was not announced to the cri runtime",
                spec.pod
            )));
        }
        let handle = format!("cri-{}", uuid::Uuid::new_v4().simple());
        lock(&self.inner.handles).insert(handle.clone(), Handle::default());
        let inner = self.inner.clone();
        // in the trace of the pod's start, when it is traced
        let span = kubus_bus::trace_span!(
            child_of: &tracing::Span::current(),
            "cri.start_container",
            container = %spec.container,
        );
        tokio::spawn(inner.run(handle.clone(), spec.clone(), exits, span));
        Ok(handle)
    }

    fn stop(&self, id: &str, grace: Duration) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        let handle = id.to_string();
        Box::pin(async move {
            let cri_id = {
                let mut handles = lock(&inner.handles);
                let Some(h) = handles.get_mut(&handle) else {
                    return;
                };
                h.stop_requested = true;
                h.cri_id.clone()
            };
            if let Some(cri_id) = cri_id {
                let mut rt = inner.runtime.clone();
                let stop = rt.stop_container(cri::StopContainerRequest {
                    container_id: cri_id.clone(),
                    timeout: grace.as_secs() as i64,
                });
                if let Err(e) = bounded("StopContainer", grace + CALL_TIMEOUT, stop).await {
                    warn!(%cri_id, error = %e, "cannot stop container");
                }
            }
            // wait (bounded) until the exit watcher has seen it go
            let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(5);
            loop {
                let present = lock(&inner.handles).contains_key(&handle);
                if !present || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    }

    fn leftovers(&self) -> BoxFuture<'static, Result<Leftovers>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.leftovers().await })
    }

    fn adopt(&self, a: &Adoption, exits: mpsc::Sender<Exited>) {
        let Some(uid) = meta::uid(&a.pod) else {
            return;
        };
        let mut info = PodInfo::new(&a.pod);
        if let Some(sb) = &a.sandbox {
            info.attempts = sb.attempt + 1;
            info.sandbox = Arc::new(tokio::sync::Mutex::new(Some(Sandbox {
                id: sb.runtime_id.clone(),
                config: sandbox_config(
                    &a.pod,
                    &self.inner.node,
                    self.inner.cluster_dns.as_deref(),
                    &a.pod_dir,
                    sb.attempt,
                ),
                ip: sb.ip.clone(),
            })));
        }
        info.exited = a
            .exited
            .iter()
            .map(|c| (c.container.clone(), c.runtime_id.clone()))
            .collect();
        lock(&self.inner.pods).insert(uid.to_string(), info);
        for c in &a.running {
            lock(&self.inner.handles).insert(
                c.id.clone(),
                Handle {
                    cri_id: Some(c.runtime_id.clone()),
                    stop_requested: false,
                    tty: container_tty(&a.pod, &c.container),
                },
            );
            let inner = self.inner.clone();
            let (c, exits) = (c.clone(), exits.clone());
            tokio::spawn(async move {
                inner
                    .watch_exit(&c.id, &c.pod_uid, &c.container, &c.runtime_id, exits)
                    .await
            });
        }
    }

    fn remove_leftovers(
        &self,
        pods: Vec<FoundPod>,
        containers: Vec<FoundContainer>,
    ) -> BoxFuture<'static, usize> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.remove_leftovers(pods, containers).await })
    }

    fn pod_updated(&self, pod: &Value) {
        let Some(uid) = meta::uid(pod) else {
            return;
        };
        let mut pods = lock(&self.inner.pods);
        match pods.get_mut(uid) {
            Some(info) => info.pod = pod.clone(),
            None => {
                pods.insert(uid.to_string(), PodInfo::new(pod));
            }
        }
    }

    fn prepare_pod(
        &self,
        pod_uid: &str,
        pod_dir: &Path,
    ) -> BoxFuture<'static, Result<Option<String>>> {
        let inner = self.inner.clone();
        let (uid, dir) = (pod_uid.to_string(), pod_dir.to_path_buf());
        Box::pin(async move {
            std::fs::create_dir_all(&dir)?;
            let sb = inner
                .ensure_sandbox(&uid, &dir)
                .await
                .map_err(|f| RuntimeError::Runtime(format!("{}: {}", f.reason, f.message)))?;
            Ok(sb.ip)
        })
    }

    fn stop_pod(&self, pod_uid: &str) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        let info = lock(&inner.pods).remove(pod_uid);
        Box::pin(async move {
            let Some(info) = info else {
                return;
            };
            // waits for a sandbox still being created
            let sandbox = info.sandbox.lock().await.take();
            if let Some(sb) = sandbox {
                let mut rt = inner.runtime.clone();
                remove_sandbox(&mut rt, &sb.id).await;
            }
        })
    }

    fn events(&self) -> Option<mpsc::Receiver<RuntimeEvent>> {
        lock(&self.inner.events_rx).take()
    }

    fn reports_progress(&self) -> bool {
        true
    }

    fn prepares_pods(&self) -> bool {
        true
    }

    fn binds_volumes(&self) -> bool {
        true
    }

    fn exec(
        &self,
        id: &str,
        command: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<ExecOutput>> {
        let inner = self.inner.clone();
        let cri_id = lock(&inner.handles).get(id).and_then(|h| h.cri_id.clone());
        Box::pin(async move {
            let Some(cri_id) = cri_id else {
                return Err(RuntimeError::Runtime("container is not running".into()));
            };
            let mut rt = inner.runtime.clone();
            let exec = rt.exec_sync(cri::ExecSyncRequest {
                container_id: cri_id,
                cmd: command,
                timeout: timeout.as_secs().max(1) as i64,
            });
            let r = bounded("ExecSync", timeout + Duration::from_secs(5), exec).await?;
            Ok(ExecOutput {
                stdout: r.stdout,
                stderr: r.stderr,
                exit_code: r.exit_code,
            })
        })
    }

    /// CRI `Exec`, then its streams from the runtime's streaming server.
    fn exec_stream(&self, id: &str, spec: ExecSpec) -> BoxFuture<'static, Result<ExecProcess>> {
        let inner = self.inner.clone();
        let cri_id = lock(&inner.handles).get(id).and_then(|h| h.cri_id.clone());
        Box::pin(async move {
            let Some(cri_id) = cri_id else {
                return Err(RuntimeError::Runtime("container is not running".into()));
            };
            let mut rt = inner.runtime.clone();
            let exec = rt.exec(cri::ExecRequest {
                container_id: cri_id,
                cmd: spec.command,
                tty: spec.tty,
                stdin: spec.stdin,
                stdout: true,
                stderr: !spec.tty,
            });
            let url = bounded("Exec", CALL_TIMEOUT, exec).await?.url;
            let streams = cri_stream::Streams {
                stdin: spec.stdin,
                tty: spec.tty,
            };
            cri_stream::connect(&url, streams).await
        })
    }

    /// CRI `Attach`, then its streams from the runtime's streaming server.
    fn attach(&self, id: &str, stdin: bool) -> BoxFuture<'static, Result<ExecProcess>> {
        let inner = self.inner.clone();
        let found = lock(&inner.handles)
            .get(id)
            .and_then(|h| h.cri_id.clone().map(|c| (c, h.tty)));
        Box::pin(async move {
            let Some((cri_id, tty)) = found else {
                return Err(RuntimeError::Runtime("container is not running".into()));
            };
            let mut rt = inner.runtime.clone();
            let attach = rt.attach(cri::AttachRequest {
                container_id: cri_id,
                stdin,
                tty,
                stdout: true,
                stderr: !tty,
            });
            let url = bounded("Attach", CALL_TIMEOUT, attach).await?.url;
            cri_stream::connect(&url, cri_stream::Streams { stdin, tty }).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pull_policy_defaults_and_steps() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("localhost/busybox:latest"), "Always");
        assert_eq!(
            default_pull_policy("registry.k8s.io/busybox:1.27.2"),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(default_pull_policy("b@sha256:abc"), "IfNotPresent");
        let table = [
            ("Always", true, PullStep::Pull),
            ("Always", false, PullStep::Pull),
            ("IfNotPresent", true, PullStep::Use),
            ("IfNotPresent", false, PullStep::Pull),
            ("Never", true, PullStep::Use),
            ("Never", false, PullStep::NeverPull),
        ];
        for (policy, present, want) in table {
            assert_eq!(
                pull_step(policy, present),
                want,
                "{policy} present={present}"
            );
        }
    }

    #[test]
    fn sandbox_config_follows_host_network_and_ports() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}]}});
        let c = sandbox_config(&pod, "n1", Some("10.43.0.10"), Path::new("/logs/p"), 2);
        let md = c.metadata.clone().unwrap_or_default();
        assert_eq!(
            (
                md.name.as_str(),
                md.namespace.as_str(),
                md.uid.as_str(),
                md.attempt
            ),
            ("p", "ns", "u1", 2)
        );
        assert_eq!(c.hostname, "p");
        assert_eq!(c.log_directory, "/logs/p");
        assert_eq!(c.labels.get(NODE_LABEL).map(String::as_str), Some("n1"));
        assert_eq!(c.labels.get("app").map(String::as_str), Some("a"));
        assert_eq!(c.port_mappings.len(), 1);
        assert_eq!(
            (
                c.port_mappings[0].container_port,
                c.port_mappings[0].host_port
            ),
            (80, 8080)
        );
        let ns = |c: &cri::PodSandboxConfig| {
            c.linux
                .clone()
                .and_then(|l| l.security_context)
                .and_then(|s| s.namespace_options)
                .unwrap_or_default()
                .network
        };
        assert_eq!(ns(&c), cri::NamespaceMode::Pod as i32);
        let mut host = pod.clone();
        host["spec"]["hostNetwork"] = json!(true);
        assert_eq!(
            ns(&sandbox_config(&host, "n1", None, Path::new("/l"), 0)),
            cri::NamespaceMode::Node as i32
        );
    }

    #[test]
    fn resources_become_cgroup_limits() {
        let c = json!({"resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}});
        let r = resources(&c).unwrap_or_default();
        assert_eq!(
            (r.cpu_period, r.cpu_quota, r.cpu_shares),
            (100_000, 50_000, 256)
        );
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        assert_eq!(
            resources(&json!({})).unwrap_or_default(),
            cri::LinuxContainerResources::default()
        );
        assert!(
            resources(&json!({"resources": {"limits": {"memory": "lots"}}}))
                .is_err_and(|e| e.contains("limits.memory"))
        );
    }

    #[test]
    fn container_config_carries_command_env_and_log_path() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {}});
        let c = json!({"name": "c", "image": "localhost/busybox:latest"});
        let spec = ContainerSpec {
            pod_uid: "u1".into(),
            namespace: "ns".into(),
            pod: "p".into(),
            container: "c".into(),
            command: vec!["sh".into()],
            args: vec!["-c".into(), "echo hi".into()],
            env: vec![("A".into(), "1".into())],
            working_dir: None,
            log_path: PathBuf::from("/d/pods/ns_p_u1/c/3.log"),
            mounts: vec![],
            stdin: false,
            stdin_once: false,
            tty: false,
        };
        let (dir, rel, attempt) = split_log_path(&spec.log_path).unwrap_or_default();
        assert_eq!(
            (dir, rel.as_str(), attempt),
            (PathBuf::from("/d/pods/ns_p_u1"), "c/3.log", 3)
        );
        let cfg = container_config(&pod, &c, &spec, attempt, &rel, "cri-1").unwrap_or_default();
        assert_eq!(
            cfg.image.unwrap_or_default().image,
            "localhost/busybox:latest"
        );
        assert_eq!(cfg.command, vec!["sh"]);
        assert_eq!(cfg.args, vec!["-c", "echo hi"]);
        assert_eq!(
            cfg.envs,
            vec![cri::KeyValue {
                key: "A".into(),
                value: "1".into()
            }]
        );
        assert_eq!(cfg.log_path, "c/3.log");
        assert_eq!(cfg.metadata.clone().unwrap_or_default().attempt, 3);
        // what a restarted agent reads back
        let label = |k: &str| cfg.labels.get(k).map(String::as_str);
        assert_eq!(label(HANDLE_LABEL), Some("cri-1"));
        assert_eq!(label(POD_UID_LABEL), Some("u1"));
        assert_eq!(label(CONTAINER_NAME_LABEL), Some("c"));
        assert_eq!(label(HASH_LABEL), Some(spec_hash(&c).as_str()));
        let found = found_container(
            &cri::Container {
                id: "abc".into(),
                pod_sandbox_id: "sb".into(),
                metadata: cfg.metadata.clone(),
                labels: cfg.labels.clone(),
                ..Default::default()
            },
            Some(&cri::ContainerStatus {
                state: cri::ContainerState::ContainerExited as i32,
                exit_code: 2,
                started_at: 5_000_000_000,
                finished_at: 7_000_000_000,
                ..Default::default()
            }),
        );
        assert_eq!(
            found,
            FoundContainer {
                pod_uid: "u1".into(),
                container: "c".into(),
                runtime_id: "abc".into(),
                pod_runtime_id: Some("sb".into()),
                id: "cri-1".into(),
                restarts: 3,
                spec_hash: Some(spec_hash(&c)),
                state: FoundState::Exited {
                    code: 2,
                    reason: "Error".into(),
                    started_at_ms: 5_000,
                    finished_at_ms: 7_000
                },
            }
        );
    }
}
