//! The machine's real kubectl against `kubus up`'s Kubernetes API
//! (issue 21): discovery, tables, client-side apply and its strategic
//! merge patches, scale, watch, describe, logs (-f), delete, and bad input
//! answered with Kubernetes `Status` errors, exec and attach with stdin,
//! port-forward — with kubectl 1.33, 1.29, 1.28 and 1.27 (aggregated
//! discovery v2 and v2beta1; websockets, and SPDY; OpenAPI v3, and v2).

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use kubus_tests::{k8s_examples, wait_for, Cluster};
use serde_json::Value;

struct Kubectl<'a> {
    c: &'a Cluster,
    bin: PathBuf,
}

impl Kubectl<'_> {
    fn run(&self, args: &[&str]) -> Output {
        self.c.kubectl_in(&self.bin, args, "")
    }

    fn with_input(&self, args: &[&str], stdin: &str) -> Output {
        self.c.kubectl_in(&self.bin, args, stdin)
    }

    /// Runs kubectl, which must succeed; its standard output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{} {args:?}: {}{}\n{}",
            self.bin.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.c.log()
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap_or(Value::Null)
    }

    fn apply(&self, manifest: &str) {
        let out = self.with_input(&["apply", "-f", "-"], manifest);
        assert!(
            out.status.success(),
            "kubectl apply: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.c.log()
        );
    }
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "echo hello from $GREETING; sleep 3600"]
        env:
        - {name: GREETING, value: one}
        - {name: EXTRA, value: x}
      - name: side
        image: busybox
        command: ["sh", "-c", "sleep 3600"]
"#;

/// The same Deployment with the `side` container removed, GREETING
/// changed and EXTRA gone: what kubectl's three-way patch must remove.
const WEB_CHANGED: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: main
        image: busybox
        command: ["sh", "-c", "echo hello from $GREETING; sleep 3600"]
        env:
        - {name: GREETING, value: two}
"#;

