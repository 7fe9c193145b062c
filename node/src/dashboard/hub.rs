//! The dashboard's live state: every watched object's [`Row`], and the
//! latest updates in order, so a page that reconnects resumes where it
//! stopped instead of loading everything again.
//!
//! Each update is stamped with the hub's *mark*: the highest store
//! revision the hub has seen when it made the update. Marks never go
//! down along the log (kinds are watched separately, so a change of one
//! kind may arrive after a later revision of another; its mark is then the
//! later one). A page remembers the mark of the last update it got and
//! resumes from it: it is sent every update whose mark is at least that
//! (one it already has may come twice — updates are idempotent — none is
//! missed). When the log no longer reaches back that far, or the mark was
//! made by another hub (the process restarted: its `epoch` differs), the
//! page gets a snapshot instead, as a Kubernetes watcher relists after
//! `410 Gone`.
//!
//! Pure: watch items in, updates out; the I/O is in [`super`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use kubus_api::print::event_order;
use kubus_api::Kind;
use kubus_bus::protocol::EventType;
use kubus_bus::watch::WatchItem;
use serde::Serialize;
use serde_json::Value;

use super::rows::{row, Row};

/// Updates kept for pages that reconnect.
pub const LOG_MAX: usize = 20_000;
/// Events kept (the newest): the timeline, not the whole history.
pub const EVENTS_KEPT: usize = 1_000;

/// One change of what the page shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Update {
    /// The row is new or changed.
    Put {
        #[serde(serialize_with = "shared_row")]
        row: Arc<Row>,
        /// When the change was committed (the leader's clock, ms since the
        /// epoch), for the page to measure how late it shows it.
        #[serde(skip_serializing_if = "Option::is_none")]
        committed_ms: Option<u64>,
    },
    /// The object is gone.
    Gone {
        kind: &'static str,
        namespace: String,
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        committed_ms: Option<u64>,
    },
}

fn shared_row<S: serde::Serializer>(row: &Arc<Row>, s: S) -> Result<S::Ok, S::Error> {
    Row::serialize(row, s)
}

/// An update and the hub's mark when it was made.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub mark: u64,
    pub update: Update,
}

/// What a page starting (or resuming) is sent first.
#[derive(Debug, PartialEq)]
pub enum Start {
    /// Everything, as of `mark`.
    Snapshot { mark: u64, rows: Vec<Arc<Row>> },
    /// The updates from the page's mark on.
    Resume(Vec<Arc<Entry>>),
}

/// Rows by `namespace/name`, per kind.
type Rows = BTreeMap<String, Arc<Row>>;

