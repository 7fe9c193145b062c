//! The garbage collector: one collector for every kind, by
//! `metadata.ownerReferences`, in place of one orphan scan per controller
//! (Kubernetes' `garbagecollector`), with the three propagation policies:
//!
//! - background (the default): an object all of whose owners are gone is
//!   deleted;
//! - foreground: an owner marked with the `foregroundDeletion` finalizer
//!   has its dependents deleted (in the foreground again when they own
//!   objects themselves), and loses the finalizer — and so is removed by
//!   the store — once no dependent with `blockOwnerDeletion` is left;
//! - orphan: an owner marked with the `orphan` finalizer has its owner
//!   reference removed from every dependent, then loses the finalizer.
//!
//! "Gone" is never decided on a stale cache alone: an owner absent from
//! its kind's cache may be one created just before its dependent whose
//! event has not arrived yet. So the delete of a dependent carries the
//! proof: `onlyIfAbsent` names every owner the cache does not show, and the
//! store checks that none exists in the same Raft entry as the delete
//! (`Conflict` otherwise: the collector backs off, and by then the cache
//! shows the owner). An object of the owner's name with another uid proves
//! that owner gone without a check. The owner's kind must be watched here.
//! Dependents are found through each cache's index of every owner
//! reference (controller or not).

use kubus_api::lifecycle::{self, Propagation, FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
use kubus_api::{meta, Kind, ObjectRef};
use kubus_bus::client::DeleteOptions;
use serde_json::Value;

use crate::informer::{key_of, Delta};
use crate::runtime::controller::cache_key;
use crate::runtime::{Plan, Planned, Reconcile, View, Watch};
use crate::write::Write;

/// The kinds the collector follows, as owners and as dependents:
/// [`kubus_api::kind::NAMESPACED_CONTENT`] (every served kind but the
/// cluster-scoped Namespace and Node, nothing kubus makes is owned by one,
/// and Event, never an owner and too many to cache).
pub const KINDS: [Kind; kubus_api::kind::NAMESPACED_CONTENT.len()] =
    kubus_api::kind::NAMESPACED_CONTENT;
/// What becomes of one dependent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It has no owners, or one of them is alive (or cannot be judged
    /// here: a kind nobody watches).
    Keep,
    /// Every owner is gone, or being deleted in the foreground: delete it
    /// (only at the revision judged), in the foreground too when an owner
    /// is, and only if the owners the cache does not show (`confirm`) do
    /// not exist.
    Collect {
        foreground: bool,
        confirm: Vec<ObjectRef>,
    },
}

fn has_finalizer(obj: &Value, finalizer: &str) -> bool {
    lifecycle::is_marked(obj) && lifecycle::finalizers(obj).contains(&finalizer)
}

/// The kind an owner reference names, if kubus serves it.
fn ref_kind(r: &Value) -> Option<Kind> {
    match (
        r.get("apiVersion").and_then(Value::as_str),
        r.get("kind").and_then(Value::as_str),
    ) {
        (Some(v), Some(k)) => Kind::from_type(v, k).ok(),
        _ => None,
    }
}

