//! `/metrics` (issue 23): what `kubus up` serves parses with Prometheus'
//! own parsers (the Python client's OpenMetrics parser and its classic
//! text-format parser), and the named series move when the cluster works:
//! API requests by verb, resource and code, Raft proposals and applies,
//! scheduling attempts and the SLI, pod starts, work queues, leader
//! election, the watch delay and the service proxy's connections.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use kubus_tests::{http_get, output_with_input, running, wait_for, Cluster};
use serde_json::Value;

const PORT: u16 = 18191;

/// Parses the text with both of the Python client's parsers (either fails
/// on text it cannot read); the samples (name, labels, value) as the
/// OpenMetrics parser reads them.
const PARSE: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic
text = sys.stdin.read()
classic_families = list(classic(text))
samples = []
families = 0
for f in openmetrics(text):
    families += 1
    for s in f.samples:
        samples.append([s.name, s.labels, s.value])
json.dump({"families": families, "classic": len(classic_families), "samples": samples}, sys.stdout)
"#;

fn manifest() -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: sleepers}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: sleepers}}}}
  template:
    metadata: {{labels: {{app: sleepers}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: ["sleep", "3600"]
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        command: ["sh", "-c", "d=$(mktemp -d) && echo up > $d/index.html && exec busybox httpd -f -p 127.0.0.1:{PORT} -h $d"]
        ports: [{{name: http, containerPort: {PORT}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#
    )
}

/// One sample's labels and value.
type Sample = (BTreeMap<String, String>, f64);

/// The samples of one scrape, by name.
struct Scrape(BTreeMap<String, Vec<Sample>>);

impl Scrape {
    /// The sum of the samples named `name` whose labels include `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .get(name)
            .map(|samples| {
                samples
                    .iter()
                    .filter(|(l, _)| {
                        labels
                            .iter()
                            .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
                    })
                    .map(|(_, v)| v)
                    .sum()
            })
            .unwrap_or(0.0)
    }
}

fn scrape(addr: SocketAddr) -> Scrape {
    let text = http_get(addr, "/metrics", Duration::from_secs(5)).expect("GET /metrics answers");
    assert!(text.ends_with("# EOF\n"), "not OpenMetrics: {text:.300}");
    let out = output_with_input(
        Command::new("python3")
            .args(["-c", PARSE])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        &text,
    );
    assert!(
        out.status.success(),
        "Prometheus' parsers refused the text: {}\n{text:.2000}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).expect("parser output");
    assert!(parsed["families"].as_u64() > Some(20), "{parsed:.300}");
    // the classic parser reads it too (it takes the OpenMetrics suffixes
    // for families of their own, so it counts more)
    assert!(parsed["classic"].as_u64() >= parsed["families"].as_u64());
    let mut by_name: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for s in parsed["samples"].as_array().into_iter().flatten() {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(s[1].clone()).unwrap_or_default();
        by_name
            .entry(s[0].as_str().unwrap_or_default().to_string())
            .or_default()
            .push((labels, s[2].as_f64().unwrap_or(f64::NAN)));
    }
    Scrape(by_name)
}

#[test]
fn metrics_parse_and_move_when_the_cluster_works() {
    let c = Cluster::start_with(&["--http-address", "127.0.0.1:0"]);
    let addr = c.http_addr();
    assert_eq!(
        http_get(addr, "/healthz", Duration::from_secs(5)).as_deref(),
        Some("ok\n")
    );
    let missing = http_get(addr, "/nothing", Duration::from_secs(5)).unwrap_or_default();
    assert!(missing.contains("/metrics or /healthz"), "{missing}");

    // leadership settles within the lease's first renewals
    let before = wait_for(Duration::from_secs(30), || {
        let s = scrape(addr);
        (s.sum(
            "leader_election_master_status",
            &[("name", "kube-scheduler")],
        ) == 1.0)
            .then_some(s)
    })
    .unwrap_or_else(|| panic!("never led; log:\n{}", c.log()));
    assert_eq!(before.sum("kubus_raft_is_leader", &[]), 1.0);
    assert_eq!(before.sum("kubus_raft_has_leader", &[]), 1.0);
    assert!(before.sum("process_resident_memory_bytes", &[]) > 1e6);

    let out = c.apply(&manifest());
    assert!(out.status.success(), "apply: {out:?}");
    wait_for(Duration::from_secs(60), || {
        (running(&c.items("pods")).len() == 4).then_some(())
    })
    .unwrap_or_else(|| panic!("pods never ran; log:\n{}", c.log()));
    // a request the store refuses: counted under its code
    let _ = c.kubus(&["get", "pod", "no-such-pod"]);
    // a connection through the proxy's node port
    let svc: Value = serde_json::from_slice(&c.kubus(&["get", "svc", "web", "-o", "json"]).stdout)
        .expect("service");
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .expect("node port");
    let through = SocketAddr::from(([127, 0, 0, 1], node_port));
    wait_for(Duration::from_secs(30), || {
        http_get(through, "/", Duration::from_secs(2)).filter(|b| b.starts_with("up"))
    })
    .unwrap_or_else(|| panic!("the node port never answered; log:\n{}", c.log()));

    let after = wait_for(Duration::from_secs(30), || {
        let s = scrape(addr);
        (s.sum("kubelet_pod_start_duration_seconds_count", &[])
            >= before.sum("kubelet_pod_start_duration_seconds_count", &[]) + 4.0)
            .then_some(s)
    })
    .unwrap_or_else(|| panic!("pod starts never counted; log:\n{}", c.log()));
    let moved = |name: &str, labels: &[(&str, &str)], by: f64| {
        let (b, a) = (before.sum(name, labels), after.sum(name, labels));
        assert!(a >= b + by, "{name}{labels:?}: {b} → {a}, expected +{by}");
    };
    moved(
        "apiserver_request_total",
        &[("verb", "POST"), ("resource", "pods"), ("code", "201")],
        4.0,
    );
    moved(
        "apiserver_request_total",
        &[("verb", "GET"), ("resource", "pods"), ("code", "404")],
        1.0,
    );
    moved(
        "apiserver_request_duration_seconds_count",
        &[("verb", "PUT"), ("resource", "pods")],
        3.0,
    );
    moved("kubus_raft_proposal_duration_seconds_count", &[], 10.0);
    moved("kubus_raft_entries_applied_total", &[], 10.0);
    moved("kubus_raft_log_persist_duration_seconds_count", &[], 1.0);
    moved("kubus_store_revision", &[], 10.0);
    moved(
        "scheduler_schedule_attempts_total",
        &[("result", "scheduled")],
        3.0,
    );
    moved(
        "scheduler_pod_scheduling_sli_duration_seconds_count",
        &[],
        3.0,
    );
    moved("kubelet_running_pods", &[], 4.0);
    moved(
        "workqueue_adds_total",
        &[("name", "replicaset-controller")],
        1.0,
    );
    moved(
        "workqueue_work_duration_seconds_count",
        &[("name", "deployment-controller")],
        1.0,
    );
    moved(
        "kubus_watch_delay_seconds_count",
        &[("resource", "pods")],
        3.0,
    );
    moved(
        "kubus_change_events_published_total",
        &[("resource", "pods")],
        3.0,
    );
    moved("kubus_proxy_connections_total", &[("protocol", "TCP")], 1.0);
    // a histogram's buckets are cumulative and end at +Inf = count
    let inf = after.sum(
        "kubus_raft_proposal_duration_seconds_bucket",
        &[("le", "+Inf")],
    );
    assert_eq!(
        inf,
        after.sum("kubus_raft_proposal_duration_seconds_count", &[])
    );
    assert_eq!(after.sum("scheduler_pending_pods", &[]), 0.0);
}

const BUSY: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: busy, labels: {app: busy}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: spin
    image: busybox
    command: ["sh", "-c", "while :; do :; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: idle}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: nap
    image: busybox
    command: ["sleep", "3600"]
"#;

/// `250m` → 250.
fn millicores(cell: &str) -> Option<u64> {
    cell.strip_suffix('m')?.parse().ok()
}

/// `kubus top pods` (issue 23): a busy loop shows about one CPU (at least
/// 300m on a loaded two-core machine), a sleeper almost none; `top nodes`
/// shows the machine busy at least as much.
#[test]
fn top_shows_a_busy_loop_using_about_one_cpu() {
    let c = Cluster::start();
    let out = c.apply(BUSY);
    assert!(out.status.success(), "apply: {out:?}");
    let rows = wait_for(Duration::from_secs(60), || {
        let out = c.kubus(&["top", "pods"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let cpu = |name: &str| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(millicores)
        };
        match (cpu("busy"), cpu("idle")) {
            (Some(b), Some(i)) if b >= 300 => Some((b, i, text)),
            _ => None,
        }
    });
    let Some((busy, idle, text)) = rows else {
        let out = c.kubus(&["top", "pods"]);
        panic!(
            "no busy figure of about one CPU: {}{}\nlog:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            c.log()
        );
    };
    assert!(busy <= 1200, "more than one CPU for one loop: {text}");
    assert!(idle <= 50, "a sleeper using CPU: {text}");
    assert!(text.starts_with("NAME"), "{text}");
    assert!(text.contains("MEMORY(bytes)"), "{text}");

    let per_container = c.kubus_ok(&["top", "pods", "busy", "--containers"]);
    assert!(
        per_container
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["busy", "spin"])),
        "{per_container}"
    );
    let all = c.kubus_ok(&["top", "pods", "-A"]);
    assert!(all.starts_with("NAMESPACE"), "{all}");

    let nodes = c.kubus_ok(&["top", "nodes"]);
    let node_cpu = nodes
        .lines()
        .find(|l| l.starts_with("node-1"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(millicores)
        .unwrap_or_else(|| panic!("no node-1 row: {nodes}"));
    assert!(node_cpu >= 250, "the machine is busy: {nodes}");

    // kubectl top reads the same figures through metrics.k8s.io
    let kubectls: Vec<_> = ["1.33", "1.27"]
        .iter()
        .filter_map(|m| Cluster::kubectl_build(m))
        .collect();
    assert!(
        !kubectls.is_empty() || std::env::var_os("CI").is_none(),
        "no kubectl build found"
    );
    for kubectl in &kubectls {
        let top = |args: &[&str]| {
            let out = c.kubectl_in(kubectl, args, "");
            assert!(
                out.status.success(),
                "{} {args:?}: {out:?}",
                kubectl.display()
            );
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let pods = top(&["top", "pod", "busy"]);
        let busy_cpu = pods
            .lines()
            .find(|l| l.starts_with("busy "))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(millicores)
            .unwrap_or_else(|| panic!("kubectl top pod busy: {pods}"));
        assert!(busy_cpu >= 300, "{}: {pods}", kubectl.display());
        let containers = top(&["top", "pod", "--containers", "-l", "app=busy"]);
        assert!(containers.contains("spin"), "{containers}");
        let nodes = top(&["top", "node"]);
        assert!(nodes.lines().any(|l| l.starts_with("node-1 ")), "{nodes}");
        let raw: Value = serde_json::from_str(&top(&[
            "get",
            "--raw",
            "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/busy",
        ]))
        .expect("PodMetrics JSON");
        assert_eq!(raw["kind"], "PodMetrics", "{raw}");
        let missing = c.kubectl_in(kubectl, &["top", "pod", "nothing-here"], "");
        assert!(!missing.status.success(), "{missing:?}");
    }

    // the loop has been measured: it stops burning a core the other tests
    // running beside this one need
    c.kubus_ok(&["delete", "pod", "busy", "--force"]);
    let missing = c.kubus(&["top", "pods", "nothing-here"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("pod \"nothing-here\" not found"),
        "{missing:?}"
    );
}

fn burn(flag: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: burn}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: burn}}}}
  template:
    metadata: {{labels: {{app: burn}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: spin
        image: busybox
        command: ["sh", "-c", "while [ -f {flag} ]; do sleep 0.05; done; exec sleep 3600"]
        resources: {{requests: {{cpu: 1m}}}}
"#
    )
}

/// The Deployment `burn`'s replicas.
fn replicas(c: &Cluster) -> Option<i64> {
    let out = c.kubus(&["get", "deployment", "burn", "-o", "json"]);
    serde_json::from_slice::<Value>(&out.stdout).ok()?["spec"]["replicas"].as_i64()
}

/// An HPA (issue 23) with a 50 % CPU target scales busy pods up to its
/// maximum, and back down once they go quiet (a scale-down window of 0 s,
/// so the test need not wait Kubernetes' default 300 s). The pods are
/// light on the machine — a loop starting `sleep` 20 times a second, a few
/// millicores — and request 1m, so they are far above the target without
/// starving the tests that run beside this one.
#[test]
fn an_hpa_scales_busy_pods_up_and_back_down() {
    let c = Cluster::start();
    let flag = c.data_dir().join("burn");
    std::fs::write(&flag, b"").expect("flag");
    let out = c.apply(&burn(&flag.display().to_string()));
    assert!(out.status.success(), "apply: {out:?}");
    // a bad HPA is refused naming the object, the field and the rule
    let bad = c.apply(
        r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: bad}
spec:
  scaleTargetRef: {kind: Deployment, name: burn}
  maxReplicas: 0
  metrics: [{type: Pods}]
"#,
    );
    let said = String::from_utf8_lossy(&bad.stderr).to_string();
    assert!(!bad.status.success(), "{said}");
    assert!(
        said.contains("HorizontalPodAutoscaler default/bad"),
        "{said}"
    );
    assert!(said.contains("spec.maxReplicas"), "{said}");
    assert!(said.contains("spec.metrics[0].type"), "{said}");
    // refused: a kind without a scale subresource
    let wrong = c.kubus(&["autoscale", "pod", "x", "--max", "3"]);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("cannot autoscale a Pod"),
        "{wrong:?}"
    );
    c.kubus_ok(&[
        "autoscale",
        "deployment",
        "burn",
        "--min",
        "1",
        "--max",
        "3",
        "--cpu-percent",
        "50",
    ]);
    let hpa: Value = serde_json::from_slice(&c.kubus(&["get", "hpa", "burn", "-o", "json"]).stdout)
        .expect("kubus autoscale made the HPA");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["maxReplicas"], 3);
    // scale down without Kubernetes' default 300 s window
    let out = c.apply(
        r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: burn}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: burn}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown: {stabilizationWindowSeconds: 0}
"#,
    );
    assert!(out.status.success(), "apply: {out:?}");

    // a few millicores of a 1m request: far above 50 %: up to the max
    wait_for(Duration::from_secs(120), || {
        (replicas(&c) == Some(3)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "never scaled up: {}\n{}\nlog:\n{}",
            c.kubus_ok(&["get", "hpa", "burn", "-o", "yaml"]),
            c.kubus_ok(&["top", "pods"]),
            c.log()
        )
    });
    let table = c.kubus_ok(&["get", "hpa"]);
    assert!(table.contains("Deployment/burn"), "{table}");
    assert!(table.contains("/50%"), "{table}");
    let events = c.kubus_ok(&["events"]);
    assert!(events.contains("SuccessfulRescale"), "{events}");
    assert!(events.contains("New size: 3"), "{events}");

    // the pods go quiet: back down to the minimum
    std::fs::remove_file(&flag).expect("flag removed");
    wait_for(Duration::from_secs(120), || {
        (replicas(&c) == Some(1)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "never scaled down: {}\nlog:\n{}",
            c.kubus_ok(&["get", "hpa", "burn", "-o", "yaml"]),
            c.log()
        )
    });
    let hpa: Value = serde_json::from_slice(&c.kubus(&["get", "hpa", "burn", "-o", "json"]).stdout)
        .expect("hpa");
    let active = hpa["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "ScalingActive")
        .cloned()
        .unwrap_or_default();
    assert_eq!(active["status"], "True", "{hpa}");
}
