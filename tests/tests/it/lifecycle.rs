//! Object lifecycle on the control plane (issue 17): garbage collection by
//! ownerReferences of a Deployment → ReplicaSet → Pods chain with each
//! propagation policy (`kubus delete --cascade=…`), finalizers holding a
//! delete, and namespaces deleted with everything in them.

use std::time::Duration;

use kubus_api::{Kind, ObjectRef, Reason};
use kubus_bus::client::DeleteOptions;
use kubus_tests::{running, wait_for, Cluster};
use serde_json::{json, Value};

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

fn labelled<'a>(items: &'a [Value], app: &str) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|o| o["metadata"]["labels"]["app"] == app)
        .collect()
}

fn named<'a>(items: &'a [Value], name: &str) -> Option<&'a Value> {
    items.iter().find(|o| o["metadata"]["name"] == name)
}

#[test]
fn deployments_are_collected_with_each_propagation_policy() {
    let c = Cluster::start();
    for policy in ["background", "foreground", "orphan"] {
        let name = format!("gc-{policy}");
        let out = c.apply(&deployment(&name));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for(Duration::from_secs(60), || {
            let pods = c.items("pods");
            (running(
                &labelled(&pods, &name)
                    .into_iter()
                    .cloned()
                    .collect::<Vec<_>>(),
            )
            .len()
                == 2)
                .then_some(())
        })
        .unwrap_or_else(|| panic!("{name}: 2 pods not running\n{}", c.log()));
        let out = c.kubus(&[
            "delete",
            "deployment",
            &name,
            &format!("--cascade={policy}"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // Until everything settles, check the order at every look.
        let settled = wait_for(Duration::from_secs(60), || {
            let deployments = c.items("deployments");
            let sets = c.items("replicasets");
            let pods = c.items("pods");
            let d = named(&deployments, &name);
            let rs = labelled(&sets, &name);
            let pods = labelled(&pods, &name);
            match policy {
                // the owner waits for its dependents
                "foreground" => {
                    if d.is_none() {
                        assert!(
                            pods.is_empty(),
                            "{name}: the Deployment went before its pods"
                        );
                        assert!(
                            rs.is_empty(),
                            "{name}: the Deployment went before its ReplicaSet"
                        );
                    } else if let Some(d) = d {
                        assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
                    }
                    (d.is_none() && pods.is_empty()).then_some(())
                }
                // the dependents stay, no longer owned
                "orphan" => {
                    let freed = rs.len() == 1
                        && rs[0]["metadata"]["ownerReferences"]
                            .as_array()
                            .is_none_or(|r| r.is_empty());
                    (d.is_none() && freed && pods.len() == 2).then_some(())
                }
                _ => {
                    assert!(
                        d.is_none(),
                        "{name}: a background delete removes the owner at once"
                    );
                    (rs.is_empty() && pods.is_empty()).then_some(())
                }
            }
        });
        if settled.is_none() {
            let left: Vec<Value> = ["deployments", "replicasets", "pods"]
                .iter()
                .flat_map(|k| c.items(k))
                .filter(|o| {
                    o["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with(&name))
                })
                .map(|o| o["metadata"].clone())
                .collect();
            panic!("{name} did not settle; left: {left:#?}\n{}", c.log());
        }
    }
    // the orphans live on: their ReplicaSet still keeps 2 pods
    std::thread::sleep(Duration::from_secs(2));
    let pods = c.items("pods");
    assert_eq!(
        running(
            &labelled(&pods, "gc-orphan")
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        )
        .len(),
        2
    );
    let sets = c.items("replicasets");
    let orphan_rs = labelled(&sets, "gc-orphan")[0]["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let out = c.kubus(&["delete", "rs", &orphan_rs]);
    assert!(out.status.success());
    wait_for(Duration::from_secs(60), || {
        labelled(&c.items("pods"), "gc-orphan")
            .is_empty()
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the orphaned ReplicaSet's pods were not collected\n{}",
            c.log()
        )
    });
}

#[test]
fn a_finalizer_holds_a_delete_until_it_is_removed() {
    let c = Cluster::start();
    let (rt, client) = c.bus_client();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "namespace": "default", "finalizers": ["example.com/hold"]},
        "data": {"a": "b"}});
    rt.block_on(client.create(cm)).expect("create");
    let r = ObjectRef::new(Kind::ConfigMap, Some("default"), "held");
    rt.block_on(client.delete(&r, None)).expect("delete");
    let held = rt
        .block_on(client.get(Kind::ConfigMap, Some("default"), "held"))
        .expect("still there");
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    // still there a while later
    std::thread::sleep(Duration::from_secs(1));
    assert!(rt
        .block_on(client.get(Kind::ConfigMap, Some("default"), "held"))
        .is_ok());
    rt.block_on(client.patch(&r, json!({"metadata": {"finalizers": []}})))
        .expect("remove the finalizer");
    let gone = rt.block_on(client.get(Kind::ConfigMap, Some("default"), "held"));
    assert_eq!(gone.err().and_then(|e| e.reason()), Some(Reason::NotFound));

    // a delete only if other objects are absent (the garbage collector's
    // proof that an owner it has not seen is gone), checked by the store
    let cm = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}});
    rt.block_on(client.create(cm("dependent"))).expect("create");
    rt.block_on(client.create(cm("owner"))).expect("create");
    let dependent = ObjectRef::new(Kind::ConfigMap, Some("default"), "dependent");
    let owner = ObjectRef::new(Kind::ConfigMap, Some("default"), "owner");
    let only_if_gone = |r: &ObjectRef| DeleteOptions {
        only_if_absent: vec![r.clone()],
        ..DeleteOptions::default()
    };
    let refused = rt.block_on(client.delete_with(&dependent, only_if_gone(&owner)));
    let err = refused.expect_err("the owner exists");
    assert_eq!(err.reason(), Some(Reason::Conflict), "{err}");
    assert!(rt
        .block_on(client.get(Kind::ConfigMap, Some("default"), "dependent"))
        .is_ok());
    rt.block_on(client.delete(&owner, None))
        .expect("delete the owner");
    rt.block_on(client.delete_with(&dependent, only_if_gone(&owner)))
        .expect("the owner is gone");

    // any kind is collected when its owner goes: a Secret owned by a
    // ConfigMap
    let owner = rt.block_on(client.create(cm("config"))).expect("create");
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "owned", "namespace": "default", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "config", "uid": owner["metadata"]["uid"]}]},
        "stringData": {"k": "v"}});
    rt.block_on(client.create(secret)).expect("create");
    rt.block_on(client.delete(
        &ObjectRef::new(Kind::ConfigMap, Some("default"), "config"),
        None,
    ))
    .expect("delete the owner");
    let collected = wait_for(Duration::from_secs(30), || {
        let s = rt.block_on(client.get(Kind::Secret, Some("default"), "owned"));
        matches!(s, Err(ref e) if e.reason() == Some(Reason::NotFound)).then_some(())
    });
    assert!(
        collected.is_some(),
        "the Secret outlived its owner\n{}",
        c.log()
    );
}

