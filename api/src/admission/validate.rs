//! Validation rules: the name and label syntaxes every crate can check
//! against (`*_problems` functions), and the per-kind rules that admission
//! runs on a typed, defaulted object.
//!
//! Every rule adds a [`FieldCause`] (field path + rule in words) and carries
//! on: admission reports all broken rules at once, like Kubernetes. Rules
//! here read typed `k8s-openapi` structs, so they never see a wrong JSON
//! type (those are reported earlier, from deserialization).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Endpoints, Event, Namespace, Node, Pod, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::error::FieldCause;
use crate::kind::Kind;
use crate::quantity;
use crate::selector::Selector;

pub const DNS1123_LABEL_LEN_MAX: usize = 63;
pub const DNS1123_SUBDOMAIN_LEN_MAX: usize = 253;
pub const LABEL_VALUE_LEN_MAX: usize = 63;
pub const IANA_SVC_NAME_LEN_MAX: usize = 15;
pub const CONFIG_KEY_LEN_MAX: usize = 253;
/// Total size of all annotation keys and values on one object.
pub const ANNOTATIONS_BYTES_MAX: usize = 256 * 1024;
/// Total size of a ConfigMap's or Secret's data, as in Kubernetes.
pub const DATA_BYTES_MAX: usize = 1024 * 1024;
/// `generateName` leaves room for the 5-character random suffix.
const GENERATED_SUFFIX_LEN: usize = 5;
/// How much of an offending value a message quotes.
const QUOTE_LEN_MAX: usize = 64;

const LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_RULE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn too_long(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_label_syntax(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            is_alnum_lower(f)
                && is_alnum_lower(l)
                && b.iter().all(|&c| is_alnum_lower(c) || c == b'-')
        }
        _ => false,
    }
}

/// Broken rules of a DNS-1123 label (Namespace and Service names, container
/// names): at most 63 characters of `[a-z0-9-]`, alphanumeric at both ends.
pub fn dns1123_label_problems(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if s.len() > DNS1123_LABEL_LEN_MAX {
        problems.push(too_long(DNS1123_LABEL_LEN_MAX));
    }
    if !is_label_syntax(s) {
        problems.push(LABEL_RULE.to_string());
    }
    problems
}

/// Broken rules of a DNS-1123 subdomain (most object names): at most 253
/// characters, dot-separated labels.
pub fn dns1123_subdomain_problems(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_LEN_MAX {
        problems.push(too_long(DNS1123_SUBDOMAIN_LEN_MAX));
    }
    if !s.split('.').all(is_label_syntax) {
        problems.push(SUBDOMAIN_RULE.to_string());
    }
    problems
}

fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Broken rules of a qualified name (label and annotation keys): an
/// optional DNS subdomain prefix and `/`, then a name of at most 63
/// characters of `[A-Za-z0-9._-]` with alphanumeric ends.
pub fn qualified_name_problems(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_string());
            } else {
                for p in dns1123_subdomain_problems(prefix) {
                    problems.push(format!("prefix part {p}"));
                }
            }
            name
        }
        _ => {
            problems.push(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            .to_string(),
            );
            return problems;
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".to_string());
        return problems;
    }
    if name.len() > DNS1123_LABEL_LEN_MAX {
        problems.push(format!("name part {}", too_long(DNS1123_LABEL_LEN_MAX)));
    }
    if !is_qualified_name_part(name) {
        problems.push(QUALIFIED_NAME_RULE.to_string());
    }
    problems
}

/// Broken rules of a label value: empty, or at most 63 characters of
/// `[A-Za-z0-9._-]` with alphanumeric ends.
pub fn label_value_problems(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if s.len() > LABEL_VALUE_LEN_MAX {
        problems.push(too_long(LABEL_VALUE_LEN_MAX));
    }
    if !s.is_empty() && !is_qualified_name_part(s) {
        problems.push(LABEL_VALUE_RULE.to_string());
    }
    problems
}

/// Broken rules of an IANA service name (container port names, named
/// target ports): at most 15 characters of `[a-z0-9-]`, at least one
/// letter, no leading, trailing or doubled `-`.
pub fn iana_svc_name_problems(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if s.len() > IANA_SVC_NAME_LEN_MAX {
        problems.push(too_long(IANA_SVC_NAME_LEN_MAX));
    }
    if !s.bytes().all(|b| is_alnum_lower(b) || b == b'-') {
        problems.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if s.contains("--") {
        problems.push("must not contain consecutive hyphens".to_string());
    }
    if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        problems.push("must contain at least one letter (a-z)".to_string());
    }
    if s.starts_with('-') || s.ends_with('-') {
        problems.push("must not begin or end with a hyphen".to_string());
    }
    problems
}

/// Broken rules of an environment variable name: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
pub fn env_var_name_problems(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let start_ok = b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, b'-' | b'.' | b'_'));
    let rest_ok = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'));
    if start_ok && rest_ok {
        Vec::new()
    } else {
        vec!["a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit".to_string()]
    }
}

