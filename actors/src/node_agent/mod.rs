//! `NodeAgent` (the kubelet): registers its Node, receives only the pods
//! bound to it on `kubus.<c>.node.<node>.pods`, runs their containers through
//! a [`Runtime`], probes and restarts them as their spec says, writes their
//! status back, and serves their logs and execs on
//! `kubus.<c>.agent.<node>.logs` and `….exec`.
//!
//! Decisions are in [`pod`]; this actor carries them out. While a pod
//! runs, its configMap and secret volumes follow their sources: on a tick,
//! [`refresh::due`] picks pods (bounded, debounced) whose sources are read
//! again, and [`volumes`] swaps in the files that changed.
//!
//! Graceful deletion (issue 5): a pod with `metadata.deletionTimestamp` is
//! stopped — SIGTERM, then SIGKILL when the time left until that timestamp
//! runs out ([`pod::stop_grace`]; a later, shorter delete stops it sooner)
//! — its last status written ([`pod::final_status`]), and then the agent
//! removes the object for good: delete with grace 0 and a precondition on
//! its uid, so a re-created pod of the same name is never touched. The
//! entry stays until the pod's removal is seen. A pod removed at once
//! (forced, or never bound) is only stopped.
//!
//! After a restart the agent re-adopts what its earlier run left in the
//! runtime: it asks the runtime for its [`runtime::Leftovers`] and, once its
//! pod watch has listed this node's pods, lets [`adopt::plan`] decide what
//! runs on as it is (same container, restart count, start time and status),
//! what exited meanwhile, and what no pod owns any more (removed). Until
//! then pod changes only fill the informer cache.

pub mod adopt;
pub mod attach;
pub mod config;
pub mod cri;
pub mod cri_stream;
pub mod exec_session;
pub mod hollow;
pub mod lifecycle;
pub mod logs;
pub mod pod;
pub mod podnet;
pub mod probe;
pub mod prober;
pub mod process;
pub mod pty;
pub mod refresh;
pub mod runtime;
pub mod storage;
pub mod tokens;
pub mod usage;
pub mod volumes;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use async_nats::Message as NatsMessage;
use futures::future::join_all;
use futures::future::BoxFuture;
use kubus_api::{meta, ApiError, Kind, Reason};
use kubus_bus::client::DeleteOptions;
use kubus_bus::codec::Codec;
use kubus_bus::protocol::{
    ContainerUsage, ExecReply, ExecRequest, ExecResult, ExecStreamReply, ExecStreamRequest,
    LogChunk, LogsReply, LogsRequest, NodeUsage, PodUsage, PortForwardReply, PortForwardRequest,
    UsageReply, UsageRequest, EXEC_TIMEOUT_DEFAULT_SECS, EXEC_TIMEOUT_MAX_SECS,
};
use kubus_bus::subject::{AgentOp, StreamEnd};
use kubus_bus::watch::{WatchItem, WatchSpec};
use kubus_bus::Client;
use serde_json::{json, Value};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, error, info, warn, Instrument, Span};

use crate::events::{EventType, Recorder};
use crate::informer::Cache;
use crate::watching::{watched, Watched};
use lifecycle::{Action as LifeAction, Event as LifeEvent, Life};
use pod::{ContainerState, Step};
use probe::{Decision, Probe, ProbeKind};
use runtime::{Adoption, ContainerSpec, Exited, Leftovers, Runtime, RuntimeError, RuntimeEvent};

/// Longest grace period the agent waits for a container to stop: a
/// bound, far above what pods ask for (`terminationGracePeriodSeconds`
/// is honoured up to it; Kubernetes' default is 30 s).
pub const GRACE_MAX: Duration = Duration::from_secs(3600);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// How often the agent renews its node's Lease in `kube-node-lease` (the
/// kubelet's default); the node lifecycle controller judges it by that.
const NODE_LEASE_RENEW_EVERY: Duration = Duration::from_secs(10);
/// The `leaseDurationSeconds` the agent writes (the kubelet's 40 s).
const NODE_LEASE_DURATION_SECS: i64 = 40;
/// How often the Node's `status.images` is brought up to date (the
/// kubelet's node status period; a write only when they changed).
const IMAGES_EVERY: Duration = Duration::from_secs(10);
/// Most images the Node's status lists, the largest first (the kubelet's
/// `--node-status-max-images` default).
pub const NODE_STATUS_IMAGES_MAX: usize = 50;
const EXIT_QUEUE: usize = 1024;
const STATUS_RETRY: Duration = Duration::from_millis(200);
const REGISTER_RETRY: Duration = Duration::from_secs(1);
/// Execs one agent runs at once.
pub const EXEC_IN_FLIGHT_MAX: usize = 8;
/// Exec sessions (`exec -it`) one agent carries at once.
pub const EXEC_SESSIONS_MAX: usize = 32;
/// Most bytes of each output stream an exec reply carries (two of them fit
/// under NATS' default 1 MiB payload).
pub const EXEC_OUTPUT_MAX_BYTES: usize = 256 * 1024;
/// How soon a pod whose ConfigMaps and Secrets could not be read is tried
/// again.
const PREPARE_RETRY: Duration = Duration::from_secs(1);
/// Times a restarted agent asks its runtime what an earlier run left, and
/// the pause between: after that it goes on without adopting anything.
const LEFTOVERS_ATTEMPTS: u32 = 10;
const LEFTOVERS_RETRY: Duration = Duration::from_secs(1);
/// After its containers were stopped, how often and how long the agent
/// waits for their exits before it writes a deleted pod's last status.
const FINAL_EXIT_POLLS: u32 = 20;
const FINAL_EXIT_POLL: Duration = Duration::from_millis(50);
/// Tries at writing a deleted pod's last status (each after re-reading it
/// on a conflict), and at removing it, with the pause between removals.
const FINAL_STATUS_ATTEMPTS: usize = 3;
const REMOVE_ATTEMPTS: usize = 30;
const REMOVE_RETRY: Duration = Duration::from_secs(1);
/// How long a failed pull shows `ErrImagePull` before `ImagePullBackOff`.
const IMAGE_BACKOFF_SHOWN_AFTER: Duration = Duration::from_secs(1);
/// Most port-forward connections an agent carries at once.
pub const FORWARDS_IN_FLIGHT_MAX: usize = 256;
/// Bound on connecting to a pod's port for a port-forward.
const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a node agent describes its node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// Where logs and runtime state live.
    pub root: PathBuf,
    pub host_ip: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    /// Labels beyond the well-known ones (e.g. `kubus.io/hollow`).
    pub labels: Vec<(String, String)>,
}

impl NodeConfig {
    /// A node described from this host: its CPUs and memory.
    pub fn from_host(name: &str, root: PathBuf) -> NodeConfig {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mem_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .unwrap_or(1024 * 1024);
        NodeConfig {
            name: name.to_string(),
            root,
            host_ip: "127.0.0.1".to_string(),
            cpu: cpus.to_string(),
            memory: format!("{mem_kib}Ki"),
            pods: 110,
            labels: Vec::new(),
        }
    }
}

/// Where this node keeps its local-path volumes.
pub fn storage_root(cfg: &NodeConfig) -> PathBuf {
    cfg.root.join("storage")
}

/// The Node object this agent registers.
pub fn node_object(cfg: &NodeConfig, runtime_version: &str) -> Value {
    let now = kubus_api::lifecycle::format_time(jiff::Timestamp::now());
    let resources = json!({"cpu": cfg.cpu, "memory": cfg.memory, "pods": cfg.pods.to_string()});
    let mut node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": cfg.name, "labels": {
            "kubernetes.io/hostname": cfg.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": std::env::consts::ARCH,
        }, "annotations": {
            kubus_api::storage::LOCAL_PATH_ROOT_ANNOTATION: storage_root(cfg).display().to_string(),
        }},
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubus node agent is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": cfg.host_ip}, {"type": "Hostname", "address": cfg.name}],
            "nodeInfo": {"kubeletVersion": format!("kubus-{}", env!("CARGO_PKG_VERSION")),
                "containerRuntimeVersion": runtime_version, "operatingSystem": "linux",
                "architecture": std::env::consts::ARCH, "osImage": "", "kernelVersion": "",
                "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": ""},
        },
    });
    for (k, v) in &cfg.labels {
        node["metadata"]["labels"][k] = json!(v);
    }
    node
}

/// The Node's `status.images`: the largest [`NODE_STATUS_IMAGES_MAX`].
pub fn node_images(mut images: Vec<runtime::NodeImage>) -> Value {
    images.sort_by(|a, b| {
        b.size_bytes
            .cmp(&a.size_bytes)
            .then_with(|| a.names.cmp(&b.names))
    });
    images.truncate(NODE_STATUS_IMAGES_MAX);
    Value::Array(
        images
            .into_iter()
            .map(|i| json!({"names": i.names, "sizeBytes": i.size_bytes}))
            .collect(),
    )
}

fn now_ms() -> u64 {
    jiff::Timestamp::now().as_millisecond().max(0) as u64
}

/// One pod this agent runs.
struct PodEntry {
    pod: Value,
    states: BTreeMap<String, ContainerState>,
    started_ms: u64,
    /// Where the pod is in its life here ([`lifecycle::Life`]).
    life: Life,
    /// Its last status and removal are being written.
    finishing: bool,
    wake_at: Option<u64>,
    status_in_flight: bool,
    status_dirty: bool,
    last_reported: Option<Value>,
    /// The pod's address on the pod network, once the runtime reports it.
    pod_ip: Option<String>,
    /// The ConfigMaps and Secrets the pod refers to, as last fetched.
    sources: config::Sources,
    /// The pod's volumes as last written (or why they could not be).
    volumes: Result<Vec<config::PlannedVolume>, String>,
    /// When sources, volumes and sandbox were last made ready.
    prepared_ms: Option<u64>,
    preparing: bool,
    /// A live refresh of its configMap and secret volumes is in flight.
    refreshing: bool,
    /// When its volumes' sources were last read (prepared or refreshed).
    refreshed_ms: u64,
    /// What the last refresh failed with, recorded once as an Event.
    refresh_error: Option<String>,
    /// Counted as started (`kubelet_pod_start_duration_seconds` observed
    /// and `kubelet_running_pods` raised) — at the first Running report, or
    /// on re-adoption.
    start_counted: bool,
    /// `agent.pod_start` in the trace of the change that assigned the pod
    /// here, until it is first reported Running (disabled when untraced).
    span: Span,
}

/// When a pod's containers get SIGKILL at the latest: its time left until
/// `deletionTimestamp`, or its grace period, at most [`GRACE_MAX`].
fn kill_at(pod: &Value) -> u64 {
    let now = now_ms();
    now.saturating_add(pod::stop_grace(pod, now, GRACE_MAX).as_millis() as u64)
}

impl PodEntry {
    /// A pod the agent has just met, nothing started yet.
    fn new(pod: Value, now_ms: u64) -> PodEntry {
        PodEntry {
            pod,
            start_counted: false,
            span: Span::none(),
            states: BTreeMap::new(),
            started_ms: now_ms,
            life: Life::Running,
            finishing: false,
            wake_at: None,
            status_in_flight: false,
            status_dirty: false,
            last_reported: None,
            pod_ip: None,
            sources: config::Sources::default(),
            volumes: Ok(Vec::new()),
            prepared_ms: None,
            preparing: false,
            refreshing: false,
            refreshed_ms: 0,
            refresh_error: None,
        }
    }
}

