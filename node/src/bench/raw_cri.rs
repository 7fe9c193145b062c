//! The baseline of `kubus bench pods --runtime cri`: the same pods started
//! by calling CRI directly (RunPodSandbox, CreateContainer, StartContainer)
//! on the benchmark's containerd, with the configurations the node agent
//! would send (`cri::sandbox_config`, `cri::container_config`), all at once
//! as a Deployment's pods are. What kubus adds on top of containerd is the
//! difference.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use kubus_actors::node_agent::cri::{self, v1 as api};
use kubus_actors::node_agent::runtime::ContainerSpec;
use serde_json::{json, Value};
use tonic::transport::Channel;

use super::histogram;

type Client = api::runtime_service_client::RuntimeServiceClient<Channel>;

/// The node label value of the baseline's sandboxes: no agent's node, so
/// no agent adopts or removes them.
const RAW_NODE: &str = "bench-raw-cri";
/// Longest wait for one CRI call (a start under load included).
const CALL_MAX: Duration = Duration::from_secs(120);

/// What the raw CRI calls took.
pub struct Outcome {
    /// Calls begun → container started, per pod.
    pub started: Histogram<u64>,
    /// Until the last pod's container started.
    pub all_started: Duration,
}

async fn call<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(CALL_MAX, f).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(e)) => bail!("{what}: {}", e.message()),
        Err(_) => bail!("{what}: no answer in {CALL_MAX:?}"),
    }
}

/// The pod the baseline starts as `name`: what the benchmark's Deployment
/// asks for, with a name and uid of its own.
fn pod(name: &str, image: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "bench", "uid": format!("bench-{name}")},
        "spec": {"containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}]}
    })
}

/// Start one pod; returns its sandbox id.
async fn start_one(mut rt: Client, name: &str, image: &str, logs: &Path) -> anyhow::Result<String> {
    let pod = pod(name, image);
    let log_dir = logs.join(name);
    std::fs::create_dir_all(log_dir.join("main"))
        .with_context(|| format!("creating {}", log_dir.display()))?;
    let config = cri::sandbox_config(&pod, RAW_NODE, None, &log_dir, 0);
    let sandbox = call(
        "RunPodSandbox",
        rt.run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        }),
    )
    .await?
    .pod_sandbox_id;
    let container = pod["spec"]["containers"][0].clone();
    let spec = ContainerSpec {
        pod_uid: format!("bench-{name}"),
        namespace: "bench".into(),
        pod: name.to_string(),
        container: "main".into(),
        command: vec!["sleep".into(), "3600".into()],
        args: Vec::new(),
        env: Vec::new(),
        working_dir: None,
        log_path: log_dir.join("main/0.log"),
        mounts: Vec::new(),
        stdin: false,
        stdin_once: false,
        tty: false,
    };
    let container_config = cri::container_config(&pod, &container, &spec, 0, "main/0.log", "raw")
        .map_err(|e| anyhow::anyhow!("container config: {e}"))?;
    let id = call(
        "CreateContainer",
        rt.create_container(api::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container_config),
            sandbox_config: Some(config),
        }),
    )
    .await?
    .container_id;
    call(
        "StartContainer",
        rt.start_container(api::StartContainerRequest { container_id: id }),
    )
    .await?;
    Ok(sandbox)
}

/// Start `pods` pods (named `<prefix>-<i>`) at once by raw CRI calls on
/// the containerd at `socket`, then stop and remove them again.
pub async fn run(
    socket: &Path,
    prefix: &str,
    pods: usize,
    image: &str,
    logs: PathBuf,
) -> anyhow::Result<Outcome> {
    let channel = cri::connect_socket(socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let rt = Client::new(channel);
    let began = Instant::now();
    let starts = (0..pods).map(|i| {
        let (rt, logs) = (rt.clone(), logs.clone());
        async move {
            let sandbox = start_one(rt, &format!("{prefix}-{i}"), image, &logs).await;
            (sandbox, began.elapsed())
        }
    });
    let done = futures::future::join_all(starts).await;
    let all_started = began.elapsed();
    let mut started = histogram()?;
    let mut sandboxes = Vec::new();
    let mut failed = None;
    for (sandbox, took) in done {
        match sandbox {
            Ok(id) => {
                started.record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1))?;
                sandboxes.push(id);
            }
            Err(e) => failed = Some(e),
        }
    }
    // out of the way before kubus is measured
    let removals = sandboxes.into_iter().map(|id| {
        let mut rt = rt.clone();
        async move {
            let _ = call(
                "StopPodSandbox",
                rt.stop_pod_sandbox(api::StopPodSandboxRequest {
                    pod_sandbox_id: id.clone(),
                }),
            )
            .await;
            let _ = call(
                "RemovePodSandbox",
                rt.remove_pod_sandbox(api::RemovePodSandboxRequest { pod_sandbox_id: id }),
            )
            .await;
        }
    });
    futures::future::join_all(removals).await;
    if let Some(e) = failed {
        return Err(e.context("a raw CRI pod did not start"));
    }
    Ok(Outcome {
        started,
        all_started,
    })
}
