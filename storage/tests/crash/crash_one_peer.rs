//! One peer of three dies at a failpoint while the other two go on: its
//! Raft thread panics there (no cleanup, no further write; the process and
//! the other peers live on), it is restarted from its disk, and the three
//! must converge on the same state holding every acknowledged write. (At
//! the snapshot-save failpoint only the leader's snapshot thread dies: the
//! snapshot must be built again.)
//!
//! Needs the `failpoints` feature:
//! `cargo test --workspace --features kubus-storage/failpoints --test crash crash_one_peer`.
//! Failpoints are global to a process, so this binary has one test that
//! visits them in turn.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::sim::workload::{key, write_range, write_with_a_lagging_follower, OnAck};
use crate::sim::{runtime, Cluster, Net};
use kubus_storage::{StoreConfig, FAILPOINTS};

const PEERS: [u64; 3] = [1, 2, 3];

/// Messages of the panics seen in this process (failpoints fire as
/// panics, on a Raft thread or a snapshot thread).
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records every panic's message, then reports it as usual.
fn record_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(info.to_string());
        report(info);
    }));
}

/// Whether `failpoint` has fired (panicked) in this process.
fn fired(failpoint: &str) -> bool {
    let needle = format!("failpoint {failpoint} panic");
    PANICS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .any(|m| m.contains(&needle))
}

fn fsync_on(cfg: &mut StoreConfig) {
    cfg.fsync = true;
}

/// Restarts every peer whose Raft thread has stopped; returns their ids.
fn restart_dead(cluster: &mut Cluster) -> Vec<u64> {
    let dead: Vec<u64> = PEERS
        .into_iter()
        .filter(|p| cluster.stores.get(p).is_some_and(|s| s.status().stopped))
        .collect();
    for &id in &dead {
        cluster.stop(id);
        cluster.open(id, PEERS.to_vec());
    }
    dead
}

/// The workload of `crash.rs` (a follower misses enough to need a
/// snapshot), restarting dead peers between its phases.
fn run(failpoint: &str, actions: &str, seed: u64) {
    let mut cluster = Cluster::start_on(Net::new(seed), &PEERS, fsync_on);
    let rt = runtime();
    cluster.wait_leader(Duration::from_secs(10));
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let ack: OnAck = {
        let acked = Arc::clone(&acked);
        Arc::new(move |i| acked.lock().unwrap_or_else(PoisonError::into_inner).push(i))
    };
    fail::cfg(failpoint, actions).expect("failpoint actions");
    let mut died = BTreeSet::new();
    write_range(&rt, &cluster, 0..160, &ack);
    died.extend(restart_dead(&mut cluster));
    write_with_a_lagging_follower(&rt, &mut cluster, &PEERS, &ack);
    cluster.wait_leader(Duration::from_secs(20));
    // A snapshot the failpoint interrupted is sent again: allow for it.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        died.extend(restart_dead(&mut cluster));
    }
    fail::remove(failpoint);
    let revision = cluster.wait_converged(Duration::from_secs(30));
    let hashes: Vec<_> = PEERS.iter().map(|&p| cluster.state_hash(p)).collect();
    assert!(
        hashes.windows(2).all(|w| w[0] == w[1]),
        "{failpoint}: state differs: {hashes:?}"
    );
    let acked = acked.lock().unwrap_or_else(PoisonError::into_inner).clone();
    for p in PEERS {
        for &i in &acked {
            let kv = cluster.store(p).get(&key(i)).expect("get");
            assert_eq!(
                kv.map(|kv| kv.value),
                Some(i.to_be_bytes().to_vec()),
                "{failpoint}: peer {p} lost acknowledged write {i}"
            );
        }
    }
    assert!(fired(failpoint), "{failpoint} ({actions}) never fired");
    eprintln!(
        "{failpoint} ({actions}): fired; peer(s) {died:?} died and came back; {} acknowledged writes on all 3 peers, revision {revision}",
        acked.len()
    );
}

#[test]
fn a_peer_dying_at_each_failpoint_comes_back_and_catches_up() {
    record_panics();
    for (n, &failpoint) in FAILPOINTS.iter().enumerate() {
        let actions = match failpoint {
            f if f == kubus_storage::failpoints::LOG_COMPACTION => "3*off->1*panic->off",
            f if f.contains("snapshot") => "1*panic->off",
            _ => "150*off->1*panic->off",
        };
        run(failpoint, actions, 200 + n as u64);
    }
}
