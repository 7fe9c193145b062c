//! The CronJob controller: creates a Job from `jobTemplate` at each time
//! the schedule names (in `timeZone`), named `<cronjob>-<minutes since the
//! epoch>` so a time is never run twice. Missed times are handled as
//! Kubernetes does: only the most recent one is run (at most one catch-up
//! run), not when it is older than `startingDeadlineSeconds`, and a
//! Warning Event says so when more than 100 were missed.
//! `concurrencyPolicy` Allow runs beside active Jobs, Forbid skips a time
//! while one is active, Replace deletes the active ones first. `suspend`
//! stops new runs. Finished Jobs beyond the history limits are deleted,
//! oldest first.
//!
//! [`reconcile`] decides; [`CronJobReconciler`] puts it on the runtime.

use std::time::Duration;

use kubus_api::cron::Schedule;
use kubus_api::{
    meta::{self, int_at},
    Kind, ObjectRef,
};
use serde_json::{json, Value};

use crate::runtime::{Plan, Planned, Reconcile, View, Watch};
use crate::workload::{condition_true, from_template, time, time_at, with_status};
use crate::write::Write;

/// The annotation carrying the time a Job was scheduled for.
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// More missed times than this get a Warning Event (Kubernetes' number).
pub const MISSED_TIMES_MAX: usize = 100;

fn finished(job: &Value) -> Option<bool> {
    if condition_true(job, "Complete") {
        Some(true)
    } else if condition_true(job, "Failed") {
        Some(false)
    } else {
        None
    }
}

/// The Job for the time `at`.
pub fn job_for(cj: &Value, at: jiff::Timestamp) -> Value {
    let name = format!(
        "{}-{}",
        meta::name(cj).unwrap_or("cronjob"),
        at.as_second() / 60
    );
    let mut job = from_template(
        cj,
        cj.pointer("/spec/jobTemplate"),
        "batch/v1",
        "Job",
        Some(&name),
        "",
    );
    if let Some(m) = job.get_mut("metadata").and_then(Value::as_object_mut) {
        let a = m.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = a.as_object_mut() {
            a.insert(SCHEDULED_TIMESTAMP_ANNOTATION.into(), json!(time(at)));
        }
    }
    job
}

/// What one sync of a CronJob does.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Decision {
    /// The Job to start (for this time).
    pub create: Option<(Value, jiff::Timestamp)>,
    /// Jobs to delete: active ones a Replace run displaces, and finished
    /// ones beyond the history limits.
    pub deletes: Vec<ObjectRef>,
    pub status: Option<Value>,
    /// Warning Events: (reason, message).
    pub warnings: Vec<(&'static str, String)>,
    pub requeue_after: Option<Duration>,
}

