//! Defaults and validation of the workload and storage kinds beyond
//! Deployments and ReplicaSets: DaemonSet, StatefulSet, Job, CronJob,
//! ReplicationController, PodDisruptionBudget, PersistentVolume,
//! PersistentVolumeClaim and StorageClass — Kubernetes' defaults and its
//! rules, each reported with the field and the rule in words.

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
    RollingUpdateStatefulSetStrategy, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, PodTemplateSpec, ReplicationController, Volume,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::defaults::{pod_spec, REVISION_HISTORY_LIMIT};
use super::validate::{
    counts, dns1123_label_problems, dns1123_subdomain_problems, int_or_percent, label_map,
    object_meta, pod_template_with, quote, selector, Causes,
};
use crate::kind::Kind;
use crate::quantity;

/// The annotation that makes a StorageClass the default one.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
/// Kubernetes' default backoffLimit of a Job.
pub const JOB_BACKOFF_LIMIT: i32 = 6;
/// A CronJob keeps 3 successful and 1 failed Job by default.
pub const SUCCESSFUL_JOBS_HISTORY_LIMIT: i32 = 3;
pub const FAILED_JOBS_HISTORY_LIMIT: i32 = 1;

const ACCESS_MODES: &[&str] = &[
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

fn set<T>(field: &mut Option<T>, value: T) {
    if field.is_none() {
        *field = Some(value);
    }
}

fn set_str(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_string());
    }
}

fn template_defaults(t: &mut PodTemplateSpec) {
    if let Some(spec) = &mut t.spec {
        pod_spec(spec);
    }
}

// ---- defaults ----

pub fn daemon_set(ds: &mut DaemonSet) {
    let Some(spec) = &mut ds.spec else { return };
    set(&mut spec.revision_history_limit, REVISION_HISTORY_LIMIT);
    let strategy = spec
        .update_strategy
        .get_or_insert_with(DaemonSetUpdateStrategy::default);
    set_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDaemonSet::default);
        set(&mut ru.max_unavailable, IntOrString::Int(1));
        set(&mut ru.max_surge, IntOrString::Int(0));
    }
    template_defaults(&mut spec.template);
}

pub fn stateful_set(sts: &mut StatefulSet) {
    let Some(spec) = &mut sts.spec else { return };
    set(&mut spec.replicas, 1);
    set(&mut spec.revision_history_limit, REVISION_HISTORY_LIMIT);
    set_str(&mut spec.pod_management_policy, "OrderedReady");
    let strategy = spec
        .update_strategy
        .get_or_insert_with(StatefulSetUpdateStrategy::default);
    set_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateStatefulSetStrategy::default);
        set(&mut ru.partition, 0);
    }
    let retention = spec
        .persistent_volume_claim_retention_policy
        .get_or_insert_with(StatefulSetPersistentVolumeClaimRetentionPolicy::default);
    set_str(&mut retention.when_deleted, "Retain");
    set_str(&mut retention.when_scaled, "Retain");
    for claim in spec.volume_claim_templates.iter_mut().flatten() {
        if let Some(s) = &mut claim.spec {
            set_str(&mut s.volume_mode, "Filesystem");
        }
    }
    template_defaults(&mut spec.template);
}

fn job_spec(spec: &mut JobSpec) {
    // as Kubernetes: a Job with neither is one pod run to completion once
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    set(&mut spec.parallelism, 1);
    set(&mut spec.backoff_limit, JOB_BACKOFF_LIMIT);
    set_str(&mut spec.completion_mode, "NonIndexed");
    set(&mut spec.suspend, false);
    set(&mut spec.manual_selector, false);
    set_str(&mut spec.pod_replacement_policy, "TerminatingOrFailed");
    template_defaults(&mut spec.template);
}

pub fn job(job: &mut Job) {
    if let Some(spec) = &mut job.spec {
        job_spec(spec);
    }
}

