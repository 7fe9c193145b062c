//! Table tests of the scheduler's rules, scores, ledger, preemption and
//! explanations, on ledgers built from node and pod objects.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::explain::{explain, render};
use super::ledger::{feasible_to_find, placement, volume_fit, Ledger, Placement};
use super::preemption::{preempt, Budget, Verdict};
use super::rules::{pod_requests, Candidate, HostPort, Resources};

fn node_object(name: &str, cpu: &str, memory: &str, labels: Value, taints: Value) -> Value {
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    json!({"metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110", "example.com/gpu": "1"},
            "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn plain(name: &str) -> Value {
    node_object(name, "4", "8Gi", json!({}), json!([]))
}

fn pod(name: &str, cpu: &str, memory: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}})
}

fn with_spec(mut p: Value, field: &str, v: Value) -> Value {
    p["spec"][field] = v;
    p
}

fn bound_to(mut p: Value, node: &str) -> Value {
    p["spec"]["nodeName"] = json!(node);
    p
}

fn key(p: &Value) -> String {
    format!(
        "{}/{}",
        p["metadata"]["namespace"].as_str().unwrap_or(""),
        p["metadata"]["name"].as_str().unwrap_or("")
    )
}

fn ledger(nodes: &[Value], pods: &[Value]) -> Ledger {
    let mut l = Ledger::default();
    for n in nodes {
        l.node_changed(n);
    }
    for p in pods {
        l.pod_changed(&key(p), Some(p));
    }
    l
}

fn choose(l: &mut Ledger, p: &Value) -> Result<String, String> {
    l.choose(&key(p), p).map_err(|e| e.message())
}

#[test]
fn resources_selectors_and_least_allocated() {
    let nodes = [
        node_object("big", "4", "8Gi", json!({"disk": "ssd"}), json!([])),
        node_object("small", "1", "1Gi", json!({}), json!([])),
        node_object("busy", "4", "8Gi", json!({}), json!([])),
    ];
    let busy = bound_to(pod("busy", "3500m", "64Mi"), "busy");
    let cases = [
        (pod("a", "100m", "64Mi"), Ok("big")),
        (pod("a", "2", "64Mi"), Ok("big")),
        (
            with_spec(
                pod("a", "100m", "64Mi"),
                "nodeSelector",
                json!({"disk": "ssd"}),
            ),
            Ok("big"),
        ),
        (
            with_spec(
                pod("a", "100m", "2Gi"),
                "nodeSelector",
                json!({"disk": "hdd"}),
            ),
            Err("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."),
        ),
        (
            pod("a", "5", "64Mi"),
            Err("0/3 nodes are available: 3 Insufficient cpu."),
        ),
        (
            pod("a", "2", "9Gi"),
            Err("0/3 nodes are available: 1 Insufficient memory, 2 Insufficient cpu."),
        ),
    ];
    for (p, want) in cases {
        // a fresh ledger per case: a choice counts the pod at once
        let mut l = ledger(&nodes, std::slice::from_ref(&busy));
        // "big" and "busy" have the same capacity; "busy" is used
        assert_eq!(
            choose(&mut l, &p).as_deref(),
            want.map_err(String::from).as_deref()
        );
    }
}

