//! Three store peers (`kubus node --roles store --peer-id N --initial-peers
//! 1,2,3`, separate processes) on a real nats-server, talking Raft over
//! `kubus.<c>.raft.<peer-id>`: they elect one leader; eight writers create
//! objects through the API while the leader is killed with SIGKILL; a new
//! leader takes over, and every acknowledged write is still there. Then a
//! fresh, empty peer replaces the dead one (`add-peer`, `remove-peer`) and
//! catches up by a snapshot larger than the NATS payload limit, sent in
//! frames. See issue 3.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubus_api::Kind;
use kubus_bus::protocol::PeerStatus;
use kubus_bus::subject::StoreOp;
use kubus_bus::Client;
use kubus_tests::{kubus_bin, logs_of, nats_server, Proc};
use serde_json::json;

const PEERS: [u64; 3] = [1, 2, 3];
const WRITERS: usize = 8;
/// Writes each writer attempts, at most.
const WRITES_PER_WRITER: usize = 150;
/// Bytes of data in each object: 1,200 of them make a snapshot of about
/// 2.5 MB, more than one NATS payload (1 MiB).
const VALUE_BYTES: usize = 2048;
/// Log entries kept: far fewer than the writes, so a new peer needs a
/// snapshot.
const LOG_ENTRIES_KEPT: &str = "100";

/// Peer `id`: one of the three bootstrapped, or (`join`) a fresh one.
fn peer(url: &str, id: u64, dir: &Path, join: bool) -> Proc {
    let mut cmd = Command::new(kubus_bin());
    cmd.args(["node", "--roles", "store", "--nats", url])
        .args(["--peer-id", &id.to_string()])
        .args(["--log-entries-kept", LOG_ENTRIES_KEPT]);
    if !join {
        cmd.args(["--initial-peers", "1,2,3"]);
    }
    Proc::spawn(
        cmd.arg("--data-dir")
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
    let mut peers: Vec<Proc> = PEERS
        .iter()
        .map(|&id| peer(&url, id, dir.path(), false))
        .collect();
    let logs = |peers: &[Proc]| logs_of(peers);
    let (rt, client) = kubus_tests::bus_client_as(&url, None);

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
                        "data": {"n": n.to_string(), "v": "x".repeat(VALUE_BYTES)}});
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
    // A fresh peer 4 replaces the dead leader and catches up by snapshot.
    peers.push(peer(&url, 4, dir.path(), true));
    let voters = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let leader = wait_leader(&client, &survivors, Duration::from_secs(10)).await;
            let added = match leader {
                Some(l) => client.change_membership(StoreOp::AddPeer, l, 4).await,
                None => Err(kubus_bus::ClientError::Nats("no leader".into())),
            };
            let removed = match (added, leader) {
                (Ok(_), Some(l)) => {
                    client
                        .change_membership(StoreOp::RemovePeer, l, first)
                        .await
                }
                (Err(e), _) => Err(e),
                (Ok(_), None) => Err(kubus_bus::ClientError::Nats("no leader".into())),
            };
            match removed {
                Ok(v) => return Some(v),
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                Err(_) => return None,
            }
        }
    });
    let mut voters =
        voters.unwrap_or_else(|| panic!("cannot replace peer {first}\n{}", logs(&peers)));
    voters.sort_unstable();
    let mut want: Vec<u64> = survivors.clone();
    want.push(4);
    assert_eq!(voters, want);
    let caught_up = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(status) = client.store_status(Duration::from_millis(300), 16).await {
                let by_id = |id| status.iter().find(|p| p.peer_id == id);
                if let (Some(l), Some(new)) = (by_id(second), by_id(4)) {
                    if new.revision == l.revision && new.applied_index >= l.applied_index {
                        return true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    });
    assert!(caught_up, "peer 4 did not catch up\n{}", logs(&peers));
    let log4 = std::fs::read_to_string(dir.path().join("peer-4.log")).unwrap_or_default();
    assert!(
        log4.contains("installed a snapshot"),
        "peer 4 caught up without a snapshot\n{}",
        logs(&peers)
    );
    // The snapshot was larger than a NATS payload: it went in chunks.
    let leader_log =
        std::fs::read_to_string(dir.path().join(format!("peer-{second}.log"))).unwrap_or_default();
    let field = |l: &str, name: &str| -> Option<usize> {
        l.split(&format!("{name}="))
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let (snapshot_bytes, chunks) = leader_log
        .lines()
        .filter(|l| l.contains("a snapshot was sent"))
        .filter_map(|l| Some((field(l, "bytes")?, field(l, "chunks")?)))
        .max()
        .unwrap_or((0, 0));
    assert!(
        snapshot_bytes > 1024 * 1024 && chunks > 4,
        "the snapshot sent ({snapshot_bytes} bytes in {chunks} chunks) fits one NATS payload; the test means to stream one\n{}",
        logs(&peers)
    );
    eprintln!(
        "leader {first} killed after {before_kill} acknowledged writes; peer {second} led {takeover:?} later; {} writes acknowledged, none lost; peer 4 replaced peer {first} by a {snapshot_bytes}-byte snapshot in {chunks} chunks",
        acked.len()
    );
}
