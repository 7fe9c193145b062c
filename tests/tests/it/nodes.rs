//! Node loss heals itself (issue 20, first part): a worker mesh node
//! killed with SIGKILL turns NotReady within the (shortened) grace period,
//! is tainted unreachable, its pods are evicted after their toleration and
//! come back Running on the other workers; taints and cordons steer the
//! scheduler, a pod that fits nowhere says why, and the pods of a deleted
//! node are collected.

use std::time::Duration;

use kubus_tests::{events_about, wait_for, Cluster};
use serde_json::Value;

fn node(c: &Cluster, name: &str) -> Option<Value> {
    c.items("nodes")
        .into_iter()
        .find(|n| n["metadata"]["name"] == name)
}

fn ready(n: &Value) -> String {
    n["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The app's pods that run and are not going: (name, node).
fn placed(c: &Cluster) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = c
        .items("pods")
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == "spread")
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: spread}
spec:
  replicas: 3
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "while true; do sleep 1; done"]
        resources: {requests: {cpu: 10m, memory: 16Mi}}
"#;

#[test]
fn a_killed_worker_turns_not_ready_and_its_pods_move() {
    let c = Cluster::start_with(&["--node-monitor-grace-period-secs", "5"]);
    let own = c.items("nodes")[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut workers = [c.worker("w1"), c.worker("w2"), c.worker("w3")];
    wait_for(Duration::from_secs(30), || {
        (c.items("nodes").len() == 4).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "workers did not join\n{}",
            kubus_tests::logs_of(workers.iter())
        )
    });
    // only the workers take pods
    let said = c.kubus_ok(&["cordon", &own]);
    assert!(said.contains("cordoned"), "{said}");
    let out = c.apply(DEPLOYMENT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = wait_for(Duration::from_secs(60), || {
        let p = placed(&c);
        (p.len() == 3).then_some(p)
    })
    .unwrap_or_else(|| panic!("pods not running: {:?}\n{}", c.items("pods"), c.log()));
    assert!(
        before.iter().all(|(_, n)| n != &own),
        "a pod on the cordoned node: {before:?}"
    );

    // SIGKILL the worker of the first pod
    let victim = before[0].1.clone();
    let index = ["w1", "w2", "w3"]
        .iter()
        .position(|w| *w == victim)
        .expect("a worker");
    workers[index].kill9();
    let gone = wait_for(Duration::from_secs(30), || {
        let n = node(&c, &victim)?;
        let tainted = n["spec"]["taints"].as_array().is_some_and(|t| {
            t.iter()
                .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute")
        });
        (ready(&n) == "Unknown" && tainted).then_some(n)
    });
    assert!(
        gone.is_some(),
        "{victim} never turned NotReady: {:?}\n{}",
        node(&c, &victim),
        c.log()
    );
    // its pods are evicted after 5 s and replaced on the others
    let after = wait_for(Duration::from_secs(60), || {
        let p = placed(&c);
        (p.len() == 3 && p.iter().all(|(_, n)| n != &victim)).then_some(p)
    })
    .unwrap_or_else(|| {
        panic!(
            "pods did not move off {victim}: {:?}\n{}",
            placed(&c),
            c.log()
        )
    });
    assert!(after.iter().all(|(_, n)| n != &own), "{after:?}");
    let events = c.items("events");
    let evicted = events.iter().any(|e| e["reason"] == "TaintManagerEviction");
    let not_ready = events_about(&events, &victim)
        .iter()
        .any(|(r, _)| r == "NodeNotReady");
    assert!(
        evicted && not_ready,
        "{:?}",
        events
            .iter()
            .map(|e| (&e["reason"], &e["message"]))
            .collect::<Vec<_>>()
    );

    // taints steer the scheduler: with every live worker tainted a new pod
    // waits and says why; untainting one lets it run there
    let live: Vec<&str> = ["w1", "w2", "w3"]
        .into_iter()
        .filter(|w| *w != victim)
        .collect();
    for w in &live {
        let said = c.kubus_ok(&["taint", "nodes", w, "dedicated=db:NoSchedule"]);
        assert!(said.contains("tainted"), "{said}");
    }
    c.kubus_ok(&["scale", "deployment/spread", "--replicas=4"]);
    let pending = wait_for(Duration::from_secs(30), || {
        c.items("pods").into_iter().find(|p| {
            p["metadata"]["labels"]["app"] == "spread"
                && p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "PodScheduled" && c["status"] == "False")
                })
        })
    })
    .unwrap_or_else(|| panic!("no pod waits: {:?}", c.items("pods")));
    let message = pending["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("untolerated taint") && message.contains("unschedulable"),
        "{message}"
    );
    let said = c.kubus_ok(&["taint", "nodes", live[0], "dedicated:NoSchedule-"]);
    assert!(said.contains("untainted"), "{said}");
    wait_for(Duration::from_secs(30), || {
        (placed(&c).len() == 4).then_some(())
    })
    .unwrap_or_else(|| panic!("the 4th pod did not run: {:?}", placed(&c)));
    let out = c.kubus(&["taint", "nodes", live[1], "dedicated=web:NoSchedule"]);
    assert!(!out.status.success(), "a changed value needs --overwrite");
    c.kubus_ok(&["uncordon", &own]);

    // the lost node deleted: its Terminating pods go with it (pod GC)
    let on_victim = |c: &Cluster| {
        c.items("pods")
            .into_iter()
            .filter(|p| p["spec"]["nodeName"] == victim.as_str())
            .count()
    };
    assert!(on_victim(&c) > 0, "the evicted pods wait for their node");
    c.kubus_ok(&["delete", "node", &victim]);
    wait_for(Duration::from_secs(30), || {
        (on_victim(&c) == 0).then_some(())
    })
    .unwrap_or_else(|| panic!("pods of the deleted node remain: {:?}", c.items("pods")));
}

/// Finished pods past `--terminated-pod-gc-threshold` are collected,
/// oldest first; running pods and those within the threshold stay.
#[test]
fn finished_pods_past_the_threshold_are_collected() {
    let c = Cluster::start_with(&["--terminated-pod-gc-threshold", "2"]);
    let pod = |name: &str, command: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, labels: {{app: done}}}}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: main, image: busybox, command: [\"sh\", \"-c\", \"{command}\"]}}\n"
        )
    };
    let finished = |c: &Cluster| -> Vec<String> {
        let mut v: Vec<String> = c
            .items("pods")
            .into_iter()
            .filter(|p| p["status"]["phase"] == "Succeeded")
            .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        v.sort();
        v
    };
    let out = c.apply(&pod("keeps-running", "while true; do sleep 1; done"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // one at a time, so their finish times are ordered
    for name in ["done-1", "done-2", "done-3", "done-4"] {
        let out = c.apply(&pod(name, "true"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for(Duration::from_secs(30), || {
            finished(&c).contains(&name.to_string()).then_some(())
        })
        .unwrap_or_else(|| panic!("{name} did not finish: {:?}", c.items("pods")));
        std::thread::sleep(Duration::from_millis(1100));
    }
    // the collector looks every 20 s
    let left = wait_for(Duration::from_secs(60), || {
        let f = finished(&c);
        (f.len() == 2).then_some(f)
    })
    .unwrap_or_else(|| panic!("finished pods were not collected: {:?}", finished(&c)));
    assert_eq!(left, vec!["done-3".to_string(), "done-4".to_string()]);
    assert!(
        c.items("pods")
            .iter()
            .any(|p| p["metadata"]["name"] == "keeps-running"),
        "a running pod is never collected"
    );
}
