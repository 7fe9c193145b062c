//! Typed request/reply over NATS: the API client every actor and the CLI use.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use kubus_api::{ApiError, Kind, ObjectRef, Reason};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use tracing::Instrument;

use crate::codec::{self, CodecError};
use crate::protocol::{
    ApiRequest, ApiResponse, ApplyOutcome, ChangeEvent, EncryptionKeys, EncryptionKeysReply,
    EncryptionKeysRequest, ExecReply, ExecRequest, ExecResult, ExecStreamReply, ExecStreamRequest,
    Fence, JsonText, LogChunk, LogsReply, LogsRequest, ManifestReply, MembershipReply,
    MembershipRequest, NodeUsage, PeerStatus, PeerStatusReply, PortForwardReply,
    PortForwardRequest, ReadResponse, ResealReply, Resealed, ResourceVersionMatch, UsageReply,
    UsageRequest, EXEC_TIMEOUT_DEFAULT_SECS, EXEC_TIMEOUT_MAX_SECS,
};
use crate::stream::Side;
use crate::subject::{
    AgentOp, StoreOp, StreamEnd, Subjects, Verb, CLUSTER_SCOPED, HEADER_FENCE, HEADER_IMPERSONATE,
};

/// Items per page when `list` reads every page.
pub const LIST_PAGE: usize = 5_000;
/// Most pages one `list` reads (200 × 5,000 = a million objects).
pub const LIST_PAGES_MAX: usize = 200;

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct ListPage<T = Value> {
    pub items: Vec<T>,
    pub revision: u64,
    pub continue_token: Option<String>,
}

/// What one list page asks for besides kind and namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListOptions {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// At most this many items (None: the store's cap).
    pub limit: Option<usize>,
    /// The previous page's token; it carries the list's revision.
    pub continue_token: Option<String>,
    /// List exactly at this revision; only on a first page (no token).
    pub revision: Option<u64>,
}

impl ListOptions {
    /// A first page with these selectors, at the latest revision.
    pub fn selected(label_selector: Option<&str>, field_selector: Option<&str>) -> ListOptions {
        ListOptions {
            label_selector: label_selector.map(str::to_string),
            field_selector: field_selector.map(str::to_string),
            ..ListOptions::default()
        }
    }
}

/// What a delete asks for besides the object's name (see
/// [`ApiRequest::Delete`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOptions {
    /// Only if the object is still at this revision.
    pub resource_version: Option<u64>,
    /// Only if the object is this one, not a re-created one of its name.
    pub uid: Option<String>,
    /// A pod's grace period in seconds (0: remove at once).
    pub grace_period_seconds: Option<i64>,
    /// What becomes of the objects it owns (None: background).
    pub propagation_policy: Option<kubus_api::lifecycle::Propagation>,
    /// Only if none of these objects exists (checked in the same Raft
    /// entry as the delete).
    pub only_if_absent: Vec<ObjectRef>,
}

/// What an eviction asks for besides the pod's name (see
/// [`ApiRequest::Evict`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvictOptions {
    /// The pod's grace period in seconds (None: its own).
    pub grace_period_seconds: Option<i64>,
    /// Only if the pod is still at this revision.
    pub resource_version: Option<u64>,
    /// Only if the pod is this one, not a re-created one of its name.
    pub uid: Option<String>,
}

/// Retries of a request the store answered `Unavailable`.
pub const UNAVAILABLE_RETRIES: usize = 5;

/// How often a followed log is asked for more ([`Client::follow_logs`]).
pub const FOLLOW_POLL: Duration = Duration::from_millis(500);
/// Failed asks in a row after which a followed log gives up.
pub const FOLLOW_FAILURES_MAX: u32 = 20;
/// Pieces of a followed log buffered before the follower waits.
const FOLLOW_CHUNKS: usize = 16;

