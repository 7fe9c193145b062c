//! One function per verb: a request in, one bus call (or a bounded
//! read-modify-write of them), a response out. The shapes are Kubernetes';
//! every decision is in a pure module ([`crate::route`], [`crate::query`],
//! [`crate::table`], [`crate::status`], `kubus_api`).

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use kubus_api::apply::{record_update, server_side_apply, ApplyRequest};
use kubus_api::error::{ApiError, Reason};
use kubus_api::patch::{apply_patch, PatchType};
use kubus_api::{meta, Kind, ObjectRef};
use kubus_bus::client::{DeleteOptions, EvictOptions, ListOptions};
use kubus_bus::protocol::LogsRequest;
use kubus_bus::{Client, ClientError};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::body::{self, Body};
use crate::discovery::{self, Format};
use crate::query::{self, DeleteQuery, FieldValidation, ListQuery, LogQuery, Query};
use crate::route::{self, Route, Sub, Target};
use crate::status::{self, Failure};
use crate::table::{self, Include};
use crate::{openapi, watch};

/// What every request handler shares.
#[derive(Clone)]
pub struct State {
    /// The gateway's bus client; for an authenticated connection, one that
    /// acts for its user (the store checks the gateway may).
    pub client: Client,
    /// `host:port` clients reach this server at.
    pub server_address: String,
    /// Requests in flight (watches and followed logs excepted).
    pub requests: Arc<Semaphore>,
    /// Watches open.
    pub watches: Arc<Semaphore>,
    /// Who the connection authenticated as (None: no certificate).
    pub user: Option<kubus_api::rbac::UserInfo>,
    /// Bearer tokens recently verified by the store.
    pub tokens: Arc<crate::bearer::Verified>,
}

impl State {
    pub fn new(client: Client, server_address: String) -> State {
        State {
            client,
            server_address,
            requests: Arc::new(Semaphore::new(crate::REQUESTS_IN_FLIGHT_MAX)),
            watches: Arc::new(Semaphore::new(crate::WATCHES_MAX)),
            user: None,
            tokens: Arc::default(),
        }
    }

    /// The state of a connection authenticated as `user`: its requests
    /// go to the store as that user's (the limits stay shared).
    pub fn for_user(&self, user: kubus_api::rbac::UserInfo) -> State {
        State {
            client: self.client.impersonating(&user),
            user: Some(user),
            ..self.clone()
        }
    }
}

type Answer = Result<Response<Body>, Failure>;

fn api(e: ApiError) -> Failure {
    status::from_api(&e)
}

fn client(e: ClientError) -> Failure {
    status::from_client(&e)
}

/// Answers one request, for the connection's user (`state.user`: the
/// client showed a certificate the cluster's CA signed).
pub async fn handle<B>(state: &State, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let route = match route::parse(req.uri().path()) {
        Ok(r) => r,
        Err(route::NotFound) => return body::failure(&status::not_found_path()),
    };
    let public = matches!(route, Route::Version | Route::Health);
    // a request without a certificate may carry a ServiceAccount's token
    let by_token;
    let state = match (&state.user, crate::bearer::token_of(req.headers())) {
        (None, Some(token)) => match state.tokens.user(&state.client, token).await {
            Ok(user) => {
                by_token = state.for_user(user);
                &by_token
            }
            Err(why) => {
                return body::failure(&status::plain(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    &why,
                ))
            }
        },
        _ => state,
    };
    if state.user.is_none() && !public {
        return body::failure(&status::plain(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "a client certificate signed by the cluster's CA, or a ServiceAccount's bearer token, is required (see the kubeconfig `kubus up` writes)",
        ));
    }
    // lists and watches, logs and execs are bounded by their own limits
    let streaming = matches!(&route, Route::Resource(t)
        if t.name.is_none()
            || matches!(t.sub, Some(Sub::Log | Sub::Exec | Sub::Attach | Sub::PortForward)));
    let _permit = if streaming {
        None
    } else {
        match state.requests.try_acquire() {
            Ok(p) => Some(p),
            Err(_) => {
                return body::failure(&status::from_api(&ApiError::too_many_requests(
                    "too many requests in flight; try again later",
                    1000,
                )))
            }
        }
    };
    match answer(state, route, req).await {
        Ok(r) => r,
        Err(f) => body::failure(&f),
    }
}