/// Broken rules of a ConfigMap or Secret key: at most 253 characters of
/// `[-._a-zA-Z0-9]`, not `.` or `..`.
pub fn config_key_problems(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if s.len() > CONFIG_KEY_LEN_MAX {
        problems.push(too_long(CONFIG_KEY_LEN_MAX));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
    {
        problems.push(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
                .to_string(),
        );
    }
    if s == "." || s == ".." {
        problems.push("must not be '.' or '..'".to_string());
    }
    problems
}

/// A value as quoted in a message, cut short when long.
pub(crate) fn quote(s: &str) -> String {
    if s.chars().count() <= QUOTE_LEN_MAX {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(QUOTE_LEN_MAX).collect();
        format!("{cut:?}…")
    }
}

/// The broken rules found so far.
#[derive(Debug, Default)]
pub(crate) struct Causes(pub Vec<FieldCause>);

impl Causes {
    pub fn add(&mut self, field: impl Into<String>, rule: impl Into<String>) {
        self.0.push(FieldCause::new(field, rule));
    }

    /// One cause per problem, each quoting the offending value.
    pub(super) fn problems(&mut self, field: &str, value: &str, problems: Vec<String>) {
        for p in problems {
            self.add(field, format!("{p} (got {})", quote(value)));
        }
    }

    pub(super) fn one_of(&mut self, field: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            let list: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
            self.add(
                field,
                format!("must be one of {} (got {})", list.join(", "), quote(value)),
            );
        }
    }

    pub(super) fn at_least(&mut self, field: &str, value: Option<i64>, min: i64) {
        if let Some(v) = value {
            if v < min {
                self.add(
                    field,
                    format!("must be greater than or equal to {min} (got {v})"),
                );
            }
        }
    }

    fn port_range(&mut self, field: &str, port: i32) {
        if !(1..=65535).contains(&port) {
            self.add(
                field,
                format!("must be between 1 and 65535, inclusive (got {port})"),
            );
        }
    }

    pub(super) fn required(&mut self, field: &str) {
        self.add(field, "required value");
    }
}

/// Which name syntax a kind's `metadata.name` must follow.
/// Problems of a name that must be a path segment (RBAC objects' names,
/// such as `system:node`).
pub(crate) fn path_segment_problems(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if name == "." || name == ".." {
        out.push(format!("may not be '{name}'"));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            out.push(format!("may not contain '{bad}'"));
        }
    }
    out
}

fn name_problems(kind: Kind) -> fn(&str) -> Vec<String> {
    match kind {
        Kind::Role | Kind::ClusterRole | Kind::RoleBinding | Kind::ClusterRoleBinding => {
            path_segment_problems
        }
        Kind::Namespace | Kind::Service => dns1123_label_problems,
        _ => dns1123_subdomain_problems,
    }
}

/// `metadata` of a top-level object.
pub(crate) fn object_meta(kind: Kind, meta: &ObjectMeta, c: &mut Causes) {
    let problems = name_problems(kind);
    match (meta.name.as_deref(), meta.generate_name.as_deref()) {
        (Some(name), _) if !name.is_empty() => c.problems("metadata.name", name, problems(name)),
        (_, Some(prefix)) if !prefix.is_empty() => {}
        _ => c.add("metadata.name", "name or generateName is required"),
    }
    if let Some(prefix) = meta.generate_name.as_deref().filter(|p| !p.is_empty()) {
        // Validate the prefix as Kubernetes does: a trailing '-' is fine,
        // and there must be room for the generated suffix.
        let masked = prefix
            .strip_suffix('-')
            .map_or(prefix.to_string(), |p| format!("{p}a"));
        let mut found: Vec<String> = problems(&masked)
            .into_iter()
            .filter(|p| !p.starts_with("must be no more than"))
            .collect();
        let len_max = max_name_len(kind) - GENERATED_SUFFIX_LEN;
        if prefix.len() > len_max {
            found.push(format!(
                "must be no more than {len_max} characters, to leave room for the generated suffix"
            ));
        }
        c.problems("metadata.generateName", prefix, found);
    }
    if kind.namespaced() {
        if let Some(ns) = meta.namespace.as_deref() {
            c.problems("metadata.namespace", ns, dns1123_label_problems(ns));
        }
    }
    labels_and_annotations(meta, "metadata", c);
    let mut controllers = 0;
    for (i, r) in meta.owner_references.iter().flatten().enumerate() {
        let p = format!("metadata.ownerReferences[{i}]");
        for (field, value) in [
            ("apiVersion", &r.api_version),
            ("kind", &r.kind),
            ("name", &r.name),
            ("uid", &r.uid),
        ] {
            if value.is_empty() {
                c.required(&format!("{p}.{field}"));
            }
        }
        if r.controller == Some(true) {
            controllers += 1;
        }
    }
    if controllers > 1 {
        c.add(
            "metadata.ownerReferences",
            "only one reference can have controller set to true",
        );
    }
    for (i, f) in meta.finalizers.iter().flatten().enumerate() {
        c.problems(
            &format!("metadata.finalizers[{i}]"),
            f,
            qualified_name_problems(f),
        );
    }
}

fn max_name_len(kind: Kind) -> usize {
    match kind {
        Kind::Namespace | Kind::Service => DNS1123_LABEL_LEN_MAX,
        _ => DNS1123_SUBDOMAIN_LEN_MAX,
    }
}

