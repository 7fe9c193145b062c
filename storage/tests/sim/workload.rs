//! The crash tests' workload: numbered keys written through every peer by
//! a few concurrent writers, each acknowledged write reported to a
//! callback.

use std::sync::Arc;
use std::time::Duration;

use kubus_storage::{Op, Precondition, Txn, TxnOutcome};

use super::Cluster;

/// Concurrent writers.
pub const WRITERS: u64 = 4;
/// The longest one write may take.
pub const WRITE_WAIT: Duration = Duration::from_secs(5);
/// A writer gives up its share of a range after this many failed writes
/// in a row (no quorum: waiting out every write would take minutes).
const FAILURES_IN_A_ROW_MAX: u32 = 3;

/// The key of write `i`; its value is `i` (big-endian).
pub fn key(i: u64) -> String {
    format!("/crash/{i:05}")
}

/// What is told of each acknowledged write.
pub type OnAck = Arc<dyn Fn(u64) + Send + Sync>;

/// Writes `range` through every open peer, [`WRITERS`] at a time, calling
/// `on_ack` for each acknowledged write as soon as it is.
pub fn write_range(
    rt: &tokio::runtime::Runtime,
    cluster: &Cluster,
    range: std::ops::Range<u64>,
    on_ack: &OnAck,
) {
    let tasks: Vec<_> = (0..WRITERS)
        .map(|w| {
            let stores: Vec<_> = cluster.stores.values().cloned().collect();
            let (range, on_ack) = (range.clone(), Arc::clone(on_ack));
            rt.spawn(async move {
                let mut failures = 0;
                for i in range.filter(|i| i % WRITERS == w) {
                    let txn = Txn {
                        ops: vec![Op::Put {
                            key: key(i),
                            value: i.to_be_bytes().to_vec(),
                            expect: Precondition::None,
                        }],
                    };
                    let store = &stores[i as usize % stores.len()];
                    match tokio::time::timeout(WRITE_WAIT, store.propose(txn)).await {
                        Ok(Ok(TxnOutcome::Committed { .. })) => {
                            failures = 0;
                            on_ack(i);
                        }
                        _ => {
                            failures += 1;
                            if failures >= FAILURES_IN_A_ROW_MAX {
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        rt.block_on(t).expect("writer");
    }
}

/// Writes 160..480: a follower is stopped for 160..400 (more than the
/// kept log) and reopened, so that it needs a snapshot.
pub fn write_with_a_lagging_follower(
    rt: &tokio::runtime::Runtime,
    cluster: &mut Cluster,
    peers: &[u64],
    on_ack: &OnAck,
) {
    let leader = cluster.wait_leader(Duration::from_secs(20));
    let follower = peers
        .iter()
        .copied()
        .find(|&p| p != leader)
        .expect("a follower");
    cluster.stop(follower);
    write_range(rt, cluster, 160..400, on_ack);
    cluster.open(follower, peers.to_vec());
    write_range(rt, cluster, 400..480, on_ack);
}
