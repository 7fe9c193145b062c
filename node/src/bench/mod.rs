//! `kubus bench …`: benchmark commands. Each prints its figures beside a
//! baseline measured in the same invocation on the same machine, as ratios;
//! none is a test and none asserts a time.

mod etcd;
pub mod gateway;
pub mod pods;
pub mod proxy;
mod raw_cri;
pub mod scheduler;
pub mod store;
pub mod watch;
pub mod workloads;

use hdrhistogram::Histogram;

/// Which build is measuring: "debug" or "release".
pub fn build() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// A latency histogram in microseconds, 1 µs to 1 h, 3 significant digits.
pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 3_600_000_000, 3)?)
}

/// "p50 0.42 ms  p99 1.93 ms  (n=20000)".
pub fn summary(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:>7.3} ms   p99 {:>7.3} ms   max {:>8.3} ms   (n={})",
        h.value_at_quantile(0.50) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
        h.len()
    )
}
