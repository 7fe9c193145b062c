//! `StoreServer`: one store peer's face on the bus. It serves the API and
//! manifest subjects from the local [`Store`] and publishes one change event
//! per applied object change, in revision order.
//!
//! The actor only routes messages; every decision is in [`service`].

pub mod access;
pub mod admin;
pub mod backup;
pub mod seal;
pub mod service;
pub mod tokens;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use async_nats::{HeaderMap, Message};
use kubus_api::{meta, ApiError, Kind};
use kubus_bus::codec::Codec;
use kubus_bus::protocol::{ApiReply, ApiRequest, ChangeEvent, EventType, Fence};
use kubus_bus::subject::{
    Subjects, Verb, ALL_NAMESPACES, API_QUEUE, CODEC_JSON, HEADER_CODEC, HEADER_DRY_RUN,
    HEADER_FENCE,
};
use kubus_storage::{Change, ChangeOp, ChangeReceiver, Store};
use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn, Instrument};

/// Attempts to create a default namespace while the store has no leader.
const NAMESPACE_ATTEMPTS: u32 = 60;
/// The wait between those attempts.
const NAMESPACE_RETRY: Duration = Duration::from_millis(500);

/// Requests served at once; past this, callers get Unavailable.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 512;

pub struct StoreServer {
    api: service::Api,
    nats: async_nats::Client,
    subjects: Subjects,
    in_flight: Arc<Semaphore>,
    streams: Option<[async_nats::Subscriber; 3]>,
    access: access::Access,
}

impl StoreServer {
    /// Subscribe to the API and manifest subjects, start publishing changes,
    /// and start the actor.
    pub async fn start(
        store: Store,
        changes: ChangeReceiver,
        nats: async_nats::Client,
        cluster: &str,
        net: kubus_api::service::ServiceNet,
        secured: bool,
        keys: seal::Keyring,
    ) -> Result<Addr<StoreServer>, async_nats::SubscribeError> {
        let access = access::Access::new(secured);
        let subjects = Subjects::new(cluster);
        let requests = nats
            .queue_subscribe(subjects.api_all(), API_QUEUE.to_string())
            .await?;
        let manifests = nats
            .queue_subscribe(subjects.manifests(), API_QUEUE.to_string())
            .await?;
        let reviews = nats
            .queue_subscribe(subjects.review(), API_QUEUE.to_string())
            .await?;
        // Serving once the server has the subscriptions: a request sent
        // before would find no responder, and through an account's service
        // import a client hears no "no responders", only its timeout.
        if let Err(e) = nats.flush().await {
            warn!(error = %e, "the API subscriptions are not confirmed by the server yet");
        }
        let rebuilt_through = store.revision();
        let chains = NodeChains::from_history(&store, &keys, rebuilt_through);
        let api = service::Api {
            store,
            net,
            keys,
            tokens: tokens::Tokens::default(),
        };
        tokio::spawn(publish(
            api.clone(),
            changes,
            nats.clone(),
            subjects.clone(),
            chains,
            rebuilt_through,
            access.clone(),
        ));
        tokio::spawn(collect_events(api.clone()));
        let server = StoreServer {
            api,
            nats,
            subjects,
            in_flight: Arc::new(Semaphore::new(REQUESTS_IN_FLIGHT_MAX)),
            streams: Some([requests, manifests, reviews]),
            access,
        };
        let addr = server.start();
        Ok(addr)
    }
}

