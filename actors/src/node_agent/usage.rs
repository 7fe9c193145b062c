//! Resource usage: what the node agent measures of its containers and its
//! machine, as metrics-server's kubelet summary does. The runtime reports
//! each container's cumulative CPU time and its memory now (containerd
//! from the container's cgroup; the process runtime from `/proc` for the
//! container's process group); the agent samples every [`SAMPLE_EVERY`]
//! and turns two samples into a rate (nanocores). The node's own figures
//! come from `/proc/stat` and `/proc/meminfo`. Parsing and arithmetic are
//! pure; the readers are thin. An agent nobody asks samples nothing.

use std::collections::HashMap;
use std::time::Duration;

pub use kubus_bus::protocol::Usage;

/// How often the agent samples usage (metrics-server's resolution is 15 s;
/// kubus's autoscaler reads the latest rate).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// The first rate is taken over this short window after a container is
/// first seen, so that `kubus top` has figures soon after a start.
pub const FIRST_WINDOW: Duration = Duration::from_secs(2);
/// An agent samples only while someone asks: each usage request keeps it
/// sampling this long (`kubus top`, the autoscaler's collector every 10 s).
pub const ASKED_KEEPS_SAMPLING: Duration = Duration::from_secs(600);

/// One container's cumulative figures, as a runtime reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawUsage {
    /// The runtime's container id.
    pub id: String,
    /// CPU time used since the container started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use now (the working set: cgroup usage minus inactive
    /// file pages, or the processes' resident set), in bytes.
    pub memory_bytes: u64,
}

/// The rate between two cumulative CPU readings `window_ms` apart (0 when
/// the counter went back: a restart).
pub fn nano_cores(before_ns: u64, after_ns: u64, window_ms: u64) -> u64 {
    if window_ms == 0 {
        return 0;
    }
    let used = u128::from(after_ns.saturating_sub(before_ns));
    u64::try_from(used * 1000 / u128::from(window_ms)).unwrap_or(u64::MAX)
}

/// The samples taken so far and the rates they give.
#[derive(Debug, Default)]
pub struct Tracker {
    /// The last reading per container and when it was taken.
    last: HashMap<String, (u64, RawUsage)>,
    /// The latest rate per container id.
    rates: HashMap<String, Usage>,
    /// The machine: last (busy, total) CPU ticks and its latest usage.
    node_ticks: Option<(u64, u64)>,
    node: Option<Usage>,
}

impl Tracker {
    /// Takes a sample of the containers at `now_ms`: each seen before gets
    /// a rate; containers gone are forgotten.
    pub fn sample(&mut self, now_ms: u64, readings: Vec<RawUsage>) {
        let mut last = HashMap::with_capacity(readings.len());
        let mut rates = HashMap::with_capacity(readings.len());
        for r in readings {
            if let Some((at, before)) = self.last.get(&r.id) {
                let window = now_ms.saturating_sub(*at);
                rates.insert(
                    r.id.clone(),
                    Usage {
                        cpu_nano_cores: nano_cores(before.cpu_ns, r.cpu_ns, window),
                        memory_bytes: r.memory_bytes,
                    },
                );
            }
            last.insert(r.id.clone(), (now_ms, r));
        }
        self.last = last;
        self.rates = rates;
    }

    /// Takes a sample of the machine: `cpu` as (busy, total) ticks of
    /// every CPU, `cores` the CPUs, `memory_bytes` in use now.
    pub fn sample_node(&mut self, cpu: (u64, u64), cores: u64, memory_bytes: u64) {
        let cpu_nano_cores = match self.node_ticks {
            Some((busy, total)) if cpu.1 > total => {
                let share = (cpu.0.saturating_sub(busy)) as f64 / (cpu.1 - total) as f64;
                (share * cores as f64 * 1e9) as u64
            }
            _ => self.node.map_or(0, |n| n.cpu_nano_cores),
        };
        self.node_ticks = Some(cpu);
        self.node = Some(Usage {
            cpu_nano_cores,
            memory_bytes,
        });
    }

    /// The latest rate of container `id`, once it has been seen twice.
    pub fn container(&self, id: &str) -> Option<Usage> {
        self.rates.get(id).copied()
    }

    /// The machine's latest figures.
    pub fn node(&self) -> Option<Usage> {
        self.node
    }

    /// Whether container `id` has been seen once but has no rate yet.
    pub fn awaits_rate(&self, id: &str) -> bool {
        self.last.contains_key(id) && !self.rates.contains_key(id)
    }
}

/// (busy, total) CPU ticks of every CPU from `/proc/stat`'s `cpu` line
/// (busy = total − idle − iowait).
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest counted in user)
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Memory in use from `/proc/meminfo`: MemTotal − MemAvailable, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let kib = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(
        kib("MemTotal:")?
            .saturating_sub(kib("MemAvailable:")?)
            .saturating_mul(1024),
    )
}