/// How long a rewrite of every sealed object may take (batches of a
/// hundred, each one Raft round).
const RESEAL_TIMEOUT: Duration = Duration::from_secs(600);
/// Nodes [`Client::nodes_usage`] asks at once.
pub const USAGE_ASKED_AT_ONCE: usize = 64;
/// How long one request waits for its reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The store answered with an API error.
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("no store is answering on {subject} (is the cluster up?)")]
    NoResponders { subject: String },
    #[error("request on {subject} timed out after {timeout:?}")]
    Timeout { subject: String, timeout: Duration },
    #[error("NATS: {0}")]
    Nats(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("unexpected reply to {verb}: {got}")]
    UnexpectedReply { verb: &'static str, got: String },
}

impl ClientError {
    /// The API reason, if the store answered with one.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            ClientError::Api(e) => Some(e.reason),
            _ => None,
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Api(e) => matches!(e.reason, Reason::Unavailable | Reason::Internal),
            ClientError::NoResponders { .. }
            | ClientError::Timeout { .. }
            | ClientError::Nats(_) => true,
            ClientError::Codec(_) | ClientError::UnexpectedReply { .. } => false,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Where an elected actor keeps the [`Fence`] of the Lease it holds; the
/// elector sets it on every acquisition, and every write of a client
/// made with [`Client::fenced`] carries it. Never cleared: a deposed
/// leader's writes keep the old fence, which the store refuses.
pub type FenceCell = Arc<RwLock<Option<Fence>>>;

/// A connection to one cluster's bus.
#[derive(Debug, Clone)]
pub struct Client {
    nats: async_nats::Client,
    subjects: Subjects,
    fence: Option<FenceCell>,
    /// The user requests are made for ([`HEADER_IMPERSONATE`]).
    impersonate: Option<String>,
}

impl Client {
    pub fn new(nats: async_nats::Client, cluster: &str) -> Client {
        Client {
            nats,
            subjects: Subjects::new(cluster),
            fence: None,
            impersonate: None,
        }
    }

    /// The same connection, its API requests made for `user` (the store
    /// honours it only if this connection's identity may impersonate).
    pub fn impersonating(&self, user: &kubus_api::rbac::UserInfo) -> Client {
        Client {
            impersonate: serde_json::to_string(user).ok(),
            ..self.clone()
        }
    }

    /// The same connection, whose writes carry the fence in `cell` (before
    /// any acquisition, one that can never hold: create revision 0).
    pub fn fenced(&self, cell: FenceCell) -> Client {
        Client {
            fence: Some(cell),
            ..self.clone()
        }
    }

    /// The headers of an API request: the fence of a fenced client's
    /// write, the user an impersonating client acts for.
    fn api_headers(&self, verb: Verb) -> Option<HeaderMap> {
        let mut h = self.fence_headers(verb);
        if let Some(user) = &self.impersonate {
            h.get_or_insert_with(HeaderMap::new)
                .insert(HEADER_IMPERSONATE, user.as_str());
        }
        h
    }

    /// The fence header of a write, for a fenced client.
    fn fence_headers(&self, verb: Verb) -> Option<HeaderMap> {
        let cell = self.fence.as_ref()?;
        if matches!(verb, Verb::Get | Verb::List | Verb::Watch) {
            return None;
        }
        let fence = cell
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or(Fence {
                namespace: "kube-system".into(),
                name: "none".into(),
                create_revision: 0,
            });
        let mut h = HeaderMap::new();
        h.insert(HEADER_FENCE, fence.encode().as_str());
        Some(h)
    }

    /// Connect to one of the servers `urls` names (one URL, or several
    /// separated by commas: the members of a NATS cluster), reconnecting
    /// to another when it goes ([`crate::connect`]). Bounded retries of
    /// the first connection are the caller's business.
    pub async fn connect(urls: &str, cluster: &str) -> Result<Client> {
        Client::connect_as(urls, cluster, None).await
    }

