//! The seam between the node agent and whatever runs containers: `process`
//! (child processes), `cri` (containerd over CRI v1) and `hollow` (nothing
//! at all), behind one trait. Pod-level hooks (`pod_updated`, `stop_pod`)
//! and runtime events have no-op defaults, so a runtime without pods (the
//! process runtime) ignores them.
//!
//! Re-adoption after an agent restart goes through three calls:
//! [`Runtime::leftovers`] (what an earlier run left), then the agent's pure
//! plan (`node_agent::adopt`), then [`Runtime::adopt`] for what pods still
//! own and [`Runtime::remove_leftovers`] for the rest.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

pub use super::config::Mount;

/// What the runtime needs to start one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    pub pod_uid: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// Where the container's output goes, in the CRI log format.
    pub log_path: PathBuf,
    /// Node paths bound into the container (its volumeMounts).
    pub mounts: Vec<Mount>,
    /// Its stdin stays open for attached sessions (`stdin: true`).
    pub stdin: bool,
    /// The first attached session's end closes its stdin.
    pub stdin_once: bool,
    /// It runs on a terminal (`tty: true`).
    pub tty: bool,
}

/// One image a node holds, as the Node's `status.images` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeImage {
    /// Its tags and digests.
    pub names: Vec<String>,
    pub size_bytes: u64,
}

/// A container stopped running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exited {
    pub pod_uid: String,
    pub container: String,
    pub id: String,
    pub code: i32,
    /// "Completed", "Error", or the signal that ended it.
    pub reason: String,
}

/// What a runtime tells the agent besides exits (see [`Runtime::events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    /// The pod's sandbox is up with this address on the pod network.
    PodNetwork { pod_uid: String, ip: String },
    /// A container the agent asked for (`id` from `start`) could not be
    /// created or started; `reason` is Kubernetes' waiting reason
    /// (`ErrImagePull`, `ErrImageNeverPull`, `CreateContainerError`, …).
    StartFailed {
        pod_uid: String,
        container: String,
        id: String,
        reason: String,
        message: String,
    },
    /// A step of a container's start worth an Event: `Pulling`, `Pulled`,
    /// `Created`, `Started` (all Normal).
    /// `Started` also tells the agent the container runs from now on.
    Progress {
        pod_uid: String,
        container: String,
        /// The handle `start` returned.
        id: String,
        reason: &'static str,
        message: String,
    },
}

/// A pod-level object (a CRI sandbox) an earlier run of the agent left in
/// the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundPod {
    pub pod_uid: String,
    /// The runtime's id for it.
    pub runtime_id: String,
    /// Its attempt number (a pod whose sandbox failed gets another).
    pub attempt: u32,
    /// Still usable: running, its network up.
    pub ready: bool,
    /// Its address on the pod network (None: the node's network).
    pub ip: Option<String>,
}

/// How a container an earlier run left is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoundState {
    /// Created but never started (the agent stopped in between).
    Created,
    Running {
        started_at_ms: u64,
    },
    Exited {
        code: i32,
        reason: String,
        started_at_ms: u64,
        finished_at_ms: u64,
    },
    /// The runtime cannot say.
    Unknown,
}

/// A container an earlier run of the agent left in the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundContainer {
    /// Its pod's uid; empty when the runtime did not record it.
    pub pod_uid: String,
    /// Its name in the pod spec; empty when not recorded.
    pub container: String,
    /// The runtime's own id for it.
    pub runtime_id: String,
    /// The runtime id of the [`FoundPod`] it runs in, if the runtime has
    /// pods.
    pub pod_runtime_id: Option<String>,
    /// The id the agent knew it by (what [`Runtime::start`] returned).
    pub id: String,
    /// The restart count it was started with.
    pub restarts: u32,
    /// [`spec_hash`] of the container spec it was started from; None: not
    /// recorded.
    pub spec_hash: Option<String>,
    pub state: FoundState,
}

