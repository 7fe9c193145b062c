//! Shared informers: one watch and one cache per kind per process, read by
//! every controller and the scheduler of that process (kube-runtime's
//! `reflector::store`: one writer, many readers).
//!
//! An [`Informer`] actor owns the watch of one kind and is the only writer
//! of its [`Shared`] cache (besides `assume`/`forget`, with which a writer
//! records what its own writes returned). After each change it tells its
//! subscribers which objects changed ([`Changed`]); they read whatever
//! else they need from the shared caches. [`Informers`] starts each
//! informer the first time a kind is asked for.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use actix::prelude::*;
use kubus_api::{meta, Kind};
use kubus_bus::watch::{WatchItem, WatchSpec};
use kubus_bus::Client;
use serde_json::Value;
use tracing::warn;

use crate::informer::{key_of, Cache, Delta, OwnerIndex, Tally};
use crate::watching::{watched, Watched};

/// One kind's objects with the indexes every reader shares.
#[derive(Debug)]
pub struct Indexed {
    pub cache: Cache,
    /// Objects by the uid of their controller, with each owner's tally.
    pub owners: OwnerIndex,
    /// uid → key of every object.
    pub by_uid: HashMap<String, String>,
    /// Objects by the uid of each of their owners (every owner reference,
    /// controller or not), and each object's owners, to keep it in step.
    dependents: HashMap<String, BTreeSet<String>>,
    owners_of: HashMap<String, Vec<String>>,
}

impl Indexed {
    fn new(kind: Kind) -> Indexed {
        Indexed {
            cache: Cache::default(),
            owners: OwnerIndex::new(classifier(kind)),
            by_uid: HashMap::new(),
            dependents: HashMap::new(),
            owners_of: HashMap::new(),
        }
    }

    /// Keep the indexes in step with one change of the cache.
    fn index(&mut self, d: &Delta) {
        let key = key_of(&d.object);
        let now = (!d.deleted).then(|| self.cache.get(&key)).flatten();
        self.owners.update(&key, now);
        let owners: Vec<String> = now
            .and_then(|o| o.pointer("/metadata/ownerReferences")?.as_array())
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("uid")?.as_str().map(str::to_string))
            .collect();
        if self
            .owners_of
            .get(&key)
            .map_or(owners.is_empty(), |o| *o == owners)
        {
            // unchanged (the common case: a status write)
        } else {
            for old in self.owners_of.remove(&key).unwrap_or_default() {
                if let Some(set) = self.dependents.get_mut(&old) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.dependents.remove(&old);
                    }
                }
            }
            for o in &owners {
                self.dependents
                    .entry(o.clone())
                    .or_default()
                    .insert(key.clone());
            }
            if !owners.is_empty() {
                self.owners_of.insert(key.clone(), owners);
            }
        }
        if let Some(uid) = meta::uid(&d.object) {
            if d.deleted {
                self.by_uid.remove(uid);
            } else {
                self.by_uid.insert(uid.to_string(), key);
            }
        }
    }

    /// The object with this uid, if cached.
    pub fn by_uid(&self, uid: &str) -> Option<&Value> {
        self.by_uid.get(uid).and_then(|k| self.cache.get(k))
    }

    /// The objects naming `owner` (a uid) in any owner reference.
    pub fn dependents_of<'a>(&'a self, owner: &str) -> impl Iterator<Item = &'a Value> + 'a {
        self.dependents
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|k| self.cache.get(k))
    }

    /// The objects `owner` (a uid) controls.
    pub fn owned_by<'a>(&'a self, owner: &str) -> impl Iterator<Item = &'a Value> + 'a {
        self.owners
            .owned_by(owner)
            .filter_map(|k| self.cache.get(k))
    }

    /// Record an object a writer just got back, before its event arrives.
    pub fn assume(&mut self, object: Value) {
        let key = key_of(&object);
        self.cache.assume(object);
        let now = self.cache.get(&key).cloned();
        if let Some(o) = &now {
            self.index(&Delta::untraced(false, o.clone()));
        }
    }

    /// Forget an object a writer just deleted.
    pub fn forget(&mut self, key: &str) {
        if let Some(old) = self.cache.get(key).cloned() {
            self.cache.forget(key);
            self.index(&Delta::untraced(true, old));
        }
    }
}

