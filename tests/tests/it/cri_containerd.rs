//! The cri runtime against a real containerd (issue 5): `kubus up --runtime
//! cri` starts a private containerd under its data directory, the busybox
//! test image is imported into it (deploy/build-test-image.sh), and pods
//! run as real containers on a private bridge network (10.88.0.0/16, only
//! inside network namespaces this run creates).
//!
//! Needs root and containerd (deploy/install-deps.sh); CI has both. Without
//! root the test says so and passes without running.
//!
//! containerd's bridge and pod range are per machine, so two of these
//! clusters must not run at once: every test holds [`serial`] while it runs.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kubus_tests::{alive, events_about, has_event, k8s_examples, kubus_bin, wait_for};
use serde_json::Value;

static SERIAL: Mutex<()> = Mutex::new(());

/// The service range of these clusters: one no other test cluster uses
/// (tests run two at a time; the cri ones one after another).
const SERVICE_CIDR: &str = "10.99.0.0/16";

/// Held by each test for its whole run (a failed test poisons nothing that
/// matters: the lock only orders the tests).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

struct CriCluster {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The pod network namespaces (`/run/netns/cni-*`) there were before
    /// this cluster started: the ones after are its own.
    netns_before: BTreeSet<String>,
}

impl CriCluster {
    /// `kubus up --runtime cri` on the data directory under `dir`, its
    /// output appended to `dir/kubus.log`.
    fn spawn_up(dir: &Path) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("kubus.log"))
            .expect("log");
        Command::new(kubus_bin())
            .args([
                "up",
                "--runtime",
                "cri",
                "--service-cidr",
                SERVICE_CIDR,
                "--node-name",
                "node-1",
                "--data-dir",
            ])
            .arg(dir.join("data"))
            .env("KUBUS_HOME", dir.join("home"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start kubus up")
    }

    fn start() -> CriCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        // what an earlier cluster left on the bridge would answer for the
        // addresses this one's pods get
        unplug_bridge();
        let netns_before = cni_namespaces();
        let child = CriCluster::spawn_up(dir.path());
        let c = CriCluster {
            dir,
            child: Some(child),
            netns_before,
        };
        // import the test image as soon as containerd listens
        let socket = c.containerd_dir().join("containerd.sock");
        wait_for(Duration::from_secs(30), || socket.exists().then_some(()))
            .unwrap_or_else(|| panic!("containerd did not start; log:\n{}", c.log()));
        let script = kubus_tests::manifest_dir().join("../deploy/build-test-image.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg("--address")
            .arg(&socket)
            .output()
            .expect("run build-test-image.sh");
        assert!(
            out.status.success(),
            "build-test-image.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for(Duration::from_secs(30), || {
            (c.items("nodes").len() == 1).then_some(())
        })
        .unwrap_or_else(|| panic!("node did not register; log:\n{}", c.log()));
        c
    }

    fn containerd_dir(&self) -> PathBuf {
        self.dir.path().join("data").join("containerd")
    }

    fn containerd_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.containerd_dir().join("containerd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("kubus.log")).unwrap_or_default();
        let start = text.len().saturating_sub(6000);
        text.get(start..).unwrap_or(&text).to_string()
    }

    fn kubus(&self, args: &[&str]) -> Output {
        Command::new(kubus_bin())
            .args(args)
            .env("KUBUS_HOME", self.dir.path().join("home"))
            .env_remove("KUBUS_NATS")
            .stdin(Stdio::null())
            .output()
            .expect("run kubus")
    }

    fn kubus_with_input(&self, args: &[&str], input: &str) -> Output {
        kubus_tests::output_with_input(
            Command::new(kubus_bin())
                .args(args)
                .env("KUBUS_HOME", self.dir.path().join("home"))
                .env_remove("KUBUS_NATS"),
            input,
        )
    }

    fn apply(&self, manifest: &str) {
        let mut child = Command::new(kubus_bin())
            .args(["apply", "-f", "-"])
            .env("KUBUS_HOME", self.dir.path().join("home"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubus apply");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(manifest.as_bytes()).expect("write");
        }
        let out = child.wait_with_output().expect("kubus apply");
        assert!(
            out.status.success(),
            "apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn items(&self, kind: &str) -> Vec<Value> {
        let out = self.kubus(&["get", kind, "-o", "json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The Events about one pod: (reason, message) pairs.
    fn events_of(&self, pod: &str) -> Vec<(String, String)> {
        events_about(&self.items("events"), pod)
    }

    fn pod(&self, name: &str) -> Option<Value> {
        self.items("pods")
            .into_iter()
            .find(|p| p["metadata"]["name"] == name)
    }

    /// SIGKILL `kubus up` by its pid, and its nats-server by the pid it
    /// recorded; its containerd (and the containers) run on.
    fn kill9(&mut self) {
        let nats_pid = std::fs::read(self.dir.path().join("home").join("current.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["nats_pid"].as_u64());
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = nats_pid {
            kubus_tests::signal(u32::try_from(pid).unwrap_or(0), "-KILL");
        }
    }

    /// Start `kubus up` again on the same data directory; ready when the
    /// API answers and the agent has looked at what its earlier run left.
    fn relaunch(&mut self) {
        assert!(self.child.is_none(), "already running");
        let _ = std::fs::remove_file(self.dir.path().join("home").join("current.json"));
        let from = self.log_len();
        self.child = Some(CriCluster::spawn_up(self.dir.path()));
        wait_for(Duration::from_secs(60), || {
            (self.items("nodes").len() == 1
                && self
                    .log_since(from)
                    .contains("took over what an earlier run"))
            .then_some(())
        })
        .unwrap_or_else(|| panic!("kubus up did not come back; log:\n{}", self.log()));
    }

    fn log_len(&self) -> usize {
        std::fs::metadata(self.dir.path().join("kubus.log"))
            .map_or(0, |m| usize::try_from(m.len()).unwrap_or(0))
    }

    /// The log from byte `from` on (what a later run wrote).
    fn log_since(&self, from: usize) -> String {
        let text = std::fs::read(self.dir.path().join("kubus.log")).unwrap_or_default();
        String::from_utf8_lossy(text.get(from..).unwrap_or_default()).to_string()
    }

    /// SIGTERM and wait (bounded); the mesh node removes its pods and stops
    /// containerd. Kill both by pid if that does not happen.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        if wait_for(Duration::from_secs(60), || child.try_wait().ok().flatten()).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = self.containerd_pid().filter(|p| alive(*p)) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

impl Drop for CriCluster {
    /// Stops kubus and its containerd, then removes what they leave for a
    /// restart to adopt — the pods' shims and network namespaces: the next
    /// cluster's pods get the same addresses on the same bridge, and a
    /// namespace left holding one answers for it (the CI failure of
    /// `cri_pods_run_serve_log_and_crash_loop`: probes timed out against
    /// an address two namespaces held).
    fn drop(&mut self) {
        self.stop();
        let dir = self.containerd_dir();
        for pid in shims_of(&dir) {
            kubus_tests::signal(pid, "-KILL");
        }
        let left: Vec<String> = cni_namespaces()
            .difference(&self.netns_before)
            .cloned()
            .collect();
        if !left.is_empty() {
            let log =
                std::fs::read_to_string(self.dir.path().join("kubus.log")).unwrap_or_default();
            let stop: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("sandbox") || l.contains("CNI") || l.contains("stopp"))
                .collect();
            eprintln!(
                "cri_containerd: the cluster left {} pod network namespaces; its stop said:\n{}",
                left.len(),
                stop[stop.len().saturating_sub(30)..].join("\n")
            );
        }
        for ns in &left {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
        unplug_bridge();
    }
}

/// The private containerd's bridge (node/src/containerd.rs).
const BRIDGE: &str = "kubus0";

/// Delete every pod's link on the bridge: deleting the host end of a veth
/// pair deletes the pod's end too, so a namespace a cluster left behind
/// (one `ip netns delete` could not remove) no longer holds an address
/// the next cluster's pods get. CRI tests run one at a time, so whatever
/// is on the bridge between them is a test's leftover.
fn unplug_bridge() {
    let Ok(out) = Command::new("ip")
        .args(["-o", "link", "show", "master", BRIDGE])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "7: vethabc@if2: <…> …"
        let Some(name) = line
            .split(": ")
            .nth(1)
            .map(|n| n.split('@').next().unwrap_or(n))
        else {
            continue;
        };
        if name.starts_with("veth") {
            let _ = Command::new("ip").args(["link", "delete", name]).status();
        }
    }
}

/// The CNI network namespaces containerd made (`/run/netns/cni-*`).
fn cni_namespaces() -> BTreeSet<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("cni-"))
        .collect()
}

/// The pids of the containerd shims serving the containerd under `dir`
/// (their command line names its socket there).
fn shims_of(dir: &Path) -> Vec<u32> {
    let dir = dir.as_os_str().as_bytes();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.first()
                .is_some_and(|a| a.windows(15).any(|w| w == b"containerd-shim"))
                && args.iter().any(|a| a.windows(dir.len()).any(|w| w == dir))
        })
        .collect()
}

use kubus_tests::is_root;

/// An HTTP GET from the host; the body, if it answered.
fn http_get(ip: &str, port: u16) -> Option<String> {
    let addr = format!("{ip}:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    // busybox nc keeps the connection until we close it: read what comes
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(5).any(|w| w == b"hello") {
            break;
        }
    }
    Some(String::from_utf8_lossy(&buf).to_string())
}

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
      containers:
      - name: web
        image: localhost/busybox:latest
        imagePullPolicy: IfNotPresent
        resources: {limits: {cpu: 200m, memory: 32Mi}}
        env: [{name: GREETING, value: hello}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 3}
        livenessProbe: {tcpSocket: {port: 8080}, periodSeconds: 5, initialDelaySeconds: 1}
        command: ["sh", "-c"]
        args:
        - |
          echo "serving on $(hostname)"
          while true; do
            printf 'HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\n%s\n' "$GREETING" | nc -l -p 8080
          done
"#;

const CRASH: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: crash}
spec:
  restartPolicy: Always
  containers:
  - name: crash
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "echo about to fail; exit 1"]
"#;

