//! kubectl's operator verbs against a real cluster (process runtime):
//! `scale`, `set image`, `rollout status|history|undo|pause|resume|
//! restart`, `label`, `annotate`, `describe`, `wait`, `create`, `run`,
//! `get all` and `edit`, each checked by what it prints and what it left
//! in the store.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kubus_tests::{kubus_bin, wait_for, Cluster};
use serde_json::Value;

fn deployment(name: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "while true; do sleep 1; done"]
"#
    )
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Run the CLI and insist it succeeded; its standard output.
fn ok(c: &Cluster, args: &[&str]) -> String {
    let out = c.kubus(args);
    assert!(
        out.status.success(),
        "kubus {args:?} failed:\n{}{}\nlog:\n{}",
        stdout(&out),
        stderr(&out),
        c.log()
    );
    stdout(&out)
}

/// Run the CLI and insist it failed; its standard error.
fn fails(c: &Cluster, args: &[&str]) -> String {
    let out = c.kubus(args);
    assert!(
        !out.status.success(),
        "kubus {args:?} succeeded:\n{}",
        stdout(&out)
    );
    stderr(&out)
}

/// `kubus edit` with `EDITOR` set.
fn edit(c: &Cluster, editor: &str, args: &[&str]) -> Output {
    Command::new(kubus_bin())
        .arg("edit")
        .args(args)
        .env("KUBUS_HOME", c.home())
        .env_remove("KUBUS_NATS")
        .env_remove("KUBE_EDITOR")
        .env("EDITOR", editor)
        .stdin(Stdio::null())
        .output()
        .expect("run kubus edit")
}

fn object(c: &Cluster, kind: &str, name: &str) -> Value {
    serde_json::from_str(&ok(c, &["get", kind, name, "-o", "json"])).expect("json")
}

