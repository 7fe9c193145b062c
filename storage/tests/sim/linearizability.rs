//! A linearizability checker for a key/value store whose keys are
//! independent registers (Wing & Gong's search with Lowe's memoisation,
//! checked one key at a time: linearizability is compositional).
//!
//! Every operation has an invocation time and, if its outcome is known, a
//! completion time. A write whose outcome is unknown (the client timed out,
//! or the server died) may take effect at any point after its invocation or
//! not at all; a read whose outcome is unknown tells nothing and is left
//! out by the caller. Shared by the storage simulation and the multi-process
//! fault tests (`tests/tests/store_*.rs` include this file by path).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Set the register (`None`: delete it).
    Write(Option<u64>),
    /// Read the register and saw this.
    Read(Option<u64>),
}

/// One client operation on one key.
#[derive(Clone, Debug)]
pub struct Event {
    /// The register.
    pub key: String,
    /// What it did.
    pub kind: Kind,
    /// When the client called (any monotonic clock, same for all clients).
    pub invoke_ns: u64,
    /// When the client heard back; `None` when the outcome is unknown.
    pub complete_ns: Option<u64>,
}

/// Most operations checked per key: the search is exponential in the
/// worst case, and histories are built to stay far below this.
pub const OPS_PER_KEY_MAX: usize = 4096;

/// Checks that `events` are linearizable, every register starting absent.
/// On failure, names the key and shows its history.
pub fn check(events: &[Event]) -> Result<(), String> {
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_key.entry(e.key.as_str()).or_default().push(e);
    }
    for (key, mut ops) in by_key {
        if ops.len() > OPS_PER_KEY_MAX {
            return Err(format!(
                "key {key}: {} operations is too many to check",
                ops.len()
            ));
        }
        ops.sort_by_key(|e| e.invoke_ns);
        if !check_register(&ops) {
            let mut history = String::new();
            for e in &ops {
                history.push_str(&format!(
                    "  {:>12} .. {:>12}  {:?}\n",
                    e.invoke_ns,
                    e.complete_ns.map_or("?".to_string(), |c| c.to_string()),
                    e.kind
                ));
            }
            return Err(format!("key {key} is not linearizable:\n{history}"));
        }
    }
    Ok(())
}

struct Search<'a> {
    ops: &'a [&'a Event],
    done: Vec<u64>,
    known_left: usize,
    memo: HashSet<(Vec<u64>, Option<u64>)>,
}

fn check_register(ops: &[&Event]) -> bool {
    let mut s = Search {
        ops,
        done: vec![0; ops.len().div_ceil(64)],
        known_left: ops.iter().filter(|e| e.complete_ns.is_some()).count(),
        memo: HashSet::new(),
    };
    s.run(None)
}

impl Search<'_> {
    fn is_done(&self, i: usize) -> bool {
        self.done[i / 64] & (1 << (i % 64)) != 0
    }

    fn flip(&mut self, i: usize) {
        self.done[i / 64] ^= 1 << (i % 64);
    }

    fn run(&mut self, state: Option<u64>) -> bool {
        // Only unknown writes left: they may all never have happened.
        if self.known_left == 0 {
            return true;
        }
        if !self.memo.insert((self.done.clone(), state)) {
            return false;
        }
        // The next operation to take effect must have been invoked before
        // every pending known operation completed.
        let bound = (0..self.ops.len())
            .filter(|&i| !self.is_done(i))
            .filter_map(|i| self.ops[i].complete_ns)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..self.ops.len() {
            let e = self.ops[i];
            if e.invoke_ns > bound {
                break; // sorted by invocation
            }
            if self.is_done(i) {
                continue;
            }
            let next = match &e.kind {
                Kind::Write(v) => *v,
                Kind::Read(seen) if *seen == state => state,
                Kind::Read(_) => continue,
            };
            self.flip(i);
            let known = e.complete_ns.is_some();
            if known {
                self.known_left -= 1;
            }
            let ok = self.run(next);
            if known {
                self.known_left += 1;
            }
            self.flip(i);
            if ok {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: Kind, invoke_ns: u64, complete_ns: Option<u64>) -> Event {
        Event {
            key: "k".into(),
            kind,
            invoke_ns,
            complete_ns,
        }
    }

    #[test]
    fn table() {
        use Kind::*;
        let cases: Vec<(&str, Vec<Event>, bool)> = vec![
            ("empty read", vec![ev(Read(None), 0, Some(1))], true),
            (
                "read of nothing written",
                vec![ev(Read(Some(1)), 0, Some(1))],
                false,
            ),
            (
                "sequential write then read",
                vec![
                    ev(Write(Some(1)), 0, Some(1)),
                    ev(Read(Some(1)), 2, Some(3)),
                ],
                true,
            ),
            (
                "stale read after a completed write",
                vec![ev(Write(Some(1)), 0, Some(1)), ev(Read(None), 2, Some(3))],
                false,
            ),
            (
                "concurrent read may see either",
                vec![ev(Write(Some(1)), 0, Some(5)), ev(Read(None), 1, Some(2))],
                true,
            ),
            (
                "unknown write may apply late",
                vec![
                    ev(Write(Some(1)), 0, None),
                    ev(Read(None), 1, Some(2)),
                    ev(Read(Some(1)), 3, Some(4)),
                ],
                true,
            ),
            (
                "unknown write may never apply",
                vec![ev(Write(Some(1)), 0, None), ev(Read(None), 5, Some(6))],
                true,
            ),
            (
                "value comes back after being overwritten",
                vec![
                    ev(Write(Some(1)), 0, Some(1)),
                    ev(Write(Some(2)), 2, Some(3)),
                    ev(Read(Some(2)), 4, Some(5)),
                    ev(Read(Some(1)), 6, Some(7)),
                ],
                false,
            ),
        ];
        for (name, events, want) in cases {
            assert_eq!(check(&events).is_ok(), want, "{name}");
        }
    }
}
