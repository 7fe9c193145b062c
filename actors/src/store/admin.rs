//! Store administration on the bus: each store peer answers
//! `kubus.<c>.store.<op>` (every peer) and `kubus.<c>.store.<op>.<peer-id>`
//! (this peer) — `status` with its [`PeerStatus`]; `add-peer`,
//! `remove-peer` and `transfer-leader` on the leader; `encryption-keys`
//! (each peer's keys, changed by rotation) and `reseal` (rewrite what is
//! not sealed with the writing key).
//!
//! Decisions are pure ([`peer_status`], [`membership_refusal`],
//! [`membership_error`]); [`serve`] only routes requests and replies.
//! A membership request waits for the change to be applied on the leader
//! (bounded by the store's `request_timeout_ms`), so the serving loop
//! handles one request at a time: administration is rare.

use futures::StreamExt;
use kubus_api::ApiError;
use kubus_bus::codec::Codec;
use kubus_bus::protocol::{
    EncryptionKeys, EncryptionKeysReply, EncryptionKeysRequest, MembershipReply, MembershipRequest,
    PeerStatus, PeerStatusReply, ResealReply, Resealed,
};
use kubus_bus::subject::{StoreOp, Subjects};
use kubus_storage::{Op, Precondition, Store, StoreError, StoreStatus, Txn, TxnOutcome};
use tracing::{debug, info};

use super::seal::{self, KeyChange, Keyring};

/// Objects one reseal transaction rewrites.
const RESEAL_BATCH: usize = 100;
/// Times one page is read again after a concurrent write failed its batch.
const RESEAL_ATTEMPTS: usize = 5;

/// What a peer says of itself.
pub fn peer_status(s: &StoreStatus) -> PeerStatus {
    PeerStatus {
        peer_id: s.peer_id,
        is_leader: s.is_leader,
        leader: s.leader,
        term: s.term,
        revision: s.revision,
        applied_index: s.applied_index,
        first_log_index: s.first_log_index,
        last_log_index: s.last_log_index,
        proposals_in_flight: s.proposals_in_flight as u64,
        voters: s.voters.clone(),
    }
}

/// How a failed membership change is reported.
pub fn membership_error(e: StoreError) -> ApiError {
    match e {
        StoreError::MembershipRefused(why) => {
            ApiError::bad_request(format!("membership change refused: {why}"))
        }
        StoreError::NotLeader { .. }
        | StoreError::Busy
        | StoreError::Stopped
        | StoreError::Timeout => ApiError::unavailable(format!("store: {e}"), 500),
        other => ApiError::internal(format!("store: {other}")),
    }
}

/// Carries out `op` on this peer (the leader), unless it must refuse.
async fn change_membership(store: &Store, op: StoreOp, req: &MembershipRequest) -> MembershipReply {
    if let Some(refusal) = membership_refusal(&store.status(), req) {
        return Err(refusal);
    }
    let result = match op {
        StoreOp::AddPeer => store.add_peer(req.peer_id).await,
        StoreOp::RemovePeer => store.remove_peer(req.peer_id).await,
        StoreOp::TransferLeader => {
            let voters = store.status().voters;
            if !voters.contains(&req.peer_id) {
                return Err(ApiError::bad_request(format!(
                    "peer {} is not a voter ({voters:?})",
                    req.peer_id
                )));
            }
            store.transfer_leader(req.peer_id).map(|()| voters)
        }
        StoreOp::Status | StoreOp::Snapshot | StoreOp::EncryptionKeys | StoreOp::Reseal => {
            return Err(ApiError::bad_request(format!(
                "{} is not a membership change",
                op.as_str()
            )))
        }
    };
    result.map_err(membership_error)
}

/// Why this peer will not carry out a membership change, if it will not:
/// only the leader proposes one, and peer 0 does not exist.
pub fn membership_refusal(s: &StoreStatus, req: &MembershipRequest) -> Option<ApiError> {
    if req.peer_id == 0 {
        return Some(ApiError::bad_request("peer id 0 is not allowed"));
    }
    if !s.is_leader {
        let msg = match s.leader {
            Some(l) => format!("peer {} is not the leader; peer {l} is", s.peer_id),
            None => format!("peer {} is not the leader and knows none", s.peer_id),
        };
        return Some(ApiError::unavailable(msg, 200));
    }
    None
}

