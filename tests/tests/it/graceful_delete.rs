//! Graceful deletion of pods (issue 5, "graceful termination") with the
//! process runtime, through `kubus delete`: a pod bound to a node stays,
//! `Terminating` with a `deletionTimestamp`, while its processes get
//! SIGTERM; the node agent removes it once they have exited (long before
//! the grace period ends), or SIGKILLs them when the grace period runs out;
//! `--force` removes at once. A ReplicaSet's replacement does not wait for
//! the old pod to go.

use std::time::{Duration, Instant};

use kubus_tests::{alive, container_pids, wait_for, Cluster};
use serde_json::Value;

fn pod(c: &Cluster, name: &str) -> Option<Value> {
    c.items("pods")
        .into_iter()
        .find(|p| p["metadata"]["name"] == name)
}

fn running(c: &Cluster, name: &str) -> Option<Vec<i32>> {
    let p = pod(c, name)?;
    let ok = p["status"]["phase"] == "Running"
        && p["status"]["containerStatuses"][0]["state"]["running"].is_object();
    let pids = container_pids(&p);
    (ok && !pids.is_empty()).then_some(pids)
}

/// The STATUS column `kubus get pods` shows for `name`.
fn status_column(c: &Cluster, name: &str) -> Option<String> {
    let out = c.kubus(&["get", "pods"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: polite}
spec:
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "trap 'echo bye; sleep 2; exit 0' TERM; while true; do sleep 0.1; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: forced}
spec:
  containers:
  - name: app
    image: busybox
    command: ["sleep", "3600"]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 20
      containers:
      - name: app
        image: busybox
        command: ["sh", "-c", "trap 'sleep 3; exit 0' TERM; while true; do sleep 0.1; done"]
"#;

#[test]
fn pods_are_deleted_gracefully() {
    let c = Cluster::start();
    let out = c.apply(MANIFEST);
    assert!(out.status.success(), "{out:?}");
    let mut pids = std::collections::BTreeMap::new();
    for name in ["polite", "stubborn", "forced"] {
        let p = wait_for(Duration::from_secs(30), || running(&c, name))
            .unwrap_or_else(|| panic!("{name} not running: {:?}\n{}", pod(&c, name), c.log()));
        pids.insert(name, p);
    }

    // polite: Terminating until its process has exited on SIGTERM
    let t0 = Instant::now();
    let out = c.kubus(&["delete", "pod", "polite"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pod/polite deleted\n");
    let p = pod(&c, "polite").expect("still there while it stops");
    assert!(
        p["metadata"]["deletionTimestamp"].is_string(),
        "{:#}",
        p["metadata"]
    );
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(status_column(&c, "polite").as_deref(), Some("Terminating"));
    let said_bye = wait_for(Duration::from_secs(10), || {
        let out = c.kubus(&["logs", "polite"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("bye")
            .then_some(())
    });
    assert!(said_bye.is_some(), "no SIGTERM seen; log:\n{}", c.log());
    wait_for(Duration::from_secs(15), || {
        pod(&c, "polite").is_none().then_some(())
    })
    .unwrap_or_else(|| panic!("polite never went: {:?}\n{}", pod(&c, "polite"), c.log()));
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(12),
        "polite went after {took:?}: as its process exited, not at once, not after 30 s"
    );
    assert!(
        pids["polite"].iter().all(|p| !alive(*p)),
        "polite's process runs on"
    );

    // stubborn ignores SIGTERM: SIGKILLed when its 2 s are up
    let t1 = Instant::now();
    let out = c.kubus(&["delete", "pod", "stubborn"]);
    assert!(out.status.success(), "{out:?}");
    wait_for(Duration::from_secs(15), || {
        pod(&c, "stubborn").is_none().then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "stubborn never went: {:?}\n{}",
            pod(&c, "stubborn"),
            c.log()
        )
    });
    let took = t1.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "stubborn went after {took:?}, not after its 2 s grace"
    );
    assert!(
        pids["stubborn"].iter().all(|p| !alive(*p)),
        "stubborn runs on"
    );

    // --force: gone at once; the agent still stops its process
    let out = c.kubus(&["delete", "pod", "forced", "--force"]);
    assert!(out.status.success(), "{out:?}");
    assert!(pod(&c, "forced").is_none(), "forced is still listed");
    let stopped = wait_for(Duration::from_secs(10), || {
        pids["forced"].iter().all(|p| !alive(*p)).then_some(())
    });
    assert!(stopped.is_some(), "forced's process runs on");

    // a ReplicaSet's pod: its replacement runs while it terminates
    let web = |c: &Cluster| -> Vec<Value> {
        c.items("pods")
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "web")
            .collect()
    };
    let first = wait_for(Duration::from_secs(30), || {
        let pods = web(&c);
        let name = pods.first()?["metadata"]["name"].as_str()?.to_string();
        running(&c, &name).map(|_| name)
    })
    .unwrap_or_else(|| panic!("web never ran: {:?}\n{}", web(&c), c.log()));
    let out = c.kubus(&["delete", "pod", &first]);
    assert!(out.status.success(), "{out:?}");
    let both = wait_for(Duration::from_secs(10), || {
        let pods = web(&c);
        let old = pods
            .iter()
            .find(|p| p["metadata"]["name"] == first.as_str())?;
        let new = pods
            .iter()
            .find(|p| p["metadata"]["name"] != first.as_str())?;
        let name = new["metadata"]["name"].as_str()?.to_string();
        (old["metadata"]["deletionTimestamp"].is_string() && running(&c, &name).is_some())
            .then_some(())
    });
    assert!(
        both.is_some(),
        "no replacement while the old pod terminates: {:#?}\n{}",
        web(&c),
        c.log()
    );
    wait_for(Duration::from_secs(15), || {
        (web(&c).len() == 1).then_some(())
    })
    .unwrap_or_else(|| panic!("the old web pod never went: {:#?}", web(&c)));
}