fn owner_refs(obj: &Value) -> &[Value] {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Judge one dependent from the caches in `view` (pure).
pub fn verdict(object: &Value, view: &View<'_>) -> Verdict {
    let refs = owner_refs(object);
    if refs.is_empty() || lifecycle::is_marked(object) {
        return Verdict::Keep; // no owners, or on its way out already
    }
    let (mut foreground, mut confirm) = (false, Vec::new());
    for r in refs {
        let Some((kind, cache)) = ref_kind(r).and_then(|k| Some((k, view.cache(k)?))) else {
            return Verdict::Keep;
        };
        let uid = r.get("uid").and_then(Value::as_str).unwrap_or_default();
        match cache.by_uid(uid) {
            Some(owner) if has_finalizer(owner, FOREGROUND_FINALIZER) => foreground = true,
            Some(_) => return Verdict::Keep,
            None => {
                let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
                let owner = ObjectRef::new(kind, meta::namespace(object), name);
                // another object of its name: this owner is gone for sure
                if cache.cache.get(&cache_key(&owner)).is_none() {
                    confirm.push(owner);
                }
            }
        }
    }
    Verdict::Collect {
        foreground,
        confirm,
    }
}

/// The collector for objects of one kind, as dependents and as owners.
#[derive(Debug, Clone, Copy)]
pub struct GarbageCollector {
    kind: Kind,
}

impl GarbageCollector {
    pub fn new(kind: Kind) -> GarbageCollector {
        GarbageCollector { kind }
    }
}

/// The dependents (by controller reference) of an owner that was deleted
/// or is being deleted in the foreground or orphaning.
fn dependents_of(owner: &Delta, view: &View<'_>) -> Vec<String> {
    let doomed = owner.deleted
        || has_finalizer(&owner.object, FOREGROUND_FINALIZER)
        || has_finalizer(&owner.object, ORPHAN_FINALIZER);
    match (doomed, meta::uid(&owner.object), view.own()) {
        (true, Some(uid), Some(own)) => own.dependents_of(uid).map(key_of).collect(),
        _ => Vec::new(),
    }
}

/// The owner (of the collector's kind) of a dependent that changed, when
/// that owner waits for its dependents.
fn waiting_owner_of(dependent: &Delta, view: &View<'_>) -> Vec<String> {
    let Some(own) = view.own() else {
        return Vec::new();
    };
    owner_refs(&dependent.object)
        .iter()
        .filter_map(|r| own.by_uid(r.get("uid")?.as_str()?))
        .filter(|o| lifecycle::is_marked(o))
        .map(key_of)
        .collect()
}

/// The keys of the collector's kind a change of another kind concerns:
/// dependents of a doomed owner, and the marked owners of a dependent.
fn related(d: &Delta, view: &View<'_>) -> Vec<String> {
    let mut keys = dependents_of(d, view);
    keys.extend(waiting_owner_of(d, view));
    keys
}

/// Everything in `view` that names `uid` as an owner.
fn dependents<'a>(view: &View<'a>, uid: &str) -> Vec<&'a Value> {
    KINDS
        .iter()
        .filter_map(|k| view.cache(*k))
        .flat_map(|c| c.dependents_of(uid))
        .collect()
}

/// `obj` without `finalizer` (an update at the revision read).
fn without_finalizer(obj: &Value, finalizer: &str) -> Write {
    let mut v = obj.clone();
    if let Some(list) = v
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        list.retain(|f| f.as_str() != Some(finalizer));
    }
    Write::Update(v)
}

/// `obj` without its owner reference to `uid`.
fn without_owner(obj: &Value, uid: &str) -> Write {
    let mut v = obj.clone();
    if let Some(list) = v
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        list.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
    }
    Write::Update(v)
}

/// What an owner being deleted with a finalizer of the collector needs.
fn finish_owner(owner: &Value, view: &View<'_>) -> Option<Plan> {
    let uid = meta::uid(owner)?;
    if has_finalizer(owner, ORPHAN_FINALIZER) {
        let deps = dependents(view, uid);
        if deps.is_empty() {
            return Some(Plan::writes([Planned::quiet(without_finalizer(
                owner,
                ORPHAN_FINALIZER,
            ))]));
        }
        return Some(Plan::writes(
            deps.into_iter()
                .map(|d| Planned::quiet(without_owner(d, uid))),
        ));
    }
    if has_finalizer(owner, FOREGROUND_FINALIZER) {
        let blocking = dependents(view, uid).into_iter().any(|d| {
            owner_refs(d).iter().any(|r| {
                r.get("uid").and_then(Value::as_str) == Some(uid)
                    && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
            })
        });
        return Some(if blocking {
            Plan::default() // its dependents' deletions wake it again
        } else {
            Plan::writes([Planned::quiet(without_finalizer(
                owner,
                FOREGROUND_FINALIZER,
            ))])
        });
    }
    None
}

impl Reconcile for GarbageCollector {
    fn kind(&self) -> Kind {
        self.kind
    }

