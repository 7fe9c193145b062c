//! The scheduler's rules, each a pure function of the pod being placed
//! (a [`Candidate`]), what is known of one node ([`NodeInfo`]) and what was
//! counted once per attempt over the whole cluster ([`Prepared`]).
//!
//! Filters follow kube-scheduler's plugins and their order: node ready
//! and schedulable, taints and tolerations, node selector and required
//! node affinity, host ports, requested resources (cpu, memory, pods and
//! extended resources), volume placement, topology spread constraints and
//! inter-pod affinity and anti-affinity (the candidate's own terms and the
//! anti-affinity of pods already placed). A node that fails one gets a
//! [`Misfit`], which carries what [`crate::scheduler::explain`] needs to
//! say what would make the pod fit, and words itself as Kubernetes does
//! in a `FailedScheduling` Event.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use kubus_api::selector::Selector;
use kubus_api::{meta, placement, quantity};
use serde_json::Value;

/// The label every node has, naming it: the topology of one node.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Amounts pods request and nodes offer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    /// Extended resources (`example.com/gpu`), in whole units.
    pub extended: BTreeMap<String, i64>,
}

impl Resources {
    /// Add `other` (`sign` 1) or take it away (-1).
    pub fn add(&mut self, other: &Resources, sign: i64) {
        self.cpu_millis += sign * other.cpu_millis;
        self.memory_bytes += sign * other.memory_bytes;
        for (name, n) in &other.extended {
            *self.extended.entry(name.clone()).or_default() += sign * n;
        }
        self.extended.retain(|_, n| *n != 0);
    }

    /// Read a `resources.requests` or `status.allocatable` map.
    pub fn of_map(map: Option<&Value>) -> Resources {
        let mut r = Resources::default();
        for (name, v) in map.and_then(Value::as_object).into_iter().flatten() {
            let Some(s) = v
                .as_str()
                .map(str::to_string)
                .or_else(|| v.as_i64().map(|n| n.to_string()))
            else {
                continue;
            };
            match name.as_str() {
                "cpu" => r.cpu_millis = quantity::cpu_millis(&s).unwrap_or(0),
                "memory" => r.memory_bytes = quantity::memory_bytes(&s).unwrap_or(0),
                n if is_extended(n) => {
                    let milli = quantity::parse_milli(&s).unwrap_or(0);
                    let units = i64::try_from((milli + 999) / 1000).unwrap_or(i64::MAX);
                    if units > 0 {
                        r.extended.insert(n.to_string(), units);
                    }
                }
                _ => {}
            }
        }
        r
    }
}

/// Whether a resource name is an extended resource the scheduler counts
/// (everything but the native resources it does not: pods, storage,
/// huge pages).
pub fn is_extended(name: &str) -> bool {
    !matches!(
        name,
        "cpu" | "memory" | "pods" | "ephemeral-storage" | "storage"
    ) && !name.starts_with("hugepages-")
}

/// A pod's requests: its containers summed, its init containers' largest
/// (they run one at a time, before the others), as Kubernetes counts.
pub fn pod_requests(pod: &Value) -> Resources {
    let list = |field: &str| -> Vec<Resources> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| Resources::of_map(c.pointer("/resources/requests")))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut total = Resources::default();
    for r in list("containers") {
        total.add(&r, 1);
    }
    for r in list("initContainers") {
        total.cpu_millis = total.cpu_millis.max(r.cpu_millis);
        total.memory_bytes = total.memory_bytes.max(r.memory_bytes);
        for (name, n) in r.extended {
            let have = total.extended.entry(name).or_default();
            *have = (*have).max(n);
        }
    }
    total
}

/// A port a container takes on its node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i64,
}

impl HostPort {
    /// Whether two pods taking these ports cannot share a node: the same
    /// port and protocol on the same address, or on every address.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let any = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || any(&self.ip) || any(&other.ip))
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ip = if self.ip.is_empty() {
            "0.0.0.0"
        } else {
            &self.ip
        };
        write!(f, "{ip}:{}/{}", self.port, self.protocol)
    }
}

/// The host ports of a pod's containers.
pub fn host_ports(pod: &Value) -> Vec<HostPort> {
    let mut ports = Vec::new();
    for c in pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for p in c
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(port) = p.get("hostPort").and_then(Value::as_i64).filter(|p| *p > 0) else {
                continue;
            };
            ports.push(HostPort {
                protocol: p
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP")
                    .to_string(),
                ip: p
                    .get("hostIP")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                port,
            });
        }
    }
    ports
}

