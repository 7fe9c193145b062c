//! Services that route, under the process runtime (issue 18): cluster IPs
//! and NodePorts allocated by the store and served by the node's proxy,
//! EndpointSlices that follow readiness and scale, cluster DNS, service env
//! variables, and refusals of bad Services naming object, field and rule.
//!
//! Process pods share the host's network, so the three backends are three
//! Deployments serving one named port (`http`) on three numbers — which
//! also exercises named target ports resolved per pod.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use kubus_tests::{http_get, wait_for, Cluster};
use serde_json::Value;

const BACKENDS: [(&str, u16); 3] = [("web-a", 18181), ("web-b", 18182), ("web-c", 18183)];

fn backend(name: &str, port: u16, mark: &str) -> String {
    let probe = if name == "web-a" {
        format!("readinessProbe: {{exec: {{command: [\"test\", \"-f\", \"{mark}\"]}}, periodSeconds: 1, failureThreshold: 1}}")
    } else {
        String::new()
    };
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web, backend: {name}}}}}
  template:
    metadata: {{labels: {{app: web, backend: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        env:
        - {{name: POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
        command: ["sh", "-c", "d=$(mktemp -d) && echo $POD > $d/index.html && exec busybox httpd -f -p 127.0.0.1:{port} -h $d"]
        ports: [{{name: http, containerPort: {port}}}]
        {probe}
"#
    )
}

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"#;

/// Which backends answer `addr`, over `n` requests.
fn answering(addr: SocketAddr, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| http_get(addr, "/", Duration::from_secs(2)))
        .filter_map(|body| {
            BACKENDS
                .iter()
                .find(|(b, _)| body.starts_with(&format!("{b}-")))
                .map(|(b, _)| b.to_string())
        })
        .collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn service(c: &Cluster, name: &str) -> Option<Value> {
    let out = c.kubus(&["get", "svc", name, "-o", "json"]);
    serde_json::from_slice(&out.stdout).ok()
}

/// The EndpointSlices of the Service `web`.
fn web_slices(c: &Cluster) -> Vec<Value> {
    c.items("endpointslices")
        .into_iter()
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "web")
        .collect()
}

/// The ready flags of the Service's slice endpoints, by pod name prefix.
fn readiness(c: &Cluster) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = web_slices(c)
        .iter()
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let pod = e["targetRef"]["name"].as_str().unwrap_or_default();
            let backend = pod.rsplitn(3, '-').last().unwrap_or_default().to_string();
            (backend, e["conditions"]["ready"] == true)
        })
        .collect();
    out.sort();
    out
}

fn dns_a(server: SocketAddr, name: &str) -> Option<Vec<IpAddr>> {
    let mut q = Message::new(1, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii(name).ok()?, RecordType::A));
    let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    sock.send_to(&q.to_vec().ok()?, server).ok()?;
    let mut buf = [0u8; 1500];
    let n = sock.recv(&mut buf).ok()?;
    let reply = Message::from_vec(&buf[..n]).ok()?;
    Some(
        reply
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect(),
    )
}