/// Reads this peer's encryption configuration again, makes `req`'s
/// changes to it (add a key, then promote one), and says what it holds.
pub fn encryption_keys(
    store: &Store,
    keys: &Keyring,
    req: &EncryptionKeysRequest,
) -> EncryptionKeysReply {
    let refused = |e: seal::SealError| ApiError::bad_request(format!("encryption keys: {e}"));
    keys.reload().map_err(refused)?;
    if let Some(add) = &req.add {
        keys.change(&KeyChange::Add(add.clone())).map_err(refused)?;
    }
    if let Some(name) = &req.promote {
        keys.change(&KeyChange::Promote(name.clone()))
            .map_err(refused)?;
    }
    let (names, writing) = keys.describe();
    Ok(EncryptionKeys {
        peer_id: store.status().peer_id,
        file: keys.file().map(|f| f.display().to_string()),
        keys: names,
        writing,
    })
}

/// Rewrites every object of an encrypted resource that is not sealed with
/// its writing key (plain ones included), a batch of [`RESEAL_BATCH`] per
/// transaction; each write requires the object unchanged since it was
/// read, and a batch a concurrent write failed is read again (a rewrite by
/// the API seals with the writing key too).
pub async fn reseal(store: &Store, keys: &Keyring) -> ResealReply {
    let failed = membership_error;
    let mut out = Resealed {
        peer_id: store.status().peer_id,
        ..Resealed::default()
    };
    for (prefix, write) in keys.sealed_prefixes() {
        let mut cursor = prefix.clone();
        loop {
            let mut page = store
                .range_from(&prefix, &cursor, RESEAL_BATCH)
                .map_err(failed)?;
            let mut attempts = 0;
            let committed = loop {
                let mut ops = Vec::new();
                for kv in page
                    .items
                    .iter()
                    .filter(|kv| seal::needs_reseal(&kv.value, &write))
                {
                    let plain = keys
                        .open(&kv.key, &kv.value)
                        .map_err(|e| ApiError::internal(format!("reseal: {e}")))?;
                    let value = keys
                        .seal(&kv.key, plain.into_owned())
                        .map_err(|e| ApiError::internal(format!("reseal: {e}")))?;
                    ops.push(Op::Put {
                        key: kv.key.clone(),
                        value,
                        expect: Precondition::ModRevision(kv.mod_revision),
                    });
                }
                let rewritten = ops.len() as u64;
                if ops.is_empty() {
                    break 0;
                }
                match store.propose(Txn { ops }).await.map_err(failed)? {
                    TxnOutcome::Committed { .. } => break rewritten,
                    TxnOutcome::Failed { .. } if attempts < RESEAL_ATTEMPTS => {
                        attempts += 1;
                        page = store
                            .range_from(&prefix, &cursor, RESEAL_BATCH)
                            .map_err(failed)?;
                    }
                    TxnOutcome::Failed { .. } => {
                        return Err(ApiError::unavailable(
                            format!(
                                "reseal: objects under {prefix} kept changing over                                  {RESEAL_ATTEMPTS} attempts; run it again"
                            ),
                            1000,
                        ))
                    }
                }
            };
            for (name, n) in seal::count_by_key(page.items.iter().map(|kv| kv.value.as_slice())) {
                *out.before.entry(name).or_insert(0) += n;
            }
            out.rewritten += committed;
            out.current += page.items.len() as u64 - committed;
            match page.items.last() {
                Some(last) if page.more => cursor = format!("{}\0", last.key),
                _ => break,
            }
        }
    }
    info!(rewritten = out.rewritten, current = out.current, "resealed");
    Ok(out)
}