/// Which namespaces a pod affinity term looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Namespaces {
    /// These (the pod's own when the term names none).
    Listed(BTreeSet<String>),
    /// Every namespace (`namespaceSelector: {}`).
    All,
    /// Those listed and those whose labels match.
    Selected(BTreeSet<String>, Selector),
}

/// One pod affinity or anti-affinity term.
#[derive(Debug, Clone, PartialEq)]
pub struct PodTerm {
    /// None: a null selector, which matches no pod.
    pub selector: Option<Selector>,
    pub namespaces: Namespaces,
    pub topology_key: String,
    /// The weight of a preferred term (1 for a required one).
    pub weight: i64,
}

/// What the rules need to know of namespaces: their labels.
pub type NamespaceLabels = HashMap<String, BTreeMap<String, String>>;

impl PodTerm {
    /// A `podAffinityTerm` of a pod in namespace `own`.
    pub fn parse(term: &Value, own: &str, weight: i64) -> PodTerm {
        let listed: BTreeSet<String> = term
            .get("namespaces")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let namespaces = match term.get("namespaceSelector").filter(|v| !v.is_null()) {
            Some(v)
                if v.as_object().is_some_and(|m| {
                    m.values().all(|x| {
                        x.is_null()
                            || x.as_object().is_some_and(|o| o.is_empty())
                            || x.as_array().is_some_and(|a| a.is_empty())
                    })
                }) =>
            {
                Namespaces::All
            }
            Some(v) => match Selector::from_value(Some(v)) {
                Some(sel) => Namespaces::Selected(listed, sel),
                None => Namespaces::Listed(listed),
            },
            None if listed.is_empty() => Namespaces::Listed(BTreeSet::from([own.to_string()])),
            None => Namespaces::Listed(listed),
        };
        PodTerm {
            selector: Selector::from_value(term.get("labelSelector")),
            namespaces,
            topology_key: term
                .get("topologyKey")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            weight,
        }
    }

    /// Whether a pod of `namespace` with `labels` is one the term means.
    pub fn matches(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        ns_labels: &NamespaceLabels,
    ) -> bool {
        let in_scope = match &self.namespaces {
            Namespaces::All => true,
            Namespaces::Listed(l) => l.contains(namespace),
            Namespaces::Selected(l, sel) => {
                l.contains(namespace)
                    || ns_labels
                        .get(namespace)
                        .is_some_and(|labels| sel.matches(labels))
            }
        };
        in_scope && self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }

    /// The term as a person reads it.
    pub fn describe(&self) -> String {
        let sel = match &self.selector {
            Some(s) if s.is_empty() => "every pod".to_string(),
            Some(s) => format!("pods {s}"),
            None => "no pod".to_string(),
        };
        format!("{sel} by {}", self.topology_key)
    }
}

/// The terms of one kind at `path` under `spec.affinity` (required terms
/// as they are, preferred ones with their weight).
fn terms(spec: &Value, kind: &str, own: &str) -> (Vec<PodTerm>, Vec<PodTerm>) {
    let Some(aff) = spec.pointer(&format!("/affinity/{kind}")) else {
        return (Vec::new(), Vec::new());
    };
    let required = aff
        .get("requiredDuringSchedulingIgnoredDuringExecution")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| PodTerm::parse(t, own, 1))
        .collect();
    let preferred = aff
        .get("preferredDuringSchedulingIgnoredDuringExecution")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|w| {
            let weight = w.get("weight").and_then(Value::as_i64).unwrap_or(0);
            Some(PodTerm::parse(w.get("podAffinityTerm")?, own, weight))
        })
        .collect();
    (required, preferred)
}

/// One `topologySpreadConstraint`.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    pub max_skew: i64,
    pub topology_key: String,
    /// `DoNotSchedule` (a filter) or `ScheduleAnyway` (a score).
    pub hard: bool,
    pub selector: Option<Selector>,
    pub min_domains: i64,
}

impl Spread {
    fn parse(c: &Value, own_labels: &BTreeMap<String, String>) -> Spread {
        let mut selector = Selector::from_value(c.get("labelSelector"));
        // matchLabelKeys: the pod's own values of these keys join the selector
        let keys: Vec<&str> = c
            .get("matchLabelKeys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !keys.is_empty() {
            let extra: BTreeMap<String, String> = keys
                .iter()
                .filter_map(|k| Some((k.to_string(), own_labels.get(*k)?.clone())))
                .collect();
            let text = [
                selector
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                Selector::from_match_labels(&extra).to_string(),
            ]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(",");
            selector = Selector::parse(&text).ok().or(selector);
        }
        Spread {
            max_skew: c.get("maxSkew").and_then(Value::as_i64).unwrap_or(1).max(1),
            topology_key: c
                .get("topologyKey")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            hard: c.get("whenUnsatisfiable").and_then(Value::as_str) != Some("ScheduleAnyway"),
            selector,
            min_domains: c
                .get("minDomains")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                .max(1),
        }
    }

