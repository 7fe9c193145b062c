//! "Why is my pod pending": every node with every rule's verdict on a pod,
//! and what would make it fit there — computed by the scheduler's own
//! rules ([`super::rules`], [`super::score`], [`super::preemption`]) over a
//! ledger built from the cluster's nodes and pods. `kubus explain pod` and
//! `kubus describe pod` print it.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;

use super::ledger::{FitError, Ledger};
use super::preemption::{self, Budget, Verdict};
use super::rules::{self, Candidate, Misfit, NodeInfo, Prepared};
use super::score;

/// One rule that a node fails, said plainly.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rule: &'static str,
    pub why: String,
    /// What would make the pod fit, as far as this rule goes.
    pub to_fit: String,
}

/// The verdict on one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeVerdict {
    pub node: String,
    /// Empty: the pod fits.
    pub findings: Vec<Finding>,
    /// The node's score when the pod fits.
    pub score: Option<i64>,
    /// The node the scheduler would choose.
    pub chosen: bool,
}

/// The whole explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// What the scheduler says: "0/3 nodes are available: …", or where it
    /// would place the pod.
    pub summary: String,
    /// What preemption would do, when no node fits.
    pub preemption: Option<String>,
    pub nodes: Vec<NodeVerdict>,
}

/// Explain where `pod` fits among the ledger's nodes and why not elsewhere.
pub fn explain(
    ledger: &Ledger,
    key: &str,
    pod: &Value,
    allowed: Option<&BTreeSet<String>>,
    budgets: &[Budget],
) -> Explanation {
    let cand = Candidate::of(key, pod);
    let prep = ledger.prepare(&cand);
    let mut nodes: Vec<NodeVerdict> = Vec::new();
    let mut feasible: Vec<&NodeInfo> = Vec::new();
    let mut misfits = Vec::new();
    for (i, node) in ledger.nodes().iter().enumerate() {
        let verdicts = rules::verdicts(&cand, &prep, node, allowed, &ledger.namespaces);
        let failed: Vec<Misfit> = verdicts.into_iter().filter_map(|(_, v)| v.err()).collect();
        if let Some(first) = failed.first() {
            misfits.push((i, first.clone()));
        } else {
            feasible.push(node);
        }
        nodes.push(NodeVerdict {
            node: node.name.clone(),
            findings: failed
                .iter()
                .map(|m| finding(ledger, &cand, &prep, node, m, allowed))
                .collect(),
            score: None,
            chosen: false,
        });
    }
    let total = ledger.nodes().len();
    let (summary, preemption) = if feasible.is_empty() {
        let fit = FitError { total, misfits };
        let preemption = match preemption::preempt(ledger, &cand, &prep, &fit, allowed, budgets) {
            Verdict::Preempt(p) => {
                let victims: Vec<&str> = p.victims.iter().map(|v| v.key.as_str()).collect();
                format!(
                    "would remove {} of lower priority from node {} ({})",
                    victims.len(),
                    p.node,
                    victims.join(", ")
                )
            }
            Verdict::Waiting(why) => why,
            Verdict::NotHelpful(why) => why,
        };
        (fit.message(), Some(preemption))
    } else {
        let scores = score::scores(&cand, &prep, &feasible);
        let best = scores
            .iter()
            .enumerate()
            .max_by_key(|(i, s)| (**s, std::cmp::Reverse(*i)))
            .map(|(i, _)| feasible[i].name.clone());
        for (node, s) in feasible.iter().zip(&scores) {
            if let Some(v) = nodes.iter_mut().find(|v| v.node == node.name) {
                v.score = Some(*s);
                v.chosen = best.as_deref() == Some(node.name.as_str());
            }
        }
        let summary = format!(
            "{}/{total} nodes fit; the best scored is {}",
            feasible.len(),
            best.unwrap_or_default()
        );
        (summary, None)
    };
    Explanation {
        summary,
        preemption,
        nodes,
    }
}

/// A cpu amount in Kubernetes' notation.
pub fn cpu(millis: i64) -> String {
    if millis % 1000 == 0 {
        format!("{}", millis / 1000)
    } else {
        format!("{millis}m")
    }
}

