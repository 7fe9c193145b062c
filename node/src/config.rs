//! Where things live on this machine: the data directory, and the file in
//! which `kubus up` records how clients reach the cluster.

use std::path::PathBuf;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What `kubus up` records for clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Current {
    pub nats: String,
    pub cluster: String,
    pub data_dir: PathBuf,
    pub pid: u32,
    /// The pid of the nats-server child, when `kubus up` started one.
    #[serde(default)]
    pub nats_pid: Option<u32>,
    /// The Kubernetes API's URL, when it is served.
    #[serde(default)]
    pub api: Option<String>,
    /// The kubeconfig written for it.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The URL of the node's HTTP endpoint (/metrics), when it is served.
    #[serde(default)]
    pub http: Option<String>,
    /// The administrator's bus credentials, when the bus has kubus's
    /// accounts.
    #[serde(default)]
    pub credentials: Option<PathBuf>,
}

pub fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from)
}

/// `~/.kubus`, or `$KUBUS_HOME`.
pub fn kubus_home() -> PathBuf {
    std::env::var_os("KUBUS_HOME").map_or_else(|| home().join(".kubus"), PathBuf::from)
}

pub fn default_data_dir() -> PathBuf {
    kubus_home().join("data")
}

fn current_path() -> PathBuf {
    kubus_home().join("current.json")
}

pub fn write_current(c: &Current) -> anyhow::Result<()> {
    let path = current_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(c)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub fn read_current() -> Option<Current> {
    let bytes = std::fs::read(current_path()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Forget the recorded cluster, if it is the one this process recorded.
pub fn clear_current(pid: u32) {
    if read_current().is_some_and(|c| c.pid == pid) {
        let _ = std::fs::remove_file(current_path());
    }
}

/// The node name to use when none is given: the host name.
pub fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if name.is_empty() {
        "node-1".to_string()
    } else {
        name
    }
}
