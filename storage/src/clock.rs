//! [`Clock`]: the store's one source of wall-clock time, a seam with the
//! real clock ([`SystemClock`]) and a fake one ([`FakeClock`]) side by
//! side.
//!
//! The clock is read in exactly two places, both outside the state
//! machine: the leader stamps each entry it appends with the time (the
//! stamp travels in the entry, so every peer applies the same one), and a
//! peer's timer prunes history that has outgrown
//! [`crate::StoreConfig::history_retention_age`] while no writes arrive.
//! Applying an entry never reads it.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + Debug {
    /// Now, in milliseconds since 1970-01-01 UTC.
    fn now_ms(&self) -> u64;
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock set before 1970 reads as 1970: stamps are only compared
        // with the retention window, where that errs towards keeping.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to; clones share the time. For tests.
#[derive(Clone, Debug, Default)]
pub struct FakeClock {
    now_ms: Arc<AtomicU64>,
}

impl FakeClock {
    /// A clock that reads `now_ms`.
    pub fn at(now_ms: u64) -> FakeClock {
        FakeClock {
            now_ms: Arc::new(AtomicU64::new(now_ms)),
        }
    }

    /// Sets the time.
    pub fn set(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::Release);
    }

    /// Moves the time forward by `ms`.
    pub fn advance(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::AcqRel);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_only_when_told_and_clones_share_it() {
        let clock = FakeClock::at(1_000);
        let other = clock.clone();
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(500);
        assert_eq!(other.now_ms(), 1_500);
        other.set(7);
        assert_eq!(clock.now_ms(), 7);
    }

    #[test]
    fn system_clock_is_after_2020() {
        // 2020-01-01 in ms: a clock this far off would break retention.
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
