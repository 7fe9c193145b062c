//! Three store peers (separate `kubus node --roles store` processes on a
//! real nats-server). Eight clients read and write 128 keys through the
//! API while the leader is killed with SIGKILL ten times (and restarted on
//! its data directory each time); then all three are killed at once and
//! restarted from disk. Afterwards: the history every client
//! recorded — at least 10,000 operations — is linearizable (a final read of
//! every key is part of it, so an acknowledged write that was lost fails
//! the check), and every peer ends at the same applied index and revision.
//! See issue 3.

#[path = "../../../storage/tests/sim/linearizability.rs"]
mod linearizability;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kubus_api::{Kind, Reason};
use kubus_bus::Client;
use kubus_tests::{kubus_bin, logs_of, nats_server, Proc};
use linearizability::{check, Event, Kind as OpKind};
use serde_json::json;

const PEERS: [u64; 3] = [1, 2, 3];
const CLIENTS: u64 = 8;
const KEYS: u64 = 128;
const KILLS: usize = 10;
const OPS_MIN: u64 = 10_000;
/// Operations one client makes at most (the checker's work stays small).
const OPS_PER_CLIENT_MAX: u64 = 4_000;

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

/// The leader every one of `alive` names, once they all answer and agree.
async fn leader_of(client: &Client, alive: &[u64], timeout: Duration) -> Option<u64> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(peers) = client.store_status(Duration::from_millis(300), 16).await {
            let answered = alive
                .iter()
                .all(|id| peers.iter().any(|p| p.peer_id == *id));
            let leaders: Vec<u64> = peers
                .iter()
                .filter(|p| p.is_leader && alive.contains(&p.peer_id))
                .map(|p| p.peer_id)
                .collect();
            if let ([l], true) = (leaders.as_slice(), answered) {
                if peers.iter().all(|p| p.leader == Some(*l)) {
                    return Some(*l);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A small deterministic generator (xorshift64*), one per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn name(key: u64) -> String {
    format!("k{key}")
}

/// One client operation, recorded for the checker (or left out when it
/// tells nothing: a failed read, a write refused before it was proposed).
async fn operate(
    client: &Client,
    rng: &mut Rng,
    values: &AtomicU64,
    start: Instant,
) -> Option<Event> {
    let key = rng.next() % KEYS;
    let now = || start.elapsed().as_nanos() as u64;
    let invoke_ns = now();
    if rng.next().is_multiple_of(2) {
        let value = values.fetch_add(1, Ordering::Relaxed);
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name(key), "namespace": "default"},
            "data": {"v": value.to_string()}});
        let complete_ns = match client.apply(obj).await {
            Ok(_) => Some(now()),
            // refused before anything was proposed
            Err(e)
                if matches!(
                    e.reason(),
                    Some(Reason::Conflict | Reason::Invalid | Reason::BadRequest)
                ) =>
            {
                return None
            }
            // timed out, or the peer died: it may yet take effect
            Err(_) => None,
        };
        return Some(Event {
            key: name(key),
            kind: OpKind::Write(Some(value)),
            invoke_ns,
            complete_ns,
        });
    }
    let seen = match client
        .get(Kind::ConfigMap, Some("default"), &name(key))
        .await
    {
        Ok(obj) => obj
            .pointer("/data/v")
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse::<u64>().ok()),
        Err(e) if e.reason() == Some(Reason::NotFound) => None,
        Err(_) => return None,
    };
    Some(Event {
        key: name(key),
        kind: OpKind::Read(seen),
        invoke_ns,
        complete_ns: Some(now()),
    })
}