pub fn cron_job(cj: &mut CronJob) {
    let Some(spec) = &mut cj.spec else { return };
    set_str(&mut spec.concurrency_policy, "Allow");
    set(&mut spec.suspend, false);
    set(
        &mut spec.successful_jobs_history_limit,
        SUCCESSFUL_JOBS_HISTORY_LIMIT,
    );
    set(
        &mut spec.failed_jobs_history_limit,
        FAILED_JOBS_HISTORY_LIMIT,
    );
    if let Some(job) = &mut spec.job_template.spec {
        job_spec(job);
    }
}

/// As Kubernetes: replicas 1; an absent selector and absent labels come
/// from the template's labels.
pub fn replication_controller(rc: &mut ReplicationController) {
    let Some(spec) = &mut rc.spec else { return };
    set(&mut spec.replicas, 1);
    let template_labels = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone());
    if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
        spec.selector = template_labels.clone();
    }
    if rc.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
        rc.metadata.labels = template_labels;
    }
    if let Some(t) = &mut spec.template {
        template_defaults(t);
    }
}

pub fn persistent_volume(pv: &mut PersistentVolume) {
    let Some(spec) = &mut pv.spec else { return };
    set_str(&mut spec.persistent_volume_reclaim_policy, "Retain");
    set_str(&mut spec.volume_mode, "Filesystem");
}

pub fn persistent_volume_claim(pvc: &mut PersistentVolumeClaim) {
    if let Some(spec) = &mut pvc.spec {
        set_str(&mut spec.volume_mode, "Filesystem");
    }
}

pub fn priority_class(pc: &mut PriorityClass) {
    set_str(&mut pc.preemption_policy, "PreemptLowerPriority");
}

pub fn storage_class(sc: &mut StorageClass) {
    set_str(&mut sc.reclaim_policy, "Delete");
    set_str(&mut sc.volume_binding_mode, "Immediate");
}

// ---- validation ----

fn template(
    t: &PodTemplateSpec,
    sel: Option<&LabelSelector>,
    restart: &[&str],
    path: &str,
    c: &mut Causes,
) {
    pod_template_with(t, sel, restart, path, c);
}

fn strategy_type(value: Option<&str>, path: &str, c: &mut Causes) {
    if let Some(t) = value {
        c.one_of(path, t, &["RollingUpdate", "OnDelete"]);
    }
}

pub(crate) fn daemon_set_rules(ds: &DaemonSet, c: &mut Causes) {
    object_meta(Kind::DaemonSet, &ds.metadata, c);
    let Some(spec) = &ds.spec else {
        return c.required("spec");
    };
    selector(&spec.selector, "spec.selector", c);
    template(
        &spec.template,
        Some(&spec.selector),
        &["Always"],
        "spec.template",
        c,
    );
    c.at_least(
        "spec.minReadySeconds",
        spec.min_ready_seconds.map(i64::from),
        0,
    );
    c.at_least(
        "spec.revisionHistoryLimit",
        spec.revision_history_limit.map(i64::from),
        0,
    );
    let Some(strategy) = &spec.update_strategy else {
        return;
    };
    strategy_type(strategy.type_.as_deref(), "spec.updateStrategy.type", c);
    if let Some(ru) = &strategy.rolling_update {
        let p = "spec.updateStrategy.rollingUpdate";
        let unavailable_zero = ru
            .max_unavailable
            .as_ref()
            .is_some_and(|v| int_or_percent(v, &format!("{p}.maxUnavailable"), c));
        let surge_zero = ru
            .max_surge
            .as_ref()
            .is_none_or(|v| int_or_percent(v, &format!("{p}.maxSurge"), c));
        if unavailable_zero && surge_zero {
            c.add(
                format!("{p}.maxUnavailable"),
                "may not be 0 when maxSurge is 0",
            );
        }
    }
}

