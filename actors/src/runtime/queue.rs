//! The work queue every controller shares the shape of (client-go's
//! rate-limited work queue, kube-runtime's scheduler): keys to reconcile,
//! deduplicated, each handed out at most once at a time, with a per-key
//! exponential backoff after failures and `requeue_after` timers.
//!
//! Pure: every call takes `now`, so tests drive it on a fake clock and the
//! actor passes `Instant::now()`.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The first retry after a failure waits this long…
pub const BACKOFF_BASE: Duration = Duration::from_millis(5);
/// …doubling per failure in a row, up to this (client-go's default item
/// rate limiter: 5 ms to 1000 s; five minutes here, as kube-runtime's
/// examples use).
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Most keys the queue holds. Keys are deduplicated, so this is only
/// reached with more objects than that; a key refused then is counted and
/// picked up again by the controller's periodic resync.
pub const QUEUE_KEYS_MAX: usize = 1_000_000;

/// What became of a key handed out by [`WorkQueue::next`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Reconciled; look again only when something changes.
    Done,
    /// Reconciled; look again after this long (`Action::requeue`).
    RequeueAfter(Duration),
    /// Failed; look again after the key's backoff, which grows.
    Failed,
}

/// A deduplicating queue of keys with backoff and timers.
#[derive(Debug)]
pub struct WorkQueue<K: Clone + Eq + Hash + Ord> {
    /// Keys ready now, in the order they became ready.
    ready: VecDeque<K>,
    /// Everything queued: ready, delayed or marked dirty while active.
    queued: HashSet<K>,
    /// Keys waiting for a time, by that time.
    delayed: BTreeSet<(Instant, K)>,
    /// When each delayed key is due (to move it earlier, never later).
    due: HashMap<K, Instant>,
    /// Keys handed out and not yet finished.
    active: HashSet<K>,
    /// Keys added while active: queued again once finished.
    dirty: HashSet<K>,
    /// Failures in a row per key.
    failures: HashMap<K, u32>,
    /// Adds refused because the queue was full.
    pub refused: u64,
}

impl<K: Clone + Eq + Hash + Ord> Default for WorkQueue<K> {
    fn default() -> Self {
        WorkQueue {
            ready: VecDeque::new(),
            queued: HashSet::new(),
            delayed: BTreeSet::new(),
            due: HashMap::new(),
            active: HashSet::new(),
            dirty: HashSet::new(),
            failures: HashMap::new(),
            refused: 0,
        }
    }
}

/// The backoff after `failures` failures in a row (1 = the first).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    BACKOFF_BASE
        .checked_mul(1u32 << doublings)
        .map_or(BACKOFF_MAX, |d| d.min(BACKOFF_MAX))
}

impl<K: Clone + Eq + Hash + Ord> WorkQueue<K> {
    /// Queue `key` now. A key already queued is not queued twice (a
    /// delayed one becomes ready now); an active one is queued again when
    /// it finishes.
    pub fn add(&mut self, key: K) {
        if self.active.contains(&key) {
            self.dirty.insert(key);
            return;
        }
        if let Some(at) = self.due.remove(&key) {
            self.delayed.remove(&(at, key.clone()));
            self.ready.push_back(key);
            return;
        }
        if self.queued.contains(&key) {
            return;
        }
        if self.queued.len() >= QUEUE_KEYS_MAX {
            self.refused += 1;
            return;
        }
        self.queued.insert(key.clone());
        self.ready.push_back(key);
    }

    /// Queue `key` at `at` (or earlier, if it is due earlier already).
    pub fn add_at(&mut self, key: K, at: Instant) {
        if self.active.contains(&key) {
            // finished keys are requeued by `finish` with their own delay
            self.dirty.insert(key);
            return;
        }
        if let Some(&was) = self.due.get(&key) {
            if was <= at {
                return;
            }
            self.delayed.remove(&(was, key.clone()));
        } else if self.queued.contains(&key) {
            return; // ready already
        } else if self.queued.len() >= QUEUE_KEYS_MAX {
            self.refused += 1;
            return;
        }
        self.queued.insert(key.clone());
        self.due.insert(key.clone(), at);
        self.delayed.insert((at, key));
    }

    /// The next key to reconcile at `now`, marked active until
    /// [`finish`](Self::finish).
    pub fn next(&mut self, now: Instant) -> Option<K> {
        self.promote(now);
        let key = self.ready.pop_front()?;
        self.queued.remove(&key);
        self.active.insert(key.clone());
        Some(key)
    }

