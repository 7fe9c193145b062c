//! What a restarted node agent does with what its earlier run left in the
//! runtime, decided once it has both the runtime's [`Leftovers`] and the
//! pods bound to its node (its pod watch's first list). Pure: the clock is
//! an argument.
//!
//! - A sandbox stays if its pod is still on this node and it is ready (the
//!   newest such, by attempt); every other sandbox goes.
//! - Per pod and container name, the newest container that ran (by restart
//!   count) decides:
//!   - running, the pod's spec for it unchanged (same [`spec_hash`]) and in
//!     the sandbox that stays → **adopted** as it is: same id, restart
//!     count and start time, its exit watched from now on;
//!   - exited → its exit is **restored** (restart count, exit code, the
//!     CrashLoopBackOff it was in) and the restart policy goes on from
//!     there; the container stays as the name's last exited one;
//!   - running but changed, or cut off from its sandbox → **replaced**: it
//!     is stopped, that counts as an exit (137), and it starts again at
//!     once whatever the restart policy, as the kubelet does for a changed
//!     spec.
//! - Containers created but never started, or in an unknown state, go as
//!   if never created. The container before an adopted one, if exited, is
//!   its `lastState` and stays; every other container of the name goes, and
//!   so does every container no pod on this node owns.
//! - What the pod's status reported last is kept where it describes the
//!   same run (startTime, startedAt, ready, started, lastState), so a pod
//!   re-adopted unchanged has an unchanged status.

use std::collections::{BTreeMap, BTreeSet};

use kubus_api::meta;
use serde_json::Value;

use super::pod::{self, ContainerState, Exit};
use super::runtime::{spec_hash, FoundContainer, FoundPod, FoundState, Leftovers};

/// The exit code a container stopped for a changed spec or a lost sandbox
/// is counted with (SIGKILL).
pub const REPLACED_EXIT_CODE: i32 = 137;

/// What to do with everything an earlier run left.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// By pod uid: what each pod that still runs here takes over.
    pub pods: BTreeMap<String, PodPlan>,
    /// Sandboxes to stop and remove.
    pub remove_pods: Vec<FoundPod>,
    /// Containers to stop and remove.
    pub remove_containers: Vec<FoundContainer>,
}

/// What one pod takes over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodPlan {
    pub sandbox: Option<FoundPod>,
    /// By container name.
    pub containers: BTreeMap<String, Restored>,
    /// The pod's `status.startTime` as last reported.
    pub started_ms: Option<u64>,
}

/// One container's state, restored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Restored {
    pub state: ContainerState,
    /// Readiness as last reported for this same run (its probe goes on
    /// from there).
    pub ready: bool,
    /// Whether its startup probe had passed, as last reported.
    pub started: bool,
    /// The container adopted as running.
    pub running: Option<FoundContainer>,
    /// The name's last exited container, kept.
    pub exited: Option<FoundContainer>,
}

/// The pod directories (`<namespace>_<name>_<uid>`, as listed under the
/// agent's `pods/`) of pods no longer bound to this node: their volumes'
/// tmpfs mounts outlived the earlier run and go now (a pod deleted while
/// the agent was away). Directories of pods still here keep their mounts:
/// their re-adopted containers show those very mounts. A name without a
/// uid is not the agent's and stays.
pub fn orphan_pod_dirs(names: &[String], pods: &[Value]) -> Vec<String> {
    let live: BTreeSet<&str> = pods.iter().filter_map(meta::uid).collect();
    names
        .iter()
        .filter(|n| {
            n.rsplit_once('_')
                .is_some_and(|(_, uid)| !uid.is_empty() && !live.contains(uid))
        })
        .cloned()
        .collect()
}

/// The container named `name` in the pod's spec: whether it is an init
/// container, and its spec.
fn container_spec<'a>(pod: &'a Value, name: &str) -> Option<(bool, &'a Value)> {
    [("containers", false), ("initContainers", true)]
        .into_iter()
        .find_map(|(field, init)| {
            pod.pointer(&format!("/spec/{field}"))?
                .as_array()?
                .iter()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
                .map(|c| (init, c))
        })
}

