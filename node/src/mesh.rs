//! Running a mesh node: the roles it hosts, wired to one bus and one data
//! directory, and a clean stop on Ctrl-C or SIGTERM (containers and the
//! nats-server child stopped, the store flushed).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use anyhow::{bail, Context};
use kubus_actors::apipublisher::ApiPublisher;
use kubus_actors::dns::ClusterDns;
use kubus_actors::node_agent::cri::CriRuntime;
use kubus_actors::node_agent::hollow::HollowRuntime;
use kubus_actors::node_agent::podnet::PodNetwork;
use kubus_actors::node_agent::process::ProcessRuntime;
use kubus_actors::node_agent::{NodeAgent, NodeConfig, Shutdown};
use kubus_actors::proxy::ServiceProxy;
use kubus_actors::runtime::elector::{
    Elector, LeaseConfig, Release, Starter, CONTROLLERS_LEASE, SCHEDULER_LEASE,
};
use kubus_actors::runtime::{start_controllers, Controller, ControllerSettings, Informers};
use kubus_actors::scheduler::Scheduler;
use kubus_actors::store::seal::Keyring;
use kubus_actors::store::StoreServer;
use kubus_api::service::ServiceNet;
use kubus_bus::auth::{Credentials, Identity};
use kubus_bus::{Client, FenceCell, Subjects};
use kubus_storage::{Store, StoreConfig};
use tracing::{error, info, warn};

use crate::api_server::{self, ApiStart};
use crate::bus_auth::{self, BusSecrets};
use crate::cli::{ElectionArgs, HistoryArgs, NodeArgs, RuntimeArgs, UpArgs};
use crate::config::{self, Current};
use crate::containerd::{self, Containerd};
use crate::nats_server::NatsServer;
use crate::raft_transport::{self, NatsTransport};

/// The roles a mesh node can host.
#[derive(Debug, Clone, Copy, Default)]
pub struct Roles {
    pub store: bool,
    pub control: bool,
    pub worker: bool,
}

impl Roles {
    pub fn parse(words: &[String]) -> anyhow::Result<Roles> {
        let mut r = Roles::default();
        for w in words {
            match w.trim() {
                "store" => r.store = true,
                "control" => r.control = true,
                "worker" => r.worker = true,
                other => bail!("unknown role {other:?}: roles are store, control and worker"),
            }
        }
        if !(r.store || r.control || r.worker) {
            bail!("--roles names no role: give one or more of store, control, worker");
        }
        Ok(r)
    }
}

/// What one mesh node runs.
/// The encryption configuration `kubus up` keeps in its data directory.
pub const ENCRYPTION_CONFIG_FILE: &str = "encryption-config.yaml";

pub struct MeshNode {
    pub roles: Roles,
    pub nats_url: String,
    pub cluster: String,
    pub data_dir: PathBuf,
    pub node_name: String,
    pub hollow_nodes: usize,
    pub hollow_delay_ms: u64,
    /// The store role's Raft peer id.
    pub peer_id: u64,
    /// The voters a fresh store starts with; empty: join a running cluster.
    pub initial_peers: Vec<u64>,
    /// Applied log entries kept behind the applied index.
    pub log_entries_kept: u64,
    /// The store's history retention.
    pub history: HistoryArgs,
    pub runtime: RuntimeArgs,
    pub election: ElectionArgs,
    /// The cluster's service ranges.
    pub net: ServiceNet,
    /// The Kubernetes API's bound listener, when it is served.
    pub api: Option<ApiStart>,
    /// The HTTP endpoint's bound listener (/metrics), when it is served.
    pub http: Option<std::net::TcpListener>,
    /// The directory of the roles' bus credentials (None: a bus without
    /// kubus's accounts; every connection anonymous).
    pub credentials: Option<PathBuf>,
    /// The store role's EncryptionConfiguration (None: Secrets stored
    /// unencrypted).
    pub encryption_config: Option<PathBuf>,
}

impl MeshNode {
    /// The credentials of `id`, when the bus is kubus's.
    fn credentials_of(&self, id: &Identity) -> anyhow::Result<Option<Credentials>> {
        match &self.credentials {
            None => Ok(None),
            Some(dir) => bus_auth::read_credentials(&bus_auth::credentials_path(dir, id)).map(Some),
        }
    }

    /// A connection as `id`.
    async fn connect_as(&self, id: &Identity) -> anyhow::Result<Client> {
        connect(
            &self.nats_url,
            &self.cluster,
            self.credentials_of(id)?.as_ref(),
        )
        .await
    }
}

