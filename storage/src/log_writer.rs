//! The log writer: one thread per peer that writes what the Raft thread
//! persists — new log entries and HardState, one batch per Ready — in
//! order, with **one** fsync for everything queued while the previous one
//! ran, and only then sends the messages that promise those writes
//! (a follower's append acks and votes).
//!
//! The Raft thread never waits for the disk: while a sync runs it keeps
//! stepping messages (a leader counts its followers' acks and commits),
//! applying committed entries and gathering the next proposals (raft-rs'
//! asynchronous Ready: `advance_append_async`, then `on_persist_ready`
//! with the number [`LogWriter::persisted`] reports). etcd's server does the
//! same: its WAL is saved while the previous entries apply.
//!
//! Bounds: at most [`WRITES_QUEUED_MAX`] Readys wait for the writer (the
//! Raft thread blocks on a full queue, which only a slow disk fills) and
//! one round takes at most that many.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use raft::prelude::Message;
use rocksdb::{WriteBatch, WriteOptions};

use crate::coalesce::coalesce;
use crate::error::StoreError;
use crate::peer::{lock, Command, Shared, RAFT_MSG_BYTES_MAX};
use crate::transport::Transport;

/// Readys handed over and not yet written, at most.
pub const WRITES_QUEUED_MAX: usize = 16;

/// Longest wait for the writer to finish what it was handed.
pub const DRAIN_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(60);
/// How often a drain looks at the writer's progress.
const DRAIN_POLL: std::time::Duration = std::time::Duration::from_micros(100);

/// What one Ready persists.
pub(crate) struct LogWrite {
    /// The Ready's number (raft-rs), reported back once written.
    pub number: u64,
    /// Its entries and HardState (may be empty).
    pub batch: WriteBatch,
    /// Whether the write must be synced before `messages` leave.
    pub sync: bool,
    /// How many log entries `batch` holds.
    pub entries: u64,
    /// Whether `batch` holds a HardState.
    pub hard_state: bool,
    /// Messages that promise this write: sent after it.
    pub messages: Vec<Message>,
}

/// The transport, shared by the Raft thread (a leader's appends, sent
/// before they persist) and the writer (what must wait for the disk).
pub(crate) type SharedTransport = Arc<Mutex<Box<dyn Transport>>>;

/// Sends `messages` to the other peers, what goes to each one merged
/// first ([`coalesce`]): the one way messages leave a peer.
pub(crate) fn send(transport: &SharedTransport, messages: Vec<Message>) {
    lock(transport).send(coalesce(messages, RAFT_MSG_BYTES_MAX));
}

/// How far the writer got, shared with the Raft thread.
#[derive(Default)]
struct Progress {
    /// Number of the last Ready written (and synced when it had to be).
    persisted: AtomicU64,
    /// A write failed: the writer stopped and the peer must stop.
    failed: AtomicBool,
    error: Mutex<Option<String>>,
}

/// The Raft thread's side of the writer.
pub(crate) struct LogWriter {
    tx: Option<SyncSender<LogWrite>>,
    thread: Option<JoinHandle<()>>,
    progress: Arc<Progress>,
    /// Number of the last Ready handed over.
    submitted: u64,
}

impl LogWriter {
    /// Starts the writer thread of peer `peer_id`. It wakes the Raft thread
    /// through `wake` after each round (never blocking: a full command
    /// queue wakes the thread anyway).
    pub fn start(
        peer_id: u64,
        shared: Arc<Shared>,
        transport: SharedTransport,
        wake: SyncSender<Command>,
    ) -> Result<LogWriter, StoreError> {
        let (tx, rx) = sync_channel(WRITES_QUEUED_MAX);
        let progress = Arc::new(Progress::default());
        let theirs = Arc::clone(&progress);
        let thread = std::thread::Builder::new()
            .name(format!("kubus-log-{peer_id}"))
            .spawn(move || run(rx, shared, transport, wake, theirs))?;
        Ok(LogWriter {
            tx: Some(tx),
            thread: Some(thread),
            progress,
            submitted: 0,
        })
    }

    /// Hands one Ready's write over, waiting while the queue is full.
    pub fn submit(&mut self, write: LogWrite) -> Result<(), StoreError> {
        self.check()?;
        let number = write.number;
        let sent = self.tx.as_ref().map(|tx| tx.send(write));
        match sent {
            Some(Ok(())) => {
                self.submitted = number;
                Ok(())
            }
            _ => Err(self.failure()),
        }
    }

    /// Number of the last Ready written, or the writer's error.
    pub fn persisted(&self) -> Result<u64, StoreError> {
        self.check()?;
        Ok(self.progress.persisted.load(Ordering::Acquire))
    }

    /// Whether everything handed over is written.
    pub fn idle(&self) -> bool {
        self.progress.persisted.load(Ordering::Acquire) >= self.submitted
    }

