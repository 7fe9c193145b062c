//! The informer cache: a local copy of one kind's objects, kept by the watch
//! client's items, that tells its actor which keys changed.
//!
//! Pure: the actor feeds [`WatchItem`]s in and gets changed objects out.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use kubus_api::meta;
use kubus_bus::protocol::EventType;
use kubus_bus::watch::WatchItem;
use serde_json::Value;

/// One kind's objects by store key (`namespace/name`).
#[derive(Debug, Default, Clone)]
pub struct Cache {
    objects: BTreeMap<String, Value>,
    /// The revision the cache is complete at.
    pub revision: u64,
    /// Whether a full list has been seen since start.
    pub synced: bool,
    /// Keys deleted lately, with the revision of their deletion, so that a
    /// write's answer that arrives after the deletion's event is not
    /// assumed back in (at most [`TOMBSTONES_MAX`], oldest dropped).
    tombstones: HashMap<String, u64>,
    tombstone_order: VecDeque<String>,
}

/// Deleted keys a cache remembers against stale assumptions.
pub const TOMBSTONES_MAX: usize = 16_384;

/// The cache key of an object: `namespace/name` (or `name`).
pub fn key_of(obj: &Value) -> String {
    match (meta::namespace(obj), meta::name(obj)) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// A change the cache saw: the object after (or, deleted, before) it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub deleted: bool,
    pub object: Value,
    /// The trace of the write that made it, when it was traced (an event's
    /// `traceparent`; never on a relist): work it sets off joins that trace.
    pub trace: Option<String>,
}

impl Delta {
    /// A change seen without a trace (a relist, or what a cache held).
    pub fn untraced(deleted: bool, object: Value) -> Delta {
        Delta {
            deleted,
            object,
            trace: None,
        }
    }
}

impl Cache {
    /// Apply one watch item; returns what changed (for a relist: everything
    /// added, changed or gone since the previous view).
    pub fn apply(&mut self, item: WatchItem) -> Vec<Delta> {
        match item {
            WatchItem::Bookmark(revision) => {
                self.revision = self.revision.max(revision);
                Vec::new()
            }
            WatchItem::Event(ev) => {
                self.revision = self.revision.max(ev.revision);
                if let Some(at) = ev.committed_ms {
                    observe_delay(&ev.object, at);
                }
                let key = key_of(&ev.object);
                match ev.event_type {
                    EventType::Bookmark => Vec::new(),
                    EventType::Deleted => {
                        self.objects.remove(&key);
                        self.bury(key.clone(), ev.revision);
                        vec![Delta {
                            deleted: true,
                            object: ev.object,
                            trace: ev.traceparent,
                        }]
                    }
                    EventType::Added | EventType::Modified => {
                        self.objects.insert(key, ev.object.clone());
                        vec![Delta {
                            deleted: false,
                            object: ev.object,
                            trace: ev.traceparent,
                        }]
                    }
                }
            }
            WatchItem::Relisted { items, revision } => {
                let mut fresh: BTreeMap<String, Value> =
                    items.into_iter().map(|o| (key_of(&o), o)).collect();
                let mut deltas = Vec::new();
                for (k, old) in std::mem::take(&mut self.objects) {
                    if !fresh.contains_key(&k) {
                        deltas.push(Delta::untraced(true, old));
                    } else if fresh.get(&k) == Some(&old) {
                        // unchanged: move it back without a delta
                        if let Some(v) = fresh.remove(&k) {
                            self.objects.insert(k, v);
                        }
                    }
                }
                for (k, v) in fresh {
                    deltas.push(Delta::untraced(false, v.clone()));
                    self.objects.insert(k, v);
                }
                self.revision = revision;
                self.synced = true;
                deltas
            }
        }
    }

    fn bury(&mut self, key: String, revision: u64) {
        if self.tombstones.insert(key.clone(), revision).is_none() {
            self.tombstone_order.push_back(key);
        }
        while self.tombstone_order.len() > TOMBSTONES_MAX {
            if let Some(old) = self.tombstone_order.pop_front() {
                self.tombstones.remove(&old);
            }
        }
    }

    /// Record an object this actor just wrote, before its event arrives, so
    /// the next decision already counts it. A newer event replaces it; an
    /// object whose deletion was seen after this version is not brought
    /// back.
    pub fn assume(&mut self, obj: Value) {
        let key = key_of(&obj);
        let rv = meta::resource_version(&obj).unwrap_or(0);
        if self
            .tombstones
            .get(&key)
            .is_some_and(|deleted| *deleted >= rv)
        {
            return;
        }
        let newer = self
            .objects
            .get(&key)
            .and_then(meta::resource_version)
            .zip(meta::resource_version(&obj))
            .is_some_and(|(have, new)| have > new);
        if !newer {
            self.objects.insert(key, obj);
        }
    }