fn env_of(d: &Value) -> Vec<(String, String)> {
    d.pointer("/spec/template/spec/containers/0/env")
        .and_then(Value::as_array)
        .map(|e| {
            e.iter()
                .map(|v| {
                    (
                        v["name"].as_str().unwrap_or_default().to_string(),
                        v["value"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn container_names(d: &Value) -> Vec<String> {
    d.pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn kubectl_drives_kubus_through_the_kubernetes_api() {
    let cluster = Cluster::start_with(&["--runtime", "process", "--process-network", "host"]);
    let newest = Cluster::kubectl_build("1.33").unwrap_or_else(|| PathBuf::from("kubectl"));
    let k = Kubectl {
        c: &cluster,
        bin: newest,
    };

    // discovery
    let v = k.ok(&["version", "-o", "json"]);
    let v: Value = serde_json::from_str(&v).expect("version json");
    assert_eq!(v["serverVersion"]["minor"], "33", "{v}");
    let resources = k.ok(&["api-resources"]);
    for line in [
        "deployments",
        "deploy",
        "apps/v1",
        "poddisruptionbudgets",
        "pdb",
    ] {
        assert!(
            resources.contains(line),
            "api-resources lacks {line}:\n{resources}"
        );
    }

    let explain = k.ok(&["explain", "deployment.spec.strategy"]);
    assert!(
        explain.contains("rollingUpdate") && explain.contains("DeploymentStrategy"),
        "{explain}"
    );

    // client-side apply: create, then a changed manifest
    k.apply(WEB);
    let d = k.json(&["get", "deployment", "web"]);
    assert_eq!(container_names(&d), ["main", "side"]);
    assert!(d
        .pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration")
        .is_some());
    k.apply(WEB_CHANGED);
    let d = k.json(&["get", "deployment", "web"]);
    assert_eq!(container_names(&d), ["main"], "{d}");
    assert_eq!(env_of(&d), [("GREETING".to_string(), "two".to_string())]);
    // an unchanged apply changes nothing
    let generation = d["metadata"]["generation"].clone();
    let out = k.with_input(&["apply", "-f", "-"], WEB_CHANGED);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unchanged"),
        "{out:?}"
    );
    assert_eq!(
        k.json(&["get", "deployment", "web"])["metadata"]["generation"],
        generation
    );

    // diff: a dry-run patch shows what an apply would change, and
    // changes nothing
    let diff = k.with_input(&["diff", "-f", "-"], WEB);
    assert_eq!(diff.status.code(), Some(1), "{diff:?}");
    assert!(
        String::from_utf8_lossy(&diff.stdout).contains("name: side"),
        "{diff:?}"
    );
    assert_eq!(
        container_names(&k.json(&["get", "deployment", "web"])),
        ["main"]
    );
    let dry = k.with_input(
        &["create", "--dry-run=server", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dry-cm}\n",
    );
    assert!(dry.status.success(), "{dry:?}");
    assert!(!k.run(&["get", "configmap", "dry-cm"]).status.success());

    // server-side apply: field managers, a field dropped by its only
    // manager goes, another manager's change is a conflict until forced
    let ssa = |manifest: &str, extra: &[&str]| {
        let mut args = vec!["apply", "--server-side", "-f", "-"];
        args.extend(extra);
        k.with_input(&args, manifest)
    };
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa-cm}\ndata: {a: '1', b: '2'}\n";
    let out = ssa(cm, &[]);
    assert!(out.status.success(), "{out:?}");
    let got = k.json(&["get", "configmap", "ssa-cm", "--show-managed-fields"]);
    assert_eq!(
        got["metadata"]["managedFields"][0]["manager"], "kubectl",
        "{got}"
    );
    assert_eq!(
        got["metadata"]["managedFields"][0]["operation"], "Apply",
        "{got}"
    );
    let out = ssa(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa-cm}\ndata: {a: '1'}\n",
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        k.json(&["get", "configmap", "ssa-cm"])["data"],
        serde_json::json!({"a": "1"})
    );
    k.ok(&[
        "patch",
        "configmap",
        "ssa-cm",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"changed"}}"#,
    ]);
    let conflict = ssa(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa-cm}\ndata: {a: '1'}\n",
        &[],
    );
    assert!(!conflict.status.success());
    assert!(
        String::from_utf8_lossy(&conflict.stderr).contains("conflict"),
        "{conflict:?}"
    );
    let forced = ssa(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ssa-cm}\ndata: {a: '1'}\n",
        &["--force-conflicts"],
    );
    assert!(forced.status.success(), "{forced:?}");
    assert_eq!(k.json(&["get", "configmap", "ssa-cm"])["data"]["a"], "1");
    // an object made by client-side apply, now applied server-side: the
    // second (last-applied) patch keeps the spec
    let out = ssa(WEB_CHANGED, &["--force-conflicts"]);
    assert!(out.status.success(), "{out:?}");
    let d = k.json(&["get", "deployment", "web"]);
    assert_eq!(container_names(&d), ["main"], "{d}");
    assert_eq!(env_of(&d), [("GREETING".to_string(), "two".to_string())]);

    // tables: the columns kubus get prints
    let table = k.ok(&["get", "deployments"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("READY") && table.contains("UP-TO-DATE") && table.contains("web"),
        "{table}"
    );
    let ready = wait_for(Duration::from_secs(60), || {
        let t = k.ok(&["get", "pods", "-l", "app=web"]);
        (t.matches("Running").count() == 2).then_some(t)
    });
    assert!(ready.is_some(), "{}", k.ok(&["get", "pods", "-o", "wide"]));
    let wide = k.ok(&["get", "pods", "-o", "wide"]);
    assert!(wide.contains("NODE") && wide.contains("node-1"), "{wide}");
    let all = k.ok(&["get", "pods", "-A"]);
    assert!(all.starts_with("NAMESPACE"), "{all}");
    let yaml = k.ok(&["get", "deploy", "web", "-o", "yaml"]);
    assert!(yaml.contains("kind: Deployment"), "{yaml}");
    let none = k.ok(&["get", "pods", "-l", "app=nothing"]);
    assert!(none.trim().is_empty(), "{none}");

    // scale through the scale subresource
    k.ok(&["scale", "deployment", "web", "--replicas=3"]);
    assert_eq!(k.json(&["get", "deploy", "web"])["spec"]["replicas"], 3);

    // logs of a pod of the new template (the old ones may be going)
    k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let said = wait_for(Duration::from_secs(30), || {
        let pods = k.json(&["get", "pods", "-l", "app=web"]);
        pods["items"].as_array()?.iter().find_map(|p| {
            let name = p["metadata"]["name"].as_str()?;
            let out = k.run(&["logs", name, "--tail=1"]);
            let l = String::from_utf8_lossy(&out.stdout).to_string();
            (out.status.success() && l == "hello from two\n").then(|| name.to_string())
        })
    });
    let pod = said.unwrap_or_else(|| panic!("{}", k.ok(&["get", "pods", "-o", "wide"])));
    // exec (websocket, v5.channel.k8s.io): output, and the exit code
    let out = k.run(&[
        "exec",
        &pod,
        "-c",
        "main",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("err"),
        "{out:?}"
    );
    // exec -i: stdin reaches the command and its end closes the command's
    let out = k.with_input(
        &["exec", "-i", &pod, "--", "sh", "-c", "cat; echo eof"],
        "typed\nmore\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "typed\nmore\neof\n");
    // -t without a terminal: kubectl warns and runs it without one
    let out = k.with_input(
        &["exec", "-it", &pod, "--", "sh", "-c", "cat | wc -c"],
        "abc",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    // run -i --rm: attach to a new pod's own process; kubectl takes the
    // exit code from the pod, then deletes it
    let out = k.with_input(
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
    // logs -f: follows a running container to its end
    k.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  restartPolicy: Never
  containers:
  - name: talker
    image: busybox
    command: ["sh", "-c", "for i in 1 2 3 4 5; do echo tick $i; sleep 0.5; done"]
"#,
    );
    wait_for(Duration::from_secs(30), || {
        let p = k.json(&["get", "pod", "talker"]);
        (p["status"]["phase"] != "Pending").then_some(())
    })
    .unwrap_or_else(|| panic!("talker never ran\n{}", cluster.log()));
    let out = k.run(&["logs", "-f", "talker"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n",
        "{out:?}"
    );

    // port-forward: SPDY carried in a websocket (kubectl 1.31+)
    let httpd_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("address").port()
    };
    let www = cluster.dir.path().join("www");
    k.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: httpd}}
spec:
  containers:
  - name: httpd
    image: busybox
    command: ["sh", "-c", "mkdir -p {www} && echo hello-forward > {www}/index.html && exec busybox httpd -f -p 127.0.0.1:{httpd_port} -h {www}"]
"#,
        www = www.display()
    ));
    k.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/httpd",
        "--timeout=60s",
    ]);
    forwarded(&k, "port-forward-1.33.log", httpd_port);

    let describe = k.ok(&["describe", "deployment", "web"]);
    assert!(describe.contains("Replicas:"), "{describe}");

    // the verbs that patch: strategic (set image), JSON (rollout undo),
    // merge (label, annotate, patch --type merge)
    k.ok(&["set", "image", "deployment/web", "main=busybox:2"]);
    k.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let history = k.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains("REVISION"), "{history}");
    k.ok(&["rollout", "undo", "deployment/web"]);
    let d = k.json(&["get", "deploy", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox"
    );
    k.ok(&["label", "deployment", "web", "tier=front"]);
    k.ok(&["annotate", "deployment", "web", "note=hi"]);
    k.ok(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"patched":"yes"}}}"#,
    ]);
    let d = k.json(&["get", "deploy", "web"]);
    assert_eq!(
        (
            &d["metadata"]["labels"]["tier"],
            &d["metadata"]["labels"]["patched"],
            &d["metadata"]["annotations"]["note"]
        ),
        (
            &Value::from("front"),
            &Value::from("yes"),
            &Value::from("hi")
        )
    );
    k.ok(&[
        "wait",
        "--for=condition=Available",
        "deployment/web",
        "--timeout=60s",
    ]);
    let events = k.ok(&["get", "events"]);
    assert!(events.contains("ScalingReplicaSet"), "{events}");
    // pages of one
    let paged = k.ok(&["get", "deployments", "--chunk-size=1", "-o", "name"]);
    assert_eq!(paged.trim(), "deployment.apps/web", "{paged}");

    // get -w: the list, then a change as it happens
    let watched = std::thread::scope(|s| {
        let watcher = s.spawn(|| k.run(&["get", "configmaps", "-w", "--request-timeout=8s"]));
        std::thread::sleep(Duration::from_secs(3));
        let made = k.with_input(
            &["create", "-f", "-"],
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched-cm}\ndata: {a: b}\n",
        );
        assert!(made.status.success(), "{made:?}");
        watcher.join().expect("watcher")
    });
    assert!(
        String::from_utf8_lossy(&watched.stdout).contains("watched-cm"),
        "{watched:?}"
    );

    // the shared examples kubus serves are accepted unmodified
    let nginx = k8s_examples().join("nginx-deployment.yaml");
    k.ok(&["apply", "-f", &nginx.to_string_lossy()]);
    assert_eq!(
        k.json(&["get", "deployment", "nginx-deployment"])["spec"]["replicas"],
        3
    );

    // replace: GET, then PUT at the resourceVersion read
    let mut cm = k.json(&["get", "configmap", "watched-cm"]);
    cm["data"]["a"] = Value::from("replaced");
    let replaced = k.with_input(&["replace", "-f", "-"], &cm.to_string());
    assert!(replaced.status.success(), "{replaced:?}");
    assert_eq!(
        k.json(&["get", "configmap", "watched-cm"])["data"]["a"],
        "replaced"
    );

    // delete with propagation policies; kubectl waits until it is gone
    let rs_of = |k: &Kubectl| -> usize {
        k.json(&["get", "rs", "-l", "app.kubernetes.io/name=nginx"])["items"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert!(
        wait_for(Duration::from_secs(20), || (rs_of(&k) == 1).then_some(())).is_some(),
        "no ReplicaSet for nginx-deployment"
    );
    k.ok(&[
        "delete",
        "deployment",
        "nginx-deployment",
        "--cascade=orphan",
    ]);
    assert_eq!(rs_of(&k), 1, "an orphaned ReplicaSet stays");
    k.ok(&[
        "delete",
        "rs",
        "-l",
        "app.kubernetes.io/name=nginx",
        "--cascade=foreground",
        "--grace-period=0",
    ]);
    assert_eq!(rs_of(&k), 0);
    let gone = k.run(&["get", "deployment", "nginx-deployment"]);
    assert!(!gone.status.success());
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("not found"),
        "{gone:?}"
    );

    // bad input: Kubernetes Status errors, never a panic or a hang
    let bad = k.with_input(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            "-",
        ],
        "{not json",
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not valid JSON"),
        "{bad:?}"
    );
    let unknown = k.with_input(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c1}\ndatta: {a: b}\n",
    );
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("datta"),
        "{unknown:?}"
    );
    let huge = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"a\":\"{}\"}}}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let too_big = k.with_input(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/default/configmaps",
            "-f",
            "-",
        ],
        &huge,
    );
    assert!(!too_big.status.success());
    assert!(
        String::from_utf8_lossy(&too_big.stderr).contains("larger than"),
        "{too_big:?}"
    );
    let wrong = k.run(&[
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        "{\"spec\": 1}",
    ]);
    assert!(!wrong.status.success(), "{wrong:?}");

    // older kubectls: aggregated discovery v2beta1 (1.29 and older), SPDY
    // (1.29), and 1.27/1.28, which read OpenAPI v2 (protobuf) before apply
    if let Some(old) = Cluster::kubectl_build("1.29") {
        let k = Kubectl {
            c: &cluster,
            bin: old,
        };
        let t = k.ok(&["get", "deployments"]);
        assert!(t.contains("web"), "{t}");
        k.apply(WEB);
        assert_eq!(
            container_names(&k.json(&["get", "deploy", "web"])),
            ["main", "side"]
        );
        k.ok(&["scale", "deployment", "web", "--replicas=1"]);
        assert_eq!(k.json(&["get", "deploy", "web"])["spec"]["replicas"], 1);
        // SPDY: exec with stdin, and port-forward
        let out = k.with_input(
            &[
                "exec",
                "-i",
                "httpd",
                "--",
                "sh",
                "-c",
                "cat; echo err >&2; exit 3",
            ],
            "from-1.29\n",
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "from-1.29\n",
            "{out:?}"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("err"),
            "{out:?}"
        );
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        forwarded(&k, "port-forward-1.29.log", httpd_port);
    }
    if let Some(old) = Cluster::kubectl_build("1.27") {
        let k = Kubectl {
            c: &cluster,
            bin: old,
        };
        // default validation: OpenAPI v2 (protobuf) read first
        k.apply(WEB_CHANGED);
        assert_eq!(
            container_names(&k.json(&["get", "deploy", "web"])),
            ["main"]
        );
        // the server validates: an unknown field is refused by name
        let out = k.with_input(
            &["apply", "-f", "-"],
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: strict}\nbogus: 1\n",
        );
        assert!(!out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("bogus"),
            "{out:?}"
        );
        k.ok(&["delete", "deployment", "web"]);
    }
    if let Some(old) = Cluster::kubectl_build("1.28") {
        let k = Kubectl {
            c: &cluster,
            bin: old,
        };
        k.apply(WEB);
        k.ok(&["delete", "deployment", "web"]);
    }
}