    fn name(&self) -> &'static str {
        "garbage-collector"
    }

    fn watches(&self) -> Vec<Watch> {
        // a change of another kind may be of an owner (deleted or marked:
        // its dependents of this kind) or of a dependent (its owner of
        // this kind may be waiting for it)
        //
        // Pods change far more often than anything else (every status
        // write): only the collector of their usual owner, the ReplicaSet,
        // follows them as they change; the others meet a pod owner or
        // dependent at their periodic resync. (Following pods from every
        // collector cost `kubus bench pods` a fifth of its throughput.)
        KINDS
            .iter()
            .filter(|k| **k != self.kind)
            .filter(|k| **k != Kind::Pod || self.kind == Kind::ReplicaSet)
            .map(|k| Watch::Maps(*k, related))
            .collect()
    }

    fn reconcile(&self, object: &Value, view: &View<'_>) -> Plan {
        if !view.pending.is_empty() {
            return Plan::default(); // one step at a time
        }
        if let Some(plan) = finish_owner(object, view) {
            return plan;
        }
        let Verdict::Collect {
            foreground,
            confirm,
        } = verdict(object, view)
        else {
            return Plan::default();
        };
        // what owns objects itself is deleted in the foreground too
        let owns = meta::uid(object).is_some_and(|uid| !dependents(view, uid).is_empty());
        let propagation = if foreground && owns {
            Propagation::Foreground
        } else {
            Propagation::Background
        };
        let Some(r) = meta::object_ref(object) else {
            return Plan::default();
        };
        Plan::writes([Planned::quiet(Write::Delete(
            r,
            DeleteOptions {
                resource_version: meta::resource_version(object),
                propagation_policy: Some(propagation),
                only_if_absent: confirm,
                ..DeleteOptions::default()
            },
        ))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::informers::Shared;
    use crate::runtime::Pending;
    use serde_json::json;

    fn rs(uid: &str, finalizer: Option<&str>) -> Value {
        let mut v = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": format!("rs-{uid}"), "namespace": "d", "uid": uid, "resourceVersion": "3"}});
        if let Some(f) = finalizer {
            v["metadata"]["finalizers"] = json!([f]);
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        v
    }

    fn pod(name: &str, owners: Value, rv: u64) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "d", "resourceVersion": rv.to_string(),
                "ownerReferences": owners}})
    }

    fn collect(foreground: bool, confirm: &[&str]) -> Verdict {
        Verdict::Collect {
            foreground,
            confirm: confirm
                .iter()
                .map(|n| ObjectRef::new(Kind::ReplicaSet, Some("d"), n))
                .collect(),
        }
    }

    fn named(kind: &str, uid: &str, name: &str) -> Value {
        let mut r = owned_by(kind, uid);
        r["name"] = json!(name);
        r
    }

    fn owned_by(kind: &str, uid: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": kind, "name": "x", "uid": uid,
            "controller": true, "blockOwnerDeletion": true})
    }

    /// Run `f` with a view over these pods and ReplicaSets (caches at
    /// revision 10).
    fn with_view<T>(pods: Vec<Value>, sets: Vec<Value>, f: impl FnOnce(&View<'_>) -> T) -> T {
        let pods = Shared::for_tests(Kind::Pod, pods, 10);
        let sets = Shared::for_tests(Kind::ReplicaSet, sets, 10);
        let (p, s) = (pods.read(), sets.read());
        let caches = [(Kind::Pod, &*p), (Kind::ReplicaSet, &*s)];
        f(&View::new(
            &caches,
            Pending::default(),
            jiff::Timestamp::now(),
        ))
    }

    #[test]
    fn verdicts() {
        let sets = vec![
            rs("alive", None),
            rs("fg", Some(FOREGROUND_FINALIZER)),
            rs("orph", Some(ORPHAN_FINALIZER)),
        ];
        let mut terminating = pod("p", json!([owned_by("ReplicaSet", "gone")]), 5);
        terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let cases = [
            ("no owners", pod("p", json!([]), 5), Verdict::Keep),
            (
                "owner alive",
                pod("p", json!([owned_by("ReplicaSet", "alive")]), 5),
                Verdict::Keep,
            ),
            (
                "owner gone",
                pod("p", json!([owned_by("ReplicaSet", "gone")]), 5),
                collect(false, &["x"]),
            ),
            // the owner's name is another object's now: gone for sure
            (
                "name taken",
                pod("p", json!([named("ReplicaSet", "gone", "rs-alive")]), 5),
                collect(false, &[]),
            ),
            (
                "one of two owners alive",
                pod(
                    "p",
                    json!([
                        owned_by("ReplicaSet", "gone"),
                        owned_by("ReplicaSet", "alive")
                    ]),
                    5,
                ),
                Verdict::Keep,
            ),
            (
                "owner deleted in the foreground",
                pod("p", json!([owned_by("ReplicaSet", "fg")]), 5),
                collect(true, &[]),
            ),
            (
                "owner orphaning",
                pod("p", json!([owned_by("ReplicaSet", "orph")]), 5),
                Verdict::Keep,
            ),
            // nobody here watches Deployments
            (
                "unwatched kind",
                pod("p", json!([owned_by("Deployment", "gone")]), 5),
                Verdict::Keep,
            ),
            (
                "unknown kind",
                pod("p", json!([owned_by("Widget", "gone")]), 5),
                Verdict::Keep,
            ),
            ("terminating", terminating, Verdict::Keep),
        ];
        with_view(vec![], sets, |view| {
            for (case, object, want) in cases {
                assert_eq!(verdict(&object, view), want, "{case}");
            }
        });
    }

    fn updates(plan: &Plan) -> Vec<Value> {
        plan.writes
            .iter()
            .filter_map(|p| match &p.write {
                Write::Update(v) => Some(v.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn orphaning_removes_owner_references_then_the_finalizer() {
        let owner = rs("orph", Some(ORPHAN_FINALIZER));
        let gc = GarbageCollector::new(Kind::ReplicaSet);
        let deps = vec![
            pod("a", json!([owned_by("ReplicaSet", "orph")]), 5),
            pod("b", json!([owned_by("ReplicaSet", "orph")]), 6),
        ];
        let plan = with_view(deps, vec![owner.clone()], |view| gc.reconcile(&owner, view));
        let freed = updates(&plan);
        assert_eq!(freed.len(), 2, "{plan:?}");
        assert!(freed
            .iter()
            .all(|p| p["metadata"]["ownerReferences"] == json!([])));
        let plan = with_view(vec![], vec![owner.clone()], |view| {
            gc.reconcile(&owner, view)
        });
        let done = updates(&plan);
        assert_eq!(done.len(), 1, "{plan:?}");
        assert_eq!(done[0]["metadata"]["finalizers"], json!([]));
    }

    #[test]
    fn a_foreground_owner_waits_for_blocking_dependents() {
        let owner = rs("fg", Some(FOREGROUND_FINALIZER));
        let gc = GarbageCollector::new(Kind::ReplicaSet);
        let blocking = pod("a", json!([owned_by("ReplicaSet", "fg")]), 5);
        let plan = with_view(vec![blocking], vec![owner.clone()], |view| {
            gc.reconcile(&owner, view)
        });
        assert_eq!(plan, Plan::default());
        let mut free = owned_by("ReplicaSet", "fg");
        free["blockOwnerDeletion"] = json!(false);
        let plan = with_view(
            vec![pod("a", json!([free]), 5)],
            vec![owner.clone()],
            |view| gc.reconcile(&owner, view),
        );
        assert_eq!(updates(&plan)[0]["metadata"]["finalizers"], json!([]));
        // the dependent itself is deleted (its own collector)
        let dep = pod("a", json!([owned_by("ReplicaSet", "fg")]), 5);
        let plan = with_view(vec![dep.clone()], vec![owner], |view| {
            GarbageCollector::new(Kind::Pod).reconcile(&dep, view)
        });
        assert!(
            matches!(&plan.writes[..], [Planned { write: Write::Delete(r, _), .. }] if r.name == "a"),
            "{plan:?}"
        );
    }
}