fn accept(req: &Request<impl Sized>) -> String {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn answer<B>(state: &State, route: Route, req: Request<B>) -> Answer
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let get_only = |req: &Request<B>| {
        if req.method() == Method::GET || req.method() == Method::HEAD {
            Ok(())
        } else {
            Err(status::method_not_allowed(
                req.method().as_str(),
                req.uri().path(),
            ))
        }
    };
    match route {
        Route::Version => {
            get_only(&req)?;
            Ok(body::json(StatusCode::OK, &discovery::version()))
        }
        Route::Health => Ok(body::bytes(StatusCode::OK, "text/plain", "ok")),
        Route::Api | Route::Apis => {
            get_only(&req)?;
            let format = Format::negotiate(&accept(&req));
            let core = route == Route::Api;
            let doc = match (format, core) {
                (Format::Legacy, true) => discovery::api_versions(&state.server_address),
                (Format::Legacy, false) => discovery::group_list(),
                (f, core) => discovery::aggregated(f, core),
            };
            let mut r = body::json_as(StatusCode::OK, &doc, format.content_type());
            r.headers_mut()
                .insert(header::VARY, http::HeaderValue::from_static("Accept"));
            Ok(r)
        }
        Route::Group(g) => {
            get_only(&req)?;
            Ok(body::json(StatusCode::OK, &discovery::group(&g)))
        }
        Route::Resources { group, version } => {
            get_only(&req)?;
            Ok(body::json(
                StatusCode::OK,
                &discovery::resource_list(&group, &version),
            ))
        }
        Route::OpenApiIndex => {
            get_only(&req)?;
            Ok(body::json(StatusCode::OK, &openapi::index()))
        }
        Route::OpenApiV2 => {
            get_only(&req)?;
            Ok(body::bytes(
                StatusCode::OK,
                crate::openapi_v2::CONTENT_TYPE,
                Bytes::from_static(openapi::v2()),
            ))
        }
        Route::OpenApi { group, version } => {
            get_only(&req)?;
            Ok(body::json(
                StatusCode::OK,
                &openapi::document(&group, &version),
            ))
        }
        Route::Resource(target) => resource(state, target, req).await,
        Route::Metrics(target) => {
            get_only(&req)?;
            metrics(&state.client, &target, &Query::parse(req.uri().query())).await
        }
    }
}

/// `metrics.k8s.io`: the user must be allowed the metrics resource itself
/// (as metrics-server's RBAC says); the nodes or pods are listed as the
/// user, then their agents are asked for their figures.
async fn metrics(c: &Client, t: &crate::metrics::Target, q: &Query) -> Answer {
    use crate::metrics::{self as m, Target as M};
    let verb = if t.name().is_some() { "get" } else { "list" };
    let a = kubus_api::rbac::Attributes::new(verb, m::GROUP, t.resource())
        .in_namespace(t.namespace())
        .named(t.name());
    let review = c.review(Some(a)).await.map_err(client)?;
    if !review.allowed {
        return Err(api(ApiError::new(
            Reason::Forbidden,
            review.reason.unwrap_or_else(|| "forbidden".into()),
        )));
    }
    let selector = q.nonempty("labelSelector");
    let not_measured = |what: &str| {
        api(ApiError::new(
            Reason::NotFound,
            format!(
                "{}.{} {what:?} not found: its node has not measured it (yet)",
                t.resource(),
                m::GROUP
            ),
        ))
    };
    let items: Vec<Value> = match t {
        M::Nodes { name } => {
            let (mut nodes, _) = c
                .list(Kind::Node, None, selector, None)
                .await
                .map_err(client)?;
            if let Some(n) = name {
                nodes.retain(|x| meta::name(x) == Some(n));
                if nodes.is_empty() {
                    return Err(api(ApiError::not_found(ObjectRef::new(
                        Kind::Node,
                        None,
                        n,
                    ))));
                }
            }
            let names: Vec<String> = nodes
                .iter()
                .filter_map(|n| meta::name(n).map(str::to_string))
                .collect();
            let answers = c.nodes_usage(&names, None).await;
            nodes
                .iter()
                .zip(answers)
                .filter_map(|(node, (_, u))| m::node_metrics(node, &u.ok()?))
                .collect()
        }
        M::Pods { namespace, name } => {
            let (mut pods, _) = c
                .list(Kind::Pod, namespace.as_deref(), selector, None)
                .await
                .map_err(client)?;
            if let Some(n) = name {
                pods.retain(|x| meta::name(x) == Some(n));
                if pods.is_empty() {
                    return Err(api(ApiError::not_found(ObjectRef::new(
                        Kind::Pod,
                        namespace.as_deref(),
                        n,
                    ))));
                }
            }
            let answers = c
                .nodes_usage(&m::nodes_of(&pods), namespace.as_deref())
                .await;
            let mut figures = std::collections::HashMap::new();
            let mut asked = Vec::new();
            for (_, u) in answers {
                if let Ok(u) = u {
                    asked.push(u);
                }
            }
            for (i, u) in asked.iter().enumerate() {
                for p in &u.pods {
                    figures.insert((p.namespace.as_str(), p.name.as_str()), (i, p));
                }
            }
            pods.iter()
                .filter_map(|pod| {
                    let key = (meta::namespace(pod)?, meta::name(pod)?);
                    let (i, p) = figures.get(&key)?;
                    Some(m::pod_metrics(pod, &asked[*i], p))
                })
                .collect()
        }
    };
    match (t.name(), items.len()) {
        (Some(n), 0) => Err(not_measured(n)),
        (Some(_), _) => Ok(body::json(
            StatusCode::OK,
            items.first().unwrap_or(&Value::Null),
        )),
        (None, _) => Ok(body::json(StatusCode::OK, &m::list(t, items))),
    }
}