    /// [`Client::connect`] as the user of `credentials` (None: anonymous,
    /// for a bus without kubus's accounts).
    pub async fn connect_as(
        urls: &str,
        cluster: &str,
        credentials: Option<&crate::auth::Credentials>,
    ) -> Result<Client> {
        let servers =
            crate::connect::servers(urls).map_err(|e| ClientError::Nats(e.to_string()))?;
        let mut options = crate::connect::options("kubus");
        if let Some(c) = credentials {
            options = options
                .user_and_password(c.user.clone(), c.password.clone())
                .custom_inbox_prefix(c.inbox_prefix());
            if let Some(ca) = &c.ca {
                let tls = crate::auth::tls_client_config(ca)
                    .map_err(|e| ClientError::Nats(e.to_string()))?;
                options = options.tls_client_config(tls).require_tls(true);
            }
        }
        let nats = options
            .connect(servers)
            .await
            .map_err(|e| ClientError::Nats(format!("connect to {urls}: {e}")))?;
        Ok(Client::new(nats, cluster))
    }

    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// Send one request and decode its reply.
    pub async fn request<Req: Serialize, Rep: DeserializeOwned>(
        &self,
        subject: String,
        body: &Req,
    ) -> Result<Rep> {
        self.request_raw(subject, codec::encode(body)?, None).await
    }

    async fn request_raw<Rep: DeserializeOwned>(
        &self,
        subject: String,
        body: Bytes,
        headers: Option<HeaderMap>,
    ) -> Result<Rep> {
        self.request_within(subject, body, headers, REQUEST_TIMEOUT)
            .await
    }

    async fn request_within<Rep: DeserializeOwned>(
        &self,
        subject: String,
        body: Bytes,
        headers: Option<HeaderMap>,
        timeout: Duration,
    ) -> Result<Rep> {
        let span = crate::trace_span!("kubus.request", %subject, otel.kind = "client");
        let mut headers = headers;
        span.in_scope(|| crate::trace::inject(&mut headers));
        let mut req = async_nats::Request::new()
            .payload(body)
            .timeout(Some(timeout));
        if let Some(h) = headers {
            req = req.headers(h);
        }
        let sent = self
            .nats
            .send_request(subject.clone(), req)
            .instrument(span)
            .await;
        match sent {
            Ok(msg) => Ok(codec::decode(&msg.payload)?),
            Err(e) => Err(match e.kind() {
                async_nats::RequestErrorKind::NoResponders => ClientError::NoResponders { subject },
                async_nats::RequestErrorKind::TimedOut => ClientError::Timeout { subject, timeout },
                _ => ClientError::Nats(format!("request on {subject}: {e}")),
            }),
        }
    }

    /// One API call. `Unavailable` (the store is busy or electing) is
    /// retried after the delay the store asks for, a bounded number of times.
    async fn api(
        &self,
        verb: Verb,
        kind: Kind,
        namespace: Option<&str>,
        req: ApiRequest,
    ) -> Result<ApiResponse> {
        self.api_as(verb, kind, namespace, req).await
    }

