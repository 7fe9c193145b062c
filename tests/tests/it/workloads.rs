//! Workloads (issue 19) on the process runtime: a DaemonSet across worker
//! mesh nodes that join and stop matching, Jobs (parallel with a failure,
//! Indexed, over their backoff limit), a CronJob that must never overlap
//! its runs, and the unmodified Kubernetes examples being accepted.

use std::path::Path;
use std::time::Duration;

use kubus_api::{Kind, ObjectRef};
use kubus_tests::{wait_for, Cluster, Proc};
use serde_json::{json, Value};

fn label_node(c: &Cluster, node: &str, value: Value) {
    let (rt, client) = c.bus_client();
    let r = ObjectRef::new(Kind::Node, None, node);
    rt.block_on(client.patch(&r, json!({"metadata": {"labels": {"pool": value}}})))
        .unwrap_or_else(|e| panic!("label node {node}: {e}"));
}

fn applied(c: &Cluster, manifest: &str) {
    let out = c.apply(manifest);
    assert!(
        out.status.success(),
        "apply: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn owned_by<'a>(items: &'a [Value], kind: &str, name: &str) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|o| {
            o["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["kind"] == kind && r["name"] == name))
        })
        .collect()
}

/// The nodes the DaemonSet's live pods are on, sorted.
fn daemon_nodes(c: &Cluster) -> Vec<String> {
    let pods = c.items("pods");
    let mut nodes: Vec<String> = owned_by(&pods, "DaemonSet", "agent")
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| p["status"]["phase"] == "Running")
        .filter_map(|p| p["spec"]["nodeName"].as_str().map(str::to_string))
        .collect();
    nodes.sort();
    nodes
}

const DAEMON_SET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {pool: daemons}
      terminationGracePeriodSeconds: 1
      containers:
      - name: agent
        image: busybox
        command: ["sh", "-c", "while true; do sleep 1; done"]
"#;

#[test]
fn daemon_set_runs_one_pod_per_matching_node() {
    let c = Cluster::start();
    let logs = |procs: &[&Proc]| kubus_tests::logs_of(procs.iter().copied());
    let w1 = c.worker("w1");
    let w2 = c.worker("w2");
    wait_for(Duration::from_secs(30), || {
        (c.items("nodes").len() == 3).then_some(())
    })
    .unwrap_or_else(|| panic!("workers did not join\n{}", logs(&[&w1, &w2])));
    label_node(&c, "w1", json!("daemons"));
    label_node(&c, "w2", json!("daemons"));
    applied(&c, DAEMON_SET);
    let both = vec!["w1".to_string(), "w2".to_string()];
    wait_for(Duration::from_secs(60), || {
        (daemon_nodes(&c) == both).then_some(())
    })
    .unwrap_or_else(|| panic!("daemon pods on {:?}\n{}", daemon_nodes(&c), c.log()));

    // a node that joins and matches gets one
    let w3 = c.worker("w3");
    wait_for(Duration::from_secs(30), || {
        (c.items("nodes").len() == 4).then_some(())
    })
    .unwrap_or_else(|| panic!("w3 did not join\n{}", logs(&[&w3])));
    label_node(&c, "w3", json!("daemons"));
    let three = vec!["w1".to_string(), "w2".to_string(), "w3".to_string()];
    wait_for(Duration::from_secs(60), || {
        (daemon_nodes(&c) == three).then_some(())
    })
    .unwrap_or_else(|| panic!("daemon pods on {:?}", daemon_nodes(&c)));

    // a node whose label stops matching loses its pod
    label_node(&c, "w1", Value::Null);
    let two = vec!["w2".to_string(), "w3".to_string()];
    wait_for(Duration::from_secs(60), || {
        let pods = c.items("pods");
        let on_w1 = owned_by(&pods, "DaemonSet", "agent")
            .into_iter()
            .any(|p| p["spec"]["nodeName"] == "w1");
        (daemon_nodes(&c) == two && !on_w1).then_some(())
    })
    .unwrap_or_else(|| panic!("daemon pods on {:?}", daemon_nodes(&c)));
    let status = wait_for(Duration::from_secs(30), || {
        let ds = c
            .items("daemonsets")
            .into_iter()
            .find(|d| d["metadata"]["name"] == "agent")?;
        let s = ds["status"].clone();
        (s["desiredNumberScheduled"] == 2 && s["numberReady"] == 2 && s["numberMisscheduled"] == 0)
            .then_some(s)
    });
    assert!(status.is_some(), "{:?}", c.items("daemonsets"));

    // a new template rolls out node by node; its history is kept in
    // ControllerRevisions, and undo puts the old template back
    let run = |args: &[&str]| c.kubus_ok(args);
    run(&["set", "image", "daemonset/agent", "agent=busybox:2"]);
    run(&["rollout", "status", "daemonset/agent", "--timeout=90s"]);
    let pods = c.items("pods");
    let images: Vec<&Value> = owned_by(&pods, "DaemonSet", "agent")
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| &p["spec"]["containers"][0]["image"])
        .collect();
    assert!(
        images.len() == 2 && images.iter().all(|i| *i == "busybox:2"),
        "{images:?}"
    );
    let history = run(&["rollout", "history", "daemonset/agent"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");
    run(&["rollout", "undo", "daemonset/agent"]);
    let back = wait_for(Duration::from_secs(60), || {
        let ds = c
            .items("daemonsets")
            .into_iter()
            .find(|d| d["metadata"]["name"] == "agent")?;
        (ds["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox").then_some(ds)
    });
    assert!(back.is_some(), "undo did not restore the template");
    run(&["rollout", "status", "daemonset/agent", "--timeout=90s"]);
}

fn job(name: &str, spec: &str, script: &str) -> String {
    format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  {spec}
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: work
        image: busybox
        command: ["sh", "-c", {script:?}]
"#
    )
}

fn job_status(c: &Cluster, name: &str) -> Option<Value> {
    c.items("jobs")
        .into_iter()
        .find(|j| j["metadata"]["name"] == name)
        .map(|j| j["status"].clone())
}

fn condition(status: &Value, kind: &str) -> Option<Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
        .cloned()
}