#[test]
fn services_route_under_the_process_runtime() {
    let c = Cluster::start();
    let mark = c.dir.path().join("web-a-ready");
    std::fs::write(&mark, b"").expect("mark");
    let mark_text = mark.display().to_string();
    let mut manifest = String::from(SERVICE);
    for (name, port) in BACKENDS {
        manifest.push_str("---\n");
        manifest.push_str(&backend(name, port, &mark_text));
    }
    let out = c.apply(&manifest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // the store gave it a cluster IP in the range and a node port
    let svc = service(&c, "web").expect("service");
    let ip: IpAddr = svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("cluster IP");
    let prefix = c
        .service_cidr()
        .split('.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    assert!(
        ip.to_string().starts_with(&prefix),
        "{ip} not in {}",
        c.service_cidr()
    );
    let node_port = svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .expect("node port") as u16;
    let table = String::from_utf8_lossy(&c.kubus(&["get", "svc", "web"]).stdout).to_string();
    assert!(table.contains(&format!("80:{node_port}/TCP")), "{table}");

    // all three become ready endpoints, each on its own number
    let all = vec![
        ("web-a".to_string(), true),
        ("web-b".to_string(), true),
        ("web-c".to_string(), true),
    ];
    wait_for(Duration::from_secs(60), || {
        (readiness(&c) == all).then_some(())
    })
    .unwrap_or_else(|| panic!("endpoints: {:?}\n{}", readiness(&c), c.log()));
    let ports: BTreeSet<u64> = web_slices(&c)
        .iter()
        .flat_map(|s| s["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["port"].as_u64())
        .collect();
    assert_eq!(ports, [18181, 18182, 18183].into_iter().collect());
    let eps = String::from_utf8_lossy(&c.kubus(&["get", "endpoints", "web"]).stdout).to_string();
    assert!(eps.contains("127.0.0.1:1818"), "{eps}");

    // the cluster IP and the node port reach every backend
    let cluster = SocketAddr::new(ip, 80);
    let seen = wait_for(Duration::from_secs(20), || {
        let s = answering(cluster, 30);
        (s.len() == 3).then_some(s)
    });
    assert_eq!(
        seen,
        Some(names(&["web-a", "web-b", "web-c"])),
        "{}",
        c.log()
    );
    let from_host = answering(SocketAddr::from(([127, 0, 0, 1], node_port)), 10);
    assert!(
        !from_host.is_empty(),
        "node port {node_port} did not answer"
    );

    // cluster DNS answers the Service's name with its cluster IP
    let dns = wait_for(Duration::from_secs(10), || {
        dns_a(c.dns_addr(), "web.default.svc.cluster.local.").filter(|a| !a.is_empty())
    });
    assert_eq!(dns, Some(vec![ip]), "DNS at {}", c.dns_addr());

    // kubus expose makes a Service for one Deployment, and kubus service
    // prints where it answers from this machine
    let out = c.kubus(&[
        "expose",
        "deployment",
        "web-b",
        "--port",
        "8080",
        "--target-port",
        "http",
        "--type",
        "NodePort",
    ]);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains("service/web-b exposed"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let urls = wait_for(Duration::from_secs(20), || {
        let out = c.kubus(&["service", "web-b", "--url"]);
        let urls: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let all_answer = urls.len() == 2
            && urls.iter().all(|u| {
                let addr = u.trim_start_matches("http://").parse::<SocketAddr>().ok();
                addr.and_then(|a| http_get(a, "/", Duration::from_secs(2)))
                    .is_some_and(|b| b.starts_with("web-b-"))
            });
        all_answer.then_some(urls)
    });
    assert!(
        urls.is_some(),
        "kubus service web-b: {}",
        String::from_utf8_lossy(&c.kubus(&["service", "web-b"]).stdout)
    );

    // a pod started now sees the Service in its environment
    let out = c.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: env-check}
spec:
  containers:
  - {name: c, image: busybox, command: ["sh", "-c", "env | sort; sleep 3600"]}
"#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = [
        format!("WEB_SERVICE_HOST={ip}"),
        "WEB_SERVICE_PORT=80".to_string(),
        "WEB_SERVICE_PORT_HTTP=80".to_string(),
        format!("WEB_PORT=tcp://{ip}:80"),
        format!("WEB_PORT_80_TCP_ADDR={ip}"),
    ];
    // (the log is read while the pod writes it: wait for every line)
    wait_for(Duration::from_secs(30), || {
        let l = String::from_utf8_lossy(&c.kubus(&["logs", "env-check"]).stdout).to_string();
        want.iter().all(|w| l.contains(w.as_str())).then_some(l)
    })
    .unwrap_or_else(|| {
        panic!(
            "env-check's log lacks one of {want:?}:\n{}\n{}",
            String::from_utf8_lossy(&c.kubus(&["logs", "env-check"]).stdout),
            c.log()
        )
    });

    // a failing readiness probe takes web-a out of rotation
    std::fs::remove_file(&mark).expect("unmark");
    let started = std::time::Instant::now();
    wait_for(Duration::from_secs(20), || {
        readiness(&c)
            .contains(&("web-a".to_string(), false))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("web-a still ready: {:?}", readiness(&c)));
    println!(
        "web-a left the endpoints {:?} after its mark went",
        started.elapsed()
    );
    // the proxy follows the slice on its own watch: give it a bounded moment
    let routed_out = wait_for(Duration::from_secs(10), || {
        (!answering(cluster, 5).contains("web-a")).then_some(())
    });
    println!(
        "web-a left the proxy's rotation {:?} after its mark went",
        started.elapsed()
    );
    let seen = answering(cluster, 20);
    assert!(routed_out.is_some() && !seen.contains("web-a"), "{seen:?}");

    // back in, then scale down to it alone
    std::fs::write(&mark, b"").expect("mark");
    for gone in ["web-b", "web-c"] {
        let out = c.kubus(&["delete", "deployment", gone]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_for(Duration::from_secs(30), || {
        (readiness(&c) == vec![("web-a".to_string(), true)]).then_some(())
    })
    .unwrap_or_else(|| panic!("endpoints: {:?}", readiness(&c)));
    assert_eq!(answering(cluster, 10), names(&["web-a"]));

    // bad Services are refused naming object, field and rule
    let taken = ip.to_string();
    let bad: Vec<(String, &str)> = vec![
        ("ports: [{port: 70000}]".into(), "spec.ports[0].port"),
        (
            "ports: [{name: a, port: 80}, {name: a, port: 81}]".into(),
            "duplicate port name",
        ),
        (
            "clusterIP: 192.0.2.10\n  ports: [{port: 80}]".into(),
            "not in the valid range",
        ),
        (
            format!("clusterIP: {taken}\n  ports: [{{port: 80}}]"),
            "already allocated (to Service default/web)",
        ),
        (
            format!("type: NodePort\n  ports: [{{port: 80, nodePort: {node_port}}}]"),
            "spec.ports[0].nodePort",
        ),
    ];
    for (spec, rule) in bad {
        let text =
            format!("apiVersion: v1\nkind: Service\nmetadata: {{name: bad}}\nspec:\n  {spec}\n");
        let out = c.apply(&text);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "accepted: {text}");
        assert!(
            err.contains("Service default/bad") && err.contains(rule),
            "{text}\n{err}"
        );
    }

    // deleting the Service frees its address and takes its slices along
    let out = c.kubus(&["delete", "svc", "web"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(Duration::from_secs(20), || {
        web_slices(&c).is_empty().then_some(())
    })
    .unwrap_or_else(|| panic!("slices left: {:?}", web_slices(&c)));
    let reuse = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: again}}\nspec:\n  clusterIP: {taken}\n  ports: [{{port: 80}}]\n");
    let out = c.apply(&reuse);
    assert!(
        out.status.success(),
        "freed address not reusable: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kubus port-forward ARGS` as a child: it, the local address it
/// listens on, and its log.
fn port_forward(
    c: &Cluster,
    args: &[&str],
    log: &str,
) -> (kubus_tests::Proc, SocketAddr, std::path::PathBuf) {
    let log = c.dir.path().join(log);
    let proc = kubus_tests::Proc::spawn(
        std::process::Command::new(kubus_tests::kubus_bin())
            .arg("port-forward")
            .args(args)
            .env("KUBUS_HOME", c.home()),
        &log,
    );
    let local = wait_for(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log).ok()?;
        let at = text
            .lines()
            .find_map(|l| l.strip_prefix("Forwarding from "))?;
        at.split(" -> ").next()?.parse().ok()
    })
    .unwrap_or_else(|| {
        panic!(
            "no Forwarding line: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    (proc, local, log)
}

/// `kubus port-forward` carries a local connection to a pod's port through
/// its node agent over the bus: a named port, a 3 MB body whole, and a
/// refusal for a port nothing listens on.
#[test]
fn port_forward_reaches_a_pod_through_its_agent() {
    let c = Cluster::start();
    let dir = c.dir.path().join("www");
    let manifest = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: big}}
spec:
  containers:
  - name: httpd
    image: busybox
    command: ["sh", "-c", "mkdir -p {dir} && head -c 3000000 /dev/zero | tr '\\0' x > {dir}/big && exec busybox httpd -f -p 127.0.0.1:18291 -h {dir}"]
    ports: [{{name: web, containerPort: 18291}}]
"#,
        dir = dir.display()
    );
    c.apply_and_run(&manifest, "big");

    let (_forward, local, log) = port_forward(&c, &["big", ":web"], "port-forward.log");
    let body = wait_for(Duration::from_secs(20), || {
        http_get(local, "/big", Duration::from_secs(10)).filter(|b| b.len() == 3_000_000)
    });
    assert!(
        body.is_some_and(|b| b.bytes().all(|x| x == b'x')),
        "the 3 MB body did not arrive whole; log: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    // a port nothing listens on: the connection closes, the CLI says why
    let (_closed, local, log2) = port_forward(&c, &["pod/big", ":18292"], "port-forward-2.log");
    assert!(http_get(local, "/", Duration::from_secs(5)).is_none());
    let said = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log2).ok()?;
        text.contains("cannot connect to port 18292")
            .then_some(text)
    });
    assert!(
        said.is_some(),
        "{}",
        std::fs::read_to_string(&log2).unwrap_or_default()
    );
}

use kubus_tests::is_root;

/// With `--process-network netns` each process pod has a network namespace
/// of its own: two replicas listening on one port both run, each with its
/// own IP, both receive traffic through the Service, and a pod resolves
/// cluster names and reaches cluster IPs.
#[test]
fn process_pods_in_their_own_network_namespaces() {
    if !is_root() {
        eprintln!("services: pod networks skipped (needs root; CI runs it)");
        return;
    }
    let c = Cluster::start_with(&["--process-network", "netns", "--pod-cidr", "10.231.0.0/16"]);
    let manifest = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: same-port}
spec:
  replicas: 2
  selector: {matchLabels: {app: same-port}}
  template:
    metadata: {labels: {app: same-port}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox
        env: [{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        command: ["sh", "-c", "d=$(mktemp -d) && echo $POD > $d/index.html && exec busybox httpd -f -p 8080 -h $d"]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: same-port}
spec:
  selector: {app: same-port}
  ports: [{port: 80, targetPort: http}]
"#;
    let out = c.apply(manifest);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ips = wait_for(Duration::from_secs(60), || {
        let ips: BTreeSet<String> = c
            .items("pods")
            .iter()
            .filter(|p| p["metadata"]["labels"]["app"] == "same-port")
            .filter(|p| kubus_api::pod::is_ready(p))
            .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_string))
            .collect();
        (ips.len() == 2).then_some(ips)
    })
    .unwrap_or_else(|| {
        panic!(
            "two ready pods with IPs of their own: {:#?}\n{}",
            c.items("pods"),
            c.log()
        )
    });
    assert!(ips.iter().all(|ip| ip.starts_with("10.231.")), "{ips:?}");

    let svc = service(&c, "same-port").expect("service");
    let ip: IpAddr = svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("cluster IP");
    let seen = wait_for(Duration::from_secs(20), || {
        let bodies: BTreeSet<String> = (0..20)
            .filter_map(|_| http_get(SocketAddr::new(ip, 80), "/", Duration::from_secs(2)))
            .collect();
        (bodies.len() == 2).then_some(bodies)
    });
    assert!(
        seen.is_some(),
        "both replicas did not answer through {ip}:80"
    );

    // from inside a pod: the cluster's resolver, a Service by name, its IP
    let client = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: inside}}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox
    command: ["sh", "-c", "cat /etc/resolv.conf; busybox nslookup same-port; busybox wget -q -O - http://{ip}/ && echo fetched; sleep 3600"]
