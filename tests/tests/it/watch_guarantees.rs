//! etcd's six watch guarantees — ordered, unique, atomic, bookmarkable,
//! reliable, resumable — for five watchers (separate `kubus get -w`
//! processes, three resuming from random revisions) during a write load,
//! while (a) nats-server is killed and restarted, (b) a watcher is frozen
//! (SIGSTOP) until the server cuts it off as a slow consumer, and (c) the
//! store is restarted. See issue 4.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kubus_api::Kind;
use kubus_bus::protocol::EventType;
use kubus_bus::Client;
use kubus_tests::{kubus_bin, wait_for};
use serde_json::{json, Value};

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// A child process stopped by its PID when the guard drops (also when the
/// test panics).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            stop(&mut self.0);
        }
    }
}

fn stop(child: &mut Child) {
    signal(child.id(), "-CONT"); // a frozen watcher must run to see TERM
    signal(child.id(), "-TERM");
    if wait_for(Duration::from_secs(20), || child.try_wait().ok().flatten()).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A nats-server on a fixed loopback port, with a small pending buffer so a
/// frozen client is cut off as a slow consumer.
struct Nats {
    child: Option<Child>,
    port: u16,
    conf: std::path::PathBuf,
}

impl Nats {
    fn start(dir: &Path) -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let conf = dir.join("nats.conf");
        std::fs::write(
            &conf,
            format!("listen: 127.0.0.1:{port}\nmax_pending: 1048576\nwrite_deadline: \"1s\"\n"),
        )
        .expect("nats.conf");
        let mut n = Nats {
            child: None,
            port,
            conf,
        };
        n.launch();
        n
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.conf.with_extension("log"))
            .expect("nats log");
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&self.conf)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("nats-server");
        self.child = Some(child);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_for(Duration::from_secs(10), || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).ok()
        })
        .expect("nats-server up");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

