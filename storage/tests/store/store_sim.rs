//! Several store peers over a simulated network (see `sim/mod.rs`): seeded
//! fault schedules (drops, delays, partitions, restarts) under concurrent
//! clients, with invariants checked after every run; forwarding, ReadIndex,
//! partitions, snapshots, membership changes and leader transfer.
//!
//! Replay a failing seed: `KUBUS_SIM_SEED=<seed> cargo test -p
//! kubus-storage --test store simulated_faults`. More seeds:
//! `KUBUS_SIM_SEEDS=200 cargo test -p kubus-storage --test store --
//! --ignored soak`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::sim;
use crate::sim::linearizability::{self, Event, Kind};
use crate::sim::{runtime, Cluster, Faults};
use kubus_storage::{FakeClock, Op, Precondition, Store, StoreConfig, StoreError, Txn, TxnOutcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn defaults(_: &mut StoreConfig) {}

fn put_txn(key: &str, value: u64) -> Txn {
    Txn {
        ops: vec![Op::Put {
            key: key.into(),
            value: value.to_be_bytes().to_vec(),
            expect: Precondition::None,
        }],
    }
}

/// A peer of a cluster of peers 1, 2 and 3 that is not `leader`.
fn a_follower(leader: u64) -> u64 {
    if leader == 1 {
        2
    } else {
        1
    }
}

fn value_of(kv: &kubus_storage::KeyValue) -> u64 {
    let b: [u8; 8] = kv.value.as_slice().try_into().expect("8-byte value");
    u64::from_be_bytes(b)
}

/// Writes `key` through `store` until it is committed. A loaded machine
/// may delay a heartbeat into an election: a write then fails (never in the
/// log, or unknown) and is sent again, at most [`FORWARD_ATTEMPTS`] times,
/// each bounded by [`CLIENT_WAIT`] (puts of one value are idempotent).
async fn put_retrying(store: &Store, key: &str, value: u64) {
    propose_retrying(store, || put_txn(key, value)).await;
}

/// [`put_retrying`] for any idempotent transaction `txn` makes.
async fn propose_retrying(store: &Store, txn: impl Fn() -> Txn) {
    let mut outcome = Err(StoreError::Timeout);
    for _ in 0..FORWARD_ATTEMPTS {
        outcome = tokio::time::timeout(CLIENT_WAIT, store.propose(txn()))
            .await
            .unwrap_or(Err(StoreError::Timeout));
        match &outcome {
            Err(StoreError::NotLeader { .. } | StoreError::Timeout | StoreError::Busy) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ => break,
        }
    }
    match outcome {
        Ok(TxnOutcome::Committed { .. }) => {}
        other => panic!("{other:?} after {FORWARD_ATTEMPTS} attempts"),
    }
}

/// Writes `n` keys `<prefix>/<i>` through `store`, one at a time, each
/// bounded by a timeout.
fn put_many(rt: &tokio::runtime::Runtime, store: &Store, prefix: &str, n: u64) {
    for i in 0..n {
        put_one(rt, store, &format!("{prefix}/{i:03}"), i);
    }
}

/// Writes one key through `store` (see [`put_retrying`]); panics unless it
/// is committed.
fn put_one(rt: &tokio::runtime::Runtime, store: &Store, key: &str, value: u64) {
    rt.block_on(put_retrying(store, key, value));
}

/// Wipes a follower of `leader` (stops it, deletes its disk) and removes
/// it from the voters; returns its id.
fn wipe_a_follower(cluster: &mut Cluster, rt: &tokio::runtime::Runtime, leader: u64) -> u64 {
    let victim = cluster
        .stores
        .keys()
        .copied()
        .filter(|&p| p != leader)
        .min()
        .expect("a follower");
    cluster.wipe(victim);
    let voters = rt
        .block_on(cluster.store(leader).remove_peer(victim))
        .expect("remove");
    assert!(!voters.contains(&victim), "{voters:?}");
    victim
}

/// What one seeded run recorded.
struct Run {
    events: Vec<Event>,
    /// Acknowledged writes: (client, revision), in each client's order.
    acked: Vec<(usize, u64)>,
}

const KEYS: usize = 12;
const CLIENTS: usize = 8;
const PHASE: Duration = Duration::from_millis(250);
/// The longest a simulated client waits for one answer; past it the
/// operation's outcome is unknown.
const CLIENT_WAIT: Duration = Duration::from_secs(5);
/// Attempts at one write in tests that need every write to land.
const FORWARD_ATTEMPTS: usize = 5;
/// A chunk size small enough that a test's snapshot needs many.
const SMALL_CHUNK: usize = 16 * 1024;

/// One seeded run: faults change every phase while clients write and read
/// through random peers; then the network heals and invariants are checked.
fn simulate(seed: u64, phases: usize) {
    let peers: Vec<u64> = if seed.is_multiple_of(2) {
        vec![1, 2, 3, 4, 5]
    } else {
        vec![1, 2, 3]
    };
    simulate_with(seed, &peers, Schedule::Random { phases });
}

/// What happens to the cluster while the clients run.
#[derive(Clone, Copy, Debug)]
enum Schedule {
    /// `phases` phases of seeded random faults.
    Random { phases: usize },
    /// The leader is stopped and restarted, again and again, until it was
    /// `kills` times and the clients completed `ops_min` operations.
    KillLeader { kills: usize, ops_min: u64 },
}

/// Stops peer `id` (out of the clients' reach), then opens it again from
/// its disk.
fn restart(cluster: &mut Cluster, stores: &Mutex<HashMap<u64, Store>>, id: u64, peers: &[u64]) {
    stores.lock().expect("stores").remove(&id);
    cluster.stop(id);
    std::thread::sleep(Duration::from_millis(50));
    cluster.open(id, peers.to_vec());
    stores
        .lock()
        .expect("stores")
        .insert(id, cluster.store(id).clone());
}

/// Most phases of a [`Schedule::KillLeader`] run, whatever its goals.
const KILL_PHASES_MAX: usize = 400;

fn simulate_with(seed: u64, peers: &[u64], schedule: Schedule) {
    let peers = peers.to_vec();
    eprintln!("seed {seed}: {} peers, {schedule:?}", peers.len());
    let mut cluster = Cluster::start(seed, &peers, defaults);
    cluster.wait_leader(Duration::from_secs(10));
    let rt = runtime();
    let start = Instant::now();
    let now_ns = move || start.elapsed().as_nanos() as u64;
    let stores: Arc<Mutex<HashMap<u64, Store>>> = Arc::new(Mutex::new(cluster.stores.clone()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Operations recorded in the history, all clients together.
    let ops = Arc::new(std::sync::atomic::AtomicU64::new(0));

    // Clients.
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (stores, stop, peers) = (Arc::clone(&stores), Arc::clone(&stop), peers.clone());
        let ops = Arc::clone(&ops);
        tasks.push(rt.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed * 1000 + c as u64);
            let mut run = Run {
                events: Vec::new(),
                acked: Vec::new(),
            };
            let mut i = 0u64;
            let mut counted = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                i += 1;
                let recorded = run.events.len();
                if i > 1 {
                    ops.fetch_add(
                        recorded as u64 - counted,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
                counted = recorded as u64;
                let key = format!("/sim/k{:02}", rng.gen_range(0..KEYS));
                let peer = peers[rng.gen_range(0..peers.len())];
                let Some(store) = stores.lock().expect("stores").get(&peer).cloned() else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let invoke_ns = now_ns();
                if rng.gen_bool(0.6) {
                    let value = ((c as u64) << 32) | i;
                    let outcome =
                        tokio::time::timeout(CLIENT_WAIT, store.propose(put_txn(&key, value)))
                            .await
                            .unwrap_or(Err(StoreError::Timeout));
                    match outcome {
                        Ok(TxnOutcome::Committed { revision, .. }) => {
                            run.acked.push((c, revision));
                            run.events.push(Event {
                                key,
                                kind: Kind::Write(Some(value)),
                                invoke_ns,
                                complete_ns: Some(now_ns()),
                            });
                        }
                        Ok(other) => panic!("unexpected outcome {other:?}"),
                        // Refused before reaching the log: it never happened.
                        Err(StoreError::NotLeader { .. } | StoreError::Busy) => {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(StoreError::Timeout | StoreError::Stopped) => run.events.push(Event {
                            key,
                            kind: Kind::Write(Some(value)),
                            invoke_ns,
                            complete_ns: None,
                        }),
                        Err(e) => panic!("propose: {e}"),
                    }
                } else {
                    let read = tokio::time::timeout(CLIENT_WAIT, store.get_linearizable(&key))
                        .await
                        .unwrap_or(Err(StoreError::Timeout));
                    match read {
                        Ok(kv) => run.events.push(Event {
                            key,
                            kind: Kind::Read(kv.as_ref().map(value_of)),
                            invoke_ns,
                            complete_ns: Some(now_ns()),
                        }),
                        Err(StoreError::Timeout | StoreError::Busy | StoreError::Stopped) => {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(e) => panic!("read: {e}"),
                    }
                }
            }
            run
        }));
    }

    // Monitor: one leader per term; each peer's revision never decreases.
    let monitor = {
        let (stores, stop) = (Arc::clone(&stores), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut leaders: BTreeMap<u64, u64> = BTreeMap::new();
            let mut revisions: HashMap<u64, u64> = HashMap::new();
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let snapshot: Vec<Store> =
                    stores.lock().expect("stores").values().cloned().collect();
                for s in snapshot {
                    let st = s.status();
                    if st.is_leader {
                        let l = *leaders.entry(st.term).or_insert(st.peer_id);
                        assert_eq!(l, st.peer_id, "two leaders in term {}", st.term);
                    }
                    let r = revisions.entry(st.peer_id).or_insert(0);
                    assert!(
                        st.revision >= *r,
                        "peer {} revision went from {r} to {}",
                        st.peer_id,
                        st.revision
                    );
                    *r = st.revision;
                }
                std::thread::sleep(Duration::from_millis(3));
            }
            leaders.len()
        })
    };

    // Faults.
    let mut rng = StdRng::seed_from_u64(seed);
    let phases = match schedule {
        Schedule::Random { phases } => phases,
        Schedule::KillLeader { kills, ops_min } => {
            let mut killed = 0;
            for _ in 0..KILL_PHASES_MAX {
                if killed >= kills && ops.load(std::sync::atomic::Ordering::Relaxed) >= ops_min {
                    break;
                }
                let Some(id) = cluster.leader() else {
                    std::thread::sleep(PHASE);
                    continue;
                };
                restart(&mut cluster, &stores, id, &peers);
                killed += 1;
                std::thread::sleep(PHASE);
            }
            assert!(
                killed >= kills,
                "seed {seed}: only {killed} leaders stopped"
            );
            0
        }
    };
    for _ in 0..phases {
        let mut f = Faults::default();
        match rng.gen_range(0..7) {
            0 => {}
            1 => f.drop = rng.gen_range(0.1..0.5),
            2 => f.delay_max = Duration::from_millis(rng.gen_range(5..40)),
            3 => {
                if let Some(l) = cluster.leader() {
                    f.isolated.insert(l);
                }
            }
            4 => {
                for _ in 0..(peers.len() - 1) / 2 {
                    f.isolated.insert(peers[rng.gen_range(0..peers.len())]);
                }
            }
            5 => {
                f.drop = 0.5;
                f.delay_max = Duration::from_millis(20);
            }
            _ => {
                // Restart one peer (clean stop; its disk stays).
                let id = peers[rng.gen_range(0..peers.len())];
                restart(&mut cluster, &stores, id, &peers);
            }
        }
        cluster.net.set(f);
        std::thread::sleep(PHASE);
    }
    cluster.net.set(Faults::default());
    std::thread::sleep(PHASE);
    stop.store(true, std::sync::atomic::Ordering::Release);
    let terms = monitor
        .join()
        .expect("invariant: one leader per term, revisions only increase");
    let mut events = Vec::new();
    let mut acked = Vec::new();
    for t in tasks {
        let run = rt.block_on(t).expect("client");
        events.extend(run.events);
        acked.extend(run.acked);
    }

    // Converge, then: equal state on every peer, equal history where kept.
    let revision = cluster.wait_converged(Duration::from_secs(20));
    let hashes: Vec<(u64, (u64, u64))> = peers
        .iter()
        .map(|&id| (id, cluster.state_hash(id)))
        .collect();
    assert!(
        hashes.windows(2).all(|w| w[0].1 == w[1].1),
        "seed {seed}: state differs between peers: {hashes:?}"
    );
    let from = peers
        .iter()
        .map(|&id| cluster.store(id).status().history_compacted_to)
        .max()
        .unwrap_or(0);
    let histories: Vec<_> = peers
        .iter()
        .map(|&id| cluster.store(id).changes_since(from, 0).expect("history"))
        .collect();
    assert!(
        histories.windows(2).all(|w| w[0] == w[1]),
        "seed {seed}: histories differ after revision {from}"
    );

    // Revisions only increase, per client.
    let mut last: HashMap<usize, u64> = HashMap::new();
    for (c, r) in &acked {
        let l = last.entry(*c).or_insert(0);
        assert!(r > l, "seed {seed}: client {c} got revision {r} after {l}");
        *l = *r;
    }
    // Final reads join the history, then it must be linearizable.
    let leader = cluster.wait_leader(Duration::from_secs(10));
    for k in 0..KEYS {
        let key = format!("/sim/k{k:02}");
        let invoke_ns = now_ns();
        let kv = rt
            .block_on(cluster.store(leader).get_linearizable(&key))
            .expect("final read");
        events.push(Event {
            key,
            kind: Kind::Read(kv.as_ref().map(value_of)),
            invoke_ns,
            complete_ns: Some(now_ns()),
        });
    }
    let writes = acked.len();
    linearizability::check(&events)
        .unwrap_or_else(|e| panic!("seed {seed} (replay: KUBUS_SIM_SEED={seed}): {e}"));
    eprintln!(
        "seed {seed}: {} operations ({writes} acknowledged writes), revision {revision}, {terms} terms with a leader, {} messages delivered",
        events.len(),
        cluster.net.delivered.load(std::sync::atomic::Ordering::Relaxed)
    );
}