/// A boolean field of a container (false when absent).
fn flag(container: &Value, field: &str) -> bool {
    container
        .get(field)
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Where the agent is in taking over what its earlier run left.
#[derive(Debug)]
enum Adopting {
    /// Waiting for the runtime's leftovers and the first list of pods.
    Waiting {
        leftovers: Option<Leftovers>,
        listed: bool,
    },
    /// Adopted; removing what no pod owns (and what is replaced) before
    /// anything starts, so a new sandbox or container never meets an old
    /// one of the same name.
    Removing,
    Done,
}

/// Ask the node agent to stop every container, then answer.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown;

pub struct NodeAgent<R: Runtime> {
    client: Client,
    recorder: Recorder,
    cfg: NodeConfig,
    runtime: Arc<R>,
    cache: Cache,
    pods: HashMap<String, PodEntry>,
    exits_tx: mpsc::Sender<Exited>,
    exits_rx: Option<mpsc::Receiver<Exited>>,
    /// The agent's request subjects (logs, exec, port-forward, exec
    /// sessions), subscribed; taken when the actor starts.
    request_subs: Vec<async_nats::Subscriber>,
    exec_subject: String,
    forward_subject: String,
    session_subject: String,
    usage_subject: String,
    /// The containers' and the machine's usage, sampled.
    usage: usage::Tracker,
    /// When the last usage sample was taken (ms) and its window.
    usage_at: (u64, u64),
    usage_in_flight: bool,
    /// Usage is sampled only until this time (ms), which each usage
    /// request moves to [`usage::ASKED_KEEPS_SAMPLING`] ahead: an agent
    /// nobody asks reads nothing.
    usage_wanted_until: u64,
    /// Slots for port-forwards, execs and exec sessions in flight; a
    /// permit is held for as long as the work runs.
    forwards: Arc<Semaphore>,
    execs: Arc<Semaphore>,
    sessions: Arc<Semaphore>,
    adopting: Adopting,
    /// Mounts the tmpfs of secret and `medium: Memory` volumes.
    mounter: Arc<dyn volumes::Mounter>,
    /// The ServiceAccount tokens of the pods' projected volumes.
    tokens: tokens::Tokens,
    /// The Services of the cluster (the process's shared cache), for the
    /// service env variables of containers; none: no such variables.
    services: Option<crate::runtime::Shared>,
    /// The `status.images` last written (written again only when changed).
    images_reported: Option<Value>,
}

impl<R: Runtime> NodeAgent<R> {
    /// Subscribe to the agent's request subject and build the actor.
    pub async fn new(
        client: Client,
        cfg: NodeConfig,
        runtime: R,
    ) -> Result<NodeAgent<R>, async_nats::SubscribeError> {
        let subject = |op| client.subjects().agent(&cfg.name, op);
        let (exec_subject, forward_subject, session_subject, usage_subject) = (
            subject(AgentOp::Exec),
            subject(AgentOp::PortForward),
            subject(AgentOp::ExecStream),
            subject(AgentOp::Usage),
        );
        let mut request_subs = Vec::new();
        for s in [
            subject(AgentOp::Logs),
            exec_subject.clone(),
            forward_subject.clone(),
            session_subject.clone(),
            usage_subject.clone(),
        ] {
            request_subs.push(client.nats().subscribe(s).await?);
        }
        let (exits_tx, exits_rx) = mpsc::channel(EXIT_QUEUE);
        Ok(NodeAgent {
            recorder: Recorder::new(client.clone(), "kubelet"),
            client,
            cfg,
            runtime: Arc::new(runtime),
            cache: Cache::default(),
            pods: HashMap::new(),
            exits_tx,
            exits_rx: Some(exits_rx),
            request_subs,
            exec_subject,
            forward_subject,
            session_subject,
            usage_subject,
            usage: usage::Tracker::default(),
            usage_at: (0, 0),
            usage_in_flight: false,
            usage_wanted_until: 0,
            forwards: Arc::new(Semaphore::new(FORWARDS_IN_FLIGHT_MAX)),
            execs: Arc::new(Semaphore::new(EXEC_IN_FLIGHT_MAX)),
            sessions: Arc::new(Semaphore::new(EXEC_SESSIONS_MAX)),
            adopting: Adopting::Waiting {
                leftovers: None,
                listed: false,
            },
            mounter: Arc::new(volumes::HostMounter),
            tokens: tokens::Tokens::default(),
            services: None,
            images_reported: None,
        })
    }

    /// Give containers the env variables of their namespace's Services,
    /// read from `services` (a shared Service cache).
    pub fn with_services(mut self, services: crate::runtime::Shared) -> Self {
        self.services = Some(services);
        self
    }

    /// Ask the runtime what an earlier run left (a bounded number of
    /// times), then adopt once the pods are listed too.
    fn find_leftovers(&mut self, attempt: u32, ctx: &mut Context<Self>) {
        let find = self.runtime.leftovers();
        ctx.spawn(find.into_actor(self).map(move |found, act, ctx| {
            let leftovers = match found {
                Ok(l) => l,
                Err(e) if attempt + 1 < LEFTOVERS_ATTEMPTS => {
                    warn!(error = %e, "cannot ask the runtime what an earlier run left; retrying");
                    ctx.run_later(LEFTOVERS_RETRY, move |act, ctx| {
                        act.find_leftovers(attempt + 1, ctx)
                    });
                    return;
                }
                Err(e) => {
                    error!(error = %e, attempts = LEFTOVERS_ATTEMPTS, "cannot ask the runtime what an earlier run left; adopting nothing");
                    Leftovers::default()
                }
            };
            if let Adopting::Waiting { leftovers: l, .. } = &mut act.adopting {
                *l = Some(leftovers);
            }
            act.adopt_when_ready(ctx);
        }));
    }

    /// Once both the leftovers and the pods are known: adopt what the plan
    /// keeps, remove the rest, then sync every pod as usual.
    fn adopt_when_ready(&mut self, ctx: &mut Context<Self>) {
        let Adopting::Waiting {
            leftovers: Some(_),
            listed: true,
        } = &self.adopting
        else {
            return;
        };
        let Adopting::Waiting {
            leftovers: Some(leftovers),
            ..
        } = std::mem::replace(&mut self.adopting, Adopting::Done)
        else {
            return;
        };
        let pods: Vec<Value> = self.cache.values().cloned().collect();
        let now = now_ms();
        let plan = adopt::plan(&leftovers, &pods, &self.cfg.name, now);
        let by_uid: HashMap<&str, &Value> = pods
            .iter()
            .filter_map(|p| Some((meta::uid(p)?, p)))
            .collect();
        let mut adopted = 0usize;
        for (uid, pp) in plan.pods {
            let Some(pod) = by_uid.get(uid.as_str()).map(|p| (*p).clone()) else {
                continue;
            };
            let adoption = Adoption {
                pod_dir: self.pod_dir(&pod),
                sandbox: pp.sandbox.clone(),
                running: pp
                    .containers
                    .values()
                    .filter_map(|r| r.running.clone())
                    .collect(),
                exited: pp
                    .containers
                    .values()
                    .filter_map(|r| r.exited.clone())
                    .collect(),
                pod: pod.clone(),
            };
            self.runtime.adopt(&adoption, self.exits_tx.clone());
            adopted += adoption.running.len();
            let mut states = BTreeMap::new();
            let mut probed = Vec::new();
            for (name, r) in pp.containers {
                let mut state = r.state;
                if let Some(id) = state.running.clone() {
                    state.arm_probes(self.app_probes(&pod, &name));
                    if r.ready {
                        state.readiness = state.readiness.map(|_| true);
                    }
                    if r.started && state.startup.is_some() {
                        state.startup = Some(true);
                        state.probes.remove(&ProbeKind::Startup);
                    }
                    let ran = now.saturating_sub(state.started_at_ms.unwrap_or(now));
                    probed.push((name.clone(), id, Duration::from_millis(ran)));
                }
                states.insert(name, state);
            }
            info!(pod = %crate::informer::key_of(&pod), containers = states.len(), "re-adopted the pod's containers");
            let mut entry = PodEntry::new(pod, pp.started_ms.unwrap_or(now));
            entry.states = states;
            // unchanged, it is not written again
            entry.last_reported = entry.pod.get("status").cloned();
            entry.pod_ip = pp.sandbox.and_then(|sb| sb.ip);
            entry.start_counted = true;
            crate::metrics::METRICS.running_pods.inc();
            self.pods.insert(uid.clone(), entry);
            for (name, id, ran) in probed {
                self.start_probes(&uid, &name, &id, Duration::ZERO, ran, ctx);
            }
        }
        self.remove_orphan_volumes(&pods);
        let removing = plan.remove_pods.len() + plan.remove_containers.len();
        info!(
            adopted,
            removing, "took over what an earlier run of this agent left"
        );
        if removing == 0 {
            self.adopted(ctx);
            return;
        }
        self.adopting = Adopting::Removing;
        let remove = self
            .runtime
            .remove_leftovers(plan.remove_pods, plan.remove_containers);
        ctx.spawn(remove.into_actor(self).map(|removed, act, ctx| {
            info!(removed, "removed what no pod owns any more");
            act.adopted(ctx);
        }));
    }

    /// Unmount and remove the volumes of pods deleted while the agent was
    /// away ([`adopt::orphan_pod_dirs`] decides), off the agent's thread.
    /// New pods have new directories, so nothing waits for this.
    fn remove_orphan_volumes(&self, pods: &[Value]) {
        let pods_dir = self.cfg.root.join("pods");
        let pods = pods.to_vec();
        let mounter = self.mounter.clone();
        tokio::task::spawn_blocking(move || {
            let names = match volumes::pod_dir_names(&pods_dir) {
                Ok(n) => n,
                Err(e) => {
                    warn!(error = %e, "cannot look for volumes of pods deleted meanwhile");
                    return;
                }
            };
            for name in adopt::orphan_pod_dirs(&names, &pods) {
                let dir = pods_dir.join(&name).join("volumes");
                match volumes::remove_pod_volumes(&dir, mounter.as_ref()) {
                    Ok(()) => {
                        debug!(pod_dir = %name, "removed the volumes of a pod gone meanwhile")
                    }
                    Err(e) => {
                        warn!(pod_dir = %name, error = %e, "cannot remove the volumes of a pod gone meanwhile")
                    }
                }
            }
        });
    }

    /// Adoption is over: sync every pod the cache holds now, and stop the
    /// adopted ones deleted meanwhile.
    fn adopted(&mut self, ctx: &mut Context<Self>) {
        self.adopting = Adopting::Done;
        let pods: Vec<Value> = self.cache.values().cloned().collect();
        let current: HashSet<String> = pods
            .iter()
            .filter_map(|p| meta::uid(p).map(str::to_string))
            .collect();
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|uid| !current.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            let Some(entry) = self.pods.get(&uid) else {
                continue;
            };
            let kill_at_ms = kill_at(&entry.pod);
            self.life_event(&uid, LifeEvent::Removed { kill_at_ms }, ctx);
        }
        for pod in pods {
            self.on_pod(pod, false, None, ctx);
        }
    }

    /// The probes of app container `name` as its spec defines them (none
    /// when the runtime runs no probes or the spec's are invalid).
    fn app_probes(&self, pod: &Value, name: &str) -> Vec<Probe> {
        if !self.runtime.runs_probes() {
            return Vec::new();
        }
        let found = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .enumerate()
                    .find(|(_, c)| c.get("name").and_then(Value::as_str) == Some(name))
            });
        let Some((index, container)) = found else {
            return Vec::new();
        };
        probe::parse_all(container, &format!("spec.containers[{index}]")).unwrap_or_else(|e| {
            warn!(container = name, error = %e, "probes not resumed");
            Vec::new()
        })
    }

    fn pod_dir(&self, pod: &Value) -> PathBuf {
        self.cfg.root.join("pods").join(format!(
            "{}_{}_{}",
            meta::namespace(pod).unwrap_or_default(),
            meta::name(pod).unwrap_or_default(),
            meta::uid(pod).unwrap_or_default()
        ))
    }

    fn register(&mut self, ctx: &mut Context<Self>) {
        let node = node_object(&self.cfg, &self.runtime.version());
        let client = self.client.clone();
        let name = self.cfg.name.clone();
        ctx.spawn(
            async move { client.apply(node).await }
                .into_actor(self)
                .map(move |res, _act, ctx| match res {
                    Ok((outcome, _)) => {
                        info!(node = %name, outcome = outcome.as_str(), "node registered")
                    }
                    Err(e) => {
                        warn!(node = %name, error = %e, "cannot register node; retrying");
                        ctx.run_later(REGISTER_RETRY, |act, ctx| act.register(ctx));
                    }
                }),
        );
    }

    /// Put the images the runtime holds into the Node's `status.images`
    /// (when they changed), as the kubelet reports them.
    fn report_images(&mut self, ctx: &mut Context<Self>) {
        let list = self.runtime.images();
        let client = self.client.clone();
        let node = kubus_api::ObjectRef::new(Kind::Node, None, &self.cfg.name);
        let last = self.images_reported.clone();
        ctx.spawn(
            async move {
                let images = match list.await {
                    Ok(i) if !i.is_empty() => i,
                    Ok(_) => return None,
                    Err(e) => {
                        debug!(error = %e, "cannot list images");
                        return None;
                    }
                };
                let status = node_images(images);
                if last.as_ref() == Some(&status) {
                    return None;
                }
                match client
                    .patch(&node, json!({"status": {"images": status}}))
                    .await
                {
                    Ok(_) => Some(status),
                    Err(e) => {
                        debug!(error = %e, "cannot write the node's images");
                        None
                    }
                }
            }
            .into_actor(self)
            .map(|written, act, _| {
                if let Some(status) = written {
                    act.images_reported = Some(status);
                }
            }),
        );
    }

    /// Renew this node's Lease (`kube-node-lease/<node>`), creating it
    /// the first time: the node lifecycle controller's sign of life.
    fn renew_lease(&mut self, ctx: &mut Context<Self>) {
        let client = self.client.clone();
        let name = self.cfg.name.clone();
        ctx.spawn(
            async move {
                let now = kubus_api::lifecycle::format_micro_time(jiff::Timestamp::now());
                let r = kubus_api::ObjectRef::new(Kind::Lease, Some(crate::nodelifecycle::NODE_LEASE_NAMESPACE), &name);
                let renewed = client.patch(&r, json!({"spec": {"renewTime": now}})).await;
                match renewed {
                    Ok(_) => {}
                    Err(e) if e.reason() == Some(Reason::NotFound) => {
                        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                            "metadata": {"name": name, "namespace": crate::nodelifecycle::NODE_LEASE_NAMESPACE},
                            "spec": {"holderIdentity": name, "leaseDurationSeconds": NODE_LEASE_DURATION_SECS,
                                "renewTime": now}});
                        if let Err(e) = client.create(lease).await {
                            debug!(error = %e, "cannot create the node's lease");
                        }
                    }
                    Err(e) => debug!(error = %e, "cannot renew the node's lease"),
                }
            }
            .into_actor(self),
        );
    }

    fn on_pod(&mut self, pod: Value, deleted: bool, trace: Option<&str>, ctx: &mut Context<Self>) {
        let Some(uid) = meta::uid(&pod).map(str::to_string) else {
            return;
        };
        if deleted {
            self.on_pod_removed(&uid, &pod, ctx);
            return;
        }
        if kubus_api::lifecycle::deletion_deadline(&pod).is_some() {
            self.on_pod_terminating(&uid, pod, ctx);
            return;
        }
        match self.pods.get_mut(&uid) {
            Some(entry) => {
                self.runtime.pod_updated(&pod);
                entry.pod = pod;
            }
            None => {
                let key = crate::informer::key_of(&pod);
                info!(pod = %key, "pod assigned to this node");
                self.runtime.pod_updated(&pod);
                let mut entry = PodEntry::new(pod, now_ms());
                if trace.is_some() {
                    entry.span = kubus_bus::trace_span!("agent.pod_start", pod = %key, node = %self.cfg.name);
                    kubus_bus::trace::adopt(&entry.span, trace);
                }
                self.pods.insert(uid.clone(), entry);
            }
        }
        self.sync_pod(&uid, ctx);
    }

    /// The pod is gone from the store: stop what still runs (a pod
    /// removed at once gets its spec's grace), or, stopped already, forget
    /// it.
    fn on_pod_removed(&mut self, uid: &str, pod: &Value, ctx: &mut Context<Self>) {
        let kill_at_ms = kill_at(pod);
        self.life_event(uid, LifeEvent::Removed { kill_at_ms }, ctx);
    }

    /// Move a pod's [`Life`] on by `event` and do what that asks.
    fn life_event(&mut self, uid: &str, event: LifeEvent, ctx: &mut Context<Self>) {
        let Some(entry) = self.pods.get_mut(uid) else {
            return;
        };
        let (life, action) = entry.life.on(event);
        entry.life = life;
        let grace = match life {
            Life::Stopping { kill_at_ms, .. } => {
                Duration::from_millis(kill_at_ms.saturating_sub(now_ms()))
            }
            _ => Duration::ZERO,
        };
        match action {
            LifeAction::Nothing => {}
            LifeAction::Stop => self.terminate(uid, grace, ctx),
            LifeAction::StopSooner => {
                info!(pod = %crate::informer::key_of(&entry.pod), grace_ms = grace.as_millis() as u64, "grace period shortened");
                let stops = stop_running(self.runtime.as_ref(), &entry.states, grace);
                ctx.spawn(
                    async move {
                        join_all(stops).await;
                    }
                    .into_actor(self),
                );
            }
            LifeAction::Finish => self.finish(uid, 0, ctx),
            LifeAction::Forget => {
                if self.pods.remove(uid).is_some_and(|e| e.start_counted) {
                    crate::metrics::METRICS.running_pods.dec();
                }
                self.tokens.forget(uid);
            }
        }
    }

    /// The pod is being deleted gracefully: stop its containers within the
    /// time left (sooner when a later delete shortened it); once stopped,
    /// [`Self::finish`] writes its last status and removes it. A pod this
    /// agent never ran (or no longer knows, after a restart) is removed at
    /// once.
    fn on_pod_terminating(&mut self, uid: &str, pod: Value, ctx: &mut Context<Self>) {
        let now = now_ms();
        let kill_at_ms = kill_at(&pod);
        let entry = self
            .pods
            .entry(uid.to_string())
            .or_insert_with(|| PodEntry::new(pod.clone(), now));
        entry.pod = pod;
        // a later delete may shorten the grace: stop again, sooner
        self.life_event(uid, LifeEvent::Terminate { kill_at_ms }, ctx);
    }

    fn sync_pod(&mut self, uid: &str, ctx: &mut Context<Self>) {
        let now = now_ms();
        let Some(entry) = self.pods.get(uid) else {
            return;
        };
        if !entry.life.is_running() {
            return;
        }
        let pod = entry.pod.clone();
        let dir = self.pod_dir(&pod);
        let mut steps = pod::steps(&pod, &entry.states, now);
        let starts = steps.iter().any(|s| matches!(s, Step::Start { .. }));
        if starts
            && entry.prepared_ms.is_none()
            && !self.runtime.prepares_pods()
            && !config::has_sources_or_volumes(&pod)
        {
            // nothing to fetch, write or set up: no round trip
            if let Some(e) = self.pods.get_mut(uid) {
                e.prepared_ms = Some(u64::MAX);
            }
        }
        let Some(entry) = self.pods.get(uid) else {
            return;
        };
        // A start reads again what env takes; volumes were written at the
        // first start and the live refresh keeps them (a pod whose env
        // takes nothing restarts without the store: a bus outage does not
        // hold its restarts back)
        let prepared = pod::prepared(entry.prepared_ms, now)
            || (entry.prepared_ms.is_some()
                && entry.volumes.is_ok()
                && config::env_references(&pod).is_empty());
        if starts && (entry.preparing || entry.refreshing || !prepared) {
            // ConfigMaps, Secrets, volumes and sandbox first; this pod is
            // synced again when they are ready
            self.prepare(uid, ctx);
            steps.retain(|s| matches!(s, Step::WakeAt(_)));
        }
        for step in steps {
            match step {
                Step::Start { container, init } => {
                    if let Some((t, reason, message)) =
                        self.start_container(uid, &pod, &dir, &container, init, now, ctx)
                    {
                        self.recorder.record(&pod, t, reason, &message);
                    }
                }
                Step::WakeAt(at) => {
                    let Some(entry) = self.pods.get_mut(uid) else {
                        continue;
                    };
                    if entry.wake_at.is_some_and(|w| w <= at && w > now) {
                        continue;
                    }
                    entry.wake_at = Some(at);
                    let uid = uid.to_string();
                    ctx.run_later(
                        Duration::from_millis(at.saturating_sub(now)),
                        move |act, ctx| {
                            if let Some(e) = act.pods.get_mut(&uid) {
                                e.wake_at = None;
                            }
                            act.sync_pod(&uid, ctx);
                        },
                    );
                }
            }
        }
        // a container started with a start-up delay: report it when it is up
        let delay = self.runtime.ready_delay();
        let pending = self.pods.get(uid).is_some_and(|e| {
            e.states
                .values()
                .any(|s| s.running.is_some() && !pod::is_up(s, now))
        });
        if pending && !delay.is_zero() {
            let uid = uid.to_string();
            ctx.run_later(delay, move |act, ctx| act.sync_pod(&uid, ctx));
        }
        self.report_status(uid, ctx);
    }

    /// Start one container; returns the Event to record.
    #[allow(clippy::too_many_arguments)]
    fn start_container(
        &mut self,
        uid: &str,
        pod: &Value,
        dir: &std::path::Path,
        name: &str,
        init: bool,
        now: u64,
        ctx: &mut Context<Self>,
    ) -> Option<(EventType, &'static str, String)> {
        let field = if init { "initContainers" } else { "containers" };
        let (index, container) = pod
            .pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .enumerate()
                    .find(|(_, c)| c.get("name").and_then(Value::as_str) == Some(name))
            })
            .map(|(i, c)| (i, c.clone()))
            .unwrap_or((0, Value::Null));
        let probes = if init || !self.runtime.runs_probes() {
            Ok(Vec::new())
        } else {
            probe::parse_all(&container, &format!("spec.{field}[{index}]"))
        };
        let at = format!("spec.{field}[{index}]");
        let entry = self.pods.get_mut(uid)?;
        let span = entry.span.clone();
        let service_env = match &self.services {
            Some(cache) => {
                use kubus_api::service::{API_SERVICE_NAME, API_SERVICE_NAMESPACE};
                let cache = cache.read();
                let ns = meta::namespace(pod).unwrap_or("default");
                let links = pod.pointer("/spec/enableServiceLinks") != Some(&Value::Bool(false));
                let api = cache
                    .cache
                    .get(&format!("{API_SERVICE_NAMESPACE}/{API_SERVICE_NAME}"));
                let svcs =
                    kubus_api::service::env_services(ns, links, cache.cache.in_namespace(ns), api);
                kubus_api::service::env_for(&svcs)
            }
            None => Vec::new(),
        };
        let facts = config::PodFacts {
            host_ip: &self.cfg.host_ip,
            pod_ip: entry.pod_ip.as_deref().unwrap_or(&self.cfg.host_ip),
            service_env: &service_env,
        };
        let env = config::container_env(pod, &container, &at, facts, &entry.sources);
        let mounts = entry
            .volumes
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|v| config::mounts(&container, &at, v));
        let state = entry.states.entry(name.to_string()).or_default();
        let restarts = state.restarts + u32::from(state.last_exit.is_some());
        let setup = probes
            .map_err(|e| e.to_string())
            .and_then(|p| Ok((p, env?, mounts?)));
        let (probes, env, mounts) = match setup {
            Ok(s) => s,
            Err(e) => {
                // tried again (with ConfigMaps and Secrets fetched anew)
                // after a pause
                let message = format!("container {name:?}: {e}");
                state.waiting = Some((pod::CONFIG_ERROR.into(), message.clone()));
                state.not_before_ms = now + pod::CONFIG_RETRY.as_millis() as u64;
                return Some((EventType::Warning, "Failed", format!("Error: {message}")));
            }
        };
        let spec = ContainerSpec {
            pod_uid: uid.to_string(),
            namespace: meta::namespace(pod).unwrap_or_default().to_string(),
            pod: meta::name(pod).unwrap_or_default().to_string(),
            container: name.to_string(),
            command: strings(container.get("command"))
                .iter()
                .map(|a| config::expand(a, &env))
                .collect(),
            args: strings(container.get("args"))
                .iter()
                .map(|a| config::expand(a, &env))
                .collect(),
            env,
            working_dir: container
                .get("workingDir")
                .and_then(Value::as_str)
                .map(str::to_string),
            log_path: dir.join(name).join(format!("{restarts}.log")),
            mounts,
            stdin: flag(&container, "stdin"),
            stdin_once: flag(&container, "stdinOnce"),
            tty: flag(&container, "tty"),
        };
        match span.in_scope(|| self.runtime.start(&spec, self.exits_tx.clone())) {
            Ok(id) => {
                debug!(pod = %spec.pod, container = name, %id, "container started");
                state.restarts = restarts;
                state.replace = false;
                state.running = Some(id.clone());
                let delay = self.runtime.ready_delay();
                state.started_at_ms = Some(now + delay.as_millis() as u64);
                state.waiting = None;
                state.arm_probes(probes);
                // probed from when it runs: now, or when the runtime says
                state.starting = self.runtime.reports_progress();
                if !state.starting {
                    self.start_probes(uid, name, &id, delay, Duration::ZERO, ctx);
                }
                // a runtime that reports its own steps says when it started
                (!self.runtime.reports_progress()).then(|| {
                    (
                        EventType::Normal,
                        "Started",
                        format!("Started container {name}"),
                    )
                })
            }
            Err(RuntimeError::Invalid { reason, message }) => {
                warn!(pod = %spec.pod, container = name, %message, "container cannot run");
                state.waiting = Some((reason.to_string(), message.clone()));
                Some((EventType::Warning, "Failed", format!("Error: {message}")))
            }
            Err(e) => {
                warn!(pod = %spec.pod, container = name, error = %e, "container start failed");
                state.started_at_ms = Some(now);
                pod::record_exit(state, 128, "StartError", now);
                Some((EventType::Warning, "Failed", format!("Error: {e}")))
            }
        }
    }

    /// Fetch the pod's ConfigMaps and Secrets, write its volumes and get
    /// its sandbox ready, then sync it again.
    fn prepare(&mut self, uid: &str, ctx: &mut Context<Self>) {
        let Some(entry) = self.pods.get_mut(uid) else {
            return;
        };
        // a refresh in flight syncs the pod again when it is done
        if entry.preparing || entry.refreshing {
            return;
        }
        entry.preparing = true;
        let pod = entry.pod.clone();
        let span = kubus_bus::trace_span!(child_of: &entry.span, "agent.prepare");
        let dir = self.pod_dir(&pod);
        let client = self.client.clone();
        let sandbox = self.runtime.prepare_pod(uid, &dir);
        let binds = self.runtime.binds_volumes();
        let mounter = self.mounter.clone();
        let tokens = self.tokens.clone();
        let work = async move {
            let namespace = meta::namespace(&pod).unwrap_or("default").to_string();
            let sources = fetch_sources(
                &client,
                &namespace,
                config::references(&pod),
                claims_of(&pod),
            )
            .await
            .map(|s| (s, tokens));
            let sources = match sources {
                Ok((mut s, tokens)) => {
                    s.tokens = tokens.of(&client, &pod, now_ms()).await;
                    Ok(s)
                }
                Err(e) => Err(e),
            };
            let volumes = match &sources {
                // a runtime whose containers see no volumes gets none made
                Ok(s) => match config::plan_volumes(&pod, s, &dir) {
                    Ok(plan) if binds => {
                        let written = plan.clone();
                        tokio::task::spawn_blocking(move || {
                            volumes::write(&written, mounter.as_ref()).map_err(|e| e.to_string())
                        })
                        .await
                        .unwrap_or_else(|e| Err(format!("volume writer failed: {e}")))
                        .map(|()| plan)
                    }
                    other => other,
                },
                Err(_) => Ok(Vec::new()),
            };
            (sources, volumes, sandbox.await)
        }
        .instrument(span);
        let uid = uid.to_string();
        ctx.spawn(work.into_actor(self).map(move |(sources, volumes, ip), act, ctx| {
            let Some(entry) = act.pods.get_mut(&uid) else {
                return;
            };
            entry.preparing = false;
            match ip {
                Ok(Some(ip)) => entry.pod_ip = Some(ip),
                Ok(None) => {}
                // the container start tries again and reports it
                Err(e) => warn!(pod = %crate::informer::key_of(&entry.pod), error = %e, "pod sandbox not ready"),
            }
            match sources {
                Ok(s) => {
                    if let Err(e) = &volumes {
                        let pod = entry.pod.clone();
                        act.recorder.record(&pod, EventType::Warning, "FailedMount", e);
                    }
                    let Some(entry) = act.pods.get_mut(&uid) else {
                        return;
                    };
                    entry.sources = s;
                    entry.volumes = volumes;
                    entry.prepared_ms = Some(now_ms());
                    entry.refreshed_ms = now_ms();
                    act.sync_pod(&uid, ctx);
                }
                Err(e) => {
                    debug!(error = %e, "cannot fetch the pod's ConfigMaps and Secrets; retrying");
                    ctx.run_later(PREPARE_RETRY, move |act, ctx| act.sync_pod(&uid, ctx));
                }
            }
        }));
    }

    /// Start the live refreshes of configMap and secret volumes that are
    /// due ([`refresh::due`] decides, within its in-flight bound).
    fn refresh_volumes(&mut self, ctx: &mut Context<Self>) {
        if !matches!(self.adopting, Adopting::Done) {
            return;
        }
        let binds = self.runtime.binds_volumes();
        let views: Vec<refresh::PodView> = self
            .pods
            .iter()
            .map(|(uid, e)| refresh::PodView {
                uid: uid.clone(),
                file_volumes: !config::volume_references(&e.pod).is_empty()
                    || (binds && !config::token_requests(&e.pod).is_empty()),
                running: e.states.values().any(|s| s.running.is_some()),
                busy: e.preparing || e.life.is_terminating(),
                refreshing: e.refreshing,
                refreshed_ms: e.refreshed_ms,
            })
            .collect();
        let due = refresh::due(
            &views,
            now_ms(),
            refresh::REFRESH_PERIOD,
            refresh::REFRESH_IN_FLIGHT_MAX,
        );
        for uid in due {
            self.refresh_pod(&uid, ctx);
        }
    }

    /// Read a running pod's volume ConfigMaps and Secrets again and write
    /// the volumes whose files changed as new versions (an atomic swap the
    /// containers see at once). When the sources cannot be read or planned
    /// (e.g. a ConfigMap deleted), the files stay as they are, as in
    /// Kubernetes, and the reason is recorded once as a FailedMount Event.
    fn refresh_pod(&mut self, uid: &str, ctx: &mut Context<Self>) {
        let Some(entry) = self.pods.get_mut(uid) else {
            return;
        };
        entry.refreshing = true;
        let pod = entry.pod.clone();
        let written: Vec<config::PlannedVolume> = entry.volumes.clone().unwrap_or_default();
        let dir = self.pod_dir(&pod);
        let client = self.client.clone();
        let mounter = self.mounter.clone();
        let tokens = self.tokens.clone();
        let work = async move {
            let namespace = meta::namespace(&pod).unwrap_or("default").to_string();
            let mut sources = fetch_sources(
                &client,
                &namespace,
                config::volume_references(&pod),
                claims_of(&pod),
            )
            .await?;
            // held tokens are written again as they are; due ones renewed
            sources.tokens = tokens.of(&client, &pod, now_ms()).await;
            let plan = config::plan_volumes(&pod, &sources, &dir)?;
            let changed: Vec<config::PlannedVolume> = config::changed_files(&written, &plan)
                .into_iter()
                .cloned()
                .collect();
            if changed.is_empty() {
                return Ok((plan, Vec::new()));
            }
            let to_write = changed.clone();
            let names: Vec<String> = tokio::task::spawn_blocking(move || {
                let mut swapped = Vec::new();
                for v in &to_write {
                    // unchanged on disk (e.g. first refresh after the agent
                    // restarted): no new version
                    if volumes::write_volume(v, mounter.as_ref()).map_err(|e| e.to_string())? {
                        swapped.push(v.name.clone());
                    }
                }
                Ok::<_, String>(swapped)
            })
            .await
            .unwrap_or_else(|e| Err(format!("volume writer failed: {e}")))?;
            Ok::<_, String>((plan, names))
        };
        let uid = uid.to_string();
        ctx.spawn(work.into_actor(self).map(move |done, act, ctx| {
            let Some(entry) = act.pods.get_mut(&uid) else {
                return;
            };
            entry.refreshing = false;
            entry.refreshed_ms = now_ms();
            match done {
                Ok((plan, names)) => {
                    entry.refresh_error = None;
                    if !names.is_empty() {
                        info!(pod = %crate::informer::key_of(&entry.pod), volumes = ?names, "volume files refreshed");
                    }
                    // what a container started from now on is given
                    entry.volumes = Ok(plan);
                }
                Err(e) if entry.refresh_error.as_deref() != Some(e.as_str()) => {
                    warn!(pod = %crate::informer::key_of(&entry.pod), error = %e, "cannot refresh the pod's volumes; they stay as they are");
                    entry.refresh_error = Some(e.clone());
                    let pod = entry.pod.clone();
                    act.recorder
                        .record(&pod, EventType::Warning, "FailedMount", &e);
                }
                Err(_) => {}
            }
            // a start held back while this ran goes on now
            act.sync_pod(&uid, ctx);
        }));
    }

    /// Begin the probe loops of a container that runs now (or after
    /// `delay`), and has run for `ran` (an adopted one: its probes' initial
    /// delays may be over).
    fn start_probes(
        &mut self,
        uid: &str,
        name: &str,
        id: &str,
        delay: Duration,
        ran: Duration,
        ctx: &mut Context<Self>,
    ) {
        let specs = self
            .pods
            .get(uid)
            .and_then(|e| e.states.get(name))
            .map(|s| s.probe_specs.clone())
            .unwrap_or_default();
        for p in specs {
            let after = (delay + p.initial_delay).saturating_sub(ran);
            self.schedule_probe(uid, name, id, p, after, ctx);
        }
    }

    fn schedule_probe(
        &mut self,
        uid: &str,
        name: &str,
        id: &str,
        p: Probe,
        after: Duration,
        ctx: &mut Context<Self>,
    ) {
        let (uid, name, id) = (uid.to_string(), name.to_string(), id.to_string());
        ctx.run_later(after, move |act, ctx| act.run_probe(uid, name, id, p, ctx));
    }

    /// The container's state, if `id` is still its running container and
    /// the probe of `kind` is still armed (a probe loop ends when not).
    fn probed(
        &mut self,
        uid: &str,
        name: &str,
        id: &str,
        kind: ProbeKind,
    ) -> Option<&mut PodEntry> {
        let entry = self.pods.get_mut(uid).filter(|e| e.life.is_running())?;
        let state = entry.states.get(name)?;
        (state.running.as_deref() == Some(id) && state.probes.contains_key(&kind)).then_some(entry)
    }

    fn run_probe(
        &mut self,
        uid: String,
        name: String,
        id: String,
        p: Probe,
        ctx: &mut Context<Self>,
    ) {
        let host_ip = self.cfg.host_ip.clone();
        let Some(entry) = self.probed(&uid, &name, &id, p.kind) else {
            return;
        };
        let ip = entry.pod_ip.clone().unwrap_or(host_ip);
        let runs = entry
            .states
            .get(&name)
            .is_some_and(|s| pod::is_up(s, now_ms()) && probe::runs(p.kind, s.startup));
        if !runs {
            let period = p.period;
            self.schedule_probe(&uid, &name, &id, p, period, ctx);
            return;
        }
        let run = prober::run(&self.runtime, &id, &ip, &p);
        ctx.spawn(
            run.into_actor(self)
                .map(move |outcome, act, ctx| act.on_probe(uid, name, id, p, outcome, ctx)),
        );
    }

    fn on_probe(
        &mut self,
        uid: String,
        name: String,
        id: String,
        p: Probe,
        outcome: prober::Outcome,
        ctx: &mut Context<Self>,
    ) {
        let Some(entry) = self.probed(&uid, &name, &id, p.kind) else {
            return;
        };
        let pod = entry.pod.clone();
        let Some(state) = entry.states.get_mut(&name) else {
            return;
        };
        let Some(tracker) = state.probes.get_mut(&p.kind) else {
            return;
        };
        let reported = probe::record(&p, tracker, outcome.is_ok());
        let decision = probe::decide(p.kind, reported);
        let changed = match decision {
            Decision::Keep => false,
            Decision::Ready(r) => state.readiness.replace(r) != Some(r),
            Decision::Started => {
                state.startup = Some(true);
                state.probes.remove(&ProbeKind::Startup);
                true
            }
            Decision::Restart => {
                // no more probes for this container; it restarts when its
                // exit is seen, as the restartPolicy says
                state.probes.clear();
                state.readiness = state.readiness.map(|_| false);
                true
            }
        };
        if let Err(message) = &outcome {
            debug!(pod = %meta::name(&pod).unwrap_or_default(), container = %name, kind = ?p.kind, %message, "probe failed");
            self.recorder.record(
                &pod,
                EventType::Warning,
                "Unhealthy",
                &format!("{} probe failed: {message}", p.kind.title()),
            );
        }
        if decision == Decision::Restart {
            info!(pod = %meta::name(&pod).unwrap_or_default(), container = %name, kind = ?p.kind, "probe failed: killing the container");
            self.recorder.record(
                &pod,
                EventType::Normal,
                "Killing",
                &format!(
                    "Container {name} failed {} probe, will be restarted",
                    p.kind.title().to_lowercase()
                ),
            );
            let grace = p.termination_grace.map_or_else(
                || pod::stop_grace(&pod, now_ms(), GRACE_MAX),
                |g| g.min(GRACE_MAX),
            );
            let stop = self.runtime.stop(&id, grace);
            ctx.spawn(stop.into_actor(self));
        }
        if changed {
            self.report_status(&uid, ctx);
        }
        if matches!(decision, Decision::Restart | Decision::Started) {
            return;
        }
        let period = p.period;
        self.schedule_probe(&uid, &name, &id, p, period, ctx);
    }

    /// The image a container of `pod` runs.
    fn container_image(&self, pod: &Value, container: &str) -> String {
        ["containers", "initContainers"]
            .iter()
            .flat_map(|f| pod["spec"][*f].as_array().into_iter().flatten())
            .find(|c| c["name"] == container)
            .and_then(|c| c["image"].as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// A container still waiting on a failed pull now waits in
    /// `ImagePullBackOff` until its next try.
    fn show_image_backoff(
        &mut self,
        uid: &str,
        container: &str,
        image: &str,
        ctx: &mut Context<Self>,
    ) {
        let Some(state) = self
            .pods
            .get_mut(uid)
            .and_then(|e| e.states.get_mut(container))
        else {
            return;
        };
        let pulling_failed = state
            .waiting
            .as_ref()
            .is_some_and(|(r, _)| r == "ErrImagePull");
        if !pulling_failed || state.running.is_some() {
            return;
        }
        state.waiting = Some((
            pod::IMAGE_PULL_BACKOFF.to_string(),
            format!("Back-off pulling image \"{image}\""),
        ));
        if let Some(pod) = self.pods.get(uid).map(|e| e.pod.clone()) {
            self.recorder.record(
                &pod,
                EventType::Normal,
                "BackOff",
                &format!("Back-off pulling image \"{image}\""),
            );
        }
        self.report_status(uid, ctx);
    }

    fn report_status(&mut self, uid: &str, ctx: &mut Context<Self>) {
        let now = now_ms();
        let Some(entry) = self.pods.get_mut(uid) else {
            return;
        };
        let mut status = pod::status(
            &entry.pod,
            &entry.states,
            &self.cfg.host_ip,
            entry.started_ms,
            now,
        );
        if let Some(ip) = &entry.pod_ip {
            pod::set_pod_ip(&mut status, ip);
        }
        if entry.last_reported.as_ref() == Some(&status) || entry.life.is_terminating() {
            return;
        }
        if entry.status_in_flight {
            entry.status_dirty = true;
            return;
        }
        let key = crate::informer::key_of(&entry.pod);
        let mut pod = self
            .cache
            .get(&key)
            .cloned()
            .unwrap_or_else(|| entry.pod.clone());
        // keep conditions the scheduler wrote (and timestamps that did not move)
        if let Some(root) = pod.as_object_mut() {
            root.insert("status".into(), status.clone());
        }
        entry.status_in_flight = true;
        entry.status_dirty = false;
        let client = self.client.clone();
        let uid = uid.to_string();
        ctx.spawn(
            async move { client.update(pod).await }
                .instrument(entry.span.clone())
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let Some(entry) = act.pods.get_mut(&uid) else {
                        return;
                    };
                    entry.status_in_flight = false;
                    match res {
                        Ok(updated) => {
                            if !entry.start_counted && status["phase"] == "Running" {
                                entry.start_counted = true;
                                // the start's span ends with its report
                                entry.span = Span::none();
                                let m = &crate::metrics::METRICS;
                                m.running_pods.inc();
                                let took = now_ms().saturating_sub(entry.started_ms);
                                m.pod_start_duration.observe(took as f64 / 1000.0);
                            }
                            entry.last_reported = Some(status);
                            act.cache.assume(updated);
                            if entry.status_dirty {
                                act.report_status(&uid, ctx);
                            }
                        }
                        Err(e) if e.reason() == Some(Reason::NotFound) => {}
                        Err(e) => {
                            debug!(error = %e, "status write failed; retrying");
                            ctx.run_later(STATUS_RETRY, move |act, ctx| {
                                act.report_status(&uid, ctx)
                            });
                        }
                    }
                }),
        );
    }

    /// Stop the pod's containers (SIGTERM, SIGKILL after `grace`) and
    /// release what it holds; then [`Self::stopped`]. Only
    /// [`Self::life_event`] calls it, once per pod (`Running` → `Stopping`).
    fn terminate(&mut self, uid: &str, grace: Duration, ctx: &mut Context<Self>) {
        let Some(entry) = self.pods.get_mut(uid) else {
            return;
        };
        info!(pod = %crate::informer::key_of(&entry.pod), grace_ms = grace.as_millis() as u64, "stopping pod");
        let pod = entry.pod.clone();
        let running: Vec<String> = entry
            .states
            .iter()
            .filter(|(_, s)| s.running.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        let stops = stop_running(self.runtime.as_ref(), &entry.states, grace);
        for name in running {
            let message = format!("Stopping container {name}");
            self.recorder
                .record(&pod, EventType::Normal, "Killing", &message);
        }
        let stop_pod = self.runtime.stop_pod(uid);
        let uid = uid.to_string();
        // the pod's volumes go with it (emptyDir data, configMap and secret
        // files; hostPath volumes live elsewhere and stay)
        let volumes = self.pod_dir(&pod).join("volumes");
        let mounter = self.mounter.clone();
        let stopped = async move {
            join_all(stops).await;
            stop_pod.await;
            let removed = tokio::task::spawn_blocking(move || {
                if let Err(e) = volumes::remove_pod_volumes(&volumes, mounter.as_ref()) {
                    warn!(path = %volumes.display(), error = %e, "cannot remove the pod's volumes");
                }
            });
            let _ = removed.await;
        };
        ctx.spawn(
            stopped
                .into_actor(self)
                .map(move |_, act, ctx| act.stopped(&uid, ctx)),
        );
    }

    /// Every container of the pod has stopped: forget a pod that is gone,
    /// finish one deleted gracefully.
    fn stopped(&mut self, uid: &str, ctx: &mut Context<Self>) {
        self.life_event(uid, LifeEvent::Stopped, ctx);
    }

    /// A pod deleted gracefully has stopped: once its exits are in (a
    /// bounded wait), write its last status, then remove it with grace 0
    /// and a precondition on its uid. Both go through the store; the entry
    /// goes when the removal is seen.
    fn finish(&mut self, uid: &str, poll: u32, ctx: &mut Context<Self>) {
        let Some(entry) = self.pods.get_mut(uid) else {
            return;
        };
        if entry.life != Life::Finishing || entry.finishing {
            return;
        }
        let exits_due = entry.states.values().any(|s| s.running.is_some());
        if exits_due && poll < FINAL_EXIT_POLLS {
            let uid = uid.to_string();
            ctx.run_later(FINAL_EXIT_POLL, move |act, ctx| {
                act.finish(&uid, poll + 1, ctx)
            });
            return;
        }
        entry.finishing = true;
        let key = crate::informer::key_of(&entry.pod);
        let Some(r) = meta::object_ref(&entry.pod) else {
            return;
        };
        // nothing ran here: no status to tell
        let last = (!entry.states.is_empty()).then(|| {
            let mut st = pod::final_status(
                &entry.pod,
                &entry.states,
                &self.cfg.host_ip,
                entry.started_ms,
                now_ms(),
            );
            if let Some(ip) = &entry.pod_ip {
                pod::set_pod_ip(&mut st, ip);
            }
            st
        });
        let current = self.cache.get(&key).cloned().unwrap_or(entry.pod.clone());
        let client = self.client.clone();
        let pod_uid = uid.to_string();
        ctx.spawn(
            async move {
                if let Some(status) = last {
                    write_final_status(&client, &r, current, status).await;
                }
                remove_pod(&client, &r, &pod_uid).await
            }
            .into_actor(self)
            .map(move |res, _act, _ctx| match res {
                Ok(()) => info!(pod = %key, "pod stopped and removed"),
                Err(e) => error!(pod = %key, error = %e, "cannot remove the stopped pod; it stays Terminating"),
            }),
        );
    }

    fn on_exit(&mut self, exit: Exited, ctx: &mut Context<Self>) {
        let Some(entry) = self.pods.get_mut(&exit.pod_uid) else {
            return;
        };
        let Some(state) = entry.states.get_mut(&exit.container) else {
            return;
        };
        if state.running.as_deref() != Some(exit.id.as_str()) {
            return;
        }
        info!(pod = %meta::name(&entry.pod).unwrap_or_default(), container = %exit.container, code = exit.code, "container exited");
        let now = now_ms();
        pod::record_exit(state, exit.code, &exit.reason, now);
        if entry.life.is_terminating() {
            return;
        }
        let backoff = state.not_before_ms > now
            && pod::should_restart(pod::restart_policy(&entry.pod), exit.code);
        if backoff {
            let pod = entry.pod.clone();
            let message = format!(
                "Back-off restarting failed container {} in pod {}",
                exit.container,
                meta::name(&pod).unwrap_or_default()
            );
            self.recorder
                .record(&pod, EventType::Warning, "BackOff", &message);
        }
        let uid = exit.pod_uid.clone();
        self.sync_pod(&uid, ctx);
    }

    fn on_runtime_event(&mut self, event: RuntimeEvent, ctx: &mut Context<Self>) {
        match event {
            RuntimeEvent::Progress {
                pod_uid,
                container,
                id,
                reason,
                message,
            } => {
                let Some(entry) = self.pods.get_mut(&pod_uid).filter(|e| e.life.is_running())
                else {
                    return;
                };
                debug!(pod = %meta::name(&entry.pod).unwrap_or_default(), %container, reason, "container progress");
                let pod = entry.pod.clone();
                let now_running = reason == "Started"
                    && entry.states.get_mut(&container).is_some_and(|s| {
                        let this = s.running.as_deref() == Some(id.as_str()) && s.starting;
                        if this {
                            s.starting = false;
                            s.started_at_ms = Some(now_ms());
                            s.start_backoff = Duration::ZERO;
                        }
                        this
                    });
                self.recorder
                    .record(&pod, EventType::Normal, reason, &message);
                if now_running {
                    self.start_probes(
                        &pod_uid,
                        &container,
                        &id,
                        Duration::ZERO,
                        Duration::ZERO,
                        ctx,
                    );
                    self.report_status(&pod_uid, ctx);
                }
            }
            RuntimeEvent::PodNetwork { pod_uid, ip } => {
                if let Some(entry) = self.pods.get_mut(&pod_uid) {
                    entry.pod_ip = Some(ip);
                    self.report_status(&pod_uid, ctx);
                }
            }
            RuntimeEvent::StartFailed {
                pod_uid,
                container,
                id,
                reason,
                message,
            } => {
                let Some(entry) = self.pods.get_mut(&pod_uid) else {
                    return;
                };
                let Some(state) = entry.states.get_mut(&container) else {
                    return;
                };
                if state.running.as_deref() != Some(id.as_str()) {
                    return;
                }
                // never ran: no restart counted; retried after a backoff,
                // waiting with the reason
                pod::record_start_failure(state, &reason, &message, now_ms());
                let pod = entry.pod.clone();
                if entry.life.is_terminating() {
                    return;
                }
                self.recorder.record(
                    &pod,
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {message}"),
                );
                if reason == "ErrImagePull" {
                    // as the kubelet: the next look says it is backing off
                    let image = self.container_image(&pod, &container);
                    let uid = pod_uid.clone();
                    ctx.run_later(IMAGE_BACKOFF_SHOWN_AFTER, move |this, ctx| {
                        this.show_image_backoff(&uid, &container, &image, ctx);
                    });
                }
                self.sync_pod(&pod_uid, ctx);
            }
        }
    }

    /// Answer a request on one of the agent's subjects (logs, exec).
    fn serve(&mut self, msg: NatsMessage, ctx: &mut Context<Self>) {
        let Some(reply_to) = msg.reply.clone() else {
            return;
        };
        // an answer aimed anywhere but an inbox would be published with
        // this node's rights: a requester's spoof
        if !kubus_bus::auth::is_inbox(reply_to.as_str()) {
            warn!(subject = %msg.subject, reply = %reply_to, "request with a reply subject that is not an inbox dropped");
            return;
        }
        let codec = Codec::from_headers(msg.headers.as_ref());
        let subject = msg.subject.as_str();
        if subject == self.exec_subject {
            return self.answer_later(&msg, reply_to, codec, "exec", Self::exec);
        }
        if subject == self.session_subject {
            return self.answer_later(&msg, reply_to, codec, "exec session", Self::exec_stream);
        }
        if subject == self.forward_subject {
            return self.answer_later(&msg, reply_to, codec, "port-forward", Self::port_forward);
        }
        if subject == self.usage_subject {
            let now = now_ms();
            let idle = now >= self.usage_wanted_until;
            self.usage_wanted_until = now + usage::ASKED_KEEPS_SAMPLING.as_millis() as u64;
            if idle && self.runtime.measures_usage() {
                // the first figures come two samples later
                self.sample_usage(ctx);
            }
            let reply: UsageReply = codec
                .decode::<UsageRequest>(&msg.payload)
                .map_err(|e| ApiError::bad_request(format!("usage request: {e}")))
                .map(|req| self.usage_report(&req));
            let nats = self.client.nats().clone();
            tokio::spawn(async move { send_reply(nats, reply_to, codec, &reply).await });
            return;
        }
        let reply: LogsReply = match codec.decode::<LogsRequest>(&msg.payload) {
            Err(e) => Err(ApiError::bad_request(format!("logs request: {e}"))),
            Ok(req) => self.read_logs(&req),
        };
        let nats = self.client.nats().clone();
        tokio::spawn(async move { send_reply(nats, reply_to, codec, &reply).await });
    }

    /// What `kubus top` reads: the latest rates of the running containers
    /// of the node's pods (those measured twice) and of the machine.
    fn usage_report(&self, req: &UsageRequest) -> NodeUsage {
        let pods = self
            .pods
            .values()
            .filter(|e| {
                req.namespace
                    .as_deref()
                    .is_none_or(|ns| meta::namespace(&e.pod) == Some(ns))
            })
            .filter_map(|e| {
                let containers: Vec<ContainerUsage> = e
                    .states
                    .iter()
                    .filter_map(|(name, s)| {
                        let usage = self.usage.container(s.running.as_deref()?)?;
                        Some(ContainerUsage {
                            name: name.clone(),
                            usage,
                        })
                    })
                    .collect();
                (!containers.is_empty()).then(|| PodUsage {
                    namespace: meta::namespace(&e.pod).unwrap_or("default").to_string(),
                    name: meta::name(&e.pod).unwrap_or_default().to_string(),
                    containers,
                })
            })
            .collect();
        NodeUsage {
            node: self.cfg.name.clone(),
            timestamp_ms: self.usage_at.0,
            window_ms: self.usage_at.1,
            usage: self.usage.node(),
            pods,
        }
    }

    /// Sample the containers' and the machine's usage; a container seen
    /// for the first time is sampled again after [`usage::FIRST_WINDOW`]
    /// so that it has a rate soon.
    fn sample_usage(&mut self, ctx: &mut Context<Self>) {
        if self.usage_in_flight || now_ms() >= self.usage_wanted_until {
            return;
        }
        self.usage_in_flight = true;
        let readings = self.runtime.usage();
        let work = async move {
            let node = tokio::task::spawn_blocking(usage::read_node)
                .await
                .ok()
                .flatten();
            (readings.await, node)
        };
        ctx.spawn(work.into_actor(self).map(|(readings, node), act, ctx| {
            act.usage_in_flight = false;
            let now = now_ms();
            match readings {
                Ok(r) => act.usage.sample(now, r),
                Err(e) => debug!(error = %e, "cannot read the containers' usage"),
            }
            if let Some((cpu, cores, memory)) = node {
                act.usage.sample_node(cpu, cores, memory);
            }
            act.usage_at = (now, now.saturating_sub(act.usage_at.0));
            let waiting = act.pods.values().any(|e| {
                e.states
                    .values()
                    .filter_map(|s| s.running.as_deref())
                    .any(|id| act.usage.awaits_rate(id))
            });
            if waiting {
                ctx.run_later(usage::FIRST_WINDOW, |act, ctx| act.sample_usage(ctx));
            }
        }));
    }

    /// Decode a request, check it with `start`, and answer once the work
    /// it starts says so (or at once with why not).
    fn answer_later<Req, T>(
        &self,
        msg: &NatsMessage,
        reply_to: async_nats::Subject,
        codec: Codec,
        what: &str,
        start: impl FnOnce(&Self, Req) -> Result<BoxFuture<'static, Result<T, ApiError>>, ApiError>,
    ) where
        Req: serde::de::DeserializeOwned,
        T: serde::Serialize + Send + Sync + 'static,
    {
        let started = match codec.decode::<Req>(&msg.payload) {
            Err(e) => Err(ApiError::bad_request(format!("{what} request: {e}"))),
            Ok(req) => start(self, req),
        };
        let nats = self.client.nats().clone();
        tokio::spawn(async move {
            let reply: Result<T, ApiError> = match started {
                Ok(work) => work.await,
                Err(e) => Err(e),
            };
            send_reply(nats, reply_to, codec, &reply).await;
        });
    }

    /// The pod and the name of its container a logs or exec request means
    /// (the only app container when it names none, as kubectl does).
    fn find_container(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Result<(&PodEntry, String), ApiError> {
        let entry = self.pods.values().find(|e| {
            meta::namespace(&e.pod) == Some(namespace) && meta::name(&e.pod) == Some(pod)
        });
        let Some(entry) = entry else {
            return Err(ApiError::not_found(kubus_api::ObjectRef::new(
                Kind::Pod,
                Some(namespace),
                pod,
            )));
        };
        let names: Vec<String> = ["initContainers", "containers"]
            .iter()
            .flat_map(|f| strings_of_names(&entry.pod, f))
            .collect();
        let container = match container {
            Some(c) if names.iter().any(|n| n == c) => c.to_string(),
            Some(c) => {
                return Err(ApiError::bad_request(format!(
                    "container {c:?} is not valid for pod {pod}; choose one of: {}",
                    names.join(" ")
                )))
            }
            None => {
                let apps = strings_of_names(&entry.pod, "containers");
                if apps.len() != 1 {
                    return Err(ApiError::bad_request(format!(
                        "a container name must be specified for pod {pod}, choose one of: {}",
                        apps.join(" ")
                    )));
                }
                apps[0].clone()
            }
        };
        Ok((entry, container))
    }

    fn read_logs(&self, req: &LogsRequest) -> LogsReply {
        let (entry, container) =
            self.find_container(&req.namespace, &req.pod, req.container.as_deref())?;
        let Some(state) = entry.states.get(&container) else {
            return Err(ApiError::bad_request(format!(
                "container {container:?} in pod {} has not started",
                req.pod
            )));
        };
        let waiting = match (&state.running, &state.last_exit, &state.waiting) {
            (Some(_), _, _) if state.starting => Some("ContainerCreating"),
            (None, None, Some((reason, _))) => Some(reason.as_str()),
            _ => None,
        };
        if let (Some(reason), false) = (waiting, req.previous) {
            return Err(ApiError::bad_request(format!(
                "container {container:?} in pod {} is waiting to start: {reason}",
                req.pod
            )));
        }
        let run = if req.previous {
            state.restarts.checked_sub(1).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "previous terminated container {container:?} in pod {} not found",
                    req.pod
                ))
            })?
        } else {
            state.restarts
        };
        // before reading: a run seen ended has written all it will
        let finished = req.previous || state.running.is_none();
        let path = self
            .pod_dir(&entry.pod)
            .join(&container)
            .join(format!("{run}.log"));
        let read = match req.from_offset {
            Some(offset) => logs::read_from(&path, offset, logs::REPLY_MAX_BYTES),
            None => logs::read_tail_at(&path, req.limit_bytes.unwrap_or(logs::REPLY_MAX_BYTES)),
        };
        let (text, offset) = read
            .map_err(|e| ApiError::internal(format!("cannot read log {}: {e}", path.display())))?;
        Ok(LogChunk {
            text,
            offset,
            restart: run,
            finished,
        })
    }

    /// Check a port-forward request; the future connects to the pod's
    /// port, subscribes the stream's subjects, answers, and then carries
    /// the connection (bounded by [`FORWARDS_IN_FLIGHT_MAX`]).
    fn port_forward(
        &self,
        req: PortForwardRequest,
    ) -> Result<BoxFuture<'static, PortForwardReply>, ApiError> {
        let entry = self.pods.values().find(|e| {
            meta::namespace(&e.pod) == Some(req.namespace.as_str())
                && meta::name(&e.pod) == Some(req.pod.as_str())
        });
        let Some(entry) = entry else {
            return Err(ApiError::not_found(kubus_api::ObjectRef::new(
                Kind::Pod,
                Some(&req.namespace),
                &req.pod,
            )));
        };
        if !entry
            .states
            .values()
            .any(|s| s.running.is_some() && !s.starting)
        {
            return Err(ApiError::bad_request(format!(
                "pod {}/{} has no running container to forward to",
                req.namespace, req.pod
            )));
        }
        let ip = entry
            .pod_ip
            .clone()
            .unwrap_or_else(|| self.cfg.host_ip.clone());
        // a pod in a namespace the agent can enter: its own loopback, as
        // kubectl's port-forward; else its IP
        let netns = meta::uid(&entry.pod).and_then(|uid| self.runtime.pod_netns(uid));
        let permit = slot(&self.forwards, || {
            format!(
                "node {} forwards {FORWARDS_IN_FLIGHT_MAX} connections already",
                self.cfg.name
            )
        })?;
        let nats = self.client.nats().clone();
        let subjects = self.client.subjects().clone();
        let node = self.cfg.name.clone();
        Ok(Box::pin(async move {
            let (target, connected) = match netns {
                Some(ns) => (
                    format!("127.0.0.1:{} in the pod's network namespace", req.port),
                    tokio::time::timeout(
                        FORWARD_CONNECT_TIMEOUT,
                        podnet::connect_in(ns, req.port, FORWARD_CONNECT_TIMEOUT),
                    )
                    .await,
                ),
                None => {
                    let target = format!("{ip}:{}", req.port);
                    let connected = tokio::time::timeout(
                        FORWARD_CONNECT_TIMEOUT,
                        tokio::net::TcpStream::connect(target.clone()),
                    )
                    .await;
                    (target, connected)
                }
            };
            let tcp = match connected {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => {
                    return Err(ApiError::bad_request(format!(
                        "cannot connect to port {} of pod {}/{} ({target}): {e}",
                        req.port, req.namespace, req.pod
                    )));
                }
                Err(_) => {
                    return Err(ApiError::bad_request(format!(
                        "connecting to port {} of pod {}/{} ({target}) timed out",
                        req.port, req.namespace, req.pod
                    )));
                }
            };
            let side = accept_stream(&nats, &subjects, &node, &req.stream, "port-forward").await?;
            tokio::spawn(async move {
                if let Err(e) = side.run(tcp).await {
                    debug!(error = %e, "port-forward stream ended");
                }
                drop(permit);
            });
            Ok(())
        }))
    }

    /// The id of the running container an exec means, or why there is
    /// none.
    fn exec_target(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        command: &[String],
    ) -> Result<(String, String), ApiError> {
        let (entry, container) = self.find_container(namespace, pod, container)?;
        if command.is_empty() {
            return Err(ApiError::bad_request(
                "exec: a command is required (kubus exec POD -- COMMAND [ARG...])",
            ));
        }
        let running = entry.states.get(&container).filter(|s| !s.starting);
        let Some(id) = running.and_then(|s| s.running.clone()) else {
            return Err(ApiError::bad_request(format!(
                "container {container:?} in pod {pod} is not running"
            )));
        };
        Ok((id, container))
    }

    /// Check an exec session request; the future starts the command,
    /// subscribes the stream's subjects and answers, and then carries the
    /// session (bounded by [`EXEC_SESSIONS_MAX`]).
    fn exec_stream(
        &self,
        req: ExecStreamRequest,
    ) -> Result<BoxFuture<'static, ExecStreamReply>, ApiError> {
        if req.attach && !req.command.is_empty() {
            return Err(ApiError::bad_request(
                "attach connects to the container's own process: it takes no command",
            ));
        }
        // an attach has no command of its own: the check is the container's
        let command = if req.attach {
            vec![String::new()]
        } else {
            req.command.clone()
        };
        let (id, container) =
            self.exec_target(&req.namespace, &req.pod, req.container.as_deref(), &command)?;
        let permit = slot(&self.sessions, || {
            format!(
                "node {} carries {EXEC_SESSIONS_MAX} exec sessions already",
                self.cfg.name
            )
        })?;
        let start = if req.attach {
            self.runtime.attach(&id, req.stdin)
        } else {
            self.runtime.exec_stream(
                &id,
                runtime::ExecSpec {
                    command: req.command.clone(),
                    stdin: req.stdin,
                    tty: req.tty,
                },
            )
        };
        let nats = self.client.nats().clone();
        let subjects = self.client.subjects().clone();
        let node = self.cfg.name.clone();
        Ok(Box::pin(async move {
            let process = match start.await {
                Ok(p) => p,
                Err(RuntimeError::Unsupported(what)) => {
                    return Err(ApiError::bad_request(format!(
                        "{what} is not supported by this node's runtime"
                    )))
                }
                Err(RuntimeError::Invalid { message, .. }) => {
                    return Err(ApiError::bad_request(format!("{container:?}: {message}")))
                }
                Err(e) => return Err(ApiError::internal(format!("exec in {container:?}: {e}"))),
            };
            let side = accept_stream(&nats, &subjects, &node, &req.stream, "exec").await?;
            tokio::spawn(async move {
                exec_session::carry(process, side).await;
                drop(permit);
            });
            Ok(())
        }))
    }

    /// Check an exec request and start it; the future gives the reply.
    fn exec(&self, req: ExecRequest) -> Result<BoxFuture<'static, ExecReply>, ApiError> {
        let (id, container) = self.exec_target(
            &req.namespace,
            &req.pod,
            req.container.as_deref(),
            &req.command,
        )?;
        let permit = slot(&self.execs, || {
            format!(
                "node {} runs {EXEC_IN_FLIGHT_MAX} execs already",
                self.cfg.name
            )
        })?;
        let timeout = Duration::from_secs(
            req.timeout_secs
                .unwrap_or(EXEC_TIMEOUT_DEFAULT_SECS)
                .clamp(1, EXEC_TIMEOUT_MAX_SECS),
        );
        let run = self.runtime.exec(&id, req.command, timeout);
        Ok(Box::pin(async move {
            let out = run.await;
            drop(permit);
            match out {
                Ok(out) => Ok(exec_result(out)),
                Err(RuntimeError::Unsupported(what)) => Err(ApiError::bad_request(format!(
                    "{what} is not supported by this node's runtime"
                ))),
                Err(e) => Err(ApiError::internal(format!("exec in {container:?}: {e}"))),
            }
        }))
    }
}

