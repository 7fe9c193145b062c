//! The Job controller: runs a Job's pods until `completions` of them
//! succeed (or, without completions, until one does and the rest stop),
//! `parallelism` at a time; retries failed pods with an exponential delay
//! up to `backoffLimit`; fails the Job past `activeDeadlineSeconds`;
//! gives each index of an `Indexed` Job its own pod
//! (`JOB_COMPLETION_INDEX`); stops its pods while `suspend`ed; deletes a
//! finished Job `ttlSecondsAfterFinished` later. The pods of a finished
//! Job are kept until the Job goes (the garbage collector then takes them).
//!
//! [`reconcile`] decides from the Job, its pods and the writes under way;
//! [`JobReconciler`] puts it on the controller runtime.

use std::collections::BTreeSet;
use std::time::Duration;

use kubus_api::{
    meta::{self, int_at},
    pod, Kind, ObjectRef,
};
use serde_json::{json, Value};

use crate::runtime::{Pending, Plan, Planned, Reconcile, View, Watch};
use crate::workload::{
    condition_true, conditions, pod_from, set_condition, time, time_at, with_status,
};
use crate::write::Write;

/// The annotation and label carrying an Indexed Job pod's index.
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// The environment variable an Indexed Job's containers read it from.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// The first delay before a failed pod is replaced; it doubles with each
/// failure, up to [`FAILURE_BACKOFF_MAX`] (Kubernetes' values).
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(10);
pub const FAILURE_BACKOFF_MAX: Duration = Duration::from_secs(360);
/// Most pod writes one sync issues.
pub const WRITES_PER_SYNC_MAX: usize = 64;

/// The index of an Indexed Job's pod.
fn index_of(pod: &Value) -> Option<i64> {
    meta::annotations(pod)
        .get(COMPLETION_INDEX_ANNOTATION)?
        .parse()
        .ok()
}

/// When a failed pod stopped: its last container's finish, else its
/// Ready condition's transition.
fn finished_at(pod: &Value) -> Option<jiff::Timestamp> {
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    statuses
        .into_iter()
        .flatten()
        .filter_map(|c| time_at(c, "/state/terminated/finishedAt"))
        .max()
        .or_else(|| pod::condition(pod, "Ready").and_then(|c| time_at(c, "/lastTransitionTime")))
}

/// What a Job's pods add up to.
#[derive(Debug, Default)]
struct Tally<'a> {
    active: Vec<&'a Value>,
    ready: i64,
    terminating: i64,
    succeeded: i64,
    failed: i64,
    succeeded_indexes: BTreeSet<i64>,
    active_indexes: BTreeSet<i64>,
    last_failure: Option<jiff::Timestamp>,
}

fn tally<'a>(pods: &[&'a Value], on_failure: bool) -> Tally<'a> {
    let mut t = Tally::default();
    for &p in pods {
        match p.pointer("/status/phase").and_then(Value::as_str) {
            Some("Succeeded") => {
                t.succeeded += 1;
                t.succeeded_indexes.extend(index_of(p));
            }
            Some("Failed") => {
                t.failed += 1;
                t.last_failure = t.last_failure.max(finished_at(p));
            }
            _ if pod::is_terminating(p) => t.terminating += 1,
            _ => {
                t.active.push(p);
                t.active_indexes.extend(index_of(p));
                if pod::is_ready(p) {
                    t.ready += 1;
                }
                if on_failure {
                    // restarts in place count toward the backoff limit
                    let restarts: i64 = p
                        .pointer("/status/containerStatuses")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
                        .sum();
                    t.failed += restarts;
                }
            }
        }
    }
    t
}

/// `0,2-4,7`: indexes as Kubernetes writes `completedIndexes`.
pub fn index_ranges(indexes: &BTreeSet<i64>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        out.push(if end == start {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}

/// Parse `completedIndexes` back (unreadable parts are skipped).
pub fn parse_index_ranges(text: &str) -> BTreeSet<i64> {
    let mut out = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
            // bounded: an index is below completions, itself bounded by i32
            out.extend(a..=b.min(a.saturating_add(1_000_000)));
        }
    }
    out
}

