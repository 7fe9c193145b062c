//! Who sent a request, and whether they may: the store's authentication
//! (the identity nats-server wrote on the request, [`kubus_bus::auth`])
//! and authorization (RBAC over the stored Roles and bindings, the Node
//! authorizer for nodes, NodeRestriction for their pod writes).
//!
//! The RBAC index is rebuilt from the store when a change of an RBAC kind
//! is published ([`Access::invalidate`]), so an edited binding counts from
//! the next request on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use kubus_api::kind::prefix;
use kubus_api::rbac::node::Graph;
use kubus_api::rbac::{self, node, Attributes, Decision, Index, UserInfo};
use kubus_api::{ApiError, Kind, ObjectRef, Reason};
use kubus_bus::auth::{requester, Requester};
use kubus_bus::protocol::ApiRequest;
use kubus_bus::subject::{Verb, HEADER_IMPERSONATE};
use kubus_storage::Store;
use serde_json::Value;
use tracing::warn;

/// Most pods of one namespace the Node authorizer reads for one decision.
const GRAPH_PODS_MAX: usize = 100_000;

/// The kinds whose changes rebuild the index.
pub const RBAC_KINDS: [Kind; 4] = [
    Kind::Role,
    Kind::ClusterRole,
    Kind::RoleBinding,
    Kind::ClusterRoleBinding,
];

/// Authentication and authorization of one store peer.
#[derive(Clone)]
pub struct Access {
    /// Whether the bus has accounts (kubus's own configuration): then a
    /// request without the server's identity header came from inside the
    /// store's account. On a bus without them nobody can be told apart
    /// and every requester is an administrator (warned at start).
    secured: bool,
    index: Arc<RwLock<Arc<Index>>>,
    stale: Arc<AtomicBool>,
}

fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(Reason::Forbidden, message)
}

/// The administrator of an unsecured bus, and a store peer.
fn master(name: &str) -> UserInfo {
    UserInfo {
        name: name.to_string(),
        groups: vec![rbac::MASTERS.to_string(), rbac::AUTHENTICATED.to_string()],
    }
}

impl Access {
    pub fn new(secured: bool) -> Access {
        if !secured {
            warn!("the bus has no kubus accounts: every client of it is a cluster administrator");
        }
        Access {
            secured,
            index: Arc::default(),
            stale: Arc::new(AtomicBool::new(true)),
        }
    }

    /// An RBAC object changed: rebuild before the next decision.
    pub fn invalidate(&self) {
        self.stale.store(true, Ordering::Release);
    }

