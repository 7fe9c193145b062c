//! A Kubernetes watch over a bus watch: newline-delimited JSON events
//! (`{"type":"ADDED","object":{…}}`) on a chunked response, with
//! Kubernetes' semantics:
//!
//! - no `resourceVersion` (or `0`): an `ADDED` for every object there is,
//!   then the changes (`sendInitialEvents=true` adds a bookmark marking
//!   the end of the initial events);
//! - `resourceVersion=N`: the changes after N, from the store's history;
//!   when that history no longer reaches back to N, or the bus watcher
//!   has to relist later, an `ERROR` event with a 410 `Expired` `Status`,
//!   and the stream ends (the client relists) — never a silent relist;
//! - every event's object carries its change's revision as
//!   `resourceVersion` (a client resumes from it);
//! - label and field selectors: an object that starts matching is
//!   `ADDED`, one that stops matching is `DELETED`, as the Kubernetes
//!   watch cache does;
//! - `allowWatchBookmarks`: a `BOOKMARK` at most every
//!   [`crate::BOOKMARK_EVERY`]; the stream ends after `timeoutSeconds`
//!   (at most [`crate::WATCH_TIMEOUT_MAX`]) or when the client goes.
//!
//! The matching decision ([`Filter`], [`Tracker`]) is pure; the task
//! around it moves events.

use std::collections::HashSet;

use bytes::Bytes;
use http::Response;
use kubus_api::error::ApiError;
use kubus_api::selector::{FieldSelector, Selector};
use kubus_api::{meta, Kind};
use kubus_bus::protocol::{ChangeEvent, EventType};
use kubus_bus::watch::{WatchItem, WatchSpec};
use kubus_bus::Client;
use serde_json::{json, Value};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::body::{self, Body};
use crate::query::ListQuery;
use crate::route::Target;
use crate::status::{self, Failure};
use crate::table::{self, Include};

/// Which objects a watch reports.
#[derive(Debug, Clone)]
pub struct Filter {
    pub kind: Kind,
    pub namespace: Option<String>,
    pub labels: Option<Selector>,
    pub fields: Option<FieldSelector>,
}

impl Filter {
    pub fn new(t: &Target, lq: &ListQuery) -> Result<Filter, ApiError> {
        let labels = match &lq.label_selector {
            Some(s) => Some(Selector::parse(s).map_err(|e| {
                ApiError::bad_request(format!("labelSelector {s:?} is invalid: {e}"))
            })?),
            None => None,
        };
        let fields = match &lq.field_selector {
            Some(s) => {
                let f = FieldSelector::parse(s)?;
                f.check(t.kind)?;
                Some(f)
            }
            None => None,
        };
        Ok(Filter {
            kind: t.kind,
            namespace: t.namespace.clone(),
            labels,
            fields,
        })
    }

    /// Whether `obj` is one the watch reports.
    pub fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| meta::namespace(obj) == Some(ns))
            && self
                .labels
                .as_ref()
                .is_none_or(|s| s.matches(&meta::labels(obj)))
            && self
                .fields
                .as_ref()
                .is_none_or(|f| f.matches(self.kind, obj))
    }

    /// Whether the filter depends on what may change (labels, fields):
    /// then what matched before must be remembered.
    fn tracks(&self) -> bool {
        self.labels.is_some() || self.fields.is_some()
    }
}

/// Remembers which objects matched, to turn a change into what the
/// watcher sees: `ADDED` when one starts matching, `DELETED` when it stops.
#[derive(Debug, Default)]
pub struct Tracker {
    matching: HashSet<String>,
}

fn key(obj: &Value) -> String {
    format!(
        "{}/{}",
        meta::namespace(obj).unwrap_or_default(),
        meta::name(obj).unwrap_or_default()
    )
}

impl Tracker {
    /// Records an object of the initial list.
    pub fn seed(&mut self, obj: &Value) {
        self.matching.insert(key(obj));
    }