/// Labels and annotations of an object's or a template's metadata.
pub(super) fn labels_and_annotations(meta: &ObjectMeta, path: &str, c: &mut Causes) {
    label_map(meta.labels.as_ref(), &format!("{path}.labels"), c);
    let mut total = 0usize;
    for key in meta.annotations.iter().flatten().map(|(k, v)| {
        total += k.len() + v.len();
        k
    }) {
        c.problems(
            &format!("{path}.annotations"),
            key,
            qualified_name_problems(key),
        );
    }
    if total > ANNOTATIONS_BYTES_MAX {
        c.add(
            format!("{path}.annotations"),
            format!("may not have more than {ANNOTATIONS_BYTES_MAX} bytes in total (got {total})"),
        );
    }
}

/// A map of label keys to label values (labels, nodeSelector, Service
/// selector).
pub(super) fn label_map(map: Option<&BTreeMap<String, String>>, path: &str, c: &mut Causes) {
    for (k, v) in map.into_iter().flatten() {
        c.problems(path, k, qualified_name_problems(k));
        c.problems(&format!("{path}[{k}]"), v, label_value_problems(v));
    }
}

pub(crate) fn namespace(ns: &Namespace, c: &mut Causes) {
    object_meta(Kind::Namespace, &ns.metadata, c);
}

pub(crate) fn node(node: &Node, c: &mut Causes) {
    object_meta(Kind::Node, &node.metadata, c);
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    for (i, t) in taints.into_iter().flatten().enumerate() {
        let p = format!("spec.taints[{i}]");
        c.problems(&format!("{p}.key"), &t.key, qualified_name_problems(&t.key));
        if let Some(v) = &t.value {
            c.problems(&format!("{p}.value"), v, label_value_problems(v));
        }
        c.one_of(
            &format!("{p}.effect"),
            &t.effect,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        );
    }
}

pub(crate) fn pod(pod: &Pod, c: &mut Causes) {
    object_meta(Kind::Pod, &pod.metadata, c);
    match &pod.spec {
        Some(spec) => pod_spec(spec, "spec", c),
        None => c.add("spec.containers", "at least one container is required"),
    }
}

/// A pod template inside a Deployment, ReplicaSet, DaemonSet or StatefulSet.
fn pod_template(template: &PodTemplateSpec, selector: &LabelSelector, path: &str, c: &mut Causes) {
    pod_template_with(template, Some(selector), &["Always"], path, c)
}

/// A pod template whose labels `selector` (when given) must match and
/// whose restart policy must be one of `restart`.
pub(super) fn pod_template_with(
    template: &PodTemplateSpec,
    selector: Option<&LabelSelector>,
    restart: &[&str],
    path: &str,
    c: &mut Causes,
) {
    let empty = ObjectMeta::default();
    let meta = template.metadata.as_ref().unwrap_or(&empty);
    labels_and_annotations(meta, &format!("{path}.metadata"), c);
    if let Some(Ok(sel)) = selector.map(Selector::from_label_selector) {
        let labels = meta.labels.clone().unwrap_or_default();
        if !sel.is_empty() && !sel.matches(&labels) {
            c.add(
                format!("{path}.metadata.labels"),
                "selector does not match template labels",
            );
        }
    }
    match &template.spec {
        Some(spec) => {
            pod_spec(spec, &format!("{path}.spec"), c);
            if let Some(policy) = &spec.restart_policy {
                if !restart.contains(&policy.as_str()) {
                    let allowed: Vec<String> = restart.iter().map(|r| format!("{r:?}")).collect();
                    c.add(
                        format!("{path}.spec.restartPolicy"),
                        format!(
                            "must be {} in this template (got {})",
                            allowed.join(" or "),
                            quote(policy)
                        ),
                    );
                }
            }
        }
        None => c.add(
            format!("{path}.spec.containers"),
            "at least one container is required",
        ),
    }
}