/// The pod's last reported status of the container `name`.
fn stored_status<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["containerStatuses", "initContainerStatuses"]
        .into_iter()
        .filter_map(|f| pod.pointer(&format!("/status/{f}"))?.as_array())
        .flatten()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

/// A `terminated` state of a reported container status as an [`Exit`].
fn exit_of(terminated: &Value) -> Option<Exit> {
    let t = terminated.get("terminated")?;
    Some(Exit {
        code: i32::try_from(t.get("exitCode")?.as_i64()?).ok()?,
        reason: t
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        started_at_ms: pod::parse_time(t.get("startedAt"))?,
        finished_at_ms: pod::parse_time(t.get("finishedAt"))?,
    })
}

fn restart_count(status: &Value) -> Option<u32> {
    u32::try_from(status.get("restartCount")?.as_u64()?).ok()
}

/// The exit a found container's state describes.
fn found_exit(c: &FoundContainer) -> Option<Exit> {
    match &c.state {
        FoundState::Exited {
            code,
            reason,
            started_at_ms,
            finished_at_ms,
        } => Some(Exit {
            code: *code,
            reason: reason.clone(),
            started_at_ms: *started_at_ms,
            finished_at_ms: *finished_at_ms,
        }),
        _ => None,
    }
}

/// Restore an exit as [`pod::record_exit`] would have recorded it after
/// `restarts` earlier exits, so the backoff goes on where it stood.
fn restore_exit(state: &mut ContainerState, restarts: u32, exit: &Exit) {
    state.restarts = restarts;
    state.backoff = pod::backoff_after(restarts);
    state.started_at_ms = Some(exit.started_at_ms);
    pod::record_exit(state, exit.code, &exit.reason, exit.finished_at_ms);
}