    /// Forget an object this actor just deleted.
    pub fn forget(&mut self, key: &str) {
        self.objects.remove(key);
    }

    /// Whether `key` was deleted at or after revision `rv` (as far as the
    /// cache remembers).
    pub fn deleted_since(&self, key: &str, rv: u64) -> bool {
        self.tombstones.get(key).is_some_and(|d| *d >= rv)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.objects.get(key)
    }

    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.objects.values()
    }

    /// The objects of one namespace (keys are `namespace/name`, so this is
    /// a range of the map, not a scan).
    pub fn in_namespace<'a>(&'a self, namespace: &str) -> impl Iterator<Item = &'a Value> + 'a {
        let prefix = format!("{namespace}/");
        self.objects
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// Counts over the objects one owner controls, kept as they change, so a
/// controller of thousands of pods need not scan them on every sync.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub active: usize,
    pub ready: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.active += other.active;
        self.ready += other.ready;
    }

    fn sub(&mut self, other: Tally) {
        self.active = self.active.saturating_sub(other.active);
        self.ready = self.ready.saturating_sub(other.ready);
    }
}

/// How a pod counts toward its controller's [`Tally`]: when active, and
/// when active and Ready (a ReplicaSet's `replicas` and `readyReplicas`).
pub fn pod_tally(pod: &Value) -> Tally {
    let active = kubus_api::pod::is_active(pod);
    Tally {
        active: usize::from(active),
        ready: usize::from(active && kubus_api::pod::is_ready(pod)),
    }
}

/// Which objects each controller (by uid) owns, and their [`Tally`] as
/// `classify` counts each object, kept as changes arrive, so a controller
/// finds its objects and their counts without scanning every object.
#[derive(Debug, Clone)]
pub struct OwnerIndex {
    by_owner: HashMap<String, (BTreeSet<String>, Tally)>,
    /// An object's owner and what it adds to the owner's tally.
    owner_of: HashMap<String, (String, Tally)>,
    classify: fn(&Value) -> Tally,
}

impl Default for OwnerIndex {
    /// An index that counts nothing.
    fn default() -> OwnerIndex {
        OwnerIndex::new(|_| Tally::default())
    }
}

impl OwnerIndex {
    pub fn new(classify: fn(&Value) -> Tally) -> OwnerIndex {
        OwnerIndex {
            by_owner: HashMap::new(),
            owner_of: HashMap::new(),
            classify,
        }
    }

    /// Object `key` changed (`None`: deleted): index it under its
    /// controller's uid.
    pub fn update(&mut self, key: &str, object: Option<&Value>) {
        let now =
            object.and_then(|o| meta::controller_uid(o).map(|owner| (owner, (self.classify)(o))));
        let before = self.owner_of.get(key).map(|(o, t)| (o.as_str(), *t));
        if before == now {
            return;
        }
        if let Some((old, tally)) = self.owner_of.remove(key) {
            if let Some((keys, total)) = self.by_owner.get_mut(&old) {
                keys.remove(key);
                total.sub(tally);
                if keys.is_empty() {
                    self.by_owner.remove(&old);
                }
            }
        }
        if let Some((owner, tally)) = now {
            let (keys, total) = self.by_owner.entry(owner.to_string()).or_default();
            keys.insert(key.to_string());
            total.add(tally);
            self.owner_of
                .insert(key.to_string(), (owner.to_string(), tally));
        }
    }

    /// The keys of what `owner` (a uid) controls.
    pub fn owned_by(&self, owner: &str) -> impl Iterator<Item = &String> {
        self.by_owner.get(owner).into_iter().flat_map(|(k, _)| k)
    }

    /// What `owner`'s objects add up to.
    pub fn tally(&self, owner: &str) -> Tally {
        self.by_owner
            .get(owner)
            .map(|(_, t)| *t)
            .unwrap_or_default()
    }
}