/// The pod for index `i` of an Indexed Job (`None`: a NonIndexed pod).
pub fn job_pod(job: &Value, index: Option<i64>) -> Value {
    let Some(i) = index else {
        return pod_from(job, None);
    };
    let name = meta::name(job).unwrap_or("job");
    let mut p = crate::workload::from_template(
        job,
        job.pointer("/spec/template"),
        "v1",
        "Pod",
        None,
        &format!("{name}-{i}-"),
    );
    let text = i.to_string();
    if let Some(m) = p.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in ["annotations", "labels"] {
            let map = m.entry(field).or_insert_with(|| json!({}));
            if let Some(map) = map.as_object_mut() {
                map.insert(COMPLETION_INDEX_ANNOTATION.into(), json!(text));
            }
        }
    }
    if let Some(spec) = p.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("hostname")
            .or_insert_with(|| json!(format!("{name}-{i}")));
        for c in pod::containers_mut(spec) {
            let env = c
                .as_object_mut()
                .map(|c| c.entry("env").or_insert_with(|| json!([])));
            if let Some(env) = env.and_then(Value::as_array_mut) {
                env.retain(|e| e.get("name").and_then(Value::as_str) != Some(COMPLETION_INDEX_ENV));
                env.push(json!({"name": COMPLETION_INDEX_ENV, "value": text}));
            }
        }
    }
    p
}

