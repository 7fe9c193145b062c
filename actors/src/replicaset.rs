//! The ReplicaSet controller: keeps `spec.replicas` pods alive for every
//! ReplicaSet and reports its status. Pods whose ReplicaSet is gone are
//! the garbage collector's ([`crate::gc`]).
//!
//! [`reconcile`] decides from the set's pod tally and its writes under
//! way; [`ReplicaSetReconciler`] puts it on the controller runtime.

use kubus_api::pod::is_ready;
use kubus_api::{meta, Kind, ObjectRef};
use serde_json::{json, Value};

use crate::informer::Tally;
use crate::runtime::{Pending, Plan as RuntimePlan, Planned, Reconcile, View, Watch};
use crate::write::Write;

/// Most pod writes one ReplicaSet issues per sync (a slow start, bounded).
pub const WRITES_PER_SYNC_MAX: usize = 64;
/// Most pod creates one ReplicaSet has under way at once: creates are
/// pipelined (a sync does not wait for the previous sync's creates to
/// land), and kept below the scheduler's bindings in flight
/// ([`crate::scheduler::BINDINGS_IN_FLIGHT_MAX`]) so that, when the store's
/// writes are the bottleneck, new pods cannot crowd out the bindings and
/// queue up unscheduled. Fewer writes in flight also keep each write's
/// wait short: `kubus bench pods` (release, 30,000 pods) went from
/// created → Running p99 2.4 s at 128 creates / 256 bindings to 0.54 s at
/// 64 / 128 and 0.40 s at 48 / 128, with more pods per second, not fewer.
pub const CREATES_IN_FLIGHT_MAX: usize = 48;

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
    crate::workload::pod_from(rs, None)
}

/// What one sync of a ReplicaSet does.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    pub creates: usize,
    /// How many surplus pods to delete ([`surplus`] picks them).
    pub deletes: usize,
    /// The ReplicaSet with its new status, when that changed.
    pub status: Option<Value>,
}

/// Decide what brings one ReplicaSet's pods and status in line, from its
/// pods' tally and the writes still under way: pods being created count as
/// present (so creates pipeline without ever overshooting), nothing is
/// created or deleted while deletes are under way, and nothing is deleted
/// while creates are.
pub fn reconcile(rs: &Value, tally: Tally, available: usize, pending: Pending) -> Plan {
    let desired = rs
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0) as usize;
    let mut plan = Plan::default();
    let present = tally.active + pending.creates;
    if kubus_api::lifecycle::is_marked(rs) {
        // being deleted: its pods are the garbage collector's now
    } else if pending.deletes > 0 {
        // wait for the deletes to land before counting again
    } else if present < desired {
        plan.creates = (desired - present)
            .min(WRITES_PER_SYNC_MAX)
            .min(CREATES_IN_FLIGHT_MAX.saturating_sub(pending.creates));
    } else if pending.creates == 0 && tally.active > desired {
        plan.deletes = (tally.active - desired).min(WRITES_PER_SYNC_MAX);
    }
    let status = json!({
        "replicas": tally.active,
        "fullyLabeledReplicas": tally.active,
        "readyReplicas": tally.ready,
        "availableReplicas": available,
        "observedGeneration": rs.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
    });
    if pending.updates == 0 && rs.get("status") != Some(&status) {
        let mut updated = rs.clone();
        if let Some(root) = updated.as_object_mut() {
            root.insert("status".into(), status);
        }
        plan.status = Some(updated);
    }
    plan
}

/// The `n` active pods to delete first, of those a ReplicaSet owns.
pub fn surplus<'a>(owned: impl Iterator<Item = &'a Value>, n: usize) -> Vec<ObjectRef> {
    let mut active: Vec<&Value> = owned.filter(|p| kubus_api::pod::is_active(p)).collect();
    active.sort_by_cached_key(|p| deletion_rank(p));
    active
        .iter()
        .take(n)
        .filter_map(|p| meta::object_ref(p))
        .collect()
}

/// The ReplicaSet controller on the runtime: it owns pods. The same
/// reconciler keeps ReplicationControllers (their spec and status have
/// the same shape; pods are found by owner, not selector).
#[derive(Debug, Clone, Copy)]
pub struct ReplicaSetReconciler {
    kind: Kind,
}

impl ReplicaSetReconciler {
    pub const REPLICA_SETS: ReplicaSetReconciler = ReplicaSetReconciler {
        kind: Kind::ReplicaSet,
    };
    pub const REPLICATION_CONTROLLERS: ReplicaSetReconciler = ReplicaSetReconciler {
        kind: Kind::ReplicationController,
    };
}