fn seeds_from_env() -> Option<Vec<u64>> {
    let one = std::env::var("KUBUS_SIM_SEED").ok()?;
    Some(vec![one.parse().expect("KUBUS_SIM_SEED is a number")])
}

#[test]
fn simulated_faults_keep_invariants() {
    for seed in seeds_from_env().unwrap_or_else(|| vec![1, 2, 3, 4]) {
        simulate(seed, 12);
    }
}

/// Issue 3: 3 peers, 8 clients, at least 10,000 operations while the
/// leader is stopped at least 10 times: nothing acknowledged is lost, the
/// history is linearizable, every peer ends with the same state. (In one
/// process the leader's stop is clean; the crash tests in `crash.rs` cover
/// dying without cleanup.)
#[test]
fn leader_stopped_ten_times_under_eight_clients() {
    simulate_with(
        seeds_from_env().map_or(9, |s| s[0]),
        &[1, 2, 3],
        Schedule::KillLeader {
            kills: 10,
            ops_min: 10_000,
        },
    );
}

/// Many seeds; run by hand (see the file doc).
#[test]
#[ignore = "soak: KUBUS_SIM_SEEDS=200 cargo test -p kubus-storage --test store -- --ignored soak"]
fn soak() {
    let n: u64 = std::env::var("KUBUS_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    for seed in 100..100 + n {
        simulate(seed, 24);
    }
}