async fn resource<B>(state: &State, t: Target, req: Request<B>) -> Answer
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let q = Query::parse(req.uri().query());
    let accept = accept(&req);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let not_allowed = || status::method_not_allowed(method.as_str(), &path);
    let c = &state.client;
    if let Some(sub @ (Sub::Log | Sub::Exec | Sub::Attach | Sub::PortForward)) = t.sub {
        // these go to the pod's node agent, not through the store's
        // authorization: ask the store first whether the user may
        let verb = if sub == Sub::Log { "get" } else { "create" };
        let a = kubus_api::rbac::Attributes::new(verb, "", t.kind.resource())
            .in_namespace(t.namespace.as_deref())
            .named(t.name.as_deref())
            .subresource(sub.as_str());
        let review = c.review(Some(a)).await.map_err(client)?;
        if !review.allowed {
            return Err(api(ApiError::new(
                kubus_api::Reason::Forbidden,
                review.reason.unwrap_or_else(|| "forbidden".into()),
            )));
        }
    }
    match (&method, t.name.as_deref(), t.sub) {
        (&Method::GET, None, None) => {
            let lq = ListQuery::parse(&q).map_err(api)?;
            if lq.watch {
                let permit = Arc::clone(&state.watches)
                    .try_acquire_owned()
                    .map_err(|_| {
                        api(ApiError::too_many_requests(
                            "too many watches open; try again later",
                            1000,
                        ))
                    })?;
                let include =
                    table::wanted(&accept).then(|| Include::parse(q.get("includeObject")));
                return watch::serve(c.clone(), t, lq, include, permit).await;
            }
            list(c, &t, &lq, &accept, &q).await
        }
        (&Method::GET, Some(name), None | Some(Sub::Status)) if !table::wanted(&accept) => {
            let bytes = c
                .get_json(t.kind, t.namespace.as_deref(), name)
                .await
                .map_err(client)?;
            Ok(body::bytes(StatusCode::OK, "application/json", bytes))
        }
        (&Method::GET, Some(name), None | Some(Sub::Status)) => {
            let obj = c
                .get(t.kind, t.namespace.as_deref(), name)
                .await
                .map_err(client)?;
            one(t.kind, obj, &accept, &q)
        }
        (&Method::GET, Some(name), Some(Sub::Scale)) => {
            let obj = c
                .get(t.kind, t.namespace.as_deref(), name)
                .await
                .map_err(client)?;
            Ok(body::json(StatusCode::OK, &scale_of(t.kind, &obj)))
        }
        (&Method::GET, Some(name), Some(Sub::Log)) => logs(c, &t, name, &q).await,
        (&Method::POST, None, None) => {
            let dry_run = query::dry_run(&q).map_err(api)?;
            FieldValidation::parse(&q).map_err(api)?;
            if t.kind.namespaced() && t.namespace.is_none() {
                return Err(not_allowed());
            }
            let manager = field_manager(&q, &req);
            let obj = read_object(req, &content_type).await?;
            let mut obj = stamp(&t, obj, None).map_err(api)?;
            record_update(t.kind, &manager, &now(), None, &mut obj);
            let created = c.create_with(obj, dry_run).await.map_err(client)?;
            Ok(body::json(StatusCode::CREATED, &created))
        }
        (&Method::POST, Some(name), Some(Sub::Token)) => {
            let request = read_object(req, &content_type).await?;
            let ns = t.namespace.as_deref().unwrap_or("default");
            let answered = c.create_token(ns, name, request).await.map_err(client)?;
            Ok(body::json(StatusCode::CREATED, &answered))
        }
        (&Method::POST, Some(name), Some(Sub::Eviction)) => {
            let eviction = read_object(req, &content_type).await?;
            evict(c, &t, name, &eviction).await
        }
        (&Method::PUT, Some(name), None | Some(Sub::Status)) => {
            let dry_run = query::dry_run(&q).map_err(api)?;
            FieldValidation::parse(&q).map_err(api)?;
            let manager = field_manager(&q, &req);
            let obj = read_object(req, &content_type).await?;
            let mut obj = stamp(&t, obj, Some(name)).map_err(api)?;
            let before = c
                .get(t.kind, t.namespace.as_deref(), name)
                .await
                .map_err(client)?;
            record_update(t.kind, &manager, &now(), Some(&before), &mut obj);
            let updated = c.update_with(obj, dry_run).await.map_err(client)?;
            Ok(body::json(StatusCode::OK, &updated))
        }
        (&Method::PUT, Some(name), Some(Sub::Scale)) => {
            let dry_run = query::dry_run(&q).map_err(api)?;
            let manager = field_manager(&q, &req);
            let scale = read_object(req, &content_type).await?;
            let replicas = replicas_of_scale(&scale).map_err(api)?;
            let precondition = meta::resource_version(&scale);
            set_replicas(c, &t, name, (replicas, &manager), precondition, dry_run).await
        }
        (&Method::PATCH, Some(name), None | Some(Sub::Status)) if is_apply(&content_type) => {
            let dry_run = query::dry_run(&q).map_err(api)?;
            FieldValidation::parse(&q).map_err(api)?;
            let manager = q
                .nonempty("fieldManager")
                .ok_or_else(|| {
                    api(ApiError::bad_request(
                        "fieldManager is required for apply requests",
                    ))
                })?
                .to_string();
            let force = q.flag("force").map_err(api)?;
            let applied = read_object(req, "application/yaml").await?;
            let applied = stamp(&t, applied, Some(name)).map_err(api)?;
            let (code, obj) =
                apply_object(c, &t, name, (&manager, force), &applied, dry_run).await?;
            Ok(body::json(code, &obj))
        }
        (&Method::PATCH, Some(name), None | Some(Sub::Status)) => {
            let dry_run = query::dry_run(&q).map_err(api)?;
            FieldValidation::parse(&q).map_err(api)?;
            let ty = patch_type(&content_type)?;
            let manager = field_manager(&q, &req);
            let patch = read_json(req).await?;
            let patched = patch_object(c, &t, name, (ty, &manager), &patch, dry_run).await?;
            Ok(body::json(StatusCode::OK, &patched))
        }
        (&Method::PATCH, Some(name), Some(Sub::Scale)) => {
            let dry_run = query::dry_run(&q).map_err(api)?;
            let ty = patch_type(&content_type)?;
            let manager = field_manager(&q, &req);
            let patch = read_json(req).await?;
            let obj = c
                .get(t.kind, t.namespace.as_deref(), name)
                .await
                .map_err(client)?;
            let scale = apply_patch(t.kind, &scale_of(t.kind, &obj), ty, &patch).map_err(api)?;
            let replicas = replicas_of_scale(&scale).map_err(api)?;
            let precondition = patch
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|rv| rv.parse().ok());
            set_replicas(c, &t, name, (replicas, &manager), precondition, dry_run).await
        }
        (&Method::DELETE, Some(name), None) => {
            let raw = read_body(req).await?;
            let opts_body: Value = if raw.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&raw).map_err(|e| {
                    api(ApiError::bad_request(format!(
                        "the DeleteOptions body is not valid JSON: {e}"
                    )))
                })?
            };
            let d = DeleteQuery::parse(&q, &opts_body).map_err(api)?;
            let target = ObjectRef::new(t.kind, t.namespace.as_deref(), name);
            let removed = c
                .delete_with(
                    &target,
                    DeleteOptions {
                        resource_version: d.resource_version,
                        uid: d.uid,
                        grace_period_seconds: d.grace_period_seconds,
                        propagation_policy: d.propagation,
                        only_if_absent: Vec::new(),
                    },
                )
                .await
                .map_err(client)?;
            Ok(body::json(StatusCode::OK, &removed))
        }
        (&Method::GET | &Method::POST, Some(name), Some(sub @ (Sub::Exec | Sub::Attach))) => {
            let ns = t.namespace.clone().unwrap_or_else(|| "default".into());
            crate::exec::serve(c, &ns, name, req, sub == Sub::Attach).await
        }
        (&Method::GET | &Method::POST, Some(name), Some(Sub::PortForward)) => {
            let ns = t.namespace.clone().unwrap_or_else(|| "default".into());
            crate::portforward::serve(c, &ns, name, req).await
        }
        _ => Err(not_allowed()),
    }
}

