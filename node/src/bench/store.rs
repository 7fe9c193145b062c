//! `kubus bench store`: puts per second, p50 and p99 of the kubus store
//! beside etcd 3.4, measured in the same invocation with the same workload
//! (8-byte keys, fsync on, each value size × each number of puts in
//! flight), and the kubus/etcd ratios.
//!
//! # What is measured, and why
//!
//! - **etcd** is measured the way its clients use it: a `put` over gRPC
//!   (crate `etcd-client`, one connection) to a one-member etcd on
//!   loopback, started by the benchmark with a fresh data directory and
//!   stopped by its PID after the case.
//! - **kubus store** is `Store::propose` of a one-op `Put` transaction, in
//!   process, on a fresh one-peer store (fsync on). It is the store's own
//!   request path — proposal queue, Raft Ready, fsync, apply batch, reply —
//!   without any network hop, so it flatters kubus by the cost of etcd's
//!   gRPC hop. The change channel is dropped (nobody publishes events).
//! - **kubus API** is what a kubus client actually does: `create` of a
//!   ConfigMap (name = the 8-byte key, one data field holding the value)
//!   as a NATS request to the store's API subject, through a real
//!   nats-server on loopback, the `StoreServer` (admission, JSON →
//!   MessagePack, the store) and its change-event publisher. It does more
//!   than an etcd put (an object, not opaque bytes; an event per write),
//!   so it is the harsh side of the comparison; the store figure is the
//!   kind one. The bus has no accounts and the store authorizes nobody
//!   (authorization off).
//! - **kubus API with RBAC** (`--paths api-authz`) is the same create as a
//!   user RBAC decides for, as in a secured cluster: nats-server runs
//!   kubus's generated accounts, the client connects as the admin and
//!   impersonates `bench-user` (bound to the `edit` ClusterRole), so every
//!   request pays the server's cross-account import,
//!   the store's reading of the requester header, the impersonation check
//!   and the user's RBAC evaluation. `--paths api-tls` adds TLS on the bus
//!   (certificate from a fresh cluster CA). Each has a nats-server of its
//!   own per case, stopped by its PID.
//! - **Values** are random and differ from put to put (a pool of 1,024 per
//!   size, see `Values`), as etcd's own `benchmark put` uses random bytes:
//!   kubus compresses its tables with LZ4 and etcd does not, so a
//!   repeated or patterned value would measure the compressor, not the
//!   store. (Before 2026-11-24 the value was `abc…z` repeated, which LZ4
//!   shrinks ~25×: kubus' figures at 2 KiB were up to a fifth higher.)
//!
//! All systems of a case run side by side and are measured in `--rounds`
//! interleaved slices (each round starts with a different system; `sync`
//! and a short pause before each round), because fsync latency on a shared
//! machine's disk drifts by an order of magnitude within seconds: only
//! slices taken side by side see the same disk. Every system first puts
//! `--warmup` keys; then each gets `--duration-ms` or `--ops` puts in all,
//! whichever comes first, with exactly `in flight` puts under way (a closed
//! loop: each worker issues its next put when the previous one is
//! acknowledged).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use kubus_api::Kind;
use kubus_bus::Client;
use kubus_storage::{NoPeers, Op, Precondition, Store, StoreConfig, Txn};
use serde_json::json;

use super::etcd::Etcd;
use super::histogram;
use crate::cli::BenchStoreArgs;
use crate::nats_server::NatsServer;
use crate::raft_transport::{self, NatsTransport};