/// Decide what happens to every sandbox and container in `leftovers`, given
/// the pods the store has bound to `node`.
pub fn plan(leftovers: &Leftovers, pods: &[Value], node: &str, now_ms: u64) -> Plan {
    let owners: BTreeMap<&str, &Value> = pods
        .iter()
        .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
        .filter_map(|p| Some((meta::uid(p)?, p)))
        .collect();
    let mut out = Plan::default();

    let mut sandboxes: BTreeMap<&str, Vec<&FoundPod>> = BTreeMap::new();
    for sb in &leftovers.pods {
        sandboxes.entry(sb.pod_uid.as_str()).or_default().push(sb);
    }
    for (uid, sbs) in sandboxes {
        let keep = sbs
            .iter()
            .filter(|sb| sb.ready && owners.contains_key(uid))
            .max_by_key(|sb| sb.attempt)
            .map(|sb| (*sb).clone());
        for sb in sbs {
            if keep.as_ref().map(|k| &k.runtime_id) != Some(&sb.runtime_id) {
                out.remove_pods.push(sb.clone());
            }
        }
        if let Some(k) = keep {
            out.pods.entry(uid.to_string()).or_default().sandbox = Some(k);
        }
    }

    let mut groups: BTreeMap<(&str, &str), Vec<&FoundContainer>> = BTreeMap::new();
    for c in &leftovers.containers {
        groups
            .entry((c.pod_uid.as_str(), c.container.as_str()))
            .or_default()
            .push(c);
    }
    for ((uid, name), cs) in groups {
        let spec = owners
            .get(uid)
            .and_then(|pod| Some((*pod, container_spec(pod, name)?)));
        let Some((pod, (_, spec))) = spec else {
            out.remove_containers.extend(cs.into_iter().cloned());
            continue;
        };
        let (mut ran, never): (Vec<&FoundContainer>, Vec<&FoundContainer>) =
            cs.into_iter().partition(|c| {
                matches!(
                    c.state,
                    FoundState::Running { .. } | FoundState::Exited { .. }
                )
            });
        out.remove_containers.extend(never.into_iter().cloned());
        // newest first; of equal restart counts the running one
        ran.sort_by_key(|c| {
            (
                std::cmp::Reverse(c.restarts),
                !matches!(c.state, FoundState::Running { .. }),
            )
        });
        let mut ran = ran.into_iter();
        let Some(newest) = ran.next() else {
            continue;
        };
        let sandbox = out
            .pods
            .get(uid)
            .and_then(|p| p.sandbox.as_ref())
            .map(|sb| sb.runtime_id.clone());
        let in_sandbox =
            |c: &FoundContainer| c.pod_runtime_id.is_none() || c.pod_runtime_id == sandbox;
        let stored = stored_status(pod, name);
        let same_count = stored.and_then(restart_count) == Some(newest.restarts);
        let mut r = Restored::default();
        match &newest.state {
            FoundState::Running { started_at_ms }
                if in_sandbox(newest)
                    && newest
                        .spec_hash
                        .as_ref()
                        .is_none_or(|h| *h == spec_hash(spec)) =>
            {
                let previous = ran
                    .next()
                    .filter(|c| in_sandbox(c) && found_exit(c).is_some());
                let same_run = stored.filter(|s| {
                    s.get("containerID").and_then(Value::as_str) == Some(newest.id.as_str())
                        && s.pointer("/state/running").is_some()
                });
                r.state.running = Some(newest.id.clone());
                r.state.restarts = newest.restarts;
                r.state.backoff = pod::backoff_after(newest.restarts);
                r.state.started_at_ms = Some(
                    same_run
                        .and_then(|s| pod::parse_time(s.pointer("/state/running/startedAt")))
                        .unwrap_or(*started_at_ms),
                );
                r.ready = same_run.is_some_and(|s| s.get("ready") == Some(&Value::Bool(true)));
                r.started = same_run.is_some_and(|s| s.get("started") == Some(&Value::Bool(true)));
                r.state.last_exit = same_run
                    .filter(|_| same_count)
                    .and_then(|s| s.get("lastState"))
                    .and_then(exit_of)
                    .or_else(|| previous.and_then(found_exit));
                r.running = Some(newest.clone());
                r.exited = previous.cloned();
            }
            FoundState::Running { started_at_ms } => {
                out.remove_containers.push(newest.clone());
                let exit = Exit {
                    code: REPLACED_EXIT_CODE,
                    reason: "Error".into(),
                    started_at_ms: *started_at_ms,
                    finished_at_ms: now_ms,
                };
                restore_exit(&mut r.state, newest.restarts, &exit);
                // its replacement starts now, whatever the restart policy
                // (the kubelet's rule for a changed spec; a container cut
                // off from its sandbox is replaced the same way)
                r.state.replace = true;
                r.state.not_before_ms = now_ms;
            }
            _ => {
                // the status reported this very exit if it counted the same
                // restarts and shows the container not running
                let reported = stored
                    .filter(|s| same_count && s.pointer("/state/running").is_none())
                    .and_then(|s| {
                        s.get("state")
                            .and_then(exit_of)
                            .or_else(|| s.get("lastState").and_then(exit_of))
                    });
                if let Some(exit) = reported.or_else(|| found_exit(newest)) {
                    restore_exit(&mut r.state, newest.restarts, &exit);
                }
                if in_sandbox(newest) {
                    r.exited = Some(newest.clone());
                } else {
                    out.remove_containers.push(newest.clone());
                }
            }
        }
        let kept: BTreeSet<&str> = [&r.running, &r.exited]
            .into_iter()
            .flatten()
            .map(|c| c.runtime_id.as_str())
            .collect();
        out.remove_containers.extend(
            ran.filter(|c| !kept.contains(c.runtime_id.as_str()))
                .cloned(),
        );
        out.pods
            .entry(uid.to_string())
            .or_default()
            .containers
            .insert(name.to_string(), r);
    }

    for (uid, plan) in &mut out.pods {
        let Some(pod) = owners.get(uid.as_str()) else {
            continue;
        };
        plan.started_ms = pod::parse_time(pod.pointer("/status/startTime"));
        infer_init_done(pod, plan, now_ms);
    }
    out
}

