//! What the node agent decides for one pod: which container to start next,
//! when a crashed container may restart (CrashLoopBackOff), the pod
//! status those facts add up to, and, for a pod being deleted, how long
//! its containers get to stop and the status it ends with. Pure: the clock
//! is an argument.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::probe::{ProbeKind, Tracker};

/// First restart delay after the immediate one; doubles up to the cap.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long resets its backoff.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);
/// The waiting reason of a container whose env, volumes or probes cannot
/// be set up (a missing ConfigMap, a bad field); it is tried again.
pub const CONFIG_ERROR: &str = "CreateContainerConfigError";
/// How long such a container waits before it is tried again.
pub const CONFIG_RETRY: Duration = Duration::from_secs(10);
/// ConfigMaps, Secrets and volumes made ready this recently serve a
/// container start; older ones are fetched and written again first.
pub const PREPARED_FRESH: Duration = Duration::from_secs(2);

/// Whether what was prepared at `prepared_ms` is fresh enough to start a
/// container now.
/// `u64::MAX` marks a pod that never needs preparing.
pub fn prepared(prepared_ms: Option<u64>, now_ms: u64) -> bool {
    prepared_ms.is_some_and(|at| {
        at == u64::MAX || now_ms.saturating_sub(at) < PREPARED_FRESH.as_millis() as u64
    })
}

/// One container of a pod, as the agent knows it. Times are milliseconds
/// since the Unix epoch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerState {
    /// The runtime's id while running.
    pub running: Option<String>,
    /// Started, but the runtime has not yet said that it runs (a CRI
    /// container being created).
    pub starting: bool,
    pub started_at_ms: Option<u64>,
    pub restarts: u32,
    pub last_exit: Option<Exit>,
    /// Why it is not running (and will not start now), with a message.
    pub waiting: Option<(String, String)>,
    /// The next start may not happen before this.
    pub not_before_ms: u64,
    pub backoff: Duration,
    /// The readiness probe's reported result; None: no readiness probe.
    pub readiness: Option<bool>,
    /// Whether the startup probe has passed; None: no startup probe.
    pub startup: Option<bool>,
    /// The probes running for the current container and their runs of
    /// results; emptied when the container stops or is being killed.
    pub probes: BTreeMap<ProbeKind, Tracker>,
    /// The current container's probes, as its spec defines them.
    pub probe_specs: Vec<super::probe::Probe>,
    /// Stopped because its spec changed: it starts again whatever the
    /// restart policy says, as the kubelet does (cleared by the start).
    pub replace: bool,
    /// The wait after a failed create or pull ([`record_start_failure`]);
    /// reset when the container runs.
    pub start_backoff: Duration,
}

impl ContainerState {
    /// Up, and its startup and readiness probes (if any) passed.
    pub fn ready(&self, now_ms: u64) -> bool {
        is_up(self, now_ms) && self.readiness.unwrap_or(true) && self.startup.unwrap_or(true)
    }

    /// Set up the probe results for a container that just started.
    pub fn arm_probes(&mut self, probes: Vec<super::probe::Probe>) {
        let has = |k: ProbeKind| probes.iter().any(|p| p.kind == k);
        self.readiness = has(ProbeKind::Readiness).then_some(false);
        self.startup = has(ProbeKind::Startup).then_some(false);
        self.probes = probes
            .iter()
            .map(|p| (p.kind, Tracker::default()))
            .collect();
        self.probe_specs = probes;
    }
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub reason: String,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
}

/// A step the agent should take now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Start {
        container: String,
        init: bool,
    },
    /// Wake up at this time to look again (a backoff ends).
    WakeAt(u64),
}