/// The store's peer id and initial voters from `--peer-id` and
/// `--initial-peers`: neither → peer 1 alone; an id alone → join a running
/// cluster (no initial voters); a list → bootstrap with it, which must
/// name the id (peer 1 when no id is given).
pub fn store_peers(
    peer_id: Option<u64>,
    initial_peers: Option<Vec<u64>>,
) -> anyhow::Result<(u64, Vec<u64>)> {
    let id = peer_id.unwrap_or(1);
    if id == 0 {
        bail!("--peer-id must not be 0");
    }
    let peers = match (peer_id, initial_peers) {
        (None, None) => vec![1],
        (Some(_), None) => Vec::new(),
        (_, Some(list)) => {
            let mut list = list;
            list.sort_unstable();
            list.dedup();
            if list.contains(&0) {
                bail!("--initial-peers must not contain 0");
            }
            if !list.contains(&id) {
                bail!("--initial-peers {list:?} does not contain this peer's id {id}");
            }
            list
        }
    };
    Ok((id, peers))
}

/// The runtime `--runtime auto` means here: containerd's CRI when
/// containerd is installed and kubus runs as root, else processes.
fn resolve_runtime(mut args: RuntimeArgs) -> RuntimeArgs {
    if args.runtime != "auto" {
        return args;
    }
    let root = nix::unistd::geteuid().is_root();
    let containerd = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("containerd").is_file()));
    args.runtime = if root && containerd || args.cri_socket.is_some() {
        println!(
            "kubus: runtime cri (containerd's CRI; --runtime process runs pods as host processes)"
        );
        "cri".into()
    } else {
        let why = if root {
            "containerd is not installed"
        } else {
            "not running as root"
        };
        println!("kubus: runtime process: pods run as host processes ({why}; containers need --runtime cri)");
        "process".into()
    };
    args
}