/// A slot of `slots` for as long as the permit is held, or `Unavailable`
/// saying what is full.
fn slot(
    slots: &Arc<Semaphore>,
    full: impl FnOnce() -> String,
) -> Result<OwnedSemaphorePermit, ApiError> {
    slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::unavailable(full(), 1_000))
}

/// Send a reply, encoded as its request was.
async fn send_reply<T: serde::Serialize>(
    nats: async_nats::Client,
    to: async_nats::Subject,
    codec: Codec,
    reply: &T,
) {
    if let Ok(body) = codec.encode(reply) {
        let _ = nats.publish(to, body).await;
    }
}

/// An exec's output for the reply: each stream cut at
/// [`EXEC_OUTPUT_MAX_BYTES`].
pub fn exec_result(out: runtime::ExecOutput) -> ExecResult {
    let cut = |b: &[u8]| {
        let n = b.len().min(EXEC_OUTPUT_MAX_BYTES);
        String::from_utf8_lossy(&b[..n]).into_owned()
    };
    ExecResult {
        stdout: cut(&out.stdout),
        stderr: cut(&out.stderr),
        exit_code: out.exit_code,
        truncated: out.stdout.len().max(out.stderr.len()) > EXEC_OUTPUT_MAX_BYTES,
    }
}

/// The ConfigMaps and Secrets named in `refs`, from the pod's namespace:
/// absent ones as None; an error when the store cannot be asked.
async fn fetch_sources(
    client: &Client,
    namespace: &str,
    refs: std::collections::BTreeSet<(config::SourceKind, String)>,
    claims: Vec<String>,
) -> Result<config::Sources, String> {
    let gets = refs.into_iter().map(|(kind, name)| async move {
        let k = match kind {
            config::SourceKind::ConfigMap => Kind::ConfigMap,
            config::SourceKind::Secret => Kind::Secret,
        };
        let got = client.get(k, Some(namespace), &name).await;
        (kind, name, got)
    });
    let mut sources = config::Sources {
        claims: fetch_claims(client, namespace, claims).await?,
        ..config::Sources::default()
    };
    for (kind, name, got) in join_all(gets).await {
        let obj = match got {
            Ok(v) => Some(v),
            Err(e) if e.reason() == Some(Reason::NotFound) => None,
            Err(e) => {
                return Err(format!(
                    "cannot read {} {namespace}/{name}: {e}",
                    kind.lower()
                ))
            }
        };
        sources.objects.insert((kind, name), obj);
    }
    Ok(sources)
}