#[test]
fn taints_cordons_ports_and_extended_resources() {
    let tainted = node_object(
        "t",
        "4",
        "8Gi",
        json!({}),
        json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
    );
    let mut cordoned = plain("c");
    cordoned["spec"]["unschedulable"] = json!(true);
    let nodes = [tainted, cordoned];
    let mut l = ledger(&nodes, &[]);
    assert_eq!(
        choose(&mut l, &pod("a", "1", "1Gi")),
        Err(
            "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, \
             1 node(s) were unschedulable."
                .into()
        )
    );
    let tolerant = with_spec(
        pod("b", "1", "1Gi"),
        "tolerations",
        json!([{"key": "dedicated", "operator": "Exists"}]),
    );
    assert_eq!(choose(&mut l, &tolerant), Ok("t".into()));
    let daemon = with_spec(
        pod("c", "1", "1Gi"),
        "tolerations",
        json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]),
    );
    assert_eq!(
        choose(&mut l, &daemon),
        Ok("c".into()),
        "daemons go to cordoned nodes"
    );

    // host ports: one pod per node per port, protocol and address
    let ported = |name: &str, port: i64, ip: &str| {
        with_spec(
            pod(name, "10m", "1Mi"),
            "containers",
            json!([{"name": "c", "ports": [{"containerPort": 80, "hostPort": port, "hostIP": ip}]}]),
        )
    };
    let mut l = ledger(&[plain("n1")], &[bound_to(ported("x", 8080, ""), "n1")]);
    assert_eq!(
        choose(&mut l, &ported("y", 8080, "127.0.0.1")),
        Err("0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.".into())
    );
    assert_eq!(choose(&mut l, &ported("z", 8081, "")), Ok("n1".into()));
    let tcp = |ip: &str, port| HostPort {
        protocol: "TCP".into(),
        ip: ip.into(),
        port,
    };
    assert!(tcp("10.0.0.1", 1).conflicts(&tcp("0.0.0.0", 1)));
    assert!(!tcp("10.0.0.1", 1).conflicts(&tcp("10.0.0.2", 1)));
    let mut udp = tcp("", 1);
    udp.protocol = "UDP".into();
    assert!(!udp.conflicts(&tcp("", 1)));

    // extended resources: each node offers one gpu
    let gpu = |name: &str| {
        with_spec(
            pod(name, "10m", "1Mi"),
            "containers",
            json!([{"name": "c", "resources": {"requests": {"example.com/gpu": "1"}}}]),
        )
    };
    let mut l = ledger(&[plain("n1")], &[]);
    assert_eq!(choose(&mut l, &gpu("g1")), Ok("n1".into()));
    assert_eq!(
        choose(&mut l, &gpu("g2")),
        Err("0/1 nodes are available: 1 Insufficient example.com/gpu.".into())
    );
}

fn anti(p: Value, key: &str) -> Value {
    with_spec(
        p,
        "affinity",
        json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": key}]}}),
    )
}

#[test]
fn required_anti_affinity_places_one_per_node() {
    let nodes = [plain("n1"), plain("n2"), plain("n3")];
    let mut l = ledger(&nodes, &[]);
    let mut placed = BTreeSet::new();
    for i in 0..3 {
        let p = anti(
            pod(&format!("web-{i}"), "10m", "1Mi"),
            "kubernetes.io/hostname",
        );
        placed.insert(choose(&mut l, &p).expect("fits"));
    }
    assert_eq!(placed.len(), 3, "one per node");
    let fourth = anti(pod("web-3", "10m", "1Mi"), "kubernetes.io/hostname");
    assert_eq!(
        choose(&mut l, &fourth),
        Err("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.".into())
    );
    // a pod without the rule is kept away by the others' anti-affinity
    let mut l = ledger(
        &nodes[..1],
        &[bound_to(
            anti(pod("a", "10m", "1Mi"), "kubernetes.io/hostname"),
            "n1",
        )],
    );
    assert_eq!(
        choose(&mut l, &pod("b", "10m", "1Mi")),
        Err(
            "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules."
                .into()
        )
    );
    let mut other = pod("c", "10m", "1Mi");
    other["metadata"]["labels"] = json!({"app": "db"});
    assert_eq!(choose(&mut l, &other), Ok("n1".into()));
}

