//! How every kubus process connects to the bus: a **list** of NATS
//! servers (`nats://a:4222,nats://b:4222,…` — the members of one NATS
//! cluster), and what happens when the one it is connected to dies.
//!
//! async-nats does the work: it connects to one server of the list (in a
//! random order, so clients spread over the cluster), learns the cluster's
//! other members from the server (`connect_urls`), and when the
//! connection drops it reconnects to another, forever, re-subscribing
//! every subscription and sending what was published meanwhile (up to its
//! bounded buffer). A request under way when the connection drops either
//! gets its reply after the reconnect or times out as any request does
//! (`client::REQUEST_TIMEOUT`); callers already treat a timeout as
//! "outcome unknown". What kubus sets, and why:
//!
//! - the delay between reconnect attempts is bounded
//!   ([`reconnect_delay`]: at once, then doubling from
//!   [`RECONNECT_DELAY_MIN`] to [`RECONNECT_DELAY_MAX`]): with three
//!   servers a client finds a live one within a second;
//! - one connection attempt gives up after [`CONNECT_TIMEOUT`];
//! - the server is pinged every [`PING_INTERVAL`], so a server that
//!   vanished without closing the connection (a machine lost, not a
//!   process killed) is noticed within a few intervals instead of minutes;
//! - disconnects and reconnects are logged.

use std::time::Duration;

use async_nats::{ConnectOptions, Event};

/// The first wait before a reconnect attempt after the first.
pub const RECONNECT_DELAY_MIN: Duration = Duration::from_millis(50);
/// The longest wait between two reconnect attempts.
pub const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);
/// One connection attempt gives up after this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the client pings its server (two unanswered: reconnect).
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Most servers one list may name.
pub const SERVERS_MAX: usize = 32;

/// Why a server list cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServersError {
    #[error("no NATS server named (give nats://host:port, or several separated by commas)")]
    Empty,
    #[error("{0} NATS servers named; at most {SERVERS_MAX}")]
    TooMany(usize),
    #[error("{url:?} is not a NATS server address: {why}")]
    Bad { url: String, why: String },
}

/// The servers of a comma-separated list (spaces around each allowed,
/// empty items skipped), each checked as a NATS address.
pub fn servers(list: &str) -> Result<Vec<async_nats::ServerAddr>, ServersError> {
    let items: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.is_empty() {
        return Err(ServersError::Empty);
    }
    if items.len() > SERVERS_MAX {
        return Err(ServersError::TooMany(items.len()));
    }
    items
        .into_iter()
        .map(|url| {
            url.parse::<async_nats::ServerAddr>()
                .map_err(|e| ServersError::Bad {
                    url: url.to_string(),
                    why: e.to_string(),
                })
        })
        .collect()
}

/// How long to wait before reconnect attempt `attempts` (1 = the first
/// after the connection dropped: at once).
pub fn reconnect_delay(attempts: usize) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    RECONNECT_DELAY_MIN
        .saturating_mul(1u32 << doublings)
        .min(RECONNECT_DELAY_MAX)
}

/// The options every kubus connection uses; `name` is what the server
/// shows for it.
pub fn options(name: &str) -> ConnectOptions {
    ConnectOptions::new()
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        .ping_interval(PING_INTERVAL)
        .reconnect_delay_callback(reconnect_delay)
        .event_callback(|event| async move {
            match event {
                Event::Connected => tracing::info!("bus: connected"),
                Event::Disconnected => {
                    tracing::warn!("bus: disconnected; reconnecting to another server of the list")
                }
                Event::SlowConsumer(sid) => {
                    tracing::warn!(subscription = sid, "bus: slow consumer; messages dropped")
                }
                other => tracing::debug!(event = %other, "bus event"),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists_parse() {
        assert_eq!(servers("nats://127.0.0.1:4222").map(|v| v.len()), Ok(1));
        assert_eq!(
            servers(" nats://a:1 , nats://b:2,,nats://c:3 ").map(|v| v.len()),
            Ok(3)
        );
        assert_eq!(servers("").map(|v| v.len()), Err(ServersError::Empty));
        assert_eq!(servers(" , ").map(|v| v.len()), Err(ServersError::Empty));
        assert!(matches!(
            servers("nats://a:1,http://[::1"),
            Err(ServersError::Bad { .. })
        ));
        let many = vec!["nats://a:1"; SERVERS_MAX + 1].join(",");
        assert_eq!(
            servers(&many).map(|v| v.len()),
            Err(ServersError::TooMany(SERVERS_MAX + 1))
        );
    }

    #[test]
    fn reconnect_delays_grow_and_stay_bounded() {
        assert_eq!(reconnect_delay(0), Duration::ZERO);
        assert_eq!(reconnect_delay(1), Duration::ZERO);
        assert_eq!(reconnect_delay(2), RECONNECT_DELAY_MIN);
        assert_eq!(reconnect_delay(3), RECONNECT_DELAY_MIN * 2);
        let mut last = Duration::ZERO;
        for n in 0..10_000 {
            let d = reconnect_delay(n);
            assert!(d >= last && d <= RECONNECT_DELAY_MAX, "attempt {n}: {d:?}");
            last = d;
        }
        assert_eq!(reconnect_delay(usize::MAX), RECONNECT_DELAY_MAX);
    }
}
