//! Kubernetes-style Events: what happened to an object, said once and
//! counted when it happens again (Scheduled, Started, BackOff,
//! ScalingReplicaSet, …). Events are stored objects (kind Event) with a time
//! to live; the store publishes each on
//! `kubus.<c>.events.<namespace>.<resource>.<name>` of the object involved.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kubus_api::{lifecycle, meta, Kind};
use kubus_bus::Client;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::debug;

use crate::write::{Write, Writer};

/// How long the store keeps an Event after it last happened.
pub const EVENT_TTL: Duration = Duration::from_secs(3600);
/// A repeat within this window bumps the count instead of a new Event.
pub const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
/// Events a recorder remembers for counting repeats.
pub const RECORDER_CACHE_MAX: usize = 4096;

/// Normal or Warning, as Kubernetes types Events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// A new Event about `involved` (pure; the clock and the name suffix are
/// arguments).
pub fn event_object(
    involved: &Value,
    event_type: EventType,
    reason: &str,
    message: &str,
    component: &str,
    now: &str,
    suffix: &str,
) -> Value {
    let kind = involved
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = meta::name(involved).unwrap_or_default();
    let namespace = meta::namespace(involved).unwrap_or("default");
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{suffix}"), "namespace": namespace},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion").cloned().unwrap_or(Value::Null),
            "kind": kind,
            "name": name,
            "namespace": meta::namespace(involved),
            "uid": meta::uid(involved),
        },
        "reason": reason,
        "message": message,
        "type": event_type.as_str(),
        "count": 1,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "source": {"component": component},
        "reportingComponent": component,
    })
}

/// The kind of the object an Event is about, for its subject.
pub fn involved_kind(event: &Value) -> Option<Kind> {
    let api_version = event.pointer("/involvedObject/apiVersion")?.as_str()?;
    let kind = event.pointer("/involvedObject/kind")?.as_str()?;
    Kind::from_type(api_version, kind).ok()
}

/// Whether an Event last happened longer than `ttl` before `now`.
pub fn expired(event: &Value, now: jiff::Timestamp, ttl: Duration) -> bool {
    let last = event
        .get("lastTimestamp")
        .or_else(|| event.pointer("/metadata/creationTimestamp"))
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    last.is_some_and(|t| now.as_second() - t.as_second() > ttl.as_secs() as i64)
}

/// Per object and reason, at most this many Events in a burst…
pub const SPAM_BURST: u32 = 25;
/// …then one more per this interval (Kubernetes' event spam filter).
pub const SPAM_REFILL: Duration = Duration::from_secs(300);
/// Events waiting to be written; when full, new ones are dropped (and
/// counted): Events are best effort, and never slow the recording actor.
pub const RECORDER_QUEUE: usize = 1024;
/// Event writes one recorder has in flight at once.
pub const RECORDER_WRITES_IN_FLIGHT: usize = 8;

/// A token bucket: whether one more Event about the same object and reason
/// may go out now (pure: the clock is an argument).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpamBucket {
    tokens: u32,
    refilled_at: Instant,
}

impl SpamBucket {
    pub fn new(now: Instant) -> SpamBucket {
        SpamBucket {
            tokens: SPAM_BURST,
            refilled_at: now,
        }
    }

