//! The scheduler's rule set on a real cluster (issue 20): required
//! anti-affinity puts one replica per worker and leaves the next Pending
//! with a FailedScheduling Event and an explanation naming the rule; a
//! taint without toleration, a nodeSelector that matches nothing and
//! insufficient memory are each explained by `kubus explain pod` and
//! `kubus describe pod`; a high-priority pod preempts a low-priority one
//! on a full node.

use std::collections::BTreeSet;
use std::time::Duration;

use kubus_tests::{wait_for, Cluster};
use serde_json::Value;

fn pod_named(c: &Cluster, name: &str) -> Option<Value> {
    c.items("pods")
        .into_iter()
        .find(|p| p["metadata"]["name"] == name)
}

fn scheduled_false_message(p: &Value) -> Option<String> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
        .and_then(|c| c["message"].as_str())
        .map(str::to_string)
}

fn apply_ok(c: &Cluster, manifest: &str) {
    let out = c.apply(manifest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const ANTI: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: solo}
spec:
  replicas: 4
  selector: {matchLabels: {app: solo}}
  template:
    metadata: {labels: {app: solo}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: solo}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "while true; do sleep 1; done"]
        resources: {requests: {cpu: 10m, memory: 16Mi}}
"#;

fn bare_pod(name: &str, extra_spec: &str, cpu: &str, memory: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  terminationGracePeriodSeconds: 1
{extra_spec}
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "while true; do sleep 1; done"]
    resources: {{requests: {{cpu: {cpu}, memory: {memory}}}}}
"#
    )
}