#[derive(Debug, Default)]
pub struct Hub {
    rows: HashMap<Kind, Rows>,
    /// The highest revision seen.
    mark: u64,
    log: VecDeque<Arc<Entry>>,
    /// The mark of the newest update dropped from the log (0: none).
    dropped_mark: u64,
    /// Event keys, oldest first (to keep the newest [`EVENTS_KEPT`]).
    events: VecDeque<String>,
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl Hub {
    /// The highest revision seen.
    #[cfg(test)]
    pub fn mark(&self) -> u64 {
        self.mark
    }

    /// The names of every object of `kind` it holds.
    pub fn names(&self, kind: Kind) -> Vec<String> {
        self.rows
            .get(&kind)
            .map(|rows| rows.values().map(|r| r.name.clone()).collect())
            .unwrap_or_default()
    }

    /// How many rows of `kind` it holds.
    #[cfg(test)]
    pub fn count(&self, kind: Kind) -> usize {
        self.rows.get(&kind).map_or(0, BTreeMap::len)
    }

    /// Apply one watch item of `kind`; returns the updates it made, each
    /// also appended to the log.
    pub fn apply(&mut self, kind: Kind, item: WatchItem, now: jiff::Timestamp) -> Vec<Arc<Entry>> {
        let updates = match item {
            WatchItem::Bookmark(revision) => {
                self.mark = self.mark.max(revision);
                Vec::new()
            }
            WatchItem::Event(ev) => {
                self.mark = self.mark.max(ev.revision);
                match ev.event_type {
                    EventType::Bookmark => Vec::new(),
                    EventType::Deleted => self
                        .remove(kind, &ev.object, ev.committed_ms)
                        .into_iter()
                        .collect(),
                    EventType::Added | EventType::Modified => self
                        .put(kind, &ev.object, ev.committed_ms, now)
                        .into_iter()
                        .collect(),
                }
            }
            WatchItem::Relisted { items, revision } => {
                self.mark = self.mark.max(revision);
                self.relist(kind, items, now)
            }
        };
        updates
            .into_iter()
            .map(|update| {
                let entry = Arc::new(Entry {
                    mark: self.mark,
                    update,
                });
                self.log.push_back(entry.clone());
                if self.log.len() > LOG_MAX {
                    if let Some(old) = self.log.pop_front() {
                        self.dropped_mark = old.mark;
                    }
                }
                entry
            })
            .collect()
    }

    fn put(
        &mut self,
        kind: Kind,
        object: &Value,
        committed_ms: Option<u64>,
        now: jiff::Timestamp,
    ) -> Option<Update> {
        let r = Arc::new(row(kind, object, now));
        let k = key(&r.namespace, &r.name);
        let rows = self.rows.entry(kind).or_default();
        if rows.get(&k).is_some_and(|old| **old == *r) {
            return None;
        }
        let new = rows.insert(k.clone(), r.clone()).is_none();
        if kind == Kind::Event && new {
            self.events.push_back(k);
            while self.events.len() > EVENTS_KEPT {
                // the page keeps its newest as well: no update needed
                if let (Some(old), Some(rows)) =
                    (self.events.pop_front(), self.rows.get_mut(&Kind::Event))
                {
                    rows.remove(&old);
                }
            }
        }
        Some(Update::Put {
            row: r,
            committed_ms,
        })
    }

    fn remove(&mut self, kind: Kind, object: &Value, committed_ms: Option<u64>) -> Option<Update> {
        let namespace = kubus_api::meta::namespace(object).unwrap_or_default();
        let name = kubus_api::meta::name(object).unwrap_or_default();
        let k = key(namespace, name);
        self.rows.get_mut(&kind)?.remove(&k)?;
        if kind == Kind::Event {
            self.events.retain(|e| *e != k);
        }
        Some(Update::Gone {
            kind: kind.as_str(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            committed_ms,
        })
    }

    /// A fresh list of `kind`: what is gone, new or changed since.
    fn relist(&mut self, kind: Kind, mut items: Vec<Value>, now: jiff::Timestamp) -> Vec<Update> {
        if kind == Kind::Event && items.len() > EVENTS_KEPT {
            items.sort_by_cached_key(event_order);
            items.drain(..items.len() - EVENTS_KEPT);
        }
        let old = self.rows.remove(&kind).unwrap_or_default();
        if kind == Kind::Event {
            self.events.clear();
        }
        let mut updates = Vec::new();
        for item in &items {
            updates.extend(self.put(kind, item, None, now));
        }
        // put() skipped the unchanged (it compared with an empty map): drop
        // those updates, and say what is gone
        let fresh = self.rows.get(&kind);
        updates.retain(|u| match u {
            Update::Put { row, .. } => old
                .get(&key(&row.namespace, &row.name))
                .is_none_or(|o| **o != **row),
            Update::Gone { .. } => true,
        });
        for (k, r) in &old {
            if fresh.is_none_or(|f| !f.contains_key(k)) {
                updates.push(Update::Gone {
                    kind: r.kind,
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                    committed_ms: None,
                });
            }
        }
        updates
    }

    /// What a page is sent first: the updates from `since` (a mark it got
    /// from this hub) when the log still holds them all, else everything.
    pub fn start(&self, since: Option<u64>) -> Start {
        match since {
            Some(m) if m > self.dropped_mark && m <= self.mark => Start::Resume(
                self.log
                    .iter()
                    .skip_while(|e| e.mark < m)
                    .cloned()
                    .collect(),
            ),
            _ => Start::Snapshot {
                mark: self.mark,
                rows: self
                    .rows
                    .values()
                    .flat_map(|rows| rows.values().cloned())
                    .collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubus_bus::protocol::ChangeEvent;
    use serde_json::json;

    fn now() -> jiff::Timestamp {
        "2026-12-07T12:00:00Z".parse().expect("a time")
    }

    fn pod(name: &str, rv: u64, phase: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "resourceVersion": rv.to_string()},
               "spec": {"containers": [{"name": "c"}]}, "status": {"phase": phase}})
    }

    fn event(t: EventType, object: Value, revision: u64) -> WatchItem {
        WatchItem::Event(ChangeEvent {
            event_type: t,
            revision,
            prev: 0,
            object,
            committed_ms: Some(revision * 10),
            traceparent: None,
        })
    }

    fn names(entries: &[Arc<Entry>]) -> Vec<(String, u64)> {
        entries
            .iter()
            .map(|e| match &e.update {
                Update::Put { row, .. } => (format!("put {}", row.name), e.mark),
                Update::Gone { name, .. } => (format!("gone {name}"), e.mark),
            })
            .collect()
    }

    #[test]
    fn relists_say_only_what_changed_and_what_is_gone() {
        let mut hub = Hub::default();
        let first = hub.apply(
            Kind::Pod,
            WatchItem::Relisted {
                items: vec![pod("a", 1, "Running"), pod("b", 2, "Pending")],
                revision: 5,
            },
            now(),
        );
        assert_eq!(names(&first), [("put a".into(), 5), ("put b".into(), 5)]);
        let again = hub.apply(
            Kind::Pod,
            WatchItem::Relisted {
                items: vec![pod("a", 1, "Running"), pod("c", 7, "Pending")],
                revision: 8,
            },
            now(),
        );
        assert_eq!(names(&again), [("put c".into(), 8), ("gone b".into(), 8)]);
        assert_eq!(hub.count(Kind::Pod), 2);
    }

    #[test]
    fn pages_resume_from_their_mark_or_start_again() {
        let mut hub = Hub::default();
        hub.apply(
            Kind::Pod,
            event(EventType::Added, pod("a", 3, "Pending"), 3),
            now(),
        );
        // a node's change at 9 arrives before a pod's at 6: marks never go down
        hub.apply(
            Kind::Node,
            event(EventType::Added, json!({"metadata": {"name": "n"}}), 9),
            now(),
        );
        hub.apply(
            Kind::Pod,
            event(EventType::Modified, pod("a", 6, "Running"), 6),
            now(),
        );
        hub.apply(
            Kind::Pod,
            event(EventType::Deleted, pod("a", 6, "Running"), 10),
            now(),
        );
        let Start::Resume(from9) = hub.start(Some(9)) else {
            panic!("resumes");
        };
        assert_eq!(
            names(&from9),
            [
                ("put n".into(), 9),
                ("put a".into(), 9),
                ("gone a".into(), 10)
            ]
        );
        // a mark it never gave (another process's): everything
        assert!(matches!(
            hub.start(Some(11)),
            Start::Snapshot { mark: 10, .. }
        ));
        match hub.start(None) {
            Start::Snapshot { mark, rows } => {
                assert_eq!(mark, 10);
                assert_eq!(rows.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        // the log overflows: an old mark gets a snapshot
        for i in 0..LOG_MAX as u64 {
            hub.apply(
                Kind::Pod,
                event(
                    EventType::Added,
                    pod(&format!("p{i}"), 11 + i, "Running"),
                    11 + i,
                ),
                now(),
            );
        }
        assert!(matches!(hub.start(Some(9)), Start::Snapshot { .. }));
        assert!(matches!(hub.start(Some(hub.mark())), Start::Resume(ref e) if e.len() == 1));
    }

    #[test]
    fn only_the_newest_events_are_kept() {
        let mut hub = Hub::default();
        let ev = |i: usize| {
            json!({"metadata": {"name": format!("e{i}"), "namespace": "default", "resourceVersion": i.to_string()},
                   "lastTimestamp": format!("2026-12-07T11:{:02}:{:02}Z", i / 60 % 60, i % 60),
                   "involvedObject": {"kind": "Pod", "name": "p"}})
        };
        let items: Vec<Value> = (0..EVENTS_KEPT + 10).map(ev).collect();
        hub.apply(
            Kind::Event,
            WatchItem::Relisted {
                items,
                revision: 5000,
            },
            now(),
        );
        assert_eq!(hub.count(Kind::Event), EVENTS_KEPT);
        hub.apply(Kind::Event, event(EventType::Added, ev(5001), 5001), now());
        assert_eq!(hub.count(Kind::Event), EVENTS_KEPT);
        let Start::Snapshot { rows, .. } = hub.start(None) else {
            panic!("snapshot");
        };
        assert!(rows.iter().any(|r| r.name == "e5001"));
        assert!(!rows.iter().any(|r| r.name == "e10"));
    }

    #[test]
    fn an_unchanged_object_makes_no_update() {
        let mut hub = Hub::default();
        let a = hub.apply(
            Kind::Pod,
            event(EventType::Added, pod("a", 3, "Pending"), 3),
            now(),
        );
        assert_eq!(a.len(), 1);
        let same = hub.apply(
            Kind::Pod,
            event(EventType::Modified, pod("a", 3, "Pending"), 4),
            now(),
        );
        assert!(same.is_empty());
    }
}