/// `kubus_watch_delay_seconds`: from a change's commit (the leader's
/// clock) to its arrival here.
fn observe_delay(object: &Value, committed_ms: u64) {
    let Some(kind) = kubus_api::meta::kind_of(object) else {
        return;
    };
    let now_ms = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
    crate::metrics::METRICS
        .watch_delay
        .get_or_create(&crate::metrics::resource(kind.resource()))
        .observe(now_ms.saturating_sub(committed_ms) as f64 / 1000.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubus_bus::protocol::ChangeEvent;
    use serde_json::json;

    fn pod(name: &str, rv: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "d", "resourceVersion": rv}})
    }

    #[test]
    fn relist_reports_only_differences() {
        let mut c = Cache::default();
        let d = c.apply(WatchItem::Relisted {
            items: vec![pod("a", "1"), pod("b", "2")],
            revision: 2,
        });
        assert_eq!(d.len(), 2);
        let d = c.apply(WatchItem::Relisted {
            items: vec![pod("a", "1"), pod("c", "3")],
            revision: 3,
        });
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().any(|x| x.deleted && key_of(&x.object) == "d/b"));
        assert!(d.iter().any(|x| !x.deleted && key_of(&x.object) == "d/c"));
        assert_eq!(c.len(), 2);
        assert!(c.synced);
    }

    #[test]
    fn events_and_assumptions() {
        let mut c = Cache::default();
        c.apply(WatchItem::Event(ChangeEvent {
            event_type: EventType::Added,
            revision: 5,
            prev: 0,
            object: pod("a", "5"),
            committed_ms: None,
            traceparent: None,
        }));
        c.assume(pod("a", "4"));
        assert_eq!(c.get("d/a").and_then(meta::resource_version), Some(5));
        c.assume(pod("a", "6"));
        assert_eq!(c.get("d/a").and_then(meta::resource_version), Some(6));
        c.apply(WatchItem::Event(ChangeEvent {
            event_type: EventType::Deleted,
            revision: 7,
            prev: 6,
            object: pod("a", "7"),
            committed_ms: None,
            traceparent: None,
        }));
        assert!(c.is_empty());
        // an answer to a write that arrives after the deletion's event
        // (an update that removed the object, a pod's graceful delete)
        // is not assumed back in; a re-created object is
        c.assume(pod("a", "7"));
        c.assume(pod("a", "6"));
        assert!(c.is_empty(), "a deleted object came back");
        c.assume(pod("a", "8"));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn owner_index_follows_changes() {
        let owned = |name: &str, owner: &str| {
            json!({"metadata": {"name": name, "namespace": "d",
                "ownerReferences": [{"uid": owner, "controller": true, "kind": "ReplicaSet"}]}})
        };
        let mut ix = OwnerIndex::default();
        ix.update("d/a", Some(&owned("a", "rs1")));
        ix.update("d/b", Some(&owned("b", "rs1")));
        ix.update("d/c", Some(&owned("c", "rs2")));
        assert_eq!(ix.owned_by("rs1").count(), 2);
        ix.update("d/b", Some(&owned("b", "rs2")));
        ix.update("d/a", None);
        assert_eq!(ix.owned_by("rs1").count(), 0);
        assert_eq!(
            ix.owned_by("rs2").cloned().collect::<Vec<_>>(),
            vec!["d/b".to_string(), "d/c".to_string()]
        );
        ix.update("d/c", Some(&pod("c", "9")));
        assert_eq!(ix.owned_by("rs2").count(), 1);
    }

    #[test]
    fn owner_index_keeps_tallies() {
        let owned = |name: &str, owner: &str, ready: bool| {
            json!({"metadata": {"name": name, "namespace": "d",
                "ownerReferences": [{"uid": owner, "controller": true, "kind": "ReplicaSet"}]},
                "ready": ready})
        };
        let mut ix = OwnerIndex::new(|o| Tally {
            active: 1,
            ready: usize::from(o["ready"] == true),
        });
        ix.update("d/a", Some(&owned("a", "rs1", false)));
        ix.update("d/b", Some(&owned("b", "rs1", true)));
        ix.update("d/c", Some(&owned("c", "rs2", true)));
        assert_eq!(
            ix.tally("rs1"),
            Tally {
                active: 2,
                ready: 1
            }
        );
        // a change of class, not of owner
        ix.update("d/a", Some(&owned("a", "rs1", true)));
        assert_eq!(
            ix.tally("rs1"),
            Tally {
                active: 2,
                ready: 2
            }
        );
        // a move to another owner, then a delete
        ix.update("d/b", Some(&owned("b", "rs2", true)));
        ix.update("d/a", None);
        assert_eq!(ix.tally("rs1"), Tally::default());
        assert_eq!(
            ix.tally("rs2"),
            Tally {
                active: 2,
                ready: 2
            }
        );
        ix.update("d/c", Some(&pod("c", "9")));
        assert_eq!(
            ix.tally("rs2"),
            Tally {
                active: 1,
                ready: 1
            }
        );
    }
}