/// What an object adds to its controller's tally: pods count when active,
/// and when active and Ready (the ReplicaSet's status); other kinds count
/// nothing.
fn classifier(kind: Kind) -> fn(&Value) -> Tally {
    match kind {
        Kind::Pod => crate::informer::pod_tally,
        _ => |_| Tally::default(),
    }
}

/// A handle on one kind's shared cache.
#[derive(Debug, Clone)]
pub struct Shared {
    pub kind: Kind,
    inner: Arc<RwLock<Indexed>>,
}

impl Shared {
    fn new(kind: Kind) -> Shared {
        Shared {
            kind,
            inner: Arc::new(RwLock::new(Indexed::new(kind))),
        }
    }

    /// Read the cache (a reader never holds this across an await).
    pub fn read(&self) -> RwLockReadGuard<'_, Indexed> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Indexed> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a full list has been seen.
    pub fn synced(&self) -> bool {
        self.read().cache.synced
    }

    /// See [`Indexed::assume`].
    pub fn assume(&self, object: Value) {
        self.write().assume(object);
    }

    /// See [`Indexed::forget`].
    pub fn forget(&self, key: &str) {
        self.write().forget(key);
    }

    /// A cache fed by hand, for tests of what reads it.
    pub fn for_tests(kind: Kind, objects: Vec<Value>, revision: u64) -> Shared {
        let s = Shared::new(kind);
        s.apply(WatchItem::Relisted {
            items: objects,
            revision,
        });
        s
    }

    /// Apply one watch item; returns what changed.
    pub fn apply(&self, item: WatchItem) -> Vec<Delta> {
        let mut ix = self.write();
        let deltas = ix.cache.apply(item);
        for d in &deltas {
            ix.index(d);
        }
        deltas
    }
}

/// Objects of one kind changed (or the cache became complete).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Changed {
    pub kind: Kind,
    /// What changed: the object after, or (deleted) before.
    pub deltas: Arc<Vec<Delta>>,
}

/// Deliver every [`Changed`] of the informer's kind to this recipient,
/// starting with everything cached if the cache is complete.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub Recipient<Changed>);

/// The actor that watches one kind and fills its [`Shared`] cache.
pub struct Informer {
    /// The bus the watch runs on; `None`: fed by hand ([`Informers::feed`]).
    client: Option<Client>,
    shared: Shared,
    subscribers: Vec<Recipient<Changed>>,
}

impl Actor for Informer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(client) = &self.client {
            let spec = WatchSpec::all(client, self.shared.kind);
            ctx.add_stream(watched(client, spec));
        }
    }
}

impl StreamHandler<Watched> for Informer {
    fn handle(&mut self, w: Watched, _ctx: &mut Context<Self>) {
        self.deliver(w.item);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        warn!(kind = %self.shared.kind, "informer: the watch ended");
    }
}

impl Handler<Watched> for Informer {
    type Result = ();

    fn handle(&mut self, w: Watched, _ctx: &mut Context<Self>) {
        self.deliver(w.item);
    }
}

impl Informer {
    /// Apply one watch item to the cache and tell every subscriber.
    fn deliver(&mut self, item: WatchItem) {
        let relisted = matches!(item, WatchItem::Relisted { .. });
        let deltas = self.shared.apply(item);
        if deltas.is_empty() && !relisted {
            return;
        }
        let changed = Changed {
            kind: self.shared.kind,
            deltas: Arc::new(deltas),
        };
        self.subscribers.retain(|s| s.connected());
        for s in &self.subscribers {
            s.do_send(changed.clone());
        }
    }
}

impl Handler<Subscribe> for Informer {
    type Result = ();

