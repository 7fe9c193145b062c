//! HorizontalPodAutoscaler (`autoscaling/v2`): the spec as the controller
//! reads it, Kubernetes' replica calculation for Resource metrics
//! (utilization of requests or an average value, the 10 % tolerance, pods
//! without figures or not ready counted the conservative way), the
//! stabilization windows and the scaling policies. Pure: the controller
//! feeds it figures and the recommendations and scale events it keeps.

use serde_json::Value;

use crate::quantity::{cpu_millis, memory_bytes};
use crate::FieldCause;

/// Kubernetes' `--horizontal-pod-autoscaler-tolerance`.
pub const TOLERANCE: f64 = 0.1;
/// The scale-down stabilization window when `behavior` names none.
pub const DOWN_STABILIZATION_DEFAULT_SECS: u64 = 300;

/// A resource an HPA can scale on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::Memory => "memory",
        }
    }

    /// A quantity of this resource in its base unit: millicores for CPU,
    /// bytes for memory.
    pub fn amount(self, q: &str) -> Option<u64> {
        let v = match self {
            Resource::Cpu => cpu_millis(q).ok()?,
            Resource::Memory => memory_bytes(q).ok()?,
        };
        u64::try_from(v).ok()
    }
}

/// What one metric aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Percent of the pods' requests, on average.
    Utilization(u64),
    /// An amount per pod, on average (base units).
    AverageValue(u64),
}

/// One Resource metric of an HPA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub resource: Resource,
    pub target: Target,
}

/// A scaling policy: at most `value` pods or percent per `period_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Pods { value: u64, period_secs: u64 },
    Percent { value: u64, period_secs: u64 },
}

impl Policy {
    fn period_secs(self) -> u64 {
        match self {
            Policy::Pods { period_secs, .. } | Policy::Percent { period_secs, .. } => period_secs,
        }
    }
}

/// One direction's rules (`behavior.scaleUp` or `scaleDown`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub stabilization_secs: u64,
    pub policies: Vec<Policy>,
    /// `selectPolicy`: Max (the most change), Min, or Disabled.
    pub select: Select,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

/// An HPA's spec as the controller needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub target_kind: String,
    pub target_name: String,
    pub min_replicas: i64,
    pub max_replicas: i64,
    pub metrics: Vec<Metric>,
    pub up: Rules,
    pub down: Rules,
}

/// Kubernetes' default scale-up rules: no stabilization; the more of
/// doubling or four pods per 15 s.
pub fn default_up() -> Rules {
    Rules {
        stabilization_secs: 0,
        policies: vec![
            Policy::Percent {
                value: 100,
                period_secs: 15,
            },
            Policy::Pods {
                value: 4,
                period_secs: 15,
            },
        ],
        select: Select::Max,
    }
}

/// Kubernetes' default scale-down rules: a 300 s window; down to the
/// minimum at once.
pub fn default_down() -> Rules {
    Rules {
        stabilization_secs: DOWN_STABILIZATION_DEFAULT_SECS,
        policies: vec![Policy::Percent {
            value: 100,
            period_secs: 15,
        }],
        select: Select::Max,
    }
}

