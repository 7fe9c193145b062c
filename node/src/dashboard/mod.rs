//! The live web dashboard, served on the mesh node's HTTP endpoint
//! (`--http-address`) by every node with the control role (`kubus up`
//! included): nodes and their allocation, workloads and their rollouts,
//! pods and why they wait, Services and their endpoints, the Events
//! timeline, and each object's history from the store's change log.
//!
//! The node watches the kinds in [`rows::KINDS`] as the bus's `dashboard`
//! identity — read-only, no Secrets, what its RBAC grants
//! (docs/security.md) — and keeps their rows in the [`hub::Hub`]. A page
//! opens one server-sent-event stream (`GET /dashboard/stream`): a
//! snapshot, then every change as it is applied; the browser reconnects by
//! itself with the last event id, and resumes from that mark (see
//! [`hub`]). No polling. History (`GET /dashboard/history`) is read from
//! the store's change log on request. While a page is open, the node
//! agents are asked for their figures every [`USAGE_EVERY`] (as `kubus
//! top` asks them) and the pages are sent them (`usage` events).
//!
//! Routes: `/` (the page), `/dashboard.js`, `/dashboard.css`,
//! `/dashboard/stream`, `/dashboard/history?kind=&namespace=&name=`.

pub mod history;
pub mod hub;
pub mod rows;
pub mod usage;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use kubus_api::Kind;
use kubus_bus::watch::{watch, WatchSpec};
use kubus_bus::{Client, ClientError};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, watch as latest, Notify};
use tracing::{debug, warn};

use hub::{Entry, Hub, Start, Update};
use rows::Row;

/// A response body: whole, or a stream of server-sent events.
pub type Body = BoxBody<Bytes, Infallible>;

/// Batches of updates buffered for the pages; a page further behind is
/// sent a snapshot.
const BROADCAST_BATCHES: usize = 4096;
/// Most updates in one server-sent event.
const UPDATES_PER_MESSAGE: usize = 5_000;
/// Events buffered between a page's writer and its connection.
const PAGE_BUFFER: usize = 8;
/// A comment sent on a quiet stream, so proxies and the browser know it
/// lives.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Change-log reads one history request makes at most, and how long it
/// may take; past either, it answers what it has read (`truncated`).
const HISTORY_CALLS_MAX: usize = 400;
const HISTORY_TIME_MAX: Duration = Duration::from_secs(10);
/// How often the node agents are asked for their figures while a page is
/// open (they sample every 10 s while asked).
const USAGE_EVERY: Duration = Duration::from_secs(10);

/// How often, and how many times, a dashboard starting asks whether its
/// RBAC is in place yet (made by the store at its first start).
const RBAC_ASK_EVERY: Duration = Duration::from_millis(250);
const RBAC_ASKS_MAX: u32 = 120;

/// The paths the dashboard answers.
pub const ROUTES: [&str; 6] = [
    "/",
    "/index.html",
    "/dashboard.js",
    "/dashboard.css",
    "/dashboard/stream",
    "/dashboard/history",
];