/// Reads a body of at most [`crate::BODY_BYTES_MAX`] bytes.
async fn read_body<B>(req: Request<B>) -> Result<Bytes, Failure>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(req.into_body(), crate::BODY_BYTES_MAX)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(api(ApiError::too_large(format!(
                "the request body is larger than {} bytes",
                crate::BODY_BYTES_MAX
            ))))
        }
        Err(e) => Err(api(ApiError::bad_request(format!(
            "cannot read the request body: {e}"
        )))),
    }
}

/// Reads a JSON (or YAML) object; a protobuf body is refused, naming
/// what works.
async fn read_object<B>(req: Request<B>, content_type: &str) -> Result<Value, Failure>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media.contains("protobuf") {
        return Err(status::plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "protobuf request bodies are not supported by kubus; send JSON. \
             For `kubectl create deployment|configmap|secret|…`, run it with \
             `--dry-run=client -o yaml | kubectl apply -f -`",
        ));
    }
    let raw = read_body(req).await?;
    let v: Value = if media.ends_with("yaml") {
        let text = std::str::from_utf8(&raw)
            .map_err(|_| api(ApiError::bad_request("the YAML request body is not UTF-8")))?;
        serde_saphyr::from_str(text).map_err(|e| {
            api(ApiError::bad_request(format!(
                "the request body is not valid YAML: {e}"
            )))
        })?
    } else {
        serde_json::from_slice(&raw).map_err(|e| {
            api(ApiError::bad_request(format!(
                "the request body is not valid JSON: {e}"
            )))
        })?
    };
    if !v.is_object() {
        return Err(api(ApiError::bad_request(
            "the request body must be a JSON object",
        )));
    }
    Ok(v)
}