pub fn up(args: UpArgs) -> anyhow::Result<()> {
    let net = args.network.net()?;
    let data_dir = args.data_dir.unwrap_or_else(config::default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let node_name = args.node_name.unwrap_or_else(config::host_name);
    // Secrets are encrypted at rest from the first start: the key is made
    // before the store opens.
    let encryption_config = args
        .encryption_provider_config
        .clone()
        .unwrap_or_else(|| data_dir.join(ENCRYPTION_CONFIG_FILE));
    Keyring::load_or_create(&encryption_config)?;
    // our own bus: every identity of this machine's cluster authenticated
    // and confined (docs/security.md)
    let secrets = match &args.nats {
        Some(_) => None,
        None => Some(BusSecrets::load_or_create(
            &data_dir,
            &[
                Identity::Admin,
                Identity::Control,
                Identity::Dashboard,
                Identity::Gateway,
                Identity::Store(1),
                Identity::Node(node_name.clone()),
                Identity::Bootstrap,
            ],
        )?),
    };
    if let Some(path) = secrets
        .as_ref()
        .map(BusSecrets::write_join_token)
        .transpose()?
        .flatten()
    {
        println!(
            "kubus: other machines join as workers with `kubus node --nats <this bus> --join-token-file {}` (a copy of that file)",
            path.display()
        );
    }
    let bind = args
        .bus_address
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut secrets = secrets;
    if let Some(s) = secrets.as_mut() {
        // TLS wherever the bus is reachable from elsewhere (or asked for)
        if args.bus_tls || !bind.ip().is_loopback() {
            let mut extra = args.api.api_san.clone();
            if !bind.ip().is_unspecified() {
                extra.push(bind.ip().to_string());
            }
            let names = kubus_gateway::pki::default_names(&node_name, &extra);
            let pki = kubus_gateway::pki::load_or_create(&data_dir.join("pki"), &names)
                .context("the bus's TLS certificate")?;
            s.enable_tls(&pki)?;
        }
    }
    let nats = match &secrets {
        None => None,
        Some(secrets) => {
            let conf = secrets.write_server_config(&Subjects::new(&args.cluster))?;
            Some(Arc::new(Mutex::new(NatsServer::start_on(
                bind,
                &data_dir.join("nats-server.log"),
                Some(&conf),
            )?)))
        }
    };
    let (nats_url, nats_pid) = match (&args.nats, &nats) {
        (Some(url), _) => (url.clone(), None),
        (None, Some(server)) => {
            let s = server
                .lock()
                .map_err(|_| anyhow::anyhow!("nats supervisor poisoned"))?;
            (s.url(), Some(s.pid()))
        }
        (None, None) => bail!("no bus"),
    };
    let api = api_server::prepare(
        &args.api,
        Some(api_server::DEFAULT_ADDRESS),
        &args.cluster,
        &data_dir.join("pki"),
        &node_name,
        net.api_ip(),
    )?;
    let http = crate::http::bind(
        args.http.http_address.as_deref(),
        Some(crate::http::DEFAULT_ADDRESS),
    )?;
    let http_url = http.as_ref().map(crate::http::url).transpose()?;
    let pid = std::process::id();
    config::write_current(&Current {
        nats: nats_url.clone(),
        cluster: args.cluster.clone(),
        data_dir: data_dir.clone(),
        pid,
        nats_pid,
        api: api.as_ref().map(|a| a.url.clone()),
        kubeconfig: api.as_ref().map(|a| a.kubeconfig.clone()),
        http: http_url.clone(),
        credentials: secrets
            .as_ref()
            .map(|s| bus_auth::credentials_path(s.dir(), &Identity::Admin)),
    })?;
    if let Some(a) = &api {
        println!(
            "kubus: Kubernetes API at {}; kubectl: export KUBECONFIG={}",
            a.url,
            a.kubeconfig.display()
        );
    }
    if let Some(u) = &http_url {
        println!("kubus: dashboard at {u}/ and metrics at {u}/metrics");
    }
    println!(
        "kubus: cluster {:?} is starting; bus at {nats_url}, data in {}",
        args.cluster,
        data_dir.display()
    );
    let mesh = MeshNode {
        roles: Roles {
            store: true,
            control: true,
            worker: true,
        },
        nats_url,
        cluster: args.cluster,
        data_dir,
        node_name,
        hollow_nodes: args.hollow_nodes,
        hollow_delay_ms: args.hollow_delay_ms,
        peer_id: 1,
        initial_peers: vec![1],
        log_entries_kept: StoreConfig::single(PathBuf::new()).log_entries_kept,
        history: args.history,
        runtime: resolve_runtime(args.runtime),
        election: args.election,
        net,
        api,
        http,
        credentials: secrets.as_ref().map(|s| s.dir().to_path_buf()),
        encryption_config: Some(encryption_config),
    };
    let secrets = secrets.map(|s| Arc::new(Mutex::new(s)));
    let result = run(mesh, nats.clone(), secrets);
    config::clear_current(pid);
    if let Some(server) = nats {
        if let Ok(mut s) = server.lock() {
            s.stop();
        }
    }
    result
}

pub fn node(args: NodeArgs) -> anyhow::Result<()> {
    let (peer_id, initial_peers) = store_peers(args.peer_id, args.initial_peers)?;
    let data_dir = args.data_dir.unwrap_or_else(config::default_data_dir);
    let node_name = args.node_name.unwrap_or_else(config::host_name);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let token = match (&args.join_token, &args.join_token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the join token {}", path.display()))?,
        ),
        (None, None) => None,
    };
    let credentials = match (args.bus_credentials, token) {
        (dir, None) => dir,
        (dir, Some(token)) => {
            let dir = dir.unwrap_or_else(|| data_dir.join(bus_auth::DIR));
            let own = bus_auth::credentials_path(&dir, &Identity::Node(node_name.clone()));
            if !own.is_file() {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(bus_auth::join(
                    &args.nats,
                    &args.cluster,
                    &token,
                    &node_name,
                    &dir,
                ))?;
                println!(
                    "kubus: joined as node {node_name:?}; credentials in {}",
                    dir.display()
                );
            }
            Some(dir)
        }
    };
    if let Some(path) = &args.encryption_provider_config {
        // refused now, naming the file and the field, not when the store opens
        Keyring::load(path)?;
    }
    let api = api_server::prepare(
        &args.api,
        None,
        &args.cluster,
        &data_dir.join("pki"),
        &node_name,
        args.network.net()?.api_ip(),
    )?;
    if let Some(a) = &api {
        println!(
            "kubus: Kubernetes API at {}; kubeconfig {}",
            a.url,
            a.kubeconfig.display()
        );
    }
    let http = crate::http::bind(args.http.http_address.as_deref(), None)?;
    let roles = Roles::parse(&args.roles)?;
    if let Some(l) = &http {
        let u = crate::http::url(l)?;
        if roles.control {
            println!("kubus: dashboard at {u}/ and metrics at {u}/metrics");
        } else {
            println!("kubus: metrics at {u}/metrics");
        }
    }
    let mesh = MeshNode {
        roles,
        nats_url: args.nats,
        cluster: args.cluster,
        data_dir,
        node_name,
        hollow_nodes: args.hollow_nodes,
        hollow_delay_ms: args.hollow_delay_ms,
        peer_id,
        initial_peers,
        log_entries_kept: args.log_entries_kept,
        history: args.history,
        runtime: resolve_runtime(args.runtime),
        election: args.election,
        net: args.network.net()?,
        api,
        http,
        credentials,
        encryption_config: args.encryption_provider_config,
    };
    run(mesh, None, None)
}

