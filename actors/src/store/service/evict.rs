//! The eviction subresource on the store (`evict` on `pods`): [`evict`]
//! reads the pod and the PodDisruptionBudgets of its namespace, lets
//! [`crate::eviction::decide`] judge, and proposes one Raft entry — the
//! pod's graceful delete (as a delete plans it, with the `DisruptionTarget`
//! condition) and, when a budget granted it, the charged budget, each only
//! at the revision it was read at. A pod or budget that moved meanwhile
//! means reading and deciding again, a bounded number of times.
//!
//! Nothing is decided here: this module reads and writes.

use kubus_api::kind::prefix;
use kubus_api::lifecycle::{self, Deletion};
use kubus_api::{meta, ApiError, Kind, ObjectRef};
use kubus_storage::{Op, Precondition, Txn, TxnOutcome};
use serde_json::Value;

use super::{encode, linearize, propose, read_kv, store_error, Api, Preconditions};
use crate::eviction::{self, Verdict};

/// How many times an eviction reads and decides again when its pod or
/// budget moved between the read and the proposal (each attempt is a read
/// and one proposal; only evictions racing for one budget collide).
const EVICT_ATTEMPTS: usize = 8;

/// When every attempt collided, when to try again.
const COLLIDED_RETRY_MS: u64 = 1_000;

/// Most PodDisruptionBudgets one namespace may hold for an eviction there
/// to read them all.
const BUDGETS_MAX: usize = 1_000;

/// One budget as read: its key, the revision it was read at, the object.
struct Read {
    key: String,
    mod_revision: u64,
    object: Value,
}

/// Every PodDisruptionBudget of `namespace`, in key order.
fn read_budgets(store: &Api, namespace: &str) -> Result<Vec<Read>, ApiError> {
    let p = prefix(Kind::PodDisruptionBudget, Some(namespace));
    let page = store
        .range_from(&p, &p, BUDGETS_MAX + 1)
        .map_err(store_error)?;
    if page.more || page.items.len() > BUDGETS_MAX {
        return Err(ApiError::too_large(format!(
            "namespace {namespace} holds more than {BUDGETS_MAX} PodDisruptionBudgets; \
             an eviction reads at most {BUDGETS_MAX}"
        )));
    }
    page.items
        .iter()
        .map(|kv| {
            Ok(Read {
                key: kv.key.clone(),
                mod_revision: kv.mod_revision,
                object: store.decode(kv)?,
            })
        })
        .collect()
}

/// Evict pod `r` (see the module doc and [`crate::eviction`]): the reply
/// is the pod now terminating, or as it was when removed at once.
pub(super) async fn evict(
    store: &Api,
    r: ObjectRef,
    preconditions: &Preconditions,
    grace_period_seconds: Option<i64>,
) -> Result<Value, ApiError> {
    if r.kind != Kind::Pod {
        return Err(ApiError::bad_request(format!(
            "{r} cannot be evicted: eviction is a subresource of pods only (pods/eviction)"
        )));
    }
    let namespace = r.namespace.clone().unwrap_or_default();
    // a budget created a moment ago elsewhere must not be missed
    linearize(store).await?;
    for _ in 0..EVICT_ATTEMPTS {
        let Some(kv) = read_kv(store, &r.key())? else {
            return Err(ApiError::not_found(r));
        };
        let current = store.decode(&kv)?;
        if let Some(why) = preconditions.violated(&current, kv.mod_revision) {
            return Err(ApiError::conflict(r, why));
        }
        let budgets = read_budgets(store, &namespace)?;
        let objects: Vec<Value> = budgets.iter().map(|b| b.object.clone()).collect();
        let now = jiff::Timestamp::now();
        let budget_op = match eviction::decide(&current, &objects, now) {
            Verdict::Refuse(e) => return Err(e),
            Verdict::Delete { guard: None } => None,
            Verdict::Delete { guard: Some(i) } => budgets.get(i).map(|b| Op::Check {
                key: b.key.clone(),
                expect: Precondition::ModRevision(b.mod_revision),
            }),
            Verdict::Charge { index, mut budget } => match budgets.get(index) {
                Some(b) => {
                    lifecycle::strip_revision(&mut budget);
                    Some(Op::Put {
                        key: b.key.clone(),
                        value: encode(&budget)?,
                        expect: Precondition::ModRevision(b.mod_revision),
                    })
                }
                None => return Err(ApiError::internal("eviction charged an unknown budget")),
            },
        };
        let (pod_op, mut answer, marked) = match lifecycle::plan_deletion_with(
            Kind::Pod,
            &current,
            grace_period_seconds,
            None,
            now,
        ) {
            // already terminating, and not hurried: nothing to write
            // (such a pod skips budgets, so none was charged)
            Deletion::Pending => return Ok(current),
            Deletion::Remove => (
                Op::Delete {
                    key: r.key(),
                    expect: Precondition::ModRevision(kv.mod_revision),
                },
                current,
                false,
            ),
            Deletion::Terminate(mut obj) => {
                eviction::mark_disruption_target(&mut obj, now);
                let op = Op::Put {
                    key: r.key(),
                    value: encode(&obj)?,
                    expect: Precondition::ModRevision(kv.mod_revision),
                };
                (op, obj, true)
            }
        };
        let mut ops = vec![pod_op];
        ops.extend(budget_op);
        match propose(store, Txn { ops }).await? {
            TxnOutcome::Committed { revision, .. } => {
                if marked {
                    meta::set_resource_version(&mut answer, revision);
                }
                return Ok(answer);
            }
            // asked for this revision of the pod: no second look
            TxnOutcome::Failed { .. } if preconditions.resource_version.is_some() => {
                return Err(ApiError::conflict(r, "the pod was modified concurrently"))
            }
            // the pod or the budget moved on: decide again on what they are now
            TxnOutcome::Failed { .. } => continue,
        }
    }
    Err(ApiError {
        object: Some(r.clone()),
        ..ApiError::too_many_requests(
            format!(
                "cannot evict {r}: it or its PodDisruptionBudget kept changing \
                 ({EVICT_ATTEMPTS} attempts); try again"
            ),
            COLLIDED_RETRY_MS,
        )
    })
}