impl Reconcile for ReplicaSetReconciler {
    fn kind(&self) -> Kind {
        self.kind
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::ReplicationController => "replication-controller",
            _ => "replicaset-controller",
        }
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::Owns(Kind::Pod)]
    }

    fn reconcile(&self, rs: &Value, view: &View<'_>) -> RuntimePlan {
        let uid = meta::uid(rs).unwrap_or_default();
        let tally = view.tally(Kind::Pod, uid);
        // available: Ready for minReadySeconds (a scan only when it is set)
        let min_ready = rs
            .pointer("/spec/minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let mut requeue_after = None;
        let available = if min_ready > 0 {
            let now = view.now.as_second();
            let pods = view.owned(Kind::Pod, uid);
            let active = pods.iter().filter(|p| kubus_api::pod::is_active(p));
            let (mut available, mut soonest) = (0, None::<i64>);
            for p in active {
                if kubus_api::pod::is_available(p, min_ready, now) {
                    available += 1;
                } else if let Some(since) = kubus_api::pod::condition(p, "Ready")
                    .filter(|_| is_ready(p))
                    .and_then(|c| {
                        c.get("lastTransitionTime")?
                            .as_str()?
                            .parse::<jiff::Timestamp>()
                            .ok()
                    })
                {
                    let left = since.as_second() + min_ready - now;
                    soonest = Some(soonest.map_or(left, |s| s.min(left)));
                }
            }
            requeue_after = soonest.map(|s| std::time::Duration::from_secs(s.max(1) as u64));
            available
        } else {
            tally.ready
        };
        let plan = reconcile(rs, tally, available, view.pending);
        let creates = (0..plan.creates).map(|_| {
            Planned::noted(
                Write::Create(pod_from_template(rs)),
                "SuccessfulCreate",
                "Created pod: {name}",
            )
        });
        // only when deleting: ranking a big set's pods costs a scan and a sort
        let doomed = match plan.deletes {
            0 => Vec::new(),
            n => surplus(view.owned(Kind::Pod, uid).into_iter(), n),
        };
        let deletes = doomed.into_iter().map(|r| {
            Planned::noted(
                Write::delete(r, None),
                "SuccessfulDelete",
                "Deleted pod: {name}",
            )
        });
        let status = plan.status.map(|s| Planned::quiet(Write::Update(s)));
        RuntimePlan {
            writes: creates.chain(deletes).chain(status).collect(),
            requeue_after,
        }
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
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-abc", "uid": "rs-uid", "controller": true}]},
            "spec": {"nodeName": "n1"},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    /// A sync's plan over `owned`, the way the actor tallies them.
    fn plan(rs: &Value, owned: &[&Value], pending: Pending) -> Plan {
        let mut tally = Tally::default();
        for p in owned {
            let t = crate::informer::pod_tally(p);
            tally.active += t.active;
            tally.ready += t.ready;
        }
        reconcile(rs, tally, tally.ready, pending)
    }

    fn deletes(owned: &[&Value], plan: &Plan) -> Vec<String> {
        surplus(owned.iter().copied(), plan.deletes)
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    #[test]
    fn scales_up_and_down() {
        let a = pod("a", "Running", true, "2026-01-01T00:00:01Z");
        let b = pod("b", "Running", true, "2026-01-01T00:00:02Z");
        let c = pod("c", "Pending", false, "2026-01-01T00:00:00Z");
        let failed = pod("d", "Failed", false, "2026-01-01T00:00:00Z");
        // issue 5: a pod being deleted gracefully still runs, but no longer
        // counts: its replacement is created at once, and a scale-down never
        // picks it again
        let mut terminating = pod("e", "Running", true, "2026-01-01T00:00:03Z");
        terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
        // (desired, pods, creates, deletes)
        let cases: Vec<(i64, Vec<&Value>, usize, Vec<&str>)> = vec![
            (3, vec![], 3, vec![]),
            (3, vec![&a, &b], 1, vec![]),
            (3, vec![&a, &b, &failed], 1, vec![]),
            (3, vec![&a, &b, &terminating], 1, vec![]),
            (1, vec![&a, &b, &terminating], 0, vec!["b"]),
            (1, vec![&a, &b, &c], 0, vec!["c", "b"]),
            (0, vec![&a], 0, vec!["a"]),
            (2, vec![&a, &b], 0, vec![]),
        ];
        for (desired, pods, want_creates, want_deletes) in cases {
            let p = plan(&rs(desired), &pods, Pending::default());
            assert_eq!(p.creates, want_creates, "desired {desired}");
            assert_eq!(deletes(&pods, &p), want_deletes, "desired {desired}");
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
        let p = plan(&rs(1), &[&a], Pending::default());
        let Some(updated) = &p.status else {
            panic!("expected a status update, got {p:?}")
        };
        assert_eq!(updated["status"]["readyReplicas"], 1);
        assert_eq!(updated["status"]["observedGeneration"], 2);
        assert_eq!(plan(updated, &[&a], Pending::default()), Plan::default());
    }

    #[test]
    fn writes_under_way_are_counted() {
        let a = pod("a", "Running", true, "t");
        let b = pod("b", "Running", true, "t");
        let both = [&a, &b];
        let cases = [
            // (desired, pending, creates, deletes, status update)
            (
                10,
                Pending {
                    creates: 3,
                    ..Pending::default()
                },
                5,
                0,
                true,
            ),
            (
                10,
                Pending {
                    creates: 8,
                    ..Pending::default()
                },
                0,
                0,
                true,
            ),
            (
                1,
                Pending {
                    creates: 1,
                    ..Pending::default()
                },
                0,
                0,
                true,
            ),
            (
                0,
                Pending {
                    deletes: 1,
                    ..Pending::default()
                },
                0,
                0,
                true,
            ),
            (
                5,
                Pending {
                    deletes: 1,
                    ..Pending::default()
                },
                0,
                0,
                true,
            ),
            (
                1,
                Pending {
                    updates: 1,
                    ..Pending::default()
                },
                0,
                1,
                false,
            ),
            (
                5000,
                Pending {
                    creates: CREATES_IN_FLIGHT_MAX - 7,
                    ..Pending::default()
                },
                7,
                0,
                true,
            ),
            (
                5000,
                Pending::default(),
                WRITES_PER_SYNC_MAX.min(CREATES_IN_FLIGHT_MAX),
                0,
                true,
            ),
        ];
        for (desired, pending, want_creates, want_deletes, want_status) in cases {
            let p = plan(&rs(desired), &both, pending);
            let case = format!("desired {desired}, {pending:?}");
            assert_eq!(p.creates, want_creates, "{case}");
            assert_eq!(p.deletes, want_deletes, "{case}");
            assert_eq!(p.status.is_some(), want_status, "{case}");
        }
    }
}