/// The delay before replacing a pod after `failed` failures.
pub fn failure_backoff(failed: i64) -> Duration {
    let doublings = u32::try_from(failed.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    FAILURE_BACKOFF
        .saturating_mul(1 << doublings)
        .min(FAILURE_BACKOFF_MAX)
}

/// What one sync of a Job does.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decision {
    /// Pods to create, in order.
    pub creates: Vec<Value>,
    /// Pods to delete.
    pub deletes: Vec<ObjectRef>,
    /// The Job with its new status, and the Event the change deserves.
    pub status: Option<(Value, Option<(&'static str, String)>)>,
    /// Delete the Job itself (its TTL after finishing is over).
    pub delete_job: bool,
    pub requeue_after: Option<Duration>,
}

fn refs<'a>(pods: impl Iterator<Item = &'a Value>) -> Vec<ObjectRef> {
    pods.filter_map(meta::object_ref).collect()
}

/// Decide one sync of `job` from its pods and the writes under way.
pub fn reconcile(job: &Value, pods: &[&Value], pending: Pending, now: jiff::Timestamp) -> Decision {
    let mut d = Decision::default();
    if kubus_api::lifecycle::is_marked(job) {
        return d;
    }
    let parallelism = int_at(job, "/spec/parallelism").unwrap_or(1).max(0);
    let completions = int_at(job, "/spec/completions").map(|c| c.max(0));
    let backoff_limit = int_at(job, "/spec/backoffLimit").unwrap_or(6).max(0);
    let indexed = job.pointer("/spec/completionMode").and_then(Value::as_str) == Some("Indexed");
    let suspended = job.pointer("/spec/suspend") == Some(&Value::Bool(true));
    let on_failure = job
        .pointer("/spec/template/spec/restartPolicy")
        .and_then(Value::as_str)
        == Some("OnFailure");
    let mut t = tally(pods, on_failure);
    // pods may be deleted after they were counted: counts never go back
    t.succeeded = t
        .succeeded
        .max(int_at(job, "/status/succeeded").unwrap_or(0));
    t.failed = t.failed.max(int_at(job, "/status/failed").unwrap_or(0));
    if indexed {
        let recorded = job
            .pointer("/status/completedIndexes")
            .and_then(Value::as_str)
            .map(parse_index_ranges)
            .unwrap_or_default();
        t.succeeded_indexes.extend(recorded);
        if let Some(c) = completions {
            t.succeeded_indexes.retain(|i| *i < c);
        }
    }
    let now_text = time(now);
    let mut conds = conditions(job);
    let mut event: Option<(&'static str, String)> = None;
    let mut start_time = job.pointer("/status/startTime").cloned();
    let mut completion_time = job.pointer("/status/completionTime").cloned();
    let finished = condition_true(job, "Complete") || condition_true(job, "Failed");

    if finished {
        // a failed Job's pods stop; a finished Job's pods stay
        if pending.deletes == 0 {
            d.deletes = refs(t.active.iter().copied().take(WRITES_PER_SYNC_MAX));
        }
        if let Some(ttl) = int_at(job, "/spec/ttlSecondsAfterFinished") {
            let done_at = time_at(job, "/status/completionTime").or_else(|| {
                pod::condition(job, "Failed").and_then(|c| time_at(c, "/lastTransitionTime"))
            });
            let expires = done_at.map(|t| t.as_second().saturating_add(ttl));
            match expires {
                Some(at) if now.as_second() >= at => {
                    d.delete_job = true;
                    return d;
                }
                Some(at) => {
                    d.requeue_after = Some(Duration::from_secs(
                        u64::try_from(at - now.as_second()).unwrap_or(1).max(1),
                    ));
                }
                None => {}
            }
        }
    } else if suspended {
        if pending.deletes == 0 {
            d.deletes = refs(t.active.iter().copied().take(WRITES_PER_SYNC_MAX));
        }
        if !condition_true(job, "Suspended") {
            event = Some(("Suspended", "Job suspended".into()));
        }
        set_condition(
            &mut conds,
            "Suspended",
            true,
            "JobSuspended",
            "Job suspended",
            &now_text,
        );
        start_time = None;
    } else {
        if condition_true(job, "Suspended") {
            set_condition(
                &mut conds,
                "Suspended",
                false,
                "JobResumed",
                "Job resumed",
                &now_text,
            );
            event = Some(("Resumed", "Job resumed".into()));
        }
        let started = time_at(job, "/status/startTime").unwrap_or(now);
        if start_time.is_none() {
            start_time = Some(json!(now_text));
        }
        let deadline = int_at(job, "/spec/activeDeadlineSeconds")
            .map(|s| started.as_second().saturating_add(s));
        let complete = match (indexed, completions) {
            (true, Some(c)) => t.succeeded_indexes.len() as i64 >= c,
            (_, Some(c)) => t.succeeded >= c,
            (_, None) => t.succeeded > 0 && t.active.is_empty(),
        };
        let failure = if t.failed > backoff_limit {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if deadline.is_some_and(|at| now.as_second() >= at) {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else {
            None
        };
        if let Some((reason, message)) = failure.filter(|_| !complete) {
            set_condition(&mut conds, "Failed", true, reason, message, &now_text);
            event = Some((reason, message.to_string()));
            if pending.deletes == 0 {
                d.deletes = refs(t.active.iter().copied().take(WRITES_PER_SYNC_MAX));
            }
        } else if complete {
            set_condition(
                &mut conds,
                "Complete",
                true,
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                &now_text,
            );
            completion_time = Some(json!(now_text));
            event = Some(("Completed", "Job completed".into()));
            if pending.deletes == 0 {
                d.deletes = refs(t.active.iter().copied().take(WRITES_PER_SYNC_MAX));
            }
        } else {
            plan_pods(
                job,
                &t,
                parallelism,
                completions,
                indexed,
                pending,
                now,
                &mut d,
            );
            if let Some(at) = deadline {
                let left =
                    Duration::from_secs(u64::try_from(at - now.as_second()).unwrap_or(0).max(1));
                d.requeue_after = Some(d.requeue_after.map_or(left, |r| r.min(left)));
            }
        }
    }

    let active = t.active.len() as i64 - d.deletes.len() as i64;
    let mut status = serde_json::Map::new();
    status.insert("active".into(), json!(active.max(0)));
    status.insert("ready".into(), json!(t.ready));
    status.insert(
        "terminating".into(),
        json!(t.terminating + d.deletes.len() as i64),
    );
    status.insert("succeeded".into(), json!(t.succeeded));
    status.insert("failed".into(), json!(t.failed));
    if let Some(s) = start_time {
        status.insert("startTime".into(), s);
    }
    if let Some(c) = completion_time {
        status.insert("completionTime".into(), c);
    }
    if indexed {
        status.insert(
            "completedIndexes".into(),
            json!(index_ranges(&t.succeeded_indexes)),
        );
    }
    if !conds.is_empty() {
        status.insert("conditions".into(), Value::Array(conds));
    }
    status.insert("uncountedTerminatedPods".into(), json!({}));
    if pending.updates == 0 {
        d.status = with_status(job, Value::Object(status)).map(|j| (j, event));
    }
    d
}

/// The pods to start (or stop) for a running Job.
#[allow(clippy::too_many_arguments)]
fn plan_pods(
    job: &Value,
    t: &Tally<'_>,
    parallelism: i64,
    completions: Option<i64>,
    indexed: bool,
    pending: Pending,
    now: jiff::Timestamp,
    d: &mut Decision,
) {
    let active = t.active.len() as i64;
    let missing: Vec<i64> = match (indexed, completions) {
        (true, Some(c)) => (0..c)
            .filter(|i| !t.succeeded_indexes.contains(i) && !t.active_indexes.contains(i))
            .take(WRITES_PER_SYNC_MAX)
            .collect(),
        _ => Vec::new(),
    };
    let wanted = match (indexed, completions) {
        (true, Some(_)) => parallelism.min(active + missing.len() as i64),
        (false, Some(c)) => parallelism.min((c - t.succeeded).max(0)),
        (_, None) if t.succeeded > 0 => 0,
        (_, None) => parallelism,
    };
    if active > wanted {
        if pending.deletes == 0 && pending.creates == 0 {
            // stop the newest pods first
            let mut extra: Vec<&Value> = t.active.clone();
            extra.sort_by_key(|p| {
                std::cmp::Reverse(
                    p.pointer("/metadata/creationTimestamp")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                )
            });
            d.deletes = refs(extra.into_iter().take((active - wanted) as usize));
        }
        return;
    }
    if pending.deletes > 0 {
        return;
    }
    // failed pods are replaced after a delay that doubles per failure
    if t.failed > 0 {
        if let Some(last) = t.last_failure {
            let delay = failure_backoff(t.failed);
            let ready_at = last.as_second().saturating_add(delay.as_secs() as i64);
            if now.as_second() < ready_at {
                d.requeue_after = Some(Duration::from_secs((ready_at - now.as_second()) as u64));
                return;
            }
        }
    }
    let room = (wanted - active - pending.creates as i64).max(0) as usize;
    let room = room.min(WRITES_PER_SYNC_MAX);
    if indexed {
        // an index is picked only when no create is under way, so two
        // syncs never start the same index
        if pending.creates == 0 {
            d.creates = missing
                .into_iter()
                .take(room)
                .map(|i| job_pod(job, Some(i)))
                .collect();
        }
    } else {
        d.creates = (0..room).map(|_| job_pod(job, None)).collect();
    }
}

/// The Job controller on the runtime: it owns pods.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobReconciler;

impl Reconcile for JobReconciler {
    fn kind(&self) -> Kind {
        Kind::Job
    }

    fn name(&self) -> &'static str {
        "job-controller"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::Owns(Kind::Pod)]
    }

    fn reconcile(&self, job: &Value, view: &View<'_>) -> Plan {
        let uid = meta::uid(job).unwrap_or_default();
        let pods = view.owned(Kind::Pod, uid);
        let d = reconcile(job, &pods, view.pending, view.now);
        let mut writes = Vec::new();
        if d.delete_job {
            if let Some(r) = meta::object_ref(job) {
                writes.push(Planned::quiet(Write::delete(
                    r,
                    meta::resource_version(job),
                )));
            }
            return Plan::writes(writes);
        }
        writes.extend(
            d.creates.into_iter().map(|p| {
                Planned::noted(Write::Create(p), "SuccessfulCreate", "Created pod: {name}")
            }),
        );
        writes.extend(d.deletes.into_iter().map(|r| {
            Planned::noted(
                Write::delete(r, None),
                "SuccessfulDelete",
                "Deleted pod: {name}",
            )
        }));
        if let Some((updated, event)) = d.status {
            writes.push(match event {
                Some((reason, message)) => Planned::noted(Write::Update(updated), reason, message),
                None => Planned::quiet(Write::Update(updated)),
            });
        }
        Plan {
            writes,
            requeue_after: d.requeue_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: Value) -> Value {
        let mut spec = spec;
        spec["template"] = json!({"metadata": {"labels": {"job-name": "pi"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}});
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
            "spec": spec})
    }

    fn pod(name: &str, phase: &str, index: Option<i64>) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": phase, "containerStatuses": [{"name": "c", "restartCount": 0,
                "state": if phase == "Failed" { json!({"terminated": {"exitCode": 1, "finishedAt": "2026-01-01T00:00:10Z"}}) } else { json!({}) }}]}});
        if let Some(i) = index {
            p["metadata"]["annotations"] = json!({COMPLETION_INDEX_ANNOTATION: i.to_string()});
        }
        p
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().expect("time")
    }

    fn run(job: &Value, pods: &[Value], now: &str) -> Decision {
        let refs: Vec<&Value> = pods.iter().collect();
        reconcile(job, &refs, Pending::default(), at(now))
    }

    fn status(d: &Decision) -> &Value {
        &d.status.as_ref().expect("a status update").0["status"]
    }

    #[test]
    fn runs_parallelism_pods_until_completions_succeed() {
        let j = job(json!({"completions": 5, "parallelism": 2, "backoffLimit": 6}));
        let now = "2026-01-01T00:01:00Z";
        // (pods, creates, complete)
        let cases: Vec<(Vec<Value>, usize, bool)> = vec![
            (vec![], 2, false),
            (vec![pod("a", "Running", None)], 1, false),
            (
                vec![pod("a", "Succeeded", None), pod("b", "Running", None)],
                1,
                false,
            ),
            (
                vec![
                    pod("a", "Succeeded", None),
                    pod("b", "Succeeded", None),
                    pod("c", "Succeeded", None),
                    pod("d", "Succeeded", None),
                    pod("e", "Running", None),
                ],
                0,
                false,
            ),
            (
                (0..5)
                    .map(|i| pod(&format!("p{i}"), "Succeeded", None))
                    .collect(),
                0,
                true,
            ),
        ];
        for (pods, creates, complete) in cases {
            let d = run(&j, &pods, now);
            assert_eq!(d.creates.len(), creates, "{} pods", pods.len());
            let s = status(&d);
            let done = s["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Complete" && c["status"] == "True")
            });
            assert_eq!(done, complete, "{s}");
        }
    }

    #[test]
    fn failures_back_off_then_fail_the_job() {
        let j = job(json!({"completions": 1, "parallelism": 1, "backoffLimit": 1}));
        let failed = [pod("a", "Failed", None)];
        // 10 s after the failure: not yet replaced (the delay is 10 s from 00:00:10)
        let d = run(&j, &failed, "2026-01-01T00:00:15Z");
        assert!(d.creates.is_empty());
        assert_eq!(d.requeue_after, Some(Duration::from_secs(5)));
        let d = run(&j, &failed, "2026-01-01T00:00:21Z");
        assert_eq!(d.creates.len(), 1);
        // a second failure is over the limit of 1
        let two = [pod("a", "Failed", None), pod("b", "Failed", None)];
        let d = run(&j, &two, "2026-01-01T00:01:00Z");
        assert!(d.creates.is_empty());
        let s = status(&d);
        assert_eq!(s["conditions"][0]["type"], "Failed");
        assert_eq!(s["conditions"][0]["reason"], "BackoffLimitExceeded");
        assert_eq!(failure_backoff(1), Duration::from_secs(10));
        assert_eq!(failure_backoff(3), Duration::from_secs(40));
        assert_eq!(failure_backoff(30), FAILURE_BACKOFF_MAX);
    }

    #[test]
    fn indexed_jobs_run_each_index_once() {
        let j = job(json!({"completions": 3, "parallelism": 2, "completionMode": "Indexed"}));
        let d = run(&j, &[], "2026-01-01T00:00:00Z");
        let indexes: Vec<String> = d
            .creates
            .iter()
            .map(|p| {
                p["metadata"]["annotations"][COMPLETION_INDEX_ANNOTATION]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        assert_eq!(indexes, ["0", "1"]);
        let env = &d.creates[1]["spec"]["containers"][0]["env"][0];
        assert_eq!(env["name"], COMPLETION_INDEX_ENV);
        assert_eq!(env["value"], "1");
        assert_eq!(d.creates[1]["spec"]["hostname"], "pi-1");
        // index 0 done, 1 running: index 2 next
        let pods = [pod("a", "Succeeded", Some(0)), pod("b", "Running", Some(1))];
        let d = run(&j, &pods, "2026-01-01T00:00:00Z");
        assert_eq!(d.creates.len(), 1);
        assert_eq!(
            d.creates[0]["metadata"]["annotations"][COMPLETION_INDEX_ANNOTATION],
            "2"
        );
        assert_eq!(status(&d)["completedIndexes"], "0");
        // a create under way: no index is picked twice
        let refs: Vec<&Value> = pods.iter().collect();
        let pending = Pending {
            creates: 1,
            ..Pending::default()
        };
        assert!(reconcile(&j, &refs, pending, at("2026-01-01T00:00:00Z"))
            .creates
            .is_empty());
        let all = [
            pod("a", "Succeeded", Some(0)),
            pod("b", "Succeeded", Some(1)),
            pod("c", "Succeeded", Some(2)),
        ];
        let d = run(&j, &all, "2026-01-01T00:00:00Z");
        assert_eq!(status(&d)["completedIndexes"], "0-2");
        assert_eq!(status(&d)["conditions"][0]["type"], "Complete");
    }

    #[test]
    fn deadline_suspend_and_ttl() {
        let mut j = job(json!({"completions": 1, "parallelism": 1, "activeDeadlineSeconds": 30}));
        j["status"] = json!({"startTime": "2026-01-01T00:00:00Z"});
        let running = [pod("a", "Running", None)];
        let d = run(&j, &running, "2026-01-01T00:00:10Z");
        assert_eq!(d.requeue_after, Some(Duration::from_secs(20)));
        let d = run(&j, &running, "2026-01-01T00:00:31Z");
        assert_eq!(status(&d)["conditions"][0]["reason"], "DeadlineExceeded");
        assert_eq!(d.deletes.len(), 1);

        let mut s = job(json!({"completions": 1, "parallelism": 1, "suspend": true}));
        let d = run(&s, &running, "2026-01-01T00:00:10Z");
        assert_eq!(d.deletes.len(), 1);
        assert!(d.creates.is_empty());
        assert_eq!(status(&d)["conditions"][0]["type"], "Suspended");
        s["spec"]["suspend"] = json!(false);
        s["status"] = status(&d).clone();
        let d = run(&s, &[], "2026-01-01T00:00:20Z");
        assert_eq!(d.creates.len(), 1);
        assert_eq!(status(&d)["conditions"][0]["status"], "False");

        let mut done =
            job(json!({"completions": 1, "parallelism": 1, "ttlSecondsAfterFinished": 60}));
        done["status"] = json!({"completionTime": "2026-01-01T00:00:00Z",
            "conditions": [{"type": "Complete", "status": "True"}]});
        let d = run(
            &done,
            &[pod("a", "Succeeded", None)],
            "2026-01-01T00:00:30Z",
        );
        assert!(!d.delete_job);
        assert_eq!(d.requeue_after, Some(Duration::from_secs(30)));
        assert!(run(&done, &[], "2026-01-01T00:01:00Z").delete_job);
    }

    #[test]
    fn index_ranges_round_trip() {
        let set: BTreeSet<i64> = [0, 2, 3, 4, 7].into_iter().collect();
        assert_eq!(index_ranges(&set), "0,2-4,7");
        assert_eq!(parse_index_ranges("0,2-4,7"), set);
    }
}
