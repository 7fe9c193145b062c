//! The terminated-pod collector (the other half of Kubernetes' pod GC,
//! beside [`crate::nodelifecycle::PodGc`]): once more finished pods
//! (Succeeded or Failed) exist than `--terminated-pod-gc-threshold`
//! (Kubernetes' 12,500), the oldest go, checked every 20 s as
//! kube-controller-manager does.
//!
//! [`excess_terminated`] decides; [`TerminatedPodGc`] reads the process's
//! shared pod cache on a timer and deletes through the control plane's
//! writer (at once: a finished pod has no containers to stop).

use std::time::Duration;

use actix::prelude::*;
use kubus_api::{meta, pod, Kind};
use serde_json::Value;
use std::sync::Arc;
use tracing::{debug, info};

use crate::runtime::informers::{Changed, Informers, Shared};
use crate::runtime::Demote;
use crate::write::{Write, Writer};

/// Kubernetes' default `--terminated-pod-gc-threshold`.
pub const THRESHOLD_DEFAULT: usize = 12_500;
/// How often the cache is looked at.
const CHECK_PERIOD: Duration = Duration::from_secs(20);
/// Most pods deleted per check (the rest go at the next).
const DELETES_PER_CHECK_MAX: usize = 500;

/// The finished pods beyond `threshold`, oldest first (by when they
/// finished as far as their status says, else by creation), at most `max`.
pub fn excess_terminated<'a>(pods: &[&'a Value], threshold: usize, max: usize) -> Vec<&'a Value> {
    let mut finished: Vec<&Value> = pods
        .iter()
        .copied()
        .filter(|p| pod::is_finished(p) && !pod::is_terminating(p))
        .collect();
    if finished.len() <= threshold {
        return Vec::new();
    }
    let excess = finished.len() - threshold;
    let when = |p: &Value| -> String {
        // the latest container finish time, else the creation time (RFC 3339
        // in UTC sorts as text)
        let finished_at = p
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.pointer("/state/terminated/finishedAt")?.as_str())
            .max()
            .map(str::to_string);
        finished_at.unwrap_or_else(|| meta::str_at(p, "/metadata/creationTimestamp").to_string())
    };
    finished.sort_by_cached_key(|p| (when(p), meta::name(p).unwrap_or_default().to_string()));
    finished.truncate(excess.min(max));
    finished
}

/// Deletes the oldest finished pods past the threshold.
pub struct TerminatedPodGc {
    informers: Informers,
    writer: Arc<dyn Writer>,
    threshold: usize,
    pods: Option<Shared>,
    /// Deletes under way (no second pass before they answer).
    deleting: usize,
}

impl TerminatedPodGc {
    pub fn new(informers: Informers, writer: Arc<dyn Writer>, threshold: usize) -> Self {
        TerminatedPodGc {
            informers,
            writer,
            threshold,
            pods: None,
            deleting: 0,
        }
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        let Some(pods) = &self.pods else { return };
        if self.deleting > 0 || !pods.synced() {
            return;
        }
        let doomed: Vec<Write> = {
            let cache = pods.read();
            let all: Vec<&Value> = cache.cache.values().collect();
            excess_terminated(&all, self.threshold, DELETES_PER_CHECK_MAX)
                .into_iter()
                .filter_map(|p| {
                    let r = meta::object_ref(p)?;
                    Some(Write::Delete(
                        r,
                        kubus_bus::client::DeleteOptions {
                            grace_period_seconds: Some(0),
                            uid: meta::uid(p).map(str::to_string),
                            ..Default::default()
                        },
                    ))
                })
                .collect()
        };
        if doomed.is_empty() {
            return;
        }
        info!(
            pods = doomed.len(),
            threshold = self.threshold,
            "deleting terminated pods past the threshold"
        );
        for w in doomed {
            self.deleting += 1;
            let fut = self.writer.write(w);
            ctx.spawn(fut.into_actor(self).map(|res, act, _| {
                act.deleting -= 1;
                if let Err(e) = res {
                    debug!(error = %e, "cannot delete a terminated pod");
                }
            }));
        }
    }
}

impl Actor for TerminatedPodGc {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address().recipient::<Changed>();
        self.pods = Some(self.informers.subscribe(Kind::Pod, me));
        ctx.run_interval(CHECK_PERIOD, |act, ctx| act.check(ctx));
    }
}

impl Handler<Changed> for TerminatedPodGc {
    type Result = ();

    /// Changes are read from the cache on the timer.
    fn handle(&mut self, _: Changed, _: &mut Context<Self>) {}
}

impl Handler<Demote> for TerminatedPodGc {
    type Result = ();

    fn handle(&mut self, _: Demote, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn finished(name: &str, phase: &str, at: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "d", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": phase, "containerStatuses": [
                {"state": {"terminated": {"finishedAt": at}}}]}})
    }

    #[test]
    fn the_oldest_finished_pods_past_the_threshold_go() {
        let pods = [
            finished("c", "Succeeded", "2026-01-01T00:03:00Z"),
            finished("a", "Failed", "2026-01-01T00:01:00Z"),
            finished("b", "Succeeded", "2026-01-01T00:02:00Z"),
            json!({"metadata": {"name": "running"}, "status": {"phase": "Running"}}),
        ];
        let refs: Vec<&Value> = pods.iter().collect();
        let names = |v: Vec<&Value>| -> Vec<String> {
            v.iter()
                .map(|p| meta::name(p).unwrap_or_default().to_string())
                .collect()
        };
        assert_eq!(names(excess_terminated(&refs, 3, 10)), Vec::<String>::new());
        assert_eq!(names(excess_terminated(&refs, 1, 10)), vec!["a", "b"]);
        assert_eq!(
            names(excess_terminated(&refs, 0, 2)),
            vec!["a", "b"],
            "bounded"
        );
    }
}