fn claims_of(pod: &Value) -> Vec<String> {
    kubus_api::storage::pod_claims(pod)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// Where each named claim's volume is on this node, or why it cannot be
/// used yet (not bound, its volume gone or not a node path); an error
/// when the store cannot be asked.
async fn fetch_claims(
    client: &Client,
    namespace: &str,
    claims: Vec<String>,
) -> Result<BTreeMap<String, Result<PathBuf, String>>, String> {
    let mut out = BTreeMap::new();
    for name in claims {
        let pvc = match client
            .get(Kind::PersistentVolumeClaim, Some(namespace), &name)
            .await
        {
            Ok(v) => v,
            Err(e) if e.reason() == Some(Reason::NotFound) => {
                out.insert(
                    name.clone(),
                    Err(format!("persistentvolumeclaim {name:?} not found")),
                );
                continue;
            }
            Err(e) => {
                return Err(format!(
                    "cannot read persistentvolumeclaim {namespace}/{name}: {e}"
                ))
            }
        };
        let volume = pvc
            .pointer("/spec/volumeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if volume.is_empty() {
            out.insert(
                name.clone(),
                Err(format!("persistentvolumeclaim {name:?} is not bound yet")),
            );
            continue;
        }
        let path = match client.get(Kind::PersistentVolume, None, volume).await {
            Ok(pv) => kubus_api::storage::volume_path(&pv)
                .map(PathBuf::from)
                .ok_or_else(|| {
                    format!("persistentvolume {volume:?} is not a hostPath or local volume")
                }),
            Err(e) if e.reason() == Some(Reason::NotFound) => Err(format!(
                "persistentvolume {volume:?} of claim {name:?} not found"
            )),
            Err(e) => return Err(format!("cannot read persistentvolume {volume}: {e}")),
        };
        out.insert(name, path);
    }
    Ok(out)
}

/// Stop every running container of `states` with `grace`.
fn stop_running<R: Runtime>(
    runtime: &R,
    states: &BTreeMap<String, ContainerState>,
    grace: Duration,
) -> Vec<BoxFuture<'static, ()>> {
    states
        .values()
        .filter_map(|s| s.running.as_deref())
        .map(|id| runtime.stop(id, grace))
        .collect()
}