#[test]
fn followers_forward_writes_and_serve_linearizable_reads() {
    let cluster = Cluster::start(7, &[1, 2, 3], defaults);
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let follower = a_follower(leader);
    let rt = runtime();
    rt.block_on(async {
        let f = cluster.store(follower);
        for i in 0..200u64 {
            let key = format!("/fwd/{i}");
            put_retrying(f, &key, i).await;
            // Read-your-writes on the follower, through ReadIndex.
            let kv = f
                .get_linearizable(&key)
                .await
                .expect("read")
                .expect("present");
            assert_eq!(value_of(&kv), i);
        }
        // A write on the leader is visible to a linearizable read on the
        // follower at once.
        cluster
            .store(leader)
            .propose(put_txn("/fwd/x", 9))
            .await
            .expect("write");
        let kv = f
            .get_linearizable("/fwd/x")
            .await
            .expect("read")
            .expect("present");
        assert_eq!(value_of(&kv), 9);
    });
}

/// The leader skips raft-rs' commit broadcast on every ack and tells its
/// followers of a new commit index once per turn of its loop: a follower
/// must still hear of it at once, not with the next heartbeat. Heartbeats
/// here come every second; 20 writes through a follower, each answered
/// only once the follower applied it, would take ~10 s if it waited for
/// them.
#[test]
fn followers_hear_of_a_commit_before_the_next_heartbeat() {
    fn slow_heartbeats(cfg: &mut StoreConfig) {
        cfg.heartbeat_ticks = 100;
        cfg.election_ticks = 200;
    }
    const WRITES: u64 = 20;
    const ALL_WITHIN: Duration = Duration::from_secs(5);
    let cluster = Cluster::start(11, &[1, 2, 3], slow_heartbeats);
    let leader = cluster.wait_leader(Duration::from_secs(20));
    let follower = a_follower(leader);
    let rt = runtime();
    let took = rt.block_on(async {
        let f = cluster.store(follower);
        // The first write may race the follower learning who leads.
        put_retrying(f, "/commit/warmup", 0).await;
        let start = Instant::now();
        for i in 0..WRITES {
            f.propose(put_txn(&format!("/commit/{i}"), i))
                .await
                .expect("a write through the follower");
        }
        start.elapsed()
    });
    assert!(
        took < ALL_WITHIN,
        "{WRITES} writes through a follower took {took:?}: it waited for heartbeats to learn the commit index"
    );
}

