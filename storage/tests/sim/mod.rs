//! A simulated network of store peers in one process: every peer is a real
//! [`Store`] (its Raft thread, its RocksDB in a temporary directory), and
//! their Raft messages go through one router thread that drops, delays and
//! partitions them by a seeded random schedule.
//!
//! The seed fixes the fault schedule and the clients' choices; thread
//! timing is the operating system's, so a replayed seed reproduces the
//! faults, not every interleaving.

#![allow(dead_code)]

pub mod linearizability;

use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kubus_storage::{Store, StoreConfig, Transport};
use raft::eraftpb::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Messages queued in the router; past this the network drops (as a full
/// NATS subscriber would).
const ROUTER_QUEUE_MAX: usize = 65_536;

/// What the network does to messages right now.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Probability that a message is dropped.
    pub drop: f64,
    /// Each message is delayed by up to this.
    pub delay_max: Duration,
    /// Peers cut off from everyone else (they still reach each other).
    pub isolated: BTreeSet<u64>,
}

impl Faults {
    fn blocks(&self, from: u64, to: u64) -> bool {
        self.isolated.contains(&from) != self.isolated.contains(&to)
    }
}

struct Delayed {
    at: Instant,
    seq: u64,
    msg: Message,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Min-heap on (at, seq).
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// The router: one thread, one queue.
pub struct Net {
    tx: SyncSender<Message>,
    pub faults: Arc<Mutex<Faults>>,
    peers: Arc<Mutex<HashMap<u64, Store>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub delivered: Arc<std::sync::atomic::AtomicU64>,
}

/// A peer's end of the network.
pub struct SimTransport(SyncSender<Message>);

impl Transport for SimTransport {
    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            match self.0.try_send(m) {
                Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }
}

impl Net {
    pub fn new(seed: u64) -> Net {
        let (tx, rx) = sync_channel(ROUTER_QUEUE_MAX);
        let faults = Arc::new(Mutex::new(Faults::default()));
        let peers = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let delivered = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let thread = {
            let (faults, peers, stop, delivered) = (
                Arc::clone(&faults),
                Arc::clone(&peers),
                Arc::clone(&stop),
                Arc::clone(&delivered),
            );
            std::thread::spawn(move || route(rx, seed, faults, peers, stop, delivered))
        };
        Net {
            tx,
            faults,
            peers,
            stop,
            thread: Some(thread),
            delivered,
        }
    }

    pub fn transport(&self) -> Box<dyn Transport> {
        Box::new(SimTransport(self.tx.clone()))
    }

    pub fn attach(&self, id: u64, store: Store) {
        lock(&self.peers).insert(id, store);
    }

    pub fn detach(&self, id: u64) -> Option<Store> {
        lock(&self.peers).remove(&id)
    }