fn rules(v: &Value, at: &str, default: Rules, causes: &mut Vec<FieldCause>) -> Rules {
    if v.is_null() {
        return default;
    }
    let stabilization_secs = match &v["stabilizationWindowSeconds"] {
        Value::Null => default.stabilization_secs,
        n => match n.as_u64().filter(|s| *s <= 3600) {
            Some(s) => s,
            None => {
                causes.push(FieldCause::new(
                    format!("{at}.stabilizationWindowSeconds"),
                    "must be between 0 and 3600",
                ));
                0
            }
        },
    };
    let select = match v["selectPolicy"].as_str() {
        None | Some("Max") => Select::Max,
        Some("Min") => Select::Min,
        Some("Disabled") => Select::Disabled,
        Some(other) => {
            causes.push(FieldCause::new(
                format!("{at}.selectPolicy"),
                format!("{other:?} is not one of Max, Min, Disabled"),
            ));
            Select::Max
        }
    };
    let policies = match v["policies"].as_array() {
        None => default.policies,
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let f = format!("{at}.policies[{i}]");
                let value = p["value"].as_u64().filter(|v| *v > 0);
                let period_secs = p["periodSeconds"]
                    .as_u64()
                    .filter(|s| (1..=1800).contains(s));
                match (p["type"].as_str(), value, period_secs) {
                    (_, None, _) => {
                        causes.push(FieldCause::new(
                            format!("{f}.value"),
                            "must be greater than 0",
                        ));
                        None
                    }
                    (_, _, None) => {
                        causes.push(FieldCause::new(
                            format!("{f}.periodSeconds"),
                            "must be between 1 and 1800",
                        ));
                        None
                    }
                    (Some("Pods"), Some(value), Some(period_secs)) => {
                        Some(Policy::Pods { value, period_secs })
                    }
                    (Some("Percent"), Some(value), Some(period_secs)) => {
                        Some(Policy::Percent { value, period_secs })
                    }
                    (t, _, _) => {
                        causes.push(FieldCause::new(
                            format!("{f}.type"),
                            format!("{:?} is not one of Pods, Percent", t.unwrap_or("")),
                        ));
                        None
                    }
                }
            })
            .collect(),
    };
    Rules {
        stabilization_secs,
        policies,
        select,
    }
}

/// Reads and checks an HPA's spec; every broken rule is named by its field.
pub fn parse(hpa: &Value) -> Result<Spec, Vec<FieldCause>> {
    let spec = &hpa["spec"];
    let mut causes = Vec::new();
    let target = &spec["scaleTargetRef"];
    let target_kind = target["kind"].as_str().unwrap_or_default().to_string();
    let target_name = target["name"].as_str().unwrap_or_default().to_string();
    if target_kind.is_empty() {
        causes.push(FieldCause::new("spec.scaleTargetRef.kind", "is required"));
    }
    if target_name.is_empty() {
        causes.push(FieldCause::new("spec.scaleTargetRef.name", "is required"));
    }
    let scalable = crate::Kind::ALL
        .iter()
        .any(|k| k.as_str() == target_kind && k.scalable());
    if !target_kind.is_empty() && !scalable {
        causes.push(FieldCause::new(
            "spec.scaleTargetRef.kind",
            format!(
                "{target_kind:?} has no scale subresource here; one of Deployment, ReplicaSet, StatefulSet, ReplicationController"
            ),
        ));
    }
    let min_replicas = match &spec["minReplicas"] {
        Value::Null => 1,
        v => v.as_i64().unwrap_or(-1),
    };
    if min_replicas < 1 {
        causes.push(FieldCause::new(
            "spec.minReplicas",
            "must be at least 1 (scaling to zero is not supported)",
        ));
    }
    let max_replicas = spec["maxReplicas"].as_i64().unwrap_or(0);
    if max_replicas < 1 {
        causes.push(FieldCause::new(
            "spec.maxReplicas",
            "is required and must be at least 1",
        ));
    } else if max_replicas < min_replicas {
        causes.push(FieldCause::new(
            "spec.maxReplicas",
            format!("must be at least minReplicas ({min_replicas})"),
        ));
    }
    let mut metrics = Vec::new();
    let listed = spec["metrics"].as_array().cloned().unwrap_or_default();
    if listed.is_empty() {
        // Kubernetes' default: 80 % of the CPU requested
        metrics.push(Metric {
            resource: Resource::Cpu,
            target: Target::Utilization(80),
        });
    }
    for (i, m) in listed.iter().enumerate() {
        let at = format!("spec.metrics[{i}]");
        if m["type"] != "Resource" {
            causes.push(FieldCause::new(
                format!("{at}.type"),
                format!(
                    "{} metrics are not supported; kubus scales on Resource (cpu, memory)",
                    m["type"].as_str().unwrap_or("untyped")
                ),
            ));
            continue;
        }
        let r = &m["resource"];
        let resource = match r["name"].as_str() {
            Some("cpu") => Resource::Cpu,
            Some("memory") => Resource::Memory,
            other => {
                causes.push(FieldCause::new(
                    format!("{at}.resource.name"),
                    format!("{:?} is not one of cpu, memory", other.unwrap_or("")),
                ));
                continue;
            }
        };
        let t = &r["target"];
        let target = match t["type"].as_str() {
            Some("Utilization") => match t["averageUtilization"].as_u64().filter(|u| *u > 0) {
                Some(u) => Target::Utilization(u),
                None => {
                    causes.push(FieldCause::new(
                        format!("{at}.resource.target.averageUtilization"),
                        "must be greater than 0",
                    ));
                    continue;
                }
            },
            Some("AverageValue") => match t["averageValue"]
                .as_str()
                .map(str::to_string)
                .or_else(|| t["averageValue"].as_u64().map(|n| n.to_string()))
                .and_then(|q| resource.amount(&q))
                .filter(|v| *v > 0)
            {
                Some(v) => Target::AverageValue(v),
                None => {
                    causes.push(FieldCause::new(
                        format!("{at}.resource.target.averageValue"),
                        "must be a quantity greater than 0",
                    ));
                    continue;
                }
            },
            other => {
                causes.push(FieldCause::new(
                    format!("{at}.resource.target.type"),
                    format!(
                        "{:?} is not one of Utilization, AverageValue",
                        other.unwrap_or("")
                    ),
                ));
                continue;
            }
        };
        metrics.push(Metric { resource, target });
    }
    let up = rules(
        &spec["behavior"]["scaleUp"],
        "spec.behavior.scaleUp",
        default_up(),
        &mut causes,
    );
    let down = rules(
        &spec["behavior"]["scaleDown"],
        "spec.behavior.scaleDown",
        default_down(),
        &mut causes,
    );
    if !causes.is_empty() {
        return Err(causes);
    }
    Ok(Spec {
        target_kind,
        target_name,
        min_replicas,
        max_replicas,
        metrics,
        up,
        down,
    })
}