/// 5 peers; the leader and one follower are cut off together: 40 writes
/// sent to that minority, concurrently, get zero acknowledgements, and none
/// of them is in the state the majority goes on with.
#[test]
fn a_minority_with_the_leader_acknowledges_nothing() {
    let cluster = Cluster::start(13, &[1, 2, 3, 4, 5], defaults);
    let rt = runtime();
    let old = cluster.wait_leader(Duration::from_secs(10));
    let buddy = (1..=5).find(|&p| p != old).expect("a follower");
    cluster.net.set(Faults {
        isolated: [old, buddy].into_iter().collect(),
        ..Faults::default()
    });
    let tasks: Vec<_> = (0..40u64)
        .map(|i| {
            let store = cluster.store(if i % 2 == 0 { old } else { buddy }).clone();
            rt.spawn(async move {
                let put = store.propose(put_txn(&format!("/minority/{i}"), i));
                tokio::time::timeout(Duration::from_secs(2), put).await
            })
        })
        .collect();
    let mut acked = 0;
    for t in tasks {
        if let Ok(Ok(TxnOutcome::Committed { .. })) = rt.block_on(t).expect("client") {
            acked += 1;
        }
    }
    assert_eq!(acked, 0, "a minority acknowledged {acked} writes");
    let majority = (1..=5).find(|p| ![old, buddy].contains(p)).expect("peer");
    put_one(&rt, cluster.store(majority), "/majority", 1);
    cluster.net.set(Faults::default());
    cluster.wait_converged(Duration::from_secs(20));
    for p in 1..=5 {
        let r = cluster.store(p).range("/minority/", 0).expect("range");
        assert!(r.items.is_empty(), "peer {p} kept minority writes: {r:?}");
        assert!(cluster.store(p).get("/majority").expect("get").is_some());
    }
}

#[test]
fn isolated_leader_cannot_commit_and_a_new_leader_is_elected() {
    let cluster = Cluster::start(11, &[1, 2, 3], defaults);
    let old = cluster.wait_leader(Duration::from_secs(10));
    let rt = runtime();
    let mut f = Faults::default();
    f.isolated.insert(old);
    cluster.net.set(f);
    let cut = Instant::now();
    let minority = rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(2),
            cluster.store(old).propose(put_txn("/p/lost", 1)),
        )
        .await
    });
    // Not acknowledged, and not left hanging either: the store gives up
    // after its request timeout (1 s here) with an unknown outcome.
    assert!(
        matches!(
            minority,
            Ok(Err(StoreError::Timeout | StoreError::NotLeader { .. }))
        ),
        "an isolated leader answered {minority:?}"
    );
    // Election timeout is randomised in [election, 2 × election) ticks.
    let cfg = sim::sim_config(".".into(), 1, vec![1]);
    let election = Duration::from_millis(cfg.tick_interval_ms * cfg.election_ticks as u64 * 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    let new = loop {
        let st: Vec<_> = [1, 2, 3]
            .into_iter()
            .filter(|&p| p != old)
            .map(|p| cluster.store(p).status())
            .collect();
        if let Some(s) = st.iter().find(|s| s.is_leader) {
            break s.peer_id;
        }
        assert!(Instant::now() < deadline, "no new leader");
        std::thread::sleep(Duration::from_millis(5));
    };
    // Measured from the cut, which includes the 2 s spent on the minority
    // write above; the majority's own figure is what its peers report.
    eprintln!(
        "new leader {new} (old {old}); election timeout up to {election:?}; {:?} since the cut",
        cut.elapsed()
    );
    let majority = [1, 2, 3].into_iter().find(|&p| p != old).expect("peer");
    put_one(&rt, cluster.store(majority), "/p/ok", 2);
    cluster.net.set(Faults::default());
    cluster.wait_converged(Duration::from_secs(10));
    for p in [1, 2, 3] {
        assert!(
            cluster.store(p).get("/p/lost").expect("get").is_none(),
            "the minority write was not kept"
        );
    }
}