#[test]
fn jobs_complete_retry_index_and_fail() {
    let c = Cluster::start();
    let scratch = c.dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    let s = |name: &str| scratch.join(name).display().to_string();
    // 5 completions, 2 at a time; the first pod to run fails once
    let flaky = format!(
        "if mkdir {} 2>/dev/null; then exit 1; fi; sleep 1; echo done >> {}",
        s("failed-once"),
        s("flaky.out")
    );
    applied(
        &c,
        &job(
            "flaky",
            "completions: 5\n  parallelism: 2\n  backoffLimit: 4",
            &flaky,
        ),
    );
    // each index once
    let indexed = format!("echo $JOB_COMPLETION_INDEX >> {}", s("indexes.out"));
    applied(
        &c,
        &job(
            "indexed",
            "completions: 3\n  parallelism: 3\n  completionMode: Indexed",
            &indexed,
        ),
    );
    // always fails: over its limit of 1
    applied(&c, &job("doomed", "backoffLimit: 1", "exit 3"));

    let mut most_active = 0;
    let flaky_done = wait_for(Duration::from_secs(120), || {
        let st = job_status(&c, "flaky")?;
        most_active = most_active.max(st["active"].as_i64().unwrap_or(0));
        condition(&st, "Complete").map(|_| st)
    })
    .unwrap_or_else(|| {
        panic!(
            "flaky never completed: {:?}\n{}",
            job_status(&c, "flaky"),
            c.log()
        )
    });
    assert_eq!(flaky_done["succeeded"], 5, "{flaky_done}");
    assert_eq!(flaky_done["failed"], 1, "{flaky_done}");
    assert!(most_active <= 2, "parallelism 2, saw {most_active} active");
    let done_lines = std::fs::read_to_string(s("flaky.out")).unwrap_or_default();
    assert_eq!(done_lines.lines().count(), 5, "{done_lines}");
    // the pods of a finished Job stay until the Job goes
    let pods = c.items("pods");
    assert_eq!(owned_by(&pods, "Job", "flaky").len(), 6);

    let indexed_done = wait_for(Duration::from_secs(60), || {
        let st = job_status(&c, "indexed")?;
        condition(&st, "Complete").map(|_| st)
    })
    .unwrap_or_else(|| panic!("indexed never completed: {:?}", job_status(&c, "indexed")));
    assert_eq!(indexed_done["completedIndexes"], "0-2");
    let mut seen: Vec<String> = std::fs::read_to_string(s("indexes.out"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    seen.sort();
    assert_eq!(seen, ["0", "1", "2"]);

    let failed = wait_for(Duration::from_secs(90), || {
        let st = job_status(&c, "doomed")?;
        condition(&st, "Failed")
    })
    .unwrap_or_else(|| panic!("doomed never failed: {:?}", job_status(&c, "doomed")));
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        job_status(&c, "doomed").map(|s| s["failed"].clone()),
        Some(json!(2))
    );

    // deleting a Job takes its pods
    let out = c.kubus(&["delete", "job", "flaky"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(Duration::from_secs(30), || {
        owned_by(&c.items("pods"), "Job", "flaky")
            .is_empty()
            .then_some(())
    })
    .expect("the Job's pods went with it");
}

#[test]
fn bad_workloads_are_refused_naming_object_field_and_rule() {
    let c = Cluster::start();
    let cases = [
        (
            r#"{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
              "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}"#,
            "StatefulSet default/web is invalid: spec.template.metadata.labels: selector does not match template labels",
        ),
        (
            r#"{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"},
              "spec": {"schedule": "61 * * * *", "jobTemplate": {"spec": {"template": {"spec":
                {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}}"#,
            "CronJob default/tick is invalid: spec.schedule: unparseable schedule \"61 * * * *\"",
        ),
        (
            r#"{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tock"},
              "spec": {"schedule": "* * * * *", "timeZone": "Atlantis/Capital", "jobTemplate": {"spec": {"template": {"spec":
                {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}}"#,
            "CronJob default/tock is invalid: spec.timeZone: unknown time zone \"Atlantis/Capital\"",
        ),
        (
            r#"{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "neg"},
              "spec": {"parallelism": -1, "template": {"spec":
                {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}"#,
            "Job default/neg is invalid: spec.parallelism: must be greater than or equal to 0 (got -1)",
        ),
        (
            r#"{"apiVersion": "batch/v1beta1", "kind": "CronJob", "metadata": {"name": "old"}, "spec": {}}"#,
            "use \"batch/v1\"",
        ),
    ];
    for (manifest, want) in cases {
        let out = c.apply(manifest);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "accepted: {manifest}");
        assert!(said.contains(want), "want {want:?}\n got {said}");
    }
}

#[test]
fn cron_job_with_forbid_never_overlaps_and_keeps_its_history() {
    let c = Cluster::start();
    // every minute; each run takes 65 s, so the next minute's run must wait
    applied(
        &c,
        r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "* * * * *"
  timeZone: UTC
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 1
  failedJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          containers:
          - name: tick
            image: busybox
            command: ["sh", "-c", "sleep 65"]
"#,
    );
    // (name, start, completion) of every Job seen
    let mut seen: std::collections::BTreeMap<String, (Option<String>, Option<String>)> =
        Default::default();
    let mut most_active = 0;
    let mut most_kept_done = 0;
    let enough = wait_for(Duration::from_secs(260), || {
        let jobs = c.items("jobs");
        let mine: Vec<&Value> = owned_by(&jobs, "CronJob", "tick");
        let active = mine
            .iter()
            .filter(|j| condition(&j["status"], "Complete").is_none())
            .count();
        most_active = most_active.max(active);
        most_kept_done = most_kept_done.max(mine.len() - active);
        for j in &mine {
            let name = j["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let start = j["status"]["startTime"].as_str().map(str::to_string);
            let end = j["status"]["completionTime"].as_str().map(str::to_string);
            let e = seen.entry(name).or_default();
            e.0 = e.0.clone().or(start);
            e.1 = e.1.clone().or(end);
        }
        let finished = seen.values().filter(|(_, end)| end.is_some()).count();
        (finished >= 2 && seen.len() >= 3).then_some(())
    });
    assert!(enough.is_some(), "runs seen: {seen:?}\n{}", c.log());
    assert_eq!(most_active, 1, "Forbid: never two runs at once ({seen:?})");
    // the history limit holds once the controller has seen the last run
    // end (between a run's end and its next sync two may be seen)
    let settled = wait_for(Duration::from_secs(30), || {
        let jobs = c.items("jobs");
        let done = owned_by(&jobs, "CronJob", "tick")
            .into_iter()
            .filter(|j| condition(&j["status"], "Complete").is_some())
            .count();
        (done <= 1).then_some(())
    });
    assert!(
        settled.is_some(),
        "history limit 1, saw {most_kept_done} finished Jobs kept"
    );
    // no run started before the previous one ended
    let mut spans: Vec<(String, String)> = seen
        .values()
        .filter_map(|(s, e)| Some((s.clone()?, e.clone().unwrap_or_else(|| "9999".into()))))
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "overlapping runs: {pair:?}");
    }
}

#[test]
fn kubernetes_workload_examples_are_accepted_and_run() {
    let c = Cluster::start();
    let examples = kubus_tests::k8s_examples();
    if !Path::new(&examples).exists() {
        eprintln!("no examples at {} — skipped", examples.display());
        return;
    }
    for file in [
        "daemonset.yaml",
        "statefulset-web.yaml",
        "job.yaml",
        "zookeeper.yaml",
    ] {
        let path = examples.join(file);
        let out = c.kubus(&["apply", "-f", &path.display().to_string()]);
        assert!(
            out.status.success(),
            "{file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // the objects act: a daemon pod on the node, the first stateful pod
    // (with its claim), the Job's pod, and the budget's status
    let node = c.items("nodes")[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let all_pods = || -> Vec<Value> {
        let out = c.kubus(&["get", "pods", "-A", "-o", "json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
    };
    wait_for(Duration::from_secs(60), || {
        let pods = all_pods();
        let daemon = owned_by(&pods, "DaemonSet", "fluentd-elasticsearch")
            .into_iter()
            .any(|p| p["spec"]["nodeName"] == node.as_str());
        let web0 = pods.iter().any(|p| p["metadata"]["name"] == "web-0");
        let zk0 = pods.iter().any(|p| p["metadata"]["name"] == "zk-0");
        let pi = !owned_by(&pods, "Job", "pi").is_empty();
        let claims = c.items("pvc");
        let claimed = claims.iter().any(|p| p["metadata"]["name"] == "www-web-0")
            && claims
                .iter()
                .any(|p| p["metadata"]["name"] == "datadir-zk-0");
        let pdb = c.items("pdb");
        let budget = pdb.iter().any(|p| p["status"]["expectedPods"].is_number());
        (daemon && web0 && zk0 && pi && claimed && budget).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "examples did not act: pods {:?}\npvc {:?}\n{}",
            c.items("pods")
                .iter()
                .map(|p| p["metadata"]["name"].clone())
                .collect::<Vec<_>>(),
            c.items("pvc"),
            c.log()
        )
    });
    // the claims get the default class, and a node once their pod is placed
    let classes = c.items("storageclasses");
    assert!(
        classes
            .iter()
            .any(|s| s["metadata"]["name"] == "local-path"),
        "{classes:?}"
    );
}

#[test]
fn process_pods_keep_their_claims_data() {
    if !kubus_tests::is_root() {
        eprintln!("skipped: the process runtime binds volumes only as root (CI runs it)");
        return;
    }
    let c = Cluster::start();
    // /srv exists (empty) on the node; each pod gets its claim bound over it
    applied(
        &c,
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: keeper}
spec:
  replicas: 2
  serviceName: keeper
  selector: {matchLabels: {app: keeper}}
  template:
    metadata: {labels: {app: keeper}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: keep
        image: busybox
        command: ["sh", "-c", "[ -f /srv/first ] || echo $HOSTNAME > /srv/first; while true; do sleep 1; done"]
        volumeMounts: [{name: data, mountPath: /srv}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Mi}}}
"#,
    );
    let running = |name: &str| {
        c.items("pods").into_iter().find(|p| {
            p["metadata"]["name"] == name
                && p["status"]["phase"] == "Running"
                && p["metadata"]["deletionTimestamp"].is_null()
        })
    };
    let first = |pod: &str| {
        let out = c.kubus(&["exec", pod, "--", "cat", "/srv/first"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let both = wait_for(Duration::from_secs(90), || {
        Some((running("keeper-0")?, running("keeper-1")?))
    });
    let (_, one) =
        both.unwrap_or_else(|| panic!("keepers not running: {:?}\n{}", c.items("pods"), c.log()));
    wait_for(Duration::from_secs(10), || {
        (first("keeper-1") == "keeper-1").then_some(())
    })
    .unwrap_or_else(|| panic!("keeper-1 wrote {:?}", first("keeper-1")));
    assert_eq!(first("keeper-0"), "keeper-0");
    assert!(
        !Path::new("/srv/first").exists(),
        "the mount leaked to the node"
    );
    // keeper-1 goes and comes back to the same data
    let out = c.kubus(&["delete", "pod", "keeper-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(Duration::from_secs(60), || {
        running("keeper-1").filter(|p| p["metadata"]["uid"] != one["metadata"]["uid"])
    })
    .unwrap_or_else(|| panic!("keeper-1 did not come back: {:?}", c.items("pods")));
    assert_eq!(first("keeper-1"), "keeper-1");
}