const NEVER_PULL: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: absent}
spec:
  containers:
  - name: absent
    image: localhost/not-imported:1.0
    imagePullPolicy: Never
"#;

#[test]
fn cri_pods_run_serve_log_and_crash_loop() {
    let _serial = serial();
    if !is_root() {
        eprintln!("cri_containerd: skipped (needs root and containerd; CI runs it)");
        return;
    }
    let mut c = CriCluster::start();

    // A Deployment of 3 busybox pods serving HTTP with nc
    c.apply(WEB);
    let pods = wait_for(Duration::from_secs(60), || {
        let pods: Vec<Value> = c
            .items("pods")
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "web")
            .filter(|p| p["status"]["phase"] == "Running")
            .filter(|p| {
                p["status"]["podIP"]
                    .as_str()
                    .is_some_and(|ip| ip.starts_with("10.88."))
            })
            .collect();
        (pods.len() == 3).then_some(pods)
    })
    .unwrap_or_else(|| {
        panic!(
            "3 web pods not Running with pod IPs; pods: {:#}\nlog:\n{}",
            Value::Array(c.items("pods")),
            c.log()
        )
    });
    let mut ips: Vec<String> = pods
        .iter()
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "distinct pod IPs: {ips:?}");
    // ready once the httpGet readiness probe to the pod's address passes
    let ready = wait_for(Duration::from_secs(30), || {
        let n = c
            .items("pods")
            .iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "web")
            .filter(|p| p["status"]["containerStatuses"][0]["ready"] == true)
            .count();
        (n == 3).then_some(())
    });
    assert!(
        ready.is_some(),
        "web pods not ready: {:#}\nevents: {:#?}\nlog:\n{}",
        Value::Array(c.items("pods")),
        c.items("events")
            .iter()
            .map(|e| format!(
                "{} {} {}: {}",
                e["involvedObject"]["name"], e["reason"], e["count"], e["message"]
            ))
            .collect::<Vec<_>>(),
        c.log()
    );
    for ip in &ips {
        let body = wait_for(Duration::from_secs(20), || {
            http_get(ip, 8080).filter(|b| b.contains("hello"))
        });
        assert!(body.is_some(), "pod {ip} did not answer HTTP");
    }

    // kubus logs returns the container's output
    let name = pods[0]["metadata"]["name"].as_str().unwrap_or_default();
    let logs = wait_for(Duration::from_secs(10), || {
        let out = c.kubus(&["logs", name]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains("serving on").then_some(text)
    });
    assert!(logs.is_some(), "kubus logs {name}: no output");

    // a container exiting 1 goes into CrashLoopBackOff
    c.apply(CRASH);
    let crashed = wait_for(Duration::from_secs(40), || {
        let p = c.pod("crash")?;
        let cs = &p["status"]["containerStatuses"][0];
        (cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
            && cs["restartCount"].as_u64().unwrap_or(0) >= 1
            && cs["lastState"]["terminated"]["exitCode"] == 1)
            .then_some(p)
    });
    assert!(
        crashed.is_some(),
        "no CrashLoopBackOff: {:#}\nlog:\n{}",
        c.pod("crash").unwrap_or_default(),
        c.log()
    );
    let out = c.kubus(&["logs", "crash"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("about to fail"));

    // an absent image under imagePullPolicy Never waits with ErrImageNeverPull
    c.apply(NEVER_PULL);
    let waiting = wait_for(Duration::from_secs(20), || {
        let p = c.pod("absent")?;
        (p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "ErrImageNeverPull")
            .then_some(())
    });
    assert!(
        waiting.is_some(),
        "no ErrImageNeverPull: {:#}",
        c.pod("absent").unwrap_or_default()
    );

    // a clean stop removes the pods through CRI and stops containerd
    let containerd = c.containerd_pid();
    c.stop();
    let log = c.log();
    if let Some(pid) = containerd {
        assert!(
            wait_for(Duration::from_secs(5), || (!alive(pid)).then_some(())).is_some(),
            "containerd {pid} still runs after kubus stopped"
        );
    }
    assert!(log.contains("containerd stopped"), "log:\n{log}");
}

/// Issue 5: the unmodified exec-liveness example (its image imported under
/// the name it asks for by deploy/build-test-image.sh): Running, then the
/// probe fails once /tmp/healthy is gone (after 30 s) and the container is
/// killed and restarted, with Unhealthy and Killing Events.
#[test]
fn cri_exec_liveness_example_restarts_the_container() {
    let _serial = serial();
    if !is_root() {
        eprintln!("cri_containerd: skipped (needs root and containerd; CI runs it)");
        return;
    }
    let c = CriCluster::start();
    let manifest = k8s_examples().join("exec-liveness.yaml");
    let out = c.kubus(&["apply", "-f", &manifest.display().to_string()]);
    assert!(
        out.status.success(),
        "apply {}: {}",
        manifest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let status = |p: &Value| p["status"]["containerStatuses"][0].clone();
    wait_for(Duration::from_secs(60), || {
        let p = c.pod("liveness-exec")?;
        (p["status"]["phase"] == "Running" && status(&p)["ready"] == true).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "liveness-exec not Running: {:#}\nlog:\n{}",
            c.pod("liveness-exec").unwrap_or_default(),
            c.log()
        )
    });
    let running_at = Instant::now();
    // healthy for 30 s, then 3 failed probes 5 s apart, then a stop with the
    // default 30 s grace (sh as PID 1 ignores SIGTERM): about 80 s in all
    let restarted = wait_for(Duration::from_secs(180), || {
        let p = c.pod("liveness-exec")?;
        (status(&p)["restartCount"].as_u64().unwrap_or(0) >= 1).then_some(p)
    });
    let p = restarted.unwrap_or_else(|| {
        panic!(
            "liveness-exec never restarted: {:#}\nevents: {:?}\nlog:\n{}",
            c.pod("liveness-exec").unwrap_or_default(),
            c.events_of("liveness-exec"),
            c.log()
        )
    });
    let after = running_at.elapsed();
    assert!(
        after >= Duration::from_secs(25),
        "restarted after {after:?}, before the probe could fail: {p:#}"
    );
    let events = c.events_of("liveness-exec");
    let unhealthy = |m: &str| m.starts_with("Liveness probe failed:") && m.contains("/tmp/healthy");
    assert!(
        has_event(&events, "Unhealthy", unhealthy),
        "no Unhealthy event: {events:?}"
    );
    let killing = "Container liveness failed liveness probe, will be restarted";
    assert!(
        has_event(&events, "Killing", |m| m == killing),
        "no Killing event: {events:?}"
    );
    // and it runs again
    let again = wait_for(Duration::from_secs(30), || {
        let p = c.pod("liveness-exec")?;
        (status(&p)["state"]["running"].is_object()).then_some(())
    });
    assert!(
        again.is_some(),
        "not running after its restart: {:#}",
        c.pod("liveness-exec").unwrap_or_default()
    );
}

const CONFIGURED: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data:
  GREETING: hello-from-configmap
  app.conf: "mode=test"
---
apiVersion: v1
kind: Secret
metadata: {name: app-secret}
stringData: {password: hunter2}
---
apiVersion: v1
kind: Pod
metadata: {name: configured}
spec:
  containers:
  - name: app
    image: localhost/busybox:latest
    imagePullPolicy: Never
    envFrom: [{configMapRef: {name: app-config}}]
    env:
    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: app-secret, key: password}}}
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: WHO, value: "$(POD_NAME)@$(GREETING)"}
    command: ["sh", "-c"]
    args:
    - |
      echo "GREETING=$GREETING PASSWORD=$PASSWORD POD=$POD_NAME IP=$POD_IP"
      echo "FILE=$(cat /etc/app/app.conf) SECRET_FILE=$(cat /etc/secret/pw)"
      echo "MODE=$(stat -L -c %a /etc/secret/pw)"
      echo "WHO=$WHO"
      echo hi > /scratch/x && echo "SCRATCH=$(cat /scratch/x)"
      echo nope > /etc/app/new 2>/dev/null || echo "CONFIG_READ_ONLY"
      sleep 3600
    volumeMounts:
    - {name: cfg, mountPath: /etc/app}
    - {name: sec, mountPath: /etc/secret}
    - {name: scratch, mountPath: /scratch}
  volumes:
  - {name: cfg, configMap: {name: app-config}}
  - {name: sec, secret: {secretName: app-secret, defaultMode: 256, items: [{key: password, path: pw}]}}
  - {name: scratch, emptyDir: {}}