    pub fn set(&self, f: Faults) {
        *lock(&self.faults) = f;
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn route(
    rx: Receiver<Message>,
    seed: u64,
    faults: Arc<Mutex<Faults>>,
    peers: Arc<Mutex<HashMap<u64, Store>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    delivered: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0005_eed0_f4e7);
    let mut heap = BinaryHeap::new();
    let mut seq = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        let wait = heap
            .peek()
            .map(|d: &Delayed| d.at.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(5))
            .min(Duration::from_millis(5));
        match rx.recv_timeout(wait) {
            Ok(msg) => {
                let f = lock(&faults).clone();
                if f.blocks(msg.from, msg.to) || rng.gen_bool(f.drop.clamp(0.0, 1.0)) {
                    continue;
                }
                let delay = if f.delay_max.is_zero() {
                    Duration::ZERO
                } else {
                    f.delay_max.mul_f64(rng.gen::<f64>())
                };
                seq += 1;
                heap.push(Delayed {
                    at: Instant::now() + delay,
                    seq,
                    msg,
                });
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        while heap.peek().is_some_and(|d| d.at <= now) {
            let Some(d) = heap.pop() else { break };
            // A partition that started while the message was in flight
            // cuts it too.
            if lock(&faults).blocks(d.msg.from, d.msg.to) {
                continue;
            }
            let store = lock(&peers).get(&d.msg.to).cloned();
            if let Some(store) = store {
                let _ = store.step(d.msg);
                delivered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// Fast timers for simulation: 10 ms ticks, elections after 100–200 ms.
pub fn sim_config(dir: PathBuf, id: u64, initial: Vec<u64>) -> StoreConfig {
    let mut cfg = StoreConfig::peer(dir, id, initial);
    cfg.fsync = false;
    cfg.tick_interval_ms = 10;
    cfg.election_ticks = 10;
    cfg.heartbeat_ticks = 2;
    cfg.request_timeout_ms = 1_000;
    cfg.snapshot_resend_ms = 1_000;
    // Small logs, so that lagging peers need snapshots.
    cfg.log_entries_kept = 50;
    cfg.log_compaction_step_entries = 20;
    cfg
}

/// Peers on one simulated network, each in its own directory.
pub struct Cluster {
    pub net: Net,
    pub dirs: HashMap<u64, tempfile::TempDir>,
    pub stores: HashMap<u64, Store>,
    pub configure: fn(&mut StoreConfig),
}

impl Cluster {
    pub fn start(seed: u64, ids: &[u64], configure: fn(&mut StoreConfig)) -> Cluster {
        let mut c = Cluster {
            net: Net::new(seed),
            dirs: HashMap::new(),
            stores: HashMap::new(),
            configure,
        };
        for &id in ids {
            c.open(id, ids.to_vec());
        }
        c
    }

    /// Opens (or reopens) peer `id`; `initial` empty to join.
    pub fn open(&mut self, id: u64, initial: Vec<u64>) {
        let dir = self
            .dirs
            .entry(id)
            .or_insert_with(|| tempfile::tempdir().expect("tempdir"))
            .path()
            .to_path_buf();
        let mut cfg = sim_config(dir, id, initial);
        (self.configure)(&mut cfg);
        let (store, _changes) = Store::open(cfg, self.net.transport()).expect("open peer");
        self.net.attach(id, store.clone());
        self.stores.insert(id, store);
    }

    /// Stops peer `id` (its directory stays).
    pub fn stop(&mut self, id: u64) {
        self.net.detach(id);
        if let Some(s) = self.stores.remove(&id) {
            s.shutdown();
        }
    }

    /// Stops peer `id` and deletes its data.
    pub fn wipe(&mut self, id: u64) {
        self.stop(id);
        self.dirs.remove(&id);
    }

    pub fn store(&self, id: u64) -> &Store {
        &self.stores[&id]
    }

    /// The peer that leads (by its own account), if exactly one does in
    /// the highest term seen.
    pub fn leader(&self) -> Option<u64> {
        let st: Vec<_> = self.stores.values().map(|s| s.status()).collect();
        let term = st.iter().map(|s| s.term).max()?;
        let leaders: Vec<u64> = st
            .iter()
            .filter(|s| s.is_leader && s.term == term)
            .map(|s| s.peer_id)
            .collect();
        (leaders.len() == 1).then(|| leaders[0])
    }

    /// Waits (bounded) until one leader is known.
    pub fn wait_leader(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader within {within:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (bounded) until every running peer has applied the same index
    /// and revision; returns the revision.
    pub fn wait_converged(&self, within: Duration) -> u64 {
        let deadline = Instant::now() + within;
        loop {
            let st: Vec<_> = self.stores.values().map(|s| s.status()).collect();
            let same = st.windows(2).all(|w| {
                (w[0].applied_index, w[0].revision) == (w[1].applied_index, w[1].revision)
            });
            if same && st.iter().any(|s| s.is_leader) {
                return st[0].revision;
            }
            assert!(
                Instant::now() < deadline,
                "peers did not converge within {within:?}: {st:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A hash of one peer's whole state machine (objects and revision).
    pub fn state_hash(&self, id: u64) -> (u64, u64) {
        use std::hash::{Hash, Hasher};
        let s = self.store(id);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let r = s.range("", 0).expect("range");
        for kv in &r.items {
            (
                &kv.key,
                &kv.value,
                kv.create_revision,
                kv.mod_revision,
                kv.version,
            )
                .hash(&mut h);
        }
        r.revision.hash(&mut h);
        (r.revision, h.finish())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.stores.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
    }
}