/// One pod as the calculation sees it, for one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodFigure {
    /// Ready (an unready pod's figure is not trusted for scaling up).
    pub ready: bool,
    /// The sum of its containers' requests (base units); None: some
    /// container requests none.
    pub request: Option<u64>,
    /// Its usage (base units); None: no figure yet.
    pub usage: Option<u64>,
}

/// What one metric recommends: replicas, and the current value (percent of
/// requests for Utilization, the average for AverageValue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    pub replicas: i64,
    pub current: u64,
}

/// Kubernetes' replica calculation for one Resource metric over the
/// target's pods (`current` replicas now). Errors say why no figure can
/// be had (no pod has one; a pod without a request for a utilization).
pub fn recommend(
    current: i64,
    pods: &[PodFigure],
    metric: Metric,
) -> Result<Recommendation, String> {
    let name = metric.resource.as_str();
    if let Target::Utilization(_) = metric.target {
        if pods.iter().any(|p| p.request.is_none()) {
            return Err(format!(
                "missing request for {name}: every container of the target's pods must request it"
            ));
        }
    }
    let measured: Vec<&PodFigure> = pods.iter().filter(|p| p.usage.is_some()).collect();
    if measured.is_empty() {
        return Err(format!("no {name} figures for the target's pods yet"));
    }
    let ready: Vec<&PodFigure> = measured.iter().copied().filter(|p| p.ready).collect();
    let unready = measured.len() - ready.len();
    let missing = pods.len() - measured.len();
    let target_of = |n: usize| -> f64 {
        match metric.target {
            Target::Utilization(pct) => {
                let requested: u64 = ready.iter().filter_map(|p| p.request).sum();
                requested as f64 * pct as f64 / 100.0
            }
            Target::AverageValue(v) => (v as f64) * n as f64,
        }
    };
    let used: u64 = ready.iter().filter_map(|p| p.usage).sum();
    let current_value = |used: u64, counted: &[&PodFigure]| -> u64 {
        match metric.target {
            Target::Utilization(_) => {
                let req: u64 = counted.iter().filter_map(|p| p.request).sum();
                (used * 100).checked_div(req).unwrap_or(0)
            }
            Target::AverageValue(_) => used / (counted.len().max(1) as u64),
        }
    };
    if ready.is_empty() {
        return Err(format!(
            "no ready pod of the target has a {name} figure yet"
        ));
    }
    let target_total = target_of(ready.len());
    let ratio = if target_total > 0.0 {
        used as f64 / target_total
    } else {
        0.0
    };
    let value = current_value(used, &ready);
    let rebalance_unready = unready > 0 && ratio > 1.0;
    if !rebalance_unready && missing == 0 {
        if (1.0 - ratio).abs() <= TOLERANCE {
            return Ok(Recommendation {
                replicas: current,
                current: value,
            });
        }
        return Ok(Recommendation {
            replicas: (ratio * ready.len() as f64).ceil() as i64,
            current: value,
        });
    }
    // Kubernetes counts pods without a figure the way that makes the
    // change smaller: as using all they requested (or the target) when
    // scaling down, nothing when scaling up; unready pods as nothing
    let per_pod_target = |p: &PodFigure| -> u64 {
        match metric.target {
            Target::Utilization(pct) => p.request.unwrap_or(0) * pct / 100,
            Target::AverageValue(v) => v,
        }
    };
    let mut counted: Vec<&PodFigure> = ready.clone();
    let mut total = used as f64;
    let mut target = target_total;
    for p in pods.iter().filter(|p| p.usage.is_none()) {
        counted.push(p);
        target += per_pod_target(p) as f64;
        if ratio < 1.0 {
            total += per_pod_target(p) as f64;
        }
    }
    if rebalance_unready {
        for p in measured.iter().filter(|p| !p.ready) {
            counted.push(p);
            target += per_pod_target(p) as f64;
        }
    }
    let new_ratio = if target > 0.0 { total / target } else { 0.0 };
    if (1.0 - new_ratio).abs() <= TOLERANCE
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(Recommendation {
            replicas: current,
            current: value,
        });
    }
    let replicas = (new_ratio * counted.len() as f64).ceil() as i64;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(Recommendation {
            replicas: current,
            current: value,
        });
    }
    Ok(Recommendation {
        replicas,
        current: value,
    })
}

