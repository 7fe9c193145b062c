//! Drain, the eviction subresource and rebalance (issue 20) on process
//! worker mesh nodes: an eviction a PodDisruptionBudget does not allow is
//! refused with Kubernetes' words; `kubus drain` refuses a node with
//! DaemonSet pods unless told to ignore them, gives up at its timeout
//! naming the pods left, and otherwise waits while the budget allows no
//! disruption and proceeds as replacements become Ready — never leaving
//! fewer healthy replicas than the budget asks; `kubus rebalance` plans
//! and then moves pods from a crowded node to one that joined later.

use std::process::Command;
use std::time::{Duration, Instant};

use kubus_api::{Kind, ObjectRef, Reason};
use kubus_bus::client::EvictOptions;
use kubus_tests::{kubus_bin, wait_for, Cluster, Proc};
use serde_json::{json, Value};

fn applied(c: &Cluster, manifest: &str) {
    let out = c.apply(manifest);
    assert!(
        out.status.success(),
        "apply: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn node(c: &Cluster, name: &str) -> Option<Value> {
    c.items("nodes")
        .into_iter()
        .find(|n| n["metadata"]["name"] == name)
}

fn node_ready(c: &Cluster, name: &str) -> bool {
    node(c, name).is_some_and(|n| {
        n["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
    })
}

/// Start worker `name` and wait until its node is Ready.
fn join(c: &Cluster, name: &str) -> Proc {
    let w = c.worker(name);
    wait_for(Duration::from_secs(30), || {
        node_ready(c, name).then_some(())
    })
    .unwrap_or_else(|| panic!("{name} did not join\n{}", w.log_tail()));
    w
}

fn is_ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// The app's pods that run, are Ready and are not going: (name, node).
fn healthy(c: &Cluster, app: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = c
        .items("pods")
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app)
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| p["status"]["phase"] == "Running" && is_ready(p))
        .map(|p| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (s(&p["metadata"]["name"]), s(&p["spec"]["nodeName"]))
        })
        .collect();
    v.sort();
    v
}

fn budget(c: &Cluster, name: &str) -> Value {
    c.items("pdb")
        .into_iter()
        .find(|b| b["metadata"]["name"] == name)
        .unwrap_or(Value::Null)
}

/// Wait until the budget's status is current and allows `allowed`.
fn budget_allows(c: &Cluster, name: &str, allowed: i64) {
    wait_for(Duration::from_secs(30), || {
        let b = budget(c, name);
        let current = b["status"]["observedGeneration"] == b["metadata"]["generation"];
        (current && b["status"]["disruptionsAllowed"] == allowed).then_some(())
    })
    .unwrap_or_else(|| panic!("budget {name} never allowed {allowed}: {}", budget(c, name)));
}

/// Three replicas that turn Ready two seconds after they start, and a
/// budget that keeps two of them.
const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "while true; do sleep 1; done"]
        resources: {requests: {cpu: 10m, memory: 16Mi}}
        readinessProbe:
          exec: {command: ["true"]}
          initialDelaySeconds: 2
          periodSeconds: 1
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web-pdb}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
"#;

const AGENT: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: agent
        image: busybox
        command: ["sh", "-c", "while true; do sleep 1; done"]
"#;

/// `kubus ARGS` that must fail: what it printed.
fn kubus_fails(c: &Cluster, args: &[&str]) -> String {
    let out = c.kubus(args);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "kubus {args:?} succeeded: {said}");
    said
}

