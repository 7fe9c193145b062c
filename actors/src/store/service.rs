//! The API service: turns one API request or manifest into reads of the
//! store and at most one Raft proposal, and answers with a typed reply.
//!
//! No actix here: the `StoreServer` actor feeds requests in and sends the
//! replies out.

use std::collections::BTreeSet;

use kubus_api::admission::{self, Admitted};
use kubus_api::kind::prefix;
use kubus_api::manifest;
use kubus_api::selector::{FieldSelector, Selector};
use kubus_api::service::{Claim, ServiceNet};
use kubus_api::{lifecycle, meta, ApiError, FieldCause, Kind, ObjectRef};
use kubus_bus::protocol::{
    ApiReply, ApiRequest, ApiResponse, ApplyOutcome, DocumentResult, Fence, ManifestReply,
    ResourceVersionMatch,
};
use kubus_bus::subject::{Verb, ALL_NAMESPACES, CLUSTER_SCOPED};
use kubus_storage::{KeyValue, Op, Precondition, Store, StoreError, Txn, TxnOutcome};

use super::seal::Keyring;
use serde_json::Value;

mod evict;

/// How many times a write retries when a concurrent write moved an object
/// between our read and our proposal.
const WRITE_ATTEMPTS: usize = 3;
/// How many times a create picks its Service's addresses again when
/// concurrent creates took the ones it picked (each attempt is one read
/// and one proposal; a collision needs two creates in one Raft round).
const CLAIM_ATTEMPTS: usize = 10;
/// Most objects one list returns (pagination comes with limit/continue).
pub const LIST_MAX: usize = 100_000;

/// What the API service serves from: the store, and the cluster's
/// service ranges (which the store allocates from).
#[derive(Clone)]
pub struct Api {
    pub store: Store,
    pub net: ServiceNet,
    /// Seals the objects of encrypted resources before they are proposed
    /// and opens them where they are read back.
    pub keys: Keyring,
    /// Issues and verifies ServiceAccount tokens.
    pub tokens: super::tokens::Tokens,
}

impl Api {
    /// Decode a stored object (opened if sealed) and fill in its
    /// resourceVersion.
    pub fn decode(&self, kv: &KeyValue) -> Result<Value, ApiError> {
        decode(&self.keys, kv)
    }
}

impl std::ops::Deref for Api {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

tokio::task_local! {
    /// The fence of the request being served: every proposal the request
    /// makes carries a check of it ([`propose`]).
    static FENCE: Option<Fence>;
}

/// Serve one API request; with a `fence`, every write it makes commits
/// only while that Lease is the one its writer acquired.
pub async fn handle(
    store: &Api,
    verb: Verb,
    kind: Kind,
    ns_token: &str,
    req: ApiRequest,
    fence: Option<Fence>,
) -> ApiReply {
    FENCE
        .scope(fence, serve(store, verb, kind, ns_token, req))
        .await
}

async fn serve(store: &Api, verb: Verb, kind: Kind, ns_token: &str, req: ApiRequest) -> ApiReply {
    let namespace = request_namespace(kind, ns_token, verb)?;
    match (verb, req) {
        (Verb::Get, ApiRequest::Get { name }) => {
            let r = ObjectRef::new(kind, namespace.as_deref(), &name);
            linearize(store).await?;
            match read(store, &r.key())? {
                Some(obj) => Ok(ApiResponse::Object(obj)),
                None => Err(ApiError::not_found(r)),
            }
        }
        (
            Verb::List,
            ApiRequest::List {
                label_selector,
                field_selector,
                limit,
                continue_token,
                resource_version,
                resource_version_match,
            },
        ) => linearize(store).await.and_then(|()| {
            list(
                store,
                kind,
                namespace.as_deref(),
                ListQuery {
                    label_selector,
                    field_selector,
                    limit,
                    continue_token,
                    resource_version,
                    resource_version_match,
                },
            )
        }),
        (
            Verb::Watch,
            ApiRequest::Watch {
                since,
                limit,
                field_selector,
            },
        ) => {
            let fields = FieldSelector::parse_for(kind, field_selector.as_deref().unwrap_or(""))?;
            changes(store, kind, namespace.as_deref(), since, limit, &fields)
        }
        (Verb::Patch, ApiRequest::Patch { name, patch }) => {
            let r = ObjectRef::new(kind, namespace.as_deref(), &name);
            patch_object(store, r, patch).await.map(ApiResponse::Object)
        }
        (Verb::Create, ApiRequest::Create { object, dry_run }) => {
            let admitted = admit_in(object, namespace.as_deref())?;
            create(store, admitted, dry_run)
                .await
                .map(ApiResponse::Object)
        }
        (Verb::Update, ApiRequest::Update { object, dry_run }) => {
            let admitted = admit_in(object, namespace.as_deref())?;
            update(store, admitted, dry_run)
                .await
                .map(ApiResponse::Object)
        }
        (
            Verb::Delete,
            ApiRequest::Delete {
                name,
                resource_version,
                uid,
                grace_period_seconds,
                propagation_policy,
                only_if_absent,
            },
        ) => {
            let r = ObjectRef::new(kind, namespace.as_deref(), &name);
            let preconditions = Preconditions {
                resource_version,
                uid,
                absent: only_if_absent,
            };
            delete(
                store,
                r,
                &preconditions,
                grace_period_seconds,
                propagation_policy,
            )
            .await
            .map(ApiResponse::Object)
        }
        (
            Verb::Evict,
            ApiRequest::Evict {
                name,
                grace_period_seconds,
                resource_version,
                uid,
            },
        ) => {
            let r = ObjectRef::new(kind, namespace.as_deref(), &name);
            let preconditions = Preconditions {
                resource_version,
                uid,
                absent: Vec::new(),
            };
            evict::evict(store, r, &preconditions, grace_period_seconds)
                .await
                .map(ApiResponse::Object)
        }
        (Verb::Token, ApiRequest::Token { name, request }) if kind == Kind::ServiceAccount => {
            let Some(ns) = namespace.as_deref() else {
                return Err(ApiError::bad_request(
                    "a token is for a ServiceAccount in a namespace",
                ));
            };
            // what this peer has applied decides unless it lacks the
            // ServiceAccount or the pod (or has an older pod of that name):
            // only then is it worth a ReadIndex round to read them again.
            // A token issued from a stale read that finds them names their
            // uids, which every verification checks.
            let issued = match store.tokens.issue(store, ns, &name, &request) {
                Err(e)
                    if matches!(
                        e.reason,
                        kubus_api::Reason::NotFound | kubus_api::Reason::Conflict
                    ) =>
                {
                    linearize(store).await?;
                    store.tokens.issue(store, ns, &name, &request)
                }
                other => other,
            };
            issued.map(ApiResponse::Object)
        }
        (Verb::Apply, ApiRequest::Apply { object }) => {
            let admitted = admit_in(object, namespace.as_deref())?;
            let (outcomes, objects) = apply_all(store, vec![admitted], false).await?;
            match (outcomes.into_iter().next(), objects.into_iter().next()) {
                (Some(outcome), Some(object)) => Ok(ApiResponse::Applied { outcome, object }),
                _ => Err(ApiError::internal("apply produced no result")),
            }
        }
        (verb, _) => Err(ApiError::bad_request(format!(
            "the body does not match the verb {:?} of the subject",
            verb.as_str()
        ))),
    }
}

/// The namespace a subject's token names; `None` = all namespaces (list) or
/// cluster-scoped.
pub fn request_namespace(
    kind: Kind,
    ns_token: &str,
    verb: Verb,
) -> Result<Option<String>, ApiError> {
    match (kind.namespaced(), ns_token) {
        (false, CLUSTER_SCOPED) => Ok(None),
        (false, other) => Err(ApiError::bad_request(format!(
            "{kind} is cluster-scoped: use namespace token {CLUSTER_SCOPED:?}, not {other:?}"
        ))),
        (true, ALL_NAMESPACES) if matches!(verb, Verb::List | Verb::Watch) => Ok(None),
        (true, ALL_NAMESPACES) | (true, CLUSTER_SCOPED) => Err(ApiError::bad_request(format!(
            "{kind} is namespaced: {:?} needs a namespace",
            verb.as_str()
        ))),
        (true, ns) => Ok(Some(ns.to_string())),
    }
}

/// Admit an object sent to a namespace's subject: its namespace (defaulted to
/// the subject's) must be that namespace.
fn admit_in(mut object: Value, namespace: Option<&str>) -> Result<Admitted, ApiError> {
    if let (Some(ns), None) = (namespace, meta::namespace(&object)) {
        meta::set_meta(&mut object, "namespace", Value::String(ns.to_string()));
    }
    let admitted = admission::admit(object)?;
    if admitted.object.namespace.as_deref() != namespace {
        return Err(ApiError::bad_request(format!(
            "{} is in namespace {:?} but the request was sent for namespace {:?}",
            admitted.object,
            admitted.object.namespace.as_deref().unwrap_or(""),
            namespace.unwrap_or("")
        )));
    }
    Ok(admitted)
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotLeader { .. } | StoreError::Busy | StoreError::Stopped => {
            ApiError::unavailable(format!("store: {e}"), 500)
        }
        other => ApiError::internal(format!("store: {other}")),
    }
}

