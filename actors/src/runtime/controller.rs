//! One controller actor for every [`Reconcile`]: the only place that
//! schedules work. It feeds the work queue from the shared informers,
//! hands each key to the pure `reconcile`, carries out the plan through
//! the [`Writer`] seam with a bound on writes in flight, puts what each
//! write returns into the shared cache at once, backs off on failure and
//! records a Warning Event for it, and counts a delete of an object
//! already gone as done. A key queued by a traced change is reconciled in
//! a `controller.reconcile` span of that trace, and its writes go out in it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use kubus_api::{lifecycle, meta, pod, Kind, Reason};
use kubus_bus::ClientError;
use serde_json::Value;
use tracing::{debug, warn, Instrument, Span};

use super::informers::{Changed, Indexed, Informers, Shared};
use super::queue::{Outcome, WorkQueue};
use crate::events::{EventType, Recorder};
use crate::informer::{key_of, Delta, Tally};
use crate::write::{Write, WriteKind, Writer};

/// Most writes one controller has in flight. Below the store's request
/// limit (512), and shared with the scheduler's bindings
/// ([`crate::scheduler::BINDINGS_IN_FLIGHT_MAX`]).
pub const WRITES_IN_FLIGHT_MAX: usize = 128;
/// The shortest wait before a run: changes arriving together are
/// reconciled together.
pub const BATCH_DELAY: Duration = Duration::from_millis(10);
/// Longest one run reconciles before giving the thread back.
pub const RUN_BUDGET: Duration = Duration::from_millis(50);
/// Every key of the controller's kind is reconciled at least this often
/// (a key refused by a full queue, or a change a mapping missed, is
/// picked up again).
pub const RESYNC_PERIOD: Duration = Duration::from_secs(300);
/// Most queued keys whose trace a controller keeps (past it, keys are
/// reconciled outside any trace).
pub const TRACED_KEYS_MAX: usize = 10_000;

/// What a controller reads besides its own kind, and which of its keys a
/// change of it concerns.
#[derive(Debug, Clone, Copy)]
pub enum Watch {
    /// Objects of this kind whose controller reference names an object of
    /// the controller's kind: a change queues the owner.
    Owns(Kind),
    /// Objects of this kind: a change (the object after it, or before a
    /// delete) queues the keys this returns.
    Maps(Kind, fn(&Delta, &View<'_>) -> Vec<String>),
}

impl Watch {
    pub fn kind(&self) -> Kind {
        match self {
            Watch::Owns(k) | Watch::Maps(k, _) => *k,
        }
    }
}

/// One controller's logic: what it watches and a pure `reconcile`.
pub trait Reconcile: Unpin + 'static {
    /// The kind whose objects it reconciles (its keys are theirs).
    fn kind(&self) -> Kind;
    /// Its name: the component of its Events, and in logs.
    fn name(&self) -> &'static str;
    /// What else it reads, and how a change there maps to its keys.
    fn watches(&self) -> Vec<Watch> {
        Vec::new()
    }
    /// Decide the writes that bring `object` (of [`kind`](Self::kind))
    /// and what it owns in line, from the caches in `view`.
    fn reconcile(&self, object: &Value, view: &View<'_>) -> Plan;
}

/// Writes still under way for one key (sent, not yet answered), which a
/// reconcile counts so it never asks twice for the same thing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub creates: usize,
    pub updates: usize,
    pub deletes: usize,
}

impl Pending {
    fn count(&mut self, kind: WriteKind, up: bool) {
        let n = match kind {
            WriteKind::Create => &mut self.creates,
            WriteKind::Update => &mut self.updates,
            WriteKind::Delete => &mut self.deletes,
        };
        *n = if up { *n + 1 } else { n.saturating_sub(1) };
    }

    pub fn is_empty(&self) -> bool {
        *self == Pending::default()
    }
}

/// What a reconcile sees: the shared caches and its key's writes under way.
pub struct View<'a> {
    pub pending: Pending,
    /// The time of this run, as Kubernetes timestamps count it.
    pub now: jiff::Timestamp,
    caches: &'a [(Kind, &'a Indexed)],
}

