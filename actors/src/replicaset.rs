//! `ReplicaSetController`: keeps `spec.replicas` pods alive for every
//! ReplicaSet, reports its status, and deletes pods whose controlling
//! ReplicaSet is gone (garbage collection by ownerReferences).
//!
//! [`reconcile`] decides; the actor watches, queues keys and writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use actix::prelude::*;
use kubus_api::{meta, Kind, ObjectRef, Reason};
use kubus_bus::watch::WatchSpec;
use kubus_bus::Client;
use serde_json::{json, Value};
use tracing::{debug, warn};

use crate::events::{EventType, Recorder};
use crate::informer::{key_of, Cache, OwnerIndex, Tally};
use crate::watching::{controller_ref, watched, Watched};
use crate::write::{perform, Write};

/// Most pod writes one ReplicaSet issues per sync (a slow start, bounded).
pub const WRITES_PER_SYNC_MAX: usize = 64;
/// Most pod creates one ReplicaSet has under way at once: creates are
/// pipelined (a sync does not wait for the previous sync's creates to
/// land), and kept below the scheduler's bindings in flight
/// ([`crate::scheduler::BINDINGS_IN_FLIGHT_MAX`]) so that, when the store's
/// writes are the bottleneck, new pods cannot crowd out the bindings and
/// queue up unscheduled. Fewer writes in flight also keep each write's
/// wait short: `kubus bench pods` (release, 30,000 pods) went from
/// created → Running p99 2.4 s at 128 creates / 256 bindings to 0.54 s at
/// 64 / 128 and 0.40 s at 48 / 128, with more pods per second, not fewer.
pub const CREATES_IN_FLIGHT_MAX: usize = 48;
const BATCH_DELAY: Duration = Duration::from_millis(10);
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Whether a pod counts toward its ReplicaSet's replicas.
pub fn is_active(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    !matches!(phase, Some("Succeeded") | Some("Failed")) && !is_terminating(pod)
}

/// Whether an object is being deleted gracefully (`deletionTimestamp` set).
pub fn is_terminating(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
}

/// Whether a pod is Ready (condition Ready=True).
pub fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// The order in which surplus pods go: unbound, then not running, then not
/// ready, then the newest.
fn deletion_rank(pod: &Value) -> (u8, u8, u8, std::cmp::Reverse<String>) {
    let bound = pod.pointer("/spec/nodeName").is_some();
    let running = pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running");
    let created = pod
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    (
        u8::from(bound),
        u8::from(running),
        u8::from(is_ready(pod)),
        std::cmp::Reverse(created),
    )
}

/// A new pod from a ReplicaSet's template.
pub fn pod_from_template(rs: &Value) -> Value {
    let template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    let mut metadata = template
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(m) = metadata.as_object_mut() {
        m.remove("name");
        m.insert(
            "generateName".into(),
            json!(format!("{}-", meta::name(rs).unwrap_or("pod"))),
        );
        m.insert(
            "namespace".into(),
            json!(meta::namespace(rs).unwrap_or("default")),
        );
        m.insert("ownerReferences".into(), json!([controller_ref(rs)]));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
    })
}

/// One ReplicaSet's writes still under way (sent, not yet answered).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub creates: usize,
    pub deletes: usize,
    /// A status update: a second would only conflict with it.
    pub status: bool,
}

impl Pending {
    /// The one write `w` on its own.
    fn of(w: &Write) -> Pending {
        match w {
            Write::Create(_) => Pending {
                creates: 1,
                ..Pending::default()
            },
            Write::Delete(..) => Pending {
                deletes: 1,
                ..Pending::default()
            },
            Write::Update(_) => Pending {
                status: true,
                ..Pending::default()
            },
        }
    }

    fn start(&mut self, w: &Write) {
        let one = Pending::of(w);
        self.creates += one.creates;
        self.deletes += one.deletes;
        self.status |= one.status;
    }

    fn land(&mut self, one: Pending) {
        self.creates = self.creates.saturating_sub(one.creates);
        self.deletes = self.deletes.saturating_sub(one.deletes);
        self.status &= !one.status;
    }