#[cfg(test)]
mod tests {
    use kubus_api::{meta, Kind, Reason};
    use kubus_bus::protocol::{ApiReply, ApiRequest, ApiResponse};
    use kubus_bus::subject::Verb;
    use kubus_storage::Store;
    use serde_json::{json, Value};

    use super::super::{handle, Api};
    use crate::eviction::{DISRUPTION_TARGET, MORE_THAN_ONE_BUDGET, VIOLATES_BUDGET};

    fn open_store(dir: &std::path::Path) -> Api {
        let mut cfg = kubus_storage::StoreConfig::single(dir.to_path_buf());
        cfg.fsync = false;
        let (store, _changes) = Store::open(cfg, Box::new(kubus_storage::NoPeers)).expect("open");
        Api {
            store,
            net: kubus_api::service::ServiceNet::default(),
            keys: Default::default(),
            tokens: Default::default(),
        }
    }

    fn object(reply: ApiReply) -> Value {
        match reply {
            Ok(ApiResponse::Object(o)) => o,
            other => panic!("{other:?}"),
        }
    }

    fn evict(name: &str) -> ApiRequest {
        ApiRequest::Evict {
            name: name.into(),
            grace_period_seconds: None,
            resource_version: None,
            uid: None,
        }
    }

    fn running_pod(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 20,
                "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}]}})
    }

    fn budget(name: &str, allowed: i64) -> Value {
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"observedGeneration": 1, "disruptionsAllowed": allowed,
                "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3}})
    }

    /// Through the API service on a real store: a granted eviction marks
    /// the pod terminating and charges its budget in the same Raft entry
    /// (one revision for both); the next one is refused with Kubernetes'
    /// words and the budget's status; a terminating pod is evicted without
    /// its budget; two budgets, or a kind other than pods, are refused.
    #[tokio::test]
    async fn evictions_charge_their_budget_in_the_deletes_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_store(dir.path());
        let h = |verb, kind, req| handle(&store, verb, kind, "default", req, None);
        for name in ["web-1", "web-2", "web-3"] {
            let req = ApiRequest::Create {
                object: running_pod(name),
                dry_run: false,
            };
            object(h(Verb::Create, Kind::Pod, req).await);
        }
        let req = ApiRequest::Create {
            object: budget("web-pdb", 1),
            dry_run: false,
        };
        object(h(Verb::Create, Kind::PodDisruptionBudget, req).await);

        let evicted = object(h(Verb::Evict, Kind::Pod, evict("web-1")).await);
        assert!(kubus_api::pod::is_terminating(&evicted), "{evicted}");
        assert!(
            kubus_api::pod::condition(&evicted, DISRUPTION_TARGET).is_some(),
            "{evicted}"
        );
        let get = |name: &str| ApiRequest::Get { name: name.into() };
        let charged = object(h(Verb::Get, Kind::PodDisruptionBudget, get("web-pdb")).await);
        assert_eq!(charged["status"]["disruptionsAllowed"], 0, "{charged}");
        assert!(
            charged["status"]["disruptedPods"]["web-1"].is_string(),
            "{charged}"
        );
        assert_eq!(
            meta::resource_version(&charged),
            meta::resource_version(&evicted),
            "the budget and the pod are written in one entry"
        );

        let refused = h(Verb::Evict, Kind::Pod, evict("web-2"))
            .await
            .expect_err("no disruption left");
        assert_eq!(refused.reason, Reason::TooManyRequests, "{refused}");
        assert!(
            refused.message.starts_with(VIOLATES_BUDGET)
                && refused
                    .message
                    .contains("web-pdb needs 2 healthy pods and has 3"),
            "{}",
            refused.message
        );
        let untouched = object(h(Verb::Get, Kind::Pod, get("web-2")).await);
        assert!(!kubus_api::pod::is_terminating(&untouched));

        // already terminating: no budget asked, nothing changes
        let again = object(h(Verb::Evict, Kind::Pod, evict("web-1")).await);
        assert_eq!(again, evicted);

        let req = ApiRequest::Create {
            object: budget("second", 1),
            dry_run: false,
        };
        object(h(Verb::Create, Kind::PodDisruptionBudget, req).await);
        let two = h(Verb::Evict, Kind::Pod, evict("web-3"))
            .await
            .expect_err("two budgets");
        assert_eq!(two.reason, Reason::Internal);
        assert!(
            two.message.starts_with(MORE_THAN_ONE_BUDGET),
            "{}",
            two.message
        );

        let not_a_pod = h(Verb::Evict, Kind::PodDisruptionBudget, evict("second"))
            .await
            .expect_err("only pods");
        assert_eq!(not_a_pod.reason, Reason::BadRequest);
        let missing = h(Verb::Evict, Kind::Pod, evict("nope"))
            .await
            .expect_err("no such pod");
        assert_eq!(missing.reason, Reason::NotFound);
    }
}