impl<'a> View<'a> {
    pub fn new(caches: &'a [(Kind, &'a Indexed)], pending: Pending, now: jiff::Timestamp) -> Self {
        View {
            pending,
            now,
            caches,
        }
    }

    /// The cache of the controller's own kind.
    pub fn own(&self) -> Option<&'a Indexed> {
        self.caches.first().map(|(_, c)| *c)
    }

    /// The cache of `kind`, if the controller reads it.
    pub fn cache(&self, kind: Kind) -> Option<&'a Indexed> {
        self.caches
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, c)| *c)
    }

    /// The objects of `kind` whose controller is `owner` (a uid).
    pub fn owned(&self, kind: Kind, owner: &str) -> Vec<&'a Value> {
        self.cache(kind)
            .map(|c| c.owned_by(owner).collect())
            .unwrap_or_default()
    }

    /// What `owner`'s objects of `kind` add up to.
    pub fn tally(&self, kind: Kind, owner: &str) -> Tally {
        self.cache(kind)
            .map(|c| c.owners.tally(owner))
            .unwrap_or_default()
    }
}

/// A Normal Event to record about the reconciled object when a write
/// succeeds. `{name}` in the message becomes the written object's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub reason: &'static str,
    pub message: String,
    /// A Warning rather than a Normal Event.
    pub warning: bool,
}

/// One write of a plan, with what to say when it lands.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub write: Write,
    pub note: Option<Note>,
}

impl Planned {
    pub fn quiet(write: Write) -> Planned {
        Planned { write, note: None }
    }

    pub fn noted(write: Write, reason: &'static str, message: impl Into<String>) -> Planned {
        Planned {
            write,
            note: Some(Note {
                reason,
                message: message.into(),
                warning: false,
            }),
        }
    }

    /// A write whose landing is worth a Warning Event about the object.
    pub fn warned(write: Write, reason: &'static str, message: impl Into<String>) -> Planned {
        Planned {
            write,
            note: Some(Note {
                reason,
                message: message.into(),
                warning: true,
            }),
        }
    }
}

/// What one reconcile decided.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub writes: Vec<Planned>,
    /// Look at the object again after this long even if nothing changes.
    pub requeue_after: Option<Duration>,
}

impl Plan {
    pub fn writes(writes: impl IntoIterator<Item = Planned>) -> Plan {
        Plan {
            writes: writes.into_iter().collect(),
            requeue_after: None,
        }
    }
}

/// The reason of the Warning Event for a failed write.
pub fn failure_reason(kind: WriteKind) -> &'static str {
    match kind {
        WriteKind::Create => "FailedCreate",
        WriteKind::Update => "FailedUpdate",
        WriteKind::Delete => "FailedDelete",
    }
}

fn failure_message(write: &Write, error: &ClientError) -> String {
    let verb = match write.kind() {
        WriteKind::Create => "creating",
        WriteKind::Update => "updating",
        WriteKind::Delete => "deleting",
    };
    let what = write
        .object_kind()
        .map_or_else(|| "object".to_string(), |k| k.to_string());
    format!("Error {verb} {what}: {error}")
}

/// The span a key's reconcile runs in: `controller.reconcile` in the trace
/// that queued the key (taken from `traces`), or none.
fn reconcile_span(traces: &mut HashMap<String, String>, controller: &str, key: &str) -> Span {
    let Some(parent) = traces.remove(key) else {
        return Span::none();
    };
    let span = kubus_bus::trace_span!("controller.reconcile", controller, key);
    kubus_bus::trace::adopt(&span, Some(&parent));
    span
}

/// Stop at once: this process no longer holds the lease its controllers
/// run under.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Demote;

/// The actor that runs one [`Reconcile`].
pub struct Controller<R: Reconcile> {
    reconciler: R,
    informers: Informers,
    writer: Arc<dyn Writer>,
    recorder: Recorder,
    /// The controller's own kind first, then what it watches.
    caches: Vec<Shared>,
    watches: Vec<Watch>,
    queue: WorkQueue<String>,
    /// The trace of the change that queued a key, until it is reconciled.
    traces: HashMap<String, String>,
    pending: HashMap<String, Pending>,
    in_flight: usize,
    /// The run scheduled, and when.
    wake: Option<(Instant, SpawnHandle)>,
    last_run: Duration,
}