"#
    );
    let out = c.apply(&client);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dns = c.dns_addr().ip().to_string();
    let log = wait_for(Duration::from_secs(30), || {
        let l = String::from_utf8_lossy(&c.kubus(&["logs", "inside"]).stdout).to_string();
        l.contains("fetched").then_some(l)
    })
    .unwrap_or_else(|| {
        panic!(
            "the pod did not reach the Service: {}\n{}",
            String::from_utf8_lossy(&c.kubus(&["logs", "inside"]).stdout),
            c.log()
        )
    });
    assert!(log.contains(&format!("nameserver {dns}")), "{log}");
    assert!(
        log.contains(&ip.to_string()),
        "nslookup did not answer the cluster IP: {log}"
    );

    // port-forward reaches a server on the pod's own loopback, as kubectl's
    c.apply_and_run(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: loopback-only}
spec:
  containers:
  - name: httpd
    image: busybox
    command: ["sh", "-c", "d=$(mktemp -d) && echo private > $d/index.html && exec busybox httpd -f -p 127.0.0.1:9090 -h $d"]
"#,
        "loopback-only",
    );
    let (_forward, local, log) = port_forward(&c, &["loopback-only", "0:9090"], "pf-loopback.log");
    let body = wait_for(Duration::from_secs(20), || {
        http_get(local, "/", Duration::from_secs(5)).filter(|b| b.contains("private"))
    });
    assert!(
        body.is_some(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
