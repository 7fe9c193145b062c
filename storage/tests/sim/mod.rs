//! A simulated network of store peers in one process: every peer is a real
//! [`Store`] (its Raft thread, its RocksDB in a temporary directory), and
//! their Raft messages go through one router thread that drops, delays and
//! partitions them by a seeded random schedule.
//!
//! Like a NATS transport, the simulated one encodes every message
//! (protobuf) and splits one larger than [`Net::chunk_bytes_max`] into
//! chunks; each chunk is dropped, delayed and partitioned on its own, and
//! the receiving side puts them back together. A snapshot's data is
//! pulled by its receiver chunk by chunk ([`SimFetcher`]), each request
//! cut by the same partitions and drops.
//!
//! The seed fixes the fault schedule and the clients' choices; thread
//! timing is the operating system's, so a replayed seed reproduces the
//! faults, not every interleaving.

#![allow(dead_code)]

pub mod linearizability;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kubus_storage::{
    ChunkRequest, SnapshotChunk, SnapshotFetcher, Store, StoreConfig, StoreError, Transport,
};
use raft::eraftpb::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Messages queued in the router; past this the network drops (as a full
/// NATS subscriber would).
const ROUTER_QUEUE_MAX: usize = 65_536;
/// How long a reopened peer waits for its database to be let go by
/// handles of its previous run.
const REOPEN_WAIT: Duration = Duration::from_secs(10);
/// Partly received messages kept per receiving peer; the oldest goes first.
const PARTIALS_MAX: usize = 16;

/// One chunk of one encoded message on its way.
pub struct Packet {
    from: u64,
    to: u64,
    /// Unique in the whole network (the sender may restart).
    message: u64,
    chunk: u32,
    chunks: u32,
    bytes: Vec<u8>,
}

/// Splits an encoded message into packets of at most `chunk_bytes_max`.
fn packets(m: &Message, message: u64, chunk_bytes_max: usize) -> Vec<Packet> {
    use protobuf::Message as _;
    let Ok(bytes) = m.write_to_bytes() else {
        return Vec::new();
    };
    let parts: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[]]
    } else {
        bytes.chunks(chunk_bytes_max.max(1)).collect()
    };
    let chunks = parts.len() as u32;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, b)| Packet {
            from: m.from,
            to: m.to,
            message,
            chunk: i as u32,
            chunks,
            bytes: b.to_vec(),
        })
        .collect()
}

/// Puts one receiver's packets back together, in any order.
#[derive(Default)]
struct Reassembler {
    partial: BTreeMap<(u64, u64), Vec<Option<Vec<u8>>>>,
}

impl Reassembler {
    /// The whole message once its last missing chunk arrives.
    fn add(&mut self, p: Packet) -> Option<Message> {
        use protobuf::Message as _;
        let bytes = if p.chunks <= 1 {
            p.bytes
        } else {
            let key = (p.message, p.from);
            if !self.partial.contains_key(&key) && self.partial.len() >= PARTIALS_MAX {
                let oldest = *self.partial.keys().next()?;
                self.partial.remove(&oldest);
            }
            let parts = self
                .partial
                .entry(key)
                .or_insert_with(|| vec![None; p.chunks as usize]);
            *parts.get_mut(p.chunk as usize)? = Some(p.bytes);
            if parts.iter().any(Option::is_none) {
                return None;
            }
            self.partial
                .remove(&key)?
                .into_iter()
                .flatten()
                .flatten()
                .collect()
        };
        Message::parse_from_bytes(&bytes).ok()
    }
}

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
    packet: Packet,
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
    tx: SyncSender<Packet>,
    /// The largest chunk the transport sends.
    pub chunk_bytes_max: usize,
    next_message: Arc<AtomicU64>,
    pub faults: Arc<Mutex<Faults>>,
    peers: Arc<Mutex<HashMap<u64, Store>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Messages handed to a peer.
    pub delivered: Arc<AtomicU64>,
    /// Messages that crossed in more than one chunk, handed to a peer.
    pub chunked_delivered: Arc<AtomicU64>,
    /// The largest packet seen, in bytes.
    pub packet_bytes_largest: Arc<AtomicUsize>,
}

/// A peer's end of the network.
pub struct SimTransport {
    tx: SyncSender<Packet>,
    chunk_bytes_max: usize,
    next_message: Arc<AtomicU64>,
    fetcher: Arc<SimFetcher>,
}