impl<R: Reconcile> Controller<R> {
    pub fn new(reconciler: R, informers: Informers, writer: Arc<dyn Writer>) -> Controller<R> {
        Controller {
            recorder: Recorder::with_writer(writer.clone(), reconciler.name()),
            watches: reconciler.watches(),
            reconciler,
            informers,
            writer,
            caches: Vec::new(),
            queue: WorkQueue::default(),
            traces: HashMap::new(),
            pending: HashMap::new(),
            in_flight: 0,
            wake: None,
            last_run: Duration::ZERO,
        }
    }

    fn own(&self) -> Option<&Shared> {
        self.caches.first()
    }

    fn shared_of(&self, kind: Kind) -> Option<&Shared> {
        self.caches.iter().find(|s| s.kind == kind)
    }

    /// Schedule the next run: soon when keys are ready and writes can go
    /// out, at the earliest timer otherwise.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        crate::metrics::METRICS
            .queue_depth
            .get_or_create(&crate::metrics::name(self.reconciler.name()))
            .set(i64::try_from(self.queue.len()).unwrap_or(i64::MAX));
        let now = Instant::now();
        let at = if self.queue.has_ready(now) {
            if self.in_flight >= WRITES_IN_FLIGHT_MAX {
                return; // a landing write schedules again
            }
            now + (self.last_run * 4).clamp(BATCH_DELAY, Duration::from_secs(1))
        } else {
            match self.queue.next_due() {
                Some(at) => at,
                None => return,
            }
        };
        if let Some((when, handle)) = self.wake {
            if when <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(at.saturating_duration_since(now), |act, ctx| {
            act.wake = None;
            act.run(ctx);
        });
        self.wake = Some((at, handle));
    }

    /// Queue `key` (counted in `workqueue_adds_total`).
    fn enqueue(&mut self, key: String) {
        self.enqueue_traced(key, None);
    }

    /// Queue `key`, set off by a change of the trace `trace` (the first
    /// trace that queues a key is the one its reconcile joins).
    fn enqueue_traced(&mut self, key: String, trace: Option<&str>) {
        crate::metrics::METRICS
            .queue_adds
            .get_or_create(&crate::metrics::name(self.reconciler.name()))
            .inc();
        if let Some(t) = trace {
            if self.traces.len() < TRACED_KEYS_MAX && !self.traces.contains_key(&key) {
                self.traces.insert(key.clone(), t.to_string());
            }
        }
        self.queue.add(key);
    }

    /// Reconcile ready keys, within the bounds, and send their writes.
    fn run(&mut self, ctx: &mut Context<Self>) {
        if !self.caches.iter().all(Shared::synced) {
            return; // the informer that completes its cache wakes us
        }
        let started = Instant::now();
        let now = jiff::Timestamp::now();
        let mut planned: Vec<(String, Value, Vec<Planned>, Span)> = Vec::new();
        {
            let guards: Vec<_> = self.caches.iter().map(|s| (s.kind, s.read())).collect();
            let caches: Vec<(Kind, &Indexed)> = guards.iter().map(|(k, g)| (*k, &**g)).collect();
            let Some((_, own)) = caches.first() else {
                return;
            };
            let mut writes = self.in_flight;
            let work = crate::metrics::METRICS
                .queue_work_duration
                .get_or_create(&crate::metrics::name(self.reconciler.name()))
                .clone();
            while writes < WRITES_IN_FLIGHT_MAX && started.elapsed() < RUN_BUDGET {
                let Some(key) = self.queue.next(started) else {
                    break;
                };
                let span = reconcile_span(&mut self.traces, self.reconciler.name(), &key);
                let Some(object) = own.cache.get(&key) else {
                    self.queue.finish(key, Outcome::Done, started);
                    continue;
                };
                let pending = self.pending.get(&key).copied().unwrap_or_default();
                let one = Instant::now();
                let plan = span.in_scope(|| {
                    self.reconciler
                        .reconcile(object, &View::new(&caches, pending, now))
                });
                work.observe(one.elapsed().as_secs_f64());
                let outcome = plan
                    .requeue_after
                    .map_or(Outcome::Done, Outcome::RequeueAfter);
                self.queue.finish(key.clone(), outcome, started);
                if !plan.writes.is_empty() {
                    writes += plan.writes.len();
                    planned.push((key, object.clone(), plan.writes, span));
                }
            }
        }
        self.last_run = started.elapsed();
        for (key, object, writes, span) in planned {
            let room = WRITES_IN_FLIGHT_MAX.saturating_sub(self.in_flight);
            if writes.len() > room {
                // the rest is planned again once writes land
                self.enqueue(key.clone());
            }
            for p in writes.into_iter().take(room) {
                self.send(key.clone(), object.clone(), p, span.clone(), ctx);
            }
        }
        self.schedule(ctx);
    }