    fn counts(&self, namespace: &str, pod_ns: &str, labels: &BTreeMap<String, String>) -> bool {
        namespace == pod_ns && self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }
}

/// What the scheduler keeps of a pod counted on a node.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    /// `namespace/name`.
    pub key: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub node: String,
    pub requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub priority: i32,
    /// Its required anti-affinity terms (other pods must keep away).
    pub anti_affinity: Vec<PodTerm>,
    /// Its namespace and required anti-affinity as written: pods with the
    /// same key keep others away alike (empty: none).
    pub anti_key: String,
    /// The uid of its controller (ReplicaSet, StatefulSet, …).
    pub owner: Option<String>,
    pub terminating: bool,
}

impl PodInfo {
    pub fn of(key: &str, pod: &Value, node: &str) -> PodInfo {
        let namespace = meta::namespace(pod).unwrap_or("default").to_string();
        let spec = pod.get("spec").unwrap_or(&Value::Null);
        PodInfo {
            key: key.to_string(),
            labels: meta::labels(pod),
            node: node.to_string(),
            requests: pod_requests(pod),
            host_ports: host_ports(pod),
            priority: kubus_api::priority::of(pod),
            anti_affinity: terms(spec, "podAntiAffinity", &namespace).0,
            anti_key: spec
                .pointer("/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution")
                .filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
                .map(|v| format!("{namespace}\n{v}"))
                .unwrap_or_default(),
            owner: controller_uid(pod),
            terminating: kubus_api::pod::is_terminating(pod),
            namespace,
        }
    }
}

/// The uid of an object's controller owner.
pub fn controller_uid(obj: &Value) -> Option<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|o| o.get("uid")?.as_str())
        .map(str::to_string)
}

/// The pod being placed, read once per attempt.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub key: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub spec: &'a Value,
    pub requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub tolerations: &'a [Value],
    /// `nodeSelector` or required node affinity is set.
    pub node_constrained: bool,
    /// `nodeSelector`, read once (not per node).
    pub node_selector: Vec<(&'a str, &'a str)>,
    /// Required node affinity's `nodeSelectorTerms`, read once.
    pub required_node_terms: Option<&'a [Value]>,
    /// Preferred node affinity terms with their weights.
    pub preferred_nodes: Vec<(i64, &'a Value)>,
    pub affinity: Vec<PodTerm>,
    pub anti_affinity: Vec<PodTerm>,
    pub preferred_affinity: Vec<PodTerm>,
    pub preferred_anti_affinity: Vec<PodTerm>,
    pub spread: Vec<Spread>,
    pub priority: i32,
    pub preempts: bool,
    pub owner: Option<String>,
    /// `status.nominatedNodeName`: where it waits for victims to leave.
    pub nominated: Option<&'a str>,
}

