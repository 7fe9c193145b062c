//! The live dashboard (issue 23) in headless Chromium: it loads; a
//! Deployment applied from the CLI appears with its pods without a reload;
//! a deleted pod shows Terminating, then goes; a Pending pod says why; the
//! history view shows the diff between two revisions of the Deployment;
//! the node agents' CPU figures show beside the node and the pods.
//! Screenshots are kept in `test-artifacts/dashboard/` at the workspace's
//! root.

use std::time::{Duration, Instant};

use kubus_tests::browser::{self, Browser};
use kubus_tests::{manifest_dir, wait_for, Cluster};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 6
      containers:
      - name: main
        image: busybox
        # ignores SIGTERM, so a deleted pod stays Terminating for its grace period
        command: ["sh", "-c", "trap '' TERM; sleep 3600"]
"#;

const HUNGRY: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: hungry}
spec:
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
    resources: {requests: {cpu: "500"}}
"#;

/// Key and `data-status` of each pod row whose name starts with `prefix`.
fn pod_rows(b: &Browser, prefix: &str) -> Vec<(String, String)> {
    let rows = b.eval(&format!(
        "return [...document.querySelectorAll(\"tr[data-key^='Pod/default/{prefix}']\")]\
         .map(e => [e.dataset.key, e.dataset.status])"
    ));
    rows.as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let at = |i: usize| r[i].as_str().unwrap_or_default().to_string();
            (at(0), at(1))
        })
        .collect()
}

