//! The rebalance plan: which pods to move off crowded nodes, and where the
//! scheduler is likely to put their replacements. Pure: nodes and pods in,
//! moves out; no I/O, no clock.
//!
//! A node's **load** is the share of its allocatable taken by what its
//! pods request, of its most used resource (cpu, memory or pod count), in
//! basis points (1/100 of a percent). The **spread** is the most loaded
//! node's load less the least loaded one's, over the nodes a pod could go
//! to: Ready and schedulable (a cordoned node is the drain's business).
//!
//! [`plan`] moves one pod at a time, as long as a move lowers the spread
//! by more than the threshold and the plan is not full: from the most
//! loaded node first (the next one when none of its pods can usefully
//! move), each candidate pod to its likely node — the least loaded one
//! its nodeSelector, required node affinity, tolerations and requests
//! allow, as the scheduler's least-allocated scoring would choose — and
//! the pod whose move lowers the spread most. Only pods a controller
//! replaces move ([`movable`]): a ReplicaSet's (so a Deployment's), a
//! StatefulSet's or a ReplicationController's, Running, with no emptyDir
//! or claim data kept on the node; never a DaemonSet's, a Job's, a mirror
//! pod or a pod no controller owns.

use std::collections::BTreeMap;

use kubus_actors::scheduler::{pod_requests, Resources};
use kubus_api::{meta, placement, pod, quantity};
use serde_json::Value;

/// Whole, in basis points.
pub const WHOLE_BP: i64 = 10_000;

/// Most candidate pods looked at per move: a plan over a very large
/// cluster looks at the pods of the most loaded nodes first.
pub const CANDIDATES_PER_MOVE_MAX: usize = 5_000;

/// What the plan may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Most moves in one plan.
    pub moves_max: usize,
    /// A move must lower the spread by more than this (basis points).
    pub threshold_bp: i64,
}

/// Amounts a node offers or its pods request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    pub pods: i64,
}

impl Amounts {
    fn of_pod(p: &Value) -> Amounts {
        let r: Resources = pod_requests(p);
        Amounts {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            pods: 1,
        }
    }

    fn plus(self, o: Amounts, sign: i64) -> Amounts {
        Amounts {
            cpu_millis: self.cpu_millis + sign * o.cpu_millis,
            memory_bytes: self.memory_bytes + sign * o.memory_bytes,
            pods: self.pods + sign * o.pods,
        }
    }

    fn within(self, limit: Amounts) -> bool {
        self.cpu_millis <= limit.cpu_millis
            && self.memory_bytes <= limit.memory_bytes
            && self.pods <= limit.pods
    }
}

/// One node as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLoad {
    pub name: String,
    pub allocatable: Amounts,
    pub requested: Amounts,
}

/// `used` of `total` in basis points; anything of nothing is full.
fn share(used: i64, total: i64) -> i64 {
    match (used, total) {
        (u, _) if u <= 0 => 0,
        (_, t) if t <= 0 => WHOLE_BP,
        (u, t) => {
            i64::try_from(i128::from(u) * i128::from(WHOLE_BP) / i128::from(t)).unwrap_or(i64::MAX)
        }
    }
}

/// The largest share `requested` takes of `allocatable`, in basis points.
pub fn load_bp(requested: Amounts, allocatable: Amounts) -> i64 {
    share(requested.cpu_millis, allocatable.cpu_millis)
        .max(share(requested.memory_bytes, allocatable.memory_bytes))
        .max(share(requested.pods, allocatable.pods))
}

impl NodeLoad {
    /// The share of the node's most used resource, in basis points.
    pub fn load_bp(&self) -> i64 {
        load_bp(self.requested, self.allocatable)
    }
}

/// A load as people read it: `37.5%`.
pub fn percent(bp: i64) -> String {
    if bp % 100 == 0 {
        format!("{}%", bp / 100)
    } else {
        format!("{}.{}%", bp / 100, (bp % 100) / 10)
    }
}

/// One planned move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub namespace: String,
    pub pod: String,
    pub from: String,
    /// Where the scheduler is likely to put the replacement.
    pub to: String,
    /// The source's load before and after.
    pub from_bp: (i64, i64),
    /// The likely target's load before and after.
    pub to_bp: (i64, i64),
    /// The spread before and after.
    pub spread_bp: (i64, i64),
}

