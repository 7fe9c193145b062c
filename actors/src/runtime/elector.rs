//! Leader election with fencing: the scheduler and the controllers run on
//! exactly one control-role mesh node at a time, elected through
//! `coordination.k8s.io/v1` Lease objects in `kube-system`, with client-go's
//! rules and defaults (lease 15 s, renew deadline 10 s, retry 2 s).
//!
//! Fencing: a Lease is acquired by creating it (a Lease whose holder let
//! it expire is deleted, at the revision read, and created again), so its
//! create revision names one acquisition. The winner puts that revision in
//! its [`FenceCell`]; every write of its actors carries it, and the store
//! commits a write only if the Lease still has that create revision, in the
//! same Raft entry. A leader that was paused or cut off past its lease
//! therefore cannot write once another has taken over — its writes are
//! refused, not merely unlikely.
//!
//! [`decide`] is the pure rule; [`Elector`] is the actor that reads the
//! Lease every retry period and carries the decision out.

use std::time::{Duration, Instant};

use actix::prelude::*;
use kubus_api::{lifecycle, meta, Kind, ObjectRef, Reason};
use kubus_bus::protocol::Fence;
use kubus_bus::{Client, ClientError, FenceCell};
use serde_json::{json, Value};
use tracing::{info, warn};

use super::controller::Demote;

/// client-go's `LeaseDuration` default: how long a standby waits after it
/// last saw the Lease change before taking it over.
pub const LEASE_DURATION_DEFAULT: Duration = Duration::from_secs(15);
/// client-go's `RenewDeadline` default: a leader that has not renewed for
/// this long stops leading.
pub const RENEW_DEADLINE_DEFAULT: Duration = Duration::from_secs(10);
/// client-go's `RetryPeriod` default: how often the Lease is read and
/// renewed.
pub const RETRY_PERIOD_DEFAULT: Duration = Duration::from_secs(2);
/// How soon a candidate that could not read or write the Lease (the
/// store starting, say) tries again, instead of a whole retry period.
pub const RETRY_AFTER_ERROR: Duration = Duration::from_millis(200);
/// The namespace of the control plane's Leases.
pub const LEASE_NAMESPACE: &str = "kube-system";
/// The Lease of the controllers (as kube-controller-manager's).
pub const CONTROLLERS_LEASE: &str = "kube-controller-manager";
/// The Lease of the scheduler (as kube-scheduler's).
pub const SCHEDULER_LEASE: &str = "kube-scheduler";

/// One election's settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// Who this candidate is: `<node>_<random>`, new every process.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// A Lease in `kube-system` with client-go's defaults.
    pub fn new(name: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            name: name.to_string(),
            namespace: LEASE_NAMESPACE.to_string(),
            identity: identity.to_string(),
            lease_duration: LEASE_DURATION_DEFAULT,
            renew_deadline: RENEW_DEADLINE_DEFAULT,
            retry_period: RETRY_PERIOD_DEFAULT,
        }
    }

    pub fn lease_ref(&self) -> ObjectRef {
        ObjectRef::new(Kind::Lease, Some(&self.namespace), &self.name)
    }
}

/// What to do about the Lease, as last read.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nobody holds it: create it, held by us.
    Acquire(Value),
    /// We hold it: write a new `renewTime`.
    Renew(Value),
    /// Another held it and let it expire: delete it at the revision read
    /// and create it again, held by us.
    TakeOver { stale: u64, lease: Value },
    /// Another holds it.
    Wait,
}

/// The holder named by a Lease.
pub fn holder(lease: &Value) -> &str {
    lease
        .pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// A Lease held by `cfg.identity` from `now` (`transitions` so far).
pub fn held_lease(cfg: &LeaseConfig, now: &str, acquired: &str, transitions: i64) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": cfg.name, "namespace": cfg.namespace},
        "spec": {
            "holderIdentity": cfg.identity,
            "leaseDurationSeconds": cfg.lease_duration.as_secs().max(1),
            "acquireTime": acquired,
            "renewTime": now,
            "leaseTransitions": transitions,
        },
    })
}