#[test]
fn the_dashboard_follows_the_cluster_live() {
    if !browser::installed() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromium-driver are not installed (deploy/install-deps.sh installs them)"
        );
        eprintln!("dashboard: skipped (chromium and chromium-driver are not installed)");
        return;
    }
    let c = Cluster::start_with(&["--http-address", "127.0.0.1:0"]);
    let url = format!("http://{}/", c.http_addr());
    let artifacts = manifest_dir().join("../test-artifacts/dashboard");
    let b = Browser::start(c.dir.path(), artifacts);
    b.goto(&url);
    // a mark that a reload would wipe
    b.eval("window.__sameDocument = true;");
    let live = wait_for(Duration::from_secs(30), || {
        let nodes = b.attrs("tr[data-key^='Node/']", "data-key");
        (b.texts("#status") == ["live"] && !nodes.is_empty()).then_some(nodes)
    })
    .unwrap_or_else(|| {
        panic!(
            "the page did not go live: {:?}\n{}",
            b.texts("body"),
            c.log()
        )
    });
    assert_eq!(live.len(), 1, "one node: {live:?}");
    b.screenshot("1-overview");

    // a Deployment from the CLI appears with its pods, without a reload
    b.click("button[data-tab=pods]");
    let applied = Instant::now();
    let out = c.apply(DEPLOYMENT);
    assert!(out.status.success(), "{out:?}");
    let pods = wait_for(Duration::from_secs(60), || {
        let rows = pod_rows(&b, "web-");
        (rows.len() == 2 && rows.iter().all(|(_, s)| s == "Running")).then_some(rows)
    })
    .unwrap_or_else(|| {
        panic!(
            "web's pods did not show Running: {:?}\n{}",
            b.texts("#pod-table tbody tr"),
            c.log()
        )
    });
    let shown_after = applied.elapsed();
    b.click("button[data-tab=workloads]");
    let progress = wait_for(Duration::from_secs(30), || {
        let t = b.texts("tr[data-key='Deployment/default/web']");
        t.first().filter(|t| t.contains("2/2")).cloned()
    })
    .unwrap_or_else(|| {
        panic!(
            "web is not 2/2 on the page: {:?}",
            b.texts("table[data-kind=Deployment]")
        )
    });
    assert!(progress.contains("web"), "{progress}");
    b.screenshot("2-workloads");
    let stats = b.eval("return window.kubusStats");
    let latencies: Vec<f64> = stats["latencies"]
        .as_array()
        .map(|l| l.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    assert!(
        !latencies.is_empty(),
        "the page measured no commit-to-page delay: {stats}"
    );
    println!(
        "dashboard: web's 2 pods Running on the page {:?} after the apply began; commit→page delays (ms) of {} changes: max {:.0}",
        shown_after,
        latencies.len(),
        latencies.iter().cloned().fold(0.0, f64::max)
    );

    // the agents' figures (kubus top's) beside the node and the pods
    b.click("button[data-tab=overview]");
    let used = wait_for(Duration::from_secs(60), || {
        b.texts("tr[data-key^='Node/'] td.cpu-used")
            .into_iter()
            .find(|t| t.ends_with('m'))
    })
    .unwrap_or_else(|| {
        panic!(
            "no CPU figure for the node: {:?}",
            b.texts("tr[data-key^='Node/']")
        )
    });
    println!("dashboard: the node's CPU in use: {used}");
    b.click("button[data-tab=pods]");
    wait_for(Duration::from_secs(60), || {
        let cpu = b.texts("tr[data-key^='Pod/default/web-'] td.cpu");
        (cpu.len() == 2 && cpu.iter().all(|c| c.ends_with('m'))).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no CPU figures for web's pods: {:?}",
            b.texts("#pod-table tbody tr")
        )
    });
    b.screenshot("3-usage");

    // a deleted pod shows Terminating, then goes
    b.click("button[data-tab=pods]");
    let victim = pods[0].0.trim_start_matches("Pod/default/").to_string();
    let out = c.kubus(&["delete", "pod", &victim]);
    assert!(out.status.success(), "{out:?}");
    let key = format!("Pod/default/{victim}");
    wait_for(Duration::from_secs(20), || {
        pod_rows(&b, &victim)
            .iter()
            .any(|(k, s)| *k == key && s == "Terminating")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{victim} never showed Terminating: {:?}", pod_rows(&b, "")));
    b.screenshot("4-terminating");
    wait_for(Duration::from_secs(30), || {
        pod_rows(&b, &victim).is_empty().then_some(())
    })
    .unwrap_or_else(|| panic!("{victim} did not go from the page: {:?}", pod_rows(&b, "")));
    // its replacement runs
    wait_for(Duration::from_secs(30), || {
        let rows = pod_rows(&b, "web-");
        (rows.len() == 2 && rows.iter().all(|(_, s)| s == "Running")).then_some(())
    })
    .unwrap_or_else(|| panic!("no replacement shown: {:?}", pod_rows(&b, "")));

    // a Pending pod says why
    let out = c.apply(HUNGRY);
    assert!(out.status.success(), "{out:?}");
    let why = wait_for(Duration::from_secs(30), || {
        b.texts("tr[data-key='Pod/default/hungry'] td.why")
            .into_iter()
            .find(|w| w.contains("Insufficient cpu"))
    })
    .unwrap_or_else(|| {
        panic!(
            "hungry shows no reason: {:?}",
            b.texts("tr[data-key='Pod/default/hungry']")
        )
    });
    assert!(why.contains("0/1 nodes are available"), "{why}");
    b.screenshot("5-pending");

    // the history view shows the diff between two revisions
    let out = c.kubus(&["set", "image", "deployment/web", "main=busybox:1.36"]);
    assert!(out.status.success(), "{out:?}");
    b.click("button[data-tab=workloads]");
    b.click("tr[data-key='Deployment/default/web'] a.obj");
    b.click("#detail button[data-history]");
    let added = wait_for(Duration::from_secs(30), || {
        let added = b.texts(".revision .diff .add");
        let removed = b.texts(".revision .diff .del");
        (added.iter().any(|l| l.contains("image: busybox:1.36"))
            && removed.iter().any(|l| l.contains("image: busybox")))
        .then_some(added)
    })
    .unwrap_or_else(|| {
        panic!(
            "no image change in the history: {:?}",
            b.texts("#history-out")
        )
    });
    assert!(!added.is_empty());
    let revisions = b.attrs(".revision", "data-revision");
    assert!(revisions.len() >= 2, "{revisions:?}");
    b.screenshot("6-history");

    // all of it on the first document, from one snapshot
    assert_eq!(b.eval("return window.__sameDocument === true"), true);
    assert_eq!(b.eval("return window.kubusStats.snapshots"), 1);
}
