//! Tables of objects with kubectl's columns: one printer for `kubus get`
//! and the API gateway's `Table` responses (meta.k8s.io/v1).

use crate::{meta, Kind};
use serde_json::Value;

/// A duration as kubectl shows ages (apimachinery's `HumanDuration`):
/// 45s, 3m20s, 60m, 5h10m, 24h, 3d4h, 20d, 2y30d.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        return match (hours / 24) % 365 {
            0 => format!("{}y", hours / 24 / 365),
            d => format!("{}y{d}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// An HPA's TARGETS cell as kubectl prints it: `cpu: 12%/50%` per metric
/// (`<unknown>` before a figure), comma-separated.
fn hpa_targets(v: &Value) -> String {
    let specs = v
        .pointer("/spec/metrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| {
            vec![
                serde_json::json!({"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}),
            ]
        });
    let current = v
        .pointer("/status/currentMetrics")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let cells: Vec<String> = specs
        .iter()
        .map(|m| {
            let name = m
                .pointer("/resource/name")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let now = current
                .iter()
                .find(|c| c.pointer("/resource/name").and_then(Value::as_str) == Some(name));
            let target = m.pointer("/resource/target").cloned().unwrap_or_default();
            if let Some(u) = target.get("averageUtilization").and_then(Value::as_i64) {
                let got = now
                    .and_then(|c| c.pointer("/resource/current/averageUtilization"))
                    .and_then(Value::as_i64)
                    .map_or("<unknown>".to_string(), |c| format!("{c}%"));
                format!("{name}: {got}/{u}%")
            } else {
                let want = match target.get("averageValue") {
                    Some(Value::String(q)) => q.clone(),
                    Some(other) => other.to_string(),
                    None => "?".into(),
                };
                let got = now
                    .and_then(|c| c.pointer("/resource/current/averageValue"))
                    .and_then(Value::as_str)
                    .unwrap_or("<unknown>");
                format!("{name}: {got}/{want}")
            }
        })
        .collect();
    cells.join(", ")
}

/// The age of a timestamp at `now`, as kubectl shows it (`<unknown>` when
/// absent or unreadable).
pub fn age(created: Option<&str>, now: jiff::Timestamp) -> String {
    let Some(ts) = created.and_then(|c| c.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    human_duration(now.as_second() - ts.as_second())
}

/// A timestamp as `kubectl describe` shows it (RFC 1123 with a numeric
/// zone, in UTC): `Mon, 02 Jan 2006 15:04:05 +0000`; the text as given
/// when it is not a timestamp.
pub fn rfc1123z(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string(),
        Err(_) => ts.to_string(),
    }
}

/// The string at `pointer`, or "".
pub fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at `pointer`, or 0.
pub fn n(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The array at `pointer`, or none.
pub fn list<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The order Events are shown in: by when they last happened, then (the
/// store's timestamps being whole seconds) by the revision that last
/// wrote them.
pub fn event_order(e: &Value) -> (String, u64) {
    (
        s(e, "/lastTimestamp").to_string(),
        meta::resource_version(e).unwrap_or(0),
    )
}

/// What `kubectl get pods` shows of a pod: READY (`ready/total`), STATUS
/// and RESTARTS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    pub ready: usize,
    pub total: usize,
    pub restarts: i64,
    pub status: String,
}

/// A pod's READY, STATUS and RESTARTS by kubectl's rules (`printPod` in
/// kubernetes' `pkg/printers/internalversion`): the first init container
/// not done decides (`Init:1/2`, `Init:CrashLoopBackOff`, `Init:Error`,
/// `Init:ExitCode:3`); then the first app container with a waiting or
/// terminated reason (`ContainerCreating`, `PodInitializing`,
/// `ImagePullBackOff`, `CrashLoopBackOff`, `Completed`, `Error`,
/// `OOMKilled`, `ExitCode:N`); `Completed` with a container still running
/// is `Running` (pod Ready) or `NotReady`; a pod being deleted is
/// `Terminating` (or `Unknown` when its node is lost). Sidecars (init
/// containers with `restartPolicy: Always`) count as containers.
pub fn pod_summary(pod: &Value) -> PodSummary {
    let init_specs = list(pod, "/spec/initContainers");
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|c| c["name"] == name && c["restartPolicy"] == "Always")
    };
    let total = list(pod, "/spec/containers").len()
        + init_specs
            .iter()
            .filter(|c| c["restartPolicy"] == "Always")
            .count();
    let mut reason = s(pod, "/status/phase").to_string();
    if reason.is_empty() {
        reason = "Pending".into();
    }
    if !s(pod, "/status/reason").is_empty() {
        reason = s(pod, "/status/reason").to_string();
    }
    if list(pod, "/status/conditions")
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut initializing = false;
    for (i, c) in list(pod, "/status/initContainerStatuses")
        .iter()
        .enumerate()
    {
        let count = n(c, "/restartCount");
        restarts += count;
        if restartable(s(c, "/name")) {
            sidecar_restarts += count;
            if c["started"] == true && c["ready"] == true {
                ready += 1;
            }
            continue;
        }
        let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
        let waiting = s(c, "/state/waiting/reason");
        match terminated {
            Some(t) if n(t, "/exitCode") == 0 => continue,
            Some(t) => {
                reason = match (s(t, "/reason"), n(t, "/signal")) {
                    ("", 0) => format!("Init:ExitCode:{}", n(t, "/exitCode")),
                    ("", signal) => format!("Init:Signal:{signal}"),
                    (r, _) => format!("Init:{r}"),
                };
            }
            None if !waiting.is_empty() && waiting != "PodInitializing" => {
                reason = format!("Init:{waiting}");
            }
            None => reason = format!("Init:{i}/{}", init_specs.len()),
        }
        initializing = true;
        break;
    }
    let initialized = list(pod, "/status/conditions")
        .iter()
        .any(|c| c["type"] == "Initialized" && c["status"] == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        let mut has_running = false;
        for c in list(pod, "/status/containerStatuses").iter().rev() {
            restarts += n(c, "/restartCount");
            let waiting = s(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated").filter(|t| t.is_object());
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                reason = match (s(t, "/reason"), n(t, "/signal")) {
                    ("", 0) => format!("ExitCode:{}", n(t, "/exitCode")),
                    ("", signal) => format!("Signal:{signal}"),
                    (r, _) => r.to_string(),
                };
            } else if c["ready"] == true
                && c.pointer("/state/running").is_some_and(Value::is_object)
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if crate::pod::is_ready(pod) {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if crate::pod::is_terminating(pod) {
        if s(pod, "/status/reason") == "NodeLost" {
            reason = "Unknown".into();
        } else if !crate::pod::is_finished(pod) {
            reason = "Terminating".into();
        }
    }
    PodSummary {
        ready,
        total,
        restarts,
        status: reason,
    }
}

fn pod_row(pod: &Value, wide: bool) -> Vec<String> {
    let summary = pod_summary(pod);
    let mut row = vec![
        meta::name(pod).unwrap_or_default().to_string(),
        format!("{}/{}", summary.ready, summary.total),
        summary.status,
        summary.restarts.to_string(),
    ];
    if wide {
        row.push(String::new()); // AGE placeholder, filled by the caller
        row.push(or_none(s(pod, "/status/podIP")));
        row.push(or_none(s(pod, "/spec/nodeName")));
    }
    row
}

fn or_none(x: &str) -> String {
    if x.is_empty() {
        "<none>".into()
    } else {
        x.into()
    }
}

/// The header of `kubectl get KIND`.
pub fn columns(kind: Kind, wide: bool) -> Vec<&'static str> {
    match kind {
        Kind::Pod if wide => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"],
        Kind::Pod => vec!["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
        Kind::Deployment => vec!["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        Kind::ReplicaSet | Kind::ReplicationController => {
            vec!["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
        }
        Kind::DaemonSet => vec![
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE",
        ],
        Kind::StatefulSet => vec!["NAME", "READY", "AGE"],
        Kind::Job => vec!["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        Kind::CronJob => vec![
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE",
        ],
        Kind::HorizontalPodAutoscaler => vec![
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE",
        ],
        Kind::PodDisruptionBudget => vec![
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE",
        ],
        Kind::PersistentVolume => vec![
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE",
        ],
        Kind::PersistentVolumeClaim => vec![
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE",
        ],
        Kind::ControllerRevision => vec!["NAME", "CONTROLLER", "REVISION", "AGE"],
        Kind::PriorityClass => vec!["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"],
        Kind::StorageClass => vec![
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE",
        ],
        Kind::Node => vec!["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        Kind::Service => {
            let mut c = vec![
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ];
            if wide {
                c.push("SELECTOR");
            }
            c
        }
        Kind::Endpoints => vec!["NAME", "ENDPOINTS", "AGE"],
        Kind::EndpointSlice => vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
        Kind::Namespace => vec!["NAME", "STATUS", "AGE"],
        Kind::ConfigMap => vec!["NAME", "DATA", "AGE"],
        Kind::Secret => vec!["NAME", "TYPE", "DATA", "AGE"],
        Kind::Event => vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        Kind::Lease => vec!["NAME", "HOLDER", "AGE"],
        Kind::ServiceAccount => vec!["NAME", "SECRETS", "AGE"],
        Kind::Role | Kind::ClusterRole => vec!["NAME", "CREATED AT"],
        Kind::RoleBinding | Kind::ClusterRoleBinding if wide => {
            vec!["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
        }
        Kind::RoleBinding | Kind::ClusterRoleBinding => vec!["NAME", "ROLE", "AGE"],
    }
}

/// `key=value,…` of a string map (kubectl's `labels.FormatLabels`,
/// sorted), `<none>` when empty.
pub fn format_labels(m: Option<&Value>) -> String {
    let mut pairs: Vec<String> = m
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

/// kubectl's short access modes: RWO, ROX, RWX, RWOP.
fn access_modes(modes: &[Value]) -> String {
    modes
        .iter()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A Job's STATUS column: its first finished or notable condition.
fn job_status(v: &Value) -> String {
    let has = |t: &str| {
        list(v, "/status/conditions")
            .iter()
            .any(|c| c["type"] == t && c["status"] == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if crate::pod::is_terminating(v) {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
    .into()
}

fn row(kind: Kind, v: &Value, wide: bool, age: String, now: jiff::Timestamp) -> Vec<String> {
    let name = meta::name(v).unwrap_or_default().to_string();
    let count = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_object)
            .map_or(0, |m| m.len())
    };
    match kind {
        Kind::Pod => {
            let mut r = pod_row(v, wide);
            if wide {
                r[4] = age;
            } else {
                r.push(age);
            }
            r
        }
        Kind::Deployment => vec![
            name,
            format!(
                "{}/{}",
                n(v, "/status/readyReplicas"),
                n(v, "/spec/replicas")
            ),
            n(v, "/status/updatedReplicas").to_string(),
            n(v, "/status/availableReplicas").to_string(),
            age,
        ],
        Kind::ReplicaSet | Kind::ReplicationController => vec![
            name,
            n(v, "/spec/replicas").to_string(),
            n(v, "/status/replicas").to_string(),
            n(v, "/status/readyReplicas").to_string(),
            age,
        ],
        Kind::DaemonSet => vec![
            name,
            n(v, "/status/desiredNumberScheduled").to_string(),
            n(v, "/status/currentNumberScheduled").to_string(),
            n(v, "/status/numberReady").to_string(),
            n(v, "/status/updatedNumberScheduled").to_string(),
            n(v, "/status/numberAvailable").to_string(),
            format_labels(v.pointer("/spec/template/spec/nodeSelector")),
            age,
        ],
        Kind::StatefulSet => vec![
            name,
            format!(
                "{}/{}",
                n(v, "/status/readyReplicas"),
                n(v, "/spec/replicas")
            ),
            age,
        ],
        Kind::Job => {
            let succeeded = n(v, "/status/succeeded");
            let completions = match (
                v.pointer("/spec/completions").and_then(Value::as_i64),
                v.pointer("/spec/parallelism").and_then(Value::as_i64),
            ) {
                (Some(c), _) => format!("{succeeded}/{c}"),
                (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
                _ => format!("{succeeded}/1"),
            };
            let start = v.pointer("/status/startTime").and_then(Value::as_str);
            let end = v
                .pointer("/status/completionTime")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .unwrap_or(now);
            let duration = match start {
                Some(_) => self::age(start, end),
                None => String::new(),
            };
            vec![name, job_status(v), completions, duration, age]
        }
        Kind::CronJob => vec![
            name,
            s(v, "/spec/schedule").into(),
            or_none(s(v, "/spec/timeZone")),
            match v.pointer("/spec/suspend").and_then(Value::as_bool) {
                Some(true) => "True".into(),
                Some(false) => "False".into(),
                None => "<unset>".into(),
            },
            list(v, "/status/active").len().to_string(),
            match v
                .pointer("/status/lastScheduleTime")
                .and_then(Value::as_str)
            {
                Some(t) => self::age(Some(t), now),
                None => "<none>".into(),
            },
            age,
        ],
        Kind::HorizontalPodAutoscaler => vec![
            name,
            format!(
                "{}/{}",
                s(v, "/spec/scaleTargetRef/kind"),
                s(v, "/spec/scaleTargetRef/name")
            ),
            hpa_targets(v),
            match v.pointer("/spec/minReplicas").and_then(Value::as_i64) {
                Some(m) => m.to_string(),
                None => "1".into(),
            },
            n(v, "/spec/maxReplicas").to_string(),
            n(v, "/status/currentReplicas").to_string(),
            age,
        ],
        Kind::PodDisruptionBudget => {
            let int_or_string = |p: &str| match v.pointer(p) {
                Some(Value::Number(x)) => x.to_string(),
                Some(Value::String(x)) => x.clone(),
                _ => "N/A".into(),
            };
            vec![
                name,
                int_or_string("/spec/minAvailable"),
                int_or_string("/spec/maxUnavailable"),
                n(v, "/status/disruptionsAllowed").to_string(),
                age,
            ]
        }
        Kind::PersistentVolume => {
            let claim = match (
                s(v, "/spec/claimRef/namespace"),
                s(v, "/spec/claimRef/name"),
            ) {
                (_, "") => String::new(),
                (ns, claim) => format!("{ns}/{claim}"),
            };
            vec![
                name,
                s(v, "/spec/capacity/storage").into(),
                access_modes(list(v, "/spec/accessModes")),
                s(v, "/spec/persistentVolumeReclaimPolicy").into(),
                s(v, "/status/phase").into(),
                claim,
                s(v, "/spec/storageClassName").into(),
                or_unset(s(v, "/spec/volumeAttributesClassName")),
                s(v, "/status/reason").into(),
                age,
            ]
        }
        Kind::PersistentVolumeClaim => {
            let bound = s(v, "/status/phase") == "Bound";
            vec![
                name,
                s(v, "/status/phase").into(),
                s(v, "/spec/volumeName").into(),
                if bound {
                    s(v, "/status/capacity/storage").into()
                } else {
                    String::new()
                },
                if bound {
                    access_modes(list(v, "/status/accessModes"))
                } else {
                    String::new()
                },
                s(v, "/spec/storageClassName").into(),
                or_unset(s(v, "/spec/volumeAttributesClassName")),
                age,
            ]
        }
        Kind::ControllerRevision => {
            // kubectl: the controller as <resource>.<group>/<name>
            let controller = v
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
                .map(|r| {
                    let kind = r["kind"].as_str().unwrap_or_default().to_ascii_lowercase();
                    format!("{kind}.apps/{}", r["name"].as_str().unwrap_or_default())
                })
                .unwrap_or_else(|| "<none>".into());
            vec![name, controller, n(v, "/revision").to_string(), age]
        }
        Kind::PriorityClass => vec![
            name,
            n(v, "/value").to_string(),
            (v.pointer("/globalDefault").and_then(Value::as_bool) == Some(true)).to_string(),
            age,
            s(v, "/preemptionPolicy").to_string(),
        ],
        Kind::StorageClass => {
            let default = meta::annotations(v)
                .get("storageclass.kubernetes.io/is-default-class")
                .is_some_and(|x| x == "true");
            let or = |p: &str, d: &str| match s(v, p) {
                "" => d.to_string(),
                x => x.to_string(),
            };
            vec![
                if default {
                    format!("{name} (default)")
                } else {
                    name
                },
                s(v, "/provisioner").into(),
                or("/reclaimPolicy", "Delete"),
                or("/volumeBindingMode", "Immediate"),
                (v.pointer("/allowVolumeExpansion").and_then(Value::as_bool) == Some(true))
                    .to_string(),
                age,
            ]
        }
        Kind::Node => {
            let ready = v
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
            let mut status = if ready { "Ready" } else { "NotReady" }.to_string();
            if v.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            vec![
                name,
                status,
                "<none>".into(),
                age,
                s(v, "/status/nodeInfo/kubeletVersion").into(),
            ]
        }
        Kind::Service => {
            let ports: Vec<String> = list(v, "/spec/ports")
                .iter()
                .map(|p| {
                    let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                    match n(p, "/nodePort") {
                        0 => format!("{}/{proto}", n(p, "/port")),
                        np => format!("{}:{np}/{proto}", n(p, "/port")),
                    }
                })
                .collect();
            let mut r = vec![
                name,
                s(v, "/spec/type").into(),
                or_none(s(v, "/spec/clusterIP")),
                external_ip(v),
                or_none(&ports.join(",")),
                age,
            ];
            if wide {
                r.push(format_labels(v.pointer("/spec/selector")));
            }
            r
        }
        Kind::ServiceAccount => vec![name, list(v, "/secrets").len().to_string(), age],
        Kind::Role | Kind::ClusterRole => vec![
            name,
            meta::meta_str(v, "creationTimestamp")
                .unwrap_or_default()
                .to_string(),
        ],
        Kind::RoleBinding | Kind::ClusterRoleBinding => {
            let mut r = vec![
                name,
                format!("{}/{}", s(v, "/roleRef/kind"), s(v, "/roleRef/name")),
                age,
            ];
            if wide {
                let of = |kind: &str| -> String {
                    list(v, "/subjects")
                        .iter()
                        .filter(|x| s(x, "/kind") == kind)
                        .map(|x| match (kind, s(x, "/namespace")) {
                            ("ServiceAccount", ns) if !ns.is_empty() => {
                                format!("{ns}/{}", s(x, "/name"))
                            }
                            _ => s(x, "/name").to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                r.extend([of("User"), of("Group"), of("ServiceAccount")]);
            }
            r
        }
        Kind::Endpoints => {
            let mut all = Vec::new();
            for subset in list(v, "/subsets") {
                let ports: Vec<i64> = list(subset, "/ports")
                    .iter()
                    .map(|p| n(p, "/port"))
                    .collect();
                for a in list(subset, "/addresses") {
                    let ip = s(a, "/ip");
                    if ports.is_empty() {
                        all.push(ip.to_string());
                    }
                    all.extend(ports.iter().map(|p| format!("{ip}:{p}")));
                }
            }
            vec![name, first_three(&all), age]
        }
        Kind::EndpointSlice => {
            let ports: Vec<String> = list(v, "/ports")
                .iter()
                .map(|p| n(p, "/port").to_string())
                .collect();
            let addresses: Vec<String> = list(v, "/endpoints")
                .iter()
                .flat_map(|e| list(e, "/addresses"))
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            vec![
                name,
                s(v, "/addressType").into(),
                if ports.is_empty() {
                    "<unset>".into()
                } else {
                    ports.join(",")
                },
                first_three(&addresses),
                age,
            ]
        }
        Kind::Namespace => {
            let phase = match s(v, "/status/phase") {
                "" => "Active",
                p => p,
            };
            vec![name, phase.into(), age]
        }
        Kind::ConfigMap => vec![
            name,
            (count("/data") + count("/binaryData")).to_string(),
            age,
        ],
        Kind::Secret => vec![name, s(v, "/type").into(), count("/data").to_string(), age],
        Kind::Event => vec![
            age,
            s(v, "/type").into(),
            s(v, "/reason").into(),
            format!(
                "{}/{}",
                s(v, "/involvedObject/kind").to_ascii_lowercase(),
                s(v, "/involvedObject/name")
            ),
            s(v, "/message").into(),
        ],
        Kind::Lease => vec![name, s(v, "/spec/holderIdentity").into(), age],
    }
}

fn or_unset(x: &str) -> String {
    if x.is_empty() {
        "<unset>".into()
    } else {
        x.into()
    }
}

/// kubectl's EXTERNAL-IP of a Service: the load balancer's addresses (or
/// `<pending>`), an ExternalName's name, `externalIPs`, else `<none>`.
fn external_ip(v: &Value) -> String {
    let list = |p: &str, field: Option<&str>| -> Vec<String> {
        v.pointer(p)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| match field {
                Some(f) => x.get(f).and_then(Value::as_str).map(str::to_string),
                None => x.as_str().map(str::to_string),
            })
            .collect()
    };
    let mut ips = list("/spec/externalIPs", None);
    match s(v, "/spec/type") {
        "ExternalName" => return s(v, "/spec/externalName").to_string(),
        "LoadBalancer" => {
            ips.extend(list("/status/loadBalancer/ingress", Some("ip")));
            if ips.is_empty() {
                return "<pending>".into();
            }
        }
        _ => {}
    }
    if ips.is_empty() {
        "<none>".into()
    } else {
        ips.join(",")
    }
}

/// kubectl's way of listing many addresses in one cell.
fn first_three(all: &[String]) -> String {
    match all.len() {
        0 => "<none>".into(),
        1..=3 => all.join(","),
        n => format!("{} + {} more...", all[..3].join(","), n - 3),
    }
}

/// The cells of one object's row under [`columns`]`(kind, wide)`: what
/// `kubus get` prints and a `Table` row holds.
pub fn cells(kind: Kind, v: &Value, wide: bool, now: jiff::Timestamp) -> Vec<String> {
    // an Event's age is that of its last occurrence
    let when = match kind {
        Kind::Event => v.get("lastTimestamp").and_then(Value::as_str),
        _ => meta::meta_str(v, "creationTimestamp"),
    };
    row(kind, v, wide, age(when, now), now)
}

/// A table's cells: the header, then a row per object.
pub fn table_rows(
    kind: Kind,
    items: &[Value],
    with_namespace: bool,
    wide: bool,
    now: jiff::Timestamp,
) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = Vec::with_capacity(items.len() + 1);
    let mut header: Vec<String> = columns(kind, wide).into_iter().map(String::from).collect();
    if with_namespace {
        header.insert(0, "NAMESPACE".into());
    }
    rows.push(header);
    for v in items {
        let mut r = cells(kind, v, wide, now);
        if with_namespace {
            r.insert(0, meta::namespace(v).unwrap_or_default().to_string());
        }
        rows.push(r);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ages() {
        let now: jiff::Timestamp = "2026-01-02T00:00:00Z".parse().expect("ts");
        assert_eq!(age(Some("2026-01-01T23:59:15Z"), now), "45s");
        assert_eq!(age(Some("2026-01-01T23:00:00Z"), now), "60m");
        assert_eq!(age(Some("2026-01-01T00:00:00Z"), now), "24h");
        assert_eq!(age(None, now), "<unknown>");
    }

    #[test]
    fn terminating_pods_show_in_status() {
        let pod = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:30Z"},
            "status": {"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]}});
        assert_eq!(pod_summary(&pod).status, "Terminating");
    }

    #[test]
    fn crash_loops_show_in_status() {
        let pod = json!({"status": {"phase": "Running", "containerStatuses": [{"state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(pod_summary(&pod).status, "CrashLoopBackOff");
    }

    #[test]
    fn durations_read_like_kubectl() {
        let table = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (200, "3m20s"),
            (540, "9m"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 600, "3h10m"),
            (10 * 3600, "10h"),
            (50 * 3600, "2d2h"),
            (72 * 3600, "3d"),
            (10 * 86400, "10d"),
            (3 * 365 * 86400, "3y"),
            (3 * 365 * 86400 + 86400, "3y1d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in table {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    /// kubectl's STATUS, READY and RESTARTS of pods (`printPod`).
    #[test]
    fn pod_status_follows_kubectl() {
        let running = json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}});
        let waiting = |r: &str| json!({"waiting": {"reason": r}});
        let terminated =
            |r: &str, code: i64| json!({"terminated": {"reason": r, "exitCode": code}});
        let c = |name: &str, state: Value, ready: bool, restarts: i64| json!({"name": name, "state": state, "ready": ready, "restartCount": restarts});
        let pod = |containers: usize,
                   inits: usize,
                   phase: &str,
                   init_statuses: Vec<Value>,
                   statuses: Vec<Value>| {
            let names = |prefix: &str, k: usize| {
                (0..k)
                    .map(|i| json!({"name": format!("{prefix}{i}")}))
                    .collect::<Vec<_>>()
            };
            json!({"metadata": {"name": "p"},
                "spec": {"containers": names("c", containers), "initContainers": names("i", inits)},
                "status": {"phase": phase, "initContainerStatuses": init_statuses,
                    "containerStatuses": statuses}})
        };
        // (case, pod, STATUS, READY, RESTARTS)
        let mut cases = vec![
            (
                "no status yet",
                json!({"spec": {"containers": [{"name": "c0"}]}}),
                "Pending",
                "0/1",
                0,
            ),
            (
                "creating",
                pod(
                    1,
                    0,
                    "Pending",
                    vec![],
                    vec![c("c0", waiting("ContainerCreating"), false, 0)],
                ),
                "ContainerCreating",
                "0/1",
                0,
            ),
            (
                "running",
                pod(
                    1,
                    0,
                    "Running",
                    vec![],
                    vec![c("c0", running.clone(), true, 2)],
                ),
                "Running",
                "1/1",
                2,
            ),
            (
                "running, not ready",
                pod(
                    1,
                    0,
                    "Running",
                    vec![],
                    vec![c("c0", running.clone(), false, 0)],
                ),
                "Running",
                "0/1",
                0,
            ),
            (
                "pull backoff",
                pod(
                    1,
                    0,
                    "Pending",
                    vec![],
                    vec![c("c0", waiting("ImagePullBackOff"), false, 0)],
                ),
                "ImagePullBackOff",
                "0/1",
                0,
            ),
            (
                "pull error",
                pod(
                    1,
                    0,
                    "Pending",
                    vec![],
                    vec![c("c0", waiting("ErrImagePull"), false, 0)],
                ),
                "ErrImagePull",
                "0/1",
                0,
            ),
            (
                "crash loop",
                pod(
                    1,
                    0,
                    "Running",
                    vec![],
                    vec![c("c0", waiting("CrashLoopBackOff"), false, 5)],
                ),
                "CrashLoopBackOff",
                "0/1",
                5,
            ),
            (
                "completed",
                pod(
                    1,
                    0,
                    "Succeeded",
                    vec![],
                    vec![c("c0", terminated("Completed", 0), false, 0)],
                ),
                "Completed",
                "0/1",
                0,
            ),
            (
                "error",
                pod(
                    1,
                    0,
                    "Failed",
                    vec![],
                    vec![c("c0", terminated("Error", 1), false, 0)],
                ),
                "Error",
                "0/1",
                0,
            ),
            (
                "oom",
                pod(
                    1,
                    0,
                    "Running",
                    vec![],
                    vec![c("c0", terminated("OOMKilled", 137), false, 1)],
                ),
                "OOMKilled",
                "0/1",
                1,
            ),
            (
                "exit code without reason",
                pod(
                    1,
                    0,
                    "Failed",
                    vec![],
                    vec![c("c0", terminated("", 3), false, 0)],
                ),
                "ExitCode:3",
                "0/1",
                0,
            ),
            // the first container's reason wins (kubectl walks them backwards)
            (
                "first container decides",
                pod(
                    2,
                    0,
                    "Running",
                    vec![],
                    vec![
                        c("c0", waiting("CrashLoopBackOff"), false, 1),
                        c("c1", waiting("ContainerCreating"), false, 0),
                    ],
                ),
                "CrashLoopBackOff",
                "0/2",
                1,
            ),
            (
                "init running",
                pod(
                    1,
                    1,
                    "Pending",
                    vec![c("i0", running.clone(), false, 0)],
                    vec![c("c0", waiting("PodInitializing"), false, 0)],
                ),
                "Init:0/1",
                "0/1",
                0,
            ),
            (
                "second init running",
                pod(
                    1,
                    2,
                    "Pending",
                    vec![
                        c("i0", terminated("Completed", 0), false, 0),
                        c("i1", running.clone(), false, 0),
                    ],
                    vec![c("c0", waiting("PodInitializing"), false, 0)],
                ),
                "Init:1/2",
                "0/1",
                0,
            ),
            (
                "init crash loop",
                pod(
                    1,
                    1,
                    "Pending",
                    vec![c("i0", waiting("CrashLoopBackOff"), false, 4)],
                    vec![c("c0", waiting("PodInitializing"), false, 0)],
                ),
                "Init:CrashLoopBackOff",
                "0/1",
                4,
            ),
            (
                "init error",
                pod(
                    1,
                    1,
                    "Pending",
                    vec![c("i0", terminated("Error", 1), false, 0)],
                    vec![c("c0", waiting("PodInitializing"), false, 0)],
                ),
                "Init:Error",
                "0/1",
                0,
            ),
            (
                "init exit code",
                pod(
                    1,
                    1,
                    "Pending",
                    vec![c("i0", terminated("", 2), false, 0)],
                    vec![],
                ),
                "Init:ExitCode:2",
                "0/1",
                0,
            ),
            (
                "initialized, app starting",
                pod(
                    1,
                    1,
                    "Pending",
                    vec![c("i0", terminated("Completed", 0), false, 0)],
                    vec![c("c0", waiting("PodInitializing"), false, 0)],
                ),
                "PodInitializing",
                "0/1",
                0,
            ),
            (
                "unknown phase",
                pod(1, 0, "Unknown", vec![], vec![]),
                "Unknown",
                "0/1",
                0,
            ),
        ];
        let mut evicted = pod(1, 0, "Failed", vec![], vec![]);
        evicted["status"]["reason"] = json!("Evicted");
        cases.push(("evicted", evicted, "Evicted", "0/1", 0));
        // one container done, one running: Running when the pod is Ready, else NotReady
        let mut done_and_running = pod(
            2,
            0,
            "Running",
            vec![],
            vec![
                c("c0", terminated("Completed", 0), false, 0),
                c("c1", running.clone(), true, 0),
            ],
        );
        cases.push((
            "completed and running, not ready",
            done_and_running.clone(),
            "NotReady",
            "1/2",
            0,
        ));
        done_and_running["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        cases.push((
            "completed and running, ready",
            done_and_running,
            "Running",
            "1/2",
            0,
        ));
        let mut deleting = pod(
            1,
            0,
            "Running",
            vec![],
            vec![c("c0", running.clone(), true, 0)],
        );
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:30Z");
        cases.push(("terminating", deleting.clone(), "Terminating", "1/1", 0));
        deleting["status"]["reason"] = json!("NodeLost");
        cases.push(("node lost", deleting, "Unknown", "1/1", 0));
        let mut finished = pod(
            1,
            0,
            "Succeeded",
            vec![],
            vec![c("c0", terminated("Completed", 0), false, 0)],
        );
        finished["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:30Z");
        cases.push((
            "finished pods are not terminating",
            finished,
            "Completed",
            "0/1",
            0,
        ));
        // a sidecar (restartable init container) counts as a container
        let mut sidecar = pod(
            1,
            1,
            "Running",
            vec![
                json!({"name": "i0", "state": running.clone(), "ready": true, "started": true, "restartCount": 1}),
            ],
            vec![c("c0", running.clone(), true, 0)],
        );
        sidecar["spec"]["initContainers"][0]["restartPolicy"] = json!("Always");
        cases.push(("sidecar", sidecar, "Running", "2/2", 1));
        let mut gated = json!({"spec": {"containers": [{"name": "c0"}]}, "status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}});
        cases.push((
            "scheduling gated",
            gated.take(),
            "SchedulingGated",
            "0/1",
            0,
        ));
        for (case, p, status, ready, restarts) in cases {
            let s = pod_summary(&p);
            assert_eq!(s.status, status, "{case}");
            assert_eq!(format!("{}/{}", s.ready, s.total), ready, "{case}");
            assert_eq!(s.restarts, restarts, "{case}");
        }
    }

    #[test]
    fn describe_timestamps() {
        assert_eq!(
            rfc1123z("2026-01-02T03:04:05Z"),
            "Fri, 02 Jan 2026 03:04:05 +0000"
        );
        assert_eq!(rfc1123z("soon"), "soon");
    }
}