async fn read_json<B>(req: Request<B>) -> Result<Value, Failure>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let raw = read_body(req).await?;
    serde_json::from_slice(&raw).map_err(|e| {
        api(ApiError::bad_request(format!(
            "the patch is not valid JSON: {e}"
        )))
    })
}

/// Server-side apply's content type.
const APPLY_PATCH: &str = "application/apply-patch+yaml";

fn is_apply(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or_default().trim() == APPLY_PATCH
}

fn patch_type(content_type: &str) -> Result<PatchType, Failure> {
    PatchType::from_content_type(content_type).ok_or_else(|| {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        let why = format!(
            "patch content type {media:?} is not supported: use \
             application/merge-patch+json, application/json-patch+json, \
             application/strategic-merge-patch+json or {APPLY_PATCH}"
        );
        status::plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &why,
        )
    })
}

/// Who makes a write (its `managedFields` entry): `?fieldManager=`, else
/// the client's name from its `User-Agent` (`kubectl/v1.33…` → `kubectl`),
/// as the Kubernetes API server does.
fn field_manager<B>(q: &Query, req: &Request<B>) -> String {
    if let Some(m) = q.nonempty("fieldManager") {
        return m.to_string();
    }
    let agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match agent.split('/').next().map(str::trim) {
        Some(name) if !name.is_empty() => name.chars().take(128).collect(),
        _ => "unknown".into(),
    }
}

/// Now, as managedFields write times (RFC 3339, whole seconds).
fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Server-side apply (`kubus_api::apply`) as a read-modify-write: the
/// object read (or none), the applied configuration merged by field
/// ownership, then created or written back at the revision read; retried
/// when the object moved on. 201 when it was created.
async fn apply_object(
    c: &Client,
    t: &Target,
    name: &str,
    (manager, force): (&str, bool),
    applied: &Value,
    dry_run: bool,
) -> Result<(StatusCode, Value), Failure> {
    let mut last = None;
    for _ in 0..crate::PATCH_ATTEMPTS {
        let current = match c.get(t.kind, t.namespace.as_deref(), name).await {
            Ok(v) => Some(v),
            Err(ClientError::Api(e)) if e.reason == Reason::NotFound => None,
            Err(e) => return Err(client(e)),
        };
        let now = now();
        let req = ApplyRequest {
            kind: t.kind,
            manager,
            force,
            now: &now,
        };
        let result = server_side_apply(&req, current.as_ref(), applied).map_err(api)?;
        let written = match &current {
            None => c
                .create_with(result, dry_run)
                .await
                .map(|v| (StatusCode::CREATED, v)),
            Some(cur) if *cur == result => return Ok((StatusCode::OK, result)),
            Some(_) => c
                .update_with(result, dry_run)
                .await
                .map(|v| (StatusCode::OK, v)),
        };
        match written {
            Ok(r) => return Ok(r),
            Err(ClientError::Api(e))
                if matches!(e.reason, Reason::Conflict | Reason::AlreadyExists) =>
            {
                last = Some(e);
            }
            Err(e) => return Err(client(e)),
        }
    }
    Err(api(last.unwrap_or_else(|| {
        ApiError::conflict(
            ObjectRef::new(t.kind, t.namespace.as_deref(), name),
            "the object kept changing while it was applied",
        )
    })))
}

