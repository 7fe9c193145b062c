//! Traces over OTLP (issue 23): with `--otlp-endpoint` naming a collector
//! (a small Python one that decodes the OTLP protobuf with the protocol's
//! own messages), a Deployment applied from the CLI yields one trace that
//! runs from the CLI's request through the store, Raft and the change
//! event to the Deployment and ReplicaSet controllers, the scheduler's
//! binding and the node agent starting the pod: every hop a child of the
//! one before, one trace id.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kubus_tests::{free_port, running, wait_for, Cluster, Proc};
use serde_json::Value;

/// One exported span as the receiver wrote it.
#[derive(Debug, Clone)]
struct Span {
    trace: String,
    id: String,
    parent: String,
    name: String,
    service: String,
    attributes: Value,
}

fn spans(file: &Path) -> Vec<Span> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| Span {
            trace: v["trace"].as_str().unwrap_or_default().to_string(),
            id: v["span"].as_str().unwrap_or_default().to_string(),
            parent: v["parent"].as_str().unwrap_or_default().to_string(),
            name: v["name"].as_str().unwrap_or_default().to_string(),
            service: v["service"].as_str().unwrap_or_default().to_string(),
            attributes: v["attributes"].clone(),
        })
        .collect()
}

/// A span's name with what tells it apart (the controller, the pod).
fn label(s: &Span) -> String {
    let a = &s.attributes;
    let detail = ["controller", "pod", "resource", "subject"]
        .iter()
        .find_map(|k| a[*k].as_str())
        .unwrap_or_default();
    format!("{} [{}] {}", s.name, s.service, detail)
}

/// The path from `span` up to its trace's root, nearest first; `None`
/// when a parent on the way was not received.
fn ancestry<'a>(span: &'a Span, by_id: &HashMap<&str, &'a Span>) -> Option<Vec<&'a Span>> {
    let mut path = vec![span];
    let mut at = span;
    for _ in 0..200 {
        if at.parent.is_empty() {
            return Some(path);
        }
        at = by_id.get(at.parent.as_str())?;
        path.push(at);
    }
    None
}

#[test]
fn one_trace_runs_from_the_cli_to_the_node_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("spans.jsonl");
    let port = free_port();
    let _collector = Proc::spawn(
        Command::new("python3")
            .arg(kubus_tests::manifest_dir().join("python/otlp_receiver.py"))
            .arg(port.to_string())
            .arg(&out),
        &dir.path().join("collector.log"),
    );
    wait_for(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .expect("the collector listens");
    let endpoint = format!("http://127.0.0.1:{port}");
    let c = Cluster::start_with(&["--otlp-endpoint", &endpoint]);

    let manifest = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: traced}
spec:
  replicas: 1
  selector: {matchLabels: {app: traced}}
  template:
    metadata: {labels: {app: traced}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: ["sleep", "3600"]
"#;
    let applied = c.kubus_with_input(
        &["--otlp-endpoint", &endpoint, "apply", "-f", "-"],
        manifest,
    );
    assert!(
        applied.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&applied.stderr)
    );
    wait_for(Duration::from_secs(60), || {
        let pods = c.items("pods");
        (running(&pods).len() == 1).then_some(())
    })
    .unwrap_or_else(|| panic!("the pod did not run; log:\n{}", c.log()));

    // the CLI sent its spans as it exited; the cluster's batch goes out
    // within the SDK's schedule delay (5 s)
    // from the root down, in this order (other spans between them)
    let milestones = [
        "kubus.request [kubus-cli]",
        "store.apply_manifests [kubus]",
        "raft.propose",
        "raft.apply",
        "store.publish [kubus] deployments",
        "controller.reconcile [kubus] deployment-controller",
        "store.request [kubus] replicasets",
        "raft.apply",
        "store.publish [kubus] replicasets",
        "controller.reconcile [kubus] replicaset-controller",
        "store.request [kubus] pods",
        "store.publish [kubus] pods",
        "scheduler.bind",
        "store.request [kubus] pods",
        "raft.propose",
        "raft.apply",
        "store.publish [kubus] pods",
        "agent.pod_start",
    ];
    let in_order = |path: &[String]| {
        let mut at = 0;
        for l in path {
            if at < milestones.len() && l.starts_with(milestones[at]) {
                at += 1;
            }
        }
        at == milestones.len()
    };
    let mut last = Vec::new();
    let found = wait_for(Duration::from_secs(40), || {
        let all = spans(&out);
        let roots: Vec<&Span> = all
            .iter()
            .filter(|s| s.service == "kubus-cli" && s.parent.is_empty())
            .collect();
        let root = roots.first()?;
        let trace: Vec<Span> = all
            .iter()
            .filter(|s| s.trace == root.trace)
            .cloned()
            .collect();
        last = trace.clone();
        let by_id: HashMap<&str, &Span> = trace.iter().map(|s| (s.id.as_str(), s)).collect();
        let start = trace.iter().find(|s| {
            s.name == "agent.pod_start"
                && s.attributes["pod"]
                    .as_str()
                    .is_some_and(|p| p.starts_with("default/traced-"))
        })?;
        let path = ancestry(start, &by_id)?;
        let down: Vec<String> = path.iter().rev().map(|s| label(s)).collect();
        in_order(&down).then(|| (down, trace.clone()))
    });
    let Some((path, trace)) = found else {
        let mut text = String::new();
        for s in &last {
            text.push_str(&format!("{} {} <- {}\n", label(s), s.id, s.parent));
        }
        panic!(
            "no trace from the CLI to the agent; the CLI's trace had {} spans:\n{text}\ncollector log:\n{}\nlog:\n{}",
            last.len(),
            std::fs::read_to_string(dir.path().join("collector.log")).unwrap_or_default(),
            c.log()
        );
    };
    println!(
        "from the CLI to the pod's start ({} spans in the trace):",
        trace.len()
    );
    for (depth, l) in path.iter().enumerate() {
        println!("{:indent$}{l}", "", indent = depth * 2);
    }
}
