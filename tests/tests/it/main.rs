//! The integration tests, linked as one binary (one link of the kubus
//! crates instead of one per file). Each module drives real nats-server,
//! kubus and (where needed) containerd processes through public subjects.

mod api;
mod backup;
mod bus_outage;
mod control_plane;
mod cri_containerd;
mod dashboard;
mod drain;
mod foreign_client;
mod graceful_delete;
mod hollow_scale;
mod kubectl;
mod lifecycle;
mod manifests;
mod metrics;
mod nats_mesh;
mod nodes;
mod process_runtime;
mod scheduling;
mod security;
mod services;
mod skeleton;
mod store_leader_kills;
mod store_peers;
mod traces;
mod verbs;
mod watch_guarantees;
mod workloads;