/// Decide, from the Lease as read (`None`: absent) and how long ago it
/// last changed as this candidate saw it (client-go judges expiry by its
/// own clock since it observed the record, never by the holder's
/// timestamps, so clocks may differ between machines). `acquired`: this
/// candidate knows the create revision of its own acquisition; a Lease
/// naming it without that (the answer to its create was lost) cannot
/// fence its writes, so it is left to expire and taken over anew.
pub fn decide(
    cfg: &LeaseConfig,
    lease: Option<&Value>,
    unchanged_for: Duration,
    now: &str,
    acquired: bool,
) -> Step {
    let Some(lease) = lease else {
        return Step::Acquire(held_lease(cfg, now, now, 0));
    };
    let transitions = lease
        .pointer("/spec/leaseTransitions")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let holder = holder(lease);
    if holder == cfg.identity && acquired {
        let acquired = lease
            .pointer("/spec/acquireTime")
            .and_then(Value::as_str)
            .unwrap_or(now);
        let mut renewed = held_lease(cfg, now, acquired, transitions);
        if let Some(rv) = meta::resource_version(lease) {
            meta::set_resource_version(&mut renewed, rv);
        }
        return Step::Renew(renewed);
    }
    let duration = lease
        .pointer("/spec/leaseDurationSeconds")
        .and_then(Value::as_u64)
        .map_or(cfg.lease_duration, Duration::from_secs);
    if !holder.is_empty() && unchanged_for < duration {
        return Step::Wait;
    }
    let Some(stale) = meta::resource_version(lease) else {
        return Step::Wait;
    };
    let transitions = if holder.is_empty() {
        transitions
    } else {
        transitions + 1
    };
    Step::TakeOver {
        stale,
        lease: held_lease(cfg, now, now, transitions),
    }
}

/// Starts the elected actors; returns how to stop them.
pub type Starter = Box<dyn Fn() -> Vec<Recipient<Demote>>>;

/// The actor that campaigns for one Lease and runs its actors while held.
pub struct Elector {
    cfg: LeaseConfig,
    /// An unfenced client: the Lease's own writes are its CAS.
    client: Client,
    fence: FenceCell,
    start: Starter,
    /// The Lease's resourceVersion as last read, and when it last changed.
    observed: Option<(u64, Instant)>,
    leading: Option<Leading>,
    busy: bool,
    /// The Lease as we last wrote it while leading (to release it).
    held: Option<Value>,
    /// The create revision of this candidate's latest acquisition: its
    /// fence, kept across a step-down (a Lease that still names us is
    /// still that acquisition).
    acquired: Option<u64>,
}

struct Leading {
    create_revision: u64,
    renewed_at: Instant,
    actors: Vec<Recipient<Demote>>,
}