impl<'a> Candidate<'a> {
    pub fn of(key: &str, pod: &'a Value) -> Candidate<'a> {
        let namespace = meta::namespace(pod).unwrap_or("default").to_string();
        let spec = pod.get("spec").unwrap_or(&Value::Null);
        let labels = meta::labels(pod);
        let (affinity, preferred_affinity) = terms(spec, "podAffinity", &namespace);
        let (anti_affinity, preferred_anti_affinity) = terms(spec, "podAntiAffinity", &namespace);
        let node_constrained = spec
            .get("nodeSelector")
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
            || spec
                .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution")
                .is_some_and(|v| !v.is_null());
        let preferred_nodes = spec
            .pointer("/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p.get("weight")?.as_i64()?, p.get("preference")?)))
            .collect();
        let spread = spec
            .get("topologySpreadConstraints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| Spread::parse(c, &labels))
            .collect();
        let node_selector = spec
            .get("nodeSelector")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
            .collect();
        let required_node_terms = spec
            .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
            .and_then(Value::as_array)
            .map(Vec::as_slice);
        Candidate {
            node_selector,
            required_node_terms,
            key: key.to_string(),
            requests: pod_requests(pod),
            host_ports: host_ports(pod),
            tolerations: placement::tolerations(spec),
            node_constrained,
            preferred_nodes,
            affinity,
            anti_affinity,
            preferred_affinity,
            preferred_anti_affinity,
            spread,
            priority: kubus_api::priority::of(pod),
            preempts: kubus_api::priority::preempts(pod),
            owner: controller_uid(pod),
            nominated: pod
                .pointer("/status/nominatedNodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty()),
            spec,
            labels,
            namespace,
        }
    }

    /// Whether `nodeSelector` and required node affinity hold on `node`
    /// (as [`placement::selected`], without reading the spec per node).
    pub fn selects(&self, node: &NodeInfo) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| node.labels.get(*k).map(String::as_str) == Some(*v))
            && self.required_node_terms.is_none_or(|terms| {
                terms
                    .iter()
                    .any(|t| placement::term_matches_on(t, &node.labels, &node.name))
            })
    }

    /// Whether the pod has rules that look at other pods.
    pub fn looks_at_pods(&self) -> bool {
        !(self.affinity.is_empty()
            && self.anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty()
            && self.spread.is_empty())
    }
}

/// What scoring counts a pod without a cpu request as using.
pub const SCORE_DEFAULT_CPU_MILLIS: i64 = 100;
/// What scoring counts a pod without a memory request as using.
pub const SCORE_DEFAULT_MEMORY_BYTES: i64 = 200 << 20;

/// A pod's cpu and memory as scoring counts them.
pub fn scored(r: &Resources) -> (i64, i64) {
    let or = |v: i64, d: i64| if v > 0 { v } else { d };
    (
        or(r.cpu_millis, SCORE_DEFAULT_CPU_MILLIS),
        or(r.memory_bytes, SCORE_DEFAULT_MEMORY_BYTES),
    )
}

/// What the scheduler knows of one node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Its `spec.taints` (most nodes have none).
    pub taints: Vec<Value>,
    pub ready: bool,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub pods_max: i64,
    /// What its counted pods request.
    pub requested: Resources,
    /// Cpu and memory its pods request for scoring, a pod without requests
    /// counted at [`SCORE_DEFAULT_CPU_MILLIS`] and
    /// [`SCORE_DEFAULT_MEMORY_BYTES`], as Kubernetes does, so that such pods
    /// spread too.
    pub scored_cpu_millis: i64,
    pub scored_memory_bytes: i64,
    /// Its counted pods.
    pub pods: Vec<Arc<PodInfo>>,
    /// Pending pods nominated to it by preemption: what they will need.
    pub nominated: Vec<Arc<PodInfo>>,
}

impl NodeInfo {
    /// What the scheduler knows of a node, from its object (no pods yet).
    pub fn of(node: &Value) -> NodeInfo {
        let ready = node
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
        let allocatable = node.pointer("/status/allocatable");
        NodeInfo {
            name: meta::name(node).unwrap_or_default().to_string(),
            labels: meta::labels(node),
            taints: node
                .pointer("/spec/taints")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            ready,
            unschedulable: node.pointer("/spec/unschedulable").and_then(Value::as_bool)
                == Some(true),
            allocatable: Resources::of_map(allocatable),
            pods_max: allocatable
                .and_then(|a| a.get("pods"))
                .and_then(Value::as_str)
                .and_then(|s| quantity::parse_milli(s).ok())
                .map_or(0, |m| i64::try_from(m / 1000).unwrap_or(i64::MAX)),
            ..NodeInfo::default()
        }
    }

    /// Count `pod` here (`sign` 1) or no longer (-1).
    pub fn count(&mut self, pod: &Arc<PodInfo>, sign: i64) {
        self.requested.add(&pod.requests, sign);
        let (cpu, memory) = scored(&pod.requests);
        self.scored_cpu_millis += sign * cpu;
        self.scored_memory_bytes += sign * memory;
        if sign > 0 {
            self.pods.push(pod.clone());
        } else {
            self.pods.retain(|p| p.key != pod.key);
        }
    }