pub(crate) fn stateful_set_rules(sts: &StatefulSet, c: &mut Causes) {
    object_meta(Kind::StatefulSet, &sts.metadata, c);
    let Some(spec) = &sts.spec else {
        return c.required("spec");
    };
    counts(spec.replicas, spec.min_ready_seconds, c);
    c.at_least(
        "spec.revisionHistoryLimit",
        spec.revision_history_limit.map(i64::from),
        0,
    );
    selector(&spec.selector, "spec.selector", c);
    // the pods get one volume per claim template: mounts may name them
    let mut with_claims = spec.template.clone();
    if let Some(pod) = &mut with_claims.spec {
        let volumes = pod.volumes.get_or_insert_with(Vec::new);
        for claim in spec.volume_claim_templates.iter().flatten() {
            let name = claim.metadata.name.clone().unwrap_or_default();
            if !name.is_empty() && !volumes.iter().any(|v| v.name == name) {
                volumes.push(Volume {
                    name: name.clone(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: name,
                        read_only: None,
                    }),
                    ..Volume::default()
                });
            }
        }
    }
    template(
        &with_claims,
        Some(&spec.selector),
        &["Always"],
        "spec.template",
        c,
    );
    if let Some(service) = spec.service_name.as_deref().filter(|s| !s.is_empty()) {
        c.problems("spec.serviceName", service, dns1123_label_problems(service));
    }
    if let Some(policy) = &spec.pod_management_policy {
        c.one_of(
            "spec.podManagementPolicy",
            policy,
            &["OrderedReady", "Parallel"],
        );
    }
    if let Some(strategy) = &spec.update_strategy {
        strategy_type(strategy.type_.as_deref(), "spec.updateStrategy.type", c);
        if let Some(ru) = &strategy.rolling_update {
            c.at_least(
                "spec.updateStrategy.rollingUpdate.partition",
                ru.partition.map(i64::from),
                0,
            );
            if let Some(v) = &ru.max_unavailable {
                let path = "spec.updateStrategy.rollingUpdate.maxUnavailable";
                if int_or_percent(v, path, c) {
                    c.add(path, "must be greater than 0");
                }
            }
        }
    }
    if let Some(r) = &spec.persistent_volume_claim_retention_policy {
        let p = "spec.persistentVolumeClaimRetentionPolicy";
        for (field, v) in [
            ("whenDeleted", &r.when_deleted),
            ("whenScaled", &r.when_scaled),
        ] {
            if let Some(v) = v {
                c.one_of(&format!("{p}.{field}"), v, &["Retain", "Delete"]);
            }
        }
    }
    if let Some(ordinals) = &spec.ordinals {
        c.at_least("spec.ordinals.start", ordinals.start.map(i64::from), 0);
    }
    let volume_names: Vec<&str> = spec
        .template
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .map(|v| v.name.as_str())
        .collect();
    for (i, claim) in spec.volume_claim_templates.iter().flatten().enumerate() {
        let p = format!("spec.volumeClaimTemplates[{i}]");
        match claim.metadata.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => {
                c.problems(
                    &format!("{p}.metadata.name"),
                    name,
                    dns1123_label_problems(name),
                );
                if volume_names.contains(&name) {
                    c.add(
                        format!("{p}.metadata.name"),
                        format!(
                            "{} is also a volume of the pod template; a claim template adds its own volume",
                            quote(name)
                        ),
                    );
                }
            }
            None => c.required(&format!("{p}.metadata.name")),
        }
        match &claim.spec {
            Some(s) => claim_spec(s, &format!("{p}.spec"), c),
            None => c.required(&format!("{p}.spec")),
        }
    }
}

