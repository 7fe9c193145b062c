//! The `hollow` runtime: no processes at all. A container "runs" from the
//! moment it is started until it is stopped, so one `kubus` process can
//! host many node agents for scale and performance tests (like kubemark's
//! hollow nodes or kwok). The delay before a container counts as running is
//! the node agent's `ready_delay`; a container whose command is `true`
//! (or `false`) exits 0 (or 1) twice that long after it started, which is
//! how a Job runs on hollow nodes. Nothing outlives the agent's process, so
//! a restarted agent has nothing to adopt: its pods are simply run again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::runtime::{ContainerSpec, Exited, Runtime, RuntimeError};

/// A running hollow container: who to tell when it stops.
type Running = HashMap<String, (Exited, mpsc::Sender<Exited>)>;

#[derive(Debug, Default, Clone)]
pub struct HollowRuntime {
    next_id: Arc<AtomicU64>,
    running: Arc<Mutex<Running>>,
    ready_delay: Duration,
}

impl HollowRuntime {
    pub fn new(ready_delay: Duration) -> HollowRuntime {
        HollowRuntime {
            ready_delay,
            ..HollowRuntime::default()
        }
    }

    /// Containers running now.
    pub fn running(&self) -> usize {
        self.running.lock().map_or(0, |r| r.len())
    }
}

impl Runtime for HollowRuntime {
    fn version(&self) -> String {
        format!("hollow://kubus-{}", env!("CARGO_PKG_VERSION"))
    }

    fn ready_delay(&self) -> Duration {
        self.ready_delay
    }

    fn start(
        &self,
        spec: &ContainerSpec,
        exits: mpsc::Sender<Exited>,
    ) -> Result<String, RuntimeError> {
        let id = format!("hollow-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let exited = Exited {
            pod_uid: spec.pod_uid.clone(),
            container: spec.container.clone(),
            id: id.clone(),
            code: 143,
            reason: "Signal 15".to_string(),
        };
        // `true` and `false` end by themselves (Job pods on hollow nodes)
        let ends = match spec.command.as_slice() {
            [c] if c == "true" => Some((0, "Completed")),
            [c] if c == "false" => Some((1, "Error")),
            _ => None,
        };
        if let Ok(mut r) = self.running.lock() {
            r.insert(id.clone(), (exited, exits));
        }
        if let Some((code, reason)) = ends {
            let (running, id, after) = (self.running.clone(), id.clone(), self.ready_delay * 2);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let entry = running.lock().ok().and_then(|mut r| r.remove(&id));
                if let Some((mut exited, exits)) = entry {
                    exited.code = code;
                    exited.reason = reason.to_string();
                    let _ = exits.send(exited).await;
                }
            });
        }
        Ok(id)
    }

    fn stop(&self, id: &str, _grace: Duration) -> BoxFuture<'static, ()> {
        let entry = self.running.lock().ok().and_then(|mut r| r.remove(id));
        Box::pin(async move {
            if let Some((exited, exits)) = entry {
                let _ = exits.send(exited).await;
            }
        })
    }

    fn runs_probes(&self) -> bool {
        false
    }

    fn measures_usage(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn containers_run_until_stopped() {
        let rt = HollowRuntime::new(Duration::from_millis(5));
        let (tx, mut rx) = mpsc::channel(4);
        let spec = ContainerSpec {
            pod_uid: "u".into(),
            namespace: "default".into(),
            pod: "p".into(),
            container: "c".into(),
            command: vec![],
            args: vec![],
            env: vec![],
            working_dir: None,
            log_path: "/nonexistent/hollow.log".into(),
            mounts: vec![],
            stdin: false,
            stdin_once: false,
            tty: false,
        };
        let a = rt.start(&spec, tx.clone()).expect("start");
        let b = rt.start(&spec, tx).expect("start");
        assert_ne!(a, b);
        assert_eq!(rt.running(), 2);
        rt.stop(&a, Duration::ZERO).await;
        let exit = rx.recv().await.expect("exit");
        assert_eq!((exit.id, exit.code), (a, 143));
        assert_eq!(rt.running(), 1);
        assert_eq!(rt.ready_delay(), Duration::from_millis(5));
    }
}