    /// The node's value of a topology key.
    pub fn topology(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// Why a pod does not fit a node, as each rule finds.
#[derive(Debug, Clone, PartialEq)]
pub enum Misfit {
    NotReady,
    Unschedulable,
    Taint(Value),
    NodeAffinity,
    Ports(HostPort),
    Insufficient {
        resource: String,
        requested: i64,
        used: i64,
        allocatable: i64,
    },
    TooManyPods(i64),
    /// The pod's volumes can be used only from other nodes.
    Volume,
    /// Constraint `i`'s topology key is not a label of the node.
    SpreadLabel(usize),
    /// Constraint `i` would be skewed past its `maxSkew`.
    Spread {
        constraint: usize,
        skew: i64,
    },
    /// A placed pod's anti-affinity keeps this pod away.
    ExistingAntiAffinity,
    /// The pod's anti-affinity term `i` matches pods in the node's domain.
    AntiAffinity(usize),
    /// The pod's affinity term `i` matches no pod in the node's domain.
    Affinity(usize),
}

impl Misfit {
    /// The reason as a `FailedScheduling` Event counts it (Kubernetes'
    /// words).
    pub fn reason(&self) -> Cow<'static, str> {
        match self {
            Misfit::NotReady => "node(s) were not ready".into(),
            Misfit::Unschedulable => "node(s) were unschedulable".into(),
            Misfit::Taint(t) => {
                let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("");
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    s("key"),
                    s("value")
                )
                .into()
            }
            Misfit::NodeAffinity => "node(s) didn't match Pod's node affinity/selector".into(),
            Misfit::Ports(_) => "node(s) didn't have free ports for the requested pod ports".into(),
            Misfit::Insufficient { resource, .. } => format!("Insufficient {resource}").into(),
            Misfit::TooManyPods(_) => "Too many pods".into(),
            Misfit::Volume => "node(s) had volume node affinity conflict".into(),
            Misfit::SpreadLabel(_) => {
                "node(s) didn't match pod topology spread constraints (missing required label)"
                    .into()
            }
            Misfit::Spread { .. } => "node(s) didn't match pod topology spread constraints".into(),
            Misfit::ExistingAntiAffinity => {
                "node(s) didn't satisfy existing pods anti-affinity rules".into()
            }
            Misfit::AntiAffinity(_) => "node(s) didn't match pod anti-affinity rules".into(),
            Misfit::Affinity(_) => "node(s) didn't match pod affinity rules".into(),
        }
    }

    /// Whether removing pods from the node could make the pod fit (so
    /// preemption may help), as Kubernetes' `Unschedulable` against
    /// `UnschedulableAndUnresolvable`.
    pub fn resolvable(&self) -> bool {
        matches!(
            self,
            Misfit::Ports(_)
                | Misfit::Insufficient { .. }
                | Misfit::TooManyPods(_)
                | Misfit::Spread { .. }
                | Misfit::ExistingAntiAffinity
                | Misfit::AntiAffinity(_)
        )
    }

    /// The rule's name, as kube-scheduler names its plugin.
    pub fn rule(&self) -> &'static str {
        match self {
            Misfit::NotReady => "NodeReady",
            Misfit::Unschedulable => "NodeUnschedulable",
            Misfit::Taint(_) => "TaintToleration",
            Misfit::NodeAffinity => "NodeAffinity",
            Misfit::Ports(_) => "NodePorts",
            Misfit::Insufficient { .. } | Misfit::TooManyPods(_) => "NodeResourcesFit",
            Misfit::Volume => "VolumeBinding",
            Misfit::SpreadLabel(_) | Misfit::Spread { .. } => "PodTopologySpread",
            Misfit::ExistingAntiAffinity | Misfit::AntiAffinity(_) | Misfit::Affinity(_) => {
                "InterPodAffinity"
            }
        }
    }
}

/// Counts over the cluster's pods that the rules about other pods need,
/// made once per attempt for one candidate (see
/// [`crate::scheduler::ledger::Ledger::prepare`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prepared {
    /// Topology key → value → how many placed pods' required
    /// anti-affinity keep the candidate out of that domain.
    pub existing_anti: HashMap<String, HashMap<String, u32>>,
    /// Per required affinity term: matching pods per domain value.
    pub affinity: Vec<HashMap<String, u32>>,
    /// Whether any pod matches any required affinity term (if none does,
    /// a pod matching its own terms may start the group anywhere).
    pub affinity_found: bool,
    /// Per required anti-affinity term: matching pods per domain value.
    pub anti_affinity: Vec<HashMap<String, u32>>,
    /// Per preferred term (affinity, then anti-affinity): matching pods per
    /// domain value.
    pub preferred: Vec<HashMap<String, u32>>,
    /// Per spread constraint: matching pods per domain value, over the
    /// domains of eligible nodes (every such domain present, maybe at 0).
    pub spread: Vec<HashMap<String, u32>>,
    /// Pods of the candidate's controller per node (default spreading).
    pub siblings: HashMap<String, u32>,
}

/// Pods alike for the rules about other pods: same namespace, labels and
/// whether they are terminating (a Deployment's replicas are one group).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub terminating: bool,
}

/// Which of a candidate's terms a [`Group`] matches, term by term.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMatch {
    pub affinity: Vec<bool>,
    pub anti_affinity: Vec<bool>,
    pub preferred: Vec<bool>,
    pub spread: Vec<bool>,
}