/// A memory amount in binary units.
pub fn memory(bytes: i64) -> String {
    let units = [
        ("Pi", 1i64 << 50),
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (unit, size) in units {
        if bytes.abs() >= size {
            return if bytes % size == 0 {
                format!("{}{unit}", bytes / size)
            } else {
                format!("{:.1}{unit}", bytes as f64 / size as f64)
            };
        }
    }
    bytes.to_string()
}

fn amount(resource: &str, n: i64) -> String {
    match resource {
        "cpu" => cpu(n),
        "memory" => memory(n),
        _ => n.to_string(),
    }
}

fn taint_text(t: &Value) -> (String, String, String) {
    let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    (s("key"), s("value"), s("effect"))
}

/// The pods in `node`'s domain of `key` that `matches`.
fn pods_in_domain(
    ledger: &Ledger,
    node: &NodeInfo,
    key: &str,
    matches: &dyn Fn(&rules::PodInfo) -> bool,
) -> Vec<String> {
    let Some(value) = node.topology(key) else {
        return Vec::new();
    };
    ledger
        .nodes()
        .iter()
        .filter(|n| n.topology(key) == Some(value))
        .flat_map(|n| n.pods.iter())
        .filter(|p| matches(p))
        .map(|p| p.key.clone())
        .take(EXAMPLES_MAX)
        .collect()
}

/// Most pods one finding names.
const EXAMPLES_MAX: usize = 5;

fn finding(
    ledger: &Ledger,
    cand: &Candidate,
    prep: &Prepared,
    node: &NodeInfo,
    misfit: &Misfit,
    allowed: Option<&BTreeSet<String>>,
) -> Finding {
    let name = &node.name;
    let ns = &ledger.namespaces;
    let (why, to_fit) = match misfit {
        Misfit::NotReady => (
            "the node is not Ready".to_string(),
            format!("the node reports Ready again (see kubus describe node {name})"),
        ),
        Misfit::Unschedulable => (
            "the node is cordoned (spec.unschedulable)".to_string(),
            format!("kubus uncordon {name}"),
        ),
        Misfit::Taint(t) => {
            let (k, v, e) = taint_text(t);
            let (taint, toleration) = if v.is_empty() {
                (
                    format!("{k}:{e}"),
                    format!("{{key: {k}, operator: Exists, effect: {e}}}"),
                )
            } else {
                (
                    format!("{k}={v}:{e}"),
                    format!("{{key: {k}, operator: Equal, value: {v}, effect: {e}}}"),
                )
            };
            (
                format!("taint {taint} is not tolerated"),
                format!(
                    "a toleration {toleration}, or removing the taint \
                     (kubus taint nodes {name} {k}:{e}-)"
                ),
            )
        }
        Misfit::NodeAffinity => {
            let mut missing = Vec::new();
            for (k, v) in cand
                .spec
                .get("nodeSelector")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let want = v.as_str().unwrap_or("");
                if node.labels.get(k).map(String::as_str) != Some(want) {
                    let have = node
                        .labels
                        .get(k)
                        .map_or("no such label".to_string(), |h| format!("{k}={h}"));
                    missing.push(format!("nodeSelector {k}={want} (the node has {have})"));
                }
            }
            if missing.is_empty() {
                missing.push("no term of the required node affinity matches its labels".into());
            }
            (
                missing.join("; "),
                format!(
                    "labels on the node that match (kubus label node {name} KEY=VALUE), \
                     or a pod selector that matches the node"
                ),
            )
        }
        Misfit::Ports(port) => {
            let holders: Vec<String> = node
                .pods
                .iter()
                .filter(|p| p.host_ports.iter().any(|h| h.conflicts(port)))
                .map(|p| p.key.clone())
                .collect();
            (
                format!("host port {port} is taken by {}", holders.join(", ")),
                "another hostPort, or those pods elsewhere".to_string(),
            )
        }
        Misfit::Insufficient {
            resource,
            requested,
            used,
            allocatable,
        } => {
            let free = (allocatable - used).max(0);
            let short = requested - free;
            (
                format!(
                    "{resource}: the pod requests {}, {} of {} allocatable is free",
                    amount(resource, *requested),
                    amount(resource, free),
                    amount(resource, *allocatable)
                ),
                format!(
                    "{} more {resource} free on this node, or a smaller request",
                    amount(resource, short)
                ),
            )
        }
        Misfit::TooManyPods(max) => (
            format!("the node runs its maximum of {max} pods"),
            "fewer pods on this node".to_string(),
        ),
        Misfit::Volume => (
            format!(
                "its volumes can be used only from {}",
                allowed
                    .map(|a| a.iter().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()
            ),
            "a volume this node can use".to_string(),
        ),
        Misfit::SpreadLabel(i) => {
            let key = &cand.spread[*i].topology_key;
            (
                format!(
                    "topology spread constraint {}: the node has no label {key}",
                    i + 1
                ),
                format!("kubus label node {name} {key}=VALUE"),
            )
        }
        Misfit::Spread { constraint, skew } => {
            let c = &cand.spread[*constraint];
            let value = node.topology(&c.topology_key).unwrap_or("");
            (
                format!(
                    "topology spread constraint {}: placing it in {}={value} makes a skew of \
                     {skew} (maxSkew {}; the least crowded domain has {})",
                    constraint + 1,
                    c.topology_key,
                    c.max_skew,
                    prep.spread_min(cand, *constraint)
                ),
                "more pods in the other domains first, a larger maxSkew, or \
                 whenUnsatisfiable: ScheduleAnyway"
                    .to_string(),
            )
        }
        Misfit::ExistingAntiAffinity => {
            let blockers: Vec<String> = ledger
                .nodes()
                .iter()
                .flat_map(|n| n.pods.iter().map(move |p| (n, p)))
                .filter(|(n, p)| {
                    p.anti_affinity.iter().any(|t| {
                        t.matches(&cand.namespace, &cand.labels, ns)
                            && n.topology(&t.topology_key).is_some()
                            && n.topology(&t.topology_key) == node.topology(&t.topology_key)
                    })
                })
                .map(|(_, p)| p.key.clone())
                .take(EXAMPLES_MAX)
                .collect();
            (
                format!(
                    "the anti-affinity of {} keeps this pod away",
                    blockers.join(", ")
                ),
                "those pods elsewhere, or labels on this pod that their terms do not match"
                    .to_string(),
            )
        }
        Misfit::AntiAffinity(i) => {
            let t = &cand.anti_affinity[*i];
            let here = pods_in_domain(ledger, node, &t.topology_key, &|p| {
                p.key != cand.key && t.matches(&p.namespace, &p.labels, ns)
            });
            (
                format!(
                    "required anti-affinity ({}) matches {} in {}={}",
                    t.describe(),
                    here.join(", "),
                    t.topology_key,
                    node.topology(&t.topology_key).unwrap_or("")
                ),
                "those pods out of this domain, another node in a new domain, or the term \
                 as preferredDuringScheduling"
                    .to_string(),
            )
        }
        Misfit::Affinity(i) => {
            let t = &cand.affinity[*i];
            let why = match node.topology(&t.topology_key) {
                None => format!(
                    "required affinity ({}): the node has no label {}",
                    t.describe(),
                    t.topology_key
                ),
                Some(v) => format!(
                    "required affinity ({}): no matching pod in {}={v}",
                    t.describe(),
                    t.topology_key
                ),
            };
            (why, "a matching pod in this node's domain".to_string())
        }
    };
    Finding {
        rule: misfit.rule(),
        why,
        to_fit,
    }
}

/// The explanation as `kubus explain pod` prints it.
pub fn render(pod: &str, e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Pod {pod}: {}", e.summary);
    if let Some(p) = &e.preemption {
        let _ = writeln!(out, "Preemption: {p}");
    }
    for v in &e.nodes {
        let _ = writeln!(out);
        match v.score {
            Some(s) if v.chosen => {
                let _ = writeln!(out, "{}: fits (score {s}), the scheduler's choice", v.node);
            }
            Some(s) => {
                let _ = writeln!(out, "{}: fits (score {s})", v.node);
            }
            None => {
                let _ = writeln!(out, "{}: does not fit", v.node);
            }
        }
        for f in &v.findings {
            let _ = writeln!(out, "  {}: {}", f.rule, f.why);
            let _ = writeln!(out, "    to fit: {}", f.to_fit);
        }
    }
    out
}