/// Decode a stored object (opened with `keys` if sealed) and fill in its
/// resourceVersion.
pub fn decode(keys: &Keyring, kv: &KeyValue) -> Result<Value, ApiError> {
    let bytes = keys
        .open(&kv.key, &kv.value)
        .map_err(|e| ApiError::internal(format!("stored object: {e}")))?;
    let mut obj: Value = rmp_serde::from_slice(&bytes)
        .map_err(|e| ApiError::internal(format!("stored object {} is unreadable: {e}", kv.key)))?;
    meta::set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

fn encode(obj: &Value) -> Result<Vec<u8>, ApiError> {
    rmp_serde::to_vec_named(obj)
        .map_err(|e| ApiError::internal(format!("cannot encode object: {e}")))
}

/// Makes the reads that follow linearizable: waits until this peer has
/// applied everything committed when the request arrived, as confirmed by
/// the leader (Raft ReadIndex). A follower's plain reads may lag behind
/// writes already acknowledged elsewhere; Kubernetes' GET and LIST without
/// a resourceVersion are quorum reads, and so are these. A read that could
/// not be confirmed is safe to retry: `Unavailable`.
async fn linearize(store: &Store) -> Result<(), ApiError> {
    match store.read_index().await {
        Ok(_) => Ok(()),
        Err(e @ StoreError::Timeout) => Err(ApiError::unavailable(format!("store: {e}"), 200)),
        Err(e) => Err(store_error(e)),
    }
}

pub(super) fn read_kv(store: &Api, key: &str) -> Result<Option<KeyValue>, ApiError> {
    store.get(key).map_err(store_error)
}

pub(super) fn read(store: &Api, key: &str) -> Result<Option<Value>, ApiError> {
    read_kv(store, key)?.map(|kv| store.decode(&kv)).transpose()
}

/// What a list asks for.
struct ListQuery {
    label_selector: Option<String>,
    field_selector: Option<String>,
    limit: Option<usize>,
    continue_token: Option<String>,
    resource_version: Option<u64>,
    resource_version_match: Option<ResourceVersionMatch>,
}

/// Where a list page starts: the revision it is read at (`None`: the
/// latest, which the first read then pins) and the first key.
#[derive(Debug, PartialEq, Eq)]
struct ListStart {
    at: Option<u64>,
    cursor: String,
}

/// The start of a list under `prefix` from its query: a continue token
/// pins the revision of the list it continues; `resourceVersion` with
/// `Exact` pins the first page; with `NotOlderThan` (or no match) the
/// latest revision must be at least it (`current`: the store's revision
/// after a linearizable read, so a higher one was never made).
fn list_start(prefix: &str, q: &ListQuery, current: u64) -> Result<ListStart, ApiError> {
    match (
        &q.continue_token,
        q.resource_version,
        q.resource_version_match,
    ) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(ApiError::bad_request(
            "resourceVersion and resourceVersionMatch cannot be given with continue: \
             the token names the revision of the list it continues",
        )),
        (Some(t), None, None) => {
            let token = ContinueToken::parse(t)?;
            if !token.key.starts_with(prefix) {
                return Err(ApiError::bad_request(format!(
                    "continue token {t:?} does not belong to this list"
                )));
            }
            Ok(ListStart {
                at: Some(token.revision),
                cursor: format!("{}\0", token.key),
            })
        }
        (None, None, Some(_)) => Err(ApiError::bad_request(
            "resourceVersionMatch needs a resourceVersion",
        )),
        (None, Some(r), Some(ResourceVersionMatch::Exact)) => Ok(ListStart {
            at: Some(r),
            cursor: prefix.to_string(),
        }),
        (None, Some(r), None | Some(ResourceVersionMatch::NotOlderThan)) if r > current => {
            Err(future_revision(r, current))
        }
        (None, _, _) => Ok(ListStart {
            at: None,
            cursor: prefix.to_string(),
        }),
    }
}

fn future_revision(revision: u64, current: u64) -> ApiError {
    ApiError::bad_request(format!(
        "resourceVersion {revision} is newer than the store's revision {current}: no write has made it"
    ))
}

/// What a `continue` token holds: the revision the list is read at and
/// the last key of the page before. Written `<revision>:<key>`; clients
/// treat it as opaque.
#[derive(Debug, PartialEq, Eq)]
struct ContinueToken {
    revision: u64,
    key: String,
}

impl ContinueToken {
    fn encode(&self) -> String {
        format!("{}:{}", self.revision, self.key)
    }

    fn parse(token: &str) -> Result<ContinueToken, ApiError> {
        let bad = || {
            ApiError::bad_request(format!(
                "continue token {token:?} is not one this store issued"
            ))
        };
        let (revision, key) = token.split_once(':').ok_or_else(bad)?;
        let revision = revision.parse().map_err(|_| bad())?;
        if key.is_empty() {
            return Err(bad());
        }
        Ok(ContinueToken {
            revision,
            key: key.to_string(),
        })
    }
}

