//! Preemption (kube-scheduler's DefaultPreemption): when a pod fits no
//! node, find a node where removing pods of lower priority would let it
//! fit, remove as few and as unimportant ones as possible, and prefer
//! victims whose PodDisruptionBudgets allow the disruption. Pure: the
//! scheduler carries the verdict out (nominates the node, deletes the
//! victims) and places the pod once they are gone.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kubus_api::meta;
use kubus_api::selector::Selector;
use serde_json::Value;

use super::ledger::{histogram, FitError, Ledger};
use super::rules::{self, Candidate, PodInfo, Prepared};

/// A PodDisruptionBudget as preemption weighs it.
#[derive(Debug, Clone)]
pub struct Budget {
    pub namespace: String,
    pub selector: Option<Selector>,
    /// `status.disruptionsAllowed`.
    pub allowed: i64,
}

impl Budget {
    pub fn of(pdb: &Value) -> Budget {
        Budget {
            namespace: meta::namespace(pdb).unwrap_or("default").to_string(),
            // an empty selector selects every pod of the namespace (policy/v1)
            selector: Selector::from_value(pdb.pointer("/spec/selector")),
            allowed: pdb
                .pointer("/status/disruptionsAllowed")
                .and_then(Value::as_i64)
                .unwrap_or(0),
        }
    }

    fn covers(&self, pod: &PodInfo) -> bool {
        pod.namespace == self.namespace
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(&pod.labels))
    }
}

/// Pods to remove from a node so that the candidate fits there.
#[derive(Debug, Clone, PartialEq)]
pub struct Preemption {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
    /// How many victims' budgets allow no disruption.
    pub violations: usize,
}

/// What preemption decides for a pod that fits no node.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Preempt(Preemption),
    /// Pods it preempted before are still terminating: wait for them.
    Waiting(String),
    /// No removal helps; why, in Kubernetes' words ("0/3 nodes are
    /// available: 3 No preemption victims found for incoming pod.").
    NotHelpful(String),
}

const NO_VICTIMS: &str = "No preemption victims found for incoming pod";
const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";

/// Decide preemption for `cand`, which fits none of the ledger's nodes.
pub fn preempt(
    ledger: &Ledger,
    cand: &Candidate,
    prep: &Prepared,
    fit: &FitError,
    allowed: Option<&BTreeSet<String>>,
    budgets: &[Budget],
) -> Verdict {
    if !cand.preempts {
        return Verdict::NotHelpful("not eligible due to preemptionPolicy=Never.".into());
    }
    if let Some(node) = cand.nominated.and_then(|n| ledger.node(n)) {
        let terminating = node
            .pods
            .iter()
            .any(|p| p.terminating && p.priority < cand.priority);
        if terminating {
            return Verdict::Waiting(format!(
                "waiting for preempted pods on node {} to terminate",
                node.name
            ));
        }
    }
    let mut reasons: BTreeMap<Cow<'static, str>, usize> = BTreeMap::new();
    let mut best: Option<(usize, Preemption)> = None;
    for (i, misfit) in &fit.misfits {
        if !misfit.resolvable() {
            *reasons.entry(NOT_HELPFUL.into()).or_default() += 1;
            continue;
        }
        let Some(found) = victims_on(ledger, *i, cand, prep, allowed, budgets) else {
            *reasons.entry(NO_VICTIMS.into()).or_default() += 1;
            continue;
        };
        let better = match &best {
            None => true,
            Some((_, b)) => rank(&found) < rank(b),
        };
        if better {
            best = Some((*i, found));
        }
    }
    match best {
        Some((_, p)) => Verdict::Preempt(p),
        None => Verdict::NotHelpful(histogram(fit.total, &reasons)),
    }
}

/// Kubernetes' order of candidate nodes: fewest budget violations, then the
/// lowest highest-priority victim, the smallest sum of priorities, the
/// fewest victims.
fn rank(p: &Preemption) -> (usize, i64, i64, usize) {
    let highest = p
        .victims
        .iter()
        .map(|v| i64::from(v.priority))
        .max()
        .unwrap_or(i64::MIN);
    let sum = p.victims.iter().map(|v| i64::from(v.priority)).sum();
    (p.violations, highest, sum, p.victims.len())
}

/// The fewest, least important pods of lower priority to remove from node
/// `i` so that `cand` fits there; None if even removing all of them does
/// not help.
pub fn victims_on(
    ledger: &Ledger,
    i: usize,
    cand: &Candidate,
    prep: &Prepared,
    allowed: Option<&BTreeSet<String>>,
    budgets: &[Budget],
) -> Option<Preemption> {
    let original = ledger.nodes().get(i)?;
    let mut lower: Vec<Arc<PodInfo>> = original
        .pods
        .iter()
        .filter(|p| p.priority < cand.priority && !p.terminating && p.key != cand.key)
        .cloned()
        .collect();
    if lower.is_empty() {
        return None;
    }
    let ns = &ledger.namespaces;
    let mut node = original.clone();
    let mut prep = prep.clone();
    let remove = |node: &mut rules::NodeInfo, prep: &mut Prepared, p: &Arc<PodInfo>, sign: i32| {
        node.count(p, i64::from(sign));
        prep.count_existing_anti(cand, original, p, sign, ns);
        prep.count_for_terms(cand, original, p, sign, ns);
    };
    for p in &lower {
        remove(&mut node, &mut prep, p, -1);
    }
    rules::filter(cand, &prep, &node, allowed, ns).ok()?;
    // the most important first: they are the first given back
    lower.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.key.cmp(&b.key)));
    let mut budget_left: Vec<i64> = budgets.iter().map(|b| b.allowed).collect();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for p in lower {
        let mut violates = false;
        for (b, left) in budgets.iter().zip(budget_left.iter_mut()) {
            if b.covers(&p) {
                if *left <= 0 {
                    violates = true;
                } else {
                    *left -= 1;
                }
            }
        }
        if violates {
            violating.push(p);
        } else {
            fine.push(p);
        }
    }
    let mut victims = Vec::new();
    let mut violations = 0;
    // give back pods whose budgets forbid their removal first
    for (p, violates) in violating
        .into_iter()
        .map(|p| (p, true))
        .chain(fine.into_iter().map(|p| (p, false)))
    {
        remove(&mut node, &mut prep, &p, 1);
        if rules::filter(cand, &prep, &node, allowed, ns).is_err() {
            remove(&mut node, &mut prep, &p, -1);
            violations += usize::from(violates);
            victims.push(p);
        }
    }
    Some(Preemption {
        node: original.name.clone(),
        victims,
        violations,
    })
}
