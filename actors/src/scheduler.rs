//! `Scheduler`: binds each unbound pod to a node.
//!
//! [`schedule`] filters nodes (ready, schedulable, nodeSelector, cpu, memory
//! and pod count against allocatable) and scores the rest by least
//! allocation; the actor binds with a compare-and-swap write of
//! `spec.nodeName`, and writes a `PodScheduled=False` condition saying why
//! when no node fits.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;
use kubus_api::{meta, quantity, Kind};
use kubus_bus::Client;
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use crate::events::{EventType, Recorder};
use crate::informer::key_of;
use crate::runtime::informers::{Changed, Informers, Shared};
use crate::write::{perform, Write};

const BATCH_DELAY: Duration = Duration::from_millis(5);
const RETRY_DELAY: Duration = Duration::from_secs(1);
/// Bindings under way at once.
pub const BINDINGS_IN_FLIGHT_MAX: usize = 128;

/// What the scheduler knows of one node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Its `spec.taints` (most nodes have none).
    pub taints: Vec<Value>,
    pub ready: bool,
    pub unschedulable: bool,
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub pods_max: i64,
    pub cpu_requested: i64,
    pub memory_requested: i64,
    pub pods: i64,
}

/// A pod's requests, summed over its containers (init containers: the max).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Requests {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

fn container_requests(c: &Value) -> Requests {
    let q = |name: &str, f: fn(&str) -> Result<i64, quantity::QuantityError>| {
        c.pointer(&format!("/resources/requests/{name}"))
            .and_then(Value::as_str)
            .and_then(|s| f(s).ok())
            .unwrap_or(0)
    };
    Requests {
        cpu_millis: q("cpu", quantity::cpu_millis),
        memory_bytes: q("memory", quantity::memory_bytes),
    }
}

pub fn pod_requests(pod: &Value) -> Requests {
    let list = |field: &str| -> Vec<Requests> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|cs| cs.iter().map(container_requests).collect())
            .unwrap_or_default()
    };
    let main = list("containers")
        .into_iter()
        .fold(Requests::default(), |a, r| Requests {
            cpu_millis: a.cpu_millis + r.cpu_millis,
            memory_bytes: a.memory_bytes + r.memory_bytes,
        });
    list("initContainers")
        .into_iter()
        .fold(main, |a, r| Requests {
            cpu_millis: a.cpu_millis.max(r.cpu_millis),
            memory_bytes: a.memory_bytes.max(r.memory_bytes),
        })
}

/// What the scheduler knows of a node, from its object.
pub fn node_info(node: &Value) -> NodeInfo {
    let alloc = |name: &str, f: fn(&str) -> Result<i64, quantity::QuantityError>| {
        node.pointer(&format!("/status/allocatable/{name}"))
            .and_then(Value::as_str)
            .and_then(|s| f(s).ok())
            .unwrap_or(0)
    };
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    NodeInfo {
        name: meta::name(node).unwrap_or_default().to_string(),
        labels: meta::labels(node),
        taints: node
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        ready,
        unschedulable: node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true),
        cpu_millis: alloc("cpu", quantity::cpu_millis),
        memory_bytes: alloc("memory", quantity::memory_bytes),
        pods_max: alloc("pods", |s| {
            quantity::parse_milli(s).map(|m| i64::try_from(m / 1000).unwrap_or(i64::MAX))
        }),
        ..NodeInfo::default()
    }
}

/// Why no node fits, as Kubernetes words it: "0/3 nodes are available: …".
pub fn unschedulable_message(total: usize, reasons: &BTreeMap<&'static str, usize>) -> String {
    let parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
}

/// How many feasible nodes to find before choosing among them, as
/// kube-scheduler's adaptive `percentageOfNodesToScore` (50 % less one per
/// 125 nodes, at least 5 %, at least 100 nodes): on a big cluster a pod
/// looks at a rotating part of it, not all of it.
pub fn feasible_to_find(nodes: usize) -> usize {
    if nodes < 100 {
        return nodes;
    }
    let percent = 50usize.saturating_sub(nodes / 125).max(5);
    (nodes * percent / 100).max(100)
}