pub(crate) fn pod_spec(spec: &PodSpec, p: &str, c: &mut Causes) {
    if spec.containers.is_empty() {
        c.add(
            format!("{p}.containers"),
            "at least one container is required",
        );
    }
    let volumes: BTreeSet<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    let mut seen_volumes = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let vp = format!("{p}.volumes[{i}].name");
        if v.name.is_empty() {
            c.required(&vp);
        } else {
            c.problems(&vp, &v.name, dns1123_label_problems(&v.name));
            if !seen_volumes.insert(v.name.as_str()) {
                c.add(vp, format!("duplicate volume name {}", quote(&v.name)));
            }
        }
    }

    let mut names = BTreeSet::new();
    let init = spec.init_containers.iter().flatten().enumerate();
    let init = init.map(|(i, ct)| (format!("{p}.initContainers[{i}]"), ct, true));
    let regular = spec.containers.iter().enumerate();
    let regular = regular.map(|(i, ct)| (format!("{p}.containers[{i}]"), ct, false));
    for (cp, ct, is_init) in init.chain(regular) {
        if !ct.name.is_empty() && !names.insert(ct.name.as_str()) {
            c.add(
                format!("{cp}.name"),
                format!("duplicate container name {}", quote(&ct.name)),
            );
        }
        container(ct, &cp, is_init, &volumes, c);
    }

    if let Some(policy) = &spec.restart_policy {
        c.one_of(
            &format!("{p}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        );
    }
    if let Some(policy) = &spec.dns_policy {
        c.one_of(
            &format!("{p}.dnsPolicy"),
            policy,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        );
    }
    c.at_least(
        &format!("{p}.terminationGracePeriodSeconds"),
        spec.termination_grace_period_seconds,
        0,
    );
    c.at_least(
        &format!("{p}.activeDeadlineSeconds"),
        spec.active_deadline_seconds,
        1,
    );
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            c.problems(&format!("{p}.{field}"), v, dns1123_label_problems(v));
        }
    }
    if let Some(node) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        c.problems(
            &format!("{p}.nodeName"),
            node,
            dns1123_subdomain_problems(node),
        );
    }
    label_map(spec.node_selector.as_ref(), &format!("{p}.nodeSelector"), c);
    for (i, t) in spec.tolerations.iter().flatten().enumerate() {
        let tp = format!("{p}.tolerations[{i}]");
        if let Some(key) = t.key.as_deref().filter(|k| !k.is_empty()) {
            c.problems(&format!("{tp}.key"), key, qualified_name_problems(key));
        }
        let operator = t.operator.as_deref().unwrap_or("Equal");
        c.one_of(&format!("{tp}.operator"), operator, &["Equal", "Exists"]);
        if operator == "Exists" && t.value.as_deref().is_some_and(|v| !v.is_empty()) {
            c.add(
                format!("{tp}.value"),
                "value must be empty when operator is \"Exists\"",
            );
        }
        if operator == "Equal" && t.key.as_deref().is_none_or(str::is_empty) {
            c.add(
                format!("{tp}.operator"),
                "operator must be \"Exists\" when key is empty",
            );
        }
        if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
            c.one_of(
                &format!("{tp}.effect"),
                effect,
                &["NoSchedule", "PreferNoSchedule", "NoExecute"],
            );
        }
    }
}

fn container(ct: &Container, cp: &str, is_init: bool, volumes: &BTreeSet<&str>, c: &mut Causes) {
    if ct.name.is_empty() {
        c.required(&format!("{cp}.name"));
    } else {
        c.problems(
            &format!("{cp}.name"),
            &ct.name,
            dns1123_label_problems(&ct.name),
        );
    }
    if ct.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        c.required(&format!("{cp}.image"));
    }
    if let Some(policy) = &ct.image_pull_policy {
        c.one_of(
            &format!("{cp}.imagePullPolicy"),
            policy,
            &["Always", "IfNotPresent", "Never"],
        );
    }
    if let Some(policy) = &ct.termination_message_policy {
        c.one_of(
            &format!("{cp}.terminationMessagePolicy"),
            policy,
            &["File", "FallbackToLogsOnError"],
        );
    }
    if let Some(policy) = &ct.restart_policy {
        if is_init {
            c.one_of(&format!("{cp}.restartPolicy"), policy, &["Always"]);
        } else {
            c.add(
                format!("{cp}.restartPolicy"),
                "may only be set on init containers",
            );
        }
    }

    let mut port_names = BTreeSet::new();
    for (j, port) in ct.ports.iter().flatten().enumerate() {
        let pp = format!("{cp}.ports[{j}]");
        c.port_range(&format!("{pp}.containerPort"), port.container_port);
        if let Some(host_port) = port.host_port.filter(|&h| h != 0) {
            c.port_range(&format!("{pp}.hostPort"), host_port);
        }
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            c.problems(&format!("{pp}.name"), name, iana_svc_name_problems(name));
            if !port_names.insert(name) {
                c.add(
                    format!("{pp}.name"),
                    format!("duplicate port name {}", quote(name)),
                );
            }
        }
        if let Some(protocol) = &port.protocol {
            c.one_of(&format!("{pp}.protocol"), protocol, &["TCP", "UDP", "SCTP"]);
        }
    }

    for (j, env) in ct.env.iter().flatten().enumerate() {
        let ep = format!("{cp}.env[{j}]");
        if env.name.is_empty() {
            c.required(&format!("{ep}.name"));
        } else {
            c.problems(
                &format!("{ep}.name"),
                &env.name,
                env_var_name_problems(&env.name),
            );
        }
        if env.value.as_deref().is_some_and(|v| !v.is_empty()) && env.value_from.is_some() {
            c.add(
                format!("{ep}.valueFrom"),
                "may not be specified when `value` is not empty",
            );
        }
    }

    for (j, m) in ct.volume_mounts.iter().flatten().enumerate() {
        let mp = format!("{cp}.volumeMounts[{j}]");
        if m.name.is_empty() {
            c.required(&format!("{mp}.name"));
        } else if !volumes.contains(m.name.as_str()) {
            c.add(
                format!("{mp}.name"),
                format!("no volume named {} in the pod", quote(&m.name)),
            );
        }
        if m.mount_path.is_empty() {
            c.required(&format!("{mp}.mountPath"));
        }
    }

    if let Some(r) = &ct.resources {
        resources(r, &format!("{cp}.resources"), c);
    }

    let probes = [
        ("livenessProbe", &ct.liveness_probe),
        ("readinessProbe", &ct.readiness_probe),
        ("startupProbe", &ct.startup_probe),
    ];
    for (field, p) in probes {
        if let Some(p) = p {
            probe(p, &format!("{cp}.{field}"), field != "readinessProbe", c);
        }
    }
}