/// One process's figures from `/proc/<pid>/stat`: its process group, its
/// CPU ticks (its own and its waited-for children's) and resident pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcFigures {
    pub pgrp: u32,
    pub cpu_ticks: u64,
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat` (the command may hold spaces and parentheses).
pub fn parse_pid_stat(stat: &str) -> Option<ProcFigures> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is proc(5)'s field 3 (state)
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<i64>().ok());
    let ticks = [14, 15, 16, 17]
        .iter()
        .map(|n| field(*n).map(|t| t.max(0) as u64))
        .sum::<Option<u64>>()?;
    Some(ProcFigures {
        pgrp: u32::try_from(field(5)?).ok()?,
        cpu_ticks: ticks,
        rss_pages: field(24)?.max(0) as u64,
    })
}

/// The figures of the process groups `groups` (container ids of the
/// process runtime), summed over their processes.
pub fn group_usage(
    procs: &[ProcFigures],
    groups: &[u32],
    ticks_per_second: u64,
    page_bytes: u64,
) -> Vec<RawUsage> {
    let ns_per_tick = 1_000_000_000 / ticks_per_second.max(1);
    groups
        .iter()
        .map(|g| {
            let (ticks, pages) = procs
                .iter()
                .filter(|p| p.pgrp == *g)
                .fold((0u64, 0u64), |(t, r), p| {
                    (t.saturating_add(p.cpu_ticks), r.saturating_add(p.rss_pages))
                });
            RawUsage {
                id: g.to_string(),
                cpu_ns: ticks.saturating_mul(ns_per_tick),
                memory_bytes: pages.saturating_mul(page_bytes),
            }
        })
        .collect()
}

/// Every process's figures, read from `/proc` (processes that end while
/// it reads are skipped).
pub fn read_processes() -> Vec<ProcFigures> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| parse_pid_stat(&s))
        .collect()
}

/// The machine's (busy, total) CPU ticks, CPUs and memory in use.
pub fn read_node() -> Option<((u64, u64), u64, u64)> {
    let cpu = parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let memory = parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    Some((cpu, cores, memory))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(id: &str, cpu_ns: u64, memory_bytes: u64) -> RawUsage {
        RawUsage {
            id: id.into(),
            cpu_ns,
            memory_bytes,
        }
    }

    #[test]
    fn two_samples_give_a_rate_and_gone_containers_are_forgotten() {
        let mut t = Tracker::default();
        t.sample(1_000, vec![raw("a", 0, 10), raw("b", 5, 20)]);
        assert_eq!(t.container("a"), None);
        assert!(t.awaits_rate("a"));
        // a used one full core for 2 s; b half a core
        t.sample(
            3_000,
            vec![raw("a", 2_000_000_000, 11), raw("b", 1_000_000_005, 21)],
        );
        assert_eq!(
            t.container("a"),
            Some(Usage {
                cpu_nano_cores: 1_000_000_000,
                memory_bytes: 11
            })
        );
        assert_eq!(
            t.container("b").map(|u| u.cpu_nano_cores),
            Some(500_000_000)
        );
        t.sample(13_000, vec![raw("a", 2_000_000_000, 12)]);
        assert_eq!(t.container("a").map(|u| u.cpu_nano_cores), Some(0));
        assert_eq!(t.container("b"), None);
        // a counter that went back (a restart under the same id) reads 0
        assert_eq!(nano_cores(10, 5, 1000), 0);
        assert_eq!(nano_cores(0, 5, 0), 0);
    }

    #[test]
    fn the_node_from_proc() {
        let stat = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0\n";
        assert_eq!(parse_proc_stat(stat), Some((200, 1000)));
        let meminfo = "MemTotal:       2048 kB\nMemFree:  100 kB\nMemAvailable:   1024 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some(1024 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        let mut t = Tracker::default();
        t.sample_node((200, 1000), 2, 5);
        assert_eq!(t.node().map(|n| n.cpu_nano_cores), Some(0));
        // half of all ticks busy on 2 CPUs: one core
        t.sample_node((700, 2000), 2, 6);
        assert_eq!(
            t.node(),
            Some(Usage {
                cpu_nano_cores: 1_000_000_000,
                memory_bytes: 6
            })
        );
    }

    #[test]
    fn process_groups_sum_their_processes() {
        let leader = "4242 (sh) S 1 4242 4242 0 -1 0 0 0 0 0 150 50 10 0 20 0 1 0 100 1000 30";
        let child =
            "4250 (busy (x)) R 4242 4242 4242 0 -1 0 0 0 0 0 100 0 0 0 20 0 1 0 101 1000 20";
        let other = "9 (init) S 0 9 9 0 -1 0 0 0 0 0 999 0 0 0 20 0 1 0 1 1000 5";
        let procs: Vec<ProcFigures> = [leader, child, other]
            .iter()
            .map(|s| parse_pid_stat(s).expect("parses"))
            .collect();
        assert_eq!(
            procs[0],
            ProcFigures {
                pgrp: 4242,
                cpu_ticks: 210,
                rss_pages: 30
            }
        );
        assert_eq!(
            group_usage(&procs, &[4242, 7], 100, 4096),
            vec![raw("4242", 3_100_000_000, 50 * 4096), raw("7", 0, 0)]
        );
        assert_eq!(parse_pid_stat("nonsense"), None);
    }
}
