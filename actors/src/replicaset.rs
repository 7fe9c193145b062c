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
use crate::informer::{key_of, Cache, OwnerIndex};
use crate::watching::{controller_ref, watched, Watched};
use crate::write::{perform, Write};

/// Most pod writes one ReplicaSet issues per sync (a slow start, bounded).
pub const WRITES_PER_SYNC_MAX: usize = 128;
const BATCH_DELAY: Duration = Duration::from_millis(10);
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Whether a pod counts toward its ReplicaSet's replicas.
pub fn is_active(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    !matches!(phase, Some("Succeeded") | Some("Failed"))
        && pod.pointer("/metadata/deletionTimestamp").is_none()
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

/// Decide the writes that bring one ReplicaSet's pods and status in line.
pub fn reconcile(rs: &Value, owned: &[&Value]) -> Vec<Write> {
    let desired = rs
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0) as usize;
    let mut active: Vec<&Value> = owned.iter().copied().filter(|p| is_active(p)).collect();
    let mut writes = Vec::new();
    if active.len() < desired {
        let n = (desired - active.len()).min(WRITES_PER_SYNC_MAX);
        writes.extend((0..n).map(|_| Write::Create(pod_from_template(rs))));
    } else if active.len() > desired {
        active.sort_by_key(|p| deletion_rank(p));
        for pod in active
            .iter()
            .take((active.len() - desired).min(WRITES_PER_SYNC_MAX))
        {
            if let Some(r) = meta::object_ref(pod) {
                writes.push(Write::Delete(r, None));
            }
        }
    }
    let ready = owned.iter().filter(|p| is_active(p) && is_ready(p)).count();
    let status = json!({
        "replicas": owned.iter().filter(|p| is_active(p)).count(),
        "fullyLabeledReplicas": owned.iter().filter(|p| is_active(p)).count(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "observedGeneration": rs.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
    });
    if rs.get("status") != Some(&status) {
        let mut updated = rs.clone();
        if let Some(root) = updated.as_object_mut() {
            root.insert("status".into(), status);
        }
        writes.push(Write::Update(updated));
    }
    writes
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
    /// Writes under way per ReplicaSet key; a key with writes under way is
    /// not reconciled again until they land (no double creates).
    in_flight: BTreeMap<String, usize>,
}

impl ReplicaSetController {
    pub fn new(client: Client) -> ReplicaSetController {
        ReplicaSetController {
            recorder: Recorder::new(client.clone(), "replicaset-controller"),
            client,
            sets: Cache::default(),
            pods: Cache::default(),
            by_uid: HashMap::new(),
            owners: OwnerIndex::default(),
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
            let orphaned = is_replicaset_owned(pod)
                && meta::controller_uid(pod).is_some_and(|u| !self.by_uid.contains_key(u));
            if let (true, Some(r)) = (orphaned, meta::object_ref(pod)) {
                debug!(pod = %r, "pod's ReplicaSet is gone; deleting");
                planned.push((String::new(), Write::Delete(r, None)));
            }
        }
        for key in queue {
            if self.in_flight.contains_key(&key) {
                continue;
            }
            let Some(rs) = self.sets.get(&key) else {
                continue;
            };
            let uid = meta::uid(rs).unwrap_or_default();
            let pods: Vec<&Value> = self
                .owners
                .owned_by(uid)
                .filter_map(|k| self.pods.get(k))
                .filter(|p| is_replicaset_owned(p))
                .collect();
            planned.extend(reconcile(rs, &pods).into_iter().map(|w| (key.clone(), w)));
        }
        self.last_sync = started.elapsed();
        for (key, write) in planned {
            if !key.is_empty() {
                *self.in_flight.entry(key.clone()).or_default() += 1;
            }
            let what = write.describe();
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
                if !key.is_empty() {
                    if let Some(n) = act.in_flight.get_mut(&key) {
                        *n -= 1;
                        if *n == 0 {
                            act.in_flight.remove(&key);
                        }
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
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": {"nodeName": "n1"},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    fn creates(w: &[Write]) -> usize {
        w.iter().filter(|w| matches!(w, Write::Create(_))).count()
    }

    fn deletes(w: &[Write]) -> Vec<String> {
        w.iter()
            .filter_map(|w| match w {
                Write::Delete(r, _) => Some(r.name.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn scales_up_and_down() {
        let a = pod("a", "Running", true, "2026-01-01T00:00:01Z");
        let b = pod("b", "Running", true, "2026-01-01T00:00:02Z");
        let c = pod("c", "Pending", false, "2026-01-01T00:00:00Z");
        let failed = pod("d", "Failed", false, "2026-01-01T00:00:00Z");
        // (desired, pods, creates, deletes)
        let cases: Vec<(i64, Vec<&Value>, usize, Vec<&str>)> = vec![
            (3, vec![], 3, vec![]),
            (3, vec![&a, &b], 1, vec![]),
            (3, vec![&a, &b, &failed], 1, vec![]),
            (1, vec![&a, &b, &c], 0, vec!["c", "b"]),
            (0, vec![&a], 0, vec!["a"]),
            (2, vec![&a, &b], 0, vec![]),
        ];
        for (desired, pods, want_creates, want_deletes) in cases {
            let w = reconcile(&rs(desired), &pods);
            assert_eq!(creates(&w), want_creates, "desired {desired}");
            assert_eq!(deletes(&w), want_deletes, "desired {desired}");
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
        let w = reconcile(&rs(1), &[&a]);
        let Some(Write::Update(updated)) = w.last() else {
            panic!("expected a status update, got {w:?}")
        };
        assert_eq!(updated["status"]["readyReplicas"], 1);
        assert_eq!(updated["status"]["observedGeneration"], 2);
        assert!(reconcile(updated, &[&a]).is_empty());
    }
}