/// Pick a node for a pod: filter, then the least allocated wins (ties by name).
pub fn schedule(pod: &Value, nodes: &[NodeInfo]) -> Result<String, String> {
    schedule_from(pod, nodes, 0, None).0
}

/// [`schedule`] over the nodes from index `start` on, cyclically, until
/// [`feasible_to_find`] nodes fit; also returns how many nodes it looked at
/// (the next pod starts there). Reasons name every node only when none fits,
/// and then every node was looked at.
pub fn schedule_from(
    pod: &Value,
    nodes: &[NodeInfo],
    start: usize,
    allowed: Option<&BTreeSet<String>>,
) -> (Result<String, String>, usize) {
    let want = pod_requests(pod);
    let selector: BTreeMap<String, String> = pod
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let pod_spec = pod.get("spec").unwrap_or(&Value::Null);
    let required_affinity = pod_spec
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution")
        .is_some();
    // the rules of api::placement, on the node as the scheduler knows it
    // (built only for nodes with taints, or pods with node affinity)
    let as_node = |n: &NodeInfo| json!({"metadata": {"name": n.name, "labels": n.labels}, "spec": {"taints": n.taints}});
    let enough = feasible_to_find(nodes.len());
    let mut feasible = 0;
    let mut examined = 0;
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut best: Option<(i64, &str)> = None;
    let start = if nodes.is_empty() {
        0
    } else {
        start % nodes.len()
    };
    for n in nodes[start..].iter().chain(&nodes[..start]) {
        if feasible >= enough {
            break;
        }
        examined += 1;
        let reason = if !n.ready {
            Some("node(s) were not ready")
        } else if n.unschedulable {
            Some("node(s) were unschedulable")
        } else if selector.iter().any(|(k, v)| n.labels.get(k) != Some(v)) {
            Some("node(s) didn't match Pod's node affinity/selector")
        } else if !n.taints.is_empty()
            && kubus_api::placement::untolerated_taint(
                pod_spec,
                &as_node(n),
                &["NoSchedule", "NoExecute"],
            )
            .is_some()
        {
            Some("node(s) had untolerated taint")
        } else if required_affinity && !kubus_api::placement::selected(pod_spec, &as_node(n)) {
            Some("node(s) didn't match Pod's node affinity/selector")
        } else if allowed.is_some_and(|a| !a.contains(&n.name)) {
            Some("node(s) had volume node affinity conflict")
        } else if n.cpu_requested + want.cpu_millis > n.cpu_millis {
            Some("Insufficient cpu")
        } else if n.memory_requested + want.memory_bytes > n.memory_bytes {
            Some("Insufficient memory")
        } else if n.pods >= n.pods_max {
            Some("Too many pods")
        } else {
            None
        };
        if let Some(r) = reason {
            *reasons.entry(r).or_default() += 1;
            continue;
        }
        feasible += 1;
        // least allocated: the mean used fraction of cpu and memory, per mille
        let frac = |used: i64, cap: i64| if cap > 0 { used * 1000 / cap } else { 1000 };
        let score = (frac(n.cpu_requested + want.cpu_millis, n.cpu_millis)
            + frac(n.memory_requested + want.memory_bytes, n.memory_bytes)
            + frac(n.pods + 1, n.pods_max))
            / 3;
        if best.is_none_or(|(s, name)| (score, n.name.as_str()) < (s, name)) {
            best = Some((score, &n.name));
        }
    }
    let outcome = match best {
        Some((_, name)) => Ok(name.to_string()),
        None => Err(unschedulable_message(nodes.len(), &reasons)),
    };
    (outcome, examined)
}