/// Write the last status of a pod deleted gracefully (best effort: on a
/// conflict it is read again, a bounded number of times).
async fn write_final_status(
    client: &Client,
    r: &kubus_api::ObjectRef,
    mut current: Value,
    status: Value,
) {
    for _ in 0..FINAL_STATUS_ATTEMPTS {
        if let Some(root) = current.as_object_mut() {
            root.insert("status".into(), status.clone());
        }
        match client.update(current).await {
            Ok(_) => return,
            Err(e) if e.reason() == Some(Reason::Conflict) => {
                match client.get(r.kind, r.namespace.as_deref(), &r.name).await {
                    Ok(fresh) => current = fresh,
                    Err(_) => return,
                }
            }
            Err(e) => {
                debug!(pod = %r, error = %e, "cannot write the last status");
                return;
            }
        }
    }
}

/// Remove a pod that has stopped, for good: grace 0, and only if it is
/// still the pod of this uid. Gone already, or another pod of the name
/// now: done.
async fn remove_pod(
    client: &Client,
    r: &kubus_api::ObjectRef,
    uid: &str,
) -> Result<(), kubus_bus::ClientError> {
    let options = DeleteOptions {
        uid: Some(uid.to_string()),
        grace_period_seconds: Some(0),
        ..DeleteOptions::default()
    };
    let mut attempt = 1;
    loop {
        let err = match client.delete_with(r, options.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.reason() == Some(Reason::NotFound) => return Ok(()),
            Err(e) if e.reason() == Some(Reason::Conflict) => {
                // another pod of the name now, or this one kept changing
                match client.get(r.kind, r.namespace.as_deref(), &r.name).await {
                    Ok(now) if meta::uid(&now) == Some(uid) => e,
                    Ok(_) => return Ok(()),
                    Err(e) if e.reason() == Some(Reason::NotFound) => return Ok(()),
                    Err(e) => e,
                }
            }
            Err(e) => e,
        };
        if attempt >= REMOVE_ATTEMPTS {
            return Err(err);
        }
        attempt += 1;
        debug!(pod = %r, error = %err, "cannot remove the pod yet; retrying");
        tokio::time::sleep(REMOVE_RETRY).await;
    }
}