"#;

const WAITS_FOR_CONFIG: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: waits}
spec:
  containers:
  - name: app
    image: localhost/busybox:latest
    imagePullPolicy: Never
    env: [{name: LATE, valueFrom: {configMapKeyRef: {name: late-config, key: value}}}]
    command: ["sh", "-c", "echo LATE=$LATE; sleep 3600"]
"#;

const LATE_CONFIG: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: late-config}
data: {value: arrived}
"#;

/// Issue 5: ConfigMap and Secret values visible inside the container as env
/// and as files (secret items and defaultMode honoured, configMap volumes
/// read-only, emptyDir writable); a missing ConfigMap holds the container
/// in CreateContainerConfigError until it exists.
#[test]
fn cri_config_maps_and_secrets_as_env_and_files() {
    let _serial = serial();
    if !is_root() {
        eprintln!("cri_containerd: skipped (needs root and containerd; CI runs it)");
        return;
    }
    let c = CriCluster::start();
    c.apply(CONFIGURED);
    c.apply(WAITS_FOR_CONFIG);
    let logs = wait_for(Duration::from_secs(60), || {
        let text = String::from_utf8_lossy(&c.kubus(&["logs", "configured"]).stdout).to_string();
        text.contains("CONFIG_READ_ONLY").then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "no output from configured: {:#}\nlog:\n{}",
            c.pod("configured").unwrap_or_default(),
            c.log()
        )
    });
    let ip = c
        .pod("configured")
        .and_then(|p| p["status"]["podIP"].as_str().map(str::to_string))
        .unwrap_or_default();
    assert!(ip.starts_with("10.88."), "pod IP {ip:?}");
    let want = [
        format!("GREETING=hello-from-configmap PASSWORD=hunter2 POD=configured IP={ip}"),
        "FILE=mode=test SECRET_FILE=hunter2".to_string(),
        "MODE=400".to_string(),
        "WHO=configured@hello-from-configmap".to_string(),
        "SCRATCH=hi".to_string(),
    ];
    for line in want {
        assert!(logs.lines().any(|l| l == line), "no {line:?} in:\n{logs}");
    }

    // the pod whose ConfigMap is missing waits, saying which
    let waiting = wait_for(Duration::from_secs(30), || {
        let p = c.pod("waits")?;
        let w = p["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    })
    .unwrap_or_else(|| panic!("waits: {:#}", c.pod("waits").unwrap_or_default()));
    let message = waiting["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.containers[0].env[0].valueFrom.configMapKeyRef")
            && message.contains("configmap \"late-config\" not found"),
        "message: {message}"
    );
    assert_eq!(
        c.pod("waits").unwrap_or_default()["status"]["phase"],
        "Pending"
    );
    let out = c.kubus(&["logs", "waits"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "container \"app\" in pod waits is waiting to start: CreateContainerConfigError"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // once it exists, the container starts with it
    c.apply(LATE_CONFIG);
    let late = wait_for(Duration::from_secs(40), || {
        let text = String::from_utf8_lossy(&c.kubus(&["logs", "waits"]).stdout).to_string();
        text.contains("LATE=arrived").then_some(())
    });
    assert!(
        late.is_some(),
        "waits never started with its ConfigMap: {:#}",
        c.pod("waits").unwrap_or_default()
    );
}

const SHELL: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: shell}
spec:
  containers:
  - name: shell
    image: localhost/busybox:latest
    imagePullPolicy: Never
    env: [{name: GREETING, value: hi}]
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  restartPolicy: Never
  containers:
  - name: talker
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "echo start; for i in 1 2 3 4 5; do echo tick $i; sleep 1; done; echo done"]
"#;

/// Issue 5: `kubus exec` runs a command inside a container (output, exit
/// code, clear errors); `kubus logs -f` follows a container until it ends;
/// `kubus logs --previous` reads the run before a restart.
const LIVE: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: live-config}
data: {greeting: one, drop-me: soon-gone}
---
apiVersion: v1
kind: Secret
metadata: {name: live-secret}
stringData: {token: s3cret-1}
---
apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts:
    - {name: cfg, mountPath: /etc/live}
    - {name: cfg, mountPath: /etc/pinned/greeting, subPath: greeting}
    - {name: sec, mountPath: /etc/token}
    - {name: mem, mountPath: /mem}
  volumes:
  - {name: cfg, configMap: {name: live-config}}
  - {name: sec, secret: {secretName: live-secret}}
  - {name: mem, emptyDir: {medium: Memory, sizeLimit: 8Mi}}
"#;

const LIVE_UPDATED: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: live-config}
data: {greeting: two, added: hi}
---
apiVersion: v1
kind: Secret
metadata: {name: live-secret}
stringData: {token: s3cret-2}
"#;

/// What a command run in the `live` pod printed (trimmed).
fn exec(c: &CriCluster, args: &[&str]) -> String {
    let mut all = vec!["exec", "live", "--"];
    all.extend_from_slice(args);
    let out = c.kubus(&all);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The mount on `path` in a mounts table (`/proc/<pid>/mounts`): its
/// filesystem type and options.
fn mount_of(table: &str, path: &str) -> Option<(String, String)> {
    table.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(1) == Some(&path)).then(|| {
            (
                f.get(2).unwrap_or(&"").to_string(),
                f.get(3).unwrap_or(&"").to_string(),
            )
        })
    })
}

