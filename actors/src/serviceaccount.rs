//! The ServiceAccount controller: every Namespace that is not being
//! deleted has a ServiceAccount named `default` (Kubernetes'
//! `serviceaccounts-controller`); deleted, it is made again.
//!
//! Pods name `default` when they name no ServiceAccount (admission), and
//! their tokens are issued for it (`serviceaccounts/token`).

use kubus_api::{lifecycle, meta, Kind};
use serde_json::{json, Value};

use crate::informer::Delta;
use crate::runtime::{Plan, Planned, Reconcile, View, Watch};
use crate::write::Write;

/// The ServiceAccount every namespace has.
pub const DEFAULT: &str = kubus_api::token::DEFAULT_SERVICE_ACCOUNT;

#[derive(Debug, Clone, Copy, Default)]
pub struct ServiceAccountController;

/// The namespace of a `default` ServiceAccount that changed (its delete
/// makes it again).
fn namespace_of_default(d: &Delta, _: &View<'_>) -> Vec<String> {
    match (meta::namespace(&d.object), meta::name(&d.object)) {
        (Some(ns), Some(DEFAULT)) => vec![ns.to_string()],
        _ => Vec::new(),
    }
}

/// The `default` ServiceAccount of `namespace`.
pub fn default_account(namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": DEFAULT, "namespace": namespace},
    })
}

impl Reconcile for ServiceAccountController {
    fn kind(&self) -> Kind {
        Kind::Namespace
    }

    fn name(&self) -> &'static str {
        "serviceaccount-controller"
    }

    fn watches(&self) -> Vec<Watch> {
        vec![Watch::Maps(Kind::ServiceAccount, namespace_of_default)]
    }

    fn reconcile(&self, ns: &Value, view: &View<'_>) -> Plan {
        let Some(name) = meta::name(ns) else {
            return Plan::default();
        };
        // a terminating namespace refuses creates; nothing is pending twice
        if lifecycle::is_marked(ns) || view.pending.creates > 0 {
            return Plan::default();
        }
        let exists = view
            .cache(Kind::ServiceAccount)
            .is_some_and(|c| c.cache.get(&format!("{name}/{DEFAULT}")).is_some());
        if exists {
            return Plan::default();
        }
        Plan::writes([Planned::quiet(Write::Create(default_account(name)))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::informers::Shared;
    use crate::runtime::Pending;

    fn plan(ns: &Value, accounts: Vec<Value>, pending: Pending) -> Plan {
        let sas = Shared::for_tests(Kind::ServiceAccount, accounts, 10);
        let guard = sas.read();
        let caches = [(Kind::ServiceAccount, &*guard)];
        let view = View::new(&caches, pending, jiff::Timestamp::UNIX_EPOCH);
        ServiceAccountController.reconcile(ns, &view)
    }

    #[test]
    fn every_live_namespace_gets_its_default_account_once() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}});
        let p = plan(&ns, vec![], Pending::default());
        assert_eq!(p.writes.len(), 1);
        assert!(matches!(&p.writes[0].write, Write::Create(o) if o == &default_account("team")));
        // there already, or being made
        assert!(plan(&ns, vec![default_account("team")], Pending::default())
            .writes
            .is_empty());
        let pending = Pending {
            creates: 1,
            ..Pending::default()
        };
        assert!(plan(&ns, vec![], pending).writes.is_empty());
        // another namespace's default does not count
        assert_eq!(
            plan(&ns, vec![default_account("other")], Pending::default())
                .writes
                .len(),
            1
        );
        let mut marked = ns.clone();
        marked["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(plan(&marked, vec![], Pending::default()).writes.is_empty());
    }
}
