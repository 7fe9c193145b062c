//! `Scheduler`: binds each unbound pod to a node.
//!
//! The rules are pure and live beside it: [`rules`] (the filters, in
//! kube-scheduler's order), [`score`] (the score plugins), [`ledger`] (what
//! each node has promised, the queue by priority, the choice over a
//! rotating part of a big cluster), [`preemption`] and [`explain`] (every
//! node's verdict on a pod, for `kubus explain pod`). The actor feeds the
//! ledger from the shared informer caches and carries its answers out: a
//! compare-and-swap write of `spec.nodeName`; or, when no node fits, a
//! `PodScheduled=False` condition and a `FailedScheduling` Event in
//! Kubernetes' words, and preemption of lower-priority pods when that
//! helps.

pub mod explain;
pub mod ledger;
pub mod preemption;
pub mod rules;
pub mod score;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;
use kubus_api::{meta, Kind};
use kubus_bus::client::DeleteOptions;
use kubus_bus::Client;
use serde_json::{json, Value};
use tracing::{debug, info, warn, Instrument};

use crate::events::{EventType, Recorder};
use crate::informer::key_of;
use crate::runtime::informers::{Changed, Informers, Shared};
use crate::write::{perform, Write};

pub use ledger::{feasible_to_find, placement, volume_fit, FitError, Ledger, Placement, VolumeFit};
pub use rules::{pod_requests, NodeInfo, Resources};

use preemption::{Budget, Verdict};

const BATCH_DELAY: Duration = Duration::from_millis(5);
/// The first wait of a pod that fits nowhere before it is tried again.
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
/// The longest such wait.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Bindings under way at once.
pub const BINDINGS_IN_FLIGHT_MAX: usize = 128;
/// Pods one pass tries that fit nowhere before the pass ends (the rest wait
/// for the next change), so that a crowd of unschedulable pods cannot
/// starve the pass.
const UNSCHEDULABLE_PER_PASS_MAX: usize = 256;

pub struct Scheduler {
    client: Client,
    recorder: Recorder,
    informers: Informers,
    /// The process's shared pod and node caches (set when started).
    pods: Option<Shared>,
    nodes: Option<Shared>,
    /// Claims, volumes and classes, for pods with persistent volumes.
    claims: Option<Shared>,
    volumes: Option<Shared>,
    classes: Option<Shared>,
    /// Disruption budgets (preemption prefers victims they allow).
    budgets: Option<Shared>,
    /// Namespaces (for the `namespaceSelector` of pod affinity terms).
    namespaces: Option<Shared>,
    /// Victims of preemption being deleted.
    preempting: HashSet<String>,
    /// Pods that fit nowhere, and when they may be tried again: the time
    /// doubles per failure up to [`BACKOFF_MAX`]; a node or a pod leaving
    /// or changing ends every wait at once (the cluster changed).
    backoff: HashMap<String, (Instant, u32)>,
    /// Claims being given their node.
    selecting: HashSet<String>,
    ledger: Ledger,
    sync_scheduled: bool,
    /// Pods with a binding under way.
    binding: HashSet<String>,
    /// The last unschedulable message written per pod (no rewrite loops).
    reported: HashMap<String, String>,
    /// When each waiting pod was first tried (the scheduling SLI's start);
    /// pods no longer waiting are dropped when it outgrows the queue.
    waiting_since: HashMap<String, Instant>,
    /// The trace of the change that brought a waiting pod, when traced:
    /// its binding joins it (at most [`TRACED_PODS_MAX`]).
    traces: HashMap<String, String>,
}

/// Most waiting pods whose trace the scheduler keeps.
const TRACED_PODS_MAX: usize = 10_000;

/// Records one scheduling attempt begun at `began`: its duration by the
/// choice's result, and as an attempt when it ends here (a chosen node
/// counts once its binding answers: `scheduled` or `error`).
fn attempt(result: &str, began: Instant) {
    let m = &crate::metrics::METRICS;
    let label = crate::metrics::result(result);
    if result != "scheduled" {
        m.schedule_attempts.get_or_create(&label).inc();
    }
    m.scheduling_attempt_duration
        .get_or_create(&label)
        .observe(began.elapsed().as_secs_f64());
}

