//! Validation of the access kinds: ServiceAccount, Role, ClusterRole,
//! RoleBinding and ClusterRoleBinding, with Kubernetes' rules (a rule
//! names verbs, and resources with API groups or non-resource URLs; a
//! binding names a role of the right kind and subjects Kubernetes knows).

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::validate::{dns1123_subdomain_problems, object_meta, Causes};
use crate::kind::Kind;
use crate::rbac::GROUP;

pub(crate) fn service_account_rules(sa: &ServiceAccount, c: &mut Causes) {
    object_meta(Kind::ServiceAccount, &sa.metadata, c);
}

fn policy_rules(rules: &[PolicyRule], namespaced: bool, c: &mut Causes) {
    for (i, r) in rules.iter().enumerate() {
        let at = |f: &str| format!("rules[{i}].{f}");
        if r.verbs.is_empty() {
            c.add(
                at("verbs"),
                "Required value: verbs must contain at least one value",
            );
        }
        let resources = r.resources.as_deref().unwrap_or_default();
        let urls = r.non_resource_urls.as_deref().unwrap_or_default();
        if namespaced && !urls.is_empty() {
            c.add(
                at("nonResourceURLs"),
                "namespaced rules cannot apply to non-resource URLs",
            );
        }
        if !urls.is_empty() && !resources.is_empty() {
            c.add(
                at("nonResourceURLs"),
                "rules cannot apply to both regular resources and non-resource URLs",
            );
        }
        if urls.is_empty() {
            if resources.is_empty() {
                c.add(
                    at("resources"),
                    "Required value: resource rules must supply at least one resource",
                );
            }
            if r.api_groups.as_deref().unwrap_or_default().is_empty() {
                c.add(
                    at("apiGroups"),
                    "Required value: resource rules must supply at least one api group",
                );
            }
        }
    }
}

pub(crate) fn role_rules(role: &Role, c: &mut Causes) {
    object_meta(Kind::Role, &role.metadata, c);
    policy_rules(role.rules.as_deref().unwrap_or_default(), true, c);
}

pub(crate) fn cluster_role_rules(role: &ClusterRole, c: &mut Causes) {
    object_meta(Kind::ClusterRole, &role.metadata, c);
    policy_rules(role.rules.as_deref().unwrap_or_default(), false, c);
}

fn role_ref(r: &RoleRef, allowed: &[&str], c: &mut Causes) {
    if r.api_group != GROUP {
        c.add(
            "roleRef.apiGroup",
            format!(
                "Unsupported value: {:?}: supported values: {GROUP:?}",
                r.api_group
            ),
        );
    }
    if !allowed.contains(&r.kind.as_str()) {
        let list: Vec<String> = allowed.iter().map(|k| format!("{k:?}")).collect();
        c.add(
            "roleRef.kind",
            format!(
                "Unsupported value: {:?}: supported values: {}",
                r.kind,
                list.join(", ")
            ),
        );
    }
    if r.name.is_empty() {
        c.add("roleRef.name", "Required value");
    }
}

fn subjects(subjects: &[Subject], namespaced: bool, c: &mut Causes) {
    for (i, s) in subjects.iter().enumerate() {
        let at = |f: &str| format!("subjects[{i}].{f}");
        if s.name.is_empty() {
            c.add(at("name"), "Required value");
        }
        match s.kind.as_str() {
            "ServiceAccount" => {
                if s.api_group.as_deref().is_some_and(|g| !g.is_empty()) {
                    c.add(
                        at("apiGroup"),
                        "Unsupported value: a ServiceAccount's apiGroup is \"\"",
                    );
                }
                for p in dns1123_subdomain_problems(&s.name) {
                    c.add(at("name"), p);
                }
                if !namespaced && s.namespace.as_deref().unwrap_or_default().is_empty() {
                    c.add(at("namespace"), "Required value");
                }
            }
            "User" | "Group" => {
                if s.api_group.as_deref() != Some(GROUP) {
                    c.add(
                        at("apiGroup"),
                        format!("Unsupported value: {:?}: supported values: {GROUP:?}", s.api_group.as_deref().unwrap_or("")),
                    );
                }
            }
            other => c.add(
                at("kind"),
                format!(
                    "Unsupported value: {other:?}: supported values: \"ServiceAccount\", \"User\", \"Group\""
                ),
            ),
        }
    }
}

pub(crate) fn role_binding_rules(b: &RoleBinding, c: &mut Causes) {
    object_meta(Kind::RoleBinding, &b.metadata, c);
    role_ref(&b.role_ref, &["Role", "ClusterRole"], c);
    subjects(b.subjects.as_deref().unwrap_or_default(), true, c);
}

pub(crate) fn cluster_role_binding_rules(b: &ClusterRoleBinding, c: &mut Causes) {
    object_meta(Kind::ClusterRoleBinding, &b.metadata, c);
    role_ref(&b.role_ref, &["ClusterRole"], c);
    subjects(b.subjects.as_deref().unwrap_or_default(), false, c);
}

/// A binding's subject as Kubernetes defaults it: `User` and `Group`
/// subjects get the RBAC API group when they name none.
pub(crate) fn default_subjects(subjects: &mut Option<Vec<Subject>>) {
    for s in subjects.iter_mut().flatten() {
        if matches!(s.kind.as_str(), "User" | "Group") && s.api_group.is_none() {
            s.api_group = Some(GROUP.to_string());
        }
    }
}

pub(crate) fn role_binding(b: &mut RoleBinding) {
    default_subjects(&mut b.subjects);
}

pub(crate) fn cluster_role_binding(b: &mut ClusterRoleBinding) {
    default_subjects(&mut b.subjects);
}