    fn handle(&mut self, Subscribe(to): Subscribe, _ctx: &mut Context<Self>) {
        let everything = {
            let ix = self.shared.read();
            ix.cache.synced.then(|| {
                ix.cache
                    .values()
                    .map(|o| Delta::untraced(false, o.clone()))
                    .collect::<Vec<_>>()
            })
        };
        if let Some(deltas) = everything {
            to.do_send(Changed {
                kind: self.shared.kind,
                deltas: Arc::new(deltas),
            });
        }
        self.subscribers.push(to);
    }
}

/// Each kind's cache and the informer that fills it.
type Started = HashMap<Kind, (Shared, Addr<Informer>)>;

/// The informers of one process, started on first use. Clone it to hand
/// it to every actor that reads caches; all clones share the informers.
/// Lives on the actix system's thread (it is not `Send`).
#[derive(Clone)]
pub struct Informers {
    client: Option<Client>,
    started: Rc<RefCell<Started>>,
}

impl std::fmt::Debug for Informers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Informers")
            .field("kinds", &self.started.borrow().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Informers {
    pub fn new(client: Client) -> Informers {
        Informers {
            client: Some(client),
            started: Rc::new(RefCell::new(HashMap::new())),
        }
    }

    /// Informers without a bus, fed by hand with [`feed`](Self::feed):
    /// for tests of the runtime and of controllers in process.
    pub fn fed_by_hand() -> Informers {
        Informers {
            client: None,
            started: Rc::new(RefCell::new(HashMap::new())),
        }
    }

    /// Deliver a watch item of `kind` as if the bus had.
    pub fn feed(&self, kind: Kind, item: WatchItem) {
        let (_, addr) = self.entry(kind);
        addr.do_send(Watched { kind, item });
    }

    /// The shared cache of `kind` (starting its informer if needed).
    pub fn shared(&self, kind: Kind) -> Shared {
        self.entry(kind).0
    }

    /// Subscribe `to` to changes of `kind`; returns its shared cache.
    pub fn subscribe(&self, kind: Kind, to: Recipient<Changed>) -> Shared {
        let (shared, addr) = self.entry(kind);
        addr.do_send(Subscribe(to));
        shared
    }

    fn entry(&self, kind: Kind) -> (Shared, Addr<Informer>) {
        let mut started = self.started.borrow_mut();
        let (shared, addr) = started.entry(kind).or_insert_with(|| {
            let shared = Shared::new(kind);
            let addr = Informer {
                client: self.client.clone(),
                shared: shared.clone(),
                subscribers: Vec::new(),
            }
            .start();
            (shared, addr)
        });
        (shared.clone(), addr.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubus_bus::protocol::{ChangeEvent, EventType};
    use serde_json::json;

    fn secret(owners: &[&str], rv: u64) -> Value {
        let refs: Vec<Value> = owners
            .iter()
            .map(|u| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": u}))
            .collect();
        json!({"kind": "Secret", "metadata": {"name": "s", "namespace": "d", "uid": "s1",
            "resourceVersion": rv.to_string(), "ownerReferences": refs}})
    }

    #[test]
    fn every_owner_reference_is_indexed_and_kept_in_step() {
        let shared = Shared::for_tests(Kind::Secret, vec![secret(&["a", "b"], 1)], 1);
        let names = |uid: &str| shared.read().dependents_of(uid).count();
        // neither reference is a controller's: both are indexed
        assert_eq!((names("a"), names("b")), (1, 1));
        shared.apply(WatchItem::Event(ChangeEvent {
            event_type: EventType::Modified,
            revision: 2,
            prev: 1,
            object: secret(&["b"], 2),
            committed_ms: None,
            traceparent: None,
        }));
        assert_eq!((names("a"), names("b")), (0, 1));
        shared.apply(WatchItem::Event(ChangeEvent {
            event_type: EventType::Deleted,
            revision: 3,
            prev: 2,
            object: secret(&["b"], 3),
            committed_ms: None,
            traceparent: None,
        }));
        assert_eq!(names("b"), 0);
        assert!(shared.read().dependents.is_empty() && shared.read().owners_of.is_empty());
    }
}