fn list(store: &Api, kind: Kind, namespace: Option<&str>, q: ListQuery) -> ApiReply {
    let labels = match q.label_selector.as_deref() {
        Some(s) => Selector::parse(s)
            .map_err(|e| ApiError::bad_request(format!("label selector {s:?}: {e}")))?,
        None => Selector::everything(),
    };
    let fields = FieldSelector::parse_for(kind, q.field_selector.as_deref().unwrap_or(""))?;
    let limit = q.limit.filter(|l| *l > 0).unwrap_or(LIST_MAX).min(LIST_MAX);
    let prefix = prefix(kind, namespace);
    let ListStart { mut at, mut cursor } = list_start(&prefix, &q, store.revision())?;
    let from_token = q.continue_token.is_some();
    // Selectors filter after the read: read pages until `limit` items
    // match or the range ends (a bounded number of reads), all at the
    // revision of the first.
    let mut items = Vec::new();
    let mut last_key: Option<String> = None;
    let mut more = false;
    let mut bytes = 0;
    for _ in 0..LIST_READS_MAX {
        let page = match at {
            Some(r) => store.range_at(&prefix, &cursor, limit, r),
            None => store.range_from(&prefix, &cursor, limit),
        }
        .map_err(|e| list_error(e, at, from_token))?;
        at = Some(page.revision);
        for kv in &page.items {
            if items.len() == limit || bytes >= REPLY_BUDGET_BYTES {
                more = true;
                break;
            }
            last_key = Some(kv.key.clone());
            let obj = store.decode(kv)?;
            if labels.matches(&meta::labels(&obj)) && fields.matches(kind, &obj) {
                bytes += kv.value.len();
                items.push(obj);
            }
        }
        if more || !page.more {
            break;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        match &last_key {
            Some(k) => cursor = format!("{k}\0"),
            None => break,
        }
    }
    let revision = at.unwrap_or(0);
    Ok(ApiResponse::List {
        items,
        revision,
        continue_token: match last_key {
            Some(key) if more => Some(ContinueToken { revision, key }.encode()),
            _ => None,
        },
    })
}

/// A store error of a list read at `at` as the client should see it.
fn list_error(e: StoreError, at: Option<u64>, from_token: bool) -> ApiError {
    let at = at.map_or_else(|| "the latest".to_string(), |r| r.to_string());
    match e {
        StoreError::Compacted { compacted_to } if from_token => ApiError::expired(format!(
            "the continue token's revision {at} is older than the oldest revision kept \
             ({compacted_to}): start the list again without continue"
        )),
        StoreError::Compacted { compacted_to } => ApiError::expired(format!(
            "resourceVersion {at} is older than the oldest revision kept ({compacted_to}): \
             list at {compacted_to} or later, or at the latest"
        )),
        StoreError::FutureRevision { revision, current } => future_revision(revision, current),
        e @ StoreError::HistoryReadLimit { .. } => ApiError::too_large(format!("store: {e}")),
        e => store_error(e),
    }
}

/// Replies stay under NATS' 1 MiB payload: a list page or a batch of
/// changes stops growing at this many bytes of stored objects (MessagePack;
/// the JSON form is larger, hence the margin).
const REPLY_BUDGET_BYTES: usize = 512 * 1024;

/// Most store reads one list makes while selectors filter.
const LIST_READS_MAX: usize = 64;
/// Most history changes one watch call returns.
const CHANGES_PER_CALL: usize = 5_000;

/// The changes of one kind (in one namespace, or all) after `since`.
fn changes(
    store: &Api,
    kind: Kind,
    namespace: Option<&str>,
    since: u64,
    limit: Option<usize>,
    fields: &FieldSelector,
) -> ApiReply {
    let limit = limit
        .filter(|l| *l > 0)
        .unwrap_or(CHANGES_PER_CALL)
        .min(CHANGES_PER_CALL);
    let head = store.revision();
    let batch = match store.changes_since(since, limit) {
        Ok(b) => b,
        Err(StoreError::Compacted { compacted_to }) => {
            return Err(ApiError::compacted(
                format!(
                    "revision {since} is older than the history kept (compacted to {compacted_to}); relist"
                ),
                compacted_to,
            ))
        }
        Err(e) => return Err(store_error(e)),
    };
    // Whole revisions only, and no more than the reply budget (the first
    // revision always goes, however large, so a watcher always progresses).
    let cut = budget_cut(&batch, REPLY_BUDGET_BYTES);
    let more = batch.len() >= limit || cut < batch.len();
    let batch = &batch[..cut];
    let through = if more {
        batch.last().map_or(since, |c| c.revision)
    } else {
        head.max(batch.last().map_or(since, |c| c.revision))
    };
    let prefix = prefix(kind, namespace);
    let mut events = Vec::new();
    for change in batch.iter().filter(|c| c.key.starts_with(&prefix)) {
        let event = super::change_event(&store.keys, change)?.1;
        if fields.matches(kind, &event.object) {
            events.push(event);
        }
    }
    Ok(ApiResponse::Changes {
        events,
        through,
        more,
    })
}

/// How many of `changes` fit in `budget` bytes without splitting a
/// revision; at least the whole first revision.
fn budget_cut(changes: &[kubus_storage::Change], budget: usize) -> usize {
    let sizes: Vec<(u64, usize)> = changes
        .iter()
        .map(|c| (c.revision, c.kv.value.len() + c.key.len()))
        .collect();
    cut_at_budget(&sizes, budget)
}

/// Over (revision, size) pairs in order: the length of the longest prefix of
/// whole revisions within `budget`, but at least the first revision (pure).
fn cut_at_budget(sizes: &[(u64, usize)], budget: usize) -> usize {
    let mut bytes = 0;
    let mut last_start = 0;
    for (i, (revision, size)) in sizes.iter().enumerate() {
        if i > 0 && sizes[i - 1].0 != *revision {
            if bytes > budget {
                // drop the revision that overflowed, unless it is the first
                return if last_start > 0 { last_start } else { i };
            }
            last_start = i;
        }
        bytes += size;
    }
    if bytes > budget && last_start > 0 {
        last_start
    } else {
        sizes.len()
    }
}

/// Apply a JSON merge patch to one object, compare-and-swap on the revision
/// it was read at.
async fn patch_object(store: &Api, r: ObjectRef, patch: Value) -> Result<Value, ApiError> {
    for _ in 0..WRITE_ATTEMPTS {
        let Some(kv) = read_kv(store, &r.key())? else {
            return Err(ApiError::not_found(r));
        };
        let current = store.decode(&kv)?;
        let mut patched = kubus_api::patch::merge_patch(&current, &patch);
        lifecycle::strip_revision(&mut patched);
        let admitted = admit_in(patched, r.namespace.as_deref())?;
        if admitted.object != r {
            return Err(ApiError::invalid(
                Some(r),
                vec![FieldCause::new(
                    "metadata.name",
                    "a patch cannot rename or move an object",
                )],
            ));
        }
        if let Some(obj) =
            replace(store, &r, &current, kv.mod_revision, admitted.value, false).await?
        {
            return Ok(obj);
        }
    }
    Err(ApiError::conflict(r, "the object kept changing; try again"))
}

fn now() -> String {
    lifecycle::format_time(jiff::Timestamp::now())
}

/// Five lowercase alphanumerics, as Kubernetes appends to generateName.
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let id = uuid::Uuid::new_v4();
    id.as_bytes()[..5]
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// The namespaces every cluster has, created by the store when it starts;
/// an object created in one of them before that is not refused.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Kubernetes' NamespaceLifecycle admission: nothing new in a namespace
/// that does not exist or is being deleted.
fn check_namespace(store: &Api, r: &ObjectRef, namespace: &str) -> Result<(), ApiError> {
    let ns = ObjectRef::new(Kind::Namespace, None, namespace);
    match read(store, &ns.key())? {
        None if SYSTEM_NAMESPACES.contains(&namespace) => Ok(()),
        None => Err(ApiError {
            message: format!(
                "cannot create {r}: namespaces \"{namespace}\" not found (create the namespace first)"
            ),
            object: Some(ns),
            ..ApiError::new(kubus_api::Reason::NotFound, "")
        }),
        Some(obj) if lifecycle::is_marked(&obj) => Err(ApiError {
            message: format!(
                "{r} is forbidden: unable to create new content in namespace {namespace} \
                 because it is being terminated"
            ),
            object: Some(r.clone()),
            ..ApiError::new(kubus_api::Reason::Forbidden, "")
        }),
        Some(_) => Ok(()),
    }
}

/// Kubernetes' Priority admission: a new pod's `spec.priority` from its
/// PriorityClass (see [`kubus_api::priority::resolve`]).
fn resolve_priority(store: &Api, r: &ObjectRef, obj: &mut Value) -> Result<(), ApiError> {
    if r.kind != Kind::Pod {
        return Ok(());
    }
    let classes_prefix = prefix(Kind::PriorityClass, None);
    let page = store
        .range_from(&classes_prefix, &classes_prefix, PRIORITY_CLASSES_MAX)
        .map_err(store_error)?;
    let classes = page
        .items
        .iter()
        .map(|kv| store.decode(kv))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&Value> = classes.iter().collect();
    kubus_api::priority::resolve(obj, &refs).map_err(|e| ApiError {
        message: format!("{r} is forbidden: {e}"),
        object: Some(r.clone()),
        ..ApiError::new(kubus_api::Reason::Forbidden, "")
    })
}

/// The most PriorityClasses a pod's admission reads.
const PRIORITY_CLASSES_MAX: usize = 1000;

/// Propose `txn`; under a fence, with a check in the same Raft entry
/// that the writer's Lease is still the one it acquired.
async fn propose(store: &Api, mut txn: Txn) -> Result<TxnOutcome, ApiError> {
    for op in &mut txn.ops {
        if let Op::Put { key, value, .. } = op {
            *value = store
                .keys
                .seal(key, std::mem::take(value))
                .map_err(|e| ApiError::internal(format!("store: {e}")))?;
        }
    }
    let fence = FENCE.try_with(Clone::clone).ok().flatten();
    let Some(fence) = fence else {
        return store
            .propose_in(txn, kubus_bus::trace::current())
            .await
            .map_err(store_error);
    };
    let lease = ObjectRef::new(Kind::Lease, Some(&fence.namespace), &fence.name);
    txn.ops.push(Op::Check {
        key: lease.key(),
        expect: Precondition::CreateRevision(fence.create_revision),
    });
    let check = txn.ops.len() - 1;
    match store
        .propose_in(txn, kubus_bus::trace::current())
        .await
        .map_err(store_error)?
    {
        TxnOutcome::Failed { op_index, .. } if op_index == check => Err(fenced(&lease, &fence)),
        TxnOutcome::Committed { revision, mut kvs } => {
            kvs.truncate(check);
            Ok(TxnOutcome::Committed { revision, kvs })
        }
        failed => Ok(failed),
    }
}

/// The error of a write whose writer no longer holds its Lease.
pub fn fenced(lease: &ObjectRef, fence: &Fence) -> ApiError {
    ApiError {
        object: Some(lease.clone()),
        ..ApiError::new(
            kubus_api::Reason::Forbidden,
            format!(
                "fenced: the writer no longer holds {lease} as acquired at revision {} \
                 (taken over or gone); the write was refused",
                fence.create_revision
            ),
        )
    }
}

/// Creates the object; `dry_run`: answers what would be stored (names
/// generated, defaults and a Service's addresses filled in) and writes
/// nothing.
async fn create(store: &Api, admitted: Admitted, dry_run: bool) -> Result<Value, ApiError> {
    let prepared = lifecycle::prepare_create(
        admitted.value,
        &uuid::Uuid::new_v4().to_string(),
        &now(),
        &name_suffix(),
    );
    // A generated name is only known now.
    let r = meta::object_ref(&prepared).unwrap_or(admitted.object);
    if let Some(ns) = r.namespace.as_deref() {
        check_namespace(store, &r, ns)?;
    }
    let mut prepared = prepared;
    resolve_priority(store, &r, &mut prepared)?;
    for _ in 0..CLAIM_ATTEMPTS {
        let mut obj = prepared.clone();
        let claims = allocate(store, &r, &mut obj, None, &BTreeSet::new())?;
        if dry_run {
            return match read_kv(store, &r.key())? {
                Some(_) => Err(ApiError::already_exists(r)),
                None => Ok(obj),
            };
        }
        let mut ops = vec![Op::Put {
            key: r.key(),
            value: encode(&obj)?,
            expect: Precondition::Absent,
        }];
        ops.extend(claim_ops(&r, &claims, &BTreeSet::new())?);
        match propose(store, Txn { ops }).await? {
            TxnOutcome::Committed { revision, .. } => {
                meta::set_resource_version(&mut obj, revision);
                return Ok(obj);
            }
            TxnOutcome::Failed { op_index: 0, .. } => return Err(ApiError::already_exists(r)),
            // another Service took a picked address meanwhile: pick again
            TxnOutcome::Failed { .. } => continue,
        }
    }
    Err(ApiError::conflict(
        r,
        "service addresses kept being taken; try again",
    ))
}

/// Fill in a Service's allocated fields (see [`kubus_api::service::assign`])
/// and return the claims it holds afterwards; other kinds hold none.
/// `taken` are claims this transaction already makes for other objects.
fn allocate(
    store: &Api,
    r: &ObjectRef,
    obj: &mut Value,
    current: Option<&Value>,
    taken: &BTreeSet<Claim>,
) -> Result<BTreeSet<Claim>, ApiError> {
    if r.kind != Kind::Service {
        return Ok(BTreeSet::new());
    }
    let mut held = |c: &Claim| -> Option<String> {
        if taken.contains(c) {
            return Some("another Service in this request".into());
        }
        match read(store, &c.key()) {
            Ok(None) => None,
            Ok(Some(v)) => Some(format!(
                "Service {}",
                v["service"].as_str().unwrap_or("(unknown)")
            )),
            Err(e) => Some(format!("unknown: the store could not be read ({e})")),
        }
    };
    let mut random = || uuid::Uuid::new_v4().as_u128() as u32;
    kubus_api::service::assign(obj, current, &store.net, &mut held, &mut random)
        .map_err(|causes| ApiError::invalid(Some(r.clone()), causes))?;
    Ok(kubus_api::service::claims(obj))
}

/// The ops that take `now`'s claims not in `before` (each only if no one
/// holds it) and free `before`'s not in `now`.
fn claim_ops(
    r: &ObjectRef,
    now: &BTreeSet<Claim>,
    before: &BTreeSet<Claim>,
) -> Result<Vec<Op>, ApiError> {
    let holder = kubus_api::service::Claim::holder_value(
        r.namespace.as_deref().unwrap_or_default(),
        &r.name,
    );
    let value = encode(&holder)?;
    let mut ops: Vec<Op> = now
        .difference(before)
        .map(|c| Op::Put {
            key: c.key(),
            value: value.clone(),
            expect: Precondition::Absent,
        })
        .collect();
    ops.extend(before.difference(now).map(|c| Op::Delete {
        key: c.key(),
        expect: Precondition::None,
    }));
    Ok(ops)
}

async fn update(store: &Api, admitted: Admitted, dry_run: bool) -> Result<Value, ApiError> {
    let r = admitted.object.clone();
    let wanted_rv = meta::resource_version(&admitted.value);
    let Some(current_kv) = read_kv(store, &r.key())? else {
        return Err(ApiError::not_found(r));
    };
    if let Some(rv) = wanted_rv {
        if rv != current_kv.mod_revision {
            return Err(ApiError::conflict(
                r,
                format!(
                    "the object has been modified (resourceVersion {rv} was sent, {} is current)",
                    current_kv.mod_revision
                ),
            ));
        }
    }
    let current = store.decode(&current_kv)?;
    replace(
        store,
        &r,
        &current,
        current_kv.mod_revision,
        admitted.value,
        dry_run,
    )
    .await?
    .ok_or_else(|| ApiError::conflict(r, "the object was modified concurrently"))
}

/// Replace `current` (at `mod_revision`) with `new`, after the update rules:
/// `Ok(None)` when the object moved on meanwhile. `dry_run`: the object
/// that would be stored, nothing written.
async fn replace(
    store: &Api,
    r: &ObjectRef,
    current: &Value,
    mod_revision: u64,
    new: Value,
    dry_run: bool,
) -> Result<Option<Value>, ApiError> {
    let causes = admission::validate_update(r.kind, current, &new);
    if !causes.is_empty() {
        return Err(ApiError::invalid(Some(r.clone()), causes));
    }
    let mut obj = lifecycle::prepare_update(new, current);
    let before = kubus_api::service::claims(current);
    // the last finalizer of a marked object taken away: it goes
    let mut ops = if lifecycle::removed_by_update(r.kind, &obj) {
        let mut ops = vec![Op::Delete {
            key: r.key(),
            expect: Precondition::ModRevision(mod_revision),
        }];
        if r.kind == Kind::Service {
            ops.extend(claim_ops(r, &BTreeSet::new(), &before)?);
        }
        ops
    } else {
        let claims = allocate(store, r, &mut obj, Some(current), &BTreeSet::new())?;
        let mut ops = vec![Op::Put {
            key: r.key(),
            value: encode(&obj)?,
            expect: Precondition::ModRevision(mod_revision),
        }];
        if r.kind == Kind::Service {
            ops.extend(claim_ops(r, &claims, &before)?);
        }
        ops
    };
    if dry_run {
        meta::set_resource_version(&mut obj, mod_revision);
        return Ok(Some(obj));
    }
    let txn = Txn {
        ops: std::mem::take(&mut ops),
    };
    match propose(store, txn).await? {
        TxnOutcome::Committed { revision, .. } => {
            meta::set_resource_version(&mut obj, revision);
            Ok(Some(obj))
        }
        TxnOutcome::Failed { .. } => Ok(None),
    }
}

/// What a delete requires of the object it removes (Kubernetes'
/// `Preconditions`).
#[derive(Debug, Default)]
struct Preconditions {
    resource_version: Option<u64>,
    uid: Option<String>,
    /// Objects that must not exist, checked in the delete's transaction.
    absent: Vec<ObjectRef>,
}

impl Preconditions {
    /// Why `current` (at `mod_revision`) is not the object the request
    /// means, if it is not.
    fn violated(&self, current: &Value, mod_revision: u64) -> Option<String> {
        if let Some(rv) = self.resource_version.filter(|rv| *rv != mod_revision) {
            return Some(format!(
                "precondition failed: resourceVersion {rv} was sent, {mod_revision} is current"
            ));
        }
        let have = meta::uid(current).unwrap_or_default();
        match &self.uid {
            Some(want) if want != have => Some(format!(
                "precondition failed: uid {want:?} was sent, the object's is {have:?} \
                 (it was deleted and created again)"
            )),
            _ => None,
        }
    }
}

/// Delete one object, as [`lifecycle::plan_deletion`] decides: remove it,
/// or mark a pod terminating (one compare-and-swap write), or leave a
/// terminating pod as it is. The answer is the object removed, or as it is
/// now.
async fn delete(
    store: &Api,
    r: ObjectRef,
    preconditions: &Preconditions,
    grace_period_seconds: Option<i64>,
    propagation: Option<lifecycle::Propagation>,
) -> Result<Value, ApiError> {
    if r.kind == Kind::Namespace && SYSTEM_NAMESPACES[..3].contains(&r.name.as_str()) {
        // as Kubernetes' NamespaceLifecycle: these always exist
        return Err(ApiError {
            message: format!("{r} is forbidden: this namespace may not be deleted"),
            object: Some(r),
            ..ApiError::new(kubus_api::Reason::Forbidden, "")
        });
    }
    for _ in 0..WRITE_ATTEMPTS {
        let Some(kv) = read_kv(store, &r.key())? else {
            return Err(ApiError::not_found(r));
        };
        let current = store.decode(&kv)?;
        if let Some(why) = preconditions.violated(&current, kv.mod_revision) {
            return Err(ApiError::conflict(r, why));
        }
        let plan = lifecycle::plan_deletion_with(
            r.kind,
            &current,
            grace_period_seconds,
            propagation,
            jiff::Timestamp::now(),
        );
        let (op, mut answer) = match plan {
            lifecycle::Deletion::Pending => return Ok(current),
            lifecycle::Deletion::Remove => (
                Op::Delete {
                    key: r.key(),
                    expect: Precondition::ModRevision(kv.mod_revision),
                },
                current,
            ),
            lifecycle::Deletion::Terminate(obj) => (
                Op::Put {
                    key: r.key(),
                    value: encode(&obj)?,
                    expect: Precondition::ModRevision(kv.mod_revision),
                },
                obj,
            ),
        };
        let marked = matches!(op, Op::Put { .. });
        let removed = !marked;
        let mut ops = vec![op];
        ops.extend(preconditions.absent.iter().map(|a| Op::Check {
            key: a.key(),
            expect: Precondition::Absent,
        }));
        // a removed Service frees its addresses in the same entry (after
        // the checks, whose op indexes the error below names)
        if removed && r.kind == Kind::Service {
            let held = kubus_api::service::claims(&answer);
            ops.extend(claim_ops(&r, &BTreeSet::new(), &held)?);
        }
        match propose(store, Txn { ops }).await? {
            TxnOutcome::Committed { revision, .. } => {
                if marked {
                    meta::set_resource_version(&mut answer, revision);
                }
                return Ok(answer);
            }
            // the object moved on: a resourceVersion precondition now
            // fails; otherwise decide again on what it is now
            TxnOutcome::Failed { op_index, .. }
                if op_index > 0 && op_index <= preconditions.absent.len() =>
            {
                let present = preconditions.absent.get(op_index - 1);
                return Err(ApiError::conflict(
                    r,
                    format!(
                        "precondition failed: {} exists",
                        present.map_or_else(|| "an object".to_string(), ToString::to_string)
                    ),
                ));
            }
            TxnOutcome::Failed { .. } if preconditions.resource_version.is_none() => continue,
            TxnOutcome::Failed { .. } => {
                return Err(ApiError::conflict(
                    r,
                    "the object was modified concurrently",
                ))
            }
        }
    }
    Err(ApiError::conflict(r, "the object kept changing; try again"))
}

/// Apply many admitted objects in one Raft entry: all are written, or none.
/// A dry run decides the same outcomes and writes nothing.
async fn apply_all(
    store: &Api,
    admitted: Vec<Admitted>,
    dry_run: bool,
) -> Result<(Vec<ApplyOutcome>, Vec<Value>), ApiError> {
    'attempt: for _ in 0..WRITE_ATTEMPTS {
        let mut ops = Vec::new();
        let mut outcomes = Vec::new();
        let mut objects = Vec::new();
        // claims taken by Services earlier in this entry
        let mut taken = BTreeSet::new();
        for a in &admitted {
            let key = a.object.key();
            match read_kv(store, &key)? {
                None => {
                    let created_here = |ns: &str| {
                        admitted
                            .iter()
                            .any(|n| n.object.kind == Kind::Namespace && n.object.name == ns)
                    };
                    if let Some(ns) = a.object.namespace.as_deref().filter(|ns| !created_here(ns)) {
                        check_namespace(store, &a.object, ns)?;
                    }
                    // the manifest as applied is kept, as kubectl does, so
                    // a later apply knows which fields it owns
                    let mut obj = lifecycle::prepare_create(
                        kubus_api::patch::with_last_applied(&a.value),
                        &uuid::Uuid::new_v4().to_string(),
                        &now(),
                        &name_suffix(),
                    );
                    let r = meta::object_ref(&obj).unwrap_or_else(|| a.object.clone());
                    resolve_priority(store, &r, &mut obj)?;
                    let claims = allocate(store, &r, &mut obj, None, &taken)?;
                    ops.push(Op::Put {
                        key: r.key(),
                        value: encode(&obj)?,
                        expect: Precondition::Absent,
                    });
                    ops.extend(claim_ops(&r, &claims, &BTreeSet::new())?);
                    taken.extend(claims);
                    outcomes.push(ApplyOutcome::Created);
                    objects.push(obj);
                }
                Some(kv) => {
                    let current = store.decode(&kv)?;
                    // three-way: the manifest's fields win, fields the last
                    // apply set and this one dropped go, fields others set
                    // (status, nodeName, clusterIP…) stay
                    let manifest = kubus_api::patch::with_last_applied(&a.value);
                    let last = kubus_api::patch::last_applied(&current);
                    let merged =
                        kubus_api::patch::three_way_merge(last.as_ref(), &manifest, &current);
                    let mut merged = lifecycle::prepare_update(merged, &current);
                    let before = kubus_api::service::claims(&current);
                    let claims = allocate(store, &a.object, &mut merged, Some(&current), &taken)?;
                    if lifecycle::same_state(&merged, &current) {
                        outcomes.push(ApplyOutcome::Unchanged);
                        objects.push(current);
                        continue;
                    }
                    let causes = admission::validate_update(a.object.kind, &current, &merged);
                    if !causes.is_empty() {
                        return Err(ApiError::invalid(Some(a.object.clone()), causes));
                    }
                    ops.push(Op::Put {
                        key,
                        value: encode(&merged)?,
                        expect: Precondition::ModRevision(kv.mod_revision),
                    });
                    ops.extend(claim_ops(&a.object, &claims, &before)?);
                    taken.extend(claims);
                    outcomes.push(ApplyOutcome::Configured);
                    objects.push(merged);
                }
            }
        }
        if ops.is_empty() || dry_run {
            return Ok((outcomes, objects));
        }
        match propose(store, Txn { ops }).await? {
            TxnOutcome::Committed { revision, .. } => {
                for (obj, outcome) in objects.iter_mut().zip(&outcomes) {
                    if *outcome != ApplyOutcome::Unchanged {
                        meta::set_resource_version(obj, revision);
                    }
                }
                return Ok((outcomes, objects));
            }
            TxnOutcome::Failed { .. } => continue 'attempt,
        }
    }
    Err(ApiError::unavailable(
        "objects kept changing during apply; try again",
        200,
    ))
}