    fn index(&self, store: &Store) -> Arc<Index> {
        if self.stale.swap(false, Ordering::AcqRel) {
            let read = |kind: Kind| -> Vec<Value> {
                match store.range(&prefix(kind, None), GRAPH_PODS_MAX) {
                    Ok(r) => r
                        .items
                        .iter()
                        .filter_map(|kv| rmp_serde::from_slice(&kv.value).ok())
                        .collect(),
                    Err(e) => {
                        warn!(%kind, error = %e, "cannot read RBAC objects");
                        self.stale.store(true, Ordering::Release);
                        Vec::new()
                    }
                }
            };
            let index = Index::build(
                &read(Kind::Role),
                &read(Kind::ClusterRole),
                &read(Kind::RoleBinding),
                &read(Kind::ClusterRoleBinding),
            );
            if let Ok(mut slot) = self.index.write() {
                *slot = Arc::new(index);
            }
        }
        self.index
            .read()
            .map(|i| i.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The user a request with `headers` acts as: the identity the server
    /// named, or — when that identity may impersonate — the user it names
    /// in [`HEADER_IMPERSONATE`].
    pub fn user(
        &self,
        store: &Store,
        headers: Option<&async_nats::HeaderMap>,
    ) -> Result<UserInfo, ApiError> {
        let sender = match requester(headers) {
            Requester::Identity(id) => id.user_info(),
            Requester::SameAccount if self.secured => master("system:kubus-store"),
            Requester::SameAccount => master("system:kubus-unsecured-bus"),
            Requester::Unknown(why) => {
                return Err(forbidden(format!("unknown requester: {why}")));
            }
        };
        let Some(value) = headers.and_then(|h| h.get(HEADER_IMPERSONATE)) else {
            return Ok(sender);
        };
        let wanted: UserInfo = serde_json::from_str(value.as_str())
            .map_err(|e| ApiError::bad_request(format!("header {HEADER_IMPERSONATE}: {e}")))?;
        let index = self.index(store);
        let mut asks = vec![Attributes::new("impersonate", "", "users").named(Some(&wanted.name))];
        asks.extend(
            wanted
                .groups
                .iter()
                .map(|g| Attributes::new("impersonate", "", "groups").named(Some(g))),
        );
        for a in &asks {
            if let Decision::Deny(why) = index.authorize(&sender, a) {
                return Err(forbidden(why));
            }
        }
        Ok(wanted)
    }

    /// Whether `user` may ask `a` (with the list's or watch's field
    /// selector): RBAC, and for nodes the Node authorizer.
    pub fn decide(
        &self,
        store: &Store,
        user: &UserInfo,
        a: &Attributes,
        field_selector: Option<&str>,
    ) -> Decision {
        if user.in_group(rbac::MASTERS) {
            return Decision::Allow;
        }
        if let Some(name) = user.node() {
            let by_node = node::authorize(user, name, a, field_selector, &StoreGraph(store));
            if by_node.allowed() {
                return by_node;
            }
            // RBAC may grant a node more (as in Kubernetes)
            return match self.index(store).authorize(user, a) {
                Decision::Allow => Decision::Allow,
                Decision::Deny(_) => by_node,
            };
        }
        self.index(store).authorize(user, a)
    }

    /// Authorize one API request of `user`; for a node's write of a pod,
    /// also that it changes only the status.
    pub fn check(
        &self,
        store: &Store,
        user: &UserInfo,
        verb: Verb,
        kind: Kind,
        namespace: Option<&str>,
        req: &ApiRequest,
    ) -> Result<(), ApiError> {
        if user.in_group(rbac::MASTERS) {
            return Ok(());
        }
        let (a, field_selector) = attributes(store, verb, kind, namespace, req);
        if let Decision::Deny(why) = self.decide(store, user, &a, field_selector.as_deref()) {
            return Err(forbidden(why));
        }
        if let (Some(_), Kind::Pod) = (user.node(), kind) {
            node_restriction(store, namespace, req)?;
        }
        if let (Some(node), ApiRequest::Token { request, .. }) = (user.node(), req) {
            // a node's token is bound to one of its pods (NodeRestriction)
            let pod = request
                .pointer("/spec/boundObjectRef/name")
                .and_then(Value::as_str);
            let on_node = match (namespace, pod) {
                (Some(ns), Some(pod)) => {
                    StoreGraph(store).pod_node(ns, pod).as_deref() == Some(node)
                }
                _ => false,
            };
            if !on_node {
                return Err(forbidden(format!(
                    "node {node:?} may only ask for tokens bound to its own pods \
                     (spec.boundObjectRef naming a pod on it)"
                )));
            }
        }
        Ok(())
    }

    /// Authorize applying `object` (a manifest's document) for `user`.
    pub fn check_apply(
        &self,
        store: &Store,
        user: &UserInfo,
        object: &ObjectRef,
    ) -> Result<(), ApiError> {
        if user.in_group(rbac::MASTERS) {
            return Ok(());
        }
        let a = Attributes::new(
            apply_verb(store, object),
            object.kind.group(),
            object.kind.resource(),
        )
        .in_namespace(object.namespace.as_deref())
        .named(Some(&object.name));
        match self.decide(store, user, &a, None) {
            Decision::Allow => Ok(()),
            Decision::Deny(why) => Err(forbidden(why)),
        }
    }
}

/// The attributes of one bus API request (by its subject's verb; a body
/// of another verb is refused by the service), and its field selector.
pub fn attributes(
    store: &Store,
    verb: Verb,
    kind: Kind,
    namespace: Option<&str>,
    req: &ApiRequest,
) -> (Attributes, Option<String>) {
    let object_name = |o: &Value| kubus_api::meta::name(o).map(str::to_string);
    let (name, field_selector) = match req {
        ApiRequest::Get { name }
        | ApiRequest::Patch { name, .. }
        | ApiRequest::Delete { name, .. }
        | ApiRequest::Evict { name, .. }
        | ApiRequest::Token { name, .. } => (Some(name.clone()), None),
        ApiRequest::Create { object, .. }
        | ApiRequest::Update { object, .. }
        | ApiRequest::Apply { object } => (object_name(object), None),
        ApiRequest::List { field_selector, .. } | ApiRequest::Watch { field_selector, .. } => {
            (None, field_selector.clone())
        }
    };
    let (k8s_verb, subresource) = match verb {
        Verb::Evict => ("create", "eviction"),
        Verb::Token => ("create", "token"),
        Verb::Apply => match name.as_deref() {
            Some(n) => (apply_verb(store, &ObjectRef::new(kind, namespace, n)), ""),
            None => ("create", ""),
        },
        other => (other.as_str(), ""),
    };
    let a = Attributes::new(k8s_verb, kind.group(), kind.resource())
        .in_namespace(namespace)
        .named(name.as_deref())
        .subresource(subresource);
    (a, field_selector)
}

/// What applying `object` asks of RBAC: a patch of what is there, a
/// create of what is not (as Kubernetes' server-side apply).
fn apply_verb(store: &Store, object: &ObjectRef) -> &'static str {
    if store.get(&object.key()).ok().flatten().is_some() {
        "patch"
    } else {
        "create"
    }
}

/// NodeRestriction: a node's update or patch of a pod keeps its spec.
fn node_restriction(
    store: &Store,
    namespace: Option<&str>,
    req: &ApiRequest,
) -> Result<(), ApiError> {
    let (name, new): (&str, Option<Value>) = match req {
        ApiRequest::Update { object, .. } => (
            kubus_api::meta::name(object).unwrap_or_default(),
            Some(object.clone()),
        ),
        ApiRequest::Patch { name, .. } => (name.as_str(), None),
        _ => return Ok(()),
    };
    let r = ObjectRef::new(Kind::Pod, namespace, name);
    let Some(old) = store
        .get(&r.key())
        .ok()
        .flatten()
        .and_then(|kv| rmp_serde::from_slice::<Value>(&kv.value).ok())
    else {
        return Ok(());
    };
    let new = match (new, req) {
        (Some(n), _) => n,
        (None, ApiRequest::Patch { patch, .. }) => kubus_api::patch::merge_patch(&old, patch),
        _ => return Ok(()),
    };
    match node::spec_kept(&old, &new) {
        None => Ok(()),
        Some(why) => Err(forbidden(format!("pod {r}: {why}"))),
    }
}

/// The Node authorizer's view of the store.
struct StoreGraph<'a>(&'a Store);

