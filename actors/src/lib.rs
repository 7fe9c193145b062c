//! # kubus-actors: the actors
//!
//! Every control component is an actix actor that learns about the world
//! from NATS subjects (through `kubus-bus`) and decides in pure functions:
//!
//! - [`store::StoreServer`]: a store peer's API, manifest and change-event
//!   service (the only actor that touches `kubus-storage`).
//! - [`scheduler::Scheduler`]: binds pods to nodes.
//! - [`runtime`]: the controller runtime (work queue, shared informers,
//!   the [`runtime::Reconcile`] trait and the one controller actor) and the
//!   controllers on it: [`replicaset`], [`deployment`], [`gc`].
//! - [`node_agent::NodeAgent`]: the kubelet, over a [`node_agent::runtime::Runtime`].
//!
//! Architecture invariant: actors talk to each other only through the bus;
//! none holds another's address, so any of them can run in another process.

pub mod apipublisher;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod dns;
pub mod endpoints;
pub mod events;
pub mod eviction;
pub mod gc;
pub mod hpa;
pub mod informer;
pub mod job;
pub mod metrics;
pub mod namespace;
pub mod node_agent;
pub mod nodelifecycle;
pub mod podgc;
pub mod proxy;
pub mod replicaset;
pub mod revisions;
pub mod runtime;
pub mod scheduler;
pub mod serviceaccount;
pub mod statefulset;
pub mod store;
pub mod volume;
pub mod watching;
pub mod workload;
pub mod write;