#[test]
fn ten_leader_kills_keep_the_history_linearizable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_nats, url) = nats_server(dir.path());
    let mut peers: BTreeMap<u64, Proc> = PEERS
        .iter()
        .map(|&id| (id, peer(&url, id, dir.path())))
        .collect();
    let logs = |peers: &BTreeMap<u64, Proc>| logs_of(peers.values());
    let (rt, client) = kubus_tests::bus_client_as(&url, None);
    rt.block_on(leader_of(&client, &PEERS, Duration::from_secs(30)))
        .unwrap_or_else(|| panic!("no leader among 3 peers in 30 s\n{}", logs(&peers)));

    let start = Instant::now();
    let events = Arc::new(Mutex::new(Vec::<Event>::new()));
    let ops = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let values = Arc::new(AtomicU64::new(1));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (client, events, ops, stop, values) = (
                client.clone(),
                Arc::clone(&events),
                Arc::clone(&ops),
                Arc::clone(&stop),
                Arc::clone(&values),
            );
            rt.spawn(async move {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (c + 1));
                for _ in 0..OPS_PER_CLIENT_MAX {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if let Some(e) = operate(&client, &mut rng, &values, start).await {
                        events.lock().expect("events").push(e);
                    }
                    ops.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // Ten times: let the load run, kill the leader, wait for a new one,
    // restart the dead peer on its data directory.
    let mut takeovers = Vec::new();
    for kill in 0..KILLS {
        std::thread::sleep(Duration::from_millis(700));
        let leader = rt
            .block_on(leader_of(&client, &PEERS, Duration::from_secs(30)))
            .unwrap_or_else(|| panic!("kill {kill}: no leader\n{}", logs(&peers)));
        let killed_at = Instant::now();
        if let Some(p) = peers.get_mut(&leader) {
            p.kill9();
        }
        let others: Vec<u64> = PEERS.iter().copied().filter(|&id| id != leader).collect();
        rt.block_on(leader_of(&client, &others, Duration::from_secs(30)))
            .unwrap_or_else(|| {
                panic!(
                    "kill {kill}: no new leader after {leader} died\n{}",
                    logs(&peers)
                )
            });
        takeovers.push(killed_at.elapsed());
        peers.insert(leader, peer(&url, leader, dir.path()));
    }
    // At least OPS_MIN operations in all (bounded wait), then stop.
    let deadline = Instant::now() + Duration::from_secs(120);
    while ops.load(Ordering::Relaxed) < OPS_MIN && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        rt.block_on(c).expect("client");
    }
    let total = ops.load(Ordering::Relaxed);
    assert!(
        total >= OPS_MIN,
        "only {total} operations\n{}",
        logs(&peers)
    );

    // The whole cluster dies at once (SIGKILL) and restarts from disk.
    for p in peers.values_mut() {
        p.kill9();
    }
    for &id in &PEERS {
        peers.insert(id, peer(&url, id, dir.path()));
    }
    rt.block_on(leader_of(&client, &PEERS, Duration::from_secs(30)))
        .unwrap_or_else(|| {
            panic!(
                "no leader after the whole cluster restarted\n{}",
                logs(&peers)
            )
        });

    // A last linearizable read of every key closes the history.
    rt.block_on(async {
        for key in 0..KEYS {
            let invoke_ns = start.elapsed().as_nanos() as u64;
            let deadline = Instant::now() + Duration::from_secs(20);
            let seen = loop {
                match client
                    .get(Kind::ConfigMap, Some("default"), &name(key))
                    .await
                {
                    Ok(obj) => {
                        break obj
                            .pointer("/data/v")
                            .and_then(|v| v.as_str())
                            .and_then(|v| v.parse::<u64>().ok())
                    }
                    Err(e) if e.reason() == Some(Reason::NotFound) => break None,
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => panic!("final read of {}: {e}", name(key)),
                }
            };
            events.lock().expect("events").push(Event {
                key: name(key),
                kind: OpKind::Read(seen),
                invoke_ns,
                complete_ns: Some(start.elapsed().as_nanos() as u64),
            });
        }
    });
    let events = events.lock().expect("events").clone();
    if let Err(why) = check(&events) {
        panic!(
            "the history of {} operations is not linearizable: {why}",
            events.len()
        );
    }

    // Every peer ends with the same state.
    let equal = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(status) = client.store_status(Duration::from_millis(300), 16).await {
                let states: Vec<(u64, u64)> = status
                    .iter()
                    .map(|p| (p.applied_index, p.revision))
                    .collect();
                if status.len() == PEERS.len() && states.windows(2).all(|w| w[0] == w[1]) {
                    return Some(states[0]);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    });
    let (applied, revision) =
        equal.unwrap_or_else(|| panic!("the peers did not converge\n{}", logs(&peers)));
    let slowest = takeovers.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{KILLS} leader kills (slowest takeover {slowest:?}) and a whole-cluster kill; {total} operations, {} recorded, linearizable; all peers at index {applied}, revision {revision}",
        events.len()
    );
}