    fn is_empty(&self) -> bool {
        *self == Pending::default()
    }
}

/// How a pod counts toward its owner's [`Tally`]: only pods a ReplicaSet
/// controls, active ones, and of those the Ready ones.
pub fn classify(pod: &Value) -> Tally {
    let active = is_replicaset_owned(pod) && is_active(pod);
    Tally {
        active: usize::from(active),
        ready: usize::from(active && is_ready(pod)),
    }
}

/// What one sync of a ReplicaSet does.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub creates: usize,
    /// How many surplus pods to delete ([`surplus`] picks them).
    pub deletes: usize,
    /// The ReplicaSet with its new status, when that changed.
    pub status: Option<Value>,
}

/// Decide what brings one ReplicaSet's pods and status in line, from its
/// pods' tally and the writes still under way: pods being created count as
/// present (so creates pipeline without ever overshooting), nothing is
/// created or deleted while deletes are under way, and nothing is deleted
/// while creates are.
pub fn reconcile(rs: &Value, tally: Tally, pending: Pending) -> Plan {
    let desired = rs
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0) as usize;
    let mut plan = Plan::default();
    let present = tally.active + pending.creates;
    if pending.deletes > 0 {
        // wait for the deletes to land before counting again
    } else if present < desired {
        plan.creates = (desired - present)
            .min(WRITES_PER_SYNC_MAX)
            .min(CREATES_IN_FLIGHT_MAX.saturating_sub(pending.creates));
    } else if pending.creates == 0 && tally.active > desired {
        plan.deletes = (tally.active - desired).min(WRITES_PER_SYNC_MAX);
    }
    let status = json!({
        "replicas": tally.active,
        "fullyLabeledReplicas": tally.active,
        "readyReplicas": tally.ready,
        "availableReplicas": tally.ready,
        "observedGeneration": rs.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
    });
    if !pending.status && rs.get("status") != Some(&status) {
        let mut updated = rs.clone();
        if let Some(root) = updated.as_object_mut() {
            root.insert("status".into(), status);
        }
        plan.status = Some(updated);
    }
    plan
}

/// The `n` active pods to delete first, of those a ReplicaSet owns.
pub fn surplus<'a>(owned: impl Iterator<Item = &'a Value>, n: usize) -> Vec<ObjectRef> {
    let mut active: Vec<&Value> = owned.filter(|p| classify(p).active > 0).collect();
    active.sort_by_cached_key(|p| deletion_rank(p));
    active
        .iter()
        .take(n)
        .filter_map(|p| meta::object_ref(p))
        .collect()
}

pub struct ReplicaSetController {
    client: Client,
    recorder: Recorder,
    sets: Cache,
    pods: Cache,
    /// ReplicaSet uid → key, to find a pod's owner.
    by_uid: HashMap<String, String>,
    /// Pods by the uid of their controller.
    owners: OwnerIndex,
    /// Pods whose controlling ReplicaSet was not known when last seen.
    maybe_orphans: BTreeSet<String>,
    queue: BTreeSet<String>,
    sync_scheduled: bool,
    /// How long the last sync took: the next waits a few times that, so
    /// syncing a huge ReplicaSet cannot take all of the actors' thread.
    last_sync: Duration,
    /// Writes under way per ReplicaSet key, which [`reconcile`] counts
    /// (no double creates, no conflicting status updates).
    in_flight: BTreeMap<String, Pending>,
}

impl ReplicaSetController {
    pub fn new(client: Client) -> ReplicaSetController {
        ReplicaSetController {
            recorder: Recorder::new(client.clone(), "replicaset-controller"),
            client,
            sets: Cache::default(),
            pods: Cache::default(),
            by_uid: HashMap::new(),
            owners: OwnerIndex::new(classify),
            maybe_orphans: BTreeSet::new(),
            queue: BTreeSet::new(),
            sync_scheduled: false,
            last_sync: Duration::ZERO,
            in_flight: BTreeMap::new(),
        }
    }