#[test]
fn new_leader_within_three_election_timeouts() {
    let cluster = Cluster::start(12, &[1, 2, 3], defaults);
    let old = cluster.wait_leader(Duration::from_secs(10));
    let mut f = Faults::default();
    f.isolated.insert(old);
    cluster.net.set(f);
    let cut = Instant::now();
    let cfg = sim::sim_config(".".into(), 1, vec![1]);
    let election = Duration::from_millis(cfg.tick_interval_ms * cfg.election_ticks as u64 * 2);
    let deadline = cut + Duration::from_secs(10);
    loop {
        let leader = [1, 2, 3]
            .into_iter()
            .filter(|&p| p != old)
            .find(|&p| cluster.store(p).is_leader());
        if leader.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "no new leader");
        std::thread::sleep(Duration::from_millis(2));
    }
    let took = cut.elapsed();
    eprintln!("new leader after {took:?} (election timeout up to {election:?})");
    assert!(
        took <= election * 3,
        "new leader after {took:?}, more than 3 × {election:?}"
    );
}

/// Each peer compacts its log up to what every peer has (the leader's word
/// in each entry), not only to `log_entries_kept` behind, so that entries
/// die young (at 2 KiB, most in RocksDB's memtable, never written to a
/// table); a peer that is away holds the others' compaction back, and
/// coming back it catches up from the log, not from a snapshot.
#[test]
fn logs_are_compacted_to_what_every_peer_has() {
    fn keep_many(cfg: &mut StoreConfig) {
        cfg.log_entries_kept = 10_000;
    }
    let mut cluster = Cluster::start(61, &[1, 2, 3], keep_many);
    let rt = runtime();
    let leader = cluster.wait_leader(Duration::from_secs(10));
    put_many(&rt, cluster.store(leader), "/everywhere", 200);
    cluster.wait_converged(Duration::from_secs(20));
    // The leader's word reaches a peer with the entries after it: one more
    // round of writes lets every peer apply a word that covers the above.
    put_many(&rt, cluster.store(leader), "/everywhere/again", 30);
    cluster.wait_converged(Duration::from_secs(20));
    for id in [1, 2, 3] {
        let st = cluster.store(id).status();
        assert!(
            st.first_log_index > 150,
            "peer {id} kept its log although every peer has it: {st:?}"
        );
    }

    let away = a_follower(leader);
    let away_has = cluster.store(away).status().last_log_index;
    cluster.stop(away);
    put_many(&rt, cluster.store(leader), "/while-away", 200);
    let other = 6 - leader - away;
    for id in [leader, other] {
        let st = cluster.store(id).status();
        assert!(
            st.first_log_index <= away_has + 1,
            "peer {id} compacted entries peer {away} (through {away_has}) lacks: {st:?}"
        );
    }
    cluster.open(away, vec![1, 2, 3]);
    cluster.wait_converged(Duration::from_secs(20));
    assert_eq!(cluster.state_hash(away), cluster.state_hash(leader));
    assert_eq!(
        cluster.store(away).status().history_compacted_to,
        0,
        "peer {away} caught up from the log, without a snapshot"
    );
}

/// A peer keeps the objects it applied last in memory (`get` reads them
/// first); a snapshot that replaces its state must not leave one behind.
#[test]
fn a_snapshot_replaces_the_objects_a_peer_kept_in_memory() {
    let cluster = Cluster::start(71, &[1, 2, 3], defaults);
    let rt = runtime();
    let leader = cluster.wait_leader(Duration::from_secs(10));
    // Written twice: a peer keeps objects that were updated.
    for value in [0, 1] {
        put_one(&rt, cluster.store(leader), "/cached/gone", value);
        put_one(&rt, cluster.store(leader), "/cached/changed", value);
    }
    cluster.wait_converged(Duration::from_secs(20));
    let away = a_follower(leader);
    let read = |key: &str| cluster.store(away).get(key).expect("get");
    assert_eq!(read("/cached/changed").as_ref().map(value_of), Some(1));
    assert!(read("/cached/gone").is_some());

    cluster.net.set(Faults {
        isolated: [away].into_iter().collect(),
        ..Faults::default()
    });
    rt.block_on(async {
        let txn = || Txn {
            ops: vec![Op::Delete {
                key: "/cached/gone".into(),
                expect: Precondition::None,
            }],
        };
        propose_retrying(cluster.store(leader), txn).await;
    });
    put_one(&rt, cluster.store(leader), "/cached/changed", 2);
    // More than the sim's kept log (50): the peer away needs a snapshot.
    put_many(&rt, cluster.store(leader), "/cached/filler", 120);
    cluster.net.set(Faults::default());
    cluster.wait_converged(Duration::from_secs(20));
    assert!(
        cluster.store(away).status().history_compacted_to > 0,
        "peer {away} was caught up by a snapshot"
    );
    assert_eq!(read("/cached/gone"), None);
    assert_eq!(read("/cached/changed").as_ref().map(value_of), Some(2));
}

