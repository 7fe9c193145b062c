//! A mesh over a NATS cluster (issue 20): three nats-server processes with
//! routes between them; three store peers, a control mesh node and a
//! worker mesh node (hosting two hollow nodes), separate processes, each
//! given all three URLs. A client streams ConfigMap creates, recording
//! every one the store acknowledged; the nats-server that client is
//! connected to is killed with SIGKILL mid-stream. Afterwards every
//! acknowledged write is there, writes succeeded again after the kill
//! (the client and the peers moved to the other servers), and a pod
//! created after the kill is scheduled and Running on a hollow node.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubus_api::Kind;
use kubus_bus::Client;
use kubus_tests::{kubus_bin, logs_of, nats_cluster, wait_for, Proc};
use serde_json::{json, Value};

/// Creates the writer attempts, at most.
const WRITES_MAX: usize = 600;
/// Acknowledged creates before the kill.
const BEFORE_KILL: usize = 100;
/// Acknowledged creates after the kill that show the mesh carried on.
const AFTER_KILL_MIN: usize = 50;
/// The writer's whole budget.
const WRITE_BUDGET: Duration = Duration::from_secs(180);

fn service_cidr() -> String {
    kubus_tests::mesh_service_cidr()
}

/// A mesh node with `roles` on the bus `urls` (comma-separated).
fn mesh_node(urls: &str, dir: &Path, name: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(kubus_bin());
    cmd.args(["node", "--nats", urls, "--node-name", name])
        .args(["--service-cidr", &service_cidr()])
        .args(args)
        .arg("--data-dir")
        .arg(dir.join(name))
        .env("RUST_LOG", "info");
    Proc::spawn(&mut cmd, &dir.join(format!("{name}.log")))
}

async fn leader(client: &Client) -> Option<u64> {
    let peers = client
        .store_status(Duration::from_millis(300), 16)
        .await
        .ok()?;
    let answered: BTreeSet<u64> = peers.iter().map(|p| p.peer_id).collect();
    if answered.len() < 3 {
        return None;
    }
    let leaders: Vec<u64> = peers
        .iter()
        .filter(|p| p.is_leader)
        .map(|p| p.peer_id)
        .collect();
    match leaders.as_slice() {
        [l] if peers.iter().all(|p| p.leader == Some(*l)) => Some(*l),
        _ => None,
    }
}

#[test]
fn a_killed_nats_server_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut servers, urls) = nats_cluster(dir.path(), 3);
    let all = urls.join(",");
    let mut procs: Vec<Proc> = (1..=3)
        .map(|id| {
            let id = id.to_string();
            mesh_node(
                &all,
                dir.path(),
                &format!("store-{id}"),
                &[
                    "--roles",
                    "store",
                    "--peer-id",
                    &id,
                    "--initial-peers",
                    "1,2,3",
                ],
            )
        })
        .collect();
    procs.push(mesh_node(
        &all,
        dir.path(),
        "control-1",
        &["--roles", "control"],
    ));
    procs.push(mesh_node(
        &all,
        dir.path(),
        "worker-1",
        &[
            "--roles",
            "worker",
            "--runtime",
            "process",
            "--process-network",
            "host",
            "--hollow-nodes",
            "2",
        ],
    ));
    let logs =
        |procs: &[Proc], servers: &[Proc]| format!("{}\n{}", logs_of(procs), logs_of(servers));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = rt
        .block_on(Client::connect(&all, "kubus"))
        .expect("connect to the NATS cluster");
    let started = Instant::now();
    let first = rt.block_on(async {
        while started.elapsed() < Duration::from_secs(60) {
            if let Some(l) = leader(&client).await {
                return Some(l);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    });
    assert!(
        first.is_some(),
        "no store leader in 60 s\n{}",
        logs(&procs, &servers)
    );

    // the stream of writes
    let acked = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (client, acked, failed) = (client.clone(), acked.clone(), failed.clone());
        rt.spawn(async move {
            let start = Instant::now();
            for n in 0..WRITES_MAX {
                if start.elapsed() > WRITE_BUDGET {
                    break;
                }
                let name = format!("w-{n:04}");
                let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": "default"},
                    "data": {"n": n.to_string()}});
                match client.create(cm).await {
                    Ok(_) => acked.lock().expect("acked").push((name, Instant::now())),
                    Err(e) => failed.lock().expect("failed").push(format!("{name}: {e}")),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let ready = wait_for(Duration::from_secs(60), || {
        (acked.lock().expect("acked").len() >= BEFORE_KILL).then_some(())
    });
    assert!(
        ready.is_some(),
        "too few writes before the kill\n{}",
        logs(&procs, &servers)
    );

    // kill the server the writing client is connected to
    let port = client.nats().server_info().port;
    let victim = urls
        .iter()
        .position(|u| u.ends_with(&format!(":{port}")))
        .expect("the client's server is one of the three");
    let killed_at = Instant::now();
    servers[victim].kill9();
    println!("killed nats-server {} ({})", victim + 1, urls[victim]);

    rt.block_on(writer).expect("writer");
    let acked = acked.lock().expect("acked").clone();
    let failed = failed.lock().expect("failed").clone();
    let after_kill = acked.iter().filter(|(_, at)| *at > killed_at).count();
    let first_after = acked
        .iter()
        .find(|(_, at)| *at > killed_at)
        .map(|(_, at)| at.duration_since(killed_at));
    println!(
        "{} writes acknowledged ({after_kill} after the kill, the first {first_after:?} after it), {} failed: {:?}",
        acked.len(),
        failed.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        after_kill >= AFTER_KILL_MIN,
        "only {after_kill} writes acknowledged after the kill\n{}",
        logs(&procs, &servers)
    );
    assert_ne!(
        client.nats().server_info().port,
        port,
        "the client moved to another server"
    );

    // every acknowledged write is there
    let (items, _) = rt
        .block_on(client.list(Kind::ConfigMap, Some("default"), None, None))
        .expect("list ConfigMaps");
    let present: BTreeSet<String> = items
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let lost: Vec<&String> = acked
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !present.contains(*n))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");

    // the control plane and the worker carried on: a new pod runs on a
    // hollow node
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "after-kill", "namespace": "default"},
        "spec": {"nodeSelector": {"kubus.io/hollow": "true"},
                 "containers": [{"name": "c", "image": "busybox"}]}});
    rt.block_on(client.create(pod)).expect("create the pod");
    let running = wait_for(Duration::from_secs(60), || {
        let p: Value = rt
            .block_on(client.get(Kind::Pod, Some("default"), "after-kill"))
            .ok()?;
        (p["status"]["phase"] == "Running").then(|| p["spec"]["nodeName"].clone())
    });
    let node = running.unwrap_or_else(|| {
        panic!(
            "the pod is not Running on a hollow node within 60 s\n{}",
            logs(&procs, &servers)
        )
    });
    assert!(
        node.as_str().is_some_and(|n| n.starts_with("hollow-")),
        "{node}"
    );
    println!(
        "pod Running on {node} {:?} after the kill",
        killed_at.elapsed()
    );
    procs.clear();
}
