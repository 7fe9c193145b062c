//! Defaulting: the values Kubernetes fills in when a manifest leaves a field
//! out, applied to typed objects before validation (as the apiserver does),
//! so that every stored object states them explicitly and controllers never
//! guess.
//!
//! Only fields a user may omit are touched; a value the user gave is never
//! replaced. `metadata.generation` is not set here: the store owns it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Probe, Secret, Service, Toleration};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;

pub const DEFAULT_NAMESPACE: &str = "default";
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
pub const TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
pub const REVISION_HISTORY_LIMIT: i32 = 10;
pub const PROGRESS_DEADLINE_SECONDS: i32 = 600;
pub const ROLLING_UPDATE_MAX_SURGE: &str = "25%";
pub const ROLLING_UPDATE_MAX_UNAVAILABLE: &str = "25%";

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

/// `Always` when the image has no tag or the tag `latest`, else
/// `IfNotPresent` (a digest counts as a tag).
pub fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // The tag is after the last ':' of the last path component; a ':'
    // before a '/' is a registry port.
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) if tag != "latest" && !tag.is_empty() => "IfNotPresent",
        _ => "Always",
    }
}

fn probe(p: &mut Probe) {
    set(&mut p.timeout_seconds, 1);
    set(&mut p.period_seconds, 10);
    set(&mut p.success_threshold, 1);
    set(&mut p.failure_threshold, 3);
    if let Some(http) = &mut p.http_get {
        set_str(&mut http.path, "/");
        set_str(&mut http.scheme, "HTTP");
    }
}

fn container(c: &mut Container) {
    if let Some(image) = c.image.as_deref() {
        let policy = image_pull_policy(image);
        set_str(&mut c.image_pull_policy, policy);
    }
    set_str(&mut c.termination_message_path, TERMINATION_MESSAGE_PATH);
    set_str(&mut c.termination_message_policy, "File");
    for port in c.ports.iter_mut().flatten() {
        set_str(&mut port.protocol, "TCP");
    }
    for p in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        probe(p);
    }
}

/// Defaults of a pod spec, in a Pod or a template.
pub fn pod_spec(spec: &mut PodSpec) {
    set_str(&mut spec.restart_policy, "Always");
    set_str(&mut spec.dns_policy, "ClusterFirst");
    set(
        &mut spec.termination_grace_period_seconds,
        TERMINATION_GRACE_PERIOD_SECONDS,
    );
    set_str(&mut spec.scheduler_name, DEFAULT_SCHEDULER);
    for c in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        container(c);
    }
}

