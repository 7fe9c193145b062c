//! # kubus-actors: the actors
//!
//! Every control component is an actix actor that learns about the world
//! from NATS subjects (through `kubus-bus`) and decides in pure functions:
//!
//! - [`store::StoreServer`]: a store peer's API, manifest and change-event
//!   service (the only actor that touches `kubus-storage`).
//! - [`scheduler::Scheduler`]: binds pods to nodes.
//! - [`replicaset::ReplicaSetController`], [`deployment::DeploymentController`].
//! - [`node_agent::NodeAgent`]: the kubelet, over a [`node_agent::runtime::Runtime`].
//!
//! Architecture invariant: actors talk to each other only through the bus;
//! none holds another's address, so any of them can run in another process.

pub mod deployment;
pub mod events;
pub mod informer;
pub mod node_agent;
pub mod replicaset;
pub mod scheduler;
pub mod store;
pub mod watching;
pub mod write;