impl Move {
    /// Why this move, in words: both nodes' loads and the spread.
    pub fn why(&self) -> String {
        format!(
            "{} {} → {}, {} {} → {}; spread {} → {}",
            self.from,
            percent(self.from_bp.0),
            percent(self.from_bp.1),
            self.to,
            percent(self.to_bp.0),
            percent(self.to_bp.1),
            percent(self.spread_bp.0),
            percent(self.spread_bp.1),
        )
    }
}

/// The plan: the nodes' loads now and after, and the moves in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// (node, load now, load after the moves), by name.
    pub nodes: Vec<(String, i64, i64)>,
    pub moves: Vec<Move>,
    pub spread_bp: (i64, i64),
}

/// Whether a node takes new pods: Ready and not cordoned.
fn usable(node: &Value) -> bool {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
    let cordoned = node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true);
    ready && !cordoned
}

fn allocatable(node: &Value) -> Amounts {
    let text = |r: &str| {
        node.pointer(&format!("/status/allocatable/{r}"))
            .and_then(|v| {
                v.as_str()
                    .map(str::to_string)
                    .or_else(|| v.as_i64().map(|n| n.to_string()))
            })
            .unwrap_or_default()
    };
    Amounts {
        cpu_millis: quantity::cpu_millis(&text("cpu")).unwrap_or(0),
        memory_bytes: quantity::memory_bytes(&text("memory")).unwrap_or(0),
        pods: quantity::parse_milli(&text("pods"))
            .map(|m| i64::try_from(m / 1000).unwrap_or(i64::MAX))
            .unwrap_or(0),
    }
}

/// The controller kinds whose pods are replaced elsewhere when evicted.
const REPLACING_CONTROLLERS: [&str; 3] = ["ReplicaSet", "StatefulSet", "ReplicationController"];

/// Whether rebalance may move `p`, or why not (in words for people).
pub fn movable(p: &Value) -> Result<(), String> {
    if pod::is_terminating(p) {
        return Err("already terminating".into());
    }
    if p.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
        return Err("not Running".into());
    }
    if meta::annotations(p).contains_key(crate::drain::MIRROR_ANNOTATION) {
        return Err("a mirror (static) pod: its node runs it".into());
    }
    let controller = p
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        })
        .and_then(|r| r.get("kind").and_then(Value::as_str));
    match controller {
        None => return Err("no controller: nothing would replace it".into()),
        Some("DaemonSet") => return Err("a DaemonSet's pod: it belongs to its node".into()),
        Some(kind) if !REPLACING_CONTROLLERS.contains(&kind) => {
            return Err(format!(
                "a {kind}'s pod: only ReplicaSet, StatefulSet and ReplicationController pods move"
            ))
        }
        Some(_) => {}
    }
    let volumes = p.pointer("/spec/volumes").and_then(Value::as_array);
    for v in volumes.into_iter().flatten() {
        if v.get("emptyDir").is_some() {
            return Err("its emptyDir data would be lost".into());
        }
        if v.get("persistentVolumeClaim").is_some() {
            return Err("its claims' data is on its node".into());
        }
    }
    Ok(())
}

/// Whether the scheduler could put `p` (needing `need`) on `node` as
/// loaded now: node selection, taints and room.
fn fits(p: &Value, need: Amounts, node: &Value, load: &NodeLoad) -> bool {
    let spec = p.get("spec").unwrap_or(&Value::Null);
    placement::selected(spec, node)
        && placement::untolerated_taint(spec, node, &["NoSchedule", "NoExecute"]).is_none()
        && load.requested.plus(need, 1).within(load.allocatable)
}

/// The spread (most less least loaded, basis points) of `loads` with the
/// loads of `changed` nodes replaced.
fn spread_with(loads: &BTreeMap<String, NodeLoad>, changed: &[(&str, i64)]) -> i64 {
    let mut most = i64::MIN;
    let mut least = i64::MAX;
    for l in loads.values() {
        let bp = changed
            .iter()
            .find(|(n, _)| *n == l.name)
            .map_or_else(|| l.load_bp(), |(_, bp)| *bp);
        most = most.max(bp);
        least = least.min(bp);
    }
    if loads.is_empty() {
        0
    } else {
        most - least
    }
}

