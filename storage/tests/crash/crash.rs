//! Crash tests: a 3-peer cluster in a child process dies at one failpoint
//! (its panic hook aborts: no unwinding, no flush, as on `kill -9`), then
//! the parent reopens the three data directories and checks that every
//! peer comes back and that every write the child saw acknowledged is
//! there, read linearizably, with equal state on every peer.
//!
//! Needs the `failpoints` feature:
//! `cargo test --workspace --features kubus-storage/failpoints --test crash` (named from the workspace: `-p` would build RocksDB again).
//!
//! The same test with fsync off (`StoreConfig::fsync`, a test-only switch)
//! must see loss: that is what proves it can.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::sim::workload::{key, write_range, write_with_a_lagging_follower, OnAck, WRITE_WAIT};
use crate::sim::{runtime, Cluster, Net};
use kubus_storage::failpoints as fp;
use kubus_storage::{StoreConfig, StoreError};

/// The child's data directory; its presence makes `crash_child` run.
const ENV_DIR: &str = "KUBUS_CRASH_DIR";
const ENV_FAILPOINT: &str = "KUBUS_CRASH_FAILPOINT";
const ENV_ACTIONS: &str = "KUBUS_CRASH_ACTIONS";
const ENV_FSYNC: &str = "KUBUS_CRASH_FSYNC";
/// Set: the child writes more under a tiny memtable budget, so RocksDB
/// flushes many times before the crash.
const ENV_FLUSHES: &str = "KUBUS_CRASH_FLUSHES";
/// The memtable budget of the flushing child: RocksDB's smallest.
const FLUSHING_MEMTABLE_BYTES: usize = kubus_storage::config::MEMTABLE_BYTES_MIN;
/// Writes of the flushing child.
const FLUSHING_WRITES: u64 = 1500;
/// What the child prints for each acknowledged write: `ACK <i>`.
const ACK: &str = "ACK ";
/// Printed once the failpoint is armed (at the end of the harness's
/// `test crash_child ... ` line).
const ARMED: &str = "ARMED";
/// Printed when the child's workload ended without the failpoint firing.
const DONE: &str = "DONE";
/// The longest a child may run.
const CHILD_DEADLINE: Duration = Duration::from_secs(120);
const PEERS: [u64; 3] = [1, 2, 3];
const SEED: u64 = 77;
/// The signal `std::process::abort` raises (6 on Linux).
const SIGABRT: i32 = 6;

fn fsync_on(cfg: &mut StoreConfig) {
    cfg.fsync = true;
}

fn fsync_on_flushing(cfg: &mut StoreConfig) {
    cfg.fsync = true;
    cfg.memtable_bytes = FLUSHING_MEMTABLE_BYTES;
}

fn fsync_off(cfg: &mut StoreConfig) {
    cfg.fsync = false;
}

/// Runs in the child process only (the parent starts it with the
/// environment set); a no-op otherwise.
#[test]
#[ignore = "the crash tests run it in a child process"]
fn crash_child() {
    let Ok(base) = std::env::var(ENV_DIR) else {
        return;
    };
    let failpoint = std::env::var(ENV_FAILPOINT).expect("failpoint");
    let actions = std::env::var(ENV_ACTIONS).expect("actions");
    let fsync = std::env::var(ENV_FSYNC).is_ok_and(|v| v == "1");
    let flushes = std::env::var_os(ENV_FLUSHES).is_some();
    // A panic anywhere (the failpoint's, on a Raft thread) ends the process
    // at once, without unwinding or closing anything.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("child: {info}; aborting");
        std::process::abort();
    }));
    let configure = match (fsync, flushes) {
        (true, true) => fsync_on_flushing,
        (true, false) => fsync_on,
        (false, _) => fsync_off,
    };
    let mut cluster =
        Cluster::start_in(Net::new(SEED), Some(PathBuf::from(base)), &PEERS, configure);
    let rt = runtime();
    cluster.wait_leader(Duration::from_secs(10));
    fail::cfg(failpoint, &actions).expect("failpoint actions");
    println!("{ARMED}");
    // Stdout is line-buffered: the line is out before the next write
    // starts.
    let ack: OnAck = Arc::new(|i| println!("{ACK}{i}"));
    if flushes {
        write_range(&rt, &cluster, 0..FLUSHING_WRITES, &ack);
    }
    write_range(&rt, &cluster, 0..160, &ack);
    // A follower misses more than the kept log: it will need a snapshot.
    write_with_a_lagging_follower(&rt, &mut cluster, &PEERS, &ack);
    cluster.wait_converged(Duration::from_secs(20));
    println!("{DONE}");
}