    /// The event type the watcher sees for `event`, or None.
    pub fn decide(&mut self, filter: &Filter, event: &ChangeEvent) -> Option<&'static str> {
        if event.event_type == EventType::Bookmark {
            return None;
        }
        let now = filter.matches(&event.object);
        if !filter.tracks() {
            return now.then_some(match event.event_type {
                EventType::Added => "ADDED",
                EventType::Deleted => "DELETED",
                EventType::Modified | EventType::Bookmark => "MODIFIED",
            });
        }
        let k = key(&event.object);
        let before = self.matching.contains(&k);
        match event.event_type {
            EventType::Deleted => {
                self.matching.remove(&k);
                before.then_some("DELETED")
            }
            EventType::Added | EventType::Modified | EventType::Bookmark => match (before, now) {
                (false, true) => {
                    self.matching.insert(k);
                    Some("ADDED")
                }
                (true, true) => Some(if event.event_type == EventType::Added {
                    "ADDED"
                } else {
                    "MODIFIED"
                }),
                (true, false) => {
                    self.matching.remove(&k);
                    Some("DELETED")
                }
                (false, false) => None,
            },
        }
    }
}

/// Starts a watch and answers with its stream. The permit is held while
/// the stream runs.
pub async fn serve(
    client: Client,
    t: Target,
    lq: ListQuery,
    table: Option<Include>,
    permit: OwnedSemaphorePermit,
) -> Result<Response<Body>, Failure> {
    let filter = Filter::new(&t, &lq).map_err(|e| status::from_api(&e))?;
    let mut tracker = Tracker::default();
    // A resumed watch with selectors must know what matched at its start.
    if let (Some(rv), true) = (lq.resource_version, filter.tracks()) {
        let (items, _) = client
            .list_at(
                t.kind,
                t.namespace.as_deref(),
                lq.label_selector.as_deref(),
                lq.field_selector.as_deref(),
                rv,
            )
            .await
            .map_err(|e| status::from_client(&e))?;
        items.iter().for_each(|o| tracker.seed(o));
    }
    let spec = WatchSpec {
        since: lq.resource_version,
        ..WatchSpec::all(&client, t.kind)
    };
    let items = kubus_bus::watch::watch(client, spec);
    let (tx, body) = body::channel();
    let run = Run {
        filter,
        tracker,
        table,
        tx,
        lq,
        columns_sent: false,
    };
    tokio::spawn(async move {
        let _permit = permit;
        let timeout = run.lq.timeout;
        let _ = tokio::time::timeout(timeout, run.pump(items)).await;
    });
    Ok(body::streamed("application/json", body))
}

struct Run {
    filter: Filter,
    tracker: Tracker,
    table: Option<Include>,
    tx: mpsc::Sender<Bytes>,
    lq: ListQuery,
    columns_sent: bool,
}

impl Run {
    async fn pump(mut self, mut items: mpsc::Receiver<WatchItem>) {
        let resumed = self.lq.resource_version.is_some();
        let mut started = resumed;
        let mut last_bookmark = tokio::time::Instant::now();
        loop {
            // a client that went is noticed at once, not at the next event
            let item = tokio::select! {
                item = items.recv() => match item {
                    Some(i) => i,
                    None => return,
                },
                _ = self.tx.closed() => return,
            };
            let sent = match item {
                WatchItem::Relisted { items, revision } if !started => {
                    started = true;
                    self.initial(items, revision).await
                }
                WatchItem::Relisted { revision, .. } => {
                    // the bus watcher had to relist: this watch cannot
                    // go on without missing or repeating changes
                    let e = ApiError::expired(format!(
                        "too old resource version: {} ({revision})",
                        self.lq.resource_version.unwrap_or_default()
                    ));
                    let _ = self.send("ERROR", &status::from_api(&e).status).await;
                    return;
                }
                WatchItem::Event(event) => match self.tracker.decide(&self.filter, &event) {
                    Some(ty) => {
                        let mut obj = event.object;
                        set_revision(&mut obj, event.revision);
                        self.send_object(ty, obj).await
                    }
                    None => true,
                },
                WatchItem::Bookmark(rev) => {
                    if self.lq.allow_bookmarks && last_bookmark.elapsed() >= crate::BOOKMARK_EVERY {
                        last_bookmark = tokio::time::Instant::now();
                        self.bookmark(rev, false).await
                    } else {
                        true
                    }
                }
            };
            if !sent {
                return;
            }
        }
    }