/// The best move now, if one lowers the spread by more than the
/// threshold: (candidate index, move).
fn best_move(
    loads: &BTreeMap<String, NodeLoad>,
    node_objects: &BTreeMap<String, &Value>,
    candidates: &[(&Value, String, Amounts)],
    threshold_bp: i64,
) -> Option<(usize, Move)> {
    let spread = spread_with(loads, &[]);
    let mut sources: Vec<&NodeLoad> = loads.values().collect();
    sources.sort_by(|a, b| b.load_bp().cmp(&a.load_bp()).then(a.name.cmp(&b.name)));
    let least = loads.values().map(NodeLoad::load_bp).min().unwrap_or(0);
    for source in sources {
        if source.load_bp() <= least {
            break;
        }
        let mut best: Option<(i64, usize, Move)> = None;
        let on_source = candidates
            .iter()
            .enumerate()
            .filter(|(_, (_, node, _))| *node == source.name)
            .take(CANDIDATES_PER_MOVE_MAX);
        for (i, (p, _, need)) in on_source {
            // the likely target: the least loaded node it fits on
            let target = loads
                .values()
                .filter(|l| l.name != source.name)
                .filter(|l| {
                    node_objects
                        .get(&l.name)
                        .is_some_and(|n| fits(p, *need, n, l))
                })
                .map(|l| (load_bp(l.requested.plus(*need, 1), l.allocatable), l))
                .min_by(|(a, x), (b, y)| a.cmp(b).then(x.name.cmp(&y.name)));
            let Some((to_after, target)) = target else {
                continue;
            };
            let from_after = load_bp(source.requested.plus(*need, -1), source.allocatable);
            let after = spread_with(
                loads,
                &[(&source.name, from_after), (&target.name, to_after)],
            );
            let gain = spread - after;
            if best.as_ref().is_none_or(|(g, _, _)| gain > *g) {
                let mv = Move {
                    namespace: meta::namespace(p).unwrap_or("default").to_string(),
                    pod: meta::name(p).unwrap_or_default().to_string(),
                    from: source.name.clone(),
                    to: target.name.clone(),
                    from_bp: (source.load_bp(), from_after),
                    to_bp: (target.load_bp(), to_after),
                    spread_bp: (spread, after),
                };
                best = Some((gain, i, mv));
            }
        }
        if let Some((gain, i, mv)) = best {
            if gain > threshold_bp {
                return Some((i, mv));
            }
        }
    }
    None
}