fn job_spec_rules(spec: &JobSpec, path: &str, c: &mut Causes) {
    let f = |field: &str| format!("{path}.{field}");
    c.at_least(&f("parallelism"), spec.parallelism.map(i64::from), 0);
    c.at_least(&f("completions"), spec.completions.map(i64::from), 0);
    c.at_least(&f("backoffLimit"), spec.backoff_limit.map(i64::from), 0);
    c.at_least(&f("activeDeadlineSeconds"), spec.active_deadline_seconds, 1);
    c.at_least(
        &f("ttlSecondsAfterFinished"),
        spec.ttl_seconds_after_finished.map(i64::from),
        0,
    );
    if let Some(mode) = &spec.completion_mode {
        c.one_of(&f("completionMode"), mode, &["NonIndexed", "Indexed"]);
        if mode == "Indexed" && spec.completions.is_none() {
            c.add(
                f("completions"),
                "required value when completionMode is \"Indexed\"",
            );
        }
    }
    let manual = spec.manual_selector == Some(true);
    // the generated selector (on the Job's uid) comes back in updates
    let generated = |sel: &LabelSelector| {
        sel.match_labels
            .as_ref()
            .is_some_and(|m| m.contains_key(crate::lifecycle::JOB_CONTROLLER_UID_LABEL))
    };
    match (&spec.selector, manual) {
        (Some(sel), true) => selector(sel, &f("selector"), c),
        (Some(sel), false) if !generated(sel) => c.add(
            f("selector"),
            "`selector` will be auto-generated; set manualSelector to true to give your own",
        ),
        (None, true) => c.required(&f("selector")),
        _ => {}
    }
    let sel = spec.selector.as_ref();
    template(
        &spec.template,
        sel,
        &["OnFailure", "Never"],
        &f("template"),
        c,
    );
}

pub(crate) fn job_rules(job: &Job, c: &mut Causes) {
    object_meta(Kind::Job, &job.metadata, c);
    match &job.spec {
        Some(spec) => job_spec_rules(spec, "spec", c),
        None => c.required("spec"),
    }
}

pub(crate) fn cron_job_rules(cj: &CronJob, c: &mut Causes) {
    object_meta(Kind::CronJob, &cj.metadata, c);
    // the Jobs it creates are named <name>-<minutes since the epoch>
    if let Some(name) = cj.metadata.name.as_deref().filter(|n| n.len() > 52) {
        c.add(
            "metadata.name",
            format!(
                "must be no more than 52 characters, to leave room for the Job's suffix (got {})",
                quote(name)
            ),
        );
    }
    let Some(spec) = &cj.spec else {
        return c.required("spec");
    };
    if spec.schedule.trim().is_empty() {
        c.required("spec.schedule");
    } else if let Err(e) = crate::cron::Schedule::parse(&spec.schedule, Some("UTC")) {
        c.add("spec.schedule", e.to_string());
    }
    if let Some(zone) = &spec.time_zone {
        if jiff::tz::TimeZone::get(zone).is_err() || zone.is_empty() {
            c.add(
                "spec.timeZone",
                format!("unknown time zone {}", quote(zone)),
            );
        }
    }
    if let Some(policy) = &spec.concurrency_policy {
        c.one_of(
            "spec.concurrencyPolicy",
            policy,
            &["Allow", "Forbid", "Replace"],
        );
    }
    c.at_least(
        "spec.startingDeadlineSeconds",
        spec.starting_deadline_seconds,
        0,
    );
    c.at_least(
        "spec.successfulJobsHistoryLimit",
        spec.successful_jobs_history_limit.map(i64::from),
        0,
    );
    c.at_least(
        "spec.failedJobsHistoryLimit",
        spec.failed_jobs_history_limit.map(i64::from),
        0,
    );
    match &spec.job_template.spec {
        Some(job) => job_spec_rules(job, "spec.jobTemplate.spec", c),
        None => c.required("spec.jobTemplate.spec"),
    }
}