impl Scheduler {
    pub fn new(client: Client, informers: Informers) -> Scheduler {
        Scheduler {
            recorder: Recorder::new(client.clone(), "default-scheduler"),
            client,
            informers,
            pods: None,
            nodes: None,
            claims: None,
            volumes: None,
            classes: None,
            budgets: None,
            namespaces: None,
            preempting: HashSet::new(),
            backoff: HashMap::new(),
            selecting: HashSet::new(),
            ledger: Ledger::default(),
            sync_scheduled: false,
            binding: HashSet::new(),
            reported: HashMap::new(),
            waiting_since: HashMap::new(),
            traces: HashMap::new(),
        }
    }

    fn kick(&mut self, ctx: &mut Context<Self>) {
        if !self.sync_scheduled {
            self.sync_scheduled = true;
            ctx.run_later(BATCH_DELAY, |act, ctx| act.sync(ctx));
        }
    }

    fn sync(&mut self, ctx: &mut Context<Self>) {
        self.sync_scheduled = false;
        let (Some(pods), Some(nodes)) = (&self.pods, &self.nodes) else {
            return;
        };
        if !(pods.synced() && nodes.synced()) {
            return;
        }
        let now = Instant::now();
        let waiting = self.ledger.pending_count();
        crate::metrics::METRICS
            .pending_pods
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        if self.waiting_since.len() > 2 * waiting + BINDINGS_IN_FLIGHT_MAX {
            let still: HashSet<&String> = self.ledger.pending().collect();
            self.waiting_since.retain(|k, _| still.contains(k));
        }
        let pending: Vec<Value> = {
            let pods = pods.read();
            let backoff = &self.backoff;
            self.ledger
                .pending()
                .filter(|k| !self.binding.contains(*k))
                .filter(|k| backoff.get(*k).is_none_or(|(at, _)| *at <= now))
                .filter_map(|k| pods.cache.get(k))
                .take(BINDINGS_IN_FLIGHT_MAX.saturating_sub(self.binding.len()))
                .cloned()
                .collect()
        };
        let mut failures = 0;
        for pod in pending {
            if failures >= UNSCHEDULABLE_PER_PASS_MAX {
                self.kick(ctx);
                break;
            }
            let key = key_of(&pod);
            self.waiting_since.entry(key.clone()).or_insert(now);
            let fit = match self.volume_fit(&pod) {
                Ok(fit) => fit,
                Err(message) => {
                    failures += 1;
                    attempt("unschedulable", now);
                    self.unschedulable(key, pod, message, None, ctx);
                    continue;
                }
            };
            if let Some(why) = &fit.wait {
                debug!(pod = %key, why, "waiting");
                continue;
            }
            if fit
                .select
                .iter()
                .any(|c| self.selecting.contains(&key_of(c)))
            {
                continue;
            }
            let chosen = Instant::now();
            let choice = self.ledger.choose_within(&key, &pod, fit.allowed.as_ref());
            attempt(
                if choice.is_ok() {
                    "scheduled"
                } else {
                    "unschedulable"
                },
                chosen,
            );
            match choice {
                Ok(node) if !fit.select.is_empty() => {
                    // the claims learn the node; the pod binds once they are bound
                    self.ledger.pod_changed(&key, Some(&pod));
                    self.select_node(fit.select, &node, ctx);
                }
                Ok(node) => self.bind(key, pod, node, ctx),
                Err(misfit) => {
                    failures += 1;
                    self.no_fit(key, pod, misfit, fit.allowed.as_ref(), ctx);
                }
            }
        }
    }