    fn send(
        &mut self,
        key: String,
        owner: Value,
        planned: Planned,
        span: Span,
        ctx: &mut Context<Self>,
    ) {
        let kind = planned.write.kind();
        self.pending
            .entry(key.clone())
            .or_default()
            .count(kind, true);
        self.in_flight += 1;
        let write = planned.write.clone();
        let fut = self.writer.write(planned.write).instrument(span);
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.in_flight = act.in_flight.saturating_sub(1);
            if let Some(p) = act.pending.get_mut(&key) {
                p.count(kind, false);
                if p.is_empty() {
                    act.pending.remove(&key);
                }
            }
            act.landed(key, owner, write, planned.note, res);
            act.schedule(ctx);
        }));
    }

    /// A write answered: cache what it returned, say so, and look again.
    fn landed(
        &mut self,
        key: String,
        owner: Value,
        write: Write,
        note: Option<Note>,
        res: Result<Value, ClientError>,
    ) {
        let now = Instant::now();
        let cache = write.object_kind().and_then(|k| self.shared_of(k).cloned());
        match res {
            Ok(obj) => {
                debug!(
                    controller = self.reconciler.name(),
                    revision = meta::resource_version(&obj).unwrap_or(0),
                    "write landed: {}",
                    write.describe()
                );
                if let Some(cache) = &cache {
                    let kind = write.object_kind().unwrap_or(self.reconciler.kind());
                    match &write {
                        // a pod deleted gracefully is terminating: cached so
                        // (unless its removal was seen already)
                        Write::Delete(..) if pod::is_terminating(&obj) => cache.assume(obj.clone()),
                        Write::Delete(r, _) => cache.forget(&cache_key(r)),
                        // an update that took the last finalizer away: the
                        // store removed the object
                        Write::Update(_) if lifecycle::removed_by_update(kind, &obj) => {
                            cache.forget(&key_of(&obj))
                        }
                        _ => cache.assume(obj.clone()),
                    }
                }
                if let Some(note) = note {
                    let name = meta::name(&obj).unwrap_or_default();
                    let message = note.message.replace("{name}", name);
                    self.recorder.record(
                        &owner,
                        if note.warning {
                            EventType::Warning
                        } else {
                            EventType::Normal
                        },
                        note.reason,
                        &message,
                    );
                }
                self.queue.succeeded(&key);
                self.enqueue(key);
            }
            Err(e)
                if matches!(write, Write::Delete(..)) && e.reason() == Some(Reason::NotFound) =>
            {
                if let (Some(cache), Write::Delete(r, _)) = (&cache, &write) {
                    cache.forget(&cache_key(r));
                }
                self.enqueue(key);
            }
            Err(e) => {
                if e.reason() == Some(Reason::Conflict) {
                    // the cache was behind: its event is on the way
                    debug!(controller = self.reconciler.name(), error = %e, "{} conflicted", write.describe());
                } else {
                    warn!(controller = self.reconciler.name(), error = %e, "{} failed; backing off", write.describe());
                    let reason = failure_reason(write.kind());
                    self.recorder.record(
                        &owner,
                        EventType::Warning,
                        reason,
                        &failure_message(&write, &e),
                    );
                }
                crate::metrics::METRICS
                    .queue_retries
                    .get_or_create(&crate::metrics::name(self.reconciler.name()))
                    .inc();
                self.queue.fail(key, now);
            }
        }
    }

    /// Queue the keys a change of `kind` concerns.
    fn changed(&mut self, kind: Kind, deltas: &[Delta]) {
        let own_kind = self.reconciler.kind();
        if kind == own_kind {
            for d in deltas {
                self.enqueue_traced(key_of(&d.object), d.trace.as_deref());
            }
            return;
        }
        let guards: Vec<_> = self.caches.iter().map(|s| (s.kind, s.read())).collect();
        let caches: Vec<(Kind, &Indexed)> = guards.iter().map(|(k, g)| (*k, &**g)).collect();
        let Some((_, own)) = caches.first() else {
            return;
        };
        let view = View::new(&caches, Pending::default(), jiff::Timestamp::now());
        let mut keys: Vec<(String, Option<&str>)> = Vec::new();
        for w in self.watches.iter().filter(|w| w.kind() == kind) {
            for d in deltas {
                let trace = d.trace.as_deref();
                match w {
                    Watch::Owns(_) => {
                        let owner = controller_of_kind(&d.object, own_kind)
                            .and_then(|uid| own.by_uid.get(uid));
                        keys.extend(owner.map(|k| (k.clone(), trace)));
                    }
                    Watch::Maps(_, map) => {
                        keys.extend(map(d, &view).into_iter().map(|k| (k, trace)))
                    }
                }
            }
        }
        drop(guards);
        for (k, trace) in keys {
            self.enqueue_traced(k, trace);
        }
    }

    fn resync(&mut self, ctx: &mut Context<Self>) {
        let keys: Vec<String> = self
            .own()
            .map(|s| s.read().cache.values().map(key_of).collect())
            .unwrap_or_default();
        for k in keys {
            self.enqueue(k);
        }
        self.schedule(ctx);
    }
}