fn strings_of_names(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A container exit, delivered to the agent.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct ExitSeen(Exited);

impl<R: Runtime> Actor for NodeAgent<R> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.register(ctx);
        self.find_leftovers(0, ctx);
        ctx.add_stream(watched(
            &self.client,
            WatchSpec::node_pods(&self.client, &self.cfg.name),
        ));
        if let Some(rx) = self.exits_rx.take() {
            ctx.add_stream(futures::stream::unfold(rx, |mut rx| async move {
                let e = rx.recv().await?;
                Some((ExitSeen(e), rx))
            }));
        }
        for sub in std::mem::take(&mut self.request_subs) {
            ctx.add_stream(sub);
        }
        if let Some(rx) = self.runtime.events() {
            ctx.add_stream(futures::stream::unfold(rx, |mut rx| async move {
                let e = rx.recv().await?;
                Some((RuntimeEventSeen(e), rx))
            }));
        }
        if self.runtime.binds_volumes() {
            ctx.run_interval(refresh::REFRESH_TICK, |act, ctx| act.refresh_volumes(ctx));
        }
        ctx.run_later(Duration::from_secs(2), |act, ctx| act.report_images(ctx));
        if self.runtime.measures_usage() {
            ctx.run_interval(usage::SAMPLE_EVERY, |act, ctx| act.sample_usage(ctx));
        }
        ctx.run_interval(IMAGES_EVERY, |act, ctx| act.report_images(ctx));
        ctx.run_interval(storage::SWEEP_EVERY, |act, ctx| {
            let client = act.client.clone();
            let root = storage_root(&act.cfg);
            ctx.spawn(
                async move {
                    match storage::sweep(&client, &root).await {
                        Ok(0) => {}
                        Ok(n) => info!(removed = n, "removed the directories of deleted volumes"),
                        Err(e) => debug!(error = %e, "volume sweep"),
                    }
                }
                .into_actor(act),
            );
        });
        ctx.run_later(Duration::from_millis(500), |act, ctx| act.renew_lease(ctx));
        ctx.run_interval(NODE_LEASE_RENEW_EVERY, |act, ctx| act.renew_lease(ctx));
        ctx.run_interval(HEARTBEAT_EVERY, |act, _ctx| {
            let nats = act.client.nats().clone();
            let subject = act.client.subjects().heartbeat(&act.cfg.name);
            let body = json!({"node": act.cfg.name, "pods": act.pods.len(), "time": now_ms()});
            tokio::spawn(async move {
                if let Ok(b) = Codec::Json.encode(&body) {
                    let _ = nats.publish(subject, b).await;
                }
            });
        });
    }
}

