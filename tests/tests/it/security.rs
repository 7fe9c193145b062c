//! Security on by default (issue 22): every identity `kubus up` makes is
//! authenticated by nats-server and confined — on the bus by its grants,
//! in the store by RBAC and the Node authorizer — against the real
//! server with the configuration kubus generates.

use std::time::Duration;

use futures::StreamExt;
use kubus_api::rbac::UserInfo;
use kubus_api::{Kind, ObjectRef, Reason};
use kubus_bus::auth::Identity;
use kubus_bus::Client;
use kubus_tests::{wait_for, Cluster};
use serde_json::{json, Value};

/// How long a message that should not arrive is waited for.
const QUIET: Duration = Duration::from_millis(1500);

fn reason(e: &kubus_bus::ClientError) -> Option<Reason> {
    e.reason()
}

/// The first message on `sub` within `wait`, if any.
async fn next(sub: &mut async_nats::Subscriber, wait: Duration) -> Option<async_nats::Message> {
    tokio::time::timeout(wait, sub.next()).await.ok().flatten()
}

#[test]
fn identities_are_confined_on_the_bus_and_in_the_store() {
    let c = Cluster::start();
    c.apply_and_run(
        r#"
apiVersion: v1
kind: Secret
metadata: {name: used}
stringData: {k: used-value}
---
apiVersion: v1
kind: Secret
metadata: {name: unused}
stringData: {k: unused-value}
---
apiVersion: v1
kind: Pod
metadata: {name: mine}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox
    command: ["sleep", "3600"]
    env: [{name: S, valueFrom: {secretKeyRef: {name: used, key: k}}}]
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
---
apiVersion: v1
kind: Pod
metadata: {name: elsewhere}
spec:
  nodeName: node-2
  containers: [{name: c, image: busybox, command: ["sleep", "3600"]}]
"#,
        "mine",
    );

    let rt = kubus_tests::runtime();
    let as_id = |id: Identity| {
        let creds = c.credentials_of(&id);
        let url = c.nats_url.clone();
        rt.block_on(async move {
            Client::connect_as(&url, "kubus", Some(&creds))
                .await
                .expect("connect")
        })
    };
    let admin = as_id(Identity::Admin);
    let node = as_id(Identity::Node("node-1".into()));
    let dashboard = as_id(Identity::Dashboard);
    let gateway = as_id(Identity::Gateway);

    rt.block_on(async {
        // the Node authorizer: its pods and what they use, nothing else
        node.get(Kind::Secret, Some("default"), "used")
            .await
            .expect("a node reads a secret its pod uses");
        let e = node
            .get(Kind::Secret, Some("default"), "unused")
            .await
            .expect_err("a secret no pod of the node uses");
        assert_eq!(reason(&e), Some(Reason::Forbidden), "{e}");
        assert!(
            e.to_string()
                .contains("no relationship found between node \"node-1\""),
            "{e}"
        );
        let e = node
            .get(Kind::Pod, Some("default"), "elsewhere")
            .await
            .expect_err("another node's pod");
        assert_eq!(reason(&e), Some(Reason::Forbidden), "{e}");
        let e = node
            .list(Kind::Pod, None, None, None)
            .await
            .expect_err("every pod");
        assert_eq!(reason(&e), Some(Reason::Forbidden), "{e}");
        node.list(Kind::Pod, None, None, Some("spec.nodeName=node-1"))
            .await
            .expect("its own pods");
        // NodeRestriction: the status of its pods, never their spec
        let mut other = admin
            .get(Kind::Pod, Some("default"), "elsewhere")
            .await
            .expect("admin reads");
        other["status"]["phase"] = json!("Failed");
        let e = node
            .update(other)
            .await
            .expect_err("another node's pod status");
        assert_eq!(reason(&e), Some(Reason::Forbidden), "{e}");
        let mut mine = node
            .get(Kind::Pod, Some("default"), "mine")
            .await
            .expect("its own pod");
        mine["spec"]["activeDeadlineSeconds"] = json!(5);
        let e = node.update(mine).await.expect_err("its pod's spec");
        assert!(e.to_string().contains("only the status"), "{e}");

        // a dashboard reads but does not write, and never reads secrets
        dashboard
            .list(Kind::Pod, Some("default"), None, None)
            .await
            .expect("a dashboard lists pods");
        let e = dashboard
            .get(Kind::Secret, Some("default"), "used")
            .await
            .expect_err("a dashboard reads no secret");
        assert_eq!(reason(&e), Some(Reason::Forbidden), "{e}");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "from-dashboard", "namespace": "default"}});
        assert!(
            dashboard.create(cm.clone()).await.is_err(),
            "a dashboard writes nothing"
        );

        // an identity header a client sets is the server's to overwrite
        let mut h = async_nats::HeaderMap::new();
        h.insert(
            kubus_bus::auth::HEADER_REQUEST_INFO,
            r#"{"acc":"CLUSTER","user":"admin"}"#,
        );
        let body = kubus_bus::codec::encode(&kubus_bus::protocol::ApiRequest::Create {
            object: cm.clone(),
            dry_run: false,
        })
        .expect("encode");
        let subject = dashboard.subjects().api(
            kubus_bus::subject::Verb::Create,
            Kind::ConfigMap,
            Some("default"),
        );
        // the dashboard may not even publish a create; the node may, and is
        // refused as itself despite the header
        let forged = node
            .nats()
            .request_with_headers(subject, h, body)
            .await
            .expect("an answer");
        let reply: kubus_bus::protocol::ApiReply =
            kubus_bus::codec::decode(&forged.payload).expect("a reply");
        let e = reply.expect_err("a forged header grants nothing");
        assert!(e.message.contains("system:node:node-1"), "{}", e.message);

        // the bus: a node hears only its own subjects; nobody but those
        // with `get secrets` hears a Secret's changes
        let mut node_secrets = node
            .nats()
            .subscribe("kubus.kubus.obj.secrets.>")
            .await
            .expect("subscribe is sent");
        let mut dash_secrets = dashboard
            .nats()
            .subscribe("kubus.kubus.obj.secrets.>")
            .await
            .expect("subscribe is sent");
        let mut node_other = node
            .nats()
            .subscribe("kubus.kubus.node.node-2.pods")
            .await
            .expect("subscribe is sent");
        let mut admin_secrets = admin
            .nats()
            .subscribe("kubus.kubus.obj.secrets.>")
            .await
            .expect("subscribe");
        let mut admin_other = admin
            .nats()
            .subscribe("kubus.kubus.node.node-2.pods")
            .await
            .expect("subscribe");
        let _ = node.nats().flush().await;
        let _ = dashboard.nats().flush().await;
        let _ = admin.nats().flush().await;
        let mut s = admin
            .get(Kind::Secret, Some("default"), "unused")
            .await
            .expect("secret");
        s["data"]["k"] = json!("bmV3");
        admin.update(s).await.expect("update secret");
        admin
            .patch(
                &ObjectRef::new(Kind::Pod, Some("default"), "elsewhere"),
                json!({"metadata": {"labels": {"touched": "yes"}}}),
            )
            .await
            .expect("patch another node's pod");
        assert!(next(&mut admin_secrets, Duration::from_secs(5))
            .await
            .is_some());
        assert!(next(&mut admin_other, Duration::from_secs(5))
            .await
            .is_some());
        assert!(
            next(&mut node_secrets, QUIET).await.is_none(),
            "a node heard a Secret"
        );
        assert!(
            next(&mut dash_secrets, QUIET).await.is_none(),
            "a dashboard heard a Secret"
        );
        assert!(
            next(&mut node_other, QUIET).await.is_none(),
            "node-1 heard node-2's pods"
        );

        // a request whose reply subject is not an inbox is dropped: the
        // agent would otherwise publish its answer there with its rights
        let mut spoofed = admin
            .nats()
            .subscribe("kubus.kubus.manifests")
            .await
            .expect("subscribe");
        let _ = admin.nats().flush().await;
        let logs = kubus_bus::codec::encode(&kubus_bus::protocol::LogsRequest {
            namespace: "default".into(),
            pod: "mine".into(),
            container: Some("c".into()),
            limit_bytes: None,
            previous: false,
            from_offset: None,
        })
        .expect("encode");
        admin
            .nats()
            .publish_with_reply(
                admin
                    .subjects()
                    .agent("node-1", kubus_bus::subject::AgentOp::Logs),
                "kubus.kubus.manifests",
                logs,
            )
            .await
            .expect("publish");
        let _ = admin.nats().flush().await;
        // the only message on the subject is none: the agent answered nothing
        assert!(
            next(&mut spoofed, QUIET).await.is_none(),
            "a spoofed reply was sent"
        );

        // the gateway acts for users it authenticates; a node may not
        let alice = UserInfo {
            name: "alice".into(),
            groups: vec!["system:authenticated".into()],
        };
        let as_alice = gateway.impersonating(&alice);
        let e = as_alice
            .list(Kind::Pod, Some("default"), None, None)
            .await
            .expect_err("alice has no role yet");
        assert_eq!(reason(&e), Some(Reason::Forbidden), "{e}");
        let e = node
            .impersonating(&UserInfo {
                name: "kubus-admin".into(),
                groups: vec!["system:masters".into()],
            })
            .list(Kind::Secret, Some("default"), None, None)
            .await
            .expect_err("a node impersonates nobody");
        assert_eq!(reason(&e), Some(Reason::Forbidden), "{e}");
    });

    // a RoleBinding counts from the next request, without a restart
    c.kubus_ok(&[
        "create",
        "rolebinding",
        "alice-views",
        "--clusterrole=view",
        "--user=alice",
    ]);
    let as_alice = gateway.impersonating(&UserInfo {
        name: "alice".into(),
        groups: vec!["system:authenticated".into()],
    });
    rt.block_on(async {
        as_alice
            .list(Kind::Pod, Some("default"), None, None)
            .await
            .expect("alice views once bound");
        let e = as_alice
            .list(Kind::Pod, Some("kube-system"), None, None)
            .await
            .expect_err("only in the binding's namespace");
        assert_eq!(reason(&e), Some(Reason::Forbidden), "{e}");
    });
    let can = |args: &[&str]| c.kubus(&[&["auth", "can-i"], args].concat());
    assert!(can(&["list", "pods", "--as", "alice"]).status.success());
    let no = can(&["delete", "pods", "--as", "alice"]);
    assert_eq!(no.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    c.kubus_ok(&["delete", "rolebinding", "alice-views"]);
    rt.block_on(async {
        let e = as_alice
            .list(Kind::Pod, Some("default"), None, None)
            .await
            .expect_err("unbound again");
        assert_eq!(reason(&e), Some(Reason::Forbidden), "{e}");
    });

    // RBAC is compiled into the bus grants too: bound to a ClusterRole that
    // reads Secrets, the connected dashboard hears their changes (it
    // subscribes again; nothing restarts); unbound, it stops hearing them
    c.kubus_ok(&[
        "create",
        "clusterrole",
        "secret-reader",
        "--verb=get,list,watch",
        "--resource=secrets",
    ]);
    c.kubus_ok(&[
        "create",
        "clusterrolebinding",
        "dashboards-read-secrets",
        "--clusterrole=secret-reader",
        "--group=kubus:dashboards",
    ]);
    let touch = |n: u32| {
        c.kubus_ok(&[
            "annotate",
            "secret",
            "unused",
            &format!("n={n}"),
            "--overwrite",
        ]);
    };
    let heard = rt.block_on(async {
        for attempt in 0..20u32 {
            let mut sub = dashboard
                .nats()
                .subscribe("kubus.kubus.obj.secrets.>")
                .await
                .expect("subscribe is sent");
            let _ = dashboard.nats().flush().await;
            touch(attempt);
            if next(&mut sub, Duration::from_millis(500)).await.is_some() {
                return Some((attempt, sub));
            }
        }
        None
    });
    let (attempt, mut sub) =
        heard.unwrap_or_else(|| panic!("the dashboard never heard a Secret: {}", c.log()));
    rt.block_on(async {
        dashboard
            .get(Kind::Secret, Some("default"), "unused")
            .await
            .expect("and reads them through the API");
    });
    c.kubus_ok(&["delete", "clusterrolebinding", "dashboards-read-secrets"]);
    let stopped = rt.block_on(async {
        for n in 0..20u32 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            while next(&mut sub, Duration::from_millis(50)).await.is_some() {}
            touch(attempt + 100 + n);
            if next(&mut sub, Duration::from_millis(700)).await.is_none() {
                return true;
            }
        }
        false
    });
    assert!(
        stopped,
        "the dashboard still hears Secrets after its binding went"
    );

    // RBAC from the CLI: a Role with a resource name, bound to a group
    c.kubus_ok(&[
        "create",
        "role",
        "one-cm",
        "--verb=get",
        "--resource=configmaps",
        "--resource-name=allowed",
    ]);
    c.kubus_ok(&[
        "create",
        "rolebinding",
        "team-one-cm",
        "--role=one-cm",
        "--group=team",
    ]);
    let can_team = |verb: &str, what: &str| {
        c.kubus(&[
            "auth",
            "can-i",
            verb,
            what,
            "--as",
            "bob",
            "--as-group",
            "team",
        ])
        .status
        .success()
    };
    assert!(can_team("get", "configmaps/allowed"));
    assert!(!can_team("get", "configmaps/other"));
    assert!(!can_team("list", "configmaps"));
    let whoami = c.kubus_ok(&["auth", "whoami"]);
    assert!(
        whoami.contains("kubus-admin") && whoami.contains("system:masters"),
        "{whoami}"
    );
    let bad = c.kubus(&[
        "create",
        "rolebinding",
        "x",
        "--role=r",
        "--clusterrole=v",
        "--user=u",
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("exactly one of --role and --clusterrole")
    );
    let refused = c.kubus(&[
        "create",
        "clusterrolebinding",
        "x",
        "--clusterrole=view",
        "--serviceaccount=robot",
    ]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("expected NAMESPACE:NAME"));
    let rows = c.kubus_ok(&["get", "rolebindings", "-o", "wide"]);
    assert!(
        rows.contains("Role/one-cm") && rows.contains("team"),
        "{rows}"
    );
}

