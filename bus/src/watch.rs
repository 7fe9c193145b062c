//! The watch client: list, then watch, and never silently miss a change.
//!
//! It subscribes first, then lists, so nothing committed between the two is
//! lost; events at or below the list's revision are dropped as already seen.
//! Every change event carries `prev`, the revision of the previous change in
//! the same stream: an event whose `prev` is above the last revision this
//! watcher saw proves a gap. The watcher then resumes: it asks the store for
//! the changes after its last revision (from the history) and relists only
//! when that range was compacted. Bookmarks (the stream's latest revision,
//! published every second) expose a lost *last* event within a second, so
//! a stream with `prev` needs no periodic relist. A stream without it may
//! ask for one (`resync`) to bound the damage of a lost event.

use std::time::Duration;

use futures::StreamExt;
use kubus_api::Kind;
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::client::{Client, ClientError};
use crate::codec::Codec;
use crate::protocol::{ChangeEvent, EventType};

/// What a watcher delivers.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchItem {
    /// A complete, consistent view at `revision`: replaces any cache.
    Relisted { items: Vec<Value>, revision: u64 },
    /// One change after the last view.
    Event(ChangeEvent),
    /// Everything of the stream up to this revision has been delivered.
    Bookmark(u64),
}

/// What to watch.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub kind: Kind,
    /// The subject the changes arrive on (`obj_all(kind)` or `node_pods`).
    pub subject: String,
    /// Field selector of the list (e.g. `spec.nodeName=n1`).
    pub field_selector: Option<String>,
    /// Whether events on `subject` carry a `prev` that detects gaps.
    pub check_prev: bool,
    /// Relist this often even without a gap: for streams without `prev`
    /// only (with it, gaps are detected, and a thousand node agents
    /// relisting in step would only load the store).
    pub resync: Option<Duration>,
    /// Start after this revision, from the store's history, instead of a
    /// list (a resumed watch). Relists if that history was compacted.
    pub since: Option<u64>,
}

impl WatchSpec {
    /// Every object of a kind, cluster-wide.
    pub fn all(client: &Client, kind: Kind) -> WatchSpec {
        WatchSpec {
            kind,
            subject: client.subjects().obj_all(kind),
            field_selector: None,
            check_prev: true,
            resync: None,
            since: None,
        }
    }

    /// The pods bound to one node.
    pub fn node_pods(client: &Client, node: &str) -> WatchSpec {
        WatchSpec {
            kind: Kind::Pod,
            subject: client.subjects().node_pods(node),
            field_selector: Some(format!("spec.nodeName={node}")),
            check_prev: true,
            resync: None,
            since: None,
        }
    }
}

/// Bound of the channel between the watch task and its consumer.
pub const WATCH_CHANNEL: usize = 1024;
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// History pages one resume reads before it gives up and relists.
const RESUME_CALLS_MAX: usize = 100;

/// Start watching; the task ends when the receiver is dropped.
pub fn watch(client: Client, spec: WatchSpec) -> mpsc::Receiver<WatchItem> {
    let (tx, rx) = mpsc::channel(WATCH_CHANNEL);
    tokio::spawn(run(client, spec, tx));
    rx
}

/// Whether an event is new, a duplicate, or proof of a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sequence {
    Next,
    Seen,
    Gap,
}

/// What a bookmark says about a watcher that has seen up to `last` (pure):
/// a stream head above `last` means changes were missed.
pub fn bookmark_shows_gap(last: u64, head: u64, check_prev: bool) -> bool {
    check_prev && head > last
}

/// Classify an event against the last revision seen (pure).
///
/// One transaction writes many objects at one revision; within a stream its
/// second and later changes carry `prev == revision`. So an event at the
/// last revision is new when it continues that revision's chain, and already
/// seen when it starts it (the list, or its first event, covered it).
/// Re-applying a change is harmless: caches upsert whole objects.
pub fn sequence(last: u64, event: &ChangeEvent, check_prev: bool) -> Sequence {
    if event.revision < last || (event.revision == last && event.prev < event.revision) {
        Sequence::Seen
    } else if check_prev && event.prev > last {
        Sequence::Gap
    } else {
        Sequence::Next
    }
}

