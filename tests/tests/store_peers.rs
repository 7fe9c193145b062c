//! Three store peers (`kubus node --roles store --peer-id N --initial-peers
//! 1,2,3`, separate processes) on a real nats-server, talking Raft over
//! `kubus.<c>.raft.<peer-id>`: they elect one leader; eight writers create
//! objects through the API while the leader is killed with SIGKILL; a new
//! leader takes over, and every acknowledged write is still there. See
//! issue 3.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubus_api::Kind;
use kubus_bus::protocol::PeerStatus;
use kubus_bus::Client;
use kubus_tests::{kubus_bin, nats_server, Proc};
use serde_json::json;

const PEERS: [u64; 3] = [1, 2, 3];
const WRITERS: usize = 8;
/// Writes each writer attempts, at most.
const WRITES_PER_WRITER: usize = 150;

fn peer(url: &str, id: u64, dir: &Path) -> Proc {
    Proc::spawn(
        Command::new(kubus_bin())
            .args(["node", "--roles", "store", "--nats", url])
            .args(["--peer-id", &id.to_string(), "--initial-peers", "1,2,3"])
            .arg("--data-dir")
            .arg(dir.join(format!("peer-{id}")))
            .env("RUST_LOG", "info"),
        &dir.join(format!("peer-{id}.log")),
    )
}

/// The one leader the answering peers agree on (every one of `expect`
/// answered and names it), if there is one.
fn agreed_leader(peers: &[PeerStatus], expect: &[u64]) -> Option<u64> {
    let answered: BTreeSet<u64> = peers.iter().map(|p| p.peer_id).collect();
    if !expect.iter().all(|id| answered.contains(id)) {
        return None;
    }
    let leaders: Vec<_> = peers.iter().filter(|p| p.is_leader).collect();
    let [l] = leaders.as_slice() else {
        return None;
    };
    peers
        .iter()
        .all(|p| p.leader == Some(l.peer_id))
        .then_some(l.peer_id)
}

async fn wait_leader(client: &Client, expect: &[u64], timeout: Duration) -> Option<u64> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(peers) = client.store_status(Duration::from_millis(300), 16).await {
            if let Some(l) = agreed_leader(&peers, expect) {
                return Some(l);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[test]
fn a_killed_leader_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_nats, url) = nats_server(dir.path());
    let mut peers: Vec<Proc> = PEERS.iter().map(|&id| peer(&url, id, dir.path())).collect();
    let logs = |peers: &[Proc]| {
        peers
            .iter()
            .map(|p| format!("== {}\n{}", p.log.display(), p.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = rt
        .block_on(Client::connect(&url, "kubus"))
        .expect("connect");

    let first = rt
        .block_on(wait_leader(&client, &PEERS, Duration::from_secs(30)))
        .unwrap_or_else(|| panic!("no leader among 3 peers in 30 s\n{}", logs(&peers)));

    // Eight writers; each records the names the store acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, acked) = (client.clone(), Arc::clone(&acked));
            rt.spawn(async move {
                for n in 0..WRITES_PER_WRITER {
                    let name = format!("w{w}-{n}");
                    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": name, "namespace": "default"},
                        "data": {"n": n.to_string()}});
                    if client.create(obj).await.is_ok() {
                        acked.lock().expect("acked").push(name);
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        })
        .collect();

    // Let some writes land, then kill the leader with SIGKILL.
    let before_kill = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && acked.lock().expect("acked").len() < 40 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        acked.lock().expect("acked").len()
    });
    assert!(
        before_kill >= 40,
        "too few writes before the kill\n{}",
        logs(&peers)
    );
    let killed_at = Instant::now();
    let leader_proc = PEERS.iter().position(|&id| id == first).expect("a peer");
    peers[leader_proc].kill9();
    let survivors: Vec<u64> = PEERS.iter().copied().filter(|&id| id != first).collect();
    let second = rt
        .block_on(wait_leader(&client, &survivors, Duration::from_secs(30)))
        .unwrap_or_else(|| panic!("no new leader in 30 s\n{}", logs(&peers)));
    let takeover = killed_at.elapsed();
    assert_ne!(second, first);

    for w in writers {
        rt.block_on(w).expect("writer");
    }
    let acked = acked.lock().expect("acked").clone();
    assert!(
        acked.len() > before_kill,
        "no write acknowledged after the leader was killed\n{}",
        logs(&peers)
    );

    // Every acknowledged write is there (the peer that answers the list
    // may be a follower a moment behind: list again, for a bounded time).
    let missing = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let listed: BTreeSet<String> = match client
                .list(Kind::ConfigMap, Some("default"), None, None)
                .await
            {
                Ok((items, _)) => items
                    .iter()
                    .filter_map(|o| o.pointer("/metadata/name")?.as_str().map(str::to_string))
                    .collect(),
                Err(_) => BTreeSet::new(),
            };
            let missing: Vec<String> = acked
                .iter()
                .filter(|n| !listed.contains(*n))
                .cloned()
                .collect();
            if missing.is_empty() || Instant::now() >= deadline {
                return missing;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost: {:?}\n{}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(20)],
        logs(&peers)
    );
    eprintln!(
        "leader {first} killed after {before_kill} acknowledged writes; peer {second} led {takeover:?} later; {} writes acknowledged, none lost",
        acked.len()
    );
}
