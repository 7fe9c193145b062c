//! The HorizontalPodAutoscaler controller (`autoscaling/v2`), as
//! kube-controller-manager's: every [`SYNC_EVERY`] each HPA reads its
//! target's pods' CPU and memory, and scales the target with Kubernetes'
//! algorithm (`kubus_api::autoscaling`: tolerance, pods without figures,
//! stabilization windows, policies, min/max), writing its status
//! (currentMetrics, replicas, conditions) and a `SuccessfulRescale` Event.
//!
//! Two parts: [`UsageCollector`] asks the node agents that run pods of a
//! namespace with an HPA for their figures (`agent.usage`, bounded) and
//! keeps the latest in [`Figures`]; [`HpaReconciler`] is a `Reconcile` on
//! the shared runtime that decides from the caches and those figures. Its
//! recommendations and scale events live in the controller's memory, as
//! Kubernetes' do: a new leader starts them afresh.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use actix::prelude::*;
use futures::future::{join_all, BoxFuture};
use kubus_api::autoscaling::{self, Metric, PodFigure, Recommended, Resource, ScaleEvent, Target};
use kubus_api::selector::Selector;
use kubus_api::{meta, Kind};
use kubus_bus::protocol::{NodeUsage, UsageRequest};
use kubus_bus::Client;
use serde_json::{json, Value};
use tracing::debug;

use crate::informer::key_of;
use crate::runtime::controller::{Plan, Planned, Reconcile, View, Watch};
use crate::runtime::{Informers, Shared};
use crate::workload;
use crate::write::Write;

/// How often each HPA is evaluated (Kubernetes' default sync period).
pub const SYNC_EVERY: Duration = Duration::from_secs(15);
/// How often the collector asks the node agents (their samples are 10 s
/// apart).
pub const COLLECT_EVERY: Duration = Duration::from_secs(10);
/// Node agents asked at once.
const ASKED_AT_ONCE: usize = 64;
/// Figures older than this are not used.
const FIGURES_FRESH: Duration = Duration::from_secs(60);
/// Recommendations and scale events kept per HPA (Kubernetes keeps those
/// of the longest window; this bounds them).
const HISTORY_MAX: usize = 128;

/// One pod's figures: CPU in millicores, memory in bytes, when taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodFigures {
    pub cpu_milli: u64,
    pub memory_bytes: u64,
    pub at_ms: u64,
}

/// The latest figures of the pods, by cache key (`ns/name`).
#[derive(Clone, Default)]
pub struct Figures(Arc<RwLock<HashMap<String, PodFigures>>>);

impl Figures {
    fn get(&self, key: &str) -> Option<PodFigures> {
        self.0.read().ok()?.get(key).copied()
    }

    fn replace(&self, fresh: HashMap<String, PodFigures>) {
        if let Ok(mut f) = self.0.write() {
            *f = fresh;
        }
    }
}

/// Where figures come from: the node agents over the bus, or a fake.
pub trait UsageSource: Send + Sync + 'static {
    fn node_usage(&self, node: String, namespace: String) -> BoxFuture<'static, Option<NodeUsage>>;
}

impl UsageSource for Client {
    fn node_usage(&self, node: String, namespace: String) -> BoxFuture<'static, Option<NodeUsage>> {
        let client = self.clone();
        Box::pin(async move {
            let req = UsageRequest {
                namespace: Some(namespace),
            };
            match client.node_usage(&node, &req).await {
                Ok(u) => Some(u),
                Err(e) => {
                    debug!(%node, error = %e, "no usage figures from the node");
                    None
                }
            }
        })
    }
}

/// The (node, namespace) pairs to ask: the nodes running pods of each
/// namespace that holds an HPA.
pub fn to_ask(hpas: &[&Value], pods: &[&Value]) -> BTreeSet<(String, String)> {
    let namespaces: BTreeSet<&str> = hpas.iter().filter_map(|h| meta::namespace(h)).collect();
    pods.iter()
        .filter(|p| meta::namespace(p).is_some_and(|ns| namespaces.contains(ns)))
        .filter_map(|p| {
            Some((
                p["spec"]["nodeName"].as_str()?.to_string(),
                meta::namespace(p)?.to_string(),
            ))
        })
        .collect()
}

/// Asks the node agents for the figures the HPAs need, every
/// [`COLLECT_EVERY`].
pub struct UsageCollector {
    informers: Informers,
    source: Arc<dyn UsageSource>,
    figures: Figures,
    hpas: Option<Shared>,
    pods: Option<Shared>,
    in_flight: bool,
}