/// `kubectl port-forward pod/httpd :PORT`: a local port that reaches the
/// pod's HTTP server (stopped by its PID after).
fn forwarded(k: &Kubectl, log: &str, port: u16) {
    let log = k.c.dir.path().join(log);
    let remote = format!(":{port}");
    let _forward =
        k.c.kubectl_spawn(&k.bin, &["port-forward", "pod/httpd", &remote], &log);
    let local: std::net::SocketAddr = wait_for(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log).ok()?;
        let at = text
            .lines()
            .find_map(|l| l.strip_prefix("Forwarding from 127.0.0.1:"))?;
        let local = at.split(" -> ").next()?;
        format!("127.0.0.1:{local}").parse().ok()
    })
    .unwrap_or_else(|| panic!("{}", std::fs::read_to_string(&log).unwrap_or_default()));
    for _ in 0..2 {
        let body = kubus_tests::http_get(local, "/index.html", Duration::from_secs(10));
        assert!(
            body.as_deref().is_some_and(|b| b.contains("hello-forward")),
            "{body:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

/// The Python `kubernetes` client (PyPI): list, watch, create, patch,
/// scale and delete (tests/fixtures/python_client.py).
#[test]
fn the_python_client_lists_watches_creates_patches_and_deletes() {
    let cluster = Cluster::start_with(&["--runtime", "process", "--process-network", "host"]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/python_client.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .env("KUBECONFIG", cluster.home().join("kubeconfig"))
        .output()
        .expect("python3");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.log()
    );
    for line in [
        "nodes node-1",
        "created py-cm",
        "patched [('a', '1'), ('b', '2')]",
        "scaled 2",
        "listed ['py-web']",
        "exec hi from exec",
        "tty True 5",
        "forwarded HTTP/1.0 200 OK",
        "watched [('ADDED', 'py-cm'), ('MODIFIED', 'py-cm'), ('DELETED', 'py-cm')]",
        "gone 404",
    ] {
        assert!(said.contains(line), "{line:?} not in:\n{said}");
    }
}

/// The first address of the cluster's service range (the API's Service).
fn api_service_ip(c: &Cluster) -> String {
    let cidr = c.service_cidr();
    let base = cidr.split('/').next().unwrap_or_default();
    let mut octets: Vec<u8> = base.split('.').filter_map(|o| o.parse().ok()).collect();
    if let Some(last) = octets.last_mut() {
        *last += 1;
    }
    octets
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// What pods need to reach the Kubernetes API, as Kubernetes publishes it:
/// the `kubernetes` Service (the service range's first address, port 443)
/// with the gateway's endpoints, `kube-root-ca.crt` in every namespace
/// (new ones too) holding the CA kubectl's kubeconfig trusts, and
/// `KUBERNETES_SERVICE_HOST`/`_PORT` in every pod, service links or not.
/// Through the Service's address (the proxy) kubectl then verifies the API
/// with that CA and is the ServiceAccount its token names.
#[test]
fn pods_find_the_api_by_its_service_and_trust_its_ca() {
    let c = Cluster::start();
    let ip = api_service_ip(&c);
    // an object, once it is there
    let object = |kind: &str, name: &str, ns: &str| {
        wait_for(Duration::from_secs(30), || {
            let out = c.kubus(&["get", kind, name, "-n", ns, "-o", "json"]);
            serde_json::from_slice::<Value>(&out.stdout).ok()
        })
        .unwrap_or_else(|| panic!("no {kind} {ns}/{name}; log:\n{}", c.log()))
    };
    let svc = object("service", "kubernetes", "default");
    assert_eq!(svc["spec"]["clusterIP"], ip.as_str(), "{svc:#}");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443, "{svc:#}");
    // the gateway's port, as the kubeconfig names it
    let kubeconfig = std::fs::read_to_string(c.home().join("kubeconfig")).expect("kubeconfig");
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("a server")
        .to_string();
    let port: u64 = server
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port");
    let slice = object("endpointslices", "kubernetes-node-1", "default");
    assert_eq!(slice["ports"][0]["port"], port, "{slice:#}");
    assert_eq!(slice["ports"][0]["name"], "https", "{slice:#}");

    // the CA in every namespace, a new one included
    let ca = std::fs::read_to_string(c.data_dir().join("pki/ca.crt")).expect("the cluster CA");
    c.kubus_ok(&["create", "namespace", "team"]);
    for ns in ["default", "kube-system", "team"] {
        let cm = object("configmap", "kube-root-ca.crt", ns);
        assert_eq!(
            cm["data"]["ca.crt"].as_str().map(str::trim),
            Some(ca.trim()),
            "{ns}"
        );
    }

    // a pod without service links still gets the API's variables
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: looks, namespace: team}
spec:
  enableServiceLinks: false
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo API=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; sleep 3600"]
"#;
    let out = c.apply(pod);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = format!("API={ip}:443");
    wait_for(Duration::from_secs(30), || {
        let out = c.kubus(&["logs", "looks", "-n", "team"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l == want)
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no {want:?} in the pod's log; log:\n{}", c.log()));

    // through the Service's address: the CA verifies the API, the token is
    // the ServiceAccount (the proxy's local route needs root)
    let Some(bin) = Cluster::kubectl_build("1.33") else {
        eprintln!("no kubectl 1.33: the API through its Service not driven");
        return;
    };
    if !kubus_tests::is_root() {
        eprintln!("not root: the API through its Service not driven (CI is root)");
        return;
    }
    let ca_file = c.dir.path().join("in-cluster-ca.crt");
    std::fs::write(&ca_file, &ca).expect("ca file");
    let token = c.kubus_ok(&["create", "token", "default", "-n", "team"]);
    let ca_path = ca_file.display().to_string();
    let url = format!("https://{ip}:443");
    let as_pod = |args: &[&str]| {
        let mut all = vec![
            "--kubeconfig",
            "/dev/null",
            "--server",
            url.as_str(),
            "--certificate-authority",
            ca_path.as_str(),
            "--token",
            token.trim(),
        ];
        all.extend_from_slice(args);
        let home = c.dir.path().join("home-in-cluster");
        let _ = std::fs::create_dir_all(&home);
        std::process::Command::new(&bin)
            .args(&all)
            .env("HOME", &home)
            .output()
            .expect("kubectl")
    };
    let denied = wait_for(Duration::from_secs(30), || {
        let out = as_pod(&["get", "pods", "-n", "team", "-o", "name"]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        err.contains("system:serviceaccount:team:default")
            .then_some(err)
    })
    .unwrap_or_else(|| {
        let out = as_pod(&["get", "pods", "-n", "team", "-o", "name"]);
        panic!(
            "no Forbidden naming the ServiceAccount: {}\nlog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.log()
        )
    });
    assert!(denied.contains("cannot list resource \"pods\""), "{denied}");
    c.kubus_ok(&[
        "create",
        "rolebinding",
        "default-view",
        "--clusterrole=view",
        "--serviceaccount=team:default",
        "-n",
        "team",
    ]);
    let listed = wait_for(Duration::from_secs(30), || {
        let out = as_pod(&["get", "pods", "-n", "team", "-o", "name"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines().any(|l| l == "pod/looks").then_some(text)
    });
    assert!(
        listed.is_some(),
        "the ServiceAccount never listed pods; log:\n{}",
        c.log()
    );
}
