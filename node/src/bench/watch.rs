//! `kubus bench watch`: how fast a committed change reaches a watcher, and
//! how long an API request takes, each beside raw NATS measured in the same
//! run.
//!
//! It starts its own nats-server child and a store (one peer, fsync on) in a
//! temporary directory, then measures, in order:
//! 1. raw NATS publish → subscribe latency at the target rate;
//! 2. raw NATS request/reply and the store's in-process commit, each one
//!    at a time, back to back (for reference);
//! 3. side by side, one of each per round: raw request/reply, API `get`,
//!    in-process commit, API update and API apply, one at a time — the
//!    figures the goals are judged on (see [`side_by_side`]);
//! 4. writes at the target rate (many in flight): write latency (request →
//!    acknowledged, i.e. committed and applied) and commit → watcher
//!    notified (the watcher's receipt of the change event minus the
//!    writer's receipt of the acknowledgement: the store replies first and
//!    publishes right behind; a value ≤ 0 is counted as 0).
//!
//! With `--authz`, all of it again on a secured store
//! ([`super::secured_store`]: kubus's generated accounts, requests decided
//! by RBAC for an `edit`-bound user), then authorization's cost beside the
//! first run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use kubus_api::Kind;
use kubus_bus::watch::{watch, WatchItem, WatchSpec};
use kubus_bus::Client;
use serde_json::json;

use super::{histogram, summary};
use crate::cli::BenchWatchArgs;
use crate::nats_server::NatsServer;

pub fn run(args: BenchWatchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut nats = NatsServer::start(&dir.path().join("nats-server.log"), None)?;
    let url = nats.url();
    let plain_dir = dir.path().join("plain");
    let result = actix::System::new().block_on(async move {
        let client = Client::connect(&url, "bench").await?;
        let cfg = kubus_storage::StoreConfig::single(plain_dir.join("store"));
        let (store, changes) = kubus_storage::Store::open(cfg, Box::new(kubus_storage::NoPeers))?;
        kubus_actors::store::StoreServer::start(
            store.clone(),
            changes,
            client.nats().clone(),
            "bench",
            Default::default(),
            false,
            kubus_actors::store::seal::Keyring::plain(),
        )
        .await?;
        wait_ready(&client).await?;
        let off = measure(
            &client,
            &store,
            &args,
            "authorization off: no accounts, nobody authorized",
        )
        .await;
        store.shutdown();
        let off = off?;
        if !args.authz {
            return Ok(());
        }
        println!();
        let secured_dir = dir.path().join("secured");
        std::fs::create_dir_all(&secured_dir)?;
        let mut s = super::secured_store(&secured_dir, "bench", false).await?;
        let on = measure(
            &s.user,
            &s.store,
            &args,
            "authorization on: kubus's accounts, RBAC for an edit-bound user",
        )
        .await;
        s.store.shutdown();
        s.nats.stop();
        compare(&off, &on?);
        Ok(())
    });
    nats.stop();
    result
}

/// What one run measured that the comparison needs.
struct Figures {
    get: hdrhistogram::Histogram<u64>,
    update: hdrhistogram::Histogram<u64>,
    apply: hdrhistogram::Histogram<u64>,
    notify: hdrhistogram::Histogram<u64>,
}

/// Authorization's cost: the secured run's figures beside the plain one's.
fn compare(off: &Figures, on: &Figures) {
    let p = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!("\nauthorization's cost (the second run beside the first):");
    let mut worst: f64 = f64::MIN;
    for (what, a, b) in [
        ("API get", &off.get, &on.get),
        ("API update", &off.update, &on.update),
        ("API apply", &off.apply, &on.apply),
    ] {
        let added = 100.0 * (p(b, 0.5) / p(a, 0.5).max(1e-9) - 1.0);
        worst = worst.max(added);
        println!(
            "  {what:<12} p50 {:.3} → {:.3} ms ({added:+.1} %)   p99 {:.3} → {:.3} ms",
            p(a, 0.5),
            p(b, 0.5),
            p(a, 0.99),
            p(b, 0.99)
        );
    }
    println!(
        "  commit → watcher notified p50 {:.3} → {:.3} ms   p99 {:.3} → {:.3} ms",
        p(&off.notify, 0.5),
        p(&on.notify, 0.5),
        p(&off.notify, 0.99),
        p(&on.notify, 0.99)
    );
    println!(
        "goal: authorization adds ≤ 10 % to the API's p50: at most {worst:+.1} % → {}",
        verdict(worst <= 10.0)
    );
}