/// What became of one crash.
struct Crash {
    /// Writes the child saw acknowledged.
    acked: Vec<u64>,
    /// The child died by SIGABRT (the failpoint fired).
    aborted: bool,
    /// The child's stderr, for messages.
    stderr: String,
}

/// Runs the child against `base` with `failpoint` set to `actions`.
fn crash(base: &Path, failpoint: &str, actions: &str, fsync: bool) -> Crash {
    crash_child_in(base, failpoint, actions, fsync, false)
}

/// [`crash`], with the flushing workload when `flushes`.
fn crash_child_in(
    base: &Path,
    failpoint: &str,
    actions: &str,
    fsync: bool,
    flushes: bool,
) -> Crash {
    let stderr_path = base.join("child.stderr");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut command = crate::child::test_in_child("crash::crash_child");
    if flushes {
        command.env(ENV_FLUSHES, "1");
    }
    let mut child = command
        .env(ENV_DIR, base)
        .env(ENV_FAILPOINT, failpoint)
        .env(ENV_ACTIONS, actions)
        .env(ENV_FSYNC, if fsync { "1" } else { "0" })
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + CHILD_DEADLINE;
    let mut acked = Vec::new();
    let mut armed = false;
    let status = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(i) = line.strip_prefix(ACK) {
                    acked.push(i.trim().parse::<u64>().expect("ACK <index>"));
                } else if line.ends_with(ARMED) {
                    armed = true;
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        if let Some(status) = child.try_wait().expect("child status") {
            break status;
        }
        if Instant::now() >= deadline {
            // Stopped by its PID (the handle), never by name.
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child ran past {CHILD_DEADLINE:?}");
        }
    };
    let _ = reader.join();
    // Lines read after the exit.
    for line in rx.try_iter() {
        if let Some(i) = line.strip_prefix(ACK) {
            acked.push(i.trim().parse::<u64>().expect("ACK <index>"));
        }
    }
    assert!(armed, "the child never armed the failpoint: {status:?}");
    Crash {
        acked,
        aborted: status.signal() == Some(SIGABRT),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// Reopens the cluster in `base` and checks every acknowledged write;
/// `Err` says what was lost or what failed.
fn recover(base: &Path, acked: &[u64]) -> Result<String, String> {
    let mut cluster = Cluster::empty(Net::new(SEED + 1), Some(base.to_path_buf()), fsync_on);
    for id in PEERS {
        cluster
            .try_open(id, PEERS.to_vec())
            .map_err(|e: StoreError| format!("peer {id} did not open: {e}"))?;
    }
    let leader = cluster.try_leader(Duration::from_secs(20))?;
    let rt = runtime();
    let store = cluster.store(leader).clone();
    let mut lost = Vec::new();
    for &i in acked {
        let kv = rt
            .block_on(async {
                tokio::time::timeout(WRITE_WAIT, store.get_linearizable(&key(i))).await
            })
            .map_err(|_| format!("read of {} timed out", key(i)))?
            .map_err(|e| format!("read of {}: {e}", key(i)))?;
        if kv.map(|kv| kv.value) != Some(i.to_be_bytes().to_vec()) {
            lost.push(i);
        }
    }
    if !lost.is_empty() {
        return Err(format!(
            "{} of {} acknowledged writes lost (first: {:?})",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(5)]
        ));
    }
    let revision = cluster.try_converged(Duration::from_secs(20))?;
    let hashes: Vec<_> = PEERS.iter().map(|&p| cluster.state_hash(p)).collect();
    if !hashes.windows(2).all(|w| w[0] == w[1]) {
        return Err(format!("state differs between peers: {hashes:?}"));
    }
    Ok(format!(
        "leader {leader}, revision {revision}, all {} acknowledged writes present",
        acked.len()
    ))
}

/// The child died by `failpoint`, not by anything else.
fn assert_fired(c: &Crash, failpoint: &str) {
    assert!(
        c.aborted && c.stderr.contains(&format!("failpoint {failpoint} panic")),
        "the child did not die at {failpoint}:\n{}",
        c.stderr
    );
}

/// Crashes at `failpoint` (after `actions`) with fsync on and checks that
/// nothing acknowledged was lost.
fn crash_and_recover(failpoint: &str, actions: &str) {
    let base = tempfile::tempdir().expect("tempdir");
    let c = crash(base.path(), failpoint, actions, true);
    assert_fired(&c, failpoint);
    let report = recover(base.path(), &c.acked)
        .unwrap_or_else(|e| panic!("after a crash at {failpoint}: {e}\nchild:\n{}", c.stderr));
    eprintln!(
        "{failpoint} ({actions}): crashed after {} acknowledged writes; {report}",
        c.acked.len()
    );
}

// One test per persist step; the actions let the workload get going first
// (a count passes that many evaluations, across the three peers).

#[test]
fn crash_before_log_append() {
    crash_and_recover(fp::BEFORE_LOG_APPEND, "150*off->panic");
}

#[test]
fn crash_after_log_append() {
    crash_and_recover(fp::AFTER_LOG_APPEND, "150*off->panic");
}

#[test]
fn crash_after_hard_state() {
    crash_and_recover(fp::AFTER_HARD_STATE, "200*off->panic");
}

#[test]
fn crash_inside_the_apply_batch() {
    crash_and_recover(fp::APPLY_BATCH, "150*off->panic");
}

#[test]
fn crash_after_the_apply_batch() {
    crash_and_recover(fp::AFTER_APPLY, "150*off->panic");
}

#[test]
fn crash_at_log_compaction() {
    crash_and_recover(fp::LOG_COMPACTION, "3*off->panic");
}

#[test]
fn crash_at_snapshot_save() {
    crash_and_recover(fp::SNAPSHOT_SAVE, "panic");
}

#[test]
fn crash_before_snapshot_apply() {
    crash_and_recover(fp::SNAPSHOT_APPLY, "panic");
}

#[test]
fn crash_after_snapshot_apply() {
    crash_and_recover(fp::AFTER_SNAPSHOT_APPLY, "panic");
}

/// The state machine's writes bypass RocksDB's write-ahead log: a crash
/// keeps what the last flush wrote of them, and the peer applies the rest
/// again from the Raft log. Here RocksDB flushes many times before the
/// crash (a tiny memtable budget, small log retention so that compactions
/// are flushed too), and the crash comes between flushes: every peer must
/// come back with every acknowledged write, so the flushed state and the
/// flushed log truncation always match.
#[test]
fn crash_between_memtable_flushes() {
    let base = tempfile::tempdir().expect("tempdir");
    let c = crash_child_in(base.path(), fp::AFTER_APPLY, "1200*off->panic", true, true);
    assert_fired(&c, fp::AFTER_APPLY);
    let flushed: Vec<usize> = PEERS
        .iter()
        .map(|id| flushes_logged(&base.path().join(id.to_string())))
        .collect();
    assert!(
        flushed.iter().all(|n| *n >= 2),
        "each peer should have flushed its memtables at least twice before the crash: {flushed:?}"
    );
    let report = recover(base.path(), &c.acked)
        .unwrap_or_else(|e| panic!("after a crash between flushes: {e}\nchild:\n{}", c.stderr));
    eprintln!(
        "crashed after {} acknowledged writes and {flushed:?} flushes; {report}",
        c.acked.len()
    );
}

/// Flushes RocksDB finished in `dir`, by its info log.
fn flushes_logged(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("LOG"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|text| text.matches("\"event\": \"flush_finished\"").count())
        .sum()
}

#[test]
fn every_failpoint_has_a_crash_test() {
    let tested = [
        fp::BEFORE_LOG_APPEND,
        fp::AFTER_LOG_APPEND,
        fp::AFTER_HARD_STATE,
        fp::APPLY_BATCH,
        fp::AFTER_APPLY,
        fp::LOG_COMPACTION,
        fp::SNAPSHOT_SAVE,
        fp::SNAPSHOT_APPLY,
        fp::AFTER_SNAPSHOT_APPLY,
    ];
    assert_eq!(kubus_storage::FAILPOINTS, tested.as_slice());
}

/// The same crash with fsync off must lose acknowledged writes, or the
/// tests above prove nothing. Whether the unsynced tail is still buffered at
/// the crash depends on timing (a memtable flush writes it out), so a few
/// attempts are allowed; one loss shows the test can see it.
#[test]
fn with_fsync_off_the_crash_test_sees_loss() {
    const ATTEMPTS: usize = 5;
    let mut reports = Vec::new();
    for attempt in 0..ATTEMPTS {
        let base = tempfile::tempdir().expect("tempdir");
        let c = crash(base.path(), fp::AFTER_APPLY, "150*off->panic", false);
        assert_fired(&c, fp::AFTER_APPLY);
        assert!(
            !c.acked.is_empty(),
            "nothing was acknowledged before the crash"
        );
        match recover(base.path(), &c.acked) {
            Ok(report) => reports.push(format!("attempt {attempt}: {report}")),
            Err(loss) => {
                eprintln!("fsync off: {loss} — the crash test sees it");
                return;
            }
        }
    }
    panic!(
        "fsync off, yet the crash test saw no loss in {ATTEMPTS} attempts ({}): it cannot tell fsync on from off",
        reports.join("; ")
    );
}