/// Start this gateway's [`ApiPublisher`]: the `kube-root-ca.crt`
/// ConfigMaps with its CA, the `kubernetes` Service and its endpoints.
fn publish_api(
    mesh: &MeshNode,
    api: &ApiStart,
    informers: &Informers,
    writer: Client,
) -> anyhow::Result<()> {
    let bound = api.listener.local_addr()?;
    let address = match bound.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        ip if ip.is_unspecified() => NodeConfig::from_host(&mesh.node_name, PathBuf::new())
            .host_ip
            .parse()
            .ok(),
        _ => None,
    };
    let Some(address) = address else {
        warn!(%bound, "the API listens on no IPv4 address pods can reach: no kubernetes Service endpoints");
        return Ok(());
    };
    let publisher = ApiPublisher {
        ca: api.ca.clone(),
        node: mesh.node_name.clone(),
        address,
        port: bound.port(),
        net: mesh.net,
    };
    Controller::new(publisher, informers.clone(), Arc::new(writer)).start();
    Ok(())
}

/// The control role: one elector per Lease; the mesh node that holds the
/// controllers' Lease runs every controller, the one that holds the
/// scheduler's runs the scheduler, each with a client whose writes are
/// fenced by that Lease. The informers run on every control node, so a
/// standby takes over with warm caches.
fn start_control(client: &Client, mesh: &MeshNode, informers: &Informers) -> Vec<Addr<Elector>> {
    let informers = informers.clone();
    let identity = format!("{}_{}", mesh.node_name, uuid::Uuid::new_v4().simple());
    // A switch for the fencing test only: it must fail without fencing.
    let unfenced = std::env::var_os("KUBUS_TEST_UNFENCED").is_some();
    if unfenced {
        tracing::warn!("KUBUS_TEST_UNFENCED is set: elected writes are NOT fenced (tests only)");
    }
    let config = |name: &str| LeaseConfig {
        lease_duration: Duration::from_secs(mesh.election.lease_duration_secs),
        renew_deadline: Duration::from_secs(mesh.election.lease_renew_deadline_secs),
        retry_period: Duration::from_secs(mesh.election.lease_retry_period_secs),
        ..LeaseConfig::new(name, &identity)
    };
    let fenced = |cell: &FenceCell| {
        if unfenced {
            client.clone()
        } else {
            client.fenced(cell.clone())
        }
    };
    let cell = FenceCell::default();
    let writer: Arc<dyn kubus_actors::write::Writer> = Arc::new(fenced(&cell));
    let shared = informers.clone();
    let settings = ControllerSettings {
        node_grace: Duration::from_secs(mesh.election.node_monitor_grace_period_secs),
        terminated_pod_gc_threshold: mesh.election.terminated_pod_gc_threshold,
    };
    let usage: Arc<dyn kubus_actors::hpa::UsageSource> = Arc::new(client.clone());
    let start: Starter =
        Box::new(move || start_controllers(&shared, writer.clone(), settings, Some(usage.clone())));
    let controllers = Elector::new(config(CONTROLLERS_LEASE), client.clone(), cell, start).start();
    let cell = FenceCell::default();
    let scheduler_client = fenced(&cell);
    let start: Starter = Box::new(move || {
        let scheduler = Scheduler::new(scheduler_client.clone(), informers.clone());
        vec![scheduler.start().recipient()]
    });
    let scheduler = Elector::new(config(SCHEDULER_LEASE), client.clone(), cell, start).start();
    vec![controllers, scheduler]
}