/// A replica count the controller recommended at `at_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommended {
    pub at_secs: u64,
    pub replicas: i64,
}

/// A scale the controller made: `change` replicas (negative: down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    pub at_secs: u64,
    pub change: i64,
}

/// What the HPA scales to, and why when limited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub replicas: i64,
    /// Why the recommendation was not followed all the way (a window, a
    /// policy, min/max), for the ScalingLimited condition.
    pub limited: Option<String>,
}

/// Kubernetes' normalization with behaviors: the recommendation `wanted`
/// (already the max over the metrics) stabilized over the windows of the
/// recent `recommended` ones, then limited by the policies given the
/// recent `events`, then clamped to [min, max].
pub fn decide(
    spec: &Spec,
    current: i64,
    wanted: i64,
    now_secs: u64,
    recommended: &[Recommended],
    events: &[ScaleEvent],
) -> Decision {
    // stabilization: up to the least recommended within the up window,
    // down to the most recommended within the down window
    let mut up = wanted;
    let mut down = wanted;
    for r in recommended {
        if r.at_secs + spec.up.stabilization_secs > now_secs {
            up = up.min(r.replicas);
        }
        if r.at_secs + spec.down.stabilization_secs > now_secs {
            down = down.max(r.replicas);
        }
    }
    let mut stabilized = current;
    if stabilized < up {
        stabilized = up;
    }
    if stabilized > down {
        stabilized = down;
    }
    let mut limited = (stabilized != wanted)
        .then(|| "the recommendation is held by the stabilization window".to_string());
    let changed_within = |period: u64, sign: i64| -> i64 {
        events
            .iter()
            .filter(|e| e.at_secs + period > now_secs && e.change.signum() == sign)
            .map(|e| e.change.abs())
            .sum()
    };
    let mut replicas = stabilized;
    if stabilized > current {
        let limit = match spec.up.select {
            Select::Disabled => current,
            select => {
                let proposals = spec.up.policies.iter().map(|p| {
                    let start = current - changed_within(p.period_secs(), 1);
                    match *p {
                        Policy::Pods { value, .. } => start + value as i64,
                        Policy::Percent { value, .. } => {
                            ((start as f64) * (1.0 + value as f64 / 100.0)).ceil() as i64
                        }
                    }
                });
                match select {
                    Select::Min => proposals.min(),
                    _ => proposals.max(),
                }
                .unwrap_or(stabilized)
            }
        };
        if replicas > limit {
            replicas = limit.max(current);
            limited = Some("the scale-up policy limits the change".into());
        }
    } else if stabilized < current {
        let limit = match spec.down.select {
            Select::Disabled => current,
            select => {
                let proposals = spec.down.policies.iter().map(|p| {
                    let start = current + changed_within(p.period_secs(), -1);
                    match *p {
                        Policy::Pods { value, .. } => start - value as i64,
                        Policy::Percent { value, .. } => {
                            ((start as f64) * (1.0 - value as f64 / 100.0)).floor() as i64
                        }
                    }
                });
                // Max selects the policy allowing the most change: the
                // lowest floor
                match select {
                    Select::Min => proposals.max(),
                    _ => proposals.min(),
                }
                .unwrap_or(stabilized)
            }
        };
        if replicas < limit {
            replicas = limit.min(current);
            limited = Some("the scale-down policy limits the change".into());
        }
    }
    if replicas > spec.max_replicas {
        replicas = spec.max_replicas;
        limited = Some(format!(
            "the desired replica count is more than the maximum ({})",
            spec.max_replicas
        ));
    } else if replicas < spec.min_replicas {
        replicas = spec.min_replicas;
        limited = Some(format!(
            "the desired replica count is less than the minimum ({})",
            spec.min_replicas
        ));
    }
    Decision { replicas, limited }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods(n: usize, request: u64, usage: u64) -> Vec<PodFigure> {
        (0..n)
            .map(|_| PodFigure {
                ready: true,
                request: Some(request),
                usage: Some(usage),
            })
            .collect()
    }

    const CPU50: Metric = Metric {
        resource: Resource::Cpu,
        target: Target::Utilization(50),
    };

    #[test]
    fn utilization_scales_by_the_ratio_within_tolerance() {
        // 2 pods at 100 % of 200m against 50 %: double
        assert_eq!(
            recommend(2, &pods(2, 200, 200), CPU50).map(|r| r.replicas),
            Ok(4)
        );
        assert_eq!(
            recommend(2, &pods(2, 200, 200), CPU50).map(|r| r.current),
            Ok(100)
        );
        // 54 % is within 10 % of 50 %: unchanged
        assert_eq!(
            recommend(3, &pods(3, 200, 108), CPU50).map(|r| r.replicas),
            Ok(3)
        );
        // idle: down to one
        assert_eq!(
            recommend(4, &pods(4, 200, 2), CPU50).map(|r| r.replicas),
            Ok(1)
        );
        let avg = Metric {
            resource: Resource::Memory,
            target: Target::AverageValue(100),
        };
        assert_eq!(
            recommend(2, &pods(2, 0, 300), avg).map(|r| r.replicas),
            Ok(6)
        );
    }

    #[test]
    fn missing_figures_and_requests() {
        let mut p = pods(2, 200, 400);
        p.push(PodFigure {
            ready: true,
            request: Some(200),
            usage: None,
        });
        // scaling up: the pod without a figure counts as using nothing
        // (1200 % target total 300 → 800/300 = 2.67 × 3 = 8)
        assert_eq!(recommend(3, &p, CPU50).map(|r| r.replicas), Ok(8));
        let no_request = vec![PodFigure {
            ready: true,
            request: None,
            usage: Some(5),
        }];
        assert!(recommend(1, &no_request, CPU50)
            .expect_err("refused")
            .contains("missing request for cpu"));
        let none = vec![PodFigure {
            ready: true,
            request: Some(1),
            usage: None,
        }];
        assert!(recommend(1, &none, CPU50)
            .expect_err("refused")
            .contains("no cpu figures"));
    }

    fn spec() -> Spec {
        parse(&json!({"spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
            "minReplicas": 1, "maxReplicas": 10,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]
        }}))
        .expect("valid")
    }

    #[test]
    fn parse_defaults_and_refusals() {
        let s = spec();
        assert_eq!(s.metrics, vec![CPU50]);
        assert_eq!(s.down.stabilization_secs, 300);
        assert_eq!(s.up, default_up());
        let bad = parse(&json!({"spec": {
            "scaleTargetRef": {"kind": "Deployment"},
            "minReplicas": 0, "maxReplicas": 0,
            "metrics": [{"type": "Pods"}, {"type": "Resource", "resource": {"name": "gpu", "target": {"type": "Utilization", "averageUtilization": 5}}}],
            "behavior": {"scaleDown": {"selectPolicy": "Most", "policies": [{"type": "Pods", "value": 0, "periodSeconds": 15}]}}
        }}))
        .expect_err("refused");
        let fields: Vec<&str> = bad.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "spec.scaleTargetRef.name",
                "spec.minReplicas",
                "spec.maxReplicas",
                "spec.metrics[0].type",
                "spec.metrics[1].resource.name",
                "spec.behavior.scaleDown.selectPolicy",
                "spec.behavior.scaleDown.policies[0].value",
            ]
        );
        let default_cpu = parse(&json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "w"}, "maxReplicas": 3}})).expect("valid");
        assert_eq!(default_cpu.metrics[0].target, Target::Utilization(80));
    }

    #[test]
    fn windows_policies_and_bounds() {
        let s = spec();
        // up: doubling or +4 per 15 s, the more: 2 → 6 at most
        let d = decide(&s, 2, 9, 100, &[], &[]);
        assert_eq!(d.replicas, 6);
        assert!(d.limited.is_some());
        // a scale of +4 within the period counts against the next one
        let d = decide(
            &s,
            6,
            20,
            105,
            &[],
            &[ScaleEvent {
                at_secs: 100,
                change: 4,
            }],
        );
        assert_eq!(
            d.replicas, 6,
            "the period began at 2: max(2 × 2, 2 + 4) = 6"
        );
        // down: held by the 300 s window while a higher one was recommended
        let recent = [Recommended {
            at_secs: 50,
            replicas: 6,
        }];
        assert_eq!(decide(&s, 6, 1, 200, &recent, &[]).replicas, 6);
        // and followed once the window has passed
        assert_eq!(decide(&s, 6, 1, 400, &recent, &[]).replicas, 1);
        // bounds
        assert_eq!(
            decide(
                &s,
                10,
                30,
                1000,
                &[],
                &[ScaleEvent {
                    at_secs: 0,
                    change: 1
                }]
            )
            .replicas,
            10
        );
        let mut low = s.clone();
        low.min_replicas = 2;
        low.down.stabilization_secs = 0;
        assert_eq!(decide(&low, 5, 1, 1000, &[], &[]).replicas, 2);
    }
}