#[test]
fn lagging_and_new_peers_catch_up_by_snapshot_and_membership_changes() {
    // Small chunks: the snapshot (300 values of 2 KiB) crosses in dozens.
    let mut cluster =
        Cluster::start_on(sim::Net::with_chunks(21, SMALL_CHUNK), &[1, 2, 3], defaults);
    let rt = runtime();
    let leader = cluster.wait_leader(Duration::from_secs(10));
    // A peer that misses more than the retained log needs a snapshot.
    let lagging = a_follower(leader);
    cluster.stop(lagging);
    rt.block_on(async {
        for i in 0..300u64 {
            let txn = || Txn {
                ops: vec![Op::Put {
                    key: format!("/snap/{i:03}"),
                    value: vec![b's'; 2048],
                    expect: Precondition::None,
                }],
            };
            propose_retrying(cluster.store(leader), txn).await;
        }
    });
    let st = cluster.store(leader).status();
    assert!(st.first_log_index > 200, "log compacted: {st:?}");
    cluster.open(lagging, vec![1, 2, 3]);
    cluster.wait_converged(Duration::from_secs(20));
    assert_eq!(cluster.state_hash(lagging), cluster.state_hash(leader));
    assert!(
        cluster.store(lagging).status().history_compacted_to > 0,
        "the lagging peer was caught up by a snapshot"
    );
    let chunked = cluster
        .net
        .chunked_delivered
        .load(std::sync::atomic::Ordering::Relaxed);
    let largest = cluster
        .net
        .packet_bytes_largest
        .load(std::sync::atomic::Ordering::Relaxed);
    let sent = cluster.store(leader).snapshot_stats();
    eprintln!(
        "snapshot: {chunked} chunked messages delivered; largest packet {largest} bytes; {sent:?}"
    );
    assert!(sent.chunks >= 1, "the snapshot was pulled in chunks");
    assert!(largest <= SMALL_CHUNK, "a packet of {largest} bytes");

    // Replace a dead peer with a fresh one: remove a wiped follower, add 4.
    wipe_a_follower(&mut cluster, &rt, leader);
    cluster.open(4, Vec::new());
    let voters = rt.block_on(cluster.store(leader).add_peer(4)).expect("add");
    assert!(voters.contains(&4), "{voters:?}");
    put_many(&rt, cluster.store(leader), "/after", 20);
    cluster.wait_converged(Duration::from_secs(20));
    assert_eq!(cluster.state_hash(4), cluster.state_hash(leader));
    let st = cluster.store(leader).status();
    assert!(st.progress.iter().any(|p| p.peer_id == 4), "{st:?}");

    // Leader transfer to the new peer.
    cluster.store(leader).transfer_leader(4).expect("transfer");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.store(4).is_leader() {
        assert!(Instant::now() < deadline, "leadership did not move to 4");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The old leader now forwards.
    put_one(&rt, cluster.store(leader), "/after/transfer", 1);
    // Restart everything from disk.
    let ids: Vec<u64> = cluster.stores.keys().copied().collect();
    let before = cluster.wait_converged(Duration::from_secs(10));
    for &id in &ids {
        cluster.stop(id);
    }
    for &id in &ids {
        cluster.open(id, Vec::new());
    }
    cluster.wait_leader(Duration::from_secs(10));
    assert_eq!(cluster.wait_converged(Duration::from_secs(10)), before);
}

#[test]
fn heavy_drop_and_delay_then_heal_converges() {
    let cluster = Cluster::start(31, &[1, 2, 3, 4, 5], defaults);
    cluster.wait_leader(Duration::from_secs(10));
    let rt = runtime();
    cluster.net.set(Faults {
        drop: 0.5,
        delay_max: Duration::from_millis(30),
        ..Faults::default()
    });
    // Writes by 8 clients through every peer for 3 s while half the
    // messages are lost; some fail or time out, none may be lost once
    // acknowledged.
    let until = Instant::now() + Duration::from_secs(3);
    let tasks: Vec<_> = (0..CLIENTS as u64)
        .map(|c| {
            let store = cluster.store(1 + c % 5).clone();
            rt.spawn(async move {
                let mut acked = Vec::new();
                for i in 0..10_000u64 {
                    if Instant::now() >= until {
                        break;
                    }
                    let key = format!("/heal/{c}/{i}");
                    let put = store.propose(put_txn(&key, i));
                    if let Ok(Ok(TxnOutcome::Committed { .. })) =
                        tokio::time::timeout(CLIENT_WAIT, put).await
                    {
                        acked.push((key, i));
                    }
                }
                acked
            })
        })
        .collect();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(rt.block_on(t).expect("client"));
    }
    cluster.net.set(Faults::default());
    let revision = cluster.wait_converged(Duration::from_secs(20));
    let hashes: Vec<_> = (1..=5).map(|p| cluster.state_hash(p)).collect();
    eprintln!(
        "50% drop, up to 30 ms delay for 3 s: {} writes acknowledged; converged at revision {revision}",
        acked.len()
    );
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    assert!(!acked.is_empty(), "nothing committed under 50% drop");
    for (key, value) in &acked {
        let kv = cluster
            .store(1)
            .get(key)
            .expect("get")
            .expect("acknowledged write kept");
        assert_eq!(value_of(&kv), *value);
    }
}