/// The cache key of a reference (`namespace/name` or `name`).
pub fn cache_key(r: &kubus_api::ObjectRef) -> String {
    match &r.namespace {
        Some(ns) => format!("{ns}/{}", r.name),
        None => r.name.clone(),
    }
}

/// The uid of `object`'s controller, if that controller is of `kind`.
pub fn controller_of_kind(object: &Value, kind: Kind) -> Option<&str> {
    object
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| {
            r.get("controller").and_then(Value::as_bool) == Some(true)
                && r.get("kind").and_then(Value::as_str) == Some(kind.as_str())
        })?
        .get("uid")?
        .as_str()
}

impl<R: Reconcile> Actor for Controller<R> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address().recipient::<Changed>();
        let mut kinds = vec![self.reconciler.kind()];
        for w in &self.watches {
            if !kinds.contains(&w.kind()) {
                kinds.push(w.kind());
            }
        }
        self.caches = kinds
            .into_iter()
            .map(|k| self.informers.subscribe(k, me.clone()))
            .collect();
        ctx.run_interval(RESYNC_PERIOD, |act, ctx| act.resync(ctx));
    }
}

impl<R: Reconcile> Handler<Changed> for Controller<R> {
    type Result = ();

    fn handle(&mut self, msg: Changed, ctx: &mut Context<Self>) {
        self.changed(msg.kind, &msg.deltas);
        self.schedule(ctx);
    }
}

impl<R: Reconcile> Handler<Demote> for Controller<R> {
    type Result = ();