/// Everything an earlier run of the agent left in the runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub pods: Vec<FoundPod>,
    pub containers: Vec<FoundContainer>,
}

/// What the runtime takes over for one pod that still runs on this node.
#[derive(Debug, Clone)]
pub struct Adoption {
    pub pod: Value,
    /// The pod's directory (a CRI sandbox's log directory).
    pub pod_dir: PathBuf,
    pub sandbox: Option<FoundPod>,
    /// Containers that run on: their exits are reported from now on.
    pub running: Vec<FoundContainer>,
    /// The last exited container of a name, kept (as the runtime keeps
    /// each name's last exited container) until that name exits again.
    pub exited: Vec<FoundContainer>,
}

/// A short, stable digest of a container's spec (its JSON in the pod), as
/// recorded on the container when it starts: a restarted agent adopts a
/// running container only if its pod still has the same spec for it.
pub fn spec_hash(container: &Value) -> String {
    format!("{:016x}", crate::watching::stable_hash(container))
}

/// What a command run in a container (`exec`) printed and returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// A command started in a container with its streams open (an exec
/// session). Dropping it ends the command.
pub struct ExecProcess {
    /// The command's stdin, when the session carries one.
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// Its stdout (with a TTY: the terminal, stdout and stderr as one).
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    /// Its stderr, apart from stdout (none with a TTY).
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    /// Set the terminal's width and height (a TTY session).
    pub resize: Option<Box<dyn Fn(u16, u16) + Send + Sync>>,
    /// The command's exit code, once it ends.
    pub exit: BoxFuture<'static, Result<i32, RuntimeError>>,
}