    /// Move delayed keys that are due to the ready list.
    fn promote(&mut self, now: Instant) {
        while let Some((at, _)) = self.delayed.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.delayed.pop_first() {
                self.due.remove(&key);
                self.ready.push_back(key);
            }
        }
    }

    /// `key`, handed out by `next`, is finished with `outcome`.
    pub fn finish(&mut self, key: K, outcome: Outcome, now: Instant) {
        self.active.remove(&key);
        match outcome {
            Outcome::Done => {
                self.failures.remove(&key);
            }
            Outcome::RequeueAfter(d) => {
                self.failures.remove(&key);
                self.add_at(key.clone(), now + d);
            }
            Outcome::Failed => {
                self.fail(key.clone(), now);
            }
        }
        if self.dirty.remove(&key) {
            self.add(key);
        }
    }

    /// Something done for `key` outside a reconcile failed (a write it
    /// planned): retry after its backoff.
    pub fn fail(&mut self, key: K, now: Instant) {
        let n = self.failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        let wait = backoff(*n);
        self.add_at(key, now + wait);
    }

    /// Something done for `key` succeeded: its backoff starts over.
    pub fn succeeded(&mut self, key: &K) {
        self.failures.remove(key);
    }

    /// Failures in a row of `key`.
    pub fn failures(&self, key: &K) -> u32 {
        self.failures.get(key).copied().unwrap_or(0)
    }

    /// When the queue next has work, if not now: the earliest delayed key.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.first().map(|(at, _)| *at)
    }

    /// Whether a key is ready at `now`.
    pub fn has_ready(&self, now: Instant) -> bool {
        !self.ready.is_empty() || self.next_due().is_some_and(|at| at <= now)
    }

    /// Keys queued (ready or delayed), not counting active ones.
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn keys_are_deduplicated() {
        let t = Instant::now();
        let mut q = WorkQueue::default();
        for k in ["a", "b", "a", "a", "c", "b"] {
            q.add(k);
        }
        assert_eq!(q.len(), 3);
        let order: Vec<_> = std::iter::from_fn(|| q.next(t)).collect();
        assert_eq!(order, vec!["a", "b", "c"]);
    }

    #[test]
    fn an_active_key_is_never_handed_out_twice() {
        let t = Instant::now();
        let mut q = WorkQueue::default();
        q.add("a");
        assert_eq!(q.next(t), Some("a"));
        // changes while it is being reconciled: queued once, held back
        q.add("a");
        q.add("a");
        assert_eq!(q.next(t), None);
        q.finish("a", Outcome::Done, t);
        assert_eq!(q.next(t), Some("a"));
        q.finish("a", Outcome::Done, t);
        assert_eq!(q.next(t), None);
    }

    #[test]
    fn backoff_grows_and_resets() {
        // (failures in a row, wait)
        let table = [
            (1, ms(5)),
            (2, ms(10)),
            (3, ms(20)),
            (10, ms(2560)),
            (17, Duration::from_millis(327_680).min(BACKOFF_MAX)),
            (40, BACKOFF_MAX),
            (u32::MAX, BACKOFF_MAX),
        ];
        for (n, want) in table {
            assert_eq!(backoff(n), want, "{n} failures");
        }
        let t0 = Instant::now();
        let mut q = WorkQueue::default();
        q.add("a");
        let mut now = t0;
        for want in [ms(5), ms(10), ms(20), ms(40)] {
            let k = q.next(now).expect("due");
            q.finish(k, Outcome::Failed, now);
            assert_eq!(q.next_due(), Some(now + want));
            assert_eq!(q.next(now + want - ms(1)), None, "not before {want:?}");
            now += want;
        }
        let k = q.next(now).expect("due");
        q.finish(k, Outcome::Done, now);
        assert_eq!(q.failures(&"a"), 0);
        q.add("a");
        let k = q.next(now).expect("ready");
        q.finish(k, Outcome::Failed, now);
        assert_eq!(q.next_due(), Some(now + ms(5)), "backoff starts over");
    }

    #[test]
    fn requeue_after_and_earlier_adds() {
        let t0 = Instant::now();
        let mut q = WorkQueue::default();
        q.add("a");
        let k = q.next(t0).expect("ready");
        q.finish(k, Outcome::RequeueAfter(ms(100)), t0);
        assert_eq!(q.next(t0 + ms(99)), None);
        assert_eq!(q.next(t0 + ms(100)), Some("a"));
        q.finish("a", Outcome::RequeueAfter(ms(100)), t0 + ms(100));
        // a change before the timer: ready at once, and only once
        q.add("a");
        assert_eq!(q.next(t0 + ms(101)), Some("a"));
        assert_eq!(q.next(t0 + ms(1000)), None);
        q.finish("a", Outcome::Done, t0 + ms(101));
        // a later timer never delays an earlier one
        q.add_at("b", t0 + ms(10));
        q.add_at("b", t0 + ms(50));
        assert_eq!(q.next_due(), Some(t0 + ms(10)));
        q.add_at("b", t0 + ms(5));
        assert_eq!(q.next_due(), Some(t0 + ms(5)));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_write_failure_outside_a_reconcile_backs_off_and_success_resets() {
        let t0 = Instant::now();
        let mut q: WorkQueue<&str> = WorkQueue::default();
        q.fail("a", t0);
        q.fail("a", t0);
        assert_eq!(q.failures(&"a"), 2);
        // the second failure did not push the first retry later
        assert_eq!(q.next_due(), Some(t0 + ms(5)));
        q.succeeded(&"a");
        assert_eq!(q.failures(&"a"), 0);
    }
}
