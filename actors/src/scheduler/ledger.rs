//! [`Ledger`]: what every node has promised, kept pod by pod as changes
//! arrive, and which pods wait for a node, highest priority first (pure;
//! no rescans of every pod per decision). [`Ledger::choose`] runs the
//! filters and scores of [`super::rules`] and [`super::score`] over a
//! rotating part of the nodes, as kube-scheduler does on a big cluster.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use kubus_api::meta;
use serde_json::{json, Value};

use super::rules::{
    self, Candidate, Group, Misfit, NamespaceLabels, NodeInfo, PodInfo, PodTerm, Prepared,
};
use super::score;

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

/// Why no node fits: each node that was looked at, with its misfit.
#[derive(Debug, Clone, PartialEq)]
pub struct FitError {
    pub total: usize,
    /// Node index in the ledger and why it does not fit.
    pub misfits: Vec<(usize, Misfit)>,
}

impl FitError {
    /// Kubernetes' words: "0/3 nodes are available: 1 Insufficient cpu, 2
    /// node(s) had untolerated taint {…}." (reasons sorted, as it sorts them).
    pub fn message(&self) -> String {
        let mut reasons: BTreeMap<Cow<'static, str>, usize> = BTreeMap::new();
        for (_, m) in &self.misfits {
            *reasons.entry(m.reason()).or_default() += 1;
        }
        histogram(self.total, &reasons)
    }
}

/// "0/N nodes are available: 1 B, 2 A." — each "count reason" sorted as a
/// string, as Kubernetes sorts them.
pub fn histogram(total: usize, reasons: &BTreeMap<Cow<'static, str>, usize>) -> String {
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!("0/{total} nodes are available: {}.", parts.join(", "))
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

/// The group a placed pod counts in.
fn group_of(p: &PodInfo) -> Group {
    Group {
        namespace: p.namespace.clone(),
        labels: p.labels.clone(),
        terminating: p.terminating,
    }
}

/// One pod fewer on `node`; whether the map is now empty.
fn decrement(per_node: &mut HashMap<String, u32>, node: &str) -> bool {
    if let Some(n) = per_node.get_mut(node) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            per_node.remove(node);
        }
    }
    per_node.is_empty()
}

/// What every node has promised and which pods wait.
#[derive(Debug, Default)]
pub struct Ledger {
    pub(crate) nodes: Vec<NodeInfo>,
    pub(crate) index: HashMap<String, usize>,
    /// Every bound, active pod counted on its node.
    placed: HashMap<String, Arc<PodInfo>>,
    /// Placed pods with required anti-affinity, grouped by their terms
    /// (every candidate checks each group once): the terms, and how many
    /// such pods each node has.
    anti_groups: HashMap<String, (Vec<PodTerm>, HashMap<String, u32>)>,
    /// Placed pods grouped by namespace, labels and terminating: how many
    /// each node has (a candidate's own terms check each group once).
    groups: HashMap<Group, HashMap<String, u32>>,
    /// Placed pods per controller uid, per node.
    by_owner: HashMap<String, HashMap<String, u32>>,
    /// Pods without a node: highest priority first, then by key.
    pending: BTreeSet<(Reverse<i32>, String)>,
    pending_priority: HashMap<String, i32>,
    /// Pending pods nominated to a node by preemption.
    nominated: HashMap<String, Arc<PodInfo>>,
    /// Labels of each namespace (for `namespaceSelector`s).
    pub(crate) namespaces: NamespaceLabels,
    /// Where the next pod's search starts.
    next_start: usize,
}