async fn wait_ready(client: &Client) -> anyhow::Result<()> {
    for _ in 0..100 {
        if client.list(Kind::Namespace, None, None, None).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the store did not come up")
}

async fn measure(
    client: &Client,
    store: &kubus_storage::Store,
    args: &BenchWatchArgs,
    mode: &str,
) -> anyhow::Result<Figures> {
    let rate = args.rate.max(1);
    let count = args.events.max(100);
    println!(
        "kubus bench watch: {count} events at {rate}/s, {} requests one at a time; {mode}",
        args.requests
    );
    println!(
        "(build: {}; fsync on; one store peer; client, store and nats-server share this machine)\n",
        super::build()
    );

    let raw_pubsub = raw_publish_subscribe(client, count, rate).await?;
    let back_to_back_rr = raw_request_reply(client, args.requests).await?;
    let back_to_back_commit = store_commit(store, args.requests).await?;
    let side = side_by_side(client, store, args.requests).await?;
    let (write, notify, achieved) = writes_and_watch(client, count, rate, args.in_flight).await?;

    let row = |what: &str, h: &hdrhistogram::Histogram<u64>| println!("{what:<44} {}", summary(h));
    row("raw NATS publish → subscribe", &raw_pubsub);
    println!("one at a time, side by side (one of each per round):");
    for sample in Sample::ALL {
        row(sample.label(), side.get(sample));
    }
    println!("one at a time, back to back:");
    row("  raw NATS request/reply", &back_to_back_rr);
    row("  store commit, in process", &back_to_back_commit);
    println!("under load:");
    row("  API write → acknowledged (committed)", &write);
    row("  commit → watcher notified", &notify);
    println!();
    println!("writes achieved: {achieved:.0}/s of {rate}/s asked");
    let p99 = |h: &hdrhistogram::Histogram<u64>| h.value_at_quantile(0.99) as f64;
    let raw = side.get(Sample::Raw);
    println!(
        "API get p99 / raw request p99: {:.2}x   (goal ≤ 1.2x; a get commits nothing)",
        p99(side.get(Sample::Get)) / p99(raw).max(1.0)
    );
    let bound = 1.2 * p99(raw) + p99(side.get(Sample::Commit));
    let back_to_back_bound = 1.2 * p99(&back_to_back_rr) + p99(&back_to_back_commit);
    for sample in [Sample::Update, Sample::Apply] {
        let got = p99(side.get(sample));
        println!(
            "{} p99 {:.3} ms vs 1.2 × raw p99 + commit p99 = {:.3} ms: {}   (with the back-to-back figures: {:.3} ms, {})",
            sample.label().trim(),
            got / 1000.0,
            bound / 1000.0,
            verdict(got <= bound),
            back_to_back_bound / 1000.0,
            verdict(got <= back_to_back_bound),
        );
    }
    let cas_bound = 1.2 * p99(raw) + p99(side.get(Sample::CommitCas));
    println!(
        "(for comparison, with the commit of the update's own transaction, a compare-and-swap: 1.2 × raw p99 + its p99 = {:.3} ms; update {})",
        cas_bound / 1000.0,
        verdict(p99(side.get(Sample::Update)) <= cas_bound),
    );
    println!(
        "watch p99: {:.3} ms   (goal ≤ 5 ms)   raw pub/sub p99: {:.3} ms",
        p99(&notify) / 1000.0,
        p99(&raw_pubsub) / 1000.0
    );
    Ok(Figures {
        get: side.get(Sample::Get).clone(),
        update: side.get(Sample::Update).clone(),
        apply: side.get(Sample::Apply).clone(),
        notify,
    })
}

/// Publish `count` 512-byte messages at `rate`/s; the subscriber records
/// each one's latency.
async fn raw_publish_subscribe(
    client: &Client,
    count: usize,
    rate: u64,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let nats = client.nats().clone();
    let subject = "bench.raw.pubsub";
    let mut sub = nats.subscribe(subject).await?;
    nats.flush().await?;
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        let mut h = histogram()?;
        for _ in 0..count {
            let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(10), sub.next()).await
            else {
                break;
            };
            let sent = u64::from_le_bytes(
                msg.payload
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0; 8]),
            );
            let now = start.elapsed().as_micros() as u64;
            h.record(now.saturating_sub(sent).max(1))?;
        }
        anyhow::Ok(h)
    });
    paced(count, rate, |_| {
        let nats = nats.clone();
        async move {
            let mut body = vec![0u8; 512];
            body[..8].copy_from_slice(&(start.elapsed().as_micros() as u64).to_le_bytes());
            let _ = nats.publish(subject, body.into()).await;
        }
    })
    .await;
    reader.await?
}

/// Call `f(i)` `count` times at `rate` per second (each call awaited in
/// turn; a tick that falls behind is made up at once, bounded by count).
async fn paced<F, Fut>(count: usize, rate: u64, mut f: F)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = Instant::now();
    for i in 0..count {
        let due = start + Duration::from_nanos(i as u64 * 1_000_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        f(i).await;
    }
}