impl Elector {
    pub fn new(cfg: LeaseConfig, client: Client, fence: FenceCell, start: Starter) -> Elector {
        Elector {
            cfg,
            client,
            fence,
            start,
            observed: None,
            leading: None,
            busy: false,
            held: None,
            acquired: None,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let client = self.client.clone();
        let r = self.cfg.lease_ref();
        let read = async move {
            match client.get(r.kind, r.namespace.as_deref(), &r.name).await {
                Ok(v) => Ok(Some(v)),
                Err(e) if e.reason() == Some(Reason::NotFound) => Ok(None),
                Err(e) => Err(e),
            }
        };
        ctx.spawn(read.into_actor(self).then(|res, act, _ctx| {
            let step = match res {
                Ok(lease) => {
                    let now = Instant::now();
                    let rv = lease.as_ref().and_then(meta::resource_version).unwrap_or(0);
                    let since = match act.observed {
                        Some((seen, at)) if seen == rv => at,
                        _ => {
                            act.observed = Some((rv, now));
                            now
                        }
                    };
                    let stamp = lifecycle::format_micro_time(jiff::Timestamp::now());
                    let acquired = act.acquired.is_some();
                    Some(decide(&act.cfg, lease.as_ref(), now - since, &stamp, acquired))
                }
                Err(e) => {
                    warn!(lease = %act.cfg.lease_ref(), error = %e, "cannot read the lease");
                    None
                }
            };
            let client = act.client.clone();
            let r = act.cfg.lease_ref();
            async move {
                let step = step?;
                let written = match step {
                    Step::Wait => return Some((step, Ok(None))),
                    Step::Acquire(ref lease) => client.create(lease.clone()).await,
                    Step::Renew(ref lease) => client.update(lease.clone()).await,
                    Step::TakeOver { stale, ref lease } => {
                        match client.delete(&r, Some(stale)).await {
                            Ok(_) => client.create(lease.clone()).await,
                            Err(e) => Err(e),
                        }
                    }
                };
                Some((step, written.map(Some)))
            }
            .into_actor(act)
        })
        .map(|outcome, act, ctx| {
            act.busy = false;
            act.settle(outcome, ctx);
        }));
    }

    /// Act on what the write did.
    fn settle(
        &mut self,
        outcome: Option<(Step, Result<Option<Value>, ClientError>)>,
        ctx: &mut Context<Self>,
    ) {
        let now = Instant::now();
        match outcome {
            Some((Step::Acquire(_) | Step::TakeOver { .. }, Ok(Some(lease)))) => {
                let create_revision = meta::resource_version(&lease).unwrap_or(0);
                self.observed = Some((create_revision, now));
                self.held = Some(lease);
                self.acquired = Some(create_revision);
                self.lead(create_revision, now);
            }
            Some((Step::Renew(_), Ok(Some(lease)))) => {
                self.observed = meta::resource_version(&lease).map(|rv| (rv, now));
                self.held = Some(lease);
                match (&mut self.leading, self.acquired) {
                    (Some(l), _) => l.renewed_at = now,
                    // stepped down after a failed renewal, but the Lease is
                    // still the one we acquired: lead again
                    (None, Some(create_revision)) => self.lead(create_revision, now),
                    (None, None) => {}
                }
            }
            Some((Step::Renew(_), Err(e))) => {
                let lost = matches!(e.reason(), Some(Reason::Conflict | Reason::NotFound));
                let late = self
                    .leading
                    .as_ref()
                    .is_some_and(|l| now - l.renewed_at >= self.cfg.renew_deadline);
                if lost || late {
                    self.demote(&format!("renewal failed: {e}"), false);
                }
            }
            Some((_, Err(e))) => {
                info!(lease = %self.cfg.lease_ref(), error = %e, "did not acquire the lease");
            }
            Some((Step::Wait, _)) | Some((_, Ok(None))) => {
                if self.leading.is_some() {
                    self.demote("another candidate holds the lease", false);
                }
            }
            None if self.leading.is_none() => {
                // the store may be starting: try again soon
                ctx.run_later(RETRY_AFTER_ERROR, |act, ctx| act.tick(ctx));
            }
            None => {
                let late = self
                    .leading
                    .as_ref()
                    .is_some_and(|l| now - l.renewed_at >= self.cfg.renew_deadline);
                if late {
                    self.demote(
                        "the lease could not be renewed within the renew deadline",
                        false,
                    );
                }
            }
        }
    }

    fn lead(&mut self, create_revision: u64, now: Instant) {
        if let Some(l) = &mut self.leading {
            // acquired again (a Lease deleted under us): a new fence
            l.create_revision = create_revision;
            l.renewed_at = now;
        }
        *self
            .fence
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Fence {
            namespace: self.cfg.namespace.clone(),
            name: self.cfg.name.clone(),
            create_revision,
        });
        if self.leading.is_none() {
            info!(lease = %self.cfg.lease_ref(), identity = %self.cfg.identity, create_revision, "acquired the lease; starting");
            self.leader_status(1);
            self.leading = Some(Leading {
                create_revision,
                renewed_at: now,
                actors: (self.start)(),
            });
        }
    }

    /// Stop leading; `planned` (a clean stop) is no cause for a warning.
    fn demote(&mut self, why: &str, planned: bool) {
        self.held = None;
        if let Some(l) = self.leading.take() {
            if planned {
                info!(lease = %self.cfg.lease_ref(), create_revision = l.create_revision, "stepped down: {why}");
            } else {
                warn!(lease = %self.cfg.lease_ref(), create_revision = l.create_revision, "stepped down: {why}");
            }
            for a in l.actors {
                a.do_send(Demote);
            }
            self.leader_status(0);
        }
    }