const INDEX_HTML: &str = include_str!("assets/index.html");
const DASHBOARD_JS: &str = include_str!("assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("assets/dashboard.css");

/// The dashboard of one mesh node.
pub struct Dashboard {
    hub: Mutex<Hub>,
    updates: broadcast::Sender<Arc<Vec<Arc<Entry>>>>,
    /// Names this process's hub in the marks it hands out.
    epoch: String,
    client: Client,
    /// The agents' latest figures.
    usage: latest::Sender<Option<Arc<usage::Figures>>>,
    /// A page opened: ask the agents now, not at the next turn.
    page_opened: Notify,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// Waits, a bounded time, until the store lets `client` list what the
/// dashboard shows: on a cluster's first start its roles and bindings are
/// written just after the store serves (and `view` fills in by
/// aggregation), and watches started before would begin with a round of
/// Forbidden retries. Past the bound the watches start anyway (and retry).
pub async fn await_access(client: &Client) {
    let needed = [
        kubus_api::rbac::Attributes::new("list", "", "nodes"),
        kubus_api::rbac::Attributes::new("list", "autoscaling", "horizontalpodautoscalers"),
    ];
    for _ in 0..RBAC_ASKS_MAX {
        let mut allowed = true;
        for a in &needed {
            allowed &= matches!(client.review(Some(a.clone())).await, Ok(r) if r.allowed);
        }
        if allowed {
            return;
        }
        tokio::time::sleep(RBAC_ASK_EVERY).await;
    }
}

impl Dashboard {
    /// Start watching every kind the dashboard shows, with `client` (the
    /// `dashboard` identity's connection).
    pub fn start(client: Client) -> Arc<Dashboard> {
        let (updates, _) = broadcast::channel(BROADCAST_BATCHES);
        let d = Arc::new(Dashboard {
            hub: Mutex::new(Hub::default()),
            updates,
            epoch: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
            client: client.clone(),
            usage: latest::channel(None).0,
            page_opened: Notify::new(),
        });
        tokio::spawn(d.clone().ask_for_usage());
        for &kind in rows::KINDS {
            let d = d.clone();
            let mut rx = watch(client.clone(), WatchSpec::all(&client, kind));
            tokio::spawn(async move {
                while let Some(item) = rx.recv().await {
                    d.apply(kind, item);
                }
                warn!(%kind, "dashboard: the watch ended");
            });
        }
        d
    }

    /// While pages are open, ask every node's agent for its figures each
    /// [`USAGE_EVERY`] (at once when a page opens) and hand them to the
    /// pages; nobody looking, nobody asked.
    async fn ask_for_usage(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(USAGE_EVERY) => {}
                () = self.page_opened.notified() => {}
            }
            if self.updates.receiver_count() == 0 {
                continue;
            }
            let nodes = self.hub().names(Kind::Node);
            let answers = self
                .client
                .nodes_usage(&nodes, None)
                .await
                .into_iter()
                .map(|(n, r)| (n, r.map_err(|e| e.to_string())))
                .collect();
            self.usage
                .send_replace(Some(Arc::new(usage::figures(answers))));
        }
    }

    fn hub(&self) -> std::sync::MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn apply(&self, kind: Kind, item: kubus_bus::watch::WatchItem) {
        // under the lock, so a page starting sees each update either in
        // its start or on its subscription, never both, never neither
        let mut hub = self.hub();
        let entries = hub.apply(kind, item, jiff::Timestamp::now());
        if !entries.is_empty() {
            // nobody listening is not an error
            let _ = self.updates.send(Arc::new(entries));
        }
    }

    /// The answer to a GET of `path` (with `query`), or None when the path
    /// is not the dashboard's.
    pub async fn answer(
        self: &Arc<Self>,
        path: &str,
        query: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Option<Response<Body>> {
        let asset = |ty: &str, text: &'static str| reply(StatusCode::OK, ty, text);
        Some(match path {
            "/" | "/index.html" => asset("text/html; charset=utf-8", INDEX_HTML),
            "/dashboard.js" => asset("text/javascript; charset=utf-8", DASHBOARD_JS),
            "/dashboard.css" => asset("text/css; charset=utf-8", DASHBOARD_CSS),
            "/dashboard/stream" => {
                let q = query_map(query);
                let since = last_event_id
                    .or(q.get("since").map(String::as_str))
                    .and_then(|m| self.own_mark(m));
                self.stream(since)
            }
            "/dashboard/history" => self.history(&query_map(query)).await,
            _ => return None,
        })
    }

    /// The mark in an event id this hub handed out (`epoch-mark`).
    fn own_mark(&self, id: &str) -> Option<u64> {
        let (epoch, mark) = id.split_once('-')?;
        (epoch == self.epoch).then(|| mark.parse().ok()).flatten()
    }

    fn id(&self, mark: u64) -> String {
        format!("{}-{mark}", self.epoch)
    }

    /// A page's event stream: its start, then every batch of updates.
    fn stream(self: &Arc<Self>, since: Option<u64>) -> Response<Body> {
        let (start, mut rx) = {
            let hub = self.hub();
            (hub.start(since), self.updates.subscribe())
        };
        self.page_opened.notify_one();
        let mut figures = self.usage.subscribe();
        let (tx, body) = mpsc::channel::<Bytes>(PAGE_BUFFER);
        let d = self.clone();
        tokio::spawn(async move {
            let first = match start {
                Start::Snapshot { mark, rows } => d.snapshot_message(mark, &rows),
                Start::Resume(entries) => d.changes_message(&entries),
            };
            let known = figures.borrow_and_update().clone();
            for m in [first, known.and_then(|f| usage_message(&f))]
                .into_iter()
                .flatten()
            {
                if tx.send(m).await.is_err() {
                    return;
                }
            }
            loop {
                let message = tokio::select! {
                    changed = figures.changed() => match changed {
                        Ok(()) => {
                            let f = figures.borrow_and_update().clone();
                            f.and_then(|f| usage_message(&f))
                        }
                        Err(_) => return,
                    },
                    batch = rx.recv() => match batch {
                        Ok(batch) => {
                            let mut entries: Vec<Arc<Entry>> = batch.to_vec();
                            // whatever else is waiting goes in the same message
                            while entries.len() < UPDATES_PER_MESSAGE {
                                match rx.try_recv() {
                                    Ok(more) => entries.extend(more.iter().cloned()),
                                    Err(_) => break,
                                }
                            }
                            d.changes_message(&entries)
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            debug!(batches = n, "dashboard: a page fell behind; sending a snapshot");
                            let (mark, rows, fresh) = {
                                let hub = d.hub();
                                let Start::Snapshot { mark, rows } = hub.start(None) else {
                                    return;
                                };
                                (mark, rows, d.updates.subscribe())
                            };
                            rx = fresh;
                            d.snapshot_message(mark, &rows)
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = tokio::time::sleep(KEEPALIVE) => Some(Bytes::from_static(b": keepalive\n\n")),
                };
                if let Some(m) = message {
                    if tx.send(m).await.is_err() {
                        return; // the page went away
                    }
                }
            }
        });
        let frames = futures::stream::unfold(body, |mut body| async move {
            let bytes = body.recv().await?;
            Some((Ok::<_, Infallible>(Frame::data(bytes)), body))
        });
        let mut r = Response::new(BodyExt::boxed(StreamBody::new(frames)));
        let h = r.headers_mut();
        h.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        h.insert(
            hyper::header::CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("no-store"),
        );
        r
    }

    fn snapshot_message(&self, mark: u64, rows: &[Arc<Row>]) -> Option<Bytes> {
        #[derive(Serialize)]
        struct Snapshot<'a> {
            mark: u64,
            columns: BTreeMap<&'static str, Vec<&'static str>>,
            rows: Vec<&'a Row>,
        }
        let snapshot = Snapshot {
            mark,
            columns: rows::KINDS
                .iter()
                .map(|k| (k.as_str(), rows::columns(*k)))
                .collect(),
            rows: rows.iter().map(AsRef::as_ref).collect(),
        };
        sse("snapshot", Some(&self.id(mark)), &snapshot)
    }

    fn changes_message(&self, entries: &[Arc<Entry>]) -> Option<Bytes> {
        let last = entries.last()?;
        let updates: Vec<&Update> = entries.iter().map(|e| &e.update).collect();
        sse("changes", Some(&self.id(last.mark)), &updates)
    }

    /// One object's history from the store's change log.
    async fn history(&self, q: &BTreeMap<String, String>) -> Response<Body> {
        let text = "text/plain; charset=utf-8";
        let arg = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
        let (kind_name, namespace, name) = (arg("kind"), arg("namespace"), arg("name"));
        let Some(&kind) = rows::KINDS.iter().find(|k| k.as_str() == kind_name) else {
            return reply(
                StatusCode::BAD_REQUEST,
                text,
                format!(
                    "history: kind {kind_name:?} is not one the dashboard shows ({})",
                    rows::KINDS
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        };
        if name.is_empty() {
            return reply(
                StatusCode::BAD_REQUEST,
                text,
                format!("history of a {kind_name}: the query names no object (name=)"),
            );
        }
        let mut selector = format!("metadata.name={name}");
        if kind.namespaced() {
            selector.push_str(&format!(",metadata.namespace={namespace}"));
        }
        let began = Instant::now();
        let (mut since, mut from, mut events, mut truncated) = (0u64, 0u64, Vec::new(), false);
        for call in 0.. {
            if call >= HISTORY_CALLS_MAX || began.elapsed() > HISTORY_TIME_MAX {
                truncated = true;
                break;
            }
            match self.client.changes(kind, since, Some(&selector)).await {
                Ok((found, through, more)) => {
                    events.extend(found);
                    // bounded: the newest are shown, one more for its diff
                    let keep = history::REVISIONS_MAX + 1;
                    if events.len() > 2 * keep {
                        events.drain(..events.len() - keep);
                    }
                    since = through;
                    if !more {
                        break;
                    }
                }
                Err(ClientError::Api(e)) if e.compacted_to().is_some_and(|c| c > since) => {
                    // the log starts later: read from where it starts
                    since = e.compacted_to().unwrap_or(since);
                    from = since;
                }
                Err(e) => {
                    return reply(
                        StatusCode::BAD_GATEWAY,
                        text,
                        format!("history of {kind_name} {namespace}/{name}: {e}"),
                    )
                }
            }
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct History {
            kind: &'static str,
            namespace: String,
            name: String,
            /// The log was read after this revision (older ones are compacted).
            from: u64,
            /// ... through this one.
            through: u64,
            truncated: bool,
            revisions: Vec<history::Revision>,
        }
        let h = History {
            kind: kind.as_str(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            from,
            through: since,
            truncated,
            revisions: history::revisions(&events),
        };
        match serde_json::to_string(&h) {
            Ok(body) => reply(StatusCode::OK, "application/json", body),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                text,
                format!("history: {e}"),
            ),
        }
    }
}

/// The agents' figures as an event without an id (the page's last id
/// stays the mark it resumes from).
fn usage_message(f: &usage::Figures) -> Option<Bytes> {
    sse("usage", None, f)
}

/// One server-sent event: its name, id (None: the page's last id stays)
/// and JSON data (one line).
fn sse<T: Serialize>(event: &str, id: Option<&str>, data: &T) -> Option<Bytes> {
    let id = id.map(|i| format!("id: {i}\n")).unwrap_or_default();
    match serde_json::to_string(data) {
        Ok(json) => Some(Bytes::from(format!("event: {event}\n{id}data: {json}\n\n"))),
        Err(e) => {
            warn!(error = %e, "dashboard: an update could not be encoded");
            None
        }
    }
}

/// A whole response.
pub fn reply(code: StatusCode, ty: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(BodyExt::boxed(Full::new(body.into())));
    *r.status_mut() = code;
    if let Ok(v) = ty.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn query_map(query: Option<&str>) -> BTreeMap<String, String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}