/// Snapshot chunk requests: a direct call to the sending peer's
/// [`Store::snapshot_chunk`], cut by the same partitions and dropped with
/// the same probability as messages (a lost request or reply fails after
/// a short wait, as a timeout would).
pub struct SimFetcher {
    /// Weak: the peers' transports must not keep the peers alive.
    peers: std::sync::Weak<Mutex<HashMap<u64, Store>>>,
    faults: Arc<Mutex<Faults>>,
    rng: Mutex<StdRng>,
}

/// How long a lost chunk request takes to fail in the simulation.
const FETCH_LOST_WAIT: Duration = Duration::from_millis(20);

impl SnapshotFetcher for SimFetcher {
    fn fetch(&self, req: &ChunkRequest, _timeout: Duration) -> Result<SnapshotChunk, String> {
        let f = lock(&self.faults).clone();
        if f.blocks(req.from, req.to) || lock(&self.rng).gen_bool(f.drop.clamp(0.0, 1.0)) {
            std::thread::sleep(FETCH_LOST_WAIT);
            return Err("lost".into());
        }
        let store = self
            .peers
            .upgrade()
            .and_then(|peers| lock(&peers).get(&req.from).cloned());
        let Some(store) = store else {
            std::thread::sleep(FETCH_LOST_WAIT);
            return Err(format!("peer {} is not on the network", req.from));
        };
        Ok(store.snapshot_chunk(req))
    }
}

impl Transport for SimTransport {
    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            let message = self
                .next_message
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for p in packets(&m, message, self.chunk_bytes_max) {
                match self.tx.try_send(p) {
                    Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
                }
            }
        }
    }

    fn snapshot_fetcher(&self) -> Option<Arc<dyn SnapshotFetcher>> {
        Some(Arc::clone(&self.fetcher) as Arc<dyn SnapshotFetcher>)
    }
}

impl Net {
    pub fn new(seed: u64) -> Net {
        Net::with_chunks(seed, kubus_storage::CHUNK_BYTES_DEFAULT)
    }

    /// A network that splits messages into chunks of `chunk_bytes_max`.
    pub fn with_chunks(seed: u64, chunk_bytes_max: usize) -> Net {
        let (tx, rx) = sync_channel(ROUTER_QUEUE_MAX);
        let faults = Arc::new(Mutex::new(Faults::default()));
        let peers = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let counters = Counters::default();
        let thread = {
            let (faults, peers, stop, counters) = (
                Arc::clone(&faults),
                Arc::clone(&peers),
                Arc::clone(&stop),
                counters.clone(),
            );
            std::thread::spawn(move || route(rx, seed, faults, peers, stop, counters))
        };
        Net {
            tx,
            chunk_bytes_max,
            next_message: Arc::new(AtomicU64::new(1)),
            faults,
            peers,
            stop,
            thread: Some(thread),
            delivered: counters.delivered,
            chunked_delivered: counters.chunked_delivered,
            packet_bytes_largest: counters.packet_bytes_largest,
        }
    }

    pub fn transport(&self) -> Box<dyn Transport> {
        let seed = self
            .next_message
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Box::new(SimTransport {
            tx: self.tx.clone(),
            chunk_bytes_max: self.chunk_bytes_max,
            next_message: Arc::clone(&self.next_message),
            fetcher: Arc::new(SimFetcher {
                peers: Arc::downgrade(&self.peers),
                faults: Arc::clone(&self.faults),
                rng: Mutex::new(StdRng::seed_from_u64(seed)),
            }),
        })
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

/// What the router counts.
#[derive(Clone, Default)]
struct Counters {
    delivered: Arc<AtomicU64>,
    chunked_delivered: Arc<AtomicU64>,
    packet_bytes_largest: Arc<AtomicUsize>,
}

fn route(
    rx: Receiver<Packet>,
    seed: u64,
    faults: Arc<Mutex<Faults>>,
    peers: Arc<Mutex<HashMap<u64, Store>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    counters: Counters,
) {
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let mut reassemblers: HashMap<u64, Reassembler> = HashMap::new();
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
            Ok(packet) => {
                counters
                    .packet_bytes_largest
                    .fetch_max(packet.bytes.len(), relaxed);
                let f = lock(&faults).clone();
                if f.blocks(packet.from, packet.to) || rng.gen_bool(f.drop.clamp(0.0, 1.0)) {
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
                    packet,
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
            let (from, to, chunked) = (d.packet.from, d.packet.to, d.packet.chunks > 1);
            if lock(&faults).blocks(from, to) {
                continue;
            }
            let Some(msg) = reassemblers.entry(to).or_default().add(d.packet) else {
                continue;
            };
            let store = lock(&peers).get(&to).cloned();
            if let Some(store) = store {
                let _ = store.step(msg);
                counters.delivered.fetch_add(1, relaxed);
                if chunked {
                    counters.chunked_delivered.fetch_add(1, relaxed);
                }
            }
        }
    }
}

/// The runtime simulated clients run on: two workers, like the machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
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
    /// When set, peer `id` lives in `<base>/<id>` (kept after the cluster
    /// is dropped) instead of a temporary directory of its own.
    pub base: Option<PathBuf>,
    pub stores: HashMap<u64, Store>,
    pub configure: fn(&mut StoreConfig),
}

impl Cluster {
    pub fn start(seed: u64, ids: &[u64], configure: fn(&mut StoreConfig)) -> Cluster {
        Cluster::start_on(Net::new(seed), ids, configure)
    }

