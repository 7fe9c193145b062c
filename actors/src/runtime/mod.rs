//! The controller runtime every controller runs on (kube-runtime's shape):
//!
//! - [`queue`]: the work queue — keys deduplicated, never handed out twice
//!   at once, per-key exponential backoff (5 ms doubling to 5 min, reset on
//!   success), `requeue_after`, bounded; pure, on an injected clock.
//! - [`informers`]: one watch and one cache per kind per process, with
//!   owner and uid indexes, shared by every controller and the scheduler.
//! - [`controller`]: the [`Reconcile`] trait (what a controller watches and
//!   a pure `reconcile(object, view) -> plan`) and the one actor that runs
//!   every reconciler: it alone schedules work, bounds writes in flight,
//!   caches what writes return, backs off and records Warning Events.
//! - [`elector`]: Leases in `kube-system` elect the one mesh node that runs
//!   the scheduler and the controllers; their writes are fenced by it.
//! - Writes go through [`crate::write::Writer`]: the bus, or the in-memory
//!   [`crate::write::FakeWriter`] with which the runtime and every
//!   controller are tested in process.
//!
//! A new controller is one file with a `Reconcile` implementation and one
//! line in [`start_controllers`].

pub mod controller;
pub mod elector;
pub mod informers;
pub mod queue;

use std::sync::Arc;

use actix::prelude::*;

pub use controller::{Controller, Demote, Pending, Plan, Planned, Reconcile, View, Watch};
pub use informers::{Informers, Shared};

use crate::gc::GarbageCollector;
use crate::replicaset::ReplicaSetReconciler;
use crate::write::Writer;

/// What the control plane's controllers are told at start.
#[derive(Debug, Clone, Copy)]
pub struct ControllerSettings {
    /// How long a node's Lease may go unrenewed before it is NotReady.
    pub node_grace: std::time::Duration,
    /// Finished pods kept before the oldest are deleted.
    pub terminated_pod_gc_threshold: usize,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            node_grace: crate::nodelifecycle::GRACE_DEFAULT,
            terminated_pod_gc_threshold: crate::podgc::THRESHOLD_DEFAULT,
        }
    }
}

/// Start every controller of the control plane; returns how to stop them.
/// `usage` is where the autoscaler's figures come from (the node agents);
/// without one no HorizontalPodAutoscaler controller runs.
pub fn start_controllers(
    informers: &Informers,
    writer: Arc<dyn Writer>,
    settings: ControllerSettings,
    usage: Option<Arc<dyn crate::hpa::UsageSource>>,
) -> Vec<Recipient<Demote>> {
    fn start<R: Reconcile>(
        r: R,
        informers: &Informers,
        writer: &Arc<dyn Writer>,
    ) -> Recipient<Demote> {
        Controller::new(r, informers.clone(), writer.clone())
            .start()
            .recipient()
    }
    let mut started = vec![
        start(ReplicaSetReconciler::REPLICA_SETS, informers, &writer),
        start(
            ReplicaSetReconciler::REPLICATION_CONTROLLERS,
            informers,
            &writer,
        ),
        start(crate::job::JobReconciler, informers, &writer),
        start(crate::cronjob::CronJobReconciler, informers, &writer),
        start(crate::daemonset::DaemonSetReconciler, informers, &writer),
        start(
            crate::statefulset::StatefulSetReconciler,
            informers,
            &writer,
        ),
        start(crate::volume::ClaimBinder, informers, &writer),
        start(crate::volume::VolumeReclaimer, informers, &writer),
        start(crate::disruption::DisruptionReconciler, informers, &writer),
        start(
            crate::nodelifecycle::NodeLifecycle {
                grace: settings.node_grace,
            },
            informers,
            &writer,
        ),
        start(crate::nodelifecycle::TaintEviction, informers, &writer),
        start(crate::nodelifecycle::PodGc, informers, &writer),
        start(crate::deployment::DeploymentReconciler, informers, &writer),
        start(crate::namespace::NamespaceController, informers, &writer),
        start(
            crate::serviceaccount::ServiceAccountController,
            informers,
            &writer,
        ),
        start(crate::endpoints::EndpointsReconciler, informers, &writer),
        start(crate::endpoints::LoadBalancerReconciler, informers, &writer),
    ];
    started.push(
        crate::podgc::TerminatedPodGc::new(
            informers.clone(),
            writer.clone(),
            settings.terminated_pod_gc_threshold,
        )
        .start()
        .recipient(),
    );
    if let Some(source) = usage {
        let figures = crate::hpa::Figures::default();
        started.push(
            crate::hpa::UsageCollector::new(informers.clone(), source, figures.clone())
                .start()
                .recipient(),
        );
        started.push(start(
            crate::hpa::HpaReconciler::new(figures),
            informers,
            &writer,
        ));
    }
    // one collector, run once per kind it follows
    for kind in crate::gc::KINDS {
        started.push(start(GarbageCollector::new(kind), informers, &writer));
    }
    started
}