/// Subscribes to this peer's administration subjects and returns the task
/// that answers them (it ends when the subscriptions do).
pub async fn serve(
    store: Store,
    keys: Keyring,
    nats: async_nats::Client,
    subjects: Subjects,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, async_nats::SubscribeError> {
    let [all, mine] = subjects.store_served(store.status().peer_id);
    let all = nats.subscribe(all).await?;
    let mine = nats.subscribe(mine).await?;
    Ok(async move {
        let mut requests = futures::stream::select(all, mine);
        while let Some(msg) = requests.next().await {
            let Some(reply_to) = msg.reply.clone() else {
                continue;
            };
            let codec = Codec::from_headers(msg.headers.as_ref());
            let body = match subjects.parse_store(msg.subject.as_str()) {
                Some(StoreOp::Status) => {
                    let r: PeerStatusReply = Ok(peer_status(&store.status()));
                    codec.encode(&r)
                }
                Some(op @ (StoreOp::AddPeer | StoreOp::RemovePeer | StoreOp::TransferLeader)) => {
                    let r: MembershipReply = match codec.decode::<MembershipRequest>(&msg.payload) {
                        Err(e) => Err(ApiError::bad_request(format!("membership request: {e}"))),
                        Ok(req) => change_membership(&store, op, &req).await,
                    };
                    codec.encode(&r)
                }
                Some(StoreOp::EncryptionKeys) => {
                    let r: EncryptionKeysReply =
                        match codec.decode::<EncryptionKeysRequest>(&msg.payload) {
                            Err(e) => Err(ApiError::bad_request(format!(
                                "encryption keys request: {e}"
                            ))),
                            Ok(req) => encryption_keys(&store, &keys, &req),
                        };
                    codec.encode(&r)
                }
                Some(StoreOp::Reseal) => {
                    let r = reseal(&store, &keys).await;
                    codec.encode(&r)
                }
                // backups are answered by `backup::serve`, on a task of
                // their own (a save must not wait behind a membership change)
                Some(StoreOp::Snapshot) | None => continue,
            };
            match body {
                Ok(b) => {
                    if let Err(e) = nats.publish(reply_to, b).await {
                        debug!(error = %e, "store admin reply not sent");
                    }
                }
                Err(e) => debug!(error = %e, "store admin reply not encoded"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(is_leader: bool, leader: Option<u64>) -> StoreStatus {
        StoreStatus {
            peer_id: 2,
            is_leader,
            leader,
            term: 4,
            revision: 10,
            applied_index: 12,
            first_log_index: 1,
            last_log_index: 12,
            history_compacted_to: 0,
            proposals_in_flight: 3,
            stopped: false,
            voters: vec![1, 2, 3],
            learners: vec![],
            progress: vec![],
        }
    }

    #[test]
    fn status_carries_the_figures() {
        let p = peer_status(&status(false, Some(1)));
        assert_eq!(
            (p.peer_id, p.is_leader, p.leader, p.term, p.applied_index),
            (2, false, Some(1), 4, 12)
        );
        assert_eq!(p.proposals_in_flight, 3);
        assert_eq!(p.voters, vec![1, 2, 3]);
    }

    #[test]
    fn membership_errors_say_whether_to_retry() {
        use kubus_api::Reason;
        let cases = [
            (
                StoreError::MembershipRefused("pending".into()),
                Reason::BadRequest,
            ),
            (StoreError::Timeout, Reason::Unavailable),
            (StoreError::NotLeader { leader: None }, Reason::Unavailable),
            (StoreError::Corrupt("x".into()), Reason::Internal),
        ];
        for (e, want) in cases {
            assert_eq!(membership_error(e).reason, want);
        }
    }

    #[test]
    fn only_the_leader_changes_membership() {
        let req = MembershipRequest { peer_id: 4 };
        let cases = [
            (status(true, Some(2)), &req, None),
            (
                status(false, Some(1)),
                &req,
                Some("peer 2 is not the leader; peer 1 is"),
            ),
            (
                status(false, None),
                &req,
                Some("peer 2 is not the leader and knows none"),
            ),
            (
                status(true, Some(2)),
                &MembershipRequest { peer_id: 0 },
                Some("peer id 0 is not allowed"),
            ),
        ];
        for (s, r, want) in cases {
            let got = membership_refusal(&s, r).map(|e| e.message);
            assert_eq!(got.as_deref(), want);
        }
    }
}