impl UsageCollector {
    pub fn new(informers: Informers, source: Arc<dyn UsageSource>, figures: Figures) -> Self {
        UsageCollector {
            informers,
            source,
            figures,
            hpas: None,
            pods: None,
            in_flight: false,
        }
    }

    fn collect(&mut self, ctx: &mut Context<Self>) {
        let (Some(hpas), Some(pods)) = (&self.hpas, &self.pods) else {
            return;
        };
        if self.in_flight {
            return;
        }
        let asks = {
            let hpas = hpas.read();
            let pods = pods.read();
            let h: Vec<&Value> = hpas.cache.values().collect();
            if h.is_empty() {
                return;
            }
            let p: Vec<&Value> = pods.cache.values().collect();
            to_ask(&h, &p)
        };
        self.in_flight = true;
        let source = self.source.clone();
        let work = async move {
            let asks: Vec<(String, String)> = asks.into_iter().collect();
            let mut answers = Vec::new();
            for chunk in asks.chunks(ASKED_AT_ONCE) {
                let calls = chunk
                    .iter()
                    .map(|(node, ns)| source.node_usage(node.clone(), ns.clone()));
                answers.extend(join_all(calls).await.into_iter().flatten());
            }
            answers
        };
        ctx.spawn(work.into_actor(self).map(|answers, act, _| {
            act.in_flight = false;
            let mut fresh = HashMap::new();
            for node in answers {
                for pod in node.pods {
                    let (cpu, memory) = pod.containers.iter().fold((0, 0), |(c, m), u| {
                        (c + u.usage.cpu_nano_cores, m + u.usage.memory_bytes)
                    });
                    fresh.insert(
                        format!("{}/{}", pod.namespace, pod.name),
                        PodFigures {
                            cpu_milli: cpu / 1_000_000,
                            memory_bytes: memory,
                            at_ms: node.timestamp_ms,
                        },
                    );
                }
            }
            act.figures.replace(fresh);
        }));
    }
}

impl Actor for UsageCollector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.hpas = Some(self.informers.shared(Kind::HorizontalPodAutoscaler));
        self.pods = Some(self.informers.shared(Kind::Pod));
        ctx.run_interval(COLLECT_EVERY, |act, ctx| act.collect(ctx));
    }
}

impl Handler<crate::runtime::Demote> for UsageCollector {
    type Result = ();