    /// No node fits `pod`: say why, and preempt lower-priority pods if
    /// that makes room.
    fn no_fit(
        &mut self,
        key: String,
        pod: Value,
        fit: FitError,
        allowed: Option<&BTreeSet<String>>,
        ctx: &mut Context<Self>,
    ) {
        let budgets: Vec<Budget> = self
            .budgets
            .as_ref()
            .map(|b| b.read().cache.values().map(Budget::of).collect())
            .unwrap_or_default();
        let cand = rules::Candidate::of(&key, &pod);
        let prep = self.ledger.prepare(&cand);
        let verdict = preemption::preempt(&self.ledger, &cand, &prep, &fit, allowed, &budgets);
        let mut message = fit.message();
        let mut nominate = None;
        match verdict {
            Verdict::Preempt(p) => {
                self.preempt(&pod, &p, ctx);
                nominate = Some(p.node);
            }
            Verdict::Waiting(why) => debug!(pod = %key, why, "preempting"),
            Verdict::NotHelpful(why) => message = format!("{message} preemption: {why}"),
        }
        self.unschedulable(key, pod, message, nominate, ctx);
    }

    /// Delete the victims of a preemption (gracefully), each once.
    fn preempt(&mut self, pod: &Value, p: &preemption::Preemption, ctx: &mut Context<Self>) {
        let by = key_of(pod);
        info!(pod = %by, node = %p.node, victims = p.victims.len(), "preempting");
        for victim in &p.victims {
            if !self.preempting.insert(victim.key.clone()) {
                continue;
            }
            let object = self
                .pods
                .as_ref()
                .and_then(|c| c.read().cache.get(&victim.key).cloned());
            let Some((object, r)) = object.and_then(|o| {
                let r = meta::object_ref(&o)?;
                Some((o, r))
            }) else {
                self.preempting.remove(&victim.key);
                continue;
            };
            let message = format!("Preempted by pod {by} on node {}", p.node);
            self.recorder
                .record(&object, EventType::Normal, "Preempted", &message);
            let options = DeleteOptions {
                uid: meta::uid(&object).map(str::to_string),
                ..DeleteOptions::default()
            };
            let key = victim.key.clone();
            let fut = perform(self.client.clone(), Write::Delete(r, options));
            ctx.spawn(fut.into_actor(self).map(move |res, act, _| {
                if let Err(e) = res {
                    debug!(pod = %key, error = %e, "cannot preempt");
                    act.preempting.remove(&key);
                }
            }));
        }
    }

    /// Say once why `pod` cannot be placed: an Event and its condition
    /// (with the node preemption nominated, if any); and wait before
    /// trying it again.
    fn unschedulable(
        &mut self,
        key: String,
        pod: Value,
        message: String,
        nominate: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        let failures = self.backoff.get(&key).map_or(0, |(_, n)| *n);
        let wait = BACKOFF_INITIAL
            .saturating_mul(1 << failures.min(8))
            .min(BACKOFF_MAX);
        self.backoff.insert(
            key.clone(),
            (Instant::now() + wait, failures.saturating_add(1)),
        );
        ctx.run_later(wait, |act, ctx| act.kick(ctx));
        let nominated = pod
            .pointer("/status/nominatedNodeName")
            .and_then(Value::as_str);
        let renominate = nominate.is_some() && nominate.as_deref() != nominated;
        if self.reported.get(&key) != Some(&message) || renominate {
            debug!(pod = %key, %message, "unschedulable");
            self.reported.insert(key.clone(), message.clone());
            self.recorder
                .record(&pod, EventType::Warning, "FailedScheduling", &message);
            self.write_unschedulable(key, pod, message, nominate, ctx);
        }
    }

    /// The cluster changed so that waiting pods may fit now.
    fn flush_backoff(&mut self) {
        self.backoff.clear();
    }

    /// What `pod`'s claims ask of its placement, from the shared caches.
    fn volume_fit(&self, pod: &Value) -> Result<VolumeFit, String> {
        if kubus_api::storage::pod_claims(pod).is_empty() {
            return Ok(VolumeFit::default());
        }
        let (Some(claims), Some(volumes), Some(classes)) =
            (&self.claims, &self.volumes, &self.classes)
        else {
            return Err("the scheduler has no claim caches".into());
        };
        if !(claims.synced() && volumes.synced() && classes.synced()) {
            return Ok(VolumeFit {
                wait: Some("waiting for the claim caches".into()),
                ..VolumeFit::default()
            });
        }
        let ns = meta::namespace(pod).unwrap_or("default").to_string();
        let claims = claims.read();
        let volumes = volumes.read();
        let classes = classes.read();
        let class_list: Vec<&Value> = classes.cache.values().collect();
        let claim = |name: &str| claims.cache.get(&format!("{ns}/{name}")).cloned();
        let volume = |name: &str| volumes.cache.get(name).cloned();
        volume_fit(pod, &claim, &volume, &class_list, &self.ledger.nodes)
    }

