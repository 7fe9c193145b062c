//! Running a mesh node: the roles it hosts, wired to one bus and one data
//! directory, and a clean stop on Ctrl-C or SIGTERM (containers and the
//! nats-server child stopped, the store flushed).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use anyhow::{bail, Context};
use kubus_actors::deployment::DeploymentController;
use kubus_actors::node_agent::process::ProcessRuntime;
use kubus_actors::node_agent::{NodeAgent, NodeConfig, Shutdown};
use kubus_actors::replicaset::ReplicaSetController;
use kubus_actors::scheduler::Scheduler;
use kubus_actors::store::StoreServer;
use kubus_bus::Client;
use kubus_storage::{NoPeers, Store, StoreConfig};
use tracing::{error, info};

use crate::cli::{NodeArgs, UpArgs};
use crate::config::{self, Current};
use crate::nats_server::NatsServer;

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
pub struct MeshNode {
    pub roles: Roles,
    pub nats_url: String,
    pub cluster: String,
    pub data_dir: PathBuf,
    pub node_name: String,
}

pub fn up(args: UpArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(config::default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let nats = match &args.nats {
        Some(_) => None,
        None => Some(Arc::new(Mutex::new(NatsServer::start(
            &data_dir.join("nats-server.log"),
        )?))),
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
    let pid = std::process::id();
    config::write_current(&Current {
        nats: nats_url.clone(),
        cluster: args.cluster.clone(),
        data_dir: data_dir.clone(),
        pid,
        nats_pid,
    })?;
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
        node_name: args.node_name.unwrap_or_else(config::host_name),
    };
    let result = run(mesh, nats.clone());
    config::clear_current(pid);
    if let Some(server) = nats {
        if let Ok(mut s) = server.lock() {
            s.stop();
        }
    }
    result
}

pub fn node(args: NodeArgs) -> anyhow::Result<()> {
    let mesh = MeshNode {
        roles: Roles::parse(&args.roles)?,
        nats_url: args.nats,
        cluster: args.cluster,
        data_dir: args.data_dir.unwrap_or_else(config::default_data_dir),
        node_name: args.node_name.unwrap_or_else(config::host_name),
    };
    std::fs::create_dir_all(&mesh.data_dir)
        .with_context(|| format!("creating {}", mesh.data_dir.display()))?;
    run(mesh, None)
}

/// Connect, retrying a bounded number of times (the bus may start with us).
async fn connect(url: &str, cluster: &str) -> anyhow::Result<Client> {
    let mut last = None;
    for _ in 0..50 {
        match Client::connect(url, cluster).await {
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

fn run(mesh: MeshNode, nats: Option<Arc<Mutex<NatsServer>>>) -> anyhow::Result<()> {
    let system = actix::System::new();
    system.block_on(async move {
        let client = connect(&mesh.nats_url, &mesh.cluster).await?;
        let store = if mesh.roles.store {
            Some(start_store(&mesh.data_dir.join("store"), &client, &mesh.cluster).await?)
        } else {
            None
        };
        if mesh.roles.control {
            Scheduler::new(client.clone()).start();
            ReplicaSetController::new(client.clone()).start();
            DeploymentController::new(client.clone()).start();
            info!("control role: scheduler and controllers started");
        }
        let agent = if mesh.roles.worker {
            let root = mesh.data_dir.join("agent");
            let runtime = ProcessRuntime::new(root.join("processes")).context("process runtime")?;
            let cfg = NodeConfig::from_host(&mesh.node_name, root);
            let agent = NodeAgent::new(client.clone(), cfg, runtime)
                .await
                .context("node agent")?;
            info!(node = %mesh.node_name, "worker role: node agent started");
            Some(agent.start())
        } else {
            None
        };
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
        let outcome = tokio::select! {
            _ = wait_for_stop() => Ok(()),
            r = supervised => r,
        };
        info!("stopping");
        if let Some(agent) = agent {
            let _ = tokio::time::timeout(Duration::from_secs(15), agent.send(Shutdown)).await;
        }
        if let Some(store) = store {
            store.shutdown();
        }
        let _ = client.nats().flush().await;
        System::current().stop();
        outcome
    })
}

async fn start_store(dir: &Path, client: &Client, cluster: &str) -> anyhow::Result<Store> {
    let cfg = StoreConfig::single(dir.to_path_buf());
    let (store, changes) = Store::open(cfg, Box::new(NoPeers))
        .with_context(|| format!("opening store in {}", dir.display()))?;
    StoreServer::start(store.clone(), changes, client.nats().clone(), cluster)
        .await
        .context("store server")?;
    info!(dir = %dir.display(), revision = store.revision(), "store role: store server started");
    Ok(store)
}