/// A machine joins with the join token and gets a node identity of its
/// own; a wrong token is refused, naming it.
#[test]
fn a_node_joins_with_the_join_token_and_only_with_it() {
    let c = Cluster::start();
    let bad_dir = c.dir.path().join("bad");
    let out = std::process::Command::new(kubus_tests::kubus_bin())
        .args(["node", "--roles", "worker", "--node-name", "intruder"])
        .args(["--runtime", "process", "--process-network", "host"])
        .args(["--nats", &c.nats_url, "--join-token", "not-the-token"])
        .arg("--data-dir")
        .arg(&bad_dir)
        .output()
        .expect("kubus node");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("join token"), "{err}");
    // anonymous: refused by the server
    let anonymous = std::process::Command::new(kubus_tests::kubus_bin())
        .args(["get", "pods", "--nats", &c.nats_url])
        .env("KUBUS_HOME", c.dir.path().join("nobody"))
        .output()
        .expect("kubus get");
    assert!(
        !anonymous.status.success(),
        "an anonymous client was served"
    );

    // requests under way while the join reloads the server are answered
    // (the store's replies are granted outright; a reload once dropped them)
    let (rt, admin) = c.bus_client();
    let busy = rt.spawn(async move {
        let mut failed = Vec::new();
        for _ in 0..300 {
            if let Err(e) = admin.list(kubus_api::Kind::Node, None, None, None).await {
                failed.push(e.to_string());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        failed
    });
    let _w = c.worker("joiner");
    let failed = rt.block_on(busy).expect("the request loop");
    assert!(
        failed.is_empty(),
        "requests lost across the reload: {failed:?}"
    );
    wait_for(Duration::from_secs(40), || {
        c.items("nodes")
            .iter()
            .any(|n| {
                n["metadata"]["name"] == "joiner"
                    && n["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|x| x["type"] == "Ready" && x["status"] == "True")
                    })
            })
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the joined node is Ready: {}", c.log()));
    let joined = c.dir.path().join("joiner/data/bus/node-joiner.json");
    assert!(joined.is_file(), "its credentials are kept");
    let v: Value = serde_json::from_slice(&std::fs::read(joined).expect("read")).expect("json");
    assert_eq!(v["user"], "node-joiner");
}

/// With TLS on the bus, a capture of its port holds no Secret value; the
/// same capture without TLS does (so the capture is known to see them).
#[test]
fn with_tls_no_secret_crosses_the_bus_in_the_clear() {
    if !kubus_tests::is_root() || !std::path::Path::new("/usr/bin/tcpdump").exists() {
        eprintln!("security: bus capture skipped (needs root and tcpdump; CI has both)");
        return;
    }
    const PLAIN: &str = "CANARY-plaintext-7f3a";
    // what the Secret's data holds on the wire: the value in base64
    const ENCODED: &str = "Q0FOQVJZLXBsYWludGV4dC03ZjNh";
    for tls in [false, true] {
        let c = if tls {
            Cluster::start_with(&["--bus-tls"])
        } else {
            Cluster::start()
        };
        let port = c
            .nats_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .expect("the bus port");
        let capture = c.dir.path().join("bus.pcap");
        let mut dump = kubus_tests::Proc::spawn(
            std::process::Command::new("tcpdump")
                .args(["-i", "lo", "-U", "-n", "-w"])
                .arg(&capture)
                .arg(format!("tcp port {port}")),
            &c.dir.path().join("tcpdump.log"),
        );
        wait_for(Duration::from_secs(10), || {
            std::fs::metadata(&capture)
                .ok()
                .filter(|m| m.len() > 0)
                .map(|_| ())
        })
        .expect("tcpdump writes its capture");
        c.kubus_ok(&[
            "create",
            "secret",
            "generic",
            "canary",
            &format!("--from-literal=k={PLAIN}"),
        ]);
        let shown = c.kubus_ok(&["get", "secret", "canary", "-o", "json"]);
        assert!(shown.contains(ENCODED), "{shown}");
        std::thread::sleep(Duration::from_secs(1));
        dump.kill9();
        let bytes = std::fs::read(&capture).expect("the capture");
        let holds = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        let seen = holds(PLAIN) || holds(ENCODED);
        assert!(
            bytes.len() > 1000,
            "the capture saw the traffic ({} bytes)",
            bytes.len()
        );
        assert_eq!(
            seen,
            !tls,
            "tls {tls}: the Secret's value {} in the capture",
            if seen { "is" } else { "is not" }
        );
    }
}

/// Whether any file under `dir` holds `needle`.
fn any_file_holds(dir: &std::path::Path, needle: &str) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                files += 1;
                assert!(files < 10_000, "too many files under {}", dir.display());
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    return true;
                }
            }
        }
    }
    false
}