/// Fills `apiVersion`, `kind`, the namespace and (for a replace) the name
/// from the path, refusing a body that says otherwise.
pub fn stamp(t: &Target, mut obj: Value, name: Option<&str>) -> Result<Value, ApiError> {
    let kind = t.kind;
    let o = obj
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    let said = |field: &str| o.get(field).and_then(Value::as_str).map(str::to_string);
    match (said("apiVersion"), said("kind")) {
        (None, None) => {}
        (Some(v), Some(k)) if v == kind.api_version() && k == kind.as_str() => {}
        (v, k) => {
            return Err(ApiError::bad_request(format!(
                "the body is {} {}, but the path names {} {}",
                v.unwrap_or_default(),
                k.unwrap_or_default(),
                kind.api_version(),
                kind.as_str()
            )))
        }
    }
    o.insert("apiVersion".into(), json!(kind.api_version()));
    o.insert("kind".into(), json!(kind.as_str()));
    let m = o
        .entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    if let Some(ns) = &t.namespace {
        match m.get("namespace").and_then(Value::as_str) {
            Some(given) if given != ns => {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({given}) does not match the namespace sent on the request ({ns})"
                )))
            }
            _ => {
                m.insert("namespace".into(), json!(ns));
            }
        }
    }
    if let Some(name) = name {
        match m.get("name").and_then(Value::as_str) {
            Some(given) if given != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({given}) does not match the name on the URL ({name})"
                )))
            }
            _ => {
                m.insert("name".into(), json!(name));
            }
        }
    }
    Ok(obj)
}

async fn list(c: &Client, t: &Target, lq: &ListQuery, accept: &str, q: &Query) -> Answer {
    let ns = t.namespace.as_deref();
    if !table::wanted(accept) {
        return list_json(c, t, lq).await;
    }
    let (items, revision, next) = if lq.limit.is_some() || lq.continue_token.is_some() || lq.exact {
        let page = c
            .list_with(
                t.kind,
                ns,
                ListOptions {
                    label_selector: lq.label_selector.clone(),
                    field_selector: lq.field_selector.clone(),
                    limit: lq.limit,
                    continue_token: lq.continue_token.clone(),
                    revision: lq.exact.then_some(lq.resource_version).flatten(),
                },
            )
            .await
            .map_err(client)?;
        (page.items, page.revision, page.continue_token)
    } else {
        let (items, revision) = c
            .list(
                t.kind,
                ns,
                lq.label_selector.as_deref(),
                lq.field_selector.as_deref(),
            )
            .await
            .map_err(client)?;
        (items, revision, None)
    };
    let include = Include::parse(q.get("includeObject"));
    let t = table::table(
        t.kind,
        &items,
        (revision, next.as_deref()),
        include,
        true,
        jiff::Timestamp::now(),
    );
    Ok(body::json(StatusCode::OK, &t))
}

/// A list as JSON: the items' text as the store's replies carry it
/// (transcoded, no `Value` built), every page unless a limit or a token
/// asks for one.
async fn list_json(c: &Client, t: &Target, lq: &ListQuery) -> Answer {
    let opts = ListOptions {
        label_selector: lq.label_selector.clone(),
        field_selector: lq.field_selector.clone(),
        limit: lq.limit,
        continue_token: lq.continue_token.clone(),
        revision: lq.exact.then_some(lq.resource_version).flatten(),
    };
    let c_ns = t.namespace.as_deref();
    let (items, revision, next) = if lq.limit.is_some() || lq.continue_token.is_some() {
        let page = c.list_page_json(t.kind, c_ns, opts).await.map_err(client)?;
        (page.items, page.revision, page.continue_token)
    } else {
        let (items, revision) = c.list_json(t.kind, c_ns, opts).await.map_err(client)?;
        (items, revision, None)
    };
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(n) = next {
        metadata["continue"] = json!(n);
    }
    let head = json!({
        "kind": format!("{}List", t.kind.as_str()),
        "apiVersion": t.kind.api_version(),
        "metadata": metadata,
    });
    Ok(body::bytes(
        StatusCode::OK,
        "application/json",
        json_list(&head, &items),
    ))
}

/// `head` (an object) with an `items` array of the JSON texts `items`.
pub fn json_list(head: &Value, items: &[kubus_bus::protocol::JsonText]) -> Vec<u8> {
    let mut out = serde_json::to_vec(head).unwrap_or_else(|_| b"{}".to_vec());
    out.pop(); // the closing brace
    out.extend_from_slice(if out.len() > 1 {
        b",\"items\":["
    } else {
        b"\"items\":["
    });
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&item.0);
    }
    out.extend_from_slice(b"]}");
    out
}

/// One object, or its one-row `Table`.
fn one(kind: Kind, obj: Value, accept: &str, q: &Query) -> Answer {
    if table::wanted(accept) {
        let revision = meta::resource_version(&obj).unwrap_or_default();
        let t = table::table(
            kind,
            std::slice::from_ref(&obj),
            (revision, None),
            Include::parse(q.get("includeObject")),
            true,
            jiff::Timestamp::now(),
        );
        return Ok(body::json(StatusCode::OK, &t));
    }
    Ok(body::json(StatusCode::OK, &obj))
}

