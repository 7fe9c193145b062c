//! Scores of the nodes a pod fits, as kube-scheduler's score plugins and
//! their default weights: least allocated (1) and balanced allocation (1)
//! of cpu and memory, preferred node affinity (2), PreferNoSchedule taints
//! (3), preferred inter-pod affinity and anti-affinity (2), and spreading
//! (2: `ScheduleAnyway` constraints, or, for a pod without constraints, its
//! controller's other pods, as Kubernetes' default constraints do). Each
//! plugin's scores are normalized to 0–100 over the nodes scored, then
//! weighed and summed; the highest sum wins.

use kubus_api::placement;

use super::rules::{scored, Candidate, NodeInfo, Prepared};

/// The weight of each plugin.
const WEIGHT_LEAST_ALLOCATED: i64 = 1;
const WEIGHT_BALANCED: i64 = 1;
const WEIGHT_NODE_AFFINITY: i64 = 2;
const WEIGHT_TAINTS: i64 = 3;
const WEIGHT_POD_AFFINITY: i64 = 2;
const WEIGHT_SPREAD: i64 = 2;
/// The best score of one plugin.
pub const SCORE_MAX: i64 = 100;

/// The fraction of cpu and memory (per mille) used with the pod added.
fn fractions(cand: &Candidate, node: &NodeInfo) -> (i64, i64) {
    let (cpu, memory) = scored(&cand.requests);
    let frac = |used: i64, cap: i64| {
        if cap > 0 {
            (used * 1000 / cap).min(1000)
        } else {
            1000
        }
    };
    (
        frac(node.scored_cpu_millis + cpu, node.allocatable.cpu_millis),
        frac(
            node.scored_memory_bytes + memory,
            node.allocatable.memory_bytes,
        ),
    )
}

/// 0–100: the share of cpu and memory left free, averaged.
pub fn least_allocated(cand: &Candidate, node: &NodeInfo) -> i64 {
    let (cpu, memory) = fractions(cand, node);
    ((1000 - cpu) + (1000 - memory)) * SCORE_MAX / 2000
}

/// 0–100: how evenly cpu and memory are used (100: the same fraction).
pub fn balanced(cand: &Candidate, node: &NodeInfo) -> i64 {
    let (cpu, memory) = fractions(cand, node);
    // the standard deviation of two values is half their distance
    SCORE_MAX - (cpu - memory).abs() * SCORE_MAX / 2000
}

/// The summed weights of the preferred node affinity terms the node matches.
pub fn node_affinity(cand: &Candidate, node: &NodeInfo) -> i64 {
    cand.preferred_nodes
        .iter()
        .filter(|(_, term)| placement::term_matches_on(term, &node.labels, &node.name))
        .map(|(w, _)| *w)
        .sum()
}

/// How many PreferNoSchedule taints of the node the pod does not tolerate.
pub fn intolerable(cand: &Candidate, node: &NodeInfo) -> i64 {
    node.taints
        .iter()
        .filter(|t| t.get("effect").and_then(serde_json::Value::as_str) == Some("PreferNoSchedule"))
        .filter(|t| {
            !cand
                .tolerations
                .iter()
                .any(|tol| placement::tolerates(tol, t))
        })
        .count() as i64
}

/// Preferred affinity terms' weights for each matching pod in the node's
/// domain, less preferred anti-affinity terms'.
pub fn pod_affinity(cand: &Candidate, prep: &Prepared, node: &NodeInfo) -> i64 {
    let n_affinity = cand.preferred_affinity.len();
    cand.preferred_affinity
        .iter()
        .chain(&cand.preferred_anti_affinity)
        .enumerate()
        .map(|(i, t)| {
            let count = node
                .topology(&t.topology_key)
                .and_then(|v| prep.preferred[i].get(v))
                .map_or(0, |n| i64::from(*n));
            let sign = if i < n_affinity { 1 } else { -1 };
            sign * t.weight * count
        })
        .sum()
}

/// How crowded the node's domains are with the pods the candidate spreads
/// from (lower is better).
pub fn crowding(cand: &Candidate, prep: &Prepared, node: &NodeInfo) -> i64 {
    let soft: Vec<usize> = (0..cand.spread.len())
        .filter(|i| !cand.spread[*i].hard)
        .collect();
    if soft.is_empty() && cand.spread.is_empty() {
        return prep.siblings.get(&node.name).map_or(0, |n| i64::from(*n));
    }
    soft.iter()
        .map(|i| {
            node.topology(&cand.spread[*i].topology_key)
                .and_then(|v| prep.spread[*i].get(v))
                .map_or(0, |n| i64::from(*n))
        })
        .sum()
}

/// Scale raw scores to 0–100, higher raw better (`reverse`: lower better).
fn normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let (Some(&min), Some(&max)) = (raw.iter().min(), raw.iter().max()) else {
        return Vec::new();
    };
    if max == min {
        // no plugin preference among these nodes
        return vec![0; raw.len()];
    }
    raw.iter()
        .map(|r| {
            let up = (r - min) * SCORE_MAX / (max - min);
            if reverse {
                SCORE_MAX - up
            } else {
                up
            }
        })
        .collect()
}

/// The weighed score of each of `nodes` (all of which the pod fits).
pub fn scores(cand: &Candidate, prep: &Prepared, nodes: &[&NodeInfo]) -> Vec<i64> {
    let per = |f: &dyn Fn(&NodeInfo) -> i64| nodes.iter().map(|n| f(n)).collect::<Vec<i64>>();
    let mut total: Vec<i64> = nodes
        .iter()
        .map(|n| {
            WEIGHT_LEAST_ALLOCATED * least_allocated(cand, n) + WEIGHT_BALANCED * balanced(cand, n)
        })
        .collect();
    let mut add = |weight: i64, normalized: Vec<i64>| {
        for (t, s) in total.iter_mut().zip(normalized) {
            *t += weight * s;
        }
    };
    if !cand.preferred_nodes.is_empty() {
        add(
            WEIGHT_NODE_AFFINITY,
            normalize(&per(&|n| node_affinity(cand, n)), false),
        );
    }
    if nodes.iter().any(|n| !n.taints.is_empty()) {
        add(
            WEIGHT_TAINTS,
            normalize(&per(&|n| intolerable(cand, n)), true),
        );
    }
    if !(cand.preferred_affinity.is_empty() && cand.preferred_anti_affinity.is_empty()) {
        add(
            WEIGHT_POD_AFFINITY,
            normalize(&per(&|n| pod_affinity(cand, prep, n)), false),
        );
    }
    if !cand.spread.is_empty() || !prep.siblings.is_empty() {
        add(
            WEIGHT_SPREAD,
            normalize(&per(&|n| crowding(cand, prep, n)), true),
        );
    }
    total
}
