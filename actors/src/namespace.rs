//! The namespace controller: a Namespace being deleted (marked
//! `Terminating` with the `kubernetes` finalizer by the store) has
//! everything in it deleted; once nothing is left, the controller removes
//! the finalizer and the store removes the Namespace. Meanwhile the store
//! refuses creates into it (`store::service`).
//!
//! Events are not waited for: they are not cached here (there can be many
//! thousands) and the store deletes every Event an hour after it last
//! happened.

use std::time::Duration;

use kubus_api::lifecycle::{self, NAMESPACE_FINALIZER};
use kubus_api::{meta, Kind};
use serde_json::Value;

use crate::informer::Delta;
use crate::runtime::{Plan, Planned, Reconcile, View, Watch};
use crate::write::Write;

/// The namespaced kinds a terminating namespace is emptied of (all but
/// Event).
pub const CONTENT_KINDS: [Kind; kubus_api::kind::NAMESPACED_CONTENT.len()] =
    kubus_api::kind::NAMESPACED_CONTENT;
/// How soon a terminating namespace is looked at again while objects in
/// it are still going (their deletions also wake it).
pub const RECHECK_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, Default)]
pub struct NamespaceController;

/// The namespace of an object that changed, when that namespace is being
/// deleted.
fn terminating_namespace_of(d: &Delta, view: &View<'_>) -> Vec<String> {
    let (Some(ns), Some(own)) = (meta::namespace(&d.object), view.own()) else {
        return Vec::new();
    };
    own.cache
        .get(ns)
        .filter(|n| lifecycle::is_marked(n))
        .map(|_| vec![ns.to_string()])
        .unwrap_or_default()
}

/// The Namespace with its `kubernetes` finalizer removed.
fn finalized(ns: &Value) -> Value {
    let mut v = ns.clone();
    if let Some(list) = v
        .pointer_mut("/spec/finalizers")
        .and_then(Value::as_array_mut)
    {
        list.retain(|f| f.as_str() != Some(NAMESPACE_FINALIZER));
    }
    v
}

impl Reconcile for NamespaceController {
    fn kind(&self) -> Kind {
        Kind::Namespace
    }

    fn name(&self) -> &'static str {
        "namespace-controller"
    }

    fn watches(&self) -> Vec<Watch> {
        CONTENT_KINDS
            .iter()
            .map(|k| Watch::Maps(*k, terminating_namespace_of))
            .collect()
    }

    fn reconcile(&self, ns: &Value, view: &View<'_>) -> Plan {
        let Some(name) = meta::name(ns) else {
            return Plan::default();
        };
        if !lifecycle::is_marked(ns) || !view.pending.is_empty() {
            return Plan::default();
        }
        if !lifecycle::finalizers(ns).contains(&NAMESPACE_FINALIZER) {
            return Plan::default(); // another finalizer holds it
        }
        let mut left = 0;
        let mut writes = Vec::new();
        for kind in CONTENT_KINDS {
            let Some(cache) = view.cache(kind) else {
                continue;
            };
            for obj in cache.cache.in_namespace(name) {
                left += 1;
                // a marked object is on its way (a pod stopping, a
                // finalizer pending)
                if lifecycle::is_marked(obj) {
                    continue;
                }
                if let Some(r) = meta::object_ref(obj) {
                    writes.push(Planned::quiet(Write::delete(
                        r,
                        meta::resource_version(obj),
                    )));
                }
            }
        }
        if left == 0 {
            return Plan::writes([Planned::noted(
                Write::Update(finalized(ns)),
                "NamespaceFinalized",
                "All content of namespace {name} was deleted",
            )]);
        }
        Plan {
            writes,
            requeue_after: Some(RECHECK_AFTER),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::informers::Shared;
    use crate::runtime::Pending;
    use serde_json::json;

    fn ns(marked: bool) -> Value {
        let mut v = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "team", "resourceVersion": "4"},
            "spec": {"finalizers": ["kubernetes"]}});
        if marked {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        v
    }

    fn obj(kind: &str, api: &str, ns: &str, name: &str) -> Value {
        json!({"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": ns, "resourceVersion": "3"}})
    }

    fn plan(namespace: &Value, pods: Vec<Value>, cms: Vec<Value>) -> Plan {
        let pods = Shared::for_tests(Kind::Pod, pods, 10);
        let cms = Shared::for_tests(Kind::ConfigMap, cms, 10);
        let (p, c) = (pods.read(), cms.read());
        let caches = [(Kind::Pod, &*p), (Kind::ConfigMap, &*c)];
        NamespaceController.reconcile(
            namespace,
            &View::new(&caches, Pending::default(), jiff::Timestamp::now()),
        )
    }

    #[test]
    fn a_terminating_namespace_is_emptied_then_finalized() {
        let pods = vec![
            obj("Pod", "v1", "team", "a"),
            obj("Pod", "v1", "other", "b"),
        ];
        let mut stopping = obj("Pod", "v1", "team", "c");
        stopping["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:30Z");
        let cms = vec![obj("ConfigMap", "v1", "team", "cfg"), stopping.clone()];
        // not being deleted: nothing
        assert_eq!(plan(&ns(false), pods.clone(), cms.clone()), Plan::default());
        // being deleted: its objects go (not other namespaces', not the
        // ones already going), and it is looked at again
        let p = plan(&ns(true), pods.clone(), cms);
        let deleted: Vec<String> = p
            .writes
            .iter()
            .filter_map(|w| match &w.write {
                Write::Delete(r, _) => Some(r.name.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, vec!["a", "cfg"]);
        assert_eq!(p.requeue_after, Some(RECHECK_AFTER));
        // something still going: wait
        let p = plan(&ns(true), vec![stopping], vec![]);
        assert!(p.writes.is_empty());
        // empty: finalized
        let p = plan(&ns(true), vec![obj("Pod", "v1", "other", "b")], vec![]);
        match &p.writes[..] {
            [Planned {
                write: Write::Update(v),
                ..
            }] => assert_eq!(v["spec"]["finalizers"], json!([])),
            other => panic!("{other:?}"),
        }
    }
}