impl StoreGraph<'_> {
    fn object(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Option<Value> {
        let kv = self
            .0
            .get(&ObjectRef::new(kind, namespace, name).key())
            .ok()??;
        rmp_serde::from_slice(&kv.value).ok()
    }

    /// The pods of `namespace` bound to `node`.
    fn pods_on(&self, node: &str, namespace: &str) -> Vec<Value> {
        let Ok(r) = self
            .0
            .range(&prefix(Kind::Pod, Some(namespace)), GRAPH_PODS_MAX)
        else {
            return Vec::new();
        };
        r.items
            .iter()
            .filter_map(|kv| rmp_serde::from_slice::<Value>(&kv.value).ok())
            .filter(|p| p["spec"]["nodeName"].as_str() == Some(node))
            .collect()
    }
}

impl node::Graph for StoreGraph<'_> {
    fn pod_node(&self, namespace: &str, name: &str) -> Option<String> {
        let pod = self.object(Kind::Pod, Some(namespace), name)?;
        pod["spec"]["nodeName"].as_str().map(str::to_string)
    }

    fn used_on(&self, node: &str, namespace: &str, resource: &str, name: &str) -> bool {
        self.pods_on(node, namespace)
            .iter()
            .any(|p| node::pod_uses(p, resource).iter().any(|n| n == name))
    }
}