/// Most puts in flight a case may ask for.
pub const IN_FLIGHT_MAX: usize = 1024;
/// Most puts one case may make: keys are 8 decimal digits.
pub const OPS_MAX: u64 = 99_999_999;
/// A case stops after this many failed puts (the rest would fail too).
const ERRORS_MAX: u64 = 100;
/// Most rounds a case is split into.
pub const ROUNDS_MAX: u64 = 100;
/// The pause before each round (after `sync`).
const SETTLE: Duration = Duration::from_millis(500);
/// How long the API path may take to come up.
const API_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// `Store::propose` in process.
    KubusStore,
    /// `create` through NATS and the store server.
    KubusApi,
    /// `Store::propose` on the leader of three in-process peers that talk
    /// Raft over NATS (the production transport), each on its own
    /// connection.
    KubusStore3,
    /// `create` as a user RBAC decides for, through nats-server with
    /// kubus's accounts (see the module's notes).
    KubusApiAuthz,
    /// The same with TLS on the bus.
    KubusApiTls,
    /// etcd 3.4 through gRPC, one member.
    Etcd,
    /// etcd 3.4 through gRPC to the leader of three members (on loopback,
    /// sharing the disk, like the three kubus peers).
    Etcd3,
}

impl System {
    fn label(self) -> &'static str {
        match self {
            System::KubusStore => "kubus store, 1 peer",
            System::KubusApi => "kubus API over NATS, 1 peer",
            System::KubusStore3 => "kubus store, 3 peers (NATS)",
            System::KubusApiAuthz => "kubus API, RBAC (edit user)",
            System::KubusApiTls => "kubus API, RBAC and TLS",
            System::Etcd => "etcd 3.4 over gRPC",
            System::Etcd3 => "etcd 3.4, 3 members",
        }
    }

    /// The name of a baseline in a row.
    fn short(self) -> &'static str {
        match self {
            System::Etcd => "etcd",
            System::Etcd3 => "etcd×3",
            System::KubusApi => "API",
            System::KubusApiAuthz => "RBAC",
            other => other.label(),
        }
    }

    fn is_etcd(self) -> bool {
        matches!(self, System::Etcd | System::Etcd3)
    }

    /// The etcd systems a kubus system is compared with: one member for
    /// all (the baseline), and three members for three peers (like
    /// for like).
    fn baselines(self) -> &'static [System] {
        match self {
            System::KubusStore3 => &[System::Etcd, System::Etcd3],
            // authorization's cost: beside the API without it; TLS's:
            // beside the API with it
            System::KubusApiAuthz => &[System::KubusApi],
            System::KubusApiTls => &[System::KubusApiAuthz],
            System::Etcd | System::Etcd3 => &[],
            _ => &[System::Etcd],
        }
    }
}

/// One case of the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Case {
    pub value_bytes: usize,
    pub in_flight: usize,
}

/// The cases of an invocation: every value size with every in-flight
/// count, in the order given.
pub fn cases(values: &[usize], in_flights: &[usize]) -> Vec<Case> {
    values
        .iter()
        .flat_map(|&value_bytes| {
            in_flights.iter().map(move |&in_flight| Case {
                value_bytes,
                in_flight,
            })
        })
        .collect()
}

/// The 8-byte key of put number `i`.
pub fn key(i: u64) -> String {
    format!("{:08}", i % (OPS_MAX + 1))
}

/// What one case measured.
pub struct Measured {
    pub puts: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
}