fn resources(r: &ResourceRequirements, path: &str, c: &mut Causes) {
    let parse = |map: Option<
        &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >,
                 which: &str,
                 c: &mut Causes| {
        let mut parsed = BTreeMap::new();
        for (k, q) in map.into_iter().flatten() {
            let field = format!("{path}.{which}[{k}]");
            c.problems(&field, k, qualified_name_problems(k));
            match quantity::parse_milli(&q.0) {
                Ok(v) if v < 0 => c.add(
                    field,
                    format!("must be greater than or equal to 0 (got {})", quote(&q.0)),
                ),
                Ok(v) => {
                    parsed.insert(k.clone(), v);
                }
                Err(e) => c.add(field, e.to_string()),
            }
        }
        parsed
    };
    let requests = parse(r.requests.as_ref(), "requests", c);
    let limits = parse(r.limits.as_ref(), "limits", c);
    for (k, request) in &requests {
        if let Some(limit) = limits.get(k) {
            if request > limit {
                let limit_text = r
                    .limits
                    .as_ref()
                    .and_then(|l| l.get(k))
                    .map(|q| q.0.as_str())
                    .unwrap_or_default();
                c.add(
                    format!("{path}.requests[{k}]"),
                    format!("must be less than or equal to {k} limit of {limit_text}"),
                );
            }
        }
    }
}

fn probe(p: &Probe, path: &str, success_must_be_one: bool, c: &mut Causes) {
    let handlers = [
        p.exec.is_some(),
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.grpc.is_some(),
    ];
    match handlers.iter().filter(|h| **h).count() {
        1 => {}
        0 => c.add(
            path,
            "must specify a handler type (exec, httpGet, tcpSocket or grpc)",
        ),
        _ => c.add(
            path,
            "may not specify more than one handler type (exec, httpGet, tcpSocket or grpc)",
        ),
    }
    if let Some(exec) = &p.exec {
        if exec.command.as_ref().is_none_or(Vec::is_empty) {
            c.required(&format!("{path}.exec.command"));
        }
    }
    if let Some(http) = &p.http_get {
        int_or_name_port(&http.port, &format!("{path}.httpGet.port"), c);
        if let Some(scheme) = &http.scheme {
            c.one_of(
                &format!("{path}.httpGet.scheme"),
                scheme,
                &["HTTP", "HTTPS"],
            );
        }
    }
    if let Some(tcp) = &p.tcp_socket {
        int_or_name_port(&tcp.port, &format!("{path}.tcpSocket.port"), c);
    }
    if let Some(grpc) = &p.grpc {
        c.port_range(&format!("{path}.grpc.port"), grpc.port);
    }
    let field = |f: &str| format!("{path}.{f}");
    c.at_least(
        &field("initialDelaySeconds"),
        p.initial_delay_seconds.map(i64::from),
        0,
    );
    c.at_least(
        &field("timeoutSeconds"),
        p.timeout_seconds.map(i64::from),
        0,
    );
    c.at_least(&field("periodSeconds"), p.period_seconds.map(i64::from), 1);
    c.at_least(
        &field("successThreshold"),
        p.success_threshold.map(i64::from),
        1,
    );
    c.at_least(
        &field("failureThreshold"),
        p.failure_threshold.map(i64::from),
        1,
    );
    c.at_least(
        &field("terminationGracePeriodSeconds"),
        p.termination_grace_period_seconds,
        1,
    );
    if success_must_be_one && p.success_threshold.is_some_and(|s| s != 1) {
        c.add(
            field("successThreshold"),
            "must be 1 for liveness and startup probes",
        );
    }
}

/// A port given as a number (1..=65535) or a port name (IANA_SVC_NAME).
fn int_or_name_port(port: &IntOrString, path: &str, c: &mut Causes) {
    match port {
        IntOrString::Int(n) => c.port_range(path, *n),
        IntOrString::String(name) => c.problems(path, name, iana_svc_name_problems(name)),
    }
}

/// A `maxSurge`/`maxUnavailable` value: an integer ≥ 0 or a percentage.
/// Returns whether it is zero.
pub(super) fn int_or_percent(v: &IntOrString, path: &str, c: &mut Causes) -> bool {
    match v {
        IntOrString::Int(n) => {
            c.at_least(path, Some(i64::from(*n)), 0);
            *n == 0
        }
        IntOrString::String(s) => {
            let percent = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.len() <= 10 && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u64>().ok());
            match percent {
                Some(p) => {
                    if p > 100 {
                        c.add(
                            path,
                            format!("must not be greater than 100% (got {})", quote(s)),
                        );
                    }
                    p == 0
                }
                None => {
                    c.add(
                        path,
                        format!(
                            "must be an integer or a percentage like \"25%\" (got {})",
                            quote(s)
                        ),
                    );
                    false
                }
            }
        }
    }
}

pub(super) fn selector(sel: &LabelSelector, path: &str, c: &mut Causes) {
    match Selector::from_label_selector(sel) {
        Ok(s) if s.is_empty() => c.add(
            path,
            "empty selector is not allowed; it would select every pod",
        ),
        Ok(_) => {}
        Err(e) => c.add(path, e.to_string()),
    }
}