#[test]
fn required_affinity_follows_the_group_and_zones_spread() {
    let zoned = |name: &str, zone: &str| {
        node_object(
            name,
            "4",
            "8Gi",
            json!({"topology.kubernetes.io/zone": zone}),
            json!([]),
        )
    };
    let nodes = [zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")];
    let follower = |name: &str| {
        with_spec(
            pod(name, "10m", "1Mi"),
            "affinity",
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}),
        )
    };
    // the first of a group that matches its own term goes anywhere
    let mut l = ledger(&nodes, &[]);
    assert!(choose(&mut l, &follower("f0")).is_ok());
    // later ones follow the group's zone
    let mut l = ledger(&nodes, &[bound_to(pod("w", "10m", "1Mi"), "b1")]);
    assert_eq!(choose(&mut l, &follower("f1")), Ok("b1".into()));
    let mut stranger = follower("s");
    stranger["metadata"]["labels"] = json!({"app": "other"});
    let mut l = ledger(&nodes, &[]);
    assert_eq!(
        choose(&mut l, &stranger),
        Err("0/3 nodes are available: 3 node(s) didn't match pod affinity rules.".into())
    );

    // topology spread: maxSkew 1 over zones, DoNotSchedule
    let spread = |name: &str| {
        with_spec(
            pod(name, "10m", "1Mi"),
            "topologySpreadConstraints",
            json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]),
        )
    };
    let mut l = ledger(
        &nodes,
        &[
            bound_to(pod("x", "10m", "1Mi"), "a1"),
            bound_to(pod("y", "10m", "1Mi"), "a2"),
        ],
    );
    // zone a has 2, zone b 0: only b keeps the skew within 1
    assert_eq!(choose(&mut l, &spread("s1")), Ok("b1".into()));
    assert_eq!(choose(&mut l, &spread("s2")), Ok("b1".into()));
    // 2 and 2: anywhere
    assert!(choose(&mut l, &spread("s3")).is_ok());
    // a node without the key is refused, saying so
    let mut l = ledger(&[plain("bare")], &[]);
    assert_eq!(
        choose(&mut l, &spread("s4")),
        Err("0/1 nodes are available: 1 node(s) didn't match pod topology spread constraints (missing required label).".into())
    );
}

#[test]
fn preferences_and_spreading_decide_among_fitting_nodes() {
    let nodes = [
        node_object("ssd", "4", "8Gi", json!({"disk": "ssd"}), json!([])),
        node_object(
            "soft",
            "4",
            "8Gi",
            json!({}),
            json!([{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]),
        ),
        plain("plain"),
    ];
    let prefers = with_spec(
        pod("p", "10m", "1Mi"),
        "affinity",
        json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}),
    );
    let mut l = ledger(&nodes, &[]);
    assert_eq!(choose(&mut l, &prefers), Ok("ssd".into()));
    // PreferNoSchedule: avoided while another node fits
    let mut l = ledger(&nodes[1..], &[]);
    assert_eq!(choose(&mut l, &pod("q", "10m", "1Mi")), Ok("plain".into()));

    // a controller's pods (even without requests) spread over the nodes
    let owned = |name: &str| {
        let mut p = json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": "x"},
            "ownerReferences": [{"uid": "rs-1", "controller": true, "kind": "ReplicaSet", "name": "rs"}]},
            "spec": {"containers": [{"name": "c"}]}});
        p["metadata"]["name"] = json!(name);
        p
    };
    let mut l = ledger(&[plain("n1"), plain("n2"), plain("n3")], &[]);
    let chosen: BTreeSet<String> = (0..3)
        .map(|i| choose(&mut l, &owned(&format!("x{i}"))).expect("fits"))
        .collect();
    assert_eq!(chosen.len(), 3, "{chosen:?}");
}