    /// Peers `ids`, bootstrapped together, on `net`.
    pub fn start_on(net: Net, ids: &[u64], configure: fn(&mut StoreConfig)) -> Cluster {
        Cluster::start_in(net, None, ids, configure)
    }

    /// Peers `ids` in `<base>/<id>` (see [`Cluster::base`]), bootstrapped
    /// together or reopened.
    pub fn start_in(
        net: Net,
        base: Option<PathBuf>,
        ids: &[u64],
        configure: fn(&mut StoreConfig),
    ) -> Cluster {
        let mut c = Cluster::empty(net, base, configure);
        for &id in ids {
            c.open(id, ids.to_vec());
        }
        c
    }

    /// A cluster with no peer open yet.
    pub fn empty(net: Net, base: Option<PathBuf>, configure: fn(&mut StoreConfig)) -> Cluster {
        Cluster {
            net,
            base,
            dirs: HashMap::new(),
            stores: HashMap::new(),
            configure,
        }
    }

    /// Opens (or reopens) peer `id`; `initial` empty to join.
    pub fn open(&mut self, id: u64, initial: Vec<u64>) {
        self.try_open(id, initial).expect("open peer");
    }

    /// [`Cluster::open`] that reports a peer that cannot open.
    pub fn try_open(&mut self, id: u64, initial: Vec<u64>) -> Result<(), StoreError> {
        let dir = match &self.base {
            Some(base) => base.join(id.to_string()),
            None => self
                .dirs
                .entry(id)
                .or_insert_with(|| tempfile::tempdir().expect("tempdir"))
                .path()
                .to_path_buf(),
        };
        let mut cfg = sim_config(dir, id, initial);
        (self.configure)(&mut cfg);
        // A client may still hold a handle of the peer's previous run (its
        // request fails soon): the database stays locked until it lets go.
        let deadline = Instant::now() + REOPEN_WAIT;
        let (store, _changes) = loop {
            match Store::open(cfg.clone(), self.net.transport()) {
                Err(StoreError::Rocks(e))
                    if e.kind() == rocksdb::ErrorKind::IOError && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other?,
            }
        };
        self.net.attach(id, store.clone());
        self.stores.insert(id, store);
        Ok(())
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
        self.try_leader(within).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Cluster::wait_leader`] that reports failure.
    pub fn try_leader(&self, within: Duration) -> Result<u64, String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.leader() {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                return Err(format!("no leader within {within:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (bounded) until every running peer has applied the same index
    /// and revision; returns the revision.
    pub fn wait_converged(&self, within: Duration) -> u64 {
        self.try_converged(within).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Cluster::wait_converged`] that reports failure.
    pub fn try_converged(&self, within: Duration) -> Result<u64, String> {
        let deadline = Instant::now() + within;
        loop {
            let st: Vec<_> = self.stores.values().map(|s| s.status()).collect();
            let same = st.windows(2).all(|w| {
                (w[0].applied_index, w[0].revision) == (w[1].applied_index, w[1].revision)
            });
            if same && st.iter().any(|s| s.is_leader) {
                return Ok(st[0].revision);
            }
            if Instant::now() >= deadline {
                return Err(format!("peers did not converge within {within:?}: {st:#?}"));
            }
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