/// `spec.replicas` and `spec.minReadySeconds` of a workload: not negative.
pub(super) fn counts(replicas: Option<i32>, min_ready_seconds: Option<i32>, c: &mut Causes) {
    c.at_least("spec.replicas", replicas.map(i64::from), 0);
    c.at_least("spec.minReadySeconds", min_ready_seconds.map(i64::from), 0);
}

fn workload(
    replicas: Option<i32>,
    min_ready_seconds: Option<i32>,
    sel: &LabelSelector,
    template: Option<&PodTemplateSpec>,
    c: &mut Causes,
) {
    counts(replicas, min_ready_seconds, c);
    selector(sel, "spec.selector", c);
    match template {
        Some(t) => pod_template(t, sel, "spec.template", c),
        None => c.required("spec.template"),
    }
}

pub(crate) fn replica_set(rs: &ReplicaSet, c: &mut Causes) {
    object_meta(Kind::ReplicaSet, &rs.metadata, c);
    match &rs.spec {
        Some(spec) => workload(
            spec.replicas,
            spec.min_ready_seconds,
            &spec.selector,
            spec.template.as_ref(),
            c,
        ),
        None => c.required("spec"),
    }
}

pub(crate) fn deployment(d: &Deployment, c: &mut Causes) {
    object_meta(Kind::Deployment, &d.metadata, c);
    let Some(spec) = &d.spec else {
        c.required("spec");
        return;
    };
    workload(
        spec.replicas,
        spec.min_ready_seconds,
        &spec.selector,
        Some(&spec.template),
        c,
    );
    deployment_strategy(spec, c);
    c.at_least(
        "spec.revisionHistoryLimit",
        spec.revision_history_limit.map(i64::from),
        0,
    );
    if let Some(deadline) = spec.progress_deadline_seconds {
        if deadline <= spec.min_ready_seconds.unwrap_or(0) {
            c.add(
                "spec.progressDeadlineSeconds",
                format!("must be greater than minReadySeconds (got {deadline})"),
            );
        }
    }
}

fn deployment_strategy(spec: &DeploymentSpec, c: &mut Causes) {
    let Some(strategy) = &spec.strategy else {
        return;
    };
    let kind = strategy.type_.as_deref().unwrap_or("RollingUpdate");
    c.one_of("spec.strategy.type", kind, &["RollingUpdate", "Recreate"]);
    match (&strategy.rolling_update, kind) {
        (Some(_), "Recreate") => c.add(
            "spec.strategy.rollingUpdate",
            "may not be specified when strategy type is \"Recreate\"",
        ),
        (Some(ru), _) => {
            let surge_zero = ru
                .max_surge
                .as_ref()
                .is_some_and(|v| int_or_percent(v, "spec.strategy.rollingUpdate.maxSurge", c));
            let unavailable_zero = ru.max_unavailable.as_ref().is_some_and(|v| {
                int_or_percent(v, "spec.strategy.rollingUpdate.maxUnavailable", c)
            });
            if surge_zero && unavailable_zero {
                c.add(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    "may not be 0 when maxSurge is 0",
                );
            }
        }
        (None, _) => {}
    }
}

pub(crate) fn service(svc: &Service, c: &mut Causes) {
    object_meta(Kind::Service, &svc.metadata, c);
    let Some(spec) = &svc.spec else {
        c.required("spec.ports");
        return;
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    c.one_of(
        "spec.type",
        kind,
        &["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"],
    );
    if let Some(affinity) = &spec.session_affinity {
        c.one_of("spec.sessionAffinity", affinity, &["ClientIP", "None"]);
    }
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or("");
    if !cluster_ip.is_empty() && cluster_ip != "None" && cluster_ip.parse::<IpAddr>().is_err() {
        c.add(
            "spec.clusterIP",
            format!(
                "must be empty, \"None\" or a valid IP address (got {})",
                quote(cluster_ip)
            ),
        );
    }
    if kind == "ExternalName" {
        match spec.external_name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => c.problems("spec.externalName", name, dns1123_subdomain_problems(name)),
            None => c.required("spec.externalName"),
        }
    }
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && kind != "ExternalName" && cluster_ip != "None" {
        c.add("spec.ports", "at least one port is required");
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        c.port_range(&format!("{pp}.port"), port.port);
        match port.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => {
                c.problems(&format!("{pp}.name"), name, dns1123_label_problems(name));
                if !names.insert(name) {
                    c.add(
                        format!("{pp}.name"),
                        format!("duplicate port name {}", quote(name)),
                    );
                }
            }
            None if ports.len() > 1 => c.add(
                format!("{pp}.name"),
                "required value when there is more than one port",
            ),
            None => {}
        }
        if let Some(protocol) = &port.protocol {
            c.one_of(&format!("{pp}.protocol"), protocol, &["TCP", "UDP", "SCTP"]);
        }
        if let Some(target) = &port.target_port {
            int_or_name_port(target, &format!("{pp}.targetPort"), c);
        }
        if let Some(node_port) = port.node_port.filter(|&n| n != 0) {
            if kind == "ClusterIP" || kind == "ExternalName" {
                c.add(
                    format!("{pp}.nodePort"),
                    format!("may not be used when type is {kind:?}"),
                );
            } else {
                // the configured range is checked where ports are allocated
                c.port_range(&format!("{pp}.nodePort"), node_port);
            }
        }
    }
    label_map(spec.selector.as_ref(), "spec.selector", c);
}