pub(crate) fn replication_controller_rules(rc: &ReplicationController, c: &mut Causes) {
    object_meta(Kind::ReplicationController, &rc.metadata, c);
    let Some(spec) = &rc.spec else {
        return c.required("spec");
    };
    counts(spec.replicas, spec.min_ready_seconds, c);
    label_map(spec.selector.as_ref(), "spec.selector", c);
    let sel = LabelSelector {
        match_labels: spec.selector.clone(),
        ..LabelSelector::default()
    };
    if spec.selector.as_ref().is_none_or(|s| s.is_empty()) {
        c.add(
            "spec.selector",
            "empty selector is not allowed; it would select every pod",
        );
    }
    match &spec.template {
        Some(t) => template(t, Some(&sel), &["Always"], "spec.template", c),
        None => c.required("spec.template"),
    }
}

pub(crate) fn horizontal_pod_autoscaler_rules(hpa: &HorizontalPodAutoscaler, c: &mut Causes) {
    object_meta(Kind::HorizontalPodAutoscaler, &hpa.metadata, c);
    let value = serde_json::to_value(hpa).unwrap_or_default();
    if let Err(causes) = crate::autoscaling::parse(&value) {
        for cause in causes {
            c.add(cause.field, cause.rule);
        }
    }
}

pub(crate) fn pod_disruption_budget_rules(pdb: &PodDisruptionBudget, c: &mut Causes) {
    object_meta(Kind::PodDisruptionBudget, &pdb.metadata, c);
    let Some(spec) = &pdb.spec else {
        return c.required("spec");
    };
    match (&spec.min_available, &spec.max_unavailable) {
        (Some(_), Some(_)) => c.add("spec", "minAvailable and maxUnavailable cannot be both set"),
        (Some(v), None) => {
            int_or_percent(v, "spec.minAvailable", c);
        }
        (None, Some(v)) => {
            int_or_percent(v, "spec.maxUnavailable", c);
        }
        (None, None) => {}
    }
    if let Some(sel) = &spec.selector {
        if let Err(e) = crate::selector::Selector::from_label_selector(sel) {
            c.add("spec.selector", e.to_string());
        }
    }
    if let Some(policy) = &spec.unhealthy_pod_eviction_policy {
        c.one_of(
            "spec.unhealthyPodEvictionPolicy",
            policy,
            &["IfHealthyBudget", "AlwaysAllow"],
        );
    }
}

fn access_modes(modes: Option<&Vec<String>>, path: &str, c: &mut Causes) {
    let modes = modes.map(Vec::as_slice).unwrap_or_default();
    if modes.is_empty() {
        c.add(path, "at least 1 access mode is required");
    }
    for (i, m) in modes.iter().enumerate() {
        c.one_of(&format!("{path}[{i}]"), m, ACCESS_MODES);
    }
}

fn storage_quantity(value: Option<&String>, path: &str, c: &mut Causes) {
    match value {
        None => c.required(path),
        Some(q) => match quantity::parse_milli(q) {
            Ok(v) if v <= 0 => c.add(
                path,
                format!("must be greater than zero (got {})", quote(q)),
            ),
            Ok(_) => {}
            Err(e) => c.add(path, e.to_string()),
        },
    }
}

fn claim_spec(spec: &PersistentVolumeClaimSpec, path: &str, c: &mut Causes) {
    access_modes(
        spec.access_modes.as_ref(),
        &format!("{path}.accessModes"),
        c,
    );
    let request = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| &q.0);
    storage_quantity(request, &format!("{path}.resources.requests[storage]"), c);
    if let Some(mode) = &spec.volume_mode {
        c.one_of(&format!("{path}.volumeMode"), mode, &["Filesystem"]);
    }
    if let Some(class) = spec.storage_class_name.as_deref().filter(|s| !s.is_empty()) {
        c.problems(
            &format!("{path}.storageClassName"),
            class,
            dns1123_subdomain_problems(class),
        );
    }
}

pub(crate) fn persistent_volume_claim_rules(pvc: &PersistentVolumeClaim, c: &mut Causes) {
    object_meta(Kind::PersistentVolumeClaim, &pvc.metadata, c);
    match &pvc.spec {
        Some(spec) => claim_spec(spec, "spec", c),
        None => c.required("spec"),
    }
}