    /// Write the chosen node on claims waiting for their first consumer.
    fn select_node(&mut self, claims: Vec<Value>, node: &str, ctx: &mut Context<Self>) {
        for mut pvc in claims {
            let key = key_of(&pvc);
            if !self.selecting.insert(key.clone()) {
                continue;
            }
            if let Some(m) = pvc.get_mut("metadata").and_then(Value::as_object_mut) {
                let a = m.entry("annotations").or_insert_with(|| json!({}));
                if let Some(a) = a.as_object_mut() {
                    a.insert(
                        kubus_api::storage::SELECTED_NODE_ANNOTATION.into(),
                        json!(node),
                    );
                }
            }
            let fut = perform(self.client.clone(), Write::Update(pvc));
            ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
                act.selecting.remove(&key);
                match res {
                    Ok(written) => {
                        if let Some(c) = &act.claims {
                            c.assume(written);
                        }
                    }
                    Err(e) => {
                        warn!(claim = %key, error = %e, "cannot select a node for the claim; retrying");
                        ctx.run_later(RETRY_DELAY, |act, ctx| act.kick(ctx));
                    }
                }
            }));
        }
    }

    fn bind(&mut self, key: String, mut pod: Value, node: String, ctx: &mut Context<Self>) {
        if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("nodeName".into(), json!(node));
        }
        set_condition(&mut pod, "PodScheduled", "True", None, None);
        self.binding.insert(key.clone());
        let span = match self.traces.remove(&key) {
            Some(parent) => {
                let span = kubus_bus::trace_span!("scheduler.bind", pod = %key, node = %node);
                kubus_bus::trace::adopt(&span, Some(&parent));
                span
            }
            None => tracing::Span::none(),
        };
        let fut = perform(self.client.clone(), Write::Update(pod)).instrument(span);
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.binding.remove(&key);
            match res {
                Ok(bound) => {
                    info!(pod = %key, node = %node, "scheduled");
                    let m = &crate::metrics::METRICS;
                    m.schedule_attempts
                        .get_or_create(&crate::metrics::result("scheduled"))
                        .inc();
                    if let Some(since) = act.waiting_since.remove(&key) {
                        m.pod_scheduling_sli.observe(since.elapsed().as_secs_f64());
                    }
                    let message = format!("Successfully assigned {key} to {node}");
                    act.recorder
                        .record(&bound, EventType::Normal, "Scheduled", &message);
                    act.reported.remove(&key);
                    act.assume(bound);
                    act.recount(&key);
                }
                Err(e) => {
                    // uncount the choice: the pod waits again as cached
                    crate::metrics::METRICS
                        .schedule_attempts
                        .get_or_create(&crate::metrics::result("error"))
                        .inc();
                    act.recount(&key);
                    warn!(pod = %key, error = %e, "binding failed; retrying");
                    ctx.run_later(RETRY_DELAY, |act, ctx| act.kick(ctx));
                }
            }
            act.kick(ctx);
        }));
    }

    /// Record a pod this scheduler just wrote in the shared cache.
    fn assume(&self, pod: Value) {
        if let Some(pods) = &self.pods {
            pods.assume(pod);
        }
    }

    /// Count a pod in the ledger as the shared cache has it.
    fn recount(&mut self, key: &str) {
        let pod = self
            .pods
            .as_ref()
            .and_then(|p| p.read().cache.get(key).cloned());
        self.ledger.pod_changed(key, pod.as_ref());
    }

    fn write_unschedulable(
        &mut self,
        key: String,
        mut pod: Value,
        message: String,
        nominate: Option<String>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(node) = nominate {
            let status = pod
                .as_object_mut()
                .map(|o| o.entry("status").or_insert_with(|| json!({})));
            if let Some(status) = status.and_then(Value::as_object_mut) {
                status.insert("nominatedNodeName".into(), json!(node));
            }
        }
        set_condition(
            &mut pod,
            "PodScheduled",
            "False",
            Some("Unschedulable"),
            Some(&message),
        );
        let fut = perform(self.client.clone(), Write::Update(pod));
        ctx.spawn(fut.into_actor(self).map(move |res, act, _ctx| match res {
            Ok(obj) => act.assume(obj),
            Err(e) => {
                debug!(pod = %key, error = %e, "cannot record unschedulable");
                act.reported.remove(&key);
            }
        }));
    }
}