impl Actor for StoreServer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for stream in self.streams.take().into_iter().flatten() {
            ctx.add_stream(stream);
        }
        let store = self.api.clone();
        actix::spawn(async move {
            // the system namespaces, then the built-in StorageClass and
            // PriorityClasses
            let builtin = service::SYSTEM_NAMESPACES
                .iter()
                .map(|ns| {
                    (
                        Kind::Namespace,
                        kubus_api::lifecycle::empty(Kind::Namespace, None, ns),
                    )
                })
                .chain([(Kind::StorageClass, kubus_api::storage::local_path_class())])
                .chain(
                    kubus_api::rbac::defaults::objects()
                        .into_iter()
                        .filter_map(|o| {
                            let kind = Kind::from_type(
                                o["apiVersion"].as_str().unwrap_or_default(),
                                o["kind"].as_str().unwrap_or_default(),
                            )
                            .ok()?;
                            Some((kind, o))
                        }),
                )
                .chain(
                    kubus_api::priority::system_classes()
                        .into_iter()
                        .map(|c| (Kind::PriorityClass, c)),
                )
                // the ServiceAccount tokens' signing key (kept if there)
                .chain(match tokens::signing_key_object() {
                    Ok(key) => Some((Kind::Secret, key)),
                    Err(e) => {
                        warn!(error = %e, "no token signing key");
                        None
                    }
                });
            for (kind, object) in builtin {
                let name = kubus_api::meta::name(&object)
                    .unwrap_or_default()
                    .to_string();
                // With several peers there may be no leader yet: try again
                // (a follower forwards the write once one is known).
                for attempt in 1..=NAMESPACE_ATTEMPTS {
                    let req = ApiRequest::Create {
                        object: object.clone(),
                        dry_run: false,
                    };
                    let ns = kubus_api::meta::namespace(&object)
                        .unwrap_or("_")
                        .to_string();
                    match service::handle(&store, Verb::Create, kind, &ns, req, None).await {
                        Ok(_) => info!(%kind, name, "created"),
                        Err(e) if e.reason == kubus_api::Reason::AlreadyExists => {}
                        Err(e)
                            if e.reason == kubus_api::Reason::Unavailable
                                && attempt < NAMESPACE_ATTEMPTS =>
                        {
                            tokio::time::sleep(NAMESPACE_RETRY).await;
                            continue;
                        }
                        Err(e) => warn!(%kind, name, error = %e, "cannot create"),
                    }
                    break;
                }
            }
        });
    }
}

impl StreamHandler<Message> for StoreServer {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<Self>) {
        let codec = Codec::from_headers(msg.headers.as_ref());
        let nats = self.nats.clone();
        let reply_to = msg.reply.clone();
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            if let Some(reply_to) = reply_to {
                let busy: ApiReply = Err(ApiError::unavailable("store is busy", 100));
                tokio::spawn(async move { respond(&nats, reply_to, codec, &busy).await });
            }
            return;
        };
        let store = self.api.clone();
        // a request that crossed from another account may not answer
        // anywhere but its rewritten reply subject; one inside the store's
        // account answers only an inbox
        if let Some(reply) = reply_to.as_ref() {
            if !kubus_bus::auth::is_inbox(reply.as_str()) {
                warn!(subject = %msg.subject, reply = %reply, "request with a reply subject that is not an inbox dropped");
                return;
            }
        }
        let user = match self.access.user(&store.store, msg.headers.as_ref()) {
            Ok(u) => u,
            Err(e) => {
                if let Some(reply_to) = reply_to {
                    let refused: ApiReply = Err(e);
                    tokio::spawn(async move { respond(&nats, reply_to, codec, &refused).await });
                }
                return;
            }
        };
        let access = self.access.clone();
        // the client's trace, when it sent one (a no-op unless tracing)
        let parent = kubus_bus::trace::from_headers(msg.headers.as_ref());
        if msg.subject.as_str() == self.subjects.review() {
            let Some(reply_to) = reply_to else {
                return;
            };
            tokio::spawn(async move {
                let reply: kubus_bus::protocol::ReviewReply = codec
                    .decode::<kubus_bus::protocol::ReviewRequest>(&msg.payload)
                    .map_err(|e| ApiError::bad_request(format!("review request: {e}")))
                    .and_then(|req| {
                        let user = match &req.token {
                            None => user,
                            Some(bearer) => review_token(&store, &access, &user, bearer)?,
                        };
                        let decision = req
                            .attributes
                            .as_ref()
                            .map(|a| access.decide(&store.store, &user, a, None));
                        Ok(kubus_bus::protocol::Review {
                            allowed: decision.as_ref().is_none_or(|d| d.allowed()),
                            reason: match decision {
                                Some(kubus_api::rbac::Decision::Deny(why)) => Some(why),
                                _ => None,
                            },
                            user,
                        })
                    });
                respond(&nats, reply_to, codec, &reply).await;
                drop(permit);
            });
            return;
        }
        if msg.subject.as_str() == self.subjects.manifests() {
            let dry_run = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(HEADER_DRY_RUN))
                .is_some_and(|v| v.as_str().eq_ignore_ascii_case("true"));
            let subjects = self.subjects.clone();
            let span =
                kubus_bus::trace_span!("store.apply_manifests", otel.kind = "server", dry_run);
            kubus_bus::trace::adopt(&span, parent.as_deref());
            tokio::spawn(
                async move {
                    let allow =
                        |r: &kubus_api::ObjectRef| access.check_apply(&store.store, &user, r);
                    let reply =
                        service::apply_manifest(&store, &msg.payload, dry_run, &allow).await;
                    match reply_to {
                        Some(reply_to) => respond(&nats, reply_to, codec, &reply).await,
                        // a plain publish: the results go out as Events
                        None => publish_manifest_results(&nats, &subjects, &reply).await,
                    }
                    drop(permit);
                }
                .instrument(span),
            );
            return;
        }
        let Some(reply_to) = reply_to else {
            debug!(subject = %msg.subject, "API request without a reply subject ignored");
            return;
        };
        let Some((verb, kind, ns)) = self.subjects.parse_api(msg.subject.as_str()) else {
            let bad: ApiReply = Err(ApiError::bad_request(format!(
                "unknown API subject {}",
                msg.subject
            )));
            tokio::spawn(async move { respond(&nats, reply_to, codec, &bad).await });
            return;
        };
        let ns = ns.to_string();
        let fence = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(HEADER_FENCE))
            .map(|v| Fence::parse(v.as_str()))
            .transpose();
        let started = std::time::Instant::now();
        let span = kubus_bus::trace_span!(
            "store.request",
            otel.kind = "server",
            verb = ?verb,
            resource = kind.resource(),
            namespace = %ns,
            code = tracing::field::Empty,
        );
        kubus_bus::trace::adopt(&span, parent.as_deref());
        let request = async move {
            let reply = match (codec.decode::<ApiRequest>(&msg.payload), fence) {
                (Ok(req), Ok(fence)) => {
                    let namespace = service::request_namespace(kind, &ns, verb);
                    match namespace.and_then(|namespace| {
                        access.check(&store.store, &user, verb, kind, namespace.as_deref(), &req)
                    }) {
                        Ok(()) => service::handle(&store, verb, kind, &ns, req, fence).await,
                        Err(e) => Err(e),
                    }
                }
                (Err(e), _) => Err(ApiError::bad_request(format!("request body: {e}"))),
                (_, Err(e)) => Err(e),
            };
            let (verb, subresource) = crate::metrics::request_verb(verb);
            let code = match &reply {
                Ok(_) if verb == "POST" && subresource.is_empty() => 201,
                Ok(_) => 200,
                Err(e) => e.reason.http_code(),
            };
            crate::metrics::api_request(
                verb,
                subresource,
                kind.resource(),
                code,
                started.elapsed(),
            );
            tracing::Span::current().record("code", code);
            respond(&nats, reply_to, codec, &reply).await;
            drop(permit);
        };
        tokio::spawn(request.instrument(span));
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        warn!("a store subscription ended");
    }
}

