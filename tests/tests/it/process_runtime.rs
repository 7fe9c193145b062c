//! The process runtime (no containerd) keeps up with issue 5 where it can:
//! env from ConfigMaps and fieldRef, exec and httpGet probes (against
//! 127.0.0.1, the node's address), `kubus exec` as a host command with the
//! container's env; and it refuses what it cannot do (volume mounts) with a
//! clear reason.

use std::net::TcpListener;
use std::time::Duration;

use kubus_tests::{events_about, has_event, wait_for, Cluster};
use serde_json::Value;

/// A loopback port nothing listens on (bound, then let go).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("addr").port()
}

fn pod(c: &Cluster, name: &str) -> Option<Value> {
    c.items("pods")
        .into_iter()
        .find(|p| p["metadata"]["name"] == name)
}

#[test]
fn process_runtime_env_probes_exec_and_refused_mounts() {
    let c = Cluster::start();
    let mark = c.dir.path().join("ready-mark");
    let port = closed_port();
    let manifest = format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: greeting}}
data: {{GREETING: hello-process}}
---
apiVersion: v1
kind: Pod
metadata: {{name: gated}}
spec:
  containers:
  - name: app
    image: busybox
    envFrom: [{{configMapRef: {{name: greeting}}}}]
    env:
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: MARK, value: "{mark}"}}
    command: ["sh", "-c", "echo $GREETING from $POD_NAME as $(POD_NAME); sleep 3600"]
    readinessProbe:
      exec: {{command: ["sh", "-c", "test -f $MARK"]}}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {{name: dead-port}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: busybox
    command: ["sh", "-c", "sleep 3600"]
    livenessProbe:
      httpGet: {{path: /healthz, port: {port}}}
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Pod
metadata: {{name: mounts}}
spec:
  containers:
  - name: app
    image: busybox
    command: ["sleep", "3600"]
    volumeMounts: [{{name: tmp, mountPath: /scratch}}]
  volumes: [{{name: tmp, emptyDir: {{}}}}]
"#,
        mark = mark.display()
    );
    let out = c.apply(&manifest);
    assert!(out.status.success(), "{out:?}");

    // running but not ready until the readiness probe passes
    let status = |name: &str| {
        pod(&c, name)
            .map(|p| p["status"].clone())
            .unwrap_or_default()
    };
    wait_for(Duration::from_secs(20), || {
        let s = status("gated");
        (s["phase"] == "Running" && s["containerStatuses"][0]["state"]["running"].is_object())
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "gated not running: {:#}\nlog:\n{}",
            status("gated"),
            c.log()
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    let s = status("gated");
    assert_eq!(s["containerStatuses"][0]["ready"], false, "{s:#}");
    std::fs::write(&mark, b"").expect("mark");
    wait_for(Duration::from_secs(15), || {
        let s = status("gated");
        let ready = s["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        (ready && s["containerStatuses"][0]["ready"] == true).then_some(())
    })
    .unwrap_or_else(|| panic!("gated never ready: {:#}", status("gated")));
    let logs = String::from_utf8_lossy(&c.kubus(&["logs", "gated"]).stdout).to_string();
    assert!(logs.contains("hello-process from gated as gated"), "{logs}");
    let out = c.kubus(&["exec", "gated", "--", "sh", "-c", "echo $GREETING; exit 4"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello-process\n");
    assert_eq!(out.status.code(), Some(4));
    // exec -i: a session over the bus; stdin's end reaches the command
    let out = c.kubus_with_input(
        &[
            "exec",
            "-i",
            "gated",
            "--",
            "sh",
            "-c",
            "cat; echo eof; exit 5",
        ],
        "one\ntwo\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "one\ntwo\neof\n",
        "{out:?}"
    );
    assert_eq!(out.status.code(), Some(5));
    // exec -it on a terminal (util-linux `script` gives the CLI one)
    let script = format!(
        "{} exec -it gated -- sh -c 'tty; stty size'",
        kubus_tests::kubus_bin().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &script, "/dev/null"])
        .env("KUBUS_HOME", c.home())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("/dev/pts/"), "{out:?}");
    // run -i --rm: attach to a new pod's own process, then delete it
    let out = c.kubus_with_input(
        &[
            "run",
            "-i",
            "--rm",
            "attached",
            "--image=busybox",
            "--restart=Never",
            "--",
            "sh",
        ],
        "echo in-the-pod\nexit 3\n",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("in-the-pod"),
        "{out:?}"
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(!c.kubus(&["get", "pod", "attached"]).status.success());

    // a failing liveness probe restarts the container
    let restarted = wait_for(Duration::from_secs(30), || {
        let s = status("dead-port");
        (s["containerStatuses"][0]["restartCount"].as_u64()? >= 1).then_some(())
    });
    assert!(
        restarted.is_some(),
        "dead-port never restarted: {:#}\nlog:\n{}",
        status("dead-port"),
        c.log()
    );
    let events = events_about(&c.items("events"), "dead-port");
    let unhealthy = format!("Liveness probe failed: Get \"http://127.0.0.1:{port}/healthz\"");
    assert!(
        has_event(&events, "Unhealthy", |m| m.starts_with(&unhealthy)),
        "{events:?}"
    );
    let killing = "Container app failed liveness probe, will be restarted";
    assert!(
        has_event(&events, "Killing", |m| m == killing),
        "{events:?}"
    );

    // volume mounts are refused with a reason that says so
    let waiting = wait_for(Duration::from_secs(15), || {
        let w = status("mounts")["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "VolumeMountsUnsupported").then_some(w)
    })
    .unwrap_or_else(|| panic!("mounts: {:#}", status("mounts")));
    let message = waiting["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("/scratch") && message.contains("cri runtime"),
        "{message}"
    );
}