    fn handle(&mut self, _: Demote, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kubus_api::ApiError;
    use kubus_bus::watch::WatchItem;
    use serde_json::json;

    use super::*;
    use crate::replicaset::ReplicaSetReconciler;
    use crate::write::FakeWriter;

    fn rs(replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default", "uid": "rs-uid",
                "generation": 1, "resourceVersion": "1"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    }

    /// Run `body` in an actix system with a ReplicaSet controller on fake
    /// writes whose caches hold `sets` and `pods`.
    fn with_controller(
        writer: Arc<FakeWriter>,
        sets: Vec<Value>,
        pods: Vec<Value>,
        body: impl FnOnce(Arc<FakeWriter>) -> futures::future::LocalBoxFuture<'static, ()>,
    ) {
        actix::System::new().block_on(async move {
            let informers = Informers::fed_by_hand();
            for s in &sets {
                writer.seed(s.clone());
            }
            informers.feed(
                Kind::ReplicaSet,
                WatchItem::Relisted {
                    items: sets,
                    revision: 1,
                },
            );
            informers.feed(
                Kind::Pod,
                WatchItem::Relisted {
                    items: pods,
                    revision: 1,
                },
            );
            Controller::new(
                ReplicaSetReconciler::REPLICA_SETS,
                informers.clone(),
                writer.clone(),
            )
            .start();
            body(writer).await;
        });
    }

    /// Wait (bounded) until `done` holds of the writes so far.
    async fn until(writer: &FakeWriter, done: impl Fn(&[Write]) -> bool) -> Vec<Write> {
        for _ in 0..400 {
            let log = writer.log();
            if done(&log) {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        writer.log()
    }

    fn is_event(w: &Write, reason: &str) -> bool {
        matches!(w, Write::Create(v) | Write::Update(v)
            if meta::kind_of(v) == Some(Kind::Event) && v["reason"] == reason)
    }

    fn is_pod_create(w: &Write) -> bool {
        matches!(w, Write::Create(v) if meta::kind_of(v) == Some(Kind::Pod))
    }

    #[test]
    fn a_failed_write_backs_off_and_records_a_warning_event() {
        let writer = Arc::new(FakeWriter::default());
        writer.fail_next(WriteKind::Create, ApiError::internal("the disk is full"));
        with_controller(writer, vec![rs(1)], vec![], |writer| {
            Box::pin(async move {
                let log = until(&writer, |log| {
                    log.iter().filter(|w| is_pod_create(w)).count() >= 2
                        && log.iter().any(|w| is_event(w, "SuccessfulCreate"))
                })
                .await;
                let creates = log.iter().filter(|w| is_pod_create(w)).count();
                assert_eq!(creates, 2, "one failed create, one retried: {log:#?}");
                let warning = log
                    .iter()
                    .find_map(|w| match w {
                        Write::Create(v) if is_event(w, "FailedCreate") => Some(v.clone()),
                        _ => None,
                    })
                    .expect("a FailedCreate Event");
                assert_eq!(warning["type"], "Warning");
                assert_eq!(warning["involvedObject"]["name"], "web");
                let message = warning["message"].as_str().unwrap_or_default();
                assert!(message.contains("the disk is full"), "{message}");
                assert_eq!(writer.objects(Kind::Pod).len(), 1);
            })
        });
    }

    #[test]
    fn a_delete_of_an_object_already_gone_is_done() {
        // the cache holds a pod the store no longer has
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "default", "uid": "p1", "resourceVersion": "1",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web", "uid": "rs-uid", "controller": true}]},
            "status": {"phase": "Running"}});
        let writer = Arc::new(FakeWriter::default());
        with_controller(writer, vec![rs(0)], vec![pod], |writer| {
            Box::pin(async move {
                let status_written = |log: &[Write]| {
                    log.iter().any(|w| matches!(w, Write::Update(v)
                        if meta::kind_of(v) == Some(Kind::ReplicaSet) && v["status"]["replicas"] == 0))
                };
                let log = until(&writer, status_written).await;
                assert!(status_written(&log), "{log:#?}");
                // let any retry show itself
                tokio::time::sleep(Duration::from_millis(100)).await;
                let log = writer.log();
                let deletes = log
                    .iter()
                    .filter(|w| matches!(w, Write::Delete(..)))
                    .count();
                assert_eq!(
                    deletes, 1,
                    "NotFound counts as deleted, never retried: {log:#?}"
                );
                assert!(!log.iter().any(|w| is_event(w, "FailedDelete")), "{log:#?}");
            })
        });
    }
}