/// The user bearer token `bearer` names, verified for `asker` (who needs
/// `create` on `tokenreviews`, as Kubernetes' TokenReview). A token that
/// does not verify is `Unauthorized`'s cousin: Forbidden, saying why.
fn review_token(
    api: &service::Api,
    access: &access::Access,
    asker: &kubus_api::rbac::UserInfo,
    bearer: &str,
) -> Result<kubus_api::rbac::UserInfo, ApiError> {
    let may = kubus_api::rbac::Attributes::new("create", "authentication.k8s.io", "tokenreviews");
    if let kubus_api::rbac::Decision::Deny(why) = access.decide(&api.store, asker, &may, None) {
        return Err(ApiError::new(kubus_api::Reason::Forbidden, why));
    }
    api.tokens.verify(api, bearer).map_err(|why| {
        ApiError::new(
            kubus_api::Reason::Forbidden,
            format!("token refused: {why}"),
        )
    })
}

async fn respond<T: Serialize>(
    nats: &async_nats::Client,
    reply_to: async_nats::Subject,
    codec: Codec,
    body: &T,
) {
    let payload = match codec.encode(body) {
        Ok(p) => p,
        Err(e) => {
            let err: ApiReply = Err(ApiError::too_large(format!("reply: {e}")));
            match codec.encode(&err) {
                Ok(p) => p,
                Err(_) => return,
            }
        }
    };
    let result = match codec {
        Codec::Json => {
            let mut headers = HeaderMap::new();
            headers.insert(HEADER_CODEC, kubus_bus::subject::CODEC_JSON);
            nats.publish_with_headers(reply_to, headers, payload).await
        }
        Codec::MessagePack => nats.publish(reply_to, payload).await,
    };
    if let Err(e) = result {
        warn!(error = %e, "cannot send reply");
    }
}

