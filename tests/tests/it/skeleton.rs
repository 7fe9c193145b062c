//! The walking skeleton, end to end through real processes: a Deployment
//! becomes running processes; they are restarted, replaced, rolled and
//! deleted; the cluster survives a restart on the same data directory.
//! See issue 2.

use std::time::Duration;

use kubus_tests::{alive, container_pids, running, wait_for, Cluster};
use serde_json::Value;

fn deployment(command: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: sleeper
spec:
  replicas: 3
  selector:
    matchLabels: {{app: sleeper}}
  template:
    metadata:
      labels: {{app: sleeper}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "{command}"]
"#
    )
}

const LOOP_V1: &str = "echo started v1; while true; do sleep 1; done";
const LOOP_V2: &str = "echo started v2; while true; do sleep 1; done";

fn pods_of(c: &Cluster, app: &str) -> Vec<Value> {
    c.items("pods")
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app)
        .collect()
}

fn wait_running(c: &Cluster, n: usize, timeout: Duration) -> Vec<Value> {
    wait_for(timeout, || {
        let pods = pods_of(c, "sleeper");
        let r: Vec<Value> = running(&pods).into_iter().cloned().collect();
        (r.len() == n && pods.len() == n).then_some(r)
    })
    .unwrap_or_else(|| {
        let out = c.kubus(&["get", "pods", "-o", "wide"]);
        panic!(
            "{n} pods not Running in {timeout:?}:\n{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            c.log()
        )
    })
}

fn name(v: &Value) -> String {
    v["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_deployment_runs_restarts_rolls_and_goes() {
    let c = Cluster::start();
    let out = c.apply(&deployment(LOOP_V1));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deployment.apps/sleeper created"
    );

    // 3 pods Running within 5 s, and `kubus get pods` says so in kubectl's columns
    let pods = wait_running(&c, 3, Duration::from_secs(5));
    let table = String::from_utf8_lossy(&c.kubus(&["get", "pods"]).stdout).to_string();
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|h| h.split_whitespace().collect::<Vec<_>>()
                == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
        "{table}"
    );
    assert_eq!(table.matches("Running").count(), 3, "{table}");

    // logs come back through the node agent
    let victim = pods[0].clone();
    let logs = c.kubus(&["logs", &name(&victim)]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("started v1"),
        "{logs:?}"
    );

    // killing a container's process: it is restarted, RESTARTS goes up
    let pids = container_pids(&victim);
    assert_eq!(pids.len(), 1);
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pids[0].to_string()])
        .status();
    let restarted = wait_for(Duration::from_secs(10), || {
        let p = pods_of(&c, "sleeper")
            .into_iter()
            .find(|p| name(p) == name(&victim))?;
        let cs = &p["status"]["containerStatuses"][0];
        (cs["restartCount"] == 1 && cs["ready"] == true).then_some(p)
    })
    .unwrap_or_else(|| panic!("container not restarted; log:\n{}", c.log()));
    assert_ne!(container_pids(&restarted), pids);
    let table = String::from_utf8_lossy(&c.kubus(&["get", "pods"]).stdout).to_string();
    let row = table
        .lines()
        .find(|l| l.starts_with(&name(&victim)))
        .unwrap_or_default()
        .to_string();
    assert_eq!(row.split_whitespace().nth(3), Some("1"), "{table}");

    // deleting a pod: a replacement appears, and the deleted pod's process stops
    let gone = pods[1].clone();
    let gone_pids = container_pids(&gone);
    let out = c.kubus(&["delete", "pod", &name(&gone)]);
    assert!(out.status.success(), "{out:?}");
    let now = wait_running(&c, 3, Duration::from_secs(10));
    assert!(now.iter().all(|p| name(p) != name(&gone)));
    assert!(wait_for(Duration::from_secs(10), || gone_pids
        .iter()
        .all(|p| !alive(*p))
        .then_some(()))
    .is_some());

    // a changed command: every pod is replaced by a pod of a new ReplicaSet
    let old_hash = now[0]["metadata"]["labels"]["pod-template-hash"].clone();
    let old_pids: Vec<i32> = now.iter().flat_map(container_pids).collect();
    let out = c.apply(&deployment(LOOP_V2));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deployment.apps/sleeper configured"
    );
    let rolled = wait_for(Duration::from_secs(30), || {
        let pods = pods_of(&c, "sleeper");
        let r = running(&pods);
        (pods.len() == 3
            && r.len() == 3
            && r.iter()
                .all(|p| p["metadata"]["labels"]["pod-template-hash"] != old_hash))
        .then(|| pods.clone())
    })
    .unwrap_or_else(|| panic!("rollout did not finish; log:\n{}", c.log()));
    let new_hash = rolled[0]["metadata"]["labels"]["pod-template-hash"].clone();
    assert_ne!(new_hash, old_hash);
    let logs = c.kubus(&["logs", &name(&rolled[0])]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("started v2"));
    let logs = c.kubus(&["logs", "deployment/sleeper"]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("started v2"),
        "{logs:?}"
    );
    assert!(wait_for(Duration::from_secs(10), || old_pids
        .iter()
        .all(|p| !alive(*p))
        .then_some(()))
    .is_some());
    let sets = c.items("replicasets");
    assert_eq!(sets.len(), 2, "the old ReplicaSet is kept at 0 as history");
    assert!(sets.iter().any(|rs| rs["spec"]["replicas"] == 0));

    // deleting the Deployment: ReplicaSets, pods and processes all go
    let last_pids: Vec<i32> = rolled.iter().flat_map(container_pids).collect();
    let out = c.kubus(&["delete", "deployment", "sleeper"]);
    assert!(out.status.success(), "{out:?}");
    wait_for(Duration::from_secs(15), || {
        (c.items("replicasets").is_empty() && pods_of(&c, "sleeper").is_empty()).then_some(())
    })
    .unwrap_or_else(|| panic!("owned objects not collected; log:\n{}", c.log()));
    assert!(wait_for(Duration::from_secs(10), || last_pids
        .iter()
        .all(|p| !alive(*p))
        .then_some(()))
    .is_some());
}