fn names(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn restart_policy(pod: &Value) -> &str {
    pod.pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always")
}

/// Whether a container that exited with `code` restarts under `policy`.
pub fn should_restart(policy: &str, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

/// Record an exit: the next start waits out the backoff.
pub fn record_exit(state: &mut ContainerState, code: i32, reason: &str, now_ms: u64) {
    let started = state.started_at_ms.unwrap_or(now_ms);
    if now_ms.saturating_sub(started) >= BACKOFF_RESET_AFTER.as_millis() as u64 {
        state.backoff = Duration::ZERO;
    }
    state.running = None;
    state.starting = false;
    state.probes.clear();
    state.readiness = state.readiness.map(|_| false);
    state.startup = state.startup.map(|_| false);
    state.last_exit = Some(Exit {
        code,
        reason: reason.to_string(),
        started_at_ms: started,
        finished_at_ms: now_ms,
    });
    state.not_before_ms = now_ms + state.backoff.as_millis() as u64;
    state.backoff = if state.backoff.is_zero() {
        BACKOFF_INITIAL
    } else {
        (state.backoff * 2).min(BACKOFF_MAX)
    };
}

/// Reasons a container waits with that are tried again after a backoff
/// (the others wait for a change of the pod's spec).
pub fn retried(reason: &str) -> bool {
    matches!(
        reason,
        CONFIG_ERROR
            | "ErrImagePull"
            | IMAGE_PULL_BACKOFF
            | "ErrImageNeverPull"
            | "CreateContainerError"
            | "CreatePodSandboxError"
            | "RunContainerError"
    )
}

/// Kubernetes' waiting reason between two failed pulls of an image.
pub const IMAGE_PULL_BACKOFF: &str = "ImagePullBackOff";

/// A container the runtime could not create or start (`ErrImagePull`,
/// `CreateContainerError`, …): it never ran, so no exit and no restart is
/// counted, as the kubelet counts them; it waits with `reason` and is tried
/// again after a backoff of its own (10 s doubling to 5 min, as the
/// kubelet's image pull backoff).
pub fn record_start_failure(state: &mut ContainerState, reason: &str, message: &str, now_ms: u64) {
    state.running = None;
    state.starting = false;
    state.probes.clear();
    state.waiting = Some((reason.to_string(), message.to_string()));
    state.start_backoff = if state.start_backoff.is_zero() {
        BACKOFF_INITIAL
    } else {
        (state.start_backoff * 2).min(BACKOFF_MAX)
    };
    state.not_before_ms = now_ms + state.start_backoff.as_millis() as u64;
}

/// The backoff [`record_exit`] holds after `exits` exits in a row (none
/// after a run long enough to reset it): what a restarted agent resumes a
/// container's CrashLoopBackOff from.
pub fn backoff_after(exits: u32) -> Duration {
    if exits == 0 {
        return Duration::ZERO;
    }
    // 2^9 * 10 s is past the cap already
    let doublings = (exits - 1).min(9);
    (BACKOFF_INITIAL * (1u32 << doublings)).min(BACKOFF_MAX)
}

fn init_done(state: Option<&ContainerState>) -> bool {
    state.is_some_and(|s| s.running.is_none() && s.last_exit.as_ref().is_some_and(|e| e.code == 0))
}

/// Whether a container runs now: started, and past its runtime's start-up
/// delay.
pub fn is_up(s: &ContainerState, now_ms: u64) -> bool {
    s.running.is_some() && !s.starting && s.started_at_ms.is_none_or(|at| at <= now_ms)
}

/// Put the pod's own address (from its sandbox) into a status that
/// `status` built with the node's address.
pub fn set_pod_ip(status: &mut Value, ip: &str) {
    status["podIP"] = json!(ip);
    status["podIPs"] = json!([{ "ip": ip }]);
}

/// Start the container now if `not_before_ms` has passed, else wake up
/// then (the earliest of the pod's wake-ups).
fn start_or_wake(
    name: &str,
    init: bool,
    not_before_ms: u64,
    now_ms: u64,
    out: &mut Vec<Step>,
    wake: &mut Option<u64>,
) {
    if now_ms >= not_before_ms {
        out.push(Step::Start {
            container: name.to_string(),
            init,
        });
    } else {
        *wake = Some(wake.map_or(not_before_ms, |w| w.min(not_before_ms)));
    }
}

/// The steps for one pod now: init containers one at a time, in order, each
/// to success; then every app container, restarted as the policy says.
pub fn steps(pod: &Value, states: &BTreeMap<String, ContainerState>, now_ms: u64) -> Vec<Step> {
    let policy = restart_policy(pod);
    let mut out = Vec::new();
    let mut wake = None::<u64>;
    let mut consider = |name: &str, init: bool, out: &mut Vec<Step>| -> bool {
        let s = states.get(name);
        match s {
            None => {
                out.push(Step::Start {
                    container: name.to_string(),
                    init,
                });
                false
            }
            Some(s) if s.running.is_some() => {
                // a runtime with a start-up delay: look again when it is up
                if let Some(at) = s.started_at_ms.filter(|at| *at > now_ms) {
                    wake = Some(wake.map_or(at, |w| w.min(at)));
                }
                false
            }
            Some(s)
                if s.waiting
                    .as_ref()
                    .is_some_and(|(r, _)| r != "CrashLoopBackOff")
                    && (s.last_exit.is_none()
                        || s.waiting.as_ref().is_some_and(|(r, _)| retried(r))) =>
            {
                // a config error, a failed pull or create is tried again
                // after its backoff; other reasons wait for a change (a new
                // pod spec)
                if s.waiting.as_ref().is_some_and(|(r, _)| retried(r)) {
                    start_or_wake(name, init, s.not_before_ms, now_ms, out, &mut wake);
                }
                false
            }
            Some(s) => {
                let code = s.last_exit.as_ref().map_or(1, |e| e.code);
                // init containers under Always retry like OnFailure
                let restart = s.replace
                    || if init {
                        code != 0 && policy != "Never"
                    } else {
                        should_restart(policy, code)
                    };
                if !restart {
                    return init && code == 0;
                }
                start_or_wake(name, init, s.not_before_ms, now_ms, out, &mut wake);
                false
            }
        }
    };
    for name in names(pod, "initContainers") {
        if init_done(states.get(&name)) {
            continue;
        }
        consider(&name, true, &mut out);
        if let Some(w) = wake {
            out.push(Step::WakeAt(w));
        }
        return out;
    }
    for name in names(pod, "containers") {
        consider(&name, false, &mut out);
    }
    if let Some(w) = wake {
        out.push(Step::WakeAt(w));
    }
    out
}

fn time(ms: u64) -> String {
    let ts = jiff::Timestamp::from_millisecond(ms as i64).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    kubus_api::lifecycle::format_time(ts)
}

/// A status time (as [`status`] writes them) in milliseconds since the
/// Unix epoch; None when absent or not a time.
pub fn parse_time(v: Option<&Value>) -> Option<u64> {
    let ts = v?.as_str()?.parse::<jiff::Timestamp>().ok()?;
    u64::try_from(ts.as_millisecond()).ok()
}

fn container_status(name: &str, image: &str, s: Option<&ContainerState>, now_ms: u64) -> Value {
    let Some(s) = s else {
        return json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0, "started": false,
            "state": {"waiting": {"reason": "ContainerCreating"}}});
    };
    let up = is_up(s, now_ms);
    let state = if up {
        json!({"running": {"startedAt": time(s.started_at_ms.unwrap_or(now_ms))}})
    } else if s.running.is_some() {
        json!({"waiting": {"reason": "ContainerCreating"}})
    } else if let Some((reason, message)) = &s.waiting {
        json!({"waiting": {"reason": reason, "message": message}})
    } else if let Some(e) = s.last_exit.as_ref().filter(|_| s.not_before_ms > now_ms) {
        json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
            "back-off {}s restarting failed container={name}", (s.not_before_ms - e.finished_at_ms) / 1000)}})
    } else if let Some(e) = &s.last_exit {
        json!({"terminated": {"exitCode": e.code, "reason": e.reason,
            "startedAt": time(e.started_at_ms), "finishedAt": time(e.finished_at_ms)}})
    } else {
        json!({"waiting": {"reason": "ContainerCreating"}})
    };
    let mut status = json!({"name": name, "image": image, "imageID": "", "containerID": s.running.clone().unwrap_or_default(),
        "ready": s.ready(now_ms), "started": up && s.startup.unwrap_or(true), "restartCount": s.restarts, "state": state});
    if let (Some(e), true) = (
        &s.last_exit,
        s.running.is_some() || s.not_before_ms > now_ms,
    ) {
        status["lastState"] = json!({"terminated": {"exitCode": e.code, "reason": e.reason,
            "startedAt": time(e.started_at_ms), "finishedAt": time(e.finished_at_ms)}});
    }
    status
}