#[test]
fn deleting_a_namespace_removes_everything_in_it_then_the_namespace() {
    let c = Cluster::start();
    let (rt, client) = c.bus_client();
    // nothing can be created in a namespace that does not exist
    let nowhere = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "x", "namespace": "nowhere"}});
    let err = rt
        .block_on(client.create(nowhere))
        .expect_err("no such namespace");
    assert_eq!(err.reason(), Some(Reason::NotFound), "{err}");
    assert!(err.to_string().contains("nowhere"), "{err}");

    let out = c.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut objects = Vec::new();
    for i in 0..40 {
        objects.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i}"), "namespace": "team"}, "data": {"i": i.to_string()}}));
        objects.push(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("s-{i}"), "namespace": "team"}, "stringData": {"i": i.to_string()}}));
    }
    for i in 0..15 {
        objects.push(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc-{i}"), "namespace": "team"},
            "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]}}));
        objects.push(
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": format!("lease-{i}"), "namespace": "team"},
            "spec": {"holderIdentity": "someone", "leaseDurationSeconds": 15}}),
        );
    }
    for o in objects {
        rt.block_on(client.create(o)).expect("create in team");
    }
    let d = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "team"},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "busybox",
                    "command": ["sh", "-c", "while true; do sleep 1; done"]}]}}}});
    let d = rt
        .block_on(client.create(d))
        .expect("create the Deployment");
    assert!(d["metadata"]["uid"].is_string());
    let count = |kind: Kind| {
        rt.block_on(client.list(kind, Some("team"), None, None))
            .map_or(0, |(items, _)| items.len())
    };
    wait_for(Duration::from_secs(60), || {
        (count(Kind::Pod) == 5).then_some(())
    })
    .unwrap_or_else(|| panic!("5 pods not created\n{}", c.log()));
    let kinds = [
        Kind::ConfigMap,
        Kind::Secret,
        Kind::Service,
        Kind::Lease,
        Kind::Deployment,
        Kind::ReplicaSet,
        Kind::Pod,
    ];
    let total: usize = kinds.iter().map(|k| count(*k)).sum();
    assert!(total >= 100, "{total} objects");

    let out = c.kubus(&["delete", "namespace", "team"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ns = rt.block_on(client.get(Kind::Namespace, None, "team"));
    if let Ok(ns) = ns {
        assert_eq!(ns["status"]["phase"], "Terminating", "{ns}");
        // creates into it are refused meanwhile
        let late = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "late", "namespace": "team"}});
        let err = rt.block_on(client.create(late)).expect_err("terminating");
        assert_eq!(err.reason(), Some(Reason::Forbidden), "{err}");
        assert!(err.to_string().contains("being terminated"), "{err}");
    }
    let gone = wait_for(Duration::from_secs(90), || {
        let ns = rt.block_on(client.get(Kind::Namespace, None, "team"));
        matches!(ns, Err(ref e) if e.reason() == Some(Reason::NotFound)).then_some(())
    });
    assert!(gone.is_some(), "the namespace was not removed\n{}", c.log());
    for k in kinds {
        assert_eq!(count(k), 0, "{k} left in the deleted namespace");
    }
    // the system namespaces cannot be deleted
    let out = c.kubus(&["delete", "namespace", "kube-system"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not be deleted"));
}