/// Connect (as the user of `credentials`), retrying a bounded number of
/// times (the bus may start with us).
async fn connect(
    url: &str,
    cluster: &str,
    credentials: Option<&Credentials>,
) -> anyhow::Result<Client> {
    let mut last = None;
    for _ in 0..50 {
        match Client::connect_as(url, cluster, credentials).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "cannot reach NATS at {url}: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    )
}

async fn wait_for_stop() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// An actix System whose spawned tasks use a two-thread tokio pool: actors
/// run on the System's thread; tasks they spawn (the store's request
/// handlers, the publisher, watch tasks) use both cores.
pub fn two_core_system() -> actix::SystemRunner {
    actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime (only fails when the OS refuses threads)")
    })
}

fn run(
    mut mesh: MeshNode,
    nats: Option<Arc<Mutex<NatsServer>>>,
    secrets: Option<Arc<Mutex<BusSecrets>>>,
) -> anyhow::Result<()> {
    let system = two_core_system();
    let api = mesh.api.take();
    let http = mesh.http.take();
    let body = async move {
        // a control node's dashboard, started below once the store answers
        let dashboard: Option<crate::http::DashboardSlot> =
            (http.is_some() && mesh.roles.control).then(|| Arc::new(std::sync::OnceLock::new()));
        if let Some(listener) = http {
            let registry = Arc::new(crate::http::registry());
            tokio::spawn(crate::http::serve(listener, registry, dashboard.clone()));
        }
        // this connection's identity: the node's when it hosts one (the
        // node agent's requests), else the role's
        let first = if mesh.roles.worker {
            Identity::Node(mesh.node_name.clone())
        } else if mesh.roles.control {
            Identity::Control
        } else {
            Identity::Store(mesh.peer_id)
        };
        let client = mesh.connect_as(&first).await?;
        // the bus is ours: answer the join requests of other machines
        if let (Some(secrets), Some(server)) = (secrets, nats.clone()) {
            let admin = mesh.connect_as(&Identity::Admin).await?;
            let (rbac_secrets, rbac_server) = (secrets.clone(), server.clone());
            let rbac_admin = admin.clone();
            tokio::spawn(async move {
                if let Err(e) = bus_auth::serve_joins(admin, secrets, server).await {
                    error!(error = %e, "join requests are not served");
                }
            });
            // RBAC compiled into the dashboard's grants
            tokio::spawn(async move {
                if let Err(e) = bus_auth::follow_rbac(rbac_admin, rbac_secrets, rbac_server).await {
                    error!(error = %e, "the dashboard's grants no longer follow RBAC");
                }
            });
        }
        // Each role has its own connection, as it would in its own process:
        // one busy reader (a thousand hollow agents) cannot delay another's
        // messages (the store's requests).
        let store = if mesh.roles.store {
            let own = mesh.connect_as(&Identity::Store(mesh.peer_id)).await?;
            Some(start_store(&mesh, &own).await?)
        } else {
            None
        };
        // the dashboard reads as its own identity: read-only, no Secrets
        if let Some(slot) = &dashboard {
            match mesh.connect_as(&Identity::Dashboard).await {
                Ok(c) => {
                    let slot = slot.clone();
                    tokio::spawn(async move {
                        crate::dashboard::await_access(&c).await;
                        let _ = slot.set(crate::dashboard::Dashboard::start(c));
                    });
                }
                Err(e) => println!("kubus: the dashboard is not served: {e:#}"),
            }
        }
        // one informer per kind in this process, for every role that reads
        let informers = if mesh.roles.control || mesh.roles.worker {
            // the control role reads every kind; a worker alone, what a
            // node may
            let id = if mesh.roles.control {
                Identity::Control
            } else {
                Identity::Node(mesh.node_name.clone())
            };
            Some(Informers::new(mesh.connect_as(&id).await?))
        } else {
            None
        };
        let mut worker = Worker::default();
        if let (true, Some(informers)) = (mesh.roles.worker, &informers) {
            worker = start_worker(&client, &mesh, informers).await?;
            let host_ip = NodeConfig::from_host(&mesh.node_name, PathBuf::new()).host_ip;
            let node_ips: Vec<std::net::IpAddr> = host_ip.parse().into_iter().collect();
            ServiceProxy::new(&mesh.node_name, node_ips, &mesh.net, informers).start();
            let resolv_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let dns_ip = std::net::IpAddr::V4(mesh.net.dns_ip());
            ClusterDns::new(dns_ip, 53, &resolv_conf, informers).start();
            info!(node = %mesh.node_name, runtime = %mesh.runtime.runtime, "worker role: node agent, service proxy and cluster DNS started");
        }
        // after the worker, whose flags may still be refused: an actor
        // started and then dropped unpolled with the runtime panics
        let mut electors = Vec::new();
        if let (true, Some(informers)) = (mesh.roles.control, &informers) {
            let own = mesh.connect_as(&Identity::Control).await?;
            electors = start_control(&own, &mesh, informers);
            info!("control role: campaigning for the scheduler's and the controllers' leases");
        }
        // the Kubernetes API: any role may serve it; it needs only the bus
        let gateway = match api {
            Some(a) => {
                let own = mesh.connect_as(&Identity::Gateway).await?;
                // what pods need to reach it: published where this node
                // reads the cluster and may write (a control node)
                match (&informers, mesh.roles.control) {
                    (Some(informers), true) => {
                        let writer = mesh.connect_as(&Identity::Control).await?;
                        publish_api(&mesh, &a, informers, writer)?;
                    }
                    _ => info!("the API's Service and CA are published by a node that also has the control role"),
                }
                Some(kubus_gateway::Gateway::start(own, a.listener, a.tls)?)
            }
            None => None,
        };
        let containerd = worker.containerd.take().map(|c| Arc::new(Mutex::new(c)));
        let hollow = start_hollow_nodes(&mesh).await?;
        println!("kubus: ready (node {:?}); stop with Ctrl-C", mesh.node_name);
        let supervised = async {
            let Some(server) = nats else {
                return std::future::pending::<anyhow::Result<()>>().await;
            };
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let r = server
                    .lock()
                    .map_err(|_| anyhow::anyhow!("nats supervisor poisoned"))?
                    .supervise();
                if let Err(e) = r {
                    error!(error = %e, "bus lost");
                    return Err(e);
                }
            }
        };
        let supervised_containerd = async {
            let Some(c) = containerd.clone() else {
                return std::future::pending::<anyhow::Result<()>>().await;
            };
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let r = c
                    .lock()
                    .map_err(|_| anyhow::anyhow!("containerd supervisor poisoned"))?
                    .supervise();
                if let Err(e) = r {
                    error!(error = %e, "containerd lost");
                    return Err(e);
                }
            }
        };
        let outcome = tokio::select! {
            _ = wait_for_stop() => Ok(()),
            r = supervised => r,
            r = supervised_containerd => r,
        };
        info!("stopping");
        if let Some(g) = gateway {
            g.shutdown().await;
        }
        for e in electors {
            let _ = tokio::time::timeout(Duration::from_secs(2), e.send(Release)).await;
        }
        if let Some(agent) = worker.agent {
            let _ = tokio::time::timeout(Duration::from_secs(15), agent.send(Shutdown)).await;
        }
        if let Some(cri) = worker.cri {
            // what the agent did not stop (a pod it never finished starting)
            match tokio::time::timeout(Duration::from_secs(30), cri.remove_all()).await {
                Ok(Ok(n)) if n > 0 => info!(sandboxes = n, "removed leftover sandboxes"),
                Ok(Err(e)) => error!(error = %e, "cannot remove sandboxes"),
                _ => {}
            }
        }
        if let Some(c) = containerd {
            if let Ok(c) = Arc::try_unwrap(c) {
                if let Ok(c) = c.into_inner() {
                    let _ = tokio::task::spawn_blocking(move || c.stop()).await;
                }
            }
        }
        drop(hollow);
        if let Some(store) = store {
            // Bounded: a store stuck behind a full change queue must not
            // keep Ctrl-C from working. Leaving without the join is safe:
            // every acknowledged write is already on disk.
            let stopping = tokio::task::spawn_blocking(move || store.shutdown());
            if tokio::time::timeout(STORE_STOP_MAX, stopping)
                .await
                .is_err()
            {
                error!("the store did not stop within {STORE_STOP_MAX:?}; leaving anyway (acknowledged writes are on disk)");
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), client.nats().flush()).await;
        System::current().stop();
        outcome
    };
    system.block_on(async move {
        let outcome = body.await;
        if outcome.is_err() {
            // a start refused half-way (a flag the worker rejects): let
            // the actors already started run their `started` inside the
            // runtime; one dropped unpolled with it panics instead
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        outcome
    })
}

