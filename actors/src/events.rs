//! Kubernetes-style Events: what happened to an object, said once and
//! counted when it happens again (Scheduled, Started, BackOff,
//! ScalingReplicaSet, …). Events are stored objects (kind Event) with a time
//! to live; the store publishes each on
//! `kubus.<c>.events.<namespace>.<resource>.<name>` of the object involved.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kubus_api::{lifecycle, meta, Kind};
use kubus_bus::Client;
use serde_json::{json, Value};
use tracing::debug;

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

/// Records Events for one component; repeats within the window are counted
/// on the Event already written.
#[derive(Debug)]
pub struct Recorder {
    client: Client,
    component: String,
    seen: HashMap<(String, String, String), (Value, Instant)>,
}

impl Recorder {
    pub fn new(client: Client, component: &str) -> Recorder {
        Recorder {
            client,
            component: component.to_string(),
            seen: HashMap::new(),
        }
    }

    /// Record an Event; fire and forget (a lost Event is logged, never
    /// retried: Events are best effort, as in Kubernetes).
    pub fn record(&mut self, involved: &Value, event_type: EventType, reason: &str, message: &str) {
        let now = lifecycle::format_time(jiff::Timestamp::now());
        let key = (
            meta::uid(involved).unwrap_or_default().to_string(),
            reason.to_string(),
            message.to_string(),
        );
        let client = self.client.clone();
        let write = match self.seen.get_mut(&key) {
            Some((event, at)) if at.elapsed() < AGGREGATE_WINDOW => {
                let count = event.get("count").and_then(Value::as_i64).unwrap_or(1) + 1;
                event["count"] = json!(count);
                event["lastTimestamp"] = json!(now);
                if let Some(m) = event.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                *at = Instant::now();
                Some(event.clone())
            }
            _ => None,
        };
        let event = match write {
            Some(e) => e,
            None => {
                if self.seen.len() >= RECORDER_CACHE_MAX {
                    let oldest = self
                        .seen
                        .iter()
                        .min_by_key(|(_, (_, at))| *at)
                        .map(|(k, _)| k.clone());
                    if let Some(k) = oldest {
                        self.seen.remove(&k);
                    }
                }
                let suffix = format!("{:016x}", uuid::Uuid::new_v4().as_u128() as u64);
                let e = event_object(
                    involved,
                    event_type,
                    reason,
                    message,
                    &self.component,
                    &now,
                    &suffix,
                );
                self.seen.insert(key, (e.clone(), Instant::now()));
                e
            }
        };
        let update = event.get("count").and_then(Value::as_i64).unwrap_or(1) > 1;
        tokio::spawn(async move {
            let res = if update {
                client.update(event).await
            } else {
                client.create(event).await
            };
            if let Err(e) = res {
                debug!(error = %e, "event not recorded");
            }
        });
    }
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
}