#[test]
fn objects_survive_restarts_and_are_reconciled_again() {
    let mut c = Cluster::start();
    let out = c.apply(&deployment(LOOP_V1));
    assert!(out.status.success(), "{out:?}");
    let before = wait_running(&c, 3, Duration::from_secs(10));
    let pids: Vec<i32> = before.iter().flat_map(container_pids).collect();

    // a clean stop stops every container
    c.stop();
    assert!(pids.iter().all(|p| !alive(*p)), "containers outlived kubus");
    c.launch();
    assert_eq!(c.items("deployments").len(), 1);
    let after = wait_running(&c, 3, Duration::from_secs(15));
    let names = |v: &[Value]| {
        let mut n: Vec<String> = v.iter().map(name).collect();
        n.sort();
        n
    };
    assert_eq!(names(&after), names(&before), "the same pods run again");

    // kill -9: nothing acknowledged is lost, leftovers are cleaned up
    let pids: Vec<i32> = after.iter().flat_map(container_pids).collect();
    c.kill9();
    c.launch();
    assert!(
        wait_for(Duration::from_secs(10), || pids
            .iter()
            .all(|p| !alive(*p))
            .then_some(()))
        .is_some(),
        "the restarted agent must stop containers its killed predecessor left"
    );
    assert_eq!(c.items("deployments").len(), 1);
    assert_eq!(
        names(&wait_running(&c, 3, Duration::from_secs(15))),
        names(&before)
    );
}

#[test]
fn a_container_without_a_command_says_why() {
    let c = Cluster::start();
    let out = c.apply(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: imageonly}\nspec:\n  containers:\n  - {name: web, image: nginx}\n",
    );
    assert!(out.status.success(), "{out:?}");
    let pod = wait_for(Duration::from_secs(10), || {
        let p = c
            .items("pods")
            .into_iter()
            .find(|p| name(p) == "imageonly")?;
        (p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CommandRequired")
            .then_some(p)
    })
    .unwrap_or_else(|| panic!("no CommandRequired status; log:\n{}", c.log()));
    let msg = pod["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(msg.contains("no command"), "{msg}");
    let table = String::from_utf8_lossy(&c.kubus(&["get", "pods"]).stdout).to_string();
    assert!(table.contains("CommandRequired"), "{table}");
}