    /// The initial `ADDED` events of a watch that did not resume.
    async fn initial(&mut self, items: Vec<Value>, revision: u64) -> bool {
        for obj in items {
            if !self.filter.matches(&obj) {
                continue;
            }
            self.tracker.seed(&obj);
            if !self.send_object("ADDED", obj).await {
                return false;
            }
        }
        if self.lq.send_initial_events {
            return self.bookmark(revision, true).await;
        }
        true
    }

    async fn bookmark(&mut self, revision: u64, initial_end: bool) -> bool {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let kind = self.filter.kind;
        let obj =
            json!({"kind": kind.as_str(), "apiVersion": kind.api_version(), "metadata": metadata});
        self.send("BOOKMARK", &obj).await
    }

    async fn send_object(&mut self, ty: &str, obj: Value) -> bool {
        match self.table {
            None => self.send(ty, &obj).await,
            Some(include) => {
                let revision = meta::resource_version(&obj).unwrap_or_default();
                let t = table::table(
                    self.filter.kind,
                    std::slice::from_ref(&obj),
                    (revision, None),
                    include,
                    !self.columns_sent,
                    jiff::Timestamp::now(),
                );
                self.columns_sent = true;
                self.send(ty, &t).await
            }
        }
    }

    async fn send(&self, ty: &str, obj: &Value) -> bool {
        let mut line = serde_json::to_vec(&json!({"type": ty, "object": obj})).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }
}

fn set_revision(obj: &mut Value, revision: u64) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(revision.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, app: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "a", "labels": {"app": app}}})
    }

    fn event(ty: EventType, obj: Value) -> ChangeEvent {
        ChangeEvent {
            event_type: ty,
            revision: 5,
            prev: 4,
            object: obj,
            committed_ms: None,
            traceparent: None,
        }
    }

    #[test]
    fn objects_entering_and_leaving_a_selector_are_added_and_deleted() {
        let t = Target {
            kind: Kind::Pod,
            namespace: Some("a".into()),
            name: None,
            sub: None,
        };
        let lq = ListQuery {
            label_selector: Some("app=web".into()),
            ..ListQuery::default()
        };
        let f = Filter::new(&t, &lq).expect("filter");
        let mut tr = Tracker::default();
        tr.seed(&pod("p1", "web"));
        let cases = [
            (EventType::Modified, pod("p1", "web"), Some("MODIFIED")),
            (EventType::Modified, pod("p1", "db"), Some("DELETED")),
            (EventType::Modified, pod("p1", "db"), None),
            (EventType::Modified, pod("p1", "web"), Some("ADDED")),
            (EventType::Added, pod("p2", "db"), None),
            (EventType::Deleted, pod("p2", "db"), None),
            (EventType::Deleted, pod("p1", "web"), Some("DELETED")),
        ];
        for (ty, obj, want) in cases {
            assert_eq!(tr.decide(&f, &event(ty, obj.clone())), want, "{ty:?} {obj}");
        }
        // another namespace never matches
        let mut other = pod("p3", "web");
        other["metadata"]["namespace"] = json!("b");
        assert_eq!(tr.decide(&f, &event(EventType::Added, other)), None);
    }

    #[test]
    fn without_selectors_events_pass_as_they_are() {
        let t = Target {
            kind: Kind::Pod,
            namespace: None,
            name: None,
            sub: None,
        };
        let f = Filter::new(&t, &ListQuery::default()).expect("filter");
        let mut tr = Tracker::default();
        assert_eq!(
            tr.decide(&f, &event(EventType::Deleted, pod("x", "y"))),
            Some("DELETED")
        );
        assert!(Filter::new(
            &t,
            &ListQuery {
                field_selector: Some("spec.nope=1".into()),
                ..ListQuery::default()
            }
        )
        .is_err());
    }
}