/// What an exec session runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSpec {
    pub command: Vec<String>,
    /// The command reads the session's stdin.
    pub stdin: bool,
    /// The command runs on a terminal.
    pub tty: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container cannot run as specified; retrying will not help.
    #[error("{reason}: {message}")]
    Invalid {
        reason: &'static str,
        message: String,
    },
    #[error("cannot start container: {0}")]
    Start(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The runtime (e.g. containerd) failed or could not be reached.
    #[error("runtime: {0}")]
    Runtime(String),
    #[error("{0} is not supported by this runtime")]
    Unsupported(&'static str),
}

/// Runs containers. Exits are reported on the channel given at start.
pub trait Runtime: Send + Sync + 'static {
    /// A name for the Node's `containerRuntimeVersion`.
    fn version(&self) -> String;
    /// How long after `start` a container counts as running (a hollow
    /// runtime's simulated start-up; real runtimes report when they start).
    fn ready_delay(&self) -> Duration {
        Duration::ZERO
    }
    /// Start a container; returns its id.
    fn start(
        &self,
        spec: &ContainerSpec,
        exits: mpsc::Sender<Exited>,
    ) -> Result<String, RuntimeError>;
    /// Stop a container: a polite signal, then after `grace` a forced one.
    fn stop(&self, id: &str, grace: Duration) -> BoxFuture<'static, ()>;
    /// What an earlier run of this agent left in the runtime. A runtime that
    /// cannot adopt containers (hollow) has nothing to report.
    fn leftovers(&self) -> BoxFuture<'static, Result<Leftovers, RuntimeError>> {
        Box::pin(async { Ok(Leftovers::default()) })
    }
    /// Take over what an earlier run left for a pod that still runs here:
    /// its sandbox, its running containers (exits reported on `exits` from
    /// now on, `exec` and `stop` by their old ids) and its exited ones.
    fn adopt(&self, _adoption: &Adoption, _exits: mpsc::Sender<Exited>) {}
    /// Stop and remove what an earlier run left and no pod owns; returns
    /// how many objects went.
    fn remove_leftovers(
        &self,
        _pods: Vec<FoundPod>,
        _containers: Vec<FoundContainer>,
    ) -> BoxFuture<'static, usize> {
        Box::pin(async { 0 })
    }
    /// The pod as last seen, before its containers start and whenever it
    /// changes (a CRI runtime builds its sandbox and images from it).
    fn pod_updated(&self, _pod: &Value) {}
    /// Whether containers see the pod's volumes (bind mounts, CRI). Only
    /// then does the agent make them on the node (mounting the tmpfs of
    /// secret and `medium: Memory` volumes) and refresh configMap and
    /// secret files while containers run; otherwise volumes are planned
    /// (so their errors show) but nothing is written.
    fn binds_volumes(&self) -> bool {
        false
    }
    /// Whether [`Runtime::prepare_pod`] does anything (a CRI sandbox); when
    /// not, and the pod has no ConfigMaps, Secrets or volumes, the agent
    /// starts its containers without preparing it.
    fn prepares_pods(&self) -> bool {
        false
    }
    /// Get the pod ready for its containers before they start (a CRI
    /// runtime runs its sandbox, with `pod_dir` as its log directory) and
    /// return the pod's own address, if it has one apart from the node's.
    fn prepare_pod(
        &self,
        _pod_uid: &str,
        _pod_dir: &Path,
    ) -> BoxFuture<'static, Result<Option<String>, RuntimeError>> {
        Box::pin(async { Ok(None) })
    }
    /// Every container of the pod has stopped and the pod goes: release
    /// what the pod held (a CRI sandbox, its network).
    fn stop_pod(&self, _pod_uid: &str) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
    /// Whether the runtime reports `Pulled`, `Created` and `Started` as
    /// [`RuntimeEvent::Progress`]: then a container counts as running (and
    /// is probed) from its `Started`; else from when `start` returns, and
    /// the agent records `Started` itself.
    fn reports_progress(&self) -> bool {
        false
    }
    /// Whether the agent runs the containers' probes (a hollow runtime has
    /// nothing to probe: its containers count as healthy).
    fn runs_probes(&self) -> bool {
        true
    }
    /// Events besides exits; taken once by the agent when it starts.
    fn events(&self) -> Option<mpsc::Receiver<RuntimeEvent>> {
        None
    }
    /// The network namespace file of a pod with one of its own that the
    /// agent can enter (port-forward connects to the pod's loopback in
    /// it); None: connect to the pod's IP.
    fn pod_netns(&self, _pod_uid: &str) -> Option<PathBuf> {
        None
    }
    /// Each running container's cumulative CPU time and memory in use
    /// ([`super::usage`]); a runtime that measures nothing: none.
    fn usage(&self) -> BoxFuture<'static, Result<Vec<super::usage::RawUsage>, RuntimeError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Whether [`Runtime::usage`] measures anything (and the machine's
    /// figures are worth reading beside it): a hollow runtime does not.
    fn measures_usage(&self) -> bool {
        true
    }
    /// The images the node holds (a runtime without images: none).
    fn images(&self) -> BoxFuture<'static, Result<Vec<NodeImage>, RuntimeError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    /// Run a command inside a running container and wait for it (at most
    /// `timeout`).
    fn exec(
        &self,
        _id: &str,
        _command: Vec<String>,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<ExecOutput, RuntimeError>> {
        Box::pin(async { Err(RuntimeError::Unsupported("exec")) })
    }
    /// Start a command inside a running container with its streams open
    /// (an exec session, `kubus exec -it`); it runs until it ends or the
    /// returned process is dropped.
    fn exec_stream(
        &self,
        _id: &str,
        _spec: ExecSpec,
    ) -> BoxFuture<'static, Result<ExecProcess, RuntimeError>> {
        Box::pin(async { Err(RuntimeError::Unsupported("interactive exec")) })
    }
    /// Attach a session to a running container's own process: its output
    /// from now on, and its stdin when `stdin` (`kubectl attach`, `kubus
    /// run -it`); dropping the process detaches, the container runs on.
    fn attach(
        &self,
        _id: &str,
        _stdin: bool,
    ) -> BoxFuture<'static, Result<ExecProcess, RuntimeError>> {
        Box::pin(async { Err(RuntimeError::Unsupported("attach")) })
    }
}