/// App containers only ever start after every init container succeeded:
/// an init container that left nothing behind while an app container did
/// counts as done (with the times its status reported, if it did).
fn infer_init_done(pod: &Value, plan: &mut PodPlan, now_ms: u64) {
    let app_found = plan
        .containers
        .keys()
        .any(|name| matches!(container_spec(pod, name), Some((false, _))));
    if !app_found {
        return;
    }
    let inits = pod
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str));
    for name in inits {
        if plan.containers.contains_key(name) {
            continue;
        }
        let at = plan.started_ms.unwrap_or(now_ms);
        let exit = stored_status(pod, name)
            .and_then(|s| s.get("state"))
            .and_then(exit_of)
            .filter(|e| e.code == 0)
            .unwrap_or(Exit {
                code: 0,
                reason: "Completed".into(),
                started_at_ms: at,
                finished_at_ms: at,
            });
        let mut r = Restored::default();
        restore_exit(&mut r.state, 0, &exit);
        plan.containers.insert(name.to_string(), r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_agent::pod::Step;
    use serde_json::json;

    const NODE: &str = "n1";
    const NOW: u64 = 2_000_000_000_000;

    fn spec(name: &str) -> Value {
        json!({"name": name, "image": "busybox", "command": ["sleep", "1000"]})
    }

    fn pod(uid: &str, node: &str, policy: &str, names: &[&str]) -> Value {
        json!({"metadata": {"name": format!("pod-{uid}"), "namespace": "default", "uid": uid},
            "spec": {"nodeName": node, "restartPolicy": policy,
                "containers": names.iter().map(|n| spec(n)).collect::<Vec<_>>()}})
    }

    fn sandbox(uid: &str, id: &str, attempt: u32, ready: bool) -> FoundPod {
        FoundPod {
            pod_uid: uid.into(),
            runtime_id: id.into(),
            attempt,
            ready,
            ip: Some("10.88.0.5".into()),
        }
    }

    fn container(
        uid: &str,
        name: &str,
        id: &str,
        restarts: u32,
        state: FoundState,
    ) -> FoundContainer {
        FoundContainer {
            pod_uid: uid.into(),
            container: name.into(),
            runtime_id: format!("rt-{id}"),
            pod_runtime_id: Some(format!("sb-{uid}")),
            id: id.into(),
            restarts,
            spec_hash: Some(spec_hash(&spec(name))),
            state,
        }
    }

    fn running(at: u64) -> FoundState {
        FoundState::Running { started_at_ms: at }
    }

    fn exited(code: i32, started: u64, finished: u64) -> FoundState {
        FoundState::Exited {
            code,
            reason: if code == 0 { "Completed" } else { "Error" }.into(),
            started_at_ms: started,
            finished_at_ms: finished,
        }
    }

    fn ids<T>(v: &[T], f: impl Fn(&T) -> &str) -> Vec<String> {
        let mut ids: Vec<String> = v.iter().map(|x| f(x).to_string()).collect();
        ids.sort();
        ids
    }

    /// (uid, container, running id, restarts, last exit code)
    type Want = (
        &'static str,
        &'static str,
        Option<&'static str>,
        u32,
        Option<i32>,
    );

    /// The table: each case is leftovers and pods in, and what is adopted,
    /// restored and removed out.
    #[test]
    fn adopts_restores_and_removes() {
        struct Case {
            name: &'static str,
            pods: Vec<Value>,
            leftovers: Leftovers,
            want: Vec<Want>,
            remove_pods: Vec<&'static str>,
            remove_containers: Vec<&'static str>,
        }
        let sb = |uid: &str| sandbox(uid, &format!("sb-{uid}"), 0, true);
        let cases = vec![
            Case {
                name: "running container of a pod still here: adopted",
                pods: vec![pod("u1", NODE, "Always", &["a"])],
                leftovers: Leftovers {
                    pods: vec![sb("u1")],
                    containers: vec![container("u1", "a", "c1", 2, running(NOW - 60_000))],
                },
                want: vec![("u1", "a", Some("c1"), 2, None)],
                remove_pods: vec![],
                remove_containers: vec![],
            },
            Case {
                name: "pod deleted meanwhile: sandbox and containers removed",
                pods: vec![],
                leftovers: Leftovers {
                    pods: vec![sb("u1")],
                    containers: vec![
                        container("u1", "a", "c1", 0, running(NOW)),
                        container("u1", "b", "c2", 0, exited(1, NOW, NOW)),
                    ],
                },
                want: vec![],
                remove_pods: vec!["sb-u1"],
                remove_containers: vec!["rt-c1", "rt-c2"],
            },
            Case {
                name: "pod bound to another node now: removed",
                pods: vec![pod("u1", "n2", "Always", &["a"])],
                leftovers: Leftovers {
                    pods: vec![sb("u1")],
                    containers: vec![container("u1", "a", "c1", 0, running(NOW))],
                },
                want: vec![],
                remove_pods: vec!["sb-u1"],
                remove_containers: vec!["rt-c1"],
            },
            Case {
                name: "container no longer in the spec, or of no known pod: removed",
                pods: vec![pod("u1", NODE, "Always", &["a"])],
                leftovers: Leftovers {
                    pods: vec![sb("u1")],
                    containers: vec![
                        container("u1", "a", "c1", 0, running(NOW)),
                        container("u1", "gone", "c2", 0, running(NOW)),
                        container("", "", "c3", 0, running(NOW)),
                    ],
                },
                want: vec![("u1", "a", Some("c1"), 0, None)],
                remove_pods: vec![],
                remove_containers: vec!["rt-c2", "rt-c3"],
            },
            Case {
                name: "spec changed: stopped, counted as an exit, restarts go on",
                pods: vec![pod("u1", NODE, "Always", &["a"])],
                leftovers: Leftovers {
                    pods: vec![sb("u1")],
                    containers: vec![FoundContainer {
                        spec_hash: Some("0000000000000000".into()),
                        ..container("u1", "a", "c1", 4, running(NOW - 1000))
                    }],
                },
                want: vec![("u1", "a", None, 4, Some(REPLACED_EXIT_CODE))],
                remove_pods: vec![],
                remove_containers: vec!["rt-c1"],
            },
            Case {
                name: "exited while the agent was away: exit restored, container kept",
                pods: vec![pod("u1", NODE, "Always", &["a"])],
                leftovers: Leftovers {
                    pods: vec![sb("u1")],
                    containers: vec![container(
                        "u1",
                        "a",
                        "c1",
                        3,
                        exited(1, NOW - 5000, NOW - 2000),
                    )],
                },
                want: vec![("u1", "a", None, 3, Some(1))],
                remove_pods: vec![],
                remove_containers: vec![],
            },
            Case {
                name: "newest runs, the one before exited: lastState; older ones go",
                pods: vec![pod("u1", NODE, "Always", &["a"])],
                leftovers: Leftovers {
                    pods: vec![sb("u1")],
                    containers: vec![
                        container("u1", "a", "c0", 0, exited(2, NOW - 9000, NOW - 8000)),
                        container("u1", "a", "c2", 2, running(NOW - 1000)),
                        container("u1", "a", "c1", 1, exited(3, NOW - 7000, NOW - 6000)),
                    ],
                },
                want: vec![("u1", "a", Some("c2"), 2, Some(3))],
                remove_pods: vec![],
                remove_containers: vec!["rt-c0"],
            },
            Case {
                name: "created but never started: removed; the exit before it counts",
                pods: vec![pod("u1", NODE, "Always", &["a"])],
                leftovers: Leftovers {
                    pods: vec![sb("u1")],
                    containers: vec![
                        container("u1", "a", "c1", 1, FoundState::Created),
                        container("u1", "a", "c0", 0, exited(1, NOW - 3000, NOW - 2000)),
                    ],
                },
                want: vec![("u1", "a", None, 0, Some(1))],
                remove_pods: vec![],
                remove_containers: vec!["rt-c1"],
            },
            Case {
                name: "sandbox not ready: it goes, its running container is stopped",
                pods: vec![pod("u1", NODE, "Always", &["a"])],
                leftovers: Leftovers {
                    pods: vec![sandbox("u1", "sb-u1", 0, false)],
                    containers: vec![container("u1", "a", "c1", 0, running(NOW - 1000))],
                },
                want: vec![("u1", "a", None, 0, Some(REPLACED_EXIT_CODE))],
                remove_pods: vec!["sb-u1"],
                remove_containers: vec!["rt-c1"],
            },
            Case {
                name: "two sandboxes: the newest ready one stays",
                pods: vec![pod("u1", NODE, "Always", &["a"])],
                leftovers: Leftovers {
                    pods: vec![
                        sandbox("u1", "sb-old", 0, true),
                        sandbox("u1", "sb-u1", 1, true),
                    ],
                    containers: vec![container("u1", "a", "c1", 0, running(NOW))],
                },
                want: vec![("u1", "a", Some("c1"), 0, None)],
                remove_pods: vec!["sb-old"],
                remove_containers: vec![],
            },
        ];
        for case in cases {
            let p = plan(&case.leftovers, &case.pods, NODE, NOW);
            let mut got = Vec::new();
            for (uid, pp) in &p.pods {
                for (name, r) in &pp.containers {
                    got.push((
                        uid.clone(),
                        name.clone(),
                        r.state.running.clone(),
                        r.state.restarts,
                        r.state.last_exit.as_ref().map(|e| e.code),
                    ));
                }
            }
            let want: Vec<_> = case
                .want
                .iter()
                .map(|(u, n, id, restarts, code)| {
                    (
                        u.to_string(),
                        n.to_string(),
                        id.map(str::to_string),
                        *restarts,
                        *code,
                    )
                })
                .collect();
            assert_eq!(got, want, "{}", case.name);
            assert_eq!(
                ids(&p.remove_pods, |s| &s.runtime_id),
                case.remove_pods,
                "{}",
                case.name
            );
            assert_eq!(
                ids(&p.remove_containers, |c| &c.runtime_id),
                case.remove_containers,
                "{}",
                case.name
            );
        }
    }

    /// Pod u1's ready sandbox and `containers`.
    fn in_sandbox(containers: Vec<FoundContainer>) -> Leftovers {
        Leftovers {
            pods: vec![sandbox("u1", "sb-u1", 0, true)],
            containers,
        }
    }

    /// The restored states of pod u1's containers.
    fn states_of(p: &Plan) -> BTreeMap<String, ContainerState> {
        p.pods["u1"]
            .containers
            .iter()
            .map(|(n, r)| (n.clone(), r.state.clone()))
            .collect()
    }

    #[test]
    fn restored_states_lead_to_the_right_steps() {
        // adopted running: nothing to start
        let always = pod("u1", NODE, "Always", &["a"]);
        let left = in_sandbox(vec![container("u1", "a", "c1", 0, running(NOW - 1000))]);
        let p = plan(&left, std::slice::from_ref(&always), NODE, NOW);
        let states = states_of(&p);
        assert_eq!(pod::steps(&always, &states, NOW), vec![]);
        assert!(p.pods["u1"].containers["a"].running.is_some());

        // exited with code 1 after 3 restarts: CrashLoopBackOff where it
        // stood (40 s after its exit), then a start as the 4th restart
        let left = in_sandbox(vec![container(
            "u1",
            "a",
            "c1",
            3,
            exited(1, NOW - 5000, NOW - 2000),
        )]);
        let p = plan(&left, std::slice::from_ref(&always), NODE, NOW);
        let r = &p.pods["u1"].containers["a"];
        assert_eq!(r.state.not_before_ms, NOW - 2000 + 40_000);
        assert_eq!(r.exited.as_ref().map(|c| c.id.as_str()), Some("c1"));
        let states = BTreeMap::from([("a".to_string(), r.state.clone())]);
        assert_eq!(
            pod::steps(&always, &states, NOW),
            vec![Step::WakeAt(NOW + 38_000)]
        );
        let st = pod::status(&always, &states, "h", NOW, NOW);
        assert_eq!(st["containerStatuses"][0]["restartCount"], 3);
        assert_eq!(
            st["containerStatuses"][0]["state"]["waiting"]["reason"],
            "CrashLoopBackOff"
        );

        // a changed spec under restartPolicy Never: replaced at once all
        // the same, as the kubelet does
        let never = pod("u1", NODE, "Never", &["a"]);
        let left = in_sandbox(vec![FoundContainer {
            spec_hash: Some("0000000000000000".into()),
            ..container("u1", "a", "c1", 2, running(NOW - 1000))
        }]);
        let p = plan(&left, std::slice::from_ref(&never), NODE, NOW);
        let states = states_of(&p);
        assert_eq!(
            pod::steps(&never, &states, NOW),
            vec![Step::Start {
                container: "a".into(),
                init: false
            }]
        );
        assert_eq!(p.remove_containers.len(), 1);

        // the same exit under restartPolicy Never: finished, never rerun
        let never = pod("u1", NODE, "Never", &["a"]);
        let left = in_sandbox(vec![container(
            "u1",
            "a",
            "c1",
            0,
            exited(0, NOW - 5000, NOW - 2000),
        )]);
        let p = plan(&left, std::slice::from_ref(&never), NODE, NOW);
        let states = states_of(&p);
        assert_eq!(pod::steps(&never, &states, NOW), vec![]);
        assert_eq!(
            pod::status(&never, &states, "h", NOW, NOW)["phase"],
            "Succeeded"
        );
    }

    #[test]
    fn the_last_reported_status_of_the_same_run_is_kept() {
        let mut p = pod("u1", NODE, "Always", &["a"]);
        p["status"] = json!({
            "startTime": "2033-05-18T03:33:20Z",
            "containerStatuses": [{"name": "a", "containerID": "c2", "restartCount": 2,
                "ready": true, "started": true,
                "state": {"running": {"startedAt": "2033-05-18T03:40:00Z"}},
                "lastState": {"terminated": {"exitCode": 7, "reason": "Error",
                    "startedAt": "2033-05-18T03:35:00Z", "finishedAt": "2033-05-18T03:36:00Z"}}}]
        });
        let left = in_sandbox(vec![
            container("u1", "a", "c2", 2, running(NOW + 123)),
            container("u1", "a", "c1", 1, exited(7, NOW, NOW)),
        ]);
        let plan_ = plan(&left, std::slice::from_ref(&p), NODE, NOW);
        let pp = &plan_.pods["u1"];
        assert_eq!(pp.started_ms, Some(2_000_000_000_000));
        let r = &pp.containers["a"];
        assert!(r.ready && r.started);
        assert_eq!(r.state.started_at_ms, Some(2_000_000_400_000));
        let last = r.state.last_exit.clone().unwrap_or(Exit {
            code: 0,
            reason: String::new(),
            started_at_ms: 0,
            finished_at_ms: 0,
        });
        assert_eq!((last.code, last.finished_at_ms), (7, 2_000_000_160_000));
        assert_eq!(r.state.backoff, pod::backoff_after(2));

        // another run than the one reported: the runtime's facts, not ready
        p["status"]["containerStatuses"][0]["containerID"] = json!("other");
        let plan_ = plan(&left, std::slice::from_ref(&p), NODE, NOW);
        let r = &plan_.pods["u1"].containers["a"];
        assert!(!r.ready && !r.started);
        assert_eq!(r.state.started_at_ms, Some(NOW + 123));
        assert_eq!(
            r.state.last_exit.as_ref().map(|e| e.finished_at_ms),
            Some(NOW)
        );
    }

    #[test]
    fn init_containers_count_as_done_when_an_app_container_ran() {
        let mut p = pod("u1", NODE, "Always", &["a"]);
        p["spec"]["initContainers"] = json!([spec("init")]);
        let left = in_sandbox(vec![container("u1", "a", "c1", 0, running(NOW))]);
        let pp = plan(&left, std::slice::from_ref(&p), NODE, NOW);
        let states = states_of(&pp);
        assert_eq!(states["init"].last_exit.as_ref().map(|e| e.code), Some(0));
        assert_eq!(pod::steps(&p, &states, NOW), vec![]);
        // only a sandbox left: nothing is inferred, the init container runs
        let left = in_sandbox(vec![]);
        let pp = plan(&left, std::slice::from_ref(&p), NODE, NOW);
        assert!(pp.pods["u1"].containers.is_empty());
        assert!(pp.pods["u1"].sandbox.is_some());
    }

    #[test]
    fn orphan_pod_dirs_are_those_of_pods_gone() {
        let pods = vec![
            json!({"metadata": {"name": "a", "namespace": "ns", "uid": "u-a"}}),
            json!({"metadata": {"name": "b", "namespace": "ns", "uid": "u-b"}}),
        ];
        let names: Vec<String> = [
            "ns_a_u-a",
            "ns_b_u-b",
            "ns_c_u-c",
            "ns_a_u-old",
            "lost+found",
            "x_",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(
            orphan_pod_dirs(&names, &pods),
            vec!["ns_c_u-c", "ns_a_u-old"],
            "a pod deleted meanwhile, and an older pod of the same name"
        );
        assert!(orphan_pod_dirs(&[], &pods).is_empty());
    }
}