impl Ledger {
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    /// A node appeared or changed; what its pods requested is kept.
    /// Returns whether anything the rules read changed (labels, taints,
    /// readiness, cordon, allocatable): only then may waiting pods fit now.
    pub fn node_changed(&mut self, node: &Value) -> bool {
        let mut info = NodeInfo::of(node);
        match self.index.get(&info.name) {
            Some(&i) => {
                let old = std::mem::take(&mut self.nodes[i]);
                let same = old.labels == info.labels
                    && old.taints == info.taints
                    && old.ready == info.ready
                    && old.unschedulable == info.unschedulable
                    && old.allocatable == info.allocatable
                    && old.pods_max == info.pods_max;
                info.requested = old.requested;
                info.scored_cpu_millis = old.scored_cpu_millis;
                info.scored_memory_bytes = old.scored_memory_bytes;
                info.pods = old.pods;
                info.nominated = old.nominated;
                self.nodes[i] = info;
                !same
            }
            None => {
                // pods counted before their node was seen
                let name = info.name.clone();
                for p in self.placed.values().filter(|p| p.node == name) {
                    info.count(p, 1);
                }
                for p in self.nominated.values().filter(|p| p.node == name) {
                    info.nominated.push(p.clone());
                }
                self.index.insert(info.name.clone(), self.nodes.len());
                self.nodes.push(info);
                true
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

    /// A namespace appeared or changed (`None`: deleted).
    pub fn namespace_changed(&mut self, name: &str, ns: Option<&Value>) {
        match ns {
            Some(ns) => {
                self.namespaces.insert(name.to_string(), meta::labels(ns));
            }
            None => {
                self.namespaces.remove(name);
            }
        }
    }

    /// Pod `key` is now `pod` (`None`: deleted).
    pub fn pod_changed(&mut self, key: &str, pod: Option<&Value>) {
        if let Some(old) = self.placed.remove(key) {
            self.uncount(&old);
        }
        if let Some(p) = self.pending_priority.remove(key) {
            self.pending.remove(&(Reverse(p), key.to_string()));
        }
        if let Some(old) = self.nominated.remove(key) {
            if let Some(&i) = self.index.get(&old.node) {
                self.nodes[i].nominated.retain(|p| p.key != key);
            }
        }
        let Some(pod) = pod else {
            return;
        };
        match placement(pod) {
            Placement::Counted(node) => {
                let info = Arc::new(PodInfo::of(key, pod, node));
                if !info.anti_key.is_empty() {
                    let (_, per_node) = self
                        .anti_groups
                        .entry(info.anti_key.clone())
                        .or_insert_with(|| (info.anti_affinity.clone(), HashMap::new()));
                    *per_node.entry(node.to_string()).or_default() += 1;
                }
                let per_node = self.groups.entry(group_of(&info)).or_default();
                *per_node.entry(node.to_string()).or_default() += 1;
                if let Some(owner) = &info.owner {
                    let per_node = self.by_owner.entry(owner.clone()).or_default();
                    *per_node.entry(node.to_string()).or_default() += 1;
                }
                if let Some(&i) = self.index.get(node) {
                    self.nodes[i].count(&info, 1);
                }
                self.placed.insert(key.to_string(), info);
            }
            Placement::Pending => {
                let priority = kubus_api::priority::of(pod);
                self.pending.insert((Reverse(priority), key.to_string()));
                self.pending_priority.insert(key.to_string(), priority);
                let nominated = pod
                    .pointer("/status/nominatedNodeName")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty());
                if let Some(node) = nominated {
                    let info = Arc::new(PodInfo::of(key, pod, node));
                    if let Some(&i) = self.index.get(node) {
                        self.nodes[i].nominated.push(info.clone());
                    }
                    self.nominated.insert(key.to_string(), info);
                }
            }
            Placement::Ignored => {}
        }
    }

    fn uncount(&mut self, old: &Arc<PodInfo>) {
        if let Some((_, per_node)) = self.anti_groups.get_mut(&old.anti_key) {
            if decrement(per_node, &old.node) {
                self.anti_groups.remove(&old.anti_key);
            }
        }
        let group = group_of(old);
        if let Some(per_node) = self.groups.get_mut(&group) {
            if decrement(per_node, &old.node) {
                self.groups.remove(&group);
            }
        }
        if let Some(owner) = &old.owner {
            if let Some(per_node) = self.by_owner.get_mut(owner) {
                if let Some(n) = per_node.get_mut(&old.node) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        per_node.remove(&old.node);
                    }
                }
                if per_node.is_empty() {
                    self.by_owner.remove(owner);
                }
            }
        }
        if let Some(&i) = self.index.get(&old.node) {
            self.nodes[i].count(old, -1);
        }
    }