impl Measured {
    pub fn puts_per_s(&self) -> f64 {
        self.puts as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn p_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

/// How one case is bounded.
#[derive(Debug, Clone, Copy)]
struct Limits {
    duration: Duration,
    ops: u64,
    in_flight: usize,
}

/// Where puts go. (One per worker, made once per case: the size of the
/// etcd client is of no account, so it is not boxed.)
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
enum Target {
    Store(Store),
    Api(Client),
    Etcd(etcd_client::KvClient),
}

impl Target {
    async fn put(&mut self, i: u64, values: &Values) -> Result<(), String> {
        let value = values.of_put(i);
        match self {
            Target::Store(store) => {
                let txn = Txn {
                    ops: vec![Op::Put {
                        key: key(i),
                        value: value.to_vec(),
                        expect: Precondition::None,
                    }],
                };
                store
                    .propose(txn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Target::Api(client) => {
                // The value is ASCII (see `Values`), so this cannot fail.
                let text = String::from_utf8_lossy(value);
                let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": key(i), "namespace": "default"},
                    "data": {"v": text}});
                client
                    .create(obj)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Target::Etcd(kv) => kv
                .put(key(i).into_bytes(), value.to_vec(), None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }
}

/// The values a case puts: [`VALUE_POOL`] different values of `n` random
/// printable bytes, put `i` taking value `i % VALUE_POOL`. Random and
/// different from put to put so that no system gains from compressing them
/// (kubus' tables are LZ4-compressed block by block, etcd's bbolt pages
/// are not; one value repeated would let a 4 KiB block hold two copies in
/// the space of one). Printable because the API path carries them in JSON:
/// 64 symbols, 6 random bits a byte, like base64 of random bytes. Seeded,
/// so every run and every system writes the same bytes.
#[derive(Debug, PartialEq)]
struct Values(Vec<Vec<u8>>);

/// Different values per case (2 MiB at 2 KiB each).
const VALUE_POOL: usize = 1024;

impl Values {
    fn of(n: usize) -> Arc<Values> {
        use rand::{Rng, SeedableRng};
        const SYMBOLS: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
        let mut value = || -> Vec<u8> {
            (0..n)
                .map(|_| SYMBOLS[rng.gen_range(0..SYMBOLS.len())])
                .collect()
        };
        Arc::new(Values((0..VALUE_POOL).map(|_| value()).collect()))
    }

    /// The value of put `i`.
    fn of_put(&self, i: u64) -> &[u8] {
        &self.0[(i % self.0.len() as u64) as usize]
    }
}

/// Runs `limits.in_flight` workers, each putting keys `first..` in turn
/// until the deadline or the op budget; merges their histograms.
async fn drive(
    target: Target,
    values: Arc<Values>,
    first: u64,
    limits: Limits,
) -> anyhow::Result<Measured> {
    let next = Arc::new(AtomicU64::new(first));
    let end = first.saturating_add(limits.ops).min(OPS_MAX);
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + limits.duration;
    let mut workers = Vec::with_capacity(limits.in_flight);
    for _ in 0..limits.in_flight {
        let (next, errors, stop, values) = (
            Arc::clone(&next),
            Arc::clone(&errors),
            Arc::clone(&stop),
            Arc::clone(&values),
        );
        let mut target = target.clone();
        workers.push(tokio::spawn(async move {
            let mut h = histogram()?;
            let mut puts = 0u64;
            let mut first_error = None;
            // Bounded: every turn takes a fresh index below `end`.
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end || stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                match target.put(i, &values).await {
                    Ok(()) => {
                        h.record((t.elapsed().as_micros() as u64).max(1))?;
                        puts += 1;
                    }
                    Err(e) => {
                        first_error.get_or_insert(e);
                        if errors.fetch_add(1, Ordering::Relaxed) + 1 >= ERRORS_MAX {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
            anyhow::Ok((h, puts, first_error))
        }));
    }
    let mut latency_us = histogram()?;
    let mut puts = 0;
    let mut first_error = None;
    for w in workers {
        let (h, n, e) = w.await??;
        latency_us.add(&h)?;
        puts += n;
        if first_error.is_none() {
            first_error = e;
        }
    }
    Ok(Measured {
        puts,
        errors: errors.load(Ordering::Relaxed),
        first_error,
        elapsed: start.elapsed(),
        latency_us,
    })
}

/// Puts `args.warmup` keys (numbers `0..warmup`) before measuring.
async fn warm_up(
    target: &Target,
    values: &Arc<Values>,
    case: Case,
    args: &BenchStoreArgs,
) -> anyhow::Result<()> {
    if args.warmup == 0 {
        return Ok(());
    }
    let warm = Limits {
        duration: Duration::from_secs(60),
        ops: args.warmup,
        in_flight: case.in_flight,
    };
    let m = drive(target.clone(), Arc::clone(values), 0, warm).await?;
    if m.puts == 0 {
        bail!(
            "every warm-up put failed: {}",
            m.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

impl Measured {
    fn empty() -> anyhow::Result<Measured> {
        Ok(Measured {
            puts: 0,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            latency_us: histogram()?,
        })
    }

    /// Adds another slice of the same system's measurement.
    fn merge(&mut self, other: Measured) -> anyhow::Result<()> {
        self.puts += other.puts;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        self.latency_us.add(&other.latency_us)?;
        Ok(())
    }
}

/// A system set up for one case, and what stops it.
struct Running {
    system: System,
    target: Target,
    stop: Stop,
    measured: Measured,
    /// The next key number to put.
    next_key: u64,
}

/// What must be stopped after a case.
enum Stop {
    Etcd(Box<Etcd>, PathBuf),
    Stores {
        stores: Vec<Store>,
        /// Tasks that hold handles of the stores (the Raft receivers).
        tasks: Vec<tokio::task::JoinHandle<()>>,
        dir: PathBuf,
        /// A nats-server of the case's own (the secured API paths).
        nats: Option<NatsServer>,
    },
}

/// Tries to remove a stopped case's directory.
const REMOVE_ATTEMPTS: u32 = 20;
/// Pause between those tries (RocksDB's last background jobs end).
const REMOVE_RETRY: Duration = Duration::from_millis(100);

impl Stop {
    /// Stops the system and removes its data directory: with random values
    /// a case can leave gigabytes (200,000 puts of 2 KiB on three peers),
    /// and the cases of one invocation must not add up to a full disk. A
    /// directory that cannot be removed is reported, not fatal.
    async fn run(self) -> anyhow::Result<()> {
        let dir = match self {
            Stop::Etcd(mut etcd, dir) => {
                tokio::task::spawn_blocking(move || etcd.stop()).await?;
                dir
            }
            Stop::Stores {
                stores,
                tasks,
                dir,
                nats,
            } => {
                tasks.iter().for_each(tokio::task::JoinHandle::abort);
                for task in tasks {
                    // Aborted: the error says so, nothing to report.
                    let _ = task.await;
                }
                tokio::task::spawn_blocking(move || {
                    stores.iter().for_each(Store::shutdown);
                    if let Some(mut n) = nats {
                        n.stop();
                    }
                })
                .await?;
                dir
            }
        };
        let mut attempt = 1;
        loop {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => return Ok(()),
                Err(e) if attempt >= REMOVE_ATTEMPTS => {
                    eprintln!("warning: cannot remove {}: {e}", dir.display());
                    return Ok(());
                }
                Err(_) => {
                    attempt += 1;
                    tokio::time::sleep(REMOVE_RETRY).await;
                }
            }
        }
    }
}

/// Measures every system of one case in `args.rounds` interleaved slices
/// (round r starts with the r-th system, so none is always first or last):
/// the disk's fsync latency on a shared machine drifts by an order of
/// magnitude within seconds, and only slices taken side by side see the
/// same disk. Each system gets `duration_ms` and `ops` in all.
async fn measure_case(
    bench: &mut Bench,
    systems: &[System],
    case: Case,
    args: &BenchStoreArgs,
) -> anyhow::Result<Vec<(System, Measured)>> {
    let values = Values::of(case.value_bytes);
    let mut running = Vec::with_capacity(systems.len());
    for &system in systems {
        let (target, stop) = bench.set_up(system).await?;
        warm_up(&target, &values, case, args).await?;
        running.push(Running {
            system,
            target,
            stop,
            measured: Measured::empty()?,
            next_key: args.warmup,
        });
    }
    let rounds = args.rounds.clamp(1, ROUNDS_MAX);
    let slice = Limits {
        duration: Duration::from_millis(args.duration_ms / rounds),
        ops: (args.ops / rounds).max(1),
        in_flight: case.in_flight,
    };
    for round in 0..rounds as usize {
        settle().await;
        for k in 0..running.len() {
            let n = running.len();
            let r = &mut running[(round + k) % n];
            let m = drive(r.target.clone(), Arc::clone(&values), r.next_key, slice).await?;
            r.next_key += m.puts + m.errors;
            r.measured.merge(m)?;
        }
    }
    let mut out = Vec::with_capacity(running.len());
    for r in running {
        // The target's handle too must go for the store to close.
        drop(r.target);
        r.stop.run().await?;
        out.push((r.system, r.measured));
    }
    Ok(out)
}

/// Shared resources of one invocation.
struct Bench {
    dir: tempfile::TempDir,
    nats: Option<NatsServer>,
    client: Option<Client>,
    etcd_binary: PathBuf,
    seq: u32,
}

impl Bench {
    /// A fresh directory for one case.
    fn case_dir(&mut self, what: &str) -> anyhow::Result<PathBuf> {
        self.seq += 1;
        let d = self.dir.path().join(format!("{:02}-{what}", self.seq));
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(d)
    }

    /// Starts `system` fresh for one case: its target and what stops it.
    async fn set_up(&mut self, system: System) -> anyhow::Result<(Target, Stop)> {
        match system {
            System::Etcd | System::Etcd3 => {
                let members = if system == System::Etcd3 { 3 } else { 1 };
                let dir = self.case_dir(&format!("etcd-{members}"))?;
                let etcd = Etcd::start(&self.etcd_binary, &dir, members).await?;
                let client = etcd_client::Client::connect([etcd.client_url()], None)
                    .await
                    .context("connecting to etcd")?;
                Ok((
                    Target::Etcd(client.kv_client()),
                    Stop::Etcd(Box::new(etcd), dir),
                ))
            }
            System::KubusStore => {
                let dir = self.case_dir("kubus-store")?;
                let (store, changes) =
                    Store::open(StoreConfig::single(dir.clone()), Box::new(NoPeers))?;
                // Nobody publishes: the benchmark measures the store alone.
                drop(changes);
                wait_leader(&store).await?;
                let stop = Stop::Stores {
                    stores: vec![store.clone()],
                    tasks: Vec::new(),
                    dir,
                    nats: None,
                };
                Ok((Target::Store(store), stop))
            }
            System::KubusStore3 => {
                let dir = self.case_dir("kubus-store-3")?;
                let url = self.nats.as_ref().context("no nats-server")?.url();
                let subjects = kubus_bus::Subjects::new(&format!("bench-{}", self.seq));
                let mut stores = Vec::with_capacity(3);
                let mut tasks = Vec::with_capacity(3);
                for id in 1..=3u64 {
                    let nats = async_nats::connect(&url).await?;
                    let cfg = StoreConfig::peer(dir.join(format!("peer-{id}")), id, vec![1, 2, 3]);
                    let transport = NatsTransport::start(nats.clone(), subjects.clone(), id);
                    let (store, changes) = Store::open(cfg, Box::new(transport))?;
                    drop(changes);
                    tasks.extend(raft_transport::serve_peer(&nats, &subjects, id, &store).await?);
                    stores.push(store);
                }
                let leader = wait_one_leader(&stores).await?;
                let stop = Stop::Stores {
                    stores,
                    tasks,
                    dir,
                    nats: None,
                };
                Ok((Target::Store(leader), stop))
            }
            System::KubusApi => {
                let dir = self.case_dir("kubus-api")?;
                let cluster = format!("bench-{}", self.seq);
                let nats = self.nats.as_ref().context("no nats-server")?;
                let base = match &self.client {
                    Some(c) => c.clone(),
                    None => {
                        let c = Client::connect(&nats.url(), "bench").await?;
                        self.client = Some(c.clone());
                        c
                    }
                };
                let client = Client::new(base.nats().clone(), &cluster);
                let (store, changes) =
                    Store::open(StoreConfig::single(dir.clone()), Box::new(NoPeers))?;
                kubus_actors::store::StoreServer::start(
                    store.clone(),
                    changes,
                    base.nats().clone(),
                    &cluster,
                    Default::default(),
                    false,
                    kubus_actors::store::seal::Keyring::plain(),
                )
                .await?;
                wait_api(&client).await?;
                let stop = Stop::Stores {
                    stores: vec![store],
                    tasks: Vec::new(),
                    dir,
                    nats: None,
                };
                Ok((Target::Api(client), stop))
            }
            System::KubusApiAuthz => self.set_up_secured(false).await,
            System::KubusApiTls => self.set_up_secured(true).await,
        }
    }

    /// The API of a secured store (see [`super::secured_store`]), with a
    /// client that creates as the `edit`-bound user.
    async fn set_up_secured(&mut self, tls: bool) -> anyhow::Result<(Target, Stop)> {
        let dir = self.case_dir(if tls {
            "kubus-api-tls"
        } else {
            "kubus-api-authz"
        })?;
        let s = super::secured_store(&dir, "bench", tls).await?;
        let stop = Stop::Stores {
            stores: vec![s.store],
            tasks: Vec::new(),
            dir,
            nats: Some(s.nats),
        };
        Ok((Target::Api(s.user), stop))
    }
}

async fn wait_leader(store: &Store) -> anyhow::Result<()> {
    for _ in 0..200 {
        if store.is_leader() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("the store elected no leader within 2 s")
}

/// Lets the previous system's writes leave the page cache before the next
/// one is measured, so that neither pays for the other's writeback:
/// `sync`, then a short pause.
async fn settle() {
    let synced = tokio::task::spawn_blocking(|| std::process::Command::new("sync").status()).await;
    if !matches!(synced, Ok(Ok(s)) if s.success()) {
        tracing::warn!("sync failed; cases may pay for each other's writeback");
    }
    tokio::time::sleep(SETTLE).await;
}

/// The leader of `stores` once there is exactly one (bounded wait).
async fn wait_one_leader(stores: &[Store]) -> anyhow::Result<Store> {
    for _ in 0..300 {
        let leaders: Vec<&Store> = stores.iter().filter(|s| s.is_leader()).collect();
        if let [one] = leaders.as_slice() {
            return Ok((*one).clone());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the {} peers elected no leader within 15 s", stores.len())
}

async fn wait_api(client: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + API_READY_TIMEOUT;
    let mut last = None;
    while Instant::now() < deadline {
        // The store server creates the default namespace once it is up.
        match client.get(Kind::Namespace, None, "default").await {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "the store's API did not come up within {API_READY_TIMEOUT:?}: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    )
}

/// Which systems an invocation measures, etcd first in each case (the
/// ratios need it). Three peers are measured on the store path only.
pub fn systems(paths: &[String], peers: &[usize], etcd: bool) -> anyhow::Result<Vec<System>> {
    let mut out = Vec::new();
    if etcd {
        out.push(System::Etcd);
        if peers.contains(&3) && paths.iter().any(|p| p.trim() == "store") {
            out.push(System::Etcd3);
        }
    }
    for &n in peers {
        for p in paths {
            let s = match (n, p.trim()) {
                (1, "store") => System::KubusStore,
                (1, "api") => System::KubusApi,
                (1, "api-authz") => System::KubusApiAuthz,
                (1, "api-tls") => System::KubusApiTls,
                (3, "store") => System::KubusStore3,
                (3, "api" | "api-authz" | "api-tls") => continue,
                (1 | 3, other) => {
                    bail!("unknown --paths entry {other:?}: use store, api, api-authz or api-tls")
                }
                (n, _) => bail!("--peers {n}: 1 or 3 peers can be measured"),
            };
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    if !out.iter().any(|s| !s.is_etcd()) {
        bail!("--paths and --peers name no kubus system: give store or api, 1 or 3 peers");
    }
    Ok(out)
}

pub fn run(args: BenchStoreArgs) -> anyhow::Result<()> {
    if args.in_flight.iter().any(|&n| n == 0 || n > IN_FLIGHT_MAX) {
        bail!("--in-flight values must be 1 to {IN_FLIGHT_MAX}");
    }
    if args.ops == 0 || args.ops.saturating_add(args.warmup) > OPS_MAX {
        bail!("--ops plus --warmup must be 1 to {OPS_MAX} (keys are 8 digits)");
    }
    let systems = systems(&args.paths, &args.peers, !args.no_etcd)?;
    let cases = cases(&args.values, &args.in_flight);
    let dir = tempfile::tempdir().context("temporary directory")?;
    let nats = if systems.contains(&System::KubusApi) || systems.contains(&System::KubusStore3) {
        Some(NatsServer::start(
            &dir.path().join("nats-server.log"),
            None,
        )?)
    } else {
        None
    };
    let mut bench = Bench {
        dir,
        nats,
        client: None,
        etcd_binary: args.etcd.clone(),
        seq: 0,
    };
    println!(
        "kubus bench store: 8-byte keys, fsync on, {} ms or {} puts per case after {} warm-up puts",
        args.duration_ms, args.ops, args.warmup
    );
    println!(
        "(build: {}; client, servers and disk share this machine; 3 kubus peers share its disk too)\n",
        super::build()
    );
    // The workers, the etcd client and the store server's request tasks
    // share a two-thread pool, as in a mesh node.
    let system = crate::mesh::two_core_system();
    let result = system.block_on(async {
        let mut rows = Vec::new();
        for case in &cases {
            let measured = measure_case(&mut bench, &systems, *case, &args).await?;
            for (s, m) in &measured {
                println!("{}", row(*s, *case, m, &measured));
            }
            rows.extend(measured.into_iter().map(|(s, m)| (s, *case, m)));
        }
        println!();
        print_goals(&rows);
        anyhow::Ok(())
    });
    if let Some(mut n) = bench.nats.take() {
        n.stop();
    }
    result
}

fn row(s: System, case: Case, m: &Measured, all: &[(System, Measured)]) -> String {
    let mut line = format!(
        "{:>5} B  {:>3} in flight  {:<28} {:>9.0} puts/s  p50 {:>7.3} ms  p99 {:>7.3} ms",
        case.value_bytes,
        case.in_flight,
        s.label(),
        m.puts_per_s(),
        m.p_ms(0.50),
        m.p_ms(0.99),
    );
    for base in s.baselines() {
        if let Some((_, e)) = all.iter().find(|(es, _)| es == base) {
            line.push_str(&format!(
                "  ×{}: puts {:.2}, p50 {:.2}, p99 {:.2}",
                base.short(),
                m.puts_per_s() / e.puts_per_s().max(1e-9),
                m.p_ms(0.50) / e.p_ms(0.50).max(1e-9),
                m.p_ms(0.99) / e.p_ms(0.99).max(1e-9)
            ));
        }
    }
    if m.errors > 0 {
        line.push_str(&format!(
            "  ({} errors; first: {})",
            m.errors,
            m.first_error.as_deref().unwrap_or("?")
        ));
    }
    line
}

/// The goals, checked for every case that has an etcd figure: each
/// kubus system against one etcd member, and three peers also against three
/// members.
fn print_goals(rows: &[(System, Case, Measured)]) {
    for (s, case, m) in rows {
        for base in s.baselines() {
            let Some((_, _, e)) = rows.iter().find(|(es, ec, _)| es == base && ec == case) else {
                continue;
            };
            if let Some(v) = verdict(*s, *base, *case, m, e) {
                println!(
                    "{:>5} B  {:>3} in flight  {:<28} vs {}: {v}",
                    case.value_bytes,
                    case.in_flight,
                    s.label(),
                    base.label()
                );
            }
        }
    }
}

/// One case's goal against one baseline: against etcd, 64 and 1 in flight
/// have one; authorization must add at most 10 % to the API's p50; TLS's
/// cost is reported.
fn verdict(s: System, base: System, case: Case, m: &Measured, e: &Measured) -> Option<String> {
    let ratio = m.puts_per_s() / e.puts_per_s().max(1e-9);
    let met = |ok: bool| if ok { "met" } else { "not met" };
    let added = 100.0 * (m.p_ms(0.50) / e.p_ms(0.50).max(1e-9) - 1.0);
    match (s, base) {
        (System::KubusApiAuthz, _) => {
            return Some(format!(
                "goal: accounts and RBAC add ≤ 10 % to the API's p50: {added:+.1} % \
                 ({:.3} vs {:.3} ms) → {}",
                m.p_ms(0.50),
                e.p_ms(0.50),
                met(added <= 10.0)
            ))
        }
        (System::KubusApiTls, _) => {
            return Some(format!(
                "TLS adds {added:+.1} % to p50 ({:.3} vs {:.3} ms), puts/s ×{ratio:.2} (no goal)",
                m.p_ms(0.50),
                e.p_ms(0.50)
            ))
        }
        _ => {}
    }
    match case.in_flight {
        64 => Some(format!(
            "goal ≥ 2× puts/s with p99 ≤ etcd's: {:.2}×, p99 {:.3} vs {:.3} ms → {}",
            ratio,
            m.p_ms(0.99),
            e.p_ms(0.99),
            met(ratio >= 2.0 && m.p_ms(0.99) <= e.p_ms(0.99))
        )),
        1 => Some(format!(
            "goal ≥ etcd puts/s: {:.2}× → {}",
            ratio,
            met(ratio >= 1.0)
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_eight_bytes() {
        for i in [0, 1, 42, 99_999_999, 100_000_000] {
            assert_eq!(key(i).len(), 8, "{i}");
        }
    }

    #[test]
    fn cases_cross_values_and_in_flight() {
        let c = cases(&[256, 2048], &[1, 64]);
        assert_eq!(c.len(), 4);
        assert_eq!(
            c[1],
            Case {
                value_bytes: 256,
                in_flight: 64
            }
        );
    }

    #[test]
    fn systems_put_etcd_first_and_need_a_kubus_path() {
        let both = vec!["api".to_string(), "store".to_string()];
        assert_eq!(
            systems(&both, &[1, 3], true).ok(),
            Some(vec![
                System::Etcd,
                System::Etcd3,
                System::KubusApi,
                System::KubusStore,
                System::KubusStore3
            ])
        );
        assert_eq!(
            systems(&["api".to_string()], &[3], false).ok(),
            None,
            "three peers are measured on the store path only"
        );
        assert_eq!(
            systems(&both, &[1], true).ok(),
            Some(vec![System::Etcd, System::KubusApi, System::KubusStore]),
            "three etcd members only beside three peers"
        );
        assert!(systems(&[], &[1], true).is_err());
        assert!(systems(&["disk".to_string()], &[1], false).is_err());
        assert!(systems(&both, &[5], false).is_err());
        let secured: Vec<String> = ["api", "api-authz", "api-tls"].map(String::from).to_vec();
        assert_eq!(
            systems(&secured, &[1, 3], false).ok(),
            Some(vec![
                System::KubusApi,
                System::KubusApiAuthz,
                System::KubusApiTls
            ]),
            "the secured API paths on one peer"
        );
    }

    #[test]
    fn values_are_printable_different_and_do_not_compress() {
        let values = Values::of(2048);
        let mut windows = std::collections::HashSet::new();
        for i in 0..VALUE_POOL as u64 {
            let value = values.of_put(i);
            assert_eq!(value.len(), 2048);
            assert!(value
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(b)));
            // No 8-byte sequence repeats within or across values, so an
            // LZ-style compressor (LZ4 in kubus' tables) finds nothing to
            // refer back to.
            windows.extend(value.windows(8));
        }
        assert_eq!(windows.len(), VALUE_POOL * (2048 - 7));
        assert_eq!(values.of_put(VALUE_POOL as u64), values.of_put(0));
        assert_eq!(Values::of(2048), values, "seeded: the same bytes every run");
    }
}