#[test]
fn wiped_peer_rejoins_under_its_id_by_snapshot() {
    let mut cluster = Cluster::start(41, &[1, 2, 3], defaults);
    let rt = runtime();
    let leader = cluster.wait_leader(Duration::from_secs(10));
    put_many(&rt, cluster.store(leader), "/before", 200);
    let victim = wipe_a_follower(&mut cluster, &rt, leader);
    put_many(&rt, cluster.store(leader), "/between", 100);
    // The same id, an empty disk: it joins and is sent a snapshot.
    cluster.open(victim, Vec::new());
    let voters = rt
        .block_on(cluster.store(leader).add_peer(victim))
        .expect("add");
    assert!(voters.contains(&victim), "{voters:?}");
    put_many(&rt, cluster.store(leader), "/after", 10);
    cluster.wait_converged(Duration::from_secs(20));
    assert_eq!(cluster.state_hash(victim), cluster.state_hash(leader));
    let st = cluster.store(victim).status();
    assert!(st.history_compacted_to > 0, "caught up by snapshot: {st:?}");
    assert_eq!(
        cluster
            .store(victim)
            .get("/before/000")
            .expect("get")
            .map(|kv| value_of(&kv)),
        Some(0)
    );
    // Issue 3: the snapshot carries no history, so the restored peer lists
    // at its snapshot's revision and later exactly as the leader does, and
    // answers `Compacted` (at that revision) for anything older.
    let from = st.history_compacted_to;
    let head = cluster.store(leader).revision();
    for at in (0..from).step_by(37).chain([from - 1]) {
        match cluster.store(victim).range_at("", "", 0, at) {
            Err(StoreError::Compacted { compacted_to }) => assert_eq!(compacted_to, from),
            other => panic!("at {at} before the snapshot's {from}: {other:?}"),
        }
        assert!(cluster.store(leader).range_at("", "", 0, at).is_ok());
    }
    for at in from..=head {
        assert_eq!(
            cluster
                .store(victim)
                .range_at("", "", 0, at)
                .expect("restored"),
            cluster
                .store(leader)
                .range_at("", "", 0, at)
                .expect("leader"),
            "at {at}"
        );
    }
}

/// Each peer's own fake clock, by peer id (a `fn` configuration cannot
/// capture one).
static CLOCKS: LazyLock<[FakeClock; 4]> = LazyLock::new(Default::default);

fn own_clocks(cfg: &mut StoreConfig) {
    let id = usize::try_from(cfg.peer_id).expect("small id");
    cfg.clock = Arc::new(CLOCKS[id].clone());
    cfg.history_retention_age = Duration::from_secs(10);
}

/// Issue 3, retention by age is deterministic: the leader stamps every
/// entry (a follower's forwarded proposals too) with its clock, and every
/// peer prunes by those stamps as it applies. The followers' clocks stand
/// at 0 here, so they could prune nothing by their own time: when they
/// prune, it is by the leader's stamps.
#[test]
fn every_peer_prunes_history_by_the_leaders_stamps() {
    const T0: u64 = 1_700_000_000_000;
    let rt = runtime();
    // A leader change mid-test would stamp with a stopped clock: try again
    // on a fresh cluster (bounded).
    for attempt in 0..3 {
        for c in CLOCKS.iter() {
            c.set(0);
        }
        let cluster = Cluster::start(61 + attempt, &[1, 2, 3], own_clocks);
        let leader = cluster.wait_leader(Duration::from_secs(10));
        let follower = a_follower(leader);
        CLOCKS[usize::try_from(leader).expect("id")].set(T0);
        put_one(&rt, cluster.store(follower), "/s/1", 1);
        put_one(&rt, cluster.store(follower), "/s/2", 2);
        CLOCKS[usize::try_from(leader).expect("id")].set(T0 + 10_001);
        put_one(&rt, cluster.store(follower), "/s/3", 3);
        let head = cluster.wait_converged(Duration::from_secs(20));
        if cluster.leader() != Some(leader) || head != 3 {
            eprintln!("attempt {attempt}: leadership moved; again");
            continue;
        }
        for id in 1..=3 {
            let st = cluster.store(id).status();
            assert_eq!(st.history_compacted_to, 2, "peer {id}: {st:?}");
            assert!(matches!(
                cluster.store(id).range_at("/s/", "/s/", 0, 1),
                Err(StoreError::Compacted { compacted_to: 2 })
            ));
            assert_eq!(
                cluster
                    .store(id)
                    .range_at("/s/", "/s/", 0, 2)
                    .expect("kept")
                    .items
                    .len(),
                2
            );
        }
        return;
    }
    panic!("the leader changed in every attempt");
}