/// What a pod's PersistentVolumeClaims ask of its placement.
#[derive(Debug, Default, PartialEq)]
pub struct VolumeFit {
    /// Only these nodes can use its bound volumes (None: any node).
    pub allowed: Option<BTreeSet<String>>,
    /// Claims whose class waits for the first consumer and that have no
    /// node yet: the chosen node is written on them before the pod binds.
    pub select: Vec<Value>,
    /// Not yet: a claim is being bound to a volume (not a failure; the
    /// pod is looked at again when the claim changes).
    pub wait: Option<String>,
}

/// The storage rules of scheduling (Kubernetes' VolumeBinding plugin): a
/// pod whose claim is missing, or unbound with a class that binds at
/// once, waits; a claim bound to a volume limits the pod to the nodes the
/// volume can be used from; a claim waiting for its first consumer gets
/// the chosen node, and the pod binds once the claim is bound.
pub fn volume_fit(
    pod: &Value,
    claims: &dyn Fn(&str) -> Option<Value>,
    volumes: &dyn Fn(&str) -> Option<Value>,
    classes: &[&Value],
    nodes: &[NodeInfo],
) -> Result<VolumeFit, String> {
    let mut fit = VolumeFit::default();
    for name in kubus_api::storage::pod_claims(pod) {
        let Some(pvc) = claims(name) else {
            return Err(format!("persistentvolumeclaim {name:?} not found"));
        };
        if kubus_api::pod::is_terminating(&pvc) {
            return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
        }
        let volume = pvc
            .pointer("/spec/volumeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !volume.is_empty() {
            let Some(pv) = volumes(volume) else {
                return Err(format!(
                    "persistentvolume {volume:?} of claim {name:?} not found"
                ));
            };
            let usable: BTreeSet<String> = nodes
                .iter()
                .filter(|n| {
                    let node = json!({"metadata": {"name": n.name, "labels": n.labels}});
                    kubus_api::storage::usable_from(&pv, &node)
                })
                .map(|n| n.name.clone())
                .collect();
            fit.allowed = Some(match fit.allowed.take() {
                Some(a) => a.intersection(&usable).cloned().collect(),
                None => usable,
            });
            continue;
        }
        let class_name = pvc
            .pointer("/spec/storageClassName")
            .and_then(Value::as_str);
        let class = match class_name {
            Some(c) => classes.iter().copied().find(|k| meta::name(k) == Some(c)),
            None => kubus_api::storage::default_class(classes),
        };
        let waits = class.is_some_and(kubus_api::storage::waits_for_consumer);
        if !waits {
            return Err("pod has unbound immediate PersistentVolumeClaims".to_string());
        }
        if meta::annotations(&pvc).contains_key(kubus_api::storage::SELECTED_NODE_ANNOTATION) {
            fit.wait = Some(format!("waiting for volume binding of claim {name:?}"));
            continue;
        }
        fit.select.push(pvc);
    }
    Ok(fit)
}

/// How the scheduler counts one pod.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement<'a> {
    /// Bound and not finished: its requests count on this node, also while
    /// it is terminating (its containers still run until they stop).
    Counted(&'a str),
    /// Waiting for a node.
    Pending,
    /// Finished, or terminating without a node: never bound, never counted.
    Ignored,
}

/// How `pod` counts (pure).
pub fn placement(pod: &Value) -> Placement<'_> {
    let finished = kubus_api::pod::is_finished(pod);
    let terminating = kubus_api::pod::is_terminating(pod);
    match pod.pointer("/spec/nodeName").and_then(Value::as_str) {
        _ if finished => Placement::Ignored,
        Some(node) if !node.is_empty() => Placement::Counted(node),
        _ if terminating => Placement::Ignored,
        _ => Placement::Pending,
    }
}

/// What every node has promised, kept pod by pod as changes arrive, and
/// which pods wait for a node (pure; no rescans of every pod per decision).
#[derive(Debug, Default)]
pub struct Ledger {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Every bound, active pod counted on its node: what it was counted as.
    placed: HashMap<String, (String, Requests)>,
    /// Pods without a node, in key order.
    pending: BTreeSet<String>,
    /// Where the next pod's search starts (see [`schedule_from`]).
    next_start: usize,
}