    fn handle(&mut self, _: crate::runtime::Demote, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// What one HPA remembers between evaluations.
#[derive(Debug, Default)]
struct History {
    recommended: Vec<Recommended>,
    events: Vec<ScaleEvent>,
}

/// The HPA controller on the runtime.
pub struct HpaReconciler {
    figures: Figures,
    history: Mutex<HashMap<String, History>>,
}

impl HpaReconciler {
    pub fn new(figures: Figures) -> Self {
        HpaReconciler {
            figures,
            history: Mutex::default(),
        }
    }
}

/// The HPAs of the namespace of a changed target that name it.
fn hpas_of_target(delta: &crate::informer::Delta, view: &View<'_>) -> Vec<String> {
    let kind = delta.object["kind"].as_str().unwrap_or_default();
    let name = meta::name(&delta.object).unwrap_or_default();
    let ns = meta::namespace(&delta.object).unwrap_or("default");
    view.own()
        .map(|c| {
            c.cache
                .in_namespace(ns)
                .filter(|h| {
                    h["spec"]["scaleTargetRef"]["kind"] == kind
                        && h["spec"]["scaleTargetRef"]["name"] == name
                })
                .map(key_of)
                .collect()
        })
        .unwrap_or_default()
}

/// Pods change too often to requeue on: the HPA reads them every sync.
fn nothing(_: &crate::informer::Delta, _: &View<'_>) -> Vec<String> {
    Vec::new()
}

/// A pod's summed container requests of `resource` (base units); None
/// when a container requests none.
fn requests(pod: &Value, resource: Resource) -> Option<u64> {
    pod["spec"]["containers"]
        .as_array()?
        .iter()
        .map(|c| {
            c.pointer(&format!("/resources/requests/{}", resource.as_str()))
                .and_then(Value::as_str)
                .and_then(|q| resource.amount(q))
        })
        .sum()
}

/// The HPA's status after an evaluation.
struct Outcome {
    current: i64,
    desired: i64,
    metrics: Vec<Value>,
    active: Result<(), (String, String)>,
    limited: Option<String>,
    scaled: bool,
}

fn status(hpa: &Value, o: &Outcome, now: &str) -> Value {
    let mut status = hpa.get("status").cloned().unwrap_or_else(|| json!({}));
    let mut conditions = workload::conditions(hpa);
    workload::set_condition(
        &mut conditions,
        "AbleToScale",
        true,
        if o.scaled {
            "SucceededRescale"
        } else {
            "ReadyForNewScale"
        },
        "the HPA controller was able to update the target scale",
        now,
    );
    match &o.active {
        Ok(()) => workload::set_condition(
            &mut conditions,
            "ScalingActive",
            true,
            "ValidMetricFound",
            "the HPA was able to successfully calculate a replica count from resource metrics",
            now,
        ),
        Err((reason, message)) => workload::set_condition(
            &mut conditions,
            "ScalingActive",
            false,
            reason,
            message,
            now,
        ),
    }
    match &o.limited {
        Some(why) => workload::set_condition(
            &mut conditions,
            "ScalingLimited",
            true,
            "ScaleLimited",
            why,
            now,
        ),
        None => workload::set_condition(
            &mut conditions,
            "ScalingLimited",
            false,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
            now,
        ),
    }
    status["currentReplicas"] = json!(o.current);
    status["desiredReplicas"] = json!(o.desired);
    if o.active.is_ok() {
        status["currentMetrics"] = json!(o.metrics);
    }
    if o.scaled {
        status["lastScaleTime"] = json!(now);
    }
    status["conditions"] = json!(conditions);
    status
}

impl Reconcile for HpaReconciler {
    fn kind(&self) -> Kind {
        Kind::HorizontalPodAutoscaler
    }

    fn name(&self) -> &'static str {
        "horizontal-pod-autoscaler"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![
            Watch::Maps(Kind::Deployment, hpas_of_target),
            Watch::Maps(Kind::ReplicaSet, hpas_of_target),
            Watch::Maps(Kind::StatefulSet, hpas_of_target),
            Watch::Maps(Kind::ReplicationController, hpas_of_target),
            Watch::Maps(Kind::Pod, nothing),
        ]
    }

    fn reconcile(&self, hpa: &Value, view: &View<'_>) -> Plan {
        let requeue = Some(SYNC_EVERY);
        if !view.pending.is_empty() || kubus_api::lifecycle::is_marked(hpa) {
            return Plan {
                writes: Vec::new(),
                requeue_after: requeue,
            };
        }
        let now = view.now.to_string();
        let now_secs = u64::try_from(view.now.as_second()).unwrap_or(0);
        let key = key_of(hpa);
        let ns = meta::namespace(hpa).unwrap_or("default");
        let spec = match autoscaling::parse(hpa) {
            Ok(s) => s,
            Err(causes) => {
                let message: Vec<String> = causes.iter().map(ToString::to_string).collect();
                return self.only_status(
                    hpa,
                    Err(("InvalidSpec".into(), message.join("; "))),
                    &now,
                );
            }
        };
        let target_kind = Kind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == spec.target_kind);
        let target = target_kind
            .and_then(|k| view.cache(k))
            .and_then(|c| c.cache.get(&format!("{ns}/{}", spec.target_name)));
        let Some(target) = target else {
            return self.only_status(
                hpa,
                Err((
                    "FailedGetScale".into(),
                    format!("{} {ns}/{} not found", spec.target_kind, spec.target_name),
                )),
                &now,
            );
        };
        let current = target["spec"]["replicas"].as_i64().unwrap_or(1);
        let selector = Selector::from_value(target.pointer("/spec/selector"));
        let pods: Vec<&Value> = view
            .cache(Kind::Pod)
            .map(|c| {
                c.cache
                    .in_namespace(ns)
                    .filter(|p| kubus_api::pod::is_active(p))
                    .filter(|p| {
                        selector
                            .as_ref()
                            .is_some_and(|s| s.matches(&meta::labels(p)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        // the view's clock, as every other decision here
        let now_ms = u64::try_from(view.now.as_millisecond()).unwrap_or(0);
        let fresh_after = now_ms.saturating_sub(FIGURES_FRESH.as_millis() as u64);
        let mut wanted: Option<i64> = None;
        let mut metrics = Vec::new();
        let mut failure = None;
        for metric in &spec.metrics {
            let figures: Vec<PodFigure> = pods
                .iter()
                .map(|p| {
                    let f = self
                        .figures
                        .get(&key_of(p))
                        .filter(|f| f.at_ms >= fresh_after);
                    PodFigure {
                        ready: kubus_api::pod::is_ready(p),
                        request: requests(p, metric.resource),
                        usage: f.map(|f| match metric.resource {
                            Resource::Cpu => f.cpu_milli,
                            Resource::Memory => f.memory_bytes,
                        }),
                    }
                })
                .collect();
            match autoscaling::recommend(current, &figures, *metric) {
                Ok(r) => {
                    wanted = Some(wanted.map_or(r.replicas, |w| w.max(r.replicas)));
                    metrics.push(current_metric(*metric, r.current));
                }
                Err(e) => failure = Some(e),
            }
        }
        let Some(wanted) = wanted else {
            let why = failure.unwrap_or_else(|| "no metrics".into());
            return self.only_status(hpa, Err(("FailedGetResourceMetric".into(), why)), &now);
        };
        let decision = {
            let mut all = self
                .history
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let h = all.entry(key.clone()).or_default();
            let keep = spec.up.stabilization_secs.max(spec.down.stabilization_secs) + 1800;
            h.recommended.retain(|r| r.at_secs + keep > now_secs);
            h.events.retain(|e| e.at_secs + keep > now_secs);
            let d =
                autoscaling::decide(&spec, current, wanted, now_secs, &h.recommended, &h.events);
            h.recommended.push(Recommended {
                at_secs: now_secs,
                replicas: wanted,
            });
            if d.replicas != current {
                h.events.push(ScaleEvent {
                    at_secs: now_secs,
                    change: d.replicas - current,
                });
            }
            let excess = h.recommended.len().saturating_sub(HISTORY_MAX);
            h.recommended.drain(..excess);
            let excess = h.events.len().saturating_sub(HISTORY_MAX);
            h.events.drain(..excess);
            d
        };
        let outcome = Outcome {
            current,
            desired: decision.replicas,
            metrics,
            active: Ok(()),
            limited: decision.limited,
            scaled: decision.replicas != current,
        };
        let mut writes = Vec::new();
        if outcome.scaled {
            let mut scaled = target.clone();
            scaled["spec"]["replicas"] = json!(decision.replicas);
            let reason = spec
                .metrics
                .first()
                .map(|m| match m.target {
                    Target::Utilization(_) => format!(
                        "{} resource utilization (percentage of request) {} target",
                        m.resource.as_str(),
                        if decision.replicas > current {
                            "above"
                        } else {
                            "below"
                        }
                    ),
                    Target::AverageValue(_) => format!(
                        "{} resource {} target",
                        m.resource.as_str(),
                        if decision.replicas > current {
                            "above"
                        } else {
                            "below"
                        }
                    ),
                })
                .unwrap_or_default();
            writes.push(Planned::noted(
                Write::Update(scaled),
                "SuccessfulRescale",
                format!("New size: {}; reason: {reason}", decision.replicas),
            ));
        }
        if let Some(updated) = workload::with_status(hpa, status(hpa, &outcome, &now)) {
            writes.push(Planned::quiet(Write::Update(updated)));
        }
        Plan {
            writes,
            requeue_after: requeue,
        }
    }
}

impl HpaReconciler {
    /// A status that says why nothing was scaled.
    fn only_status(&self, hpa: &Value, why: Result<(), (String, String)>, now: &str) -> Plan {
        let current = hpa["status"]["currentReplicas"].as_i64().unwrap_or(0);
        let outcome = Outcome {
            current,
            desired: current,
            metrics: Vec::new(),
            active: why,
            limited: None,
            scaled: false,
        };
        Plan {
            writes: workload::with_status(hpa, status(hpa, &outcome, now))
                .map(|u| Planned::quiet(Write::Update(u)))
                .into_iter()
                .collect(),
            requeue_after: Some(SYNC_EVERY),
        }
    }
}

/// One entry of `status.currentMetrics`.
fn current_metric(metric: Metric, current: u64) -> Value {
    let value = match (metric.target, metric.resource) {
        (Target::Utilization(_), _) => json!({"averageUtilization": current}),
        (Target::AverageValue(_), Resource::Cpu) => json!({"averageValue": format!("{current}m")}),
        (Target::AverageValue(_), Resource::Memory) => json!({"averageValue": current.to_string()}),
    };
    json!({"type": "Resource", "resource": {"name": metric.resource.as_str(), "current": value}})
}