/// Turn one applied change into the event watchers receive.
pub fn change_event(
    keys: &seal::Keyring,
    change: &Change,
) -> Result<(Kind, ChangeEvent), ApiError> {
    let object = service::decode(keys, &change.kv)?;
    let kind = meta::kind_of(&object).ok_or_else(|| {
        ApiError::internal(format!("stored object {} has no served kind", change.key))
    })?;
    let event_type = match change.op {
        ChangeOp::Created => EventType::Added,
        ChangeOp::Updated => EventType::Modified,
        ChangeOp::Deleted => EventType::Deleted,
    };
    Ok((
        kind,
        ChangeEvent {
            event_type,
            revision: change.revision,
            prev: change.stream_prev,
            object,
            committed_ms: change.committed_ms,
            traceparent: None,
        },
    ))
}

/// Publish a change-event-like body as JSON, marked so every decoder knows.
async fn publish_json<T: Serialize>(nats: &async_nats::Client, subject: String, body: &T) {
    let Ok(payload) = Codec::Json.encode(body) else {
        warn!(%subject, "event too large to publish");
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_CODEC, CODEC_JSON);
    if let Err(e) = nats.publish_with_headers(subject, headers, payload).await {
        warn!(error = %e, "cannot publish");
    }
}

/// Where one change goes besides its node: its object subject and, for an
/// Event, the events subject of the object it is about.
pub fn change_subjects(subjects: &Subjects, kind: Kind, object: &serde_json::Value) -> Vec<String> {
    let name = meta::name(object).unwrap_or_default();
    let mut out = vec![subjects.obj(kind, meta::namespace(object), name)];
    if kind == Kind::Event {
        if let Some(involved) = crate::events::involved_kind(object) {
            let ns = object
                .pointer("/involvedObject/namespace")
                .and_then(|v| v.as_str())
                .or(meta::namespace(object))
                .unwrap_or("default");
            let name = object
                .pointer("/involvedObject/name")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            out.push(subjects.events(ns, involved, name));
        }
    }
    out
}

/// The node a pod object is bound to.
pub fn node_of(kind: Kind, object: &serde_json::Value) -> Option<&str> {
    if kind != Kind::Pod {
        return None;
    }
    object.pointer("/spec/nodeName").and_then(|v| v.as_str())
}

/// The per-node change streams: for each node, the revision of the last
/// change to a pod bound to it. Derived from the history (so any store peer
/// can rebuild it), then kept as changes are published.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NodeChains {
    heads: HashMap<String, u64>,
}

impl NodeChains {
    /// Chain a change of `node` at `revision`; returns its `prev`.
    pub fn chain(&mut self, node: &str, revision: u64) -> u64 {
        let head = self.heads.entry(node.to_string()).or_insert(0);
        let prev = *head;
        *head = revision.max(*head);
        prev
    }

    pub fn heads(&self) -> impl Iterator<Item = (&String, &u64)> {
        self.heads.iter()
    }

    /// Rebuild from the retained history up to `through` (bounded reads).
    pub fn from_history(store: &Store, keys: &seal::Keyring, through: u64) -> NodeChains {
        let mut chains = NodeChains::default();
        let mut since = match store.changes_since(0, 1) {
            Err(kubus_storage::StoreError::Compacted { compacted_to }) => compacted_to,
            _ => 0,
        };
        for _ in 0..NODE_SCAN_PAGES_MAX {
            let batch = match store.changes_since(since, 0) {
                Ok(b) => b,
                Err(e) => {
                    warn!(error = %e, "node streams rebuilt from part of the history");
                    break;
                }
            };
            let Some(last) = batch.last().map(|c| c.revision) else {
                break;
            };
            for change in batch
                .iter()
                .filter(|c| c.revision <= through && c.stream == "pods")
            {
                if let Ok((kind, event)) = change_event(keys, change) {
                    if let Some(node) = node_of(kind, &event.object).map(str::to_string) {
                        let node = node.as_str();
                        chains.chain(node, change.revision);
                    }
                }
            }
            if last >= through {
                break;
            }
            since = last;
        }
        chains
    }
}

/// Most history pages read to rebuild the node streams at start.
const NODE_SCAN_PAGES_MAX: usize = 1_000;

/// How often each stream's latest revision is published.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// What the publisher has sent: per resource stream and (in the chains) per
/// node stream, the revision of the last change published. Bookmarks
/// announce only these, so a bookmark never overtakes its event.
#[derive(Debug, Default)]
struct Published {
    resources: HashMap<Kind, u64>,
    chains: NodeChains,
}