impl Ledger {
    /// A node appeared or changed; what its pods requested is kept.
    pub fn node_changed(&mut self, node: &Value) {
        let mut info = node_info(node);
        match self.index.get(&info.name) {
            Some(&i) => {
                let old = &self.nodes[i];
                info.cpu_requested = old.cpu_requested;
                info.memory_requested = old.memory_requested;
                info.pods = old.pods;
                self.nodes[i] = info;
            }
            None => {
                // pods counted before their node was seen
                for (node, r) in self.placed.values() {
                    if *node == info.name {
                        info.cpu_requested += r.cpu_millis;
                        info.memory_requested += r.memory_bytes;
                        info.pods += 1;
                    }
                }
                self.index.insert(info.name.clone(), self.nodes.len());
                self.nodes.push(info);
            }
        }
    }

    pub fn node_deleted(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        self.nodes.swap_remove(i);
        if let Some(moved) = self.nodes.get(i) {
            self.index.insert(moved.name.clone(), i);
        }
    }

    /// Pod `key` is now `pod` (`None`: deleted).
    pub fn pod_changed(&mut self, key: &str, pod: Option<&Value>) {
        if let Some((node, r)) = self.placed.remove(key) {
            self.count(&node, r, -1);
        }
        self.pending.remove(key);
        let Some(pod) = pod else {
            return;
        };
        match placement(pod) {
            Placement::Counted(node) => {
                let r = pod_requests(pod);
                self.count(node, r, 1);
                self.placed.insert(key.to_string(), (node.to_string(), r));
            }
            Placement::Pending => {
                self.pending.insert(key.to_string());
            }
            Placement::Ignored => {}
        }
    }

    fn count(&mut self, node: &str, r: Requests, sign: i64) {
        if let Some(&i) = self.index.get(node) {
            let n = &mut self.nodes[i];
            n.cpu_requested += sign * r.cpu_millis;
            n.memory_requested += sign * r.memory_bytes;
            n.pods += sign;
        }
    }

    /// Pods waiting for a node.
    pub fn pending(&self) -> impl Iterator<Item = &String> {
        self.pending.iter()
    }

    /// Choose a node for `pod` (see [`schedule_from`]); on success the
    /// pod is counted there at once, so the next choice sees it.
    pub fn choose(&mut self, key: &str, pod: &Value) -> Result<String, String> {
        self.choose_within(key, pod, None)
    }