/// A patch as a read-modify-write: the patch applied (by
/// `kubus_api::patch`) to the object read, written back at the revision
/// read; retried when the object moved on meanwhile, unless the patch
/// itself names a `resourceVersion` (then that is a precondition).
/// `dry_run`: the patched object as it would be stored, nothing written.
async fn patch_object(
    c: &Client,
    t: &Target,
    name: &str,
    (ty, manager): (PatchType, &str),
    patch: &Value,
    dry_run: bool,
) -> Result<Value, Failure> {
    let pinned = patch.pointer("/metadata/resourceVersion").is_some();
    let mut last = None;
    for _ in 0..crate::PATCH_ATTEMPTS {
        let current = c
            .get(t.kind, t.namespace.as_deref(), name)
            .await
            .map_err(client)?;
        let mut patched = apply_patch(t.kind, &current, ty, patch).map_err(api)?;
        if patched == current {
            // nothing changes: nothing is written (kubectl says "unchanged")
            return Ok(current);
        }
        record_update(t.kind, manager, &now(), Some(&current), &mut patched);
        match c.update_with(patched, dry_run).await {
            Ok(v) => return Ok(v),
            Err(ClientError::Api(e)) if e.reason == Reason::Conflict && !pinned => {
                last = Some(e);
            }
            Err(e) => return Err(client(e)),
        }
    }
    Err(api(last.unwrap_or_else(|| {
        ApiError::conflict(
            ObjectRef::new(t.kind, t.namespace.as_deref(), name),
            "the object kept changing while it was patched",
        )
    })))
}

/// The `autoscaling/v1` `Scale` of a scalable object.
pub fn scale_of(kind: Kind, obj: &Value) -> Value {
    let m = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let selector = match kind {
        Kind::ReplicationController => obj.pointer("/spec/selector").map(|s| {
            let labels = serde_json::from_value(s.clone()).unwrap_or_default();
            kubus_api::selector::Selector::from_match_labels(&labels).to_string()
        }),
        _ => kubus_api::selector::Selector::from_value(obj.pointer("/spec/selector"))
            .map(|s| s.to_string()),
    };
    let mut metadata = json!({});
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(field) {
            metadata[field] = v.clone();
        }
    }
    let mut s = json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {"replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0)},
    });
    if let Some(sel) = selector {
        s["status"]["selector"] = json!(sel);
    }
    s
}

fn replicas_of_scale(scale: &Value) -> Result<i64, ApiError> {
    match scale.pointer("/spec/replicas") {
        Some(v) => v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::invalid(
                None,
                vec![kubus_api::FieldCause::new(
                    "spec.replicas",
                    "must be a non-negative integer",
                )],
            )
        }),
        None => Err(ApiError::invalid(
            None,
            vec![kubus_api::FieldCause::new("spec.replicas", "is required")],
        )),
    }
}

async fn set_replicas(
    c: &Client,
    t: &Target,
    name: &str,
    (replicas, manager): (i64, &str),
    precondition: Option<u64>,
    dry_run: bool,
) -> Answer {
    let patch = match precondition {
        Some(rv) => {
            json!({"metadata": {"resourceVersion": rv.to_string()}, "spec": {"replicas": replicas}})
        }
        None => json!({"spec": {"replicas": replicas}}),
    };
    let updated = patch_object(c, t, name, (PatchType::Merge, manager), &patch, dry_run).await?;
    Ok(body::json(StatusCode::OK, &scale_of(t.kind, &updated)))
}

async fn evict(c: &Client, t: &Target, name: &str, eviction: &Value) -> Answer {
    if let Some(n) = eviction.pointer("/metadata/name").and_then(Value::as_str) {
        if n != name {
            return Err(api(ApiError::bad_request(format!(
                "the Eviction names pod {n:?}, but the path names {name:?}"
            ))));
        }
    }
    let opts = eviction
        .get("deleteOptions")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let d = DeleteQuery::parse(&Query::default(), &opts).map_err(api)?;
    let pod = ObjectRef::new(Kind::Pod, t.namespace.as_deref(), name);
    c.evict(
        &pod,
        EvictOptions {
            grace_period_seconds: d.grace_period_seconds,
            resource_version: d.resource_version,
            uid: d.uid,
        },
    )
    .await
    .map_err(client)?;
    Ok(body::json(
        StatusCode::CREATED,
        &status::success(Kind::Pod, name),
    ))
}

