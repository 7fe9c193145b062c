//! The seam between the node agent and whatever runs containers. The
//! `process` runtime is here now; `cri` (containerd) and `hollow` come next,
//! behind the same trait.

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

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
}

/// Runs containers. Exits are reported on the channel given at start.
pub trait Runtime: Send + Sync + 'static {
    /// A name for the Node's `containerRuntimeVersion`.
    fn version(&self) -> String;
    /// Start a container; returns its id.
    fn start(
        &self,
        spec: &ContainerSpec,
        exits: mpsc::Sender<Exited>,
    ) -> Result<String, RuntimeError>;
    /// Stop a container: a polite signal, then after `grace` a forced one.
    fn stop(&self, id: &str, grace: Duration) -> BoxFuture<'static, ()>;
    /// Stop whatever an earlier run of this agent left behind under `root`.
    fn clean_up_leftovers(&self) -> usize;
}