/// Which of the candidate's terms a group of pods matches (None: none).
pub fn matches_of(cand: &Candidate, g: &Group, ns_labels: &NamespaceLabels) -> Option<GroupMatch> {
    let m = GroupMatch {
        affinity: cand
            .affinity
            .iter()
            .map(|t| t.matches(&g.namespace, &g.labels, ns_labels))
            .collect(),
        anti_affinity: cand
            .anti_affinity
            .iter()
            .map(|t| t.matches(&g.namespace, &g.labels, ns_labels))
            .collect(),
        preferred: cand
            .preferred_affinity
            .iter()
            .chain(&cand.preferred_anti_affinity)
            .map(|t| t.matches(&g.namespace, &g.labels, ns_labels))
            .collect(),
        spread: cand
            .spread
            .iter()
            .map(|c| !g.terminating && c.counts(&g.namespace, &cand.namespace, &g.labels))
            .collect(),
    };
    let any = |v: &[bool]| v.iter().any(|b| *b);
    (any(&m.affinity) || any(&m.anti_affinity) || any(&m.preferred) || any(&m.spread)).then_some(m)
}

fn bump(m: &mut HashMap<String, u32>, v: &str, sign: i32) {
    let n = m.entry(v.to_string()).or_default();
    *n = n.saturating_add_signed(sign);
}

impl Prepared {
    /// Empty counts shaped for `cand`'s terms.
    pub fn for_candidate(cand: &Candidate) -> Prepared {
        Prepared {
            affinity: vec![HashMap::new(); cand.affinity.len()],
            anti_affinity: vec![HashMap::new(); cand.anti_affinity.len()],
            preferred: vec![
                HashMap::new();
                cand.preferred_affinity.len() + cand.preferred_anti_affinity.len()
            ],
            spread: vec![HashMap::new(); cand.spread.len()],
            ..Prepared::default()
        }
    }

    /// A node's domains join the spread counts (at 0) if it is eligible.
    pub fn add_domains(&mut self, cand: &Candidate, node: &NodeInfo) {
        if !cand.spread.is_empty() && spread_eligible(cand, node) {
            for (i, c) in cand.spread.iter().enumerate() {
                if let Some(v) = node.topology(&c.topology_key) {
                    self.spread[i].entry(v.to_string()).or_default();
                }
            }
        }
    }

    /// Count `pod` on `node` in (`sign` 1) or out (-1) of the domains its
    /// required anti-affinity keeps the candidate out of.
    pub fn count_existing_anti(
        &mut self,
        cand: &Candidate,
        node: &NodeInfo,
        pod: &PodInfo,
        sign: i32,
        ns_labels: &NamespaceLabels,
    ) {
        let terms: Vec<&PodTerm> = pod
            .anti_affinity
            .iter()
            .filter(|t| t.matches(&cand.namespace, &cand.labels, ns_labels))
            .collect();
        self.count_anti_terms(&terms, node, sign);
    }

    /// Count `n` pods on `node` whose required anti-affinity `terms`
    /// (those that match the candidate) keep it out of their domains.
    pub fn count_anti_terms(&mut self, terms: &[&PodTerm], node: &NodeInfo, n: i32) {
        for t in terms {
            if let Some(v) = node.topology(&t.topology_key) {
                let values = self
                    .existing_anti
                    .entry(t.topology_key.clone())
                    .or_default();
                bump(values, v, n);
            }
        }
    }

    /// Count `pod` on `node` in (`sign` 1) or out (-1) for the candidate's
    /// own affinity, anti-affinity and spread terms.
    pub fn count_for_terms(
        &mut self,
        cand: &Candidate,
        node: &NodeInfo,
        pod: &PodInfo,
        sign: i32,
        ns_labels: &NamespaceLabels,
    ) {
        let group = Group {
            namespace: pod.namespace.clone(),
            labels: pod.labels.clone(),
            terminating: pod.terminating,
        };
        if let Some(m) = matches_of(cand, &group, ns_labels) {
            self.count_group(cand, &m, node, sign);
        }
    }

    /// Count `n` pods of a group that `m` says match, on `node`.
    pub fn count_group(&mut self, cand: &Candidate, m: &GroupMatch, node: &NodeInfo, n: i32) {
        for (i, t) in cand.affinity.iter().enumerate() {
            if m.affinity[i] {
                self.affinity_found = true;
                if let Some(v) = node.topology(&t.topology_key) {
                    bump(&mut self.affinity[i], v, n);
                }
            }
        }
        for (i, t) in cand.anti_affinity.iter().enumerate() {
            if m.anti_affinity[i] {
                if let Some(v) = node.topology(&t.topology_key) {
                    bump(&mut self.anti_affinity[i], v, n);
                }
            }
        }
        let preferred = cand
            .preferred_affinity
            .iter()
            .chain(&cand.preferred_anti_affinity);
        for (i, t) in preferred.enumerate() {
            if m.preferred[i] {
                if let Some(v) = node.topology(&t.topology_key) {
                    bump(&mut self.preferred[i], v, n);
                }
            }
        }
        if m.spread.iter().any(|b| *b) && spread_eligible(cand, node) {
            for (i, c) in cand.spread.iter().enumerate() {
                if m.spread[i] {
                    if let Some(v) = node.topology(&c.topology_key) {
                        bump(&mut self.spread[i], v, n);
                    }
                }
            }
        }
    }