pub(crate) fn persistent_volume_rules(pv: &PersistentVolume, c: &mut Causes) {
    object_meta(Kind::PersistentVolume, &pv.metadata, c);
    let Some(spec) = &pv.spec else {
        return c.required("spec");
    };
    access_modes(spec.access_modes.as_ref(), "spec.accessModes", c);
    let capacity = spec
        .capacity
        .as_ref()
        .and_then(|m| m.get("storage"))
        .map(|q| &q.0);
    storage_quantity(capacity, "spec.capacity[storage]", c);
    if let Some(policy) = &spec.persistent_volume_reclaim_policy {
        c.one_of(
            "spec.persistentVolumeReclaimPolicy",
            policy,
            &["Retain", "Delete", "Recycle"],
        );
    }
    match (&spec.host_path, &spec.local) {
        (Some(h), None) if !h.path.starts_with('/') => c.add(
            "spec.hostPath.path",
            format!("must be an absolute path (got {})", quote(&h.path)),
        ),
        (None, Some(l)) => {
            if !l.path.starts_with('/') {
                c.add(
                    "spec.local.path",
                    format!("must be an absolute path (got {})", quote(&l.path)),
                );
            }
            if spec.node_affinity.is_none() {
                c.add(
                    "spec.nodeAffinity",
                    "required value for a local volume: it says which node holds it",
                );
            }
        }
        (Some(_), Some(_)) => c.add("spec", "may not specify more than 1 volume type"),
        (Some(_), None) => {}
        (None, None) => c.add(
            "spec",
            "must specify a volume type: kubus serves hostPath and local volumes",
        ),
    }
}

pub(crate) fn controller_revision_rules(cr: &ControllerRevision, c: &mut Causes) {
    object_meta(Kind::ControllerRevision, &cr.metadata, c);
    c.at_least("revision", Some(cr.revision), 0);
}

/// The highest priority a user's PriorityClass may have; above it are the
/// `system-` classes (Kubernetes' `HighestUserDefinablePriority`).
pub const PRIORITY_USER_MAX: i32 = 1_000_000_000;

pub(crate) fn priority_class_rules(pc: &PriorityClass, c: &mut Causes) {
    object_meta(Kind::PriorityClass, &pc.metadata, c);
    let name = pc.metadata.name.as_deref().unwrap_or("");
    let system = crate::priority::SYSTEM_CLASSES
        .iter()
        .any(|(n, _)| *n == name);
    if name.starts_with("system-") && !system {
        c.add(
            "metadata.name",
            "priority class names with 'system-' prefix are reserved for system use only",
        );
    }
    if !system && pc.value > PRIORITY_USER_MAX {
        c.add(
            "value",
            format!("maximum allowed value of a user defined priority is {PRIORITY_USER_MAX}"),
        );
    }
    if let Some(policy) = &pc.preemption_policy {
        c.one_of(
            "preemptionPolicy",
            policy,
            &["PreemptLowerPriority", "Never"],
        );
    }
}