/// A responder in this process that sends every request's body back: the
/// raw request/reply baseline.
async fn echo_responder(
    nats: &async_nats::Client,
    subject: &'static str,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut sub = nats.subscribe(subject).await?;
    let responder_nats = nats.clone();
    let responder = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                let _ = responder_nats.publish(reply, msg.payload).await;
            }
        }
    });
    nats.flush().await?;
    Ok(responder)
}

async fn raw_request_reply(
    client: &Client,
    n: usize,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let nats = client.nats().clone();
    let subject = "bench.raw.echo";
    let responder = echo_responder(&nats, subject).await?;
    let mut h = histogram()?;
    let body = bytes::Bytes::from(vec![0u8; 256]);
    for _ in 0..n {
        let t = Instant::now();
        nats.request(subject, body.clone()).await?;
        h.record((t.elapsed().as_micros() as u64).max(1))?;
    }
    responder.abort();
    Ok(h)
}

/// The commit baselines' transaction: one 256-byte put, unconditional or
/// a compare-and-swap.
fn put_256(key: String, expect: kubus_storage::Precondition) -> kubus_storage::Txn {
    kubus_storage::Txn {
        ops: vec![kubus_storage::Op::Put {
            key,
            value: vec![7u8; 256],
            expect,
        }],
    }
}

/// The store's own commit time: a 256-byte put proposed in process and
/// acknowledged after fsync, commit and apply; one at a time, back to back.
async fn store_commit(
    store: &kubus_storage::Store,
    n: usize,
) -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    let mut h = histogram()?;
    for i in 0..n {
        let txn = put_256(
            format!("/bench/b2b/{i:08}"),
            kubus_storage::Precondition::None,
        );
        let t = Instant::now();
        store.propose(txn).await?;
        h.record((t.elapsed().as_micros() as u64).max(1))?;
    }
    Ok(h)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "within the goal"
    } else {
        "over the goal"
    }
}

/// The one-at-a-time requests measured side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sample {
    Raw,
    Get,
    Commit,
    CommitCas,
    Update,
    Apply,
}

impl Sample {
    const ALL: [Sample; 6] = [
        Sample::Raw,
        Sample::Get,
        Sample::Commit,
        Sample::CommitCas,
        Sample::Update,
        Sample::Apply,
    ];

    fn label(self) -> &'static str {
        match self {
            Sample::Raw => "  raw NATS request/reply",
            Sample::Get => "  API get",
            Sample::Commit => "  store commit, in process",
            Sample::CommitCas => "  store commit of an update (CAS), in process",
            Sample::Update => "  API update (CAS)",
            Sample::Apply => "  API apply",
        }
    }
}

struct SideBySide {
    histograms: Vec<hdrhistogram::Histogram<u64>>,
}

impl SideBySide {
    fn get(&self, sample: Sample) -> &hdrhistogram::Histogram<u64> {
        &self.histograms[sample as usize]
    }
}

/// `rounds` rounds, each taking one sample of every kind in an order that
/// rotates from round to round, so that every kind sees the same machine:
/// this disk's fsync latency drifts within seconds, and a thread woken
/// after a wait (as the Raft thread is between API requests) starts slower
/// than one kept busy by back-to-back commits.
///
/// - raw: a 256-byte NATS request to an echo responder in this process;
/// - get: API `get` of one ConfigMap (the store's read path);
/// - commit: a 256-byte put proposed in process, acknowledged after fsync,
///   commit and apply;
/// - commit of an update: the same, but replacing one key's value with a
///   compare-and-swap on its revision, the transaction an API update
///   proposes (printed for comparison; the goal is judged on the put);
/// - update: API update of one ConfigMap with the resourceVersion the
///   previous returned (compare-and-swap, as controllers write);
/// - apply: API apply of another (read, three-way merge with the last
///   applied configuration, compare-and-swap update).
async fn side_by_side(
    client: &Client,
    store: &kubus_storage::Store,
    rounds: usize,
) -> anyhow::Result<SideBySide> {
    let nats = client.nats().clone();
    let subject = "bench.raw.echo.side";
    let responder = echo_responder(&nats, subject).await?;
    let body = bytes::Bytes::from(vec![0u8; 256]);
    client
        .apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "bench-get", "namespace": "default"}, "data": {"k": "v"}}))
        .await?;
    let (_, mut current) = client
        .apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "bench-update", "namespace": "default"}, "data": {"i": "0"}}))
        .await?;
    let cas_key = "/bench/_cas".to_string();
    let mut cas_revision = match store
        .propose(put_256(cas_key.clone(), kubus_storage::Precondition::None))
        .await?
    {
        kubus_storage::TxnOutcome::Committed { revision, .. } => revision,
        kubus_storage::TxnOutcome::Failed { .. } => anyhow::bail!("an unconditional put failed"),
    };
    let mut histograms = Sample::ALL
        .iter()
        .map(|_| histogram())
        .collect::<anyhow::Result<Vec<_>>>()?;
    for round in 0..rounds {
        for k in 0..Sample::ALL.len() {
            let sample = Sample::ALL[(round + k) % Sample::ALL.len()];
            let i = round.to_string();
            let t = Instant::now();
            match sample {
                Sample::Raw => {
                    nats.request(subject, body.clone()).await?;
                }
                Sample::Get => {
                    client
                        .get(Kind::ConfigMap, Some("default"), "bench-get")
                        .await?;
                }
                Sample::Commit => {
                    store
                        .propose(put_256(
                            format!("/bench/_/{round:08}"),
                            kubus_storage::Precondition::None,
                        ))
                        .await?;
                }
                Sample::CommitCas => {
                    let expect = kubus_storage::Precondition::ModRevision(cas_revision);
                    match store.propose(put_256(cas_key.clone(), expect)).await? {
                        kubus_storage::TxnOutcome::Committed { revision, .. } => {
                            cas_revision = revision;
                        }
                        kubus_storage::TxnOutcome::Failed { .. } => {
                            anyhow::bail!("the compare-and-swap baseline lost its own race")
                        }
                    }
                }
                Sample::Update => {
                    current["data"] = json!({ "i": i });
                    current = client.update(current).await?;
                }
                Sample::Apply => {
                    client
                        .apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "bench-put", "namespace": "default"},
                            "data": {"i": i}}))
                        .await?;
                }
            }
            histograms[sample as usize].record((t.elapsed().as_micros() as u64).max(1))?;
        }
    }
    responder.abort();
    Ok(SideBySide { histograms })
}