    /// The smallest count among constraint `i`'s domains (0 when there are
    /// fewer domains than its `minDomains`).
    pub fn spread_min(&self, cand: &Candidate, i: usize) -> i64 {
        let counts = &self.spread[i];
        if (counts.len() as i64) < cand.spread[i].min_domains {
            return 0;
        }
        counts.values().min().map_or(0, |m| i64::from(*m))
    }
}

/// Whether a node counts for the pod's spread constraints: it passes the
/// pod's node selector and required affinity and has every constraint's key.
pub fn spread_eligible(cand: &Candidate, node: &NodeInfo) -> bool {
    cand.spread
        .iter()
        .all(|c| node.labels.contains_key(&c.topology_key))
        && (!cand.node_constrained || cand.selects(node))
}

// ---- the filters, in kube-scheduler's order ----

pub fn node_ready(_: &Candidate, node: &NodeInfo) -> Result<(), Misfit> {
    if node.ready {
        Ok(())
    } else {
        Err(Misfit::NotReady)
    }
}

/// A cordoned node takes only pods that tolerate its unschedulable taint.
pub fn node_unschedulable(cand: &Candidate, node: &NodeInfo) -> Result<(), Misfit> {
    let taint = serde_json::json!({"key": placement::TAINT_UNSCHEDULABLE, "effect": "NoSchedule"});
    if !node.unschedulable
        || cand
            .tolerations
            .iter()
            .any(|t| placement::tolerates(t, &taint))
    {
        Ok(())
    } else {
        Err(Misfit::Unschedulable)
    }
}

pub fn taints(cand: &Candidate, node: &NodeInfo) -> Result<(), Misfit> {
    if node.taints.is_empty() {
        return Ok(());
    }
    // a cordoned node's own taint is the NodeUnschedulable rule's to judge
    let cordon = |t: &Value| {
        node.unschedulable
            && t.get("key").and_then(Value::as_str) == Some(placement::TAINT_UNSCHEDULABLE)
    };
    let effects = ["NoSchedule", "NoExecute"];
    let untolerated = node
        .taints
        .iter()
        .filter(|t| !cordon(t))
        .filter(|t| effects.contains(&t.get("effect").and_then(Value::as_str).unwrap_or("")))
        .find(|t| {
            !cand
                .tolerations
                .iter()
                .any(|tol| placement::tolerates(tol, t))
        });
    match untolerated {
        Some(t) => Err(Misfit::Taint(t.clone())),
        None => Ok(()),
    }
}

pub fn node_affinity(cand: &Candidate, node: &NodeInfo) -> Result<(), Misfit> {
    if !cand.node_constrained || cand.selects(node) {
        Ok(())
    } else {
        Err(Misfit::NodeAffinity)
    }
}

pub fn ports(cand: &Candidate, node: &NodeInfo) -> Result<(), Misfit> {
    for want in &cand.host_ports {
        let taken = node
            .pods
            .iter()
            .filter(|p| p.key != cand.key)
            .flat_map(|p| &p.host_ports)
            .any(|have| have.conflicts(want));
        if taken {
            return Err(Misfit::Ports(want.clone()));
        }
    }
    Ok(())
}

/// Requests against what is left, counting pods nominated to the node
/// with at least the candidate's priority as already there.
pub fn resources(cand: &Candidate, node: &NodeInfo) -> Result<(), Misfit> {
    let mut used = node.requested.clone();
    let mut pods = node.pods.len() as i64;
    for p in &node.nominated {
        if p.key != cand.key && p.priority >= cand.priority {
            used.add(&p.requests, 1);
            pods += 1;
        }
    }
    if pods >= node.pods_max {
        return Err(Misfit::TooManyPods(node.pods_max));
    }
    let want = &cand.requests;
    let short = |resource: &str, requested: i64, used: i64, allocatable: i64| {
        (requested > 0 && used + requested > allocatable).then(|| Misfit::Insufficient {
            resource: resource.to_string(),
            requested,
            used,
            allocatable,
        })
    };
    if let Some(m) = short(
        "cpu",
        want.cpu_millis,
        used.cpu_millis,
        node.allocatable.cpu_millis,
    ) {
        return Err(m);
    }
    if let Some(m) = short(
        "memory",
        want.memory_bytes,
        used.memory_bytes,
        node.allocatable.memory_bytes,
    ) {
        return Err(m);
    }
    for (name, n) in &want.extended {
        let have = node.allocatable.extended.get(name).copied().unwrap_or(0);
        let taken = used.extended.get(name).copied().unwrap_or(0);
        if let Some(m) = short(name, *n, taken, have) {
            return Err(m);
        }
    }
    Ok(())
}