#[test]
fn ledger_counts_pods_as_they_change() {
    let mut l = Ledger::default();
    let p = |name: &str, node: Option<&str>| {
        let p = pod(name, "100m", "64Mi");
        match node {
            Some(n) => bound_to(p, n),
            None => p,
        }
    };
    // a pod seen before its node is counted when the node appears
    l.pod_changed("d/a", Some(&p("a", Some("n1"))));
    l.node_changed(&plain("n1"));
    l.node_changed(&plain("n2"));
    l.pod_changed("d/b", Some(&p("b", None)));
    assert_eq!(l.node("n1").map(|n| n.requested.cpu_millis), Some(100));
    assert_eq!(l.pending().collect::<Vec<_>>(), vec!["d/b"]);
    let node = l.choose("d/b", &p("b", None)).expect("fits");
    assert_eq!(node, "n2", "least allocated");
    assert_eq!(l.pending().count(), 0);
    // a node update keeps what its pods requested, and says whether the
    // rules would see a change
    assert!(!l.node_changed(&plain("n2")));
    assert_eq!(
        l.node("n2").map(|n| n.requested.memory_bytes),
        Some(64 << 20)
    );
    let mut labelled = plain("n2");
    labelled["metadata"]["labels"]["new"] = json!("1");
    assert!(l.node_changed(&labelled));
    // deleted or finished pods are uncounted
    l.pod_changed("d/a", None);
    let mut done = p("b", Some("n2"));
    done["status"] = json!({"phase": "Succeeded"});
    l.pod_changed("d/b", Some(&done));
    assert_eq!(l.nodes().iter().map(|n| n.pods.len()).sum::<usize>(), 0);
    l.node_deleted("n1");
    assert_eq!(l.nodes().len(), 1);
    assert_eq!(l.node("n2").map(|n| n.name.as_str()), Some("n2"));
    // pending pods wait highest priority first
    let mut low = p("low", None);
    low["spec"]["priority"] = json!(1);
    let mut high = p("high", None);
    high["spec"]["priority"] = json!(100);
    l.pod_changed("d/a-low", Some(&low));
    l.pod_changed("d/z-high", Some(&high));
    assert_eq!(l.pending().collect::<Vec<_>>(), vec!["d/z-high", "d/a-low"]);
}

/// Issue 5: a terminating pod is never bound, and a bound one keeps its
/// node's resources until its containers have stopped and it is finished
/// or gone.
#[test]
fn terminating_pods_are_not_scheduled_but_still_counted() {
    let base = pod("t", "100m", "64Mi");
    let terminating = |node: Option<&str>| {
        let mut p = match node {
            Some(n) => bound_to(base.clone(), n),
            None => base.clone(),
        };
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:30Z");
        p
    };
    let finished = |phase: &str| {
        let mut p = bound_to(base.clone(), "n1");
        p["status"] = json!({"phase": phase});
        p
    };
    let cases: Vec<(&str, Value, Placement)> = vec![
        ("unbound", base.clone(), Placement::Pending),
        ("empty node", bound_to(base.clone(), ""), Placement::Pending),
        (
            "bound",
            bound_to(base.clone(), "n1"),
            Placement::Counted("n1"),
        ),
        (
            "terminating, unbound",
            terminating(None),
            Placement::Ignored,
        ),
        (
            "terminating, bound",
            terminating(Some("n1")),
            Placement::Counted("n1"),
        ),
        ("succeeded", finished("Succeeded"), Placement::Ignored),
        ("failed", finished("Failed"), Placement::Ignored),
    ];
    for (what, pod, want) in &cases {
        assert_eq!(placement(pod), *want, "{what}");
    }
    let mut l = ledger(&[plain("n1")], &[]);
    l.pod_changed("d/t", Some(&terminating(None)));
    assert_eq!(l.pending().count(), 0, "never bound");
    l.pod_changed("d/t", Some(&terminating(Some("n1"))));
    assert_eq!(l.node("n1").map(|n| n.pods.len()), Some(1), "still counted");
    l.pod_changed("d/t", None);
    assert_eq!(l.node("n1").map(|n| n.pods.len()), Some(0));
}

#[test]
fn big_clusters_look_at_part_of_the_nodes() {
    assert_eq!(feasible_to_find(3), 3);
    assert_eq!(feasible_to_find(100), 100);
    assert_eq!(feasible_to_find(1000), 420);
    assert_eq!(feasible_to_find(5000), 500);
    assert_eq!(feasible_to_find(100_000), 5000);
    let nodes: Vec<Value> = (0..1000).map(|i| plain(&format!("n{i:04}"))).collect();
    let l = ledger(&nodes, &[]);
    let p = pod("a", "100m", "64Mi");
    let cand = Candidate::of("d/a", &p);
    let prep = l.prepare(&cand);
    let (first, looked) = l.evaluate(&cand, &prep, None, 0);
    assert_eq!(looked, 420);
    let (second, _) = l.evaluate(&cand, &prep, None, looked);
    assert_ne!(first, second, "the next pod searches elsewhere");
    // none fits: every node is looked at and counted in the message
    let big = pod("b", "5", "1");
    let cand = Candidate::of("d/b", &big);
    let (none, looked) = l.evaluate(&cand, &l.prepare(&cand), None, 7);
    assert_eq!(looked, 1000);
    assert_eq!(
        none.map_err(|e| e.message()),
        Err("0/1000 nodes are available: 1000 Insufficient cpu.".to_string())
    );
}