fn image(d: &Value) -> String {
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn operator_verbs_drive_a_deployment() {
    let c = Cluster::start();
    let out = c.apply(&deployment("verbs"));
    assert!(out.status.success(), "{}", stderr(&out));

    // rollout status follows the first rollout to the end
    let status = ok(
        &c,
        &["rollout", "status", "deployment/verbs", "--timeout=90s"],
    );
    assert!(
        status.ends_with("deployment \"verbs\" successfully rolled out\n"),
        "{status}"
    );
    let met = ok(
        &c,
        &[
            "wait",
            "--for=condition=Ready",
            "pod",
            "-l",
            "app=verbs",
            "--timeout=60s",
        ],
    );
    let lines: Vec<&str> = met.lines().collect();
    assert_eq!(lines.len(), 2, "{met}");
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("pod/verbs-") && l.ends_with(" condition met")),
        "{met}"
    );

    // scale, with and without the current-replicas precondition
    assert_eq!(
        ok(&c, &["scale", "deployment/verbs", "--replicas=3"]),
        "deployment.apps/verbs scaled\n"
    );
    let refused = fails(
        &c,
        &[
            "scale",
            "deploy",
            "verbs",
            "--replicas=1",
            "--current-replicas=2",
        ],
    );
    assert!(
        refused.contains("Expected replicas to be 2, was 3"),
        "{refused}"
    );
    ok(&c, &["rollout", "status", "deploy/verbs", "--timeout=90s"]);
    assert_eq!(
        object(&c, "deployment", "verbs")["status"]["availableReplicas"],
        3
    );

    // a new image rolls out as revision 2
    let missing = fails(
        &c,
        &["set", "image", "deployment/verbs", "nope=busybox:1.36"],
    );
    assert!(
        missing.contains("unable to find container named \"nope\""),
        "{missing}"
    );
    assert_eq!(
        ok(
            &c,
            &["set", "image", "deployment/verbs", "main=busybox:1.36"]
        ),
        "deployment.apps/verbs image updated\n"
    );
    let status = ok(
        &c,
        &["rollout", "status", "deployment/verbs", "--timeout=90s"],
    );
    assert!(status.contains("successfully rolled out"), "{status}");
    let history = ok(&c, &["rollout", "history", "deployment/verbs"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, vec!["1", "2"], "{history}");
    let first = ok(
        &c,
        &["rollout", "history", "deployment/verbs", "--revision=1"],
    );
    assert!(
        first.contains("Image:") && first.contains("busybox\n"),
        "{first}"
    );

    // undo brings the first template back
    assert_eq!(
        ok(&c, &["rollout", "undo", "deployment/verbs"]),
        "deployment.apps/verbs rolled back\n"
    );
    assert_eq!(image(&object(&c, "deployment", "verbs")), "busybox");
    ok(
        &c,
        &["rollout", "status", "deployment/verbs", "--timeout=90s"],
    );

    // pause, resume, restart
    assert_eq!(
        ok(&c, &["rollout", "pause", "deployment/verbs"]),
        "deployment.apps/verbs paused\n"
    );
    let paused = fails(&c, &["rollout", "restart", "deployment/verbs"]);
    assert!(
        paused.contains("can't restart paused deployment"),
        "{paused}"
    );
    ok(&c, &["rollout", "resume", "deployment/verbs"]);
    assert_eq!(
        ok(&c, &["rollout", "restart", "deployment/verbs"]),
        "deployment.apps/verbs restarted\n"
    );
    let d = object(&c, "deployment", "verbs");
    assert!(
        d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .is_string(),
        "{d:#}"
    );
    ok(
        &c,
        &["rollout", "status", "deployment/verbs", "--timeout=90s"],
    );

    // labels and annotations, refusing silent overwrites
    assert_eq!(
        ok(&c, &["label", "deployment", "verbs", "tier=web"]),
        "deployment.apps/verbs labeled\n"
    );
    let refused = fails(&c, &["label", "deployment", "verbs", "tier=db"]);
    assert!(
        refused.contains("'tier' already has a value (web), and --overwrite is false"),
        "{refused}"
    );
    ok(
        &c,
        &["label", "deployment", "verbs", "tier=db", "--overwrite"],
    );
    assert_eq!(
        ok(&c, &["annotate", "deployment/verbs", "note=first try"]),
        "deployment.apps/verbs annotated\n"
    );
    let refused = fails(&c, &["annotate", "deployment/verbs", "note=second"]);
    assert!(
        refused.contains("--overwrite is false but found the following declared annotation(s): 'note' already has a value (first try)"),
        "{refused}"
    );
    let d = object(&c, "deployment", "verbs");
    assert_eq!(d["metadata"]["labels"]["tier"], "db");
    assert_eq!(d["metadata"]["annotations"]["note"], "first try");
    // once the restarted rollout's old pods are gone, label the three left
    wait_for(Duration::from_secs(30), || {
        let pods = c.items("pods");
        let ours = pods
            .iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "verbs")
            .count();
        (ours == 3).then_some(())
    })
    .unwrap_or_else(|| panic!("old pods linger: {:#?}", c.items("pods")));
    let labeled = ok(&c, &["label", "pods", "-l", "app=verbs", "checked=yes"]);
    assert_eq!(
        labeled.lines().filter(|l| l.ends_with(" labeled")).count(),
        3,
        "{labeled}"
    );

    // describe shows the replicas line and the Deployment's Events
    let text = ok(&c, &["describe", "deployment", "verbs"]);
    for want in [
        "Name:",
        "Replicas:",
        "3 desired | 3 updated | 3 total | 3 available | 0 unavailable",
        "StrategyType:           RollingUpdate",
        "Pod Template:",
        "NewReplicaSet:",
        "Events:",
        "ScalingReplicaSet",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    let pod_text = ok(&c, &["describe", "pods", "verbs-"]);
    assert!(
        pod_text.contains("Controlled By:  ReplicaSet/verbs-") && pod_text.contains("Scheduled"),
        "{pod_text}"
    );

    // create and run
    assert_eq!(
        ok(
            &c,
            &[
                "create",
                "configmap",
                "verbs-cfg",
                "--from-literal=greeting=hello",
                "--from-literal=n=1"
            ]
        ),
        "configmap/verbs-cfg created\n"
    );
    let cm = object(&c, "configmap", "verbs-cfg");
    assert_eq!(cm["data"]["greeting"], "hello");
    assert_eq!(cm["data"]["n"], "1");
    let yaml = ok(
        &c,
        &[
            "create",
            "deployment",
            "dry",
            "--image=nginx:1.27",
            "--dry-run=client",
            "-o",
            "yaml",
        ],
    );
    assert!(
        yaml.contains("app: dry") && yaml.contains("name: nginx"),
        "{yaml}"
    );
    assert!(c.kubus(&["get", "deployment", "dry"]).status.code() != Some(0));
    assert_eq!(
        ok(
            &c,
            &[
                "run",
                "verbs-shell",
                "--image=busybox",
                "--restart=Never",
                "--",
                "sleep",
                "3600"
            ]
        ),
        "pod/verbs-shell created\n"
    );
    let shell = object(&c, "pod", "verbs-shell");
    assert_eq!(shell["metadata"]["labels"]["run"], "verbs-shell");
    assert_eq!(shell["spec"]["containers"][0]["args"][1], "3600");
    assert_eq!(
        ok(
            &c,
            &[
                "wait",
                "pod/verbs-shell",
                "--for=jsonpath={.status.phase}=Running",
                "--timeout=60s"
            ]
        ),
        "pod/verbs-shell condition met\n"
    );
    let timed_out = fails(
        &c,
        &[
            "wait",
            "pod/verbs-shell",
            "--for=condition=Ready=false",
            "--timeout=1s",
        ],
    );
    assert!(
        timed_out.contains("timed out waiting for the condition on pods/verbs-shell"),
        "{timed_out}"
    );

    // get all: one section per kind, names prefixed by kind
    let all = ok(&c, &["get", "all"]);
    for want in [
        "pod/verbs-shell",
        "deployment.apps/verbs",
        "replicaset.apps/verbs-",
    ] {
        assert!(all.contains(want), "no {want:?} in:\n{all}");
    }

    // edit: a changed file is written back, an unchanged one is not
    let out = edit(
        &c,
        "sed -i s/replicas:\\ 3/replicas:\\ 2/",
        &["deployment", "verbs"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "deployment.apps/verbs edited\n");
    assert_eq!(object(&c, "deployment", "verbs")["spec"]["replicas"], 2);
    let out = edit(&c, "true", &["deployment/verbs"]);
    assert_eq!(stdout(&out), "Edit cancelled, no changes made.\n");

    // a rollout that cannot progress: rollout status fails at the deadline
    let stuck = deployment("stuck")
        .replace("  replicas: 2\n", "  replicas: 1\n  progressDeadlineSeconds: 2\n")
        .replace(
            "        command: [\"sh\", \"-c\", \"while true; do sleep 1; done\"]\n",
            "        command: [\"sh\", \"-c\", \"while true; do sleep 1; done\"]\n        readinessProbe: {exec: {command: [\"false\"]}, periodSeconds: 1}\n",
        );
    assert!(stuck.contains("readinessProbe") && stuck.contains("progressDeadlineSeconds"));
    let out = c.apply(&stuck);
    assert!(out.status.success(), "{}", stderr(&out));
    let failed = fails(
        &c,
        &["rollout", "status", "deployment/stuck", "--timeout=60s"],
    );
    assert!(
        failed.contains("error: deployment \"stuck\" exceeded its progress deadline"),
        "{failed}"
    );

    // wait for a deletion
    ok(&c, &["delete", "pod", "verbs-shell", "--grace-period=0"]);
    ok(
        &c,
        &["wait", "pod/verbs-shell", "--for=delete", "--timeout=30s"],
    );
    assert!(wait_for(Duration::from_secs(5), || {
        (!c.kubus(&["get", "pod", "verbs-shell"]).status.success()).then_some(())
    })
    .is_some());
}