async fn logs(c: &Client, t: &Target, name: &str, q: &Query) -> Answer {
    let lq = LogQuery::parse(q).map_err(api)?;
    let ns = t.namespace.clone().unwrap_or_else(|| "default".into());
    let pod = c.get(Kind::Pod, Some(&ns), name).await.map_err(client)?;
    let node = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            api(ApiError::bad_request(format!(
                "pod {ns}/{name} is not scheduled to a node yet"
            )))
        })?;
    let req = LogsRequest {
        namespace: ns,
        pod: name.to_string(),
        container: lq.container.clone(),
        limit_bytes: lq.limit_bytes,
        previous: lq.previous,
        from_offset: None,
    };
    let warning = (!lq.ignored.is_empty()).then(|| {
        format!(
            "kubus logs carry no per-line times; ignored: {}",
            lq.ignored.join(", ")
        )
    });
    let mut r = if lq.follow {
        let (tx, body) = body::channel();
        let mut texts = c.follow_logs(node, req);
        let tail = lq.tail_lines;
        tokio::spawn(async move {
            let mut first = true;
            while let Some(next) = texts.recv().await {
                let text = match next {
                    Ok(t) if first => {
                        first = false;
                        tail.map_or(t.as_str(), |n| query::tail_lines(&t, n))
                            .to_string()
                    }
                    Ok(t) => t,
                    Err(e) => {
                        tracing::debug!(error = %e, "a followed log ended");
                        break;
                    }
                };
                if !text.is_empty() && tx.send(Bytes::from(text)).await.is_err() {
                    break;
                }
            }
        });
        body::streamed("text/plain", body)
    } else {
        let chunk = c.logs(&node, &req).await.map_err(client)?;
        let text = match lq.tail_lines {
            Some(n) => query::tail_lines(&chunk.text, n).to_string(),
            None => chunk.text,
        };
        body::bytes(StatusCode::OK, "text/plain", text)
    };
    if let Some(w) = warning {
        body::warn(&mut r, &w);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: Kind, ns: Option<&str>) -> Target {
        Target {
            kind,
            namespace: ns.map(str::to_string),
            name: None,
            sub: None,
        }
    }

    #[test]
    fn bodies_take_the_paths_namespace_kind_and_name() {
        let t = target(Kind::ConfigMap, Some("team"));
        let got = stamp(&t, json!({"metadata": {"name": "c"}, "data": {}}), None).expect("stamp");
        assert_eq!(got["apiVersion"], "v1");
        assert_eq!(got["kind"], "ConfigMap");
        assert_eq!(got["metadata"]["namespace"], "team");
        let e = stamp(
            &t,
            json!({"metadata": {"name": "c", "namespace": "other"}}),
            None,
        )
        .expect_err("other namespace");
        assert!(e.message.contains("does not match the namespace"), "{e}");
        let e = stamp(
            &t,
            json!({"apiVersion": "apps/v1", "kind": "Deployment"}),
            None,
        )
        .expect_err("other kind");
        assert!(e.message.contains("path names v1 ConfigMap"), "{e}");
        let e = stamp(&t, json!({"metadata": {"name": "a"}}), Some("b")).expect_err("other name");
        assert!(e.message.contains("does not match the name"), "{e}");
        let got = stamp(&t, json!({}), Some("b")).expect("named by the path");
        assert_eq!(got["metadata"]["name"], "b");
    }

    #[test]
    fn lists_join_item_texts() {
        use kubus_bus::protocol::JsonText;
        let head = json!({"kind": "PodList", "metadata": {"resourceVersion": "3"}});
        let items = [
            JsonText(b"{\"a\":1}".to_vec()),
            JsonText(b"{\"b\":2}".to_vec()),
        ];
        let out: Value = serde_json::from_slice(&json_list(&head, &items)).expect("json");
        assert_eq!(out["items"], json!([{"a": 1}, {"b": 2}]));
        assert_eq!(out["kind"], "PodList");
        let empty: Value = serde_json::from_slice(&json_list(&head, &[])).expect("json");
        assert_eq!(empty["items"], json!([]));
    }

    #[test]
    fn scales_read_replicas_and_selector() {
        let d = json!({"metadata": {"name": "web", "namespace": "a", "resourceVersion": "9"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": 2}});
        let s = scale_of(Kind::Deployment, &d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=web"}));
        assert_eq!(s["metadata"]["resourceVersion"], "9");
        assert_eq!(
            replicas_of_scale(&json!({"spec": {"replicas": 5}})).ok(),
            Some(5)
        );
        assert!(replicas_of_scale(&json!({"spec": {"replicas": -1}})).is_err());
        assert!(replicas_of_scale(&json!({"spec": {}})).is_err());
        let rc = json!({"spec": {"replicas": 1, "selector": {"app": "x", "tier": "y"}}});
        assert_eq!(
            scale_of(Kind::ReplicationController, &rc)["status"]["selector"],
            "app=x,tier=y"
        );
    }
}