/// Decide one sync of `cj` given its Jobs.
pub fn reconcile(cj: &Value, jobs: &[&Value], now: jiff::Timestamp) -> Decision {
    let mut d = Decision::default();
    if kubus_api::lifecycle::is_marked(cj) {
        return d;
    }
    let schedule = match Schedule::parse(
        cj.pointer("/spec/schedule")
            .and_then(Value::as_str)
            .unwrap_or(""),
        cj.pointer("/spec/timeZone").and_then(Value::as_str),
    ) {
        Ok(s) => s,
        Err(e) => {
            d.warnings.push(("InvalidSchedule", e.to_string()));
            return d;
        }
    };
    let mut active: Vec<&Value> = jobs
        .iter()
        .copied()
        .filter(|j| finished(j).is_none() && !kubus_api::pod::is_terminating(j))
        .collect();
    active.sort_by_key(|j| meta::name(j).unwrap_or_default().to_string());

    // history: the oldest finished Jobs beyond the limits go
    for (ok, limit) in [
        (
            true,
            int_at(cj, "/spec/successfulJobsHistoryLimit").unwrap_or(3),
        ),
        (
            false,
            int_at(cj, "/spec/failedJobsHistoryLimit").unwrap_or(1),
        ),
    ] {
        let mut done: Vec<&Value> = jobs
            .iter()
            .copied()
            .filter(|j| finished(j) == Some(ok) && !kubus_api::pod::is_terminating(j))
            .collect();
        done.sort_by_key(|j| {
            (
                j.pointer("/status/startTime")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                meta::name(j).unwrap_or_default().to_string(),
            )
        });
        let extra = done.len().saturating_sub(limit.max(0) as usize);
        d.deletes
            .extend(done.iter().take(extra).filter_map(|j| meta::object_ref(j)));
    }

    let last = time_at(cj, "/status/lastScheduleTime")
        .or_else(|| time_at(cj, "/metadata/creationTimestamp"))
        .unwrap_or(now);
    let deadline = int_at(cj, "/spec/startingDeadlineSeconds");
    let earliest = match deadline {
        Some(s) => {
            last.max(jiff::Timestamp::from_second(now.as_second().saturating_sub(s)).unwrap_or(now))
        }
        None => last,
    };
    let (missed, more) = schedule.between(earliest, now, MISSED_TIMES_MAX);
    if more {
        d.warnings.push((
            "TooManyMissedTimes",
            "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
        ));
    }
    // the latest missed time only (the others are not run)
    let due = if more {
        schedule.latest_until(now)
    } else {
        missed.last().copied()
    };
    let suspended = cj.pointer("/spec/suspend") == Some(&Value::Bool(true));
    let policy = cj
        .pointer("/spec/concurrencyPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Allow");
    let mut last_schedule = cj.pointer("/status/lastScheduleTime").cloned();
    if let (Some(at), false) = (due, suspended) {
        let already = jobs
            .iter()
            .any(|j| meta::name(j) == meta::name(&job_for(cj, at)));
        match policy {
            _ if already => last_schedule = Some(json!(time(at))),
            "Forbid" if !active.is_empty() => {
                // skipped while a run is active; tried again when it ends
            }
            _ => {
                if policy == "Replace" {
                    d.deletes
                        .extend(active.iter().filter_map(|j| meta::object_ref(j)));
                    active.clear();
                }
                d.create = Some((job_for(cj, at), at));
                last_schedule = Some(json!(time(at)));
            }
        }
    }
    if !suspended {
        if let Some(next) = schedule.next_after(now) {
            let wait = (next.as_second() - now.as_second()).max(1) as u64;
            d.requeue_after = Some(Duration::from_secs(wait));
        }
    }

    let last_success = jobs
        .iter()
        .filter(|j| finished(j) == Some(true))
        .filter_map(|j| j.pointer("/status/completionTime").and_then(Value::as_str))
        .max()
        .map(|t| json!(t))
        .or_else(|| cj.pointer("/status/lastSuccessfulTime").cloned());
    let mut status = serde_json::Map::new();
    let refs: Vec<Value> = active
        .iter()
        .map(|j| json!({"apiVersion": "batch/v1", "kind": "Job", "name": meta::name(j), "namespace": meta::namespace(j), "uid": meta::uid(j)}))
        .collect();
    if !refs.is_empty() {
        status.insert("active".into(), Value::Array(refs));
    }
    if let Some(t) = last_schedule {
        status.insert("lastScheduleTime".into(), t);
    }
    if let Some(t) = last_success {
        status.insert("lastSuccessfulTime".into(), t);
    }
    d.status = with_status(cj, Value::Object(status));
    d
}

/// The CronJob controller on the runtime: it owns Jobs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CronJobReconciler;

impl Reconcile for CronJobReconciler {
    fn kind(&self) -> Kind {
        Kind::CronJob
    }