    /// `leader_election_master_status{name}`: 1 while this process leads.
    fn leader_status(&self, value: i64) {
        crate::metrics::METRICS
            .leader
            .get_or_create(&crate::metrics::name(&self.cfg.name))
            .set(value);
    }
}

/// Stop leading and hand the Lease back (holder cleared), so a standby
/// takes over at once instead of after the lease duration: sent on a
/// clean stop of the mesh node.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Release;

impl Handler<Release> for Elector {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Release, ctx: &mut Context<Self>) -> Self::Result {
        let held = self.held.take();
        if self.leading.is_some() {
            info!(lease = %self.cfg.lease_ref(), "releasing the lease on stop");
        }
        self.demote("released on stop", true);
        ctx.stop();
        let client = self.client.clone();
        Box::pin(async move {
            let Some(mut lease) = held else { return };
            lease["spec"]["holderIdentity"] = json!("");
            if let Err(e) = client.update(lease).await {
                info!(error = %e, "could not release the lease; it will expire");
            }
        })
    }
}

impl Actor for Elector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.leader_status(0);
        self.tick(ctx);
        ctx.run_interval(self.cfg.retry_period, |act, ctx| act.tick(ctx));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(identity: &str) -> LeaseConfig {
        LeaseConfig::new(CONTROLLERS_LEASE, identity)
    }

    fn lease(holder: &str, rv: u64, transitions: i64) -> Value {
        let mut l = held_lease(&cfg(holder), "t0", "t0", transitions);
        meta::set_resource_version(&mut l, rv);
        l
    }

    #[test]
    fn decisions() {
        let me = cfg("a");
        let s = Duration::from_secs;
        assert!(
            matches!(decide(&me, None, s(0), "t1", true), Step::Acquire(l) if holder(&l) == "a")
        );
        // ours: renewed, CAS on what was read, acquireTime kept
        match decide(&me, Some(&lease("a", 7, 2)), s(100), "t1", true) {
            Step::Renew(l) => {
                assert_eq!(meta::resource_version(&l), Some(7));
                assert_eq!(l["spec"]["renewTime"], "t1");
                assert_eq!(l["spec"]["acquireTime"], "t0");
                assert_eq!(l["spec"]["leaseTransitions"], 2);
            }
            other => panic!("{other:?}"),
        }
        // another's, fresh: wait
        assert_eq!(
            decide(&me, Some(&lease("b", 7, 0)), s(14), "t1", true),
            Step::Wait
        );
        // another's, unchanged for a whole lease: taken over, one more transition
        match decide(&me, Some(&lease("b", 7, 3)), s(15), "t1", true) {
            Step::TakeOver { stale, lease } => {
                assert_eq!(stale, 7);
                assert_eq!(holder(&lease), "a");
                assert_eq!(lease["spec"]["leaseTransitions"], 4);
            }
            other => panic!("{other:?}"),
        }
        // released (no holder): taken at once
        let mut released = lease("b", 9, 1);
        released["spec"]["holderIdentity"] = json!("");
        assert!(matches!(
            decide(&me, Some(&released), s(0), "t1", true),
            Step::TakeOver { stale: 9, .. }
        ));
        // ours, but the create revision of our acquisition is unknown
        // (its answer was lost): left to expire, then taken over anew
        assert_eq!(
            decide(&me, Some(&lease("a", 7, 2)), s(3), "t1", false),
            Step::Wait
        );
        assert!(matches!(
            decide(&me, Some(&lease("a", 7, 2)), s(15), "t1", false),
            Step::TakeOver { stale: 7, .. }
        ));
        // the record's own duration counts, not ours
        let mut long = lease("b", 7, 0);
        long["spec"]["leaseDurationSeconds"] = json!(60);
        assert_eq!(decide(&me, Some(&long), s(30), "t1", true), Step::Wait);
    }
}