pub(crate) fn storage_class_rules(sc: &StorageClass, c: &mut Causes) {
    object_meta(Kind::StorageClass, &sc.metadata, c);
    if sc.provisioner.is_empty() {
        c.required("provisioner");
    }
    if let Some(policy) = &sc.reclaim_policy {
        c.one_of("reclaimPolicy", policy, &["Retain", "Delete"]);
    }
    if let Some(mode) = &sc.volume_binding_mode {
        c.one_of(
            "volumeBindingMode",
            mode,
            &["Immediate", "WaitForFirstConsumer"],
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::admission::admit;

    fn container() -> Value {
        json!([{"name": "c", "image": "busybox"}])
    }

    fn refusal(v: Value) -> String {
        admit(v).expect_err("refused").to_string()
    }

    #[test]
    fn workloads_are_admitted_with_defaults() {
        let sts = admit(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web"},
            "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": container()}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}))
        .expect("admitted")
        .value;
        assert_eq!(sts["spec"]["replicas"], 1);
        assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
            0
        );
        assert_eq!(
            sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"],
            "Retain"
        );
        let job = admit(
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi"},
            "spec": {"template": {"spec": {"containers": container(), "restartPolicy": "Never"}}}}),
        )
        .expect("admitted")
        .value;
        assert_eq!(job["spec"]["backoffLimit"], 6);
        assert_eq!(job["spec"]["parallelism"], 1);
        assert_eq!(job["spec"]["completionMode"], "NonIndexed");
        let cj = admit(json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello"},
            "spec": {"schedule": "*/1 * * * *", "timeZone": "Europe/Paris", "jobTemplate": {"spec": {"template":
                {"spec": {"containers": container(), "restartPolicy": "OnFailure"}}}}}}))
        .expect("admitted")
        .value;
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        let rc = admit(json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"},
            "spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": container()}}}}))
        .expect("admitted")
        .value;
        assert_eq!(rc["spec"]["selector"]["app"], "x");
        let sc = admit(json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "fast", "namespace": "ignored"}, "provisioner": "kubus.io/local-path"}))
        .expect("admitted")
        .value;
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert!(sc["metadata"].get("namespace").is_none());
    }

    #[test]
    fn bad_workloads_are_refused_naming_object_field_and_rule() {
        let table = [
            (
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
                    "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "other"}}, "spec": {"containers": container()}}}}),
                "StatefulSet default/web is invalid: spec.template.metadata.labels: selector does not match template labels",
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                    "spec": {"schedule": "every minute", "jobTemplate": {"spec": {"template":
                        {"spec": {"containers": container(), "restartPolicy": "Never"}}}}}}),
                "CronJob default/c is invalid: spec.schedule: unparseable schedule \"every minute\"",
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
                    "spec": {"schedule": "* * * * *", "timeZone": "Moon/Base", "jobTemplate": {"spec": {"template":
                        {"spec": {"containers": container(), "restartPolicy": "Never"}}}}}}),
                "CronJob default/c is invalid: spec.timeZone: unknown time zone \"Moon/Base\"",
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                    "spec": {"parallelism": -1, "template":
                        {"spec": {"containers": container(), "restartPolicy": "Never"}}}}),
                "Job default/j is invalid: spec.parallelism: must be greater than or equal to 0 (got -1)",
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                    "spec": {"template": {"spec": {"containers": container()}}}}),
                "spec.template.spec.restartPolicy: must be \"OnFailure\" or \"Never\" in this template (got \"Always\")",
            ),
            (
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                    "spec": {"completionMode": "Indexed", "parallelism": 2, "template":
                        {"spec": {"containers": container(), "restartPolicy": "Never"}}}}),
                "Job default/j is invalid: spec.completions: required value when completionMode is \"Indexed\"",
            ),
            (
                json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
                    "spec": {"minAvailable": 1, "maxUnavailable": 1}}),
                "PodDisruptionBudget default/p is invalid: spec: minAvailable and maxUnavailable cannot be both set",
            ),
            (
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
                    "spec": {"accessModes": ["ReadWriteSometimes"], "resources": {"requests": {"storage": "1Gi"}}}}),
                "spec.accessModes[0]: must be one of",
            ),
            (
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
                    "spec": {"accessModes": ["ReadWriteOnce"]}}),
                "spec.resources.requests[storage]: required value",
            ),
            (
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "d"},
                    "spec": {"selector": {"matchLabels": {"a": "b"}}, "updateStrategy": {"type": "Sometimes"},
                        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": container()}}}}),
                "spec.updateStrategy.type: must be one of \"RollingUpdate\", \"OnDelete\"",
            ),
        ];
        for (object, want) in table {
            let got = refusal(object);
            assert!(got.contains(want), "want {want:?}\n got {got}");
        }
    }
}