/// A peer that joins a young cluster, whose log was never compacted, must
/// still start from a snapshot: the log lacks the bootstrap configuration,
/// so replaying it would leave the new peer believing it is alone.
#[test]
fn peer_joining_a_young_cluster_starts_from_a_snapshot() {
    let mut cluster = Cluster::start(51, &[1, 2, 3], defaults);
    let rt = runtime();
    let leader = cluster.wait_leader(Duration::from_secs(10));
    put_many(&rt, cluster.store(leader), "/young", 5);
    assert_eq!(
        cluster.store(leader).status().first_log_index,
        6,
        "not compacted"
    );
    cluster.open(4, Vec::new());
    let voters = rt.block_on(cluster.store(leader).add_peer(4)).expect("add");
    assert_eq!(voters, vec![1, 2, 3, 4]);
    put_many(&rt, cluster.store(leader), "/young/after", 5);
    cluster.wait_converged(Duration::from_secs(20));
    let st = cluster.store(4).status();
    assert_eq!(st.voters, vec![1, 2, 3, 4], "{st:?}");
    assert!(!st.is_leader, "{st:?}");
    assert!(
        st.history_compacted_to > 0,
        "started from a snapshot: {st:?}"
    );
    assert_eq!(cluster.state_hash(4), cluster.state_hash(leader));
    // And it keeps what it has across a restart.
    cluster.stop(4);
    cluster.open(4, Vec::new());
    cluster.wait_converged(Duration::from_secs(20));
    assert_eq!(cluster.store(4).status().voters, vec![1, 2, 3, 4]);
}

fn fsync_on(cfg: &mut StoreConfig) {
    cfg.fsync = true;
    // 64 synced writes in flight on a loaded 2-core machine: give each
    // more than the simulation's usual second.
    cfg.request_timeout_ms = 10_000;
}

/// Group commit: with 64 proposals in flight and fsync on, the leader and
/// the followers each write (and fsync) many entries at a time.
#[test]
fn group_commit_writes_many_entries_per_fsync() {
    const IN_FLIGHT: u64 = 64;
    const PER_WRITER: u64 = 40;
    let cluster = Cluster::start(61, &[1, 2, 3], fsync_on);
    let rt = runtime();
    let leader = cluster.wait_leader(Duration::from_secs(10));
    let before: Vec<_> = [1, 2, 3]
        .iter()
        .map(|&p| cluster.store(p).persist_stats())
        .collect();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|w| {
            let store = cluster.store(leader).clone();
            rt.spawn(async move {
                for i in 0..PER_WRITER {
                    put_retrying(&store, &format!("/gc/{w}/{i}"), i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        rt.block_on(t).expect("writer");
    }
    cluster.wait_converged(Duration::from_secs(20));
    // At least the leader wrote every entry itself (a follower that fell
    // behind on a loaded machine may have been sent a snapshot instead).
    let mut grouped = Vec::new();
    for (p, before) in [1, 2, 3].into_iter().zip(before) {
        let after = cluster.store(p).persist_stats();
        let writes = after.log_writes - before.log_writes;
        let syncs = after.log_syncs - before.log_syncs;
        let entries = after.log_entries - before.log_entries;
        eprintln!(
            "peer {p}{}: {entries} entries in {writes} log writes ({syncs} fsynced): {:.1} entries per fsync",
            if p == leader { " (leader)" } else { "" },
            entries as f64 / syncs.max(1) as f64
        );
        assert_eq!(syncs, writes, "fsync on: every log write is synced");
        if entries >= IN_FLIGHT * PER_WRITER && entries > 2 * syncs {
            grouped.push(p);
        }
    }
    assert!(
        !grouped.is_empty(),
        "no peer wrote all {} entries at more than 2 per fsync",
        IN_FLIGHT * PER_WRITER
    );
}

/// Issue 20: a snapshot is streamed. A peer added after the log was
/// compacted pulls the leader's state in many chunks of the configured
/// size (the Raft message carries only a descriptor), and ends with the
/// leader's objects and revision.
#[test]
fn a_joining_peer_pulls_its_snapshot_in_bounded_chunks() {
    const CHUNK: usize = 8 * 1024;
    fn small_chunks(cfg: &mut StoreConfig) {
        cfg.snapshot_chunk_bytes = CHUNK;
    }
    let mut cluster = Cluster::start(31, &[1, 2, 3], small_chunks);
    let rt = runtime();
    let leader = cluster.wait_leader(Duration::from_secs(10));
    rt.block_on(async {
        for i in 0..400u64 {
            let txn = || Txn {
                ops: vec![Op::Put {
                    key: format!("/stream/{i:04}"),
                    value: vec![(i % 251) as u8; 1024],
                    expect: Precondition::None,
                }],
            };
            propose_retrying(cluster.store(leader), txn).await;
        }
    });
    let st = cluster.store(leader).status();
    assert!(st.first_log_index > 300, "log compacted: {st:?}");
    cluster.open(4, Vec::new());
    let voters = rt.block_on(cluster.store(leader).add_peer(4)).expect("add");
    assert!(voters.contains(&4), "{voters:?}");
    cluster.wait_converged(Duration::from_secs(30));
    assert_eq!(cluster.state_hash(4), cluster.state_hash(leader));
    assert_eq!(
        cluster.store(4).revision(),
        cluster.store(leader).revision()
    );
    let sent = cluster.store(leader).snapshot_stats();
    eprintln!("{sent:?}");
    // 400 KiB of values: about fifty chunks of 8 KiB.
    assert!(sent.chunks >= 40, "{sent:?}");
    assert!(sent.chunk_bytes_largest <= CHUNK as u64, "{sent:?}");
    assert!(sent.finished >= 1, "{sent:?}");
}