/// Plan the moves over `nodes` and `pods` (every pod of the cluster).
pub fn plan(nodes: &[Value], pods: &[Value], opts: Options) -> Plan {
    let node_objects: BTreeMap<String, &Value> = nodes
        .iter()
        .filter(|n| usable(n))
        .filter_map(|n| Some((meta::name(n)?.to_string(), n)))
        .collect();
    let mut loads: BTreeMap<String, NodeLoad> = node_objects
        .iter()
        .map(|(name, n)| {
            (
                name.clone(),
                NodeLoad {
                    name: name.clone(),
                    allocatable: allocatable(n),
                    requested: Amounts::default(),
                },
            )
        })
        .collect();
    let mut candidates: Vec<(&Value, String, Amounts)> = Vec::new();
    for p in pods {
        let Some(node) = p.pointer("/spec/nodeName").and_then(Value::as_str) else {
            continue;
        };
        let Some(load) = loads.get_mut(node) else {
            continue;
        };
        if pod::is_finished(p) {
            continue;
        }
        // a terminating pod holds its resources until it is gone, as the
        // scheduler counts it
        let need = Amounts::of_pod(p);
        load.requested = load.requested.plus(need, 1);
        if movable(p).is_ok() {
            candidates.push((p, node.to_string(), need));
        }
    }
    candidates.sort_by(|(a, _, _), (b, _, _)| {
        (meta::namespace(a), meta::name(a)).cmp(&(meta::namespace(b), meta::name(b)))
    });
    let before: BTreeMap<String, i64> = loads
        .values()
        .map(|l| (l.name.clone(), l.load_bp()))
        .collect();
    let spread_before = spread_with(&loads, &[]);
    let mut moves = Vec::new();
    while moves.len() < opts.moves_max {
        let Some((i, mv)) = best_move(&loads, &node_objects, &candidates, opts.threshold_bp) else {
            break;
        };
        let (_, _, need) = candidates.remove(i);
        if let Some(l) = loads.get_mut(&mv.from) {
            l.requested = l.requested.plus(need, -1);
        }
        if let Some(l) = loads.get_mut(&mv.to) {
            l.requested = l.requested.plus(need, 1);
        }
        moves.push(mv);
    }
    Plan {
        nodes: loads
            .values()
            .map(|l| {
                (
                    l.name.clone(),
                    before.get(&l.name).copied().unwrap_or(0),
                    l.load_bp(),
                )
            })
            .collect(),
        moves,
        spread_bp: (spread_before, spread_with(&loads, &[])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"zone": if name == "c" {"other"} else {"main"}}},
            "spec": {},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn pod(name: &str, node: &str, cpu: &str, owner: Option<&str>) -> Value {
        let mut p = json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": cpu, "memory": "16Mi"}}}]},
            "status": {"phase": "Running"}});
        if let Some(kind) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"kind": kind, "name": "o", "uid": "u", "controller": true}]);
        }
        p
    }

    fn rs(name: &str, node: &str, cpu: &str) -> Value {
        pod(name, node, cpu, Some("ReplicaSet"))
    }

    /// (what, nodes, pods, options, moves as (pod, from, to)).
    type Case = (
        &'static str,
        Vec<Value>,
        Vec<Value>,
        Options,
        Vec<(String, String, String)>,
    );

    const OPTS: Options = Options {
        moves_max: 10,
        threshold_bp: 500,
    };

    /// (pod, from, to) of each move.
    fn moves(p: &Plan) -> Vec<(String, String, String)> {
        p.moves
            .iter()
            .map(|m| (m.pod.clone(), m.from.clone(), m.to.clone()))
            .collect()
    }

    fn m(pod: &str, from: &str, to: &str) -> (String, String, String) {
        (pod.into(), from.into(), to.into())
    }

    #[test]
    fn plans() {
        let two = vec![node("a", "2"), node("b", "2")];
        let mut cordoned = node("b", "2");
        cordoned["spec"]["unschedulable"] = json!(true);
        let mut tainted = node("b", "2");
        tainted["spec"]["taints"] =
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]);
        let mut pinned = rs("p1", "a", "200m");
        pinned["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": "a"});
        let mut with_data = rs("p1", "a", "200m");
        with_data["spec"]["volumes"] = json!([{"name": "d", "emptyDir": {}}]);
        let mut big = rs("p1", "a", "1500m");
        big["metadata"]["name"] = json!("big");
        let four_on_a: Vec<Value> = (1..=4).map(|i| rs(&format!("p{i}"), "a", "200m")).collect();
        // (what, nodes, pods, options, moves)
        let table: Vec<Case> = vec![
            (
                "four pods on one of two nodes: two move",
                two.clone(),
                four_on_a.clone(),
                OPTS,
                vec![m("p1", "a", "b"), m("p2", "a", "b")],
            ),
            (
                "the plan's size is bounded",
                two.clone(),
                four_on_a.clone(),
                Options {
                    moves_max: 1,
                    ..OPTS
                },
                vec![m("p1", "a", "b")],
            ),
            (
                "a gain below the threshold is not worth a disruption",
                two.clone(),
                four_on_a.clone(),
                Options {
                    threshold_bp: 2_000,
                    ..OPTS
                },
                vec![],
            ),
            (
                "balanced already",
                two.clone(),
                vec![rs("p1", "a", "200m"), rs("p2", "b", "200m")],
                OPTS,
                vec![],
            ),
            (
                "a cordoned node is neither source nor target",
                vec![node("a", "2"), cordoned],
                four_on_a.clone(),
                OPTS,
                vec![],
            ),
            (
                "an untolerated taint keeps pods off",
                vec![node("a", "2"), tainted],
                four_on_a.clone(),
                OPTS,
                vec![],
            ),
            (
                "DaemonSet, Job and unowned pods stay",
                two.clone(),
                vec![
                    pod("d1", "a", "400m", Some("DaemonSet")),
                    pod("j1", "a", "400m", Some("Job")),
                    pod("u1", "a", "400m", None),
                ],
                OPTS,
                vec![],
            ),
            (
                "a StatefulSet's pod moves",
                two.clone(),
                vec![
                    pod("s-0", "a", "400m", Some("StatefulSet")),
                    pod("s-1", "a", "400m", Some("StatefulSet")),
                ],
                OPTS,
                vec![m("s-0", "a", "b")],
            ),
            (
                "a pinned pod stays, the others move",
                two.clone(),
                vec![
                    pinned,
                    rs("p2", "a", "200m"),
                    rs("p3", "a", "200m"),
                    rs("p4", "a", "200m"),
                ],
                OPTS,
                vec![m("p2", "a", "b"), m("p3", "a", "b")],
            ),
            (
                "emptyDir data stays",
                two.clone(),
                vec![with_data, rs("p2", "a", "200m")],
                OPTS,
                vec![m("p2", "a", "b")],
            ),
            (
                "a pod too big for the idle node stays; the small ones move",
                vec![node("a", "4"), node("b", "1")],
                vec![big, rs("p2", "a", "200m"), rs("p3", "a", "200m")],
                OPTS,
                vec![m("p2", "a", "b"), m("p3", "a", "b")],
            ),
            (
                "the likeliest target is the least loaded",
                vec![node("a", "2"), node("b", "2"), node("c", "2")],
                vec![
                    rs("p1", "a", "400m"),
                    rs("p2", "a", "400m"),
                    rs("p3", "a", "400m"),
                    rs("q1", "b", "200m"),
                ],
                OPTS,
                vec![m("p1", "a", "c"), m("p2", "a", "b")],
            ),
            (
                "the most loaded node with nothing movable: the next one gives",
                vec![node("a", "2"), node("b", "2"), node("c", "2")],
                vec![
                    pod("d1", "a", "1000m", Some("DaemonSet")),
                    rs("q1", "b", "400m"),
                    rs("q2", "b", "400m"),
                ],
                OPTS,
                vec![m("q1", "b", "c")],
            ),
        ];
        for (what, nodes, pods, opts, want) in table {
            let p = plan(&nodes, &pods, opts);
            assert_eq!(moves(&p), want, "{what}: {p:#?}");
            // a plan never makes the spread worse
            assert!(p.spread_bp.1 <= p.spread_bp.0, "{what}: {p:#?}");
        }
    }

    #[test]
    fn a_move_says_why() {
        let nodes = vec![node("a", "2"), node("b", "2")];
        let pods: Vec<Value> = (1..=4).map(|i| rs(&format!("p{i}"), "a", "200m")).collect();
        let p = plan(&nodes, &pods, OPTS);
        assert_eq!(p.spread_bp, (4_000, 0));
        assert_eq!(
            p.moves[0].why(),
            "a 40% → 30%, b 0% → 10%; spread 40% → 20%"
        );
        assert_eq!(
            p.nodes,
            vec![("a".to_string(), 4_000, 2_000), ("b".to_string(), 0, 2_000)]
        );
    }

    #[test]
    fn reasons_a_pod_stays() {
        let mut terminating = rs("p", "a", "1");
        terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let mut pending = rs("p", "a", "1");
        pending["status"]["phase"] = json!("Pending");
        let mut claim = rs("p", "a", "1");
        claim["spec"]["volumes"] =
            json!([{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]);
        let table = [
            (rs("p", "a", "1"), None),
            (terminating, Some("already terminating")),
            (pending, Some("not Running")),
            (pod("p", "a", "1", None), Some("no controller")),
            (pod("p", "a", "1", Some("DaemonSet")), Some("DaemonSet")),
            (pod("p", "a", "1", Some("Job")), Some("Job")),
            (claim, Some("claims")),
        ];
        for (p, why) in table {
            match (movable(&p), why) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) if e.contains(w) => {}
                (got, want) => panic!("{got:?}, want {want:?}"),
            }
        }
        assert_eq!(percent(3_750), "37.5%");
        assert_eq!(percent(4_000), "40%");
    }
}