#[test]
fn drain_waits_for_the_budget_and_moves_every_replica() {
    let c = Cluster::start();
    let own = c.items("nodes")[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // only the workers take the app's pods
    c.kubus_ok(&["cordon", &own]);
    let w1 = join(&c, "w1");
    applied(&c, WEB);
    applied(&c, AGENT);
    wait_for(Duration::from_secs(60), || {
        let h = healthy(&c, "web");
        (h.len() == 3 && h.iter().all(|(_, n)| n == "w1")).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "web not Ready on w1: {:?}\n{}",
            c.items("pods"),
            w1.log_tail()
        )
    });
    wait_for(Duration::from_secs(60), || {
        healthy(&c, "agent")
            .iter()
            .any(|(_, n)| n == "w1")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no daemon pod on w1: {:?}", c.items("pods")));
    budget_allows(&c, "web-pdb", 1);

    // an eviction the budget does not allow: Kubernetes' 429 and words
    let (rt, client) = c.bus_client();
    let pdb = ObjectRef::new(Kind::PodDisruptionBudget, Some("default"), "web-pdb");
    rt.block_on(client.patch(&pdb, json!({"spec": {"minAvailable": 3}})))
        .expect("patch the budget");
    budget_allows(&c, "web-pdb", 0);
    let victim = healthy(&c, "web")[0].0.clone();
    let pod = ObjectRef::new(Kind::Pod, Some("default"), &victim);
    let refused = rt
        .block_on(client.evict(&pod, EvictOptions::default()))
        .expect_err("the budget allows no disruption");
    assert_eq!(refused.reason(), Some(Reason::TooManyRequests), "{refused}");
    let said = refused.to_string();
    assert!(
        said.contains("Cannot evict pod as it would violate the pod's disruption budget.")
            && said.contains("web-pdb needs 3 healthy pods and has 3 currently"),
        "{said}"
    );
    assert_eq!(healthy(&c, "web").len(), 3, "nothing was evicted");
    rt.block_on(client.patch(&pdb, json!({"spec": {"minAvailable": 2}})))
        .expect("patch the budget back");
    budget_allows(&c, "web-pdb", 1);

    // a node with daemon pods is refused without --ignore-daemonsets (it
    // is cordoned all the same, as kubectl does)
    let said = kubus_fails(&c, &["drain", "w1"]);
    assert!(said.contains("node/w1 cordoned"), "{said}");
    assert!(
        said.contains(
            "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/agent-"
        ) && said.contains("There are pending nodes to be drained:"),
        "{said}"
    );
    assert_eq!(
        healthy(&c, "web").len(),
        3,
        "a refused drain evicts nothing"
    );
    assert_eq!(
        node(&c, "w1").map(|n| n["spec"]["unschedulable"].clone()),
        Some(json!(true))
    );

    // a dry run says what would go and changes nothing
    let said = c.kubus_ok(&["drain", "w1", "--ignore-daemonsets", "--dry-run"]);
    assert!(
        said.contains("evicting pod default/web-") && said.contains("node/w1 drained (dry run)"),
        "{said}"
    );
    assert_eq!(healthy(&c, "web").len(), 3, "a dry run evicts nothing");

    // no room anywhere for replacements: one eviction is granted, the
    // others wait on the budget until the timeout, which names them
    let said = kubus_fails(&c, &["drain", "w1", "--ignore-daemonsets", "--timeout=8s"]);
    assert!(
        said.contains("Warning: ignoring DaemonSet-managed Pods: default/agent-"),
        "{said}"
    );
    assert!(
        said.contains("(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."),
        "{said}"
    );
    assert!(
        said.contains("drain did not complete within 8s:")
            && said.contains("pod(s) left on node w1")
            && said.contains("(waiting to be evicted)"),
        "{said}"
    );

    // a new worker: the replacement runs there, and a full drain proceeds
    // one eviction at a time, never below the budget's two healthy pods
    let w2 = join(&c, "w2");
    wait_for(Duration::from_secs(60), || {
        (healthy(&c, "web").len() == 3).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no replacement on w2: {:?}\n{}",
            c.items("pods"),
            w2.log_tail()
        )
    });
    let log = c.dir.path().join("drain.log");
    let drain = Proc::spawn(
        Command::new(kubus_bin())
            .args(["drain", "w1", "--ignore-daemonsets", "--timeout=180s"])
            .env("KUBUS_HOME", c.home())
            .env_remove("KUBUS_NATS"),
        &log,
    );
    let pid = drain.pid().unwrap_or_default();
    let started = Instant::now();
    let mut fewest = usize::MAX;
    while kubus_tests::alive(i32::try_from(pid).unwrap_or_default())
        && started.elapsed() < Duration::from_secs(200)
    {
        fewest = fewest.min(healthy(&c, "web").len());
        std::thread::sleep(Duration::from_millis(100));
    }
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(said.contains("node/w1 drained"), "{said}");
    assert!(
        fewest >= 2,
        "only {fewest} healthy replicas during the drain: {said}"
    );
    assert!(
        said.contains("error when evicting pods/\"web-")
            && said.contains(
                "(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."
            ),
        "the drain never waited for the budget: {said}"
    );
    let evicted = said
        .lines()
        .filter(|l| l.starts_with("pod/web-") && l.ends_with(" evicted"))
        .count();
    assert_eq!(evicted, 2, "the two replicas left on w1 evicted: {said}");
    // drain waits for the evicted pods to be gone, not for their
    // replacements: the last one turns Ready on w2 soon after
    wait_for(Duration::from_secs(30), || {
        let placed = healthy(&c, "web");
        (placed.len() == 3 && placed.iter().all(|(_, n)| n == "w2")).then_some(())
    })
    .unwrap_or_else(|| panic!("web not on w2: {:?}", healthy(&c, "web")));
    // daemon pods stay where they are
    assert!(
        healthy(&c, "agent").iter().any(|(_, n)| n == "w1"),
        "{:?}",
        c.items("pods")
    );
    assert_eq!(
        node(&c, "w1").map(|n| n["spec"]["unschedulable"].clone()),
        Some(json!(true))
    );
    drop(drain);
}

/// A Deployment whose 4 pods each request a tenth of a worker's cpu.
fn crowd(cpu_millis: i64) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: crowd}}
spec:
  replicas: 4
  selector: {{matchLabels: {{app: crowd}}}}
  template:
    metadata: {{labels: {{app: crowd}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "while true; do sleep 1; done"]
        resources: {{requests: {{cpu: {cpu_millis}m, memory: 16Mi}}}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {{name: crowd-pdb}}
spec:
  maxUnavailable: 1
  selector: {{matchLabels: {{app: crowd}}}}
"#
    )
}

#[test]
fn rebalance_moves_pods_to_a_node_that_joined_later() {
    let c = Cluster::start();
    let own = c.items("nodes")[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    c.kubus_ok(&["cordon", &own]);
    let w1 = join(&c, "w1");
    let cpu = node(&c, "w1")
        .and_then(|n| {
            n["status"]["allocatable"]["cpu"]
                .as_str()
                .map(str::to_string)
        })
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(1);
    applied(&c, &crowd(cpu * 1000 / 10));
    wait_for(Duration::from_secs(60), || {
        (healthy(&c, "crowd").len() == 4).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "crowd not Running: {:?}\n{}",
            c.items("pods"),
            w1.log_tail()
        )
    });
    let _w2 = join(&c, "w2");

    let said = c.kubus_ok(&["rebalance", "--dry-run"]);
    assert!(
        said.contains("POD") && said.contains("FROM") && said.contains("TO-LIKELY"),
        "{said}"
    );
    let planned: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("default/crowd-"))
        .collect();
    assert_eq!(planned.len(), 2, "two moves even the nodes out: {said}");
    assert!(
        planned.iter().all(|l| l.contains("w1") && l.contains("w2")),
        "{said}"
    );
    assert!(said.contains("(dry run: nothing was evicted)"), "{said}");
    assert!(
        healthy(&c, "crowd").iter().all(|(_, n)| n == "w1"),
        "a dry run moves nothing"
    );

    let said = c.kubus_ok(&["rebalance", "--move-timeout=120s"]);
    assert!(said.contains("rebalanced: 2 pod(s) moved"), "{said}");
    let placed = wait_for(Duration::from_secs(30), || {
        let h = healthy(&c, "crowd");
        let on = |w: &str| h.iter().filter(|(_, n)| n == w).count();
        (h.len() == 4 && on("w1") == 2 && on("w2") == 2).then_some(h)
    })
    .unwrap_or_else(|| panic!("not spread: {:?}\n{said}", healthy(&c, "crowd")));
    assert_eq!(placed.len(), 4);
    // balanced now: nothing more to move
    let said = c.kubus_ok(&["rebalance", "--dry-run"]);
    assert!(said.contains("Nothing to move"), "{said}");
}
