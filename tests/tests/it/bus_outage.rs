//! The node agent keeps running when the bus is gone (issue 5): with
//! nats-server frozen for 60 s, running containers keep running (same
//! processes, no restarts) while a crashing one is still restarted by the
//! agent on its own, and once the bus is back the status written during the
//! outage catches up.

use std::time::Duration;

use kubus_tests::{alive, container_pids, running, signal, wait_for, Cluster};
use serde_json::Value;

const MANIFEST: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: steady}
spec:
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "while true; do sleep 1; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: flaky}
spec:
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "sleep 5; exit 1"]
"#;

const OUTAGE: Duration = Duration::from_secs(60);
const CATCH_UP: Duration = Duration::from_secs(15);

fn pod<'a>(pods: &'a [Value], name: &str) -> Option<&'a Value> {
    pods.iter().find(|p| p["metadata"]["name"] == name)
}

fn restarts(pod: &Value) -> u64 {
    pod["status"]["containerStatuses"][0]["restartCount"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn pods_keep_running_without_the_bus_and_status_catches_up() {
    let cluster = Cluster::start();
    let out = cluster.apply(MANIFEST);
    assert!(out.status.success(), "apply: {out:?}");
    // the outage starts once both ran (flaky's back-off then puts at
    // least two restarts inside it: 10 s, then 20 s after 5 s runs)
    let (steady_pid, before) = wait_for(Duration::from_secs(60), || {
        let pods = cluster.items("pods");
        let steady = running(&pods)
            .into_iter()
            .find(|p| p["metadata"]["name"] == "steady")?;
        let flaky = pod(&pods, "flaky")?;
        let status = &flaky["status"]["containerStatuses"][0];
        let started = status["state"]["running"].is_object()
            || status["state"]["terminated"].is_object()
            || status["lastState"]["terminated"].is_object();
        started.then_some((*container_pids(steady).first()?, restarts(flaky)))
    })
    .unwrap_or_else(|| panic!("steady and flaky never both ran; log:\n{}", cluster.log()));

    let nats = cluster.nats_pid.expect("kubus up records its nats-server");
    signal(nats, "-STOP");
    std::thread::sleep(OUTAGE);
    let steady_alive = alive(steady_pid);
    signal(nats, "-CONT");
    assert!(
        steady_alive,
        "the steady container died while the bus was down"
    );

    // the restarts the agent made during the outage reach the store soon
    // (two restarts take at least 20 s of crash-loop back-off after the
    // outage, so an agent that waited for the bus could not pass this)
    let caught_up = wait_for(CATCH_UP, || {
        let pods = cluster.items("pods");
        let flaky = pod(&pods, "flaky")?;
        let steady = pod(&pods, "steady")?;
        (restarts(flaky) >= before + 2).then(|| (restarts(steady), container_pids(steady)))
    });
    let Some((steady_restarts, steady_pids)) = caught_up else {
        panic!(
            "flaky's restarts during the outage never showed (was {before}); log:\n{}",
            cluster.log()
        );
    };
    assert_eq!(steady_restarts, 0, "the steady container was restarted");
    assert_eq!(
        steady_pids,
        vec![steady_pid],
        "the steady container is a new process"
    );
    assert!(alive(steady_pid));
}