#[test]
fn preemption_picks_the_fewest_least_important_victims() {
    let prio = |p: Value, n: i64| {
        let mut p = p;
        p["spec"]["priority"] = json!(n);
        p
    };
    let nodes = [
        node_object("n1", "2", "8Gi", json!({}), json!([])),
        node_object("n2", "2", "8Gi", json!({}), json!([])),
    ];
    let pods = [
        bound_to(prio(pod("low-1", "1", "1Mi"), 1), "n1"),
        bound_to(prio(pod("low-2", "1", "1Mi"), 1), "n1"),
        bound_to(prio(pod("mid", "2", "1Mi"), 50), "n2"),
    ];
    let l = ledger(&nodes, &pods);
    let verdict = |p: &Value, budgets: &[Budget]| {
        let cand = Candidate::of(&key(p), p);
        let prep = l.prepare(&cand);
        let (fit, _) = l.evaluate(&cand, &prep, None, 0);
        let fit = fit.expect_err("full");
        preempt(&l, &cand, &prep, &fit, None, budgets)
    };
    let victims = |v: Verdict| match v {
        Verdict::Preempt(p) => (
            p.node,
            p.victims.iter().map(|v| v.key.clone()).collect::<Vec<_>>(),
        ),
        other => panic!("no preemption: {other:?}"),
    };
    // needs 1 cpu: one low pod on n1 goes (not the more important mid)
    let (node, gone) = victims(verdict(&prio(pod("high", "1", "1Mi"), 100), &[]));
    assert_eq!((node.as_str(), gone.len()), ("n1", 1));
    // needs 2: both low pods (priorities 1+1) rather than mid (50)
    let (node, gone) = victims(verdict(&prio(pod("high", "2", "1Mi"), 100), &[]));
    assert_eq!(
        (node.as_str(), gone),
        ("n1", vec!["d/low-1".to_string(), "d/low-2".to_string()])
    );
    // a budget that allows no disruption of the low pods sends it to n2
    let pdb = json!({"metadata": {"name": "b", "namespace": "d"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}}, "status": {"disruptionsAllowed": 0}});
    let (node, gone) = victims(verdict(
        &prio(pod("high", "2", "1Mi"), 100),
        &[Budget::of(&pdb)],
    ));
    assert_eq!(
        (node.as_str(), gone),
        ("n2", vec!["d/mid".to_string()]),
        "one violation (mid) rather than two"
    );
    // nothing of lower priority to remove
    match verdict(&prio(pod("low", "1", "1Mi"), 0), &[]) {
        Verdict::NotHelpful(why) => assert_eq!(
            why,
            "0/2 nodes are available: 2 No preemption victims found for incoming pod."
        ),
        other => panic!("{other:?}"),
    }
    // preemptionPolicy Never
    let mut never = prio(pod("never", "1", "1Mi"), 100);
    never["spec"]["preemptionPolicy"] = json!("Never");
    assert_eq!(
        verdict(&never, &[]),
        Verdict::NotHelpful("not eligible due to preemptionPolicy=Never.".into())
    );
}