/// One task publishes everything, in order: applied changes (JSON, so any
/// client can read them) on the object's subject with the resource stream's
/// `prev`, for a pod bound to a node also on that node's subject with the
/// node stream's `prev`, and every second the bookmarks of every stream.
async fn publish(
    store: service::Api,
    mut changes: ChangeReceiver,
    nats: async_nats::Client,
    subjects: Subjects,
    chains: NodeChains,
    rebuilt_through: u64,
    access: access::Access,
) {
    let rbac_prefixes: Vec<String> = access::RBAC_KINDS
        .iter()
        .map(|k| kubus_api::kind::prefix(*k, None))
        .collect();
    let mut published = Published {
        resources: Kind::ALL
            .iter()
            .map(|k| (*k, store.stream_head(k.resource()).unwrap_or(0)))
            .collect(),
        chains,
    };
    let mut tick = tokio::time::interval(BOOKMARK_INTERVAL);
    loop {
        tokio::select! {
            batch = changes.recv() => {
                let Some(batch) = batch else { break };
                // The store hands over a batch's changes just before it
                // answers the batch's proposers, so their request tasks are
                // usually ready too: let them reply first (if this thread
                // woke in between, the events simply go first). A writer
                // then hears back without waiting behind its own change
                // event (decoding, JSON, the connection's write), and the
                // events follow at once. Nothing relies on the other order:
                // a write sent to a follower never had it (the leader
                // publishes, the follower replies), and controllers assume
                // what they wrote.
                tokio::task::yield_now().await;
                // Every peer applies every change, but only the leader
                // publishes it (one event per change on the bus). Followers
                // still keep the stream heads and node chains, so that the
                // prev of what they publish once they lead is right; a
                // change nobody published (applied by a follower, the
                // leader gone) is a gap that watchers fill from history.
                let leading = store.is_leader();
                if batch.iter().any(|c| rbac_prefixes.iter().any(|p| c.key.starts_with(p.as_str()))) {
                    access.invalidate();
                }
                for change in &batch {
                    publish_change(&nats, &subjects, &store.keys, &mut published, change, rebuilt_through, leading).await;
                }
            }
            _ = tick.tick() => {
                if store.is_leader() {
                    publish_bookmarks(&nats, &subjects, &published).await;
                }
            }
        }
    }
    info!("change stream ended");
}

async fn publish_change(
    nats: &async_nats::Client,
    subjects: &Subjects,
    keys: &seal::Keyring,
    published: &mut Published,
    change: &Change,
    rebuilt_through: u64,
    leading: bool,
) {
    if change.key.starts_with(kubus_api::service::CLAIM_PREFIX) {
        // a Service's address claim: part of the Service, not an object
        return;
    }
    let (kind, event) = match change_event(keys, change) {
        Ok(e) => e,
        Err(e) => {
            warn!(key = %change.key, error = %e, "change not published");
            return;
        }
    };
    // the write's trace goes on with the event: what it sets off joins it
    let span = match &change.trace {
        Some(parent) if leading => {
            let span = kubus_bus::trace_span!(
                "store.publish",
                otel.kind = "producer",
                resource = kind.resource(),
                revision = change.revision,
            );
            kubus_bus::trace::adopt(&span, Some(parent));
            span
        }
        _ => tracing::Span::none(),
    };
    let event = ChangeEvent {
        traceparent: kubus_bus::trace::traceparent(&span),
        ..event
    };
    if leading {
        crate::metrics::METRICS
            .change_events
            .get_or_create(&crate::metrics::resource(kind.resource()))
            .inc();
        for subject in change_subjects(subjects, kind, &event.object) {
            publish_json(nats, subject, &event).await;
        }
    }
    let head = published.resources.entry(kind).or_insert(0);
    *head = (*head).max(change.revision);
    if let Some(node) = node_of(kind, &event.object).map(str::to_string) {
        // changes the rebuild already counted carry prev 0: never a false
        // gap, and the bookmark covers them
        let prev = if change.revision > rebuilt_through {
            published.chains.chain(&node, change.revision)
        } else {
            0
        };
        if leading {
            let node_event = ChangeEvent { prev, ..event };
            publish_json(nats, subjects.node_pods(&node), &node_event).await;
        }
    }
}