    fn enqueue(&mut self, key: String, ctx: &mut Context<Self>) {
        self.queue.insert(key);
        if !self.sync_scheduled {
            self.sync_scheduled = true;
            ctx.run_later(batch_delay(self.last_sync), |act, ctx| act.sync(ctx));
        }
    }

    fn sync(&mut self, ctx: &mut Context<Self>) {
        self.sync_scheduled = false;
        if !(self.sets.synced && self.pods.synced) {
            return;
        }
        let started = Instant::now();
        let queue = std::mem::take(&mut self.queue);
        let mut planned: Vec<(String, Write)> = Vec::new();
        for key in std::mem::take(&mut self.maybe_orphans) {
            let Some(pod) = self.pods.get(&key) else {
                continue;
            };
            // a terminating orphan is already on its way out
            let orphaned = is_replicaset_owned(pod)
                && !is_terminating(pod)
                && meta::controller_uid(pod).is_some_and(|u| !self.by_uid.contains_key(u));
            if let (true, Some(r)) = (orphaned, meta::object_ref(pod)) {
                debug!(pod = %r, "pod's ReplicaSet is gone; deleting");
                planned.push((String::new(), Write::Delete(r, None)));
            }
        }
        for key in queue {
            let Some(rs) = self.sets.get(&key) else {
                continue;
            };
            let uid = meta::uid(rs).unwrap_or_default();
            let pending = self.in_flight.get(&key).copied().unwrap_or_default();
            let plan = reconcile(rs, self.owners.tally(uid), pending);
            let creates = (0..plan.creates).map(|_| Write::Create(pod_from_template(rs)));
            planned.extend(creates.map(|w| (key.clone(), w)));
            if plan.deletes > 0 {
                let owned = self.owners.owned_by(uid).filter_map(|k| self.pods.get(k));
                let doomed = surplus(owned, plan.deletes);
                planned.extend(
                    doomed
                        .into_iter()
                        .map(|r| (key.clone(), Write::Delete(r, None))),
                );
            }
            if let Some(updated) = plan.status {
                planned.push((key.clone(), Write::Update(updated)));
            }
        }
        self.last_sync = started.elapsed();
        for (key, write) in planned {
            if !key.is_empty() {
                self.in_flight.entry(key.clone()).or_default().start(&write);
            }
            let what = write.describe();
            let landing = Pending::of(&write);
            let deleted_key = match &write {
                Write::Delete(r, _) => Some(format!(
                    "{}/{}",
                    r.namespace.as_deref().unwrap_or(""),
                    r.name
                )),
                _ => None,
            };
            let fut = perform(self.client.clone(), write);
            ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
                if let Some(p) = act.in_flight.get_mut(&key) {
                    p.land(landing);
                    if p.is_empty() {
                        act.in_flight.remove(&key);
                    }
                }
                match res {
                    Ok(obj) => {
                        if let (Some(rs), Some(Kind::Pod)) =
                            (act.sets.get(&key).cloned(), meta::kind_of(&obj))
                        {
                            let pod = meta::name(&obj).unwrap_or_default();
                            let (reason, message) = if deleted_key.is_some() {
                                ("SuccessfulDelete", format!("Deleted pod: {pod}"))
                            } else {
                                ("SuccessfulCreate", format!("Created pod: {pod}"))
                            };
                            act.recorder
                                .record(&rs, EventType::Normal, reason, &message);
                        }
                        match (&deleted_key, meta::kind_of(&obj)) {
                            // a pod deleted gracefully is terminating, so no
                            // longer active: counted as such at once (unless
                            // its watch event says it is gone already)
                            (Some(k), _) if is_terminating(&obj) && act.pods.get(k).is_some() => {
                                act.pods.assume(obj);
                                act.owners.update(k, act.pods.get(k));
                            }
                            (Some(k), _) => {
                                act.pods.forget(k);
                                act.owners.update(k, None);
                            }
                            (None, Some(Kind::Pod)) => {
                                let k = key_of(&obj);
                                act.pods.assume(obj);
                                act.owners.update(&k, act.pods.get(&k));
                            }
                            (None, Some(Kind::ReplicaSet)) => act.sets.assume(obj),
                            _ => {}
                        }
                        if !key.is_empty() {
                            act.enqueue(key, ctx);
                        }
                    }
                    Err(e) if e.reason() == Some(Reason::NotFound) && deleted_key.is_some() => {}
                    Err(e) => {
                        warn!(error = %e, "{what} failed; retrying");
                        if !key.is_empty() {
                            ctx.run_later(RETRY_DELAY, move |act, ctx| act.enqueue(key, ctx));
                        }
                    }
                }
            }));
        }
    }
}