    /// Takes a token if there is one (after refilling for the time passed).
    pub fn take(&mut self, now: Instant) -> bool {
        let earned =
            now.saturating_duration_since(self.refilled_at).as_secs() / SPAM_REFILL.as_secs();
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.tokens = self.tokens.saturating_add(earned).min(SPAM_BURST);
            self.refilled_at = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// An Event write: a new Event, or a bumped count on one already written.
#[derive(Debug)]
struct EventWrite {
    event: Value,
    update: bool,
}

/// Records Events for one component; repeats within the window are counted
/// on the Event already written, a flood about one object is cut by the
/// spam filter, and writes go through a bounded queue.
#[derive(Debug)]
pub struct Recorder {
    writer: Arc<dyn Writer>,
    component: String,
    seen: HashMap<(String, String, String), (Value, Instant)>,
    spam: HashMap<(String, String), SpamBucket>,
    queue: Option<mpsc::Sender<EventWrite>>,
    dropped: u64,
}

impl Recorder {
    pub fn new(client: Client, component: &str) -> Recorder {
        Recorder::with_writer(Arc::new(client), component)
    }

    /// A recorder whose Events go through `writer` (a fake in tests).
    pub fn with_writer(writer: Arc<dyn Writer>, component: &str) -> Recorder {
        Recorder {
            writer,
            component: component.to_string(),
            seen: HashMap::new(),
            spam: HashMap::new(),
            queue: None,
            dropped: 0,
        }
    }

    /// Record an Event; fire and forget (a lost Event is logged, never
    /// retried: Events are best effort, as in Kubernetes).
    pub fn record(&mut self, involved: &Value, event_type: EventType, reason: &str, message: &str) {
        let now = Instant::now();
        let uid = meta::uid(involved).unwrap_or_default().to_string();
        if self.spam.len() >= RECORDER_CACHE_MAX {
            self.spam.retain(|_, b| b.tokens < SPAM_BURST);
            if self.spam.len() >= RECORDER_CACHE_MAX {
                self.spam.clear();
            }
        }
        let allowed = self
            .spam
            .entry((uid.clone(), reason.to_string()))
            .or_insert_with(|| SpamBucket::new(now))
            .take(now);
        if !allowed {
            debug!(object = %uid, reason, "event dropped by the spam filter");
            return;
        }
        let stamp = lifecycle::format_time(jiff::Timestamp::now());
        let key = (uid, reason.to_string(), message.to_string());
        let write = match self.seen.get_mut(&key) {
            Some((event, at)) if at.elapsed() < AGGREGATE_WINDOW => {
                let count = event.get("count").and_then(Value::as_i64).unwrap_or(1) + 1;
                event["count"] = json!(count);
                event["lastTimestamp"] = json!(stamp);
                if let Some(m) = event.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                *at = now;
                Some(event.clone())
            }
            _ => None,
        };
        let event = match write {
            Some(e) => e,
            None => {
                if self.seen.len() >= RECORDER_CACHE_MAX {
                    self.seen
                        .retain(|_, (_, at)| at.elapsed() < AGGREGATE_WINDOW);
                    if self.seen.len() >= RECORDER_CACHE_MAX {
                        self.seen.clear();
                    }
                }
                let suffix = format!("{:016x}", uuid::Uuid::new_v4().as_u128() as u64);
                let e = event_object(
                    involved,
                    event_type,
                    reason,
                    message,
                    &self.component,
                    &stamp,
                    &suffix,
                );
                self.seen.insert(key, (e.clone(), now));
                e
            }
        };
        let update = event.get("count").and_then(Value::as_i64).unwrap_or(1) > 1;
        let queue = self
            .queue
            .get_or_insert_with(|| start_writer(self.writer.clone()));
        if queue.try_send(EventWrite { event, update }).is_err() {
            self.dropped += 1;
            debug!(dropped = self.dropped, "event queue full; event dropped");
        }
    }
}

/// The task that writes one recorder's Events, a few at a time.
fn start_writer(writer: Arc<dyn Writer>) -> mpsc::Sender<EventWrite> {
    let (tx, mut rx) = mpsc::channel::<EventWrite>(RECORDER_QUEUE);
    tokio::spawn(async move {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
            .for_each_concurrent(RECORDER_WRITES_IN_FLIGHT, |w| {
                let write = if w.update {
                    Write::Update(w.event)
                } else {
                    Write::Create(w.event)
                };
                let done = writer.write(write);
                async move {
                    let res = done.await;
                    if let Err(e) = res {
                        debug!(error = %e, "event not recorded");
                    }
                }
            })
            .await;
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_their_object_and_expire() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns", "uid": "u"}});
        let e = event_object(
            &pod,
            EventType::Warning,
            "BackOff",
            "Back-off restarting",
            "kubelet",
            "2026-01-01T00:00:00Z",
            "abc",
        );
        assert_eq!(e["metadata"]["name"], "p.abc");
        assert_eq!(e["involvedObject"]["uid"], "u");
        assert_eq!(involved_kind(&e), Some(Kind::Pod));
        assert!(
            kubus_api::admission::admit(e.clone()).is_ok(),
            "{:?}",
            kubus_api::admission::admit(e.clone()).err()
        );
        let later: jiff::Timestamp = "2026-01-01T02:00:00Z".parse().expect("ts");
        assert!(expired(&e, later, EVENT_TTL));
        let soon: jiff::Timestamp = "2026-01-01T00:30:00Z".parse().expect("ts");
        assert!(!expired(&e, soon, EVENT_TTL));
    }

    #[test]
    fn spam_filter_allows_a_burst_then_one_per_interval() {
        let t0 = Instant::now();
        let mut b = SpamBucket::new(t0);
        let allowed = (0..100).filter(|_| b.take(t0)).count();
        assert_eq!(allowed, SPAM_BURST as usize);
        assert!(!b.take(t0 + SPAM_REFILL / 2));
        assert!(b.take(t0 + SPAM_REFILL));
        assert!(!b.take(t0 + SPAM_REFILL));
        // a long quiet spell refills the burst, no more
        let later = t0 + SPAM_REFILL * 1000;
        assert_eq!(
            (0..100).filter(|_| b.take(later)).count(),
            SPAM_BURST as usize
        );
    }
}