    fn name(&self) -> &'static str {
        "cronjob-controller"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::Owns(Kind::Job)]
    }

    fn reconcile(&self, cj: &Value, view: &View<'_>) -> Plan {
        if !view.pending.is_empty() {
            return Plan::default();
        }
        let jobs = view.owned(Kind::Job, meta::uid(cj).unwrap_or_default());
        let d = reconcile(cj, &jobs, view.now);
        let mut writes: Vec<Planned> = Vec::new();
        // a Warning rides on the status write (there is one whenever times
        // were missed: lastScheduleTime moves)
        let warning = d.warnings.into_iter().next();
        writes.extend(d.deletes.into_iter().map(|r| {
            Planned::noted(
                Write::delete(r, None),
                "SuccessfulDelete",
                "Deleted job {name}",
            )
        }));
        if let Some((job, _)) = d.create {
            writes.push(Planned::noted(
                Write::Create(job),
                "SuccessfulCreate",
                "Created job {name}",
            ));
        }
        writes.extend(d.status.map(|s| match &warning {
            Some((reason, message)) => Planned::warned(Write::Update(s), reason, message.clone()),
            None => Planned::quiet(Write::Update(s)),
        }));
        Plan {
            writes,
            requeue_after: d.requeue_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cj(policy: &str, extra: Value) -> Value {
        let mut c = json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "hello", "namespace": "default", "uid": "cj-uid", "creationTimestamp": "2026-01-01T00:00:30Z"},
            "spec": {"schedule": "* * * * *", "timeZone": "UTC", "concurrencyPolicy": policy,
                "successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 1,
                "jobTemplate": {"metadata": {"labels": {"app": "hello"}}, "spec": {"template": {"spec": {
                    "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "i"}]}}}}}});
        if let Some(m) = extra.as_object() {
            for (k, v) in m {
                c["spec"][k] = v.clone();
            }
        }
        c
    }

    fn job(name: &str, state: Option<bool>, started: &str) -> Value {
        let mut j = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "default", "uid": name},
            "status": {"startTime": started}});
        if let Some(ok) = state {
            let t = if ok { "Complete" } else { "Failed" };
            j["status"]["conditions"] = json!([{"type": t, "status": "True"}]);
            j["status"]["completionTime"] = json!(started);
        }
        j
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn runs_each_time_once() {
        let c = cj("Allow", json!({}));
        let d = reconcile(&c, &[], at("2026-01-01T00:01:10Z"));
        let (j, when) = d.create.expect("a run");
        assert_eq!(when, at("2026-01-01T00:01:00Z"));
        assert_eq!(
            j["metadata"]["name"],
            format!("hello-{}", when.as_second() / 60)
        );
        assert_eq!(j["metadata"]["labels"]["app"], "hello");
        assert_eq!(j["metadata"]["ownerReferences"][0]["uid"], "cj-uid");
        assert_eq!(d.requeue_after, Some(Duration::from_secs(50)));
        let s = d.status.expect("status");
        assert_eq!(s["status"]["lastScheduleTime"], "2026-01-01T00:01:00Z");
        // the same time again: nothing more
        assert!(reconcile(&s, &[&j], at("2026-01-01T00:01:20Z"))
            .create
            .is_none());
    }

    #[test]
    fn concurrency_policies() {
        let running = job("hello-1", None, "2026-01-01T00:01:00Z");
        let mut forbid = cj("Forbid", json!({}));
        forbid["status"] = json!({"lastScheduleTime": "2026-01-01T00:01:00Z"});
        assert!(reconcile(&forbid, &[&running], at("2026-01-01T00:02:05Z"))
            .create
            .is_none());
        // when the run ends, the missed time runs (one catch-up)
        let done = job("hello-1", Some(true), "2026-01-01T00:01:00Z");
        assert!(reconcile(&forbid, &[&done], at("2026-01-01T00:02:30Z"))
            .create
            .is_some());
        let mut replace = cj("Replace", json!({}));
        replace["status"] = forbid["status"].clone();
        let d = reconcile(&replace, &[&running], at("2026-01-01T00:02:05Z"));
        assert!(d.create.is_some());
        assert_eq!(d.deletes[0].name, "hello-1");
        let mut allow = cj("Allow", json!({}));
        allow["status"] = forbid["status"].clone();
        let d = reconcile(&allow, &[&running], at("2026-01-01T00:02:05Z"));
        assert!(d.create.is_some() && d.deletes.is_empty());
    }

    #[test]
    fn missed_runs_deadline_suspend_and_history() {
        let mut c = cj("Allow", json!({}));
        c["status"] = json!({"lastScheduleTime": "2026-01-01T00:01:00Z"});
        // an outage of 10 minutes: one run, for the latest time
        let d = reconcile(&c, &[], at("2026-01-01T00:11:30Z"));
        assert_eq!(d.create.map(|c| c.1), Some(at("2026-01-01T00:11:00Z")));
        assert!(d.warnings.is_empty());
        // more than 100 missed: a Warning, still one run
        let d = reconcile(&c, &[], at("2026-01-01T05:00:30Z"));
        assert_eq!(d.warnings[0].0, "TooManyMissedTimes");
        assert_eq!(d.create.map(|c| c.1), Some(at("2026-01-01T05:00:00Z")));
        // a start deadline of 10 s: 20 s late is too late
        let late = cj("Allow", json!({"startingDeadlineSeconds": 10}));
        let mut late = late;
        late["status"] = c["status"].clone();
        assert!(reconcile(&late, &[], at("2026-01-01T00:02:20Z"))
            .create
            .is_none());
        assert!(reconcile(&late, &[], at("2026-01-01T00:02:05Z"))
            .create
            .is_some());
        let mut suspended = cj("Allow", json!({"suspend": true}));
        suspended["status"] = c["status"].clone();
        assert!(reconcile(&suspended, &[], at("2026-01-01T00:05:00Z"))
            .create
            .is_none());
        // history: 2 successful, 1 failed kept; the oldest go
        let jobs = [
            job("a", Some(true), "2026-01-01T00:01:00Z"),
            job("b", Some(true), "2026-01-01T00:02:00Z"),
            job("c", Some(true), "2026-01-01T00:03:00Z"),
            job("d", Some(false), "2026-01-01T00:04:00Z"),
            job("e", Some(false), "2026-01-01T00:05:00Z"),
        ];
        let refs: Vec<&Value> = jobs.iter().collect();
        let mut names: Vec<String> = reconcile(&c, &refs, at("2026-01-01T00:01:30Z"))
            .deletes
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        assert_eq!(names, ["a", "d"]);
    }
}