async fn publish_bookmarks(nats: &async_nats::Client, subjects: &Subjects, published: &Published) {
    let bookmark = |revision: u64| ChangeEvent {
        event_type: EventType::Bookmark,
        revision,
        prev: revision,
        object: serde_json::Value::Null,
        committed_ms: None,
        traceparent: None,
    };
    for (kind, head) in &published.resources {
        publish_json(nats, subjects.bookmark(*kind), &bookmark(*head)).await;
    }
    for (node, head) in published.chains.heads() {
        publish_json(nats, subjects.node_pods(node), &bookmark(*head)).await;
    }
}

/// How often expired Events are collected, and how many at most per round.
const EVENT_GC_INTERVAL: Duration = Duration::from_secs(60);
const EVENT_GC_BATCH: usize = 500;

/// Delete Events whose time to live has passed.
async fn collect_events(store: service::Api) {
    let mut tick = tokio::time::interval(EVENT_GC_INTERVAL);
    loop {
        tick.tick().await;
        if !store.is_leader() {
            continue;
        }
        let req = ApiRequest::List {
            label_selector: None,
            field_selector: None,
            limit: None,
            continue_token: None,
            resource_version: None,
            resource_version_match: None,
        };
        let items =
            match service::handle(&store, Verb::List, Kind::Event, ALL_NAMESPACES, req, None).await
            {
                Ok(kubus_bus::protocol::ApiResponse::List { items, .. }) => items,
                _ => continue,
            };
        let now = jiff::Timestamp::now();
        let expired = items
            .iter()
            .filter(|e| crate::events::expired(e, now, crate::events::EVENT_TTL))
            .take(EVENT_GC_BATCH);
        for e in expired {
            let (Some(ns), Some(name)) = (meta::namespace(e), meta::name(e)) else {
                continue;
            };
            let req = ApiRequest::Delete {
                name: name.to_string(),
                resource_version: meta::resource_version(e),
                uid: None,
                grace_period_seconds: None,
                propagation_policy: None,
                only_if_absent: Vec::new(),
            };
            let _ = service::handle(&store, Verb::Delete, Kind::Event, ns, req, None).await;
        }
    }
}

/// A manifest published without a reply subject: its per-object results go
/// out as Events (not stored) on the events subjects.
async fn publish_manifest_results(
    nats: &async_nats::Client,
    subjects: &Subjects,
    reply: &kubus_bus::protocol::ManifestReply,
) {
    let now = kubus_api::lifecycle::format_time(jiff::Timestamp::now());
    if let Some(e) = &reply.error {
        let subject = subjects.events("default", Kind::Event, "manifest");
        let body = serde_json::json!({"apiVersion": "v1", "kind": "Event", "type": "Warning",
            "reason": "ManifestRefused", "message": e.message, "lastTimestamp": now,
            "involvedObject": {"kind": "Manifest", "name": "manifest"}});
        publish_json(nats, subject, &body).await;
        return;
    }
    for doc in &reply.documents {
        let Some(r) = &doc.object else { continue };
        let ns = r.namespace.as_deref().unwrap_or("default");
        let (event_type, reason, message) = match &doc.result {
            Ok(outcome) => (
                "Normal",
                "Applied",
                format!("{} {}: {}", doc.document, r, outcome.as_str()),
            ),
            Err(e) => (
                "Warning",
                "ApplyFailed",
                format!("{}: {}", doc.document, e.message),
            ),
        };
        let body = serde_json::json!({"apiVersion": "v1", "kind": "Event", "type": event_type,
            "reason": reason, "message": message, "lastTimestamp": now,
            "involvedObject": {"apiVersion": r.kind.api_version(), "kind": r.kind.as_str(),
                "namespace": r.namespace, "name": r.name}});
        publish_json(nats, subjects.events(ns, r.kind, &r.name), &body).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_chains_link_each_nodes_changes() {
        let mut c = NodeChains::default();
        assert_eq!(c.chain("n1", 5), 0);
        assert_eq!(c.chain("n2", 6), 0);
        assert_eq!(c.chain("n1", 7), 5);
        assert_eq!(c.chain("n1", 7), 7, "a second pod of the same transaction");
        assert_eq!(c.chain("n2", 9), 6);
        let heads: HashMap<&String, &u64> = c.heads().collect();
        assert_eq!(heads.len(), 2);
    }

    #[test]
    fn only_bound_pods_have_a_node() {
        let bound = json!({"spec": {"nodeName": "n1"}});
        assert_eq!(node_of(Kind::Pod, &bound), Some("n1"));
        assert_eq!(node_of(Kind::Pod, &json!({"spec": {}})), None);
        assert_eq!(node_of(Kind::Service, &bound), None);
    }
}