#[test]
fn explanations_name_the_rule_and_what_would_fit() {
    let nodes = [
        node_object("small", "1", "1Gi", json!({"disk": "ssd"}), json!([])),
        node_object(
            "tainted",
            "8",
            "16Gi",
            json!({"disk": "ssd"}),
            json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}]),
        ),
        node_object("hdd", "8", "16Gi", json!({"disk": "hdd"}), json!([])),
    ];
    let l = ledger(&nodes, &[]);
    let p = with_spec(
        pod("big", "500m", "2Gi"),
        "nodeSelector",
        json!({"disk": "ssd"}),
    );
    let e = explain(&l, "d/big", &p, None, &[]);
    assert_eq!(
        e.summary,
        "0/3 nodes are available: 1 Insufficient memory, 1 node(s) didn't match Pod's node \
         affinity/selector, 1 node(s) had untolerated taint {gpu: yes}."
    );
    let text = render("d/big", &e);
    for want in [
        "small: does not fit",
        "NodeResourcesFit: memory: the pod requests 2Gi, 1Gi of 1Gi allocatable is free",
        "to fit: 1Gi more memory free on this node, or a smaller request",
        "TaintToleration: taint gpu=yes:NoSchedule is not tolerated",
        "{key: gpu, operator: Equal, value: yes, effect: NoSchedule}",
        "NodeAffinity: nodeSelector disk=ssd (the node has disk=hdd)",
        "Preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
         2 Preemption is not helpful for scheduling.",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // where it fits: every fitting node scored, one chosen
    let small = with_spec(
        pod("s", "100m", "64Mi"),
        "nodeSelector",
        json!({"disk": "ssd"}),
    );
    let e = explain(&l, "d/s", &small, None, &[]);
    assert_eq!(e.summary, "1/3 nodes fit; the best scored is small");
    assert!(e.nodes.iter().any(|v| v.node == "small" && v.chosen));
}

#[test]
fn claims_limit_and_delay_placement() {
    let nodes = [plain("n1"), plain("n2")];
    let l = ledger(&nodes, &[]);
    let p = json!({"metadata": {"name": "web-0", "namespace": "default"}, "spec": {"volumes": [
        {"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}}]}});
    let class = kubus_api::storage::local_path_class();
    let classes = [&class];
    let unbound = json!({"metadata": {"name": "www-web-0", "namespace": "default", "uid": "u"},
        "spec": {"storageClassName": "local-path"}});
    let none = |_: &str| None;
    assert_eq!(
        volume_fit(&p, &none, &none, &classes, l.nodes()),
        Err("persistentvolumeclaim \"www-web-0\" not found".into())
    );
    let c = unbound.clone();
    let fit = volume_fit(&p, &|_: &str| Some(c.clone()), &none, &classes, l.nodes()).expect("fits");
    assert_eq!(fit.select.len(), 1);
    assert_eq!(fit.allowed, None);
    let pv = kubus_api::storage::local_path_volume(&unbound, &class, "n2", "/s");
    let mut bound = unbound.clone();
    bound["spec"]["volumeName"] = json!(kubus_api::storage::provisioned_name(&unbound));
    let fit = volume_fit(
        &p,
        &|_: &str| Some(bound.clone()),
        &|_: &str| Some(pv.clone()),
        &classes,
        l.nodes(),
    )
    .expect("fits");
    assert_eq!(fit.allowed, Some(["n2".to_string()].into_iter().collect()));
    let mut l = l;
    assert_eq!(
        l.choose_within("default/web-0", &p, fit.allowed.as_ref()),
        Ok("n2".into())
    );
    let mut immediate = unbound.clone();
    immediate["spec"]["storageClassName"] = json!("other");
    let other = json!({"metadata": {"name": "other"}, "provisioner": "x", "volumeBindingMode": "Immediate"});
    assert!(volume_fit(
        &p,
        &|_: &str| Some(immediate.clone()),
        &none,
        &[&other],
        l.nodes()
    )
    .is_err());
}

#[test]
fn requests_sum_containers_and_max_init() {
    let p = json!({"spec": {
        "containers": [{"resources": {"requests": {"cpu": "100m", "example.com/gpu": "1"}}},
            {"resources": {"requests": {"cpu": "200m", "memory": "1Ki"}}}],
        "initContainers": [{"resources": {"requests": {"cpu": "1", "example.com/gpu": "2"}}}]}});
    assert_eq!(
        pod_requests(&p),
        Resources {
            cpu_millis: 1000,
            memory_bytes: 1024,
            extended: [("example.com/gpu".to_string(), 2)].into_iter().collect(),
        }
    );
}