    /// [`Client::api`], the answer read as `R` (the same wire form).
    async fn api_as<R: DeserializeOwned>(
        &self,
        verb: Verb,
        kind: Kind,
        namespace: Option<&str>,
        req: ApiRequest,
    ) -> Result<R> {
        let subject = self.subjects.api(verb, kind, namespace);
        let body = codec::encode(&req)?;
        let headers = self.api_headers(verb);
        let mut attempt = 0;
        loop {
            let reply: Result<R, ApiError> = self
                .request_raw(subject.clone(), body.clone(), headers.clone())
                .await?;
            match reply {
                Err(e) if e.reason == Reason::Unavailable && attempt < UNAVAILABLE_RETRIES => {
                    attempt += 1;
                    let wait = e.retry_after_ms.unwrap_or(100).clamp(10, 5_000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                other => return Ok(other?),
            }
        }
    }

    pub async fn get(&self, kind: Kind, namespace: Option<&str>, name: &str) -> Result<Value> {
        let req = ApiRequest::Get {
            name: name.to_string(),
        };
        match self.api(Verb::Get, kind, namespace, req).await? {
            ApiResponse::Object(v) => Ok(v),
            other => Err(unexpected("get", &other)),
        }
    }

    /// Get, as the object's JSON text (no `Value` is built).
    pub async fn get_json(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Vec<u8>> {
        let req = ApiRequest::Get {
            name: name.to_string(),
        };
        match self.api_as(Verb::Get, kind, namespace, req).await? {
            ReadResponse::Object(JsonText(bytes)) => Ok(bytes),
            ReadResponse::List { .. } => Err(ClientError::UnexpectedReply {
                verb: "get",
                got: "a list".into(),
            }),
        }
    }

    /// Every page of a list (as [`Client::list`]), each item as its JSON
    /// text (no `Value` is built).
    pub async fn list_json(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        opts: ListOptions,
    ) -> Result<(Vec<JsonText>, u64)> {
        self.list_all(kind, namespace, opts).await
    }

    /// One page of a list, each item as its JSON text.
    pub async fn list_page_json(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        opts: ListOptions,
    ) -> Result<ListPage<JsonText>> {
        self.list_with(kind, namespace, opts).await
    }

    /// Get and convert to a typed object.
    pub async fn get_typed<T: DeserializeOwned>(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<T> {
        let v = self.get(kind, namespace, name).await?;
        serde_json::from_value(v).map_err(|e| CodecError::Decode(e.to_string()).into())
    }

    /// List objects of a kind in one namespace (None: all), with optional
    /// label and field selectors, every page. Returns the items and the
    /// revision they were read at: every page is read at the first page's
    /// revision (its continue token names it), so a watch from that
    /// revision sees every change since.
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
    ) -> Result<(Vec<Value>, u64)> {
        let opts = ListOptions::selected(label_selector, field_selector);
        self.list_all(kind, namespace, opts).await
    }

    /// Like [`Client::list`], as the objects were at `revision` (Kubernetes'
    /// `resourceVersion` with `resourceVersionMatch=Exact`). `Expired` when
    /// the store's history no longer reaches back to `revision` (the
    /// message names the oldest revision kept); `BadRequest` for a revision
    /// not yet made.
    pub async fn list_at(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
        revision: u64,
    ) -> Result<(Vec<Value>, u64)> {
        let opts = ListOptions {
            revision: Some(revision),
            ..ListOptions::selected(label_selector, field_selector)
        };
        self.list_all(kind, namespace, opts).await
    }

    /// Every page of a list, [`LIST_PAGE`] items at a time.
    async fn list_all<T: DeserializeOwned>(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        mut opts: ListOptions,
    ) -> Result<(Vec<T>, u64)> {
        let mut all = Vec::new();
        let mut first_revision = None;
        opts.limit = Some(LIST_PAGE);
        for _ in 0..LIST_PAGES_MAX {
            let page = self.list_with(kind, namespace, opts.clone()).await?;
            all.extend(page.items);
            first_revision.get_or_insert(page.revision);
            match page.continue_token {
                Some(token) => {
                    // The token carries the revision from here on.
                    opts.continue_token = Some(token);
                    opts.revision = None;
                }
                None => return Ok((all, first_revision.unwrap_or(0))),
            }
        }
        Err(ClientError::UnexpectedReply {
            verb: "list",
            got: format!("more than {LIST_PAGES_MAX} pages"),
        })
    }

    /// One page of a list.
    pub async fn list_page(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        label_selector: Option<&str>,
        field_selector: Option<&str>,
        limit: Option<usize>,
        continue_token: Option<String>,
    ) -> Result<ListPage> {
        let opts = ListOptions {
            limit,
            continue_token,
            ..ListOptions::selected(label_selector, field_selector)
        };
        self.list_with(kind, namespace, opts).await
    }

    /// One page of a list, with every option; the items read as `T`
    /// (`Value`, or [`JsonText`]).
    pub async fn list_with<T: DeserializeOwned>(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        opts: ListOptions,
    ) -> Result<ListPage<T>> {
        let req = ApiRequest::List {
            label_selector: opts.label_selector,
            field_selector: opts.field_selector,
            limit: opts.limit,
            continue_token: opts.continue_token,
            resource_version: opts.revision,
            resource_version_match: opts.revision.map(|_| ResourceVersionMatch::Exact),
        };
        match self.api_as(Verb::List, kind, namespace, req).await? {
            ReadResponse::List {
                items,
                revision,
                continue_token,
            } => Ok(ListPage {
                items,
                revision,
                continue_token,
            }),
            ReadResponse::Object(_) => Err(ClientError::UnexpectedReply {
                verb: "list",
                got: "an object".into(),
            }),
        }
    }

    /// The changes of a kind after `since`, from the store's history.
    /// `Reason::Expired` when that history was compacted.
    pub async fn changes(
        &self,
        kind: Kind,
        since: u64,
        field_selector: Option<&str>,
    ) -> Result<(Vec<ChangeEvent>, u64, bool)> {
        let req = ApiRequest::Watch {
            since,
            limit: None,
            field_selector: field_selector.map(str::to_string),
        };
        let ns = (!kind.namespaced()).then_some(CLUSTER_SCOPED);
        match self.api(Verb::Watch, kind, ns, req).await? {
            ApiResponse::Changes {
                events,
                through,
                more,
            } => Ok((events, through, more)),
            other => Err(unexpected("watch", &other)),
        }
    }

    /// JSON merge patch (RFC 7386) of one object.
    pub async fn patch(&self, object: &ObjectRef, patch: Value) -> Result<Value> {
        let req = ApiRequest::Patch {
            name: object.name.clone(),
            patch,
        };
        match self
            .api(Verb::Patch, object.kind, object.namespace.as_deref(), req)
            .await?
        {
            ApiResponse::Object(v) => Ok(v),
            other => Err(unexpected("patch", &other)),
        }
    }

    pub async fn create(&self, object: Value) -> Result<Value> {
        self.create_with(object, false).await
    }

    /// Create; with `dry_run`, only admitted and prepared: the answer is
    /// what would be stored, and nothing is written.
    pub async fn create_with(&self, object: Value, dry_run: bool) -> Result<Value> {
        let (kind, ns) = target(&object)?;
        match self
            .api(
                Verb::Create,
                kind,
                ns.as_deref(),
                ApiRequest::Create { object, dry_run },
            )
            .await?
        {
            ApiResponse::Object(v) => Ok(v),
            other => Err(unexpected("create", &other)),
        }
    }

    /// Replace an object; a set `metadata.resourceVersion` makes it a
    /// compare-and-swap (Conflict when the object moved on).
    pub async fn update(&self, object: Value) -> Result<Value> {
        self.update_with(object, false).await
    }

    /// Replace; with `dry_run`, nothing is written (see
    /// [`Client::create_with`]).
    pub async fn update_with(&self, object: Value, dry_run: bool) -> Result<Value> {
        let (kind, ns) = target(&object)?;
        match self
            .api(
                Verb::Update,
                kind,
                ns.as_deref(),
                ApiRequest::Update { object, dry_run },
            )
            .await?
        {
            ApiResponse::Object(v) => Ok(v),
            other => Err(unexpected("update", &other)),
        }
    }

    pub async fn apply(&self, object: Value) -> Result<(ApplyOutcome, Value)> {
        let (kind, ns) = target(&object)?;
        match self
            .api(
                Verb::Apply,
                kind,
                ns.as_deref(),
                ApiRequest::Apply { object },
            )
            .await?
        {
            ApiResponse::Applied { outcome, object } => Ok((outcome, object)),
            other => Err(unexpected("apply", &other)),
        }
    }

    /// Delete by name; with `resource_version`, only if still at it.
    pub async fn delete(&self, object: &ObjectRef, resource_version: Option<u64>) -> Result<Value> {
        let options = DeleteOptions {
            resource_version,
            ..DeleteOptions::default()
        };
        self.delete_with(object, options).await
    }

    /// Delete by name with preconditions and a grace period (see
    /// [`ApiRequest::Delete`]): the answer is the object removed, or the
    /// pod now terminating (`metadata.deletionTimestamp` set).
    pub async fn delete_with(&self, object: &ObjectRef, options: DeleteOptions) -> Result<Value> {
        let req = ApiRequest::Delete {
            name: object.name.clone(),
            resource_version: options.resource_version,
            uid: options.uid,
            grace_period_seconds: options.grace_period_seconds,
            propagation_policy: options.propagation_policy,
            only_if_absent: options.only_if_absent,
        };
        match self
            .api(Verb::Delete, object.kind, object.namespace.as_deref(), req)
            .await?
        {
            ApiResponse::Object(v) => Ok(v),
            other => Err(unexpected("delete", &other)),
        }
    }

    /// Evict a pod through the eviction subresource (see
    /// [`ApiRequest::Evict`]). A budget's refusal is
    /// `Reason::TooManyRequests`, not retried here: the caller decides
    /// when to ask again.
    pub async fn evict(&self, pod: &ObjectRef, options: EvictOptions) -> Result<Value> {
        let req = ApiRequest::Evict {
            name: pod.name.clone(),
            grace_period_seconds: options.grace_period_seconds,
            resource_version: options.resource_version,
            uid: options.uid,
        };
        match self
            .api(Verb::Evict, pod.kind, pod.namespace.as_deref(), req)
            .await?
        {
            ApiResponse::Object(v) => Ok(v),
            other => Err(unexpected("evict", &other)),
        }
    }

    /// Publish manifest text (YAML or JSON, many documents) and wait for the
    /// per-document results.
    pub async fn apply_manifests(&self, text: &str) -> Result<ManifestReply> {
        self.apply_manifests_with(text, false).await
    }

    /// Like [`Client::apply_manifests`]; a dry run writes nothing.
    pub async fn apply_manifests_with(&self, text: &str, dry_run: bool) -> Result<ManifestReply> {
        let body = Bytes::copy_from_slice(text.as_bytes());
        if body.len() > codec::MAX_BODY_BYTES {
            return Err(CodecError::TooLarge {
                size: body.len(),
                limit: codec::MAX_BODY_BYTES,
            }
            .into());
        }
        let mut headers = self.api_headers(Verb::Apply);
        if dry_run {
            headers
                .get_or_insert_with(HeaderMap::new)
                .insert(crate::subject::HEADER_DRY_RUN, "true");
        }
        self.request_raw(self.subjects.manifests(), body, headers)
            .await
    }

    /// Whether this client (or the user it impersonates) may do
    /// `attributes`, and who it is to the store.
    pub async fn review(
        &self,
        attributes: Option<kubus_api::rbac::Attributes>,
    ) -> Result<crate::protocol::Review> {
        let body = codec::encode(&crate::protocol::ReviewRequest {
            attributes,
            token: None,
        })?;
        let reply: crate::protocol::ReviewReply = self
            .request_raw(self.subjects.review(), body, self.api_headers(Verb::Get))
            .await?;
        Ok(reply?)
    }

    /// Verify a bearer token (Kubernetes' TokenReview): the user it names,
    /// or an `Unauthorized`-like refusal saying why not.
    pub async fn review_token(&self, token: &str) -> Result<crate::protocol::Review> {
        let body = codec::encode(&crate::protocol::ReviewRequest {
            attributes: None,
            token: Some(token.to_string()),
        })?;
        let reply: crate::protocol::ReviewReply = self
            .request_raw(self.subjects.review(), body, self.api_headers(Verb::Get))
            .await?;
        Ok(reply?)
    }

    /// A token for ServiceAccount `namespace/name` (`request`: a
    /// TokenRequest, or null for the defaults): the TokenRequest answered.
    pub async fn create_token(&self, namespace: &str, name: &str, request: Value) -> Result<Value> {
        let req = ApiRequest::Token {
            name: name.to_string(),
            request,
        };
        match self
            .api(Verb::Token, Kind::ServiceAccount, Some(namespace), req)
            .await?
        {
            ApiResponse::Object(o) => Ok(o),
            other => Err(unexpected("token", &other)),
        }
    }

    /// Every store peer's status: asks on `store.status` and gathers the
    /// replies that come within `window`, at most `peers_max`, by peer id.
    pub async fn store_status(
        &self,
        window: Duration,
        peers_max: usize,
    ) -> Result<Vec<PeerStatus>> {
        let inbox = self.nats.new_inbox();
        let mut sub = self
            .nats
            .subscribe(inbox.clone())
            .await
            .map_err(|e| ClientError::Nats(format!("subscribe: {e}")))?;
        let subject = self.subjects.store(StoreOp::Status);
        self.nats
            .publish_with_reply(subject.clone(), inbox, Bytes::new())
            .await
            .map_err(|e| ClientError::Nats(format!("publish on {subject}: {e}")))?;
        let deadline = tokio::time::Instant::now() + window;
        let mut out: Vec<PeerStatus> = Vec::new();
        while out.len() < peers_max {
            let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await else {
                break;
            };
            let reply: PeerStatusReply = codec::decode(&msg.payload)?;
            out.push(reply?);
        }
        out.sort_by_key(|p| p.peer_id);
        Ok(out)
    }

    /// Asks store peer `to` (the leader) to add or remove voter `peer_id`;
    /// returns the voters after the change.
    pub async fn change_membership(&self, op: StoreOp, to: u64, peer_id: u64) -> Result<Vec<u64>> {
        let reply: MembershipReply = self
            .request(
                self.subjects.store_peer(op, to),
                &MembershipRequest { peer_id },
            )
            .await?;
        Ok(reply?)
    }

    /// Asks store peer `to` to read its encryption configuration again
    /// and make `req`'s changes to it; returns its keys after.
    pub async fn encryption_keys(
        &self,
        to: u64,
        req: &EncryptionKeysRequest,
    ) -> Result<EncryptionKeys> {
        let reply: EncryptionKeysReply = self
            .request(self.subjects.store_peer(StoreOp::EncryptionKeys, to), req)
            .await?;
        Ok(reply?)
    }

    /// Asks store peer `to` to rewrite every object not sealed with its
    /// resource's writing key.
    pub async fn reseal(&self, to: u64) -> Result<Resealed> {
        let reply: ResealReply = self
            .request_within(
                self.subjects.store_peer(StoreOp::Reseal, to),
                codec::encode(&())?,
                None,
                RESEAL_TIMEOUT,
            )
            .await?;
        Ok(reply?)
    }

    /// Ask a node agent for the resource usage of its pods and machine.
    pub async fn node_usage(&self, node: &str, req: &UsageRequest) -> Result<NodeUsage> {
        let reply: UsageReply = self
            .request(self.subjects.agent(node, AgentOp::Usage), req)
            .await?;
        Ok(reply?)
    }

    /// Asks each of `nodes` for its usage ([`Client::node_usage`]), at
    /// most [`USAGE_ASKED_AT_ONCE`] at a time, each bounded by the request
    /// timeout: (node, its answer), in the order given. A node that does
    /// not answer has its error, so callers can name it.
    pub async fn nodes_usage(
        &self,
        nodes: &[String],
        namespace: Option<&str>,
    ) -> Vec<(String, Result<NodeUsage>)> {
        let mut out = Vec::with_capacity(nodes.len());
        for chunk in nodes.chunks(USAGE_ASKED_AT_ONCE) {
            let asks = chunk.iter().map(|n| async move {
                let req = UsageRequest {
                    namespace: namespace.map(str::to_string),
                };
                (n.clone(), self.node_usage(n, &req).await)
            });
            out.extend(futures::future::join_all(asks).await);
        }
        out
    }

    /// Ask a node agent for a container's log.
    pub async fn logs(&self, node: &str, req: &LogsRequest) -> Result<LogChunk> {
        let reply: LogsReply = self
            .request(self.subjects.agent(node, AgentOp::Logs), req)
            .await?;
        Ok(reply?)
    }

    /// Ask a node agent to run a command in a container; waits as long as
    /// the command may run, and a little more.
    /// A container's log as it is written: the text so far (as
    /// [`Client::logs`] answers `req`), then what is written after, asked
    /// for every [`FOLLOW_POLL`], until the run ends (the log is
    /// finished, or a new run began), the receiver is dropped, or
    /// [`FOLLOW_FAILURES_MAX`] asks in a row fail (the last error is sent).
    pub fn follow_logs(
        &self,
        node: String,
        mut req: LogsRequest,
    ) -> tokio::sync::mpsc::Receiver<Result<String>> {
        let (tx, rx) = tokio::sync::mpsc::channel(FOLLOW_CHUNKS);
        let client = self.clone();
        tokio::spawn(async move {
            let mut chunk = match client.logs(&node, &req).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if tx.send(Ok(std::mem::take(&mut chunk.text))).await.is_err() {
                return;
            }
            let mut failures = 0;
            while !chunk.finished {
                tokio::time::sleep(FOLLOW_POLL).await;
                req.from_offset = Some(chunk.offset);
                match client.logs(&node, &req).await {
                    // a new run began: this one has ended
                    Ok(next) if next.restart != chunk.restart => return,
                    Ok(mut next) => {
                        failures = 0;
                        if tx.send(Ok(std::mem::take(&mut next.text))).await.is_err() {
                            return;
                        }
                        chunk = next;
                    }
                    Err(e) => {
                        failures += 1;
                        if failures >= FOLLOW_FAILURES_MAX {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
            }
        });
        rx
    }

    pub async fn exec(&self, node: &str, req: &ExecRequest) -> Result<ExecResult> {
        let secs = req
            .timeout_secs
            .unwrap_or(EXEC_TIMEOUT_DEFAULT_SECS)
            .min(EXEC_TIMEOUT_MAX_SECS);
        let reply: ExecReply = self
            .request_within(
                self.subjects.agent(node, AgentOp::Exec),
                codec::encode(req)?,
                None,
                Duration::from_secs(secs) + REQUEST_TIMEOUT,
            )
            .await?;
        Ok(reply?)
    }

    /// Ask `node`'s agent to connect to a pod's port and carry it as the
    /// byte stream `req.stream` (whose opener side must be subscribed).
    pub async fn port_forward(&self, node: &str, req: &PortForwardRequest) -> Result<()> {
        let reply: PortForwardReply = self
            .request(self.subjects.agent(node, AgentOp::PortForward), req)
            .await?;
        Ok(reply?)
    }

    /// A byte stream to `port` of a pod on `node`, through its agent:
    /// [`Side::carry`] it.
    pub async fn open_port_forward(
        &self,
        node: &str,
        namespace: &str,
        pod: &str,
        port: u16,
    ) -> Result<Side> {
        let (id, side) = self.open_stream(node).await?;
        let req = PortForwardRequest {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            port,
            stream: id,
        };
        self.port_forward(node, &req).await?;
        Ok(side)
    }

    /// Start `req`'s command in its container on `node` as a session
    /// ([`crate::session`]; `req.stream` is replaced by a fresh one).
    pub async fn exec_session(
        &self,
        node: &str,
        req: &ExecStreamRequest,
    ) -> Result<(crate::session::Input, crate::session::Outputs)> {
        let side = self.open_exec(node, req).await?;
        Ok(crate::session::attach(side))
    }

    /// [`Client::exec_session`]'s stream, to carry frames over.
    pub async fn open_exec(&self, node: &str, req: &ExecStreamRequest) -> Result<Side> {
        let (id, side) = self.open_stream(node).await?;
        let req = ExecStreamRequest {
            stream: id,
            ..req.clone()
        };
        let reply: ExecStreamReply = self
            .request(self.subjects.agent(node, AgentOp::ExecStream), &req)
            .await?;
        reply?;
        Ok(side)
    }

    /// A fresh stream id with `node`'s agent, its opener side subscribed.
    async fn open_stream(&self, node: &str) -> Result<(String, Side)> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let side = Side::subscribe(&self.nats, &self.subjects, node, &id, StreamEnd::Opener)
            .await
            .map_err(|e| ClientError::Nats(e.to_string()))?;
        Ok((id, side))
    }
}

/// The kind and namespace an object names, for the subject of a write.
fn target(object: &Value) -> Result<(Kind, Option<String>)> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let k = Kind::from_type(api_version, kind).map_err(|e| {
        ApiError::invalid(
            None,
            vec![kubus_api::FieldCause::new("kind", e.to_string())],
        )
    })?;
    let ns = kubus_api::meta::namespace(object)
        .map(str::to_string)
        .or_else(|| k.namespaced().then(|| "default".to_string()));
    Ok((k, ns))
}

fn unexpected(verb: &'static str, got: &ApiResponse) -> ClientError {
    let got = match got {
        ApiResponse::Object(_) => "an object",
        ApiResponse::List { .. } => "a list",
        ApiResponse::Changes { .. } => "changes",
        ApiResponse::Applied { .. } => "an apply result",
    };
    ClientError::UnexpectedReply {
        verb,
        got: got.to_string(),
    }
}