/// Set (or replace) one status condition of a pod.
pub fn set_condition(
    pod: &mut Value,
    kind: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    let now = kubus_api::lifecycle::format_time(jiff::Timestamp::now());
    let Some(root) = pod.as_object_mut() else {
        return;
    };
    let st = root.entry("status").or_insert_with(|| json!({}));
    let Some(st) = st.as_object_mut() else { return };
    st.entry("phase").or_insert_with(|| json!("Pending"));
    let conds = st.entry("conditions").or_insert_with(|| json!([]));
    let Some(conds) = conds.as_array_mut() else {
        return;
    };
    conds.retain(|c| c.get("type").and_then(Value::as_str) != Some(kind));
    let mut c = json!({"type": kind, "status": status, "lastTransitionTime": now});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    conds.push(c);
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address().recipient::<Changed>();
        self.pods = Some(self.informers.subscribe(Kind::Pod, me.clone()));
        self.nodes = Some(self.informers.subscribe(Kind::Node, me.clone()));
        self.claims = Some(
            self.informers
                .subscribe(Kind::PersistentVolumeClaim, me.clone()),
        );
        self.volumes = Some(self.informers.subscribe(Kind::PersistentVolume, me.clone()));
        self.classes = Some(self.informers.subscribe(Kind::StorageClass, me.clone()));
        self.budgets = Some(
            self.informers
                .subscribe(Kind::PodDisruptionBudget, me.clone()),
        );
        self.namespaces = Some(self.informers.subscribe(Kind::Namespace, me));
    }
}

impl Handler<crate::runtime::Demote> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: crate::runtime::Demote, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Changed> for Scheduler {
    type Result = ();

    fn handle(&mut self, changed: Changed, ctx: &mut Context<Self>) {
        for d in changed.deltas.iter() {
            let key = key_of(&d.object);
            match (changed.kind, d.deleted) {
                (Kind::Pod, true) => {
                    self.traces.remove(&key);
                    self.reported.remove(&key);
                    self.backoff.remove(&key);
                    self.preempting.remove(&key);
                    self.ledger.pod_changed(&key, None);
                    // room was made
                    self.flush_backoff();
                }
                // a pod being bound stays counted where it was chosen until
                // its binding answers
                (Kind::Pod, false) if !self.binding.contains(&key) => {
                    if let Some(t) = &d.trace {
                        if self.traces.len() < TRACED_PODS_MAX
                            && d.object.pointer("/spec/nodeName").is_none()
                        {
                            self.traces.insert(key.clone(), t.clone());
                        }
                    }
                    let was_counted = self.ledger.placed(&key).is_some();
                    self.ledger.pod_changed(&key, Some(&d.object));
                    if was_counted && self.ledger.placed(&key).is_none() {
                        // it finished: room was made
                        self.flush_backoff();
                    }
                }
                (Kind::Node, true) => self.ledger.node_deleted(&key),
                (Kind::Node, false) if self.ledger.node_changed(&d.object) => {
                    self.flush_backoff();
                }
                (Kind::Namespace, deleted) => {
                    let name = meta::name(&d.object).unwrap_or_default().to_string();
                    self.ledger
                        .namespace_changed(&name, (!deleted).then_some(&d.object));
                }
                (Kind::PersistentVolumeClaim | Kind::PersistentVolume, _) => self.flush_backoff(),
                _ => {}
            }
        }
        self.kick(ctx);
    }
}

#[cfg(test)]
mod tests;