/// Keys of `data`/`binaryData`, their overlap and their total size.
fn config_data<'a>(
    data: impl Iterator<Item = (&'a String, usize)>,
    binary: impl Iterator<Item = (&'a String, usize)>,
    (data_field, binary_field): (&str, &str),
    c: &mut Causes,
) {
    let mut total = 0usize;
    let mut keys = BTreeSet::new();
    for (k, len) in data {
        c.problems(&format!("{data_field}[{k}]"), k, config_key_problems(k));
        keys.insert(k);
        total += k.len() + len;
    }
    for (k, len) in binary {
        c.problems(&format!("{binary_field}[{k}]"), k, config_key_problems(k));
        if keys.contains(k) {
            c.add(
                format!("{binary_field}[{k}]"),
                format!("duplicate of key {} in {data_field}", quote(k)),
            );
        }
        total += k.len() + len;
    }
    if total > DATA_BYTES_MAX {
        c.add(
            data_field,
            format!("may not have more than {DATA_BYTES_MAX} bytes in total (got {total})"),
        );
    }
}

pub(crate) fn config_map(cm: &ConfigMap, c: &mut Causes) {
    object_meta(Kind::ConfigMap, &cm.metadata, c);
    config_data(
        cm.data.iter().flatten().map(|(k, v)| (k, v.len())),
        cm.binary_data.iter().flatten().map(|(k, v)| (k, v.0.len())),
        ("data", "binaryData"),
        c,
    );
}

/// Runs after `stringData` has been merged into `data`.
pub(crate) fn secret(s: &Secret, c: &mut Causes) {
    object_meta(Kind::Secret, &s.metadata, c);
    config_data(
        s.data.iter().flatten().map(|(k, v)| (k, v.0.len())),
        s.string_data.iter().flatten().map(|(k, v)| (k, v.len())),
        ("data", "stringData"),
        c,
    );
    if s.type_.as_deref() == Some("") {
        c.add("type", "must not be empty");
    }
}

/// Kubernetes' Endpoints rules: valid addresses and ports.
pub(crate) fn endpoints(e: &Endpoints, c: &mut Causes) {
    object_meta(Kind::Endpoints, &e.metadata, c);
    for (i, subset) in e.subsets.iter().flatten().enumerate() {
        let sp = format!("subsets[{i}]");
        let ready = subset.addresses.iter().flatten().map(|a| ("addresses", a));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| ("notReadyAddresses", a));
        for (j, (field, a)) in ready.chain(not_ready).enumerate() {
            if a.ip.parse::<IpAddr>().is_err() {
                c.add(
                    format!("{sp}.{field}[{j}].ip"),
                    format!("must be a valid IP address (got {})", quote(&a.ip)),
                );
            }
        }
        for (j, p) in subset.ports.iter().flatten().enumerate() {
            c.port_range(&format!("{sp}.ports[{j}].port"), p.port);
            if let Some(protocol) = &p.protocol {
                c.one_of(
                    &format!("{sp}.ports[{j}].protocol"),
                    protocol,
                    &["TCP", "UDP", "SCTP"],
                );
            }
        }
    }
}

/// Kubernetes' EndpointSlice rules: the address type, at most 1000
/// endpoints of 1 to 100 addresses of that type, at most 100 ports.
pub(crate) fn endpoint_slice(s: &EndpointSlice, c: &mut Causes) {
    object_meta(Kind::EndpointSlice, &s.metadata, c);
    c.one_of("addressType", &s.address_type, &["IPv4", "IPv6", "FQDN"]);
    if s.endpoints.len() > 1000 {
        c.add(
            "endpoints",
            format!("must have at most 1000 items (got {})", s.endpoints.len()),
        );
    }
    for (i, e) in s.endpoints.iter().enumerate() {
        if e.addresses.is_empty() || e.addresses.len() > 100 {
            c.add(
                format!("endpoints[{i}].addresses"),
                "must have between 1 and 100 items",
            );
        }
        for (j, a) in e.addresses.iter().enumerate() {
            let ok = match s.address_type.as_str() {
                "IPv4" => a.parse::<std::net::Ipv4Addr>().is_ok(),
                "IPv6" => a.parse::<std::net::Ipv6Addr>().is_ok(),
                _ => dns1123_subdomain_problems(a).is_empty(),
            };
            if !ok {
                c.add(
                    format!("endpoints[{i}].addresses[{j}]"),
                    format!(
                        "must be a valid {} address (got {})",
                        s.address_type,
                        quote(a)
                    ),
                );
            }
        }
    }
    let ports = s.ports.as_deref().unwrap_or_default();
    if ports.len() > 100 {
        c.add(
            "ports",
            format!("must have at most 100 items (got {})", ports.len()),
        );
    }
    for (i, p) in ports.iter().enumerate() {
        if let Some(port) = p.port {
            c.port_range(&format!("ports[{i}].port"), port);
        }
        if let Some(protocol) = &p.protocol {
            c.one_of(
                &format!("ports[{i}].protocol"),
                protocol,
                &["TCP", "UDP", "SCTP"],
            );
        }
    }
}