/// How long a pod stays on a node that is not ready or unreachable
/// (Kubernetes' DefaultTolerationSeconds admission plugin).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// As Kubernetes' DefaultTolerationSeconds: a pod that does not say how
/// long it tolerates its node being not ready or unreachable tolerates it
/// for [`DEFAULT_TOLERATION_SECONDS`].
fn default_tolerations(spec: &mut PodSpec) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for key in [
        crate::placement::TAINT_NOT_READY,
        crate::placement::TAINT_UNREACHABLE,
    ] {
        let covered = tolerations.iter().any(|t| {
            let effect = t.effect.as_deref().unwrap_or("");
            let key_ok = t.key.as_deref() == Some(key)
                || (t.key.as_deref().unwrap_or("").is_empty()
                    && t.operator.as_deref() == Some("Exists"));
            key_ok && (effect.is_empty() || effect == "NoExecute")
        });
        if !covered {
            tolerations.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(DEFAULT_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
}

/// Kubernetes' ServiceAccount admission, its token half: unless the pod
/// says `automountServiceAccountToken: false`, a projected volume with a
/// token of its ServiceAccount (and its namespace) is mounted read-only
/// at [`crate::token::MOUNT_PATH`] in every container that mounts nothing
/// there. Named [`crate::token::VOLUME_NAME`] (Kubernetes adds a random
/// suffix; one fixed name makes this idempotent, so an update that leaves
/// the volume out gets the same one back). The API's CA comes from the
/// namespace's `kube-root-ca.crt` ConfigMap as `ca.crt`, as in Kubernetes,
/// but optional: a cluster that serves no Kubernetes API publishes none,
/// and its pods still start.
fn service_account_token_volume(spec: &mut PodSpec) {
    use crate::token::{
        MOUNT_PATH, ROOT_CA_CONFIG_MAP, ROOT_CA_KEY, TOKEN_EXPIRATION_SECONDS, VOLUME_NAME,
    };
    use k8s_openapi::api::core::v1::{
        ConfigMapProjection, DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath,
        ObjectFieldSelector, ProjectedVolumeSource, ServiceAccountTokenProjection, Volume,
        VolumeMount, VolumeProjection,
    };
    if spec.automount_service_account_token == Some(false) {
        return;
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == VOLUME_NAME) {
        volumes.push(Volume {
            name: VOLUME_NAME.to_string(),
            projected: Some(ProjectedVolumeSource {
                default_mode: Some(0o644),
                sources: Some(vec![
                    VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            path: "token".into(),
                            expiration_seconds: Some(TOKEN_EXPIRATION_SECONDS),
                            audience: None,
                        }),
                        ..VolumeProjection::default()
                    },
                    VolumeProjection {
                        config_map: Some(ConfigMapProjection {
                            name: ROOT_CA_CONFIG_MAP.into(),
                            items: Some(vec![KeyToPath {
                                key: ROOT_CA_KEY.into(),
                                path: ROOT_CA_KEY.into(),
                                mode: None,
                            }]),
                            optional: Some(true),
                        }),
                        ..VolumeProjection::default()
                    },
                    VolumeProjection {
                        downward_api: Some(DownwardAPIProjection {
                            items: Some(vec![DownwardAPIVolumeFile {
                                path: "namespace".into(),
                                field_ref: Some(ObjectFieldSelector {
                                    api_version: Some("v1".into()),
                                    field_path: "metadata.namespace".into(),
                                }),
                                ..DownwardAPIVolumeFile::default()
                            }]),
                        }),
                        ..VolumeProjection::default()
                    },
                ]),
            }),
            ..Volume::default()
        });
    }
    for c in spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut())
    {
        let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
        if !mounts
            .iter()
            .any(|m| m.mount_path.trim_end_matches('/') == MOUNT_PATH)
        {
            mounts.push(VolumeMount {
                name: VOLUME_NAME.to_string(),
                mount_path: MOUNT_PATH.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
    }
}

pub fn pod(pod: &mut Pod) {
    if let Some(spec) = &mut pod.spec {
        pod_spec(spec);
        default_tolerations(spec);
        // Kubernetes' ServiceAccount admission: a pod runs as `default`
        // unless it names another (the deprecated field says the same)
        if spec
            .service_account_name
            .as_deref()
            .unwrap_or("")
            .is_empty()
        {
            spec.service_account_name = spec
                .service_account
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(|| Some(crate::token::DEFAULT_SERVICE_ACCOUNT.to_string()));
        }
        if spec.service_account.as_deref().unwrap_or("").is_empty() {
            spec.service_account = spec.service_account_name.clone();
        }
        service_account_token_volume(spec);
        // As Kubernetes does for Pods (not templates): a resource with a
        // limit and no request requests its limit, so the scheduler sees it.
        for c in spec
            .init_containers
            .iter_mut()
            .flatten()
            .chain(spec.containers.iter_mut())
        {
            let Some(resources) = &mut c.resources else {
                continue;
            };
            let Some(limits) = &resources.limits else {
                continue;
            };
            let requests = resources.requests.get_or_insert_with(BTreeMap::new);
            for (k, v) in limits {
                requests.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}

pub fn replica_set(rs: &mut ReplicaSet) {
    if let Some(spec) = &mut rs.spec {
        set(&mut spec.replicas, 1);
        if let Some(pod) = spec.template.as_mut().and_then(|t| t.spec.as_mut()) {
            pod_spec(pod);
        }
    }
}

pub fn deployment(d: &mut Deployment) {
    let Some(spec) = &mut d.spec else {
        return;
    };
    set(&mut spec.replicas, 1);
    set(&mut spec.revision_history_limit, REVISION_HISTORY_LIMIT);
    set(
        &mut spec.progress_deadline_seconds,
        PROGRESS_DEADLINE_SECONDS,
    );
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    set_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        set(
            &mut ru.max_surge,
            IntOrString::String(ROLLING_UPDATE_MAX_SURGE.into()),
        );
        set(
            &mut ru.max_unavailable,
            IntOrString::String(ROLLING_UPDATE_MAX_UNAVAILABLE.into()),
        );
    }
    if let Some(pod) = &mut spec.template.spec {
        pod_spec(pod);
    }
}

pub fn service(svc: &mut Service) {
    let spec = svc.spec.get_or_insert_with(Default::default);
    set_str(&mut spec.type_, "ClusterIP");
    set_str(&mut spec.session_affinity, "None");
    for port in spec.ports.iter_mut().flatten() {
        set_str(&mut port.protocol, "TCP");
        set(&mut port.target_port, IntOrString::Int(port.port));
    }
}

/// `type: Opaque`, and `stringData` merged into `data` (a `stringData` key
/// wins, as in Kubernetes) and removed.
pub fn secret(s: &mut Secret) {
    set_str(&mut s.type_, "Opaque");
    if let Some(string_data) = s.string_data.take() {
        let data = s.data.get_or_insert_with(BTreeMap::new);
        for (k, v) in string_data {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_from_image() {
        let table = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("registry:5000/nginx", "Always"),
            ("registry:5000/nginx:1.2", "IfNotPresent"),
            ("registry:5000/team/nginx:latest", "Always"),
            ("nginx@sha256:abcd", "IfNotPresent"),
            ("nginx:", "Always"),
        ];
        for (image, want) in table {
            assert_eq!(image_pull_policy(image), want, "{image}");
        }
    }
}