/// Issue 5: a running pod's configMap and secret volumes follow updates of
/// their sources (a new `..data` version swapped in atomically: changed
/// values, added keys, dropped keys gone) without the container
/// restarting; a subPath mount keeps what it had. Its secret volume and
/// its `medium: Memory` emptyDir are tmpfs mounts (the secret never on the
/// node's disk), unmounted when the pod goes.
#[test]
fn cri_config_and_secret_volumes_refresh_live_on_tmpfs() {
    let _serial = serial();
    if !is_root() {
        eprintln!("cri_containerd: skipped (needs root and containerd; CI runs it)");
        return;
    }
    let mut c = CriCluster::start();
    c.apply(LIVE);
    let first = wait_for(Duration::from_secs(60), || {
        let p = c.pod("live")?;
        let running = p["status"]["containerStatuses"][0]["state"]["running"].is_object();
        (running && exec(&c, &["cat", "/etc/live/greeting"]) == "one").then_some(p)
    })
    .unwrap_or_else(|| {
        panic!(
            "live not running with its files: {:#}\nlog:\n{}",
            c.pod("live").unwrap_or_default(),
            c.log()
        )
    });
    let run_of = |p: &Value| {
        let s = &p["status"]["containerStatuses"][0];
        (
            s["containerID"].as_str().unwrap_or_default().to_string(),
            s["restartCount"].as_u64().unwrap_or(u64::MAX),
        )
    };
    let run = run_of(&first);
    assert_eq!(exec(&c, &["cat", "/etc/token/token"]), "s3cret-1");
    assert_eq!(exec(&c, &["cat", "/etc/live/drop-me"]), "soon-gone");
    assert_eq!(exec(&c, &["cat", "/etc/pinned/greeting"]), "one");

    // the secret and the memory emptyDir are tmpfs mounts in the container
    let mounts = exec(&c, &["cat", "/proc/mounts"]);
    let (fs, _) = mount_of(&mounts, "/etc/token").unwrap_or_default();
    assert_eq!(fs, "tmpfs", "/etc/token in:\n{mounts}");
    let (fs, opts) = mount_of(&mounts, "/mem").unwrap_or_default();
    assert!(
        fs == "tmpfs" && opts.contains("size=8192k"),
        "/mem: {fs} {opts} in:\n{mounts}"
    );
    let (fs, _) = mount_of(&mounts, "/etc/live").unwrap_or_default();
    assert_ne!(fs, "tmpfs", "a configMap volume is on disk");
    // and on the node, the pod's secret volume directory is a tmpfs
    let uid = first["metadata"]["uid"].as_str().unwrap_or_default();
    let volumes = c
        .dir
        .path()
        .join(format!("data/agent/pods/default_live_{uid}/volumes"));
    let secret_dir = volumes.join("kubernetes.io~secret/sec");
    let host_mounts = || std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let secret_path = secret_dir.to_string_lossy().to_string();
    assert_eq!(
        mount_of(&host_mounts(), &secret_path).map(|(fs, _)| fs),
        Some("tmpfs".to_string()),
        "{secret_path} is not a tmpfs on the node"
    );

    // update both sources: the files follow, the container runs on
    c.apply(LIVE_UPDATED);
    let updated = Instant::now();
    let seen = wait_for(Duration::from_secs(30), || {
        (exec(&c, &["cat", "/etc/live/greeting"]) == "two"
            && exec(&c, &["cat", "/etc/live/added"]) == "hi"
            && exec(&c, &["cat", "/etc/token/token"]) == "s3cret-2")
            .then_some(())
    });
    assert!(
        seen.is_some(),
        "files not refreshed: greeting={:?} added={:?} token={:?} ls={:?}\nlog:\n{}",
        exec(&c, &["cat", "/etc/live/greeting"]),
        exec(&c, &["cat", "/etc/live/added"]),
        exec(&c, &["cat", "/etc/token/token"]),
        exec(&c, &["ls", "-la", "/etc/live/"]),
        c.log()
    );
    eprintln!("refreshed after {:?}", updated.elapsed());
    assert_eq!(
        exec(
            &c,
            &[
                "sh",
                "-c",
                "test -e /etc/live/drop-me && echo there || echo gone"
            ]
        ),
        "gone",
        "a dropped key's file goes"
    );
    // kubelet's layout: each key a link into ..data
    assert_eq!(
        exec(&c, &["readlink", "/etc/live/greeting"]),
        "..data/greeting"
    );
    assert_eq!(
        exec(&c, &["cat", "/etc/pinned/greeting"]),
        "one",
        "a subPath mount does not follow updates"
    );
    let now = c.pod("live").unwrap_or_default();
    assert_eq!(run_of(&now), run, "the container did not restart");

    // SIGKILLed and restarted, the agent re-adopts the pod with the tmpfs
    // it runs on (not a second one stacked on it), and refreshes it again
    c.kill9();
    c.relaunch();
    let mounted_at = |path: &str| {
        host_mounts()
            .lines()
            .filter(|l| l.split(' ').nth(1) == Some(path))
            .count()
    };
    assert_eq!(mounted_at(&secret_path), 1, "{secret_path}");
    c.apply(&LIVE_UPDATED.replace("s3cret-2", "s3cret-3"));
    let seen = wait_for(Duration::from_secs(30), || {
        (exec(&c, &["cat", "/etc/token/token"]) == "s3cret-3").then_some(())
    });
    assert!(
        seen.is_some(),
        "not refreshed after the restart: token={:?}\nlog:\n{}",
        exec(&c, &["cat", "/etc/token/token"]),
        c.log()
    );
    assert_eq!(mounted_at(&secret_path), 1, "{secret_path}");
    let now = c.pod("live").unwrap_or_default();
    assert_eq!(run_of(&now), run, "re-adopted, not restarted");

    // the pod goes: its tmpfs mounts go with it
    let out = c.kubus(&["delete", "pod", "live"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = wait_for(Duration::from_secs(30), || {
        (!volumes.exists() && mount_of(&host_mounts(), &secret_path).is_none()).then_some(())
    });
    assert!(
        gone.is_some(),
        "{} still there or still mounted\nlog:\n{}",
        volumes.display(),
        c.log()
    );
}

#[test]
fn cri_exec_and_logs_follow_and_previous() {
    let _serial = serial();
    if !is_root() {
        eprintln!("cri_containerd: skipped (needs root and containerd; CI runs it)");
        return;
    }
    let c = CriCluster::start();
    c.apply(SHELL);
    c.apply(CRASH);
    let running = |name: &str| {
        c.pod(name)
            .is_some_and(|p| p["status"]["containerStatuses"][0]["state"]["running"].is_object())
    };
    wait_for(Duration::from_secs(60), || {
        (running("shell") && running("talker")).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "pods not running: {:#}\nlog:\n{}",
            Value::Array(c.items("pods")),
            c.log()
        )
    });

    // logs -f, started while the talker talks, ends by itself when it does
    let mut follow = Command::new(kubus_bin())
        .args(["logs", "-f", "talker"])
        .env("KUBUS_HOME", c.dir.path().join("home"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubus logs -f");
    let ended = wait_for(Duration::from_secs(30), || follow.try_wait().ok().flatten());
    if ended.is_none() {
        let _ = follow.kill();
    }
    let out = follow.wait_with_output().expect("logs -f output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        ended.is_some_and(|s| s.success()),
        "logs -f did not end by itself: {text:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec!["start", "tick 1", "tick 2", "tick 3", "tick 4", "tick 5", "done"],
        "every line once, in order"
    );

    // exec: output, stderr, exit code
    let out = c.kubus(&[
        "exec",
        "shell",
        "--",
        "sh",
        "-c",
        "echo $GREETING from $(hostname); echo oops >&2; exit 3",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi from shell\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(out.status.code(), Some(3));
    let out = c.kubus(&[
        "exec",
        "shell",
        "-c",
        "shell",
        "--",
        "cat",
        "/proc/1/cmdline",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("sleep"),
        "runs in the container's PID namespace"
    );
    for (args, want) in [
        (vec!["exec", "nope", "--", "true"], "not found"),
        (
            vec!["exec", "shell", "-c", "wrong", "--", "true"],
            "container \"wrong\" is not valid for pod shell",
        ),
        (vec!["exec", "talker", "--", "true"], "is not running"),
    ] {
        let out = c.kubus(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{args:?}: {err}"
        );
    }

    // exec -i: stdin carried through containerd's streaming server (CRI
    // Exec, SPDY); its end closes the command's
    let out = c.kubus_with_input(
        &[
            "exec",
            "-i",
            "shell",
            "--",
            "sh",
            "-c",
            "cat; echo eof; echo err >&2; exit 4",
        ],
        "one\ntwo\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "one\ntwo\neof\n",
        "{out:?}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n", "{out:?}");
    assert_eq!(out.status.code(), Some(4));
    // run -i --rm: attach (CRI Attach) to a new container's own process
    let out = c.kubus_with_input(
        &[
            "run",
            "-i",
            "--rm",
            "attached",
            "--image=localhost/busybox:latest",
            "--image-pull-policy=Never",
            "--restart=Never",
            "--command",
            "--",
            "sh",
        ],
        "echo in-the-container\nexit 3\n",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("in-the-container"),
        "{out:?}\n{}",
        c.log()
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // --previous: the run before the restart; none before the first
    let out = c.kubus(&["logs", "--previous", "talker"]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("previous terminated container \"talker\" in pod talker not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(Duration::from_secs(40), || {
        let p = c.pod("crash")?;
        (p["status"]["containerStatuses"][0]["restartCount"].as_u64()? >= 1).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "crash never restarted: {:#}",
            c.pod("crash").unwrap_or_default()
        )
    });
    let out = c.kubus(&["logs", "--previous", "crash"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("about to fail"),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // CrashLoopBackOff: restarts wait 10 s, then 20 s, with BackOff Events
    let message = |p: &Value| {
        p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let mut seen = Vec::new();
    wait_for(Duration::from_secs(60), || {
        let m = message(&c.pod("crash")?);
        if !m.is_empty() && seen.last() != Some(&m) {
            seen.push(m);
        }
        seen.iter()
            .any(|m| m.starts_with("back-off 20s"))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no growing back-off: {seen:?}"));
    let tens = seen.iter().position(|m| m.starts_with("back-off 10s"));
    let twenties = seen.iter().position(|m| m.starts_with("back-off 20s"));
    assert!(
        tens < twenties && tens.is_some(),
        "back-off 10s then 20s: {seen:?}"
    );
    let events = c.events_of("crash");
    assert!(
        has_event(&events, "BackOff", |m| m
            == "Back-off restarting failed container crash in pod crash"),
        "{events:?}"
    );
}

const STAGED: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: staged}
spec:
  terminationGracePeriodSeconds: 10
  initContainers:
  - name: first
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "sleep 1; echo one >> /work/order"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: second
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "test -f /work/order && echo two >> /work/order"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    resources: {limits: {memory: 48Mi, cpu: 250m}}
    command: ["sh", "-c"]
    args: ["cat /work/order; trap 'echo TERM > /out/term; exit 0' TERM; while true; do sleep 1; done"]
    volumeMounts: [{name: work, mountPath: /work}, {name: out, mountPath: /out}]
  volumes:
  - {name: work, emptyDir: {}}
  - {name: out, hostPath: {path: "@OUT@", type: DirectoryOrCreate}}
"#;

/// Issue 5: init containers run one at a time, in order, before the app
/// container; Pulled, Created and Started Events for each; resource limits
/// reach the container's cgroup; a deleted pod's container gets SIGTERM
/// (and time to handle it) before it goes.
#[test]
fn cri_init_containers_events_limits_and_graceful_stop() {
    let _serial = serial();
    if !is_root() {
        eprintln!("cri_containerd: skipped (needs root and containerd; CI runs it)");
        return;
    }
    let c = CriCluster::start();
    let out_dir = c.dir.path().join("out");
    c.apply(&STAGED.replace("@OUT@", &out_dir.display().to_string()));
    let p = wait_for(Duration::from_secs(60), || {
        let p = c.pod("staged")?;
        (p["status"]["containerStatuses"][0]["state"]["running"].is_object()).then_some(p)
    })
    .unwrap_or_else(|| {
        panic!(
            "staged not running: {:#}\nlog:\n{}",
            c.pod("staged").unwrap_or_default(),
            c.log()
        )
    });
    for (i, name) in ["first", "second"].iter().enumerate() {
        let s = &p["status"]["initContainerStatuses"][i];
        assert_eq!(s["name"], *name);
        assert_eq!(s["state"]["terminated"]["exitCode"], 0, "{s:#}");
    }
    let initialized = p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Initialized")
        .cloned()
        .unwrap_or_default();
    assert_eq!(initialized["status"], "True");
    let logs = wait_for(Duration::from_secs(10), || {
        let text = String::from_utf8_lossy(&c.kubus(&["logs", "staged"]).stdout).to_string();
        text.contains("two").then_some(text)
    });
    assert_eq!(
        logs.as_deref(),
        Some("one\ntwo\n"),
        "init containers in order"
    );

    let events = c.events_of("staged");
    for name in ["first", "second", "main"] {
        for want in [
            (
                "Pulled",
                "Container image \"localhost/busybox:latest\" already present on machine"
                    .to_string(),
            ),
            ("Created", format!("Created container {name}")),
            ("Started", format!("Started container {name}")),
        ] {
            assert!(
                has_event(&events, want.0, |m| m == want.1),
                "no {want:?} in {events:?}"
            );
        }
    }

    // limits reach the container's cgroup (v1 here: memory and cpu)
    let cat = |path: &str| {
        let out = c.kubus(&["exec", "staged", "--", "cat", path]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(
        cat("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
        (48u64 << 20).to_string()
    );
    assert_eq!(cat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), "25000");

    // deleting the pod stops its container with SIGTERM first
    let uid = p["metadata"]["uid"].as_str().unwrap_or_default();
    let volumes = c
        .dir
        .path()
        .join(format!("data/agent/pods/default_staged_{uid}/volumes"));
    assert!(
        volumes.join("kubernetes.io~empty-dir/work/order").is_file(),
        "{}",
        volumes.display()
    );
    let out = c.kubus(&["delete", "pod", "staged"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let term = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(out_dir.join("term")).ok()
    });
    assert_eq!(term.as_deref(), Some("TERM\n"), "the container saw SIGTERM");
    // and its volumes (the emptyDir's data) go with it; the hostPath stays
    let gone = wait_for(Duration::from_secs(20), || {
        (!volumes.exists()).then_some(())
    });
    assert!(gone.is_some(), "{} still there", volumes.display());
    assert!(out_dir.join("term").exists());
}

/// Two pods of a Deployment pinned to node-2 and one bare pod there. Each
/// container marks itself ready with a file (its readiness probe looks),
/// and exits 3 once /tmp/stop exists.
const ADOPTED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: steady}
spec:
  replicas: 2
  selector: {matchLabels: {app: steady}}
  template:
    metadata: {labels: {app: steady}}
    spec:
      nodeSelector: {kubernetes.io/hostname: node-2}
      containers:
      - name: main
        image: localhost/busybox:latest
        imagePullPolicy: Never
        readinessProbe: {exec: {command: [test, -f, /tmp/ready]}, periodSeconds: 1}
        command: ["sh", "-c"]
        args:
        - |
          touch /tmp/ready
          echo "up"
          while [ ! -f /tmp/stop ]; do sleep 0.2; done
          rm /tmp/stop
          exit 3
---
apiVersion: v1
kind: Pod
metadata: {name: doomed}
spec:
  nodeSelector: {kubernetes.io/hostname: node-2}
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sleep", "100000"]
"#;

/// A CRI container as containerd's `ctr` shows it: its labels and, if its
/// task runs, the task's pid.
#[derive(Debug, Clone)]
struct CtrContainer {
    id: String,
    labels: Value,
    running_pid: Option<u32>,
}

impl CriCluster {
    /// The bus `kubus up` runs (for a second node's agent).
    fn nats_url(&self) -> String {
        let current = std::fs::read(self.dir.path().join("home").join("current.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or_default();
        current["nats"].as_str().unwrap_or_default().to_string()
    }

    fn ctr(&self, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.containerd_dir().join("containerd.sock"))
            .args(["-n", "k8s.io"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Every container in containerd's CRI namespace (sandboxes' pause
    /// containers too), with its labels and running task's pid.
    fn ctr_containers(&self) -> Vec<CtrContainer> {
        // TASK PID STATUS
        let running: Vec<(String, u32)> = self
            .ctr(&["tasks", "ls"])
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"RUNNING"))
                    .then(|| Some((f.first()?.to_string(), f.get(1)?.parse().ok()?)))
                    .flatten()
            })
            .collect();
        self.ctr(&["containers", "ls", "-q"])
            .lines()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(|id| {
                let info = serde_json::from_str::<Value>(&self.ctr(&["containers", "info", id]))
                    .unwrap_or_default();
                CtrContainer {
                    id: id.to_string(),
                    labels: info["Labels"].clone(),
                    running_pid: running.iter().find(|(t, _)| t == id).map(|(_, p)| *p),
                }
            })
            .collect()
    }
}

/// A `kubus node --roles worker --runtime cri` on the cluster's containerd
/// as node-2: the node agent alone in its process, killable by its pid.
/// `run` names its log file.
fn start_node_2(c: &CriCluster, nats: &str, run: &str) -> kubus_tests::Proc {
    let dir = c.dir.path().join("node-2");
    std::fs::create_dir_all(&dir).expect("node-2 dir");
    kubus_tests::Proc::spawn(
        Command::new(kubus_bin())
            .args([
                "node",
                "--roles",
                "worker",
                "--runtime",
                "cri",
                "--service-cidr",
                SERVICE_CIDR,
                "--node-name",
                "node-2",
            ])
            .arg("--nats")
            .arg(nats)
            // joins the bus of `kubus up` as a worker, as another machine would
            .arg("--join-token-file")
            .arg(c.dir.path().join("data").join("bus").join("join-token"))
            .arg("--cri-socket")
            .arg(c.containerd_dir().join("containerd.sock"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("RUST_LOG", "info"),
        &dir.join(format!("{run}.log")),
    )
}

fn ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// (pod name, containerID, restartCount) of each pod's first container,
/// sorted.
fn handles_of<'a>(pods: impl IntoIterator<Item = &'a Value>) -> Vec<(String, String, u64)> {
    let mut v: Vec<_> = pods
        .into_iter()
        .map(|p| {
            let s = &p["status"]["containerStatuses"][0];
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                s["containerID"].as_str().unwrap_or_default().to_string(),
                s["restartCount"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    v
}

/// [`handles_of`] the steady pods.
fn steady(c: &CriCluster) -> Vec<(String, String, u64)> {
    handles_of(
        c.items("pods")
            .iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "steady"),
    )
}

/// Issue 5: "Node agent killed and restarted: its running containers are
/// not restarted." node-2's agent runs as a process of its own; it is
/// SIGKILLed, a pod of it is deleted meanwhile, and it is started again.
/// The running containers are re-adopted (same CRI containers, same
/// processes, same restart counts, still Ready), their probes, restart
/// policy and logs go on, and the pod deleted meanwhile (Terminating while
/// its agent is away) is stopped and removed with its sandbox and container.
#[test]
fn cri_agent_restart_re_adopts_running_containers() {
    let _serial = serial();
    if !is_root() {
        eprintln!("cri_containerd: skipped (needs root and containerd; CI runs it)");
        return;
    }
    let c = CriCluster::start();
    let nats = c.nats_url();
    assert!(nats.starts_with("nats://"), "no bus recorded: {nats:?}");
    // dropped before the cluster (declared after it): SIGTERM by pid
    let mut agent = start_node_2(&c, &nats, "first");
    wait_for(Duration::from_secs(30), || {
        (c.items("nodes").len() == 2).then_some(())
    })
    .unwrap_or_else(|| panic!("node-2 did not register; log:\n{}", agent.log_tail()));
    c.apply(ADOPTED);
    let all_ready = |c: &CriCluster| {
        let pods = c.items("pods");
        let ok = pods.len() == 3
            && pods
                .iter()
                .all(|p| p["spec"]["nodeName"] == "node-2" && ready(p));
        ok.then_some(pods)
    };
    wait_for(Duration::from_secs(60), || all_ready(&c)).unwrap_or_else(|| {
        panic!(
            "pods not ready on node-2: {:#}\nlog:\n{}",
            Value::Array(c.items("pods")),
            agent.log_tail()
        )
    });
    // one restart before the agent goes, so there is a count to keep
    let first = steady(&c);
    assert_eq!(first.len(), 2, "{first:?}");
    let out = c.kubus(&["exec", &first[0].0, "--", "touch", "/tmp/stop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = wait_for(Duration::from_secs(30), || {
        let s = steady(&c);
        (s.first().is_some_and(|p| p.2 == 1) && all_ready(&c).is_some()).then_some(s)
    })
    .unwrap_or_else(|| panic!("no restart: {:?}\nlog:\n{}", steady(&c), agent.log_tail()));
    let doomed_uid = c
        .pod("doomed")
        .and_then(|p| p["metadata"]["uid"].as_str().map(str::to_string))
        .unwrap_or_default();
    let containers_before = c.ctr_containers();
    // the CRI container behind each steady pod, and its process
    let cri_of = |containers: &[CtrContainer], handle: &str| {
        containers
            .iter()
            .find(|x| x.labels["kubus.io/handle"] == handle)
            .map(|x| (x.id.clone(), x.running_pid))
    };
    let cri_before: Vec<_> = before
        .iter()
        .map(|(_, handle, _)| cri_of(&containers_before, handle))
        .collect();
    assert!(
        cri_before
            .iter()
            .all(|x| x.as_ref().is_some_and(|(_, pid)| pid.is_some())),
        "steady containers not found running in containerd: {cri_before:?} {containers_before:#?}"
    );
    let of_doomed = |containers: &[CtrContainer]| {
        containers
            .iter()
            .filter(|x| x.labels["io.kubernetes.pod.uid"] == doomed_uid.as_str())
            .count()
    };
    assert_eq!(
        of_doomed(&containers_before),
        2,
        "doomed's sandbox and container"
    );

    // SIGKILL the agent; delete a pod while it is away
    agent.kill9();
    let out = c.kubus(&["delete", "pod", "doomed"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // graceful deletion (issue 5): with its agent away, the pod stays
    // Terminating, as in Kubernetes
    let doomed = c.pod("doomed").unwrap_or_default();
    assert!(
        doomed["metadata"]["deletionTimestamp"].is_string(),
        "{doomed:#}"
    );
    assert_eq!(
        of_doomed(&c.ctr_containers()),
        2,
        "nothing removes doomed's containers while the agent is away"
    );
    drop(agent);
    let agent = start_node_2(&c, &nats, "second");

    // the terminating pod is re-adopted, stopped (SIGKILL after its 2 s:
    // `sleep` as PID 1 ignores SIGTERM) and removed, and its sandbox and
    // container go
    let removed = wait_for(Duration::from_secs(30), || {
        (of_doomed(&c.ctr_containers()) == 0 && c.pod("doomed").is_none()).then_some(())
    });
    assert!(
        removed.is_some(),
        "doomed's sandbox or container left: {:#?}\nlog:\n{}",
        c.ctr_containers(),
        agent.log_tail()
    );
    // the rest runs on: same CRI containers, same processes, same counts,
    // still ready
    wait_for(Duration::from_secs(30), || {
        agent
            .log_tail()
            .contains("took over what an earlier run")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no re-adoption logged:\n{}", agent.log_tail()));
    let after = steady(&c);
    assert_eq!(after, before, "same containers and restart counts");
    let containers_after = c.ctr_containers();
    let cri_after: Vec<_> = after
        .iter()
        .map(|(_, handle, _)| cri_of(&containers_after, handle))
        .collect();
    assert_eq!(cri_after, cri_before, "same CRI containers, same processes");
    let pods = c.items("pods");
    assert_eq!(pods.len(), 2, "{pods:#?}");
    assert!(
        pods.iter()
            .all(|p| p["status"]["phase"] == "Running" && ready(p)),
        "{pods:#?}"
    );
    let log = std::fs::read_to_string(&agent.log).unwrap_or_default();
    assert_eq!(
        log.matches("re-adopted the pod's containers").count(),
        3,
        "both steady pods and the terminating one re-adopted:\n{log}"
    );

    // logs: what an adopted container writes now is served
    let (a, b) = (&after[0].0, &after[1].0);
    let out = c.kubus(&[
        "exec",
        b,
        "--",
        "sh",
        "-c",
        "echo written-after > /proc/1/fd/1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = wait_for(Duration::from_secs(10), || {
        let text = String::from_utf8_lossy(&c.kubus(&["logs", b]).stdout).to_string();
        text.contains("written-after").then_some(text)
    });
    assert!(
        logs.is_some(),
        "kubus logs {b}: nothing written after the restart"
    );
    // probes: readiness follows the adopted container
    let out = c.kubus(&["exec", b, "--", "rm", "/tmp/ready"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unready = wait_for(Duration::from_secs(15), || {
        c.pod(b).filter(|p| !ready(p)).map(|_| ())
    });
    assert!(unready.is_some(), "{b} still Ready without /tmp/ready");
    // restart policy: an adopted container's exit is seen and it restarts,
    // its count going on from where it was
    let out = c.kubus(&["exec", a, "--", "touch", "/tmp/stop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restarted = wait_for(Duration::from_secs(30), || {
        let p = c.pod(a)?;
        let s = &p["status"]["containerStatuses"][0];
        (s["restartCount"] == 2
            && s["lastState"]["terminated"]["exitCode"] == 3
            && s["state"]["running"].is_object())
        .then_some(())
    });
    assert!(
        restarted.is_some(),
        "{a} not restarted after its adopted container exited: {:#}\nlog:\n{}",
        c.pod(a).unwrap_or_default(),
        agent.log_tail()
    );
}

/// Issue 5, the default set-up: `kubus up --runtime cri` (store, control
/// plane, agent and its private containerd in one process) SIGKILLed and
/// started again. Its containerd outlives it and is adopted, not started a
/// second time, and the agent re-adopts the running container: same CRI
/// container, same process, same restart count, Ready.
#[test]
fn cri_kubus_up_killed_and_restarted_keeps_its_containers() {
    let _serial = serial();
    if !is_root() {
        eprintln!("cri_containerd: skipped (needs root and containerd; CI runs it)");
        return;
    }
    let mut c = CriCluster::start();
    c.apply(&ADOPTED.replace("node-2", "node-1"));
    let handles = |c: &CriCluster| {
        let pods = c.items("pods");
        (pods.len() == 3 && pods.iter().all(ready)).then(|| handles_of(&pods))
    };
    let before = wait_for(Duration::from_secs(60), || handles(&c)).unwrap_or_else(|| {
        panic!(
            "pods not ready: {:#}\nlog:\n{}",
            Value::Array(c.items("pods")),
            c.log()
        )
    });
    let pids = |c: &CriCluster, want: &[(String, String, u64)]| {
        let containers = c.ctr_containers();
        want.iter()
            .map(|(_, handle, _)| {
                containers
                    .iter()
                    .find(|x| x.labels["kubus.io/handle"] == handle.as_str())
                    .and_then(|x| x.running_pid)
            })
            .collect::<Vec<_>>()
    };
    let pids_before = pids(&c, &before);
    assert!(pids_before.iter().all(Option::is_some), "{pids_before:?}");
    let containerd = c.containerd_pid().expect("containerd pid");

    // should the restart start a second containerd after all, the first is
    // killed by its pid when the test ends (its shims and containers stay)
    let _orphan = KillOnDrop(containerd);
    c.kill9();
    assert!(
        alive(containerd),
        "containerd outlives a SIGKILLed kubus up"
    );
    let from = c.log_len();
    c.relaunch();
    let log = c.log_since(from);
    assert!(
        log.contains("adopted the containerd an earlier run left"),
        "log:\n{log}"
    );
    assert_eq!(c.containerd_pid(), Some(containerd), "no second containerd");
    let after = wait_for(Duration::from_secs(30), || handles(&c))
        .unwrap_or_else(|| panic!("pods not ready: {:#}", Value::Array(c.items("pods"))));
    assert_eq!(after, before, "same containers and restart counts");
    assert_eq!(pids(&c, &after), pids_before, "same processes");
    let log = c.log_since(from);
    assert_eq!(
        log.matches("re-adopted the pod's containers").count(),
        3,
        "every pod re-adopted; log:\n{log}"
    );
    // a clean stop after that still stops the adopted containerd (kubus
    // itself, before the harness would kill it)
    let from = c.log_len();
    c.stop();
    let log = c.log_since(from);
    assert!(log.contains("containerd stopped"), "log:\n{log}");
}

/// SIGKILLs a process this test started, by its pid, if it still runs
/// when dropped.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            kubus_tests::signal(u32::try_from(self.0).unwrap_or(0), "-KILL");
        }
    }
}

/// Import the images deploy/build-images.sh builds from Debian packages
/// (nginx, redis, the guestbook replica, a shell) into the cluster's
/// containerd; built once and cached between runs.
fn import_debian_images(c: &CriCluster) {
    let socket = c.containerd_dir().join("containerd.sock");
    let script = kubus_tests::manifest_dir().join("../deploy/build-images.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("--address")
        .arg(&socket)
        .output()
        .expect("run build-images.sh");
    assert!(
        out.status.success(),
        "build-images.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The log lines of a pod (its first container).
fn logs(c: &CriCluster, pod: &str) -> String {
    String::from_utf8_lossy(&c.kubus(&["logs", pod]).stdout).to_string()
}

/// Pods of the app `app` that are Running.
fn running_of(c: &CriCluster, app: &str) -> Vec<Value> {
    c.items("pods")
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app)
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .collect()
}

fn nginx(replicas: u32, image: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: nginx}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: nginx}}}}
  template:
    metadata: {{labels: {{app: nginx}}}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: nginx
        image: {image}
        ports: [{{name: http, containerPort: 80}}]
        readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1, failureThreshold: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: NodePort
  selector: {{app: nginx}}
  ports: [{{name: http, port: 80, targetPort: http}}]
"#
    )
}

/// A pod of the shell image running `script`.
fn client(name: &str, script: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: localhost/kubus-shell:latest
    command: ["sh", "-c", {script:?}]
"#
    )
}

#[test]
fn cri_services_route_by_dns_through_rollouts_and_node_ports() {
    let _serial = serial();
    if !is_root() {
        eprintln!("cri_containerd: skipped (needs root and containerd; CI runs it)");
        return;
    }
    let c = CriCluster::start();
    import_debian_images(&c);
    // the node reports what it holds (status.images), and kubus images lists it
    let listed = wait_for(Duration::from_secs(40), || {
        let out = String::from_utf8_lossy(&c.kubus(&["images"]).stdout).to_string();
        out.contains("docker.io/library/nginx:1.14.2")
            .then_some(out)
    });
    assert!(
        listed.is_some(),
        "kubus images: {}",
        String::from_utf8_lossy(&c.kubus(&["images"]).stdout)
    );
    c.apply(&nginx(3, "nginx:1.14.2"));
    let three = wait_for(Duration::from_secs(90), || {
        let ready: Vec<Value> = running_of(&c, "nginx").into_iter().filter(ready).collect();
        (ready.len() == 3).then_some(ready)
    })
    .unwrap_or_else(|| {
        panic!(
            "3 nginx pods not ready: {:#?}\n{}",
            c.items("pods"),
            c.log()
        )
    });

    // a client pod reaches all three through the Service's DNS name
    c.apply(&client(
        "fetch",
        "for i in $(seq 30); do wget -q -T 3 -O /dev/null 'http://web/?from=fetch' && echo ok; done; echo done",
    ));
    let out = wait_for(Duration::from_secs(60), || {
        let l = logs(&c, "fetch");
        l.contains("done").then_some(l)
    })
    .unwrap_or_else(|| panic!("client did not finish: {}\n{}", logs(&c, "fetch"), c.log()));
    assert_eq!(out.matches("ok").count(), 30, "{out}");
    for p in &three {
        let name = p["metadata"]["name"].as_str().unwrap_or_default();
        assert!(
            logs(&c, name).contains("GET / HTTP"),
            "{name} got no request"
        );
    }

    // a NodePort answers from the host
    let svc: Value = serde_json::from_slice(&c.kubus(&["get", "svc", "web", "-o", "json"]).stdout)
        .expect("service");
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("node port") as u16;
    let page = http_get("127.0.0.1", node_port).unwrap_or_default();
    assert!(
        page.contains("Welcome to nginx"),
        "node port {node_port}: {page}"
    );

    // a rolling update under a client looping requests loses none: the
    // client loops until the test, having seen the rollout finish, tells it
    // to stop (bounded at 3000 requests)
    c.apply(&client(
        "loop",
        "fail=0; n=0; while [ ! -e /tmp/stop ] && [ $n -lt 3000 ]; do n=$((n+1)); wget -q -T 3 -O /dev/null http://web || fail=$((fail+1)); sleep 0.05; done; echo requests=$n failures=$fail",
    ));
    wait_for(Duration::from_secs(30), || {
        (c.pod("loop")?["status"]["phase"] == "Running").then_some(())
    })
    .unwrap_or_else(|| panic!("loop client did not start\n{}", c.log()));
    c.apply(&nginx(3, "nginx:latest"));
    wait_for(Duration::from_secs(120), || {
        let pods = running_of(&c, "nginx");
        let rolled = pods
            .iter()
            .filter(|p| p["spec"]["containers"][0]["image"] == "nginx:latest" && ready(p))
            .count();
        (pods.len() == 3 && rolled == 3).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the rollout did not finish: {:#?}\n{}",
            c.items("pods"),
            c.log()
        )
    });
    let out = c.kubus(&["exec", "loop", "--", "touch", "/tmp/stop"]);
    assert!(out.status.success(), "{out:?}");
    let result = wait_for(Duration::from_secs(60), || {
        let l = logs(&c, "loop");
        l.contains("failures=").then_some(l)
    })
    .unwrap_or_else(|| panic!("loop did not finish: {}\n{}", logs(&c, "loop"), c.log()));
    assert!(
        !result.contains("requests=3000 "),
        "the loop ran out before it was told to stop: {result}"
    );
    assert!(
        result.contains("failures=0"),
        "requests failed during the rollout: {result}"
    );

    // scaled to one: only that one answers
    c.apply(&nginx(1, "nginx:latest"));
    wait_for(Duration::from_secs(60), || {
        let eps = c.items("endpointslices");
        let n: usize = eps
            .iter()
            .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] != "kubernetes")
            .map(|s| s["endpoints"].as_array().map_or(0, Vec::len))
            .sum();
        (n == 1 && running_of(&c, "nginx").len() == 1).then_some(())
    })
    .unwrap_or_else(|| panic!("not scaled to one: {:#?}", c.items("endpointslices")));
    let one = running_of(&c, "nginx");
    let name = one[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let before = logs(&c, &name)
        .matches("GET /?from=after-scale HTTP")
        .count();
    c.apply(&client(
        "after-scale",
        "for i in $(seq 5); do wget -q -T 3 -O /dev/null 'http://web/?from=after-scale' && echo ok; done; echo done",
    ));
    let out = wait_for(Duration::from_secs(60), || {
        let l = logs(&c, "after-scale");
        l.contains("done").then_some(l)
    })
    .unwrap_or_default();
    assert_eq!(out.matches("ok").count(), 5, "{out}");
    assert_eq!(
        logs(&c, &name)
            .matches("GET /?from=after-scale HTTP")
            .count(),
        before + 5
    );

    // its readiness probe failing takes it out of rotation
    let out = c.kubus(&[
        "exec",
        &name,
        "--",
        "rm",
        "/usr/share/nginx/html/index.html",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = std::time::Instant::now();
    wait_for(Duration::from_secs(20), || {
        let ready: Vec<bool> = c
            .items("endpointslices")
            .iter()
            .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] != "kubernetes")
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .map(|e| e["conditions"]["ready"] == true)
            .collect();
        (ready == vec![false]).then_some(())
    })
    .unwrap_or_else(|| panic!("still ready: {:#?}", c.items("endpointslices")));
    println!(
        "out of rotation {:?} after its probe began to fail",
        started.elapsed()
    );
}

#[test]
fn cri_guestbook_redis_replica_finds_its_master_and_pulls_back_off() {
    let _serial = serial();
    if !is_root() {
        eprintln!("cri_containerd: skipped (needs root and containerd; CI runs it)");
        return;
    }
    let c = CriCluster::start();
    import_debian_images(&c);
    // the redis Deployments and Services of the guestbook, unmodified
    let text = std::fs::read_to_string(k8s_examples().join("guestbook-all-in-one.yaml"))
        .expect("guestbook");
    let redis: Vec<&str> = text
        .split("\n---")
        .filter(|doc| doc.contains("name: redis-"))
        .collect();
    assert_eq!(redis.len(), 4, "two Services and two Deployments");
    c.apply(&redis.join("\n---\n"));
    let replica = wait_for(Duration::from_secs(120), || {
        let pods = running_of(&c, "redis");
        let replica = pods
            .iter()
            .find(|p| p["metadata"]["labels"]["role"] != "master")?;
        let name = replica["metadata"]["name"].as_str()?.to_string();
        logs(&c, &name)
            .contains("MASTER <-> REPLICA sync: Finished with success")
            .then_some(name)
    });
    assert!(
        replica.is_some(),
        "the replica never synced with redis-master: {:#?}\n{}",
        c.items("pods"),
        c.log()
    );

    // nginx-app.yaml, unmodified: a LoadBalancer Service and 3 nginx
    let text = std::fs::read_to_string(k8s_examples().join("nginx-app.yaml")).expect("nginx-app");
    c.apply(&text);
    let svc = wait_for(Duration::from_secs(60), || {
        let out = c.kubus(&["get", "svc", "my-nginx-svc", "-o", "json"]);
        let svc: Value = serde_json::from_slice(&out.stdout).ok()?;
        svc["status"]["loadBalancer"]["ingress"][0]["ip"].as_str()?;
        Some(svc)
    })
    .unwrap_or_else(|| panic!("no load balancer address\n{}", c.log()));
    let ip = svc["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let page = wait_for(Duration::from_secs(90), || {
        http_get(&ip, 80).filter(|p| p.contains("Welcome to nginx"))
    });
    assert!(
        page.is_some(),
        "my-nginx-svc did not answer at {ip}:80\n{}",
        c.log()
    );
    let table =
        String::from_utf8_lossy(&c.kubus(&["get", "svc", "my-nginx-svc"]).stdout).to_string();
    assert!(
        table.contains("LoadBalancer") && table.contains("127.0.0.1"),
        "{table}"
    );

    // an image that cannot be pulled: ErrImagePull, then ImagePullBackOff,
    // and no restart counted
    c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: unpullable}
spec:
  containers:
  - {name: c, image: "localhost/not-there:1.0", imagePullPolicy: IfNotPresent}
"#,
    );
    let mut seen = Vec::new();
    wait_for(Duration::from_secs(60), || {
        let p = c.pod("unpullable")?;
        let cs = &p["status"]["containerStatuses"][0];
        if cs.is_null() {
            return None;
        }
        assert_eq!(cs["restartCount"], 0, "{cs}");
        assert!(
            cs.get("lastState")
                .is_none_or(|l| l.is_null() || l == &serde_json::json!({})),
            "{cs}"
        );
        if let Some(r) = cs["state"]["waiting"]["reason"].as_str() {
            if seen.last().map(String::as_str) != Some(r) {
                seen.push(r.to_string());
            }
        }
        seen.iter().any(|r| r == "ImagePullBackOff").then_some(())
    })
    .unwrap_or_else(|| panic!("no ImagePullBackOff: {seen:?}\n{}", c.log()));
    assert!(
        seen.contains(&"ErrImagePull".to_string())
            || c.events_of("unpullable").iter().any(|(r, _)| r == "Failed"),
        "{seen:?}"
    );
}

/// The StatefulSet pod `name` if it runs, is Ready and is not going.
fn ready_pod(c: &CriCluster, name: &str) -> Option<Value> {
    c.pod(name)
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null() && ready(p))
}

fn exec_in(c: &CriCluster, pod: &str, script: &str) -> String {
    let out = c.kubus(&["exec", pod, "--", "sh", "-c", script]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn cri_stateful_set_pods_keep_their_data_on_local_path_volumes() {
    let _serial = serial();
    if !is_root() {
        eprintln!("cri_containerd: skipped (needs root and containerd; CI runs it)");
        return;
    }
    let c = CriCluster::start();
    import_debian_images(&c);
    // the unmodified example: a headless Service and a StatefulSet of 2
    // with a claim template, on the built-in local-path class
    let example = kubus_tests::k8s_examples().join("statefulset-web.yaml");
    let text = std::fs::read_to_string(&example).expect("statefulset-web.yaml");
    c.apply(&text);
    let out = c.kubus(&["scale", "statefulset", "web", "--replicas=3"]);
    assert!(
        out.status.success(),
        "scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = wait_for(Duration::from_secs(180), || {
        let pods: Vec<Value> = (0..3)
            .filter_map(|i| ready_pod(&c, &format!("web-{i}")))
            .collect();
        (pods.len() == 3).then_some(pods)
    })
    .unwrap_or_else(|| panic!("web-0..2 not ready: {:?}\n{}", c.items("pods"), c.log()));
    // in order: each was created after the one before it was Ready
    let created = |p: &Value| {
        p["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let ready_at = |p: &Value| {
        p["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or("")
            .to_string()
    };
    for pair in all.windows(2) {
        assert!(
            created(&pair[1]) >= ready_at(&pair[0]),
            "not in order: {pair:?}"
        );
    }
    assert_eq!(all[1]["spec"]["hostname"], "web-1");
    assert_eq!(all[1]["spec"]["subdomain"], "nginx");
    // each pod writes to its own claim
    for i in 0..3 {
        let name = format!("web-{i}");
        let said = exec_in(&c, &name, &format!("echo {name} > /usr/share/nginx/html/index.html && cat /usr/share/nginx/html/index.html"));
        assert_eq!(said, name);
    }
    let claims = c.items("pvc");
    for i in 0..3 {
        let claim = claims
            .iter()
            .find(|p| p["metadata"]["name"] == format!("www-web-{i}"))
            .unwrap_or_else(|| panic!("no claim www-web-{i}: {claims:?}"));
        assert_eq!(claim["status"]["phase"], "Bound", "{claim}");
        assert_eq!(claim["spec"]["storageClassName"], "local-path");
    }
    // web-1 deleted: it comes back, with the same name and its data
    let old_uid = all[1]["metadata"]["uid"].clone();
    let out = c.kubus(&["delete", "pod", "web-1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(Duration::from_secs(120), || {
        ready_pod(&c, "web-1").filter(|p| p["metadata"]["uid"] != old_uid)
    })
    .unwrap_or_else(|| panic!("web-1 did not come back: {:?}", c.pod("web-1")));
    assert_eq!(
        exec_in(&c, "web-1", "cat /usr/share/nginx/html/index.html"),
        "web-1"
    );

    // scale to 1: web-2 goes before web-1; the claims stay (Retain)
    let out = c.kubus(&["scale", "statefulset", "web", "--replicas=1"]);
    assert!(
        out.status.success(),
        "scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(Duration::from_secs(120), || {
        let (one, two) = (c.pod("web-1"), c.pod("web-2"));
        assert!(!(one.is_none() && two.is_some()), "web-1 went before web-2");
        (one.is_none() && two.is_none()).then_some(())
    })
    .unwrap_or_else(|| panic!("did not scale down: {:?}", c.items("pods")));
    let names: Vec<String> = c
        .items("pvc")
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    assert_eq!(names.len(), 3, "Retain keeps every claim: {names:?}");

    // the policy says Delete on scale-down: the claims of gone ordinals go,
    // their volumes (reclaim Delete) and then their directories too
    let pv_dirs = || -> Vec<String> {
        c.items("pv")
            .iter()
            .filter_map(|v| v["spec"]["hostPath"]["path"].as_str().map(str::to_string))
            .collect()
    };
    let before = pv_dirs();
    assert_eq!(before.len(), 3, "{before:?}");
    c.apply(&text.replace(
        "  replicas: 2",
        "  replicas: 1\n  persistentVolumeClaimRetentionPolicy: {whenScaled: Delete}",
    ));
    wait_for(Duration::from_secs(60), || {
        (c.items("pvc").len() == 1 && c.items("pv").len() == 1).then_some(())
    })
    .unwrap_or_else(|| panic!("claims {:?}\nvolumes {:?}", c.items("pvc"), c.items("pv")));
    let kept = pv_dirs();
    wait_for(Duration::from_secs(90), || {
        before
            .iter()
            .filter(|d| !kept.contains(d))
            .all(|d| !Path::new(d).exists())
            .then_some(())
    })
    .unwrap_or_else(|| panic!("directories of deleted volumes remain: {before:?}"));
    assert_eq!(
        exec_in(&c, "web-0", "cat /usr/share/nginx/html/index.html"),
        "web-0"
    );
}

/// A pod whose container holds the machine's kubectl (a static binary,
/// mounted from the host) and nothing that names the API.
const IN_CLUSTER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: in-cluster}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts: [{name: kubectl, mountPath: /kubectl, readOnly: true}]
  volumes:
  - name: kubectl
    hostPath: {path: KUBECTL, type: File}
"#;

/// A pod reaches the Kubernetes API the way in-cluster clients do: kubectl
/// inside a container finds it from `KUBERNETES_SERVICE_HOST`/`_PORT` (the
/// `kubernetes` Service, through the service proxy from the pod's own
/// network namespace), trusts it with the `ca.crt` its token volume gets
/// from `kube-root-ca.crt` (the serving certificate names the Service's
/// address), and is its ServiceAccount by the projected token: RBAC
/// refuses, then a RoleBinding lets it list pods.
#[test]
fn cri_a_pod_reaches_the_kubernetes_api_as_its_service_account() {
    let _serial = serial();
    if !is_root() {
        eprintln!("cri_containerd: skipped (needs root and containerd; CI runs it)");
        return;
    }
    let Some(kubectl) = kubus_tests::Cluster::kubectl_build("1.33") else {
        eprintln!("cri_containerd: no kubectl 1.33 on this machine; in-cluster API skipped");
        return;
    };
    let c = CriCluster::start();
    c.apply(&IN_CLUSTER.replace("KUBECTL", &kubectl.display().to_string()));
    wait_for(Duration::from_secs(60), || {
        let p = c.pod("in-cluster")?;
        (p["status"]["phase"] == "Running").then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "in-cluster did not run: {:#}\nlog:\n{}",
            c.pod("in-cluster").unwrap_or_default(),
            c.log()
        )
    });
    let in_pod = |args: &[&str]| {
        let mut all = vec!["exec", "in-cluster", "--", "/kubectl"];
        all.extend_from_slice(args);
        let out = c.kubus(&all);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // the ServiceAccount may not list pods yet: the API says who it is
    let (ok, _, err) = in_pod(&["get", "pods", "-o", "name"]);
    assert!(
        !ok && err.contains("system:serviceaccount:default:default")
            && err.contains("cannot list resource \"pods\""),
        "expected a Forbidden naming the ServiceAccount: {err}\nlog:\n{}",
        c.log()
    );
    println!("kubectl in the pod, before the RoleBinding: {}", err.trim());
    let out = c.kubus(&[
        "create",
        "rolebinding",
        "default-view",
        "--clusterrole=view",
        "--serviceaccount=default:default",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = wait_for(Duration::from_secs(30), || {
        let (ok, out, _) = in_pod(&["get", "pods", "-o", "name"]);
        (ok && out.lines().any(|l| l == "pod/in-cluster")).then_some(out)
    });
    let Some(listed) = listed else {
        panic!(
            "kubectl in the pod never listed pods: {:?}\nlog:\n{}",
            in_pod(&["get", "pods", "-o", "name"]),
            c.log()
        );
    };
    println!("kubectl in the pod, after: {}", listed.trim());
    // it found the API where Kubernetes puts it: the Service's first address
    let env = c.kubus(&[
        "exec",
        "in-cluster",
        "--",
        "sh",
        "-c",
        "echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&env.stdout).trim(),
        "10.99.0.1:443",
        "{}",
        String::from_utf8_lossy(&env.stderr)
    );
}