/// Longest wait for the store's Raft thread at shutdown.
const STORE_STOP_MAX: Duration = Duration::from_secs(10);

/// The worker role: its node agent (of either runtime) and what the cri
/// runtime needs stopped after it.
#[derive(Default)]
struct Worker {
    agent: Option<Recipient<Shutdown>>,
    cri: Option<CriRuntime>,
    containerd: Option<Containerd>,
}

async fn start_worker(
    client: &Client,
    mesh: &MeshNode,
    informers: &Informers,
) -> anyhow::Result<Worker> {
    let services = informers.shared(kubus_api::Kind::Service);
    let root = mesh.data_dir.join("agent");
    let cfg = NodeConfig::from_host(&mesh.node_name, root.clone());
    if mesh.runtime.runtime != "cri" {
        let mut runtime = ProcessRuntime::new(root.join("processes")).context("process runtime")?;
        if mesh.runtime.process_network != "host" {
            let net = PodNetwork::detect(
                &mesh.node_name,
                &root.join("podnet"),
                &mesh.runtime.pod_cidr(),
                &mesh.net.cidr(),
                Some(mesh.net.dns_ip().to_string()),
            );
            match net {
                Ok(net) => {
                    info!(bridge = %net.bridge, cidr = %net.cidr, "process runtime: each pod in a network namespace of its own");
                    runtime = runtime.with_pod_network(net);
                }
                Err(why) if mesh.runtime.process_network == "netns" => {
                    bail!("--process-network netns: {why}")
                }
                Err(why) => println!(
                    "kubus: process pods share the node's network ({why}): one pod per port per node"
                ),
            }
        }
        let agent = NodeAgent::new(client.clone(), cfg, runtime)
            .await
            .context("node agent")?
            .with_services(services);
        return Ok(Worker {
            agent: Some(agent.start().recipient()),
            ..Worker::default()
        });
    }
    let mut worker = Worker::default();
    let socket = match &mesh.runtime.cri_socket {
        Some(s) => s.clone(),
        None => {
            let settings = containerd::Settings {
                dir: mesh.data_dir.join("containerd"),
                sandbox_image: mesh.runtime.sandbox_image.clone(),
                pod_cidr: mesh.runtime.pod_cidr(),
                bridge: "kubus0".into(),
                service_cidr: mesh.net.cidr(),
            };
            let c = tokio::task::spawn_blocking(move || Containerd::start(&settings))
                .await
                .context("starting containerd")??;
            let socket = c.socket.clone();
            worker.containerd = Some(c);
            socket
        }
    };
    // containerd's CRI plugin may answer a moment after the socket opens
    let mut last = None;
    for _ in 0..50 {
        match CriRuntime::connect(
            &socket,
            &mesh.node_name,
            Some(mesh.net.dns_ip().to_string()),
        )
        .await
        {
            Ok(r) => {
                worker.cri = Some(r);
                break;
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let (Some(cri), Some(_)) = (&worker.cri, &worker.containerd) {
        // the images folder first: it may hold the sandbox image
        containerd::import_folder(&socket, &mesh.data_dir.join("images")).await;
        if let Err(e) =
            containerd::ensure_sandbox_image(cri, &socket, &mesh.runtime.sandbox_image).await
        {
            if let Some(c) = worker.containerd.take() {
                c.stop();
            }
            return Err(e);
        }
    }
    let Some(runtime) = worker.cri.clone() else {
        if let Some(c) = worker.containerd.take() {
            c.stop();
        }
        bail!(
            "cannot use the CRI runtime at {}: {}",
            socket.display(),
            last.map(|e| e.to_string()).unwrap_or_default()
        );
    };
    let agent = NodeAgent::new(client.clone(), cfg, runtime)
        .await
        .context("node agent")?
        .with_services(services);
    worker.agent = Some(agent.start().recipient());
    Ok(worker)
}

/// Hollow node agents that share one NATS connection.
const HOLLOW_NODES_PER_CONNECTION: usize = 100;

/// Start the hollow node agents this mesh node hosts (one runtime; one
/// connection per [`HOLLOW_NODES_PER_CONNECTION`] agents).
async fn start_hollow_nodes(
    mesh: &MeshNode,
) -> anyhow::Result<Vec<Addr<NodeAgent<HollowRuntime>>>> {
    let runtime = HollowRuntime::new(Duration::from_millis(mesh.hollow_delay_ms));
    let mut agents = Vec::with_capacity(mesh.hollow_nodes);
    let mut client = None;
    // The hollow agents get a thread of their own (an actix Arbiter), so
    // they and the control plane's actors use both cores.
    let arbiter = actix::Arbiter::new();
    // hollow nodes stand in for many machines: one connection for many,
    // not a node identity each. Hearing every node's subjects on a secured
    // bus takes the administrator (whose credentials `kubus up` holds);
    // on an open bus any identity does.
    let identity = match mesh.credentials_of(&Identity::Admin) {
        Ok(Some(_)) => Identity::Admin,
        _ => Identity::Control,
    };
    for i in 0..mesh.hollow_nodes {
        if i % HOLLOW_NODES_PER_CONNECTION == 0 {
            client = Some(mesh.connect_as(&identity).await?);
        }
        let Some(client) = &client else {
            bail!("hollow node {i}: no connection");
        };
        let name = format!("hollow-{i:04}");
        let mut cfg = NodeConfig::from_host(&name, mesh.data_dir.join("hollow").join(&name));
        cfg.cpu = "4".into();
        cfg.memory = "16Gi".into();
        cfg.labels = vec![("kubus.io/hollow".into(), "true".into())];
        let agent = NodeAgent::new(client.clone(), cfg, runtime.clone())
            .await
            .with_context(|| format!("hollow node {name}"))?;
        agents.push(NodeAgent::start_in_arbiter(&arbiter.handle(), move |_| {
            agent
        }));
    }
    if mesh.hollow_nodes > 0 {
        info!(nodes = mesh.hollow_nodes, "hollow node agents started");
    }
    Ok(agents)
}

/// Opens the store peer with the NATS raft transport, feeds it the Raft
/// messages addressed to it, and serves the API from it.
async fn start_store(mesh: &MeshNode, client: &Client) -> anyhow::Result<Store> {
    let dir = mesh.data_dir.join("store");
    let keys = match &mesh.encryption_config {
        Some(path) => Keyring::load(path)?,
        None => {
            warn!(
                "no --encryption-provider-config: this store peer keeps Secrets unencrypted \
                 in its log and RocksDB"
            );
            Keyring::plain()
        }
    };
    let cfg = StoreConfig {
        log_entries_kept: mesh.log_entries_kept,
        history_retention_revisions: mesh.history.history_retention_revisions,
        history_retention_age: Duration::from_secs(mesh.history.history_retention_age_secs),
        ..StoreConfig::peer(dir.clone(), mesh.peer_id, mesh.initial_peers.clone())
    };
    let subjects = client.subjects().clone();
    let transport = NatsTransport::start(client.nats().clone(), subjects.clone(), mesh.peer_id);
    let (store, changes) = Store::open(cfg, Box::new(transport))
        .with_context(|| format!("opening store in {}", dir.display()))?;
    raft_transport::serve_peer(client.nats(), &subjects, mesh.peer_id, &store)
        .await
        .context("subscribing to raft messages and snapshot chunk requests")?;
    let admin = kubus_actors::store::admin::serve(
        store.clone(),
        keys.clone(),
        client.nats().clone(),
        subjects.clone(),
    )
    .await
    .context("subscribing to store administration")?;
    tokio::spawn(admin);
    let backups =
        kubus_actors::store::backup::serve(store.clone(), client.nats().clone(), subjects)
            .await
            .context("subscribing to backup requests")?;
    tokio::spawn(backups);
    StoreServer::start(
        store.clone(),
        changes,
        client.nats().clone(),
        &mesh.cluster,
        mesh.net,
        mesh.credentials.is_some(),
        keys,
    )
    .await
    .context("store server")?;
    info!(dir = %dir.display(), peer = mesh.peer_id, revision = store.revision(), "store role: store server started");
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_peers_from_flags() {
        type Case = (Option<u64>, Option<Vec<u64>>, Option<(u64, Vec<u64>)>);
        let cases: Vec<Case> = vec![
            (None, None, Some((1, vec![1]))),
            (Some(2), None, Some((2, vec![]))),
            (Some(2), Some(vec![3, 1, 2, 2]), Some((2, vec![1, 2, 3]))),
            (None, Some(vec![1, 2, 3]), Some((1, vec![1, 2, 3]))),
            (Some(4), Some(vec![1, 2, 3]), None),
            (None, Some(vec![2, 3]), None),
            (Some(0), None, None),
            (Some(1), Some(vec![0, 1]), None),
        ];
        for (id, list, want) in cases {
            let got = store_peers(id, list.clone()).ok();
            assert_eq!(got, want, "--peer-id {id:?} --initial-peers {list:?}");
        }
    }
}