fn condition(kind: &str, ok: bool, since: &str) -> Value {
    json!({"type": kind, "status": if ok {"True"} else {"False"}, "lastTransitionTime": since})
}

/// The pod status the container states add up to.
pub fn status(
    pod: &Value,
    states: &BTreeMap<String, ContainerState>,
    host_ip: &str,
    started_ms: u64,
    now_ms: u64,
) -> Value {
    let spec_list = |field: &str| -> Vec<(String, String)> {
        pod.pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        let s = |k: &str| {
                            c.get(k)
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_string()
                        };
                        (s("name"), s("image"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let inits = spec_list("initContainers");
    let apps = spec_list("containers");
    let policy = restart_policy(pod);
    let initialized = inits.iter().all(|(n, _)| init_done(states.get(n)));
    let init_failed = policy == "Never"
        && inits.iter().any(|(n, _)| {
            states
                .get(n)
                .and_then(|s| s.last_exit.as_ref())
                .is_some_and(|e| e.code != 0)
        });
    let app_states: Vec<Option<&ContainerState>> =
        apps.iter().map(|(n, _)| states.get(n)).collect();
    let all_ready = !apps.is_empty()
        && app_states
            .iter()
            .all(|s| s.is_some_and(|s| s.ready(now_ms)));
    let any_started = app_states
        .iter()
        .any(|s| s.is_some_and(|s| is_up(s, now_ms) || s.last_exit.is_some()));
    let finished: Vec<i32> = app_states
        .iter()
        .filter_map(|s| {
            let s = (*s)?;
            let e = s.last_exit.as_ref()?;
            (s.running.is_none() && !should_restart(policy, e.code)).then_some(e.code)
        })
        .collect();
    let phase = if init_failed {
        "Failed"
    } else if !apps.is_empty() && finished.len() == apps.len() {
        if finished.iter().all(|c| *c == 0) {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if initialized && any_started {
        "Running"
    } else {
        "Pending"
    };
    let since = time(started_ms);
    let mut status = json!({
        "phase": phase,
        "hostIP": host_ip,
        "podIP": host_ip,
        "podIPs": [{"ip": host_ip}],
        "startTime": since,
        "conditions": [
            condition("PodScheduled", true, &since),
            condition("Initialized", initialized, &since),
            condition("ContainersReady", all_ready, &since),
            condition("Ready", all_ready, &since),
        ],
        "containerStatuses": apps.iter().map(|(n, i)| container_status(n, i, states.get(n), now_ms)).collect::<Vec<_>>(),
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(inits
            .iter()
            .map(|(n, i)| container_status(n, i, states.get(n), now_ms))
            .collect::<Vec<_>>());
    }
    status
}

/// How long the containers of a pod being stopped get between SIGTERM and
/// SIGKILL, at most `max`: for a pod deleted gracefully, the time left
/// until its `metadata.deletionTimestamp` (never more than its
/// `deletionGracePeriodSeconds`, so a skewed clock cannot stretch it);
/// otherwise (a pod removed at once, a node shutting down) its
/// `spec.terminationGracePeriodSeconds` (default 30 s).
pub fn stop_grace(pod: &Value, now_ms: u64, max: Duration) -> Duration {
    let secs = |pointer: &str| {
        pod.pointer(pointer)
            .and_then(Value::as_i64)
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
    };
    let spec = secs("/spec/terminationGracePeriodSeconds").unwrap_or(Duration::from_secs(
        kubus_api::lifecycle::GRACE_PERIOD_DEFAULT_SECS.unsigned_abs(),
    ));
    let Some(deadline) = kubus_api::lifecycle::deletion_deadline(pod) else {
        return spec.min(max);
    };
    let deadline_ms = u64::try_from(deadline.as_millisecond()).unwrap_or(0);
    let left = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    let granted = secs("/metadata/deletionGracePeriodSeconds").unwrap_or(spec);
    left.min(granted).min(max)
}

/// The last status of a pod whose containers were stopped because it is
/// being deleted, as the kubelet reports it before the pod goes: every
/// container terminated (no restart pending), not ready, and the phase
/// `Succeeded` when every app container's last run exited 0, else
/// `Failed`.
pub fn final_status(
    pod: &Value,
    states: &BTreeMap<String, ContainerState>,
    host_ip: &str,
    started_ms: u64,
    now_ms: u64,
) -> Value {
    let mut stopped = states.clone();
    for s in stopped.values_mut() {
        s.running = None;
        s.starting = false;
        s.waiting = None;
        s.not_before_ms = 0;
    }
    let mut st = status(pod, &stopped, host_ip, started_ms, now_ms);
    let apps = names(pod, "containers");
    let all_ok = !apps.is_empty()
        && apps.iter().all(|n| {
            stopped
                .get(n)
                .and_then(|s| s.last_exit.as_ref())
                .is_some_and(|e| e.code == 0)
        });
    st["phase"] = json!(if all_ok { "Succeeded" } else { "Failed" });
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(policy: &str, inits: &[&str], apps: &[&str]) -> Value {
        let cs = |ns: &[&str]| {
            ns.iter()
                .map(|n| json!({"name": n, "image": "busybox"}))
                .collect::<Vec<_>>()
        };
        json!({"spec": {"restartPolicy": policy, "initContainers": cs(inits), "containers": cs(apps)}})
    }

    fn running(id: &str) -> ContainerState {
        ContainerState {
            running: Some(id.into()),
            started_at_ms: Some(0),
            ..ContainerState::default()
        }
    }

    fn exited(code: i32, not_before_ms: u64) -> ContainerState {
        ContainerState {
            last_exit: Some(Exit {
                code,
                reason: if code == 0 {
                    "Completed".into()
                } else {
                    "Error".into()
                },
                started_at_ms: 0,
                finished_at_ms: 1000,
            }),
            not_before_ms,
            ..ContainerState::default()
        }
    }

    fn start(name: &str, init: bool) -> Step {
        Step::Start {
            container: name.into(),
            init,
        }
    }

    #[test]
    fn start_order_and_restarts() {
        let mut s = BTreeMap::new();
        let p = pod("Always", &["init"], &["a", "b"]);
        assert_eq!(steps(&p, &s, 0), vec![start("init", true)]);
        s.insert("init".into(), running("1"));
        assert_eq!(steps(&p, &s, 0), vec![]);
        s.insert("init".into(), exited(1, 5000));
        assert_eq!(steps(&p, &s, 2000), vec![Step::WakeAt(5000)]);
        assert_eq!(steps(&p, &s, 5000), vec![start("init", true)]);
        s.insert("init".into(), exited(0, 0));
        assert_eq!(
            steps(&p, &s, 5000),
            vec![start("a", false), start("b", false)]
        );
        s.insert("a".into(), running("2"));
        s.insert("b".into(), exited(0, 9000));
        assert_eq!(steps(&p, &s, 6000), vec![Step::WakeAt(9000)]);
        let never = pod("Never", &[], &["b"]);
        assert_eq!(steps(&never, &s, 9000), vec![]);
        let on_failure = pod("OnFailure", &[], &["b"]);
        assert_eq!(steps(&on_failure, &s, 9000), vec![]);
    }

    #[test]
    fn failed_pulls_count_no_restart_and_back_off() {
        let mut s = ContainerState::default();
        record_start_failure(&mut s, "ErrImagePull", "pull access denied", 1_000);
        assert!(s.last_exit.is_none());
        assert_eq!(s.not_before_ms, 11_000);
        record_start_failure(&mut s, "ErrImagePull", "pull access denied", 11_000);
        assert_eq!(s.not_before_ms, 31_000, "10 s, then 20 s");
        let st = container_status("c", "nginx:nope", Some(&s), 12_000);
        assert_eq!(st["restartCount"], 0);
        assert_eq!(st["state"]["waiting"]["reason"], "ErrImagePull");
        assert!(st.get("lastState").is_none(), "{st}");
        assert!(retried("ErrImagePull") && retried(IMAGE_PULL_BACKOFF));
        assert!(!retried("CrashLoopBackOff"));
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut s = running("1");
        record_exit(&mut s, 1, "Error", 1_000);
        assert_eq!(s.not_before_ms, 1_000, "first restart is immediate");
        let mut delays = vec![];
        for i in 0..8 {
            s.started_at_ms = Some(10_000 * i);
            record_exit(&mut s, 1, "Error", 10_000 * i + 1);
            delays.push((s.not_before_ms - (10_000 * i + 1)) / 1000);
        }
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300, 300]);
        s.started_at_ms = Some(0);
        record_exit(&mut s, 1, "Error", 700_000);
        assert_eq!(s.not_before_ms, 700_000, "a long run resets the backoff");
    }

    #[test]
    fn backoff_after_matches_record_exit() {
        let mut s = running("1");
        for exits in 0..12u32 {
            assert_eq!(backoff_after(exits), s.backoff, "after {exits} exits");
            s.started_at_ms = Some(0);
            record_exit(&mut s, 1, "Error", 1_000);
        }
        assert_eq!(backoff_after(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn status_times_round_trip() {
        let st = status(
            &pod("Always", &[], &["a"]),
            &BTreeMap::new(),
            "h",
            1_700_000_000_000,
            0,
        );
        assert_eq!(parse_time(st.get("startTime")), Some(1_700_000_000_000));
        assert_eq!(parse_time(Some(&json!("not a time"))), None);
        assert_eq!(parse_time(None), None);
    }

    #[test]
    fn phases() {
        let p = pod("Never", &[], &["a"]);
        let mut s = BTreeMap::new();
        assert_eq!(status(&p, &s, "127.0.0.1", 0, 0)["phase"], "Pending");
        s.insert("a".into(), running("1"));
        let st = status(&p, &s, "127.0.0.1", 0, 0);
        assert_eq!(st["phase"], "Running");
        assert_eq!(st["conditions"][3]["status"], "True");
        s.insert("a".into(), exited(0, 0));
        assert_eq!(status(&p, &s, "127.0.0.1", 0, 0)["phase"], "Succeeded");
        s.insert("a".into(), exited(2, 0));
        assert_eq!(status(&p, &s, "127.0.0.1", 0, 0)["phase"], "Failed");
        let always = pod("Always", &[], &["a"]);
        s.insert("a".into(), exited(2, 10_000));
        let st = status(&always, &s, "127.0.0.1", 0, 5_000);
        assert_eq!(st["phase"], "Running");
        assert_eq!(
            st["containerStatuses"][0]["state"]["waiting"]["reason"],
            "CrashLoopBackOff"
        );
    }

    /// Issue 5: (what, spec grace, deletion at (s), granted, now (ms)) → grace (ms)
    #[test]
    fn stop_grace_table() {
        let max = Duration::from_secs(30);
        let base = 1_767_225_600_000u64; // 2026-01-01T00:00:00Z
        type Case = (
            &'static str,
            Option<i64>,
            Option<&'static str>,
            Option<i64>,
            u64,
            u64,
        );
        let cases: Vec<Case> = vec![
            ("not deleted: the spec's", Some(5), None, None, 0, 5_000),
            ("not deleted: default", None, None, None, 0, 30_000),
            ("not deleted: capped", Some(600), None, None, 0, 30_000),
            (
                "time left",
                Some(5),
                Some("2026-01-01T00:00:05Z"),
                Some(5),
                1_500,
                3_500,
            ),
            (
                "all of it",
                Some(5),
                Some("2026-01-01T00:00:05Z"),
                Some(5),
                0,
                5_000,
            ),
            (
                "never more than granted",
                Some(5),
                Some("2026-01-01T00:00:09Z"),
                Some(2),
                0,
                2_000,
            ),
            (
                "past the deadline",
                Some(5),
                Some("2026-01-01T00:00:05Z"),
                Some(5),
                9_000,
                0,
            ),
            (
                "shortened below the spec",
                Some(20),
                Some("2026-01-01T00:00:01Z"),
                Some(1),
                0,
                1_000,
            ),
            (
                "a long grace is capped",
                None,
                Some("2026-01-01T00:10:00Z"),
                Some(600),
                0,
                30_000,
            ),
        ];
        for (what, spec, at, granted, now, want) in cases {
            let mut p = json!({"metadata": {}, "spec": {}});
            if let Some(g) = spec {
                p["spec"]["terminationGracePeriodSeconds"] = json!(g);
            }
            if let Some(t) = at {
                p["metadata"]["deletionTimestamp"] = json!(t);
            }
            if let Some(g) = granted {
                p["metadata"]["deletionGracePeriodSeconds"] = json!(g);
            }
            let got = stop_grace(&p, base + now, max);
            assert_eq!(got, Duration::from_millis(want), "{what}");
        }
    }

    #[test]
    fn a_deleted_pod_ends_terminal() {
        let p = pod("Always", &[], &["a", "b"]);
        let mut s = BTreeMap::new();
        s.insert("a".into(), exited(0, 10_000));
        s.insert("b".into(), exited(0, 10_000));
        let st = final_status(&p, &s, "h", 0, 5_000);
        assert_eq!(st["phase"], "Succeeded");
        assert_eq!(
            st["containerStatuses"][0]["state"]["terminated"]["exitCode"], 0,
            "terminated, not CrashLoopBackOff: {st}"
        );
        assert_eq!(st["conditions"][3]["status"], "False", "not ready");
        s.insert("b".into(), exited(143, 0));
        assert_eq!(final_status(&p, &s, "h", 0, 5_000)["phase"], "Failed");
        s.remove("b");
        assert_eq!(
            final_status(&p, &s, "h", 0, 5_000)["phase"],
            "Failed",
            "a container that never ran"
        );
    }

    #[test]
    fn probes_gate_readiness_and_started() {
        let p = pod("Always", &[], &["a"]);
        let mut s = BTreeMap::new();
        let mut a = running("1");
        a.readiness = Some(false);
        a.startup = Some(false);
        s.insert("a".into(), a.clone());
        let st = status(&p, &s, "127.0.0.1", 0, 0);
        assert_eq!(st["phase"], "Running");
        assert_eq!(st["containerStatuses"][0]["ready"], false);
        assert_eq!(st["containerStatuses"][0]["started"], false);
        assert_eq!(st["conditions"][2]["status"], "False", "ContainersReady");
        assert_eq!(st["conditions"][3]["status"], "False", "Ready");
        a.startup = Some(true);
        s.insert("a".into(), a.clone());
        let st = status(&p, &s, "127.0.0.1", 0, 0);
        assert_eq!(st["containerStatuses"][0]["started"], true);
        assert_eq!(st["containerStatuses"][0]["ready"], false);
        a.readiness = Some(true);
        s.insert("a".into(), a.clone());
        let st = status(&p, &s, "127.0.0.1", 0, 0);
        assert_eq!(st["containerStatuses"][0]["ready"], true);
        assert_eq!(st["conditions"][3]["status"], "True");
        // a container the runtime has not yet said runs is not up
        let mut creating = running("2");
        creating.starting = true;
        assert!(!is_up(&creating, 0));
        s.insert("a".into(), creating);
        let st = status(&p, &s, "127.0.0.1", 0, 0);
        assert_eq!(
            st["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ContainerCreating"
        );
        assert_eq!(st["phase"], "Pending");
        // an exit disarms the probes and the next container starts unready
        a.probes.insert(ProbeKind::Readiness, Tracker::default());
        record_exit(&mut a, 137, "Error", 1000);
        assert!(a.probes.is_empty());
        assert_eq!((a.readiness, a.startup), (Some(false), Some(false)));
    }

    #[test]
    fn config_errors_are_tried_again_after_a_pause() {
        let p = pod("Always", &[], &["a"]);
        let mut s = BTreeMap::new();
        s.insert(
            "a".into(),
            ContainerState {
                waiting: Some((CONFIG_ERROR.into(), "configmap \"x\" not found".into())),
                not_before_ms: 10_000,
                ..ContainerState::default()
            },
        );
        assert_eq!(steps(&p, &s, 5_000), vec![Step::WakeAt(10_000)]);
        assert_eq!(steps(&p, &s, 10_000), vec![start("a", false)]);
        let st = status(&p, &s, "127.0.0.1", 0, 5_000);
        assert_eq!(st["phase"], "Pending");
        assert_eq!(
            st["containerStatuses"][0]["state"]["waiting"]["reason"],
            CONFIG_ERROR
        );
        // other waiting reasons wait for a new spec
        s.insert(
            "a".into(),
            ContainerState {
                waiting: Some(("CommandRequired".into(), "no command".into())),
                ..ContainerState::default()
            },
        );
        assert_eq!(steps(&p, &s, 50_000), vec![]);
        assert!(prepared(Some(1_000), 2_000));
        assert!(!prepared(
            Some(1_000),
            1_000 + PREPARED_FRESH.as_millis() as u64
        ));
        assert!(!prepared(None, 0));
        assert!(prepared(Some(u64::MAX), 5_000_000), "never needs preparing");
    }
}