    /// Waits until everything handed over is written (the writer waits
    /// for nothing but the disk), at most [`DRAIN_WAIT_MAX`]: a disk that
    /// stalls longer stops the peer.
    pub fn drain(&self) -> Result<u64, StoreError> {
        let deadline = std::time::Instant::now() + DRAIN_WAIT_MAX;
        loop {
            let done = self.persisted()?;
            if done >= self.submitted {
                return Ok(done);
            }
            if std::time::Instant::now() >= deadline {
                return Err(StoreError::Corrupt(format!(
                    "log writer still busy after {DRAIN_WAIT_MAX:?}"
                )));
            }
            std::thread::sleep(DRAIN_POLL);
        }
    }

    /// The writer's error, if it failed or died (a panic, such as a
    /// failpoint's, ends its thread without a word).
    fn check(&self) -> Result<(), StoreError> {
        let died = self.thread.as_ref().is_none_or(|t| t.is_finished());
        if died || self.progress.failed.load(Ordering::Acquire) {
            return Err(self.failure());
        }
        Ok(())
    }

    fn failure(&self) -> StoreError {
        let error = lock(&self.progress.error)
            .clone()
            .unwrap_or_else(|| "the log writer stopped".to_string());
        StoreError::Corrupt(format!("log write failed: {error}"))
    }
}

impl Drop for LogWriter {
    /// Lets the writer finish what it was handed, then joins it.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the log writer thread panicked");
            }
        }
    }
}

fn run(
    rx: Receiver<LogWrite>,
    shared: Arc<Shared>,
    transport: SharedTransport,
    wake: SyncSender<Command>,
    progress: Arc<Progress>,
) {
    let unsynced = WriteOptions::default();
    let mut synced = WriteOptions::default();
    synced.set_sync(true);
    while let Ok(first) = rx.recv() {
        let mut round = vec![first];
        while round.len() < WRITES_QUEUED_MAX {
            match rx.try_recv() {
                Ok(w) => round.push(w),
                Err(_) => break,
            }
        }
        if let Err(e) = write_round(&shared, &mut round, &unsynced, &synced) {
            tracing::error!(error = %e, "log write failed; the peer stops");
            *lock(&progress.error) = Some(e.to_string());
            progress.failed.store(true, Ordering::Release);
            let _ = wake.try_send(Command::Persisted);
            return;
        }
        let messages: Vec<Message> = round
            .iter_mut()
            .flat_map(|w| w.messages.drain(..))
            .collect();
        if !messages.is_empty() {
            send(&transport, messages);
        }
        if let Some(last) = round.last() {
            progress.persisted.store(last.number, Ordering::Release);
        }
        let _ = wake.try_send(Command::Persisted);
    }
}

/// Writes a round of Readys in order; the last write is synced if any of
/// them must be (a synced write makes every earlier one durable too: the
/// write-ahead log is sequential).
fn write_round(
    shared: &Shared,
    round: &mut [LogWrite],
    unsynced: &WriteOptions,
    synced: &WriteOptions,
) -> Result<(), StoreError> {
    let started = std::time::Instant::now();
    let sync = round.iter().any(|w| w.sync);
    let entries: u64 = round.iter().map(|w| w.entries).sum();
    let hard_state = round.iter().any(|w| w.hard_state);
    if entries > 0 {
        failpoint!(crate::failpoints::BEFORE_LOG_APPEND);
    }
    // the last write of the round carries the sync
    let sync_at = round.iter().rposition(|w| !w.batch.is_empty());
    for (i, w) in round.iter_mut().enumerate() {
        let batch = std::mem::take(&mut w.batch);
        if batch.is_empty() {
            continue;
        }
        let opts = if sync && Some(i) == sync_at {
            synced
        } else {
            unsynced
        };
        shared.db.write_opt(batch, opts)?;
    }
    crate::metrics::METRICS
        .log_persist_duration
        .observe(started.elapsed().as_secs_f64());
    written(shared, entries, sync, hard_state);
    Ok(())
}

/// After a log write of `entries` entries (and a HardState, if
/// `hard_state`): counts it and passes its failpoints. Shared by the writer
/// and the Raft thread's synchronous write beside a snapshot.
pub(crate) fn written(shared: &Shared, entries: u64, sync: bool, hard_state: bool) {
    if entries > 0 {
        shared.log_writes.fetch_add(1, Ordering::Relaxed);
        shared
            .log_syncs
            .fetch_add(u64::from(sync), Ordering::Relaxed);
        shared.log_entries.fetch_add(entries, Ordering::Relaxed);
        failpoint!(crate::failpoints::AFTER_LOG_APPEND);
    }
    if hard_state {
        failpoint!(crate::failpoints::AFTER_HARD_STATE);
    }
}
