//! `StoreServer`: one store peer's face on the bus. It serves the API and
//! manifest subjects from the local [`Store`] and publishes one change event
//! per applied object change, in revision order.
//!
//! The actor only routes messages; every decision is in [`service`].

pub mod service;

use std::sync::Arc;

use actix::prelude::*;
use async_nats::{HeaderMap, Message};
use kubus_api::{meta, ApiError, Kind};
use kubus_bus::codec::Codec;
use kubus_bus::protocol::{ApiReply, ApiRequest, ChangeEvent, EventType};
use kubus_bus::subject::{Subjects, API_QUEUE, HEADER_CODEC};
use kubus_storage::{Change, ChangeOp, ChangeReceiver, Store};
use serde::Serialize;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

/// Requests served at once; past this, callers get Unavailable.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 512;

pub struct StoreServer {
    store: Store,
    nats: async_nats::Client,
    subjects: Subjects,
    in_flight: Arc<Semaphore>,
    streams: Option<(async_nats::Subscriber, async_nats::Subscriber)>,
}

impl StoreServer {
    /// Subscribe to the API and manifest subjects, start publishing changes,
    /// and start the actor.
    pub async fn start(
        store: Store,
        changes: ChangeReceiver,
        nats: async_nats::Client,
        cluster: &str,
    ) -> Result<Addr<StoreServer>, async_nats::SubscribeError> {
        let subjects = Subjects::new(cluster);
        let api = nats
            .queue_subscribe(subjects.api_all(), API_QUEUE.to_string())
            .await?;
        let manifests = nats
            .queue_subscribe(subjects.manifests(), API_QUEUE.to_string())
            .await?;
        tokio::spawn(publish_changes(changes, nats.clone(), subjects.clone()));
        let server = StoreServer {
            store,
            nats,
            subjects,
            in_flight: Arc::new(Semaphore::new(REQUESTS_IN_FLIGHT_MAX)),
            streams: Some((api, manifests)),
        };
        let addr = server.start();
        Ok(addr)
    }
}

impl Actor for StoreServer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some((api, manifests)) = self.streams.take() {
            ctx.add_stream(api);
            ctx.add_stream(manifests);
        }
        let store = self.store.clone();
        actix::spawn(async move {
            for ns in ["default", "kube-system"] {
                let object = kubus_api::lifecycle::empty(Kind::Namespace, None, ns);
                let req = ApiRequest::Create { object };
                let verb = kubus_bus::subject::Verb::Create;
                match service::handle(&store, verb, Kind::Namespace, "_", req).await {
                    Ok(_) => info!(namespace = ns, "created namespace"),
                    Err(e) if e.reason == kubus_api::Reason::AlreadyExists => {}
                    Err(e) => warn!(namespace = ns, error = %e, "cannot create namespace"),
                }
            }
        });
    }
}

impl StreamHandler<Message> for StoreServer {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<Self>) {
        let Some(reply_to) = msg.reply.clone() else {
            debug!(subject = %msg.subject, "request without a reply subject ignored");
            return;
        };
        let codec = Codec::from_headers(msg.headers.as_ref());
        let nats = self.nats.clone();
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            let busy: ApiReply = Err(ApiError::unavailable("store is busy", 100));
            tokio::spawn(async move { respond(&nats, reply_to, codec, &busy).await });
            return;
        };
        let store = self.store.clone();
        if msg.subject.as_str() == self.subjects.manifests() {
            tokio::spawn(async move {
                let reply = service::apply_manifest(&store, &msg.payload).await;
                respond(&nats, reply_to, codec, &reply).await;
                drop(permit);
            });
            return;
        }
        let Some((verb, kind, ns)) = self.subjects.parse_api(msg.subject.as_str()) else {
            let bad: ApiReply = Err(ApiError::bad_request(format!(
                "unknown API subject {}",
                msg.subject
            )));
            tokio::spawn(async move { respond(&nats, reply_to, codec, &bad).await });
            return;
        };
        let ns = ns.to_string();
        tokio::spawn(async move {
            let reply = match codec.decode::<ApiRequest>(&msg.payload) {
                Ok(req) => service::handle(&store, verb, kind, &ns, req).await,
                Err(e) => Err(ApiError::bad_request(format!("request body: {e}"))),
            };
            respond(&nats, reply_to, codec, &reply).await;
            drop(permit);
        });
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        warn!("a store subscription ended");
    }
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
pub fn change_event(change: &Change) -> Result<(Kind, ChangeEvent), ApiError> {
    let object = service::decode(&change.kv)?;
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
        },
    ))
}

/// Publish applied changes in order, on the object's subject and, for a pod
/// bound to a node, on that node's subject.
async fn publish_changes(
    mut changes: ChangeReceiver,
    nats: async_nats::Client,
    subjects: Subjects,
) {
    while let Some(batch) = changes.recv().await {
        for change in &batch {
            let (kind, event) = match change_event(change) {
                Ok(e) => e,
                Err(e) => {
                    warn!(key = %change.key, error = %e, "change not published");
                    continue;
                }
            };
            let name = meta::name(&event.object).unwrap_or_default();
            let subject = subjects.obj(kind, meta::namespace(&event.object), name);
            let node = (kind == Kind::Pod)
                .then(|| {
                    event
                        .object
                        .pointer("/spec/nodeName")
                        .and_then(|v| v.as_str())
                })
                .flatten()
                .map(|n| subjects.node_pods(n));
            let Ok(payload) = Codec::MessagePack.encode(&event) else {
                warn!(key = %change.key, "change event too large to publish");
                continue;
            };
            if let Err(e) = nats.publish(subject, payload.clone()).await {
                warn!(error = %e, "cannot publish change");
            }
            if let Some(node_subject) = node {
                if let Err(e) = nats.publish(node_subject, payload).await {
                    warn!(error = %e, "cannot publish node change");
                }
            }
        }
    }
    info!("change stream ended");
}