type Acks = Arc<Mutex<HashMap<String, Instant>>>;

/// Create `count` ConfigMaps at `rate`/s with up to `in_flight` requests
/// under way, while a watcher (the bus watch client) receives their events.
async fn writes_and_watch(
    client: &Client,
    count: usize,
    rate: u64,
    in_flight: usize,
) -> anyhow::Result<(
    hdrhistogram::Histogram<u64>,
    hdrhistogram::Histogram<u64>,
    f64,
)> {
    let acks: Acks = Arc::new(Mutex::new(HashMap::with_capacity(count)));
    let seen: Acks = Arc::new(Mutex::new(HashMap::with_capacity(count)));
    let mut rx = watch(client.clone(), WatchSpec::all(client, Kind::ConfigMap));
    // wait for the watch's first list
    while let Some(item) = rx.recv().await {
        if matches!(item, WatchItem::Relisted { .. }) {
            break;
        }
    }
    let seen_w = seen.clone();
    let watcher = tokio::spawn(async move {
        let mut n = 0;
        while n < count {
            let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await
            else {
                break;
            };
            if let WatchItem::Event(e) = item {
                let now = Instant::now();
                if let Some(name) = e.object.pointer("/metadata/name").and_then(|v| v.as_str()) {
                    if name.starts_with("bench-w-") {
                        if let Ok(mut s) = seen_w.lock() {
                            s.insert(name.to_string(), now);
                        }
                        n += 1;
                    }
                }
            }
        }
    });
    let permits = Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
    let write_h = Arc::new(Mutex::new(histogram()?));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let due = start + Duration::from_nanos(i as u64 * 1_000_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        // at most `in_flight` writes under way: the pace slows if the store does
        let permit = permits.clone().acquire_owned().await?;
        let name = format!("bench-w-{i}");
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"}, "data": {"i": i.to_string()}});
        tasks.push(write_one(
            client.clone(),
            obj,
            name,
            acks.clone(),
            write_h.clone(),
            permit,
        ));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = watcher.await;
    let mut notify = histogram()?;
    let acks = acks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    for (name, acked) in acks.iter() {
        if let Some(at) = seen.get(name) {
            let d = at.checked_duration_since(*acked).unwrap_or(Duration::ZERO);
            notify.record((d.as_micros() as u64).max(1))?;
        }
    }
    let write = write_h
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    Ok((write, notify, acks.len() as f64 / elapsed))
}

fn write_one(
    client: Client,
    obj: serde_json::Value,
    name: String,
    acks: Acks,
    write_h: Arc<Mutex<hdrhistogram::Histogram<u64>>>,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let t = Instant::now();
        if client.create(obj).await.is_ok() {
            let done = Instant::now();
            if let Ok(mut h) = write_h.lock() {
                let _ = h.record((t.elapsed().as_micros() as u64).max(1));
            }
            if let Ok(mut a) = acks.lock() {
                a.insert(name, done);
            }
        }
        drop(permit);
    })
}