async fn run(client: Client, spec: WatchSpec, tx: mpsc::Sender<WatchItem>) {
    let mut backoff = RETRY_MIN;
    // Where the next attempt starts: after this revision (resume from the
    // history), or None (list). A watch that fails keeps its place.
    let mut position = spec.since;
    loop {
        if tx.is_closed() {
            return;
        }
        match watch_once(&client, &spec, &tx, &mut position).await {
            Ended::Receiver => return,
            Ended::Relist => {
                position = None;
                backoff = RETRY_MIN;
            }
            Ended::Resync => {
                position = None;
                backoff = RETRY_MIN;
            }
            Ended::Error(e) => {
                warn!(kind = %spec.kind, error = %e, "watch failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

enum Ended {
    Receiver,
    /// Start again from a fresh list.
    Relist,
    /// The periodic relist (`resync`) is due.
    Resync,
    /// Try again from where the watch was.
    Error(String),
}

/// Fetch the changes after `*last` from the store's history and deliver
/// them, moving `*last` past each one delivered — also when it fails part
/// way (a later page's request), so a retry starts after what was already
/// delivered, never before it; `Err(Ended)` when the watcher must relist
/// (the range was compacted), stop, or try again.
async fn resume(
    client: &Client,
    spec: &WatchSpec,
    tx: &mpsc::Sender<WatchItem>,
    last: &mut u64,
) -> Result<(), Ended> {
    for _ in 0..RESUME_CALLS_MAX {
        let (events, through, more) = match client
            .changes(spec.kind, *last, spec.field_selector.as_deref())
            .await
        {
            Ok(r) => r,
            Err(ClientError::Api(e)) if e.reason == kubus_api::Reason::Expired => {
                debug!(kind = %spec.kind, last, "history compacted; relisting");
                return Err(Ended::Relist);
            }
            Err(e) => {
                return Err(Ended::Error(format!(
                    "resume {} after {last}: {e}",
                    spec.kind
                )))
            }
        };
        for event in events {
            if sequence(*last, &event, false) == Sequence::Seen {
                continue;
            }
            *last = event.revision;
            if tx.send(WatchItem::Event(event)).await.is_err() {
                return Err(Ended::Receiver);
            }
        }
        *last = (*last).max(through);
        if !more {
            return Ok(());
        }
    }
    Err(Ended::Relist)
}

async fn watch_once(
    client: &Client,
    spec: &WatchSpec,
    tx: &mpsc::Sender<WatchItem>,
    position: &mut Option<u64>,
) -> Ended {
    let mut sub = match client.nats().subscribe(spec.subject.clone()).await {
        Ok(s) => s,
        Err(e) => return Ended::Error(format!("subscribe {}: {e}", spec.subject)),
    };
    // Subscribed first: whatever commits from here on is either in the
    // list / history read below or arrives on the subscription.
    let mut last = match *position {
        Some(since) if spec.check_prev => {
            let mut last = since;
            let resumed = resume(client, spec, tx, &mut last).await;
            *position = Some(last);
            if let Err(ended) = resumed {
                return ended;
            }
            last
        }
        _ => {
            let (items, revision) = match client
                .list(spec.kind, None, None, spec.field_selector.as_deref())
                .await
            {
                Ok(l) => l,
                Err(e) => return Ended::Error(format!("list {}: {e}", spec.kind)),
            };
            if tx
                .send(WatchItem::Relisted { items, revision })
                .await
                .is_err()
            {
                return Ended::Receiver;
            }
            revision
        }
    };
    *position = Some(last);
    let resync = async {
        match spec.resync {
            Some(every) => tokio::time::sleep(every).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(resync);
    loop {
        tokio::select! {
            msg = sub.next() => {
                let Some(msg) = msg else {
                    return Ended::Error("subscription closed".into());
                };
                let codec = Codec::from_headers(msg.headers.as_ref());
                let event: ChangeEvent = match codec.decode(&msg.payload) {
                    Ok(e) => e,
                    Err(e) => {
                        warn!(subject = %msg.subject, error = %e, "undecodable change event dropped");
                        continue;
                    }
                };
                if event.event_type == EventType::Bookmark {
                    if bookmark_shows_gap(last, event.revision, spec.check_prev) {
                        debug!(kind = %spec.kind, last, head = event.revision, "bookmark shows a gap; resuming");
                        let resumed = resume(client, spec, tx, &mut last).await;
                        *position = Some(last);
                        if let Err(ended) = resumed {
                            return ended;
                        }
                    }
                    if tx.send(WatchItem::Bookmark(event.revision.max(last))).await.is_err() {
                        return Ended::Receiver;
                    }
                    continue;
                }
                match sequence(last, &event, spec.check_prev) {
                    Sequence::Seen => continue,
                    Sequence::Gap => {
                        debug!(kind = %spec.kind, last, prev = event.prev, "gap in watch; resuming from history");
                        let resumed = resume(client, spec, tx, &mut last).await;
                        *position = Some(last);
                        if let Err(ended) = resumed {
                            return ended;
                        }
                        // the event that showed the gap came with the history
                        // when the store had applied it; deliver it if not
                        if sequence(last, &event, false) != Sequence::Seen {
                            last = event.revision;
                            if tx.send(WatchItem::Event(event)).await.is_err() {
                                return Ended::Receiver;
                            }
                        }
                    }
                    Sequence::Next => {
                        last = event.revision;
                        if tx.send(WatchItem::Event(event)).await.is_err() {
                            return Ended::Receiver;
                        }
                    }
                }
                *position = Some(last);
            }
            _ = &mut resync => return Ended::Resync,
            _ = tx.closed() => return Ended::Receiver,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EventType;

    fn ev(revision: u64, prev: u64) -> ChangeEvent {
        ChangeEvent {
            event_type: EventType::Modified,
            revision,
            prev,
            object: Value::Null,
            committed_ms: None,
            traceparent: None,
        }
    }

    #[test]
    fn sequencing() {
        let cases = [
            // last, revision, prev, check_prev, expected
            (10, 11, 10, true, Sequence::Next),
            (10, 12, 7, true, Sequence::Next), // other streams moved the revision
            (10, 10, 9, true, Sequence::Seen),
            (10, 10, 10, true, Sequence::Next), // the next change of the same transaction
            (10, 11, 11, true, Sequence::Gap),  // missed the transaction's first change
            (10, 9, 8, true, Sequence::Seen),
            (10, 13, 12, true, Sequence::Gap),
            (10, 13, 12, false, Sequence::Next),
        ];
        for (last, rev, prev, check, want) in cases {
            assert_eq!(
                sequence(last, &ev(rev, prev), check),
                want,
                "{last} {rev} {prev}"
            );
        }
    }
}