/// The wait before a sync: the batch delay, or four times what the last
/// sync took (at most a second), so syncing takes at most a fifth of the
/// thread the actors share.
fn batch_delay(last_sync: Duration) -> Duration {
    (last_sync * 4).clamp(BATCH_DELAY, Duration::from_secs(1))
}

fn is_replicaset_owned(pod: &Value) -> bool {
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                r.get("controller").and_then(Value::as_bool) == Some(true)
                    && r.get("kind").and_then(Value::as_str) == Some("ReplicaSet")
            })
        })
}

impl Actor for ReplicaSetController {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(watched(
            &self.client,
            WatchSpec::all(&self.client, Kind::ReplicaSet),
        ));
        ctx.add_stream(watched(
            &self.client,
            WatchSpec::all(&self.client, Kind::Pod),
        ));
    }
}

impl StreamHandler<Watched> for ReplicaSetController {
    fn handle(&mut self, w: Watched, ctx: &mut Context<Self>) {
        match w.kind {
            Kind::ReplicaSet => {
                for d in self.sets.apply(w.item) {
                    let key = key_of(&d.object);
                    if let Some(uid) = meta::uid(&d.object) {
                        if d.deleted {
                            self.by_uid.remove(uid);
                            let pods = self.owners.owned_by(uid).cloned();
                            self.maybe_orphans.extend(pods);
                        } else {
                            self.by_uid.insert(uid.to_string(), key.clone());
                        }
                    }
                    self.enqueue(key, ctx);
                }
            }
            Kind::Pod => {
                for d in self.pods.apply(w.item) {
                    let pod_key = key_of(&d.object);
                    self.owners
                        .update(&pod_key, (!d.deleted).then_some(&d.object));
                    let owner = meta::controller_uid(&d.object)
                        .and_then(|u| self.by_uid.get(u))
                        .cloned();
                    match owner {
                        Some(key) => self.enqueue(key, ctx),
                        // an orphan: a sync collects it
                        None if is_replicaset_owned(&d.object) && !d.deleted => {
                            self.maybe_orphans.insert(pod_key);
                            self.enqueue(String::new(), ctx)
                        }
                        None => {}
                    }
                }
            }
            _ => {}
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        warn!("ReplicaSetController: a watch ended");
    }
}

/// The reference of a ReplicaSet, for tests and callers.
pub fn rs_ref(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef::new(Kind::ReplicaSet, Some(namespace), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-abc", "namespace": "default", "uid": "rs-uid", "generation": 2},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    }

    fn pod(name: &str, phase: &str, ready: bool, created: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-abc", "uid": "rs-uid", "controller": true}]},
            "spec": {"nodeName": "n1"},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    /// A sync's plan over `owned`, the way the actor tallies them.
    fn plan(rs: &Value, owned: &[&Value], pending: Pending) -> Plan {
        let mut tally = Tally::default();
        for p in owned {
            let t = classify(p);
            tally.active += t.active;
            tally.ready += t.ready;
        }
        reconcile(rs, tally, pending)
    }

    fn deletes(owned: &[&Value], plan: &Plan) -> Vec<String> {
        surplus(owned.iter().copied(), plan.deletes)
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    #[test]
    fn scales_up_and_down() {
        let a = pod("a", "Running", true, "2026-01-01T00:00:01Z");
        let b = pod("b", "Running", true, "2026-01-01T00:00:02Z");
        let c = pod("c", "Pending", false, "2026-01-01T00:00:00Z");
        let failed = pod("d", "Failed", false, "2026-01-01T00:00:00Z");
        // issue 5: a pod being deleted gracefully still runs, but no longer
        // counts: its replacement is created at once, and a scale-down never
        // picks it again
        let mut terminating = pod("e", "Running", true, "2026-01-01T00:00:03Z");
        terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
        // (desired, pods, creates, deletes)
        let cases: Vec<(i64, Vec<&Value>, usize, Vec<&str>)> = vec![
            (3, vec![], 3, vec![]),
            (3, vec![&a, &b], 1, vec![]),
            (3, vec![&a, &b, &failed], 1, vec![]),
            (3, vec![&a, &b, &terminating], 1, vec![]),
            (1, vec![&a, &b, &terminating], 0, vec!["b"]),
            (1, vec![&a, &b, &c], 0, vec!["c", "b"]),
            (0, vec![&a], 0, vec!["a"]),
            (2, vec![&a, &b], 0, vec![]),
        ];
        for (desired, pods, want_creates, want_deletes) in cases {
            let p = plan(&rs(desired), &pods, Pending::default());
            assert_eq!(p.creates, want_creates, "desired {desired}");
            assert_eq!(deletes(&pods, &p), want_deletes, "desired {desired}");
        }
    }

    #[test]
    fn new_pods_carry_template_and_owner() {
        let p = pod_from_template(&rs(1));
        assert_eq!(p["metadata"]["generateName"], "web-abc-");
        assert_eq!(p["metadata"]["labels"]["app"], "web");
        assert_eq!(p["metadata"]["ownerReferences"][0]["uid"], "rs-uid");
        assert_eq!(p["spec"]["containers"][0]["name"], "c");
    }

    #[test]
    fn status_is_written_only_when_it_changes() {
        let a = pod("a", "Running", true, "t");
        let p = plan(&rs(1), &[&a], Pending::default());
        let Some(updated) = &p.status else {
            panic!("expected a status update, got {p:?}")
        };
        assert_eq!(updated["status"]["readyReplicas"], 1);
        assert_eq!(updated["status"]["observedGeneration"], 2);
        assert_eq!(plan(updated, &[&a], Pending::default()), Plan::default());
    }

    #[test]
    fn writes_under_way_are_counted() {
        let a = pod("a", "Running", true, "t");
        let b = pod("b", "Running", true, "t");
        let both = [&a, &b];
        let cases = [
            // (desired, pending, creates, deletes, status update)
            (
                10,
                Pending {
                    creates: 3,
                    ..Pending::default()
                },
                5,
                0,
                true,
            ),
            (
                10,
                Pending {
                    creates: 8,
                    ..Pending::default()
                },
                0,
                0,
                true,
            ),
            (
                1,
                Pending {
                    creates: 1,
                    ..Pending::default()
                },
                0,
                0,
                true,
            ),
            (
                0,
                Pending {
                    deletes: 1,
                    ..Pending::default()
                },
                0,
                0,
                true,
            ),
            (
                5,
                Pending {
                    deletes: 1,
                    ..Pending::default()
                },
                0,
                0,
                true,
            ),
            (
                1,
                Pending {
                    status: true,
                    ..Pending::default()
                },
                0,
                1,
                false,
            ),
            (
                5000,
                Pending {
                    creates: CREATES_IN_FLIGHT_MAX - 7,
                    ..Pending::default()
                },
                7,
                0,
                true,
            ),
            (
                5000,
                Pending::default(),
                WRITES_PER_SYNC_MAX.min(CREATES_IN_FLIGHT_MAX),
                0,
                true,
            ),
        ];
        for (desired, pending, want_creates, want_deletes, want_status) in cases {
            let p = plan(&rs(desired), &both, pending);
            let case = format!("desired {desired}, {pending:?}");
            assert_eq!(p.creates, want_creates, "{case}");
            assert_eq!(p.deletes, want_deletes, "{case}");
            assert_eq!(p.status.is_some(), want_status, "{case}");
        }
    }
}