/// Serve one manifest request: parse, admit every document, and apply all of
/// them in one Raft entry — or none, when any document is refused.
/// Apply a manifest's documents, each of which `allow` must let the
/// requester apply.
pub async fn apply_manifest(
    store: &Api,
    text: &[u8],
    dry_run: bool,
    allow: &(dyn Fn(&ObjectRef) -> Result<(), ApiError> + Sync),
) -> ManifestReply {
    let refused = |error: ApiError| ManifestReply {
        applied: false,
        documents: Vec::new(),
        error: Some(error),
        dry_run,
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return refused(ApiError::bad_request("manifest is not UTF-8 text"));
    };
    let docs = match manifest::parse_documents(text) {
        Ok(d) => d,
        Err(e) => return refused(ApiError::bad_request(e.to_string())),
    };
    if docs.is_empty() {
        return refused(ApiError::bad_request("manifest holds no objects"));
    }
    let mut results = Vec::with_capacity(docs.len());
    let mut admitted = Vec::with_capacity(docs.len());
    let mut seen = BTreeSet::new();
    for doc in docs {
        let label = doc.describe();
        match admission::admit(doc.value) {
            Ok(a) if !seen.insert(a.object.key()) => {
                let r = a.object.clone();
                results.push(DocumentResult {
                    document: label,
                    object: Some(r.clone()),
                    result: Err(ApiError::invalid(
                        Some(r),
                        vec![FieldCause::new(
                            "metadata.name",
                            "names an object an earlier document of this manifest already names",
                        )],
                    )),
                });
            }
            Ok(a) => match allow(&a.object) {
                Ok(()) => {
                    results.push(DocumentResult {
                        document: label,
                        object: Some(a.object.clone()),
                        result: Ok(ApplyOutcome::Unchanged),
                    });
                    admitted.push(a);
                }
                Err(e) => results.push(DocumentResult {
                    document: label,
                    object: Some(a.object.clone()),
                    result: Err(e),
                }),
            },
            Err(e) => results.push(DocumentResult {
                document: label,
                object: e.object.clone(),
                result: Err(e),
            }),
        }
    }
    let faulty: Vec<String> = results
        .iter()
        .filter(|r| r.result.is_err())
        .map(|r| r.document.clone())
        .collect();
    if !faulty.is_empty() {
        let why = format!(
            "not applied: the manifest is applied all or nothing, and {} refused",
            faulty.join(", ")
        );
        for r in &mut results {
            if r.result.is_ok() {
                r.result = Err(ApiError::bad_request(why.clone()));
            }
        }
        return ManifestReply {
            applied: false,
            documents: results,
            error: None,
            dry_run,
        };
    }
    match apply_all(store, admitted, dry_run).await {
        Ok((outcomes, _)) => {
            for (r, outcome) in results.iter_mut().zip(outcomes) {
                r.result = Ok(outcome);
            }
            ManifestReply {
                applied: true,
                documents: results,
                error: None,
                dry_run,
            }
        }
        Err(e) => refused(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(token: Option<&str>, rv: Option<u64>, m: Option<ResourceVersionMatch>) -> ListQuery {
        ListQuery {
            label_selector: None,
            field_selector: None,
            limit: None,
            continue_token: token.map(str::to_string),
            resource_version: rv,
            resource_version_match: m,
        }
    }

    /// (case, token, resourceVersion, match, store revision, want: Ok((at, cursor)) or Err(reason))
    #[test]
    fn list_start_table() {
        use kubus_api::Reason;
        use ResourceVersionMatch::{Exact, NotOlderThan};
        let p = "/configmaps/default/";
        type Case = (
            &'static str,
            Option<&'static str>,
            Option<u64>,
            Option<ResourceVersionMatch>,
            Result<(Option<u64>, &'static str), Reason>,
        );
        let cases: Vec<Case> = vec![
            ("latest", None, None, None, Ok((None, p))),
            ("exact", None, Some(7), Some(Exact), Ok((Some(7), p))),
            (
                "exact, in the future",
                None,
                Some(50),
                Some(Exact),
                Ok((Some(50), p)),
            ),
            (
                "not older than",
                None,
                Some(7),
                Some(NotOlderThan),
                Ok((None, p)),
            ),
            (
                "no match is not-older-than",
                None,
                Some(10),
                None,
                Ok((None, p)),
            ),
            (
                "not older than the future",
                None,
                Some(11),
                None,
                Err(Reason::BadRequest),
            ),
            (
                "match without a version",
                None,
                None,
                Some(Exact),
                Err(Reason::BadRequest),
            ),
            (
                "a token pins its revision",
                Some("5:/configmaps/default/b"),
                None,
                None,
                Ok((Some(5), "/configmaps/default/b\0")),
            ),
            (
                "token and version",
                Some("5:/configmaps/default/b"),
                Some(5),
                None,
                Err(Reason::BadRequest),
            ),
            (
                "token and match",
                Some("5:/configmaps/default/b"),
                None,
                Some(Exact),
                Err(Reason::BadRequest),
            ),
            (
                "token of another list",
                Some("5:/pods/default/b"),
                None,
                None,
                Err(Reason::BadRequest),
            ),
            (
                "a bare key (no revision)",
                Some("/configmaps/default/b"),
                None,
                None,
                Err(Reason::BadRequest),
            ),
            (
                "a bad revision",
                Some("x:/configmaps/default/b"),
                None,
                None,
                Err(Reason::BadRequest),
            ),
            ("no key", Some("5:"), None, None, Err(Reason::BadRequest)),
        ];
        for (name, token, rv, m, want) in cases {
            let got = list_start(p, &query(token, rv, m), 10)
                .map(|s| (s.at, s.cursor))
                .map_err(|e| e.reason);
            let want = want.map(|(at, cursor)| (at, cursor.to_string()));
            assert_eq!(got, want, "{name}");
        }
        let t = ContinueToken {
            revision: 42,
            key: "/a/b:c".into(),
        };
        assert_eq!(ContinueToken::parse(&t.encode()), Ok(t));
    }

    async fn put(store: &Store, key: &str, labels: Value) -> u64 {
        let obj = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": key, "namespace": "default", "labels": labels}});
        let txn = Txn {
            ops: vec![Op::Put {
                key: format!("/configmaps/default/{key}"),
                value: encode(&obj).expect("encode"),
                expect: Precondition::None,
            }],
        };
        match store.propose(txn).await.expect("propose") {
            TxnOutcome::Committed { revision, .. } => revision,
            other => panic!("{other:?}"),
        }
    }

    async fn list_req(
        store: &Api,
        selector: Option<&str>,
        limit: usize,
        token: Option<String>,
        exact: Option<u64>,
    ) -> ApiReply {
        let req = ApiRequest::List {
            label_selector: selector.map(str::to_string),
            field_selector: None,
            limit: Some(limit),
            continue_token: token,
            resource_version: exact,
            resource_version_match: exact.map(|_| ResourceVersionMatch::Exact),
        };
        handle(store, Verb::List, Kind::ConfigMap, "default", req, None).await
    }

    fn names(items: &[Value]) -> Vec<String> {
        items
            .iter()
            .map(|o| meta::name(o).unwrap_or_default().to_string())
            .collect()
    }

    /// Issue 3 through the API service on a real store: a list at a past
    /// revision with a label selector, its pages pinned by their tokens
    /// while writes go on, unpinned lists pinned from their first page,
    /// and `Expired` (naming the oldest revision kept) once compacted.
    #[tokio::test]
    async fn lists_at_a_revision_are_pinned_and_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = kubus_storage::StoreConfig::single(dir.path().to_path_buf());
        cfg.fsync = false;
        cfg.history_retention_revisions = 20;
        let (store, _changes) = Store::open(cfg, Box::new(kubus_storage::NoPeers)).expect("open");
        let store = Api {
            store,
            net: ServiceNet::default(),
            keys: Default::default(),
            tokens: Default::default(),
        };
        for name in ["a", "b", "c", "d", "e"] {
            put(&store, name, serde_json::json!({"tier": "web"})).await;
        }
        let at = put(&store, "f", serde_json::json!({"tier": "db"})).await; // 6
                                                                            // Later: a and c leave tier=web, g joins it.
        put(&store, "a", serde_json::json!({"tier": "db"})).await;
        put(&store, "c", serde_json::json!({})).await;
        put(&store, "g", serde_json::json!({"tier": "web"})).await;

        let mut got = Vec::new();
        let mut token = None;
        let mut exact = Some(at);
        for page in 0..10 {
            let Ok(ApiResponse::List {
                items,
                revision,
                continue_token,
            }) = list_req(&store, Some("tier=web"), 2, token.clone(), exact).await
            else {
                panic!("page {page}");
            };
            assert_eq!(revision, at);
            got.extend(items);
            if page == 0 {
                put(&store, "b", serde_json::json!({"tier": "gone"})).await;
                put(&store, "h", serde_json::json!({"tier": "web"})).await;
            }
            exact = None;
            token = continue_token;
            if token.is_none() {
                break;
            }
        }
        assert_eq!(names(&got), ["a", "b", "c", "d", "e"]);
        assert_eq!(got[0]["metadata"]["resourceVersion"], "1", "as it was then");

        // Without a revision the first page pins the rest.
        let Ok(ApiResponse::List {
            items,
            revision: now,
            continue_token: Some(t),
        }) = list_req(&store, Some("tier=web"), 1, None, None).await
        else {
            panic!("first page");
        };
        assert_eq!(names(&items), ["d"]);
        put(&store, "e", serde_json::json!({})).await;
        let Ok(ApiResponse::List {
            items, revision, ..
        }) = list_req(&store, Some("tier=web"), 10, Some(t), None).await
        else {
            panic!("second page");
        };
        assert_eq!(
            (names(&items), revision),
            (vec!["e".into(), "g".into(), "h".into()], now)
        );

        // A future revision is refused; past the count bound, Expired.
        let err = list_req(&store, None, 10, None, Some(store.revision() + 1))
            .await
            .expect_err("future");
        assert_eq!(err.reason, kubus_api::Reason::BadRequest, "{}", err.message);
        for i in 0..20 {
            put(&store, &format!("z{i}"), serde_json::json!({})).await;
        }
        let oldest = store.status().history_compacted_to;
        assert!(oldest > at);
        let err = list_req(&store, None, 10, None, Some(at))
            .await
            .expect_err("expired");
        assert_eq!(err.reason, kubus_api::Reason::Expired);
        assert!(
            err.message.contains(&format!("({oldest})")),
            "{}",
            err.message
        );
        let stale = ContinueToken {
            revision: at,
            key: "/configmaps/default/a".into(),
        };
        let err = list_req(&store, None, 10, Some(stale.encode()), None)
            .await
            .expect_err("expired token");
        assert_eq!(err.reason, kubus_api::Reason::Expired, "{}", err.message);
        assert!(list_req(&store, None, 10, None, Some(oldest)).await.is_ok());
    }

    async fn open_store(dir: &std::path::Path) -> Api {
        let mut cfg = kubus_storage::StoreConfig::single(dir.to_path_buf());
        cfg.fsync = false;
        let (store, _changes) = Store::open(cfg, Box::new(kubus_storage::NoPeers)).expect("open");
        Api {
            store,
            net: ServiceNet::default(),
            keys: Default::default(),
            tokens: Default::default(),
        }
    }

    fn delete_req(name: &str, uid: Option<&str>, grace: Option<i64>) -> ApiRequest {
        ApiRequest::Delete {
            name: name.into(),
            resource_version: None,
            uid: uid.map(str::to_string),
            grace_period_seconds: grace,
            propagation_policy: None,
            only_if_absent: Vec::new(),
        }
    }

    async fn object(reply: ApiReply) -> Value {
        match reply {
            Ok(ApiResponse::Object(o)) => o,
            other => panic!("{other:?}"),
        }
    }

    /// A dry run answers what would be stored and writes nothing: no
    /// object after a create, the old one after an update; a create of an
    /// existing name is still refused.
    #[tokio::test]
    async fn dry_runs_write_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_store(dir.path()).await;
        let h = |verb, req| handle(&store, verb, Kind::ConfigMap, "default", req, None);
        let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default"}, "data": {"a": "1"}});
        let create = |dry_run| ApiRequest::Create {
            object: cm.clone(),
            dry_run,
        };
        let would = object(h(Verb::Create, create(true)).await).await;
        assert!(meta::uid(&would).is_some(), "{would}");
        let get = || ApiRequest::Get { name: "c".into() };
        let missing = h(Verb::Get, get()).await.expect_err("not created");
        assert_eq!(missing.reason, kubus_api::Reason::NotFound);
        let made = object(h(Verb::Create, create(false)).await).await;
        let again = h(Verb::Create, create(true)).await.expect_err("exists");
        assert_eq!(again.reason, kubus_api::Reason::AlreadyExists);
        let mut changed = made.clone();
        changed["data"]["a"] = serde_json::json!("2");
        let would = object(
            h(
                Verb::Update,
                ApiRequest::Update {
                    object: changed,
                    dry_run: true,
                },
            )
            .await,
        )
        .await;
        assert_eq!(would["data"]["a"], "2");
        let stored = object(h(Verb::Get, get()).await).await;
        assert_eq!(stored, made);
    }

    /// Issue 5, graceful deletion, through the API service on a real store:
    /// a bound pod is marked terminating (one write; still readable), a
    /// later delete only shortens its grace, an update may not clear the
    /// mark, a delete with another uid is refused, and grace 0 with the
    /// right uid removes it. Unbound pods and other kinds go at once.
    #[tokio::test]
    async fn bound_pods_are_deleted_gracefully() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_store(dir.path()).await;
        let pod = |name: &str, node: Option<&str>| {
            let mut p = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"terminationGracePeriodSeconds": 20,
                    "containers": [{"name": "c", "image": "busybox"}]}});
            if let Some(n) = node {
                p["spec"]["nodeName"] = serde_json::json!(n);
            }
            ApiRequest::Create {
                object: p,
                dry_run: false,
            }
        };
        let h = |verb, req| handle(&store, verb, Kind::Pod, "default", req, None);
        let created = object(h(Verb::Create, pod("web", Some("n1"))).await).await;
        let uid = meta::uid(&created).unwrap_or_default().to_string();

        let before = jiff::Timestamp::now();
        let marked = object(h(Verb::Delete, delete_req("web", None, None)).await).await;
        let deadline = lifecycle::deletion_deadline(&marked).expect("deletionTimestamp");
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 20);
        let left = deadline.as_second() - before.as_second();
        assert!((20..=21).contains(&left), "{left} s left");
        let got = object(h(Verb::Get, ApiRequest::Get { name: "web".into() }).await).await;
        assert_eq!(got, marked, "stored as answered, resourceVersion too");

        // longer or no grace: nothing written
        for grace in [None, Some(20), Some(600)] {
            let again = object(h(Verb::Delete, delete_req("web", None, grace)).await).await;
            assert_eq!(again, marked, "{grace:?}");
        }
        // shorter: the same start, a shorter wait
        let shorter = object(h(Verb::Delete, delete_req("web", None, Some(5))).await).await;
        assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 5);
        assert_eq!(
            lifecycle::deletion_deadline(&shorter).map(|t| t.as_second()),
            Some(deadline.as_second() - 15)
        );

        // an update may not clear it
        let mut cleared = shorter.clone();
        if let Some(m) = cleared["metadata"].as_object_mut() {
            m.remove("deletionTimestamp");
        }
        let err = h(
            Verb::Update,
            ApiRequest::Update {
                object: cleared,
                dry_run: false,
            },
        )
        .await
        .expect_err("immutable");
        assert_eq!(err.reason, kubus_api::Reason::Invalid);
        assert_eq!(err.causes[0].field, "metadata.deletionTimestamp", "{err}");
        // a status update keeping it is fine
        let mut status = shorter.clone();
        status["status"] = serde_json::json!({"phase": "Failed"});
        let status = object(
            h(
                Verb::Update,
                ApiRequest::Update {
                    object: status,
                    dry_run: false,
                },
            )
            .await,
        )
        .await;
        assert_eq!(
            status["metadata"]["deletionTimestamp"],
            shorter["metadata"]["deletionTimestamp"]
        );

        // another uid: refused; the right one with grace 0: removed
        let err = h(Verb::Delete, delete_req("web", Some("other"), Some(0)))
            .await
            .expect_err("uid precondition");
        assert_eq!(err.reason, kubus_api::Reason::Conflict, "{err}");
        assert!(err.message.contains("uid"), "{err}");
        let removed = object(h(Verb::Delete, delete_req("web", Some(&uid), Some(0))).await).await;
        assert_eq!(meta::uid(&removed), Some(uid.as_str()));
        let err = h(Verb::Get, ApiRequest::Get { name: "web".into() })
            .await
            .expect_err("gone");
        assert_eq!(err.reason, kubus_api::Reason::NotFound);

        // unbound: at once; bound with grace 0 (force): at once
        object(h(Verb::Create, pod("pending", None)).await).await;
        let gone = object(h(Verb::Delete, delete_req("pending", None, None)).await).await;
        assert!(gone["metadata"].get("deletionTimestamp").is_none());
        object(h(Verb::Create, pod("forced", Some("n1"))).await).await;
        object(h(Verb::Delete, delete_req("forced", None, Some(0))).await).await;
        for name in ["pending", "forced"] {
            let err = h(Verb::Get, ApiRequest::Get { name: name.into() })
                .await
                .expect_err("gone");
            assert_eq!(err.reason, kubus_api::Reason::NotFound, "{name}");
        }
        // another kind: at once
        put(&store, "cm", serde_json::json!({})).await;
        object(
            handle(
                &store,
                Verb::Delete,
                Kind::ConfigMap,
                "default",
                delete_req("cm", None, Some(30)),
                None,
            )
            .await,
        )
        .await;
        assert_eq!(store.get("/configmaps/default/cm").ok(), Some(None));
    }

    /// Services' addresses are claimed in their own Raft entry: concurrent
    /// creates never share one, a full range is refused naming the field,
    /// a delete frees, an update keeps, a requested address in use is
    /// refused naming its holder.
    #[tokio::test]
    async fn service_addresses_are_claimed_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut api = open_store(dir.path()).await;
        // 12 allocatable addresses (a /28 without network, broadcast, .1, .10)
        api.net = ServiceNet::parse("10.96.0.0/28", "30000-30001").expect("net");
        let svc = |name: &str, spec: Value| {
            serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": "default"}, "spec": spec})
        };
        let create = |object: Value| {
            let api = api.clone();
            async move {
                handle(
                    &api,
                    Verb::Create,
                    Kind::Service,
                    "default",
                    ApiRequest::Create {
                        object,
                        dry_run: false,
                    },
                    None,
                )
                .await
            }
        };
        let results = futures::future::join_all((0..14).map(|i| {
            create(svc(
                &format!("s{i}"),
                serde_json::json!({"ports": [{"port": 80}]}),
            ))
        }))
        .await;
        let mut ips = BTreeSet::new();
        let mut refused = Vec::new();
        for r in results {
            match r {
                Ok(ApiResponse::Object(o)) => {
                    assert!(ips.insert(o["spec"]["clusterIP"].as_str().expect("ip").to_string()));
                }
                Err(e) => refused.push(e),
                Ok(other) => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(ips.len(), 12, "{ips:?}");
        assert_eq!(refused.len(), 2);
        for e in &refused {
            assert_eq!(e.reason, kubus_api::Reason::Invalid, "{}", e.message);
            assert!(
                e.message.contains("spec.clusterIP") && e.message.contains("no address left"),
                "{}",
                e.message
            );
        }
        // a delete frees its address for the next
        let gone = handle(
            &api,
            Verb::Delete,
            Kind::Service,
            "default",
            delete_req("s0", None, None),
            None,
        )
        .await
        .expect("deleted");
        let ApiResponse::Object(gone) = gone else {
            panic!("object")
        };
        let freed = gone["spec"]["clusterIP"].clone();
        let again =
            object(create(svc("again", serde_json::json!({"ports": [{"port": 80}]}))).await).await;
        assert_eq!(again["spec"]["clusterIP"], freed);
        // a requested address in use is refused naming the holder
        let e = create(svc(
            "twin",
            serde_json::json!({"clusterIP": freed, "ports": [{"port": 80}]}),
        ))
        .await
        .expect_err("taken");
        assert!(
            e.message
                .contains("already allocated (to Service default/again)"),
            "{}",
            e.message
        );
        // node ports: two in range; a third NodePort Service finds none
        let np = |name: &str| {
            svc(
                name,
                serde_json::json!({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}),
            )
        };
        let a = object(create(np("np-a")).await).await;
        object(create(np("np-b")).await).await;
        let e = create(np("np-c")).await.expect_err("no port left");
        assert!(
            e.message.contains("spec.ports[0].nodePort"),
            "{}",
            e.message
        );
        // an update that omits them keeps address and node port
        let mut update = np("np-a");
        update["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("clusterIP");
        let kept = handle(
            &api,
            Verb::Update,
            Kind::Service,
            "default",
            ApiRequest::Update {
                object: update,
                dry_run: false,
            },
            None,
        )
        .await;
        let kept = object(kept).await;
        assert_eq!(
            kept["spec"]["ports"][0]["nodePort"],
            a["spec"]["ports"][0]["nodePort"]
        );
        assert_eq!(kept["spec"]["clusterIP"], "None");
    }

    #[test]
    fn namespace_tokens() {
        assert_eq!(
            request_namespace(Kind::Pod, "default", Verb::Get),
            Ok(Some("default".into()))
        );
        assert_eq!(
            request_namespace(Kind::Pod, ALL_NAMESPACES, Verb::List),
            Ok(None)
        );
        assert!(request_namespace(Kind::Pod, ALL_NAMESPACES, Verb::Create).is_err());
        assert_eq!(
            request_namespace(Kind::Node, CLUSTER_SCOPED, Verb::Get),
            Ok(None)
        );
        assert!(request_namespace(Kind::Node, "default", Verb::Get).is_err());
    }

    /// The store parses field selectors with the API's one parser
    /// (`kubus_api::selector::FieldSelector`) and refuses a field the kind
    /// does not serve; the rules themselves are tested there.
    #[test]
    fn field_selectors() {
        let pods = FieldSelector::parse_for(Kind::Pod, "spec.nodeName=n1, metadata.name==a");
        let obj = serde_json::json!({"metadata": {"name": "a"}, "spec": {"nodeName": "n1"}});
        assert!(pods.is_ok_and(|s| s.matches(Kind::Pod, &obj)));
        assert!(FieldSelector::parse_for(Kind::Pod, "spec.foo=1").is_err());
        assert!(FieldSelector::parse_for(Kind::ConfigMap, "spec.nodeName=n1").is_err());
        assert!(FieldSelector::parse_for(Kind::Pod, "nonsense").is_err());
    }

    #[test]
    fn change_batches_are_cut_at_whole_revisions() {
        // (revision, size); budget 100
        let cases: Vec<(Vec<(u64, usize)>, usize)> = vec![
            (vec![], 0),
            (vec![(1, 10), (2, 10)], 2),
            (vec![(1, 60), (2, 60), (3, 10)], 1),
            (vec![(1, 500), (2, 10)], 1), // the first revision always goes
            (vec![(1, 60), (1, 60), (2, 10)], 2), // never split a revision
            (vec![(1, 10), (2, 60), (2, 60)], 1),
        ];
        for (sizes, want) in cases {
            assert_eq!(cut_at_budget(&sizes, 100), want, "{sizes:?}");
        }
    }

    #[test]
    fn generated_suffixes_are_valid_names() {
        for _ in 0..100 {
            let s = name_suffix();
            assert_eq!(s.len(), 5);
            assert!(s
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        }
    }
}