fn store(url: &str, data: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Command::new(kubus_bin())
        .args(["node", "--roles", "store", "--nats", url, "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "info")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("kubus node")
}

/// A watcher process: `kubus get configmaps -A -w -o json [--since R]`.
fn watcher(url: &str, out: &Path, since: Option<u64>) -> Child {
    let file = std::fs::File::create(out).expect("out");
    let mut args = vec!["get", "configmaps", "-A", "-w", "-o", "json"];
    let since_text = since.map(|s| s.to_string());
    if let Some(s) = &since_text {
        args.extend(["--since", s.as_str()]);
    }
    Command::new(kubus_bin())
        .args(&args)
        .env("KUBUS_NATS", url)
        .env("KUBUS_HOME", out.with_extension("home"))
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .expect("watcher")
}

/// One change as a watcher or the history reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    revision: u64,
    kind: String,
    name: String,
}

fn seen(kind: &str, object: &Value) -> Seen {
    Seen {
        revision: object["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        kind: kind.to_string(),
        name: object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

/// What one watcher printed: segments, each starting at a revision (its
/// resume point or a relist) with the changes after it; and bookmarks.
struct Output {
    segments: Vec<(u64, Vec<Seen>)>,
    bookmarks: Vec<u64>,
}

fn parse(path: &Path, since: Option<u64>) -> Output {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut segments: Vec<(u64, Vec<Seen>)> = Vec::new();
    if let Some(s) = since {
        segments.push((s, Vec::new()));
    }
    let mut bookmarks = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        match v["type"].as_str().unwrap_or_default() {
            "RELISTED" => segments.push((v["revision"].as_u64().unwrap_or(0), Vec::new())),
            "BOOKMARK" => bookmarks.push(v["revision"].as_u64().unwrap_or(0)),
            t => {
                if let Some(seg) = segments.last_mut() {
                    seg.1.push(seen(t, &v["object"]));
                }
            }
        }
    }
    Output {
        segments,
        bookmarks,
    }
}

async fn history(client: &Client) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut since = 0;
    for _ in 0..1000 {
        let (events, through, more) = client
            .changes(Kind::ConfigMap, since, None)
            .await
            .expect("history");
        for e in events {
            let t = match e.event_type {
                EventType::Added => "ADDED",
                EventType::Modified => "MODIFIED",
                EventType::Deleted => "DELETED",
                EventType::Bookmark => continue,
            };
            out.push(seen(t, &e.object));
        }
        since = through;
        if !more {
            break;
        }
    }
    out
}

/// Writes: create, update and delete ConfigMaps cm-0..cm-29; retried through
/// outages (bounded). Returns the number of acknowledged writes.
async fn load(url: String, writer: usize, ops: usize) -> usize {
    let mut acked = 0;
    let mut client = None;
    let filler = "x".repeat(16 * 1024);
    for i in 0..ops {
        let name = format!("cm-{}", (i * 7 + writer * 3) % 30);
        for _attempt in 0..200 {
            if client.is_none() {
                client = Client::connect(&url, "kubus").await.ok();
            }
            let Some(c) = &client else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": "default"},
                // 16 KiB per object: a frozen watcher's backlog grows fast
                "data": {"writer": writer.to_string(), "op": i.to_string(), "filler": filler}});
            let r = if i % 5 == 4 {
                let target = kubus_api::ObjectRef::new(Kind::ConfigMap, Some("default"), &name);
                c.delete(&target, None).await.map(|_| ())
            } else {
                c.apply(obj).await.map(|_| ())
            };
            match r {
                Ok(()) => {
                    acked += 1;
                    break;
                }
                Err(e) if e.reason().is_some() && !e.is_transient() => break, // NotFound on delete
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    acked
}

#[test]
fn watches_keep_etcds_six_guarantees_through_faults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nats = Nats::start(dir.path());
    let url = nats.url();
    let data = dir.path().join("store");
    let store_log = dir.path().join("store.log");
    let mut store_child = Guard(store(&url, &data, &store_log));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let client = rt
        .block_on(async {
            for _ in 0..100 {
                if let Ok(c) = Client::connect(&url, "kubus").await {
                    if c.list(Kind::Namespace, None, None, None).await.is_ok() {
                        return Some(c);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        })
        .expect("store up");

    // some history before the watchers start, so resumes have somewhere to go
    rt.block_on(load(url.clone(), 9, 60));
    let head = rt
        .block_on(history(&client))
        .last()
        .map_or(0, |s| s.revision);
    let seed = std::env::var("KUBUS_WATCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(head);
    let resume_points: Vec<u64> = (0..3).map(|i| (seed * 31 + i * 17) % head.max(1)).collect();
    println!("history head {head}; resume points {resume_points:?}");

    let mut watchers = Vec::new();
    for i in 0..5 {
        let out = dir.path().join(format!("watcher-{i}.jsonl"));
        let since = resume_points.get(i).copied();
        watchers.push((Guard(watcher(&url, &out, since)), out, since));
    }
    std::thread::sleep(Duration::from_secs(1));

    // the load runs while the faults happen
    let loads: Vec<_> = (0..3)
        .map(|w| rt.spawn(load(url.clone(), w, 400)))
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    // (a) the bus dies and comes back on the same port
    nats.kill();
    std::thread::sleep(Duration::from_secs(2));
    nats.launch();
    std::thread::sleep(Duration::from_millis(1500));
    // (b) a watcher freezes under load until the server cuts it off
    let frozen = watchers[4].0 .0.id();
    signal(frozen, "-STOP");
    // more load while it is frozen, however far the main load got, until the
    // server gives up on it (bounded by the wait below and by count)
    let flooding = Arc::new(AtomicBool::new(true));
    let flood = {
        let (url, flooding) = (url.clone(), flooding.clone());
        rt.spawn(async move {
            let mut acked = 0;
            for _ in 0..40 {
                if !flooding.load(Ordering::Relaxed) {
                    break;
                }
                acked += load(url.clone(), 3, 25).await;
            }
            acked
        })
    };
    let cut_off = wait_for(Duration::from_secs(20), || {
        let log = std::fs::read_to_string(dir.path().join("nats.log")).unwrap_or_default();
        log.contains("Slow Consumer").then_some(())
    });
    flooding.store(false, Ordering::Relaxed);
    signal(frozen, "-CONT");
    assert!(
        cut_off.is_some(),
        "the frozen watcher was never cut off as a slow consumer"
    );
    // (c) the store restarts on its data
    stop(&mut store_child.0);
    store_child = Guard(store(&url, &data, &store_log));
    let acked: usize = rt.block_on(async {
        let mut n = flood.await.unwrap_or(0);
        for l in loads {
            n += l.await.unwrap_or(0);
        }
        n
    });
    assert!(acked > 500, "the load made progress ({acked} acknowledged)");
    let truth = rt.block_on(history(&client));
    let final_rev = truth.last().map_or(0, |s| s.revision);

    // every watcher reaches the final revision (reliable), then stops
    for (child, out, since) in &mut watchers {
        let reached = wait_for(Duration::from_secs(30), || {
            let o = parse(out, *since);
            let last = o
                .segments
                .last()
                .and_then(|(start, s)| s.last().map(|x| x.revision).or(Some(*start)));
            (last >= Some(final_rev) || o.bookmarks.last() >= Some(&final_rev)).then_some(())
        });
        stop(&mut child.0);
        assert!(
            reached.is_some(),
            "{} never caught up to revision {final_rev}",
            out.display()
        );
    }

    let mut violations = Vec::new();
    for (_, out, since) in &watchers {
        let o = parse(out, *since);
        assert!(!o.segments.is_empty(), "{} printed nothing", out.display());
        for (start, got) in &o.segments {
            // what the history says happened after this segment's start
            let expected: Vec<&Seen> = truth
                .iter()
                .filter(|s| s.revision > *start)
                .take(got.len())
                .collect();
            let got_refs: Vec<&Seen> = got.iter().collect();
            if got_refs != expected {
                let first_diff = got_refs.iter().zip(&expected).position(|(a, b)| a != b);
                violations.push(format!(
                    "{}: segment from {start}: {} events, first difference at {first_diff:?}: got {:?} expected {:?}",
                    out.display(),
                    got.len(),
                    first_diff.and_then(|i| got_refs.get(i)),
                    first_diff.and_then(|i| expected.get(i))
                ));
            }
            // ordered and unique: revisions never go back; a revision repeats
            // only for the several objects of one transaction
            let mut by_rev: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
            for w in got.windows(2) {
                if w[1].revision < w[0].revision {
                    violations.push(format!(
                        "{}: revision went back {} → {}",
                        out.display(),
                        w[0].revision,
                        w[1].revision
                    ));
                }
            }
            for s in got {
                by_rev.entry(s.revision).or_default().push(&s.name);
            }
            for (rev, names) in by_rev {
                let mut sorted = names.clone();
                sorted.dedup();
                if sorted.len() != names.len() {
                    violations.push(format!("{}: revision {rev} delivered twice", out.display()));
                }
            }
        }
        // the last segment ends at the final revision: nothing lost at the end
        let (start, last_seg) = o
            .segments
            .last()
            .map(|(s, g)| (*s, g.clone()))
            .unwrap_or_default();
        let tail = last_seg.last().map_or(start, |s| s.revision);
        if tail < final_rev && o.bookmarks.last().copied().unwrap_or(0) < final_rev {
            violations.push(format!(
                "{}: ended at {tail}, final is {final_rev}",
                out.display()
            ));
        }
        // bookmarkable: bookmarks arrived and never ran ahead of delivery
        if o.bookmarks.is_empty() {
            violations.push(format!("{}: no bookmarks", out.display()));
        }
    }
    let _ = std::io::stdout().flush();
    if !violations.is_empty() {
        let log = std::fs::read_to_string(&store_log).unwrap_or_default();
        panic!(
            "{} violations:\n{}\nstore log tail:\n{}",
            violations.len(),
            violations.join("\n"),
            &log[log.len().saturating_sub(3000)..]
        );
    }
    println!(
        "5 watchers, {acked} acknowledged writes, final revision {final_rev}: zero violations"
    );
    drop(store_child);
}