/// The count `kubus store reseal` (or `rotate-key`) says it rewrote.
fn resealed(out: &str) -> u64 {
    out.lines()
        .find_map(|l| l.strip_prefix("resealed "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no reseal count in {out:?}"))
}

#[test]
fn secrets_are_encrypted_at_rest_and_their_key_rotates() {
    // Written while the configuration says identity: plain in RocksDB,
    // which shows the search below finds what is there.
    const OLD: &str = "CANARY-old-plain-51c2";
    const OLD_B64: &str = "Q0FOQVJZLW9sZC1wbGFpbi01MWMy";
    // Written with aesgcm first: never plain on disk, in either form.
    const NEW: &str = "CANARY-new-sealed-9d4e";
    const NEW_B64: &str = "Q0FOQVJZLW5ldy1zZWFsZWQtOWQ0ZQ==";
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("encryption.yaml");
    std::fs::write(
        &config,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n\
         resources:\n- resources: [secrets]\n  providers:\n  - identity: {}\n",
    )
    .expect("identity config");
    let config_arg = config.display().to_string();
    let mut c = Cluster::start_with(&["--encryption-provider-config", &config_arg]);
    c.kubus_ok(&[
        "create",
        "secret",
        "generic",
        "old",
        &format!("--from-literal=k={OLD}"),
    ]);
    c.stop();
    let store = c.data_dir().join("store");
    assert!(
        any_file_holds(&store, OLD_B64),
        "a Secret written under identity is plain in the store's files"
    );

    // Kubernetes' migration: aesgcm first, identity still read.
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    std::fs::write(
        &config,
        format!(
            "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n\
             resources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      \
             - name: first\n        secret: {key}\n  - identity: {{}}\n"
        ),
    )
    .expect("aesgcm config");
    c.launch();
    c.kubus_ok(&[
        "create",
        "secret",
        "generic",
        "new",
        &format!("--from-literal=k={NEW}"),
    ]);
    for (name, b64) in [("old", OLD_B64), ("new", NEW_B64)] {
        let shown = c.kubus_ok(&["get", "secret", name, "-o", "json"]);
        assert!(shown.contains(b64), "{name}: {shown}");
    }
    // the old one is rewritten sealed; the new one already is
    // (beside them: the ServiceAccount tokens' signing key, a Secret too)
    let all: Value = serde_json::from_str(&c.kubus_ok(&["get", "secrets", "-A", "-o", "json"]))
        .expect("secrets json");
    let secrets = all["items"].as_array().map_or(0, Vec::len) as u64;
    assert!(secrets >= 3, "{all}");
    let out = c.kubus_ok(&["store", "reseal"]);
    let plain = out
        .split("identity: ")
        .nth(1)
        .and_then(|rest| rest.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no plain count in {out}"));
    assert!(plain >= 1 && resealed(&out) == plain, "{out}");
    assert!(out.contains("first: "), "{out}");
    assert_eq!(resealed(&c.kubus_ok(&["store", "reseal"])), 0);

    // rotation: a new key everywhere, then every Secret rewritten with it
    let out = c.kubus_ok(&["store", "rotate-key"]);
    assert_eq!(resealed(&out), secrets, "{out}");
    let file = std::fs::read_to_string(&config).expect("config");
    let parsed: Value = serde_json::from_str(&file).expect("the rewritten file is JSON");
    let keys = parsed["resources"][0]["providers"][0]["aesgcm"]["keys"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(keys.len(), 2, "{file}");
    assert_eq!(keys[1]["name"], "first", "the old key still reads: {file}");
    assert_eq!(resealed(&c.kubus_ok(&["store", "reseal"])), 0);

    // a missing key is named, not a panic or an empty answer
    let mut wrong: Value = parsed.clone();
    wrong["resources"][0]["providers"][0]["aesgcm"]["keys"]
        .as_array_mut()
        .expect("keys")
        .remove(0);
    std::fs::write(&config, wrong.to_string()).expect("config");
    let out = c.kubus(&["store", "reseal"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "reseal needs the writing key");
    let got = c.kubus(&["get", "secret", "new", "-o", "json"]);
    let msg = String::from_utf8_lossy(&got.stderr).to_string();
    assert!(
        !got.status.success() && msg.contains("/secrets/default/new is sealed with key"),
        "reseal said {err}; get said {msg}"
    );
    std::fs::write(&config, file).expect("config");
    c.kubus_ok(&["store", "reseal"]);

    // after a restart both read back with the rotated keys
    c.stop();
    assert!(
        !any_file_holds(&store, NEW),
        "a sealed Secret is plain on disk"
    );
    assert!(
        !any_file_holds(&store, NEW_B64),
        "a sealed Secret is plain on disk (base64)"
    );
    c.launch();
    for (name, b64) in [("old", OLD_B64), ("new", NEW_B64)] {
        let shown = c.kubus_ok(&["get", "secret", name, "-o", "json"]);
        assert!(shown.contains(b64), "{name}: {shown}");
    }
    // a bad configuration is refused at start, naming the file and field
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\n\
         resources:\n- resources: [secrets]\n  providers:\n  - aesgcm:\n      keys:\n      \
         - name: short\n        secret: c2hvcnQ=\n",
    )
    .expect("bad config");
    let out = std::process::Command::new(kubus_tests::kubus_bin())
        .args(["up", "--data-dir"])
        .arg(dir.path().join("other"))
        .arg("--encryption-provider-config")
        .arg(&bad)
        .env("KUBUS_HOME", dir.path().join("home"))
        .output()
        .expect("kubus up");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("bad.yaml")
            && err.contains(
                "resources[0].providers[0].aesgcm.keys[0]: secret of \"short\" is 5 bytes"
            ),
        "{err}"
    );
}

#[test]
fn service_account_tokens_authenticate_at_the_api_and_rbac_decides() {
    let c = Cluster::start();
    // every namespace gets its `default` ServiceAccount, again if deleted
    c.kubus_ok(&["create", "namespace", "team"]);
    let has_default = |ns: &str| {
        wait_for(Duration::from_secs(15), || {
            c.kubus(&["get", "serviceaccount", "default", "-n", ns])
                .status
                .success()
                .then_some(())
        })
        .is_some()
    };
    assert!(has_default("default") && has_default("team"), "{}", c.log());
    c.kubus_ok(&["delete", "serviceaccount", "default", "-n", "team"]);
    assert!(has_default("team"), "the default ServiceAccount comes back");
    // a pod that names none runs as `default`
    c.kubus_ok(&["run", "sleeper", "--image=busybox", "--", "sleep", "3600"]);
    let shown = c.kubus_ok(&["get", "pod", "sleeper", "-o", "json"]);
    assert!(
        shown.contains("\"serviceAccountName\": \"default\""),
        "{shown}"
    );
    // ...with its token projected into a volume (root: the process
    // runtime writes volumes only then), a token of `default` bound to it
    let pod_token = if kubus_tests::is_root() {
        let sleeper: Value = serde_json::from_str(&shown).expect("pod json");
        let uid = sleeper["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let path = c
            .data_dir()
            .join("agent")
            .join("pods")
            .join(format!("default_sleeper_{uid}"))
            .join("volumes/kubernetes.io~projected/kube-api-access/token");
        let found = wait_for(Duration::from_secs(20), || {
            std::fs::read_to_string(&path).ok()
        });
        Some(found.unwrap_or_else(|| {
            panic!(
                "no projected token under {}; log:\n{}",
                c.data_dir().display(),
                c.log()
            )
        }))
    } else {
        eprintln!("security: projected token files skipped (needs root; CI has it)");
        None
    };

    c.kubus_ok(&["create", "serviceaccount", "robot", "-n", "team"]);
    c.kubus_ok(&[
        "create",
        "rolebinding",
        "robot-view",
        "-n",
        "team",
        "--clusterrole=view",
        "--serviceaccount=team:robot",
    ]);
    let token = c.kubus_ok(&["create", "token", "robot", "-n", "team", "--duration=10m"]);
    let token = token.trim().to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    // what it names: the ServiceAccount, by the store's verification
    let rt = kubus_tests::runtime();
    let admin = rt.block_on(c.connect());
    let review = rt.block_on(admin.review_token(&token)).expect("review");
    assert_eq!(review.user.name, "system:serviceaccount:team:robot");
    assert!(review
        .user
        .groups
        .contains(&"system:serviceaccounts:team".to_string()));
    if let Some(t) = &pod_token {
        let r = rt
            .block_on(admin.review_token(t.trim()))
            .expect("the pod's token verifies");
        assert_eq!(r.user.name, "system:serviceaccount:default:default");
    }
    // refused: not a token, a missing account, too short a life
    assert!(rt.block_on(admin.review_token("e30.e30.e30")).is_err());
    let missing = c.kubus(&["create", "token", "ghost", "-n", "team"]);
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("ghost"),
        "{missing:?}"
    );
    let short = c.kubus(&["create", "token", "robot", "-n", "team", "--duration=1m"]);
    assert!(
        String::from_utf8_lossy(&short.stderr)
            .contains("spec.expirationSeconds: may not specify a duration less than 600 seconds"),
        "{short:?}"
    );

    // kubectl with nothing but the token: the gateway asks the store who
    // it is and RBAC decides (view in team: read, not write)
    let current: Value = serde_json::from_slice(
        &std::fs::read(c.home().join("current.json")).expect("current.json"),
    )
    .expect("json");
    let server = current["api"]
        .as_str()
        .expect("the API's address")
        .to_string();
    let ca = c.data_dir().join("pki").join("ca.crt");
    let empty = c.dir.path().join("empty-kubeconfig");
    std::fs::write(&empty, "apiVersion: v1\nkind: Config\n").expect("kubeconfig");
    let kubectl =
        Cluster::kubectl_build("1.33").unwrap_or_else(|| std::path::PathBuf::from("kubectl"));
    let as_robot_in = |token: &str, args: &[&str], stdin: &str| {
        let mut all = vec![
            "--kubeconfig".to_string(),
            empty.display().to_string(),
            "--server".to_string(),
            server.clone(),
            "--certificate-authority".to_string(),
            ca.display().to_string(),
            "--token".to_string(),
            token.to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        c.kubectl_in(&kubectl, &all, stdin)
    };
    let as_robot = |token: &str, args: &[&str]| as_robot_in(token, args, "");
    let read = as_robot(&token, &["get", "pods", "-n", "team"]);
    assert!(read.status.success(), "{read:?}");
    let write = as_robot_in(
        &token,
        &["apply", "-f", "-"],
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"team"}}"#,
    );
    let err = String::from_utf8_lossy(&write.stderr);
    assert!(
        !write.status.success()
            && err.contains("system:serviceaccount:team:robot")
            && err.contains("forbidden"),
        "{err}"
    );
    let elsewhere = as_robot(&token, &["get", "pods", "-n", "default"]);
    assert!(!elsewhere.status.success(), "view is bound in team only");
    // logs and exec go to the node agent: the gateway asks the store first
    for args in [
        &["logs", "sleeper", "-n", "default"][..],
        &["exec", "sleeper", "-n", "default", "--", "true"][..],
    ] {
        let out = as_robot(&token, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.contains("forbidden")
                && err.contains("system:serviceaccount:team:robot"),
            "{args:?}: {err}"
        );
    }
    let bogus = as_robot("not-a-token", &["get", "pods", "-n", "team"]);
    assert!(
        String::from_utf8_lossy(&bogus.stderr)
            .contains("must be logged in to the server (token refused"),
        "{bogus:?}"
    );
    // deleting the ServiceAccount revokes its tokens (the gateway trusts
    // an answer for 10 s)
    c.kubus_ok(&["delete", "serviceaccount", "robot", "-n", "team"]);
    let refused = wait_for(Duration::from_secs(20), || {
        let out = as_robot(&token, &["get", "pods", "-n", "team"]);
        (!out.status.success()).then_some(String::from_utf8_lossy(&out.stderr).to_string())
    })
    .expect("a deleted ServiceAccount's token is refused");
    assert!(
        refused.contains("service account team/robot has been deleted"),
        "{refused}"
    );
    if let Some(t) = &pod_token {
        c.kubus_ok(&["delete", "pod", "sleeper", "--grace-period=0"]);
        let why = wait_for(Duration::from_secs(20), || {
            rt.block_on(admin.review_token(t.trim()))
                .err()
                .map(|e| e.to_string())
        })
        .expect("a deleted pod's token is refused");
        assert!(
            why.contains("the pod default/sleeper the token is bound to is gone"),
            "{why}"
        );
    }
    let gone = rt
        .block_on(admin.review_token(&token))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        gone.contains("service account team/robot has been deleted"),
        "{gone}"
    );
}

/// NATS subject matching: `*` one token, `>` the rest.
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn granted(g: &kubus_bus::auth::Grant, subject: &str) -> bool {
    g.allow.iter().any(|a| subject_matches(a, subject))
        && !g.deny.iter().any(|d| subject_matches(d, subject))
}

/// Every identity × subject × publish/subscribe against the nats-server
/// `kubus up` runs with its generated configuration: the server refuses
/// exactly what `bus::auth::permissions` (with the dashboard's grants
/// compiled from the default RBAC) does not grant — 100 % of the cells,
/// each observed as the server's own verdict (a permissions violation, or
/// none).
#[test]
fn the_permission_matrix_holds_on_the_real_server() {
    use kubus_bus::auth::{permissions, readable, Identity};
    let c = Cluster::start();
    // the dashboard's grants are compiled once the store answers
    wait_for(Duration::from_secs(30), || {
        c.log()
            .contains("the dashboard's bus grants follow its RBAC")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("the dashboard's grants are compiled: {}", c.log()));
    let subjects = kubus_bus::Subjects::new("kubus");
    let index = kubus_api::rbac::defaults::index();
    let view = readable(&index, &Identity::Dashboard.user_info(), &[]);
    let cells = [
        "kubus.kubus.api.get.pods.default",
        "kubus.kubus.api.delete.secrets.default",
        "kubus.kubus.manifests",
        "kubus.kubus.review",
        "kubus.kubus.join",
        "kubus.kubus.store.status",
        "kubus.kubus.raft.9",
        "kubus.kubus.obj.pods.default.p",
        "kubus.kubus.obj.secrets.default.s",
        "kubus.kubus.obj.services.default.s",
        "kubus.kubus.obj.nodes._.n",
        "kubus.kubus.events.default.pods.p",
        "kubus.kubus.node.node-1.pods",
        "kubus.kubus.node.node-1.agent.logs",
        "kubus.kubus.node.node-1.stream.x.up",
        "kubus.kubus.node.node-1.heartbeat",
        "kubus.kubus.node.other.pods",
        "kubus.kubus.node.other.agent.exec",
        "kubus.kubus.node.other.stream.x.down",
        "_INBOX_admin.t",
        "_INBOX_gateway.t",
        "_INBOX_node-node-1.t",
        "_INBOX_dashboard.t",
    ];
    let identities = [
        Identity::Admin,
        Identity::Store(1),
        Identity::Control,
        Identity::Node("node-1".into()),
        Identity::Dashboard,
        Identity::Gateway,
        Identity::Bootstrap,
    ];
    let rt = kubus_tests::runtime();
    let mut checked = 0;
    let mut refused_cells = 0;
    let mut wrong = Vec::new();
    for id in &identities {
        let creds = c.credentials_of(id);
        let expected = permissions(
            id,
            &subjects,
            matches!(id, Identity::Dashboard).then_some(view.as_slice()),
        );
        let url = c.nats_url.clone();
        let refused: Vec<String> = rt.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let nats = async_nats::ConnectOptions::new()
                .user_and_password(creds.user.clone(), creds.password.clone())
                .custom_inbox_prefix(creds.inbox_prefix())
                .event_callback(move |event| {
                    let tx = tx.clone();
                    async move {
                        if let async_nats::Event::ServerError(e) = event {
                            let _ = tx.send(e.to_string());
                        }
                    }
                })
                .connect(url.as_str())
                .await
                .expect("connect");
            let mut subs = Vec::new();
            for subject in cells {
                // a payload no responder can take for a request
                let _ = nats.publish(subject, "matrix".into()).await;
                subs.push(nats.subscribe(subject).await.expect("subscribe is sent"));
            }
            let _ = nats.flush().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let mut out = Vec::new();
            while let Ok(e) = rx.try_recv() {
                out.push(e.to_lowercase());
            }
            out
        });
        let refused_to = |what: &str, subject: &str| {
            refused.iter().any(|e| {
                e.contains(&format!(
                    "violation for {what} to \"{}\"",
                    subject.to_lowercase()
                ))
            })
        };
        for subject in cells {
            for (what, grant) in [
                ("publish", &expected.publish),
                ("subscription", &expected.subscribe),
            ] {
                checked += 1;
                let want = granted(grant, subject);
                let got = !refused_to(what, subject);
                refused_cells += usize::from(!got);
                if want != got {
                    wrong.push(format!(
                        "{} {what} {subject}: granted by kubus {want}, by the server {got}",
                        id.user()
                    ));
                }
            }
        }
    }
    assert_eq!(checked, identities.len() * cells.len() * 2);
    eprintln!("permission matrix: {checked} cells, {refused_cells} refused by the server");
    // a matrix the server refused nothing of would prove nothing
    assert!(
        refused_cells > checked / 4,
        "{refused_cells} of {checked} refused"
    );
    assert!(
        wrong.is_empty(),
        "cells that disagree ({} of {checked}):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    // and the matrix says what the design says
    let node = permissions(&Identity::Node("node-1".into()), &subjects, None);
    assert!(!granted(&node.subscribe, "kubus.kubus.node.other.pods"));
    assert!(!granted(&node.publish, "kubus.kubus.node.node-1.pods"));
    let dash = permissions(&Identity::Dashboard, &subjects, Some(&view));
    assert!(!granted(
        &dash.subscribe,
        "kubus.kubus.obj.secrets.default.s"
    ));
    assert!(granted(&dash.subscribe, "kubus.kubus.obj.pods.default.p"));
    let boot = permissions(&Identity::Bootstrap, &subjects, None);
    assert!(!granted(&boot.publish, "kubus.kubus.api.get.pods.default"));
}