/// Kubernetes' Lease rules: durations and transitions are not negative
/// (a duration of 0 is refused: such a lease could never be held).
pub(crate) fn lease(l: &Lease, c: &mut Causes) {
    object_meta(Kind::Lease, &l.metadata, c);
    let Some(spec) = &l.spec else { return };
    if let Some(d) = spec.lease_duration_seconds {
        if d <= 0 {
            c.add(
                "spec.leaseDurationSeconds",
                format!("must be greater than 0 (got {d})"),
            );
        }
    }
    c.at_least(
        "spec.leaseTransitions",
        spec.lease_transitions.map(i64::from),
        0,
    );
}

pub(crate) fn event(e: &Event, c: &mut Causes) {
    object_meta(Kind::Event, &e.metadata, c);
    if let Some(t) = e.type_.as_deref().filter(|t| !t.is_empty()) {
        c.one_of("type", t, &["Normal", "Warning"]);
    }
    c.at_least("count", e.count.map(i64::from), 0);
    let involved_ns = e.involved_object.namespace.as_deref().unwrap_or("");
    let ns = e.metadata.namespace.as_deref().unwrap_or("");
    if !involved_ns.is_empty() && involved_ns != ns {
        c.add(
            "involvedObject.namespace",
            format!(
                "does not match the event's namespace {} (got {})",
                quote(ns),
                quote(involved_ns)
            ),
        );
    }
    if e.reason.as_ref().is_some_and(|r| r.len() > 128) {
        c.add("reason", "must be no more than 128 characters");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_syntaxes() {
        let ok = Vec::<String>::new();
        type Rule = fn(&str) -> Vec<String>;
        let table: &[(&str, Rule, bool)] = &[
            ("web-1", dns1123_label_problems, true),
            ("a", dns1123_label_problems, true),
            ("0", dns1123_label_problems, true),
            ("", dns1123_label_problems, false),
            ("Web", dns1123_label_problems, false),
            ("web.1", dns1123_label_problems, false),
            ("-web", dns1123_label_problems, false),
            ("web-", dns1123_label_problems, false),
            ("web_1", dns1123_label_problems, false),
            ("web.example.com", dns1123_subdomain_problems, true),
            ("web..com", dns1123_subdomain_problems, false),
            (".web", dns1123_subdomain_problems, false),
            ("Web_1", dns1123_subdomain_problems, false),
            ("app", qualified_name_problems, true),
            ("app.kubernetes.io/name", qualified_name_problems, true),
            ("Example.com/Name", qualified_name_problems, false),
            ("example.com/My_Name.v2", qualified_name_problems, true),
            ("/name", qualified_name_problems, false),
            ("a/", qualified_name_problems, false),
            ("a/b/c", qualified_name_problems, false),
            ("_a", qualified_name_problems, false),
            ("", qualified_name_problems, false),
            ("", label_value_problems, true),
            ("v1.2_3-X", label_value_problems, true),
            ("-x", label_value_problems, false),
            ("a b", label_value_problems, false),
            ("http", iana_svc_name_problems, true),
            ("web-80", iana_svc_name_problems, true),
            ("80", iana_svc_name_problems, false),
            ("a--b", iana_svc_name_problems, false),
            ("-ab", iana_svc_name_problems, false),
            ("Http", iana_svc_name_problems, false),
            ("abcdefghijklmnop", iana_svc_name_problems, false),
            ("HOME", env_var_name_problems, true),
            ("my.var-1", env_var_name_problems, true),
            ("_x", env_var_name_problems, true),
            ("1X", env_var_name_problems, false),
            ("A B", env_var_name_problems, false),
            ("", env_var_name_problems, false),
            ("config.yaml", config_key_problems, true),
            ("-_.A1", config_key_problems, true),
            ("a/b", config_key_problems, false),
            ("..", config_key_problems, false),
            ("", config_key_problems, false),
        ];
        for (input, rule, valid) in table {
            let problems = rule(input);
            assert_eq!(problems.is_empty(), *valid, "{input:?}: {problems:?}");
            if *valid {
                assert_eq!(problems, ok);
            }
        }
        let long_label = "a".repeat(64);
        assert_eq!(
            dns1123_label_problems(&long_label),
            vec!["must be no more than 63 characters".to_string()]
        );
        let long_sub = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(63),
        ]
        .join(".");
        assert_eq!(long_sub.len(), 255);
        assert!(!dns1123_subdomain_problems(&long_sub).is_empty());
        assert!(!qualified_name_problems(&format!("x/{}", "a".repeat(64))).is_empty());
        assert!(!label_value_problems(&"a".repeat(64)).is_empty());
        assert!(!config_key_problems(&"a".repeat(254)).is_empty());
    }

    #[test]
    fn quotes_are_bounded() {
        let long = "x".repeat(10_000);
        assert!(quote(&long).len() < 80);
        assert_eq!(quote("ab"), "\"ab\"");
    }
}