#[test]
fn rules_place_explain_and_preempt() {
    let c = Cluster::start();
    let own = c.items("nodes")[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let workers = [c.worker("w1"), c.worker("w2"), c.worker("w3")];
    wait_for(Duration::from_secs(30), || {
        (c.items("nodes").len() == 4).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "workers did not join\n{}",
            kubus_tests::logs_of(workers.iter())
        )
    });
    c.kubus_ok(&["cordon", &own]);

    // required anti-affinity: 3 replicas on 3 workers, the 4th waits
    apply_ok(&c, ANTI);
    let solo = |c: &Cluster| -> Vec<Value> {
        c.items("pods")
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "solo")
            .collect()
    };
    let (running, pending) = wait_for(Duration::from_secs(60), || {
        let pods = solo(&c);
        let running: BTreeSet<String> = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
            .collect();
        let pending: Vec<Value> = pods
            .into_iter()
            .filter(|p| scheduled_false_message(p).is_some())
            .collect();
        (running.len() == 3 && pending.len() == 1).then_some((running, pending))
    })
    .unwrap_or_else(|| panic!("anti-affinity: {:?}\n{}", solo(&c), c.log()));
    assert_eq!(
        running,
        ["w1", "w2", "w3"].iter().map(|s| s.to_string()).collect(),
        "one per worker"
    );
    let fourth = &pending[0];
    let name = fourth["metadata"]["name"].as_str().unwrap_or_default();
    let message = scheduled_false_message(fourth).unwrap_or_default();
    assert_eq!(
        message,
        "0/4 nodes are available: 1 node(s) were unschedulable, 3 node(s) didn't match pod \
         anti-affinity rules. preemption: 0/4 nodes are available: 1 Preemption is not helpful \
         for scheduling, 3 No preemption victims found for incoming pod."
    );
    let events = c.kubus_ok(&["events"]);
    assert!(
        events.contains("FailedScheduling")
            && events.contains("didn't match pod anti-affinity rules"),
        "{events}"
    );
    let explained = c.kubus_ok(&["explain", "pod", name]);
    for want in [
        "0/4 nodes are available",
        "w1: does not fit",
        "InterPodAffinity: required anti-affinity (pods app=solo by kubernetes.io/hostname) matches default/solo-",
        &format!("{own}: does not fit"),
        "NodeUnschedulable: the node is cordoned",
    ] {
        assert!(explained.contains(want), "missing {want:?} in:\n{explained}");
    }
    c.kubus_ok(&["scale", "deployment/solo", "--replicas=3"]);

    // a taint without toleration, a selector that matches nothing, too
    // much memory: each explained
    c.kubus_ok(&["taint", "nodes", "w1", "dedicated=db:NoSchedule"]);
    let cases = [
        (
            "tainted",
            "  nodeSelector: {kubernetes.io/hostname: w1}",
            "16Mi",
            vec![
                "TaintToleration: taint dedicated=db:NoSchedule is not tolerated",
                "{key: dedicated, operator: Equal, value: db, effect: NoSchedule}",
            ],
        ),
        (
            "nowhere",
            "  nodeSelector: {disk: none}",
            "16Mi",
            vec!["NodeAffinity: nodeSelector disk=none (the node has no such label)"],
        ),
        (
            "hungry",
            "",
            "100Ti",
            vec![
                "NodeResourcesFit: memory: the pod requests 100Ti",
                "more memory free on this node",
            ],
        ),
    ];
    for (name, extra, memory, _) in &cases {
        apply_ok(&c, &bare_pod(name, extra, "10m", memory));
    }
    for (name, _, _, wants) in &cases {
        let p = wait_for(Duration::from_secs(30), || {
            pod_named(&c, name).filter(|p| scheduled_false_message(p).is_some())
        })
        .unwrap_or_else(|| panic!("{name} does not wait: {:?}", pod_named(&c, name)));
        assert!(p["spec"]["nodeName"].is_null(), "{p}");
        let explained = c.kubus_ok(&["explain", "pod", name]);
        let described = c.kubus_ok(&["describe", "pod", name]);
        for want in wants {
            assert!(
                explained.contains(want),
                "{name}: missing {want:?} in:\n{explained}"
            );
            assert!(
                described.contains(want),
                "{name}: missing {want:?} in:\n{described}"
            );
        }
    }
    let refused = c.kubus(&["explain", "deployment", "solo"]);
    assert!(!refused.status.success());
    c.kubus_ok(&["taint", "nodes", "w1", "dedicated:NoSchedule-"]);
    wait_for(Duration::from_secs(30), || {
        pod_named(&c, "tainted").filter(|p| p["status"]["phase"] == "Running")
    })
    .unwrap_or_else(|| {
        panic!(
            "untainted, the pod did not run: {:?}",
            pod_named(&c, "tainted")
        )
    });

    // preemption: w2 full with a low-priority pod; a high-priority one
    // that must run there displaces it
    apply_ok(
        &c,
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n",
    );
    let on_w2 = "  nodeSelector: {kubernetes.io/hostname: w2}";
    apply_ok(&c, &bare_pod("low", on_w2, "1500m", "16Mi"));
    wait_for(Duration::from_secs(30), || {
        pod_named(&c, "low").filter(|p| p["status"]["phase"] == "Running")
    })
    .unwrap_or_else(|| panic!("low did not run: {:?}", pod_named(&c, "low")));
    let high_spec = format!("{on_w2}\n  priorityClassName: high");
    apply_ok(&c, &bare_pod("high", &high_spec, "1500m", "16Mi"));
    let high = wait_for(Duration::from_secs(60), || {
        pod_named(&c, "high").filter(|p| p["status"]["phase"] == "Running")
    })
    .unwrap_or_else(|| panic!("high did not run: {:?}\n{}", c.items("pods"), c.log()));
    assert_eq!(high["spec"]["nodeName"], "w2");
    assert_eq!(high["spec"]["priority"], 1000);
    assert!(pod_named(&c, "low").is_none(), "the victim is gone");
    let events = c.kubus_ok(&["events"]);
    assert!(
        events.contains("Preempted") && events.contains("Preempted by pod default/high on node w2"),
        "{events}"
    );
    // a pod naming an unknown class is refused, saying why
    let out = c.apply(&bare_pod("odd", "  priorityClassName: nope", "10m", "16Mi"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no PriorityClass with name nope was found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(workers);
}
