//! Live refresh of configMap and secret volumes: which running pods the
//! agent reads its ConfigMaps and Secrets again for, on each tick. Pure:
//! the agent describes its pods as [`PodView`]s and the clock is an
//! argument; what changed in a pod's files is
//! [`super::config::changed_files`], and the new version is written by
//! [`super::volumes::write_files`] (an atomic swap).
//!
//! Kubernetes' kubelet does the same from its periodic pod sync (about a
//! minute); kubus reads the sources of each pod again at most every
//! [`REFRESH_PERIOD`], at most [`REFRESH_IN_FLIGHT_MAX`] pods at a time,
//! oldest refresh first. Changes that come in a burst within one period are
//! written once (debounced), as one new version. The agent does not watch
//! ConfigMaps and Secrets: a watch of them all on every node would send
//! every change (and, on every relist, every Secret) to every node.

use std::time::Duration;

/// How often the agent looks for pods due a refresh.
pub const REFRESH_TICK: Duration = Duration::from_secs(1);
/// Least time between two refreshes of one pod's volumes (and after the
/// pod was prepared): the debounce, and the most a change waits.
pub const REFRESH_PERIOD: Duration = Duration::from_secs(5);
/// Most pods being refreshed at once (each reads its sources from the
/// store, then writes off the agent's thread).
pub const REFRESH_IN_FLIGHT_MAX: usize = 8;

/// What the refresh decision needs to know of one pod the agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub uid: String,
    /// It has configMap or secret volumes.
    pub file_volumes: bool,
    /// One of its containers runs (else the next start writes the files).
    pub running: bool,
    /// Being prepared or stopped: its volumes are someone else's now.
    pub busy: bool,
    /// A refresh of it is in flight.
    pub refreshing: bool,
    /// When its files were last read and written (refreshed or prepared).
    pub refreshed_ms: u64,
}

/// The pods to refresh now: those with configMap or secret volumes and a
/// running container, not busy, last refreshed at least `period` ago;
/// oldest first, as many as the in-flight bound leaves room for.
pub fn due(pods: &[PodView], now_ms: u64, period: Duration, in_flight_max: usize) -> Vec<String> {
    let in_flight = pods.iter().filter(|p| p.refreshing).count();
    let room = in_flight_max.saturating_sub(in_flight);
    let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
    let mut ready: Vec<&PodView> = pods
        .iter()
        .filter(|p| p.file_volumes && p.running && !p.busy && !p.refreshing)
        .filter(|p| now_ms.saturating_sub(p.refreshed_ms) >= period_ms)
        .collect();
    ready.sort_by(|a, b| (a.refreshed_ms, &a.uid).cmp(&(b.refreshed_ms, &b.uid)));
    ready
        .into_iter()
        .take(room)
        .map(|p| p.uid.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, refreshed_ms: u64) -> PodView {
        PodView {
            uid: uid.into(),
            file_volumes: true,
            running: true,
            busy: false,
            refreshing: false,
            refreshed_ms,
        }
    }

    #[test]
    fn only_running_pods_with_files_not_busy_and_not_recent() {
        let period = Duration::from_secs(5);
        let now = 100_000;
        let table: Vec<(PodView, bool, &str)> = vec![
            (pod("a", 0), true, "due"),
            (pod("b", now - 5_000), true, "exactly one period ago"),
            (pod("c", now - 4_999), false, "refreshed within the period"),
            (
                pod("d", now + 1_000),
                false,
                "a clock behind the last refresh",
            ),
            (
                PodView {
                    file_volumes: false,
                    ..pod("e", 0)
                },
                false,
                "no configMap or secret volume",
            ),
            (
                PodView {
                    running: false,
                    ..pod("f", 0)
                },
                false,
                "nothing runs: the next start writes the files",
            ),
            (
                PodView {
                    busy: true,
                    ..pod("g", 0)
                },
                false,
                "being prepared or stopped",
            ),
        ];
        for (view, want, why) in table {
            let got = due(std::slice::from_ref(&view), now, period, 8);
            assert_eq!(!got.is_empty(), want, "{}: {why}", view.uid);
        }
    }

    #[test]
    fn oldest_first_within_the_in_flight_bound() {
        let now = 1_000_000;
        let period = Duration::from_secs(5);
        let mut pods: Vec<PodView> = (0..20)
            .map(|i| pod(&format!("p{i:02}"), 100 * (20 - i)))
            .collect();
        assert_eq!(
            due(&pods, now, period, 3),
            vec!["p19", "p18", "p17"],
            "the longest unrefreshed first"
        );
        pods[0].refreshing = true;
        pods[1].refreshing = true;
        assert_eq!(due(&pods, now, period, 3), vec!["p19"], "two in flight");
        pods[2].refreshing = true;
        assert!(due(&pods, now, period, 3).is_empty(), "no room");
        // ties go by uid, so the order is stable
        let tied = vec![pod("b", 0), pod("a", 0)];
        assert_eq!(due(&tied, now, period, 8), vec!["a", "b"]);
    }
}