    /// [`Ledger::choose`] among `allowed` nodes only (None: any).
    pub fn choose_within(
        &mut self,
        key: &str,
        pod: &Value,
        allowed: Option<&BTreeSet<String>>,
    ) -> Result<String, String> {
        let (outcome, examined) = schedule_from(pod, &self.nodes, self.next_start, allowed);
        self.next_start = (self.next_start + examined) % self.nodes.len().max(1);
        if let Ok(node) = &outcome {
            let mut bound = pod.clone();
            if let Some(spec) = bound.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("nodeName".into(), json!(node));
            }
            self.pod_changed(key, Some(&bound));
        }
        outcome
    }
}

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
    /// Claims being given their node.
    selecting: HashSet<String>,
    ledger: Ledger,
    sync_scheduled: bool,
    /// Pods with a binding under way.
    binding: HashSet<String>,
    /// The last unschedulable message written per pod (no rewrite loops).
    reported: HashMap<String, String>,
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
            selecting: HashSet::new(),
            ledger: Ledger::default(),
            sync_scheduled: false,
            binding: HashSet::new(),
            reported: HashMap::new(),
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
        let pending: Vec<Value> = {
            let pods = pods.read();
            self.ledger
                .pending()
                .filter(|k| !self.binding.contains(*k))
                .filter_map(|k| pods.cache.get(k))
                .take(BINDINGS_IN_FLIGHT_MAX.saturating_sub(self.binding.len()))
                .cloned()
                .collect()
        };
        for pod in pending {
            let key = key_of(&pod);
            let fit = match self.volume_fit(&pod) {
                Ok(fit) => fit,
                Err(message) => {
                    self.unschedulable(key, pod, message, ctx);
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
            match self.ledger.choose_within(&key, &pod, fit.allowed.as_ref()) {
                Ok(node) if !fit.select.is_empty() => {
                    // the claims learn the node; the pod binds once they are bound
                    self.ledger.pod_changed(&key, Some(&pod));
                    self.select_node(fit.select, &node, ctx);
                }
                Ok(node) => self.bind(key, pod, node, ctx),
                Err(message) => self.unschedulable(key, pod, message, ctx),
            }
        }
    }

    /// Say once why `pod` cannot be placed: an Event and its condition.
    fn unschedulable(&mut self, key: String, pod: Value, message: String, ctx: &mut Context<Self>) {
        if self.reported.get(&key) != Some(&message) {
            debug!(pod = %key, %message, "unschedulable");
            self.reported.insert(key.clone(), message.clone());
            self.recorder
                .record(&pod, EventType::Warning, "FailedScheduling", &message);
            self.write_unschedulable(key, pod, message, ctx);
        }
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
        let fut = perform(self.client.clone(), Write::Update(pod));
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.binding.remove(&key);
            match res {
                Ok(bound) => {
                    info!(pod = %key, node = %node, "scheduled");
                    let message = format!("Successfully assigned {key} to {node}");
                    act.recorder
                        .record(&bound, EventType::Normal, "Scheduled", &message);
                    act.reported.remove(&key);
                    act.assume(bound);
                    act.recount(&key);
                }
                Err(e) => {
                    // uncount the choice: the pod waits again as cached
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
        ctx: &mut Context<Self>,
    ) {
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
        self.classes = Some(self.informers.subscribe(Kind::StorageClass, me));
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
                    self.reported.remove(&key);
                    self.ledger.pod_changed(&key, None);
                }
                // a pod being bound stays counted where it was chosen until
                // its binding answers
                (Kind::Pod, false) if !self.binding.contains(&key) => {
                    self.ledger.pod_changed(&key, Some(&d.object));
                }
                (Kind::Node, true) => self.ledger.node_deleted(&key),
                (Kind::Node, false) => self.ledger.node_changed(&d.object),
                _ => {}
            }
        }
        self.kick(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: i64, mem: i64, labels: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ready: true,
            cpu_millis: cpu,
            memory_bytes: mem,
            pods_max: 110,
            ..NodeInfo::default()
        }
    }

    fn pod(cpu: &str, mem: &str, selector: Value) -> Value {
        json!({"spec": {"nodeSelector": selector, "containers": [
            {"name": "a", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}})
    }

    #[test]
    fn filters_and_scores() {
        let big = node("big", 4000, 8 << 30, &[("disk", "ssd")]);
        let small = node("small", 1000, 1 << 30, &[]);
        let mut busy = node("busy", 4000, 8 << 30, &[]);
        busy.cpu_requested = 3500;
        let nodes = vec![big.clone(), small.clone(), busy.clone()];
        let cases = [
            (pod("100m", "64Mi", json!({})), Ok("big")),
            (pod("2", "64Mi", json!({})), Ok("big")),
            (pod("100m", "64Mi", json!({"disk": "ssd"})), Ok("big")),
            (
                pod("100m", "2Gi", json!({"disk": "hdd"})),
                Err(
                    "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.",
                ),
            ),
            (
                pod("5", "64Mi", json!({})),
                Err("0/3 nodes are available: 3 Insufficient cpu."),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(
                schedule(&p, &nodes).as_deref(),
                want.map_err(String::from).as_deref()
            );
        }
        let mut not_ready = small.clone();
        not_ready.ready = false;
        assert_eq!(
            schedule(&pod("1", "1", json!({})), &[not_ready]),
            Err("0/1 nodes are available: 1 node(s) were not ready.".to_string())
        );
    }

    fn node_object(name: &str) -> Value {
        json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn bound(name: &str, node: Option<&str>) -> Value {
        let mut p = pod("100m", "64Mi", json!({}));
        p["metadata"] = json!({"name": name, "namespace": "d"});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    }

    #[test]
    fn ledger_counts_pods_as_they_change() {
        let mut l = Ledger::default();
        // a pod seen before its node is counted when the node appears
        l.pod_changed("d/a", Some(&bound("a", Some("n1"))));
        l.node_changed(&node_object("n1"));
        l.node_changed(&node_object("n2"));
        l.pod_changed("d/b", Some(&bound("b", None)));
        assert_eq!(l.nodes[l.index["n1"]].cpu_requested, 100);
        assert_eq!(l.pending().collect::<Vec<_>>(), vec!["d/b"]);
        // choosing counts at once and leaves the pending set
        let node = l.choose("d/b", &bound("b", None)).expect("fits");
        assert_eq!(node, "n2", "least allocated");
        assert_eq!(l.pending().count(), 0);
        assert_eq!(l.nodes[l.index["n2"]].pods, 1);
        // a node update keeps what its pods requested
        l.node_changed(&node_object("n2"));
        assert_eq!(l.nodes[l.index["n2"]].memory_requested, 64 << 20);
        // deleted or finished pods are uncounted
        l.pod_changed("d/a", None);
        let mut done = bound("b", Some("n2"));
        done["status"] = json!({"phase": "Succeeded"});
        l.pod_changed("d/b", Some(&done));
        assert_eq!(l.nodes.iter().map(|n| n.pods).sum::<i64>(), 0);
        l.node_deleted("n1");
        assert_eq!(l.nodes.len(), 1);
        assert_eq!(l.index["n2"], 0);
    }

    /// Issue 5: a terminating pod is never bound, and a bound one keeps
    /// its node's resources until its containers have stopped and it is
    /// finished or gone.
    #[test]
    fn terminating_pods_are_not_scheduled_but_still_counted() {
        let terminating = |node: Option<&str>| {
            let mut p = bound("t", node);
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:30Z");
            p
        };
        let finished = |phase: &str| {
            let mut p = bound("f", Some("n1"));
            p["status"] = json!({"phase": phase});
            p
        };
        let cases: Vec<(&str, Value, Placement)> = vec![
            ("unbound", bound("a", None), Placement::Pending),
            ("empty node", bound("a", Some("")), Placement::Pending),
            ("bound", bound("a", Some("n1")), Placement::Counted("n1")),
            (
                "terminating, unbound",
                terminating(None),
                Placement::Ignored,
            ),
            (
                "terminating, bound",
                terminating(Some("n1")),
                Placement::Counted("n1"),
            ),
            ("succeeded", finished("Succeeded"), Placement::Ignored),
            ("failed", finished("Failed"), Placement::Ignored),
        ];
        for (what, pod, want) in &cases {
            assert_eq!(placement(pod), *want, "{what}");
        }
        let mut l = Ledger::default();
        l.node_changed(&node_object("n1"));
        l.pod_changed("d/t", Some(&terminating(None)));
        assert_eq!(l.pending().count(), 0, "never bound");
        l.pod_changed("d/t", Some(&terminating(Some("n1"))));
        assert_eq!(l.nodes[l.index["n1"]].pods, 1, "still counted");
        l.pod_changed("d/t", None);
        assert_eq!(l.nodes[l.index["n1"]].pods, 0);
    }

    #[test]
    fn big_clusters_look_at_part_of_the_nodes() {
        assert_eq!(feasible_to_find(3), 3);
        assert_eq!(feasible_to_find(100), 100);
        assert_eq!(feasible_to_find(1000), 420);
        assert_eq!(feasible_to_find(5000), 500);
        assert_eq!(feasible_to_find(100_000), 5000);
        let nodes: Vec<NodeInfo> = (0..1000)
            .map(|i| node(&format!("n{i:04}"), 4000, 8 << 30, &[]))
            .collect();
        let p = pod("100m", "64Mi", json!({}));
        let (first, looked) = schedule_from(&p, &nodes, 0, None);
        assert_eq!(looked, 420);
        let (second, _) = schedule_from(&p, &nodes, looked, None);
        assert_ne!(first, second, "the next pod searches elsewhere");
        // none fits: every node is looked at and counted in the message
        let (none, looked) = schedule_from(&pod("5", "1", json!({})), &nodes, 7, None);
        assert_eq!(looked, 1000);
        assert_eq!(
            none,
            Err("0/1000 nodes are available: 1000 Insufficient cpu.".to_string())
        );
    }

    #[test]
    fn claims_limit_and_delay_placement() {
        let nodes = vec![
            node("n1", 1000, 1 << 30, &[("kubernetes.io/hostname", "n1")]),
            node("n2", 1000, 1 << 30, &[("kubernetes.io/hostname", "n2")]),
        ];
        let pod = json!({"metadata": {"namespace": "default"}, "spec": {"volumes": [
            {"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}}]}});
        let class = kubus_api::storage::local_path_class();
        let classes = [&class];
        let unbound = json!({"metadata": {"name": "www-web-0", "namespace": "default", "uid": "u"},
            "spec": {"storageClassName": "local-path"}});
        let none = |_: &str| None;
        // missing claim: waits, saying so
        assert_eq!(
            volume_fit(&pod, &none, &none, &classes, &nodes),
            Err("persistentvolumeclaim \"www-web-0\" not found".into())
        );
        // waiting for its first consumer: the chosen node is written on it
        let c = unbound.clone();
        let fit =
            volume_fit(&pod, &|_: &str| Some(c.clone()), &none, &classes, &nodes).expect("fits");
        assert_eq!(fit.select.len(), 1);
        assert_eq!(fit.allowed, None);
        // bound to a volume on n2: only n2
        let pv = kubus_api::storage::local_path_volume(&unbound, &class, "n2", "/s");
        let mut bound = unbound.clone();
        bound["spec"]["volumeName"] = json!(kubus_api::storage::provisioned_name(&unbound));
        let fit = volume_fit(
            &pod,
            &|_: &str| Some(bound.clone()),
            &|_: &str| Some(pv.clone()),
            &classes,
            &nodes,
        )
        .expect("fits");
        assert_eq!(fit.allowed, Some(["n2".to_string()].into_iter().collect()));
        assert_eq!(
            schedule_from(&pod, &nodes, 0, fit.allowed.as_ref()).0,
            Ok("n2".into())
        );
        // an immediate class that has not bound it: waits
        let mut immediate = unbound.clone();
        immediate["spec"]["storageClassName"] = json!("other");
        let other = json!({"metadata": {"name": "other"}, "provisioner": "x", "volumeBindingMode": "Immediate"});
        assert!(volume_fit(
            &pod,
            &|_: &str| Some(immediate.clone()),
            &none,
            &[&other],
            &nodes
        )
        .is_err());
    }

    #[test]
    fn requests_sum_containers_and_max_init() {
        let p = json!({"spec": {
            "containers": [{"resources": {"requests": {"cpu": "100m"}}}, {"resources": {"requests": {"cpu": "200m", "memory": "1Ki"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(
            pod_requests(&p),
            Requests {
                cpu_millis: 1000,
                memory_bytes: 1024
            }
        );
    }

    #[test]
    fn node_info_reads_allocatable() {
        let n = json!({"metadata": {"name": "n1", "labels": {"a": "b"}},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]}});
        let info = node_info(&n);
        assert_eq!(
            (
                info.cpu_millis,
                info.memory_bytes,
                info.pods_max,
                info.ready
            ),
            (2000, 4 << 30, 110, true)
        );
    }
}