    /// Pods waiting for a node, highest priority first.
    pub fn pending(&self) -> impl Iterator<Item = &String> {
        self.pending.iter().map(|(_, k)| k)
    }

    /// How many pods wait for a node.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// The placed pod `key`.
    pub fn placed(&self, key: &str) -> Option<&Arc<PodInfo>> {
        self.placed.get(key)
    }

    /// What the candidate's rules need counted over the cluster: each
    /// group of alike pods is matched against its terms once.
    pub fn prepare(&self, cand: &Candidate) -> Prepared {
        let mut prep = Prepared::for_candidate(cand);
        let ns = &self.namespaces;
        for (terms, per_node) in self.anti_groups.values() {
            let matching: Vec<&PodTerm> = terms
                .iter()
                .filter(|t| t.matches(&cand.namespace, &cand.labels, ns))
                .collect();
            if matching.is_empty() {
                continue;
            }
            for (node, n) in per_node {
                if let Some(node) = self.node(node) {
                    prep.count_anti_terms(&matching, node, i32::try_from(*n).unwrap_or(i32::MAX));
                }
            }
        }
        if let Some(per_node) = cand.owner.as_ref().and_then(|o| self.by_owner.get(o)) {
            prep.siblings = per_node.clone();
        }
        if cand.looks_at_pods() {
            if !cand.spread.is_empty() {
                for node in &self.nodes {
                    prep.add_domains(cand, node);
                }
            }
            for (group, per_node) in &self.groups {
                let Some(m) = rules::matches_of(cand, group, ns) else {
                    continue;
                };
                for (node, n) in per_node {
                    if let Some(node) = self.node(node) {
                        prep.count_group(cand, &m, node, i32::try_from(*n).unwrap_or(i32::MAX));
                    }
                }
            }
        }
        prep
    }

    /// Filter and score for `cand` over the nodes from the rotating start,
    /// until [`feasible_to_find`] nodes fit; also returns how many nodes it
    /// looked at. Misfits name every node only when none fits, and then
    /// every node was looked at.
    pub fn evaluate(
        &self,
        cand: &Candidate,
        prep: &Prepared,
        allowed: Option<&BTreeSet<String>>,
        start: usize,
    ) -> (Result<String, FitError>, usize) {
        let nodes = &self.nodes;
        let enough = feasible_to_find(nodes.len());
        let start = if nodes.is_empty() {
            0
        } else {
            start % nodes.len()
        };
        let mut feasible: Vec<&NodeInfo> = Vec::new();
        let mut misfits = Vec::new();
        let mut examined = 0;
        let order = (start..nodes.len()).chain(0..start);
        for i in order {
            if feasible.len() >= enough {
                break;
            }
            examined += 1;
            match rules::filter(cand, prep, &nodes[i], allowed, &self.namespaces) {
                Ok(()) => feasible.push(&nodes[i]),
                Err(m) => misfits.push((i, m)),
            }
        }
        if feasible.is_empty() {
            return (
                Err(FitError {
                    total: nodes.len(),
                    misfits,
                }),
                examined,
            );
        }
        let scores = score::scores(cand, prep, &feasible);
        let best = scores
            .iter()
            .enumerate()
            .max_by_key(|(i, s)| (**s, Reverse(*i)))
            .map_or(0, |(i, _)| i);
        (Ok(feasible[best].name.clone()), examined)
    }

    /// Choose a node for `pod` (see [`Ledger::evaluate`]); on success the
    /// pod is counted there at once, so the next choice sees it.
    pub fn choose(&mut self, key: &str, pod: &Value) -> Result<String, FitError> {
        self.choose_within(key, pod, None)
    }

    /// [`Ledger::choose`] among `allowed` nodes only (None: any).
    pub fn choose_within(
        &mut self,
        key: &str,
        pod: &Value,
        allowed: Option<&BTreeSet<String>>,
    ) -> Result<String, FitError> {
        let cand = Candidate::of(key, pod);
        let prep = self.prepare(&cand);
        let (outcome, examined) = self.evaluate(&cand, &prep, allowed, self.next_start);
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