pub fn volumes(allowed: Option<&BTreeSet<String>>, node: &NodeInfo) -> Result<(), Misfit> {
    match allowed {
        Some(a) if !a.contains(&node.name) => Err(Misfit::Volume),
        _ => Ok(()),
    }
}

/// `DoNotSchedule` constraints: placing the pod here keeps the skew (this
/// domain's count with the pod, less the smallest domain's) within
/// `maxSkew`.
pub fn spread(cand: &Candidate, prep: &Prepared, node: &NodeInfo) -> Result<(), Misfit> {
    for (i, c) in cand.spread.iter().enumerate().filter(|(_, c)| c.hard) {
        let Some(value) = node.topology(&c.topology_key) else {
            return Err(Misfit::SpreadLabel(i));
        };
        let here = i64::from(prep.spread[i].get(value).copied().unwrap_or(0));
        let own = i64::from(c.counts(&cand.namespace, &cand.namespace, &cand.labels));
        let skew = here + own - prep.spread_min(cand, i);
        if skew > c.max_skew {
            return Err(Misfit::Spread {
                constraint: i,
                skew,
            });
        }
    }
    Ok(())
}

pub fn inter_pod_affinity(
    cand: &Candidate,
    prep: &Prepared,
    node: &NodeInfo,
    ns_labels: &NamespaceLabels,
) -> Result<(), Misfit> {
    if !cand.affinity.is_empty() {
        // the first pod of a group that matches its own terms may go anywhere
        // the terms' keys exist
        let alone = !prep.affinity_found
            && cand
                .affinity
                .iter()
                .all(|t| t.matches(&cand.namespace, &cand.labels, ns_labels));
        for (i, t) in cand.affinity.iter().enumerate() {
            let ok = match node.topology(&t.topology_key) {
                None => false,
                Some(_) if alone => true,
                Some(v) => prep.affinity[i].get(v).is_some_and(|n| *n > 0),
            };
            if !ok {
                return Err(Misfit::Affinity(i));
            }
        }
    }
    for (i, t) in cand.anti_affinity.iter().enumerate() {
        if let Some(v) = node.topology(&t.topology_key) {
            if prep.anti_affinity[i].get(v).is_some_and(|n| *n > 0) {
                return Err(Misfit::AntiAffinity(i));
            }
        }
    }
    let kept_out = prep.existing_anti.iter().any(|(key, values)| {
        node.topology(key)
            .and_then(|v| values.get(v))
            .is_some_and(|n| *n > 0)
    });
    if kept_out {
        return Err(Misfit::ExistingAntiAffinity);
    }
    Ok(())
}

/// Every filter, in order; the first that fails.
pub fn filter(
    cand: &Candidate,
    prep: &Prepared,
    node: &NodeInfo,
    allowed: Option<&BTreeSet<String>>,
    ns_labels: &NamespaceLabels,
) -> Result<(), Misfit> {
    node_ready(cand, node)?;
    node_unschedulable(cand, node)?;
    taints(cand, node)?;
    node_affinity(cand, node)?;
    ports(cand, node)?;
    resources(cand, node)?;
    volumes(allowed, node)?;
    spread(cand, prep, node)?;
    inter_pod_affinity(cand, prep, node, ns_labels)
}

/// Every filter's verdict on a node (for explaining; the scheduler stops at
/// the first that fails).
pub fn verdicts(
    cand: &Candidate,
    prep: &Prepared,
    node: &NodeInfo,
    allowed: Option<&BTreeSet<String>>,
    ns_labels: &NamespaceLabels,
) -> Vec<(&'static str, Result<(), Misfit>)> {
    vec![
        ("NodeReady", node_ready(cand, node)),
        ("NodeUnschedulable", node_unschedulable(cand, node)),
        ("TaintToleration", taints(cand, node)),
        ("NodeAffinity", node_affinity(cand, node)),
        ("NodePorts", ports(cand, node)),
        ("NodeResourcesFit", resources(cand, node)),
        ("VolumeBinding", volumes(allowed, node)),
        ("PodTopologySpread", spread(cand, prep, node)),
        (
            "InterPodAffinity",
            inter_pod_affinity(cand, prep, node, ns_labels),
        ),
    ]
}