impl<R: Runtime> StreamHandler<Watched> for NodeAgent<R> {
    fn handle(&mut self, w: Watched, ctx: &mut Context<Self>) {
        if w.kind != Kind::Pod {
            return;
        }
        let relisted = matches!(w.item, WatchItem::Relisted { .. });
        let deltas = self.cache.apply(w.item);
        match &mut self.adopting {
            Adopting::Waiting { listed, .. } => {
                // the cache holds them; every pod is synced once adopted
                *listed |= relisted;
                self.adopt_when_ready(ctx);
                return;
            }
            Adopting::Removing => return,
            Adopting::Done => {}
        }
        for d in deltas {
            self.on_pod(d.object, d.deleted, d.trace.as_deref(), ctx);
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        warn!("NodeAgent: pod watch ended");
    }
}

/// A runtime event, delivered to the agent.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct RuntimeEventSeen(RuntimeEvent);

impl<R: Runtime> StreamHandler<RuntimeEventSeen> for NodeAgent<R> {
    fn handle(&mut self, e: RuntimeEventSeen, ctx: &mut Context<Self>) {
        self.on_runtime_event(e.0, ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl<R: Runtime> StreamHandler<ExitSeen> for NodeAgent<R> {
    fn handle(&mut self, e: ExitSeen, ctx: &mut Context<Self>) {
        self.on_exit(e.0, ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl<R: Runtime> StreamHandler<NatsMessage> for NodeAgent<R> {
    fn handle(&mut self, msg: NatsMessage, ctx: &mut Context<Self>) {
        self.serve(msg, ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}

impl<R: Runtime> Handler<Shutdown> for NodeAgent<R> {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        let mut stops = Vec::new();
        for entry in self.pods.values_mut() {
            let grace = pod::stop_grace(&entry.pod, now_ms(), Duration::from_secs(5));
            // nothing starts again; the stops are this handler's own
            let kill_at_ms = now_ms().saturating_add(grace.as_millis() as u64);
            entry.life = entry.life.on(LifeEvent::Terminate { kill_at_ms }).0;
            for id in entry.states.values().filter_map(|s| s.running.as_deref()) {
                stops.push(self.runtime.stop(id, grace));
            }
        }
        let pod_stops: Vec<_> = self
            .pods
            .keys()
            .map(|uid| self.runtime.stop_pod(uid))
            .collect();
        // tmpfs mounts would outlive the process (and hold secrets in
        // memory); the next run writes the volumes again
        let pod_volumes: Vec<PathBuf> = self
            .pods
            .values()
            .map(|e| self.pod_dir(&e.pod).join("volumes"))
            .collect();
        let mounter = self.mounter.clone();
        info!(containers = stops.len(), "stopping every container");
        Box::pin(async move {
            join_all(stops).await;
            join_all(pod_stops).await;
            let unmounted = tokio::task::spawn_blocking(move || {
                for dir in pod_volumes {
                    if let Err(e) = volumes::unmount_pod_volumes(&dir, mounter.as_ref()) {
                        warn!(path = %dir.display(), error = %e, "cannot unmount the pod's volumes");
                    }
                }
            });
            let _ = unmounted.await;
        })
    }
}

/// This agent's side of byte stream `id` (a port-forward's or an exec
/// session's: `what`), subscribed before the opener is answered.
async fn accept_stream(
    nats: &async_nats::Client,
    subjects: &kubus_bus::Subjects,
    node: &str,
    id: &str,
    what: &str,
) -> Result<kubus_bus::stream::Side, ApiError> {
    kubus_bus::stream::Side::subscribe(nats, subjects, node, id, StreamEnd::Acceptor)
        .await
        .map_err(|e| ApiError::internal(format!("{what} stream: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_output_is_cut_at_the_bound() {
        let r = exec_result(runtime::ExecOutput {
            stdout: b"out".to_vec(),
            stderr: vec![b'e'; EXEC_OUTPUT_MAX_BYTES + 10],
            exit_code: 3,
        });
        assert_eq!((r.stdout.as_str(), r.exit_code), ("out", 3));
        assert_eq!(r.stderr.len(), EXEC_OUTPUT_MAX_BYTES);
        assert!(r.truncated);
        assert!(!exec_result(runtime::ExecOutput::default()).truncated);
    }

    #[test]
    fn node_object_carries_capacity() {
        let cfg = NodeConfig::from_host("n1", PathBuf::from("/tmp"));
        let n = node_object(&cfg, "process://x");
        assert_eq!(n["status"]["allocatable"]["pods"], "110");
        assert_eq!(n["metadata"]["name"], "n1");
        assert!(kubus_api::admission::admit(n).is_ok());
    }
}
